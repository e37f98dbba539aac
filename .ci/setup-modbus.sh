#!/usr/bin/env bash
# CI: the Modbus/SunSpec test peers. pymodbus serves a SunSpec register map that pysunspec2
# builds (tests/modbus/sunspec_server.py), and pysunspec2 reads it back as an independent
# client. They go into a venv at target/modbus-venv, where tests/it/modbus.rs looks first
# (GRIDMINER_MODBUS_PYTHON overrides the interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
  $SUDO apt-get install -y -qq python3-venv
fi
python3 -m venv target/modbus-venv
target/modbus-venv/bin/pip install -q --disable-pip-version-check -r tests/modbus/requirements.txt
target/modbus-venv/bin/python -c 'import pymodbus, sunspec2; print("pymodbus", pymodbus.__version__)'

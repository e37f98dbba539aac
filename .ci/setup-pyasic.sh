#!/usr/bin/env bash
# CI: pyasic, the independent Python client of the simulated ASIC fleet (issue 11). It goes
# into a venv at target/pyasic-venv, where tests/it/fleet_emulator.rs looks first
# (GRIDMINER_PYASIC_PYTHON overrides the interpreter). The version is pinned in
# tests/pyasic/requirements.txt: the emulator is checked against what that release sends.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
  $SUDO apt-get install -y -qq python3-venv
fi
python3 -m venv target/pyasic-venv
target/pyasic-venv/bin/pip install -q --disable-pip-version-check -r tests/pyasic/requirements.txt
target/pyasic-venv/bin/python -c 'import importlib.metadata as m; print("pyasic", m.version("pyasic"))'

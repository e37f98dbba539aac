#!/usr/bin/env bash
# Test peer for tests/it/r13_ha.rs: Home Assistant (PyPI), whose own MQTT discovery
# schema, sensor unit tables and template engine check gridminer's discovery payloads
# (tests/ha/validate.py). Installed into a venv at target/venv-ha, where the test looks
# for it (GRIDMINER_HA_PYTHON, if set, names another interpreter instead). About two
# minutes and 400 MB from a cold pip cache. Pinned in tests/ha/requirements.txt (for
# Python 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/venv-ha
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  mkdir -p target
  # Debian's python3 needs python3-venv for ensurepip; other pythons have it built in.
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
    python3 -m venv "$VENV"
  fi
fi
if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/ha/requirements.txt
else
  # Another Python than the pin list's: the current release, which runs on it.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check homeassistant paho-mqtt
fi
"$VENV/bin/python" -c "from homeassistant.components.mqtt import sensor; from homeassistant.const import __version__ as v; print('Home Assistant', v, 'in $VENV')"

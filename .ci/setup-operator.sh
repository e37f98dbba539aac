#!/usr/bin/env bash
# Test peer for tests/it/operator.rs: PyJWT (+ cryptography for EdDSA), an independent
# JWT implementation that signs the operator commands gridminer must verify. Installed
# into a venv at target/venv-operator, where the test looks for it (GRIDMINER_PYTHON,
# if set, names another interpreter instead). Pinned in tests/operator/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/venv-operator
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
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/operator/requirements.txt
"$VENV/bin/python" -c "import jwt, cryptography; print('PyJWT', jwt.__version__, 'cryptography', cryptography.__version__, 'in $VENV')"

#!/usr/bin/env bash
# The unit-hardening test (tests/it/supervise.rs) rates deploy/gridminer.service with
# `systemd-analyze security --offline=yes`, which needs no running systemd: Debian ships
# systemd-analyze in the systemd package. Nothing is started or enabled here.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd
fi
systemd-analyze --version | head -1

#!/usr/bin/env bash
# The browser that renders report.html in tests/it/r12_report.rs: Debian's chromium,
# driven headless over WebDriver by chromedriver (package chromium-driver), which the
# test starts itself on a free port. Nothing is downloaded at test time.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
fi
command -v chromium chromedriver >/dev/null

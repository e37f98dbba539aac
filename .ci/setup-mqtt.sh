#!/usr/bin/env bash
# The external MQTT broker the live tests start on a free port of their own: Debian's
# mosquitto (with mosquitto_passwd, for the TLS + password test's password file), and
# mosquitto-clients (mosquitto_pub and mosquitto_sub: an MQTT/TLS client independent of
# ours). The packaged service is stopped; tests run their own instance.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
if ! [ -x /usr/sbin/mosquitto ] || ! command -v mosquitto_pub >/dev/null \
   || ! command -v mosquitto_sub >/dev/null || ! command -v mosquitto_passwd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto mosquitto-clients
fi
($SUDO systemctl stop mosquitto 2>/dev/null || $SUDO service mosquitto stop 2>/dev/null || true) >/dev/null 2>&1
test -x /usr/sbin/mosquitto
command -v mosquitto_passwd mosquitto_pub mosquitto_sub >/dev/null

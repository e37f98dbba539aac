#!/usr/bin/env bash
# The external MQTT broker the live tests start on a free port of their own: Debian's
# mosquitto. The packaged service is stopped; tests run their own instance.
set -euo pipefail
if ! [ -x /usr/sbin/mosquitto ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
fi
(systemctl stop mosquitto 2>/dev/null || service mosquitto stop 2>/dev/null || pkill -x mosquitto || true) >/dev/null 2>&1
test -x /usr/sbin/mosquitto

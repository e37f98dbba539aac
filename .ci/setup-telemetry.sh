#!/usr/bin/env bash
# Telemetry tests: Debian's victoria-metrics serves the InfluxDB v2 write API the writer
# is tested against (tests/it/telemetry.rs). Run as root after apt-get update.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq victoria-metrics
# The package enables a system service; the tests start their own servers on free ports.
systemctl disable --now victoria-metrics >/dev/null 2>&1 || true
test -x /usr/bin/victoria-metrics

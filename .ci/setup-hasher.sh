# Sourced by .ci/run (bash, CI=true, fresh Debian): the peers the hasher's tests need.
# - node + npm, and the npm `stratum` server framework for tests/stratum/server.js
# - python3 (hashlib) for tests/stratum/check_shares.py
# GRIDMINER_REQUIRE_PEERS=1 turns a missing peer into a test failure instead of a skip.
_hasher_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
if ! command -v python3 >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3
fi
(cd "$_hasher_root/tests/stratum" && npm ci --no-audit --no-fund)
export GRIDMINER_REQUIRE_PEERS=1
unset _hasher_root

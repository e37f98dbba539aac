#!/usr/bin/env bash
# CI: every cargo-fuzz target for a short, bounded time (FUZZ_SECONDS each, default 20),
# starting from its committed corpus and regression inputs; fails on the first crash and
# prints the crashing input's path. Stable Rust, no sanitizer (`-s none`): see the README.
# New inputs found go to a temporary folder, so the committed corpus stays as it is.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-20}"
# -O -a: optimised, with debug assertions and overflow checks (an overflow is a crash).
build=(-O -a -s none)

# libfuzzer-sys compiles libFuzzer's C++ sources.
if ! command -v c++ >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "--- cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "--- cargo fuzz build"
cargo fuzz build "${build[@]}"

for target in $(cargo fuzz list); do
  echo "--- fuzz $target for ${seconds}s"
  new=$(mktemp -d)
  inputs=("$new")
  for dir in "corpus/$target" "regressions/$target"; do
    if [ -d "$dir" ]; then inputs+=("$dir"); fi
  done
  cargo fuzz run "${build[@]}" "$target" "${inputs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
  rm -rf "$new"
done

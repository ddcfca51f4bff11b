#!/usr/bin/env bash
# The long chaos run: the real binary killed KILLS times (default 100) at
# random moments under load, with reloads, broker restarts and a full disk
# (see tests/process/chaos.rs). Prints the seed and the summary line.
#   bash tests/chaos.sh [KILLS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export HAZARDWATCH_CHAOS_KILLS="${1:-100}"
if [ -n "${2:-}" ]; then
  export HAZARDWATCH_CHAOS_SEED="$2"
fi
export HAZARDWATCH_REQUIRE_MOSQUITTO=1
cargo test --release -p hazardwatch --test process chaos -- --nocapture 2>&1 |
  grep -E "^chaos:|test result|panicked|lost|twice" || true
exit "${PIPESTATUS[0]}"

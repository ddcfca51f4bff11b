#!/usr/bin/env bash
# The long fuzz run: every target (or those named), one after another,
# until it has executed RUNS inputs (default 10 million). Prints each
# target's executions, seconds, new crashes and corpus size.
#   bash fuzz/long.sh [RUNS] [TARGET...]
# Crashing inputs are kept in fuzz/artifacts/<target>/; each becomes a
# regression test where the code under test lives.
set -euo pipefail
cd "$(dirname "$0")"
runs="${1:-10000000}"
shift || true
cargo +nightly fuzz build -s none
# The binaries as built now: later edits to the sources do not change a
# run that takes hours.
host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin="$(mktemp -d)"
cp target/"$host"/release/* "$bin"/ 2>/dev/null || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
printf '%-16s %12s %9s %8s %s\n' target executions seconds crashes corpus
for target in "${targets[@]}"; do
  corpus="$(mktemp -d)"
  mkdir -p "artifacts/$target"
  before=$(find "artifacts/$target" -type f | wc -l)
  start=$(date +%s)
  log="$(mktemp)"
  # A crash ends the target's run early; its input is saved.
  "$bin/$target" "$corpus" "corpus/$target" \
    -runs="$runs" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || true
  end=$(date +%s)
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  after=$(find "artifacts/$target" -type f | wc -l)
  printf '%-16s %12s %9s %8s %s\n' "$target" "${execs:-?}" "$((end - start))" \
    "$((after - before))" "$(find "$corpus" -type f | wc -l)"
  if [ "$after" -gt "$before" ]; then
    grep -E "panicked|SUMMARY|ERROR" "$log" | head -5
  fi
  rm -rf "$corpus" "$log"
done
rm -rf "$bin"

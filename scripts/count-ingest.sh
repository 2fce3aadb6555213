#!/usr/bin/env bash
# Instructions per settled callback, by thread, counted by callgrind: a figure for comparing
# builds that the speed of a shared machine does not move (wall-clock runs here vary by up to
# 1.7x from one minute to the next). Needs valgrind (apt-get install valgrind).
#   scripts/count-ingest.sh [seconds] [binary]
# KEEP=<dir> keeps callgrind's files there, one per thread, for callgrind_annotate.
# Seeds 20,000 payments at full speed, then counts while wrk sends callbacks for `seconds`
# (default 15; the gateway runs about 50 times slower under callgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
bin=${2:-}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
if [ -z "$bin" ]; then
  cargo build --release -q -p lipa
  bin=./target/release/lipa
fi
port=18094
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; [ -n "${KEEP:-}" ] && cp "$dir"/cg.out-* "$KEEP"/ ; rm -rf "$dir"' EXIT
LIPA_LOG=warn valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
  --callgrind-out-file="$dir/cg.out" "$bin" bench ingest --payments 20000 --serve $port >"$dir/log" 2>&1 &
pid=$!
until grep -q "^serving" "$dir/log"; do
  kill -0 $pid 2>/dev/null || { cat "$dir/log"; exit 1; }
  sleep 1
done
callgrind_control -i on $pid >/dev/null 2>&1
wrk -t1 -c64 -d"${seconds}s" -s scripts/ingest.lua "http://127.0.0.1:$port" -- 1 >/dev/null
callgrind_control -i off $pid >/dev/null 2>&1
kill -INT $pid
wait $pid || true
settled=$(grep -oE "^settled [0-9]+" "$dir/log" | cut -d' ' -f2)
echo "settled $settled callbacks"
for f in "$dir"/cg.out-*; do
  total=$(grep -E "^totals:" "$f" | awk '{print $2}' || true)
  [ -n "$total" ] && [ "$total" != 0 ] || continue
  if grep -q "run_writer" "$f"; then role="SQLite writer"
  elif grep -q "run_syncer" "$f"; then role="WAL flusher"
  elif grep -q "run_checkpoints" "$f"; then role="checkpointer"
  else role="HTTP workers and the rest"; fi
  echo "$role $total"
done | awk -v n="$settled" '{ t = $NF; $NF = ""; sub(/ $/, ""); ir[$0] += t; all += t }
  END { for (r in ir) printf "  %-28s %8.0f instructions per callback\n", r, ir[r] / n
        printf "  %-28s %8.0f\n", "all", all / n }'

#!/usr/bin/env bash
# Callback ingest with the load generator (wrk) in its own process:
#   scripts/bench-ingest.sh [payments] [seconds] [connections] [database-url]
# Seeds `payments` into a fresh SQLite store, serves the gateway, drives it with wrk for
# `seconds`, then prints wrk's figures and the gateway's own count of settled payments.
set -euo pipefail
cd "$(dirname "$0")/.."
payments=${1:-150000}
seconds=${2:-10}
connections=${3:-64}
database=${4:-}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
# LIPA_BIN: a binary built beforehand (to compare builds); else the workspace's, rebuilt.
bin=${LIPA_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p lipa
  bin=./target/release/lipa
fi
port=18090
out=$(mktemp)
LIPA_LOG=warn "$bin" bench ingest --payments "$payments" --serve "$port" \
  ${database:+--database-url "$database"} >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
until grep -q "^serving" "$out"; do
  kill -0 $pid 2>/dev/null || { cat "$out"; exit 1; }
  sleep 0.5
done
cat "$out"
# CPU time per thread name, in clock ticks (utime + stime), from /proc.
cpu_by_thread() {
  for t in /proc/$pid/task/*; do
    # A thread that ended since the listing is skipped.
    comm=$(cat "$t/comm" 2>/dev/null) && stat=$(cat "$t/stat" 2>/dev/null) || continue
    set -- ${stat##*) }
    echo "$comm $(( ${12} + ${13} ))"
  done | awk '{ticks[$1] += $2} END {for (c in ticks) print c, ticks[c]}' | sort
}
before=$(cpu_by_thread)
wrk -t2 -c"$connections" -d"${seconds}s" --latency -s scripts/ingest.lua "http://127.0.0.1:$port" -- 2 | grep -E "^wrk:|Requests/sec|Socket errors" || true
after=$(cpu_by_thread)
kill -INT $pid
wait $pid || true
grep -E "^(settled|RSS)" "$out" || true
# Gateway CPU per settled callback, by thread: the figure that noise on this shared machine moves least.
settled=$(grep -oE "^settled [0-9]+" "$out" | cut -d' ' -f2)
hz=$(getconf CLK_TCK)
join <(echo "$before") <(echo "$after") | awk -v n="$settled" -v hz="$hz" -v base="$payments" '
  { d = ($3 - $2) / hz; total += d; if (d > 0) printf "  %-24s %6.2f s  %5.1f us/callback\n", $1, d, d * 1e6 / n }
  END { printf "gateway CPU %.2f s: %.1f us per settled callback\n", total, total * 1e6 / n }'


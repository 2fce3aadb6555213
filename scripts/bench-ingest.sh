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
cargo build --release -q -p lipa
port=18090
out=$(mktemp)
LIPA_LOG=warn ./target/release/lipa bench ingest --payments "$payments" --serve "$port" \
  ${database:+--database-url "$database"} >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
until grep -q "^serving" "$out"; do
  kill -0 $pid 2>/dev/null || { cat "$out"; exit 1; }
  sleep 0.5
done
cat "$out"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -s scripts/ingest.lua "http://127.0.0.1:$port" -- 2 | grep -E "^wrk:|Requests/sec|Socket errors" || true
kill -INT $pid
wait $pid || true
grep -E "^(settled|RSS)" "$out" || true

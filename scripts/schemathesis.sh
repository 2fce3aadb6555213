#!/usr/bin/env bash
# schemathesis (PyPI) against the gateway's own /openapi.json, for a bounded time:
#   scripts/schemathesis.sh [seconds]
# Starts `lipa serve` in simulator mode on a fresh SQLite database with one API key, then
# lets schemathesis generate requests from the document (examples, boundary values, random
# valid and invalid data, and stateful sequences such as create then fetch). It fails on any
# 5xx, on a response the document does not describe (status, content type, headers, body),
# on a request the document calls valid being refused, on one it calls invalid being
# accepted, and on an authenticated operation that answers without its key.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
venv=${LIPA_SCHEMATHESIS_VENV:-target/schemathesis-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi
cargo build -q -p lipa
lipa="${CARGO_TARGET_DIR:-target}/debug/lipa"

dir=$(mktemp -d)
# Private webhook addresses allowed: the URLs schemathesis makes up come from the server's own
# address, 127.0.0.1 (whether a gateway refuses them is a setting, not the document's schema).
export DATABASE_URL="sqlite:$dir/lipa.db" LIPA_LOG=warn LIPA_WEBHOOK_ALLOW_PRIVATE=true
key=$($lipa keys create --name schemathesis | grep -o 'lipa_sk_[0-9a-f]*')
port=18110
LIPA_LISTEN="127.0.0.1:$port" LIPA_SIM_PORT=18111 $lipa serve >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 60); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$dir/serve.log"; exit 1; }
  sleep 0.5
done

status=0
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $key" \
  --max-time "$seconds" \
  --workers 2 \
  --seed "${LIPA_SCHEMATHESIS_SEED:-1}" \
  --request-timeout 10 \
  --no-color \
  --report junit --report-dir "$dir/report" || status=$?

# The gateway must still be up and must not have logged a panic.
kill -0 $pid 2>/dev/null || { echo "the gateway died during the run" >&2; status=1; }
if grep -q "panicked" "$dir/serve.log"; then
  grep -B2 -A10 "panicked" "$dir/serve.log" >&2
  status=1
fi
exit $status

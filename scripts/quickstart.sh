#!/usr/bin/env bash
# The README's quick start, exactly as written, on a fresh checkout: `cargo run --release --
# demo --auto` in the repository root, then one booking through HTTP (book seats in the shop,
# send the prompt on Lipa's checkout page, wait for the simulator to approve it), and the
# ticket must be paid. Ctrl-C (SIGINT) must then stop the demo cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -e lipa-data ]; then
  echo "lipa-data/ exists: the quick start is checked on a fresh checkout only" >&2
  exit 1
fi
log=$(mktemp)
setsid cargo run --release -- demo --auto >"$log" 2>&1 &
demo=$!
cleanup() { kill -INT -- "-$demo" 2>/dev/null || true; rm -rf lipa-data "$log"; }
trap cleanup EXIT

for _ in $(seq 1 900); do
  grep -q "Press Ctrl-C" "$log" && break
  kill -0 "$demo" 2>/dev/null || { cat "$log"; echo "the demo exited" >&2; exit 1; }
  sleep 1
done
grep -q "Press Ctrl-C" "$log" || { cat "$log"; echo "the demo did not start" >&2; exit 1; }
shop=http://127.0.0.1:8000
curl -fsS "$shop/" | grep -q "Now showing"

checkout=$(curl -fsS -o /dev/null -w '%{redirect_url}' -X POST \
  --data-urlencode "name=Wanjiku" --data-urlencode "phone=0712 345 678" --data-urlencode "quantity=2" \
  "$shop/movies/1")
case "$checkout" in http://127.0.0.1:8080/checkout/cs_*) ;; *) echo "no checkout: $checkout" >&2; exit 1 ;; esac
sent=$(curl -sS -o /dev/null -w '%{http_code}' -X POST --data-urlencode "phone=0712 345 678" "$checkout")
[ "$sent" = 303 ] || { echo "the prompt was not sent ($sent)" >&2; exit 1; }

paid=""
for _ in $(seq 1 60); do
  page=$(curl -fsS "$checkout")
  if grep -q "Payment received" <<<"$page"; then paid=yes; break; fi
  sleep 0.5
done
[ -n "$paid" ] || { echo "never paid" >&2; exit 1; }
ticket=$(grep -o "$shop/tickets/tk_[0-9a-f]*" <<<"$page" | head -n 1)
curl -fsS "$ticket" | grep -q ">Paid<" || { echo "the ticket is not paid" >&2; exit 1; }

kill -INT -- "-$demo"
for _ in $(seq 1 30); do kill -0 "$demo" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$demo" 2>/dev/null; then echo "the demo did not stop on Ctrl-C" >&2; exit 1; fi
echo "quick start: booked, paid, ticket Paid; stopped cleanly"

#!/usr/bin/env bash
# Runs the recipe's end-to-end test against a real `lipa serve`: LIPA_BIN=target/release/lipa examples/flask-fees/test.sh
set -euo pipefail
: "${LIPA_BIN:?set LIPA_BIN to a built lipa binary, e.g. LIPA_BIN=target/release/lipa examples/flask-fees/test.sh}"
[[ -f "$LIPA_BIN" && -x "$LIPA_BIN" ]] || { echo "LIPA_BIN=$LIPA_BIN is not an executable file" >&2; exit 1; }
LIPA_BIN="$(cd "$(dirname "$LIPA_BIN")" && pwd)/$(basename "$LIPA_BIN")"  # absolute, before leaving the caller's directory
export LIPA_BIN
cd "$(dirname "${BASH_SOURCE[0]}")"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
exec .venv/bin/python -m pytest -q -p no:cacheprovider test_fees.py "$@"

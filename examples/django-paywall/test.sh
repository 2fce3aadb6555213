#!/usr/bin/env bash
# Runs the recipe's end-to-end test against a real `lipa serve` (LIPA_BIN: the lipa binary).
set -euo pipefail
if [[ -z "${LIPA_BIN:-}" ]]; then
  echo "LIPA_BIN is not set: point it at the lipa binary, e.g. LIPA_BIN=\$PWD/target/debug/lipa" >&2
  exit 2
fi
[[ "$LIPA_BIN" == */* ]] || LIPA_BIN="$(command -v "$LIPA_BIN" || echo "$LIPA_BIN")"
LIPA_BIN="$(realpath "$LIPA_BIN")"
export LIPA_BIN
cd "$(dirname "${BASH_SOURCE[0]}")"

python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
.venv/bin/python manage.py test paywall --noinput -v 2

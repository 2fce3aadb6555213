#!/usr/bin/env bash
# Installs the pinned dependencies into ./node_modules and runs the end-to-end test against a
# real `lipa serve`. Needs LIPA_BIN (path to a built lipa binary) and Node 20+ with npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ -z "${LIPA_BIN:-}" ]]; then
  echo "LIPA_BIN is not set: point it at a built lipa binary, e.g. LIPA_BIN=\$PWD/target/release/lipa" >&2
  exit 2
fi
if [[ ! -x "$LIPA_BIN" ]]; then
  echo "LIPA_BIN=$LIPA_BIN is not an executable file" >&2
  exit 2
fi
export LIPA_BIN="$(cd "$(dirname "$LIPA_BIN")" && pwd)/$(basename "$LIPA_BIN")"
npm ci --no-audit --no-fund --loglevel=error
node --test --test-reporter=spec test/

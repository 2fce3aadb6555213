#!/usr/bin/env bash
# Runs every integration recipe's test (examples/*/test.sh) against this checkout's `lipa`
# and ends with "N passed, N failed". Each recipe installs its pinned dependencies into its
# own directory (.venv/ or node_modules/), never globally.
set -uo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p lipa || exit 1
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export LIPA_BIN="$target/debug/lipa"

passed=0
failed=0
failures=()
for test in examples/*/test.sh; do
  name=$(basename "$(dirname "$test")")
  echo "=== $name"
  start=$SECONDS
  if bash "$test"; then
    passed=$((passed + 1))
    echo "--- $name: passed in $((SECONDS - start)) s"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "--- $name: FAILED after $((SECONDS - start)) s"
  fi
done
if [ $((passed + failed)) -eq 0 ]; then
  echo "no recipes found under examples/"
  exit 1
fi
echo "$passed passed, $failed failed${failures[*]:+ (${failures[*]})}"
[ "$failed" -eq 0 ]

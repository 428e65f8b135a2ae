#!/usr/bin/env bash
# Runs the unit and loopback tests (no cluster needed) and prints one summary
# line: "N passed, N failed, N skipped". Exits non-zero when any test fails.
set -uo pipefail
cd "$(dirname "$0")/.."

for tool in go python3 node; do
  command -v "$tool" >/dev/null || { echo "test: $tool is not on PATH; install it first" >&2; exit 1; }
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
go test -count=1 -v ./... 2>&1 | tee "$log" | grep -E '^(---|FAIL|ok|panic)' 
status=${PIPESTATUS[0]}

passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
# Each fuzz target runs for a bounded time on top of its checked-in corpus,
# which the run above already replayed.
fuzztime=${FUZZTIME:-15s}
for target in "FuzzDecodeRequest ./function/" "FuzzRenderJob ./function/kube/"; do
  set -- $target
  if go test -run='^$' -fuzz="^$1\$" -fuzztime="$fuzztime" "$2" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "--- PASS: $1 (fuzzed for $fuzztime)"
  else
    failed=$((failed + 1))
    status=1
    cat "$log"
    echo "--- FAIL: $1 (fuzzed for $fuzztime)"
  fi
done

echo "test: $passed passed, $failed failed, $skipped skipped"
exit "$status"

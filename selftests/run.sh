#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every railnet test and ends with one line: "N passed, N failed, N skipped".
#
# Each test program speaks TAP on stdout ("ok N - name", "not ok N - name",
# "ok N - name # SKIP why"): the cmocka units (CMOCKA_MESSAGE_OUTPUT=TAP), the
# BPF_PROG_TEST_RUN programs and the netns scripts alike.  A program that
# exits non-zero without reporting a failure counts as one failure.
#
#   OUTPUT=build selftests/run.sh [FILTER]   FILTER: a substring of the test path
set -u
cd "$(dirname "$0")/.."
O=${OUTPUT:-build}
filter=${1:-}
log_dir="$O/test-logs"
mkdir -p "$log_dir"

passed=0 failed=0 skipped=0
failures=()

run_one() { # <name> <timeout-seconds> <command...>
	local name=$1 limit=$2; shift 2
	local log="$log_dir/$(echo "$name" | tr '/' '_').log" rc p f s
	[ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && return
	printf '  %-44s ' "$name"
	CMOCKA_MESSAGE_OUTPUT=TAP OUTPUT="$O" timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
	rc=$?
	p=$(grep -E '^ok [0-9]+' "$log" | grep -vc '# SKIP')
	s=$(grep -E '^ok [0-9]+.*# SKIP' "$log" | wc -l)
	f=$(grep -cE '^not ok [0-9]+' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		[ "$rc" -ge 124 ] && echo "# timed out after ${limit}s (rc=$rc)" >>"$log"
	fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	if [ "$f" -gt 0 ]; then
		failures+=("$name")
		echo "FAIL ($p passed, $f failed, $s skipped; log: $log)"
		grep -E '^not ok|^# ' "$log" | head -20 | sed 's/^/      /'
	else
		echo "ok ($p passed$([ "$s" -gt 0 ] && echo ", $s skipped"))"
		grep -E '# SKIP' "$log" | sed 's/^/      /'
	fi
}

echo "unit tests (cmocka)"
for t in "$O"/selftests/unit/test_*; do
	[ -x "$t" ] && run_one "unit/${t##*/}" 120 "$t"
done

echo "BPF program tests (BPF_PROG_TEST_RUN)"
for t in "$O"/selftests/prog_tests/test_*; do
	[ -x "$t" ] && run_one "prog_tests/${t##*/}" 300 "$t"
done

echo "end-to-end tests (network namespaces)"
for t in selftests/netns/test_*.sh; do
	[ -f "$t" ] && run_one "netns/${t##*/}" 600 bash "$t"
done

if [ ${#failures[@]} -gt 0 ]; then
	echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ $((passed + skipped)) -gt 0 ]

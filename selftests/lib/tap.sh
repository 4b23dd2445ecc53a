# SPDX-License-Identifier: Apache-2.0
# Minimal TAP for the netns tests: every check prints "ok N - what" or
# "not ok N - what"; selftests/run.sh counts them.
TAP_N=0
TAP_FAILED=0

tap_ok() { # <description> <command...>: passes when the command succeeds
	local what=$1; shift
	TAP_N=$((TAP_N + 1))
	if "$@" >"${TAP_LOG:-/dev/null}" 2>&1; then
		echo "ok $TAP_N - $what"
	else
		echo "not ok $TAP_N - $what"
		[ -n "${TAP_LOG:-}" ] && sed 's/^/# /' "$TAP_LOG" | tail -20
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

tap_fails() { # <description> <command...>: passes when the command runs and fails
	local what=$1 rc; shift
	TAP_N=$((TAP_N + 1))
	"$@" >"${TAP_LOG:-/dev/null}" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ] && [ "$rc" -lt 126 ]; then
		echo "ok $TAP_N - $what"
	else
		echo "not ok $TAP_N - $what (exit $rc)"
		[ -n "${TAP_LOG:-}" ] && sed 's/^/# /' "$TAP_LOG" | tail -5
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

tap_eq() { # <description> <expected> <actual>
	TAP_N=$((TAP_N + 1))
	if [ "$2" = "$3" ]; then
		echo "ok $TAP_N - $1"
	else
		echo "not ok $TAP_N - $1"
		echo "#   expected: $2"
		echo "#   actual:   $3"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

tap_skip() { # <description> <reason>
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $1 # SKIP $2"
}

tap_diag() { echo "# $*"; }

tap_done() {
	echo "1..$TAP_N"
	[ "$TAP_FAILED" -eq 0 ]
}

TAP_LOG=$(mktemp)
trap 'rm -f "$TAP_LOG"' EXIT

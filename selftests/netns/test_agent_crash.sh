#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The local store under kill -9: 2,000 allocate/release operations from 4
# concurrent clients while the agent is killed at random moments and
# restarted.  Afterwards every acknowledged allocation is held with its
# address, nothing acknowledged as released is back, no address is held twice.
# A kill -9 alone almost never tears a record (a small write to the page
# cache completes or does not happen), which a power loss does: after every
# other kill, the start of a record is appended to the log as such a crash
# leaves it, and each restart must cut it off and say so.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"

if ! why=$(lab_require); then tap_skip "agent crash" "$why"; tap_done; exit; fi
trap 'lab_down; rm -f "$TAP_LOG"' EXIT
lab_up 1 1
sock=$(agent_sock 1)
LOAD=$LAB_BUILD/bench/ipam_load
OPS=${CRASH_OPS:-2000}
conf=$(agent_config 1)
# Compaction every few dozen records, so that kills land in it too.
jq '.store.compactRecords = 64 | .pools += [{"name":"big","subnet":"10.50.0.0/16","ips":["10.50.0.1-10.50.15.254"]}]' \
	"$conf" >"$conf.new" && mv "$conf.new" "$conf"
journal=$(lab_node_dir 1)/journal
store=$(lab_node_dir 1)/state/ipam.log

# The first 1-40 bytes of a record's payload behind a header that promises
# 200: an append cut short, where the records end (the store fills the file
# with zeros ahead of them).
tear() {
	local payload='{"t":"a","pool":"big","addr":"10.50.9.9","net":"crash","cid":"torn"}' end
	end=$(python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); n = len(d.rstrip(b"\0")); print(min(n + 1, len(d)))' "$store")
	printf '\xc8\x00\x00\x00\x01\x02\x03\x04%s' "${payload:0:$((RANDOM % 40 + 1))}" |
		dd of="$store" bs=1 seek="$end" conv=notrunc status=none
}

acked() { grep -cE '^(A|R) ' "$journal" 2>/dev/null || echo 0; }
runs=0 kills=0 start_failures=0 torn=0
while [ "$(acked)" -lt "$OPS" ] && [ "$runs" -lt 100 ]; do
	agent_start 1 "$conf" || { start_failures=$((start_failures + 1)); break; }
	"$LOAD" run --socket "$sock" --pool big --network crash --threads 4 \
		--ops $((OPS - $(acked))) --prefix "r$runs" --journal "$journal" >/dev/null 2>&1 &
	load=$!
	sleep "$(printf '0.%03d' $((RANDOM % 40 + 5)))"
	if kill -0 "$load" 2>/dev/null; then
		agent_kill9 1
		kills=$((kills + 1))
		if [ $((kills % 2)) -eq 0 ]; then
			tear
			torn=$((torn + 1))
		fi
	fi
	wait "$load"
	runs=$((runs + 1))
done
agent_stop 1 >/dev/null 2>&1
tap_eq "the agent always came back after kill -9" "0" "$start_failures"
tap_ok "$(acked) operations acknowledged (target $OPS)" test "$(acked)" -ge "$OPS"
tap_ok "the agent was killed mid-load several times ($kills kills in $runs runs)" test "$kills" -ge 5
tap_ok "restarted: the store replays" agent_start 1 "$conf"
# Counted after that start: the last kill may have torn a record too.
recovered=$(grep -c 'store_torn_tail .*reason=truncated' "$(lab_node_dir 1)/railnetd.log")
tap_diag "compactions: $(grep -c store_compacted "$(lab_node_dir 1)/railnetd.log")"
tap_ok "every torn tail was cut off at the next start, and said ($torn torn, $recovered store_torn_tail)" \
	test "$torn" -ge 1 -a "$recovered" -ge "$torn"
tap_eq "no damage found in the middle of the log" "0" \
	"$(grep -c store_damaged "$(lab_node_dir 1)/railnetd.log")"
TAP_LOG_KEEP=$(mktemp)
"$LOAD" verify --socket "$sock" --network crash --journal "$journal" >"$TAP_LOG_KEEP" 2>&1
rc=$?
tap_diag "$(tail -1 "$TAP_LOG_KEEP")"
tap_eq "every acknowledged allocation held, nothing released came back, no address twice" "0" "$rc"
[ "$rc" -eq 0 ] || sed 's/^/# /' "$TAP_LOG_KEEP" | head -20
rm -f "$TAP_LOG_KEEP"
tap_eq "the pool's used count matches what is held" \
	"$(railnetctl_n 1 -o json allocations --pool big | jq length)" \
	"$(railnetctl_n 1 -o json pools | jq '.[] | select(.name=="big") | .used')"
agent_stop 1
tap_done

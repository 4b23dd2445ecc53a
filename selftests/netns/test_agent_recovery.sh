#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# railnetd's lifecycle and the recovery of its state, deterministically:
#  - SIGTERM under load: requests in flight are answered, the agent exits 0,
#    every acknowledged operation is there after a restart;
#  - a torn last record is cut off, kept aside, and said (store_torn_tail);
#  - damage in the middle of the log drops none of the records after it,
#    and is said (store_damaged, railnetctl status);
#  - a start without a pool that still holds addresses keeps them, serves
#    them, refuses new ones from it and says so (log, status, metrics),
#    while --check-config against the state refuses that configuration.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"

if ! why=$(lab_require); then tap_skip "agent recovery" "$why"; tap_done; exit; fi
trap 'agent_stop 1 >/dev/null 2>&1; lab_down; rm -f "$TAP_LOG"' EXIT
lab_up 1 1
dir=$(lab_node_dir 1)
sock=$(agent_sock 1)
log=$dir/railnetd.log
store=$dir/state/ipam.log
LOAD=$LAB_BUILD/bench/ipam_load
ctl() { railnetctl_n 1 "$@"; }
conf=$(agent_config 1 '"metrics":{"listen":"127.0.0.1:9403"}' \
	'{"name":"big","subnet":"10.50.0.0/16","ips":["10.50.0.1-10.50.15.254"]},
	 {"name":"gone","subnet":"10.51.0.0/24","ips":["10.51.0.1-10.51.0.9"]}')

# Like agent_start, but the agent's exit status lands in $dir/railnetd.rc.
start_tracked() { # <config>
	rm -f "$dir/railnetd.rc"
	(
		ip netns exec "$(lab_node_ns 1)" "$LAB_BUILD/railnetd" --config "$1" >>"$log" 2>&1 &
		echo $! >"$dir/railnetd.pid"
		wait $!
		echo $? >"$dir/railnetd.rc"
	) &
	for _ in $(seq 250); do
		ctl status >/dev/null 2>&1 && return 0
		sleep 0.02
	done
	return 1
}
exit_status() { for _ in $(seq 200); do [ -s "$dir/railnetd.rc" ] && { cat "$dir/railnetd.rc"; return; }; sleep 0.05; done; echo none; }
log_since() { tail -c +$(($1 + 1)) "$log"; } # <byte offset>
# Where the records end: the store fills the file with zeros ahead of them.
records_end() { python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); n = len(d.rstrip(b"\0")); print(min(n + 1, len(d)))' "$1"; }
log_size() { stat -c %s "$log" 2>/dev/null || echo 0; }

# --- SIGTERM while 16 clients allocate and release ------------------------
tap_ok "railnetd starts" start_tracked "$conf"
journal=$dir/journal-term
"$LOAD" run --socket "$sock" --pool big --network term --threads 16 --ops 100000 \
	--journal "$journal" >"$dir/load.out" 2>"$dir/load.err" &
load=$!
sleep 0.5
kill -TERM "$(agent_pid 1)"
wait "$load"
load_rc=$?
tap_eq "SIGTERM mid-load: the agent exits with status 0" "0" "$(exit_status)"
tap_eq "...and the load was cut by it (the socket went away)" "3" "$load_rc"
tap_eq "...no request it had taken was cut off: clients only found the socket gone" "" \
	"$(grep 'transport:' "$dir/load.err" | grep -v -e 'No such file or directory' -e 'Connection refused')"
tap_ok "...$(grep -cE '^(A|R) ' "$journal") operations acknowledged before it" \
	test "$(grep -cE '^(A|R) ' "$journal")" -gt 100
tap_ok "restarted" start_tracked "$conf"
tap_ok "...every acknowledged operation is there" \
	"$LOAD" verify --socket "$sock" --network term --journal "$journal"

# --- a torn last record -----------------------------------------------------
kill -TERM "$(agent_pid 1)"
exit_status >/dev/null
# Half a record: a length, a checksum and the start of a payload, where a
# crash in the middle of an append leaves them.
printf '\x40\x00\x00\x00\xde\xad\xbe\xef{"t":"a","pool":"big","ad' |
	dd of="$store" bs=1 seek="$(records_end "$store")" conv=notrunc status=none
off=$(log_size)
tap_ok "a torn tail: the agent starts" start_tracked "$conf"
tap_ok "...says so (store_torn_tail, the bytes it drops)" \
	grep -q 'store_torn_tail .*dropped_bytes=33 reason=truncated' <(log_since "$off")
tap_eq "...keeps them aside in ipam.log.dropped" "33" "$(stat -c %s "$store.dropped" 2>/dev/null)"
tap_eq "...and reports them in status" "33" "$(ctl -o json status | jq .ipam.store.tornTailBytes)"
tap_ok "...and loses nothing acknowledged" "$LOAD" verify --socket "$sock" --network term --journal "$journal"

# --- damage in the middle of the log ---------------------------------------
ctl call ipam.allocate '{"network":"damage","containerID":"marker-damaged","ifName":"net1","pools":{"ipv4":["big"]}}' >/dev/null
after=$dir/journal-after
"$LOAD" run --socket "$sock" --pool big --network after --threads 4 --ops 200 --journal "$after" >/dev/null
kill -TERM "$(agent_pid 1)"
exit_status >/dev/null
# One byte of the marker's record changed: its checksum fails, and valid
# records (the 200 operations) follow it.
damage_at=$(grep -abo 'marker-damaged' "$store" | head -1 | cut -d: -f1)
printf 'X' | dd of="$store" bs=1 seek="$damage_at" conv=notrunc status=none
size=$(stat -c %s "$store")
off=$(log_size)
tap_ok "damage mid-log: the agent starts" start_tracked "$conf"
tap_ok "...says so (store_damaged)" grep -q 'store_damaged .*regions=1' <(log_since "$off")
tap_ok "...keeps the damaged log whole in ipam.log.corrupt" test "$(stat -c %s "$store.corrupt")" -eq "$size"
tap_ok "...drops none of the records after the damage" \
	"$LOAD" verify --socket "$sock" --network after --journal "$after"
tap_eq "...loses only the damaged record" "0" \
	"$(ctl -o json allocations | jq '[.[] | select(.containerID == "marker-damaged")] | length')"
tap_ok "...and railnetctl status warns" grep -q 'WARNING: the store was damaged' <(ctl status)

# --- a start without a pool that still holds addresses ---------------------
ctl call ipam.allocate '{"network":"g","containerID":"in-gone","ifName":"net1","pools":{"ipv4":["gone"]}}' >/dev/null
jq '.pools |= map(select(.name != "gone"))' "$conf" >"$conf.without"
check_out=$("$LAB_BUILD/railnetd" --check-config --config "$conf.without" 2>&1)
check_rc=$?
tap_eq "--check-config against the state refuses removing a used pool" "1" "$check_rc"
tap_ok "...naming the pool and the address" grep -q '10.51.0.1 of pool gone' <<<"$check_out"
jq '.stateDir = "'"$dir"'/nostate"' "$conf.without" >"$conf.nostate"
tap_ok "...while the file alone is valid" "$LAB_BUILD/railnetd" --check-config --config "$conf.nostate"
kill -TERM "$(agent_pid 1)"
exit_status >/dev/null
off=$(log_size)
tap_ok "started without the pool anyway (a rollout), the agent runs" start_tracked "$conf.without"
tap_ok "...says so, loudly" grep -q 'error .*ipam_config_conflict when=start allocations=1 pool_removed=1' <(log_since "$off")
status=$(ctl status)
tap_ok "...railnetctl status warns" grep -q 'WARNING: 1 allocation(s) outside the configured pools' <<<"$status"
tap_ok "...naming the allocation" grep -qE '^  gone +10\.51\.0\.1 +in-gone +net1 +pool_removed$' <<<"$status"
tap_eq "...the metric counts it" "1" \
	"$(lab_in "$(lab_node_ns 1)" curl -sf http://127.0.0.1:9403/metrics |
		awk '/^railnet_ipam_allocations_outside_config\{reason="pool_removed"\}/ {print $2}')"
tap_eq "...its pod's ADD asked again still gets its address" "10.51.0.1/32" \
	"$(ctl call ipam.allocate '{"network":"g","containerID":"in-gone","ifName":"net1","pools":{"ipv4":["gone"]}}' | jq -r '.ips[0].address')"
tap_ok "...new allocations from it are refused (unknown_pool)" \
	grep -q unknown_pool <(ctl call ipam.allocate '{"network":"g","containerID":"new","ifName":"net1","pools":{"ipv4":["gone"]}}' 2>&1)
ctl release --network g in-gone net1 >/dev/null
tap_ok "released, --check-config accepts the configuration" \
	"$LAB_BUILD/railnetd" --check-config --config "$conf.without"

# --- a reload that narrows a pool under an allocation ----------------------
addr=$(ctl -o json allocations --pool big | jq -r '.[0].address')
jq --arg a "$addr" '(.pools[] | select(.name == "big") | .excludeIPs) = [$a]' "$conf.without" >"$conf.narrow"
cp "$conf.narrow" "$conf.without"
off=$(log_size)
kill -HUP "$(agent_pid 1)"
sleep 0.3
tap_ok "a reload that excludes a held address is refused" \
	grep -q "config_reload_rejected.*pool big still holds $addr" <(log_since "$off")

kill -TERM "$(agent_pid 1)"
tap_eq "SIGTERM when idle: status 0" "0" "$(exit_status)"
tap_done

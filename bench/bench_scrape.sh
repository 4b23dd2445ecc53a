#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# railnetd's memory and /metrics scrape time on a node with 1,000 pods x 8
# rail NICs of datapath entries (targets: <= 16 MiB RSS, <= 25 ms a scrape).
#
# The node is made the way a real one is: 1,000 pod netns (with a veth eth0),
# and for each of their 8 NICs the real CNI plugin's ADD (an IPAM allocation
# from the agent, a macvlan on the rail's master inside the pod, addresses,
# routes) followed by the datapath.attach the plugin sends (map entries, tcx
# hooks on the NIC and the pod's eth0, the record in stateDir), by
# build/bench/pod_fill, 4 pods at a time.  So the agent holds what it holds on
# such a node: 8,000 IPAM allocations, 8,000 datapath entries and records, and
# its prober works on 8,000 gateways.  Only the plugin's gateway check is
# off: it broadcasts an ARP on a rail shared by 1,000 macvlans per NIC, so it
# makes the fill quadratic without touching the agent.
#
# Two kernel settings are raised while the bench runs and restored after: the
# neighbour table's gc thresholds (the table is shared by all netns and the
# lab's gateways learn 8,000 pod addresses: the default 1,024 would overflow
# and disturb everything else on the machine), and, for the fill only,
# rcu_expedited (every tcx link and every AF_PACKET close waits for an RCU
# grace period; expedited, the fill takes minutes instead of tens of them).
#
# Measured: VmRSS with no entries, VmRSS idle with all of them, VmRSS after
# the scrapes and VmHWM across them (the peak is reset just before, via
# /proc/PID/clear_refs), the wall time of each scrape (curl from the node's
# netns, body discarded), and datapath.get latency while scrapes run back to
# back (a scrape must not hold dp->lock for long).  Nothing reads the agent's
# entries by the control socket before that; a datapath.list of 8,000 entries
# (its reply ~7 MiB of text) is measured last.
# Named to run last in `make bench`: the kernel takes minutes to tear down
# 1,000 netns after it, which would weigh on a benchmark that followed.
#   BENCH_PODS=N (default 1000)  BENCH_SCRAPES=N (default 30)
set -u
cd "$(dirname "$0")/.."
. selftests/lib/lab.sh
. selftests/lib/agent.sh
PODS=${BENCH_PODS:-1000}
SCRAPES=${BENCH_SCRAPES:-30}
RAILS=8
RSS_TARGET_MIB=16
SCRAPE_TARGET_MS=25
FILL=$LAB_BUILD/bench/pod_fill
PORT=9402

[ -x "$FILL" ] || { echo "bench_scrape: $FILL missing (make)"; exit 1; }
command -v curl >/dev/null || { echo "bench_scrape: SKIP: curl missing"; exit 0; }
if ! why=$(lab_require); then echo "bench_scrape: SKIP: $why"; exit 0; fi

saved_sysctls=$(sysctl -n net.ipv4.neigh.default.gc_thresh2 net.ipv4.neigh.default.gc_thresh3 | tr '\n' ' ')
saved_rcu=$(cat /sys/kernel/rcu_expedited 2>/dev/null || echo "")
restore() {
	[ -n "$saved_rcu" ] && echo "$saved_rcu" >/sys/kernel/rcu_expedited
	agent_stop 1
	lab_down
	set -- $saved_sysctls
	sysctl -qw net.ipv4.neigh.default.gc_thresh2="$1" net.ipv4.neigh.default.gc_thresh3="$2"
}
trap restore EXIT
need=$((PODS * RAILS * 2 + 4096))
[ "$(sysctl -n net.ipv4.neigh.default.gc_thresh3)" -ge "$need" ] ||
	sysctl -qw net.ipv4.neigh.default.gc_thresh2=$((need / 2)) net.ipv4.neigh.default.gc_thresh3=$need

lab_up 1 "$RAILS" >/dev/null || exit 1
node=$(lab_node_ns 1)
# A pool of 1,020 addresses per rail, its gateway on the rail's bridge.
pools="" sep=""
for ((r = 1; r <= RAILS; r++)); do
	net=10.$((100 + r))
	lab_in "$(lab_rail_ns)" ip addr add "$net.3.254/22" dev "br-r$r"
	pools+="$sep{\"name\":\"bench-r$r\",\"subnet\":\"$net.0.0/22\",\"ips\":[\"$net.0.1-$net.3.253\"],\"gateway\":\"$net.3.254\"}"
	sep=,
done
agent_start 1 "$(agent_config 1 "\"metrics\":{\"listen\":\"127.0.0.1:$PORT\"}" "$pools")" || exit 1
pid=$(agent_pid 1)
CONF=$LAB_DIR/bench
mkdir -p "$CONF"
for ((r = 1; r <= RAILS; r++)); do
	printf '{"cniVersion":"1.0.0","name":"gpu%s-macvlan","type":"railnet","master":"%s","mode":"bridge","ippools":{"ipv4":["bench-r%s"]},"detectGateway":false,"socket":"%s"}' \
		"$r" "$(lab_master "$r")" "$r" "$(agent_sock 1)" >"$CONF/rail-$r.json"
done

kib() { awk -v k="$1" '/^'"$1"':/ {print $2}' "/proc/$pid/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
sleep 2
rss_empty=$(kib VmRSS)

# The pods: netns and eth0 in two batches (one ip process each).
for ((p = 1; p <= PODS; p++)); do echo "netns add $LAB-b$p"; done >"$CONF/netns.batch"
for ((p = 1; p <= PODS; p++)); do echo "link add calib$p type veth peer name eth0 netns $LAB-b$p"; done >"$CONF/veth.batch"
ip -batch "$CONF/netns.batch" || exit 1
ip -n "$node" -batch "$CONF/veth.batch" || exit 1
[ -n "$saved_rcu" ] && echo 1 >/sys/kernel/rcu_expedited
fill=$(lab_in "$node" "$FILL" --plugin "$LAB_BUILD/railnet" --socket "$(agent_sock 1)" \
	--conf-dir "$CONF" --rails "$RAILS" --pods "$PODS" --netns-prefix "$LAB-b" --threads 4) ||
	{ echo "bench_scrape: filling the node failed"; exit 1; }
[ -n "$saved_rcu" ] && echo "$saved_rcu" >/sys/kernel/rcu_expedited
sleep 5
rss_idle=$(kib VmRSS)

scrape() { lab_in "$node" curl -sf -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$PORT/metrics"; }
echo 5 >"/proc/$pid/clear_refs"
times="" bytes=0
for ((i = 0; i < SCRAPES; i++)); do
	read -r t bytes < <(scrape) || { echo "bench_scrape: scrape failed"; exit 1; }
	times+="$t "
done
rss_after=$(kib VmRSS)
hwm=$(kib VmHWM)
body=$(lab_in "$node" curl -sf "http://127.0.0.1:$PORT/metrics")
lines=$(wc -l <<<"$body")
nics=$(awk '/^railnet_datapath_nics\{/ {print $2}' <<<"$body")
unset body
[ "$nics" = $((PODS * RAILS)) ] || { echo "bench_scrape: $nics datapath entries, not $((PODS * RAILS))"; exit 1; }

# dp->lock while scrapes run back to back, against the same calls idle.
key=$(printf '{"network":"gpu1-macvlan","containerID":"%s","ifName":"net1"}' \
	"$("$FILL" --container-id 1)")
get_ms() { # <n>: the max wall time of n datapath.get, in ms
	local i s e max=0
	for ((i = 0; i < $1; i++)); do
		s=$(date +%s%N)
		railnetctl_n 1 call datapath.get "$key" >/dev/null || return 1
		e=$(date +%s%N)
		max=$(((e - s) > max ? (e - s) : max))
	done
	awk -v ns="$max" 'BEGIN { printf "%.1f", ns / 1e6 }'
}
get_idle=$(get_ms 40)
(while :; do scrape >/dev/null; done) &
loop=$!
get_busy=$(get_ms 40)
kill "$loop" 2>/dev/null
wait "$loop" 2>/dev/null

# Not the scrape's: what a listing of every entry leaves behind, for scale.
railnetctl_n 1 call datapath.list '{}' >/dev/null
rss_list=$(kib VmRSS)

stats() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 * 1000 } END { printf "%.1f %.1f %.1f", v[int((NR + 1) / 2)], v[1], v[int(NR * 0.9 + 0.5)] }'; }
read -r med min p90 <<<"$(stats <<<"$times")"
status=0
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "ok" : "MISSED" }'; }
row() { # <label> <value> <unit> <target>
	local ratio v
	ratio=$(awk -v v="$2" -v t="$4" 'BEGIN { printf "%.2f", v / t }')
	v=$(verdict "$2" "$4")
	[ "$v" = ok ] || status=1
	printf '  %-34s %8s %-4s ratio %s (target <= %s %s) %s\n' "$1" "$2" "$3" "$ratio" "$4" "$3" "$v"
}
echo "railnetd with $PODS pods x $RAILS NICs ($nics datapath entries, made in $(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$fill") s)"
echo "  /metrics: $lines lines, $((bytes / 1024)) KiB; scrape wall time over $SCRAPES: median $med ms, min $min ms, p90 $p90 ms"
printf '  %-34s %8s MiB\n' "RSS with no entries" "$(mib "$rss_empty")"
row "RSS idle, $nics entries" "$(mib "$rss_idle")" MiB $RSS_TARGET_MIB
row "RSS after $SCRAPES scrapes" "$(mib "$rss_after")" MiB $RSS_TARGET_MIB
row "peak RSS (VmHWM) during scrapes" "$(mib "$hwm")" MiB $RSS_TARGET_MIB
row "scrape wall time (median)" "$med" ms $SCRAPE_TARGET_MS
printf '  %-34s %8s ms idle, %s ms while scraping back to back\n' "datapath.get, max of 40" "$get_idle" "$get_busy"
printf '  %-34s %8s MiB (not a scrape: the control op, for scale)\n' "RSS after one datapath.list" "$(mib "$rss_list")"
exit $status

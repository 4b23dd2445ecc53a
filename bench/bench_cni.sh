#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# CNI ADD and DEL latency: railnet against the reference chain
# macvlan + host-local + sbr (/usr/lib/cni), on the same lab in the same run.
#   - per NIC: one rail NIC added to (then deleted from) a pod;
#   - a full pod: all RAILS NICs added one after the other, then deleted;
#   - railnet ADD with detectIPConflict on against off.
# Like for like: railnet's gateway check on, its conflict probe off (the
# reference does neither).  build/bench/cni_timer runs each chain from inside
# the node's netns, as a runtime would, and reports its wall time.
#   BENCH_ITERS=N (default 15)  BENCH_RAILS=R (default 8)
set -u
cd "$(dirname "$0")/.."
. selftests/lib/lab.sh
. selftests/lib/agent.sh
ITERS=${BENCH_ITERS:-15}
RAILS=${BENCH_RAILS:-8}
TIMER=$LAB_BUILD/bench/cni_timer
ADD_TARGET=0.2
DEL_TARGET=0.25
CONFLICT_TARGET_MS=5

[ -x "$TIMER" ] || { echo "bench_cni: $TIMER missing (make)"; exit 1; }
[ -x /usr/lib/cni/macvlan ] || { echo "bench_cni: SKIP: /usr/lib/cni/macvlan missing (containernetworking-plugins)"; exit 0; }
if ! why=$(lab_require); then echo "bench_cni: SKIP: $why"; exit 0; fi
trap lab_down EXIT
lab_up 1 "$RAILS" >/dev/null || exit 1
agent_start 1 || exit 1
CONF=$LAB_DIR/bench
mkdir -p "$CONF"

railnet_conf() { # <rail> <conflict:true|false>
	printf '{"cniVersion":"1.0.0","name":"gpu%s-macvlan","plugins":[{"type":"railnet","master":"%s","mode":"bridge","ippools":{"ipv4":["%s"]},"detectGateway":true,"detectIPConflict":%s,"socket":"%s"}]}' \
		"$1" "$(lab_master "$1")" "$(agent_pool4 "$1")" "$2" "$(agent_sock 1)"
}
reference_conf() { # <rail>
	local net=172.16.$((10 + $1))
	printf '{"cniVersion":"1.0.0","name":"ref%s","plugins":[{"type":"macvlan","master":"%s","mode":"bridge","ipam":{"type":"host-local","dataDir":"%s/host-local","ranges":[[{"subnet":"%s.0/24","rangeStart":"%s.100","rangeEnd":"%s.199","gateway":"%s.254"}]],"routes":[{"dst":"172.16.0.0/16","gw":"%s.254"}]}},{"type":"sbr"}]}' \
		"$1" "$(lab_master "$1")" "$CONF" "$net" "$net" "$net" "$net" "$net"
}
for ((r = 1; r <= RAILS; r++)); do
	railnet_conf "$r" false >"$CONF/railnet-$r.json"
	railnet_conf "$r" true >"$CONF/railnet-conflict-$r.json"
	reference_conf "$r" >"$CONF/reference-$r.json"
done

# time_op <cmd> <pod> <ifname> <conflist>: prints microseconds, or fails.
time_op() {
	CNI_PATH="$LAB_BUILD:/usr/lib/cni" "$TIMER" "/var/run/netns/$(lab_node_ns 1)" "$1" \
		"$(lab_pod_cid 1 "$2")" "/var/run/netns/$(lab_pod_ns 1 "$2")" "$3" "$4"
}
# Each timed step starts once the previous one's background work has
# settled - the kernel's cleanup of a deleted netns, railnet's deferred link
# deletion after DEL answered - so that no chain is timed against the
# leftovers of another's (or its own) last step.  A pod's NICs are still
# added back to back, as Multus does.
settle() { sleep "${BENCH_SETTLE_S:-0.05}"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }

declare -A samples
record() { samples[$1]+="$2 "; }

# One pod at a time, railnet and the reference interleaved so that both
# see the same machine load.
pod=0
for ((i = 0; i < ITERS; i++)); do
	for kind in railnet reference railnet-conflict; do
		pod=$((pod + 1))
		lab_pod_add 1 "$pod" || exit 1
		settle
		t=$(time_op ADD "$pod" net1 "$CONF/$kind-1.json") || { echo "bench_cni: $kind ADD failed"; exit 1; }
		record "$kind-add" "$t"
		settle
		t=$(time_op DEL "$pod" net1 "$CONF/$kind-1.json") || { echo "bench_cni: $kind DEL failed"; exit 1; }
		record "$kind-del" "$t"
		lab_pod_del 1 "$pod"
	done
done
# A full pod: every rail, as Multus does it, one NIC after the other.
for ((i = 0; i < ITERS / 3 + 1; i++)); do
	for kind in railnet reference; do
		pod=$((pod + 1))
		lab_pod_add 1 "$pod" || exit 1
		settle
		total=0
		for ((r = 1; r <= RAILS; r++)); do
			t=$(time_op ADD "$pod" "net$r" "$CONF/$kind-$r.json") || { echo "bench_cni: $kind ADD rail $r failed"; exit 1; }
			total=$((total + t))
		done
		record "$kind-pod-add" "$total"
		settle
		total=0
		for ((r = RAILS; r >= 1; r--)); do
			t=$(time_op DEL "$pod" "net$r" "$CONF/$kind-$r.json") || { echo "bench_cni: $kind DEL rail $r failed"; exit 1; }
			total=$((total + t))
		done
		record "$kind-pod-del" "$total"
		lab_pod_del 1 "$pod"
	done
done

status=0
report() { # <label> <railnet-key> <reference-key> <target>
	local a b ratio verdict
	a=$(echo "${samples[$2]}" | tr ' ' '\n' | grep . | median)
	b=$(echo "${samples[$3]}" | tr ' ' '\n' | grep . | median)
	ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')
	verdict=$(awk -v r="$ratio" -v t="$4" 'BEGIN { print (r <= t) ? "ok" : "MISSED" }')
	[ "$verdict" = ok ] || status=1
	printf '  %-26s railnet %8s ms   reference %8s ms   ratio %s (target <= %s) %s\n' \
		"$1" "$(ms "$a")" "$(ms "$b")" "$ratio" "$4" "$verdict"
}
echo "CNI latency, median of $ITERS (full pod: $((ITERS / 3 + 1))), $RAILS rails; reference = macvlan + host-local + sbr"
report "ADD, one NIC" railnet-add reference-add $ADD_TARGET
report "DEL, one NIC" railnet-del reference-del $DEL_TARGET
report "ADD, pod with $RAILS NICs" railnet-pod-add reference-pod-add $ADD_TARGET
report "DEL, pod with $RAILS NICs" railnet-pod-del reference-pod-del $DEL_TARGET
off=$(echo "${samples[railnet-add]}" | tr ' ' '\n' | grep . | median)
on=$(echo "${samples[railnet-conflict-add]}" | tr ' ' '\n' | grep . | median)
delta=$((on - off))
verdict=$(awk -v d="$delta" -v t="$CONFLICT_TARGET_MS" 'BEGIN { print (d / 1000 <= t) ? "ok" : "MISSED" }')
[ "$verdict" = ok ] || status=1
printf '  %-26s on %8s ms   off %8s ms   +%s ms (target <= +%s ms) %s\n' "ADD, IP conflict probe" \
	"$(ms "$on")" "$(ms "$off")" "$(ms "$delta")" "$CONFLICT_TARGET_MS" "$verdict"
exit $status

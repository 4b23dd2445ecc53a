#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cross-rail reply through railnet's eBPF return path against the same
# pod set up Spiderpool's way, on the same lab in the same run:
#   - TCP throughput (iperf3), the pod sending (its data takes the return
#     path) and the pod receiving (its ACKs do);
#   - TCP request/response latency and rate, 1 byte each way
#     (build/bench/tcp_rr, netperf's TCP_RR).
# Targets: railnet >= 1.0x the reference's throughput, <= 1.0x its latency.
#
# Node 1 holds two pods with a NIC on each of rails 1 and 2, both made by the
# railnet CNI plugin (same macvlans, same addresses and main-table routes):
#   railnet    its NICs attached to the datapath (tc hooks, map entries);
#   reference  no datapath; per NIC k a table 100+k with the subnet route and
#              a default via k's gateway, and `ip rule from <addr> lookup
#              100+k` (Spiderpool's policy routing).
# A peer on node 2 has a NIC on rail 2 only and talks to each pod's net1
# through both gateways.  The pod's main table would send the reply out of
# net2 (its connected route to the peer's subnet); railnet's program and the
# reference's rule each send it by net1.  Each run checks that they did
# (railnet: its redirect counter; reference: net1's tx bytes).
#   BENCH_RUNS=N (default 5)  BENCH_SECONDS=S per run (default 3)
#   BENCH_VERBOSE=1: every run's numbers too
set -u
cd "$(dirname "$0")/.."
. selftests/lib/lab.sh
. selftests/lib/agent.sh
. selftests/lib/datapath.sh
RUNS=${BENCH_RUNS:-5}
SECS=${BENCH_SECONDS:-3}
RR=$LAB_BUILD/bench/tcp_rr

[ -x "$RR" ] || { echo "bench_return_path: $RR missing (make)"; exit 1; }
command -v iperf3 >/dev/null || { echo "bench_return_path: SKIP: iperf3 missing"; exit 0; }
if ! why=$(lab_require); then echo "bench_return_path: SKIP: $why"; exit 0; fi
trap 'agent_stop 1; agent_stop 2; lab_down' EXIT
lab_up 2 2 >/dev/null || exit 1
for n in 1 2; do agent_start "$n" || exit 1; done
lab_pod_add 1 1 && lab_pod_add 1 2 && lab_pod_add 2 1 || exit 1
pod_railnet=$(lab_pod_ns 1 1) pod_ref=$(lab_pod_ns 1 2) peer=$(lab_pod_ns 2 1)

for r in 1 2; do
	dp_pod_nic 1 1 "$r" || { echo "bench_return_path: railnet pod, rail $r failed"; exit 1; }
	lab_cni 1 2 "net$r" ADD "$(dp_conf "$r" 1)" >/dev/null ||
		{ echo "bench_return_path: reference pod, rail $r failed"; exit 1; }
	addr=$(dp_addr4 1 2 "$r")
	lab_in "$pod_ref" ip route add "$(lab_subnet4 "$r")" dev "net$r" src "$addr" table $((100 + r))
	lab_in "$pod_ref" ip route add default via "$(lab_gw4 "$r")" dev "net$r" table $((100 + r))
	lab_in "$pod_ref" ip rule add from "$addr" lookup $((100 + r))
done
lab_cni 2 1 net2 ADD "$(dp_conf 2 2)" >/dev/null || { echo "bench_return_path: peer failed"; exit 1; }
declare -A target=([railnet]=$(dp_addr4 1 1 1) [reference]=$(dp_addr4 1 2 1))
declare -A pod=([railnet]=$pod_railnet [reference]=$pod_ref)
for kind in railnet reference; do
	lab_in "$peer" ping -c3 -i0.05 -W2 "${target[$kind]}" >/dev/null ||
		{ echo "bench_return_path: the peer does not reach the $kind pod"; exit 1; }
done

# What shows that a run's replies left by net1.
evidence() { # <kind>
	if [ "$1" = railnet ]; then
		dp_get 1 1 1 .counters.redirects
	else
		lab_in "$pod_ref" cat /sys/class/net/net1/statistics/tx_bytes
	fi
}
wait_listen() { # <netns> <port>
	local i
	for ((i = 0; i < 100; i++)); do
		[ -n "$(lab_in "$1" ss -Hltn "sport = :$2")" ] && return 0
		sleep 0.02
	done
	return 1
}

declare -A samples
record() { samples[$1]+="$2 "; }
port=5201
iperf() { # <kind> <reverse: -R or ""> -> bits/s received by the receiver
	local out
	port=$((port + 1))
	lab_in "${pod[$1]}" iperf3 -s -1 -B "${target[$1]}" -p "$port" >/dev/null 2>&1 &
	wait_listen "${pod[$1]}" "$port" || return 1
	out=$(lab_in "$peer" iperf3 -c "${target[$1]}" -p "$port" -t "$SECS" -O 1 $2 -J) || return 1
	wait
	jq -r '.end.sum_received.bits_per_second' <<<"$out"
}
rr() { # <kind> -> "p50_us tps"
	local out
	port=$((port + 1))
	lab_in "${pod[$1]}" "$RR" serve --bind "${target[$1]}" --port "$port" --timeout $((SECS + 30)) &
	wait_listen "${pod[$1]}" "$port" || return 1
	out=$(lab_in "$peer" "$RR" run --to "${target[$1]}" --port "$port" --seconds "$SECS") || return 1
	wait
	sed -E 's/.*tps=([0-9.]+) p50_us=([0-9.]+).*/\2 \1/' <<<"$out"
}

# Railnet and the reference interleaved, so that both see the same load,
# each going first every other time (the load drifts).
for ((i = 0; i < RUNS; i++)); do
	order="railnet reference"
	((i % 2)) && order="reference railnet"
	for kind in $order; do
		before=$(evidence "$kind")
		v=$(iperf "$kind" -R) || { echo "bench_return_path: iperf3 -R to $kind failed"; exit 1; }
		record "$kind-tx" "$v"
		tx_bits=$v
		v=$(iperf "$kind" "") || { echo "bench_return_path: iperf3 to $kind failed"; exit 1; }
		record "$kind-rx" "$v"
		read -r p50 tps <<<"$(rr "$kind")" || { echo "bench_return_path: tcp_rr to $kind failed"; exit 1; }
		record "$kind-rr" "$p50"
		record "$kind-tps" "$tps"
		after=$(evidence "$kind")
		# railnet: every reply segment was redirected; reference: net1
		# sent at least the bulk the pod sent (the iperf3 -R run).
		if [ "$kind" = railnet ]; then
			[ "$((after - before))" -gt 1000 ] ||
				{ echo "bench_return_path: railnet's replies were not redirected ($before -> $after)"; exit 1; }
		else
			awk -v a="$after" -v b="$before" -v bits="$tx_bits" -v s="$SECS" \
				'BEGIN { exit !((a - b) * 8 >= 0.5 * bits * s) }' ||
				{ echo "bench_return_path: the reference's replies did not leave by net1 ($before -> $after bytes)"; exit 1; }
		fi
	done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
if [ -n "${BENCH_VERBOSE:-}" ]; then
	for k in "${!samples[@]}"; do echo "  # $k: ${samples[$k]}"; done | sort
fi
status=0
report() { # <label> <key> <unit> <scale> <cmp: ge|le> <target>
	local a b ratio verdict
	a=$(median <<<"${samples[railnet-$2]}")
	b=$(median <<<"${samples[reference-$2]}")
	# The ratio of each pair of back-to-back runs, then their median: the
	# machine's load drifts between runs more than within a pair.
	ratio=$(paste -d' ' <(tr ' ' '\n' <<<"${samples[railnet-$2]}" | grep .) \
		<(tr ' ' '\n' <<<"${samples[reference-$2]}" | grep .) |
		awk '{ print $1 / $2 }' | median | awk '{ printf "%.3f", $1 }')
	verdict=$(awk -v r="$ratio" -v t="$6" -v c="$5" 'BEGIN { print ((c == "ge" ? r >= t : r <= t) ? "ok" : "MISSED") }')
	[ "$verdict" = ok ] || status=1
	printf '  %-30s railnet %9s %-6s reference %9s %-6s ratio %s (target %s %s) %s\n' "$1" \
		"$(awk -v v="$a" -v s="$4" 'BEGIN { printf "%.2f", v / s }')" "$3" \
		"$(awk -v v="$b" -v s="$4" 'BEGIN { printf "%.2f", v / s }')" "$3" \
		"$ratio" "$([ "$5" = ge ] && echo '>=' || echo '<=')" "$6" "$verdict"
}
echo "cross-rail reply (peer on rail 2 -> pod's net1 through both gateways), median of $RUNS runs of $SECS s"
echo "(ratio: median of the ratios of back-to-back pairs);"
echo "reference = ip rule from <addr> lookup <table> + a table per NIC (Spiderpool), no eBPF"
report "TCP throughput, pod sends" tx Gbit/s 1e9 ge 1.0
report "TCP throughput, pod receives" rx Gbit/s 1e9 ge 1.0
report "TCP_RR latency (p50, 1 byte)" rr us 1 le 1.0
report "TCP_RR transactions/s" tps k/s 1e3 ge 1.0
exit $status

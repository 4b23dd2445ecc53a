#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cross-rail reply through railnet's eBPF return path against the same
# pod set up Spiderpool's way, on the same lab in the same run:
#   - TCP throughput (iperf3), the pod sending (its data takes the return
#     path) and the pod receiving (its ACKs do);
#   - TCP request/response latency and rate, 1 byte each way
#     (build/bench/tcp_rr, netperf's TCP_RR).
# Targets: railnet >= 1.0x the reference's throughput, <= 1.0x its latency.
# Each ratio is printed with its 95% confidence interval: this lab's
# run-to-run noise is several percent, more than what the redirect costs.
#
# Node 1 holds two pods with a NIC on each of rails 1 and 2, both made by the
# railnet CNI plugin (same macvlans, same addresses and main-table routes,
# both on the datapath: the same hooks count and track their gateways):
#   railnet    nothing else: the program moves the reply;
#   reference  per NIC k a table 100+k with the subnet route and a default
#              via k's gateway, and `ip rule from <addr> lookup 100+k`
#              (Spiderpool's policy routing): the reply takes net1's route
#              and the program passes it.
# So the two differ only in how the reply finds net1.
# A peer on node 2 has a NIC on rail 2 only and talks to each pod's net1
# through both gateways.  The pod's main table would send the reply out of
# net2 (its connected route to the peer's subnet); railnet's program and the
# reference's rule each send it by net1.  Each run checks that they did
# (railnet: its redirect counter; reference: net1's tx bytes).
#
# A third kind measures the noise floor: "bound" is the railnet pod with its
# server bound to net1 (SO_BINDTODEVICE), so that its replies take net1's
# route and the program passes them (no redirect): bound against reference
# compares two setups that do the same work per packet.
#   BENCH_RUNS=N (default 9)  BENCH_SECONDS=S per run (default 2)
#   BENCH_CONTROL=0: railnet and reference only
#   BENCH_VERBOSE=1: every run's numbers too
set -u
cd "$(dirname "$0")/.."
. selftests/lib/lab.sh
. selftests/lib/agent.sh
. selftests/lib/datapath.sh
RUNS=${BENCH_RUNS:-9}
SECS=${BENCH_SECONDS:-2}
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
target[bound]=${target[railnet]}
declare -A pod=([railnet]=$pod_railnet [reference]=$pod_ref [bound]=$pod_railnet)
# The server's own socket options: iperf3's -B ADDR%DEV, tcp_rr's --dev.
declare -A iperf_dev=([bound]=%net1) rr_dev=([bound]="--dev net1")
kinds="railnet reference"
[ "${BENCH_CONTROL:-1}" = 0 ] || kinds+=" bound"
for kind in railnet reference; do
	lab_in "$peer" ping -c3 -i0.05 -W2 "${target[$kind]}" >/dev/null ||
		{ echo "bench_return_path: the peer does not reach the $kind pod"; exit 1; }
done

# What shows that a run's replies left by net1.
evidence() { # <kind>
	if [ "$1" = railnet ]; then
		dp_get 1 1 1 .counters.redirects
	else
		lab_in "${pod[$1]}" cat /sys/class/net/net1/statistics/tx_bytes
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
	lab_in "${pod[$1]}" iperf3 -s -1 -B "${target[$1]}${iperf_dev[$1]:-}" -p "$port" >/dev/null 2>&1 &
	wait_listen "${pod[$1]}" "$port" || return 1
	out=$(lab_in "$peer" iperf3 -c "${target[$1]}" -p "$port" -t "$SECS" -O 1 $2 -J) || return 1
	wait
	jq -r '.end.sum_received.bits_per_second' <<<"$out"
}
rr() { # <kind> -> "p50_us tps"
	local out
	port=$((port + 1))
	# shellcheck disable=SC2086 # rr_dev: an option and its argument
	lab_in "${pod[$1]}" "$RR" serve --bind "${target[$1]}" ${rr_dev[$1]:-} --port "$port" \
		--timeout $((SECS + 30)) &
	wait_listen "${pod[$1]}" "$port" || return 1
	out=$(lab_in "$peer" "$RR" run --to "${target[$1]}" --port "$port" --seconds "$SECS") || return 1
	wait
	sed -E 's/.*tps=([0-9.]+) p50_us=([0-9.]+).*/\2 \1/' <<<"$out"
}

# The kinds interleaved, so that all see the same load: the reference in
# the middle, next to each kind it is divided by, and the others first every
# other run (the load drifts).
for ((i = 0; i < RUNS; i++)); do
	order=$kinds
	((i % 2)) && order=$(tr ' ' '\n' <<<"$kinds" | tac | tr '\n' ' ')
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
		# railnet: every reply segment was redirected; the others: net1
		# sent at least the bulk the pod sent (the iperf3 -R run).
		if [ "$kind" = railnet ]; then
			[ "$((after - before))" -gt 1000 ] ||
				{ echo "bench_return_path: railnet's replies were not redirected ($before -> $after)"; exit 1; }
		else
			awk -v a="$after" -v b="$before" -v bits="$tx_bits" -v s="$SECS" \
				'BEGIN { exit !((a - b) * 8 >= 0.5 * bits * s) }' ||
				{ echo "bench_return_path: the $kind pod's replies did not leave by net1 ($before -> $after bytes)"; exit 1; }
		fi
	done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
if [ -n "${BENCH_VERBOSE:-}" ]; then
	for k in "${!samples[@]}"; do echo "  # $k: ${samples[$k]}"; done | sort
fi
status=0
# Kind <1>'s ratio to the reference in each back-to-back pair, for key <2>:
# the machine's load drifts between runs more than within a pair.
pair_ratios() {
	paste -d' ' <(tr ' ' '\n' <<<"${samples[$1-$2]}" | grep .) \
		<(tr ' ' '\n' <<<"${samples[reference-$2]}" | grep .) | awk '{ print $1 / $2 }'
}
# "median low high": the median of the ratios on stdin and its 95%
# confidence interval, distribution-free: the k-th smallest and k-th largest
# ratio, k the largest with P(Binomial(n, 1/2) < k) <= 2.5% (none below 6).
median_ci() {
	sort -g | awk '{ v[NR] = $1 }
	END {
		n = NR; p = 0.5 ^ n; cum = 0; k = 0
		for (j = 0; j < n; j++) {
			cum += p
			if (cum > 0.025)
				break
			k = j + 1
			p = p * (n - j) / (j + 1)
		}
		med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
		if (k)
			printf "%.3f %.3f %.3f\n", med, v[k], v[n + 1 - k]
		else
			printf "%.3f - -\n", med
	}'
}
report() { # <label> <key> <unit> <scale> <cmp: ge|le> <target>
	local a b med lo hi verdict ci
	a=$(median <<<"${samples[railnet-$2]}")
	b=$(median <<<"${samples[reference-$2]}")
	read -r med lo hi <<<"$(pair_ratios railnet "$2" | median_ci)"
	# ok: the median meets the target; within noise: it does not, but the
	# interval reaches it; MISSED: the whole interval is on the wrong side.
	verdict=$(awk -v m="$med" -v lo="$lo" -v hi="$hi" -v t="$6" -v c="$5" 'BEGIN {
		edge = (c == "ge") ? hi : lo
		if (c == "ge" ? m >= t : m <= t) print "ok"
		else if (edge != "-" && (c == "ge" ? edge >= t : edge <= t)) print "within noise"
		else print "MISSED" }')
	[ "$verdict" = MISSED ] && status=1
	ci="[$lo, $hi]"
	[ -n "${samples[bound-$2]:-}" ] &&
		ci+=" $(pair_ratios bound "$2" | median_ci | awk '{ printf "(bound %s [%s, %s])", $1, $2, $3 }')"
	printf '  %-28s railnet %7s %-6s reference %7s %-6s ratio %s %s, target %s %s: %s\n' "$1" \
		"$(awk -v v="$a" -v s="$4" 'BEGIN { printf "%.2f", v / s }')" "$3" \
		"$(awk -v v="$b" -v s="$4" 'BEGIN { printf "%.2f", v / s }')" "$3" \
		"$med" "$ci" "$([ "$5" = ge ] && echo '>=' || echo '<=')" "$6" "$verdict"
}
echo "cross-rail reply (peer on rail 2 -> pod's net1 through both gateways), median of $RUNS runs of $SECS s"
echo "(ratio: median of the ratios of back-to-back pairs [its 95% confidence interval]);"
echo "reference = the same pod + ip rule from <addr> lookup <table> + a table per NIC (Spiderpool)"
[[ $kinds == *bound* ]] &&
	echo "bound = the railnet pod's server bound to net1: no redirect, the noise floor"
report "TCP throughput, pod sends" tx Gbit/s 1e9 ge 1.0
report "TCP throughput, pod receives" rx Gbit/s 1e9 ge 1.0
report "TCP_RR latency (p50, 1 byte)" rr us 1 le 1.0
report "TCP_RR transactions/s" tps k/s 1e3 ge 1.0
exit $status

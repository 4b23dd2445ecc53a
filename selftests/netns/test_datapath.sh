#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The eBPF datapath end to end: cross-rail replies leave by the NIC that owns
# their source on every rail (without railnet they leave by eth0 and are
# lost), RDMA-style oif-bound lookups find each rail's gateway, no ip rule,
# counters and gateway state in railnetctl and /metrics, readable pinned maps.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"
. "$(dirname "$0")/../lib/datapath.sh"

if ! why=$(lab_require); then tap_skip "datapath" "$why"; tap_done; exit; fi
TAP_LOG=$(mktemp)
trap 'agent_stop 1; agent_stop 2; lab_down; rm -f "$TAP_LOG"' EXIT
RAILS=2
lab_up 2 $RAILS
extra='"metrics":{"listen":"127.0.0.1:9402"},"gateway":{"probeIntervalMs":200,"downAfter":3}'
for n in 1 2; do agent_start "$n" "$(agent_config "$n" "$extra")" || exit 1; done
# Pod 1/1 and its peer 2/1 have a NIC on every rail; pod 1/2 only on rail 1.
lab_pod_add 1 1; lab_pod_add 2 1; lab_pod_add 1 2
for ((r = 1; r <= RAILS; r++)); do
	tap_ok "rail $r: NIC made by the plugin and attached, pod 1/1" dp_pod_nic 1 1 "$r"
	tap_ok "rail $r: NIC made by the plugin and attached, pod 2/1" dp_pod_nic 2 1 "$r"
done
tap_ok "pod 1/2: net1 only" dp_pod_nic 1 2 1
# Pools without routes to the other rails, as in a Spiderpool setup: the
# only route to another rail's subnet is eth0's default.
lab_in "$(lab_pod_ns 1 2)" ip route del 172.16.0.0/16 dev net1
pod11=$(lab_pod_ns 1 1) pod12=$(lab_pod_ns 1 2) pod21=$(lab_pod_ns 2 1)

tap_eq "attach is idempotent (same id again)" "$(dp_get 1 1 1 .id)" "$(dp_attach 1 1 1 | jq -r .id)"
tap_eq "attach reports the hooks in use (clsact by default)" "clsact" "$(dp_get 1 1 1 .hooks)"
tap_ok "... a direct-action filter on net1's egress and ingress, and on eth0's egress" bash -c \
	"for h in 'net1 egress' 'net1 ingress' 'eth0 egress'; do
		ip netns exec $(lab_pod_ns 1 1) tc -j filter show dev \$h | jq -e '.[] | select(.options.\"direct-action\")' >/dev/null || exit 1
	done"
tap_eq "no ip rule added in the pod" "3" "$(lab_in "$pod11" ip rule | wc -l)"
tap_eq "... nor an IPv6 one" "2" "$(lab_in "$pod11" ip -6 rule | wc -l)"

for ((r = 1; r <= RAILS; r++)); do
	other=$((r % RAILS + 1))
	before=$(dp_get 1 1 "$r" .counters.redirects)
	# From the peer's NIC on the other rail, through both gateways.  The
	# pod's main table would send the reply out of its net$other (a
	# connected route): the program sends it back by net$r.
	tap_ok "rail $r: a peer on rail $other reaches pod 1/1's net$r through the gateways" \
		lab_in "$pod21" ping -c3 -i0.05 -W2 -I "net$other" "$(dp_addr4 1 1 "$r")"
	after=$(dp_get 1 1 "$r" .counters.redirects)
	tap_ok "rail $r: the replies went back by net$r (redirects $before -> $after)" \
		test "$((after - before))" -ge 3
	tap_eq "rail $r: an oif-bound lookup (RDMA) resolves via net$r's gateway" "$(lab_gw4 "$r")" \
		"$(lab_in "$pod11" ip -o route get "$(dp_addr4 2 1 "$other")" from "$(dp_addr4 1 1 "$r")" oif "net$r" | sed -n 's/.* via \([^ ]*\) .*/\1/p')"
	tap_ok "rail $r: a socket bound to net$r reaches a peer on rail $other" \
		lab_in "$pod11" ping -c1 -W2 -I "net$r" "$(dp_addr4 2 1 "$other")"
done

tap_ok "single-NIC pod: a peer on rail 2 gets its replies (eBPF return path)" \
	lab_in "$pod21" ping -c2 -i0.05 -W2 -I net2 "$(dp_addr4 1 2 1)"
dp_detach 1 2 1 >/dev/null
tap_fails "... and without the program they leave by eth0 and are lost" \
	lab_in "$pod21" ping -c2 -i0.05 -W1 -I net2 "$(dp_addr4 1 2 1)"
tap_eq "detach again is fine" "false" "$(dp_detach 1 2 1 | jq -r .detached)"
tap_eq "get after detach is not_found" "not_found" \
	"$(railnetctl_n 1 call datapath.get "{$(dp_key 1 2 1)}" 2>&1 | sed -n 's/.*(\(.*\))$/\1/p')"
dp_attach 1 2 1 >/dev/null
tap_ok "re-attached: replies come back again" \
	lab_in "$pod21" ping -c2 -i0.05 -W2 -I net2 "$(dp_addr4 1 2 1)"

tap_fails "attach with a missing netns is refused" railnetctl_n 1 call datapath.attach \
	'{"network":"x","containerID":"y","ifName":"net1","netns":"/var/run/netns/nope","ips":[{"address":"172.16.11.9/24"}]}'
tap_fails "attach with a bad address is refused" railnetctl_n 1 call datapath.attach \
	"{$(dp_key 1 1 1),\"netns\":\"/var/run/netns/$pod11\",\"ips\":[{\"address\":\"300.1.1.1/24\"}]}"

# Two pods may hold the same address (from different pools): each keeps its own entry.
tap_ok "railnetctl datapath lists the NICs with pods" bash -c \
	"$LAB_BUILD/railnetctl --socket $(agent_sock 1) datapath | grep -q 'default/pod-1-1 *net1'"
gw=$("$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" -o json gateways)
tap_eq "gateway of pod 1/1 net1 is up" "up" \
	"$(jq -r '.[] | select(.pod=="default/pod-1-1" and .ifName=="net1") | .state' <<<"$gw")"
tap_ok "... with its MAC learnt" test -n "$(jq -r '.[] | select(.pod=="default/pod-1-1" and .ifName=="net1") | .mac // empty' <<<"$gw")"

v=$(sed -n 's/^#define RN_LAYOUT_SUFFIX "\(.*\)"/\1/p' "$LAB_ROOT/include/railnet/datapath.h")
for m in rn_addr rn_aidx rn_ifc rn_iidx rn_nic rn_gw rn_stats; do
	tap_ok "bpftool dumps pinned $m$v readably" bash -c \
		"bpftool map dump pinned $(lab_node_dir 1)/bpffs/$m$v | grep -q '\"ifindex\"\|\"nic\"\|\"last_seen_ns\"\|\"rx_packets\"'"
done

scrape() { lab_in "$(lab_node_ns 1)" curl -sf http://127.0.0.1:9402/metrics; }
series='railnet_datapath_rx_packets_total{namespace="default",pod="pod-1-1",interface="net1",pool="gpu1-net11"}'
rx1=$(scrape | grep -F "$series" | awk '{print $2}')
lab_in "$pod21" ping -c5 -i0.02 -W2 -I net1 "$(dp_addr4 1 1 1)" >/dev/null
rx2=$(scrape | grep -F "$series" | awk '{print $2}')
tap_ok "/metrics: rx of pod 1/1 net1 moves with traffic ($rx1 -> $rx2)" test "${rx2:-0}" -ge "$((${rx1:-0} + 5))"
tap_ok "/metrics: return-path redirects are labelled by pod" grep -q \
	'^railnet_datapath_return_path_redirects_total{namespace="default",pod="pod-1-1",interface="net2",pool="gpu2-net12"} [1-9]' <<<"$(scrape)"

# Gateway down: its address leaves the rail bridge.
rail=$(lab_rail_ns)
gw_state() { "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" -o json gateways |
	jq -r '.[] | select(.pod=="default/pod-1-2" and .ifName=="net1") | .state'; }
wait_state() { for ((i = 0; i < 40; i++)); do [ "$(gw_state)" = "$1" ] && return 0; sleep 0.1; done; return 1; }
lab_in "$rail" ip addr del "$(lab_gw4 1)/24" dev br-r1
tap_ok "gateway address removed: state down within 3 x 200 ms (+ slack)" wait_state down
tap_ok "/metrics: railnet_gateway_up is 0" grep -q \
	'^railnet_gateway_up{namespace="default",pod="pod-1-2",interface="net1",family="ipv4",gateway="172.16.11.254"} 0$' <<<"$(scrape)"
lab_in "$rail" ip addr add "$(lab_gw4 1)/24" dev br-r1
tap_ok "gateway back: state up" wait_state up
tap_ok "an answered probe has an RTT" bash -c \
	"$LAB_BUILD/railnetctl --socket $(agent_sock 1) -o json gateways | jq -e '.[] | select(.pod==\"default/pod-1-2\") | .rttUs' >/dev/null"

# Passive first: a gateway that talks to the NIC costs no probe.
probes() { "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" -o json gateways |
	jq -r '.[] | select(.pod=="default/pod-1-1" and .ifName=="net1" and .family=="ipv4") | .probes'; }
lab_in "$pod11" ping -q -c 60 -i 0.05 -W1 -I net1 "$(lab_gw4 1)" >/dev/null &
sleep 0.5 # a probe may have left just before the first reply
p0=$(probes)
sleep 2
p1=$(probes)
wait
tap_ok "the probe count is read ($p0)" test "$p0" -ge 0
# (one allowed: a stall of the loaded test machine may hold the pings back)
tap_ok "a busy link (2 s of pings with the gateway, 10 probe intervals) costs no probe ($p0 -> $p1)" \
	test "$p1" -le "$((p0 + 1))"
idle_probes() { [ "$(probes)" -ge "$((p1 + 3))" ]; }
for ((i = 0; i < 30; i++)); do idle_probes && break; sleep 0.1; done
tap_ok "an idle one is probed every interval ($p1 -> $(probes))" idle_probes
tap_done

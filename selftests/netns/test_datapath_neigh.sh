#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Return-path redirects with cold neighbour caches: a reply moved to NIC k
# whose gateway is not resolved yet waits in NIC k's neighbour queue, and
# must then leave by NIC k's neighbour - not with the next hop of the
# interface the main table chose.  Every packet of a short ping gets its
# reply, v4 and v6, on every rail, by the neighbour path (fastRedirect off)
# and with the defaults on a freshly attached NIC; each redirected reply is
# counted once as tx.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"
. "$(dirname "$0")/../lib/datapath.sh"

if ! why=$(lab_require); then tap_skip "datapath neighbours" "$why"; tap_done; exit; fi
TAP_LOG=$(mktemp)
trap 'agent_stop 1; agent_stop 2; lab_down; rm -f "$TAP_LOG"' EXIT
RAILS=2
COUNT=5
lab_up 2 $RAILS
# Node 1 sends every redirected packet through the neighbour layer.
agent_start 1 "$(agent_config 1 '"datapath":{"fastRedirect":false}')" || exit 1
agent_start 2 || exit 1

# A rail NIC with an IPv4 and an IPv6 address, attached with both.
nic_conf() { # <rail> <node>
	printf '{"cniVersion":"1.0.0","name":"gpu%s-macvlan","type":"railnet","master":"%s","ippools":{"ipv4":["%s"],"ipv6":["%s"]},"socket":"%s"}' \
		"$1" "$(lab_master "$1")" "$(agent_pool4 "$1")" "$(agent_pool6 "$1")" "$(agent_sock "$2")"
}
addr6() { ip -n "$(lab_pod_ns "$1" "$2")" -6 -o addr show dev "net$3" scope global | awk '{print $4}' | cut -d/ -f1; }
cidr6() { ip -n "$(lab_pod_ns "$1" "$2")" -6 -o addr show dev "net$3" scope global | awk '{print $4}'; }
nic_attach() { # <n> <p> <r>
	local args
	args=$(printf '{%s,"netns":"/var/run/netns/%s","podNamespace":"default","podName":"pod-%s-%s","master":"%s","ips":[{"address":"%s","gateway":"%s","pool":"%s"},{"address":"%s","gateway":"%s","pool":"%s"}]}' \
		"$(dp_key "$1" "$2" "$3")" "$(lab_pod_ns "$1" "$2")" "$1" "$2" "$(lab_master "$3")" \
		"$(dp_cidr4 "$1" "$2" "$3")" "$(lab_gw4 "$3")" "$(agent_pool4 "$3")" \
		"$(cidr6 "$1" "$2" "$3")" "$(lab_gw6 "$3")" "$(agent_pool6 "$3")")
	railnetctl_n "$1" call datapath.attach "$args" >/dev/null
}
nic_add() { # <n> <p> <r>
	lab_cni "$1" "$2" "net$3" ADD "$(nic_conf "$3" "$1")" >/dev/null && nic_attach "$@"
}

# Every one of COUNT echo requests answered.
all_replies() { # <netns> <ping args...>
	local ns=$1 out
	shift
	out=$(lab_in "$ns" ping -c "$COUNT" -i 0.1 -W 2 "$@" 2>&1)
	grep -q "$COUNT packets transmitted, $COUNT received" <<<"$out" && return 0
	echo "$out" | grep 'packets transmitted'
	return 1
}

# The replying pod knows no neighbour, while the gateway still knows the
# pod (a warm-up ping): the requests arrive with no ARP/NS from the gateway
# that would teach the pod its MAC, so each reply the program moves to NIC k
# finds NIC k's neighbour unresolved and waits in its queue.
cold() { # <replying pod netns> <pinging netns> <ping args...>
	local pod=$1 from=$2
	shift 2
	lab_in "$from" ping -c1 -W2 "$@" >/dev/null
	lab_in "$pod" ip neigh flush all
}

counter() { dp_get "$1" "$2" "$3" ".counters.$4"; }

lab_pod_add 1 1; lab_pod_add 2 1; lab_pod_add 1 2
for ((r = 1; r <= RAILS; r++)); do
	tap_ok "rail $r: v4+v6 NIC attached, pod 1/1" nic_add 1 1 "$r"
	tap_ok "rail $r: v4+v6 NIC attached, pod 2/1" nic_add 2 1 "$r"
done
tap_ok "pod 1/2: net1 only" nic_add 1 2 1
# Its v4 replies to other rails follow eth0's default unless redirected.
lab_in "$(lab_pod_ns 1 2)" ip route del 172.16.0.0/16 dev net1
pod21=$(lab_pod_ns 2 1)

# Cross-rail: the pod's main table sends the reply out of net$other (a
# connected route); the program moves it to net$r, whose gateway is cold.
for ((r = 1; r <= RAILS; r++)); do
	other=$((r % RAILS + 1))
	for fam in 4 6; do
		if [ $fam = 4 ]; then dst=$(dp_addr4 1 1 "$r"); else dst=$(addr6 1 1 "$r"); fi
		cold "$(lab_pod_ns 1 1)" "$pod21" -"$fam" -I "net$other" "$dst"
		red0=$(counter 1 1 "$r" redirects) tx0=$(counter 1 1 "$r" txPackets)
		tap_ok "rail $r v$fam, cold neighbours, neighbour path: all $COUNT replies" \
			all_replies "$pod21" -"$fam" -I "net$other" "$dst"
		red1=$(counter 1 1 "$r" redirects) tx1=$(counter 1 1 "$r" txPackets)
		tap_eq "rail $r v$fam: $COUNT redirects, each counted once as tx" \
			"$COUNT $COUNT" "$((red1 - red0)) $((tx1 - tx0))"
	done
done

# Single-NIC pod: the v4 reply leaves by eth0 (after 169.254.1.1 resolves)
# and is moved to net1, whose gateway is cold.
dst=$(dp_addr4 1 2 1)
cold "$(lab_pod_ns 1 2)" "$pod21" -I net2 "$dst"
red0=$(counter 1 2 1 redirects)
tap_ok "eth0 -> net1, cold neighbours: all $COUNT replies" all_replies "$pod21" -I net2 "$dst"
tap_eq "eth0 -> net1: $COUNT redirects" "$COUNT" "$(($(counter 1 2 1 redirects) - red0))"

# Node 2 runs the defaults: the fast path once the gateway's MAC is learnt.
# A NIC attached afresh knows no gateway MAC and the pod no neighbour: the
# first reply may take the neighbour path (unless a probe or an ARP/NS from
# the gateway taught the MAC first), the rest take the fast one.
for fam in 4 6; do
	if [ $fam = 4 ]; then dst=$(dp_addr4 2 1 1); else dst=$(addr6 2 1 1); fi
	lab_in "$(lab_pod_ns 1 1)" ping -c1 -W2 -"$fam" -I net2 "$dst" >/dev/null
	dp_detach 2 1 1 >/dev/null
	nic_attach 2 1 1
	lab_in "$(lab_pod_ns 2 1)" ip neigh flush all
	tap_ok "defaults, v$fam, fresh NIC, cold neighbours: all $COUNT replies" \
		all_replies "$(lab_pod_ns 1 1)" -"$fam" -I net2 "$dst"
	tap_eq "defaults, v$fam: $COUNT redirects, each counted once as tx" \
		"$COUNT $COUNT" "$(counter 2 1 1 redirects) $(counter 2 1 1 txPackets)"
	fast=$(counter 2 1 1 redirectsFast)
	tap_ok "defaults, v$fam: the fast path carries the replies once the MAC is learnt ($fast fast)" \
		test "$fast" -ge "$((COUNT - 1))"
done

# Idle, a NIC's gateways are probed - ARP and NS sent from its master as
# the NIC would send them - and the answers reach the NIC's ingress program.
gw_probe() { # <family>: "<state> <has rtt>" of pod 1/1 net1's gateway
	railnetctl_n 1 -o json gateways | jq -r --arg f "$1" \
		'.[] | select(.pod=="default/pod-1-1" and .ifName=="net1" and .family==$f) | "\(.state) \(.rttUs != null) \(.probes > 0)"'
}
sleep 2.5 # more than two probe intervals of silence
for fam in ipv4 ipv6; do
	tap_eq "idle $fam gateway: probed, answered (up, with an RTT)" "up true true" "$(gw_probe $fam)"
done
tap_done

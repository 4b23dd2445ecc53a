#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CNI plugin end to end on the lab, invoked as Multus does: pods with a
# NIC per rail get addresses from railnetd, reach each other on every rail,
# CHECK/DEL/GC/STATUS behave, failures roll everything back.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"

if ! why=$(lab_require); then tap_skip "cni" "$why"; tap_done; exit; fi
trap 'lab_down; rm -f "$TAP_LOG"' EXIT
RAILS=2
lab_up 2 $RAILS
# The plugin's own conflict probe is under test here: the agent does not
# probe ahead (test_conflict_probe.sh covers that).
for n in 1 2; do agent_start "$n" "$(agent_config "$n" '"conflictProbe":{"depth":0}')" || exit 1; lab_pod_add "$n" 1; done

conf() { # <rail> <node> [extra members]
	printf '{"cniVersion":"1.0.0","name":"gpu%s-macvlan","type":"railnet","master":"%s","ippools":{"ipv4":["%s"]},"detectGateway":true,"detectIPConflict":true,"socket":"%s"%s}' \
		"$1" "$(lab_master "$1")" "$(agent_pool4 "$1")" "$(agent_sock "$2")" "${3:+,$3}"
}
pod_addr() { ip -n "$(lab_pod_ns "$1" "$2")" -4 -o addr show dev "$3" 2>/dev/null | awk '{print $4}' | cut -d/ -f1; }

for n in 1 2; do
	for ((r = 1; r <= RAILS; r++)); do
		out=$(lab_cni "$n" 1 "net$r" ADD "$(conf "$r" "$n")")
		tap_eq "ADD node $n rail $r returns a 1.0.0 result" "1.0.0" \
			"$(echo "$out" | jq -r .cniVersion 2>/dev/null || echo "$out" | sed -n 's/.*"cniVersion":"\([^"]*\)".*/\1/p')"
	done
done
for ((r = 1; r <= RAILS; r++)); do
	peer=$(pod_addr 2 1 "net$r")
	tap_ok "rail $r: pod on node 1 reaches pod on node 2 ($peer) by net$r" \
		lab_in "$(lab_pod_ns 1 1)" ping -c1 -W2 -I "net$r" "$peer"
	tap_eq "rail $r: an oif-bound lookup resolves through net$r's gateway" "$(lab_gw4 "$r")" \
		"$(lab_in "$(lab_pod_ns 1 1)" ip -o route get 172.16.99.1 from "$(pod_addr 1 1 "net$r")" oif "net$r" | sed -n 's/.* via \([^ ]*\) .*/\1/p')"
done
tap_eq "the pod's default route stays on eth0" "eth0" \
	"$(lab_in "$(lab_pod_ns 1 1)" ip -o route get 10.233.2.1 | sed -n 's/.* dev \([^ ]*\).*/\1/p')"
tap_eq "no ip rule added in the pod" "3" "$(lab_in "$(lab_pod_ns 1 1)" ip rule | wc -l)"

# CHECK against the ADD's result, then after someone removes the address.
before=$(pod_addr 1 1 net1)
again=$(lab_cni 1 1 net1 ADD "$(conf 1 1)")
tap_eq "ADD again for a NIC that exists is error 107" "107" "$(echo "$again" | sed -n 's/.*"code":\([0-9]*\).*/\1/p')"
tap_eq "... and the NIC keeps its address" "$before" "$(pod_addr 1 1 net1)"
tap_eq "... and the agent keeps its allocation" "1" "$(railnetctl_n 1 allocations | grep -c "$before ")"
lab_pod_add 1 2
res=$(lab_cni 1 2 net1 ADD "$(conf 1 1)")
tap_ok "CHECK passes on an intact NIC" lab_cni 1 2 net1 CHECK "$(conf 1 1 "\"prevResult\":$res")"
lab_in "$(lab_pod_ns 1 2)" ip addr flush dev net1
tap_fails "CHECK fails once the address is removed" lab_cni 1 2 net1 CHECK "$(conf 1 1 "\"prevResult\":$res")"
tap_ok "DEL succeeds" lab_cni 1 2 net1 DEL "$(conf 1 1)"
tap_ok "DEL twice succeeds" lab_cni 1 2 net1 DEL "$(conf 1 1)"
# The agent releases once the link is gone, just after DEL's answer.
released() { ! railnetctl_n 1 allocations | grep -q "$1"; }
for i in $(seq 40); do released pod-1-2 && break; sleep 0.05; done
tap_ok "DEL released the address" released pod-1-2

# DEL with the netns gone.
lab_pod_add 1 3
lab_cni 1 3 net1 ADD "$(conf 1 1)" >/dev/null
lab_pod_del 1 3
tap_ok "DEL with the netns gone succeeds" lab_cni 1 3 net1 DEL "$(conf 1 1)"
tap_eq "... and releases the address" "" "$(railnetctl_n 1 allocations | grep "pod-1-3")"

# Failures roll back: an unreachable gateway.
lab_pod_add 1 4
lab_in "$(lab_rail_ns)" ip addr del "$(lab_gw4 2)/24" dev br-r2
out=$(lab_cni 1 4 net2 ADD "$(conf 2 1)")
tap_eq "unreachable gateway is error 104" "104" "$(echo "$out" | sed -n 's/.*"code":\([0-9]*\).*/\1/p')"
tap_eq "... leaving no link in the pod" "" "$(ip -n "$(lab_pod_ns 1 4)" -o link show net2 2>/dev/null)"
tap_eq "... nor in the node" "" "$(ip -n "$(lab_node_ns 1)" -o link show | grep -v -e ens -e eth0 -e calip -e lo:)"
tap_eq "... nor an allocation" "" "$(railnetctl_n 1 allocations | grep "pod-1-4")"
lab_in "$(lab_rail_ns)" ip addr add "$(lab_gw4 2)/24" dev br-r2

# Addresses already in use on the wire: every free one of node 1's range.
taken=$(railnetctl_n 1 allocations | awk '/gpu1-net11 /{print $2}')
squatted=()
for ((h = 21; h <= 39; h++)); do
	grep -qx "172.16.11.$h" <<<"$taken" && continue
	lab_in "$(lab_rail_ns)" ip addr add "172.16.11.$h/32" dev br-r1 && squatted+=("172.16.11.$h")
done
out=$(lab_cni 1 4 net1 ADD "$(conf 1 1)")
tap_eq "an address in use on the wire is error 105" "105" "$(echo "$out" | sed -n 's/.*"code":\([0-9]*\).*/\1/p')"
tap_eq "... and leaves no allocation" "" "$(railnetctl_n 1 allocations | grep "pod-1-4")"
tap_eq "... nor a link in the pod" "" "$(ip -n "$(lab_pod_ns 1 4)" -o link show net1 2>/dev/null)"
for a in "${squatted[@]}"; do lab_in "$(lab_rail_ns)" ip addr del "$a/32" dev br-r1; done

# Bad input, each with its own error.
code() { echo "$1" | sed -n 's/.*"code":\([0-9]*\).*/\1/p'; }
tap_eq "garbage on stdin is error 6" "6" "$(code "$(lab_cni 1 4 net1 ADD 'not json')")"
tap_eq "unknown cniVersion is error 1" "1" "$(code "$(lab_cni 1 4 net1 ADD "$(conf 1 1 | sed 's/1.0.0/9.9.9/')")")"
tap_eq "a wrong type is error 7" "7" "$(code "$(lab_cni 1 4 net1 ADD "$(conf 1 1 '"mtu":"big"')")")"
tap_eq "CNI_IFNAME over 15 chars is error 4" "4" "$(code "$(lab_cni 1 4 net1234567890123 ADD "$(conf 1 1)")")"
tap_eq "a missing master is error 100" "100" "$(code "$(lab_cni 1 4 net1 ADD "$(conf 1 1 | sed 's/ens1f0np0/ens9f0np0/')")")"
lab_in "$(lab_node_ns 1)" ip link set "$(lab_master 1)" down
tap_eq "a master that is down is error 100" "100" "$(code "$(lab_cni 1 4 net1 ADD "$(conf 1 1)")")"
lab_in "$(lab_node_ns 1)" ip link set "$(lab_master 1)" up
tap_eq "an unknown pool is error 102" "102" "$(code "$(lab_cni 1 4 net1 ADD "$(conf 1 1 | sed 's/gpu1-net11/nosuchpool/')")")"

# GC releases what is not in the valid list; STATUS.
gc='"cni.dev/valid-attachments":[{"containerID":"'$(lab_pod_cid 2 1)'","ifname":"net1"}]'
tap_ok "GC succeeds" lab_cni 2 1 "" GC "$(conf 1 2 "$gc" | sed 's/"1.0.0"/"1.1.0"/')"
tap_eq "GC kept the valid attachment" "1" "$(railnetctl_n 2 allocations | grep -c gpu1-net11)"
tap_ok "STATUS succeeds with the agent up" lab_cni 2 1 "" STATUS "$(conf 1 2 | sed 's/"1.0.0"/"1.1.0"/')"
agent_stop 2
tap_eq "STATUS is error 50 with the agent stopped" "50" "$(code "$(lab_cni 2 1 "" STATUS "$(conf 1 2 | sed 's/"1.0.0"/"1.1.0"/')")")"
tap_ok "DEL with the agent stopped succeeds (release queued)" lab_cni 2 1 net2 DEL "$(conf 2 2)"
agent_start 2
tap_eq "the restarted agent applied the queued release" "" "$(railnetctl_n 2 allocations | grep gpu2-net12)"
tap_done

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The lab itself: pods reach each other over eth0 across nodes, rails are
# bridged and routed, and - the problem railnet solves - a reply that leaves a
# pod by eth0 towards a rail address is lost.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"

if ! why=$(lab_require); then
	tap_skip "lab" "$why"
	tap_done; exit
fi
trap 'lab_down; rm -f "$TAP_LOG"' EXIT
tap_ok "lab comes up: 2 nodes, 2 rails" lab_up 2 2
lab_pod_add 1 1
lab_pod_add 2 1
pod11=$(lab_pod_ns 1 1) pod21=$(lab_pod_ns 2 1)

tap_ok "pod on node 1 reaches pod on node 2 over eth0" \
	lab_in "$pod11" ping -c1 -W2 "$(lab_pod_eth0 2 1)"
tap_ok "node masters are named like real NICs and up" \
	lab_in "$(lab_node_ns 1)" ip link show "$(lab_master 2)" up
tap_ok "each node has a private bpffs" \
	stat -f -c %T "$(lab_node_dir 1)/bpffs"
tap_eq "bpffs is of type bpf" "bpf_fs" "$(stat -f -c %T "$(lab_node_dir 1)/bpffs")"
tap_fails "the management network knows nothing of the rails" \
	lab_in "$pod11" ping -c1 -W1 "$(lab_gw4 1)"

# Rail NICs made by hand, as a CNI would: pod 1/1 on rail 1, pod 2/1 on rail 2.
mk_rail_nic() { # <n> <p> <rail> <host>
	local node pod addr
	node=$(lab_node_ns "$1") pod=$(lab_pod_ns "$1" "$2")
	addr="172.16.$((10 + $3)).$4"
	lab_in "$node" ip link add tmp-mv link "$(lab_master "$3")" type macvlan mode bridge
	lab_in "$node" ip link set tmp-mv netns "$pod"
	lab_in "$pod" ip link set tmp-mv name "net$3" up
	lab_in "$pod" ip addr add "$addr/24" dev "net$3"
}
mk_rail_nic 1 1 1 10
mk_rail_nic 2 1 2 20
lab_in "$pod21" ip route add 172.16.0.0/16 via "$(lab_gw4 2)" dev net2

tap_ok "rail gateway answers on its rail" lab_in "$pod11" ping -c1 -W2 "$(lab_gw4 1)"
tap_ok "the rail router forwards between rails (request via net2, reply on rail 1 subnet)" \
	lab_in "$pod21" ping -c1 -W2 -I 172.16.12.20 "$(lab_gw4 1)"
# Pod 1/1 has no route to rail 2 but its default via eth0: the reply to a
# peer on another rail leaves by eth0 and dies in the management network.
tap_eq "reply towards another rail would leave by eth0" "eth0" \
	"$(lab_in "$pod11" ip -o route get 172.16.12.20 from 172.16.11.10 | sed -n 's/.* dev \([^ ]*\).*/\1/p')"
tap_fails "so a cross-rail request gets no reply without railnet" \
	lab_in "$pod21" ping -c1 -W1 -I 172.16.12.20 172.16.11.10

lab_down
tap_eq "teardown leaves no namespace behind" "" "$(ip netns list | grep "^$LAB-")"
tap_eq "teardown leaves no mount behind" "" "$(grep "$LAB_DIR" /proc/mounts)"
tap_done

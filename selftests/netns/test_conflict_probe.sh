#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The agent probes for IP conflicts ahead of time: after an ADD with
# detectIPConflict teaches it a pool's master, it probes the pool's next
# addresses from that master; addresses someone already holds on the rail
# are quarantined and never handed out, free ones are handed out with no
# probe in ADD (the kernel announces them at link-up), and a restarted agent
# probes ahead at once.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"

if ! why=$(lab_require); then tap_skip "conflict probe" "$why"; tap_done; exit; fi
trap 'agent_stop 1; lab_down; rm -f "$TAP_LOG"' EXIT
lab_up 1 1
port=$((20000 + RANDOM % 20000))
conf_file=$(agent_config 1 "\"metrics\":{\"listen\":\"127.0.0.1:$port\"},\"conflictProbe\":{\"depth\":4,\"maxAgeMs\":60000}")
rail=$(lab_rail_ns)
# Node 1's rail-1 range starts at .21: the first ADD gets it, .22 and .23
# are someone else's on the wire (not railnet's), .24 and .25 are free, and
# .26 is held by a stranger on node 1 itself: a macvlan of the same master
# in another netns, which frames from the master would never reach.
for h in 22 23; do lab_in "$rail" ip addr add "172.16.11.$h/32" dev br-r1; done
stranger=$LAB-stranger
ip netns add "$stranger"
trap 'agent_stop 1; ip netns del "$stranger" 2>/dev/null; lab_down; rm -f "$TAP_LOG"' EXIT
lab_in "$(lab_node_ns 1)" ip link add sq1 link "$(lab_master 1)" type macvlan mode bridge
lab_in "$(lab_node_ns 1)" ip link set sq1 netns "$stranger"
lab_in "$stranger" ip addr add 172.16.11.26/24 dev sq1
lab_in "$stranger" ip link set sq1 up
agent_start 1 "$conf_file" || exit 1
for p in 1 2 3 4; do lab_pod_add 1 "$p"; done

conf() { printf '{"cniVersion":"1.0.0","name":"gpu1-macvlan","type":"railnet","master":"%s","ippools":{"ipv4":["%s"]},"detectIPConflict":true,"socket":"%s"}' \
	"$(lab_master 1)" "$(agent_pool4 1)" "$(agent_sock 1)"; }
addr() { ip -n "$(lab_pod_ns 1 "$1")" -4 -o addr show dev net1 | awk '{print $4}' | cut -d/ -f1; }
notify() { ip netns exec "$(lab_pod_ns 1 "$1")" sysctl -n net.ipv4.conf.net1.arp_notify; }
metric() { lab_in "$(lab_node_ns 1)" curl -sf "http://127.0.0.1:$port/metrics" |
	awk -v s="$1{pool=\"$(agent_pool4 1)\",master=\"$(lab_master 1)\"}" '$1 == s {print $2}'; }
wait_metric() { # <series> <at least>
	local i
	for ((i = 0; i < 60; i++)); do [ "$(metric "$1")" -ge "$2" ] 2>/dev/null && return 0; sleep 0.05; done
	return 1
}

tap_ok "first ADD with detectIPConflict" lab_cni 1 1 net1 ADD "$(conf)"
tap_eq "... gets the first address" "172.16.11.21" "$(addr 1)"
tap_eq "... probed by the plugin itself (the agent did not know the master yet)" "0" "$(notify 1)"
tap_ok "the agent probes the pool's next addresses from the master" \
	wait_metric railnet_ipam_conflict_probes_total 4
tap_eq "... finds the two someone holds" "2" "$(metric railnet_ipam_conflicts_found_total)"
tap_eq "... and two free" "2" "$(metric railnet_ipam_probed_free)"
tap_ok "... and says so, with the claimant's MAC" \
	grep -q "ip_conflict_found.*addr=172.16.11.22 claimant=" "$(lab_node_dir 1)/railnetd.log"

tap_ok "second ADD" lab_cni 1 2 net1 ADD "$(conf)"
tap_eq "... passes over the quarantined addresses" "172.16.11.24" "$(addr 2)"
tap_eq "... and needs no probe of its own: the kernel announced at link-up" "1" "$(notify 2)"

# A restarted agent knows the pool's master from its state directory.
agent_stop 1
agent_start 1 "$conf_file" || exit 1
tap_ok "a restarted agent probes ahead at once" wait_metric railnet_ipam_probed_free 2
tap_ok "third ADD" lab_cni 1 3 net1 ADD "$(conf)"
tap_eq "... gets a probed address with no probe in ADD" "172.16.11.25 1" "$(addr 3) $(notify 3)"
tap_ok "fourth ADD" lab_cni 1 4 net1 ADD "$(conf)"
tap_eq "... passes over the address a pod on this node holds (seen through the probe device)" \
	"172.16.11.27" "$(addr 4)"
tap_ok "... which was found and named" \
	grep -q "ip_conflict_found.*addr=172.16.11.26 claimant=" "$(lab_node_dir 1)/railnetd.log"
tap_eq "no pod ever got a held address" "" \
	"$(for p in 1 2 3 4; do addr $p; done | grep -x -e 172.16.11.22 -e 172.16.11.23 -e 172.16.11.26)"
agent_stop 1
tap_eq "a stopping agent removes the probe device it made" "" \
	"$(ip -n "$(lab_node_ns 1)" -o link show type macvlan | grep ' rnp')"
tap_done

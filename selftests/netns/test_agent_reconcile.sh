#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The reconciler: an allocation whose pod netns is gone is released once the
# grace period has passed (and logged); one whose netns exists is kept.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"

if ! why=$(lab_require); then tap_skip "agent reconcile" "$why"; tap_done; exit; fi
trap 'lab_down; rm -f "$TAP_LOG"' EXIT
lab_up 1 1
lab_pod_add 1 1
lab_pod_add 1 2
conf=$(agent_config 1 '"reconcile":{"intervalMs":100,"graceMs":700}')
tap_ok "railnetd starts with a 100 ms reconcile tick and a 700 ms grace" agent_start 1 "$conf"

allocate() { # <pod> <containerID>
	railnetctl_n 1 call ipam.allocate "{\"network\":\"gpu1-macvlan\",\"containerID\":\"$2\",\"ifName\":\"net1\",
		\"netns\":\"/var/run/netns/$(lab_pod_ns 1 "$1")\",\"pools\":{\"ipv4\":[\"$(agent_pool4 1)\"]}}" |
		jq -r '.ips[0].address'
}
held() { railnetctl_n 1 -o json allocations | jq -r '[.[].containerID] | sort | join(" ")'; }
a1=$(allocate 1 gone)
a2=$(allocate 2 alive)
tap_eq "two pods hold an address each" "alive gone" "$(held)"

lab_pod_del 1 1
sleep 0.3
tap_eq "within the grace period the vanished pod's address is kept" "alive gone" "$(held)"
released() { for _ in $(seq 40); do [ "$(held)" = alive ] && return 0; sleep 0.1; done; return 1; }
tap_ok "after it, the address is released" released
tap_ok "the release is logged with its reason" \
	grep -qE "ip_released .*container=gone .*addr=${a1%/*} why=netns_gone" "$(lab_node_dir 1)/railnetd.log"
sleep 1
tap_eq "the pod whose netns exists keeps ${a2%/*}" "alive" "$(held)"
agent_stop 1
tap_done

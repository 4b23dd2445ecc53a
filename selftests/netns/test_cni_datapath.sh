#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The plugin puts each NIC into the eBPF return path, and the NIC's entry
# goes with its addresses whichever way they go: DEL, a rolled-back ADD, GC,
# the reconciler.  CHECK wants the entry; a node without the datapath
# (datapath.enabled false) still gets working NICs.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"
. "$(dirname "$0")/../lib/datapath.sh"

if ! why=$(lab_require); then tap_skip "cni datapath" "$why"; tap_done; exit; fi
trap 'agent_stop 1; agent_stop 2; lab_down; rm -f "$TAP_LOG"' EXIT
lab_up 2 2
extra='"reconcile":{"intervalMs":100,"graceMs":0}'
for n in 1 2; do agent_start "$n" "$(agent_config "$n" "$extra")" || exit 1; done
lab_pod_add 1 1; lab_pod_add 2 1

code() { sed -n 's/.*"code":\([0-9]*\).*/\1/p'; }
entries() { railnetctl_n 1 -o json datapath | jq "[.[] | select(.podName==\"$1\")] | length"; }
wait_entries() { # <pod> <count>
	local i
	for ((i = 0; i < 60; i++)); do [ "$(entries "$1")" = "$2" ] && return 0; sleep 0.05; done
	return 1
}

res=$(lab_cni 1 1 net1 ADD "$(dp_conf 1 1)")
tap_eq "ADD attaches the NIC to the datapath" "$(dp_addr4 1 1 1)/24" "$(dp_get 1 1 1 '.ips[0].address')"
tap_eq "... with its pod" "default/pod-1-1" "$(dp_get 1 1 1 '.podNamespace + "/" + .podName')"
tap_eq "... its pool" "$(agent_pool4 1)" "$(dp_get 1 1 1 '.ips[0].pool')"
tap_eq "... and the NIC's ifindex in the pod" "$(lab_in "$(lab_pod_ns 1 1)" cat /sys/class/net/net1/ifindex)" \
	"$(dp_get 1 1 1 .ifindex)"
tap_eq "... and its MAC" "$(lab_in "$(lab_pod_ns 1 1)" cat /sys/class/net/net1/address)" \
	"$(dp_get 1 1 1 .mac)"
lab_cni 2 1 net2 ADD "$(dp_conf 2 2)" >/dev/null
lab_in "$(lab_pod_ns 1 1)" ip route del 172.16.0.0/16 dev net1
tap_ok "a peer on rail 2 gets replies from net1: the return path, with no step but ADD" \
	lab_in "$(lab_pod_ns 2 1)" ping -c2 -i0.05 -W2 -I net2 "$(dp_addr4 1 1 1)"
lab_in "$(lab_pod_ns 1 1)" ip route add 172.16.0.0/16 via "$(lab_gw4 1)" dev net1 metric 101

tap_ok "CHECK passes" lab_cni 1 1 net1 CHECK "$(dp_conf 1 1 | jq -c --argjson r "$res" '. + {prevResult: $r}')"
dp_detach 1 1 1 >/dev/null
out=$(lab_cni 1 1 net1 CHECK "$(dp_conf 1 1 | jq -c --argjson r "$res" '. + {prevResult: $r}')")
tap_eq "CHECK without the datapath entry is error 107" "107" "$(code <<<"$out")"
tap_ok "... saying so" grep -q "not in the eBPF datapath" <<<"$out"
dp_attach 1 1 1 >/dev/null

out=$(lab_cni 1 1 net1 ADD "$(dp_conf 1 1)")
tap_eq "a second ADD of the same NIC is error 107 (the spec forbids it)" "107" "$(code <<<"$out")"
tap_eq "... and leaves the first one's entry" "1" "$(entries pod-1-1)"
tap_eq "... and its address" "$(dp_addr4 1 1 1)" "$(railnetctl_n 1 -o json allocations | jq -r '.[] | select(.podName=="pod-1-1") | .address')"

tap_ok "DEL" lab_cni 1 1 net1 DEL "$(dp_conf 1 1)"
tap_ok "... drops the datapath entry once the link is gone" wait_entries pod-1-1 0

# A rolled-back ADD (the gateway does not answer) leaves no entry.
lab_in "$(lab_rail_ns)" ip addr del "$(lab_gw4 2)/24" dev br-r2
out=$(lab_cni 1 1 net2 ADD "$(dp_conf 2 1 | jq -c '. + {detectGateway: true}')")
tap_eq "an unreachable gateway is error 104" "104" "$(code <<<"$out")"
tap_eq "... and leaves no datapath entry" "0" "$(entries pod-1-1)"

# The same, for a NIC whose allocation outlived its link (an ADD retried
# after its link was lost): the allocation stays, the entry made for the
# new link goes with it.
lab_cni 1 1 net2 ADD "$(dp_conf 2 1 | jq -c '. + {detectGateway: false}')" >/dev/null
held=$(railnetctl_n 1 -o json allocations | jq -r '.[] | select(.podName=="pod-1-1" and .ifName=="net2") | .address')
lab_in "$(lab_pod_ns 1 1)" ip link del net2
log_count() { grep -c "$1.*ifname=net2" "$(lab_node_dir 1)/railnetd.log"; }
attached=$(log_count datapath_attached) detached=$(log_count datapath_detached)
out=$(lab_cni 1 1 net2 ADD "$(dp_conf 2 1 | jq -c '. + {detectGateway: true}')")
tap_eq "an unreachable gateway, allocation already held: error 104" "104" "$(code <<<"$out")"
tap_eq "... the allocation stays" "$held" \
	"$(railnetctl_n 1 -o json allocations | jq -r '.[] | select(.podName=="pod-1-1" and .ifName=="net2") | .address')"
tap_eq "... the entry made for the new link does not" "0" "$(entries pod-1-1)"
tap_eq "... it was made, then removed" "$((attached + 1)) $((detached + 1))" \
	"$(log_count datapath_attached) $(log_count datapath_detached)"
lab_in "$(lab_rail_ns)" ip addr add "$(lab_gw4 2)/24" dev br-r2
lab_cni 1 1 net2 DEL "$(dp_conf 2 1)" >/dev/null

# A gateway that answers only a later solicitation (its address is back
# 150 ms into the check): the check asks again, each 100 ms.
lab_in "$(lab_rail_ns)" ip addr del "$(lab_gw4 2)/24" dev br-r2
(sleep 0.15; lab_in "$(lab_rail_ns)" ip addr add "$(lab_gw4 2)/24" dev br-r2) &
out=$(lab_cni 1 1 net2 ADD "$(dp_conf 2 1 | jq -c '. + {detectGateway: true}')")
wait
tap_ok "a gateway that answers a later try of the check passes it" jq -e '.ips[0].address' <<<"$out"
lab_cni 1 1 net2 DEL "$(dp_conf 2 1)" >/dev/null

# The agent hooks a NIC's device while it makes the NIC's addresses durable
# (datapath.prepare); an ADD that fails between the two leaves no hook.
lab_pod_add 1 4
lab_in "$(lab_pod_ns 1 4)" ip link add net1 link eth0 type macvlan mode bridge
prep="{$(dp_key 1 4 1),\"netns\":\"/var/run/netns/$(lab_pod_ns 1 4)\"}"
filters() { # <dev> <ingress|egress>
	lab_in "$(lab_pod_ns 1 4)" tc filter show dev "$1" "$2" | grep -c direct-action
}
tap_eq "datapath.prepare hooks a NIC that has no entry yet" "true" \
	"$(railnetctl_n 1 call datapath.prepare "$prep" | jq -r .prepared)"
tap_eq "... its ingress and egress, and the pod's eth0" "1 1 1" \
	"$(filters net1 ingress) $(filters net1 egress) $(filters eth0 egress)"
tap_eq "... with no entry" "0" "$(entries pod-1-4)"
tap_eq "datapath.detach of its key removes the hooks" "true" \
	"$(railnetctl_n 1 call datapath.detach "{$(dp_key 1 4 1)}" | jq -r .detached)"
tap_eq "... all three" "0 0 0" "$(filters net1 ingress) $(filters net1 egress) $(filters eth0 egress)"
lab_in "$(lab_pod_ns 1 4)" ip link del net1

# ADD answers only once its allocation is durable: the agent answers the
# allocation early (deferSync) and ipam.sync makes it so.  A sync that fails
# fails the ADD, and rolls it all back.
proxy=$LAB_DIR/ctl-proxy.sock
/usr/bin/python3 "$(dirname "$0")/../lib/ctl_proxy.py" "$proxy" "$(agent_sock 1)" ipam.sync &
proxy_pid=$!
for ((i = 0; i < 100; i++)); do [ -S "$proxy" ] && break; sleep 0.05; done
out=$(lab_cni 1 4 net1 ADD "$(dp_conf 1 1 | jq -c --arg s "$proxy" '. + {socket: $s}')")
kill "$proxy_pid"
tap_eq "an allocation that is not made durable fails the ADD (error 106)" "106" "$(code <<<"$out")"
tap_ok "... saying why" grep -q "injected by ctl_proxy" <<<"$out"
tap_eq "... and leaves no link" "" "$(lab_in "$(lab_pod_ns 1 4)" ip -o link show net1 2>/dev/null)"
tap_eq "... no allocation" "" "$(railnetctl_n 1 allocations | grep pod-1-4)"
tap_eq "... no datapath entry" "0" "$(entries pod-1-4)"
tap_eq "... and no hook on the pod's eth0" "0" "$(filters eth0 egress)"
tap_ok "the same ADD straight to the agent succeeds" lab_cni 1 4 net1 ADD "$(dp_conf 1 1)"
lab_cni 1 4 net1 DEL "$(dp_conf 1 1)" >/dev/null
lab_pod_del 1 4

# The attach finds the NIC its prepare hooked by ifindex, and takes its final
# MAC from the plugin: podMACPrefix changes it after the prepare.
lab_pod_add 1 5
res=$(lab_cni 1 5 net1 ADD "$(dp_conf 1 1 | jq -c '. + {podMACPrefix: "0a:1b"}')")
mac=$(lab_in "$(lab_pod_ns 1 5)" cat /sys/class/net/net1/address)
tap_eq "with podMACPrefix the NIC gets its MAC after the prepare" "0a:1b" "${mac:0:5}"
tap_eq "... and the entry has that MAC, not the one the link was made with" "$mac" "$(dp_get 1 5 1 .mac)"
lab_cni 1 5 net1 DEL "$(dp_conf 1 1)" >/dev/null
lab_pod_del 1 5

# GC: what is not listed goes, entry and all.
lab_pod_add 1 2
lab_cni 1 1 net1 ADD "$(dp_conf 1 1)" >/dev/null
lab_cni 1 2 net1 ADD "$(dp_conf 1 1)" >/dev/null
valid="[{\"containerID\":\"$(lab_pod_cid 1 1)\",\"ifname\":\"net1\"}]"
tap_ok "GC" lab_cni 1 1 "" GC "$(dp_conf 1 1 | jq -c --argjson v "$valid" '. + {cniVersion: "1.1.0", "cni.dev/valid-attachments": $v}')"
tap_eq "... drops the unlisted NIC's entry" "0" "$(entries pod-1-2)"
tap_eq "... keeps the listed one's" "1" "$(entries pod-1-1)"
lab_in "$(lab_pod_ns 1 2)" ip link del net1

# The reconciler: a pod whose netns vanished without a DEL.
lab_pod_add 1 3
lab_cni 1 3 net1 ADD "$(dp_conf 1 1)" >/dev/null
tap_eq "pod 3 has its entry" "1" "$(entries pod-1-3)"
lab_pod_del 1 3
tap_ok "the reconciler releases pod 3's address and drops its entry" wait_entries pod-1-3 0
tap_eq "... its address is free" "" "$(railnetctl_n 1 allocations | grep pod-1-3)"

# A node that runs without the datapath.
agent_stop 2
agent_start 2 "$(agent_config 2 '"datapath":{"enabled":false}')" || exit 1
lab_pod_add 2 2
res=$(lab_cni 2 2 net1 ADD "$(dp_conf 1 2)")
tap_ok "with datapath.enabled false, ADD succeeds" jq -e '.ips[0].address' <<<"$res"
tap_ok "... and CHECK passes" lab_cni 2 2 net1 CHECK "$(dp_conf 1 2 | jq -c --argjson r "$res" '. + {prevResult: $r}')"
tap_ok "... and the NIC works" lab_in "$(lab_pod_ns 2 2)" ping -c1 -W2 -I net1 "$(lab_gw4 1)"
tap_done

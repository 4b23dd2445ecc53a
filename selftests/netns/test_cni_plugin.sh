#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CNI plugin's finer points on the lab: DEL handed to the agent
# (nic.delete) and its recovery after a crash, parallel ADD/DEL, an
# exhausted pool (and the link made meanwhile rolled back), results in
# every CNI version, the NIC's settings (MAC prefix, runtime MAC, MTU,
# txqueuelen, mode, metric) and the kernel's announcements.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"
. "$(dirname "$0")/../lib/fake_rdma.sh"

if ! why=$(lab_require); then tap_skip "cni plugin" "$why"; tap_done; exit; fi
trap 'agent_stop 1; lab_down; rm -f "$TAP_LOG"' EXIT
lab_up 1 2
agent_start 1 || exit 1

conf() { # <rail> [extra members] [cniVersion]
	printf '{"cniVersion":"%s","name":"gpu%s-macvlan","type":"railnet","master":"%s","ippools":{"ipv4":["%s"]},"detectGateway":true,"socket":"%s"%s}' \
		"${3:-1.0.0}" "$1" "$(lab_master "$1")" "$(agent_pool4 "$1")" "$(agent_sock 1)" "${2:+,$2}"
}
code() { sed -n 's/.*"code":\([0-9]*\).*/\1/p'; }
allocs() { railnetctl_n 1 allocations | grep -c "$1"; }
links_in() { ip -n "$1" -o link show | grep -vc -e ' lo:' -e ' eth0@'; }
wait_until() { # <tries of 50 ms> <command...>
	local n=$1; shift
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 0.05
	done
}
no_allocation() { [ "$(allocs "$1")" = 0 ]; }

# --- DEL through the agent -------------------------------------------------
lab_pod_add 1 1
lab_cni 1 1 net1 ADD "$(conf 1)" >/dev/null
tap_ok "DEL answers" lab_cni 1 1 net1 DEL "$(conf 1)"
tap_ok "... the agent deletes the link" wait_until 40 test "$(links_in "$(lab_pod_ns 1 1)")" = 0
tap_ok "... then releases the address" wait_until 40 no_allocation pod-1-1
tap_eq "... and forgets the pending teardown" "" \
	"$(ls "$(lab_node_dir 1)/run/release-queue/" 2>/dev/null | grep pending)"
tap_ok "DEL again succeeds" lab_cni 1 1 net1 DEL "$(conf 1)"

# A crash between the answer and the release: the restarted agent finishes.
lab_cni 1 1 net1 ADD "$(conf 1)" >/dev/null
agent_kill9 1
mkdir -p "$(lab_node_dir 1)/run/release-queue"
printf '{"network":"gpu1-macvlan","containerID":"%s","ifName":"net1","netns":"/var/run/netns/%s"}' \
	"$(lab_pod_cid 1 1)" "$(lab_pod_ns 1 1)" \
	>"$(lab_node_dir 1)/run/release-queue/gpu1-macvlan-$(lab_pod_cid 1 1)-net1.pending"
agent_start 1
tap_eq "a restarted agent deletes the link of a pending teardown" "0" "$(links_in "$(lab_pod_ns 1 1)")"
tap_eq "... and releases its address" "0" "$(allocs pod-1-1)"

# --- parallel ADD and DEL ---------------------------------------------------
PODS=6
for ((p = 2; p < 2 + PODS; p++)); do lab_pod_add 1 "$p"; done
for ((p = 2; p < 2 + PODS; p++)); do
	for r in 1 2; do lab_cni 1 "$p" "net$r" ADD "$(conf "$r")" >"$LAB_DIR/add-$p-$r" & done
done
wait
ok=0
for ((p = 2; p < 2 + PODS; p++)); do
	for r in 1 2; do grep -q '"ips"' "$LAB_DIR/add-$p-$r" && ok=$((ok + 1)); done
done
tap_eq "$((PODS * 2)) parallel ADDs all succeed" "$((PODS * 2))" "$ok"
tap_eq "... with $((PODS * 2)) distinct addresses" "$((PODS * 2))" \
	"$(cat "$LAB_DIR"/add-* | grep -o '"address":"[^"]*"' | sort -u | wc -l)"
tap_ok "... each pod reaches the next one on rail 2" \
	lab_in "$(lab_pod_ns 1 2)" ping -c1 -W2 -I net2 \
	"$(ip -n "$(lab_pod_ns 1 3)" -4 -o addr show dev net2 | awk '{print $4}' | cut -d/ -f1)"
for ((p = 2; p < 2 + PODS; p++)); do
	for r in 1 2; do lab_cni 1 "$p" "net$r" DEL "$(conf "$r")" >/dev/null & done
done
wait
tap_ok "parallel DELs release every address" wait_until 60 no_allocation "pod-1-[2-7] "
left=0
for ((p = 2; p < 2 + PODS; p++)); do left=$((left + $(links_in "$(lab_pod_ns 1 "$p")"))); done
tap_eq "... and delete every link" "0" "$left"

# --- an exhausted pool ------------------------------------------------------
# Node 1's rail-1 pool holds 19 addresses: pod 8 takes them all.
lab_pod_add 1 8
for ((i = 1; i <= 19; i++)); do lab_cni 1 8 "n$i" ADD "$(conf 1)" >/dev/null; done
tap_eq "pod 8 holds the 19 addresses of the pool" "19" "$(allocs pod-1-8)"
lab_pod_add 1 9
out=$(lab_cni 1 9 net1 ADD "$(conf 1)")
tap_eq "the 20th ADD is error 101 (pool exhausted)" "101" "$(echo "$out" | code)"
tap_eq "... and leaves no link in the pod (made while the agent answered)" "0" \
	"$(links_in "$(lab_pod_ns 1 9)")"
tap_eq "STATUS is error 50 while a configured pool is exhausted" "50" \
	"$(lab_cni 1 9 "" STATUS "$(conf 1 "" 1.1.0)" | code)"
tap_ok "STATUS succeeds for a network whose pool has room" \
	lab_cni 1 9 "" STATUS "$(conf 2 "" 1.1.0)"

# GC with the spec's 1.1 attachments: keep n1..n9 of pod 8.
valid=""
for ((i = 1; i <= 9; i++)); do
	valid+="${valid:+,}{\"containerID\":\"$(lab_pod_cid 1 8)\",\"ifname\":\"n$i\"}"
done
tap_ok "GC" lab_cni 1 8 "" GC "$(conf 1 "\"cni.dev/valid-attachments\":[$valid]" 1.1.0)"
tap_eq "GC released the 10 attachments not listed" "9" "$(allocs pod-1-8)"
lab_pod_del 1 8
lab_pod_del 1 9

# --- results in every version ------------------------------------------------
lab_pod_add 1 10
for v in 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0; do
	out=$(lab_cni 1 10 net1 ADD "$(conf 1 "" "$v")")
	want='"version":"4"'
	case $v in 1.*) want='' ;; esac
	tap_eq "ADD in $v answers cniVersion $v" "$v" "$(echo "$out" | sed -n 's/^{"cniVersion":"\([^"]*\)".*/\1/p')"
	tap_eq "... ips[].version present only before 1.0.0" "$want" "$(echo "$out" | grep -o '"version":"4"')"
	lab_cni 1 10 net1 DEL "$(conf 1 "" "$v")" >/dev/null
	wait_until 40 test "$(links_in "$(lab_pod_ns 1 10)")" = 0
done
tap_eq "VERSION lists every supported version" \
	'{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}' \
	"$(lab_cni 1 10 net1 VERSION '{"cniVersion":"1.1.0"}')"

# --- the NIC's settings -------------------------------------------------------
pod=$(lab_pod_ns 1 10)
out=$(lab_cni 1 10 net1 ADD "$(conf 1 '"podMACPrefix":"0a:1b","mtu":1400,"txQueueLen":777,"mode":"private","routeMetric":333')")
addr=$(echo "$out" | grep -o '"address":"172[^"/]*' | cut -d'"' -f4)
mac=$(printf '0a:1b:%02x:%02x:%02x:%02x' $(echo "$addr" | tr . ' '))
tap_eq "podMACPrefix + the IPv4 address make the MAC" "$mac" \
	"$(ip -n "$pod" -o link show net1 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)"
tap_eq "... and the result says so" "$mac" "$(echo "$out" | grep -o '"mac":"[^"]*"' | cut -d'"' -f4)"
tap_eq "mtu" "1400" "$(ip netns exec "$pod" cat /sys/class/net/net1/mtu)"
tap_eq "txQueueLen" "777" "$(ip netns exec "$pod" cat /sys/class/net/net1/tx_queue_len)"
tap_eq "mode private" "private" "$(ip -n "$pod" -d -o link show net1 | grep -o 'macvlan mode [a-z]*' | cut -d' ' -f3)"
tap_eq "routeMetric sets the metric of every route of the NIC" "3" \
	"$(ip -n "$pod" -4 route show dev net1 | grep -c 'metric 333')"
tap_eq "rp_filter is loose on the NIC" "2" "$(ip netns exec "$pod" sysctl -n net.ipv4.conf.net1.rp_filter)"
tap_ok "the kernel announced the address: the gateway knows the pod's MAC without traffic" \
	wait_until 20 sh -c "ip -n $(lab_rail_ns) neigh show $addr | grep -q $mac"
lab_cni 1 10 net1 DEL "$(conf 1)" >/dev/null
wait_until 40 test "$(links_in "$pod")" = 0
out=$(lab_cni 1 10 net1 ADD "$(conf 1 '"capabilities":{"mac":true},"runtimeConfig":{"mac":"02:42:ac:11:00:07"}')")
tap_eq "runtimeConfig.mac with the mac capability sets the MAC" "02:42:ac:11:00:07" \
	"$(ip -n "$pod" -o link show net1 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)"
tap_eq "default metric is 100 + the NIC's number" "3" "$(ip -n "$pod" -4 route show dev net1 | grep -c 'metric 101')"
tap_ok "CHECK passes" lab_cni 1 10 net1 CHECK "$(conf 1 "\"prevResult\":$out")"
lab_in "$pod" ip route del default dev net1
tap_eq "CHECK fails with error 107 naming the missing route" "107" \
	"$(lab_cni 1 10 net1 CHECK "$(conf 1 "\"prevResult\":$out")" | code)"

# --- RDMA: a NIC of a network with rdmaResourceName is counted -------------
# A fake sysfs where ens1f0np0 is mlx5_0's port (selftests/lib/fake_rdma.sh);
# rail 2's master has no HCA there.
agent_stop 1
root=$LAB_DIR/rdma-root
mkdir -p "$LAB_DIR/device-plugins"
fake_rdma_standard "$root"
agent_start 1 "$(agent_config 1 "\"rdma\":{\"sysfsRoot\":\"$root/sys\",\"devRoot\":\"$root/dev\",
 \"devicePluginDir\":\"$LAB_DIR/device-plugins\",\"configList\":[{\"resourcePrefix\":\"railnet.io\",
 \"resourceName\":\"roce\",\"rdmaHcaMax\":3,\"selectors\":{\"vendors\":[\"15b3\"]}}]}")" || exit 1
rdma_nics() { railnetctl_n 1 rdma | grep -c " $1 .*mlx5_0"; }
lab_pod_add 1 11
tap_ok "ADD with rdmaResourceName" lab_cni 1 11 net1 ADD "$(conf 1 '"rdmaResourceName":"railnet.io/roce"')"
tap_eq "... attaches the NIC to the master's HCA" "1" "$(rdma_nics net1)"
tap_ok "DEL" lab_cni 1 11 net1 DEL "$(conf 1 '"rdmaResourceName":"railnet.io/roce"')"
no_rdma_nic() { [ "$(rdma_nics "$1")" = 0 ]; }
tap_ok "... detaches it (with its addresses, once the link is gone)" wait_until 40 no_rdma_nic net1
lab_cni 1 11 net1 ADD "$(conf 1 '"rdmaResourceName":"railnet.io/roce"')" >/dev/null
tap_ok "GC of a NIC not listed" lab_cni 1 11 "" GC "$(conf 1 '"rdmaResourceName":"railnet.io/roce","cni.dev/valid-attachments":[]' 1.1.0)"
tap_eq "... detaches it from its RDMA resource too" "0" "$(rdma_nics net1)"
lab_in "$(lab_pod_ns 1 11)" ip link del net1
out=$(lab_cni 1 11 net2 ADD "$(conf 2 '"rdmaResourceName":"railnet.io/roce"')")
tap_eq "a master without an HCA is error 106 naming the master" "106" "$(echo "$out" | code)"
tap_ok "... with the agent's reason" grep -q "ens2f0np0 has no RDMA device" <<<"$out"
tap_ok "... and rolls the NIC back" wait_until 40 test "$(links_in "$(lab_pod_ns 1 11)")" = 0
tap_ok "... and its address" wait_until 40 no_allocation pod-1-11
tap_done

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# railnetd's RDMA module against a FAKE sysfs/dev tree (no RDMA hardware
# here) and a real gRPC peer playing the kubelet (grpcio, same .proto):
# registration (the kubelet calls the plugin back before it answers
# Register), retries logged with backoff, ListAndWatch health following the
# port state, Allocate's DeviceSpecs, devices in use from the PodResources
# API (and the fallback without it), re-registration after a kubelet
# restart, rdma.attach with the GID index found once the kernel (here: the
# test) adds the GID, metrics.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"
. "$(dirname "$0")/../lib/fake_rdma.sh"
. "$(dirname "$0")/../lib/fake_kubelet.sh"

if ! why=$(lab_require); then
	tap_skip "rdma plugin" "$why"
	tap_done; exit
fi
if ! /usr/bin/python3 -c 'import grpc, grpc_tools' 2>/dev/null; then
	tap_skip "rdma plugin" "python3-grpcio / python3-grpc-tools missing"
	tap_done; exit
fi
tmp=$(mktemp -d /tmp/railnet-rdma-XXXXXX)
cleanup() {
	fake_kubelet_stop
	agent_stop 1
	lab_down
	rm -rf "$tmp"
	rm -f "$TAP_LOG"
}
trap cleanup EXIT

root=$tmp/root dp=$tmp/device-plugins podres=$tmp/pod-resources/kubelet.sock
mkdir -p "$dp" "$tmp/pod-resources"
fake_rdma_standard "$root"
lab_up 1 1
node=$(lab_node_ns 1)
fake_kubelet_start "$dp" "$tmp" "$podres"
kubelet() { fake_kubelet "$@"; }
wait_event() { fake_kubelet_wait "$@"; }

port=$((20000 + RANDOM % 20000))
conf=$(agent_config 1 "\"metrics\":{\"listen\":\"127.0.0.1:$port\"},
 \"rdma\":{\"periodicUpdateInterval\":0,\"sysfsRoot\":\"$root/sys\",\"devRoot\":\"$root/dev\",
  \"devicePluginDir\":\"$dp\",\"podResourcesSocket\":\"$podres\",\"podResourcesInterval\":1,
  \"configList\":[
  {\"resourcePrefix\":\"railnet.io\",\"resourceName\":\"roce\",\"rdmaHcaMax\":3,
   \"selectors\":{\"vendors\":[\"15b3\"],\"linkTypes\":[\"ether\"]}},
  {\"resourceName\":\"ib\",\"rdmaHcaMax\":1,\"devices\":[\"ib0\"]}]}")
tap_ok "railnetd starts with an rdma section" agent_start 1 "$conf"

reg=$(wait_event 'e["event"] == "register" and e["resource"] == "railnet.io/roce"')
tap_ok "the plugin registers railnet.io/roce with the kubelet" test -n "$reg"
tap_eq "Register names the endpoint socket and v1beta1" "railnet-roce.sock v1beta1 True" \
	"$(echo "$reg" | python3 -c 'import json,sys; e=json.load(sys.stdin); print(e["endpoint"], e["version"], e["preferred"])')"
tap_ok "the deprecated devices form registers rdma/ib" \
	wait_event 'e["event"] == "register" and e["resource"] == "rdma/ib"'
# the kubelet dials the plugin and asks GetDevicePluginOptions before it
# answers Register: railnetd serves while its Register call is in flight
registered() {
	railnetctl_n 1 -o json rdma | python3 -c 'import json,sys
print(sorted((r["name"], r["registered"]) for r in json.load(sys.stdin)["resources"]))'
}
tap_eq "both resources registered (Register answered after the kubelet's call back)" \
	"[('railnet.io/roce', True), ('rdma/ib', True)]" "$(registered)"
tap_ok "... at the first attempt: no failed Register" \
	bash -c "! grep -q rdma_register_failed '$(lab_node_dir 1)/railnetd.log'"
tap_ok "GetDevicePluginOptions: preferred allocation available, no pre-start" \
	wait_event 'e["event"] == "options" and e["resource"] == "railnet.io/roce" and e["preferred"] and not e["pre_start_required"]'
tap_ok "ListAndWatch streams rdmaHcaMax=3 healthy devices" \
	wait_event 'e["event"] == "devices" and e["resource"] == "railnet.io/roce" and [d["health"] for d in e["devices"]] == ["Healthy"] * 3'

kubelet allocate railnet.io/roce roce-1
alloc=$(wait_event 'e["event"] in ("allocate", "error")')
specs=$(echo "$alloc" | python3 -c 'import json,sys
for d in json.load(sys.stdin).get("devices", []): print(d["container_path"], d["host_path"], d["permissions"])' | sort)
want=$(for d in issm0 issm1 rdma_cm umad0 umad1 uverbs0; do
	echo "/dev/infiniband/$d $root/dev/infiniband/$d rwm"; done)
tap_eq "Allocate: mlx5_0's uverbs/umad/issm and rdma_cm, rwm (not the IB HCA's)" "$want" "$specs"
kubelet allocate railnet.io/roce gpu-7
tap_ok "Allocate of an unknown device ID is refused" \
	wait_event 'e["event"] == "error" and "unknown device gpu-7" in e["message"]'

# allocated = the devices the kubelet's containers hold (PodResources List),
# which goes down again when a pod goes
acct() { # -> [(allocated, free, source, podNICs, kubeletDevicesAllocated)] of railnet.io/roce
	railnetctl_n 1 -o json rdma | python3 -c 'import json,sys
print([(r["allocated"], r["free"], r["allocatedSource"], r["podNICs"], r["kubeletDevicesAllocated"])
       for r in json.load(sys.stdin)["resources"] if r["name"] == "railnet.io/roce"])'
}
wait_acct() { # <want>: up to 5 s
	local i
	for ((i = 0; i < 50; i++)); do [ "$(acct)" = "$1" ] && break; sleep 0.1; done
	acct
}
tap_eq "PodResources: the allocated device counts (pod-1 holds roce-1)" \
	"[(1, 2, 'podResources', 0, 1)]" "$(wait_acct "[(1, 2, 'podResources', 0, 1)]")"
kubelet allocate railnet.io/roce roce-0 roce-1
wait_event 'e["event"] == "allocate" and e["pod"] == "pod-2"' >/dev/null
tap_eq "... a second pod holding roce-0 and roce-1: distinct devices in use" \
	"[(2, 1, 'podResources', 0, 2)]" "$(wait_acct "[(2, 1, 'podResources', 0, 2)]")"
kubelet delete pod-2
tap_eq "... the pod deleted: its devices are free again" \
	"[(1, 2, 'podResources', 0, 1)]" "$(wait_acct "[(1, 2, 'podResources', 0, 1)]")"
kubelet podresources off
tap_eq "PodResources gone: allocated falls back to the pod NICs, devices in use unknown" \
	"[(0, 3, 'podNICs', 0, None)]" "$(wait_acct "[(0, 3, 'podNICs', 0, None)]")"
tap_ok "... and says why" bash -c "grep -q 'rdma_pod_resources_unavailable.*no socket at $podres' \
	'$(lab_node_dir 1)/railnetd.log'"
kubelet podresources on
tap_eq "PodResources back: devices in use again" \
	"[(1, 2, 'podResources', 0, 1)]" "$(wait_acct "[(1, 2, 'podResources', 0, 1)]")"
kubelet preferred railnet.io/roce 2 roce-0,roce-1,roce-2 roce-2
tap_eq "GetPreferredAllocation: the required device first, then available ones" \
	'["roce-2", "roce-0"]' "$(wait_event 'e["event"] == "preferred"' | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["ids"]))')"
kubelet prestart railnet.io/roce roce-1
tap_ok "PreStartContainer answers" wait_event 'e["event"] == "prestart"'

# ens1f0np0 (dev_port 0) is mlx5_0's port 1; port 2 stays ACTIVE meanwhile
fake_rdma_port_state "$root" mlx5_0 1 DOWN
tap_ok "the selected NIC's port down (the HCA's other port up) -> ListAndWatch reports the devices unhealthy" \
	wait_event 'e["event"] == "devices" and e["resource"] == "railnet.io/roce" and [d["health"] for d in e["devices"]] == ["Unhealthy"] * 3'
fake_rdma_port_state "$root" mlx5_0 1 ACTIVE
tap_ok "the port back up -> healthy again" \
	wait_event 'e["event"] == "devices" and e["resource"] == "railnet.io/roce" and [d["health"] for d in e["devices"]] == ["Healthy"] * 3' 2

kubelet restart
tap_ok "kubelet restart (directory wiped, kubelet.sock recreated) -> the plugin re-registers" \
	wait_event 'e["event"] == "register" and e["resource"] == "railnet.io/roce"' 2
tap_ok "... on a recreated endpoint socket, and the new kubelet follows ListAndWatch" \
	wait_event 'e["event"] == "devices" and e["resource"] == "railnet.io/roce" and [d["health"] for d in e["devices"]] == ["Healthy"] * 3' 3
tap_ok "the endpoint socket exists again" test -S "$dp/railnet-roce.sock"
kubelet rebind
tap_ok "kubelet.sock alone recreated -> the plugin registers again" \
	wait_event 'e["event"] == "register" and e["resource"] == "railnet.io/roce"' 3
# a kubelet that refuses: every failed attempt is logged, retried with backoff
kubelet refuse on
kubelet rebind
log=$(lab_node_dir 1)/railnetd.log
for ((i = 0; i < 50; i++)); do
	grep -q 'rdma_register_failed resource=railnet.io/roce .*attempt=2 .*retry_in_ms=2000' "$log" && break
	sleep 0.1
done
tap_ok "a refused Register is logged at every attempt, with its backoff" \
	grep -qE 'rdma_register_failed resource=railnet.io/roce .*attempt=2 .*refused by the test kubelet.*retry_in_ms=2000' "$log"
tap_eq "... and shown in railnetctl rdma" "True" "$(railnetctl_n 1 -o json rdma | python3 -c 'import json,sys
r = [r for r in json.load(sys.stdin)["resources"] if r["name"] == "railnet.io/roce"][0]
print(r["registerFailures"] >= 2 and "refused" in r["registerError"] and not r["registered"])')"
kubelet refuse off
tap_ok "the kubelet accepting again -> the next attempt registers" \
	wait_event 'e["event"] == "register" and e["resource"] == "railnet.io/roce"' 4

# rdma.attach / rdma.detach as the CNI plugin calls them
ctl_op() { # <op> <args-json>: the result, compact
	railnetctl_n 1 call "$1" "$2" 2>&1 | python3 -c 'import json,sys
t = sys.stdin.read()
try: print(json.dumps(json.loads(t), separators=(",", ":")))
except ValueError: print(t.strip())'
}
attach='{"network":"rail1","containerID":"c0ffee000001","ifName":"net1","netns":"/proc/1/ns/net",
 "master":"ens1f0np0","rdmaResourceName":"railnet.io/roce",
 "ips":[{"address":"172.16.11.21/24","gateway":"172.16.11.254","pool":"gpu1-net11"}]}'
tap_eq "rdma.attach before the GID exists: device, port, gidIndex pending" \
	'{"device":"mlx5_0","port":1,"gidIndex":null}' "$(ctl_op rdma.attach "$attach")"
fake_rdma_gid_v4 "$root" mlx5_0 1 3 172.16.11.21 net1
gid_of() {
	railnetctl_n 1 -o json rdma | python3 -c 'import json,sys
print([a["gidIndex"] for a in json.load(sys.stdin)["attachments"] if a["ifName"] == "net1"])'
}
for ((i = 0; i < 50; i++)); do [ "$(gid_of)" = "[3]" ] && break; sleep 0.1; done
tap_eq "the GID index is found in the background once the GID appears" "[3]" "$(gid_of)"
tap_eq "attach again (idempotent) answers the index at once" \
	'{"device":"mlx5_0","port":1,"gidIndex":3}' "$(ctl_op rdma.attach "$attach")"
tap_ok "railnetctl rdma shows the pod NIC with its HCA and GID index" \
	bash -c "'$LAB_BUILD/railnetctl' --socket '$(agent_sock 1)' rdma | grep -E 'c0ffee000001 +net1 +rail1 +ens1f0np0 +mlx5_0 +1 +3 '"
# railnetd restarts: the attached pod NICs come back from its state dir (the
# CNI plugin does not call again for running pods), but not one whose pod
# netns vanished while railnetd was away.
gone='{"network":"rail1","containerID":"c0ffee000002","ifName":"net2","netns":"'"$tmp"'/netns-of-a-deleted-pod",
 "master":"ens1f0np0","rdmaResourceName":"railnet.io/roce","ips":[{"address":"172.16.11.22/24"}]}'
tap_eq "a second pod NIC attaches" '{"device":"mlx5_0","port":1,"gidIndex":null}' \
	"$(ctl_op rdma.attach "$gone")"
agent_stop 1
tap_ok "railnetd restarts" agent_start 1 "$conf"
for ((i = 0; i < 50; i++)); do [ "$(gid_of)" = "[3]" ] && break; sleep 0.1; done
tap_eq "after the restart the pod NIC is attached again, its GID index found again" "[3]" "$(gid_of)"
tap_eq "... and the one whose netns is gone was dropped" "[]" \
	"$(railnetctl_n 1 -o json rdma | python3 -c 'import json,sys
print([a["containerID"] for a in json.load(sys.stdin)["attachments"] if a["ifName"] == "net2"])')"
tap_eq "the resource counts the attached pod NIC (allocated: pod-1's device)" \
	"[(1, 2, 'podResources', 1, 1)]" "$(wait_acct "[(1, 2, 'podResources', 1, 1)]")"
metrics=$(lab_in "$node" curl -s "http://127.0.0.1:$port/metrics")
tap_ok "metrics: port counters labelled device/port/netdev" \
	grep -q '^railnet_rdma_port_xmit_data_total{device="mlx5_0",port="1",netdev="ens1f0np0"} 0' <<<"$metrics"
tap_ok "metrics: the pod NIC's GID index as a label" \
	grep -q 'railnet_rdma_pod_nic_info{.*ifname="net1",gid_index="3"} 1' <<<"$metrics"
tap_ok "metrics: resource capacity and allocation" \
	grep -q '^railnet_rdma_resource_allocated{resource="railnet.io/roce"} 1' <<<"$metrics"
metric() { grep -qE "$1" <<<"$metrics"; }
tap_ok "metrics: pod NICs apart" metric '^railnet_rdma_resource_pod_nics\{resource="railnet.io/roce"\} 1$'
tap_ok "metrics: the kubelet's devices in use apart" \
	metric '^railnet_rdma_resource_kubelet_devices\{resource="railnet.io/roce"\} 1$'
tap_ok "metrics: PodResources up" metric '^railnet_rdma_pod_resources_up 1$'
tap_ok "metrics: registered" metric '^railnet_rdma_resource_registered\{resource="railnet.io/roce"\} 1$'
tap_ok "metrics: the netns mode" metric '^railnet_rdma_netns_shared\{mode="[^"]+"\} [01]$'
tap_ok "metrics: port 2 of mlx5_0 has no netdev (ens1f0np0 is port 1's)" \
	grep -q '^railnet_rdma_port_xmit_data_total{device="mlx5_0",port="2",netdev=""} 0' <<<"$metrics"
tap_eq "rdma.detach forgets the pod NIC" '{"detached":true}' \
	"$(ctl_op rdma.detach '{"network":"rail1","containerID":"c0ffee000001","ifName":"net1"}')"
tap_eq "rdma.detach is idempotent" '{"detached":false}' \
	"$(ctl_op rdma.detach '{"network":"rail1","containerID":"c0ffee000001","ifName":"net1"}')"
tap_eq "... and the pod NIC count is down again" "[(1, 2, 'podResources', 0, 1)]" "$(acct)"
out=$(ctl_op rdma.attach '{"network":"rail1","containerID":"c2","ifName":"net1","master":"eno1"}')
tap_ok "rdma.attach on a master without RDMA says so (not_found)" \
	grep -q 'master eno1 has no RDMA device (not_found)' <<<"$out"
mode=$(railnetctl_n 1 -o json rdma | python3 -c 'import json,sys; print(json.load(sys.stdin)["netnsMode"])')
tap_ok "the RDMA netns mode is reported ($mode)" \
	grep -qxE 'shared|exclusive|RDMA subsystem not present' <<<"$mode"
# hot-plug: a second RoCE NIC appears; no periodic rescans are configured,
# the netdev's RTM_NEWLINK (here a veth in the node) triggers one
fake_rdma_nic "$root" ens2f0np0 0000:af:00.0 15b3 1017 mlx5_core
fake_rdma_hca "$root" 0000:af:00.0 mlx5_2 1 Ethernet 2
lab_in "$node" ip link add rdmahp0 type veth peer name rdmahp1
hcas_of() {
	railnetctl_n 1 -o json rdma | python3 -c 'import json,sys
print([r["devices"] for r in json.load(sys.stdin)["resources"] if r["name"] == "railnet.io/roce"])'
}
for ((i = 0; i < 30; i++)); do [ "$(hcas_of)" = "[['mlx5_0', 'mlx5_2']]" ] && break; sleep 0.1; done
tap_eq "a netdev hot-plug rescans: the new HCA joins the resource" "[['mlx5_0', 'mlx5_2']]" "$(hcas_of)"
kubelet allocate railnet.io/roce roce-2
tap_ok "... and Allocate hands out its uverbs too" \
	wait_event 'e["event"] == "allocate" and any(d["container_path"] == "/dev/infiniband/uverbs2" for d in e["devices"])'

bad=$tmp/bad.json
sed 's/"resourceName":"ib"/"resourceName":"i-b"/' "$conf" >"$bad"
out=$(ip netns exec "$node" "$LAB_BUILD/railnetd" --config "$bad" 2>&1)
tap_ok "a bad rdma section is refused at load, naming the entry and field" \
	grep -q 'rdma.configList\[1\].resourceName: .*i-b.* contains invalid characters' <<<"$out"
tap_done

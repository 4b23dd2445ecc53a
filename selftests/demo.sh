#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make demo`: railnet's main job on the embedded default - a simulated rail
# cluster (2 nodes x 2 rails) in network namespaces - step by step, then
# teardown.  Every step runs for real; nothing is printed that did not happen.
set -u
cd "$(dirname "$0")/.."
. selftests/lib/lab.sh
. selftests/lib/agent.sh
. selftests/lib/fake_rdma.sh
. selftests/lib/fake_kubelet.sh
NODES=${DEMO_NODES:-2}
RAILS=${DEMO_RAILS:-2}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }

if ! why=$(lab_require); then
	echo "demo: $why" >&2
	exit 1
fi
trap 'fake_kubelet_stop; lab_down' EXIT

# A FAKE RDMA tree per node (the lab has no RDMA hardware): one mlx5-like
# RoCE HCA behind each rail's master, and the "rdma" section that selects it.
fake_hcas() { # <node>
	local root r
	root=$(lab_node_dir "$1")/rdma
	fake_rdma_init "$root"
	mkdir -p "$root/device-plugins"
	for ((r = 1; r <= RAILS; r++)); do
		fake_rdma_nic "$root" "$(lab_master "$r")" "0000:$(printf %02x $((r * 16))):00.0" 15b3 101d mlx5_core
		fake_rdma_hca "$root" "0000:$(printf %02x $((r * 16))):00.0" "mlx5_$((r - 1))" 1 Ethernet $((r - 1))
	done
}
rdma_section() { # <node>
	local root list="" sep="" r
	root=$(lab_node_dir "$1")/rdma
	for ((r = 1; r <= RAILS; r++)); do
		list+="$sep{\"resourcePrefix\":\"railnet.io\",\"resourceName\":\"gpu$r\",\"rdmaHcaMax\":8,"
		list+="\"selectors\":{\"vendors\":[\"15b3\"],\"ifNames\":[\"$(lab_master "$r")\"]}}"
		sep=","
	done
	printf '"rdma":{"sysfsRoot":"%s/sys","devRoot":"%s/dev","devicePluginDir":"%s/device-plugins","configList":[%s]}' \
		"$root" "$root" "$root" "$list"
}

step "1. the lab: $NODES GPU nodes x $RAILS rails, a rail router, a management router"
lab_up "$NODES" "$RAILS" || { echo "demo: lab failed to come up" >&2; exit 1; }
for ((n = 1; n <= NODES; n++)); do
	lab_pod_add "$n" 1
done
run ip -n "$(lab_node_ns 1)" -br link show
run ip -n "$(lab_rail_ns)" -br addr show type bridge

step "2. pods get their Calico-like eth0 and reach each other across nodes"
run ip netns exec "$(lab_pod_ns 1 1)" ping -c1 -W2 "$(lab_pod_eth0 2 1)"

step "3. the management network cannot reach the rails (as on real clusters)"
run ip netns exec "$(lab_pod_ns 1 1)" ip route get "$(lab_gw4 1)"
run ip netns exec "$(lab_pod_ns 1 1)" ping -c1 -W1 "$(lab_gw4 1)" && exit 1
echo "(no reply: that is the point - rail traffic must use the rail NICs)"

step "4. railnetd on every node: IPAM pools per rail (a crash-safe local store), RDMA resources per rail"
for ((n = 1; n <= NODES; n++)); do
	fake_hcas "$n"
done
kubelet_ok=
/usr/bin/python3 -c 'import grpc, grpc_tools' 2>/dev/null &&
	fake_kubelet_start "$(lab_node_dir 1)/rdma/device-plugins" "$(lab_node_dir 1)" && kubelet_ok=1
for ((n = 1; n <= NODES; n++)); do
	agent_start "$n" "$(agent_config "$n" "\"metrics\":{\"listen\":\"127.0.0.1:9711\"},$(rdma_section "$n")")" || exit 1
done
run "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" status

netconf() { # <rail> <node>: the NAD's spec.config for this rail
	printf '{"cniVersion":"1.0.0","name":"gpu%s-macvlan","type":"railnet","master":"%s","mode":"bridge","ippools":{"ipv4":["%s"]},"detectGateway":true,"detectIPConflict":true,"rdmaResourceName":"railnet.io/gpu%s","socket":"%s"}' \
		"$1" "$(lab_master "$1")" "$(agent_pool4 "$1")" "$1" "$(agent_sock "$2")"
}
addr4() { ip -n "$(lab_pod_ns "$1" "$2")" -4 -o addr show dev "net$3" | awk '{print $4}' | cut -d/ -f1; }
ctl() { "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" "$@"; }
redirects() { ctl -o json datapath | jq -r ".[] | select(.podName==\"pod-1-1\" and .ifName==\"net$1\") | .counters.redirects"; }

step "5. Multus runs the railnet plugin once per rail NIC of each pod (CNI ADD)"
for ((n = 1; n <= NODES; n++)); do
	for ((r = 1; r <= RAILS; r++)); do
		printf '$ CNI_COMMAND=ADD CNI_IFNAME=net%s railnet < gpu%s-macvlan (pod %s)\n' "$r" "$r" "$(lab_pod_ns "$n" 1)"
		lab_cni "$n" 1 "net$r" ADD "$(netconf "$r" "$n")" || exit 1
	done
done
run ip -n "$(lab_pod_ns 1 1)" -br addr
run ip -n "$(lab_pod_ns 1 1)" route
echo "(each rail NIC's routes carry its own metric: eth0 keeps the default, oif-bound lookups find the NIC's gateway)"

step "6. traffic on every rail, node 1 -> node 2"
for ((r = 1; r <= RAILS; r++)); do
	run ip netns exec "$(lab_pod_ns 1 1)" ping -c2 -i0.2 -W2 -I "net$r" "$(addr4 2 1 "$r")" || exit 1
	echo "(RDMA connection setup resolves with the output interface fixed: net$r's own gateway answers)"
	run ip netns exec "$(lab_pod_ns 1 1)" ip route get 172.16.99.1 from "$(addr4 1 1 "$r")" oif "net$r"
done

step "7. the eBPF return path: a reply leaves by the NIC that owns its source"
echo "(no ip rule, no per-NIC table in the pod:)"
run ip -n "$(lab_pod_ns 1 1)" rule
for ((r = 1; r <= RAILS; r++)); do
	other=$((r % RAILS + 1))
	echo "(the main table would send pod 1/1's reply to a rail-$other peer out of net$other, with net$r's address:)"
	run ip netns exec "$(lab_pod_ns 1 1)" ip route get "$(addr4 2 1 "$other")" from "$(addr4 1 1 "$r")"
	before=$(redirects "$r")
	echo "(node 2's pod pings pod 1/1's net$r from its net$other, through both gateways:)"
	run ip netns exec "$(lab_pod_ns 2 1)" ping -c3 -i0.2 -W2 -I "net$other" "$(addr4 1 1 "$r")" || exit 1
	echo "(the replies went back by net$r: its return-path redirects went $before -> $(redirects "$r"))"
done
run ctl datapath
run ctl gateways
bpffs=$(lab_node_dir 1)/bpffs
run ls "$bpffs"
echo "(every map is pinned with BTF: bpftool prints named fields - the addresses railnet owns, and NIC 1:)"
addr_map=$(cd "$bpffs" && ls -d rn_addr_v* | head -1) nic_map=$(cd "$bpffs" && ls -d rn_nic_v* | head -1)
run bpftool map dump pinned "$bpffs/$addr_map"
run bpftool map lookup pinned "$bpffs/$nic_map" key 1 0 0 0

step "8. what the agent holds, and its metrics"
run ctl allocations
echo "\$ curl -s http://127.0.0.1:9711/metrics | grep -E '^railnet_(ipam_pool|datapath_(rx|tx)_packets|datapath_return_path|gateway_up)' | grep -v 'v6'"
ip netns exec "$(lab_node_ns 1)" curl -s http://127.0.0.1:9711/metrics |
	grep -E '^railnet_(ipam_pool|datapath_(rx|tx)_packets|datapath_return_path|gateway_up)' | grep -v 'v6'

step "9. RDMA shared devices - on a FAKE sysfs/dev tree (the lab has no RDMA hardware)"
run "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" rdma
if [ -n "$kubelet_ok" ]; then
	echo "(a real gRPC kubelet stand-in, selftests/lib/fake_kubelet.py, registered node 1's resources:)"
	fake_kubelet_wait 'e["event"] == "devices" and e["resource"] == "railnet.io/gpu1"' |
		python3 -c 'import json,sys; e=json.load(sys.stdin); print(" ", e["resource"], [d["id"] + ":" + d["health"] for d in e["devices"]][:3], "...")'
	echo "kubelet -> Allocate(railnet.io/gpu1, [gpu1-0]); the container gets:"
	fake_kubelet allocate railnet.io/gpu1 gpu1-0
	fake_kubelet_wait 'e["event"] in ("allocate", "error")' | python3 -c 'import json,sys
e = json.load(sys.stdin)
for d in e.get("devices", []): print("  %-26s <- %s (%s)" % (d["container_path"], d["host_path"], d["permissions"]))
if e["event"] == "error": print("  error:", e["message"])'
else
	echo "(python3-grpcio missing: no kubelet stand-in)"
fi
echo "(each NAD names its rail's resource, rdmaResourceName: ADD linked pod 1/1's NICs to the HCAs behind their masters)"
echo "(the kernel adds a pod NIC's RoCE v2 GID to the shared HCA's table as its address comes up; in this FAKE tree we write"
echo " net1's at index 2 - NCCL_IB_GID_INDEX differs per pod in shared mode, railnet finds it)"
run fake_rdma_gid_v4 "$(lab_node_dir 1)/rdma" mlx5_0 1 2 "$(addr4 1 1 1)" net1
sleep 1.2
run ctl rdma
echo "\$ curl -s http://127.0.0.1:9711/metrics | grep -E '^railnet_rdma_(port_xmit_data_total|pod_nic_info|resource_allocated)'"
ip netns exec "$(lab_node_ns 1)" curl -s http://127.0.0.1:9711/metrics |
	grep -E '^railnet_rdma_(port_xmit_data_total|pod_nic_info|resource_allocated)'

step "10. CNI DEL gives everything back: the links, the addresses, the datapath entries, the RDMA attachments"
for ((r = 1; r <= RAILS; r++)); do
	printf '$ CNI_COMMAND=DEL CNI_IFNAME=net%s railnet < gpu%s-macvlan (pod %s)\n' "$r" "$r" "$(lab_pod_ns 1 1)"
	lab_cni 1 1 "net$r" DEL "$(netconf "$r" 1)" || exit 1
done
echo "(DEL answers at once; the agent deletes the links, then releases their addresses:)"
for ((i = 0; i < 60; i++)); do
	[ "$(ctl -o json allocations | jq '[.[] | select(.podName=="pod-1-1")] | length')" = 0 ] && break
	sleep 0.05
done
run ctl pools
run ctl datapath
run ctl rdma

step "done: tearing the lab down"

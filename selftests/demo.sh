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
	printf '{"cniVersion":"1.0.0","name":"gpu%s-macvlan","type":"railnet","master":"%s","mode":"bridge","ippools":{"ipv4":["%s"]},"detectGateway":true,"detectIPConflict":true,"socket":"%s"}' \
		"$1" "$(lab_master "$1")" "$(agent_pool4 "$1")" "$(agent_sock "$2")"
}

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
	peer=$(ip -n "$(lab_pod_ns 2 1)" -4 -o addr show dev "net$r" | awk '{print $4}' | cut -d/ -f1)
	run ip netns exec "$(lab_pod_ns 1 1)" ping -c2 -i0.2 -W2 -I "net$r" "$peer" || exit 1
	src=$(ip -n "$(lab_pod_ns 1 1)" -4 -o addr show dev "net$r" | awk '{print $4}' | cut -d/ -f1)
	run ip netns exec "$(lab_pod_ns 1 1)" ip route get 172.16.99.1 from "$src" oif "net$r"
done

step "7. what the agent holds, and its metrics"
run "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" allocations
run ip netns exec "$(lab_node_ns 1)" curl -s http://127.0.0.1:9711/metrics | grep -E '^railnet_ipam' | head -8

step "8. RDMA shared devices - on a FAKE sysfs/dev tree (the lab has no RDMA hardware)"
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
echo "(what the CNI plugin asks in ADD when the NAD names rdmaResourceName:)"
addr=$(ip -n "$(lab_pod_ns 1 1)" -4 -o addr show dev net1 | awk '{print $4}')
cid=$("$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" -o json allocations |
	python3 -c 'import json,sys; print([a["containerID"] for a in json.load(sys.stdin) if a["ifName"] == "net1"][0])')
args="{\"network\":\"gpu1-macvlan\",\"containerID\":\"$cid\",\"ifName\":\"net1\",\"master\":\"$(lab_master 1)\",\"rdmaResourceName\":\"railnet.io/gpu1\",\"ips\":[{\"address\":\"$addr\"}]}"
run "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" call rdma.attach "$args"
echo "(the kernel adds the pod NIC's RoCE v2 GID to the HCA's table; in this fake tree we write it, at index 2)"
run fake_rdma_gid_v4 "$(lab_node_dir 1)/rdma" mlx5_0 1 2 "${addr%/*}" net1
sleep 1.2
run "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" rdma
echo "\$ curl -s http://127.0.0.1:9711/metrics | grep -E '^railnet_rdma_(port_xmit_data_total|pod_nic_info|resource_allocated)'"
ip netns exec "$(lab_node_ns 1)" curl -s http://127.0.0.1:9711/metrics |
	grep -E '^railnet_rdma_(port_xmit_data_total|pod_nic_info|resource_allocated)'
run "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" call rdma.detach \
	"{\"network\":\"gpu1-macvlan\",\"containerID\":\"$cid\",\"ifName\":\"net1\"}"

step "9. CNI DEL gives every address back"
for ((r = 1; r <= RAILS; r++)); do
	lab_cni 1 1 "net$r" DEL "$(netconf "$r" 1)" || exit 1
done
run "$LAB_BUILD/railnetctl" --socket "$(agent_sock 1)" pools

step "done: tearing the lab down"

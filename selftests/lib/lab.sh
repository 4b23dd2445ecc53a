# SPDX-License-Identifier: Apache-2.0
# The lab: a simulated rail-optimised GPU cluster in network namespaces.
#
#   source selftests/lib/lab.sh
#   lab_up 2 2          # 2 nodes, 2 rails
#   lab_pod_add 1 1     # pod 1 on node 1, with its Calico-like eth0
#   lab_cni 1 1 net1 ADD "$conf"   # the way Multus runs the plugin
#   lab_down
#
# Topology (rail r = 1..R, node n = 1..N, pod p):
#   $LAB-rail   one bridge per rail, br-r<r>, holding the rail's gateway
#               172.16.(10+r).254/24 and fd16:(10+r)::fe/64; forwards between rails.
#   $LAB-mgmt   the management router: bridge br-mgmt 10.99.0.254/24, knows each
#               node's pod CIDR 10.233.<n>.0/24 and nothing of the rails.
#   $LAB-n<n>   a GPU node: eth0 10.99.0.<n>/24 (default route to mgmt), and one
#               master NIC per rail, ens<r>f0np0, cabled (veth) into br-r<r>.
#               $LAB_DIR/n<n>/{bpffs,run,state}: a private bpffs mount, the
#               agent's socket directory and its state directory.
#   $LAB-n<n>-p<p>  a pod: eth0 10.233.<n>.<p>/32, default via 169.254.1.1,
#               proxy ARP on the node's side (calip<p>), as Calico does it.
#
# Several labs can run at once: every name starts with $LAB (default: random).

LAB=${LAB:-rl$(printf '%05x' $(( ($$ * 7919 + RANDOM) % 1048576 )))}
LAB_DIR=${LAB_DIR:-/tmp/railnet-lab-$LAB}
LAB_NODES=0
LAB_RAILS=0
LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB_BUILD=${OUTPUT:-build}
case $LAB_BUILD in /*) ;; *) LAB_BUILD=$LAB_ROOT/$LAB_BUILD ;; esac

lab_rail_ns()  { echo "$LAB-rail"; }
lab_mgmt_ns()  { echo "$LAB-mgmt"; }
lab_node_ns()  { echo "$LAB-n$1"; }
lab_pod_ns()   { echo "$LAB-n$1-p$2"; }
lab_master()   { echo "ens$1f0np0"; }
lab_subnet4()  { echo "172.16.$((10 + $1)).0/24"; }
lab_gw4()      { echo "172.16.$((10 + $1)).254"; }
lab_subnet6()  { echo "fd16:$((10 + $1))::/64"; }
lab_gw6()      { echo "fd16:$((10 + $1))::fe"; }
lab_node_dir() { echo "$LAB_DIR/n$1"; }
lab_pod_eth0() { echo "10.233.$1.$2"; }
# A pod's container ID, as a runtime would make it: 64 hex digits.
lab_pod_cid()  { printf '%s' "$LAB-n$1-p$2" | sha256sum | cut -c1-64; }
lab_pod_uid()  { printf '%s' "$LAB-n$1-p$2-uid" | md5sum | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/'; }

lab_in() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Runs a sysctl quietly inside a namespace.
_lab_sysctl() { ip netns exec "$1" sysctl -qw "$2" >/dev/null; }

lab_up() { # <nodes> <rails>
	local nodes=${1:-2} rails=${2:-2} n r rail mgmt
	LAB_NODES=$nodes LAB_RAILS=$rails
	rail=$(lab_rail_ns) mgmt=$(lab_mgmt_ns)
	mkdir -p "$LAB_DIR"
	echo "$nodes $rails" >"$LAB_DIR/shape"

	ip netns add "$rail" && ip netns add "$mgmt" || return 1
	for ns in "$rail" "$mgmt"; do
		lab_in "$ns" ip link set lo up
		_lab_sysctl "$ns" net.ipv4.ip_forward=1
		_lab_sysctl "$ns" net.ipv6.conf.all.forwarding=1
		_lab_sysctl "$ns" net.ipv6.conf.default.accept_dad=0
	done
	for ((r = 1; r <= rails; r++)); do
		lab_in "$rail" ip link add "br-r$r" type bridge
		lab_in "$rail" ip link set "br-r$r" up
		lab_in "$rail" ip addr add "$(lab_gw4 "$r")/24" dev "br-r$r"
		lab_in "$rail" ip -6 addr add "$(lab_gw6 "$r")/64" dev "br-r$r" nodad
	done
	lab_in "$mgmt" ip link add br-mgmt type bridge
	lab_in "$mgmt" ip link set br-mgmt up
	lab_in "$mgmt" ip addr add 10.99.0.254/24 dev br-mgmt

	for ((n = 1; n <= nodes; n++)); do
		lab_node_add "$n" "$rails" || return 1
	done
}

lab_node_add() { # <n> <rails>
	local n=$1 rails=$2 node dir r
	node=$(lab_node_ns "$n") dir=$(lab_node_dir "$n")
	ip netns add "$node" || return 1
	lab_in "$node" ip link set lo up
	_lab_sysctl "$node" net.ipv4.ip_forward=1
	_lab_sysctl "$node" net.ipv6.conf.all.forwarding=1

	ip link add eth0 netns "$node" type veth peer name "n$n" netns "$(lab_mgmt_ns)"
	lab_in "$(lab_mgmt_ns)" ip link set "n$n" master br-mgmt up
	lab_in "$node" ip link set eth0 up
	lab_in "$node" ip addr add "10.99.0.$n/24" dev eth0
	lab_in "$node" ip route add default via 10.99.0.254
	lab_in "$(lab_mgmt_ns)" ip route add "10.233.$n.0/24" via "10.99.0.$n"

	for ((r = 1; r <= rails; r++)); do
		ip link add "$(lab_master "$r")" netns "$node" type veth \
			peer name "n${n}r$r" netns "$(lab_rail_ns)"
		lab_in "$(lab_rail_ns)" ip link set "n${n}r$r" master "br-r$r" up
		lab_in "$node" ip link set "$(lab_master "$r")" up
	done

	mkdir -p "$dir/bpffs" "$dir/run" "$dir/state"
	mount -t bpf bpf "$dir/bpffs" || return 1
}

lab_pod_add() { # <n> <p>: a pod netns with its Calico-like eth0
	local n=$1 p=$2 node pod addr
	node=$(lab_node_ns "$n") pod=$(lab_pod_ns "$n" "$p") addr=$(lab_pod_eth0 "$n" "$p")
	ip netns add "$pod" || return 1
	lab_in "$pod" ip link set lo up
	ip link add eth0 netns "$pod" type veth peer name "calip$p" netns "$node"
	lab_in "$node" ip link set "calip$p" up
	# The node answers ARP for 169.254.1.1 by proxy; it does so only
	# because it has a route (its default) towards the asked address.
	_lab_sysctl "$node" "net.ipv4.conf.calip$p.proxy_arp=1"
	_lab_sysctl "$node" "net.ipv4.neigh.calip$p.proxy_delay=0"
	lab_in "$node" ip route add "$addr/32" dev "calip$p"
	lab_in "$pod" ip link set eth0 up
	lab_in "$pod" ip addr add "$addr/32" dev eth0
	lab_in "$pod" ip route add 169.254.1.1 dev eth0 scope link
	lab_in "$pod" ip route add default via 169.254.1.1 dev eth0
}

lab_pod_del() { # <n> <p>
	local pod
	pod=$(lab_pod_ns "$1" "$2")
	ip netns pids "$pod" 2>/dev/null | xargs -r kill -9 2>/dev/null
	ip netns del "$pod" 2>/dev/null
	lab_in "$(lab_node_ns "$1")" ip route del "$(lab_pod_eth0 "$1" "$2")/32" 2>/dev/null
	true
}

# Runs the CNI plugin the way Multus does: inside the node's netns, with
# the pod's identity in CNI_ARGS, the network config on stdin.
#   lab_cni <n> <p> <ifname> <ADD|DEL|CHECK|...> <config-json> [plugin]
lab_cni() {
	local n=$1 p=$2 ifname=$3 cmd=$4 conf=$5 plugin=${6:-$LAB_BUILD/railnet} cid
	cid=$(lab_pod_cid "$n" "$p")
	printf '%s' "$conf" | ip netns exec "$(lab_node_ns "$n")" env \
		CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" \
		CNI_NETNS="/var/run/netns/$(lab_pod_ns "$n" "$p")" CNI_IFNAME="$ifname" \
		CNI_PATH="$LAB_BUILD:/usr/lib/cni:/opt/cni/bin" \
		CNI_ARGS="IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-$n-$p;K8S_POD_INFRA_CONTAINER_ID=$cid;K8S_POD_UID=$(lab_pod_uid "$n" "$p")" \
		"$plugin"
}

# Removes every namespace, mount, process and file the lab made.
lab_down() {
	local ns dir
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$LAB-"); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
	done
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$LAB-"); do
		ip netns del "$ns" 2>/dev/null
	done
	if [ -d "$LAB_DIR" ]; then
		for dir in "$LAB_DIR"/n*/bpffs; do
			mountpoint -q "$dir" && umount "$dir"
		done
		rm -rf "$LAB_DIR"
	fi
	true
}

# Fails with a reason when this machine can't host the lab.
lab_require() {
	[ "$(id -u)" = 0 ] || { echo "needs root"; return 1; }
	command -v ip >/dev/null || { echo "needs iproute2"; return 1; }
	ip netns add "$LAB-probe" 2>/dev/null || { echo "cannot create network namespaces"; return 1; }
	ip netns del "$LAB-probe"
}

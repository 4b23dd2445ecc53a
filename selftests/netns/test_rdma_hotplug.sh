#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# RDMA rediscovery on hot-plug, with periodic rescans off
# (periodicUpdateInterval 0): a NIC with an HCA appears in a FAKE sysfs
# tree and is not picked up until a real RTM_NEWLINK arrives in railnetd's
# netns; an RDMA device that goes and comes back with no netdev event (the
# RDMA driver unloaded and loaded) is followed by its kernel uevents;
# RTM_DELLINK makes it forget the HCA again.  railnetd runs alone in
# a fresh netns, so only the test's own links send events.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/fake_rdma.sh"

if ! why=$(lab_require); then
	tap_skip "rdma hot-plug" "$why"
	tap_done; exit
fi
tmp=$(mktemp -d /tmp/railnet-rdma-hp-XXXXXX)
ns=$LAB-rdmahp
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid"
	ip netns del "$ns" 2>/dev/null
	umount "$tmp/bpffs" 2>/dev/null
	rm -rf "$tmp" "$TAP_LOG"
}
trap cleanup EXIT

root=$tmp/root
fake_rdma_init "$root"
fake_rdma_nic "$root" ens1f0np0 0000:3b:00.0 15b3 1017 mlx5_core 1 0
fake_rdma_hca "$root" 0000:3b:00.0 mlx5_0 1 Ethernet 0
mkdir -p "$tmp/bpffs" && mount -t bpf bpf "$tmp/bpffs" # the datapath pins there
ip netns add "$ns"
ip -n "$ns" link set lo up
cat >"$tmp/railnetd.json" <<JSON
{"nodeName":"hp","socket":"$tmp/railnetd.sock","stateDir":"$tmp/state","bpffs":"$tmp/bpffs",
 "pools":[],
 "rdma":{"periodicUpdateInterval":0,"sysfsRoot":"$root/sys","devRoot":"$root/dev",
  "devicePluginDir":"$tmp/device-plugins","configList":[
  {"resourceName":"rail2","rdmaHcaMax":2,"selectors":{"ifNames":["ens2f0np0"]}}]}}
JSON
ip netns exec "$ns" "$LAB_BUILD/railnetd" --config "$tmp/railnetd.json" >"$tmp/railnetd.log" 2>&1 &
pid=$!
for ((i = 0; i < 100; i++)); do
	"$LAB_BUILD/railnetctl" --socket "$tmp/railnetd.sock" status >/dev/null 2>&1 && break
	sleep 0.05
done
tap_ok "railnetd starts with periodic rescans off" kill -0 "$pid" ||
	sed 's/^/# /' "$tmp/railnetd.log"

resource() { # -> "<hcas> <healthy>" of rdma/rail2
	"$LAB_BUILD/railnetctl" --socket "$tmp/railnetd.sock" -o json rdma | python3 -c 'import json,sys
r = [r for r in json.load(sys.stdin)["resources"] if r["name"] == "rdma/rail2"][0]
print(",".join(r.get("devices", [])) or "-", r["healthy"])'
}
wait_resource() { # <want>
	local i
	for ((i = 0; i < 50; i++)); do [ "$(resource)" = "$1" ] && break; sleep 0.1; done
	resource
}
tap_eq "no ens2f0np0 yet: the resource has no HCA and is unhealthy" "- False" "$(resource)"

fake_rdma_nic "$root" ens2f0np0 0000:5e:00.0 15b3 1017 mlx5_core 1 0
fake_rdma_hca "$root" 0000:5e:00.0 mlx5_1 1 Ethernet 1
sleep 1.5 # more than a tick: port states are re-read, the inventory is not
tap_eq "the NIC in sysfs alone is not picked up (no periodic rescans)" "- False" "$(resource)"
ip -n "$ns" link add hp0 type veth peer name hp1
tap_eq "RTM_NEWLINK -> rescan: the resource has mlx5_1 and is healthy" "mlx5_1 True" \
	"$(wait_resource "mlx5_1 True")"

# A device event as the kernel sends it (NETLINK_KOBJECT_UEVENT, group 1).
uevent() { # <action> <devpath>
	ip netns exec "$ns" /usr/bin/python3 - "$1" "$2" <<'PY'
import socket, sys
action, path = sys.argv[1], sys.argv[2]
msg = ("%s@%s\0ACTION=%s\0DEVPATH=%s\0SUBSYSTEM=infiniband\0" % (action, path, action, path)).encode()
s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)
s.bind((0, 0))
s.sendto(msg, (0, 1))
PY
}
hca_dir=$root/sys/devices/pci0000:00/0000:5e:00.0/infiniband
mv "$hca_dir/mlx5_1" "$tmp/mlx5_1.away"
rm -f "$root/sys/class/infiniband/mlx5_1"
sleep 1.5
tap_eq "the HCA gone from sysfs alone: still listed (no event, no rescan), its ports unhealthy" \
	"mlx5_1 False" "$(resource)"
uevent remove /devices/pci0000:00/0000:5e:00.0/infiniband/mlx5_1
tap_eq "its uevent (remove) -> rescan: the resource has no HCA" "- False" "$(wait_resource "- False")"
mv "$tmp/mlx5_1.away" "$hca_dir/mlx5_1"
ln -sfn "../../devices/pci0000:00/0000:5e:00.0/infiniband/mlx5_1" "$root/sys/class/infiniband/mlx5_1"
uevent add /devices/pci0000:00/0000:5e:00.0/infiniband/mlx5_1
tap_eq "its uevent (add) -> rescan: the HCA is back" "mlx5_1 True" "$(wait_resource "mlx5_1 True")"

rm -rf "$root/sys/class/net/ens2f0np0" "$root/sys/class/infiniband/mlx5_1" \
	"$root/sys/devices/pci0000:00/0000:5e:00.0"
ip -n "$ns" link del hp0
tap_eq "RTM_DELLINK -> rescan: the HCA is gone, the resource unhealthy" "- False" \
	"$(wait_resource "- False")"
tap_done

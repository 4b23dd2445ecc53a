#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds FAKE sysfs/dev trees with RDMA devices, for tests and the demo on
# machines without RDMA hardware (railnetd's "rdma" section points its
# sysfsRoot/devRoot at them).  The layout follows the kernel's:
#   sys/class/net/IF/{device -> PCI dir, type, dev_port}
#   sys/devices/pci0000:00/BDF/{class,vendor,device,driver -> bus/pci/drivers/D}
#   BDF/infiniband/HCA/ports/P/{state,link_layer,gids/I,gid_attrs/{types,ndevs}/I,
#                               counters/*,hw_counters/*}
#   sys/class/infiniband/HCA -> BDF/infiniband/HCA
#   sys/class/infiniband_verbs/uverbsN/ibdev, sys/class/infiniband_mad/{umadN,issmN}/ibdev
#   dev/infiniband/{uverbsN,umadN,issmN,rdma_cm}   (regular files, not device nodes)
#
# Source it, or run it: bash fake_rdma.sh FUNCTION ARGS...
#   fake_rdma_init ROOT
#   fake_rdma_nic ROOT IFNAME BDF VENDOR DEVICE DRIVER [ARPHRD=1] [DEV_PORT=0]
#   fake_rdma_hca ROOT BDF HCA NPORTS LINK_LAYER UVERBS_N     (ports ACTIVE; port P's GID 0 ndev =
#                                                             the BDF's netdev with dev_port P-1)
#   fake_rdma_port_state ROOT HCA PORT ACTIVE|DOWN|INIT
#   fake_rdma_gid ROOT HCA PORT INDEX GID TYPE [NDEV]          ("RoCE v2", "IB/RoCE v1")
#   fake_rdma_gid_v4 ROOT HCA PORT INDEX A.B.C.D [NDEV]        (RoCE v2, ::ffff:A.B.C.D)
#   fake_rdma_counter ROOT HCA PORT counters|hw_counters NAME VALUE
#   fake_rdma_standard ROOT   mlx5_0 (RoCE, 2 ports, ens1f0np0), mlx5_1 (InfiniBand, ib0),
#                             eno1 (igb, no RDMA), a virtual netdev veth0

fake_rdma_init() { # <root>
	local r=$1
	mkdir -p "$r/sys/class/net" "$r/sys/devices/pci0000:00" "$r/sys/bus/pci/drivers" \
		"$r/sys/class/infiniband" "$r/sys/class/infiniband_verbs" \
		"$r/sys/class/infiniband_mad" "$r/dev/infiniband"
	: >"$r/dev/infiniband/rdma_cm"
}

fake_rdma_nic() { # <root> <ifname> <bdf> <vendor> <device> <driver> [arphrd] [dev_port]
	local r=$1 ifn=$2 bdf=$3 pci
	pci="$r/sys/devices/pci0000:00/$bdf"
	mkdir -p "$pci/net/$ifn" "$r/sys/bus/pci/drivers/$6"
	echo 0x020000 >"$pci/class"
	echo "0x$4" >"$pci/vendor"
	echo "0x$5" >"$pci/device"
	ln -sfn "../../../bus/pci/drivers/$6" "$pci/driver"
	ln -sfn "../../devices/pci0000:00/$bdf/net/$ifn" "$r/sys/class/net/$ifn"
	ln -sfn "../../../$bdf" "$pci/net/$ifn/device"
	echo "${7:-1}" >"$pci/net/$ifn/type"
	echo "${8:-0}" >"$pci/net/$ifn/dev_port"
}

fake_rdma_hca() { # <root> <bdf> <hca> <nports> <link_layer> <uverbs_n>
	local r=$1 bdf=$2 hca=$3 n=$4 ll=$5 uv=$6 pci dir p ndev
	pci="$r/sys/devices/pci0000:00/$bdf"
	dir="$pci/infiniband/$hca"
	for ((p = 1; p <= n; p++)); do
		ndev=$(fake_rdma_port_netdev "$pci" "$p")
		mkdir -p "$dir/ports/$p/gids" "$dir/ports/$p/gid_attrs/types" \
			"$dir/ports/$p/gid_attrs/ndevs" "$dir/ports/$p/counters" "$dir/ports/$p/hw_counters"
		echo "4: ACTIVE" >"$dir/ports/$p/state"
		echo "$ll" >"$dir/ports/$p/link_layer"
		for c in port_xmit_data port_rcv_data port_xmit_packets port_rcv_packets; do
			echo 0 >"$dir/ports/$p/counters/$c"
		done
		for c in out_of_sequence np_cnp_sent rp_cnp_handled; do
			echo 0 >"$dir/ports/$p/hw_counters/$c"
		done
		# GID 0: the link-local GID of a RoCE port's netdev (a RoCE port
		# without one has none), an InfiniBand port's GID without a netdev
		if [ "$ll" != Ethernet ]; then
			fake_rdma_gid "$r" "$hca" "$p" 0 "fe80:0000:0000:0000:0000:00ff:fe00:000$p" "IB/RoCE v1"
		elif [ -n "$ndev" ]; then
			fake_rdma_gid "$r" "$hca" "$p" 0 "fe80:0000:0000:0000:0000:00ff:fe00:000$p" "IB/RoCE v1" "$ndev"
		fi
		mkdir -p "$r/sys/class/infiniband_mad/umad$((uv * 2 + p - 1))" \
			"$r/sys/class/infiniband_mad/issm$((uv * 2 + p - 1))"
		echo "$hca" >"$r/sys/class/infiniband_mad/umad$((uv * 2 + p - 1))/ibdev"
		echo "$hca" >"$r/sys/class/infiniband_mad/issm$((uv * 2 + p - 1))/ibdev"
		: >"$r/dev/infiniband/umad$((uv * 2 + p - 1))"
		: >"$r/dev/infiniband/issm$((uv * 2 + p - 1))"
	done
	ln -sfn "../../devices/pci0000:00/$bdf/infiniband/$hca" "$r/sys/class/infiniband/$hca"
	mkdir -p "$r/sys/class/infiniband_verbs/uverbs$uv"
	echo "$hca" >"$r/sys/class/infiniband_verbs/uverbs$uv/ibdev"
	: >"$r/dev/infiniband/uverbs$uv"
}

# The netdev of the function at <pci-dir> whose dev_port is <port> - 1, as
# the kernel ties a port to a netdev; none when no netdev has it.
fake_rdma_port_netdev() { # <pci-dir> <port>
	local d
	for d in "$1"/net/*; do
		[ -f "$d/dev_port" ] && [ "$(cat "$d/dev_port")" = "$(($2 - 1))" ] && { basename "$d"; return; }
	done
	return 0
}

fake_rdma_port_state() { # <root> <hca> <port> <ACTIVE|DOWN|INIT>
	local code
	case $4 in DOWN) code=1 ;; INIT) code=2 ;; ARMED) code=3 ;; ACTIVE) code=4 ;; *) return 1 ;; esac
	# written in place of the file, so a reader never sees it empty
	echo "$code: $4" >"$1/sys/class/infiniband/$2/ports/$3/state.new"
	mv "$1/sys/class/infiniband/$2/ports/$3/state.new" "$1/sys/class/infiniband/$2/ports/$3/state"
}

fake_rdma_gid() { # <root> <hca> <port> <index> <gid> <type> [ndev]
	local d="$1/sys/class/infiniband/$2/ports/$3"
	[ -d "$d" ] || d="$(ls -d "$1"/sys/devices/pci0000:00/*/infiniband/"$2" | head -1)/ports/$3"
	echo "$6" >"$d/gid_attrs/types/$4"
	[ -n "${7:-}" ] && echo "$7" >"$d/gid_attrs/ndevs/$4"
	echo "$5" >"$d/gids/$4"
}

fake_rdma_gid_v4() { # <root> <hca> <port> <index> <a.b.c.d> [ndev]
	local IFS=. a
	read -r -a a <<<"$5"
	fake_rdma_gid "$1" "$2" "$3" "$4" \
		"$(printf '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' "${a[@]}")" "RoCE v2" "${6:-}"
}

fake_rdma_counter() { # <root> <hca> <port> <dir> <name> <value>
	echo "$6" >"$1/sys/class/infiniband/$2/ports/$3/$4/$5"
}

fake_rdma_standard() { # <root>
	local r=$1
	fake_rdma_init "$r"
	fake_rdma_nic "$r" ens1f0np0 0000:3b:00.0 15b3 1017 mlx5_core 1 0
	fake_rdma_hca "$r" 0000:3b:00.0 mlx5_0 2 Ethernet 0
	fake_rdma_nic "$r" ib0 0000:5e:00.0 15b3 101b mlx5_core 32 0
	fake_rdma_hca "$r" 0000:5e:00.0 mlx5_1 1 InfiniBand 1
	fake_rdma_nic "$r" eno1 0000:01:00.0 8086 1521 igb 1 0
	mkdir -p "$r/sys/devices/virtual/net/veth0"
	echo 1 >"$r/sys/devices/virtual/net/veth0/type"
	ln -sfn ../../devices/virtual/net/veth0 "$r/sys/class/net/veth0"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -e
	"$@"
fi

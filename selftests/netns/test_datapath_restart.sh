#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The datapath outlives railnetd: kill -9 and restart under 100 pps of
# cross-rail pings on every rail loses no packet, the new agent switches the
# hooks to its own programs and keeps the pods' metadata.  Under traffic too:
# a change of datapath.hooks (tcx links -> clsact filters: running pods keep
# their links, new pods get filters), and a layout change (maps of another
# version pinned) migrated.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"
. "$(dirname "$0")/../lib/datapath.sh"

if ! why=$(lab_require); then tap_skip "datapath restart" "$why"; tap_done; exit; fi
TAP_LOG=$(mktemp)
trap 'agent_stop 1; agent_stop 2; lab_down; rm -f "$TAP_LOG" "$TAP_LOG".ping*' EXIT
RAILS=2
lab_up 2 $RAILS
# Node 1 starts with tcx links (pinned in bpffs), if this kernel has them.
tcx_conf=$(agent_config 1 '"datapath":{"hooks":"tcx"}')
if ! agent_start 1 "$tcx_conf" 2>/dev/null; then
	if grep -q datapath_hooks_unsupported "$(lab_node_dir 1)/railnetd.log"; then
		tap_skip "datapath restart" "this kernel has no tcx links"
	else
		tap_ok "railnetd starts with datapath.hooks tcx" false
	fi
	tap_done; exit
fi
agent_start 2 || exit 1
lab_pod_add 1 1; lab_pod_add 2 1
for ((r = 1; r <= RAILS; r++)); do
	dp_pod_nic 1 1 "$r" && dp_pod_nic 2 1 "$r" || { tap_ok "pods set up" false; tap_done; exit; }
done
bpffs=$(lab_node_dir 1)/bpffs

# A NIC hooked ahead of its attach (datapath.prepare) and then given up:
# its tcx links go with a detach of its key.
pins=$(ls "$bpffs/links" | wc -l)
lab_in "$(lab_pod_ns 1 1)" ip link add netx link eth0 type macvlan mode bridge
prep='"network":"prep","containerID":"prep","ifName":"netx"'
railnetctl_n 1 call datapath.prepare "{$prep,\"netns\":\"/var/run/netns/$(lab_pod_ns 1 1)\"}" >/dev/null
tap_eq "datapath.prepare pins the NIC's two tcx links" "$((pins + 2))" "$(ls "$bpffs/links" | wc -l)"
railnetctl_n 1 call datapath.detach "{$prep}" >/dev/null
tap_eq "... and a detach of its key unpins them" "$pins" "$(ls "$bpffs/links" | wc -l)"
# Prepared, and its links swept by another agent (one stopping as another
# starts unpins what its entries do not own): the attach hooks it again.
before=$(ls "$bpffs/links")
railnetctl_n 1 call datapath.prepare "{$prep,\"netns\":\"/var/run/netns/$(lab_pod_ns 1 1)\"}" >/dev/null
for pin in $(comm -13 <(echo "$before") <(ls "$bpffs/links")); do rm "$bpffs/links/$pin"; done
netx() { lab_in "$(lab_pod_ns 1 1)" cat "/sys/class/net/netx/$1"; }
railnetctl_n 1 call datapath.attach "{$prep,\"netns\":\"/var/run/netns/$(lab_pod_ns 1 1)\",\"podNamespace\":\"default\",\"podName\":\"prep\",\"master\":\"$(lab_master 1)\",\"ips\":[{\"address\":\"10.255.0.2/24\"}],\"ifindex\":$(netx ifindex),\"mac\":\"$(netx address)\"}" >/dev/null
tap_eq "a prepared NIC whose links were swept is hooked again by its attach" "$((pins + 2))" \
	"$(ls "$bpffs/links" | wc -l)"
railnetctl_n 1 call datapath.detach "{$prep}" >/dev/null
# Prepared again, and the agent dies before the attach or the detach: the
# next agent unpins its links (below).
railnetctl_n 1 call datapath.prepare "{$prep,\"netns\":\"/var/run/netns/$(lab_pod_ns 1 1)\"}" >/dev/null

# 100 pps from the peer's NIC on the other rail to pod 1/1's net$r, for 3 s:
# every reply needs the return path.
pings_start() {
	ping_pids=()
	for ((r = 1; r <= RAILS; r++)); do
		lab_in "$(lab_pod_ns 2 1)" ping -q -i 0.01 -c 300 -W 1 -I "net$((r % RAILS + 1))" \
			"$(dp_addr4 1 1 "$r")" >"$TAP_LOG.ping$r" 2>&1 &
		ping_pids+=($!)
	done
}
pings_check() { # <what>
	wait "${ping_pids[@]}"
	for ((r = 1; r <= RAILS; r++)); do
		tap_eq "$1: rail $r, 300 of 300 replies" "300" \
			"$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$TAP_LOG.ping$r")"
	done
}
prog_of_link() { bpftool link show pinned "$1" -j | jq -r .prog_id; }
link_out=$(ls "$bpffs"/links/*-out | head -1)

old_prog=$(prog_of_link "$link_out")
pings_start
sleep 0.5
agent_kill9 1
sleep 0.3
agent_start 1 "$tcx_conf" >/dev/null
pings_check "kill -9 + restart under 100 pps"
tap_eq "the links of a NIC prepared when the agent died are unpinned" "$pins" \
	"$(ls "$bpffs/links" | wc -l)"
tap_ok "... and that is logged" grep -q 'datapath_link_pins_swept.*removed=2' \
	"$(lab_node_dir 1)/railnetd.log"
lab_in "$(lab_pod_ns 1 1)" ip link del netx
tap_eq "the hooks now run the new agent's program" \
	"$(bpftool prog show pinned "$bpffs/rn_egress" -j | jq -r .id)" "$(prog_of_link "$link_out")"
tap_ok "... which is not the old one ($old_prog)" test "$(prog_of_link "$link_out")" != "$old_prog"
tap_eq "pod metadata survived the restart" "default/pod-1-1 net1" \
	"$(railnetctl_n 1 -o json datapath | jq -r '.[] | select(.ifName=="net1") | "\(.podNamespace)/\(.podName) \(.ifName)"')"
tap_ok "counters survived the restart (maps reused)" \
	test "$(dp_get 1 1 1 .counters.redirects)" -ge 300

# Agents before the slot file kept a record file per NIC: the next agent
# takes them in, and forwarding goes on.
agent_stop 1
records=$(lab_node_dir 1)/state/datapath
/usr/bin/python3 - "$records" <<'PY'
import os, sys
d = sys.argv[1]
data = open(os.path.join(d, "records"), "rb").read()
for i in range(len(data) // 2048 + 1):
    slot = data[i * 2048:(i + 1) * 2048].split(b"\0")[0]
    if slot:
        open(os.path.join(d, "%d.json" % i), "wb").write(slot)
os.unlink(os.path.join(d, "records"))
PY
nfiles=$(ls "$records"/*.json | wc -l)
pings_start
sleep 0.5
agent_start 1 "$tcx_conf" >/dev/null
pings_check "records of the file-per-NIC layout taken in under 100 pps"
tap_eq "all $nfiles NICs are back" "$nfiles" "$(railnetctl_n 1 -o json datapath | jq length)"
tap_eq "... and their files are gone" "0" "$(ls "$records"/*.json 2>/dev/null | wc -l)"

# datapath.hooks changed to the default, clsact filters: for new pods only.
filter_prog() { # <pod netns> <dev>: the program id of railnet's egress filter
	lab_in "$1" tc -j filter show dev "$2" egress | jq -r '[.[] | .options.prog.id // empty][0] // empty'
}
conf=$(agent_config 1)
agent_stop 1
pings_start
sleep 0.5
agent_start 1 "$conf" >/dev/null
pings_check "datapath.hooks tcx -> clsact under 100 pps"
prog=$(bpftool prog show pinned "$bpffs/rn_egress" -j | jq -r .id)
tap_eq "the running pod keeps its tcx links" "tcx" "$(dp_get 1 1 1 .hooks)"
tap_eq "... which run the new agent's program" "$prog" "$(prog_of_link "$link_out")"
lab_pod_add 1 2
dp_pod_nic 1 2 1
tap_eq "a new pod is hooked with clsact filters" "clsact" "$(dp_get 1 2 1 .hooks)"
tap_eq "... running the agent's program" "$prog" "$(filter_prog "$(lab_pod_ns 1 2)" net1)"
lab_in "$(lab_pod_ns 1 2)" ip route del 172.16.0.0/16 dev net1 # only the program routes replies
tap_ok "... and its replies take the return path" \
	lab_in "$(lab_pod_ns 2 1)" ping -c2 -i0.05 -W2 -I net2 "$(dp_addr4 1 2 1)"

# A layout change: the running maps' pins are gone (a new version would not
# find them under its names) and maps of another version are pinned.
agent_stop 1
v=$(sed -n 's/^#define RN_LAYOUT_SUFFIX "\(.*\)"/\1/p' "$LAB_ROOT/include/railnet/datapath.h")
for m in rn_addr rn_aidx rn_ifc rn_iidx rn_nic rn_gw rn_stats; do rm -f "$bpffs/$m$v"; done
bpftool map create "$bpffs/rn_nic_v0" type array key 4 value 8 entries 1 name rn_nic_v0
pings_start
sleep 0.5
agent_start 1 "$conf" >/dev/null
pings_check "layout migration under 100 pps"
tap_ok "the old layout's pins are removed" test ! -e "$bpffs/rn_nic_v0"
tap_ok "the migration is logged" grep -q datapath_layout_migrated "$(lab_node_dir 1)/railnetd.log"
tap_ok "the new maps hold the pods again" bash -c \
	"bpftool map dump pinned $bpffs/rn_addr$v | grep -q '\"nic\"'"
tap_done

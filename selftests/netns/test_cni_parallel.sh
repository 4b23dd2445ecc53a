#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Many CNI invocations at once on one node, as a kubelet starting and
# stopping pods in bulk does: every ADD succeeds with its own addresses,
# ADDs racing DELs leave exactly the survivors' state, repeated DELs are
# harmless, and nothing is left behind in the pods, the node or the agent.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"

if ! why=$(lab_require); then tap_skip "cni parallel" "$why"; tap_done; exit; fi
trap 'lab_down; rm -f "$TAP_LOG"' EXIT
RAILS=2
PODS=12 # the first wave; a second wave of PODS/2 joins while half the first leaves
lab_up 1 $RAILS
agent_start 1 || exit 1
out_dir=$LAB_DIR/out
mkdir -p "$out_dir"

conf() { # <rail>
	printf '{"cniVersion":"1.0.0","name":"gpu%s-macvlan","type":"railnet","master":"%s","ippools":{"ipv4":["%s"]},"detectGateway":true,"socket":"%s"}' \
		"$1" "$(lab_master "$1")" "$(agent_pool4 "$1")" "$(agent_sock 1)"
}
# cni_bg <pod> <rail> <verb> [tag]: one invocation in the background; its
# output in $out_dir/<verb>-<pod>-<rail><tag>, its exit code in ....rc
cni_bg() {
	local f="$out_dir/$3-$1-$2${4:-}"
	{ lab_cni 1 "$1" "net$2" "$3" "$(conf "$2")" >"$f"; echo $? >"$f.rc"; } &
}
failures() { # <verb>: invocations of <verb> that did not exit 0 (the first one's output to stderr)
	local f n=0
	for f in "$out_dir/$1"-*.rc; do
		[ "$(cat "$f")" = 0 ] && continue
		[ $n = 0 ] && echo "# first failure, ${f##*/}: $(cat "${f%.rc}")" >&2
		n=$((n + 1))
	done
	echo $n
}
pod_addrs() { # <pod> <rail>
	ip -n "$(lab_pod_ns 1 "$1")" -4 -o addr show dev "net$2" 2>/dev/null | awk '{print $4}'
}
shared_addresses() { # <first pod> <last pod>: 1 when a rail's address is on two of them
	local r p got
	for ((r = 1; r <= RAILS; r++)); do
		got=$(for ((p = $1; p <= $2; p++)); do pod_addrs $p $r; done)
		[ -z "$(sort <<<"$got" | uniq -d)" ] || { echo 1; return; }
	done
	echo 0
}
node_extra_links() { ip -n "$(lab_node_ns 1)" -o link show | awk -F': ' '{print $2}' | grep -v -e '^lo$' -e '^eth0' -e '^ens' -e '^calip'; }
allocations() { railnetctl_n 1 allocations | grep -c '/pod-1-' || true; }

for ((p = 1; p <= PODS + PODS / 2; p++)); do lab_pod_add 1 $p || exit 1; done

# Wave 1: every pod, every rail, all at once.
for ((p = 1; p <= PODS; p++)); do
	for ((r = 1; r <= RAILS; r++)); do cni_bg $p $r ADD; done
done
wait
tap_eq "$((PODS * RAILS)) parallel ADDs all succeed" "0" "$(failures ADD)"
missing=0
for ((r = 1; r <= RAILS; r++)); do
	[ "$(for ((p = 1; p <= PODS; p++)); do pod_addrs $p $r; done | wc -l)" = "$PODS" ] || missing=1
done
tap_eq "every NIC holds exactly one address" "0" "$missing"
tap_eq "no address was handed out twice" "0" "$(shared_addresses 1 $PODS)"
tap_eq "the agent records one allocation per NIC" "$((PODS * RAILS))" "$(allocations)"
tap_ok "pods reach each other on rail 1 (first and last of the wave)" \
	lab_in "$(lab_pod_ns 1 1)" ping -c1 -W2 -I net1 "$(pod_addrs $PODS 1 | cut -d/ -f1)"
tap_ok "pods reach each other on rail $RAILS" \
	lab_in "$(lab_pod_ns 1 $PODS)" ping -c1 -W2 -I "net$RAILS" "$(pod_addrs 1 $RAILS | cut -d/ -f1)"

# Wave 2: half the pods leave (each DEL sent twice, racing itself) while
# new pods arrive.
for ((p = 1; p <= PODS / 2; p++)); do
	for ((r = 1; r <= RAILS; r++)); do cni_bg $p $r DEL a; cni_bg $p $r DEL b; done
done
for ((p = PODS + 1; p <= PODS + PODS / 2; p++)); do
	for ((r = 1; r <= RAILS; r++)); do cni_bg $p $r ADD; done
done
wait
tap_eq "ADDs racing DELs (and DELs racing themselves) all succeed" "0" "$(( $(failures ADD) + $(failures DEL) ))"
tap_eq "the agent holds exactly the survivors' allocations" "$((PODS * RAILS))" "$(allocations)"
left=0
for ((p = 1; p <= PODS / 2; p++)); do
	railnetctl_n 1 allocations | grep -qE "/pod-1-$p( |$)" && left=1
	for ((r = 1; r <= RAILS; r++)); do [ -z "$(pod_addrs $p $r)" ] || left=1; done
done
tap_eq "the departed pods hold no address, here or at the agent" "0" "$left"
tap_eq "survivors and newcomers never share an address" "0" \
	"$(shared_addresses $((PODS / 2 + 1)) $((PODS + PODS / 2)))"

# Everyone leaves at once.
rm -f "$out_dir"/DEL-*
for ((p = PODS / 2 + 1; p <= PODS + PODS / 2; p++)); do
	for ((r = 1; r <= RAILS; r++)); do cni_bg $p $r DEL; done
done
wait
tap_eq "the last wave of parallel DELs succeeds" "0" "$(failures DEL)"
# The agent releases each address once its link is gone, after DEL's
# answer, and the datapath entry after the address.
entries() { railnetctl_n 1 -o json datapath | jq length; }
for ((i = 0; i < 100; i++)); do [ "$(allocations) $(entries)" = "0 0" ] && break; sleep 0.05; done
tap_eq "the agent holds no allocation once the links are gone" "0" "$(allocations)"
tap_eq "... nor a datapath entry" "0" "$(entries)"
gone=1
for ((i = 0; i < 40; i++)); do
	gone=1
	for ((p = 1; p <= PODS + PODS / 2; p++)); do
		[ -z "$(ip -n "$(lab_pod_ns 1 $p)" -o link show type macvlan 2>/dev/null)" ] || gone=0
	done
	[ $gone = 1 ] && break
	sleep 0.05
done
tap_eq "no macvlan is left in any pod" "1" "$gone"
tap_eq "no link was ever left in the node's netns" "" "$(node_extra_links)"
tap_done

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make demo`: railnet's main job on the embedded default - a simulated rail
# cluster (2 nodes x 2 rails) in network namespaces - step by step, then
# teardown.  Every step runs for real; nothing is printed that did not happen.
set -u
cd "$(dirname "$0")/.."
. selftests/lib/lab.sh
NODES=${DEMO_NODES:-2}
RAILS=${DEMO_RAILS:-2}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }

if ! why=$(lab_require); then
	echo "demo: $why" >&2
	exit 1
fi
trap lab_down EXIT

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

step "done: tearing the lab down"

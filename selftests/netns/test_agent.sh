#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# railnetd on a lab node: the control socket (mode, peer credentials, limits,
# slow clients), IPAM through it with real clients (railnetctl, ipam_load:
# 64 concurrent allocators), config reload on SIGHUP, graceful SIGTERM.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"

if ! why=$(lab_require); then tap_skip "agent" "$why"; tap_done; exit; fi
trap 'lab_down; rm -f "$TAP_LOG"' EXIT
lab_up 1 2
sock=$(agent_sock 1)
ctl() { railnetctl_n 1 "$@"; }
LOAD=$LAB_BUILD/bench/ipam_load
PY=/usr/bin/python3

# Node 1's default pools plus a large one for the concurrency test.
big='"pools":[{"name":"big","subnet":"10.50.0.0/16","ips":["10.50.0.1-10.50.3.254"]}]'
conf=$(agent_config 1)
jq --argjson big "{$big}" '.pools += $big.pools' "$conf" >"$conf.new" && mv "$conf.new" "$conf"
tap_ok "railnetd starts in the node's netns" agent_start 1 "$conf"
tap_eq "the socket is mode 0600" "600" "$(stat -c %a "$sock")"
tap_eq "status names the node" "node1" "$(ctl -o json status | jq -r .nodeName)"

args='{"network":"gpu1-macvlan","containerID":"c1","ifName":"net1","netns":"/var/run/netns/x",
       "podNamespace":"default","podName":"pod-1","pools":{"ipv4":["gpu1-net11"],"ipv6":["gpu1-net11-v6"]}}'
out=$(ctl call ipam.allocate "$args")
tap_eq "allocate: the node's first IPv4 address of rail 1, with its prefix" "172.16.11.21/24" \
	"$(echo "$out" | jq -r '.ips[0].address')"
tap_eq "allocate: the IPv6 address too" "fd16:11::1:1/64" "$(echo "$out" | jq -r '.ips[1].address')"
tap_eq "allocate: gateway and routes of the pool" "172.16.11.254 172.16.0.0/16" \
	"$(echo "$out" | jq -r '"\(.ips[0].gateway) \(.routes[0].dst)"')"
tap_eq "allocate again: same addresses (idempotent)" "172.16.11.21/24 fd16:11::1:1/64" \
	"$(ctl call ipam.allocate "$args" | jq -r '[.ips[].address] | join(" ")')"
tap_eq "get returns the allocation" "172.16.11.21/24" \
	"$(ctl call ipam.get '{"network":"gpu1-macvlan","containerID":"c1","ifName":"net1"}' | jq -r '.ips[0].address')"
tap_eq "pools: used 1 of 19 on gpu1-net11" "19 1 18 false" \
	"$(ctl -o json pools | jq -r '.[] | select(.name=="gpu1-net11") | "\(.total) \(.used) \(.free) \(.exhausted)"')"
tap_ok "pools: a human table" sh -c "$LAB_BUILD/railnetctl --socket $sock pools | grep -E '^gpu1-net11 +172.16.11.0/24 +172.16.11.254 +19 +1 +18 +no'"
tap_ok "allocations lists the pod's NIC" sh -c "$LAB_BUILD/railnetctl --socket $sock allocations --pool gpu1-net11 | grep -E '172.16.11.21 .* default/pod-1'"

err_of() { ctl call "$@" 2>&1 >/dev/null | sed -n 's/.*(\([a-z_]*\))$/\1/p'; }
tap_eq "allocate answers once the allocation is durable" "true" \
	"$(ctl call ipam.allocate "$args" | jq -r .durable)"
deferred='{"network":"gpu1-macvlan","containerID":"c-deferred","ifName":"net1","deferSync":true,"pools":{"ipv4":["gpu1-net11"]}}'
tap_eq "with deferSync it answers before, and says so" "false 172.16.11.22/24" \
	"$(ctl call ipam.allocate "$deferred" | jq -r '"\(.durable) \(.ips[0].address)"')"
tap_eq "ipam.sync answers once it is durable" "true" "$(ctl call ipam.sync | jq -r .durable)"
tap_eq "deferSync must be a boolean: bad_request" "bad_request" \
	"$(err_of ipam.allocate "$(jq -c '.deferSync = "yes"' <<<"$deferred")")"
ctl call ipam.release '{"network":"gpu1-macvlan","containerID":"c-deferred","ifName":"net1"}' >/dev/null
tap_eq "unknown pool: unknown_pool" "unknown_pool" \
	"$(err_of ipam.allocate '{"network":"n","containerID":"c","ifName":"net1","pools":{"ipv4":["nope"]}}')"
tap_eq "get of nothing: not_found" "not_found" \
	"$(err_of ipam.get '{"network":"n","containerID":"c","ifName":"net1"}')"
tap_eq "missing argument: bad_request" "bad_request" "$(err_of ipam.allocate '{"network":"n"}')"
tap_eq "unknown op: unknown_op" "unknown_op" "$(err_of ipam.frobnicate)"
for i in $(seq 2 19); do
	ctl call ipam.allocate "{\"network\":\"fill\",\"containerID\":\"f$i\",\"ifName\":\"net1\",\"pools\":{\"ipv4\":[\"gpu1-net11\"]}}" >/dev/null
done
tap_eq "the 20th address of a 19-address pool: pool_exhausted" "pool_exhausted" \
	"$(err_of ipam.allocate '{"network":"fill","containerID":"f20","ifName":"net1","pools":{"ipv4":["gpu1-net11"]}}')"
tap_eq "exhausted pools say so" "true" \
	"$(ctl -o json pools | jq -r '.[] | select(.name=="gpu1-net11") | .exhausted')"
tap_eq "gc releases what is not in the valid list" "17" \
	"$(ctl call ipam.gc '{"network":"fill","valid":[{"containerID":"f2","ifName":"net1"}]}' | jq '.released | length')"
tap_eq "railnetctl release frees the pod's NIC (both families)" "released 172.16.11.21
released fd16:11::1:1" "$(ctl release c1 net1 --network gpu1-macvlan | sort)"

# The protocol's edges, with a raw client.
raw() { ip netns exec "$(lab_node_ns 1)" "$PY" - "$sock" "$@"; }
tap_eq "a request over 64 KiB is answered too_large" "too_large" "$(raw <<'PY'
import socket, sys, json
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"version":1,"op":"status","args":{"x":"' + b'a' * 70000 + b'"}}\n')
print(json.loads(s.makefile().readline())["error"]["code"])
PY
)"
tap_eq "a request of another version is refused" "unsupported_version" "$(raw <<'PY'
import socket, sys, json
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"version":2,"op":"status"}\n')
print(json.loads(s.makefile().readline())["error"]["code"])
PY
)"
tap_eq "garbage is a bad_request" "bad_request" "$(raw <<'PY'
import socket, sys, json
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"version":1,\n')
print(json.loads(s.makefile().readline())["error"]["code"])
PY
)"
tap_eq "several requests on one connection are answered in order" "status ipam.pools" "$(raw <<'PY'
import socket, sys, json
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"version":1,"op":"status"}\n{"version":1,"op":"ipam.pools"}\n')
f = s.makefile()
a = json.loads(f.readline())["result"]; b = json.loads(f.readline())["result"]
print(("status" if "nodeName" in a else "?") + " " + ("ipam.pools" if "pools" in b and "nodeName" not in b else "?"))
PY
)"
tap_eq "stuck clients (half a line, silence) do not hold the agent; the half line is cut at 2 s" "ok dropped" "$(raw <<'PY'
import socket, sys, json, subprocess, time
stuck = []
for i in range(20):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
    if i % 2: s.sendall(b'{"version":1,"op":"sta')
    stuck.append(s)
t = time.time()
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])
c.sendall(b'{"version":1,"op":"status"}\n')
ok = "ok" if json.loads(c.makefile().readline())["ok"] and time.time() - t < 1 else "slow"
stuck[1].settimeout(5)
try:
    gone = "dropped" if stuck[1].recv(100) == b"" else "answered"
except socket.timeout:
    gone = "held"
print(ok, gone)
PY
)"

# Peer credentials: only uid 0, even when the socket's mode would let others in.
tap_fails "a non-root client cannot connect (mode 0600)" \
	setpriv --reuid=65534 --regid=65534 --clear-groups "$LAB_BUILD/railnetctl" --socket "$sock" status
chmod 0666 "$sock"
tap_eq "a non-root peer is refused by SO_PEERCRED" "permission_denied" \
	"$(setpriv --reuid=65534 --regid=65534 --clear-groups "$LAB_BUILD/railnetctl" --socket "$sock" status 2>&1 | sed -n 's/.*(\([a-z_]*\))$/\1/p')"
chmod 0600 "$sock"

# 64 CNI invocations at once: distinct addresses, all durable.
journal=$(lab_node_dir 1)/journal64
tap_ok "64 concurrent allocators all succeed" \
	"$LOAD" run --socket "$sock" --pool big --network par --threads 64 --ops 64 --release-ratio 0 --journal "$journal"
tap_eq "64 distinct addresses held" "64 64" \
	"$(ctl -o json allocations --pool big | jq -r '"\(length) \([.[].address] | unique | length)"')"
tap_ok "the agent's state matches every acknowledgement" \
	"$LOAD" verify --socket "$sock" --network par --journal "$journal"

# Reload: a bad file and a used pool's removal are refused, the old config stays.
pid=$(agent_pid 1)
cp "$conf" "$conf.good"
echo '{"pools":[{"name":"x","subnet":"10.0.0.0/24","ips":["10.0.0.300"]}]}' >"$conf"
kill -HUP "$pid"; sleep 0.3
tap_ok "an invalid reload is logged with the field's path" \
	grep -qE 'config_reload_rejected.*pools\[0\]\.ips\[0\]: .*10\.0\.0\.300.* is not an IPv4 address' "$(lab_node_dir 1)/railnetd.log"
tap_eq "...and the old pools keep serving" "5" "$(ctl -o json pools | jq length)"
jq '.pools |= map(select(.name != "big"))' "$conf.good" >"$conf"
kill -HUP "$pid"; sleep 0.3
tap_ok "removing a pool that holds addresses is refused" \
	grep -q 'config_reload_rejected.*pool big still holds' "$(lab_node_dir 1)/railnetd.log"
tap_eq "...and the pool is still there" "1" "$(ctl -o json pools | jq '[.[] | select(.name=="big")] | length')"
jq '.pools += [{"name":"extra","subnet":"10.60.0.0/24","ips":["10.60.0.1-10.60.0.9"]}]' "$conf.good" >"$conf"
kill -HUP "$pid"; sleep 0.3
tap_eq "a valid reload adds a pool" "9" "$(ctl -o json pools | jq '.[] | select(.name=="extra") | .total')"

# SIGTERM: exit 0, socket gone, state kept for the next start.
kill -TERM "$pid"
wait_exit() { for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done; return 1; }
tap_ok "SIGTERM: the agent exits" wait_exit
tap_ok "...with status 0" grep -q 'agent_stopped exit=0' "$(lab_node_dir 1)/railnetd.log"
tap_fails "...and removes its socket" test -e "$sock"
restart_and_verify() { agent_start 1 "$conf" && "$LOAD" verify --socket "$sock" --network par --journal "$journal"; }
tap_ok "restarted, it holds the same 64 addresses" restart_and_verify
agent_stop 1
tap_done

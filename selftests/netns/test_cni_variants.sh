#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CNI plugin's variants on the lab: dual-stack NICs (IPv6 address and
# routes, traffic, DAD conflict probe with rollback), every spec version's
# result shape through the real plugin, the verbs a version does not have,
# and the MAC choices (podMACPrefix, runtimeConfig.mac with its capability).
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"

if ! why=$(lab_require); then tap_skip "cni variants" "$why"; tap_done; exit; fi
command -v jq >/dev/null || { tap_skip "cni variants" "needs jq"; tap_done; exit; }
trap 'lab_down; rm -f "$TAP_LOG"' EXIT
lab_up 2 1
# The plugin's own DAD probe is under test here: the agent does not probe
# ahead (test_conflict_probe.sh covers that).
for n in 1 2; do agent_start "$n" "$(agent_config "$n" '"conflictProbe":{"depth":0}')" || exit 1; done

conf() { # <node> <cniVersion> [extra members]
	printf '{"cniVersion":"%s","name":"gpu1-macvlan","type":"railnet","master":"%s","ippools":{"ipv4":["%s"]},"detectGateway":true,"socket":"%s"%s}' \
		"$2" "$(lab_master 1)" "$(agent_pool4 1)" "$(agent_sock "$1")" "${3:+,$3}"
}
conf6() { # <node> [extra members]: dual stack, conflict probe on
	conf "$1" 1.0.0 "\"ippools\":{\"ipv4\":[\"$(agent_pool4 1)\"],\"ipv6\":[\"$(agent_pool6 1)\"]},\"detectIPConflict\":true${2:+,$2}"
}
code() { jq -r '.code // empty' <<<"$1" 2>/dev/null; }
allocs() { railnetctl_n "$1" allocations | grep -cE "/pod-$1-$2( |$)" || true; }

## Dual stack, with the IPv6 DAD probe on.
for n in 1 2; do lab_pod_add "$n" 1; done
res1=$(lab_cni 1 1 net1 ADD "$(conf6 1)")
res2=$(lab_cni 2 1 net1 ADD "$(conf6 2)")
v6_1=$(jq -r '.ips[] | select(.address | contains(":")) | .address' <<<"$res1" 2>/dev/null)
v6_2=$(jq -r '.ips[] | select(.address | contains(":")) | .address' <<<"$res2" 2>/dev/null)
tap_eq "dual-stack ADD returns an IPv4 and an IPv6 address" "2" "$(jq '.ips | length' <<<"$res1" 2>/dev/null)"
tap_ok "the IPv6 address is on net1 and usable (not tentative, not dadfailed)" \
	sh -c "ip -n $(lab_pod_ns 1 1) -6 -o addr show dev net1 | grep -F ' ${v6_1} ' | grep -qv -e tentative -e dadfailed"
tap_eq "the IPv6 default via the rail's gateway carries net1's metric" "101" \
	"$(ip -n "$(lab_pod_ns 1 1)" -6 -o route show default dev net1 | sed -n 's/.* metric \([0-9]*\).*/\1/p')"
tap_ok "IPv6 traffic crosses nodes on the rail" \
	lab_in "$(lab_pod_ns 1 1)" ping -6 -c1 -W2 -I net1 "${v6_2%/*}"

# Someone on the rail already holds the IPv6 address the pool hands out next
# (the pools hand out addresses round-robin after the last one).
last=${v6_1%/*} last=${last##*:}
next=$(printf '%x' $((16#$last + 1)))
squat="${v6_1%:*}:$next"
lab_in "$(lab_rail_ns)" ip -6 addr add "$squat/64" dev br-r1 nodad
lab_pod_add 1 2
out=$(lab_cni 1 2 net1 ADD "$(conf6 1)")
tap_eq "an IPv6 address in use on the wire is error 105 (DAD)" "105" "$(code "$out")"
tap_ok "... naming the address" grep -qF "$squat" <<<"$(jq -r .details <<<"$out" 2>/dev/null)"
tap_eq "... leaving no link in the pod" "" "$(ip -n "$(lab_pod_ns 1 2)" -o link show net1 2>/dev/null)"
tap_eq "... nor an allocation (IPv4 or IPv6)" "0" "$(allocs 1 2)"
lab_in "$(lab_rail_ns)" ip -6 addr del "$squat/64" dev br-r1
out=$(lab_cni 1 2 net1 ADD "$(conf6 1)")
tap_eq "once the squatter is gone the same ADD succeeds" "2" "$(jq '.ips | length' <<<"$out" 2>/dev/null)"
lab_cni 1 2 net1 DEL "$(conf6 1)" >/dev/null

## Every spec version, through the real plugin.
lab_pod_add 1 3
for v in 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0; do
	out=$(lab_cni 1 3 net1 ADD "$(conf 1 "$v")")
	tap_eq "ADD $v: result in $v" "$v" "$(jq -r .cniVersion <<<"$out" 2>/dev/null)"
	if [ "$v" = 1.0.0 ] || [ "$v" = 1.1.0 ]; then
		want=null
	else
		want=4
	fi
	tap_eq "ADD $v: ips[].version is $want" "$want" "$(jq -r '.ips[0].version' <<<"$out" 2>/dev/null)"
	tap_eq "ADD $v: ips[].interface points at the sandboxed net1" \
		"net1 /var/run/netns/$(lab_pod_ns 1 3)" \
		"$(jq -r '.interfaces[.ips[0].interface] | "\(.name) \(.sandbox)"' <<<"$out" 2>/dev/null)"
	case $v in
	0.3.*) tap_eq "CHECK is error 1 for $v (it came with 0.4.0)" "1" \
			"$(code "$(lab_cni 1 3 net1 CHECK "$(conf 1 "$v" "\"prevResult\":$out")")")" ;;
	*) tap_ok "CHECK $v passes with the $v prevResult" \
			lab_cni 1 3 net1 CHECK "$(conf 1 "$v" "\"prevResult\":$out")" ;;
	esac
	tap_ok "DEL $v" lab_cni 1 3 net1 DEL "$(conf 1 "$v" "\"prevResult\":$out")"
done
tap_eq "STATUS is error 1 before 1.1.0" "1" "$(code "$(lab_cni 1 3 "" STATUS "$(conf 1 1.0.0)")")"
tap_eq "GC is error 1 before 1.1.0" "1" "$(code "$(lab_cni 1 3 "" GC "$(conf 1 0.4.0)")")"
tap_eq "VERSION lists every supported version" '["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]' \
	"$(lab_cni 1 3 net1 VERSION '{"cniVersion":"1.1.0"}' | jq -c .supportedVersions 2>/dev/null)"

## MAC addresses.
mac_of() { ip -n "$(lab_pod_ns 1 "$1")" -o link show dev net1 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
lab_pod_add 1 4
out=$(lab_cni 1 4 net1 ADD "$(conf 1 1.0.0 '"podMACPrefix":"0a:1b"')")
addr=$(jq -r '.ips[0].address' <<<"$out" 2>/dev/null)
want=$(IFS=./ read -r a b c d _ <<<"$addr"; printf '0a:1b:%02x:%02x:%02x:%02x' "$a" "$b" "$c" "$d")
tap_eq "podMACPrefix: the MAC is the prefix + the IPv4 address" "$want" "$(mac_of 4)"
tap_eq "... and the result reports it" "$want" "$(jq -r '.interfaces[0].mac' <<<"$out" 2>/dev/null)"
lab_cni 1 4 net1 DEL "$(conf 1 1.0.0)" >/dev/null

rc='"runtimeConfig":{"mac":"0a:58:11:22:33:44"}'
lab_cni 1 4 net1 ADD "$(conf 1 1.0.0 "\"capabilities\":{\"mac\":true},$rc,\"podMACPrefix\":\"0a:1b\"")" >/dev/null
tap_eq "runtimeConfig.mac with capabilities.mac sets the MAC (over podMACPrefix)" \
	"0a:58:11:22:33:44" "$(mac_of 4)"
lab_cni 1 4 net1 DEL "$(conf 1 1.0.0)" >/dev/null
lab_cni 1 4 net1 ADD "$(conf 1 1.0.0 "$rc")" >/dev/null
tap_ok "runtimeConfig.mac without the capability is ignored" test "$(mac_of 4)" != "0a:58:11:22:33:44"
lab_cni 1 4 net1 DEL "$(conf 1 1.0.0)" >/dev/null
tap_eq "a multicast podMACPrefix is error 7" "7" \
	"$(code "$(lab_cni 1 4 net1 ADD "$(conf 1 1.0.0 '"podMACPrefix":"01:00"')")")"
tap_eq "a malformed runtimeConfig.mac is error 7" "7" \
	"$(code "$(lab_cni 1 4 net1 ADD "$(conf 1 1.0.0 '"capabilities":{"mac":true},"runtimeConfig":{"mac":"zz"}')")")"
tap_eq "bad MAC inputs left nothing behind" "0" "$(allocs 1 4)"

## Every bad environment gets its own error (the plugin run bare, env -i).
bare() { # <conf> <VAR=value...>: the plugin with only these variables
	local c=$1; shift
	printf '%s' "$c" | ip netns exec "$(lab_node_ns 1)" env -i "$@" "$LAB_BUILD/railnet"
}
ok_env=(CNI_CONTAINERID=c1 "CNI_NETNS=/var/run/netns/$(lab_pod_ns 1 4)" CNI_IFNAME=net1)
c=$(conf 1 1.0.0)
tap_eq "no CNI_COMMAND is error 4" "4" "$(code "$(bare "$c" "${ok_env[@]}")")"
tap_eq "an unknown CNI_COMMAND is error 4" "4" "$(code "$(bare "$c" CNI_COMMAND=FROB "${ok_env[@]}")")"
tap_eq "ADD without CNI_CONTAINERID is error 4" "4" \
	"$(code "$(bare "$c" CNI_COMMAND=ADD "${ok_env[@]:1}")")"
tap_eq "a CNI_CONTAINERID outside [a-zA-Z0-9_.-] is error 4" "4" \
	"$(code "$(bare "$c" CNI_COMMAND=ADD "${ok_env[@]:1}" "CNI_CONTAINERID=../etc")")"
tap_eq "ADD without CNI_NETNS is error 4" "4" \
	"$(code "$(bare "$c" CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_IFNAME=net1)")"
tap_eq "ADD without CNI_IFNAME is error 4" "4" \
	"$(code "$(bare "$c" CNI_COMMAND=ADD "${ok_env[@]:0:2}")")"
tap_eq "an unknown CNI_ARGS key without IgnoreUnknown is error 4" "4" \
	"$(code "$(bare "$c" CNI_COMMAND=ADD "${ok_env[@]}" "CNI_ARGS=K8S_POD_NAME=x;FOO=1")")"
tap_eq "ADD into a netns that does not exist is error 3" "3" \
	"$(code "$(bare "$c" CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/var/run/netns/nosuch CNI_IFNAME=net1)")"
tap_ok "DEL with no CNI_NETNS at all succeeds" bare "$c" CNI_COMMAND=DEL CNI_CONTAINERID=c1 CNI_IFNAME=net1
tap_eq "a config that is not an object is error 6" "6" "$(code "$(bare '[1,2]' CNI_COMMAND=ADD "${ok_env[@]}")")"
tap_eq "a config missing master is error 7" "7" \
	"$(code "$(bare "$(jq -c 'del(.master)' <<<"$c")" CNI_COMMAND=ADD "${ok_env[@]}")")"
tap_eq "bad environments left nothing behind" "0" "$(allocs 1 4)"

## Pools: exhausted (101, and STATUS 50), not allowed on this node (103).
agent_stop 1
cfg=$(agent_config 1)
jq --arg gw "$(lab_gw4 1)" '.pools += [
	{"name":"tiny","subnet":"172.16.11.0/24","ips":["172.16.11.60-172.16.11.61"],"gateway":$gw},
	{"name":"elsewhere","subnet":"172.16.11.0/24","ips":["172.16.11.62-172.16.11.63"],"gateway":$gw,"nodeName":["node9"]}]' \
	"$cfg" >"$cfg.new" && mv "$cfg.new" "$cfg"
agent_start 1 "$cfg" || exit 1
tiny=$(conf 1 1.1.0 '"ippools":{"ipv4":["tiny"]}')
for p in 5 6 7; do lab_pod_add 1 $p; done
lab_cni 1 5 net1 ADD "$tiny" >/dev/null
tap_ok "STATUS passes while the pool has an address left" lab_cni 1 5 "" STATUS "$tiny"
lab_cni 1 6 net1 ADD "$tiny" >/dev/null
out=$(lab_cni 1 7 net1 ADD "$tiny")
tap_eq "an exhausted pool is error 101" "101" "$(code "$out")"
tap_ok "... naming the pool" grep -q tiny <<<"$(jq -r '.details' <<<"$out" 2>/dev/null)"
tap_eq "... leaving no link in the pod" "" "$(ip -n "$(lab_pod_ns 1 7)" -o link show net1 2>/dev/null)"
tap_eq "STATUS is error 50 once the network's pool is exhausted" "50" \
	"$(code "$(lab_cni 1 5 "" STATUS "$tiny")")"
lab_cni 1 6 net1 DEL "$tiny" >/dev/null
tap_ok "after a DEL the exhausted pool serves again" lab_cni 1 7 net1 ADD "$tiny"
tap_eq "a pool reserved for other nodes is error 103" "103" \
	"$(code "$(lab_cni 1 6 net1 ADD "$(conf 1 1.0.0 '"ippools":{"ipv4":["elsewhere"]}')")")"
tap_eq "... leaving no allocation" "0" "$(allocs 1 6)"
tap_ok "STATUS passes while a fallback pool has room (tiny is full, $(agent_pool4 1) is not)" \
	lab_cni 1 5 "" STATUS "$(conf 1 1.1.0 "\"ippools\":{\"ipv4\":[\"tiny\",\"$(agent_pool4 1)\"]}")"

## GC needs its list; the older key cni.dev/attachments is honoured too.
tap_eq "GC without cni.dev/valid-attachments is error 7" "7" "$(code "$(lab_cni 1 5 "" GC "$tiny")")"
tap_eq "... and releases nothing" "1 1" "$(allocs 1 5) $(allocs 1 7)"
keep="[{\"containerID\":\"$(lab_pod_cid 1 5)\",\"ifname\":\"net1\"}]"
tap_ok "GC with cni.dev/attachments" lab_cni 1 5 "" GC "$(jq -c --argjson k "$keep" '. + {"cni.dev/attachments": $k}' <<<"$tiny")"
tap_eq "... keeps the listed NIC and releases the other" "1 0" "$(allocs 1 5) $(allocs 1 7)"
tap_done

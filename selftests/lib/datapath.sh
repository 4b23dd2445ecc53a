# SPDX-License-Identifier: Apache-2.0
# The datapath on the lab's pods.  Source after lab.sh and agent.sh.
#
#   dp_pod_nic N P R               rail R's NIC netR in pod P of node N, made by the
#                                 CNI plugin (whose ADD attaches it to the datapath)
#   dp_attach N P R                datapath.attach for netR of pod P by hand (the
#                                 plugin's request, e.g. after a dp_detach)
#   dp_detach N P R
#   dp_get N P R [jq-filter]       datapath.get, filtered
#   dp_addr4 N P R                 netR's IPv4 address in the pod

dp_conf() { # <rail> <node>
	printf '{"cniVersion":"1.0.0","name":"gpu%s-macvlan","type":"railnet","master":"%s","ippools":{"ipv4":["%s"]},"socket":"%s"}' \
		"$1" "$(lab_master "$1")" "$(agent_pool4 "$1")" "$(agent_sock "$2")"
}

dp_addr4() { ip -n "$(lab_pod_ns "$1" "$2")" -4 -o addr show dev "net$3" 2>/dev/null | awk '{print $4}' | cut -d/ -f1; }
dp_cidr4() { ip -n "$(lab_pod_ns "$1" "$2")" -4 -o addr show dev "net$3" 2>/dev/null | awk '{print $4}'; }

dp_key() { # <n> <p> <r>
	printf '"network":"gpu%s-macvlan","containerID":"%s","ifName":"net%s"' "$3" "$(lab_pod_cid "$1" "$2")" "$3"
}

dp_attach() { # <n> <p> <r>
	local args
	args=$(printf '{%s,"netns":"/var/run/netns/%s","podNamespace":"default","podName":"pod-%s-%s","master":"%s","ips":[{"address":"%s","gateway":"%s","pool":"%s"}]}' \
		"$(dp_key "$1" "$2" "$3")" "$(lab_pod_ns "$1" "$2")" "$1" "$2" "$(lab_master "$3")" \
		"$(dp_cidr4 "$1" "$2" "$3")" "$(lab_gw4 "$3")" "$(agent_pool4 "$3")")
	railnetctl_n "$1" call datapath.attach "$args"
}

dp_detach() { railnetctl_n "$1" call datapath.detach "{$(dp_key "$1" "$2" "$3")}"; }

dp_get() { # <n> <p> <r> [jq filter]
	railnetctl_n "$1" call datapath.get "{$(dp_key "$1" "$2" "$3")}" | jq -r "${4:-.}"
}

dp_pod_nic() { # <n> <p> <r>
	lab_cni "$1" "$2" "net$3" ADD "$(dp_conf "$3" "$1")" >/dev/null
}

# SPDX-License-Identifier: Apache-2.0
# Running railnetd on the lab's nodes.  Source after lab.sh.
#
#   agent_config N [extra-top-level-json-members] [extra-pools]  -> prints the config path
#   agent_start N [config]   starts railnetd in node N's netns, waits for its socket
#   agent_stop N             SIGTERM, waits for exit
#   agent_kill9 N            kill -9
#   agent_sock N             the control socket path
#   railnetctl_n N ARGS...   railnetctl against node N's agent
#
# Node N's pools: per rail R, "gpuR-net1R" = 172.16.(10+R).0/24 with the
# addresses .(N*20+1)-.(N*20+19) (so nodes never overlap on a rail), gateway
# .254, a route to 172.16.0.0/16 via the gateway; and "gpuR-net1R-v6" =
# fd16:(10+R)::/64 with fd16:(10+R)::N:1-fd16:(10+R)::N:ff.

agent_sock() { echo "$(lab_node_dir "$1")/run/railnetd.sock"; }
agent_pool4() { echo "gpu$1-net1$1"; }
agent_pool6() { echo "gpu$1-net1$1-v6"; }

agent_config() { # <n> [extra] [extra-pools]
	local n=$1 extra=${2:-} dir r pools="" sep=""
	dir=$(lab_node_dir "$n")
	for ((r = 1; r <= LAB_RAILS; r++)); do
		pools+="$sep{\"name\":\"$(agent_pool4 "$r")\",\"subnet\":\"172.16.$((10 + r)).0/24\","
		pools+="\"ips\":[\"172.16.$((10 + r)).$((n * 20 + 1))-172.16.$((10 + r)).$((n * 20 + 19))\"],"
		pools+="\"gateway\":\"$(lab_gw4 "$r")\","
		pools+="\"routes\":[{\"dst\":\"172.16.0.0/16\",\"gw\":\"$(lab_gw4 "$r")\"}]},"
		pools+="{\"name\":\"$(agent_pool6 "$r")\",\"subnet\":\"fd16:$((10 + r))::/64\","
		pools+="\"ips\":[\"fd16:$((10 + r))::$n:1-fd16:$((10 + r))::$n:ff\"],"
		pools+="\"gateway\":\"$(lab_gw6 "$r")\","
		pools+="\"routes\":[{\"dst\":\"fd16::/16\",\"gw\":\"$(lab_gw6 "$r")\"}]}"
		sep=","
	done
	[ -n "${3:-}" ] && pools+="$sep$3"
	cat >"$dir/railnetd.json" <<-JSON
	{"nodeName":"node$n","socket":"$(agent_sock "$n")","stateDir":"$dir/state",
	 "bpffs":"$dir/bpffs","store":{"type":"local"},
	 "pools":[$pools]${extra:+,$extra}}
	JSON
	echo "$dir/railnetd.json"
}

agent_start() { # <n> [config]
	local n=$1 conf=${2:-} dir i
	dir=$(lab_node_dir "$n")
	[ -n "$conf" ] || conf=$(agent_config "$n")
	ip netns exec "$(lab_node_ns "$n")" "$LAB_BUILD/railnetd" --config "$conf" \
		--log-level "${AGENT_LOG_LEVEL:-info}" >>"$dir/railnetd.log" 2>&1 &
	echo $! >"$dir/railnetd.pid"
	disown
	for ((i = 0; i < 250; i++)); do
		"$LAB_BUILD/railnetctl" --socket "$(agent_sock "$n")" status >/dev/null 2>&1 && return 0
		kill -0 "$(cat "$dir/railnetd.pid")" 2>/dev/null || break
		sleep 0.02
	done
	echo "railnetd on node $n did not come up; its log:" >&2
	tail -20 "$dir/railnetd.log" >&2
	return 1
}

agent_pid() { cat "$(lab_node_dir "$1")/railnetd.pid" 2>/dev/null; }

agent_stop() { # <n>
	local pid i
	pid=$(agent_pid "$1") || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -9 "$pid" 2>/dev/null
	return 1
}

agent_kill9() { # <n>
	local pid
	pid=$(agent_pid "$1") || return 0
	kill -9 "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
}

railnetctl_n() { # <n> args...
	local n=$1; shift
	"$LAB_BUILD/railnetctl" --socket "$(agent_sock "$n")" "$@"
}

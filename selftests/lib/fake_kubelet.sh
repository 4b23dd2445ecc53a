# SPDX-License-Identifier: Apache-2.0
# Drives selftests/lib/fake_kubelet.py (a real gRPC peer playing the
# kubelet's device manager) from bash.  Source it.
#
#   fake_kubelet_start PLUGIN_DIR WORK_DIR [PODRES_SOCK]
#                                            serves PLUGIN_DIR/kubelet.sock (and the PodResources
#                                            API on PODRES_SOCK); events in WORK_DIR
#   fake_kubelet CMD...                      allocate|delete|preferred|prestart|refuse|
#                                            podresources|restart|rebind (see the .py)
#   fake_kubelet_wait PYEXPR [N]             waits (5 s) for N events matching PYEXPR over `e`;
#                                            prints the last as JSON
#   fake_kubelet_stop

FAKE_KUBELET_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FAKE_KUBELET_PID=
FAKE_KUBELET_EVENTS=

fake_kubelet_start() { # <plugin-dir> <work-dir> [podres-sock]
	local work=$2
	FAKE_KUBELET_EVENTS=$work/kubelet.jsonl
	rm -f "$work/kubelet.in"
	mkfifo "$work/kubelet.in"
	/usr/bin/python3 "$FAKE_KUBELET_DIR/fake_kubelet.py" "$1" \
		"$FAKE_KUBELET_DIR/../../user/agent/proto" ${3:+"$3"} \
		<"$work/kubelet.in" >"$FAKE_KUBELET_EVENTS" 2>"$work/kubelet.err" &
	FAKE_KUBELET_PID=$!
	exec 7>"$work/kubelet.in"
	fake_kubelet_wait 'e["event"] == "listening"' >/dev/null || {
		cat "$work/kubelet.err" >&2
		return 1
	}
}

fake_kubelet() { echo "$*" >&7; }

fake_kubelet_wait() { # <python-expr> [n]
	local i
	for ((i = 0; i < 100; i++)); do
		/usr/bin/python3 - "$FAKE_KUBELET_EVENTS" "${2:-1}" "$1" <<-'PY' && return 0
		import json, sys
		hits = [e for e in map(json.loads, open(sys.argv[1])) if eval(sys.argv[3])]
		if len(hits) < int(sys.argv[2]): sys.exit(1)
		print(json.dumps(hits[-1]))
		PY
		sleep 0.05
	done
	return 1
}

fake_kubelet_stop() {
	exec 7>&- 2>/dev/null
	[ -n "$FAKE_KUBELET_PID" ] && kill "$FAKE_KUBELET_PID" 2>/dev/null
	FAKE_KUBELET_PID=
}

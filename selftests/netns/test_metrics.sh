#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# railnetd's Prometheus endpoint: /metrics in text format 0.0.4 with HELP and
# TYPE for every family, streamed; /healthz, and nothing else answers.
set -u
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/lab.sh"
. "$(dirname "$0")/../lib/agent.sh"

if ! why=$(lab_require); then
	tap_skip "metrics" "$why"
	tap_done; exit
fi
TAP_LOG=$(mktemp)
trap 'agent_stop 1; lab_down; rm -f "$TAP_LOG"' EXIT
lab_up 1 1
tap_ok "agent starts with metrics.listen" \
	agent_start 1 "$(agent_config 1 '"metrics":{"listen":"127.0.0.1:9402"}')"

get() { lab_in "$(lab_node_ns 1)" curl -s -o /dev/null -w '%{http_code} %{content_type}' "$@"; }
scrape=$(lab_in "$(lab_node_ns 1)" curl -sf http://127.0.0.1:9402/metrics)
tap_eq "GET /metrics is text format 0.0.4" "200 text/plain; version=0.0.4; charset=utf-8" \
	"$(get http://127.0.0.1:9402/metrics)"
tap_eq "GET /healthz answers ok" "ok" "$(lab_in "$(lab_node_ns 1)" curl -sf http://127.0.0.1:9402/healthz)"
tap_eq "any other path is 404" "404" "$(get http://127.0.0.1:9402/metric | cut -d' ' -f1)"
tap_eq "POST /metrics is refused" "405" "$(get -X POST http://127.0.0.1:9402/metrics | cut -d' ' -f1)"
tap_ok "the body is streamed (chunked), not sized up front" bash -c \
	"ip netns exec $(lab_node_ns 1) curl -sf -D - -o /dev/null http://127.0.0.1:9402/metrics | grep -qi '^transfer-encoding: chunked'"
tap_eq "HEAD /metrics answers without a body" "200 0" \
	"$(lab_in "$(lab_node_ns 1)" curl -s -I -o /dev/null -w '%{http_code} %{size_download}' http://127.0.0.1:9402/metrics)"
tap_ok "two scrapes at once both end with the same families" bash -c '
	n=$1; f=$(mktemp -d)
	ip netns exec "$n" curl -sf -o "$f/a" http://127.0.0.1:9402/metrics & ip netns exec "$n" curl -sf -o "$f/b" http://127.0.0.1:9402/metrics; wait
	diff <(grep "^# TYPE" "$f/a") <(grep "^# TYPE" "$f/b") && grep -q "^railnet_build_info" "$f/a"; r=$?; rm -rf "$f"; exit $r' _ "$(lab_node_ns 1)"
tap_ok "two scrapes over one kept-alive connection (as Prometheus scrapes)" bash -c '
	n=$1; f=$(mktemp -d)
	ip netns exec "$n" curl -sfv -o "$f/a" http://127.0.0.1:9402/metrics -o "$f/b" http://127.0.0.1:9402/metrics 2>"$f/log" &&
		grep -qi "re-using existing connection" "$f/log" && grep -q "^railnet_build_info" "$f/a" && grep -q "^railnet_build_info" "$f/b"
	r=$?; rm -rf "$f"; exit $r' _ "$(lab_node_ns 1)"
tap_ok "build info" grep -q '^railnet_build_info{version="' <<<"$scrape"
tap_eq "pool size of rail 1's v4 pool" "19" \
	"$(awk '/^railnet_ipam_pool_size\{pool="gpu1-net11",/ {print $2}' <<<"$scrape")"
tap_ok "every family has HELP and TYPE" bash -c '
	for f in $(grep -v "^#" <<<"$1" | sed -E "s/[{ ].*//" | sort -u); do
		grep -q "^# HELP $f " <<<"$1" && grep -q "^# TYPE $f " <<<"$1" || { echo "$f"; exit 1; }
	done' _ "$scrape"

tap_done

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make bench`: runs every bench/bench_*.sh.  Each benchmark measures railnet
# and the reference it is compared with in the same run, on the same lab, and
# prints medians and the ratio against its target.
set -u
cd "$(dirname "$0")/.."
status=0
found=0
for b in bench/bench_*.sh; do
	[ -f "$b" ] || continue
	found=1
	echo "== ${b##*/}"
	OUTPUT=${OUTPUT:-build} bash "$b" || status=1
done
[ "$found" = 1 ] || echo "no benchmarks yet"
exit $status

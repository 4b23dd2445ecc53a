#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ns/packet of each datapath program through BPF_PROG_TEST_RUN, for 1, 100
# and 1000 pods x 8 NICs of map entries, next to an empty tc program.
set -u
cd "$(dirname "$0")/.."
O=${OUTPUT:-build}
exec "$O/bench/bench_datapath" "${BENCH_REPEAT:-200000}"

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ns/packet of each datapath program through BPF_PROG_TEST_RUN, for 1, 100
# and 1000 pods x 2, 8 and 16 NICs of map entries, next to an empty tc
# program; both program pairs (this kernel's, and the probe-read one of
# kernels before 6.2).  BENCH_REPEAT: packets per run.
set -u
cd "$(dirname "$0")/.."
O=${OUTPUT:-build}
exec "$O/bench/bench_datapath" "${BENCH_REPEAT:-5000}"

// SPDX-License-Identifier: Apache-2.0
/* ns/packet of each datapath program (BPF_PROG_TEST_RUN with repeat) as the
 * number of pods and of rail NICs per pod grow (1, 100, 1000 pods x 2, 8, 16
 * NICs of map entries, up to 16000 NICs and 32000 addresses), next to an
 * empty tc program measured in the same run, for both program pairs: the one
 * this kernel gets and the probe-read one of kernels before 6.2.  Target:
 * every program <= 60 ns here, flat in pods and NICs.  Runs in a private
 * netns and pins nothing.
 *
 * The machine is shared: a run is disturbed by whatever else runs (IRQs,
 * softirqs, a busy sibling thread and cache pollution count in
 * BPF_PROG_TEST_RUN's time; only rescheduling does not), and slow spells
 * last seconds.  So each figure is the fastest of many short runs spread
 * over PASSES passes - the program's own cost - and the median run is
 * shown for what a disturbed run looks like; the cases and the empty program
 * are measured in turn.
 *
 *   build/bench/bench_datapath [repeat]
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../selftests/prog_tests/pktgen.h"
#include "agent/dp_loader.h"

#define RUNS 15
#define PASSES 7
#define TARGET_NS 60.0
#define LO 1
#define PASS ((__u32)-1) /* TC_ACT_UNSPEC */
#define REDIRECT 7

static const uint8_t mac_pod[6] = { 0x02, 0, 0, 0, 0, 0x10 };
static const uint8_t mac_gw[6] = { 0x02, 0, 0, 0, 0, 0xfe };

/* A program that only returns TC_ACT_UNSPEC: the cost of being a tc hook. */
static int empty_prog(void)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = -1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};

	return bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "rn_empty", "GPL", insns, 2, NULL);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ns per packet of one run of @repeat packets; -1 when the program's
 * verdict is not @verdict (the bench would measure another path). */
static double run_once(int prog_fd, const struct pkt *p, __u32 repeat, __u32 verdict)
{
	struct __sk_buff skb = { .ifindex = LO };
	uint8_t out[256];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = p->data, .data_size_in = (__u32)p->len,
		    .data_out = out, .data_size_out = sizeof(out), .ctx_in = &skb,
		    .ctx_size_in = sizeof(skb), .repeat = repeat);

	if (bpf_prog_test_run_opts(prog_fd, &opts) || opts.retval != verdict)
		return -1;
	return opts.duration;
}

struct bench_case {
	const char *what;
	bool egress;
	bool gated; /* held to the 60 ns target */
	const char *src, *dst;
	__u32 verdict;
};

/* Pod 0 holds 172.16.(11+r).1 and fd16:(0x11+r)::1 on rail r; its rail 0 is
 * LO. */
static const struct bench_case cases[] = {
	{ "egress return path v4 (wrong NIC, gateway MAC learnt)", true, true, "172.16.12.1",
	  "172.16.40.9", REDIRECT },
	{ "egress return path v6 (wrong NIC, gateway MAC learnt)", true, true, "fd16:12::1",
	  "fd16:40::9", REDIRECT },
	{ "egress right NIC (count, pass)", true, true, "172.16.11.1", "172.16.40.9", PASS },
	{ "egress eth0 traffic (unknown source, pass)", true, true, "10.233.1.1", "10.233.2.1",
	  PASS },
	{ "ingress rail NIC (count, gateway seen)", false, true, "172.16.40.9", "172.16.11.1",
	  PASS },
	{ "egress return path v4 to NIC k's subnet (neighbour path)", true, false, "172.16.12.1",
	  "172.16.12.77", REDIRECT },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* A UDP datagram; egress frames go to the gateway, ingress ones come from it. */
static void build(const struct bench_case *c, struct pkt *p)
{
	bool v6 = strchr(c->src, ':');

	pkt_eth(p, c->egress ? mac_gw : mac_pod, c->egress ? mac_pod : mac_gw,
		v6 ? ETH_P_IPV6 : ETH_P_IP);
	if (v6)
		pkt_ipv6(p, c->src, c->dst, 17, 0);
	else
		pkt_ipv4(p, c->src, c->dst, 0);
}

/* Pods @from..@to-1 with @nics NICs each; pod 0 lives in this netns (the
 * one the packets are measured in), the others in made-up ones. */
static int fill(struct dp_maps *maps, __u64 self, int from, int to, int nics)
{
	for (int pod = from; pod < to; pod++) {
		for (int r = 0; r < nics; r++) {
			struct rn_nic nic = { 0 };
			__u32 id = (__u32)(pod * nics + r + 1);
			int err;

			nic.netns = pod ? self + 1000 + (__u64)pod : self;
			/* Pod 0's rail 0 is the hook's device (LO); every
			 * other NIC is some other device. */
			nic.ifindex = pod == 0 && r == 0 ? LO : (__u32)(100 + r);
			nic.flags = RN_NIC_ACTIVE | RN_NIC_V4 | RN_NIC_GW4 | RN_NIC_V6 | RN_NIC_GW6;
			memcpy(nic.mac, mac_pod, 6);
			nic.plen4 = 24;
			nic.plen6 = 64;
			nic.addr4[0] = 172, nic.addr4[1] = 16, nic.addr4[2] = (__u8)(11 + r);
			nic.addr4[3] = (__u8)(pod % 250 + 1);
			memcpy(nic.gw4, nic.addr4, 3);
			nic.gw4[3] = 254;
			inet_pton(AF_INET6, "fd16::", nic.addr6);
			nic.addr6[2] = 0, nic.addr6[3] = (__u8)(0x11 + r);
			nic.addr6[14] = (__u8)(pod >> 8), nic.addr6[15] = (__u8)((pod & 0xff) + 1);
			memcpy(nic.gw6, nic.addr6, 8);
			nic.gw6[15] = 0xfe;
			err = dp_nic_publish(maps, id, &nic, true);
			if (err)
				return err;
		}
	}
	return 0;
}

/* How many keys wait in the hash maps, their buckets being full. */
static int overflowed(const struct dp_maps *maps)
{
	int n = 0;

	for (__u32 b = 0; b < RN_ADDR_BUCKETS; b++) {
		struct rn_bucket bk;

		if (!bpf_map_lookup_elem(maps->aidx, &b, &bk) && bk.overflow)
			n++;
	}
	return n;
}

static const int pod_counts[] = { 1, 100, 1000 };
static const int nic_counts[] = { 2, 8, 16 };
#define NPODS (sizeof(pod_counts) / sizeof(pod_counts[0]))
#define NNICS (sizeof(nic_counts) / sizeof(nic_counts[0]))

struct result {
	double runs[NNICS][NPODS][NCASES][PASSES * RUNS]; /* ns/packet of every run */
	double min[NNICS][NPODS][NCASES];                 /* the fastest */
	double med[NNICS][NPODS][NCASES];                 /* the median */
	double empty_min;
	int overflow; /* buckets overflowed at the largest point */
};

/* One pass over a grid point: RUNS runs of every case and of the empty
 * program, in turn, into @runs (case-major, PASSES * RUNS per case). */
static int measure_point(struct datapath_bpf *skel, int empty_fd, __u32 repeat, int pass,
			 double runs[NCASES][PASSES * RUNS], double *empty_min)
{
	for (int r = 0; r < RUNS; r++) {
		for (size_t c = 0; c <= NCASES; c++) {
			const struct bench_case *bc = &cases[c < NCASES ? c : 3];
			int fd = c == NCASES ? empty_fd :
					       bpf_program__fd(dp_prog(skel, bc->egress ?
									   DP_HOOK_EGRESS :
									   DP_HOOK_INGRESS));
			struct pkt p;
			double t;

			build(bc, &p);
			t = run_once(fd, &p, repeat, bc->verdict);
			if (t < 0) {
				printf("bench_datapath: %s: unexpected verdict\n", bc->what);
				return -EINVAL;
			}
			if (c == NCASES)
				*empty_min = !*empty_min || t < *empty_min ? t : *empty_min;
			else
				runs[c][pass * RUNS + r] = t;
		}
	}
	return 0;
}

/* Every case at every point of the grid, with the program pair dp_load
 * picks for @knobs: a skeleton (maps of its own) per point, filled to it.
 * The points are measured in PASSES passes over the whole grid, so that a
 * slow spell of the machine (they last seconds) does not decide a point;
 * a point's figure is its fastest run. */
static int measure(const struct dp_knobs *knobs, int empty_fd, __u32 repeat, struct result *res,
		   bool *btf)
{
	struct datapath_bpf *skel[NNICS][NPODS] = { { NULL } };
	struct dp_maps maps[NNICS][NPODS] = { { { 0 } } };
	int err = 0;

	for (size_t n = 0; n < NNICS && !err; n++)
		for (size_t k = 0; k < NPODS && !err; k++) {
			__u64 self;

			err = dp_load(NULL, knobs, &skel[n][k]);
			if (!err)
				err = dp_maps_open(skel[n][k], &maps[n][k]);
			if (err)
				break;
			*btf = bpf_program__autoload(skel[n][k]->progs.rn_egress);
			self = skel[n][k]->rodata->rn_netns_cookie ? pkt_netns_cookie() : 0;
			err = fill(&maps[n][k], self, 0, pod_counts[k], nic_counts[n]);
			/* Pod 0's gateways are known, as after the first frame
			 * from them. */
			for (int r = 0; r < nic_counts[n]; r++)
				for (int f = 0; f < RN_FAM_MAX; f++) {
					struct rn_gw *gw =
						&maps[n][k].gw_mem[(r + 1) * RN_FAM_MAX + f];

					memcpy(gw->mac, mac_gw, 6);
					gw->mac_valid = 1;
				}
		}
	for (int pass = 0; pass < PASSES && !err; pass++)
		for (size_t n = 0; n < NNICS && !err; n++)
			for (size_t k = 0; k < NPODS && !err; k++)
				err = measure_point(skel[n][k], empty_fd, repeat, pass,
						    res->runs[n][k], &res->empty_min);
	for (size_t n = 0; n < NNICS && !err; n++)
		for (size_t k = 0; k < NPODS; k++)
			for (size_t c = 0; c < NCASES; c++) {
				double *t = res->runs[n][k][c];

				qsort(t, PASSES * RUNS, sizeof(*t), cmp_double);
				res->min[n][k][c] = t[0];
				res->med[n][k][c] = t[PASSES * RUNS / 2];
			}
	if (!err)
		res->overflow = overflowed(&maps[NNICS - 1][NPODS - 1]);
	for (size_t n = 0; n < NNICS; n++)
		for (size_t k = 0; k < NPODS; k++) {
			dp_maps_close(&maps[n][k]);
			datapath_bpf__destroy(skel[n][k]);
		}
	return err;
}

/* The table of one program pair; returns how many gated cases missed. */
static int report(const char *title, const struct result *res, __u32 repeat)
{
	int missed = 0;

	printf("\n%s\nns/packet, fastest of %d runs (%d passes) x %u packets, by pods x NICs "
	       "per pod; growth: slowest / fastest point; median: of all runs, the worst point\n",
	       title, PASSES * RUNS, PASSES, repeat);
	printf("%-56s", "");
	for (size_t n = 0; n < NNICS; n++)
		for (size_t k = 0; k < NPODS; k++) {
			char h[32];

			snprintf(h, sizeof(h), "%dx%d", pod_counts[k], nic_counts[n]);
			printf(" %7s", h);
		}
	printf("  %6s %6s  %s\n", "growth", "median", "vs target");
	for (size_t c = 0; c < NCASES; c++) {
		double worst = 0, best = 1e9, med = 0;

		printf("%-56s", cases[c].what);
		for (size_t n = 0; n < NNICS; n++)
			for (size_t k = 0; k < NPODS; k++) {
				double v = res->min[n][k][c];

				worst = v > worst ? v : worst;
				best = v < best ? v : best;
				med = res->med[n][k][c] > med ? res->med[n][k][c] : med;
				printf(" %7.0f", v);
			}
		printf("  %5.2fx %6.0f  ", worst / (best ? best : 1), med);
		if (cases[c].gated) {
			printf("%.2fx of %.0f ns %s\n", worst / TARGET_NS, TARGET_NS,
			       worst <= TARGET_NS ? "ok" : "MISSED");
			missed += worst > TARGET_NS;
		} else {
			printf("-\n");
		}
	}
	printf("%-56s %7.0f  (the cost of any tc hook)\n", "empty tc program (reference)",
	       res->empty_min);
	printf("keys of 1000 pods x 16 NICs whose bucket overflowed to the hash map: %d buckets of %u\n",
	       res->overflow, RN_ADDR_BUCKETS);
	return missed;
}

int main(int argc, char **argv)
{
	static const struct dp_knobs knobs[2] = {
		{ .fast_redirect = true },
		{ .fast_redirect = true, .core_netns = true },
	};
	__u32 repeat = argc > 1 ? (__u32)atoi(argv[1]) : 5000;
	static struct result res[2];
	int empty_fd, missed = 0;
	bool btf[2];

	if (geteuid() || unshare(CLONE_NEWNET)) {
		printf("bench_datapath: needs root (BPF_PROG_TEST_RUN, a private netns)\n");
		return 1;
	}
	libbpf_set_print(NULL);
	empty_fd = empty_prog();
	if (empty_fd < 0) {
		printf("bench_datapath: cannot load an empty tc program: %s\n", strerror(errno));
		return 1;
	}
	for (int v = 0; v < 2; v++) {
		int err = measure(&knobs[v], empty_fd, repeat, &res[v], &btf[v]);

		if (err) {
			printf("bench_datapath: %s\n", strerror(-err));
			return 1;
		}
	}
	/* The kernel's own pair is held to the target; the probe-read one
	 * only shown (it is what kernels before 6.2 get, not this one). */
	missed = report(btf[0] ? "this kernel: rn_egress/rn_ingress (netns by plain loads)" :
				 "this kernel: rn_egress_core/rn_ingress_core (netns by probe reads)",
			&res[0], repeat);
	if (btf[0])
		report("kernels before 6.2: rn_egress_core/rn_ingress_core (netns by probe reads), "
		       "measured here, not gated",
		       &res[1], repeat);
	close(empty_fd);
	return missed ? 1 : 0;
}

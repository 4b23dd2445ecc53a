// SPDX-License-Identifier: Apache-2.0
/* ns/packet of each datapath program (BPF_PROG_TEST_RUN with repeat), as
 * the number of pods grows (1, 100, 1000 pods x 8 rail NICs of entries),
 * next to an empty tc program measured in the same run.  Target: the return
 * path <= 60 ns and flat in the number of pods.  Runs in a private netns and
 * pins nothing.
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

#define RAILS 8
#define RUNS 7
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

/* Median ns per packet of RUNS runs of @repeat packets; -1 when the
 * program's verdict is not @verdict (the bench would measure another path). */
static double measure(int prog_fd, const struct pkt *p, __u32 repeat, __u32 verdict)
{
	struct __sk_buff skb = { .ifindex = LO };
	double t[RUNS];
	uint8_t out[256];

	for (int r = 0; r < RUNS; r++) {
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = p->data,
			    .data_size_in = (__u32)p->len, .data_out = out,
			    .data_size_out = sizeof(out), .ctx_in = &skb, .ctx_size_in = sizeof(skb),
			    .repeat = repeat);

		if (bpf_prog_test_run_opts(prog_fd, &opts) || opts.retval != verdict)
			return -1;
		t[r] = opts.duration;
	}
	qsort(t, RUNS, sizeof(t[0]), cmp_double);
	return t[RUNS / 2];
}

/* Pods 0..@pods-1, each with RAILS NICs; pod 0 lives in this netns (the
 * one the packets are measured in), the others in made-up ones. */
static int fill(const struct dp_maps *maps, __u64 self, int from, int pods)
{
	for (int pod = from; pod < pods; pod++) {
		for (int r = 0; r < RAILS; r++) {
			struct rn_nic nic = { 0 };
			__u32 id = (__u32)(pod * RAILS + r + 1);
			int err;

			nic.netns = pod ? self + (__u64)pod : self;
			/* Pod 0's rail 1 is the hook's device (LO); every
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
			nic.addr6[2] = 0, nic.addr6[3] = (__u8)(11 + r);
			nic.addr6[14] = (__u8)(pod >> 8), nic.addr6[15] = (__u8)(pod & 0xff);
			memcpy(nic.gw6, nic.addr6, 8);
			nic.gw6[15] = 0xfe;
			err = dp_nic_publish(maps, id, &nic, true);
			if (err)
				return err;
		}
	}
	return 0;
}

struct bench_case {
	const char *what;
	bool egress;
	bool gated; /* held to the 60 ns target */
	const char *src, *dst;
	__u32 verdict;
};

/* Pod 0 holds 172.16.(10+r).1 and fd16:(10+r):: on rail r; its rail 1 is LO. */
static const struct bench_case cases[] = {
	{ "egress  return path v4 (wrong NIC -> redirect, gw MAC)", true, true, "172.16.12.1",
	  "172.16.13.9", REDIRECT },
	{ "egress  return path v6 (wrong NIC -> redirect, gw MAC)", true, true, "fd16:12::",
	  "fd16:13::9", REDIRECT },
	{ "egress  right NIC (count, pass)", true, true, "172.16.11.1", "172.16.13.9", PASS },
	{ "egress  eth0 traffic (unknown source, pass)", true, true, "10.233.1.1", "10.233.2.1",
	  PASS },
	{ "ingress rail NIC (count, gateway seen)", false, false, "172.16.13.9", "172.16.11.1",
	  PASS },
};

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

int main(int argc, char **argv)
{
	static const int pod_counts[] = { 1, 100, 1000 };
	double ns[sizeof(cases) / sizeof(cases[0])][3], empty;
	struct dp_knobs knobs = { .fast_redirect = true };
	__u32 repeat = argc > 1 ? (__u32)atoi(argv[1]) : 200000;
	struct datapath_bpf *skel = NULL;
	struct dp_maps maps = { 0 };
	int empty_fd, status = 0, filled = 0;
	__u64 self;

	if (geteuid() || unshare(CLONE_NEWNET)) {
		printf("bench_datapath: needs root (BPF_PROG_TEST_RUN, a private netns)\n");
		return 1;
	}
	libbpf_set_print(NULL);
	if (dp_load(NULL, &knobs, &skel) || dp_maps_open(skel, &maps)) {
		printf("bench_datapath: the datapath does not load\n");
		return 1;
	}
	empty_fd = empty_prog();
	if (empty_fd < 0) {
		printf("bench_datapath: cannot load an empty tc program: %s\n", strerror(errno));
		return 1;
	}
	self = skel->rodata->rn_netns_cookie ? pkt_netns_cookie() : 0;
	for (int k = 0; k < 3; k++) {
		if (fill(&maps, self, filled, pod_counts[k])) {
			printf("bench_datapath: cannot fill %d pods\n", pod_counts[k]);
			return 1;
		}
		filled = pod_counts[k];
		/* Pod 0's gateways are known, as after the first frame from
		 * them (fill() zeroed them on the first round). */
		for (int r = 0; k == 0 && r < RAILS; r++)
			for (int f = 0; f < RN_FAM_MAX; f++) {
				struct rn_gw *gw = &maps.gw_mem[(r + 1) * RN_FAM_MAX + f];

				memcpy(gw->mac, mac_gw, 6);
				gw->mac_valid = 1;
			}
		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			struct pkt p;
			int fd = bpf_program__fd(dp_prog(skel, cases[c].egress ? DP_HOOK_EGRESS :
										    DP_HOOK_INGRESS));

			build(&cases[c], &p);
			ns[c][k] = measure(fd, &p, repeat, cases[c].verdict);
			if (ns[c][k] < 0) {
				printf("bench_datapath: %s: unexpected verdict\n", cases[c].what);
				return 1;
			}
		}
	}
	{
		struct pkt p;

		build(&cases[3], &p);
		empty = measure(empty_fd, &p, repeat, PASS);
	}

	printf("%-58s %9s %9s %9s  %s\n", "ns/packet (median of 7 x BPF_PROG_TEST_RUN)", "1 pod",
	       "100 pods", "1000 pods", "vs target");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		double worst = ns[c][0] > ns[c][1] ? ns[c][0] : ns[c][1];

		worst = worst > ns[c][2] ? worst : ns[c][2];
		printf("%-58s %9.1f %9.1f %9.1f  ", cases[c].what, ns[c][0], ns[c][1], ns[c][2]);
		if (cases[c].gated) {
			printf("%.2fx of %.0f ns %s\n", worst / TARGET_NS, TARGET_NS,
			       worst <= TARGET_NS ? "ok" : "MISSED");
			if (worst > TARGET_NS)
				status = 1;
		} else {
			printf("-\n");
		}
	}
	printf("%-58s %9.1f %9s %9s  (the cost of any tc hook)\n", "empty tc program (reference)",
	       empty, "", "");
	printf("growth 1 -> 1000 pods, return path v4: %.2fx\n", ns[0][2] / (ns[0][0] ? ns[0][0] : 1));
	close(empty_fd);
	dp_maps_close(&maps);
	datapath_bpf__destroy(skel);
	return status;
}

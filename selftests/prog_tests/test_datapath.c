// SPDX-License-Identifier: Apache-2.0
/* BPF_PROG_TEST_RUN cases for bpf/datapath.bpf.c: each case is a packet, the
 * hook's ifindex, the verdict and bytes expected, and the counters that must
 * move.  Runs in a private netns; pins nothing. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <netlink/route/link/veth.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/dp_loader.h"
#include "pktgen.h"

#define LO 1              /* the hook's device in the test: plays eth0 and NIC A */
#define NIC_A 1           /* id of a NIC whose device is LO */
#define NIC_B 2           /* id of a NIC on another device, rnb0 */
#define VERDICT_PASS ((__u32)-1) /* TC_ACT_UNSPEC: untouched, next hook decides */
#define VERDICT_SHOT 2
#define VERDICT_REDIRECT 7

static const uint8_t mac_pod[6] = { 0x02, 0, 0, 0, 0, 0x10 };
static const uint8_t mac_b[6] = { 0x02, 0, 0, 0, 0, 0x0b };
static const uint8_t mac_gw[6] = { 0x02, 0, 0, 0, 0, 0xfe };
static const uint8_t mac_bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static int tap_n, tap_failed;
static int nic_b_ifindex;
static const char *variant; /* which program pair runs: "btf" or "core" */

/* The device a case's packet leaves by. */
enum dev {
	DEV_LO,    /* eth0, or NIC A */
	DEV_NIC_B, /* NIC B's own device: where a packet redirected to it passes next */
};

static void tap(bool ok, const char *what)
{
	printf("%sok %d - [%s] %s\n", ok ? "" : "not ", ++tap_n, variant, what);
	if (!ok)
		tap_failed++;
}

static void hexdump(const char *label, const uint8_t *p, size_t n)
{
	printf("# %s:", label);
	for (size_t i = 0; i < n; i++)
		printf("%s%02x", i % 16 ? " " : "\n#   ", p[i]);
	printf("\n");
}

static void nic_v4(struct rn_nic *nic, const char *addr, int plen, const char *gw)
{
	nic->flags |= RN_NIC_ACTIVE | RN_NIC_V4 | (gw ? RN_NIC_GW4 : 0);
	inet_pton(AF_INET, addr, nic->addr4);
	nic->plen4 = (__u8)plen;
	if (gw)
		inet_pton(AF_INET, gw, nic->gw4);
}

static void nic_v6(struct rn_nic *nic, const char *addr, int plen, const char *gw)
{
	nic->flags |= RN_NIC_ACTIVE | RN_NIC_V6 | RN_NIC_GW6;
	inet_pton(AF_INET6, addr, nic->addr6);
	nic->plen6 = (__u8)plen;
	inet_pton(AF_INET6, gw, nic->gw6);
}

struct ctx {
	struct datapath_bpf *skel;
	struct dp_maps maps;
	__u64 netns;
	struct rn_nic a, b;
};

struct outcome {
	__u32 verdict;
	struct pkt out;
};

static int run(struct ctx *c, int prog_fd, const struct pkt *in, int ifindex, struct outcome *o)
{
	struct __sk_buff skb = { .ifindex = (__u32)ifindex };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in->data, .data_size_in = (__u32)in->len,
		    .data_out = o->out.data, .data_size_out = sizeof(o->out.data),
		    .ctx_in = &skb, .ctx_size_in = sizeof(skb), .repeat = 1);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	o->verdict = opts.retval;
	o->out.len = opts.data_size_out;
	return err;
}

/* An egress case: the packet, the device it leaves by, what must happen.
 * A redirect counts no tx: the packet does, on its new device's hook. */
struct egress_case {
	const char *what;
	void (*build)(struct pkt *p);
	enum dev dev;
	__u32 verdict;
	bool rewritten;   /* MACs become (gateway, NIC B) */
	__u32 nic;        /* whose counters move (0: none) */
	__u64 redirects, redirects_fast, tx, drops_gone;
};

static void v4_b_offlink(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "172.16.12.21", "172.16.13.5", 0);
}

static void v4_b_onlink(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "172.16.12.21", "172.16.12.77", 0);
}

static void v4_a(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "172.16.11.21", "172.16.13.5", 0);
}

static void v4_unknown(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "10.233.1.1", "172.16.13.5", 0);
}

static void v4_other_pod(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "172.16.13.21", "172.16.14.5", 0);
}

static void arp_b(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_ARP);
	pkt_arp(p, 1, mac_pod, "172.16.12.21", "172.16.12.254");
}

static void v4_b_fragment(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "172.16.12.21", "172.16.13.5", 0x2000 | 185);
}

static void v4_b_first_fragment(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "172.16.12.21", "172.16.13.5", 0x2000);
}

/* The last fragment: an offset, no MF, and payload where ports would be. */
static void v4_b_last_fragment(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "172.16.12.21", "172.16.13.5", 370);
}

static void v4_a_fragment(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "172.16.11.21", "172.16.13.5", 0x2000 | 185);
}

static void v4_unknown_fragment(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, "10.233.1.1", "172.16.13.5", 0x2000);
}

static void v4_b_vlan(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_8021Q);
	pkt_vlan(p, 100, ETH_P_IP);
	pkt_ipv4(p, "172.16.12.21", "172.16.13.5", 0);
}

/* BPF_PROG_TEST_RUN refuses a frame whose L3 header is cut (EINVAL), as
 * the stack never hands one to tc; what can arrive is a malformed one. */
static void v4_b_bad_ihl(struct pkt *p)
{
	v4_b_offlink(p);
	p->data[14] = 0x44;
}

static void v6_b_offlink(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IPV6);
	pkt_ipv6(p, "fd16:12::1:1", "fd16:13::5", 17, 0);
}

static void v6_b_ns(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IPV6);
	pkt_ipv6(p, "fd16:12::1:1", "ff02::1:ff00:fe", 58, 135);
}

static void v6_b_echo(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IPV6);
	pkt_ipv6(p, "fd16:12::1:1", "fd16:13::5", 58, 128);
}

static void v6_b_fragment(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IPV6);
	pkt_ipv6(p, "fd16:12::1:1", "fd16:13::5", 44, 0);
}

/* A non-first fragment of an ICMPv6 datagram: the fragment header (next
 * header ICMPv6, offset 1232 bytes) stands where ND would be told apart. */
static void v6_b_later_fragment(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IPV6);
	pkt_ipv6(p, "fd16:12::1:1", "fd16:13::5", 44, 58);
	p->data[14 + 40 + 2] = (uint8_t)((1232 >> 3) >> 5);
	p->data[14 + 40 + 3] = (uint8_t)((1232 >> 3) << 3);
}

static void v6_b_icmp_cut(struct pkt *p)
{
	v6_b_echo(p);
	p->len = 14 + 40 + 2; /* ND or not cannot be told */
}

static const struct egress_case egress_cases[] = {
	{ "v4, NIC B's source leaving by eth0, gateway MAC unknown: redirect via neigh",
	  v4_b_offlink, DEV_LO, VERDICT_REDIRECT, false, NIC_B, 1, 0, 0 },
	{ "v4, NIC B's source to NIC B's subnet: redirect, kernel resolves the peer",
	  v4_b_onlink, DEV_LO, VERDICT_REDIRECT, false, NIC_B, 1, 0, 0 },
	{ "v4, NIC A's source on NIC A: untouched, counted as tx", v4_a, DEV_LO, VERDICT_PASS, false,
	  NIC_A, 0, 0, 1 },
	{ "v4, unknown source: untouched", v4_unknown, DEV_LO, VERDICT_PASS },
	{ "v4, same address held by a pod in another netns: untouched", v4_other_pod, DEV_LO,
	  VERDICT_PASS },
	{ "ARP from NIC B's address: untouched", arp_b, DEV_LO, VERDICT_PASS, false, NIC_B },
	/* Fragments: the return path needs only the source address, which
	 * every fragment carries; the program reads no ports.  So all the
	 * fragments of a datagram take the same way as the datagram would -
	 * by eth0 they would be lost - rather than pass untouched. */
	{ "v4 first fragment of NIC B's source: redirected like the whole datagram",
	  v4_b_first_fragment, DEV_LO, VERDICT_REDIRECT, false, NIC_B, 1, 0, 0 },
	{ "v4 middle fragment of NIC B's source: redirected", v4_b_fragment, DEV_LO,
	  VERDICT_REDIRECT, false, NIC_B, 1, 0, 0 },
	{ "v4 last fragment (no ports in it) of NIC B's source: redirected", v4_b_last_fragment,
	  DEV_LO, VERDICT_REDIRECT, false, NIC_B, 1, 0, 0 },
	{ "v4 fragment of NIC A's source on NIC A: untouched, counted as tx", v4_a_fragment,
	  DEV_LO, VERDICT_PASS, false, NIC_A, 0, 0, 1 },
	{ "v4 fragment of an unknown source: untouched", v4_unknown_fragment, DEV_LO, VERDICT_PASS },
	{ "VLAN-tagged frame: untouched", v4_b_vlan, DEV_LO, VERDICT_PASS, false, NIC_B },
	{ "IPv4 header with IHL < 5: untouched", v4_b_bad_ihl, DEV_LO, VERDICT_PASS, false, NIC_B },
	{ "v6, NIC B's source leaving by eth0: redirect", v6_b_offlink, DEV_LO, VERDICT_REDIRECT, false,
	  NIC_B, 1, 0, 0 },
	{ "v6 neighbour solicitation from NIC B's address: untouched", v6_b_ns, DEV_LO, VERDICT_PASS,
	  false, NIC_B },
	{ "v6 echo request (ICMPv6, not ND) from NIC B: redirect", v6_b_echo, DEV_LO, VERDICT_REDIRECT,
	  false, NIC_B, 1, 0, 0 },
	{ "v6 first fragment of NIC B's source: redirect", v6_b_fragment, DEV_LO, VERDICT_REDIRECT, false,
	  NIC_B, 1, 0, 0 },
	{ "v6 later fragment of an ICMPv6 datagram of NIC B: redirect", v6_b_later_fragment,
	  DEV_LO, VERDICT_REDIRECT, false, NIC_B, 1, 0, 0 },
	{ "v6 with a truncated ICMPv6 header: untouched", v6_b_icmp_cut, DEV_LO, VERDICT_PASS, false,
	  NIC_B },
	{ "v4 of NIC B on NIC B (a redirected packet's second pass): untouched, counted as tx",
	  v4_b_offlink, DEV_NIC_B, VERDICT_PASS, false, NIC_B, 0, 0, 1 },
	{ "v6 of NIC B on NIC B: untouched, counted as tx", v6_b_offlink, DEV_NIC_B, VERDICT_PASS,
	  false, NIC_B, 0, 0, 1 },
};

static bool stats_moved(struct ctx *c, __u32 nic, const struct rn_stats *before,
			__u64 redirects, __u64 fast, __u64 tx, __u64 gone)
{
	struct rn_stats after;

	if (!nic)
		return true;
	if (dp_stats_sum(&c->maps, nic, &after))
		return false;
	if (after.redirects - before->redirects != redirects ||
	    after.redirects_fast - before->redirects_fast != fast ||
	    after.tx_packets - before->tx_packets != tx ||
	    after.drops[RN_DROP_NIC_GONE] - before->drops[RN_DROP_NIC_GONE] != gone) {
		printf("# counters of NIC %u moved by redirects %llu fast %llu tx %llu gone %llu\n",
		       nic, (unsigned long long)(after.redirects - before->redirects),
		       (unsigned long long)(after.redirects_fast - before->redirects_fast),
		       (unsigned long long)(after.tx_packets - before->tx_packets),
		       (unsigned long long)(after.drops[RN_DROP_NIC_GONE] -
					    before->drops[RN_DROP_NIC_GONE]));
		return false;
	}
	return true;
}

static void run_egress_case(struct ctx *c, const struct egress_case *tc)
{
	struct rn_stats before = { 0 };
	struct outcome o;
	struct pkt in, want;
	bool ok;
	int err;

	tc->build(&in);
	want = in;
	if (tc->rewritten) {
		memcpy(want.data, mac_gw, 6);
		memcpy(want.data + 6, mac_b, 6);
	}
	if (tc->nic)
		dp_stats_sum(&c->maps, tc->nic, &before);
	err = run(c, bpf_program__fd(dp_prog(c->skel, DP_HOOK_EGRESS)), &in,
		  tc->dev == DEV_NIC_B ? nic_b_ifindex : LO, &o);
	if (err)
		printf("# test run: %s\n", strerror(-err));
	ok = !err && o.verdict == tc->verdict && o.out.len == want.len &&
	     !memcmp(o.out.data, want.data, want.len);
	if (!ok) {
		printf("# verdict %d, want %d\n", (int)o.verdict, (int)tc->verdict);
		hexdump("got", o.out.data, o.out.len);
		hexdump("want", want.data, want.len);
	}
	ok = stats_moved(c, tc->nic, &before, tc->redirects, tc->redirects_fast, tc->tx,
			 tc->drops_gone) && ok;
	tap(ok, tc->what);
}

static void gateway_learning(struct ctx *c)
{
	struct rn_gw *gw4 = &c->maps.gw_mem[NIC_B * RN_FAM_MAX + RN_FAM_V4];
	struct rn_gw *gw6 = &c->maps.gw_mem[NIC_B * RN_FAM_MAX + RN_FAM_V6];
	int ingress = bpf_program__fd(dp_prog(c->skel, DP_HOOK_INGRESS));
	struct rn_stats before, after;
	bool same_tick;
	int rx_extra = 0;
	struct timespec ts;
	struct outcome o;
	struct pkt p;
	__u64 now;

	/* last_seen_ns is CLOCK_MONOTONIC_COARSE. */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (__u64)ts.tv_sec * 1000000000ULL + (__u64)ts.tv_nsec;
	dp_stats_sum(&c->maps, NIC_B, &before);

	/* A routed frame before the gateway is known: nothing learnt. */
	pkt_eth(&p, mac_b, mac_gw, ETH_P_IP);
	pkt_ipv4(&p, "172.16.13.5", "172.16.12.21", 0);
	run(c, ingress, &p, nic_b_ifindex, &o);
	tap(o.verdict == VERDICT_PASS && !gw4->mac_valid && !gw4->last_seen_ns,
	    "ingress: a routed frame from an unknown MAC teaches nothing");

	gw4->probe_sent_ns = now;
	pkt_eth(&p, mac_b, mac_gw, ETH_P_ARP);
	pkt_arp(&p, 2, mac_gw, "172.16.12.254", "172.16.12.21");
	run(c, ingress, &p, nic_b_ifindex, &o);
	tap(o.verdict == VERDICT_PASS && gw4->mac_valid && !memcmp(gw4->mac, mac_gw, 6) &&
		    gw4->last_seen_ns >= now && !gw4->probe_sent_ns && gw4->rtt_ns > 0,
	    "ingress: the gateway's ARP reply records its MAC, last seen, and the probe's RTT");

	gw4->last_seen_ns = 0;
	gw4->seen_jiffies = 0; /* as if the last sign was ticks ago */
	pkt_eth(&p, mac_b, mac_gw, ETH_P_IP);
	pkt_ipv4(&p, "172.16.13.5", "172.16.12.21", 0);
	run(c, ingress, &p, nic_b_ifindex, &o);
	tap(gw4->last_seen_ns >= now, "ingress: a frame routed by the gateway counts as a sign of it");

	pkt_eth(&p, mac_b, mac_gw, ETH_P_IPV6);
	pkt_ipv6(&p, "fd16:12::fe", "fd16:12::1:1", 58, 136);
	run(c, ingress, &p, nic_b_ifindex, &o);
	tap(gw6->mac_valid && !memcmp(gw6->mac, mac_gw, 6) && gw6->last_seen_ns >= now,
	    "ingress: the v6 gateway's NA records its MAC");

	/* Two signs back to back, the second read in the first's tick -
	 * unless a tick ended between them, so a few tries. */
	pkt_eth(&p, mac_b, mac_gw, ETH_P_IP);
	pkt_ipv4(&p, "172.16.13.5", "172.16.12.21", 0);
	same_tick = false;
	for (int try = 0; try < 5 && !same_tick; try++) {
		run(c, ingress, &p, nic_b_ifindex, &o);
		gw4->last_seen_ns = 1;
		run(c, ingress, &p, nic_b_ifindex, &o);
		same_tick = gw4->last_seen_ns == 1;
		rx_extra += 2;
	}
	tap(same_tick, "ingress: a second sign within the same tick leaves the record alone");

	dp_stats_sum(&c->maps, NIC_B, &after);
	tap(after.rx_packets - before.rx_packets == 4 + (unsigned)rx_extra &&
		    after.rx_bytes - before.rx_bytes == (3 + (unsigned)rx_extra) * 42 + 62,
	    "ingress: rx packets and bytes of the NIC count every frame");

	dp_stats_sum(&c->maps, NIC_A, &before);
	run(c, ingress, &p, LO, &o);
	dp_stats_sum(&c->maps, NIC_A, &after);
	tap(o.verdict == VERDICT_PASS && after.rx_packets - before.rx_packets == 1,
	    "ingress: each NIC is found by its own device");
}

static void fast_path(struct ctx *c)
{
	static const struct egress_case fast[] = {
		{ "v4 with the gateway MAC learnt: MACs rewritten, plain redirect", v4_b_offlink,
		  DEV_LO, VERDICT_REDIRECT, true, NIC_B, 1, 1, 0 },
		{ "v4 on NIC B's subnet with the gateway MAC learnt: still via neigh",
		  v4_b_onlink, DEV_LO, VERDICT_REDIRECT, false, NIC_B, 1, 0, 0 },
		{ "v6 with the gateway MAC learnt: MACs rewritten", v6_b_offlink, DEV_LO,
		  VERDICT_REDIRECT, true, NIC_B, 1, 1, 0 },
	};

	for (size_t i = 0; i < sizeof(fast) / sizeof(fast[0]); i++)
		run_egress_case(c, &fast[i]);
}

static void detached_nic(struct ctx *c)
{
	static const struct egress_case gone = {
		"a source whose NIC is being detached: dropped, not leaked by eth0",
		v4_b_offlink, DEV_LO, VERDICT_SHOT, false, NIC_B, 0, 0, 0, 1
	};
	struct rn_nic detaching = c->b;
	__u32 id = NIC_B;

	/* What dp_nic_unpublish does first. */
	detaching.flags &= ~(__u32)RN_NIC_ACTIVE;
	bpf_map_update_elem(c->maps.nic, &id, &detaching, BPF_ANY);
	run_egress_case(c, &gone);
	dp_nic_unpublish(&c->maps, NIC_B, &c->b);
	run_egress_case(c, &(struct egress_case){ "after detach: untouched", v4_b_offlink, DEV_LO,
						  VERDICT_PASS });
}

/* rn_gw_v2 is mapped a slice at a time as NICs are published: a NIC whose
 * entries straddle two slices, and the last id, read and write the map. */
static void gateway_slices(struct ctx *c)
{
	const __u32 per_slice = DP_GW_SLICE / (RN_FAM_MAX * sizeof(struct rn_gw));
	const __u32 ids[] = { per_slice, RN_MAX_NICS - 1 };
	unsigned int before = c->maps.gw_sliced;
	struct rn_nic nic = { 0 };
	bool ok = true;

	/* 682 NICs of 96 bytes in 64 KiB: per_slice's v6 entry begins in the
	 * first slice and ends in the second. */
	_Static_assert(DP_GW_SLICE % (RN_FAM_MAX * sizeof(struct rn_gw)) != 0,
		       "the first case straddles a slice boundary");
	nic.netns = c->netns + 2; /* no packet of this run comes from it */
	nic.ifindex = LO;
	nic_v4(&nic, "172.16.14.21", 24, "172.16.14.254");
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		for (int f = 0; f < RN_FAM_MAX; f++) {
			__u32 key = ids[i] * RN_FAM_MAX + (__u32)f;
			struct rn_gw seen = { .rtt_ns = 7 };

			bpf_map_update_elem(c->maps.gw, &key, &seen, BPF_ANY);
		}
		ok = !dp_nic_publish(&c->maps, ids[i], &nic, true) && ok;
		for (int f = 0; ok && f < RN_FAM_MAX; f++) {
			__u32 key = ids[i] * RN_FAM_MAX + (__u32)f;
			struct rn_gw *gw = &c->maps.gw_mem[key], seen;

			ok = !gw->rtt_ns; /* zeroed by the fresh publish, through gw_mem */
			memcpy(gw->mac, mac_gw, 6);
			gw->mac_valid = 1;
			ok = ok && !bpf_map_lookup_elem(c->maps.gw, &key, &seen) && seen.mac_valid &&
			     !memcmp(seen.mac, mac_gw, 6);
		}
		dp_nic_unpublish(&c->maps, ids[i], &nic);
	}
	tap(ok, "gateway map: a NIC across two slices and the last id are read and written "
		"through gw_mem");
	tap(!(before & ~1u) && c->maps.gw_sliced == (1u | 2u | 1u << (DP_GW_SLICE_COUNT - 1)),
	    "gateway map: only the slices of published NICs are mapped");
}

/* An IPv4 address of 11.0.0.0/8 whose key in netns @netns falls into
 * bucket @b, searched from @from on. */
static __u32 colliding_addr(__u64 netns, __u32 b, __u32 from)
{
	for (__u32 host = from; host < 0x1000000; host++) {
		__u32 a = htonl(0x0b000000u | host);

		if (rn_addr_bucket(netns, RN_FAM_V4, a, 0) == b)
			return host;
	}
	return 0;
}

static struct rn_bucket bucket_of(struct ctx *c, __u32 b)
{
	struct rn_bucket bk = { { 0 } };

	bpf_map_lookup_elem(c->maps.aidx, &b, &bk);
	return bk;
}

static bool in_bucket(const struct rn_bucket *bk, __u32 id)
{
	for (int w = 0; w < RN_BUCKET_WAYS; w++)
		if (bk->nic[w] == id)
			return true;
	return false;
}

static char crowd_src[INET_ADDRSTRLEN];

static void v4_crowd(struct pkt *p)
{
	pkt_eth(p, mac_bcast, mac_pod, ETH_P_IP);
	pkt_ipv4(p, crowd_src, "172.16.13.5", 0);
}

/* The device index likewise: NIC B's device key behind a full bucket. */
static void index_devices(struct ctx *c)
{
	enum { FIRST = 20 };
	int ingress = bpf_program__fd(dp_prog(c->skel, DP_HOOK_INGRESS));
	__u32 b = rn_ifc_bucket(c->netns, (__u32)nic_b_ifindex), ib = b, n = 0;
	struct rn_nic nics[RN_BUCKET_WAYS];
	struct rn_stats before, after;
	struct rn_bucket bk = { { 0 } };
	struct outcome o;
	struct pkt p;
	int err;

	err = dp_nic_unpublish(&c->maps, NIC_B, &c->b);
	for (__u64 netns = c->netns + 1000; !err && n < RN_BUCKET_WAYS; netns++) {
		if (rn_ifc_bucket(netns, 1) != b)
			continue;
		memset(&nics[n], 0, sizeof(nics[n]));
		nics[n].netns = netns;
		nics[n].ifindex = 1;
		nic_v4(&nics[n], "11.255.0.1", 8, NULL);
		err = dp_nic_publish(&c->maps, FIRST + n, &nics[n], true);
		n++;
	}
	if (!err)
		err = dp_nic_publish(&c->maps, NIC_B, &c->b, false);
	bpf_map_lookup_elem(c->maps.iidx, &ib, &bk);
	tap(!err && bk.overflow && !in_bucket(&bk, NIC_B),
	    "index: a NIC's device key behind a full bucket");
	dp_stats_sum(&c->maps, NIC_B, &before);
	pkt_eth(&p, mac_b, mac_gw, ETH_P_IP);
	pkt_ipv4(&p, "172.16.13.5", "172.16.12.21", 0);
	run(c, ingress, &p, nic_b_ifindex, &o);
	dp_stats_sum(&c->maps, NIC_B, &after);
	tap(o.verdict == VERDICT_PASS && after.rx_packets - before.rx_packets == 1,
	    "index: ... is still found by its frames");
	for (__u32 i = 0; i < n; i++)
		dp_nic_unpublish(&c->maps, FIRST + i, &nics[i]);
	bpf_map_lookup_elem(c->maps.iidx, &ib, &bk);
	tap(!bk.overflow && in_bucket(&bk, NIC_B), "index: ... and takes a way once one is free");
}

/* The inline index: a full bucket sends the programs to the hash map, an
 * id in a bucket counts only if its NIC owns the key, a freed way takes
 * the key that waited. */
static void index_buckets(struct ctx *c)
{
	enum { FIRST = 10, CROWD = RN_BUCKET_WAYS + 1 };
	struct egress_case redirect = { "", v4_crowd, DEV_LO, VERDICT_REDIRECT, false, 0, 1 };
	struct rn_nic nics[CROWD];
	struct rn_bucket bk;
	__u32 host = 0, b = 0, last = FIRST + CROWD - 1, a;
	char what[160];
	int err = 0;

	/* RN_BUCKET_WAYS + 1 NICs of other pods and ours, all in one bucket. */
	for (int i = 0; i < CROWD && !err; i++) {
		__u64 netns = i == CROWD - 1 ? c->netns : c->netns + 100 + (__u64)i;

		if (i == 0) {
			host = 1;
			b = rn_addr_bucket(netns, RN_FAM_V4, htonl(0x0b000000u | host), 0);
		} else {
			host = colliding_addr(netns, b, host + 1);
		}
		memset(&nics[i], 0, sizeof(nics[i]));
		nics[i].netns = netns;
		nics[i].ifindex = (__u32)nic_b_ifindex;
		a = htonl(0x0b000000u | host);
		inet_ntop(AF_INET, &a, crowd_src, sizeof(crowd_src));
		nic_v4(&nics[i], crowd_src, 8, "11.255.255.254");
		err = host ? dp_nic_publish(&c->maps, FIRST + (__u32)i, &nics[i], true) : -ENOENT;
	}
	if (err) {
		tap(false, "index: publish NICs that share a bucket");
		return;
	}
	bk = bucket_of(c, b);
	tap(bk.overflow && !in_bucket(&bk, last), "index: a full bucket overflows to the hash map");
	redirect.nic = last;
	snprintf(what, sizeof(what), "index: a key of an overflowed bucket (%s) is still found",
		 crowd_src);
	redirect.what = what;
	run_egress_case(c, &redirect);

	dp_nic_unpublish(&c->maps, FIRST, &nics[0]);
	bk = bucket_of(c, b);
	tap(!bk.overflow && in_bucket(&bk, last) && !in_bucket(&bk, FIRST),
	    "index: a freed way takes the waiting key, and the overflow clears");
	redirect.what = "index: ... which is found there";
	run_egress_case(c, &redirect);

	/* A way naming a NIC that does not own the key (stale, or read
	 * torn): the packet is not taken for that NIC's. */
	for (int w = 0; w < RN_BUCKET_WAYS; w++)
		if (bk.nic[w] == last)
			bk.nic[w] = NIC_A;
	bpf_map_update_elem(c->maps.aidx, &b, &bk, BPF_ANY);
	run_egress_case(c, &(struct egress_case){
		"index: an id whose NIC does not own the key is not taken", v4_crowd, DEV_LO,
		VERDICT_PASS, false, NIC_A });
	for (int i = 1; i < CROWD; i++)
		dp_nic_unpublish(&c->maps, FIRST + (__u32)i, &nics[i]);
	bk = bucket_of(c, b);
	tap(!bk.overflow && !in_bucket(&bk, last), "index: unpublished NICs leave their bucket");
	index_devices(c);
}

/* NIC B's device: one end of a veth pair, in the test's netns. */
static int nic_b_device(void)
{
	struct nl_sock *sk = nl_socket_alloc();
	int err;

	if (!sk)
		return -ENOMEM;
	err = nl_connect(sk, NETLINK_ROUTE);
	if (!err)
		err = rtnl_link_veth_add(sk, "rnb0", "rnb1", getpid());
	nl_socket_free(sk);
	if (err)
		return -EIO;
	nic_b_ifindex = (int)if_nametoindex("rnb0");
	return nic_b_ifindex ? 0 : -errno;
}

/* Every case, against the program pair dp_load picks with @knobs. */
static int suite(const struct dp_knobs *knobs)
{
	struct rn_nic other = { 0 };
	struct ctx c = { 0 };
	int err;

	err = dp_load(NULL, knobs, &c.skel);
	if (!err)
		err = dp_maps_open(c.skel, &c.maps);
	if (err) {
		printf("Bail out! datapath does not load: %s\n", strerror(-err));
		return err;
	}
	variant = bpf_program__autoload(c.skel->progs.rn_egress) ? "btf" : "core";
	c.netns = c.skel->rodata->rn_netns_cookie ? pkt_netns_cookie() : 0;

	c.a.netns = c.netns;
	c.a.ifindex = LO;
	nic_v4(&c.a, "172.16.11.21", 24, "172.16.11.254");
	c.b.netns = c.netns;
	c.b.ifindex = (__u32)nic_b_ifindex;
	memcpy(c.b.mac, mac_b, 6);
	nic_v4(&c.b, "172.16.12.21", 24, "172.16.12.254");
	nic_v6(&c.b, "fd16:12::1:1", 64, "fd16:12::fe");
	/* Another pod's NIC with an address this pod does not hold. */
	other.netns = c.netns + 1;
	other.ifindex = LO;
	nic_v4(&other, "172.16.13.21", 24, "172.16.13.254");
	err = dp_nic_publish(&c.maps, NIC_A, &c.a, true);
	if (!err)
		err = dp_nic_publish(&c.maps, NIC_B, &c.b, true);
	if (!err)
		err = dp_nic_publish(&c.maps, 3, &other, true);
	if (err) {
		printf("Bail out! cannot fill the maps: %s\n", strerror(-err));
		goto out;
	}
	for (size_t i = 0; i < sizeof(egress_cases) / sizeof(egress_cases[0]); i++)
		run_egress_case(&c, &egress_cases[i]);
	gateway_learning(&c);
	fast_path(&c);
	index_buckets(&c);
	detached_nic(&c);
	gateway_slices(&c);
out:
	dp_maps_close(&c.maps);
	datapath_bpf__destroy(c.skel);
	return err;
}

int main(void)
{
	/* The pair this kernel gets, then the probe-read one that kernels
	 * before 6.2 get, so that it is tested here too. */
	static const struct dp_knobs knobs[] = {
		{ .fast_redirect = true },
		{ .fast_redirect = true, .core_netns = true },
	};
	int err;

	if (geteuid()) {
		printf("1..0 # SKIP BPF_PROG_TEST_RUN for tc needs root\n");
		return 0;
	}
	if (unshare(CLONE_NEWNET)) {
		printf("1..0 # SKIP cannot make a private netns: %s\n", strerror(errno));
		return 0;
	}
	libbpf_set_print(NULL);
	err = nic_b_device();
	if (err) {
		printf("Bail out! cannot make NIC B's device: %s\n", strerror(-err));
		return 1;
	}
	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++)
		if (suite(&knobs[i]))
			return 1;
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

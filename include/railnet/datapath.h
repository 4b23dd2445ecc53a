/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The datapath's contract between the tc programs (bpf/datapath.bpf.c) and
 * railnetd (user/agent/datapath.c): map keys and values, limits, pin names.
 * docs/datapath.md describes each map.  Compiles under vmlinux.h and under
 * <linux/types.h>: fixed-size types and explicit padding only.
 *
 * Changing a key or value layout means bumping RN_LAYOUT_VERSION and the
 * _vN suffix of every map name: railnetd then migrates the pods from the
 * old maps (found by their suffix) instead of mixing layouts.
 */
#ifndef RAILNET_DATAPATH_H
#define RAILNET_DATAPATH_H

#define RN_LAYOUT_VERSION 1
#define RN_LAYOUT_SUFFIX "_v1"

/* Pod NIC ids index the array maps; 0 is never handed out, so that a
 * zeroed slot reads as "no NIC". */
#define RN_MAX_NICS 16384
/* Rail addresses: a pod NIC holds at most one per family. */
#define RN_MAX_ADDRS (2 * RN_MAX_NICS)

/* Pin names (= map names, <= 15 chars), under the agent's bpffs dir. */
#define RN_PIN_ADDR  "rn_addr_v1"
#define RN_PIN_IFC   "rn_ifc_v1"
#define RN_PIN_NIC   "rn_nic_v1"
#define RN_PIN_GW    "rn_gw_v1"
#define RN_PIN_STATS "rn_stats_v1"
/* Programs and links, not versioned: replaced in place. */
#define RN_PIN_PROG_EGRESS  "rn_egress"
#define RN_PIN_PROG_INGRESS "rn_ingress"
#define RN_PIN_LINKS_DIR    "links"

enum rn_family {
	RN_FAM_V4 = 0,
	RN_FAM_V6 = 1,
	RN_FAM_MAX,
};

/* rn_addr_v1: a rail address of a pod -> the pod NIC that owns it.  The
 * netns cookie keeps pods apart: two pods may hold the same address (from
 * different pools) and each finds its own NIC. */
struct rn_addr_key {
	__u64 netns;   /* netns cookie of the pod (0 where the kernel lacks it) */
	__u32 family;  /* enum rn_family */
	__u8 addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
	__u32 pad;
};

struct rn_nic_ref {
	__u32 nic;
};

/* rn_ifc_v1: a rail NIC as the kernel sees it in the pod -> its id. */
struct rn_ifc_key {
	__u64 netns;
	__u32 ifindex;
	__u32 pad;
};

enum rn_nic_flags {
	RN_NIC_ACTIVE = 1 << 0, /* a zeroed slot: the NIC is being detached */
	RN_NIC_V4 = 1 << 1,     /* addr4/plen4/gw4 are set */
	RN_NIC_V6 = 1 << 2,
	RN_NIC_GW4 = 1 << 3,
	RN_NIC_GW6 = 1 << 4,
};

/* rn_nic_v1 (array, index = NIC id): where packets of the NIC's addresses
 * must leave. */
struct rn_nic {
	__u64 netns;
	__u32 ifindex;   /* the rail NIC (netN) inside the pod */
	__u32 flags;     /* enum rn_nic_flags */
	__u8 mac[6];     /* its own MAC: source of fast-path frames */
	__u8 plen4;      /* prefix lengths of the NIC's subnets */
	__u8 plen6;
	__u8 addr4[4];
	__u8 gw4[4];
	__u8 addr6[16];
	__u8 gw6[16];
};

/* rn_gw_v1 (array, mmapable, index = NIC id * RN_FAM_MAX + family): what
 * the ingress program has seen of the NIC's gateway.  Times are
 * CLOCK_MONOTONIC nanoseconds. */
struct rn_gw {
	__u64 last_seen_ns;  /* last frame from the gateway (its IP, or its MAC) */
	__u64 probe_sent_ns; /* the agent's pending ARP/NS probe; cleared on answer */
	__u64 rtt_ns;        /* round trip of the last answered probe */
	__u8 mac[6];
	__u8 mac_valid;
	__u8 pad[5];
};

enum rn_drop_reason {
	RN_DROP_REDIRECT = 0, /* the redirect helper refused the packet */
	RN_DROP_NIC_GONE = 1, /* the owning NIC is being detached */
	RN_DROP_MAX,
};

/* rn_stats_v1 (per-CPU array, index = NIC id). */
struct rn_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;       /* left by this NIC, directly or redirected to it:
				 * counted on its own egress hook, once */
	__u64 tx_bytes;
	__u64 redirects;        /* return-path redirects to this NIC */
	__u64 redirects_fast;   /* of which with the learnt gateway MAC */
	__u64 redirect_errors;
	__u64 drops[RN_DROP_MAX];
};

#endif

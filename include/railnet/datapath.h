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

#define RN_LAYOUT_VERSION 2
#define RN_LAYOUT_SUFFIX "_v2"

/* Pod NIC ids index the array maps; 0 is never handed out, so that a
 * zeroed slot reads as "no NIC". */
#define RN_MAX_NICS 16384
/* Rail addresses: a pod NIC holds at most one per family. */
#define RN_MAX_ADDRS (2 * RN_MAX_NICS)
/* Buckets of the inline indexes (rn_bucket): four per key at the limits, so
 * that a full bucket is rare (for a key: about 1 in 10^4). */
#define RN_ADDR_BUCKETS (1u << 17)
#define RN_IFC_BUCKETS  (1u << 16)
#define RN_BUCKET_WAYS  3

/* Pin names (= map names, <= 15 chars), under the agent's bpffs dir. */
#define RN_PIN_ADDR  "rn_addr_v2"
#define RN_PIN_AIDX  "rn_aidx_v2"
#define RN_PIN_IFC   "rn_ifc_v2"
#define RN_PIN_IIDX  "rn_iidx_v2"
#define RN_PIN_NIC   "rn_nic_v2"
#define RN_PIN_GW    "rn_gw_v2"
#define RN_PIN_STATS "rn_stats_v2"
/* Programs and links, not versioned: replaced in place. */
#define RN_PIN_PROG_EGRESS  "rn_egress"
#define RN_PIN_PROG_INGRESS "rn_ingress"
#define RN_PIN_LINKS_DIR    "links"

enum rn_family {
	RN_FAM_V4 = 0,
	RN_FAM_V6 = 1,
	RN_FAM_MAX,
};

/* rn_addr_v2 (hash): a rail address of a pod -> the pod NIC that owns it.
 * The netns cookie keeps pods apart: two pods may hold the same address
 * (from different pools) and each finds its own NIC.  The map of record;
 * the programs read it only for a key rn_aidx_v2 has no room for. */
struct rn_addr_key {
	__u64 netns;   /* netns cookie of the pod (0 where the kernel lacks it) */
	__u32 family;  /* enum rn_family */
	__u8 addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
	__u32 pad;
};

struct rn_nic_ref {
	__u32 nic;
};

/* rn_ifc_v2 (hash): a rail NIC as the kernel sees it in the pod -> its id;
 * like rn_addr_v2, behind rn_iidx_v2. */
struct rn_ifc_key {
	__u64 netns;
	__u32 ifindex;
	__u32 pad;
};

/* rn_aidx_v2 / rn_iidx_v2 (arrays, index = rn_addr_bucket() / rn_ifc_bucket()):
 * the indexes the programs read, with plain loads where a hash map lookup
 * is a function call.  A bucket holds the ids of up to RN_BUCKET_WAYS NICs
 * with a key there; the program takes a NIC only if its rn_nic_v2 slot owns
 * the key (netns and address, or netns and ifindex), so a stale or torn id
 * is harmless.  A key for which its bucket had no room is in the hash map
 * only, and the bucket says so. */
struct rn_bucket {
	__u32 nic[RN_BUCKET_WAYS]; /* 0: free */
	__u32 overflow;            /* nonzero: look in the hash map too */
};

/* Multiplicative hashing: a sum of products by odd 64-bit constants
 * (independent, so they overlap), folded once (xor-shift, multiply), the
 * bucket from the top bits.  A few cycles, and sequential cookies and
 * addresses spread over the buckets like random keys (bench_datapath counts
 * the full buckets).  The programs and the agent compute the same. */
#define RN_HASH_K0 0x9e3779b97f4a7c15ULL
#define RN_HASH_K1 0xc2b2ae3d27d4eb4fULL
#define RN_HASH_K2 0x165667b19e3779f9ULL
#define RN_HASH_K3 0xd6e8feb86659fd93ULL

/* The bucket of (netns, family, address); @a0, @a1: an IPv6 address's two
 * halves as loaded from memory, or an IPv4 address's four bytes as loaded
 * into a __u32, in @a0, and @a1 zero. */
static inline __attribute__((always_inline)) __u32 rn_addr_bucket(__u64 netns, __u32 family,
								  __u64 a0, __u64 a1)
{
	__u64 h = netns * RN_HASH_K0 + (a0 ^ (__u64)family << 63) * RN_HASH_K1 + a1 * RN_HASH_K2;

	return (__u32)((h ^ h >> 29) * RN_HASH_K3 >> 47) & (RN_ADDR_BUCKETS - 1);
}

static inline __attribute__((always_inline)) __u32 rn_ifc_bucket(__u64 netns, __u32 ifindex)
{
	__u64 h = netns * RN_HASH_K0 + (__u64)ifindex * RN_HASH_K1;

	return (__u32)((h ^ h >> 29) * RN_HASH_K3 >> 48) & (RN_IFC_BUCKETS - 1);
}

enum rn_nic_flags {
	RN_NIC_ACTIVE = 1 << 0, /* cleared: the NIC is being detached */
	RN_NIC_V4 = 1 << 1,     /* addr4/plen4/gw4 are set */
	RN_NIC_V6 = 1 << 2,
	RN_NIC_GW4 = 1 << 3,
	RN_NIC_GW6 = 1 << 4,
};

/* rn_nic_v2 (array, index = NIC id): where packets of the NIC's addresses
 * must leave; also what the index buckets are checked against. */
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

/* The programs load these fields as whole words. */
_Static_assert(__builtin_offsetof(struct rn_nic, mac) % 8 == 0, "rn_nic.mac");
_Static_assert(__builtin_offsetof(struct rn_nic, addr4) % 4 == 0, "rn_nic.addr4");
_Static_assert(__builtin_offsetof(struct rn_nic, gw4) % 4 == 0, "rn_nic.gw4");
_Static_assert(__builtin_offsetof(struct rn_nic, addr6) % 8 == 0, "rn_nic.addr6");
_Static_assert(__builtin_offsetof(struct rn_nic, gw6) % 8 == 0, "rn_nic.gw6");

/* rn_gw_v2 (array, mmapable, index = NIC id * RN_FAM_MAX + family): what
 * the ingress program has seen of the NIC's gateway.  Times are
 * CLOCK_MONOTONIC nanoseconds; last_seen_ns is CLOCK_MONOTONIC_COARSE (a
 * tick's precision, never ahead of CLOCK_MONOTONIC). */
struct rn_gw {
	__u64 last_seen_ns;  /* last frame from the gateway (its IP, or its MAC) */
	__u64 probe_sent_ns; /* the agent's pending ARP/NS probe; cleared on answer */
	__u64 rtt_ns;        /* round trip of the last answered probe */
	__u64 seen_jiffies;  /* the tick last_seen_ns was written in: once per tick */
	__u8 mac[6];
	__u8 mac_valid;
	__u8 pad[9];
};

_Static_assert(__builtin_offsetof(struct rn_gw, mac) % 8 == 0, "rn_gw.mac");

enum rn_drop_reason {
	RN_DROP_REDIRECT = 0, /* the redirect helper refused the packet */
	RN_DROP_NIC_GONE = 1, /* the owning NIC is being detached */
	RN_DROP_MAX,
};

/* rn_stats_v2 (per-CPU array, index = NIC id). */
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

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* railnet's pod datapath (docs/datapath.md).
 *
 * rn_egress, on the egress of the pod's eth0 and of every rail NIC: a packet
 * whose source address belongs to rail NIC k but is leaving by another
 * interface is redirected to NIC k - to its gateway, or straight to the
 * destination when that is on NIC k's subnet.  ARP, ND, VLAN-tagged frames,
 * sources railnet does not own and truncated headers pass untouched.
 *
 * rn_ingress, on the ingress of every rail NIC: counts, and records when a
 * frame from the NIC's gateway was last seen, and the gateway's MAC.
 *
 * Each program comes twice, differing only in how it reads the netns cookie
 * of the packet's device (netns_of): rn_egress / rn_ingress walk the
 * kernel's sk_buff with plain loads (bpf_cast_to_kern_ctx, 6.2+);
 * rn_egress_core / rn_ingress_core with bpf_probe_read_kernel (5.12+), three
 * helper calls.  The loader loads one pair (dp_load).
 *
 * Where the time goes: on a kernel with retbleed/SRSO-style return thunks
 * every call into the kernel costs 10-40 ns, so the per-packet path makes
 * one, the redirect itself.  Array lookups are inlined by the verifier; the
 * hash maps are read only for keys the inline index has no room for.
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "compat.h"
#include <railnet/datapath.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader before load. */
const volatile bool rn_netns_cookie = true; /* key by netns (false: by address only) */
const volatile bool rn_fast_redirect = true; /* rewrite MACs to the learnt gateway */

/* Weak: on a kernel without it only the _core programs are loaded, and they
 * do not call it. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* A pod's rail address -> its NIC id (the map of record). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RN_MAX_ADDRS);
	__type(key, struct rn_addr_key);
	__type(value, struct rn_nic_ref);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_addr_v2 SEC(".maps");

/* rn_addr_bucket() -> NICs with an address there. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RN_ADDR_BUCKETS);
	__type(key, __u32);
	__type(value, struct rn_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_aidx_v2 SEC(".maps");

/* (pod netns, ifindex) of a rail NIC -> its NIC id (the map of record). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RN_MAX_NICS);
	__type(key, struct rn_ifc_key);
	__type(value, struct rn_nic_ref);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_ifc_v2 SEC(".maps");

/* rn_ifc_bucket() -> NICs there. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RN_IFC_BUCKETS);
	__type(key, __u32);
	__type(value, struct rn_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_iidx_v2 SEC(".maps");

/* NIC id -> where its packets leave. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RN_MAX_NICS);
	__type(key, __u32);
	__type(value, struct rn_nic);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_nic_v2 SEC(".maps");

/* NIC id * 2 + family -> its gateway as seen on the wire; mmapable so the
 * agent reads and writes single fields without a syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RN_MAX_NICS * RN_FAM_MAX);
	__type(key, __u32);
	__type(value, struct rn_gw);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_gw_v2 SEC(".maps");

/* NIC id -> per-CPU counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RN_MAX_NICS);
	__type(key, __u32);
	__type(value, struct rn_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_stats_v2 SEC(".maps");

/* The netns cookie of the device the packet is on.  Not
 * bpf_get_netns_cookie(): in tc (6.15+) it answers from skb->sk, which is
 * the init netns for a received frame and for a packet sent with no socket.
 * @btf: plain loads through the kernel's sk_buff; otherwise probe reads
 * through CO-RE (5.12+, where net_cookie is a u64). */
static __always_inline __u64 netns_of(struct __sk_buff *skb, bool btf)
{
	struct net_device *dev;

	if (!rn_netns_cookie)
		return 0;
	if (btf) {
		struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);

		dev = kskb->dev;
		return dev ? dev->nd_net.net->net_cookie : 0;
	}
	if (!bpf_core_field_exists(struct net, net_cookie))
		return 0;
	dev = BPF_CORE_READ((struct sk_buff *)skb, dev);
	return dev ? BPF_CORE_READ(dev, nd_net.net, net_cookie) : 0;
}

/* The address and MAC fields of rn_nic and rn_gw are byte arrays at
 * offsets aligned for whole loads (datapath.h): say so, or clang reads them
 * a byte at a time. */
#define ALIGNED(p, n) __builtin_assume_aligned(p, n)

/* An IPv4 address field of rn_nic as one word.  A memcpy from it, even
 * with ALIGNED, can come out as four byte loads where the compiler lost
 * track of the alignment (owns(), unrolled per bucket way). */
static __always_inline __u32 word4(const __u8 *field)
{
	return *(const __u32 *)ALIGNED(field, 4);
}

/* An IPv6 address of a packet as two words.  8-aligned as the kernel
 * counts packet alignment (NET_IP_ALIGN before the Ethernet header, which
 * the verifier assumes too), and x86 and arm64 load unaligned words anyway. */
static __always_inline void load6(const struct in6_addr *a, __u64 *w0, __u64 *w1)
{
	const __u8 *p = (const __u8 *)a;

	__builtin_memcpy(w0, ALIGNED(p, 8), 8);
	__builtin_memcpy(w1, ALIGNED(p + 8, 8), 8);
}

/* A source address, as the index and the hash map key take it. */
struct src {
	__u64 netns;
	__u32 family;
	__u64 a0, a1; /* rn_addr_bucket()'s halves */
};

static __always_inline bool owns(const struct rn_nic *nic, const struct src *s)
{
	__u64 n0, n1;

	if (nic->netns != s->netns)
		return false;
	if (s->family == RN_FAM_V4)
		return (nic->flags & RN_NIC_V4) && word4(nic->addr4) == s->a0;
	__builtin_memcpy(&n0, ALIGNED(nic->addr6, 8), 8);
	__builtin_memcpy(&n1, ALIGNED(nic->addr6 + 8, 8), 8);
	return (nic->flags & RN_NIC_V6) && n0 == s->a0 && n1 == s->a1;
}

/* The NIC that owns source @s, 0 if none. */
static __always_inline __u32 owner_of(const struct src *s, struct rn_nic **out)
{
	__u32 b = rn_addr_bucket(s->netns, s->family, s->a0, s->a1);
	struct rn_bucket *bk = bpf_map_lookup_elem(&rn_aidx_v2, &b);
	struct rn_addr_key key;
	struct rn_nic_ref *ref;
	struct rn_nic *nic;
	__u32 id;

	if (!bk)
		return 0;
#pragma unroll
	for (int w = 0; w < RN_BUCKET_WAYS; w++) {
		id = bk->nic[w];
		if (!id)
			continue;
		nic = bpf_map_lookup_elem(&rn_nic_v2, &id);
		if (nic && owns(nic, s)) {
			*out = nic;
			return id;
		}
	}
	if (!bk->overflow)
		return 0;
	__builtin_memset(&key, 0, sizeof(key));
	key.netns = s->netns;
	key.family = s->family;
	if (s->family == RN_FAM_V4) {
		__u32 a4 = (__u32)s->a0;

		__builtin_memcpy(key.addr, &a4, 4);
	} else {
		__builtin_memcpy(key.addr, &s->a0, 8);
		__builtin_memcpy(key.addr + 8, &s->a1, 8);
	}
	ref = bpf_map_lookup_elem(&rn_addr_v2, &key);
	if (!ref)
		return 0;
	id = ref->nic;
	nic = bpf_map_lookup_elem(&rn_nic_v2, &id);
	if (!nic)
		return 0;
	*out = nic;
	return id;
}

/* The NIC whose device the packet is on, 0 if none. */
static __always_inline __u32 nic_of_dev(__u64 netns, __u32 ifindex, struct rn_nic **out)
{
	__u32 b = rn_ifc_bucket(netns, ifindex);
	struct rn_bucket *bk = bpf_map_lookup_elem(&rn_iidx_v2, &b);
	struct rn_ifc_key key;
	struct rn_nic_ref *ref;
	struct rn_nic *nic;
	__u32 id;

	if (!bk)
		return 0;
#pragma unroll
	for (int w = 0; w < RN_BUCKET_WAYS; w++) {
		id = bk->nic[w];
		if (!id)
			continue;
		nic = bpf_map_lookup_elem(&rn_nic_v2, &id);
		if (nic && nic->netns == netns && nic->ifindex == ifindex) {
			*out = nic;
			return id;
		}
	}
	if (!bk->overflow)
		return 0;
	key = (struct rn_ifc_key){ .netns = netns, .ifindex = ifindex };
	ref = bpf_map_lookup_elem(&rn_ifc_v2, &key);
	if (!ref)
		return 0;
	id = ref->nic;
	nic = bpf_map_lookup_elem(&rn_nic_v2, &id);
	if (!nic)
		return 0;
	*out = nic;
	return id;
}

/* Prefixes as big-endian masks, so that a match is an AND. */
static __always_inline bool in_subnet4(__u32 a, const __u8 *own, __u32 plen)
{
	/* A 64-bit shift by 32 - plen is defined for every plen of 0..32:
	 * no branch.  (The agent never stores a longer one.) */
	__u32 mask = (__u32)(~0ull << ((32 - plen) & 63));

	return !((a ^ word4(own)) & bpf_htonl(mask));
}

static __always_inline bool in_subnet6(__u64 a0, __u64 a1, const __u8 *own, __u32 plen)
{
	__u64 o0, o1;

	__builtin_memcpy(&o0, ALIGNED(own, 8), 8);
	if (plen <= 64) /* the usual /64: one word */
		return !((a0 ^ o0) & bpf_cpu_to_be64(plen ? ~0ull << (64 - plen) : 0));
	__builtin_memcpy(&o1, ALIGNED(own + 8, 8), 8);
	return a0 == o0 &&
	       !((a1 ^ o1) & bpf_cpu_to_be64(plen >= 128 ? ~0ull : ~0ull << (128 - plen)));
}

/* @a: a MAC in a frame (2-aligned: loaded unaligned, as set_mac() stores);
 * @b: one in a map value (8-aligned). */
static __always_inline bool mac_equal(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)ALIGNED(b, 8) &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)ALIGNED(b + 4, 4);
}

/* A MAC from a map value (8-aligned) into a frame, as a word and a half:
 * a packet is only 2-aligned, and x86 and arm64 store unaligned anyway (the
 * verifier allows it where the CPU does). */
static __always_inline void set_mac(__u8 *dst, const __u8 *src)
{
	*(__u32 *)dst = *(const __u32 *)ALIGNED(src, 8);
	*(__u16 *)(dst + 4) = *(const __u16 *)ALIGNED(src + 4, 4);
}

/* bpf_redirect_neigh() to NIC k with our next hop: the destination on NIC
 * k's subnet (@onlink), else NIC k's gateway. */
static __always_inline long redirect_neigh(struct __sk_buff *skb, const struct rn_nic *nic,
					   bool v6, bool onlink, __u64 d0, __u64 d1)
{
	struct bpf_redir_neigh nh = {};
	struct bpf_tunnel_key none = {};

	if (v6) {
		nh.nh_family = AF_INET6;
		if (onlink) {
			__builtin_memcpy(&nh.ipv6_nh, &d0, 8);
			__builtin_memcpy((__u8 *)&nh.ipv6_nh + 8, &d1, 8);
		} else {
			__builtin_memcpy(&nh.ipv6_nh, ALIGNED(nic->gw6, 8), 16);
		}
	} else {
		nh.nh_family = AF_INET;
		if (onlink)
			nh.ipv4_nh = (__u32)d0;
		else
			nh.ipv4_nh = word4(nic->gw4);
	}
	/* The packet still holds the route the main table chose (eth0's, or
	 * another NIC's).  If NIC k's neighbour is unresolved the packet
	 * waits in its queue, and once resolved is sent through the neighbour
	 * that route names - the other interface's next hop's MAC, on NIC k:
	 * lost.  A metadata dst (an empty tunnel key) names no neighbour, so
	 * the queued packet leaves through the one it waited for.  The
	 * kernel's own lookup (no next hop given) would set the right dst,
	 * but for IPv6 with a source address it does not stay on NIC k when
	 * the destination is on another NIC's subnet - the cross-rail case. */
	bpf_skb_set_tunnel_key(skb, &none, sizeof(none), 0);
	return bpf_redirect_neigh(nic->ifindex, &nh, sizeof(nh), 0);
}

/* Moves a packet of NIC @id's address to NIC @id; @d0, @d1: its destination
 * as rn_addr_bucket() takes an address.  Counted here as a redirect, and as
 * tx by NIC k's own egress hook, which the redirected packet passes next:
 * so it is counted once. */
static __always_inline int redirect_to(struct __sk_buff *skb, struct ethhdr *eth,
				       const struct rn_nic *nic, __u32 id, bool v6, __u64 d0,
				       __u64 d1, struct rn_stats *st)
{
	bool onlink = v6 ? in_subnet6(d0, d1, nic->addr6, nic->plen6) :
			   in_subnet4((__u32)d0, nic->addr4, nic->plen4);
	bool has_gw = nic->flags & (v6 ? RN_NIC_GW6 : RN_NIC_GW4);
	long ret;

	if (rn_fast_redirect && !onlink && has_gw) {
		__u32 gwi = id * RN_FAM_MAX + (v6 ? RN_FAM_V6 : RN_FAM_V4);
		struct rn_gw *gw = bpf_map_lookup_elem(&rn_gw_v2, &gwi);

		if (gw && gw->mac_valid) {
			set_mac(eth->h_dest, gw->mac);
			set_mac(eth->h_source, nic->mac);
			ret = bpf_redirect(nic->ifindex, 0);
			if (st && ret == TC_ACT_REDIRECT)
				st->redirects_fast++;
			goto out;
		}
	}
	if (!onlink && !has_gw) {
		/* No next hop of our own: NIC k's routes decide. */
		ret = bpf_redirect_neigh(nic->ifindex, NULL, 0, 0);
		goto out;
	}
	ret = redirect_neigh(skb, nic, v6, onlink, d0, d1);
out:
	if (ret != TC_ACT_REDIRECT) {
		if (st) {
			st->redirect_errors++;
			st->drops[RN_DROP_REDIRECT]++;
		}
		return TC_ACT_SHOT;
	}
	if (st)
		st->redirects++;
	return TC_ACT_REDIRECT;
}

/* The rest of egress, for source @s (its family a constant where this is
 * inlined, so that each family's lookup compares only its own words). */
static __always_inline int egress_from(struct __sk_buff *skb, bool btf, struct ethhdr *eth,
				       struct src *s, __u64 d0, __u64 d1)
{
	struct rn_nic *nic = NULL;
	struct rn_stats *st;
	__u32 id;

	s->netns = netns_of(skb, btf);
	id = owner_of(s, &nic);
	if (!id || !nic)
		return TC_ACT_UNSPEC;
	st = bpf_map_lookup_elem(&rn_stats_v2, &id);

	if (!(nic->flags & RN_NIC_ACTIVE)) {
		/* Leaving by eth0 would only leak a rail source address. */
		if (st)
			st->drops[RN_DROP_NIC_GONE]++;
		return TC_ACT_SHOT;
	}
	if (nic->ifindex == skb->ifindex) {
		if (st) {
			st->tx_packets++;
			st->tx_bytes += skb->len;
		}
		return TC_ACT_UNSPEC;
	}
	return redirect_to(skb, eth, nic, id, s->family == RN_FAM_V6, d0, d1, st);
}

static __always_inline int egress(struct __sk_buff *skb, bool btf)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct src s;
	__u64 d0, d1;

	if ((void *)(eth + 1) > end || skb->vlan_present)
		return TC_ACT_UNSPEC;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u8 version_ihl;

		if ((void *)(ip + 1) > end)
			return TC_ACT_UNSPEC;
		/* One load for both bitfields (clang reads each on its own). */
		version_ihl = *(__u8 *)ip;
		if (version_ihl >> 4 != 4 || (version_ihl & 0xf) < 5)
			return TC_ACT_UNSPEC;
		s.family = RN_FAM_V4;
		s.a0 = ip->saddr;
		s.a1 = 0;
		return egress_from(skb, btf, eth, &s, ip->daddr, 0);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return TC_ACT_UNSPEC;
		if (ip6->nexthdr == IPPROTO_ICMPV6_NR) {
			struct icmp6hdr *icmp = (void *)(ip6 + 1);

			/* ND (133..137) is the neighbour layer's own. */
			if ((void *)(icmp + 1) > end ||
			    (icmp->icmp6_type >= NDISC_ROUTER_SOLICITATION &&
			     icmp->icmp6_type <= NDISC_REDIRECT))
				return TC_ACT_UNSPEC;
		}
		s.family = RN_FAM_V6;
		load6(&ip6->saddr, &s.a0, &s.a1);
		load6(&ip6->daddr, &d0, &d1);
		return egress_from(skb, btf, eth, &s, d0, d1);
	}
	return TC_ACT_UNSPEC;
}

/* Records a frame from NIC @id's gateway: by its IP (ARP sender, IPv4/IPv6
 * source - ARP replies and NAs included), or by its learnt MAC (traffic
 * routed from other subnets). */
static __always_inline void track_gateway(struct __sk_buff *skb, __u32 id,
					  const struct rn_nic *nic)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	bool answer = false, by_ip, by_mac;
	__u32 family, gwi;
	struct rn_gw *gw;
	__u64 now;

	if ((void *)(eth + 1) > end || skb->vlan_present)
		return;
	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		struct arphdr *arp = (void *)(eth + 1);
		__u8 *spa = (__u8 *)(arp + 1) + ETH_ALEN;
		__u32 sender;

		if ((void *)(spa + 4) > end || arp->ar_hln != ETH_ALEN || arp->ar_pln != 4)
			return;
		family = RN_FAM_V4;
		__builtin_memcpy(&sender, spa, 4);
		by_ip = (nic->flags & RN_NIC_GW4) && sender == word4(nic->gw4);
		answer = arp->ar_op == bpf_htons(ARPOP_REPLY);
	} else if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->version != 4)
			return;
		family = RN_FAM_V4;
		by_ip = (nic->flags & RN_NIC_GW4) && ip->saddr == word4(nic->gw4);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u64 s0, s1, g0, g1;

		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return;
		family = RN_FAM_V6;
		load6(&ip6->saddr, &s0, &s1);
		__builtin_memcpy(&g0, ALIGNED(nic->gw6, 8), 8);
		__builtin_memcpy(&g1, ALIGNED(nic->gw6 + 8, 8), 8);
		by_ip = (nic->flags & RN_NIC_GW6) && s0 == g0 && s1 == g1;
		if (by_ip && ip6->nexthdr == IPPROTO_ICMPV6_NR) {
			struct icmp6hdr *icmp = (void *)(ip6 + 1);

			if ((void *)(icmp + 1) <= end)
				answer = icmp->icmp6_type == NDISC_NEIGHBOUR_ADVERTISEMENT;
		}
	} else {
		return;
	}
	gwi = id * RN_FAM_MAX + family;
	gw = bpf_map_lookup_elem(&rn_gw_v2, &gwi);
	if (!gw)
		return;
	by_mac = gw->mac_valid && mac_equal(eth->h_source, gw->mac);
	if (!by_ip && !by_mac)
		return;
	if (by_ip && !by_mac) {
		__builtin_memcpy(gw->mac, eth->h_source, ETH_ALEN);
		gw->mac_valid = 1;
	}
	if (by_ip && answer && gw->probe_sent_ns) {
		/* The agent stamped the probe with CLOCK_MONOTONIC: so must
		 * the answer be, to the nanosecond. */
		now = bpf_ktime_get_ns();
		if (now > gw->probe_sent_ns)
			gw->rtt_ns = now - gw->probe_sent_ns;
		gw->probe_sent_ns = 0;
	}
	/* Once per tick at most: jiffies is a plain load (the verifier
	 * inlines the helper), a clock read is a call.  A tick's precision is
	 * plenty for a state kept in probe intervals. */
	now = bpf_jiffies64();
	if (now != gw->seen_jiffies) {
		gw->seen_jiffies = now;
		gw->last_seen_ns = bpf_ktime_get_coarse_ns();
	}
}

static __always_inline int ingress(struct __sk_buff *skb, bool btf)
{
	struct rn_nic *nic = NULL;
	struct rn_stats *st;
	__u32 id;

	id = nic_of_dev(netns_of(skb, btf), skb->ifindex, &nic);
	if (!id || !nic)
		return TC_ACT_UNSPEC;
	st = bpf_map_lookup_elem(&rn_stats_v2, &id);
	if (st) {
		st->rx_packets++;
		st->rx_bytes += skb->len;
	}
	if (nic->flags & RN_NIC_ACTIVE)
		track_gateway(skb, id, nic);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int rn_egress(struct __sk_buff *skb)
{
	return egress(skb, true);
}

SEC("tc")
int rn_ingress(struct __sk_buff *skb)
{
	return ingress(skb, true);
}

SEC("tc")
int rn_egress_core(struct __sk_buff *skb)
{
	return egress(skb, false);
}

SEC("tc")
int rn_ingress_core(struct __sk_buff *skb)
{
	return ingress(skb, false);
}

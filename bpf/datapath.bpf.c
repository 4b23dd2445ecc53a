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
const volatile __u64 rn_seen_granularity_ns = 1000000; /* bounds writes to rn_gw_v1 */

/* Weak: on a kernel without it only the _core programs are loaded, and they
 * do not call it. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* A pod's rail address -> its NIC id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RN_MAX_ADDRS);
	__type(key, struct rn_addr_key);
	__type(value, struct rn_nic_ref);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_addr_v1 SEC(".maps");

/* (pod netns, ifindex) of a rail NIC -> its NIC id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RN_MAX_NICS);
	__type(key, struct rn_ifc_key);
	__type(value, struct rn_nic_ref);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_ifc_v1 SEC(".maps");

/* NIC id -> where its packets leave. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RN_MAX_NICS);
	__type(key, __u32);
	__type(value, struct rn_nic);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_nic_v1 SEC(".maps");

/* NIC id * 2 + family -> its gateway as seen on the wire; mmapable so the
 * agent reads and writes single fields without a syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RN_MAX_NICS * RN_FAM_MAX);
	__type(key, __u32);
	__type(value, struct rn_gw);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_gw_v1 SEC(".maps");

/* NIC id -> per-CPU counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RN_MAX_NICS);
	__type(key, __u32);
	__type(value, struct rn_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rn_stats_v1 SEC(".maps");

struct l3 {
	__u32 family; /* enum rn_family */
	__u8 saddr[16];
	__u8 daddr[16];
	bool nd;      /* ARP-like: neighbour discovery */
};

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

/* Parses an untagged IPv4/IPv6 header; false for anything else. */
static __always_inline bool parse_l3(struct __sk_buff *skb, struct l3 *l3)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end || skb->vlan_present)
		return false;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return false;
		l3->family = RN_FAM_V4;
		__builtin_memcpy(l3->saddr, &ip->saddr, 4);
		__builtin_memcpy(l3->daddr, &ip->daddr, 4);
		return true;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return false;
		if (ip6->nexthdr == IPPROTO_ICMPV6_NR) {
			struct icmp6hdr *icmp = (void *)(ip6 + 1);

			if ((void *)(icmp + 1) > end)
				return false;
			l3->nd = icmp->icmp6_type >= NDISC_ROUTER_SOLICITATION &&
				 icmp->icmp6_type <= NDISC_REDIRECT;
		}
		l3->family = RN_FAM_V6;
		__builtin_memcpy(l3->saddr, &ip6->saddr, 16);
		__builtin_memcpy(l3->daddr, &ip6->daddr, 16);
		return true;
	}
	return false;
}

/* clang 14 has no BPF memcmp. */
static __always_inline bool bytes_equal(const __u8 *a, const __u8 *b, __u32 len)
{
	__u8 diff = 0;

	for (__u32 i = 0; i < 16; i++)
		if (i < len)
			diff |= a[i] ^ b[i];
	return !diff;
}

static __always_inline bool prefix_match(const __u8 *a, const __u8 *b, __u32 plen, __u32 len)
{
	for (__u32 i = 0; i < 16; i++) {
		__u8 mask;

		if (i >= len || plen == 0)
			break;
		mask = plen >= 8 ? 0xff : (__u8)(0xff << (8 - plen));
		if ((a[i] ^ b[i]) & mask)
			return false;
		plen = plen >= 8 ? plen - 8 : 0;
	}
	return true;
}

/* Moves a packet of NIC @id's address to NIC @id.  Counted here as a
 * redirect, and as tx by NIC k's own egress hook, which the redirected
 * packet passes next: so it is counted once. */
static __always_inline int redirect_to(struct __sk_buff *skb, const struct rn_nic *nic, __u32 id,
				       const struct l3 *l3, struct rn_stats *st)
{
	bool v6 = l3->family == RN_FAM_V6;
	__u32 alen = v6 ? 16 : 4, gwi = id * RN_FAM_MAX + l3->family;
	const __u8 *own = v6 ? nic->addr6 : nic->addr4;
	__u32 plen = v6 ? nic->plen6 : nic->plen4;
	bool onlink = prefix_match(l3->daddr, own, plen, alen);
	bool has_gw = nic->flags & (v6 ? RN_NIC_GW6 : RN_NIC_GW4);
	struct bpf_redir_neigh nh = {};
	struct bpf_tunnel_key none = {};
	struct rn_gw *gw;
	long ret;

	gw = bpf_map_lookup_elem(&rn_gw_v1, &gwi);
	if (rn_fast_redirect && !onlink && has_gw && gw && gw->mac_valid) {
		void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
		struct ethhdr *eth = data;

		if ((void *)(eth + 1) > end)
			return TC_ACT_UNSPEC;
		__builtin_memcpy(eth->h_dest, gw->mac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, nic->mac, ETH_ALEN);
		ret = bpf_redirect(nic->ifindex, 0);
		if (st && ret == TC_ACT_REDIRECT)
			st->redirects_fast++;
		goto out;
	}
	if (!onlink && !has_gw) {
		/* No next hop of our own: NIC k's routes decide. */
		ret = bpf_redirect_neigh(nic->ifindex, NULL, 0, 0);
		goto out;
	}
	/* The next hop: the destination on NIC k's subnet, else NIC k's
	 * gateway. */
	if (v6) {
		nh.nh_family = AF_INET6;
		__builtin_memcpy(&nh.ipv6_nh, onlink ? l3->daddr : nic->gw6, 16);
	} else {
		nh.nh_family = AF_INET;
		__builtin_memcpy(&nh.ipv4_nh, onlink ? l3->daddr : nic->gw4, 4);
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
	ret = bpf_redirect_neigh(nic->ifindex, &nh, sizeof(nh), 0);
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

static __always_inline int egress(struct __sk_buff *skb, bool btf)
{
	struct rn_addr_key key = {};
	struct l3 l3 = {};
	struct rn_nic_ref *ref;
	struct rn_stats *st;
	struct rn_nic *nic;

	if (!parse_l3(skb, &l3) || l3.nd)
		return TC_ACT_UNSPEC;
	key.netns = netns_of(skb, btf);
	key.family = l3.family;
	__builtin_memcpy(key.addr, l3.saddr, sizeof(key.addr));
	if (l3.family == RN_FAM_V4)
		__builtin_memset(key.addr + 4, 0, 12);
	ref = bpf_map_lookup_elem(&rn_addr_v1, &key);
	if (!ref)
		return TC_ACT_UNSPEC;
	nic = bpf_map_lookup_elem(&rn_nic_v1, &ref->nic);
	if (!nic)
		return TC_ACT_UNSPEC;
	st = bpf_map_lookup_elem(&rn_stats_v1, &ref->nic);
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
	return redirect_to(skb, nic, ref->nic, &l3, st);
}

/* The sender of a frame, as far as gateway tracking cares. */
static __always_inline bool sender_of(struct __sk_buff *skb, __u32 *family, __u8 *addr,
				      bool *answer)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct l3 l3 = {};

	if ((void *)(eth + 1) > end || skb->vlan_present)
		return false;
	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		struct arphdr *arp = (void *)(eth + 1);
		__u8 *spa = (__u8 *)(arp + 1) + ETH_ALEN;

		if ((void *)(spa + 4) > end || arp->ar_hln != ETH_ALEN || arp->ar_pln != 4)
			return false;
		*family = RN_FAM_V4;
		__builtin_memcpy(addr, spa, 4);
		*answer = arp->ar_op == bpf_htons(ARPOP_REPLY);
		return true;
	}
	if (!parse_l3(skb, &l3))
		return false;
	*family = l3.family;
	__builtin_memcpy(addr, l3.saddr, 16);
	if (l3.nd) {
		struct icmp6hdr *icmp = (void *)((struct ipv6hdr *)(eth + 1) + 1);

		if ((void *)(icmp + 1) <= end)
			*answer = icmp->icmp6_type == NDISC_NEIGHBOUR_ADVERTISEMENT;
	}
	return true;
}

static __always_inline void track_gateway(struct __sk_buff *skb, __u32 id,
					  const struct rn_nic *nic)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u8 addr[16] = {};
	bool answer = false, by_ip, by_mac;
	__u32 family, gwi;
	struct rn_gw *gw;
	__u64 now;

	if (!sender_of(skb, &family, addr, &answer))
		return;
	if ((void *)(eth + 1) > end)
		return;
	gwi = id * RN_FAM_MAX + family;
	gw = bpf_map_lookup_elem(&rn_gw_v1, &gwi);
	if (!gw)
		return;
	if (family == RN_FAM_V6)
		by_ip = (nic->flags & RN_NIC_GW6) && bytes_equal(addr, nic->gw6, 16);
	else
		by_ip = (nic->flags & RN_NIC_GW4) && bytes_equal(addr, nic->gw4, 4);
	/* Traffic routed from other subnets comes from the gateway's MAC. */
	by_mac = gw->mac_valid && bytes_equal(eth->h_source, gw->mac, ETH_ALEN);
	if (!by_ip && !by_mac)
		return;
	now = bpf_ktime_get_ns();
	if (by_ip && (!gw->mac_valid || !bytes_equal(eth->h_source, gw->mac, ETH_ALEN))) {
		__builtin_memcpy(gw->mac, eth->h_source, ETH_ALEN);
		gw->mac_valid = 1;
	}
	if (by_ip && answer && gw->probe_sent_ns && now > gw->probe_sent_ns) {
		gw->rtt_ns = now - gw->probe_sent_ns;
		gw->probe_sent_ns = 0;
	}
	if (now - gw->last_seen_ns >= rn_seen_granularity_ns)
		gw->last_seen_ns = now;
}

static __always_inline int ingress(struct __sk_buff *skb, bool btf)
{
	struct rn_ifc_key key = { .ifindex = skb->ifindex };
	struct rn_nic_ref *ref;
	struct rn_stats *st;
	struct rn_nic *nic;

	key.netns = netns_of(skb, btf);
	ref = bpf_map_lookup_elem(&rn_ifc_v1, &key);
	if (!ref)
		return TC_ACT_UNSPEC;
	st = bpf_map_lookup_elem(&rn_stats_v1, &ref->nic);
	if (st) {
		st->rx_packets++;
		st->rx_bytes += skb->len;
	}
	nic = bpf_map_lookup_elem(&rn_nic_v1, &ref->nic);
	if (nic && (nic->flags & RN_NIC_ACTIVE))
		track_gateway(skb, ref->nic, nic);
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

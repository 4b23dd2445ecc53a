// SPDX-License-Identifier: Apache-2.0
#include "probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/route/neighbour.h>
#include <netlink/socket.h>

#include "link.h"

struct arp_pkt {
	uint16_t htype, ptype;
	uint8_t hlen, plen;
	uint16_t op;
	uint8_t sha[6];
	uint8_t spa[4];
	uint8_t tha[6];
	uint8_t tpa[4];
} __attribute__((packed));

static const unsigned char bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int arp_socket(int ifindex)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
				   .sll_ifindex = ifindex };
	/* Protocol 0 at socket(): the receive hook is registered once, by
	 * bind(), rather than registered for every device then moved (which
	 * waits for an RCU grace period). */
	int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int arp_send(int fd, int ifindex, uint16_t op, const unsigned char sha[6], uint32_t spa,
		    uint32_t tpa)
{
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
				  .sll_ifindex = ifindex, .sll_halen = 6 };
	struct arp_pkt p = { .htype = htons(ARPHRD_ETHER), .ptype = htons(ETH_P_IP), .hlen = 6,
			     .plen = 4, .op = htons(op) };

	memcpy(to.sll_addr, bcast, 6);
	memcpy(p.sha, sha, 6);
	memcpy(p.spa, &spa, 4);
	memcpy(p.tpa, &tpa, 4);
	return sendto(fd, &p, sizeof(p), 0, (struct sockaddr *)&to, sizeof(to)) < 0 ? -errno : 0;
}

/* Waits until @deadline for an ARP packet whose sender address is @spa
 * from a MAC other than @self.  1 when seen, 0 at the deadline. */
static int arp_wait_sender(int fd, uint32_t spa, const unsigned char self[6], long long deadline,
			   unsigned char who[6])
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct arp_pkt p;

	for (;;) {
		long long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0)
			return 0;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = recv(fd, &p, sizeof(p), MSG_DONTWAIT);
		if (n < (ssize_t)sizeof(p) || p.hlen != 6 || p.plen != 4 ||
		    p.ptype != htons(ETH_P_IP) || memcmp(p.spa, &spa, 4) || !memcmp(p.sha, self, 6))
			continue;
		if (who)
			memcpy(who, p.sha, 6);
		return 1;
	}
}

int probe_conflict4(int ifindex, const unsigned char mac[6], struct in_addr addr, int window_ms,
		    unsigned char who[6])
{
	int fd = arp_socket(ifindex), err;

	if (fd < 0)
		return fd;
	/* RFC 5227 probe: sender 0.0.0.0, target the candidate address. */
	err = arp_send(fd, ifindex, ARPOP_REQUEST, mac, 0, addr.s_addr);
	if (!err && arp_wait_sender(fd, addr.s_addr, mac, now_ms() + window_ms, who))
		err = -EADDRINUSE;
	close(fd);
	return err;
}

int announce4(int ifindex, const unsigned char mac[6], struct in_addr addr)
{
	int fd = arp_socket(ifindex), err;

	if (fd < 0)
		return fd;
	err = arp_send(fd, ifindex, ARPOP_REQUEST, mac, addr.s_addr, addr.s_addr);
	close(fd);
	return err;
}

/* IPv6 Duplicate Address Detection as RFC 4862 5.4 does it, by hand so
 * that the window is ours: a Neighbor Solicitation from the unspecified
 * address for the candidate, then any Neighbor Advertisement for it (or
 * another node's DAD solicitation for it) within the window is a conflict. */
struct dad_frame {
	uint32_t ver_class_flow;
	uint16_t payload_len;
	uint8_t next_header, hop_limit;
	struct in6_addr src, dst;
	uint8_t type, code;
	uint16_t checksum;
	uint32_t reserved;
	struct in6_addr target;
	/* A Neighbor Advertisement may carry its target link-layer address. */
	uint8_t opt_type, opt_len, opt_lladdr[6];
} __attribute__((packed));

#define DAD_ICMP_LEN 24 /* type..target: an NS without options */

static uint16_t icmp6_checksum(const struct dad_frame *f, size_t icmp_len)
{
	const uint8_t *icmp = &f->type;
	uint32_t sum = (uint32_t)icmp_len + IPPROTO_ICMPV6;

	for (int i = 0; i < 16; i += 2)
		sum += (uint32_t)(f->src.s6_addr[i] << 8 | f->src.s6_addr[i + 1]) +
		       (uint32_t)(f->dst.s6_addr[i] << 8 | f->dst.s6_addr[i + 1]);
	for (size_t i = 0; i + 1 < icmp_len; i += 2)
		sum += (uint32_t)(icmp[i] << 8 | icmp[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static int dad_send(int fd, int ifindex, const struct in6_addr *addr)
{
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IPV6),
				  .sll_ifindex = ifindex, .sll_halen = 6,
				  .sll_addr = { 0x33, 0x33, 0xff } };
	struct dad_frame f = { .ver_class_flow = htonl(6u << 28),
			       .payload_len = htons(DAD_ICMP_LEN), .next_header = IPPROTO_ICMPV6,
			       .hop_limit = 255, .type = ND_NEIGHBOR_SOLICIT, .target = *addr };

	/* To the candidate's solicited-node group, ff02::1:ffXX:XXXX. */
	inet_pton(AF_INET6, "ff02::1:ff00:0", &f.dst);
	memcpy(&f.dst.s6_addr[13], &addr->s6_addr[13], 3);
	memcpy(&to.sll_addr[3], &addr->s6_addr[13], 3);
	f.checksum = icmp6_checksum(&f, DAD_ICMP_LEN);
	return sendto(fd, &f, offsetof(struct dad_frame, opt_type), 0, (struct sockaddr *)&to,
		      sizeof(to)) < 0 ? -errno : 0;
}

/* 1 when @f (of @len bytes) says another node holds or probes @addr. */
static int dad_claims(const struct dad_frame *f, size_t len, const struct in6_addr *addr)
{
	if (len < offsetof(struct dad_frame, opt_type) || f->next_header != IPPROTO_ICMPV6 ||
	    memcmp(&f->target, addr, sizeof(*addr)))
		return 0;
	return f->type == ND_NEIGHBOR_ADVERT ||
	       (f->type == ND_NEIGHBOR_SOLICIT && IN6_IS_ADDR_UNSPECIFIED(&f->src));
}

int probe_conflict6(int ifindex, const unsigned char mac[6], const struct in6_addr *addr,
		    int window_ms, unsigned char who[6])
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IPV6),
				   .sll_ifindex = ifindex };
	long long deadline;
	struct pollfd pfd;
	int fd, err;

	/* Protocol 0 at socket(), as for ARP: one hook registration, by bind(). */
	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		err = -errno;
		goto out;
	}
	err = dad_send(fd, ifindex, addr);
	deadline = now_ms() + window_ms;
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	while (!err && now_ms() < deadline) {
		struct sockaddr_ll from;
		socklen_t fromlen = sizeof(from);
		struct dad_frame f;
		ssize_t n;

		if (poll(&pfd, 1, (int)(deadline - now_ms())) <= 0)
			continue;
		n = recvfrom(fd, &f, sizeof(f), MSG_DONTWAIT, (struct sockaddr *)&from, &fromlen);
		if (n < 0 || from.sll_pkttype == PACKET_OUTGOING ||
		    (from.sll_halen == 6 && !memcmp(from.sll_addr, mac, 6)) ||
		    !dad_claims(&f, (size_t)n, addr))
			continue;
		if (who) {
			/* The advertised link-layer address, else the frame's source. */
			bool tlla = f.type == ND_NEIGHBOR_ADVERT && n >= (ssize_t)sizeof(f) &&
				    f.opt_type == ND_OPT_TARGET_LINKADDR;

			memcpy(who, tlla ? f.opt_lladdr : from.sll_addr, 6);
		}
		err = -EADDRINUSE;
	}
out:
	close(fd);
	return err;
}

static int icmp6_socket(int ifindex, const struct in6_addr *src)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = *src };
	struct icmp6_filter filt;
	int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6), hops = 255, err;

	if (fd < 0)
		return -errno;
	ICMP6_FILTER_SETBLOCKALL(&filt);
	ICMP6_FILTER_SETPASS(ND_NEIGHBOR_ADVERT, &filt);
	if (setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filt, sizeof(filt)) < 0 ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) < 0 ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops)) < 0 ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) < 0 ||
	    (src && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int announce6(int ifindex, const unsigned char mac[6], const struct in6_addr *addr)
{
	struct {
		struct nd_neighbor_advert na;
		struct nd_opt_hdr opt;
		unsigned char lladdr[6];
	} __attribute__((packed)) pkt = { 0 };
	struct sockaddr_in6 to = { .sin6_family = AF_INET6, .sin6_scope_id = (uint32_t)ifindex };
	int fd = icmp6_socket(ifindex, addr), err = 0;

	if (fd < 0)
		return fd;
	pkt.na.nd_na_type = ND_NEIGHBOR_ADVERT;
	pkt.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
	pkt.na.nd_na_target = *addr;
	pkt.opt.nd_opt_type = ND_OPT_TARGET_LINKADDR;
	pkt.opt.nd_opt_len = 1;
	memcpy(pkt.lladdr, mac, 6);
	inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
	if (sendto(fd, &pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		err = -errno;
	close(fd);
	return err;
}

/* A neighbour whose link-layer address is known. */
#define NUD_RESOLVED \
	(NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP)

struct neigh_watch {
	int ifindex;
	struct nl_addr *gw;
	int state; /* last NUD_* seen for @gw, 0: none yet */
};

static void neigh_seen(struct nl_object *obj, void *arg)
{
	struct rtnl_neigh *n = (struct rtnl_neigh *)obj;
	struct neigh_watch *w = arg;

	if (rtnl_neigh_get_ifindex(n) == w->ifindex && rtnl_neigh_get_dst(n) &&
	    !nl_addr_cmp(rtnl_neigh_get_dst(n), w->gw))
		w->state = rtnl_neigh_get_state(n);
}

static int neigh_msg(struct nl_msg *msg, void *arg)
{
	nl_msg_parse(msg, neigh_seen, arg);
	return NL_OK;
}

/* The kernel resolves the gateway for us: RTM_NEWNEIGH with NTF_USE starts
 * its ARP/ND state machine (solicitations every retrans_time), and the
 * neighbour's updates arrive on RTNLGRP_NEIGH.  No packet socket: closing
 * one waits for an RCU grace period (~16 ms), longer than the whole ADD. */
int probe_gateway(int ifindex, int family, const void *gw, int tries, int interval_ms)
{
	char ifname[IF_NAMESIZE] = "", path[96], saved[32] = "", value[32];
	struct neigh_watch w = { .ifindex = ifindex };
	struct rtnl_neigh *req = NULL;
	struct nl_sock *sk = nl_socket_alloc();
	struct pollfd pfd = { .events = POLLIN };
	long long deadline;
	int fd, err;

	if (!sk)
		return -ENOMEM;
	w.gw = nl_addr_build(family, gw, family == AF_INET ? 4 : 16);
	req = rtnl_neigh_alloc();
	if (!w.gw || !req) {
		err = -ENOMEM;
		goto out;
	}
	nl_socket_disable_seq_check(sk);
	nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, neigh_msg, &w);
	if (nl_connect(sk, NETLINK_ROUTE) < 0 || nl_socket_add_membership(sk, RTNLGRP_NEIGH) < 0) {
		err = -EIO;
		goto out;
	}
	/* Solicit every @interval_ms for this check only. */
	if (if_indextoname((unsigned int)ifindex, ifname)) {
		snprintf(path, sizeof(path), "net/%s/neigh/%s/retrans_time_ms",
			 family == AF_INET ? "ipv4" : "ipv6", ifname);
		if (!sysctl_read(path, saved, sizeof(saved))) {
			snprintf(value, sizeof(value), "%d", interval_ms);
			sysctl_write(path, value);
		}
	}
	rtnl_neigh_set_ifindex(req, ifindex);
	rtnl_neigh_set_dst(req, w.gw);
	rtnl_neigh_set_flags(req, NTF_USE);
	err = rtnl_neigh_add(sk, req, NLM_F_CREATE);
	if (err < 0) {
		err = -EIO;
		goto restore;
	}
	fd = nl_socket_get_fd(sk);
	pfd.fd = fd;
	nl_socket_set_nonblocking(sk);
	deadline = now_ms() + (long long)tries * interval_ms;
	err = -EHOSTUNREACH;
	while (now_ms() < deadline) {
		if (w.state & NUD_RESOLVED) {
			err = 0;
			break;
		}
		if (w.state & NUD_FAILED)
			break;
		if (poll(&pfd, 1, (int)(deadline - now_ms())) > 0)
			nl_recvmsgs_default(sk);
	}
	if (err && !w.state) {
		/* Already resolved before we asked: no update was sent. */
		struct nl_cache *cache = NULL;

		if (rtnl_neigh_alloc_cache(sk, &cache) >= 0) {
			struct rtnl_neigh *n = rtnl_neigh_get(cache, ifindex, w.gw);

			if (n && (rtnl_neigh_get_state(n) & NUD_RESOLVED))
				err = 0;
			rtnl_neigh_put(n);
			nl_cache_free(cache);
		}
	}
restore:
	if (saved[0])
		sysctl_write(path, saved);
out:
	rtnl_neigh_put(req);
	nl_addr_put(w.gw);
	nl_socket_free(sk);
	return err;
}

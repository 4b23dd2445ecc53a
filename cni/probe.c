// SPDX-License-Identifier: Apache-2.0
#include "probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/icmp6.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/route/neighbour.h>
#include <netlink/socket.h>

#include "common/addr_probe.h"
#include "link.h"

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int probe_conflict(int fd, int ifindex, const unsigned char mac[6], int family, const void *addr,
		   int window_ms, unsigned char who[6])
{
	size_t len = family == AF_INET ? 4 : 16;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	unsigned char claimed[16];
	long long deadline;
	int err;

	err = addr_probe_send(fd, ifindex, mac, family, addr);
	deadline = now_ms() + window_ms;
	while (!err && now_ms() < deadline) {
		int got;

		if (poll(&pfd, 1, (int)(deadline - now_ms())) <= 0)
			continue;
		got = addr_probe_recv(fd, family, mac, claimed, who);
		if (got < 0)
			err = got;
		else if (got && !memcmp(claimed, addr, len))
			err = -EADDRINUSE;
	}
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

/* Whether the kernel holds @gw on @ifindex with a link-layer address. */
static bool neigh_resolved(struct nl_sock *sk, int ifindex, struct nl_addr *gw)
{
	struct nl_cache *cache = NULL;
	struct rtnl_neigh *n;
	bool resolved;

	if (rtnl_neigh_alloc_cache(sk, &cache) < 0)
		return false;
	n = rtnl_neigh_get(cache, ifindex, gw);
	resolved = n && (rtnl_neigh_get_state(n) & NUD_RESOLVED);
	rtnl_neigh_put(n);
	nl_cache_free(cache);
	return resolved;
}

/* The kernel resolves the gateway for us: RTM_NEWNEIGH with NTF_USE sends
 * a solicitation at once, and the neighbour's updates arrive on
 * RTNLGRP_NEIGH.  A try that goes unanswered for @interval_ms deletes the
 * unresolved neighbour, so that the next NTF_USE solicits again at once (the
 * kernel's own retransmission waits retrans_time, 1 s).  No packet socket:
 * closing one waits for an RCU grace period (~16 ms), longer than the whole
 * ADD; and no sysctl to change and restore. */
int probe_gateway(int ifindex, int family, const void *gw, int tries, int interval_ms)
{
	struct neigh_watch w = { .ifindex = ifindex };
	struct rtnl_neigh *req = NULL;
	struct nl_sock *sk = nl_socket_alloc();
	struct pollfd pfd = { .events = POLLIN };
	long long deadline;
	int err;

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
	rtnl_neigh_set_ifindex(req, ifindex);
	rtnl_neigh_set_dst(req, w.gw);
	rtnl_neigh_set_flags(req, NTF_USE);
	pfd.fd = nl_socket_get_fd(sk);
	err = -EHOSTUNREACH;
	for (int try = 0; try < tries && err; try++) {
		/* Only an unresolved neighbour goes: one resolved before we
		 * asked sends no update, so the table is asked. */
		if (try) {
			if (neigh_resolved(sk, ifindex, w.gw)) {
				err = 0;
				break;
			}
			rtnl_neigh_delete(sk, req, 0);
		}
		if (rtnl_neigh_add(sk, req, NLM_F_CREATE) < 0) {
			err = -EIO;
			break;
		}
		/* The socket stays blocking for the requests' acks; poll()
		 * says when an update can be read without waiting. */
		deadline = now_ms() + interval_ms;
		while (!(w.state & NUD_RESOLVED) && now_ms() < deadline)
			if (poll(&pfd, 1, (int)(deadline - now_ms())) > 0)
				nl_recvmsgs_default(sk);
		if (w.state & NUD_RESOLVED)
			err = 0;
	}
	if (err == -EHOSTUNREACH && neigh_resolved(sk, ifindex, w.gw))
		err = 0;
out:
	rtnl_neigh_put(req);
	nl_addr_put(w.gw);
	nl_socket_free(sk);
	return err;
}

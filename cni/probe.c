// SPDX-License-Identifier: Apache-2.0
#include "probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
	int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));

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

int probe_gateway4(int ifindex, const unsigned char mac[6], struct in_addr src, struct in_addr gw,
		   int tries, int interval_ms)
{
	int fd = arp_socket(ifindex), err = -EHOSTUNREACH;

	if (fd < 0)
		return fd;
	for (int i = 0; i < tries; i++) {
		int ret = arp_send(fd, ifindex, ARPOP_REQUEST, mac, src.s_addr, gw.s_addr);

		if (ret) {
			err = ret;
			break;
		}
		if (arp_wait_sender(fd, gw.s_addr, mac, now_ms() + interval_ms, NULL)) {
			err = 0;
			break;
		}
	}
	close(fd);
	return err;
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

int probe_gateway6(int ifindex, const unsigned char mac[6], const struct in6_addr *src,
		   const struct in6_addr *gw, int tries, int interval_ms)
{
	/* With a unicast source the solicitation must carry our link-layer
	 * address (RFC 4861 7.2.2): Linux does not answer a multicast one
	 * without it unless it already knows us. */
	struct {
		struct nd_neighbor_solicit ns;
		struct nd_opt_hdr opt;
		unsigned char lladdr[6];
	} __attribute__((packed)) pkt = { 0 };
	struct sockaddr_in6 to = { .sin6_family = AF_INET6, .sin6_scope_id = (uint32_t)ifindex };
	int fd = icmp6_socket(ifindex, src), err = -EHOSTUNREACH;

	if (fd < 0)
		return fd;
	pkt.ns.nd_ns_type = ND_NEIGHBOR_SOLICIT;
	pkt.ns.nd_ns_target = *gw;
	pkt.opt.nd_opt_type = ND_OPT_SOURCE_LINKADDR;
	pkt.opt.nd_opt_len = 1;
	memcpy(pkt.lladdr, mac, 6);
	/* The solicited-node multicast address of the gateway. */
	inet_pton(AF_INET6, "ff02::1:ff00:0", &to.sin6_addr);
	memcpy(&to.sin6_addr.s6_addr[13], &gw->s6_addr[13], 3);
	for (int i = 0; i < tries && err == -EHOSTUNREACH; i++) {
		long long deadline = now_ms() + interval_ms;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (sendto(fd, &pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			err = -errno;
			break;
		}
		while (now_ms() < deadline) {
			struct nd_neighbor_advert na;
			ssize_t n;

			if (poll(&pfd, 1, (int)(deadline - now_ms())) <= 0)
				continue;
			n = recv(fd, &na, sizeof(na), MSG_DONTWAIT);
			if (n >= (ssize_t)sizeof(na) && na.nd_na_type == ND_NEIGHBOR_ADVERT &&
			    !memcmp(&na.nd_na_target, gw, sizeof(*gw))) {
				err = 0;
				break;
			}
		}
	}
	close(fd);
	return err;
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

// SPDX-License-Identifier: Apache-2.0
/* ARP request / neighbour solicitation to a pod NIC's gateway (dp_probe.h). */
#include "agent/dp_probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int send_arp(const struct rn_nic *nic, const __u8 *gw_mac)
{
	static const __u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
				  .sll_ifindex = (int)nic->ifindex, .sll_halen = 6 };
	__u8 req[28] = { 0, 1, 8, 0, 6, 4, 0, 1 };
	int fd, err = 0;

	memcpy(to.sll_addr, gw_mac ? gw_mac : bcast, 6);
	memcpy(req + 8, nic->mac, 6);
	memcpy(req + 14, nic->addr4, 4);
	memcpy(req + 24, nic->gw4, 4);
	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, req, sizeof(req), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		err = -errno;
	close(fd);
	return err;
}

static int send_ns(const struct rn_nic *nic)
{
	struct sockaddr_in6 to = { .sin6_family = AF_INET6, .sin6_scope_id = nic->ifindex };
	struct {
		struct nd_neighbor_solicit ns;
		__u8 opt_type, opt_len, mac[6];
	} msg = { .opt_type = ND_OPT_SOURCE_LINKADDR, .opt_len = 1 };
	int fd, hops = 255, err = 0;

	/* The solicited-node multicast address of the gateway. */
	inet_pton(AF_INET6, "ff02::1:ff00:0", &to.sin6_addr);
	memcpy(&to.sin6_addr.s6_addr[13], nic->gw6 + 13, 3);
	msg.ns.nd_ns_type = ND_NEIGHBOR_SOLICIT;
	memcpy(&msg.ns.nd_ns_target, nic->gw6, 16);
	memcpy(msg.mac, nic->mac, 6);
	fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
	if (fd < 0)
		return -errno;
	/* ND is only valid with a hop limit of 255; the kernel fills in the
	 * ICMPv6 checksum of a raw ICMPv6 socket. */
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) ||
	    sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		err = -errno;
	close(fd);
	return err;
}

int dp_probe_send(int family, const struct rn_nic *nic, const __u8 *gw_mac)
{
	return family == RN_FAM_V6 ? send_ns(nic) : send_arp(nic, gw_mac);
}

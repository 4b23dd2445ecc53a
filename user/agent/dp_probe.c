// SPDX-License-Identifier: Apache-2.0
/* ARP request / neighbour solicitation to a pod NIC's gateway, from its
 * master (dp_probe.h). */
#include "agent/dp_probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const __u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

struct arp_frame {
	struct ethhdr eth;
	__be16 htype, ptype;
	__u8 hlen, plen;
	__be16 op;
	__u8 sha[6], spa[4], tha[6], tpa[4];
} __attribute__((packed));

struct ns_frame {
	struct ethhdr eth;
	__be32 ver_class_flow;
	__be16 payload_len;
	__u8 next_header, hop_limit;
	__u8 src[16], dst[16];
	__u8 type, code;
	__be16 checksum;
	__u32 reserved;
	__u8 target[16];
	__u8 opt_type, opt_len, opt_mac[6]; /* source link-layer address */
} __attribute__((packed));

#define NS_ICMP_LEN (sizeof(struct ns_frame) - offsetof(struct ns_frame, type))

int dp_probe_open(void)
{
	/* Protocol 0: no receive hook, the socket only sends. */
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);

	return fd < 0 ? -errno : fd;
}

static int send_frame(int fd, int ifindex, const void *frame, size_t len)
{
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = ifindex };

	return sendto(fd, frame, len, 0, (struct sockaddr *)&to, sizeof(to)) < 0 ? -errno : 0;
}

static int send_arp(int fd, int master, const struct rn_nic *nic, const __u8 *gw_mac)
{
	struct arp_frame f = { .eth.h_proto = htons(ETH_P_ARP), .htype = htons(1),
			       .ptype = htons(ETH_P_IP), .hlen = 6, .plen = 4, .op = htons(1) };

	memcpy(f.eth.h_dest, gw_mac ? gw_mac : bcast, 6);
	memcpy(f.eth.h_source, nic->mac, 6);
	memcpy(f.sha, nic->mac, 6);
	memcpy(f.spa, nic->addr4, 4);
	memcpy(f.tpa, nic->gw4, 4);
	return send_frame(fd, master, &f, sizeof(f));
}

static __be16 icmp6_checksum(const struct ns_frame *f)
{
	const __u8 *icmp = &f->type;
	uint32_t sum = (uint32_t)NS_ICMP_LEN + IPPROTO_ICMPV6;

	for (int i = 0; i < 16; i += 2)
		sum += (uint32_t)(f->src[i] << 8 | f->src[i + 1]) +
		       (uint32_t)(f->dst[i] << 8 | f->dst[i + 1]);
	for (size_t i = 0; i + 1 < NS_ICMP_LEN; i += 2)
		sum += (uint32_t)(icmp[i] << 8 | icmp[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/* To the gateway itself when its MAC is known (RFC 4861 7.3.3's unicast
 * probe), else to its solicited-node group ff02::1:ffXX:XXXX. */
static int send_ns(int fd, int master, const struct rn_nic *nic, const __u8 *gw_mac)
{
	struct ns_frame f = { .eth.h_proto = htons(ETH_P_IPV6),
			      .ver_class_flow = htonl(6u << 28),
			      .payload_len = htons(NS_ICMP_LEN),
			      .next_header = IPPROTO_ICMPV6,
			      .hop_limit = 255, /* ND is valid only with 255 */
			      .type = ND_NEIGHBOR_SOLICIT,
			      .opt_type = ND_OPT_SOURCE_LINKADDR,
			      .opt_len = 1 };

	memcpy(f.eth.h_source, nic->mac, 6);
	memcpy(f.src, nic->addr6, 16);
	memcpy(f.target, nic->gw6, 16);
	memcpy(f.opt_mac, nic->mac, 6);
	if (gw_mac) {
		memcpy(f.eth.h_dest, gw_mac, 6);
		memcpy(f.dst, nic->gw6, 16);
	} else {
		static const __u8 mcast_mac[6] = { 0x33, 0x33, 0xff };

		inet_pton(AF_INET6, "ff02::1:ff00:0", f.dst);
		memcpy(f.dst + 13, nic->gw6 + 13, 3);
		memcpy(f.eth.h_dest, mcast_mac, 3);
		memcpy(f.eth.h_dest + 3, nic->gw6 + 13, 3);
	}
	f.checksum = icmp6_checksum(&f);
	return send_frame(fd, master, &f, sizeof(f));
}

int dp_probe_send(int fd, int master_ifindex, int family, const struct rn_nic *nic,
		  const __u8 *gw_mac)
{
	return family == RN_FAM_V6 ? send_ns(fd, master_ifindex, nic, gw_mac) :
				     send_arp(fd, master_ifindex, nic, gw_mac);
}

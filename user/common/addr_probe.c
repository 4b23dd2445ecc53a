// SPDX-License-Identifier: Apache-2.0
#include "common/addr_probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
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

/* An IPv6 neighbour discovery frame as a SOCK_DGRAM packet socket sees it. */
struct nd_frame {
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

#define ND_ICMP_LEN 24 /* type..target: an NS without options */

static const unsigned char bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/* Only neighbour solicitations and advertisements reach the socket: on a
 * master NIC it would otherwise queue every IPv6 frame of the node. */
static int attach_nd_filter(int fd)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, offsetof(struct nd_frame, next_header)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ICMPV6, 0, 4),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, offsetof(struct nd_frame, type)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ND_NEIGHBOR_SOLICIT, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ND_NEIGHBOR_ADVERT, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0xffff),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };

	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) ? -errno : 0;
}

int addr_probe_open(int ifindex, int family)
{
	uint16_t proto = family == AF_INET ? ETH_P_ARP : ETH_P_IPV6;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(proto),
				   .sll_ifindex = ifindex };
	/* Protocol 0 at socket(): the receive hook is registered once, by
	 * bind(), rather than registered for every device then moved (which
	 * waits for an RCU grace period). */
	int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0), err = 0;

	if (fd < 0)
		return -errno;
	if (family == AF_INET6)
		err = attach_nd_filter(fd);
	if (!err && bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		err = -errno;
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

static int arp_send(int fd, int ifindex, const unsigned char sha[6], uint32_t spa, uint32_t tpa)
{
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
				  .sll_ifindex = ifindex, .sll_halen = 6 };
	struct arp_pkt p = { .htype = htons(ARPHRD_ETHER), .ptype = htons(ETH_P_IP), .hlen = 6,
			     .plen = 4, .op = htons(ARPOP_REQUEST) };

	memcpy(to.sll_addr, bcast, 6);
	memcpy(p.sha, sha, 6);
	memcpy(p.spa, &spa, 4);
	memcpy(p.tpa, &tpa, 4);
	return sendto(fd, &p, sizeof(p), 0, (struct sockaddr *)&to, sizeof(to)) < 0 ? -errno : 0;
}

static uint16_t icmp6_checksum(const struct nd_frame *f, size_t icmp_len)
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

/* RFC 4862 5.4: a Neighbor Solicitation from the unspecified address, to
 * the candidate's solicited-node group ff02::1:ffXX:XXXX. */
static int dad_send(int fd, int ifindex, const struct in6_addr *addr)
{
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IPV6),
				  .sll_ifindex = ifindex, .sll_halen = 6,
				  .sll_addr = { 0x33, 0x33, 0xff } };
	struct nd_frame f = { .ver_class_flow = htonl(6u << 28), .payload_len = htons(ND_ICMP_LEN),
			      .next_header = IPPROTO_ICMPV6, .hop_limit = 255,
			      .type = ND_NEIGHBOR_SOLICIT, .target = *addr };

	inet_pton(AF_INET6, "ff02::1:ff00:0", &f.dst);
	memcpy(&f.dst.s6_addr[13], &addr->s6_addr[13], 3);
	memcpy(&to.sll_addr[3], &addr->s6_addr[13], 3);
	f.checksum = icmp6_checksum(&f, ND_ICMP_LEN);
	return sendto(fd, &f, offsetof(struct nd_frame, opt_type), 0, (struct sockaddr *)&to,
		      sizeof(to)) < 0 ? -errno : 0;
}

int addr_probe_send(int fd, int ifindex, const unsigned char mac[6], int family, const void *addr)
{
	struct in_addr a4;

	if (family == AF_INET6)
		return dad_send(fd, ifindex, addr);
	memcpy(&a4, addr, 4);
	return arp_send(fd, ifindex, mac, 0, a4.s_addr);
}

int addr_announce4(int fd, int ifindex, const unsigned char mac[6], struct in_addr addr)
{
	return arp_send(fd, ifindex, mac, addr.s_addr, addr.s_addr);
}

static int arp_claim(const struct arp_pkt *p, ssize_t n, const unsigned char self[6], void *addr,
		     unsigned char who[6])
{
	static const uint8_t zero[4];

	if (n < (ssize_t)sizeof(*p) || p->hlen != 6 || p->plen != 4 || p->ptype != htons(ETH_P_IP) ||
	    !memcmp(p->sha, self, 6))
		return 0;
	/* Any sender address is in use; another host's probe (sender
	 * 0.0.0.0) claims its target (RFC 5227 2.1.1). */
	memcpy(addr, memcmp(p->spa, zero, 4) ? p->spa : p->tpa, 4);
	if (who)
		memcpy(who, p->sha, 6);
	return 1;
}

static int nd_claim(const struct nd_frame *f, ssize_t n, const struct sockaddr_ll *from,
		    const unsigned char self[6], void *addr, unsigned char who[6])
{
	bool tlla;

	if (n < (ssize_t)offsetof(struct nd_frame, opt_type) || f->next_header != IPPROTO_ICMPV6 ||
	    (from->sll_halen == 6 && !memcmp(from->sll_addr, self, 6)))
		return 0;
	/* An advertisement for the target, or someone else's DAD for it. */
	if (f->type != ND_NEIGHBOR_ADVERT &&
	    !(f->type == ND_NEIGHBOR_SOLICIT && IN6_IS_ADDR_UNSPECIFIED(&f->src)))
		return 0;
	memcpy(addr, &f->target, 16);
	if (who) {
		/* The advertised link-layer address, else the frame's source. */
		tlla = f->type == ND_NEIGHBOR_ADVERT && n >= (ssize_t)sizeof(*f) &&
		       f->opt_type == ND_OPT_TARGET_LINKADDR;
		memcpy(who, tlla ? f->opt_lladdr : from->sll_addr, 6);
	}
	return 1;
}

int addr_probe_recv(int fd, int family, const unsigned char self[6], void *addr,
		    unsigned char who[6])
{
	union {
		struct arp_pkt arp;
		struct nd_frame nd;
	} buf;
	struct sockaddr_ll from = { 0 };
	socklen_t fromlen = sizeof(from);
	ssize_t n = recvfrom(fd, &buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fromlen);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	return family == AF_INET ? arp_claim(&buf.arp, n, self, addr, who) :
				   nd_claim(&buf.nd, n, &from, self, addr, who);
}

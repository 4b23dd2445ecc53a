/* SPDX-License-Identifier: Apache-2.0 */
/* A tiny packet builder for BPF_PROG_TEST_RUN cases (shared by the prog
 * tests and the benchmark). */
#ifndef RAILNET_PKTGEN_H
#define RAILNET_PKTGEN_H

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
/* The cookie of the caller's netns, as bpf_get_netns_cookie() sees it in a
 * test run (0 where the kernel lacks SO_NETNS_COOKIE). */
static inline uint64_t pkt_netns_cookie(void)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd >= 0) {
		getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
		close(fd);
	}
	return cookie;
}

#endif

struct pkt {
	uint8_t data[256];
	size_t len;
};

static inline void pkt_put(struct pkt *p, const void *src, size_t n)
{
	memcpy(p->data + p->len, src, n);
	p->len += n;
}

static inline void pkt_be16(struct pkt *p, uint16_t v)
{
	v = htons(v);
	pkt_put(p, &v, 2);
}

static inline void pkt_eth(struct pkt *p, const uint8_t dst[6], const uint8_t src[6],
			   uint16_t proto)
{
	p->len = 0;
	pkt_put(p, dst, 6);
	pkt_put(p, src, 6);
	pkt_be16(p, proto);
}

static inline void pkt_vlan(struct pkt *p, uint16_t vid, uint16_t inner)
{
	pkt_be16(p, vid);
	pkt_be16(p, inner);
}

/* IPv4 + 8 bytes of UDP; @frag_off in host order (flags | offset). */
static inline void pkt_ipv4(struct pkt *p, const char *src, const char *dst, uint16_t frag_off)
{
	uint8_t h[20] = { 0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17 };
	uint8_t udp[8] = { 0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0 };

	h[6] = (uint8_t)(frag_off >> 8);
	h[7] = (uint8_t)frag_off;
	inet_pton(AF_INET, src, h + 12);
	inet_pton(AF_INET, dst, h + 16);
	pkt_put(p, h, sizeof(h));
	pkt_put(p, udp, sizeof(udp));
}

/* IPv6 + @nexthdr with an 8-byte payload (ICMPv6: @type first). */
static inline void pkt_ipv6(struct pkt *p, const char *src, const char *dst, uint8_t nexthdr,
			    uint8_t type)
{
	uint8_t h[40] = { 0x60, 0, 0, 0, 0, 8, nexthdr, 64 };
	uint8_t payload[8] = { type };

	inet_pton(AF_INET6, src, h + 8);
	inet_pton(AF_INET6, dst, h + 24);
	pkt_put(p, h, sizeof(h));
	pkt_put(p, payload, sizeof(payload));
}

static inline void pkt_arp(struct pkt *p, uint16_t op, const uint8_t sha[6], const char *sip,
			   const char *tip)
{
	uint8_t h[8] = { 0, 1, 8, 0, 6, 4, 0, (uint8_t)op }, ip[4], zero[6] = { 0 };

	pkt_put(p, h, sizeof(h));
	pkt_put(p, sha, 6);
	inet_pton(AF_INET, sip, ip);
	pkt_put(p, ip, 4);
	pkt_put(p, zero, 6);
	inet_pton(AF_INET, tip, ip);
	pkt_put(p, ip, 4);
}

/* The cookie of the caller's netns, as bpf_get_netns_cookie() sees it in a
 * test run (0 where the kernel lacks SO_NETNS_COOKIE). */
static inline uint64_t pkt_netns_cookie(void)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd >= 0) {
		getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
		close(fd);
	}
	return cookie;
}

#endif

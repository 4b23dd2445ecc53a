/* SPDX-License-Identifier: Apache-2.0 */
/* On-the-wire checks from the pod's NIC (run inside the pod netns):
 * gateway reachability (ARP request / neighbour solicitation), address
 * conflict (RFC 5227 ARP probe, IPv6 DAD), and announcements (gratuitous ARP,
 * unsolicited neighbour advertisement). */
#ifndef RAILNET_CNI_PROBE_H
#define RAILNET_CNI_PROBE_H

#include <netinet/in.h>

/* 0 once the gateway @gw (struct in_addr / in6_addr of @family) answers
 * the kernel's ARP requests / neighbour solicitations on @ifindex;
 * -EHOSTUNREACH after @tries x @interval_ms. */
int probe_gateway(int ifindex, int family, const void *gw, int tries, int interval_ms);
/* 0 when nobody claims @addr (struct in_addr / in6_addr of @family) within
 * @window_ms of an ARP probe / DAD solicitation on @fd (addr_probe_open());
 * -EADDRINUSE (and the claimant's MAC in @who) when someone does. */
int probe_conflict(int fd, int ifindex, const unsigned char mac[6], int family, const void *addr,
		   int window_ms, unsigned char who[6]);
int announce6(int ifindex, const unsigned char mac[6], const struct in6_addr *addr);

#endif

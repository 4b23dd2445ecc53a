/* SPDX-License-Identifier: Apache-2.0 */
/* Is an address already in use on the wire?  RFC 5227 ARP probes (sender
 * 0.0.0.0) and RFC 4862 Duplicate Address Detection solicitations (from ::)
 * on a packet socket, and telling the answers: any ARP whose sender is the
 * address, any Neighbor Advertisement for it, another node's DAD
 * solicitation for it.  The plugin probes from the pod's NIC right before it
 * announces; the agent probes from a master NIC ahead of time. */
#ifndef RAILNET_ADDR_PROBE_H
#define RAILNET_ADDR_PROBE_H

#include <netinet/in.h>

/* A packet socket on @ifindex for @family's probes and their answers (ARP,
 * or ICMPv6 neighbour discovery only: a socket filter drops the rest). */
int addr_probe_open(int ifindex, int family);

/* Sends the probe for @addr (struct in_addr / in6_addr of @family). */
int addr_probe_send(int fd, int ifindex, const unsigned char mac[6], int family, const void *addr);

/* Reads one frame.  1 when it claims an address, which goes to @addr (4 or
 * 16 bytes), its claimant's MAC to @who; 0 for anything else or nothing to
 * read (the socket is read without blocking); a negative errno on error.
 * Frames from @self (our own probes) are never claims. */
int addr_probe_recv(int fd, int family, const unsigned char self[6], void *addr,
		    unsigned char who[6]);

/* Gratuitous ARP for @addr, on an addr_probe_open(AF_INET) socket. */
int addr_announce4(int fd, int ifindex, const unsigned char mac[6], struct in_addr addr);

#endif

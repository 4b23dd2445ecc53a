/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What BPF programs need that vmlinux.h does not carry: UAPI macros. */
#ifndef RAILNET_BPF_COMPAT_H
#define RAILNET_BPF_COMPAT_H

#define TC_ACT_UNSPEC   (-1)
#define TC_ACT_OK       0
#define TC_ACT_SHOT     2
#define TC_ACT_REDIRECT 7

#define ETH_ALEN      6
#define ETH_P_IP      0x0800
#define ETH_P_ARP     0x0806
#define ETH_P_IPV6    0x86DD
#define ETH_P_8021Q   0x8100
#define ETH_P_8021AD  0x88A8

#define AF_INET  2
#define AF_INET6 10

#define IP_MF     0x2000
#define IP_OFFSET 0x1FFF

#define NEXTHDR_FRAGMENT 44
#define IPPROTO_ICMPV6_NR 58
#define NDISC_ROUTER_SOLICITATION   133
#define NDISC_REDIRECT              137
#define NDISC_NEIGHBOUR_ADVERTISEMENT 136

#define ARPOP_REPLY 2

#endif

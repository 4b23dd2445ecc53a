/* SPDX-License-Identifier: Apache-2.0 */
/* IPv4/IPv6 addresses as 128-bit integers, prefixes and ranges: the
 * arithmetic IPAM needs, free of syscalls. */
#ifndef RAILNET_IPADDR_H
#define RAILNET_IPADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef unsigned __int128 u128;

struct ipaddr {
	u128 v;
	int family; /* AF_INET or AF_INET6 */
};

struct ipprefix {
	struct ipaddr net; /* host bits cleared */
	int len;
};

struct iprange {
	u128 first, last; /* inclusive */
	int family;
};

#define IPADDR_STRLEN 46 /* INET6_ADDRSTRLEN */

int ipaddr_parse(const char *s, struct ipaddr *a);
int ipaddr_parse_family(const char *s, int family, struct ipaddr *a);
/* "172.16.11.5" / "fd16::5" into @buf (IPADDR_STRLEN bytes). */
const char *ipaddr_str(const struct ipaddr *a, char *buf);
bool ipaddr_eq(const struct ipaddr *a, const struct ipaddr *b);
/* In network byte order, as struct in_addr / in6_addr hold it; its length. */
size_t ipaddr_to_raw(const struct ipaddr *a, unsigned char raw[16]);
int ipaddr_bits(int family);

/* "172.16.11.0/24"; host bits set is an error (-EINVAL). */
int ipprefix_parse(const char *s, struct ipprefix *p);
bool ipprefix_contains(const struct ipprefix *p, const struct ipaddr *a);
u128 ipprefix_last(const struct ipprefix *p);

/* "a-b" or a single "a", both of @family (0: any); a > b is an error. */
int iprange_parse(const char *s, int family, struct iprange *r);
bool iprange_contains(const struct iprange *r, const struct ipaddr *a);

#endif

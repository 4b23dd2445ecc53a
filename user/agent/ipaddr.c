// SPDX-License-Identifier: Apache-2.0
#include "agent/ipaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ipaddr_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

int ipaddr_parse_family(const char *s, int family, struct ipaddr *a)
{
	unsigned char raw[16];

	if (family == AF_INET && inet_pton(AF_INET, s, raw) == 1) {
		a->family = AF_INET;
		a->v = ((u128)raw[0] << 24) | ((u128)raw[1] << 16) | ((u128)raw[2] << 8) | raw[3];
		return 0;
	}
	if (family == AF_INET6 && inet_pton(AF_INET6, s, raw) == 1) {
		a->family = AF_INET6;
		a->v = 0;
		for (int i = 0; i < 16; i++)
			a->v = (a->v << 8) | raw[i];
		return 0;
	}
	return -EINVAL;
}

int ipaddr_parse(const char *s, struct ipaddr *a)
{
	if (!ipaddr_parse_family(s, AF_INET, a))
		return 0;
	return ipaddr_parse_family(s, AF_INET6, a);
}

size_t ipaddr_to_raw(const struct ipaddr *a, unsigned char raw[16])
{
	size_t len = a->family == AF_INET ? 4 : 16;
	u128 v = a->v;

	for (size_t i = len; i-- > 0; v >>= 8)
		raw[i] = (unsigned char)v;
	return len;
}

const char *ipaddr_str(const struct ipaddr *a, char *buf)
{
	unsigned char raw[16];

	ipaddr_to_raw(a, raw);
	if (!inet_ntop(a->family, raw, buf, IPADDR_STRLEN))
		snprintf(buf, IPADDR_STRLEN, "?");
	return buf;
}

bool ipaddr_eq(const struct ipaddr *a, const struct ipaddr *b)
{
	return a->family == b->family && a->v == b->v;
}

static u128 host_mask(int family, int len)
{
	int bits = ipaddr_bits(family) - len;

	return bits >= 128 ? ~(u128)0 : (((u128)1 << bits) - 1);
}

int ipprefix_parse(const char *s, struct ipprefix *p)
{
	char addr[IPADDR_STRLEN + 1], *end;
	const char *slash = strchr(s, '/');
	long len;

	if (!slash || (size_t)(slash - s) > IPADDR_STRLEN || !slash[1])
		return -EINVAL;
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	if (ipaddr_parse(addr, &p->net))
		return -EINVAL;
	errno = 0;
	len = strtol(slash + 1, &end, 10);
	if (*end || errno || len < 0 || len > ipaddr_bits(p->net.family))
		return -EINVAL;
	p->len = (int)len;
	if (p->net.v & host_mask(p->net.family, p->len))
		return -EINVAL;
	return 0;
}

bool ipprefix_contains(const struct ipprefix *p, const struct ipaddr *a)
{
	return a->family == p->net.family &&
	       (a->v & ~host_mask(p->net.family, p->len)) == p->net.v;
}

u128 ipprefix_last(const struct ipprefix *p)
{
	return p->net.v | host_mask(p->net.family, p->len);
}

int iprange_parse(const char *s, int family, struct iprange *r)
{
	char first[IPADDR_STRLEN + 1];
	const char *dash = strchr(s, '-');
	struct ipaddr a, b;

	if (dash) {
		if ((size_t)(dash - s) > IPADDR_STRLEN)
			return -EINVAL;
		memcpy(first, s, (size_t)(dash - s));
		first[dash - s] = '\0';
		if (ipaddr_parse(first, &a) || ipaddr_parse(dash + 1, &b))
			return -EINVAL;
	} else {
		if (ipaddr_parse(s, &a))
			return -EINVAL;
		b = a;
	}
	if (a.family != b.family || (family && a.family != family))
		return -EAFNOSUPPORT;
	if (a.v > b.v)
		return -ERANGE;
	r->first = a.v;
	r->last = b.v;
	r->family = a.family;
	return 0;
}

bool iprange_contains(const struct iprange *r, const struct ipaddr *a)
{
	return a->family == r->family && a->v >= r->first && a->v <= r->last;
}

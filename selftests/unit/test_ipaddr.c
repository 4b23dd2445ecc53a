// SPDX-License-Identifier: Apache-2.0
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "agent/ipaddr.h"

static void test_addresses_round_trip(void **state)
{
	static const char *const good[] = { "172.16.11.5", "0.0.0.0", "255.255.255.255",
					    "fd16:11::1", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" };
	char buf[IPADDR_STRLEN];
	struct ipaddr a;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(ipaddr_parse(good[i], &a), 0);
		assert_string_equal(ipaddr_str(&a, buf), good[i]);
	}
	assert_int_equal(ipaddr_parse("172.16.11.1", &a), 0);
	assert_int_equal(a.family, AF_INET);
	assert_true(a.v == 0xac100b01);
	assert_int_equal(ipaddr_parse("fd16:11::1", &a), 0);
	assert_int_equal(a.family, AF_INET6);
	assert_true(a.v == (((u128)0xfd160011ULL << 96) | 1));
}

static void test_bad_addresses(void **state)
{
	static const char *const bad[] = { "172.16.11.300", "172.16.11", "1.2.3.4.5", "", "fd16:::1",
					   "gpu1", "172.16.11.1 ", "fd16::1/64" };
	struct ipaddr a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ipaddr_parse(bad[i], &a), -EINVAL);
	assert_int_equal(ipaddr_parse_family("fd16::1", AF_INET, &a), -EINVAL);
	assert_int_equal(ipaddr_parse_family("1.2.3.4", AF_INET6, &a), -EINVAL);
}

static void test_prefixes_and_edge_masks(void **state)
{
	struct ipprefix p;
	struct ipaddr a;

	assert_int_equal(ipprefix_parse("172.16.11.0/24", &p), 0);
	assert_int_equal(p.len, 24);
	assert_true(ipprefix_last(&p) == 0xac100bff);
	assert_int_equal(ipprefix_parse("172.16.11.4/31", &p), 0);
	assert_true(ipprefix_last(&p) == 0xac100b05);
	assert_int_equal(ipprefix_parse("172.16.11.4/32", &p), 0);
	assert_true(ipprefix_last(&p) == p.net.v);
	assert_int_equal(ipprefix_parse("0.0.0.0/0", &p), 0);
	assert_true(ipprefix_last(&p) == 0xffffffff);
	assert_int_equal(ipprefix_parse("::/0", &p), 0);
	assert_true(ipprefix_last(&p) == ~(u128)0);
	assert_int_equal(ipprefix_parse("fd16:11::/127", &p), 0);
	assert_true(ipprefix_last(&p) == p.net.v + 1);
	assert_int_equal(ipprefix_parse("fd16:11::7/128", &p), 0);
	assert_true(ipprefix_last(&p) == p.net.v);

	assert_int_equal(ipprefix_parse("fd16:11::/64", &p), 0);
	assert_int_equal(ipaddr_parse("fd16:11::ffff:1", &a), 0);
	assert_true(ipprefix_contains(&p, &a));
	assert_int_equal(ipaddr_parse("fd16:12::1", &a), 0);
	assert_false(ipprefix_contains(&p, &a));
	assert_int_equal(ipaddr_parse("172.16.11.1", &a), 0);
	assert_false(ipprefix_contains(&p, &a)); /* another family */

	/* Host bits set, lengths out of range, no length. */
	assert_int_equal(ipprefix_parse("172.16.11.5/24", &p), -EINVAL);
	assert_int_equal(ipprefix_parse("172.16.11.0/33", &p), -EINVAL);
	assert_int_equal(ipprefix_parse("fd16::/129", &p), -EINVAL);
	assert_int_equal(ipprefix_parse("172.16.11.0/", &p), -EINVAL);
	assert_int_equal(ipprefix_parse("172.16.11.0", &p), -EINVAL);
	assert_int_equal(ipprefix_parse("172.16.11.0/-1", &p), -EINVAL);
	assert_int_equal(ipprefix_parse("fd16::1/127", &p), -EINVAL);
}

static void test_ranges(void **state)
{
	struct iprange r;
	struct ipaddr a;

	assert_int_equal(iprange_parse("172.16.11.1-172.16.11.200", AF_INET, &r), 0);
	assert_true(r.last - r.first == 199);
	assert_int_equal(ipaddr_parse("172.16.11.200", &a), 0);
	assert_true(iprange_contains(&r, &a));
	assert_int_equal(ipaddr_parse("172.16.11.201", &a), 0);
	assert_false(iprange_contains(&r, &a));

	assert_int_equal(iprange_parse("172.16.11.7", 0, &r), 0);
	assert_true(r.first == r.last);
	assert_int_equal(iprange_parse("fd16:11::1-fd16:11::ff", AF_INET6, &r), 0);
	assert_true(r.last - r.first == 254);
	assert_int_equal(r.family, AF_INET6);

	assert_int_equal(iprange_parse("172.16.11.9-172.16.11.1", 0, &r), -ERANGE);
	assert_int_equal(iprange_parse("172.16.11.1-fd16::1", 0, &r), -EAFNOSUPPORT);
	assert_int_equal(iprange_parse("fd16::1", AF_INET, &r), -EAFNOSUPPORT);
	assert_int_equal(iprange_parse("172.16.11.1-", 0, &r), -EINVAL);
	assert_int_equal(iprange_parse("172.16.11.300", AF_INET, &r), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addresses_round_trip),
		cmocka_unit_test(test_bad_addresses),
		cmocka_unit_test(test_prefixes_and_edge_masks),
		cmocka_unit_test(test_ranges),
	};

	return cmocka_run_group_tests_name("ipaddr", tests, NULL, NULL);
}

// SPDX-License-Identifier: Apache-2.0
/* cni/result.c and cni/agent.c: results per CNI version, errors, agent codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "../../cni/agent.h"
#include "../../cni/cni.h"

static const struct cni_result dual_stack = {
	.ifname = "net1",
	.mac = "0a:1b:ac:10:0b:15",
	.sandbox = "/var/run/netns/pod",
	.mtu = 9000,
	.ips = { { .address = "172.16.11.21/24", .gateway = "172.16.11.254", .family = 4 },
		 { .address = "fd16:11::1:1/64", .gateway = "fd16:11::fe", .family = 6 } },
	.nips = 2,
	.routes = { { "172.16.0.0/16", "172.16.11.254" }, { "0.0.0.0/0", "172.16.11.254" } },
	.nroutes = 2,
};

static const char *field(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static void test_result_1_x_has_no_ip_version(void **state)
{
	static const char *const versions[] = { "1.0.0", "1.1.0" };

	for (size_t i = 0; i < 2; i++) {
		struct json_object *o = cni_result_json(versions[i], &dual_stack), *ifs, *ips, *ip,
				   *routes;

		assert_string_equal(field(o, "cniVersion"), versions[i]);
		assert_true(json_object_object_get_ex(o, "interfaces", &ifs));
		assert_int_equal(json_object_array_length(ifs), 1);
		assert_string_equal(field(json_object_array_get_idx(ifs, 0), "name"), "net1");
		assert_string_equal(field(json_object_array_get_idx(ifs, 0), "mac"),
				    "0a:1b:ac:10:0b:15");
		assert_string_equal(field(json_object_array_get_idx(ifs, 0), "sandbox"),
				    "/var/run/netns/pod");
		assert_string_equal(field(json_object_array_get_idx(ifs, 0), "mtu"), "9000");
		assert_true(json_object_object_get_ex(o, "ips", &ips));
		assert_int_equal(json_object_array_length(ips), 2);
		ip = json_object_array_get_idx(ips, 1);
		assert_null(field(ip, "version"));
		assert_string_equal(field(ip, "interface"), "0");
		assert_string_equal(field(ip, "address"), "fd16:11::1:1/64");
		assert_string_equal(field(ip, "gateway"), "fd16:11::fe");
		assert_true(json_object_object_get_ex(o, "routes", &routes));
		assert_int_equal(json_object_array_length(routes), 2);
		assert_string_equal(field(json_object_array_get_idx(routes, 1), "dst"), "0.0.0.0/0");
		json_object_put(o);
	}
}

static void test_result_0_x_has_ip_version(void **state)
{
	static const char *const versions[] = { "0.3.0", "0.3.1", "0.4.0" };

	for (size_t i = 0; i < 3; i++) {
		struct json_object *o = cni_result_json(versions[i], &dual_stack), *ips, *ifs;

		assert_string_equal(field(o, "cniVersion"), versions[i]);
		assert_true(json_object_object_get_ex(o, "ips", &ips));
		assert_string_equal(field(json_object_array_get_idx(ips, 0), "version"), "4");
		assert_string_equal(field(json_object_array_get_idx(ips, 1), "version"), "6");
		assert_true(json_object_object_get_ex(o, "interfaces", &ifs));
		/* "mtu" in interfaces arrived with 1.0.0. */
		assert_null(field(json_object_array_get_idx(ifs, 0), "mtu"));
		json_object_put(o);
	}
}

static void test_error_json(void **state)
{
	struct cni_error e;
	struct json_object *o;

	assert_int_equal(cni_fail(&e, RAILNET_ERR_POOL_EXHAUSTED, "IP pool exhausted", "pool %s",
				  "gpu1-net11"),
			 -101);
	o = cni_error_json("0.4.0", &e);
	assert_string_equal(field(o, "cniVersion"), "0.4.0");
	assert_string_equal(field(o, "code"), "101");
	assert_string_equal(field(o, "msg"), "IP pool exhausted");
	assert_string_equal(field(o, "details"), "pool gpu1-net11");
	json_object_put(o);

	cni_fail(&e, CNI_ERR_DECODE, "cannot decode", NULL);
	o = cni_error_json(NULL, &e);
	assert_string_equal(field(o, "cniVersion"), "1.1.0");
	assert_null(field(o, "details"));
	json_object_put(o);
}

static void test_agent_codes(void **state)
{
	assert_int_equal(agent_code_to_cni("pool_exhausted"), 101);
	assert_int_equal(agent_code_to_cni("unknown_pool"), 102);
	assert_int_equal(agent_code_to_cni("pool_not_allowed"), 103);
	assert_int_equal(agent_code_to_cni("busy"), 11);
	assert_int_equal(agent_code_to_cni("bad_request"), 7);
	assert_int_equal(agent_code_to_cni("not_found"), 3);
	assert_int_equal(agent_code_to_cni("unsupported_version"), 1);
	assert_int_equal(agent_code_to_cni("internal"), 106);
	assert_int_equal(agent_code_to_cni("something_new"), 106);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_result_1_x_has_no_ip_version),
		cmocka_unit_test(test_result_0_x_has_ip_version),
		cmocka_unit_test(test_error_json),
		cmocka_unit_test(test_agent_codes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

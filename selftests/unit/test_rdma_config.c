// SPDX-License-Identifier: Apache-2.0
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/rdma_config.h"
#include "agent/rdma_sysfs.h"

static int parse(const char *json, struct rdma_config *cfg, char *err, size_t len)
{
	struct json_object *o = json_tokener_parse(json);
	int ret;

	assert_non_null(o);
	ret = rdma_config_parse(o, cfg, err, len);
	json_object_put(o);
	return ret;
}

static void test_issue_example_parses_with_defaults(void **state)
{
	struct rdma_config cfg;
	char err[256] = "";

	assert_int_equal(parse("{\"periodicUpdateInterval\":300,\"configList\":["
			       "{\"resourcePrefix\":\"spidernet.io\",\"resourceName\":\"shared_cx5_gpu1\","
			       "\"rdmaHcaMax\":100,\"selectors\":{\"vendors\":[\"15b3\"],"
			       "\"deviceIDs\":[\"1017\"],\"drivers\":[\"mlx5_core\"],"
			       "\"ifNames\":[\"ens1f0np0\"],\"linkTypes\":[\"ether\"]}},"
			       "{\"resourceName\":\"legacy\",\"devices\":[\"ens2f0np0\"]}]}",
			       &cfg, err, sizeof(err)),
			 0);
	assert_true(cfg.enabled);
	assert_int_equal(cfg.update_interval_s, 300);
	assert_string_equal(cfg.sysfs_root, "/sys");
	assert_string_equal(cfg.dev_root, "/dev");
	assert_string_equal(cfg.plugin_dir, "/var/lib/kubelet/device-plugins");
	assert_string_equal(cfg.pod_resources_socket, "/var/lib/kubelet/pod-resources/kubelet.sock");
	assert_int_equal(cfg.pod_resources_interval_s, 5);
	assert_int_equal(cfg.nresources, 2);
	assert_string_equal(cfg.resources[0].prefix, "spidernet.io");
	assert_int_equal(cfg.resources[0].hca_max, 100);
	assert_true(rdma_strv_contains(&cfg.resources[0].sel.link_types, "ether"));
	/* deprecated "devices" become ifNames; the prefix defaults to "rdma" */
	assert_string_equal(cfg.resources[1].prefix, "rdma");
	assert_true(rdma_strv_contains(&cfg.resources[1].sel.if_names, "ens2f0np0"));
	rdma_config_free(&cfg);
}

static void test_absent_section_disables(void **state)
{
	struct rdma_config cfg;
	char err[64];

	assert_int_equal(rdma_config_parse(NULL, &cfg, err, sizeof(err)), 0);
	assert_false(cfg.enabled);
	assert_int_equal(cfg.update_interval_s, 60);
	rdma_config_free(&cfg);
}

static void test_errors_name_entry_and_field(void **state)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
		{ "{\"configList\":[]}", "rdma.configList: must be a non-empty array" },
		{ "{\"configList\":[{\"resourceName\":\"a-b\",\"devices\":[\"x\"]}]}",
		  "rdma.configList[0].resourceName: \"a-b\" contains invalid characters" },
		{ "{\"configList\":[{\"resourceName\":\"a\",\"devices\":[\"x\"]},"
		  "{\"resourceName\":\"a\",\"devices\":[\"y\"]}]}",
		  "rdma.configList[1].resourceName: \"a\" already exists" },
		{ "{\"configList\":[{\"resourceName\":\"a\",\"rdmaHcaMax\":-1,\"devices\":[\"x\"]}]}",
		  "rdma.configList[0].rdmaHcaMax: must be >= 0" },
		{ "{\"configList\":[{\"resourceName\":\"a\",\"rdmaHcaMax\":10001,\"devices\":[\"x\"]}]}",
		  "rdma.configList[0].rdmaHcaMax: 10001 is above the limit of 10000" },
		{ "{\"configList\":[{\"resourceName\":\"a\"}]}",
		  "rdma.configList[0]: neither \"selectors\" nor the deprecated \"devices\"" },
		{ "{\"configList\":[{\"resourceName\":\"a\",\"devices\":[\"x\"],"
		  "\"selectors\":{\"vendors\":[\"15b3\"]}}]}",
		  "rdma.configList[0].devices: cannot be combined with \"selectors\"" },
		{ "{\"configList\":[{\"resourceName\":\"a\",\"selectors\":{\"vendor\":[\"15b3\"]}}]}",
		  "rdma.configList[0].selectors: unknown field \"vendor\"" },
		{ "{\"configList\":[{\"resourceName\":\"a\",\"selectors\":{\"drivers\":[1]}}]}",
		  "rdma.configList[0].selectors.drivers[0]: must be a non-empty string" },
		{ "{\"periodicUpdateInterval\":\"60\",\"configList\":[]}",
		  "rdma.periodicUpdateInterval: must be an integer" },
		{ "{\"configList\":[{\"devices\":[\"x\"]}]}", "rdma.configList[0].resourceName: is required" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rdma_config cfg;
		char err[256] = "";

		assert_int_equal(parse(cases[i].json, &cfg, err, sizeof(err)), -EINVAL);
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].want);
		assert_int_equal(cfg.nresources, 0);
	}
}

static void test_pod_resources_socket_and_interval(void **state)
{
	static const char *const bad[][2] = {
		{ "\"podResourcesSocket\":\"kubelet.sock\"", "rdma.podResourcesSocket: \"kubelet.sock\" must be an absolute path" },
		{ "\"podResourcesSocket\":7", "rdma.podResourcesSocket: must be a string" },
		{ "\"podResourcesInterval\":0", "rdma.podResourcesInterval: must be 1 to 3600 seconds, not 0" },
		{ "\"podResourcesInterval\":3601", "rdma.podResourcesInterval: must be 1 to 3600" },
	};
	struct rdma_config cfg;
	char json[512], err[256];

	/* "" turns the PodResources API off */
	assert_int_equal(parse("{\"podResourcesSocket\":\"\",\"podResourcesInterval\":30,"
			       "\"configList\":[{\"resourceName\":\"a\",\"devices\":[\"x\"]}]}",
			       &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg.pod_resources_socket, "");
	assert_int_equal(cfg.pod_resources_interval_s, 30);
	rdma_config_free(&cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(json, sizeof(json),
			 "{%s,\"configList\":[{\"resourceName\":\"a\",\"devices\":[\"x\"]}]}",
			 bad[i][0]);
		assert_int_equal(parse(json, &cfg, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i][1]))
			fail_msg("%s: got \"%s\"", bad[i][0], err);
	}
}

static void test_selectors_or_within_and_across(void **state)
{
	struct rdma_nic nic = { .ifname = "ens1f0np0", .vendor = "15b3", .device_id = "1017",
				.driver = "mlx5_core", .link_type = "ether" };
	struct rdma_config cfg;
	char err[256];

	assert_int_equal(parse("{\"configList\":["
			       "{\"resourceName\":\"or\",\"selectors\":{\"vendors\":[\"8086\",\"15b3\"]}},"
			       "{\"resourceName\":\"and\",\"selectors\":{\"vendors\":[\"15b3\"],"
			       "\"linkTypes\":[\"infiniband\"]}},"
			       "{\"resourceName\":\"all\",\"selectors\":{\"vendors\":[\"15b3\"],"
			       "\"deviceIDs\":[\"1017\"],\"drivers\":[\"mlx5_core\"],"
			       "\"ifNames\":[\"ens1f0np0\"],\"linkTypes\":[\"ether\"]}},"
			       "{\"resourceName\":\"name\",\"devices\":[\"ens2f0np0\"]}]}",
			       &cfg, err, sizeof(err)),
			 0);
	assert_true(rdma_nic_matches(&nic, &cfg.resources[0].sel));
	assert_false(rdma_nic_matches(&nic, &cfg.resources[1].sel));
	assert_true(rdma_nic_matches(&nic, &cfg.resources[2].sel));
	assert_false(rdma_nic_matches(&nic, &cfg.resources[3].sel));
	rdma_config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_issue_example_parses_with_defaults),
		cmocka_unit_test(test_absent_section_disables),
		cmocka_unit_test(test_errors_name_entry_and_field),
		cmocka_unit_test(test_pod_resources_socket_and_interval),
		cmocka_unit_test(test_selectors_or_within_and_across),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

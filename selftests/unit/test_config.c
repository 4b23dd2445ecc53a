// SPDX-License-Identifier: Apache-2.0
/* railnetd's configuration: defaults, module sections kept, and every
 * invalid value rejected with the field's path and why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"

#define POOL(fields) "{\"pools\":[{\"name\":\"gpu1-net11\",\"subnet\":\"172.16.11.0/24\"," fields "}]}"
#define IPS "\"ips\":[\"172.16.11.1-172.16.11.200\"]"

static void test_valid_config_and_defaults(void **state)
{
	struct json_object *root = json_tokener_parse(
		"{\"nodeName\":\"worker1\",\"metrics\":{\"listen\":\"0.0.0.0:9711\"},"
		"\"store\":{\"type\":\"local\"},\"datapath\":{\"anything\":1},"
		"\"rdma\":{\"configList\":[{\"resourceName\":\"r\",\"devices\":[\"ens1f0np0\"]}]},"
		"\"pools\":[{\"name\":\"gpu1-net11\",\"subnet\":\"172.16.11.0/24\","
		"\"ips\":[\"172.16.11.1-172.16.11.200\",\"172.16.11.210\"],"
		"\"excludeIPs\":[\"172.16.11.100\"],\"gateway\":\"172.16.11.254\","
		"\"routes\":[{\"dst\":\"172.16.0.0/16\",\"gw\":\"172.16.11.254\"}],"
		"\"nodeName\":[],\"stateful\":false},"
		"{\"name\":\"gpu1-net11-v6\",\"subnet\":\"fd16:11::/64\",\"ips\":[\"fd16:11::1:1-fd16:11::1:ff\"]}],"
		"\"reservedIPs\":[\"172.16.11.5\",\"fd16:11::1:7\"]}");
	struct agent_config cfg;
	char err[512] = "";

	assert_non_null(root);
	if (agent_config_parse(root, &cfg, err, sizeof(err)))
		fail_msg("%s", err);
	json_object_put(root);
	assert_string_equal(cfg.node_name, "worker1");
	assert_string_equal(cfg.socket, "/run/railnet/railnetd.sock");
	assert_string_equal(cfg.state_dir, "/var/lib/railnet");
	assert_string_equal(cfg.bpffs, "/sys/fs/bpf/railnet");
	assert_string_equal(cfg.metrics_listen, "0.0.0.0:9711");
	assert_string_equal(cfg.store_type, "local");
	assert_int_equal(cfg.ipam.npools, 2);
	assert_int_equal(cfg.ipam.pools[0].nranges, 2);
	assert_int_equal(cfg.ipam.pools[0].nexcludes, 1);
	assert_true(cfg.ipam.pools[0].has_gateway);
	assert_int_equal(cfg.ipam.pools[1].subnet.net.family, AF_INET6);
	assert_int_equal(cfg.ipam.nreserved, 2);
	/* Module sections stay readable from the root. */
	assert_true(json_object_object_get_ex(cfg.root, "datapath", NULL));
	agent_config_free(&cfg);
}

static void test_node_name_defaults_to_env(void **state)
{
	struct json_object *root = json_tokener_parse("{}");
	struct agent_config cfg;
	char err[512];

	setenv("NODE_NAME", "from-env", 1);
	assert_int_equal(agent_config_parse(root, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.node_name, "from-env");
	unsetenv("NODE_NAME");
	agent_config_free(&cfg);
	json_object_put(root);
}

static const struct {
	const char *json;
	const char *error; /* a prefix of the message: the path, then why */
} invalid[] = {
	{ "[]", "(root): must be a JSON object" },
	{ "{\"nodename\":\"x\"}", "nodename: unknown field" },
	{ "{\"nodeName\":5}", "nodeName: must be a string" },

	{ "{\"store\":{\"type\":\"etcd3\"}}", "store.type: \"etcd3\" is not a store" },
	{ "{\"metrics\":{\"listen\":\"9711\"}}", "metrics.listen: \"9711\" is not host:port" },
	{ "{\"reconcile\":{\"graceMs\":-1}}", "reconcile.graceMs: must be a non-negative integer" },
	{ "{\"store\":{\"compactRecords\":\"many\"}}", "store.compactRecords: must be a non-negative integer (records)" },
	{ "{\"pools\":{}}", "pools: must be an array" },
	{ "{\"pools\":[{\"subnet\":\"172.16.11.0/24\"," IPS "}]}", "pools[0].name: is required" },
	{ "{\"pools\":[{\"name\":\"GPU_1\",\"subnet\":\"172.16.11.0/24\"," IPS "}]}",
	  "pools[0].name: \"GPU_1\" must be a DNS-1123 name" },
	{ POOL("\"ipz\":[]"), "pools[0].ipz: unknown field" },
	{ "{\"pools\":[{\"name\":\"p\"," IPS "}]}", "pools[0].subnet: is required" },
	{ "{\"pools\":[{\"name\":\"p\",\"subnet\":\"172.16.11.5/24\"," IPS "}]}",
	  "pools[0].subnet: \"172.16.11.5/24\" is not a CIDR prefix" },
	{ POOL("\"ips\":[]"), "pools[0].ips: is required" },
	{ POOL("\"ips\":[\"172.16.11.1\",\"172.16.11.300\"]"),
	  "pools[0].ips[1]: \"172.16.11.300\" is not an IPv4 address" },
	{ POOL("\"ips\":[\"fd16::1\"]"), "pools[0].ips[0]: \"fd16::1\" is not an IPv4 address" },
	{ POOL("\"ips\":[\"172.16.11.9-172.16.11.1\"]"),
	  "pools[0].ips[0]: \"172.16.11.9-172.16.11.1\": the first address is above the last" },
	{ POOL("\"ips\":[\"172.16.12.1-172.16.12.9\"]"),
	  "pools[0].ips[0]: \"172.16.12.1-172.16.12.9\" is outside subnet" },
	{ POOL(IPS ",\"excludeIPs\":[7]"), "pools[0].excludeIPs[0]: must be a string" },
	{ POOL(IPS ",\"gateway\":\"172.16.12.254\""),
	  "pools[0].gateway: \"172.16.12.254\" is not an address in subnet" },
	{ POOL(IPS ",\"routes\":[{\"dst\":\"172.16.0.0/12\",\"gw\":\"172.16.11.254\"},{\"gw\":\"172.16.11.254\"}]"),
	  "pools[0].routes[1].dst: is required" },
	{ POOL(IPS ",\"routes\":[{\"dst\":\"fd16::/16\"}]"),
	  "pools[0].routes[0].dst: \"fd16::/16\" is not of the pool's family" },
	{ POOL(IPS ",\"routes\":[{\"dst\":\"172.16.0.0/16\",\"gw\":\"10.0.0.1\"}]"),
	  "pools[0].routes[0].gw: \"10.0.0.1\" is not an address in the pool's subnet" },
	{ POOL(IPS ",\"nodeName\":[\"\"]"), "pools[0].nodeName[0]: must be a node name" },
	{ POOL(IPS ",\"stateful\":\"yes\""), "pools[0].stateful: must be true or false" },
	{ "{\"pools\":[{\"name\":\"p\",\"subnet\":\"10.0.0.0/24\",\"ips\":[\"10.0.0.1\"]},"
	  "{\"name\":\"p\",\"subnet\":\"10.0.1.0/24\",\"ips\":[\"10.0.1.1\"]}]}",
	  "pools[1].name: \"p\" is also the name of pools[0]" },
	{ "{\"reservedIPs\":[\"10.0.0.1-10.0.0.300\"]}", "reservedIPs[0]: \"10.0.0.1-10.0.0.300\"" },

	/* Empty where a name or a path is meant. */
	{ "{\"nodeName\":\"\"}", "nodeName: must not be empty" },
	{ "{\"socket\":\"\"}", "socket: must not be empty" },
	{ "{\"stateDir\":\"\"}", "stateDir: must not be empty" },
	/* A typo inside a section is as wrong as one at the top. */
	{ "{\"store\":{\"typ\":\"etcd\"}}", "store.typ: unknown field (known: type, compactRecords)" },
	{ "{\"metrics\":{\"listen\":\":9711\",\"lisen\":\":1\"}}", "metrics.lisen: unknown field" },
	{ "{\"reconcile\":{\"intervalMS\":1000}}", "reconcile.intervalMS: unknown field" },
	{ POOL(IPS ",\"routes\":[{\"dst\":\"172.16.0.0/16\",\"gww\":\"172.16.11.254\"}]"),
	  "pools[0].routes[0].gww: unknown field (known: dst, gw)" },
	/* Hosts that are not addresses fail only at start, unnamed. */
	{ "{\"metrics\":{\"listen\":\"nohost:9711\"}}",
	  "metrics.listen: \"nohost:9711\": the host is not an IPv4 address" },
	{ "{\"metrics\":{\"listen\":\"[172.16.0.1]:9711\"}}", "metrics.listen: \"[172.16.0.1]:9711\"" },
	{ "{\"metrics\":{\"listen\":\"0.0.0.0:0\"}}", "metrics.listen: \"0.0.0.0:0\" is not host:port" },
	{ "{\"metrics\":{\"listen\":\"0.0.0.0:65536\"}}", "metrics.listen: \"0.0.0.0:65536\" is not host:port" },
	/* An exclusion outside the subnet excludes nothing. */
	{ POOL(IPS ",\"excludeIPs\":[\"172.16.11.100\",\"172.16.12.100\"]"),
	  "pools[0].excludeIPs[1]: \"172.16.12.100\" is outside subnet" },
	/* sun_path holds 107 bytes and a NUL. */
	{ "{\"socket\":\"/run/railnet/"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\"}",
	  "socket: \"/run/railnet/aaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is 124 bytes: a unix socket path holds at most 107" },
	/* Past what the agent's timers hold (poll() takes an int). */
	{ "{\"reconcile\":{\"intervalMs\":3000000000}}",
	  "reconcile.intervalMs: 3000000000 is over the limit of 86400000 milliseconds" },
	{ "{\"reconcile\":{\"intervalMs\":3e9}}", "reconcile.intervalMs: must be a non-negative integer" },
	{ "{\"reconcile\":{\"graceMs\":99999999999999999999}}", "reconcile.graceMs: " },
	{ POOL(IPS ",\"stateful\":true,\"statefulHoldMs\":-5"),
	  "pools[0].statefulHoldMs: must be a non-negative integer (milliseconds)" },
};

/* What the checks above must not catch. */
static const char *const valid[] = {
	"{\"metrics\":{\"listen\":\":9711\"}}",
	"{\"metrics\":{\"listen\":\"localhost:9711\"}}",
	"{\"metrics\":{\"listen\":\"[::]:9711\"}}",
	"{\"metrics\":{\"listen\":\"[fd00::1]:1\"}}",
	"{\"reconcile\":{\"intervalMs\":0,\"graceMs\":0}}",
	"{\"reconcile\":{\"intervalMs\":86400000}}",
	"{\"socket\":\"/run/railnet/"
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\"}", /* 107 bytes */
	POOL(IPS ",\"excludeIPs\":[\"172.16.11.0-172.16.11.255\"],\"stateful\":true,\"statefulHoldMs\":0"),
};

static void test_valid_edge_values(void **state)
{
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		struct json_object *root = json_tokener_parse(valid[i]);
		struct agent_config cfg;
		char err[512] = "";

		assert_non_null(root);
		if (agent_config_parse(root, &cfg, err, sizeof(err)))
			fail_msg("refused: %s: %s", valid[i], err);
		json_object_put(root);
		agent_config_free(&cfg);
	}
}

static void test_stateful_hold_default(void **state)
{
	struct json_object *root = json_tokener_parse(POOL(IPS ",\"stateful\":true"));
	struct agent_config cfg;
	char err[512] = "";

	assert_int_equal(agent_config_parse(root, &cfg, err, sizeof(err)), 0);
	json_object_put(root);
	assert_int_equal(cfg.ipam.pools[0].stateful_hold_ms, 600000);
	agent_config_free(&cfg);
}

static void test_invalid_values_name_their_field(void **state)
{
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		struct json_object *root = json_tokener_parse(invalid[i].json);
		struct agent_config cfg;
		char err[512] = "";
		int ret;

		assert_non_null(root);
		ret = agent_config_parse(root, &cfg, err, sizeof(err));
		json_object_put(root);
		if (ret == 0)
			fail_msg("accepted: %s", invalid[i].json);
		if (strncmp(err, invalid[i].error, strlen(invalid[i].error)))
			fail_msg("for %s\n  expected: %s...\n  got:      %s", invalid[i].json,
				 invalid[i].error, err);
	}
}

static void test_load_reports_json_syntax(void **state)
{
	char path[] = "/tmp/railnet-test-config-XXXXXX";
	struct agent_config cfg;
	char err[512] = "";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"pools\": [", 11), 11);
	close(fd);
	assert_int_not_equal(agent_config_load(path, &cfg, err, sizeof(err)), 0);
	assert_non_null(strstr(err, path));
	unlink(path);
	assert_int_not_equal(agent_config_load("/nonexistent/railnetd.json", &cfg, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "/nonexistent/railnetd.json"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_config_and_defaults),
		cmocka_unit_test(test_node_name_defaults_to_env),
		cmocka_unit_test(test_invalid_values_name_their_field),
		cmocka_unit_test(test_valid_edge_values),
		cmocka_unit_test(test_stateful_hold_default),
		cmocka_unit_test(test_load_reports_json_syntax),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}

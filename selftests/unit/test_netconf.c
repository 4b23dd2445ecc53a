// SPDX-License-Identifier: Apache-2.0
/* cni/netconf.c: network configuration, version negotiation, environment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cni/cni.h"

#define GOOD_CONF                                                                        \
	"{\"cniVersion\":\"1.0.0\",\"name\":\"gpu1-macvlan\",\"type\":\"railnet\","      \
	"\"master\":\"ens1f0np0\",\"ippools\":{\"ipv4\":[\"gpu1-net11\"]}"

/* Parses @text; returns netconf_parse's result, with @e filled. */
static int parse(const char *text, struct netconf *nc, struct cni_error *e)
{
	struct json_object *root = json_tokener_parse(text);
	int err;

	assert_non_null(root);
	memset(e, 0, sizeof(*e));
	err = netconf_parse(root, nc, e);
	json_object_put(root);
	return err;
}

/* Expects @text to be rejected with @code, the details naming @field. */
static void expect_bad(const char *text, int code, const char *field)
{
	struct netconf nc;
	struct cni_error e;
	int err = parse(text, &nc, &e);

	if (err != -code || !strstr(e.details, field))
		fail_msg("%s: got %d (%s: %s), want %d naming %s", text, err, e.msg, e.details,
			 -code, field);
	netconf_free(&nc);
}

static void test_defaults(void **state)
{
	struct netconf nc;
	struct cni_error e;

	assert_int_equal(parse(GOOD_CONF "}", &nc, &e), 0);
	assert_string_equal(nc.cni_version, "1.0.0");
	assert_string_equal(nc.name, "gpu1-macvlan");
	assert_string_equal(nc.master, "ens1f0np0");
	assert_int_equal(nc.mode, MODE_BRIDGE);
	assert_int_equal(nc.mtu, 0);
	assert_true(nc.detect_gateway);
	assert_false(nc.detect_conflict);
	assert_int_equal(nc.conflict_window_ms, 100);
	assert_int_equal(nc.route_metric, -1);
	assert_string_equal(nc.socket, "/run/railnet/railnetd.sock");
	assert_int_equal(nc.npools_v4, 1);
	assert_string_equal(nc.pools_v4[0], "gpu1-net11");
	assert_int_equal(nc.npools_v6, 0);
	assert_false(nc.has_mac_prefix);
	assert_false(nc.has_runtime_mac);
	assert_null(nc.prev_result);
	netconf_free(&nc);
}

static void test_every_field(void **state)
{
	struct netconf nc;
	struct cni_error e;

	assert_int_equal(
		parse(GOOD_CONF ",\"mode\":\"vepa\",\"mtu\":9000,\"txQueueLen\":2000,"
				"\"ippools\":{\"ipv4\":[\"a\",\"b\"],\"ipv6\":[\"c\"]},"
				"\"detectGateway\":false,\"detectIPConflict\":true,"
				"\"ipConflictWindowMs\":50,\"routeMetric\":300,"
				"\"podMACPrefix\":\"0a:1b\",\"rdmaResourceName\":\"spidernet.io/x\","
				"\"socket\":\"/tmp/s.sock\",\"someoneElses\":{\"x\":1},"
				"\"prevResult\":{\"ips\":[]}}",
		      &nc, &e),
		0);
	assert_int_equal(nc.mode, MODE_VEPA);
	assert_int_equal(nc.mtu, 9000);
	assert_int_equal(nc.txqueuelen, 2000);
	assert_int_equal(nc.npools_v4, 2);
	assert_string_equal(nc.pools_v4[1], "b");
	assert_int_equal(nc.npools_v6, 1);
	assert_string_equal(nc.pools_v6[0], "c");
	assert_false(nc.detect_gateway);
	assert_true(nc.detect_conflict);
	assert_int_equal(nc.conflict_window_ms, 50);
	assert_int_equal(nc.route_metric, 300);
	assert_true(nc.has_mac_prefix);
	assert_int_equal(nc.mac_prefix[0], 0x0a);
	assert_int_equal(nc.mac_prefix[1], 0x1b);
	assert_string_equal(nc.rdma_resource, "spidernet.io/x");
	assert_string_equal(nc.socket, "/tmp/s.sock");
	assert_non_null(nc.prev_result);
	netconf_free(&nc);
}

static void test_modes(void **state)
{
	static const struct {
		const char *name;
		enum macvlan_mode_cfg mode;
	} modes[] = { { "bridge", MODE_BRIDGE },
		      { "private", MODE_PRIVATE },
		      { "vepa", MODE_VEPA },
		      { "passthru", MODE_PASSTHRU } };

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		char text[512];
		struct netconf nc;
		struct cni_error e;

		snprintf(text, sizeof(text), GOOD_CONF ",\"mode\":\"%s\"}", modes[i].name);
		assert_int_equal(parse(text, &nc, &e), 0);
		assert_int_equal(nc.mode, modes[i].mode);
		netconf_free(&nc);
	}
}

static void test_runtime_mac_needs_capability(void **state)
{
	struct netconf nc;
	struct cni_error e;

	assert_int_equal(parse(GOOD_CONF ",\"runtimeConfig\":{\"mac\":\"02:00:00:00:00:01\"}}", &nc,
			       &e),
			 0);
	assert_false(nc.has_runtime_mac);
	netconf_free(&nc);

	assert_int_equal(parse(GOOD_CONF ",\"capabilities\":{\"mac\":true},"
					 "\"runtimeConfig\":{\"mac\":\"02:00:00:00:00:01\"}}",
			       &nc, &e),
			 0);
	assert_true(nc.has_runtime_mac);
	assert_int_equal(nc.runtime_mac[0], 0x02);
	assert_int_equal(nc.runtime_mac[5], 0x01);
	netconf_free(&nc);
}

static void test_runtime_ips_need_capability(void **state)
{
	struct netconf nc;
	struct cni_error e;

	/* Without the capability, runtimeConfig is the runtime's business. */
	assert_int_equal(parse(GOOD_CONF ",\"runtimeConfig\":{\"ips\":[\"172.16.11.9/24\"]}}", &nc, &e),
			 0);
	netconf_free(&nc);
	assert_int_equal(parse(GOOD_CONF ",\"capabilities\":{\"ips\":true},\"runtimeConfig\":{\"ips\":[]}}",
			       &nc, &e),
			 0);
	netconf_free(&nc);
}

static void test_bad_fields_are_named(void **state)
{
	static const struct {
		const char *text;
		int code;
		const char *field;
	} cases[] = {
		{ "{\"name\":\"n\",\"master\":\"m\",\"ippools\":{\"ipv4\":[\"p\"]}}", 7, "cniVersion" },
		{ "{\"cniVersion\":1,\"name\":\"n\"}", 7, "cniVersion" },
		{ "{\"cniVersion\":\"0.2.0\",\"name\":\"n\"}", 1, "0.2.0" },
		{ "{\"cniVersion\":\"1.0.0\",\"master\":\"m\",\"ippools\":{\"ipv4\":[\"p\"]}}", 7,
		  "name" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"ippools\":{\"ipv4\":[\"p\"]}}", 7,
		  "master" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"master\":\"m\"}", 7, "ippools" },
		{ GOOD_CONF ",\"master\":\"a-name-far-too-long\"}", 7, "master" },
		{ GOOD_CONF ",\"mode\":\"l2\"}", 7, "mode" },
		{ GOOD_CONF ",\"mode\":3}", 7, "mode" },
		{ GOOD_CONF ",\"mtu\":\"9000\"}", 7, "mtu" },
		{ GOOD_CONF ",\"mtu\":-1}", 7, "mtu" },
		{ GOOD_CONF ",\"mtu\":70000}", 7, "mtu" },
		{ GOOD_CONF ",\"mtu\":67}", 7, "mtu" },
		{ GOOD_CONF ",\"txQueueLen\":true}", 7, "txQueueLen" },
		{ GOOD_CONF ",\"detectGateway\":\"yes\"}", 7, "detectGateway" },
		{ GOOD_CONF ",\"detectIPConflict\":1}", 7, "detectIPConflict" },
		{ GOOD_CONF ",\"ipConflictWindowMs\":0}", 7, "ipConflictWindowMs" },
		{ GOOD_CONF ",\"routeMetric\":-5}", 7, "routeMetric" },
		{ GOOD_CONF ",\"podMACPrefix\":\"0a1b\"}", 7, "podMACPrefix" },
		{ GOOD_CONF ",\"podMACPrefix\":\"01:00\"}", 7, "podMACPrefix" },
		{ GOOD_CONF ",\"podMACPrefix\":\"zz:00\"}", 7, "podMACPrefix" },
		{ GOOD_CONF ",\"socket\":[]}", 7, "socket" },
		{ GOOD_CONF ",\"ippools\":[\"p\"]}", 7, "ippools" },
		{ GOOD_CONF ",\"ippools\":{\"ipv4\":\"p\"}}", 7, "ippools.ipv4" },
		{ GOOD_CONF ",\"ippools\":{\"ipv6\":[3]}}", 7, "ippools.ipv6" },
		{ GOOD_CONF ",\"ippools\":{\"ipv4\":[],\"ipv6\":[]}}", 7, "ippools" },
		{ GOOD_CONF ",\"capabilities\":{\"mac\":true},\"runtimeConfig\":{\"mac\":\"x\"}}", 7,
		  "runtimeConfig.mac" },
		{ GOOD_CONF ",\"prevResult\":[]}", 7, "prevResult" },
		{ GOOD_CONF ",\"cni.dev/valid-attachments\":{}}", 7, "cni.dev/valid-attachments" },
		{ GOOD_CONF ",\"cni.dev/attachments\":\"x\"}", 7, "cni.dev/attachments" },
		{ GOOD_CONF ",\"runtimeConfig\":[]}", 7, "runtimeConfig" },
		{ GOOD_CONF ",\"capabilities\":true}", 7, "capabilities" },
		{ GOOD_CONF ",\"capabilities\":{\"ips\":true},\"runtimeConfig\":{\"ips\":[\"172.16.11.9/24\"]}}",
		  2, "runtimeConfig.ips" },
		{ GOOD_CONF ",\"capabilities\":{\"ips\":true},\"runtimeConfig\":{\"ips\":\"172.16.11.9/24\"}}",
		  7, "runtimeConfig.ips" },
		{ GOOD_CONF ",\"capabilities\":{\"ips\":true},\"runtimeConfig\":{\"ips\":{}}}", 7,
		  "runtimeConfig.ips" },
		{ GOOD_CONF ",\"prevResult\":{\"ips\":\"x\"}}", 7, "prevResult.ips" },
		{ GOOD_CONF ",\"prevResult\":{\"routes\":{}}}", 7, "prevResult.routes" },
		{ GOOD_CONF ",\"prevResult\":{\"interfaces\":3}}", 7, "prevResult.interfaces" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_bad(cases[i].text, cases[i].code, cases[i].field);
}

static void test_not_an_object_is_a_decode_error(void **state)
{
	struct netconf nc;
	struct cni_error e;

	assert_int_equal(parse("[1,2]", &nc, &e), -CNI_ERR_DECODE);
	netconf_free(&nc);
}

static void test_versions(void **state)
{
	static const char *const good[] = { "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0" };
	static const char *const bad[] = { "0.1.0", "0.2.0", "1.2.0", "2.0.0", "", "1.0" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(cni_version_supported(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(cni_version_supported(bad[i]));
	assert_true(cni_version_cmp("0.4.0", "1.0.0") < 0);
	assert_true(cni_version_cmp("0.3.1", "0.3.0") > 0);
	assert_true(cni_version_cmp("1.1.0", "1.1.0") == 0);
	assert_true(cni_version_cmp("0.10.0", "0.9.0") > 0);
}

static void set_env(const char *command, const char *cid, const char *netns, const char *ifname,
		    const char *args)
{
	setenv("CNI_COMMAND", command, 1);
	cid ? setenv("CNI_CONTAINERID", cid, 1) : unsetenv("CNI_CONTAINERID");
	netns ? setenv("CNI_NETNS", netns, 1) : unsetenv("CNI_NETNS");
	ifname ? setenv("CNI_IFNAME", ifname, 1) : unsetenv("CNI_IFNAME");
	args ? setenv("CNI_ARGS", args, 1) : unsetenv("CNI_ARGS");
}

static void test_env(void **state)
{
	struct cni_env env;
	struct cni_error e;

	set_env("ADD", "c1", "/var/run/netns/p", "net1",
		"IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;K8S_POD_UID=u-1;X=y");
	assert_int_equal(cni_env_parse("ADD", &env, &e), 0);
	assert_string_equal(env.pod_namespace, "ns");
	assert_string_equal(env.pod_name, "pod");
	assert_string_equal(env.pod_uid, "u-1");
	assert_string_equal(env.ifname, "net1");

	set_env("ADD", "c1", "/var/run/netns/p", "net1", "X=y");
	assert_int_equal(cni_env_parse("ADD", &env, &e), -CNI_ERR_INVALID_ENV);
	assert_non_null(strstr(e.details, "X"));
	set_env("ADD", "c1", "/var/run/netns/p", "net1", "novalue");
	assert_int_equal(cni_env_parse("ADD", &env, &e), -CNI_ERR_INVALID_ENV);

	set_env("ADD", NULL, "/var/run/netns/p", "net1", NULL);
	assert_int_equal(cni_env_parse("ADD", &env, &e), -CNI_ERR_INVALID_ENV);
	assert_non_null(strstr(e.details, "CNI_CONTAINERID"));
	set_env("ADD", "-c1", "/var/run/netns/p", "net1", NULL);
	assert_int_equal(cni_env_parse("ADD", &env, &e), -CNI_ERR_INVALID_ENV);
	assert_non_null(strstr(e.details, "CNI_CONTAINERID"));
	set_env("ADD", "c1/../x", "/var/run/netns/p", "net1", NULL);
	assert_int_equal(cni_env_parse("ADD", &env, &e), -CNI_ERR_INVALID_ENV);
	set_env("ADD", "0f_a.b-C", "/var/run/netns/p", "net1", NULL);
	assert_int_equal(cni_env_parse("ADD", &env, &e), 0);
	set_env("ADD", "c1", NULL, "net1", NULL);
	assert_int_equal(cni_env_parse("ADD", &env, &e), -CNI_ERR_INVALID_ENV);
	assert_non_null(strstr(e.details, "CNI_NETNS"));
	set_env("ADD", "c1", "/p", "a-very-long-name", NULL);
	assert_int_equal(cni_env_parse("ADD", &env, &e), -CNI_ERR_INVALID_ENV);
	assert_non_null(strstr(e.details, "CNI_IFNAME"));
	set_env("ADD", "c1", "/p", "net/1", NULL);
	assert_int_equal(cni_env_parse("ADD", &env, &e), -CNI_ERR_INVALID_ENV);
	set_env("ADD", "c1", "/p", NULL, NULL);
	assert_int_equal(cni_env_parse("ADD", &env, &e), -CNI_ERR_INVALID_ENV);

	/* DEL needs no netns (it may be gone); STATUS and GC need no container. */
	set_env("DEL", "c1", NULL, "net1", NULL);
	assert_int_equal(cni_env_parse("DEL", &env, &e), 0);
	set_env("GC", NULL, NULL, NULL, NULL);
	assert_int_equal(cni_env_parse("GC", &env, &e), 0);
	assert_int_equal(cni_env_parse("STATUS", &env, &e), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_field),
		cmocka_unit_test(test_modes),
		cmocka_unit_test(test_runtime_mac_needs_capability),
		cmocka_unit_test(test_runtime_ips_need_capability),
		cmocka_unit_test(test_bad_fields_are_named),
		cmocka_unit_test(test_not_an_object_is_a_decode_error),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

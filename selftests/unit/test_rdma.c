// SPDX-License-Identifier: Apache-2.0
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/metrics.h"
#include "agent/rdma.h"

static char root[64];

/* The standard tree plus a two-port HCA shared by two netdevs the way
 * switchdev representors share one (the same function, both dev_port 0:
 * only the GID table says which port is whose). */
static int make_tree(void **state)
{
	char cmd[1024];

	snprintf(root, sizeof(root), "/tmp/railnet-rdma-mod-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	snprintf(cmd, sizeof(cmd),
		 "bash -ec '. selftests/lib/fake_rdma.sh; fake_rdma_standard %s; mkdir -p %s/dp; "
		 "fake_rdma_nic %s ens4f0np0 0000:d8:00.0 15b3 101d mlx5_core 1 0; "
		 "fake_rdma_nic %s pf0vf0 0000:d8:00.0 15b3 101d mlx5_core 1 0; "
		 "fake_rdma_hca %s 0000:d8:00.0 mlx5_4 2 Ethernet 4; "
		 "fake_rdma_gid %s mlx5_4 2 0 fe80:0000:0000:0000:0000:00ff:fe00:0002 \"IB/RoCE v1\" "
		 "pf0vf0; fake_rdma_counter %s mlx5_4 2 counters port_xmit_data 42'",
		 root, root, root, root, root, root, root);
	return system(cmd) ? -1 : 0;
}

static int remove_tree(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd) ? -1 : 0;
}

static struct rdma *start(int (*netns_mode)(bool *shared))
{
	struct rdma_options opts = { .netns_mode = netns_mode, .gid_wait_ms = 1 };
	struct rdma_config cfg;
	struct json_object *section;
	struct rdma *r = NULL;
	char json[1024], err[256];

	snprintf(json, sizeof(json),
		 "{\"periodicUpdateInterval\":0,\"sysfsRoot\":\"%s/sys\",\"devRoot\":\"%s/dev\","
		 "\"devicePluginDir\":\"%s/dp\",\"podResourcesSocket\":\"%s/no-kubelet.sock\","
		 "\"configList\":[{\"resourceName\":\"roce\","
		 "\"rdmaHcaMax\":2,\"selectors\":{\"linkTypes\":[\"ether\"]}}]}",
		 root, root, root, root);
	section = json_tokener_parse(json);
	assert_int_equal(rdma_config_parse(section, &cfg, err, sizeof(err)), 0);
	json_object_put(section);
	assert_int_equal(rdma_start(&cfg, &opts, &r), 0);
	return r;
}

static const char *netns_mode_of(struct rdma *r, char *buf, size_t len)
{
	struct json_object *st = rdma_status_json(r);

	snprintf(buf, len, "%s", json_object_get_string(json_object_object_get(st, "netnsMode")));
	json_object_put(st);
	return buf;
}

static int mode_exclusive(bool *shared)
{
	*shared = false;
	return 0;
}

static int mode_shared(bool *shared)
{
	*shared = true;
	return 0;
}

static int mode_absent(bool *shared)
{
	return -EPROTONOSUPPORT;
}

static void test_netns_mode_is_reported(void **state)
{
	struct { int (*fn)(bool *); const char *want; } cases[] = {
		{ mode_shared, "shared" },
		{ mode_exclusive, "exclusive" },
		{ mode_absent, "RDMA subsystem not present" },
	};
	char buf[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rdma *r = start(cases[i].fn);

		assert_string_equal(netns_mode_of(r, buf, sizeof(buf)), cases[i].want);
		rdma_stop(r);
	}
}

static void test_attach_checks_master_and_resource(void **state)
{
	struct rdma *r = start(mode_shared);
	struct rdma_attach_req req = { .network = "rail1", .container_id = "c1", .ifname = "net1",
				       .master = "ens1f0np0", .resource = "rdma/roce",
				       .addrs = { "172.16.11.9/24" }, .naddrs = 1 };
	struct json_object *res = json_object_new_object();
	bool not_found;
	char err[256];

	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(res, "device")), "mlx5_0");
	assert_null(json_object_object_get(res, "gidIndex"));

	req.master = "ib0"; /* its HCA is not selected by linkTypes ether */
	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "mlx5_1 (behind master ib0) is not selected by resource rdma/roce"));
	req.master = "eno1";
	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), -EINVAL);
	assert_true(not_found);
	req.master = "ens1f0np0";
	req.resource = "nope";
	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "no RDMA resource nope is configured");
	req.resource = NULL;
	req.addrs[0] = "not-an-ip";
	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), -EINVAL);
	assert_true(rdma_detach(r, "rail1", "c1", "net1"));
	assert_false(rdma_detach(r, "rail1", "c1", "net1"));
	json_object_put(res);
	rdma_stop(r);
}

static struct json_object *resource_status(struct json_object *st, const char *name)
{
	struct json_object *list = json_object_object_get(st, "resources");

	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *res = json_object_array_get_idx(list, i);

		if (!strcmp(json_object_get_string(json_object_object_get(res, "name")), name))
			return res;
	}
	return NULL;
}

static long long status_int(struct rdma *r, const char *resource, const char *field)
{
	struct json_object *st = rdma_status_json(r);
	long long v = json_object_get_int64(json_object_object_get(resource_status(st, resource),
								    field));

	json_object_put(st);
	return v;
}

static char *render(struct rdma *r)
{
	struct metrics *m;
	char *body;
	size_t len;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(rdma_metrics_register(r, m), 0);
	assert_int_equal(metrics_render(m, &body, &len), 0);
	metrics_stop(m);
	return body;
}

/* Each port carries its own netdev's label; port 2 of mlx5_4 is pf0vf0's,
 * not the function's first netdev's. */
static void test_port_metrics_name_the_ports_netdev(void **state)
{
	struct rdma *r = start(mode_shared);
	char *body = render(r);

	assert_non_null(strstr(body, "railnet_rdma_port_xmit_data_total{device=\"mlx5_4\",port=\"1\","
				     "netdev=\"ens4f0np0\"} 0\n"));
	assert_non_null(strstr(body, "railnet_rdma_port_xmit_data_total{device=\"mlx5_4\",port=\"2\","
				     "netdev=\"pf0vf0\"} 42\n"));
	assert_non_null(strstr(body, "railnet_rdma_port_state{device=\"mlx5_4\",port=\"2\","
				     "netdev=\"pf0vf0\",state=\"ACTIVE\"} 4\n"));
	/* the standard mlx5_0 has a netdev on port 1 only */
	assert_non_null(strstr(body, "railnet_rdma_port_xmit_data_total{device=\"mlx5_0\",port=\"2\","
				     "netdev=\"\"} 0\n"));
	free(body);
	rdma_stop(r);
}

static void test_attach_uses_the_port_of_the_master(void **state)
{
	struct rdma *r = start(mode_shared);
	struct rdma_attach_req req = { .network = "rail4", .container_id = "c4", .ifname = "net1",
				       .master = "pf0vf0", .resource = "roce" };
	struct json_object *res = json_object_new_object();
	bool not_found;
	char err[256];

	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(res, "device")), "mlx5_4");
	assert_int_equal(json_object_get_int(json_object_object_get(res, "port")), 2);
	req.master = "ens4f0np0";
	req.ifname = "net2";
	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), 0);
	assert_int_equal(json_object_get_int(json_object_object_get(res, "port")), 1);
	json_object_put(res);
	rdma_stop(r);
}

static volatile int netns_shared_now = 1;

static int mode_switchable(bool *shared)
{
	*shared = netns_shared_now;
	return 0;
}

/* `rdma system set netns exclusive` after start: seen on the next rescan
 * (here the one an attach naming an unknown master runs). */
static void test_netns_mode_is_rechecked(void **state)
{
	struct rdma_attach_req req = { .network = "rail9", .container_id = "c9", .ifname = "net1",
				       .master = "ens9f0np0" };
	struct json_object *res = json_object_new_object(), *st;
	struct rdma *r;
	bool not_found;
	char err[256], buf[128], *body;

	netns_shared_now = 1;
	r = start(mode_switchable);
	assert_string_equal(netns_mode_of(r, buf, sizeof(buf)), "shared");
	netns_shared_now = 0;
	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), -EINVAL);
	assert_true(not_found);
	assert_string_equal(netns_mode_of(r, buf, sizeof(buf)), "exclusive");
	st = rdma_status_json(r);
	assert_false(json_object_get_boolean(json_object_object_get(st, "netnsShared")));
	json_object_put(st);
	body = render(r);
	assert_non_null(strstr(body, "railnet_rdma_netns_shared{mode=\"exclusive\"} 0\n"));
	free(body);
	json_object_put(res);
	rdma_stop(r);
}

/* A pod NIC gone without a CNI DEL: the agent forgets it by container. */
static void test_forget_without_del(void **state)
{
	struct rdma *r = start(mode_shared);
	struct rdma_attach_req req = { .network = "rail1", .container_id = "c7", .ifname = "net1",
				       .master = "ens1f0np0", .resource = "roce" };
	struct json_object *res = json_object_new_object();
	bool not_found;
	char err[256];

	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), 0);
	req.network = "rail4";
	req.ifname = "net4";
	req.master = "pf0vf0";
	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), 0);
	req.container_id = "c8";
	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), 0);
	assert_int_equal(status_int(r, "rdma/roce", "podNICs"), 3);

	assert_int_equal(rdma_forget(r, "rail1", "c7", "net9"), 0);
	assert_int_equal(rdma_forget(r, "rail1", "c7", "net1"), 1);
	assert_int_equal(rdma_forget(r, NULL, "c7", NULL), 1); /* net4 on rail4 */
	assert_int_equal(rdma_forget(r, NULL, "c7", NULL), 0);
	assert_false(rdma_detach(r, "rail4", "c7", "net4"));
	assert_int_equal(status_int(r, "rdma/roce", "podNICs"), 1);
	assert_int_equal(rdma_forget(r, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(rdma_forget(NULL, NULL, "c8", NULL), 0);
	assert_int_equal(rdma_forget(r, NULL, "c8", "net4"), 1);
	assert_int_equal(status_int(r, "rdma/roce", "podNICs"), 0);
	json_object_put(res);
	rdma_stop(r);
}

/* Without the kubelet's PodResources API, allocated is the pod NICs count
 * and says so; the devices in use are unknown (null), not a guess. */
static void test_allocated_without_pod_resources(void **state)
{
	struct rdma *r = start(mode_shared);
	struct rdma_attach_req req = { .network = "rail1", .container_id = "c5", .ifname = "net1",
				       .master = "ens1f0np0", .resource = "roce" };
	struct json_object *res = json_object_new_object(), *st, *ro, *pr;
	bool not_found;
	char err[256];

	assert_int_equal(rdma_attach(r, &req, res, &not_found, err, sizeof(err)), 0);
	st = rdma_status_json(r);
	ro = resource_status(st, "rdma/roce");
	assert_int_equal(json_object_get_int(json_object_object_get(ro, "allocated")), 1);
	assert_int_equal(json_object_get_int(json_object_object_get(ro, "free")), 1);
	assert_string_equal(json_object_get_string(json_object_object_get(ro, "allocatedSource")),
			    "podNICs");
	assert_true(json_object_object_get_ex(ro, "kubeletDevicesAllocated", NULL));
	assert_null(json_object_object_get(ro, "kubeletDevicesAllocated"));
	pr = json_object_object_get(st, "podResources");
	assert_false(json_object_get_boolean(json_object_object_get(pr, "available")));
	json_object_put(st);
	assert_true(rdma_detach(r, "rail1", "c5", "net1"));
	assert_int_equal(status_int(r, "rdma/roce", "allocated"), 0);
	json_object_put(res);
	rdma_stop(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_netns_mode_is_reported),
		cmocka_unit_test(test_attach_checks_master_and_resource),
		cmocka_unit_test(test_port_metrics_name_the_ports_netdev),
		cmocka_unit_test(test_attach_uses_the_port_of_the_master),
		cmocka_unit_test(test_netns_mode_is_rechecked),
		cmocka_unit_test(test_forget_without_del),
		cmocka_unit_test(test_allocated_without_pod_resources),
	};

	return cmocka_run_group_tests(tests, make_tree, remove_tree);
}

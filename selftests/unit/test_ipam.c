// SPDX-License-Identifier: Apache-2.0
/* IPAM on a real local store in a temporary directory: which addresses a
 * pool hands out (exclusions, gateway, network/broadcast, edge masks),
 * round-robin, exhaustion, idempotency, stateful pods, GC, the distinct
 * errors, dual-stack rollback, reconfiguration and recovery after reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/ipam.h"
#include "common/log.h"

struct fixture {
	char dir[64];
	struct agent_config cfg;
	struct ipam *ipam;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/railnet-test-ipam-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	log_setup("test", LOG_LVL_ERROR, LOG_FMT_TEXT, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	ipam_close(f->ipam);
	agent_config_free(&f->cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	free(f);
	return system(cmd) == 0 ? 0 : -1;
}

/* (Re)opens the ipam of @f on its store with the pools of @json. */
static void open_with(struct fixture *f, const char *json)
{
	struct json_object *root = json_tokener_parse(json);
	struct store *st;
	char err[512] = "";

	assert_non_null(root);
	ipam_close(f->ipam);
	f->ipam = NULL;
	agent_config_free(&f->cfg);
	if (agent_config_parse(root, &f->cfg, err, sizeof(err)))
		fail_msg("config: %s", err);
	json_object_put(root);
	assert_int_equal(store_local_open(f->dir, &st), 0);
	if (ipam_open(st, "node1", &f->cfg.ipam, &f->ipam, err, sizeof(err)))
		fail_msg("ipam_open: %s", err);
}

#define POOL4(extra)                                                              \
	"{\"nodeName\":\"node1\",\"pools\":[{\"name\":\"gpu1-net11\","               \
	"\"subnet\":\"172.16.11.0/24\",\"gateway\":\"172.16.11.254\"" extra "}]}"

struct outcome {
	int ret;
	enum ipam_error kind;
	char addr[IPADDR_STRLEN + 1];
	char addr6[IPADDR_STRLEN + 1];
	bool fresh;
};

static struct outcome alloc_ex(struct fixture *f, const char *cid, const char *ifname,
			       const char *pool4, const char *pool6, const char *pod)
{
	const char *v4[1] = { pool4 }, *v6[1] = { pool6 };
	struct ipam_request req = {
		.key = { "rail1", cid, ifname },
		.netns = "/var/run/netns/none",
		.pod_namespace = "default",
		.pod_name = pod,
		.pools_v4 = pool4 ? v4 : NULL,
		.npools_v4 = pool4 ? 1 : 0,
		.pools_v6 = pool6 ? v6 : NULL,
		.npools_v6 = pool6 ? 1 : 0,
	};
	struct ipam_lease leases[2];
	struct outcome o = { 0 };
	char why[256];
	size_t n = 0;

	o.ret = ipam_allocate(f->ipam, &req, leases, &n, &o.kind, why, sizeof(why));
	for (size_t i = 0; i < n; i++) {
		ipaddr_str(&leases[i].addr, leases[i].addr.family == AF_INET ? o.addr : o.addr6);
		o.fresh = leases[i].fresh;
	}
	return o;
}

static const char *alloc4(struct fixture *f, const char *cid)
{
	static char addr[IPADDR_STRLEN + 1];
	struct outcome o = alloc_ex(f, cid, "net1", "gpu1-net11", NULL, NULL);

	if (o.ret)
		return o.kind == IPAM_ERR_EXHAUSTED ? "exhausted" : "error";
	strcpy(addr, o.addr);
	return addr;
}

static int release(struct fixture *f, const char *cid, const char *ifname)
{
	struct ipam_key key = { "rail1", cid, ifname };
	struct json_object *released = json_object_new_array();
	int n, ret = ipam_release(f->ipam, &key, released);

	n = (int)json_object_array_length(released);
	json_object_put(released);
	return ret ? ret : n;
}

static void test_exclusions_and_exhaustion(void **state)
{
	struct fixture *f = *state;

	/* .250-.255 less the gateway, broadcast and an exclusion: .250 .251 .253. */
	open_with(f, POOL4(",\"ips\":[\"172.16.11.250-172.16.11.255\"],"
			   "\"excludeIPs\":[\"172.16.11.252\"]"));
	assert_string_equal(alloc4(f, "c1"), "172.16.11.250");
	assert_string_equal(alloc4(f, "c2"), "172.16.11.251");
	assert_string_equal(alloc4(f, "c3"), "172.16.11.253");
	assert_string_equal(alloc4(f, "c4"), "exhausted");
	/* Freed: usable again (round-robin wraps). */
	assert_int_equal(release(f, "c2", "net1"), 1);
	assert_string_equal(alloc4(f, "c4"), "172.16.11.251");
}

static void test_network_and_reserved_never_handed_out(void **state)
{
	struct fixture *f = *state;

	open_with(f, "{\"nodeName\":\"node1\",\"reservedIPs\":[\"172.16.11.2\"],"
		     "\"pools\":[{\"name\":\"gpu1-net11\",\"subnet\":\"172.16.11.0/29\","
		     "\"ips\":[\"172.16.11.0-172.16.11.7\"],\"gateway\":\"172.16.11.1\"}]}");
	/* .0 network, .1 gateway, .2 reserved, .7 broadcast. */
	assert_string_equal(alloc4(f, "c1"), "172.16.11.3");
	assert_string_equal(alloc4(f, "c2"), "172.16.11.4");
	assert_string_equal(alloc4(f, "c3"), "172.16.11.5");
	assert_string_equal(alloc4(f, "c4"), "172.16.11.6");
	assert_string_equal(alloc4(f, "c5"), "exhausted");
}

static void test_edge_masks(void **state)
{
	struct fixture *f = *state;
	struct outcome o;

	/* /31 (RFC 3021): both addresses are hosts. */
	open_with(f, "{\"nodeName\":\"node1\",\"pools\":[{\"name\":\"p\",\"subnet\":\"10.0.0.4/31\","
		     "\"ips\":[\"10.0.0.4-10.0.0.5\"]}]}");
	o = alloc_ex(f, "a", "net1", "p", NULL, NULL);
	assert_string_equal(o.addr, "10.0.0.4");
	o = alloc_ex(f, "b", "net1", "p", NULL, NULL);
	assert_string_equal(o.addr, "10.0.0.5");
	assert_int_equal(alloc_ex(f, "c", "net1", "p", NULL, NULL).kind, IPAM_ERR_EXHAUSTED);

	/* /32: the one address. */
	open_with(f, "{\"nodeName\":\"node1\",\"pools\":[{\"name\":\"q\",\"subnet\":\"10.0.0.9/32\","
		     "\"ips\":[\"10.0.0.9\"]}]}");
	o = alloc_ex(f, "a2", "net1", "q", NULL, NULL);
	assert_int_equal(o.ret, 0);
	assert_string_equal(o.addr, "10.0.0.9");
	assert_int_equal(alloc_ex(f, "b2", "net1", "q", NULL, NULL).ret, -ENOSPC);

	/* /127 (RFC 6164): both; /128: the one. */
	open_with(f, "{\"nodeName\":\"node1\",\"pools\":["
		     "{\"name\":\"r\",\"subnet\":\"fd16:11::/127\",\"ips\":[\"fd16:11::-fd16:11::1\"]},"
		     "{\"name\":\"s\",\"subnet\":\"fd16:12::5/128\",\"ips\":[\"fd16:12::5\"]}]}");
	assert_string_equal(alloc_ex(f, "a3", "net1", NULL, "r", NULL).addr6, "fd16:11::");
	assert_string_equal(alloc_ex(f, "b3", "net1", NULL, "r", NULL).addr6, "fd16:11::1");
	assert_int_equal(alloc_ex(f, "c3", "net1", NULL, "r", NULL).kind, IPAM_ERR_EXHAUSTED);
	assert_string_equal(alloc_ex(f, "a4", "net1", NULL, "s", NULL).addr6, "fd16:12::5");
	assert_int_equal(alloc_ex(f, "b4", "net1", NULL, "s", NULL).kind, IPAM_ERR_EXHAUSTED);

	/* A /64: the subnet-router anycast address (::) is not handed out. */
	open_with(f, "{\"nodeName\":\"node1\",\"pools\":[{\"name\":\"t\",\"subnet\":\"fd16:13::/64\","
		     "\"ips\":[\"fd16:13::-fd16:13::2\"],\"gateway\":\"fd16:13::1\"}]}");
	assert_string_equal(alloc_ex(f, "a5", "net1", NULL, "t", NULL).addr6, "fd16:13::2");
	assert_int_equal(alloc_ex(f, "b5", "net1", NULL, "t", NULL).kind, IPAM_ERR_EXHAUSTED);
}

static void test_round_robin_does_not_reuse_at_once(void **state)
{
	struct fixture *f = *state;

	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.4\"]"));
	assert_string_equal(alloc4(f, "c1"), "172.16.11.1");
	assert_int_equal(release(f, "c1", "net1"), 1);
	/* .1 is free but was just used: the next one is handed out. */
	assert_string_equal(alloc4(f, "c2"), "172.16.11.2");
	assert_int_equal(release(f, "c2", "net1"), 1);
	assert_string_equal(alloc4(f, "c3"), "172.16.11.3");
	assert_string_equal(alloc4(f, "c4"), "172.16.11.4");
	/* Wraps to the start. */
	assert_string_equal(alloc4(f, "c5"), "172.16.11.1");
	/* The cursor survives a restart. */
	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.4\"]"));
	assert_string_equal(alloc4(f, "c6"), "172.16.11.2");
}

static void test_idempotent_and_release_by_key(void **state)
{
	struct fixture *f = *state;
	struct outcome o;

	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"]"));
	o = alloc_ex(f, "c1", "net1", "gpu1-net11", NULL, NULL);
	assert_true(o.fresh);
	assert_string_equal(o.addr, "172.16.11.1");
	o = alloc_ex(f, "c1", "net1", "gpu1-net11", NULL, NULL);
	assert_false(o.fresh);
	assert_string_equal(o.addr, "172.16.11.1");
	/* Another NIC of the same container is another key. */
	assert_string_equal(alloc_ex(f, "c1", "net2", "gpu1-net11", NULL, NULL).addr, "172.16.11.2");
	/* Releasing nothing is fine; releasing twice releases once. */
	assert_int_equal(release(f, "nope", "net1"), 0);
	assert_int_equal(release(f, "c1", "net1"), 1);
	assert_int_equal(release(f, "c1", "net1"), 0);
	{
		struct ipam_key key = { "rail1", "c1", "net2" };
		struct ipam_lease l[2];
		size_t n;

		assert_int_equal(ipam_get(f->ipam, &key, l, &n), 0);
		assert_int_equal(n, 1);
		key.ifname = "net1";
		assert_int_equal(ipam_get(f->ipam, &key, l, &n), -ENOENT);
	}
}

static void test_distinct_errors(void **state)
{
	struct fixture *f = *state;
	struct outcome o;

	open_with(f, "{\"nodeName\":\"node1\",\"pools\":["
		     "{\"name\":\"here\",\"subnet\":\"10.1.0.0/24\",\"ips\":[\"10.1.0.1\"],\"nodeName\":[\"node1\"]},"
		     "{\"name\":\"there\",\"subnet\":\"10.2.0.0/24\",\"ips\":[\"10.2.0.1\"],\"nodeName\":[\"node2\"]},"
		     "{\"name\":\"six\",\"subnet\":\"fd00::/64\",\"ips\":[\"fd00::1\"]}]}");
	o = alloc_ex(f, "a", "net1", "nosuch", NULL, NULL);
	assert_int_equal(o.ret, -ENOENT);
	assert_int_equal(o.kind, IPAM_ERR_UNKNOWN_POOL);
	o = alloc_ex(f, "a", "net1", "there", NULL, NULL);
	assert_int_equal(o.ret, -EPERM);
	assert_int_equal(o.kind, IPAM_ERR_NOT_ALLOWED);
	o = alloc_ex(f, "a", "net1", "six", NULL, NULL);
	assert_int_equal(o.kind, IPAM_ERR_BAD_REQUEST);
	assert_int_equal(alloc_ex(f, "a", "net1", "here", NULL, NULL).ret, 0);
	o = alloc_ex(f, "b", "net1", "here", NULL, NULL);
	assert_int_equal(o.ret, -ENOSPC);
	assert_int_equal(o.kind, IPAM_ERR_EXHAUSTED);
}

static void test_dual_stack_rolls_back_the_ipv4_half(void **state)
{
	struct fixture *f = *state;
	struct outcome o;

	open_with(f, "{\"nodeName\":\"node1\",\"pools\":["
		     "{\"name\":\"v4\",\"subnet\":\"10.1.0.0/24\",\"ips\":[\"10.1.0.1-10.1.0.5\"]},"
		     "{\"name\":\"v6\",\"subnet\":\"fd00::/64\",\"ips\":[\"fd00::1\"]}]}");
	o = alloc_ex(f, "a", "net1", "v4", "v6", NULL);
	assert_int_equal(o.ret, 0);
	assert_string_equal(o.addr, "10.1.0.1");
	assert_string_equal(o.addr6, "fd00::1");
	o = alloc_ex(f, "b", "net1", "v4", "v6", NULL);
	assert_int_equal(o.kind, IPAM_ERR_EXHAUSTED);
	{
		struct json_object *all = ipam_allocations(f->ipam, NULL);

		assert_int_equal(json_object_array_length(all), 2);
		json_object_put(all);
	}
}

static void test_stateful_pod_gets_its_address_back(void **state)
{
	struct fixture *f = *state;
	struct outcome o;

	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"],\"stateful\":true"));
	o = alloc_ex(f, "old", "net1", "gpu1-net11", NULL, "web-0");
	assert_string_equal(o.addr, "172.16.11.1");
	assert_int_equal(release(f, "old", "net1"), 1);
	/* Someone else allocates meanwhile, and the agent restarts. */
	assert_string_equal(alloc_ex(f, "other", "net1", "gpu1-net11", NULL, "web-1").addr,
			    "172.16.11.2");
	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"],\"stateful\":true"));
	o = alloc_ex(f, "new", "net1", "gpu1-net11", NULL, "web-0");
	assert_string_equal(o.addr, "172.16.11.1");
	/* Recreated before the old container was released: handed over. */
	o = alloc_ex(f, "newer", "net1", "gpu1-net11", NULL, "web-0");
	assert_string_equal(o.addr, "172.16.11.1");
	assert_int_equal(release(f, "new", "net1"), 0);
	assert_int_equal(release(f, "newer", "net1"), 1);
}

static void test_gc_keeps_only_valid_attachments(void **state)
{
	struct fixture *f = *state;
	struct json_object *valid = json_tokener_parse(
		"[{\"containerID\":\"c1\",\"ifName\":\"net1\"},{\"containerID\":\"c3\",\"ifName\":\"net1\"}]");
	struct json_object *released = json_object_new_array();

	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"]"));
	alloc4(f, "c1");
	alloc4(f, "c2");
	alloc4(f, "c3");
	assert_int_equal(ipam_gc(f->ipam, "rail1", valid, released), 0);
	assert_int_equal(json_object_array_length(released), 1);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(released, 0)),
			    "172.16.11.2");
	/* Another network's GC touches nothing of rail1. */
	json_object_put(released);
	released = json_object_new_array();
	assert_int_equal(ipam_gc(f->ipam, "rail2", valid, released), 0);
	assert_int_equal(json_object_array_length(released), 0);
	json_object_put(released);
	json_object_put(valid);
}

static void test_reconfigure_refuses_dropping_a_used_pool(void **state)
{
	struct fixture *f = *state;
	struct json_object *root = json_tokener_parse(
		"{\"pools\":[{\"name\":\"other\",\"subnet\":\"10.9.0.0/24\",\"ips\":[\"10.9.0.1\"]}]}");
	struct agent_config next;
	char err[512];

	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"]"));
	assert_int_equal(agent_config_parse(root, &next, err, sizeof(err)), 0);
	json_object_put(root);
	alloc4(f, "c1");
	assert_int_equal(ipam_reconfigure(f->ipam, &next.ipam, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "gpu1-net11"));
	assert_non_null(strstr(err, "172.16.11.1"));
	/* Still the old pools. */
	assert_string_equal(alloc4(f, "c2"), "172.16.11.2");
	assert_int_equal(release(f, "c1", "net1"), 1);
	assert_int_equal(release(f, "c2", "net1"), 1);
	assert_int_equal(ipam_reconfigure(f->ipam, &next.ipam, err, sizeof(err)), 0);
	assert_string_equal(alloc4(f, "c3"), "error");
	agent_config_free(&next);
}

static void test_state_survives_reopen_and_compaction(void **state)
{
	struct fixture *f = *state;
	char cid[32];

#define COMPACTING "{\"nodeName\":\"node1\",\"store\":{\"compactRecords\":100},"            \
		   "\"pools\":[{\"name\":\"gpu1-net11\",\"subnet\":\"172.16.11.0/24\","          \
		   "\"ips\":[\"172.16.11.1-172.16.11.200\"]}]}"
	char log[96];
	FILE *f_log;
	long size;

	open_with(f, COMPACTING);
	/* Churn: the log is compacted in the background, several times, while
	 * requests go on appending. */
	for (int i = 0; i < 1000; i++) {
		snprintf(cid, sizeof(cid), "churn%d", i);
		assert_string_not_equal(alloc4(f, cid), "exhausted");
		assert_int_equal(release(f, cid, "net1"), 1);
	}
	for (int i = 0; i < 10; i++) {
		snprintf(cid, sizeof(cid), "keep%d", i);
		alloc4(f, cid);
	}
	assert_int_equal(release(f, "keep3", "net1"), 1);
	/* 2,019 records appended: compaction kept the log far smaller. */
	snprintf(log, sizeof(log), "%s/ipam.log", f->dir);
	f_log = fopen(log, "r");
	assert_non_null(f_log);
	size = 0; /* where the records end: preallocated zeros follow */
	for (long off = 0, c; (c = fgetc(f_log)) != EOF; off++)
		if (c)
			size = off + 1;
	fclose(f_log);
	assert_true(size > 0 && size < 2019 * 50);
	open_with(f, COMPACTING);
	{
		struct json_object *all = ipam_allocations(f->ipam, "gpu1-net11");

		assert_int_equal(json_object_array_length(all), 9);
		json_object_put(all);
	}
	/* 1010 handed out in a 200-address pool: the cursor is at .10. */
	assert_string_equal(alloc4(f, "after"), "172.16.11.11");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_exclusions_and_exhaustion),
		T(test_network_and_reserved_never_handed_out),
		T(test_edge_masks),
		T(test_round_robin_does_not_reuse_at_once),
		T(test_idempotent_and_release_by_key),
		T(test_distinct_errors),
		T(test_dual_stack_rolls_back_the_ipv4_half),
		T(test_stateful_pod_gets_its_address_back),
		T(test_gc_keeps_only_valid_attachments),
		T(test_reconfigure_refuses_dropping_a_used_pool),
		T(test_state_survives_reopen_and_compaction),
	};

	return cmocka_run_group_tests_name("ipam", tests, NULL, NULL);
}

// SPDX-License-Identifier: Apache-2.0
/* IPAM on a real local store in a temporary directory: which addresses a
 * pool hands out (exclusions, gateway, network/broadcast, edge masks),
 * round-robin, exhaustion, idempotency, stateful pods, GC, the distinct
 * errors, dual-stack rollback, reconfiguration, recovery after reopen and
 * running out of memory. */
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

static void quarantine(struct fixture *f, const char *addr, long long for_ms)
{
	static const unsigned char mac[6] = { 0x02, 0, 0, 0, 0, 0x99 };
	struct ipaddr a;

	assert_int_equal(ipaddr_parse(addr, &a), 0);
	assert_int_equal(ipam_quarantine(f->ipam, &a, for_ms, mac), 0);
}

static void test_peek_and_quarantine(void **state)
{
	struct fixture *f = *state;
	struct ipaddr next[4];
	char buf[IPADDR_STRLEN];

	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.4\"]"));
	assert_string_equal(alloc4(f, "c1"), "172.16.11.1");
	/* What the pool would hand out next, in order, without handing it out. */
	assert_int_equal(ipam_peek_candidates(f->ipam, "gpu1-net11", next, 4), 3);
	assert_string_equal(ipaddr_str(&next[0], buf), "172.16.11.2");
	assert_string_equal(ipaddr_str(&next[2], buf), "172.16.11.4");
	assert_int_equal(ipam_peek_candidates(f->ipam, "nosuchpool", next, 4), 0);
	/* An address that answered a probe is passed over while quarantined. */
	quarantine(f, "172.16.11.2", 60000);
	assert_int_equal(ipam_peek_candidates(f->ipam, "gpu1-net11", next, 4), 2);
	assert_string_equal(ipaddr_str(&next[0], buf), "172.16.11.3");
	assert_string_equal(alloc4(f, "c2"), "172.16.11.3");
	assert_string_equal(alloc4(f, "c3"), "172.16.11.4");
	assert_string_equal(alloc4(f, "c4"), "exhausted");
	/* Its quarantine over, it serves again. */
	quarantine(f, "172.16.11.2", -1);
	assert_string_equal(alloc4(f, "c4"), "172.16.11.2");
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

static long long fake_now;

static long long fake_clock(void)
{
	return fake_now;
}

#define STATEFUL(ips) POOL4(",\"ips\":[" ips "],\"stateful\":true,\"statefulHoldMs\":1000")

/* A stateful pod's released address is held for it: round-robin passes
 * over it until statefulHoldMs is up. */
static void test_stateful_address_is_held_for_its_pod(void **state)
{
	struct fixture *f = *state;

	open_with(f, STATEFUL("\"172.16.11.1-172.16.11.6\""));
	ipam_set_clock(f->ipam, fake_clock);
	fake_now = 1000000;
	assert_string_equal(alloc_ex(f, "w0", "net1", "gpu1-net11", NULL, "web-0").addr, "172.16.11.1");
	assert_string_equal(alloc4(f, "x"), "172.16.11.2");
	assert_int_equal(release(f, "w0", "net1"), 1); /* .1 held for web-0 */
	assert_int_equal(release(f, "x", "net1"), 1);  /* .2 free: no pod to hold it for */
	assert_string_equal(alloc4(f, "y1"), "172.16.11.3");
	assert_string_equal(alloc4(f, "y2"), "172.16.11.4");
	assert_string_equal(alloc4(f, "y3"), "172.16.11.5");
	assert_string_equal(alloc4(f, "y4"), "172.16.11.6");
	/* Round-robin wraps: .1 is web-0's, .2 is next. */
	assert_string_equal(alloc4(f, "y5"), "172.16.11.2");
	/* Held across a restart too (the release record has its time). */
	open_with(f, STATEFUL("\"172.16.11.1-172.16.11.7\""));
	ipam_set_clock(f->ipam, fake_clock);
	fake_now += 999;
	assert_string_equal(alloc4(f, "y6"), "172.16.11.7");
	/* Past the hold it is an ordinary free address. */
	fake_now += 1;
	assert_string_equal(alloc4(f, "y7"), "172.16.11.1");
	/* web-0 comes back to a full pool. */
	assert_int_equal(alloc_ex(f, "w0b", "net1", "gpu1-net11", NULL, "web-0").kind,
			 IPAM_ERR_EXHAUSTED);
}

/* When only held addresses are left, a new pod gets the one released
 * longest ago rather than an error. */
static void test_stateful_hold_yields_to_a_full_pool(void **state)
{
	struct fixture *f = *state;
	struct json_object *st;

	open_with(f, STATEFUL("\"172.16.11.1-172.16.11.3\""));
	ipam_set_clock(f->ipam, fake_clock);
	fake_now = 5000;
	assert_string_equal(alloc_ex(f, "w0", "net1", "gpu1-net11", NULL, "web-0").addr, "172.16.11.1");
	assert_string_equal(alloc_ex(f, "w1", "net1", "gpu1-net11", NULL, "web-1").addr, "172.16.11.2");
	assert_string_equal(alloc4(f, "x"), "172.16.11.3");
	assert_int_equal(release(f, "w1", "net1"), 1);
	fake_now += 10;
	assert_int_equal(release(f, "w0", "net1"), 1);
	st = ipam_status_json(f->ipam);
	assert_int_equal(json_object_get_int(json_object_object_get(st, "statefulHeld")), 2);
	json_object_put(st);
	assert_string_equal(alloc4(f, "y"), "172.16.11.2"); /* web-1's, the older hold */
	/* web-1 lost its address; web-0 still gets its own back. */
	assert_string_equal(alloc_ex(f, "w0b", "net1", "gpu1-net11", NULL, "web-0").addr, "172.16.11.1");
	assert_int_equal(alloc_ex(f, "w1b", "net1", "gpu1-net11", NULL, "web-1").kind,
			 IPAM_ERR_EXHAUSTED);
}

/* Giving a stateful pod its address back is not a round-robin step: the
 * cursor stays, and what was released after it is not reused at once. */
static void test_stateful_reuse_does_not_move_the_cursor(void **state)
{
	struct fixture *f = *state;

	open_with(f, STATEFUL("\"172.16.11.1-172.16.11.9\""));
	ipam_set_clock(f->ipam, fake_clock);
	fake_now = 1;
	assert_string_equal(alloc_ex(f, "w0", "net1", "gpu1-net11", NULL, "web-0").addr, "172.16.11.1");
	assert_string_equal(alloc4(f, "a"), "172.16.11.2");
	assert_string_equal(alloc4(f, "b"), "172.16.11.3");
	assert_int_equal(release(f, "w0", "net1"), 1);
	assert_int_equal(release(f, "b", "net1"), 1); /* just released */
	assert_string_equal(alloc_ex(f, "w0b", "net1", "gpu1-net11", NULL, "web-0").addr, "172.16.11.1");
	assert_string_equal(alloc4(f, "c"), "172.16.11.4");
	/* Replay agrees: the cursor is where the live path left it. */
	open_with(f, STATEFUL("\"172.16.11.1-172.16.11.9\""));
	assert_string_equal(alloc4(f, "d"), "172.16.11.5");
}

/* A handover (a recreated pod, its old container not yet released) is not
 * a round-robin step either, at replay as live. */
static void test_handover_does_not_move_the_cursor_at_replay(void **state)
{
	struct fixture *f = *state;

	open_with(f, STATEFUL("\"172.16.11.1-172.16.11.9\""));
	assert_string_equal(alloc_ex(f, "old", "net1", "gpu1-net11", NULL, "web-0").addr, "172.16.11.1");
	assert_string_equal(alloc4(f, "x"), "172.16.11.2");
	assert_string_equal(alloc4(f, "y"), "172.16.11.3");
	assert_string_equal(alloc_ex(f, "new", "net1", "gpu1-net11", NULL, "web-0").addr, "172.16.11.1");
	assert_int_equal(release(f, "y", "net1"), 1);
	open_with(f, STATEFUL("\"172.16.11.1-172.16.11.9\""));
	/* The handover's record came last; the cursor is still at .3. */
	assert_string_equal(alloc4(f, "z"), "172.16.11.4");
	assert_int_equal(release(f, "old", "net1"), 0);
	assert_int_equal(release(f, "new", "net1"), 1);
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

static int check_state(struct fixture *f, const char *json, char *err, size_t errlen)
{
	struct json_object *root = json_tokener_parse(json);
	struct agent_config cfg;
	struct store *st;
	int ret;

	assert_int_equal(agent_config_parse(root, &cfg, err, errlen), 0);
	json_object_put(root);
	assert_int_equal(store_local_open_readonly(f->dir, &st), 0);
	ret = ipam_check_state(st, "node1", &cfg.ipam, err, errlen);
	agent_config_free(&cfg);
	return ret;
}

#define TWO_POOLS "{\"nodeName\":\"node1\",\"pools\":["                               \
		  "{\"name\":\"a\",\"subnet\":\"10.1.0.0/24\",\"ips\":[\"10.1.0.1-10.1.0.9\"]}," \
		  "{\"name\":\"b\",\"subnet\":\"10.2.0.0/24\",\"ips\":[\"10.2.0.1-10.2.0.9\"]}]}"
#define ONLY_B "{\"nodeName\":\"node1\",\"pools\":["                                   \
	       "{\"name\":\"b\",\"subnet\":\"10.2.0.0/24\",\"ips\":[\"10.2.0.1-10.2.0.9\"]}]}"

/* A start (a ConfigMap rollout) with a pool removed that still holds
 * addresses keeps the node's pods running: the allocations stay and are
 * served, the pool takes no new ones, and it is said - while
 * --check-config against the state refuses that configuration. */
static void test_start_without_a_used_pool_keeps_its_allocations(void **state)
{
	struct fixture *f = *state;
	unsigned long long removed, outside;
	struct json_object *all, *st;
	char err[512] = "";

	open_with(f, TWO_POOLS);
	assert_string_equal(alloc_ex(f, "c1", "net1", "a", NULL, NULL).addr, "10.1.0.1");
	assert_string_equal(alloc_ex(f, "c2", "net1", "b", NULL, NULL).addr, "10.2.0.1");
	ipam_close(f->ipam);
	f->ipam = NULL;
	assert_int_equal(check_state(f, ONLY_B, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "10.1.0.1 of pool a"));
	assert_int_equal(check_state(f, TWO_POOLS, err, sizeof(err)), 0);

	open_with(f, ONLY_B);
	ipam_stray_counts(f->ipam, &removed, &outside);
	assert_int_equal(removed, 1);
	assert_int_equal(outside, 0);
	st = ipam_status_json(f->ipam);
	assert_int_equal(json_object_array_length(json_object_object_get(st, "outsideConfig")), 1);
	json_object_put(st);
	all = ipam_allocations(f->ipam, "a");
	assert_int_equal(json_object_array_length(all), 1);
	assert_string_equal(json_object_get_string(json_object_object_get(
				    json_object_array_get_idx(all, 0), "outsideConfig")),
			    "pool_removed");
	json_object_put(all);
	/* Its pod's ADD asked again gets the same answer; new ones are refused. */
	assert_string_equal(alloc_ex(f, "c1", "net1", "a", NULL, NULL).addr, "10.1.0.1");
	assert_int_equal(alloc_ex(f, "c3", "net1", "a", NULL, NULL).kind, IPAM_ERR_UNKNOWN_POOL);
	assert_string_equal(alloc_ex(f, "c4", "net1", "b", NULL, NULL).addr, "10.2.0.2");
	/* Released, the conflict is gone. */
	assert_int_equal(release(f, "c1", "net1"), 1);
	ipam_stray_counts(f->ipam, &removed, &outside);
	assert_int_equal(removed, 0);
	ipam_close(f->ipam);
	f->ipam = NULL;
	assert_int_equal(check_state(f, ONLY_B, err, sizeof(err)), 0);
}

/* Narrowing a pool (ips, excludeIPs, reservedIPs) under an allocation is
 * refused on reload like removing it; at start the allocation is kept, and
 * its address is not handed out again once released. */
static void test_narrowing_a_pool_under_an_allocation(void **state)
{
	static const char *const narrower[] = {
		POOL4(",\"ips\":[\"172.16.11.2-172.16.11.9\"]"),
		POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"],\"excludeIPs\":[\"172.16.11.1\"]"),
		"{\"nodeName\":\"node1\",\"reservedIPs\":[\"172.16.11.1\"],\"pools\":[{\"name\":"
		"\"gpu1-net11\",\"subnet\":\"172.16.11.0/24\",\"ips\":[\"172.16.11.1-172.16.11.9\"]}]}",
	};
	struct fixture *f = *state;
	unsigned long long removed, outside;
	struct ipam_pool_stats *ps;
	char err[512];
	size_t n;

	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"]"));
	assert_string_equal(alloc4(f, "c1"), "172.16.11.1");
	assert_string_equal(alloc4(f, "c2"), "172.16.11.2");
	for (size_t i = 0; i < sizeof(narrower) / sizeof(narrower[0]); i++) {
		struct json_object *root = json_tokener_parse(narrower[i]);
		struct agent_config next;

		assert_int_equal(agent_config_parse(root, &next, err, sizeof(err)), 0);
		json_object_put(root);
		err[0] = '\0';
		assert_int_equal(ipam_reconfigure(f->ipam, &next.ipam, err, sizeof(err)), -EBUSY);
		assert_non_null(strstr(err, "172.16.11.1 (container c1"));
		agent_config_free(&next);
	}
	/* Widening is fine. */
	{
		struct json_object *root = json_tokener_parse(POOL4(",\"ips\":[\"172.16.11.1-172.16.11.20\"]"));
		struct agent_config next;

		assert_int_equal(agent_config_parse(root, &next, err, sizeof(err)), 0);
		json_object_put(root);
		assert_int_equal(ipam_reconfigure(f->ipam, &next.ipam, err, sizeof(err)), 0);
		agent_config_free(&next);
	}
	/* A start with the narrower pool. */
	open_with(f, narrower[1]);
	ipam_stray_counts(f->ipam, &removed, &outside);
	assert_int_equal(outside, 1);
	assert_int_equal(ipam_pool_stats(f->ipam, &ps, &n), 0);
	assert_int_equal(ps[0].total, 8);
	assert_int_equal(ps[0].used, 1); /* .2; .1 is outside the pool */
	free(ps);
	assert_int_equal(release(f, "c1", "net1"), 1);
	for (int i = 0; i < 7; i++) {
		char cid[8];

		snprintf(cid, sizeof(cid), "n%d", i);
		assert_string_not_equal(alloc4(f, cid), "172.16.11.1");
	}
	assert_string_equal(alloc4(f, "full"), "exhausted");
}

/* The request path finds a key among many allocations by its index, and a
 * release by key takes only that key's. */
static void test_many_allocations_by_key(void **state)
{
	struct fixture *f = *state;
	char cid[32];

	open_with(f, "{\"nodeName\":\"node1\",\"pools\":[{\"name\":\"big\",\"subnet\":\"10.8.0.0/16\","
		     "\"ips\":[\"10.8.0.1-10.8.255.254\"]}]}");
	for (int i = 0; i < 3000; i++) {
		snprintf(cid, sizeof(cid), "c%d", i);
		assert_int_equal(alloc_ex(f, cid, "net1", "big", NULL, NULL).ret, 0);
	}
	for (int i = 0; i < 3000; i += 2) {
		snprintf(cid, sizeof(cid), "c%d", i);
		assert_int_equal(release(f, cid, "net1"), 1);
	}
	for (int i = 0; i < 3000; i++) {
		struct outcome o;

		snprintf(cid, sizeof(cid), "c%d", i);
		o = alloc_ex(f, cid, "net1", "big", NULL, NULL);
		assert_int_equal(o.ret, 0);
		assert_true(o.fresh == (i % 2 == 0));
	}
	open_with(f, "{\"nodeName\":\"node1\",\"pools\":[{\"name\":\"big\",\"subnet\":\"10.8.0.0/16\","
		     "\"ips\":[\"10.8.0.1-10.8.255.254\"]}]}");
	{
		struct json_object *all = ipam_allocations(f->ipam, NULL);

		assert_int_equal(json_object_array_length(all), 3000);
		json_object_put(all);
	}
	assert_int_equal(release(f, "c2999", "net1"), 1);
	assert_int_equal(release(f, "c2999", "net1"), 0);
}

/* Records are JSON put together by hand: whatever a runtime passes in a
 * key survives the log. */
static void test_odd_strings_survive_the_log(void **state)
{
	static const char odd[] = "c\"1\\x\x01y\t/\xc3\xa9";
	struct fixture *f = *state;
	struct json_object *all;

	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"]"));
	assert_string_equal(alloc4(f, odd), "172.16.11.1");
	open_with(f, POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"]"));
	all = ipam_allocations(f->ipam, NULL);
	assert_int_equal(json_object_array_length(all), 1);
	assert_string_equal(json_object_get_string(json_object_object_get(
				    json_object_array_get_idx(all, 0), "containerID")),
			    odd);
	json_object_put(all);
	assert_int_equal(release(f, odd, "net1"), 1);
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

/* calloc() calls from now until one fails; 0: none does.  This test's link
 * wraps calloc (-Wl,--wrap=calloc), in the ipam and the libraries under it. */
static int calloc_fails_in;
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);

void *__wrap_calloc(size_t n, size_t size)
{
	if (calloc_fails_in && !--calloc_fails_in)
		return NULL;
	return __real_calloc(n, size);
}

static size_t allocations(struct fixture *f)
{
	struct json_object *all = ipam_allocations(f->ipam, NULL);
	size_t n = json_object_array_length(all);

	json_object_put(all);
	return n;
}

/* An allocation that runs out of memory anywhere on its way leaves nothing
 * behind, in memory or in the log: a restart replays what memory held.  The
 * 45th allocation also grows the address index (past 0.7 of 64 slots). */
static void test_out_of_memory_leaves_no_record(void **state)
{
#define POOL_OOM POOL4(",\"ips\":[\"172.16.11.1-172.16.11.200\"]")
	struct fixture *f = *state;
	int failures = 0;
	char cid[32];

	open_with(f, POOL_OOM);
	for (int i = 0; i < 44; i++) {
		snprintf(cid, sizeof(cid), "c%d", i);
		assert_int_equal(alloc_ex(f, cid, "net1", "gpu1-net11", NULL, NULL).ret, 0);
	}
	for (int k = 1;; k++) {
		struct outcome o;

		calloc_fails_in = k;
		o = alloc_ex(f, "late", "net1", "gpu1-net11", NULL, NULL);
		calloc_fails_in = 0;
		if (!o.ret)
			break;
		failures++;
		assert_int_equal(allocations(f), 44);
		open_with(f, POOL_OOM);
		assert_int_equal(allocations(f), 44);
	}
	assert_true(failures > 0);
	assert_int_equal(allocations(f), 45);
	open_with(f, POOL_OOM);
	assert_int_equal(allocations(f), 45);
#undef POOL_OOM
}

/* Releasing a stateful pod's address out of memory keeps the allocation
 * (its hold cannot be made), in memory and in the log; once the release
 * goes through, a restart still holds the address for the pod. */
static void test_out_of_memory_release_keeps_the_allocation(void **state)
{
#define POOL_SF POOL4(",\"ips\":[\"172.16.11.1-172.16.11.9\"],\"stateful\":true")
	struct ipam_key key = { "rail1", "old", "net1" };
	struct fixture *f = *state;
	int failures = 0;

	open_with(f, POOL_SF);
	assert_string_equal(alloc_ex(f, "old", "net1", "gpu1-net11", NULL, "web-0").addr,
			    "172.16.11.1");
	for (int k = 1;; k++) {
		struct json_object *released = json_object_new_array();
		int ret;

		calloc_fails_in = k;
		ret = ipam_release(f->ipam, &key, released);
		calloc_fails_in = 0;
		json_object_put(released);
		if (!ret && !allocations(f))
			break;
		failures++;
		assert_int_equal(allocations(f), 1);
		open_with(f, POOL_SF);
		assert_int_equal(allocations(f), 1);
	}
	assert_true(failures > 0);
	open_with(f, POOL_SF);
	assert_string_equal(alloc_ex(f, "other", "net1", "gpu1-net11", NULL, "web-1").addr,
			    "172.16.11.2");
	assert_string_equal(alloc_ex(f, "new", "net1", "gpu1-net11", NULL, "web-0").addr,
			    "172.16.11.1");
#undef POOL_SF
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_exclusions_and_exhaustion),
		T(test_peek_and_quarantine),
		T(test_network_and_reserved_never_handed_out),
		T(test_edge_masks),
		T(test_round_robin_does_not_reuse_at_once),
		T(test_idempotent_and_release_by_key),
		T(test_distinct_errors),
		T(test_dual_stack_rolls_back_the_ipv4_half),
		T(test_stateful_pod_gets_its_address_back),
		T(test_stateful_address_is_held_for_its_pod),
		T(test_stateful_hold_yields_to_a_full_pool),
		T(test_stateful_reuse_does_not_move_the_cursor),
		T(test_handover_does_not_move_the_cursor_at_replay),
		T(test_start_without_a_used_pool_keeps_its_allocations),
		T(test_narrowing_a_pool_under_an_allocation),
		T(test_many_allocations_by_key),
		T(test_odd_strings_survive_the_log),
		T(test_gc_keeps_only_valid_attachments),
		T(test_reconfigure_refuses_dropping_a_used_pool),
		T(test_state_survives_reopen_and_compaction),
		T(test_out_of_memory_leaves_no_record),
		T(test_out_of_memory_release_keeps_the_allocation),
	};

	return cmocka_run_group_tests_name("ipam", tests, NULL, NULL);
}

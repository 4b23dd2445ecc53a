// SPDX-License-Identifier: Apache-2.0
/* The control ops (docs/protocol.md) and their table. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/rdma.h"
#include "agent/datapath.h"
#include "common/protocol.h"

#ifndef RAILNET_VERSION
#define RAILNET_VERSION "0.1.0"
#endif
/* How long an ADD on a full pool waits for the links being deleted (one
 * takes ~16 ms; a burst of DELs queues on the kernel's rtnl lock). */
#define TEARDOWN_DRAIN_MS 1000

int ctl_fail(struct ctl_error *err, const char *code, int errnum, const char *fmt, ...)
{
	va_list ap;

	snprintf(err->code, sizeof(err->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return errnum < 0 ? errnum : -EINVAL;
}

/* A required string argument. */
static const char *arg_str(struct json_object *args, const char *key, bool required,
			   struct ctl_error *err, int *ret)
{
	struct json_object *v;

	if (!json_object_object_get_ex(args, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			*ret = ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL, "%s is required", key);
		return NULL;
	}
	if (!json_object_is_type(v, json_type_string)) {
		*ret = ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL, "%s must be a string", key);
		return NULL;
	}
	return json_object_get_string(v);
}

/* An optional boolean argument: false when absent. */
static bool arg_bool(struct json_object *args, const char *key, struct ctl_error *err, int *ret)
{
	struct json_object *v;

	if (!json_object_object_get_ex(args, key, &v) || json_object_is_type(v, json_type_null))
		return false;
	if (!json_object_is_type(v, json_type_boolean)) {
		*ret = ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL, "%s must be a boolean", key);
		return false;
	}
	return json_object_get_boolean(v);
}

static int parse_key(struct json_object *args, struct ipam_key *key, struct ctl_error *err)
{
	int ret = 0;

	key->network = arg_str(args, "network", true, err, &ret);
	if (!ret)
		key->container_id = arg_str(args, "containerID", true, err, &ret);
	if (!ret)
		key->ifname = arg_str(args, "ifName", true, err, &ret);
	return ret;
}

/* {"ipv4":[..],"ipv6":[..]} into name arrays (pointing into @args). */
static int parse_pool_names(struct json_object *args, struct ipam_request *req,
			    struct ctl_error *err)
{
	static const char *const fams[2] = { "ipv4", "ipv6" };
	struct json_object *pools, *list;

	if (!json_object_object_get_ex(args, "pools", &pools) ||
	    !json_object_is_type(pools, json_type_object))
		return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
				"pools must be an object {\"ipv4\":[..],\"ipv6\":[..]}");
	for (int f = 0; f < 2; f++) {
		const char ***names = f ? &req->pools_v6 : &req->pools_v4;
		size_t *n = f ? &req->npools_v6 : &req->npools_v4, len;

		if (!json_object_object_get_ex(pools, fams[f], &list) ||
		    json_object_is_type(list, json_type_null))
			continue;
		if (!json_object_is_type(list, json_type_array))
			return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
					"pools.%s must be an array of pool names", fams[f]);
		len = json_object_array_length(list);
		*names = calloc(len ? len : 1, sizeof(char *));
		if (!*names)
			return -ENOMEM;
		for (size_t i = 0; i < len; i++) {
			struct json_object *v = json_object_array_get_idx(list, i);

			if (!json_object_is_type(v, json_type_string))
				return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
						"pools.%s[%zu] must be a pool name", fams[f], i);
			(*names)[(*n)++] = json_object_get_string(v);
		}
	}
	return 0;
}

static void leases_to_result(struct agent *agent, const struct ipam_lease *leases, size_t n,
			     struct json_object *result)
{
	struct json_object *ips = json_object_new_array(), *routes = json_object_new_array();
	char addr[IPADDR_STRLEN + 8], gw[IPADDR_STRLEN];

	for (size_t i = 0; i < n; i++) {
		struct json_object *ip = json_object_new_object(), *pr;

		snprintf(addr + strlen(ipaddr_str(&leases[i].addr, addr)), 6, "/%d",
			 leases[i].prefix_len);
		json_object_object_add(ip, "address", json_object_new_string(addr));
		if (leases[i].has_gateway)
			json_object_object_add(ip, "gateway",
					       json_object_new_string(ipaddr_str(&leases[i].gateway, gw)));
		json_object_object_add(ip, "pool", json_object_new_string(leases[i].pool));
		json_object_object_add(ip, "new", json_object_new_boolean(leases[i].fresh));
		json_object_object_add(ip, "probed", json_object_new_boolean(leases[i].probed));
		json_object_array_add(ips, ip);
		pr = ipam_pool_routes(agent->ipam, leases[i].pool);
		for (size_t r = 0; r < json_object_array_length(pr); r++)
			json_object_array_add(routes, json_object_get(json_object_array_get_idx(pr, r)));
		json_object_put(pr);
	}
	json_object_object_add(result, "ips", ips);
	json_object_object_add(result, "routes", routes);
}

static const char *const ipam_error_codes[IPAM_ERR_MAX] = {
	[IPAM_ERR_EXHAUSTED] = CTL_ERR_EXHAUSTED,
	[IPAM_ERR_UNKNOWN_POOL] = CTL_ERR_UNKNOWN_POOL,
	[IPAM_ERR_NOT_ALLOWED] = CTL_ERR_NOT_ALLOWED,
	[IPAM_ERR_BAD_REQUEST] = CTL_ERR_BAD_REQUEST,
	[IPAM_ERR_STORE] = CTL_ERR_INTERNAL,
};

/* "conflictProbe": {"master", "windowMs"}: the plugin will probe the new
 * addresses on that wire unless the agent already did. */
static void mark_probed(struct agent *agent, struct json_object *args, struct ipam_lease *leases,
			size_t n)
{
	struct json_object *cp = json_object_object_get(args, "conflictProbe");
	const char *master = json_object_get_string(json_object_object_get(cp, "master"));
	int window = json_object_get_int(json_object_object_get(cp, "windowMs"));

	for (size_t i = 0; cp && i < n; i++)
		leases[i].probed = leases[i].fresh &&
				   conflict_probe_check(agent->conflict, leases[i].pool, master, window,
							&leases[i].addr);
}

static int op_ipam_allocate(struct agent *agent, struct json_object *args,
			    struct json_object *result, struct ctl_error *err)
{
	struct ipam_request req = { 0 };
	struct ipam_lease leases[2];
	enum ipam_error kind = IPAM_ERR_BAD_REQUEST;
	char msg[sizeof(err->message)];
	size_t n;
	int ret;

	ret = parse_key(args, &req.key, err);
	if (!ret)
		req.netns = arg_str(args, "netns", false, err, &ret);
	if (!ret)
		req.pod_namespace = arg_str(args, "podNamespace", false, err, &ret);
	if (!ret)
		req.pod_name = arg_str(args, "podName", false, err, &ret);
	if (!ret)
		req.pod_uid = arg_str(args, "podUID", false, err, &ret);
	if (!ret)
		req.defer_sync = arg_bool(args, "deferSync", err, &ret);
	if (!ret)
		ret = parse_pool_names(args, &req, err);
	if (!ret) {
		nic_teardown_wait(agent->teardown, &req.key);
		/* A full pool may only be waiting for links a DEL is deleting. */
		if (ipam_would_exhaust(agent->ipam, &req))
			nic_teardown_drain(agent->teardown, TEARDOWN_DRAIN_MS);
		ret = ipam_allocate(agent->ipam, &req, leases, &n, &kind, msg, sizeof(msg));
		if (ret) {
			ctl_fail(err, ipam_error_codes[kind], ret, "%s", msg);
		} else {
			mark_probed(agent, args, leases, n);
			leases_to_result(agent, leases, n, result);
			json_object_object_add(result, "durable",
					       json_object_new_boolean(!req.defer_sync));
		}
	}
	free(req.pools_v4);
	free(req.pools_v6);
	return ret;
}

/* The second half of a deferSync allocation. */
static int op_ipam_sync(struct agent *agent, struct json_object *args, struct json_object *result,
			struct ctl_error *err)
{
	int ret = ipam_sync(agent->ipam);

	(void)args;
	if (ret)
		return ctl_fail(err, CTL_ERR_INTERNAL, ret, "cannot make the allocations durable: %s",
				strerror(-ret));
	json_object_object_add(result, "durable", json_object_new_boolean(true));
	return 0;
}

static int op_ipam_get(struct agent *agent, struct json_object *args, struct json_object *result,
		       struct ctl_error *err)
{
	struct ipam_lease leases[2];
	struct ipam_key key;
	size_t n;
	int ret = parse_key(args, &key, err);

	if (ret)
		return ret;
	ret = ipam_get(agent->ipam, &key, leases, &n);
	if (ret && ret != -ENOENT)
		return ctl_fail(err, CTL_ERR_INTERNAL, ret, "store: %s", strerror(-ret));
	if (ret)
		return ctl_fail(err, CTL_ERR_NOT_FOUND, -ENOENT,
				"no allocation for network %s, container %s, %s", key.network,
				key.container_id, key.ifname);
	leases_to_result(agent, leases, n, result);
	return 0;
}

static int op_ipam_release(struct agent *agent, struct json_object *args,
			   struct json_object *result, struct ctl_error *err)
{
	struct json_object *released = json_object_new_array();
	struct ipam_key key;
	int ret = parse_key(args, &key, err);

	if (!ret) {
		ret = ipam_release(agent->ipam, &key, released);
		if (ret)
			ctl_fail(err, CTL_ERR_INTERNAL, ret, "release failed: %s", strerror(-ret));
	}
	json_object_object_add(result, "released", released);
	return ret;
}

static int op_ipam_gc(struct agent *agent, struct json_object *args, struct json_object *result,
		      struct ctl_error *err)
{
	struct json_object *valid, *released;
	const char *network;
	int ret = 0;

	network = arg_str(args, "network", true, err, &ret);
	if (ret)
		return ret;
	if (!json_object_object_get_ex(args, "valid", &valid) ||
	    !json_object_is_type(valid, json_type_array))
		return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
				"valid must be an array of {containerID, ifName}");
	released = json_object_new_array();
	ret = ipam_gc(agent->ipam, network, valid, released);
	json_object_object_add(result, "released", released);
	if (ret)
		return ctl_fail(err, CTL_ERR_INTERNAL, ret, "gc failed: %s", strerror(-ret));
	return 0;
}

static struct json_object *pools_json(struct agent *agent, const char *only)
{
	struct json_object *arr = json_object_new_array();
	struct ipam_pool_stats *st;
	size_t n;

	if (ipam_pool_stats(agent->ipam, &st, &n))
		return arr;
	for (size_t i = 0; i < n; i++) {
		struct json_object *o;

		if (only && strcmp(only, st[i].name))
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(st[i].name));
		json_object_object_add(o, "subnet", json_object_new_string(st[i].subnet));
		json_object_object_add(o, "gateway", json_object_new_string(st[i].gateway));
		json_object_object_add(o, "total", json_object_new_uint64(st[i].total));
		json_object_object_add(o, "used", json_object_new_uint64(st[i].used));
		json_object_object_add(o, "free", json_object_new_uint64(st[i].total - st[i].used));
		json_object_object_add(o, "exhausted", json_object_new_boolean(st[i].used >= st[i].total));
		json_object_array_add(arr, o);
	}
	free(st);
	return arr;
}

static int op_ipam_pools(struct agent *agent, struct json_object *args,
			 struct json_object *result, struct ctl_error *err)
{
	int ret = 0;
	const char *pool = arg_str(args, "pool", false, err, &ret);

	if (ret)
		return ret;
	json_object_object_add(result, "pools", pools_json(agent, pool));
	return 0;
}

static int op_ipam_allocations(struct agent *agent, struct json_object *args,
			       struct json_object *result, struct ctl_error *err)
{
	int ret = 0;
	const char *pool = arg_str(args, "pool", false, err, &ret);

	if (ret)
		return ret;
	json_object_object_add(result, "allocations", ipam_allocations(agent->ipam, pool));
	return 0;
}

static int op_status(struct agent *agent, struct json_object *args, struct json_object *result,
		     struct ctl_error *err)
{
	pthread_rwlock_rdlock(&agent->reload_lock);
	json_object_object_add(result, "nodeName", json_object_new_string(agent->cfg.node_name));
	json_object_object_add(result, "store", json_object_new_string(agent->cfg.store_type));
	pthread_rwlock_unlock(&agent->reload_lock);
	json_object_object_add(result, "version", json_object_new_string(RAILNET_VERSION));
	json_object_object_add(result, "uptimeSeconds",
			       json_object_new_int64((int64_t)(time(NULL) - agent->started)));
	json_object_object_add(result, "pools", pools_json(agent, NULL));
	json_object_object_add(result, "ipam", ipam_status_json(agent->ipam));
	return 0;
}

static int rdma_required(struct agent *agent, struct ctl_error *err)
{
	if (agent->rdma)
		return 0;
	return ctl_fail(err, CTL_ERR_NOT_FOUND, -ENOENT,
			"RDMA accounting is off (no \"rdma\" section in railnetd's configuration)");
}

static int op_rdma_attach(struct agent *agent, struct json_object *args,
			  struct json_object *result, struct ctl_error *err)
{
	struct rdma_attach_req req = { 0 };
	struct json_object *ips;
	char msg[sizeof(err->message)];
	bool not_found;
	int ret = rdma_required(agent, err);

	if (!ret)
		req.network = arg_str(args, "network", true, err, &ret);
	if (!ret)
		req.container_id = arg_str(args, "containerID", true, err, &ret);
	if (!ret)
		req.ifname = arg_str(args, "ifName", true, err, &ret);
	if (!ret)
		req.master = arg_str(args, "master", true, err, &ret);
	if (!ret)
		req.netns = arg_str(args, "netns", false, err, &ret);
	if (!ret)
		req.resource = arg_str(args, "rdmaResourceName", false, err, &ret);
	if (ret)
		return ret;
	if (json_object_object_get_ex(args, "ips", &ips) && !json_object_is_type(ips, json_type_null)) {
		if (!json_object_is_type(ips, json_type_array) || json_object_array_length(ips) > 4)
			return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
					"ips must be an array of at most 4 {address, gateway, pool}");
		for (size_t i = 0; i < json_object_array_length(ips); i++) {
			const char *a = arg_str(json_object_array_get_idx(ips, i), "address", true,
						err, &ret);

			if (ret)
				return ret;
			req.addrs[req.naddrs++] = a;
		}
	}
	ret = rdma_attach(agent->rdma, &req, result, &not_found, msg, sizeof(msg));
	if (ret)
		return ctl_fail(err, not_found ? CTL_ERR_NOT_FOUND : CTL_ERR_BAD_REQUEST, ret, "%s",
				msg);
	return 0;
}

static int op_rdma_detach(struct agent *agent, struct json_object *args,
			  struct json_object *result, struct ctl_error *err)
{
	struct ipam_key key;
	int ret = parse_key(args, &key, err);

	if (ret)
		return ret;
	/* idempotent, and harmless without RDMA: DEL must always succeed */
	json_object_object_add(result, "detached",
			       json_object_new_boolean(agent->rdma &&
						       rdma_detach(agent->rdma, key.network,
								   key.container_id, key.ifname)));
	return 0;
}

static int op_rdma_status(struct agent *agent, struct json_object *args,
			  struct json_object *result, struct ctl_error *err)
{
	struct json_object *st;
	int ret = rdma_required(agent, err);

	if (ret)
		return ret;
	st = rdma_status_json(agent->rdma);
	json_object_object_foreach(st, key, val)
		json_object_object_add(result, key, json_object_get(val));
	json_object_put(st);
	return 0;
}

/* The CNI plugin's DEL: the link's deletion and then the release happen
 * after the answer (agent/nic_teardown.h). */
static int op_nic_delete(struct agent *agent, struct json_object *args, struct json_object *result,
			 struct ctl_error *err)
{
	struct json_object *released = json_object_new_array();
	struct ipam_key key;
	const char *netns;
	bool deferred = false;
	int ret = parse_key(args, &key, err);

	netns = ret ? NULL : arg_str(args, "netns", false, err, &ret);
	if (!ret) {
		ret = nic_teardown_start(agent->teardown, &key, netns, &deferred, released);
		if (ret == -EINVAL)
			ctl_fail(err, CTL_ERR_BAD_REQUEST, ret,
				 "network, containerID or ifName too long or holds a '/'");
		else if (ret)
			ctl_fail(err, CTL_ERR_INTERNAL, ret, "nic.delete failed: %s", strerror(-ret));
	}
	json_object_object_add(result, "deferred", json_object_new_boolean(deferred));
	json_object_object_add(result, "released", released);
	return ret;
}

static const struct ctl_op ctl_ops[] = {
	{ "rdma.attach", op_rdma_attach },
	{ "rdma.detach", op_rdma_detach },
	{ "rdma.status", op_rdma_status },
	{ "ipam.allocate", op_ipam_allocate },
	{ "ipam.sync", op_ipam_sync },
	{ "ipam.release", op_ipam_release },
	{ "ipam.get", op_ipam_get },
	{ "ipam.gc", op_ipam_gc },
	{ "ipam.pools", op_ipam_pools },
	{ "ipam.allocations", op_ipam_allocations },
	{ "status", op_status },
	{ "nic.delete", op_nic_delete },
	{ "datapath.prepare", datapath_op_prepare },
	{ "datapath.attach", datapath_op_attach },
	{ "datapath.detach", datapath_op_detach },
	{ "datapath.get", datapath_op_get },
	{ "datapath.list", datapath_op_list },
};

const struct ctl_op *ctl_op_find(const char *name)
{
	for (size_t i = 0; i < sizeof(ctl_ops) / sizeof(ctl_ops[0]); i++)
		if (!strcmp(ctl_ops[i].name, name))
			return &ctl_ops[i];
	return NULL;
}

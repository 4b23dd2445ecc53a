// SPDX-License-Identifier: Apache-2.0
#include "agent/config.h"

#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/conflict_probe.h"
#include "agent/datapath.h"
#include "agent/rdma_config.h"
#include "common/protocol.h"

/* Top-level keys: the agent's own, then the sections other modules read. */
static const char *const known_keys[] = {
	"nodeName", "socket", "stateDir", "bpffs", "metrics", "store", "pools",
	"reservedIPs", "reconcile", "gateway", "datapath", "rdma", "conflictProbe", NULL,
};

/* Bounds that keep times in range of what consumes them (poll's int). */
#define MAX_INTERVAL_MS (24LL * 3600 * 1000)
#define MAX_HOLD_MS (30LL * 24 * 3600 * 1000)
#define MAX_COMPACT_RECORDS 1000000000LL
#define DEFAULT_STATEFUL_HOLD_MS (10LL * 60 * 1000)

struct parser {
	char *errbuf;
	size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int fail(struct parser *ps, const char *path,
							const char *fmt, ...)
{
	size_t n = (size_t)snprintf(ps->errbuf, ps->errlen, "%s: ", path);
	va_list ap;

	if (n < ps->errlen) {
		va_start(ap, fmt);
		vsnprintf(ps->errbuf + n, ps->errlen - n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static const char *type_name(struct json_object *v)
{
	return json_type_to_name(json_object_get_type(v));
}

/* Every key of @obj must be one of @known (NULL-terminated): a typo in a
 * ConfigMap would otherwise pass and silently leave the default in force. */
static int check_keys(struct parser *ps, struct json_object *obj, const char *path,
		      const char *const *known)
{
	char p[128], list[256];
	size_t n = 0;

	json_object_object_foreach(obj, key, val) {
		bool ok = false;

		(void)val;
		for (int i = 0; known[i]; i++)
			ok |= !strcmp(key, known[i]);
		if (ok)
			continue;
		list[0] = '\0';
		for (int i = 0; known[i] && n < sizeof(list); i++)
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
					      known[i]);
		if (path[0])
			snprintf(p, sizeof(p), "%s.%s", path, key);
		else
			snprintf(p, sizeof(p), "%s", key);
		return fail(ps, p, "unknown field (known: %s)", list);
	}
	return 0;
}

/* A string field; absent leaves *out alone. */
static int get_string(struct parser *ps, struct json_object *obj, const char *key,
		      const char *path, bool required, char **out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			return fail(ps, path, "is required");
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return fail(ps, path, "must be a string, not %s", type_name(v));
	if (!json_object_get_string_len(v) && required)
		return fail(ps, path, "must not be empty");
	free(*out);
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : -ENOMEM;
}

static int get_array(struct parser *ps, struct json_object *obj, const char *key,
		     const char *path, struct json_object **out)
{
	struct json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_array))
		return fail(ps, path, "must be an array, not %s", type_name(v));
	*out = v;
	return 0;
}

/* An integer in [0, @max] counted in @unit; absent leaves *out alone. */
static int get_count(struct parser *ps, struct json_object *obj, const char *key,
		     const char *path, const char *unit, long long max, long long *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return fail(ps, path, "must be a non-negative integer (%s)", unit);
	/* json-c saturates what does not fit an int64 to INT64_MAX */
	if (json_object_get_int64(v) > max)
		return fail(ps, path, "%s is over the limit of %lld %s", json_object_get_string(v),
			    max, unit);
	*out = json_object_get_int64(v);
	return 0;
}

/* A list of "a-b" / "a" strings of one family. */
static int parse_ranges(struct parser *ps, struct json_object *arr, const char *path, int family,
			struct iprange **out, size_t *n)
{
	size_t len = arr ? json_object_array_length(arr) : 0;
	char p[128];

	*n = 0;
	*out = calloc(len ? len : 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);
		int err;

		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		if (!json_object_is_type(v, json_type_string))
			return fail(ps, p, "must be a string, not %s", type_name(v));
		err = iprange_parse(json_object_get_string(v), family, &(*out)[i]);
		if (err == -EAFNOSUPPORT || (err == -EINVAL && family))
			return fail(ps, p, "\"%s\" is not an IPv%d address or an \"a-b\" range",
				    json_object_get_string(v), family == AF_INET ? 4 : 6);
		if (err == -ERANGE)
			return fail(ps, p, "\"%s\": the first address is above the last",
				    json_object_get_string(v));
		if (err)
			return fail(ps, p, "\"%s\" is not an IP address or an \"a-b\" range",
				    json_object_get_string(v));
		(*n)++;
	}
	return 0;
}

static bool range_in_prefix(const struct iprange *r, const struct ipprefix *pfx)
{
	struct ipaddr a = { r->first, r->family }, b = { r->last, r->family };

	return ipprefix_contains(pfx, &a) && ipprefix_contains(pfx, &b);
}

static int parse_routes(struct parser *ps, struct json_object *arr, const char *path,
			const struct ipam_pool_config *pc, struct json_object **out)
{
	static const char *const route_keys[] = { "dst", "gw", NULL };
	size_t len = arr ? json_object_array_length(arr) : 0;
	char p[128];

	*out = json_object_new_array();
	for (size_t i = 0; i < len; i++) {
		struct json_object *v = json_object_array_get_idx(arr, i), *route;
		char *dst = NULL, *gw = NULL;
		struct ipprefix pfx;
		struct ipaddr a;
		int err;

		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		if (!json_object_is_type(v, json_type_object))
			return fail(ps, p, "must be an object {\"dst\":..,\"gw\":..}");
		err = check_keys(ps, v, p, route_keys);
		if (err)
			return err;
		snprintf(p, sizeof(p), "%s[%zu].dst", path, i);
		err = get_string(ps, v, "dst", p, true, &dst);
		if (!err && ipprefix_parse(dst, &pfx))
			err = fail(ps, p, "\"%s\" is not a CIDR prefix (host bits must be zero)", dst);
		if (!err && pfx.net.family != pc->subnet.net.family)
			err = fail(ps, p, "\"%s\" is not of the pool's family", dst);
		snprintf(p, sizeof(p), "%s[%zu].gw", path, i);
		if (!err)
			err = get_string(ps, v, "gw", p, false, &gw);
		if (!err && gw && (ipaddr_parse(gw, &a) || !ipprefix_contains(&pc->subnet, &a)))
			err = fail(ps, p, "\"%s\" is not an address in the pool's subnet", gw);
		if (!err) {
			route = json_object_new_object();
			json_object_object_add(route, "dst", json_object_new_string(dst));
			if (gw)
				json_object_object_add(route, "gw", json_object_new_string(gw));
			json_object_array_add(*out, route);
		}
		free(dst);
		free(gw);
		if (err)
			return err;
	}
	return 0;
}

static int parse_pool(struct parser *ps, struct json_object *obj, size_t idx,
		      struct ipam_pool_config *pc)
{
	static const char *const pool_keys[] = { "name",    "subnet",   "ips",
						 "excludeIPs", "gateway", "routes",
						 "nodeName", "stateful", "statefulHoldMs",
						 NULL };
	struct json_object *arr, *v;
	char path[96], *s = NULL;
	regex_t re;
	bool ok;
	int err;

	snprintf(path, sizeof(path), "pools[%zu]", idx);
	if (!json_object_is_type(obj, json_type_object))
		return fail(ps, path, "must be an object");
	err = check_keys(ps, obj, path, pool_keys);
	if (err)
		return err;

	snprintf(path, sizeof(path), "pools[%zu].name", idx);
	err = get_string(ps, obj, "name", path, true, &pc->name);
	if (err)
		return err;
	regcomp(&re, "^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$", REG_EXTENDED | REG_NOSUB);
	ok = !regexec(&re, pc->name, 0, NULL, 0);
	regfree(&re);
	if (!ok)
		return fail(ps, path, "\"%s\" must be a DNS-1123 name (lower case, digits, '-', '.')",
			    pc->name);

	snprintf(path, sizeof(path), "pools[%zu].subnet", idx);
	err = get_string(ps, obj, "subnet", path, true, &s);
	if (err)
		return err;
	err = ipprefix_parse(s, &pc->subnet);
	if (err)
		err = fail(ps, path, "\"%s\" is not a CIDR prefix (host bits must be zero)", s);
	free(s);
	s = NULL;
	if (err)
		return err;

	snprintf(path, sizeof(path), "pools[%zu].ips", idx);
	err = get_array(ps, obj, "ips", path, &arr);
	if (!err && (!arr || !json_object_array_length(arr)))
		err = fail(ps, path, "is required: the addresses the pool hands out");
	if (!err)
		err = parse_ranges(ps, arr, path, pc->subnet.net.family, &pc->ranges, &pc->nranges);
	for (size_t i = 0; !err && i < pc->nranges; i++) {
		if (!range_in_prefix(&pc->ranges[i], &pc->subnet)) {
			snprintf(path, sizeof(path), "pools[%zu].ips[%zu]", idx, i);
			err = fail(ps, path, "\"%s\" is outside subnet",
				   json_object_get_string(json_object_array_get_idx(arr, i)));
		}
	}
	if (err)
		return err;

	snprintf(path, sizeof(path), "pools[%zu].excludeIPs", idx);
	err = get_array(ps, obj, "excludeIPs", path, &arr);
	if (!err)
		err = parse_ranges(ps, arr, path, pc->subnet.net.family, &pc->excludes,
				   &pc->nexcludes);
	/* Outside the subnet an exclusion excludes nothing: a typo. */
	for (size_t i = 0; !err && i < pc->nexcludes; i++) {
		if (!range_in_prefix(&pc->excludes[i], &pc->subnet)) {
			snprintf(path, sizeof(path), "pools[%zu].excludeIPs[%zu]", idx, i);
			err = fail(ps, path, "\"%s\" is outside subnet",
				   json_object_get_string(json_object_array_get_idx(arr, i)));
		}
	}
	if (err)
		return err;

	snprintf(path, sizeof(path), "pools[%zu].gateway", idx);
	err = get_string(ps, obj, "gateway", path, false, &s);
	if (!err && s) {
		if (ipaddr_parse_family(s, pc->subnet.net.family, &pc->gateway) ||
		    !ipprefix_contains(&pc->subnet, &pc->gateway))
			err = fail(ps, path, "\"%s\" is not an address in subnet", s);
		pc->has_gateway = true;
	}
	free(s);
	if (err)
		return err;

	snprintf(path, sizeof(path), "pools[%zu].routes", idx);
	err = get_array(ps, obj, "routes", path, &arr);
	if (!err)
		err = parse_routes(ps, arr, path, pc, &pc->routes);
	if (err)
		return err;

	snprintf(path, sizeof(path), "pools[%zu].nodeName", idx);
	err = get_array(ps, obj, "nodeName", path, &arr);
	if (err)
		return err;
	pc->nnode_names = 0;
	pc->node_names = calloc(arr ? json_object_array_length(arr) + 1 : 1, sizeof(char *));
	if (!pc->node_names)
		return -ENOMEM;
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		v = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v)) {
			snprintf(path, sizeof(path), "pools[%zu].nodeName[%zu]", idx, i);
			return fail(ps, path, "must be a node name");
		}
		pc->node_names[pc->nnode_names++] = strdup(json_object_get_string(v));
	}

	if (json_object_object_get_ex(obj, "stateful", &v)) {
		snprintf(path, sizeof(path), "pools[%zu].stateful", idx);
		if (!json_object_is_type(v, json_type_boolean))
			return fail(ps, path, "must be true or false");
		pc->stateful = json_object_get_boolean(v);
	}
	snprintf(path, sizeof(path), "pools[%zu].statefulHoldMs", idx);
	pc->stateful_hold_ms = DEFAULT_STATEFUL_HOLD_MS;
	return get_count(ps, obj, "statefulHoldMs", path, "milliseconds", MAX_HOLD_MS,
			 &pc->stateful_hold_ms);
}

static int parse_pools(struct parser *ps, struct json_object *root, struct ipam_config *ic)
{
	struct json_object *arr;
	size_t n;
	int err;

	err = get_array(ps, root, "pools", "pools", &arr);
	if (err)
		return err;
	n = arr ? json_object_array_length(arr) : 0;
	ic->pools = calloc(n ? n : 1, sizeof(*ic->pools));
	if (!ic->pools)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		ic->npools++;
		err = parse_pool(ps, json_object_array_get_idx(arr, i), i, &ic->pools[i]);
		if (err)
			return err;
		for (size_t j = 0; j < i; j++) {
			char path[64];

			snprintf(path, sizeof(path), "pools[%zu].name", i);
			if (!strcmp(ic->pools[j].name, ic->pools[i].name))
				return fail(ps, path, "\"%s\" is also the name of pools[%zu]",
					    ic->pools[i].name, j);
		}
	}
	err = get_array(ps, root, "reservedIPs", "reservedIPs", &arr);
	if (!err)
		err = parse_ranges(ps, arr, "reservedIPs", 0, &ic->reserved, &ic->nreserved);
	return err;
}

/* "host:port": an IP address (IPv6 in brackets), "localhost" or nothing
 * (every address), and a port.  Names that need DNS are refused: whether
 * they resolve is not known until the agent starts, and then too late. */
static int check_listen(struct parser *ps, const char *path, const char *listen)
{
	const char *colon = strrchr(listen, ':');
	char host[IPADDR_STRLEN + 2];
	struct ipaddr a;
	size_t hlen;
	long port;

	if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    strlen(colon + 1) > 5 || (port = atol(colon + 1)) < 1 || port > 65535)
		return fail(ps, path, "\"%s\" is not host:port (a port 1-65535)", listen);
	hlen = (size_t)(colon - listen);
	if (hlen >= sizeof(host))
		return fail(ps, path, "\"%s\": the host is not an IP address", listen);
	memcpy(host, listen, hlen);
	host[hlen] = '\0';
	if (!hlen || !strcmp(host, "localhost"))
		return 0;
	if (host[0] == '[' && host[hlen - 1] == ']') {
		host[hlen - 1] = '\0';
		if (!ipaddr_parse_family(host + 1, AF_INET6, &a))
			return 0;
	} else if (!ipaddr_parse_family(host, AF_INET, &a)) {
		return 0;
	}
	return fail(ps, path,
		    "\"%s\": the host is not an IPv4 address, [IPv6 address], localhost or empty",
		    listen);
}

static int parse_metrics(struct parser *ps, struct json_object *root, struct agent_config *cfg)
{
	static const char *const metrics_keys[] = { "listen", NULL };
	struct json_object *m;

	if (!json_object_object_get_ex(root, "metrics", &m))
		return 0;
	if (!json_object_is_type(m, json_type_object))
		return fail(ps, "metrics", "must be an object {\"listen\":\"host:port\"}");
	if (check_keys(ps, m, "metrics", metrics_keys))
		return -EINVAL;
	if (get_string(ps, m, "listen", "metrics.listen", false, &cfg->metrics_listen))
		return -EINVAL;
	if (cfg->metrics_listen)
		return check_listen(ps, "metrics.listen", cfg->metrics_listen);
	return 0;
}

/* A path field that, when present, names something. */
static int get_path(struct parser *ps, struct json_object *root, const char *key, char **out)
{
	int err = get_string(ps, root, key, key, false, out);

	if (!err && *out && !(*out)[0])
		return fail(ps, key, "must not be empty (leave it out for the default)");
	return err;
}

static int set_default(char **field, const char *value)
{
	if (*field)
		return 0;
	*field = strdup(value);
	return *field ? 0 : -ENOMEM;
}

int agent_config_parse(struct json_object *root, struct agent_config *cfg, char *errbuf,
		       size_t errlen)
{
	struct parser ps = { errbuf, errlen };
	struct json_object *v;
	char host[256];
	int err;

	memset(cfg, 0, sizeof(*cfg));
	cfg->reconcile_interval_ms = 30000;
	cfg->reconcile_grace_ms = 60000;
	cfg->ipam.compact_records = 1024;
	cfg->root = json_object_get(root);
	if (!json_object_is_type(root, json_type_object)) {
		err = fail(&ps, "(root)", "must be a JSON object");
		goto err;
	}
	err = check_keys(&ps, root, "", known_keys);
	if (!err)
		err = get_string(&ps, root, "nodeName", "nodeName", false, &cfg->node_name);
	if (!err && cfg->node_name && !cfg->node_name[0])
		err = fail(&ps, "nodeName", "must not be empty (leave it out for $NODE_NAME, else "
					    "the hostname)");
	if (!err)
		err = get_path(&ps, root, "socket", &cfg->socket);
	/* Found out at bind() otherwise, without the field's name. */
	if (!err && cfg->socket && strlen(cfg->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		err = fail(&ps, "socket", "\"%.40s...\" is %zu bytes: a unix socket path holds at most %zu",
			   cfg->socket, strlen(cfg->socket),
			   sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	if (!err)
		err = get_path(&ps, root, "stateDir", &cfg->state_dir);
	if (!err)
		err = get_path(&ps, root, "bpffs", &cfg->bpffs);
	if (!err)
		err = parse_metrics(&ps, root, cfg);
	if (err)
		goto err;
	if (json_object_object_get_ex(root, "store", &v)) {
		static const char *const store_keys[] = { "type", "compactRecords", NULL };

		if (!json_object_is_type(v, json_type_object)) {
			err = fail(&ps, "store", "must be an object {\"type\":\"local\"}");
			goto err;
		}
		err = check_keys(&ps, v, "store", store_keys);
		if (!err)
			err = get_string(&ps, v, "type", "store.type", false, &cfg->store_type);
		if (!err)
			err = get_count(&ps, v, "compactRecords", "store.compactRecords", "records",
					MAX_COMPACT_RECORDS, &cfg->ipam.compact_records);
		if (err)
			goto err;
	}
	if (!err)
		err = set_default(&cfg->store_type, "local");
	if (!err && strcmp(cfg->store_type, "local")) {
		err = fail(&ps, "store.type", "\"%s\" is not a store this agent has (local)",
			   cfg->store_type);
		goto err;
	}
	if (json_object_object_get_ex(root, "reconcile", &v)) {
		static const char *const reconcile_keys[] = { "intervalMs", "graceMs", NULL };

		if (!json_object_is_type(v, json_type_object)) {
			err = fail(&ps, "reconcile", "must be an object");
			goto err;
		}
		err = check_keys(&ps, v, "reconcile", reconcile_keys);
		if (!err)
			err = get_count(&ps, v, "intervalMs", "reconcile.intervalMs", "milliseconds",
					MAX_INTERVAL_MS, &cfg->reconcile_interval_ms);
		if (!err)
			err = get_count(&ps, v, "graceMs", "reconcile.graceMs", "milliseconds",
					MAX_HOLD_MS, &cfg->reconcile_grace_ms);
		if (err)
			goto err;
	}
	err = parse_pools(&ps, root, &cfg->ipam);
	if (err)
		goto err;
	/* the module reads its section when it starts; a bad one is refused here,
	 * at load and on reload alike */
	{
		struct conflict_probe_config conflict;
		struct datapath_config datapath;
		struct rdma_config rdma;

		err = rdma_config_parse(json_object_object_get(root, "rdma"), &rdma, errbuf, errlen);
		rdma_config_free(&rdma);
		if (!err)
			err = datapath_config_parse(root, &datapath, errbuf, errlen);
		if (!err)
			err = conflict_probe_config_parse(root, &conflict, errbuf, errlen);
		if (err)
			goto err;
	}

	if (!cfg->node_name) {
		const char *env = getenv("NODE_NAME");

		if (env && *env)
			err = set_default(&cfg->node_name, env);
		else if (!gethostname(host, sizeof(host)))
			err = set_default(&cfg->node_name, host);
		else
			err = -errno;
	}
	if (!err)
		err = set_default(&cfg->socket, CTL_DEFAULT_SOCKET);
	if (!err)
		err = set_default(&cfg->state_dir, "/var/lib/railnet");
	if (!err)
		err = set_default(&cfg->bpffs, "/sys/fs/bpf/railnet");
	if (err)
		goto err;
	return 0;
err:
	agent_config_free(cfg);
	return err;
}

int agent_config_load(const char *path, struct agent_config *cfg, char *errbuf, size_t errlen)
{
	struct json_object *root = json_object_from_file(path);
	int err;

	if (!root) {
		snprintf(errbuf, errlen, "%s: %s", path, json_util_get_last_err());
		return -EINVAL;
	}
	err = agent_config_parse(root, cfg, errbuf, errlen);
	json_object_put(root);
	return err;
}

void agent_config_free(struct agent_config *cfg)
{
	free(cfg->node_name);
	free(cfg->socket);
	free(cfg->state_dir);
	free(cfg->bpffs);
	free(cfg->metrics_listen);
	free(cfg->store_type);
	ipam_config_free(&cfg->ipam);
	json_object_put(cfg->root);
	memset(cfg, 0, sizeof(*cfg));
}

// SPDX-License-Identifier: Apache-2.0
/* The network configuration and environment the runtime gives the plugin. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni.h"
#include "common/mac.h"
#include "common/protocol.h"

const char *const cni_supported_versions[] = { "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", NULL };

int cni_fail(struct cni_error *e, int code, const char *msg, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	snprintf(e->msg, sizeof(e->msg), "%s", msg);
	e->details[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(e->details, sizeof(e->details), fmt, ap);
		va_end(ap);
	}
	return -code;
}

bool cni_version_supported(const char *v)
{
	for (int i = 0; cni_supported_versions[i]; i++)
		if (!strcmp(v, cni_supported_versions[i]))
			return true;
	return false;
}

int cni_version_cmp(const char *a, const char *b)
{
	int x[3] = { 0 }, y[3] = { 0 };

	sscanf(a, "%d.%d.%d", &x[0], &x[1], &x[2]);
	sscanf(b, "%d.%d.%d", &y[0], &y[1], &y[2]);
	for (int i = 0; i < 3; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

static int bad_field(struct cni_error *e, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad_field(struct cni_error *e, const char *field, const char *fmt, ...)
{
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return cni_fail(e, CNI_ERR_INVALID_CONFIG, "invalid network configuration", "%s: %s", field,
			why);
}

/* A string field copied into @out; absent keeps the default. */
static int get_string(struct json_object *root, const char *key, char *out, size_t size,
		      bool required, struct cni_error *e)
{
	struct json_object *v;

	if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			return bad_field(e, key, "is required");
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return bad_field(e, key, "must be a string");
	if ((size_t)json_object_get_string_len(v) >= size)
		return bad_field(e, key, "is longer than %zu characters", size - 1);
	strcpy(out, json_object_get_string(v));
	return 0;
}

static int get_bool(struct json_object *root, const char *key, bool *out, struct cni_error *e)
{
	struct json_object *v;

	if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return bad_field(e, key, "must be true or false");
	*out = json_object_get_boolean(v);
	return 0;
}

static int get_int(struct json_object *root, const char *key, int min, int max, int *out,
		   struct cni_error *e)
{
	struct json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return bad_field(e, key, "must be an integer");
	n = json_object_get_int64(v);
	if (n < min || n > max)
		return bad_field(e, key, "%lld is outside %d..%d", (long long)n, min, max);
	*out = (int)n;
	return 0;
}

static int parse_pools(struct json_object *root, struct netconf *nc, struct cni_error *e)
{
	static const char *const fams[2] = { "ipv4", "ipv6" };
	struct json_object *pools, *list;

	if (!json_object_object_get_ex(root, "ippools", &pools) ||
	    json_object_is_type(pools, json_type_null))
		return bad_field(e, "ippools", "is required: {\"ipv4\":[pool names],\"ipv6\":[...]}");
	if (!json_object_is_type(pools, json_type_object))
		return bad_field(e, "ippools", "must be an object {\"ipv4\":[..],\"ipv6\":[..]}");
	for (int f = 0; f < 2; f++) {
		const char **names = f ? nc->pools_v6 : nc->pools_v4;
		size_t *n = f ? &nc->npools_v6 : &nc->npools_v4;
		char field[32];

		snprintf(field, sizeof(field), "ippools.%s", fams[f]);
		if (!json_object_object_get_ex(pools, fams[f], &list) ||
		    json_object_is_type(list, json_type_null))
			continue;
		if (!json_object_is_type(list, json_type_array))
			return bad_field(e, field, "must be an array of pool names");
		if (json_object_array_length(list) > CNI_MAX_POOLS)
			return bad_field(e, field, "lists more than %d pools", CNI_MAX_POOLS);
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			struct json_object *v = json_object_array_get_idx(list, i);

			if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
				return bad_field(e, field, "element %zu must be a pool name", i);
			names[(*n)++] = json_object_get_string(v);
		}
	}
	if (!nc->npools_v4 && !nc->npools_v6)
		return bad_field(e, "ippools", "names no pool");
	return 0;
}

int netconf_parse(struct json_object *root, struct netconf *nc, struct cni_error *e)
{
	struct json_object *v, *rc, *caps;
	char mode[16] = "bridge", buf[32] = "";
	int err;

	memset(nc, 0, sizeof(*nc));
	nc->root = json_object_get(root);
	nc->detect_gateway = true;
	nc->conflict_window_ms = 100;
	nc->route_metric = -1;
	snprintf(nc->socket, sizeof(nc->socket), "%s", CTL_DEFAULT_SOCKET);

	if (!json_object_is_type(root, json_type_object))
		return cni_fail(e, CNI_ERR_DECODE, "cannot decode the network configuration",
				"it is not a JSON object");
	if ((err = get_string(root, "cniVersion", nc->cni_version, sizeof(nc->cni_version), true, e)))
		return err;
	if (!cni_version_supported(nc->cni_version))
		return cni_fail(e, CNI_ERR_INCOMPATIBLE_VERSION, "incompatible CNI version",
				"cniVersion %s is not one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0",
				nc->cni_version);
	if ((err = get_string(root, "name", nc->name, sizeof(nc->name), true, e)) ||
	    (err = get_string(root, "master", nc->master, sizeof(nc->master), true, e)) ||
	    (err = get_string(root, "mode", mode, sizeof(mode), false, e)) ||
	    (err = get_int(root, "mtu", 0, 65535, &nc->mtu, e)) ||
	    (err = get_int(root, "txQueueLen", 0, 1 << 20, &nc->txqueuelen, e)) ||
	    (err = get_bool(root, "detectGateway", &nc->detect_gateway, e)) ||
	    (err = get_bool(root, "detectIPConflict", &nc->detect_conflict, e)) ||
	    (err = get_int(root, "ipConflictWindowMs", 1, 10000, &nc->conflict_window_ms, e)) ||
	    (err = get_int(root, "routeMetric", 0, 1 << 30, &nc->route_metric, e)) ||
	    (err = get_string(root, "podMACPrefix", buf, sizeof(buf), false, e)) ||
	    (err = get_string(root, "rdmaResourceName", nc->rdma_resource, sizeof(nc->rdma_resource),
			      false, e)) ||
	    (err = get_string(root, "socket", nc->socket, sizeof(nc->socket), false, e)))
		return err;

	/* 0 takes the master's; below 68 no IPv4 packet fits (RFC 791). */
	if (nc->mtu && nc->mtu < 68)
		return bad_field(e, "mtu", "%d is below 68 (0 takes the master's)", nc->mtu);
	if (!strcmp(mode, "bridge"))
		nc->mode = MODE_BRIDGE;
	else if (!strcmp(mode, "private"))
		nc->mode = MODE_PRIVATE;
	else if (!strcmp(mode, "vepa"))
		nc->mode = MODE_VEPA;
	else if (!strcmp(mode, "passthru"))
		nc->mode = MODE_PASSTHRU;
	else
		return bad_field(e, "mode", "\"%s\" is not bridge, private, vepa or passthru", mode);

	if (buf[0]) {
		if (mac_parse(buf, nc->mac_prefix, 2))
			return bad_field(e, "podMACPrefix", "\"%s\" is not two hex bytes like \"0a:1b\"",
					 buf);
		if (nc->mac_prefix[0] & 1)
			return bad_field(e, "podMACPrefix", "\"%s\" is a multicast prefix", buf);
		nc->has_mac_prefix = true;
	}
	if ((err = parse_pools(root, nc, e)))
		return err;

	rc = json_object_object_get(root, "runtimeConfig");
	caps = json_object_object_get(root, "capabilities");
	if (rc && !json_object_is_type(rc, json_type_object))
		return bad_field(e, "runtimeConfig", "must be an object");
	if (caps && !json_object_is_type(caps, json_type_object))
		return bad_field(e, "capabilities", "must be an object");
	/* Addresses come from the agent's pools: a runtime asking for static
	 * ones (Multus' "ips" capability) must hear that it gets none. */
	if (json_object_get_boolean(json_object_object_get(caps, "ips")) &&
	    json_object_object_get_ex(rc, "ips", &v) && !json_object_is_type(v, json_type_null) &&
	    !json_object_is_type(v, json_type_array))
		return bad_field(e, "runtimeConfig.ips", "must be an array of addresses");
	if (json_object_get_boolean(json_object_object_get(caps, "ips")) &&
	    json_object_object_get_ex(rc, "ips", &v) && json_object_is_type(v, json_type_array) &&
	    json_object_array_length(v))
		return cni_fail(e, CNI_ERR_UNSUPPORTED_FIELD, "unsupported field",
				"runtimeConfig.ips = %s: railnet assigns addresses from its pools "
				"only (ippools); drop the ips capability or the static addresses",
				json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	/* runtimeConfig.mac counts only with the capability declared. */
	if (json_object_object_get_ex(rc, "mac", &v) &&
	    json_object_get_boolean(json_object_object_get(caps, "mac"))) {
		if (!json_object_is_type(v, json_type_string) ||
		    mac_parse(json_object_get_string(v), nc->runtime_mac, 6))
			return bad_field(e, "runtimeConfig.mac", "is not a MAC address");
		if (nc->runtime_mac[0] & 1)
			return bad_field(e, "runtimeConfig.mac", "is a multicast address");
		nc->has_runtime_mac = true;
	}
	if (json_object_object_get_ex(root, "prevResult", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_object))
			return bad_field(e, "prevResult", "must be an object");
		for (const char *const *k = (const char *const[]){ "interfaces", "ips", "routes", NULL };
		     *k; k++) {
			struct json_object *m;

			if (json_object_object_get_ex(v, *k, &m) &&
			    !json_object_is_type(m, json_type_array)) {
				char field[32];

				snprintf(field, sizeof(field), "prevResult.%s", *k);
				return bad_field(e, field, "must be an array");
			}
		}
		nc->prev_result = v;
	}
	for (const char *const *key = (const char *const[]){ "cni.dev/valid-attachments",
							     "cni.dev/attachments", NULL };
	     *key && !nc->valid_attachments; key++) {
		if (!json_object_object_get_ex(root, *key, &v))
			continue;
		if (!json_object_is_type(v, json_type_array))
			return bad_field(e, *key, "must be an array");
		nc->valid_attachments = v;
	}
	return 0;
}

void netconf_free(struct netconf *nc)
{
	json_object_put(nc->root);
	nc->root = NULL;
}

/* K8S_POD_NAMESPACE=..;K8S_POD_NAME=..: values we know go to @env; an
 * unknown key is an error unless IgnoreUnknown is set. */
static int parse_cni_args(const char *args, struct cni_env *env, struct cni_error *e)
{
	char *copy, *save = NULL, *tok, bad[128] = "";
	bool ignore_unknown = false;

	if (!args || !*args)
		return 0;
	copy = strdup(args);
	if (!copy)
		return cni_fail(e, CNI_ERR_IO, "out of memory", NULL);
	for (tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(tok, '=');

		if (!eq) {
			free(copy);
			return cni_fail(e, CNI_ERR_INVALID_ENV, "invalid CNI_ARGS",
					"\"%s\" is not KEY=VALUE", tok);
		}
		*eq = '\0';
		if (!strcmp(tok, "IgnoreUnknown"))
			ignore_unknown = !strcasecmp(eq + 1, "true") || !strcmp(eq + 1, "1");
		else if (!strcmp(tok, "K8S_POD_NAMESPACE"))
			snprintf(env->pod_namespace, sizeof(env->pod_namespace), "%s", eq + 1);
		else if (!strcmp(tok, "K8S_POD_NAME"))
			snprintf(env->pod_name, sizeof(env->pod_name), "%s", eq + 1);
		else if (!strcmp(tok, "K8S_POD_UID"))
			snprintf(env->pod_uid, sizeof(env->pod_uid), "%s", eq + 1);
		else if (strcmp(tok, "K8S_POD_INFRA_CONTAINER_ID") && !bad[0])
			snprintf(bad, sizeof(bad), "%s", tok);
	}
	free(copy);
	if (bad[0] && !ignore_unknown)
		return cni_fail(e, CNI_ERR_INVALID_ENV, "invalid CNI_ARGS",
				"unknown key %s (set IgnoreUnknown=true to allow it)", bad);
	return 0;
}

/* The spec's container ID: [a-zA-Z0-9][a-zA-Z0-9_.-]* */
static bool valid_container_id(const char *id)
{
	if (!isalnum((unsigned char)*id))
		return false;
	for (; *id; id++)
		if (!isalnum((unsigned char)*id) && !strchr("_.-", *id))
			return false;
	return true;
}

int cni_env_parse(const char *command, struct cni_env *env, struct cni_error *e)
{
	bool needs_container = !strcmp(command, "ADD") || !strcmp(command, "DEL") ||
			       !strcmp(command, "CHECK");
	bool needs_netns = !strcmp(command, "ADD") || !strcmp(command, "CHECK");

	memset(env, 0, sizeof(*env));
	env->command = command;
	env->container_id = getenv("CNI_CONTAINERID");
	env->netns = getenv("CNI_NETNS");
	env->ifname = getenv("CNI_IFNAME");
	env->path = getenv("CNI_PATH");
	if (!needs_container)
		return 0;
	if (!env->container_id || !*env->container_id)
		return cni_fail(e, CNI_ERR_INVALID_ENV, "invalid environment",
				"CNI_CONTAINERID is required");
	if (!valid_container_id(env->container_id))
		return cni_fail(e, CNI_ERR_INVALID_ENV, "invalid environment",
				"CNI_CONTAINERID \"%.80s\" must start with a letter or digit and hold only "
				"letters, digits, '_', '.' and '-'", env->container_id);
	if (!env->ifname || !*env->ifname)
		return cni_fail(e, CNI_ERR_INVALID_ENV, "invalid environment", "CNI_IFNAME is required");
	if (strlen(env->ifname) >= IFNAMSIZ || strchr(env->ifname, '/') ||
	    strpbrk(env->ifname, " \t\n:") || !strcmp(env->ifname, ".") || !strcmp(env->ifname, ".."))
		return cni_fail(e, CNI_ERR_INVALID_ENV, "invalid environment",
				"CNI_IFNAME \"%s\" is not a valid interface name (at most 15 characters, "
				"no '/', ':' or spaces)", env->ifname);
	if (needs_netns && (!env->netns || !*env->netns))
		return cni_fail(e, CNI_ERR_INVALID_ENV, "invalid environment", "CNI_NETNS is required");
	return parse_cni_args(getenv("CNI_ARGS"), env, e);
}

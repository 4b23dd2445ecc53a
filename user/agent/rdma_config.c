// SPDX-License-Identifier: Apache-2.0
#include "agent/rdma_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rparser {
	char *errbuf;
	size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int fail(struct rparser *ps, const char *path,
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

static int check_keys(struct rparser *ps, struct json_object *obj, const char *path,
		      const char *const *known)
{
	json_object_object_foreach(obj, key, val) {
		size_t i;

		(void)val;
		for (i = 0; known[i] && strcmp(known[i], key); i++)
			;
		if (!known[i])
			return fail(ps, path, "unknown field \"%s\"", key);
	}
	return 0;
}

static int get_str(struct rparser *ps, struct json_object *obj, const char *key,
		   const char *path, char **out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
		return fail(ps, path, "must be a non-empty string, not %s", type_name(v));
	free(*out);
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : -ENOMEM;
}

static int get_nonneg(struct rparser *ps, struct json_object *obj, const char *key,
		      const char *path, long long *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return fail(ps, path, "must be an integer, not %s", type_name(v));
	if (json_object_get_int64(v) < 0)
		return fail(ps, path, "must be >= 0, not %lld", (long long)json_object_get_int64(v));
	*out = json_object_get_int64(v);
	return 0;
}

static int get_strv(struct rparser *ps, struct json_object *obj, const char *key,
		    const char *path, struct rdma_strv *sv)
{
	struct json_object *arr;
	char p[256];
	size_t len;

	if (!json_object_object_get_ex(obj, key, &arr) || json_object_is_type(arr, json_type_null))
		return 0;
	if (!json_object_is_type(arr, json_type_array))
		return fail(ps, path, "must be an array of strings, not %s", type_name(arr));
	len = json_object_array_length(arr);
	sv->v = calloc(len ? len : 1, sizeof(char *));
	if (!sv->v)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);

		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
			return fail(ps, p, "must be a non-empty string, not %s", type_name(v));
		sv->v[sv->n] = strdup(json_object_get_string(v));
		if (!sv->v[sv->n])
			return -ENOMEM;
		sv->n++;
	}
	return 0;
}

static void strv_free(struct rdma_strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = 0;
}

bool rdma_strv_contains(const struct rdma_strv *sv, const char *s)
{
	for (size_t i = 0; i < sv->n; i++)
		if (!strcmp(sv->v[i], s))
			return true;
	return false;
}

static bool selectors_empty(const struct rdma_selectors *s)
{
	return !s->vendors.n && !s->device_ids.n && !s->drivers.n && !s->if_names.n &&
	       !s->link_types.n;
}

static bool valid_resource_name(const char *name)
{
	if (!*name)
		return false;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_'))
			return false;
	return true;
}

static int parse_selectors(struct rparser *ps, struct json_object *obj, const char *path,
			   struct rdma_selectors *sel)
{
	static const char *const keys[] = { "vendors", "deviceIDs", "drivers", "ifNames",
					    "linkTypes", NULL };
	struct { const char *key; struct rdma_strv *sv; } lists[] = {
		{ "vendors", &sel->vendors },	{ "deviceIDs", &sel->device_ids },
		{ "drivers", &sel->drivers },	{ "ifNames", &sel->if_names },
		{ "linkTypes", &sel->link_types },
	};
	char p[256];
	int err;

	if (!json_object_is_type(obj, json_type_object))
		return fail(ps, path, "must be an object, not %s", type_name(obj));
	err = check_keys(ps, obj, path, keys);
	for (size_t i = 0; !err && i < sizeof(lists) / sizeof(lists[0]); i++) {
		if (snprintf(p, sizeof(p), "%s.%s", path, lists[i].key) >= (int)sizeof(p))
			return -ENAMETOOLONG;
		err = get_strv(ps, obj, lists[i].key, p, lists[i].sv);
	}
	return err;
}

static int parse_resource(struct rparser *ps, struct json_object *obj, size_t idx,
			  struct rdma_config *cfg)
{
	static const char *const keys[] = { "resourcePrefix", "resourceName", "rdmaHcaMax",
					    "selectors", "devices", NULL };
	struct rdma_resource_config *rc = &cfg->resources[idx];
	struct rdma_strv devices = { 0 };
	struct json_object *v;
	char path[96], p[256];
	int err;

	snprintf(path, sizeof(path), "rdma.configList[%zu]", idx);
	if (!json_object_is_type(obj, json_type_object))
		return fail(ps, path, "must be an object, not %s", type_name(obj));
	err = check_keys(ps, obj, path, keys);
	if (err)
		return err;
	snprintf(p, sizeof(p), "%s.resourceName", path);
	if (!json_object_object_get_ex(obj, "resourceName", &v))
		return fail(ps, p, "is required");
	err = get_str(ps, obj, "resourceName", p, &rc->name);
	if (err)
		return err;
	if (!valid_resource_name(rc->name))
		return fail(ps, p, "\"%s\" contains invalid characters (allowed: ^[a-zA-Z0-9_]+$)",
			    rc->name);
	for (size_t i = 0; i < idx; i++)
		if (!strcmp(cfg->resources[i].name, rc->name))
			return fail(ps, p, "\"%s\" already exists (configList[%zu])", rc->name, i);
	snprintf(p, sizeof(p), "%s.resourcePrefix", path);
	err = get_str(ps, obj, "resourcePrefix", p, &rc->prefix);
	if (!err && !rc->prefix && !(rc->prefix = strdup(RDMA_DEFAULT_PREFIX)))
		err = -ENOMEM;
	if (err)
		return err;
	snprintf(p, sizeof(p), "%s.rdmaHcaMax", path);
	err = get_nonneg(ps, obj, "rdmaHcaMax", p, &rc->hca_max);
	if (err)
		return err;
	if (rc->hca_max > RDMA_MAX_HCA_MAX)
		return fail(ps, p, "%lld is above the limit of %d", rc->hca_max, RDMA_MAX_HCA_MAX);
	if (json_object_object_get_ex(obj, "selectors", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		snprintf(p, sizeof(p), "%s.selectors", path);
		err = parse_selectors(ps, v, p, &rc->sel);
		if (err)
			return err;
	}
	snprintf(p, sizeof(p), "%s.devices", path);
	err = get_strv(ps, obj, "devices", p, &devices);
	if (err) {
		strv_free(&devices);
		return err;
	}
	if (selectors_empty(&rc->sel) && !devices.n) {
		strv_free(&devices);
		return fail(ps, path, "neither \"selectors\" nor the deprecated \"devices\" is set");
	}
	if (!selectors_empty(&rc->sel) && devices.n) {
		strv_free(&devices);
		return fail(ps, p, "cannot be combined with \"selectors\" (use selectors.ifNames)");
	}
	if (devices.n) /* the deprecated form: devices are interface names */
		rc->sel.if_names = devices;
	return 0;
}

/* A path, or "" to turn the PodResources API off. */
static int get_podres_socket(struct rparser *ps, struct json_object *obj, char **out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, "podResourcesSocket", &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return fail(ps, "rdma.podResourcesSocket", "must be a string, not %s", type_name(v));
	if (json_object_get_string_len(v) && json_object_get_string(v)[0] != '/')
		return fail(ps, "rdma.podResourcesSocket",
			    "\"%s\" must be an absolute path (or \"\" to turn it off)",
			    json_object_get_string(v));
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : -ENOMEM;
}

int rdma_config_parse(struct json_object *section, struct rdma_config *cfg, char *errbuf,
		      size_t errlen)
{
	static const char *const keys[] = { "periodicUpdateInterval", "sysfsRoot", "devRoot",
					    "devicePluginDir", "podResourcesSocket",
					    "podResourcesInterval", "configList", NULL };
	struct rparser ps = { errbuf, errlen };
	struct json_object *list;
	size_t len;
	int err;

	memset(cfg, 0, sizeof(*cfg));
	cfg->update_interval_s = RDMA_DEFAULT_INTERVAL_S;
	cfg->pod_resources_interval_s = RDMA_DEFAULT_PODRES_S;
	if (!section || json_object_is_type(section, json_type_null))
		return 0;
	cfg->enabled = true;
	if (!json_object_is_type(section, json_type_object)) {
		err = fail(&ps, "rdma", "must be an object, not %s", type_name(section));
		goto fail;
	}
	err = check_keys(&ps, section, "rdma", keys);
	if (!err)
		err = get_nonneg(&ps, section, "periodicUpdateInterval",
				 "rdma.periodicUpdateInterval", &cfg->update_interval_s);
	if (!err)
		err = get_str(&ps, section, "sysfsRoot", "rdma.sysfsRoot", &cfg->sysfs_root);
	if (!err)
		err = get_str(&ps, section, "devRoot", "rdma.devRoot", &cfg->dev_root);
	if (!err)
		err = get_str(&ps, section, "devicePluginDir", "rdma.devicePluginDir",
			      &cfg->plugin_dir);
	if (!err)
		err = get_podres_socket(&ps, section, &cfg->pod_resources_socket);
	if (!err)
		err = get_nonneg(&ps, section, "podResourcesInterval", "rdma.podResourcesInterval",
				 &cfg->pod_resources_interval_s);
	if (!err && (cfg->pod_resources_interval_s < 1 || cfg->pod_resources_interval_s > 3600))
		err = fail(&ps, "rdma.podResourcesInterval", "must be 1 to 3600 seconds, not %lld",
			   cfg->pod_resources_interval_s);
	if (err)
		goto fail;
	if ((!cfg->sysfs_root && !(cfg->sysfs_root = strdup("/sys"))) ||
	    (!cfg->pod_resources_socket &&
	     !(cfg->pod_resources_socket = strdup(RDMA_DEFAULT_PODRES_SOCK))) ||
	    (!cfg->dev_root && !(cfg->dev_root = strdup("/dev"))) ||
	    (!cfg->plugin_dir && !(cfg->plugin_dir = strdup(RDMA_DEFAULT_PLUGIN_DIR)))) {
		err = -ENOMEM;
		goto fail;
	}
	if (!json_object_object_get_ex(section, "configList", &list) ||
	    !json_object_is_type(list, json_type_array) || !json_object_array_length(list)) {
		err = fail(&ps, "rdma.configList",
			   "must be a non-empty array of resources (no resources configured)");
		goto fail;
	}
	len = json_object_array_length(list);
	if (len > RDMA_MAX_RESOURCES) {
		err = fail(&ps, "rdma.configList", "at most %d resources, not %zu",
			   RDMA_MAX_RESOURCES, len);
		goto fail;
	}
	cfg->resources = calloc(len, sizeof(*cfg->resources));
	if (!cfg->resources) {
		err = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < len; i++) {
		cfg->nresources = i + 1;
		err = parse_resource(&ps, json_object_array_get_idx(list, i), i, cfg);
		if (err)
			goto fail;
	}
	return 0;
fail:
	rdma_config_free(cfg);
	return err;
}

void rdma_config_free(struct rdma_config *cfg)
{
	for (size_t i = 0; i < cfg->nresources; i++) {
		struct rdma_resource_config *rc = &cfg->resources[i];

		free(rc->prefix);
		free(rc->name);
		strv_free(&rc->sel.vendors);
		strv_free(&rc->sel.device_ids);
		strv_free(&rc->sel.drivers);
		strv_free(&rc->sel.if_names);
		strv_free(&rc->sel.link_types);
	}
	free(cfg->resources);
	free(cfg->sysfs_root);
	free(cfg->dev_root);
	free(cfg->plugin_dir);
	free(cfg->pod_resources_socket);
	memset(cfg, 0, sizeof(*cfg));
}

void rdma_resource_full_name(const struct rdma_resource_config *rc, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", rc->prefix, rc->name);
}

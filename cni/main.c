// SPDX-License-Identifier: Apache-2.0
/* railnet: the CNI plugin for rail NICs (docs/cni.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"

#define MAX_STDIN (1 << 20)

static char *read_stdin(size_t *len)
{
	char *buf = malloc(MAX_STDIN + 1);
	size_t n = 0;
	ssize_t r;

	if (!buf)
		return NULL;
	while (n < MAX_STDIN && (r = read(STDIN_FILENO, buf + n, MAX_STDIN - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	*len = n;
	return buf;
}

static int emit(struct json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return fflush(stdout) ? 1 : 0;
}

static int fail(const char *version, const struct cni_error *e)
{
	emit(cni_error_json(version, e));
	return 1;
}

static struct json_object *version_json(const char *version)
{
	struct json_object *o = json_object_new_object(), *list = json_object_new_array();

	json_object_object_add(o, "cniVersion", json_object_new_string(version));
	for (int i = 0; cni_supported_versions[i]; i++)
		json_object_array_add(list, json_object_new_string(cni_supported_versions[i]));
	json_object_object_add(o, "supportedVersions", list);
	return o;
}

/* The verbs a spec version introduced: CHECK in 0.4.0, STATUS and GC in
 * 1.1.0.  An older config asking for them is error 1. */
static int verb_needs_version(const char *command, const char *version, struct cni_error *e)
{
	static const struct {
		const char *verb, *since;
	} since[] = { { "CHECK", "0.4.0" }, { "STATUS", "1.1.0" }, { "GC", "1.1.0" } };

	for (size_t i = 0; i < sizeof(since) / sizeof(since[0]); i++)
		if (!strcmp(command, since[i].verb) && cni_version_cmp(version, since[i].since) < 0)
			return cni_fail(e, CNI_ERR_INCOMPATIBLE_VERSION, "incompatible CNI version",
					"%s needs cniVersion %s or later; the config says %s",
					command, since[i].since, version);
	return 0;
}

int main(void)
{
	const char *command = getenv("CNI_COMMAND");
	struct json_tokener *tok;
	struct json_object *root, *out = NULL, *v;
	struct cni_error e = { 0 };
	struct netconf nc = { 0 };
	struct cni_env env;
	const char *version = "1.1.0";
	size_t len;
	char *in;
	int err;

	if (!command || !*command) {
		cni_fail(&e, CNI_ERR_INVALID_ENV, "invalid environment",
			 "CNI_COMMAND is required (ADD, DEL, CHECK, VERSION, STATUS, GC)");
		return fail(version, &e);
	}
	in = read_stdin(&len);
	tok = json_tokener_new();
	root = in ? json_tokener_parse_ex(tok, in, (int)len) : NULL;
	if (root && json_tokener_get_parse_end(tok) < len &&
	    strspn(in + json_tokener_get_parse_end(tok), " \t\r\n") !=
		    len - json_tokener_get_parse_end(tok)) {
		json_object_put(root);
		root = NULL;
	}
	json_tokener_free(tok);
	free(in);

	if (!strcmp(command, "VERSION")) {
		if (root && json_object_object_get_ex(root, "cniVersion", &v) &&
		    json_object_is_type(v, json_type_string))
			version = json_object_get_string(v);
		err = emit(version_json(version));
		json_object_put(root);
		return err;
	}
	if (!root) {
		cni_fail(&e, CNI_ERR_DECODE, "cannot decode the network configuration",
			 "stdin is not one JSON object");
		return fail(version, &e);
	}
	err = netconf_parse(root, &nc, &e);
	json_object_put(root);
	if (!err && nc.cni_version[0])
		version = nc.cni_version;
	if (err)
		goto out;
	err = cni_env_parse(command, &env, &e);
	if (err)
		goto out;
	err = verb_needs_version(command, nc.cni_version, &e);
	if (err)
		goto out;

	if (!strcmp(command, "ADD"))
		err = cmd_add(&nc, &env, &out, &e);
	else if (!strcmp(command, "DEL"))
		err = cmd_del(&nc, &env, &e);
	else if (!strcmp(command, "CHECK"))
		err = cmd_check(&nc, &env, &e);
	else if (!strcmp(command, "STATUS"))
		err = cmd_status(&nc, &e);
	else if (!strcmp(command, "GC"))
		err = cmd_gc(&nc, &e);
	else
		err = cni_fail(&e, CNI_ERR_INVALID_ENV, "invalid environment",
			       "CNI_COMMAND %s is not ADD, DEL, CHECK, VERSION, STATUS or GC", command);
out:
	if (err) {
		err = fail(version, &e);
	} else if (out) {
		err = emit(out);
	}
	netconf_free(&nc);
	return err;
}

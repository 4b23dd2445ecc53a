// SPDX-License-Identifier: Apache-2.0
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/ctl_client.h"
#include "common/protocol.h"

static const struct {
	const char *agent;
	int cni;
	const char *msg;
} code_map[] = {
	{ CTL_ERR_EXHAUSTED, RAILNET_ERR_POOL_EXHAUSTED, "IP pool exhausted" },
	{ CTL_ERR_UNKNOWN_POOL, RAILNET_ERR_UNKNOWN_POOL, "unknown IP pool" },
	{ CTL_ERR_NOT_ALLOWED, RAILNET_ERR_POOL_NOT_ALLOWED, "IP pool not allowed on this node" },
	{ CTL_ERR_BUSY, CNI_ERR_TRY_AGAIN, "railnetd is busy" },
	{ CTL_ERR_BAD_REQUEST, CNI_ERR_INVALID_CONFIG, "railnetd rejected the request" },
	{ CTL_ERR_NOT_FOUND, CNI_ERR_UNKNOWN_CONTAINER, "railnetd holds nothing for this container" },
	{ CTL_ERR_VERSION, CNI_ERR_INCOMPATIBLE_VERSION, "railnetd speaks another protocol version" },
};

int agent_code_to_cni(const char *code)
{
	for (size_t i = 0; i < sizeof(code_map) / sizeof(code_map[0]); i++)
		if (!strcmp(code, code_map[i].agent))
			return code_map[i].cni;
	return RAILNET_ERR_AGENT;
}

/* Fills @e for a failed call of @op (@ret from the client). */
static int call_failed(const struct netconf *nc, const char *op, int ret,
		       const struct ctl_error *err, struct cni_error *e)
{
	e->agent_code[0] = '\0';
	if (ret != -CTL_E_AGENT)
		return cni_fail(e, CNI_ERR_TRY_AGAIN, "railnetd is not reachable, try again later",
				"%s on %s: %s (is the railnetd DaemonSet pod running on this node?)",
				op, nc->socket, strerror(-ret));
	for (size_t i = 0; i < sizeof(code_map) / sizeof(code_map[0]); i++)
		if (!strcmp(err->code, code_map[i].agent)) {
			ret = cni_fail(e, code_map[i].cni, code_map[i].msg, "%s", err->message);
			goto out;
		}
	ret = cni_fail(e, RAILNET_ERR_AGENT, "railnetd failed", "%s: %s (%s)", op, err->message,
		       err->code);
out:
	snprintf(e->agent_code, sizeof(e->agent_code), "%s", err->code);
	return ret;
}

int agent_call(const struct netconf *nc, const char *op, struct json_object *args,
	       struct json_object **result, struct cni_error *e)
{
	struct ctl_error err;
	int ret = ctl_call(nc->socket, op, args, AGENT_TIMEOUT_MS, result, &err);

	return ret ? call_failed(nc, op, ret, &err, e) : 0;
}

int agent_send(const struct netconf *nc, const char *op, struct json_object *args,
	       struct ctl_conn **conn, struct cni_error *e)
{
	int ret = *conn ? 0 : ctl_connect(nc->socket, AGENT_TIMEOUT_MS, conn);

	if (!ret) {
		ret = ctl_send(*conn, op, args, AGENT_TIMEOUT_MS);
		if (ret) {
			ctl_close(*conn);
			*conn = NULL;
		}
	}
	return ret ? call_failed(nc, op, ret, NULL, e) : 0;
}

int agent_receive(const struct netconf *nc, const char *op, struct ctl_conn *conn,
		  struct json_object **result, struct cni_error *e)
{
	struct ctl_error err;
	int ret = ctl_receive(conn, AGENT_TIMEOUT_MS, result, &err);

	return ret ? call_failed(nc, op, ret, &err, e) : 0;
}

void agent_close(struct ctl_conn **conn)
{
	ctl_close(*conn);
	*conn = NULL;
}

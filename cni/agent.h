/* SPDX-License-Identifier: Apache-2.0 */
/* The plugin's calls to railnetd, with agent errors mapped to CNI codes. */
#ifndef RAILNET_CNI_AGENT_H
#define RAILNET_CNI_AGENT_H

#include <json-c/json.h>

#include "cni.h"
#include "common/ctl_client.h"

#define AGENT_TIMEOUT_MS 5000

/* 0 and *result, or a negative code with @e filled (11 when the agent
 * can't be reached). */
int agent_call(const struct netconf *nc, const char *op, struct json_object *args,
	       struct json_object **result, struct cni_error *e);
/* agent_call in two halves: the request goes out on *@conn (connected
 * first when NULL; closed and NULL again when the send fails), the caller
 * works, then collects the answer.  Requests on one connection are answered
 * in order.  agent_close() ends it. */
int agent_send(const struct netconf *nc, const char *op, struct json_object *args,
	       struct ctl_conn **conn, struct cni_error *e);
int agent_receive(const struct netconf *nc, const char *op, struct ctl_conn *conn,
		  struct json_object **result, struct cni_error *e);
void agent_close(struct ctl_conn **conn);
/* Maps an agent error code ("pool_exhausted") to a CNI code (101). */
int agent_code_to_cni(const char *code);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Client side of the railnetd control protocol (docs/protocol.md).  Linked
 * into the static CNI plugin: depends on json-c and libc only. */
#ifndef RAILNET_CTL_CLIENT_H
#define RAILNET_CTL_CLIENT_H

#include <json-c/json.h>

struct ctl_error {
	char code[32];     /* one of CTL_ERR_* in common/protocol.h */
	char message[512];
};

/* The agent answered with an error: details in struct ctl_error. */
#define CTL_E_AGENT 10000

struct ctl_conn;

/* Connects to the agent's socket.  -ENOENT/-ECONNREFUSED: agent not running. */
int ctl_connect(const char *socket_path, int timeout_ms, struct ctl_conn **conn);
void ctl_close(struct ctl_conn *conn);

/* Sends one request and waits for its answer.  Returns 0 with *result (owned
 * by the caller, json_object_put it) on success, -CTL_E_AGENT with @err filled
 * when the agent answered an error, another negative errno when the transport
 * failed (-ETIMEDOUT, -ECONNRESET, ...). @args is not consumed. */
int ctl_request(struct ctl_conn *conn, const char *op, struct json_object *args, int timeout_ms,
		struct json_object **result, struct ctl_error *err);

/* ctl_request in two halves, so that a caller can work while the agent
 * does (the CNI plugin creates the link while the allocation is made
 * durable). */
int ctl_send(struct ctl_conn *conn, const char *op, struct json_object *args, int timeout_ms);
int ctl_receive(struct ctl_conn *conn, int timeout_ms, struct json_object **result,
		struct ctl_error *err);

/* ctl_connect + ctl_request + ctl_close. */
int ctl_call(const char *socket_path, const char *op, struct json_object *args, int timeout_ms,
	     struct json_object **result, struct ctl_error *err);

#endif

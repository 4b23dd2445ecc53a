/* SPDX-License-Identifier: Apache-2.0 */
/* Just enough gRPC for the kubelet's device plugin API: HTTP/2 without TLS
 * (h2c, prior knowledge) over unix sockets with nghttp2, length-prefixed
 * messages, status in trailers.  Messages are opaque bytes (protobuf-c
 * packs them).  Not thread-safe: a connection and its calls belong to the
 * thread that polls the connection's fd. */
#ifndef RAILNET_AGENT_GRPC_H
#define RAILNET_AGENT_GRPC_H

#include <stddef.h>
#include <stdint.h>

#define GRPC_STATUS_OK		    0
#define GRPC_STATUS_INVALID_ARGUMENT 3
#define GRPC_STATUS_NOT_FOUND	    5
#define GRPC_STATUS_UNIMPLEMENTED   12
#define GRPC_STATUS_INTERNAL	    13
#define GRPC_STATUS_UNAVAILABLE	    14

struct grpc_conn;
struct grpc_call; /* a server-side request stream */

struct grpc_server_ops {
	/* A request arrived whole (its stream half-closed): answer now with
	 * grpc_call_send/finish, or keep @call for a server stream.  @msg is
	 * NULL (and @len 0) when the request carried no message. */
	void (*on_call)(void *ctx, struct grpc_call *call, const char *path, const uint8_t *msg,
			size_t len);
	/* @call is gone (finished, cancelled or its connection closed). */
	void (*on_close)(void *ctx, struct grpc_call *call);
};

/* Takes @fd (an accepted connection). */
int grpc_conn_new(int fd, const struct grpc_server_ops *ops, void *ctx, struct grpc_conn **conn);
int grpc_conn_fd(const struct grpc_conn *conn);
/* Reads what @conn's fd has and answers; a negative return means the
 * connection is over: free it. */
int grpc_conn_on_readable(struct grpc_conn *conn);
/* Sends what is queued (after grpc_call_send/finish outside on_call). */
int grpc_conn_flush(struct grpc_conn *conn);
/* Closes the fd; on_close runs for each call still open. */
void grpc_conn_free(struct grpc_conn *conn);

struct grpc_conn *grpc_call_conn(const struct grpc_call *call);
/* Queues one message (response headers go first, once). */
int grpc_call_send(struct grpc_call *call, const uint8_t *msg, size_t len);
/* Queues the trailers that end the call. */
int grpc_call_finish(struct grpc_call *call, int status, const char *message);

/* One unary call on the unix socket @sock_path: connect, send, wait up to
 * @timeout_ms for the answer.  Returns 0 with *status (the grpc-status) and,
 * when status is OK, the response message in *resp (malloc'd); a negative
 * errno for transport failures.  @errmsg gets grpc-message or the reason. */
int grpc_unary_call(const char *sock_path, const char *path, const uint8_t *req, size_t len,
		    int timeout_ms, int *status, uint8_t **resp, size_t *resp_len, char *errmsg,
		    size_t errlen);

#endif

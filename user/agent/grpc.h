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

/* A unary call from a poll loop (the client side): connect to the unix
 * socket @sock_path, send, read the answer as the fd becomes readable.
 *
 *   grpc_ucall_start(sock, path, req, len, timeout_ms, &c);
 *   loop: poll grpc_ucall_fd(c) for grpc_ucall_events(c), then (and at
 *         least once in a while, for the deadline) grpc_ucall_step(c)
 *         until it stops answering -EINPROGRESS;
 *   grpc_ucall_result(c, ...); grpc_ucall_free(c);
 *
 * grpc_ucall_start fails only when the call cannot be placed (memory); a
 * connection that fails ends the call, as its result. */
struct grpc_ucall;

int grpc_ucall_start(const char *sock_path, const char *path, const uint8_t *req, size_t len,
		     int timeout_ms, struct grpc_ucall **call);
/* -1 once the call is over. */
int grpc_ucall_fd(const struct grpc_ucall *call);
short grpc_ucall_events(const struct grpc_ucall *call);
/* -EINPROGRESS while the call runs; then 0 (the peer answered: see the
 * status) or a negative errno for transport failures and the deadline. */
int grpc_ucall_step(struct grpc_ucall *call);
/* The outcome: the return of the last step, *status the grpc-status (-1
 * without one), *resp the response message (valid until free, NULL unless
 * OK), *errmsg grpc-message or the transport failure. */
int grpc_ucall_result(const struct grpc_ucall *call, int *status, const uint8_t **resp,
		      size_t *resp_len, const char **errmsg);
void grpc_ucall_free(struct grpc_ucall *call);

#endif

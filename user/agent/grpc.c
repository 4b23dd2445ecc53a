// SPDX-License-Identifier: Apache-2.0
#include "agent/grpc.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GRPC_MAX_MESSAGE (4u << 20)

struct bytes {
	uint8_t *data;
	size_t len, off;
};

static int bytes_append(struct bytes *b, const uint8_t *data, size_t len)
{
	uint8_t *grown;

	if (b->len + len > GRPC_MAX_MESSAGE + 5)
		return -EMSGSIZE;
	grown = realloc(b->data, b->len + len + 1);
	if (!grown)
		return -ENOMEM;
	b->data = grown;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

/* Appends one length-prefixed, uncompressed gRPC message. */
static int bytes_append_message(struct bytes *b, const uint8_t *msg, size_t len)
{
	uint8_t prefix[5] = { 0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			      (uint8_t)len };
	int err = bytes_append(b, prefix, sizeof(prefix));

	return err ? err : bytes_append(b, msg, len);
}

/* The single message of a unary request/response, or -EBADMSG. */
static int bytes_message(const struct bytes *b, const uint8_t **msg, size_t *len)
{
	size_t n;

	*msg = NULL;
	*len = 0;
	if (!b->len)
		return 0;
	if (b->len < 5 || b->data[0] != 0)
		return -EBADMSG; /* short, or compressed (never negotiated) */
	n = (size_t)b->data[1] << 24 | (size_t)b->data[2] << 16 | (size_t)b->data[3] << 8 |
	    b->data[4];
	if (n != b->len - 5)
		return -EBADMSG;
	*msg = b->data + 5;
	*len = n;
	return 0;
}

#define NV(n, v)                                                                           \
	{ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME }

/* --- server ------------------------------------------------------------------ */

struct grpc_call {
	struct grpc_conn *conn;
	struct grpc_call *next;
	int32_t stream_id;
	char path[128];
	struct bytes in, out;
	bool responded, finishing, dispatched;
	int status;
	char message[256];
};

struct grpc_conn {
	int fd;
	nghttp2_session *session;
	const struct grpc_server_ops *ops;
	void *ctx;
	struct grpc_call *calls;
};

static void call_unlink_free(struct grpc_call *call)
{
	struct grpc_call **p;

	for (p = &call->conn->calls; *p; p = &(*p)->next)
		if (*p == call) {
			*p = call->next;
			break;
		}
	free(call->in.data);
	free(call->out.data);
	free(call);
}

static ssize_t send_to(int fd, const uint8_t *data, size_t len)
{
	ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

	if (n < 0)
		return errno == EAGAIN ? NGHTTP2_ERR_WOULDBLOCK : NGHTTP2_ERR_CALLBACK_FAILURE;
	return n;
}

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *u)
{
	return send_to(((struct grpc_conn *)u)->fd, data, len);
}

static ssize_t call_read_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
			    uint32_t *flags, nghttp2_data_source *src, void *u)
{
	struct grpc_call *call = src->ptr;
	size_t n = call->out.len - call->out.off;
	char status[12];

	if (n > length)
		n = length;
	if (n) {
		memcpy(buf, call->out.data + call->out.off, n);
		call->out.off += n;
		if (call->out.off == call->out.len)
			call->out.off = call->out.len = 0;
		return (ssize_t)n;
	}
	if (!call->finishing)
		return NGHTTP2_ERR_DEFERRED;
	snprintf(status, sizeof(status), "%d", call->status);
	{
		nghttp2_nv trailers[] = { NV("grpc-status", status),
					  NV("grpc-message", call->message) };

		if (nghttp2_submit_trailer(s, stream_id, trailers, call->message[0] ? 2 : 1))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	return 0;
}

static int call_respond(struct grpc_call *call)
{
	nghttp2_nv hdrs[] = { NV(":status", "200"), NV("content-type", "application/grpc") };
	nghttp2_data_provider prd = { .source.ptr = call, .read_callback = call_read_cb };

	if (call->responded)
		return nghttp2_session_resume_data(call->conn->session, call->stream_id) ? -EIO : 0;
	call->responded = true;
	return nghttp2_submit_response(call->conn->session, call->stream_id, hdrs, 2, &prd) ? -EIO : 0;
}

int grpc_call_send(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	int err;

	if (call->finishing)
		return -EPIPE;
	err = bytes_append_message(&call->out, msg, len);
	return err ? err : call_respond(call);
}

int grpc_call_finish(struct grpc_call *call, int status, const char *message)
{
	if (call->finishing)
		return 0;
	call->finishing = true;
	call->status = status;
	snprintf(call->message, sizeof(call->message), "%s", message ? message : "");
	return call_respond(call);
}

struct grpc_conn *grpc_call_conn(const struct grpc_call *call)
{
	return call->conn;
}

static int srv_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *u)
{
	struct grpc_conn *conn = u;
	struct grpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = calloc(1, sizeof(*call));
	if (!call)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	call->conn = conn;
	call->stream_id = frame->hd.stream_id;
	call->next = conn->calls;
	conn->calls = call;
	nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, call);
	return 0;
}

static int srv_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
		      size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *u)
{
	struct grpc_call *call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);

	if (call && namelen == 5 && !memcmp(name, ":path", 5))
		snprintf(call->path, sizeof(call->path), "%.*s", (int)valuelen, (const char *)value);
	return 0;
}

static int srv_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
		    size_t len, void *u)
{
	struct grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);

	if (call && bytes_append(&call->in, data, len))
		return nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id,
						 NGHTTP2_REFUSED_STREAM) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
	return 0;
}

static int srv_frame(nghttp2_session *s, const nghttp2_frame *frame, void *u)
{
	struct grpc_conn *conn = u;
	struct grpc_call *call;
	const uint8_t *msg;
	size_t len;

	if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
	if (!call || call->dispatched)
		return 0;
	call->dispatched = true;
	if (bytes_message(&call->in, &msg, &len))
		return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
					"not one uncompressed gRPC message") ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
	conn->ops->on_call(conn->ctx, call, call->path, msg, len);
	return 0;
}

static int srv_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t code, void *u)
{
	struct grpc_conn *conn = u;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);

	if (call) {
		nghttp2_session_set_stream_user_data(s, stream_id, NULL);
		conn->ops->on_close(conn->ctx, call);
		call_unlink_free(call);
	}
	return 0;
}

int grpc_conn_new(int fd, const struct grpc_server_ops *ops, void *ctx, struct grpc_conn **out)
{
	nghttp2_settings_entry settings[] = { { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 64 } };
	struct timeval send_timeout = { .tv_sec = 1 };
	nghttp2_session_callbacks *cbs;
	struct grpc_conn *conn;
	int err = -ENOMEM;

	conn = calloc(1, sizeof(*conn));
	if (!conn || nghttp2_session_callbacks_new(&cbs))
		goto fail;
	nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, srv_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, srv_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, srv_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, srv_frame);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, srv_stream_close);
	/* a peer that stops reading must not stall the thread that serves it */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
	conn->fd = fd;
	conn->ops = ops;
	conn->ctx = ctx;
	err = nghttp2_session_server_new(&conn->session, cbs, conn) ? -ENOMEM : 0;
	nghttp2_session_callbacks_del(cbs);
	if (err)
		goto fail;
	if (nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, settings, 1) ||
	    grpc_conn_flush(conn)) {
		err = -EIO;
		goto fail;
	}
	*out = conn;
	return 0;
fail:
	if (conn && conn->session)
		nghttp2_session_del(conn->session);
	free(conn);
	close(fd);
	return err;
}

int grpc_conn_fd(const struct grpc_conn *conn)
{
	return conn->fd;
}

int grpc_conn_flush(struct grpc_conn *conn)
{
	return nghttp2_session_send(conn->session) ? -EIO : 0;
}

int grpc_conn_on_readable(struct grpc_conn *conn)
{
	uint8_t buf[16384];
	ssize_t n = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (nghttp2_session_mem_recv(conn->session, buf, (size_t)n) < 0)
		return -EPROTO;
	if (grpc_conn_flush(conn))
		return -EIO;
	if (!nghttp2_session_want_read(conn->session) && !nghttp2_session_want_write(conn->session))
		return -ECONNRESET;
	return 0;
}

void grpc_conn_free(struct grpc_conn *conn)
{
	if (!conn)
		return;
	while (conn->calls) {
		conn->ops->on_close(conn->ctx, conn->calls);
		call_unlink_free(conn->calls);
	}
	nghttp2_session_del(conn->session);
	close(conn->fd);
	free(conn);
}

/* --- client ------------------------------------------------------------------ */

/* A unary call driven by its owner's poll loop, so that the thread placing
 * it keeps serving meanwhile: the kubelet answers Register only after it has
 * called the plugin back on the endpoint that same thread serves. */
struct grpc_ucall {
	nghttp2_session *session;
	struct bytes req, resp;
	int32_t stream_id;
	int status; /* -1 until the trailers say */
	int http_status;
	char message[256];
	char errmsg[320];
	bool closed;
	int fd;
	int result; /* -EINPROGRESS while the call runs */
	long long deadline;
};

static ssize_t cli_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *u)
{
	return send_to(((struct grpc_ucall *)u)->fd, data, len);
}

static ssize_t cli_read_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
			   uint32_t *flags, nghttp2_data_source *src, void *u)
{
	struct grpc_ucall *c = u;
	size_t n = c->req.len - c->req.off;

	if (n > length)
		n = length;
	memcpy(buf, c->req.data + c->req.off, n);
	c->req.off += n;
	if (c->req.off == c->req.len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int cli_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
		      size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *u)
{
	struct grpc_ucall *c = u;
	char v[256];

	if (frame->hd.stream_id != c->stream_id)
		return 0;
	snprintf(v, sizeof(v), "%.*s", (int)valuelen, (const char *)value);
	if (namelen == 11 && !memcmp(name, "grpc-status", 11))
		c->status = atoi(v);
	else if (namelen == 12 && !memcmp(name, "grpc-message", 12))
		snprintf(c->message, sizeof(c->message), "%s", v);
	else if (namelen == 7 && !memcmp(name, ":status", 7))
		c->http_status = atoi(v);
	return 0;
}

static int cli_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
		    size_t len, void *u)
{
	struct grpc_ucall *c = u;

	if (stream_id == c->stream_id && bytes_append(&c->resp, data, len))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int cli_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t code, void *u)
{
	struct grpc_ucall *c = u;

	if (stream_id == c->stream_id)
		c->closed = true;
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A non-blocking connect: on a unix socket it completes at once or fails
 * (EAGAIN when the listener's backlog is full). */
static int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* Ends @c with @err; the first reason given stays. */
static int ucall_end(struct grpc_ucall *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int ucall_end(struct grpc_ucall *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->result != -EINPROGRESS)
		return c->result;
	c->result = err;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	return err;
}

/* The stream is closed: the call's outcome is in its trailers. */
static int ucall_complete(struct grpc_ucall *c)
{
	if (c->status < 0)
		return ucall_end(c, -EPROTO, "no grpc-status (HTTP status %d)", c->http_status);
	if (c->status == GRPC_STATUS_OK) {
		const uint8_t *msg;
		size_t mlen;

		if (bytes_message(&c->resp, &msg, &mlen))
			return ucall_end(c, -EBADMSG, "not one uncompressed gRPC message");
	}
	return ucall_end(c, 0, "%s", c->message);
}

int grpc_ucall_start(const char *sock_path, const char *path, const uint8_t *req, size_t len,
		     int timeout_ms, struct grpc_ucall **out)
{
	nghttp2_nv hdrs[] = { NV(":method", "POST"), NV(":scheme", "http"), NV(":path", path),
			      NV(":authority", "localhost"), NV("content-type", "application/grpc"),
			      NV("te", "trailers") };
	nghttp2_data_provider prd = { .read_callback = cli_read_cb };
	nghttp2_session_callbacks *cbs = NULL;
	struct grpc_ucall *c;
	int err = -ENOMEM;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->status = -1;
	c->result = -EINPROGRESS;
	c->deadline = now_ms() + timeout_ms;
	c->fd = -1;
	if (bytes_append_message(&c->req, req, len) || nghttp2_session_callbacks_new(&cbs))
		goto fail;
	nghttp2_session_callbacks_set_send_callback(cbs, cli_send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, cli_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cli_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cli_stream_close);
	if (nghttp2_session_client_new(&c->session, cbs, c))
		goto fail;
	nghttp2_session_callbacks_del(cbs);
	cbs = NULL;
	err = -EIO;
	if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, NULL, 0))
		goto fail;
	c->stream_id = nghttp2_submit_request(c->session, NULL, hdrs,
					      sizeof(hdrs) / sizeof(hdrs[0]), &prd, c);
	if (c->stream_id < 0)
		goto fail;
	*out = c;
	/* a failure to connect is the call's result, not an error placing it */
	c->fd = unix_connect(sock_path);
	if (c->fd < 0) {
		err = c->fd;
		c->fd = -1;
		ucall_end(c, err, "connect %s: %s", sock_path, strerror(-err));
		return 0;
	}
	grpc_ucall_step(c);
	return 0;
fail:
	if (cbs)
		nghttp2_session_callbacks_del(cbs);
	grpc_ucall_free(c);
	return err;
}

int grpc_ucall_fd(const struct grpc_ucall *c)
{
	return c->result == -EINPROGRESS ? c->fd : -1;
}

short grpc_ucall_events(const struct grpc_ucall *c)
{
	/* nghttp2 still wants to write only when the socket pushed back */
	return POLLIN | (nghttp2_session_want_write(c->session) ? POLLOUT : 0);
}

int grpc_ucall_step(struct grpc_ucall *c)
{
	uint8_t buf[16384];
	ssize_t n;

	if (c->result != -EINPROGRESS)
		return c->result;
	for (;;) {
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return ucall_end(c, -errno, "recv: %s", strerror(errno));
		if (n == 0) {
			if (c->closed)
				break;
			return ucall_end(c, -ECONNRESET, "the peer closed the connection");
		}
		if (nghttp2_session_mem_recv(c->session, buf, (size_t)n) < 0)
			return ucall_end(c, -EPROTO, "HTTP/2 protocol error");
		if (c->closed)
			break;
	}
	if (c->closed)
		return ucall_complete(c);
	if (nghttp2_session_send(c->session))
		return ucall_end(c, -EIO, "send: the connection failed");
	if (now_ms() >= c->deadline)
		return ucall_end(c, -ETIMEDOUT, "no answer in time");
	return -EINPROGRESS;
}

int grpc_ucall_result(const struct grpc_ucall *c, int *status, const uint8_t **resp,
		      size_t *resp_len, const char **errmsg)
{
	*status = c->result ? -1 : c->status;
	*errmsg = c->errmsg;
	*resp = NULL;
	*resp_len = 0;
	if (!c->result && c->status == GRPC_STATUS_OK)
		bytes_message(&c->resp, resp, resp_len);
	return c->result;
}

void grpc_ucall_free(struct grpc_ucall *c)
{
	if (!c)
		return;
	if (c->session)
		nghttp2_session_del(c->session);
	if (c->fd >= 0)
		close(c->fd);
	free(c->req.data);
	free(c->resp.data);
	free(c);
}

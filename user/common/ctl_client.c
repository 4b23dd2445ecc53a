// SPDX-License-Identifier: Apache-2.0
#include "common/ctl_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/ctl_wire.h"
#include "common/protocol.h"

struct ctl_conn {
	int fd;
	struct ctl_reader reader;
};

int ctl_connect(const char *socket_path, int timeout_ms, struct ctl_conn **connp)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct ctl_conn *conn;
	struct pollfd pfd;
	int err, soerr;
	socklen_t len = sizeof(soerr);

	if (strlen(socket_path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, socket_path);

	conn = calloc(1, sizeof(*conn));
	if (!conn)
		return -ENOMEM;
	conn->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (conn->fd < 0) {
		err = -errno;
		goto err_free;
	}
	err = ctl_reader_init(&conn->reader, CTL_MAX_RESPONSE);
	if (err)
		goto err_close;
	if (connect(conn->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		/* A unix socket whose backlog is full answers EAGAIN. */
		if (errno != EINPROGRESS && errno != EAGAIN) {
			err = -errno;
			goto err_reader;
		}
		pfd = (struct pollfd){ .fd = conn->fd, .events = POLLOUT };
		if (poll(&pfd, 1, timeout_ms) <= 0) {
			err = -ETIMEDOUT;
			goto err_reader;
		}
		if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr) {
			err = soerr ? -soerr : -errno;
			goto err_reader;
		}
	}
	*connp = conn;
	return 0;

err_reader:
	ctl_reader_free(&conn->reader);
err_close:
	close(conn->fd);
err_free:
	free(conn);
	return err;
}

void ctl_close(struct ctl_conn *conn)
{
	if (!conn)
		return;
	ctl_reader_free(&conn->reader);
	close(conn->fd);
	free(conn);
}

static void copy_field(char *dst, size_t size, struct json_object *obj, const char *key)
{
	struct json_object *v;

	if (json_object_object_get_ex(obj, key, &v) && json_object_is_type(v, json_type_string))
		snprintf(dst, size, "%s", json_object_get_string(v));
}

int ctl_send(struct ctl_conn *conn, const char *op, struct json_object *args, int timeout_ms)
{
	struct json_object *req;
	const char *text;
	int ret;

	req = json_object_new_object();
	if (!req)
		return -ENOMEM;
	json_object_object_add(req, "version", json_object_new_int(CTL_PROTOCOL_VERSION));
	json_object_object_add(req, "op", json_object_new_string(op));
	json_object_object_add(req, "args", args ? json_object_get(args) : json_object_new_object());
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	ret = ctl_write_line(conn->fd, text, strlen(text), timeout_ms);
	json_object_put(req);
	return ret;
}

int ctl_receive(struct ctl_conn *conn, int timeout_ms, struct json_object **result,
		struct ctl_error *err)
{
	struct json_object *resp = NULL, *ok, *v;
	char *line;
	int ret;

	*result = NULL;
	ret = ctl_read_line(&conn->reader, conn->fd, timeout_ms, timeout_ms, &line);
	if (ret == 0)
		return -ECONNRESET;
	if (ret < 0)
		return ret;
	resp = json_tokener_parse(line);
	if (!resp || !json_object_object_get_ex(resp, "ok", &ok)) {
		ret = -EPROTO;
		goto out;
	}
	if (json_object_get_boolean(ok)) {
		if (json_object_object_get_ex(resp, "result", &v))
			*result = json_object_get(v);
		else
			*result = json_object_new_object();
		ret = 0;
		goto out;
	}
	memset(err, 0, sizeof(*err));
	snprintf(err->code, sizeof(err->code), "%s", CTL_ERR_INTERNAL);
	if (json_object_object_get_ex(resp, "error", &v)) {
		copy_field(err->code, sizeof(err->code), v, "code");
		copy_field(err->message, sizeof(err->message), v, "message");
	}
	ret = -CTL_E_AGENT;
out:
	json_object_put(resp);
	return ret;
}

int ctl_request(struct ctl_conn *conn, const char *op, struct json_object *args, int timeout_ms,
		struct json_object **result, struct ctl_error *err)
{
	int ret;

	*result = NULL;
	ret = ctl_send(conn, op, args, timeout_ms);
	return ret ? ret : ctl_receive(conn, timeout_ms, result, err);
}

int ctl_call(const char *socket_path, const char *op, struct json_object *args, int timeout_ms,
	     struct json_object **result, struct ctl_error *err)
{
	struct ctl_conn *conn;
	int ret;

	*result = NULL;
	ret = ctl_connect(socket_path, timeout_ms, &conn);
	if (ret)
		return ret;
	ret = ctl_request(conn, op, args, timeout_ms, result, err);
	ctl_close(conn);
	return ret;
}

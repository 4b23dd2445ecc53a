// SPDX-License-Identifier: Apache-2.0
#include "agent/ctl_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/ctl_wire.h"
#include "common/log.h"
#include "common/protocol.h"

/* Beyond this many open connections a new one is answered busy. */
#define CTL_MAX_CONNS 256

/* Workers outlive their connections: an idle one waits this long for the
 * next before it exits (keeping CTL_MIN_WORKERS).  Reusing threads and their
 * line buffers keeps thread creation and page faults off the request path. */
#define CTL_WORKER_IDLE_MS 30000
#define CTL_MIN_WORKERS 4

struct conn {
	struct conn *next;     /* in server->conns: every open connection */
	struct conn *next_new; /* in server->pending: not yet taken by a worker */
	int fd;
};

struct ctl_server {
	struct agent *agent;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	int wake[2]; /* stops the accept loop */
	pthread_t acceptor;
	pthread_mutex_t lock; /* everything below */
	pthread_cond_t idle;  /* a connection closed or a worker exited */
	pthread_cond_t work;  /* a connection is pending */
	struct conn *conns;
	int nconns;
	struct conn *pending, **pending_tail;
	int npending;
	int nworkers, idle_workers;
	bool stopping;
};

static int write_response(int fd, struct json_object *resp)
{
	const char *text = json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(text);
	char *line = malloc(len + 1);
	int err;

	if (!line)
		return -ENOMEM;
	memcpy(line, text, len);
	line[len] = '\n';
	err = ctl_write_all(fd, line, len + 1, CTL_REQUEST_TIMEOUT_MS);
	free(line);
	return err;
}

static struct json_object *error_response(const char *code, const char *message)
{
	struct json_object *resp = json_object_new_object(), *e = json_object_new_object();

	json_object_object_add(resp, "version", json_object_new_int(CTL_PROTOCOL_VERSION));
	json_object_object_add(resp, "ok", json_object_new_boolean(0));
	json_object_object_add(e, "code", json_object_new_string(code));
	json_object_object_add(e, "message", json_object_new_string(message));
	json_object_object_add(resp, "error", e);
	return resp;
}

static struct json_object *dispatch(struct agent *agent, const char *line)
{
	struct json_object *req = json_tokener_parse(line), *v, *args, *result, *resp;
	struct ctl_error err = { 0 };
	const struct ctl_op *op;
	char msg[160];
	int ret;

	if (!req || !json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return error_response(CTL_ERR_BAD_REQUEST, "the request is not a JSON object");
	}
	if (!json_object_object_get_ex(req, "version", &v) ||
	    json_object_get_int(v) != CTL_PROTOCOL_VERSION) {
		json_object_put(req);
		snprintf(msg, sizeof(msg), "this agent speaks protocol version %d",
			 CTL_PROTOCOL_VERSION);
		return error_response(CTL_ERR_VERSION, msg);
	}
	if (!json_object_object_get_ex(req, "op", &v) || !json_object_is_type(v, json_type_string)) {
		json_object_put(req);
		return error_response(CTL_ERR_BAD_REQUEST, "op is required");
	}
	op = ctl_op_find(json_object_get_string(v));
	if (!op) {
		snprintf(msg, sizeof(msg), "no op \"%.64s\"", json_object_get_string(v));
		json_object_put(req);
		return error_response(CTL_ERR_UNKNOWN_OP, msg);
	}
	if (!json_object_object_get_ex(req, "args", &args) || !args)
		args = NULL;
	if (args && !json_object_is_type(args, json_type_object)) {
		json_object_put(req);
		return error_response(CTL_ERR_BAD_REQUEST, "args must be an object");
	}
	result = json_object_new_object();
	if (!args)
		args = json_object_new_object(), json_object_object_add(req, "args", args);
	ret = op->fn(agent, args, result, &err);
	json_object_put(req);
	if (ret) {
		json_object_put(result);
		if (!err.code[0])
			snprintf(err.code, sizeof(err.code), "%s", CTL_ERR_INTERNAL);
		if (!err.message[0])
			snprintf(err.message, sizeof(err.message), "%s", strerror(-ret));
		return error_response(err.code, err.message);
	}
	resp = json_object_new_object();
	json_object_object_add(resp, "version", json_object_new_int(CTL_PROTOCOL_VERSION));
	json_object_object_add(resp, "ok", json_object_new_boolean(1));
	json_object_object_add(resp, "result", result);
	return resp;
}

static bool peer_is_root(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	return !getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) && cred.uid == 0;
}

/* Serves one connection until it closes, times out or errs. */
static void serve_conn(struct ctl_server *s, struct conn *c, struct ctl_reader *reader)
{
	struct json_object *resp;
	char *line;
	int n;

	if (!peer_is_root(c->fd)) {
		log_warn("ctl_peer_refused", "reason=\"peer uid is not 0\"");
		resp = error_response("permission_denied", "railnetd serves root only");
		write_response(c->fd, resp);
		json_object_put(resp);
		return;
	}
	reader->len = reader->taken = 0;
	for (;;) {
		n = ctl_read_line(reader, c->fd, CTL_IDLE_TIMEOUT_MS, CTL_REQUEST_TIMEOUT_MS, &line);
		if (n == -EMSGSIZE) {
			resp = error_response(CTL_ERR_TOO_LARGE, "request over 64 KiB");
			write_response(c->fd, resp);
			json_object_put(resp);
			break;
		}
		if (n <= 0) {
			if (n == -ETIMEDOUT)
				log_debug("ctl_conn_timeout", "fd=%d", c->fd);
			break;
		}
		resp = dispatch(s->agent, line);
		n = write_response(c->fd, resp);
		json_object_put(resp);
		if (n)
			break;
	}
}

static void conn_closed(struct ctl_server *s, struct conn *c)
{
	close(c->fd);
	pthread_mutex_lock(&s->lock);
	for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	s->nconns--;
	pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->lock);
	free(c);
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Takes the next pending connection; NULL when the worker should exit. */
static struct conn *next_conn(struct ctl_server *s)
{
	struct timespec deadline;
	struct conn *c;

	pthread_mutex_lock(&s->lock);
	deadline_in(&deadline, CTL_WORKER_IDLE_MS);
	s->idle_workers++;
	while (!s->pending && !s->stopping) {
		if (pthread_cond_timedwait(&s->work, &s->lock, &deadline) != ETIMEDOUT || s->pending)
			continue;
		if (s->nworkers > CTL_MIN_WORKERS)
			break;
		deadline_in(&deadline, CTL_WORKER_IDLE_MS);
	}
	s->idle_workers--;
	c = s->pending;
	if (c) {
		s->pending = c->next_new;
		if (!s->pending)
			s->pending_tail = &s->pending;
		s->npending--;
	} else {
		s->nworkers--;
		pthread_cond_broadcast(&s->idle);
	}
	pthread_mutex_unlock(&s->lock);
	return c;
}

static void *worker_main(void *arg)
{
	struct ctl_server *s = arg;
	struct ctl_reader reader;
	bool have_reader = !ctl_reader_init(&reader, CTL_MAX_LINE);
	struct conn *c;

	while ((c = next_conn(s))) {
		if (have_reader)
			serve_conn(s, c, &reader);
		conn_closed(s, c);
	}
	if (have_reader)
		ctl_reader_free(&reader);
	return NULL;
}

/* Queues @c for a worker, starting one when none is idle: a connection never
 * waits behind another.  Called with the lock held. */
static int hand_over(struct ctl_server *s, struct conn *c, pthread_attr_t *attr)
{
	pthread_t tid;

	c->next_new = NULL;
	*s->pending_tail = c;
	s->pending_tail = &c->next_new;
	s->npending++;
	if (s->idle_workers >= s->npending) {
		pthread_cond_signal(&s->work);
		return 0;
	}
	if (pthread_create(&tid, attr, worker_main, s)) {
		/* No new thread: a busy worker takes it when it is done. */
		log_warn("ctl_worker_spawn_failed", "workers=%d", s->nworkers);
		return 0;
	}
	s->nworkers++;
	return 0;
}

static void *accept_main(void *arg)
{
	struct ctl_server *s = arg;
	struct pollfd pfd[2] = { { .fd = s->listen_fd, .events = POLLIN },
				 { .fd = s->wake[0], .events = POLLIN } };
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		struct conn *c;
		int fd;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&s->lock);
		if (s->nconns >= CTL_MAX_CONNS || s->stopping) {
			pthread_mutex_unlock(&s->lock);
			struct json_object *resp = error_response(CTL_ERR_BUSY, "too many connections");

			write_response(fd, resp);
			json_object_put(resp);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			pthread_mutex_unlock(&s->lock);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->next = s->conns;
		s->conns = c;
		s->nconns++;
		hand_over(s, c, &attr);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_attr_destroy(&attr);
	return NULL;
}

int ctl_server_start(struct agent *agent, const char *path, struct ctl_server **out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct ctl_server *s;
	char dir[sizeof(addr.sun_path)], *slash;
	mode_t old_umask;
	int err;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->agent = agent;
	s->listen_fd = s->wake[0] = s->wake[1] = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->idle, NULL);
	pthread_cond_init(&s->work, NULL);
	s->pending_tail = &s->pending;
	strcpy(s->path, path);
	strcpy(addr.sun_path, path);

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			err = -errno;
			log_err("ctl_mkdir_failed", "dir=%s err=\"%s\"", dir, strerror(errno));
			goto err;
		}
	}
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->listen_fd < 0 || pipe2(s->wake, O_CLOEXEC) < 0) {
		err = -errno;
		goto err;
	}
	unlink(path); /* a socket left by a previous agent */
	old_umask = umask(0177);
	err = bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -errno : 0;
	umask(old_umask);
	if (err || chmod(path, 0600) < 0 || listen(s->listen_fd, 512) < 0) {
		err = err ? err : -errno;
		log_err("ctl_listen_failed", "socket=%s err=\"%s\"", path, strerror(-err));
		goto err;
	}
	err = -pthread_create(&s->acceptor, NULL, accept_main, s);
	if (err)
		goto err;
	log_info("ctl_listening", "socket=%s", path);
	*out = s;
	return 0;
err:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->wake[0] >= 0) {
		close(s->wake[0]);
		close(s->wake[1]);
	}
	free(s);
	return err;
}

void ctl_server_stop(struct ctl_server *s, int grace_ms)
{
	struct timespec deadline;

	if (!s)
		return;
	if (write(s->wake[1], "x", 1) < 0)
		log_warn("ctl_wake_failed", "err=\"%s\"", strerror(errno));
	pthread_join(s->acceptor, NULL);
	close(s->listen_fd);
	unlink(s->path);

	deadline_in(&deadline, grace_ms);
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->work);
	/* Idle connections see EOF; a request being served still gets its answer. */
	for (struct conn *c = s->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RD);
	while (s->nconns > 0 || s->nworkers > 0)
		if (pthread_cond_timedwait(&s->idle, &s->lock, &deadline) == ETIMEDOUT)
			break;
	if (s->nconns || s->nworkers)
		log_warn("ctl_stop_timeout", "connections=%d workers=%d", s->nconns, s->nworkers);
	pthread_mutex_unlock(&s->lock);
	close(s->wake[0]);
	close(s->wake[1]);
	/* Workers still busy past the grace period keep the server. */
	if (!s->nconns && !s->nworkers) {
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->idle);
		pthread_cond_destroy(&s->work);
		free(s);
	}
}

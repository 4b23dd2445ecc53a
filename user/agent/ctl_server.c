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
#include <sys/epoll.h>
#include <sys/eventfd.h>
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

/* Each worker accepts for itself, so a connection goes from the listening
 * socket to the thread that serves it without a hand-over (a hop through
 * another thread costs a wake-up per request).  A worker that takes a
 * connection while no other is idle starts one, so the next connection
 * never waits behind this one's fsync; an idle worker exits after this
 * long (keeping CTL_MIN_WORKERS).  Threads and their line buffers are
 * reused, which keeps thread creation and page faults off the request path. */
#define CTL_WORKER_IDLE_MS 30000
#define CTL_MIN_WORKERS 4

struct conn {
	struct conn *next, **pprev; /* in server->conns: every open connection */
	int fd;
	int answered; /* requests answered (atomic: read by ctl_server_stop) */
};

struct ctl_server {
	struct agent *agent;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	int stop_fd;	      /* an eventfd, readable once stopping */
	pthread_attr_t attr;  /* workers': detached, small stacks */
	pthread_mutex_t lock; /* everything below */
	pthread_cond_t idle;  /* a connection closed or a worker exited */
	struct conn *conns;
	int nconns;
	int nworkers, idle_workers; /* idle: waiting for a connection */
	bool stopping;
};

static int write_response(int fd, struct json_object *resp)
{
	const char *text = json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN);

	return ctl_write_line(fd, text, strlen(text), CTL_REQUEST_TIMEOUT_MS);
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

/* @tok is the worker's, reused: a tokener per request is an allocation and
 * a clearing of its parse stack each time. */
static struct json_object *dispatch(struct agent *agent, struct json_tokener *tok,
				    const char *line, int len)
{
	struct json_object *req, *v, *args, *result, *resp;
	struct ctl_error err = { 0 };
	const struct ctl_op *op;
	char msg[160];
	int ret;

	json_tokener_reset(tok);
	req = json_tokener_parse_ex(tok, line, len);
	if (req && json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(req);
		req = NULL;
	}
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
static void serve_conn(struct ctl_server *s, struct conn *c, struct ctl_reader *reader,
		       struct json_tokener *tok)
{
	int fd = c->fd;
	struct json_object *resp;
	char *line;
	int n;

	if (!peer_is_root(fd)) {
		log_warn("ctl_peer_refused", "reason=\"peer uid is not 0\"");
		resp = error_response("permission_denied", "railnetd serves root only");
		write_response(fd, resp);
		json_object_put(resp);
		/* Closed before the client has sent its request, the socket
		 * would fail that send (EPIPE) and the answer would never be
		 * read: wait for the client to go, a bounded time. */
		shutdown(fd, SHUT_WR);
		reader->len = reader->taken = 0;
		while (ctl_read_line(reader, fd, CTL_REQUEST_TIMEOUT_MS, CTL_REQUEST_TIMEOUT_MS,
				     &line) > 0)
			;
		return;
	}
	reader->len = reader->taken = 0;
	for (;;) {
		n = ctl_read_line(reader, fd, CTL_IDLE_TIMEOUT_MS, CTL_REQUEST_TIMEOUT_MS, &line);
		if (n == -EMSGSIZE) {
			resp = error_response(CTL_ERR_TOO_LARGE, "request over 64 KiB");
			write_response(fd, resp);
			json_object_put(resp);
			break;
		}
		if (n <= 0) {
			if (n == -ETIMEDOUT)
				log_debug("ctl_conn_timeout", "fd=%d", fd);
			break;
		}
		resp = dispatch(s->agent, tok, line, n);
		n = write_response(fd, resp);
		json_object_put(resp);
		__atomic_add_fetch(&c->answered, 1, __ATOMIC_RELAXED);
		/* Stopping: this request was in flight, a next one is not. */
		if (n || __atomic_load_n(&s->stopping, __ATOMIC_RELAXED))
			break;
	}
}

static void answer_busy(int fd)
{
	struct json_object *resp = error_response(CTL_ERR_BUSY, "too many connections");

	write_response(fd, resp);
	json_object_put(resp);
	close(fd);
}

static void *worker_main(void *arg);

/* Starts a worker, counted idle from the start so that no other worker
 * starts one for the same reason.  Called with the lock held. */
static int spawn_worker(struct ctl_server *s)
{
	pthread_t tid;
	int err = pthread_create(&tid, &s->attr, worker_main, s);

	if (err) {
		log_warn("ctl_worker_spawn_failed", "workers=%d err=\"%s\"", s->nworkers,
			 strerror(err));
		return -err;
	}
	s->nworkers++;
	s->idle_workers++;
	return 0;
}

/* Takes the next connection from the listening socket into s->conns, or
 * says why not: 0 and *fd, -EAGAIN (another worker took it, or none is
 * there), -ESHUTDOWN (stopping and the backlog is empty), -ETIMEDOUT (idle
 * for CTL_WORKER_IDLE_MS). */
static int take_conn(struct ctl_server *s, int ep, struct conn *c)
{
	struct epoll_event ev[2];
	bool stopping;
	int n, fd;

	stopping = __atomic_load_n(&s->stopping, __ATOMIC_RELAXED);
	if (!stopping) {
		n = epoll_wait(ep, ev, 2, CTL_WORKER_IDLE_MS);
		if (n == 0)
			return -ETIMEDOUT;
		if (n < 0 && errno != EINTR)
			return -errno;
		stopping = __atomic_load_n(&s->stopping, __ATOMIC_RELAXED);
	}
	fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		/* Stopping: what was queued before the socket went is served. */
		return stopping && errno == EAGAIN ? -ESHUTDOWN : -EAGAIN;
	pthread_mutex_lock(&s->lock);
	if (s->nconns >= CTL_MAX_CONNS) {
		pthread_mutex_unlock(&s->lock);
		answer_busy(fd);
		return -EAGAIN;
	}
	c->fd = fd;
	c->answered = 0;
	c->next = s->conns;
	c->pprev = &s->conns;
	if (c->next)
		c->next->pprev = &c->next;
	s->conns = c;
	s->nconns++;
	s->idle_workers--;
	/* Someone must be accepting while this connection is served. */
	if (!s->idle_workers && !s->stopping && s->nworkers <= CTL_MAX_CONNS)
		spawn_worker(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void conn_closed(struct ctl_server *s, struct conn *c)
{
	close(c->fd);
	pthread_mutex_lock(&s->lock);
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	s->nconns--;
	s->idle_workers++;
	pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->lock);
}

static void *worker_main(void *arg)
{
	struct ctl_server *s = arg;
	struct epoll_event lev = { .events = EPOLLIN | EPOLLEXCLUSIVE },
			   sev = { .events = EPOLLIN };
	struct ctl_reader reader;
	bool have_reader = !ctl_reader_init(&reader, CTL_MAX_LINE);
	struct json_tokener *tok = json_tokener_new();
	int ep = epoll_create1(EPOLL_CLOEXEC), err = 0;
	struct conn c;

	/* Exclusive: a connection wakes one idle worker, not all of them. */
	if (ep < 0 || !have_reader || !tok || epoll_ctl(ep, EPOLL_CTL_ADD, s->listen_fd, &lev) ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, s->stop_fd, &sev)) {
		log_err("ctl_worker_failed", "err=\"%s\"",
			strerror(have_reader && tok ? errno : ENOMEM));
		goto out;
	}
	for (;;) {
		err = take_conn(s, ep, &c);
		if (err == -EAGAIN)
			continue;
		if (err == -ETIMEDOUT) {
			pthread_mutex_lock(&s->lock);
			if (s->nworkers > CTL_MIN_WORKERS && s->idle_workers > 1) {
				pthread_mutex_unlock(&s->lock);
				break;
			}
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		if (err)
			break;
		serve_conn(s, &c, &reader, tok);
		conn_closed(s, &c);
	}
out:
	if (ep >= 0)
		close(ep);
	if (have_reader)
		ctl_reader_free(&reader);
	if (tok)
		json_tokener_free(tok);
	pthread_mutex_lock(&s->lock);
	s->nworkers--;
	s->idle_workers--;
	pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->lock);
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
	s->listen_fd = s->stop_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->idle, NULL);
	pthread_attr_init(&s->attr);
	pthread_attr_setdetachstate(&s->attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&s->attr, 256 * 1024);
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
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->listen_fd < 0 || s->stop_fd < 0) {
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
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < CTL_MIN_WORKERS && !err; i++)
		err = spawn_worker(s);
	pthread_mutex_unlock(&s->lock);
	if (err && !s->nworkers)
		goto err;
	log_info("ctl_listening", "socket=%s", path);
	*out = s;
	return 0;
err:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	pthread_attr_destroy(&s->attr);
	free(s);
	return err;
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

void ctl_server_stop(struct ctl_server *s, int grace_ms)
{
	struct timespec deadline;
	uint64_t one = 1;

	if (!s)
		return;
	/* No new connections; the ones queued already are still served. */
	unlink(s->path);
	deadline_in(&deadline, grace_ms);
	pthread_mutex_lock(&s->lock);
	__atomic_store_n(&s->stopping, true, __ATOMIC_RELAXED);
	if (write(s->stop_fd, &one, sizeof(one)) < 0)
		log_warn("ctl_wake_failed", "err=\"%s\"", strerror(errno));
	/* A connection idle after an answer sees EOF (a request being served
	 * still gets its answer).  One not answered yet is left alone: its
	 * first request may be on its way, and shutting its reads would fail
	 * the client's send (EPIPE) - it is served once, then closed. */
	for (struct conn *c = s->conns; c; c = c->next)
		if (__atomic_load_n(&c->answered, __ATOMIC_RELAXED))
			shutdown(c->fd, SHUT_RD);
	while (s->nconns > 0 || s->nworkers > 0)
		if (pthread_cond_timedwait(&s->idle, &s->lock, &deadline) == ETIMEDOUT)
			break;
	if (s->nconns || s->nworkers)
		log_warn("ctl_stop_timeout", "connections=%d workers=%d", s->nconns, s->nworkers);
	pthread_mutex_unlock(&s->lock);
	/* Workers still busy past the grace period keep the server. */
	if (!s->nconns && !s->nworkers) {
		close(s->listen_fd);
		close(s->stop_fd);
		pthread_attr_destroy(&s->attr);
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->idle);
		free(s);
	}
}

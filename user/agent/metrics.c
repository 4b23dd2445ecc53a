// SPDX-License-Identifier: Apache-2.0
/* The Prometheus endpoint: libevent's evhttp serves, collectors write. */
#include "agent/metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A registered collector.  A scrape takes a reference on every collector
 * when it starts and counts itself in ->active while it is inside one's
 * steps, so that unregistering waits only for those. */
struct collector {
	metrics_collect_fn collect; /* or: */
	metrics_step_fn step;
	metrics_end_fn end;
	void *ctx;
	struct collector *next;
	unsigned int refs; /* the list's, and one per scrape yet to leave it */
	unsigned int active;
	bool dead; /* unregistered: scrapes skip it */
};

/* The server runs on a thread of its own, an event loop that answers every
 * connection; only metrics_stop() reaches it from outside, by stop_fd. */
struct metrics {
	struct event_base *base;
	struct evhttp *http;
	struct event *stop; /* stop_fd readable: the loop ends */
	int stop_fd, listen_fd; /* listen_fd: until the listener owns it */
	pthread_t thread;
	bool running;
	pthread_mutex_t lock; /* the collector list and the counts above */
	pthread_cond_t left;  /* a scrape left a collector */
	struct collector *collectors;
};

struct metrics_writer {
	char *buf;
	size_t len, cap;
	int err; /* -ENOMEM, or a collector's metrics_fail: writes are dropped */
};

/* --- writing ------------------------------------------------------------ */

static bool wr_reserve(struct metrics_writer *w, size_t more)
{
	size_t cap = w->cap ? w->cap : 16384;
	char *nbuf;

	if (w->err)
		return false;
	if (w->len + more + 1 <= w->cap)
		return true;
	while (cap < w->len + more + 1)
		cap *= 2;
	nbuf = realloc(w->buf, cap);
	if (!nbuf) {
		w->err = -ENOMEM;
		return false;
	}
	w->buf = nbuf;
	w->cap = cap;
	return true;
}

static void wr_mem(struct metrics_writer *w, const char *s, size_t n)
{
	if (!wr_reserve(w, n))
		return;
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void wr_str(struct metrics_writer *w, const char *s)
{
	wr_mem(w, s, strlen(s));
}

/* HELP text escapes \ and newline, label values also ". */
static const char *escape_of(char c)
{
	return c == '\n' ? "\\n" : c == '"' ? "\\\"" : "\\\\";
}

static void wr_escaped(struct metrics_writer *w, const char *s, bool quote)
{
	while (s && *s) {
		size_t n = strcspn(s, quote ? "\\\"\n" : "\\\n");

		wr_mem(w, s, n);
		s += n;
		if (*s)
			wr_mem(w, escape_of(*s++), 2);
	}
}

/* Decimal digits of @v into @out (>= 20 bytes), not terminated. */
static size_t fmt_u64(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

/* A value as Prometheus reads it: integers plainly (most gauges are), the
 * rest with all 17 significant digits, and NaN / +Inf / -Inf by name. */
static size_t fmt_double(char *out, size_t len, double v)
{
	if (isnan(v))
		return (size_t)snprintf(out, len, "NaN");
	if (isinf(v))
		return (size_t)snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
	if (fabs(v) < 9e15 && v == (double)(int64_t)v) {
		if (v >= 0)
			return fmt_u64(out, (uint64_t)v);
		out[0] = '-';
		return 1 + fmt_u64(out + 1, (uint64_t)-(int64_t)v);
	}
	return (size_t)snprintf(out, len, "%.17g", v);
}

void metrics_fail(struct metrics_writer *w, int err)
{
	if (!w->err)
		w->err = err < 0 ? err : -EIO;
}

void metrics_family(struct metrics_writer *w, const char *name, const char *type,
		    const char *help)
{
	wr_str(w, "# HELP ");
	wr_str(w, name);
	wr_mem(w, " ", 1);
	wr_escaped(w, help, false);
	wr_str(w, "\n# TYPE ");
	wr_str(w, name);
	wr_mem(w, " ", 1);
	wr_str(w, type);
	wr_mem(w, "\n", 1);
}

static void wr_sample(struct metrics_writer *w, const char *name, const char *value,
		      size_t vlen, va_list ap)
{
	const char *key;
	bool first = true;

	wr_str(w, name);
	while ((key = va_arg(ap, const char *))) {
		const char *val = va_arg(ap, const char *);

		wr_mem(w, first ? "{" : ",", 1);
		wr_str(w, key);
		wr_mem(w, "=\"", 2);
		wr_escaped(w, val, true);
		wr_mem(w, "\"", 1);
		first = false;
	}
	if (!first)
		wr_mem(w, "}", 1);
	wr_mem(w, " ", 1);
	wr_mem(w, value, vlen);
	wr_mem(w, "\n", 1);
}

void metrics_sample(struct metrics_writer *w, const char *name, double value, ...)
{
	char num[32];
	size_t n = fmt_double(num, sizeof(num), value);
	va_list ap;

	va_start(ap, value);
	wr_sample(w, name, num, n, ap);
	va_end(ap);
}

void metrics_sample_u64(struct metrics_writer *w, const char *name, uint64_t value, ...)
{
	char num[24];
	size_t n = fmt_u64(num, value);
	va_list ap;

	va_start(ap, value);
	wr_sample(w, name, num, n, ap);
	va_end(ap);
}

/* Appends @n bytes of @s to @buf (capacity @len) at *@pos, keeping it
 * terminated; *@pos counts what would have been written. */
static void buf_put(char *buf, size_t len, size_t *pos, const char *s, size_t n)
{
	if (*pos < len) {
		size_t room = len - *pos - 1, k = n < room ? n : room;

		memcpy(buf + *pos, s, k);
		buf[*pos + k] = '\0';
	}
	*pos += n;
}

size_t metrics_labels(char *buf, size_t len, ...)
{
	const char *key;
	size_t pos = 0;
	va_list ap;

	if (len)
		buf[0] = '\0';
	va_start(ap, len);
	while ((key = va_arg(ap, const char *))) {
		const char *val = va_arg(ap, const char *);

		if (pos)
			buf_put(buf, len, &pos, ",", 1);
		buf_put(buf, len, &pos, key, strlen(key));
		buf_put(buf, len, &pos, "=\"", 2);
		while (val && *val) {
			size_t n = strcspn(val, "\\\"\n");

			buf_put(buf, len, &pos, val, n);
			val += n;
			if (*val)
				buf_put(buf, len, &pos, escape_of(*val++), 2);
		}
		buf_put(buf, len, &pos, "\"", 1);
	}
	va_end(ap);
	return pos;
}

char *metrics_label_put(char *p, const char *key, const char *value)
{
	size_t klen = strlen(key);

	memcpy(p, key, klen);
	p += klen;
	*p++ = '=';
	*p++ = '"';
	for (const char *v = value; v && *v; v++) {
		if (*v == '\\' || *v == '"' || *v == '\n') {
			*p++ = '\\';
			*p++ = *v == '\n' ? 'n' : *v;
		} else {
			*p++ = *v;
		}
	}
	*p++ = '"';
	return p;
}

/* name{sets} value\n in one reservation: this is the per-NIC hot path. */
static void wr_sample_sets(struct metrics_writer *w, const char *name, const char *num,
			   size_t nlen, const struct metrics_set *sets, size_t n)
{
	size_t name_len = strlen(name), total = name_len + 1 + nlen + 1, nsets = 0;
	char *p;

	for (size_t i = 0; i < n; i++)
		if (sets[i].len) {
			total += sets[i].len + 1; /* and its '{' or ',' */
			nsets++;
		}
	total += nsets ? 1 : 0; /* '}' */
	if (!wr_reserve(w, total))
		return;
	p = w->buf + w->len;
	memcpy(p, name, name_len);
	p += name_len;
	for (size_t i = 0, k = 0; i < n; i++) {
		if (!sets[i].len)
			continue;
		*p++ = k++ ? ',' : '{';
		memcpy(p, sets[i].s, sets[i].len);
		p += sets[i].len;
	}
	if (nsets)
		*p++ = '}';
	*p++ = ' ';
	memcpy(p, num, nlen);
	p += nlen;
	*p++ = '\n';
	*p = '\0';
	w->len += total;
}

void metrics_sample_sets(struct metrics_writer *w, const char *name, double value,
			 const struct metrics_set *sets, size_t n)
{
	char num[32];

	wr_sample_sets(w, name, num, fmt_double(num, sizeof(num), value), sets, n);
}

void metrics_sample_sets_u64(struct metrics_writer *w, const char *name, uint64_t value,
			     const struct metrics_set *sets, size_t n)
{
	char num[24];

	wr_sample_sets(w, name, num, fmt_u64(num, value), sets, n);
}

void metrics_sample_sets_ns(struct metrics_writer *w, const char *name, uint64_t ns,
			    const struct metrics_set *sets, size_t n)
{
	char num[32];
	size_t len = fmt_u64(num, ns / 1000000000ULL);
	uint64_t frac = ns % 1000000000ULL;

	if (frac) {
		int digits = 9;

		while (!(frac % 10)) {
			frac /= 10;
			digits--;
		}
		num[len++] = '.';
		for (int i = digits - 1; i >= 0; i--, frac /= 10)
			num[len + (size_t)i] = (char)('0' + frac % 10);
		len += (size_t)digits;
	}
	wr_sample_sets(w, name, num, len, sets, n);
}

/* --- scrapes ------------------------------------------------------------ */

/* A scrape in progress: the collectors it will call, the one it is in, and
 * what it has written but not yet handed to the server. */
struct scrape {
	struct metrics *metrics;
	struct collector **cs;
	size_t n, i;
	bool inside; /* counted in cs[i]->active */
	void *state; /* cs[i]'s */
	struct metrics_writer w;
	struct evhttp_request *req; /* served: the request, its next chunk */
	struct evbuffer *chunk, *ref; /* (ref: where chunk_of() makes a chain) */
};

/* Under metrics->lock. */
static void collector_put(struct collector *c)
{
	if (!--c->refs)
		free(c);
}

static struct scrape *scrape_begin(struct metrics *metrics)
{
	struct scrape *s = calloc(1, sizeof(*s));
	struct collector *c;
	size_t n = 0;

	if (!s)
		return NULL;
	s->metrics = metrics;
	pthread_mutex_lock(&metrics->lock);
	for (c = metrics->collectors; c; c = c->next)
		n++;
	s->cs = calloc(n ? n : 1, sizeof(*s->cs));
	if (!s->cs) {
		pthread_mutex_unlock(&metrics->lock);
		free(s);
		return NULL;
	}
	for (c = metrics->collectors; c; c = c->next) {
		c->refs++;
		s->cs[s->n++] = c;
	}
	pthread_mutex_unlock(&metrics->lock);
	return s;
}

/* Leaves collector cs[i] (ended or aborted) and moves to the next. */
static void scrape_leave(struct scrape *s)
{
	struct collector *c = s->cs[s->i];

	if (c->end)
		c->end(c->ctx, s->state);
	s->state = NULL;
	s->inside = false;
	pthread_mutex_lock(&s->metrics->lock);
	c->active--;
	pthread_cond_broadcast(&s->metrics->left);
	collector_put(c);
	pthread_mutex_unlock(&s->metrics->lock);
	s->i++;
}

/* Runs one step of the current collector; false once all are done. */
static bool scrape_step(struct scrape *s)
{
	while (s->i < s->n) {
		struct collector *c = s->cs[s->i];
		bool more;

		if (!s->inside) {
			pthread_mutex_lock(&s->metrics->lock);
			if (c->dead) {
				collector_put(c);
				pthread_mutex_unlock(&s->metrics->lock);
				s->i++;
				continue;
			}
			c->active++;
			pthread_mutex_unlock(&s->metrics->lock);
			s->inside = true;
		}
		if (c->step) {
			more = c->step(c->ctx, &s->w, &s->state);
		} else {
			c->collect(c->ctx, &s->w);
			more = false;
		}
		if (!more || s->w.err)
			scrape_leave(s);
		return true;
	}
	return false;
}

static void scrape_end(struct scrape *s)
{
	if (!s)
		return;
	if (s->inside)
		scrape_leave(s);
	pthread_mutex_lock(&s->metrics->lock);
	for (; s->i < s->n; s->i++)
		collector_put(s->cs[s->i]);
	pthread_mutex_unlock(&s->metrics->lock);
	if (s->chunk)
		evbuffer_free(s->chunk);
	if (s->ref)
		evbuffer_free(s->ref);
	free(s->cs);
	free(s->w.buf);
	free(s);
}

int metrics_render(struct metrics *metrics, char **body, size_t *len)
{
	struct scrape *s = scrape_begin(metrics);
	int err;

	if (!s)
		return -ENOMEM;
	wr_reserve(&s->w, 0);
	while (!s->w.err && scrape_step(s))
		;
	err = s->w.err;
	if (err) {
		scrape_end(s);
		return err;
	}
	*body = s->w.buf;
	*len = s->w.len;
	s->w.buf = NULL;
	scrape_end(s);
	return 0;
}

/* Runs steps until one writes something: 1, or 0 once all collectors are
 * done, or a collector's error. */
static int scrape_fill(struct scrape *s)
{
	s->w.len = 0;
	do {
		if (!scrape_step(s))
			return 0;
		if (s->w.err)
			return s->w.err;
	} while (!s->w.len);
	return 1;
}

/* --- the server ----------------------------------------------------------- */

/* Idle and between a scrape's chunks; not while one streams (set_streaming). */
#define CONN_TIMEOUT_S 10

static void reply_text(struct evhttp_request *req, int code, const char *reason,
		       const char *body)
{
	struct evbuffer *buf = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
	/* evhttp would send a HEAD's body all the same. */
	if (buf && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
		evbuffer_add(buf, body, strlen(body));
	evhttp_send_reply(req, code, reason, buf);
	if (buf)
		evbuffer_free(buf);
}

/* The connection of a streamed scrape goes: the client left or timed out
 * (libevent has let go of the request, which is then ours to free), the
 * scrape was cut, or the server stops. */
static void scrape_closed(struct evhttp_connection *conn, void *arg)
{
	struct scrape *s = arg;

	if (!evhttp_request_get_connection(s->req))
		evhttp_send_reply_end(s->req);
	scrape_end(s);
}

/* What the last steps wrote as the next chunk, without copying it: all but
 * its last bytes by reference, those in a small chain of their own after
 * it.  evhttp appends the chunk's CRLF, and an evbuffer that ends in a full
 * chain (a reference is one) grows by a chain as large as that one: a
 * chunk-sized malloc, an mmap here, for two bytes.  The buffer is written
 * again only once the client has taken all of it. */
static int chunk_of(struct scrape *s)
{
	size_t tail = s->w.len < 64 ? s->w.len : 64;

	if (evbuffer_add(s->chunk, s->w.buf + s->w.len - tail, tail))
		return -ENOMEM;
	if (s->w.len > tail &&
	    (evbuffer_add_reference(s->ref, s->w.buf, s->w.len - tail, NULL, NULL) ||
	     evbuffer_prepend_buffer(s->chunk, s->ref)))
		return -ENOMEM;
	return 0;
}

/* The next chunk in s->chunk: 1, or 0 once all is sent, or an error. */
static int scrape_next(struct scrape *s)
{
	int filled = scrape_fill(s);

	return filled > 0 && chunk_of(s) ? -ENOMEM : filled;
}

/* While a scrape streams, the client sends nothing: no read timeout (it
 * would cut a scrape that takes a slow client longer), only the write one,
 * which any progress re-arms.  Back to both for a kept-alive connection's
 * next request. */
static void set_streaming(struct evhttp_connection *conn, bool streaming)
{
	const struct timeval tv = { .tv_sec = CONN_TIMEOUT_S };

	if (streaming)
		bufferevent_set_timeouts(evhttp_connection_get_bufferevent(conn), NULL, &tv);
	else
		evhttp_connection_set_timeout(conn, CONN_TIMEOUT_S);
}

static void scrape_finish(struct evhttp_connection *conn, struct scrape *s)
{
	evhttp_connection_set_closecb(conn, NULL, NULL);
	set_streaming(conn, false);
	evhttp_send_reply_end(s->req);
	scrape_end(s);
}

/* libevent: the last chunk is out.  Sends the next. */
static void scrape_pump(struct evhttp_connection *conn, void *arg)
{
	struct scrape *s = arg;
	int next = scrape_next(s);

	/* Cut the response (scrape_closed frees the scrape): the client
	 * records a failed scrape rather than partial numbers. */
	if (next < 0)
		evhttp_connection_free(conn);
	else if (next)
		evhttp_send_reply_chunk_with_cb(s->req, s->chunk, scrape_pump, s);
	else
		scrape_finish(conn, s);
}

/* The body is streamed: written step by step as the client takes it, so its
 * size never shows in the agent's memory.  The first chunk is made before
 * the reply starts, so a failure there is still a 500. */
static void serve_metrics(struct metrics *metrics, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *connection;
	struct scrape *s = scrape_begin(metrics);
	int next = -ENOMEM, one = 1;

	if (s) {
		s->req = req;
		s->chunk = evbuffer_new();
		s->ref = evbuffer_new();
		if (s->chunk && s->ref)
			next = scrape_next(s);
	}
	if (next < 0) {
		scrape_end(s);
		reply_text(req, HTTP_INTERNAL, "Internal Server Error", "scrape failed\n");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  METRICS_CONTENT_TYPE);
	/* Only HTTP/1.1 streams chunked: an HTTP/1.0 keep-alive would be
	 * told a Content-Length before the body is known.  Without it the body
	 * ends with the connection.  (1.1 keeps alive without being asked.)
	 * libevent reads a first Connection that starts with keep-alive as
	 * one, and the next when that one is gone. */
	while ((connection = evhttp_find_header(in, "Connection")) &&
	       !evutil_ascii_strncasecmp(connection, "keep-alive", 10))
		evhttp_remove_header(in, "Connection");
	/* 16 KB a write by default: a scrape of 10 MB took 600 of them. */
	bufferevent_set_max_single_write(bev, 256 * 1024);
	/* The last chunk and the terminator are small writes after a large
	 * one: with Nagle they wait for its ACK, which the client delays (40 ms
	 * on Linux, most scrapes' whole length). */
	setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_streaming(conn, true);
	evhttp_send_reply_start(req, HTTP_OK, "OK");
	evhttp_connection_set_closecb(conn, scrape_closed, s);
	if (next)
		evhttp_send_reply_chunk_with_cb(req, s->chunk, scrape_pump, s);
	else
		scrape_finish(conn, s);
}

static void handle(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	bool is_metrics = path && !strcmp(path, "/metrics");
	bool is_health = path && !strcmp(path, "/healthz");

	if (!is_metrics && !is_health)
		reply_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
	else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
		reply_text(req, 405, "Method Not Allowed", "method not allowed\n");
	else if (is_health)
		reply_text(req, HTTP_OK, "OK", "ok\n");
	else if (cmd == EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  METRICS_CONTENT_TYPE);
		evhttp_send_reply(req, HTTP_OK, "OK", NULL);
	} else {
		serve_metrics(arg, req);
	}
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
	evconnlistener_enable(arg);
}

/* An accept failed for want of a descriptor (or memory): the listener
 * would be woken again at once by the same pending connection, so it
 * rests a second. */
static void accept_failed(struct evconnlistener *listener, void *arg)
{
	const struct timeval pause = { .tv_sec = 1 };

	log_warn("metrics_accept_failed", "err=\"%s\" retry_in_ms=1000", strerror(errno));
	evconnlistener_disable(listener);
	if (event_base_once(evconnlistener_get_base(listener), -1, EV_TIMEOUT, accept_resume,
			    listener, &pause))
		evconnlistener_enable(listener); /* no timer: rather busy than deaf */
}

static void *serve_main(void *arg)
{
	struct metrics *m = arg;

	event_base_dispatch(m->base);
	return NULL;
}

/* "host:port", "[v6]:port" or ":port" into a socket address. */
static int parse_listen(const char *listen, struct addrinfo **res)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	const char *colon = strrchr(listen, ':');
	char host[256];
	size_t hlen;

	if (!colon || !colon[1])
		return -EINVAL;
	hlen = (size_t)(colon - listen);
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, listen, hlen);
	host[hlen] = '\0';
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = '\0';
	}
	if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, res))
		return -EINVAL;
	return 0;
}

int metrics_new(struct metrics **metrics)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->stop_fd = m->listen_fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->left, NULL);
	*metrics = m;
	return 0;
}

static int listen_on(const struct addrinfo *ai)
{
	int one = 1, fd, err;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int metrics_start(const char *listen, struct metrics **metrics)
{
	struct evconnlistener *listener;
	struct addrinfo *ai = NULL;
	struct metrics *m = NULL;
	int err;

	err = parse_listen(listen, &ai);
	if (err) {
		log_err("metrics_listen_invalid", "listen=%s", listen);
		return err;
	}
	err = metrics_new(&m);
	if (err)
		goto out;
	m->listen_fd = listen_on(ai);
	if (m->listen_fd < 0) {
		err = m->listen_fd;
		log_err("metrics_start_failed", "listen=%s err=\"%s\"", listen, strerror(-err));
		goto fail;
	}
	err = -ENOMEM;
	m->base = event_base_new();
	m->http = m->base ? evhttp_new(m->base) : NULL;
	m->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!m->http || m->stop_fd < 0)
		goto fail_log;
	m->stop = event_new(m->base, m->stop_fd, EV_READ, stop_loop, m->base);
	if (!m->stop || event_add(m->stop, NULL))
		goto fail_log;
	listener = evconnlistener_new(m->base, NULL, NULL,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, m->listen_fd);
	if (!listener)
		goto fail_log;
	m->listen_fd = -1; /* the listener's, and evhttp_free() frees that */
	if (!evhttp_bind_listener(m->http, listener)) {
		evconnlistener_free(listener);
		goto fail_log;
	}
	evconnlistener_set_error_cb(listener, accept_failed);
	/* POST and the rest reach handle(), which answers 405, not 501. */
	evhttp_set_allowed_methods(m->http, 0xffff);
	evhttp_set_timeout(m->http, CONN_TIMEOUT_S);
	evhttp_set_max_headers_size(m->http, 16 * 1024);
	evhttp_set_max_body_size(m->http, 64 * 1024);
	evhttp_set_gencb(m->http, handle, m);
	err = -pthread_create(&m->thread, NULL, serve_main, m);
	if (err)
		goto fail_log;
	m->running = true;
	log_info("metrics_listening", "listen=%s", listen);
	*metrics = m;
	goto out;
fail_log:
	log_err("metrics_start_failed", "listen=%s err=\"%s\"", listen, strerror(-err));
fail:
	metrics_stop(m);
out:
	freeaddrinfo(ai);
	return err;
}

void metrics_stop(struct metrics *metrics)
{
	struct collector *c, *next;
	uint64_t one = 1;

	if (!metrics)
		return;
	if (metrics->running) {
		if (write(metrics->stop_fd, &one, sizeof(one)) != sizeof(one))
			log_warn("metrics_stop_signal_failed", "err=\"%s\"", strerror(errno));
		pthread_join(metrics->thread, NULL);
	}
	/* Ends the scrapes in flight, which drop their references. */
	if (metrics->http)
		evhttp_free(metrics->http);
	if (metrics->stop)
		event_free(metrics->stop);
	if (metrics->base)
		event_base_free(metrics->base);
	if (metrics->stop_fd >= 0)
		close(metrics->stop_fd);
	if (metrics->listen_fd >= 0)
		close(metrics->listen_fd);
	for (c = metrics->collectors; c; c = next) {
		next = c->next;
		free(c);
	}
	pthread_cond_destroy(&metrics->left);
	pthread_mutex_destroy(&metrics->lock);
	free(metrics);
}

static int add(struct metrics *metrics, metrics_collect_fn collect, metrics_step_fn step,
	       metrics_end_fn end, void *ctx)
{
	struct collector *c, **tail;

	if (!metrics)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->collect = collect;
	c->step = step;
	c->end = end;
	c->ctx = ctx;
	c->refs = 1;
	pthread_mutex_lock(&metrics->lock);
	for (tail = &metrics->collectors; *tail; tail = &(*tail)->next)
		;
	*tail = c;
	pthread_mutex_unlock(&metrics->lock);
	return 0;
}

int metrics_register(struct metrics *metrics, metrics_collect_fn collect, void *ctx)
{
	return add(metrics, collect, NULL, NULL, ctx);
}

int metrics_register_steps(struct metrics *metrics, metrics_step_fn step, metrics_end_fn end,
			   void *ctx)
{
	return add(metrics, NULL, step, end, ctx);
}

static void del(struct metrics *metrics, metrics_collect_fn collect, metrics_step_fn step,
		void *ctx)
{
	struct collector **pp, *c;

	if (!metrics)
		return;
	pthread_mutex_lock(&metrics->lock);
	for (pp = &metrics->collectors; (c = *pp); pp = &c->next) {
		if (c->collect != collect || c->step != step || c->ctx != ctx)
			continue;
		*pp = c->next;
		/* Scrapes that have yet to reach it skip it; one inside its
		 * steps may still use @ctx, so it is waited for. */
		c->dead = true;
		while (c->active)
			pthread_cond_wait(&metrics->left, &metrics->lock);
		collector_put(c);
		break;
	}
	pthread_mutex_unlock(&metrics->lock);
}

void metrics_unregister(struct metrics *metrics, metrics_collect_fn collect, void *ctx)
{
	del(metrics, collect, NULL, ctx);
}

void metrics_unregister_steps(struct metrics *metrics, metrics_step_fn step, void *ctx)
{
	del(metrics, NULL, step, ctx);
}

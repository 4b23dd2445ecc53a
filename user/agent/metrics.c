// SPDX-License-Identifier: Apache-2.0
/* The Prometheus endpoint: libmicrohttpd serves, collectors write. */
#include "agent/metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct collector {
	metrics_collect_fn collect;
	void *ctx;
	struct collector *next;
};

struct metrics {
	struct MHD_Daemon *daemon;
	pthread_mutex_t lock; /* the collector list */
	struct collector *collectors;
};

struct metrics_writer {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void wr_reserve(struct metrics_writer *w, size_t more)
{
	size_t cap = w->cap ? w->cap : 4096;
	char *nbuf;

	if (w->oom || w->len + more + 1 <= w->cap)
		return;
	while (cap < w->len + more + 1)
		cap *= 2;
	nbuf = realloc(w->buf, cap);
	if (!nbuf) {
		w->oom = true;
		return;
	}
	w->buf = nbuf;
	w->cap = cap;
}

__attribute__((format(printf, 2, 3))) static void wr_printf(struct metrics_writer *w,
							  const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	wr_reserve(w, (size_t)n);
	if (w->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
	va_end(ap);
	w->len += (size_t)n;
}

static void wr_putc(struct metrics_writer *w, char c)
{
	wr_reserve(w, 1);
	if (w->oom)
		return;
	w->buf[w->len++] = c;
	w->buf[w->len] = '\0';
}

/* HELP text escapes \ and newline; label values also escape ". */
static void wr_escaped(struct metrics_writer *w, const char *s, bool quote)
{
	for (; s && *s; s++) {
		if (*s == '\\')
			wr_printf(w, "\\\\");
		else if (*s == '\n')
			wr_printf(w, "\\n");
		else if (*s == '"' && quote)
			wr_printf(w, "\\\"");
		else
			wr_putc(w, *s);
	}
}

void metrics_family(struct metrics_writer *w, const char *name, const char *type,
		    const char *help)
{
	wr_printf(w, "# HELP %s ", name);
	wr_escaped(w, help, false);
	wr_printf(w, "\n# TYPE %s %s\n", name, type);
}

static void wr_labels(struct metrics_writer *w, va_list ap)
{
	const char *key;
	bool first = true;

	while ((key = va_arg(ap, const char *))) {
		const char *val = va_arg(ap, const char *);

		wr_printf(w, "%s%s=\"", first ? "{" : ",", key);
		wr_escaped(w, val, true);
		wr_putc(w, '"');
		first = false;
	}
	if (!first)
		wr_putc(w, '}');
}

static void wr_sample(struct metrics_writer *w, const char *name, const char *value, va_list ap)
{
	wr_printf(w, "%s", name);
	wr_labels(w, ap);
	wr_printf(w, " %s\n", value);
}

void metrics_sample(struct metrics_writer *w, const char *name, double value, ...)
{
	char num[32];
	va_list ap;

	snprintf(num, sizeof(num), "%.17g", value);
	va_start(ap, value);
	wr_sample(w, name, num, ap);
	va_end(ap);
}

void metrics_sample_u64(struct metrics_writer *w, const char *name, uint64_t value, ...)
{
	char num[24];
	va_list ap;

	snprintf(num, sizeof(num), "%llu", (unsigned long long)value);
	va_start(ap, value);
	wr_sample(w, name, num, ap);
	va_end(ap);
}

int metrics_render(struct metrics *metrics, char **body, size_t *len)
{
	struct metrics_writer w = { 0 };

	wr_reserve(&w, 0);
	pthread_mutex_lock(&metrics->lock);
	for (struct collector *c = metrics->collectors; c; c = c->next)
		c->collect(c->ctx, &w);
	pthread_mutex_unlock(&metrics->lock);
	if (w.oom) {
		free(w.buf);
		return -ENOMEM;
	}
	*body = w.buf;
	*len = w.len;
	return 0;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status, char *body,
			     size_t len, enum MHD_ResponseMemoryMode mode, const char *type)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	static char not_found[] = "not found\n", not_allowed[] = "method not allowed\n",
		    ok[] = "ok\n", failed[] = "scrape failed\n";
	struct metrics *metrics = cls;
	bool is_metrics = !strcmp(url, "/metrics"), is_health = !strcmp(url, "/healthz");
	char *body;
	size_t len;

	if (!is_metrics && !is_health)
		return reply(conn, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1,
			     MHD_RESPMEM_PERSISTENT, "text/plain");
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed,
			     sizeof(not_allowed) - 1, MHD_RESPMEM_PERSISTENT, "text/plain");
	if (is_health)
		return reply(conn, MHD_HTTP_OK, ok, sizeof(ok) - 1, MHD_RESPMEM_PERSISTENT,
			     "text/plain");
	if (metrics_render(metrics, &body, &len))
		return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, failed, sizeof(failed) - 1,
			     MHD_RESPMEM_PERSISTENT, "text/plain");
	return reply(conn, MHD_HTTP_OK, body, len, MHD_RESPMEM_MUST_FREE, METRICS_CONTENT_TYPE);
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
	pthread_mutex_init(&m->lock, NULL);
	*metrics = m;
	return 0;
}

int metrics_start(const char *listen, struct metrics **metrics)
{
	struct addrinfo *ai = NULL;
	struct metrics *m;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	int err;

	err = parse_listen(listen, &ai);
	if (err) {
		log_err("metrics_listen_invalid", "listen=%s", listen);
		return err;
	}
	err = metrics_new(&m);
	if (err)
		goto out;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	m->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, m, MHD_OPTION_SOCK_ADDR,
				     ai->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT, 10U,
				     MHD_OPTION_END);
	if (!m->daemon) {
		err = -EADDRNOTAVAIL;
		log_err("metrics_start_failed", "listen=%s", listen);
		metrics_stop(m);
		goto out;
	}
	log_info("metrics_listening", "listen=%s", listen);
	*metrics = m;
out:
	freeaddrinfo(ai);
	return err;
}

void metrics_stop(struct metrics *metrics)
{
	struct collector *c, *next;

	if (!metrics)
		return;
	if (metrics->daemon)
		MHD_stop_daemon(metrics->daemon);
	for (c = metrics->collectors; c; c = next) {
		next = c->next;
		free(c);
	}
	pthread_mutex_destroy(&metrics->lock);
	free(metrics);
}

int metrics_register(struct metrics *metrics, metrics_collect_fn collect, void *ctx)
{
	struct collector *c, **tail;

	if (!metrics)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->collect = collect;
	c->ctx = ctx;
	pthread_mutex_lock(&metrics->lock);
	for (tail = &metrics->collectors; *tail; tail = &(*tail)->next)
		;
	*tail = c;
	pthread_mutex_unlock(&metrics->lock);
	return 0;
}

void metrics_unregister(struct metrics *metrics, metrics_collect_fn collect, void *ctx)
{
	struct collector **pp, *c;

	if (!metrics)
		return;
	pthread_mutex_lock(&metrics->lock);
	for (pp = &metrics->collectors; (c = *pp); pp = &c->next) {
		if (c->collect == collect && c->ctx == ctx) {
			*pp = c->next;
			free(c);
			break;
		}
	}
	pthread_mutex_unlock(&metrics->lock);
}

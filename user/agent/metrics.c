// SPDX-License-Identifier: Apache-2.0
/* The Prometheus endpoint: libmicrohttpd serves, collectors write. */
#include "agent/metrics.h"

#include <errno.h>
#include <math.h>
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

struct metrics {
	struct MHD_Daemon *daemon;
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
	size_t sent; /* bytes of w.buf handed out */
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

/* libmicrohttpd asks for the next bytes of the body: hands out what the
 * last step wrote, and runs steps until one writes something. */
static ssize_t scrape_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct scrape *s = cls;
	size_t n;

	while (s->sent == s->w.len) {
		s->w.len = s->sent = 0;
		if (!scrape_step(s))
			return MHD_CONTENT_READER_END_OF_STREAM;
		/* Cut the response: the client records a failed scrape
		 * rather than partial numbers. */
		if (s->w.err)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	n = s->w.len - s->sent < max ? s->w.len - s->sent : max;
	memcpy(buf, s->w.buf + s->sent, n);
	s->sent += n;
	return (ssize_t)n;
}

static void scrape_free(void *cls)
{
	scrape_end(cls);
}

/* --- the server ----------------------------------------------------------- */

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
	struct MHD_Response *resp;
	enum MHD_Result ret;
	struct scrape *s;

	if (!is_metrics && !is_health)
		return reply(conn, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1,
			     MHD_RESPMEM_PERSISTENT, "text/plain");
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed,
			     sizeof(not_allowed) - 1, MHD_RESPMEM_PERSISTENT, "text/plain");
	if (is_health)
		return reply(conn, MHD_HTTP_OK, ok, sizeof(ok) - 1, MHD_RESPMEM_PERSISTENT,
			     "text/plain");
	/* Streamed: the body is written step by step as the client takes it,
	 * so its size never shows in the agent's memory. */
	s = scrape_begin(metrics);
	resp = s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, scrape_read, s,
						     scrape_free) :
		   NULL;
	if (!resp) {
		scrape_end(s);
		return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, failed, sizeof(failed) - 1,
			     MHD_RESPMEM_PERSISTENT, "text/plain");
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
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
	pthread_cond_init(&m->left, NULL);
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
				     /* The write buffer of a streamed reply comes
				      * from this pool: 32 KB by default, so a
				      * scrape of 10 MB took 350 sends. */
				     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
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
	/* Ends the scrapes in flight, which drop their references. */
	if (metrics->daemon)
		MHD_stop_daemon(metrics->daemon);
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

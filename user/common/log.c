// SPDX-License-Identifier: Apache-2.0
#include "common/log.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

/* Process-wide logging configuration, set once by main() before threads. */
static struct {
	const char *prog;
	enum log_level level;
	enum log_format format;
	FILE *out;
} log_cfg = { "railnet", LOG_LVL_INFO, LOG_FMT_TEXT, NULL };

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
	[LOG_LVL_ERROR] = "error",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

void log_setup(const char *prog, enum log_level level, enum log_format format, FILE *out)
{
	log_cfg.prog = prog;
	log_cfg.level = level;
	log_cfg.format = format;
	log_cfg.out = out;
}

int log_level_parse(const char *name, enum log_level *level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (!strcasecmp(name, level_names[i])) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int log_format_parse(const char *name, enum log_format *format)
{
	if (!strcmp(name, "text"))
		*format = LOG_FMT_TEXT;
	else if (!strcmp(name, "json"))
		*format = LOG_FMT_JSON;
	else
		return -EINVAL;
	return 0;
}

bool log_enabled(enum log_level level)
{
	return level <= log_cfg.level;
}

/* A log line put together in memory, to be written at once: stderr is
 * unbuffered, and each fputc would be a write(2) of its own, under the
 * lock every thread that logs waits for.  What does not fit is cut. */
struct line {
	char buf[4096];
	size_t len;
};

static void put(struct line *l, const char *s, size_t n)
{
	if (n > sizeof(l->buf) - 1 - l->len)
		n = sizeof(l->buf) - 1 - l->len;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

__attribute__((format(printf, 2, 3))) static void putf(struct line *l, const char *fmt, ...)
{
	size_t room = sizeof(l->buf) - 1 - l->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(l->buf + l->len, room + 1, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->len += (size_t)n < room ? (size_t)n : room;
}

static void json_put_string(struct line *f, const char *s, size_t len)
{
	put(f, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			putf(f, "\\%c", c);
		else if (c < 0x20)
			putf(f, "\\u%04x", c);
		else
			put(f, (const char *)&c, 1);
	}
	put(f, "\"", 1);
}

/* Whether the '"' at @q ends a quoted value: it is followed by the end or by
 * " key=".  So a message quoted whole that quotes something itself
 * (err="pools[0].ips[1]: "x" is not ...") stays one field. */
static bool closes_value(const char *q)
{
	const char *k;

	if (*q != '"')
		return false;
	if (!q[1])
		return true;
	if (q[1] != ' ')
		return false;
	k = q + 2;
	while ((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
	       *k == '_')
		k++;
	return k > q + 2 && *k == '=';
}

/* Writes the logfmt pairs of @ctx as JSON fields: key=value, key="a b". */
static void json_put_context(struct line *f, const char *ctx)
{
	const char *p = ctx;

	while (*p) {
		const char *key, *eq, *val, *end;

		while (*p == ' ')
			p++;
		if (!*p)
			break;
		key = p;
		eq = strchr(p, '=');
		end = strchr(p, ' ');
		if (!eq || (end && end < eq)) {
			/* A bare word: keep it rather than drop it. */
			end = end ? end : p + strlen(p);
			put(f, ",\"detail\":", 10);
			json_put_string(f, key, (size_t)(end - key));
			p = end;
			continue;
		}
		val = eq + 1;
		put(f, ",", 1);
		json_put_string(f, key, (size_t)(eq - key));
		put(f, ":", 1);
		if (*val == '"') {
			/* A quoted logfmt value: \" and \\ are escapes. */
			char unq[1024];
			size_t n = 0;

			for (end = val + 1; *end && !closes_value(end); end++) {
				if (*end == '\\' && (end[1] == '"' || end[1] == '\\'))
					end++;
				if (n < sizeof(unq))
					unq[n++] = *end;
			}
			json_put_string(f, unq, n);
			p = *end ? end + 1 : end;
		} else {
			end = val + strcspn(val, " ");
			json_put_string(f, val, (size_t)(end - val));
			p = end;
		}
	}
}

void log_event(enum log_level level, const char *event, const char *fmt, ...)
{
	FILE *out = log_cfg.out ? log_cfg.out : stderr;
	char ctx[2048], stamp[32];
	struct line *f, one;
	struct timeval tv;
	struct tm tm;
	va_list ap;

	if (!log_enabled(level))
		return;

	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp) - 5, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + strlen(stamp), 6, ".%03uZ", (unsigned)(tv.tv_usec / 1000) % 1000);

	f = &one;
	f->len = 0;
	if (log_cfg.format == LOG_FMT_JSON) {
		putf(f, "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":", stamp, level_names[level]);
		json_put_string(f, log_cfg.prog, strlen(log_cfg.prog));
		put(f, ",\"event\":", 9);
		json_put_string(f, event, strlen(event));
		json_put_context(f, ctx);
		put(f, "}", 1);
	} else {
		putf(f, "%s %-5s %s %s%s%s", stamp, level_names[level], log_cfg.prog, event,
		     ctx[0] ? " " : "", ctx);
	}
	f->buf[f->len++] = '\n'; /* put() keeps a byte for it */
	pthread_mutex_lock(&log_lock);
	fwrite(f->buf, 1, f->len, out);
	fflush(out);
	pthread_mutex_unlock(&log_lock);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum log_level ours = level == LIBBPF_WARN ? LOG_LVL_WARN :
			      level == LIBBPF_INFO ? LOG_LVL_INFO : LOG_LVL_DEBUG;
	char line[1024];
	size_t len;

	/* libbpf's info messages are chatty load details: keep them at debug. */
	if (ours == LOG_LVL_INFO)
		ours = LOG_LVL_DEBUG;
	if (!log_enabled(ours))
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	len = strlen(line);
	while (len && line[len - 1] == '\n')
		line[--len] = '\0';
	for (char *c = line; *c; c++)
		if (*c == '"')
			*c = '\'';
	log_event(ours, "libbpf", "msg=\"%s\"", line);
	return 0;
}

void log_route_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}

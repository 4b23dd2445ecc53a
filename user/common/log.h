/* SPDX-License-Identifier: Apache-2.0 */
/* The one logging funnel of railnet's userspace: one line per event, with a
 * level and logfmt context ("pool=gpu1 ifname=net1 addr=172.16.11.5"), as
 * text for a terminal or as JSON for a cluster log pipeline.
 */
#ifndef RAILNET_LOG_H
#define RAILNET_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum log_level {
	LOG_LVL_ERROR,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

enum log_format {
	LOG_FMT_TEXT,
	LOG_FMT_JSON,
};

/* Defaults: info, text, stderr.  Not thread-safe; call before threads start. */
void log_setup(const char *prog, enum log_level level, enum log_format format, FILE *out);
int log_level_parse(const char *name, enum log_level *level);
int log_format_parse(const char *name, enum log_format *format);
bool log_enabled(enum log_level level);

/* Log @event with logfmt context: @fmt expands to space-separated key=value
 * pairs; a value with spaces is double-quoted, with \" and \\ escaped
 * ("err=\"%s\"").  In JSON mode
 * each pair becomes a field.  Safe to call from several threads.
 */
void log_event(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_err(event, ...)   log_event(LOG_LVL_ERROR, event, __VA_ARGS__)
#define log_warn(event, ...)  log_event(LOG_LVL_WARN, event, __VA_ARGS__)
#define log_info(event, ...)  log_event(LOG_LVL_INFO, event, __VA_ARGS__)
#define log_debug(event, ...)                                        \
	do {                                                         \
		if (log_enabled(LOG_LVL_DEBUG))                      \
			log_event(LOG_LVL_DEBUG, event, __VA_ARGS__); \
	} while (0)

/* Routes libbpf's messages through log_event (warnings and above, debug
 * when the level is debug). */
void log_route_libbpf(void);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* railnetd's Prometheus endpoint (docs/datapath.md#metrics).
 *
 * GET /metrics answers in the text exposition format 0.0.4, GET /healthz
 * answers "ok"; anything else is 404 (405 for other methods).  Modules add
 * their series by registering a collector, which a scrape calls in order of
 * registration: it reads its state directly (maps, counters) so that numbers
 * are never staler than the scrape.  Collectors run on the HTTP server's
 * thread, concurrently with control ops.
 *
 *   static void collect_rdma(void *ctx, struct metrics_writer *w)
 *   {
 *           metrics_family(w, "railnet_rdma_devices", "gauge", "RDMA devices seen");
 *           metrics_sample(w, "railnet_rdma_devices", n, "node", node, NULL);
 *   }
 *   metrics_register(agent->metrics, collect_rdma, rdma);
 *
 * The response is streamed (chunked): it is sent as collectors write it, a
 * few tens of KB at a time, never built whole.  A collector whose series are
 * counted in thousands (one per pod NIC) registers in steps instead, so that
 * the part it writes per call stays small; it must also not hold a lock that
 * control ops need across calls.
 */
#ifndef RAILNET_AGENT_METRICS_H
#define RAILNET_AGENT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;
struct metrics_writer;

typedef void (*metrics_collect_fn)(void *ctx, struct metrics_writer *w);
/* One step of a scrape: writes the next part of the collector's series and
 * returns true while more remain.  *@state is NULL at a scrape's first call;
 * the collector keeps its place there. */
typedef bool (*metrics_step_fn)(void *ctx, struct metrics_writer *w, void **state);
/* The scrape is over, complete or not (the client went away): frees @state
 * (which may be NULL). */
typedef void (*metrics_end_fn)(void *ctx, void *state);

/* Serves on @listen ("host:port", "[v6]:port", ":port" for every address). */
int metrics_start(const char *listen, struct metrics **metrics);
/* Creates the registry without a server (tests, benchmarks). */
int metrics_new(struct metrics **metrics);
void metrics_stop(struct metrics *metrics);

/* Adds a collector; safe while the server runs.  @metrics may be NULL (no
 * endpoint configured): then nothing happens and 0 is returned. */
int metrics_register(struct metrics *metrics, metrics_collect_fn collect, void *ctx);
int metrics_register_steps(struct metrics *metrics, metrics_step_fn step, metrics_end_fn end,
			   void *ctx);
/* Removes a collector: once they return it is not called again.  A scrape
 * that is inside the collector's steps is waited for (not from a collector). */
void metrics_unregister(struct metrics *metrics, metrics_collect_fn collect, void *ctx);
void metrics_unregister_steps(struct metrics *metrics, metrics_step_fn step, void *ctx);

/* The body of one scrape (malloc'd, *len bytes, NUL-terminated); -ENOMEM,
 * or the error a collector failed the scrape with. */
int metrics_render(struct metrics *metrics, char **body, size_t *len);

/* A collector that cannot finish (@err, negative errno) fails the scrape:
 * what follows is dropped, the response is cut off, and metrics_render
 * returns @err.  Prometheus then records a failed scrape, not a partial one. */
void metrics_fail(struct metrics_writer *w, int err);

/* # HELP and # TYPE lines; @type is "counter", "gauge" or "untyped".  Write
 * a family's header once, then all its samples. */
void metrics_family(struct metrics_writer *w, const char *name, const char *type,
		    const char *help);
/* One sample: label name/value pairs follow @value, ended by NULL.  Label
 * values are escaped (\\, \", \n); a NULL value is written as "". */
void metrics_sample(struct metrics_writer *w, const char *name, double value, ...)
	__attribute__((sentinel));
/* Same, for counters that outgrow a double's 53 bits of mantissa. */
void metrics_sample_u64(struct metrics_writer *w, const char *name, uint64_t value, ...)
	__attribute__((sentinel));

/* For many samples that share labels: the pairs (ended by NULL) escaped once
 * into @buf as `a="x",b="y"` (NUL-terminated).  Returns the length the set
 * needs, as snprintf does: @buf holds it all only if that is < @len. */
size_t metrics_labels(char *buf, size_t len, ...) __attribute__((sentinel));
/* Label sets in bulk: appends `key="value"` (escaped, not terminated) at @p,
 * which has room for strlen(@key) + 3 + 2 * strlen(@value) bytes, and
 * returns its end.  @value NULL is "". */
char *metrics_label_put(char *p, const char *key, const char *value);
/* A label set escaped once for many samples. */
struct metrics_set {
	const char *s;
	size_t len;
};

/* A sample whose labels are the @n sets joined by commas (empty ones
 * skipped). */
void metrics_sample_sets(struct metrics_writer *w, const char *name, double value,
			 const struct metrics_set *sets, size_t n);
void metrics_sample_sets_u64(struct metrics_writer *w, const char *name, uint64_t value,
			     const struct metrics_set *sets, size_t n);
/* A duration given in nanoseconds, written in seconds as the exact decimal
 * (0.000123456): a _seconds gauge without a double's rounding or its cost. */
void metrics_sample_sets_ns(struct metrics_writer *w, const char *name, uint64_t ns,
			    const struct metrics_set *sets, size_t n);

#endif

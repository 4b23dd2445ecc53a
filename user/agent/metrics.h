/* SPDX-License-Identifier: Apache-2.0 */
/* railnetd's Prometheus endpoint (docs/datapath.md#metrics).
 *
 * GET /metrics answers in the text exposition format 0.0.4, GET /healthz
 * answers "ok"; anything else is 404 (405 for other methods).  Modules add
 * their series by registering a collector, which a scrape calls in order of
 * registration: it reads its state directly (maps, counters) so that numbers
 * are never staler than the scrape.  Collectors run on the HTTP server's
 * thread, one scrape at a time, concurrently with control ops.
 *
 *   static void collect_rdma(void *ctx, struct metrics_writer *w)
 *   {
 *           metrics_family(w, "railnet_rdma_devices", "gauge", "RDMA devices seen");
 *           metrics_sample(w, "railnet_rdma_devices", n, "node", node, NULL);
 *   }
 *   metrics_register(agent->metrics, collect_rdma, rdma);
 */
#ifndef RAILNET_AGENT_METRICS_H
#define RAILNET_AGENT_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics;
struct metrics_writer;

typedef void (*metrics_collect_fn)(void *ctx, struct metrics_writer *w);

/* Serves on @listen ("host:port", "[v6]:port", ":port" for every address). */
int metrics_start(const char *listen, struct metrics **metrics);
/* Creates the registry without a server (tests, benchmarks). */
int metrics_new(struct metrics **metrics);
void metrics_stop(struct metrics *metrics);

/* Adds a collector; safe while the server runs.  @metrics may be NULL (no
 * endpoint configured): then nothing happens and 0 is returned. */
int metrics_register(struct metrics *metrics, metrics_collect_fn collect, void *ctx);
void metrics_unregister(struct metrics *metrics, metrics_collect_fn collect, void *ctx);

/* The body of one scrape (malloc'd, *len bytes, NUL-terminated). */
int metrics_render(struct metrics *metrics, char **body, size_t *len);

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

#endif

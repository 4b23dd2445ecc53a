/* SPDX-License-Identifier: Apache-2.0 */
/* IP conflict probes ahead of time.  A NIC of a network with
 * detectIPConflict must not get an address that someone else on the rail
 * holds, and "nobody answered" takes a whole listening window (RFC 5227
 * ARP probe, IPv6 DAD: 100 ms by default) - longer than the rest of ADD.  So
 * the agent probes the addresses each pool will hand out next, from the
 * pool's master NIC, before an ADD asks for them: an ADD that gets an
 * address found free within maxAgeMs needs no probe of its own, and an
 * address that answered is quarantined (never handed out meanwhile).
 *
 * The master and window of a pool are learnt from the ADDs that ask
 * (ipam.allocate's "conflictProbe") and kept in
 * <stateDir>/conflict-probe.json, so that a restarted agent probes ahead at
 * once.  A pool's reserve is probed again before it ages out. */
#ifndef RAILNET_CONFLICT_PROBE_H
#define RAILNET_CONFLICT_PROBE_H

#include <json-c/json.h>
#include <stdbool.h>

#include "agent/ipam.h"

struct metrics_writer;

struct conflict_probe_config {
	int depth;		 /* conflictProbe.depth: addresses per pool (default 4; 0: off) */
	long long max_age_ms;	 /* conflictProbe.maxAgeMs: a free answer counts this long */
	long long quarantine_ms; /* conflictProbe.quarantineMs: an answered address rests */
};

/* The "conflictProbe" section of the agent's configuration. */
int conflict_probe_config_parse(struct json_object *root, struct conflict_probe_config *cfg,
				char *errbuf, size_t errlen);

struct conflict_probe;

int conflict_probe_open(struct ipam *ipam, const char *state_dir,
			const struct conflict_probe_config *cfg, struct conflict_probe **out);
void conflict_probe_close(struct conflict_probe *cp);

/* An ADD got @addr from @pool and wants it checked on @master's wire with a
 * @window_ms window: true when a probe found it free recently enough that
 * the plugin may skip its own.  Either way the pool's next addresses are
 * probed ahead.  @cp may be NULL (probing ahead is off). */
bool conflict_probe_check(struct conflict_probe *cp, const char *pool, const char *master,
			  int window_ms, const struct ipaddr *addr);

/* Prometheus collector (ctx: the prober). */
void conflict_probe_collect(void *ctx, struct metrics_writer *w);

#endif

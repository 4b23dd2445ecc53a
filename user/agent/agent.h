/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent: what its modules share.
 *
 * A module of railnetd (IPAM today; the datapath, metrics and RDMA
 * accounting hang on the same core) plugs in by:
 *  1. parsing its own section of cfg.root (its key is listed in config.c's
 *     known_keys so that the file validates),
 *  2. an init called by main() before the control socket opens and a fini
 *     after it closes, with its state as a member of struct agent,
 *  3. entries in the op table (ctl_ops.c).
 *
 * Threading: each control connection is served by its own thread, so op
 * handlers run concurrently; a module guards its own state.  cfg is replaced
 * only by a reload, under reload_lock held for writing; handlers that read
 * cfg take it for reading.
 */
#ifndef RAILNET_AGENT_H
#define RAILNET_AGENT_H

#include <json-c/json.h>
#include <pthread.h>
#include <time.h>

#include "agent/config.h"
#include "agent/conflict_probe.h"
#include "agent/ipam.h"
#include "agent/metrics.h"
#include "agent/nic_teardown.h"
#include "common/ctl_client.h"

struct agent {
	struct agent_config cfg;
	pthread_rwlock_t reload_lock;
	time_t started;
	struct ipam *ipam;
	struct metrics *metrics; /* NULL when metrics.listen is unset */
	struct rdma *rdma;	 /* NULL without an "rdma" section */
	struct nic_teardown *teardown;
	struct datapath *datapath; /* NULL when datapath.enabled is false */
	struct conflict_probe *conflict; /* NULL when conflictProbe.depth is 0 */
};

/* An op handler: fills @result (an empty object) or @err, returns 0 or a
 * negative errno. */
typedef int (*ctl_op_fn)(struct agent *agent, struct json_object *args,
			 struct json_object *result, struct ctl_error *err);

struct ctl_op {
	const char *name;
	ctl_op_fn fn;
};

const struct ctl_op *ctl_op_find(const char *name);

/* Fills @err and returns -EINVAL/... for a handler to return. */
int ctl_fail(struct ctl_error *err, const char *code, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Applies @path's configuration (SIGHUP); the old one stays on failure. */
int agent_reload(struct agent *agent, const char *path);

#endif

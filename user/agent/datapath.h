/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's datapath module (docs/datapath.md): pod rail NICs as entries
 * of the pinned maps, the tc hooks in the pods, the gateway prober, the
 * datapath's Prometheus series and its control ops.
 *
 * Entries are kept in stateDir/datapath/<id>.json as well as in the maps:
 * a restarted railnetd reuses the pinned maps and hooks (pods forward all
 * along), takes its pod metadata from the records, and switches the hooks
 * to its own programs atomically; after an incompatible layout change it
 * rebuilds the new maps from the records before switching.
 */
#ifndef RAILNET_AGENT_DATAPATH_H
#define RAILNET_AGENT_DATAPATH_H

#include <json-c/json.h>
#include <stdbool.h>

#include "common/ctl_client.h"

struct agent;
struct datapath;
struct metrics;

/* datapath.hooks: how programs are hooked to pod devices. */
enum dp_hooks_pref {
	DP_HOOKS_CLSACT, /* default: no RCU grace period per attach */
	DP_HOOKS_TCX,    /* tcx links (kernel >= 6.6), refused where absent */
	DP_HOOKS_AUTO,   /* tcx where the kernel has it, else clsact */
};

struct datapath_config {
	bool enabled;               /* datapath.enabled (default true) */
	enum dp_hooks_pref hooks;   /* datapath.hooks (default "clsact") */
	bool fast_redirect;         /* datapath.fastRedirect (default true) */
	long long probe_interval_ms; /* gateway.probeIntervalMs (default 1000) */
	int down_after;             /* gateway.downAfter intervals (default 3) */
};

/* The "datapath" and "gateway" sections of the agent's configuration. */
int datapath_config_parse(struct json_object *root, struct datapath_config *cfg, char *errbuf,
			  size_t errlen);

int datapath_open(const char *bpffs, const char *state_dir, const struct datapath_config *cfg,
		  struct datapath **dp);
/* Stops the prober; maps, programs and hooks stay for the next agent. */
void datapath_close(struct datapath *dp);

/* Adds the datapath's series to @metrics (which may be NULL); @dp may be
 * NULL (datapath disabled). */
int datapath_metrics_register(struct datapath *dp, struct metrics *metrics);

/* Removes a pod NIC's entry and its hooks; true when it had one. */
bool datapath_detach(struct datapath *dp, const char *network, const char *container_id,
		     const char *ifname);

/* Control ops (docs/protocol.md). */
int datapath_op_prepare(struct agent *agent, struct json_object *args, struct json_object *result,
			struct ctl_error *err);
int datapath_op_attach(struct agent *agent, struct json_object *args, struct json_object *result,
		       struct ctl_error *err);
int datapath_op_detach(struct agent *agent, struct json_object *args, struct json_object *result,
		       struct ctl_error *err);
int datapath_op_get(struct agent *agent, struct json_object *args, struct json_object *result,
		    struct ctl_error *err);
int datapath_op_list(struct agent *agent, struct json_object *args, struct json_object *result,
		     struct ctl_error *err);

#endif

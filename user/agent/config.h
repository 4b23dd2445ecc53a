/* SPDX-License-Identifier: Apache-2.0 */
/* railnetd's configuration file (docs/configuration.md).  Each module of the
 * agent parses its own section from the document root kept here. */
#ifndef RAILNET_AGENT_CONFIG_H
#define RAILNET_AGENT_CONFIG_H

#include <json-c/json.h>
#include <stddef.h>

#include "agent/ipam.h"

struct agent_config {
	char *node_name;
	char *socket;
	char *state_dir;
	char *bpffs;
	char *metrics_listen; /* NULL: no metrics endpoint */
	char *store_type;
	long long reconcile_interval_ms;
	long long reconcile_grace_ms;
	struct ipam_config ipam;
	struct json_object *root; /* the whole document, for module sections */
};

/* Parses and validates @root (a reference is taken).  On error, @errbuf
 * names the field by its path ("pools[0].ips[1]") and says why. */
int agent_config_parse(struct json_object *root, struct agent_config *cfg, char *errbuf,
		       size_t errlen);
int agent_config_load(const char *path, struct agent_config *cfg, char *errbuf, size_t errlen);
void agent_config_free(struct agent_config *cfg);

#endif

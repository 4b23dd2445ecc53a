/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's own Prometheus series (build info, IPAM pools). */
#ifndef RAILNET_AGENT_METRICS_SERIES_H
#define RAILNET_AGENT_METRICS_SERIES_H

struct agent;

int agent_metrics_register(struct agent *agent);

#endif

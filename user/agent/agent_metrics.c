// SPDX-License-Identifier: Apache-2.0
/* The agent's own series: build info, uptime and the IPAM pools. */
#include "agent/agent_metrics.h"

#include <stdio.h>
#include <stdlib.h>

#include "agent/agent.h"
#include "agent/metrics.h"

#ifndef RAILNET_VERSION
#define RAILNET_VERSION "0.1.0"
#endif

static void collect_agent(void *ctx, struct metrics_writer *w)
{
	struct agent *agent = ctx;
	unsigned long long errors[IPAM_ERR_MAX], removed, outside;
	struct ipam_pool_stats *st;
	size_t n;

	metrics_family(w, "railnet_build_info", "gauge",
		       "railnetd's version; the value is always 1.");
	metrics_sample(w, "railnet_build_info", 1, "version", RAILNET_VERSION, "compiler",
		       __VERSION__, NULL);
	metrics_family(w, "railnet_agent_start_time_seconds", "gauge",
		       "When railnetd started, seconds since the epoch.");
	metrics_sample(w, "railnet_agent_start_time_seconds", (double)agent->started, NULL);

	if (!ipam_pool_stats(agent->ipam, &st, &n)) {
		static const struct {
			const char *name, *help;
		} fams[3] = {
			{ "railnet_ipam_pool_size", "Addresses a pool can hand out." },
			{ "railnet_ipam_pool_used", "Addresses of a pool held by pod NICs." },
			{ "railnet_ipam_pool_free", "Addresses of a pool still free." },
		};

		for (int f = 0; f < 3; f++) {
			metrics_family(w, fams[f].name, "gauge", fams[f].help);
			for (size_t i = 0; i < n; i++) {
				unsigned long long v = f == 0 ? st[i].total :
						       f == 1 ? st[i].used :
								st[i].total - st[i].used;

				metrics_sample_u64(w, fams[f].name, v, "pool", st[i].name,
						   "subnet", st[i].subnet, NULL);
			}
		}
		free(st);
	}

	ipam_stray_counts(agent->ipam, &removed, &outside);
	metrics_family(w, "railnet_ipam_allocations_outside_config", "gauge",
		       "Allocations kept although the configuration has no room for them, by reason.");
	metrics_sample_u64(w, "railnet_ipam_allocations_outside_config", removed, "reason",
			   "pool_removed", NULL);
	metrics_sample_u64(w, "railnet_ipam_allocations_outside_config", outside, "reason",
			   "outside_pool_addresses", NULL);

	ipam_error_counts(agent->ipam, errors);
	metrics_family(w, "railnet_ipam_allocation_errors_total", "counter",
		       "Allocations refused, by reason.");
	for (int k = 0; k < IPAM_ERR_MAX; k++)
		metrics_sample_u64(w, "railnet_ipam_allocation_errors_total", errors[k], "reason",
				   ipam_error_name((enum ipam_error)k), NULL);
}

int agent_metrics_register(struct agent *agent)
{
	return metrics_register(agent->metrics, collect_agent, agent);
}

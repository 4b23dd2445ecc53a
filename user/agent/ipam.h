/* SPDX-License-Identifier: Apache-2.0 */
/* IP address management for the rail networks.
 *
 * Pools (SpiderIPPool's fields) hand out addresses to pod NICs.  An
 * allocation is keyed by (network, container ID, ifname), or for a stateful
 * pool by (network, pod namespace/name, ifname), so asking again returns the
 * same address.  Every change is appended to a store and made durable before
 * the call returns.  All functions are thread-safe.
 */
#ifndef RAILNET_IPAM_H
#define RAILNET_IPAM_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/ipaddr.h"
#include "agent/store.h"

struct ipam_pool_config {
	char *name;
	struct ipprefix subnet;
	struct iprange *ranges;
	size_t nranges;
	struct iprange *excludes;
	size_t nexcludes;
	struct ipaddr gateway;
	bool has_gateway;
	struct json_object *routes; /* validated [{"dst":..,"gw":..}], owned */
	char **node_names;          /* allow-list; empty: every node */
	size_t nnode_names;
	bool stateful;
	/* How long after its release a stateful pod's address stays reserved
	 * for it (round-robin passes over it). */
	long long stateful_hold_ms;
};

struct ipam_config {
	struct ipam_pool_config *pools;
	size_t npools;
	struct iprange *reserved;
	size_t nreserved;
	/* Compact the store once it holds this many records since the last
	 * compaction (and twice the live ones). */
	long long compact_records;
};

void ipam_config_free(struct ipam_config *cfg);

struct ipam_key {
	const char *network;
	const char *container_id;
	const char *ifname;
};

struct ipam_request {
	struct ipam_key key;
	const char *netns;
	const char *pod_namespace;
	const char *pod_name;
	const char *pod_uid;
	/* Pool names per family, tried in order. */
	const char **pools_v4;
	size_t npools_v4;
	const char **pools_v6;
	size_t npools_v6;
	/* Answer before the allocation is durable; the caller makes it so
	 * with ipam_sync() before it tells anyone outside the node. */
	bool defer_sync;
};

struct ipam_lease {
	char pool[64];
	struct ipaddr addr;
	int prefix_len;
	struct ipaddr gateway;
	bool has_gateway;
	bool fresh; /* allocated by this call, not found held already */
	bool probed; /* found free on the wire just before (conflict_probe.h) */
};

enum ipam_error {
	IPAM_ERR_EXHAUSTED,
	IPAM_ERR_UNKNOWN_POOL,
	IPAM_ERR_NOT_ALLOWED,
	IPAM_ERR_BAD_REQUEST,
	IPAM_ERR_STORE,
	IPAM_ERR_MAX,
};

struct ipam_pool_stats {
	char name[64];
	char subnet[IPADDR_STRLEN + 4];
	char gateway[IPADDR_STRLEN];
	int family;
	unsigned long long total, used;
};

struct ipam;

/* Replays @store (which the ipam then owns) and applies @cfg.  An
 * allocation in the store that @cfg has no room for (its pool removed, or
 * its address no longer among the pool's) is kept and served, never handed
 * out again, and said loudly (logs, ipam_status_json, metrics). */
int ipam_open(struct store *store, const char *node_name, const struct ipam_config *cfg,
	      struct ipam **ipam, char *errbuf, size_t errlen);
void ipam_close(struct ipam *ipam);

/* What ipam_open(@store, @cfg) would keep outside the configuration: -EBUSY
 * and @errbuf naming one such allocation, 0 when there is none.  @store
 * (opened read-only, for railnetd --check-config) is closed. */
int ipam_check_state(struct store *store, const char *node_name, const struct ipam_config *cfg,
		     char *errbuf, size_t errlen);

/* The wall clock (ms) that stateful holds are measured by; for tests. */
void ipam_set_clock(struct ipam *ipam, long long (*wall_ms)(void));

/* Replaces the pool set.  Refused (-EBUSY, @errbuf says which pool) when an
 * allocation would be left outside it: its pool gone, or its address no
 * longer among the pool's (ips, excludeIPs, gateway, reservedIPs). */
int ipam_reconfigure(struct ipam *ipam, const struct ipam_config *cfg, char *errbuf, size_t errlen);

/* 0 and up to two leases (one per family asked).  On failure a negative
 * errno, *kind and @errbuf for the operator; nothing stays allocated. */
int ipam_allocate(struct ipam *ipam, const struct ipam_request *req, struct ipam_lease *leases,
		  size_t *nleases, enum ipam_error *kind, char *errbuf, size_t errlen);
/* Returns once everything IPAM has recorded so far is durable. */
int ipam_sync(struct ipam *ipam);
/* True when ipam_allocate(@req) would fail only because its pools are full. */
bool ipam_would_exhaust(struct ipam *ipam, const struct ipam_request *req);
/* Leases held for @key (0 of them: -ENOENT). */
int ipam_get(struct ipam *ipam, const struct ipam_key *key, struct ipam_lease *leases,
	     size_t *nleases);
/* Releases what @key holds; *released gets the addresses (json array). */
int ipam_release(struct ipam *ipam, const struct ipam_key *key, struct json_object *released);
/* Releases every allocation of @network whose (containerID, ifName) is not
 * in @valid (array of {"containerID","ifName"}). */
int ipam_gc(struct ipam *ipam, const char *network, struct json_object *valid,
	    struct json_object *released);
/* Releases allocations whose netns path no longer exists, if they were
 * first seen orphaned at least @grace_ms ago.  Returns how many. */
int ipam_reconcile(struct ipam *ipam, long long grace_ms);

/* Called outside the ipam's lock, once per key, when a release, GC or the
 * reconciler lets go of an allocation: what else the pod NIC held (its
 * datapath entry, its RDMA attachment) goes with its addresses. */
typedef void (*ipam_release_hook)(void *ctx, const struct ipam_key *key);
void ipam_set_release_hook(struct ipam *ipam, ipam_release_hook fn, void *ctx);

/* @addr answered a conflict probe from @mac: no pool hands it out for
 * @for_ms (again or longer if quarantined already). */
int ipam_quarantine(struct ipam *ipam, const struct ipaddr *addr, long long for_ms,
		    const unsigned char mac[6]);
/* Up to @n addresses @pool would hand out next, in order (none for a
 * stateful pool, whose pods may come back for their own). */
size_t ipam_peek_candidates(struct ipam *ipam, const char *pool, struct ipaddr *out, size_t n);

/* Routes of a pool as configured (json array; a new reference). */
struct json_object *ipam_pool_routes(struct ipam *ipam, const char *pool);
int ipam_pool_stats(struct ipam *ipam, struct ipam_pool_stats **stats, size_t *n);
/* Every allocation as JSON objects, optionally of one pool. */
struct json_object *ipam_allocations(struct ipam *ipam, const char *pool);
void ipam_error_counts(struct ipam *ipam, unsigned long long counts[IPAM_ERR_MAX]);
/* Allocations kept outside the configuration, by reason. */
void ipam_stray_counts(struct ipam *ipam, unsigned long long *pool_removed,
		       unsigned long long *outside_pool);
/* What needs the operator: {"outsideConfig":[{pool, address, containerID,
 * ifName, reason}], "statefulHeld":N, "store":{...}} (a new reference). */
struct json_object *ipam_status_json(struct ipam *ipam);
const char *ipam_error_name(enum ipam_error kind);

#endif

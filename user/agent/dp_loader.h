/* SPDX-License-Identifier: Apache-2.0 */
/* Loading the datapath programs and hooking them to network devices.
 *
 * dp_load opens bpf/datapath.bpf.c's skeleton, sets its knobs, and with a
 * bpffs dir reuses (or creates) the maps pinned there by name: libbpf
 * refuses a pin whose layout differs, so a layout change comes with new
 * map names (include/railnet/datapath.h) and dp_stale_pins finds the old.
 *
 * Hooks: a tcx link (kernel >= 6.6), pinned so it outlives railnetd and is
 * atomically switched to a new program by the next one; else a clsact
 * filter, which the kernel keeps by itself and a new one replaces in
 * place.  Hook functions act on the calling thread's network namespace.
 */
#ifndef RAILNET_DP_LOADER_H
#define RAILNET_DP_LOADER_H

#include <stdbool.h>
#include <stddef.h>

#include <linux/types.h>
#include <railnet/datapath.h>

#include "bpf/datapath.skel.h"

struct dp_knobs {
	bool fast_redirect; /* rewrite MACs to the learnt gateway, skip the neighbour layer */
	bool core_netns;    /* the probe-read programs even where the kernel has better */
};

/* @bpffs NULL: nothing is pinned (tests, benchmarks).  Loads one of the two
 * program pairs: rn_egress/rn_ingress where the kernel lets tc programs
 * call bpf_cast_to_kern_ctx (6.2+), else rn_egress_core/rn_ingress_core. */
int dp_load(const char *bpffs, const struct dp_knobs *knobs, struct datapath_bpf **skel);

/* Pins @skel's programs under @bpffs, replacing older pins. */
int dp_pin_programs(struct datapath_bpf *skel, const char *bpffs);

/* Names of maps of other layout versions under @bpffs ("rn_nic_v0", ...),
 * as a NULL-terminated malloc'd array (free with dp_names_free). */
int dp_stale_pins(const char *bpffs, char ***names);
void dp_names_free(char **names);

enum dp_hook {
	DP_HOOK_INGRESS,
	DP_HOOK_EGRESS,
};

enum dp_attach_mode {
	DP_MODE_TCX,
	DP_MODE_CLSACT,
};

/* The loaded program for @hook's direction. */
struct bpf_program *dp_prog(const struct datapath_bpf *skel, enum dp_hook hook);

/* Whether this kernel has tcx links (probed once, on the loopback). */
enum dp_attach_mode dp_attach_mode(int prog_fd);

/* The hook calls below change devices of the calling thread's netns, the
 * clsact ones through @tc: a rtnetlink socket opened there by dp_tc_open()
 * (one for all of an attach's changes), NULL for tcx. */
struct nl_sock;
int dp_tc_open(enum dp_attach_mode mode, struct nl_sock **tc);
void dp_tc_close(struct nl_sock *tc);

/* Makes @ifindex ready for dp_hook_attach, once per device: its clsact
 * qdisc (nothing for tcx). */
int dp_hook_prepare(struct nl_sock *tc, enum dp_attach_mode mode, int ifindex);
/* Hooks @prog_fd (named @name) to @ifindex; idempotent: an existing railnet
 * hook is switched to @prog_fd.  With tcx the link is pinned at @link_pin. */
int dp_hook_attach(struct nl_sock *tc, enum dp_attach_mode mode, int prog_fd, const char *name,
		   int ifindex, enum dp_hook hook, const char *link_pin);
/* Removes what dp_hook_attach made; absent is fine. */
int dp_hook_detach(struct nl_sock *tc, enum dp_attach_mode mode, int ifindex, enum dp_hook hook,
		   const char *link_pin);

/* rn_gw_v2 is mmapped in slices of this many bytes, each when a NIC in it is
 * first published: the kernel maps every page of a slice at once, and a node
 * uses the low ids first, so an agent holds the slices of its NICs rather
 * than the whole map (1.5 MiB). */
#define DP_GW_SLICE	  (64 * 1024)
#define DP_GW_LEN	  ((size_t)RN_MAX_NICS * RN_FAM_MAX * sizeof(struct rn_gw))
#define DP_GW_SLICE_COUNT ((DP_GW_LEN + DP_GW_SLICE - 1) / DP_GW_SLICE)

/* The maps of a loaded skeleton, and what a pod NIC is in them. */
struct dp_maps {
	int addr, aidx, ifc, iidx, nic, gw, stats;
	/* rn_gw_v2, RN_MAX_NICS * RN_FAM_MAX entries: the address range is
	 * reserved whole, and a NIC's entries are mapped once it has been
	 * published (dp_nic_publish), so only published NICs' may be read. */
	struct rn_gw *gw_mem;
	unsigned int gw_sliced; /* bit i: slice i mapped */
	int ncpus;
};

int dp_maps_open(struct datapath_bpf *skel, struct dp_maps *maps);
void dp_maps_close(struct dp_maps *maps);

/* Makes NIC @id live: its gateway records mapped into gw_mem, with @fresh
 * its counters and gateway records start at zero; then its rn_nic_v2 slot,
 * its device key and, last, its addresses, each into its hash map and then
 * its index bucket, so that no packet finds an address before its NIC.
 * Idempotent. */
int dp_nic_publish(struct dp_maps *maps, __u32 id, const struct rn_nic *nic, bool fresh);
/* The reverse: the slot marked detaching (its packets are dropped rather
 * than leaked by eth0), the addresses and the device key out of their
 * buckets and hash maps, the slot zeroed.  A bucket a key had overflowed
 * takes a waiting key into the freed way. */
int dp_nic_unpublish(const struct dp_maps *maps, __u32 id, const struct rn_nic *nic);
/* Counters of NIC @id summed over the CPUs. */
int dp_stats_sum(const struct dp_maps *maps, __u32 id, struct rn_stats *sum);

#endif

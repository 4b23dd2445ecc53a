/* SPDX-License-Identifier: Apache-2.0 */
/* railnetd's RDMA module (docs/rdma.md): shared-HCA resources discovered
 * from sysfs, a kubelet device plugin endpoint per resource, the pod NICs
 * attached to each HCA with their RoCE v2 GID index.
 *
 * Everything runs on the module's own thread (an event loop over the
 * plugin sockets, the netlink link monitor and a 1 s tick); the control ops
 * call in from other threads under the module's lock. */
#ifndef RAILNET_AGENT_RDMA_H
#define RAILNET_AGENT_RDMA_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/rdma_config.h"

struct rdma;

struct rdma_options {
	/* The RDMA netns mode source (default rdma_netns_mode_netlink). */
	int (*netns_mode)(bool *shared);
	/* How long rdma.attach waits for the pod NIC's GID before answering
	 * with a pending index (default 300 ms). */
	int gid_wait_ms;
	/* Where the attached pod NICs are kept across restarts (NULL: in
	 * memory only). */
	const char *state_file;
};

struct metrics;

/* Parses the configuration's "rdma" section (@section may be NULL) and
 * starts the module, keeping its pod NICs in @state_dir/rdma.json; *out
 * stays NULL when the section is absent. */
int rdma_open_section(struct json_object *section, const char *state_dir, struct rdma **out,
		      char *errbuf, size_t errlen);

/* Adds the RDMA series (port counters and state, resources, pod NICs) to
 * the metrics endpoint; @metrics may be NULL. */
int rdma_metrics_register(struct rdma *r, struct metrics *metrics);

/* Takes ownership of @cfg's contents (it is zeroed).  Discovers, opens the
 * plugin sockets, registers with the kubelet and starts the thread. */
int rdma_start(struct rdma_config *cfg, const struct rdma_options *opts, struct rdma **out);
void rdma_stop(struct rdma *r);

struct rdma_attach_req {
	const char *network, *container_id, *ifname, *netns, *master, *resource;
	const char *addrs[4]; /* "172.16.11.5/24" or bare addresses */
	size_t naddrs;
};

/* Links the pod NIC to the HCA/port behind its master and counts it against
 * the resource; fills @result {device, port, gidIndex|null}.  Idempotent.
 * On error @errbuf says why and *not_found tells a missing device from a
 * bad request. */
int rdma_attach(struct rdma *r, const struct rdma_attach_req *req, struct json_object *result,
		bool *not_found, char *errbuf, size_t errlen);
/* Forgets the pod NIC (rdma.detach, the CNI DEL); true when it was attached. */
bool rdma_detach(struct rdma *r, const char *network, const char *container_id,
		 const char *ifname);
/* Forgets the pod NICs of @container_id that went away without a CNI DEL
 * (the agent's IPAM release paths): those on @network (NULL: any) named
 * @ifname (NULL: all of the container's).  Returns how many were attached,
 * or -EINVAL without a container ID.  Thread-safe; @r may be NULL (no RDMA
 * section): 0.  Saves the state file when it forgot any. */
int rdma_forget(struct rdma *r, const char *network, const char *container_id,
		const char *ifname);

/* {netnsMode, devices:[..], resources:[..], attachments:[..]} */
struct json_object *rdma_status_json(struct rdma *r);

#endif

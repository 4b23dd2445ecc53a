/* SPDX-License-Identifier: Apache-2.0 */
/* A pod NIC's teardown on the CNI plugin's behalf (op nic.delete): deleting
 * a link waits for an RCU grace period (~16 ms), so the agent does it after
 * it has answered DEL, then releases the NIC's addresses - never before the
 * link is gone, so an address is not handed out while a pod still holds it.
 *
 * Durability: before answering, the agent writes
 * <socket dir>/release-queue/<network>-<containerID>-<ifName>.pending
 * ({network, containerID, ifName, netns}); it is removed once the release is
 * done.  At start, nic_teardown_recover() finishes what a crash left behind. */
#ifndef RAILNET_NIC_TEARDOWN_H
#define RAILNET_NIC_TEARDOWN_H

#include <json-c/json.h>
#include <stdbool.h>

#include "agent/ipam.h"

struct nic_teardown;

int nic_teardown_open(struct ipam *ipam, const char *socket_path, struct nic_teardown **out);
/* Waits for the teardowns in flight, then frees @t (NULL is fine). */
void nic_teardown_close(struct nic_teardown *t);

/* Deletes @ifname in the netns at @netns_path, then releases @key.  When
 * the netns is gone (so is the link) or has no such link, releases at once
 * (*deferred false, @released gets the addresses); otherwise the work goes
 * to a thread (*deferred true). */
int nic_teardown_start(struct nic_teardown *t, const struct ipam_key *key, const char *netns_path,
		       bool *deferred, struct json_object *released);

/* Returns once no teardown of @key is in flight: an ADD that reuses the key
 * must not have its allocation released under it by the DEL before. */
void nic_teardown_wait(struct nic_teardown *t, const struct ipam_key *key);

/* Waits, at most @timeout_ms, for the teardowns in flight now to finish
 * (not for those started meanwhile): an ADD on a full pool may be waiting
 * only for addresses a DEL is about to release. */
void nic_teardown_drain(struct nic_teardown *t, int timeout_ms);

/* Finishes the teardowns a previous run left pending; returns how many. */
int nic_teardown_recover(struct nic_teardown *t);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Releases the CNI plugin queued while the agent was away: a DEL that could
 * not reach the agent leaves {network, containerID, ifName} as a file in
 * <socket dir>/release-queue/ (written, fsynced, renamed into place). */
#ifndef RAILNET_RELEASE_QUEUE_H
#define RAILNET_RELEASE_QUEUE_H

#include "agent/ipam.h"

/* Applies and removes every queued release; returns how many. */
int release_queue_drain(struct ipam *ipam, const char *socket_path);

#endif

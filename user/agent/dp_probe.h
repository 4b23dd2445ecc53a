/* SPDX-License-Identifier: Apache-2.0 */
/* Active gateway probes: an ARP request or a neighbour solicitation on a
 * pod rail NIC's behalf.  The answer is seen by the NIC's ingress program
 * (rn_gw), not here.
 *
 * Sent from the NIC's master, in the agent's own netns, as the NIC itself
 * would send it (its MAC, its address): the gateway answers the NIC, and
 * the answer reaches it through the master.  One packet socket serves every
 * master, for the agent's life - no thread, no setns, no socket per probe
 * (closing a packet socket waits for an RCU grace period, which would cap a
 * node at tens of probes a second). */
#ifndef RAILNET_DP_PROBE_H
#define RAILNET_DP_PROBE_H

#include <linux/types.h>
#include <railnet/datapath.h>

/* A packet socket that receives nothing and sends on any device. */
int dp_probe_open(void);

/* @family: enum rn_family; @gw_mac NULL asks by broadcast / multicast. */
int dp_probe_send(int fd, int master_ifindex, int family, const struct rn_nic *nic,
		  const __u8 *gw_mac);

#endif

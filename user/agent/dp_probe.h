/* SPDX-License-Identifier: Apache-2.0 */
/* Active gateway probes: an ARP request or a neighbour solicitation sent
 * from a pod rail NIC, in the calling thread's netns.  The answer is seen by
 * the ingress program (rn_gw_v2), not here. */
#ifndef RAILNET_DP_PROBE_H
#define RAILNET_DP_PROBE_H

#include <linux/types.h>
#include <railnet/datapath.h>

/* @family: enum rn_family; @gw_mac NULL asks by broadcast. */
int dp_probe_send(int family, const struct rn_nic *nic, const __u8 *gw_mac);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Netlink work on the node's and the pod's side, through libnl-route. */
#ifndef RAILNET_CNI_LINK_H
#define RAILNET_CNI_LINK_H

#include <netlink/route/link.h>
#include <netlink/socket.h>

#include "cni.h"

/* The node's netns (where the plugin starts) and the pod's. */
struct netns_pair {
	int host_fd;
	int pod_fd;
};

/* -ENOENT when the pod netns is gone. */
int netns_pair_open(const char *pod_path, struct netns_pair *ns);
void netns_pair_close(struct netns_pair *ns);
int netns_enter(int fd);

/* A route socket bound to the netns the calling thread is in. */
int nl_route_open(struct nl_sock **sk);

struct master_info {
	int ifindex;
	int mtu;
};
int link_master_check(struct nl_sock *host, const char *name, struct master_info *m,
		      struct cni_error *e);

/* Creates the macvlan directly inside the pod netns under its final name:
 * no temporary name ever exists in the node netns. */
int link_macvlan_create(struct nl_sock *host, const struct netconf *nc,
			const struct master_info *m, int pod_fd, const char *ifname,
			const unsigned char *mac, struct cni_error *e);

/* In the pod netns: */
int link_get(struct nl_sock *pod, const char *ifname, int *ifindex, char mac[18], int *mtu);
int link_set_up(struct nl_sock *pod, int ifindex);
int link_set_mac(struct nl_sock *pod, int ifindex, const unsigned char mac[6]);
int link_delete(struct nl_sock *pod, const char *ifname);
int link_addr_add(struct nl_sock *pod, int ifindex, const char *cidr);
int link_route_add(struct nl_sock *pod, int ifindex, const char *dst, const char *gw,
		   const char *src, int metric);


#endif

// SPDX-License-Identifier: Apache-2.0
#include "link.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/route/addr.h>
#include <netlink/route/link/macvlan.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int netns_pair_open(const char *pod_path, struct netns_pair *ns)
{
	ns->host_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (ns->host_fd < 0)
		return -errno;
	ns->pod_fd = open(pod_path, O_RDONLY | O_CLOEXEC);
	if (ns->pod_fd < 0) {
		int err = -errno;

		close(ns->host_fd);
		ns->host_fd = -1;
		return err;
	}
	return 0;
}

void netns_pair_close(struct netns_pair *ns)
{
	if (ns->pod_fd >= 0)
		close(ns->pod_fd);
	if (ns->host_fd >= 0)
		close(ns->host_fd);
	ns->pod_fd = ns->host_fd = -1;
}

int netns_enter(int fd)
{
	return setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

int nl_route_open(struct nl_sock **out)
{
	struct nl_sock *sk = nl_socket_alloc();
	int err;

	if (!sk)
		return -ENOMEM;
	err = nl_connect(sk, NETLINK_ROUTE);
	if (err) {
		nl_socket_free(sk);
		return -EIO;
	}
	*out = sk;
	return 0;
}

int link_master_check(struct nl_sock *host, const char *name, struct master_info *m,
		      struct cni_error *e)
{
	struct rtnl_link *link = NULL;
	unsigned int flags;

	if (rtnl_link_get_kernel(host, 0, name, &link) < 0)
		return cni_fail(e, RAILNET_ERR_MASTER, "master interface not found",
				"master %s does not exist on this node: check the NAD's \"master\" "
				"against `ip link` on the node", name);
	flags = rtnl_link_get_flags(link);
	m->ifindex = rtnl_link_get_ifindex(link);
	m->mtu = (int)rtnl_link_get_mtu(link);
	rtnl_link_put(link);
	if (!(flags & IFF_UP))
		return cni_fail(e, RAILNET_ERR_MASTER, "master interface is down",
				"master %s is administratively down: `ip link set %s up` on the node",
				name, name);
	return 0;
}

static const char *const mode_names[] = {
	[MODE_BRIDGE] = "bridge",
	[MODE_PRIVATE] = "private",
	[MODE_VEPA] = "vepa",
	[MODE_PASSTHRU] = "passthru",
};

int link_macvlan_create(struct nl_sock *host, const struct netconf *nc,
			const struct master_info *m, int pod_fd, const char *ifname,
			const unsigned char *mac, struct cni_error *e)
{
	struct rtnl_link *link = rtnl_link_macvlan_alloc();
	struct nl_addr *lladdr = NULL;
	int err;

	if (!link)
		return cni_fail(e, CNI_ERR_IO, "out of memory", NULL);
	rtnl_link_set_name(link, ifname);
	rtnl_link_set_link(link, m->ifindex);
	rtnl_link_set_ns_fd(link, pod_fd);
	rtnl_link_macvlan_set_mode(link, (uint32_t)rtnl_link_macvlan_str2mode(mode_names[nc->mode]));
	rtnl_link_set_mtu(link, (unsigned int)(nc->mtu ? nc->mtu : m->mtu));
	if (nc->txqueuelen)
		rtnl_link_set_txqlen(link, (unsigned int)nc->txqueuelen);
	if (mac) {
		lladdr = nl_addr_build(AF_LLC, mac, 6);
		rtnl_link_set_addr(link, lladdr);
	}
	err = rtnl_link_add(host, link, NLM_F_CREATE | NLM_F_EXCL);
	nl_addr_put(lladdr);
	rtnl_link_put(link);
	if (err == -NLE_EXIST)
		return cni_fail(e, RAILNET_ERR_LINK, "interface already exists",
				"the pod already has an interface named %s", ifname);
	if (err == -NLE_INVAL && nc->mtu > m->mtu)
		return cni_fail(e, CNI_ERR_INVALID_CONFIG, "invalid network configuration",
				"mtu: %d is above the master %s's %d", nc->mtu, nc->master, m->mtu);
	if (err < 0)
		return cni_fail(e, RAILNET_ERR_LINK, "cannot create the macvlan",
				"macvlan %s on %s: %s", ifname, nc->master, nl_geterror(err));
	return 0;
}

int link_get(struct nl_sock *pod, const char *ifname, int *ifindex, char mac[18], int *mtu)
{
	struct rtnl_link *link = NULL;
	struct nl_addr *a;

	if (rtnl_link_get_kernel(pod, 0, ifname, &link) < 0)
		return -ENODEV;
	*ifindex = rtnl_link_get_ifindex(link);
	*mtu = (int)rtnl_link_get_mtu(link);
	a = rtnl_link_get_addr(link);
	if (a)
		nl_addr2str(a, mac, 18);
	rtnl_link_put(link);
	return 0;
}

int link_set_mac(struct nl_sock *pod, int ifindex, const unsigned char mac[6])
{
	struct rtnl_link *link = rtnl_link_alloc(), *change = rtnl_link_alloc();
	struct nl_addr *lladdr = nl_addr_build(AF_LLC, mac, 6);
	int err = -ENOMEM;

	if (link && change && lladdr) {
		rtnl_link_set_ifindex(link, ifindex);
		rtnl_link_set_addr(change, lladdr);
		err = rtnl_link_change(pod, link, change, 0) < 0 ? -EIO : 0;
	}
	nl_addr_put(lladdr);
	rtnl_link_put(change);
	rtnl_link_put(link);
	return err;
}

int link_set_up(struct nl_sock *pod, int ifindex)
{
	struct rtnl_link *link = rtnl_link_alloc(), *change = rtnl_link_alloc();
	int err = -ENOMEM;

	if (link && change) {
		rtnl_link_set_ifindex(link, ifindex);
		rtnl_link_set_flags(change, IFF_UP);
		err = rtnl_link_change(pod, link, change, 0) < 0 ? -EIO : 0;
	}
	rtnl_link_put(change);
	rtnl_link_put(link);
	return err;
}

int link_delete(struct nl_sock *pod, const char *ifname)
{
	struct rtnl_link *link = rtnl_link_alloc();
	int err;

	rtnl_link_set_name(link, ifname);
	err = rtnl_link_delete(pod, link);
	rtnl_link_put(link);
	if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND)
		return -ENODEV;
	return err < 0 ? -EIO : 0;
}

int link_addr_add(struct nl_sock *pod, int ifindex, const char *cidr)
{
	struct rtnl_addr *addr = rtnl_addr_alloc();
	struct nl_addr *local = NULL;
	int err;

	err = nl_addr_parse(cidr, AF_UNSPEC, &local);
	if (err < 0) {
		rtnl_addr_put(addr);
		return -EINVAL;
	}
	rtnl_addr_set_ifindex(addr, ifindex);
	rtnl_addr_set_local(addr, local);
	/* railnet installs the subnet route itself, with the NIC's metric;
	 * the conflict probe replaces IPv6 DAD so the address is usable now. */
	rtnl_addr_set_flags(addr, IFA_F_NOPREFIXROUTE |
					  (nl_addr_get_family(local) == AF_INET6 ? IFA_F_NODAD : 0));
	err = rtnl_addr_add(pod, addr, 0);
	nl_addr_put(local);
	rtnl_addr_put(addr);
	return err < 0 && err != -NLE_EXIST ? -EIO : 0;
}

int link_route_add(struct nl_sock *pod, int ifindex, const char *dst, const char *gw,
		   const char *src, int metric)
{
	struct rtnl_route *route = rtnl_route_alloc();
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	struct nl_addr *d = NULL, *g = NULL, *s = NULL;
	int err = -EINVAL;

	if (nl_addr_parse(dst, AF_UNSPEC, &d) < 0)
		goto out;
	if (gw && *gw && nl_addr_parse(gw, nl_addr_get_family(d), &g) < 0)
		goto out;
	if (src && *src && nl_addr_parse(src, nl_addr_get_family(d), &s) < 0)
		goto out;
	rtnl_route_set_family(route, (uint8_t)nl_addr_get_family(d));
	rtnl_route_set_table(route, RT_TABLE_MAIN);
	rtnl_route_set_dst(route, d);
	rtnl_route_set_priority(route, (uint32_t)metric);
	rtnl_route_set_protocol(route, RTPROT_STATIC);
	rtnl_route_set_scope(route, g ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
	if (s)
		rtnl_route_set_pref_src(route, s);
	rtnl_route_nh_set_ifindex(nh, ifindex);
	if (g)
		rtnl_route_nh_set_gateway(nh, g);
	rtnl_route_add_nexthop(route, nh);
	nh = NULL;
	err = rtnl_route_add(pod, route, NLM_F_EXCL);
	err = err < 0 && err != -NLE_EXIST ? -EIO : 0;
out:
	if (nh)
		rtnl_route_nh_free(nh);
	nl_addr_put(d);
	nl_addr_put(g);
	nl_addr_put(s);
	rtnl_route_put(route);
	return err;
}

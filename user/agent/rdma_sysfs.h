/* SPDX-License-Identifier: Apache-2.0 */
/* RDMA discovery from sysfs alone (so that tests run on a fake tree): the
 * network PCI functions, the RDMA devices (HCAs) under them, their ports,
 * character devices and GID tables (docs/rdma.md). */
#ifndef RAILNET_AGENT_RDMA_SYSFS_H
#define RAILNET_AGENT_RDMA_SYSFS_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/rdma_config.h"

#define RDMA_NAME_MAX	64
#define RDMA_PORT_ACTIVE 4 /* IB_PORT_ACTIVE, the number in ports/N/state */

struct rdma_port {
	unsigned int num;
	int state; /* 1 DOWN, 2 INIT, 3 ARMED, 4 ACTIVE, 5 ACTIVE_DEFER */
	char state_name[24];
	char link_layer[24]; /* "Ethernet" (RoCE) or "InfiniBand" */
	char netdev[IFNAMSIZ]; /* the port's netdev, "" when none is known */
};

struct rdma_hca {
	char name[RDMA_NAME_MAX]; /* "mlx5_0" */
	char pci[RDMA_NAME_MAX];  /* the PCI function it sits on */
	char netdev[IFNAMSIZ];    /* the function's first netdev (a port's own: ports[].netdev) */
	char *dir;		  /* its sysfs directory */
	struct rdma_port *ports;
	size_t nports;
	char **char_devs; /* uverbsN, umadN, issmN under devRoot/infiniband/ */
	size_t nchar_devs;
};

/* A network-class PCI function with its netdev. */
struct rdma_nic {
	char ifname[IFNAMSIZ];
	char pci[RDMA_NAME_MAX];
	char vendor[8];	   /* "15b3" */
	char device_id[8]; /* "1017" */
	char driver[RDMA_NAME_MAX];
	char link_type[24]; /* "ether", "infiniband", ... */
	unsigned int dev_port; /* 0-based port of the function (multi-port HCAs) */
	size_t *hcas; /* indexes into the inventory's hcas */
	size_t nhcas;
};

struct rdma_inventory {
	struct rdma_nic *nics;
	size_t nnics;
	struct rdma_hca *hcas;
	size_t nhcas;
	char rdma_cm[256]; /* devRoot/infiniband/rdma_cm, "" when absent */
};

/* Scans @sysfs_root (class/net, the PCI functions, class/infiniband_verbs,
 * class/infiniband_mad) and @dev_root/infiniband. */
int rdma_discover(const char *sysfs_root, const char *dev_root, struct rdma_inventory *inv);
void rdma_inventory_free(struct rdma_inventory *inv);

/* Re-reads every port's state; returns true when one changed. */
bool rdma_refresh_ports(struct rdma_inventory *inv);

/* Whether @nic passes @sel (OR within a list, AND across lists). */
bool rdma_nic_matches(const struct rdma_nic *nic, const struct rdma_selectors *sel);

const struct rdma_nic *rdma_nic_by_name(const struct rdma_inventory *inv, const char *ifname);
/* The port of @hca that @nic is: the one whose netdev is @nic, else
 * dev_port + 1 when the HCA has it, else 1. */
unsigned int rdma_nic_port(const struct rdma_nic *nic, const struct rdma_hca *hca);
/* The HCA and port behind @nic: among the HCAs of its PCI function, the one
 * with a port whose netdev is @nic (a function may carry several HCAs, an
 * HCA several netdevs' ports), else its first HCA; NULL when it has none. */
const struct rdma_hca *rdma_nic_hca(const struct rdma_inventory *inv, const struct rdma_nic *nic,
				    unsigned int *port);
const struct rdma_port *rdma_hca_port(const struct rdma_hca *hca, unsigned int num);

/* The RoCE v2 GID index of @addr (AF_INET: looked up IPv4-mapped) on
 * @hca's @port; when the table names the netdev of an entry, it must be
 * @ifname (NULL: any).  Returns the index, or -ENOENT. */
int rdma_gid_find(const struct rdma_hca *hca, unsigned int port, int family, const void *addr,
		  const char *ifname);

/* RDMA_NLDEV_CMD_SYS_GET over NETLINK_RDMA: *shared is the netns mode.
 * -EPROTONOSUPPORT when the kernel has no RDMA subsystem. */
int rdma_netns_mode_netlink(bool *shared);

#endif

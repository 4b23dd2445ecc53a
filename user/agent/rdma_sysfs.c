// SPDX-License-Identifier: Apache-2.0
#include "agent/rdma_sysfs.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <linux/netlink.h>
#include <rdma/rdma_netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* Copies a name, truncating it (the kernel bounds every name we copy). */
static void copy_name(char *dst, size_t len, const char *src)
{
	size_t n = strnlen(src, len - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Reads a small sysfs file into @buf without its trailing newline. */
static int read_attr(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int read_attr(char *buf, size_t len, const char *fmt, ...)
{
	char path[PATH_MAX];
	va_list ap;
	ssize_t n;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = (ssize_t)fread(buf, 1, len - 1, f);
	if (ferror(f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return 0;
}

/* "0x15b3" -> "15b3" */
static void strip_hex_prefix(char *s)
{
	if (!strncmp(s, "0x", 2))
		memmove(s, s + 2, strlen(s + 2) + 1);
}

static const char *arphrd_name(long type)
{
	switch (type) {
	case 1:
		return "ether";
	case 32:
		return "infiniband";
	case 772:
		return "loopback";
	case 65534:
		return "none";
	default:
		return "unknown";
	}
}

static int visible(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static void parse_port_state(const char *text, struct rdma_port *port)
{
	const char *colon = strchr(text, ':');

	port->state = atoi(text);
	snprintf(port->state_name, sizeof(port->state_name), "%s",
		 colon ? colon + 1 + (colon[1] == ' ') : text);
}

static int read_ports(struct rdma_hca *hca)
{
	char path[PATH_MAX], buf[64];
	struct dirent **ents;
	int n;

	snprintf(path, sizeof(path), "%s/ports", hca->dir);
	n = scandir(path, &ents, visible, versionsort);
	if (n < 0)
		return 0; /* a device without ports is listed, never healthy */
	hca->ports = calloc(n ? (size_t)n : 1, sizeof(*hca->ports));
	for (int i = 0; i < n; i++) {
		struct rdma_port *p;

		if (hca->ports) {
			p = &hca->ports[hca->nports++];
			p->num = (unsigned int)strtoul(ents[i]->d_name, NULL, 10);
			if (!read_attr(buf, sizeof(buf), "%s/%s/state", path, ents[i]->d_name))
				parse_port_state(buf, p);
			if (read_attr(p->link_layer, sizeof(p->link_layer), "%s/%s/link_layer",
				      path, ents[i]->d_name))
				snprintf(p->link_layer, sizeof(p->link_layer), "unknown");
		}
		free(ents[i]);
	}
	free(ents);
	return hca->ports ? 0 : -ENOMEM;
}

/* Adds devRoot/infiniband/<entry> for every entry of sysfs class @cls whose
 * ibdev is @hca's name. */
static int add_char_devs(const char *sysfs_root, const char *dev_root, const char *cls,
			 struct rdma_hca *hca)
{
	char path[PATH_MAX], ibdev[RDMA_NAME_MAX], node[PATH_MAX];
	struct dirent **ents;
	struct stat st;
	int n, err = 0;

	snprintf(path, sizeof(path), "%s/class/%s", sysfs_root, cls);
	n = scandir(path, &ents, visible, versionsort);
	if (n < 0)
		return 0;
	for (int i = 0; i < n; i++) {
		char **grown;

		if (!err && !read_attr(ibdev, sizeof(ibdev), "%s/%s/ibdev", path, ents[i]->d_name) &&
		    !strcmp(ibdev, hca->name)) {
			snprintf(node, sizeof(node), "%s/infiniband/%s", dev_root, ents[i]->d_name);
			grown = stat(node, &st) ? NULL :
				realloc(hca->char_devs, (hca->nchar_devs + 1) * sizeof(char *));
			if (grown) {
				hca->char_devs = grown;
				hca->char_devs[hca->nchar_devs] = strdup(node);
				if (hca->char_devs[hca->nchar_devs])
					hca->nchar_devs++;
				else
					err = -ENOMEM;
			}
		}
		free(ents[i]);
	}
	free(ents);
	return err;
}

static ssize_t find_hca(const struct rdma_inventory *inv, const char *pci, const char *name)
{
	for (size_t i = 0; i < inv->nhcas; i++)
		if (!strcmp(inv->hcas[i].pci, pci) && !strcmp(inv->hcas[i].name, name))
			return (ssize_t)i;
	return -1;
}

static int add_hca(const char *sysfs_root, const char *dev_root, const char *pcidir,
		   struct rdma_nic *nic, const char *name, struct rdma_inventory *inv)
{
	ssize_t idx = find_hca(inv, nic->pci, name);
	struct rdma_hca *hcas, *hca;
	size_t *grown;
	int err;

	if (idx < 0) {
		hcas = realloc(inv->hcas, (inv->nhcas + 1) * sizeof(*hcas));
		if (!hcas)
			return -ENOMEM;
		inv->hcas = hcas;
		hca = &hcas[inv->nhcas];
		memset(hca, 0, sizeof(*hca));
		idx = (ssize_t)inv->nhcas++;
		copy_name(hca->name, sizeof(hca->name), name);
		copy_name(hca->pci, sizeof(hca->pci), nic->pci);
		copy_name(hca->netdev, sizeof(hca->netdev), nic->ifname);
		if (asprintf(&hca->dir, "%s/infiniband/%s", pcidir, name) < 0) {
			hca->dir = NULL;
			return -ENOMEM;
		}
		err = read_ports(hca);
		if (!err)
			err = add_char_devs(sysfs_root, dev_root, "infiniband_verbs", hca);
		if (!err)
			err = add_char_devs(sysfs_root, dev_root, "infiniband_mad", hca);
		if (err)
			return err;
	}
	grown = realloc(nic->hcas, (nic->nhcas + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	nic->hcas = grown;
	nic->hcas[nic->nhcas++] = (size_t)idx;
	return 0;
}

/* Fills @nic from class/net/@ifname; -ENODEV for a netdev that is not a
 * network-class PCI function (virtual devices, macvlans, ...). */
static int read_nic(const char *sysfs_root, const char *ifname, struct rdma_nic *nic,
		    char *pcidir)
{
	char path[PATH_MAX], buf[PATH_MAX];
	const char *base;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/class/net/%s/device", sysfs_root, ifname);
	if (!realpath(path, pcidir))
		return -ENODEV;
	if (read_attr(buf, sizeof(buf), "%s/class", pcidir) || (strtoul(buf, NULL, 16) >> 16) != 0x02)
		return -ENODEV;
	base = strrchr(pcidir, '/');
	copy_name(nic->ifname, sizeof(nic->ifname), ifname);
	copy_name(nic->pci, sizeof(nic->pci), base ? base + 1 : pcidir);
	if (!read_attr(nic->vendor, sizeof(nic->vendor), "%s/vendor", pcidir))
		strip_hex_prefix(nic->vendor);
	if (!read_attr(nic->device_id, sizeof(nic->device_id), "%s/device", pcidir))
		strip_hex_prefix(nic->device_id);
	if (snprintf(path, sizeof(path), "%s/driver", pcidir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		base = strrchr(buf, '/');
		copy_name(nic->driver, sizeof(nic->driver), base ? base + 1 : buf);
	}
	if (!read_attr(buf, sizeof(buf), "%s/class/net/%s/type", sysfs_root, ifname))
		snprintf(nic->link_type, sizeof(nic->link_type), "%s", arphrd_name(atol(buf)));
	if (!read_attr(buf, sizeof(buf), "%s/class/net/%s/dev_port", sysfs_root, ifname))
		nic->dev_port = (unsigned int)strtoul(buf, NULL, 0);
	return 0;
}

static bool nic_has_hca(const struct rdma_nic *nic, size_t h)
{
	for (size_t i = 0; i < nic->nhcas; i++)
		if (nic->hcas[i] == h)
			return true;
	return false;
}

/* Names each port's netdev.  The kernel's own association comes first: the
 * netdev of the port's default GID (RoCE), which holds for ports whose
 * numbering is not dev_port's (switchdev representors share a function
 * and an HCA).  Without it (InfiniBand, a port without GIDs) the
 * function's netdev with that dev_port, and port 1 for a netdev whose
 * dev_port names no port (rdma_nic_port's rule). */
static void assign_port_netdevs(struct rdma_inventory *inv)
{
	char buf[64];

	for (size_t h = 0; h < inv->nhcas; h++) {
		struct rdma_hca *hca = &inv->hcas[h];

		for (size_t p = 0; p < hca->nports; p++) {
			struct rdma_port *port = &hca->ports[p];

			if (!read_attr(buf, sizeof(buf), "%s/ports/%u/gid_attrs/ndevs/0", hca->dir,
				       port->num) && buf[0]) {
				copy_name(port->netdev, sizeof(port->netdev), buf);
				continue;
			}
			for (size_t c = 0; c < inv->nnics && !port->netdev[0]; c++)
				if (nic_has_hca(&inv->nics[c], h) &&
				    inv->nics[c].dev_port + 1 == port->num)
					copy_name(port->netdev, sizeof(port->netdev),
						  inv->nics[c].ifname);
		}
		for (size_t c = 0; c < inv->nnics; c++) {
			const struct rdma_nic *nic = &inv->nics[c];
			struct rdma_port *first = hca->nports ? &hca->ports[0] : NULL;
			bool placed = false;

			if (!nic_has_hca(nic, h) || !first || first->netdev[0] || first->num != 1)
				continue;
			for (size_t p = 0; p < hca->nports; p++)
				placed |= !strcmp(hca->ports[p].netdev, nic->ifname) ||
					  hca->ports[p].num == nic->dev_port + 1;
			if (!placed)
				copy_name(first->netdev, sizeof(first->netdev), nic->ifname);
		}
	}
}

int rdma_discover(const char *sysfs_root, const char *dev_root, struct rdma_inventory *inv)
{
	char path[PATH_MAX], pcidir[PATH_MAX];
	struct dirent **nets = NULL, **hcas;
	struct stat st;
	int n, err = 0;

	memset(inv, 0, sizeof(*inv));
	snprintf(path, sizeof(path), "%s/class/net", sysfs_root);
	n = scandir(path, &nets, visible, versionsort);
	if (n < 0)
		return -errno;
	inv->nics = calloc(n ? (size_t)n : 1, sizeof(*inv->nics));
	if (!inv->nics)
		err = -ENOMEM;
	for (int i = 0; i < n; i++) {
		struct rdma_nic *nic = &inv->nics[inv->nnics];
		int m;

		if (err || read_nic(sysfs_root, nets[i]->d_name, nic, pcidir))
			goto next;
		inv->nnics++;
		m = snprintf(path, sizeof(path), "%s/infiniband", pcidir) >= (int)sizeof(path) ? -1 :
		    scandir(path, &hcas, visible, versionsort);
		for (int j = 0; j < m; j++) {
			if (!err)
				err = add_hca(sysfs_root, dev_root, pcidir, nic, hcas[j]->d_name, inv);
			free(hcas[j]);
		}
		if (m >= 0)
			free(hcas);
next:
		free(nets[i]);
	}
	free(nets);
	if (!err)
		assign_port_netdevs(inv);
	snprintf(path, sizeof(path), "%s/infiniband/rdma_cm", dev_root);
	if (!stat(path, &st))
		copy_name(inv->rdma_cm, sizeof(inv->rdma_cm), path);
	if (err)
		rdma_inventory_free(inv);
	return err;
}

void rdma_inventory_free(struct rdma_inventory *inv)
{
	for (size_t i = 0; i < inv->nnics; i++)
		free(inv->nics[i].hcas);
	for (size_t i = 0; i < inv->nhcas; i++) {
		for (size_t c = 0; c < inv->hcas[i].nchar_devs; c++)
			free(inv->hcas[i].char_devs[c]);
		free(inv->hcas[i].char_devs);
		free(inv->hcas[i].ports);
		free(inv->hcas[i].dir);
	}
	free(inv->nics);
	free(inv->hcas);
	memset(inv, 0, sizeof(*inv));
}

bool rdma_refresh_ports(struct rdma_inventory *inv)
{
	bool changed = false;
	char buf[64];

	for (size_t i = 0; i < inv->nhcas; i++) {
		struct rdma_hca *hca = &inv->hcas[i];

		for (size_t p = 0; p < hca->nports; p++) {
			struct rdma_port *port = &hca->ports[p], next = *port;

			if (read_attr(buf, sizeof(buf), "%s/ports/%u/state", hca->dir, port->num))
				next.state = 0, snprintf(next.state_name, sizeof(next.state_name), "GONE");
			else
				parse_port_state(buf, &next);
			if (next.state != port->state) {
				*port = next;
				changed = true;
			}
		}
	}
	return changed;
}

bool rdma_nic_matches(const struct rdma_nic *nic, const struct rdma_selectors *sel)
{
	return (!sel->vendors.n || rdma_strv_contains(&sel->vendors, nic->vendor)) &&
	       (!sel->device_ids.n || rdma_strv_contains(&sel->device_ids, nic->device_id)) &&
	       (!sel->drivers.n || rdma_strv_contains(&sel->drivers, nic->driver)) &&
	       (!sel->if_names.n || rdma_strv_contains(&sel->if_names, nic->ifname)) &&
	       (!sel->link_types.n || rdma_strv_contains(&sel->link_types, nic->link_type));
}

const struct rdma_nic *rdma_nic_by_name(const struct rdma_inventory *inv, const char *ifname)
{
	for (size_t i = 0; i < inv->nnics; i++)
		if (!strcmp(inv->nics[i].ifname, ifname))
			return &inv->nics[i];
	return NULL;
}

const struct rdma_port *rdma_hca_port(const struct rdma_hca *hca, unsigned int num)
{
	for (size_t p = 0; p < hca->nports; p++)
		if (hca->ports[p].num == num)
			return &hca->ports[p];
	return NULL;
}

unsigned int rdma_nic_port(const struct rdma_nic *nic, const struct rdma_hca *hca)
{
	for (size_t p = 0; p < hca->nports; p++)
		if (!strcmp(hca->ports[p].netdev, nic->ifname))
			return hca->ports[p].num;
	return rdma_hca_port(hca, nic->dev_port + 1) ? nic->dev_port + 1 : 1;
}

const struct rdma_hca *rdma_nic_hca(const struct rdma_inventory *inv, const struct rdma_nic *nic,
				    unsigned int *port)
{
	const struct rdma_hca *hca;

	for (size_t i = 0; i < nic->nhcas; i++) {
		hca = &inv->hcas[nic->hcas[i]];
		for (size_t p = 0; p < hca->nports; p++)
			if (!strcmp(hca->ports[p].netdev, nic->ifname)) {
				*port = hca->ports[p].num;
				return hca;
			}
	}
	if (!nic->nhcas)
		return NULL;
	hca = &inv->hcas[nic->hcas[0]];
	*port = rdma_nic_port(nic, hca);
	return hca;
}

int rdma_gid_find(const struct rdma_hca *hca, unsigned int port, int family, const void *addr,
		  const char *ifname)
{
	struct in6_addr want = { 0 }, have;
	char dir[PATH_MAX], buf[PATH_MAX];
	struct dirent **ents;
	int n, found = -ENOENT;

	if (family == AF_INET) {
		want.s6_addr[10] = 0xff;
		want.s6_addr[11] = 0xff;
		memcpy(&want.s6_addr[12], addr, 4);
	} else {
		memcpy(&want, addr, sizeof(want));
	}
	snprintf(dir, sizeof(dir), "%s/ports/%u", hca->dir, port);
	if (snprintf(buf, sizeof(buf), "%s/gids", dir) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	n = scandir(buf, &ents, visible, versionsort);
	if (n < 0)
		return -ENOENT;
	for (int i = 0; i < n; i++) {
		const char *idx = ents[i]->d_name;

		if (found < 0 && !read_attr(buf, sizeof(buf), "%s/gids/%s", dir, idx) &&
		    inet_pton(AF_INET6, buf, &have) == 1 && !memcmp(&have, &want, sizeof(have)) &&
		    !read_attr(buf, sizeof(buf), "%s/gid_attrs/types/%s", dir, idx) &&
		    !strcasecmp(buf, "RoCE v2") &&
		    (!ifname || read_attr(buf, sizeof(buf), "%s/gid_attrs/ndevs/%s", dir, idx) ||
		     !strcmp(buf, ifname)))
			found = atoi(idx);
		free(ents[i]);
	}
	free(ents);
	return found;
}

int rdma_netns_mode_netlink(bool *shared)
{
	struct {
		struct nlmsghdr nh;
		char pad[64];
	} req = { 0 };
	struct timeval tv = { .tv_sec = 2 };
	char buf[8192];
	struct nlmsghdr *nh;
	int fd, err = -ENODATA;
	ssize_t len;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_RDMA);
	if (fd < 0)
		return errno == EPROTONOSUPPORT ? -EPROTONOSUPPORT : -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	req.nh.nlmsg_len = NLMSG_LENGTH(0);
	req.nh.nlmsg_type = RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_SYS_GET);
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.nh.nlmsg_seq = 1;
	if (send(fd, &req, req.nh.nlmsg_len, 0) < 0) {
		err = -errno;
		goto out;
	}
	len = recv(fd, buf, sizeof(buf), 0);
	if (len < 0) {
		err = -errno;
		goto out;
	}
	for (nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)len); nh = NLMSG_NEXT(nh, len)) {
		struct nlattr *a;
		int alen;

		if (nh->nlmsg_type == NLMSG_ERROR) {
			err = ((struct nlmsgerr *)NLMSG_DATA(nh))->error;
			break;
		}
		a = (struct nlattr *)NLMSG_DATA(nh);
		alen = (int)NLMSG_PAYLOAD(nh, 0);
		while (alen >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= alen) {
			if ((a->nla_type & NLA_TYPE_MASK) == RDMA_NLDEV_SYS_ATTR_NETNS_MODE) {
				*shared = *((unsigned char *)a + NLA_HDRLEN) != 0;
				err = 0;
			}
			alen -= NLA_ALIGN(a->nla_len);
			a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len));
		}
	}
out:
	close(fd);
	return err;
}

// SPDX-License-Identifier: Apache-2.0
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/rdma_sysfs.h"

#define BUILDER "bash selftests/lib/fake_rdma.sh"

struct fixture {
	char root[64];
	char sys[96];
	char dev[96];
	struct rdma_inventory inv;
};

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd))
		fail_msg("command failed: %s", cmd);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->root, sizeof(f->root), "/tmp/railnet-rdma-XXXXXX");
	if (!mkdtemp(f->root))
		return -1;
	snprintf(f->sys, sizeof(f->sys), "%s/sys", f->root);
	snprintf(f->dev, sizeof(f->dev), "%s/dev", f->root);
	sh(BUILDER " fake_rdma_standard %s", f->root);
	if (rdma_discover(f->sys, f->dev, &f->inv))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	rdma_inventory_free(&f->inv);
	sh("rm -rf %s", f->root);
	free(f);
	return 0;
}

static const struct rdma_hca *hca_named(const struct rdma_inventory *inv, const char *name)
{
	for (size_t i = 0; i < inv->nhcas; i++)
		if (!strcmp(inv->hcas[i].name, name))
			return &inv->hcas[i];
	return NULL;
}

static bool has_char_dev(const struct rdma_hca *hca, const char *dev_root, const char *name)
{
	char want[256];

	snprintf(want, sizeof(want), "%s/infiniband/%s", dev_root, name);
	for (size_t i = 0; i < hca->nchar_devs; i++)
		if (!strcmp(hca->char_devs[i], want))
			return true;
	return false;
}

static void test_discovers_pci_nics_and_hcas(void **state)
{
	struct fixture *f = *state;
	const struct rdma_nic *roce = rdma_nic_by_name(&f->inv, "ens1f0np0");
	const struct rdma_nic *ib = rdma_nic_by_name(&f->inv, "ib0");
	const struct rdma_nic *plain = rdma_nic_by_name(&f->inv, "eno1");
	const struct rdma_hca *mlx5_0 = hca_named(&f->inv, "mlx5_0");

	/* the virtual netdev is not a PCI function */
	assert_int_equal(f->inv.nnics, 3);
	assert_null(rdma_nic_by_name(&f->inv, "veth0"));
	assert_int_equal(f->inv.nhcas, 2);

	assert_non_null(roce);
	assert_string_equal(roce->pci, "0000:3b:00.0");
	assert_string_equal(roce->vendor, "15b3");
	assert_string_equal(roce->device_id, "1017");
	assert_string_equal(roce->driver, "mlx5_core");
	assert_string_equal(roce->link_type, "ether");
	assert_int_equal(roce->nhcas, 1);
	assert_ptr_equal(&f->inv.hcas[roce->hcas[0]], mlx5_0);

	assert_non_null(ib);
	assert_string_equal(ib->link_type, "infiniband");
	assert_non_null(plain);
	assert_string_equal(plain->driver, "igb");
	assert_int_equal(plain->nhcas, 0);

	assert_non_null(mlx5_0);
	assert_string_equal(mlx5_0->netdev, "ens1f0np0");
	assert_int_equal(mlx5_0->nports, 2);
	assert_int_equal(mlx5_0->ports[0].num, 1);
	assert_int_equal(mlx5_0->ports[1].num, 2);
	assert_int_equal(mlx5_0->ports[0].state, RDMA_PORT_ACTIVE);
	assert_string_equal(mlx5_0->ports[0].state_name, "ACTIVE");
	assert_string_equal(mlx5_0->ports[0].link_layer, "Ethernet");
	assert_string_equal(hca_named(&f->inv, "mlx5_1")->ports[0].link_layer, "InfiniBand");

	/* uverbs0, one umad and issm per port; not mlx5_1's */
	assert_int_equal(mlx5_0->nchar_devs, 5);
	assert_true(has_char_dev(mlx5_0, f->dev, "uverbs0"));
	assert_true(has_char_dev(mlx5_0, f->dev, "umad1"));
	assert_true(has_char_dev(mlx5_0, f->dev, "issm0"));
	assert_false(has_char_dev(mlx5_0, f->dev, "uverbs1"));
	assert_non_null(strstr(f->inv.rdma_cm, "/dev/infiniband/rdma_cm"));
}

static void test_link_type_selector_excludes_infiniband(void **state)
{
	struct fixture *f = *state;
	char *ether = "ether", *mlx = "mlx5_core";
	struct rdma_selectors sel = { .drivers = { &mlx, 1 }, .link_types = { &ether, 1 } };
	size_t matched = 0;

	for (size_t i = 0; i < f->inv.nnics; i++)
		if (rdma_nic_matches(&f->inv.nics[i], &sel)) {
			assert_string_equal(f->inv.nics[i].ifname, "ens1f0np0");
			matched++;
		}
	assert_int_equal(matched, 1);
}

static void test_port_state_refresh(void **state)
{
	struct fixture *f = *state;
	const struct rdma_hca *hca = hca_named(&f->inv, "mlx5_0");

	assert_false(rdma_refresh_ports(&f->inv));
	sh(BUILDER " fake_rdma_port_state %s mlx5_0 2 DOWN", f->root);
	assert_true(rdma_refresh_ports(&f->inv));
	assert_int_equal(rdma_hca_port(hca, 2)->state, 1);
	assert_string_equal(rdma_hca_port(hca, 2)->state_name, "DOWN");
	assert_int_equal(rdma_hca_port(hca, 1)->state, RDMA_PORT_ACTIVE);
	assert_false(rdma_refresh_ports(&f->inv));
}

static void test_gid_index_roce_v2_by_address_and_ndev(void **state)
{
	struct fixture *f = *state;
	const struct rdma_hca *hca = hca_named(&f->inv, "mlx5_0");
	struct in_addr a4;
	struct in6_addr a6;

	inet_pton(AF_INET, "172.16.11.5", &a4);
	inet_pton(AF_INET6, "fd16:11::1:5", &a6);
	assert_int_equal(rdma_gid_find(hca, 1, AF_INET, &a4, "net1"), -ENOENT);
	/* a RoCE v1 entry with the address does not count */
	sh(BUILDER " fake_rdma_gid %s mlx5_0 1 2 0000:0000:0000:0000:0000:ffff:ac10:0b05 "
	   "'IB/RoCE v1' net1", f->root);
	assert_int_equal(rdma_gid_find(hca, 1, AF_INET, &a4, "net1"), -ENOENT);
	sh(BUILDER " fake_rdma_gid_v4 %s mlx5_0 1 3 172.16.11.5 net1", f->root);
	assert_int_equal(rdma_gid_find(hca, 1, AF_INET, &a4, "net1"), 3);
	assert_int_equal(rdma_gid_find(hca, 1, AF_INET, &a4, NULL), 3);
	/* the same address on another pod's NIC name does not match */
	assert_int_equal(rdma_gid_find(hca, 1, AF_INET, &a4, "net2"), -ENOENT);
	assert_int_equal(rdma_gid_find(hca, 2, AF_INET, &a4, "net1"), -ENOENT);
	/* without an ndevs file the address alone decides */
	sh(BUILDER " fake_rdma_gid %s mlx5_0 2 5 fd16:0011:0000:0000:0000:0000:0001:0005 'RoCE v2'",
	   f->root);
	assert_int_equal(rdma_gid_find(hca, 2, AF_INET6, &a6, "net1"), 5);
}

/* Multi-port HCAs: each port is labelled with its own netdev, and a netdev
 * finds its HCA and port through that (not the function's first HCA, not
 * its dev_port alone). */
static void test_ports_name_their_netdevs(void **state)
{
	struct fixture *f = *state;
	const struct rdma_nic *nic;
	const struct rdma_hca *hca;
	unsigned int port = 0;

	/* one function, two netdevs by dev_port, one HCA with two ports (mlx4) */
	sh(BUILDER " fake_rdma_nic %s ens3 0000:86:00.0 15b3 1007 mlx4_core 1 0", f->root);
	sh(BUILDER " fake_rdma_nic %s ens3d1 0000:86:00.0 15b3 1007 mlx4_core 1 1", f->root);
	sh(BUILDER " fake_rdma_hca %s 0000:86:00.0 mlx4_0 2 Ethernet 3", f->root);
	/* switchdev: the uplink and a representor, both dev_port 0, ports of
	 * one HCA; only the kernel's GID table tells port 2 is pf0vf0's */
	sh(BUILDER " fake_rdma_nic %s ens4f0np0 0000:d8:00.0 15b3 101d mlx5_core 1 0", f->root);
	sh(BUILDER " fake_rdma_nic %s pf0vf0 0000:d8:00.0 15b3 101d mlx5_core 1 0", f->root);
	sh(BUILDER " fake_rdma_hca %s 0000:d8:00.0 mlx5_4 2 Ethernet 4", f->root);
	sh(BUILDER " fake_rdma_gid %s mlx5_4 2 0 fe80:0000:0000:0000:0000:00ff:fe00:0002 "
	   "'IB/RoCE v1' pf0vf0", f->root);
	/* a function with two HCAs, the first of which is not the netdev's */
	sh(BUILDER " fake_rdma_nic %s ens5f0np0 0000:af:00.0 15b3 1017 mlx5_core 1 0", f->root);
	sh(BUILDER " fake_rdma_hca %s 0000:af:00.0 mlx5_5 1 Ethernet 5", f->root);
	sh(BUILDER " fake_rdma_hca %s 0000:af:00.0 mlx5_6 1 Ethernet 6", f->root);
	sh("echo bond0 >%s/sys/class/infiniband/mlx5_5/ports/1/gid_attrs/ndevs/0", f->root);
	rdma_inventory_free(&f->inv);
	assert_int_equal(rdma_discover(f->sys, f->dev, &f->inv), 0);

	hca = hca_named(&f->inv, "mlx4_0");
	assert_string_equal(hca->ports[0].netdev, "ens3");
	assert_string_equal(hca->ports[1].netdev, "ens3d1");
	nic = rdma_nic_by_name(&f->inv, "ens3d1");
	assert_ptr_equal(rdma_nic_hca(&f->inv, nic, &port), hca);
	assert_int_equal(port, 2);

	hca = hca_named(&f->inv, "mlx5_4");
	assert_string_equal(hca->ports[0].netdev, "ens4f0np0");
	assert_string_equal(hca->ports[1].netdev, "pf0vf0");
	nic = rdma_nic_by_name(&f->inv, "pf0vf0");
	assert_int_equal(rdma_nic_port(nic, hca), 2);
	assert_ptr_equal(rdma_nic_hca(&f->inv, nic, &port), hca);
	assert_int_equal(port, 2);
	nic = rdma_nic_by_name(&f->inv, "ens4f0np0");
	assert_int_equal(rdma_nic_port(nic, hca), 1);

	nic = rdma_nic_by_name(&f->inv, "ens5f0np0");
	assert_int_equal(nic->nhcas, 2);
	assert_string_equal(f->inv.hcas[nic->hcas[0]].name, "mlx5_5");
	assert_string_equal(hca_named(&f->inv, "mlx5_5")->ports[0].netdev, "bond0");
	hca = rdma_nic_hca(&f->inv, nic, &port);
	assert_string_equal(hca->name, "mlx5_6");
	assert_int_equal(port, 1);

	/* InfiniBand: no netdev in the GID table, dev_port decides */
	assert_string_equal(hca_named(&f->inv, "mlx5_1")->ports[0].netdev, "ib0");
	/* the standard mlx5_0's port 2 has no netdev of its own */
	assert_string_equal(hca_named(&f->inv, "mlx5_0")->ports[1].netdev, "");
	/* a netdev without RDMA has no HCA */
	assert_null(rdma_nic_hca(&f->inv, rdma_nic_by_name(&f->inv, "eno1"), &port));
}

static void test_netns_mode_query(void **state)
{
	bool shared = false;
	int ret = rdma_netns_mode_netlink(&shared);

	/* without RDMA in the kernel the answer is a clear "not present" */
	if (ret)
		assert_int_equal(ret, -EPROTONOSUPPORT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_discovers_pci_nics_and_hcas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_type_selector_excludes_infiniband, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_port_state_refresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gid_index_roce_v2_by_address_and_ndev, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ports_name_their_netdevs, setup, teardown),
		cmocka_unit_test(test_netns_mode_query),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The "rdma" section of railnetd's configuration: the shared RDMA device
 * resources, in the format of k8s-rdma-shared-dev-plugin's config.json
 * (docs/rdma.md). */
#ifndef RAILNET_AGENT_RDMA_CONFIG_H
#define RAILNET_AGENT_RDMA_CONFIG_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define RDMA_DEFAULT_PREFIX	    "rdma"
#define RDMA_DEFAULT_INTERVAL_S	    60
#define RDMA_DEFAULT_PLUGIN_DIR	    "/var/lib/kubelet/device-plugins"
#define RDMA_DEFAULT_PODRES_SOCK    "/var/lib/kubelet/pod-resources/kubelet.sock"
#define RDMA_DEFAULT_PODRES_S	    5
#define RDMA_MAX_RESOURCES	    64
#define RDMA_MAX_HCA_MAX	    10000 /* keeps ListAndWatch well under gRPC's 4 MiB */

struct rdma_strv {
	char **v;
	size_t n;
};

/* Each non-empty list must match (AND); within a list any entry (OR). */
struct rdma_selectors {
	struct rdma_strv vendors;    /* PCI vendor IDs, "15b3" */
	struct rdma_strv device_ids; /* PCI device IDs, "1017" */
	struct rdma_strv drivers;    /* "mlx5_core" */
	struct rdma_strv if_names;   /* netdev names, "ens1f0np0" */
	struct rdma_strv link_types; /* "ether", "infiniband" */
};

struct rdma_resource_config {
	char *prefix; /* "rdma" unless configured */
	char *name;
	long long hca_max; /* devices advertised to the kubelet */
	struct rdma_selectors sel;
};

struct rdma_config {
	bool enabled; /* the section is present */
	long long update_interval_s; /* 0: no periodic rescans */
	char *sysfs_root;
	char *dev_root;
	char *plugin_dir;
	/* the kubelet's PodResources API (devices in use); "" when disabled */
	char *pod_resources_socket;
	long long pod_resources_interval_s; /* between two List calls, >= 1 */
	struct rdma_resource_config *resources;
	size_t nresources;
};

/* Parses @section (the value of "rdma"; NULL: RDMA accounting disabled).  On
 * error @errbuf names the field ("rdma.configList[1].resourceName"). */
int rdma_config_parse(struct json_object *section, struct rdma_config *cfg, char *errbuf,
		      size_t errlen);
void rdma_config_free(struct rdma_config *cfg);

/* The resource's full name for the kubelet: "<prefix>/<name>". */
void rdma_resource_full_name(const struct rdma_resource_config *rc, char *buf, size_t len);

bool rdma_strv_contains(const struct rdma_strv *sv, const char *s);

#endif

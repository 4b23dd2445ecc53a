/* SPDX-License-Identifier: Apache-2.0 */
/* The railnet CNI plugin: network configuration, errors and results. */
#ifndef RAILNET_CNI_H
#define RAILNET_CNI_H

#include <json-c/json.h>
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>

/* CNI spec error codes, then railnet's own (100 and up). */
enum cni_code {
	CNI_ERR_INCOMPATIBLE_VERSION = 1,
	CNI_ERR_UNSUPPORTED_FIELD = 2,
	CNI_ERR_UNKNOWN_CONTAINER = 3,
	CNI_ERR_INVALID_ENV = 4,
	CNI_ERR_IO = 5,
	CNI_ERR_DECODE = 6,
	CNI_ERR_INVALID_CONFIG = 7,
	CNI_ERR_TRY_AGAIN = 11,
	CNI_ERR_NOT_AVAILABLE = 50,
	RAILNET_ERR_MASTER = 100,
	RAILNET_ERR_POOL_EXHAUSTED = 101,
	RAILNET_ERR_UNKNOWN_POOL = 102,
	RAILNET_ERR_POOL_NOT_ALLOWED = 103,
	RAILNET_ERR_GATEWAY_UNREACHABLE = 104,
	RAILNET_ERR_IP_CONFLICT = 105,
	RAILNET_ERR_AGENT = 106,
	RAILNET_ERR_LINK = 107,
};

struct cni_error {
	int code; /* 0: none */
	char msg[256];
	char details[512];
	char agent_code[32]; /* the agent's error code when it answered one */
};

int cni_fail(struct cni_error *e, int code, const char *msg, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

enum macvlan_mode_cfg { MODE_BRIDGE, MODE_PRIVATE, MODE_VEPA, MODE_PASSTHRU };

#define CNI_MAX_POOLS 8

struct netconf {
	char cni_version[16];
	char name[128];
	char master[IFNAMSIZ];
	enum macvlan_mode_cfg mode;
	int mtu;        /* 0: the master's */
	int txqueuelen; /* 0: the kernel's default */
	const char *pools_v4[CNI_MAX_POOLS];
	size_t npools_v4;
	const char *pools_v6[CNI_MAX_POOLS];
	size_t npools_v6;
	bool detect_gateway;
	bool detect_conflict;
	int conflict_window_ms;
	bool has_mac_prefix;
	unsigned char mac_prefix[2];
	bool has_runtime_mac;
	unsigned char runtime_mac[6];
	int route_metric; /* -1: 100 + the number in CNI_IFNAME */
	char rdma_resource[256];
	char socket[108];
	struct json_object *prev_result;       /* borrowed from root */
	struct json_object *valid_attachments; /* GC; borrowed from root */
	struct json_object *root;
};

/* The runtime's environment (CNI_*). */
struct cni_env {
	const char *command;
	const char *container_id;
	const char *netns;
	const char *ifname;
	const char *path;
	char pod_namespace[254];
	char pod_name[254];
	char pod_uid[64];
};

extern const char *const cni_supported_versions[];

bool cni_version_supported(const char *v);
/* Negative, 0, positive as a < b ("0.4.0" < "1.0.0"). */
int cni_version_cmp(const char *a, const char *b);

/* Parses stdin's network configuration (takes a reference to @root). */
int netconf_parse(struct json_object *root, struct netconf *nc, struct cni_error *e);
void netconf_free(struct netconf *nc);
int cni_env_parse(const char *command, struct cni_env *env, struct cni_error *e);

/* {"cniVersion":..,"code":..,"msg":..,"details":..} */
struct json_object *cni_error_json(const char *version, const struct cni_error *e);

/* What ADD produced, for rendering in the requested version. */
struct cni_ip {
	char address[64]; /* a.b.c.d/len */
	char gateway[48];
	char pool[64]; /* the agent's pool it came from */
	int family;
	bool probed; /* the agent found it free on the wire just before */
};
struct cni_route {
	char dst[64];
	char gw[48];
};
struct cni_result {
	char ifname[IFNAMSIZ];
	int ifindex; /* in the pod */
	char mac[18];
	char sandbox[4096];
	int mtu;
	struct cni_ip ips[2];
	size_t nips;
	struct cni_route routes[32];
	size_t nroutes;
};

struct json_object *cni_result_json(const char *version, const struct cni_result *r);

#endif

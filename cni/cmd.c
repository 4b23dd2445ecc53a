// SPDX-License-Identifier: Apache-2.0
#include "cmd.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/macvlan.h>
#include <netlink/route/route.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "common/addr_probe.h"
#include "common/ctl_client.h"
#include "common/mac.h"
#include "common/sysctl.h"
#include "common/protocol.h"
#include "link.h"
#include "probe.h"

#define GATEWAY_TRIES 3
#define GATEWAY_INTERVAL_MS 100

static struct json_object *key_args(const struct netconf *nc, const struct cni_env *env)
{
	struct json_object *a = json_object_new_object();

	json_object_object_add(a, "network", json_object_new_string(nc->name));
	json_object_object_add(a, "containerID", json_object_new_string(env->container_id));
	json_object_object_add(a, "ifName", json_object_new_string(env->ifname));
	return a;
}

static struct json_object *names_array(const char *const *names, size_t n)
{
	struct json_object *arr = json_object_new_array();

	for (size_t i = 0; i < n; i++)
		json_object_array_add(arr, json_object_new_string(names[i]));
	return arr;
}

/* 100 + N for ifname netN: each rail NIC's routes rank after eth0's (metric
 * 0) and apart from each other. */
static int route_metric(const struct netconf *nc, const char *ifname)
{
	const char *p = ifname + strlen(ifname);

	if (nc->route_metric >= 0)
		return nc->route_metric;
	while (p > ifname && isdigit((unsigned char)p[-1]))
		p--;
	return 100 + (*p ? atoi(p) % 1000 : 0);
}

/* "172.16.11.21/24" -> "172.16.11.0/24" */
static int prefix_of(const char *cidr, int family, char *out, size_t size)
{
	unsigned char raw[16];
	char addr[INET6_ADDRSTRLEN + 8], *slash;
	int len, bytes = family == AF_INET ? 4 : 16;

	snprintf(addr, sizeof(addr), "%s", cidr);
	slash = strchr(addr, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	len = atoi(slash + 1);
	if (inet_pton(family, addr, raw) != 1 || len < 0 || len > bytes * 8)
		return -EINVAL;
	for (int i = 0; i < bytes; i++) {
		int keep = len - i * 8;

		raw[i] &= keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
	}
	inet_ntop(family, raw, addr, INET6_ADDRSTRLEN);
	snprintf(out, size, "%s/%d", addr, len & 0xff);
	return 0;
}

static void bare_address(const char *cidr, char *out, size_t size)
{
	snprintf(out, size, "%s", cidr);
	if (strchr(out, '/'))
		*strchr(out, '/') = '\0';
}

/* @o's member @key if it is an array, else NULL: json-c asserts on the
 * array functions of anything else, and JSON from outside is anything. */
static struct json_object *jarray(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array) ?
		       v :
		       NULL;
}

static size_t jlen(struct json_object *array)
{
	return array ? json_object_array_length(array) : 0;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : "";
}

static void add_route(struct cni_result *res, const char *dst, const char *gw)
{
	for (size_t i = 0; i < res->nroutes; i++)
		if (!strcmp(res->routes[i].dst, dst))
			return;
	if (res->nroutes >= sizeof(res->routes) / sizeof(res->routes[0]))
		return;
	snprintf(res->routes[res->nroutes].dst, sizeof(res->routes[0].dst), "%s", dst);
	snprintf(res->routes[res->nroutes].gw, sizeof(res->routes[0].gw), "%s", gw ? gw : "");
	res->nroutes++;
}

/* Fills @res's addresses and routes from the agent's allocation. */
static int take_allocation(struct json_object *alloc, struct cni_result *res, struct cni_error *e)
{
	struct json_object *ips = jarray(alloc, "ips"), *routes = jarray(alloc, "routes");

	if (!jlen(ips))
		return cni_fail(e, RAILNET_ERR_AGENT, "railnetd returned no address", NULL);
	for (size_t i = 0; i < jlen(ips) && res->nips < 2; i++) {
		struct json_object *ip = json_object_array_get_idx(ips, i);
		struct cni_ip *out = &res->ips[res->nips++];

		snprintf(out->address, sizeof(out->address), "%s", jstr(ip, "address"));
		snprintf(out->gateway, sizeof(out->gateway), "%s", jstr(ip, "gateway"));
		snprintf(out->pool, sizeof(out->pool), "%s", jstr(ip, "pool"));
		out->family = strchr(out->address, ':') ? 6 : 4;
		out->probed = json_object_get_boolean(json_object_object_get(ip, "probed"));
	}
	for (size_t i = 0; i < jlen(routes); i++) {
		struct json_object *r = json_object_array_get_idx(routes, i);

		add_route(res, jstr(r, "dst"), jstr(r, "gw"));
	}
	/* The NIC's own default route: oif-bound lookups (RDMA connection
	 * setup) must find its gateway; its metric keeps eth0's default first. */
	for (size_t i = 0; i < res->nips; i++)
		if (res->ips[i].gateway[0])
			add_route(res, res->ips[i].family == 4 ? "0.0.0.0/0" : "::/0",
				  res->ips[i].gateway);
	return 0;
}

/* An agent that answered before the allocation was durable says so. */
static bool allocation_is_durable(struct json_object *alloc)
{
	struct json_object *v;

	return !json_object_object_get_ex(alloc, "durable", &v) || json_object_get_boolean(v);
}

static bool allocation_is_new(struct json_object *alloc)
{
	struct json_object *ips = jarray(alloc, "ips");

	for (size_t i = 0; i < jlen(ips); i++)
		if (json_object_get_boolean(json_object_object_get(json_object_array_get_idx(ips, i), "new")))
			return true;
	return false;
}

static const struct cni_ip *first_ip(const struct cni_result *res, int family)
{
	for (size_t i = 0; i < res->nips; i++)
		if (res->ips[i].family == family)
			return &res->ips[i];
	return NULL;
}

/* net/<dir>/<ifname>/<key> = @value */
static int sysctl_ifset(const char *dir, const char *ifname, const char *key, const char *value)
{
	char path[128];

	snprintf(path, sizeof(path), "net/%s/%s/%s", dir, ifname, key);
	return sysctl_write(path, value);
}

/* The IP conflict probes (RFC 5227 ARP probe, RFC 4862 DAD) run before
 * anyone is told about the addresses; the announcements follow them.  An
 * address the agent probed just before needs neither: the kernel announced
 * it as the link came up (announce_at_up). */
static int check_conflict(const struct netconf *nc, const struct cni_env *env,
			  const struct cni_result *res, int ifindex, const unsigned char mac[6],
			  struct cni_error *e)
{
	unsigned char who[6], raw[16];
	int err = 0, family, fd[2] = { -1, -1 }; /* IPv4's, IPv6's */
	struct in6_addr a6;
	struct in_addr a;
	char src[64];

	for (size_t i = 0; i < res->nips && !err; i++) {
		int *f = &fd[res->ips[i].family == 6];

		if (res->ips[i].probed)
			continue;
		family = res->ips[i].family == 4 ? AF_INET : AF_INET6;
		bare_address(res->ips[i].address, src, sizeof(src));
		inet_pton(family, src, raw);
		if (*f < 0 && (*f = addr_probe_open(ifindex, family)) < 0)
			err = *f;
		else
			err = probe_conflict(*f, ifindex, mac, family, raw, nc->conflict_window_ms, who);
		if (err == -EADDRINUSE)
			err = cni_fail(e, RAILNET_ERR_IP_CONFLICT, "IP address already in use",
				       "%s answered from %02x:%02x:%02x:%02x:%02x:%02x on %s's network: "
				       "add it to the pool's excludeIPs or free it",
				       src, who[0], who[1], who[2], who[3], who[4], who[5], nc->master);
		else if (err)
			err = cni_fail(e, RAILNET_ERR_LINK, "IP conflict probe failed", "%s on %s: %s",
				       src, env->ifname, strerror(-err));
	}
	/* The probe's own socket announces: closing a packet socket waits for
	 * an RCU grace period, one per socket. */
	for (size_t i = 0; i < res->nips && !err; i++) {
		if (res->ips[i].probed)
			continue;
		bare_address(res->ips[i].address, src, sizeof(src));
		if (res->ips[i].family == 4) {
			inet_pton(AF_INET, src, &a);
			addr_announce4(fd[0], ifindex, mac, a);
		} else {
			inet_pton(AF_INET6, src, &a6);
			announce6(ifindex, mac, &a6);
		}
	}
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	return err;
}

static int check_gateways(const struct netconf *nc, const struct cni_env *env,
			  const struct cni_result *res, int ifindex, struct cni_error *e)
{
	for (size_t i = 0; i < res->nips; i++) {
		const struct cni_ip *ip = &res->ips[i];
		int family = ip->family == 4 ? AF_INET : AF_INET6;
		struct in6_addr gw;
		char src[64];

		if (!ip->gateway[0] || inet_pton(family, ip->gateway, &gw) != 1)
			continue;
		if (probe_gateway(ifindex, family, &gw, GATEWAY_TRIES, GATEWAY_INTERVAL_MS)) {
			bare_address(ip->address, src, sizeof(src));
			return cni_fail(e, RAILNET_ERR_GATEWAY_UNREACHABLE, "gateway unreachable",
					"gateway %s did not answer %d %s from %s on %s (master %s): "
					"check the rail's switch/gateway, or set detectGateway=false",
					ip->gateway, GATEWAY_TRIES,
					family == AF_INET ? "ARP requests" : "neighbour solicitations",
					src, env->ifname, nc->master);
		}
	}
	return 0;
}

/* The agent answered a per-NIC op with an error (in @e): @what failed for
 * @subject, for the agent's reason. */
static int agent_refused(struct cni_error *e, const char *what, const char *subject)
{
	char why[sizeof(e->details)];

	snprintf(why, sizeof(why), "%s", e->details);
	return cni_fail(e, RAILNET_ERR_AGENT, what, "%s: %s", subject, why);
}

/* What the agent's per-NIC ops (rdma.attach, datapath.attach) take: the
 * key, the netns, the master and {"address","gateway","pool"} per address. */
static struct json_object *nic_args(const struct netconf *nc, const struct cni_env *env,
				    const struct cni_result *res)
{
	struct json_object *args = key_args(nc, env), *ips = json_object_new_array();

	for (size_t i = 0; i < res->nips; i++) {
		struct json_object *ip = json_object_new_object();

		json_object_object_add(ip, "address", json_object_new_string(res->ips[i].address));
		json_object_object_add(ip, "gateway", json_object_new_string(res->ips[i].gateway));
		json_object_object_add(ip, "pool", json_object_new_string(res->ips[i].pool));
		json_object_array_add(ips, ip);
	}
	json_object_object_add(args, "netns", json_object_new_string(env->netns));
	json_object_object_add(args, "master", json_object_new_string(nc->master));
	json_object_object_add(args, "ips", ips);
	return args;
}

/* ADD's datapath requests, on one connection: the prepare's answer (when
 * it was sent) comes before the attach's. */
struct dp_calls {
	struct ctl_conn *conn;
	bool prepare_owed, attach_owed;
};

/* Puts the NIC into the eBPF return path (agent op datapath.attach).  Sent
 * as soon as the NIC has its final MAC, so that the agent publishes it while
 * the plugin configures addresses, routes and checks; its answer is read
 * before ADD answers (dp_calls_finish). */
static int datapath_attach_send(const struct netconf *nc, const struct cni_env *env,
				const struct cni_result *res, struct dp_calls *dp,
				struct cni_error *e)
{
	struct json_object *args = nic_args(nc, env, res);
	int err;

	json_object_object_add(args, "podNamespace", json_object_new_string(env->pod_namespace));
	json_object_object_add(args, "podName", json_object_new_string(env->pod_name));
	json_object_object_add(args, "ifindex", json_object_new_int(res->ifindex));
	/* With the ifindex, the NIC its prepare hooked: the agent need not
	 * visit the pod's netns again. */
	json_object_object_add(args, "mac", json_object_new_string(res->mac));
	err = agent_send(nc, "datapath.attach", args, &dp->conn, e);
	dp->attach_owed = !err;
	if (err) /* the connection went with the failed send */
		dp->prepare_owed = false;
	json_object_put(args);
	return err;
}

/* Has the agent hook the NIC's device for the eBPF datapath (agent op
 * datapath.prepare) while it makes the addresses durable: the hooks are most
 * of an attach's time, and need no address. */
static void datapath_prepare_send(const struct netconf *nc, const struct cni_env *env,
				  const struct cni_result *res, struct dp_calls *dp)
{
	struct json_object *args = key_args(nc, env);
	struct cni_error ignored;

	json_object_object_add(args, "netns", json_object_new_string(env->netns));
	json_object_object_add(args, "ifindex", json_object_new_int(res->ifindex));
	dp->prepare_owed = !agent_send(nc, "datapath.prepare", args, &dp->conn, &ignored);
	json_object_put(args);
}

/* Collects the answer to a request whose outcome changes nothing for the
 * caller.  False when none came (the transport failed): then the
 * connection is out of step, and no later answer on it can be told apart. */
static bool agent_collect_quietly(const struct netconf *nc, const char *op, struct ctl_conn *conn)
{
	struct json_object *out = NULL;
	struct cni_error ignored;

	if (!conn)
		return false;
	if (!agent_receive(nc, op, conn, &out, &ignored)) {
		json_object_put(out);
		return true;
	}
	return ignored.agent_code[0] != '\0';
}

/* The answers owed on @dp's connection, which it then closes: the
 * prepare's, whatever its outcome (the attach makes what is missing, and
 * says when it can't), then the attach's, which this returns.  Collected
 * before ADD answers or rolls back, so that nothing the agent makes for them
 * comes after its undoing.  A node that runs without the datapath
 * (datapath.enabled false) says so, and that is fine. */
static int dp_calls_finish(const struct netconf *nc, const struct cni_env *env,
			   struct dp_calls *dp, struct cni_error *e)
{
	struct json_object *out = NULL;
	int err = 0;

	if (dp->prepare_owed && !agent_collect_quietly(nc, "datapath.prepare", dp->conn))
		agent_close(&dp->conn);
	if (dp->attach_owed && !dp->conn)
		err = cni_fail(e, CNI_ERR_TRY_AGAIN, "railnetd is not reachable, try again later",
			       "datapath.attach on %s: no answer", nc->socket);
	else if (dp->attach_owed)
		err = agent_receive(nc, "datapath.attach", dp->conn, &out, e);
	json_object_put(out);
	agent_close(&dp->conn);
	dp->prepare_owed = dp->attach_owed = false;
	if (err && !strcmp(e->agent_code, CTL_ERR_DISABLED))
		return 0;
	if (err && e->agent_code[0])
		return agent_refused(e, "cannot attach the NIC to the eBPF datapath", env->ifname);
	return err;
}

/* No conflict probe of ours must precede @family's announcement. */
static bool announce_at_up(const struct netconf *nc, const struct cni_result *res, int family)
{
	for (size_t i = 0; nc->detect_conflict && i < res->nips; i++)
		if (res->ips[i].family == family && !res->ips[i].probed)
			return false;
	return true;
}

/* Inside the pod netns, what needs no address - done while the agent makes
 * the allocation durable: sysctls, the link's ifindex, MAC and MTU. */
static int prepare_pod_side(const struct cni_env *env, struct nl_sock *pod, struct cni_result *res,
			    struct cni_error *e)
{
	int err;

	/* Loose reverse-path filtering: replies may arrive on a rail NIC whose
	 * subnet is not where the main table would send them.  The kernel
	 * takes the larger of conf/all and conf/<nic>, so the NIC's 2 is
	 * enough and the pod's other interfaces keep their setting. */
	sysctl_ifset("ipv4/conf", env->ifname, "rp_filter", "2");
	sysctl_ifset("ipv6/conf", env->ifname, "accept_ra", "0");
	sysctl_ifset("ipv6/conf", env->ifname, "accept_dad", "0");
	err = link_get(pod, env->ifname, &res->ifindex, res->mac, &res->mtu);
	if (err)
		return cni_fail(e, RAILNET_ERR_LINK, "interface vanished", "%s: %s", env->ifname,
				strerror(-err));
	return 0;
}

/* Inside the pod netns, with the addresses: announcements, MAC, the agent's
 * datapath.attach on its way, addresses, up, routes, checks, and the
 * attach's answer. */
static int configure_pod_side(const struct netconf *nc, const struct cni_env *env,
			      struct nl_sock *pod, const unsigned char *want_mac,
			      struct cni_result *res, struct dp_calls *dp, struct cni_error *e)
{
	struct cni_error attach_err = { 0 };
	/* Where no probe of ours must come first, the kernel announces the
	 * addresses itself (gratuitous ARP, unsolicited NA) as the link comes up
	 * with them: no packet socket, whose close waits an RCU grace period. */
	const char *notify4 = announce_at_up(nc, res, 4) ? "1" : "0";
	const char *notify6 = announce_at_up(nc, res, 6) ? "1" : "0";
	int ifindex = res->ifindex, metric = route_metric(nc, env->ifname), err = 0;
	char prefix[64], src[64];
	unsigned char mac[6];

	/* A family with no address has nothing to announce (and it is 0). */
	if (first_ip(res, 4))
		sysctl_ifset("ipv4/conf", env->ifname, "arp_notify", notify4);
	if (first_ip(res, 6))
		sysctl_ifset("ipv6/conf", env->ifname, "ndisc_notify", notify6);
	if (want_mac) {
		err = link_set_mac(pod, ifindex, want_mac);
		if (err) {
			err = cni_fail(e, RAILNET_ERR_LINK, "cannot set the MAC address",
				       "%s from podMACPrefix: %s", env->ifname, strerror(-err));
			goto out;
		}
		mac_format(want_mac, res->mac);
	}
	mac_parse(res->mac, mac, 6); /* the kernel's or ours: well formed */
	err = datapath_attach_send(nc, env, res, dp, e);
	if (err)
		goto out;
	for (size_t i = 0; i < res->nips; i++) {
		err = link_addr_add(pod, ifindex, res->ips[i].address);
		if (err) {
			err = cni_fail(e, RAILNET_ERR_LINK, "cannot configure the address", "%s on %s",
				       res->ips[i].address, env->ifname);
			goto out;
		}
	}
	err = link_set_up(pod, ifindex);
	if (err) {
		err = cni_fail(e, RAILNET_ERR_LINK, "cannot bring the interface up", "%s: %s",
			       env->ifname, strerror(-err));
		goto out;
	}
	for (size_t i = 0; i < res->nips; i++) {
		const struct cni_ip *ip = &res->ips[i];

		if (prefix_of(ip->address, ip->family == 4 ? AF_INET : AF_INET6, prefix,
			      sizeof(prefix)))
			continue;
		bare_address(ip->address, src, sizeof(src));
		err = link_route_add(pod, ifindex, prefix, NULL, src, metric);
		if (err) {
			err = cni_fail(e, RAILNET_ERR_LINK, "cannot add the subnet route",
				       "%s dev %s", prefix, env->ifname);
			goto out;
		}
	}
	for (size_t i = 0; i < res->nroutes; i++) {
		err = link_route_add(pod, ifindex, res->routes[i].dst, res->routes[i].gw, NULL, metric);
		if (err) {
			err = cni_fail(e, RAILNET_ERR_LINK, "cannot add a route", "%s via %s dev %s",
				       res->routes[i].dst, res->routes[i].gw, env->ifname);
			goto out;
		}
	}
	if (nc->detect_conflict) {
		err = check_conflict(nc, env, res, ifindex, mac, e);
		if (err)
			goto out;
	}
	if (nc->detect_gateway)
		err = check_gateways(nc, env, res, ifindex, e);
out:
	if (dp_calls_finish(nc, env, dp, &attach_err) && !err) {
		*e = attach_err;
		err = -e->code;
	}
	return err;
}

/* Counts the NIC against its RDMA shared-device resource and links it to
 * the HCA behind the master (agent op rdma.attach). */
static int rdma_attach(const struct netconf *nc, const struct cni_env *env,
		       const struct cni_result *res, struct cni_error *e)
{
	struct json_object *args = nic_args(nc, env, res), *out = NULL;
	int err;

	json_object_object_add(args, "rdmaResourceName", json_object_new_string(nc->rdma_resource));
	err = agent_call(nc, "rdma.attach", args, &out, e);
	json_object_put(args);
	json_object_put(out);
	if (err && e->agent_code[0])
		return agent_refused(e, "cannot attach the NIC to its RDMA device", nc->rdma_resource);
	return err;
}

static struct json_object *allocate_args(const struct netconf *nc, const struct cni_env *env)
{
	struct json_object *args = key_args(nc, env), *pools = json_object_new_object();

	json_object_object_add(args, "netns", json_object_new_string(env->netns));
	json_object_object_add(args, "podNamespace", json_object_new_string(env->pod_namespace));
	json_object_object_add(args, "podName", json_object_new_string(env->pod_name));
	json_object_object_add(args, "podUID", json_object_new_string(env->pod_uid));
	/* The allocation is made durable (ipam.sync) while the pod side is
	 * configured with it, not before. */
	json_object_object_add(args, "deferSync", json_object_new_boolean(true));
	json_object_object_add(pools, "ipv4", names_array(nc->pools_v4, nc->npools_v4));
	json_object_object_add(pools, "ipv6", names_array(nc->pools_v6, nc->npools_v6));
	json_object_object_add(args, "pools", pools);
	if (nc->detect_conflict) {
		struct json_object *probe = json_object_new_object();

		json_object_object_add(probe, "master", json_object_new_string(nc->master));
		json_object_object_add(probe, "windowMs", json_object_new_int(nc->conflict_window_ms));
		json_object_object_add(args, "conflictProbe", probe);
	}
	return args;
}

/* podMACPrefix + the IPv4 address's 4 bytes: a MAC that tells the address. */
static bool mac_from_prefix(const struct netconf *nc, const struct cni_result *res,
			    unsigned char mac[6])
{
	const struct cni_ip *v4 = first_ip(res, 4);
	struct in_addr a;
	char bare[64];

	/* The runtime's MAC (set at creation) wins. */
	if (!nc->has_mac_prefix || nc->has_runtime_mac || !v4)
		return false;
	bare_address(v4->address, bare, sizeof(bare));
	if (inet_pton(AF_INET, bare, &a) != 1)
		return false;
	memcpy(mac, nc->mac_prefix, 2);
	memcpy(mac + 2, &a.s_addr, 4);
	return true;
}

/* A keyed call whose outcome changes nothing for the caller (rollback). */
static void agent_call_quietly(const struct netconf *nc, const struct cni_env *env, const char *op)
{
	struct json_object *args = key_args(nc, env), *res = NULL;
	struct cni_error ignored;

	if (!agent_call(nc, op, args, &res, &ignored))
		json_object_put(res);
	json_object_put(args);
}

int cmd_add(const struct netconf *nc, const struct cni_env *env, struct json_object **out,
	    struct cni_error *e)
{
	struct netns_pair ns = { -1, -1 };
	struct nl_sock *host = NULL, *pod = NULL;
	struct master_info m;
	struct json_object *args, *alloc = NULL;
	/* IPAM's requests on one connection (ipam.allocate, then ipam.sync),
	 * the datapath's on another. */
	struct ctl_conn *ipam = NULL;
	struct dp_calls dp = { 0 };
	struct json_object *synced = NULL;
	struct cni_result res = { 0 };
	struct cni_error link_err = { 0 }, prep_err = { 0 }, ignored = { 0 };
	unsigned char mac[6];
	bool allocated = false, created = false, in_pod = false, rdma_attached = false;
	bool sync_owed = false;
	int err, prep = 0;

	err = nl_route_open(&host);
	if (err)
		return cni_fail(e, CNI_ERR_IO, "netlink unavailable", NULL);
	err = link_master_check(host, nc->master, &m, e);
	if (err)
		goto out;
	err = netns_pair_open(env->netns, &ns);
	if (err) {
		err = cni_fail(e, CNI_ERR_UNKNOWN_CONTAINER, "cannot open the pod's network namespace",
			       "%s: %s", env->netns, strerror(-err));
		goto out;
	}

	/* The agent makes the allocation durable while the link is created. */
	args = allocate_args(nc, env);
	err = agent_send(nc, "ipam.allocate", args, &ipam, e);
	json_object_put(args);
	if (err)
		goto out;
	created = !link_macvlan_create(host, nc, &m, ns.pod_fd, env->ifname,
				       nc->has_runtime_mac ? nc->runtime_mac : NULL, &link_err);
	if (created) {
		prep = netns_enter(ns.pod_fd);
		if (prep)
			prep = cni_fail(&prep_err, CNI_ERR_IO, "cannot enter the pod's network namespace",
					"%s", strerror(-prep));
		in_pod = !prep;
		if (in_pod && nl_route_open(&pod))
			prep = cni_fail(&prep_err, CNI_ERR_IO, "netlink unavailable in the pod", NULL);
		if (!prep)
			prep = prepare_pod_side(env, pod, &res, &prep_err);
		if (!prep)
			datapath_prepare_send(nc, env, &res, &dp);
	}
	err = agent_receive(nc, "ipam.allocate", ipam, &alloc, e);
	if (err) {
		/* With no answer at all the agent may still have allocated:
		 * for this NIC, which is new if its link could be made. */
		allocated = created && !e->agent_code[0];
		goto rollback;
	}
	/* Roll back only what this ADD allocated, not a NIC's that already runs. */
	allocated = allocation_is_new(alloc);
	if (!created || prep) {
		*e = created ? prep_err : link_err;
		err = -e->code;
		goto rollback;
	}
	err = take_allocation(alloc, &res, e);
	if (!err && !allocation_is_durable(alloc)) {
		err = agent_send(nc, "ipam.sync", NULL, &ipam, e);
		sync_owed = !err;
	}
	if (err)
		goto rollback;
	snprintf(res.ifname, sizeof(res.ifname), "%s", env->ifname);
	snprintf(res.sandbox, sizeof(res.sandbox), "%s", env->netns);
	err = configure_pod_side(nc, env, pod, mac_from_prefix(nc, &res, mac) ? mac : NULL, &res,
				 &dp, e);
	if (err)
		goto rollback;
	netns_enter(ns.host_fd);
	in_pod = false;
	if (nc->rdma_resource[0]) {
		rdma_attached = true; /* perhaps, if its answer is lost: detach is idempotent */
		err = rdma_attach(nc, env, &res, e);
		if (err)
			goto rollback;
	}
	/* Nobody outside the node hears of an address before it is durable. */
	if (sync_owed) {
		sync_owed = false;
		err = agent_receive(nc, "ipam.sync", ipam, &synced, e);
		json_object_put(synced);
		if (err)
			goto rollback;
	}
	*out = cni_result_json(nc->cni_version, &res);
	err = 0;
	goto out;

rollback:
	dp_calls_finish(nc, env, &dp, &ignored);
	if (sync_owed)
		agent_collect_quietly(nc, "ipam.sync", ipam);
	if (created && (in_pod || !netns_enter(ns.pod_fd))) {
		if (pod || !nl_route_open(&pod))
			link_delete(pod, env->ifname);
		netns_enter(ns.host_fd);
	}
	/* Releasing what this ADD allocated takes the NIC's datapath entry and
	 * RDMA attachment with it (the agent's release hook); otherwise undo
	 * them here - the link they were for is gone. */
	if (allocated) {
		agent_call_quietly(nc, env, "ipam.release");
	} else if (created) {
		agent_call_quietly(nc, env, "datapath.detach");
		if (rdma_attached)
			agent_call_quietly(nc, env, "rdma.detach");
	}
out:
	agent_close(&ipam);
	json_object_put(alloc);
	netns_pair_close(&ns);
	nl_socket_free(pod);
	nl_socket_free(host);
	return err;
}

/* Where DEL leaves a release the agent could not take: the agent replays
 * these at start and on every reconcile. */
static int queue_release(const struct netconf *nc, const struct cni_env *env)
{
	char dir[sizeof(nc->socket) + 32], path[sizeof(dir) + 320], tmp[sizeof(path) + 8];
	struct json_object *args = key_args(nc, env);
	const char *text = json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN);
	char sock[sizeof(nc->socket)];
	int fd, err = 0;

	snprintf(sock, sizeof(sock), "%s", nc->socket);
	snprintf(dir, sizeof(dir), "%s/release-queue", dirname(sock));
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		err = -errno;
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%.64s-%.64s-%.15s.json", dir, nc->name, env->container_id,
		 env->ifname);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (write(fd, text, strlen(text)) < 0 || fsync(fd) < 0)
		err = -errno;
	close(fd);
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (!err) {
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			fsync(fd);
			close(fd);
		}
	}
out:
	json_object_put(args);
	return err;
}

/* DEL without the agent's help (it is away, or too old for nic.delete):
 * delete the link here, then release, or queue the release for it. */
static int del_here(const struct netconf *nc, const struct cni_env *env, struct cni_error *e)
{
	struct netns_pair ns = { -1, -1 };
	struct json_object *args, *res = NULL;
	struct timespec pause = { 0, 100 * 1000000L };
	int err;

	/* The pod side first: with the netns or the link gone there is
	 * nothing to delete, and that is fine. */
	if (env->netns && *env->netns && !netns_pair_open(env->netns, &ns)) {
		struct nl_sock *pod = NULL;

		if (!netns_enter(ns.pod_fd) && !nl_route_open(&pod)) {
			link_delete(pod, env->ifname);
			nl_socket_free(pod);
		}
		netns_enter(ns.host_fd);
		netns_pair_close(&ns);
	}

	args = key_args(nc, env);
	/* The agent may be restarting: retry briefly, then leave the release
	 * durably queued for it. */
	for (int i = 0; i < 20; i++) {
		err = agent_call(nc, "ipam.release", args, &res, e);
		if (!err || e->code != CNI_ERR_TRY_AGAIN)
			break;
		nanosleep(&pause, NULL);
	}
	json_object_put(args);
	json_object_put(res);
	if (err && e->code == CNI_ERR_TRY_AGAIN) {
		if (!queue_release(nc, env))
			return 0;
	}
	return err;
}

int cmd_del(const struct netconf *nc, const struct cni_env *env, struct cni_error *e)
{
	struct json_object *args = key_args(nc, env), *res = NULL;
	int err;

	/* Deleting the link waits for an RCU grace period (~16 ms): the agent
	 * does it after answering, and releases the addresses only once the
	 * link is gone. */
	if (env->netns && *env->netns)
		json_object_object_add(args, "netns", json_object_new_string(env->netns));
	/* The NIC's datapath entry and RDMA attachment go with its addresses
	 * (the agent's release hook), whichever way they are released. */
	err = agent_call(nc, "nic.delete", args, &res, e);
	json_object_put(args);
	json_object_put(res);
	if (err && (e->code == CNI_ERR_TRY_AGAIN || !strcmp(e->agent_code, CTL_ERR_UNKNOWN_OP)))
		return del_here(nc, env, e);
	return err;
}

/* Addresses and routes of @ifindex, as text, for CHECK. */
static bool link_has_address(struct nl_cache *addrs, int ifindex, const char *cidr)
{
	char buf[128];

	for (struct nl_object *o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;

		if (rtnl_addr_get_ifindex(a) != ifindex)
			continue;
		nl_addr2str(rtnl_addr_get_local(a), buf, sizeof(buf));
		if (!strchr(buf, '/'))
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "/%d",
				 rtnl_addr_get_prefixlen(a));
		if (!strcmp(buf, cidr))
			return true;
	}
	return false;
}

static bool link_has_route(struct nl_cache *routes, int ifindex, const char *dst, const char *gw)
{
	struct nl_addr *want_dst = NULL, *want_gw = NULL;
	bool found = false;

	if (nl_addr_parse(dst, AF_UNSPEC, &want_dst) < 0)
		return false;
	if (gw && *gw && nl_addr_parse(gw, AF_UNSPEC, &want_gw) < 0) {
		nl_addr_put(want_dst);
		return false;
	}
	for (struct nl_object *o = nl_cache_get_first(routes); o && !found; o = nl_cache_get_next(o)) {
		struct rtnl_route *r = (struct rtnl_route *)o;
		struct rtnl_nexthop *nh;

		if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_nnexthops(r) != 1 ||
		    nl_addr_cmp_prefix(rtnl_route_get_dst(r), want_dst) ||
		    nl_addr_get_prefixlen(rtnl_route_get_dst(r)) != nl_addr_get_prefixlen(want_dst))
			continue;
		nh = rtnl_route_nexthop_n(r, 0);
		if (rtnl_route_nh_get_ifindex(nh) != ifindex)
			continue;
		if (want_gw && (!rtnl_route_nh_get_gateway(nh) ||
				nl_addr_cmp(rtnl_route_nh_get_gateway(nh), want_gw)))
			continue;
		found = true;
	}
	nl_addr_put(want_dst);
	nl_addr_put(want_gw);
	return found;
}

static int check_pod_side(const struct netconf *nc, const struct cni_env *env, struct cni_error *e)
{
	struct json_object *prev = nc->prev_result, *ifs = jarray(prev, "interfaces"),
			   *ips = jarray(prev, "ips"), *routes = jarray(prev, "routes");
	struct nl_cache *addrs = NULL, *rts = NULL;
	struct rtnl_link *link = NULL;
	struct nl_sock *pod = NULL;
	char mac[32] = "";
	int ifindex, err = 0;

	if (nl_route_open(&pod))
		return cni_fail(e, CNI_ERR_IO, "netlink unavailable in the pod", NULL);
	if (rtnl_link_get_kernel(pod, 0, env->ifname, &link) < 0) {
		err = cni_fail(e, RAILNET_ERR_LINK, "interface missing", "%s is not in the pod",
			       env->ifname);
		goto out;
	}
	ifindex = rtnl_link_get_ifindex(link);
	if (!rtnl_link_get_type(link) || strcmp(rtnl_link_get_type(link), "macvlan")) {
		err = cni_fail(e, RAILNET_ERR_LINK, "interface is not a macvlan", "%s is %s",
			       env->ifname, rtnl_link_get_type(link) ? rtnl_link_get_type(link) : "?");
		goto out;
	}
	if (rtnl_link_macvlan_get_mode(link) !=
	    (uint32_t)rtnl_link_macvlan_str2mode(nc->mode == MODE_BRIDGE    ? "bridge"
						 : nc->mode == MODE_PRIVATE ? "private"
						 : nc->mode == MODE_VEPA    ? "vepa"
									    : "passthru")) {
		err = cni_fail(e, RAILNET_ERR_LINK, "macvlan mode differs", "%s", env->ifname);
		goto out;
	}
	nl_addr2str(rtnl_link_get_addr(link), mac, sizeof(mac));
	for (size_t i = 0; i < jlen(ifs); i++) {
		struct json_object *itf = json_object_array_get_idx(ifs, i);

		if (!strcmp(jstr(itf, "name"), env->ifname) && *jstr(itf, "mac") &&
		    strcasecmp(jstr(itf, "mac"), mac)) {
			err = cni_fail(e, RAILNET_ERR_LINK, "MAC address differs",
				       "%s has %s, prevResult says %s", env->ifname, mac,
				       jstr(itf, "mac"));
			goto out;
		}
	}
	if (rtnl_addr_alloc_cache(pod, &addrs) < 0 ||
	    rtnl_route_alloc_cache(pod, AF_UNSPEC, 0, &rts) < 0) {
		err = cni_fail(e, CNI_ERR_IO, "cannot read the pod's addresses and routes", NULL);
		goto out;
	}
	for (size_t i = 0; i < jlen(ips); i++) {
		const char *a = jstr(json_object_array_get_idx(ips, i), "address");

		if (!link_has_address(addrs, ifindex, a)) {
			err = cni_fail(e, RAILNET_ERR_LINK, "address missing", "%s is not on %s", a,
				       env->ifname);
			goto out;
		}
	}
	for (size_t i = 0; i < jlen(routes); i++) {
		struct json_object *r = json_object_array_get_idx(routes, i);

		if (!link_has_route(rts, ifindex, jstr(r, "dst"), jstr(r, "gw"))) {
			err = cni_fail(e, RAILNET_ERR_LINK, "route missing", "%s via %s dev %s",
				       jstr(r, "dst"), jstr(r, "gw"), env->ifname);
			goto out;
		}
	}
out:
	nl_cache_free(addrs);
	nl_cache_free(rts);
	rtnl_link_put(link);
	nl_socket_free(pod);
	return err;
}

static bool has_address(struct json_object *ips, const char *address)
{
	for (size_t i = 0; i < jlen(ips); i++)
		if (!strcmp(jstr(json_object_array_get_idx(ips, i), "address"), address))
			return true;
	return false;
}

/* What the agent holds for the NIC (ipam.get's @held) is what ADD said,
 * both ways. */
static int check_agent_addresses(const struct netconf *nc, const struct cni_env *env,
				 struct json_object *held, struct cni_error *e)
{
	struct json_object *mine = jarray(held, "ips"), *said = jarray(nc->prev_result, "ips");

	for (size_t i = 0; i < jlen(mine); i++) {
		const char *a = jstr(json_object_array_get_idx(mine, i), "address");

		if (!has_address(said, a))
			return cni_fail(e, RAILNET_ERR_LINK, "address differs from the agent's",
					"railnetd holds %s for %s, prevResult does not have it", a,
					env->ifname);
	}
	for (size_t i = 0; i < jlen(said); i++) {
		const char *a = jstr(json_object_array_get_idx(said, i), "address");

		if (!has_address(mine, a))
			return cni_fail(e, RAILNET_ERR_LINK, "address differs from the agent's",
					"prevResult has %s for %s, railnetd does not hold it", a,
					env->ifname);
	}
	return 0;
}

int cmd_check(const struct netconf *nc, const struct cni_env *env, struct cni_error *e)
{
	struct netns_pair ns = { -1, -1 };
	struct json_object *args, *res = NULL;
	int err;

	if (!nc->prev_result)
		return cni_fail(e, CNI_ERR_INVALID_CONFIG, "invalid network configuration",
				"prevResult: CHECK needs the ADD's result");
	err = netns_pair_open(env->netns, &ns);
	if (err)
		return cni_fail(e, CNI_ERR_UNKNOWN_CONTAINER, "cannot open the pod's network namespace",
				"%s: %s", env->netns, strerror(-err));
	err = netns_enter(ns.pod_fd);
	if (!err)
		err = check_pod_side(nc, env, e);
	else
		err = cni_fail(e, CNI_ERR_IO, "cannot enter the pod's network namespace", NULL);
	netns_enter(ns.host_fd);
	netns_pair_close(&ns);
	if (err)
		return err;

	args = key_args(nc, env);
	err = agent_call(nc, "ipam.get", args, &res, e);
	if (!err)
		err = check_agent_addresses(nc, env, res, e);
	json_object_put(res);
	res = NULL;
	if (!err) {
		err = agent_call(nc, "datapath.get", args, &res, e);
		if (err && !strcmp(e->agent_code, CTL_ERR_DISABLED))
			err = 0;
		else if (err && !strcmp(e->agent_code, CTL_ERR_NOT_FOUND))
			err = cni_fail(e, RAILNET_ERR_LINK, "interface not in the eBPF datapath",
				       "%s: railnetd has no return-path entry for it (an agent state "
				       "loss?); delete and re-create the pod",
				       env->ifname);
		json_object_put(res);
	}
	json_object_put(args);
	return err;
}

/* True when @names lists pools and the agent's @pools says each is
 * exhausted (an ADD falls through them in order: one with room will do). */
static bool family_exhausted(struct json_object *pools, const char *const *names, size_t n)
{
	size_t full = 0;

	for (size_t j = 0; j < n; j++)
		for (size_t i = 0; i < jlen(pools); i++) {
			struct json_object *p = json_object_array_get_idx(pools, i);

			if (!strcmp(jstr(p, "name"), names[j]) &&
			    json_object_get_boolean(json_object_object_get(p, "exhausted")))
				full++;
		}
	return n && full == n;
}

int cmd_status(const struct netconf *nc, struct cni_error *e)
{
	struct json_object *res = NULL, *pools;
	int err = agent_call(nc, "status", NULL, &res, e);

	if (err)
		return cni_fail(e, CNI_ERR_NOT_AVAILABLE, "railnet is not available",
				"railnetd is not reachable on %s", nc->socket);
	pools = jarray(res, "pools");
	if (family_exhausted(pools, nc->pools_v4, nc->npools_v4))
		err = cni_fail(e, CNI_ERR_NOT_AVAILABLE, "railnet is not available",
			       "every IPv4 pool of the network is exhausted (%s%s)", nc->pools_v4[0],
			       nc->npools_v4 > 1 ? ", ..." : "");
	else if (family_exhausted(pools, nc->pools_v6, nc->npools_v6))
		err = cni_fail(e, CNI_ERR_NOT_AVAILABLE, "railnet is not available",
			       "every IPv6 pool of the network is exhausted (%s%s)", nc->pools_v6[0],
			       nc->npools_v6 > 1 ? ", ..." : "");
	json_object_put(res);
	return err;
}

int cmd_gc(const struct netconf *nc, struct cni_error *e)
{
	struct json_object *args, *valid, *res = NULL;
	size_t n;
	int err;

	/* Without the list every attachment would look stale. */
	if (!nc->valid_attachments)
		return cni_fail(e, CNI_ERR_INVALID_CONFIG, "invalid network configuration",
				"GC needs cni.dev/valid-attachments (an empty list releases every "
				"attachment of network %s)", nc->name);
	args = json_object_new_object();
	valid = json_object_new_array();
	n = json_object_array_length(nc->valid_attachments);

	for (size_t i = 0; i < n; i++) {
		struct json_object *a = json_object_array_get_idx(nc->valid_attachments, i), *v;

		v = json_object_new_object();
		json_object_object_add(v, "containerID", json_object_new_string(jstr(a, "containerID")));
		json_object_object_add(v, "ifName", json_object_new_string(jstr(a, "ifname")));
		json_object_array_add(valid, v);
	}
	json_object_object_add(args, "network", json_object_new_string(nc->name));
	json_object_object_add(args, "valid", valid);
	err = agent_call(nc, "ipam.gc", args, &res, e);
	json_object_put(args);
	json_object_put(res);
	return err;
}

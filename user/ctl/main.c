// SPDX-License-Identifier: Apache-2.0
/* railnetctl: the operator's view of a node's railnet agent. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ctl_client.h"
#include "common/protocol.h"

struct ctl_opts {
	const char *socket;
	bool json;
};

struct command {
	const char *name;
	const char *args;
	const char *help;
	int (*fn)(const struct ctl_opts *o, int argc, char **argv);
};

/* Calls @op; prints the agent's or the transport's error. */
static int call(const struct ctl_opts *o, const char *op, struct json_object *args,
		struct json_object **result)
{
	struct ctl_error err;
	int ret = ctl_call(o->socket, op, args, 5000, result, &err);

	if (ret == -CTL_E_AGENT)
		fprintf(stderr, "railnetctl: %s: %s (%s)\n", op, err.message, err.code);
	else if (ret == -ENOENT || ret == -ECONNREFUSED)
		fprintf(stderr, "railnetctl: no agent listening on %s (is railnetd running?)\n",
			o->socket);
	else if (ret)
		fprintf(stderr, "railnetctl: %s: %s\n", op, strerror(-ret));
	return ret ? 1 : 0;
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v;

	/* a JSON null (a value not known yet) prints as "-" */
	return json_object_object_get_ex(o, key, &v) ? (v ? json_object_get_string(v) : "-") : "";
}

static void print_json(struct json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							   JSON_C_TO_STRING_NOSLASHESCAPE));
}

static void print_pools(struct json_object *pools)
{
	printf("%-20s %-22s %-16s %8s %8s %8s  %s\n", "POOL", "SUBNET", "GATEWAY", "TOTAL", "USED",
	       "FREE", "EXHAUSTED");
	for (size_t i = 0; i < json_object_array_length(pools); i++) {
		struct json_object *p = json_object_array_get_idx(pools, i);

		printf("%-20s %-22s %-16s %8s %8s %8s  %s\n", str(p, "name"), str(p, "subnet"),
		       str(p, "gateway"), str(p, "total"), str(p, "used"), str(p, "free"),
		       json_object_get_boolean(json_object_object_get(p, "exhausted")) ? "yes" : "no");
	}
}

/* What the agent keeps but the operator must act on. */
static void print_ipam_warnings(struct json_object *ipam)
{
	struct json_object *out = json_object_object_get(ipam, "outsideConfig"),
			   *store = json_object_object_get(ipam, "store");
	size_t n = out ? json_object_array_length(out) : 0;

	if (n) {
		printf("\nWARNING: %zu allocation(s) outside the configured pools (kept, never handed out "
		       "again; release them or restore their pools):\n", n);
		for (size_t i = 0; i < n; i++) {
			struct json_object *a = json_object_array_get_idx(out, i);

			printf("  %-18s %-26s %-14.12s %-6s %s\n", str(a, "pool"), str(a, "address"),
			       str(a, "containerID"), str(a, "ifName"), str(a, "reason"));
		}
	}
	if (store && json_object_get_int64(json_object_object_get(store, "damagedRegions")))
		printf("\nWARNING: the store was damaged in %s place(s) (%s bytes skipped) at start; "
		       "the damaged log is kept as ipam.log.corrupt\n",
		       str(store, "damagedRegions"), str(store, "damagedBytes"));
}

static int cmd_status(const struct ctl_opts *o, int argc, char **argv)
{
	struct json_object *r;

	if (call(o, "status", NULL, &r))
		return 1;
	if (o->json) {
		print_json(r);
	} else {
		printf("node:     %s\nversion:  %s\nuptime:   %ss\nstore:    %s\n\n", str(r, "nodeName"),
		       str(r, "version"), str(r, "uptimeSeconds"), str(r, "store"));
		print_pools(json_object_object_get(r, "pools"));
		print_ipam_warnings(json_object_object_get(r, "ipam"));
	}
	json_object_put(r);
	return 0;
}

static int cmd_pools(const struct ctl_opts *o, int argc, char **argv)
{
	struct json_object *r;

	if (call(o, "ipam.pools", NULL, &r))
		return 1;
	if (o->json)
		print_json(json_object_object_get(r, "pools"));
	else
		print_pools(json_object_object_get(r, "pools"));
	json_object_put(r);
	return 0;
}

static int cmd_allocations(const struct ctl_opts *o, int argc, char **argv)
{
	static const struct option opts[] = { { "pool", required_argument, NULL, 'p' }, { 0 } };
	struct json_object *args = json_object_new_object(), *r, *allocs;
	int opt, ret;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "p:", opts, NULL)) != -1) {
		if (opt != 'p') {
			json_object_put(args);
			return 2;
		}
		json_object_object_add(args, "pool", json_object_new_string(optarg));
	}
	ret = call(o, "ipam.allocations", args, &r);
	json_object_put(args);
	if (ret)
		return 1;
	allocs = json_object_object_get(r, "allocations");
	if (o->json) {
		print_json(allocs);
	} else {
		printf("%-18s %-26s %-16s %-14s %-6s %s\n", "POOL", "ADDRESS", "NETWORK", "CONTAINER",
		       "IF", "POD");
		for (size_t i = 0; i < json_object_array_length(allocs); i++) {
			struct json_object *a = json_object_array_get_idx(allocs, i);

			printf("%-18s %-26s %-16s %-14.12s %-6s %s/%s\n", str(a, "pool"),
			       str(a, "address"), str(a, "network"), str(a, "containerID"),
			       str(a, "ifName"), str(a, "podNamespace"), str(a, "podName"));
		}
	}
	json_object_put(r);
	return 0;
}

static int cmd_release(const struct ctl_opts *o, int argc, char **argv)
{
	static const struct option opts[] = { { "network", required_argument, NULL, 'n' }, { 0 } };
	struct json_object *args, *r, *allocs, *released;
	const char *network = NULL;
	int opt, ret = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		if (opt != 'n')
			return 2;
		network = optarg;
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: railnetctl release <container-id> <ifname> [--network N]\n");
		return 2;
	}
	/* Without --network, release the container's NIC in every network. */
	if (call(o, "ipam.allocations", NULL, &r))
		return 1;
	allocs = json_object_object_get(r, "allocations");
	released = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(allocs) && !ret; i++) {
		struct json_object *a = json_object_array_get_idx(allocs, i), *rr;

		if (strcmp(str(a, "containerID"), argv[optind]) ||
		    strcmp(str(a, "ifName"), argv[optind + 1]) ||
		    (network && strcmp(str(a, "network"), network)))
			continue;
		args = json_object_new_object();
		json_object_object_add(args, "network", json_object_new_string(str(a, "network")));
		json_object_object_add(args, "containerID", json_object_new_string(argv[optind]));
		json_object_object_add(args, "ifName", json_object_new_string(argv[optind + 1]));
		ret = call(o, "ipam.release", args, &rr);
		json_object_put(args);
		if (!ret) {
			struct json_object *list = json_object_object_get(rr, "released");

			for (size_t j = 0; j < json_object_array_length(list); j++)
				json_object_array_add(released,
						      json_object_get(json_object_array_get_idx(list, j)));
			json_object_put(rr);
		}
	}
	if (!ret) {
		if (o->json)
			print_json(released);
		else if (!json_object_array_length(released))
			printf("nothing held by %s %s\n", argv[optind], argv[optind + 1]);
		else
			for (size_t j = 0; j < json_object_array_length(released); j++)
				printf("released %s\n",
				       json_object_get_string(json_object_array_get_idx(released, j)));
	}
	json_object_put(released);
	json_object_put(r);
	return ret ? 1 : 0;
}

static const char *ips_of(struct json_object *e, char *buf, size_t len)
{
	struct json_object *ips = json_object_object_get(e, "ips");
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; ips && i < json_object_array_length(ips); i++)
		n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s", i ? "," : "",
				      str(json_object_array_get_idx(ips, i), "address"));
	return buf;
}

static int cmd_datapath(const struct ctl_opts *o, int argc, char **argv)
{
	struct json_object *r, *entries;
	char ips[128];

	if (call(o, "datapath.list", NULL, &r))
		return 1;
	entries = json_object_object_get(r, "entries");
	if (o->json) {
		print_json(entries);
		json_object_put(r);
		return 0;
	}
	printf("hooks: %s\n", str(r, "hooks"));
	printf("%-4s %-28s %-6s %-34s %10s %10s %10s %10s %9s %6s\n", "ID", "POD", "NIC", "ADDRESSES",
	       "RX PKTS", "TX PKTS", "RX BYTES", "TX BYTES", "REDIRECTS", "DROPS");
	for (size_t i = 0; i < json_object_array_length(entries); i++) {
		struct json_object *e = json_object_array_get_idx(entries, i);
		struct json_object *c = json_object_object_get(e, "counters");
		char pod[160];

		snprintf(pod, sizeof(pod), "%s/%s", str(e, "podNamespace"), str(e, "podName"));
		printf("%-4s %-28s %-6s %-34s %10s %10s %10s %10s %9s %6llu\n", str(e, "id"), pod,
		       str(e, "ifName"), ips_of(e, ips, sizeof(ips)), str(c, "rxPackets"),
		       str(c, "txPackets"), str(c, "rxBytes"), str(c, "txBytes"), str(c, "redirects"),
		       (unsigned long long)(json_object_get_uint64(json_object_object_get(c, "dropsRedirect")) +
					    json_object_get_uint64(json_object_object_get(c, "dropsNicGone"))));
	}
	json_object_put(r);
	return 0;
}

static int cmd_gateways(const struct ctl_opts *o, int argc, char **argv)
{
	struct json_object *r, *entries, *all = json_object_new_array();

	if (call(o, "datapath.list", NULL, &r)) {
		json_object_put(all);
		return 1;
	}
	entries = json_object_object_get(r, "entries");
	if (!o->json)
		printf("%-28s %-6s %-5s %-22s %-8s %-18s %12s %9s\n", "POD", "NIC", "FAM", "GATEWAY",
		       "STATE", "MAC", "LAST SEEN", "RTT");
	for (size_t i = 0; i < json_object_array_length(entries); i++) {
		struct json_object *e = json_object_array_get_idx(entries, i);
		struct json_object *gws = json_object_object_get(e, "gateways");
		char pod[160], seen[32], rtt[32];

		snprintf(pod, sizeof(pod), "%s/%s", str(e, "podNamespace"), str(e, "podName"));
		for (size_t g = 0; g < json_object_array_length(gws); g++) {
			struct json_object *gw = json_object_array_get_idx(gws, g), *v;

			if (o->json) {
				struct json_object *row = json_object_get(gw);

				json_object_object_add(row, "pod", json_object_new_string(pod));
				json_object_object_add(row, "ifName", json_object_new_string(str(e, "ifName")));
				json_object_array_add(all, row);
				continue;
			}
			snprintf(seen, sizeof(seen), "%s", json_object_object_get_ex(gw, "lastSeenMsAgo", &v) ?
				 json_object_get_string(v) : "never");
			if (strcmp(seen, "never"))
				strncat(seen, "ms ago", sizeof(seen) - strlen(seen) - 1);
			snprintf(rtt, sizeof(rtt), "%s", json_object_object_get_ex(gw, "rttUs", &v) ?
				 json_object_get_string(v) : "-");
			if (strcmp(rtt, "-"))
				strncat(rtt, "us", sizeof(rtt) - strlen(rtt) - 1);
			printf("%-28s %-6s %-5s %-22s %-8s %-18s %12s %9s\n", pod, str(e, "ifName"),
			       str(gw, "family"), str(gw, "address"), str(gw, "state"),
			       json_object_object_get_ex(gw, "mac", &v) ? json_object_get_string(v) : "-",
			       seen, rtt);
		}
	}
	if (o->json)
		print_json(all);
	json_object_put(all);
	json_object_put(r);
	return 0;
}

/* Any op with JSON args: for scripts, tests and ops the CLI has no verb for. */
static int cmd_call(const struct ctl_opts *o, int argc, char **argv)
{
	struct json_object *args = NULL, *r;
	int ret;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: railnetctl call <op> ['{json args}']\n");
		return 2;
	}
	if (argc == 3) {
		args = json_tokener_parse(argv[2]);
		if (!args || !json_object_is_type(args, json_type_object)) {
			fprintf(stderr, "railnetctl: call: args must be a JSON object\n");
			json_object_put(args);
			return 2;
		}
	}
	ret = call(o, argv[1], args, &r);
	json_object_put(args);
	if (ret)
		return 1;
	print_json(r);
	json_object_put(r);
	return 0;
}

static int cmd_rdma(const struct ctl_opts *o, int argc, char **argv)
{
	struct json_object *r, *list;

	if (call(o, "rdma.status", NULL, &r))
		return 1;
	if (o->json) {
		print_json(r);
		json_object_put(r);
		return 0;
	}
	printf("RDMA netns mode: %s\n\n", str(r, "netnsMode"));
	printf("%-12s %-14s %-12s %-5s %-8s %-10s %s\n", "DEVICE", "PCI", "NETDEV", "PORT",
	       "STATE", "LINK", "CHAR DEVICES");
	list = json_object_object_get(r, "devices");
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *d = json_object_array_get_idx(list, i);
		struct json_object *ports = json_object_object_get(d, "ports");
		struct json_object *cdev = json_object_object_get(d, "charDevices");
		char devs[512] = "";

		for (size_t c = 0; c < json_object_array_length(cdev); c++) {
			const char *p = json_object_get_string(json_object_array_get_idx(cdev, c));
			const char *base = strrchr(p, '/');

			snprintf(devs + strlen(devs), sizeof(devs) - strlen(devs), "%s%s", c ? "," : "",
				 base ? base + 1 : p);
		}
		for (size_t p = 0; p < json_object_array_length(ports) || p == 0; p++) {
			struct json_object *po = json_object_array_get_idx(ports, p);

			printf("%-12s %-14s %-12s %-5s %-8s %-10s %s\n", p ? "" : str(d, "name"),
			       p ? "" : str(d, "pci"), p ? "" : str(d, "netdev"),
			       po ? str(po, "port") : "-", po ? str(po, "state") : "-",
			       po ? str(po, "linkLayer") : "-", p ? "" : devs);
		}
	}
	printf("\n%-32s %-8s %-10s %8s %9s %6s %8s  %s\n", "RESOURCE", "HEALTHY", "REGISTERED",
	       "CAPACITY", "ALLOCATED", "FREE", "KUBELET", "DEVICES");
	list = json_object_object_get(r, "resources");
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *x = json_object_array_get_idx(list, i);
		struct json_object *devs = json_object_object_get(x, "devices");
		char names[256] = "";

		for (size_t d = 0; d < json_object_array_length(devs); d++)
			snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
				 d ? "," : "", json_object_get_string(json_object_array_get_idx(devs, d)));
		printf("%-32s %-8s %-10s %8s %9s %6s %8s  %s\n", str(x, "name"),
		       json_object_get_boolean(json_object_object_get(x, "healthy")) ? "yes" : "no",
		       json_object_get_boolean(json_object_object_get(x, "registered")) ? "yes" : "no",
		       str(x, "capacity"), str(x, "allocated"), str(x, "free"),
		       str(x, "kubeletDevicesAllocated"), names[0] ? names : "-");
	}
	printf("\n%-14s %-6s %-16s %-12s %-10s %-5s %-9s %s\n", "CONTAINER", "IF", "NETWORK",
	       "MASTER", "DEVICE", "PORT", "GID INDEX", "RESOURCE");
	list = json_object_object_get(r, "attachments");
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *a = json_object_array_get_idx(list, i), *gid;

		gid = json_object_object_get(a, "gidIndex");
		printf("%-14.12s %-6s %-16s %-12s %-10s %-5s %-9s %s\n", str(a, "containerID"),
		       str(a, "ifName"), str(a, "network"), str(a, "master"), str(a, "device"),
		       str(a, "port"), gid ? json_object_get_string(gid) : "pending",
		       str(a, "resource"));
	}
	json_object_put(r);
	return 0;
}

static const struct command commands[] = {
	{ "status", "", "the agent's node, version, uptime and pools", cmd_status },
	{ "pools", "", "per pool: subnet, gateway, total, used, free, exhausted", cmd_pools },
	{ "allocations", "[--pool P]", "every address held, with its pod and NIC", cmd_allocations },
	{ "release", "<container> <ifname> [--network N]", "release what a pod NIC holds", cmd_release },
	{ "datapath", "", "pod rail NICs in the eBPF datapath, with counters", cmd_datapath },
	{ "gateways", "", "each pod NIC's gateway: state, MAC, last seen, probe RTT", cmd_gateways },
	{ "call", "<op> ['{json args}']", "send any op (docs/protocol.md), print its result", cmd_call },
	{ "rdma", "", "RDMA devices, resources, pod NICs with HCA and GID index", cmd_rdma },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: railnetctl [--socket PATH] [-o table|json] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-12s %-36s %s\n", commands[i].name, commands[i].args, commands[i].help);
	fprintf(out, "\n  --socket   the agent's socket (default %s, or $RAILNET_SOCKET)\n",
		CTL_DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
	struct ctl_opts o = { .socket = getenv("RAILNET_SOCKET") };
	int i = 1;

	if (!o.socket)
		o.socket = CTL_DEFAULT_SOCKET;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			o.socket = argv[++i];
		} else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "json") && strcmp(argv[i], "table")) {
				fprintf(stderr, "railnetctl: -o %s: not table or json\n", argv[i]);
				return 2;
			}
			o.json = !strcmp(argv[i], "json");
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "railnetctl: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
		if (!strcmp(commands[c].name, argv[i]))
			return commands[c].fn(&o, argc - i, argv + i);
	fprintf(stderr, "railnetctl: unknown command %s\n", argv[i]);
	usage(stderr);
	return 2;
}

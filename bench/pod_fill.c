// SPDX-License-Identifier: Apache-2.0
/* pod_fill: fills a lab node with pods the way a container runtime and the
 * railnet CNI plugin do, for benchmarks that need a node at scale (1,000
 * pods x 8 rail NICs).  For every NIC of every pod it execs the real plugin's
 * ADD (IPAM allocation, macvlan inside the pod, addresses, routes, gateway
 * check), then sends the agent the plugin's datapath.attach with the
 * addresses the ADD returned.  Run it inside the node's netns; the pod netns
 * must exist (NETNS_DIR/<prefix><pod>).  Several threads run pods at once, as
 * a kubelet starts several pods at once.
 *
 *   pod_fill --plugin PATH --socket S --conf-dir D --rails R --pods N
 *            [--first F] [--threads T] [--netns-prefix X] [--namespace NS]
 *
 * D/rail-<r>.json is NIC r's network config; its ippools.ipv4[0] names the
 * pool recorded with the attach.  Pods F..F+N-1 are filled; pod p is
 * "<NS>/pretrain-7f9c8d-worker-<p>" in netns <X><p>.  Prints one line:
 * "nics=N seconds=S nics_per_s=R"; exits 1 at the first failure.
 *
 *   pod_fill --container-id P
 *       prints pod P's container ID (for datapath.get and the like)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/ctl_client.h"

#define NETNS_DIR "/var/run/netns"
#define TIMEOUT_MS 30000
#define MAX_RAILS 16

struct opts {
	const char *plugin, *socket, *conf_dir, *prefix, *namespace;
	int rails, pods, first, threads;
};

struct rail_conf {
	char *text;
	char pool[64];
};

static struct opts o = { .prefix = "bp", .namespace = "ml-training", .threads = 4, .first = 1 };
static struct rail_conf rails[MAX_RAILS + 1];
static atomic_int next_pod;
static atomic_int failed;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A container ID as a runtime makes it: 64 hex digits, from the pod number. */
static void container_id(int pod, char out[65])
{
	uint64_t x = (uint64_t)pod * 0x9e3779b97f4a7c15ULL;

	for (int i = 0; i < 4; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ULL);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		snprintf(out + 16 * i, 17, "%016llx", (unsigned long long)(z ^ (z >> 31)));
	}
}

/* Execs the plugin with @envp, @conf on its stdin; its stdout in *out. */
static int run_plugin(char *const envp[], const char *conf, char **out)
{
	posix_spawn_file_actions_t fa;
	int in[2], res[2], status, err;
	size_t len = 0, cap = 8192;
	char *buf = malloc(cap), *argv[] = { (char *)o.plugin, NULL };
	pid_t pid;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	if (pipe2(in, O_CLOEXEC)) {
		free(buf);
		return -errno;
	}
	if (pipe2(res, O_CLOEXEC)) {
		err = -errno;
		close(in[0]);
		close(in[1]);
		free(buf);
		return err;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, res[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	err = -posix_spawn(&pid, o.plugin, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(res[1]);
	if (!err && write(in[1], conf, strlen(conf)) != (ssize_t)strlen(conf))
		err = -EPIPE;
	close(in[1]);
	while ((n = read(res[0], buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (len + 1 == cap) {
			char *grown = realloc(buf, cap * 2);

			if (!grown)
				break;
			buf = grown;
			cap *= 2;
		}
	}
	buf[len] = '\0';
	close(res[0]);
	if (!err && waitpid(pid, &status, 0) == pid && (!WIFEXITED(status) || WEXITSTATUS(status)))
		err = -EIO;
	*out = buf;
	return err;
}

/* The plugin's ADD for NIC @rail of @pod, then the datapath.attach. */
static int add_nic(int pod, int rail)
{
	char cid[65], name[96], netns[256], ifname[16], network[32];
	char e_cmd[32], e_cid[96], e_netns[300], e_if[32], e_path[4200], e_args[512];
	char *envp[] = { e_cmd, e_cid, e_netns, e_if, e_path, e_args, NULL };
	struct json_object *res = NULL, *ips, *args = NULL, *out = NULL, *arr, *ip;
	struct ctl_error cerr = { 0 };
	char *text = NULL, *slash;
	int err;

	container_id(pod, cid);
	snprintf(name, sizeof(name), "pretrain-7f9c8d-worker-%04d", pod);
	snprintf(netns, sizeof(netns), "%s/%s%d", NETNS_DIR, o.prefix, pod);
	snprintf(ifname, sizeof(ifname), "net%d", rail);
	snprintf(network, sizeof(network), "gpu%d-macvlan", rail);
	snprintf(e_cmd, sizeof(e_cmd), "CNI_COMMAND=ADD");
	snprintf(e_cid, sizeof(e_cid), "CNI_CONTAINERID=%s", cid);
	snprintf(e_netns, sizeof(e_netns), "CNI_NETNS=%s", netns);
	snprintf(e_if, sizeof(e_if), "CNI_IFNAME=%s", ifname);
	snprintf(e_path, sizeof(e_path), "CNI_PATH=%s", o.plugin);
	if ((slash = strrchr(e_path, '/')))
		*slash = '\0';
	snprintf(e_args, sizeof(e_args),
		 "CNI_ARGS=IgnoreUnknown=true;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;"
		 "K8S_POD_INFRA_CONTAINER_ID=%s",
		 o.namespace, name, cid);

	err = run_plugin(envp, rails[rail].text, &text);
	if (err) {
		fprintf(stderr, "pod %d %s: ADD failed: %s\n", pod, ifname, text ? text : "");
		goto out;
	}
	res = json_tokener_parse(text);
	if (!res || !json_object_object_get_ex(res, "ips", &ips) ||
	    !json_object_array_length(ips)) {
		fprintf(stderr, "pod %d %s: ADD result has no ips: %s\n", pod, ifname, text);
		err = -EINVAL;
		goto out;
	}
	args = json_object_new_object();
	json_object_object_add(args, "network", json_object_new_string(network));
	json_object_object_add(args, "containerID", json_object_new_string(cid));
	json_object_object_add(args, "ifName", json_object_new_string(ifname));
	json_object_object_add(args, "netns", json_object_new_string(netns));
	json_object_object_add(args, "podNamespace", json_object_new_string(o.namespace));
	json_object_object_add(args, "podName", json_object_new_string(name));
	arr = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(ips); i++) {
		struct json_object *src = json_object_array_get_idx(ips, i), *v;

		ip = json_object_new_object();
		if (json_object_object_get_ex(src, "address", &v))
			json_object_object_add(ip, "address", json_object_get(v));
		if (json_object_object_get_ex(src, "gateway", &v))
			json_object_object_add(ip, "gateway", json_object_get(v));
		json_object_object_add(ip, "pool", json_object_new_string(rails[rail].pool));
		json_object_array_add(arr, ip);
	}
	json_object_object_add(args, "ips", arr);
	err = ctl_call(o.socket, "datapath.attach", args, TIMEOUT_MS, &out, &cerr);
	if (err)
		fprintf(stderr, "pod %d %s: datapath.attach: %s %s\n", pod, ifname, cerr.code,
			cerr.message);
out:
	json_object_put(out);
	json_object_put(args);
	json_object_put(res);
	free(text);
	return err;
}

static void *worker(void *arg)
{
	int pod;

	while (!atomic_load(&failed) && (pod = atomic_fetch_add(&next_pod, 1)) < o.first + o.pods)
		for (int r = 1; r <= o.rails; r++)
			if (add_nic(pod, r)) {
				atomic_store(&failed, 1);
				break;
			}
	return NULL;
}

static int load_confs(void)
{
	for (int r = 1; r <= o.rails; r++) {
		struct json_object *conf, *v, *pools;
		char path[4096];

		snprintf(path, sizeof(path), "%s/rail-%d.json", o.conf_dir, r);
		conf = json_object_from_file(path);
		if (!conf || !json_object_object_get_ex(conf, "ippools", &pools) ||
		    !json_object_object_get_ex(pools, "ipv4", &v) || !json_object_array_length(v)) {
			fprintf(stderr, "%s: not a railnet config with ippools.ipv4\n", path);
			json_object_put(conf);
			return -EINVAL;
		}
		snprintf(rails[r].pool, sizeof(rails[r].pool), "%s",
			 json_object_get_string(json_object_array_get_idx(v, 0)));
		rails[r].text = strdup(json_object_to_json_string_ext(conf, JSON_C_TO_STRING_PLAIN));
		json_object_put(conf);
		if (!rails[r].text)
			return -ENOMEM;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "plugin", required_argument, NULL, 'P' },
		{ "socket", required_argument, NULL, 's' },
		{ "conf-dir", required_argument, NULL, 'c' },
		{ "rails", required_argument, NULL, 'r' },
		{ "pods", required_argument, NULL, 'n' },
		{ "first", required_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 't' },
		{ "netns-prefix", required_argument, NULL, 'x' },
		{ "namespace", required_argument, NULL, 'N' },
		{ "container-id", required_argument, NULL, 'C' },
		{ 0 },
	};
	pthread_t tid[64];
	double start;
	int c, nt;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'P': o.plugin = optarg; break;
		case 's': o.socket = optarg; break;
		case 'c': o.conf_dir = optarg; break;
		case 'r': o.rails = atoi(optarg); break;
		case 'n': o.pods = atoi(optarg); break;
		case 'f': o.first = atoi(optarg); break;
		case 't': o.threads = atoi(optarg); break;
		case 'x': o.prefix = optarg; break;
		case 'N': o.namespace = optarg; break;
		case 'C': {
			char cid[65];

			container_id(atoi(optarg), cid);
			printf("%s\n", cid);
			return 0;
		}
		default: return 2;
		}
	}
	if (!o.plugin || !o.socket || !o.conf_dir || o.rails < 1 || o.rails > MAX_RAILS ||
	    o.pods < 1 || o.threads < 1 || o.threads > 64) {
		fprintf(stderr, "usage: %s --plugin PATH --socket S --conf-dir D --rails R --pods N "
				"[--first F] [--threads T] [--netns-prefix X] [--namespace NS]\n",
			argv[0]);
		return 2;
	}
	if (load_confs())
		return 2;
	atomic_store(&next_pod, o.first);
	nt = o.threads < o.pods ? o.threads : o.pods;
	start = now_s();
	for (int i = 0; i < nt; i++)
		pthread_create(&tid[i], NULL, worker, NULL);
	for (int i = 0; i < nt; i++)
		pthread_join(tid[i], NULL);
	if (atomic_load(&failed))
		return 1;
	printf("nics=%d seconds=%.3f nics_per_s=%.0f\n", o.pods * o.rails, now_s() - start,
	       o.pods * o.rails / (now_s() - start));
	return 0;
}

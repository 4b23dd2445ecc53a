// SPDX-License-Identifier: Apache-2.0
/* ipam_load: drives railnetd's IPAM over its control socket the way the CNI
 * plugin does (one connection per request), from several threads at once.
 *
 *   ipam_load run --socket S --pool P [--network N] [--threads T] [--ops N]
 *                 [--release-ratio R] [--prefix X] [--journal FILE]
 *       allocates and releases; prints throughput and latency percentiles.
 *       With --journal, every acknowledged operation is appended to FILE
 *       ("A cid addr", "R cid"; "?R cid" before a release is sent) so that a
 *       crash test can check the agent's state after a kill -9.  Stops at the
 *       first transport error (exit 3) or agent error (exit 1).
 *       With --reference PLUGIN --data-dir D instead of --socket, the same
 *       load goes to a CNI IPAM plugin (host-local), exec'd per operation as
 *       a runtime does: the baseline railnetd is measured against.
 *       With --op get, every request is an ipam.get of a key nobody holds
 *       (answered not_found, no fsync): the cost of the socket, the threads
 *       and the parsing alone, under the same load.
 *   ipam_load verify --socket S --network N --journal FILE
 *       checks the agent against the journal: every acknowledged allocation
 *       present with its address, nothing acknowledged as released present,
 *       no address held twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#include "common/ctl_client.h"

#define TIMEOUT_MS 5000

struct opts {
	const char *socket, *pool, *network, *prefix, *journal;
	const char *reference, *data_dir; /* a CNI IPAM plugin instead of railnetd */
	int threads;
	long ops;
	double release_ratio;
	bool get_only; /* --op get */
};

struct worker {
	const struct opts *o;
	int id;
	int journal_fd;
	atomic_long *budget;
	double *lat_us; /* one per op done */
	long nlat, cap;
	int status;     /* 0, 1 agent error, 3 transport error */
	char **live;    /* cids this worker holds */
	long nlive;
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void journal(struct worker *w, const char *tag, const char *cid, const char *addr)
{
	char line[256];
	int n;

	if (w->journal_fd < 0)
		return;
	n = snprintf(line, sizeof(line), "%s %s%s%s\n", tag, cid, addr ? " " : "", addr ? addr : "");
	/* One write per line on an O_APPEND fd: lines never interleave. */
	if (write(w->journal_fd, line, (size_t)n) != n)
		w->status = 1;
}

static struct json_object *key_args(const struct opts *o, const char *cid)
{
	struct json_object *args = json_object_new_object();

	json_object_object_add(args, "network", json_object_new_string(o->network));
	json_object_object_add(args, "containerID", json_object_new_string(cid));
	json_object_object_add(args, "ifName", json_object_new_string("net1"));
	return args;
}

/* Runs the reference IPAM plugin for @op on the key in @args; its stdout
 * (a CNI result for ADD) becomes *result. */
static int exec_reference(const struct opts *o, const char *op, struct json_object *args,
			  struct json_object **result)
{
	char conf[512], env_cmd[32], env_cid[160], *out = NULL, buf[4096];
	char *envp[] = { env_cmd, env_cid, "CNI_NETNS=/proc/self/ns/net", "CNI_IFNAME=net1",
			 "CNI_PATH=/usr/lib/cni", NULL };
	char *argv[] = { (char *)o->reference, NULL };
	int in[2], outp[2], status;
	posix_spawn_file_actions_t fa;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	snprintf(conf, sizeof(conf),
		 "{\"cniVersion\":\"1.0.0\",\"name\":\"%s\",\"ipam\":{\"type\":\"host-local\","
		 "\"dataDir\":\"%s\",\"ranges\":[[{\"subnet\":\"%s\"}]]}}",
		 o->network, o->data_dir, o->pool);
	snprintf(env_cmd, sizeof(env_cmd), "CNI_COMMAND=%s", strcmp(op, "ipam.allocate") ? "DEL" : "ADD");
	snprintf(env_cid, sizeof(env_cid), "CNI_CONTAINERID=%s",
		 json_object_get_string(json_object_object_get(args, "containerID")));
	if (pipe2(in, O_CLOEXEC) || pipe2(outp, O_CLOEXEC))
		return 3;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	if (posix_spawn(&pid, o->reference, &fa, NULL, argv, envp)) {
		posix_spawn_file_actions_destroy(&fa);
		return 3;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(outp[1]);
	if (write(in[1], conf, strlen(conf)) < 0)
		status = -1;
	close(in[1]);
	while ((n = read(outp[0], buf, sizeof(buf))) > 0) {
		out = realloc(out, len + (size_t)n + 1);
		memcpy(out + len, buf, (size_t)n);
		len += (size_t)n;
	}
	close(outp[0]);
	waitpid(pid, &status, 0);
	if (out) {
		out[len] = '\0';
		*result = json_tokener_parse(out);
		free(out);
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/* One request; records its latency.  0, 1 (agent error) or 3 (transport). */
static int request(struct worker *w, const char *op, struct json_object *args,
		   struct json_object **result)
{
	struct ctl_error err = { "", "the plugin failed" };
	double t0 = now_us();
	int ret = w->o->reference ? (exec_reference(w->o, op, args, result) ? -CTL_E_AGENT : 0)
				  : ctl_call(w->o->socket, op, args, TIMEOUT_MS, result, &err);

	if (w->nlat == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 1024;
		w->lat_us = realloc(w->lat_us, sizeof(double) * (size_t)w->cap);
	}
	w->lat_us[w->nlat++] = now_us() - t0;
	if (ret == -CTL_E_AGENT) {
		fprintf(stderr, "ipam_load: %s: %s (%s)\n", op, err.message, err.code);
		return 1;
	}
	/* Which transport error tells a test whether a request was cut off
	 * (ECONNRESET) or never got in (ENOENT, ECONNREFUSED). */
	if (ret && !w->o->reference)
		fprintf(stderr, "ipam_load: %s: transport: %s\n", op, strerror(-ret));
	return ret ? 3 : 0;
}

static int do_allocate(struct worker *w, const char *cid)
{
	struct json_object *args = key_args(w->o, cid), *pools = json_object_new_object(),
			   *v4 = json_object_new_array(), *result = NULL, *ip;
	char addr[64];
	int ret;

	json_object_array_add(v4, json_object_new_string(w->o->pool));
	json_object_object_add(pools, "ipv4", v4);
	json_object_object_add(args, "pools", pools);
	json_object_object_add(args, "netns", json_object_new_string("/proc/1/ns/net"));
	ret = request(w, "ipam.allocate", args, &result);
	json_object_put(args);
	if (ret)
		return ret;
	ip = json_object_array_get_idx(json_object_object_get(result, "ips"), 0);
	snprintf(addr, sizeof(addr), "%s", json_object_get_string(json_object_object_get(ip, "address")));
	*strchrnul(addr, '/') = '\0';
	json_object_put(result);
	journal(w, "A", cid, addr);
	w->live = realloc(w->live, sizeof(char *) * (size_t)(w->nlive + 1));
	w->live[w->nlive++] = strdup(cid);
	return 0;
}

static int do_release(struct worker *w, long idx)
{
	char *cid = w->live[idx];
	struct json_object *args = key_args(w->o, cid), *result = NULL;
	int ret;

	journal(w, "?R", cid, NULL);
	ret = request(w, "ipam.release", args, &result);
	json_object_put(args);
	json_object_put(result);
	if (ret)
		return ret;
	journal(w, "R", cid, NULL);
	w->live[idx] = w->live[--w->nlive];
	free(cid);
	return 0;
}

/* An ipam.get that finds nothing: only not_found is a success. */
static int do_get_missing(struct worker *w, long i)
{
	struct ctl_error err = { "", "" };
	struct json_object *args, *result = NULL;
	char cid[128];
	double t0;
	int ret;

	snprintf(cid, sizeof(cid), "%s-missing-t%d-%ld", w->o->prefix, w->id, i);
	args = key_args(w->o, cid);
	t0 = now_us();
	ret = ctl_call(w->o->socket, "ipam.get", args, TIMEOUT_MS, &result, &err);
	json_object_put(args);
	json_object_put(result);
	if (w->nlat == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 1024;
		w->lat_us = realloc(w->lat_us, sizeof(double) * (size_t)w->cap);
	}
	w->lat_us[w->nlat++] = now_us() - t0;
	if (ret == -CTL_E_AGENT && !strcmp(err.code, "not_found"))
		return 0;
	fprintf(stderr, "ipam_load: ipam.get: %s\n", ret == -CTL_E_AGENT ? err.message :
			ret ? strerror(-ret) : "found a key nobody holds");
	return ret && ret != -CTL_E_AGENT ? 3 : 1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned int seed = (unsigned int)(w->id * 7919 + getpid());
	char cid[128];

	for (long i = 0; !w->status && atomic_fetch_sub(w->budget, 1) > 0; i++) {
		if (w->o->get_only)
			w->status = do_get_missing(w, i);
		else if (w->nlive && (double)rand_r(&seed) / RAND_MAX < w->o->release_ratio) {
			w->status = do_release(w, rand_r(&seed) % w->nlive);
		} else {
			snprintf(cid, sizeof(cid), "%s-t%d-%ld", w->o->prefix, w->id, i);
			w->status = do_allocate(w, cid);
		}
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int run(const struct opts *o)
{
	struct worker *w = calloc((size_t)o->threads, sizeof(*w));
	pthread_t *tid = calloc((size_t)o->threads, sizeof(*tid));
	atomic_long budget = o->ops;
	double t0, secs, *all;
	long n = 0, done = 0;
	int fd = -1, status = 0;

	if (o->journal) {
		fd = open(o->journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0) {
			perror(o->journal);
			return 2;
		}
	}
	t0 = now_us();
	for (int i = 0; i < o->threads; i++) {
		w[i] = (struct worker){ .o = o, .id = i, .journal_fd = fd, .budget = &budget };
		pthread_create(&tid[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < o->threads; i++) {
		pthread_join(tid[i], NULL);
		n += w[i].nlat;
		if (w[i].status > status)
			status = w[i].status;
	}
	secs = (now_us() - t0) / 1e6;
	all = malloc(sizeof(double) * (size_t)(n ? n : 1));
	for (int i = 0; i < o->threads; i++) {
		memcpy(all + done, w[i].lat_us, sizeof(double) * (size_t)w[i].nlat);
		done += w[i].nlat;
		free(w[i].lat_us);
		for (long j = 0; j < w[i].nlive; j++)
			free(w[i].live[j]);
		free(w[i].live);
	}
	qsort(all, (size_t)n, sizeof(double), cmp_double);
	printf("threads=%d ops=%ld seconds=%.3f ops_per_s=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f status=%d\n",
	       o->threads, n, secs, n / (secs > 0 ? secs : 1), n ? all[n / 2] : 0,
	       n ? all[(n * 99) / 100] : 0, n ? all[n - 1] : 0, status);
	free(all);
	free(w);
	free(tid);
	if (fd >= 0)
		close(fd);
	return status;
}

/* --- verify --------------------------------------------------------------- */

struct entry {
	char cid[128];
	char addr[64];
	char state; /* 'A' held, 'R' released, '?' release in flight */
};

static struct entry *find_entry(struct entry *e, long n, const char *cid)
{
	for (long i = n - 1; i >= 0; i--)
		if (!strcmp(e[i].cid, cid))
			return &e[i];
	return NULL;
}

static int verify(const struct opts *o)
{
	FILE *f = fopen(o->journal, "r");
	struct entry *e = NULL;
	long n = 0, cap = 0, held = 0, released = 0, inflight = 0, unacked = 0;
	struct json_object *args = json_object_new_object(), *result, *allocs;
	struct ctl_error err;
	char tag[4], cid[128], addr[64], line[512];
	int bad = 0, ret;

	if (!f) {
		perror(o->journal);
		return 2;
	}
	while (fgets(line, sizeof(line), f)) {
		struct entry *x;

		addr[0] = '\0';
		if (sscanf(line, "%3s %127s %63s", tag, cid, addr) < 2)
			continue;
		x = find_entry(e, n, cid);
		if (!x) {
			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				e = realloc(e, sizeof(*e) * (size_t)cap);
			}
			x = &e[n++];
			snprintf(x->cid, sizeof(x->cid), "%s", cid);
		}
		x->state = tag[0];
		if (tag[0] == 'A')
			snprintf(x->addr, sizeof(x->addr), "%s", addr);
	}
	fclose(f);

	ret = ctl_call(o->socket, "ipam.allocations", args, TIMEOUT_MS, &result, &err);
	json_object_put(args);
	if (ret) {
		fprintf(stderr, "ipam_load: ipam.allocations: %s\n",
			ret == -CTL_E_AGENT ? err.message : strerror(-ret));
		return 2;
	}
	allocs = json_object_object_get(result, "allocations");
	for (size_t i = 0; i < json_object_array_length(allocs); i++) {
		struct json_object *a = json_object_array_get_idx(allocs, i);
		const char *acid = json_object_get_string(json_object_object_get(a, "containerID"));
		const char *aaddr = json_object_get_string(json_object_object_get(a, "address"));
		const char *anet = json_object_get_string(json_object_object_get(a, "network"));
		struct entry *x;

		for (size_t j = 0; j < i; j++) {
			struct json_object *b = json_object_array_get_idx(allocs, j);

			if (!strcmp(aaddr, json_object_get_string(json_object_object_get(b, "address")))) {
				printf("DUPLICATE %s held twice\n", aaddr);
				bad++;
			}
		}
		if (strcmp(anet, o->network))
			continue;
		x = find_entry(e, n, acid);
		if (!x) {
			unacked++; /* allocated, the agent died before it answered */
			continue;
		}
		if (x->state == 'R') {
			printf("RESURRECTED %s %s: its release was acknowledged\n", acid, aaddr);
			bad++;
		}
		x->state = x->state == 'A' ? 'a' : x->state; /* seen */
		if (x->state == 'a' && strcmp(x->addr, aaddr)) {
			printf("MOVED %s: acknowledged %s, agent holds %s\n", acid, x->addr, aaddr);
			bad++;
		}
	}
	for (long i = 0; i < n; i++) {
		if (e[i].state == 'A') {
			printf("LOST %s %s: acknowledged, not held\n", e[i].cid, e[i].addr);
			bad++;
		}
		held += e[i].state == 'a';
		released += e[i].state == 'R';
		inflight += e[i].state == '?';
	}
	printf("journal=%ld held=%ld released=%ld release_in_flight=%ld unacknowledged_held=%ld violations=%d\n",
	       n, held, released, inflight, unacked, bad);
	json_object_put(result);
	free(e);
	return bad ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: ipam_load run --socket S --pool P [--network N] [--threads T] [--ops N]\n"
		"                     [--release-ratio R] [--prefix X] [--journal FILE] [--op get]\n"
		"       ipam_load run --reference /usr/lib/cni/host-local --data-dir D --pool SUBNET ...\n"
		"       ipam_load verify --socket S --network N --journal FILE\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "pool", required_argument, NULL, 'p' },
		{ "network", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "ops", required_argument, NULL, 'o' },
		{ "release-ratio", required_argument, NULL, 'r' },
		{ "prefix", required_argument, NULL, 'x' },
		{ "journal", required_argument, NULL, 'j' },
		{ "reference", required_argument, NULL, 'R' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "op", required_argument, NULL, 'O' },
		{ 0 },
	};
	struct opts o = { .network = "bench", .prefix = "c", .threads = 1, .ops = 1000,
			  .release_ratio = 0.5 };
	const char *mode;
	int opt;

	if (argc < 2) {
		usage();
		return 2;
	}
	mode = argv[1];
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': o.socket = optarg; break;
		case 'p': o.pool = optarg; break;
		case 'n': o.network = optarg; break;
		case 't': o.threads = atoi(optarg); break;
		case 'o': o.ops = atol(optarg); break;
		case 'r': o.release_ratio = atof(optarg); break;
		case 'x': o.prefix = optarg; break;
		case 'j': o.journal = optarg; break;
		case 'R': o.reference = optarg; break;
		case 'd': o.data_dir = optarg; break;
		case 'O':
			if (strcmp(optarg, "get")) {
				usage();
				return 2;
			}
			o.get_only = true;
			break;
		default: usage(); return 2;
		}
	}
	if ((!o.socket && !(o.reference && o.data_dir)) || o.threads < 1) {
		usage();
		return 2;
	}
	if (!strcmp(mode, "run") && o.pool)
		return run(&o);
	if (!strcmp(mode, "verify") && o.journal)
		return verify(&o);
	usage();
	return 2;
}

// SPDX-License-Identifier: Apache-2.0
/* The agent's datapath module (datapath.h). */
#include "agent/datapath.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/printbuf.h>
#include <linux/magic.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/dp_loader.h"
#include "agent/dp_probe.h"
#include "agent/metrics.h"
#include "common/log.h"
#include "common/mac.h"
#include "common/sysctl.h"
#include "common/protocol.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

#define NSEC_PER_MSEC 1000000ULL

/* A pod rail NIC's names as a request or a record gives them. */
struct dp_text {
	char network[128];
	char container_id[128];
	char netns_path[256];
	char pod_namespace[128];
	char pod_name[128];
	char pool[RN_FAM_MAX][64];
};

/* A pod rail NIC.  Its names point into @strings, sized to them: a node
 * holds thousands of entries, and room for the longest names in each came
 * to most of the agent's memory. */
struct dp_entry {
	__u32 id;
	const char *network, *container_id, *netns_path, *pod_namespace, *pod_name;
	const char *pool[RN_FAM_MAX];
	char *strings;
	char ifname[IFNAMSIZ];
	char master[IFNAMSIZ]; /* its macvlan's lower device, in the agent's netns */
	int master_ifindex;    /* resolved at attach and restore; 0: not found */
	int eth0_ifindex; /* 0: the pod has no eth0 */
	/* How its hooks are made.  A pod keeps the kind it started with, so a
	 * change of datapath.hooks never re-hooks a running pod: making a
	 * clsact qdisc on a device that is up drops what it sends meanwhile. */
	enum dp_attach_mode mode;
	__u64 attached_ns; /* CLOCK_MONOTONIC */
	unsigned long long probes[RN_FAM_MAX]; /* active gateway probes sent */
	struct rn_nic nic;
};

/* A NIC hooked ahead of its attach (datapath.prepare): its programs are on
 * the device while IPAM makes its addresses durable, and its attach has only
 * the maps left to fill.  Not an entry - nothing is published or recorded;
 * the attach takes its hooks over, a detach of its key removes them. */
struct dp_prehook {
	bool used;
	bool eth0; /* the pod's eth0 egress was hooked with it */
	enum dp_attach_mode mode;
	__u64 netns;
	int ifindex, eth0_ifindex;
	__u64 at_ns; /* the oldest gives way when all are in use */
	char ifname[IFNAMSIZ];
	char network[128], container_id[128], netns_path[256];
};

/* ADDs in flight at once, each between its prepare and its attach. */
#define DP_PREHOOKS 16

struct datapath {
	struct datapath_config cfg;
	char *bpffs;
	char *records_dir;
	int records_fd; /* records_dir/records: RECORD_SLOT bytes per NIC id */
	int probe_fd;   /* dp_probe.h */
	int bpffs_fd; /* flock()ed while the pin dir changes */
	struct datapath_bpf *skel;
	struct dp_maps maps;
	enum dp_attach_mode mode; /* for new pods */

	pthread_mutex_t lock; /* entries and the maps' content */
	struct dp_entry *entries[RN_MAX_NICS];
	size_t nentries;
	struct dp_prehook prehooks[DP_PREHOOKS];

	pthread_t prober;
	bool prober_running, stopping;
	pthread_cond_t wake;
};

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ULL + (__u64)ts.tv_nsec;
}

/* Gives @e its names from @t, in one allocation. */
static int entry_name(struct dp_entry *e, const struct dp_text *t)
{
	const char *src[] = { t->network, t->container_id, t->netns_path, t->pod_namespace,
			      t->pod_name, t->pool[RN_FAM_V4], t->pool[RN_FAM_V6] };
	const char **dst[] = { &e->network, &e->container_id, &e->netns_path, &e->pod_namespace,
			       &e->pod_name, &e->pool[RN_FAM_V4], &e->pool[RN_FAM_V6] };
	size_t len = 0, at = 0;
	char *buf;

	for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++)
		len += strlen(src[i]) + 1;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++) {
		size_t n = strlen(src[i]) + 1;

		memcpy(buf + at, src[i], n);
		*dst[i] = buf + at;
		at += n;
	}
	free(e->strings);
	e->strings = buf;
	return 0;
}

static void entry_free(struct dp_entry *e)
{
	if (e)
		free(e->strings);
	free(e);
}

/* --- configuration ------------------------------------------------------ */

static int section(struct json_object *root, const char *name, struct json_object **out,
		   char *errbuf, size_t errlen)
{
	*out = NULL;
	if (!root || !json_object_object_get_ex(root, name, out))
		return 0;
	if (!json_object_is_type(*out, json_type_object)) {
		snprintf(errbuf, errlen, "%s: must be an object", name);
		return -EINVAL;
	}
	return 0;
}

static int get_bool(struct json_object *obj, const char *key, const char *path, bool *out,
		    char *errbuf, size_t errlen)
{
	struct json_object *v;

	if (!obj || !json_object_object_get_ex(obj, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean)) {
		snprintf(errbuf, errlen, "%s: must be true or false", path);
		return -EINVAL;
	}
	*out = json_object_get_boolean(v);
	return 0;
}

static int get_hooks(struct json_object *obj, enum dp_hooks_pref *out, char *errbuf, size_t errlen)
{
	static const char *const names[] = { [DP_HOOKS_CLSACT] = "clsact", [DP_HOOKS_TCX] = "tcx",
					     [DP_HOOKS_AUTO] = "auto" };
	struct json_object *v;

	if (!obj || !json_object_object_get_ex(obj, "hooks", &v))
		return 0;
	for (size_t i = 0; json_object_is_type(v, json_type_string) && i < 3; i++)
		if (!strcmp(json_object_get_string(v), names[i])) {
			*out = (enum dp_hooks_pref)i;
			return 0;
		}
	snprintf(errbuf, errlen, "datapath.hooks: must be \"clsact\", \"tcx\" or \"auto\"");
	return -EINVAL;
}

static int get_int(struct json_object *obj, const char *key, const char *path, long long lo,
		   long long hi, long long *out, char *errbuf, size_t errlen)
{
	struct json_object *v;

	if (!obj || !json_object_object_get_ex(obj, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < lo ||
	    json_object_get_int64(v) > hi) {
		snprintf(errbuf, errlen, "%s: must be an integer in [%lld, %lld]", path, lo, hi);
		return -EINVAL;
	}
	*out = json_object_get_int64(v);
	return 0;
}

int datapath_config_parse(struct json_object *root, struct datapath_config *cfg, char *errbuf,
			  size_t errlen)
{
	struct json_object *dp, *gw;
	long long down_after = 3;
	int err;

	*cfg = (struct datapath_config){ .enabled = true, .fast_redirect = true,
					 .probe_interval_ms = 1000, .down_after = 3 };
	err = section(root, "datapath", &dp, errbuf, errlen);
	if (!err)
		err = section(root, "gateway", &gw, errbuf, errlen);
	if (!err)
		err = get_bool(dp, "enabled", "datapath.enabled", &cfg->enabled, errbuf, errlen);
	if (!err)
		err = get_bool(dp, "fastRedirect", "datapath.fastRedirect", &cfg->fast_redirect,
			       errbuf, errlen);
	if (!err)
		err = get_hooks(dp, &cfg->hooks, errbuf, errlen);
	if (!err)
		err = get_int(gw, "probeIntervalMs", "gateway.probeIntervalMs", 50, 3600000,
			      &cfg->probe_interval_ms, errbuf, errlen);
	/* Under 2 a gateway would flap between probes. */
	if (!err)
		err = get_int(gw, "downAfter", "gateway.downAfter", 2, 1000, &down_after, errbuf,
			      errlen);
	cfg->down_after = (int)down_after;
	return err;
}

/* --- running code inside a pod's network namespace ---------------------- */

/* Runs @fn with the calling thread in the netns at @path, and moves it
 * back: setns() moves only the calling thread, and is cheaper than a
 * thread of its own for the call. */
static int in_netns(const char *path, int (*fn)(void *arg), void *arg)
{
	int here = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), there, ret;

	if (here < 0)
		return -errno;
	there = open(path, O_RDONLY | O_CLOEXEC);
	if (there < 0) {
		ret = -errno;
		close(here);
		return ret;
	}
	if (setns(there, CLONE_NEWNET)) {
		ret = -errno;
	} else {
		ret = fn(arg);
		/* A thread left in a pod's netns would serve every later
		 * request there: not a state to go on in. */
		if (setns(here, CLONE_NEWNET)) {
			log_err("netns_return_failed", "netns=%s err=\"%s\"", path, strerror(errno));
			abort();
		}
	}
	close(there);
	close(here);
	return ret;
}

/* What the pod's netns tells about a rail NIC; set up the NIC's sysctls. */
struct pod_probe {
	const char *ifname;
	int want_ifindex;
	__u64 netns;
	int ifindex, eth0_ifindex;
	__u8 mac[6];
};

static int pod_probe_fn(void *arg)
{
	struct pod_probe *pp = arg;
	socklen_t len = sizeof(pp->netns);
	struct ifreq ifr = { 0 };
	char path[128];
	int fd, err = 0;

	/* One socket for all of it (if_nametoindex() makes one a call). */
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", pp->ifname);
	if (ioctl(fd, SIOCGIFINDEX, &ifr)) {
		err = -ENODEV;
		goto out;
	}
	pp->ifindex = ifr.ifr_ifindex;
	if (pp->want_ifindex && pp->want_ifindex != pp->ifindex) {
		err = -ESTALE;
		goto out;
	}
	if (ioctl(fd, SIOCGIFHWADDR, &ifr)) {
		err = -errno;
		goto out;
	}
	memcpy(pp->mac, ifr.ifr_hwaddr.sa_data, 6);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	pp->eth0_ifindex = ioctl(fd, SIOCGIFINDEX, &ifr) ? 0 : ifr.ifr_ifindex;
	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &pp->netns, &len))
		pp->netns = 0; /* kernel < 5.14: the programs use 0 as well */
out:
	close(fd);
	if (err)
		return err;
	/* Replies from other rails' subnets arrive on this NIC while the
	 * main table routes their sources by eth0: loose reverse-path check. */
	snprintf(path, sizeof(path), "net/ipv4/conf/%s/rp_filter", pp->ifname);
	return sysctl_write(path, "2");
}

struct hook_job {
	struct datapath *dp;
	const struct dp_entry *e;
	bool attach;
	bool eth0; /* the pod's eth0 egress too */
};

static void link_pin(const struct datapath *dp, __u64 netns, int ifindex, enum dp_hook hook,
		     char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s/%llx-%d-%s", dp->bpffs, RN_PIN_LINKS_DIR,
		 (unsigned long long)netns, ifindex, hook == DP_HOOK_INGRESS ? "in" : "out");
}

/* Where an entry's hooks are: its NIC's egress and ingress, and with @eth0
 * the pod's eth0 egress (when the pod has an eth0).  How many. */
struct hook_at {
	int ifindex;
	enum dp_hook hook;
};

static int entry_hooks(const struct dp_entry *e, bool eth0, struct hook_at at[3])
{
	int n = 0;

	at[n++] = (struct hook_at){ (int)e->nic.ifindex, DP_HOOK_EGRESS };
	at[n++] = (struct hook_at){ (int)e->nic.ifindex, DP_HOOK_INGRESS };
	if (eth0 && e->eth0_ifindex)
		at[n++] = (struct hook_at){ e->eth0_ifindex, DP_HOOK_EGRESS };
	return n;
}

static int hook_fn(void *arg)
{
	struct hook_job *job = arg;
	struct datapath *dp = job->dp;
	const struct dp_entry *e = job->e;
	struct hook_at hooks[3];
	int n = entry_hooks(e, job->eth0, hooks), err;
	struct nl_sock *tc;
	char pin[512];

	err = dp_tc_open(e->mode, &tc);
	if (err)
		return err;
	/* The devices' qdiscs before any filter: a clsact direction's first
	 * filter waits for an RCU grace period since its qdisc was made
	 * (expedited, an IPI to every CPU), and one such wait then covers
	 * every qdisc made before it. */
	for (int i = 0; job->attach && i < n; i++) {
		if (i && hooks[i].ifindex == hooks[i - 1].ifindex)
			continue;
		err = dp_hook_prepare(tc, e->mode, hooks[i].ifindex);
		if (err)
			goto out;
	}
	for (int i = 0; i < n; i++) {
		int ret;

		link_pin(dp, e->nic.netns, hooks[i].ifindex, hooks[i].hook, pin, sizeof(pin));
		struct bpf_program *prog = dp_prog(dp->skel, hooks[i].hook);

		if (!job->attach)
			ret = dp_hook_detach(tc, e->mode, hooks[i].ifindex, hooks[i].hook, pin);
		else
			ret = dp_hook_attach(tc, e->mode, bpf_program__fd(prog),
					     bpf_program__name(prog), hooks[i].ifindex,
					     hooks[i].hook, pin);
		if (ret && !err)
			err = ret;
		if (ret && job->attach)
			break;
	}
out:
	dp_tc_close(tc);
	return err;
}

/* Removes an entry's tcx links, whose pins need no netns. */
static void unpin_links(struct datapath *dp, const struct dp_entry *e, bool eth0)
{
	struct hook_at hooks[3];
	int n = entry_hooks(e, eth0, hooks);
	char pin[512];

	if (e->mode != DP_MODE_TCX)
		return;
	for (int i = 0; i < n; i++) {
		link_pin(dp, e->nic.netns, hooks[i].ifindex, hooks[i].hook, pin, sizeof(pin));
		unlink(pin);
	}
}

static int hooks_apply(struct datapath *dp, const struct dp_entry *e, bool attach, bool eth0)
{
	struct hook_job job = { dp, e, attach, eth0 };
	int err = in_netns(e->netns_path, hook_fn, &job);

	if (!attach && err == -ENOENT)
		unpin_links(dp, e, eth0); /* the pod is gone, its devices with it */
	return !attach && err == -ENOENT ? 0 : err;
}

/* --- records in stateDir ------------------------------------------------ */

static void hex(char *out, const __u8 *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static int unhex(const char *s, __u8 *b, size_t n)
{
	if (!s || strlen(s) != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned int v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		b[i] = (__u8)v;
	}
	return 0;
}

/* Each NIC's record is a JSON text in a fixed slot of one file, at its id:
 * an attach writes one slot (pwrite), where a file per NIC cost a create
 * and a rename (~0.2 ms on ext4) inside every CNI ADD.  Not fsynced: a
 * record outlives an agent crash in the page cache, and it describes a pod
 * netns, which power loss takes with it - there is nothing for it to
 * restore after a reboot.  A slot whose first byte is 0 is free. */
#define RECORD_SLOT 2048
#define RECORDS_FILE "records"

static int record_write(const struct datapath *dp, __u32 id, const char *text, size_t len)
{
	ssize_t n = pwrite(dp->records_fd, text, len, (off_t)id * RECORD_SLOT);

	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

static void record_clear(const struct datapath *dp, __u32 id)
{
	int err = record_write(dp, id, "", 1);

	if (err)
		log_warn("datapath_record_clear_failed", "id=%u err=\"%s\"", id, strerror(-err));
}

static const char *mode_name(enum dp_attach_mode mode)
{
	return mode == DP_MODE_TCX ? "tcx" : "clsact";
}

static int record_save(const struct datapath *dp, const struct dp_entry *e)
{
	struct json_object *o = json_object_new_object();
	char nic_hex[2 * sizeof(struct rn_nic) + 1];
	const char *text;
	size_t len;
	int err;

	hex(nic_hex, (const __u8 *)&e->nic, sizeof(e->nic));
	json_object_object_add(o, "layout", json_object_new_int(RN_LAYOUT_VERSION));
	json_object_object_add(o, "id", json_object_new_int64(e->id));
	json_object_object_add(o, "network", json_object_new_string(e->network));
	json_object_object_add(o, "containerID", json_object_new_string(e->container_id));
	json_object_object_add(o, "ifName", json_object_new_string(e->ifname));
	json_object_object_add(o, "netns", json_object_new_string(e->netns_path));
	json_object_object_add(o, "podNamespace", json_object_new_string(e->pod_namespace));
	json_object_object_add(o, "podName", json_object_new_string(e->pod_name));
	json_object_object_add(o, "master", json_object_new_string(e->master));
	json_object_object_add(o, "poolV4", json_object_new_string(e->pool[RN_FAM_V4]));
	json_object_object_add(o, "poolV6", json_object_new_string(e->pool[RN_FAM_V6]));
	json_object_object_add(o, "eth0Ifindex", json_object_new_int(e->eth0_ifindex));
	json_object_object_add(o, "hooks", json_object_new_string(mode_name(e->mode)));
	json_object_object_add(o, "attachedNs", json_object_new_int64((int64_t)e->attached_ns));
	json_object_object_add(o, "nic", json_object_new_string(nic_hex));
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	len = strlen(text) + 1; /* its NUL ends it in the slot */
	err = len <= RECORD_SLOT ? record_write(dp, e->id, text, len) : -EMSGSIZE;
	json_object_put(o);
	return err;
}

static void copy_str(char *dst, size_t len, struct json_object *o, const char *key)
{
	struct json_object *v;

	dst[0] = '\0';
	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		snprintf(dst, len, "%s", json_object_get_string(v));
}

static int record_load(struct json_object *o, struct dp_entry *e)
{
	struct json_object *v;
	struct dp_text t;
	int err = -EINVAL;

	if (!o)
		return -EINVAL;
	if (!json_object_object_get_ex(o, "id", &v))
		goto out;
	e->id = (__u32)json_object_get_int64(v);
	copy_str(t.network, sizeof(t.network), o, "network");
	copy_str(t.container_id, sizeof(t.container_id), o, "containerID");
	copy_str(e->ifname, sizeof(e->ifname), o, "ifName");
	copy_str(t.netns_path, sizeof(t.netns_path), o, "netns");
	copy_str(t.pod_namespace, sizeof(t.pod_namespace), o, "podNamespace");
	copy_str(t.pod_name, sizeof(t.pod_name), o, "podName");
	copy_str(e->master, sizeof(e->master), o, "master");
	copy_str(t.pool[RN_FAM_V4], sizeof(t.pool[0]), o, "poolV4");
	copy_str(t.pool[RN_FAM_V6], sizeof(t.pool[0]), o, "poolV6");
	if (json_object_object_get_ex(o, "eth0Ifindex", &v))
		e->eth0_ifindex = json_object_get_int(v);
	e->mode = json_object_object_get_ex(o, "hooks", &v) &&
			  !strcmp(json_object_get_string(v), mode_name(DP_MODE_CLSACT)) ?
			  DP_MODE_CLSACT :
			  DP_MODE_TCX; /* records before "hooks" were all tcx */
	if (json_object_object_get_ex(o, "attachedNs", &v))
		e->attached_ns = (__u64)json_object_get_int64(v);
	/* The nic blob is in this layout's format: an older one would need a
	 * converter here, keyed by "layout". */
	if (!json_object_object_get_ex(o, "layout", &v) ||
	    json_object_get_int(v) != RN_LAYOUT_VERSION ||
	    !json_object_object_get_ex(o, "nic", &v) ||
	    unhex(json_object_get_string(v), (__u8 *)&e->nic, sizeof(e->nic)))
		goto out;
	if (!e->id || e->id >= RN_MAX_NICS || !t.network[0] || !t.container_id[0] || !e->ifname[0])
		goto out;
	err = entry_name(e, &t);
out:
	return err;
}

/* --- entries ------------------------------------------------------------ */

static struct dp_entry *find_entry(struct datapath *dp, const char *network, const char *cid,
				   const char *ifname)
{
	for (__u32 id = 1; id < RN_MAX_NICS; id++) {
		struct dp_entry *e = dp->entries[id];

		if (e && !strcmp(e->network, network) && !strcmp(e->container_id, cid) &&
		    !strcmp(e->ifname, ifname))
			return e;
	}
	return NULL;
}

static __u32 free_id(const struct datapath *dp)
{
	for (__u32 id = 1; id < RN_MAX_NICS; id++)
		if (!dp->entries[id])
			return id;
	return 0;
}

/* Two NICs in one pod: the same netns cookie, or with none (kernels <
 * 5.14) the same netns path. */
static bool same_pod(__u64 netns_a, const char *path_a, __u64 netns_b, const char *path_b)
{
	return netns_a == netns_b && (netns_a || !strcmp(path_a, path_b));
}

/* Another entry of the same pod: it still needs the pod's eth0 hook. */
static const struct dp_entry *pod_other(const struct datapath *dp, const struct dp_entry *e)
{
	for (__u32 id = 1; id < RN_MAX_NICS; id++) {
		const struct dp_entry *o = dp->entries[id];

		if (o && o != e && same_pod(o->nic.netns, o->netns_path, e->nic.netns, e->netns_path))
			return o;
	}
	return NULL;
}

static bool pod_has_other(const struct datapath *dp, const struct dp_entry *e)
{
	return pod_other(dp, e) != NULL;
}

/* --- hooks ahead of the attach (datapath.prepare) ----------------------- */

static struct dp_prehook *prehook_find(struct datapath *dp, const char *network, const char *cid,
				       const char *ifname)
{
	for (int i = 0; i < DP_PREHOOKS; i++) {
		struct dp_prehook *p = &dp->prehooks[i];

		if (p->used && !strcmp(p->network, network) && !strcmp(p->container_id, cid) &&
		    !strcmp(p->ifname, ifname))
			return p;
	}
	return NULL;
}

/* A free slot, else the oldest (whose hooks its caller removes: its attach,
 * if it comes, makes them again). */
static struct dp_prehook *prehook_slot(struct datapath *dp)
{
	struct dp_prehook *oldest = &dp->prehooks[0];

	for (int i = 0; i < DP_PREHOOKS; i++) {
		if (!dp->prehooks[i].used)
			return &dp->prehooks[i];
		if (dp->prehooks[i].at_ns < oldest->at_ns)
			oldest = &dp->prehooks[i];
	}
	return oldest;
}

/* @p as the entry that hook_fn() and hooks_apply() take. */
static void prehook_as_entry(const struct dp_prehook *p, struct dp_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->netns_path = p->netns_path;
	snprintf(e->ifname, sizeof(e->ifname), "%s", p->ifname);
	e->mode = p->mode;
	e->nic.netns = p->netns;
	e->nic.ifindex = (__u32)p->ifindex;
	e->eth0_ifindex = p->eth0_ifindex;
}

/* Another prepared NIC of @e's pod: it still needs the pod's eth0 hook. */
static bool pod_has_prehook(const struct datapath *dp, const struct dp_entry *e,
			    const struct dp_prehook *except)
{
	for (int i = 0; i < DP_PREHOOKS; i++) {
		const struct dp_prehook *p = &dp->prehooks[i];

		if (p->used && p != except &&
		    same_pod(p->netns, p->netns_path, e->nic.netns, e->netns_path))
			return true;
	}
	return false;
}

/* Removes @p's hooks (eth0's unless another NIC of the pod needs it) and
 * forgets it. */
static void prehook_unhook(struct datapath *dp, struct dp_prehook *p)
{
	struct dp_entry as;
	int err;

	prehook_as_entry(p, &as);
	err = hooks_apply(dp, &as, false,
			  p->eth0 && !pod_has_other(dp, &as) && !pod_has_prehook(dp, &as, p));
	if (err)
		log_warn("datapath_unprepare_failed", "netns=%s ifname=%s err=\"%s\"",
			 p->netns_path, p->ifname, strerror(-err));
	p->used = false;
}

/* Is @p on the device that @e attaches? */
static bool prehook_matches(const struct dp_prehook *p, const struct dp_entry *e)
{
	return p->ifindex == (int)e->nic.ifindex &&
	       same_pod(p->netns, p->netns_path, e->nic.netns, e->netns_path);
}

/* Are @p's tcx links still pinned?  Another agent starting meanwhile (an
 * old one stopping, a new one starting) unpins what its entries do not own
 * (sweep_link_pins); clsact filters it leaves alone. */
static bool prehook_in_place(const struct datapath *dp, const struct dp_prehook *p)
{
	struct hook_at hooks[3];
	struct dp_entry as;
	char pin[512];
	int n;

	if (p->mode != DP_MODE_TCX)
		return true;
	prehook_as_entry(p, &as);
	n = entry_hooks(&as, p->eth0, hooks);
	for (int i = 0; i < n; i++) {
		link_pin(dp, p->netns, hooks[i].ifindex, hooks[i].hook, pin, sizeof(pin));
		if (access(pin, F_OK))
			return false;
	}
	return true;
}

/* --- open / close ------------------------------------------------------- */

static int mkdir_p(const char *path)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(buf, 0700) && errno != EEXIST ? -errno : 0;
}

/* Probes leave by the NIC's master: without one, only passive signs. */
static void warn_unprobed(const struct dp_entry *e)
{
	if (!e->master_ifindex)
		log_warn("datapath_entry_without_master", "pod=%s/%s ifname=%s master=%s state=\"%s\"",
			 e->pod_namespace, e->pod_name, e->ifname, e->master,
			 "its gateway is watched passively only (no probes)");
}

/* The entry of record @o, now the datapath's; NULL if @o is no record. */
static struct dp_entry *record_take(struct datapath *dp, struct json_object *o, const char *where)
{
	struct dp_entry *e = calloc(1, sizeof(*e));

	if (!e || !o || record_load(o, e) || dp->entries[e->id]) {
		log_warn("datapath_record_ignored", "record=%s", where);
		entry_free(e);
		return NULL;
	}
	e->master_ifindex = e->master[0] ? (int)if_nametoindex(e->master) : 0;
	warn_unprobed(e);
	dp->entries[e->id] = e;
	dp->nentries++;
	return e;
}

/* Agents before the slot file kept a file per NIC, <id>.json: taken into
 * the slots, then removed. */
static int migrate_record_files(struct datapath *dp)
{
	DIR *dir = opendir(dp->records_dir);
	struct dirent *de;
	char path[512];

	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		size_t len = strlen(de->d_name);
		struct json_object *o;
		struct dp_entry *e;

		if (len < 6 || strcmp(de->d_name + len - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dp->records_dir, de->d_name);
		o = json_object_from_file(path);
		e = record_take(dp, o, path);
		json_object_put(o);
		if (e && record_save(dp, e)) {
			log_warn("datapath_record_migration_failed", "path=%s", path);
			continue; /* kept: the next agent tries again */
		}
		unlink(path);
	}
	closedir(dir);
	return 0;
}

static int load_records(struct datapath *dp)
{
	char path[512], slot[RECORD_SLOT + 1];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", dp->records_dir, RECORDS_FILE);
	dp->records_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (dp->records_fd < 0)
		return -errno;
	for (__u32 id = 1; id < RN_MAX_NICS; id++) {
		struct json_object *o;

		n = pread(dp->records_fd, slot, RECORD_SLOT, (off_t)id * RECORD_SLOT);
		if (n <= 0)
			break; /* past the last slot written */
		if (!slot[0])
			continue;
		slot[n] = '\0';
		o = json_tokener_parse(slot);
		snprintf(path, sizeof(path), "slot %u", id);
		record_take(dp, o, path);
		json_object_put(o);
	}
	return migrate_record_files(dp);
}

/* Puts every recorded pod NIC back: map entries (@fresh: the maps are new)
 * and hooks switched to this agent's programs.  A pod whose netns is gone
 * is dropped.  All entries go into the maps before any hook switches: with
 * new maps, a pod's eth0 hook running this agent's program while one of its
 * NICs is not in them yet would let that NIC's replies leave by eth0. */
static void restore_entries(struct datapath *dp, bool fresh)
{
	size_t restored = 0, dropped = 0;

	for (int pass = 0; pass < 2; pass++)
	for (__u32 id = 1; id < RN_MAX_NICS; id++) {
		struct dp_entry *e = dp->entries[id];
		int err;

		if (!e)
			continue;
		if (pass == 0) {
			err = access(e->netns_path, F_OK) ? -errno : 0;
			if (!err)
				err = dp_nic_publish(&dp->maps, id, &e->nic, fresh);
		} else {
			err = hooks_apply(dp, e, true, e->eth0_ifindex != 0);
		}
		if (!err) {
			restored += pass == 1;
			continue;
		}
		log_warn("datapath_entry_dropped", "pod=%s/%s ifname=%s netns=%s err=\"%s\"",
			 e->pod_namespace, e->pod_name, e->ifname, e->netns_path, strerror(-err));
		dp_nic_unpublish(&dp->maps, id, &e->nic);
		unpin_links(dp, e, !pod_has_other(dp, e));
		record_clear(dp, id);
		dp->entries[id] = NULL;
		dp->nentries--;
		entry_free(e);
		dropped++;
	}
	if (restored || dropped)
		log_info("datapath_restored", "entries=%zu dropped=%zu maps=%s", restored, dropped,
			 fresh ? "new" : "reused");
}

/* A tcx link pin's name, as link_pin() writes it, for sorting. */
struct link_name {
	__u64 netns;
	struct hook_at at;
};

static int link_name_cmp(const void *a, const void *b)
{
	const struct link_name *x = a, *y = b;

	if (x->netns != y->netns)
		return x->netns < y->netns ? -1 : 1;
	if (x->at.ifindex != y->at.ifindex)
		return x->at.ifindex < y->at.ifindex ? -1 : 1;
	return (int)x->at.hook - (int)y->at.hook;
}

/* Unpins the tcx links no entry owns, which lets them go: those of a NIC
 * prepared (datapath.prepare) when the last agent stopped.  Its ADD failed
 * and rolled back, or its attach comes to this agent, which does not know
 * it prepared and hooks it again. */
static void sweep_link_pins(struct datapath *dp)
{
	struct link_name *owned = calloc((size_t)dp->nentries * 3 + 1, sizeof(*owned)), name;
	char dir[512], path[1024], hook[4];
	size_t n = 0, removed = 0;
	struct dirent *de;
	int end;
	DIR *d;

	if (!owned) {
		log_warn("datapath_link_sweep_skipped", "err=\"%s\"", strerror(ENOMEM));
		return;
	}
	for (__u32 id = 1; id < RN_MAX_NICS; id++) {
		const struct dp_entry *e = dp->entries[id];
		struct hook_at hooks[3];
		int k;

		if (!e || e->mode != DP_MODE_TCX)
			continue;
		k = entry_hooks(e, true, hooks);
		for (int i = 0; i < k; i++)
			owned[n++] = (struct link_name){ e->nic.netns, hooks[i] };
	}
	qsort(owned, n, sizeof(*owned), link_name_cmp);
	snprintf(dir, sizeof(dir), "%s/%s", dp->bpffs, RN_PIN_LINKS_DIR);
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		unsigned long long netns;

		end = 0;
		if (sscanf(de->d_name, "%llx-%d-%3[a-z]%n", &netns, &name.at.ifindex, hook, &end) != 3 ||
		    de->d_name[end] || (strcmp(hook, "in") && strcmp(hook, "out")))
			continue;
		name.netns = netns;
		name.at.hook = hook[0] == 'i' ? DP_HOOK_INGRESS : DP_HOOK_EGRESS;
		if (bsearch(&name, owned, n, sizeof(*owned), link_name_cmp))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!unlink(path))
			removed++;
	}
	if (d)
		closedir(d);
	free(owned);
	if (removed)
		log_info("datapath_link_pins_swept", "removed=%zu", removed);
}

static void *prober_main(void *arg);

int datapath_open(const char *bpffs, const char *state_dir, const struct datapath_config *cfg,
		  struct datapath **out)
{
	struct dp_knobs knobs = { .fast_redirect = cfg->fast_redirect };
	char path[512], **stale = NULL;
	struct datapath *dp;
	struct statfs sfs;
	bool reused;
	int err;

	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	dp->cfg = *cfg;
	dp->bpffs_fd = -1;
	dp->records_fd = -1;
	dp->probe_fd = -1;
	pthread_mutex_init(&dp->lock, NULL);
	{
		pthread_condattr_t attr;

		/* A step of the wall clock must not pause the prober. */
		pthread_condattr_init(&attr);
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		pthread_cond_init(&dp->wake, &attr);
		pthread_condattr_destroy(&attr);
	}
	dp->bpffs = strdup(bpffs);
	snprintf(path, sizeof(path), "%s/datapath", state_dir);
	dp->records_dir = strdup(path);
	if (!dp->bpffs || !dp->records_dir) {
		err = -ENOMEM;
		goto fail;
	}
	err = mkdir_p(bpffs);
	if (!err && (statfs(bpffs, &sfs) || sfs.f_type != BPF_FS_MAGIC))
		err = -ENOTDIR;
	if (err) {
		log_err("datapath_bpffs_invalid", "bpffs=%s err=\"%s\"", bpffs,
			err == -ENOTDIR ? "not a bpf filesystem" : strerror(-err));
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/%s", bpffs, RN_PIN_LINKS_DIR);
	err = mkdir_p(path);
	if (!err)
		err = mkdir_p(dp->records_dir);
	if (err)
		goto fail;
	dp->bpffs_fd = open(bpffs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dp->bpffs_fd < 0 || flock(dp->bpffs_fd, LOCK_EX)) {
		err = -errno;
		goto fail;
	}

	snprintf(path, sizeof(path), "%s/%s", bpffs, RN_PIN_NIC);
	reused = !access(path, F_OK);
	err = dp_load(bpffs, &knobs, &dp->skel);
	if (err)
		goto unlock;
	err = dp_maps_open(dp->skel, &dp->maps);
	if (!err)
		err = dp_pin_programs(dp->skel, bpffs);
	if (!err)
		err = dp_stale_pins(bpffs, &stale);
	if (!err)
		err = load_records(dp);
	if (err)
		goto unlock;
	dp->mode = cfg->hooks == DP_HOOKS_CLSACT ?
			   DP_MODE_CLSACT :
			   dp_attach_mode(bpf_program__fd(dp_prog(dp->skel, DP_HOOK_EGRESS)));
	if (cfg->hooks == DP_HOOKS_TCX && dp->mode != DP_MODE_TCX) {
		log_err("datapath_hooks_unsupported", "hooks=tcx err=\"%s\"",
			"this kernel has no tcx links (6.6 and later do): set datapath.hooks to "
			"clsact or auto");
		err = -EOPNOTSUPP;
		goto unlock;
	}
	restore_entries(dp, !reused);
	sweep_link_pins(dp);
	for (size_t i = 0; stale[i]; i++) {
		/* The records rebuilt the new maps and the hooks now run
		 * programs bound to them: the old layout is unused. */
		snprintf(path, sizeof(path), "%s/%s", bpffs, stale[i]);
		unlink(path);
		log_info("datapath_layout_migrated", "removed=%s layout=%d", stale[i],
			 RN_LAYOUT_VERSION);
	}
	dp_names_free(stale);
	flock(dp->bpffs_fd, LOCK_UN);

	dp->probe_fd = dp_probe_open();
	if (dp->probe_fd < 0) {
		err = dp->probe_fd;
		log_err("gateway_prober_failed", "err=\"packet socket: %s\"", strerror(-err));
		goto fail;
	}
	err = pthread_create(&dp->prober, NULL, prober_main, dp);
	if (err) {
		err = -err;
		goto fail;
	}
	dp->prober_running = true;
	log_info("datapath_ready", "bpffs=%s hooks=%s entries=%zu maps=%s fast_redirect=%d",
		 bpffs, mode_name(dp->mode), dp->nentries,
		 reused ? "reused" : "new", cfg->fast_redirect);
	*out = dp;
	return 0;
unlock:
	dp_names_free(stale);
	flock(dp->bpffs_fd, LOCK_UN);
fail:
	datapath_close(dp);
	return err;
}

void datapath_close(struct datapath *dp)
{
	if (!dp)
		return;
	if (dp->prober_running) {
		pthread_mutex_lock(&dp->lock);
		dp->stopping = true;
		pthread_cond_signal(&dp->wake);
		pthread_mutex_unlock(&dp->lock);
		pthread_join(dp->prober, NULL);
	}
	for (__u32 id = 1; id < RN_MAX_NICS; id++)
		entry_free(dp->entries[id]);
	dp_maps_close(&dp->maps);
	datapath_bpf__destroy(dp->skel);
	if (dp->bpffs_fd >= 0)
		close(dp->bpffs_fd);
	if (dp->records_fd >= 0)
		close(dp->records_fd);
	if (dp->probe_fd >= 0)
		close(dp->probe_fd);
	pthread_cond_destroy(&dp->wake);
	pthread_mutex_destroy(&dp->lock);
	free(dp->bpffs);
	free(dp->records_dir);
	free(dp);
}

/* --- gateways and the prober ---------------------------------------------- */

enum gw_state {
	GW_UNKNOWN,
	GW_UP,
	GW_DOWN,
};

static const char *const gw_state_names[] = { "unknown", "up", "down" };
static const char *const family_names[RN_FAM_MAX] = { "ipv4", "ipv6" };

static bool has_gateway(const struct rn_nic *nic, int family)
{
	return nic->flags & (family == RN_FAM_V6 ? RN_NIC_GW6 : RN_NIC_GW4);
}

/* Up: a sign within downAfter intervals.  Down: none for that long.
 * Unknown: never a sign, and attached more recently than that. */
static enum gw_state gw_state_of(const struct datapath *dp, const struct dp_entry *e,
				 const struct rn_gw *gw, __u64 now)
{
	__u64 window = (__u64)dp->cfg.down_after * (__u64)dp->cfg.probe_interval_ms *
		       NSEC_PER_MSEC;
	__u64 seen = gw->last_seen_ns;

	if (seen && now - seen <= window)
		return GW_UP;
	if (!seen && now - e->attached_ns <= window)
		return GW_UNKNOWN;
	return GW_DOWN;
}

struct probe_job {
	__u32 id;
	int family;
	int master;
	struct rn_nic nic;
	__u8 gw_mac[6];
	bool mac_valid;
};

#define PROBE_BATCH 256

/* Up to PROBE_BATCH gateways, from id *@next on, with no sign for an
 * interval and no probe pending; *@next moves past them.  Under lock. */
static size_t probe_jobs(struct datapath *dp, struct probe_job *jobs, __u32 *next, __u64 now)
{
	__u64 interval = (__u64)dp->cfg.probe_interval_ms * NSEC_PER_MSEC;
	size_t n = 0;
	__u32 id;

	for (id = *next; id < RN_MAX_NICS && n + RN_FAM_MAX <= PROBE_BATCH; id++) {
		struct dp_entry *e = dp->entries[id];
		int master = e ? e->master_ifindex : 0;

		for (int f = 0; master && f < RN_FAM_MAX; f++) {
			struct rn_gw *gw = &dp->maps.gw_mem[id * RN_FAM_MAX + f];

			if (!has_gateway(&e->nic, f) || now - gw->last_seen_ns < interval ||
			    (gw->probe_sent_ns && now - gw->probe_sent_ns < interval))
				continue;
			e->probes[f]++;
			/* Stamped here, under the lock: sent a moment later, but
			 * never onto a slot its NIC has left meanwhile. */
			gw->probe_sent_ns = now;
			jobs[n] = (struct probe_job){ .id = id, .family = f, .master = master,
						      .nic = e->nic, .mac_valid = gw->mac_valid };
			memcpy(jobs[n].gw_mac, gw->mac, 6);
			n++;
		}
	}
	*next = id;
	return n;
}

static void *prober_main(void *arg)
{
	struct datapath *dp = arg;
	struct probe_job jobs[PROBE_BATCH];

	pthread_mutex_lock(&dp->lock);
	while (!dp->stopping) {
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += (long)(dp->cfg.probe_interval_ms % 1000) * 1000000L;
		until.tv_sec += dp->cfg.probe_interval_ms / 1000 + until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&dp->wake, &dp->lock, &until);
		/* In batches: the lock is given back between them, and the jobs
		 * take a few KB whatever the number of NICs. */
		for (__u32 next = 1; !dp->stopping && next < RN_MAX_NICS;) {
			size_t n = probe_jobs(dp, jobs, &next, now_ns());

			pthread_mutex_unlock(&dp->lock);
			for (size_t i = 0; i < n; i++) {
				int err = dp_probe_send(dp->probe_fd, jobs[i].master, jobs[i].family,
						    &jobs[i].nic, jobs[i].mac_valid ? jobs[i].gw_mac : NULL);
				if (err)
					log_debug("gateway_probe_failed", "id=%u family=%s err=\"%s\"",
						  jobs[i].id, family_names[jobs[i].family],
						  strerror(-err));
			}
			pthread_mutex_lock(&dp->lock);
		}
	}
	pthread_mutex_unlock(&dp->lock);
	return NULL;
}

/* --- JSON views ------------------------------------------------------------ */

static void addr_str(int family, const __u8 *addr, char *buf, size_t len)
{
	inet_ntop(family == RN_FAM_V6 ? AF_INET6 : AF_INET, addr, buf, (socklen_t)len);
}

static struct json_object *gateways_json(const struct datapath *dp, const struct dp_entry *e,
					 __u64 now)
{
	struct json_object *arr = json_object_new_array();

	for (int f = 0; f < RN_FAM_MAX; f++) {
		const struct rn_gw *gw = &dp->maps.gw_mem[e->id * RN_FAM_MAX + f];
		struct json_object *o;
		char buf[INET6_ADDRSTRLEN];

		if (!has_gateway(&e->nic, f))
			continue;
		o = json_object_new_object();
		addr_str(f, f == RN_FAM_V6 ? e->nic.gw6 : e->nic.gw4, buf, sizeof(buf));
		json_object_object_add(o, "family", json_object_new_string(family_names[f]));
		json_object_object_add(o, "address", json_object_new_string(buf));
		json_object_object_add(o, "state",
				       json_object_new_string(gw_state_names[gw_state_of(dp, e, gw, now)]));
		if (gw->mac_valid) {
			mac_format(gw->mac, buf);
			json_object_object_add(o, "mac", json_object_new_string(buf));
		}
		if (gw->last_seen_ns)
			json_object_object_add(o, "lastSeenMsAgo",
					       json_object_new_int64((int64_t)((now - gw->last_seen_ns) /
									       NSEC_PER_MSEC)));
		if (gw->rtt_ns)
			json_object_object_add(o, "rttUs",
					       json_object_new_int64((int64_t)(gw->rtt_ns / 1000)));
		json_object_object_add(o, "probes", json_object_new_uint64(e->probes[f]));
		json_object_array_add(arr, o);
	}
	return arr;
}

static void entry_to_json(const struct datapath *dp, const struct dp_entry *e,
			  struct json_object *o)
{
	struct json_object *ips = json_object_new_array(), *c;
	struct rn_stats st;
	char buf[INET6_ADDRSTRLEN + 8];

	json_object_object_add(o, "id", json_object_new_int64(e->id));
	json_object_object_add(o, "network", json_object_new_string(e->network));
	json_object_object_add(o, "containerID", json_object_new_string(e->container_id));
	json_object_object_add(o, "ifName", json_object_new_string(e->ifname));
	json_object_object_add(o, "podNamespace", json_object_new_string(e->pod_namespace));
	json_object_object_add(o, "podName", json_object_new_string(e->pod_name));
	json_object_object_add(o, "netns", json_object_new_string(e->netns_path));
	json_object_object_add(o, "ifindex", json_object_new_int((int)e->nic.ifindex));
	mac_format(e->nic.mac, buf);
	json_object_object_add(o, "mac", json_object_new_string(buf));
	json_object_object_add(o, "hooks", json_object_new_string(mode_name(e->mode)));
	for (int f = 0; f < RN_FAM_MAX; f++) {
		struct json_object *ip;
		bool v6 = f == RN_FAM_V6;

		if (!(e->nic.flags & (v6 ? RN_NIC_V6 : RN_NIC_V4)))
			continue;
		ip = json_object_new_object();
		addr_str(f, v6 ? e->nic.addr6 : e->nic.addr4, buf, sizeof(buf));
		snprintf(buf + strlen(buf), 8, "/%u", v6 ? e->nic.plen6 : e->nic.plen4);
		json_object_object_add(ip, "address", json_object_new_string(buf));
		if (has_gateway(&e->nic, f)) {
			addr_str(f, v6 ? e->nic.gw6 : e->nic.gw4, buf, sizeof(buf));
			json_object_object_add(ip, "gateway", json_object_new_string(buf));
		}
		json_object_object_add(ip, "pool", json_object_new_string(e->pool[f]));
		json_object_array_add(ips, ip);
	}
	json_object_object_add(o, "ips", ips);
	if (!dp_stats_sum(&dp->maps, e->id, &st)) {
		c = json_object_new_object();
		json_object_object_add(c, "rxPackets", json_object_new_uint64(st.rx_packets));
		json_object_object_add(c, "rxBytes", json_object_new_uint64(st.rx_bytes));
		json_object_object_add(c, "txPackets", json_object_new_uint64(st.tx_packets));
		json_object_object_add(c, "txBytes", json_object_new_uint64(st.tx_bytes));
		json_object_object_add(c, "redirects", json_object_new_uint64(st.redirects));
		json_object_object_add(c, "redirectsFast", json_object_new_uint64(st.redirects_fast));
		json_object_object_add(c, "redirectErrors", json_object_new_uint64(st.redirect_errors));
		json_object_object_add(c, "dropsRedirect",
				       json_object_new_uint64(st.drops[RN_DROP_REDIRECT]));
		json_object_object_add(c, "dropsNicGone",
				       json_object_new_uint64(st.drops[RN_DROP_NIC_GONE]));
		json_object_object_add(o, "counters", c);
	}
	json_object_object_add(o, "gateways", gateways_json(dp, e, now_ns()));
}

/* --- control ops ------------------------------------------------------------ */

static int arg_string(struct json_object *args, const char *key, bool required, char *out,
		      size_t len, struct ctl_error *err)
{
	struct json_object *v;

	out[0] = '\0';
	if (!json_object_object_get_ex(args, key, &v) || json_object_is_type(v, json_type_null))
		return required ? ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL, "%s is required", key) :
				  0;
	if (!json_object_is_type(v, json_type_string))
		return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL, "%s must be a string", key);
	if ((size_t)json_object_get_string_len(v) >= len || (required && !json_object_get_string_len(v)))
		return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL, "%s must be 1 to %zu characters",
				key, len - 1);
	memcpy(out, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
	return 0;
}

/* Optional "ifindex" (of the NIC inside the pod) into *@out; 0 if absent. */
static int arg_ifindex(struct json_object *args, int *out, struct ctl_error *err)
{
	struct json_object *v;

	*out = 0;
	if (!json_object_object_get_ex(args, "ifindex", &v))
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int(v) <= 0)
		return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL, "ifindex must be a positive integer");
	*out = json_object_get_int(v);
	return 0;
}

/* (network, containerID, ifName): into @t and @ifname. */
static int parse_key(struct json_object *args, struct dp_text *t, char ifname[IFNAMSIZ],
		     struct ctl_error *err)
{
	int ret = arg_string(args, "network", true, t->network, sizeof(t->network), err);

	if (!ret)
		ret = arg_string(args, "containerID", true, t->container_id, sizeof(t->container_id),
				 err);
	if (!ret)
		ret = arg_string(args, "ifName", true, ifname, IFNAMSIZ, err);
	return ret;
}

/* ips: [{"address":"a/len","gateway":"g","pool":"p"}], one per family. */
static int parse_ips(struct json_object *args, struct dp_entry *e, struct dp_text *t,
		     struct ctl_error *err)
{
	struct json_object *ips;
	size_t n;

	if (!json_object_object_get_ex(args, "ips", &ips) ||
	    !json_object_is_type(ips, json_type_array) || !(n = json_object_array_length(ips)))
		return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
				"ips must be a non-empty array of {address, gateway, pool}");
	for (size_t i = 0; i < n; i++) {
		struct json_object *ip = json_object_array_get_idx(ips, i);
		char addr[INET6_ADDRSTRLEN + 8], gw[INET6_ADDRSTRLEN], *slash, *end;
		char pool[sizeof(t->pool[0])];
		__u8 bytes[16], gwb[16];
		int f, family;
		long plen;

		if (!json_object_is_type(ip, json_type_object) ||
		    arg_string(ip, "address", true, addr, sizeof(addr), err) ||
		    arg_string(ip, "gateway", false, gw, sizeof(gw), err) ||
		    arg_string(ip, "pool", false, pool, sizeof(pool), err))
			return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
					"ips[%zu]: must be {\"address\":\"a/len\",\"gateway\":..,\"pool\":..}", i);
		slash = strchr(addr, '/');
		if (!slash)
			return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
					"ips[%zu].address %s: needs a prefix length", i, addr);
		*slash = '\0';
		family = strchr(addr, ':') ? AF_INET6 : AF_INET;
		f = family == AF_INET6 ? RN_FAM_V6 : RN_FAM_V4;
		plen = strtol(slash + 1, &end, 10);
		if (inet_pton(family, addr, bytes) != 1 || *end || plen < 0 ||
		    plen > (f == RN_FAM_V6 ? 128 : 32))
			return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
					"ips[%zu].address %s/%s: not an address/prefix", i, addr,
					slash + 1);
		if (gw[0] && inet_pton(family, gw, gwb) != 1)
			return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
					"ips[%zu].gateway %s: not an IPv%d address", i, gw,
					f == RN_FAM_V6 ? 6 : 4);
		if (e->nic.flags & (f == RN_FAM_V6 ? RN_NIC_V6 : RN_NIC_V4))
			return ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL,
					"ips[%zu]: a NIC holds one address per family", i);
		memcpy(t->pool[f], pool, sizeof(pool));
		if (f == RN_FAM_V6) {
			e->nic.flags |= RN_NIC_V6 | (gw[0] ? RN_NIC_GW6 : 0);
			memcpy(e->nic.addr6, bytes, 16);
			memcpy(e->nic.gw6, gwb, gw[0] ? 16 : 0);
			e->nic.plen6 = (__u8)plen;
		} else {
			e->nic.flags |= RN_NIC_V4 | (gw[0] ? RN_NIC_GW4 : 0);
			memcpy(e->nic.addr4, bytes, 4);
			memcpy(e->nic.gw4, gwb, gw[0] ? 4 : 0);
			e->nic.plen4 = (__u8)plen;
		}
	}
	return 0;
}

static struct datapath *datapath_of(struct agent *agent, struct ctl_error *err, int *ret)
{
	if (!agent->datapath)
		*ret = ctl_fail(err, CTL_ERR_DISABLED, -EOPNOTSUPP,
				"the datapath is disabled on this node (datapath.enabled)");
	return agent->datapath;
}

/* Drops entry @e: maps first, then hooks (eth0's with the pod's last NIC),
 * then its record. */
static void entry_remove(struct datapath *dp, struct dp_entry *e)
{
	int err;

	dp_nic_unpublish(&dp->maps, e->id, &e->nic);
	err = hooks_apply(dp, e, false, !pod_has_other(dp, e) && !pod_has_prehook(dp, e, NULL));
	if (err)
		log_warn("datapath_detach_hooks_failed", "pod=%s/%s ifname=%s err=\"%s\"",
			 e->pod_namespace, e->pod_name, e->ifname, strerror(-err));
	record_clear(dp, e->id);
	dp->entries[e->id] = NULL;
	dp->nentries--;
}

struct attach_job {
	struct datapath *dp;
	struct dp_entry *req; /* the datapath's once attached: then NULL */
	struct pod_probe pp;
	struct json_object *result;
	struct ctl_error *err;
};

static int probe_failed(const struct dp_entry *req, int ret, struct ctl_error *err)
{
	return ctl_fail(err, ret == -ENOENT || ret == -ENODEV || ret == -ESTALE ?
			     CTL_ERR_BAD_REQUEST : CTL_ERR_INTERNAL, ret,
		       ret == -ENOENT ? "netns %s does not exist" :
		       ret == -ENODEV ? "netns %s has no interface %s" :
		       ret == -ESTALE ? "netns %s: %s's ifindex is not the one given" :
					"netns %s, %s: %s",
		       req->netns_path, req->ifname, strerror(-ret));
}

/* Hooks, from a thread already in the pod's netns. */
static int hooks_here(struct datapath *dp, const struct dp_entry *e, bool attach, bool eth0)
{
	struct hook_job job = { dp, e, attach, eth0 };

	return hook_fn(&job);
}

/* In the pod's netns, one visit: what the NIC is, then its maps and hooks
 * (a thread and a setns cost more than the rest of the attach). */
/* attach_entry()'s answer when only a visit to the pod's netns can do. */
#define ATTACH_IN_POD 1

/* The entry @job->req into the maps, with its hooks unless its prepare
 * made them.  @in_pod: called in the pod's netns, with what the netns told
 * (pod_probe_fn); otherwise the request's NIC is the one its prepare found,
 * and without that prepare the answer is ATTACH_IN_POD, with nothing
 * changed. */
static int attach_entry(struct attach_job *job, bool in_pod)
{
	struct datapath *dp = job->dp;
	struct dp_entry *req = job->req, *old;
	const struct dp_entry *sibling;
	struct dp_prehook *pre;
	bool prehooked = false; /* its hooks are in place already */
	int ret = 0;

	pthread_mutex_lock(&dp->lock);
	flock(dp->bpffs_fd, LOCK_EX);
	old = find_entry(dp, req->network, req->container_id, req->ifname);
	pre = prehook_find(dp, req->network, req->container_id, req->ifname);
	if (!in_pod) {
		if (old || !pre || pre->ifindex != job->pp.want_ifindex ||
		    strcmp(pre->netns_path, req->netns_path)) {
			ret = ATTACH_IN_POD;
			goto unlock;
		}
		req->nic.netns = pre->netns;
		req->nic.ifindex = (__u32)pre->ifindex;
		req->eth0_ifindex = pre->eth0_ifindex;
	}
	req->id = old ? old->id : free_id(dp);
	if (!req->id) { /* a prepare's hooks stay for the rollback's detach */
		ret = ctl_fail(job->err, CTL_ERR_INTERNAL, -ENOSPC, "all %d datapath slots are in use",
			       RN_MAX_NICS - 1);
		goto unlock;
	}
	sibling = old ? old : pod_other(dp, req);
	req->mode = sibling ? sibling->mode : dp->mode;
	if (pre) {
		/* A re-attach refreshes all its hooks, whatever was prepared. */
		if (!old && prehook_matches(pre, req) && prehook_in_place(dp, pre)) {
			prehooked = pre->eth0 || sibling;
			req->mode = pre->mode;
		}
		if (!in_pod && !prehooked) { /* its eth0 hook is missing: in the pod */
			ret = ATTACH_IN_POD;
			goto unlock;
		}
		pre->used = false;
	}
	if (old && (old->nic.netns != req->nic.netns || old->nic.ifindex != req->nic.ifindex ||
		    memcmp(old->nic.addr4, req->nic.addr4, 4) ||
		    memcmp(old->nic.addr6, req->nic.addr6, 16)))
		dp_nic_unpublish(&dp->maps, old->id, &old->nic); /* its keys change */
	if (old)
		req->attached_ns = old->attached_ns;
	ret = dp_nic_publish(&dp->maps, req->id, &req->nic, !old);
	/* The pod's eth0 hook came with its first NIC: a NIC of a pod that
	 * has one attached already needs only its own (a re-attach refreshes
	 * all). */
	if (!ret && !prehooked)
		ret = hooks_here(dp, req, true, old || !sibling);
	if (!ret)
		ret = record_save(dp, req);
	if (ret) {
		ctl_fail(job->err, CTL_ERR_INTERNAL, ret, "attaching %s in %s: %s", req->ifname,
			 req->netns_path, strerror(-ret));
		if (!old) {
			dp_nic_unpublish(&dp->maps, req->id, &req->nic);
			if (in_pod)
				hooks_here(dp, req, false, !pod_has_other(dp, req));
			else
				hooks_apply(dp, req, false, !pod_has_other(dp, req));
		}
		goto unlock;
	}
	if (!old)
		dp->nentries++;
	dp->entries[req->id] = req;
	entry_free(old);
	entry_to_json(dp, req, job->result);
	log_info("datapath_attached", "pod=%s/%s ifname=%s netns=%s id=%u ifindex=%u",
		 req->pod_namespace, req->pod_name, req->ifname, req->netns_path, req->id,
		 req->nic.ifindex);
	warn_unprobed(req);
	job->req = NULL;
unlock:
	flock(dp->bpffs_fd, LOCK_UN);
	pthread_mutex_unlock(&dp->lock);
	return ret;
}

static int attach_in_pod(void *arg)
{
	struct attach_job *job = arg;
	struct dp_entry *req = job->req;
	int ret = pod_probe_fn(&job->pp);

	if (ret)
		return probe_failed(req, ret, job->err);
	req->nic.netns = job->pp.netns;
	req->nic.ifindex = (__u32)job->pp.ifindex;
	memcpy(req->nic.mac, job->pp.mac, 6);
	req->eth0_ifindex = job->pp.eth0_ifindex;
	return attach_entry(job, true);
}

struct prepare_job {
	struct datapath *dp;
	struct dp_prehook pre;
	struct pod_probe pp;
	struct json_object *result;
	struct ctl_error *err;
};

/* In the pod's netns: the NIC's hooks (and eth0's with the pod's first),
 * unless the NIC is attached already - its attach refreshes them. */
static int prepare_in_pod(void *arg)
{
	struct prepare_job *job = arg;
	struct dp_prehook *pre = &job->pre, *slot;
	struct datapath *dp = job->dp;
	const struct dp_entry *sibling;
	bool hooked = false;
	struct dp_entry as;
	int ret = pod_probe_fn(&job->pp);

	pre->netns = job->pp.netns;
	pre->ifindex = job->pp.ifindex;
	pre->eth0_ifindex = job->pp.eth0_ifindex;
	prehook_as_entry(pre, &as);
	if (ret)
		return probe_failed(&as, ret, job->err);

	pthread_mutex_lock(&dp->lock);
	flock(dp->bpffs_fd, LOCK_EX);
	if (find_entry(dp, pre->network, pre->container_id, pre->ifname))
		goto unlock;
	sibling = pod_other(dp, &as);
	pre->mode = as.mode = sibling ? sibling->mode : dp->mode;
	pre->eth0 = !sibling;
	ret = hooks_here(dp, &as, true, pre->eth0);
	if (ret) {
		ctl_fail(job->err, CTL_ERR_INTERNAL, ret, "hooking %s in %s: %s", pre->ifname,
			 pre->netns_path, strerror(-ret));
		hooks_here(dp, &as, false, pre->eth0);
		goto unlock;
	}
	pre->used = true;
	pre->at_ns = now_ns();
	slot = prehook_find(dp, pre->network, pre->container_id, pre->ifname);
	if (!slot) {
		slot = prehook_slot(dp);
		if (slot->used) /* the oldest gives way, hooks and all */
			prehook_unhook(dp, slot);
	}
	*slot = *pre;
	hooked = true;
unlock:
	flock(dp->bpffs_fd, LOCK_UN);
	pthread_mutex_unlock(&dp->lock);
	json_object_object_add(job->result, "prepared", json_object_new_boolean(hooked));
	if (hooked)
		json_object_object_add(job->result, "hooks",
				       json_object_new_string(mode_name(pre->mode)));
	return ret;
}

int datapath_op_prepare(struct agent *agent, struct json_object *args, struct json_object *result,
			struct ctl_error *err)
{
	struct prepare_job job = { .result = result, .err = err };
	struct dp_prehook *pre = &job.pre;
	struct dp_text t;
	int ret = 0;

	job.dp = datapath_of(agent, err, &ret);
	if (!ret)
		ret = parse_key(args, &t, pre->ifname, err);
	if (!ret)
		ret = arg_string(args, "netns", true, pre->netns_path, sizeof(pre->netns_path), err);
	if (!ret)
		ret = arg_ifindex(args, &job.pp.want_ifindex, err);
	if (ret)
		return ret;
	snprintf(pre->network, sizeof(pre->network), "%s", t.network);
	snprintf(pre->container_id, sizeof(pre->container_id), "%s", t.container_id);
	job.pp.ifname = pre->ifname;
	ret = in_netns(pre->netns_path, prepare_in_pod, &job);
	if (ret && !err->code[0]) { /* the netns did not open */
		struct dp_entry as;

		prehook_as_entry(pre, &as);
		probe_failed(&as, ret, err);
	}
	return ret;
}

int datapath_op_attach(struct agent *agent, struct json_object *args, struct json_object *result,
		       struct ctl_error *err)
{
	struct attach_job job = { .req = calloc(1, sizeof(*job.req)), .result = result, .err = err };
	struct dp_entry *req = job.req;
	struct json_object *v;
	struct dp_text t;
	int ret = 0;

	if (!req)
		return -ENOMEM;
	job.dp = datapath_of(agent, err, &ret);
	if (!ret)
		ret = parse_key(args, &t, req->ifname, err);
	if (!ret)
		ret = arg_string(args, "netns", true, t.netns_path, sizeof(t.netns_path), err);
	if (!ret)
		ret = arg_string(args, "podNamespace", false, t.pod_namespace,
				 sizeof(t.pod_namespace), err);
	if (!ret)
		ret = arg_string(args, "podName", false, t.pod_name, sizeof(t.pod_name), err);
	if (!ret)
		ret = arg_string(args, "master", false, req->master, sizeof(req->master), err);
	if (!ret) {
		t.pool[RN_FAM_V4][0] = t.pool[RN_FAM_V6][0] = '\0';
		ret = parse_ips(args, req, &t, err);
	}
	if (!ret && (ret = entry_name(req, &t)))
		ctl_fail(err, CTL_ERR_INTERNAL, ret, "out of memory");
	if (!ret)
		ret = arg_ifindex(args, &job.pp.want_ifindex, err);
	if (!ret && json_object_object_get_ex(args, "mac", &v) &&
	    (!json_object_is_type(v, json_type_string) ||
	     mac_parse(json_object_get_string(v), req->nic.mac, 6)))
		ret = ctl_fail(err, CTL_ERR_BAD_REQUEST, -EINVAL, "mac must be aa:bb:cc:dd:ee:ff");
	if (!ret) {
		/* Here, in the agent's netns, where the master is. */
		req->master_ifindex = req->master[0] ? (int)if_nametoindex(req->master) : 0;
		req->nic.flags |= RN_NIC_ACTIVE;
		req->attached_ns = now_ns();
		job.pp.ifname = req->ifname;
		/* The NIC its prepare hooked, told by ifindex and MAC: nothing
		 * left to do in the pod's netns. */
		if (job.pp.want_ifindex && json_object_object_get_ex(args, "mac", NULL))
			ret = attach_entry(&job, false);
		else
			ret = ATTACH_IN_POD;
		if (ret == ATTACH_IN_POD)
			ret = in_netns(req->netns_path, attach_in_pod, &job);
		if (ret && !err->code[0]) /* the netns did not open */
			probe_failed(req, ret, err);
	}
	entry_free(job.req);
	return ret;
}

/* The (network, containerID, ifName) of a request. */
struct dp_key {
	struct dp_text t;
	char ifname[IFNAMSIZ];
};

/* The datapath and the key of a request. */
static int keyed_request(struct agent *agent, struct json_object *args, struct dp_key *key,
			 struct datapath **dp, struct ctl_error *err)
{
	int ret = 0;

	*dp = datapath_of(agent, err, &ret);
	return ret ? ret : parse_key(args, &key->t, key->ifname, err);
}

bool datapath_detach(struct datapath *dp, const char *network, const char *container_id,
		     const char *ifname)
{
	struct dp_prehook *pre;
	struct dp_entry *e;

	pthread_mutex_lock(&dp->lock);
	flock(dp->bpffs_fd, LOCK_EX);
	e = find_entry(dp, network, container_id, ifname);
	if (e) {
		entry_remove(dp, e);
		log_info("datapath_detached", "pod=%s/%s ifname=%s id=%u", e->pod_namespace,
			 e->pod_name, e->ifname, e->id);
		entry_free(e);
	}
	pre = prehook_find(dp, network, container_id, ifname);
	if (pre && !e) /* an ADD rolled back between its prepare and its attach */
		prehook_unhook(dp, pre);
	else if (pre)
		pre->used = false;
	flock(dp->bpffs_fd, LOCK_UN);
	pthread_mutex_unlock(&dp->lock);
	return e || pre;
}

int datapath_op_detach(struct agent *agent, struct json_object *args, struct json_object *result,
		       struct ctl_error *err)
{
	struct dp_key key;
	struct datapath *dp;
	int ret = keyed_request(agent, args, &key, &dp, err);

	if (ret)
		return ret;
	json_object_object_add(result, "detached",
			       json_object_new_boolean(datapath_detach(dp, key.t.network,
								       key.t.container_id, key.ifname)));
	return 0;
}

int datapath_op_get(struct agent *agent, struct json_object *args, struct json_object *result,
		    struct ctl_error *err)
{
	struct dp_entry *e;
	struct dp_key key;
	struct datapath *dp;
	int ret = keyed_request(agent, args, &key, &dp, err);

	if (ret)
		return ret;
	pthread_mutex_lock(&dp->lock);
	e = find_entry(dp, key.t.network, key.t.container_id, key.ifname);
	if (e)
		entry_to_json(dp, e, result);
	pthread_mutex_unlock(&dp->lock);
	if (!e)
		return ctl_fail(err, CTL_ERR_NOT_FOUND, -ENOENT,
				"no datapath entry for network %s, container %s, %s", key.t.network,
				key.t.container_id, key.ifname);
	return 0;
}

/* A JSON value already rendered (its text in @jso's printbuf userdata). */
static int rendered_json(struct json_object *jso, struct printbuf *pb, int level, int flags)
{
	struct printbuf *text = json_object_get_userdata(jso);

	(void)level;
	(void)flags;
	return printbuf_memappend(pb, text->buf, text->bpos);
}

static void rendered_free(struct json_object *jso, void *userdata)
{
	(void)jso;
	printbuf_free(userdata);
}

/* The entries are rendered one at a time as they are listed: the objects
 * of 8,000 entries at once took ~60 MiB of the agent's heap, their text
 * ~7 MiB. */
int datapath_op_list(struct agent *agent, struct json_object *args, struct json_object *result,
		     struct ctl_error *err)
{
	struct json_object *arr;
	struct printbuf *text;
	struct datapath *dp;
	bool first = true;
	int ret = 0;

	dp = datapath_of(agent, err, &ret);
	if (ret)
		return ret;
	text = printbuf_new();
	arr = json_object_new_array();
	if (!text || !arr) {
		printbuf_free(text);
		json_object_put(arr);
		return ctl_fail(err, CTL_ERR_INTERNAL, -ENOMEM, "out of memory");
	}
	printbuf_strappend(text, "[");
	pthread_mutex_lock(&dp->lock);
	for (__u32 id = 1; id < RN_MAX_NICS && !ret; id++) {
		struct json_object *o;
		const char *t;

		if (!dp->entries[id])
			continue;
		o = json_object_new_object();
		entry_to_json(dp, dp->entries[id], o);
		t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		if ((!first && printbuf_strappend(text, ",") < 0) ||
		    printbuf_memappend(text, t, (int)strlen(t)) < 0)
			ret = -ENOMEM;
		first = false;
		json_object_put(o);
	}
	pthread_mutex_unlock(&dp->lock);
	if (ret || printbuf_strappend(text, "]") < 0) {
		printbuf_free(text);
		json_object_put(arr);
		return ctl_fail(err, CTL_ERR_INTERNAL, -ENOMEM, "out of memory");
	}
	json_object_set_serializer(arr, rendered_json, text, rendered_free);
	json_object_object_add(result, "hooks",
			       json_object_new_string(mode_name(dp->mode)));
	json_object_object_add(result, "entries", arr);
	return 0;
}

/* --- Prometheus ------------------------------------------------------------- */

/* A scrape of 1,000 pods x 8 NICs writes ~80k samples.  It takes a snapshot
 * of the NICs a chunk of SCRAPE_CHUNK ids at a time under dp->lock (so that
 * attach and detach wait at most for one chunk): counters summed over the
 * CPUs with one batch lookup per chunk, gateway state, and the label sets
 * escaped once; and writes the chunk's samples of the first family at once,
 * so the response flows while the snapshot is taken.  The other families
 * follow from the snapshot, SCRAPE_STEP NICs a step, without the lock.  The
 * snapshot (~180 bytes a NIC) is mmapped and unmapped with the scrape, so it
 * is not left behind in the heap. */
#define SCRAPE_CHUNK 256
#define SCRAPE_STEP 512
#define SCRAPE_PREFETCH 8
/* The per-CPU values one batch lookup may return: bounds the chunk on
 * machines with many CPUs. */
#define SCRAPE_PERCPU_BUDGET (256 * 1024)

/* The counters exposed per pod NIC: rn_stats less redirect_errors, which is
 * drops[RN_DROP_REDIRECT] by construction (every refused redirect is
 * dropped), exposed once as drops{reason="redirect_refused"}. */
enum {
	SC_RX_PACKETS,
	SC_RX_BYTES,
	SC_TX_PACKETS,
	SC_TX_BYTES,
	SC_REDIRECTS,
	SC_REDIRECTS_FAST,
	SC_DROPS,
	SC_MAX = SC_DROPS + RN_DROP_MAX,
};

static const struct {
	const char *name, *help;
} counter_families[SC_DROPS] = {
	[SC_RX_PACKETS] = { "railnet_datapath_rx_packets_total",
			    "Packets received by a pod rail NIC." },
	[SC_RX_BYTES] = { "railnet_datapath_rx_bytes_total", "Bytes received by a pod rail NIC." },
	[SC_TX_PACKETS] = { "railnet_datapath_tx_packets_total",
			    "Packets sent by a pod rail NIC, redirected ones included." },
	[SC_TX_BYTES] = { "railnet_datapath_tx_bytes_total",
			  "Bytes sent by a pod rail NIC, redirected ones included." },
	[SC_REDIRECTS] = { "railnet_datapath_return_path_redirects_total",
			   "Packets of the NIC's addresses that were leaving by another interface and were redirected to it." },
	[SC_REDIRECTS_FAST] = { "railnet_datapath_return_path_fast_redirects_total",
				"Return-path redirects that used the learnt gateway MAC (no neighbour lookup)." },
};

#define SET(text) { text, sizeof(text) - 1 }
static const struct metrics_set drop_reason_sets[RN_DROP_MAX] = {
	[RN_DROP_REDIRECT] = SET("reason=\"redirect_refused\""),
	[RN_DROP_NIC_GONE] = SET("reason=\"nic_detaching\""),
};
#undef SET

/* The families in the order a scrape writes them. */
enum {
	SF_FIRST = 0, /* SC_RX_PACKETS .. SC_REDIRECTS_FAST */
	SF_DROPS = SC_DROPS,
	SF_GW_UP,
	SF_GW_RTT,
	SF_NICS,
};

/* A pod NIC as the scrape saw it.  Its own labels sit in the scrape's arena
 * (`namespace=..,pod=..,interface=..`); the pool's and the gateways' sets,
 * which all NICs of a rail share, are rendered once and referred to. */
struct nic_sample {
	__u64 c[SC_MAX];
	__u64 rtt_ns[RN_FAM_MAX];
	__u32 labels;
	__u16 labels_len;
	__u16 pool;              /* index in dp_scrape.sets */
	__u16 gw[RN_FAM_MAX];    /* index + 1 in dp_scrape.sets, 0: no gateway */
	__s8 gw_up[RN_FAM_MAX];  /* 1 up, 0 down, -1 unknown */
};

/* A label set that many NICs share (a pool's, a gateway's): rendered at
 * its first use, found again by its key (the raw value), both in the arena. */
struct shared_set {
	__u32 hash, key, key_len, text, text_len;
};

struct dp_scrape {
	struct nic_sample *nics;
	size_t n, nics_cap; /* bytes mapped */
	char *arena;
	size_t used, arena_cap;
	struct shared_set *sets;
	size_t nsets, sets_cap;
	__u16 *table; /* open addressing: set index + 1, 0 free */
	size_t table_cap;
	int family;  /* the next to write (SF_*) */
	size_t next; /* its next NIC */
	/* While the snapshot is taken: the next id, ids per hold of the lock,
	 * their per-CPU counters. */
	__u32 lo, chunk;
	__u64 now;
	struct rn_stats *values;
	size_t values_cap;
};

/* Grows an anonymous mapping to hold @need bytes; a new one is populated
 * at once, which costs less than faulting its pages in one at a time. */
static int region_fit(void **p, size_t *cap, size_t need)
{
	size_t ncap = *cap ? *cap : 64 * 1024;
	void *q;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	q = *p ? mremap(*p, *cap, ncap, MREMAP_MAYMOVE) :
		 mmap(NULL, ncap, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (q == MAP_FAILED)
		return -ENOMEM;
	*p = q;
	*cap = ncap;
	return 0;
}

static void region_free(void *p, size_t cap)
{
	if (p)
		munmap(p, cap);
}

static __u32 fnv1a(const void *key, size_t len)
{
	const __u8 *b = key;
	__u32 h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* The index of the shared set with @key, or -1. */
static long set_find(const struct dp_scrape *sc, const void *key, size_t key_len, __u32 hash)
{
	size_t mask = sc->table_cap - 1;

	for (size_t i = hash & mask; sc->table_cap && sc->table[i]; i = (i + 1) & mask) {
		const struct shared_set *set = &sc->sets[sc->table[i] - 1];

		if (set->hash == hash && set->key_len == key_len &&
		    !memcmp(sc->arena + set->key, key, key_len))
			return sc->table[i] - 1;
	}
	return -1;
}

/* Adds the set `@k1="@v1"[,@k2="@v2"]` under @key; its index, or -ENOMEM. */
static long set_add(struct dp_scrape *sc, const void *key, size_t key_len, __u32 hash,
		    const char *k1, const char *v1, const char *k2, const char *v2)
{
	struct shared_set *set;
	size_t mask;
	char *p;

	if (sc->nsets >= 0xfffe)
		return -ENOMEM;
	if (sc->nsets == sc->sets_cap) {
		size_t ncap = sc->sets_cap ? 2 * sc->sets_cap : 32;
		struct shared_set *nsets = realloc(sc->sets, ncap * sizeof(*nsets));

		if (!nsets)
			return -ENOMEM;
		sc->sets = nsets;
		sc->sets_cap = ncap;
	}
	if (2 * (sc->nsets + 1) > sc->table_cap) {
		size_t ncap = sc->table_cap ? 2 * sc->table_cap : 64;
		__u16 *table = calloc(ncap, sizeof(*table));

		if (!table)
			return -ENOMEM;
		for (size_t d = 0; d < sc->nsets; d++) {
			size_t i = sc->sets[d].hash & (ncap - 1);

			while (table[i])
				i = (i + 1) & (ncap - 1);
			table[i] = (__u16)(d + 1);
		}
		free(sc->table);
		sc->table = table;
		sc->table_cap = ncap;
	}
	if (region_fit((void **)&sc->arena, &sc->arena_cap,
		       sc->used + key_len + strlen(k1) + (k2 ? strlen(k2) : 0) +
			       2 * (strlen(v1) + (v2 ? strlen(v2) : 0)) + 8))
		return -ENOMEM;
	set = &sc->sets[sc->nsets];
	set->hash = hash;
	set->key = (__u32)sc->used;
	set->key_len = (__u32)key_len;
	memcpy(sc->arena + sc->used, key, key_len);
	sc->used += key_len;
	set->text = (__u32)sc->used;
	p = metrics_label_put(sc->arena + sc->used, k1, v1);
	if (k2) {
		*p++ = ',';
		p = metrics_label_put(p, k2, v2);
	}
	set->text_len = (__u32)(p - (sc->arena + sc->used));
	sc->used += set->text_len;
	mask = sc->table_cap - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask)
		if (!sc->table[i]) {
			sc->table[i] = (__u16)(sc->nsets + 1);
			break;
		}
	return (long)sc->nsets++;
}

static struct metrics_set set_text(const struct dp_scrape *sc, size_t index)
{
	const struct shared_set *set = &sc->sets[index];

	return (struct metrics_set){ sc->arena + set->text, set->text_len };
}

/* Under dp->lock: adds NIC @e with its counters @st. */
static int snapshot_nic(const struct datapath *dp, struct dp_scrape *sc,
			const struct dp_entry *e, const struct rn_stats *st)
{
	char pool[sizeof(((struct dp_text *)0)->pool)], *start, *p;
	struct nic_sample *s;
	size_t len4, len6;
	__u32 hash;
	long set;

	if (region_fit((void **)&sc->nics, &sc->nics_cap, (sc->n + 1) * sizeof(*s)) ||
	    region_fit((void **)&sc->arena, &sc->arena_cap,
		       sc->used + 2 * (strlen(e->pod_namespace) + strlen(e->pod_name) +
				       sizeof(e->ifname)) + 64))
		return -ENOMEM;
	s = &sc->nics[sc->n];
	memset(s, 0, sizeof(*s));
	s->c[SC_RX_PACKETS] = st->rx_packets;
	s->c[SC_RX_BYTES] = st->rx_bytes;
	s->c[SC_TX_PACKETS] = st->tx_packets;
	s->c[SC_TX_BYTES] = st->tx_bytes;
	s->c[SC_REDIRECTS] = st->redirects;
	s->c[SC_REDIRECTS_FAST] = st->redirects_fast;
	for (int r = 0; r < RN_DROP_MAX; r++)
		s->c[SC_DROPS + r] = st->drops[r];

	s->labels = (__u32)sc->used;
	start = p = sc->arena + sc->used;
	p = metrics_label_put(p, "namespace", e->pod_namespace);
	*p++ = ',';
	p = metrics_label_put(p, "pod", e->pod_name);
	*p++ = ',';
	p = metrics_label_put(p, "interface", e->ifname);
	s->labels_len = (__u16)(p - start);
	sc->used += s->labels_len;

	/* "v4pool,v6pool", either alone, as the label reads. */
	len4 = strnlen(e->pool[RN_FAM_V4], sizeof(pool) / 2 - 1);
	len6 = strnlen(e->pool[RN_FAM_V6], sizeof(pool) / 2 - 1);
	memcpy(pool, e->pool[RN_FAM_V4], len4);
	if (len4 && len6)
		pool[len4++] = ',';
	memcpy(pool + len4, e->pool[RN_FAM_V6], len6);
	pool[len4 + len6] = '\0';
	hash = fnv1a(pool, len4 + len6);
	set = set_find(sc, pool, len4 + len6, hash);
	if (set < 0)
		set = set_add(sc, pool, len4 + len6, hash, "pool", pool, NULL, NULL);
	if (set < 0)
		return (int)set;
	s->pool = (__u16)set;

	for (int f = 0; f < RN_FAM_MAX; f++) {
		const struct rn_gw *gw = &dp->maps.gw_mem[e->id * RN_FAM_MAX + f];
		const __u8 *addr = f == RN_FAM_V6 ? e->nic.gw6 : e->nic.gw4;
		size_t klen = f == RN_FAM_V6 ? 17 : 5;
		__u8 key[17];
		enum gw_state state;

		if (!has_gateway(&e->nic, f))
			continue;
		key[0] = (__u8)f;
		memcpy(key + 1, addr, klen - 1);
		hash = fnv1a(key, klen);
		set = set_find(sc, key, klen, hash);
		if (set < 0) {
			char text[INET6_ADDRSTRLEN];

			addr_str(f, addr, text, sizeof(text));
			set = set_add(sc, key, klen, hash, "family", family_names[f], "gateway", text);
		}
		if (set < 0)
			return (int)set;
		s->gw[f] = (__u16)(set + 1);
		state = gw_state_of(dp, e, gw, sc->now);
		s->gw_up[f] = state == GW_UP ? 1 : state == GW_DOWN ? 0 : -1;
		s->rtt_ns[f] = gw->rtt_ns;
	}
	sc->n++;
	return 0;
}

static void stats_add(struct rn_stats *sum, const struct rn_stats *v)
{
	sum->rx_packets += v->rx_packets;
	sum->rx_bytes += v->rx_bytes;
	sum->tx_packets += v->tx_packets;
	sum->tx_bytes += v->tx_bytes;
	sum->redirects += v->redirects;
	sum->redirects_fast += v->redirects_fast;
	sum->redirect_errors += v->redirect_errors;
	for (int r = 0; r < RN_DROP_MAX; r++)
		sum->drops[r] += v->drops[r];
}

/* Under dp->lock: the per-CPU counters of ids [@lo, @hi) into @values, in
 * one syscall where the kernel batches (5.6+), else one per id. */
static void stats_read(const struct datapath *dp, __u32 lo, __u32 hi, struct rn_stats *values)
{
	size_t ncpus = (size_t)dp->maps.ncpus;
	__u32 keys[SCRAPE_CHUNK], in = lo - 1, out, count = hi - lo;

	if (!bpf_map_lookup_batch(dp->maps.stats, &in, &out, keys, values, &count, NULL) ||
	    (errno == ENOENT && count == hi - lo))
		return;
	for (__u32 id = lo; id < hi; id++) {
		struct rn_stats *v = values + (size_t)(id - lo) * ncpus;

		if (bpf_map_lookup_elem(dp->maps.stats, &id, v))
			memset(v, 0, sizeof(*v) * ncpus);
	}
}

/* Entries are cold: reading one NIC's labels costs a few cache misses (its
 * entry, its names, its gateway slot), which prefetching a few NICs ahead
 * overlaps. */
static void prefetch_entry(const struct datapath *dp, __u32 id)
{
	const struct dp_entry *e = id < RN_MAX_NICS ? dp->entries[id] : NULL;

	if (!e)
		return;
	__builtin_prefetch(e);
	__builtin_prefetch(&e->nic);
	__builtin_prefetch(e->strings);
	__builtin_prefetch(&dp->maps.gw_mem[id * RN_FAM_MAX]);
}

/* Sizes the snapshot for about @n NICs. */
static int snapshot_begin(struct datapath *dp, struct dp_scrape *sc, size_t n)
{
	size_t ncpus = (size_t)dp->maps.ncpus;
	size_t chunk = SCRAPE_PERCPU_BUDGET / (sizeof(struct rn_stats) * ncpus);

	sc->chunk = (__u32)(chunk < 1 ? 1 : chunk > SCRAPE_CHUNK ? SCRAPE_CHUNK : chunk);
	sc->lo = 1;
	sc->now = now_ns();
	if (region_fit((void **)&sc->values, &sc->values_cap,
		       sc->chunk * ncpus * sizeof(*sc->values)) ||
	    region_fit((void **)&sc->nics, &sc->nics_cap, (n + SCRAPE_CHUNK) * sizeof(*sc->nics)) ||
	    region_fit((void **)&sc->arena, &sc->arena_cap, (n + SCRAPE_CHUNK) * 96))
		return -ENOMEM;
	return 0;
}

/* Snapshots the next chunk of ids, under dp->lock. */
static int snapshot_chunk(struct datapath *dp, struct dp_scrape *sc)
{
	size_t ncpus = (size_t)dp->maps.ncpus;
	__u32 lo = sc->lo, hi = lo + sc->chunk < RN_MAX_NICS ? lo + sc->chunk : RN_MAX_NICS;
	__u32 first = hi, last = lo;
	int err = 0;

	sc->lo = hi;
	pthread_mutex_lock(&dp->lock);
	for (__u32 id = lo; id < hi; id++) {
		if (!dp->entries[id])
			continue;
		first = id < first ? id : first;
		last = id;
	}
	if (first < hi)
		stats_read(dp, first, last + 1, sc->values);
	for (__u32 id = first; id <= last && id < hi && !err; id++) {
		struct rn_stats sum = { 0 };

		if (!dp->entries[id])
			continue;
		prefetch_entry(dp, id + SCRAPE_PREFETCH);
		for (size_t c = 0; c < ncpus; c++)
			stats_add(&sum, &sc->values[(size_t)(id - first) * ncpus + c]);
		err = snapshot_nic(dp, sc, dp->entries[id], &sum);
	}
	pthread_mutex_unlock(&dp->lock);
	return err;
}

static void write_nic(struct metrics_writer *w, int family, const struct dp_scrape *sc,
		      const struct nic_sample *s)
{
	struct metrics_set sets[3] = { { sc->arena + s->labels, s->labels_len } };

	if (family < SF_DROPS) {
		sets[1] = set_text(sc, s->pool);
		metrics_sample_sets_u64(w, counter_families[family].name, s->c[family], sets, 2);
		return;
	}
	if (family == SF_DROPS) {
		sets[1] = set_text(sc, s->pool);
		for (int r = 0; r < RN_DROP_MAX; r++) {
			sets[2] = drop_reason_sets[r];
			metrics_sample_sets_u64(w, "railnet_datapath_drops_total", s->c[SC_DROPS + r],
						sets, 3);
		}
		return;
	}
	for (int f = 0; f < RN_FAM_MAX; f++) {
		if (!s->gw[f])
			continue;
		sets[1] = set_text(sc, s->gw[f] - 1u);
		if (family == SF_GW_UP)
			metrics_sample_sets(w, "railnet_gateway_up", (double)s->gw_up[f], sets, 2);
		else if (s->rtt_ns[f])
			metrics_sample_sets_ns(w, "railnet_gateway_rtt_seconds", s->rtt_ns[f], sets, 2);
	}
}

static void write_family_header(struct metrics_writer *w, int family)
{
	if (family < SF_DROPS)
		metrics_family(w, counter_families[family].name, "counter",
			       counter_families[family].help);
	else if (family == SF_DROPS)
		metrics_family(w, "railnet_datapath_drops_total", "counter",
			       "Packets the datapath dropped, by reason; redirect_refused counts the return-path redirects the kernel refused.");
	else if (family == SF_GW_UP)
		metrics_family(w, "railnet_gateway_up", "gauge",
			       "1 when a pod NIC's gateway gave a sign within gateway.downAfter probe intervals, 0 when it did not, -1 before the first sign.");
	else
		metrics_family(w, "railnet_gateway_rtt_seconds", "gauge",
			       "Round trip of the last answered ARP/NS probe to a pod NIC's gateway.");
}

/* The first steps take a chunk of the snapshot each and write its NICs'
 * samples of the first family; then the other families follow,
 * SCRAPE_STEP NICs a step. */
static bool datapath_collect_step(void *ctx, struct metrics_writer *w, void **state)
{
	struct datapath *dp = ctx;
	struct dp_scrape *sc = *state;
	size_t end, n;
	int err;

	if (!sc) {
		sc = calloc(1, sizeof(*sc));
		if (!sc) {
			metrics_fail(w, -ENOMEM);
			return false;
		}
		*state = sc;
		pthread_mutex_lock(&dp->lock);
		n = dp->nentries;
		pthread_mutex_unlock(&dp->lock);
		err = snapshot_begin(dp, sc, n);
		if (err) {
			metrics_fail(w, err);
			return false;
		}
		write_family_header(w, SF_FIRST);
	}
	if (sc->lo < RN_MAX_NICS) {
		size_t from = sc->n;

		err = snapshot_chunk(dp, sc);
		if (err) {
			log_warn("datapath_scrape_failed", "err=\"%s\"", strerror(-err));
			metrics_fail(w, err);
			return false;
		}
		for (size_t i = from; i < sc->n; i++)
			write_nic(w, SF_FIRST, sc, &sc->nics[i]);
		if (sc->lo >= RN_MAX_NICS) {
			region_free(sc->values, sc->values_cap);
			sc->values = NULL;
			sc->family = SF_FIRST + 1;
		}
		return true;
	}
	if (sc->family == SF_NICS) {
		metrics_family(w, "railnet_datapath_nics", "gauge",
			       "Pod rail NICs in the datapath maps.");
		metrics_sample(w, "railnet_datapath_nics", (double)sc->n, "hooks",
			       mode_name(dp->mode), NULL);
		return false;
	}
	if (!sc->next)
		write_family_header(w, sc->family);
	end = sc->next + SCRAPE_STEP < sc->n ? sc->next + SCRAPE_STEP : sc->n;
	for (size_t i = sc->next; i < end; i++)
		write_nic(w, sc->family, sc, &sc->nics[i]);
	sc->next = end;
	if (sc->next == sc->n) {
		sc->family++;
		sc->next = 0;
	}
	return true;
}

static void datapath_collect_end(void *ctx, void *state)
{
	struct dp_scrape *sc = state;

	if (!sc)
		return;
	region_free(sc->values, sc->values_cap);
	region_free(sc->nics, sc->nics_cap);
	region_free(sc->arena, sc->arena_cap);
	free(sc->sets);
	free(sc->table);
	free(sc);
}

int datapath_metrics_register(struct datapath *dp, struct metrics *metrics)
{
	return dp ? metrics_register_steps(metrics, datapath_collect_step, datapath_collect_end,
					   dp) :
		    0;
}

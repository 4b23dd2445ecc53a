// SPDX-License-Identifier: Apache-2.0
#include "agent/conflict_probe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_packet.h>
#include <netlink/route/link.h>
#include <netlink/route/link/macvlan.h>

#include "agent/metrics.h"
#include "common/addr_probe.h"
#include "common/log.h"
#include "common/sysctl.h"

#define MAX_DEPTH 64

/* An address a probe found free, and when. */
struct free_answer {
	struct ipaddr addr;
	long long at_ms;
};

struct watched_pool {
	struct watched_pool *next;
	char name[64];
	char master[IFNAMSIZ];
	int window_ms;
	bool wanted;		/* probe ahead now */
	long long next_round_ms; /* refresh the reserve by then */
	long long last_round_ms; /* pools take turns, the longest waiting first */
	unsigned int gen;	 /* master or window changed: a round's answers are void */
	struct free_answer answers[2 * MAX_DEPTH];
	size_t nanswers;
	unsigned long long probes, conflicts;
	bool warned; /* the master could not be probed from: said once */
};

/* The agent's own macvlan on a master, in bridge mode, that probes are sent
 * from and answers arrive at: from the master itself they would not reach
 * the master's other macvlans - pods on this node - nor their answers it. */
struct probe_device {
	struct probe_device *next;
	char master[IFNAMSIZ];
	char name[IFNAMSIZ];
	int ifindex;
	unsigned char mac[6];
	bool created; /* by this agent: deleted when it stops */
};

struct conflict_probe {
	struct ipam *ipam;
	struct conflict_probe_config cfg;
	char state_path[PATH_MAX];
	pthread_mutex_t lock; /* pools */
	pthread_cond_t wake;
	struct watched_pool *pools;
	struct probe_device *devices; /* the prober thread's own */
	pthread_t thread;
	bool stopping;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* --- configuration ------------------------------------------------------ */

int conflict_probe_config_parse(struct json_object *root, struct conflict_probe_config *cfg,
				char *errbuf, size_t errlen)
{
	static const struct {
		const char *key;
		long long lo, hi;
	} fields[] = { { "depth", 0, MAX_DEPTH },
		       { "maxAgeMs", 100, 3600000 },
		       { "quarantineMs", 1000, 86400000 } };
	long long values[3] = { 4, 300000, 600000 };
	struct json_object *sec = NULL, *v;

	if (root && json_object_object_get_ex(root, "conflictProbe", &sec)) {
		if (!json_object_is_type(sec, json_type_object)) {
			snprintf(errbuf, errlen, "conflictProbe: must be an object");
			return -EINVAL;
		}
		json_object_object_foreach(sec, key, val) {
			bool known = false;

			(void)val;
			for (size_t i = 0; i < 3; i++)
				known |= !strcmp(key, fields[i].key);
			if (!known) {
				snprintf(errbuf, errlen,
					 "conflictProbe.%s: unknown field (depth, maxAgeMs, quarantineMs)",
					 key);
				return -EINVAL;
			}
		}
	}
	for (size_t i = 0; sec && i < 3; i++) {
		if (!json_object_object_get_ex(sec, fields[i].key, &v))
			continue;
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < fields[i].lo ||
		    json_object_get_int64(v) > fields[i].hi) {
			snprintf(errbuf, errlen, "conflictProbe.%s: must be an integer in [%lld, %lld]",
				 fields[i].key, fields[i].lo, fields[i].hi);
			return -EINVAL;
		}
		values[i] = json_object_get_int64(v);
	}
	cfg->depth = (int)values[0];
	cfg->max_age_ms = values[1];
	cfg->quarantine_ms = values[2];
	return 0;
}

/* --- what the ADDs taught: pool -> master, window ------------------------- */

static void state_save(struct conflict_probe *cp)
{
	struct json_object *o = json_object_new_object(), *arr = json_object_new_array();
	char tmp[PATH_MAX + 8];
	const char *text;
	int fd;

	for (struct watched_pool *p = cp->pools; p; p = p->next) {
		struct json_object *e = json_object_new_object();

		json_object_object_add(e, "name", json_object_new_string(p->name));
		json_object_object_add(e, "master", json_object_new_string(p->master));
		json_object_object_add(e, "windowMs", json_object_new_int(p->window_ms));
		json_object_array_add(arr, e);
	}
	json_object_object_add(o, "pools", arr);
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	/* A hint for the next agent, not state: no fsync. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", cp->state_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
		    rename(tmp, cp->state_path))
			unlink(tmp);
		close(fd);
	}
	json_object_put(o);
}

static struct watched_pool *pool_learn(struct conflict_probe *cp, const char *name,
				       const char *master, int window_ms, bool *changed)
{
	struct watched_pool *p;

	for (p = cp->pools; p; p = p->next)
		if (!strcmp(p->name, name))
			break;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return NULL;
		snprintf(p->name, sizeof(p->name), "%s", name);
		p->next = cp->pools;
		cp->pools = p;
		*changed = true;
	}
	if (strcmp(p->master, master) || p->window_ms != window_ms) {
		snprintf(p->master, sizeof(p->master), "%s", master);
		p->window_ms = window_ms;
		p->nanswers = 0; /* another wire: what was free there says nothing */
		p->gen++;
		p->warned = false;
		*changed = true;
	}
	return p;
}

static void state_load(struct conflict_probe *cp)
{
	struct json_object *o = json_object_from_file(cp->state_path), *arr;
	bool changed = false;

	if (!o)
		return;
	if (json_object_object_get_ex(o, "pools", &arr) && json_object_is_type(arr, json_type_array))
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			struct json_object *e = json_object_array_get_idx(arr, i);
			const char *name = json_object_get_string(json_object_object_get(e, "name"));
			const char *master = json_object_get_string(json_object_object_get(e, "master"));
			int window = json_object_get_int(json_object_object_get(e, "windowMs"));
			struct watched_pool *p;

			if (!name || !master || window <= 0)
				continue;
			p = pool_learn(cp, name, master, window, &changed);
			if (p)
				p->wanted = true;
		}
	json_object_put(o);
}

/* --- probing -------------------------------------------------------------- */

/* Finds railnet's probe macvlan of @master (rnp<master ifindex>), making it
 * if there is none: bridge mode, up, no address, silent (it answers no ARP
 * for the node's addresses and has no IPv6). */
static int device_make(struct probe_device *d)
{
	struct nl_sock *sk = nl_socket_alloc();
	struct rtnl_link *link = NULL, *found = NULL, *up = NULL;
	int master = (int)if_nametoindex(d->master), err;

	if (!sk || !master) {
		err = sk ? -ENODEV : -ENOMEM;
		goto out;
	}
	snprintf(d->name, sizeof(d->name), "rnp%d", master);
	if (nl_connect(sk, NETLINK_ROUTE) < 0) {
		err = -EIO;
		goto out;
	}
	if (rtnl_link_get_kernel(sk, 0, d->name, &found) >= 0) {
		/* Ours from a run before, unless it is something else's. */
		if (!rtnl_link_get_type(found) || strcmp(rtnl_link_get_type(found), "macvlan") ||
		    rtnl_link_get_link(found) != master) {
			err = -EEXIST;
			goto out;
		}
	} else {
		link = rtnl_link_macvlan_alloc();
		if (!link) {
			err = -ENOMEM;
			goto out;
		}
		rtnl_link_set_name(link, d->name);
		rtnl_link_set_link(link, master);
		rtnl_link_macvlan_set_mode(link, rtnl_link_macvlan_str2mode("bridge"));
		if (rtnl_link_add(sk, link, NLM_F_CREATE | NLM_F_EXCL) < 0) {
			err = -EIO;
			goto out;
		}
		d->created = true;
		char path[64];

		snprintf(path, sizeof(path), "net/ipv6/conf/%s/disable_ipv6", d->name);
		sysctl_write(path, "1");
		snprintf(path, sizeof(path), "net/ipv4/conf/%s/arp_ignore", d->name);
		sysctl_write(path, "8");
		if (rtnl_link_get_kernel(sk, 0, d->name, &found) < 0) {
			err = -ENODEV;
			goto out;
		}
	}
	up = rtnl_link_alloc();
	if (!up) {
		err = -ENOMEM;
		goto out;
	}
	rtnl_link_set_flags(up, IFF_UP);
	err = rtnl_link_change(sk, found, up, 0) < 0 ? -EIO : 0;
	d->ifindex = rtnl_link_get_ifindex(found);
	if (!err && nl_addr_get_len(rtnl_link_get_addr(found)) == 6)
		memcpy(d->mac, nl_addr_get_binary_addr(rtnl_link_get_addr(found)), 6);
	else if (!err)
		err = -EINVAL;
out:
	rtnl_link_put(up);
	rtnl_link_put(found);
	rtnl_link_put(link);
	nl_socket_free(sk);
	return err;
}

static int device_of(struct conflict_probe *cp, const char *master, struct probe_device **out)
{
	struct probe_device *d;
	int err;

	for (d = cp->devices; d; d = d->next)
		if (!strcmp(d->master, master) && d->ifindex == (int)if_nametoindex(d->name)) {
			*out = d;
			return 0;
		}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	snprintf(d->master, sizeof(d->master), "%s", master);
	err = device_make(d);
	if (err) {
		free(d);
		return err;
	}
	log_info("conflict_probe_device", "master=%s device=%s created=%d", master, d->name,
		 d->created);
	d->next = cp->devices;
	cp->devices = d;
	*out = d;
	return 0;
}

static void devices_remove(struct conflict_probe *cp)
{
	struct nl_sock *sk = nl_socket_alloc();

	if (sk && nl_connect(sk, NETLINK_ROUTE) < 0) {
		nl_socket_free(sk);
		sk = NULL;
	}
	while (cp->devices) {
		struct probe_device *d = cp->devices;
		struct rtnl_link *link = rtnl_link_alloc();

		cp->devices = d->next;
		if (sk && link && d->created) {
			rtnl_link_set_name(link, d->name);
			rtnl_link_delete(sk, link);
		}
		rtnl_link_put(link);
		free(d);
	}
	nl_socket_free(sk);
}

/* Sends every probe at once and listens one window for all of them. */
static int probe_batch(struct conflict_probe *cp, const char *master, const struct ipaddr *todo,
		       size_t n, int window_ms, bool claimed[], unsigned char who[][6])
{
	int family = todo[0].family, fd, err;
	struct packet_mreq allmulti = { .mr_type = PACKET_MR_ALLMULTI };
	struct pollfd pfd = { .events = POLLIN };
	unsigned char addr[16], from[6];
	struct probe_device *d;
	long long deadline;

	err = device_of(cp, master, &d);
	if (err)
		return err;
	fd = addr_probe_open(d->ifindex, family);
	if (fd < 0)
		return fd;
	/* Answers to DAD go to all-nodes, and someone else's DAD to a
	 * solicited-node group: groups a device without IPv6 has not joined. */
	allmulti.mr_ifindex = d->ifindex;
	if (family == AF_INET6 &&
	    setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &allmulti, sizeof(allmulti)))
		err = -errno;
	for (size_t i = 0; i < n && !err; i++) {
		ipaddr_to_raw(&todo[i], addr);
		err = addr_probe_send(fd, d->ifindex, d->mac, family, addr);
	}
	pfd.fd = fd;
	deadline = now_ms() + window_ms;
	while (!err && now_ms() < deadline) {
		int got;

		if (poll(&pfd, 1, (int)(deadline - now_ms())) <= 0)
			continue;
		while ((got = addr_probe_recv(fd, family, d->mac, addr, from)) > 0)
			for (size_t i = 0; i < n; i++) {
				unsigned char mine[16];
				size_t len = ipaddr_to_raw(&todo[i], mine);

				if (!memcmp(mine, addr, len)) {
					claimed[i] = true;
					memcpy(who[i], from, 6);
				}
			}
		if (got < 0)
			err = got;
	}
	close(fd); /* waits for an RCU grace period: off any request's path */
	return err;
}

static const struct free_answer *answer_for(const struct watched_pool *p, const struct ipaddr *a,
					    long long newer_than)
{
	for (size_t i = 0; i < p->nanswers; i++)
		if (ipaddr_eq(&p->answers[i].addr, a) && p->answers[i].at_ms > newer_than)
			return &p->answers[i];
	return NULL;
}

/* Forgets @a's answer and those older than @oldest. */
static void answers_drop(struct watched_pool *p, const struct ipaddr *a, long long oldest)
{
	size_t w = 0;

	for (size_t i = 0; i < p->nanswers; i++)
		if (p->answers[i].at_ms > oldest && !ipaddr_eq(&p->answers[i].addr, a))
			p->answers[w++] = p->answers[i];
	p->nanswers = w;
}

static void answers_put(struct watched_pool *p, const struct ipaddr *a, long long at, long long oldest)
{
	answers_drop(p, a, oldest);
	if (p->nanswers < sizeof(p->answers) / sizeof(p->answers[0]))
		p->answers[p->nanswers++] = (struct free_answer){ *a, at };
}

/* Probes what @pool hands out next and has no fresh answer for. */
static void probe_round(struct conflict_probe *cp, struct watched_pool *p)
{
	struct ipaddr next[MAX_DEPTH], todo[MAX_DEPTH];
	unsigned char who[MAX_DEPTH][6];
	bool claimed[MAX_DEPTH] = { false };
	char name[64], master[IFNAMSIZ], buf[IPADDR_STRLEN];
	size_t n, ntodo = 0;
	long long now = now_ms(), refresh_after = now - cp->cfg.max_age_ms / 2;
	unsigned int gen;
	int window, err;

	/* @p stays: pools are only ever added. */
	pthread_mutex_lock(&cp->lock);
	snprintf(name, sizeof(name), "%s", p->name);
	snprintf(master, sizeof(master), "%s", p->master);
	window = p->window_ms;
	gen = p->gen;
	pthread_mutex_unlock(&cp->lock);

	n = ipam_peek_candidates(cp->ipam, name, next, (size_t)cp->cfg.depth);
	pthread_mutex_lock(&cp->lock);
	for (size_t i = 0; i < n; i++)
		if (!answer_for(p, &next[i], refresh_after))
			todo[ntodo++] = next[i];
	pthread_mutex_unlock(&cp->lock);
	if (!ntodo)
		return;

	err = probe_batch(cp, master, todo, ntodo, window, claimed, who);
	/* A claimed address leaves the pools before anyone hears of it. */
	for (size_t i = 0; !err && i < ntodo; i++)
		if (claimed[i])
			ipam_quarantine(cp->ipam, &todo[i], cp->cfg.quarantine_ms, who[i]);
	pthread_mutex_lock(&cp->lock);
	if (err) {
		if (!p->warned)
			log_warn("conflict_probe_failed", "pool=%s master=%s err=\"%s\"", name, master,
				 strerror(-err));
		p->warned = true;
		pthread_mutex_unlock(&cp->lock);
		return;
	}
	p->warned = false;
	p->probes += ntodo;
	now = now_ms();
	for (size_t i = 0; i < ntodo; i++)
		if (claimed[i])
			p->conflicts++;
		else if (p->gen == gen) /* answers from the wire the pool still uses */
			answers_put(p, &todo[i], now, now - cp->cfg.max_age_ms);
	pthread_mutex_unlock(&cp->lock);

	for (size_t i = 0; i < ntodo; i++)
		if (claimed[i])
			log_warn("ip_conflict_found",
				 "pool=%s master=%s addr=%s claimant=%02x:%02x:%02x:%02x:%02x:%02x", name,
				 master, ipaddr_str(&todo[i], buf), who[i][0], who[i][1], who[i][2],
				 who[i][3], who[i][4], who[i][5]);
}

static void *prober_main(void *arg)
{
	struct conflict_probe *cp = arg;

	pthread_mutex_lock(&cp->lock);
	while (!cp->stopping) {
		long long now = now_ms(), wake_at = now + cp->cfg.max_age_ms / 2;
		struct watched_pool *due = NULL;
		struct timespec ts;

		/* Of the pools due, the one whose last round is oldest: a pool
		 * wanted after every ADD does not starve the others. */
		for (struct watched_pool *p = cp->pools; p; p = p->next) {
			if (p->wanted || p->next_round_ms <= now) {
				if (!due || p->last_round_ms < due->last_round_ms)
					due = p;
			} else if (p->next_round_ms < wake_at) {
				wake_at = p->next_round_ms;
			}
		}
		if (due) {
			due->wanted = false;
			due->last_round_ms = now;
			due->next_round_ms = now + cp->cfg.max_age_ms / 2;
			pthread_mutex_unlock(&cp->lock);
			probe_round(cp, due);
			pthread_mutex_lock(&cp->lock);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (wake_at - now) / 1000;
		ts.tv_nsec += (long)((wake_at - now) % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&cp->wake, &cp->lock, &ts);
	}
	pthread_mutex_unlock(&cp->lock);
	return NULL;
}

/* --- the agent's side ---------------------------------------------------- */

int conflict_probe_open(struct ipam *ipam, const char *state_dir,
			const struct conflict_probe_config *cfg, struct conflict_probe **out)
{
	struct conflict_probe *cp;
	pthread_condattr_t attr;
	int err;

	*out = NULL;
	if (!cfg->depth)
		return 0;
	cp = calloc(1, sizeof(*cp));
	if (!cp)
		return -ENOMEM;
	cp->ipam = ipam;
	cp->cfg = *cfg;
	snprintf(cp->state_path, sizeof(cp->state_path), "%s/conflict-probe.json", state_dir);
	pthread_mutex_init(&cp->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&cp->wake, &attr);
	pthread_condattr_destroy(&attr);
	state_load(cp);
	err = -pthread_create(&cp->thread, NULL, prober_main, cp);
	if (err) {
		conflict_probe_close(cp);
		return err;
	}
	*out = cp;
	return 0;
}

void conflict_probe_close(struct conflict_probe *cp)
{
	if (!cp)
		return;
	pthread_mutex_lock(&cp->lock);
	cp->stopping = true;
	pthread_cond_signal(&cp->wake);
	pthread_mutex_unlock(&cp->lock);
	if (cp->thread)
		pthread_join(cp->thread, NULL);
	devices_remove(cp);
	while (cp->pools) {
		struct watched_pool *p = cp->pools;

		cp->pools = p->next;
		free(p);
	}
	pthread_cond_destroy(&cp->wake);
	pthread_mutex_destroy(&cp->lock);
	free(cp);
}

bool conflict_probe_check(struct conflict_probe *cp, const char *pool, const char *master,
			  int window_ms, const struct ipaddr *addr)
{
	const struct free_answer *fa;
	struct watched_pool *p;
	bool changed = false, free_known = false;

	if (!cp || !master || !*master || window_ms <= 0)
		return false;
	pthread_mutex_lock(&cp->lock);
	p = pool_learn(cp, pool, master, window_ms, &changed);
	if (p) {
		fa = answer_for(p, addr, now_ms() - cp->cfg.max_age_ms);
		free_known = fa != NULL;
		if (fa) /* handed out now: the next ADD needs another */
			answers_drop(p, addr, now_ms() - cp->cfg.max_age_ms);
		p->wanted = true;
		pthread_cond_signal(&cp->wake);
	}
	if (changed)
		state_save(cp);
	pthread_mutex_unlock(&cp->lock);
	return free_known;
}

void conflict_probe_collect(void *ctx, struct metrics_writer *w)
{
	struct conflict_probe *cp = ctx;
	long long oldest = now_ms() - cp->cfg.max_age_ms;

	pthread_mutex_lock(&cp->lock);
	metrics_family(w, "railnet_ipam_conflict_probes_total", "counter",
		       "Addresses probed on the wire ahead of their allocation");
	for (struct watched_pool *p = cp->pools; p; p = p->next)
		metrics_sample_u64(w, "railnet_ipam_conflict_probes_total", p->probes, "pool", p->name,
				   "master", p->master, NULL);
	metrics_family(w, "railnet_ipam_conflicts_found_total", "counter",
		       "Addresses that answered a probe: someone else holds them (quarantined)");
	for (struct watched_pool *p = cp->pools; p; p = p->next)
		metrics_sample_u64(w, "railnet_ipam_conflicts_found_total", p->conflicts, "pool",
				   p->name, "master", p->master, NULL);
	metrics_family(w, "railnet_ipam_probed_free", "gauge",
		       "Addresses next in line that a probe found free within conflictProbe.maxAgeMs");
	for (struct watched_pool *p = cp->pools; p; p = p->next) {
		unsigned long long fresh = 0;

		for (size_t i = 0; i < p->nanswers; i++)
			fresh += p->answers[i].at_ms > oldest;
		metrics_sample_u64(w, "railnet_ipam_probed_free", fresh, "pool", p->name, "master",
				   p->master, NULL);
	}
	pthread_mutex_unlock(&cp->lock);
}

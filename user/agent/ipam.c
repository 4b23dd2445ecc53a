// SPDX-License-Identifier: Apache-2.0
#include "agent/ipam.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* Why an allocation does not fit the configuration (it is kept and served:
 * the pod using it runs; its address is never handed out again). */
enum stray {
	STRAY_NONE,
	STRAY_NO_POOL, /* its pool is no longer configured */
	STRAY_OUTSIDE, /* its address is no longer among its pool's addresses */
};

static const char *const stray_names[] = {
	[STRAY_NONE] = "none",
	[STRAY_NO_POOL] = "pool_removed",
	[STRAY_OUTSIDE] = "outside_pool_addresses",
};

struct alloc {
	struct alloc *next, **pprev;	   /* ipam->allocs */
	struct alloc *key_next, *pod_next; /* chains of ipam->by_key, ipam->by_pod */
	size_t key_hash, pod_hash;
	char *pool;
	struct ipaddr addr;
	bool stateful;
	enum stray stray;
	char *network, *container_id, *ifname, *netns;
	char *pod_namespace, *pod_name, *pod_uid;
	long long orphan_since_ms; /* 0: its netns was there at the last look */
	/* The strings above, in one block: thousands of allocations with
	 * eight small ones each cost more in headers than in text. */
	char *names;
};

/* A stateful pod's address, kept after release so that the pod gets it back:
 * reserved for its pool's statefulHoldMs after the release (round-robin
 * passes over it), then an ordinary free address the pod still gets back if
 * nobody took it.  An address has at most one: giving the address to anyone
 * forgets it. */
struct sticky {
	struct sticky *next, **pprev; /* ipam->sticky */
	struct sticky *addr_next;     /* chain of ipam->sticky_ix */
	char *pool, *network, *pod_namespace, *pod_name, *ifname;
	struct ipaddr addr;
	long long released_ms; /* wall clock */
};

/* Allocations by a hash of some of their strings, chained through the
 * allocations themselves: the request path finds a key in O(1), not by
 * walking every allocation of the node. */
struct chain_index {
	struct alloc **buckets;
	size_t cap, count;
};

struct pool {
	struct ipam_pool_config cfg;
	/* The addresses it may hand out: ranges within the subnet, less the
	 * gateway, network/broadcast, excludeIPs and reservedIPs; sorted,
	 * disjoint. */
	struct iprange *cand;
	size_t ncand;
	u128 usable;
	unsigned long long used;
	struct ipaddr cursor; /* the last address handed out round-robin */
	bool has_cursor;
	unsigned long long nsticky; /* sticky addresses naming it */
};

/* Open-addressing set of allocations by address: no address is held twice. */
struct addr_index {
	struct alloc **slots;
	size_t cap, count, tombs;
};
#define TOMB ((struct alloc *)1)

struct ipam {
	pthread_mutex_t lock;
	struct store *store;
	char *node_name;
	struct pool *pools;
	size_t npools;
	struct alloc *allocs;
	size_t nallocs, nstray[3];
	struct addr_index index;
	struct chain_index by_key;   /* (network, containerID, ifName) */
	struct chain_index by_pod;   /* stateful: (network, ifName, pod namespace, pod name) */
	struct sticky *sticky;
	struct sticky **sticky_ix;   /* by address */
	size_t sticky_cap, nsticky;
	long long (*wall_ms)(void);
	unsigned long long errors[IPAM_ERR_MAX];
	ipam_release_hook release_hook;
	void *release_hook_ctx;
	/* Addresses that answered a conflict probe: in use on the wire by
	 * someone railnet does not know, not to be handed out until then. */
	struct quarantined {
		struct ipaddr addr;
		long long until_ms;
		unsigned char mac[6];
	} *quarantine;
	size_t nquarantine, quarantine_cap;

	pthread_t compactor;
	pthread_cond_t compact_cond;
	bool compact_wanted, stopping, compactor_started;
	long long compact_records;
};

static const char *const error_names[IPAM_ERR_MAX] = {
	[IPAM_ERR_EXHAUSTED] = "pool_exhausted",
	[IPAM_ERR_UNKNOWN_POOL] = "unknown_pool",
	[IPAM_ERR_NOT_ALLOWED] = "pool_not_allowed",
	[IPAM_ERR_BAD_REQUEST] = "bad_request",
	[IPAM_ERR_STORE] = "store",
};

const char *ipam_error_name(enum ipam_error kind)
{
	return kind < IPAM_ERR_MAX ? error_names[kind] : "unknown";
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static long long realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

void ipam_set_clock(struct ipam *ipam, long long (*wall_ms)(void))
{
	pthread_mutex_lock(&ipam->lock);
	ipam->wall_ms = wall_ms ? wall_ms : realtime_ms;
	pthread_mutex_unlock(&ipam->lock);
}

static bool str_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

static char *xstrdup(const char *s)
{
	return strdup(s ? s : "");
}

/* --- the address index ------------------------------------------------ */

static size_t addr_hash(const struct ipaddr *a)
{
	u128 v = a->v * (u128)0x9E3779B97F4A7C15ULL;

	return (size_t)(v ^ (v >> 64) ^ (u128)a->family);
}

static int index_grow(struct addr_index *ix);

static struct alloc **index_slot(struct addr_index *ix, const struct ipaddr *a, bool for_insert)
{
	struct alloc **tomb = NULL;
	size_t i;

	if (!ix->cap)
		return NULL;
	for (i = addr_hash(a) & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
		struct alloc *s = ix->slots[i];

		if (!s)
			return for_insert && tomb ? tomb : &ix->slots[i];
		if (s == TOMB) {
			if (!tomb)
				tomb = &ix->slots[i];
			continue;
		}
		if (ipaddr_eq(&s->addr, a))
			return &ix->slots[i];
	}
}

static struct alloc *index_find(struct addr_index *ix, const struct ipaddr *a)
{
	struct alloc **slot = index_slot(ix, a, false);

	return slot && *slot != TOMB ? *slot : NULL;
}

/* Room for one more entry: after it, index_insert() cannot fail. */
static int index_reserve(struct addr_index *ix)
{
	return (ix->count + ix->tombs + 1) * 10 >= ix->cap * 7 ? index_grow(ix) : 0;
}

static int index_insert(struct addr_index *ix, struct alloc *al)
{
	struct alloc **slot;
	int err;

	err = index_reserve(ix);
	if (err)
		return err;
	slot = index_slot(ix, &al->addr, true);
	if (*slot == TOMB)
		ix->tombs--;
	if (!*slot || *slot == TOMB)
		ix->count++;
	*slot = al;
	return 0;
}

static void index_remove(struct addr_index *ix, const struct ipaddr *a)
{
	struct alloc **slot = index_slot(ix, a, false);

	if (slot && *slot && *slot != TOMB) {
		*slot = TOMB;
		ix->count--;
		ix->tombs++;
	}
}

static int index_grow(struct addr_index *ix)
{
	struct addr_index bigger = { .cap = ix->cap ? ix->cap * 2 : 64 };

	while ((ix->count + 1) * 10 >= bigger.cap * 5)
		bigger.cap *= 2;
	bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
	if (!bigger.slots)
		return -ENOMEM;
	for (size_t i = 0; i < ix->cap; i++) {
		struct alloc *s = ix->slots[i];

		if (s && s != TOMB)
			*index_slot(&bigger, &s->addr, true) = s, bigger.count++;
	}
	free(ix->slots);
	*ix = bigger;
	return 0;
}

/* --- the key indexes ------------------------------------------------------ */

/* FNV-1a over the strings, each ended by a byte no string holds. */
static size_t hash_strs(const char *const *strs, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++) {
		for (const unsigned char *c = (const unsigned char *)(strs[i] ? strs[i] : ""); *c; c++)
			h = (h ^ *c) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;
	}
	return (size_t)(h ^ (h >> 29));
}

static size_t key_hash(const char *network, const char *container_id, const char *ifname)
{
	const char *s[3] = { network, container_id, ifname };

	return hash_strs(s, 3);
}

static size_t pod_hash(const char *network, const char *ifname, const char *pod_ns,
		       const char *pod_name)
{
	const char *s[4] = { network, ifname, pod_ns, pod_name };

	return hash_strs(s, 4);
}

enum { BY_KEY, BY_POD };

static struct alloc **chain_link(struct alloc *al, int which)
{
	return which == BY_KEY ? &al->key_next : &al->pod_next;
}

static size_t chain_hash(const struct alloc *al, int which)
{
	return which == BY_KEY ? al->key_hash : al->pod_hash;
}

static struct alloc *chain_first(const struct chain_index *ix, size_t hash)
{
	return ix->cap ? ix->buckets[hash & (ix->cap - 1)] : NULL;
}

/* Room for one more entry: after it, chain_insert() cannot fail. */
static int chain_reserve(struct chain_index *ix, int which)
{
	size_t cap = ix->cap ? ix->cap * 2 : 64;
	struct alloc **nb;

	if (ix->count + 1 <= ix->cap)
		return 0;
	nb = calloc(cap, sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	for (size_t i = 0; i < ix->cap; i++) {
		for (struct alloc *a = ix->buckets[i], *next; a; a = next) {
			next = *chain_link(a, which);
			*chain_link(a, which) = nb[chain_hash(a, which) & (cap - 1)];
			nb[chain_hash(a, which) & (cap - 1)] = a;
		}
	}
	free(ix->buckets);
	ix->buckets = nb;
	ix->cap = cap;
	return 0;
}

static int chain_insert(struct chain_index *ix, struct alloc *al, int which)
{
	struct alloc **b;
	int err;

	err = chain_reserve(ix, which);
	if (err)
		return err;
	b = &ix->buckets[chain_hash(al, which) & (ix->cap - 1)];
	*chain_link(al, which) = *b;
	*b = al;
	ix->count++;
	return 0;
}

static void chain_remove(struct chain_index *ix, struct alloc *al, int which)
{
	if (!ix->cap)
		return;
	for (struct alloc **pp = &ix->buckets[chain_hash(al, which) & (ix->cap - 1)]; *pp;
	     pp = chain_link(*pp, which)) {
		if (*pp == al) {
			*pp = *chain_link(al, which);
			ix->count--;
			return;
		}
	}
}

static bool in_pod_index(const struct alloc *al)
{
	return al->stateful && al->pod_name && al->pod_name[0];
}

/* --- pools ------------------------------------------------------------ */

static void pool_config_free(struct ipam_pool_config *pc)
{
	free(pc->name);
	free(pc->ranges);
	free(pc->excludes);
	json_object_put(pc->routes);
	for (size_t i = 0; i < pc->nnode_names; i++)
		free(pc->node_names[i]);
	free(pc->node_names);
	memset(pc, 0, sizeof(*pc));
}

void ipam_config_free(struct ipam_config *cfg)
{
	for (size_t i = 0; i < cfg->npools; i++)
		pool_config_free(&cfg->pools[i]);
	free(cfg->pools);
	free(cfg->reserved);
	memset(cfg, 0, sizeof(*cfg));
}

static int pool_config_copy(struct ipam_pool_config *dst, const struct ipam_pool_config *src)
{
	*dst = *src;
	dst->name = strdup(src->name);
	dst->ranges = malloc(sizeof(*dst->ranges) * (src->nranges ? src->nranges : 1));
	dst->excludes = malloc(sizeof(*dst->excludes) * (src->nexcludes ? src->nexcludes : 1));
	dst->node_names = calloc(src->nnode_names ? src->nnode_names : 1, sizeof(char *));
	dst->routes = src->routes ? json_object_get(src->routes) : json_object_new_array();
	if (!dst->name || !dst->ranges || !dst->excludes || !dst->node_names)
		goto err;
	memcpy(dst->ranges, src->ranges, sizeof(*dst->ranges) * src->nranges);
	memcpy(dst->excludes, src->excludes, sizeof(*dst->excludes) * src->nexcludes);
	for (size_t i = 0; i < src->nnode_names; i++)
		if (!(dst->node_names[i] = strdup(src->node_names[i])))
			goto err;
	return 0;
err:
	dst->nnode_names = src->nnode_names;
	pool_config_free(dst);
	return -ENOMEM;
}

static int cmp_range(const void *a, const void *b)
{
	const struct iprange *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

/* Removes [first, last] from the sorted disjoint @ranges. */
static int ranges_subtract(struct iprange **ranges, size_t *n, u128 first, u128 last)
{
	for (size_t i = 0; i < *n; i++) {
		struct iprange *r = &(*ranges)[i];

		if (last < r->first || first > r->last)
			continue;
		if (first <= r->first && last >= r->last) {
			memmove(r, r + 1, (*n - i - 1) * sizeof(*r));
			(*n)--;
			i--;
		} else if (first <= r->first) {
			r->first = last + 1;
		} else if (last >= r->last) {
			r->last = first - 1;
		} else {
			struct iprange *grown = realloc(*ranges, (*n + 1) * sizeof(**ranges));

			if (!grown)
				return -ENOMEM;
			*ranges = grown;
			r = &grown[i];
			memmove(r + 2, r + 1, (*n - i - 1) * sizeof(*r));
			r[1] = (struct iprange){ last + 1, r->last, r->family };
			r->last = first - 1;
			(*n)++;
			i++;
		}
	}
	return 0;
}

/* The addresses a pool may hand out (see struct pool). */
static int pool_candidates(struct pool *p, const struct iprange *reserved, size_t nreserved)
{
	const struct ipam_pool_config *pc = &p->cfg;
	u128 net = pc->subnet.net.v, last = ipprefix_last(&pc->subnet);
	struct iprange *c;
	size_t n = 0;
	int err;

	c = malloc(sizeof(*c) * (pc->nranges ? pc->nranges : 1));
	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < pc->nranges; i++) {
		struct iprange r = pc->ranges[i];

		if (r.first < net)
			r.first = net;
		if (r.last > last)
			r.last = last;
		if (r.first <= r.last)
			c[n++] = r;
	}
	qsort(c, n, sizeof(*c), cmp_range);
	/* Merge overlaps so that counts are exact. */
	for (size_t i = 1; i < n;) {
		if (c[i].first <= c[i - 1].last + 1) {
			if (c[i].last > c[i - 1].last)
				c[i - 1].last = c[i].last;
			memmove(&c[i], &c[i + 1], (n - i - 1) * sizeof(*c));
			n--;
		} else {
			i++;
		}
	}
	/* Network and broadcast addresses exist only where the prefix leaves
	 * room for hosts besides them (RFC 3021: /31 has none). */
	err = 0;
	if (pc->subnet.net.family == AF_INET && pc->subnet.len <= 30) {
		err = ranges_subtract(&c, &n, net, net);
		if (!err)
			err = ranges_subtract(&c, &n, last, last);
	} else if (pc->subnet.net.family == AF_INET6 && pc->subnet.len <= 126) {
		/* The subnet-router anycast address. */
		err = ranges_subtract(&c, &n, net, net);
	}
	if (!err && pc->has_gateway)
		err = ranges_subtract(&c, &n, pc->gateway.v, pc->gateway.v);
	for (size_t i = 0; !err && i < pc->nexcludes; i++)
		if (pc->excludes[i].family == pc->subnet.net.family)
			err = ranges_subtract(&c, &n, pc->excludes[i].first, pc->excludes[i].last);
	for (size_t i = 0; !err && i < nreserved; i++)
		if (reserved[i].family == pc->subnet.net.family)
			err = ranges_subtract(&c, &n, reserved[i].first, reserved[i].last);
	if (err) {
		free(c);
		return err;
	}
	free(p->cand);
	p->cand = c;
	p->ncand = n;
	p->usable = 0;
	for (size_t i = 0; i < n; i++)
		p->usable += c[i].last - c[i].first + 1;
	return 0;
}

static bool pool_is_candidate(const struct pool *p, const struct ipaddr *a)
{
	for (size_t i = 0; i < p->ncand; i++)
		if (iprange_contains(&p->cand[i], a))
			return true;
	return false;
}

/* The candidate that follows @v, wrapping around. */
static u128 pool_next_candidate(const struct pool *p, u128 v, bool has)
{
	if (has) {
		for (size_t i = 0; i < p->ncand; i++) {
			if (v < p->cand[i].first)
				return p->cand[i].first;
			if (v < p->cand[i].last)
				return v + 1;
		}
	}
	return p->cand[0].first;
}

static struct pool *find_pool(struct ipam *ipam, const char *name)
{
	for (size_t i = 0; i < ipam->npools; i++)
		if (!strcmp(ipam->pools[i].cfg.name, name))
			return &ipam->pools[i];
	return NULL;
}

static bool pool_allowed_here(const struct pool *p, const char *node)
{
	if (!p->cfg.nnode_names)
		return true;
	for (size_t i = 0; i < p->cfg.nnode_names; i++)
		if (!strcmp(p->cfg.node_names[i], node))
			return true;
	return false;
}

/* --- allocations and their records ---------------------------------------- */

static void alloc_free(struct alloc *al)
{
	if (!al)
		return;
	free(al->names);
	free(al);
}

enum { NAME_POOL, NAME_NETWORK, NAME_CID, NAME_IFNAME, NAME_NETNS, NAME_POD_NS, NAME_POD,
       NAME_POD_UID, NAME_MAX };

/* Gives @al the strings @v (NULL stays NULL), in one block. */
static int alloc_names(struct alloc *al, const char *const v[NAME_MAX])
{
	char **field[NAME_MAX] = { &al->pool, &al->network, &al->container_id, &al->ifname,
				   &al->netns, &al->pod_namespace, &al->pod_name, &al->pod_uid };
	size_t len = 0, at = 0;
	char *buf;

	for (int i = 0; i < NAME_MAX; i++)
		len += v[i] ? strlen(v[i]) + 1 : 0;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	for (int i = 0; i < NAME_MAX; i++) {
		size_t n = v[i] ? strlen(v[i]) + 1 : 0;

		*field[i] = v[i] ? memcpy(buf + at, v[i], n) : NULL;
		at += n;
	}
	free(al->names);
	al->names = buf;
	return 0;
}

static void sticky_free(struct sticky *s)
{
	free(s->pool);
	free(s->network);
	free(s->pod_namespace);
	free(s->pod_name);
	free(s->ifname);
	free(s);
}

static bool sticky_matches(const struct sticky *s, const char *pool, const char *network,
			   const char *pod_ns, const char *pod_name, const char *ifname)
{
	return str_eq(s->pool, pool) && str_eq(s->network, network) &&
	       str_eq(s->pod_namespace, pod_ns) && str_eq(s->pod_name, pod_name) &&
	       str_eq(s->ifname, ifname);
}

static struct sticky **sticky_slot(struct ipam *ipam, const struct ipaddr *a)
{
	return &ipam->sticky_ix[addr_hash(a) & (ipam->sticky_cap - 1)];
}

static struct sticky *sticky_at(struct ipam *ipam, const struct ipaddr *a)
{
	if (!ipam->sticky_cap)
		return NULL;
	for (struct sticky *s = *sticky_slot(ipam, a); s; s = s->addr_next)
		if (ipaddr_eq(&s->addr, a))
			return s;
	return NULL;
}

static void sticky_unlink(struct ipam *ipam, struct sticky *s)
{
	struct pool *p = find_pool(ipam, s->pool);

	*s->pprev = s->next;
	if (s->next)
		s->next->pprev = s->pprev;
	for (struct sticky **pp = sticky_slot(ipam, &s->addr); *pp; pp = &(*pp)->addr_next) {
		if (*pp == s) {
			*pp = s->addr_next;
			break;
		}
	}
	if (p)
		p->nsticky--;
	ipam->nsticky--;
	sticky_free(s);
}

static void sticky_forget(struct ipam *ipam, const char *pool, const char *network,
			  const char *pod_ns, const char *pod_name, const char *ifname)
{
	for (struct sticky *s = ipam->sticky, *next; s; s = next) {
		next = s->next;
		if (sticky_matches(s, pool, network, pod_ns, pod_name, ifname))
			sticky_unlink(ipam, s);
	}
}

/* The address is someone's now: whoever held it before forgets it. */
static void sticky_forget_addr(struct ipam *ipam, const struct ipaddr *a)
{
	struct sticky *s = sticky_at(ipam, a);

	if (s)
		sticky_unlink(ipam, s);
}

static int sticky_grow(struct ipam *ipam)
{
	size_t cap = ipam->sticky_cap ? ipam->sticky_cap * 2 : 64;
	struct sticky **ix = calloc(cap, sizeof(*ix));

	if (!ix)
		return -ENOMEM;
	free(ipam->sticky_ix);
	ipam->sticky_ix = ix;
	ipam->sticky_cap = cap;
	for (struct sticky *s = ipam->sticky; s; s = s->next) {
		struct sticky **slot = sticky_slot(ipam, &s->addr);

		s->addr_next = *slot;
		*slot = s;
	}
	return 0;
}

/* @al (a stateful pod's allocation) was released at @released_ms. */
/* A hold of @al's address for its pod, not yet taken in (sticky_link):
 * all the memory it needs, or NULL. */
static struct sticky *sticky_new(struct ipam *ipam, const struct alloc *al, long long released_ms)
{
	struct sticky *s;

	if (ipam->nsticky + 1 > ipam->sticky_cap && sticky_grow(ipam))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->pool = xstrdup(al->pool);
	s->network = xstrdup(al->network);
	s->pod_namespace = xstrdup(al->pod_namespace);
	s->pod_name = xstrdup(al->pod_name);
	s->ifname = xstrdup(al->ifname);
	if (!s->pool || !s->network || !s->pod_namespace || !s->pod_name || !s->ifname) {
		sticky_free(s);
		return NULL;
	}
	s->addr = al->addr;
	s->released_ms = released_ms;
	return s;
}

/* Takes @s in, in place of any hold for its pod's NIC or of its address;
 * cannot fail (sticky_new made the room). */
static void sticky_link(struct ipam *ipam, struct sticky *s)
{
	struct sticky **slot;
	struct pool *p;

	sticky_forget(ipam, s->pool, s->network, s->pod_namespace, s->pod_name, s->ifname);
	sticky_forget_addr(ipam, &s->addr);
	s->next = ipam->sticky;
	s->pprev = &ipam->sticky;
	if (s->next)
		s->next->pprev = &s->next;
	ipam->sticky = s;
	slot = sticky_slot(ipam, &s->addr);
	s->addr_next = *slot;
	*slot = s;
	ipam->nsticky++;
	p = find_pool(ipam, s->pool);
	if (p)
		p->nsticky++;
}

static int sticky_remember(struct ipam *ipam, const struct alloc *al, long long released_ms)
{
	struct sticky *s = sticky_new(ipam, al, released_ms);

	if (!s)
		return -ENOMEM;
	sticky_link(ipam, s);
	return 0;
}

/* Whether @s still holds its address for its pod (statefulHoldMs). */
static bool sticky_holds(struct ipam *ipam, const struct sticky *s, long long now)
{
	struct pool *p = find_pool(ipam, s->pool);

	return p && now - s->released_ms < p->cfg.stateful_hold_ms;
}

static void add_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, json_object_new_string(v ? v : ""));
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* A store record as JSON text, put together directly: built from json-c
 * objects it cost an allocation or two per field, on every request. */
struct rec {
	char *p;
	size_t len, cap;
	int err;
	char stack[512];
};

static void rec_raw(struct rec *r, const char *s, size_t n)
{
	if (r->err)
		return;
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap * 2 > r->len + n + 1 ? r->cap * 2 : r->len + n + 1;
		char *p = r->p == r->stack ? malloc(cap) : realloc(r->p, cap);

		if (!p) {
			r->err = -ENOMEM;
			return;
		}
		if (r->p == r->stack)
			memcpy(p, r->stack, r->len);
		r->p = p;
		r->cap = cap;
	}
	memcpy(r->p + r->len, s, n);
	r->len += n;
}

static void rec_key(struct rec *r, const char *key)
{
	rec_raw(r, r->len > 1 ? ",\"" : "\"", r->len > 1 ? 2 : 1);
	rec_raw(r, key, strlen(key));
	rec_raw(r, "\":", 2);
}

/* A string, escaped as JSON needs (RFC 8259 section 7). */
static void rec_str(struct rec *r, const char *key, const char *v)
{
	const char *run = v = v ? v : "";
	char esc[8];

	rec_key(r, key);
	rec_raw(r, "\"", 1);
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		rec_raw(r, run, (size_t)(v - run));
		snprintf(esc, sizeof(esc), c < 0x20 ? "\\u%04x" : "\\%c", c);
		rec_raw(r, esc, strlen(esc));
		run = v + 1;
	}
	rec_raw(r, run, (size_t)(v - run));
	rec_raw(r, "\"", 1);
}

static void rec_addr(struct rec *r, const char *key, const struct ipaddr *a)
{
	char buf[IPADDR_STRLEN];

	rec_str(r, key, ipaddr_str(a, buf));
}

static void rec_literal(struct rec *r, const char *key, const char *v)
{
	rec_key(r, key);
	rec_raw(r, v, strlen(v));
}

static void rec_int(struct rec *r, const char *key, long long v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%lld", v);
	rec_literal(r, key, buf);
}

static void rec_start(struct rec *r, const char *type, const char *pool, const struct ipaddr *a)
{
	r->p = r->stack;
	r->len = 0;
	r->cap = sizeof(r->stack);
	r->err = 0;
	rec_raw(r, "{", 1);
	rec_str(r, "t", type);
	rec_str(r, "pool", pool);
	rec_addr(r, "addr", a);
}

/* Closes the record; its text is r->p, r->len bytes (or r->err). */
static int rec_end(struct rec *r)
{
	rec_raw(r, "}", 1);
	return r->err;
}

static void rec_free(struct rec *r)
{
	if (r->p != r->stack)
		free(r->p);
}

/* @rr: the address was picked round-robin, so replaying the record moves
 * the pool's cursor to it (a stateful pod's address given back, or handed
 * to its new container, does not). */
static void alloc_record(struct rec *r, const struct alloc *al, bool rr)
{
	rec_start(r, "a", al->pool, &al->addr);
	rec_str(r, "net", al->network);
	rec_str(r, "cid", al->container_id);
	rec_str(r, "if", al->ifname);
	rec_str(r, "netns", al->netns);
	rec_str(r, "pns", al->pod_namespace);
	rec_str(r, "pn", al->pod_name);
	rec_str(r, "uid", al->pod_uid);
	if (al->stateful)
		rec_literal(r, "st", "true");
	rec_literal(r, "rr", rr ? "true" : "false");
}

static enum stray stray_of(struct ipam *ipam, const struct alloc *al, struct pool **pool)
{
	struct pool *p = find_pool(ipam, al->pool);

	*pool = p;
	if (!p)
		return STRAY_NO_POOL;
	return pool_is_candidate(p, &al->addr) ? STRAY_NONE : STRAY_OUTSIDE;
}

/* Counts @al (+1/-1) in its pool, or among the strays. */
static void account(struct ipam *ipam, struct alloc *al, long delta)
{
	struct pool *p;

	al->stray = stray_of(ipam, al, &p);
	if (al->stray == STRAY_NONE)
		p->used += (unsigned long long)delta;
	else
		ipam->nstray[al->stray] += (size_t)delta;
}

static void unlink_alloc(struct ipam *ipam, struct alloc *al)
{
	*al->pprev = al->next;
	if (al->next)
		al->next->pprev = al->pprev;
	index_remove(&ipam->index, &al->addr);
	chain_remove(&ipam->by_key, al, BY_KEY);
	if (in_pod_index(al))
		chain_remove(&ipam->by_pod, al, BY_POD);
	account(ipam, al, -1);
	ipam->nallocs--;
}

/* Room in the indexes for one more allocation: an allocation whose record
 * is in the log must make it into memory too, so this comes before the
 * append, and link_alloc() after it cannot fail. */
static int link_reserve(struct ipam *ipam)
{
	int err;

	err = index_reserve(&ipam->index);
	if (!err)
		err = chain_reserve(&ipam->by_key, BY_KEY);
	if (!err)
		err = chain_reserve(&ipam->by_pod, BY_POD);
	return err;
}

/* Takes @al into the state (it replaces an allocation of its address). */
static int link_alloc(struct ipam *ipam, struct alloc *al)
{
	struct alloc *old = index_find(&ipam->index, &al->addr);
	int err;

	if (old) {
		unlink_alloc(ipam, old);
		alloc_free(old);
	}
	al->key_hash = key_hash(al->network, al->container_id, al->ifname);
	al->pod_hash = pod_hash(al->network, al->ifname, al->pod_namespace, al->pod_name);
	err = index_insert(&ipam->index, al);
	if (!err)
		err = chain_insert(&ipam->by_key, al, BY_KEY);
	if (!err && in_pod_index(al) && (err = chain_insert(&ipam->by_pod, al, BY_POD)))
		chain_remove(&ipam->by_key, al, BY_KEY);
	if (err) {
		index_remove(&ipam->index, &al->addr);
		return err;
	}
	al->next = ipam->allocs;
	al->pprev = &ipam->allocs;
	if (al->next)
		al->next->pprev = &al->next;
	ipam->allocs = al;
	ipam->nallocs++;
	account(ipam, al, 1);
	sticky_forget_addr(ipam, &al->addr);
	return 0;
}

static void move_cursor(struct ipam *ipam, const char *pool, const struct ipaddr *a)
{
	struct pool *p = find_pool(ipam, pool);

	if (p) {
		p->cursor = *a;
		p->has_cursor = true;
	}
}

/* A record's wall-clock time ("ts"), or now for records written before
 * they carried one. */
static long long record_ms(struct ipam *ipam, struct json_object *rec)
{
	struct json_object *v;

	if (json_object_object_get_ex(rec, "ts", &v) && json_object_is_type(v, json_type_int))
		return json_object_get_int64(v);
	return ipam->wall_ms();
}

/* Replays one store record. */
static int apply_record(void *ctx, struct json_object *rec)
{
	struct ipam *ipam = ctx;
	const char *type = get_str(rec, "t"), *pool = get_str(rec, "pool"), *addr = get_str(rec, "addr");
	struct json_object *rr;
	struct ipaddr a;
	struct alloc *al;
	int err;

	if (!type || !pool || !addr || ipaddr_parse(addr, &a)) {
		log_warn("store_record_skipped", "reason=\"missing field\"");
		return 0;
	}
	switch (type[0]) {
	case 'a':
		al = calloc(1, sizeof(*al));
		if (!al || alloc_names(al, (const char *const[NAME_MAX]){
				   pool, get_str(rec, "net"), get_str(rec, "cid"), get_str(rec, "if"),
				   get_str(rec, "netns"), get_str(rec, "pns"), get_str(rec, "pn"),
				   get_str(rec, "uid") })) {
			free(al);
			return -ENOMEM;
		}
		al->addr = a;
		al->stateful = json_object_get_boolean(json_object_object_get(rec, "st"));
		if (al->stateful)
			sticky_forget(ipam, al->pool, al->network, al->pod_namespace,
				      al->pod_name, al->ifname);
		err = link_alloc(ipam, al);
		if (err) {
			alloc_free(al);
			return err;
		}
		/* Records from before "rr" moved the cursor, whatever they were. */
		if (!json_object_object_get_ex(rec, "rr", &rr) || json_object_get_boolean(rr))
			move_cursor(ipam, pool, &a);
		return 0;
	case 'r':
		al = index_find(&ipam->index, &a);
		if (al) {
			if (in_pod_index(al) && sticky_remember(ipam, al, record_ms(ipam, rec)))
				return -ENOMEM;
			unlink_alloc(ipam, al);
			alloc_free(al);
		}
		return 0;
	case 'c':
		move_cursor(ipam, pool, &a);
		return 0;
	case 's': {
		struct alloc tmp = { .pool = (char *)pool, .addr = a,
				     .network = (char *)get_str(rec, "net"),
				     .pod_namespace = (char *)get_str(rec, "pns"),
				     .pod_name = (char *)get_str(rec, "pn"),
				     .ifname = (char *)get_str(rec, "if") };

		if (index_find(&ipam->index, &a))
			return 0; /* given to someone since */
		return sticky_remember(ipam, &tmp, record_ms(ipam, rec));
	}
	}
	log_warn("store_record_skipped", "type=%s", type);
	return 0;
}

/* Writes the live state as a snapshot (store compaction). */
static int dump_state(void *ctx, struct store *snap, store_emit_fn emit)
{
	struct ipam *ipam = ctx;
	struct rec r;
	int err = 0;

	for (struct alloc *al = ipam->allocs; al && !err; al = al->next) {
		alloc_record(&r, al, false);
		err = rec_end(&r);
		if (!err)
			err = emit(snap, r.p, r.len);
		rec_free(&r);
	}
	for (struct sticky *s = ipam->sticky; s && !err; s = s->next) {
		rec_start(&r, "s", s->pool, &s->addr);
		rec_str(&r, "net", s->network);
		rec_str(&r, "pns", s->pod_namespace);
		rec_str(&r, "pn", s->pod_name);
		rec_str(&r, "if", s->ifname);
		rec_int(&r, "ts", s->released_ms);
		err = rec_end(&r);
		if (!err)
			err = emit(snap, r.p, r.len);
		rec_free(&r);
	}
	for (size_t i = 0; i < ipam->npools && !err; i++) {
		if (!ipam->pools[i].has_cursor)
			continue;
		rec_start(&r, "c", ipam->pools[i].cfg.name, &ipam->pools[i].cursor);
		err = rec_end(&r);
		if (!err)
			err = emit(snap, r.p, r.len);
		rec_free(&r);
	}
	return err;
}

/* The log holds more than twice the live records (and over compactRecords). */
static bool compaction_due(struct ipam *ipam)
{
	uint64_t backlog = ipam->store->ops->backlog(ipam->store);

	return backlog > (uint64_t)ipam->compact_records &&
	       backlog > 2 * (uint64_t)ipam->nallocs + 64;
}

/* Snapshots the state under the lock; the store writes it out unlocked,
 * while allocations go on. */
static void *compactor_main(void *arg)
{
	struct ipam *ipam = arg;
	int err;

	pthread_mutex_lock(&ipam->lock);
	while (!ipam->stopping) {
		if (!ipam->compact_wanted) {
			pthread_cond_wait(&ipam->compact_cond, &ipam->lock);
			continue;
		}
		ipam->compact_wanted = false;
		if (!compaction_due(ipam))
			continue; /* asked during the previous compaction */
		err = ipam->store->ops->compact_begin(ipam->store, dump_state, ipam);
		pthread_mutex_unlock(&ipam->lock);
		if (!err)
			ipam->store->ops->compact_finish(ipam->store);
		pthread_mutex_lock(&ipam->lock);
	}
	pthread_mutex_unlock(&ipam->lock);
	return NULL;
}

/* Called with the lock held, after an append. */
static void maybe_compact(struct ipam *ipam)
{
	if (compaction_due(ipam)) {
		ipam->compact_wanted = true;
		pthread_cond_signal(&ipam->compact_cond);
	}
}

/* Appends the record @r (built with rec_*), and frees it. */
static int append(struct ipam *ipam, struct rec *r, uint64_t *seq)
{
	int err = rec_end(r);

	if (!err)
		err = ipam->store->ops->append(ipam->store, r->p, r->len, seq);
	rec_free(r);
	if (!err)
		maybe_compact(ipam);
	return err;
}

/* --- configuration -------------------------------------------------------- */

static int pools_build(struct ipam *ipam, const struct ipam_config *cfg, struct pool **out,
		       char *errbuf, size_t errlen)
{
	struct pool *pools = calloc(cfg->npools ? cfg->npools : 1, sizeof(*pools));
	size_t i;
	int err = 0;

	if (!pools)
		return -ENOMEM;
	for (i = 0; i < cfg->npools && !err; i++) {
		err = pool_config_copy(&pools[i].cfg, &cfg->pools[i]);
		if (!err)
			err = pool_candidates(&pools[i], cfg->reserved, cfg->nreserved);
	}
	if (err) {
		snprintf(errbuf, errlen, "out of memory building pools");
		for (size_t j = 0; j < i; j++) {
			pool_config_free(&pools[j].cfg);
			free(pools[j].cand);
		}
		free(pools);
		return err;
	}
	*out = pools;
	return 0;
}

static void pools_free(struct pool *pools, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		pool_config_free(&pools[i].cfg);
		free(pools[i].cand);
	}
	free(pools);
}

/* Moves cursors onto a new pool set and counts the allocations again. */
static void pools_adopt(struct ipam *ipam, struct pool *pools, size_t n)
{
	struct pool *p;

	for (size_t i = 0; i < n; i++) {
		struct pool *old = find_pool(ipam, pools[i].cfg.name);

		if (old) {
			pools[i].cursor = old->cursor;
			pools[i].has_cursor = old->has_cursor;
		}
	}
	pools_free(ipam->pools, ipam->npools);
	ipam->pools = pools;
	ipam->npools = n;
	memset(ipam->nstray, 0, sizeof(ipam->nstray));
	for (struct alloc *al = ipam->allocs; al; al = al->next)
		account(ipam, al, 1);
	for (struct sticky *s = ipam->sticky; s; s = s->next)
		if ((p = find_pool(ipam, s->pool)))
			p->nsticky++;
}

/* Says, loudly, which allocations the configuration has no room for. */
static void log_strays(struct ipam *ipam, const char *when)
{
	char buf[IPADDR_STRLEN];
	size_t n = ipam->nstray[STRAY_NO_POOL] + ipam->nstray[STRAY_OUTSIDE];

	if (!n)
		return;
	for (struct alloc *al = ipam->allocs; al; al = al->next)
		if (al->stray != STRAY_NONE)
			log_err("allocation_outside_config",
				"pool=%s addr=%s container=%.12s ifname=%s pod=%s/%s reason=%s",
				al->pool, ipaddr_str(&al->addr, buf), al->container_id, al->ifname,
				al->pod_namespace, al->pod_name, stray_names[al->stray]);
	log_err("ipam_config_conflict",
		"when=%s allocations=%zu pool_removed=%zu outside_pool_addresses=%zu state=\"%s\"",
		when, n, ipam->nstray[STRAY_NO_POOL], ipam->nstray[STRAY_OUTSIDE],
		"kept and served, never handed out again; release them (railnetctl release) or "
		"restore their pools");
}

/* The ipam of @store and @cfg, replayed; no compactor yet. */
static int ipam_load(struct store *store, const char *node_name, const struct ipam_config *cfg,
		     struct ipam **out, char *errbuf, size_t errlen)
{
	struct ipam *ipam = calloc(1, sizeof(*ipam));
	struct pool *pools;
	int err;

	if (!ipam) {
		if (store)
			store->ops->close(store);
		return -ENOMEM;
	}
	pthread_mutex_init(&ipam->lock, NULL);
	pthread_cond_init(&ipam->compact_cond, NULL);
	ipam->store = store;
	ipam->wall_ms = realtime_ms;
	ipam->node_name = strdup(node_name);
	err = pools_build(ipam, cfg, &pools, errbuf, errlen);
	if (err)
		goto err;
	pools_adopt(ipam, pools, cfg->npools);
	ipam->compact_records = cfg->compact_records;
	err = store->ops->replay(store, apply_record, ipam);
	if (err) {
		snprintf(errbuf, errlen, "replaying the %s store: %s", store->ops->name,
			 strerror(-err));
		goto err;
	}
	*out = ipam;
	return 0;
err:
	ipam_close(ipam);
	return err;
}

int ipam_open(struct store *store, const char *node_name, const struct ipam_config *cfg,
	      struct ipam **out, char *errbuf, size_t errlen)
{
	struct ipam *ipam;
	int err;

	err = ipam_load(store, node_name, cfg, &ipam, errbuf, errlen);
	if (err)
		return err;
	/* Refusing to start would take the node's pod networking down over
	 * a configuration change: keep what is allocated, and say so. */
	log_strays(ipam, "start");
	err = pthread_create(&ipam->compactor, NULL, compactor_main, ipam);
	if (err) {
		snprintf(errbuf, errlen, "starting the compactor: %s", strerror(err));
		ipam_close(ipam);
		return -err;
	}
	ipam->compactor_started = true;
	*out = ipam;
	return 0;
}

/* The first stray allocation, said for the operator. */
static void describe_stray(struct ipam *ipam, char *errbuf, size_t errlen)
{
	char buf[IPADDR_STRLEN];

	for (struct alloc *al = ipam->allocs; al; al = al->next) {
		if (al->stray == STRAY_NONE)
			continue;
		snprintf(errbuf, errlen,
			 "%zu allocation(s) would be left outside the pools, e.g. %s of pool %s "
			 "(container %.12s, %s): %s; release them first (railnetctl release)",
			 ipam->nstray[STRAY_NO_POOL] + ipam->nstray[STRAY_OUTSIDE],
			 ipaddr_str(&al->addr, buf), al->pool, al->container_id, al->ifname,
			 al->stray == STRAY_NO_POOL ? "the pool is removed" :
						      "the address is no longer among the pool's addresses");
		return;
	}
}

int ipam_check_state(struct store *store, const char *node_name, const struct ipam_config *cfg,
		     char *errbuf, size_t errlen)
{
	struct ipam *ipam;
	int err;

	err = ipam_load(store, node_name, cfg, &ipam, errbuf, errlen);
	if (err)
		return err;
	if (ipam->nstray[STRAY_NO_POOL] + ipam->nstray[STRAY_OUTSIDE]) {
		describe_stray(ipam, errbuf, errlen);
		err = -EBUSY;
	}
	ipam_close(ipam);
	return err;
}

void ipam_close(struct ipam *ipam)
{
	if (!ipam)
		return;
	if (ipam->compactor_started) {
		pthread_mutex_lock(&ipam->lock);
		ipam->stopping = true;
		pthread_cond_signal(&ipam->compact_cond);
		pthread_mutex_unlock(&ipam->lock);
		pthread_join(ipam->compactor, NULL);
	}
	while (ipam->allocs) {
		struct alloc *al = ipam->allocs;

		ipam->allocs = al->next;
		alloc_free(al);
	}
	while (ipam->sticky) {
		struct sticky *s = ipam->sticky;

		ipam->sticky = s->next;
		sticky_free(s);
	}
	free(ipam->sticky_ix);
	free(ipam->quarantine);
	free(ipam->index.slots);
	free(ipam->by_key.buckets);
	free(ipam->by_pod.buckets);
	pools_free(ipam->pools, ipam->npools);
	if (ipam->store)
		ipam->store->ops->close(ipam->store);
	free(ipam->node_name);
	pthread_mutex_destroy(&ipam->lock);
	pthread_cond_destroy(&ipam->compact_cond);
	free(ipam);
}

static struct pool *find_in(struct pool *pools, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(pools[i].cfg.name, name))
			return &pools[i];
	return NULL;
}

int ipam_reconfigure(struct ipam *ipam, const struct ipam_config *cfg, char *errbuf, size_t errlen)
{
	struct pool *pools, *p;
	char buf[IPADDR_STRLEN];
	int err;

	err = pools_build(ipam, cfg, &pools, errbuf, errlen);
	if (err)
		return err;
	pthread_mutex_lock(&ipam->lock);
	for (struct alloc *al = ipam->allocs; al; al = al->next) {
		if (al->stray != STRAY_NONE)
			continue; /* outside the configuration already: said at start */
		p = find_in(pools, cfg->npools, al->pool);
		if (p && pool_is_candidate(p, &al->addr))
			continue;
		snprintf(errbuf, errlen,
			 "pool %s still holds %s (container %s, %s): release it before %s", al->pool,
			 ipaddr_str(&al->addr, buf), al->container_id, al->ifname,
			 p ? "leaving it out of the pool's ips, or adding it to excludeIPs or reservedIPs" :
			     "removing the pool");
		pthread_mutex_unlock(&ipam->lock);
		pools_free(pools, cfg->npools);
		return -EBUSY;
	}
	pools_adopt(ipam, pools, cfg->npools);
	ipam->compact_records = cfg->compact_records;
	log_strays(ipam, "reload");
	pthread_mutex_unlock(&ipam->lock);
	return 0;
}

/* --- allocation ----------------------------------------------------------- */

static void lease_of(struct ipam *ipam, const struct alloc *al, struct ipam_lease *l)
{
	struct pool *p = find_pool(ipam, al->pool);

	memset(l, 0, sizeof(*l));
	snprintf(l->pool, sizeof(l->pool), "%s", al->pool);
	l->addr = al->addr;
	l->prefix_len = p ? p->cfg.subnet.len : ipaddr_bits(al->addr.family);
	if (p && p->cfg.has_gateway) {
		l->gateway = p->cfg.gateway;
		l->has_gateway = true;
	}
}

static bool key_matches(const struct alloc *al, const struct ipam_key *k)
{
	return str_eq(al->network, k->network) && str_eq(al->container_id, k->container_id) &&
	       str_eq(al->ifname, k->ifname);
}

/* The first allocation held for @key after @prev (NULL: the first). */
static struct alloc *next_of_key(struct ipam *ipam, const struct ipam_key *key, size_t hash,
				 struct alloc *prev)
{
	struct alloc *al = prev ? prev->key_next : chain_first(&ipam->by_key, hash);

	for (; al; al = al->key_next)
		if (al->key_hash == hash && key_matches(al, key))
			return al;
	return NULL;
}

static struct alloc *find_existing(struct ipam *ipam, const struct ipam_request *req, int family,
				   const char **pools, size_t npools)
{
	size_t hash = key_hash(req->key.network, req->key.container_id, req->key.ifname);

	for (struct alloc *al = NULL; (al = next_of_key(ipam, &req->key, hash, al));)
		if (al->addr.family == family)
			return al;
	if (!req->pod_name || !req->pod_name[0])
		return NULL;
	/* A recreated StatefulSet pod: same name, new container. */
	hash = pod_hash(req->key.network, req->key.ifname, req->pod_namespace, req->pod_name);
	for (struct alloc *al = chain_first(&ipam->by_pod, hash); al; al = al->pod_next) {
		if (al->pod_hash != hash || al->addr.family != family ||
		    !str_eq(al->network, req->key.network) || !str_eq(al->ifname, req->key.ifname) ||
		    !str_eq(al->pod_namespace, req->pod_namespace) ||
		    !str_eq(al->pod_name, req->pod_name))
			continue;
		for (size_t i = 0; i < npools; i++)
			if (!strcmp(pools[i], al->pool))
				return al;
	}
	return NULL;
}

static bool addr_free_in(struct ipam *ipam, struct pool *p, const struct ipaddr *a)
{
	return pool_is_candidate(p, a) && !index_find(&ipam->index, a);
}

static struct quarantined *quarantined_at(struct ipam *ipam, const struct ipaddr *a, long long now)
{
	for (size_t i = 0; i < ipam->nquarantine; i++)
		if (ipaddr_eq(&ipam->quarantine[i].addr, a) && ipam->quarantine[i].until_ms > now)
			return &ipam->quarantine[i];
	return NULL;
}

int ipam_quarantine(struct ipam *ipam, const struct ipaddr *addr, long long for_ms,
		    const unsigned char mac[6])
{
	long long now;
	struct quarantined *q;
	char buf[IPADDR_STRLEN];
	size_t i;

	pthread_mutex_lock(&ipam->lock);
	now = ipam->wall_ms();
	/* Expired entries make room first. */
	for (i = 0; i < ipam->nquarantine;)
		if (ipam->quarantine[i].until_ms <= now)
			ipam->quarantine[i] = ipam->quarantine[--ipam->nquarantine];
		else
			i++;
	q = quarantined_at(ipam, addr, now);
	if (!q && ipam->nquarantine == ipam->quarantine_cap) {
		size_t cap = ipam->quarantine_cap ? 2 * ipam->quarantine_cap : 8;
		struct quarantined *grown = realloc(ipam->quarantine, cap * sizeof(*grown));

		if (!grown) {
			pthread_mutex_unlock(&ipam->lock);
			return -ENOMEM;
		}
		ipam->quarantine = grown;
		ipam->quarantine_cap = cap;
	}
	if (!q)
		q = &ipam->quarantine[ipam->nquarantine++];
	q->addr = *addr;
	q->until_ms = now + for_ms;
	memcpy(q->mac, mac, 6);
	pthread_mutex_unlock(&ipam->lock);
	log_warn("ip_quarantined", "addr=%s mac=%02x:%02x:%02x:%02x:%02x:%02x for_ms=%lld",
		 ipaddr_str(addr, buf), mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], for_ms);
	return 0;
}

/* Walks @p's free candidates round-robin after its cursor - not allocated,
 * not held for a stateful pod, not quarantined - until @take returns false
 * or the pool has been gone round; *@oldest gets the longest-held stateful
 * address passed over.  Called with the lock held. */
static void walk_free(struct ipam *ipam, struct pool *p, long long now, struct sticky **oldest,
		      bool (*take)(const struct ipaddr *a, void *arg), void *arg)
{
	struct ipaddr a = { .family = p->cfg.subnet.net.family };
	struct sticky *s;

	if (!p->ncand || (u128)p->used >= p->usable)
		return;
	a.v = p->has_cursor ? p->cursor.v : 0;
	/* Ends once round: a large pool has free addresses soon after the
	 * taken ones (allocations, held, quarantined, strays), so the walk
	 * is as long as what is taken, however many candidates there are. */
	for (u128 steps = 0; steps < p->usable; steps++) {
		a.v = pool_next_candidate(p, a.v, steps > 0 || p->has_cursor);
		if (index_find(&ipam->index, &a) || quarantined_at(ipam, &a, now))
			continue;
		s = sticky_at(ipam, &a);
		if (s && sticky_holds(ipam, s, now)) {
			if (oldest && (!*oldest || s->released_ms < (*oldest)->released_ms))
				*oldest = s;
			continue;
		}
		if (!take(&a, arg))
			return;
	}
}

static bool take_first(const struct ipaddr *a, void *arg)
{
	*(struct ipaddr *)arg = *a;
	return false;
}

struct peek {
	struct ipaddr *out;
	size_t want, got;
};

static bool take_some(const struct ipaddr *a, void *arg)
{
	struct peek *pk = arg;

	pk->out[pk->got++] = *a;
	return pk->got < pk->want;
}

size_t ipam_peek_candidates(struct ipam *ipam, const char *pool, struct ipaddr *out, size_t n)
{
	struct peek pk = { out, n, 0 };
	struct pool *p;

	pthread_mutex_lock(&ipam->lock);
	p = find_pool(ipam, pool);
	if (p && n && !p->cfg.stateful && pool_allowed_here(p, ipam->node_name))
		walk_free(ipam, p, ipam->wall_ms(), NULL, take_some, &pk);
	pthread_mutex_unlock(&ipam->lock);
	return pk.got;
}

/* Picks an address in @p: a stateful pod's previous one, else round-robin
 * after the last handed out (*rr), passing over addresses held for stateful
 * pods; when only those are left, the one released longest ago.  Called
 * with the lock held. */
static int pick_address(struct ipam *ipam, struct pool *p, const struct ipam_request *req,
			struct ipaddr *out, bool *rr)
{
	struct ipaddr a = { .family = p->cfg.subnet.net.family };
	long long now = ipam->wall_ms();
	struct sticky *oldest = NULL, *s;
	char buf[IPADDR_STRLEN];

	*rr = false;
	if (p->cfg.stateful && req->pod_name && req->pod_name[0]) {
		for (s = ipam->sticky; s; s = s->next) {
			if (sticky_matches(s, p->cfg.name, req->key.network, req->pod_namespace,
					   req->pod_name, req->key.ifname) &&
			    addr_free_in(ipam, p, &s->addr)) {
				*out = s->addr;
				return 0;
			}
		}
	}
	if (!p->ncand || (u128)p->used >= p->usable)
		return -ENOSPC;
	a.family = 0;
	walk_free(ipam, p, now, &oldest, take_first, &a);
	if (a.family) {
		*out = a;
		*rr = true;
		return 0;
	}
	if (!oldest)
		return -ENOSPC;
	/* A new pod is worth more than an address kept for one that may not
	 * come back. */
	log_warn("stateful_hold_broken", "pool=%s addr=%s held_for=%s/%s ifname=%s held_ms=%lld",
		 p->cfg.name, ipaddr_str(&oldest->addr, buf), oldest->pod_namespace,
		 oldest->pod_name, oldest->ifname, now - oldest->released_ms);
	*out = oldest->addr;
	return 0;
}

static int no_memory(enum ipam_error *kind, char *errbuf, size_t errlen)
{
	*kind = IPAM_ERR_STORE;
	snprintf(errbuf, errlen, "out of memory");
	return -ENOMEM;
}

static int allocate_family(struct ipam *ipam, const struct ipam_request *req, int family,
			   const char **names, size_t n, struct alloc **out, bool *fresh,
			   enum ipam_error *kind, char *errbuf, size_t errlen, uint64_t *seq)
{
	struct alloc *al = find_existing(ipam, req, family, names, n);
	bool any_allowed = false, rr;
	struct rec r;
	struct ipaddr addr;
	struct pool *p;
	int err;

	*fresh = false;
	if (al) {
		if (!str_eq(al->container_id, req->key.container_id)) {
			/* Stateful: hand the address to the new container, in
			 * memory once its record is in the log. */
			struct alloc handed = *al;

			handed.names = NULL;
			if (alloc_names(&handed, (const char *const[NAME_MAX]){
					    al->pool, al->network, req->key.container_id, al->ifname,
					    req->netns, al->pod_namespace, al->pod_name, al->pod_uid }))
				return no_memory(kind, errbuf, errlen);
			alloc_record(&r, &handed, false);
			err = append(ipam, &r, seq);
			if (err) {
				free(handed.names);
				goto store_err;
			}
			chain_remove(&ipam->by_key, al, BY_KEY);
			free(al->names);
			*al = handed; /* the same links: chain_remove() changed only others' */
			al->key_hash = key_hash(al->network, al->container_id, al->ifname);
			chain_insert(&ipam->by_key, al, BY_KEY); /* its room is the one it left */
		}
		/* Another caller may have made it and not yet synced it:
		 * durable before this caller hears of it too. */
		if (!*seq)
			*seq = STORE_SEQ_WRITTEN;
		*out = al;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		p = find_pool(ipam, names[i]);
		if (!p) {
			*kind = IPAM_ERR_UNKNOWN_POOL;
			snprintf(errbuf, errlen, "pool %s is not configured on node %s", names[i],
				 ipam->node_name);
			return -ENOENT;
		}
		if (p->cfg.subnet.net.family != family) {
			*kind = IPAM_ERR_BAD_REQUEST;
			snprintf(errbuf, errlen, "pool %s is not an IPv%d pool", names[i],
				 family == AF_INET ? 4 : 6);
			return -EINVAL;
		}
		if (!pool_allowed_here(p, ipam->node_name))
			continue;
		any_allowed = true;
		if (pick_address(ipam, p, req, &addr, &rr))
			continue;
		al = calloc(1, sizeof(*al));
		if (!al || alloc_names(al, (const char *const[NAME_MAX]){
				   p->cfg.name, req->key.network, req->key.container_id,
				   req->key.ifname, req->netns, req->pod_namespace, req->pod_name,
				   req->pod_uid })) {
			free(al);
			return no_memory(kind, errbuf, errlen);
		}
		al->addr = addr;
		al->stateful = p->cfg.stateful;
		if (link_reserve(ipam)) {
			alloc_free(al);
			return no_memory(kind, errbuf, errlen);
		}
		alloc_record(&r, al, rr);
		err = append(ipam, &r, seq);
		if (err) {
			alloc_free(al);
			goto store_err;
		}
		if (al->stateful)
			sticky_forget(ipam, al->pool, al->network, al->pod_namespace, al->pod_name,
				      al->ifname);
		link_alloc(ipam, al); /* reserved: cannot fail */
		if (rr)
			move_cursor(ipam, p->cfg.name, &addr);
		*fresh = true;
		*out = al;
		return 0;
	}
	if (!any_allowed) {
		*kind = IPAM_ERR_NOT_ALLOWED;
		snprintf(errbuf, errlen, "no pool of [%s%s] may be used on node %s (nodeName)",
			 names[0], n > 1 ? ", ..." : "", ipam->node_name);
		return -EPERM;
	}
	*kind = IPAM_ERR_EXHAUSTED;
	snprintf(errbuf, errlen, "no free IPv%d address in pool%s %s%s",
		 family == AF_INET ? 4 : 6, n > 1 ? "s" : "", names[0], n > 1 ? ", ..." : "");
	return -ENOSPC;
store_err:
	*kind = IPAM_ERR_STORE;
	snprintf(errbuf, errlen, "cannot record the allocation: %s", strerror(-err));
	return err;
}

static int release_alloc(struct ipam *ipam, struct alloc *al, uint64_t *seq)
{
	struct sticky *hold = NULL;
	long long now = ipam->wall_ms();
	struct rec rec;
	int err;

	/* The hold of a stateful pod's address: made before the record that
	 * says when it began, so that a restart finds only what memory has.
	 * (Without a pod name there is no pod to give it back to.) */
	if (in_pod_index(al)) {
		hold = sticky_new(ipam, al, now);
		if (!hold)
			return -ENOMEM;
	}
	rec_start(&rec, "r", al->pool, &al->addr);
	if (hold)
		rec_int(&rec, "ts", now);
	err = append(ipam, &rec, seq);
	if (err) {
		if (hold)
			sticky_free(hold);
		return err;
	}
	if (hold)
		sticky_link(ipam, hold);
	unlink_alloc(ipam, al);
	alloc_free(al);
	return 0;
}

static bool family_has_room(struct ipam *ipam, const struct ipam_request *req, int family,
			    const char **names, size_t n)
{
	struct pool *p;

	if (!n || find_existing(ipam, req, family, names, n))
		return true;
	for (size_t i = 0; i < n; i++) {
		p = find_pool(ipam, names[i]);
		/* Anything but a full pool fails or succeeds on its own. */
		if (!p || p->cfg.subnet.net.family != family || !pool_allowed_here(p, ipam->node_name) ||
		    (u128)p->used < p->usable)
			return true;
	}
	return false;
}

bool ipam_would_exhaust(struct ipam *ipam, const struct ipam_request *req)
{
	bool room;

	pthread_mutex_lock(&ipam->lock);
	room = family_has_room(ipam, req, AF_INET, req->pools_v4, req->npools_v4) &&
	       family_has_room(ipam, req, AF_INET6, req->pools_v6, req->npools_v6);
	pthread_mutex_unlock(&ipam->lock);
	return !room;
}

int ipam_allocate(struct ipam *ipam, const struct ipam_request *req, struct ipam_lease *leases,
		  size_t *nleases, enum ipam_error *kind, char *errbuf, size_t errlen)
{
	struct alloc *got[2] = { NULL, NULL };
	bool fresh[2] = { false, false };
	uint64_t seq = 0;
	char buf[IPADDR_STRLEN];
	int err = 0, sync_err;

	*nleases = 0;
	if (!req->key.network || !req->key.container_id || !req->key.ifname ||
	    !req->key.network[0] || !req->key.container_id[0] || !req->key.ifname[0] ||
	    (!req->npools_v4 && !req->npools_v6)) {
		*kind = IPAM_ERR_BAD_REQUEST;
		snprintf(errbuf, errlen, "network, containerID, ifName and at least one pool are required");
		return -EINVAL;
	}
	pthread_mutex_lock(&ipam->lock);
	if (req->npools_v4)
		err = allocate_family(ipam, req, AF_INET, req->pools_v4, req->npools_v4, &got[0],
				      &fresh[0], kind, errbuf, errlen, &seq);
	if (!err && req->npools_v6)
		err = allocate_family(ipam, req, AF_INET6, req->pools_v6, req->npools_v6, &got[1],
				      &fresh[1], kind, errbuf, errlen, &seq);
	if (err && fresh[0]) {
		/* The IPv6 half failed: give the IPv4 address back.  If even
		 * that fails, the runtime's DEL after the failed ADD does. */
		char addr[IPADDR_STRLEN + 1];
		int rollback = release_alloc(ipam, got[0], &seq);

		if (rollback)
			log_warn("ipam_rollback_failed", "pool=%s addr=%s container=%s err=\"%s\"",
				 got[0]->pool, ipaddr_str(&got[0]->addr, addr),
				 got[0]->container_id, strerror(-rollback));
		got[0] = NULL;
	}
	if (!err) {
		for (int i = 0; i < 2; i++) {
			if (!got[i])
				continue;
			lease_of(ipam, got[i], &leases[*nleases]);
			leases[(*nleases)++].fresh = fresh[i];
		}
	} else {
		ipam->errors[*kind]++;
	}
	pthread_mutex_unlock(&ipam->lock);

	/* Durable before anyone hears of it (or the caller's to make so). */
	sync_err = seq && !req->defer_sync ? ipam->store->ops->sync(ipam->store, seq) : 0;
	if (sync_err && !err) {
		*kind = IPAM_ERR_STORE;
		snprintf(errbuf, errlen, "cannot make the allocation durable: %s", strerror(-sync_err));
		return sync_err;
	}
	if (err) {
		log_warn("ip_allocation_failed", "network=%s container=%.12s ifname=%s reason=%s err=\"%s\"",
			 req->key.network, req->key.container_id, req->key.ifname,
			 ipam_error_name(*kind), errbuf);
		return err;
	}
	for (size_t i = 0; i < *nleases; i++)
		log_info("ip_allocated", "pool=%s network=%s container=%.12s ifname=%s addr=%s pod=%s/%s",
			 leases[i].pool, req->key.network, req->key.container_id, req->key.ifname,
			 ipaddr_str(&leases[i].addr, buf), req->pod_namespace ? req->pod_namespace : "",
			 req->pod_name ? req->pod_name : "");
	return 0;
}

int ipam_sync(struct ipam *ipam)
{
	return ipam->store->ops->sync(ipam->store, STORE_SEQ_WRITTEN);
}

int ipam_get(struct ipam *ipam, const struct ipam_key *key, struct ipam_lease *leases,
	     size_t *nleases)
{
	size_t hash = key_hash(key->network, key->container_id, key->ifname);

	*nleases = 0;
	pthread_mutex_lock(&ipam->lock);
	for (struct alloc *al = NULL; *nleases < 2 && (al = next_of_key(ipam, key, hash, al));)
		lease_of(ipam, al, &leases[(*nleases)++]);
	pthread_mutex_unlock(&ipam->lock);
	/* IPv4 first, as ipam_allocate answers. */
	if (*nleases == 2 && leases[0].addr.family == AF_INET6) {
		struct ipam_lease tmp = leases[0];

		leases[0] = leases[1];
		leases[1] = tmp;
	}
	if (!*nleases)
		return -ENOENT;
	/* What it reports must survive a crash (it may be a concurrent ADD's). */
	return ipam->store->ops->sync(ipam->store, STORE_SEQ_WRITTEN);
}

void ipam_set_release_hook(struct ipam *ipam, ipam_release_hook fn, void *ctx)
{
	pthread_mutex_lock(&ipam->lock);
	ipam->release_hook = fn;
	ipam->release_hook_ctx = ctx;
	pthread_mutex_unlock(&ipam->lock);
}

/* The keys a release let go of, for the hook: each once, though a
 * dual-stack NIC frees two addresses. */
struct released_keys {
	struct ipam_key *keys;
	size_t n, cap;
};

static void released_key_free(struct ipam_key *k)
{
	free((char *)k->network);
	free((char *)k->container_id);
	free((char *)k->ifname);
}

/* True when @al's key is new to @rk. */
static bool released_keys_add(struct released_keys *rk, const struct alloc *al)
{
	struct ipam_key *grown;

	for (size_t i = 0; i < rk->n; i++)
		if (key_matches(al, &rk->keys[i]))
			return false;
	if (rk->n == rk->cap) {
		grown = realloc(rk->keys, (rk->cap ? rk->cap * 2 : 4) * sizeof(*grown));
		if (!grown)
			return false; /* a later DEL, GC or restart redoes the hook's work */
		rk->keys = grown;
		rk->cap = rk->cap ? rk->cap * 2 : 4;
	}
	rk->keys[rk->n++] = (struct ipam_key){ xstrdup(al->network), xstrdup(al->container_id),
					       xstrdup(al->ifname) };
	return true;
}

static void released_keys_run(struct released_keys *rk, ipam_release_hook fn, void *ctx)
{
	for (size_t i = 0; i < rk->n; i++) {
		if (fn)
			fn(ctx, &rk->keys[i]);
		released_key_free(&rk->keys[i]);
	}
	free(rk->keys);
}

/* What a release logs, once the lock is dropped. */
struct released_note {
	char pool[64], network[64], container[13], ifname[16], addr[IPADDR_STRLEN];
};

struct release_log {
	struct released_note *notes, one[2];
	size_t n, cap;
};

static void release_note(struct release_log *rl, const struct alloc *al, const char *addr)
{
	struct released_note *n;

	if (rl->n == rl->cap) {
		size_t cap = rl->cap * 2;
		struct released_note *grown = rl->notes == rl->one ? malloc(cap * sizeof(*grown)) :
						realloc(rl->notes, cap * sizeof(*grown));

		if (!grown)
			return; /* the release stands; only its log line is lost */
		if (rl->notes == rl->one)
			memcpy(grown, rl->one, sizeof(rl->one));
		rl->notes = grown;
		rl->cap = cap;
	}
	n = &rl->notes[rl->n++];
	snprintf(n->pool, sizeof(n->pool), "%s", al->pool);
	snprintf(n->network, sizeof(n->network), "%s", al->network);
	snprintf(n->container, sizeof(n->container), "%s", al->container_id);
	snprintf(n->ifname, sizeof(n->ifname), "%s", al->ifname);
	snprintf(n->addr, sizeof(n->addr), "%s", addr);
}

/* Releases the allocations @drop picks - among @key's, or among all when
 * @key is NULL.  Logs each once the lock is released. */
static int release_where(struct ipam *ipam, const struct ipam_key *key,
			 bool (*drop)(const struct alloc *, void *), void *arg,
			 struct json_object *released, const char *why)
{
	struct release_log rl = { .cap = 2 };
	struct released_keys rk = { 0 };
	ipam_release_hook hook;
	void *hook_ctx;
	size_t hash = key ? key_hash(key->network, key->container_id, key->ifname) : 0;
	uint64_t seq = 0;
	char buf[IPADDR_STRLEN];
	int err = 0, n = 0;
	bool added;

	rl.notes = rl.one;
	pthread_mutex_lock(&ipam->lock);
	hook = ipam->release_hook;
	hook_ctx = ipam->release_hook_ctx;
	for (struct alloc *al = key ? next_of_key(ipam, key, hash, NULL) : ipam->allocs, *next; al;
	     al = next) {
		next = key ? next_of_key(ipam, key, hash, al) : al->next;
		if (!drop(al, arg))
			continue;
		ipaddr_str(&al->addr, buf);
		release_note(&rl, al, buf);
		if (released)
			json_object_array_add(released, json_object_new_string(buf));
		added = hook && released_keys_add(&rk, al);
		err = release_alloc(ipam, al, &seq);
		if (err) {
			if (added) /* still allocated: the NIC keeps the rest too */
				released_key_free(&rk.keys[--rk.n]);
			break;
		}
		n++;
	}
	pthread_mutex_unlock(&ipam->lock);
	if (seq) {
		int sync_err = ipam->store->ops->sync(ipam->store, seq);

		if (!err)
			err = sync_err;
	}
	for (size_t i = 0; i < rl.n && i < (size_t)n; i++)
		log_info("ip_released", "pool=%s network=%s container=%s ifname=%s addr=%s why=%s",
			 rl.notes[i].pool, rl.notes[i].network, rl.notes[i].container,
			 rl.notes[i].ifname, rl.notes[i].addr, why);
	if (rl.notes != rl.one)
		free(rl.notes);
	/* Outside the lock: the hook does netlink and map work. */
	released_keys_run(&rk, hook, hook_ctx);
	return err ? err : n;
}

static bool drop_by_key(const struct alloc *al, void *arg)
{
	return key_matches(al, arg);
}

int ipam_release(struct ipam *ipam, const struct ipam_key *key, struct json_object *released)
{
	int n = release_where(ipam, key, drop_by_key, (void *)key, released, "release");
	ipam_release_hook hook;
	void *ctx;

	/* Nothing held, yet the NIC may have left a datapath entry or an RDMA
	 * attachment: a stateful pod's address handed to its successor before
	 * this DEL, or an ADD that failed between its steps. */
	if (!n) {
		pthread_mutex_lock(&ipam->lock);
		hook = ipam->release_hook;
		ctx = ipam->release_hook_ctx;
		pthread_mutex_unlock(&ipam->lock);
		if (hook)
			hook(ctx, key);
	}
	return n < 0 ? n : 0;
}

struct gc_args {
	const char *network;
	struct json_object *valid;
};

static bool drop_unlisted(const struct alloc *al, void *arg)
{
	struct gc_args *gc = arg;
	size_t n = json_object_array_length(gc->valid);

	if (!str_eq(al->network, gc->network))
		return false;
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(gc->valid, i);

		if (str_eq(get_str(v, "containerID"), al->container_id) &&
		    str_eq(get_str(v, "ifName"), al->ifname))
			return false;
	}
	return true;
}

int ipam_gc(struct ipam *ipam, const char *network, struct json_object *valid,
	    struct json_object *released)
{
	struct gc_args gc = { network, valid };
	int n = release_where(ipam, NULL, drop_unlisted, &gc, released, "gc");

	return n < 0 ? n : 0;
}

struct reconcile_args {
	long long now, grace_ms;
};

static bool drop_orphaned(const struct alloc *al, void *arg)
{
	struct reconcile_args *r = arg;
	struct alloc *mut = (struct alloc *)al;

	if (!al->netns || !al->netns[0] || access(al->netns, F_OK) == 0 || errno != ENOENT) {
		mut->orphan_since_ms = 0;
		return false;
	}
	if (!al->orphan_since_ms) {
		mut->orphan_since_ms = r->now;
		return r->grace_ms <= 0;
	}
	return r->now - al->orphan_since_ms >= r->grace_ms;
}

int ipam_reconcile(struct ipam *ipam, long long grace_ms)
{
	struct reconcile_args r = { now_ms(), grace_ms };

	return release_where(ipam, NULL, drop_orphaned, &r, NULL, "netns_gone");
}

/* --- views ---------------------------------------------------------------- */

struct json_object *ipam_pool_routes(struct ipam *ipam, const char *pool)
{
	struct json_object *routes = NULL;
	struct pool *p;

	pthread_mutex_lock(&ipam->lock);
	p = find_pool(ipam, pool);
	if (p && p->cfg.routes)
		routes = json_object_get(p->cfg.routes);
	pthread_mutex_unlock(&ipam->lock);
	return routes ? routes : json_object_new_array();
}

int ipam_pool_stats(struct ipam *ipam, struct ipam_pool_stats **out, size_t *n)
{
	struct ipam_pool_stats *st;
	char buf[IPADDR_STRLEN];

	pthread_mutex_lock(&ipam->lock);
	st = calloc(ipam->npools ? ipam->npools : 1, sizeof(*st));
	if (!st) {
		pthread_mutex_unlock(&ipam->lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ipam->npools; i++) {
		struct pool *p = &ipam->pools[i];

		snprintf(st[i].name, sizeof(st[i].name), "%s", p->cfg.name);
		snprintf(st[i].subnet, sizeof(st[i].subnet), "%s/%d",
			 ipaddr_str(&p->cfg.subnet.net, buf), p->cfg.subnet.len);
		if (p->cfg.has_gateway)
			ipaddr_str(&p->cfg.gateway, st[i].gateway);
		st[i].family = p->cfg.subnet.net.family;
		st[i].total = p->usable > (u128)~0ULL ? ~0ULL : (unsigned long long)p->usable;
		st[i].used = p->used;
	}
	*n = ipam->npools;
	pthread_mutex_unlock(&ipam->lock);
	*out = st;
	return 0;
}

struct json_object *ipam_allocations(struct ipam *ipam, const char *pool)
{
	struct json_object *arr = json_object_new_array();
	char buf[IPADDR_STRLEN];

	pthread_mutex_lock(&ipam->lock);
	for (struct alloc *al = ipam->allocs; al; al = al->next) {
		struct json_object *o;

		if (pool && strcmp(pool, al->pool))
			continue;
		o = json_object_new_object();
		add_str(o, "pool", al->pool);
		add_str(o, "address", ipaddr_str(&al->addr, buf));
		add_str(o, "network", al->network);
		add_str(o, "containerID", al->container_id);
		add_str(o, "ifName", al->ifname);
		add_str(o, "podNamespace", al->pod_namespace);
		add_str(o, "podName", al->pod_name);
		add_str(o, "netns", al->netns);
		if (al->stray != STRAY_NONE)
			add_str(o, "outsideConfig", stray_names[al->stray]);
		json_object_array_add(arr, o);
	}
	pthread_mutex_unlock(&ipam->lock);
	return arr;
}

void ipam_error_counts(struct ipam *ipam, unsigned long long counts[IPAM_ERR_MAX])
{
	pthread_mutex_lock(&ipam->lock);
	memcpy(counts, ipam->errors, sizeof(ipam->errors));
	pthread_mutex_unlock(&ipam->lock);
}

void ipam_stray_counts(struct ipam *ipam, unsigned long long *pool_removed,
		       unsigned long long *outside_pool)
{
	pthread_mutex_lock(&ipam->lock);
	*pool_removed = ipam->nstray[STRAY_NO_POOL];
	*outside_pool = ipam->nstray[STRAY_OUTSIDE];
	pthread_mutex_unlock(&ipam->lock);
}

struct json_object *ipam_status_json(struct ipam *ipam)
{
	struct json_object *st = json_object_new_object(), *arr = json_object_new_array();
	char buf[IPADDR_STRLEN];

	pthread_mutex_lock(&ipam->lock);
	for (struct alloc *al = ipam->allocs; al; al = al->next) {
		struct json_object *o;

		if (al->stray == STRAY_NONE)
			continue;
		o = json_object_new_object();
		add_str(o, "pool", al->pool);
		add_str(o, "address", ipaddr_str(&al->addr, buf));
		add_str(o, "containerID", al->container_id);
		add_str(o, "ifName", al->ifname);
		add_str(o, "reason", stray_names[al->stray]);
		json_object_array_add(arr, o);
	}
	json_object_object_add(st, "outsideConfig", arr);
	json_object_object_add(st, "statefulHeld", json_object_new_uint64(ipam->nsticky));
	pthread_mutex_unlock(&ipam->lock);
	if (ipam->store->ops->status)
		json_object_object_add(st, "store", ipam->store->ops->status(ipam->store));
	return st;
}

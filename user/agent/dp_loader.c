// SPDX-License-Identifier: Apache-2.0
/* Loading the datapath programs and hooking them to devices (dp_loader.h). */
#include "agent/dp_loader.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/types.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <railnet/datapath.h>

#include "common/log.h"

/* Newer than the UAPI headers libbpf 1.1 builds against. */
#define DP_BPF_TCX_INGRESS 46
#define DP_BPF_TCX_EGRESS 47
#define DP_BPF_LINK_TYPE_TCX 11

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/* tc filter identity of railnet's clsact filters. */
#define DP_TC_HANDLE 0x5241
#define DP_TC_PRIORITY 0x5241

/* Userspace learns a pod's netns cookie by SO_NETNS_COOKIE (5.14+); the
 * programs key by it only if it does. */
static bool netns_cookie_works(void)
{
	__u64 cookie = 0;
	socklen_t len = sizeof(cookie);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = !getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) && cookie;
	close(fd);
	return ok;
}

/* Does the kernel let a tc program call bpf_cast_to_kern_ctx (6.2+)?  Asked
 * with a two-instruction program, since a kfunc call the verifier rejects
 * fails the whole load, dead code or not. */
static bool kern_ctx_works(void)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	int id = vmlinux ? btf__find_by_name_kind(vmlinux, "bpf_cast_to_kern_ctx", BTF_KIND_FUNC) :
			   -ENOENT;
	struct bpf_insn insns[] = {
		/* r0 = bpf_cast_to_kern_ctx(r1 = ctx) */
		{ .code = BPF_JMP | BPF_CALL, .src_reg = BPF_PSEUDO_KFUNC_CALL, .imm = id },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = -1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	int fd;

	btf__free(vmlinux);
	if (id <= 0)
		return false;
	fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "rn_probe_kctx", "GPL", insns,
			   sizeof(insns) / sizeof(insns[0]), NULL);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

struct bpf_program *dp_prog(const struct datapath_bpf *skel, enum dp_hook hook)
{
	bool btf = bpf_program__autoload(skel->progs.rn_egress);

	if (hook == DP_HOOK_EGRESS)
		return btf ? skel->progs.rn_egress : skel->progs.rn_egress_core;
	return btf ? skel->progs.rn_ingress : skel->progs.rn_ingress_core;
}

int dp_load(const char *bpffs, const struct dp_knobs *knobs, struct datapath_bpf **skel)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = bpffs);
	struct datapath_bpf *s;
	struct bpf_map *map;
	bool btf;
	int err;

	s = datapath_bpf__open_opts(&opts);
	if (!s) {
		err = -errno;
		log_err("datapath_open_failed", "err=\"%s\"", strerror(-err));
		return err;
	}
	if (!bpffs)
		bpf_object__for_each_map(map, s->obj)
			bpf_map__set_pin_path(map, NULL);
	s->rodata->rn_netns_cookie = netns_cookie_works();
	s->rodata->rn_fast_redirect = knobs->fast_redirect;
	btf = !knobs->core_netns && kern_ctx_works();
	bpf_program__set_autoload(s->progs.rn_egress, btf);
	bpf_program__set_autoload(s->progs.rn_ingress, btf);
	bpf_program__set_autoload(s->progs.rn_egress_core, !btf);
	bpf_program__set_autoload(s->progs.rn_ingress_core, !btf);
	err = datapath_bpf__load(s);
	if (err) {
		log_err("datapath_load_failed", "bpffs=%s err=\"%s\"", bpffs ? bpffs : "-",
			strerror(-err));
		datapath_bpf__destroy(s);
		return err;
	}
	if (!s->rodata->rn_netns_cookie)
		log_warn("datapath_no_netns_cookie",
			 "detail=\"kernel < 5.14 has no SO_NETNS_COOKIE: pods are told apart by address only\"");
	log_info("datapath_loaded", "netns_read=%s",
		  !s->rodata->rn_netns_cookie ? "none" : btf ? "btf" : "probe_read");
	*skel = s;
	return 0;
}

static int pin_replace(struct bpf_program *prog, const char *bpffs, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", bpffs, name);
	if (unlink(path) && errno != ENOENT)
		return -errno;
	return bpf_program__pin(prog, path);
}

int dp_pin_programs(struct datapath_bpf *skel, const char *bpffs)
{
	int err = pin_replace(dp_prog(skel, DP_HOOK_EGRESS), bpffs, RN_PIN_PROG_EGRESS);

	if (!err)
		err = pin_replace(dp_prog(skel, DP_HOOK_INGRESS), bpffs, RN_PIN_PROG_INGRESS);
	if (err)
		log_err("datapath_pin_failed", "bpffs=%s err=\"%s\"", bpffs, strerror(-err));
	return err;
}

/* "rn_<name>_v<N>" with N other than ours. */
static bool stale_name(const char *name)
{
	const char *v = strrchr(name, '_');

	if (strncmp(name, "rn_", 3) || !v || v[1] != 'v' || !v[2])
		return false;
	for (const char *c = v + 2; *c; c++)
		if (*c < '0' || *c > '9')
			return false;
	return strcmp(v, RN_LAYOUT_SUFFIX) != 0;
}

int dp_stale_pins(const char *bpffs, char ***names)
{
	DIR *dir = opendir(bpffs);
	struct dirent *de;
	char **out = calloc(1, sizeof(*out)), **grown;
	size_t n = 0;

	if (!dir || !out) {
		int err = dir ? -ENOMEM : -errno;

		if (dir)
			closedir(dir);
		free(out);
		return err;
	}
	while ((de = readdir(dir))) {
		if (!stale_name(de->d_name))
			continue;
		grown = realloc(out, (n + 2) * sizeof(*out));
		if (!grown || !(grown[n] = strdup(de->d_name))) {
			out = grown ? grown : out;
			out[n] = NULL;
			dp_names_free(out);
			closedir(dir);
			return -ENOMEM;
		}
		out = grown;
		out[++n] = NULL;
	}
	closedir(dir);
	*names = out;
	return 0;
}

void dp_names_free(char **names)
{
	for (size_t i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
}

static int tcx_attach_type(enum dp_hook hook)
{
	return hook == DP_HOOK_INGRESS ? DP_BPF_TCX_INGRESS : DP_BPF_TCX_EGRESS;
}

/* Can the kernel make a tcx link?  Probed with a link on the loopback of
 * the caller's netns, closed at once: the program never sees a packet. */
enum dp_attach_mode dp_attach_mode(int prog_fd)
{
	int fd = bpf_link_create(prog_fd, 1 /* lo */, DP_BPF_TCX_INGRESS, NULL);

	if (fd < 0)
		return DP_MODE_CLSACT;
	close(fd);
	return DP_MODE_TCX;
}

/* The ifindex a pinned tcx link is hooked to; 0 once its device is gone. */
static int tcx_link_ifindex(int link_fd, __u32 *ifindex)
{
	struct {
		__u32 type, id, prog_id, pad;
		__u32 ifindex, attach_type;
		__u8 rest[64];
	} info = { 0 };
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(link_fd, &info, &len))
		return -errno;
	if (info.type != DP_BPF_LINK_TYPE_TCX)
		return -EEXIST; /* never reuse a foreign object */
	*ifindex = info.ifindex;
	return 0;
}

static int tcx_attach(int prog_fd, int ifindex, enum dp_hook hook, const char *link_pin)
{
	__u32 bound = 0;
	int fd, err;

	fd = bpf_obj_get(link_pin);
	if (fd >= 0) {
		err = tcx_link_ifindex(fd, &bound);
		if (!err && bound == (__u32)ifindex) {
			/* Atomic: packets see the old program or the new. */
			err = bpf_link_update(fd, prog_fd, NULL) ? -errno : 0;
			close(fd);
			return err;
		}
		close(fd);
		if (err)
			return err;
		unlink(link_pin); /* a link whose device is gone */
	}
	fd = bpf_link_create(prog_fd, ifindex, tcx_attach_type(hook), NULL);
	if (fd < 0)
		return -errno;
	err = bpf_obj_pin(fd, link_pin) ? -errno : 0;
	close(fd); /* on a pin failure this detaches it again */
	return err;
}

/* --- clsact: the qdisc and direct-action cls_bpf filters, over rtnetlink.
 * Not libbpf's bpf_tc_*(), which open a socket for each change: an attach
 * makes up to five, all on one socket here. */

int dp_tc_open(enum dp_attach_mode mode, struct nl_sock **tc)
{
	*tc = NULL;
	if (mode == DP_MODE_TCX)
		return 0;
	*tc = nl_socket_alloc();
	if (!*tc)
		return -ENOMEM;
	if (nl_connect(*tc, NETLINK_ROUTE) < 0) {
		nl_socket_free(*tc);
		*tc = NULL;
		return -EIO;
	}
	return 0;
}

void dp_tc_close(struct nl_sock *tc)
{
	nl_socket_free(tc);
}

/* The errno behind a libnl error, for the cases callers tell apart. */
static int errno_of(int nlerr)
{
	switch (-nlerr) {
	case NLE_EXIST:
		return -EEXIST;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_NODEV:
		return -ENODEV;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_PERM:
		return -EPERM;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	default:
		return -EIO;
	}
}

/* One tc change of @ifindex, acknowledged; with @prog_fd >= 0 a
 * direct-action bpf filter running it. */
static int tc_change(struct nl_sock *tc, int type, int flags, int ifindex, __u32 parent,
		     __u32 handle, __u32 info, const char *kind, int prog_fd, const char *name)
{
	struct tcmsg t = { .tcm_family = AF_UNSPEC, .tcm_ifindex = ifindex,
			   .tcm_parent = parent, .tcm_handle = handle, .tcm_info = info };
	struct nl_msg *msg = nlmsg_alloc_simple(type, flags);
	struct nlattr *opts;
	int err;

	if (!msg)
		return -ENOMEM;
	if (nlmsg_append(msg, &t, sizeof(t), NLMSG_ALIGNTO) < 0 ||
	    nla_put_string(msg, TCA_KIND, kind) < 0)
		goto too_big;
	if (prog_fd >= 0) {
		opts = nla_nest_start(msg, TCA_OPTIONS);
		if (!opts || nla_put_u32(msg, TCA_BPF_FD, (__u32)prog_fd) < 0 ||
		    nla_put_string(msg, TCA_BPF_NAME, name) < 0 ||
		    nla_put_u32(msg, TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT) < 0)
			goto too_big;
		nla_nest_end(msg, opts);
	}
	err = nl_send_sync(tc, msg); /* frees @msg */
	return err < 0 ? errno_of(err) : 0;
too_big:
	nlmsg_free(msg);
	return -EMSGSIZE;
}

static __u32 clsact_parent(enum dp_hook hook)
{
	return TC_H_MAKE(TC_H_CLSACT, hook == DP_HOOK_INGRESS ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
}

/* railnet's filter: its handle, and its priority with every protocol. */
#define DP_TC_INFO TC_H_MAKE((__u32)DP_TC_PRIORITY << 16, htons(ETH_P_ALL))

int dp_hook_prepare(struct nl_sock *tc, enum dp_attach_mode mode, int ifindex)
{
	int err;

	if (mode == DP_MODE_TCX)
		return 0;
	/* One clsact qdisc holds both directions' filters. */
	err = tc_change(tc, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, ifindex, TC_H_CLSACT,
			TC_H_MAKE(TC_H_CLSACT, 0), 0, "clsact", -1, NULL);
	return err == -EEXIST ? 0 : err;
}

int dp_hook_attach(struct nl_sock *tc, enum dp_attach_mode mode, int prog_fd, const char *name,
		   int ifindex, enum dp_hook hook, const char *link_pin)
{
	if (mode == DP_MODE_TCX)
		return tcx_attach(prog_fd, ifindex, hook, link_pin);
	/* No NLM_F_EXCL: an existing railnet filter is switched in place. */
	return tc_change(tc, RTM_NEWTFILTER, NLM_F_CREATE, ifindex, clsact_parent(hook),
			 DP_TC_HANDLE, DP_TC_INFO, "bpf", prog_fd, name);
}

int dp_hook_detach(struct nl_sock *tc, enum dp_attach_mode mode, int ifindex, enum dp_hook hook,
		   const char *link_pin)
{
	int err;

	if (mode == DP_MODE_TCX) {
		/* The pin holds the link: removing it detaches. */
		if (unlink(link_pin) && errno != ENOENT)
			return -errno;
		return 0;
	}
	err = tc_change(tc, RTM_DELTFILTER, 0, ifindex, clsact_parent(hook), DP_TC_HANDLE,
			DP_TC_INFO, "bpf", -1, NULL);
	return err == -ENOENT || err == -ENODEV || err == -EINVAL ? 0 : err;
}

_Static_assert(DP_GW_SLICE % 4096 == 0, "a slice is whole pages");
_Static_assert(DP_GW_SLICE_COUNT <= sizeof(unsigned int) * 8,
	       "dp_maps.gw_sliced has a bit per slice");

/* Maps the slice of rn_gw_v2 that holds NIC @id's entries over its place in
 * the reserved range, once.  Publishes are serialised by their callers (the
 * datapath's lock); two racing would map the same pages twice, harmlessly. */
static int gw_slice_map(struct dp_maps *maps, __u32 id)
{
	size_t first = (size_t)id * RN_FAM_MAX * sizeof(struct rn_gw);
	size_t last = first + RN_FAM_MAX * sizeof(struct rn_gw) - 1;

	for (size_t i = first / DP_GW_SLICE; i <= last / DP_GW_SLICE; i++) {
		size_t off = i * DP_GW_SLICE;
		size_t len = DP_GW_LEN - off < DP_GW_SLICE ? DP_GW_LEN - off : DP_GW_SLICE;
		void *at = (char *)maps->gw_mem + off;

		if (__atomic_load_n(&maps->gw_sliced, __ATOMIC_ACQUIRE) & (1u << i))
			continue;
		if (mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, maps->gw,
			 (off_t)off) == MAP_FAILED)
			return -errno;
		__atomic_or_fetch(&maps->gw_sliced, 1u << i, __ATOMIC_RELEASE);
	}
	return 0;
}

int dp_maps_open(struct datapath_bpf *skel, struct dp_maps *maps)
{
	maps->addr = bpf_map__fd(skel->maps.rn_addr_v2);
	maps->aidx = bpf_map__fd(skel->maps.rn_aidx_v2);
	maps->ifc = bpf_map__fd(skel->maps.rn_ifc_v2);
	maps->iidx = bpf_map__fd(skel->maps.rn_iidx_v2);
	maps->nic = bpf_map__fd(skel->maps.rn_nic_v2);
	maps->gw = bpf_map__fd(skel->maps.rn_gw_v2);
	maps->stats = bpf_map__fd(skel->maps.rn_stats_v2);
	maps->ncpus = libbpf_num_possible_cpus();
	if (maps->ncpus <= 0)
		return maps->ncpus ? maps->ncpus : -EINVAL;
	/* Address space only: the slices are mapped over it as NICs come. */
	maps->gw_mem = mmap(NULL, DP_GW_LEN, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	maps->gw_sliced = 0;
	if (maps->gw_mem == MAP_FAILED) {
		maps->gw_mem = NULL;
		return -errno;
	}
	return 0;
}

void dp_maps_close(struct dp_maps *maps)
{
	if (maps->gw_mem)
		munmap(maps->gw_mem, DP_GW_LEN);
	maps->gw_mem = NULL;
	maps->gw_sliced = 0;
}

/* The two indexes over the hash maps of record: rn_aidx_v2 over rn_addr_v2,
 * rn_iidx_v2 over rn_ifc_v2.  One writer (the agent, under its bpffs lock);
 * the programs check every id a bucket gives them against rn_nic_v2. */
enum dp_idx {
	DP_IDX_ADDR,
	DP_IDX_IFC,
};

union dp_key {
	struct rn_addr_key addr;
	struct rn_ifc_key ifc;
};

static int idx_bucket_fd(const struct dp_maps *m, enum dp_idx idx)
{
	return idx == DP_IDX_ADDR ? m->aidx : m->iidx;
}

static int idx_hash_fd(const struct dp_maps *m, enum dp_idx idx)
{
	return idx == DP_IDX_ADDR ? m->addr : m->ifc;
}

static __u32 key_bucket(enum dp_idx idx, const union dp_key *key)
{
	const struct rn_addr_key *k = &key->addr;
	__u64 a0, a1 = 0;
	__u32 a4;

	if (idx == DP_IDX_IFC)
		return rn_ifc_bucket(key->ifc.netns, key->ifc.ifindex);
	if (k->family == RN_FAM_V4) {
		memcpy(&a4, k->addr, 4);
		a0 = a4;
	} else {
		memcpy(&a0, k->addr, 8);
		memcpy(&a1, k->addr + 8, 8);
	}
	return rn_addr_bucket(k->netns, k->family, a0, a1);
}

/* NIC @nic's keys in @idx; returns how many. */
static int nic_keys(enum dp_idx idx, const struct rn_nic *nic, union dp_key keys[RN_FAM_MAX])
{
	int n = 0;

	memset(keys, 0, sizeof(*keys) * RN_FAM_MAX);
	if (idx == DP_IDX_IFC) {
		if (!(nic->flags & (RN_NIC_V4 | RN_NIC_V6)))
			return 0;
		keys[0].ifc.netns = nic->netns;
		keys[0].ifc.ifindex = nic->ifindex;
		return 1;
	}
	if (nic->flags & RN_NIC_V4) {
		keys[n].addr.netns = nic->netns;
		keys[n].addr.family = RN_FAM_V4;
		memcpy(keys[n++].addr.addr, nic->addr4, 4);
	}
	if (nic->flags & RN_NIC_V6) {
		keys[n].addr.netns = nic->netns;
		keys[n].addr.family = RN_FAM_V6;
		memcpy(keys[n++].addr.addr, nic->addr6, 16);
	}
	return n;
}

/* Whether NIC @id, as its slot reads now, has a key in bucket @b. */
static bool nic_in_bucket(const struct dp_maps *m, enum dp_idx idx, __u32 id, __u32 b)
{
	union dp_key keys[RN_FAM_MAX];
	struct rn_nic nic;
	int n;

	if (bpf_map_lookup_elem(m->nic, &id, &nic))
		return false;
	n = nic_keys(idx, &nic, keys);
	for (int i = 0; i < n; i++)
		if (key_bucket(idx, &keys[i]) == b)
			return true;
	return false;
}

/* Puts NIC @id into the bucket of @key, which the hash map already has: a
 * free way, or one whose NIC has no key here any more; else the bucket
 * overflows and the programs look in the hash map too. */
static int index_add(const struct dp_maps *m, enum dp_idx idx, const union dp_key *key, __u32 id)
{
	int fd = idx_bucket_fd(m, idx), way = -1;
	__u32 b = key_bucket(idx, key);
	struct rn_bucket bk;

	if (bpf_map_lookup_elem(fd, &b, &bk))
		return -errno;
	for (int w = 0; w < RN_BUCKET_WAYS; w++) {
		if (bk.nic[w] == id)
			return 0;
		if (way < 0 && (!bk.nic[w] || !nic_in_bucket(m, idx, bk.nic[w], b)))
			way = w;
	}
	if (way >= 0)
		bk.nic[way] = id;
	else
		bk.overflow = 1;
	return bpf_map_update_elem(fd, &b, &bk, BPF_ANY) ? -errno : 0;
}

static bool in_ways(const struct rn_bucket *bk, __u32 id)
{
	for (int w = 0; w < RN_BUCKET_WAYS; w++)
		if (bk->nic[w] == id)
			return true;
	return false;
}

/* Takes NIC @id out of the bucket of @key, before the key leaves the hash
 * map.  An overflowed bucket is refilled from the hash map (a scan, as
 * rare as the overflow), and says overflow only while a key still waits. */
static int index_del(const struct dp_maps *m, enum dp_idx idx, const union dp_key *key, __u32 id)
{
	int fd = idx_bucket_fd(m, idx), hash = idx_hash_fd(m, idx);
	__u32 b = key_bucket(idx, key);
	union dp_key cur, next;
	struct rn_nic_ref ref;
	struct rn_bucket bk;
	bool more = false;

	if (bpf_map_lookup_elem(fd, &b, &bk))
		return -errno;
	for (int w = 0; w < RN_BUCKET_WAYS; w++)
		if (bk.nic[w] == id)
			bk.nic[w] = 0;
	for (void *prev = NULL; bk.overflow && !bpf_map_get_next_key(hash, prev, &next);
	     prev = &cur) {
		cur = next;
		if (key_bucket(idx, &cur) != b || bpf_map_lookup_elem(hash, &cur, &ref) ||
		    ref.nic == id || in_ways(&bk, ref.nic))
			continue;
		for (int w = 0; w < RN_BUCKET_WAYS && !in_ways(&bk, ref.nic); w++)
			if (!bk.nic[w])
				bk.nic[w] = ref.nic;
		more = more || !in_ways(&bk, ref.nic);
	}
	/* A torn read of the ways must not meet a cleared overflow: the
	 * promoted keys are found by the hash map until their ways are in. */
	if (bpf_map_update_elem(fd, &b, &bk, BPF_ANY))
		return -errno;
	if (bk.overflow && !more) {
		bk.overflow = 0;
		if (bpf_map_update_elem(fd, &b, &bk, BPF_ANY))
			return -errno;
	}
	return 0;
}

/* @key -> @id in the hash map, then in the index. */
static int key_publish(const struct dp_maps *m, enum dp_idx idx, const union dp_key *key,
		       __u32 id)
{
	struct rn_nic_ref ref = { .nic = id };

	if (bpf_map_update_elem(idx_hash_fd(m, idx), key, &ref, BPF_ANY))
		return -errno;
	return index_add(m, idx, key, id);
}

/* Only our own entry: another NIC may have taken the key since. */
static void key_unpublish(const struct dp_maps *m, enum dp_idx idx, const union dp_key *key,
			  __u32 id)
{
	int hash = idx_hash_fd(m, idx);
	struct rn_nic_ref ref;

	index_del(m, idx, key, id);
	if (!bpf_map_lookup_elem(hash, key, &ref) && ref.nic == id)
		bpf_map_delete_elem(hash, key);
}

int dp_nic_publish(struct dp_maps *maps, __u32 id, const struct rn_nic *nic, bool fresh)
{
	union dp_key keys[RN_FAM_MAX];
	int n, err;

	if (!id || id >= RN_MAX_NICS)
		return -ERANGE;
	err = gw_slice_map(maps, id);
	if (err)
		return err;
	if (fresh) {
		struct rn_stats *zero = calloc((size_t)maps->ncpus, sizeof(*zero));

		if (!zero)
			return -ENOMEM;
		err = bpf_map_update_elem(maps->stats, &id, zero, BPF_ANY) ? -errno : 0;
		free(zero);
		if (err)
			return err;
		memset(&maps->gw_mem[id * RN_FAM_MAX], 0, RN_FAM_MAX * sizeof(struct rn_gw));
	}
	if (bpf_map_update_elem(maps->nic, &id, nic, BPF_ANY))
		return -errno;
	n = nic_keys(DP_IDX_IFC, nic, keys);
	for (int i = 0; i < n; i++) {
		err = key_publish(maps, DP_IDX_IFC, &keys[i], id);
		if (err)
			return err;
	}
	n = nic_keys(DP_IDX_ADDR, nic, keys);
	for (int i = 0; i < n; i++) {
		err = key_publish(maps, DP_IDX_ADDR, &keys[i], id);
		if (err)
			return err;
	}
	return 0;
}

int dp_nic_unpublish(const struct dp_maps *maps, __u32 id, const struct rn_nic *nic)
{
	struct rn_nic slot, zero = { 0 };
	union dp_key keys[RN_FAM_MAX];
	int n;

	if (!id || id >= RN_MAX_NICS)
		return -ERANGE;
	/* Detaching: the programs still find the NIC by its keys, and drop
	 * its packets.  Only if the slot is still this NIC's. */
	if (!bpf_map_lookup_elem(maps->nic, &id, &slot) && slot.netns == nic->netns &&
	    slot.ifindex == nic->ifindex) {
		slot.flags &= ~(__u32)RN_NIC_ACTIVE;
		bpf_map_update_elem(maps->nic, &id, &slot, BPF_ANY);
	}
	n = nic_keys(DP_IDX_ADDR, nic, keys);
	for (int i = 0; i < n; i++)
		key_unpublish(maps, DP_IDX_ADDR, &keys[i], id);
	n = nic_keys(DP_IDX_IFC, nic, keys);
	for (int i = 0; i < n; i++)
		key_unpublish(maps, DP_IDX_IFC, &keys[i], id);
	if (bpf_map_update_elem(maps->nic, &id, &zero, BPF_ANY))
		return -errno;
	return 0;
}

int dp_stats_sum(const struct dp_maps *maps, __u32 id, struct rn_stats *sum)
{
	struct rn_stats *percpu = calloc((size_t)maps->ncpus, sizeof(*percpu));
	int err = 0;

	if (!percpu)
		return -ENOMEM;
	memset(sum, 0, sizeof(*sum));
	if (bpf_map_lookup_elem(maps->stats, &id, percpu)) {
		err = -errno;
		goto out;
	}
	for (int c = 0; c < maps->ncpus; c++) {
		sum->rx_packets += percpu[c].rx_packets;
		sum->rx_bytes += percpu[c].rx_bytes;
		sum->tx_packets += percpu[c].tx_packets;
		sum->tx_bytes += percpu[c].tx_bytes;
		sum->redirects += percpu[c].redirects;
		sum->redirects_fast += percpu[c].redirects_fast;
		sum->redirect_errors += percpu[c].redirect_errors;
		for (int r = 0; r < RN_DROP_MAX; r++)
			sum->drops[r] += percpu[c].drops[r];
	}
out:
	free(percpu);
	return err;
}

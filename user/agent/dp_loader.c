// SPDX-License-Identifier: Apache-2.0
/* Loading the datapath programs and hooking them to devices (dp_loader.h). */
#include "agent/dp_loader.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/types.h>
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

static int clsact_attach(int prog_fd, int ifindex, enum dp_hook hook)
{
	LIBBPF_OPTS(bpf_tc_hook, tc_hook, .ifindex = ifindex,
		    .attach_point = hook == DP_HOOK_INGRESS ? BPF_TC_INGRESS : BPF_TC_EGRESS);
	LIBBPF_OPTS(bpf_tc_opts, tc_opts, .handle = DP_TC_HANDLE, .priority = DP_TC_PRIORITY,
		    .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);
	int err = bpf_tc_hook_create(&tc_hook);

	if (err && err != -EEXIST)
		return err;
	return bpf_tc_attach(&tc_hook, &tc_opts);
}

int dp_hook_attach(enum dp_attach_mode mode, int prog_fd, int ifindex, enum dp_hook hook,
		   const char *link_pin)
{
	if (mode == DP_MODE_TCX)
		return tcx_attach(prog_fd, ifindex, hook, link_pin);
	return clsact_attach(prog_fd, ifindex, hook);
}

int dp_hook_detach(enum dp_attach_mode mode, int ifindex, enum dp_hook hook,
		   const char *link_pin)
{
	LIBBPF_OPTS(bpf_tc_hook, tc_hook, .ifindex = ifindex,
		    .attach_point = hook == DP_HOOK_INGRESS ? BPF_TC_INGRESS : BPF_TC_EGRESS);
	LIBBPF_OPTS(bpf_tc_opts, tc_opts, .handle = DP_TC_HANDLE, .priority = DP_TC_PRIORITY);
	int err;

	if (mode == DP_MODE_TCX) {
		/* The pin holds the link: removing it detaches. */
		if (unlink(link_pin) && errno != ENOENT)
			return -errno;
		return 0;
	}
	err = bpf_tc_detach(&tc_hook, &tc_opts);
	return err == -ENOENT || err == -ENODEV || err == -EINVAL ? 0 : err;
}

int dp_maps_open(struct datapath_bpf *skel, struct dp_maps *maps)
{
	size_t len = (size_t)RN_MAX_NICS * RN_FAM_MAX * sizeof(struct rn_gw);

	maps->addr = bpf_map__fd(skel->maps.rn_addr_v1);
	maps->ifc = bpf_map__fd(skel->maps.rn_ifc_v1);
	maps->nic = bpf_map__fd(skel->maps.rn_nic_v1);
	maps->gw = bpf_map__fd(skel->maps.rn_gw_v1);
	maps->stats = bpf_map__fd(skel->maps.rn_stats_v1);
	maps->ncpus = libbpf_num_possible_cpus();
	if (maps->ncpus <= 0)
		return maps->ncpus ? maps->ncpus : -EINVAL;
	maps->gw_mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, maps->gw, 0);
	if (maps->gw_mem == MAP_FAILED) {
		maps->gw_mem = NULL;
		return -errno;
	}
	return 0;
}

void dp_maps_close(struct dp_maps *maps)
{
	if (maps->gw_mem)
		munmap(maps->gw_mem, (size_t)RN_MAX_NICS * RN_FAM_MAX * sizeof(struct rn_gw));
	maps->gw_mem = NULL;
}

static void addr_keys(const struct rn_nic *nic, struct rn_addr_key keys[RN_FAM_MAX], bool has[2])
{
	memset(keys, 0, sizeof(*keys) * RN_FAM_MAX);
	for (int f = 0; f < RN_FAM_MAX; f++) {
		keys[f].netns = nic->netns;
		keys[f].family = (__u32)f;
	}
	memcpy(keys[RN_FAM_V4].addr, nic->addr4, 4);
	memcpy(keys[RN_FAM_V6].addr, nic->addr6, 16);
	has[RN_FAM_V4] = nic->flags & RN_NIC_V4;
	has[RN_FAM_V6] = nic->flags & RN_NIC_V6;
}

int dp_nic_publish(const struct dp_maps *maps, __u32 id, const struct rn_nic *nic, bool fresh)
{
	struct rn_ifc_key ikey = { .netns = nic->netns, .ifindex = nic->ifindex };
	struct rn_nic_ref ref = { .nic = id };
	struct rn_addr_key keys[RN_FAM_MAX];
	bool has[RN_FAM_MAX];

	if (!id || id >= RN_MAX_NICS)
		return -ERANGE;
	if (fresh) {
		struct rn_stats *zero = calloc((size_t)maps->ncpus, sizeof(*zero));
		int err;

		if (!zero)
			return -ENOMEM;
		err = bpf_map_update_elem(maps->stats, &id, zero, BPF_ANY) ? -errno : 0;
		free(zero);
		if (err)
			return err;
		memset(&maps->gw_mem[id * RN_FAM_MAX], 0, RN_FAM_MAX * sizeof(struct rn_gw));
	}
	if (bpf_map_update_elem(maps->nic, &id, nic, BPF_ANY) ||
	    bpf_map_update_elem(maps->ifc, &ikey, &ref, BPF_ANY))
		return -errno;
	addr_keys(nic, keys, has);
	for (int f = 0; f < RN_FAM_MAX; f++)
		if (has[f] && bpf_map_update_elem(maps->addr, &keys[f], &ref, BPF_ANY))
			return -errno;
	return 0;
}

int dp_nic_unpublish(const struct dp_maps *maps, __u32 id, const struct rn_nic *nic)
{
	struct rn_ifc_key ikey = { .netns = nic->netns, .ifindex = nic->ifindex };
	struct rn_addr_key keys[RN_FAM_MAX];
	struct rn_nic_ref ref;
	struct rn_nic zero = { 0 };
	bool has[RN_FAM_MAX];

	addr_keys(nic, keys, has);
	for (int f = 0; f < RN_FAM_MAX; f++) {
		/* Only our own entry: another NIC may have taken the key since. */
		if (has[f] && !bpf_map_lookup_elem(maps->addr, &keys[f], &ref) && ref.nic == id)
			bpf_map_delete_elem(maps->addr, &keys[f]);
	}
	if (!bpf_map_lookup_elem(maps->ifc, &ikey, &ref) && ref.nic == id)
		bpf_map_delete_elem(maps->ifc, &ikey);
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

// SPDX-License-Identifier: Apache-2.0
#include "agent/rdma.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/grpc.h"
#include "agent/metrics.h"
#include "agent/rdma_sysfs.h"
#include "common/log.h"
#include "proto/deviceplugin.pb-c.h"
#include "proto/podresources.pb-c.h"

#define DP_API_VERSION	  "v1beta1"
#define DP_KUBELET_SOCK	  "kubelet.sock"
#define DP_REGISTER_PATH  "/v1beta1.Registration/Register"
#define DP_PATH_PREFIX	  "/v1beta1.DevicePlugin/"
#define DP_TICK_MS	  1000
#define DP_MAX_CONNS	  64
#define DP_DEVICE_ID_MAX  63
#define DP_DEVICE_NAME_MAX 40 /* of the resource name, in a device ID */
/* The kubelet answers Register only after dialing the plugin back (its own
 * dial gives up after 10 s): wait longer than that, to hear its verdict. */
#define DP_REGISTER_TIMEOUT_MS 15000
#define DP_REGISTER_BACKOFF_MAX_MS 30000
#define PR_LIST_PATH	   "/v1.PodResourcesLister/List"
#define PR_TIMEOUT_MS	   5000
#define NETNS_CHECK_MS	   10000

struct watcher {
	struct grpc_call *call;
	struct watcher *next;
};

struct resource {
	const struct rdma_resource_config *rc;
	char full_name[256];
	char sock_name[128];
	char sock_path[PATH_MAX];
	size_t *hcas; /* inventory indexes of the selected HCAs */
	size_t nhcas;
	bool healthy;
	bool dirty; /* device list or health changed since the kubelet heard */
	int listen_fd;
	ino_t sock_ino;
	/* the kubelet.sock we registered with (inode and ctime: a new socket may
	 * reuse the inode number of the one it replaces); ino 0: not registered */
	ino_t kubelet_ino;
	struct timespec kubelet_ctime;
	/* Register in flight (the loop drives it while serving the kubelet's
	 * call back), the kubelet.sock it went to, the retry backoff */
	struct grpc_ucall *reg_call;
	struct stat reg_kubelet;
	unsigned int register_failures; /* in a row; the backoff doubles with each */
	unsigned long long register_failures_total;
	long long register_next_ms;
	char register_error[256]; /* the last failure, "" once registered */
	struct watcher *watchers;
	unsigned long long allocate_calls, devices_allocated; /* since start */
	unsigned char *in_use; /* bitmap of device indexes, the loop's scratch */
	size_t kubelet_in_use;	/* devices held by containers (PodResources) */
	size_t attached;	/* pod NICs */
};

struct attachment {
	char network[128], container_id[128], ifname[IFNAMSIZ], master[IFNAMSIZ], netns[256];
	char resource[256]; /* the resource's full name */
	char hca[RDMA_NAME_MAX];
	unsigned int port;
	int gid_index; /* -1 while pending */
	int families[4];
	unsigned char addrs[4][16];
	size_t naddrs;
	time_t since;
	struct attachment *next;
};

struct rdma;

struct dp_conn {
	struct grpc_conn *gc;
	struct rdma *r;
	struct resource *res;
};

struct rdma {
	struct rdma_config cfg;
	struct rdma_options opts;
	pthread_mutex_t lock; /* inv, resources' state, attachments */
	struct rdma_inventory inv;
	struct resource *res;
	size_t nres;
	struct attachment *attachments;
	char netns_mode[96];
	int netns_shared; /* 1 shared, 0 exclusive, -1 unknown */
	long long netns_checked_ms;
	/* PodResources List: in flight, next due, 1 answering / -1 not / 0 not asked */
	struct grpc_ucall *podres_call;
	long long podres_next_ms;
	int podres_state;
	char podres_error[256];
	/* owned by the thread */
	struct dp_conn *conns[DP_MAX_CONNS];
	size_t nconns;
	int wake_fd, link_fd, uevent_fd;
	bool stopping;
	int kubelet_state; /* kubelet.sock: 1 there, -1 absent, 0 not looked yet */
	pthread_t thread;
	bool thread_started;
	long long last_scan_ms; /* under the lock */
	bool rescan_due;	/* a netdev came or went: rescan at the next tick */
	char *state_file;
	bool loading; /* attachments_load replays: nothing to save yet */
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- resources over the inventory ------------------------------------------------ */

/* Healthy while the port of every selected netdev is ACTIVE on its HCA (and
 * there is one): a pod NIC's traffic leaves through its master's port, and
 * another port of a multi-port HCA being up does not carry it. */
static bool resource_healthy(const struct rdma *r, const struct resource *res)
{
	bool any = false;

	for (size_t c = 0; c < r->inv.nnics; c++) {
		const struct rdma_nic *nic = &r->inv.nics[c];

		const struct rdma_hca *hca;
		unsigned int num;
		const struct rdma_port *port;

		if (!rdma_nic_matches(nic, &res->rc->sel) || !(hca = rdma_nic_hca(&r->inv, nic, &num)))
			continue;
		port = rdma_hca_port(hca, num);
		if (!port || port->state != RDMA_PORT_ACTIVE)
			return false;
		any = true;
	}
	return any;
}

static bool resource_has_hca(const struct rdma *r, const struct resource *res, const char *name)
{
	for (size_t i = 0; i < res->nhcas; i++)
		if (!strcmp(r->inv.hcas[res->hcas[i]].name, name))
			return true;
	return false;
}

/* Recomputes every resource's HCAs from the inventory and marks those
 * whose device list or health changed dirty.  Under the lock. */
static void resources_select(struct rdma *r)
{
	for (size_t i = 0; i < r->nres; i++) {
		struct resource *res = &r->res[i];
		size_t *sel = calloc(r->inv.nhcas ? r->inv.nhcas : 1, sizeof(*sel)), n = 0;
		bool healthy;

		if (!sel)
			continue;
		for (size_t c = 0; c < r->inv.nnics; c++) {
			const struct rdma_nic *nic = &r->inv.nics[c];

			if (!rdma_nic_matches(nic, &res->rc->sel))
				continue;
			for (size_t h = 0; h < nic->nhcas; h++) {
				bool dup = false;

				for (size_t k = 0; k < n; k++)
					dup |= sel[k] == nic->hcas[h];
				if (!dup)
					sel[n++] = nic->hcas[h];
			}
		}
		if (n != res->nhcas || (n && memcmp(sel, res->hcas, n * sizeof(*sel))))
			res->dirty = true;
		free(res->hcas);
		res->hcas = sel;
		res->nhcas = n;
		healthy = resource_healthy(r, res);
		if (healthy != res->healthy) {
			log_info(healthy ? "rdma_resource_healthy" : "rdma_resource_unhealthy",
				 "resource=%s hcas=%zu", res->full_name, n);
			res->dirty = true;
		}
		res->healthy = healthy;
	}
}

static void netns_mode_check(struct rdma *r);

/* Rediscovers everything, the netns mode included. */
static int rescan(struct rdma *r)
{
	struct rdma_inventory inv;
	int err;

	netns_mode_check(r);
	err = rdma_discover(r->cfg.sysfs_root, r->cfg.dev_root, &inv);

	if (err) {
		log_warn("rdma_discovery_failed", "sysfs=%s err=\"%s\"", r->cfg.sysfs_root,
			 strerror(-err));
		return err;
	}
	pthread_mutex_lock(&r->lock);
	rdma_inventory_free(&r->inv);
	r->inv = inv;
	resources_select(r);
	r->last_scan_ms = now_ms();
	pthread_mutex_unlock(&r->lock);
	log_debug("rdma_rescanned", "nics=%zu hcas=%zu", inv.nnics, inv.nhcas);
	return 0;
}

/* --- the device plugin service ------------------------------------------------ */

static void device_id(const struct resource *res, size_t i, char *buf, size_t len)
{
	snprintf(buf, len, "%.*s-%zu", DP_DEVICE_NAME_MAX, res->rc->name, i);
}

/* The index of device @id of @res (as device_id writes it), or -1. */
static long device_index(const struct resource *res, const char *id)
{
	size_t n = strnlen(res->rc->name, DP_DEVICE_NAME_MAX);
	const char *digits = id + n + 1;
	unsigned long i;
	char *end;

	if (strncmp(id, res->rc->name, n) || id[n] != '-' || *digits < '0' || *digits > '9' ||
	    (digits[0] == '0' && digits[1]))
		return -1;
	errno = 0;
	i = strtoul(digits, &end, 10);
	if (errno || *end || i >= (unsigned long)res->rc->hca_max)
		return -1;
	return (long)i;
}

/* The ListAndWatch message for @res, packed.  Under the lock. */
static uint8_t *pack_devices(const struct resource *res, size_t *len)
{
	size_t n = (size_t)res->rc->hca_max;
	V1beta1__ListAndWatchResponse msg = V1BETA1__LIST_AND_WATCH_RESPONSE__INIT;
	V1beta1__Device *devs = calloc(n ? n : 1, sizeof(*devs));
	V1beta1__Device **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	char (*ids)[DP_DEVICE_ID_MAX + 1] = calloc(n ? n : 1, sizeof(*ids));
	uint8_t *buf = NULL;

	if (!devs || !ptrs || !ids)
		goto out;
	for (size_t i = 0; i < n; i++) {
		v1beta1__device__init(&devs[i]);
		device_id(res, i, ids[i], sizeof(ids[i]));
		devs[i].id = ids[i];
		devs[i].health = res->healthy ? "Healthy" : "Unhealthy";
		ptrs[i] = &devs[i];
	}
	msg.n_devices = n;
	msg.devices = ptrs;
	*len = v1beta1__list_and_watch_response__get_packed_size(&msg);
	buf = malloc(*len ? *len : 1);
	if (buf)
		v1beta1__list_and_watch_response__pack(&msg, buf);
out:
	free(devs);
	free(ptrs);
	free(ids);
	return buf;
}

static void notify_watchers(struct rdma *r, struct resource *res)
{
	size_t len = 0;
	uint8_t *buf;

	pthread_mutex_lock(&r->lock);
	buf = pack_devices(res, &len);
	pthread_mutex_unlock(&r->lock);
	if (!buf)
		return;
	for (struct watcher *w = res->watchers; w; w = w->next) {
		grpc_call_send(w->call, buf, len);
		grpc_conn_flush(grpc_call_conn(w->call));
	}
	free(buf);
}

/* The DeviceSpecs of every selected HCA's char devices plus rdma_cm, the
 * container path being the host path under /dev.  Under the lock. */
static int build_specs(const struct rdma *r, const struct resource *res, V1beta1__DeviceSpec **out,
		       size_t *n)
{
	size_t cap = 1, droot = strlen(r->cfg.dev_root);
	V1beta1__DeviceSpec *specs;

	for (size_t i = 0; i < res->nhcas; i++)
		cap += r->inv.hcas[res->hcas[i]].nchar_devs;
	specs = calloc(cap, sizeof(*specs));
	if (!specs)
		return -ENOMEM;
	*n = 0;
	for (size_t i = 0; i <= res->nhcas; i++) {
		const struct rdma_hca *hca = i < res->nhcas ? &r->inv.hcas[res->hcas[i]] : NULL;
		size_t ndev = hca ? hca->nchar_devs : (r->inv.rdma_cm[0] ? 1 : 0);

		for (size_t d = 0; d < ndev; d++) {
			char *host = hca ? hca->char_devs[d] : (char *)r->inv.rdma_cm;
			V1beta1__DeviceSpec *s = &specs[(*n)++];

			v1beta1__device_spec__init(s);
			s->host_path = host;
			if (asprintf(&s->container_path, "/dev%s", host + droot) < 0)
				s->container_path = NULL;
			s->permissions = "rwm";
		}
	}
	*out = specs;
	return 0;
}

static void answer(struct grpc_call *call, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);

	if (!buf) {
		grpc_call_finish(call, GRPC_STATUS_INTERNAL, "out of memory");
		return;
	}
	protobuf_c_message_pack(msg, buf);
	grpc_call_send(call, buf, len);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	free(buf);
}

static void dp_allocate(struct rdma *r, struct resource *res, struct grpc_call *call,
			const uint8_t *msg, size_t len)
{
	V1beta1__AllocateRequest *req = v1beta1__allocate_request__unpack(NULL, len, msg);
	V1beta1__AllocateResponse resp = V1BETA1__ALLOCATE_RESPONSE__INIT;
	V1beta1__ContainerAllocateResponse *crs = NULL, **crp = NULL;
	V1beta1__DeviceSpec *specs = NULL, **sp = NULL;
	size_t nspecs = 0, nc;
	char err[640] = "";

	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed AllocateRequest");
		return;
	}
	nc = req->n_container_requests;
	pthread_mutex_lock(&r->lock);
	for (size_t c = 0; c < nc && !err[0]; c++)
		for (size_t d = 0; d < req->container_requests[c]->n_devices_ids && !err[0]; d++)
			if (device_index(res, req->container_requests[c]->devices_ids[d]) < 0)
				snprintf(err, sizeof(err), "unknown device %.64s of %s",
					 req->container_requests[c]->devices_ids[d], res->full_name);
	if (!err[0] && !res->nhcas)
		snprintf(err, sizeof(err), "no RDMA device is selected by %s", res->full_name);
	if (!err[0] && build_specs(r, res, &specs, &nspecs))
		snprintf(err, sizeof(err), "out of memory");
	if (!err[0]) {
		res->allocate_calls++;
		for (size_t c = 0; c < nc; c++)
			res->devices_allocated += req->container_requests[c]->n_devices_ids;
	}
	pthread_mutex_unlock(&r->lock);
	if (err[0]) {
		log_warn("rdma_allocate_refused", "resource=%s err=\"%s\"", res->full_name, err);
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, err);
		goto out;
	}
	crs = calloc(nc ? nc : 1, sizeof(*crs));
	crp = calloc(nc ? nc : 1, sizeof(*crp));
	sp = calloc(nspecs ? nspecs : 1, sizeof(*sp));
	if (!crs || !crp || !sp) {
		grpc_call_finish(call, GRPC_STATUS_INTERNAL, "out of memory");
		goto out;
	}
	for (size_t s = 0; s < nspecs; s++)
		sp[s] = &specs[s];
	for (size_t c = 0; c < nc; c++) {
		v1beta1__container_allocate_response__init(&crs[c]);
		crs[c].n_devices = nspecs;
		crs[c].devices = sp;
		crp[c] = &crs[c];
	}
	resp.n_container_responses = nc;
	resp.container_responses = crp;
	log_info("rdma_allocated", "resource=%s containers=%zu device_specs=%zu", res->full_name,
		 nc, nspecs);
	/* the kubelet lists the container's devices once it has this answer */
	if (r->podres_next_ms > now_ms() + DP_TICK_MS)
		r->podres_next_ms = now_ms() + DP_TICK_MS;
	answer(call, &resp.base);
out:
	for (size_t s = 0; s < nspecs; s++)
		free(specs[s].container_path);
	free(specs);
	free(sp);
	free(crs);
	free(crp);
	v1beta1__allocate_request__free_unpacked(req, NULL);
}

/* Every device of a shared resource is the same: the kubelet's required
 * ones first, then the available ones in order. */
static void dp_preferred(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	V1beta1__PreferredAllocationRequest *req =
		v1beta1__preferred_allocation_request__unpack(NULL, len, msg);
	V1beta1__PreferredAllocationResponse resp = V1BETA1__PREFERRED_ALLOCATION_RESPONSE__INIT;
	V1beta1__ContainerPreferredAllocationResponse *crs = NULL, **crp = NULL;
	size_t nc;

	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed request");
		return;
	}
	nc = req->n_container_requests;
	crs = calloc(nc ? nc : 1, sizeof(*crs));
	crp = calloc(nc ? nc : 1, sizeof(*crp));
	for (size_t c = 0; crs && crp && c < nc; c++) {
		V1beta1__ContainerPreferredAllocationRequest *cr = req->container_requests[c];
		size_t want = cr->allocation_size > 0 ? (size_t)cr->allocation_size : 0, n = 0;
		char **ids = calloc(want ? want : 1, sizeof(char *));

		v1beta1__container_preferred_allocation_response__init(&crs[c]);
		crp[c] = &crs[c];
		if (!ids)
			continue;
		for (size_t i = 0; i < cr->n_must_include_deviceids && n < want; i++)
			ids[n++] = cr->must_include_deviceids[i];
		for (size_t i = 0; i < cr->n_available_deviceids && n < want; i++) {
			bool taken = false;

			for (size_t k = 0; k < n; k++)
				taken |= !strcmp(ids[k], cr->available_deviceids[i]);
			if (!taken)
				ids[n++] = cr->available_deviceids[i];
		}
		crs[c].deviceids = ids;
		crs[c].n_deviceids = n;
	}
	if (!crs || !crp) {
		grpc_call_finish(call, GRPC_STATUS_INTERNAL, "out of memory");
	} else {
		resp.n_container_responses = nc;
		resp.container_responses = crp;
		answer(call, &resp.base);
	}
	for (size_t c = 0; crs && c < nc; c++)
		free(crs[c].deviceids);
	free(crs);
	free(crp);
	v1beta1__preferred_allocation_request__free_unpacked(req, NULL);
}

static void dp_on_call(void *ctx, struct grpc_call *call, const char *path, const uint8_t *msg,
		       size_t len)
{
	struct dp_conn *dc = ctx;
	struct resource *res = dc->res;
	struct rdma *r = dc->r;
	const char *method = strncmp(path, DP_PATH_PREFIX, strlen(DP_PATH_PREFIX)) ? "" :
			     path + strlen(DP_PATH_PREFIX);

	log_debug("rdma_dp_call", "resource=%s method=%s", res->full_name, path);
	if (!strcmp(method, "GetDevicePluginOptions")) {
		V1beta1__DevicePluginOptions o = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;

		o.get_preferred_allocation_available = true;
		answer(call, &o.base);
	} else if (!strcmp(method, "ListAndWatch")) {
		struct watcher *w = calloc(1, sizeof(*w));
		size_t blen = 0;
		uint8_t *buf;

		if (!w) {
			grpc_call_finish(call, GRPC_STATUS_INTERNAL, "out of memory");
			return;
		}
		pthread_mutex_lock(&r->lock);
		buf = pack_devices(res, &blen);
		pthread_mutex_unlock(&r->lock);
		w->call = call;
		w->next = res->watchers;
		res->watchers = w;
		if (buf)
			grpc_call_send(call, buf, blen);
		free(buf);
		log_info("rdma_kubelet_watching", "resource=%s", res->full_name);
	} else if (!strcmp(method, "Allocate")) {
		dp_allocate(r, res, call, msg, len);
	} else if (!strcmp(method, "GetPreferredAllocation")) {
		dp_preferred(call, msg, len);
	} else if (!strcmp(method, "PreStartContainer")) {
		V1beta1__PreStartContainerResponse o = V1BETA1__PRE_START_CONTAINER_RESPONSE__INIT;

		answer(call, &o.base);
	} else {
		grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "no such method");
	}
}

static void dp_on_close(void *ctx, struct grpc_call *call)
{
	struct dp_conn *dc = ctx;

	for (struct watcher **w = &dc->res->watchers; *w; w = &(*w)->next)
		if ((*w)->call == call) {
			struct watcher *gone = *w;

			*w = gone->next;
			free(gone);
			log_info("rdma_kubelet_stopped_watching", "resource=%s", dc->res->full_name);
			break;
		}
}

static const struct grpc_server_ops dp_ops = { .on_call = dp_on_call, .on_close = dp_on_close };

static void conn_drop(struct rdma *r, size_t i)
{
	grpc_conn_free(r->conns[i]->gc);
	free(r->conns[i]);
	r->conns[i] = r->conns[--r->nconns];
}

static void conn_accept(struct rdma *r, struct resource *res)
{
	int fd = accept4(res->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	struct dp_conn *dc;

	if (fd < 0)
		return;
	if (r->nconns == DP_MAX_CONNS || !(dc = calloc(1, sizeof(*dc)))) {
		close(fd);
		return;
	}
	dc->r = r;
	dc->res = res;
	if (grpc_conn_new(fd, &dp_ops, dc, &dc->gc)) {
		free(dc);
		return;
	}
	r->conns[r->nconns++] = dc;
}

static void register_cancel(struct resource *res)
{
	grpc_ucall_free(res->reg_call);
	res->reg_call = NULL;
}

static void endpoint_close(struct rdma *r, struct resource *res)
{
	/* the kubelet's connections to the old socket go with it, and a
	 * Register naming it */
	register_cancel(res);
	for (size_t i = r->nconns; i-- > 0;)
		if (r->conns[i]->res == res)
			conn_drop(r, i);
	if (res->listen_fd >= 0) {
		close(res->listen_fd);
		res->listen_fd = -1;
	}
}

/* Serves @res on <devicePluginDir>/<sock_name> (replacing a stale file). */
static int endpoint_open(struct rdma *r, struct resource *res)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, err;

	endpoint_close(r, res);
	if (strlen(res->sock_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, res->sock_path, strlen(res->sock_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(res->sock_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 16) ||
	    stat(res->sock_path, &st)) {
		err = -errno;
		close(fd);
		log_warn("rdma_endpoint_failed", "resource=%s socket=%s err=\"%s\"", res->full_name,
			 res->sock_path, strerror(-err));
		return err;
	}
	res->listen_fd = fd;
	res->sock_ino = st.st_ino;
	pthread_mutex_lock(&r->lock);
	res->kubelet_ino = 0; /* a new endpoint must be registered again */
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static bool same_socket(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static bool registered_with(const struct resource *res, const struct stat *kubelet)
{
	return res->kubelet_ino && res->kubelet_ino == kubelet->st_ino &&
	       res->kubelet_ctime.tv_sec == kubelet->st_ctim.tv_sec &&
	       res->kubelet_ctime.tv_nsec == kubelet->st_ctim.tv_nsec;
}

/* Every failed attempt is logged; the backoff (1 s doubling to 30 s) keeps
 * that to a couple of lines a minute while the kubelet refuses. */
static void register_failed(struct rdma *r, struct resource *res, int status, const char *why)
{
	unsigned int shift;
	long long delay;

	pthread_mutex_lock(&r->lock);
	res->register_failures++;
	res->register_failures_total++;
	shift = res->register_failures - 1 < 5 ? res->register_failures - 1 : 5;
	delay = (long long)DP_TICK_MS << shift;
	if (delay > DP_REGISTER_BACKOFF_MAX_MS)
		delay = DP_REGISTER_BACKOFF_MAX_MS;
	res->register_next_ms = now_ms() + delay;
	snprintf(res->register_error, sizeof(res->register_error), "%s", why);
	pthread_mutex_unlock(&r->lock);
	log_warn("rdma_register_failed",
		 "resource=%s kubelet=%s/" DP_KUBELET_SOCK " attempt=%u status=%d err=\"%s\" retry_in_ms=%lld",
		 res->full_name, r->cfg.plugin_dir, res->register_failures, status, why, delay);
}

/* Places Register; the loop polls it (register_poll) and serves the
 * kubelet's call back to our endpoint meanwhile. */
static void register_start(struct rdma *r, struct resource *res, const struct stat *kubelet)
{
	V1beta1__RegisterRequest req = V1BETA1__REGISTER_REQUEST__INIT;
	V1beta1__DevicePluginOptions opts = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;
	char path[PATH_MAX];
	uint8_t *buf;
	size_t len;
	int err;

	opts.get_preferred_allocation_available = true;
	req.version = DP_API_VERSION;
	req.endpoint = res->sock_name;
	req.resource_name = res->full_name;
	req.options = &opts;
	len = v1beta1__register_request__get_packed_size(&req);
	buf = malloc(len);
	if (!buf) {
		register_failed(r, res, -1, strerror(ENOMEM));
		return;
	}
	v1beta1__register_request__pack(&req, buf);
	snprintf(path, sizeof(path), "%s/" DP_KUBELET_SOCK, r->cfg.plugin_dir);
	err = grpc_ucall_start(path, DP_REGISTER_PATH, buf, len, DP_REGISTER_TIMEOUT_MS,
			       &res->reg_call);
	free(buf);
	res->reg_kubelet = *kubelet;
	if (err)
		register_failed(r, res, -1, strerror(-err));
	else
		log_debug("rdma_registering", "resource=%s kubelet=%s attempt=%u", res->full_name,
			  path, res->register_failures + 1);
}

/* Advances @res's Register; when it is over, records the outcome. */
static void register_poll(struct rdma *r, struct resource *res)
{
	const uint8_t *resp;
	const char *msg;
	size_t rlen;
	int status, err;

	if (!res->reg_call || grpc_ucall_step(res->reg_call) == -EINPROGRESS)
		return;
	err = grpc_ucall_result(res->reg_call, &status, &resp, &rlen, &msg);
	if (err || status != GRPC_STATUS_OK) {
		char why[320];

		snprintf(why, sizeof(why), "%s", msg[0] ? msg : err ? strerror(-err) : "refused");
		register_cancel(res);
		register_failed(r, res, status, why);
		return;
	}
	register_cancel(res);
	pthread_mutex_lock(&r->lock);
	res->kubelet_ino = res->reg_kubelet.st_ino;
	res->kubelet_ctime = res->reg_kubelet.st_ctim;
	res->register_error[0] = '\0';
	pthread_mutex_unlock(&r->lock);
	log_info("rdma_registered", "resource=%s endpoint=%s kubelet=%s/" DP_KUBELET_SOCK " attempt=%u",
		 res->full_name, res->sock_name, r->cfg.plugin_dir, res->register_failures + 1);
	res->register_failures = 0;
}

/* Re-creates an endpoint whose socket file vanished (the kubelet wipes its
 * directory when it restarts) and registers with every new kubelet.sock. */
static void kubelet_watch(struct rdma *r)
{
	char path[PATH_MAX];
	long long now = now_ms();
	struct stat st;
	bool kubelet_up;

	snprintf(path, sizeof(path), "%s/" DP_KUBELET_SOCK, r->cfg.plugin_dir);
	kubelet_up = !stat(path, &st) && S_ISSOCK(st.st_mode);
	if (kubelet_up != (r->kubelet_state > 0)) {
		if (kubelet_up)
			log_info("rdma_kubelet_present", "kubelet=%s", path);
		else
			log_warn("rdma_kubelet_absent", "kubelet=%s err=\"no socket: nothing to register with\"",
				 path);
		r->kubelet_state = kubelet_up ? 1 : -1;
	}
	for (size_t i = 0; i < r->nres; i++) {
		struct resource *res = &r->res[i];
		struct stat own;

		if (res->listen_fd < 0 || stat(res->sock_path, &own) || own.st_ino != res->sock_ino) {
			if (res->listen_fd >= 0)
				log_info("rdma_endpoint_gone", "resource=%s socket=%s", res->full_name,
					 res->sock_path);
			if (endpoint_open(r, res))
				continue;
		}
		if (!kubelet_up) {
			register_cancel(res);
			pthread_mutex_lock(&r->lock);
			res->kubelet_ino = 0;
			snprintf(res->register_error, sizeof(res->register_error),
				 "no kubelet socket at %.200s", path);
			pthread_mutex_unlock(&r->lock);
			continue;
		}
		if (registered_with(res, &st))
			continue;
		if (res->kubelet_ino) { /* a new kubelet: registered with none now */
			pthread_mutex_lock(&r->lock);
			res->kubelet_ino = 0;
			pthread_mutex_unlock(&r->lock);
		}
		if (res->reg_call) {
			if (same_socket(&res->reg_kubelet, &st))
				continue; /* under way */
			register_cancel(res); /* a new kubelet came meanwhile */
		}
		/* a new kubelet gets an attempt at once, whatever the old one did */
		if (!same_socket(&res->reg_kubelet, &st)) {
			res->register_next_ms = 0;
			res->register_failures = 0;
		}
		/* half a tick early rather than a whole tick late */
		if (now + DP_TICK_MS / 2 >= res->register_next_ms)
			register_start(r, res, &st);
	}
}

/* --- devices in use: the kubelet's PodResources API ----------------------------- */

static void podres_down(struct rdma *r, const char *why)
{
	int was;

	pthread_mutex_lock(&r->lock);
	was = r->podres_state;
	r->podres_state = -1;
	snprintf(r->podres_error, sizeof(r->podres_error), "%s", why);
	pthread_mutex_unlock(&r->lock);
	if (was != -1)
		log_warn("rdma_pod_resources_unavailable",
			 "socket=%s err=\"%s\" allocated=\"pod NICs until it answers\"",
			 r->cfg.pod_resources_socket, why);
}

/* Counts, per resource, the distinct devices the kubelet has given to the
 * containers it runs. */
static void podres_count(struct rdma *r, const V1__ListPodResourcesResponse *list)
{
	for (size_t i = 0; i < r->nres; i++) {
		struct resource *res = &r->res[i];
		size_t n = 0;

		memset(res->in_use, 0, ((size_t)res->rc->hca_max + 7) / 8);
		for (size_t p = 0; p < list->n_pod_resources; p++) {
			const V1__PodResources *pod = list->pod_resources[p];

			for (size_t c = 0; c < pod->n_containers; c++)
				for (size_t d = 0; d < pod->containers[c]->n_devices; d++) {
					const V1__ContainerDevices *cd = pod->containers[c]->devices[d];

					if (strcmp(cd->resource_name, res->full_name))
						continue;
					for (size_t k = 0; k < cd->n_device_ids; k++) {
						long idx = device_index(res, cd->device_ids[k]);

						if (idx < 0 || res->in_use[idx / 8] & (1u << (idx % 8)))
							continue;
						res->in_use[idx / 8] |= (unsigned char)(1u << (idx % 8));
						n++;
					}
				}
		}
		pthread_mutex_lock(&r->lock);
		if (res->kubelet_in_use != n || r->podres_state != 1)
			log_info("rdma_devices_in_use", "resource=%s devices=%zu capacity=%lld",
				 res->full_name, n, res->rc->hca_max);
		res->kubelet_in_use = n;
		pthread_mutex_unlock(&r->lock);
	}
}

static void podres_poll(struct rdma *r)
{
	V1__ListPodResourcesResponse *list;
	const uint8_t *resp;
	const char *msg;
	size_t len;
	int status, err;
	char why[320];

	if (!r->podres_call || grpc_ucall_step(r->podres_call) == -EINPROGRESS)
		return;
	err = grpc_ucall_result(r->podres_call, &status, &resp, &len, &msg);
	if (err || status != GRPC_STATUS_OK) {
		snprintf(why, sizeof(why), "List: %s (status %d)",
			 msg[0] ? msg : err ? strerror(-err) : "refused", status);
		podres_down(r, why);
	} else if (!(list = v1__list_pod_resources_response__unpack(NULL, len, resp))) {
		podres_down(r, "List: a malformed ListPodResourcesResponse");
	} else {
		int was;

		podres_count(r, list);
		v1__list_pod_resources_response__free_unpacked(list, NULL);
		pthread_mutex_lock(&r->lock);
		was = r->podres_state;
		r->podres_state = 1;
		r->podres_error[0] = '\0';
		pthread_mutex_unlock(&r->lock);
		if (was != 1)
			log_info("rdma_pod_resources", "socket=%s", r->cfg.pod_resources_socket);
	}
	grpc_ucall_free(r->podres_call);
	r->podres_call = NULL;
}

/* Asks the kubelet which devices its containers hold, every
 * podResourcesInterval and a tick after each Allocate. */
static void podres_tick(struct rdma *r, long long now)
{
	V1__ListPodResourcesRequest req = V1__LIST_POD_RESOURCES_REQUEST__INIT;
	uint8_t buf[16];
	char why[320];
	struct stat st;
	size_t len;
	int err;

	if (!r->cfg.pod_resources_socket[0] || r->podres_call || now < r->podres_next_ms)
		return;
	r->podres_next_ms = now + r->cfg.pod_resources_interval_s * 1000;
	if (stat(r->cfg.pod_resources_socket, &st) || !S_ISSOCK(st.st_mode)) {
		snprintf(why, sizeof(why), "no socket at %.200s", r->cfg.pod_resources_socket);
		podres_down(r, why);
		return;
	}
	len = v1__list_pod_resources_request__pack(&req, buf);
	err = grpc_ucall_start(r->cfg.pod_resources_socket, PR_LIST_PATH, buf, len, PR_TIMEOUT_MS,
			       &r->podres_call);
	if (err)
		podres_down(r, strerror(-err));
}

/* --- attachments and GID indexes ------------------------------------------------ */

static struct attachment *attachment_find(struct rdma *r, const char *network,
					  const char *container_id, const char *ifname)
{
	for (struct attachment *a = r->attachments; a; a = a->next)
		if (!strcmp(a->network, network) && !strcmp(a->container_id, container_id) &&
		    !strcmp(a->ifname, ifname))
			return a;
	return NULL;
}

static const struct rdma_hca *hca_by_name(const struct rdma *r, const char *name)
{
	for (size_t i = 0; i < r->inv.nhcas; i++)
		if (!strcmp(r->inv.hcas[i].name, name))
			return &r->inv.hcas[i];
	return NULL;
}

/* Looks for @a's GID; under the lock.  True when it is (now) known. */
static bool gid_resolve(struct rdma *r, struct attachment *a)
{
	const struct rdma_hca *hca = hca_by_name(r, a->hca);

	for (size_t i = 0; hca && a->gid_index < 0 && i < a->naddrs; i++) {
		int idx = rdma_gid_find(hca, a->port, a->families[i], a->addrs[i], a->ifname);

		if (idx >= 0) {
			a->gid_index = idx;
			log_info("rdma_gid_found", "container=%.12s ifname=%s device=%s port=%u gid_index=%d",
				 a->container_id, a->ifname, a->hca, a->port, idx);
		}
	}
	return a->gid_index >= 0;
}

static void gids_resolve_pending(struct rdma *r)
{
	pthread_mutex_lock(&r->lock);
	for (struct attachment *a = r->attachments; a; a = a->next)
		if (a->gid_index < 0)
			gid_resolve(r, a);
	pthread_mutex_unlock(&r->lock);
}

static struct resource *resource_by_name(struct rdma *r, const char *name)
{
	for (size_t i = 0; i < r->nres; i++)
		if (!strcmp(r->res[i].full_name, name) || !strcmp(r->res[i].rc->name, name))
			return &r->res[i];
	return NULL;
}

static int parse_addr(const char *s, int *family, unsigned char *out)
{
	char buf[64];
	char *slash;

	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, out) == 1)
		*family = AF_INET;
	else if (inet_pton(AF_INET6, buf, out) == 1)
		*family = AF_INET6;
	else
		return -EINVAL;
	return 0;
}

static void attachment_result(const struct attachment *a, struct json_object *result)
{
	json_object_object_add(result, "device", json_object_new_string(a->hca));
	json_object_object_add(result, "port", json_object_new_int((int)a->port));
	json_object_object_add(result, "gidIndex",
			       a->gid_index >= 0 ? json_object_new_int(a->gid_index) : NULL);
}

/* --- attachments across restarts ------------------------------------------------ */

/* Writes every attachment to the state file (write, fsync, rename), so that
 * a restarted railnetd still counts the pod NICs and finds their GIDs.
 * Under the lock.  A failure is logged: the accounting stays right in
 * memory, only a restart would lose it. */
static void attachments_save(struct rdma *r)
{
	struct json_object *arr;
	char tmp[PATH_MAX];
	const char *text;
	int fd, err = 0;
	size_t len;

	if (!r->state_file || r->loading)
		return;
	arr = json_object_new_array();
	for (const struct attachment *a = r->attachments; a; a = a->next) {
		struct json_object *o = json_object_new_object(), *ips = json_object_new_array();
		char addr[INET6_ADDRSTRLEN];

		json_object_object_add(o, "network", json_object_new_string(a->network));
		json_object_object_add(o, "containerID", json_object_new_string(a->container_id));
		json_object_object_add(o, "ifName", json_object_new_string(a->ifname));
		json_object_object_add(o, "netns", json_object_new_string(a->netns));
		json_object_object_add(o, "master", json_object_new_string(a->master));
		json_object_object_add(o, "rdmaResourceName", json_object_new_string(a->resource));
		for (size_t i = 0; i < a->naddrs; i++)
			if (inet_ntop(a->families[i], a->addrs[i], addr, sizeof(addr)))
				json_object_array_add(ips, json_object_new_string(addr));
		json_object_object_add(o, "ips", ips);
		json_object_object_add(o, "since", json_object_new_int64((int64_t)a->since));
		json_object_array_add(arr, o);
	}
	text = json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN);
	len = strlen(text);
	snprintf(tmp, sizeof(tmp), "%s.tmp", r->state_file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd))
		err = -errno;
	if (fd >= 0 && close(fd) && !err)
		err = -errno;
	if (!err && rename(tmp, r->state_file))
		err = -errno;
	if (err) {
		log_warn("rdma_state_save_failed", "file=%s err=\"%s\"", r->state_file, strerror(-err));
		unlink(tmp);
	}
	json_object_put(arr);
}

/* Re-attaches the pod NICs of the state file, dropping those whose network
 * namespace is gone (their pod was deleted while railnetd was away). */
static void attachments_load(struct rdma *r)
{
	struct json_object *arr = json_object_from_file(r->state_file);
	size_t kept = 0, dropped = 0;

	if (!arr) {
		if (access(r->state_file, F_OK) == 0)
			log_warn("rdma_state_unreadable", "file=%s", r->state_file);
		return;
	}
	r->loading = true;
	for (size_t i = 0; json_object_is_type(arr, json_type_array) &&
			   i < json_object_array_length(arr); i++) {
		struct json_object *o = json_object_array_get_idx(arr, i), *ips, *v;
		struct rdma_attach_req req = { 0 };
		struct json_object *res = json_object_new_object();
		char errbuf[256];
		bool not_found;
		struct stat st;

#define FIELD(k) (json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL)
		req.network = FIELD("network");
		req.container_id = FIELD("containerID");
		req.ifname = FIELD("ifName");
		req.netns = FIELD("netns");
		req.master = FIELD("master");
		req.resource = FIELD("rdmaResourceName");
#undef FIELD
		if (req.resource && !req.resource[0])
			req.resource = NULL;
		if (json_object_object_get_ex(o, "ips", &ips))
			for (size_t k = 0; k < json_object_array_length(ips) && k < 4; k++)
				req.addrs[req.naddrs++] =
					json_object_get_string(json_object_array_get_idx(ips, k));
		if (!req.network || !req.container_id || !req.ifname || !req.master) {
			dropped++;
		} else if (req.netns && req.netns[0] == '/' && stat(req.netns, &st) && errno == ENOENT) {
			log_info("rdma_attachment_gone", "container=%.12s ifname=%s netns=%s",
				 req.container_id, req.ifname, req.netns);
			dropped++;
		} else if (rdma_attach(r, &req, res, &not_found, errbuf, sizeof(errbuf))) {
			log_warn("rdma_attachment_dropped", "container=%.12s ifname=%s err=\"%s\"",
				 req.container_id, req.ifname, errbuf);
			dropped++;
		} else {
			kept++;
		}
		json_object_put(res);
	}
	r->loading = false;
	json_object_put(arr);
	log_info("rdma_state_loaded", "file=%s attachments=%zu dropped=%zu", r->state_file, kept,
		 dropped);
	if (dropped)
		attachments_save(r);
}

int rdma_attach(struct rdma *r, const struct rdma_attach_req *req, struct json_object *result,
		bool *not_found, char *errbuf, size_t errlen)
{
	struct attachment *a, fresh = { .gid_index = -1 };
	const struct rdma_nic *nic;
	const struct rdma_hca *hca = NULL;
	struct resource *res = NULL;
	unsigned int port = 0;
	long long deadline;

	*not_found = false;
	if (req->naddrs > 4) {
		snprintf(errbuf, errlen, "at most 4 ips");
		return -EINVAL;
	}
	for (size_t i = 0; i < req->naddrs; i++)
		if (parse_addr(req->addrs[i], &fresh.families[i], fresh.addrs[i])) {
			snprintf(errbuf, errlen, "ips[%zu].address \"%s\" is not an IP address", i,
				 req->addrs[i]);
			return -EINVAL;
		}
	fresh.naddrs = req->naddrs;
	pthread_mutex_lock(&r->lock);
	nic = rdma_nic_by_name(&r->inv, req->master);
	if (!nic) { /* a master plugged in since the last scan */
		pthread_mutex_unlock(&r->lock);
		rescan(r);
		pthread_mutex_lock(&r->lock);
		nic = rdma_nic_by_name(&r->inv, req->master);
	}
	if (req->resource && !(res = resource_by_name(r, req->resource))) {
		snprintf(errbuf, errlen, "no RDMA resource %s is configured", req->resource);
		goto bad;
	}
	if (!nic || !(hca = rdma_nic_hca(&r->inv, nic, &port))) {
		snprintf(errbuf, errlen, "master %s has no RDMA device", req->master);
		*not_found = true;
		goto bad;
	}
	if (res && !resource_has_hca(r, res, hca->name)) {
		snprintf(errbuf, errlen, "%s (behind master %s) is not selected by resource %s",
			 hca->name, req->master, res->full_name);
		goto bad;
	}
	a = attachment_find(r, req->network, req->container_id, req->ifname);
	if (!a) {
		a = calloc(1, sizeof(*a));
		if (!a) {
			pthread_mutex_unlock(&r->lock);
			return -ENOMEM;
		}
		a->next = r->attachments;
		r->attachments = a;
		snprintf(a->network, sizeof(a->network), "%s", req->network);
		snprintf(a->container_id, sizeof(a->container_id), "%s", req->container_id);
		snprintf(a->ifname, sizeof(a->ifname), "%s", req->ifname);
		a->since = time(NULL);
		if (res)
			res->attached++;
	} else if (strcmp(a->resource, res ? res->full_name : "")) {
		struct resource *old = resource_by_name(r, a->resource);

		if (old)
			old->attached--;
		if (res)
			res->attached++;
	}
	snprintf(a->master, sizeof(a->master), "%s", req->master);
	snprintf(a->netns, sizeof(a->netns), "%s", req->netns ? req->netns : "");
	snprintf(a->resource, sizeof(a->resource), "%s", res ? res->full_name : "");
	snprintf(a->hca, sizeof(a->hca), "%s", hca->name);
	a->port = port;
	a->gid_index = -1;
	memcpy(a->families, fresh.families, sizeof(a->families));
	memcpy(a->addrs, fresh.addrs, sizeof(a->addrs));
	a->naddrs = fresh.naddrs;
	log_info("rdma_attached", "container=%.12s ifname=%s master=%s device=%s port=%u resource=%s",
		 a->container_id, a->ifname, a->master, a->hca, a->port, a->resource);
	attachments_save(r);
	/* The kernel adds the NIC's GID moments after its address: wait a
	 * little, then leave it to the module's tick (a replay at start does
	 * not wait). */
	deadline = r->loading ? 0 : now_ms() + r->opts.gid_wait_ms;
	while (!gid_resolve(r, a) && now_ms() < deadline) {
		pthread_mutex_unlock(&r->lock);
		usleep(20 * 1000);
		pthread_mutex_lock(&r->lock);
		a = attachment_find(r, req->network, req->container_id, req->ifname);
		if (!a) { /* detached meanwhile */
			pthread_mutex_unlock(&r->lock);
			snprintf(errbuf, errlen, "detached while attaching");
			return -ECANCELED;
		}
	}
	attachment_result(a, result);
	pthread_mutex_unlock(&r->lock);
	return 0;
bad:
	pthread_mutex_unlock(&r->lock);
	return -EINVAL;
}

int rdma_forget(struct rdma *r, const char *network, const char *container_id,
		const char *ifname)
{
	int n = 0;

	if (!r)
		return 0;
	if (!container_id || !container_id[0])
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	for (struct attachment **p = &r->attachments; *p;) {
		struct attachment *a = *p;
		struct resource *res;

		if ((network && strcmp(a->network, network)) || strcmp(a->container_id, container_id) ||
		    (ifname && strcmp(a->ifname, ifname))) {
			p = &a->next;
			continue;
		}
		res = a->resource[0] ? resource_by_name(r, a->resource) : NULL;
		if (res)
			res->attached--;
		*p = a->next;
		log_info("rdma_detached", "container=%.12s ifname=%s network=%s device=%s",
			 a->container_id, a->ifname, a->network, a->hca);
		free(a);
		n++;
	}
	if (n)
		attachments_save(r);
	pthread_mutex_unlock(&r->lock);
	return n;
}

bool rdma_detach(struct rdma *r, const char *network, const char *container_id,
		 const char *ifname)
{
	return network && ifname && rdma_forget(r, network, container_id, ifname) > 0;
}

/* --- status ------------------------------------------------------------------- */

/* What a resource has handed out (docs/rdma.md#accounting): the devices the
 * kubelet's containers hold while its PodResources API answers, else the
 * pod NICs attached through the resource.  Under the lock. */
static size_t resource_allocated(const struct rdma *r, const struct resource *res,
				 const char **source)
{
	if (r->podres_state == 1) {
		*source = "podResources";
		return res->kubelet_in_use;
	}
	*source = "podNICs";
	return res->attached;
}

static struct json_object *string_or_null(const char *s)
{
	return s[0] ? json_object_new_string(s) : NULL;
}

struct json_object *rdma_status_json(struct rdma *r)
{
	struct json_object *o = json_object_new_object(), *devs = json_object_new_array();
	struct json_object *ress = json_object_new_array(), *atts = json_object_new_array();

	pthread_mutex_lock(&r->lock);
	json_object_object_add(o, "netnsMode", json_object_new_string(r->netns_mode));
	json_object_object_add(o, "netnsShared",
			       r->netns_shared < 0 ? NULL : json_object_new_boolean(r->netns_shared));
	{
		struct json_object *pr = json_object_new_object();

		json_object_object_add(pr, "socket",
				       string_or_null(r->cfg.pod_resources_socket));
		json_object_object_add(pr, "available",
				       json_object_new_boolean(r->podres_state == 1));
		json_object_object_add(pr, "error", string_or_null(r->podres_error));
		json_object_object_add(o, "podResources", pr);
	}
	for (size_t i = 0; i < r->inv.nhcas; i++) {
		const struct rdma_hca *h = &r->inv.hcas[i];
		struct json_object *d = json_object_new_object(), *ports = json_object_new_array();
		struct json_object *cdev = json_object_new_array();

		json_object_object_add(d, "name", json_object_new_string(h->name));
		json_object_object_add(d, "pci", json_object_new_string(h->pci));
		json_object_object_add(d, "netdev", json_object_new_string(h->netdev));
		for (size_t p = 0; p < h->nports; p++) {
			struct json_object *po = json_object_new_object();

			json_object_object_add(po, "port", json_object_new_int((int)h->ports[p].num));
			json_object_object_add(po, "state",
					       json_object_new_string(h->ports[p].state_name));
			json_object_object_add(po, "linkLayer",
					       json_object_new_string(h->ports[p].link_layer));
			json_object_object_add(po, "netdev", string_or_null(h->ports[p].netdev));
			json_object_array_add(ports, po);
		}
		json_object_object_add(d, "ports", ports);
		for (size_t c = 0; c < h->nchar_devs; c++)
			json_object_array_add(cdev, json_object_new_string(h->char_devs[c]));
		json_object_object_add(d, "charDevices", cdev);
		json_object_array_add(devs, d);
	}
	for (size_t i = 0; i < r->nres; i++) {
		const struct resource *res = &r->res[i];
		struct json_object *ro = json_object_new_object(), *hcas = json_object_new_array();
		long long cap = res->rc->hca_max;
		const char *source;
		size_t allocated = resource_allocated(r, res, &source);

		json_object_object_add(ro, "name", json_object_new_string(res->full_name));
		json_object_object_add(ro, "socket", json_object_new_string(res->sock_path));
		json_object_object_add(ro, "registered", json_object_new_boolean(res->kubelet_ino != 0));
		json_object_object_add(ro, "healthy", json_object_new_boolean(res->healthy));
		for (size_t h = 0; h < res->nhcas; h++)
			json_object_array_add(hcas,
					      json_object_new_string(r->inv.hcas[res->hcas[h]].name));
		json_object_object_add(ro, "devices", hcas);
		json_object_object_add(ro, "capacity", json_object_new_int64(cap));
		json_object_object_add(ro, "allocated", json_object_new_int64((int64_t)allocated));
		json_object_object_add(ro, "free",
				       json_object_new_int64(cap > (long long)allocated ?
							     cap - (long long)allocated : 0));
		json_object_object_add(ro, "allocatedSource", json_object_new_string(source));
		json_object_object_add(ro, "podNICs", json_object_new_int64((int64_t)res->attached));
		json_object_object_add(ro, "kubeletDevicesAllocated",
				       r->podres_state == 1 ?
				       json_object_new_int64((int64_t)res->kubelet_in_use) : NULL);
		json_object_object_add(ro, "kubeletAllocateCalls",
				       json_object_new_uint64(res->allocate_calls));
		json_object_object_add(ro, "kubeletDevicesAllocatedTotal",
				       json_object_new_uint64(res->devices_allocated));
		json_object_object_add(ro, "registerFailures",
				       json_object_new_uint64(res->register_failures_total));
		json_object_object_add(ro, "registerError", string_or_null(res->register_error));
		json_object_array_add(ress, ro);
	}
	for (const struct attachment *a = r->attachments; a; a = a->next) {
		struct json_object *ao = json_object_new_object();

		json_object_object_add(ao, "network", json_object_new_string(a->network));
		json_object_object_add(ao, "containerID", json_object_new_string(a->container_id));
		json_object_object_add(ao, "ifName", json_object_new_string(a->ifname));
		json_object_object_add(ao, "master", json_object_new_string(a->master));
		json_object_object_add(ao, "resource", json_object_new_string(a->resource));
		attachment_result(a, ao);
		json_object_array_add(atts, ao);
	}
	pthread_mutex_unlock(&r->lock);
	json_object_object_add(o, "devices", devs);
	json_object_object_add(o, "resources", ress);
	json_object_object_add(o, "attachments", atts);
	return o;
}

/* --- the loop ------------------------------------------------------------------- */

/* A non-blocking netlink socket of @protocol listening to @groups. */
static int monitor_open(int protocol, unsigned int groups)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = groups };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* Drains the device events; true when one was of an RDMA device.  The
 * sender is not checked: an event only asks for a rescan, and sysfs says
 * what is there. */
static bool uevents(int fd)
{
	char buf[8192];
	bool any = false;
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
		buf[n] = '\0';
		/* "ACTION@DEVPATH\0KEY=VALUE\0..." */
		for (char *p = buf; p < buf + n; p += strlen(p) + 1)
			any |= !strcmp(p, "SUBSYSTEM=infiniband") ||
			       !strcmp(p, "SUBSYSTEM=infiniband_verbs");
	}
	return any;
}

/* Drains the link monitor; true when a netdev came or went or changed. */
static bool link_events(int fd)
{
	char buf[16384];
	bool any = false;
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n);
		     nh = NLMSG_NEXT(nh, n))
			any |= nh->nlmsg_type == RTM_NEWLINK || nh->nlmsg_type == RTM_DELLINK;
	return any;
}

/* Re-reads the port states (@full: rediscovers everything) and sends the
 * kubelet a new device list for every resource that changed. */
static void refresh(struct rdma *r, bool full)
{
	if (full) {
		rescan(r);
	} else {
		pthread_mutex_lock(&r->lock);
		if (rdma_refresh_ports(&r->inv))
			resources_select(r);
		pthread_mutex_unlock(&r->lock);
	}
	for (size_t i = 0; i < r->nres; i++) {
		bool dirty;

		pthread_mutex_lock(&r->lock);
		dirty = r->res[i].dirty;
		r->res[i].dirty = false;
		pthread_mutex_unlock(&r->lock);
		if (dirty)
			notify_watchers(r, &r->res[i]);
	}
}

/* The RDMA netns mode, asked again every NETNS_CHECK_MS and on each full
 * rescan (`rdma system set netns` sends no event); logged when it changes. */
static void netns_mode_check(struct rdma *r)
{
	char mode[sizeof(r->netns_mode)];
	bool shared = true, changed;
	int err = r->opts.netns_mode(&shared);
	int state = err ? -1 : shared;

	if (err == -EPROTONOSUPPORT)
		snprintf(mode, sizeof(mode), "RDMA subsystem not present");
	else if (err)
		snprintf(mode, sizeof(mode), "unknown (%s)", strerror(-err));
	else
		snprintf(mode, sizeof(mode), "%s", shared ? "shared" : "exclusive");
	pthread_mutex_lock(&r->lock);
	changed = strcmp(mode, r->netns_mode) != 0;
	snprintf(r->netns_mode, sizeof(r->netns_mode), "%s", mode);
	r->netns_shared = state;
	r->netns_checked_ms = now_ms();
	pthread_mutex_unlock(&r->lock);
	if (!changed)
		return;
	if (state != 1)
		log_warn("rdma_netns_mode", "mode=\"%s\" err=\"%s\"", mode,
			 err ? "the netns mode could not be read" :
			       "pods see no shared HCA: set `rdma system set netns shared`");
	else
		log_info("rdma_netns_mode", "mode=shared");
}

static void *rdma_loop(void *arg)
{
	struct rdma *r = arg;
	long long next_tick = now_ms();

	for (;;) {
		struct pollfd pfds[4 + 2 * RDMA_MAX_RESOURCES + DP_MAX_CONNS];
		int reg_pfd[RDMA_MAX_RESOURCES], podres_pfd = -1;
		size_t np = 0, first_res, first_conn, end_conn;
		long long now = now_ms();
		int timeout = next_tick > now ? (int)(next_tick - now) : 0;
		uint64_t v;

		pfds[np++] = (struct pollfd){ .fd = r->wake_fd, .events = POLLIN };
		pfds[np++] = (struct pollfd){ .fd = r->link_fd, .events = POLLIN };
		pfds[np++] = (struct pollfd){ .fd = r->uevent_fd, .events = POLLIN };
		first_res = np;
		for (size_t i = 0; i < r->nres; i++)
			pfds[np++] = (struct pollfd){ .fd = r->res[i].listen_fd, .events = POLLIN };
		first_conn = np;
		for (size_t i = 0; i < r->nconns; i++)
			pfds[np++] = (struct pollfd){ .fd = grpc_conn_fd(r->conns[i]->gc),
						      .events = POLLIN };
		end_conn = np;
		/* the client calls in flight: Register (answered only once the
		 * kubelet has called us back) and PodResources List */
		for (size_t i = 0; i < r->nres; i++) {
			struct grpc_ucall *c = r->res[i].reg_call;

			reg_pfd[i] = -1;
			if (c && grpc_ucall_fd(c) >= 0) {
				reg_pfd[i] = (int)np;
				pfds[np++] = (struct pollfd){ .fd = grpc_ucall_fd(c),
							      .events = grpc_ucall_events(c) };
			}
		}
		if (r->podres_call && grpc_ucall_fd(r->podres_call) >= 0) {
			podres_pfd = (int)np;
			pfds[np++] = (struct pollfd){ .fd = grpc_ucall_fd(r->podres_call),
						      .events = grpc_ucall_events(r->podres_call) };
		}
		if (poll(pfds, np, timeout) < 0 && errno != EINTR)
			break;
		if (pfds[0].revents && read(r->wake_fd, &v, sizeof(v)) == sizeof(v) && r->stopping)
			break;
		if (pfds[1].revents && link_events(r->link_fd))
			r->rescan_due = true; /* CNI ADDs come in bursts: once per tick */
		if (pfds[2].revents && uevents(r->uevent_fd))
			r->rescan_due = true;
		for (size_t i = first_res; i < first_conn; i++)
			if (pfds[i].revents & POLLIN)
				conn_accept(r, &r->res[i - first_res]);
		/* back to front: conn_drop moves the last connection into the hole */
		for (size_t i = end_conn; i-- > first_conn;) {
			size_t c = i - first_conn;

			if (c < r->nconns && pfds[i].revents && grpc_conn_on_readable(r->conns[c]->gc))
				conn_drop(r, c);
		}
		for (size_t i = 0; i < r->nres; i++)
			if (reg_pfd[i] >= 0 && pfds[reg_pfd[i]].revents)
				register_poll(r, &r->res[i]);
		if (podres_pfd >= 0 && pfds[podres_pfd].revents)
			podres_poll(r);
		now = now_ms();
		if (now >= next_tick) {
			bool full, netns_due;

			pthread_mutex_lock(&r->lock);
			full = r->rescan_due || (r->cfg.update_interval_s > 0 &&
						 now - r->last_scan_ms >= r->cfg.update_interval_s * 1000);
			netns_due = now - r->netns_checked_ms >= NETNS_CHECK_MS;
			pthread_mutex_unlock(&r->lock);
			r->rescan_due = false;
			refresh(r, full); /* a full one asks the netns mode too */
			if (!full && netns_due)
				netns_mode_check(r);
			gids_resolve_pending(r);
			/* the calls' deadlines */
			for (size_t i = 0; i < r->nres; i++)
				register_poll(r, &r->res[i]);
			podres_poll(r);
			kubelet_watch(r);
			podres_tick(r, now);
			next_tick = now + DP_TICK_MS;
		}
	}
	return NULL;
}

int rdma_start(struct rdma_config *cfg, const struct rdma_options *opts, struct rdma **out)
{
	struct rdma *r = calloc(1, sizeof(*r));
	int err = -ENOMEM;

	if (!r)
		return -ENOMEM;
	r->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	r->opts.netns_mode = opts && opts->netns_mode ? opts->netns_mode : rdma_netns_mode_netlink;
	r->opts.gid_wait_ms = opts && opts->gid_wait_ms ? opts->gid_wait_ms : 300;
	if (opts && opts->state_file && !(r->state_file = strdup(opts->state_file)))
		goto fail;
	r->wake_fd = r->link_fd = r->uevent_fd = -1;
	r->netns_shared = -1;
	pthread_mutex_init(&r->lock, NULL);
	r->res = calloc(r->cfg.nresources ? r->cfg.nresources : 1, sizeof(*r->res));
	if (!r->res)
		goto fail;
	for (size_t i = 0; i < r->cfg.nresources; i++) {
		struct resource *res = &r->res[i];

		r->nres = i + 1; /* what rdma_stop undoes on failure */
		res->rc = &r->cfg.resources[i];
		res->listen_fd = -1;
		res->in_use = calloc(((size_t)res->rc->hca_max + 7) / 8 + 1, 1);
		if (!res->in_use)
			goto fail;
		rdma_resource_full_name(res->rc, res->full_name, sizeof(res->full_name));
		snprintf(res->sock_name, sizeof(res->sock_name), "railnet-%s.sock", res->rc->name);
		snprintf(res->sock_path, sizeof(res->sock_path), "%s/%s", r->cfg.plugin_dir,
			 res->sock_name);
	}
	err = rescan(r);
	if (err)
		goto fail;
	if (r->state_file)
		attachments_load(r);
	r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->link_fd = monitor_open(NETLINK_ROUTE, RTMGRP_LINK);
	if (r->wake_fd < 0 || r->link_fd < 0) {
		err = r->wake_fd < 0 ? -errno : r->link_fd;
		goto fail;
	}
	/* The kernel's device events: an RDMA device can come or go with no
	 * netdev event (mlx5_ib loaded after mlx5_core, an HCA renamed). */
	r->uevent_fd = monitor_open(NETLINK_KOBJECT_UEVENT, 1);
	if (r->uevent_fd < 0) /* poll() passes over a negative fd */
		log_warn("rdma_uevents_unavailable", "err=\"%s\" state=\"%s\"", strerror(-r->uevent_fd),
			 "RDMA devices that come without a netdev event are found at the rescan interval");
	for (size_t i = 0; i < r->nres; i++)
		log_info("rdma_resource", "resource=%s hcas=%zu healthy=%s capacity=%lld socket=%s",
			 r->res[i].full_name, r->res[i].nhcas, r->res[i].healthy ? "yes" : "no",
			 r->res[i].rc->hca_max, r->res[i].sock_path);
	err = pthread_create(&r->thread, NULL, rdma_loop, r);
	if (err) {
		err = -err;
		goto fail;
	}
	r->thread_started = true;
	*out = r;
	return 0;
fail:
	rdma_stop(r);
	return err;
}

void rdma_stop(struct rdma *r)
{
	uint64_t one = 1;

	if (!r)
		return;
	if (r->thread_started) {
		r->stopping = true;
		if (write(r->wake_fd, &one, sizeof(one)) != sizeof(one))
			log_warn("rdma_stop_wake_failed", "err=\"%s\"", strerror(errno));
		pthread_join(r->thread, NULL);
	}
	for (size_t i = 0; i < r->nres; i++) {
		endpoint_close(r, &r->res[i]);
		if (r->res[i].sock_ino)
			unlink(r->res[i].sock_path);
		free(r->res[i].hcas);
		free(r->res[i].in_use);
	}
	while (r->attachments) {
		struct attachment *a = r->attachments;

		r->attachments = a->next;
		free(a);
	}
	grpc_ucall_free(r->podres_call);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	if (r->link_fd >= 0)
		close(r->link_fd);
	if (r->uevent_fd >= 0)
		close(r->uevent_fd);
	rdma_inventory_free(&r->inv);
	free(r->res);
	rdma_config_free(&r->cfg);
	free(r->state_file);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

int rdma_open_section(struct json_object *section, const char *state_dir, struct rdma **out,
		      char *errbuf, size_t errlen)
{
	struct rdma_options opts = { 0 };
	char state_file[PATH_MAX];
	struct rdma_config cfg;
	int err;

	*out = NULL;
	err = rdma_config_parse(section, &cfg, errbuf, errlen);
	if (err || !cfg.enabled) {
		rdma_config_free(&cfg);
		return err;
	}
	if (state_dir) {
		snprintf(state_file, sizeof(state_file), "%s/rdma.json", state_dir);
		opts.state_file = state_file;
	}
	err = rdma_start(&cfg, &opts, out);
	if (err)
		snprintf(errbuf, errlen, "rdma: cannot start: %s", strerror(-err));
	rdma_config_free(&cfg);
	return err;
}

/* --- metrics ------------------------------------------------------------------- */

struct counter_sample {
	char family[160];
	char device[RDMA_NAME_MAX], netdev[IFNAMSIZ], port[12];
	unsigned long long value;
};

static int sample_cmp(const void *a, const void *b)
{
	return strcmp(((const struct counter_sample *)a)->family,
		      ((const struct counter_sample *)b)->family);
}

/* "railnet_rdma_" + the file name, lowercased, [^a-z0-9_] -> '_'. */
static void counter_family(char *out, size_t len, const char *prefix, const char *file)
{
	size_t n = (size_t)snprintf(out, len, "%s", prefix);

	for (const char *c = file; *c && n + 7 < len; c++) {
		char ch = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;

		out[n++] = ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) ? ch : '_';
	}
	snprintf(out + n, len - n, "_total");
}

/* Reads every counters/ and hw_counters/ file of every port.  Under the lock. */
static size_t read_counters(const struct rdma *r, struct counter_sample **out)
{
	static const char *const dirs[2][2] = { { "counters", "railnet_rdma_" },
						{ "hw_counters", "railnet_rdma_hw_" } };
	struct counter_sample *s = NULL;
	size_t n = 0, cap = 0;

	for (size_t h = 0; h < r->inv.nhcas; h++) {
		const struct rdma_hca *hca = &r->inv.hcas[h];

		for (size_t p = 0; p < hca->nports; p++)
			for (int d = 0; d < 2; d++) {
				char path[PATH_MAX];
				struct dirent **ents;
				int m;

				snprintf(path, sizeof(path), "%s/ports/%u/%s", hca->dir,
					 hca->ports[p].num, dirs[d][0]);
				m = scandir(path, &ents, NULL, alphasort);
				for (int e = 0; e < m; e++) {
					char file[PATH_MAX + 256], val[32] = "";
					FILE *f;

					snprintf(file, sizeof(file), "%s/%s", path, ents[e]->d_name);
					f = ents[e]->d_name[0] != '.' ? fopen(file, "re") : NULL;
					if (f && fgets(val, sizeof(val), f) && n == cap) {
						struct counter_sample *grown =
							realloc(s, (cap * 2 + 32) * sizeof(*s));

						if (grown) {
							s = grown;
							cap = cap * 2 + 32;
						}
					}
					if (f && val[0] && n < cap) {
						struct counter_sample *c = &s[n++];

						counter_family(c->family, sizeof(c->family), dirs[d][1],
							       ents[e]->d_name);
						snprintf(c->device, sizeof(c->device), "%s", hca->name);
						snprintf(c->netdev, sizeof(c->netdev), "%s",
							 hca->ports[p].netdev);
						snprintf(c->port, sizeof(c->port), "%u", hca->ports[p].num);
						c->value = strtoull(val, NULL, 10);
					}
					if (f)
						fclose(f);
					free(ents[e]);
				}
				if (m >= 0)
					free(ents);
			}
	}
	*out = s;
	return n;
}

static void rdma_collect(void *ctx, struct metrics_writer *w)
{
	struct rdma *r = ctx;
	struct counter_sample *cs;
	size_t ncs;

	pthread_mutex_lock(&r->lock);
	ncs = read_counters(r, &cs);
	metrics_family(w, "railnet_rdma_port_state", "gauge",
		       "An HCA port's state: 1 DOWN, 2 INIT, 3 ARMED, 4 ACTIVE, 5 ACTIVE_DEFER.");
	for (size_t h = 0; h < r->inv.nhcas; h++)
		for (size_t p = 0; p < r->inv.hcas[h].nports; p++) {
			char port[12];

			snprintf(port, sizeof(port), "%u", r->inv.hcas[h].ports[p].num);
			metrics_sample(w, "railnet_rdma_port_state", r->inv.hcas[h].ports[p].state,
				       "device", r->inv.hcas[h].name, "port", port, "netdev",
				       r->inv.hcas[h].ports[p].netdev, "state",
				       r->inv.hcas[h].ports[p].state_name, NULL);
		}
	metrics_family(w, "railnet_rdma_resource_capacity", "gauge",
		       "Devices a resource advertises to the kubelet (rdmaHcaMax).");
	for (size_t i = 0; i < r->nres; i++)
		metrics_sample(w, "railnet_rdma_resource_capacity", (double)r->res[i].rc->hca_max,
			       "resource", r->res[i].full_name, NULL);
	metrics_family(w, "railnet_rdma_resource_allocated", "gauge",
		       "Devices handed out: held by containers per the kubelet's PodResources API, "
		       "or pod NICs attached while it does not answer.");
	for (size_t i = 0; i < r->nres; i++) {
		const char *source;

		metrics_sample(w, "railnet_rdma_resource_allocated",
			       (double)resource_allocated(r, &r->res[i], &source), "resource",
			       r->res[i].full_name, NULL);
	}
	metrics_family(w, "railnet_rdma_resource_pod_nics", "gauge",
		       "Pod NICs attached through a resource (CNI ADDs naming rdmaResourceName).");
	for (size_t i = 0; i < r->nres; i++)
		metrics_sample(w, "railnet_rdma_resource_pod_nics", (double)r->res[i].attached,
			       "resource", r->res[i].full_name, NULL);
	if (r->podres_state == 1) {
		metrics_family(w, "railnet_rdma_resource_kubelet_devices", "gauge",
			       "Devices of a resource held by containers (kubelet PodResources API).");
		for (size_t i = 0; i < r->nres; i++)
			metrics_sample(w, "railnet_rdma_resource_kubelet_devices",
				       (double)r->res[i].kubelet_in_use, "resource",
				       r->res[i].full_name, NULL);
	}
	metrics_family(w, "railnet_rdma_pod_resources_up", "gauge",
		       "1 while the kubelet's PodResources API answers.");
	metrics_sample(w, "railnet_rdma_pod_resources_up", r->podres_state == 1, NULL);
	metrics_family(w, "railnet_rdma_resource_registered", "gauge",
		       "1 once the kubelet accepted the resource's Register.");
	for (size_t i = 0; i < r->nres; i++)
		metrics_sample(w, "railnet_rdma_resource_registered", r->res[i].kubelet_ino != 0,
			       "resource", r->res[i].full_name, NULL);
	metrics_family(w, "railnet_rdma_register_failures_total", "counter",
		       "Register calls that failed (refused, timed out or no kubelet).");
	for (size_t i = 0; i < r->nres; i++)
		metrics_sample_u64(w, "railnet_rdma_register_failures_total",
				   r->res[i].register_failures_total, "resource",
				   r->res[i].full_name, NULL);
	metrics_family(w, "railnet_rdma_netns_shared", "gauge",
		       "1 when the RDMA netns mode is shared (pods see the HCAs), else 0.");
	metrics_sample(w, "railnet_rdma_netns_shared", r->netns_shared == 1, "mode", r->netns_mode,
		       NULL);
	metrics_family(w, "railnet_rdma_resource_healthy", "gauge",
		       "1 while every HCA of the resource has an ACTIVE port.");
	for (size_t i = 0; i < r->nres; i++)
		metrics_sample(w, "railnet_rdma_resource_healthy", r->res[i].healthy,
			       "resource", r->res[i].full_name, NULL);
	metrics_family(w, "railnet_rdma_kubelet_allocations_total", "counter",
		       "Devices the kubelet allocated through Allocate.");
	for (size_t i = 0; i < r->nres; i++)
		metrics_sample_u64(w, "railnet_rdma_kubelet_allocations_total",
				   r->res[i].devices_allocated, "resource", r->res[i].full_name, NULL);
	metrics_family(w, "railnet_rdma_pod_nic_info", "gauge",
		       "A pod NIC on a shared HCA; gid_index is its RoCE v2 GID (\"\" while pending).");
	for (const struct attachment *a = r->attachments; a; a = a->next) {
		char port[12], gid[12] = "";

		snprintf(port, sizeof(port), "%u", a->port);
		if (a->gid_index >= 0)
			snprintf(gid, sizeof(gid), "%d", a->gid_index);
		metrics_sample(w, "railnet_rdma_pod_nic_info", 1, "device", a->hca, "port", port,
			       "netdev", a->master, "container", a->container_id, "ifname",
			       a->ifname, "gid_index", gid, NULL);
	}
	pthread_mutex_unlock(&r->lock);
	qsort(cs, ncs, sizeof(*cs), sample_cmp);
	for (size_t i = 0; i < ncs; i++) {
		if (!i || strcmp(cs[i].family, cs[i - 1].family))
			metrics_family(w, cs[i].family, "counter",
				       "An HCA port counter (sysfs counters/ or hw_counters/).");
		metrics_sample_u64(w, cs[i].family, cs[i].value, "device", cs[i].device, "port",
				   cs[i].port, "netdev", cs[i].netdev, NULL);
	}
	free(cs);
}

int rdma_metrics_register(struct rdma *r, struct metrics *metrics)
{
	return r ? metrics_register(metrics, rdma_collect, r) : 0;
}

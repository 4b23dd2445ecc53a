// SPDX-License-Identifier: Apache-2.0
#include "agent/nic_teardown.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netlink/route/link.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* One NIC being torn down. */
struct teardown_job {
	struct nic_teardown *owner;
	struct teardown_job *next;
	char network[256];
	char container_id[256];
	char ifname[16];
	char pending_path[PATH_MAX + 256];
	int netns_fd;
	unsigned long long seq; /* order of start */
};

struct nic_teardown {
	struct ipam *ipam;
	char queue_dir[PATH_MAX];
	pthread_mutex_t lock; /* jobs */
	pthread_cond_t done;
	struct teardown_job *jobs; /* in flight */
	unsigned long long next_seq;
};

int nic_teardown_open(struct ipam *ipam, const char *socket_path, struct nic_teardown **out)
{
	struct nic_teardown *t = calloc(1, sizeof(*t));
	pthread_condattr_t attr;
	char sock[PATH_MAX];

	if (!t)
		return -ENOMEM;
	t->ipam = ipam;
	snprintf(sock, sizeof(sock), "%s", socket_path);
	snprintf(t->queue_dir, sizeof(t->queue_dir), "%s/release-queue", dirname(sock));
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&t->done, &attr);
	pthread_condattr_destroy(&attr);
	*out = t;
	return 0;
}

void nic_teardown_close(struct nic_teardown *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	while (t->jobs)
		pthread_cond_wait(&t->done, &t->lock);
	pthread_mutex_unlock(&t->lock);
	pthread_cond_destroy(&t->done);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static int write_durably(const char *path, const char *text)
{
	char tmp[PATH_MAX + 8], dir[PATH_MAX];
	int fd, err = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fsync(fd) < 0)
		err = errno ? -errno : -EIO;
	close(fd);
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err) {
		unlink(tmp);
		return err;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

/* Deletes @ifname in the netns @netns_fd from the calling thread. */
static int delete_link_in(int netns_fd, const char *ifname)
{
	struct rtnl_link *link = rtnl_link_alloc();
	struct nl_sock *sk = NULL;
	int err;

	if (!link)
		return -ENOMEM;
	if (setns(netns_fd, CLONE_NEWNET) < 0) {
		err = -errno;
		goto out;
	}
	sk = nl_socket_alloc();
	if (!sk || nl_connect(sk, NETLINK_ROUTE) < 0) {
		err = -EIO;
		goto out;
	}
	rtnl_link_set_name(link, ifname);
	err = rtnl_link_delete(sk, link);
	if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND)
		err = 0; /* already gone: what we wanted */
	else if (err < 0)
		err = -EIO;
out:
	nl_socket_free(sk);
	rtnl_link_put(link);
	return err;
}

static void finish(struct nic_teardown *t, const char *network, const char *container_id,
		   const char *ifname, const char *pending_path, int link_err)
{
	struct ipam_key key = { network, container_id, ifname };
	int err;

	if (link_err)
		/* The netns will take the link with it when it dies; until then
		 * the address stays where it is - GC or a later DEL frees it. */
		log_warn("nic_delete_failed", "network=%s container=%.12s ifname=%s err=\"%s\"",
			 network, container_id, ifname, strerror(-link_err));
	err = link_err ? link_err : ipam_release(t->ipam, &key, NULL);
	if (!err) {
		unlink(pending_path);
		log_info("nic_deleted", "network=%s container=%.12s ifname=%s", network,
			 container_id, ifname);
	} else if (!link_err) {
		log_warn("nic_release_failed", "network=%s container=%.12s ifname=%s err=\"%s\"",
			 network, container_id, ifname, strerror(-err));
	}
}

static void *teardown_thread(void *arg)
{
	struct teardown_job *job = arg, **pp;
	struct nic_teardown *t = job->owner;
	int err = delete_link_in(job->netns_fd, job->ifname);

	close(job->netns_fd);
	finish(t, job->network, job->container_id, job->ifname, job->pending_path, err);
	pthread_mutex_lock(&t->lock);
	for (pp = &t->jobs; *pp; pp = &(*pp)->next)
		if (*pp == job) {
			*pp = job->next;
			break;
		}
	pthread_cond_broadcast(&t->done);
	pthread_mutex_unlock(&t->lock);
	free(job);
	return NULL;
}

static bool in_flight(struct nic_teardown *t, const struct ipam_key *key)
{
	for (struct teardown_job *j = t->jobs; j; j = j->next)
		if (!strcmp(j->network, key->network) && !strcmp(j->container_id, key->container_id) &&
		    !strcmp(j->ifname, key->ifname))
			return true;
	return false;
}

void nic_teardown_wait(struct nic_teardown *t, const struct ipam_key *key)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	while (in_flight(t, key))
		pthread_cond_wait(&t->done, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

static bool started_before(struct nic_teardown *t, unsigned long long seq)
{
	for (struct teardown_job *j = t->jobs; j; j = j->next)
		if (j->seq < seq)
			return true;
	return false;
}

void nic_teardown_drain(struct nic_teardown *t, int timeout_ms)
{
	struct timespec deadline;
	unsigned long long now_seq;

	if (!t)
		return;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&t->lock);
	now_seq = t->next_seq;
	while (started_before(t, now_seq))
		if (pthread_cond_timedwait(&t->done, &t->lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&t->lock);
}

int nic_teardown_start(struct nic_teardown *t, const struct ipam_key *key, const char *netns_path,
		       bool *deferred, struct json_object *released)
{
	struct teardown_job *job;
	struct json_object *entry;
	pthread_attr_t attr;
	pthread_t tid;
	int fd, err;

	*deferred = false;
	if (strlen(key->network) >= sizeof(job->network) ||
	    strlen(key->container_id) >= sizeof(job->container_id) ||
	    strlen(key->ifname) >= sizeof(job->ifname) || strchr(key->network, '/') ||
	    strchr(key->container_id, '/') || strchr(key->ifname, '/'))
		return -EINVAL;
	fd = netns_path && *netns_path ? open(netns_path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0) /* no netns, no link: the address is free to go */
		return ipam_release(t->ipam, key, released);

	job = calloc(1, sizeof(*job));
	if (!job) {
		close(fd);
		return -ENOMEM;
	}
	job->owner = t;
	job->netns_fd = fd;
	snprintf(job->network, sizeof(job->network), "%s", key->network);
	snprintf(job->container_id, sizeof(job->container_id), "%s", key->container_id);
	snprintf(job->ifname, sizeof(job->ifname), "%s", key->ifname);
	snprintf(job->pending_path, sizeof(job->pending_path), "%s/%.64s-%.64s-%.15s.pending",
		 t->queue_dir, key->network, key->container_id, key->ifname);

	pthread_mutex_lock(&t->lock);
	if (in_flight(t, key)) { /* a DEL retried while the first still runs */
		pthread_mutex_unlock(&t->lock);
		close(fd);
		free(job);
		*deferred = true;
		return 0;
	}
	if (mkdir(t->queue_dir, 0700) < 0 && errno != EEXIST) {
		err = -errno;
		goto fail;
	}
	entry = json_object_new_object();
	json_object_object_add(entry, "network", json_object_new_string(key->network));
	json_object_object_add(entry, "containerID", json_object_new_string(key->container_id));
	json_object_object_add(entry, "ifName", json_object_new_string(key->ifname));
	json_object_object_add(entry, "netns", json_object_new_string(netns_path));
	err = write_durably(job->pending_path,
			    json_object_to_json_string_ext(entry, JSON_C_TO_STRING_PLAIN));
	json_object_put(entry);
	if (err)
		goto fail;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	err = -pthread_create(&tid, &attr, teardown_thread, job);
	pthread_attr_destroy(&attr);
	if (err) {
		unlink(job->pending_path);
		goto fail;
	}
	job->seq = t->next_seq++;
	job->next = t->jobs;
	t->jobs = job;
	pthread_mutex_unlock(&t->lock);
	*deferred = true;
	return 0;
fail:
	pthread_mutex_unlock(&t->lock);
	close(fd);
	free(job);
	return err;
}

static const char *get(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

/* A teardown thread changes its netns: recovery runs each in its own. */
struct recovery {
	struct nic_teardown *t;
	const char *path;
	struct json_object *entry;
};

static void *recover_one(void *arg)
{
	struct recovery *r = arg;
	const char *netns = get(r->entry, "netns");
	int fd = netns ? open(netns, O_RDONLY | O_CLOEXEC) : -1, err = 0;

	if (fd >= 0) {
		err = delete_link_in(fd, get(r->entry, "ifName"));
		close(fd);
	}
	finish(r->t, get(r->entry, "network"), get(r->entry, "containerID"),
	       get(r->entry, "ifName"), r->path, err);
	return NULL;
}

int nic_teardown_recover(struct nic_teardown *t)
{
	char path[PATH_MAX * 2];
	struct dirent *de;
	int done = 0;
	DIR *d = opendir(t->queue_dir);

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		struct recovery r = { t, path, NULL };
		pthread_t tid;

		if (len < 9 || strcmp(de->d_name + len - 8, ".pending"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", t->queue_dir, de->d_name);
		r.entry = json_object_from_file(path);
		if (!get(r.entry, "network") || !get(r.entry, "containerID") ||
		    !get(r.entry, "ifName")) {
			log_warn("nic_teardown_bad_entry", "path=%s", path);
			unlink(path);
		} else if (!pthread_create(&tid, NULL, recover_one, &r)) {
			pthread_join(tid, NULL);
			done++;
		}
		json_object_put(r.entry);
	}
	closedir(d);
	return done;
}

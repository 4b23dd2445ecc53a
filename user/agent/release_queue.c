// SPDX-License-Identifier: Apache-2.0
#include "agent/release_queue.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

static const char *get(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

int release_queue_drain(struct ipam *ipam, const char *socket_path)
{
	char sock[PATH_MAX], dir[PATH_MAX], path[PATH_MAX * 2];
	struct dirent *de;
	int done = 0;
	DIR *d;

	snprintf(sock, sizeof(sock), "%s", socket_path);
	snprintf(dir, sizeof(dir), "%s/release-queue", dirname(sock));
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		struct json_object *req;
		struct ipam_key key;
		size_t len = strlen(de->d_name);

		if (len < 6 || strcmp(de->d_name + len - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		req = json_object_from_file(path);
		key.network = req ? get(req, "network") : NULL;
		key.container_id = req ? get(req, "containerID") : NULL;
		key.ifname = req ? get(req, "ifName") : NULL;
		if (!key.network || !key.container_id || !key.ifname) {
			log_warn("release_queue_bad_entry", "path=%s", path);
			unlink(path);
		} else if (!ipam_release(ipam, &key, NULL)) {
			log_info("release_queue_applied", "network=%s container=%.12s ifname=%s",
				 key.network, key.container_id, key.ifname);
			unlink(path);
			done++;
		}
		json_object_put(req);
	}
	closedir(d);
	return done;
}

// SPDX-License-Identifier: Apache-2.0
/* Times one CNI operation the way a runtime performs it: from inside the
 * node's netns, exec each plugin of a chain with the CNI_* environment and
 * its config on stdin, feeding a plugin's ADD result to the next as
 * prevResult (DEL runs the chain in reverse).  Prints the wall time of the
 * whole chain in microseconds; exits non-zero if a plugin failed.
 *
 *   cni_timer NODE_NETNS CMD CONTAINERID POD_NETNS IFNAME CONFLIST
 *
 * CONFLIST: a file holding {"cniVersion":..,"name":..,"plugins":[..]};
 * each plugin's binary is found by its "type" in CNI_PATH.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int find_plugin(const char *type, char *out, size_t size)
{
	const char *path = getenv("CNI_PATH");
	char dirs[4096], *save = NULL;

	snprintf(dirs, sizeof(dirs), "%s", path ? path : "/opt/cni/bin");
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, size, "%s/%s", d, type);
		if (!access(out, X_OK))
			return 0;
	}
	return -ENOENT;
}

/* Runs @plugin with @conf on stdin; its stdout into *out (malloc'd). */
static int run_plugin(const char *plugin, const char *conf, char **out)
{
	int in[2], res[2], status;
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	pid_t pid;
	ssize_t n;

	if (!buf || pipe2(in, O_CLOEXEC) < 0 || pipe2(res, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		dup2(in[0], 0);
		dup2(res[1], 1);
		if (!getenv("CNI_TIMER_STDERR"))
			freopen("/dev/null", "w", stderr);
		execl(plugin, plugin, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(res[1]);
	if (write(in[1], conf, strlen(conf)) < 0)
		perror("write");
	close(in[1]);
	while ((n = read(res[0], buf + len, cap - len - 1)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(res[0]);
	waitpid(pid, &status, 0);
	*out = buf;
	return WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : -EIO;
}

int main(int argc, char **argv)
{
	struct json_object *list, *plugins, *prev = NULL;
	const char *cmd;
	long long start;
	int fd, n, err = 0;
	bool del;

	if (argc != 7) {
		fprintf(stderr, "usage: %s NODE_NETNS CMD CONTAINERID POD_NETNS IFNAME CONFLIST\n",
			argv[0]);
		return 2;
	}
	cmd = argv[2];
	del = !strcmp(cmd, "DEL");
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		perror(argv[1]);
		return 2;
	}
	close(fd);
	list = json_object_from_file(argv[6]);
	if (!list || !json_object_object_get_ex(list, "plugins", &plugins)) {
		fprintf(stderr, "%s: not a conflist\n", argv[6]);
		return 2;
	}
	setenv("CNI_COMMAND", cmd, 1);
	setenv("CNI_CONTAINERID", argv[3], 1);
	setenv("CNI_NETNS", argv[4], 1);
	setenv("CNI_IFNAME", argv[5], 1);
	setenv("CNI_ARGS", "IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=bench", 1);
	n = (int)json_object_array_length(plugins);

	start = now_us();
	for (int i = 0; i < n && !err; i++) {
		struct json_object *conf = NULL;
		char plugin[4096], *out = NULL;

		json_object_deep_copy(json_object_array_get_idx(plugins, del ? n - 1 - i : i), &conf,
				      NULL);
		json_object_object_add(conf, "cniVersion",
				       json_object_get(json_object_object_get(list, "cniVersion")));
		json_object_object_add(conf, "name",
				       json_object_get(json_object_object_get(list, "name")));
		if (prev)
			json_object_object_add(conf, "prevResult", json_object_get(prev));
		if (find_plugin(json_object_get_string(json_object_object_get(conf, "type")), plugin,
				sizeof(plugin))) {
			fprintf(stderr, "plugin %s not in CNI_PATH\n",
				json_object_get_string(json_object_object_get(conf, "type")));
			return 2;
		}
		err = run_plugin(plugin, json_object_to_json_string(conf), &out);
		if (err)
			fprintf(stderr, "%s %s failed: %s\n", plugin, cmd, out);
		else if (!del) {
			json_object_put(prev);
			prev = json_tokener_parse(out);
		}
		free(out);
		json_object_put(conf);
	}
	printf("%lld\n", now_us() - start);
	json_object_put(prev);
	json_object_put(list);
	return err ? 1 : 0;
}

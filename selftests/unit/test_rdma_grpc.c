// SPDX-License-Identifier: Apache-2.0
/* grpc.c's client calls, driven from one poll loop against grpc.c's server
 * in the same thread: the shape of the kubelet's Register, which answers
 * only after calling the plugin back on an endpoint that thread serves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/grpc.h"

#define MAX_CONNS 8

struct server {
	char path[108];
	int listen_fd;
	struct grpc_conn *conns[MAX_CONNS];
	size_t nconns;
};

/* The "kubelet": /t/CallBack answers once its own call to the "plugin"
 * (the other server, the same thread) has; the "plugin": /t/Echo echoes,
 * /t/Refuse refuses, /t/Hold never answers. */
struct world {
	struct server kubelet, plugin;
	struct grpc_call *held;	      /* the kubelet's call waiting on the call back */
	struct grpc_ucall *call_back; /* its call to the plugin */
	unsigned int plugin_calls;
};

static char dir[64];

static int listen_on(struct server *s, const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(s->path, sizeof(s->path), "%s/%s", dir, name);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(s->listen_fd, 8))
		return -errno;
	return 0;
}

static void on_call(void *ctx, struct grpc_call *call, const char *path, const uint8_t *msg,
		    size_t len)
{
	struct world *w = ctx;
	static const uint8_t ping[] = "ping";

	if (!strcmp(path, "/t/CallBack")) {
		assert_null(w->held);
		w->held = call;
		assert_int_equal(grpc_ucall_start(w->plugin.path, "/t/Echo", ping, sizeof(ping), 2000,
						  &w->call_back),
				 0);
		return;
	}
	w->plugin_calls++;
	if (!strcmp(path, "/t/Echo")) {
		grpc_call_send(call, msg, len);
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	} else if (!strcmp(path, "/t/Refuse")) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "refused here");
	} else if (strcmp(path, "/t/Hold")) {
		grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "no such method");
	}
}

static void on_close(void *ctx, struct grpc_call *call)
{
	struct world *w = ctx;

	if (w->held == call)
		w->held = NULL;
}

static const struct grpc_server_ops ops = { .on_call = on_call, .on_close = on_close };

static void server_close(struct server *s)
{
	for (size_t i = 0; i < s->nconns; i++)
		grpc_conn_free(s->conns[i]);
	s->nconns = 0;
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	s->listen_fd = -1;
	unlink(s->path);
}

/* One round of the loop: every listener, connection and client call. */
static void pump(struct world *w, struct grpc_ucall *c, int timeout_ms)
{
	struct server *servers[2] = { &w->kubelet, &w->plugin };
	struct pollfd pfds[2 + 2 * MAX_CONNS + 2];
	struct grpc_ucall *calls[2] = { c, w->call_back };
	size_t np = 0;

	for (int s = 0; s < 2; s++) {
		pfds[np++] = (struct pollfd){ .fd = servers[s]->listen_fd, .events = POLLIN };
		for (size_t i = 0; i < servers[s]->nconns; i++)
			pfds[np++] = (struct pollfd){ .fd = grpc_conn_fd(servers[s]->conns[i]),
						      .events = POLLIN };
	}
	for (int k = 0; k < 2; k++)
		pfds[np++] = (struct pollfd){ .fd = calls[k] ? grpc_ucall_fd(calls[k]) : -1,
					      .events = calls[k] ? grpc_ucall_events(calls[k]) : 0 };
	assert_true(poll(pfds, np, timeout_ms) >= 0);
	np = 0;
	for (int s = 0; s < 2; s++) {
		struct server *sv = servers[s];
		size_t n = sv->nconns;

		if (pfds[np++].revents & POLLIN && sv->nconns < MAX_CONNS) {
			int fd = accept4(sv->listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0)
				assert_int_equal(grpc_conn_new(fd, &ops, w, &sv->conns[sv->nconns++]), 0);
		}
		for (size_t i = n; i-- > 0;)
			if (pfds[np + i].revents && grpc_conn_on_readable(sv->conns[i])) {
				grpc_conn_free(sv->conns[i]);
				sv->conns[i] = sv->conns[--sv->nconns];
			}
		np += n;
	}
	if (c)
		grpc_ucall_step(c);
	if (w->call_back && grpc_ucall_step(w->call_back) != -EINPROGRESS) {
		const uint8_t *resp;
		const char *msg;
		size_t len;
		int status;

		/* the call back answered: now the held call gets its answer */
		assert_int_equal(grpc_ucall_result(w->call_back, &status, &resp, &len, &msg), 0);
		assert_int_equal(status, GRPC_STATUS_OK);
		assert_non_null(w->held);
		grpc_call_send(w->held, resp, len);
		grpc_call_finish(w->held, GRPC_STATUS_OK, NULL);
		for (size_t i = 0; i < w->kubelet.nconns; i++)
			grpc_conn_flush(w->kubelet.conns[i]);
		grpc_ucall_free(w->call_back);
		w->call_back = NULL;
	}
}

/* Runs @c to its end, serving meanwhile; returns the last step's value. */
static int run(struct world *w, struct grpc_ucall *c)
{
	int ret, rounds = 0;

	while ((ret = grpc_ucall_step(c)) == -EINPROGRESS) {
		assert_true(++rounds < 10000);
		pump(w, c, 50);
	}
	return ret;
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));

	snprintf(dir, sizeof(dir), "/tmp/railnet-grpc-XXXXXX");
	if (!w || !mkdtemp(dir) || listen_on(&w->kubelet, "kubelet.sock") ||
	    listen_on(&w->plugin, "plugin.sock"))
		return -1;
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	grpc_ucall_free(w->call_back);
	server_close(&w->kubelet);
	server_close(&w->plugin);
	rmdir(dir);
	free(w);
	return 0;
}

static void test_unary_answer(void **state)
{
	struct world *w = *state;
	static const uint8_t req[] = { 1, 2, 3, 0, 250 };
	struct grpc_ucall *c;
	const uint8_t *resp;
	const char *msg;
	size_t len;
	int status;

	assert_int_equal(grpc_ucall_start(w->plugin.path, "/t/Echo", req, sizeof(req), 2000, &c), 0);
	assert_int_equal(run(w, c), 0);
	assert_int_equal(grpc_ucall_result(c, &status, &resp, &len, &msg), 0);
	assert_int_equal(status, GRPC_STATUS_OK);
	assert_int_equal(len, sizeof(req));
	assert_memory_equal(resp, req, sizeof(req));
	assert_int_equal(grpc_ucall_fd(c), -1);
	grpc_ucall_free(c);
}

static void test_status_and_message(void **state)
{
	struct world *w = *state;
	struct grpc_ucall *c;
	const uint8_t *resp;
	const char *msg;
	size_t len;
	int status;

	assert_int_equal(grpc_ucall_start(w->plugin.path, "/t/Refuse", NULL, 0, 2000, &c), 0);
	assert_int_equal(run(w, c), 0);
	assert_int_equal(grpc_ucall_result(c, &status, &resp, &len, &msg), 0);
	assert_int_equal(status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(msg, "refused here");
	assert_null(resp);
	grpc_ucall_free(c);
}

/* The Register shape: the answer needs a call back into the same thread. */
static void test_answer_after_a_call_back(void **state)
{
	struct world *w = *state;
	static const uint8_t req[] = "register";
	struct grpc_ucall *c;
	const uint8_t *resp;
	const char *msg;
	size_t len;
	int status;

	w->plugin_calls = 0;
	assert_int_equal(grpc_ucall_start(w->kubelet.path, "/t/CallBack", req, sizeof(req), 2000,
					  &c),
			 0);
	assert_int_equal(run(w, c), 0);
	assert_int_equal(grpc_ucall_result(c, &status, &resp, &len, &msg), 0);
	assert_int_equal(status, GRPC_STATUS_OK);
	assert_int_equal(w->plugin_calls, 1);
	assert_int_equal(len, 5);
	assert_memory_equal(resp, "ping", 5);
	grpc_ucall_free(c);
}

static void test_connect_failure_is_the_result(void **state)
{
	struct grpc_ucall *c;
	const uint8_t *resp;
	const char *msg;
	char path[128];
	size_t len;
	int status;

	snprintf(path, sizeof(path), "/nonexistent-railnet-dir/nobody.sock");
	assert_int_equal(grpc_ucall_start(path, "/t/Echo", NULL, 0, 2000, &c), 0);
	assert_int_equal(grpc_ucall_step(c), -ENOENT);
	assert_int_equal(grpc_ucall_result(c, &status, &resp, &len, &msg), -ENOENT);
	assert_int_equal(status, -1);
	assert_non_null(strstr(msg, "nobody.sock"));
	assert_int_equal(grpc_ucall_fd(c), -1);
	grpc_ucall_free(c);
}

static void test_deadline(void **state)
{
	struct world *w = *state;
	struct grpc_ucall *c;
	const uint8_t *resp;
	const char *msg;
	size_t len;
	int status;

	assert_int_equal(grpc_ucall_start(w->plugin.path, "/t/Hold", NULL, 0, 100, &c), 0);
	assert_int_equal(run(w, c), -ETIMEDOUT);
	assert_int_equal(grpc_ucall_result(c, &status, &resp, &len, &msg), -ETIMEDOUT);
	assert_string_equal(msg, "no answer in time");
	grpc_ucall_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unary_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_and_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_after_a_call_back, setup, teardown),
		cmocka_unit_test(test_connect_failure_is_the_result),
		cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: Apache-2.0
/* metrics.c: the text exposition format, label escaping, pre-escaped label
 * sets, collector order, collectors in steps and unregistering them; served
 * over HTTP, a client that leaves mid-scrape, a collector that fails
 * mid-stream and a stop with a scrape in flight. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/metrics.h"

static void collect_pods(void *ctx, struct metrics_writer *w)
{
	metrics_family(w, "railnet_x_total", "counter", "A help\nwith \\ newline.");
	metrics_sample_u64(w, "railnet_x_total", 18446744073709551615ULL, "pod", "a\"b\\c\nd",
			   "ifname", NULL, NULL);
	metrics_sample(w, "railnet_x_total", 0.5, NULL);
}

static void collect_second(void *ctx, struct metrics_writer *w)
{
	(*(int *)ctx)++;
	metrics_family(w, "railnet_y", "gauge", "Second.");
}

static void collect_value(void *ctx, struct metrics_writer *w)
{
	metrics_sample(w, "v", *(double *)ctx, NULL);
}

static void render_escapes_and_orders(void **state)
{
	struct metrics *m;
	char *body;
	size_t len;
	int calls = 0;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_register(m, collect_pods, NULL), 0);
	assert_int_equal(metrics_register(m, collect_second, &calls), 0);
	assert_int_equal(metrics_render(m, &body, &len), 0);
	assert_string_equal(body, "# HELP railnet_x_total A help\\nwith \\\\ newline.\n"
				  "# TYPE railnet_x_total counter\n"
				  "railnet_x_total{pod=\"a\\\"b\\\\c\\nd\",ifname=\"\"} "
				  "18446744073709551615\n"
				  "railnet_x_total 0.5\n"
				  "# HELP railnet_y Second.\n# TYPE railnet_y gauge\n");
	assert_int_equal(len, strlen(body));
	assert_int_equal(calls, 1);
	free(body);

	metrics_unregister(m, collect_pods, NULL);
	assert_int_equal(metrics_render(m, &body, &len), 0);
	assert_string_equal(body, "# HELP railnet_y Second.\n# TYPE railnet_y gauge\n");
	free(body);
	metrics_stop(m);
}

static void register_without_endpoint_is_a_no_op(void **state)
{
	assert_int_equal(metrics_register(NULL, collect_pods, NULL), 0);
	metrics_unregister(NULL, collect_pods, NULL);
	metrics_stop(NULL);
}

static void values_as_prometheus_reads_them(void **state)
{
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{ 0, "0" },       { -1, "-1" },          { 19, "19" },
		{ 1700000000, "1700000000" },            { 0.5, "0.5" },
		{ 1e20, "1e+20" }, { 0.000123, "0.000123" },
		{ NAN, "NaN" },   { INFINITY, "+Inf" },  { -INFINITY, "-Inf" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct metrics *m;
		char *body, want[64];
		size_t len;
		double v = cases[i].v;

		assert_int_equal(metrics_new(&m), 0);
		assert_int_equal(metrics_register(m, collect_value, &v), 0);
		assert_int_equal(metrics_render(m, &body, &len), 0);
		snprintf(want, sizeof(want), "v %s\n", cases[i].text);
		if (!strncmp(cases[i].text, "0.000123", 8))
			assert_true(!strncmp(body, "v 0.000123", 10) && atof(body + 2) == v);
		else
			assert_string_equal(body, want);
		free(body);
		metrics_stop(m);
	}
}

static void label_sets_escape_once_and_truncate_like_snprintf(void **state)
{
	char buf[128], small[8];
	size_t n;

	n = metrics_labels(buf, sizeof(buf), "namespace", "a\"b", "pod", "c\\d\ne", "x", NULL,
			   NULL);
	assert_string_equal(buf, "namespace=\"a\\\"b\",pod=\"c\\\\d\\ne\",x=\"\"");
	assert_int_equal(n, strlen(buf));
	assert_int_equal(metrics_labels(small, sizeof(small), "namespace", "a\"b", "pod",
					"c\\d\ne", "x", NULL, NULL),
			 n);
	assert_string_equal(small, "namespa");
	assert_int_equal(metrics_labels(buf, sizeof(buf), NULL), 0);
	assert_string_equal(buf, "");
}

static void collect_sets(void *ctx, struct metrics_writer *w)
{
	char set[64], bulk[64], *end;
	size_t n = metrics_labels(set, sizeof(set), "pod", "p1", "interface", "net1", NULL);
	struct metrics_set sets[3] = { { set, n }, { "", 0 }, { "reason=\"x\"", 10 } };

	metrics_sample_sets_u64(w, "a_total", 7, sets, 1);
	metrics_sample_sets_u64(w, "a_total", 8, sets, 3);
	metrics_sample_sets(w, "b", -1, &sets[1], 2);
	metrics_sample_sets(w, "b", 0.25, NULL, 0);
	end = metrics_label_put(bulk, "pod", "q\"\\\n");
	*end++ = ',';
	end = metrics_label_put(end, "x", NULL);
	sets[0] = (struct metrics_set){ bulk, (size_t)(end - bulk) };
	metrics_sample_sets_ns(w, "c_seconds", 123456, sets, 1);
	metrics_sample_sets_ns(w, "c_seconds", 2000000000, sets, 1);
	metrics_sample_sets_ns(w, "c_seconds", 1000000001, NULL, 0);
}

static void samples_of_label_sets(void **state)
{
	struct metrics *m;
	char *body;
	size_t len;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_register(m, collect_sets, NULL), 0);
	assert_int_equal(metrics_render(m, &body, &len), 0);
	assert_string_equal(body, "a_total{pod=\"p1\",interface=\"net1\"} 7\n"
				  "a_total{pod=\"p1\",interface=\"net1\",reason=\"x\"} 8\n"
				  "b{reason=\"x\"} -1\n"
				  "b 0.25\n"
				  "c_seconds{pod=\"q\\\"\\\\\\n\",x=\"\"} 0.000123456\n"
				  "c_seconds{pod=\"q\\\"\\\\\\n\",x=\"\"} 2\n"
				  "c_seconds 1.000000001\n");
	free(body);
	metrics_stop(m);
}

static void collect_fails(void *ctx, struct metrics_writer *w)
{
	metrics_sample(w, "partial", 1, NULL);
	metrics_fail(w, -EBADF);
	metrics_sample(w, "dropped", 1, NULL);
}

static void a_failed_collector_fails_the_scrape(void **state)
{
	struct metrics *m;
	char *body = NULL;
	size_t len;
	int calls = 0;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_register(m, collect_fails, NULL), 0);
	assert_int_equal(metrics_register(m, collect_second, &calls), 0);
	assert_int_equal(metrics_render(m, &body, &len), -EBADF);
	assert_null(body);
	assert_int_equal(calls, 0);
	metrics_stop(m);
}

/* A collector in steps: writes @total samples, @per_step at a time. */
struct stepper {
	int total, per_step;
	int steps, ends, live_states;
	/* to hold a scrape inside the collector */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool hold, inside;
	atomic_bool unregistered, stepped_after;
};

static bool step_fn(void *ctx, struct metrics_writer *w, void **state)
{
	struct stepper *st = ctx;
	int *next = *state;

	if (atomic_load(&st->unregistered))
		atomic_store(&st->stepped_after, true);
	if (!next) {
		next = calloc(1, sizeof(*next));
		*state = next;
		st->live_states++;
		metrics_family(w, "s_total", "counter", "Stepped.");
		pthread_mutex_lock(&st->lock);
		st->inside = true;
		pthread_cond_broadcast(&st->cond);
		while (st->hold)
			pthread_cond_wait(&st->cond, &st->lock);
		pthread_mutex_unlock(&st->lock);
	}
	st->steps++;
	for (int i = 0; i < st->per_step && *next < st->total; i++, (*next)++)
		metrics_sample_u64(w, "s_total", (uint64_t)*next, NULL);
	return *next < st->total;
}

static void end_fn(void *ctx, void *state)
{
	struct stepper *st = ctx;

	st->ends++;
	if (state)
		st->live_states--;
	free(state);
}

static void stepper_init(struct stepper *st, int total, int per_step)
{
	memset(st, 0, sizeof(*st));
	st->total = total;
	st->per_step = per_step;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->cond, NULL);
}

static void steps_stream_in_registration_order(void **state)
{
	struct stepper st;
	struct metrics *m;
	char *body;
	size_t len;
	int calls = 0;

	stepper_init(&st, 5, 2);
	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_register(m, collect_second, &calls), 0);
	assert_int_equal(metrics_register_steps(m, step_fn, end_fn, &st), 0);
	assert_int_equal(metrics_register(m, collect_second, &calls), 0);
	assert_int_equal(metrics_render(m, &body, &len), 0);
	assert_string_equal(body, "# HELP railnet_y Second.\n# TYPE railnet_y gauge\n"
				  "# HELP s_total Stepped.\n# TYPE s_total counter\n"
				  "s_total 0\ns_total 1\ns_total 2\ns_total 3\ns_total 4\n"
				  "# HELP railnet_y Second.\n# TYPE railnet_y gauge\n");
	free(body);
	assert_int_equal(st.steps, 3);
	assert_int_equal(st.ends, 1);
	assert_int_equal(st.live_states, 0);
	assert_int_equal(calls, 2);

	/* Each scrape starts afresh. */
	assert_int_equal(metrics_render(m, &body, &len), 0);
	free(body);
	assert_int_equal(st.steps, 6);
	assert_int_equal(st.ends, 2);

	metrics_unregister_steps(m, step_fn, &st);
	assert_int_equal(metrics_render(m, &body, &len), 0);
	assert_string_equal(body, "# HELP railnet_y Second.\n# TYPE railnet_y gauge\n"
				  "# HELP railnet_y Second.\n# TYPE railnet_y gauge\n");
	free(body);
	assert_int_equal(st.steps, 6);
	metrics_stop(m);
}

struct render_job {
	struct metrics *m;
	char *body;
	int err;
};

static void *render_thread(void *p)
{
	struct render_job *job = p;
	size_t len;

	job->err = metrics_render(job->m, &job->body, &len);
	return NULL;
}

struct unregister_job {
	struct metrics *m;
	struct stepper *st;
	atomic_bool done;
	int ends_seen;
};

static void *unregister_thread(void *p)
{
	struct unregister_job *job = p;

	metrics_unregister_steps(job->m, step_fn, job->st);
	job->ends_seen = job->st->ends;
	atomic_store(&job->st->unregistered, true);
	atomic_store(&job->done, true);
	return NULL;
}

static void unregister_waits_for_a_scrape_inside(void **state)
{
	struct render_job render = { 0 };
	struct unregister_job unreg = { 0 };
	pthread_t a, b;
	struct stepper st;
	struct metrics *m;

	stepper_init(&st, 3, 1);
	st.hold = true;
	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_register_steps(m, step_fn, end_fn, &st), 0);
	render.m = unreg.m = m;
	unreg.st = &st;
	pthread_create(&a, NULL, render_thread, &render);
	pthread_mutex_lock(&st.lock);
	while (!st.inside)
		pthread_cond_wait(&st.cond, &st.lock);
	pthread_mutex_unlock(&st.lock);

	pthread_create(&b, NULL, unregister_thread, &unreg);
	usleep(50 * 1000);
	assert_false(atomic_load(&unreg.done));

	pthread_mutex_lock(&st.lock);
	st.hold = false;
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	assert_int_equal(render.err, 0);
	/* The scrape finished the collector, then unregister returned. */
	assert_non_null(strstr(render.body, "s_total 2\n"));
	assert_int_equal(unreg.ends_seen, 1);
	assert_false(atomic_load(&st.stepped_after));
	free(render.body);
	metrics_stop(m);
}

/* --- served ---------------------------------------------------------------- */

static int test_port(void)
{
	return 30000 + getpid() % 20000;
}

static struct metrics *serve(void)
{
	struct metrics *m = NULL;
	char listen[32];

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", test_port());
	assert_int_equal(metrics_start(listen, &m), 0);
	return m;
}

/* A socket for the test server; its reads give up after 5 s. */
static int client(void)
{
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* @fd (client()) connected, and the request sent. */
static int request(int fd, const char *req)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)test_port()) };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
	return fd;
}

/* A connection that asked for @path. */
static int get(const char *path)
{
	char req[128];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
		 path);
	return request(client(), req);
}

/* Reads up to @max bytes or to the end: how many, the first and last ones
 * kept in @head and @tail (NUL-terminated). */
static size_t read_some(int fd, size_t max, char *head, size_t head_len, char *tail,
			size_t tail_len)
{
	static char buf[65536];
	size_t total = 0, h = 0, t = 0;
	ssize_t n;

	while (total < max && (n = recv(fd, buf, sizeof(buf), 0)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (h + 1 < head_len)
				head[h++] = buf[i];
			if (tail_len > 1) {
				if (t + 1 == tail_len)
					memmove(tail, tail + 1, --t);
				tail[t++] = buf[i];
			}
		}
		total += (size_t)n;
	}
	if (head_len)
		head[h] = '\0';
	if (tail_len)
		tail[t] = '\0';
	return total;
}

/* Resets the connection rather than closing it. */
static void abort_conn(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void served_scrape_ends_with_the_last_chunk(void **state)
{
	char head[64], tail[16];
	struct stepper st;
	struct metrics *m;
	size_t n;
	int fd;

	stepper_init(&st, 20000, 500);
	m = serve();
	assert_int_equal(metrics_register_steps(m, step_fn, end_fn, &st), 0);
	fd = get("/metrics");
	n = read_some(fd, SIZE_MAX, head, sizeof(head), tail, sizeof(tail));
	close(fd);
	assert_true(n > 20000 * 10);
	assert_memory_equal(head, "HTTP/1.1 200 OK", 15);
	assert_string_equal(tail + strlen(tail) - 7, "\r\n0\r\n\r\n");
	metrics_unregister_steps(m, step_fn, &st);
	assert_int_equal(st.ends, 1);
	assert_int_equal(st.live_states, 0);
	metrics_stop(m);
}

/* A server with a collector of ~45 MB in 300 steps, and a client that
 * asked for it and took the first @take bytes. */
static struct metrics *serve_big_scrape(struct stepper *st, size_t take, int *fd)
{
	struct metrics *m = serve();

	stepper_init(st, 3000000, 10000);
	assert_int_equal(metrics_register_steps(m, step_fn, end_fn, st), 0);
	*fd = get("/metrics");
	assert_true(read_some(*fd, take, NULL, 0, NULL, 0) >= take);
	return m;
}

/* The client takes 100 KB and resets: the scrape stops there and lets go
 * of the collector. */
static void a_client_leaving_mid_scrape_releases_the_collector(void **state)
{
	struct stepper st;
	struct metrics *m;
	int fd;

	m = serve_big_scrape(&st, 100 * 1024, &fd);
	abort_conn(fd);
	metrics_unregister_steps(m, step_fn, &st); /* waits for the scrape to leave */
	assert_int_equal(st.ends, 1);
	assert_int_equal(st.live_states, 0);
	assert_true(st.steps < 300);
	metrics_stop(m);
}

static bool fail_fn(void *ctx, struct metrics_writer *w, void **state)
{
	int *calls = ctx;

	if (++*calls == 5) {
		metrics_fail(w, -EIO);
		return false;
	}
	for (int i = 0; i < 10000; i++)
		metrics_sample_u64(w, "f_total", (uint64_t)i, NULL);
	return true;
}

/* Prometheus must see a failed scrape, not a short one: the chunked body
 * is cut off without its last chunk.  The server goes on serving. */
static void a_collector_failing_mid_stream_cuts_the_response(void **state)
{
	char head[64], tail[16];
	struct metrics *m = serve();
	int calls = 0, fd;
	size_t n;

	assert_int_equal(metrics_register_steps(m, fail_fn, NULL, &calls), 0);
	fd = get("/metrics");
	n = read_some(fd, SIZE_MAX, head, sizeof(head), tail, sizeof(tail));
	close(fd);
	assert_memory_equal(head, "HTTP/1.1 200 OK", 15);
	assert_true(n > 3 * 10000 * 10);
	assert_int_equal(calls, 5);
	assert_string_not_equal(tail + strlen(tail) - 7, "\r\n0\r\n\r\n");
	fd = get("/healthz");
	read_some(fd, SIZE_MAX, head, sizeof(head), tail, sizeof(tail));
	close(fd);
	assert_memory_equal(head, "HTTP/1.1 200 OK", 15);
	assert_string_equal(tail + strlen(tail) - 3, "ok\n");
	metrics_unregister_steps(m, fail_fn, &calls);
	metrics_stop(m);
}

/* "[v6]:port" listens on IPv6; a listen address nothing can bind fails the
 * start, and so does one that is not host:port. */
static void listens_where_told(void **state)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
	char listen[64], head[64], tail[8];
	struct metrics *m = NULL, *m2 = NULL;
	int fd;

	snprintf(listen, sizeof(listen), "[::1]:%d", test_port());
	assert_int_equal(metrics_start(listen, &m), 0);
	sa.sin6_port = htons((uint16_t)test_port());
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
	read_some(fd, SIZE_MAX, head, sizeof(head), tail, sizeof(tail));
	close(fd);
	assert_memory_equal(head, "HTTP/1.1 200 OK", 15);
	assert_string_equal(tail + strlen(tail) - 3, "ok\n");
	/* The port is taken: the second server does not start. */
	assert_int_equal(metrics_start(listen, &m2), -EADDRINUSE);
	assert_null(m2);
	metrics_stop(m);
	assert_int_equal(metrics_start("no-port", &m2), -EINVAL);
	assert_int_equal(metrics_start("192.0.2.1:9", &m2), -EADDRNOTAVAIL);
}

/* A HEAD gets no body (evhttp would send one); an HTTP/1.0 keep-alive
 * scrape (a Connection that starts with keep-alive, as libevent reads it)
 * is told no Content-Length and gets the body up to the close. */
static void head_and_http10(void **state)
{
	static char buf[1 << 16];
	struct metrics *m = serve();
	char tail[32];
	size_t n;
	int fd;

	assert_int_equal(metrics_register(m, collect_second, &(int){ 0 }), 0);
	fd = request(client(), "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	n = read_some(fd, SIZE_MAX, buf, sizeof(buf), NULL, 0);
	close(fd);
	assert_true(n > 0);
	assert_memory_equal(buf, "HTTP/1.1 200 OK", 15);
	assert_string_equal(buf + n - 4, "\r\n\r\n");
	fd = request(client(), "GET /metrics HTTP/1.0\r\nConnection: Keep-Alive, x\r\n\r\n");
	n = read_some(fd, SIZE_MAX, buf, sizeof(buf), tail, sizeof(tail));
	close(fd);
	assert_memory_equal(buf, "HTTP/1.0 200 OK", 15);
	assert_null(strcasestr(buf, "content-length"));
	assert_null(strstr(buf, "\r\n\r\n0\r\n")); /* not chunked */
	assert_string_equal(tail + strlen(tail) - 16, "railnet_y gauge\n");
	metrics_stop(m);
}

/* Out of descriptors, a connection that cannot be accepted does not spin
 * the server: it tries again a second later, and serves it then. */
static void accept_failures_rest(void **state)
{
	struct rlimit old, low;
	struct rusage r0, r1;
	struct metrics *m = serve();
	int fd = client(), null = open("/dev/null", O_RDONLY), spare = dup(null), fill[64], nfill = 0;
	char head[32];
	double cpu;

	getrlimit(RLIMIT_NOFILE, &old);
	low = old;
	low.rlim_cur = (rlim_t)spare + 1; /* every descriptor up to spare in use */
	close(spare);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_true(spare > null);
	while (nfill < 64 && (fill[nfill] = dup(null)) >= 0)
		nfill++;
	getrusage(RUSAGE_SELF, &r0);
	request(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	usleep(500 * 1000);
	getrusage(RUSAGE_SELF, &r1);
	cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec -
		       r0.ru_stime.tv_sec) +
	      (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec -
		       r0.ru_stime.tv_usec) / 1e6;
	while (nfill)
		close(fill[--nfill]);
	close(null);
	setrlimit(RLIMIT_NOFILE, &old);
	assert_true(cpu < 0.2);
	assert_true(read_some(fd, SIZE_MAX, head, sizeof(head), NULL, 0) > 15);
	close(fd);
	assert_memory_equal(head, "HTTP/1.1 200 OK", 15);
	metrics_stop(m);
}

/* A client that stops reading does not hold up the agent's stop. */
static void stop_with_a_scrape_in_flight(void **state)
{
	struct stepper st;
	struct metrics *m;
	int fd;

	m = serve_big_scrape(&st, 1024, &fd);
	metrics_stop(m);
	assert_int_equal(st.ends, 1);
	assert_int_equal(st.live_states, 0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(render_escapes_and_orders),
		cmocka_unit_test(register_without_endpoint_is_a_no_op),
		cmocka_unit_test(values_as_prometheus_reads_them),
		cmocka_unit_test(label_sets_escape_once_and_truncate_like_snprintf),
		cmocka_unit_test(samples_of_label_sets),
		cmocka_unit_test(a_failed_collector_fails_the_scrape),
		cmocka_unit_test(steps_stream_in_registration_order),
		cmocka_unit_test(unregister_waits_for_a_scrape_inside),
		cmocka_unit_test(served_scrape_ends_with_the_last_chunk),
		cmocka_unit_test(a_client_leaving_mid_scrape_releases_the_collector),
		cmocka_unit_test(a_collector_failing_mid_stream_cuts_the_response),
		cmocka_unit_test(stop_with_a_scrape_in_flight),
		cmocka_unit_test(listens_where_told),
		cmocka_unit_test(head_and_http10),
		cmocka_unit_test(accept_failures_rest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

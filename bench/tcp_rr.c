// SPDX-License-Identifier: Apache-2.0
/* tcp_rr: TCP request/response latency, as netperf's TCP_RR measures it
 * (netperf is not in Debian main): one connection, TCP_NODELAY, a SIZE-byte
 * request, a SIZE-byte response, the next request once the response is in.
 *
 *   tcp_rr serve --bind ADDR --port P [--dev IFNAME] [--size N] [--timeout S]
 *       answers one connection, then exits (or after S seconds, 60 by default);
 *       --dev binds the socket to IFNAME (SO_BINDTODEVICE, iperf3's ADDR%IFNAME)
 *   tcp_rr run --to ADDR --port P [--seconds S] [--size N]
 *       prints "transactions=N seconds=S tps=R p50_us=X p90_us=Y p99_us=Z"
 *
 * The client retries the connect for 2 s, so it may start with the server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE 65536

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int resolve(const char *addr, const char *port, struct addrinfo **ai)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };

	return getaddrinfo(addr, port, &hints, ai) ? -EINVAL : 0;
}

/* Moves exactly @len bytes; 0, or -1 at EOF / error. */
static int xfer(int fd, char *buf, size_t len, int out)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = out ? send(fd, buf + done, len - done, MSG_NOSIGNAL) :
				  recv(fd, buf + done, len - done, 0);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

static int serve(const char *addr, const char *port, const char *dev, size_t size,
		 unsigned int timeout)
{
	static char buf[MAX_SIZE];
	struct addrinfo *ai;
	int one = 1, lfd, fd;

	alarm(timeout); /* stops by itself whatever the client does */
	if (resolve(addr, port, &ai))
		return 2;
	lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    (dev && setsockopt(lfd, SOL_SOCKET, SO_BINDTODEVICE, dev, (socklen_t)strlen(dev))) ||
	    bind(lfd, ai->ai_addr, ai->ai_addrlen) || listen(lfd, 1)) {
		perror("tcp_rr serve");
		freeaddrinfo(ai);
		return 1;
	}
	freeaddrinfo(ai);
	fd = accept(lfd, NULL, NULL);
	if (fd < 0) {
		perror("accept");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (!xfer(fd, buf, size, 0) && !xfer(fd, buf, size, 1))
		;
	close(fd);
	close(lfd);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int run(const char *addr, const char *port, double seconds, size_t size)
{
	static char buf[MAX_SIZE];
	size_t n = 0, cap = 1 << 16;
	double *lat = malloc(cap * sizeof(*lat)), start, end, deadline;
	struct addrinfo *ai;
	int one = 1, fd = -1;

	if (!lat || resolve(addr, port, &ai))
		return 2;
	for (deadline = now_s() + 2;;) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && !connect(fd, ai->ai_addr, ai->ai_addrlen))
			break;
		if (fd >= 0)
			close(fd);
		if (now_s() > deadline) {
			perror("tcp_rr connect");
			freeaddrinfo(ai);
			return 1;
		}
		usleep(20000);
	}
	freeaddrinfo(ai);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(buf, 'r', size);
	start = now_s();
	end = start + seconds;
	for (double t = start; t < end;) {
		double t0 = t;

		if (xfer(fd, buf, size, 1) || xfer(fd, buf, size, 0)) {
			fprintf(stderr, "tcp_rr: connection lost after %zu transactions\n", n);
			return 1;
		}
		t = now_s();
		if (n == cap) {
			double *grown = realloc(lat, 2 * cap * sizeof(*lat));

			if (!grown)
				return 1;
			lat = grown;
			cap *= 2;
		}
		lat[n++] = (t - t0) * 1e6;
	}
	close(fd);
	qsort(lat, n, sizeof(*lat), cmp_double);
	printf("transactions=%zu seconds=%.3f tps=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f\n", n,
	       now_s() - start, (double)n / (now_s() - start), lat[n / 2], lat[n * 9 / 10],
	       lat[n * 99 / 100]);
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bind", required_argument, NULL, 'b' },  { "to", required_argument, NULL, 't' },
		{ "port", required_argument, NULL, 'p' },  { "size", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 'S' }, { "timeout", required_argument, NULL, 'T' },
		{ "dev", required_argument, NULL, 'd' },     { 0 },
	};
	const char *addr = NULL, *port = "7000", *dev = NULL;
	double seconds = 3;
	long size = 1, timeout = 60;
	int c;

	if (argc < 2 || (strcmp(argv[1], "serve") && strcmp(argv[1], "run"))) {
		fprintf(stderr, "usage: %s serve --bind ADDR --port P [--dev IFNAME] [--size N] [--timeout S]\n"
				"       %s run --to ADDR --port P [--seconds S] [--size N]\n",
			argv[0], argv[0]);
		return 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
		case 't': addr = optarg; break;
		case 'p': port = optarg; break;
		case 'd': dev = optarg; break;
		case 's': size = atol(optarg); break;
		case 'S': seconds = atof(optarg); break;
		case 'T': timeout = atol(optarg); break;
		default: return 2;
		}
	}
	if (!addr || size < 1 || size > MAX_SIZE || seconds <= 0 || seconds > 600 || timeout < 1) {
		fprintf(stderr, "tcp_rr: bad arguments\n");
		return 2;
	}
	return !strcmp(argv[1], "serve") ? serve(addr, port, dev, (size_t)size, (unsigned int)timeout) :
					   run(addr, port, seconds, (size_t)size);
}

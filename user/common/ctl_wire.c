// SPDX-License-Identifier: Apache-2.0
#include "common/ctl_wire.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, long long deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	long long left = deadline - now_ms();
	int ret;

	if (left <= 0)
		return -ETIMEDOUT;
	do {
		ret = poll(&pfd, 1, (int)left);
	} while (ret < 0 && errno == EINTR);
	if (ret < 0)
		return -errno;
	return ret == 0 ? -ETIMEDOUT : 0;
}

#define READER_FIRST_CAP 4096

int ctl_reader_init(struct ctl_reader *r, size_t max_line)
{
	r->max = max_line + 1;
	r->cap = r->max < READER_FIRST_CAP ? r->max : READER_FIRST_CAP;
	r->len = 0;
	r->taken = 0;
	r->buf = malloc(r->cap + 1);
	return r->buf ? 0 : -ENOMEM;
}

/* Doubles the buffer, up to the line limit. */
static int reader_grow(struct ctl_reader *r)
{
	size_t cap = r->cap * 2 < r->max ? r->cap * 2 : r->max;
	char *buf;

	if (r->cap >= r->max)
		return -EMSGSIZE;
	buf = realloc(r->buf, cap + 1);
	if (!buf)
		return -ENOMEM;
	r->buf = buf;
	r->cap = cap;
	return 0;
}

void ctl_reader_free(struct ctl_reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* Drops the line returned by the previous call. */
static void consume_previous(struct ctl_reader *r)
{
	memmove(r->buf, r->buf + r->taken, r->len - r->taken);
	r->len -= r->taken;
	r->taken = 0;
}

int ctl_read_line(struct ctl_reader *r, int fd, int first_byte_ms, int whole_ms, char **line)
{
	long long deadline = now_ms() + first_byte_ms;
	bool started;
	ssize_t n;
	char *nl;
	int err;

	consume_previous(r);
	started = r->len > 0;
	if (started)
		deadline = now_ms() + whole_ms;
	for (;;) {
		nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
		if (nl) {
			*nl = '\0';
			*line = r->buf;
			r->taken = (size_t)(nl - r->buf) + 1;
			return (int)(nl - r->buf);
		}
		if (r->len >= r->cap) {
			err = reader_grow(r);
			if (err)
				return err;
		}
		/* Try first: a request is usually there by the time its
		 * connection is taken, and a poll first costs a syscall. */
		n = recv(fd, r->buf + r->len, r->cap - r->len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			err = wait_fd(fd, POLLIN, deadline);
			if (err)
				return err;
			continue;
		}
		if (n == 0)
			return r->len ? -ECONNRESET : 0;
		if (!started) {
			started = true;
			deadline = now_ms() + whole_ms;
		}
		r->len += (size_t)n;
	}
}

int ctl_write_line(int fd, const char *text, size_t len, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	struct iovec iov[2] = { { (void *)text, len }, { "\n", 1 } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;
	int err;

	/* One send for the line and its newline: a reader woken by the first
	 * half of a message would only go back to sleep. */
	while (msg.msg_iovlen) {
		n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			err = wait_fd(fd, POLLOUT, deadline);
			if (err)
				return err;
			continue;
		}
		while (msg.msg_iovlen && (size_t)n >= msg.msg_iov->iov_len) {
			n -= (ssize_t)msg.msg_iov->iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen) {
			msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + n;
			msg.msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Newline-framed messages on a stream socket, with a deadline and a size
 * limit: shared by the agent's server and its clients. */
#ifndef RAILNET_CTL_WIRE_H
#define RAILNET_CTL_WIRE_H

#include <stddef.h>

struct ctl_reader {
	char *buf;
	size_t len; /* bytes held */
	size_t cap;   /* grows up to max */
	size_t max;   /* the longest line plus its '\n' */
	size_t taken; /* bytes of the line last returned, with its '\n' */
};

int ctl_reader_init(struct ctl_reader *r, size_t max_line);
void ctl_reader_free(struct ctl_reader *r);

/* Reads one line (without its '\n', NUL-terminated into *line, valid until
 * the next call).  @first_byte_ms bounds the wait for a line to start,
 * @whole_ms the time from its first byte to its end.  Returns the line's
 * length, 0 on a clean EOF between lines, -ETIMEDOUT, -EMSGSIZE when the line
 * exceeds the reader's capacity, or another negative errno. */
int ctl_read_line(struct ctl_reader *r, int fd, int first_byte_ms, int whole_ms, char **line);

/* Writes @len bytes of @text and a '\n' within @timeout_ms; negative errno
 * on failure. */
int ctl_write_line(int fd, const char *text, size_t len, int timeout_ms);

#endif

// SPDX-License-Identifier: Apache-2.0
/* fsync_floor: the disk's own cost of one durable record - a 200-byte
 * write, then fdatasync - which every railnetd allocation pays at least
 * once before its reply.  bench_ipam.sh prints it next to railnetd's
 * latency, in the agent's state directory.  "append" grows the file (the
 * fdatasync also writes the inode); "overwrite" writes into a file
 * zero-filled ahead, as railnetd's log does.
 *
 *   fsync_floor DIR [COUNT [append|overwrite]]
 *   -> ops=N ops_per_s=.. p50_us=.. p99_us=.. max_us=..
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int count = argc > 2 ? atoi(argv[2]) : 1000, fd, ret = 1;
	int overwrite = argc > 3 && !strcmp(argv[3], "overwrite");
	char path[4096], record[200];
	double *lat, t0, total;

	if (argc < 2 || count < 1 || (argc > 3 && !overwrite && strcmp(argv[3], "append"))) {
		fprintf(stderr, "usage: fsync_floor DIR [COUNT [append|overwrite]]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/fsync-floor.tmp", argv[1]);
	lat = calloc((size_t)count, sizeof(*lat));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!lat || fd < 0) {
		fprintf(stderr, "fsync_floor: %s: %s\n", path, strerror(errno));
		goto out;
	}
	if (overwrite) {
		static const char zeros[64 * 1024];
		off_t want = (off_t)count * sizeof(record);

		for (off_t off = 0; off < want; off += sizeof(zeros))
			if (write(fd, zeros, sizeof(zeros)) != sizeof(zeros))
				goto out;
		if (fsync(fd) < 0)
			goto out;
	}
	memset(record, 'x', sizeof(record));
	total = now_us();
	for (int i = 0; i < count; i++) {
		t0 = now_us();
		if (pwrite(fd, record, sizeof(record), (off_t)i * sizeof(record)) != sizeof(record) ||
		    fdatasync(fd) < 0) {
			fprintf(stderr, "fsync_floor: %s: %s\n", path, strerror(errno));
			goto out;
		}
		lat[i] = now_us() - t0;
	}
	total = (now_us() - total) / 1e6;
	qsort(lat, (size_t)count, sizeof(*lat), cmp_double);
	printf("ops=%d ops_per_s=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f\n", count, count / total,
	       lat[count / 2], lat[(count * 99) / 100], lat[count - 1]);
	ret = 0;
out:
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	free(lat);
	return ret;
}

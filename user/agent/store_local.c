// SPDX-License-Identifier: Apache-2.0
/* The local IPAM store: <stateDir>/ipam.log.
 *
 * A file header, then records (length, crc32, JSON payload).  Appends are
 * write()s under the store lock; durability is fdatasync(), shared: a caller
 * whose record is already covered by a sync that finished returns at once,
 * one that arrives while a sync runs queues, and when that sync ends one of
 * the queued callers syncs everything written meanwhile for all of them
 * (group commit, leader/follower).
 *
 * The file is zero-filled ahead of the records (PREALLOC_BYTES at a time)
 * and records overwrite the zeros: an fdatasync then writes the record's
 * page and flushes, without the inode write that an append's new file size
 * costs - a third fewer I/Os and less time per sync on the request path.
 * Zeros after the last record are the log's clean end.
 *
 * At start the log is replayed.  A record that is cut short or fails its
 * checksum with no valid record after it is a torn tail - a crash while
 * appending, nothing of it acknowledged - and is cut off (kept aside in
 * ipam.log.dropped).  One with valid records after it is damage in the
 * middle of the log: records after it may have been acknowledged, so none
 * is dropped - the damaged bytes are skipped, the whole log is kept in
 * ipam.log.corrupt, and the log is rewritten without them.
 *
 * Compaction holds up neither the caller nor the appends: compact_begin
 * encodes the live state into memory (under the caller's lock, so no record
 * slips between) and from then on every append is also copied aside;
 * compact_finish writes the snapshot and the copies to ipam.log.tmp, and
 * only for the last few copies takes the store lock: it switches appends to
 * the new file there, then - unlocked, as a sync in progress that later syncs
 * wait for - fdatasyncs it, renames it over the log and fsyncs the directory.
 */
#include "agent/store.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include "common/log.h"

#define LOG_MAGIC "RNIPAM1\n"
#define LOG_MAGIC_LEN 8

/* A growable byte buffer. */
struct bytes {
	unsigned char *p;
	size_t len, cap;
};

static int bytes_put(struct bytes *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		unsigned char *p;

		while (cap < b->len + len)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

static void bytes_free(struct bytes *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* How far ahead of the records the file is zero-filled. */
#define PREALLOC_BYTES (256 * 1024)

/* Below this many copied bytes compact_finish takes the lock to switch. */
#define COMPACT_SWITCH_BYTES (64 * 1024)

/* A caller of sync waiting for its record to be durable.  It sleeps on its
 * own semaphore, so that a sync's end wakes exactly the callers it covered
 * - they return without touching the store lock again.  A condition
 * variable broadcast would wake all of them to fight over the lock, only
 * to find most of them must go back to sleep. */
struct sync_waiter {
	struct sync_waiter *next;
	uint64_t seq;
	sem_t sem;
	bool done;
	int err;
};

struct store_local {
	struct store base;
	char path[PATH_MAX];
	char tmp_path[PATH_MAX];
	char dir[PATH_MAX];
	int fd;
	bool readonly;	      /* railnetd --check-config: no writes at all */
	struct json_object *recovery; /* what replay found, for status */
	pthread_mutex_t lock; /* everything below */
	off_t end;	      /* where the next record goes */
	off_t size;	      /* the file's, zeros past end */
	uint64_t written;     /* sequence number of the last record written */
	uint64_t synced;      /* ... of the last record known durable */
	bool syncing;         /* a sync or a compaction holds the fd */
	struct sync_waiter *waiters, **waiters_tail; /* in arrival order */
	bool compact_waiting; /* compact_finish waits for the fd */
	pthread_cond_t compact_cond;
	pthread_t syncer;
	bool syncer_started, syncer_busy, stopping;
	pthread_cond_t syncer_cond;
	int failed;           /* nothing can be made durable any more: every sync fails */
	uint64_t backlog;
	/* A compaction between begin and finish. */
	bool capturing;
	int capture_err;      /* a copy could not be kept: the compaction is off */
	struct bytes capture; /* appends since begin */
	uint64_t captured;
	struct bytes snap;    /* the state at begin, as a log */
	uint64_t snap_records;
};

#define to_local(s) ((struct store_local *)(s))

size_t store_record_encode(const char *payload, size_t len, unsigned char *out)
{
	uint32_t hdr[2] = { htole32((uint32_t)len),
			    htole32((uint32_t)crc32(0, (const Bytef *)payload, (uInt)len)) };

	memcpy(out, hdr, sizeof(hdr));
	memcpy(out + STORE_RECORD_HDR, payload, len);
	return STORE_RECORD_HDR + len;
}

long store_record_decode(const unsigned char *buf, size_t len, const char **payload)
{
	uint32_t hdr[2], plen;

	if (len < STORE_RECORD_HDR)
		return -EAGAIN;
	memcpy(hdr, buf, sizeof(hdr));
	plen = le32toh(hdr[0]);
	if (plen == 0 || plen > STORE_RECORD_MAX)
		return -EBADMSG;
	if (len - STORE_RECORD_HDR < plen)
		return -EAGAIN;
	if (crc32(0, buf + STORE_RECORD_HDR, plen) != le32toh(hdr[1]))
		return -EBADMSG;
	*payload = (const char *)buf + STORE_RECORD_HDR;
	return plen;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int pwritev_all(int fd, struct iovec *iov, int n, off_t off)
{
	while (n) {
		ssize_t w = pwritev(fd, iov, n, off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += w;
		while (n && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Zero-fills the file up to past @need (best effort: without it, records
 * still go in, growing the file).  Lock held. */
static void prealloc(struct store_local *st, off_t need)
{
	static const unsigned char zeros[64 * 1024];
	off_t to = (need + PREALLOC_BYTES + 4095) & ~(off_t)4095;

	while (st->size < to) {
		size_t n = (size_t)(to - st->size) < sizeof(zeros) ? (size_t)(to - st->size) :
								      sizeof(zeros);
		ssize_t w = pwrite(st->fd, zeros, n, st->size);

		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			log_debug("store_prealloc_failed", "path=%s err=\"%s\"", st->path,
				  strerror(w < 0 ? errno : EIO));
			return;
		}
		st->size += w;
	}
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		err = -errno;
	close(fd);
	return err;
}

static int read_file(int fd, unsigned char **bufp, size_t *lenp)
{
	struct stat st;
	unsigned char *buf;
	size_t off = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	while (off < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return n < 0 ? -errno : -EIO;
		}
		off += (size_t)n;
	}
	*bufp = buf;
	*lenp = off;
	return 0;
}

/* Writes @len bytes to @path (replacing it), durably. */
static int write_file(struct store_local *st, const char *path, const unsigned char *bytes,
		      size_t len)
{
	int fd, err;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	err = write_all(fd, bytes, len);
	if (!err && fsync(fd) < 0)
		err = -errno;
	close(fd);
	if (!err)
		err = fsync_dir(st->dir);
	return err;
}

/* Writes a dropped log tail to <log>.dropped (replacing an older one). */
static int keep_aside(struct store_local *st, const unsigned char *bytes, size_t len)
{
	char path[PATH_MAX + 16];
	int err;

	snprintf(path, sizeof(path), "%s.dropped", st->path);
	err = write_file(st, path, bytes, len);
	if (err)
		log_err("store_keep_aside_failed", "path=%s err=\"%s\"", path, strerror(-err));
	return err;
}

/* Decodes a whole, checksummed, NUL-terminated record at @off: its payload
 * length, or a negative errno as store_record_decode. */
static long record_at(const unsigned char *buf, size_t len, size_t off, const char **payload)
{
	long plen = store_record_decode(buf + off, len - off, payload);

	/* Payloads are written with their NUL. */
	if (plen > 0 && (*payload)[plen - 1] != '\0')
		return -EBADMSG;
	return plen;
}

/* The offset of the first valid record after @from, or 0.  A payload is
 * JSON text, so a record's length and checksum cannot appear inside another
 * record's payload: what this finds is a record. */
static size_t next_record(const unsigned char *buf, size_t len, size_t from)
{
	for (size_t off = from; off + STORE_RECORD_HDR < len; off++) {
		const char *payload;
		struct json_object *rec;

		if (record_at(buf, len, off, &payload) <= 0)
			continue;
		rec = json_tokener_parse(payload);
		if (rec) {
			json_object_put(rec);
			return off;
		}
	}
	return 0;
}

/* A damaged stretch in the middle of the log, skipped at replay. */
struct damage {
	size_t off, len;
};


/* Rewrites the log's first @len bytes without the damaged stretches, once
 * the whole file (@all bytes) is safe in <log>.corrupt, and reopens it. */
static int repair(struct store_local *st, const unsigned char *buf, size_t all, size_t len,
		  const struct damage *dmg, size_t ndmg, size_t *newlen)
{
	char path[PATH_MAX + 16];
	struct bytes out = { 0 };
	size_t from = 0;
	int err, fd;

	snprintf(path, sizeof(path), "%s.corrupt", st->path);
	err = write_file(st, path, buf, all);
	for (size_t i = 0; !err && i < ndmg; i++) {
		err = bytes_put(&out, buf + from, dmg[i].off - from);
		from = dmg[i].off + dmg[i].len;
	}
	if (!err)
		err = bytes_put(&out, buf + from, len - from);
	if (!err)
		err = write_file(st, st->tmp_path, out.p, out.len);
	if (!err && rename(st->tmp_path, st->path) < 0)
		err = -errno;
	if (!err)
		err = fsync_dir(st->dir);
	if (!err) {
		fd = open(st->path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			err = -errno;
		} else {
			close(st->fd);
			st->fd = fd;
			*newlen = out.len;
		}
	}
	bytes_free(&out);
	if (err)
		log_err("store_repair_failed", "path=%s err=\"%s\"", st->path, strerror(-err));
	return err;
}

static int local_replay(struct store *s, store_apply_fn apply, void *ctx)
{
	struct store_local *st = to_local(s);
	struct damage *dmg = NULL;
	size_t ndmg = 0, damaged = 0, torn = 0, after = 0, len = 0, off = LOG_MAGIC_LEN, used, nonzero;
	unsigned char *buf = NULL;
	uint64_t count = 0;
	int err;

	err = read_file(st->fd, &buf, &len);
	if (err)
		return err;
	if (len < LOG_MAGIC_LEN || memcmp(buf, LOG_MAGIC, LOG_MAGIC_LEN)) {
		log_err("store_bad_header", "path=%s", st->path);
		err = -EBADMSG;
		goto out;
	}
	st->size = (off_t)len;
	/* The zeros at the end are where records go next - less the NUL
	 * that ends the last record's payload. */
	for (nonzero = len; nonzero > LOG_MAGIC_LEN && !buf[nonzero - 1]; nonzero--)
		;
	used = nonzero < len ? nonzero + 1 : len;
	while (off < used) {
		const char *payload;
		long plen = record_at(buf, used, off, &payload);
		struct json_object *rec;
		size_t next;

		if (plen < 0) {
			next = next_record(buf, used, off + 1);
			if (!next) {
				torn = (nonzero > off ? nonzero : used) - off;
				/* Past the last durable record: a crash while
				 * appending.  Nothing there was acknowledged, but
				 * keep the bytes for the operator before cutting
				 * them off. */
				log_warn("store_torn_tail",
					 "path=%s offset=%zu dropped_bytes=%zu reason=%s records_kept=%llu kept_aside=%s%s",
					 st->path, off, torn, plen == -EAGAIN ? "truncated" : "corrupt",
					 (unsigned long long)count, st->path,
					 st->readonly ? ".dropped (not written: read-only)" : ".dropped");
				if (st->readonly)
					break;
				err = keep_aside(st, buf + off, torn);
				if (err)
					goto out;
				if (ftruncate(st->fd, (off_t)off) < 0 || fdatasync(st->fd) < 0) {
					err = -errno;
					goto out;
				}
				used = off;
				st->size = (off_t)off;
				break;
			}
			/* Valid records follow: this is not where appends
			 * stopped, and what follows may have been acknowledged. */
			log_err("store_corrupt_record",
				"path=%s offset=%zu damaged_bytes=%zu reason=%s next_record=%zu",
				st->path, off, next - off, plen == -EAGAIN ? "bad_length" : "bad_checksum",
				next);
			if (ndmg % 16 == 0) {
				struct damage *grown = realloc(dmg, (ndmg + 16) * sizeof(*dmg));

				if (!grown) {
					err = -ENOMEM;
					goto out;
				}
				dmg = grown;
			}
			dmg[ndmg++] = (struct damage){ off, next - off };
			damaged += next - off;
			off = next;
			continue;
		}
		rec = json_tokener_parse(payload);
		if (!rec) {
			/* A valid checksum over invalid JSON is not a torn write. */
			log_err("store_bad_record", "path=%s offset=%zu", st->path, off);
			err = -EBADMSG;
			goto out;
		}
		err = apply(ctx, rec);
		json_object_put(rec);
		if (err)
			goto out;
		off += STORE_RECORD_HDR + (size_t)plen;
		count++;
		after += ndmg > 0;
	}
	if (ndmg) {
		/* Loud: whatever the damaged records said is lost (a release
		 * lost leaks an address until GC or the reconciler; an
		 * allocation lost may be handed out again). */
		log_err("store_damaged",
			"path=%s regions=%zu damaged_bytes=%zu records_kept=%llu records_after_damage=%zu "
			"kept_aside=%s.corrupt state=\"%s\"",
			st->path, ndmg, damaged, (unsigned long long)count, after, st->path,
			st->readonly ? "read-only: left as it is" :
				       "the log is rewritten without the damaged bytes");
		if (!st->readonly) {
			err = repair(st, buf, len, used, dmg, ndmg, &used);
			if (err)
				goto out;
			st->size = (off_t)used;
			off = used;
		}
	}
	st->end = (off_t)off;
	st->backlog = count;
	st->recovery = json_object_new_object();
	json_object_object_add(st->recovery, "records", json_object_new_uint64(count));
	json_object_object_add(st->recovery, "tornTailBytes", json_object_new_uint64(torn));
	json_object_object_add(st->recovery, "damagedRegions", json_object_new_uint64(ndmg));
	json_object_object_add(st->recovery, "damagedBytes", json_object_new_uint64(damaged));
	log_info("store_replayed", "path=%s records=%llu", st->path, (unsigned long long)count);
out:
	free(dmg);
	free(buf);
	return err;
}

/* A record: its header, then its payload - the JSON text and its NUL, so
 * that replay parses it in place - as three pieces for writev. */
struct record {
	uint32_t hdr[2];
	struct iovec iov[3];
	size_t len;
};

static int record_of(const char *json, size_t len, struct record *r)
{
	uint32_t crc;

	if (len + 1 > STORE_RECORD_MAX)
		return -E2BIG;
	crc = (uint32_t)crc32(crc32(0, (const Bytef *)json, (uInt)len), (const Bytef *)"", 1);
	r->hdr[0] = htole32((uint32_t)(len + 1));
	r->hdr[1] = htole32(crc);
	r->iov[0] = (struct iovec){ r->hdr, sizeof(r->hdr) };
	r->iov[1] = (struct iovec){ (void *)json, len };
	r->iov[2] = (struct iovec){ "", 1 };
	r->len = STORE_RECORD_HDR + len + 1;
	return 0;
}

static int record_put(struct bytes *b, const struct record *r)
{
	int err = 0;

	for (int i = 0; i < 3 && !err; i++)
		err = bytes_put(b, r->iov[i].iov_base, r->iov[i].iov_len);
	return err;
}

/* Appends one record, or nothing: a write cut short (disk full) is cut
 * back off, for a later record after a partial one would be lost at replay
 * with it.  Called with the lock held. */
static int write_one(struct store_local *st, const struct record *rec)
{
	struct iovec iov[3];
	int err;

	if (st->readonly)
		return -EROFS;
	if (st->end + (off_t)rec->len > st->size)
		prealloc(st, st->end + (off_t)rec->len);
	memcpy(iov, rec->iov, sizeof(iov));
	err = pwritev_all(st->fd, iov, 3, st->end);
	if (!err) {
		st->end += (off_t)rec->len;
		if (st->end > st->size)
			st->size = st->end;
	} else if (ftruncate(st->fd, st->end) < 0) {
		st->failed = -errno;
		log_err("store_failed", "path=%s err=\"cannot cut a partial record: %s\"", st->path,
			strerror(errno));
	} else {
		st->size = st->end;
	}
	return err;
}

static int local_append(struct store *s, const char *json, size_t len, uint64_t *seq)
{
	struct store_local *st = to_local(s);
	struct record rec;
	int err;

	err = record_of(json, len, &rec);
	if (err)
		return err;
	pthread_mutex_lock(&st->lock);
	err = st->failed;
	if (!err)
		err = write_one(st, &rec);
	if (!err) {
		*seq = ++st->written;
		st->backlog++;
		if (st->capturing && !st->capture_err) {
			st->capture_err = record_put(&st->capture, &rec);
			st->captured++;
		}
	}
	pthread_mutex_unlock(&st->lock);
	return err;
}

/* The fd's holder is done with it: wakes the waiters that @target (the last
 * record durable now, 0 after a failure) covers, then gives the fd to a
 * waiting compaction, or has the syncer take the rest.  Lock held. */
static void sync_done(struct store_local *st, uint64_t target)
{
	struct sync_waiter *w, **pp;

	if (target > st->synced)
		st->synced = target;
	for (pp = &st->waiters; (w = *pp);) {
		if (!st->failed && w->seq > st->synced) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->err = st->failed;
		w->done = true;
		sem_post(&w->sem); /* w may be gone from here on */
	}
	st->waiters_tail = pp;
	st->syncing = false;
	if (st->compact_waiting) {
		pthread_cond_signal(&st->compact_cond);
		return;
	}
	if (st->waiters && !st->syncer_busy) {
		st->syncer_busy = true;
		pthread_cond_signal(&st->syncer_cond);
	}
}

/* One fdatasync of everything written so far.  Lock held, the fd free. */
static void sync_written(struct store_local *st)
{
	uint64_t target = st->written;
	int err, fd = st->fd;

	st->syncing = true;
	pthread_mutex_unlock(&st->lock);
	err = fdatasync(fd) < 0 ? -errno : 0;
	pthread_mutex_lock(&st->lock);
	/* After a failed fdatasync the kernel may have dropped the dirty
	 * pages and will not say so again: nothing written since the last
	 * good sync can be acknowledged any more. */
	if (err && !st->failed) {
		st->failed = err;
		log_err("store_failed", "path=%s err=\"fdatasync: %s\" state=\"%s\"", st->path,
			strerror(-err), "no allocation is acknowledged until a restart");
	}
	sync_done(st, err ? 0 : target);
}

/* Syncs back to back while callers wait, so that the disk never idles
 * between two groups for want of a thread to run the next sync: handed
 * to a sleeping caller instead, the next sync would wait for that thread
 * to be scheduled, behind every runnable client on a busy node. */
static void *syncer_main(void *arg)
{
	struct store_local *st = arg;

	pthread_mutex_lock(&st->lock);
	for (;;) {
		while (!st->stopping && (!st->waiters || st->syncing || st->compact_waiting)) {
			st->syncer_busy = false;
			pthread_cond_wait(&st->syncer_cond, &st->lock);
		}
		if (st->stopping)
			break;
		st->syncer_busy = true;
		sync_written(st);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

/* Group commit: a caller that finds the disk idle syncs everything written
 * so far itself (no thread to wake: the fast path of a quiet node); callers
 * that arrive while a sync runs queue, and when it ends the ones it covered
 * return while the syncer runs the next sync for the rest. */
static int local_sync(struct store *s, uint64_t seq)
{
	struct store_local *st = to_local(s);
	struct sync_waiter w;
	int err = 0;

	pthread_mutex_lock(&st->lock);
	if (seq == STORE_SEQ_WRITTEN)
		seq = st->written;
	for (;;) {
		if (st->synced >= seq)
			break;
		if (st->failed) {
			err = st->failed;
			break;
		}
		if (!st->syncing && !st->compact_waiting && !st->syncer_busy) {
			sync_written(st);
			continue;
		}
		w = (struct sync_waiter){ .seq = seq };
		sem_init(&w.sem, 0, 0);
		*st->waiters_tail = &w;
		st->waiters_tail = &w.next;
		pthread_mutex_unlock(&st->lock);
		while (sem_wait(&w.sem) < 0 && errno == EINTR)
			;
		sem_destroy(&w.sem);
		return w.err;
	}
	pthread_mutex_unlock(&st->lock);
	return err;
}

struct snapshot {
	struct store base; /* emit() receives this */
	struct bytes out;
	uint64_t records;
};

static int snapshot_emit(struct store *s, const char *json, size_t len)
{
	struct snapshot *snap = (struct snapshot *)s;
	struct record rec;
	int err;

	err = record_of(json, len, &rec);
	if (!err)
		err = record_put(&snap->out, &rec);
	if (!err)
		snap->records++;
	return err;
}

static int local_compact_begin(struct store *s, store_dump_fn dump, void *ctx)
{
	struct store_local *st = to_local(s);
	struct snapshot snap = { 0 };
	int err;

	pthread_mutex_lock(&st->lock);
	err = st->readonly ? -EROFS : st->capturing ? -EBUSY : 0;
	pthread_mutex_unlock(&st->lock);
	if (err)
		return err;
	/* The caller's lock keeps appends out while the state is encoded. */
	err = bytes_put(&snap.out, LOG_MAGIC, LOG_MAGIC_LEN);
	if (!err)
		err = dump(ctx, &snap.base, snapshot_emit);
	if (err) {
		bytes_free(&snap.out);
		return err;
	}
	pthread_mutex_lock(&st->lock);
	st->snap = snap.out;
	st->snap_records = snap.records;
	st->capturing = true;
	st->capture_err = 0;
	st->captured = 0;
	pthread_mutex_unlock(&st->lock);
	return 0;
}

/* Ends a capture without a switch: the old log goes on. */
static int compact_abort(struct store_local *st, int fd, int err)
{
	pthread_mutex_lock(&st->lock);
	st->capturing = false;
	bytes_free(&st->capture);
	bytes_free(&st->snap);
	pthread_mutex_unlock(&st->lock);
	if (fd >= 0) {
		close(fd);
		unlink(st->tmp_path);
	}
	log_err("store_compact_failed", "path=%s err=\"%s\"", st->path, strerror(-err));
	return err;
}

static int local_compact_finish(struct store *s)
{
	struct store_local *st = to_local(s);
	struct bytes chunk = { 0 };
	uint64_t target, records;
	int err, fd, old_fd;
	off_t end;

	fd = open(st->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return compact_abort(st, -1, -errno);
	end = (off_t)st->snap.len;
	err = write_all(fd, st->snap.p, st->snap.len);
	if (!err && fdatasync(fd) < 0)
		err = -errno;
	if (err)
		return compact_abort(st, fd, err);

	/* Copy what was appended meanwhile, unlocked while there is a lot. */
	pthread_mutex_lock(&st->lock);
	while (!st->capture_err && st->capture.len > COMPACT_SWITCH_BYTES) {
		chunk = st->capture;
		memset(&st->capture, 0, sizeof(st->capture));
		pthread_mutex_unlock(&st->lock);
		err = write_all(fd, chunk.p, chunk.len);
		end += (off_t)chunk.len;
		bytes_free(&chunk);
		if (err)
			return compact_abort(st, fd, err);
		pthread_mutex_lock(&st->lock);
	}
	/* A sync in flight on the old file finishes first; syncs asked for
	 * meanwhile queue behind this switch. */
	while (st->syncing) {
		st->compact_waiting = true;
		pthread_cond_wait(&st->compact_cond, &st->lock);
	}
	st->compact_waiting = false;
	err = st->capture_err;
	if (!err)
		err = write_all(fd, st->capture.p, st->capture.len);
	if (err) {
		/* Syncs that queued behind the switch go on with the old file. */
		sync_done(st, 0);
		pthread_mutex_unlock(&st->lock);
		return compact_abort(st, fd, err);
	}
	/* The switch: appends go to the new file, whose sync is this one. */
	old_fd = st->fd;
	st->fd = fd;
	st->end = end + (off_t)st->capture.len;
	st->size = st->end;
	records = st->snap_records + st->captured;
	st->backlog = records;
	st->capturing = false;
	bytes_free(&st->capture);
	bytes_free(&st->snap);
	st->syncing = true;
	target = st->written;
	pthread_mutex_unlock(&st->lock);

	err = fdatasync(fd) < 0 ? -errno : 0;
	if (!err && rename(st->tmp_path, st->path) < 0)
		err = -errno;
	if (!err)
		err = fsync_dir(st->dir);

	pthread_mutex_lock(&st->lock);
	if (err)
		st->failed = err; /* appends since the switch are in a file that is not the log */
	sync_done(st, err ? 0 : target);
	pthread_mutex_unlock(&st->lock);
	close(old_fd);
	if (err) {
		log_err("store_compact_failed", "path=%s err=\"%s\" state=\"%s\"", st->path,
			strerror(-err), "the log is lost: no allocation is acknowledged until a restart");
		return err;
	}
	log_info("store_compacted", "path=%s records=%llu", st->path, (unsigned long long)records);
	return 0;
}

static uint64_t local_backlog(struct store *s)
{
	struct store_local *st = to_local(s);
	uint64_t n;

	pthread_mutex_lock(&st->lock);
	n = st->backlog;
	pthread_mutex_unlock(&st->lock);
	return n;
}

static void local_close(struct store *s)
{
	struct store_local *st = to_local(s);

	if (!s)
		return;
	if (st->syncer_started) {
		pthread_mutex_lock(&st->lock);
		st->stopping = true;
		pthread_cond_signal(&st->syncer_cond);
		pthread_mutex_unlock(&st->lock);
		pthread_join(st->syncer, NULL);
	}
	if (st->fd >= 0) {
		if (!st->readonly)
			fdatasync(st->fd);
		close(st->fd);
	}
	json_object_put(st->recovery);
	bytes_free(&st->capture);
	bytes_free(&st->snap);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->compact_cond);
	pthread_cond_destroy(&st->syncer_cond);
	free(st);
}

static struct json_object *local_status(struct store *s)
{
	struct store_local *st = to_local(s);

	return st->recovery ? json_object_get(st->recovery) : json_object_new_object();
}

static const struct store_ops local_ops = {
	.name = "local",
	.replay = local_replay,
	.append = local_append,
	.sync = local_sync,
	.compact_begin = local_compact_begin,
	.compact_finish = local_compact_finish,
	.backlog = local_backlog,
	.status = local_status,
	.close = local_close,
};

static int local_open(const char *dir, bool readonly, struct store **out)
{
	struct store_local *st;
	struct stat sb;
	int err;

	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->base.ops = &local_ops;
	st->fd = -1;
	st->readonly = readonly;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->compact_cond, NULL);
	pthread_cond_init(&st->syncer_cond, NULL);
	st->waiters_tail = &st->waiters;
	if (snprintf(st->dir, sizeof(st->dir), "%s", dir) >= (int)sizeof(st->dir) ||
	    snprintf(st->path, sizeof(st->path), "%s/ipam.log", dir) >= (int)sizeof(st->path) ||
	    snprintf(st->tmp_path, sizeof(st->tmp_path), "%s/ipam.log.tmp", dir) >=
		    (int)sizeof(st->tmp_path)) {
		err = -ENAMETOOLONG;
		goto err;
	}
	if (readonly) {
		st->fd = open(st->path, O_RDONLY | O_CLOEXEC);
		if (st->fd < 0) {
			err = -errno;
			goto err;
		}
		*out = &st->base;
		return 0;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		err = -errno;
		log_err("store_mkdir_failed", "dir=%s err=\"%s\"", dir, strerror(errno));
		goto err;
	}
	unlink(st->tmp_path); /* a compaction that crashed before its rename */
	st->fd = open(st->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->fd < 0) {
		err = -errno;
		log_err("store_open_failed", "path=%s err=\"%s\"", st->path, strerror(errno));
		goto err;
	}
	if (fstat(st->fd, &sb) < 0) {
		err = -errno;
		goto err;
	}
	st->end = st->size = sb.st_size; /* replay finds the end of the records */
	if (sb.st_size == 0) {
		err = write_all(st->fd, LOG_MAGIC, LOG_MAGIC_LEN);
		if (!err && (fsync(st->fd) < 0 || fsync_dir(dir) < 0))
			err = -errno;
		if (err)
			goto err;
		st->end = st->size = LOG_MAGIC_LEN;
	}
	err = -pthread_create(&st->syncer, NULL, syncer_main, st);
	if (err)
		goto err;
	st->syncer_started = true;
	*out = &st->base;
	return 0;
err:
	local_close(&st->base);
	return err;
}

int store_local_open(const char *dir, struct store **out)
{
	return local_open(dir, false, out);
}

int store_local_open_readonly(const char *dir, struct store **out)
{
	return local_open(dir, true, out);
}

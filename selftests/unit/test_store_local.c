// SPDX-License-Identifier: Apache-2.0
/* The local store: record encoding, replay, recovery from a torn or corrupt
 * tail, compaction, and group commit from concurrent callers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/store.h"
#include "common/log.h"

struct seen {
	int n;
	int last;
};

static int count_records(void *ctx, struct json_object *rec)
{
	struct seen *s = ctx;

	s->n++;
	s->last = json_object_get_int(json_object_object_get(rec, "i"));
	return 0;
}

static int setup_dir(void **state)
{
	char *dir = strdup("/tmp/railnet-test-store-XXXXXX");

	if (!mkdtemp(dir))
		return -1;
	*state = dir;
	log_setup("test", LOG_LVL_ERROR, LOG_FMT_TEXT, NULL);
	return 0;
}

static int teardown_dir(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", (char *)*state);
	free(*state);
	return system(cmd) == 0 ? 0 : -1;
}

static char *log_path(void **state)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/ipam.log", (char *)*state);
	return path;
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? -1 : st.st_size;
}

/* Where the records end: the store zero-fills the file ahead of them
 * (the last record's payload ends with a NUL of its own). */
static off_t records_end(const char *path)
{
	off_t size = file_size(path), last = -1;
	FILE *f = fopen(path, "r");
	int c;

	assert_non_null(f);
	for (off_t off = 0; (c = fgetc(f)) != EOF; off++)
		if (c)
			last = off;
	fclose(f);
	return last + 2 < size ? last + 2 : size;
}

/* Appends the JSON object @rec. */
static int append_obj(struct store *st, struct json_object *rec, uint64_t *seq)
{
	const char *text = json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN);

	return st->ops->append(st, text, strlen(text), seq);
}

/* Opens the store in the test dir, replays it, returns it open. */
static struct store *open_replay(void **state, struct seen *seen)
{
	struct store *st;

	memset(seen, 0, sizeof(*seen));
	assert_int_equal(store_local_open(*state, &st), 0);
	assert_int_equal(st->ops->replay(st, count_records, seen), 0);
	return st;
}

static void append_n(struct store *st, int from, int n)
{
	uint64_t seq = 0;

	for (int i = from; i < from + n; i++) {
		struct json_object *rec = json_object_new_object();

		json_object_object_add(rec, "i", json_object_new_int(i));
		assert_int_equal(append_obj(st, rec, &seq), 0);
		json_object_put(rec);
	}
	assert_int_equal(st->ops->sync(st, seq), 0);
}

static void test_record_encoding(void **state)
{
	unsigned char buf[64];
	const char *payload;
	size_t len = store_record_encode("{\"a\":1}", 8, buf);

	assert_int_equal(len, STORE_RECORD_HDR + 8);
	assert_int_equal(store_record_decode(buf, len, &payload), 8);
	assert_string_equal(payload, "{\"a\":1}");
	/* Every prefix is a torn record, not a corrupt one. */
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(store_record_decode(buf, cut, &payload), -EAGAIN);
	/* A flipped bit anywhere in the payload or its checksum is caught. */
	for (size_t i = 4; i < len; i++) {
		buf[i] ^= 0x10;
		assert_int_equal(store_record_decode(buf, len, &payload), -EBADMSG);
		buf[i] ^= 0x10;
	}
	/* An absurd length is corruption, not a short read. */
	memset(buf, 0xff, 4);
	assert_int_equal(store_record_decode(buf, len, &payload), -EBADMSG);
	memset(buf, 0, 4);
	assert_int_equal(store_record_decode(buf, len, &payload), -EBADMSG);
}

static long long status_field(struct store *st, const char *key)
{
	struct json_object *status = st->ops->status(st);
	long long v = json_object_get_int64(json_object_object_get(status, key));

	json_object_put(status);
	return v;
}

static void test_replay_in_order(void **state)
{
	struct seen seen;
	struct store *st = open_replay(state, &seen);

	assert_int_equal(seen.n, 0);
	append_n(st, 0, 100);
	st->ops->close(st);
	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 100);
	assert_int_equal(seen.last, 99);
	st->ops->close(st);
}

static void test_torn_tail_is_dropped_and_truncated(void **state)
{
	struct seen seen;
	struct store *st = open_replay(state, &seen);
	off_t good;
	int fd;

	append_n(st, 0, 3);
	st->ops->close(st);
	good = records_end(log_path(state));
	/* A crash in the middle of the 4th append: half a record. */
	fd = open(log_path(state), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\x20\x00\x00\x00\x12\x34\x56\x78{\"i\":", 13, good), 13);
	close(fd);

	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 3);
	assert_int_equal(seen.last, 2);
	assert_int_equal(file_size(log_path(state)), good);
	assert_int_equal(status_field(st, "tornTailBytes"), 13);
	/* Appends go after the last good record. */
	append_n(st, 3, 1);
	st->ops->close(st);
	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 4);
	assert_int_equal(seen.last, 3);
	st->ops->close(st);
}

static void test_corrupt_tail_is_dropped(void **state)
{
	char dropped[4096];
	struct seen seen;
	struct store *st = open_replay(state, &seen);
	off_t size;
	int fd;

	append_n(st, 0, 5);
	st->ops->close(st);
	size = records_end(log_path(state));
	/* The last record's payload damaged (a sector that never made it). */
	fd = open(log_path(state), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "XX", 2, size - 4), 2);
	close(fd);

	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 4);
	assert_int_equal(seen.last, 3);
	assert_true(file_size(log_path(state)) < size);
	st->ops->close(st);
	/* The dropped bytes are kept aside for the operator. */
	snprintf(dropped, sizeof(dropped), "%s.dropped", log_path(state));
	assert_true(file_size(dropped) > 0 && file_size(dropped) < size);
}

/* The offset of record @n (from 0) in the log at @path. */
static off_t record_offset(const char *path, int n)
{
	unsigned char buf[65536];
	const char *payload;
	size_t off = 8; /* the header */
	ssize_t len;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	len = read(fd, buf, sizeof(buf));
	close(fd);
	for (int i = 0; i < n; i++) {
		long plen = store_record_decode(buf + off, (size_t)len - off, &payload);

		assert_true(plen > 0);
		off += STORE_RECORD_HDR + (size_t)plen;
	}
	return (off_t)off;
}

/* Damage with valid records after it is not a torn tail: those records may
 * have been acknowledged, and none of them is dropped. */
static void test_damage_mid_log_keeps_later_records(void **state)
{
	char corrupt[300];
	struct seen seen;
	struct store *st = open_replay(state, &seen);
	off_t size, r3, r6;
	int fd;

	append_n(st, 0, 10);
	st->ops->close(st);
	size = file_size(log_path(state));
	r3 = record_offset(log_path(state), 3);
	r6 = record_offset(log_path(state), 6);
	fd = open(log_path(state), O_WRONLY);
	assert_true(fd >= 0);
	/* Record 3's payload damaged, record 6's length field too (it then
	 * claims more bytes than the file holds, as a torn record would). */
	assert_int_equal(pwrite(fd, "X", 1, r3 + STORE_RECORD_HDR + 2), 1);
	assert_int_equal(pwrite(fd, "\xff\x7f", 2, r6), 2);
	close(fd);

	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 8);
	assert_int_equal(seen.last, 9);
	assert_int_equal(status_field(st, "damagedRegions"), 2);
	assert_int_equal(status_field(st, "tornTailBytes"), 0);
	/* The whole damaged log is kept for the operator... */
	snprintf(corrupt, sizeof(corrupt), "%s.corrupt", log_path(state));
	assert_int_equal(file_size(corrupt), size);
	/* ...and the log is rewritten without the damage, taking appends. */
	assert_true(file_size(log_path(state)) < size);
	append_n(st, 10, 1);
	st->ops->close(st);
	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 9);
	assert_int_equal(seen.last, 10);
	assert_int_equal(status_field(st, "damagedRegions"), 0);
	st->ops->close(st);
}

/* Zeros after the last record - the file filled ahead of the records, or
 * a power loss after the file grew but before its blocks were written -
 * are the log's clean end: records go there next. */
static void test_zeros_after_the_last_record_are_its_end(void **state)
{
	static const char zeros[4096];
	struct seen seen;
	struct store *st = open_replay(state, &seen);
	off_t end;
	int fd;

	append_n(st, 0, 4);
	st->ops->close(st);
	end = records_end(log_path(state));
	assert_true(file_size(log_path(state)) > end); /* filled ahead */
	fd = open(log_path(state), O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, zeros, sizeof(zeros)), sizeof(zeros));
	close(fd);
	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 4);
	assert_int_equal(status_field(st, "tornTailBytes"), 0);
	append_n(st, 4, 1);
	st->ops->close(st);
	assert_true(records_end(log_path(state)) > end);
	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 5);
	assert_int_equal(seen.last, 4);
	st->ops->close(st);
}

/* railnetd --check-config reads the state and changes nothing. */
static void test_readonly_changes_nothing(void **state)
{
	struct json_object *rec = json_object_new_object();
	struct seen seen = { 0 };
	struct store *st;
	uint64_t seq;
	off_t size;
	int fd;

	assert_int_equal(store_local_open_readonly(*state, &st), -ENOENT);
	st = open_replay(state, &seen);
	append_n(st, 0, 3);
	st->ops->close(st);
	fd = open(log_path(state), O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "\x20\x00\x00\x00\x12\x34", 6), 6);
	close(fd);
	size = file_size(log_path(state));

	assert_int_equal(store_local_open_readonly(*state, &st), 0);
	assert_int_equal(st->ops->replay(st, count_records, &seen), 0);
	assert_int_equal(seen.n, 3);
	assert_int_equal(append_obj(st, rec, &seq), -EROFS);
	assert_int_equal(st->ops->sync(st, STORE_SEQ_WRITTEN), 0);
	st->ops->close(st);
	json_object_put(rec);
	assert_int_equal(file_size(log_path(state)), size);
}

static void test_bad_header_is_refused(void **state)
{
	struct seen seen = { 0 };
	struct store *st;
	int fd = open(log_path(state), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "not a railnet log\n", 18), 18);
	close(fd);
	assert_int_equal(store_local_open(*state, &st), 0);
	assert_int_equal(st->ops->replay(st, count_records, &seen), -EBADMSG);
	st->ops->close(st);
}

static int dump_evens(void *ctx, struct store *snap, store_emit_fn emit)
{
	for (int i = 0; i < 10; i += 2) {
		struct json_object *rec = json_object_new_object();
		int err;

		json_object_object_add(rec, "i", json_object_new_int(i));
		err = emit(snap, json_object_to_json_string(rec), strlen(json_object_to_json_string(rec)));
		json_object_put(rec);
		if (err)
			return err;
	}
	return 0;
}

static void test_compaction_replaces_the_log(void **state)
{
	struct seen seen;
	struct store *st = open_replay(state, &seen);
	char tmp[300];

	append_n(st, 0, 500);
	assert_int_equal(st->ops->backlog(st), 500);
	assert_int_equal(st->ops->compact_begin(st, dump_evens, NULL), 0);
	assert_int_equal(st->ops->compact_finish(st), 0);
	assert_int_equal(st->ops->backlog(st), 5);
	snprintf(tmp, sizeof(tmp), "%s.tmp", log_path(state));
	assert_int_equal(access(tmp, F_OK), -1);
	/* The compacted log takes appends. */
	append_n(st, 100, 1);
	st->ops->close(st);
	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 6);
	assert_int_equal(seen.last, 100);
	st->ops->close(st);
}

/* Appends made between begin and finish - the snapshot is being written -
 * follow the snapshot in the compacted log, in order, and every one that was
 * synced before finish stays synced. */
static void test_appends_during_compaction_are_kept(void **state)
{
	struct seen seen;
	struct store *st = open_replay(state, &seen);

	append_n(st, 0, 300);
	assert_int_equal(st->ops->compact_begin(st, dump_evens, NULL), 0);
	/* over the switch threshold, so that finish copies some unlocked */
	append_n(st, 1000, 5000);
	assert_int_equal(st->ops->compact_finish(st), 0);
	assert_int_equal(st->ops->backlog(st), 5 + 5000);
	append_n(st, 9000, 1);
	/* a second compaction while the first's records are in the log */
	assert_int_equal(st->ops->compact_begin(st, dump_evens, NULL), 0);
	append_n(st, 6000, 3);
	assert_int_equal(st->ops->compact_finish(st), 0);
	st->ops->close(st);

	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 5 + 3);
	assert_int_equal(seen.last, 6002);
	st->ops->close(st);
}

struct writer {
	struct store *st;
	int base;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (int i = 0; i < 50; i++) {
		struct json_object *rec = json_object_new_object();
		uint64_t seq;

		json_object_object_add(rec, "i", json_object_new_int(w->base + i));
		if (append_obj(w->st, rec, &seq) || w->st->ops->sync(w->st, seq))
			return (void *)1;
		json_object_put(rec);
	}
	return NULL;
}

static void test_concurrent_appends_and_syncs(void **state)
{
	struct writer w[8];
	pthread_t tid[8];
	struct seen seen;
	struct store *st = open_replay(state, &seen);
	void *ret;

	for (int i = 0; i < 8; i++) {
		w[i] = (struct writer){ st, i * 1000 };
		assert_int_equal(pthread_create(&tid[i], NULL, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(tid[i], &ret), 0);
		assert_null(ret);
	}
	st->ops->close(st);
	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 400);
	st->ops->close(st);
}

/* Writers that append under a lock, as the IPAM does, and sync unlocked,
 * while compactions run: every record appended after a compaction began is
 * in the log, and no sync fails. */
struct locked_writers {
	struct store *st;
	pthread_mutex_t lock; /* the IPAM's lock: appends and compact_begin */
	int appended;
};

static int dump_nothing(void *ctx, struct store *snap, store_emit_fn emit)
{
	return 0;
}

static void *locked_writer_main(void *arg)
{
	struct locked_writers *lw = arg;

	for (int i = 0; i < 400; i++) {
		struct json_object *rec = json_object_new_object();
		uint64_t seq;
		int err;

		pthread_mutex_lock(&lw->lock);
		json_object_object_add(rec, "i", json_object_new_int(lw->appended++));
		err = append_obj(lw->st, rec, &seq);
		pthread_mutex_unlock(&lw->lock);
		json_object_put(rec);
		if (err || lw->st->ops->sync(lw->st, seq))
			return (void *)1;
	}
	return NULL;
}

static void test_compaction_under_concurrent_writers(void **state)
{
	struct locked_writers lw = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct seen seen;
	int compactions = 0;
	pthread_t tid[8];
	int before = 0;
	void *ret;

	lw.st = open_replay(state, &seen);
	for (int i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&tid[i], NULL, locked_writer_main, &lw), 0);
	for (int c = 0; c < 5; c++) {
		usleep(2000);
		pthread_mutex_lock(&lw.lock);
		if (lw.appended > 8 * 400 - 50) { /* compact only while they write */
			pthread_mutex_unlock(&lw.lock);
			break;
		}
		assert_int_equal(lw.st->ops->compact_begin(lw.st, dump_nothing, NULL), 0);
		before = lw.appended;
		pthread_mutex_unlock(&lw.lock);
		assert_int_equal(lw.st->ops->compact_finish(lw.st), 0);
		compactions++;
	}
	for (int i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(tid[i], &ret), 0);
		assert_null(ret);
	}
	lw.st->ops->close(lw.st);
	lw.st = open_replay(state, &seen);
	assert_true(compactions > 0);
	assert_int_equal(seen.n, 8 * 400 - before);
	assert_int_equal(seen.last, 8 * 400 - 1);
	lw.st->ops->close(lw.st);
}

/* A write cut short (the disk full; here the file size limit) leaves no
 * partial record behind that would hide the records appended after it. */
static void test_partial_write_is_cut_back(void **state)
{
	struct rlimit old, lim;
	struct json_object *rec;
	struct seen seen;
	struct store *st = open_replay(state, &seen);
	uint64_t seq;
	off_t size;

	append_n(st, 0, 3);
	size = records_end(log_path(state));
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)size + 10; /* room for a part of the next record */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	rec = json_tokener_parse("{\"i\":100,\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}");
	assert_int_not_equal(append_obj(st, rec, &seq), 0);
	json_object_put(rec);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(file_size(log_path(state)), size);
	append_n(st, 3, 2); /* the store goes on */
	st->ops->close(st);

	st = open_replay(state, &seen);
	assert_int_equal(seen.n, 5);
	assert_int_equal(seen.last, 4);
	st->ops->close(st);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_dir, teardown_dir)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_encoding),
		T(test_replay_in_order),
		T(test_torn_tail_is_dropped_and_truncated),
		T(test_corrupt_tail_is_dropped),
		T(test_damage_mid_log_keeps_later_records),
		T(test_zeros_after_the_last_record_are_its_end),
		T(test_readonly_changes_nothing),
		T(test_bad_header_is_refused),
		T(test_compaction_replaces_the_log),
		T(test_appends_during_compaction_are_kept),
		T(test_compaction_under_concurrent_writers),
		T(test_partial_write_is_cut_back),
		T(test_concurrent_appends_and_syncs),
	};

	return cmocka_run_group_tests_name("store_local", tests, NULL, NULL);
}

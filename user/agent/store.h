/* SPDX-License-Identifier: Apache-2.0 */
/* Where IPAM keeps what it has acknowledged.  A store is a log of JSON
 * records: append (buffered), sync (durable up to a sequence number, shared
 * by concurrent callers: group commit), replay at start, and compaction into
 * a snapshot.  Records go in as JSON text (one object), come out parsed.  The local store is the default; a cluster-wide backend
 * (etcd) implements the same operations. */
#ifndef RAILNET_STORE_H
#define RAILNET_STORE_H

#include <json-c/json.h>
#include <stdint.h>

struct store;

/* Called for every record at replay, and by compaction to write a snapshot. */
typedef int (*store_apply_fn)(void *ctx, struct json_object *record);
typedef int (*store_emit_fn)(struct store *store, const char *json, size_t len);
typedef int (*store_dump_fn)(void *ctx, struct store *store, store_emit_fn emit);

struct store_ops {
	const char *name;
	int (*replay)(struct store *store, store_apply_fn apply, void *ctx);
	/* Appends the record @json (@len bytes of one JSON object); *seq
	 * names it for sync. */
	int (*append)(struct store *store, const char *json, size_t len, uint64_t *seq);
	/* Returns once every record up to @seq (STORE_SEQ_WRITTEN: every
	 * record appended so far) is durable. */
	int (*sync)(struct store *store, uint64_t seq);
	/* Compaction, in two steps so that neither the caller nor appends wait
	 * for its I/O.  begin: @dump emits the live state, which the caller
	 * keeps stable (it appends nothing) until begin returns; records
	 * appended afterwards follow that snapshot.  finish, with the caller's
	 * lock released: replaces the log by the snapshot and those records.
	 * Every begin that returns 0 is followed by one finish. */
	int (*compact_begin)(struct store *store, store_dump_fn dump, void *ctx);
	int (*compact_finish)(struct store *store);
	/* Records appended since the last compaction. */
	uint64_t (*backlog)(struct store *store);
	/* What recovery found at open, as JSON (a new reference); optional. */
	struct json_object *(*status)(struct store *store);
	void (*close)(struct store *store);
};

struct store {
	const struct store_ops *ops;
};

#define STORE_SEQ_WRITTEN UINT64_MAX

/* The local store: <dir>/ipam.log, an append-only checksummed log. */
int store_local_open(const char *dir, struct store **store);
/* The same log for reading only (-ENOENT when there is none): replay
 * repairs nothing, appends fail with -EROFS. */
int store_local_open_readonly(const char *dir, struct store **store);

/* Encoding of one local-log record: u32 length, u32 crc32, payload (JSON),
 * little-endian.  Exposed for tests. */
#define STORE_RECORD_HDR 8
#define STORE_RECORD_MAX (64 * 1024)
size_t store_record_encode(const char *payload, size_t len, unsigned char *out);
/* Decodes the record at @buf: its payload length, or -EAGAIN when @len
 * holds less than a whole record, or -EBADMSG when it is corrupt. */
long store_record_decode(const unsigned char *buf, size_t len, const char **payload);

#endif

/* snapshot.h: one server's shard of the parameters as a file, for checkpoint rounds.
 *
 * The file is a durable file (common/durable.h: temporary name, fsync, rename, XXH64 trailer) whose
 * payload is one LZ4 frame (block and content checksums on) holding a versioned header (the meta, every
 * table's configuration and row count), an opaque blob (the server's duplicate-suppression windows) and
 * every table's raw rows (weights + optimizer state, ps/store.h). Rows are streamed in bounded chunks.
 *
 * Thread model: stateless functions. psrec_snapshot_write starts no thread, keeps its memory bounded
 * (a few MiB, whatever the store's size) and never exits: it is meant to run in a fork()ed child of a
 * server (Redis's background save) while the parent keeps serving. The store must not change while it
 * is written (a fork()ed child sees a frozen copy); rows added meanwhile make it fail with PSREC_EINVAL. */
#ifndef PSREC_SNAPSHOT_H
#define PSREC_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "ps/store.h"

typedef struct {
    uint64_t job_id, round, seed;
    uint32_t rank, n_servers; /* writer's rank and the job's server count */
} psrec_snapshot_meta_t;

typedef struct {
    uint32_t ntables;
    uint32_t ids[PSREC_STORE_MAX_TABLES];
    psrec_table_conf_t conf[PSREC_STORE_MAX_TABLES];
    uint64_t rows[PSREC_STORE_MAX_TABLES];
} psrec_snapshot_info_t;

/* Writes every table of the store (its conf, then all raw rows) plus an opaque blob `extra` (the
 * server's duplicate-suppression windows). *bytes (may be NULL) gets the file size. */
psrec_err psrec_snapshot_write(const char *path, psrec_store_t *store, const psrec_snapshot_meta_t *meta,
                               const void *extra, size_t extra_len, uint64_t *bytes, char *err) PSREC_MUST_CHECK;
/* Reads meta and the table list (verifies the whole file's checksum first). Either may be NULL. */
psrec_err psrec_snapshot_info(const char *path, psrec_snapshot_meta_t *meta, psrec_snapshot_info_t *info,
                              char *err) PSREC_MUST_CHECK;
/* Loads rows into store. Every table of the file must exist in store with the same dim and optimizer
 * kind (else PSREC_EINVAL naming the table and both values). keep (may be NULL = all) selects rows
 * (used for re-sharding: a server keeps the keys it owns). extra (may be NULL) gets a malloc'ed copy
 * of the blob (NULL when the blob is empty). Verify the durable trailer/checksum BEFORE touching the store:
 * a corrupt or truncated file is PSREC_ECORRUPT with the path and what is wrong, and the store is unchanged.
 * (A file whose checksum is right but whose content is inconsistent - only a faulty writer makes one - is
 * also PSREC_ECORRUPT but may leave rows loaded; so may PSREC_EFULL from a table's max_rows.) */
typedef int (*psrec_snapshot_keep_fn)(uint32_t table, uint64_t key, void *ctx);
psrec_err psrec_snapshot_load(const char *path, psrec_store_t *store, psrec_snapshot_keep_fn keep, void *ctx,
                              psrec_snapshot_meta_t *meta, void **extra, size_t *extra_len, char *err) PSREC_MUST_CHECK;

#endif

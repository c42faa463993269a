/* manifest.h: the manifest naming a complete checkpoint round, "<dir>/round-<6 digits>/MANIFEST".
 *
 * A round directory holds one snapshot per server (ps/snapshot.h) and, written last by the coordinator
 * once every member did its part, the MANIFEST: a durable file (common/durable.h) of strictly parsed
 * `key=value` text lines listing the job, the round's totals, every file of the round with its size, and
 * the workers' progress per DATA shard (so a resume may use another number of workers). A round without
 * a MANIFEST, or whose MANIFEST or any listed file fails its checks, is not complete and never used.
 *
 * Thread model: stateless functions; a psrec_manifest_t belongs to its caller. */
#ifndef PSREC_MANIFEST_H
#define PSREC_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/data_shard.h"
#include "common/err.h"

typedef struct {
    uint64_t passes;       /* full passes over this data shard completed */
    psrec_shard_pos_t pos; /* position inside the current pass */
    uint64_t examples;     /* examples of this shard trained in all */
} psrec_shard_progress_t;

#define PSREC_MANIFEST_MAX_FILES 4096
#define PSREC_MANIFEST_MAX_SHARDS (1u << 20) /* data shards a manifest may list */

typedef struct {
    uint64_t round, job_id, seed, created_unix;
    uint32_t n_servers, n_workers;
    uint64_t steps, examples; /* totals at the round */
    uint32_t nfiles;
    char (*files)[64]; /* names inside the round directory, e.g. "server-0.snap" */
    uint64_t *file_bytes;
    uint32_t nshards;
    psrec_shard_progress_t *shards;
} psrec_manifest_t;

/* Writes round-<r>/MANIFEST (the round directory must exist and hold the files). File names must be
 * 1..63 characters of [A-Za-z0-9._-], not "." or "..", not "MANIFEST", unique (else PSREC_EINVAL). */
psrec_err psrec_manifest_write(const char *dir, const psrec_manifest_t *m, char *err) PSREC_MUST_CHECK;
/* Frees what psrec_manifest_read/latest allocated (files, file_bytes, shards) and zeroes *m. Accepts a
 * zeroed manifest. Not for a manifest whose arrays the caller provided. */
void psrec_manifest_free(psrec_manifest_t *m);
/* Reads and fully checks round r: MANIFEST checksum, every listed file present, of the listed size, and
 * its durable trailer/checksum valid (psrec_dfile_verify). PSREC_ECORRUPT / PSREC_ENOTFOUND with a
 * message naming the file and the fault. On failure *m is zeroed (nothing to free). */
psrec_err psrec_manifest_read(const char *dir, uint64_t round, psrec_manifest_t *m, char *err) PSREC_MUST_CHECK;
/* The newest round that passes psrec_manifest_read. Rounds that fail are reported through warn (may
 * be NULL; one line each, e.g. "round 7 refused: server-1.snap: checksum mismatch") and skipped.
 * PSREC_ENOTFOUND when no round is complete. */
typedef void (*psrec_manifest_warn_fn)(const char *line, void *ctx);
psrec_err psrec_manifest_latest(const char *dir, psrec_manifest_t *m, psrec_manifest_warn_fn warn, void *ctx,
                                char *err) PSREC_MUST_CHECK;
/* Round directory path helper and pruning: keep the newest `keep` complete rounds (keep >= 1, else
 * PSREC_EINVAL), delete every round directory older than the oldest of them. Other rounds (in progress,
 * or refused between kept ones) are not touched; with fewer than `keep` complete rounds nothing is
 * deleted. Completeness is checked as by psrec_manifest_read (the kept rounds' snapshots are read). */
void psrec_manifest_round_dir(const char *dir, uint64_t round, char *out, size_t cap);
psrec_err psrec_manifest_prune(const char *dir, uint64_t keep, char *err) PSREC_MUST_CHECK;

#endif

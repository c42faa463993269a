/* pushlog.h: the append-only log of the updates a server applied, for `--durability log`: a restarted
 * server loads its last snapshot and replays the log on top of it, recovering every acknowledged update.
 *
 * Files are "<dir>/pushlog-<rank>-<segment, 6 digits>.log"; a checkpoint round starts a new segment, so
 * the segments older than a complete round can be pruned. Each segment starts with a small file header;
 * a record is a 64-byte header {magic, type, table, dim, role, rank, epoch, seq, n, payload length,
 * header checksum} + keys (n uint64) + vals (n x dim float32) + XXH64 of header and payload.
 * Group commit: append() only buffers; commit() writes everything appended since the last commit with
 * one write() and one fdatasync(). The server acknowledges updates only after commit() returned OK, so a
 * crash can only tear records that were never acknowledged: the torn tail of the last segment.
 *
 * Thread model: a psrec_pushlog_t belongs to one thread (the server's loop), except that a writer
 * thread may run write_sealed() on it (see seal()); replay/prune/discard are
 * stateless. */
#ifndef PSREC_PUSHLOG_H
#define PSREC_PUSHLOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define PSREC_LOGREC_PUSH 1 /* an optimizer step with summed gradients */
#define PSREC_LOGREC_SET 2  /* an overwrite of the weights */

typedef struct {
    uint32_t type; /* 1 = PUSH (optimizer step), 2 = SET (overwrite) */
    uint32_t table, dim, role, rank;
    uint64_t epoch, seq;
    size_t n;
    const uint64_t *keys;
    const float *vals; /* n x dim */
} psrec_logrec_t;

typedef struct psrec_pushlog psrec_pushlog_t;

/* Opens (creating it if needed) rank's segment `segment` in dir for appending. An existing segment (a
 * restart) is scanned: a torn tail (an incomplete or checksum-failing LAST record, or a zero-filled end)
 * is truncated, and appends go after the last good record; a bad record followed by other data is
 * PSREC_ECORRUPT (file and offset), and the file is left alone. */
psrec_err psrec_pushlog_open(psrec_pushlog_t **l, const char *dir, uint32_t rank, uint64_t segment,
                             char *err) PSREC_MUST_CHECK;
/* Buffers one record (copied). PSREC_EINVAL for a bad type, dim 0 or > 2^20, or a record over 2 GiB;
 * PSREC_EIO once an earlier commit failed (the log is then unusable). */
psrec_err psrec_pushlog_append(psrec_pushlog_t *l, const psrec_logrec_t *r, char *err) PSREC_MUST_CHECK;
/* Writes and fdatasyncs everything appended since the last commit; no-op if nothing is pending. A failed
 * write or sync is PSREC_EIO: the pending records are dropped (never acknowledge them), the file is cut
 * back to the last commit if possible, and every later append/commit/rotate fails. */
psrec_err psrec_pushlog_commit(psrec_pushlog_t *l, char *err) PSREC_MUST_CHECK;
/* The same group commit split for a writer thread, so the owner goes on appending while a batch is
 * written and synced: seal() (owner) makes everything appended so far the batch (PSREC_EINVAL if one is
 * sealed already); write_sealed() (the writer, while the owner calls nothing but append) writes and
 * fdatasyncs it; finish_sealed() (owner, after the writer is done) accounts for it, or makes the log
 * unusable with PSREC_EIO if the write or sync failed. commit() and rotate() refuse while a batch is
 * sealed. */
psrec_err psrec_pushlog_seal(psrec_pushlog_t *l, char *err) PSREC_MUST_CHECK;
void psrec_pushlog_write_sealed(psrec_pushlog_t *l);
psrec_err psrec_pushlog_finish_sealed(psrec_pushlog_t *l, char *err) PSREC_MUST_CHECK;
/* Commits, closes the current segment, starts `segment` (a checkpoint round began). */
psrec_err psrec_pushlog_rotate(psrec_pushlog_t *l, uint64_t segment, char *err) PSREC_MUST_CHECK;

typedef struct {
    uint64_t records, commits, bytes; /* committed by this object (all its segments) */
    double fsync_seconds;             /* time spent in fdatasync */
} psrec_pushlog_stats_t;
void psrec_pushlog_stats(const psrec_pushlog_t *l, psrec_pushlog_stats_t *st);
void psrec_pushlog_close(psrec_pushlog_t **l); /* commits nothing: pending records are dropped */

typedef psrec_err (*psrec_logrec_fn)(const psrec_logrec_t *r, void *ctx, char *err);
/* Replays every record of rank's segments >= from_segment, in segment then file order. A torn tail of
 * the LAST segment is ignored; a bad record followed by more data, or in a non-last segment, is
 * PSREC_ECORRUPT (file and offset). An error from fn stops the replay and is returned (fn fills err).
 * *records (may be NULL) = records replayed. No segment at all is fine (0 records). */
psrec_err psrec_pushlog_replay(const char *dir, uint32_t rank, uint64_t from_segment, psrec_logrec_fn fn, void *ctx,
                               uint64_t *records, char *err) PSREC_MUST_CHECK;
/* Deletes rank's segments < below (they are covered by a complete checkpoint round). */
psrec_err psrec_pushlog_prune(const char *dir, uint32_t rank, uint64_t below, char *err) PSREC_MUST_CHECK;
/* Renames rank's segments >= from aside (suffix ".discarded"): a whole-cluster resume restarts from the round. */
psrec_err psrec_pushlog_discard(const char *dir, uint32_t rank, uint64_t from, char *err) PSREC_MUST_CHECK;

#endif

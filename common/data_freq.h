/* data_freq.h: the item catalogue with training counts (written by `psrec prep`, read by samplers and
 * eval): every item id seen as a positive or in a history, with how often it was a positive.
 * Stored as a durable file (common/durable.h), columnar so that it can be mapped and read in place:
 * magic "PSRECFQ2", n, flags, total, then n ids (omitted when the DENSE flag says they are 0..n-1),
 * then n counts (docs/data-format.md §3). Version 1 files ("PSRECFQ1", interleaved pairs) still load.
 * Thread model: plain data; a loaded catalogue is read-only and may be read by any number of threads. */
#ifndef PSREC_DATA_FREQ_H
#define PSREC_DATA_FREQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/batch.h"
#include "common/err.h"

typedef struct {
    size_t n;
    uint64_t *ids;    /* sorted ascending; NULL for a dense catalogue stored without ids (use psrec_freq_id) */
    uint64_t *counts; /* n positive counts */
    int dense;        /* the ids are exactly 0..n-1 (ids may still be non-NULL) */
    uint64_t total;   /* sum of the counts (mod 2^64), set by load and counter_result */
    /* Ownership. map != NULL: ids and counts point into a read-only shared mapping of a freq.bin of
     * map_len payload bytes (never write through them); psrec_freq_free unmaps it. map == NULL: ids and
     * counts are malloc'ed and psrec_freq_free frees them (a psrec_freq_t over the caller's own arrays,
     * built only to be saved, is not passed to psrec_freq_free). */
    const void *map;
    size_t map_len;
} psrec_freq_t;

/* The id of catalogue entry i (i < f->n), for dense and sparse catalogues alike. */
static inline uint64_t psrec_freq_id(const psrec_freq_t *f, size_t i)
{
    return f->ids ? f->ids[i] : (uint64_t)i;
}

typedef struct psrec_freq_counter psrec_freq_counter_t;

psrec_err psrec_freq_counter_new(psrec_freq_counter_t **c) PSREC_MUST_CHECK;
void psrec_freq_counter_destroy(psrec_freq_counter_t **c);
/* Counts positives of every example of b (+1 per occurrence), registers history ids (slot hist_slot, -1 = none) with
 * +0. */
psrec_err psrec_freq_counter_add(psrec_freq_counter_t *c, const psrec_batch_t *b, int hist_slot) PSREC_MUST_CHECK;
/* Registers an id with count +add (used for items files: every catalogue item, even unseen). */
psrec_err psrec_freq_counter_touch(psrec_freq_counter_t *c, uint64_t id, uint64_t add) PSREC_MUST_CHECK;
/* Sorted snapshot of the ids seen, malloc'ed (ids always present; dense set when they are 0..n-1);
 * the caller owns f (psrec_freq_free). */
psrec_err psrec_freq_counter_result(const psrec_freq_counter_t *c, psrec_freq_t *f) PSREC_MUST_CHECK;

/* Writes a version 2 file. With f->ids == NULL (f->dense must be set) the DENSE layout: no ids, the
 * counts of 0..n-1. Otherwise the ids are written (strictly ascending, else PSREC_EINVAL and nothing
 * is written). */
psrec_err psrec_freq_save(const psrec_freq_t *f, const char *path, char *err) PSREC_MUST_CHECK;
/* Writes the DENSE catalogue of ids 0..n-1 (`psrec prep --catalogue n`) whose counts are those of
 * `seen` (sorted, as from psrec_freq_counter_result) and 0 for ids not in it, streaming: no O(n)
 * memory. An id of seen >= n is PSREC_EINVAL naming the smallest such id; nothing is written. */
psrec_err psrec_freq_save_dense(const psrec_freq_t *seen, uint64_t n, const char *path, char *err) PSREC_MUST_CHECK;
/* Loads a catalogue. Version 2: the file is mapped read-only and shared (psrec_dfile_map: trailer and
 * checksum checked over the mapping), ids and counts point into it, and the pages read by the checks
 * are dropped again, so a process pays resident memory only for the entries it reads. Version 1:
 * copied into malloc'ed arrays. A corrupt file is PSREC_ECORRUPT naming the file, f zeroed. dense is
 * set whenever the ids are 0..n-1, with or without ids on disk. */
psrec_err psrec_freq_load(psrec_freq_t *f, const char *path, char *err) PSREC_MUST_CHECK;
/* Unmaps or frees (per f->map) and zeroes f. */
void psrec_freq_free(psrec_freq_t *f);

#endif

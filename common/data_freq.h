/* data_freq.h: the item catalogue with training counts (written by `psrec prep`, read by samplers and
 * eval): every item id seen as a positive or in a history, with how often it was a positive.
 * Stored as a durable file (common/durable.h): magic "PSRECFQ1", n, then n (id, count) pairs sorted by id.
 * Thread model: plain data. */
#ifndef PSREC_DATA_FREQ_H
#define PSREC_DATA_FREQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/batch.h"
#include "common/err.h"

typedef struct {
    size_t n;
    uint64_t *ids; /* sorted ascending */
    uint64_t *counts;
} psrec_freq_t;

typedef struct psrec_freq_counter psrec_freq_counter_t;

psrec_err psrec_freq_counter_new(psrec_freq_counter_t **c) PSREC_MUST_CHECK;
void psrec_freq_counter_destroy(psrec_freq_counter_t **c);
/* Counts positives of every example of b (+1 per occurrence), registers history ids (slot hist_slot, -1 = none) with
 * +0. */
psrec_err psrec_freq_counter_add(psrec_freq_counter_t *c, const psrec_batch_t *b, int hist_slot) PSREC_MUST_CHECK;
/* Registers an id with count +add (used for items files: every catalogue item, even unseen). */
psrec_err psrec_freq_counter_touch(psrec_freq_counter_t *c, uint64_t id, uint64_t add) PSREC_MUST_CHECK;
/* Sorted snapshot; the caller owns f (psrec_freq_free). */
psrec_err psrec_freq_counter_result(const psrec_freq_counter_t *c, psrec_freq_t *f) PSREC_MUST_CHECK;

psrec_err psrec_freq_save(const psrec_freq_t *f, const char *path, char *err) PSREC_MUST_CHECK;
psrec_err psrec_freq_load(psrec_freq_t *f, const char *path, char *err) PSREC_MUST_CHECK;
void psrec_freq_free(psrec_freq_t *f);

#endif

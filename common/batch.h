/* batch.h: the in-memory form of training/eval examples, and the slot schema.
 *
 * A batch is a plain data carrier (fields public on purpose: every hot loop reads it directly) laid
 * out as CSR arrays: example i's positives are pos_id[pos_off[i] .. pos_off[i+1]) with weights pos_w
 * normalised to sum 1 per example; its ids in slot s are slot_id[s][slot_off[s][i] .. slot_off[s][i+1]).
 * home_cat holds an example's "home" categories when the data names them (`_home=` field; used only by
 * the folding metric, never as a feature).
 *
 * The schema names the feature slots; the slot named "hist" (PSREC_HIST_SLOT) holds item ids (the
 * user's history) and shares the item input table.
 * Thread model: one owner per batch. */
#ifndef PSREC_BATCH_H
#define PSREC_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define PSREC_MAX_SLOTS 16
#define PSREC_SLOT_NAME_MAX 32
#define PSREC_HIST_SLOT "hist"

typedef struct {
    int nslots;
    char name[PSREC_MAX_SLOTS][PSREC_SLOT_NAME_MAX];
} psrec_schema_t;

/* Index of slot `name` (len bytes, need not be NUL-terminated) or -1. */
int psrec_schema_find(const psrec_schema_t *s, const char *name, size_t len);
/* Adds a slot; returns its index, or -1 if the schema is full or the name too long/empty. */
int psrec_schema_add(psrec_schema_t *s, const char *name, size_t len);
/* Index of the history slot, or -1. */
int psrec_schema_hist(const psrec_schema_t *s);

typedef struct {
    size_t n;   /* examples */
    int nslots; /* slots present in the CSR arrays (grows with the reader's schema) */
    uint32_t *pos_off;
    uint64_t *pos_id;
    float *pos_w;
    uint32_t *slot_off[PSREC_MAX_SLOTS];
    uint64_t *slot_id[PSREC_MAX_SLOTS];
    uint32_t *home_off;
    uint32_t *home_cat;
    /* capacities (private to batch.c) */
    size_t cap_ex, cap_pos, cap_slot[PSREC_MAX_SLOTS], cap_home;
} psrec_batch_t;

/* A zeroed psrec_batch_t is a valid empty batch with no slots. */
void psrec_batch_init(psrec_batch_t *b, int nslots);
void psrec_batch_free(psrec_batch_t *b);
/* Removes all examples, keeps memory and nslots. */
void psrec_batch_clear(psrec_batch_t *b);
/* Makes the batch carry nslots slots (existing examples get empty new slots). */
psrec_err psrec_batch_set_nslots(psrec_batch_t *b, int nslots) PSREC_MUST_CHECK;

/* Building an example: begin, add positives/slot ids/home categories, then end (which normalises the
 * positive weights). An example under construction is invisible to readers of b->n until end. */
psrec_err psrec_batch_begin(psrec_batch_t *b) PSREC_MUST_CHECK;
psrec_err psrec_batch_add_pos(psrec_batch_t *b, uint64_t id, float w) PSREC_MUST_CHECK;
psrec_err psrec_batch_add_slot(psrec_batch_t *b, int slot, uint64_t id) PSREC_MUST_CHECK;
psrec_err psrec_batch_add_home(psrec_batch_t *b, uint32_t cat) PSREC_MUST_CHECK;
/* Finishes the example: weights are divided by their sum (which must be > 0 if any positive). */
void psrec_batch_end(psrec_batch_t *b);
/* Drops the example under construction (used when a line turns out malformed). */
void psrec_batch_abort(psrec_batch_t *b);
/* Appends example i of src to dst (slots matched by index; dst must carry at least src->nslots). */
psrec_err psrec_batch_copy_example(psrec_batch_t *dst, const psrec_batch_t *src, size_t i) PSREC_MUST_CHECK;

#endif

/* idmap.h: open-addressing hash map uint64 id -> uint64 value (linear probing, power-of-two capacity,
 * grows at 50% load). Used wherever ids meet dense indexes: item catalogue, frequency counting, batch
 * deduplication. Any uint64 is a valid key (the empty-slot sentinel key is kept aside).
 * Thread model: not thread-safe; one owner. */
#ifndef PSREC_IDMAP_H
#define PSREC_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct psrec_idmap psrec_idmap_t;

psrec_err psrec_idmap_new(psrec_idmap_t **m, size_t expected) PSREC_MUST_CHECK;
void psrec_idmap_destroy(psrec_idmap_t **m);
/* Value for key, or 0 with *found = 0. */
uint64_t psrec_idmap_get(const psrec_idmap_t *m, uint64_t key, int *found);
/* Inserts or overwrites. */
psrec_err psrec_idmap_put(psrec_idmap_t *m, uint64_t key, uint64_t value) PSREC_MUST_CHECK;
/* Returns a pointer to the value slot for key, inserting `init` if absent (*inserted says which).
 * The pointer is valid until the next insertion. NULL on allocation failure. */
uint64_t *psrec_idmap_upsert(psrec_idmap_t *m, uint64_t key, uint64_t init, int *inserted);
size_t psrec_idmap_size(const psrec_idmap_t *m);
/* Removes every entry, keeps the capacity. */
void psrec_idmap_clear(psrec_idmap_t *m);
/* Iteration: *it starts at 0; returns 0 when done. Order is unspecified. */
int psrec_idmap_next(const psrec_idmap_t *m, size_t *it, uint64_t *key, uint64_t *value);

#endif

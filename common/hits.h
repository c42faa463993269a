/* hits.h: accidental-hit masking for shared negatives (ALGORITHMS.md §2.4). The negatives are sorted
 * by key once per batch; each positive of a row is then binary-searched among them, so masking costs
 * O((S + P) log S) instead of O(B S npos). A masked logit is set to -inf, so exp gives exactly 0: it
 * drops out of the log-sum-exp and its gradient is exactly 0, with no mask array. Used by the
 * worker's loss (worker/loss.c) and by servers scoring their own negatives (ps/negatives.c).
 * Thread model: pure functions. */
#ifndef PSREC_HITS_H
#define PSREC_HITS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t key;
    uint32_t idx; /* position among the negatives */
} psrec_keyidx_t;

/* Fills ks[j] = {keys[j], j} and sorts by key (then position). */
void psrec_hits_sort(psrec_keyidx_t *ks, const uint64_t *keys, size_t S);

/* Writes -inf into zrow's cells whose negative key equals one of pos[0..npos); returns how many
 * distinct cells were masked by this call. */
size_t psrec_hits_mask(const psrec_keyidx_t *ks, size_t S, const uint64_t *pos, size_t npos, float *zrow);

#endif

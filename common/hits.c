/* hits.c: accidental-hit masking over negatives sorted by key (common/hits.h). */
#include "common/hits.h"

#include <math.h>
#include <stdlib.h>

static int cmp_keyidx(const void *a, const void *b)
{
    const psrec_keyidx_t *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

void psrec_hits_sort(psrec_keyidx_t *ks, const uint64_t *keys, size_t S)
{
    for (size_t j = 0; j < S; j++)
        ks[j] = (psrec_keyidx_t){keys[j], (uint32_t)j};
    qsort(ks, S, sizeof *ks, cmp_keyidx);
}

/* First index in ks[0..S) with key >= k. */
static size_t lower_bound(const psrec_keyidx_t *ks, size_t S, uint64_t k)
{
    size_t lo = 0, hi = S;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ks[mid].key < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t psrec_hits_mask(const psrec_keyidx_t *ks, size_t S, const uint64_t *pos, size_t npos, float *zrow)
{
    size_t masked = 0;
    for (size_t k = 0; k < npos; k++) {
        for (size_t i = lower_bound(ks, S, pos[k]); i < S && ks[i].key == pos[k]; i++) {
            if (zrow[ks[i].idx] != -INFINITY) {
                zrow[ks[i].idx] = -INFINITY;
                masked++;
            }
        }
    }
    return masked;
}

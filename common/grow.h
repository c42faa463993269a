/* grow.h: the one way psrec grows a scratch array: to at least `need` elements of `elem` bytes,
 * doubling from 64 so that a buffer reused step after step reaches its size in a few reallocs and then
 * never moves. Keeps the contents; returns -1 (leaving *p and *cap as they were) when the size would
 * overflow or realloc fails. Thread model: the caller's buffer. */
#ifndef PSREC_GROW_H
#define PSREC_GROW_H

#include <stdint.h>
#include <stdlib.h>

static inline int psrec_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2) return -1;
        c *= 2;
    }
    if (elem && c > SIZE_MAX / elem) return -1;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

#endif

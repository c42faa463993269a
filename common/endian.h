/* endian.h: little-endian fields of psrec's file formats (shards, frequency files, snapshots, push
 * logs), byte by byte so they read the same on any host and at any alignment.
 * Thread model: pure functions. */
#ifndef PSREC_ENDIAN_H
#define PSREC_ENDIAN_H

#include <stdint.h>

static inline void psrec_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void psrec_put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t psrec_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t psrec_get64(const unsigned char *p)
{
    return (uint64_t)psrec_get32(p) | (uint64_t)psrec_get32(p + 4) << 32;
}

#endif

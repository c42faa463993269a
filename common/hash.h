/* hash.h: id hashing. String ids become uint64 through XXH3 (libxxhash), with the top bit set so
 * that a hashed string never equals a decimal id below 2^63 (documented in docs/data-format.md). */
#ifndef PSREC_HASH_H
#define PSREC_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#define PSREC_STRING_ID_BIT (1ULL << 63)

static inline uint64_t psrec_hash_string_id(const char *s, size_t len)
{
    return (uint64_t)XXH3_64bits(s, len) | PSREC_STRING_ID_BIT;
}

/* Checksum of a byte range, used by every binary file format (XXH64 with seed 0). */
static inline uint64_t psrec_checksum(const void *p, size_t len)
{
    return (uint64_t)XXH64(p, len, 0);
}

#endif

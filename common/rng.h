/* rng.h: deterministic random numbers (xoshiro256** seeded by splitmix64).
 * A value type: each thread owns its psrec_rng_t; streams are derived from (seed, stream id), so the
 * same seed gives the same run whatever the thread schedule of independent streams. */
#ifndef PSREC_RNG_H
#define PSREC_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} psrec_rng_t;

static inline uint64_t psrec_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A strong 64-bit mix of one value (splitmix64's finaliser); used to derive seeds and hash keys. */
static inline uint64_t psrec_mix64(uint64_t x)
{
    uint64_t t = x;
    return psrec_splitmix64(&t);
}

static inline void psrec_rng_seed(psrec_rng_t *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ psrec_mix64(stream + 0x632be59bd9b4e019ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = psrec_splitmix64(&x);
}

static inline uint64_t psrec_rng_u64(psrec_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform double in [0, 1). */
static inline double psrec_rng_uniform(psrec_rng_t *r)
{
    return (double)(psrec_rng_u64(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < n/2^64, negligible). */
static inline uint64_t psrec_rng_below(psrec_rng_t *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)psrec_rng_u64(r) * n) >> 64);
}

/* Standard normal (Box-Muller, one value per call). */
static inline double psrec_rng_normal(psrec_rng_t *r)
{
    double u1 = psrec_rng_uniform(r), u2 = psrec_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif

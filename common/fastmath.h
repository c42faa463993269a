/* fastmath.h: exp/log over float arrays, fast enough for the softmax hot path.
 *
 * A scalar libm expf loop over a 256x1024 logit block costs more than the three GEMMs of a sampled
 * softmax step (DESIGN.md, "measured facts"). These helpers use Cephes-style polynomials (range
 * reduction by the 1.5*2^23 rounding trick, exponent built in the bit pattern) that gcc vectorises at
 * the project's default -O2 without -ffast-math. Three things make that happen, each checked with
 * -fopt-info-vec on gcc 12:
 *  - -O2 uses the "very cheap" vectoriser cost model, which refuses loops needing a scalar epilogue,
 *    so the array helpers work on blocks of PSREC_FM_BLOCK floats (inner loops with a constant trip
 *    count) and run a ragged tail through the same block kernel on a padded copy;
 *  - with the default -ftrapping-math, gcc sinks a float computation used by one arm of ?: into a
 *    branch, and a loop with a branch is not vectorised, so selects are bitwise (psrec_fm_sel) and the
 *    comparisons are the quiet __builtin_isless & co;
 *  - the scalar kernels are always_inline (a call inside the loop would stop it).
 * Measured here (256 x 1024 floats, one core): libm expf loop + sum 1.56 ms; psrec_exp_inplace 0.40 ms
 * with SSE2, 0.14 ms with the AVX2 clone (see PSREC_FM_ARRAY).
 *
 * Accuracy (checked by tests/test_fastmath.c against double-precision libm):
 *  - psrec_expf: relative error < 3e-7 (measured max 1.4 ulp) on [-87.3, 88.7]; exactly 0 below
 *    -87.33 (no denormals), +inf above 88.72, exp(-inf) = 0, exp(+inf) = +inf, NaN -> NaN,
 *    exp(0) = 1 exactly.
 *  - psrec_logf: error < 2e-7 + 3e-7 |log x|; log(1) = 0, log(0) = -inf, log(x < 0) = NaN,
 *    log(+inf) = +inf, NaN -> NaN, denormals handled.
 * Thread model: pure functions. No mutable globals. */
#ifndef PSREC_FASTMATH_H
#define PSREC_FASTMATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PSREC_FM_BLOCK 16
/* The scalar kernels must be inlined into the block loops or the loops hold a call and stay scalar
 * (at -O2 gcc does not inline a function this size once it has several callers). */
#define PSREC_FM_INLINE static inline __attribute__((always_inline))
/* The array helpers are compiled twice on x86-64 gcc, for the baseline (SSE2) and for x86-64-v3 (AVX2 +
 * FMA), and the loader picks one by CPU (ifunc), so the default build uses AVX2 where it exists
 * (~3x faster). Results of the two clones can differ in the last bit (FMA). Define
 * PSREC_FM_NO_CLONES to turn that off. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(PSREC_FM_NO_CLONES)
#define PSREC_FM_ARRAY static inline __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PSREC_FM_ARRAY static inline
#endif

PSREC_FM_INLINE uint32_t psrec_fm_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

PSREC_FM_INLINE float psrec_fm_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Branch-free select: c ? a : b. Written on the bit patterns because gcc (with the default
 * -ftrapping-math) sinks a float computation used by one arm of a plain ?: into a branch, and a loop
 * with a branch is not vectorised. The comparisons producing c use the quiet __builtin_isless etc. */
PSREC_FM_INLINE float psrec_fm_sel(int c, float a, float b)
{
    uint32_t m = (uint32_t)0 - (uint32_t)(c != 0);
    return psrec_fm_float((psrec_fm_bits(a) & m) | (psrec_fm_bits(b) & ~m));
}

/* exp(x). Range reduction x = n ln2 + r with |r| <= ln2/2: n comes from the 1.5*2^23 rounding trick
 * (round to nearest, read n from the low mantissa bits, so no floorf and no float->int conversion that
 * SSE2 lacks vectorised), ln2 split in two (Cody-Waite), Cephes degree-7 polynomial for e^r, and 2^n
 * built in the exponent field. */
PSREC_FM_INLINE float psrec_expf(float x)
{
    const float lo = -87.33654475f, hi = 88.72283935f; /* ln(FLT_MIN), ln(FLT_MAX) */
    const float magic = 12582912.0f;                   /* 1.5 * 2^23 */
    /* No clamping: outside [lo, hi] the arithmetic below yields garbage that the two selects at the
     * end replace (they are bitwise, so even NaN garbage is discarded). */
    float xc = x;
    float t = xc * 1.44269504088896341f + magic;
    int32_t n = (int32_t)(psrec_fm_bits(t) - psrec_fm_bits(magic)); /* round(x / ln2) in [-126, 128] */
    float fn = t - magic;
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^n as two factors so n = 128 (x near ln FLT_MAX) does not overflow the exponent field. */
    int32_t n1 = n >> 1, n2 = n - n1;
    float s1 = psrec_fm_float((uint32_t)(n1 + 127) << 23);
    float s2 = psrec_fm_float((uint32_t)(n2 + 127) << 23);
    float y = p * s1 * s2;
    y = psrec_fm_sel(__builtin_isless(x, lo), 0.0f, y);
    y = psrec_fm_sel(__builtin_isgreater(x, hi), __builtin_inff(), y);
    return y;
}

/* log(x), Cephes logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(1+f) by a degree-9 polynomial. */
PSREC_FM_INLINE float psrec_logf(float x)
{
    const float flt_min = 1.17549435e-38f;
    int sub = __builtin_isless(x, flt_min);
    float xs = psrec_fm_sel(sub, x * 8388608.0f, x); /* denormals (and 0, negatives: fixed up below) */
    float ebias = psrec_fm_sel(sub, -23.0f, 0.0f);
    uint32_t bits = psrec_fm_bits(xs);
    int32_t e = (int32_t)((bits >> 23) & 0xff) - 126;
    float m = psrec_fm_float((bits & 0x007fffffu) | 0x3f000000u); /* [0.5, 1) */
    int small = __builtin_isless(m, 0.707106781186547524f);
    float fe = (float)e + ebias - psrec_fm_sel(small, 1.0f, 0.0f);
    float f = psrec_fm_sel(small, m + m, m) - 1.0f;
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float y = p * f * z;
    y = y + fe * -2.12194440e-4f;
    y = y - 0.5f * z;
    y = f + y;
    y = y + fe * 0.693359375f;
    y = psrec_fm_sel(x == 0.0f, -__builtin_inff(), y);
    y = psrec_fm_sel(__builtin_isless(x, 0.0f), __builtin_nanf(""), y);
    y = psrec_fm_sel(x == __builtin_inff(), x, y);
    y = psrec_fm_sel(__builtin_isunordered(x, x), x, y);
    return y;
}

/* The array helpers: blocks of PSREC_FM_BLOCK plus a padded tail through the same kernel. */
PSREC_FM_INLINE void psrec_fm_exp_block(float *x)
{
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        x[l] = psrec_expf(x[l]);
}

/* x[i] = exp(x[i]). */
PSREC_FM_ARRAY void psrec_exp_inplace(float *x, size_t n)
{
    size_t nb = n - n % PSREC_FM_BLOCK, i = 0;
    for (; i < nb; i += PSREC_FM_BLOCK)
        psrec_fm_exp_block(x + i);
    if (nb < n) {
        float tmp[PSREC_FM_BLOCK] = {0};
        memcpy(tmp, x + nb, (n - nb) * sizeof *x);
        psrec_fm_exp_block(tmp);
        memcpy(x + nb, tmp, (n - nb) * sizeof *x);
    }
}

PSREC_FM_INLINE void psrec_fm_log_block(float *x)
{
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        x[l] = psrec_logf(x[l]);
}

/* x[i] = log(x[i]). */
PSREC_FM_ARRAY void psrec_log_inplace(float *x, size_t n)
{
    size_t nb = n - n % PSREC_FM_BLOCK, i = 0;
    for (; i < nb; i += PSREC_FM_BLOCK)
        psrec_fm_log_block(x + i);
    if (nb < n) {
        float tmp[PSREC_FM_BLOCK];
        for (int l = 0; l < PSREC_FM_BLOCK; l++)
            tmp[l] = 1.0f;
        memcpy(tmp, x + nb, (n - nb) * sizeof *x);
        psrec_fm_log_block(tmp);
        memcpy(x + nb, tmp, (n - nb) * sizeof *x);
    }
}

/* Largest element (-inf for n = 0). Meant for finite or -inf values; NaN handling is unspecified. */
PSREC_FM_ARRAY float psrec_max(const float *x, size_t n)
{
    float acc[PSREC_FM_BLOCK];
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        acc[l] = -__builtin_inff();
    size_t nb = n - n % PSREC_FM_BLOCK, i = 0;
    for (; i < nb; i += PSREC_FM_BLOCK)
        for (int l = 0; l < PSREC_FM_BLOCK; l++)
            acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    for (size_t k = nb; k < n; k++)
        acc[0] = x[k] > acc[0] ? x[k] : acc[0];
    float m = acc[0];
    for (int l = 1; l < PSREC_FM_BLOCK; l++)
        m = acc[l] > m ? acc[l] : m;
    return m;
}

PSREC_FM_INLINE void psrec_fm_exp_shift_block(float *b, float shift, double *acc)
{
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        b[l] = psrec_expf(b[l] - shift);
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        acc[l] += (double)b[l];
}

/* x[i] = exp(x[i] - shift); returns sum_i x[i] accumulated in double (lane-wise partial sums, so the
 * reduction vectorises too; float partial sums or a per-block tree measured no faster here). This is
 * the softmax numerator pass: shift = the row maximum. */
PSREC_FM_ARRAY double psrec_exp_shift_sum(float *x, size_t n, float shift)
{
    double acc[PSREC_FM_BLOCK];
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        acc[l] = 0.0;
    size_t nb = n - n % PSREC_FM_BLOCK, i = 0;
    for (; i < nb; i += PSREC_FM_BLOCK)
        psrec_fm_exp_shift_block(x + i, shift, acc);
    if (nb < n) {
        float tmp[PSREC_FM_BLOCK];
        for (int l = 0; l < PSREC_FM_BLOCK; l++)
            tmp[l] = -__builtin_inff();
        memcpy(tmp, x + nb, (n - nb) * sizeof *x);
        psrec_fm_exp_shift_block(tmp, shift, acc);
        memcpy(x + nb, tmp, (n - nb) * sizeof *x);
    }
    double s = 0.0;
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        s += acc[l];
    return s;
}

/* Sum in double with lane-wise partial sums. */
PSREC_FM_ARRAY double psrec_sum_d(const float *x, size_t n)
{
    double acc[PSREC_FM_BLOCK];
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        acc[l] = 0.0;
    size_t nb = n - n % PSREC_FM_BLOCK, i = 0;
    for (; i < nb; i += PSREC_FM_BLOCK)
        for (int l = 0; l < PSREC_FM_BLOCK; l++)
            acc[l] += (double)x[i + l];
    double s = 0.0;
    for (size_t k = nb; k < n; k++)
        s += (double)x[k];
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        s += acc[l];
    return s;
}

/* x[i] *= c. */
PSREC_FM_ARRAY void psrec_scale_inplace(float *x, size_t n, float c)
{
    size_t nb = n - n % PSREC_FM_BLOCK, i = 0;
    for (; i < nb; i += PSREC_FM_BLOCK)
        for (int l = 0; l < PSREC_FM_BLOCK; l++)
            x[i + l] *= c;
    for (size_t k = nb; k < n; k++)
        x[k] *= c;
}

PSREC_FM_INLINE void psrec_fm_softplus_block(float *x, double *acc)
{
    float t[PSREC_FM_BLOCK], sp[PSREC_FM_BLOCK];
    for (int l = 0; l < PSREC_FM_BLOCK; l++) {
        float a = __builtin_fabsf(x[l]);
        t[l] = psrec_expf(-a);
        sp[l] = 1.0f + t[l];
    }
    psrec_fm_log_block(sp);
    for (int l = 0; l < PSREC_FM_BLOCK; l++) {
        float pos = psrec_fm_sel(__builtin_isgreater(x[l], 0.0f), x[l], 0.0f);
        float inv = 1.0f / (1.0f + t[l]);
        acc[l] += (double)(pos + sp[l]);
        x[l] =
            psrec_fm_sel(__builtin_isgreaterequal(x[l], 0.0f), inv, t[l] * inv); /* sigmoid(x), stable on both sides */
    }
}

/* Logistic pass: returns sum_i softplus(x[i]) = log(1 + e^x[i]) (in double) and replaces x[i] by
 * sigmoid(x[i]) = d softplus / dx. -inf entries (masked cells) contribute 0 and become exactly 0.
 * log1p(t) is taken as log(1 + t) in float: absolute error < 1e-7, fine for a loss value. */
PSREC_FM_ARRAY double psrec_softplus_sigmoid(float *x, size_t n)
{
    double acc[PSREC_FM_BLOCK];
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        acc[l] = 0.0;
    size_t nb = n - n % PSREC_FM_BLOCK, i = 0;
    for (; i < nb; i += PSREC_FM_BLOCK)
        psrec_fm_softplus_block(x + i, acc);
    if (nb < n) {
        float tmp[PSREC_FM_BLOCK];
        for (int l = 0; l < PSREC_FM_BLOCK; l++)
            tmp[l] = -__builtin_inff();
        memcpy(tmp, x + nb, (n - nb) * sizeof *x);
        psrec_fm_softplus_block(tmp, acc);
        memcpy(x + nb, tmp, (n - nb) * sizeof *x);
    }
    double s = 0.0;
    for (int l = 0; l < PSREC_FM_BLOCK; l++)
        s += acc[l];
    return s;
}

#endif

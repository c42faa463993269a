/* test_sampler.c: the negative samplers against independent computations: chi-square goodness of fit
 * (fixed seeds) for uniform, popularity and the hard resample, the alias table's implied distribution
 * against Q computed here, the in-batch streaming estimate against the true occurrence rate and a
 * naive re-implementation, the logE formulas, capacities and errors; dense catalogues against the
 * same catalogue given as keys, and the alias cache file (built, reused, rebuilt when corrupt or
 * stale, written by two processes at once). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/durable.h"
#include "common/endian.h"
#include "common/err.h"
#include "common/rng.h"
#include "worker/sampler.h"

/* Chi-square critical values at p = 0.001 (statistical tables). */
#define CHI2_DF7 24.32
#define CHI2_DF39 72.05

static double chi2(const size_t *count, const double *q, size_t n, size_t draws)
{
    double x = 0.0;
    for (size_t j = 0; j < n; j++) {
        double e = q[j] * (double)draws;
        x += ((double)count[j] - e) * ((double)count[j] - e) / e;
    }
    return x;
}

static psrec_sampler_t *make(psrec_sampler_kind kind, size_t n, const uint64_t *items, const uint64_t *counts,
                             double alpha)
{
    psrec_sampler_conf_t c = {.kind = kind, .n_items = n, .items = items, .counts = counts, .alpha = alpha};
    psrec_sampler_t *s = NULL;
    char err[PSREC_ERRBUF];
    psrec_err e = psrec_sampler_new(&s, &c, err);
    if (e) fail_msg("psrec_sampler_new: %s: %s", psrec_errname(e), err);
    return s;
}

enum { NCAT = 40, DRAWS = 200000, ROUNDS = 10 }; /* 2M draws in all: power against ~1% deviations */

static uint64_t key_of(size_t j)
{
    return 500 + 3 * (uint64_t)j;
}

static size_t index_of(uint64_t key)
{
    assert_true(key >= 500 && (key - 500) % 3 == 0 && (key - 500) / 3 < NCAT);
    return (size_t)((key - 500) / 3);
}

static void test_uniform_chi2(void **state)
{
    (void)state;
    uint64_t items[NCAT];
    for (size_t j = 0; j < NCAT; j++)
        items[j] = key_of(j);
    psrec_sampler_t *s = make(PSREC_SAMPLER_UNIFORM, NCAT, items, NULL, 0);
    assert_int_equal(psrec_sampler_kind_of(s), PSREC_SAMPLER_UNIFORM);
    uint64_t *keys = malloc(DRAWS * sizeof *keys);
    float *logE = malloc(DRAWS * sizeof *logE);
    assert_true(keys && logE);
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 1234, 0);
    size_t n = 0, total = 0;
    size_t count[NCAT] = {0};
    const float le = (float)log((double)DRAWS / NCAT);
    for (int round = 0; round < ROUNDS; round++) {
        assert_int_equal(psrec_sampler_draw(s, &rng, DRAWS, NULL, 0, keys, logE, DRAWS, &n), PSREC_OK);
        assert_int_equal(n, DRAWS);
        total += n;
        for (size_t i = 0; i < n; i++) {
            count[index_of(keys[i])]++;
            assert_true(logE[i] == le);
        }
    }
    n = total;
    double q[NCAT], skew[NCAT];
    for (size_t j = 0; j < NCAT; j++) {
        q[j] = 1.0 / NCAT;
        skew[j] = (j < NCAT / 2 ? 0.98 : 1.02) / NCAT;
    }
    double x = chi2(count, q, NCAT, n);
    if (x >= CHI2_DF39) fail_msg("uniform chi2 %.1f", x);
    assert_true(chi2(count, skew, NCAT, n) > CHI2_DF39); /* the test has power against a 2% skew */
    assert_true(psrec_sampler_log_expected(s, 12345, 64, 0) == (float)log(64.0 / NCAT));
    double dq[NCAT];
    assert_int_equal(psrec_sampler_draw_probs(s, dq, NCAT), PSREC_OK);
    for (size_t j = 0; j < NCAT; j++)
        assert_true(dq[j] == 1.0 / NCAT);
    free(keys);
    free(logE);
    psrec_sampler_destroy(&s);
    assert_null(s);
}

/* Q_j = (c_j + 1)^alpha / sum, the obvious way. */
static void ref_q(const uint64_t *counts, size_t n, double alpha, double *q)
{
    double z = 0.0;
    for (size_t j = 0; j < n; j++)
        z += q[j] = pow((double)counts[j] + 1.0, alpha);
    for (size_t j = 0; j < n; j++)
        q[j] /= z;
}

static void test_popularity_chi2(void **state)
{
    (void)state;
    uint64_t items[NCAT], counts[NCAT];
    for (size_t j = 0; j < NCAT; j++) {
        items[j] = key_of(j);
        counts[j] = (j * j * 7) % 97 * (j % 5); /* several zeros, up to a few hundred */
    }
    const double alpha = 0.75;
    psrec_sampler_t *s = make(PSREC_SAMPLER_POPULARITY, NCAT, items, counts, alpha);
    double q[NCAT];
    ref_q(counts, NCAT, alpha, q);
    uint64_t *keys = malloc(DRAWS * sizeof *keys);
    float *logE = malloc(DRAWS * sizeof *logE);
    assert_true(keys && logE);
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 99, 3);
    size_t n = 0, total = 0;
    size_t count[NCAT] = {0};
    for (int round = 0; round < ROUNDS; round++) {
        assert_int_equal(psrec_sampler_draw(s, &rng, DRAWS, NULL, 0, keys, logE, DRAWS, &n), PSREC_OK);
        assert_int_equal(n, DRAWS);
        total += n;
        for (size_t i = 0; i < n; i++) {
            size_t j = index_of(keys[i]);
            count[j]++;
            double want = log((double)DRAWS * q[j]); /* E = S Q_j from the source table */
            assert_true(fabs(logE[i] - want) < 1e-5);
        }
    }
    n = total;
    double x = chi2(count, q, NCAT, n);
    if (x >= CHI2_DF39) fail_msg("popularity chi2 %.1f", x);
    double uq[NCAT];
    for (size_t j = 0; j < NCAT; j++)
        uq[j] = 1.0 / NCAT;
    assert_true(chi2(count, uq, NCAT, n) > 10 * CHI2_DF39); /* clearly not uniform */
    /* log_expected: catalogue key, and a key outside the catalogue counts as 0 */
    assert_true(fabs(psrec_sampler_log_expected(s, key_of(7), 50, 0) - log(50 * q[7])) < 1e-5);
    double z = 0.0;
    for (size_t j = 0; j < NCAT; j++)
        z += pow((double)counts[j] + 1.0, alpha);
    assert_true(fabs(psrec_sampler_log_expected(s, 4, 50, 0) - log(50.0 / z)) < 1e-5);
    free(keys);
    free(logE);
    psrec_sampler_destroy(&s);
}

/* The distribution implied by the alias table equals Q, for assorted shapes: the table is stored in
 * float32 with the rounding booked exactly, so each entry is within one float32 ulp of Q (relative
 * 2^-23) plus double rounding, and the entries sum to 1 to double rounding. */
static void test_alias_exact(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 2, 7, 1000};
    const double alphas[] = {0.0, 0.75, 1.0, 2.5, -0.5};
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 5, 0);
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        uint64_t *items = malloc(n * sizeof *items), *counts = malloc(n * sizeof *counts);
        double *q = malloc(n * sizeof *q), *dq = malloc(n * sizeof *dq);
        assert_true(items && counts && q && dq);
        for (size_t j = 0; j < n; j++) {
            items[j] = psrec_mix64(j + 1);
            uint64_t r = psrec_rng_below(&rng, 10);
            counts[j] = r < 3 ? 0 : r < 8 ? psrec_rng_below(&rng, 1000) : psrec_rng_below(&rng, 1000000000000ULL);
        }
        for (size_t ai = 0; ai < sizeof alphas / sizeof *alphas; ai++) {
            psrec_sampler_t *s = make(PSREC_SAMPLER_POPULARITY, n, items, counts, alphas[ai]);
            ref_q(counts, n, alphas[ai], q);
            assert_int_equal(psrec_sampler_draw_probs(s, dq, n), PSREC_OK);
            double sum = 0.0;
            for (size_t j = 0; j < n; j++) {
                sum += dq[j];
                if (fabs(dq[j] - q[j]) > 1e-14 + (0x1p-23 + 1e-12) * q[j])
                    fail_msg("n=%zu alpha=%g: implied %.17g, Q %.17g at %zu", n, alphas[ai], dq[j], q[j], j);
            }
            assert_true(fabs(sum - 1.0) < 1e-12);
            assert_int_equal(psrec_sampler_draw_probs(s, dq, n + 1), PSREC_EINVAL);
            psrec_sampler_destroy(&s);
        }
        free(items);
        free(counts);
        free(q);
        free(dq);
    }
}

static psrec_sampler_t *make_inbatch(psrec_sampler_kind kind, size_t n, const uint64_t *items, double rate)
{
    psrec_sampler_conf_t c = {.kind = kind, .n_items = n, .items = items, .rate = rate};
    psrec_sampler_t *s = NULL;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_sampler_new(&s, &c, err), PSREC_OK);
    return s;
}

/* Item i occurs every k_i steps: p_hat must converge to 1/k_i. Duplicates within a step change
 * nothing. */
static void test_inbatch_periodic(void **state)
{
    (void)state;
    enum { K = 6 };
    const uint64_t key[K] = {101, 202, 303, 404, 505, 606};
    const int period[K] = {1, 2, 3, 5, 10, 20};
    uint64_t items[K];
    memcpy(items, key, sizeof key);
    psrec_sampler_t *s = make_inbatch(PSREC_SAMPLER_INBATCH, K, items, 0.05);
    psrec_sampler_t *s3 = make_inbatch(PSREC_SAMPLER_INBATCH, K, items, 0.05);
    uint64_t batch[3 * K];
    for (uint64_t t = 1; t <= 4000; t++) {
        size_t n = 0, n3 = 0;
        for (int i = 0; i < K; i++)
            if ((t + (uint64_t)i) % (uint64_t)period[i] == 0) batch[n++] = key[i];
        psrec_sampler_observe(s, batch, n, t);
        uint64_t tripled[3 * K];
        for (size_t i = 0; i < n; i++)
            tripled[n3++] = batch[i], tripled[n3++] = batch[i], tripled[n3++] = batch[i];
        psrec_sampler_observe(s3, tripled, n3, t);
    }
    for (int i = 0; i < K; i++) {
        double p = exp(psrec_sampler_log_expected(s, key[i], 0, 0));
        if (fabs(p - 1.0 / period[i]) > 0.01 / period[i])
            fail_msg("item every %d steps: p_hat %.6f, want %.6f", period[i], p, 1.0 / period[i]);
        assert_true(psrec_sampler_log_expected(s3, key[i], 0, 0) == psrec_sampler_log_expected(s, key[i], 0, 0));
    }
    /* a first appearance at step t counts as a gap of t (at least 1) */
    const uint64_t once = 777777, first = 888888;
    psrec_sampler_observe(s, &once, 1, 37);
    assert_true(fabs(exp(psrec_sampler_log_expected(s, once, 0, 0)) - 1.0 / 37) < 1e-7);
    psrec_sampler_observe(s, &first, 1, 0);
    assert_true(psrec_sampler_log_expected(s, first, 0, 0) == 0.0f);
    /* never observed: p_hat clamps to 1e-12 */
    assert_true(fabs(psrec_sampler_log_expected(s, 999999, 0, 0) - log(1e-12)) < 1e-4);
    /* the draw returns the batch keys with their log p_hat */
    uint64_t out[4];
    float le[4];
    size_t n = 0;
    const uint64_t bp[3] = {404, 101, 404};
    assert_int_equal(psrec_sampler_draw(s, NULL, 0, bp, 3, out, le, 4, &n), PSREC_OK);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        assert_true(out[i] == bp[i]);
        assert_true(le[i] == psrec_sampler_log_expected(s, bp[i], 0, 3));
    }
    assert_int_equal(psrec_sampler_draw(s, NULL, 0, bp, 3, out, le, 2, &n), PSREC_EFULL);
    psrec_sampler_destroy(&s);
    psrec_sampler_destroy(&s3);
}

/* Item i occurs in each step with probability q_i (geometric gaps). */
static void test_inbatch_bernoulli(void **state)
{
    (void)state;
    const uint64_t key[3] = {7, 8, 9};
    const double q[3] = {0.5, 0.2, 0.05};
    uint64_t items[3] = {7, 8, 9};
    psrec_sampler_t *s = make_inbatch(PSREC_SAMPLER_INBATCH, 3, items, 0.01);
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 31, 0);
    for (uint64_t t = 0; t < 30000; t++) {
        uint64_t b[3];
        size_t n = 0;
        for (int i = 0; i < 3; i++)
            if (psrec_rng_uniform(&rng) < q[i]) b[n++] = key[i];
        psrec_sampler_observe(s, b, n, t);
    }
    for (int i = 0; i < 3; i++) {
        double p = exp(psrec_sampler_log_expected(s, key[i], 0, 0));
        if (fabs(p - q[i]) > 0.2 * q[i]) fail_msg("Bernoulli(%g): p_hat %.4f", q[i], p);
    }
    psrec_sampler_destroy(&s);
}

/* A naive copy of the estimator (exact per key, no hashing) to check MIXED's logE formula. */
typedef struct {
    uint64_t key, last; /* last = step + 1, 0 = never */
    double bgap;
} ref_est_t;

static ref_est_t *ref_find(ref_est_t *r, size_t *n, uint64_t key)
{
    for (size_t i = 0; i < *n; i++)
        if (r[i].key == key) return &r[i];
    r[*n] = (ref_est_t){key, 0, INFINITY};
    return &r[(*n)++];
}

static void ref_observe(ref_est_t *r, size_t *n, const uint64_t *b, size_t m, uint64_t t, double rate)
{
    for (size_t i = 0; i < m; i++) {
        ref_est_t *e = ref_find(r, n, b[i]);
        if (e->last == 0)
            e->bgap = t >= 1 ? (double)t : 1.0;
        else if (t + 1 > e->last)
            e->bgap = (1 - rate) * e->bgap + rate * (double)(t + 1 - e->last);
        else
            continue;
        e->last = t + 1;
    }
}

static double ref_phat(ref_est_t *r, size_t *n, uint64_t key)
{
    double p = 1.0 / ref_find(r, n, key)->bgap;
    return p > 1 ? 1 : p < 1e-12 ? 1e-12 : p;
}

static void test_mixed(void **state)
{
    (void)state;
    enum { N = 100, S = 10 };
    uint64_t items[N];
    for (size_t j = 0; j < N; j++)
        items[j] = 1000 + j;
    const double rate = 0.1;
    psrec_sampler_t *s = make_inbatch(PSREC_SAMPLER_MIXED, N, items, rate);
    ref_est_t ref[N + 8];
    size_t nref = 0;
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 8, 0);
    uint64_t b[6];
    for (uint64_t t = 0; t < 300; t++) {
        for (int i = 0; i < 6; i++)
            b[i] = 1000 + psrec_rng_below(&rng, 12); /* a small hot set, repeats */
        psrec_sampler_observe(s, b, 6, t);
        ref_observe(ref, &nref, b, 6, t, rate);
    }
    uint64_t keys[6 + S];
    float logE[6 + S];
    size_t n = 0;
    assert_int_equal(psrec_sampler_draw(s, &rng, S, b, 6, keys, logE, 6 + S, &n), PSREC_OK);
    assert_int_equal(n, 6 + S);
    for (size_t i = 0; i < n; i++) {
        if (i < 6) assert_true(keys[i] == b[i]);
        assert_true(keys[i] >= 1000 && keys[i] < 1000 + N);
        double want = log(ref_phat(ref, &nref, keys[i]) + (double)S / N);
        if (fabs(logE[i] - want) > 1e-5) fail_msg("mixed logE[%zu] %.7f, want %.7f", i, logE[i], want);
        assert_true(logE[i] == psrec_sampler_log_expected(s, keys[i], S, 6));
    }
    /* a key never seen in a batch: E = 1e-12 + S/N */
    assert_true(fabs(psrec_sampler_log_expected(s, 1099, S, 6) - log(1e-12 + (double)S / N)) < 1e-5);
    assert_int_equal(psrec_sampler_draw(s, &rng, S, b, 6, keys, logE, 6 + S - 1, &n), PSREC_EFULL);
    assert_int_equal(n, 6 + S); /* the capacity needed */
    psrec_sampler_destroy(&s);
}

static void test_hard(void **state)
{
    (void)state;
    enum { N = 1000, M = 8, H = 100000 };
    uint64_t items[N];
    for (size_t j = 0; j < N; j++)
        items[j] = 77 + j;
    const double temps[2] = {0.5, 0.0}; /* 0 = default 1 */
    for (int ti = 0; ti < 2; ti++) {
        psrec_sampler_conf_t c = {.kind = PSREC_SAMPLER_HARD, .n_items = N, .items = items, .temperature = temps[ti]};
        psrec_sampler_t *s = NULL;
        assert_int_equal(psrec_sampler_new(&s, &c, NULL), PSREC_OK);
        const double T = temps[ti] ? temps[ti] : 1.0;
        psrec_rng_t rng;
        psrec_rng_seed(&rng, 400 + ti, 0);
        /* stage 1: a uniform pool of M keys, log E = log(M/N) */
        uint64_t pool[M];
        float ple[M];
        size_t n = 0;
        assert_int_equal(psrec_sampler_draw(s, &rng, M, NULL, 0, pool, ple, M, &n), PSREC_OK);
        assert_int_equal(n, M);
        for (int k = 0; k < M; k++) {
            assert_true(pool[k] >= 77 && pool[k] < 77 + N);
            assert_true(ple[k] == (float)log((double)M / N));
            pool[k] = 5000 + (uint64_t)k; /* distinct keys for counting */
        }
        const float score[M] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.5f, 1.2f, 0.7f};
        uint64_t *keys = malloc(H * sizeof *keys);
        float *logE = malloc(H * sizeof *logE);
        assert_true(keys && logE);
        assert_int_equal(psrec_sampler_hard_resample(s, &rng, pool, score, M, H, keys, logE), PSREC_OK);
        /* independent softmax(score / T) */
        double pi[M], z = 0.0;
        for (int k = 0; k < M; k++)
            z += pi[k] = exp(score[k] / T);
        double lse = log(z);
        for (int k = 0; k < M; k++)
            pi[k] /= z;
        size_t count[M] = {0};
        double est = 0.0, pool_est = 0.0;
        for (int k = 0; k < M; k++)
            pool_est += exp(score[k]);
        pool_est *= (double)N / M;
        for (size_t i = 0; i < H; i++) {
            int k = (int)(keys[i] - 5000);
            assert_true(k >= 0 && k < M);
            count[k]++;
            double want = log((double)H) + log((double)M / N) + score[k] / T - lse;
            assert_true(fabs(logE[i] - want) < 1e-5);
            est += exp(score[k] - logE[i]);
        }
        double x = chi2(count, pi, M, H);
        if (x >= CHI2_DF7) fail_msg("hard resample chi2 %.1f (T=%g)", x, T);
        if (T == 1.0) /* at T = 1 every corrected term is equal: the sum is the pool estimate exactly */
            assert_true(fabs(est - pool_est) < 1e-4 * pool_est);
        /* errors */
        assert_int_equal(psrec_sampler_hard_resample(s, &rng, pool, score, 0, 3, keys, logE), PSREC_EINVAL);
        const float bad[2] = {-INFINITY, -INFINITY};
        assert_int_equal(psrec_sampler_hard_resample(s, &rng, pool, bad, 2, 3, keys, logE), PSREC_EINVAL);
        const float nan2[2] = {0.0f, NAN};
        assert_int_equal(psrec_sampler_hard_resample(s, &rng, pool, nan2, 2, 3, keys, logE), PSREC_EINVAL);
        assert_int_equal(psrec_sampler_hard_resample(s, &rng, pool, score, M, 0, NULL, NULL), PSREC_OK);
        /* a -inf score is never drawn */
        const float one[2] = {-INFINITY, 0.0f};
        assert_int_equal(psrec_sampler_hard_resample(s, &rng, pool, one, 2, 1000, keys, logE), PSREC_OK);
        for (int i = 0; i < 1000; i++)
            assert_true(keys[i] == pool[1]);
        free(keys);
        free(logE);
        psrec_sampler_destroy(&s);
    }
    /* stage 2 on another kind of sampler is a misuse */
    psrec_sampler_t *u = make(PSREC_SAMPLER_UNIFORM, N, items, NULL, 0);
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 1, 1);
    uint64_t p1 = 1, k1;
    float s1 = 0.0f, l1;
    assert_int_equal(psrec_sampler_hard_resample(u, &rng, &p1, &s1, 1, 1, &k1, &l1), PSREC_EINVAL);
    psrec_sampler_destroy(&u);
}

static void test_all(void **state)
{
    (void)state;
    enum { N = 37 };
    uint64_t items[N];
    for (size_t j = 0; j < N; j++)
        items[j] = psrec_mix64(j) | 1;
    psrec_sampler_t *s = make(PSREC_SAMPLER_ALL, N, items, NULL, 0);
    uint64_t keys[N];
    float logE[N];
    size_t n = 0;
    assert_int_equal(psrec_sampler_draw(s, NULL, 5, NULL, 0, keys, logE, N, &n), PSREC_OK);
    assert_int_equal(n, N);
    for (size_t j = 0; j < N; j++) {
        assert_true(keys[j] == items[j]);
        assert_true(logE[j] == 0.0f);
    }
    assert_true(psrec_sampler_log_expected(s, items[3], 5, 0) == 0.0f);
    assert_int_equal(psrec_sampler_draw(s, NULL, 5, NULL, 0, keys, logE, N - 1, &n), PSREC_EFULL);
    assert_int_equal(n, N);
    psrec_sampler_destroy(&s);
}

static void test_efull_and_args(void **state)
{
    (void)state;
    uint64_t items[10], counts[10];
    for (size_t j = 0; j < 10; j++)
        items[j] = j + 1, counts[j] = j;
    uint64_t keys[8];
    float logE[8];
    size_t n;
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 3, 0);
    psrec_sampler_t *u = make(PSREC_SAMPLER_UNIFORM, 10, items, NULL, 0);
    psrec_sampler_t *p = make(PSREC_SAMPLER_POPULARITY, 10, items, counts, 0.75);
    assert_int_equal(psrec_sampler_draw(u, &rng, 9, NULL, 0, keys, logE, 8, &n), PSREC_EFULL);
    assert_int_equal(psrec_sampler_draw(p, &rng, 9, NULL, 0, keys, logE, 8, &n), PSREC_EFULL);
    assert_int_equal(psrec_sampler_draw(u, &rng, 8, NULL, 0, keys, logE, 8, &n), PSREC_OK);
    assert_int_equal(psrec_sampler_draw(u, NULL, 8, NULL, 0, keys, logE, 8, &n), PSREC_EINVAL);
    assert_int_equal(psrec_sampler_draw(u, &rng, 8, NULL, 0, NULL, logE, 8, &n), PSREC_EINVAL);
    assert_int_equal(psrec_sampler_draw(u, &rng, 8, NULL, 0, keys, logE, 8, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_sampler_draw(u, &rng, 0, NULL, 0, keys, logE, 8, &n), PSREC_OK);
    assert_int_equal(n, 0);
    psrec_sampler_t *m = make_inbatch(PSREC_SAMPLER_MIXED, 10, items, 0.0);
    const uint64_t bp[3] = {1, 2, 3};
    assert_int_equal(psrec_sampler_draw(m, &rng, 6, bp, 3, keys, logE, 8, &n), PSREC_EFULL);
    assert_int_equal(psrec_sampler_draw(m, &rng, 5, bp, 3, keys, logE, 8, &n), PSREC_OK);
    assert_int_equal(n, 8);
    assert_int_equal(psrec_sampler_draw(m, &rng, 5, NULL, 3, keys, logE, 8, &n), PSREC_EINVAL);
    psrec_sampler_destroy(&u);
    psrec_sampler_destroy(&p);
    psrec_sampler_destroy(&m);
    psrec_sampler_destroy(&m); /* NULL is fine */
    psrec_sampler_destroy(NULL);
}

static void test_new_errors(void **state)
{
    (void)state;
    uint64_t items[4] = {1, 2, 3, 4}, counts[4] = {1, 2, 3, 4};
    char err[PSREC_ERRBUF];
    psrec_sampler_t *s = (psrec_sampler_t *)&s; /* must be reset to NULL on failure */
    psrec_sampler_conf_t c = {.kind = PSREC_SAMPLER_UNIFORM, .n_items = 0, .items = items};
#define EXPECT_NEW(mutate, code)                                                                                       \
    do {                                                                                                               \
        c = (psrec_sampler_conf_t){.kind = PSREC_SAMPLER_UNIFORM, .n_items = 4, .items = items};                       \
        mutate;                                                                                                        \
        err[0] = 0;                                                                                                    \
        assert_int_equal(psrec_sampler_new(&s, &c, err), code);                                                        \
        if (code) {                                                                                                    \
            assert_null(s);                                                                                            \
            assert_true(err[0] != 0);                                                                                  \
        }                                                                                                              \
        psrec_sampler_destroy(&s);                                                                                     \
    } while (0)
    EXPECT_NEW((void)0, PSREC_OK);
    EXPECT_NEW(c.n_items = 0, PSREC_EINVAL);
    EXPECT_NEW(c.items = NULL, PSREC_EINVAL);
    EXPECT_NEW(c.kind = (psrec_sampler_kind)42, PSREC_EINVAL);
    EXPECT_NEW(c.kind = PSREC_SAMPLER_POPULARITY, PSREC_EINVAL); /* no counts */
    EXPECT_NEW((c.kind = PSREC_SAMPLER_POPULARITY, c.counts = counts, c.alpha = 0.75), PSREC_OK);
    EXPECT_NEW((c.kind = PSREC_SAMPLER_POPULARITY, c.counts = counts, c.alpha = NAN), PSREC_EINVAL);
    items[3] = 2; /* duplicate key */
    EXPECT_NEW((c.kind = PSREC_SAMPLER_POPULARITY, c.counts = counts, c.alpha = 0.75), PSREC_EINVAL);
    items[3] = 4;
    EXPECT_NEW((c.kind = PSREC_SAMPLER_INBATCH, c.rate = 1.5), PSREC_EINVAL);
    EXPECT_NEW((c.kind = PSREC_SAMPLER_MIXED, c.rate = -0.1), PSREC_EINVAL);
    EXPECT_NEW((c.kind = PSREC_SAMPLER_INBATCH, c.rate = 1.0, c.hash_size = 16), PSREC_OK);
    EXPECT_NEW((c.kind = PSREC_SAMPLER_HARD, c.temperature = -1.0), PSREC_EINVAL);
#undef EXPECT_NEW
    assert_int_equal(psrec_sampler_new(&s, NULL, err), PSREC_EINVAL);
    assert_int_equal(psrec_sampler_new(NULL, &c, err), PSREC_EINVAL);
}

static void test_names(void **state)
{
    (void)state;
    for (int k = PSREC_SAMPLER_UNIFORM; k <= PSREC_SAMPLER_ALL; k++) {
        psrec_sampler_kind got = (psrec_sampler_kind)99;
        const char *name = psrec_sampler_name((psrec_sampler_kind)k);
        assert_int_equal(psrec_sampler_parse(name, &got), 0);
        assert_int_equal(got, k);
    }
    psrec_sampler_kind got;
    assert_int_equal(psrec_sampler_parse("popularity", &got), 0);
    assert_int_equal(got, PSREC_SAMPLER_POPULARITY);
    assert_int_equal(psrec_sampler_parse("in-batch", &got), 0);
    assert_int_equal(got, PSREC_SAMPLER_INBATCH);
    assert_int_not_equal(psrec_sampler_parse("unifrom", &got), 0);
    assert_int_not_equal(psrec_sampler_parse("", &got), 0);
}

/* Two threads draw (MIXED reads the estimate) while this thread observes: draws stay well formed,
 * and the final estimate equals the single-threaded reference (only this thread writes). */
typedef struct {
    psrec_sampler_t *s;
    int id;
    int bad;
} drawer_t;

static void *drawer(void *arg)
{
    drawer_t *d = arg;
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 77, (uint64_t)d->id);
    uint64_t keys[64], bp[4] = {1000, 1001, 1002, 1003};
    float logE[64];
    for (int it = 0; it < 3000; it++) {
        size_t n = 0;
        if (psrec_sampler_draw(d->s, &rng, 60, bp, 4, keys, logE, 64, &n) || n != 64) d->bad++;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(logE[i]) || keys[i] < 1000 || keys[i] >= 1100) d->bad++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    uint64_t items[100];
    for (size_t j = 0; j < 100; j++)
        items[j] = 1000 + j;
    const double rate = 0.05;
    psrec_sampler_t *s = make_inbatch(PSREC_SAMPLER_MIXED, 100, items, rate);
    drawer_t d[2] = {{s, 1, 0}, {s, 2, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, drawer, &d[i]), 0);
    ref_est_t ref[110];
    size_t nref = 0;
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 9, 0);
    for (uint64_t t = 1; t <= 3000; t++) {
        uint64_t b[5];
        for (int i = 0; i < 5; i++)
            b[i] = 1000 + psrec_rng_below(&rng, 20);
        psrec_sampler_observe(s, b, 5, t);
        ref_observe(ref, &nref, b, 5, t, rate);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(d[0].bad + d[1].bad, 0);
    for (uint64_t k = 1000; k < 1020; k++) {
        double want = log(ref_phat(ref, &nref, k) + 0.0 / 100);
        assert_true(fabs(psrec_sampler_log_expected(s, k, 0, 0) - want) < 1e-5);
    }
    psrec_sampler_destroy(&s);
}

/* A dense catalogue (keys 0..N-1, no key array) samples exactly as the same catalogue given as keys:
 * same alias table, same draws from the same seed, same log E. */
static void test_dense_equals_keys(void **state)
{
    (void)state;
    enum { N = 500, S = 4000 };
    uint64_t *items = malloc(N * sizeof *items), *counts = malloc(N * sizeof *counts);
    assert_true(items && counts);
    psrec_rng_t r;
    psrec_rng_seed(&r, 17, 0);
    for (size_t j = 0; j < N; j++) {
        items[j] = j;
        counts[j] = psrec_rng_below(&r, 4) ? psrec_rng_below(&r, 50) : psrec_rng_below(&r, 100000);
    }
    const psrec_sampler_kind kinds[] = {PSREC_SAMPLER_POPULARITY, PSREC_SAMPLER_UNIFORM, PSREC_SAMPLER_MIXED,
                                        PSREC_SAMPLER_HARD, PSREC_SAMPLER_ALL};
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) {
        psrec_sampler_t *s[3];
        for (int v = 0; v < 3; v++) { /* keys given; dense without keys; dense with its keys */
            psrec_sampler_conf_t c = {.kind = kinds[ki],
                                      .n_items = N,
                                      .items = v == 1 ? NULL : items,
                                      .counts = counts,
                                      .dense = v > 0,
                                      .alpha = 0.75};
            assert_int_equal(psrec_sampler_new(&s[v], &c, NULL), PSREC_OK);
        }
        static double q0[N], q1[N];
        assert_int_equal(psrec_sampler_draw_probs(s[0], q0, N), PSREC_OK);
        static uint64_t k0[S + N], k1[S + N];
        static float l0[S + N], l1[S + N];
        const uint64_t bp[3] = {7, 7, 499};
        for (int v = 1; v < 3; v++) {
            assert_int_equal(psrec_sampler_draw_probs(s[v], q1, N), PSREC_OK);
            assert_memory_equal(q0, q1, sizeof q0);
            psrec_rng_t r0, r1;
            psrec_rng_seed(&r0, 3, 1);
            psrec_rng_seed(&r1, 3, 1);
            size_t n0, n1;
            assert_int_equal(psrec_sampler_draw(s[0], &r0, S, bp, 3, k0, l0, S + N, &n0), PSREC_OK);
            assert_int_equal(psrec_sampler_draw(s[v], &r1, S, bp, 3, k1, l1, S + N, &n1), PSREC_OK);
            assert_int_equal(n0, n1);
            assert_memory_equal(k0, k1, n0 * sizeof *k0);
            assert_memory_equal(l0, l1, n0 * sizeof *l0);
            for (uint64_t key = 0; key < N + 3; key++)
                assert_true(psrec_sampler_log_expected(s[0], key, S, 3) == psrec_sampler_log_expected(s[v], key, S, 3));
        }
        for (size_t i = 0; i < (kinds[ki] == PSREC_SAMPLER_ALL ? (size_t)N : (size_t)S); i++)
            assert_true(k1[i] < N);
        for (int v = 0; v < 3; v++)
            psrec_sampler_destroy(&s[v]);
    }
    /* dense, but the keys given are not 0..N-1 */
    items[0] = 1;
    psrec_sampler_conf_t c = {.kind = PSREC_SAMPLER_UNIFORM, .n_items = N, .items = items, .dense = 1};
    psrec_sampler_t *bad = NULL;
    assert_int_equal(psrec_sampler_new(&bad, &c, NULL), PSREC_EINVAL);
    assert_null(bad);
    free(items);
    free(counts);
}

/* log E of any key against log(S Q) computed here, for keys that do not ascend (the sampler then
 * indexes them with a permutation) and for keys outside the catalogue (count 0). */
static void test_log_expected_unsorted(void **state)
{
    (void)state;
    enum { N = 300, S = 77 };
    uint64_t items[N], counts[N];
    for (size_t j = 0; j < N; j++) {
        items[j] = psrec_mix64(j + 11) | 1; /* odd keys, in no order */
        counts[j] = (j * 37) % 101;
    }
    const double alpha = 0.6;
    psrec_sampler_t *s = make(PSREC_SAMPLER_POPULARITY, N, items, counts, alpha);
    double q[N], z = 0.0;
    ref_q(counts, N, alpha, q);
    for (size_t j = 0; j < N; j++)
        z += pow((double)counts[j] + 1.0, alpha);
    for (size_t j = 0; j < N; j++) {
        double want = log((double)S * q[j]);
        if (fabs(psrec_sampler_log_expected(s, items[j], S, 0) - want) > 1e-5)
            fail_msg("key %zu: log E %.7f, want %.7f", j, psrec_sampler_log_expected(s, items[j], S, 0), want);
        assert_true(fabs(psrec_sampler_log_expected(s, items[j] + 1, S, 0) - log((double)S / z)) < 1e-5);
    }
    psrec_sampler_destroy(&s);
}

/* ---- the alias cache file ---- */

static char cache_dir[64];

static psrec_sampler_t *make_cached(size_t n, const uint64_t *counts, double alpha, const char *path)
{
    psrec_sampler_conf_t c = {.kind = PSREC_SAMPLER_POPULARITY,
                              .n_items = n,
                              .counts = counts,
                              .dense = 1,
                              .alpha = alpha,
                              .cache_path = path};
    psrec_sampler_t *s = NULL;
    char err[PSREC_ERRBUF];
    psrec_err e = psrec_sampler_new(&s, &c, err);
    if (e) fail_msg("psrec_sampler_new: %s: %s", psrec_errname(e), err);
    return s;
}

/* s's implied distribution equals that of a sampler built in memory from the same counts, bit for bit */
static void assert_same_table(const psrec_sampler_t *s, size_t n, const uint64_t *counts, double alpha)
{
    psrec_sampler_t *m = make_cached(n, counts, alpha, NULL);
    assert_int_equal(psrec_sampler_alias_origin(m), PSREC_ALIAS_MEMORY);
    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    assert_true(a && b);
    assert_int_equal(psrec_sampler_draw_probs(s, a, n), PSREC_OK);
    assert_int_equal(psrec_sampler_draw_probs(m, b, n), PSREC_OK);
    assert_memory_equal(a, b, n * sizeof *a);
    for (uint64_t k = 0; k < n + 2; k += 7)
        assert_true(psrec_sampler_log_expected(s, k, 100, 0) == psrec_sampler_log_expected(m, k, 100, 0));
    free(a);
    free(b);
    psrec_sampler_destroy(&m);
}

static struct stat stat_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st;
}

static int same_file(struct stat a, struct stat b)
{
    return a.st_ino == b.st_ino && a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

/* Rewrites bytes of a file in place (no sampler maps it at that moment). */
static void poke(const char *path, long at, const void *p, size_t len)
{
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, at, at < 0 ? SEEK_END : SEEK_SET), 0);
    assert_int_equal(fwrite(p, 1, len, fp), len);
    fclose(fp);
}

static void test_alias_cache(void **state)
{
    (void)state;
    enum { N = 2000, S = 64 };
    strcpy(cache_dir, "/tmp/psrec-alias-XXXXXX");
    assert_non_null(mkdtemp(cache_dir));
    char path[128];
    snprintf(path, sizeof path, "%s/alias.bin", cache_dir);
    uint64_t *counts = malloc(N * sizeof *counts);
    assert_non_null(counts);
    for (size_t j = 0; j < N; j++)
        counts[j] = (j * j * 13) % 997 * (j % 3);
    /* built, written and mapped */
    psrec_sampler_t *s1 = make_cached(N, counts, 0.75, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_BUILT);
    struct stat st1 = stat_of(path);
    assert_int_equal(st1.st_size, 40 + 8 * N + 24);
    assert_same_table(s1, N, counts, 0.75);
    /* log E from the cache's normaliser against log(S Q) computed here */
    double q[N];
    ref_q(counts, N, 0.75, q);
    for (size_t j = 0; j < N; j++)
        assert_true(fabs(psrec_sampler_log_expected(s1, j, S, 0) - log((double)S * q[j])) < 1e-5);
    /* reused: a second sampler maps the same file, untouched */
    psrec_sampler_t *s2 = make_cached(N, counts, 0.75, path);
    assert_int_equal(psrec_sampler_alias_origin(s2), PSREC_ALIAS_CACHE_HIT);
    assert_true(same_file(st1, stat_of(path)));
    assert_same_table(s2, N, counts, 0.75);
    for (size_t j = 0; j < N; j++)
        assert_true(fabs(psrec_sampler_log_expected(s2, j, S, 0) - log((double)S * q[j])) < 1e-5);
    psrec_sampler_destroy(&s1);
    psrec_sampler_destroy(&s2);

    /* corrupt (a flipped byte in the table): rebuilt, then reused */
    unsigned char x = 0x5a;
    poke(path, 40 + 4 * 777, &x, 1);
    s1 = make_cached(N, counts, 0.75, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_BUILT);
    assert_false(same_file(st1, stat_of(path)));
    assert_same_table(s1, N, counts, 0.75);
    psrec_sampler_destroy(&s1);
    s1 = make_cached(N, counts, 0.75, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_HIT);
    psrec_sampler_destroy(&s1);
    /* truncated: rebuilt */
    assert_int_equal(truncate(path, 100), 0);
    s1 = make_cached(N, counts, 0.75, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_BUILT);
    psrec_sampler_destroy(&s1);

    /* stale: another alpha, other counts, another N */
    s1 = make_cached(N, counts, 1.0, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_BUILT);
    assert_same_table(s1, N, counts, 1.0);
    psrec_sampler_destroy(&s1);
    s1 = make_cached(N, counts, 1.0, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_HIT);
    psrec_sampler_destroy(&s1);
    counts[5] += 1;
    s1 = make_cached(N, counts, 1.0, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_BUILT);
    assert_same_table(s1, N, counts, 1.0);
    psrec_sampler_destroy(&s1);
    s1 = make_cached(N - 1, counts, 1.0, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_BUILT);
    assert_same_table(s1, N - 1, counts, 1.0);
    psrec_sampler_destroy(&s1);

    /* a file with a valid checksum and the right key whose contents are impossible: rebuilt */
    s1 = make_cached(N, counts, 0.5, path);
    psrec_sampler_destroy(&s1);
    void *buf;
    size_t len;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_dfile_read_all(path, &buf, &len, err), PSREC_OK);
    assert_int_equal(len, 40 + 8 * N);
    assert_memory_equal(buf, "PSRECAL1", 8);
    assert_true((uint64_t)XXH64(counts, N * 8, 0) == psrec_get64((unsigned char *)buf + 24)); /* the key */
    psrec_put32((unsigned char *)buf + 40 + 4 * N + 4 * 9, N); /* alias[9] = N: out of range */
    psrec_dfile_t *d;
    assert_int_equal(psrec_dfile_open(&d, path, err), PSREC_OK);
    assert_int_equal(psrec_dfile_write(d, buf, len, err), PSREC_OK);
    assert_int_equal(psrec_dfile_commit(&d, err), PSREC_OK);
    free(buf);
    s1 = make_cached(N, counts, 0.5, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_BUILT);
    assert_same_table(s1, N, counts, 0.5);
    psrec_sampler_destroy(&s1);

    /* a cache that cannot be written is not an error: the table stays in memory */
    char nodir[160];
    snprintf(nodir, sizeof nodir, "%s/missing/alias.bin", cache_dir);
    s1 = make_cached(N, counts, 0.5, nodir);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_MEMORY);
    assert_same_table(s1, N, counts, 0.5);
    psrec_sampler_destroy(&s1);
    psrec_sampler_t *u = make(PSREC_SAMPLER_UNIFORM, N, counts, NULL, 0);
    assert_int_equal(psrec_sampler_alias_origin(u), PSREC_ALIAS_NONE);
    psrec_sampler_destroy(&u);

    /* two processes building one cache at once: both get the right table, the file ends up valid */
    snprintf(path, sizeof path, "%s/race.bin", cache_dir);
    pid_t kid[2];
    for (int i = 0; i < 2; i++) {
        kid[i] = fork();
        assert_true(kid[i] >= 0);
        if (kid[i] == 0) {
            psrec_sampler_conf_t c = {.kind = PSREC_SAMPLER_POPULARITY,
                                      .n_items = N,
                                      .counts = counts,
                                      .dense = 1,
                                      .alpha = 0.9,
                                      .cache_path = path};
            psrec_sampler_t *k = NULL, *m = NULL;
            int ok = psrec_sampler_new(&k, &c, NULL) == PSREC_OK;
            c.cache_path = NULL;
            ok = ok && psrec_sampler_new(&m, &c, NULL) == PSREC_OK;
            static double a[N], b[N];
            ok = ok && psrec_sampler_draw_probs(k, a, N) == PSREC_OK && psrec_sampler_draw_probs(m, b, N) == PSREC_OK &&
                 memcmp(a, b, sizeof a) == 0 && psrec_sampler_alias_origin(k) != PSREC_ALIAS_MEMORY;
            _exit(ok ? 0 : 1);
        }
    }
    for (int i = 0; i < 2; i++) {
        int st;
        assert_int_equal(waitpid(kid[i], &st, 0), kid[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    s1 = make_cached(N, counts, 0.9, path);
    assert_int_equal(psrec_sampler_alias_origin(s1), PSREC_ALIAS_CACHE_HIT);
    psrec_sampler_destroy(&s1);

    free(counts);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_chi2),
        cmocka_unit_test(test_popularity_chi2),
        cmocka_unit_test(test_alias_exact),
        cmocka_unit_test(test_inbatch_periodic),
        cmocka_unit_test(test_inbatch_bernoulli),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_hard),
        cmocka_unit_test(test_all),
        cmocka_unit_test(test_efull_and_args),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_dense_equals_keys),
        cmocka_unit_test(test_log_expected_unsorted),
        cmocka_unit_test(test_alias_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_fastmath.c: the vectorisable exp/log helpers against double-precision libm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/fastmath.h"
#include "common/rng.h"

/* Relative error bound of exp: Cephes' polynomial is good to ~1.5 ulp (1 ulp = 6e-8 relative). */
#define EXP_RTOL 3e-7

static void check_exp(float x, float y)
{
    double r = exp((double)x);
    if (fabs(y - r) > EXP_RTOL * r) fail_msg("exp(%.9g) = %.9g, want %.9g (rel %.3g)", x, y, r, fabs(y - r) / r);
}

static void test_exp_accuracy(void **state)
{
    (void)state;
    const size_t n = 1 << 20;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    /* dense grid over the whole normal range, then random points */
    for (size_t i = 0; i < n; i++)
        x[i] = y[i] = (float)(-87.33 + (88.72 + 87.33) * (double)i / (double)n);
    psrec_exp_inplace(y, n);
    for (size_t i = 0; i < n; i++)
        check_exp(x[i], y[i]);
    /* the scalar kernel as compiled for the baseline target (the array helpers may run an AVX2 clone) */
    for (size_t i = 0; i < n; i++)
        check_exp(x[i], psrec_expf(x[i]));
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 7, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = y[i] = (float)(psrec_rng_uniform(&rng) * 40.0 - 30.0);
    psrec_exp_inplace(y, n);
    for (size_t i = 0; i < n; i++)
        check_exp(x[i], y[i]);
    for (size_t i = 0; i < 1000; i++)
        check_exp(x[i], psrec_expf(x[i])); /* scalar entry point too */
    free(x);
    free(y);
}

static void test_exp_special(void **state)
{
    (void)state;
    assert_true(psrec_expf(0.0f) == 1.0f);
    assert_true(psrec_expf(-INFINITY) == 0.0f);
    assert_true(psrec_expf(-88.0f) == 0.0f); /* flushed below ln FLT_MIN: no denormals */
    assert_true(psrec_expf(-1000.0f) == 0.0f);
    assert_true(psrec_expf(-87.3f) > 0.0f);
    assert_true(isinf(psrec_expf(INFINITY)) && psrec_expf(INFINITY) > 0);
    assert_true(isinf(psrec_expf(89.0f)));
    assert_true(isfinite(psrec_expf(88.7f)));
    check_exp(88.7f, psrec_expf(88.7f)); /* n = 128: the split 2^n must not overflow */
    assert_true(isnan(psrec_expf(NAN)));
    /* the array path gives the same specials, also in a ragged tail */
    float v[7] = {0.0f, -INFINITY, -88.0f, INFINITY, 89.0f, NAN, 1.0f};
    psrec_exp_inplace(v, 7);
    assert_true(v[0] == 1.0f && v[1] == 0.0f && v[2] == 0.0f && isinf(v[3]) && isinf(v[4]) && isnan(v[5]));
    check_exp(1.0f, v[6]);
}

static void test_exp_ragged_lengths(void **state)
{
    (void)state;
    float x[64], y[64];
    for (size_t n = 0; n <= 40; n++) {
        for (size_t i = 0; i < 64; i++)
            x[i] = y[i] = (float)i * 0.37f - 9.0f;
        psrec_exp_inplace(y, n);
        for (size_t i = 0; i < n; i++)
            check_exp(x[i], y[i]);
        for (size_t i = n; i < 64; i++)
            assert_true(y[i] == x[i]); /* nothing past n is touched */
    }
}

static void check_log(float x, float y)
{
    double r = log((double)x);
    double tol = 2e-7 + 3e-7 * fabs(r);
    if (!(fabs(y - r) <= tol)) fail_msg("log(%.9g) = %.9g, want %.9g", x, y, r);
}

static void test_log_accuracy(void **state)
{
    (void)state;
    const size_t n = 1 << 20;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    /* log-spaced over normals and denormals */
    for (size_t i = 0; i < n; i++)
        x[i] = y[i] = (float)exp(-100.0 + 188.0 * (double)i / (double)n);
    psrec_log_inplace(y, n);
    for (size_t i = 0; i < n; i++)
        if (x[i] > 0) {
            check_log(x[i], y[i]);
            check_log(x[i], psrec_logf(x[i]));
        }
    /* around 1, where the absolute error matters (log1p of softplus) */
    for (size_t i = 0; i < n; i++)
        x[i] = y[i] = 0.5f + 1.5f * (float)i / (float)n;
    psrec_log_inplace(y, n);
    for (size_t i = 0; i < n; i++)
        check_log(x[i], y[i]);
    free(x);
    free(y);
}

static void test_log_special(void **state)
{
    (void)state;
    assert_true(psrec_logf(1.0f) == 0.0f);
    assert_true(psrec_logf(0.0f) == -INFINITY);
    assert_true(isnan(psrec_logf(-1.0f)));
    assert_true(isnan(psrec_logf(-INFINITY)));
    assert_true(psrec_logf(INFINITY) == INFINITY);
    assert_true(isnan(psrec_logf(NAN)));
    check_log(1e-40f, psrec_logf(1e-40f)); /* denormal */
    check_log(1.4e-45f, psrec_logf(1.4e-45f));
    check_log(3.0e38f, psrec_logf(3.0e38f));
}

static void test_exp_shift_sum(void **state)
{
    (void)state;
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 11, 0);
    float x[100], y[100];
    for (size_t n = 0; n <= 100; n += 7) {
        for (size_t i = 0; i < n; i++)
            x[i] = y[i] = (float)(psrec_rng_uniform(&rng) * 20.0 - 15.0);
        if (n > 3) x[3] = y[3] = -INFINITY; /* a masked cell */
        const float shift = 2.5f;
        double s = psrec_exp_shift_sum(y, n, shift), ref = 0.0;
        for (size_t i = 0; i < n; i++) {
            double e = exp((double)(x[i] - shift)); /* the subtraction is done in float */
            ref += e;
            assert_true(fabs(y[i] - e) <= EXP_RTOL * e);
        }
        if (n > 3) assert_true(y[3] == 0.0f);
        assert_true(fabs(s - ref) <= 1e-6 * ref);
    }
}

static void test_max_sum_scale(void **state)
{
    (void)state;
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 12, 0);
    float x[80] = {0};
    assert_true(psrec_max(x, 0) == -INFINITY);
    for (size_t n = 1; n <= 80; n++) {
        for (size_t i = 0; i < n; i++)
            x[i] = (float)(psrec_rng_uniform(&rng) * 10.0 - 5.0);
        x[psrec_rng_below(&rng, n)] = -INFINITY;
        size_t at = (size_t)psrec_rng_below(&rng, n);
        x[at] = 7.25f; /* the max, placed anywhere including the tail */
        assert_true(psrec_max(x, n) == 7.25f);
        for (size_t i = 0; i < n; i++)
            if (x[i] == -INFINITY) x[i] = 0.0f;
        double ref = 0.0;
        for (size_t i = 0; i < n; i++)
            ref += x[i];
        assert_true(fabs(psrec_sum_d(x, n) - ref) <= 1e-12 * (1.0 + fabs(ref)));
        float y[80];
        for (size_t i = 0; i < n; i++)
            y[i] = x[i];
        psrec_scale_inplace(y, n, -0.5f);
        for (size_t i = 0; i < n; i++)
            assert_true(y[i] == x[i] * -0.5f);
    }
}

static void test_softplus_sigmoid(void **state)
{
    (void)state;
    float x[53], y[53];
    const size_t lens[] = {0, 7, 16, 33, 53};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        size_t n = lens[li];
        for (size_t i = 0; i < 53; i++)
            x[i] = y[i] = (float)i * 1.7f - 45.0f; /* -45 .. +43 */
        x[5] = y[5] = -INFINITY;
        x[6] = y[6] = 0.0f;
        double s = psrec_softplus_sigmoid(y, n), ref = 0.0;
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            double sp = v == -INFINITY ? 0.0 : (v > 0 ? v : 0) + log1p(exp(-fabs(v)));
            double sg = v == -INFINITY ? 0.0 : 1.0 / (1.0 + exp(-v));
            ref += sp;
            if (fabs(y[i] - sg) > 3e-7 * sg + 1e-30) fail_msg("sigmoid(%g) = %.9g, want %.9g", v, y[i], sg);
        }
        if (n > 6) {
            assert_true(y[5] == 0.0f); /* masked cell: exactly 0 */
            assert_true(y[6] == 0.5f);
        }
        assert_true(fabs(s - ref) <= 1e-6 * (1.0 + ref));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_accuracy),       cmocka_unit_test(test_exp_special),
        cmocka_unit_test(test_exp_ragged_lengths), cmocka_unit_test(test_log_accuracy),
        cmocka_unit_test(test_log_special),        cmocka_unit_test(test_exp_shift_sum),
        cmocka_unit_test(test_max_sum_scale),      cmocka_unit_test(test_softplus_sigmoid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

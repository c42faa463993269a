/* test_tower.c: the query tower's forward pass against a naive MLP, and its gradients against
 * central finite differences (ALGORITHMS.md §9, float32 tolerances), away from ReLU kinks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "worker/tower.h"

/* naive forward in double: returns sum_k c_k * out_k (a scalar loss to differentiate) */
static double naive_loss(const psrec_tower_conf_t *c, const float *p, const float *X, int B, const float *coef,
                         double *out)
{
    int in = c->n_in, nl = c->n_hidden + 1;
    double *h = malloc(sizeof(double) * B * 4096), *z = malloc(sizeof(double) * B * 4096);
    for (int i = 0; i < B * in; i++)
        h[i] = X[i];
    size_t off = 0;
    for (int l = 0; l < nl; l++) {
        int o = l < c->n_hidden ? c->hidden[l] : c->out_dim;
        const float *W = p + off, *b = p + off + (size_t)o * in;
        for (int r = 0; r < B; r++)
            for (int j = 0; j < o; j++) {
                double s = b[j];
                for (int k = 0; k < in; k++)
                    s += (double)W[j * in + k] * h[r * in + k];
                z[r * o + j] = (l < nl - 1 && s < 0) ? 0 : s;
            }
        off += (size_t)o * in + o;
        memcpy(h, z, sizeof(double) * B * o);
        in = o;
    }
    double L = 0;
    for (int i = 0; i < B * c->out_dim; i++) {
        L += coef[i] * h[i];
        if (out) out[i] = h[i];
    }
    free(h);
    free(z);
    return L;
}

static void check_conf(psrec_tower_conf_t c, int B)
{
    psrec_tower_t *t;
    assert_int_equal(psrec_tower_new(&t, &c), PSREC_OK);
    size_t np = psrec_tower_nparams(t);
    float *p = malloc(np * 4), *dp = malloc(np * 4), *X = malloc(sizeof(float) * B * c.n_in),
          *dX = malloc(sizeof(float) * B * c.n_in), *out = malloc(sizeof(float) * B * c.out_dim),
          *coef = malloc(sizeof(float) * B * c.out_dim);
    double *ref = malloc(sizeof(double) * B * c.out_dim);
    psrec_tower_init_params(t, 7, p);
    psrec_rng_t r;
    psrec_rng_seed(&r, 3, 0);
    for (size_t i = 0; i < np; i++)
        p[i] += (float)(0.1 * psrec_rng_normal(&r)); /* non-zero biases too */
    for (int i = 0; i < B * c.n_in; i++)
        X[i] = (float)psrec_rng_normal(&r);
    for (int i = 0; i < B * c.out_dim; i++)
        coef[i] = (float)psrec_rng_normal(&r);

    assert_int_equal(psrec_tower_forward(t, p, X, B, out), PSREC_OK);
    naive_loss(&c, p, X, B, coef, ref);
    for (int i = 0; i < B * c.out_dim; i++)
        assert_true(fabs(out[i] - ref[i]) < 1e-4 * (1 + fabs(ref[i])));

    assert_int_equal(psrec_tower_backward(t, p, X, coef, B, dp, dX), PSREC_OK);
    const double h = 1e-3;
    int checked = 0;
    for (size_t i = 0; i < np; i += 1 + np / 200) {
        float keep = p[i];
        p[i] = (float)(keep + h);
        double lp = naive_loss(&c, p, X, B, coef, NULL);
        p[i] = (float)(keep - h);
        double lm = naive_loss(&c, p, X, B, coef, NULL);
        p[i] = keep;
        double fd = (lp - lm) / (2 * h);
        assert_true(fabs(fd - dp[i]) <= 1e-3 + 1e-2 * fmax(fabs(fd), fabs(dp[i])));
        checked++;
    }
    for (int i = 0; i < B * c.n_in; i++) {
        float keep = X[i];
        X[i] = (float)(keep + h);
        double lp = naive_loss(&c, p, X, B, coef, NULL);
        X[i] = (float)(keep - h);
        double lm = naive_loss(&c, p, X, B, coef, NULL);
        X[i] = keep;
        double fd = (lp - lm) / (2 * h);
        assert_true(fabs(fd - dX[i]) <= 1e-3 + 1e-2 * fmax(fabs(fd), fabs(dX[i])));
    }
    assert_true(checked > 10);
    free(p), free(dp), free(X), free(dX), free(out), free(coef), free(ref);
    psrec_tower_destroy(&t);
    assert_null(t);
}

static void test_linear_gradients(void **state)
{
    psrec_tower_conf_t c = {.n_in = 6, .n_hidden = 0, .out_dim = 4};
    check_conf(c, 5);
}

static void test_mlp_gradients(void **state)
{
    psrec_tower_conf_t c = {.n_in = 8, .n_hidden = 2, .hidden = {12, 7}, .out_dim = 5};
    check_conf(c, 6);
}

static void test_bad_conf_and_parse(void **state)
{
    psrec_tower_t *t = (psrec_tower_t *)1;
    psrec_tower_conf_t c = {.n_in = 0, .out_dim = 4};
    assert_int_equal(psrec_tower_new(&t, &c), PSREC_EINVAL);
    assert_null(t);
    c.n_in = 3;
    c.n_hidden = 1;
    c.hidden[0] = 0;
    assert_int_equal(psrec_tower_new(&t, &c), PSREC_EINVAL);
    assert_int_equal(psrec_tower_parse_hidden("256,128", &c), 0);
    assert_int_equal(c.n_hidden, 2);
    assert_int_equal(c.hidden[1], 128);
    assert_int_equal(psrec_tower_parse_hidden("0", &c), 0);
    assert_int_equal(c.n_hidden, 0);
    assert_int_equal(psrec_tower_parse_hidden("12,x", &c), -1);
    assert_int_equal(psrec_tower_parse_hidden("-3", &c), -1);
    psrec_tower_destroy(NULL);
}

static void test_init_deterministic(void **state)
{
    psrec_tower_conf_t c = {.n_in = 10, .n_hidden = 1, .hidden = {9}, .out_dim = 3};
    psrec_tower_t *t;
    assert_int_equal(psrec_tower_new(&t, &c), PSREC_OK);
    size_t np = psrec_tower_nparams(t);
    assert_int_equal(np, 10 * 9 + 9 + 9 * 3 + 3);
    float *a = malloc(np * 4), *b = malloc(np * 4);
    psrec_tower_init_params(t, 5, a);
    psrec_tower_init_params(t, 5, b);
    assert_memory_equal(a, b, np * 4);
    psrec_tower_init_params(t, 6, b);
    assert_true(memcmp(a, b, np * 4) != 0);
    free(a), free(b);
    psrec_tower_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_gradients),
        cmocka_unit_test(test_mlp_gradients),
        cmocka_unit_test(test_bad_conf_and_parse),
        cmocka_unit_test(test_init_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

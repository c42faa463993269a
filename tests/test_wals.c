/* test_wals.c: worker/wals (ALGORITHMS.md §6). The row update is checked against an independent
 * dense weighted least-squares solve (the full n_items x n_items weighting built explicitly, normal
 * equations solved by Gaussian elimination in double); the objective's "computed as" form against
 * the naive sum over every cell; monotone decrease over sweeps; w0 > 0 separating two disjoint blocks
 * that w0 = 0 lets fold together; fold-in = the trained user row; bad inputs -> PSREC_EINVAL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "worker/wals.h"

typedef struct {
    size_t nu, ni, nnz;
    size_t *off;
    uint32_t *idx;
    float *w;
} data_t;

/* Random observations: each user observes each item with probability p (or, with blocks, only items
 * of its own half). */
static void make_data(data_t *D, size_t nu, size_t ni, double p, int blocks, uint64_t seed)
{
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 7);
    D->nu = nu;
    D->ni = ni;
    D->off = malloc((nu + 1) * sizeof *D->off);
    D->idx = malloc(nu * ni * sizeof *D->idx);
    D->w = malloc(nu * ni * sizeof *D->w);
    size_t n = 0;
    for (size_t i = 0; i < nu; i++) {
        D->off[i] = n;
        for (size_t j = 0; j < ni; j++) {
            if (blocks && (i < nu / 2) != (j < ni / 2)) continue;
            if (psrec_rng_uniform(&r) < p) {
                D->idx[n] = (uint32_t)j;
                D->w[n] = (float)(0.5 + 2 * psrec_rng_uniform(&r));
                n++;
            }
        }
    }
    D->off[nu] = n;
    D->nnz = n;
}

static void free_data(data_t *D)
{
    free(D->off);
    free(D->idx);
    free(D->w);
}

static psrec_wals_csr_t csr(const data_t *D)
{
    return (psrec_wals_csr_t){.n_rows = D->nu, .n_cols = D->ni, .off = D->off, .idx = D->idx, .w = D->w};
}

/* Solves M x = y (n x n, row-major, destroyed) by Gaussian elimination with partial pivoting. */
static void gauss(double *M, double *y, int n)
{
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++)
            if (fabs(M[i * n + k]) > fabs(M[p * n + k])) p = i;
        for (int j = 0; j < n; j++) {
            double t = M[k * n + j];
            M[k * n + j] = M[p * n + j];
            M[p * n + j] = t;
        }
        double t = y[k];
        y[k] = y[p];
        y[p] = t;
        for (int i = k + 1; i < n; i++) {
            double f = M[i * n + k] / M[k * n + k];
            for (int j = k; j < n; j++)
                M[i * n + j] -= f * M[k * n + j];
            y[i] -= f * y[k];
        }
    }
    for (int k = n - 1; k >= 0; k--) {
        for (int j = k + 1; j < n; j++)
            y[k] -= M[k * n + j] * y[j];
        y[k] /= M[k * n + k];
    }
}

/* Reference row: argmin_u sum_j W_jj (A_j - u.v_j)^2 + lambda |u|^2 with the dense weighting W
 * (w0 everywhere, w0 + alpha*w on observed cells) and A (1 observed, 0 else): (V^T W V + lambda I) u
 * = V^T W A. */
static void dense_row(const float *V, size_t ni, int d, const uint32_t *idx, const float *w, size_t n,
                      const psrec_wals_conf_t *c, double *u)
{
    double *W = calloc(ni * ni, sizeof *W), *A = calloc(ni, sizeof *A), *M = calloc((size_t)d * d, sizeof *M);
    for (size_t j = 0; j < ni; j++)
        W[j * ni + j] = c->w0;
    for (size_t t = 0; t < n; t++) {
        W[idx[t] * ni + idx[t]] += c->alpha * w[t];
        A[idx[t]] = 1;
    }
    for (int a = 0; a < d; a++) {
        u[a] = 0;
        for (int b = 0; b < d; b++) {
            double s = a == b ? c->lambda : 0;
            for (size_t j = 0; j < ni; j++)
                for (size_t k = 0; k < ni; k++)
                    s += V[j * d + a] * W[j * ni + k] * V[k * d + b];
            M[a * d + b] = s;
        }
        for (size_t j = 0; j < ni; j++)
            for (size_t k = 0; k < ni; k++)
                u[a] += V[j * d + a] * W[j * ni + k] * A[k];
    }
    gauss(M, u, d);
    free(W);
    free(A);
    free(M);
}

static psrec_wals_conf_t conf(int d, double w0, int sweeps)
{
    psrec_wals_conf_t c;
    psrec_wals_defaults(&c);
    c.dim = d;
    c.w0 = w0;
    c.lambda = 0.05;
    c.alpha = 2.0;
    c.sweeps = sweeps;
    c.threads = 2;
    c.seed = 11;
    return c;
}

static void test_row_update_exact(void **state)
{
    data_t D;
    make_data(&D, 12, 9, 0.4, 0, 1);
    psrec_wals_conf_t c = conf(4, 0.3, 3);
    psrec_wals_csr_t o = csr(&D);
    float *U = malloc(D.nu * 4 * sizeof *U), *V = malloc(D.ni * 4 * sizeof *V);
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_wals_train(&c, &o, U, V, NULL, NULL, err), PSREC_OK);
    /* every final U row is the exact minimiser against the returned V */
    for (size_t i = 0; i < D.nu; i++) {
        double ref[4];
        dense_row(V, D.ni, 4, D.idx + D.off[i], D.w + D.off[i], D.off[i + 1] - D.off[i], &c, ref);
        for (int a = 0; a < 4; a++)
            assert_true(fabs(U[i * 4 + a] - ref[a]) <= 1e-4 * (1 + fabs(ref[a])));
    }
    /* and the fold-in of an arbitrary new history, with random V */
    psrec_rng_t r;
    psrec_rng_seed(&r, 5, 0);
    for (size_t k = 0; k < D.ni * 4; k++)
        V[k] = (float)psrec_rng_normal(&r);
    double G[16], ref[4];
    psrec_wals_gram(V, D.ni, 4, G);
    uint32_t items[3] = {0, 4, 8};
    float w[3] = {1.0f, 0.25f, 3.0f};
    float u[4];
    assert_int_equal(psrec_wals_fold_in(V, G, items, w, 3, &c, u, NULL), PSREC_OK);
    dense_row(V, D.ni, 4, items, w, 3, &c, ref);
    for (int a = 0; a < 4; a++)
        assert_true(fabs(u[a] - ref[a]) <= 1e-4 * (1 + fabs(ref[a])));
    free(U);
    free(V);
    free_data(&D);
}

/* Naive objective: every cell of U V^T. */
static double naive_objective(const data_t *D, const float *U, const float *V, int d, const psrec_wals_conf_t *c)
{
    double f = 0;
    for (size_t i = 0; i < D->nu; i++) {
        size_t k = D->off[i];
        for (size_t j = 0; j < D->ni; j++) {
            double s = 0;
            for (int a = 0; a < d; a++)
                s += (double)U[i * d + a] * V[j * d + a];
            double W = c->w0, A = 0;
            if (k < D->off[i + 1] && D->idx[k] == j) { /* make_data emits items ascending */
                W += c->alpha * D->w[k];
                A = 1;
                k++;
            }
            f += W * (A - s) * (A - s);
        }
    }
    for (size_t k = 0; k < D->nu * d; k++)
        f += c->lambda * U[k] * U[k];
    for (size_t k = 0; k < D->ni * d; k++)
        f += c->lambda * V[k] * V[k];
    return f;
}

typedef struct {
    int n;
    double f[32];
} trace_t;

static void record(void *ctx, int sweep, double f)
{
    trace_t *t = ctx;
    assert_int_equal(sweep, t->n + 1);
    t->f[t->n++] = f;
}

static void test_objective_monotone(void **state)
{
    data_t D;
    make_data(&D, 150, 120, 0.08, 0, 2);
    psrec_wals_conf_t c = conf(8, 0.5, 10);
    psrec_wals_csr_t o = csr(&D);
    float *U = malloc(D.nu * 8 * sizeof *U), *V = malloc(D.ni * 8 * sizeof *V);
    char err[PSREC_ERRBUF];
    trace_t t = {0};
    assert_int_equal(psrec_wals_train(&c, &o, U, V, record, &t, err), PSREC_OK);
    assert_int_equal(t.n, 10);
    for (int s = 1; s < t.n; s++)
        assert_true(t.f[s] <= t.f[s - 1] * (1 + 1e-9));
    assert_true(t.f[9] < t.f[0]);
    /* the "computed as" form equals the naive sum over all cells */
    double f, ref = naive_objective(&D, U, V, 8, &c);
    assert_int_equal(psrec_wals_objective(&c, &o, U, V, &f), PSREC_OK);
    assert_true(fabs(f - ref) <= 1e-6 * ref);
    free(U);
    free(V);
    free_data(&D);
}

/* Mean |u_a . v_b| over users and items of different blocks. */
static double cross_block(int d, double w0)
{
    data_t D;
    make_data(&D, 100, 80, 0.15, 1, 3);
    psrec_wals_conf_t c = conf(d, w0, 10);
    psrec_wals_csr_t o = csr(&D);
    float *U = malloc(D.nu * d * sizeof *U), *V = malloc(D.ni * d * sizeof *V);
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_wals_train(&c, &o, U, V, NULL, NULL, err), PSREC_OK);
    double s = 0;
    size_t n = 0;
    for (size_t i = 0; i < D.nu; i++)
        for (size_t j = 0; j < D.ni; j++) {
            if ((i < D.nu / 2) == (j < D.ni / 2)) continue;
            double x = 0;
            for (int a = 0; a < d; a++)
                x += (double)U[i * d + a] * V[j * d + a];
            s += fabs(x);
            n++;
        }
    free(U);
    free(V);
    free_data(&D);
    return s / (double)n;
}

static void test_w0_separates_blocks(void **state)
{
    double folded = cross_block(8, 0.0), clean = cross_block(8, 1.0);
    print_message("cross-block mean |score|: w0=0 %.4f  w0=1 %.4f\n", folded, clean);
    assert_true(folded > 0.3);
    assert_true(clean < 0.5 * folded);
}

static void test_fold_in_matches_training(void **state)
{
    data_t D;
    make_data(&D, 80, 60, 0.1, 0, 4);
    psrec_wals_conf_t c = conf(6, 0.2, 5);
    c.threads = 3;
    psrec_wals_csr_t o = csr(&D);
    float *U = malloc(D.nu * 6 * sizeof *U), *V = malloc(D.ni * 6 * sizeof *V);
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_wals_train(&c, &o, U, V, NULL, NULL, err), PSREC_OK);
    double G[36], work[PSREC_WALS_WORK(6)];
    psrec_wals_gram(V, D.ni, 6, G);
    for (size_t i = 0; i < D.nu; i++) {
        float u[6];
        assert_int_equal(
            psrec_wals_fold_in(V, G, D.idx + D.off[i], D.w + D.off[i], D.off[i + 1] - D.off[i], &c, u, work), PSREC_OK);
        for (int a = 0; a < 6; a++)
            assert_true(fabsf(u[a] - U[i * 6 + a]) <= 1e-4f);
    }
    free(U);
    free(V);
    free_data(&D);
}

static void test_bad_input(void **state)
{
    size_t off[3] = {0, 2, 3};
    uint32_t idx[3] = {0, 1, 1};
    float w[3] = {1, 1, 1}, U[2 * 4], V[2 * 4];
    psrec_wals_csr_t o = {.n_rows = 2, .n_cols = 2, .off = off, .idx = idx, .w = w};
    char err[PSREC_ERRBUF];
    psrec_wals_conf_t good = conf(4, 0.1, 2), c;
    assert_int_equal(psrec_wals_train(&good, &o, U, V, NULL, NULL, err), PSREC_OK);
    c = good, c.dim = 0;
    assert_int_equal(psrec_wals_train(&c, &o, U, V, NULL, NULL, err), PSREC_EINVAL);
    c = good, c.lambda = 0;
    assert_int_equal(psrec_wals_train(&c, &o, U, V, NULL, NULL, err), PSREC_EINVAL);
    c = good, c.w0 = -1;
    assert_int_equal(psrec_wals_train(&c, &o, U, V, NULL, NULL, err), PSREC_EINVAL);
    c = good, c.alpha = NAN;
    assert_int_equal(psrec_wals_train(&c, &o, U, V, NULL, NULL, err), PSREC_EINVAL);
    c = good, c.sweeps = 0;
    assert_int_equal(psrec_wals_train(&c, &o, U, V, NULL, NULL, err), PSREC_EINVAL);
    c = good, c.threads = 0;
    assert_int_equal(psrec_wals_train(&c, &o, U, V, NULL, NULL, err), PSREC_EINVAL);
    assert_int_equal(psrec_wals_check(&c, NULL), PSREC_EINVAL);
    /* item index out of range, duplicate pair, negative weight */
    idx[2] = 2;
    assert_int_equal(psrec_wals_train(&good, &o, U, V, NULL, NULL, err), PSREC_EINVAL);
    idx[2] = 1;
    idx[1] = 0;
    assert_int_equal(psrec_wals_train(&good, &o, U, V, NULL, NULL, err), PSREC_EINVAL);
    assert_non_null(strstr(err, "twice"));
    idx[1] = 1;
    w[0] = -1;
    assert_int_equal(psrec_wals_train(&good, &o, U, V, NULL, NULL, err), PSREC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_update_exact),    cmocka_unit_test(test_objective_monotone),
        cmocka_unit_test(test_w0_separates_blocks), cmocka_unit_test(test_fold_in_matches_training),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

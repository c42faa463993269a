/* test_loss.c: the batch losses against a naive double-precision reference written here, gradients
 * against central differences of that reference (and of the implementation itself), accidental-hit
 * masking, the sampled loss with S = all items against the full softmax (ALGORITHMS.md §1, §9), and
 * the gravity regularizer against the naive pair sum (§5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "worker/loss.h"

#define MAXB 16
#define MAXP 64
#define MAXS 64
#define MAXD 16

typedef struct {
    int B, d, S;
    uint32_t pos_off[MAXB + 1];
    uint64_t pos_key[MAXP];
    float pos_w[MAXP], pos_logE[MAXP];
    uint64_t neg_key[MAXS];
    float neg_logE[MAXS];
    float U[MAXB * MAXD], Vpos[MAXP * MAXD], Vneg[MAXS * MAXD];
    float neg_weight;
    int has_logE;
} prob_t;

static psrec_loss_in_t as_in(const prob_t *p)
{
    psrec_loss_in_t in = {
        .B = p->B,
        .d = p->d,
        .U = p->U,
        .pos_off = p->pos_off,
        .pos_key = p->pos_key,
        .pos_w = p->pos_w,
        .pos_logE = p->has_logE ? p->pos_logE : NULL,
        .Vpos = p->Vpos,
        .S = p->S,
        .neg_key = p->neg_key,
        .neg_logE = p->has_logE ? p->neg_logE : NULL,
        .Vneg = p->Vneg,
        .neg_weight = p->neg_weight,
    };
    return in;
}

static double dotd(const double *a, const double *b, int d)
{
    double s = 0.0;
    for (int i = 0; i < d; i++)
        s += a[i] * b[i];
    return s;
}

static double softplus_d(double x)
{
    return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x)));
}

/* The reference: per row, every candidate scored separately, masks by linear scan, all in double. */
static double naive_loss(psrec_loss_kind kind, const prob_t *p, const double *U, const double *Vpos, const double *Vneg)
{
    const int d = p->d;
    double total = 0.0;
    int beff = 0;
    for (int b = 0; b < p->B; b++) {
        uint32_t p0 = p->pos_off[b], p1 = p->pos_off[b + 1];
        if (p0 == p1) continue;
        beff++;
        double zp[MAXP], zn[MAXS];
        int masked[MAXS];
        for (uint32_t k = p0; k < p1; k++)
            zp[k] = dotd(U + b * d, Vpos + k * d, d) - (p->has_logE ? p->pos_logE[k] : 0.0);
        int nu = 0;
        for (int j = 0; j < p->S; j++) {
            masked[j] = 0;
            for (uint32_t k = p0; k < p1; k++)
                masked[j] |= p->neg_key[j] == p->pos_key[k];
            nu += !masked[j];
            zn[j] = dotd(U + b * d, Vneg + j * d, d) - (p->has_logE ? p->neg_logE[j] : 0.0);
        }
        if (kind == PSREC_LOSS_SOFTMAX) {
            double m = -INFINITY, s = 0.0;
            for (uint32_t k = p0; k < p1; k++)
                m = fmax(m, zp[k]);
            for (int j = 0; j < p->S; j++)
                if (!masked[j]) m = fmax(m, zn[j]);
            for (uint32_t k = p0; k < p1; k++)
                s += exp(zp[k] - m);
            for (int j = 0; j < p->S; j++)
                if (!masked[j]) s += exp(zn[j] - m);
            double lse = m + log(s);
            for (uint32_t k = p0; k < p1; k++)
                total += p->pos_w[k] * (lse - zp[k]); /* -sum p log pi */
        } else {
            for (uint32_t k = p0; k < p1; k++)
                total += p->pos_w[k] * softplus_d(-zp[k]);
            if (kind == PSREC_LOSS_LOGISTIC && nu > 0) {
                double s = 0.0;
                for (int j = 0; j < p->S; j++)
                    if (!masked[j]) s += softplus_d(zn[j]);
                total += p->neg_weight * s / nu;
            }
        }
    }
    return beff ? total / beff : 0.0;
}

static void randn(psrec_rng_t *r, float *x, int n, double scale)
{
    for (int i = 0; i < n; i++)
        x[i] = (float)(scale * psrec_rng_normal(r));
}

/* A batch with everything at once: multi-positive rows with weights, a row without positives, a key
 * repeated among a row's positives, repeated negative keys, accidental hits (12 in rows 1 and 5,
 * 20 twice in row 4), log E on positives and negatives. */
static void make_rich(prob_t *p, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 1);
    p->B = 6;
    p->d = 5;
    static const uint32_t off[] = {0, 1, 4, 4, 6, 8, 9};
    static const uint64_t pk[] = {10, 11, 12, 13, 14, 14, 15, 20, 12};
    static const float pw[] = {1.0f, 0.5f, 0.3f, 0.2f, 0.6f, 0.4f, 0.7f, 0.3f, 1.0f};
    static const uint64_t nk[] = {20, 30, 31, 20, 12, 32, 33, 30, 34};
    memcpy(p->pos_off, off, sizeof off);
    memcpy(p->pos_key, pk, sizeof pk);
    memcpy(p->pos_w, pw, sizeof pw);
    p->S = 9;
    memcpy(p->neg_key, nk, sizeof nk);
    const int P = (int)off[6];
    randn(&r, p->U, p->B * p->d, 0.7);
    randn(&r, p->Vpos, P * p->d, 0.7);
    randn(&r, p->Vneg, p->S * p->d, 0.7);
    for (int k = 0; k < P; k++)
        p->pos_logE[k] = (float)(2.0 * psrec_rng_uniform(&r) - 1.0);
    for (int j = 0; j < p->S; j++)
        p->neg_logE[j] = (float)(2.0 * psrec_rng_uniform(&r) - 1.0);
    p->has_logE = 1;
    p->neg_weight = 3.0f;
}

typedef struct {
    float dU[MAXB * MAXD], dVpos[MAXP * MAXD], dVneg[MAXS * MAXD];
} grads_t;

static double run(psrec_loss_kind kind, const prob_t *p, psrec_loss_ws_t *ws, grads_t *g)
{
    psrec_loss_in_t in = as_in(p);
    double loss = NAN;
    psrec_loss_out_t out = {g ? g->dU : NULL, g ? g->dVpos : NULL, g ? g->dVneg : NULL};
    assert_int_equal(psrec_loss_compute(kind, &in, ws, &loss, g ? &out : NULL), PSREC_OK);
    return loss;
}

static void to_double(const float *x, double *y, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = x[i];
}

/* Compares one gradient block with central differences: of the double reference (tight tolerance)
 * and of the implementation's own float loss (ALGORITHMS.md §9 float32 tolerances). */
static void fd_block(psrec_loss_kind kind, prob_t *p, psrec_loss_ws_t *ws, float *param, int n, const float *g,
                     const char *what)
{
    double U[MAXB * MAXD], Vp[MAXP * MAXD], Vn[MAXS * MAXD];
    const int P = (int)p->pos_off[p->B];
    for (int i = 0; i < n; i++) {
        const float saved = param[i];
        /* reference: double copies, perturbed in double */
        to_double(p->U, U, p->B * p->d);
        to_double(p->Vpos, Vp, P * p->d);
        to_double(p->Vneg, Vn, p->S * p->d);
        double *dp = param == p->U ? U : param == p->Vpos ? Vp : Vn;
        const double h = 1e-5;
        dp[i] = saved + h;
        double lp = naive_loss(kind, p, U, Vp, Vn);
        dp[i] = saved - h;
        double lm = naive_loss(kind, p, U, Vp, Vn);
        double fd = (lp - lm) / (2 * h);
        if (fabs(g[i] - fd) > 2e-6 + 1e-4 * fabs(fd))
            fail_msg("%s %s[%d]: gradient %.9g, central difference of the reference %.9g", psrec_loss_name(kind), what,
                     i, g[i], fd);
        /* self-consistency: the implementation's own loss, float32, h = 1e-3 */
        const float hf = 1e-3f;
        param[i] = saved + hf;
        double fp = run(kind, p, ws, NULL);
        param[i] = saved - hf;
        double fm = run(kind, p, ws, NULL);
        param[i] = saved;
        double fdf = (fp - fm) / (2.0 * hf);
        if (fabs(g[i] - fdf) > 1e-4 + 1e-2 * fabs(fdf))
            fail_msg("%s %s[%d]: gradient %.9g, central difference of the float loss %.9g", psrec_loss_name(kind), what,
                     i, g[i], fdf);
    }
}

static void check_problem(psrec_loss_kind kind, prob_t *p)
{
    psrec_loss_ws_t *ws = NULL;
    assert_int_equal(psrec_loss_ws_new(&ws), PSREC_OK);
    grads_t g;
    memset(&g, 0xff, sizeof g); /* NaN garbage: every output must be overwritten */
    double loss = run(kind, p, ws, &g);

    double U[MAXB * MAXD], Vp[MAXP * MAXD], Vn[MAXS * MAXD];
    const int P = (int)p->pos_off[p->B];
    to_double(p->U, U, p->B * p->d);
    to_double(p->Vpos, Vp, P * p->d);
    to_double(p->Vneg, Vn, p->S * p->d);
    double ref = naive_loss(kind, p, U, Vp, Vn);
    if (fabs(loss - ref) > 1e-6 + 1e-6 * fabs(ref))
        fail_msg("%s: loss %.12g, reference %.12g", psrec_loss_name(kind), loss, ref);

    fd_block(kind, p, ws, p->U, p->B * p->d, g.dU, "dU");
    fd_block(kind, p, ws, p->Vpos, P * p->d, g.dVpos, "dVpos");
    if (kind == PSREC_LOSS_POSITIVES_ONLY) {
        for (int i = 0; i < p->S * p->d; i++)
            assert_true(g.dVneg[i] == 0.0f); /* S ignored, output zeroed */
    } else {
        fd_block(kind, p, ws, p->Vneg, p->S * p->d, g.dVneg, "dVneg");
    }
    psrec_loss_ws_destroy(&ws);
    assert_null(ws);
}

static void test_gradients_rich(void **state)
{
    (void)state;
    const psrec_loss_kind kinds[] = {PSREC_LOSS_SOFTMAX, PSREC_LOSS_LOGISTIC, PSREC_LOSS_POSITIVES_ONLY};
    for (int ki = 0; ki < 3; ki++) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
            prob_t p;
            make_rich(&p, seed);
            check_problem(kinds[ki], &p);
            p.has_logE = 0; /* logE = NULL path */
            check_problem(kinds[ki], &p);
        }
    }
}

/* Unnormalised targets: the loss is -sum p log pi (mass * LSE - p.z), gradient mass*pi - p. */
static void test_gradients_unnormalised(void **state)
{
    (void)state;
    prob_t p;
    make_rich(&p, 9);
    for (int k = 0; k < 9; k++)
        p.pos_w[k] *= 1.5f + 0.25f * (float)k;
    check_problem(PSREC_LOSS_SOFTMAX, &p);
    check_problem(PSREC_LOSS_LOGISTIC, &p);
}

/* Larger random problems: S crosses the 16-float block size of the vectorised row pass and many
 * rows share negatives. */
static void test_gradients_random(void **state)
{
    (void)state;
    psrec_rng_t r;
    psrec_rng_seed(&r, 42, 0);
    const psrec_loss_kind kinds[] = {PSREC_LOSS_SOFTMAX, PSREC_LOSS_LOGISTIC, PSREC_LOSS_POSITIVES_ONLY};
    for (int trial = 0; trial < 4; trial++) {
        prob_t p;
        memset(&p, 0, sizeof p);
        p.B = 5;
        p.d = trial == 3 ? 1 : 3 + trial;
        p.S = trial == 3 ? 0 : 37 + trial; /* trial 3: positives only compete with each other, d = 1 */
        uint32_t P = 0;
        for (int b = 0; b < p.B; b++) {
            p.pos_off[b] = P;
            int np = (int)psrec_rng_below(&r, 4); /* 0..3 */
            double sum = 0.0;
            for (int k = 0; k < np; k++) {
                p.pos_key[P + k] = psrec_rng_below(&r, 30);
                p.pos_w[P + k] = (float)(0.1 + psrec_rng_uniform(&r));
                sum += p.pos_w[P + k];
            }
            for (int k = 0; k < np; k++)
                p.pos_w[P + k] = (float)(p.pos_w[P + k] / sum);
            P += (uint32_t)np;
        }
        p.pos_off[p.B] = P;
        for (int j = 0; j < p.S; j++)
            p.neg_key[j] = psrec_rng_below(&r, 30); /* many hits and repeats */
        randn(&r, p.U, p.B * p.d, 0.8);
        randn(&r, p.Vpos, (int)P * p.d, 0.8);
        randn(&r, p.Vneg, p.S * p.d, 0.8);
        for (uint32_t k = 0; k < P; k++)
            p.pos_logE[k] = (float)psrec_rng_normal(&r);
        for (int j = 0; j < p.S; j++)
            p.neg_logE[j] = (float)psrec_rng_normal(&r);
        p.has_logE = 1;
        p.neg_weight = 5.0f;
        for (int ki = 0; ki < 3; ki++)
            check_problem(kinds[ki], &p);
    }
}

/* Masked cells: exactly 0 gradient, and no influence on the loss whatever their rows hold. */
static void test_masked_exact_zero(void **state)
{
    (void)state;
    prob_t p;
    memset(&p, 0, sizeof p);
    psrec_rng_t r;
    psrec_rng_seed(&r, 5, 0);
    p.B = 2;
    p.d = 4;
    p.pos_off[0] = 0;
    p.pos_off[1] = 1;
    p.pos_off[2] = 3;
    p.pos_key[0] = 7; /* row 0: {7}; row 1: {7, 8} */
    p.pos_key[1] = 7;
    p.pos_key[2] = 8;
    p.pos_w[0] = 1.0f;
    p.pos_w[1] = 0.5f;
    p.pos_w[2] = 0.5f;
    p.S = 5;
    const uint64_t nk[] = {7, 9, 7, 8, 10}; /* 7 masked in both rows, 8 in row 1 only */
    memcpy(p.neg_key, nk, sizeof nk);
    randn(&r, p.U, 8, 1.0);
    randn(&r, p.Vpos, 12, 1.0);
    randn(&r, p.Vneg, 20, 1.0);
    for (int j = 0; j < 5; j++)
        p.neg_logE[j] = (float)psrec_rng_normal(&r);
    for (int k = 0; k < 3; k++)
        p.pos_logE[k] = (float)psrec_rng_normal(&r);
    p.has_logE = 1;
    p.neg_weight = 2.0f;
    psrec_loss_ws_t *ws = NULL;
    assert_int_equal(psrec_loss_ws_new(&ws), PSREC_OK);
    const psrec_loss_kind kinds[] = {PSREC_LOSS_SOFTMAX, PSREC_LOSS_LOGISTIC};
    for (int ki = 0; ki < 2; ki++) {
        grads_t g1, g2;
        double l1 = run(kinds[ki], &p, ws, &g1);
        for (int i = 0; i < 4; i++) {
            assert_true(g1.dVneg[0 * 4 + i] == 0.0f);
            assert_true(g1.dVneg[2 * 4 + i] == 0.0f);
        }
        /* key 8 is masked in row 1 only: its gradient is G[0,3] u_0, parallel to u_0 */
        double ratio = g1.dVneg[3 * 4] / p.U[0];
        assert_true(ratio != 0.0);
        for (int i = 1; i < 4; i++)
            assert_true(fabs(g1.dVneg[3 * 4 + i] - ratio * p.U[i]) < 1e-6);
        /* change the masked rows wildly: same loss, same dU */
        prob_t q = p;
        for (int i = 0; i < 4; i++) {
            q.Vneg[0 * 4 + i] = 1e3f;
            q.Vneg[2 * 4 + i] = -7e2f;
        }
        q.neg_logE[0] = -50.0f;
        double l2 = run(kinds[ki], &q, ws, &g2);
        assert_true(l1 == l2);
        for (int i = 0; i < 8; i++)
            assert_true(fabs(g1.dU[i] - g2.dU[i]) <= 1e-6 * (1 + fabs(g1.dU[i])));
        /* control: the same change on an unmasked negative does change the loss */
        q = p;
        q.Vneg[1 * 4] += 1.0f;
        assert_true(run(kinds[ki], &q, ws, NULL) != l1);
    }
    psrec_loss_ws_destroy(&ws);
}

/* S = all N items, log E = 0, masking on: the sampled loss is the full softmax of §1. */
static void test_sampled_all_equals_full(void **state)
{
    (void)state;
    enum { N = 50, B = 7, d = 8 };
    psrec_rng_t r;
    psrec_rng_seed(&r, 77, 0);
    float *V = malloc(N * d * sizeof *V), *U = malloc(B * d * sizeof *U);
    assert_non_null(V);
    assert_non_null(U);
    randn(&r, V, N * d, 0.6);
    randn(&r, U, B * d, 0.6);
    uint64_t keys[N];
    for (int j = 0; j < N; j++)
        keys[j] = 1000 + (uint64_t)j * 7;
    /* targets: distinct items per row, weights normalised; row 3 has none */
    double Pm[B][N];
    memset(Pm, 0, sizeof Pm);
    uint32_t off[B + 1];
    uint64_t pk[B * 3];
    float pw[B * 3], Vpos[B * 3 * d];
    int pidx[B * 3];
    uint32_t np = 0;
    for (int b = 0; b < B; b++) {
        off[b] = np;
        int cnt = b == 3 ? 0 : 1 + (int)psrec_rng_below(&r, 3);
        double sum = 0.0;
        for (int k = 0; k < cnt; k++) {
            int j;
            int dup;
            do { /* distinct within the row */
                j = (int)psrec_rng_below(&r, N);
                dup = 0;
                for (uint32_t q = off[b]; q < np + (uint32_t)k; q++)
                    dup |= pidx[q] == j;
            } while (dup);
            pidx[np + k] = j;
            pk[np + k] = keys[j];
            pw[np + k] = (float)(0.2 + psrec_rng_uniform(&r));
            sum += pw[np + k];
            memcpy(Vpos + (np + k) * d, V + j * d, d * sizeof *V);
        }
        for (int k = 0; k < cnt; k++) {
            pw[np + k] = (float)(pw[np + k] / sum);
            Pm[b][pidx[np + k]] += pw[np + k];
        }
        np += (uint32_t)cnt;
    }
    off[B] = np;

    /* full softmax, naive double (§1): Z = U V^T, G = (softmax(Z) - P) / B_eff */
    double full = 0.0, Gm[B][N];
    int beff = 0;
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < N; j++)
            Gm[b][j] = 0.0;
        if (off[b] == off[b + 1]) continue;
        beff++;
        double z[N], m = -INFINITY, s = 0.0;
        for (int j = 0; j < N; j++) {
            z[j] = 0.0;
            for (int i = 0; i < d; i++)
                z[j] += (double)U[b * d + i] * V[j * d + i];
            m = fmax(m, z[j]);
        }
        for (int j = 0; j < N; j++)
            s += exp(z[j] - m);
        double lse = m + log(s);
        full += lse;
        for (int j = 0; j < N; j++) {
            full -= Pm[b][j] * z[j];
            Gm[b][j] = exp(z[j] - lse) - Pm[b][j];
        }
    }
    full /= beff;

    float zeros[N] = {0};
    for (int with_zero_logE = 0; with_zero_logE < 2; with_zero_logE++) {
        psrec_loss_in_t in = {.B = B,
                              .d = d,
                              .U = U,
                              .pos_off = off,
                              .pos_key = pk,
                              .pos_w = pw,
                              .Vpos = Vpos,
                              .S = N,
                              .neg_key = keys,
                              .Vneg = V,
                              .neg_logE = with_zero_logE ? zeros : NULL};
        float dU[B * d], dVpos[B * 3 * d], dVneg[N * d];
        psrec_loss_out_t out = {dU, dVpos, dVneg};
        psrec_loss_ws_t *ws = NULL;
        assert_int_equal(psrec_loss_ws_new(&ws), PSREC_OK);
        double loss = 0.0;
        assert_int_equal(psrec_loss_compute(PSREC_LOSS_SOFTMAX, &in, ws, &loss, &out), PSREC_OK);
        psrec_loss_ws_destroy(&ws);
        if (fabs(loss - full) > 1e-5) fail_msg("sampled(all) %.9g != full %.9g", loss, full);
        /* gradients: dU = G V / B_eff; dV = G^T U / B_eff, the sampled one scattered by key */
        for (int b = 0; b < B; b++)
            for (int i = 0; i < d; i++) {
                double ref = 0.0;
                for (int j = 0; j < N; j++)
                    ref += Gm[b][j] * V[j * d + i];
                ref /= beff;
                if (fabs(dU[b * d + i] - ref) > 1e-5) fail_msg("dU[%d,%d] %g != %g", b, i, dU[b * d + i], ref);
            }
        for (int j = 0; j < N; j++)
            for (int i = 0; i < d; i++) {
                double ref = 0.0, got = dVneg[j * d + i];
                for (int b = 0; b < B; b++)
                    ref += Gm[b][j] * U[b * d + i];
                ref /= beff;
                for (uint32_t k = 0; k < np; k++)
                    if (pidx[k] == j) got += dVpos[k * d + i];
                if (fabs(got - ref) > 1e-5) fail_msg("dV[%d,%d] %g != %g", j, i, got, ref);
            }
    }
    free(V);
    free(U);
}

static void test_no_positive_rows(void **state)
{
    (void)state;
    prob_t p;
    make_rich(&p, 3);
    for (int b = 0; b <= p.B; b++)
        p.pos_off[b] = 0; /* P = 0 */
    psrec_loss_ws_t *ws = NULL;
    assert_int_equal(psrec_loss_ws_new(&ws), PSREC_OK);
    for (int k = 0; k < 3; k++) {
        grads_t g;
        memset(&g, 0xff, sizeof g);
        double loss = run((psrec_loss_kind)k, &p, ws, &g);
        assert_true(loss == 0.0);
        for (int i = 0; i < p.B * p.d; i++)
            assert_true(g.dU[i] == 0.0f);
        for (int i = 0; i < p.S * p.d; i++)
            assert_true(g.dVneg[i] == 0.0f);
    }
    psrec_loss_ws_destroy(&ws);
}

static void test_einval(void **state)
{
    (void)state;
    prob_t p;
    make_rich(&p, 4);
    psrec_loss_ws_t *ws = NULL;
    assert_int_equal(psrec_loss_ws_new(&ws), PSREC_OK);
    grads_t g;
    psrec_loss_out_t out = {g.dU, g.dVpos, g.dVneg};
    double loss;
    psrec_loss_in_t in;
#define EXPECT(kind, mutate, code)                                                                                     \
    do {                                                                                                               \
        in = as_in(&p);                                                                                                \
        out = (psrec_loss_out_t){g.dU, g.dVpos, g.dVneg};                                                              \
        mutate;                                                                                                        \
        assert_int_equal(psrec_loss_compute(kind, &in, ws, &loss, &out), code);                                        \
    } while (0)
    EXPECT(PSREC_LOSS_SOFTMAX, (void)0, PSREC_OK);
    EXPECT(PSREC_LOSS_SOFTMAX, in.B = -1, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_SOFTMAX, in.d = 0, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_SOFTMAX, in.S = -2, PSREC_EINVAL);
    EXPECT((psrec_loss_kind)9, (void)0, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_SOFTMAX, in.U = NULL, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_SOFTMAX, in.Vneg = NULL, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_POSITIVES_ONLY, (in.Vneg = NULL, in.neg_key = NULL, out.dVneg = NULL), PSREC_OK);
    EXPECT(PSREC_LOSS_LOGISTIC, in.neg_key = NULL, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_SOFTMAX, in.Vpos = NULL, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_SOFTMAX, in.pos_key = NULL, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_SOFTMAX, out.dVpos = NULL, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_SOFTMAX, out.dVneg = NULL, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_SOFTMAX, out.dU = NULL, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_LOGISTIC, in.neg_weight = NAN, PSREC_EINVAL);
    EXPECT(PSREC_LOSS_LOGISTIC, in.neg_weight = -1.0f, PSREC_EINVAL);
    p.pos_w[2] = -0.5f;
    EXPECT(PSREC_LOSS_SOFTMAX, (void)0, PSREC_EINVAL);
    make_rich(&p, 4);
    p.pos_off[0] = 1; /* CSR must start at 0 */
    EXPECT(PSREC_LOSS_SOFTMAX, (void)0, PSREC_EINVAL);
    make_rich(&p, 4);
    p.pos_off[3] = 2; /* decreasing offsets */
    EXPECT(PSREC_LOSS_SOFTMAX, (void)0, PSREC_EINVAL);
    make_rich(&p, 4);
#undef EXPECT
    in = as_in(&p);
    assert_int_equal(psrec_loss_compute(PSREC_LOSS_SOFTMAX, NULL, ws, &loss, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_loss_compute(PSREC_LOSS_SOFTMAX, &in, NULL, &loss, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_loss_compute(PSREC_LOSS_SOFTMAX, &in, ws, NULL, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_loss_ws_new(NULL), PSREC_EINVAL);
    psrec_loss_ws_destroy(&ws);
    psrec_loss_ws_destroy(&ws); /* NULL is fine */
    psrec_loss_ws_destroy(NULL);
}

static double naive_gravity(int B, int R, int d, const double *U, const double *V, double lambda)
{
    double s = 0.0;
    for (int b = 0; b < B; b++)
        for (int r = 0; r < R; r++) {
            double x = dotd(U + b * d, V + r * d, d);
            s += x * x;
        }
    return lambda * s / ((double)B * R);
}

static void test_gravity(void **state)
{
    (void)state;
    enum { B = 7, R = 5, d = 6 };
    const float lambda = 0.3f;
    psrec_rng_t r;
    psrec_rng_seed(&r, 21, 0);
    float U[B * d], V[R * d], dU[B * d], dV[R * d], dU0[B * d], dV0[R * d];
    randn(&r, U, B * d, 1.0);
    randn(&r, V, R * d, 1.0);
    randn(&r, dU0, B * d, 1.0); /* gradients are ADDED to what is there */
    randn(&r, dV0, R * d, 1.0);
    memcpy(dU, dU0, sizeof dU);
    memcpy(dV, dV0, sizeof dV);
    double Ud[B * d], Vd[R * d];
    to_double(U, Ud, B * d);
    to_double(V, Vd, R * d);
    double loss = 1.25;
    assert_int_equal(psrec_loss_gravity(B, R, d, U, V, lambda, &loss, dU, dV), PSREC_OK);
    double ref = naive_gravity(B, R, d, Ud, Vd, lambda);
    if (fabs(loss - 1.25 - ref) > 1e-6 * ref) fail_msg("gravity %.12g, naive %.12g", loss - 1.25, ref);
    const double h = 1e-5;
    for (int i = 0; i < B * d; i++) {
        double s = Ud[i];
        Ud[i] = s + h;
        double lp = naive_gravity(B, R, d, Ud, Vd, lambda);
        Ud[i] = s - h;
        double lm = naive_gravity(B, R, d, Ud, Vd, lambda);
        Ud[i] = s;
        double fd = (lp - lm) / (2 * h), got = (double)dU[i] - dU0[i];
        if (fabs(got - fd) > 1e-5 + 1e-4 * fabs(fd)) fail_msg("gravity dU[%d] %g, fd %g", i, got, fd);
    }
    for (int i = 0; i < R * d; i++) {
        double s = Vd[i];
        Vd[i] = s + h;
        double lp = naive_gravity(B, R, d, Ud, Vd, lambda);
        Vd[i] = s - h;
        double lm = naive_gravity(B, R, d, Ud, Vd, lambda);
        Vd[i] = s;
        double fd = (lp - lm) / (2 * h), got = (double)dV[i] - dV0[i];
        if (fabs(got - fd) > 1e-5 + 1e-4 * fabs(fd)) fail_msg("gravity dVr[%d] %g, fd %g", i, got, fd);
    }
    /* NULL gradients: value only */
    loss = 0.0;
    assert_int_equal(psrec_loss_gravity(B, R, d, U, V, lambda, &loss, NULL, NULL), PSREC_OK);
    assert_true(fabs(loss - ref) <= 1e-6 * ref);
    /* empty sides add nothing */
    loss = 2.0;
    assert_int_equal(psrec_loss_gravity(0, R, d, NULL, V, lambda, &loss, NULL, dV), PSREC_OK);
    assert_true(loss == 2.0);
    /* errors */
    assert_int_equal(psrec_loss_gravity(-1, R, d, U, V, lambda, &loss, NULL, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_loss_gravity(B, -1, d, U, V, lambda, &loss, NULL, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_loss_gravity(B, R, 0, U, V, lambda, &loss, NULL, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_loss_gravity(B, R, d, NULL, V, lambda, &loss, NULL, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_loss_gravity(B, R, d, U, NULL, lambda, &loss, NULL, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_loss_gravity(B, R, d, U, V, NAN, &loss, NULL, NULL), PSREC_EINVAL);
    assert_int_equal(psrec_loss_gravity(B, R, d, U, V, lambda, NULL, NULL, NULL), PSREC_EINVAL);
}

/* Gravity with more rows than the Gram chunk (128), so the chunked double accumulation is exercised. */
static void test_gravity_large(void **state)
{
    (void)state;
    enum { B = 300, R = 140, d = 9 };
    psrec_rng_t r;
    psrec_rng_seed(&r, 22, 0);
    float *U = malloc(B * d * sizeof *U), *V = malloc(R * d * sizeof *V);
    double *Ud = malloc(B * d * sizeof *Ud), *Vd = malloc(R * d * sizeof *Vd);
    float *dU = calloc(B * d, sizeof *dU);
    assert_true(U && V && Ud && Vd && dU);
    randn(&r, U, B * d, 1.0);
    randn(&r, V, R * d, 1.0);
    to_double(U, Ud, B * d);
    to_double(V, Vd, R * d);
    double loss = 0.0;
    assert_int_equal(psrec_loss_gravity(B, R, d, U, V, 2.0f, &loss, dU, NULL), PSREC_OK);
    double ref = naive_gravity(B, R, d, Ud, Vd, 2.0);
    assert_true(fabs(loss - ref) <= 1e-9 * ref);
    /* dU row b = 2 lambda/(B R) sum_r (u_b.v_r) v_r */
    for (int b = 0; b < B; b += 37)
        for (int i = 0; i < d; i++) {
            double g = 0.0;
            for (int k = 0; k < R; k++)
                g += dotd(Ud + b * d, Vd + k * d, d) * Vd[k * d + i];
            g *= 2.0 * 2.0 / ((double)B * R);
            assert_true(fabs(dU[b * d + i] - g) <= 1e-5 * (1 + fabs(g)));
        }
    free(U);
    free(V);
    free(Ud);
    free(Vd);
    free(dU);
}

static void test_names(void **state)
{
    (void)state;
    for (int k = PSREC_LOSS_SOFTMAX; k <= PSREC_LOSS_POSITIVES_ONLY; k++) {
        psrec_loss_kind got = (psrec_loss_kind)99;
        assert_int_equal(psrec_loss_parse(psrec_loss_name((psrec_loss_kind)k), &got), 0);
        assert_int_equal(got, k);
    }
    psrec_loss_kind got;
    assert_int_equal(psrec_loss_parse("softmax", &got), 0);
    assert_int_equal(got, PSREC_LOSS_SOFTMAX);
    assert_int_equal(psrec_loss_parse("positives-only", &got), 0);
    assert_int_equal(got, PSREC_LOSS_POSITIVES_ONLY);
    assert_int_not_equal(psrec_loss_parse("softmx", &got), 0);
    assert_int_not_equal(psrec_loss_parse("", &got), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_rich),
        cmocka_unit_test(test_gradients_unnormalised),
        cmocka_unit_test(test_gradients_random),
        cmocka_unit_test(test_masked_exact_zero),
        cmocka_unit_test(test_sampled_all_equals_full),
        cmocka_unit_test(test_no_positive_rows),
        cmocka_unit_test(test_einval),
        cmocka_unit_test(test_gravity),
        cmocka_unit_test(test_gravity_large),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

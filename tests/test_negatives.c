/* test_negatives.c: server-side negatives (ps/negatives.h + psrec_loss_softmax_parts) against the
 * worker-side sampled softmax (psrec_loss_compute) on the same sample: the negatives are split into
 * shards, each shard scores its part, the worker combines, and loss, dU, dVpos and the negatives'
 * gradients summed per key must equal the single-place computation. Also: finite differences of the
 * split loss in U, parts with no negatives or every negative masked, uniform sampling from a store's
 * rows (psrec_store_sample) and its log E. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "ps/negatives.h"
#include "ps/store.h"
#include "worker/loss.h"

#define NB 7  /* batch rows */
#define ND 6  /* dim */
#define NS 40 /* negatives */
#define MAXP 32
#define NK 3 /* shards */

typedef struct {
    uint32_t pos_off[NB + 1];
    uint64_t pos_key[MAXP];
    float pos_w[MAXP], pos_logE[MAXP], Vpos[MAXP * ND];
    uint64_t neg_key[NS];
    float neg_logE[NS], Vneg[NS * ND];
    float U[NB * ND];
} prob_t;

/* Rows with 0..3 positives (row 2 has none), negatives from a small key range so keys repeat and hit
 * positives; row 5's only positive is key 0, which shard 0 also draws every time (see split). */
static void make(prob_t *p, uint64_t seed)
{
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 7);
    memset(p, 0, sizeof *p);
    uint32_t off = 0;
    for (int b = 0; b < NB; b++) {
        p->pos_off[b] = off;
        int n = b == 2 ? 0 : b == 5 ? 1 : 1 + (int)psrec_rng_below(&r, 3);
        double tot = 0;
        for (int k = 0; k < n; k++) {
            p->pos_key[off + k] = b == 5 ? 0 : psrec_rng_below(&r, 30);
            p->pos_w[off + k] = (float)(0.2 + psrec_rng_uniform(&r));
            tot += p->pos_w[off + k];
        }
        for (int k = 0; k < n; k++)
            p->pos_w[off + k] = (float)(p->pos_w[off + k] / tot);
        off += (uint32_t)n;
    }
    p->pos_off[NB] = off;
    for (uint32_t k = 0; k < off; k++)
        p->pos_logE[k] = (float)(psrec_rng_uniform(&r) - 0.5);
    for (int j = 0; j < NS; j++) {
        p->neg_key[j] = psrec_rng_below(&r, 30);
        p->neg_logE[j] = (float)(psrec_rng_uniform(&r) - 0.5);
    }
    for (int i = 0; i < NB * ND; i++)
        p->U[i] = (float)psrec_rng_normal(&r);
    for (uint32_t i = 0; i < off * ND; i++)
        p->Vpos[i] = (float)(0.8 * psrec_rng_normal(&r));
    for (int i = 0; i < NS * ND; i++)
        p->Vneg[i] = (float)(0.8 * psrec_rng_normal(&r));
    /* the same key's rows must agree wherever they appear */
    for (int j = 0; j < NS; j++)
        for (int i = 0; i < j; i++)
            if (p->neg_key[i] == p->neg_key[j]) memcpy(p->Vneg + j * ND, p->Vneg + i * ND, ND * sizeof(float));
}

static psrec_loss_in_t as_in(prob_t *p, int with_neg)
{
    return (psrec_loss_in_t){.B = NB,
                             .d = ND,
                             .U = p->U,
                             .pos_off = p->pos_off,
                             .pos_key = p->pos_key,
                             .pos_w = p->pos_w,
                             .pos_logE = p->pos_logE,
                             .Vpos = p->Vpos,
                             .S = with_neg ? NS : 0,
                             .neg_key = p->neg_key,
                             .neg_logE = p->neg_logE,
                             .Vneg = p->Vneg};
}

/* The shard of negative j: key % NK (shard 2 gets keys 2, 5, ...); `empty` moves shard 1's keys to 0. */
static int shard_of(uint64_t key, int empty)
{
    int s = (int)(key % NK);
    return empty && s == 1 ? 0 : s;
}

typedef struct {
    double loss;
    float dU[NB * ND], dVpos[MAXP * ND];
    uint64_t gkeys[NS + MAXP];
    float gv[(NS + MAXP) * ND];
    size_t ng;
} split_out_t;

/* The server-side path: every shard scores its negatives, the worker combines, each shard computes the
 * negatives' gradients summed per key with the worker's positive rows it owns (as NEG_APPLY carries
 * them, one row per distinct key); the rows of all shards gathered. */
static void run_split(prob_t *p, int empty, split_out_t *o)
{
    psrec_negpart_t *part[NK];
    float lse[NK * NB], ybar[NK * NB * ND], w[NK * NB];
    psrec_negbatch_t nb = {.B = NB, .d = ND, .U = p->U, .pos_off = p->pos_off, .pos_key = p->pos_key};
    char err[PSREC_ERRBUF];
    for (int k = 0; k < NK; k++) {
        uint64_t keys[NS];
        float logE[NS], V[NS * ND];
        int n = 0;
        for (int j = 0; j < NS; j++) {
            if (shard_of(p->neg_key[j], empty) != k) continue;
            keys[n] = p->neg_key[j];
            logE[n] = p->neg_logE[j];
            memcpy(V + n * ND, p->Vneg + j * ND, ND * sizeof(float));
            n++;
        }
        assert_int_equal(psrec_negpart_new(&part[k]), PSREC_OK);
        assert_int_equal(
            psrec_negpart_score_rows(part[k], &nb, n, keys, logE, V, lse + k * NB, ybar + k * NB * ND, err), PSREC_OK);
    }
    psrec_loss_ws_t *ws = NULL;
    assert_int_equal(psrec_loss_ws_new(&ws), PSREC_OK);
    psrec_loss_in_t in = as_in(p, 0);
    psrec_loss_out_t out = {.dU = o->dU, .dVpos = o->dVpos};
    assert_int_equal(psrec_loss_softmax_parts(&in, NK, lse, ybar, ws, &o->loss, &out, w), PSREC_OK);
    o->ng = 0;
    for (int k = 0; k < NK; k++) {
        /* the worker's gradient rows of shard k's positive keys, summed per key (its groups do that) */
        uint64_t ek[MAXP];
        float eg[MAXP * ND];
        size_t ne = 0;
        for (uint32_t q = 0; q < p->pos_off[NB]; q++) {
            if (shard_of(p->pos_key[q], empty) != k) continue;
            size_t e = 0;
            while (e < ne && ek[e] != p->pos_key[q])
                e++;
            if (e == ne) {
                ek[ne] = p->pos_key[q];
                memset(eg + ne * ND, 0, ND * sizeof(float));
                ne++;
            }
            for (int t = 0; t < ND; t++)
                eg[e * ND + t] += o->dVpos[q * ND + t];
        }
        const uint64_t *gk;
        const float *gv;
        size_t n;
        assert_int_equal(psrec_negpart_gradients(part[k], w + k * NB, ek, eg, ne, &gk, &gv, &n, err), PSREC_OK);
        for (size_t i = 0; i < n; i++) {
            if (i > 0) assert_true(gk[i] > gk[i - 1]); /* summed per key: unique, sorted */
            o->gkeys[o->ng] = gk[i];
            memcpy(o->gv + o->ng * ND, gv + i * ND, ND * sizeof(float));
            o->ng++;
        }
        psrec_negpart_destroy(&part[k]);
        assert_null(part[k]);
    }
    psrec_loss_ws_destroy(&ws);
}

static void close_enough(float a, float b)
{
    double tol = 2e-5 * (1.0 + fabs((double)b));
    if (fabs((double)a - b) > tol) fail_msg("%.9g vs %.9g", (double)a, (double)b);
}

static void check_same(uint64_t seed, int empty)
{
    prob_t p;
    make(&p, seed);
    psrec_loss_ws_t *ws = NULL;
    assert_int_equal(psrec_loss_ws_new(&ws), PSREC_OK);
    float dU[NB * ND], dVpos[MAXP * ND], dVneg[NS * ND];
    double ref = NAN;
    psrec_loss_in_t in = as_in(&p, 1);
    psrec_loss_out_t out = {dU, dVpos, dVneg};
    assert_int_equal(psrec_loss_compute(PSREC_LOSS_SOFTMAX, &in, ws, &ref, &out), PSREC_OK);
    psrec_loss_ws_destroy(&ws);

    split_out_t o;
    run_split(&p, empty, &o);
    assert_true(fabs(o.loss - ref) <= 1e-5 * (1 + fabs(ref)));
    for (int i = 0; i < NB * ND; i++)
        close_enough(o.dU[i], dU[i]);
    for (uint32_t i = 0; i < p.pos_off[NB] * ND; i++)
        close_enough(o.dVpos[i], dVpos[i]);
    /* the worker-side update of each key (its negative and positive gradients summed, as the worker's
     * group pushes it), against the shards' one row per key */
    size_t matched = 0;
    for (size_t g = 0; g < o.ng; g++) {
        float sum[ND] = {0};
        for (int j = 0; j < NS; j++)
            if (p.neg_key[j] == o.gkeys[g]) {
                matched++;
                for (int t = 0; t < ND; t++)
                    sum[t] += dVneg[j * ND + t];
            }
        for (uint32_t q = 0; q < p.pos_off[NB]; q++)
            if (p.pos_key[q] == o.gkeys[g]) {
                matched++;
                for (int t = 0; t < ND; t++)
                    sum[t] += dVpos[q * ND + t];
            }
        for (int t = 0; t < ND; t++)
            close_enough(o.gv[g * ND + t], sum[t]);
    }
    assert_int_equal(matched, NS + p.pos_off[NB]); /* every row is in exactly one shard's update */
    for (size_t g = 1; g < o.ng; g++)              /* one update per key: no key in two shards' rows */
        for (size_t h = 0; h < g; h++)
            assert_true(o.gkeys[h] != o.gkeys[g]);
}

static void test_split_equals_worker_side(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++)
        check_same(seed, 0);
}

static void test_split_with_an_empty_shard(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 5; seed++)
        check_same(seed, 1);
}

/* Row 5's only positive is key 0; a shard whose every negative is key 0 masks the whole row. */
static void test_shard_fully_masked_row(void **state)
{
    (void)state;
    prob_t p;
    make(&p, 3);
    psrec_negbatch_t nb = {.B = NB, .d = ND, .U = p.U, .pos_off = p.pos_off, .pos_key = p.pos_key};
    uint64_t keys[3] = {0, 0, 0};
    float V[3 * ND], lse[NB], ybar[NB * ND];
    for (int i = 0; i < 3 * ND; i++)
        V[i] = 0.1f * (float)i;
    psrec_negpart_t *part = NULL;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_negpart_new(&part), PSREC_OK);
    assert_int_equal(psrec_negpart_score_rows(part, &nb, 3, keys, NULL, V, lse, ybar, err), PSREC_OK);
    assert_true(isinf(lse[5]) && lse[5] < 0);
    assert_true(isinf(lse[2]) && lse[2] < 0); /* no positives */
    for (int t = 0; t < ND; t++)
        assert_true(ybar[5 * ND + t] == 0.0f);
    assert_true(isfinite(lse[0]));
    /* weights of the masked rows do not move the rows; a non-finite weight is refused */
    float w[NB] = {0};
    w[5] = 1.0f;
    const uint64_t *gk;
    const float *gv;
    size_t n;
    assert_int_equal(psrec_negpart_gradients(part, w, NULL, NULL, 0, &gk, &gv, &n, err), PSREC_OK);
    assert_int_equal(n, 1);
    for (int t = 0; t < ND; t++)
        assert_true(gv[t] == 0.0f);
    /* applied once: a second call has nothing left */
    assert_int_equal(psrec_negpart_gradients(part, w, NULL, NULL, 0, &gk, &gv, &n, err), PSREC_OK);
    assert_int_equal(n, 0);
    assert_int_equal(psrec_negpart_score_rows(part, &nb, 3, keys, NULL, V, lse, ybar, err), PSREC_OK);
    w[0] = NAN;
    assert_int_equal(psrec_negpart_gradients(part, w, NULL, NULL, 0, &gk, &gv, &n, err), PSREC_EINVAL);
    psrec_negpart_destroy(&part);
}

/* Central differences of the split loss in U (float32 throughout, so a loose tolerance). */
static void test_split_finite_differences(void **state)
{
    (void)state;
    prob_t p;
    make(&p, 11);
    split_out_t o;
    run_split(&p, 0, &o);
    const float h = 1e-2f;
    for (int i = 0; i < NB * ND; i++) {
        float keep = p.U[i];
        split_out_t a, b;
        p.U[i] = keep + h;
        run_split(&p, 0, &a);
        p.U[i] = keep - h;
        run_split(&p, 0, &b);
        p.U[i] = keep;
        double fd = (a.loss - b.loss) / (2 * h);
        if (fabs(fd - o.dU[i]) > 2e-3 * (1 + fabs(fd))) fail_msg("dU[%d]: %g vs finite difference %g", i, o.dU[i], fd);
    }
}

/* psrec_store_sample draws every row with probability 1/rows; draw_score's log E is log(NS / rows). */
static void test_store_sample_uniform(void **state)
{
    (void)state;
    psrec_store_t *st = NULL;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_store_new(&st, 5, 8), PSREC_OK);
    psrec_table_conf_t tc = {
        .dim = ND, .opt = {.kind = PSREC_OPT_SGD, .lr = 1.0f}, .init = PSREC_INIT_NORMAL, .init_scale = 0.1f};
    assert_int_equal(psrec_store_add_table(st, 0, &tc, err), PSREC_OK);
    psrec_rng_t r;
    psrec_rng_seed(&r, 9, 1);
    uint64_t keys[4096], rows = 99;
    assert_int_equal(psrec_store_sample(st, 0, &r, 10, keys, &rows), PSREC_OK); /* empty table */
    assert_int_equal(rows, 0);
    assert_int_equal(psrec_store_sample(st, 3, &r, 10, keys, &rows), PSREC_ENOTFOUND);
    enum { N = 100 };
    uint64_t ids[N];
    float tmp[N * ND];
    for (int i = 0; i < N; i++)
        ids[i] = 1000 + (uint64_t)i * 7919;
    assert_int_equal(psrec_store_pull(st, 0, ids, N, tmp), PSREC_OK);
    long count[N] = {0};
    const int draws = 200000;
    for (int done = 0; done < draws; done += 4096) {
        size_t n = draws - done < 4096 ? (size_t)(draws - done) : 4096;
        assert_int_equal(psrec_store_sample(st, 0, &r, n, keys, &rows), PSREC_OK);
        assert_int_equal(rows, N);
        for (size_t k = 0; k < n; k++) {
            assert_true(keys[k] >= 1000 && (keys[k] - 1000) % 7919 == 0);
            count[(keys[k] - 1000) / 7919]++;
        }
    }
    double chi = 0, e = (double)draws / N;
    for (int i = 0; i < N; i++)
        chi += (count[i] - e) * (count[i] - e) / e;
    assert_true(chi < 160); /* 99 degrees of freedom: P(chi2 > 160) < 1e-4 */
    /* draw_score: NS draws from N rows, log E = log(NS / N), ybar a convex mix of the drawn rows */
    prob_t p;
    make(&p, 4);
    psrec_negbatch_t nb = {.B = NB, .d = ND, .U = p.U, .pos_off = p.pos_off, .pos_key = p.pos_key};
    float lse[NB], ybar[NB * ND], logE = 0;
    psrec_negpart_t *part = NULL;
    psrec_negdraw_t dr50 = {.S = 50};
    assert_int_equal(psrec_negpart_new(&part), PSREC_OK);
    assert_int_equal(psrec_negpart_draw_score(part, st, 0, &r, &nb, &dr50, lse, ybar, &logE, err), PSREC_OK);
    assert_float_equal(logE, log(50.0 / N), 1e-6);
    assert_true(isfinite(lse[0]) && isinf(lse[2]));
    int Bp, dp;
    psrec_negpart_shape(part, &Bp, &dp);
    assert_int_equal(Bp, NB);
    assert_int_equal(dp, ND);
    /* hard negatives mined from a pool of 60 rows: 10 kept, every one a row of the table; the log rate
     * is the pool's; the same seed mines the same negatives (the same scores) */
    psrec_negdraw_t hard = {.S = 10, .pool = 60, .temperature = 0.5};
    float lse2[NB], ybar2[NB * ND];
    psrec_rng_t r1, r2;
    psrec_rng_seed(&r1, 77, 3);
    psrec_rng_seed(&r2, 77, 3);
    assert_int_equal(psrec_negpart_draw_score(part, st, 0, &r1, &nb, &hard, lse, ybar, &logE, err), PSREC_OK);
    assert_float_equal(logE, log(60.0 / N), 1e-6);
    assert_int_equal(psrec_negpart_draw_score(part, st, 0, &r2, &nb, &hard, lse2, ybar2, &logE, err), PSREC_OK);
    assert_memory_equal(lse, lse2, sizeof lse);
    assert_memory_equal(ybar, ybar2, sizeof ybar);
    assert_true(isfinite(lse[0]) && isinf(lse[2]));
    const uint64_t *gk;
    const float *gv;
    size_t gn;
    float w1[NB];
    for (int i = 0; i < NB; i++)
        w1[i] = 1.0f;
    assert_int_equal(psrec_negpart_gradients(part, w1, NULL, NULL, 0, &gk, &gv, &gn, err), PSREC_OK);
    assert_true(gn >= 1 && gn <= 10);
    for (size_t i = 0; i < gn; i++)
        assert_true(gk[i] >= 1000 && (gk[i] - 1000) % 7919 == 0 && (gk[i] - 1000) / 7919 < N);
    hard.temperature = 0;
    assert_int_equal(psrec_negpart_draw_score(part, st, 0, &r1, &nb, &hard, lse, ybar, &logE, err), PSREC_EINVAL);
    nb.d = ND + 1;
    assert_int_equal(psrec_negpart_draw_score(part, st, 0, &r, &nb, &dr50, lse, ybar, &logE, err), PSREC_EPROTO);
    psrec_negpart_destroy(&part);
    psrec_store_destroy(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_equals_worker_side), cmocka_unit_test(test_split_with_an_empty_shard),
        cmocka_unit_test(test_shard_fully_masked_row),   cmocka_unit_test(test_split_finite_differences),
        cmocka_unit_test(test_store_sample_uniform),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_eval.c: worker/eval against a naive reference (full sort per query, pairwise FoldAUC, all in
 * double) on random data, a hand-computed tiny case, top-K padding/exclusion, thread-count invariance
 * and invalid input. Embeddings are quantised so that every float score is exact: the GEMM and the
 * double reference then see the same numbers, and equal scores (ties) really occur. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "worker/eval.h"

/* ---- random problem ---- */

typedef struct {
    size_t Q, N;
    int d;
    float *U, *V;
    uint32_t *rel_off, *rel_idx, *excl_off, *excl_idx, *home_off, *home_cat;
    int32_t *cat;
    const uint32_t *full_idx; /* optional Q x N ranking (psrec_topk, k = N): the reference uses it */
    const float *full_sc;
} prob_t;

/* levels: embedding entries are integers in [-levels, levels] divided by 64 (exact float dots).
 * big: relevant sets up to 39 items and home sets up to 13 categories (eval's per-item FoldAUC path
 * beyond 16 relevant items / 8 home categories; 24 item categories), else up to 11 and 3 (its
 * vector path; 12 item categories). */
static void prob_make_ex(prob_t *p, size_t Q, size_t N, int d, int levels, uint64_t seed, int big)
{
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 0);
    p->Q = Q;
    p->N = N;
    p->d = d;
    p->U = malloc(Q * d * sizeof(float));
    p->V = malloc(N * d * sizeof(float));
    for (size_t i = 0; i < Q * d; i++)
        p->U[i] = (float)((int)psrec_rng_below(&r, 2 * levels + 1) - levels) / 64.0f;
    for (size_t i = 0; i < N * d; i++)
        p->V[i] = (float)((int)psrec_rng_below(&r, 2 * levels + 1) - levels) / 64.0f;
    p->cat = malloc(N * sizeof(int32_t));
    for (size_t j = 0; j < N; j++)
        p->cat[j] = psrec_rng_below(&r, 20) == 0 ? -1 : (int32_t)psrec_rng_below(&r, big ? 24 : 12);
    p->full_idx = NULL;
    p->full_sc = NULL;
    p->rel_off = malloc((Q + 1) * sizeof(uint32_t));
    p->excl_off = malloc((Q + 1) * sizeof(uint32_t));
    p->home_off = malloc((Q + 1) * sizeof(uint32_t));
    p->rel_idx = malloc(Q * 40 * sizeof(uint32_t));
    p->excl_idx = malloc(Q * 40 * sizeof(uint32_t));
    p->home_cat = malloc(Q * 16 * sizeof(uint32_t));
    p->rel_off[0] = p->excl_off[0] = p->home_off[0] = 0;
    for (size_t q = 0; q < Q; q++) {
        uint32_t ne = (uint32_t)psrec_rng_below(&r, 40);
        uint32_t *ex = p->excl_idx + p->excl_off[q];
        for (uint32_t t = 0; t < ne; t++) /* duplicates happen */
            ex[t] = t > 0 && psrec_rng_below(&r, 8) == 0 ? ex[t - 1] : (uint32_t)psrec_rng_below(&r, N);
        p->excl_off[q + 1] = p->excl_off[q] + ne;
        uint32_t nr = (uint32_t)psrec_rng_below(&r, big ? 40 : 12); /* 0 => skipped query */
        uint32_t *rl = p->rel_idx + p->rel_off[q];
        for (uint32_t t = 0; t < nr; t++) {
            uint64_t c = psrec_rng_below(&r, 10);
            if (c == 0 && ne > 0)
                rl[t] = ex[psrec_rng_below(&r, ne)]; /* excluded: dropped */
            else if (c == 1 && t > 0)
                rl[t] = rl[t - 1]; /* duplicate */
            else
                rl[t] = (uint32_t)psrec_rng_below(&r, N);
        }
        p->rel_off[q + 1] = p->rel_off[q] + nr;
        uint32_t nh = (uint32_t)psrec_rng_below(&r, big ? 14 : 4); /* 0 => no folding */
        uint32_t *hm = p->home_cat + p->home_off[q];
        for (uint32_t t = 0; t < nh; t++)
            hm[t] = psrec_rng_below(&r, 10) == 0 ? 999u : (uint32_t)psrec_rng_below(&r, big ? 26 : 12);
        p->home_off[q + 1] = p->home_off[q] + nh;
    }
}

static void prob_make(prob_t *p, size_t Q, size_t N, int d, int levels, uint64_t seed)
{
    prob_make_ex(p, Q, N, d, levels, seed, 0);
}

static void prob_free(prob_t *p)
{
    free(p->U);
    free(p->V);
    free(p->cat);
    free(p->rel_off);
    free(p->rel_idx);
    free(p->excl_off);
    free(p->excl_idx);
    free(p->home_off);
    free(p->home_cat);
}

static psrec_eval_in_t prob_in(const prob_t *p, int k, int threads, int fold)
{
    psrec_eval_in_t in = {
        .Q = p->Q,
        .N = p->N,
        .d = p->d,
        .U = p->U,
        .V = p->V,
        .rel_off = p->rel_off,
        .rel_idx = p->rel_idx,
        .excl_off = p->excl_off,
        .excl_idx = p->excl_idx,
        .item_cat = fold ? p->cat : NULL,
        .home_off = fold ? p->home_off : NULL,
        .home_cat = fold ? p->home_cat : NULL,
        .k = k,
        .threads = threads,
    };
    return in;
}

/* ---- naive reference ---- */

typedef struct {
    double s;
    uint32_t j;
} rs_t;

static int rs_cmp(const void *a, const void *b)
{
    const rs_t *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

static double dot(const float *a, const float *b, int d)
{
    double s = 0;
    for (int t = 0; t < d; t++)
        s += (double)a[t] * (double)b[t];
    return s;
}

/* Sorted list (best first, ties to lower index) of eligible items of query q; returns its length. */
static size_t ref_rank(const prob_t *p, size_t q, const char *excl, rs_t *all)
{
    size_t n = 0;
    if (p->full_idx) {
        for (; n < p->N && p->full_idx[q * p->N + n] != UINT32_MAX; n++)
            all[n] = (rs_t){p->full_sc[q * p->N + n], p->full_idx[q * p->N + n]};
        return n;
    }
    for (uint32_t j = 0; j < p->N; j++)
        if (!excl[j]) all[n++] = (rs_t){dot(p->U + q * p->d, p->V + (size_t)j * p->d, p->d), j};
    qsort(all, n, sizeof *all, rs_cmp);
    return n;
}

static int ref_out(const prob_t *p, size_t q, uint32_t j)
{
    if (p->cat[j] < 0) return 0;
    for (uint32_t t = p->home_off[q]; t < p->home_off[q + 1]; t++)
        if ((int64_t)p->home_cat[t] == p->cat[j]) return 0;
    return 1;
}

static psrec_eval_result_t ref_eval(const prob_t *p, int k, int fold)
{
    psrec_eval_result_t R;
    memset(&R, 0, sizeof R);
    char *excl = malloc(p->N), *rel = malloc(p->N);
    rs_t *all = malloc(p->N * sizeof *all);
    double *sc = malloc(p->N * sizeof *sc);
    double s_rec = 0, s_ndcg = 0, s_rr = 0, s_fold = 0, s_ch = 0, s_auc = 0, s_for = 0;
    size_t n_fold = 0, n_auc = 0, n_for = 0;
    for (size_t q = 0; q < p->Q; q++) {
        memset(excl, 0, p->N);
        memset(rel, 0, p->N);
        for (uint32_t t = p->excl_off[q]; t < p->excl_off[q + 1]; t++)
            excl[p->excl_idx[t]] = 1;
        size_t nrel = 0;
        for (uint32_t t = p->rel_off[q]; t < p->rel_off[q + 1]; t++) {
            uint32_t j = p->rel_idx[t];
            if (!excl[j] && !rel[j]) {
                rel[j] = 1;
                nrel++;
            }
        }
        if (nrel == 0) {
            R.n_skipped++;
            continue;
        }
        R.n_queries++;
        size_t ne = ref_rank(p, q, excl, all);
        size_t top = ne < (size_t)k ? ne : (size_t)k;
        double hits = 0, dcg = 0, idcg = 0;
        for (size_t r = 0; r < top; r++)
            if (rel[all[r].j]) {
                hits++;
                dcg += 1.0 / log2((double)r + 2);
            }
        for (size_t r = 0; r < nrel && r < (size_t)k; r++)
            idcg += 1.0 / log2((double)r + 2);
        size_t first = 0;
        while (!rel[all[first].j])
            first++;
        s_rec += hits / nrel;
        s_ndcg += dcg / idcg;
        s_rr += 1.0 / (double)(first + 1);
        if (!fold || p->home_off[q + 1] == p->home_off[q]) continue;
        n_fold++;
        double nout_top = 0;
        int32_t fc[4096];
        size_t nfc = 0;
        for (size_t r = 0; r < top; r++)
            if (ref_out(p, q, all[r].j)) {
                nout_top++;
                fc[nfc++] = p->cat[all[r].j];
            }
        s_fold += nout_top / (double)top;
        double nout = 0;
        for (size_t r = 0; r < ne; r++)
            nout += ref_out(p, q, all[r].j);
        s_ch += nout / (double)ne;
        if (nfc > 0) {
            size_t best = 0;
            for (size_t a = 0; a < nfc; a++) {
                size_t c = 0;
                for (size_t b = 0; b < nfc; b++)
                    c += fc[a] == fc[b];
                if (c > best) best = c;
            }
            n_for++;
            s_for += (double)best / (double)nfc;
        }
        if (nout > 0) {
            for (size_t r = 0; r < ne; r++)
                sc[all[r].j] = all[r].s;
            double relsc[64];
            size_t m = 0;
            for (uint32_t jr = 0; jr < p->N; jr++)
                if (rel[jr]) relsc[m++] = sc[jr];
            double num = 0;
            for (size_t a = 0; a < ne; a++) {
                if (!ref_out(p, q, all[a].j)) continue;
                for (size_t b = 0; b < m; b++)
                    num += all[a].s > relsc[b] ? 1.0 : all[a].s == relsc[b] ? 0.5 : 0.0;
            }
            n_auc++;
            s_auc += num / (nout * (double)nrel);
        }
    }
    double n = (double)R.n_queries;
    R.recall = s_rec / n;
    R.ndcg = s_ndcg / n;
    R.mrr = s_rr / n;
    R.has_fold = fold;
    if (fold) {
        R.fold = s_fold / n_fold;
        R.chance = s_ch / n_fold;
        R.fold_ratio = R.fold / R.chance;
        R.fold_auc = n_auc ? s_auc / n_auc : NAN;
        R.foreign_top_share = n_for ? s_for / n_for : NAN;
    }
    free(excl);
    free(rel);
    free(all);
    free(sc);
    return R;
}

static void near(double got, double want, const char *what)
{
    if (isnan(want) && isnan(got)) return;
    if (!(fabs(got - want) <= 1e-12 * (1 + fabs(want)))) {
        print_error("%s: got %.17g want %.17g\n", what, got, want);
        fail();
    }
}

static void same_bits(double a, double b, const char *what)
{
    if (memcmp(&a, &b, sizeof a) != 0) {
        print_error("%s: %.17g vs %.17g differ\n", what, a, b);
        fail();
    }
}

static void check_result(const psrec_eval_result_t *g, const psrec_eval_result_t *w)
{
    assert_int_equal(g->n_queries, w->n_queries);
    assert_int_equal(g->n_skipped, w->n_skipped);
    assert_int_equal(g->has_fold, w->has_fold);
    near(g->recall, w->recall, "recall");
    near(g->ndcg, w->ndcg, "ndcg");
    near(g->mrr, w->mrr, "mrr");
    if (w->has_fold) {
        near(g->fold, w->fold, "fold");
        near(g->chance, w->chance, "chance");
        near(g->fold_ratio, w->fold_ratio, "fold_ratio");
        near(g->fold_auc, w->fold_auc, "fold_auc");
        near(g->foreign_top_share, w->foreign_top_share, "foreign_top_share");
    }
}

static void check_identical(const psrec_eval_result_t *a, const psrec_eval_result_t *b)
{
    assert_int_equal(a->n_queries, b->n_queries);
    assert_int_equal(a->n_skipped, b->n_skipped);
    same_bits(a->recall, b->recall, "recall");
    same_bits(a->ndcg, b->ndcg, "ndcg");
    same_bits(a->mrr, b->mrr, "mrr");
    same_bits(a->fold, b->fold, "fold");
    same_bits(a->chance, b->chance, "chance");
    same_bits(a->fold_ratio, b->fold_ratio, "fold_ratio");
    same_bits(a->fold_auc, b->fold_auc, "fold_auc");
    same_bits(a->foreign_top_share, b->foreign_top_share, "foreign_top_share");
}

static void run_vs_ref(size_t Q, int levels, uint64_t seed)
{
    prob_t p;
    prob_make(&p, Q, 3000, 8, levels, seed);
    const int ks[] = {1, 10, 100, 2995};
    for (int f = 0; f < 2; f++)
        for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
            psrec_eval_in_t in = prob_in(&p, ks[t], 1, f);
            psrec_eval_result_t got, want = ref_eval(&p, ks[t], f);
            assert_int_equal(psrec_eval_run(&in, &got), PSREC_OK);
            check_result(&got, &want);
        }
    prob_free(&p);
}

/* Distinct-ish scores (grid 2^-12, ties rare but near-ties inside the error windows). */
static void test_random_vs_reference(void **state)
{
    (void)state;
    run_vs_ref(50, 1000, 11);
}

/* Embeddings in {-2..2}/64: many exactly equal scores, exercising every tie rule. */
static void test_ties_vs_reference(void **state)
{
    (void)state;
    run_vs_ref(50, 2, 12);
}

/* Large relevant and home sets (eval's per-item FoldAUC path), with and without ties. */
static void test_big_sets_vs_reference(void **state)
{
    (void)state;
    for (int levels = 2; levels <= 1000; levels += 998) {
        prob_t p;
        prob_make_ex(&p, 60, 3000, 8, levels, 41 + levels, 1);
        size_t big_rel = 0, big_home = 0;
        for (size_t q = 0; q < p.Q; q++) {
            big_rel += p.rel_off[q + 1] - p.rel_off[q] > 20;
            char seen[1000] = {0};
            size_t u = 0;
            for (uint32_t t = p.home_off[q]; t < p.home_off[q + 1]; t++)
                if (!seen[p.home_cat[t]]) {
                    seen[p.home_cat[t]] = 1;
                    u++;
                }
            big_home += u > 8;
        }
        assert_true(big_rel > 5 && big_home > 3);
        for (int k = 10; k <= 100; k *= 10) {
            psrec_eval_in_t in = prob_in(&p, k, 2, 1);
            psrec_eval_result_t got, want = ref_eval(&p, k, 1);
            assert_int_equal(psrec_eval_run(&in, &got), PSREC_OK);
            check_result(&got, &want);
        }
        prob_free(&p);
    }
}

/* Several blocks (one partial): threads 1, 2, 3 give bit-identical results, equal to the reference. */
static void test_threads_identical(void **state)
{
    (void)state;
    prob_t p;
    prob_make(&p, 150, 3000, 8, 3, 13);
    for (int k = 1; k <= 100; k *= 10) {
        psrec_eval_in_t in = prob_in(&p, k, 1, 1);
        psrec_eval_result_t r1, r2, r3, want = ref_eval(&p, k, 1);
        assert_int_equal(psrec_eval_run(&in, &r1), PSREC_OK);
        in.threads = 2;
        assert_int_equal(psrec_eval_run(&in, &r2), PSREC_OK);
        in.threads = 3;
        assert_int_equal(psrec_eval_run(&in, &r3), PSREC_OK);
        check_identical(&r1, &r2);
        check_identical(&r1, &r3);
        check_result(&r1, &want);
    }
    prob_free(&p);
}

/* Hand-computed case (values worked out on paper, see comments). d = 2, K = 3.
 * Items: v0=(1,0) cat0, v1=(0,1) cat1, v2=(2,1) cat1, v3=(2,0) cat2, v4=(0,0) cat unknown.
 * q0=(1,0): scores 1,0,2,2,0; excl {3}; rel {0,1,3} -> {0,1}; home {0}.
 *   ranking of eligible: 2(2) 0(1) 1(0) 4(0); top3 = 2,0,1.
 *   recall 2/2; DCG = 1/log2 3 + 1/log2 4, IDCG = 1 + 1/log2 3; best rel 0 is beaten by 2: rank 2.
 *   out-of-home eligible: 1, 2 -> Fold = 2/3 (2 and 1), Chance 2/4, foreign: cats {1,1} -> 1.
 *   AUC pairs (out, rel): (1:0 vs 0:1) 0, (1:0 vs 1:0) 1/2, (2:2 vs 1) 1, (2:2 vs 0) 1 -> 2.5/4.
 * q1=(0,1): scores 0,1,1,0,0; rel {4}; home {2}.
 *   top3 = 1,2,0 (equal scores 1: lower index first; 0 before 3,4); recall 0, ndcg 0.
 *   best rel 4 (score 0) is beaten by 1,2 (higher) and by 0,3 (equal, lower index): rank 5.
 *   out-of-home: 0 (cat0), 1, 2 (cat1); Fold 3/3, Chance 3/5, foreign: cats {1,1,0} -> 2/3.
 *   AUC: 0 ties 4 (1/2), 1 and 2 beat it -> 2.5/3.
 * q2=(1,1): rel {2} but 2 is excluded -> skipped. */
static const float tiny_V[] = {1, 0, 0, 1, 2, 1, 2, 0, 0, 0};
static const float tiny_U[] = {1, 0, 0, 1, 1, 1};
static const int32_t tiny_cat[] = {0, 1, 1, 2, -1};
static const uint32_t tiny_rel_off[] = {0, 3, 4, 5}, tiny_rel[] = {0, 1, 3, 4, 2};
static const uint32_t tiny_excl_off[] = {0, 1, 1, 2}, tiny_excl[] = {3, 2};
static const uint32_t tiny_home_off[] = {0, 1, 2, 3}, tiny_home[] = {0, 2, 1};

static void test_hand_case(void **state)
{
    (void)state;
    psrec_eval_in_t in = {
        .Q = 3,
        .N = 5,
        .d = 2,
        .U = tiny_U,
        .V = tiny_V,
        .rel_off = tiny_rel_off,
        .rel_idx = tiny_rel,
        .excl_off = tiny_excl_off,
        .excl_idx = tiny_excl,
        .item_cat = tiny_cat,
        .home_off = tiny_home_off,
        .home_cat = tiny_home,
        .k = 3,
        .threads = 1,
    };
    psrec_eval_result_t r;
    assert_int_equal(psrec_eval_run(&in, &r), PSREC_OK);
    assert_int_equal(r.n_queries, 2);
    assert_int_equal(r.n_skipped, 1);
    assert_int_equal(r.has_fold, 1);
    const double l3 = 1.0 / log2(3.0);
    near(r.recall, (1.0 + 0.0) / 2, "recall");
    near(r.ndcg, ((l3 + 0.5) / (1 + l3) + 0.0) / 2, "ndcg");
    near(r.mrr, (1.0 / 2 + 1.0 / 5) / 2, "mrr");
    near(r.fold, (2.0 / 3 + 1.0) / 2, "fold");
    near(r.chance, (2.0 / 4 + 3.0 / 5) / 2, "chance");
    near(r.fold_ratio, ((2.0 / 3 + 1.0) / 2) / ((2.0 / 4 + 3.0 / 5) / 2), "fold_ratio");
    near(r.fold_auc, (2.5 / 4 + 2.5 / 3) / 2, "fold_auc");
    near(r.foreign_top_share, (1.0 + 2.0 / 3) / 2, "foreign_top_share");

    /* Without categories: no folding metrics, same ranking metrics. */
    in.item_cat = NULL;
    psrec_eval_result_t r2;
    assert_int_equal(psrec_eval_run(&in, &r2), PSREC_OK);
    assert_int_equal(r2.has_fold, 0);
    same_bits(r2.mrr, r.mrr, "mrr");

    /* K = 1: q0 top is item 2 (not relevant), q1 top is item 1; MRR unchanged. */
    in.k = 1;
    assert_int_equal(psrec_eval_run(&in, &r2), PSREC_OK);
    near(r2.recall, 0.0, "recall@1");
    near(r2.mrr, (1.0 / 2 + 1.0 / 5) / 2, "mrr@1");
}

static void test_topk_hand(void **state)
{
    (void)state;
    uint32_t idx[3 * 5];
    float sc[3 * 5];
    assert_int_equal(psrec_topk(tiny_U, 3, tiny_V, 5, 2, 5, tiny_excl_off, tiny_excl, idx, sc), PSREC_OK);
    const uint32_t want_idx[] = {2, 0, 1, 4, UINT32_MAX, 1, 2, 0, 3, 4, 3, 0, 1, 4, UINT32_MAX};
    const float want_sc[] = {2, 1, 0, 0, -INFINITY, 1, 1, 0, 0, 0, 2, 1, 1, 0, -INFINITY};
    for (int i = 0; i < 15; i++) {
        assert_int_equal(idx[i], want_idx[i]);
        assert_true(sc[i] == want_sc[i]);
    }
    /* No exclusions, k = 2. */
    assert_int_equal(psrec_topk(tiny_U, 3, tiny_V, 5, 2, 2, NULL, NULL, idx, sc), PSREC_OK);
    const uint32_t want2[] = {2, 3, 1, 2, 2, 3};
    for (int i = 0; i < 6; i++)
        assert_int_equal(idx[i], want2[i]);
}

/* Random top-k against the sorted reference, with and without padding (N - |excl| < k). */
static void test_topk_random(void **state)
{
    (void)state;
    const size_t Ns[] = {3000, 30};
    for (int c = 0; c < 2; c++) {
        prob_t p;
        prob_make(&p, 70, Ns[c], 8, c ? 1 : 500, 21 + c);
        const int k = c ? 25 : 50;
        uint32_t *idx = malloc(p.Q * k * sizeof *idx);
        float *sc = malloc(p.Q * k * sizeof *sc);
        char *excl = malloc(p.N);
        rs_t *all = malloc(p.N * sizeof *all);
        assert_int_equal(psrec_topk(p.U, p.Q, p.V, p.N, p.d, k, p.excl_off, p.excl_idx, idx, sc), PSREC_OK);
        size_t padded = 0;
        for (size_t q = 0; q < p.Q; q++) {
            memset(excl, 0, p.N);
            for (uint32_t t = p.excl_off[q]; t < p.excl_off[q + 1]; t++)
                excl[p.excl_idx[t]] = 1;
            size_t ne = ref_rank(&p, q, excl, all);
            for (int r = 0; r < k; r++) {
                if ((size_t)r < ne) {
                    assert_int_equal(idx[q * k + r], all[r].j);
                    assert_true(sc[q * k + r] == (float)all[r].s);
                } else {
                    padded++;
                    assert_int_equal(idx[q * k + r], UINT32_MAX);
                    assert_true(isinf(sc[q * k + r]) && sc[q * k + r] < 0);
                }
            }
        }
        if (c) assert_true(padded > 0);
        free(idx);
        free(sc);
        free(excl);
        free(all);
        prob_free(&p);
    }
}

/* Float rounding: u = (1,1), v0 = (2^24, 0), v1 = (2^24, 1). Exactly, s1 = 2^24 + 1 > s0 = 2^24,
 * but the float dot rounds s1 to 2^24 (ties to even) in any summation order, with or without FMA.
 * Ranking, MRR and FoldAUC use the float scores, so item 0 (lower index) ties and beats relevant
 * item 1: rank 2, and the out-of-home pair (0, 1) is a tie worth 1/2. */
static void test_float_scores_consistent(void **state)
{
    (void)state;
    const float U[] = {1, 1};
    const float V[] = {16777216.0f, 0, 16777216.0f, 1, 0, 0};
    const int32_t cat[] = {1, 0, 0};
    const uint32_t rel_off[] = {0, 1}, rel[] = {1}, home_off[] = {0, 1}, home[] = {0};
    psrec_eval_in_t in = {
        .Q = 1,
        .N = 3,
        .d = 2,
        .U = U,
        .V = V,
        .rel_off = rel_off,
        .rel_idx = rel,
        .item_cat = cat,
        .home_off = home_off,
        .home_cat = home,
        .k = 1,
        .threads = 1,
    };
    psrec_eval_result_t r;
    assert_int_equal(psrec_eval_run(&in, &r), PSREC_OK);
    near(r.mrr, 0.5, "mrr");
    near(r.recall, 0.0, "recall@1");
    near(r.fold, 1.0, "fold");
    near(r.fold_auc, 0.5, "fold_auc");
    uint32_t idx[3];
    float sc[3];
    assert_int_equal(psrec_topk(U, 1, V, 3, 2, 3, NULL, NULL, idx, sc), PSREC_OK);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_true(sc[0] == 16777216.0f && sc[1] == 16777216.0f);
}

/* Unquantised floats with many near-ties (items are clusters of copies perturbed by a few ulps, so
 * scores inside a cluster differ at rounding level). The reference ranks with the full ranking that
 * psrec_topk (k = N, same GEMM blocks) returns, and is checked to be sorted with the tie rule; eval
 * must agree exactly with it: MRR, FoldAUC etc. are counted on the GEMM's float scores. */
static void test_near_ties_float(void **state)
{
    (void)state;
    for (int big = 0; big < 2; big++) {
        prob_t p;
        prob_make_ex(&p, 130, 3000, 8, 3, 31 + big, big);
        psrec_rng_t r;
        psrec_rng_seed(&r, 31, 1);
        float base[40 * 8];
        for (int i = 0; i < 40 * 8; i++)
            base[i] = (float)psrec_rng_normal(&r);
        for (size_t j = 0; j < p.N; j++)
            for (int t = 0; t < 8; t++) {
                float x = base[(j % 40) * 8 + t];
                int ulps = (int)psrec_rng_below(&r, 7) - 3;
                for (; ulps > 0; ulps--)
                    x = nextafterf(x, INFINITY);
                for (; ulps < 0; ulps++)
                    x = nextafterf(x, -INFINITY);
                p.V[j * 8 + t] = x;
            }
        for (size_t i = 0; i < p.Q * 8; i++)
            p.U[i] = (float)psrec_rng_normal(&r);
        uint32_t *idx = malloc(p.Q * p.N * sizeof *idx);
        float *sc = malloc(p.Q * p.N * sizeof *sc);
        assert_int_equal(psrec_topk(p.U, p.Q, p.V, p.N, 8, (int)p.N, p.excl_off, p.excl_idx, idx, sc), PSREC_OK);
        size_t ties = 0;
        for (size_t q = 0; q < p.Q; q++)
            for (size_t n = 1; n < p.N && idx[q * p.N + n] != UINT32_MAX; n++) {
                float a = sc[q * p.N + n - 1], b = sc[q * p.N + n];
                assert_true(a > b || (a == b && idx[q * p.N + n - 1] < idx[q * p.N + n]));
                ties += a == b;
            }
        assert_true(ties > 100);
        p.full_idx = idx;
        p.full_sc = sc;
        for (int k = 1; k <= 100; k *= 10) {
            psrec_eval_in_t in = prob_in(&p, k, 2, 1);
            psrec_eval_result_t got, want = ref_eval(&p, k, 1);
            assert_int_equal(psrec_eval_run(&in, &got), PSREC_OK);
            check_result(&got, &want);
        }
        free(idx);
        free(sc);
        prob_free(&p);
    }
}

static void test_invalid(void **state)
{
    (void)state;
    psrec_eval_in_t in = {
        .Q = 3,
        .N = 5,
        .d = 2,
        .U = tiny_U,
        .V = tiny_V,
        .rel_off = tiny_rel_off,
        .rel_idx = tiny_rel,
        .excl_off = tiny_excl_off,
        .excl_idx = tiny_excl,
        .k = 3,
    };
    psrec_eval_result_t r;
    psrec_eval_in_t b = in;
    b.k = 0;
    assert_int_equal(psrec_eval_run(&b, &r), PSREC_EINVAL);
    b = in;
    b.k = -1;
    assert_int_equal(psrec_eval_run(&b, &r), PSREC_EINVAL);
    b = in;
    b.U = NULL;
    assert_int_equal(psrec_eval_run(&b, &r), PSREC_EINVAL);
    b = in;
    b.d = 0;
    assert_int_equal(psrec_eval_run(&b, &r), PSREC_EINVAL);
    b = in;
    b.rel_off = NULL;
    assert_int_equal(psrec_eval_run(&b, &r), PSREC_EINVAL);
    assert_int_equal(psrec_eval_run(NULL, &r), PSREC_EINVAL);
    assert_int_equal(psrec_eval_run(&in, NULL), PSREC_EINVAL);
    /* catalogue index out of range */
    const uint32_t bad_rel[] = {0, 1, 5, 4, 2};
    b = in;
    b.rel_idx = bad_rel;
    assert_int_equal(psrec_eval_run(&b, &r), PSREC_EINVAL);
    /* decreasing offsets */
    const uint32_t bad_off[] = {0, 3, 2, 5};
    b = in;
    b.excl_off = bad_off;
    assert_int_equal(psrec_eval_run(&b, &r), PSREC_EINVAL);
    /* non-finite embedding */
    float V2[10];
    memcpy(V2, tiny_V, sizeof V2);
    V2[7] = NAN;
    b = in;
    b.V = V2;
    assert_int_equal(psrec_eval_run(&b, &r), PSREC_EINVAL);
    assert_int_equal(psrec_eval_run(&in, &r), PSREC_OK);

    uint32_t idx[15];
    float sc[15];
    assert_int_equal(psrec_topk(tiny_U, 3, tiny_V, 5, 2, 0, NULL, NULL, idx, sc), PSREC_EINVAL);
    assert_int_equal(psrec_topk(NULL, 3, tiny_V, 5, 2, 5, NULL, NULL, idx, sc), PSREC_EINVAL);
    assert_int_equal(psrec_topk(tiny_U, 3, tiny_V, 5, 2, 5, NULL, NULL, NULL, sc), PSREC_EINVAL);
    const uint32_t bad_excl[] = {3, 7};
    assert_int_equal(psrec_topk(tiny_U, 3, tiny_V, 5, 2, 5, tiny_excl_off, bad_excl, idx, sc), PSREC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_case),
        cmocka_unit_test(test_topk_hand),
        cmocka_unit_test(test_random_vs_reference),
        cmocka_unit_test(test_ties_vs_reference),
        cmocka_unit_test(test_big_sets_vs_reference),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_topk_random),
        cmocka_unit_test(test_float_scores_consistent),
        cmocka_unit_test(test_near_ties_float),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* eval.c: full-ranking evaluation (ALGORITHMS.md §8), folding metrics (§4) and top-K retrieval.
 *
 * What it does. Queries are cut into fixed blocks of QB rows and the catalogue into fixed tiles of
 * TILE rows; one cblas_sgemm per (block, tile) gives the QB x TILE scores. Each query then scans its
 * row of the tile in chunks of 16 with branch-free vector passes (GCC vector types; scan_row also
 * has an AVX2 clone) that count what can be counted in bulk and flag the few items that need the
 * per-item path: heap candidates (score > heap root; a size-K min-heap, root = worst, replaced only by
 * a strictly higher score, items arriving in increasing catalogue index, so among equal scores the
 * lower index wins) and items near a relevant score. Excluded items are a per-query sorted array
 * (per-thread scratch, rebuilt for each query block): the per-item path skips them with a cursor
 * (its items come in increasing index), and whatever the bulk passes counted for them is subtracted
 * per tile by walking the same array.
 *
 * Key design decision: every score that is compared is a GEMM output, including the scores of the
 * relevant items, so MRR and FoldAUC are exact counts over the same numbers that produce the top-K.
 * The relevant scores are only known once their tile has been seen, but the counts need them while
 * sweeping. So before the sweep each relevant item r gets a double-precision dot D_r and a window
 * W_r = [D_r - e_r, D_r + e_r] (edges rounded outwards to float) with e_r a rigorous bound on
 * |float GEMM - exact| for any summation order, FMA or not (2(d+2)2^-24 sum|u_i v_i| + underflow
 * slack). An item outside every window is classified exactly on the spot (surely above / below each
 * relevant score); only items inside a window (near-ties and exact ties) go to a small per-query list
 * that is resolved exactly after the sweep, when the relevant items' GEMM scores are known. MRR
 * uses the window [max_r(D_r - e_r), max_r(D_r + e_r)], which contains the best relevant score.
 *
 * Definitions (per evaluated query q; means are over evaluated queries):
 *   rel(q) is a set: duplicates are dropped and items also in excl(q) are removed from it first;
 *   queries left with empty rel(q) are skipped (n_skipped). excl(q) is a set too; E(q) = N \ excl(q).
 *   Recall@K = |topK ∩ rel| / |rel|; NDCG@K binary gains, IDCG over min(K, |rel|);
 *   MRR: rank = 1 + #{j in E, j not in rel : s_j > s_b or (s_j == s_b and j < b)}, b = best relevant
 *   (max score, ties to the lower index).
 * Folding (only when item_cat and home_off are given; only over evaluated queries with non-empty
 * home(q)). An item is "out-of-home" when its category is known (>= 0) and not in home(q); items of
 * unknown category (< 0) are never out-of-home (they count only in the denominators K and |E|).
 *   Fold(q)   = #{out-of-home in topK} / |topK|  (|topK| = min(K, |E|));
 *   Chance(q) = #{out-of-home in E} / |E|;  fold_ratio = mean Fold / mean Chance;
 *   FoldAUC(q) = (#{(o, r): s_o > s_r} + #{(o, r): s_o == s_r} / 2) / (n_out |rel|) over all pairs of
 *   an out-of-home eligible item o (a relevant item can be one) and a relevant item r; averaged over
 *   fold queries with n_out > 0.
 *   foreign_top_share: per fold query with at least one out-of-home item in its top-K, the count of
 *   the most common category among those out-of-home items divided by their number; averaged over
 *   such queries.
 * An undefined mean (no query qualifies, or mean Chance = 0 for fold_ratio) is NAN.
 * psrec_eval_run requires finite embeddings (checked: PSREC_EINVAL) and scores that do not overflow
 * float. psrec_topk does not check (O(Nd) per call): a NaN score is never ranked.
 *
 * Thread model: psrec_eval_run spawns min(threads, #blocks) - 1 pthreads and works itself as the
 * last one; blocks are handed out by an atomic counter. Every block has the same shape whatever the
 * thread count, every per-query value is written to its own slot and the means are summed in query
 * order afterwards, so results are identical for any thread count. Each thread owns its scratch
 * (score tile, heaps, sorted lists); inputs are read-only. psrec_topk runs on the calling thread. */
#include "worker/eval.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum {
    QB = 128,     /* queries per block (GEMM M) */
    TILE = 1024,  /* catalogue rows per tile (GEMM N) */
    CHUNK = 16,   /* scan width of the vectorised passes */
    VEC_REL = 16, /* FoldAUC counted by the vector pass up to this many relevant items ... */
    VEC_HOME = 8, /* ... and this many home categories; beyond, per item by binary search */
    MAX_THREADS = 256
};

typedef struct {
    float s;
    uint32_t j;
} ent_t;

typedef struct {
    ent_t *v;
    size_t n, cap;
} vec_t;

/* Per-query state for the block being swept. Windows are float edges rounded outwards from the
 * double intervals W_r, so "s > whi[r]" proves s > s_r and "s < wlo[r]" proves s < s_r. */
typedef struct {
    int active;  /* scanned (eval: rel non-empty; topk: always) */
    int fold;    /* folding metrics apply (home non-empty) */
    int auc_vec; /* FoldAUC by the vector pass (else per item, sorted windows) */
    uint32_t nrel, rel_cur, nexcl, excl_cur, xs_cur, nhome, nhome32;
    const uint32_t *rel;  /* sorted unique, excl removed */
    const uint32_t *excl; /* sorted unique; excl_cur: per-tile corrections, xs_cur: per-item path */
    float *srel;          /* GEMM scores of rel, read from the tiles */
    float *wlo, *whi;     /* per-rel window edges (sorted ascending, separately, if !auc_vec) */
    float mlo, mhi;       /* MRR window: contains the best relevant GEMM score */
    float wmin;           /* !auc_vec: below this an item cannot matter for FoldAUC; else +inf */
    const int64_t *home;  /* sorted unique home categories */
    int32_t home32[VEC_HOME];
    ent_t *heap;
    int hn;
    uint64_t mrr_above, auc_cnt; /* auc_cnt: #{(o, r): s_o > s_r} over the exactly classified o */
    vec_t amb_mrr, amb_auc;      /* items inside a window, resolved after the sweep */
    uint64_t n_elig, n_out;
} slot_t;

typedef struct {
    void *p;
    size_t cap; /* elements */
} arena_t;

enum { A_REL, A_EXCL, A_SREL, A_WLO, A_WHI, A_HOME, N_ARENA };
static const size_t arena_elem[N_ARENA] = {sizeof(uint32_t), sizeof(uint32_t), sizeof(float),
                                           sizeof(float),    sizeof(float),    sizeof(int64_t)};

typedef struct {
    float *S; /* QB x TILE */
    float pad_s[CHUNK];
    int32_t pad_c[CHUNK];
    ent_t *heaps;  /* QB x kcap */
    int32_t *cats; /* kcap */
    arena_t a[N_ARENA];
    slot_t slot[QB];
} scratch_t;

typedef struct {
    uint8_t evaluated, fold_ok, auc_ok, foreign_ok;
    double recall, ndcg, rr, fold, chance, auc, foreign;
} qout_t;

typedef struct {
    const psrec_eval_in_t *in;
    int topk_mode;
    int kcap;                  /* heap capacity = min(k, N) (>= 1) */
    const double *disc;        /* 1/log2(r+2), r < kcap */
    const int32_t *sorted_cat; /* fold: item_cat sorted ascending */
    size_t n_unknown;          /* items with category < 0 */
    size_t nblocks;
    atomic_size_t next;
    atomic_int err;
    qout_t *out;       /* eval mode, Q entries */
    uint32_t *out_idx; /* topk mode */
    float *out_score;
} job_t;

/* ---- heap: min-heap on (score, -index); the root is the worst kept item ---- */

static inline int worse(ent_t a, ent_t b)
{
    return a.s < b.s || (a.s == b.s && a.j > b.j);
}

static void sift_down(ent_t *h, int n, int i)
{
    ent_t x = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && worse(h[c + 1], h[c])) c++;
        if (!worse(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void sift_up(ent_t *h, int i)
{
    ent_t x = h[i];
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!worse(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

/* Items must be offered in increasing j: an equal score never replaces a kept (lower) index. */
static inline void heap_offer(ent_t *h, int *n, int k, float s, uint32_t j)
{
    if (*n < k) {
        h[*n] = (ent_t){s, j};
        sift_up(h, (*n)++);
    } else if (s > h[0].s) {
        h[0] = (ent_t){s, j};
        sift_down(h, k, 0);
    }
}

/* In-place heap sort: best first (score descending, index ascending). */
static void heap_sort(ent_t *h, int n)
{
    for (int i = n - 1; i > 0; i--) {
        ent_t t = h[0];
        h[0] = h[i];
        h[i] = t;
        sift_down(h, i, 0);
    }
}

/* ---- small helpers ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_flt(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static int has_u32(const uint32_t *a, uint32_t n, uint32_t x)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t m = lo + (hi - lo) / 2;
        if (a[m] < x)
            lo = m + 1;
        else
            hi = m;
    }
    return lo < n && a[lo] == x;
}

static int has_i64(const int64_t *a, uint32_t n, int64_t x)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t m = lo + (hi - lo) / 2;
        if (a[m] < x)
            lo = m + 1;
        else
            hi = m;
    }
    return lo < n && a[lo] == x;
}

/* #{i : a[i] < x} (strict = 1) or #{i : a[i] <= x} (strict = 0), a sorted ascending. */
static uint32_t count_below(const float *a, uint32_t n, float x, int strict)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t m = lo + (hi - lo) / 2;
        if (strict ? a[m] < x : a[m] <= x)
            lo = m + 1;
        else
            hi = m;
    }
    return lo;
}

/* Count of value c in a sorted array. */
static size_t count_eq_i32(const int32_t *a, size_t n, int64_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if ((int64_t)a[m] < c)
            lo = m + 1;
        else
            hi = m;
    }
    size_t first = lo;
    hi = n;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if ((int64_t)a[m] <= c)
            lo = m + 1;
        else
            hi = m;
    }
    return lo - first;
}

static int vec_push(vec_t *v, float s, uint32_t j)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 64;
        ent_t *p = realloc(v->v, nc * sizeof *p);
        if (!p) return -1;
        v->v = p;
        v->cap = nc;
    }
    v->v[v->n++] = (ent_t){s, j};
    return 0;
}

static int arena_reserve(arena_t *a, size_t need, size_t elem)
{
    if (need <= a->cap && a->p) return 0;
    size_t nc = a->cap ? a->cap : 256;
    while (nc < need)
        nc *= 2;
    void *q = realloc(a->p, nc * elem);
    if (!q) return -1;
    a->p = q;
    a->cap = nc;
    return 0;
}

/* Largest float <= x and smallest float >= x (x a double): window edges rounded outwards. */
static float float_down(double x)
{
    float f = (float)x;
    if ((double)f > x) f = nextafterf(f, -INFINITY);
    return f;
}

static float float_up(double x)
{
    float f = (float)x;
    if ((double)f < x) f = nextafterf(f, INFINITY);
    return f;
}

static inline int is_out(const slot_t *sl, int32_t c)
{
    return c >= 0 && !has_i64(sl->home, sl->nhome, c);
}

/* #{r : s > whi[r]} and #{r : s < wlo[r]} (unsorted windows); the item is exactly classified
 * against every relevant score iff they sum to nrel. */
static inline void window_counts(const slot_t *sl, float s, uint32_t *cb, uint32_t *ca)
{
    uint32_t b = 0, a = 0;
    for (uint32_t r = 0; r < sl->nrel; r++) {
        b += s > sl->whi[r];
        a += s < sl->wlo[r];
    }
    *cb = b;
    *ca = a;
}

/* ---- scratch ---- */

static void scratch_free(scratch_t *s)
{
    if (!s) return;
    free(s->S);
    free(s->heaps);
    free(s->cats);
    for (int a = 0; a < N_ARENA; a++)
        free(s->a[a].p);
    for (int i = 0; i < QB; i++) {
        free(s->slot[i].amb_mrr.v);
        free(s->slot[i].amb_auc.v);
    }
    free(s);
}

static scratch_t *scratch_new(const job_t *job)
{
    scratch_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->S = malloc((size_t)QB * TILE * sizeof *s->S);
    s->heaps = malloc((size_t)QB * (size_t)job->kcap * sizeof *s->heaps);
    s->cats = malloc((size_t)job->kcap * sizeof *s->cats);
    int bad = !s->S || !s->heaps || !s->cats;
    for (int a = 0; a < N_ARENA && !bad; a++)
        bad = arena_reserve(&s->a[a], 1, arena_elem[a]);
    if (bad) {
        scratch_free(s);
        return NULL;
    }
    return s;
}

/* ---- one block ---- */

/* Sizes the arenas for the variable-size per-query arrays of one block. */
static int block_arenas(const job_t *job, scratch_t *sc, size_t q0, size_t nq)
{
    const psrec_eval_in_t *in = job->in;
    size_t nrel = 0, nexcl = 0, nhome = 0;
    for (size_t q = q0; q < q0 + nq; q++) {
        if (!job->topk_mode) nrel += in->rel_off[q + 1] - in->rel_off[q];
        if (in->excl_off) nexcl += in->excl_off[q + 1] - in->excl_off[q];
        if (job->sorted_cat) nhome += in->home_off[q + 1] - in->home_off[q];
    }
    const size_t need[N_ARENA] = {nrel, nexcl, nrel, nrel, nrel, nhome};
    for (int a = 0; a < N_ARENA; a++)
        if (arena_reserve(&sc->a[a], need[a], arena_elem[a])) return -1;
    return 0;
}

/* Copies src[0..n) to dst, sorts and removes duplicates; returns the new length. */
static uint32_t sort_unique_u32(uint32_t *dst, const uint32_t *src, uint32_t n)
{
    if (n == 0) return 0;
    memcpy(dst, src, n * sizeof *dst);
    if (n > 1) qsort(dst, n, sizeof *dst, cmp_u32);
    uint32_t m = 0;
    for (uint32_t p = 0; p < n; p++)
        if (m == 0 || dst[p] != dst[m - 1]) dst[m++] = dst[p];
    return m;
}

typedef struct {
    size_t rel, excl, home;
} pos_t;

static void setup_slot(const job_t *job, scratch_t *sc, int i, size_t q, pos_t *pos)
{
    const psrec_eval_in_t *in = job->in;
    slot_t *sl = &sc->slot[i];
    const int d = in->d;
    const float *u = in->U + q * (size_t)d;

    sl->active = 1;
    sl->fold = sl->auc_vec = 0;
    sl->nrel = sl->rel_cur = sl->nexcl = sl->excl_cur = sl->xs_cur = sl->nhome = sl->nhome32 = 0;
    sl->heap = sc->heaps + (size_t)i * (size_t)job->kcap;
    sl->hn = 0;
    sl->mrr_above = sl->auc_cnt = 0;
    sl->amb_mrr.n = sl->amb_auc.n = 0;
    sl->mlo = sl->mhi = sl->wmin = INFINITY;

    /* home set (sorted unique) */
    if (job->sorted_cat) {
        int64_t *h = (int64_t *)sc->a[A_HOME].p + pos->home;
        uint32_t n = 0;
        for (uint32_t p = in->home_off[q]; p < in->home_off[q + 1]; p++)
            h[n++] = in->home_cat[p];
        if (n > 1) qsort(h, n, sizeof *h, cmp_i64);
        uint32_t m = 0;
        for (uint32_t p = 0; p < n; p++)
            if (m == 0 || h[p] != h[m - 1]) h[m++] = h[p];
        pos->home += m;
        sl->home = h;
        sl->nhome = m;
        sl->fold = m > 0;
        uint32_t rep = 0; /* categories beyond int32 match no item */
        for (uint32_t p = 0; p < m; p++)
            if (h[p] <= INT32_MAX && rep++ < VEC_HOME) sl->home32[sl->nhome32++] = (int32_t)h[p];
        sl->auc_vec = rep <= VEC_HOME; /* else per item, by binary search in home */
    }

    /* exclusions: sorted unique list */
    uint64_t n_excl_out = 0;
    if (in->excl_off) {
        uint32_t *x = (uint32_t *)sc->a[A_EXCL].p + pos->excl;
        sl->nexcl = sort_unique_u32(x, in->excl_idx + in->excl_off[q], in->excl_off[q + 1] - in->excl_off[q]);
        sl->excl = x;
        pos->excl += sl->nexcl;
        for (uint32_t p = 0; p < sl->nexcl && sl->fold; p++)
            n_excl_out += is_out(sl, in->item_cat[x[p]]);
    }
    sl->n_elig = in->N - sl->nexcl;

    if (job->topk_mode) return;

    /* relevant set: sorted unique, excluded items removed */
    uint32_t *r = (uint32_t *)sc->a[A_REL].p + pos->rel;
    uint32_t m = sort_unique_u32(r, in->rel_idx + in->rel_off[q], in->rel_off[q + 1] - in->rel_off[q]);
    uint32_t n = 0;
    for (uint32_t p = 0; p < m; p++)
        if (!has_u32(sl->excl, sl->nexcl, r[p])) r[n++] = r[p];
    sl->rel = r;
    sl->nrel = n;
    sl->srel = (float *)sc->a[A_SREL].p + pos->rel;
    sl->wlo = (float *)sc->a[A_WLO].p + pos->rel;
    sl->whi = (float *)sc->a[A_WHI].p + pos->rel;
    pos->rel += n;
    if (n == 0) {
        sl->active = 0;
        return;
    }

    /* windows W_r around the exact score that must contain the float GEMM score */
    const double slack = 2.0 * (d + 2) * 0x1p-24;
    const double tiny = (d + 2) * 0x1p-148;
    double lo = -INFINITY, hi = -INFINITY;
    for (uint32_t p = 0; p < n; p++) {
        const float *v = in->V + (size_t)r[p] * (size_t)d;
        double D = 0.0, A = 0.0;
        for (int t = 0; t < d; t++) {
            double x = (double)u[t] * (double)v[t];
            D += x;
            A += fabs(x);
        }
        double e = slack * A + tiny;
        sl->wlo[p] = float_down(D - e);
        sl->whi[p] = float_up(D + e);
        sl->srel[p] = -INFINITY;
        if (D - e > lo) lo = D - e;
        if (D + e > hi) hi = D + e;
    }
    sl->mlo = float_down(lo);
    sl->mhi = float_up(hi);
    if (sl->fold) {
        if (n > VEC_REL) sl->auc_vec = 0;
        if (!sl->auc_vec) {
            qsort(sl->wlo, n, sizeof *sl->wlo, cmp_flt);
            qsort(sl->whi, n, sizeof *sl->whi, cmp_flt);
            sl->wmin = sl->wlo[0];
        }
        /* out-of-home eligible items: all known-category items minus home ones minus excluded */
        uint64_t home_items = 0;
        for (uint32_t p = 0; p < sl->nhome; p++)
            home_items += count_eq_i32(job->sorted_cat, in->N, sl->home[p]);
        sl->n_out = (uint64_t)in->N - job->n_unknown - home_items - n_excl_out;
    }
}

/* The per-item path, for items flagged by a vector pass (heap candidate, inside the MRR window,
 * inside a FoldAUC window, or any FoldAUC candidate without the vector pass). */
static int slow_item(const job_t *job, scratch_t *sc, int i, uint32_t j, float s)
{
    const psrec_eval_in_t *in = job->in;
    slot_t *sl = &sc->slot[i];
    while (sl->xs_cur < sl->nexcl && sl->excl[sl->xs_cur] < j) /* items come in increasing j */
        sl->xs_cur++;
    if (sl->xs_cur < sl->nexcl && sl->excl[sl->xs_cur] == j) return 0;
    heap_offer(sl->heap, &sl->hn, job->kcap, s, j);
    if (job->topk_mode) return 0;
    if (s >= sl->mlo && s <= sl->mhi && !has_u32(sl->rel, sl->nrel, j) && vec_push(&sl->amb_mrr, s, j)) return -1;
    if (sl->fold) {
        const uint32_t n = sl->nrel;
        uint32_t cb, ca;
        if (sl->auc_vec) {
            /* exactly classified items were counted by the vector pass */
            if (is_out(sl, in->item_cat[j])) {
                window_counts(sl, s, &cb, &ca);
                if (cb + ca != n && vec_push(&sl->amb_auc, s, j)) return -1;
            }
        } else if (s >= sl->wmin && is_out(sl, in->item_cat[j])) {
            cb = count_below(sl->whi, n, s, 1);
            ca = n - count_below(sl->wlo, n, s, 0);
            if (cb + ca == n)
                sl->auc_cnt += cb;
            else if (vec_push(&sl->amb_auc, s, j))
                return -1;
        }
    }
    return 0;
}

/* The vector passes use GCC vector types: 16 scores = two 8-lane vectors (AVX2 in the avx2 clone of
 * scan_row, pairs of SSE registers otherwise). A comparison yields 0 / -1 per lane. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define SCAN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SCAN_CLONES
#endif

/* (Vectors go by pointer: a 32-byte vector by value would change the ABI without AVX.) */
ALWAYS_INLINE int32_t hsum8(const v8i *v)
{
    int32_t s = 0;
    for (int m = 0; m < 8; m++)
        s += (*v)[m];
    return s;
}

ALWAYS_INLINE int any8(const v8i *v)
{
    int32_t s = 0;
    for (int m = 0; m < 8; m++)
        s |= (*v)[m];
    return s != 0;
}

/* Vector pass over CHUNK scores: counts the items surely above the MRR window and says whether any
 * item needs the per-item path. */
ALWAYS_INLINE int chunk_basic(const float *x, float root, float mlo, float mhi, float wmin, uint64_t *above)
{
    v8f x0, x1;
    memcpy(&x0, x, sizeof x0);
    memcpy(&x1, x + 8, sizeof x1);
    v8i cnt = (x0 > mhi) + (x1 > mhi); /* minus the count */
    v8i slow = (x0 > root) | ((x0 >= mlo) & (x0 <= mhi)) | (x0 >= wmin) | (x1 > root) | ((x1 >= mlo) & (x1 <= mhi)) |
               (x1 >= wmin);
    *above += (uint64_t)(-hsum8(&cnt));
    return any8(&slow);
}

/* Vector FoldAUC pass: adds #{r : s_j > s_r} for every out-of-home item j that lies outside all
 * windows (excluded ones are subtracted per tile afterwards); flags items inside a window. */
ALWAYS_INLINE int chunk_auc(const slot_t *sl, const float *x, const int32_t *c, uint64_t *acc)
{
    v8f x0, x1;
    v8i c0, c1;
    memcpy(&x0, x, sizeof x0);
    memcpy(&x1, x + 8, sizeof x1);
    memcpy(&c0, c, sizeof c0);
    memcpy(&c1, c + 8, sizeof c1);
    v8i out0 = c0 >= 0, out1 = c1 >= 0;
    for (uint32_t h = 0; h < sl->nhome32; h++) {
        const int32_t hc = sl->home32[h];
        out0 &= c0 != hc;
        out1 &= c1 != hc;
    }
    v8i cb0 = {0}, cb1 = {0}, ca0 = {0}, ca1 = {0}; /* negated counts */
    for (uint32_t r = 0; r < sl->nrel; r++) {
        const float hi = sl->whi[r], lo = sl->wlo[r];
        cb0 += x0 > hi;
        cb1 += x1 > hi;
        ca0 += x0 < lo;
        ca1 += x1 < lo;
    }
    const int32_t nn = -(int32_t)sl->nrel;
    v8i ex0 = (cb0 + ca0) == nn, ex1 = (cb1 + ca1) == nn;
    v8i sum = (out0 & ex0 & cb0) + (out1 & ex1 & cb1), amb = (out0 & ~ex0) | (out1 & ~ex1);
    *acc += (uint64_t)(-hsum8(&sum));
    return any8(&amb);
}

ALWAYS_INLINE int scan_chunk(const job_t *job, scratch_t *sc, int i, const float *x, const int32_t *c, size_t j0,
                             size_t w)
{
    slot_t *sl = &sc->slot[i];
    float root = sl->hn < job->kcap ? -INFINITY : sl->heap[0].s;
    int slow = chunk_basic(x, root, sl->mlo, sl->mhi, sl->wmin, &sl->mrr_above);
    if (sl->auc_vec && sl->fold) slow |= chunk_auc(sl, x, c, &sl->auc_cnt);
    if (!slow) return 0;
    for (size_t m = 0; m < w; m++) {
        /* cheap re-test of chunk_basic's conditions; AUC-window items always take the path */
        float s = x[m];
        int need =
            s > root || (s >= sl->mlo && s <= sl->mhi) || s >= sl->wmin || (sl->auc_vec && sl->fold && c[m] >= 0);
        if (need) {
            if (slow_item(job, sc, i, (uint32_t)(j0 + m), s)) return -1;
            root = sl->hn < job->kcap ? -INFINITY : sl->heap[0].s;
        }
    }
    return 0;
}

SCAN_CLONES static int scan_row(const job_t *job, scratch_t *sc, int i, const float *row, size_t t0, size_t T)
{
    const psrec_eval_in_t *in = job->in;
    slot_t *sl = &sc->slot[i];
    const int32_t *cat = sl->fold ? in->item_cat + t0 : sc->pad_c;
    size_t j = 0;
    for (; j + CHUNK <= T; j += CHUNK)
        if (scan_chunk(job, sc, i, row + j, sl->fold ? cat + j : sc->pad_c, t0 + j, CHUNK)) return -1;
    if (j < T) { /* tail: pad with -inf scores and unknown categories, which nothing counts */
        for (size_t m = 0; m < CHUNK; m++) {
            sc->pad_s[m] = j + m < T ? row[j + m] : -INFINITY;
            sc->pad_c[m] = j + m < T && sl->fold ? cat[j + m] : -1;
        }
        if (scan_chunk(job, sc, i, sc->pad_s, sc->pad_c, t0 + j, T - j)) return -1;
        for (size_t m = 0; m < CHUNK; m++)
            sc->pad_c[m] = -1;
    }
    if (job->topk_mode) return 0;

    /* relevant items of this tile: record their GEMM scores, undo their MRR count */
    const size_t t1 = t0 + T;
    for (; sl->rel_cur < sl->nrel && sl->rel[sl->rel_cur] < t1; sl->rel_cur++) {
        float s = row[sl->rel[sl->rel_cur] - t0];
        sl->srel[sl->rel_cur] = s;
        sl->mrr_above -= s > sl->mhi;
    }
    /* excluded items of this tile: undo what the vector passes counted for them */
    for (; sl->excl_cur < sl->nexcl && sl->excl[sl->excl_cur] < t1; sl->excl_cur++) {
        uint32_t jx = sl->excl[sl->excl_cur];
        float s = row[jx - t0];
        sl->mrr_above -= s > sl->mhi;
        if (sl->auc_vec && sl->fold && is_out(sl, in->item_cat[jx])) {
            uint32_t cb, ca;
            window_counts(sl, s, &cb, &ca);
            if (cb + ca == sl->nrel) sl->auc_cnt -= cb;
        }
    }
    return 0;
}

static void finish_slot(const job_t *job, scratch_t *sc, int i, size_t q)
{
    const psrec_eval_in_t *in = job->in;
    slot_t *sl = &sc->slot[i];
    heap_sort(sl->heap, sl->hn);
    const ent_t *top = sl->heap;
    const int hn = sl->hn;

    if (job->topk_mode) {
        uint32_t *oi = job->out_idx + q * (size_t)in->k;
        float *os = job->out_score + q * (size_t)in->k;
        for (int r = 0; r < in->k; r++) {
            oi[r] = r < hn ? top[r].j : UINT32_MAX;
            os[r] = r < hn ? top[r].s : -INFINITY;
        }
        return;
    }

    qout_t *o = &job->out[q];
    memset(o, 0, sizeof *o);
    if (!sl->active) return;
    o->evaluated = 1;
    const uint32_t n = sl->nrel;

    /* best relevant: max GEMM score, ties to the lower index (rel is sorted by index) */
    uint32_t b = 0;
    for (uint32_t p = 1; p < n; p++)
        if (sl->srel[p] > sl->srel[b]) b = p;
    const float sb = sl->srel[b];
    const uint32_t jb = sl->rel[b];
    uint64_t rank = 1 + sl->mrr_above;
    for (size_t p = 0; p < sl->amb_mrr.n; p++) {
        ent_t e = sl->amb_mrr.v[p];
        if (e.s > sb || (e.s == sb && e.j < jb)) rank++;
    }
    o->rr = 1.0 / (double)rank;

    uint32_t hits = 0;
    double dcg = 0.0, idcg = 0.0;
    for (int r = 0; r < hn; r++)
        if (has_u32(sl->rel, n, top[r].j)) {
            hits++;
            dcg += job->disc[r];
        }
    uint32_t ideal = n < (uint32_t)in->k ? n : (uint32_t)in->k;
    for (uint32_t r = 0; r < ideal; r++)
        idcg += job->disc[r];
    o->recall = (double)hits / (double)n;
    o->ndcg = dcg / idcg;

    if (!sl->fold) return;
    int nf = 0;
    for (int r = 0; r < hn; r++) {
        int32_t c = in->item_cat[top[r].j];
        if (is_out(sl, c)) sc->cats[nf++] = c;
    }
    o->fold_ok = 1;
    o->fold = (double)nf / (double)hn;
    o->chance = (double)sl->n_out / (double)sl->n_elig;
    if (nf > 0) {
        qsort(sc->cats, (size_t)nf, sizeof *sc->cats, cmp_i32);
        int best = 1, run = 1;
        for (int p = 1; p < nf; p++) {
            run = sc->cats[p] == sc->cats[p - 1] ? run + 1 : 1;
            if (run > best) best = run;
        }
        o->foreign_ok = 1;
        o->foreign = (double)best / (double)nf;
    }
    if (sl->n_out > 0) {
        qsort(sl->srel, n, sizeof *sl->srel, cmp_flt);
        uint64_t twice = 2 * sl->auc_cnt;
        for (size_t p = 0; p < sl->amb_auc.n; p++) {
            float s = sl->amb_auc.v[p].s;
            twice += (uint64_t)count_below(sl->srel, n, s, 1) + count_below(sl->srel, n, s, 0);
        }
        o->auc_ok = 1;
        o->auc = (double)twice / (2.0 * (double)sl->n_out * (double)n);
    }
}

static int run_block(const job_t *job, scratch_t *sc, size_t blk)
{
    const psrec_eval_in_t *in = job->in;
    const size_t q0 = blk * QB;
    const size_t nq = in->Q - q0 < QB ? in->Q - q0 : QB;
    const int d = in->d;
    int rc = 0;

    if (block_arenas(job, sc, q0, nq)) return -1;
    pos_t pos = {0, 0, 0};
    int any = 0;
    for (int m = 0; m < CHUNK; m++)
        sc->pad_c[m] = -1;
    for (size_t i = 0; i < nq; i++) {
        setup_slot(job, sc, (int)i, q0 + i, &pos);
        any |= sc->slot[i].active;
    }

    for (size_t t0 = 0; any && t0 < in->N; t0 += TILE) {
        const size_t T = in->N - t0 < TILE ? in->N - t0 : TILE;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)T, d, 1.0f, in->U + q0 * (size_t)d, d,
                    in->V + t0 * (size_t)d, d, 0.0f, sc->S, (int)T);
        for (size_t i = 0; i < nq && !rc; i++)
            if (sc->slot[i].active) rc = scan_row(job, sc, (int)i, sc->S + i * T, t0, T);
        if (rc) break;
    }
    if (!rc)
        for (size_t i = 0; i < nq; i++)
            finish_slot(job, sc, (int)i, q0 + i);
    return rc;
}

static void *worker(void *arg)
{
    job_t *job = arg;
    scratch_t *sc = scratch_new(job);
    if (!sc) {
        atomic_store(&job->err, PSREC_ENOMEM);
        return NULL;
    }
    for (;;) {
        if (atomic_load(&job->err)) break;
        size_t b = atomic_fetch_add(&job->next, 1);
        if (b >= job->nblocks) break;
        if (run_block(job, sc, b)) {
            atomic_store(&job->err, PSREC_ENOMEM);
            break;
        }
    }
    scratch_free(sc);
    return NULL;
}

static psrec_err run_job(job_t *job, int threads)
{
    job->nblocks = (job->in->Q + QB - 1) / QB;
    atomic_init(&job->next, 0);
    atomic_init(&job->err, 0);
    size_t nt = threads > 1 ? (size_t)threads : 1;
    if (nt > MAX_THREADS) nt = MAX_THREADS;
    if (nt > job->nblocks) nt = job->nblocks ? job->nblocks : 1;
    pthread_t tid[MAX_THREADS];
    size_t started = 0;
    for (size_t t = 0; t + 1 < nt; t++) {
        if (pthread_create(&tid[t], NULL, worker, job)) break; /* the others take its share */
        started++;
    }
    worker(job);
    for (size_t t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    return (psrec_err)atomic_load(&job->err);
}

/* ---- validation ---- */

static int finite_all(const float *a, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += a[i] * 0.0f; /* NaN iff some a[i] is inf or NaN */
    return acc == 0.0f;
}

static int csr_ok(const uint32_t *off, const uint32_t *idx, size_t Q, size_t N, int check_idx)
{
    if (!off) return 1;
    for (size_t q = 0; q < Q; q++)
        if (off[q] > off[q + 1]) return 0;
    if (Q && off[Q] > off[0] && !idx) return 0;
    if (check_idx)
        for (size_t p = Q ? off[0] : 0; Q && p < off[Q]; p++)
            if (idx[p] >= N) return 0;
    return 1;
}

static psrec_err make_disc(int kcap, double **disc)
{
    double *t = malloc((size_t)kcap * sizeof *t);
    if (!t) return PSREC_ENOMEM;
    for (int r = 0; r < kcap; r++)
        t[r] = 1.0 / log2((double)r + 2.0);
    *disc = t;
    return PSREC_OK;
}

psrec_err psrec_eval_run(const psrec_eval_in_t *in, psrec_eval_result_t *res)
{
    if (!in || !res || !in->U || (!in->V && in->N) || in->d <= 0 || in->k <= 0 || !in->rel_off) return PSREC_EINVAL;
    if (in->N >= UINT32_MAX || in->Q >= UINT32_MAX) return PSREC_EINVAL;
    if (!csr_ok(in->rel_off, in->rel_idx, in->Q, in->N, 1) || !csr_ok(in->excl_off, in->excl_idx, in->Q, in->N, 1))
        return PSREC_EINVAL;
    const int fold = in->item_cat && in->home_off;
    if (fold && !csr_ok(in->home_off, in->home_cat, in->Q, in->N, 0)) return PSREC_EINVAL;
    if (!finite_all(in->U, in->Q * (size_t)in->d) || !finite_all(in->V, in->N * (size_t)in->d)) return PSREC_EINVAL;

    memset(res, 0, sizeof *res);
    job_t job;
    memset(&job, 0, sizeof job);
    job.in = in;
    job.kcap = (size_t)in->k < in->N ? in->k : (int)(in->N ? in->N : 1);
    psrec_err rc = PSREC_ENOMEM;
    double *disc = NULL;
    int32_t *sorted = NULL;
    qout_t *out = calloc(in->Q ? in->Q : 1, sizeof *out);
    if (!out) goto done;
    if ((rc = make_disc(job.kcap, &disc))) goto done;
    job.disc = disc;
    job.out = out;
    if (fold) {
        rc = PSREC_ENOMEM;
        sorted = malloc((in->N ? in->N : 1) * sizeof *sorted);
        if (!sorted) goto done;
        memcpy(sorted, in->item_cat, in->N * sizeof *sorted);
        qsort(sorted, in->N, sizeof *sorted, cmp_i32);
        for (size_t j = 0; j < in->N && sorted[j] < 0; j++)
            job.n_unknown++;
        job.sorted_cat = sorted;
    }
    if ((rc = run_job(&job, in->threads))) goto done;

    /* reduction in query order */
    double s_rec = 0, s_ndcg = 0, s_rr = 0, s_fold = 0, s_ch = 0, s_auc = 0, s_for = 0;
    size_t n_ev = 0, n_fold = 0, n_auc = 0, n_for = 0;
    for (size_t q = 0; q < in->Q; q++) {
        const qout_t *o = &out[q];
        if (!o->evaluated) continue;
        n_ev++;
        s_rec += o->recall;
        s_ndcg += o->ndcg;
        s_rr += o->rr;
        if (o->fold_ok) {
            n_fold++;
            s_fold += o->fold;
            s_ch += o->chance;
        }
        if (o->auc_ok) {
            n_auc++;
            s_auc += o->auc;
        }
        if (o->foreign_ok) {
            n_for++;
            s_for += o->foreign;
        }
    }
    res->n_queries = n_ev;
    res->n_skipped = in->Q - n_ev;
    res->recall = n_ev ? s_rec / n_ev : NAN;
    res->ndcg = n_ev ? s_ndcg / n_ev : NAN;
    res->mrr = n_ev ? s_rr / n_ev : NAN;
    res->has_fold = fold;
    if (fold) {
        res->fold = n_fold ? s_fold / n_fold : NAN;
        res->chance = n_fold ? s_ch / n_fold : NAN;
        res->fold_ratio = n_fold && s_ch > 0 ? res->fold / res->chance : NAN;
        res->fold_auc = n_auc ? s_auc / n_auc : NAN;
        res->foreign_top_share = n_for ? s_for / n_for : NAN;
    }
    rc = PSREC_OK;
done:
    free(out);
    free(disc);
    free(sorted);
    return rc;
}

psrec_err psrec_topk(const float *U, size_t Q, const float *V, size_t N, int d, int k, const uint32_t *excl_off,
                     const uint32_t *excl_idx, uint32_t *out_idx, float *out_score)
{
    if (!U || (!V && N) || d <= 0 || k <= 0 || !out_idx || !out_score) return PSREC_EINVAL;
    if (N >= UINT32_MAX || Q >= UINT32_MAX) return PSREC_EINVAL;
    if (!csr_ok(excl_off, excl_idx, Q, N, 1)) return PSREC_EINVAL;
    psrec_eval_in_t in = {
        .Q = Q,
        .N = N,
        .d = d,
        .U = U,
        .V = V,
        .excl_off = excl_off,
        .excl_idx = excl_idx,
        .k = k,
        .threads = 1,
    };
    job_t job;
    memset(&job, 0, sizeof job);
    job.in = &in;
    job.topk_mode = 1;
    job.kcap = (size_t)k < N ? k : (int)(N ? N : 1);
    job.out_idx = out_idx;
    job.out_score = out_score;
    return run_job(&job, 1);
}

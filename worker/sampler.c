/* sampler.c: negative samplers over the item catalogue and their expected counts E for the logQ
 * correction (ALGORITHMS.md §2.2, §3).
 *
 * Key design decisions:
 *  - The catalogue is borrowed, never copied (at 10^8 items every O(N) copy per worker process is
 *    GBs): items and counts are the caller's arrays, typically a freq.bin mapped read-only and shared
 *    by the processes of a machine (common/data_freq.h). A dense catalogue (keys 0..N-1) needs no key
 *    array at all: a uniform draw is psrec_rng_below(N), and a key's index is the key. Otherwise a
 *    key's index is a binary search in the ascending keys (plus a 4 B/item permutation if the caller's
 *    keys are not ascending, which freq.bin's always are).
 *  - POPULARITY: Q_j = (c_j + 1)^alpha / sum_k (c_k + 1)^alpha, normalised in log space in double
 *    (max subtraction: no overflow for any alpha or count); log E = log S + alpha log(c_j + 1) - log Z
 *    is computed on the fly from the counts and the normaliser (no per-item log Q array), never from
 *    the alias table. A key outside the catalogue is treated as count 0. Draws use a Walker alias
 *    table built with Vose's method in double (§3.2) and stored as float32 prob + uint32 alias
 *    (8 B/item). The rounding is booked exactly: a small column l gets prob p, a float within one ulp
 *    of q_l = N Q_l, and its large partner g gives up exactly 1 - p. The error p - q_l is l's alone
 *    (relative <= 2^-23), but the errors add up in whichever columns are left at the end, so each p is
 *    rounded up or down, whichever brings the running sum of errors back toward 0 (it stays within
 *    2^-24, i.e. relative 2^-24 for a leftover, whose N Q is at least about 1). Every entry of the
 *    distribution the table implies is Q_j to relative 2^-23, and the entries sum to 1.
 *    The table lives in this process's memory (built once, shared by its threads) or, with
 *    cache_path, in a durable file (common/durable.h: temp name + rename, so processes building it at
 *    once are safe; the last rename wins and both tables are equal) keyed by (N, alpha, XXH64 of the
 *    counts) and mapped read-only by every process of the machine; a file whose trailer, checksum,
 *    key or contents (prob in [0, 1], alias < N) do not check out is rebuilt. Its header also keeps
 *    log Z, so a process that finds the cache reads the counts once (the key) and computes no log.
 *    The cache file is only ever replaced by rename: never edit one in place while samplers map it.
 *    The catalogue keys are indexed for log_expected, which also rejects duplicate keys. (Other kinds
 *    take the catalogue as given: keep it free of repeats.)
 *  - UNIFORM, and HARD's stage-1 pool and MIXED's uniform part, draw with replacement: E_j = S/N
 *    exactly. For HARD that keeps §3.5's correction exact: with a with-replacement pool the pool
 *    estimate (N/M) sum_P e^s is still unbiased, so log E_j = log h + log(M/N) + s_j/T - LSE_P(s/T)
 *    stands as written.
 *  - INBATCH/MIXED: the streaming estimate of Yi et al. 2019 (§3.3). Key y goes to bucket
 *    h(y) = (psrec_mix64(y) * H) >> 64; per bucket, last[h] = last step seen + 1 (0 = never) and
 *    Bgap[h] = moving average of the gap between steps in which the bucket occurred.
 *      first appearance at step t: Bgap = max(t, 1) (the "gap t" of one public implementation, rate 1);
 *      later, at a new step t:     Bgap = (1 - rate) Bgap + rate (t - last step);
 *      repeated in the same step (a duplicate key or a bucket collision): no update;
 *      a step older than the last one (workers out of order): no update.
 *    p_hat = 1 / Bgap, clamped to [1e-12, 1]; a key never observed has p_hat = 1e-12. So p_hat
 *    estimates the probability that the key occurs in a batch, and the convention here is E = p_hat
 *    for in-batch negatives (a key present twice in one batch is still counted once), and
 *    E = p_hat + S/N for MIXED (§3.4). Call observe() with a batch before drawing its negatives, so
 *    that every in-batch key has an estimate.
 *  - E is clamped to >= 1e-12 before the log wherever it can be 0 (S = 0, unseen keys).
 * Thread model: draw(), log_expected(), hard_resample() and draw_probs() only read the sampler and use
 * the caller's rng, so worker threads share one sampler. observe() serialises writers with a mutex;
 * Bgap entries are read and written with relaxed atomics, so a draw running during an observe sees
 * either the old or the new value of each bucket (no data race). */
#include "worker/sampler.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "common/durable.h"
#include "common/hard.h"
#include "common/endian.h"

#define E_MIN 1e-12
#define ALIAS_MAGIC "PSRECAL1"
#define ALIAS_HEADER 40              /* magic, N, alpha, XXH64 of the counts, log Z */
#define CHECK_STEP ((size_t)1 << 20) /* entries checked between two resident-set drops */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_LE 1 /* the cache file is little-endian and read in place: only on such hosts */
#else
#define HOST_LE 0
#endif

struct psrec_sampler {
    psrec_sampler_kind kind;
    size_t n;
    int dense;             /* keys are 0..n-1 */
    const uint64_t *items; /* borrowed; NULL when dense */
    /* POPULARITY */
    const uint64_t *counts; /* borrowed */
    double alpha;
    double lz;         /* log Z = log sum_k (c_k + 1)^alpha */
    const float *prob; /* alias table, in `table` or in the mapped cache */
    const uint32_t *alias;
    void *table;     /* malloc'ed prob + alias, or NULL */
    const void *map; /* the mapped cache file's payload, or NULL */
    size_t map_len;
    psrec_sampler_alias_origin_t origin;
    uint32_t *perm; /* a non-dense catalogue whose keys do not ascend: indexes in key order, else NULL */
    /* INBATCH / MIXED */
    size_t H;
    double rate;
    double *bgap;   /* relaxed atomics */
    uint64_t *last; /* under lock */
    pthread_mutex_t lock;
    int lock_init;
    /* HARD */
    double T;
};

psrec_sampler_kind psrec_sampler_kind_of(const psrec_sampler_t *s)
{
    return s->kind;
}

psrec_sampler_alias_origin_t psrec_sampler_alias_origin(const psrec_sampler_t *s)
{
    return s->origin;
}

void psrec_sampler_destroy(psrec_sampler_t **sp)
{
    if (!sp || !*sp) return;
    psrec_sampler_t *s = *sp;
    free(s->table);
    psrec_dfile_unmap(s->map, s->map_len);
    free(s->perm);
    free(s->bgap);
    free(s->last);
    if (s->lock_init) pthread_mutex_destroy(&s->lock);
    free(s);
    *sp = NULL;
}

static inline uint64_t key_at(const psrec_sampler_t *s, size_t j)
{
    return s->dense ? (uint64_t)j : s->items[j];
}

/* The catalogue index of key, if it is in the catalogue. */
static int find_index(const psrec_sampler_t *s, uint64_t key, size_t *j)
{
    if (s->dense) {
        *j = (size_t)key;
        return key < s->n;
    }
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->items[s->perm ? s->perm[mid] : mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == s->n) return 0;
    *j = s->perm ? s->perm[lo] : lo;
    return s->items[*j] == key;
}

typedef struct {
    uint64_t key;
    uint32_t idx;
} keyidx_t;

static int cmp_keyidx(const void *a, const void *b)
{
    uint64_t x = ((const keyidx_t *)a)->key, y = ((const keyidx_t *)b)->key;
    return (x > y) - (x < y);
}

/* The key index of a non-dense catalogue: nothing if the keys ascend strictly (binary search in
 * place), a permutation in key order otherwise; a repeated key is an error. */
static psrec_err build_index(psrec_sampler_t *s, char *err)
{
    const size_t N = s->n;
    size_t j = 1;
    while (j < N && s->items[j] > s->items[j - 1])
        j++;
    if (j == N) return PSREC_OK;
    if (s->items[j] == s->items[j - 1])
        return psrec_fail(err, PSREC_EINVAL, "popularity sampler: key %llu appears twice in the catalogue",
                          (unsigned long long)s->items[j]);
    keyidx_t *ki = malloc(N * sizeof *ki);
    s->perm = malloc(N * sizeof *s->perm);
    if (!ki || !s->perm) {
        free(ki);
        return psrec_fail(err, PSREC_ENOMEM, "popularity sampler: out of memory");
    }
    for (j = 0; j < N; j++)
        ki[j] = (keyidx_t){s->items[j], (uint32_t)j};
    qsort(ki, N, sizeof *ki, cmp_keyidx);
    psrec_err e = PSREC_OK;
    for (j = 0; j < N; j++) {
        s->perm[j] = ki[j].idx;
        if (j > 0 && ki[j].key == ki[j - 1].key && !e)
            e = psrec_fail(err, PSREC_EINVAL, "popularity sampler: key %llu appears twice in the catalogue",
                           (unsigned long long)ki[j].key);
    }
    free(ki);
    return e;
}

static inline double log_weight(double alpha, uint64_t c)
{
    return alpha * log((double)c + 1.0);
}

/* log Z; and w[j] = (c_j + 1)^alpha / max_k (c_k + 1)^alpha, *zrel = sum_j w[j] (compensated: an
 * error in it would land, times N, on the alias table's last column). log w is monotone in c, so its
 * maximum is at the smallest or the largest count: one log per item in all. */
static double log_norm(const uint64_t *counts, size_t N, double alpha, double *w, double *zrel)
{
    uint64_t cmin = UINT64_MAX, cmax = 0;
    for (size_t j = 0; j < N; j++) {
        if (counts[j] < cmin) cmin = counts[j];
        if (counts[j] > cmax) cmax = counts[j];
    }
    double a = log_weight(alpha, cmin), b = log_weight(alpha, cmax);
    double mx = a > b ? a : b, z = 0.0, comp = 0.0;
    for (size_t j = 0; j < N; j++) {
        w[j] = exp(log_weight(alpha, counts[j]) - mx);
        double t = z + w[j]; /* Neumaier's compensated sum: N Q_j then sums to N within double rounding */
        comp += fabs(z) >= w[j] ? (z - t) + w[j] : (w[j] - t) + z;
        z = t;
    }
    z += comp;
    *zrel = z;
    return mx + log(z);
}

/* The build's O(N) scratch (12 B/item) comes straight from mmap, so that it goes back to the system
 * when the build ends: freed to malloc it could stay in this process's heap (glibc raises its mmap
 * threshold after large frees). */
static void *scratch_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void scratch_free(void *p, size_t bytes)
{
    if (p) munmap(p, bytes ? bytes : 1);
}

/* Vose's alias construction (§3.2) in double from q[j] = N Q_j (destroyed), stored in float32 with
 * exact bookkeeping of the rounding (see the top comment). */
static psrec_err build_alias(size_t N, double *q, float *prob, uint32_t *alias)
{
    uint32_t *work = scratch_alloc(N * sizeof *work);
    if (!work) return PSREC_ENOMEM;
    /* small stack grows up from work[0], large stack down from work[N-1]; together at most N */
    size_t ns = 0, nl = 0;
    double drift = 0.0; /* sum of (p - q_l) over the small columns so far: |drift| <= 2^-24 */
    for (size_t j = 0; j < N; j++) {
        if (q[j] < 1.0)
            work[ns++] = (uint32_t)j;
        else
            work[N - 1 - nl++] = (uint32_t)j;
    }
    while (ns > 0 && nl > 0) {
        uint32_t l = work[--ns];
        uint32_t g = work[N - nl--];
        /* the float neighbour of q_l (below or above, so within one float ulp) that pulls the
         * drift back toward 0 */
        float p = (float)q[l];
        float other = (double)p > q[l] ? nextafterf(p, 0.0f) : nextafterf(p, 1.0f);
        if ((double)other >= 0.0 && (double)other <= 1.0 &&
            fabs(drift + ((double)other - q[l])) < fabs(drift + ((double)p - q[l])))
            p = other;
        drift += (double)p - q[l];
        prob[l] = p;
        alias[l] = g;
        q[g] = (q[g] + (double)p) - 1.0; /* g gives column l exactly 1 - p */
        if (q[g] < 1.0)
            work[ns++] = g;
        else
            work[N - 1 - nl++] = g;
    }
    /* only rounding leaves entries here, with q within |drift| of 1 */
    while (ns > 0) {
        uint32_t l = work[--ns];
        prob[l] = 1.0f;
        alias[l] = l;
    }
    while (nl > 0) {
        uint32_t g = work[N - nl--];
        prob[g] = 1.0f;
        alias[g] = g;
    }
    scratch_free(work, N * sizeof *work);
    return PSREC_OK;
}

static uint64_t dbits(double x)
{
    uint64_t u;
    memcpy(&u, &x, 8);
    return u;
}

static double bitsd(uint64_t u)
{
    double x;
    memcpy(&x, &u, 8);
    return x;
}

/* Maps the cache file if it holds the table of exactly (N, alpha, counts hash) and its contents are
 * sane; 1 = s now reads it, 0 = missing, corrupt or stale (nothing kept). */
static int open_cache(psrec_sampler_t *s, const char *path, uint64_t hash)
{
    const size_t N = s->n;
    const void *map;
    size_t len;
    if (psrec_dfile_map(path, &map, &len, NULL)) return 0;
    const unsigned char *p = map;
    int ok = len == ALIAS_HEADER + 8 * N && memcmp(p, ALIAS_MAGIC, 8) == 0 && psrec_get64(p + 8) == N &&
             psrec_get64(p + 16) == dbits(s->alpha) && psrec_get64(p + 24) == hash &&
             isfinite(bitsd(psrec_get64(p + 32)));
    const float *prob = (const float *)(const void *)(p + ALIAS_HEADER);
    const uint32_t *alias = (const uint32_t *)(const void *)(p + ALIAS_HEADER + 4 * N);
    for (size_t i0 = 0; ok && i0 < N; i0 += CHECK_STEP) {
        size_t i1 = N - i0 < CHECK_STEP ? N : i0 + CHECK_STEP;
        for (size_t i = i0; i < i1; i++)
            if (!(prob[i] >= 0.0f && prob[i] <= 1.0f) || alias[i] >= N) ok = 0;
        psrec_dfile_map_drop(map, ALIAS_HEADER + 4 * i0, 4 * (i1 - i0));
        psrec_dfile_map_drop(map, ALIAS_HEADER + 4 * N + 4 * i0, 4 * (i1 - i0));
    }
    if (!ok) {
        psrec_dfile_unmap(map, len);
        return 0;
    }
    s->lz = bitsd(psrec_get64(p + 32));
    s->prob = prob;
    s->alias = alias;
    s->map = map;
    s->map_len = len;
    return 1;
}

static psrec_err write_cache(const psrec_sampler_t *s, const char *path, uint64_t hash, const float *prob,
                             const uint32_t *alias)
{
    psrec_dfile_t *d;
    psrec_err rc = psrec_dfile_open(&d, path, NULL);
    if (rc) return rc;
    unsigned char h[ALIAS_HEADER];
    memcpy(h, ALIAS_MAGIC, 8);
    psrec_put64(h + 8, s->n);
    psrec_put64(h + 16, dbits(s->alpha));
    psrec_put64(h + 24, hash);
    psrec_put64(h + 32, dbits(s->lz));
    rc = psrec_dfile_write(d, h, sizeof h, NULL);
    if (!rc) rc = psrec_dfile_write(d, prob, 4 * s->n, NULL); /* little-endian host: the file's layout */
    if (!rc) rc = psrec_dfile_write(d, alias, 4 * s->n, NULL);
    return psrec_dfile_finish(&d, rc, NULL);
}

static psrec_err build_popularity(psrec_sampler_t *s, const psrec_sampler_conf_t *c, char *err)
{
    const size_t N = s->n;
    if (!c->counts) return psrec_fail(err, PSREC_EINVAL, "popularity sampler: no item counts");
    if (!isfinite(c->alpha)) return psrec_fail(err, PSREC_EINVAL, "popularity sampler: alpha is not finite");
    if (N > UINT32_MAX) return psrec_fail(err, PSREC_EINVAL, "popularity sampler: %zu items exceed 2^32-1", N);
    s->counts = c->counts;
    s->alpha = c->alpha;
    psrec_err e = s->dense ? PSREC_OK : build_index(s, err);
    if (e) return e;
    s->origin = PSREC_ALIAS_MEMORY;
    const int cached = c->cache_path && HOST_LE;
    const uint64_t hash = cached ? (uint64_t)XXH64(c->counts, N * sizeof *c->counts, 0) : 0;
    if (cached && open_cache(s, c->cache_path, hash)) {
        s->origin = PSREC_ALIAS_CACHE_HIT;
        return PSREC_OK;
    }
    double *q = scratch_alloc(N * sizeof *q);
    s->table = malloc(N * (sizeof *s->prob + sizeof *s->alias));
    if (!q || !s->table) {
        scratch_free(q, N * sizeof *q);
        return psrec_fail(err, PSREC_ENOMEM, "popularity sampler: out of memory for %zu items", N);
    }
    float *prob = s->table;
    uint32_t *alias = (uint32_t *)(prob + N);
    double zrel;
    s->lz = log_norm(c->counts, N, c->alpha, q, &zrel);
    for (size_t j = 0; j < N; j++) /* q_j = N Q_j */
        q[j] = (double)N * (q[j] / zrel);
    e = build_alias(N, q, prob, alias);
    scratch_free(q, N * sizeof *q);
    if (e) return psrec_fail(err, e, "popularity sampler: out of memory");
    s->prob = prob;
    s->alias = alias;
    if (cached && !write_cache(s, c->cache_path, hash, prob, alias) && open_cache(s, c->cache_path, hash)) {
        free(s->table); /* the mapped copy, shared by the machine, replaces this one */
        s->table = NULL;
        s->origin = PSREC_ALIAS_CACHE_BUILT;
    }
    return PSREC_OK;
}

psrec_err psrec_sampler_new(psrec_sampler_t **sp, const psrec_sampler_conf_t *c, char *err)
{
    if (!sp || !c) return psrec_fail(err, PSREC_EINVAL, "sampler: NULL argument");
    *sp = NULL;
    if ((unsigned)c->kind > PSREC_SAMPLER_ALL)
        return psrec_fail(err, PSREC_EINVAL, "sampler: unknown kind %d", c->kind);
    if (c->n_items == 0) return psrec_fail(err, PSREC_EINVAL, "sampler: empty item catalogue");
    if (!c->items && !c->dense)
        return psrec_fail(err, PSREC_EINVAL, "sampler: no item keys (a catalogue of keys 0..N-1 sets dense)");
    if (c->dense && c->items && (c->items[0] != 0 || c->items[c->n_items - 1] != c->n_items - 1))
        return psrec_fail(err, PSREC_EINVAL, "sampler: dense catalogue whose keys are not 0..%zu", c->n_items - 1);
    psrec_sampler_t *s = calloc(1, sizeof *s);
    if (!s) return psrec_fail(err, PSREC_ENOMEM, "sampler: out of memory");
    s->kind = c->kind;
    s->n = c->n_items;
    s->H = c->hash_size ? c->hash_size : (size_t)1 << 20;
    s->rate = c->rate != 0.0 ? c->rate : 0.01;
    s->T = c->temperature != 0.0 ? c->temperature : 1.0;
    s->dense = c->dense != 0;
    s->items = s->dense ? NULL : c->items;
    psrec_err e = PSREC_OK;

    switch (s->kind) {
    case PSREC_SAMPLER_POPULARITY:
        e = build_popularity(s, c, err);
        if (e) goto fail;
        break;
    case PSREC_SAMPLER_INBATCH:
    case PSREC_SAMPLER_MIXED:
        if (!(s->rate > 0.0 && s->rate <= 1.0)) {
            e = psrec_fail(err, PSREC_EINVAL, "sampler: in-batch rate %g is not in (0, 1]", s->rate);
            goto fail;
        }
        s->bgap = malloc(s->H * sizeof *s->bgap);
        s->last = calloc(s->H, sizeof *s->last);
        if (!s->bgap || !s->last) {
            e = psrec_fail(err, PSREC_ENOMEM, "sampler: out of memory for %zu frequency buckets", s->H);
            goto fail;
        }
        for (size_t h = 0; h < s->H; h++)
            s->bgap[h] = INFINITY; /* never seen: p_hat = 0 -> 1e-12 */
        if (pthread_mutex_init(&s->lock, NULL)) {
            e = psrec_fail(err, PSREC_ENOMEM, "sampler: cannot create lock");
            goto fail;
        }
        s->lock_init = 1;
        break;
    case PSREC_SAMPLER_HARD:
        if (!(s->T > 0.0) || !isfinite(s->T)) {
            e = psrec_fail(err, PSREC_EINVAL, "sampler: temperature %g must be > 0", s->T);
            goto fail;
        }
        break;
    case PSREC_SAMPLER_UNIFORM:
    case PSREC_SAMPLER_ALL: break;
    }
    *sp = s;
    return PSREC_OK;
fail:
    psrec_sampler_destroy(&s);
    return e;
}

static size_t bucket(const psrec_sampler_t *s, uint64_t key)
{
    return (size_t)(((unsigned __int128)psrec_mix64(key) * s->H) >> 64);
}

static double phat(const psrec_sampler_t *s, uint64_t key)
{
    double bg;
    __atomic_load(&s->bgap[bucket(s, key)], &bg, __ATOMIC_RELAXED);
    double p = 1.0 / bg; /* bg = 0 -> inf -> 1; bg = inf (never seen) -> 0 -> E_MIN */
    if (!(p <= 1.0)) p = 1.0;
    if (p < E_MIN) p = E_MIN;
    return p;
}

static double clamp_log(double e)
{
    return log(e > E_MIN ? e : E_MIN);
}

float psrec_sampler_log_expected(const psrec_sampler_t *s, uint64_t key, size_t S, size_t n_batch_pos)
{
    (void)n_batch_pos; /* E of an in-batch key is p_hat whatever the batch size (see the top comment) */
    const double sn = (double)S / (double)s->n;
    switch (s->kind) {
    case PSREC_SAMPLER_UNIFORM:
    case PSREC_SAMPLER_HARD: return (float)clamp_log(sn);
    case PSREC_SAMPLER_POPULARITY: {
        if (S == 0) return (float)log(E_MIN);
        size_t j;
        double lw = find_index(s, key, &j) ? log_weight(s->alpha, s->counts[j]) : 0.0; /* unknown: count 0 */
        return (float)(log((double)S) + lw - s->lz);
    }
    case PSREC_SAMPLER_INBATCH: return (float)log(phat(s, key));
    case PSREC_SAMPLER_MIXED: return (float)clamp_log(phat(s, key) + sn);
    case PSREC_SAMPLER_ALL: return 0.0f;
    }
    return 0.0f;
}

void psrec_sampler_observe(psrec_sampler_t *s, const uint64_t *batch_pos, size_t n, uint64_t t)
{
    if (!s || (s->kind != PSREC_SAMPLER_INBATCH && s->kind != PSREC_SAMPLER_MIXED) || !batch_pos) return;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        size_t h = bucket(s, batch_pos[i]);
        uint64_t last = s->last[h];
        double bg;
        if (last == 0) {
            bg = t >= 1 ? (double)t : 1.0;
        } else if (t + 1 > last) {
            double old;
            __atomic_load(&s->bgap[h], &old, __ATOMIC_RELAXED);
            bg = (1.0 - s->rate) * old + s->rate * (double)(t - (last - 1));
        } else {
            continue; /* same step (duplicate or collision) or an older step */
        }
        __atomic_store(&s->bgap[h], &bg, __ATOMIC_RELAXED);
        s->last[h] = t + 1;
    }
    pthread_mutex_unlock(&s->lock);
}

static inline size_t draw_alias(const psrec_sampler_t *s, psrec_rng_t *rng)
{
    size_t i = (size_t)psrec_rng_below(rng, s->n);
    return psrec_rng_uniform(rng) < (double)s->prob[i] ? i : s->alias[i];
}

static void draw_uniform(const psrec_sampler_t *s, psrec_rng_t *rng, size_t S, uint64_t *keys)
{
    if (s->dense)
        for (size_t i = 0; i < S; i++)
            keys[i] = psrec_rng_below(rng, s->n);
    else
        for (size_t i = 0; i < S; i++)
            keys[i] = s->items[psrec_rng_below(rng, s->n)];
}

psrec_err psrec_sampler_draw(const psrec_sampler_t *s, psrec_rng_t *rng, size_t S, const uint64_t *batch_pos,
                             size_t n_batch_pos, uint64_t *keys, float *logE, size_t cap, size_t *n_out)
{
    if (!s || !n_out) return PSREC_EINVAL;
    *n_out = 0;
    size_t need = 0;
    int uses_batch = s->kind == PSREC_SAMPLER_INBATCH || s->kind == PSREC_SAMPLER_MIXED;
    switch (s->kind) {
    case PSREC_SAMPLER_UNIFORM:
    case PSREC_SAMPLER_POPULARITY:
    case PSREC_SAMPLER_HARD: need = S; break;
    case PSREC_SAMPLER_INBATCH: need = n_batch_pos; break;
    case PSREC_SAMPLER_MIXED:
        if (n_batch_pos > SIZE_MAX - S) return PSREC_EINVAL;
        need = n_batch_pos + S;
        break;
    case PSREC_SAMPLER_ALL: need = s->n; break;
    }
    if (uses_batch && n_batch_pos > 0 && !batch_pos) return PSREC_EINVAL;
    int uses_rng = s->kind != PSREC_SAMPLER_INBATCH && s->kind != PSREC_SAMPLER_ALL && S > 0;
    if (uses_rng && !rng) return PSREC_EINVAL;
    if (need > cap) {
        *n_out = need; /* tells the caller the capacity needed; nothing was written */
        return PSREC_EFULL;
    }
    if (need > 0 && (!keys || !logE)) return PSREC_EINVAL;

    const double sn = (double)S / (double)s->n;
    switch (s->kind) {
    case PSREC_SAMPLER_UNIFORM:
    case PSREC_SAMPLER_HARD: {
        draw_uniform(s, rng, S, keys);
        const float le = (float)clamp_log(sn);
        for (size_t i = 0; i < S; i++)
            logE[i] = le;
        break;
    }
    case PSREC_SAMPLER_POPULARITY: {
        const double ls = log((double)S);
        for (size_t i = 0; i < S; i++) {
            size_t j = draw_alias(s, rng);
            keys[i] = key_at(s, j);
            logE[i] = (float)(ls + log_weight(s->alpha, s->counts[j]) - s->lz);
        }
        break;
    }
    case PSREC_SAMPLER_INBATCH:
        for (size_t i = 0; i < n_batch_pos; i++) {
            keys[i] = batch_pos[i];
            logE[i] = (float)log(phat(s, batch_pos[i]));
        }
        break;
    case PSREC_SAMPLER_MIXED:
        memcpy(keys, batch_pos, n_batch_pos * sizeof *keys);
        draw_uniform(s, rng, S, keys + n_batch_pos);
        for (size_t i = 0; i < need; i++)
            logE[i] = (float)clamp_log(phat(s, keys[i]) + sn);
        break;
    case PSREC_SAMPLER_ALL:
        for (size_t i = 0; i < s->n; i++) {
            keys[i] = key_at(s, i);
            logE[i] = 0.0f;
        }
        break;
    }
    *n_out = need;
    return PSREC_OK;
}

psrec_err psrec_sampler_hard_resample(const psrec_sampler_t *s, psrec_rng_t *rng, const uint64_t *pool,
                                      const float *score, size_t M, size_t h, uint64_t *keys, float *logE)
{
    if (!s || s->kind != PSREC_SAMPLER_HARD) return PSREC_EINVAL;
    if (h == 0) return PSREC_OK;
    if (!pool || !keys || M == 0) return PSREC_EINVAL;
    uint32_t *pick = malloc(h * sizeof *pick);
    if (!pick) return PSREC_ENOMEM;
    psrec_err rc = psrec_hard_draw(rng, score, M, s->T, h, log((double)M / (double)s->n), pick, logE);
    for (size_t i = 0; !rc && i < h; i++)
        keys[i] = pool[pick[i]];
    free(pick);
    return rc;
}

psrec_err psrec_sampler_draw_probs(const psrec_sampler_t *s, double *q, size_t n)
{
    if (!s || !q || n != s->n) return PSREC_EINVAL;
    const double invN = 1.0 / (double)s->n;
    switch (s->kind) {
    case PSREC_SAMPLER_POPULARITY:
        for (size_t i = 0; i < n; i++)
            q[i] = (double)s->prob[i];
        for (size_t k = 0; k < n; k++)
            if (s->alias[k] != k) q[s->alias[k]] += 1.0 - (double)s->prob[k];
        for (size_t i = 0; i < n; i++)
            q[i] *= invN;
        break;
    case PSREC_SAMPLER_UNIFORM:
    case PSREC_SAMPLER_MIXED:
    case PSREC_SAMPLER_HARD:
        for (size_t i = 0; i < n; i++)
            q[i] = invN;
        break;
    case PSREC_SAMPLER_INBATCH:
    case PSREC_SAMPLER_ALL:
        for (size_t i = 0; i < n; i++)
            q[i] = 0.0;
        break;
    }
    return PSREC_OK;
}

static const char *const names[] = {
    [PSREC_SAMPLER_UNIFORM] = "uniform", [PSREC_SAMPLER_POPULARITY] = "popularity",
    [PSREC_SAMPLER_INBATCH] = "inbatch", [PSREC_SAMPLER_MIXED] = "mixed",
    [PSREC_SAMPLER_HARD] = "hard",       [PSREC_SAMPLER_ALL] = "all",
};

const char *psrec_sampler_name(psrec_sampler_kind k)
{
    if ((unsigned)k > PSREC_SAMPLER_ALL) return "unknown";
    return names[k];
}

int psrec_sampler_parse(const char *name, psrec_sampler_kind *k)
{
    if (!name || !k) return -1;
    if (strcmp(name, "in-batch") == 0) name = "inbatch";
    for (int i = 0; i <= PSREC_SAMPLER_ALL; i++) {
        if (strcmp(name, names[i]) == 0) {
            *k = (psrec_sampler_kind)i;
            return 0;
        }
    }
    return -1;
}

/* sampler.c: negative samplers over the item catalogue and their expected counts E for the logQ
 * correction (ALGORITHMS.md §2.2, §3).
 *
 * Key design decisions:
 *  - POPULARITY: Q_j = (c_j + 1)^alpha / sum_k (c_k + 1)^alpha, computed in log space in double (no
 *    overflow for any alpha or count); draws use a Walker alias table built with Vose's method in
 *    double (§3.2); log E = log S + log Q_j reads the source Q, never the alias table. A key outside the
 *    catalogue is treated as count 0. The catalogue keys are indexed (idmap) for log_expected, which
 *    also rejects duplicate keys. (Other kinds take the catalogue as given: keep it free of repeats.)
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

#include "common/idmap.h"

#define E_MIN 1e-12

struct psrec_sampler {
    psrec_sampler_kind kind;
    size_t n;
    uint64_t *items;
    /* POPULARITY */
    double *logq;        /* log Q_j from the source counts */
    double logq_unknown; /* log Q of a key outside the catalogue (count 0) */
    double *prob;        /* alias table */
    uint32_t *alias;
    psrec_idmap_t *index; /* key -> catalogue index */
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

void psrec_sampler_destroy(psrec_sampler_t **sp)
{
    if (!sp || !*sp) return;
    psrec_sampler_t *s = *sp;
    free(s->items);
    free(s->logq);
    free(s->prob);
    free(s->alias);
    psrec_idmap_destroy(&s->index);
    free(s->bgap);
    free(s->last);
    if (s->lock_init) pthread_mutex_destroy(&s->lock);
    free(s);
    *sp = NULL;
}

/* Vose's alias construction (§3.2) from log Q, all in double. */
static psrec_err build_alias(psrec_sampler_t *s)
{
    const size_t N = s->n;
    double *q = malloc(N * sizeof *q);
    uint32_t *work = malloc(N * sizeof *work);
    s->prob = malloc(N * sizeof *s->prob);
    s->alias = malloc(N * sizeof *s->alias);
    if (!q || !work || !s->prob || !s->alias) {
        free(q);
        free(work);
        return PSREC_ENOMEM;
    }
    /* small stack grows up from work[0], large stack down from work[N-1]; together at most N */
    size_t ns = 0, nl = 0;
    for (size_t j = 0; j < N; j++) {
        q[j] = (double)N * exp(s->logq[j]);
        if (q[j] < 1.0)
            work[ns++] = (uint32_t)j;
        else
            work[N - 1 - nl++] = (uint32_t)j;
    }
    while (ns > 0 && nl > 0) {
        uint32_t l = work[--ns];
        uint32_t g = work[N - nl--];
        s->prob[l] = q[l];
        s->alias[l] = g;
        q[g] = (q[g] + q[l]) - 1.0;
        if (q[g] < 1.0)
            work[ns++] = g;
        else
            work[N - 1 - nl++] = g;
    }
    while (ns > 0) { /* only rounding leaves entries here */
        uint32_t l = work[--ns];
        s->prob[l] = 1.0;
        s->alias[l] = l;
    }
    while (nl > 0) {
        uint32_t g = work[N - nl--];
        s->prob[g] = 1.0;
        s->alias[g] = g;
    }
    free(q);
    free(work);
    return PSREC_OK;
}

static psrec_err build_popularity(psrec_sampler_t *s, const psrec_sampler_conf_t *c, char *err)
{
    const size_t N = s->n;
    if (!c->counts) return psrec_fail(err, PSREC_EINVAL, "popularity sampler: no item counts");
    if (!isfinite(c->alpha)) return psrec_fail(err, PSREC_EINVAL, "popularity sampler: alpha is not finite");
    if (N > UINT32_MAX) return psrec_fail(err, PSREC_EINVAL, "popularity sampler: %zu items exceed 2^32-1", N);
    s->logq = malloc(N * sizeof *s->logq);
    if (!s->logq) return psrec_fail(err, PSREC_ENOMEM, "popularity sampler: out of memory");
    psrec_err e = psrec_idmap_new(&s->index, N);
    if (e) return psrec_fail(err, e, "popularity sampler: cannot build the key index");
    for (size_t j = 0; j < N; j++) {
        int inserted = 0;
        uint64_t *slot = psrec_idmap_upsert(s->index, s->items[j], j, &inserted);
        if (!slot) return psrec_fail(err, PSREC_ENOMEM, "popularity sampler: out of memory");
        if (!inserted)
            return psrec_fail(err, PSREC_EINVAL, "popularity sampler: key %llu appears twice in the catalogue",
                              (unsigned long long)s->items[j]);
    }
    /* log w_j = alpha log(c_j + 1); log Q_j = log w_j - log sum w, with max subtraction. */
    double mx = -INFINITY;
    for (size_t j = 0; j < N; j++) {
        s->logq[j] = c->alpha * log((double)c->counts[j] + 1.0);
        if (s->logq[j] > mx) mx = s->logq[j];
    }
    double z = 0.0;
    for (size_t j = 0; j < N; j++)
        z += exp(s->logq[j] - mx);
    double lz = mx + log(z);
    for (size_t j = 0; j < N; j++)
        s->logq[j] -= lz;
    s->logq_unknown = 0.0 - lz; /* count 0: log w = alpha log 1 = 0 */
    e = build_alias(s);
    if (e) return psrec_fail(err, e, "popularity sampler: out of memory");
    return PSREC_OK;
}

psrec_err psrec_sampler_new(psrec_sampler_t **sp, const psrec_sampler_conf_t *c, char *err)
{
    if (!sp || !c) return psrec_fail(err, PSREC_EINVAL, "sampler: NULL argument");
    *sp = NULL;
    if ((unsigned)c->kind > PSREC_SAMPLER_ALL)
        return psrec_fail(err, PSREC_EINVAL, "sampler: unknown kind %d", c->kind);
    if (c->n_items == 0 || !c->items) return psrec_fail(err, PSREC_EINVAL, "sampler: empty item catalogue");
    psrec_sampler_t *s = calloc(1, sizeof *s);
    if (!s) return psrec_fail(err, PSREC_ENOMEM, "sampler: out of memory");
    s->kind = c->kind;
    s->n = c->n_items;
    s->H = c->hash_size ? c->hash_size : (size_t)1 << 20;
    s->rate = c->rate != 0.0 ? c->rate : 0.01;
    s->T = c->temperature != 0.0 ? c->temperature : 1.0;
    psrec_err e = PSREC_OK;

    s->items = malloc(s->n * sizeof *s->items);
    if (!s->items) {
        e = psrec_fail(err, PSREC_ENOMEM, "sampler: out of memory");
        goto fail;
    }
    memcpy(s->items, c->items, s->n * sizeof *s->items);

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
        int found = 0;
        uint64_t j = psrec_idmap_get(s->index, key, &found);
        return (float)(log((double)S) + (found ? s->logq[j] : s->logq_unknown));
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
    return psrec_rng_uniform(rng) < s->prob[i] ? i : s->alias[i];
}

static void draw_uniform(const psrec_sampler_t *s, psrec_rng_t *rng, size_t S, uint64_t *keys)
{
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
            keys[i] = s->items[j];
            logE[i] = (float)(ls + s->logq[j]);
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
        memcpy(keys, s->items, s->n * sizeof *keys);
        for (size_t i = 0; i < s->n; i++)
            logE[i] = 0.0f;
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
    if (!rng || !pool || !score || !keys || !logE || M == 0) return PSREC_EINVAL;
    const double invT = 1.0 / s->T;
    double mx = -INFINITY;
    for (size_t k = 0; k < M; k++) {
        if (isnan(score[k]) || score[k] == INFINITY) return PSREC_EINVAL;
        double a = score[k] * invT;
        if (a > mx) mx = a;
    }
    if (mx == -INFINITY) return PSREC_EINVAL; /* no candidate with positive probability */
    double *cum = malloc(M * sizeof *cum);
    if (!cum) return PSREC_ENOMEM;
    double acc = 0.0;
    for (size_t k = 0; k < M; k++) {
        acc += exp(score[k] * invT - mx);
        cum[k] = acc;
    }
    const double lse = mx + log(acc);
    const double base = log((double)h) + log((double)M / (double)s->n);
    for (size_t i = 0; i < h; i++) {
        double u = psrec_rng_uniform(rng) * acc;
        size_t lo = 0, hi = M - 1; /* first k with cum[k] > u (exists: u < acc = cum[M-1]) */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cum[mid] > u)
                hi = mid;
            else
                lo = mid + 1;
        }
        keys[i] = pool[lo];
        logE[i] = (float)(base + score[lo] * invT - lse);
    }
    free(cum);
    return PSREC_OK;
}

psrec_err psrec_sampler_draw_probs(const psrec_sampler_t *s, double *q, size_t n)
{
    if (!s || !q || n != s->n) return PSREC_EINVAL;
    const double invN = 1.0 / (double)s->n;
    switch (s->kind) {
    case PSREC_SAMPLER_POPULARITY:
        for (size_t i = 0; i < n; i++)
            q[i] = s->prob[i];
        for (size_t k = 0; k < n; k++)
            if (s->alias[k] != k) q[s->alias[k]] += 1.0 - s->prob[k];
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

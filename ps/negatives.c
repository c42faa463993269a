/* negatives.c: a shard's part of a sampled softmax with server-side negatives (ps/negatives.h).
 *
 * Design: the same shared-candidate GEMM form as the worker's loss (worker/loss.c), cut where the
 * negatives' contribution to each row is a scalar (lse_kb) plus a d-vector (ybar_kb):
 *   score: Z = U V^T (GEMM), per row subtract log E, mask hits (common/hits.h), softmax within the
 *          shard (Z becomes pi), ybar = pi V (GEMM);
 *   gradients: G = diag(w) pi, dV = G^T U (GEMM), summed per key (draws repeat keys).
 * The part keeps U, the keys and pi between the two messages, so the gradient uses the rows as they
 * were scored even if other workers' pushes changed them meanwhile (as the worker-side path does).
 * Thread model: a part belongs to one thread; the store is thread-safe. */
#include "ps/negatives.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fastmath.h"
#include "common/grow.h"
#include "common/hard.h"
#include "common/hits.h"

struct psrec_negpart {
    int B, d, S;
    float *U;           /* B x d */
    uint64_t *keys;     /* S */
    float *logE, *V;    /* S, S x d (draw_score's scratch) */
    float *Z;           /* B x S: logits, then pi */
    psrec_keyidx_t *ks; /* S sorted by key */
    float *dV;          /* S x d */
    uint64_t *ukeys;    /* unique keys of the gradient */
    float *ugrads;      /* their summed gradients */
    /* hard negatives: the pool, its rows, B x pool scores, pool scores, the kept entries */
    uint64_t *pkeys;
    float *pV, *pZ, *pscore;
    uint32_t *pick;
    size_t cap_u, cap_s, cap_z, cap_ks, cap_le, cap_v, cap_dv, cap_uk, cap_ug;
    size_t cap_pk, cap_pv, cap_pz, cap_ps, cap_pick;
};

psrec_err psrec_negpart_new(psrec_negpart_t **p)
{
    *p = calloc(1, sizeof **p);
    return *p ? PSREC_OK : PSREC_ENOMEM;
}

void psrec_negpart_destroy(psrec_negpart_t **p)
{
    if (!p || !*p) return;
    psrec_negpart_t *x = *p;
    void *ptrs[] = {x->U,     x->keys,   x->logE,  x->V,  x->Z,  x->ks,     x->dV,
                    x->ukeys, x->ugrads, x->pkeys, x->pV, x->pZ, x->pscore, x->pick};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
        free(ptrs[i]);
    free(x);
    *p = NULL;
}

size_t psrec_negpart_bytes(const psrec_negpart_t *p)
{
    return p->cap_u * sizeof(float) + p->cap_s * sizeof(uint64_t) + p->cap_z * sizeof(float) +
           p->cap_ks * sizeof(psrec_keyidx_t) + p->cap_le * sizeof(float) + p->cap_v * sizeof(float) +
           p->cap_dv * sizeof(float) + p->cap_uk * sizeof(uint64_t) + p->cap_ug * sizeof(float) +
           p->cap_pk * sizeof(uint64_t) + p->cap_pv * sizeof(float) + p->cap_pz * sizeof(float) +
           p->cap_ps * sizeof(float) + p->cap_pick * sizeof(uint32_t);
}

void psrec_negpart_shape(const psrec_negpart_t *p, int *B, int *d)
{
    *B = p->B;
    *d = p->d;
}

static psrec_err check_batch(const psrec_negbatch_t *b, int S, char *err)
{
    if (b->B < 0 || b->d < 1 || S < 0)
        return psrec_fail(err, PSREC_EINVAL, "batch %d x %d, %d negatives", b->B, b->d, S);
    if (b->B > 0 && (!b->U || !b->pos_off)) return psrec_fail(err, PSREC_EINVAL, "batch without rows or offsets");
    if (b->B > 0 && b->pos_off[0] != 0)
        return psrec_fail(err, PSREC_EINVAL, "positive offsets start at %u", b->pos_off[0]);
    for (int i = 0; i < b->B; i++)
        if (b->pos_off[i + 1] < b->pos_off[i])
            return psrec_fail(err, PSREC_EINVAL, "positive offsets decrease at row %d", i);
    if (b->B > 0 && b->pos_off[b->B] > 0 && !b->pos_key) return psrec_fail(err, PSREC_EINVAL, "no positive keys");
    return PSREC_OK;
}

psrec_err psrec_negpart_score_rows(psrec_negpart_t *p, const psrec_negbatch_t *b, int S, const uint64_t *keys,
                                   const float *logE, const float *V, float *lse, float *ybar, char *err)
{
    psrec_err rc = check_batch(b, S, err);
    if (rc) return rc;
    if (S > 0 && (!keys || !V)) return psrec_fail(err, PSREC_EINVAL, "negatives without keys or rows");
    const int B = b->B, d = b->d;
    size_t BS = (size_t)B * (size_t)S;
    if (psrec_grow((void **)&p->U, &p->cap_u, (size_t)B * d + 1, sizeof(float)) ||
        psrec_grow((void **)&p->keys, &p->cap_s, (size_t)S + 1, sizeof *p->keys) ||
        psrec_grow((void **)&p->Z, &p->cap_z, BS + 1, sizeof(float)) ||
        psrec_grow((void **)&p->ks, &p->cap_ks, (size_t)S + 1, sizeof *p->ks))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory scoring %d x %d negatives", B, S);
    p->B = B;
    p->d = d;
    p->S = S;
    if (B > 0) memcpy(p->U, b->U, (size_t)B * d * sizeof(float));
    if (S > 0 && keys != p->keys) memcpy(p->keys, keys, (size_t)S * sizeof *keys);
    if (B == 0) return PSREC_OK;
    if (S == 0) {
        for (int i = 0; i < B; i++)
            lse[i] = -INFINITY;
        memset(ybar, 0, (size_t)B * d * sizeof(float));
        return PSREC_OK;
    }
    float *Z = p->Z;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, S, d, 1.0f, b->U, d, V, d, 0.0f, Z, S);
    psrec_hits_sort(p->ks, keys, (size_t)S);
    for (int i = 0; i < B; i++) {
        float *z = Z + (size_t)i * S;
        uint32_t p0 = b->pos_off[i], p1 = b->pos_off[i + 1];
        lse[i] = -INFINITY;
        if (p0 == p1) { /* contributes nothing (the worker's loss skips such rows) */
            memset(z, 0, (size_t)S * sizeof(float));
            continue;
        }
        if (logE) cblas_saxpy(S, -1.0f, logE, 1, z, 1);
        psrec_hits_mask(p->ks, (size_t)S, b->pos_key + p0, p1 - p0, z);
        float m = psrec_max(z, (size_t)S);
        if (m == -INFINITY) { /* every negative is a positive of this row */
            memset(z, 0, (size_t)S * sizeof(float));
            continue;
        }
        double sum = psrec_exp_shift_sum(z, (size_t)S, m);
        psrec_scale_inplace(z, (size_t)S, (float)(1.0 / sum));
        lse[i] = (float)(m + log(sum));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, S, 1.0f, Z, S, V, d, 0.0f, ybar, d);
    return PSREC_OK;
}

/* Hard negatives: a uniform pool of `pool` rows, scored against the batch, S kept (common/hard.h) into
 * p->keys / p->logE / p->V. */
static psrec_err mine(psrec_negpart_t *p, psrec_store_t *store, uint32_t table, psrec_rng_t *rng,
                      const psrec_negbatch_t *b, const psrec_negdraw_t *dr, uint64_t rows, char *err)
{
    size_t M = (size_t)dr->pool, d = (size_t)b->d;
    if (psrec_grow((void **)&p->pkeys, &p->cap_pk, M, sizeof *p->pkeys) ||
        psrec_grow((void **)&p->pV, &p->cap_pv, M * d, sizeof(float)) ||
        psrec_grow((void **)&p->pZ, &p->cap_pz, M * (size_t)b->B, sizeof(float)) ||
        psrec_grow((void **)&p->pscore, &p->cap_ps, M, sizeof(float)) ||
        psrec_grow((void **)&p->pick, &p->cap_pick, (size_t)dr->S + 1, sizeof *p->pick))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory for a pool of %zu negatives", M);
    psrec_err rc = psrec_store_sample(store, table, rng, M, p->pkeys, &rows);
    if (!rc) rc = psrec_store_pull(store, table, p->pkeys, M, p->pV);
    if (rc) return psrec_fail(err, rc, "reading a pool of %zu negatives: %s", M, psrec_strerror(rc));
    psrec_hard_pool_scores(b->B, (int)M, b->d, b->U, p->pV, p->pZ, p->pscore);
    rc = psrec_hard_draw(rng, p->pscore, M, dr->temperature, (size_t)dr->S, log((double)M / (double)rows), p->pick,
                         p->logE);
    if (rc) return psrec_fail(err, rc, "hard negatives: %s", psrec_strerror(rc));
    for (int j = 0; j < dr->S; j++) {
        p->keys[j] = p->pkeys[p->pick[j]];
        memcpy(p->V + (size_t)j * d, p->pV + (size_t)p->pick[j] * d, d * sizeof(float));
    }
    return PSREC_OK;
}

psrec_err psrec_negpart_draw_score(psrec_negpart_t *p, psrec_store_t *store, uint32_t table, psrec_rng_t *rng,
                                   const psrec_negbatch_t *b, const psrec_negdraw_t *dr, float *lse, float *ybar,
                                   float *logE, char *err)
{
    int S = dr->S;
    psrec_err rc = check_batch(b, S, err);
    if (rc) return rc;
    if (dr->pool < 0 || (dr->pool > 0 && !(dr->temperature > 0)))
        return psrec_fail(err, PSREC_EINVAL, "a pool of %d negatives at temperature %g", dr->pool, dr->temperature);
    uint32_t dim = psrec_store_dim(store, table);
    if (!dim) return psrec_fail(err, PSREC_ENOTFOUND, "no table %u", table);
    if ((int)dim != b->d) return psrec_fail(err, PSREC_EPROTO, "table %u has dim %u, the batch %d", table, dim, b->d);
    if (psrec_grow((void **)&p->keys, &p->cap_s, (size_t)S + 1, sizeof *p->keys) ||
        psrec_grow((void **)&p->logE, &p->cap_le, (size_t)S + 1, sizeof(float)) ||
        psrec_grow((void **)&p->V, &p->cap_v, (size_t)S * dim + 1, sizeof(float)))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory for %d negatives", S);
    uint64_t rows = psrec_store_rows(store, table);
    int got = rows ? S : 0;
    *logE = 0.0f;
    if (got && dr->pool > 0) {
        if ((rc = mine(p, store, table, rng, b, dr, rows, err))) return rc;
        *logE = (float)log((double)dr->pool / (double)rows);
    } else if (got) {
        if ((rc = psrec_store_sample(store, table, rng, (size_t)S, p->keys, &rows)))
            return psrec_fail(err, rc, "sampling table %u: %s", table, psrec_strerror(rc));
        *logE = (float)log((double)S / (double)rows);
        for (int j = 0; j < got; j++)
            p->logE[j] = *logE;
        if ((rc = psrec_store_pull(store, table, p->keys, (size_t)got, p->V)))
            return psrec_fail(err, rc, "reading %d negatives: %s", got, psrec_strerror(rc));
    }
    /* p->keys already holds the draw (score_rows keeps it in place: no realloc, the capacity suffices) */
    return psrec_negpart_score_rows(p, b, got, p->keys, p->logE, p->V, lse, ybar, err);
}

psrec_err psrec_negpart_gradients(psrec_negpart_t *p, const float *w, const uint64_t *extra_keys,
                                  const float *extra_grads, size_t n_extra, const uint64_t **keys, const float **grads,
                                  size_t *n, char *err)
{
    const int B = p->B, d = p->d, S = B > 0 ? p->S : 0;
    *n = 0;
    *keys = p->ukeys;
    *grads = p->ugrads;
    if (S == 0 && n_extra == 0) return PSREC_OK;
    if (n_extra > 0 && (d < 1 || !extra_keys || !extra_grads))
        return psrec_fail(err, PSREC_EINVAL, "gradient rows without a scored batch");
    if ((uint64_t)S + n_extra >= UINT32_MAX) return psrec_fail(err, PSREC_EMSGSIZE, "%zu gradient rows", n_extra);
    for (int i = 0; i < B && S > 0; i++)
        if (!isfinite(w[i])) return psrec_fail(err, PSREC_EINVAL, "weight of row %d is not finite", i);
    size_t all = (size_t)S + n_extra;
    if (psrec_grow((void **)&p->dV, &p->cap_dv, (size_t)S * d + 1, sizeof(float)) ||
        psrec_grow((void **)&p->ukeys, &p->cap_uk, all, sizeof *p->ukeys) ||
        psrec_grow((void **)&p->ugrads, &p->cap_ug, all * d, sizeof(float)) ||
        psrec_grow((void **)&p->ks, &p->cap_ks, all, sizeof *p->ks))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory for %zu gradient rows", all);
    if (S > 0) { /* G = diag(w) pi in place (pi is not needed again), dV = G^T U */
        for (int i = 0; i < B; i++)
            cblas_sscal(S, w[i], p->Z + (size_t)i * S, 1);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, d, B, 1.0f, p->Z, S, p->U, d, 0.0f, p->dV, d);
    }
    /* every row (negatives first, then the caller's), sorted by key and summed per key: one update per key */
    for (int j = 0; j < S; j++)
        p->ukeys[j] = p->keys[j];
    memcpy(p->ukeys + S, extra_keys, n_extra * sizeof *extra_keys);
    psrec_hits_sort(p->ks, p->ukeys, all); /* reads ukeys before the loop below overwrites it in place */
    size_t u = 0;
    for (size_t j = 0; j < all; j++) {
        const psrec_keyidx_t *e = &p->ks[j];
        const float *src = e->idx < (uint32_t)S ? p->dV + (size_t)e->idx * d : extra_grads + (size_t)(e->idx - S) * d;
        if (u > 0 && p->ukeys[u - 1] == e->key) {
            float *dst = p->ugrads + (u - 1) * d;
            for (int t = 0; t < d; t++)
                dst[t] += src[t];
        } else {
            p->ukeys[u] = e->key; /* u <= j: never past an entry still to be read (ks holds the keys) */
            memcpy(p->ugrads + u * d, src, (size_t)d * sizeof(float));
            u++;
        }
    }
    p->S = 0; /* applied once: a second call has nothing to give */
    *keys = p->ukeys;
    *grads = p->ugrads;
    *n = u;
    return PSREC_OK;
}

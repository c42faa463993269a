/* wals.c: weighted ALS for implicit feedback (ALGORITHMS.md §6). Each half-sweep fixes one side X,
 * computes G = X^T X once (double, via dsyrk on double chunks of X), then solves every row of the
 * other side exactly: (w0 G + sum_j c_j x_j x_j^T + lambda I) u = sum_j (w0 + c_j) x_j, by Cholesky
 * (LAPACK dpotrf/dpotrs from OpenBLAS, called through the Fortran symbols).
 * Key design decision: the d x d systems are formed and solved in double, so a row update is the exact
 * minimiser up to the final rounding to float and the objective decreases monotonically.
 * Thread model: psrec_wals_train starts conf->threads pthreads per half-sweep; they take blocks of
 * rows from an atomic counter, each with its own scratch, and write disjoint rows. */
#include "worker/wals.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

extern void dpotrf_(char *uplo, int *n, double *a, int *lda, int *info);
extern void dpotrs_(char *uplo, int *n, int *nrhs, double *a, int *lda, double *b, int *ldb, int *info);

#define ROW_BLOCK 32
#define GRAM_CHUNK 1024

void psrec_wals_defaults(psrec_wals_conf_t *c)
{
    *c = (psrec_wals_conf_t){.dim = 32, .w0 = 0.1, .lambda = 0.1, .alpha = 1.0, .sweeps = 10, .threads = 2, .seed = 1};
}

psrec_err psrec_wals_check(const psrec_wals_conf_t *c, char *err)
{
    if (c->dim < 1 || c->dim > 4096) return psrec_fail(err, PSREC_EINVAL, "wals: dim %d not in 1..4096", c->dim);
    if (!(c->w0 >= 0 && isfinite(c->w0))) return psrec_fail(err, PSREC_EINVAL, "wals: w0 must be >= 0");
    if (!(c->lambda > 0 && isfinite(c->lambda))) return psrec_fail(err, PSREC_EINVAL, "wals: lambda must be > 0");
    if (!(c->alpha >= 0 && isfinite(c->alpha))) return psrec_fail(err, PSREC_EINVAL, "wals: alpha must be >= 0");
    if (c->sweeps < 1) return psrec_fail(err, PSREC_EINVAL, "wals: sweeps must be >= 1");
    if (c->threads < 1 || c->threads > 256) return psrec_fail(err, PSREC_EINVAL, "wals: threads not in 1..256");
    return PSREC_OK;
}

void psrec_wals_gram(const float *X, size_t n, int d, double *G)
{
    memset(G, 0, (size_t)d * d * sizeof *G);
    double *buf = malloc((size_t)GRAM_CHUNK * d * sizeof *buf);
    if (!buf) { /* fall back to the scalar form (same result, slower) */
        for (size_t i = 0; i < n; i++)
            for (int r = 0; r < d; r++)
                for (int c = 0; c < d; c++)
                    G[r * d + c] += (double)X[i * d + r] * X[i * d + c];
        return;
    }
    for (size_t i = 0; i < n; i += GRAM_CHUNK) {
        size_t m = n - i < GRAM_CHUNK ? n - i : GRAM_CHUNK;
        for (size_t k = 0; k < m * (size_t)d; k++)
            buf[k] = X[i * d + k];
        /* upper triangle of G (row-major) += buf^T buf */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, (int)m, 1.0, buf, d, 1.0, G, d);
    }
    free(buf);
    for (int r = 0; r < d; r++)
        for (int c = 0; c < r; c++)
            G[r * d + c] = G[c * d + r];
}

/* Solves one row. A (d*d) and b (d) are scratch. Returns 0 or the LAPACK info. */
static int solve_row(const float *X, const double *G, int d, const uint32_t *idx, const float *w, size_t n,
                     const psrec_wals_conf_t *c, double *A, double *b, float *out)
{
    double w0 = c->w0;
    for (int r = 0; r < d; r++) {
        for (int k = r; k < d; k++)
            A[r * d + k] = w0 * G[r * d + k];
        A[r * d + r] += c->lambda;
        b[r] = 0;
    }
    for (size_t t = 0; t < n; t++) {
        const float *x = X + (size_t)idx[t] * d;
        double cc = c->alpha * w[t];
        for (int r = 0; r < d; r++) {
            double xr = x[r], cr = cc * xr;
            double *a = A + r * d;
            for (int k = r; k < d; k++)
                a[k] += cr * x[k];
            b[r] += (w0 + cc) * xr;
        }
    }
    /* row-major upper triangle = column-major lower triangle */
    char uplo = 'L';
    int dd = d, one = 1, info = 0;
    dpotrf_(&uplo, &dd, A, &dd, &info);
    if (info) return info;
    dpotrs_(&uplo, &dd, &one, A, &dd, b, &dd, &info);
    if (info) return info;
    for (int r = 0; r < d; r++)
        out[r] = (float)b[r];
    return 0;
}

psrec_err psrec_wals_fold_in(const float *V, const double *G, const uint32_t *items, const float *weights, size_t n,
                             const psrec_wals_conf_t *c, float *u, double *work)
{
    double *own = NULL;
    if (!work && !(work = own = malloc(PSREC_WALS_WORK(c->dim) * sizeof *work))) return PSREC_ENOMEM;
    int info = solve_row(V, G, c->dim, items, weights, n, c, work, work + (size_t)c->dim * c->dim, u);
    free(own);
    return info ? PSREC_EINVAL : PSREC_OK;
}

/* ---- one half-sweep, multi-threaded ---- */

typedef struct {
    const psrec_wals_conf_t *c;
    const float *X; /* fixed side */
    const double *G;
    float *out; /* rows being solved */
    size_t n_rows;
    const size_t *off;
    const uint32_t *idx;
    const float *w;
    size_t next; /* atomic: next row block */
    int fail;    /* atomic: a row system was not positive definite */
} half_t;

typedef struct {
    half_t *h;
    double *work;
} worker_t;

static void *half_worker(void *arg)
{
    worker_t *wk = arg;
    half_t *h = wk->h;
    int d = h->c->dim;
    for (;;) {
        size_t r0 = __atomic_fetch_add(&h->next, ROW_BLOCK, __ATOMIC_RELAXED);
        if (r0 >= h->n_rows) break;
        size_t r1 = r0 + ROW_BLOCK < h->n_rows ? r0 + ROW_BLOCK : h->n_rows;
        for (size_t i = r0; i < r1; i++) {
            size_t o = h->off[i];
            if (solve_row(h->X, h->G, d, h->idx + o, h->w + o, h->off[i + 1] - o, h->c, wk->work,
                          wk->work + (size_t)d * d, h->out + i * d))
                __atomic_store_n(&h->fail, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

static psrec_err half_sweep(const psrec_wals_conf_t *c, const float *X, size_t n_x, double *G, float *out,
                            size_t n_rows, const size_t *off, const uint32_t *idx, const float *w, worker_t *wk,
                            char *err)
{
    psrec_wals_gram(X, n_x, c->dim, G);
    half_t h = {.c = c, .X = X, .G = G, .out = out, .n_rows = n_rows, .off = off, .idx = idx, .w = w};
    pthread_t tid[256];
    int started = 0;
    for (int t = 1; t < c->threads; t++) {
        wk[t].h = &h;
        if (pthread_create(&tid[started], NULL, half_worker, &wk[t]) == 0) started++;
    }
    wk[0].h = &h;
    half_worker(&wk[0]); /* this thread works too; it alone suffices if pthread_create failed */
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    if (h.fail) return psrec_fail(err, PSREC_EINVAL, "wals: a row system is not positive definite");
    return PSREC_OK;
}

/* ---- objective ---- */

psrec_err psrec_wals_objective(const psrec_wals_conf_t *c, const psrec_wals_csr_t *obs, const float *U, const float *V,
                               double *out)
{
    int d = c->dim;
    double *GU = malloc((size_t)d * d * sizeof *GU), *GV = malloc((size_t)d * d * sizeof *GV);
    if (!GU || !GV) {
        free(GU);
        free(GV);
        return PSREC_ENOMEM;
    }
    psrec_wals_gram(U, obs->n_rows, d, GU);
    psrec_wals_gram(V, obs->n_cols, d, GV);
    double data = 0, tr = 0, reg = 0;
    for (size_t i = 0; i < obs->n_rows; i++)
        for (size_t k = obs->off[i]; k < obs->off[i + 1]; k++) {
            const float *u = U + i * d, *v = V + (size_t)obs->idx[k] * d;
            double s = 0;
            for (int r = 0; r < d; r++)
                s += (double)u[r] * v[r];
            double cc = c->alpha * obs->w[k];
            data += (c->w0 + cc) * (1 - s) * (1 - s) - c->w0 * s * s;
        }
    for (size_t k = 0; k < (size_t)d * d; k++)
        tr += GU[k] * GV[k]; /* tr(GU GV) = sum GU .* GV^T, both symmetric */
    for (int r = 0; r < d; r++)
        reg += GU[r * d + r] + GV[r * d + r];
    free(GU);
    free(GV);
    *out = data + c->w0 * tr + c->lambda * reg;
    return PSREC_OK;
}

/* ---- training ---- */

psrec_err psrec_wals_train(const psrec_wals_conf_t *c, const psrec_wals_csr_t *obs, float *U, float *V,
                           psrec_wals_progress_fn progress, void *ctx, char *err)
{
    psrec_err rc = psrec_wals_check(c, err);
    if (rc) return rc;
    size_t nu = obs->n_rows, ni = obs->n_cols, nnz = obs->off[nu];
    int d = c->dim;
    if (ni > UINT32_MAX || nu > UINT32_MAX) return psrec_fail(err, PSREC_EINVAL, "wals: too many rows");
    /* transpose: by item, users in ascending order (so a duplicate pair shows as a repeat) */
    size_t *toff = calloc(ni + 1, sizeof *toff);
    uint32_t *tidx = malloc(nnz * sizeof *tidx + 1);
    float *tw = malloc(nnz * sizeof *tw + 1);
    double *G = malloc((size_t)d * d * sizeof *G);
    worker_t *wk = calloc((size_t)c->threads, sizeof *wk);
    double *work = malloc((size_t)c->threads * PSREC_WALS_WORK(d) * sizeof *work);
    if (!toff || !tidx || !tw || !G || !wk || !work) rc = psrec_fail(err, PSREC_ENOMEM, "wals: out of memory");
    for (size_t i = 0; !rc && i < nu; i++) {
        if (obs->off[i + 1] < obs->off[i]) rc = psrec_fail(err, PSREC_EINVAL, "wals: offsets not ascending");
        for (size_t k = obs->off[i]; !rc && k < obs->off[i + 1]; k++) {
            if (obs->idx[k] >= ni)
                rc = psrec_fail(err, PSREC_EINVAL, "wals: item index %u out of range", obs->idx[k]);
            else if (!(obs->w[k] >= 0 && isfinite(obs->w[k])))
                rc = psrec_fail(err, PSREC_EINVAL, "wals: bad observation weight");
            else
                toff[obs->idx[k] + 1]++;
        }
    }
    if (!rc) {
        for (size_t j = 0; j < ni; j++)
            toff[j + 1] += toff[j];
        size_t *fill = malloc(ni * sizeof *fill + 1);
        if (!fill)
            rc = psrec_fail(err, PSREC_ENOMEM, "wals: out of memory");
        else {
            memcpy(fill, toff, ni * sizeof *fill);
            for (size_t i = 0; i < nu; i++)
                for (size_t k = obs->off[i]; k < obs->off[i + 1]; k++) {
                    size_t p = fill[obs->idx[k]]++;
                    if (p > toff[obs->idx[k]] && tidx[p - 1] == (uint32_t)i)
                        rc = psrec_fail(err, PSREC_EINVAL, "wals: user %zu observes item %u twice", i, obs->idx[k]);
                    tidx[p] = (uint32_t)i;
                    tw[p] = obs->w[k];
                }
            free(fill);
        }
    }
    if (!rc) {
        for (int t = 0; t < c->threads; t++)
            wk[t].work = work + (size_t)t * PSREC_WALS_WORK(d);
        psrec_rng_t rng;
        psrec_rng_seed(&rng, c->seed, 0x3a15);
        double sd = 0.1 / sqrt((double)d);
        for (size_t k = 0; k < ni * (size_t)d; k++)
            V[k] = (float)(sd * psrec_rng_normal(&rng));
        memset(U, 0, nu * (size_t)d * sizeof *U);
    }
    for (int s = 0; !rc && s < c->sweeps; s++) {
        rc = half_sweep(c, V, ni, G, U, nu, obs->off, obs->idx, obs->w, wk, err);
        if (!rc) rc = half_sweep(c, U, nu, G, V, ni, toff, tidx, tw, wk, err);
        if (!rc && progress) {
            double f;
            if ((rc = psrec_wals_objective(c, obs, U, V, &f)))
                psrec_fail(err, rc, "wals: out of memory");
            else
                progress(ctx, s + 1, f);
        }
    }
    if (!rc) rc = half_sweep(c, V, ni, G, U, nu, obs->off, obs->idx, obs->w, wk, err);
    free(toff);
    free(tidx);
    free(tw);
    free(G);
    free(wk);
    free(work);
    return rc;
}

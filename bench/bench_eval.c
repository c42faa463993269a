/* bench_eval.c: queries/s of psrec_eval_run (Q=2000, N=100000, d=64, K=10) with 1 and 2 threads,
 * with and without folding metrics, against the bare GEMMs of the same shapes (128 x 1024 tiles, the
 * blocking eval.c uses) over the same Q x N score matrix, run in this program.
 * Usage: bench_eval [Q N d K]. Best of 5 runs per line. */
#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/blas_check.h"
#include "common/rng.h"
#include "worker/eval.h"

enum { QB = 128, TILE = 1024 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const float *U, *V;
    size_t Q, N;
    int d, part, nparts;
} gemm_job_t;

static void *bare_gemms(void *arg)
{
    gemm_job_t *g = arg;
    float *S = malloc((size_t)QB * TILE * sizeof *S);
    size_t nb = (g->Q + QB - 1) / QB;
    for (size_t b = (size_t)g->part; b < nb; b += (size_t)g->nparts) {
        size_t q0 = b * QB, nq = g->Q - q0 < QB ? g->Q - q0 : QB;
        for (size_t t0 = 0; t0 < g->N; t0 += TILE) {
            size_t T = g->N - t0 < TILE ? g->N - t0 : TILE;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)T, g->d, 1.0f, g->U + q0 * g->d, g->d,
                        g->V + t0 * g->d, g->d, 0.0f, S, (int)T);
        }
    }
    free(S);
    return NULL;
}

static double time_gemms(const float *U, const float *V, size_t Q, size_t N, int d, int threads)
{
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        gemm_job_t g[2];
        pthread_t tid;
        double t = now();
        for (int p = 0; p < threads; p++)
            g[p] = (gemm_job_t){U, V, Q, N, d, p, threads};
        if (threads > 1) pthread_create(&tid, NULL, bare_gemms, &g[1]);
        bare_gemms(&g[0]);
        if (threads > 1) pthread_join(tid, NULL);
        t = now() - t;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    psrec_blas_fix(argv);
    size_t Q = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
    size_t N = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
    int d = argc > 3 ? atoi(argv[3]) : 64;
    int K = argc > 4 ? atoi(argv[4]) : 10;
    const int nrel = 5, nexcl = 50, ncat = 100;

    psrec_rng_t r;
    psrec_rng_seed(&r, 1, 0);
    float *U = malloc(Q * d * sizeof *U), *V = malloc(N * d * sizeof *V);
    for (size_t i = 0; i < Q * d; i++)
        U[i] = (float)psrec_rng_normal(&r);
    for (size_t i = 0; i < N * d; i++)
        V[i] = (float)psrec_rng_normal(&r) * 0.1f;
    uint32_t *rel_off = malloc((Q + 1) * sizeof *rel_off), *rel = malloc(Q * nrel * sizeof *rel);
    uint32_t *ex_off = malloc((Q + 1) * sizeof *ex_off), *ex = malloc(Q * nexcl * sizeof *ex);
    uint32_t *home_off = malloc((Q + 1) * sizeof *home_off), *home = malloc(Q * sizeof *home);
    int32_t *cat = malloc(N * sizeof *cat);
    for (size_t j = 0; j < N; j++)
        cat[j] = (int32_t)(j % ncat);
    rel_off[0] = ex_off[0] = home_off[0] = 0;
    for (size_t q = 0; q < Q; q++) {
        for (int t = 0; t < nrel; t++)
            rel[q * nrel + t] = (uint32_t)psrec_rng_below(&r, N);
        for (int t = 0; t < nexcl; t++)
            ex[q * nexcl + t] = (uint32_t)psrec_rng_below(&r, N);
        home[q] = (uint32_t)psrec_rng_below(&r, ncat);
        rel_off[q + 1] = rel_off[q] + nrel;
        ex_off[q + 1] = ex_off[q] + nexcl;
        home_off[q + 1] = home_off[q] + 1;
    }

    printf("bench_eval: Q=%zu N=%zu d=%d K=%d; OpenBLAS %s core=%s threads=%d\n", Q, N, d, K, openblas_get_config(),
           openblas_get_corename(), openblas_get_num_threads());
    double g1 = time_gemms(U, V, Q, N, d, 1), g2 = time_gemms(U, V, Q, N, d, 2);
    double gflop = 2.0 * Q * N * d * 1e-9;
    printf("bare GEMMs (%dx%d tiles), 1 caller thread : %.3f s  %.0f q/s  %.1f GFLOP/s\n", QB, TILE, g1, Q / g1,
           gflop / g1);
    printf("bare GEMMs (%dx%d tiles), 2 caller threads: %.3f s  %.0f q/s  %.1f GFLOP/s\n", QB, TILE, g2, Q / g2,
           gflop / g2);
    for (int fold = 0; fold < 2; fold++)
        for (int th = 1; th <= 2; th++) {
            psrec_eval_in_t in = {
                .Q = Q,
                .N = N,
                .d = d,
                .U = U,
                .V = V,
                .rel_off = rel_off,
                .rel_idx = rel,
                .excl_off = ex_off,
                .excl_idx = ex,
                .item_cat = fold ? cat : NULL,
                .home_off = fold ? home_off : NULL,
                .home_cat = fold ? home : NULL,
                .k = K,
                .threads = th,
            };
            psrec_eval_result_t res;
            double best = 1e30;
            for (int rep = 0; rep < 5; rep++) {
                double t = now();
                psrec_err e = psrec_eval_run(&in, &res);
                t = now() - t;
                if (e) {
                    fprintf(stderr, "psrec_eval_run: %s\n", psrec_errname(e));
                    return 1;
                }
                if (t < best) best = t;
            }
            double gref = th == 1 ? g1 : g2;
            printf("eval %-7s threads=%d: %.3f s  %.0f q/s  time/bare-GEMM(%d caller) = %.2f"
                   "  (recall %.4f mrr %.5f%s)\n",
                   fold ? "+fold" : "", th, best, Q / best, th, best / gref, res.recall, res.mrr, fold ? "" : "");
            if (fold)
                printf("    fold %.4f chance %.4f auc %.4f foreign %.4f\n", res.fold, res.chance, res.fold_auc,
                       res.foreign_top_share);
        }
    free(U);
    free(V);
    free(rel_off);
    free(rel);
    free(ex_off);
    free(ex);
    free(home_off);
    free(home);
    free(cat);
    return 0;
}

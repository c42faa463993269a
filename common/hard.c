/* hard.c: hard-negative mining from a scored pool (common/hard.h). The draw inverts the cumulative
 * softmax by binary search (O(M + h log M)); sums in double. */
#include "common/hard.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

void psrec_hard_pool_scores(int B, int M, int d, const float *U, const float *V, float *Z, float *score)
{
    if (M <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, M, d, 1.0f, U, d, V, d, 0.0f, Z, M);
    for (int j = 0; j < M; j++) {
        float m = -INFINITY;
        for (int b = 0; b < B; b++)
            m = fmaxf(m, Z[(size_t)b * M + j]);
        double s = 0;
        for (int b = 0; b < B; b++)
            s += exp(Z[(size_t)b * M + j] - m);
        score[j] = (float)(m + log(s) - log((double)B));
    }
}

psrec_err psrec_hard_draw(psrec_rng_t *rng, const float *score, size_t M, double T, size_t h, double log_rate,
                          uint32_t *pick, float *logE)
{
    if (h == 0) return PSREC_OK;
    if (!(T > 0) || M == 0 || M > UINT32_MAX || !rng || !score || !pick || !logE) return PSREC_EINVAL;
    const double invT = 1.0 / T;
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
    const double base = log((double)h) + log_rate;
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
        pick[i] = (uint32_t)lo;
        logE[i] = (float)(base + score[lo] * invT - lse);
    }
    free(cum);
    return PSREC_OK;
}

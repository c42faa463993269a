/* hard.h: hard-negative mining from a scored pool (ALGORITHMS.md §3.5 b), shared by the worker's
 * sampler (worker/sampler.c, pool pulled from the servers) and by servers mining their own rows
 * (ps/negatives.c, pool never leaves the server).
 *
 * The pool score of candidate j is one proposal shared by the batch: the log-mean-exp over the rows
 * of u_b . v_j. h candidates are then drawn with replacement with probability softmax(score / T), and
 * each gets log E_j = log h + log_rate + s_j / T - LSE_k(s_k / T), where log_rate = log(M / N) is the
 * log of the pool's uniform draw rate (M draws from N rows): the expected count of j in the kept draws.
 * Thread model: pure functions; scratch belongs to the caller. */
#ifndef PSREC_HARD_H
#define PSREC_HARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/rng.h"

/* score[j] = log(mean_b exp(u_b . v_j)) for the M pool rows V (M x d) against U (B x d); Z is B x M
 * scratch (one GEMM). */
void psrec_hard_pool_scores(int B, int M, int d, const float *U, const float *V, float *Z, float *score);

/* Draws h of the M pool entries (indices into pick) with probability softmax(score / T) and fills logE
 * as above. PSREC_EINVAL for T <= 0, M == 0 with h > 0, a NaN or +inf score, or no candidate with a
 * positive probability; PSREC_ENOMEM. */
psrec_err psrec_hard_draw(psrec_rng_t *rng, const float *score, size_t M, double T, size_t h, double log_rate,
                          uint32_t *pick, float *logE) PSREC_MUST_CHECK;

#endif

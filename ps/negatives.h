/* negatives.h: one shard's part of a sampled softmax whose negatives live on the servers
 * (`--negatives-on servers`, docs/scaling.md). The worker sends its batch's query embeddings U (B x d)
 * and each row's positive keys to every server; each server draws its share S_k of the shared
 * negatives from its own rows and returns, per row b, the partial log-sum-exp over its negatives and
 * the softmax-weighted mean of their rows:
 *
 *   z_bj = u_b . v_j - log E_j            (log E_j = log(S_k / n_k): S_k uniform draws from n_k rows)
 *   lse_kb = log sum_j exp(z_bj)          (accidental hits, j a positive key of row b, masked out)
 *   ybar_kb = sum_j pi_bj v_j,            pi_bj = exp(z_bj - lse_kb)
 *
 * The worker combines the parts with its positives (psrec_loss_softmax_parts in worker/loss.h):
 * LSE_b = log(sum_k exp(lse_kb) + sum_pos exp(z_bp)), dU_b gets sum_k w_kb ybar_kb, and the weight
 * w_kb = mass_b exp(lse_kb - LSE_b) / B_eff goes back to server k, whose negatives' gradient is then
 * dv_j = sum_b w_kb pi_bj u_b: exactly the worker-side sampled softmax's for the same negatives, with
 * no negative row crossing the network. Stratifying the draw by shard (a fixed S_k per server) is
 * itself a proposal; log E_j above is the expected count of j under it, so the logQ correction is exact.
 *
 * Thread model: a part belongs to one thread (a server keeps one per worker rank between the two
 * messages). */
#ifndef PSREC_NEGATIVES_H
#define PSREC_NEGATIVES_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/rng.h"
#include "ps/store.h"

typedef struct psrec_negpart psrec_negpart_t;

/* The batch as the worker sends it. */
typedef struct {
    int B, d;
    const float *U;          /* B x d */
    const uint32_t *pos_off; /* B + 1 */
    const uint64_t *pos_key; /* pos_off[B]: row b's positives, for accidental-hit masking */
} psrec_negbatch_t;

psrec_err psrec_negpart_new(psrec_negpart_t **p) PSREC_MUST_CHECK;
void psrec_negpart_destroy(psrec_negpart_t **p);

/* How a shard draws its negatives. */
typedef struct {
    int S;              /* negatives scored */
    int pool;           /* 0: S uniform draws from the shard's rows; > 0: hard negatives (common/hard.h): a
                           uniform pool of this many rows scored against the batch, S of them kept with
                           probability softmax(pool score / T) - mined here, the pool never moves */
    double temperature; /* T of the hard draw (> 0) */
} psrec_negdraw_t;

/* Draws the negatives from the rows of `table` and scores them (psrec_negpart_score_rows). Uniform: log E =
 * log(S / rows); hard: the §3.5 correction per negative. *logE gets the log rate of the uniform draw,
 * log(S / rows) or log(pool / rows), which is what a positive key of this shard is corrected by (0 when
 * the table has no rows: nothing drawn, every lse is -inf). */
psrec_err psrec_negpart_draw_score(psrec_negpart_t *p, psrec_store_t *store, uint32_t table, psrec_rng_t *rng,
                                   const psrec_negbatch_t *b, const psrec_negdraw_t *draw, float *lse, float *ybar,
                                   float *logE, char *err) PSREC_MUST_CHECK;

/* Scores the given negatives (S keys, rows V (S x d), log E per negative or NULL) against the batch:
 * fills lse (B) and ybar (B x d) and keeps the batch (U copied) and the softmax weights for apply.
 * A row without positives, or whose negatives are all masked, gets lse -inf and ybar 0. */
psrec_err psrec_negpart_score_rows(psrec_negpart_t *p, const psrec_negbatch_t *b, int S, const uint64_t *keys,
                                   const float *logE, const float *V, float *lse, float *ybar,
                                   char *err) PSREC_MUST_CHECK;

/* Given the worker's weights w (B), computes the negatives' gradients and sums them per key with the
 * caller's own gradient rows for this shard (n_extra keys, extra_grads n_extra x d: the step's
 * positives, gravity rows...; none with n_extra 0), so that a key that is a positive of one row and a
 * negative of another gets one update per step, as the worker-side path gives it. *keys (sorted,
 * unique) and *grads (n x d) point into the part and stay valid until its next call. The negatives are
 * given once: a second call returns only the extra rows. */
psrec_err psrec_negpart_gradients(psrec_negpart_t *p, const float *w, const uint64_t *extra_keys,
                                  const float *extra_grads, size_t n_extra, const uint64_t **keys, const float **grads,
                                  size_t *n, char *err) PSREC_MUST_CHECK;

/* Bytes the part holds in its buffers (they are kept and reused between batches). */
size_t psrec_negpart_bytes(const psrec_negpart_t *p);

/* Batch size and row width of the scored batch (0, 0 before any score). */
void psrec_negpart_shape(const psrec_negpart_t *p, int *B, int *d);

#endif

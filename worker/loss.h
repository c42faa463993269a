/* loss.h: the training losses over a batch of query embeddings U (B x d), in the shared-candidate
 * (GEMM) form of ALGORITHMS.md §2.3.
 *
 * Candidates of row b are its positives (rows of Vpos, entries pos_off[b]..pos_off[b+1], target
 * weights pos_w summing to 1 per row) and the S shared negatives (rows of Vneg). A negative whose key
 * equals one of row b's positive keys is an accidental hit: masked (excluded from the LSE, gradient
 * exactly 0). Logits are s = u.v - logE (logE per positive entry and per negative; NULL = all 0).
 * Every loss is the mean over the B rows and fills dU (B x d), dVpos (P x d), dVneg (S x d) with the
 * gradient of that mean (each output is overwritten, never accumulated). Rows with no positives
 * contribute nothing. Rows of Vpos/Vneg may repeat keys; the caller scatter-adds gradients by key.
 *
 * Thread model: pure functions; the workspace belongs to the calling thread. */
#ifndef PSREC_LOSS_H
#define PSREC_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum {
    PSREC_LOSS_SOFTMAX = 0,   /* (sampled) softmax cross-entropy; full softmax = all items as negatives */
    PSREC_LOSS_LOGISTIC,      /* word2vec-style: softplus(-s_pos) weighted by p, + neg_weight * mean softplus(s_neg) */
    PSREC_LOSS_POSITIVES_ONLY /* softplus(-s_pos) weighted by p, no negatives at all: the configuration that folds */
} psrec_loss_kind;

typedef struct {
    int B, d;
    const float *U;          /* B x d */
    const uint32_t *pos_off; /* B+1 */
    const uint64_t *pos_key; /* P: for accidental-hit masking */
    const float *pos_w;      /* P, per-row target p */
    const float *pos_logE;   /* P or NULL */
    const float *Vpos;       /* P x d */
    int S;
    const uint64_t *neg_key; /* S */
    const float *neg_logE;   /* S or NULL */
    const float *Vneg;       /* S x d (may be NULL when S == 0) */
    float neg_weight;        /* LOGISTIC only: total weight of the negatives term per row (word2vec's k) */
} psrec_loss_in_t;

typedef struct {
    float *dU;    /* B x d */
    float *dVpos; /* P x d */
    float *dVneg; /* S x d */
} psrec_loss_out_t;

typedef struct psrec_loss_ws psrec_loss_ws_t; /* scratch buffers reused across calls */

psrec_err psrec_loss_ws_new(psrec_loss_ws_t **ws) PSREC_MUST_CHECK;
void psrec_loss_ws_destroy(psrec_loss_ws_t **ws);

/* Computes the loss value (*loss, mean over rows with positives) and, if out != NULL, gradients.
 * Errors: PSREC_EINVAL on inconsistent sizes, PSREC_ENOMEM. */
psrec_err psrec_loss_compute(psrec_loss_kind kind, const psrec_loss_in_t *in, psrec_loss_ws_t *ws, double *loss,
                             const psrec_loss_out_t *out) PSREC_MUST_CHECK;

/* Sampled softmax whose negatives were scored elsewhere in K parts (server-side negatives,
 * ps/negatives.h): in holds U and the positives (in->S must be 0); lse_parts (K x B) and ybar_parts
 * (K x B x d) are each part's per-row log-sum-exp over its negatives and softmax-weighted mean row.
 * Gives the same *loss, dU and dVpos as psrec_loss_compute(SOFTMAX) over the union of the parts'
 * negatives, and fills w (K x B) with the weight part k must apply to its negatives of row b
 * (mass_b exp(lse_kb - LSE_b) / B_eff; 0 for rows without positives). out may not be NULL. */
psrec_err psrec_loss_softmax_parts(const psrec_loss_in_t *in, int K, const float *lse_parts, const float *ybar_parts,
                                   psrec_loss_ws_t *ws, double *loss, const psrec_loss_out_t *out,
                                   float *w) PSREC_MUST_CHECK;

/* Gravity regularizer (ALGORITHMS.md §5), estimated on R item rows Vr drawn uniformly:
 * g = lambda / (B * R) * sum_b sum_r (u_b . v_r)^2 = lambda/(B R) <U^T U, Vr^T Vr>_F.
 * Adds g to *loss and ADDS its gradients into dU (B x d) and dVr (R x d) (either may be NULL). */
psrec_err psrec_loss_gravity(int B, int R, int d, const float *U, const float *Vr, float lambda, double *loss,
                             float *dU, float *dVr) PSREC_MUST_CHECK;

/* Name <-> kind for the command line ("softmax", "logistic", "positives-only"). */
const char *psrec_loss_name(psrec_loss_kind k);
int psrec_loss_parse(const char *name, psrec_loss_kind *k);

#endif

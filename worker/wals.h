/* wals.h: weighted alternating least squares for implicit feedback (ALGORITHMS.md §6), the
 * matrix-factorization baseline.
 *
 * Observations are a CSR matrix by user: user i observed item idx[k] with weight w[k] for k in
 * off[i] .. off[i+1]. Observed cells have target A = 1 and confidence c = alpha * w; every cell
 * (observed or not) also carries the weight w0. The objective is
 *   sum_obs (w0 + c)(1 - u_i.v_j)^2 + w0 sum_unobs (u_i.v_j)^2 + lambda (|U|^2 + |V|^2).
 * A (user, item) pair must appear at most once (duplicates are PSREC_EINVAL).
 * Thread model: psrec_wals_train runs conf->threads pthreads over rows inside each call; the other
 * functions are pure and may run in parallel on distinct outputs. */
#ifndef PSREC_WALS_H
#define PSREC_WALS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct {
    int dim;       /* d */
    double w0;     /* weight of every cell (unobserved weight), >= 0 */
    double lambda; /* L2 on U and V, > 0 (keeps every row system positive definite) */
    double alpha;  /* confidence scale: c = alpha * weight, >= 0 */
    int sweeps;    /* full sweeps (U then V), >= 1 */
    int threads;   /* row-update threads, >= 1 */
    uint64_t seed; /* V init N(0, (0.1/sqrt(d))^2) */
} psrec_wals_conf_t;

void psrec_wals_defaults(psrec_wals_conf_t *c);
/* PSREC_OK or PSREC_EINVAL (message in err, which may be NULL). */
psrec_err psrec_wals_check(const psrec_wals_conf_t *c, char *err) PSREC_MUST_CHECK;

/* Observations by user (rows) over n_cols items. */
typedef struct {
    size_t n_rows, n_cols;
    const size_t *off; /* n_rows + 1 */
    const uint32_t *idx;
    const float *w; /* raw observation weights (>= 0) */
} psrec_wals_csr_t;

/* Called after every full sweep with the objective (double, the §6 "computed as" form). */
typedef void (*psrec_wals_progress_fn)(void *ctx, int sweep, double objective);

/* Trains U (n_rows x d) and V (n_cols x d), caller-allocated. V is initialised from the seed; each
 * sweep solves every user row against V, then every item row against U (the transpose is built
 * here). On return U is re-solved once more against the returned V, so every U row equals
 * psrec_wals_fold_in of that user's observations. progress may be NULL (then no objective is
 * computed). */
psrec_err psrec_wals_train(const psrec_wals_conf_t *c, const psrec_wals_csr_t *obs, float *U, float *V,
                           psrec_wals_progress_fn progress, void *ctx, char *err) PSREC_MUST_CHECK;

/* G = X^T X (d x d, row-major, accumulated in double) for X (n x d). */
void psrec_wals_gram(const float *X, size_t n, int d, double *G);

/* The objective for given U, V (double). */
psrec_err psrec_wals_objective(const psrec_wals_conf_t *c, const psrec_wals_csr_t *obs, const float *U, const float *V,
                               double *out) PSREC_MUST_CHECK;

/* Doubles of scratch psrec_wals_fold_in needs for dimension d. */
#define PSREC_WALS_WORK(d) ((size_t)(d) * (size_t)(d) + 2 * (size_t)(d))

/* Fold-in: solves the §6 row system (w0 G + sum c v v^T + lambda I) u = sum (w0 + c) v over the n
 * observed items (indexes into V, weights as in training) for a new query, with G = V^T V from
 * psrec_wals_gram. work holds PSREC_WALS_WORK(dim) doubles, or is NULL (then allocated here).
 * PSREC_EINVAL if the system is not positive definite. */
psrec_err psrec_wals_fold_in(const float *V, const double *G, const uint32_t *items, const float *weights, size_t n,
                             const psrec_wals_conf_t *c, float *u, double *work) PSREC_MUST_CHECK;

#endif

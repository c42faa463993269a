/* optim.h: the optimizers that update one embedding row from its summed gradient (ALGORITHMS.md §7).
 *
 * A row is `dim` weights w followed by psrec_optim_state_floats(kind, dim) floats of state:
 *   SGD              none                w -= lr g
 *   Adagrad          a[dim]              a += g*g;          w -= lr g / (sqrt(a) + eps)
 *   row-wise Adagrad a (1 float)         a += |g|^2 / dim;  w -= lr g / (sqrt(a) + eps)
 *   lazy Adam        m[dim] s[dim] t     t += 1; m = b1 m + (1-b1) g; s = b2 s + (1-b2) g*g;
 *                                        w -= lr_t m / (sqrt(s) + eps),
 *                                        lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
 * Adam's bias correction uses the row's OWN step count t (pushes that touched this row since it was
 * created or last set), stored as a uint32 in the last state float, not a global step: a sharded,
 * asynchronous store has no global step, and a row first touched late in training then still gets
 * Adam's corrected first steps (|step| ~ lr) instead of a tiny uncorrected one. Untouched rows neither
 * decay nor move (lazy). Both Adagrads start their accumulators at init_acc.
 * L2 (l2 > 0) is applied on touched rows only, g <- g + l2 w (w before the update), so it is
 * frequency-weighted: a row is regularised each time it is pushed.
 * Updates are computed in float32, coordinate by coordinate (the row-wise norm is summed in double).
 *
 * Thread model: stateless functions; the caller serialises updates of one row (the store's stripe lock). */
#ifndef PSREC_OPTIM_H
#define PSREC_OPTIM_H

#include <stdint.h>

#include "common/err.h"
#include "ps/store.h"

/* A psrec_opt_t with the defaults filled in and validated, plus constants precomputed for the hot path. */
typedef struct {
    psrec_opt_kind kind;
    float lr, eps, init_acc, beta1, beta2, l2;
    double log_b1, log_b2; /* Adam: log(beta1), log(beta2) for the bias correction */
} psrec_optim_t;

/* Fills o from conf: eps 0 -> 1e-8, beta1 0 -> 0.9, beta2 0 -> 0.999 (others used as given).
 * PSREC_EINVAL (message in err) for an unknown kind, a negative or non-finite lr/eps/init_acc/l2, or
 * beta outside [0, 1). */
psrec_err psrec_optim_init(psrec_optim_t *o, const psrec_opt_t *conf, char *err) PSREC_MUST_CHECK;

/* Number of state floats after the weights of a row of width dim. */
uint32_t psrec_optim_state_floats(psrec_opt_kind kind, uint32_t dim);

/* Writes the initial state of a fresh (or overwritten) row: accumulators = init_acc, Adam m = s = 0, t = 0. */
void psrec_optim_reset_state(const psrec_optim_t *o, float *state, uint32_t dim);

/* One update of row w (dim floats) and its state with the row's summed gradient g. */
void psrec_optim_apply(const psrec_optim_t *o, float *w, float *state, const float *g, uint32_t dim);

/* Adam: the row's step count as stored in its state (0 for a fresh row). */
uint32_t psrec_optim_adam_steps(const float *state, uint32_t dim);

#endif

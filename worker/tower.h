/* tower.h: the query tower psi(x): the per-slot averaged embeddings, concatenated (n_in = nslots *
 * emb_dim), go through an MLP with ReLU on hidden layers and a linear output layer of out_dim = d.
 *
 * Parameters are one flat float vector: for each layer l, W_l (out_l x in_l, row-major) then b_l.
 * The flat vector is what the parameter store holds (table PSREC_TABLE_DENSE, in chunks), so the
 * tower itself is stateless apart from its activations workspace.
 * Thread model: one psrec_tower_t per thread (it owns the activations of the last forward). */
#ifndef PSREC_TOWER_H
#define PSREC_TOWER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define PSREC_TOWER_MAX_HIDDEN 8

typedef struct {
    int n_in;                           /* input width: nslots * emb_dim */
    int n_hidden;                       /* number of hidden layers (0 = one linear layer) */
    int hidden[PSREC_TOWER_MAX_HIDDEN]; /* their widths */
    int out_dim;                        /* d */
} psrec_tower_conf_t;

typedef struct psrec_tower psrec_tower_t;

psrec_err psrec_tower_new(psrec_tower_t **t, const psrec_tower_conf_t *conf) PSREC_MUST_CHECK;
void psrec_tower_destroy(psrec_tower_t **t);
size_t psrec_tower_nparams(const psrec_tower_t *t);

/* He-uniform weights (fan-in), zero biases, from the seed: the same seed gives the same tower. */
void psrec_tower_init_params(const psrec_tower_t *t, uint64_t seed, float *params);

/* out (B x out_dim) = psi(X) for X (B x n_in). Keeps activations for backward. */
psrec_err psrec_tower_forward(psrec_tower_t *t, const float *params, const float *X, int B,
                              float *out) PSREC_MUST_CHECK;
/* After forward with the same params/X/B: dparams (nparams, overwritten) and dX (B x n_in, overwritten,
 * may be NULL) from dOut (B x out_dim). */
psrec_err psrec_tower_backward(psrec_tower_t *t, const float *params, const float *X, const float *dOut, int B,
                               float *dparams, float *dX) PSREC_MUST_CHECK;

/* Parses "128,64" into conf->hidden (empty string or "0" = no hidden layer). 0 = ok. */
int psrec_tower_parse_hidden(const char *s, psrec_tower_conf_t *conf);

#endif

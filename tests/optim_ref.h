/* optim_ref.h: a naive double-precision reference of the optimizers of ALGORITHMS.md §7, written from the
 * formulas (not from ps/optim.c), shared by test_optim and test_store. Adam uses the row's own step count.
 * Defaults are spelled out here independently: eps 1e-8, beta1 0.9, beta2 0.999 when the field is 0. */
#ifndef PSREC_TEST_OPTIM_REF_H
#define PSREC_TEST_OPTIM_REF_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps/store.h"

typedef struct {
    int d;
    double *w, *a, *m, *s; /* a: d accumulators (row-wise uses a[0]) */
    long t;
} ref_row_t;

static inline void ref_row_init(ref_row_t *r, int d, const float *w0, const psrec_opt_t *o)
{
    r->d = d;
    r->w = calloc((size_t)d, sizeof(double));
    r->a = calloc((size_t)d, sizeof(double));
    r->m = calloc((size_t)d, sizeof(double));
    r->s = calloc((size_t)d, sizeof(double));
    r->t = 0;
    for (int i = 0; i < d; i++) {
        r->w[i] = w0[i];
        r->a[i] = o->init_acc;
    }
}

static inline void ref_row_free(ref_row_t *r)
{
    free(r->w);
    free(r->a);
    free(r->m);
    free(r->s);
}

static inline void ref_step(ref_row_t *r, const psrec_opt_t *o, const float *gf)
{
    const int d = r->d;
    double eps = o->eps != 0 ? o->eps : 1e-8, b1 = o->beta1 != 0 ? o->beta1 : 0.9,
           b2 = o->beta2 != 0 ? o->beta2 : 0.999, lr = o->lr;
    double *g = malloc((size_t)d * sizeof(double));
    for (int i = 0; i < d; i++)
        g[i] = (double)gf[i] + (double)o->l2 * r->w[i];
    if (o->kind == PSREC_OPT_SGD) {
        for (int i = 0; i < d; i++)
            r->w[i] -= lr * g[i];
    } else if (o->kind == PSREC_OPT_ADAGRAD) {
        for (int i = 0; i < d; i++) {
            r->a[i] += g[i] * g[i];
            r->w[i] -= lr * g[i] / (sqrt(r->a[i]) + eps);
        }
    } else if (o->kind == PSREC_OPT_ROWWISE_ADAGRAD) {
        double n2 = 0;
        for (int i = 0; i < d; i++)
            n2 += g[i] * g[i];
        r->a[0] += n2 / d;
        for (int i = 0; i < d; i++)
            r->w[i] -= lr * g[i] / (sqrt(r->a[0]) + eps);
    } else {
        r->t++;
        double lrt = lr * sqrt(1 - pow(b2, (double)r->t)) / (1 - pow(b1, (double)r->t));
        for (int i = 0; i < d; i++) {
            r->m[i] = b1 * r->m[i] + (1 - b1) * g[i];
            r->s[i] = b2 * r->s[i] + (1 - b2) * g[i] * g[i];
            r->w[i] -= lrt * r->m[i] / (sqrt(r->s[i]) + eps);
        }
    }
    free(g);
}

/* |float - reference| within atol + rtol*|reference| for every coordinate; returns the worst excess (<= 0 ok). */
static inline double ref_max_excess(const float *w, const ref_row_t *r, double atol, double rtol)
{
    double worst = -1;
    for (int i = 0; i < r->d; i++) {
        double e = fabs((double)w[i] - r->w[i]) - (atol + rtol * fabs(r->w[i]));
        if (e > worst || isnan(w[i])) worst = isnan(w[i]) ? INFINITY : e;
    }
    return worst;
}

#endif

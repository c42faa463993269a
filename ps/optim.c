/* optim.c: per-row optimizer updates (SGD, Adagrad, row-wise Adagrad, lazy Adam; ALGORITHMS.md §7) and
 * the optimizer names. Design: defaults are resolved once (psrec_optim_init) so the per-row code only
 * branches on the kind and on l2; Adam's bias correction is per row (see optim.h) and computed with
 * expm1 of precomputed logs, once per row, not per coordinate. Thread model: stateless; the caller
 * serialises updates of one row. */
#include "ps/optim.h"

#include <math.h>
#include <string.h>
#ifdef __SSE2__
#include <immintrin.h>
#endif

static const char *const names[] = {
    [PSREC_OPT_SGD] = "sgd",
    [PSREC_OPT_ADAGRAD] = "adagrad",
    [PSREC_OPT_ROWWISE_ADAGRAD] = "rowwise-adagrad",
    [PSREC_OPT_ADAM] = "adam",
};
#define NKINDS (sizeof names / sizeof names[0])

const char *psrec_opt_name(psrec_opt_kind k)
{
    return (unsigned)k < NKINDS ? names[k] : "unknown";
}

int psrec_opt_parse(const char *name, psrec_opt_kind *k)
{
    for (unsigned i = 0; i < NKINDS; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *k = (psrec_opt_kind)i;
            return 0;
        }
    return -1;
}

/* The row loops are short and hot: GCC vectorises the plain ones at -O2 when asked; the loops with a
 * square root and a division (Adagrad, Adam) are written with SSE2 (every x86-64), scalar elsewhere and
 * for the tail. Both compute the same IEEE float operations. */
#define VEC __attribute__((optimize("tree-vectorize")))

static int nonneg(float x)
{
    return isfinite(x) && x >= 0;
}

psrec_err psrec_optim_init(psrec_optim_t *o, const psrec_opt_t *c, char *err)
{
    memset(o, 0, sizeof *o);
    if ((unsigned)c->kind >= NKINDS) return psrec_fail(err, PSREC_EINVAL, "unknown optimizer kind %d", (int)c->kind);
    if (!nonneg(c->lr)) return psrec_fail(err, PSREC_EINVAL, "learning rate %g must be finite and >= 0", c->lr);
    if (!nonneg(c->eps)) return psrec_fail(err, PSREC_EINVAL, "eps %g must be finite and >= 0", c->eps);
    if (!nonneg(c->init_acc))
        return psrec_fail(err, PSREC_EINVAL, "initial accumulator %g must be finite and >= 0", c->init_acc);
    if (!nonneg(c->l2)) return psrec_fail(err, PSREC_EINVAL, "l2 %g must be finite and >= 0", c->l2);
    if (!(c->beta1 >= 0 && c->beta1 < 1)) return psrec_fail(err, PSREC_EINVAL, "beta1 %g must be in [0, 1)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1)) return psrec_fail(err, PSREC_EINVAL, "beta2 %g must be in [0, 1)", c->beta2);
    o->kind = c->kind;
    o->lr = c->lr;
    o->eps = c->eps > 0 ? c->eps : 1e-8f;
    o->init_acc = c->init_acc;
    o->beta1 = c->beta1 > 0 ? c->beta1 : 0.9f;
    o->beta2 = c->beta2 > 0 ? c->beta2 : 0.999f;
    o->l2 = c->l2;
    o->log_b1 = log((double)o->beta1);
    o->log_b2 = log((double)o->beta2);
    return PSREC_OK;
}

uint32_t psrec_optim_state_floats(psrec_opt_kind kind, uint32_t dim)
{
    switch (kind) {
    case PSREC_OPT_SGD: return 0;
    case PSREC_OPT_ADAGRAD: return dim;
    case PSREC_OPT_ROWWISE_ADAGRAD: return 1;
    case PSREC_OPT_ADAM: return 2 * dim + 1;
    }
    return 0;
}

void psrec_optim_reset_state(const psrec_optim_t *o, float *state, uint32_t dim)
{
    switch (o->kind) {
    case PSREC_OPT_SGD: break;
    case PSREC_OPT_ADAGRAD:
        for (uint32_t i = 0; i < dim; i++)
            state[i] = o->init_acc;
        break;
    case PSREC_OPT_ROWWISE_ADAGRAD: state[0] = o->init_acc; break;
    case PSREC_OPT_ADAM: memset(state, 0, (2 * (size_t)dim + 1) * sizeof(float)); break;
    }
}

uint32_t psrec_optim_adam_steps(const float *state, uint32_t dim)
{
    uint32_t t;
    memcpy(&t, state + 2 * (size_t)dim, sizeof t);
    return t;
}

VEC static void sgd(const psrec_optim_t *o, float *restrict w, const float *restrict g, uint32_t dim)
{
    const float lr = o->lr, l2 = o->l2;
    if (l2 == 0)
        for (uint32_t i = 0; i < dim; i++)
            w[i] -= lr * g[i];
    else
        for (uint32_t i = 0; i < dim; i++)
            w[i] -= lr * (g[i] + l2 * w[i]);
}

static void adagrad(const psrec_optim_t *o, float *restrict w, float *restrict a, const float *restrict g, uint32_t dim)
{
    const float lr = o->lr, l2 = o->l2, eps = o->eps;
    uint32_t i = 0;
#ifdef __SSE2__
    const __m128 vlr = _mm_set1_ps(lr), vl2 = _mm_set1_ps(l2), veps = _mm_set1_ps(eps);
    for (; i + 4 <= dim; i += 4) {
        __m128 vw = _mm_loadu_ps(w + i), gi = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(vl2, vw));
        __m128 va = _mm_add_ps(_mm_loadu_ps(a + i), _mm_mul_ps(gi, gi));
        _mm_storeu_ps(a + i, va);
        vw = _mm_sub_ps(vw, _mm_div_ps(_mm_mul_ps(vlr, gi), _mm_add_ps(_mm_sqrt_ps(va), veps)));
        _mm_storeu_ps(w + i, vw);
    }
#endif
    for (; i < dim; i++) {
        float gi = g[i] + l2 * w[i];
        a[i] += gi * gi;
        w[i] -= lr * gi / (sqrtf(a[i]) + eps);
    }
}

VEC static void rowwise_adagrad(const psrec_optim_t *o, float *restrict w, float *restrict a, const float *restrict g,
                                uint32_t dim)
{
    const float l2 = o->l2;
    double q[4] = {0, 0, 0, 0}; /* four partial sums: no single dependency chain */
    uint32_t i = 0;
    for (; i + 4 <= dim; i += 4)
        for (int u = 0; u < 4; u++) {
            double gi = (double)g[i + u] + (double)l2 * w[i + u];
            q[u] += gi * gi;
        }
    for (; i < dim; i++) {
        double gi = (double)g[i] + (double)l2 * w[i];
        q[0] += gi * gi;
    }
    a[0] += (float)((q[0] + q[1] + q[2] + q[3]) / dim);
    const float step = o->lr / (sqrtf(a[0]) + o->eps);
    if (l2 == 0)
        for (i = 0; i < dim; i++)
            w[i] -= step * g[i];
    else
        for (i = 0; i < dim; i++)
            w[i] -= step * (g[i] + l2 * w[i]);
}

static void adam(const psrec_optim_t *o, float *restrict w, float *restrict st, const float *restrict g, uint32_t dim)
{
    float *restrict m = st, *restrict s = st + dim;
    uint32_t t = psrec_optim_adam_steps(st, dim);
    if (t < UINT32_MAX) t++;
    memcpy(st + 2 * (size_t)dim, &t, sizeof t);
    /* lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), with b^t = exp(t log b) and 1 - e^x = -expm1(x) */
    const double c1 = -expm1((double)t * o->log_b1), c2 = -expm1((double)t * o->log_b2);
    const float lrt = (float)((double)o->lr * sqrt(c2) / c1);
    const float b1 = o->beta1, b2 = o->beta2, ob1 = 1.0f - b1, ob2 = 1.0f - b2, l2 = o->l2, eps = o->eps;
    uint32_t i = 0;
#ifdef __SSE2__
    const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vob1 = _mm_set1_ps(ob1), vob2 = _mm_set1_ps(ob2),
                 vl2 = _mm_set1_ps(l2), veps = _mm_set1_ps(eps), vlrt = _mm_set1_ps(lrt);
    for (; i + 4 <= dim; i += 4) {
        __m128 vw = _mm_loadu_ps(w + i), gi = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(vl2, vw));
        __m128 vm = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vob1, gi));
        __m128 vs = _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(s + i)), _mm_mul_ps(_mm_mul_ps(vob2, gi), gi));
        _mm_storeu_ps(m + i, vm);
        _mm_storeu_ps(s + i, vs);
        vw = _mm_sub_ps(vw, _mm_div_ps(_mm_mul_ps(vlrt, vm), _mm_add_ps(_mm_sqrt_ps(vs), veps)));
        _mm_storeu_ps(w + i, vw);
    }
#endif
    for (; i < dim; i++) {
        float gi = g[i] + l2 * w[i];
        m[i] = b1 * m[i] + ob1 * gi;
        s[i] = b2 * s[i] + ob2 * gi * gi;
        w[i] -= lrt * m[i] / (sqrtf(s[i]) + eps);
    }
}

void psrec_optim_apply(const psrec_optim_t *o, float *w, float *state, const float *g, uint32_t dim)
{
    switch (o->kind) {
    case PSREC_OPT_SGD: sgd(o, w, g, dim); break;
    case PSREC_OPT_ADAGRAD: adagrad(o, w, state, g, dim); break;
    case PSREC_OPT_ROWWISE_ADAGRAD: rowwise_adagrad(o, w, state, g, dim); break;
    case PSREC_OPT_ADAM: adam(o, w, state, g, dim); break;
    }
}

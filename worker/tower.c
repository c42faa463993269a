/* tower.c: MLP forward/backward for the query tower with OpenBLAS GEMMs. Design: parameters are a
 * flat vector owned by the caller (pulled from the store), activations live in a per-thread
 * workspace grown to the largest batch seen, so a training step allocates nothing.
 * Thread model: one tower per thread. */
#include "worker/tower.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

struct psrec_tower {
    psrec_tower_conf_t conf;
    int nlayers;
    int in[PSREC_TOWER_MAX_HIDDEN + 1], out[PSREC_TOWER_MAX_HIDDEN + 1];
    size_t woff[PSREC_TOWER_MAX_HIDDEN + 1], boff[PSREC_TOWER_MAX_HIDDEN + 1];
    size_t nparams;
    int cap_b;
    float *act[PSREC_TOWER_MAX_HIDDEN + 1]; /* act[l] = output of layer l (post-ReLU for hidden) */
    float *gbuf[2];                         /* ping-pong gradient buffers */
    int maxw;
};

psrec_err psrec_tower_new(psrec_tower_t **out, const psrec_tower_conf_t *conf)
{
    *out = NULL;
    if (conf->n_in <= 0 || conf->out_dim <= 0 || conf->n_hidden < 0 || conf->n_hidden > PSREC_TOWER_MAX_HIDDEN)
        return PSREC_EINVAL;
    for (int i = 0; i < conf->n_hidden; i++)
        if (conf->hidden[i] <= 0) return PSREC_EINVAL;
    psrec_tower_t *t = calloc(1, sizeof *t);
    if (!t) return PSREC_ENOMEM;
    t->conf = *conf;
    t->nlayers = conf->n_hidden + 1;
    int prev = conf->n_in;
    size_t off = 0;
    t->maxw = conf->n_in;
    for (int l = 0; l < t->nlayers; l++) {
        int o = l < conf->n_hidden ? conf->hidden[l] : conf->out_dim;
        t->in[l] = prev;
        t->out[l] = o;
        t->woff[l] = off;
        off += (size_t)o * prev;
        t->boff[l] = off;
        off += o;
        if (o > t->maxw) t->maxw = o;
        prev = o;
    }
    t->nparams = off;
    *out = t;
    return PSREC_OK;
}

void psrec_tower_destroy(psrec_tower_t **t)
{
    if (!t || !*t) return;
    for (int l = 0; l <= PSREC_TOWER_MAX_HIDDEN; l++)
        free((*t)->act[l]);
    free((*t)->gbuf[0]);
    free((*t)->gbuf[1]);
    free(*t);
    *t = NULL;
}

size_t psrec_tower_nparams(const psrec_tower_t *t)
{
    return t->nparams;
}

void psrec_tower_init_params(const psrec_tower_t *t, uint64_t seed, float *params)
{
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 0x70776572ULL);
    for (int l = 0; l < t->nlayers; l++) {
        /* He-uniform for ReLU layers; Glorot-like scale for the linear output layer */
        double lim = l < t->nlayers - 1 ? sqrt(6.0 / t->in[l]) : sqrt(3.0 / t->in[l]);
        size_t nw = (size_t)t->out[l] * t->in[l];
        for (size_t i = 0; i < nw; i++)
            params[t->woff[l] + i] = (float)((2 * psrec_rng_uniform(&r) - 1) * lim);
        memset(params + t->boff[l], 0, sizeof(float) * t->out[l]);
    }
}

static psrec_err reserve(psrec_tower_t *t, int B)
{
    if (B <= t->cap_b) return PSREC_OK;
    for (int l = 0; l < t->nlayers; l++) {
        float *p = realloc(t->act[l], sizeof(float) * (size_t)B * t->out[l]);
        if (!p) return PSREC_ENOMEM;
        t->act[l] = p;
    }
    for (int i = 0; i < 2; i++) {
        float *p = realloc(t->gbuf[i], sizeof(float) * (size_t)B * t->maxw);
        if (!p) return PSREC_ENOMEM;
        t->gbuf[i] = p;
    }
    t->cap_b = B;
    return PSREC_OK;
}

psrec_err psrec_tower_forward(psrec_tower_t *t, const float *params, const float *X, int B, float *out)
{
    if (B <= 0) return PSREC_EINVAL;
    psrec_err rc = reserve(t, B);
    if (rc) return rc;
    const float *h = X;
    for (int l = 0; l < t->nlayers; l++) {
        int in = t->in[l], o = t->out[l];
        float *z = t->act[l];
        const float *b = params + t->boff[l];
        for (int i = 0; i < B; i++)
            memcpy(z + (size_t)i * o, b, sizeof(float) * o);
        /* Z = H W^T + b */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, o, in, 1.0f, h, in, params + t->woff[l], in, 1.0f, z,
                    o);
        if (l < t->nlayers - 1) {
            size_t n = (size_t)B * o;
            for (size_t i = 0; i < n; i++)
                z[i] = z[i] > 0 ? z[i] : 0;
        }
        h = z;
    }
    memcpy(out, t->act[t->nlayers - 1], sizeof(float) * (size_t)B * t->conf.out_dim);
    return PSREC_OK;
}

psrec_err psrec_tower_backward(psrec_tower_t *t, const float *params, const float *X, const float *dOut, int B,
                               float *dparams, float *dX)
{
    if (B <= 0 || B > t->cap_b) return PSREC_EINVAL;
    int cur = 0;
    memcpy(t->gbuf[cur], dOut, sizeof(float) * (size_t)B * t->conf.out_dim);
    for (int l = t->nlayers - 1; l >= 0; l--) {
        int in = t->in[l], o = t->out[l];
        float *dz = t->gbuf[cur];
        if (l < t->nlayers - 1) { /* ReLU: act > 0 passes the gradient */
            const float *a = t->act[l];
            size_t n = (size_t)B * o;
            for (size_t i = 0; i < n; i++)
                if (a[i] <= 0) dz[i] = 0;
        }
        const float *h = l > 0 ? t->act[l - 1] : X;
        /* dW = dZ^T H ; db = sum_rows dZ */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o, in, B, 1.0f, dz, o, h, in, 0.0f, dparams + t->woff[l],
                    in);
        float *db = dparams + t->boff[l];
        memset(db, 0, sizeof(float) * o);
        for (int i = 0; i < B; i++)
            for (int j = 0; j < o; j++)
                db[j] += dz[(size_t)i * o + j];
        float *dh = l > 0 ? t->gbuf[cur ^ 1] : dX;
        if (dh) /* dH = dZ W */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, in, o, 1.0f, dz, o, params + t->woff[l], in, 0.0f,
                        dh, in);
        cur ^= 1;
    }
    return PSREC_OK;
}

int psrec_tower_parse_hidden(const char *s, psrec_tower_conf_t *conf)
{
    conf->n_hidden = 0;
    if (!s || !*s || strcmp(s, "0") == 0) return 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > 65536 || conf->n_hidden >= PSREC_TOWER_MAX_HIDDEN) return -1;
        conf->hidden[conf->n_hidden++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return 0;
}

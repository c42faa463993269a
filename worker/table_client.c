/* table_client.c: the ops-table indirection between workers and parameter storage, and its local
 * implementation over a psrec_store_t. Design: one indirect call per table per step (keys are batched),
 * so the indirection costs nothing measurable while letting the embedded and the distributed trainer
 * share every line of worker code. Thread model: the local client is as thread-safe as the store. */
#include "worker/table_client.h"

#include <stdlib.h>

#include "common/rng.h"

struct psrec_table_client {
    psrec_table_ops_t ops;
    void *impl;
};

psrec_err psrec_table_client_new(psrec_table_client_t **out, const psrec_table_ops_t *ops, void *impl)
{
    *out = NULL;
    psrec_table_client_t *c = calloc(1, sizeof *c);
    if (!c) {
        if (ops->destroy) ops->destroy(impl);
        return PSREC_ENOMEM;
    }
    c->ops = *ops;
    c->impl = impl;
    *out = c;
    return PSREC_OK;
}

void psrec_table_client_destroy(psrec_table_client_t **c)
{
    if (!c || !*c) return;
    if ((*c)->ops.destroy) (*c)->ops.destroy((*c)->impl);
    free(*c);
    *c = NULL;
}

psrec_err psrec_table_pull(psrec_table_client_t *c, uint32_t table, const uint64_t *keys, size_t n, float *out)
{
    return n ? c->ops.pull(c->impl, table, keys, n, out) : PSREC_OK;
}

psrec_err psrec_table_push(psrec_table_client_t *c, uint32_t table, const uint64_t *keys, size_t n, const float *grads)
{
    return n ? c->ops.push(c->impl, table, keys, n, grads) : PSREC_OK;
}

psrec_err psrec_table_set(psrec_table_client_t *c, uint32_t table, const uint64_t *keys, size_t n, const float *values)
{
    return n ? c->ops.set(c->impl, table, keys, n, values) : PSREC_OK;
}

psrec_err psrec_table_touch(psrec_table_client_t *c, uint32_t table, uint32_t dim, const uint64_t *keys, size_t n)
{
    if (n == 0) return PSREC_OK;
    if (c->ops.touch) return c->ops.touch(c->impl, table, keys, n);
    enum { CHUNK = 4096 };
    float *buf = malloc((size_t)CHUNK * dim * sizeof *buf);
    if (!buf) return PSREC_ENOMEM;
    psrec_err rc = PSREC_OK;
    for (size_t i = 0; !rc && i < n; i += CHUNK)
        rc = c->ops.pull(c->impl, table, keys + i, n - i < CHUNK ? n - i : CHUNK, buf);
    free(buf);
    return rc;
}

uint32_t psrec_table_neg_parts(psrec_table_client_t *c)
{
    return c->ops.neg_parts ? c->ops.neg_parts(c->impl) : 0;
}

uint32_t psrec_table_neg_part_of(psrec_table_client_t *c, uint64_t key)
{
    return c->ops.neg_part_of ? c->ops.neg_part_of(c->impl, key) : 0;
}

psrec_err psrec_table_neg_score(psrec_table_client_t *c, uint32_t table, const psrec_negbatch_t *b,
                                const psrec_negdraw_t *per_part, uint64_t seed, float *lse, float *ybar, float *logE)
{
    if (!c->ops.neg_score) return PSREC_EUNSUPPORTED;
    return c->ops.neg_score(c->impl, table, b, per_part, seed, lse, ybar, logE);
}

psrec_err psrec_table_neg_apply(psrec_table_client_t *c, uint32_t table, const float *w, const uint64_t *keys,
                                const float *grads, size_t n, uint32_t *stale)
{
    *stale = 0;
    if (!c->ops.neg_apply) return PSREC_EUNSUPPORTED;
    return c->ops.neg_apply(c->impl, table, w, keys, grads, n, stale);
}

/* ---- the local client ---- */

typedef struct {
    psrec_store_t *store;
    psrec_negpart_t *part; /* created on first use */
    uint32_t part_table;
} local_t;

static psrec_err local_pull(void *impl, uint32_t table, const uint64_t *keys, size_t n, float *out)
{
    return psrec_store_pull(((local_t *)impl)->store, table, keys, n, out);
}

static psrec_err local_push(void *impl, uint32_t table, const uint64_t *keys, size_t n, const float *grads)
{
    return psrec_store_push(((local_t *)impl)->store, table, keys, n, grads);
}

static psrec_err local_set(void *impl, uint32_t table, const uint64_t *keys, size_t n, const float *values)
{
    return psrec_store_set(((local_t *)impl)->store, table, keys, n, values);
}

static void local_destroy(void *impl)
{
    local_t *l = impl;
    psrec_negpart_destroy(&l->part);
    free(l);
}

static uint32_t local_neg_parts(void *impl)
{
    (void)impl;
    return 1;
}

static uint32_t local_neg_part_of(void *impl, uint64_t key)
{
    (void)impl;
    (void)key;
    return 0;
}

static psrec_err local_neg_score(void *impl, uint32_t table, const psrec_negbatch_t *b, const psrec_negdraw_t *draw,
                                 uint64_t seed, float *lse, float *ybar, float *logE)
{
    local_t *l = impl;
    psrec_err rc = l->part ? PSREC_OK : psrec_negpart_new(&l->part);
    if (rc) return rc;
    psrec_rng_t rng;
    psrec_rng_seed(&rng, seed, 0); /* part 0, as server rank 0 would */
    char err[PSREC_ERRBUF];
    l->part_table = table;
    return psrec_negpart_draw_score(l->part, l->store, table, &rng, b, draw, lse, ybar, logE, err);
}

static psrec_err local_neg_apply(void *impl, uint32_t table, const float *w, const uint64_t *rkeys, const float *rgrads,
                                 size_t rn, uint32_t *stale)
{
    local_t *l = impl;
    *stale = 0; /* the store is this process's: its scored batch cannot go missing */
    if (!l->part || table != l->part_table) return PSREC_EINVAL;
    const uint64_t *keys;
    const float *grads;
    size_t n;
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_negpart_gradients(l->part, w, rkeys, rgrads, rn, &keys, &grads, &n, err);
    return rc ? rc : psrec_store_push(l->store, table, keys, n, grads);
}

psrec_err psrec_table_client_new_local(psrec_table_client_t **c, psrec_store_t *store)
{
    static const psrec_table_ops_t local_ops = {.pull = local_pull,
                                                .push = local_push,
                                                .set = local_set,
                                                .destroy = local_destroy,
                                                .neg_parts = local_neg_parts,
                                                .neg_part_of = local_neg_part_of,
                                                .neg_score = local_neg_score,
                                                .neg_apply = local_neg_apply};
    local_t *l = calloc(1, sizeof *l);
    *c = NULL;
    if (!l) return PSREC_ENOMEM;
    l->store = store;
    return psrec_table_client_new(c, &local_ops, l);
}

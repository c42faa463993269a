/* table_client.c: the ops-table indirection between workers and parameter storage, and its local
 * implementation over a psrec_store_t. Design: one indirect call per table per step (keys are batched),
 * so the indirection costs nothing measurable while letting the embedded and the distributed trainer
 * share every line of worker code. Thread model: the local client is as thread-safe as the store. */
#include "worker/table_client.h"

#include <stdlib.h>

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

static psrec_err local_pull(void *impl, uint32_t table, const uint64_t *keys, size_t n, float *out)
{
    return psrec_store_pull(impl, table, keys, n, out);
}

static psrec_err local_push(void *impl, uint32_t table, const uint64_t *keys, size_t n, const float *grads)
{
    return psrec_store_push(impl, table, keys, n, grads);
}

static psrec_err local_set(void *impl, uint32_t table, const uint64_t *keys, size_t n, const float *values)
{
    return psrec_store_set(impl, table, keys, n, values);
}

psrec_err psrec_table_client_new_local(psrec_table_client_t **c, psrec_store_t *store)
{
    static const psrec_table_ops_t local_ops = {local_pull, local_push, local_set, NULL};
    return psrec_table_client_new(c, &local_ops, store);
}

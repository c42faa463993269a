/* table_client.h: how a worker reaches parameters: pull rows by (table, keys), push summed gradients,
 * set values. The worker never sees where the rows live. Implementations fill an ops table (nng's
 * transport style): the local one calls a psrec_store_t in this process; the distributed one
 * (ZeroMQ, issue 3) sends the same requests to the servers that own each key's shard.
 *
 * Table ids are fixed here so every role agrees on them.
 * Thread model: a client may be shared by worker threads if its implementation says so (the local
 * one is: the store is thread-safe). */
#ifndef PSREC_TABLE_CLIENT_H
#define PSREC_TABLE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "ps/store.h"

enum {
    PSREC_TABLE_ITEM_OUT = 0, /* V: item output embeddings (the softmax side) */
    PSREC_TABLE_ITEM_IN = 1,  /* item input embeddings of the history slot (unless tied to V) */
    PSREC_TABLE_DENSE = 2,    /* query-tower weights, flattened into chunks of PSREC_DENSE_CHUNK */
    PSREC_TABLE_SLOT0 = 8     /* feature slot s uses table PSREC_TABLE_SLOT0 + s */
};
#define PSREC_DENSE_CHUNK 256

typedef struct {
    psrec_err (*pull)(void *impl, uint32_t table, const uint64_t *keys, size_t n, float *out);
    psrec_err (*push)(void *impl, uint32_t table, const uint64_t *keys, size_t n, const float *grads);
    psrec_err (*set)(void *impl, uint32_t table, const uint64_t *keys, size_t n, const float *values);
    void (*destroy)(void *impl);
} psrec_table_ops_t;

typedef struct psrec_table_client psrec_table_client_t;

/* Wraps ops/impl; the client takes impl (destroyed with the client through ops->destroy). */
psrec_err psrec_table_client_new(psrec_table_client_t **c, const psrec_table_ops_t *ops, void *impl) PSREC_MUST_CHECK;
/* A client over a store of this process (the store is borrowed, not owned). */
psrec_err psrec_table_client_new_local(psrec_table_client_t **c, psrec_store_t *store) PSREC_MUST_CHECK;
void psrec_table_client_destroy(psrec_table_client_t **c);

psrec_err psrec_table_pull(psrec_table_client_t *c, uint32_t table, const uint64_t *keys, size_t n,
                           float *out) PSREC_MUST_CHECK;
psrec_err psrec_table_push(psrec_table_client_t *c, uint32_t table, const uint64_t *keys, size_t n,
                           const float *grads) PSREC_MUST_CHECK;
psrec_err psrec_table_set(psrec_table_client_t *c, uint32_t table, const uint64_t *keys, size_t n,
                          const float *values) PSREC_MUST_CHECK;

#endif

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
#include "ps/negatives.h"
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
    /* creates rows without reading them (optional: NULL = a pull into a scratch buffer) */
    psrec_err (*touch)(void *impl, uint32_t table, const uint64_t *keys, size_t n);
    /* server-side negatives (optional: NULL = not supported by this client) */
    uint32_t (*neg_parts)(void *impl);
    uint32_t (*neg_part_of)(void *impl, uint64_t key);
    psrec_err (*neg_score)(void *impl, uint32_t table, const psrec_negbatch_t *b, const psrec_negdraw_t *per_part,
                           uint64_t seed, float *lse, float *ybar, float *logE);
    psrec_err (*neg_apply)(void *impl, uint32_t table, const float *w, const uint64_t *keys, const float *grads,
                           size_t n, uint32_t *stale);
} psrec_table_ops_t;

typedef struct psrec_table_client psrec_table_client_t;

/* Wraps ops/impl; the client takes impl (destroyed with the client through ops->destroy). */
psrec_err psrec_table_client_new(psrec_table_client_t **c, const psrec_table_ops_t *ops, void *impl) PSREC_MUST_CHECK;
/* A client over a store of this process (the store is borrowed, not owned). Its pull/push/set are as
 * thread-safe as the store; its negative ops keep one scored batch, so a thread using them needs its
 * own local client. */
psrec_err psrec_table_client_new_local(psrec_table_client_t **c, psrec_store_t *store) PSREC_MUST_CHECK;
void psrec_table_client_destroy(psrec_table_client_t **c);

psrec_err psrec_table_pull(psrec_table_client_t *c, uint32_t table, const uint64_t *keys, size_t n,
                           float *out) PSREC_MUST_CHECK;
psrec_err psrec_table_push(psrec_table_client_t *c, uint32_t table, const uint64_t *keys, size_t n,
                           const float *grads) PSREC_MUST_CHECK;
psrec_err psrec_table_set(psrec_table_client_t *c, uint32_t table, const uint64_t *keys, size_t n,
                          const float *values) PSREC_MUST_CHECK;
/* Creates the rows of n keys (first-touch init) without reading them back: materialising a catalogue.
 * dim is the table's row width (for the scratch of clients without a touch op). */
psrec_err psrec_table_touch(psrec_table_client_t *c, uint32_t table, uint32_t dim, const uint64_t *keys,
                            size_t n) PSREC_MUST_CHECK;

/* ---- server-side negatives (ps/negatives.h, `--negatives-on servers`) ----
 * The shards holding a table's rows (the servers of the shard map; one for a local store) each draw
 * S_per_part negatives from their own rows and score them against the batch; the caller combines the
 * parts (psrec_loss_softmax_parts) and sends back each part's row weights, with which every shard
 * applies its negatives' gradients in place. */
/* Number of parts a score returns (0: this client does not support server-side negatives). */
uint32_t psrec_table_neg_parts(psrec_table_client_t *c);
/* The part that owns key (for the log E of positives, which the owning shard's draw defines). */
uint32_t psrec_table_neg_part_of(psrec_table_client_t *c, uint64_t key);
/* Each part draws as per_part says (uniform or hard, ps/negatives.h). Fills lse (parts x B), ybar
 * (parts x B x d) and logE (parts: the log rate of each shard's uniform draw, what its positives are
 * corrected by; 0 for a shard with no rows). seed makes the draws reproducible (each shard mixes in its
 * index). */
psrec_err psrec_table_neg_score(psrec_table_client_t *c, uint32_t table, const psrec_negbatch_t *b,
                                const psrec_negdraw_t *per_part, uint64_t seed, float *lse, float *ybar,
                                float *logE) PSREC_MUST_CHECK;
/* Applies the last scored batch's negatives' gradients with weights w (parts x B), together with the
 * caller's own gradient rows of the table (n unique keys, n x d grads: it does not push them itself), so
 * that each key gets one update per step. *stale counts the shards that no longer had the scored batch
 * (restarted): they applied the caller's rows only. An error means the rows may not have been applied. */
psrec_err psrec_table_neg_apply(psrec_table_client_t *c, uint32_t table, const float *w, const uint64_t *keys,
                                const float *grads, size_t n, uint32_t *stale) PSREC_MUST_CHECK;

#endif

/* model.h: a trained model directory, written by the trainer and read by eval/export/recommend.
 *
 * <dir>/model.conf   text "key=value" lines (dimensions, slots, tower layout, tie flag, seed),
 *                    followed by psrec's 24-byte checksum trailer (common/durable.h)
 * <dir>/table-<id>.bin  one file per table: "PSRECTB1", u32 table, u32 dim, u64 n, n u64 keys sorted
 *                    ascending, n*dim float32 weights; durable with checksum trailer.
 * The item output table holds every catalogue item (so eval ranks the whole catalogue); input tables
 * hold the rows training touched. A file that fails its checksum is refused, never loaded.
 *
 * In memory, psrec_model_embed computes psi(x) for examples: ids missing from an input table (never
 * seen in training) are left out of their slot's average, like an out-of-vocabulary word.
 * Thread model: a loaded model is read-only; psrec_model_embed may run in parallel on distinct
 * output buffers (it allocates its own scratch). */
#ifndef PSREC_MODEL_H
#define PSREC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/batch.h"
#include "common/err.h"
#include "ps/store.h"
#include "worker/table_client.h"
#include "worker/tower.h"
#include "worker/wals.h"

typedef struct {
    int dim;     /* d: query and item embedding size */
    int emb_dim; /* input embedding size per slot */
    int tie;     /* history slot uses the item output table */
    psrec_tower_conf_t tower;
    psrec_schema_t schema;
    uint64_t seed;
} psrec_model_conf_t;

/* Table of input slot s under conf (history -> ITEM_IN or ITEM_OUT when tied, others SLOT0+s). */
uint32_t psrec_model_slot_table(const psrec_model_conf_t *conf, int s);

/* Every row of a table, wherever it lives (the caller frees *keys and *values). */
typedef psrec_err (*psrec_table_dump_fn)(void *ctx, uint32_t table, uint32_t dim, uint64_t **keys, float **values,
                                         size_t *n, char *err);
/* The dump function over a store of this process (ctx = the psrec_store_t). */
psrec_err psrec_model_store_dump(void *store, uint32_t table, uint32_t dim, uint64_t **keys, float **values, size_t *n,
                                 char *err) PSREC_MUST_CHECK;

/* Writes a model directory: conf, the catalogue rows of ITEM_OUT (pulled through the client, which
 * creates them if training never touched them), and every row of the other tables (through dump).
 * catalogue = the n_items item ids, or NULL for the dense catalogue 0..n_items-1 (psrec_freq_t.ids of a
 * dense freq.bin). */
psrec_err psrec_model_save(const char *dir, const psrec_model_conf_t *conf, psrec_table_client_t *client,
                           psrec_table_dump_fn dump, void *dump_ctx, const uint64_t *catalogue, size_t n_items,
                           char *err) PSREC_MUST_CHECK;

/* Writes only <dir>/model.conf (durable): the shape, kept next to checkpoint rounds so a round can be
 * exported without the training options. */
psrec_err psrec_model_save_conf(const char *dir, const psrec_model_conf_t *conf, char *err) PSREC_MUST_CHECK;
/* Reads <dir>/model.conf (a DNN model's shape). */
psrec_err psrec_model_load_conf(const char *dir, psrec_model_conf_t *conf, char *err) PSREC_MUST_CHECK;

/* A feature slot's mean user embedding per feature id (the WALS cold-start heuristic). */
typedef struct {
    int slot;
    uint64_t *keys;
    float *values; /* n x dim */
    size_t n;
} psrec_wals_feature_t;

/* Writes a WALS model directory (kind=wals: V as the item table; a query is folded in on its history
 * at embed time, and a query without known history items gets the average of the feature rows of its
 * other slots). ids ascending, V (n x w->dim); schema = the training data's slots (hist among them);
 * features may be permuted in place (sorted by key). */
psrec_err psrec_model_save_wals(const char *dir, const psrec_wals_conf_t *w, const psrec_schema_t *schema,
                                const uint64_t *ids, const float *V, size_t n, psrec_wals_feature_t *features,
                                int nfeatures, char *err) PSREC_MUST_CHECK;

typedef struct psrec_model psrec_model_t;

psrec_err psrec_model_load(psrec_model_t **m, const char *dir, char *err) PSREC_MUST_CHECK;
void psrec_model_destroy(psrec_model_t **m);
const psrec_model_conf_t *psrec_model_conf(const psrec_model_t *m);
/* The catalogue: n items, ids ascending, V (n x dim). */
size_t psrec_model_items(const psrec_model_t *m, const uint64_t **ids, const float **V);
/* Catalogue index of an item id, or -1. */
int64_t psrec_model_item_index(const psrec_model_t *m, uint64_t id);
/* U (b->n x dim) = psi(x) for every example of b (slots matched by index with the model's schema). */
psrec_err psrec_model_embed(const psrec_model_t *m, const psrec_batch_t *b, float *U) PSREC_MUST_CHECK;

/* Table file I/O (also used by export). */
psrec_err psrec_table_file_write(const char *path, uint32_t table, uint32_t dim, const uint64_t *keys,
                                 const float *values, size_t n, char *err) PSREC_MUST_CHECK;
/* Loads a table file; the caller frees *keys and *values. */
psrec_err psrec_table_file_read(const char *path, uint32_t *table, uint32_t *dim, uint64_t **keys, float **values,
                                size_t *n, char *err) PSREC_MUST_CHECK;

#endif

/* store.h: the parameter store of one server: every table's rows for the keys this server owns.
 *
 * Each table maps uint64 keys to rows of `dim` float32 weights followed by the optimizer state
 * (none for SGD, 1 float for row-wise Adagrad, dim for Adagrad, 2*dim + 1 for lazy Adam: m, s and
 * the row's step count). Rows live in large slabs; an open-addressing hash table maps key -> row.
 * A row is created on first touch (pull or push) with a deterministic init drawn from
 * (seed, table id, key), so an untouched row is the same wherever and whenever it is made.
 * Optimizers run here (server side): a push carries the summed gradient of each key.
 *
 * Thread model: all calls are thread-safe. Keys are spread over `nlocks` lock stripes by hash, so
 * worker threads (embedded mode) or server threads pull and push concurrently (Hogwild-style between
 * stripes, exact per row). */
#ifndef PSREC_STORE_H
#define PSREC_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/rng.h"

typedef enum {
    PSREC_OPT_SGD = 0,
    PSREC_OPT_ADAGRAD,         /* per coordinate */
    PSREC_OPT_ROWWISE_ADAGRAD, /* one accumulator per row: a += |g|^2/d */
    PSREC_OPT_ADAM             /* lazy Adam: only touched rows move; per-row step count for bias correction */
} psrec_opt_kind;

typedef struct {
    psrec_opt_kind kind;
    float lr;
    float eps;      /* Adagrad default 1e-8 (if 0), Adam default 1e-8 */
    float init_acc; /* Adagrad initial accumulator (default 0; TF uses 0.1) */
    float beta1;    /* Adam (default 0.9 if 0) */
    float beta2;    /* Adam (default 0.999 if 0) */
    float l2;       /* L2 on touched rows (frequency-weighted; 0 = off) */
} psrec_opt_t;

typedef enum {
    PSREC_INIT_ZERO = 0,
    PSREC_INIT_UNIFORM, /* U(-scale, scale) */
    PSREC_INIT_NORMAL   /* N(0, scale^2) */
} psrec_init_kind;

/* How a row's weights are stored. Optimizer state stays float32; pulls and pushes are float32 either
 * way (a push updates the weights in float32, then rounds them to nearest even). */
typedef enum {
    PSREC_ROW_F32 = 0,
    PSREC_ROW_F16, /* IEEE binary16: 11 significant bits, |w| < 65504 */
    PSREC_ROW_BF16 /* bfloat16: float32's range, 8 significant bits */
} psrec_row_dtype;

typedef struct {
    uint32_t dim;
    psrec_opt_t opt;
    psrec_init_kind init;
    float init_scale;
    uint64_t max_rows; /* 0 = unbounded; beyond it new keys are refused (see skip_new) */
    psrec_row_dtype dtype;
    /* With max_rows, what a call with keys that no longer fit gets:
     * 0: the whole call is refused with PSREC_EFULL, nothing created or applied;
     * 1: the call succeeds; new keys take rows while there is room, later ones are refused one by one and
     *    counted (psrec_store_refused): a pull gets their initial values without storing them, a push or
     *    set of them is dropped. A full table thus keeps serving a long run instead of stopping it.
     *    put_raw (restoring a checkpoint) stays all or nothing (PSREC_EFULL): a round is never cut short. */
    int skip_new;
    /* every row is a parameter that must exist (the tower's weights): a server never applies its
     * --max-rows or --at-max-rows to this table (the store itself does not look at this flag) */
    int exact;
} psrec_table_conf_t;

typedef struct psrec_store psrec_store_t;

/* nlocks: lock stripes per table, 1..1024 (else PSREC_EINVAL). */
psrec_err psrec_store_new(psrec_store_t **s, uint64_t seed, int nlocks) PSREC_MUST_CHECK;
void psrec_store_destroy(psrec_store_t **s);

/* Declares table `table` (a small integer, < PSREC_STORE_MAX_TABLES). PSREC_EINVAL if it exists, if the
 * id is out of range, or if conf is invalid (dim 0 or > 2^20, unknown kinds, negative lr/eps/l2/scale,
 * beta outside [0, 1)). Adam's bias correction uses each row's own step count (see ps/optim.h). */
#define PSREC_STORE_MAX_TABLES 64
psrec_err psrec_store_add_table(psrec_store_t *s, uint32_t table, const psrec_table_conf_t *conf,
                                char *err) PSREC_MUST_CHECK;
/* The table's row width, 0 if the table does not exist. */
uint32_t psrec_store_dim(const psrec_store_t *s, uint32_t table);

/* pull, push and set: PSREC_ENOTFOUND for a table that was not added (any id, n = 0 included).
 * With max_rows, a call whose new keys (keys without a row, a repeated one counted each time) do not all
 * fit is refused as a whole with PSREC_EFULL: nothing is created or applied (pulls of existing keys still
 * work when the table is full). PSREC_ENOMEM (or PSREC_EFULL past 2^32 - 2 rows in one lock stripe) may
 * leave a call partially applied; out is then unspecified.
 * Copies the weights of n keys into out (n x dim), creating missing rows. */
psrec_err psrec_store_pull(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n,
                           float *out) PSREC_MUST_CHECK;
/* Applies the optimizer with gradient grads (n x dim) to n keys (creating missing rows). Keys should
 * be unique within one call (the worker sums per key first); a repeated key is applied twice. */
psrec_err psrec_store_push(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n,
                           const float *grads) PSREC_MUST_CHECK;
/* Overwrites the weights of n keys (creating rows; optimizer state is reset). Used by model load and
 * by initialisers that need another distribution than the table's (dense layers). */
psrec_err psrec_store_set(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n,
                          const float *values) PSREC_MUST_CHECK;

/* How many of the n keys have no row yet (a repeated new key counts each time), without creating any:
 * lets a server refuse a request that would create too many rows before applying it. */
psrec_err psrec_store_missing(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n,
                              uint64_t *missing) PSREC_MUST_CHECK;

/* Number of materialised rows of a table, and the exact bytes per row (row payload + hash entry +
 * slab overhead amortised). */
uint64_t psrec_store_rows(const psrec_store_t *s, uint32_t table);
/* skip_new tables: keys refused because the table was full, since it was added (0 otherwise). */
uint64_t psrec_store_refused(const psrec_store_t *s, uint32_t table);
double psrec_store_bytes_per_row(const psrec_store_t *s, uint32_t table);

/* Calls fn(key, weights, ctx) for every row of the table, under the stripe locks (do not call back
 * into the store). Order unspecified. */
typedef void (*psrec_store_row_fn)(uint64_t key, const float *weights, uint32_t dim, void *ctx);
void psrec_store_foreach(psrec_store_t *s, uint32_t table, psrec_store_row_fn fn, void *ctx);

/* Draws n keys uniformly with replacement from the table's materialised rows (each row with
 * probability 1 / rows), with the caller's rng; *rows gets the row count the draw saw. With no rows,
 * nothing is drawn and *rows = 0. PSREC_ENOTFOUND for a missing table. Used by servers
 * that sample negatives from their own shard (ps/negatives.h). */
psrec_err psrec_store_sample(psrec_store_t *s, uint32_t table, psrec_rng_t *rng, size_t n, uint64_t *keys,
                             uint64_t *rows) PSREC_MUST_CHECK;

/* ---- raw rows (checkpoints) ---- */

/* 32-bit words per stored row: the weights (dim floats, or dim 16-bit values packed two to a word)
 * then the optimizer state (what a snapshot saves). 0 if no table. */
uint32_t psrec_store_row_width(const psrec_store_t *s, uint32_t table);
/* The table's configuration as added (PSREC_ENOTFOUND if none). */
psrec_err psrec_store_table_conf(const psrec_store_t *s, uint32_t table, psrec_table_conf_t *conf) PSREC_MUST_CHECK;
/* Like foreach, but fn gets the whole raw row (weights + optimizer state, `width` floats). */
typedef void (*psrec_store_raw_fn)(uint64_t key, const float *row, uint32_t width, void *ctx);
void psrec_store_foreach_raw(psrec_store_t *s, uint32_t table, psrec_store_raw_fn fn, void *ctx);
/* Creates or overwrites n whole raw rows (n x width floats: weights and optimizer state), for loading
 * snapshots. max_rows applies like for push (PSREC_EFULL, nothing changed). */
psrec_err psrec_store_put_raw(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n,
                              const float *rows) PSREC_MUST_CHECK;

/* The deterministic initial weights of (table, key) under the table's init (what a first touch gets). */
void psrec_store_init_row(const psrec_store_t *s, uint32_t table, uint64_t key, float *out);

const char *psrec_opt_name(psrec_opt_kind k);
const char *psrec_row_dtype_name(psrec_row_dtype d);
int psrec_row_dtype_parse(const char *name, psrec_row_dtype *d); /* "f32", "f16", "bf16"; 0 ok */
/* float32 <-> 16-bit conversions of the stored weights (round to nearest even; NaN stays NaN). */
uint16_t psrec_f32_to_f16(float f);
float psrec_f16_to_f32(uint16_t h);
uint16_t psrec_f32_to_bf16(float f);
float psrec_bf16_to_f32(uint16_t h);
int psrec_opt_parse(const char *name, psrec_opt_kind *k); /* "sgd","adagrad","rowwise-adagrad","adam"; 0 ok */

#endif

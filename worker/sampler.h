/* sampler.h: negative samplers over an item catalogue (ALGORITHMS.md §3). Each draw returns item keys
 * and log E (expected count of that key in the draw, stop-gradient) for the logQ correction, and the
 * sampler can tell log E for any key (positives are corrected too, TF's true_expected_count).
 *
 * Kinds:
 *  - UNIFORM: S draws with replacement from the catalogue; E = S/N.
 *  - POPULARITY: Q_j = (c_j+1)^alpha / sum (Walker/Vose alias table built in double, stored as float32
 *    prob + uint32 alias, 8 B/item, in memory or in a cache file shared by the machine's processes);
 *    E = S Q_j, computed from the counts (never from the table).
 *  - INBATCH: the negatives are the batch's positive keys (with multiplicity); E_j = p_hat_j from the
 *    streaming frequency estimate of Yi et al. 2019 (§3.3), updated by psrec_sampler_observe().
 *  - MIXED: in-batch keys plus S uniform draws; E_j = p_hat_j + S/N (§3.4).
 *  - HARD: two stages (§3.5 b): psrec_sampler_draw gives a uniform pool of M keys (E unused); the
 *    caller scores the pool against the batch and calls psrec_sampler_hard_resample to get h keys
 *    with log E_j = log h + log(M/N) + s_j/T - LSE_k(s_k/T).
 *  - ALL: every catalogue item once, E = 1 (full softmax through the sampled path).
 *
 * Memory: the sampler borrows the catalogue (items, counts: e.g. a mapped freq.bin) and keeps no O(N)
 * copy of it; only POPULARITY holds an O(N) table (the alias table, 8 B/item), plus 4 B/item for a
 * non-dense catalogue whose keys are not ascending.
 *
 * Thread model: draw() and log_expected() only read the sampler and use the caller's rng, so worker
 * threads share one sampler; observe() (in-batch estimate) takes an internal lock. */
#ifndef PSREC_SAMPLER_H
#define PSREC_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/rng.h"

typedef enum {
    PSREC_SAMPLER_UNIFORM = 0,
    PSREC_SAMPLER_POPULARITY,
    PSREC_SAMPLER_INBATCH,
    PSREC_SAMPLER_MIXED,
    PSREC_SAMPLER_HARD,
    PSREC_SAMPLER_ALL
} psrec_sampler_kind;

typedef struct {
    psrec_sampler_kind kind;
    size_t n_items;         /* catalogue size N */
    const uint64_t *items;  /* N catalogue keys, BORROWED (must outlive the sampler); may be NULL if dense */
    const uint64_t *counts; /* N training counts (POPULARITY), BORROWED likewise, or NULL */
    int dense;              /* the keys are exactly 0..N-1 (psrec_freq_t.dense): draws need no key table and a
                               key's index is the key; items, if given, must start at 0 and end at N-1 */
    const char *cache_path; /* POPULARITY: a file holding the alias table, built once, mapped read-only and
                               shared by every process of the machine (stale or corrupt: rebuilt); NULL =
                               build it in this process's memory. A file that cannot be written is not an
                               error: the table stays in memory (psrec_sampler_alias_origin tells). */
    double alpha;           /* POPULARITY exponent (0.75 as word2vec) */
    size_t hash_size;       /* INBATCH/MIXED: size H of the frequency arrays (default 1<<20 if 0) */
    double rate;            /* INBATCH/MIXED: moving-average rate (default 0.01 if 0) */
    double temperature;     /* HARD: T (default 1 if 0) */
} psrec_sampler_conf_t;

typedef struct psrec_sampler psrec_sampler_t;

psrec_err psrec_sampler_new(psrec_sampler_t **s, const psrec_sampler_conf_t *conf, char *err) PSREC_MUST_CHECK;
void psrec_sampler_destroy(psrec_sampler_t **s);
psrec_sampler_kind psrec_sampler_kind_of(const psrec_sampler_t *s);

/* Draws the batch's shared negatives into keys/logE (capacity cap). `batch_pos` (n_batch_pos keys)
 * are the batch's positives, used by INBATCH and MIXED. *n_out = how many were written:
 * UNIFORM/POPULARITY: S; INBATCH: n_batch_pos; MIXED: n_batch_pos + S; HARD: S (the pool, M = S);
 * ALL: N. PSREC_EFULL if cap is too small (nothing written, *n_out = the capacity needed). */
psrec_err psrec_sampler_draw(const psrec_sampler_t *s, psrec_rng_t *rng, size_t S, const uint64_t *batch_pos,
                             size_t n_batch_pos, uint64_t *keys, float *logE, size_t cap,
                             size_t *n_out) PSREC_MUST_CHECK;

/* log E for `key` in a draw of the same shape (S, n_batch_pos as in the draw). */
float psrec_sampler_log_expected(const psrec_sampler_t *s, uint64_t key, size_t S, size_t n_batch_pos);

/* INBATCH/MIXED: feed the batch's positives at global step t (Yi et al. streaming estimate). */
void psrec_sampler_observe(psrec_sampler_t *s, const uint64_t *batch_pos, size_t n, uint64_t t);

/* HARD stage 2: from a pool (M keys with scores, scores = shared pool score, e.g. log-mean-exp over the
 * batch), draw h keys with replacement with probability softmax(score/T); writes h keys and log E. */
psrec_err psrec_sampler_hard_resample(const psrec_sampler_t *s, psrec_rng_t *rng, const uint64_t *pool,
                                      const float *score, size_t M, size_t h, uint64_t *keys,
                                      float *logE) PSREC_MUST_CHECK;

/* Fills q[0..n) (n must equal N) with the probability that one random draw returns catalogue entry i,
 * read back from the draw tables: for POPULARITY it is reconstructed from the alias table,
 * (prob[i] + sum over k with alias[k] = i of (1 - prob[k])) / N, so tests can check the build exactly;
 * 1/N for UNIFORM, MIXED and HARD (their uniform part / pool); 0 for INBATCH and ALL. */
psrec_err psrec_sampler_draw_probs(const psrec_sampler_t *s, double *q, size_t n) PSREC_MUST_CHECK;

/* Where a POPULARITY sampler's alias table lives. */
typedef enum {
    PSREC_ALIAS_NONE = 0,   /* not a POPULARITY sampler */
    PSREC_ALIAS_MEMORY,     /* built in this process's memory (no cache_path, or the cache was not writable) */
    PSREC_ALIAS_CACHE_HIT,  /* an existing cache file matched (N, alpha, counts) and is mapped */
    PSREC_ALIAS_CACHE_BUILT /* the cache was missing, stale or corrupt: built, written and mapped */
} psrec_sampler_alias_origin_t;
psrec_sampler_alias_origin_t psrec_sampler_alias_origin(const psrec_sampler_t *s);

const char *psrec_sampler_name(psrec_sampler_kind k);
int psrec_sampler_parse(const char *name, psrec_sampler_kind *k); /* "uniform", "popularity", ... ; 0 = ok */

#endif

/* data_gen.h: deterministic synthetic data with planted categories (`psrec gen`).
 *
 * Items 0..n_items-1; item j belongs to category j % n_categories, and within a category items have
 * Zipf(zipf_s) popularity by rank (rank = j / n_categories), sampled by rejection-inversion so memory
 * is O(1) in n_items. A user has one home category, or two with probability p_two_homes; each
 * interaction is drawn from a home category, except with probability leak_rate from a uniformly
 * chosen category. A user's history has a length uniform in [min_hist, max_hist]; the next 1..max_pos
 * interactions are the positives, redrawn (same category, up to 64 times) when already in the
 * history: positives are items new to the user. A `region` slot carries a noisy hint of the first
 * home category (its value is the home category with probability region_signal, else random), so the tower has a
 * query feature beyond the history. Test users come from the same process with other seeds, have no
 * leaks, and their lines carry `_home=` for the folding metric.
 * Output: <dir>/train.txt, <dir>/test.txt, <dir>/items.tsv ("id<TAB>category", one line per item).
 * Every user is generated from its own RNG stream (seed, user index): streaming, no O(users) or
 * O(items) memory. Thread model: single-threaded. */
#ifndef PSREC_DATA_GEN_H
#define PSREC_DATA_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct {
    uint64_t n_items;
    uint32_t n_categories;
    uint64_t n_train_users;
    uint64_t n_test_users;
    double zipf_s;
    uint32_t min_hist, max_hist;
    uint32_t max_pos;
    double leak_rate;
    double p_two_homes;
    double region_signal;
    uint64_t seed;
} psrec_gen_conf_t;

/* Fills the defaults of the demo (2000 items, 10 categories, 20000 train users, 2000 test users,
 * zipf 1.0, hist 3..20, up to 3 positives, leak 0.02, two homes 0.3, region signal 0.7, seed 1). */
void psrec_gen_defaults(psrec_gen_conf_t *c);
psrec_err psrec_gen_write(const psrec_gen_conf_t *c, const char *dir, char *err) PSREC_MUST_CHECK;

/* Reads an items file ("id<TAB>category" per line) into parallel arrays (caller frees both). */
psrec_err psrec_items_load(const char *path, uint64_t **ids, int32_t **cats, size_t *n, char *err) PSREC_MUST_CHECK;

#endif

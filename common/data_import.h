/* data_import.h: ratings logs -> psrec text examples (`psrec import`).
 *
 * Accepts MovieLens-style files: "user::item::rating::timestamp" (ml-1m), tab-separated
 * "user item rating timestamp" (ml-100k u.data), and CSV with a header line
 * "userId,movieId,rating,timestamp" (ml-20m/25m). Ratings >= min_rating count as interactions.
 * Per user, interactions are ordered by time (ties by item); with leave-last-out the last one is the
 * test positive (history = all earlier ones, truncated to the last max_hist), and the training
 * examples are history -> next-item for every earlier position (history = up to max_hist previous
 * items). Users with fewer than 2 interactions give no test line.
 * Writes <dir>/train.txt and <dir>/test.txt. Malformed lines: file:line error (or skip_bad).
 * Thread model: single-threaded; holds all interactions in memory (24 bytes each). */
#ifndef PSREC_DATA_IMPORT_H
#define PSREC_DATA_IMPORT_H

#include <stddef.h>

#include "common/err.h"

typedef struct {
    double min_rating; /* default 0: every rating counts */
    unsigned max_hist; /* default 50 */
    int skip_bad;
    size_t skipped;                  /* out: malformed lines skipped */
    size_t n_train, n_test, n_users; /* out */
} psrec_import_conf_t;

psrec_err psrec_import_ratings(const char *path, const char *dir, psrec_import_conf_t *c, char *err) PSREC_MUST_CHECK;

#endif

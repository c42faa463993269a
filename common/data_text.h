/* data_text.h: the text example format (docs/data-format.md) read into batches.
 *
 * One example per line, whitespace-separated fields `name=value,value,...`:
 *   pos=12:2.0,57 hist=3,4,5 region=fr _home=3
 * `pos` lists the positives with optional `:weight` (> 0, default 1; normalised into p). Every other
 * name is a feature slot (a bag of ids); `hist` is the history slot (item ids). `_home` (categories,
 * decimal uint32) is metadata for the folding metric. Ids are decimal uint64, or any other token
 * (no whitespace , : =) hashed with psrec_hash_string_id. Blank lines and lines starting with '#'
 * are skipped. A malformed line is an error naming file:line and what is wrong, or, with skip_bad,
 * is counted and skipped.
 * Thread model: one reader per thread. */
#ifndef PSREC_DATA_TEXT_H
#define PSREC_DATA_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "common/batch.h"
#include "common/err.h"

typedef struct {
    int skip_bad;       /* count and skip malformed lines instead of failing */
    int fixed_schema;   /* unknown slot names are errors (or ignored with ignore_unknown) instead of added */
    int ignore_unknown; /* with fixed_schema: silently drop unknown slots */
    int require_pos;    /* a line without positives is malformed (training/eval data) */
} psrec_text_opts_t;

typedef struct psrec_text_reader psrec_text_reader_t;

/* path "-" reads stdin. `schema` is owned by the caller and updated as new slots appear (unless
 * fixed_schema); batches filled by this reader carry schema->nslots slots. */
psrec_err psrec_text_open(psrec_text_reader_t **r, const char *path, psrec_schema_t *schema,
                          const psrec_text_opts_t *opts, char *err) PSREC_MUST_CHECK;
void psrec_text_close(psrec_text_reader_t **r);

/* Appends up to max examples to b. *got = number appended; 0 with PSREC_OK means end of input.
 * On PSREC_EPARSE err is "file:line: what is wrong" and examples appended before it stay in b. */
psrec_err psrec_text_read(psrec_text_reader_t *r, psrec_batch_t *b, size_t max, size_t *got,
                          char *err) PSREC_MUST_CHECK;

/* The id rule of the format, for every reader of ids (items files, ratings logs): a strictly decimal
 * token is that number, any other token its XXH3 hash with the top bit set. Returns 0, or -1 for an
 * empty token or a decimal one beyond uint64. */
int psrec_text_id(const char *s, size_t len, uint64_t *id);

size_t psrec_text_lines(const psrec_text_reader_t *r);   /* lines consumed so far */
size_t psrec_text_skipped(const psrec_text_reader_t *r); /* malformed lines skipped (skip_bad) */

/* Parses one line (no newline) into b as one example; the building block of psrec_text_read, exposed
 * for tests and for `psrec recommend` on stdin. `where` prefixes error messages ("file:line"). */
psrec_err psrec_text_parse_line(const char *line, size_t len, psrec_schema_t *schema, const psrec_text_opts_t *opts,
                                psrec_batch_t *b, const char *where, char *err) PSREC_MUST_CHECK;

#endif

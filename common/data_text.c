/* data_text.c: the text example format (docs/data-format.md) parsed into batches.
 *
 * Design: a line is parsed in one pass straight into the batch (begin/add/end), so a well-formed line
 * costs no allocation; a malformed line is rolled back with psrec_batch_abort. The one thing that is
 * not rolled back by the batch is the caller's schema, so fields naming a slot the schema does not yet
 * know are only validated during the pass and emitted after the whole line has been accepted: a bad
 * line never adds a slot. Positive ids repeated within a line are merged (weights summed) with a
 * linear scan for short lists and a reusable idmap for long ones. Lines are read with getline, so
 * their length is bounded only by memory (and a 1 GiB sanity limit).
 * Thread model: one reader per thread; psrec_text_parse_line keeps no state between calls. */
#include "common/data_text.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/idmap.h"

#define MAX_LINE ((size_t)1 << 30) /* longer lines are refused: offsets in a batch are uint32 */
#define DEDUP_LINEAR 32            /* positives per line merged by linear scan up to this count */
#define TOKEN_SHOW 64              /* offending tokens longer than this are cut in messages */
#define MAX_WEIGHT 1e30            /* keeps sums of merged weights finite in float */

typedef struct {
    psrec_idmap_t *dedup; /* id -> index in pos arrays; created on the first long positive list */
} scratch_t;

struct psrec_text_reader {
    FILE *fp;
    int own_fp;
    char *name;
    psrec_schema_t *schema;
    psrec_text_opts_t opts;
    char *line;
    size_t line_cap;
    size_t lines, skipped;
    int eof;
    scratch_t scratch;
};

/* A field whose slot is not in the schema yet: emitted after the line is accepted. */
typedef struct {
    const char *name, *val;
    size_t name_len, val_len;
} pending_t;

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static psrec_err bad(char *err, const char *where, const char *what, const char *tok, size_t len)
{
    int show = len > TOKEN_SHOW ? TOKEN_SHOW : (int)len;
    return psrec_fail(err, PSREC_EPARSE, "%s: %s (%.*s%s)", where, what, show, tok, len > TOKEN_SHOW ? "..." : "");
}

/* Strictly decimal token -> 0 and *v; 1 if decimal but > max; -1 if not strictly decimal. */
static int parse_dec(const char *s, size_t len, uint64_t max, uint64_t *v)
{
    if (len == 0) return -1;
    uint64_t x = 0;
    int over = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) return -1;
        if (x > (max - d) / 10)
            over = 1;
        else
            x = x * 10 + d;
    }
    if (over) return 1;
    *v = x;
    return 0;
}

/* Id rule of the format: strictly decimal -> that number (error if it overflows uint64), otherwise
 * the XXH3 hash with the top bit set. The token holds no whitespace , : = (the caller split on them). */
static psrec_err parse_id(const char *s, size_t len, uint64_t *id, const char *where, char *err)
{
    if (len == 0) return bad(err, where, "empty id", s, len);
    if (psrec_text_id(s, len, id)) return bad(err, where, "id out of range", s, len);
    return PSREC_OK;
}

int psrec_text_id(const char *s, size_t len, uint64_t *id)
{
    if (len == 0) return -1;
    int r = parse_dec(s, len, UINT64_MAX, id);
    if (r == 1) return -1;
    if (r < 0) *id = psrec_hash_string_id(s, len);
    return 0;
}

static psrec_err parse_weight(const char *s, size_t len, float *w, const char *item, size_t item_len, const char *where,
                              char *err)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf) return bad(err, where, "bad weight", item, item_len);
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (end != buf + len || !isfinite(d)) return bad(err, where, "bad weight", item, item_len);
    if (!(d > 0) || (float)d <= 0.0f) return bad(err, where, "weight must be > 0", item, item_len);
    if (d > MAX_WEIGHT) return bad(err, where, "weight too large", item, item_len);
    *w = (float)d;
    return PSREC_OK;
}

static psrec_err nomem(char *err, const char *where)
{
    return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", where);
}

/* Adds positive (id, w) to the example under construction, merging a repeated id. */
static psrec_err add_pos(scratch_t *sc, psrec_batch_t *b, uint64_t id, float w, int *use_map, const char *where,
                         char *err)
{
    size_t a = b->pos_off[b->n], e = b->pos_off[b->n + 1];
    if (!*use_map && e - a < DEDUP_LINEAR) {
        for (size_t k = a; k < e; k++)
            if (b->pos_id[k] == id) {
                b->pos_w[k] += w;
                return isfinite(b->pos_w[k]) ? PSREC_OK : bad(err, where, "weight too large", "pos", 3);
            }
        return psrec_batch_add_pos(b, id, w) ? nomem(err, where) : PSREC_OK;
    }
    if (!*use_map) { /* switch to the map: index what is there */
        if (!sc->dedup && psrec_idmap_new(&sc->dedup, 256)) return nomem(err, where);
        psrec_idmap_clear(sc->dedup);
        for (size_t k = a; k < e; k++)
            if (psrec_idmap_put(sc->dedup, b->pos_id[k], k)) return nomem(err, where);
        *use_map = 1;
    }
    int ins;
    uint64_t *slot = psrec_idmap_upsert(sc->dedup, id, e, &ins);
    if (!slot) return nomem(err, where);
    if (!ins) {
        b->pos_w[*slot] += w;
        return isfinite(b->pos_w[*slot]) ? PSREC_OK : bad(err, where, "weight too large", "pos", 3);
    }
    return psrec_batch_add_pos(b, id, w) ? nomem(err, where) : PSREC_OK;
}

enum { F_POS, F_HOME, F_SLOT, F_CHECK };

/* Parses the comma list `val` of a field. kind F_POS: ids with optional :weight; F_HOME: decimal
 * uint32 categories; F_SLOT: ids into slot `slot`; F_CHECK: ids, validated only (b untouched). */
static psrec_err parse_list(scratch_t *sc, int kind, int slot, const char *val, size_t len, psrec_batch_t *b,
                            const char *where, char *err)
{
    int use_map = 0;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && val[j] != ',')
            j++;
        const char *it = val + i;
        size_t il = j - i;
        if (il == 0) return bad(err, where, "empty id in list", val, len);
        const char *colon = memchr(it, ':', il);
        size_t idl = colon ? (size_t)(colon - it) : il;
        if (idl == 0) return bad(err, where, "empty id", it, il);
        if (colon && kind != F_POS) return bad(err, where, "weights are only allowed in pos", it, il);
        psrec_err rc;
        if (kind == F_HOME) {
            uint64_t c;
            int r = parse_dec(it, idl, UINT32_MAX, &c);
            if (r < 0) return bad(err, where, "category must be a decimal number", it, il);
            if (r > 0) return bad(err, where, "category out of range", it, il);
            if (psrec_batch_add_home(b, (uint32_t)c)) return nomem(err, where);
        } else {
            uint64_t id = 0;
            if ((rc = parse_id(it, idl, &id, where, err))) return rc;
            if (kind == F_POS) {
                float w = 1.0f;
                if (colon && (rc = parse_weight(colon + 1, il - idl - 1, &w, it, il, where, err))) return rc;
                if ((rc = add_pos(sc, b, id, w, &use_map, where, err))) return rc;
            } else if (kind == F_SLOT) {
                if (psrec_batch_add_slot(b, slot, id)) return nomem(err, where);
            }
        }
        if (j == len) break;
        i = j + 1;
    }
    return PSREC_OK;
}

static int valid_name(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == ',' || c == ':') return 0;
    }
    return 1;
}

static psrec_err parse_fields(scratch_t *sc, const char *line, size_t len, psrec_schema_t *schema,
                              const psrec_text_opts_t *opts, psrec_batch_t *b, const char *where, char *err)
{
    pending_t pend[PSREC_MAX_SLOTS];
    int npend = 0, seen_pos = 0, seen_home = 0;
    uint32_t seen_slots = 0;
    size_t i = 0;
    psrec_err rc;
    for (;;) {
        while (i < len && is_space((unsigned char)line[i]))
            i++;
        if (i == len) break;
        size_t j = i;
        while (j < len && !is_space((unsigned char)line[j]))
            j++;
        const char *tok = line + i;
        size_t tl = j - i;
        i = j;
        const char *eq = memchr(tok, '=', tl);
        if (!eq) return bad(err, where, "missing '=' in field", tok, tl);
        size_t nl = (size_t)(eq - tok), vl = tl - nl - 1;
        const char *val = eq + 1;
        if (nl == 0) return bad(err, where, "empty field name", tok, tl);
        if (vl == 0) return bad(err, where, "empty value", tok, tl);
        if (memchr(val, '=', vl)) return bad(err, where, "'=' inside a value", tok, tl);
        if (nl == 3 && memcmp(tok, "pos", 3) == 0) {
            if (seen_pos) return bad(err, where, "duplicate field", tok, nl);
            seen_pos = 1;
            if ((rc = parse_list(sc, F_POS, -1, val, vl, b, where, err))) return rc;
            continue;
        }
        if (nl == 5 && memcmp(tok, "_home", 5) == 0) {
            if (seen_home) return bad(err, where, "duplicate field", tok, nl);
            seen_home = 1;
            if ((rc = parse_list(sc, F_HOME, -1, val, vl, b, where, err))) return rc;
            continue;
        }
        if (tok[0] == '_') return bad(err, where, "unknown reserved field", tok, nl);
        int drop = opts && opts->fixed_schema && opts->ignore_unknown; /* unknown names are dropped */
        if (!valid_name(tok, nl)) {
            if (drop) continue;
            return bad(err, where, "bad field name", tok, nl);
        }
        if (nl >= PSREC_SLOT_NAME_MAX) {
            if (drop) continue;
            return bad(err, where, "slot name too long (max 31 bytes)", tok, nl);
        }
        int s = psrec_schema_find(schema, tok, nl);
        if (s >= 0) {
            if (seen_slots & (1u << s)) return bad(err, where, "duplicate field", tok, nl);
            seen_slots |= 1u << s;
            if ((rc = parse_list(sc, F_SLOT, s, val, vl, b, where, err))) return rc;
            continue;
        }
        if (drop) continue;
        if (opts && opts->fixed_schema) return bad(err, where, "unknown slot", tok, nl);
        for (int k = 0; k < npend; k++)
            if (pend[k].name_len == nl && memcmp(pend[k].name, tok, nl) == 0)
                return bad(err, where, "duplicate field", tok, nl);
        if (schema->nslots + npend >= PSREC_MAX_SLOTS) return bad(err, where, "too many slots (max 16)", tok, nl);
        if ((rc = parse_list(sc, F_CHECK, -1, val, vl, b, where, err))) return rc;
        pend[npend++] = (pending_t){tok, val, nl, vl};
    }
    if (opts && opts->require_pos && !seen_pos) return bad(err, where, "no positives (pos=...)", line, len);
    /* the line is good: now new slots may enter the schema */
    for (int k = 0; k < npend; k++) {
        int s = psrec_schema_add(schema, pend[k].name, pend[k].name_len);
        if (s < 0) return bad(err, where, "too many slots (max 16)", pend[k].name, pend[k].name_len);
        if (psrec_batch_set_nslots(b, schema->nslots)) return nomem(err, where);
        if ((rc = parse_list(sc, F_SLOT, s, pend[k].val, pend[k].val_len, b, where, err))) return rc;
    }
    return PSREC_OK;
}

static int blank_or_comment(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && is_space((unsigned char)line[i]))
        i++;
    return i == len || line[i] == '#';
}

static psrec_err parse_one(scratch_t *sc, const char *line, size_t len, psrec_schema_t *schema,
                           const psrec_text_opts_t *opts, psrec_batch_t *b, const char *where, char *err)
{
    if (!where) where = "line";
    if (blank_or_comment(line, len)) return PSREC_OK;
    if (len > MAX_LINE) return bad(err, where, "line too long (max 1 GiB)", line, 16);
    if (b->nslots < schema->nslots && psrec_batch_set_nslots(b, schema->nslots)) return nomem(err, where);
    if (psrec_batch_begin(b)) return nomem(err, where);
    psrec_err rc = parse_fields(sc, line, len, schema, opts, b, where, err);
    if (rc) {
        psrec_batch_abort(b);
        return rc;
    }
    psrec_batch_end(b);
    return PSREC_OK;
}

psrec_err psrec_text_parse_line(const char *line, size_t len, psrec_schema_t *schema, const psrec_text_opts_t *opts,
                                psrec_batch_t *b, const char *where, char *err)
{
    scratch_t sc = {0};
    psrec_err rc = parse_one(&sc, line, len, schema, opts, b, where, err);
    psrec_idmap_destroy(&sc.dedup);
    return rc;
}

psrec_err psrec_text_open(psrec_text_reader_t **out, const char *path, psrec_schema_t *schema,
                          const psrec_text_opts_t *opts, char *err)
{
    *out = NULL;
    psrec_text_reader_t *r = calloc(1, sizeof *r);
    if (!r) return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    int is_stdin = strcmp(path, "-") == 0;
    r->name = strdup(is_stdin ? "stdin" : path);
    if (!r->name) {
        free(r);
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    }
    if (is_stdin) {
        r->fp = stdin;
    } else {
        r->fp = fopen(path, "r");
        if (!r->fp) {
            int e = errno;
            free(r->name);
            free(r);
            return psrec_fail(err, e == ENOENT ? PSREC_ENOTFOUND : PSREC_EIO, "%s: cannot open: %s", path, strerror(e));
        }
        r->own_fp = 1;
    }
    r->schema = schema;
    if (opts) r->opts = *opts;
    *out = r;
    return PSREC_OK;
}

void psrec_text_close(psrec_text_reader_t **pr)
{
    if (!pr || !*pr) return;
    psrec_text_reader_t *r = *pr;
    if (r->own_fp) fclose(r->fp);
    free(r->line);
    free(r->name);
    psrec_idmap_destroy(&r->scratch.dedup);
    free(r);
    *pr = NULL;
}

psrec_err psrec_text_read(psrec_text_reader_t *r, psrec_batch_t *b, size_t max, size_t *got, char *err)
{
    *got = 0;
    if (b->nslots < r->schema->nslots && psrec_batch_set_nslots(b, r->schema->nslots))
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", r->name);
    char where[PSREC_ERRBUF];
    while (*got < max && !r->eof) {
        errno = 0;
        ssize_t n = getline(&r->line, &r->line_cap, r->fp);
        if (n < 0) {
            if (ferror(r->fp) || errno == ENOMEM) {
                int e = errno ? errno : EIO;
                clearerr(r->fp);
                return psrec_fail(err, e == ENOMEM ? PSREC_ENOMEM : PSREC_EIO, "%s:%zu: read failed: %s", r->name,
                                  r->lines + 1, strerror(e));
            }
            r->eof = 1;
            break;
        }
        r->lines++;
        size_t len = (size_t)n;
        if (len && r->line[len - 1] == '\n') len--;
        if (blank_or_comment(r->line, len)) continue;
        snprintf(where, sizeof where, "%s:%zu", r->name, r->lines);
        size_t before = b->n;
        psrec_err rc = parse_one(&r->scratch, r->line, len, r->schema, &r->opts, b, where, err);
        if (rc == PSREC_EPARSE && r->opts.skip_bad) {
            r->skipped++;
            continue;
        }
        if (rc) return rc;
        *got += b->n - before;
    }
    return PSREC_OK;
}

size_t psrec_text_lines(const psrec_text_reader_t *r)
{
    return r->lines;
}

size_t psrec_text_skipped(const psrec_text_reader_t *r)
{
    return r->skipped;
}

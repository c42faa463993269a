/* data_import.c: ratings logs -> psrec text examples (`psrec import`, see data_import.h and
 * docs/data-format.md, "Importing ratings").
 *
 * Design: the format is decided once, from the first data line ("::" -> MovieLens 1M, a tab ->
 * MovieLens 100k, a comma -> CSV, whose first line is a header when its first field is not a
 * number). Interactions with rating >= min_rating are kept as 24-byte (user, item, time) records,
 * sorted once by (user, time, item), and each user's run is turned into lines: the last interaction
 * is the test positive, every earlier one except the first is a training positive, each with the up
 * to max_hist interactions before it as `hist` (oldest first). User and item ids follow the text
 * format's rule (decimal, else XXH3 with the top bit set) and are written as decimals.
 * Outputs are written to "<path>.tmp" and renamed into place.
 * Thread model: single-threaded; no shared state. */
#include "common/data_import.h"

#include "common/data_text.h"
#include "common/durable.h"
#include "common/textfmt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/durable.h"
#include "common/hash.h"
#include "common/textfmt.h"

#define DEFAULT_MAX_HIST 50
#define TOKEN_SHOW 64

typedef struct {
    uint64_t user, item;
    int64_t ts;
} rec_t;

enum { FMT_UNKNOWN, FMT_DCOLON, FMT_TAB, FMT_CSV };

static psrec_err bad(char *err, const char *path, size_t line, const char *what, const char *tok, size_t len)
{
    int show = len > TOKEN_SHOW ? TOKEN_SHOW : (int)len;
    return psrec_fail(err, PSREC_EPARSE, "%s:%zu: %s (%.*s%s)", path, line, what, show, tok,
                      len > TOKEN_SHOW ? "..." : "");
}

static int is_decimal(const char *s, size_t len)
{
    if (len == 0) return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

static int parse_ts(const char *s, size_t len, int64_t *ts)
{
    size_t i = 0;
    int neg = len > 0 && s[0] == '-';
    i = (size_t)neg;
    if (i == len) return -1;
    uint64_t x = 0;
    for (; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9 || x > ((uint64_t)INT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    *ts = neg ? -(int64_t)x : (int64_t)x;
    return 0;
}

static int parse_rating(const char *s, size_t len, double *r)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    *r = strtod(buf, &end);
    return end == buf + len && isfinite(*r) ? 0 : -1;
}

/* Splits line into at most 8 fields on the format's separator; returns the field count. */
static int split(int fmt, const char *line, size_t len, const char **f, size_t *fl)
{
    int n = 0;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        if (fmt == FMT_DCOLON) {
            while (j < len && !(line[j] == ':' && j + 1 < len && line[j + 1] == ':'))
                j++;
        } else {
            char sep = fmt == FMT_TAB ? '\t' : ',';
            while (j < len && line[j] != sep)
                j++;
        }
        if (n < 8) {
            f[n] = line + i;
            fl[n] = j - i;
        }
        n++;
        if (j >= len) break;
        i = j + (fmt == FMT_DCOLON ? 2 : 1);
    }
    return n;
}

static int cmp_rec(const void *a, const void *b)
{
    const rec_t *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

static psrec_err read_records(const char *path, psrec_import_conf_t *c, rec_t **out, size_t *nout, char *err)
{
    *out = NULL;
    *nout = 0;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        int e = errno;
        return psrec_fail(err, e == ENOENT ? PSREC_ENOTFOUND : PSREC_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0, n = 0, ncap = 0;
    rec_t *recs = NULL;
    int fmt = FMT_UNKNOWN;
    psrec_err rc = PSREC_OK;
    ssize_t got;
    while (!rc && (got = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t'))
            k++;
        if (k == len || line[k] == '#') continue;
        const char *f[8];
        size_t fl[8];
        if (fmt == FMT_UNKNOWN) {
            int dcolon = 0;
            for (size_t q = 0; q + 1 < len && !dcolon; q++)
                dcolon = line[q] == ':' && line[q + 1] == ':';
            if (dcolon)
                fmt = FMT_DCOLON;
            else if (memchr(line, '\t', len))
                fmt = FMT_TAB;
            else if (memchr(line, ',', len))
                fmt = FMT_CSV;
            else {
                rc = bad(err, path, lineno,
                         "unrecognised ratings format (want user::item::rating::time, "
                         "tab-separated or CSV)",
                         line, len);
                break;
            }
            if (fmt == FMT_CSV) {
                split(fmt, line, len, f, fl);
                if (!is_decimal(f[0], fl[0])) continue; /* header line */
            }
        }
        int nf = split(fmt, line, len, f, fl);
        const char *what = NULL, *tok = line;
        size_t tl = len;
        uint64_t user = 0, item = 0;
        double rating = 0;
        int64_t ts = 0;
        if (nf != 4)
            what = "expected 4 fields: user, item, rating, timestamp";
        else if (psrec_text_id(f[0], fl[0], &user))
            what = "bad user id", tok = f[0], tl = fl[0];
        else if (psrec_text_id(f[1], fl[1], &item))
            what = "bad item id", tok = f[1], tl = fl[1];
        else if (parse_rating(f[2], fl[2], &rating))
            what = "bad rating", tok = f[2], tl = fl[2];
        else if (parse_ts(f[3], fl[3], &ts))
            what = "bad timestamp", tok = f[3], tl = fl[3];
        if (what) {
            if (c->skip_bad) {
                c->skipped++;
                continue;
            }
            rc = bad(err, path, lineno, what, tok, tl);
            break;
        }
        if (rating < c->min_rating) continue;
        if (n == ncap) {
            size_t nc = ncap ? ncap * 2 : 4096;
            rec_t *q = realloc(recs, nc * sizeof *q);
            if (!q) {
                rc = psrec_fail(err, PSREC_ENOMEM, "%s: out of memory after %zu interactions", path, n);
                break;
            }
            recs = q;
            ncap = nc;
        }
        recs[n++] = (rec_t){user, item, ts};
    }
    if (!rc && ferror(fp)) rc = psrec_fail(err, PSREC_EIO, "%s: read failed", path);
    free(line);
    fclose(fp);
    if (rc) {
        free(recs);
        return rc;
    }
    *out = recs;
    *nout = n;
    return PSREC_OK;
}

/* Opens <dir>/<name> for a crash-safe write (common/durable.h, no trailer: a text file). */
static psrec_err out_open(psrec_dfile_t **f, const char *dir, const char *name, char *err)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return psrec_fail(err, PSREC_EINVAL, "%s: path too long", dir);
    return psrec_dfile_open_plain(f, path, err);
}

/* Writes "pos=<r[t].item> hist=<items of r[t-h..t)>" for h = min(t, max_hist), t >= 1. */
static psrec_err write_example(psrec_dfile_t *o, const rec_t *r, size_t t, size_t max_hist, char *line, char *err)
{
    char *p = line;
    memcpy(p, "pos=", 4);
    p = psrec_put_u64(p + 4, r[t].item);
    memcpy(p, " hist=", 6);
    p += 6;
    size_t from = t > max_hist ? t - max_hist : 0;
    for (size_t k = from; k < t; k++) {
        if (k > from) *p++ = ',';
        p = psrec_put_u64(p, r[k].item);
    }
    *p++ = '\n';
    return psrec_dfile_write(o, line, (size_t)(p - line), err);
}

psrec_err psrec_import_ratings(const char *path, const char *dir, psrec_import_conf_t *c, char *err)
{
    c->skipped = c->n_train = c->n_test = c->n_users = 0;
    if (!(c->min_rating == c->min_rating)) return psrec_fail(err, PSREC_EINVAL, "import: min_rating is NaN");
    size_t max_hist = c->max_hist ? c->max_hist : DEFAULT_MAX_HIST;
    rec_t *r;
    size_t n;
    psrec_err rc = read_records(path, c, &r, &n, err);
    if (rc) return rc;
    if ((rc = psrec_mkdirs(dir, err))) {
        free(r);
        return rc;
    }
    qsort(r, n, sizeof *r, cmp_rec);
    char *line = malloc((max_hist + 1) * 21 + 32);
    psrec_dfile_t *tr = NULL, *te = NULL;
    if (!line) rc = psrec_fail(err, PSREC_ENOMEM, "import: out of memory");
    if (!rc) rc = out_open(&tr, dir, "train.txt", err);
    if (!rc) rc = out_open(&te, dir, "test.txt", err);
    for (size_t a = 0; a < n && !rc;) {
        size_t e = a + 1;
        while (e < n && r[e].user == r[a].user)
            e++;
        size_t m = e - a;
        c->n_users++;
        for (size_t t = 1; t + 1 < m && !rc; t++) { /* the first has no history, the last is the test */
            rc = write_example(tr, r + a, t, max_hist, line, err);
            c->n_train++;
        }
        if (m >= 2 && !rc) {
            rc = write_example(te, r + a, m - 1, max_hist, line, err);
            c->n_test++;
        }
        a = e;
    }
    if (!tr || !te) {
        psrec_dfile_abort(&tr);
        psrec_dfile_abort(&te);
    } else {
        rc = psrec_dfile_finish(&tr, rc, err);
        rc = psrec_dfile_finish(&te, rc, err);
    }
    free(line);
    free(r);
    return rc;
}

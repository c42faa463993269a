/* data_gen.c: deterministic synthetic data with planted categories (`psrec gen`, see data_gen.h and
 * docs/data-format.md).
 *
 * Design: every user is drawn from its own xoshiro stream (seed, user index) and written at once, so
 * the output is a pure function of the configuration, streamed with O(max_hist + max_pos) memory.
 * Within a category the item of Zipf rank k (k = 1..n_c) is sampled by rejection-inversion
 * (Hörmann & Derflinger 1996, in the form of Apache Commons RNG's RejectionInversionZipfSampler):
 * O(1) memory and expected O(1) time whatever n_c, with no table of n_c probabilities. Categories
 * hold n_items / C or n_items / C + 1 items, so two samplers cover all of them.
 * Per user, the draws come in a fixed order: first home, second home (with p_two_homes), region,
 * history length, number of positives, then each interaction (leak test, category, rank).
 * Output files are written to "<path>.tmp" and renamed into place, so a reader never sees half a file.
 * Thread model: single-threaded; no shared state. */
#include "common/data_gen.h"

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
#include "common/rng.h"

#define TEST_SALT 0x7465737475736572ULL /* "testuser": test users use another seed */
#define MAX_HIST_LIMIT 1000000u
#define MAX_POS_LIMIT 100000u

void psrec_gen_defaults(psrec_gen_conf_t *c)
{
    memset(c, 0, sizeof *c);
    c->n_items = 2000;
    c->n_categories = 10;
    c->n_train_users = 20000;
    c->n_test_users = 2000;
    c->zipf_s = 1.0;
    c->min_hist = 3;
    c->max_hist = 20;
    c->max_pos = 3;
    c->leak_rate = 0.02;
    c->p_two_homes = 0.3;
    c->region_signal = 0.7;
    c->seed = 1;
}

/* ---- Zipf by rejection-inversion ---- */

typedef struct {
    uint64_t n;
    double s, hx1, hn, sc;
} zipf_t;

static double helper1(double x) /* log1p(x)/x, stable near 0 */
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

static double helper2(double x) /* expm1(x)/x, stable near 0 */
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}

/* H(x) = integral of h(t) = t^-s: (x^(1-s) - 1)/(1-s), log x when s = 1 */
static double hint(const zipf_t *z, double x)
{
    double lx = log(x);
    return helper2((1.0 - z->s) * lx) * lx;
}

static double hfun(const zipf_t *z, double x)
{
    return exp(-z->s * log(x));
}

static double hint_inv(const zipf_t *z, double x)
{
    double t = x * (1.0 - z->s);
    if (t < -1.0) t = -1.0;
    return exp(helper1(t) * x);
}

static void zipf_init(zipf_t *z, uint64_t n, double s)
{
    z->n = n;
    z->s = s;
    if (n <= 1 || s == 0.0) return;
    z->hx1 = hint(z, 1.5) - 1.0;
    z->hn = hint(z, (double)n + 0.5);
    z->sc = 2.0 - hint_inv(z, hint(z, 2.5) - hfun(z, 2.0));
}

/* Rank in 1..n with P(k) proportional to k^-s. */
static uint64_t zipf_draw(const zipf_t *z, psrec_rng_t *r)
{
    if (z->n <= 1) return 1;
    if (z->s == 0.0) return 1 + psrec_rng_below(r, z->n);
    for (;;) {
        double u = z->hn + psrec_rng_uniform(r) * (z->hx1 - z->hn);
        double x = hint_inv(z, u);
        double kd = floor(x + 0.5);
        uint64_t k = kd < 1.0 ? 1 : kd >= (double)z->n ? z->n : (uint64_t)kd;
        if ((double)k - x <= z->sc || u >= hint(z, (double)k + 0.5) - hfun(z, (double)k)) return k;
    }
}

/* ---- output ---- */

/* Opens <dir>/<name> for a crash-safe write (common/durable.h, no trailer: a text file). */
static psrec_err out_open(psrec_dfile_t **f, const char *dir, const char *name, char *err)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return psrec_fail(err, PSREC_EINVAL, "%s: path too long", dir);
    return psrec_dfile_open_plain(f, path, err);
}

typedef struct {
    const psrec_gen_conf_t *c;
    zipf_t big, small; /* categories c < n_items % C hold one more item */
    uint64_t *items;   /* max_hist + max_pos */
    char *line;
} gen_t;

static uint64_t draw_item(const gen_t *g, psrec_rng_t *r, uint32_t cat)
{
    uint32_t C = g->c->n_categories;
    const zipf_t *z = cat < g->c->n_items % C ? &g->big : &g->small;
    return cat + (zipf_draw(z, r) - 1) * C;
}

static int in_history(const uint64_t *hist, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (hist[i] == id) return 1;
    return 0;
}

/* Formats one user's line into g->line; returns its length. */
static size_t gen_user(gen_t *g, uint64_t seed, uint64_t user, int test)
{
    const psrec_gen_conf_t *c = g->c;
    uint32_t C = c->n_categories;
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, user);
    uint32_t home[2];
    int nh = 1;
    home[0] = (uint32_t)psrec_rng_below(&r, C);
    if (C > 1 && psrec_rng_uniform(&r) < c->p_two_homes) {
        uint32_t h = (uint32_t)psrec_rng_below(&r, C - 1);
        home[1] = h >= home[0] ? h + 1 : h;
        nh = 2;
    }
    uint32_t region = psrec_rng_uniform(&r) < c->region_signal ? home[0] : (uint32_t)psrec_rng_below(&r, C);
    uint32_t nhist = c->min_hist + (uint32_t)psrec_rng_below(&r, (uint64_t)c->max_hist - c->min_hist + 1);
    uint32_t npos = 1 + (uint32_t)psrec_rng_below(&r, c->max_pos);
    for (uint32_t t = 0; t < nhist + npos; t++) {
        uint32_t cat;
        if (!test && psrec_rng_uniform(&r) < c->leak_rate)
            cat = (uint32_t)psrec_rng_below(&r, C);
        else
            cat = home[nh == 2 ? psrec_rng_below(&r, 2) : 0];
        g->items[t] = draw_item(g, &r, cat);
        /* positives are items new to the user (what a recommender is asked for, and what eval can
         * measure once history items are excluded): redraw from the same category a bounded number of times */
        for (int tries = 0; t >= nhist && tries < 64 && in_history(g->items, nhist, g->items[t]); tries++)
            g->items[t] = draw_item(g, &r, cat);
    }
    char *p = psrec_put_str(g->line, "pos=");
    for (uint32_t t = 0; t < npos; t++) {
        if (t) *p++ = ',';
        p = psrec_put_u64(p, g->items[nhist + t]);
    }
    if (nhist) {
        p = psrec_put_str(p, " hist=");
        for (uint32_t t = 0; t < nhist; t++) {
            if (t) *p++ = ',';
            p = psrec_put_u64(p, g->items[t]);
        }
    }
    p = psrec_put_str(p, " region=");
    p = psrec_put_u64(p, region);
    if (test) {
        p = psrec_put_str(p, " _home=");
        p = psrec_put_u64(p, home[0]);
        if (nh == 2) {
            *p++ = ',';
            p = psrec_put_u64(p, home[1]);
        }
    }
    *p++ = '\n';
    return (size_t)(p - g->line);
}

static psrec_err check_conf(const psrec_gen_conf_t *c, char *err)
{
    if (c->n_categories == 0 || c->n_items < c->n_categories)
        return psrec_fail(err, PSREC_EINVAL, "gen: need 1 <= categories (%u) <= items (%llu)", c->n_categories,
                          (unsigned long long)c->n_items);
    if (!(c->zipf_s >= 0 && c->zipf_s <= 100))
        return psrec_fail(err, PSREC_EINVAL, "gen: zipf exponent must be in [0, 100] (got %g)", c->zipf_s);
    if (c->min_hist > c->max_hist || c->max_hist > MAX_HIST_LIMIT)
        return psrec_fail(err, PSREC_EINVAL, "gen: need min_hist <= max_hist <= %u", MAX_HIST_LIMIT);
    if (c->max_pos == 0 || c->max_pos > MAX_POS_LIMIT)
        return psrec_fail(err, PSREC_EINVAL, "gen: max_pos must be in 1..%u", MAX_POS_LIMIT);
    if (!(c->leak_rate >= 0 && c->leak_rate <= 1) || !(c->p_two_homes >= 0 && c->p_two_homes <= 1) ||
        !(c->region_signal >= 0 && c->region_signal <= 1))
        return psrec_fail(err, PSREC_EINVAL, "gen: leak_rate, p_two_homes and region_signal must be in [0, 1]");
    return PSREC_OK;
}

static psrec_err write_users(gen_t *g, const char *dir, const char *name, uint64_t seed, uint64_t n, int test,
                             char *err)
{
    psrec_dfile_t *f = NULL;
    psrec_err rc = out_open(&f, dir, name, err);
    if (rc) return rc;
    for (uint64_t u = 0; u < n && !rc; u++) {
        size_t len = gen_user(g, seed, u, test);
        rc = psrec_dfile_write(f, g->line, len, err);
    }
    return psrec_dfile_finish(&f, rc, err);
}

static psrec_err write_items(const psrec_gen_conf_t *c, const char *dir, char *err)
{
    psrec_dfile_t *f = NULL;
    char line[64];
    psrec_err rc = out_open(&f, dir, "items.tsv", err);
    if (rc) return rc;
    for (uint64_t j = 0; j < c->n_items && !rc; j++) {
        char *p = psrec_put_u64(line, j);
        *p++ = '\t';
        p = psrec_put_u64(p, j % c->n_categories);
        *p++ = '\n';
        rc = psrec_dfile_write(f, line, (size_t)(p - line), err);
    }
    return psrec_dfile_finish(&f, rc, err);
}

psrec_err psrec_gen_write(const psrec_gen_conf_t *c, const char *dir, char *err)
{
    psrec_err rc = check_conf(c, err);
    if (rc) return rc;
    if ((rc = psrec_mkdirs(dir, err))) return rc;
    gen_t g = {.c = c};
    uint32_t C = c->n_categories;
    zipf_init(&g.big, c->n_items / C + 1, c->zipf_s);
    zipf_init(&g.small, c->n_items / C, c->zipf_s);
    size_t max_items = (size_t)c->max_hist + c->max_pos;
    g.items = malloc(max_items * sizeof *g.items);
    g.line = malloc(max_items * 21 + 128);
    if (!g.items || !g.line) rc = psrec_fail(err, PSREC_ENOMEM, "gen: out of memory");
    if (!rc) rc = write_items(c, dir, err);
    if (!rc) rc = write_users(&g, dir, "train.txt", c->seed, c->n_train_users, 0, err);
    if (!rc) rc = write_users(&g, dir, "test.txt", psrec_mix64(c->seed ^ TEST_SALT), c->n_test_users, 1, err);
    free(g.items);
    free(g.line);
    return rc;
}

/* ---- items file ---- */

static int parse_cat(const char *s, size_t len, int32_t *cat)
{
    size_t i = 0;
    int neg = 0;
    if (len && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len) return -1;
    int64_t x = 0;
    for (; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) return -1;
        x = x * 10 + d;
        if (x > (int64_t)INT32_MAX + 1) return -1;
    }
    if (neg) x = -x;
    if (x > INT32_MAX || x < INT32_MIN) return -1;
    *cat = (int32_t)x;
    return 0;
}

psrec_err psrec_items_load(const char *path, uint64_t **ids_out, int32_t **cats_out, size_t *n_out, char *err)
{
    *ids_out = NULL;
    *cats_out = NULL;
    *n_out = 0;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        int e = errno;
        return psrec_fail(err, e == ENOENT ? PSREC_ENOTFOUND : PSREC_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    char *line = NULL;
    size_t cap = 0, n = 0, ncap = 0, lineno = 0;
    uint64_t *ids = NULL;
    int32_t *cats = NULL;
    psrec_err rc = PSREC_OK;
    ssize_t got;
    while (!rc && (got = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0 || line[0] == '#') continue;
        const char *tab = memchr(line, '\t', len);
        if (!tab) {
            rc = psrec_fail(err, PSREC_EPARSE, "%s:%zu: expected id<TAB>category (%.*s)", path, lineno,
                            (int)(len > 64 ? 64 : len), line);
            break;
        }
        size_t il = (size_t)(tab - line);
        if (n == ncap) {
            size_t nc = ncap ? ncap * 2 : 1024;
            uint64_t *a = realloc(ids, nc * sizeof *a);
            if (a) ids = a;
            int32_t *b = a ? realloc(cats, nc * sizeof *b) : NULL;
            if (b) cats = b;
            if (!a || !b) {
                rc = psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
                break;
            }
            ncap = nc;
        }
        if (psrec_text_id(line, il, &ids[n]) != 0)
            rc = psrec_fail(err, PSREC_EPARSE, "%s:%zu: bad item id (%.*s)", path, lineno, (int)(il > 64 ? 64 : il),
                            line);
        else if (parse_cat(tab + 1, len - il - 1, &cats[n]) != 0)
            rc = psrec_fail(err, PSREC_EPARSE, "%s:%zu: bad category (%.*s)", path, lineno,
                            (int)(len - il - 1 > 64 ? 64 : len - il - 1), tab + 1);
        else
            n++;
    }
    if (!rc && ferror(fp)) rc = psrec_fail(err, PSREC_EIO, "%s: read failed", path);
    free(line);
    fclose(fp);
    if (rc) {
        free(ids);
        free(cats);
        return rc;
    }
    *ids_out = ids;
    *cats_out = cats;
    *n_out = n;
    return PSREC_OK;
}

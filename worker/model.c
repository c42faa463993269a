/* model.c: saving and loading model directories, and psi(x) for inference. Design: the model on disk
 * is plain tables (sorted keys + float rows) and a small text conf, every file durable with a
 * checksum, so numpy-free tools and later checkpoints reuse the same table files.
 * Thread model: save runs on one thread; a loaded model is read-only. */
#include "worker/model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/durable.h"
#include "common/idmap.h"
#include "worker/wals.h"

#define TABLE_MAGIC "PSRECTB1"
#define CONF_FORMAT "psrec-model-1"
#define MAX_TABLES 32

uint32_t psrec_model_slot_table(const psrec_model_conf_t *conf, int s)
{
    if (s == psrec_schema_hist(&conf->schema)) return conf->tie ? PSREC_TABLE_ITEM_OUT : PSREC_TABLE_ITEM_IN;
    return PSREC_TABLE_SLOT0 + (uint32_t)s;
}

/* ---- table files ---- */

psrec_err psrec_table_file_write(const char *path, uint32_t table, uint32_t dim, const uint64_t *keys,
                                 const float *values, size_t n, char *err)
{
    psrec_dfile_t *f;
    psrec_err rc = psrec_dfile_open(&f, path, err);
    if (rc) return rc;
    uint64_t n64 = n;
    if ((rc = psrec_dfile_write(f, TABLE_MAGIC, 8, err)) || (rc = psrec_dfile_write(f, &table, 4, err)) ||
        (rc = psrec_dfile_write(f, &dim, 4, err)) || (rc = psrec_dfile_write(f, &n64, 8, err)) ||
        (rc = psrec_dfile_write(f, keys, n * 8, err)) ||
        (rc = psrec_dfile_write(f, values, n * dim * sizeof(float), err))) {
        psrec_dfile_abort(&f);
        return rc;
    }
    return psrec_dfile_commit(&f, err);
}

psrec_err psrec_table_file_read(const char *path, uint32_t *table, uint32_t *dim, uint64_t **keys, float **values,
                                size_t *n, char *err)
{
    void *buf;
    size_t len;
    *keys = NULL;
    *values = NULL;
    psrec_err rc = psrec_dfile_read_all(path, &buf, &len, err);
    if (rc) return rc;
    const unsigned char *p = buf;
    uint64_t n64 = 0;
    uint32_t t = 0, d = 0;
    if (len < 24 || memcmp(p, TABLE_MAGIC, 8) != 0) {
        free(buf);
        return psrec_fail(err, PSREC_ECORRUPT, "%s: not a psrec table file", path);
    }
    memcpy(&t, p + 8, 4);
    memcpy(&d, p + 12, 4);
    memcpy(&n64, p + 16, 8);
    /* the declared sizes must match the payload exactly before anything is allocated */
    if (d == 0 || d > 65536 || n64 > (len - 24) / 8 || 24 + n64 * 8 + n64 * d * 4 != len) {
        free(buf);
        return psrec_fail(err, PSREC_ECORRUPT, "%s: declared sizes do not match the file", path);
    }
    *keys = malloc(n64 * 8 + 1);
    *values = malloc(n64 * d * 4 + 1);
    if (!*keys || !*values) {
        free(*keys);
        free(*values);
        *keys = NULL;
        *values = NULL;
        free(buf);
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    }
    memcpy(*keys, p + 24, n64 * 8);
    memcpy(*values, p + 24 + n64 * 8, n64 * d * 4);
    free(buf);
    *table = t;
    *dim = d;
    *n = n64;
    return PSREC_OK;
}

/* ---- save ---- */

typedef struct {
    uint64_t *keys;
    float *vals;
    size_t n, cap;
    uint32_t dim;
    int oom;
} collect_t;

static void collect_row(uint64_t key, const float *w, uint32_t dim, void *ctx)
{
    collect_t *c = ctx;
    if (c->oom) return;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 1024;
        uint64_t *k = realloc(c->keys, nc * 8);
        if (k) c->keys = k;
        float *v = realloc(c->vals, nc * dim * sizeof(float));
        if (v) c->vals = v;
        if (!k || !v) {
            c->oom = 1;
            return;
        }
        c->cap = nc;
    }
    c->keys[c->n] = key;
    memcpy(c->vals + c->n * dim, w, dim * sizeof(float));
    c->n++;
}

typedef struct {
    uint64_t key;
    size_t idx;
} keyidx_t;

static int cmp_keyidx(const void *a, const void *b)
{
    uint64_t x = ((const keyidx_t *)a)->key, y = ((const keyidx_t *)b)->key;
    return x < y ? -1 : x > y;
}

/* Sorts rows by key (permutes keys and values). */
static psrec_err sort_rows(uint64_t *keys, float *vals, size_t n, uint32_t dim)
{
    keyidx_t *ki = malloc(n * sizeof *ki + 1);
    float *tmp = malloc(n * dim * sizeof(float) + 1);
    if (!ki || !tmp) {
        free(ki);
        free(tmp);
        return PSREC_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        ki[i] = (keyidx_t){keys[i], i};
    qsort(ki, n, sizeof *ki, cmp_keyidx);
    for (size_t i = 0; i < n; i++) {
        keys[i] = ki[i].key;
        memcpy(tmp + i * dim, vals + ki[i].idx * dim, dim * sizeof(float));
    }
    memcpy(vals, tmp, n * dim * sizeof(float));
    free(ki);
    free(tmp);
    return PSREC_OK;
}

psrec_err psrec_model_store_dump(void *store, uint32_t table, uint32_t dim, uint64_t **keys, float **values, size_t *n,
                                 char *err)
{
    collect_t c = {.dim = dim};
    *keys = NULL;
    *values = NULL;
    *n = 0;
    psrec_store_foreach(store, table, collect_row, &c);
    if (c.oom) {
        free(c.keys);
        free(c.vals);
        return psrec_fail(err, PSREC_ENOMEM, "out of memory collecting table %u", table);
    }
    *keys = c.keys;
    *values = c.vals;
    *n = c.n;
    return PSREC_OK;
}

static psrec_err save_dumped_table(const char *dir, psrec_table_dump_fn dump, void *ctx, uint32_t table, uint32_t dim,
                                   char *err)
{
    uint64_t *keys = NULL;
    float *vals = NULL;
    size_t n = 0;
    psrec_err rc = dump(ctx, table, dim, &keys, &vals, &n, err);
    if (!rc) rc = sort_rows(keys, vals, n, dim);
    char path[4096];
    snprintf(path, sizeof path, "%s/table-%u.bin", dir, table);
    if (!rc) rc = psrec_table_file_write(path, table, dim, keys, vals, n, err);
    free(keys);
    free(vals);
    return rc;
}

/* model.conf: the shape of the model, plus `extra` key=value lines (NULL: none) for other kinds. */
static psrec_err save_conf(const char *dir, const psrec_model_conf_t *c, const char *extra, char *err)
{
    char text[8192];
    int n = snprintf(text, sizeof text, "format=%s\ndim=%d\nemb_dim=%d\ntie=%d\nseed=%" PRIu64 "\nhidden=", CONF_FORMAT,
                     c->dim, c->emb_dim, c->tie, c->seed);
    for (int i = 0; i < c->tower.n_hidden; i++)
        n += snprintf(text + n, sizeof text - n, "%s%d", i ? "," : "", c->tower.hidden[i]);
    n += snprintf(text + n, sizeof text - n, "\nslots=");
    for (int s = 0; s < c->schema.nslots; s++)
        n += snprintf(text + n, sizeof text - n, "%s%s", s ? "," : "", c->schema.name[s]);
    n += snprintf(text + n, sizeof text - n, "\n%s", extra ? extra : "");
    if (n >= (int)sizeof text) return psrec_fail(err, PSREC_EINVAL, "%s: model configuration too long", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.conf", dir);
    psrec_dfile_t *f;
    psrec_err rc = psrec_dfile_open(&f, path, err);
    if (rc) return rc;
    return psrec_dfile_finish(&f, psrec_dfile_write(f, text, (size_t)n, err), err);
}

psrec_err psrec_model_save_wals(const char *dir, const psrec_wals_conf_t *w, const psrec_schema_t *schema,
                                const uint64_t *ids, const float *V, size_t n, psrec_wals_feature_t *features,
                                int nfeatures, char *err)
{
    psrec_model_conf_t c = {.dim = w->dim, .emb_dim = w->dim, .tie = 1, .seed = w->seed, .schema = *schema};
    if (psrec_schema_hist(&c.schema) < 0 && psrec_schema_add(&c.schema, PSREC_HIST_SLOT, strlen(PSREC_HIST_SLOT)) < 0)
        return psrec_fail(err, PSREC_EINVAL, "%s: no room for the history slot", dir);
    char extra[256], path[4096];
    snprintf(extra, sizeof extra, "kind=wals\nw0=%.17g\nlambda=%.17g\nalpha=%.17g\n", w->w0, w->lambda, w->alpha);
    psrec_err rc = psrec_mkdirs(dir, err);
    snprintf(path, sizeof path, "%s/table-%u.bin", dir, (unsigned)PSREC_TABLE_ITEM_OUT);
    if (!rc) rc = psrec_table_file_write(path, PSREC_TABLE_ITEM_OUT, (uint32_t)w->dim, ids, V, n, err);
    for (int i = 0; !rc && i < nfeatures; i++) {
        psrec_wals_feature_t *f = &features[i];
        uint32_t table = PSREC_TABLE_SLOT0 + (uint32_t)f->slot;
        if ((rc = sort_rows(f->keys, f->values, f->n, (uint32_t)w->dim))) break;
        snprintf(path, sizeof path, "%s/table-%u.bin", dir, table);
        rc = psrec_table_file_write(path, table, (uint32_t)w->dim, f->keys, f->values, f->n, err);
    }
    if (!rc) rc = save_conf(dir, &c, extra, err); /* last: a model.conf means the tables are complete */
    return rc;
}

psrec_err psrec_model_save_conf(const char *dir, const psrec_model_conf_t *conf, char *err)
{
    return save_conf(dir, conf, NULL, err);
}

psrec_err psrec_model_save(const char *dir, const psrec_model_conf_t *conf, psrec_table_client_t *client,
                           psrec_table_dump_fn dump, void *dump_ctx, const uint64_t *catalogue, size_t n_items,
                           char *err)
{
    psrec_err rc = psrec_mkdirs(dir, err);
    if (rc) return rc;
    /* item output table: the whole catalogue, pulled (created if never touched) */
    uint64_t *keys = malloc(n_items * 8 + 1);
    float *vals = malloc(n_items * (size_t)conf->dim * sizeof(float) + 1);
    if (!keys || !vals) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory saving the item table");
    if (!rc) {
        if (catalogue)
            memcpy(keys, catalogue, n_items * 8);
        else /* a dense catalogue: ids 0..n_items-1 */
            for (size_t i = 0; i < n_items; i++)
                keys[i] = i;
        rc = psrec_table_pull(client, PSREC_TABLE_ITEM_OUT, keys, n_items, vals);
        if (rc) psrec_fail(err, rc, "pulling the item table: %s", psrec_strerror(rc));
    }
    if (!rc) rc = sort_rows(keys, vals, n_items, (uint32_t)conf->dim);
    char path[4096];
    snprintf(path, sizeof path, "%s/table-%u.bin", dir, PSREC_TABLE_ITEM_OUT);
    if (!rc) rc = psrec_table_file_write(path, PSREC_TABLE_ITEM_OUT, (uint32_t)conf->dim, keys, vals, n_items, err);
    free(keys);
    free(vals);
    int hist = psrec_schema_hist(&conf->schema);
    uint32_t e = (uint32_t)conf->emb_dim;
    if (!rc && !conf->tie && hist >= 0) rc = save_dumped_table(dir, dump, dump_ctx, PSREC_TABLE_ITEM_IN, e, err);
    if (!rc) rc = save_dumped_table(dir, dump, dump_ctx, PSREC_TABLE_DENSE, PSREC_DENSE_CHUNK, err);
    for (int s = 0; !rc && s < conf->schema.nslots; s++)
        if (s != hist) rc = save_dumped_table(dir, dump, dump_ctx, PSREC_TABLE_SLOT0 + s, e, err);
    if (!rc) rc = save_conf(dir, conf, NULL, err); /* last: a model.conf means every table is complete */
    return rc;
}

/* ---- load ---- */

typedef struct {
    int present;
    uint32_t dim;
    size_t n;
    uint64_t *keys;
    float *vals;
    psrec_idmap_t *index;
} mtable_t;

struct psrec_model {
    psrec_model_conf_t conf;
    mtable_t t[MAX_TABLES];
    float *dense; /* flattened tower params */
    size_t nparams;
    int wals;                /* kind=wals: queries are folded in on V (ALGORITHMS.md §6), no tower */
    psrec_wals_conf_t wconf; /* dim, w0, lambda, alpha of the WALS model */
    double *G;               /* V^T V, computed at load (kind=wals) */
};

static psrec_err parse_conf(const char *path, const char *text, size_t len, psrec_model_conf_t *c, psrec_model_t *m,
                            char *err)
{
    memset(c, 0, sizeof *c);
    int have_format = 0;
    const char *p = text, *end = text + len;
    int lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        lineno++;
        char line[4096];
        size_t ll = (size_t)(nl - p);
        if (ll >= sizeof line) return psrec_fail(err, PSREC_EPARSE, "%s:%d: line too long", path, lineno);
        memcpy(line, p, ll);
        line[ll] = '\0';
        p = nl + 1;
        if (ll == 0) continue;
        char *eq = strchr(line, '=');
        if (!eq) return psrec_fail(err, PSREC_EPARSE, "%s:%d: expected key=value", path, lineno);
        *eq = '\0';
        const char *k = line, *v = eq + 1;
        if (!strcmp(k, "format")) {
            if (strcmp(v, CONF_FORMAT)) return psrec_fail(err, PSREC_EVERSION, "%s: unknown format '%s'", path, v);
            have_format = 1;
        } else if (!strcmp(k, "dim"))
            c->dim = atoi(v);
        else if (!strcmp(k, "emb_dim"))
            c->emb_dim = atoi(v);
        else if (!strcmp(k, "tie"))
            c->tie = atoi(v);
        else if (!strcmp(k, "seed"))
            c->seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "hidden")) {
            if (psrec_tower_parse_hidden(v, &c->tower))
                return psrec_fail(err, PSREC_EPARSE, "%s:%d: bad hidden '%s'", path, lineno, v);
        } else if (!strcmp(k, "kind")) {
            if (strcmp(v, "wals")) return psrec_fail(err, PSREC_EVERSION, "%s: unknown model kind '%s'", path, v);
            m->wals = 1;
        } else if (!strcmp(k, "w0"))
            m->wconf.w0 = strtod(v, NULL);
        else if (!strcmp(k, "lambda"))
            m->wconf.lambda = strtod(v, NULL);
        else if (!strcmp(k, "alpha"))
            m->wconf.alpha = strtod(v, NULL);
        else if (!strcmp(k, "slots")) {
            const char *q = v;
            while (*q) {
                const char *comma = strchr(q, ',');
                size_t n = comma ? (size_t)(comma - q) : strlen(q);
                if (psrec_schema_add(&c->schema, q, n) < 0)
                    return psrec_fail(err, PSREC_EPARSE, "%s:%d: bad slot list", path, lineno);
                q += n + (comma ? 1 : 0);
            }
        }
    }
    if (!have_format || c->dim <= 0 || c->dim > 65536 || c->emb_dim <= 0 || c->emb_dim > 65536 || c->schema.nslots == 0)
        return psrec_fail(err, PSREC_ECORRUPT, "%s: incomplete model configuration", path);
    c->tower.n_in = c->schema.nslots * c->emb_dim;
    c->tower.out_dim = c->dim;
    if (m->wals) {
        m->wconf.dim = c->dim;
        m->wconf.sweeps = m->wconf.threads = 1;
        if (psrec_wals_check(&m->wconf, NULL) || psrec_schema_hist(&c->schema) < 0)
            return psrec_fail(err, PSREC_ECORRUPT, "%s: bad wals model configuration", path);
    }
    return PSREC_OK;
}

static psrec_err load_table(psrec_model_t *m, const char *dir, uint32_t table, uint32_t want_dim, int required,
                            char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/table-%u.bin", dir, table);
    mtable_t *t = &m->t[table];
    uint32_t tid;
    psrec_err rc = psrec_table_file_read(path, &tid, &t->dim, &t->keys, &t->vals, &t->n, err);
    if (rc == PSREC_ENOTFOUND && !required) return PSREC_OK;
    if (rc) return rc;
    if (tid != table || (want_dim && t->dim != want_dim))
        return psrec_fail(err, PSREC_ECORRUPT, "%s: table id or width does not match model.conf", path);
    t->present = 1;
    if ((rc = psrec_idmap_new(&t->index, t->n))) return psrec_fail(err, rc, "out of memory");
    for (size_t i = 0; i < t->n; i++)
        if ((rc = psrec_idmap_put(t->index, t->keys[i], i))) return psrec_fail(err, rc, "out of memory");
    return PSREC_OK;
}

psrec_err psrec_model_load_conf(const char *dir, psrec_model_conf_t *conf, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.conf", dir);
    void *text;
    size_t len;
    psrec_err rc = psrec_dfile_read_all(path, &text, &len, err);
    if (rc) return rc;
    psrec_model_t *m = calloc(1, sizeof *m);
    if (!m) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
    if (!rc) rc = parse_conf(path, text, len, conf, m, err);
    if (!rc && m->wals) rc = psrec_fail(err, PSREC_EINVAL, "%s: a WALS model has no checkpoints", path);
    free(m);
    free(text);
    return rc;
}

psrec_err psrec_model_load(psrec_model_t **out, const char *dir, char *err)
{
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.conf", dir);
    void *text;
    size_t len;
    psrec_err rc = psrec_dfile_read_all(path, &text, &len, err);
    if (rc) return rc;
    psrec_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        free(text);
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    }
    rc = parse_conf(path, text, len, &m->conf, m, err);
    free(text);
    if (!rc && m->wals) { /* WALS: only V, and its Gram matrix for the fold-in */
        rc = load_table(m, dir, PSREC_TABLE_ITEM_OUT, (uint32_t)m->conf.dim, 1, err);
        for (int s = 0; !rc && s < m->conf.schema.nslots; s++) /* cold-start feature means (optional) */
            if (s != psrec_schema_hist(&m->conf.schema))
                rc = load_table(m, dir, PSREC_TABLE_SLOT0 + (uint32_t)s, (uint32_t)m->conf.dim, 0, err);
        size_t d = (size_t)m->conf.dim;
        if (!rc && !(m->G = malloc(d * d * sizeof *m->G))) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
        if (!rc) psrec_wals_gram(m->t[PSREC_TABLE_ITEM_OUT].vals, m->t[PSREC_TABLE_ITEM_OUT].n, m->conf.dim, m->G);
        if (rc) psrec_model_destroy(&m);
        *out = m;
        return rc;
    }
    psrec_tower_t *tw = NULL;
    if (!rc && (rc = psrec_tower_new(&tw, &m->conf.tower))) psrec_fail(err, rc, "%s: bad tower layout", path);
    if (!rc) m->nparams = psrec_tower_nparams(tw);
    psrec_tower_destroy(&tw);
    if (!rc) rc = load_table(m, dir, PSREC_TABLE_ITEM_OUT, (uint32_t)m->conf.dim, 1, err);
    if (!rc && !m->conf.tie) rc = load_table(m, dir, PSREC_TABLE_ITEM_IN, (uint32_t)m->conf.emb_dim, 0, err);
    if (!rc) rc = load_table(m, dir, PSREC_TABLE_DENSE, PSREC_DENSE_CHUNK, 1, err);
    for (int s = 0; !rc && s < m->conf.schema.nslots; s++)
        if (s != psrec_schema_hist(&m->conf.schema))
            rc = load_table(m, dir, PSREC_TABLE_SLOT0 + s, (uint32_t)m->conf.emb_dim, 0, err);
    if (!rc) {
        /* flatten the dense chunks: chunk k holds params [k*CHUNK, (k+1)*CHUNK) */
        size_t nchunks = (m->nparams + PSREC_DENSE_CHUNK - 1) / PSREC_DENSE_CHUNK;
        m->dense = calloc(nchunks * PSREC_DENSE_CHUNK, sizeof(float));
        if (!m->dense) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
        mtable_t *t = &m->t[PSREC_TABLE_DENSE];
        for (size_t k = 0; !rc && k < nchunks; k++) {
            int found;
            uint64_t i = psrec_idmap_get(t->index, k, &found);
            if (!found)
                rc = psrec_fail(err, PSREC_ECORRUPT, "%s: tower weights are incomplete", dir);
            else
                memcpy(m->dense + k * PSREC_DENSE_CHUNK, t->vals + i * PSREC_DENSE_CHUNK, PSREC_DENSE_CHUNK * 4);
        }
    }
    if (rc) {
        psrec_model_destroy(&m);
        return rc;
    }
    *out = m;
    return PSREC_OK;
}

void psrec_model_destroy(psrec_model_t **pm)
{
    if (!pm || !*pm) return;
    psrec_model_t *m = *pm;
    for (int i = 0; i < MAX_TABLES; i++) {
        free(m->t[i].keys);
        free(m->t[i].vals);
        psrec_idmap_destroy(&m->t[i].index);
    }
    free(m->dense);
    free(m->G);
    free(m);
    *pm = NULL;
}

const psrec_model_conf_t *psrec_model_conf(const psrec_model_t *m)
{
    return &m->conf;
}

size_t psrec_model_items(const psrec_model_t *m, const uint64_t **ids, const float **V)
{
    const mtable_t *t = &m->t[PSREC_TABLE_ITEM_OUT];
    if (ids) *ids = t->keys;
    if (V) *V = t->vals;
    return t->n;
}

int64_t psrec_model_item_index(const psrec_model_t *m, uint64_t id)
{
    int found;
    uint64_t i = psrec_idmap_get(m->t[PSREC_TABLE_ITEM_OUT].index, id, &found);
    return found ? (int64_t)i : -1;
}

/* kind=wals: each query's hist items (weight 1) folded in on V. */
static psrec_err embed_wals(const psrec_model_t *m, const psrec_batch_t *b, float *U)
{
    const mtable_t *t = &m->t[PSREC_TABLE_ITEM_OUT];
    int hist = psrec_schema_hist(&m->conf.schema), d = m->conf.dim;
    size_t maxn = 0;
    if (hist < b->nslots)
        for (size_t i = 0; i < b->n; i++)
            if (b->slot_off[hist][i + 1] - b->slot_off[hist][i] > maxn)
                maxn = b->slot_off[hist][i + 1] - b->slot_off[hist][i];
    uint32_t *items = malloc(maxn * sizeof *items + 1);
    float *w = malloc(maxn * sizeof *w + 1);
    double *work = malloc(PSREC_WALS_WORK(d) * sizeof *work);
    psrec_err rc = items && w && work ? PSREC_OK : PSREC_ENOMEM;
    for (size_t k = 0; k < maxn && !rc; k++)
        w[k] = 1.0f;
    for (size_t i = 0; !rc && i < b->n; i++) {
        size_t n = 0;
        if (hist < b->nslots)
            for (uint32_t k = b->slot_off[hist][i]; k < b->slot_off[hist][i + 1]; k++) {
                int found;
                uint64_t r = psrec_idmap_get(t->index, b->slot_id[hist][k], &found);
                int dup = 0; /* a repeated id is one observation, as in training */
                for (size_t q = 0; found && q < n && !dup; q++)
                    dup = items[q] == (uint32_t)r;
                if (found && !dup) items[n++] = (uint32_t)r;
            }
        rc = psrec_wals_fold_in(t->vals, m->G, items, w, n, &m->wconf, U + i * d, work);
        if (!rc && n == 0) { /* no known history: the mean embedding of training users with its features */
            float *u = U + i * d;
            int cnt = 0;
            memset(u, 0, (size_t)d * sizeof *u);
            for (int s = 0; s < m->conf.schema.nslots && s < b->nslots; s++) {
                const mtable_t *ft = &m->t[PSREC_TABLE_SLOT0 + (uint32_t)s];
                if (s == hist || !ft->present) continue;
                for (uint32_t k = b->slot_off[s][i]; k < b->slot_off[s][i + 1]; k++) {
                    int found;
                    uint64_t r = psrec_idmap_get(ft->index, b->slot_id[s][k], &found);
                    if (!found) continue;
                    for (int j = 0; j < d; j++)
                        u[j] += ft->vals[r * (size_t)d + j];
                    cnt++;
                }
            }
            for (int j = 0; cnt > 1 && j < d; j++)
                u[j] /= (float)cnt;
        }
    }
    free(items);
    free(w);
    free(work);
    return rc;
}

psrec_err psrec_model_embed(const psrec_model_t *m, const psrec_batch_t *b, float *U)
{
    const psrec_model_conf_t *c = &m->conf;
    if (b->n == 0) return PSREC_OK;
    if (m->wals) return embed_wals(m, b, U);
    int e = c->emb_dim, nin = c->tower.n_in;
    float *X = calloc(b->n * (size_t)nin, sizeof(float));
    psrec_tower_t *tw = NULL;
    psrec_err rc = X ? psrec_tower_new(&tw, &c->tower) : PSREC_ENOMEM;
    for (int s = 0; !rc && s < c->schema.nslots && s < b->nslots; s++) {
        const mtable_t *t = &m->t[psrec_model_slot_table(c, s)];
        if (!t->present) continue;
        for (size_t i = 0; i < b->n; i++) {
            float *x = X + i * nin + (size_t)s * e;
            int cnt = 0;
            for (uint32_t k = b->slot_off[s][i]; k < b->slot_off[s][i + 1]; k++) {
                int found;
                uint64_t r = psrec_idmap_get(t->index, b->slot_id[s][k], &found);
                if (!found) continue;
                const float *row = t->vals + r * t->dim;
                for (int j = 0; j < e; j++)
                    x[j] += row[j];
                cnt++;
            }
            if (cnt > 1)
                for (int j = 0; j < e; j++)
                    x[j] /= (float)cnt;
        }
    }
    /* forward in chunks to bound the activation workspace */
    for (size_t i = 0; !rc && i < b->n; i += 1024) {
        int nb = (int)(b->n - i < 1024 ? b->n - i : 1024);
        rc = psrec_tower_forward(tw, m->dense, X + i * nin, nb, U + i * c->dim);
    }
    psrec_tower_destroy(&tw);
    free(X);
    return rc;
}

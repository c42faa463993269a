/* snapshot.c: one server's shard of the parameters as a file (ps/snapshot.h).
 *
 * Format. A durable file (common/durable.h) whose payload is ONE LZ4 frame (LZ4F: 256 KiB independent
 * blocks, block checksums and content checksum on). Decompressed, the stream is (little-endian):
 *   header  "PSRSNAP" + version byte (1); u64 job_id, round, seed; u32 rank, n_servers, ntables, 0;
 *           u64 extra_len                                                             (56 bytes)
 *   tables  ntables x {u32 id, dim, opt kind, init kind; f32 lr, eps, init_acc, beta1, beta2, l2,
 *           init_scale; u32 width (dim + optimizer state floats); u64 max_rows, rows} (64 bytes each)
 *   extra   extra_len bytes (opaque: the server's duplicate-suppression windows)
 *   rows    for each table in header order, `rows` x {u64 key, width x f32 (weights then state)}
 *   end     "SNAPEND" + version byte
 * The frame must end exactly after the end marker, and the durable payload exactly after the frame.
 *
 * Design.
 * - Streaming both ways: the writer copies rows (store foreach_raw) into a 256 KiB staging buffer that is
 *   compressed and written whenever it fills; the reader decompresses 256 KiB at a time and hands rows to
 *   psrec_store_put_raw in batches of about 1 MiB. Memory is a few MiB whatever the store's size, so the
 *   writer can run in a fork()ed child (copy-on-write memory only grows with the parent's writes).
 * - Load checks the whole file's XXH64 (psrec_dfile_verify, streaming) and the header against the store
 *   BEFORE the first row goes in: a corrupt, truncated or mismatching file leaves the store unchanged.
 *   Every count read from the file is bounded before use: at most PSREC_STORE_MAX_TABLES tables, known
 *   kinds, a width that matches dim and kind, rows that fit in what the compressed payload can expand to
 *   (LZ4 expands at most 255x), and the blob grows only as its bytes actually arrive.
 * - The store must stay still while written (a fork()ed child's copy does): the row counts are written
 *   first, and a table whose foreach yields another count fails the write (PSREC_EINVAL).
 *
 * Thread model: stateless functions; no threads, no globals. */
#include "ps/snapshot.h"

#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/durable.h"
#include "common/endian.h"
#include "ps/optim.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "rows are streamed in host order: little-endian only");

#define MAGIC "PSRSNAP"
#define END_MAGIC "SNAPEND"
#define VERSION 1
#define HEADER_BYTES 56
#define TABLE_BYTES 64
#define STAGE (256u << 10)       /* writer: uncompressed bytes per LZ4F_compressUpdate */
#define READ_IN (256u << 10)     /* reader: compressed bytes per fread */
#define READ_OUT (256u << 10)    /* reader: decompressed bytes per LZ4F_decompress */
#define BATCH_BYTES (1u << 20)   /* reader: raw rows per put_raw call (at least one row) */
#define MAX_DIM (1u << 20)       /* as ps/store.c */
#define LZ4_MAX_RATIO 256        /* LZ4 never expands more than 255x */
#define EXTRA_SLACK (1ull << 20) /* allowance over the ratio bound for headers */

/* ---- little-endian fields ---- */

static void putf(unsigned char *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    psrec_put32(p, v);
}

static float getf(const unsigned char *p)
{
    uint32_t v = psrec_get32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* ---- writer ---- */

typedef struct {
    const char *path;
    psrec_dfile_t *f;
    LZ4F_cctx *cctx;
    unsigned char *stage, *out;
    size_t staged, out_cap;
    psrec_err rc; /* first error (the row callback cannot return one) */
    char *err;
    /* the table being streamed */
    uint32_t table;
    uint64_t want, seen;
} wctx_t;

static const LZ4F_preferences_t PREFS = {
    .frameInfo = {.blockSizeID = LZ4F_max256KB,
                  .blockMode = LZ4F_blockIndependent,
                  .contentChecksumFlag = LZ4F_contentChecksumEnabled,
                  .blockChecksumFlag = LZ4F_blockChecksumEnabled},
    .compressionLevel = 0,
};

static psrec_err lz4_fail(wctx_t *w, size_t code, const char *what)
{
    return w->rc = psrec_fail(w->err, PSREC_EIO, "%s: LZ4 %s failed: %s", w->path, what, LZ4F_getErrorName(code));
}

static psrec_err flush_stage(wctx_t *w)
{
    if (w->rc || w->staged == 0) return w->rc;
    size_t n = LZ4F_compressUpdate(w->cctx, w->out, w->out_cap, w->stage, w->staged, NULL);
    if (LZ4F_isError(n)) return lz4_fail(w, n, "compression");
    w->staged = 0;
    return w->rc = psrec_dfile_write(w->f, w->out, n, w->err);
}

static psrec_err put(wctx_t *w, const void *p, size_t len)
{
    const unsigned char *s = p;
    while (len > 0 && !w->rc) {
        size_t c = STAGE - w->staged < len ? STAGE - w->staged : len;
        memcpy(w->stage + w->staged, s, c);
        w->staged += c;
        s += c;
        len -= c;
        if (w->staged == STAGE) flush_stage(w);
    }
    return w->rc;
}

static void put_row(uint64_t key, const float *row, uint32_t width, void *ctx)
{
    wctx_t *w = ctx;
    if (w->rc) return;
    if (++w->seen > w->want) return; /* reported after foreach */
    put(w, &key, sizeof key);
    put(w, row, (size_t)width * sizeof(float));
}

static void encode_table(unsigned char *p, uint32_t id, const psrec_table_conf_t *c, uint32_t width, uint64_t rows)
{
    psrec_put32(p, id);
    psrec_put32(p + 4, c->dim);
    psrec_put32(p + 8, (uint32_t)c->opt.kind);
    psrec_put32(p + 12, (uint32_t)c->init | (uint32_t)c->dtype << 16); /* row type in the high half */
    putf(p + 16, c->opt.lr);
    putf(p + 20, c->opt.eps);
    putf(p + 24, c->opt.init_acc);
    putf(p + 28, c->opt.beta1);
    putf(p + 32, c->opt.beta2);
    putf(p + 36, c->opt.l2);
    putf(p + 40, c->init_scale);
    psrec_put32(p + 44, width);
    psrec_put64(p + 48, c->max_rows);
    psrec_put64(p + 56, rows);
}

static psrec_err write_all(wctx_t *w, psrec_store_t *store, const psrec_snapshot_meta_t *meta, const void *extra,
                           size_t extra_len)
{
    uint32_t ids[PSREC_STORE_MAX_TABLES], ntables = 0;
    uint64_t rows[PSREC_STORE_MAX_TABLES];
    for (uint32_t t = 0; t < PSREC_STORE_MAX_TABLES; t++)
        if (psrec_store_row_width(store, t)) {
            rows[ntables] = psrec_store_rows(store, t);
            ids[ntables++] = t;
        }
    size_t n = LZ4F_compressBegin(w->cctx, w->out, w->out_cap, &PREFS);
    if (LZ4F_isError(n)) return lz4_fail(w, n, "frame start");
    if ((w->rc = psrec_dfile_write(w->f, w->out, n, w->err))) return w->rc;

    unsigned char h[HEADER_BYTES] = {0};
    memcpy(h, MAGIC, 7);
    h[7] = VERSION;
    psrec_put64(h + 8, meta->job_id);
    psrec_put64(h + 16, meta->round);
    psrec_put64(h + 24, meta->seed);
    psrec_put32(h + 32, meta->rank);
    psrec_put32(h + 36, meta->n_servers);
    psrec_put32(h + 40, ntables);
    psrec_put64(h + 48, (uint64_t)extra_len);
    put(w, h, sizeof h);
    for (uint32_t i = 0; i < ntables; i++) {
        psrec_table_conf_t c;
        if (psrec_store_table_conf(store, ids[i], &c))
            return w->rc = psrec_fail(w->err, PSREC_EINVAL, "%s: table %u vanished", w->path, ids[i]);
        unsigned char tb[TABLE_BYTES];
        encode_table(tb, ids[i], &c, psrec_store_row_width(store, ids[i]), rows[i]);
        put(w, tb, sizeof tb);
    }
    if (extra_len) put(w, extra, extra_len);
    for (uint32_t i = 0; i < ntables && !w->rc; i++) {
        w->table = ids[i];
        w->want = rows[i];
        w->seen = 0;
        psrec_store_foreach_raw(store, ids[i], put_row, w);
        if (!w->rc && w->seen != w->want)
            return w->rc = psrec_fail(w->err, PSREC_EINVAL,
                                      "%s: table %u changed while being written (%llu rows, then %llu): snapshot a "
                                      "store nobody writes to (a fork()ed child's copy)",
                                      w->path, ids[i], (unsigned long long)w->want, (unsigned long long)w->seen);
    }
    unsigned char e[8];
    memcpy(e, END_MAGIC, 7);
    e[7] = VERSION;
    put(w, e, sizeof e);
    if (flush_stage(w)) return w->rc;
    n = LZ4F_compressEnd(w->cctx, w->out, w->out_cap, NULL);
    if (LZ4F_isError(n)) return lz4_fail(w, n, "frame end");
    return w->rc = psrec_dfile_write(w->f, w->out, n, w->err);
}

psrec_err psrec_snapshot_write(const char *path, psrec_store_t *store, const psrec_snapshot_meta_t *meta,
                               const void *extra, size_t extra_len, uint64_t *bytes, char *err)
{
    if (bytes) *bytes = 0;
    if (!path || !store || !meta || (extra_len && !extra))
        return psrec_fail(err, PSREC_EINVAL, "snapshot write: missing argument");
    wctx_t w = {.path = path, .err = err};
    w.out_cap = LZ4F_compressBound(STAGE, &PREFS);
    w.stage = malloc(STAGE);
    w.out = malloc(w.out_cap);
    size_t lz = LZ4F_createCompressionContext(&w.cctx, LZ4F_VERSION);
    psrec_err rc = PSREC_OK;
    if (!w.stage || !w.out || LZ4F_isError(lz)) rc = psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    if (!rc) rc = psrec_dfile_open(&w.f, path, err);
    if (!rc) rc = write_all(&w, store, meta, extra, extra_len);
    if (w.f) rc = psrec_dfile_finish(&w.f, rc, err);
    LZ4F_freeCompressionContext(w.cctx);
    free(w.stage);
    free(w.out);
    if (!rc && bytes) {
        struct stat st;
        if (stat(path, &st) != 0) return psrec_fail(err, PSREC_EIO, "%s: cannot stat after writing", path);
        *bytes = (uint64_t)st.st_size;
    }
    return rc;
}

/* ---- reader ---- */

typedef struct {
    const char *path;
    char *err;
    FILE *fp;
    uint64_t left; /* compressed payload bytes not read yet */
    LZ4F_dctx *dctx;
    unsigned char *in, *out;
    size_t in_pos, in_len, out_pos, out_len;
    int frame_done;
    uint64_t payload; /* compressed payload size */
} reader_t;

static psrec_err corrupt(reader_t *r, const char *what)
{
    return psrec_fail(r->err, PSREC_ECORRUPT, "%s: %s", r->path, what);
}

static void reader_close(reader_t *r)
{
    if (r->fp) fclose(r->fp);
    LZ4F_freeDecompressionContext(r->dctx);
    free(r->in);
    free(r->out);
    memset(r, 0, sizeof *r);
}

/* Verifies the durable checksum, then opens the payload for decompression. */
static psrec_err reader_open(reader_t *r, const char *path, char *err)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->err = err;
    uint64_t payload;
    psrec_err rc = psrec_dfile_verify(path, &payload, err);
    if (rc) return rc;
    r->in = malloc(READ_IN);
    r->out = malloc(READ_OUT);
    size_t lz = LZ4F_createDecompressionContext(&r->dctx, LZ4F_VERSION);
    if (!r->in || !r->out || LZ4F_isError(lz)) {
        reader_close(r);
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    }
    r->fp = fopen(path, "rb");
    struct stat st;
    if (!r->fp || fstat(fileno(r->fp), &st) != 0 || (uint64_t)st.st_size < payload) {
        reader_close(r);
        return psrec_fail(err, PSREC_EIO, "%s: cannot reopen after verifying", path);
    }
    r->left = r->payload = payload;
    return PSREC_OK;
}

/* One LZ4F_decompress call; *produced gets the decompressed bytes (in r->out). PSREC_ECORRUPT if the
 * payload runs out before the frame ends. */
static psrec_err step(reader_t *r, size_t *produced)
{
    if (r->in_pos == r->in_len) {
        if (r->left == 0) return corrupt(r, "LZ4 frame truncated");
        size_t want = r->left < READ_IN ? (size_t)r->left : READ_IN;
        if (fread(r->in, 1, want, r->fp) != want) return psrec_fail(r->err, PSREC_EIO, "%s: read failed", r->path);
        r->left -= want;
        r->in_pos = 0;
        r->in_len = want;
    }
    size_t dst = READ_OUT, src = r->in_len - r->in_pos;
    size_t hint = LZ4F_decompress(r->dctx, r->out, &dst, r->in + r->in_pos, &src, NULL);
    if (LZ4F_isError(hint))
        return psrec_fail(r->err, PSREC_ECORRUPT, "%s: bad LZ4 frame: %s", r->path, LZ4F_getErrorName(hint));
    r->in_pos += src;
    if (hint == 0) r->frame_done = 1;
    *produced = dst;
    return PSREC_OK;
}

/* Decompresses more output; PSREC_ECORRUPT if the frame ends first. */
static psrec_err refill(reader_t *r)
{
    r->out_pos = r->out_len = 0;
    while (r->out_len == 0) {
        if (r->frame_done) return corrupt(r, "stream ends early (LZ4 frame complete before the end marker)");
        psrec_err rc = step(r, &r->out_len);
        if (rc) return rc;
    }
    return PSREC_OK;
}

/* Copies the next n decompressed bytes to dst (NULL: skips them). */
static psrec_err get(reader_t *r, void *dst, size_t n)
{
    unsigned char *d = dst;
    while (n > 0) {
        if (r->out_pos == r->out_len) {
            psrec_err rc = refill(r);
            if (rc) return rc;
        }
        size_t c = r->out_len - r->out_pos < n ? r->out_len - r->out_pos : n;
        if (d) {
            memcpy(d, r->out + r->out_pos, c);
            d += c;
        }
        r->out_pos += c;
        n -= c;
    }
    return PSREC_OK;
}

/* After the end marker: the frame must end there (its content checksum is checked on the way) and the
 * payload right after it. */
static psrec_err reader_finish(reader_t *r)
{
    if (r->out_pos != r->out_len) return corrupt(r, "data after the end marker");
    while (!r->frame_done) {
        size_t produced;
        psrec_err rc = step(r, &produced);
        if (rc) return rc;
        if (produced) return corrupt(r, "data after the end marker");
    }
    if (r->in_pos != r->in_len || r->left != 0) return corrupt(r, "bytes after the LZ4 frame");
    return PSREC_OK;
}

typedef struct {
    psrec_snapshot_meta_t meta;
    psrec_snapshot_info_t info;
    uint32_t width[PSREC_STORE_MAX_TABLES];
    uint64_t extra_len;
} header_t;

static int valid_conf(const psrec_table_conf_t *c)
{
    char e[PSREC_ERRBUF];
    psrec_optim_t o;
    return c->dim >= 1 && c->dim <= MAX_DIM && (unsigned)c->init <= PSREC_INIT_NORMAL &&
           (unsigned)c->opt.kind <= PSREC_OPT_ADAM && psrec_optim_init(&o, &c->opt, e) == PSREC_OK;
}

static psrec_err read_header(reader_t *r, header_t *h)
{
    memset(h, 0, sizeof *h);
    unsigned char b[HEADER_BYTES];
    psrec_err rc = get(r, b, sizeof b);
    if (rc) return rc;
    if (memcmp(b, MAGIC, 7) != 0) return corrupt(r, "not a psrec snapshot (bad magic)");
    if (b[7] != VERSION)
        return psrec_fail(r->err, PSREC_EVERSION, "%s: snapshot format version %u, this build reads %u", r->path, b[7],
                          VERSION);
    h->meta.job_id = psrec_get64(b + 8);
    h->meta.round = psrec_get64(b + 16);
    h->meta.seed = psrec_get64(b + 24);
    h->meta.rank = psrec_get32(b + 32);
    h->meta.n_servers = psrec_get32(b + 36);
    uint32_t nt = psrec_get32(b + 40);
    h->extra_len = psrec_get64(b + 48);
    if (nt > PSREC_STORE_MAX_TABLES) return corrupt(r, "table count out of range");
    /* what the compressed payload can expand to bounds every declared size */
    const uint64_t cap = r->payload * LZ4_MAX_RATIO + EXTRA_SLACK;
    if (h->extra_len > cap) return corrupt(r, "blob length exceeds what the file can hold");
    uint64_t total = h->extra_len;
    h->info.ntables = nt;
    for (uint32_t i = 0; i < nt; i++) {
        unsigned char t[TABLE_BYTES];
        if ((rc = get(r, t, sizeof t))) return rc;
        psrec_table_conf_t *c = &h->info.conf[i];
        uint32_t id = psrec_get32(t);
        c->dim = psrec_get32(t + 4);
        c->opt.kind = (psrec_opt_kind)psrec_get32(t + 8);
        c->init = (psrec_init_kind)(psrec_get32(t + 12) & 0xffff);
        c->dtype = (psrec_row_dtype)(psrec_get32(t + 12) >> 16);
        c->opt.lr = getf(t + 16);
        c->opt.eps = getf(t + 20);
        c->opt.init_acc = getf(t + 24);
        c->opt.beta1 = getf(t + 28);
        c->opt.beta2 = getf(t + 32);
        c->opt.l2 = getf(t + 36);
        c->init_scale = getf(t + 40);
        uint32_t width = psrec_get32(t + 44);
        c->max_rows = psrec_get64(t + 48);
        uint64_t rows = psrec_get64(t + 56);
        if (id >= PSREC_STORE_MAX_TABLES) return corrupt(r, "table id out of range");
        for (uint32_t j = 0; j < i; j++)
            if (h->info.ids[j] == id) return corrupt(r, "table listed twice");
        if (psrec_get32(t + 8) > PSREC_OPT_ADAM || (psrec_get32(t + 12) & 0xffff) > PSREC_INIT_NORMAL ||
            (psrec_get32(t + 12) >> 16) > PSREC_ROW_BF16 || !valid_conf(c))
            return corrupt(r, "invalid table configuration");
        uint32_t wwords = c->dtype == PSREC_ROW_F32 ? c->dim : (c->dim + 1) / 2;
        if (width != wwords + psrec_optim_state_floats(c->opt.kind, c->dim))
            return corrupt(r, "row width does not match the table's dim and optimizer");
        uint64_t row_bytes = 8 + 4 * (uint64_t)width;
        if (rows > cap / row_bytes || total > cap - rows * row_bytes)
            return corrupt(r, "row count exceeds what the file can hold");
        total += rows * row_bytes;
        h->info.ids[i] = id;
        h->info.rows[i] = rows;
        h->width[i] = width;
    }
    return PSREC_OK;
}

psrec_err psrec_snapshot_info(const char *path, psrec_snapshot_meta_t *meta, psrec_snapshot_info_t *info, char *err)
{
    reader_t r;
    psrec_err rc = reader_open(&r, path, err);
    if (rc) return rc;
    header_t h;
    rc = read_header(&r, &h);
    reader_close(&r);
    if (rc) return rc;
    if (meta) *meta = h.meta;
    if (info) *info = h.info;
    return PSREC_OK;
}

/* Reads the blob into a buffer that grows as bytes arrive (a lying length cannot make it allocate more
 * than twice what the file really holds), or skips it (out NULL). */
static psrec_err read_extra(reader_t *r, uint64_t len, void **out)
{
    if (!out) return get(r, NULL, (size_t)len);
    *out = NULL;
    if (len == 0) return PSREC_OK;
    unsigned char *buf = NULL;
    size_t cap = 0, have = 0;
    while (have < len) {
        if (have == cap) {
            size_t nc = cap ? 2 * cap : 1u << 16;
            if (nc > len) nc = (size_t)len;
            unsigned char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                return psrec_fail(r->err, PSREC_ENOMEM, "%s: out of memory for the blob", r->path);
            }
            buf = nb;
            cap = nc;
        }
        psrec_err rc = get(r, buf + have, cap - have);
        if (rc) {
            free(buf);
            return rc;
        }
        have = cap;
    }
    *out = buf;
    return PSREC_OK;
}

psrec_err psrec_snapshot_load(const char *path, psrec_store_t *store, psrec_snapshot_keep_fn keep, void *ctx,
                              psrec_snapshot_meta_t *meta, void **extra, size_t *extra_len, char *err)
{
    if (extra) *extra = NULL;
    if (extra_len) *extra_len = 0;
    reader_t r;
    psrec_err rc = reader_open(&r, path, err);
    if (rc) return rc;
    header_t h;
    void *blob = NULL;
    uint64_t *keys = NULL;
    float *rows = NULL;
    if ((rc = read_header(&r, &h))) goto out;
    /* every table must match before the first row goes in */
    uint32_t maxw = 1;
    for (uint32_t i = 0; i < h.info.ntables; i++) {
        uint32_t id = h.info.ids[i];
        const psrec_table_conf_t *fc = &h.info.conf[i];
        psrec_table_conf_t sc;
        if (psrec_store_table_conf(store, id, &sc) != PSREC_OK) {
            rc = psrec_fail(err, PSREC_EINVAL, "%s: table %u (dim %u, %s) is not in the store", path, id, fc->dim,
                            psrec_opt_name(fc->opt.kind));
            goto out;
        }
        if (sc.dim != fc->dim || sc.opt.kind != fc->opt.kind) {
            rc = psrec_fail(err, PSREC_EINVAL, "%s: table %u: snapshot has dim %u, %s; the store has dim %u, %s", path,
                            id, fc->dim, psrec_opt_name(fc->opt.kind), sc.dim, psrec_opt_name(sc.opt.kind));
            goto out;
        }
        if (psrec_store_row_width(store, id) != h.width[i]) {
            rc = psrec_fail(err, PSREC_EINVAL, "%s: table %u: row width %u, the store's %u", path, id, h.width[i],
                            psrec_store_row_width(store, id));
            goto out;
        }
        if (h.width[i] > maxw) maxw = h.width[i];
    }
    if ((rc = read_extra(&r, h.extra_len, extra ? &blob : NULL))) goto out;
    size_t batch = BATCH_BYTES / ((size_t)maxw * sizeof(float) + 8);
    if (batch == 0) batch = 1;
    keys = malloc(batch * sizeof *keys);
    rows = malloc(batch * maxw * sizeof(float));
    if (!keys || !rows) {
        rc = psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (uint32_t i = 0; i < h.info.ntables; i++) {
        const uint32_t id = h.info.ids[i], w = h.width[i];
        size_t nb = 0;
        for (uint64_t k = 0; k < h.info.rows[i]; k++) {
            if ((rc = get(&r, &keys[nb], sizeof *keys)) || (rc = get(&r, rows + nb * w, (size_t)w * sizeof(float))))
                goto out;
            if (!keep || keep(id, keys[nb], ctx)) nb++;
            if (nb == batch || (nb && k + 1 == h.info.rows[i])) {
                if ((rc = psrec_store_put_raw(store, id, keys, nb, rows))) {
                    rc = psrec_fail(err, rc, "%s: loading table %u: %s", path, id,
                                    rc == PSREC_EFULL ? "more rows than its max_rows" : psrec_strerror(rc));
                    goto out;
                }
                nb = 0;
            }
        }
    }
    unsigned char e[8];
    if ((rc = get(&r, e, sizeof e))) goto out;
    if (memcmp(e, END_MAGIC, 7) != 0 || e[7] != VERSION) {
        rc = corrupt(&r, "end marker missing (row counts do not match the rows)");
        goto out;
    }
    if ((rc = reader_finish(&r))) goto out;
    if (meta) *meta = h.meta;
    if (extra) {
        *extra = blob;
        blob = NULL;
    }
    if (extra_len) *extra_len = (size_t)h.extra_len;
out:
    free(blob);
    free(keys);
    free(rows);
    reader_close(&r);
    return rc;
}

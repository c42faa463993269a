/* data_shard.c: binary training shards (layout in docs/data-format.md, "Binary shards").
 *
 * Design: examples are serialised with LEB128 varints (ids, counts) and little-endian float32
 * (weights) into a raw block of at most PSREC_SHARD_BLOCK_EXAMPLES examples or about 1 MiB, which is
 * LZ4-compressed and written with a 24-byte header carrying the sizes and the XXH64 of the compressed
 * bytes. A footer (own XXH64) holds the schema, the totals and the block index (offset, examples,
 * sizes); a fixed tail locates the footer and the durable trailer closes the file. Opening reads only
 * the trailer, tail and footer and cross-checks that the indexed blocks tile the file exactly, so a
 * truncated file is refused at once; each block is verified (header against index, checksum, exact
 * decompressed size, exact decoding) when it is read, so a damaged block is PSREC_ECORRUPT naming the
 * file and block, never a crash. Declared sizes are checked against limits before allocating.
 * Positions are (block, example): seek decompresses the block and skips examples, so resuming is exact.
 * Weights are stored as the batch holds them (already normalised) and restored bit-exactly.
 * Thread model: one writer or reader per thread; no shared state. */
#include "common/data_shard.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/endian.h"
#include "common/hash.h"

#define FILE_MAGIC "PSRECSH1"
#define FOOTER_MAGIC "PSRECSF1"
#define TAIL_MAGIC "PSRECSFT"
#define DURABLE_MAGIC "PSRECEND"
#define BLOCK_MAGIC "PSBK"
#define SHARD_VERSION 1u
#define HEADER_SIZE 16
#define BLOCK_HDR_SIZE 24
#define TAIL_SIZE 24
#define TRAILER_SIZE 24
#define INDEX_ENTRY_SIZE 24
#define PSREC_SHARD_BLOCK_EXAMPLES 4096u
#define BLOCK_TARGET_RAW ((size_t)1 << 20)
#define MAX_RAW ((size_t)256 << 20) /* a block's declared raw size above this is refused */
#define FOOTER_FIXED (8 + 4 + PSREC_MAX_SLOTS * PSREC_SLOT_NAME_MAX + 8 + 8 * (3 + PSREC_MAX_SLOTS))
#define MIN_EXAMPLE_BYTES 3 /* npos, nslots, nhome varints */

typedef struct {
    uint64_t off;
    uint32_t nex, raw, comp;
} index_t;

typedef struct {
    uint64_t examples, pos, home, slot[PSREC_MAX_SLOTS];
} totals_t;

struct psrec_shard_writer {
    psrec_dfile_t *f;
    char *path;
    unsigned char *raw, *comp;
    size_t raw_len, raw_cap, comp_cap;
    uint32_t nex;
    index_t *index;
    size_t nblocks, index_cap;
    totals_t tot;
    int max_slots; /* highest slot count any example used */
    int failed;
};

struct psrec_shard_reader {
    int fd;
    char *path;
    psrec_schema_t schema;
    index_t *index;
    uint64_t nblocks;
    totals_t tot;
    uint64_t blk;    /* position: block */
    uint32_t idx;    /* position: example within block */
    uint64_t loaded; /* block held in raw, or UINT64_MAX */
    unsigned char *raw, *comp;
    size_t raw_cap, comp_cap;
    size_t cur; /* byte cursor in raw, at example cur_idx */
    uint32_t cur_idx;
};

/* ---- little-endian and varint helpers ---- */

static size_t put_var(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Bounds-checked decoder over a raw block. */
typedef struct {
    const unsigned char *p;
    size_t len, at;
    int bad;
} dec_t;

static uint64_t get_var(dec_t *d)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (d->at >= d->len) break;
        unsigned char c = d->p[d->at++];
        if (shift == 63 && c > 1) break;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
    }
    d->bad = 1;
    return 0;
}

static const unsigned char *get_bytes(dec_t *d, size_t n)
{
    if (d->len - d->at < n) {
        d->bad = 1;
        return NULL;
    }
    const unsigned char *p = d->p + d->at;
    d->at += n;
    return p;
}

/* ---- writer ---- */

static int grow(unsigned char **p, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need)
        nc *= 2;
    unsigned char *q = realloc(*p, nc);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

psrec_err psrec_shard_writer_open(psrec_shard_writer_t **out, const char *path, char *err)
{
    *out = NULL;
    psrec_shard_writer_t *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    }
    psrec_err rc = psrec_dfile_open(&w->f, path, err);
    if (rc) {
        free(w->path);
        free(w);
        return rc;
    }
    unsigned char h[HEADER_SIZE] = {0};
    memcpy(h, FILE_MAGIC, 8);
    psrec_put32(h + 8, SHARD_VERSION);
    if ((rc = psrec_dfile_write(w->f, h, sizeof h, err))) {
        psrec_shard_writer_abort(&w);
        return rc;
    }
    *out = w;
    return PSREC_OK;
}

/* Compresses raw[0, upto) as one block of nex examples and writes it; keeps raw[upto, raw_len). */
static psrec_err flush_block(psrec_shard_writer_t *w, size_t upto, uint32_t nex, char *err)
{
    if (nex == 0) return PSREC_OK;
    int bound = LZ4_compressBound((int)upto);
    if (grow(&w->comp, &w->comp_cap, (size_t)bound)) return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", w->path);
    int clen = LZ4_compress_default((const char *)w->raw, (char *)w->comp, (int)upto, bound);
    if (clen <= 0) return psrec_fail(err, PSREC_EIO, "%s: LZ4 compression failed", w->path);
    if (w->nblocks == w->index_cap) {
        size_t nc = w->index_cap ? w->index_cap * 2 : 64;
        index_t *q = realloc(w->index, nc * sizeof *q);
        if (!q) return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", w->path);
        w->index = q;
        w->index_cap = nc;
    }
    index_t *e = &w->index[w->nblocks];
    e->off = psrec_dfile_tell(w->f);
    e->nex = nex;
    e->raw = (uint32_t)upto;
    e->comp = (uint32_t)clen;
    unsigned char h[BLOCK_HDR_SIZE];
    memcpy(h, BLOCK_MAGIC, 4);
    psrec_put32(h + 4, nex);
    psrec_put32(h + 8, e->raw);
    psrec_put32(h + 12, e->comp);
    psrec_put64(h + 16, psrec_checksum(w->comp, (size_t)clen));
    psrec_err rc = psrec_dfile_write(w->f, h, sizeof h, err);
    if (!rc) rc = psrec_dfile_write(w->f, w->comp, (size_t)clen, err);
    if (rc) return rc;
    w->nblocks++;
    memmove(w->raw, w->raw + upto, w->raw_len - upto);
    w->raw_len -= upto;
    return PSREC_OK;
}

psrec_err psrec_shard_writer_add(psrec_shard_writer_t *w, const psrec_batch_t *b, size_t i, char *err)
{
    if (w->failed) return psrec_fail(err, PSREC_EINVAL, "%s: writer failed earlier", w->path);
    if (i >= b->n)
        return psrec_fail(err, PSREC_EINVAL, "%s: example %zu out of range (batch has %zu)", w->path, i, b->n);
    uint32_t pa = b->pos_off[i], pe = b->pos_off[i + 1], npos = pe - pa;
    int k = b->nslots;
    while (k > 0 && b->slot_off[k - 1][i] == b->slot_off[k - 1][i + 1])
        k--;
    uint32_t ha = b->home_off[i], he = b->home_off[i + 1];
    size_t bound = 10 + (size_t)npos * 14 + 10 + 5 * (size_t)(he - ha) + 10;
    for (int s = 0; s < k; s++)
        bound += 10 + 10 * (size_t)(b->slot_off[s][i + 1] - b->slot_off[s][i]);
    if (grow(&w->raw, &w->raw_cap, w->raw_len + bound)) {
        w->failed = 1;
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", w->path);
    }
    size_t start = w->raw_len;
    unsigned char *p = w->raw + start, *p0 = p;
    int same = 1;
    for (uint32_t q = pa + 1; q < pe; q++)
        if (float_bits(b->pos_w[q]) != float_bits(b->pos_w[pa])) same = 0;
    p += put_var(p, (uint64_t)npos * 2 + (uint64_t)same);
    for (uint32_t q = pa; q < pe; q++)
        p += put_var(p, b->pos_id[q]);
    for (uint32_t q = pa; q < pe; q++) {
        psrec_put32(p, float_bits(b->pos_w[q]));
        p += 4;
        if (same) break;
    }
    p += put_var(p, (uint64_t)k);
    for (int s = 0; s < k; s++) {
        uint32_t a = b->slot_off[s][i], e = b->slot_off[s][i + 1];
        p += put_var(p, e - a);
        for (uint32_t q = a; q < e; q++)
            p += put_var(p, b->slot_id[s][q]);
        w->tot.slot[s] += e - a;
    }
    p += put_var(p, he - ha);
    for (uint32_t q = ha; q < he; q++)
        p += put_var(p, b->home_cat[q]);
    size_t len = (size_t)(p - p0);
    if (len > MAX_RAW) {
        w->failed = 1;
        return psrec_fail(err, PSREC_EMSGSIZE, "%s: example of %zu bytes exceeds the block limit", w->path, len);
    }
    w->raw_len += len;
    w->tot.examples++;
    w->tot.pos += npos;
    w->tot.home += he - ha;
    if (k > w->max_slots) w->max_slots = k;
    psrec_err rc = PSREC_OK;
    if (w->raw_len > MAX_RAW) { /* this example would overflow the block: it starts the next one */
        rc = flush_block(w, start, w->nex, err);
        w->nex = 0;
    }
    w->nex++;
    if (!rc && (w->nex >= PSREC_SHARD_BLOCK_EXAMPLES || w->raw_len >= BLOCK_TARGET_RAW)) {
        rc = flush_block(w, w->raw_len, w->nex, err);
        w->nex = 0;
    }
    if (rc) w->failed = 1;
    return rc;
}

psrec_err psrec_shard_writer_commit(psrec_shard_writer_t **pw, const psrec_schema_t *schema, char *err)
{
    psrec_shard_writer_t *w = *pw;
    psrec_err rc = PSREC_OK;
    unsigned char *foot = NULL;
    if (w->failed)
        rc = psrec_fail(err, PSREC_EINVAL, "%s: writer failed earlier; not committed", w->path);
    else if (schema->nslots < w->max_slots || schema->nslots > PSREC_MAX_SLOTS)
        rc = psrec_fail(err, PSREC_EINVAL, "%s: examples use %d slots but the schema has %d", w->path, w->max_slots,
                        schema->nslots);
    for (int s = 0; !rc && s < schema->nslots; s++) {
        size_t nl = strnlen(schema->name[s], PSREC_SLOT_NAME_MAX);
        if (nl == 0 || nl == PSREC_SLOT_NAME_MAX || psrec_schema_find(schema, schema->name[s], nl) != s)
            rc =
                psrec_fail(err, PSREC_EINVAL, "%s: schema slot %d has an empty, overlong or repeated name", w->path, s);
    }
    if (!rc) {
        rc = flush_block(w, w->raw_len, w->nex, err);
        w->nex = 0;
    }
    size_t flen = FOOTER_FIXED + w->nblocks * INDEX_ENTRY_SIZE + 8;
    if (!rc && !(foot = calloc(1, flen + TAIL_SIZE))) rc = psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", w->path);
    if (!rc) {
        uint64_t foot_off = psrec_dfile_tell(w->f);
        unsigned char *p = foot;
        memcpy(p, FOOTER_MAGIC, 8);
        psrec_put32(p + 8, (uint32_t)schema->nslots);
        p += 12;
        for (int s = 0; s < schema->nslots; s++)
            memcpy(p + s * PSREC_SLOT_NAME_MAX, schema->name[s], strnlen(schema->name[s], PSREC_SLOT_NAME_MAX - 1));
        p += PSREC_MAX_SLOTS * PSREC_SLOT_NAME_MAX;
        psrec_put64(p, w->nblocks);
        psrec_put64(p + 8, w->tot.examples);
        psrec_put64(p + 16, w->tot.pos);
        psrec_put64(p + 24, w->tot.home);
        p += 32;
        for (int s = 0; s < PSREC_MAX_SLOTS; s++, p += 8)
            psrec_put64(p, w->tot.slot[s]);
        for (size_t k = 0; k < w->nblocks; k++, p += INDEX_ENTRY_SIZE) {
            psrec_put64(p, w->index[k].off);
            psrec_put32(p + 8, w->index[k].nex);
            psrec_put32(p + 12, w->index[k].raw);
            psrec_put32(p + 16, w->index[k].comp);
        }
        psrec_put64(p, psrec_checksum(foot, flen - 8));
        p += 8;
        psrec_put64(p, foot_off);
        psrec_put64(p + 8, flen);
        memcpy(p + 16, TAIL_MAGIC, 8);
        rc = psrec_dfile_write(w->f, foot, flen + TAIL_SIZE, err);
    }
    free(foot);
    if (!rc) rc = psrec_dfile_commit(&w->f, err);
    psrec_shard_writer_abort(pw);
    return rc;
}

void psrec_shard_writer_abort(psrec_shard_writer_t **pw)
{
    if (!pw || !*pw) return;
    psrec_shard_writer_t *w = *pw;
    psrec_dfile_abort(&w->f);
    free(w->raw);
    free(w->comp);
    free(w->index);
    free(w->path);
    free(w);
    *pw = NULL;
}

/* ---- reader ---- */

static psrec_err read_at(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return PSREC_EIO;
        got += (size_t)r;
    }
    return PSREC_OK;
}

static psrec_err corrupt(const psrec_shard_reader_t *r, char *err, const char *what)
{
    return psrec_fail(err, PSREC_ECORRUPT, "%s: %s (truncated or not a psrec shard)", r->path, what);
}

static psrec_err parse_footer(psrec_shard_reader_t *r, const unsigned char *f, size_t flen, uint64_t foot_off,
                              char *err)
{
    if (flen < FOOTER_FIXED + 8 || memcmp(f, FOOTER_MAGIC, 8) != 0) return corrupt(r, err, "bad footer");
    if (psrec_checksum(f, flen - 8) != psrec_get64(f + flen - 8)) return corrupt(r, err, "footer checksum mismatch");
    uint32_t ns = psrec_get32(f + 8);
    if (ns > PSREC_MAX_SLOTS) return corrupt(r, err, "bad slot count in footer");
    const unsigned char *p = f + 12;
    r->schema.nslots = 0;
    for (uint32_t s = 0; s < ns; s++) {
        const char *nm = (const char *)p + s * PSREC_SLOT_NAME_MAX;
        size_t nl = strnlen(nm, PSREC_SLOT_NAME_MAX);
        if (nl == 0 || nl == PSREC_SLOT_NAME_MAX || psrec_schema_find(&r->schema, nm, nl) >= 0)
            return corrupt(r, err, "bad slot name in footer");
        memcpy(r->schema.name[s], nm, nl + 1);
        r->schema.nslots++;
    }
    p += PSREC_MAX_SLOTS * PSREC_SLOT_NAME_MAX;
    r->nblocks = psrec_get64(p);
    r->tot.examples = psrec_get64(p + 8);
    r->tot.pos = psrec_get64(p + 16);
    r->tot.home = psrec_get64(p + 24);
    p += 32;
    for (int s = 0; s < PSREC_MAX_SLOTS; s++, p += 8)
        r->tot.slot[s] = psrec_get64(p);
    if (r->nblocks != (flen - FOOTER_FIXED - 8) / INDEX_ENTRY_SIZE || (flen - FOOTER_FIXED - 8) % INDEX_ENTRY_SIZE != 0)
        return corrupt(r, err, "footer size does not match its block count");
    r->index = malloc((r->nblocks ? r->nblocks : 1) * sizeof *r->index);
    if (!r->index) return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", r->path);
    uint64_t expect = HEADER_SIZE, sum = 0;
    for (uint64_t k = 0; k < r->nblocks; k++, p += INDEX_ENTRY_SIZE) {
        index_t *e = &r->index[k];
        e->off = psrec_get64(p);
        e->nex = psrec_get32(p + 8);
        e->raw = psrec_get32(p + 12);
        e->comp = psrec_get32(p + 16);
        if (e->off != expect || e->nex == 0 || e->raw > MAX_RAW || (uint64_t)e->nex * MIN_EXAMPLE_BYTES > e->raw ||
            e->comp == 0 || e->comp > (uint32_t)LZ4_compressBound((int)e->raw))
            return corrupt(r, err, "inconsistent block index");
        expect = e->off + BLOCK_HDR_SIZE + e->comp;
        sum += e->nex;
    }
    if (expect != foot_off) return corrupt(r, err, "blocks do not end at the footer");
    if (sum != r->tot.examples) return corrupt(r, err, "example counts do not add up");
    return PSREC_OK;
}

psrec_err psrec_shard_reader_open(psrec_shard_reader_t **out, const char *path, char *err)
{
    *out = NULL;
    psrec_shard_reader_t *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    }
    r->loaded = UINT64_MAX;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        int e = errno;
        psrec_shard_reader_close(&r);
        return psrec_fail(err, e == ENOENT ? PSREC_ENOTFOUND : PSREC_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    psrec_err rc = PSREC_OK;
    unsigned char buf[TRAILER_SIZE], *foot = NULL;
    struct stat st;
    if (fstat(r->fd, &st) != 0) {
        rc = psrec_fail(err, PSREC_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < HEADER_SIZE + FOOTER_FIXED + 8 + TAIL_SIZE + TRAILER_SIZE) {
        rc = corrupt(r, err, "file too short");
        goto out;
    }
    uint64_t payload = size - TRAILER_SIZE;
    if (read_at(r->fd, buf, TRAILER_SIZE, payload) || memcmp(buf, DURABLE_MAGIC, 8) != 0 ||
        psrec_get64(buf + 8) != payload) {
        rc = corrupt(r, err, "missing or inconsistent trailer");
        goto out;
    }
    if (read_at(r->fd, buf, TAIL_SIZE, payload - TAIL_SIZE) || memcmp(buf + 16, TAIL_MAGIC, 8) != 0) {
        rc = corrupt(r, err, "missing footer locator");
        goto out;
    }
    uint64_t foot_off = psrec_get64(buf), flen = psrec_get64(buf + 8);
    if (foot_off < HEADER_SIZE || flen > payload - TAIL_SIZE || foot_off != payload - TAIL_SIZE - flen) {
        rc = corrupt(r, err, "bad footer location");
        goto out;
    }
    if (read_at(r->fd, buf, HEADER_SIZE, 0) || memcmp(buf, FILE_MAGIC, 8) != 0 || psrec_get32(buf + 12) != 0) {
        rc = corrupt(r, err, "bad file header");
        goto out;
    }
    if (psrec_get32(buf + 8) != SHARD_VERSION) {
        rc = psrec_fail(err, PSREC_EVERSION, "%s: shard format version %u not supported", path, psrec_get32(buf + 8));
        goto out;
    }
    if (!(foot = malloc(flen))) { /* flen <= file size, checked above */
        rc = psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (read_at(r->fd, foot, flen, foot_off)) {
        rc = psrec_fail(err, PSREC_EIO, "%s: read failed", path);
        goto out;
    }
    rc = parse_footer(r, foot, flen, foot_off, err);
out:
    free(foot);
    if (rc) psrec_shard_reader_close(&r);
    *out = r;
    return rc;
}

void psrec_shard_reader_close(psrec_shard_reader_t **pr)
{
    if (!pr || !*pr) return;
    psrec_shard_reader_t *r = *pr;
    if (r->fd >= 0) close(r->fd);
    free(r->index);
    free(r->raw);
    free(r->comp);
    free(r->path);
    free(r);
    *pr = NULL;
}

const psrec_schema_t *psrec_shard_reader_schema(const psrec_shard_reader_t *r)
{
    return &r->schema;
}

uint64_t psrec_shard_reader_examples(const psrec_shard_reader_t *r)
{
    return r->tot.examples;
}

static psrec_err block_bad(const psrec_shard_reader_t *r, uint64_t k, const char *what, char *err)
{
    return psrec_fail(err, PSREC_ECORRUPT, "%s: block %llu: %s", r->path, (unsigned long long)k, what);
}

static psrec_err load_block(psrec_shard_reader_t *r, uint64_t k, char *err)
{
    const index_t *e = &r->index[k];
    r->loaded = UINT64_MAX;
    unsigned char h[BLOCK_HDR_SIZE];
    if (read_at(r->fd, h, sizeof h, e->off))
        return psrec_fail(err, PSREC_EIO, "%s: block %llu: read failed", r->path, (unsigned long long)k);
    if (memcmp(h, BLOCK_MAGIC, 4) != 0 || psrec_get32(h + 4) != e->nex || psrec_get32(h + 8) != e->raw ||
        psrec_get32(h + 12) != e->comp)
        return block_bad(r, k, "header does not match the index", err);
    /* sizes were checked against MAX_RAW / LZ4_compressBound at open, before any allocation */
    if (grow(&r->comp, &r->comp_cap, e->comp) || grow(&r->raw, &r->raw_cap, e->raw ? e->raw : 1))
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", r->path);
    if (read_at(r->fd, r->comp, e->comp, e->off + BLOCK_HDR_SIZE))
        return psrec_fail(err, PSREC_EIO, "%s: block %llu: read failed", r->path, (unsigned long long)k);
    if (psrec_checksum(r->comp, e->comp) != psrec_get64(h + 16)) return block_bad(r, k, "checksum mismatch", err);
    int n = LZ4_decompress_safe((const char *)r->comp, (char *)r->raw, (int)e->comp, (int)e->raw);
    if (n < 0 || (uint32_t)n != e->raw) return block_bad(r, k, "bad compressed data", err);
    r->loaded = k;
    r->cur = 0;
    r->cur_idx = 0;
    return PSREC_OK;
}

/* Decodes the example at the cursor; appends it to b unless b is NULL (skip). */
static psrec_err decode(psrec_shard_reader_t *r, psrec_batch_t *b, char *err)
{
    const index_t *e = &r->index[r->loaded];
    dec_t d = {r->raw, e->raw, r->cur, 0};
    uint64_t h = get_var(&d), npos = h >> 1;
    int same = (int)(h & 1);
    if (d.bad || npos > e->raw) return block_bad(r, r->loaded, "bad example", err);
    if (b && psrec_batch_begin(b)) return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", r->path);
    psrec_err rc = PSREC_OK;
    for (uint64_t q = 0; q < npos && !d.bad && !rc; q++) {
        uint64_t id = get_var(&d);
        if (b && !d.bad && psrec_batch_add_pos(b, id, 1.0f)) rc = PSREC_ENOMEM;
    }
    size_t wat = d.at;
    if (npos) get_bytes(&d, same ? 4 : 4 * npos);
    uint64_t k = get_var(&d);
    if (k > (uint64_t)r->schema.nslots) d.bad = 1;
    for (uint64_t s = 0; s < k && !d.bad && !rc; s++) {
        uint64_t c = get_var(&d);
        if (c > e->raw) d.bad = 1;
        for (uint64_t q = 0; q < c && !d.bad && !rc; q++) {
            uint64_t id = get_var(&d);
            if (b && !d.bad && psrec_batch_add_slot(b, (int)s, id)) rc = PSREC_ENOMEM;
        }
    }
    uint64_t nh = d.bad ? 0 : get_var(&d);
    if (nh > e->raw) d.bad = 1;
    for (uint64_t q = 0; q < nh && !d.bad && !rc; q++) {
        uint64_t c = get_var(&d);
        if (c > UINT32_MAX)
            d.bad = 1;
        else if (b && !d.bad && psrec_batch_add_home(b, (uint32_t)c))
            rc = PSREC_ENOMEM;
    }
    if (rc || d.bad) {
        if (b) psrec_batch_abort(b);
        if (rc) return psrec_fail(err, rc, "%s: out of memory", r->path);
        return block_bad(r, r->loaded, "bad example", err);
    }
    if (b) {
        psrec_batch_end(b);
        float *w = b->pos_w + b->pos_off[b->n - 1];
        for (uint64_t q = 0; q < npos; q++) { /* restore the stored weights bit-exactly */
            uint32_t u = psrec_get32(r->raw + wat + (same ? 0 : 4 * q));
            memcpy(&w[q], &u, 4);
        }
    }
    r->cur = d.at;
    r->cur_idx++;
    if (r->cur_idx == e->nex && r->cur != e->raw) return block_bad(r, r->loaded, "trailing bytes", err);
    return PSREC_OK;
}

psrec_err psrec_shard_reader_next(psrec_shard_reader_t *r, psrec_batch_t *b, size_t max, size_t *got, char *err)
{
    *got = 0;
    if (b->nslots < r->schema.nslots)
        return psrec_fail(err, PSREC_EINVAL, "%s: batch carries %d slots, shard has %d", r->path, b->nslots,
                          r->schema.nslots);
    psrec_err rc;
    while (*got < max && r->blk < r->nblocks) {
        if (r->loaded != r->blk && (rc = load_block(r, r->blk, err))) return rc;
        if (r->cur_idx > r->idx) { /* seek backwards inside the loaded block */
            r->cur = 0;
            r->cur_idx = 0;
        }
        while (r->cur_idx < r->idx)
            if ((rc = decode(r, NULL, err))) return rc;
        if ((rc = decode(r, b, err))) return rc;
        (*got)++;
        if (++r->idx == r->index[r->blk].nex) {
            r->blk++;
            r->idx = 0;
        }
    }
    return PSREC_OK;
}

psrec_shard_pos_t psrec_shard_reader_tell(const psrec_shard_reader_t *r)
{
    return (psrec_shard_pos_t){r->blk, r->idx};
}

psrec_err psrec_shard_reader_seek(psrec_shard_reader_t *r, psrec_shard_pos_t pos, char *err)
{
    if (pos.block < r->nblocks && pos.index == r->index[pos.block].nex) {
        pos.block++;
        pos.index = 0;
    }
    if (!((pos.block < r->nblocks && pos.index < r->index[pos.block].nex) ||
          (pos.block == r->nblocks && pos.index == 0)))
        return psrec_fail(err, PSREC_EINVAL, "%s: position (%llu, %u) is outside the shard", r->path,
                          (unsigned long long)pos.block, pos.index);
    r->blk = pos.block;
    r->idx = pos.index;
    return PSREC_OK;
}

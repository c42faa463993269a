/* test_snapshot.c: snapshots of a store: write -> info -> load gives bit-identical raw rows (weights and
 * optimizer state) and the blob; a big table streamed by a fork()ed child; row selection on load; tables
 * that do not match; corrupt and truncated files refused with the store unchanged; hand-made hostile
 * payloads (valid checksum, lying counts) refused without crashing or allocating absurdly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/rng.h"
#include "ps/snapshot.h"
#include "test_util.h"

/* ---- stores ---- */

#define NT 4
static const uint32_t IDS[NT] = {0, 2, 5, 7};

static psrec_table_conf_t conf_of(int i)
{
    switch (i) {
    case 0:
        return (psrec_table_conf_t){
            .dim = 8, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.1f}, .init = PSREC_INIT_UNIFORM, .init_scale = 0.5f};
    case 1:
        return (psrec_table_conf_t){.dim = 16,
                                    .opt = {.kind = PSREC_OPT_ADAGRAD, .lr = 0.2f, .init_acc = 0.1f, .l2 = 0.01f},
                                    .init = PSREC_INIT_NORMAL,
                                    .init_scale = 0.1f,
                                    .max_rows = 100000};
    case 2: return (psrec_table_conf_t){.dim = 4, .opt = {.kind = PSREC_OPT_ADAM, .lr = 0.01f, .beta1 = 0.8f}};
    default: /* stays empty */
        return (psrec_table_conf_t){.dim = 3, .opt = {.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.3f}};
    }
}

static psrec_store_t *mk_store(uint64_t seed)
{
    psrec_store_t *s;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_store_new(&s, seed, 8), PSREC_OK);
    for (int i = 0; i < NT; i++) {
        psrec_table_conf_t c = conf_of(i);
        assert_int_equal(psrec_store_add_table(s, IDS[i], &c, err), PSREC_OK);
    }
    return s;
}

/* Pushes random gradients to n random keys of every table but the last, a few times (Adam rows get
 * different step counts). */
static void fill(psrec_store_t *s, size_t n, uint64_t seed)
{
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 1);
    uint64_t *keys = malloc(n * sizeof *keys);
    for (size_t i = 0; i < n; i++)
        keys[i] = i == 0 ? UINT64_MAX : psrec_rng_u64(&r);
    for (int t = 0; t + 1 < NT; t++) {
        uint32_t d = psrec_store_dim(s, IDS[t]);
        float *g = malloc(n * d * sizeof(float));
        for (int step = 0; step < 3; step++) {
            size_t m = n * (size_t)(step + 1) / 3;
            for (size_t i = 0; i < m * d; i++)
                g[i] = (float)(2 * psrec_rng_uniform(&r) - 1);
            assert_int_equal(psrec_store_push(s, IDS[t], keys, m, g), PSREC_OK);
        }
        free(g);
    }
    free(keys);
}

typedef struct {
    uint64_t *keys;
    float *rows;
    size_t n, cap;
    uint32_t width;
} rows_t;

static void grab(uint64_t key, const float *row, uint32_t width, void *ctx)
{
    rows_t *r = ctx;
    assert_int_equal(width, r->width);
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->keys = realloc(r->keys, r->cap * sizeof *r->keys);
        r->rows = realloc(r->rows, r->cap * width * sizeof(float));
    }
    r->keys[r->n] = key;
    memcpy(r->rows + r->n * width, row, width * sizeof(float));
    r->n++;
}

static int cmp_row(const void *a, const void *b)
{
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    return x < y ? -1 : x > y;
}

/* The table's rows as records {key, width floats} sorted by key (a canonical image to compare). */
static unsigned char *image(psrec_store_t *s, uint32_t table, size_t *n_out, size_t *rec_out)
{
    rows_t r = {.width = psrec_store_row_width(s, table)};
    psrec_store_foreach_raw(s, table, grab, &r);
    size_t rec = 8 + r.width * sizeof(float);
    unsigned char *img = malloc(r.n * rec + 1);
    for (size_t i = 0; i < r.n; i++) {
        memcpy(img + i * rec, &r.keys[i], 8);
        memcpy(img + i * rec + 8, r.rows + i * r.width, r.width * sizeof(float));
    }
    qsort(img, r.n, rec, cmp_row);
    free(r.keys), free(r.rows);
    *n_out = r.n;
    *rec_out = rec;
    return img;
}

static void assert_same_table(psrec_store_t *a, psrec_store_t *b, uint32_t table)
{
    size_t na, nb, ra, rb;
    unsigned char *ia = image(a, table, &na, &ra), *ib = image(b, table, &nb, &rb);
    assert_int_equal(na, nb);
    assert_int_equal(ra, rb);
    assert_memory_equal(ia, ib, na * ra);
    free(ia), free(ib);
}

static void assert_same(psrec_store_t *a, psrec_store_t *b)
{
    for (int t = 0; t < NT; t++)
        assert_same_table(a, b, IDS[t]);
}

static const psrec_snapshot_meta_t META = {.job_id = 77, .round = 12, .seed = 99, .rank = 1, .n_servers = 3};

static char *tpath(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", psrec_test_tmp, name);
    return p[k];
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static int setup(void **st)
{
    (void)st;
    return psrec_test_mktmp("snapshot");
}

static int teardown(void **st)
{
    (void)st;
    return psrec_test_rmtmp();
}

/* ---- tests ---- */

static void test_roundtrip(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    psrec_store_t *a = mk_store(1);
    fill(a, 500, 2);
    const char blob[] = "dedup windows: rank 0 seq 17, rank 1 seq 4";
    const char *path = tpath("rt.snap");
    uint64_t bytes = 0;
    psrec_err rc = psrec_snapshot_write(path, a, &META, blob, sizeof blob, &bytes, err);
    if (rc) fail_msg("%s", err);
    assert_int_equal(bytes, file_size(path));

    psrec_snapshot_meta_t m;
    psrec_snapshot_info_t info;
    assert_int_equal(psrec_snapshot_info(path, &m, &info, err), PSREC_OK);
    assert_memory_equal(&m, &META, sizeof m);
    assert_int_equal(info.ntables, NT);
    for (int i = 0; i < NT; i++) {
        psrec_table_conf_t c = conf_of(i);
        assert_int_equal(info.ids[i], IDS[i]);
        assert_memory_equal(&info.conf[i], &c, sizeof c);
        assert_int_equal(info.rows[i], i + 1 < NT ? 500 : 0);
    }

    psrec_store_t *b = mk_store(5); /* another seed: nothing may come from b's own init */
    void *extra = NULL;
    size_t extra_len = 0;
    memset(&m, 0, sizeof m);
    rc = psrec_snapshot_load(path, b, NULL, NULL, &m, &extra, &extra_len, err);
    if (rc) fail_msg("%s", err);
    assert_memory_equal(&m, &META, sizeof m);
    assert_int_equal(extra_len, sizeof blob);
    assert_memory_equal(extra, blob, sizeof blob);
    free(extra);
    assert_same(a, b);

    /* a snapshot without blob, loaded without asking for one; an empty store */
    psrec_store_t *c = mk_store(1), *d = mk_store(1);
    assert_int_equal(psrec_snapshot_write(path, c, &META, NULL, 0, NULL, err), PSREC_OK);
    extra = (void *)1;
    assert_int_equal(psrec_snapshot_load(path, d, NULL, NULL, NULL, &extra, &extra_len, err), PSREC_OK);
    assert_null(extra);
    assert_int_equal(extra_len, 0);
    for (int i = 0; i < NT; i++)
        assert_int_equal(psrec_store_rows(d, IDS[i]), 0);
    psrec_store_destroy(&a), psrec_store_destroy(&b), psrec_store_destroy(&c), psrec_store_destroy(&d);
}

/* A table much bigger than the stream buffers, written by a fork()ed child (as the server does) while
 * the parent changes its own copy afterwards; loaded rows equal the state at the fork. */
static void test_fork_big(void **st)
{
    (void)st;
    enum { N = 40000, D = 64 };
    char err[PSREC_ERRBUF];
    psrec_store_t *a;
    assert_int_equal(psrec_store_new(&a, 3, 16), PSREC_OK);
    psrec_table_conf_t c = {
        .dim = D, .opt = {.kind = PSREC_OPT_ADAM, .lr = 0.01f}, .init = PSREC_INIT_NORMAL, .init_scale = 0.1f};
    assert_int_equal(psrec_store_add_table(a, 1, &c, err), PSREC_OK);
    uint64_t *keys = malloc(N * sizeof *keys);
    float *g = malloc((size_t)N * D * sizeof(float));
    psrec_rng_t r;
    psrec_rng_seed(&r, 4, 4);
    for (int i = 0; i < N; i++)
        keys[i] = psrec_rng_u64(&r);
    for (size_t i = 0; i < (size_t)N * D; i++)
        g[i] = (float)psrec_rng_normal(&r);
    assert_int_equal(psrec_store_push(a, 1, keys, N, g), PSREC_OK);
    size_t n0, rec0;
    unsigned char *before = image(a, 1, &n0, &rec0);
    const char *path = tpath("big.snap");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char e[PSREC_ERRBUF];
        _exit(psrec_snapshot_write(path, a, &META, NULL, 0, NULL, e) == PSREC_OK ? 0 : 1);
    }
    assert_int_equal(psrec_store_push(a, 1, keys, N, g), PSREC_OK); /* the parent goes on */
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* incompressible floats: the file is about the raw size */
    assert_true(file_size(path) > (uint64_t)N * (8 + 4 * (2 * D + 1 + D)));
    psrec_store_t *b;
    assert_int_equal(psrec_store_new(&b, 3, 4), PSREC_OK);
    assert_int_equal(psrec_store_add_table(b, 1, &c, err), PSREC_OK);
    psrec_err rc = psrec_snapshot_load(path, b, NULL, NULL, NULL, NULL, NULL, err);
    if (rc) fail_msg("%s", err);
    size_t n1, rec1;
    unsigned char *after = image(b, 1, &n1, &rec1);
    assert_int_equal(n1, N);
    assert_memory_equal(before, after, n0 * rec0);
    free(before), free(after), free(keys), free(g);
    psrec_store_destroy(&a), psrec_store_destroy(&b);
}

static int keep_even(uint32_t table, uint64_t key, void *ctx)
{
    (*(int *)ctx)++;
    return table != 2 || psrec_mix64(key) % 2 == 0;
}

/* keep selects rows: a re-sharded server takes only its keys. */
static void test_keep(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    psrec_store_t *a = mk_store(1), *b = mk_store(1), *want = mk_store(1);
    fill(a, 300, 3);
    const char *path = tpath("keep.snap");
    assert_int_equal(psrec_snapshot_write(path, a, &META, NULL, 0, NULL, err), PSREC_OK);
    int calls = 0;
    assert_int_equal(psrec_snapshot_load(path, b, keep_even, &calls, NULL, NULL, NULL, err), PSREC_OK);
    assert_int_equal(calls, 3 * 300);
    /* the expectation, built by hand: every row of a, but only the even-hash keys of table 2 */
    for (int t = 0; t < NT; t++) {
        rows_t r = {.width = psrec_store_row_width(a, IDS[t])};
        psrec_store_foreach_raw(a, IDS[t], grab, &r);
        size_t m = 0;
        for (size_t i = 0; i < r.n; i++)
            if (IDS[t] != 2 || psrec_mix64(r.keys[i]) % 2 == 0) {
                r.keys[m] = r.keys[i];
                memmove(r.rows + m * r.width, r.rows + i * r.width, r.width * sizeof(float));
                m++;
            }
        if (IDS[t] == 2) assert_true(m > 100 && m < 200);
        assert_int_equal(psrec_store_put_raw(want, IDS[t], r.keys, m, r.rows), PSREC_OK);
        free(r.keys), free(r.rows);
    }
    assert_same(want, b);
    psrec_store_destroy(&a), psrec_store_destroy(&b), psrec_store_destroy(&want);
}

/* Tables of the file that the store lacks, or has with another dim or optimizer: PSREC_EINVAL naming the
 * table and both values, nothing loaded. */
static void test_mismatch(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    psrec_store_t *a = mk_store(1);
    fill(a, 50, 3);
    const char *path = tpath("mm.snap");
    assert_int_equal(psrec_snapshot_write(path, a, &META, NULL, 0, NULL, err), PSREC_OK);
    for (int k = 0; k < 3; k++) {
        psrec_store_t *b;
        assert_int_equal(psrec_store_new(&b, 1, 4), PSREC_OK);
        for (int i = 0; i < NT; i++) {
            psrec_table_conf_t c = conf_of(i);
            if (IDS[i] == 5 && k == 0) continue; /* missing */
            if (IDS[i] == 5 && k == 1) c.dim = 5;
            if (IDS[i] == 5 && k == 2) c.opt.kind = PSREC_OPT_ADAGRAD;
            assert_int_equal(psrec_store_add_table(b, IDS[i], &c, err), PSREC_OK);
        }
        err[0] = 0;
        assert_int_equal(psrec_snapshot_load(path, b, NULL, NULL, NULL, NULL, NULL, err), PSREC_EINVAL);
        assert_non_null(strstr(err, "table 5"));
        assert_non_null(strstr(err, "mm.snap"));
        if (k == 1) assert_true(strstr(err, "dim 4") && strstr(err, "dim 5"));
        if (k == 2)
            assert_true(strstr(err, psrec_opt_name(PSREC_OPT_ADAM)) && strstr(err, psrec_opt_name(PSREC_OPT_ADAGRAD)));
        for (int i = 0; i < NT; i++)
            assert_int_equal(psrec_store_rows(b, IDS[i]), 0);
        psrec_store_destroy(&b);
    }
    psrec_store_destroy(&a);
}

static void copy_file(const char *from, const char *to, uint64_t len)
{
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    assert_non_null(f);
    assert_non_null(g);
    char buf[65536];
    while (len > 0) {
        size_t n = len < sizeof buf ? (size_t)len : sizeof buf;
        assert_int_equal(fread(buf, 1, n, f), n);
        assert_int_equal(fwrite(buf, 1, n, g), n);
        len -= n;
    }
    fclose(f);
    assert_int_equal(fclose(g), 0);
}

static void flip(const char *path, uint64_t off)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseeko(f, (off_t)off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_true(c != EOF);
    assert_int_equal(fseeko(f, (off_t)off, SEEK_SET), 0);
    fputc(c ^ 0x20, f);
    assert_int_equal(fclose(f), 0);
}

/* Any flipped byte or truncation: PSREC_ECORRUPT naming the file, and the store keeps what it had. */
static void test_corrupt(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    psrec_store_t *a = mk_store(1), *b = mk_store(9), *ref = mk_store(9);
    fill(a, 400, 3);
    fill(b, 20, 4), fill(ref, 20, 4); /* b holds rows of its own (some keys shared with a: key UINT64_MAX) */
    const char *good = tpath("good.snap"), *bad = tpath("bad.snap");
    const char blob[] = "extra";
    assert_int_equal(psrec_snapshot_write(good, a, &META, blob, sizeof blob, NULL, err), PSREC_OK);
    uint64_t size = file_size(good);
    const uint64_t offs[] = {0,        1,        7,         30,        60,        100,      500,
                             size / 3, size / 2, size - 40, size - 25, size - 24, size - 9, size - 1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        copy_file(good, bad, size);
        flip(bad, offs[i]);
        err[0] = 0;
        void *extra = NULL;
        psrec_err rc = psrec_snapshot_load(bad, b, NULL, NULL, NULL, &extra, NULL, err);
        if (rc != PSREC_ECORRUPT)
            fail_msg("flip at %llu: %s (%s)", (unsigned long long)offs[i], psrec_errname(rc), err);
        assert_null(extra);
        assert_non_null(strstr(err, "bad.snap"));
        assert_int_equal(psrec_snapshot_info(bad, NULL, NULL, err), PSREC_ECORRUPT);
        assert_same(b, ref);
    }
    const uint64_t lens[] = {0, 10, 23, 24, 100, size / 2, size - 25, size - 24, size - 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        copy_file(good, bad, lens[i]);
        err[0] = 0;
        psrec_err rc = psrec_snapshot_load(bad, b, NULL, NULL, NULL, NULL, NULL, err);
        if (rc != PSREC_ECORRUPT) fail_msg("cut at %llu: %s (%s)", (unsigned long long)lens[i], psrec_errname(rc), err);
        assert_non_null(strstr(err, "bad.snap"));
        assert_same(b, ref);
    }
    assert_int_equal(psrec_snapshot_load(tpath("nope.snap"), b, NULL, NULL, NULL, NULL, NULL, err), PSREC_ENOTFOUND);
    assert_int_equal(psrec_snapshot_info(tpath("nope.snap"), NULL, NULL, err), PSREC_ENOTFOUND);
    /* the intact file still loads into b */
    assert_int_equal(psrec_snapshot_load(good, b, NULL, NULL, NULL, NULL, NULL, err), PSREC_OK);
    assert_int_equal(psrec_store_rows(b, 0), 400 + 19);
    psrec_store_destroy(&a), psrec_store_destroy(&b), psrec_store_destroy(&ref);
}

/* ---- hand-made payloads: the format of ps/snapshot.c's header comment, encoded here independently ---- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} buf_t;

static void b_put(buf_t *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void b_u32(buf_t *b, uint32_t v)
{
    b_put(b, &v, 4);
}

static void b_u64(buf_t *b, uint64_t v)
{
    b_put(b, &v, 8);
}

static void b_f32(buf_t *b, float v)
{
    b_put(b, &v, 4);
}

/* header with one SGD table of dim 2 (width 2) */
static void hostile_header(buf_t *b, int version, uint32_t ntables, uint64_t extra_len, uint32_t width, uint64_t rows)
{
    b_put(b, "PSRSNAP", 7);
    unsigned char v = (unsigned char)version;
    b_put(b, &v, 1);
    b_u64(b, 1), b_u64(b, 2), b_u64(b, 3);
    b_u32(b, 0), b_u32(b, 1), b_u32(b, ntables), b_u32(b, 0);
    b_u64(b, extra_len);
    b_u32(b, 4), b_u32(b, 2), b_u32(b, PSREC_OPT_SGD), b_u32(b, PSREC_INIT_ZERO);
    b_f32(b, 0.1f), b_f32(b, 0), b_f32(b, 0), b_f32(b, 0), b_f32(b, 0), b_f32(b, 0), b_f32(b, 0);
    b_u32(b, width);
    b_u64(b, 0), b_u64(b, rows);
}

static void rows_and_end(buf_t *b, int rows)
{
    for (int i = 0; i < rows; i++) {
        b_u64(b, (uint64_t)i * 7);
        b_f32(b, (float)i), b_f32(b, -(float)i);
    }
    b_put(b, "SNAPEND\x01", 8);
}

/* Compresses (one frame with checksums, or raw when lz4 = 0) and writes a durable file. */
static void write_payload(const char *path, const buf_t *b, int lz4, int frames)
{
    LZ4F_preferences_t prefs = {.frameInfo = {.contentChecksumFlag = LZ4F_contentChecksumEnabled,
                                              .blockChecksumFlag = LZ4F_blockChecksumEnabled}};
    size_t cap = LZ4F_compressFrameBound(b->n, &prefs);
    unsigned char *z = malloc(cap);
    size_t zn = b->n;
    if (lz4) {
        zn = LZ4F_compressFrame(z, cap, b->p, b->n, &prefs);
        assert_false(LZ4F_isError(zn));
    } else {
        memcpy(z, b->p, b->n);
    }
    char err[PSREC_ERRBUF];
    psrec_dfile_t *f;
    assert_int_equal(psrec_dfile_open(&f, path, err), PSREC_OK);
    for (int i = 0; i < frames; i++)
        assert_int_equal(psrec_dfile_write(f, z, zn, err), PSREC_OK);
    assert_int_equal(psrec_dfile_commit(&f, err), PSREC_OK);
    free(z);
}

static psrec_err load_hostile(const buf_t *b, int lz4, int frames, psrec_store_t *s)
{
    const char *path = tpath("hostile.snap");
    write_payload(path, b, lz4, frames);
    char err[PSREC_ERRBUF];
    void *extra = NULL;
    psrec_err rc = psrec_snapshot_load(path, s, NULL, NULL, NULL, &extra, NULL, err);
    free(extra);
    return rc;
}

static void test_hostile(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    psrec_store_t *s;
    assert_int_equal(psrec_store_new(&s, 1, 2), PSREC_OK);
    psrec_table_conf_t c = {.dim = 2, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.1f}};
    assert_int_equal(psrec_store_add_table(s, 4, &c, err), PSREC_OK);
    buf_t b = {0};

    /* the hand-made file is right: it loads */
    hostile_header(&b, 1, 1, 0, 2, 3), rows_and_end(&b, 3);
    assert_int_equal(load_hostile(&b, 1, 1, s), PSREC_OK);
    assert_int_equal(psrec_store_rows(s, 4), 3);
    float w[2];
    uint64_t k = 14;
    assert_int_equal(psrec_store_pull(s, 4, &k, 1, w), PSREC_OK);
    assert_true(w[0] == 2.0f && w[1] == -2.0f);
    /* two frames back to back */
    assert_int_equal(load_hostile(&b, 1, 2, s), PSREC_ECORRUPT);
    /* not LZ4 at all */
    assert_int_equal(load_hostile(&b, 0, 1, s), PSREC_ECORRUPT);

    struct {
        int version;
        uint32_t ntables, width;
        uint64_t extra_len, rows;
        int real_rows;
        psrec_err want;
    } cases[] = {
        {2, 1, 2, 0, 3, 3, PSREC_EVERSION},          /* unknown version */
        {1, 1000, 2, 0, 3, 3, PSREC_ECORRUPT},       /* table count */
        {1, 1, 2, 1ull << 60, 3, 3, PSREC_ECORRUPT}, /* blob length */
        {1, 1, 2, 1ull << 20, 3, 3, PSREC_ECORRUPT}, /* blob longer than the stream */
        {1, 1, 2, 0, 1ull << 40, 3, PSREC_ECORRUPT}, /* row count */
        {1, 1, 2, 0, 4, 3, PSREC_ECORRUPT},          /* one row missing */
        {1, 1, 2, 0, 2, 3, PSREC_ECORRUPT},          /* one row too many */
        {1, 1, 3, 0, 3, 3, PSREC_ECORRUPT},          /* width does not match dim */
        {1, 1, UINT32_MAX, 0, 3, 3, PSREC_ECORRUPT}, /* absurd width */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b.n = 0;
        hostile_header(&b, cases[i].version, cases[i].ntables, cases[i].extra_len, cases[i].width, cases[i].rows);
        rows_and_end(&b, cases[i].real_rows);
        psrec_err rc = load_hostile(&b, 1, 1, s);
        if (rc != cases[i].want) fail_msg("case %zu: %s", i, psrec_errname(rc));
    }
    /* a bad table id and a bad optimizer kind, patched into a good header */
    b.n = 0;
    hostile_header(&b, 1, 1, 0, 2, 3), rows_and_end(&b, 3);
    uint32_t bad_id = 64, bad_kind = 9;
    memcpy(b.p + 56, &bad_id, 4);
    assert_int_equal(load_hostile(&b, 1, 1, s), PSREC_ECORRUPT);
    memcpy(b.p + 56, &(uint32_t){4}, 4);
    memcpy(b.p + 64, &bad_kind, 4);
    assert_int_equal(load_hostile(&b, 1, 1, s), PSREC_ECORRUPT);
    free(b.p);
    psrec_store_destroy(&s);
}

static void test_write_errors(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    psrec_store_t *a = mk_store(1);
    fill(a, 10, 1);
    uint64_t bytes = 1;
    assert_int_equal(psrec_snapshot_write(tpath("no/such/dir/x.snap"), a, &META, NULL, 0, &bytes, err), PSREC_EIO);
    assert_int_equal(bytes, 0);
    assert_int_equal(psrec_snapshot_write(tpath("x.snap"), a, &META, NULL, 5, NULL, err), PSREC_EINVAL);
    psrec_store_destroy(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),    cmocka_unit_test(test_fork_big), cmocka_unit_test(test_keep),
        cmocka_unit_test(test_mismatch),     cmocka_unit_test(test_corrupt),  cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_write_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

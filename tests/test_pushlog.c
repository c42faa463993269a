/* test_pushlog.c: the push log: append/commit/replay round trip and stats; pending records dropped by
 * close; a torn tail cut at every byte offset of the last record (replay gives the earlier records, open
 * continues cleanly after them), zero-filled tails; a flipped byte in a middle record or in an older
 * segment is PSREC_ECORRUPT naming file and offset; rotate, prune and discard; and recovery: snapshot +
 * log replay through psrec_store_push/set reproduce the store bit for bit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/rng.h"
#include "ps/pushlog.h"
#include "ps/snapshot.h"
#include "ps/store.h"
#include "test_util.h"

/* ---- records kept by the test (the expectation) ---- */

typedef struct {
    uint32_t type, table, dim, role, rank;
    uint64_t epoch, seq;
    size_t n;
    uint64_t *keys;
    float *vals;
} rec_t;

static rec_t mkrec(psrec_rng_t *r, uint32_t type, uint32_t table, uint32_t dim, size_t n)
{
    rec_t x = {.type = type,
               .table = table,
               .dim = dim,
               .role = (uint32_t)psrec_rng_below(r, 3),
               .rank = (uint32_t)psrec_rng_below(r, 100),
               .epoch = psrec_rng_u64(r),
               .seq = psrec_rng_u64(r),
               .n = n};
    x.keys = malloc(n * sizeof *x.keys + 1);
    x.vals = malloc(n * dim * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++)
        x.keys[i] = psrec_rng_u64(r);
    for (size_t i = 0; i < n * dim; i++)
        x.vals[i] = (float)psrec_rng_normal(r);
    return x;
}

static void freerec(rec_t *x)
{
    free(x->keys);
    free(x->vals);
}

static psrec_logrec_t view(const rec_t *x)
{
    return (psrec_logrec_t){.type = x->type,
                            .table = x->table,
                            .dim = x->dim,
                            .role = x->role,
                            .rank = x->rank,
                            .epoch = x->epoch,
                            .seq = x->seq,
                            .n = x->n,
                            .keys = x->keys,
                            .vals = x->vals};
}

static void append(psrec_pushlog_t *l, const rec_t *x)
{
    char err[PSREC_ERRBUF];
    psrec_logrec_t v = view(x);
    psrec_err rc = psrec_pushlog_append(l, &v, err);
    if (rc) fail_msg("append: %s", err);
}

static void commit(psrec_pushlog_t *l)
{
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_pushlog_commit(l, err);
    if (rc) fail_msg("commit: %s", err);
}

/* replay collector: compares each replayed record with the expected list */
typedef struct {
    const rec_t *const *want;
    size_t nwant, got;
} cmp_t;

static psrec_err check_rec(const psrec_logrec_t *r, void *ctx, char *err)
{
    (void)err;
    cmp_t *c = ctx;
    assert_true(c->got < c->nwant);
    const rec_t *w = c->want[c->got++];
    assert_int_equal(r->type, w->type);
    assert_int_equal(r->table, w->table);
    assert_int_equal(r->dim, w->dim);
    assert_int_equal(r->role, w->role);
    assert_int_equal(r->rank, w->rank);
    assert_int_equal(r->epoch, w->epoch);
    assert_int_equal(r->seq, w->seq);
    assert_int_equal(r->n, w->n);
    if (w->n) {
        assert_memory_equal(r->keys, w->keys, w->n * sizeof(uint64_t));
        assert_memory_equal(r->vals, w->vals, w->n * w->dim * sizeof(float));
    }
    return PSREC_OK;
}

/* Replays dir/rank and checks the records are exactly want[0..n). */
static void expect_replay(const char *dir, uint32_t rank, uint64_t from, const rec_t *const *want, size_t n)
{
    char err[PSREC_ERRBUF];
    cmp_t c = {.want = want, .nwant = n};
    uint64_t count = 99;
    psrec_err rc = psrec_pushlog_replay(dir, rank, from, check_rec, &c, &count, err);
    if (rc) fail_msg("replay: %s", err);
    assert_int_equal(c.got, n);
    assert_int_equal(count, n);
}

/* ---- files ---- */

static char *sub(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", psrec_test_tmp, name);
    return p[k];
}

static char *seg(const char *dir, uint32_t rank, uint64_t s)
{
    static char p[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/pushlog-%u-%06llu.log", dir, rank, (unsigned long long)s);
    return p[k];
}

static int64_t fsize(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *p = malloc(*n + 1);
    assert_int_equal(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void fresh_dir(const char *dir)
{
    assert_int_equal(psrec_test_run(NULL, 0, "rm -rf '%s' && mkdir -p '%s'", dir, dir), 0);
}

static int setup(void **st)
{
    (void)st;
    return psrec_test_mktmp("pushlog");
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
    const char *dir = sub("rt/log"); /* created by open */
    psrec_rng_t r;
    psrec_rng_seed(&r, 1, 1);
    rec_t x[6] = {mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 5),    mkrec(&r, PSREC_LOGREC_SET, 2, 1, 0),
                  mkrec(&r, PSREC_LOGREC_PUSH, 1, 3, 1000), mkrec(&r, PSREC_LOGREC_SET, 63, 7, 2),
                  mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 9),    mkrec(&r, PSREC_LOGREC_PUSH, 5, 2, 3)};
    psrec_pushlog_t *l;
    assert_int_equal(psrec_pushlog_open(&l, dir, 3, 1, err), PSREC_OK);
    int64_t size0 = fsize(seg(dir, 3, 1));
    assert_true(size0 > 0);
    commit(l); /* nothing pending: no-op */
    psrec_pushlog_stats_t s;
    psrec_pushlog_stats(l, &s);
    assert_int_equal(s.commits, 0);
    append(l, &x[0]), append(l, &x[1]);
    assert_int_equal(fsize(seg(dir, 3, 1)), size0); /* append only buffers */
    commit(l);
    append(l, &x[2]), append(l, &x[3]);
    commit(l);
    psrec_pushlog_stats(l, &s);
    assert_int_equal(s.records, 4);
    assert_int_equal(s.commits, 2);
    assert_int_equal((int64_t)s.bytes, fsize(seg(dir, 3, 1)) - size0);
    assert_true(s.fsync_seconds >= 0);
    /* bad records are refused, nothing buffered */
    psrec_logrec_t bad = view(&x[0]);
    bad.type = 3;
    assert_int_equal(psrec_pushlog_append(l, &bad, err), PSREC_EINVAL);
    bad.type = PSREC_LOGREC_PUSH, bad.dim = 0;
    assert_int_equal(psrec_pushlog_append(l, &bad, err), PSREC_EINVAL);
    bad.dim = 4, bad.keys = NULL;
    assert_int_equal(psrec_pushlog_append(l, &bad, err), PSREC_EINVAL);
    append(l, &x[4]); /* dropped by close */
    psrec_pushlog_close(&l);
    assert_null(l);
    psrec_pushlog_close(&l);
    const rec_t *w[] = {&x[0], &x[1], &x[2], &x[3], &x[5]};
    expect_replay(dir, 3, 0, w, 4);
    expect_replay(dir, 3, 1, w, 4);
    expect_replay(dir, 3, 2, w, 0);
    expect_replay(dir, 4, 0, w, 0);                /* another rank */
    expect_replay(sub("no/such/dir"), 3, 0, w, 0); /* nothing logged yet */
    /* a restart appends after the last record */
    assert_int_equal(psrec_pushlog_open(&l, dir, 3, 1, err), PSREC_OK);
    append(l, &x[5]);
    commit(l);
    psrec_pushlog_close(&l);
    expect_replay(dir, 3, 0, w, 5);
    for (int i = 0; i < 6; i++)
        freerec(&x[i]);
}

static psrec_err stop_at_two(const psrec_logrec_t *r, void *ctx, char *err)
{
    (void)r;
    return ++*(int *)ctx == 2 ? psrec_fail(err, PSREC_EREFUSED, "stop") : PSREC_OK;
}

/* The split group commit: a writer thread writes a sealed batch while the owner appends the next. */
static void *write_sealed_thread(void *p)
{
    psrec_pushlog_write_sealed(p);
    return NULL;
}

static void test_sealed_batches(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    const char *dir = sub("sealed/log");
    psrec_rng_t r;
    psrec_rng_seed(&r, 4, 4);
    rec_t x[5] = {mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 50), mkrec(&r, PSREC_LOGREC_SET, 1, 2, 3),
                  mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 7), mkrec(&r, PSREC_LOGREC_PUSH, 2, 8, 100),
                  mkrec(&r, PSREC_LOGREC_SET, 0, 4, 1)};
    psrec_pushlog_t *l;
    assert_int_equal(psrec_pushlog_open(&l, dir, 0, 0, err), PSREC_OK);
    int64_t size0 = fsize(seg(dir, 0, 0));
    append(l, &x[0]), append(l, &x[1]);
    assert_int_equal(psrec_pushlog_seal(l, err), PSREC_OK);
    assert_int_equal(psrec_pushlog_seal(l, err), PSREC_EINVAL);   /* one batch at a time */
    assert_int_equal(psrec_pushlog_commit(l, err), PSREC_EINVAL); /* not while one is sealed */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_sealed_thread, l), 0);
    append(l, &x[2]), append(l, &x[3]); /* the owner goes on meanwhile */
    pthread_join(t, NULL);
    assert_int_equal(psrec_pushlog_finish_sealed(l, err), PSREC_OK);
    psrec_pushlog_stats_t s;
    psrec_pushlog_stats(l, &s);
    assert_int_equal(s.records, 2); /* the batch, not what was appended since */
    assert_int_equal(s.commits, 1);
    assert_int_equal((int64_t)s.bytes, fsize(seg(dir, 0, 0)) - size0);
    assert_int_equal(psrec_pushlog_seal(l, err), PSREC_OK);
    psrec_pushlog_write_sealed(l);
    assert_int_equal(psrec_pushlog_finish_sealed(l, err), PSREC_OK);
    assert_int_equal(psrec_pushlog_finish_sealed(l, err), PSREC_OK); /* nothing sealed: no-op */
    append(l, &x[4]);
    commit(l);
    psrec_pushlog_close(&l);
    const rec_t *w[] = {&x[0], &x[1], &x[2], &x[3], &x[4]};
    expect_replay(dir, 0, 0, w, 5); /* every record once, in append order */
    for (int i = 0; i < 5; i++)
        freerec(&x[i]);
}

static void test_replay_fn_error(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    const char *dir = sub("fnerr");
    psrec_rng_t r;
    psrec_rng_seed(&r, 2, 2);
    rec_t x = mkrec(&r, PSREC_LOGREC_PUSH, 0, 2, 2);
    psrec_pushlog_t *l;
    assert_int_equal(psrec_pushlog_open(&l, dir, 0, 0, err), PSREC_OK);
    append(l, &x), append(l, &x), append(l, &x);
    commit(l);
    psrec_pushlog_close(&l);
    int calls = 0;
    uint64_t n;
    assert_int_equal(psrec_pushlog_replay(dir, 0, 0, stop_at_two, &calls, &n, err), PSREC_EREFUSED);
    assert_string_equal(err, "stop");
    assert_int_equal(calls, 2);
    assert_int_equal(n, 1);
    freerec(&x);
}

/* Writes records want[0..3) to a fresh segment in dir (one commit each); *starts gets each record's offset
 * and the end. */
static void three_records(const char *dir, const rec_t *x, int64_t starts[4])
{
    char err[PSREC_ERRBUF];
    fresh_dir(dir);
    psrec_pushlog_t *l;
    assert_int_equal(psrec_pushlog_open(&l, dir, 0, 7, err), PSREC_OK);
    starts[0] = fsize(seg(dir, 0, 7));
    for (int i = 0; i < 3; i++) {
        append(l, &x[i]);
        commit(l);
        starts[i + 1] = fsize(seg(dir, 0, 7));
    }
    psrec_pushlog_close(&l);
}

/* The last record cut at every byte offset (and the file header itself): replay gives the records before
 * it; open cuts the tail and the next record follows cleanly. */
static void test_torn_tail(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    const char *dir = sub("torn"), *work = sub("torn-work");
    psrec_rng_t r;
    psrec_rng_seed(&r, 3, 3);
    rec_t x[4] = {mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 2), mkrec(&r, PSREC_LOGREC_SET, 1, 2, 1),
                  mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 3), mkrec(&r, PSREC_LOGREC_SET, 0, 4, 1)};
    int64_t at[4];
    three_records(dir, x, at);
    size_t n;
    unsigned char *img = slurp(seg(dir, 0, 7), &n);
    assert_int_equal((int64_t)n, at[3]);
    const rec_t *w[] = {&x[0], &x[1], &x[3]};
    for (int64_t cut = 0; cut < at[3]; cut++) {
        if (cut > at[0] && cut < at[2]) continue; /* only the file header and the last record */
        fresh_dir(work);
        spit(seg(work, 0, 7), img, (size_t)cut);
        expect_replay(work, 0, 0, w, cut >= at[2] ? 2 : 0);
        psrec_pushlog_t *l;
        psrec_err rc = psrec_pushlog_open(&l, work, 0, 7, err);
        if (rc) fail_msg("cut at %lld: %s", (long long)cut, err);
        append(l, &x[3]);
        commit(l);
        psrec_pushlog_close(&l);
        if (cut >= at[2]) {
            expect_replay(work, 0, 0, w, 3);
            assert_int_equal(fsize(seg(work, 0, 7)), at[2] + 64 + 1 * (8 + 4 * 4) + 8); /* header, n=1 d=4, sum */
        } else {
            expect_replay(work, 0, 0, w + 2, 1);
        }
    }
    /* zeros after the end (the file grew, the data never came), also from inside the last record */
    for (int k = 0; k < 3; k++) {
        fresh_dir(work);
        size_t keep = k == 0 ? n : k == 1 ? (size_t)at[2] + 70 : (size_t)at[2] + 3;
        unsigned char *z = calloc(n + 5000, 1);
        memcpy(z, img, keep);
        spit(seg(work, 0, 7), z, n + 5000);
        free(z);
        const rec_t *w3[] = {&x[0], &x[1], &x[2]};
        expect_replay(work, 0, 0, w3, k == 0 ? 3 : 2);
        psrec_pushlog_t *l;
        assert_int_equal(psrec_pushlog_open(&l, work, 0, 7, err), PSREC_OK);
        psrec_pushlog_close(&l);
        assert_int_equal(fsize(seg(work, 0, 7)), k == 0 ? at[3] : at[2]);
    }
    free(img);
    for (int i = 0; i < 4; i++)
        freerec(&x[i]);
}

static void flip(const char *path, int64_t off)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
    fputc(c ^ 0x01, f);
    assert_int_equal(fclose(f), 0);
}

/* A damaged record followed by others, or in a segment that is not the last: PSREC_ECORRUPT with file and
 * offset; open refuses it too and leaves the file alone. Damage in the last record's payload is a torn tail. */
static void test_corrupt(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    const char *dir = sub("bad");
    psrec_rng_t r;
    psrec_rng_seed(&r, 4, 4);
    rec_t x[4] = {mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 2), mkrec(&r, PSREC_LOGREC_SET, 1, 2, 5),
                  mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 3), mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 1)};
    int64_t at[4];
    const rec_t *w[] = {&x[0], &x[1], &x[2], &x[3]};
    /* middle record: header fields (type, n, seq), payload, checksum */
    const int64_t rel[] = {4, 40, 33, 64, 64 + 5 * 8 + 3, 64 + 5 * 8 + 5 * 2 * 4 + 2};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        three_records(dir, x, at);
        flip(seg(dir, 0, 7), at[1] + rel[i]);
        uint64_t n = 0;
        err[0] = 0;
        assert_int_equal(psrec_pushlog_replay(dir, 0, 0, NULL, NULL, &n, err), PSREC_ECORRUPT);
        char want[64];
        snprintf(want, sizeof want, "offset %lld", (long long)at[1]);
        if (!strstr(err, want) || !strstr(err, "pushlog-0-000007.log")) fail_msg("message: %s", err);
        assert_int_equal(n, 1);
        size_t before, after;
        unsigned char *a = slurp(seg(dir, 0, 7), &before);
        psrec_pushlog_t *l = (psrec_pushlog_t *)1;
        assert_int_equal(psrec_pushlog_open(&l, dir, 0, 7, err), PSREC_ECORRUPT);
        assert_null(l);
        unsigned char *b = slurp(seg(dir, 0, 7), &after);
        assert_int_equal(before, after);
        assert_memory_equal(a, b, before);
        free(a), free(b);
    }
    /* the last record: payload damage = torn tail (never acknowledged); header damage = corrupt */
    three_records(dir, x, at);
    flip(seg(dir, 0, 7), at[2] + 64 + 10);
    expect_replay(dir, 0, 0, w, 2);
    three_records(dir, x, at);
    flip(seg(dir, 0, 7), at[2] + 12);
    assert_int_equal(psrec_pushlog_replay(dir, 0, 0, NULL, NULL, NULL, err), PSREC_ECORRUPT);
    /* the file header */
    three_records(dir, x, at);
    flip(seg(dir, 0, 7), 9); /* rank */
    assert_int_equal(psrec_pushlog_replay(dir, 0, 0, NULL, NULL, NULL, err), PSREC_ECORRUPT);
    three_records(dir, x, at);
    flip(seg(dir, 0, 7), 7); /* version */
    assert_int_equal(psrec_pushlog_replay(dir, 0, 0, NULL, NULL, NULL, err), PSREC_EVERSION);
    /* a segment that is not the last: any bad record, torn or not */
    for (int k = 0; k < 2; k++) {
        three_records(dir, x, at);
        psrec_pushlog_t *l;
        assert_int_equal(psrec_pushlog_open(&l, dir, 0, 8, err), PSREC_OK);
        append(l, &x[3]);
        commit(l);
        psrec_pushlog_close(&l);
        expect_replay(dir, 0, 0, w, 4);
        if (k == 0)
            flip(seg(dir, 0, 7), at[2] + 64 + 10);
        else
            assert_int_equal(truncate(seg(dir, 0, 7), at[3] - 1), 0);
        err[0] = 0;
        assert_int_equal(psrec_pushlog_replay(dir, 0, 0, NULL, NULL, NULL, err), PSREC_ECORRUPT);
        assert_non_null(strstr(err, "pushlog-0-000007.log"));
        assert_non_null(strstr(err, "not the last"));
        const rec_t *w4[] = {&x[3]};
        expect_replay(dir, 0, 8, w4, 1); /* from the later segment on, all is well */
        assert_int_equal(psrec_pushlog_open(&l, dir, 0, 8, err), PSREC_OK);
        psrec_pushlog_close(&l);
    }
    for (int i = 0; i < 4; i++)
        freerec(&x[i]);
}

/* A last record whose header (with a right header checksum) claims an absurd size is a torn tail: no
 * huge allocation, the records before it replay. */
static void test_absurd_length(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    const char *dir = sub("absurd");
    psrec_rng_t r;
    psrec_rng_seed(&r, 5, 5);
    rec_t x[3] = {mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 2), mkrec(&r, PSREC_LOGREC_SET, 1, 2, 5),
                  mkrec(&r, PSREC_LOGREC_PUSH, 0, 4, 3)};
    int64_t at[4];
    three_records(dir, x, at);
    size_t n;
    unsigned char *img = slurp(seg(dir, 0, 7), &n);
    unsigned char *h = img + at[2];
    uint64_t nkeys = 100000000, payload = nkeys * (8 + 4 * 4); /* 2.4 GB > MAX; then 1.9 GB */
    for (int k = 0; k < 2; k++) {
        if (k == 1) nkeys = 79000000, payload = nkeys * 24;
        memcpy(h + 40, &nkeys, 8);
        memcpy(h + 48, &payload, 8);
        uint32_t hs = (uint32_t)XXH64(h, 56, 0);
        memcpy(h + 56, &hs, 4);
        spit(seg(dir, 0, 7), img, n);
        const rec_t *w[] = {&x[0], &x[1]};
        if (k == 1) {
            expect_replay(dir, 0, 0, w, 2); /* valid header, record past the end: torn */
        } else {                            /* over the limit: a bad header followed by data */
            assert_int_equal(psrec_pushlog_replay(dir, 0, 0, NULL, NULL, NULL, err), PSREC_ECORRUPT);
        }
    }
    free(img);
    for (int i = 0; i < 3; i++)
        freerec(&x[i]);
}

static void test_rotate_prune_discard(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    const char *dir = sub("rot");
    psrec_rng_t r;
    psrec_rng_seed(&r, 6, 6);
    rec_t x[5];
    for (int i = 0; i < 5; i++)
        x[i] = mkrec(&r, PSREC_LOGREC_PUSH, 0, 2, (size_t)i + 1);
    psrec_pushlog_t *l, *other;
    assert_int_equal(psrec_pushlog_open(&l, dir, 2, 1, err), PSREC_OK);
    assert_int_equal(psrec_pushlog_open(&other, dir, 12, 1, err), PSREC_OK); /* rank 12: untouched below */
    append(other, &x[0]);
    commit(other);
    psrec_pushlog_close(&other);
    append(l, &x[0]);
    commit(l);
    append(l, &x[1]);                                            /* pending: rotate commits it */
    assert_int_equal(psrec_pushlog_rotate(l, 2, err), PSREC_OK); /* into segment 1 */
    append(l, &x[2]);
    assert_int_equal(psrec_pushlog_rotate(l, 3, err), PSREC_OK);
    append(l, &x[3]), append(l, &x[4]);
    commit(l);
    psrec_pushlog_stats_t s;
    psrec_pushlog_stats(l, &s);
    assert_int_equal(s.records, 5);
    assert_int_equal(s.commits, 4); /* commit, two rotates with pending records, commit */
    psrec_pushlog_close(&l);
    const rec_t *w[] = {&x[0], &x[1], &x[2], &x[3], &x[4]};
    expect_replay(dir, 2, 0, w, 5);
    expect_replay(dir, 2, 2, w + 2, 3);
    expect_replay(dir, 2, 3, w + 3, 2);
    assert_true(fsize(seg(dir, 2, 1)) > 0);
    assert_int_equal(psrec_pushlog_prune(dir, 2, 3, err), PSREC_OK);
    assert_int_equal(fsize(seg(dir, 2, 1)), -1);
    assert_int_equal(fsize(seg(dir, 2, 2)), -1);
    expect_replay(dir, 2, 0, w + 3, 2);
    int64_t sz3 = fsize(seg(dir, 2, 3));
    assert_int_equal(psrec_pushlog_discard(dir, 2, 3, err), PSREC_OK);
    assert_int_equal(fsize(seg(dir, 2, 3)), -1);
    char aside[700];
    snprintf(aside, sizeof aside, "%s.discarded", seg(dir, 2, 3));
    assert_int_equal(fsize(aside), sz3);
    expect_replay(dir, 2, 0, w, 0);
    const rec_t *wo[] = {&x[0]};
    expect_replay(dir, 12, 0, wo, 1);
    assert_int_equal(psrec_pushlog_prune(dir, 2, 100, err), PSREC_OK); /* nothing left: fine */
    assert_int_equal(psrec_pushlog_prune(sub("none"), 2, 100, err), PSREC_OK);
    for (int i = 0; i < 5; i++)
        freerec(&x[i]);
}

/* ---- recovery: snapshot + log reproduce the store ---- */

static psrec_err apply(const psrec_logrec_t *r, void *ctx, char *err)
{
    psrec_store_t *s = ctx;
    psrec_err rc = r->type == PSREC_LOGREC_PUSH ? psrec_store_push(s, r->table, r->keys, r->n, r->vals)
                                                : psrec_store_set(s, r->table, r->keys, r->n, r->vals);
    return rc ? psrec_fail(err, rc, "apply: %s", psrec_errname(rc)) : PSREC_OK;
}

typedef struct {
    uint64_t *keys;
    float *rows;
    size_t n, cap;
} img_t;

static void grab(uint64_t key, const float *row, uint32_t width, void *ctx)
{
    img_t *m = ctx;
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->keys = realloc(m->keys, m->cap * sizeof *m->keys);
        m->rows = realloc(m->rows, m->cap * width * sizeof(float));
    }
    m->keys[m->n] = key;
    memcpy(m->rows + m->n * width, row, width * sizeof(float));
    m->n++;
}

/* Same rows, bit for bit (looked up key by key through the other store's image). */
static void assert_same(psrec_store_t *a, psrec_store_t *b, uint32_t table)
{
    uint32_t w = psrec_store_row_width(a, table);
    assert_int_equal(w, psrec_store_row_width(b, table));
    img_t ia = {0}, ib = {0};
    psrec_store_foreach_raw(a, table, grab, &ia);
    psrec_store_foreach_raw(b, table, grab, &ib);
    assert_int_equal(ia.n, ib.n);
    for (size_t i = 0; i < ia.n; i++) {
        size_t j = 0;
        while (j < ib.n && ib.keys[j] != ia.keys[i])
            j++;
        assert_true(j < ib.n);
        assert_memory_equal(ia.rows + i * w, ib.rows + j * w, w * sizeof(float));
    }
    free(ia.keys), free(ia.rows), free(ib.keys), free(ib.rows);
}

static psrec_store_t *mkstore(void)
{
    char err[PSREC_ERRBUF];
    psrec_store_t *s;
    assert_int_equal(psrec_store_new(&s, 11, 4), PSREC_OK);
    psrec_table_conf_t ca = {
        .dim = 4, .opt = {.kind = PSREC_OPT_ADAM, .lr = 0.01f}, .init = PSREC_INIT_NORMAL, .init_scale = 0.1f};
    psrec_table_conf_t cb = {
        .dim = 2, .opt = {.kind = PSREC_OPT_ADAGRAD, .lr = 0.1f}, .init = PSREC_INIT_UNIFORM, .init_scale = 0.3f};
    assert_int_equal(psrec_store_add_table(s, 0, &ca, err), PSREC_OK);
    assert_int_equal(psrec_store_add_table(s, 1, &cb, err), PSREC_OK);
    return s;
}

static void test_recovery(void **st)
{
    (void)st;
    enum { OPS = 300, KEYS = 60 };
    char err[PSREC_ERRBUF];
    const char *dir = sub("recov"), *snap = sub("recov.snap");
    psrec_store_t *live = mkstore();
    psrec_pushlog_t *l;
    assert_int_equal(psrec_pushlog_open(&l, dir, 0, 1, err), PSREC_OK);
    psrec_rng_t r;
    psrec_rng_seed(&r, 7, 7);
    for (int op = 0; op < OPS; op++) {
        if (op == OPS / 2) { /* a checkpoint round: snapshot, then a new segment */
            commit(l);
            psrec_snapshot_meta_t m = {.round = 1};
            assert_int_equal(psrec_snapshot_write(snap, live, &m, NULL, 0, NULL, err), PSREC_OK);
            assert_int_equal(psrec_pushlog_rotate(l, 2, err), PSREC_OK);
        }
        uint32_t table = (uint32_t)psrec_rng_below(&r, 2), dim = table ? 2 : 4;
        rec_t x = mkrec(&r, psrec_rng_below(&r, 5) ? PSREC_LOGREC_PUSH : PSREC_LOGREC_SET, table, dim,
                        1 + psrec_rng_below(&r, 20));
        for (size_t i = 0; i < x.n; i++) /* unique keys from a small set: rows are touched many times */
            x.keys[i] = ((uint64_t)psrec_rng_below(&r, 3) * 20 + i) * 0x9e3779b97f4a7c15ULL;
        psrec_logrec_t v = view(&x);
        assert_int_equal(apply(&v, live, err), PSREC_OK);
        append(l, &x);
        if (psrec_rng_below(&r, 4) == 0) commit(l);
        freerec(&x);
    }
    commit(l);
    psrec_pushlog_close(&l);
    /* the whole log onto an empty store */
    psrec_store_t *a = mkstore();
    uint64_t n;
    assert_int_equal(psrec_pushlog_replay(dir, 0, 0, apply, a, &n, err), PSREC_OK);
    assert_int_equal(n, OPS);
    assert_same(live, a, 0), assert_same(live, a, 1);
    /* the snapshot plus the log since its round */
    psrec_store_t *b = mkstore();
    assert_int_equal(psrec_snapshot_load(snap, b, NULL, NULL, NULL, NULL, NULL, err), PSREC_OK);
    assert_int_equal(psrec_pushlog_replay(dir, 0, 2, apply, b, &n, err), PSREC_OK);
    assert_int_equal(n, OPS - OPS / 2);
    assert_same(live, b, 0), assert_same(live, b, 1);
    psrec_store_destroy(&live), psrec_store_destroy(&a), psrec_store_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_sealed_batches),
        cmocka_unit_test(test_replay_fn_error),
        cmocka_unit_test(test_torn_tail),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_absurd_length),
        cmocka_unit_test(test_rotate_prune_discard),
        cmocka_unit_test(test_recovery),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

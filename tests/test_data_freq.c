/* test_data_freq.c: the item frequency counter and its durable file (common/data_freq.h): the
 * version 2 layout byte for byte, mapped loads, dense catalogues, version 1 compatibility, corrupt
 * files refused, and the streamed dense catalogue of `prep --catalogue`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/data_freq.h"
#include "common/durable.h"
#include "common/rng.h"

#define tmpdir psrec_test_tmp

static int setup_dir(void **state)
{
    (void)state;
    return psrec_test_mktmp("freq");
}

static int teardown_dir(void **state)
{
    (void)state;
    return psrec_test_rmtmp();
}

#define UNIVERSE 64
/* ids used by the test: small numbers, 0, and the extremes (UINT64_MAX is the idmap's sentinel) */
static uint64_t uid(int k)
{
    if (k == UNIVERSE - 1) return UINT64_MAX;
    if (k == UNIVERSE - 2) return 1ULL << 63;
    return (uint64_t)k * 3;
}

static void test_counter(void **state)
{
    (void)state;
    psrec_freq_counter_t *c;
    assert_int_equal(psrec_freq_counter_new(&c), PSREC_OK);
    uint64_t ref[UNIVERSE] = {0};
    int seen[UNIVERSE] = {0};
    psrec_rng_t r;
    psrec_rng_seed(&r, 11, 0);
    psrec_batch_t b;
    psrec_batch_init(&b, 2); /* slot 1 is the history */
    for (int round = 0; round < 5; round++) {
        psrec_batch_clear(&b);
        for (int i = 0; i < 200; i++) {
            assert_int_equal(psrec_batch_begin(&b), PSREC_OK);
            int np = (int)psrec_rng_below(&r, 4);
            for (int k = 0; k < np; k++) {
                int id = (int)psrec_rng_below(&r, UNIVERSE / 2) + UNIVERSE / 2; /* upper half */
                assert_int_equal(psrec_batch_add_pos(&b, uid(id), 1.0f), PSREC_OK);
                ref[id]++;
                seen[id] = 1;
            }
            int nh = (int)psrec_rng_below(&r, 5);
            for (int k = 0; k < nh; k++) {
                int id = (int)psrec_rng_below(&r, UNIVERSE); /* lower half: seen only in histories */
                assert_int_equal(psrec_batch_add_slot(&b, 1, uid(id)), PSREC_OK);
                seen[id] = 1;
                assert_int_equal(psrec_batch_add_slot(&b, 0, 1000000 + (uint64_t)k), PSREC_OK); /* not items */
            }
            psrec_batch_end(&b);
        }
        assert_int_equal(psrec_freq_counter_add(c, &b, 1), PSREC_OK);
    }
    assert_int_equal(psrec_freq_counter_add(c, &b, 2), PSREC_EINVAL);
    assert_int_equal(psrec_freq_counter_touch(c, 5000, 0), PSREC_OK); /* a catalogue item never seen */
    assert_int_equal(psrec_freq_counter_touch(c, uid(40), 7), PSREC_OK);
    ref[40] += 7;
    seen[40] = 1;
    psrec_freq_t f;
    assert_int_equal(psrec_freq_counter_result(c, &f), PSREC_OK);
    /* expected: every seen id plus 5000, ascending, with its count */
    size_t want = 1;
    for (int k = 0; k < UNIVERSE; k++)
        want += (size_t)seen[k];
    assert_int_equal(f.n, want);
    for (size_t i = 1; i < f.n; i++)
        assert_true(f.ids[i - 1] < f.ids[i]);
    for (size_t i = 0; i < f.n; i++) {
        int k = -1;
        for (int j = 0; j < UNIVERSE; j++)
            if (uid(j) == f.ids[i]) k = j;
        if (k < 0) {
            assert_true(f.ids[i] == 5000);
            assert_true(f.counts[i] == 0);
        } else {
            assert_true(seen[k]);
            assert_true(f.counts[i] == ref[k]);
        }
    }
    assert_true(f.ids[f.n - 1] == UINT64_MAX);
    psrec_freq_free(&f);
    assert_null(f.ids);
    psrec_freq_counter_destroy(&c);
    assert_null(c);
    psrec_freq_counter_destroy(&c);
    psrec_batch_free(&b);
}

static void write_raw_durable(const char *path, const void *p, size_t len)
{
    char err[PSREC_ERRBUF];
    psrec_dfile_t *d;
    assert_int_equal(psrec_dfile_open(&d, path, err), PSREC_OK);
    assert_int_equal(psrec_dfile_write(d, p, len, err), PSREC_OK);
    assert_int_equal(psrec_dfile_commit(&d, err), PSREC_OK);
}

static void le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void write_raw_file(const char *path, const void *p, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, len, fp), len);
    fclose(fp);
}

static size_t read_file(const char *path, unsigned char *buf, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t len = fread(buf, 1, cap, fp);
    fclose(fp);
    return len;
}

/* ids and counts of a loaded version-2 file point into its mapping */
static void assert_mapped(const psrec_freq_t *g)
{
    assert_non_null(g->map);
    const unsigned char *m = g->map, *c = (const unsigned char *)g->counts;
    assert_true(c >= m && c + 8 * g->n <= m + g->map_len);
    if (g->ids) {
        const unsigned char *i = (const unsigned char *)g->ids;
        assert_true(i >= m && i + 8 * g->n <= m + g->map_len);
    }
}

static void test_save_load(void **state)
{
    (void)state;
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/freq.bin", tmpdir);
    uint64_t ids[] = {0, 5, 17, 1ULL << 63, UINT64_MAX};
    uint64_t counts[] = {3, 0, 1ULL << 40, 9, 1};
    const uint64_t total = 3 + (1ULL << 40) + 9 + 1;
    psrec_freq_t f = {.n = 5, .ids = ids, .counts = counts}, g, h;
    assert_int_equal(psrec_freq_save(&f, path, err), PSREC_OK);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.n, 5);
    assert_memory_equal(g.ids, ids, sizeof ids);
    assert_memory_equal(g.counts, counts, sizeof counts);
    assert_int_equal(g.dense, 0);
    assert_true(g.total == total);
    assert_mapped(&g);
    for (size_t i = 0; i < 5; i++)
        assert_true(psrec_freq_id(&g, i) == ids[i]);
    /* a second load maps the same file again (another process would share the page cache) */
    assert_int_equal(psrec_freq_load(&h, path, err), PSREC_OK);
    assert_mapped(&h);
    assert_ptr_not_equal(h.map, g.map);
    assert_memory_equal(h.counts, counts, sizeof counts);
    psrec_freq_free(&h);
    psrec_freq_free(&g);
    assert_null(g.map);
    assert_null(g.counts);

    /* the documented layout: magic, n, flags, total, the ids, the counts, all little-endian u64, then
     * the trailer */
    unsigned char buf[256];
    size_t len = read_file(path, buf, sizeof buf);
    assert_int_equal(len, 32 + 5 * 16 + 24);
    unsigned char want[32 + 5 * 16];
    memcpy(want, "PSRECFQ2", 8);
    le64(want + 8, 5);
    le64(want + 16, 0);
    le64(want + 24, total);
    for (int i = 0; i < 5; i++) {
        le64(want + 32 + 8 * i, ids[i]);
        le64(want + 32 + 40 + 8 * i, counts[i]);
    }
    assert_memory_equal(buf, want, sizeof want);

    /* a flipped byte anywhere is refused */
    char bad[140];
    snprintf(bad, sizeof bad, "%s/bad.bin", tmpdir);
    for (size_t at = 0; at < len; at += 7) {
        unsigned char c[256];
        memcpy(c, buf, len);
        c[at] ^= 0x01;
        write_raw_file(bad, c, len);
        g.n = 99;
        err[0] = 0;
        assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
        assert_null(g.ids);
        assert_null(g.map);
        assert_int_equal(g.n, 0);
        assert_non_null(strstr(err, bad)); /* the message names the file */
    }
    /* truncated */
    write_raw_file(bad, buf, len - 30);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    /* valid durable files with bad content */
    write_raw_durable(bad, "PSRECXX1\0\0\0\0\0\0\0\0", 16);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    unsigned char lie[sizeof want];
    memcpy(lie, want, sizeof want);
    le64(lie + 8, 1ULL << 60); /* declares far more entries than present */
    write_raw_durable(bad, lie, sizeof lie);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    le64(lie + 8, 4); /* fewer */
    write_raw_durable(bad, lie, sizeof lie);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    memcpy(lie, want, sizeof want);
    le64(lie + 24, total + 1); /* counts do not sum to total */
    write_raw_durable(bad, lie, sizeof lie);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    memcpy(lie, want, sizeof want);
    le64(lie + 32 + 8, 0); /* ids 0, 0: not ascending */
    write_raw_durable(bad, lie, sizeof lie);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    memcpy(lie, want, sizeof want);
    le64(lie + 16, 2); /* a flag this version does not know */
    write_raw_durable(bad, lie, sizeof lie);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_EVERSION);
    /* missing */
    snprintf(bad, sizeof bad, "%s/none.bin", tmpdir);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ENOTFOUND);
    /* saving unsorted ids is a caller bug reported as EINVAL, and nothing is written */
    uint64_t uids[] = {4, 2};
    psrec_freq_t u = {.n = 2, .ids = uids, .counts = counts};
    assert_int_equal(psrec_freq_save(&u, bad, err), PSREC_EINVAL);
    assert_int_not_equal(access(bad, F_OK), 0);
    psrec_freq_t noids = {.n = 2, .counts = counts}; /* no ids and not dense */
    assert_int_equal(psrec_freq_save(&noids, bad, err), PSREC_EINVAL);
    assert_int_not_equal(access(bad, F_OK), 0);
    /* empty catalogue */
    psrec_freq_t e = {.n = 0};
    assert_int_equal(psrec_freq_save(&e, path, err), PSREC_OK);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.n, 0);
    psrec_freq_free(&g);
}

/* Dense catalogues: no ids on disk, ids 0..n-1 through psrec_freq_id; a sparse file whose ids are
 * 0..n-1 loads as dense too (with its ids). */
static void test_dense(void **state)
{
    (void)state;
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/dense.bin", tmpdir);
    uint64_t counts[] = {4, 0, 0, 7, 1ULL << 50};
    const uint64_t total = 4 + 7 + (1ULL << 50);
    psrec_freq_t f = {.n = 5, .counts = counts, .dense = 1}, g;
    assert_int_equal(psrec_freq_save(&f, path, err), PSREC_OK);
    unsigned char buf[256], want[32 + 5 * 8];
    assert_int_equal(read_file(path, buf, sizeof buf), sizeof want + 24);
    memcpy(want, "PSRECFQ2", 8);
    le64(want + 8, 5);
    le64(want + 16, 1); /* DENSE */
    le64(want + 24, total);
    for (int i = 0; i < 5; i++)
        le64(want + 32 + 8 * i, counts[i]);
    assert_memory_equal(buf, want, sizeof want);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.n, 5);
    assert_int_equal(g.dense, 1);
    assert_null(g.ids);
    assert_true(g.total == total);
    assert_mapped(&g);
    assert_memory_equal(g.counts, counts, sizeof counts);
    for (size_t i = 0; i < 5; i++)
        assert_true(psrec_freq_id(&g, i) == i);
    psrec_freq_free(&g);
    /* a dense file declaring more entries than its counts */
    unsigned char lie[sizeof want];
    memcpy(lie, want, sizeof want);
    le64(lie + 8, 6);
    write_raw_durable(path, lie, sizeof lie);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_ECORRUPT);

    uint64_t ids[] = {0, 1, 2, 3, 4};
    psrec_freq_t s = {.n = 5, .ids = ids, .counts = counts};
    assert_int_equal(psrec_freq_save(&s, path, err), PSREC_OK);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.dense, 1);
    assert_non_null(g.ids); /* ids on disk are kept */
    assert_memory_equal(g.ids, ids, sizeof ids);
    psrec_freq_free(&g);
    ids[0] = 1; /* 1..5: not dense */
    for (int i = 1; i < 5; i++)
        ids[i] = (uint64_t)i + 1;
    assert_int_equal(psrec_freq_save(&s, path, err), PSREC_OK);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.dense, 0);
    psrec_freq_free(&g);
}

/* Version 1 files (interleaved pairs) still load, copied into memory, with the same checks. */
static void test_v1(void **state)
{
    (void)state;
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/v1.bin", tmpdir);
    const uint64_t ids[] = {2, 9, 1ULL << 63}, counts[] = {5, 0, 11};
    unsigned char v1[16 + 3 * 16];
    memcpy(v1, "PSRECFQ1", 8);
    le64(v1 + 8, 3);
    for (int i = 0; i < 3; i++) {
        le64(v1 + 16 + 16 * i, ids[i]);
        le64(v1 + 24 + 16 * i, counts[i]);
    }
    write_raw_durable(path, v1, sizeof v1);
    psrec_freq_t g;
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.n, 3);
    assert_null(g.map); /* malloc'ed */
    assert_memory_equal(g.ids, ids, sizeof ids);
    assert_memory_equal(g.counts, counts, sizeof counts);
    assert_true(g.total == 16);
    assert_int_equal(g.dense, 0);
    psrec_freq_free(&g);
    /* re-saved as version 2, the same catalogue */
    psrec_freq_t f = {.n = 3, .ids = (uint64_t *)ids, .counts = (uint64_t *)counts};
    assert_int_equal(psrec_freq_save(&f, path, err), PSREC_OK);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_memory_equal(g.ids, ids, sizeof ids);
    assert_memory_equal(g.counts, counts, sizeof counts);
    psrec_freq_free(&g);
    /* corrupt version 1 */
    unsigned char bad[sizeof v1];
    memcpy(bad, v1, sizeof v1);
    le64(bad + 8, 1ULL << 60);
    write_raw_durable(path, bad, sizeof bad);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_ECORRUPT);
    memcpy(bad, v1, sizeof v1);
    le64(bad + 32, 2); /* repeated id */
    write_raw_durable(path, bad, sizeof bad);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_ECORRUPT);
    assert_null(g.ids);
    write_raw_durable(path, v1, sizeof v1 - 3);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_ECORRUPT);
}

/* `prep --catalogue N`: the ids seen, written as the dense catalogue 0..N-1 without an O(N) table;
 * checked against a naive dense array. */
static void test_save_dense(void **state)
{
    (void)state;
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/cat.bin", tmpdir);
    enum { N = 100003 }; /* spans several write buffers */
    uint64_t *want = calloc(N, sizeof *want);
    assert_non_null(want);
    psrec_freq_counter_t *c;
    assert_int_equal(psrec_freq_counter_new(&c), PSREC_OK);
    psrec_rng_t r;
    psrec_rng_seed(&r, 21, 0);
    for (int k = 0; k < 5000; k++) {
        uint64_t id = psrec_rng_below(&r, N), add = psrec_rng_below(&r, 3);
        assert_int_equal(psrec_freq_counter_touch(c, id, add), PSREC_OK);
        want[id] += add;
    }
    assert_int_equal(psrec_freq_counter_touch(c, N - 1, 2), PSREC_OK); /* the last id */
    want[N - 1] += 2;
    psrec_freq_t seen, g;
    assert_int_equal(psrec_freq_counter_result(c, &seen), PSREC_OK);
    assert_true(seen.n < N);
    assert_int_equal(psrec_freq_save_dense(&seen, N, path, err), PSREC_OK);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.n, N);
    assert_int_equal(g.dense, 1);
    assert_null(g.ids);
    assert_memory_equal(g.counts, want, N * sizeof *want);
    uint64_t total = 0;
    for (size_t i = 0; i < N; i++)
        total += want[i];
    assert_true(g.total == total);
    psrec_freq_free(&g);
    /* an id at or past N: refused, naming the smallest such id, nothing written */
    assert_int_equal(psrec_freq_counter_touch(c, N + 5, 1), PSREC_OK);
    assert_int_equal(psrec_freq_counter_touch(c, N, 0), PSREC_OK);
    psrec_freq_free(&seen);
    assert_int_equal(psrec_freq_counter_result(c, &seen), PSREC_OK);
    snprintf(path, sizeof path, "%s/cat2.bin", tmpdir);
    err[0] = 0;
    assert_int_equal(psrec_freq_save_dense(&seen, N, path, err), PSREC_EINVAL);
    char id[32];
    snprintf(id, sizeof id, "id %d ", N);
    assert_non_null(strstr(err, id));
    assert_int_not_equal(access(path, F_OK), 0);
    /* with N large enough it is fine */
    assert_int_equal(psrec_freq_save_dense(&seen, N + 6, path, err), PSREC_OK);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.n, N + 6);
    assert_true(g.counts[N + 5] == 1 && g.counts[N] == 0 && g.counts[N + 4] == 0);
    psrec_freq_free(&g);
    psrec_freq_free(&seen);
    psrec_freq_counter_destroy(&c);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter), cmocka_unit_test(test_save_load),  cmocka_unit_test(test_dense),
        cmocka_unit_test(test_v1),      cmocka_unit_test(test_save_dense),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

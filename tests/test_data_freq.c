/* test_data_freq.c: the item frequency counter and its durable file (common/data_freq.h). */
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

static void test_save_load(void **state)
{
    (void)state;
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/freq.bin", tmpdir);
    uint64_t ids[] = {0, 5, 17, 1ULL << 63, UINT64_MAX};
    uint64_t counts[] = {3, 0, 1ULL << 40, 9, 1};
    psrec_freq_t f = {5, ids, counts}, g;
    assert_int_equal(psrec_freq_save(&f, path, err), PSREC_OK);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.n, 5);
    assert_memory_equal(g.ids, ids, sizeof ids);
    assert_memory_equal(g.counts, counts, sizeof counts);
    psrec_freq_free(&g);

    /* the documented layout: magic, n, (id, count) pairs, all little-endian, then the trailer */
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char buf[256];
    size_t len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_int_equal(len, 16 + 5 * 16 + 24);
    unsigned char want[16 + 5 * 16];
    memcpy(want, "PSRECFQ1", 8);
    le64(want + 8, 5);
    for (int i = 0; i < 5; i++) {
        le64(want + 16 + 16 * i, ids[i]);
        le64(want + 24 + 16 * i, counts[i]);
    }
    assert_memory_equal(buf, want, sizeof want);

    /* a flipped byte anywhere is refused */
    char bad[140];
    snprintf(bad, sizeof bad, "%s/bad.bin", tmpdir);
    for (size_t at = 0; at < len; at += 7) {
        unsigned char c[256];
        memcpy(c, buf, len);
        c[at] ^= 0x01;
        fp = fopen(bad, "wb");
        assert_int_equal(fwrite(c, 1, len, fp), len);
        fclose(fp);
        g.n = 99;
        assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
        assert_null(g.ids);
        assert_int_equal(g.n, 0);
    }
    /* truncated */
    fp = fopen(bad, "wb");
    assert_int_equal(fwrite(buf, 1, len - 30, fp), len - 30);
    fclose(fp);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    /* valid durable files with bad content */
    write_raw_durable(bad, "PSRECXX1\0\0\0\0\0\0\0\0", 16);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    unsigned char lie[16 + 16];
    memcpy(lie, want, 32);
    le64(lie + 8, 1ULL << 60); /* declares far more entries than present */
    write_raw_durable(bad, lie, sizeof lie);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    unsigned char unsorted[16 + 32];
    memcpy(unsorted, "PSRECFQ1", 8);
    le64(unsorted + 8, 2);
    le64(unsorted + 16, 9);
    le64(unsorted + 24, 1);
    le64(unsorted + 32, 9); /* repeated id */
    le64(unsorted + 40, 1);
    write_raw_durable(bad, unsorted, sizeof unsorted);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ECORRUPT);
    /* missing */
    snprintf(bad, sizeof bad, "%s/none.bin", tmpdir);
    assert_int_equal(psrec_freq_load(&g, bad, err), PSREC_ENOTFOUND);
    /* saving unsorted ids is a caller bug reported as EINVAL, and nothing is written */
    uint64_t uids[] = {4, 2};
    psrec_freq_t u = {2, uids, counts};
    assert_int_equal(psrec_freq_save(&u, bad, err), PSREC_EINVAL);
    assert_int_not_equal(access(bad, F_OK), 0);
    /* empty catalogue */
    psrec_freq_t e = {0, NULL, NULL};
    assert_int_equal(psrec_freq_save(&e, path, err), PSREC_OK);
    assert_int_equal(psrec_freq_load(&g, path, err), PSREC_OK);
    assert_int_equal(g.n, 0);
    psrec_freq_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

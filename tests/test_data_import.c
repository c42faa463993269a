/* test_data_import.c: ratings import (common/data_import.h) on small handwritten files; the expected
 * outputs are worked out by hand from the rules in data_import.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/data_import.h"
#include "common/data_text.h"

#define tmpdir psrec_test_tmp

static int setup_dir(void **state)
{
    (void)state;
    return psrec_test_mktmp("import");
}

static int teardown_dir(void **state)
{
    (void)state;
    return psrec_test_rmtmp();
}

static const char *in_file(const char *name, const char *text)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    return p;
}

static void assert_file(const char *dir, const char *name, const char *want)
{
    char p[512], got[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    got[n] = '\0';
    if (strcmp(got, want) != 0) fail_msg("%s:\n--- got\n%s--- want\n%s", name, got, want);
}

static const char *out_dir(const char *name)
{
    static char d[256];
    snprintf(d, sizeof d, "%s/%s", tmpdir, name);
    return d;
}

static void test_dcolon(void **state)
{
    (void)state;
    const char *in = in_file("ratings.dat", "1::10::5::978300760\n"
                                            "1::20::3::978300100\n"
                                            "1::30::4::978300500\n"
                                            "2::10::4::100\n"
                                            "2::40::2::50\n"
                                            "3::50::5::1\n");
    char err[PSREC_ERRBUF];
    psrec_import_conf_t c = {0};
    const char *d = out_dir("dcolon");
    assert_int_equal(psrec_import_ratings(in, d, &c, err), PSREC_OK);
    /* user 1 by time: 20, 30, 10; user 2: 40, 10; user 3 has a single interaction */
    assert_file(d, "train.txt", "pos=30 hist=20\n");
    assert_file(d, "test.txt", "pos=10 hist=20,30\npos=10 hist=40\n");
    assert_int_equal(c.n_users, 3);
    assert_int_equal(c.n_train, 1);
    assert_int_equal(c.n_test, 2);
    assert_int_equal(c.skipped, 0);

    /* min_rating drops user 2's rating of 2: user 2 is left with one interaction */
    c = (psrec_import_conf_t){.min_rating = 3};
    d = out_dir("dcolon3");
    assert_int_equal(psrec_import_ratings(in, d, &c, err), PSREC_OK);
    assert_file(d, "train.txt", "pos=30 hist=20\n");
    assert_file(d, "test.txt", "pos=10 hist=20,30\n");
    assert_int_equal(c.n_users, 3);
    assert_int_equal(c.n_test, 1);
}

static void test_tab_time_order_and_max_hist(void **state)
{
    (void)state;
    /* u.data style; user 7 has a tie at t=10 (broken by item), lines out of time order */
    const char *in = in_file("u.data", "7\t5\t3\t10\n"
                                       "7\t3\t4\t10\n"
                                       "7\t9\t5\t5\n"
                                       "7\t1\t1\t20\n");
    char err[PSREC_ERRBUF];
    psrec_import_conf_t c = {0};
    const char *d = out_dir("tab");
    assert_int_equal(psrec_import_ratings(in, d, &c, err), PSREC_OK);
    /* order: 9 (t5), 3 (t10), 5 (t10), 1 (t20) */
    assert_file(d, "train.txt", "pos=3 hist=9\npos=5 hist=9,3\n");
    assert_file(d, "test.txt", "pos=1 hist=9,3,5\n");
    c = (psrec_import_conf_t){.max_hist = 2};
    d = out_dir("tab2");
    assert_int_equal(psrec_import_ratings(in, d, &c, err), PSREC_OK);
    assert_file(d, "train.txt", "pos=3 hist=9\npos=5 hist=9,3\n");
    assert_file(d, "test.txt", "pos=1 hist=3,5\n");

    /* the outputs are valid text examples */
    char p[512];
    snprintf(p, sizeof p, "%s/train.txt", d);
    psrec_schema_t s = {0};
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    psrec_text_opts_t o = {.require_pos = 1};
    psrec_text_reader_t *r;
    size_t got;
    assert_int_equal(psrec_text_open(&r, p, &s, &o, err), PSREC_OK);
    assert_int_equal(psrec_text_read(r, &b, 100, &got, err), PSREC_OK);
    assert_int_equal(got, 2);
    assert_int_equal(s.nslots, 1);
    assert_int_equal(psrec_schema_hist(&s), 0);
    assert_true(b.pos_id[1] == 5 && b.slot_id[0][1] == 9 && b.slot_id[0][2] == 3);
    psrec_text_close(&r);
    psrec_batch_free(&b);
}

static void test_csv(void **state)
{
    (void)state;
    /* header, CRLF, a blank line, fractional ratings, users in numeric (not text) order */
    const char *in = in_file("ratings.csv", "userId,movieId,rating,timestamp\r\n"
                                            "10,100,4.5,3\r\n"
                                            "10,200,0.5,1\r\n"
                                            "\r\n"
                                            "2,300,3.0,9\r\n"
                                            "2,100,5.0,8\r\n"
                                            "10,300,2.0,2\r\n");
    char err[PSREC_ERRBUF];
    psrec_import_conf_t c = {0};
    const char *d = out_dir("csv");
    assert_int_equal(psrec_import_ratings(in, d, &c, err), PSREC_OK);
    /* user 2: 100, 300; user 10: 200, 300, 100 */
    assert_file(d, "train.txt", "pos=300 hist=200\n");
    assert_file(d, "test.txt", "pos=300 hist=100\npos=100 hist=200,300\n");
    assert_int_equal(c.n_users, 2);
    c = (psrec_import_conf_t){.min_rating = 1.0};
    d = out_dir("csv1");
    assert_int_equal(psrec_import_ratings(in, d, &c, err), PSREC_OK);
    assert_file(d, "train.txt", "");
    assert_file(d, "test.txt", "pos=300 hist=100\npos=100 hist=300\n");
}

static void test_malformed(void **state)
{
    (void)state;
    char err[PSREC_ERRBUF], want[512], path[256];
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"1::2::5::4\n1::2::5\n", "2: expected 4 fields: user, item, rating, timestamp (1::2::5)"},
        {"1::2::5::4\n\n1::2::x::4\n", "3: bad rating (x)"},
        {"1::2::5::4\n1::2::nan::4\n", "2: bad rating (nan)"},
        {"1::2::5::4\n1::::5::4\n", "2: bad item id ()"},
        {"1::2::5::4\n1::99999999999999999999::5::4\n", "2: bad item id (99999999999999999999)"},
        {"1::2::5::4\n1::2::5::4x\n", "2: bad timestamp (4x)"},
        {"1\t2\t5\t4\n1\t2\t5\t4\t7\n", "2: expected 4 fields: user, item, rating, timestamp (1\t2\t5\t4\t7)"},
        {"u,i,r,t\n1,2,5,4\n1,2,5\n", "3: expected 4 fields: user, item, rating, timestamp (1,2,5)"},
        {"hello\n", "1: unrecognised ratings format (want user::item::rating::time, tab-separated or CSV) (hello)"},
    };
    psrec_import_conf_t c = {0};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *in = in_file("bad.txt", cases[k].text);
        strcpy(path, in);
        assert_int_equal(psrec_import_ratings(path, out_dir("bad"), &c, err), PSREC_EPARSE);
        snprintf(want, sizeof want, "%s:%s", path, cases[k].msg);
        assert_string_equal(err, want);
    }
    assert_int_not_equal(access(out_dir("bad"), F_OK), 0); /* nothing written on failure */

    /* skip_bad: malformed lines are counted and skipped, the rest imported */
    const char *in = in_file("skip.txt", "1::2::5::4\n1::2::x::5\n1::3::5::6\nbroken\n");
    c = (psrec_import_conf_t){.skip_bad = 1};
    const char *d = out_dir("skip");
    assert_int_equal(psrec_import_ratings(in, d, &c, err), PSREC_OK);
    assert_int_equal(c.skipped, 2);
    assert_file(d, "test.txt", "pos=3 hist=2\n");

    snprintf(path, sizeof path, "%s/none.dat", tmpdir);
    assert_int_equal(psrec_import_ratings(path, out_dir("none"), &c, err), PSREC_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dcolon),
        cmocka_unit_test(test_tab_time_order_and_max_hist),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

/* test_data_gen.c: the synthetic data generator (common/data_gen.h). Expectations come from the
 * spec in data_gen.h (Zipf pmf computed directly, leak arithmetic), never from the generator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/data_gen.h"
#include "common/data_text.h"

#define tmpdir psrec_test_tmp

static int setup_dir(void **state)
{
    (void)state;
    return psrec_test_mktmp("gen");
}

static int teardown_dir(void **state)
{
    (void)state;
    return psrec_test_rmtmp();
}

static char *path_in(const char *dir, const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void gen(const psrec_gen_conf_t *c, const char *sub, char *dir)
{
    char err[PSREC_ERRBUF];
    snprintf(dir, 200, "%s/%s", tmpdir, sub);
    if (psrec_gen_write(c, dir, err) != PSREC_OK) fail_msg("gen: %s", err);
}

/* Reads a whole text file through data_text; the schema starts empty. */
static void read_text(const char *path, psrec_schema_t *s, psrec_batch_t *b)
{
    char err[PSREC_ERRBUF];
    memset(s, 0, sizeof *s);
    psrec_batch_init(b, 0);
    psrec_text_opts_t o = {.require_pos = 1};
    psrec_text_reader_t *r;
    assert_int_equal(psrec_text_open(&r, path, s, &o, err), PSREC_OK);
    size_t got;
    do {
        if (psrec_text_read(r, b, 100000, &got, err) != PSREC_OK) fail_msg("%s", err);
    } while (got > 0);
    psrec_text_close(&r);
}

static int same_file(const char *a, const char *b)
{
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    assert_non_null(x);
    assert_non_null(y);
    int same = 1, cx, cy;
    do {
        cx = fgetc(x);
        cy = fgetc(y);
        if (cx != cy) same = 0;
    } while (same && cx != EOF);
    fclose(x);
    fclose(y);
    return same;
}

static psrec_gen_conf_t small_conf(void)
{
    psrec_gen_conf_t c;
    psrec_gen_defaults(&c);
    c.n_items = 300;
    c.n_categories = 7;
    c.n_train_users = 1500;
    c.n_test_users = 300;
    return c;
}

static void test_defaults(void **state)
{
    (void)state;
    psrec_gen_conf_t c;
    memset(&c, 0x5a, sizeof c);
    psrec_gen_defaults(&c);
    assert_int_equal(c.n_items, 2000);
    assert_int_equal(c.n_categories, 10);
    assert_int_equal(c.n_train_users, 20000);
    assert_int_equal(c.n_test_users, 2000);
    assert_true(c.zipf_s == 1.0);
    assert_int_equal(c.min_hist, 3);
    assert_int_equal(c.max_hist, 20);
    assert_int_equal(c.max_pos, 3);
    assert_true(c.leak_rate == 0.02 && c.p_two_homes == 0.3 && c.region_signal == 0.7);
    assert_int_equal(c.seed, 1);
}

static void test_deterministic_and_parses(void **state)
{
    (void)state;
    psrec_gen_conf_t c = small_conf();
    char d1[256], d2[256], d3[256], err[PSREC_ERRBUF];
    gen(&c, "a", d1);
    gen(&c, "b", d2);
    c.seed = 2;
    gen(&c, "c", d3);
    c.seed = 1;
    const char *files[] = {"train.txt", "test.txt", "items.tsv"};
    for (int k = 0; k < 3; k++)
        assert_true(same_file(path_in(d1, files[k]), path_in(d2, files[k])));
    assert_false(same_file(path_in(d1, "train.txt"), path_in(d3, "train.txt")));
    assert_false(same_file(path_in(d1, "test.txt"), path_in(d3, "test.txt")));
    assert_false(same_file(path_in(d1, "train.txt"), path_in(d1, "test.txt")));
    assert_int_not_equal(access(path_in(d1, "train.txt.tmp"), F_OK), 0);

    /* items.tsv */
    uint64_t *ids;
    int32_t *cats;
    size_t n;
    assert_int_equal(psrec_items_load(path_in(d1, "items.tsv"), &ids, &cats, &n, err), PSREC_OK);
    assert_int_equal(n, c.n_items);
    for (size_t j = 0; j < n; j++) {
        assert_true(ids[j] == j);
        assert_int_equal(cats[j], (int32_t)(j % c.n_categories));
    }
    free(ids);
    free(cats);

    /* line shapes: `pos=.. hist=.. region=..` (+ ` _home=..` in test) */
    FILE *f = fopen(path_in(d1, "test.txt"), "r");
    assert_non_null(f);
    char line[4096];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    char *h = strstr(line, " hist="), *r = strstr(line, " region="), *m = strstr(line, " _home=");
    assert_true(strncmp(line, "pos=", 4) == 0 && h && r && m && h < r && r < m);
    assert_true(strspn(line + 4, "0123456789,") == (size_t)(h - line - 4));

    /* both files parse with data_text; counts, lengths and ranges as configured */
    psrec_schema_t s;
    psrec_batch_t b;
    for (int t = 0; t < 2; t++) {
        read_text(path_in(d1, t ? "test.txt" : "train.txt"), &s, &b);
        assert_int_equal(b.n, t ? c.n_test_users : c.n_train_users);
        assert_int_equal(s.nslots, 2);
        int hs = psrec_schema_hist(&s), rs = psrec_schema_find(&s, "region", 6);
        assert_true(hs >= 0 && rs >= 0);
        for (size_t i = 0; i < b.n; i++) {
            uint32_t np = b.pos_off[i + 1] - b.pos_off[i];
            uint32_t nh = b.slot_off[hs][i + 1] - b.slot_off[hs][i];
            assert_true(np >= 1 && np <= c.max_pos);
            assert_true(nh >= c.min_hist && nh <= c.max_hist);
            assert_int_equal(b.slot_off[rs][i + 1] - b.slot_off[rs][i], 1);
            assert_true(b.slot_id[rs][b.slot_off[rs][i]] < c.n_categories);
            for (uint32_t k = b.pos_off[i]; k < b.pos_off[i + 1]; k++)
                assert_true(b.pos_id[k] < c.n_items);
            for (uint32_t k = b.slot_off[hs][i]; k < b.slot_off[hs][i + 1]; k++)
                assert_true(b.slot_id[hs][k] < c.n_items);
            uint32_t nhome = b.home_off[i + 1] - b.home_off[i];
            if (t)
                assert_true(nhome == 1 || nhome == 2);
            else
                assert_int_equal(nhome, 0);
        }
        psrec_batch_free(&b);
    }
}

/* Test users: every item comes from one of the line's _home categories, even with a large leak rate;
 * about p_two_homes of them have two (distinct) homes; region = first home with about region_signal. */
static void test_test_users_stay_home(void **state)
{
    (void)state;
    psrec_gen_conf_t c = small_conf();
    c.leak_rate = 0.5;
    c.n_test_users = 3000;
    c.n_train_users = 10;
    char d[256];
    gen(&c, "home", d);
    psrec_schema_t s;
    psrec_batch_t b;
    read_text(path_in(d, "test.txt"), &s, &b);
    int hs = psrec_schema_hist(&s), rs = psrec_schema_find(&s, "region", 6);
    size_t two = 0, region_hit = 0, items = 0;
    for (size_t i = 0; i < b.n; i++) {
        uint32_t ha = b.home_off[i], he = b.home_off[i + 1];
        assert_true(he - ha == 1 || he - ha == 2);
        if (he - ha == 2) {
            two++;
            assert_int_not_equal(b.home_cat[ha], b.home_cat[ha + 1]);
        }
        for (uint32_t k = ha; k < he; k++)
            assert_true(b.home_cat[k] < c.n_categories);
        if (b.slot_id[rs][b.slot_off[rs][i]] == b.home_cat[ha]) region_hit++;
        for (int part = 0; part < 2; part++) {
            const uint64_t *id = part ? b.slot_id[hs] : b.pos_id;
            uint32_t a = part ? b.slot_off[hs][i] : b.pos_off[i], e = part ? b.slot_off[hs][i + 1] : b.pos_off[i + 1];
            for (uint32_t k = a; k < e; k++) {
                uint32_t cat = (uint32_t)(id[k] % c.n_categories);
                int ok = 0;
                for (uint32_t q = ha; q < he; q++)
                    ok |= b.home_cat[q] == cat;
                if (!ok)
                    fail_msg("test user %zu: item %llu (category %u) outside its homes", i, (unsigned long long)id[k],
                             cat);
                items++;
            }
        }
    }
    assert_true(items > 10 * b.n);
    double n = (double)b.n, p2 = c.p_two_homes;
    assert_true(fabs(two / n - p2) < 5 * sqrt(p2 * (1 - p2) / n));
    double pr = c.region_signal + (1 - c.region_signal) / c.n_categories;
    assert_true(fabs(region_hit / n - pr) < 5 * sqrt(pr * (1 - pr) / n));
    psrec_batch_free(&b);
}

/* Train leaks: with one home, region = home (region_signal 1), the share of history items outside the
 * home is leak_rate * (1 - 1/C) (a leak picks a uniform category, which may be the home). */
static void test_train_leak_rate(void **state)
{
    (void)state;
    for (int t = 0; t < 2; t++) {
        psrec_gen_conf_t c = small_conf();
        c.p_two_homes = 0;
        c.region_signal = 1;
        c.leak_rate = t ? 0.1 : 0;
        c.n_categories = 10;
        c.min_hist = 10;
        c.max_hist = 30;
        c.n_train_users = 3000;
        c.n_test_users = 1;
        char d[256];
        gen(&c, t ? "leak1" : "leak0", d);
        psrec_schema_t s;
        psrec_batch_t b;
        read_text(path_in(d, "train.txt"), &s, &b);
        int hs = psrec_schema_hist(&s), rs = psrec_schema_find(&s, "region", 6);
        size_t out = 0, all = 0;
        for (size_t i = 0; i < b.n; i++) {
            uint64_t home = b.slot_id[rs][b.slot_off[rs][i]];
            for (uint32_t k = b.slot_off[hs][i]; k < b.slot_off[hs][i + 1]; k++, all++)
                out += b.slot_id[hs][k] % c.n_categories != home;
        }
        double p = c.leak_rate * (1 - 1.0 / c.n_categories), f = (double)out / (double)all;
        if (t == 0)
            assert_int_equal(out, 0);
        else if (fabs(f - p) > 5 * sqrt(p * (1 - p) / (double)all))
            fail_msg("leak share %.4f, expected %.4f (n = %zu)", f, p, all);
        psrec_batch_free(&b);
    }
}

/* Zipf within categories: chi-square of history item counts against the exact pmf k^-s / H(n_c, s)
 * per category, and the rank-1 item is the most frequent of its category. n_items % C != 0, so both
 * category sizes occur. */
static void test_zipf(void **state)
{
    (void)state;
    const double exps[] = {1.0, 0.6, 1.8};
    for (int t = 0; t < 3; t++) {
        psrec_gen_conf_t c = small_conf();
        c.n_items = 102;
        c.n_categories = 4; /* categories 0, 1 hold 26 items, 2, 3 hold 25 */
        c.zipf_s = exps[t];
        c.leak_rate = 0;
        c.min_hist = c.max_hist = 20;
        c.n_train_users = 4000;
        c.n_test_users = 1;
        char d[256], sub[16];
        snprintf(sub, sizeof sub, "zipf%d", t);
        gen(&c, sub, d);
        psrec_schema_t s;
        psrec_batch_t b;
        read_text(path_in(d, "train.txt"), &s, &b);
        int hs = psrec_schema_hist(&s);
        double count[102] = {0}, per_cat[4] = {0};
        for (size_t k = 0; k < b.slot_off[hs][b.n]; k++) {
            count[b.slot_id[hs][k]]++;
            per_cat[b.slot_id[hs][k] % 4]++;
        }
        for (uint32_t cat = 0; cat < 4; cat++) {
            size_t nc = cat < 102 % 4 ? 102 / 4 + 1 : 102 / 4;
            double hsum = 0, chi = 0;
            for (size_t k = 1; k <= nc; k++)
                hsum += pow((double)k, -c.zipf_s);
            for (size_t k = 1; k <= nc; k++) {
                double e = per_cat[cat] * pow((double)k, -c.zipf_s) / hsum;
                double o = count[cat + (k - 1) * 4];
                chi += (o - e) * (o - e) / e;
                if (k > 1) assert_true(count[cat] > o); /* rank 1 is the most frequent */
            }
            /* df = nc - 1 <= 25: mean 25, sd ~7; 80 is far in the tail */
            if (chi > 80) fail_msg("s=%.1f category %u: chi-square %.1f against Zipf", c.zipf_s, cat, chi);
        }
        psrec_batch_free(&b);
    }
}

static void test_bad_conf(void **state)
{
    (void)state;
    char d[256], err[PSREC_ERRBUF];
    snprintf(d, sizeof d, "%s/bad", tmpdir);
    psrec_gen_conf_t c = small_conf();
    c.n_items = 3;
    assert_int_equal(psrec_gen_write(&c, d, err), PSREC_EINVAL);
    c = small_conf();
    c.n_categories = 0;
    assert_int_equal(psrec_gen_write(&c, d, err), PSREC_EINVAL);
    c = small_conf();
    c.min_hist = 5;
    c.max_hist = 4;
    assert_int_equal(psrec_gen_write(&c, d, err), PSREC_EINVAL);
    c = small_conf();
    c.max_pos = 0;
    assert_int_equal(psrec_gen_write(&c, d, err), PSREC_EINVAL);
    c = small_conf();
    c.leak_rate = 1.5;
    assert_int_equal(psrec_gen_write(&c, d, err), PSREC_EINVAL);
    c = small_conf();
    c.zipf_s = NAN;
    assert_int_equal(psrec_gen_write(&c, d, err), PSREC_EINVAL);
    c = small_conf();
    c.region_signal = -0.1;
    assert_int_equal(psrec_gen_write(&c, d, err), PSREC_EINVAL);
    assert_int_not_equal(access(d, F_OK), 0); /* nothing created */
}

static void test_items_load(void **state)
{
    (void)state;
    char p[256], err[PSREC_ERRBUF], want[300];
    snprintf(p, sizeof p, "%s/items_ok.tsv", tmpdir);
    FILE *f = fopen(p, "w");
    fputs("# comment\n5\t2\r\n\nmovie_x\t-1\n18446744073709551615\t2147483647\n", f);
    fclose(f);
    uint64_t *ids;
    int32_t *cats;
    size_t n;
    assert_int_equal(psrec_items_load(p, &ids, &cats, &n, err), PSREC_OK);
    assert_int_equal(n, 3);
    assert_true(ids[0] == 5 && cats[0] == 2);
    assert_true(ids[1] == ((uint64_t)XXH3_64bits("movie_x", 7) | (1ULL << 63)) && cats[1] == -1);
    assert_true(ids[2] == UINT64_MAX && cats[2] == INT32_MAX);
    free(ids);
    free(cats);

    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"1\t0\n2 0\n", "2: expected id<TAB>category (2 0)"},
        {"1\t0\n2\tx\n", "2: bad category (x)"},
        {"1\t2147483648\n", "1: bad category (2147483648)"},
        {"1\t\n", "1: bad category ()"},
        {"\t3\n", "1: bad item id ()"},
        {"18446744073709551616\t3\n", "1: bad item id (18446744073709551616)"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(p, sizeof p, "%s/items_bad.tsv", tmpdir);
        f = fopen(p, "w");
        fputs(bad[k].text, f);
        fclose(f);
        ids = (uint64_t *)1;
        assert_int_equal(psrec_items_load(p, &ids, &cats, &n, err), PSREC_EPARSE);
        assert_null(ids);
        snprintf(want, sizeof want, "%s:%s", p, bad[k].msg);
        assert_string_equal(err, want);
    }
    snprintf(p, sizeof p, "%s/none.tsv", tmpdir);
    assert_int_equal(psrec_items_load(p, &ids, &cats, &n, err), PSREC_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_deterministic_and_parses),
        cmocka_unit_test(test_test_users_stay_home),
        cmocka_unit_test(test_train_leak_rate),
        cmocka_unit_test(test_zipf),
        cmocka_unit_test(test_bad_conf),
        cmocka_unit_test(test_items_load),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

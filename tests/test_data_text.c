/* test_data_text.c: the text example parser and reader (common/data_text.h). */
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

#include "common/data_text.h"
#include "common/rng.h"

static const psrec_text_opts_t OPTS0 = {0};

/* Expected string id, computed from the documented rule directly with libxxhash. */
static uint64_t sid(const char *s)
{
    return (uint64_t)XXH3_64bits(s, strlen(s)) | (1ULL << 63);
}

static psrec_err parse(const char *line, psrec_schema_t *s, const psrec_text_opts_t *o, psrec_batch_t *b, char *err)
{
    return psrec_text_parse_line(line, strlen(line), s, o, b, "t.txt:7", err);
}

/* Weight of id in example i (0 if absent); asserts the id appears at most once. */
static float weight_of(const psrec_batch_t *b, size_t i, uint64_t id)
{
    float w = 0;
    int seen = 0;
    for (uint32_t k = b->pos_off[i]; k < b->pos_off[i + 1]; k++)
        if (b->pos_id[k] == id) {
            w = b->pos_w[k];
            seen++;
        }
    assert_true(seen <= 1);
    return w;
}

static void test_basic_line(void **state)
{
    (void)state;
    psrec_schema_t s = {0};
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    char err[PSREC_ERRBUF];
    assert_int_equal(parse("pos=12:2.0,57 hist=3,4,5 region=fr _home=3", &s, &OPTS0, &b, err), PSREC_OK);
    assert_int_equal(b.n, 1);
    assert_int_equal(s.nslots, 2);
    int h = psrec_schema_hist(&s), r = psrec_schema_find(&s, "region", 6);
    assert_true(h >= 0 && r >= 0);
    assert_int_equal(b.nslots, 2);
    assert_int_equal(b.pos_off[1], 2);
    assert_float_equal(weight_of(&b, 0, 12), 2.0 / 3.0, 1e-6);
    assert_float_equal(weight_of(&b, 0, 57), 1.0 / 3.0, 1e-6);
    assert_int_equal(b.slot_off[h][1] - b.slot_off[h][0], 3);
    for (int k = 0; k < 3; k++)
        assert_int_equal(b.slot_id[h][k], 3 + k);
    assert_int_equal(b.slot_off[r][1], 1);
    assert_true(b.slot_id[r][0] == sid("fr"));
    assert_int_equal(b.home_off[1], 1);
    assert_int_equal(b.home_cat[0], 3);

    /* second line: tabs, CR, a slot missing, new slot added later; earlier example's new slot empty */
    assert_int_equal(parse("\tpos=1\thist=9 \r", &s, &OPTS0, &b, err), PSREC_OK);
    assert_int_equal(parse("pos=2 dev=phone", &s, &OPTS0, &b, err), PSREC_OK);
    assert_int_equal(b.n, 3);
    int d = psrec_schema_find(&s, "dev", 3);
    assert_int_equal(d, 2);
    assert_int_equal(b.nslots, 3);
    assert_int_equal(b.slot_off[d][0], 0);
    assert_int_equal(b.slot_off[d][2], 0);
    assert_int_equal(b.slot_off[d][3], 1);
    assert_true(b.slot_id[d][0] == sid("phone"));
    assert_int_equal(b.slot_off[r][2] - b.slot_off[r][1], 0);
    assert_float_equal(b.pos_w[b.pos_off[1]], 1.0, 0);

    /* blank and comment lines append nothing */
    assert_int_equal(parse("   ", &s, &OPTS0, &b, err), PSREC_OK);
    assert_int_equal(parse("  # pos=1", &s, &OPTS0, &b, err), PSREC_OK);
    assert_int_equal(b.n, 3);
    psrec_batch_free(&b);
}

static void test_id_rules(void **state)
{
    (void)state;
    psrec_schema_t s = {0};
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    char err[PSREC_ERRBUF];
    assert_int_equal(parse("pos=007,18446744073709551615,-5,+5,1e3,abc,0", &s, &OPTS0, &b, err), PSREC_OK);
    uint64_t want[] = {7, UINT64_MAX, sid("-5"), sid("+5"), sid("1e3"), sid("abc"), 0};
    assert_int_equal(b.pos_off[1], 7);
    for (int k = 0; k < 7; k++)
        assert_true(b.pos_id[k] == want[k]);
    for (int k = 2; k < 6; k++)
        assert_true(b.pos_id[k] & (1ULL << 63));

    assert_int_equal(parse("pos=18446744073709551616", &s, &OPTS0, &b, err), PSREC_EPARSE);
    assert_string_equal(err, "t.txt:7: id out of range (18446744073709551616)");
    assert_int_equal(parse("pos=1 hist=99999999999999999999999", &s, &OPTS0, &b, err), PSREC_EPARSE);
    assert_string_equal(err, "t.txt:7: id out of range (99999999999999999999999)");
    assert_int_equal(b.n, 1);
    assert_int_equal(s.nslots, 0); /* the bad line did not add "hist" */
    psrec_batch_free(&b);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *line, *msg;
    } cases[] = {
        {"pos=", "empty value (pos=)"},
        {"pos=1,,2", "empty id in list (1,,2)"},
        {"pos=1,", "empty id in list (1,)"},
        {"pos=,1", "empty id in list (,1)"},
        {"pos=1:abc", "bad weight (1:abc)"},
        {"pos=1:-1", "weight must be > 0 (1:-1)"},
        {"pos=1:0", "weight must be > 0 (1:0)"},
        {"pos=1:nan", "bad weight (1:nan)"},
        {"pos=1:inf", "bad weight (1:inf)"},
        {"pos=1:", "bad weight (1:)"},
        {"pos=1:2:3", "bad weight (1:2:3)"},
        {"pos=1:1e-60", "weight must be > 0 (1:1e-60)"},
        {"pos=1:1e31", "weight too large (1:1e31)"},
        {"pos=:2", "empty id (:2)"},
        {"pos=1 pos=2", "duplicate field (pos)"},
        {"pos=1 hist=2 zz=1 hist=3", "duplicate field (hist)"},
        {"pos=1 newa=1 newa=2", "duplicate field (newa)"},
        {"pos=1 _home=1 _home=2", "duplicate field (_home)"},
        {"pos=1 hist", "missing '=' in field (hist)"},
        {"=3 pos=1", "empty field name (=3)"},
        {"pos=1 a=b=c", "'=' inside a value (a=b=c)"},
        {"pos=1 hist=3:2", "weights are only allowed in pos (3:2)"},
        {"pos=1 newb=3:2", "weights are only allowed in pos (3:2)"},
        {"pos=1 _home=x", "category must be a decimal number (x)"},
        {"pos=1 _home=-1", "category must be a decimal number (-1)"},
        {"pos=1 _home=4294967296", "category out of range (4294967296)"},
        {"pos=1 _foo=1", "unknown reserved field (_foo)"},
        {"pos=1 abcdefghijabcdefghijabcdefghij12=1",
         "slot name too long (max 31 bytes) (abcdefghijabcdefghijabcdefghij12)"},
        {"pos=1 zz=1 pos=2", "duplicate field (pos)"},
        {"pos=1 zz=1 hist=18446744073709551616", "id out of range (18446744073709551616)"},
    };
    psrec_schema_t s = {0};
    assert_true(psrec_schema_add(&s, "hist", 4) == 0);
    psrec_batch_t b;
    psrec_batch_init(&b, 1);
    char err[PSREC_ERRBUF], want[PSREC_ERRBUF];
    assert_int_equal(parse("pos=1 hist=2", &s, &OPTS0, &b, err), PSREC_OK);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        err[0] = '\0';
        assert_int_equal(parse(cases[c].line, &s, &OPTS0, &b, err), PSREC_EPARSE);
        snprintf(want, sizeof want, "t.txt:7: %s", cases[c].msg);
        if (strcmp(err, want) != 0) fail_msg("line '%s': got '%s', want '%s'", cases[c].line, err, want);
        assert_int_equal(b.n, 1);      /* nothing appended */
        assert_int_equal(s.nslots, 1); /* a bad line never adds a slot */
    }
    /* the batch is still usable and the failed lines left no trace */
    assert_int_equal(parse("pos=5 hist=6,7", &s, &OPTS0, &b, err), PSREC_OK);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.pos_off[2] - b.pos_off[1], 1);
    assert_true(b.pos_id[b.pos_off[1]] == 5);
    assert_int_equal(b.slot_off[0][2] - b.slot_off[0][1], 2);
    assert_int_equal(b.home_off[2], 0);

    /* long offending tokens are cut in the message */
    char longline[400] = "pos=";
    memset(longline + 4, 'a', 300);
    strcpy(longline + 304, ":x");
    assert_int_equal(parse(longline, &s, &OPTS0, &b, err), PSREC_EPARSE);
    assert_non_null(strstr(err, "bad weight (aaaa"));
    assert_non_null(strstr(err, "...)"));
    assert_true(strlen(err) < 120);

    psrec_text_opts_t req = {.require_pos = 1};
    assert_int_equal(parse("hist=1", &s, &req, &b, err), PSREC_EPARSE);
    assert_string_equal(err, "t.txt:7: no positives (pos=...) (hist=1)");
    assert_int_equal(parse("hist=1", &s, &OPTS0, &b, err), PSREC_OK); /* fine without require_pos */
    assert_int_equal(b.pos_off[3] - b.pos_off[2], 0);
    psrec_batch_free(&b);
}

static void test_too_many_slots(void **state)
{
    (void)state;
    psrec_schema_t s = {0};
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    char err[PSREC_ERRBUF], line[1024];
    char *p = line + sprintf(line, "pos=1");
    for (int k = 0; k < PSREC_MAX_SLOTS + 1; k++)
        p += sprintf(p, " s%d=%d", k, k);
    assert_int_equal(parse(line, &s, &OPTS0, &b, err), PSREC_EPARSE);
    assert_string_equal(err, "t.txt:7: too many slots (max 16) (s16)");
    assert_int_equal(s.nslots, 0);
    assert_int_equal(b.n, 0);
    p = line + sprintf(line, "pos=1");
    for (int k = 0; k < PSREC_MAX_SLOTS; k++)
        p += sprintf(p, " s%d=%d", k, k);
    assert_int_equal(parse(line, &s, &OPTS0, &b, err), PSREC_OK);
    assert_int_equal(s.nslots, PSREC_MAX_SLOTS);
    assert_int_equal(b.nslots, PSREC_MAX_SLOTS);
    for (int k = 0; k < PSREC_MAX_SLOTS; k++) {
        char nm[8];
        int nl = sprintf(nm, "s%d", k);
        int si = psrec_schema_find(&s, nm, (size_t)nl);
        assert_true(si >= 0);
        assert_int_equal(b.slot_off[si][1], 1);
        assert_true(b.slot_id[si][0] == (uint64_t)k);
    }
    assert_int_equal(parse("pos=1 s3=1 other=2", &s, &OPTS0, &b, err), PSREC_EPARSE);
    assert_string_equal(err, "t.txt:7: too many slots (max 16) (other)");
    assert_int_equal(b.n, 1);
    psrec_batch_free(&b);
}

static void test_duplicate_positives(void **state)
{
    (void)state;
    psrec_schema_t s = {0};
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    char err[PSREC_ERRBUF];
    assert_int_equal(parse("pos=5:1,6,5:2", &s, &OPTS0, &b, err), PSREC_OK);
    assert_int_equal(b.pos_off[1], 2);
    assert_float_equal(weight_of(&b, 0, 5), 0.75, 1e-6);
    assert_float_equal(weight_of(&b, 0, 6), 0.25, 1e-6);

    /* a long list (beyond the linear-scan threshold) against a naive reference */
    static char line[1 << 16];
    double ref[50] = {0}, total = 0;
    psrec_rng_t r;
    psrec_rng_seed(&r, 42, 0);
    char *p = line + sprintf(line, "pos=");
    for (int k = 0; k < 400; k++) {
        int id = (int)psrec_rng_below(&r, 50);
        int w = 1 + (int)psrec_rng_below(&r, 4);
        ref[id] += w;
        total += w;
        p += sprintf(p, "%s%d:%d", k ? "," : "", id, w);
    }
    assert_int_equal(parse(line, &s, &OPTS0, &b, err), PSREC_OK);
    int distinct = 0;
    for (int id = 0; id < 50; id++) {
        if (ref[id] > 0) distinct++;
        assert_float_equal(weight_of(&b, 1, (uint64_t)id), ref[id] / total, 1e-6);
    }
    assert_int_equal(b.pos_off[2] - b.pos_off[1], distinct);
    psrec_batch_free(&b);
}

static void test_fixed_schema(void **state)
{
    (void)state;
    psrec_schema_t s = {0};
    assert_true(psrec_schema_add(&s, "hist", 4) == 0);
    psrec_batch_t b;
    psrec_batch_init(&b, 1);
    char err[PSREC_ERRBUF];
    psrec_text_opts_t fixed = {.fixed_schema = 1};
    assert_int_equal(parse("pos=1 hist=2 geo=3", &s, &fixed, &b, err), PSREC_EPARSE);
    assert_string_equal(err, "t.txt:7: unknown slot (geo)");
    fixed.ignore_unknown = 1;
    assert_int_equal(parse("pos=1 hist=2 geo=3:x geo=4 abcdefghijabcdefghijabcdefghij12=1", &s, &fixed, &b, err),
                     PSREC_OK);
    assert_int_equal(s.nslots, 1);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.slot_off[0][1], 1);
    psrec_batch_free(&b);
}

/* Random lines over a hostile alphabet (and raw bytes): the parser answers OK or EPARSE, never
 * crashes, and when it accepts a line the example is well formed. */
static void test_fuzz(void **state)
{
    (void)state;
    static const char *atoms[] = {"pos",    "hist", "_home",
                                  "region", "=",    ",",
                                  ":",      " ",    "\t",
                                  "1",      "0",    "-1",
                                  "abc",    "nan",  "inf",
                                  "1e-50",  "2.5",  "18446744073709551616",
                                  "",       "\r",   "#",
                                  "x_y",    "s1",   "s2",
                                  "s3",     "s4",   "s5",
                                  "s6",     "s7",   "s8",
                                  "s9",     "s10",  "s11",
                                  "s12",    "s13",  "s14",
                                  "s15",    "s16",  "99999999999999999999"};
    const size_t natoms = sizeof atoms / sizeof atoms[0];
    psrec_schema_t s = {0};
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    char err[PSREC_ERRBUF], line[512];
    psrec_rng_t r;
    psrec_rng_seed(&r, 7, 1);
    size_t ok = 0;
    for (int it = 0; it < 30000; it++) {
        size_t len = 0;
        int n = (int)psrec_rng_below(&r, 24);
        int mode = (int)psrec_rng_below(&r, 8); /* 0: raw bytes, 1-3: atoms, 4-7: mutated fields */
        int raw = mode == 0;
        if (mode >= 4) {
            static const char *names[] = {"pos", "hist", "_home", "region", "s1", "s2", "s3"};
            static const char *vals[] = {"1", "0", "42", "abc", "2:0.5", "7:3", "4294967295"};
            n = 1 + (int)psrec_rng_below(&r, 4);
            for (int k = 0; k < n; k++) {
                len += (size_t)sprintf(line + len, "%s%s=", k ? " " : "", names[psrec_rng_below(&r, 7)]);
                int nv = 1 + (int)psrec_rng_below(&r, 3);
                for (int v = 0; v < nv; v++)
                    len += (size_t)sprintf(line + len, "%s%s", v ? "," : "", vals[psrec_rng_below(&r, 7)]);
            }
            if (mode == 7 && len) line[psrec_rng_below(&r, len)] = (char)psrec_rng_below(&r, 128);
            n = 0;
        }
        for (int k = 0; k < n && len < 400; k++) {
            if (raw) {
                line[len++] = (char)psrec_rng_below(&r, 256);
            } else {
                const char *a = atoms[psrec_rng_below(&r, natoms)];
                size_t al = strlen(a);
                memcpy(line + len, a, al);
                len += al;
            }
        }
        size_t before = b.n;
        psrec_err rc = psrec_text_parse_line(line, len, &s, &OPTS0, &b, "fuzz", err);
        assert_true(rc == PSREC_OK || rc == PSREC_EPARSE);
        assert_true(s.nslots <= PSREC_MAX_SLOTS && b.nslots == s.nslots);
        if (rc == PSREC_OK && b.n == before + 1) {
            ok++;
            uint32_t a = b.pos_off[before], e = b.pos_off[before + 1];
            double sum = 0;
            for (uint32_t k = a; k < e; k++) {
                assert_true(b.pos_w[k] > 0 && isfinite(b.pos_w[k]));
                sum += b.pos_w[k];
            }
            if (e > a) assert_float_equal(sum, 1.0, 1e-5);
        } else {
            assert_int_equal(b.n, before);
        }
        if (b.n > 1000) psrec_batch_clear(&b);
    }
    assert_true(ok > 100); /* the generator does produce valid lines too */
    psrec_batch_free(&b);
}

/* ---- reader over files ---- */

#define tmpdir psrec_test_tmp

static int setup_dir(void **state)
{
    (void)state;
    return psrec_test_mktmp("text");
}

static int teardown_dir(void **state)
{
    (void)state;
    return psrec_test_rmtmp();
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_reader(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/a.txt", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# header comment\n\npos=1 hist=2\r\n", f); /* lines 1-3 */
    fputs("pos=2 hist=", f);                          /* line 4: a very long line */
    const int LONG = 200000;
    for (int k = 0; k < LONG; k++)
        fprintf(f, "%s%d", k ? "," : "", k);
    fputs("\n", f);
    fputs("pos=3 hist=4 bad\n", f); /* line 5: malformed */
    fputs("pos=4 geo=x\n", f);      /* line 6: new slot */
    fputs("pos=5:-1\n", f);         /* line 7: malformed */
    fputs("pos=6", f);              /* line 8: no final newline */
    assert_int_equal(fclose(f), 0);

    psrec_schema_t s = {0};
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    char err[PSREC_ERRBUF], want[256];
    psrec_text_reader_t *r;
    size_t got;
    psrec_text_opts_t opts = {.require_pos = 1};
    assert_int_equal(psrec_text_open(&r, path, &s, &opts, err), PSREC_OK);
    assert_int_equal(psrec_text_read(r, &b, 100, &got, err), PSREC_EPARSE);
    snprintf(want, sizeof want, "%s:5: missing '=' in field (bad)", path);
    assert_string_equal(err, want);
    assert_int_equal(got, 2);
    assert_int_equal(b.n, 2); /* the lines before the error stay in b */
    int h = psrec_schema_hist(&s);
    assert_int_equal(b.slot_off[h][2] - b.slot_off[h][1], LONG);
    assert_true(b.slot_id[h][b.slot_off[h][1] + LONG - 1] == (uint64_t)(LONG - 1));
    psrec_text_close(&r);
    assert_null(r);

    /* skip_bad: counts and skips, reads in chunks of max */
    psrec_batch_clear(&b);
    s.nslots = 0;
    opts.skip_bad = 1;
    assert_int_equal(psrec_text_open(&r, path, &s, &opts, err), PSREC_OK);
    assert_int_equal(psrec_text_read(r, &b, 2, &got, err), PSREC_OK);
    assert_int_equal(got, 2);
    assert_int_equal(psrec_text_read(r, &b, 10, &got, err), PSREC_OK);
    assert_int_equal(got, 2);
    assert_int_equal(b.n, 4);
    assert_int_equal(psrec_text_read(r, &b, 10, &got, err), PSREC_OK);
    assert_int_equal(got, 0);
    assert_int_equal(psrec_text_lines(r), 8);
    assert_int_equal(psrec_text_skipped(r), 2);
    assert_int_equal(s.nslots, 2);
    assert_int_equal(b.nslots, 2);
    int g = psrec_schema_find(&s, "geo", 3);
    assert_int_equal(b.slot_off[g][2], 0); /* examples before the slot appeared have it empty */
    assert_int_equal(b.slot_off[g][3], 1);
    assert_true(b.pos_id[b.pos_off[3]] == 6);
    psrec_text_close(&r);
    psrec_batch_free(&b);

    /* missing file */
    snprintf(path, sizeof path, "%s/none.txt", tmpdir);
    assert_int_equal(psrec_text_open(&r, path, &s, &opts, err), PSREC_ENOTFOUND);
    assert_null(r);
    psrec_text_close(&r);

    /* empty file */
    snprintf(path, sizeof path, "%s/empty.txt", tmpdir);
    write_file(path, "");
    assert_int_equal(psrec_text_open(&r, path, &s, &opts, err), PSREC_OK);
    psrec_batch_init(&b, 0);
    assert_int_equal(psrec_text_read(r, &b, 10, &got, err), PSREC_OK);
    assert_int_equal(got, 0);
    psrec_text_close(&r);
    psrec_batch_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_line),
        cmocka_unit_test(test_id_rules),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_too_many_slots),
        cmocka_unit_test(test_duplicate_positives),
        cmocka_unit_test(test_fixed_schema),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_reader),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

/* test_cmd_wals.c: `psrec wals` end to end, as a user runs it: gen -> wals -> eval (a WALS model is
 * far better than a random ranking on planted categories) -> recommend -> export, all through the
 * unchanged eval/recommend/export commands; plus option errors. Runs real processes; no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/test_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *bin;

static int setup(void **state)
{
    bin = getenv("PSREC_BIN");
    if (!bin) bin = "./psrec";
    return psrec_test_mktmp("wals");
}

static int teardown(void **state)
{
    return psrec_test_rmtmp();
}

#define run psrec_test_run
#define json_num psrec_test_json_num

static void test_pipeline(void **state)
{
    static char out[1 << 16];
    const char *dir = psrec_test_tmp;
    assert_int_equal(run(out, sizeof out,
                         "%s gen --out %s/data --items 600 --categories 6 --train-users 3000 "
                         "--test-users 300 --seed 3",
                         bin, dir),
                     0);
    assert_int_equal(run(out, sizeof out,
                         "%s wals --train %s/data/train.txt --model %s/model --dim 16 --w0 1 --sweeps 6 "
                         "--threads 2",
                         bin, dir, dir),
                     0);
    assert_non_null(strstr(out, "3000 users"));
    /* the objective printed per sweep never increases */
    double prev = 0;
    int sweeps = 0;
    for (const char *p = strstr(out, "sweep "); p; p = strstr(p + 1, "sweep ")) {
        const char *q = strstr(p, "objective ");
        assert_non_null(q);
        double f = atof(q + 10);
        if (sweeps) assert_true(f <= prev * (1 + 1e-6));
        prev = f;
        sweeps++;
    }
    assert_int_equal(sweeps, 6);
    assert_int_equal(run(out, sizeof out,
                         "%s eval --model %s/model --test %s/data/test.txt --items %s/data/items.tsv "
                         "--json",
                         bin, dir, dir, dir),
                     0);
    /* 6 planted categories of 100 items: a random ranking gets Recall@10 ~ 0.017 */
    double recall = json_num(out, "recall");
    print_message("wals w0=1 recall@10 %.4f\n", recall);
    assert_true(recall > 0.05);
    assert_true(json_num(out, "queries") == 300);
    /* cold start: test users with their history removed (only the region feature is left) get the mean
     * embedding of training users with that region; the zero fold-in would rank ids 0..9 (~random) */
    assert_int_equal(run(out, sizeof out,
                         "sed -E 's/ hist=[^ ]*//' %s/data/test.txt > %s/nohist.txt && %s eval --model %s/model "
                         "--test %s/nohist.txt --items %s/data/items.tsv --json",
                         dir, dir, bin, dir, dir, dir),
                     0);
    double cold = json_num(out, "recall");
    print_message("wals cold start (region only) recall@10 %.4f\n", cold);
    assert_true(cold > 0.15);
    assert_true(json_num(out, "fold_ratio") < 0.7);
    /* recommend: one line per query, k items each */
    assert_int_equal(
        run(out, sizeof out, "printf 'hist=1,7,13\\nhist=2\\n' | %s recommend --model %s/model --k 5", bin, dir), 0);
    int lines = 0, items = 0;
    for (char *p = out; *p; p++) {
        if (*p == '\n') lines++;
        if (*p == ':') items++;
    }
    assert_int_equal(lines, 2);
    assert_int_equal(items, 10);
    /* export: the item table, 600 x 16 */
    assert_int_equal(run(out, sizeof out, "%s export --model %s/model --out %s/emb --format w2v && head -1 %s/emb.vec",
                         bin, dir, dir, dir),
                     0);
    assert_non_null(strstr(out, "600 16"));
}

static void test_bad_options(void **state)
{
    char out[4096];
    const char *dir = psrec_test_tmp;
    assert_int_equal(run(out, sizeof out, "%s wals --model %s/x", bin, dir), 2);
    assert_int_equal(run(out, sizeof out, "%s wals --train %s/data/train.txt --model %s/x --lambda 0", bin, dir, dir),
                     2);
    assert_non_null(strstr(out, "--lambda"));
    assert_int_equal(run(out, sizeof out, "%s wals --train %s/nope.txt --model %s/x", bin, dir, dir), 1);
    /* a malformed data line is named */
    assert_int_equal(run(out, sizeof out,
                         "printf 'pos=1:zz\\n' > %s/bad.txt && %s wals --train %s/bad.txt --model %s/x", dir, bin, dir,
                         dir),
                     1);
    assert_non_null(strstr(out, "bad.txt:1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

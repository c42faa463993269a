/* test_cli.c: the psrec executable end to end, as a user runs it: gen -> prep -> train -> eval ->
 * recommend -> export, plus the user-facing failure paths (a malformed data line names file:line, a
 * corrupt model is refused, bad options are rejected). Runs real processes; no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/data_freq.h"
#include "tests/test_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char dir[64];
static const char *bin;

static int setup(void **state)
{
    bin = getenv("PSREC_BIN");
    if (!bin) bin = "./psrec";
    strcpy(dir, "/tmp/psrec-cli-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

#define run psrec_test_run
#define json_num psrec_test_json_num

static void test_pipeline(void **state)
{
    static char out[1 << 16];
    assert_int_equal(run(out, sizeof out,
                         "%s gen --out %s/data --items 600 --categories 6 --train-users 3000 "
                         "--test-users 300 --seed 3",
                         bin, dir),
                     0);
    assert_int_equal(run(out, sizeof out,
                         "%s prep --in %s/data/train.txt --items %s/data/items.tsv --out %s/shards "
                         "--shards 2",
                         bin, dir, dir, dir),
                     0);
    assert_non_null(strstr(out, "3000 examples"));
    assert_int_equal(run(out, sizeof out,
                         "%s train --data %s/shards --model %s/model --metrics %s/m.jsonl --epochs 3 "
                         "--negatives 256 --dim 16 --hidden 32 --quiet",
                         bin, dir, dir, dir),
                     0);
    assert_true(json_num(out, "examples") == 9000);
    assert_int_equal(run(out, sizeof out,
                         "%s eval --model %s/model --test %s/data/test.txt --items %s/data/items.tsv "
                         "--json",
                         bin, dir, dir, dir),
                     0);
    double recall = json_num(out, "recall");
    /* 6 planted categories of 100 items: a random ranking gets Recall@10 ~ 0.017 */
    assert_true(recall > 0.05);
    assert_true(json_num(out, "fold_ratio") < 0.5);
    assert_true(json_num(out, "queries") == 300);
    /* the metrics file has one JSON object per line with a loss */
    assert_int_equal(run(out, sizeof out, "grep -c '\"loss\"' %s/m.jsonl", dir), 0);
    assert_true(atoi(out) >= 1);
    /* recommend: one line per query, k items each, history left out */
    assert_int_equal(run(out, sizeof out,
                         "printf 'hist=1,7,13 region=1\\nhist=2\\n' | %s recommend --model %s/model "
                         "--k 5",
                         bin, dir),
                     0);
    int lines = 0, items = 0;
    for (char *p = out; *p; p++) {
        if (*p == '\n') lines++;
        if (*p == ':') items++;
    }
    assert_int_equal(lines, 2);
    assert_int_equal(items, 10);
    assert_null(strstr(out, "\n7:"));
    assert_true(strncmp(out, "1:", 2) != 0 && strncmp(out, "7:", 2) != 0 && strncmp(out, "13:", 3) != 0);
    /* export: .npy with the right header and size, ids file with one line per item */
    assert_int_equal(run(out, sizeof out, "%s export --model %s/model --out %s/emb", bin, dir, dir), 0);
    assert_int_equal(run(out, sizeof out, "head -c 80 %s/emb.npy | tail -c +11", dir), 0);
    assert_non_null(strstr(out, "'shape': (600, 16)"));
    assert_int_equal(run(out, sizeof out, "wc -l < %s/emb.ids; stat -c %%s %s/emb.npy", dir, dir), 0);
    assert_int_equal(atoi(out), 600);
    assert_int_equal(atol(strchr(out, '\n') + 1), 128 + 600 * 16 * 4);
    assert_int_equal(run(out, sizeof out, "%s export --model %s/model --out %s/emb --format w2v && head -1 %s/emb.vec",
                         bin, dir, dir, dir),
                     0);
    assert_non_null(strstr(out, "600 16"));

    /* a corrupt model is refused by eval, recommend and export, with the file named */
    assert_int_equal(run(out, sizeof out,
                         "cp -r %s/model %s/bad && printf 'X' | dd of=%s/bad/table-0.bin bs=1 seek=100 "
                         "conv=notrunc",
                         dir, dir, dir),
                     0);
    assert_int_equal(run(out, sizeof out, "%s eval --model %s/bad --test %s/data/test.txt", bin, dir, dir), 1);
    assert_non_null(strstr(out, "table-0.bin"));
    assert_non_null(strstr(out, "checksum"));
    assert_int_equal(run(out, sizeof out, "echo hist=1 | %s recommend --model %s/bad", bin, dir), 1);
    /* a malformed query line: the queries before it are answered, then file:line */
    assert_int_equal(
        run(out, sizeof out, "printf 'hist=1,7\\nhist=1,,2\\n' | %s recommend --model %s/model --k 2", bin, dir), 1);
    assert_non_null(strstr(out, "stdin:2:"));
    assert_int_equal(out[0] != 'p' && strchr(out, ':') < strstr(out, "stdin:2:"), 1);
    assert_int_equal(run(out, sizeof out, "%s export --model %s/bad --out %s/x", bin, dir, dir), 1);
}

static void test_bad_input(void **state)
{
    static char out[1 << 14];
    assert_int_equal(
        run(out, sizeof out, "printf 'pos=1 hist=2,3\\npos=1:abc hist=4\\npos=2 hist=5\\n' > %s/bad.txt", dir), 0);
    assert_int_equal(run(out, sizeof out, "%s prep --in %s/bad.txt --out %s/badshards", bin, dir, dir), 1);
    assert_non_null(strstr(out, "bad.txt:2:"));
    /* --skip-bad counts and skips it */
    assert_int_equal(run(out, sizeof out, "%s prep --in %s/bad.txt --out %s/badshards --skip-bad", bin, dir, dir), 0);
    assert_non_null(strstr(out, "2 examples"));
    assert_non_null(strstr(out, "1 malformed"));
    /* options */
    assert_int_equal(run(out, sizeof out, "%s train --data %s/badshards --batch 0", bin, dir), 2);
    assert_non_null(strstr(out, "--batch"));
    assert_int_equal(run(out, sizeof out, "%s train --data %s/badshards --sampler nope", bin, dir), 2);
    assert_int_equal(run(out, sizeof out, "%s train --data %s/nothing-here", bin, dir), 1);
    assert_non_null(strstr(out, "psrec prep"));
    assert_int_equal(run(out, sizeof out, "%s frobnicate", bin), 2);
    assert_int_equal(run(out, sizeof out, "%s gen", bin), 2);
}

/* `prep --catalogue N`: the dense catalogue 0..N-1 without an items file, the same counts as a prep
 * with the items file listing 0..N-1; an id >= N is refused naming the smallest one, before any shard
 * is committed. */
static void test_catalogue(void **state)
{
    static char out[1 << 14];
    char err[PSREC_ERRBUF], path[160];
    assert_int_equal(run(out, sizeof out,
                         "%s gen --out %s/dc --items 300 --categories 3 --train-users 500 --test-users 10 --seed 4",
                         bin, dir),
                     0);
    assert_int_equal(run(out, sizeof out, "%s prep --in %s/dc/train.txt --items %s/dc/items.tsv --out %s/c_items", bin,
                         dir, dir, dir),
                     0);
    assert_int_equal(
        run(out, sizeof out, "%s prep --in %s/dc/train.txt --catalogue 300 --out %s/c_dense", bin, dir, dir), 0);
    assert_non_null(strstr(out, "300 items in the catalogue"));
    psrec_freq_t ref, dense, seen;
    snprintf(path, sizeof path, "%s/c_items/freq.bin", dir);
    assert_int_equal(psrec_freq_load(&ref, path, err), PSREC_OK);
    snprintf(path, sizeof path, "%s/c_dense/freq.bin", dir);
    assert_int_equal(psrec_freq_load(&dense, path, err), PSREC_OK);
    assert_int_equal(ref.n, 300);
    assert_int_equal(dense.n, 300);
    assert_int_equal(dense.dense, 1);
    assert_null(dense.ids);
    assert_true(ref.ids[0] == 0 && ref.ids[299] == 299);
    assert_memory_equal(ref.counts, dense.counts, 300 * sizeof *ref.counts);
    assert_true(ref.total == dense.total && dense.total > 0);
    /* the smallest id >= 100 in the data, from a prep that lists only the ids seen */
    assert_int_equal(run(out, sizeof out, "%s prep --in %s/dc/train.txt --out %s/c_seen", bin, dir, dir), 0);
    snprintf(path, sizeof path, "%s/c_seen/freq.bin", dir);
    assert_int_equal(psrec_freq_load(&seen, path, err), PSREC_OK);
    size_t k = 0;
    while (k < seen.n && seen.ids[k] < 100)
        k++;
    assert_true(k < seen.n);
    char want[64];
    snprintf(want, sizeof want, "item id %llu ", (unsigned long long)seen.ids[k]);
    assert_int_equal(run(out, sizeof out, "%s prep --in %s/dc/train.txt --catalogue 100 --out %s/c_bad", bin, dir, dir),
                     1);
    assert_non_null(strstr(out, want));
    assert_int_equal(run(out, sizeof out, "ls %s/c_bad", dir), 0);
    assert_null(strstr(out, "freq.bin"));
    assert_null(strstr(out, "shard-"));
    assert_int_equal(run(out, sizeof out, "%s prep --in %s/dc/train.txt --catalogue 0 --out %s/c_bad", bin, dir, dir),
                     2);
    assert_int_equal(run(out, sizeof out, "%s prep --in %s/dc/train.txt --catalogue x --out %s/c_bad", bin, dir, dir),
                     2);
    psrec_freq_free(&ref);
    psrec_freq_free(&dense);
    psrec_freq_free(&seen);
}

/* Trains on the small data of test_pipeline's generator and returns Recall@10 (and FoldRatio). */
static double train_eval(const char *name, const char *opts, double *fold_ratio)
{
    static char out[1 << 14];
    assert_int_equal(
        run(out, sizeof out, "%s train --data %s/s2 --model %s/%s --quiet --seed 5 %s", bin, dir, dir, name, opts), 0);
    assert_int_equal(run(out, sizeof out, "%s eval --model %s/%s --test %s/d2/test.txt --items %s/d2/items.tsv --json",
                         bin, dir, name, dir, dir),
                     0);
    if (fold_ratio) *fold_ratio = json_num(out, "fold_ratio");
    return json_num(out, "recall");
}

static void make_small_data(void)
{
    static char out[1 << 14];
    assert_int_equal(run(out, sizeof out,
                         "test -d %s/s2 || (%s gen --out %s/d2 --items 1000 --categories 10 "
                         "--train-users 8000 --test-users 1000 --seed 11 && %s prep --in "
                         "%s/d2/train.txt --items %s/d2/items.tsv --out %s/s2 --shards 2)",
                         dir, bin, dir, bin, dir, dir, dir),
                     0);
}

/* What the foundation must show (issue: "What it must show"): sampled softmax with uniform negatives
 * within 10% of full softmax's Recall@10, and positives-only training folding at least 3x more. One
 * worker thread, so each run is deterministic. */
static void test_sampled_vs_full_and_folding(void **state)
{
    make_small_data();
    double f_full, f_samp, f_pos;
    double r_full = train_eval("full", "--threads 1 --epochs 5 --dim 32 --full", &f_full);
    double r_samp = train_eval("samp", "--threads 1 --epochs 5 --dim 32 --negatives 256", &f_samp);
    double r_pos = train_eval("pos", "--threads 1 --epochs 5 --dim 32 --loss positives-only", &f_pos);
    print_message("Recall@10 full %.4f sampled %.4f positives-only %.4f; FoldRatio %.4f %.4f %.4f\n", r_full, r_samp,
                  r_pos, f_full, f_samp, f_pos);
    assert_true(r_full > 0.1); /* random ranking: ~0.01 */
    assert_true(r_samp >= 0.9 * r_full);
    assert_true(f_pos >= 3 * f_samp);
    assert_true(f_pos > 0.3);
}

/* Every sampler and loss trains end to end and beats a random ranking by far. */
static void test_every_sampler_and_loss_learns(void **state)
{
    make_small_data();
    const char *variants[] = {
        "--sampler popularity --negatives 128",
        "--sampler inbatch",
        "--sampler mixed --negatives 64",
        "--sampler hard --negatives 256 --hard-keep 64",
        "--loss logistic --negatives 128 --epochs 6",
        "--negatives 128 --gravity 0.1",
        "--negatives 128 --tie --hidden 0",
        "--negatives 128 --opt adagrad --lr 0.05",
        "--negatives 128 --opt adam --lr 0.005",
        "--negatives 128 --opt sgd --lr 2",
    };
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        char opts[256];
        snprintf(opts, sizeof opts, "--threads 2 --epochs 2 --dim 16 %s", variants[i]);
        double r = train_eval("v", opts, NULL);
        print_message("%-45s Recall@10 %.4f\n", variants[i], r);
        assert_true(r > 0.05);
    }
}

/* Same seed, one worker, --sync (asynchronous mode overlaps a step's push with the next step's pulls,
 * which is faster but lets timing decide what a pull sees): the same model, byte for byte. */
static void test_single_worker_is_deterministic(void **state)
{
    static char out[1 << 14];
    make_small_data();
    for (int i = 0; i < 2; i++)
        assert_int_equal(run(out, sizeof out,
                             "%s train --data %s/s2 --model %s/det%d --threads 1 --epochs 1 --dim 8 "
                             "--negatives 64 --quiet --seed 3 --sync",
                             bin, dir, dir, i),
                         0);
    assert_int_equal(run(out, sizeof out,
                         "cmp %s/det0/table-0.bin %s/det1/table-0.bin && cmp %s/det0/table-2.bin "
                         "%s/det1/table-2.bin",
                         dir, dir, dir, dir),
                     0);
    assert_int_equal(run(out, sizeof out,
                         "%s train --data %s/s2 --model %s/det2 --threads 1 --epochs 1 --dim 8 "
                         "--negatives 64 --quiet --seed 4 --sync && cmp -s %s/det0/table-0.bin "
                         "%s/det2/table-0.bin",
                         bin, dir, dir, dir, dir),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pipeline),
                                       cmocka_unit_test(test_bad_input),
                                       cmocka_unit_test(test_catalogue),
                                       cmocka_unit_test(test_sampled_vs_full_and_folding),
                                       cmocka_unit_test(test_every_sampler_and_loss_learns),
                                       cmocka_unit_test(test_single_worker_is_deterministic)};
    return cmocka_run_group_tests(tests, setup, teardown);
}

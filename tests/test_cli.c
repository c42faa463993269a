/* test_cli.c: the psrec executable end to end, as a user runs it: gen -> prep -> train -> eval ->
 * recommend -> export, plus the user-facing failure paths (a malformed data line names file:line, a
 * corrupt model is refused, bad options are rejected). Runs real processes; no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
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

/* Runs a shell command, returns its exit status and (optionally) its stdout+stderr. */
static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = 0;
    char tmp[4096];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, p)) > 0) {
        if (out && n + 1 < cap) {
            size_t c = r < cap - 1 - n ? r : cap - 1 - n;
            memcpy(out + n, tmp, c);
            n += c;
        }
    }
    if (out) out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double json_num(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(text, pat);
    assert_non_null(p);
    return atof(p + strlen(pat));
}

static void test_pipeline(void **state)
{
    static char out[1 << 16];
    assert_int_equal(run(out, sizeof out, "%s gen --out %s/data --items 600 --categories 6 --train-users 3000 "
                                          "--test-users 300 --seed 3", bin, dir), 0);
    assert_int_equal(run(out, sizeof out, "%s prep --in %s/data/train.txt --items %s/data/items.tsv --out %s/shards "
                                          "--shards 2", bin, dir, dir, dir), 0);
    assert_non_null(strstr(out, "3000 examples"));
    assert_int_equal(run(out, sizeof out, "%s train --data %s/shards --model %s/model --metrics %s/m.jsonl --epochs 3 "
                                          "--negatives 256 --dim 16 --hidden 32 --quiet", bin, dir, dir, dir), 0);
    assert_true(json_num(out, "examples") == 9000);
    assert_int_equal(run(out, sizeof out, "%s eval --model %s/model --test %s/data/test.txt --items %s/data/items.tsv "
                                          "--json", bin, dir, dir, dir), 0);
    double recall = json_num(out, "recall");
    /* 6 planted categories of 100 items: a random ranking gets Recall@10 ~ 0.017 */
    assert_true(recall > 0.05);
    assert_true(json_num(out, "fold_ratio") < 0.5);
    assert_true(json_num(out, "queries") == 300);
    /* the metrics file has one JSON object per line with a loss */
    assert_int_equal(run(out, sizeof out, "grep -c '\"loss\"' %s/m.jsonl", dir), 0);
    assert_true(atoi(out) >= 1);
    /* recommend: one line per query, k items each, history left out */
    assert_int_equal(run(out, sizeof out, "printf 'hist=1,7,13 region=1\\nhist=2\\n' | %s recommend --model %s/model "
                                          "--k 5", bin, dir), 0);
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
                         bin, dir, dir, dir), 0);
    assert_non_null(strstr(out, "600 16"));

    /* a corrupt model is refused by eval, recommend and export, with the file named */
    assert_int_equal(run(out, sizeof out, "cp -r %s/model %s/bad && printf 'X' | dd of=%s/bad/table-0.bin bs=1 seek=100 "
                                          "conv=notrunc", dir, dir, dir), 0);
    assert_int_equal(run(out, sizeof out, "%s eval --model %s/bad --test %s/data/test.txt", bin, dir, dir), 1);
    assert_non_null(strstr(out, "table-0.bin"));
    assert_non_null(strstr(out, "checksum"));
    assert_int_equal(run(out, sizeof out, "echo hist=1 | %s recommend --model %s/bad", bin, dir), 1);
    assert_int_equal(run(out, sizeof out, "%s export --model %s/bad --out %s/x", bin, dir, dir), 1);
}

static void test_bad_input(void **state)
{
    static char out[1 << 14];
    assert_int_equal(run(out, sizeof out, "printf 'pos=1 hist=2,3\\npos=1:abc hist=4\\npos=2 hist=5\\n' > %s/bad.txt", dir),
                     0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pipeline), cmocka_unit_test(test_bad_input)};
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_ratelog.c: rate-limited log lines (common/ratelog.c): the first line of a key is written, repeats
 * within the interval are counted, not written, and the next line after the interval says how many
 * were suppressed; keys are independent; the key table has fixed size (the least recently logged key
 * is forgotten first); a NULL stream counts without writing. The interval under test is time itself,
 * so one test waits 5 ms of monotonic time for it (the only waiting here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/ratelog.h"

static size_t lines_in(FILE *f, char *buf, size_t cap)
{
    fflush(f);
    long n = ftell(f);
    rewind(f);
    size_t got = fread(buf, 1, cap - 1, f);
    buf[got] = 0;
    fseek(f, n, SEEK_SET);
    size_t lines = 0;
    for (size_t i = 0; i < got; i++)
        lines += buf[i] == '\n';
    return lines;
}

static void test_suppress_and_report(void **state)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    psrec_ratelog_t *rl = NULL;
    assert_int_equal(psrec_ratelog_new(&rl, f, 0), PSREC_EINVAL);
    assert_null(rl);
    assert_int_equal(psrec_ratelog_new(&rl, f, 5), PSREC_OK);
    char buf[4096];
    assert_int_equal(psrec_ratelog(rl, "peer-a", "refused %s", "a"), 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(psrec_ratelog(rl, "peer-a", "refused %s", "a"), 0);
    assert_int_equal(psrec_ratelog(rl, "peer-b", "refused %s", "b"), 1); /* keys are independent */
    assert_int_equal(lines_in(f, buf, sizeof buf), 2);
    assert_non_null(strstr(buf, "psrec: refused a\n"));
    /* after the interval: written, with the count of what was suppressed */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 6000000L);
    assert_int_equal(psrec_ratelog(rl, "peer-a", "refused %s", "a"), 1);
    assert_int_equal(lines_in(f, buf, sizeof buf), 3);
    assert_non_null(strstr(buf, "refused a (10 more like it"));
    assert_int_equal(psrec_ratelog_events(rl), 13);
    psrec_ratelog_destroy(&rl);
    assert_null(rl);
    psrec_ratelog_destroy(&rl);
    fclose(f);
}

static void test_fixed_table(void **state)
{
    FILE *f = tmpfile();
    psrec_ratelog_t *rl = NULL;
    assert_int_equal(psrec_ratelog_new(&rl, f, 3600000), PSREC_OK);
    char key[32], buf[1 << 16];
    for (int i = 0; i < PSREC_RATELOG_KEYS; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(psrec_ratelog(rl, key, "line %d", i), 1);
    }
    assert_int_equal(psrec_ratelog(rl, "k5", "again"), 0); /* still remembered */
    /* one more key pushes out the least recently logged one (k0), which is then new again */
    assert_int_equal(psrec_ratelog(rl, "new", "new"), 1);
    assert_int_equal(psrec_ratelog(rl, "k0", "back"), 1);
    assert_int_equal(psrec_ratelog(rl, "k0", "back"), 0);
    assert_int_equal(lines_in(f, buf, sizeof buf), PSREC_RATELOG_KEYS + 2);
    psrec_ratelog_destroy(&rl);
    fclose(f);
    /* no stream: counted, nothing written */
    assert_int_equal(psrec_ratelog_new(&rl, NULL, 1000), PSREC_OK);
    assert_int_equal(psrec_ratelog(rl, "x", "quiet"), 1);
    assert_int_equal(psrec_ratelog(rl, "x", "quiet"), 0);
    assert_int_equal(psrec_ratelog_events(rl), 2);
    psrec_ratelog_destroy(&rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suppress_and_report),
        cmocka_unit_test(test_fixed_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

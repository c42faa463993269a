/* test_security.c: who may talk to a psrec job, end to end with real processes over tcp loopback.
 * - The job token: a worker and a server holding another job's token are refused at the coordinator
 *   (clear error on their side, one log line on the coordinator's), even with the same job id and
 *   port; the right token trains; `psrec status` needs the token and shows what listens where (loopback
 *   by default); a role started without any token is told how to get one.
 * - Two jobs on overlapping ports: job B's server and worker are pointed at job A's coordinator before
 *   A's own members register (with the same job id); they are refused, and A's model is byte for byte
 *   the model A trains alone (one worker, --sync, fixed seed).
 * - CURVE (--secure): a client key not listed in authorized_keys is refused, a listed one trains, and
 *   launch/run.sh --secure runs a job with keys it makes. Skipped, saying why, if libzmq has no CURVE.
 * Synchronisation is by process exit and bounded request deadlines, never by sleeping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/test_util.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/zsec.h"

static const char *bin, *src, *dir = psrec_test_tmp;
static char out[1 << 16];
/* psrec_test_run, echoing the command, its exit status and the start of its output (a failure then
 * shows what each process said). */
static int run(char *o, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *o, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = psrec_test_run(o, cap, "%s", cmd);
    print_message("$ %s\n  -> exit %d%s%.400s\n", cmd, rc, o[0] ? ": " : "", o);
    return rc;
}

/* Options every training here uses: tiny and deterministic. */
#define TRAIN "--data %s/s1 --threads 1 --epochs 2 --dim 8 --negatives 32 --seed 5 --sync --no-progress"

static int setup(void **state)
{
    bin = getenv("PSREC_BIN");
    src = getenv("PSREC_SRC");
    if (!bin) bin = "./psrec";
    if (!src) src = "..";
    if (psrec_test_mktmp("security")) return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s gen --out %s/data --items 300 --categories 5 --train-users 2000 --test-users 100 --seed 3 "
             "2>/dev/null && %s prep --in %s/data/train.txt --items %s/data/items.tsv --out %s/s1 --shards 1 "
             "2>/dev/null && %s keygen --token %s/a.token 2>/dev/null && %s keygen --token %s/b.token 2>/dev/null",
             bin, dir, bin, dir, dir, dir, bin, dir, bin, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    return psrec_test_rmtmp();
}

static void test_token(void **state)
{
    int port = psrec_test_free_port();
    /* no token at all: refused with the way to make one */
    assert_int_equal(run(out, sizeof out, "%s coord --data %s/s1 --bind tcp://127.0.0.1:%d", bin, dir, port), 2);
    assert_non_null(strstr(out, "psrec keygen --token"));
    assert_int_equal(run(out, sizeof out, "%s status --coord tcp://127.0.0.1:%d", bin, port), 2);
    assert_non_null(strstr(out, "--token-file FILE is required"));
    /* keygen never overwrites a token; a token readable by others is refused */
    assert_int_equal(run(out, sizeof out, "%s keygen --token %s/a.token", bin, dir), 1);
    assert_non_null(strstr(out, "exists already"));
    assert_int_equal(run(out, sizeof out,
                         "cp %s/a.token %s/open.token && chmod 644 %s/open.token && %s status --coord "
                         "tcp://127.0.0.1:%d --token-file %s/open.token",
                         dir, dir, dir, bin, port, dir),
                     1);
    assert_non_null(strstr(out, "chmod 600"));
    /* a job (coordinator and server in the background, bounded by timeout), status, an intruder, a worker */
    assert_int_equal(
        run(out, sizeof out,
            "cd %s && (timeout 60 %s coord --bind tcp://127.0.0.1:%d --job-id 9 --token-file a.token " TRAIN
            " > coord.log 2>&1 &) && (timeout 60 %s server --coord tcp://127.0.0.1:%d --job-id 9 --token-file a.token"
            " > server.log 2>&1 &)",
            dir, bin, port, dir, bin, port),
        0);
    /* status: with the wrong token refused; with the right one, once the server registered, it shows the
     * endpoints, all on loopback (the default) */
    assert_int_equal(
        run(out, sizeof out, "%s status --coord tcp://127.0.0.1:%d --token-file %s/b.token", bin, port, dir), 1);
    assert_non_null(strstr(out, "refused this process's token"));
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        run(out, sizeof out, "%s status --coord tcp://127.0.0.1:%d --token-file %s/a.token --timeout 500", bin, port,
            dir);
        ok = strstr(out, "server     0 alive  tcp://127.0.0.1:") != NULL;
    }
    assert_true(ok);
    char want[128];
    snprintf(want, sizeof want, "coordinator listens on tcp://127.0.0.1:%d; connection security: token", port);
    assert_non_null(strstr(out, want));
    /* another job's token, same job id: refused before it can register */
    assert_int_equal(run(out, sizeof out,
                         "cd %s && %s worker --coord tcp://127.0.0.1:%d --job-id 9 --token-file b.token --timeout 2000 "
                         "--quiet " TRAIN,
                         dir, bin, port, dir),
                     1);
    assert_non_null(strstr(out, "refused this process's token for job 9"));
    /* the right token trains; the job ends, coordinator and server exit */
    assert_int_equal(run(out, sizeof out,
                         "cd %s && %s worker --coord tcp://127.0.0.1:%d --job-id 9 --token-file a.token --quiet " TRAIN,
                         dir, bin, port, dir),
                     0);
    assert_true(psrec_test_json_num(out, "examples") == 4000);
    /* the coordinator logged the refusal, once per peer and reason */
    assert_int_equal(
        run(out, sizeof out, "grep -c 'refused a connection from 127.0.0.1: wrong token' %s/coord.log", dir), 0);
    assert_true(atoi(out) >= 1 && atoi(out) <= 2);
}

/* Job A alone, or with job B's server and worker aimed at A's coordinator first (same job id). */
static void run_job_a(const char *model, int with_b)
{
    int pa = psrec_test_free_port();
    assert_int_equal(
        run(out, sizeof out,
            "cd %s && (timeout 60 %s coord --bind tcp://127.0.0.1:%d --job-id 1 --token-file a.token " TRAIN
            " > coord-%s.log 2>&1 &)",
            dir, bin, pa, dir, model),
        0);
    if (with_b) {
        /* B's members, configured with A's port: refused whatever the order */
        assert_int_equal(run(out, sizeof out,
                             "cd %s && %s server --coord tcp://127.0.0.1:%d --job-id 1 --token-file b.token", dir, bin,
                             pa),
                         1);
        assert_non_null(strstr(out, "refused this process's token"));
        assert_int_equal(run(out, sizeof out,
                             "cd %s && %s worker --coord tcp://127.0.0.1:%d --job-id 1 --token-file b.token "
                             "--model b-model --quiet --timeout 2000 " TRAIN,
                             dir, bin, pa, dir),
                         1);
        assert_non_null(strstr(out, "refused this process's token"));
    }
    assert_int_equal(
        run(out, sizeof out,
            "cd %s && (timeout 60 %s server --coord tcp://127.0.0.1:%d --job-id 1 --token-file a.token > "
            "server-%s.log 2>&1 &) && %s worker --coord tcp://127.0.0.1:%d --job-id 1 --token-file a.token "
            "--model %s --quiet " TRAIN,
            dir, bin, pa, model, bin, pa, model, dir),
        0);
}

static void test_two_jobs_overlapping_ports(void **state)
{
    run_job_a("alone", 0);
    run_job_a("with-b", 1);
    for (int t = 0; t < 3; t++)
        assert_int_equal(run(out, sizeof out, "cmp %s/alone/table-%d.bin %s/with-b/table-%d.bin", dir, t, dir, t), 0);
    assert_int_equal(run(out, sizeof out, "test -e %s/b-model", dir), 1);
    assert_int_equal(run(out, sizeof out, "grep -c 'wrong token' %s/coord-with-b.log", dir), 0);
}

static void test_curve(void **state)
{
    if (!psrec_zsec_has_curve()) {
        print_message("this libzmq has no CURVE (zmq_has(\"curve\") is false): the --secure tests are skipped\n");
        skip();
    }
    int port = psrec_test_free_port();
    /* keys for the job; an intruder with its own client key and the job's server.pub */
    assert_int_equal(
        run(out, sizeof out,
            "cd %s && %s keygen --out keys && %s keygen --out intruder --name client && cp keys/server.pub "
            "intruder/",
            dir, bin, bin),
        0);
    assert_int_equal(
        run(out, sizeof out,
            "cd %s && (timeout 60 %s coord --bind tcp://127.0.0.1:%d --job-id 3 --secure --keys keys " TRAIN
            " > coord-curve.log 2>&1 &) && (timeout 60 %s server --coord tcp://127.0.0.1:%d --job-id 3 --secure --keys "
            "keys > server-curve.log 2>&1 &)",
            dir, bin, port, dir, bin, port),
        0);
    assert_int_equal(run(out, sizeof out,
                         "cd %s && %s worker --coord tcp://127.0.0.1:%d --job-id 3 --secure --keys intruder --quiet "
                         "--timeout 2000 " TRAIN,
                         dir, bin, port, dir),
                     1);
    assert_non_null(strstr(out, "refused this process's CURVE key"));
    /* the token mode against a CURVE job: another mechanism, named */
    assert_int_equal(run(out, sizeof out,
                         "cd %s && %s worker --coord tcp://127.0.0.1:%d --job-id 3 --token-file a.token --quiet "
                         "--timeout 2000 " TRAIN,
                         dir, bin, port, dir),
                     1);
    assert_non_null(strstr(out, "every role of a job must use the same"));
    assert_int_equal(run(out, sizeof out,
                         "cd %s && %s worker --coord tcp://127.0.0.1:%d --job-id 3 --secure --keys keys --quiet " TRAIN,
                         dir, bin, port, dir),
                     0);
    assert_true(psrec_test_json_num(out, "examples") == 4000);
    assert_int_equal(run(out, sizeof out, "grep -c 'is not in keys/authorized_keys' %s/coord-curve.log", dir), 0);
    /* launch/run.sh --secure: keys made for the job */
    assert_int_equal(run(out, sizeof out,
                         "%s/launch/run.sh --bin %s --port %d --logs %s/run-secure --quiet --secure -- --data %s/s1 "
                         "--epochs 1 --dim 8 --negatives 32",
                         src, bin, psrec_test_free_port(), dir, dir),
                     0);
    assert_int_equal(run(out, sizeof out, "grep -c 'connection security: curve' %s/run-secure/coord.log", dir), 0);
    assert_int_equal(run(out, sizeof out, "stat -c %%a %s/run-secure/keys/client.key", dir), 0);
    assert_int_equal(atoi(out), 600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_two_jobs_overlapping_ports),
        cmocka_unit_test(test_curve),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

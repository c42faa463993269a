/* test_recovery.c: fault tolerance end to end with real processes (issue 4, docs/operations.md):
 *  - checkpoint rounds during training, a model exported from a round without a cluster;
 *  - kill -9 of a whole training run, then --resume: it trains only what was left and reaches the
 *    uninterrupted run's Recall@10; a corrupt newest round is refused and the older one used;
 *  - chaos: 2 servers x 2 workers through launch/run.sh --restart, one server, then one worker, then the
 *    coordinator killed with SIGKILL at random moments; the run completes by itself and reaches the
 *    uninterrupted run's Recall@10 within 5% (means of four runs each: single asynchronous runs spread
 *    by ~4% on this data).
 * Waiting is on conditions (a round's MANIFEST appearing, process exit) with deadlines, never a fixed
 * sleep standing in for synchronisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/test_util.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[64];
static const char *bin, *src;

#define run psrec_test_run
#define json_num psrec_test_json_num

static int setup(void **state)
{
    (void)state;
    bin = getenv("PSREC_BIN");
    src = getenv("PSREC_SRC");
    if (!bin) bin = "./psrec";
    if (!src) src = "..";
    strcpy(dir, "/tmp/psrec-recovery-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s gen --out %s/data --items 1000 --categories 10 --train-users 16000 --test-users 10000 --seed 5 "
             "2>/dev/null && %s prep --in %s/data/train.txt --items %s/data/items.tsv --out %s/s2 --shards 2 "
             "2>/dev/null",
             bin, dir, bin, dir, dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static double recall_of(const char *model)
{
    static char out[8192];
    assert_int_equal(run(out, sizeof out, "%s eval --model %s/%s --test %s/data/test.txt --json", bin, dir, model, dir),
                     0);
    return json_num(out, "recall");
}

/* The newest round of ckpt with a MANIFEST (0: none). */
static unsigned long newest_round(const char *ckpt)
{
    unsigned long best = 0;
    DIR *d = opendir(ckpt);
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        unsigned long r;
        char path[512];
        if (sscanf(e->d_name, "round-%lu", &r) != 1 || r <= best) continue;
        snprintf(path, sizeof path, "%s/%s/MANIFEST", ckpt, e->d_name);
        if (access(path, F_OK) == 0) best = r;
    }
    closedir(d);
    return best;
}

static unsigned long newest_round_of(const char *d, const char *name)
{
    char ck[256];
    snprintf(ck, sizeof ck, "%s/%s", d, name);
    return newest_round(ck);
}

/* Waits (bounded) until ckpt has a complete round newer than `after`, or pid exited. 1 = found. */
static int wait_round(const char *ckpt, unsigned long after, pid_t pid, double deadline_s)
{
    double end = psrec_test_now() + deadline_s;
    while (psrec_test_now() < end) {
        if (newest_round(ckpt) > after) return 1;
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid) return 0;
        usleep(20000); /* polling a condition, not a delay standing in for one */
    }
    return 0;
}

/* Starts a shell command in the background (its own process group); returns its pid. */
static pid_t spawn(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

/* Waits for pid with a deadline; kills its group and fails the test when it is exceeded. */
static int wait_exit(pid_t pid, double deadline_s)
{
    double end = psrec_test_now() + deadline_s;
    int st;
    while (psrec_test_now() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, &st, 0);
    print_message("process %d did not finish within %.0f s\n", (int)pid, deadline_s);
    return -1;
}

#define OPTS "--epochs 10 --dim 64 --negatives 1024 --seed 4 --threads 2 --servers 2"
/* one worker, synchronous: the uninterrupted run is deterministic, so the comparison is not noise */
#define OPTS1 "--epochs 10 --dim 64 --negatives 1024 --seed 4 --threads 1 --servers 2 --sync"

/* Rounds are taken while training; the newest K are kept; a round becomes a model without a cluster. */
static void test_rounds_and_export(void **state)
{
    (void)state;
    static char out[1 << 15];
    assert_int_equal(run(out, sizeof out,
                         "%s train --data %s/s2 --model %s/full " OPTS " --quiet --checkpoint-dir %s/ck1 "
                         "--checkpoint-every 0.2s --keep-checkpoints 2",
                         bin, dir, dir, dir),
                     0);
    char ck[128];
    snprintf(ck, sizeof ck, "%s/ck1", dir);
    unsigned long r = newest_round(ck);
    print_message("newest complete round: %lu\n", r);
    /* no unfinished snapshot left behind (a writer cut short at the end of the job removes its file) */
    static char tmpl[4096];
    assert_int_equal(run(tmpl, sizeof tmpl, "find %s -name '*.tmp.*'", ck), 0);
    assert_int_equal(strlen(tmpl), 0);
    assert_true(r >= 3); /* a run of ~2 s, a round every 0.2 s */
    assert_int_equal(run(out, sizeof out, "ls -d %s/ck1/round-*/MANIFEST | wc -l", dir), 0);
    assert_int_equal(atoi(out), 2);
    assert_int_equal(
        run(out, sizeof out, "%s export --checkpoint %s/ck1 --data %s/s2 --model-out %s/fromck", bin, dir, dir, dir),
        0);
    double rf = recall_of("full"), rc = recall_of("fromck");
    print_message("Recall@10 final model %.4f, exported from round %lu %.4f\n", rf, r, rc);
    assert_true(rf > 0.1);
    assert_true(rc > 0.5 * rf); /* the round is a trained model, a little before the end */
    /* a corrupt newest round is refused (named) and the older complete one is used */
    assert_int_equal(run(out, sizeof out,
                         "f=$(ls %s/ck1/round-*/server-1.snap | tail -1); printf 'X' | dd of=$f bs=1 seek=200 "
                         "conv=notrunc 2>/dev/null && %s export --checkpoint %s/ck1 --data %s/s2 --model-out %s/old",
                         dir, bin, dir, dir, dir),
                     0);
    assert_non_null(strstr(out, "server-1.snap"));
    assert_non_null(strstr(out, "refused"));
    /* with every round damaged there is nothing to export: a clear error, exit 1 */
    assert_int_equal(run(out, sizeof out,
                         "for f in %s/ck1/round-*/server-0.snap; do truncate -s 100 $f; done; %s export --checkpoint "
                         "%s/ck1 --data %s/s2 --model-out %s/none",
                         dir, bin, dir, dir, dir),
                     1);
    assert_non_null(strstr(out, "no complete checkpoint round"));
}

/* kill -9 of the whole run after a round, then --resume: only the rest is trained, the result matches. */
static void test_kill_and_resume(void **state)
{
    (void)state;
    static char out[1 << 15];
    char ck[128];
    snprintf(ck, sizeof ck, "%s/ck2", dir);
    assert_int_equal(run(out, sizeof out, "%s train --data %s/s2 --model %s/ref " OPTS1 " --quiet", bin, dir, dir), 0);
    double total = json_num(out, "examples");
    pid_t pid = spawn("exec %s train --data %s/s2 --model %s/res " OPTS1 " --quiet --checkpoint-dir %s "
                      "--checkpoint-every 0.2s > %s/run1.out 2>&1",
                      bin, dir, dir, ck, dir);
    assert_true(wait_round(ck, 1, pid, 60)); /* round 2 complete: well inside the run */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    unsigned long r = newest_round(ck);
    assert_int_equal(run(out, sizeof out, "cp -r %s %s-copy", ck, ck), 0);
    assert_int_equal(
        run(out, sizeof out, "%s train --data %s/s2 --model %s/res " OPTS1 " --resume %s", bin, dir, dir, ck), 0);
    assert_non_null(strstr(out, "resuming from checkpoint round"));
    double rest = json_num(out, "examples");
    print_message("killed after round %lu; resumed run trained %.0f of %.0f examples\n", r, rest, total);
    assert_true(rest > 0 && rest < total);
    /* the same round resumed by two workers (one data shard each) and three servers trains the same rest */
    assert_int_equal(run(out, sizeof out,
                         "%s train --data %s/s2 --model %s/res2 --epochs 10 --dim 64 --negatives 1024 --seed 4 "
                         "--threads 2 --servers 3 --quiet --resume %s-copy",
                         bin, dir, dir, ck),
                     0);
    assert_true(json_num(out, "examples") == rest);
    assert_true(recall_of("res2") > 0.1);
    double rr = recall_of("ref"), rs = recall_of("res");
    print_message("Recall@10 uninterrupted %.4f, killed and resumed %.4f\n", rr, rs);
    assert_true(rr > 0.1);
    assert_true(rs >= 0.95 * rr);
    /* resuming a directory without a complete round is a clear error */
    assert_int_equal(run(out, sizeof out, "mkdir -p %s/empty && %s train --data %s/s2 " OPTS1 " --resume %s/empty", dir,
                         bin, dir, dir),
                     1);
    assert_non_null(strstr(out, "no complete checkpoint round"));
}

/* A disk that refuses every write (PSREC_FAULTS write_fail=1): every round is abandoned, training is not. */
static void test_failing_disk(void **state)
{
    (void)state;
    static char out[1 << 16];
    assert_int_equal(run(out, sizeof out,
                         "PSREC_FAULTS=write_fail=1 %s train --data %s/s2 --epochs 2 --dim 32 --negatives 256 "
                         "--threads 2 --servers 2 --quiet --checkpoint-dir %s/ckfail --checkpoint-every 0.1s",
                         bin, dir, dir),
                     0);
    assert_true(json_num(out, "examples") == 32000);
    assert_non_null(strstr(out, "abandoned"));
    assert_int_equal(newest_round_of(dir, "ckfail"), 0);
}

/* Chaos: run.sh --restart, 2 servers x 2 workers; kill -9 a server, a worker, the coordinator. */
static void test_chaos(void **state)
{
    (void)state;
    static char out[1 << 16];
    srand((unsigned)time(NULL));
    const char *opts = "--epochs 5 --dim 32 --negatives 256 --seed 4 --timeout 1000";
    /* asynchronous 2 x 2 runs spread by ~4% here (a run takes ~2 s): means of four on both sides */
    enum { RUNS = 4 };
    double rcalm = 0;
    for (int i = 0; i < RUNS; i++) {
        assert_int_equal(run(out, sizeof out,
                             "%s/launch/run.sh --quiet --bin %s --servers 2 --workers 2 --port %d --logs %s/calm -- "
                             "--data %s/s2 --model %s/calm %s",
                             src, bin, psrec_test_free_port(), dir, dir, dir, opts),
                         0);
        rcalm += recall_of("calm") / RUNS;
    }
    /* chaos runs, each with kills at other random moments: their mean against the calm mean */
    double rchaos = 0;
    for (int k = 0; k < RUNS; k++) {
        char ck[128], name[32];
        snprintf(ck, sizeof ck, "%s/ck3-%d", dir, k);
        snprintf(name, sizeof name, "chaos%d", k);
        int port = psrec_test_free_port();
        pid_t pid = spawn("exec %s/launch/run.sh --quiet --restart --bin %s --servers 2 --workers 2 --port %d --logs "
                          "%s/%s -- --data %s/s2 --model %s/%s %s --checkpoint-dir %s --checkpoint-every 0.1s "
                          "--durability log > %s/%s.out 2>&1",
                          src, bin, port, dir, name, dir, dir, name, opts, ck, dir, name);
        /* victims by command line (the port makes them this run's): a server, a worker, the coordinator
         * ("[s]erver": the pattern must not match the shell that runs pkill) */
        const char *victims[3] = {"[s]erver --coord tcp://127.0.0.1:%d .*--rank 1 ",
                                  "[w]orker --coord tcp://127.0.0.1:%d .*--rank 0 ",
                                  "[c]oord --bind tcp://127.0.0.1:%d "};
        unsigned long seen = 0;
        for (int v = 0; v < 3; v++) {
            /* the server and the worker die after a new complete round; the coordinator soon after (no
             * round may start again: one worker can be finishing while the restarted one catches up) */
            if (v < 2 && !wait_round(ck, seen, pid, 90)) { /* say why: the run's own words */
                run(out, sizeof out, "cat %s/%s.out; tail -n 8 %s/%s/*.log", dir, name, dir, name);
                fail_msg("run %d: no new complete round after round %lu (victim %d):\n%s", k, seen, v, out);
            }
            seen = newest_round(ck);
            usleep((useconds_t)(rand() % 400) * 1000); /* a random moment after the round (not synchronisation) */
            char pat[256];
            snprintf(pat, sizeof pat, victims[v], port);
            assert_int_equal(run(out, sizeof out, "pkill -9 -f '%s'", pat), 0);
            print_message("run %d: killed %.40s after round %lu\n", k, pat, seen);
        }
        int rc = wait_exit(pid, 120);
        run(out, sizeof out, "cat %s/%s.out; tail -n 4 %s/%s/*.log", dir, name, dir, name);
        if (rc) print_message("%s\n", out);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, "restarting it"));
        double r = recall_of(name);
        print_message("run %d: Recall@10 with three kill -9: %.4f\n", k, r);
        rchaos += r / RUNS;
    }
    print_message("Recall@10 uninterrupted %.4f, with three kill -9 %.4f (means of %d)\n", rcalm, rchaos, RUNS);
    assert_true(rcalm > 0.1);
    assert_true(rchaos >= 0.95 * rcalm);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]); /* e.g. test_chaos */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounds_and_export),
        cmocka_unit_test(test_kill_and_resume),
        cmocka_unit_test(test_failing_disk),
        cmocka_unit_test(test_chaos),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

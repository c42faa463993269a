/* test_multihost.c: launch/run.sh --hosts across real network boundaries (issue 7, docs/cluster.md).
 * Three "hosts" are network namespaces joined by veth pairs to a bridge, each with its own address and
 * an sshd that accepts only a key made for the test (tests/netns-hosts.sh); run.sh runs in the root
 * namespace, like a launch node, and starts every role over ssh. The namespaces share the file system,
 * as hosts sharing an NFS home would (data, model and checkpoint directory under the same paths).
 *  - 2 servers x 2 workers over three hosts train and evaluate, reaching the embedded trainer's
 *    Recall@10; every role listened on its own host's address; the secrets' copies are gone afterwards;
 *  - a bad hostfile, a host without the binary and an unreachable host are clear errors; Ctrl-C and
 *    kill -9 of run.sh leave no role running on any host (the first run with roles given as counts,
 *    CURVE keys and the binary copied to each host);
 *  - fault tolerance across hosts: the link of the host running server 1 and worker 1 is cut mid-run
 *    (`ip link set ... down`), run.sh notices the lost host, restarts both there once the link is back,
 *    the server recovers its shard from the shared checkpoint directory and push log, and the run
 *    completes with the uninterrupted run's Recall@10.
 * Skipped (exit 77, reported by ctest as skipped, never as passed) when not root, when `ip netns` does
 * not work or sshd is missing. Waiting is on conditions with deadlines, never fixed sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/test_util.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[64], net[96], skip_reason[4096];
static char host[3][32]; /* the three hosts' addresses */
static const char *bin, *src;
static double calm_recall, total_examples;

#define run psrec_test_run
#define json_num psrec_test_json_num
#define OPTS "--epochs 6 --dim 32 --negatives 256 --seed 4"

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    /* the namespaces, their sshds and anything left running in them, the bridge and the veths */
    snprintf(cmd, sizeof cmd, "%s/tests/netns-hosts.sh down %s; rm -rf %s", src, net, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    bin = getenv("PSREC_BIN");
    src = getenv("PSREC_SRC");
    /* absolute: the commands run from other directories */
    static char absbin[4096], abssrc[4096];
    if (!realpath(bin ? bin : "./psrec", absbin) || !realpath(src ? src : "..", abssrc)) return -1;
    bin = absbin;
    src = abssrc;
    strcpy(dir, "/tmp/psrec-multihost-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(net, sizeof net, "%s/net", dir);
    static char out[4096];
    int rc = run(out, sizeof out, "%s/tests/netns-hosts.sh up %s 3", src, net);
    if (rc == 77) {
        snprintf(skip_reason, sizeof skip_reason, "%s", out);
        return 0;
    }
    if (rc != 0) {
        print_message("cannot set up the hosts: %s\n", out);
        teardown(state); /* cmocka runs no group teardown after a failed setup */
        return -1;
    }
    FILE *f = fopen(strcat(strcpy(out, net), "/hosts"), "r");
    int n = 0;
    for (; f && n < 3; n++)
        if (fscanf(f, "%31s", host[n]) != 1) break;
    if (f) fclose(f);
    if (n != 3) {
        teardown(state);
        return -1;
    }
    char cmd[1024];
    snprintf(
        cmd, sizeof cmd,
        "%s gen --out %s/data --items 1000 --categories 10 --train-users 8000 --test-users 4000 --seed 21 "
        "2>/dev/null && %s prep --in %s/data/train.txt --items %s/data/items.tsv --out %s/s2 --shards 2 "
        "2>/dev/null && %s prep --in %s/data/train.txt --items %s/data/items.tsv --out %s/s3 --shards 3 2>/dev/null",
        bin, dir, bin, dir, dir, dir, bin, dir, dir, dir);
    if (system(cmd) != 0) {
        teardown(state);
        return -1;
    }
    return 0;
}

static double recall_of(const char *model)
{
    static char out[8192];
    assert_int_equal(run(out, sizeof out, "%s eval --model %s/%s --test %s/data/test.txt --json", bin, dir, model, dir),
                     0);
    return json_num(out, "recall");
}

/* Writes the hostfile `name` in dir; lines use %1$s..%3$s for the three hosts' addresses. */
static void hostfile(const char *name, const char *fmt)
{
    char path[128], text[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(text, sizeof text, fmt, host[0], host[1], host[2]);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* run.sh --hosts with the test's ssh command, from dir (the roles run there too). */
#define RUNSH "cd %s && exec %s/launch/run.sh --bin %s --ssh \"$(cat %s/ssh)\" "
#define RUNSH_ARGS dir, src, bin, net

/* psrec processes still running in the namespaces (the roles of a job) */
static int roles_left(void)
{
    static char out[4096];
    assert_int_equal(run(out, sizeof out, "%s/tests/netns-hosts.sh procs %s psrec", src, net), 0);
    return atoi(out);
}

/* Waits (bounded) until no role is left in any namespace; returns the number left. */
static int wait_no_roles(double deadline_s)
{
    double end = psrec_test_now() + deadline_s;
    int n;
    while ((n = roles_left()) > 0 && psrec_test_now() < end)
        usleep(50000); /* polling a condition */
    return n;
}

/* Every "run directory /tmp/..." run.sh printed is gone (the copies of the secrets with it). */
static void assert_run_dirs_gone(const char *out)
{
    int n = 0;
    for (const char *p = out; (p = strstr(p, "run directory ")); p++) {
        char path[128];
        assert_int_equal(sscanf(p + 14, "%127[^ ,\n]", path), 1);
        struct stat st;
        assert_int_not_equal(stat(path, &st), 0);
        n++;
    }
    assert_true(n >= 3);
}

#define SKIP_IF_NEEDED()                                                                                               \
    do {                                                                                                               \
        if (skip_reason[0]) {                                                                                          \
            print_message("skipped: %s", skip_reason);                                                                 \
            skip();                                                                                                    \
        }                                                                                                              \
    } while (0)

/* The 2 x 2 run over three hosts with named roles (once; the link-cut test compares against it). */
static void calm_run(void)
{
    static char out[1 << 16], logs[1 << 14];
    if (calm_recall > 0) return;
    assert_int_equal(run(out, sizeof out, "%s train --data %s/s2 --model %s/emb --threads 2 --servers 2 --quiet " OPTS,
                         bin, dir, dir),
                     0);
    double total = total_examples = json_num(out, "examples");
    double re = recall_of("emb");
    hostfile("hosts-named", "# three hosts\n%s coord\n%s server worker   # rank 0 of each\n%s server worker\n");
    double t0 = psrec_test_now();
    assert_int_equal(run(out, sizeof out,
                         RUNSH "--hosts hosts-named --port 7750 --logs logs-calm -- --data s2 --model calm " OPTS,
                         RUNSH_ARGS),
                     0);
    double secs = psrec_test_now() - t0;
    calm_recall = recall_of("calm");
    print_message("Recall@10 embedded %.4f, 2x2 over three hosts %.4f (run.sh took %.1f s)\n", re, calm_recall, secs);
    assert_true(re > 0.1);
    assert_true(calm_recall >= 0.9 * re); /* one asynchronous run each: they spread by ~4% */
    /* each role listened on its own host; each worker trained its half of the data */
    assert_int_equal(
        run(logs, sizeof logs, "cd %s/logs-calm && cat coord.log server-0.log server-1.log worker-*.log", dir), 0);
    char want[128];
    snprintf(want, sizeof want, "listening on tcp://%s:7750", host[0]);
    assert_non_null(strstr(logs, want));
    snprintf(want, sizeof want, "rank 0 serving on tcp://%s:7751", host[1]);
    assert_non_null(strstr(logs, want));
    snprintf(want, sizeof want, "rank 1 serving on tcp://%s:7752", host[2]);
    assert_non_null(strstr(logs, want));
    assert_non_null(strstr(logs, "connection security: token"));
    snprintf(want, sizeof want, "psrec worker: %.0f examples in", total / 2);
    const char *w0 = strstr(logs, want);
    assert_non_null(w0);
    assert_non_null(strstr(w0 + 1, want));
    assert_run_dirs_gone(out);
    assert_int_not_equal(run(NULL, 0, "test -e %s/logs-calm/.launch", dir), 0); /* run.sh's own files too */
    assert_int_equal(roles_left(), 0);
}

/* 2 servers x 2 workers over three hosts, named roles, the job token copied to each host. */
static void test_two_by_two_over_hosts(void **state)
{
    (void)state;
    SKIP_IF_NEEDED();
    calm_run();
}

/* Clear errors before anything starts, and nothing left behind after Ctrl-C or kill -9 of run.sh. */
static void test_errors_and_stopping(void **state)
{
    (void)state;
    SKIP_IF_NEEDED();
    static char out[1 << 16];
    hostfile("hosts-bad", "%s coord server\n%s worker gpu=1\n");
    assert_int_equal(run(out, sizeof out, RUNSH "--hosts hosts-bad -- --data s2", RUNSH_ARGS), 2);
    assert_non_null(strstr(out, "line 2: unknown word 'gpu=1'"));
    hostfile("hosts-2coord", "%s coord server\n%s coord worker\n");
    assert_int_equal(run(out, sizeof out, RUNSH "--hosts hosts-2coord -- --data s2", RUNSH_ARGS), 2);
    assert_non_null(strstr(out, "exactly one coord"));
    /* no binary at that path on the third host: named before any role starts */
    hostfile("hosts-nobin", "%s coord server\n%s worker\n%s worker bin=/nonexistent/psrec\n");
    assert_int_equal(run(out, sizeof out, RUNSH "--hosts hosts-nobin --logs logs-err -- --data s2", RUNSH_ARGS), 2);
    assert_non_null(strstr(out, "no executable psrec at /nonexistent/psrec"));
    /* a host that does not answer (an address nobody has on the bridge) */
    char unreachable[32];
    snprintf(unreachable, sizeof unreachable, "%.*s.77", (int)(strrchr(host[0], '.') - host[0]), host[0]);
    char text[256];
    snprintf(text, sizeof text, "%%1$s coord server worker\n%s worker\n", unreachable);
    hostfile("hosts-down", text);
    assert_int_equal(
        run(out, sizeof out, RUNSH "--hosts hosts-down --host-timeout 3 --logs logs-err -- --data s2", RUNSH_ARGS), 2);
    char want[96];
    snprintf(want, sizeof want, "cannot set up %s", unreachable);
    assert_non_null(strstr(out, want));
    assert_int_equal(roles_left(), 0);
    /* Ctrl-C (SIGINT) and kill -9 of run.sh while a long job runs on the hosts: the first with roles
     * given as counts (spread over the hosts) and CURVE keys, the second with named roles and a token */
    hostfile("hosts-named", "%s coord\n%s server worker\n%s server worker\n");
    hostfile("hosts-plain", "%s\n%s\n%s\n");
    for (int sig = 0; sig < 2; sig++) {
        char outf[128];
        snprintf(outf, sizeof outf, "%s/stop%d.out", dir, sig);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            signal(SIGINT, SIG_DFL);
            setpgid(0, 0);
            char cmd[2048];
            snprintf(cmd, sizeof cmd,
                     RUNSH "--hosts %s --port %d --logs logs-stop%d -- --data %s --epochs 100000 --dim 8 "
                           "--negatives 64 > %s 2>&1",
                     RUNSH_ARGS, sig == 0 ? "hosts-plain --servers 2 --workers 3 --secure --copy-bin" : "hosts-named",
                     7770 + 10 * sig, sig, sig == 0 ? "s3" : "s2", outf);
            execl("/bin/bash", "bash", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        /* training has started on every host: both workers' progress shows in the combined line */
        double end = psrec_test_now() + 30;
        int started = 0;
        while (!started && psrec_test_now() < end) {
            run(out, sizeof out, "cat %s", outf);
            started = strstr(out, sig == 0 ? "workers: 3/3" : "workers: 2/2") != NULL;
            if (!started) usleep(50000);
        }
        assert_true(started);
        assert_int_equal(roles_left(), sig == 0 ? 6 : 5);
        if (sig == 0) { /* worker i and server i on host i mod 3, all of them on CURVE */
            snprintf(want, sizeof want, "worker-2 on %s", host[2]);
            assert_non_null(strstr(out, want));
            snprintf(want, sizeof want, "server-1 on %s", host[1]);
            assert_non_null(strstr(out, want));
            assert_int_equal(run(out, sizeof out, "cat %s/logs-stop0/*.log", dir), 0);
            assert_non_null(strstr(out, "connection security: curve"));
            /* --copy-bin: the six roles run the copy in their host's run directory */
            assert_int_equal(run(out, sizeof out,
                                 "for p in $(pgrep -x psrec); do readlink /proc/$p/exe; done | grep -c "
                                 "'^/tmp/psrec-remote-.*/psrec$'"),
                             0);
            assert_int_equal(atoi(out), 6);
        }
        assert_int_equal(kill(pid, sig == 0 ? SIGINT : SIGKILL), 0);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (sig == 0) {
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 130);
        }
        /* Ctrl-C: run.sh stops the roles and cleans up; kill -9: run.sh is gone at once, and its ssh
         * sessions see their input end, so the wrapper on each host stops its role */
        int left = wait_no_roles(20);
        print_message("%s: %d role(s) left on the hosts\n", sig == 0 ? "SIGINT" : "SIGKILL", left);
        assert_int_equal(left, 0);
        run(out, sizeof out, "cat %s", outf);
        if (sig == 0) {
            assert_non_null(strstr(out, "interrupted"));
            assert_run_dirs_gone(out);
        } else { /* no EXIT trap ran: the run directories stay (documented); remove them here */
            assert_int_equal(run(NULL, 0,
                                 "sed -n 's/.*run directory \\(\\/tmp\\/psrec-remote-[A-Za-z0-9]*\\).*/\\1/p' %s "
                                 "| xargs -r rm -rf",
                                 outf),
                             0);
        }
        /* the ssh clients run.sh started, and the wrappers on the hosts, are gone too */
        end = psrec_test_now() + 10;
        while (run(out, sizeof out, "pgrep -f '[p]srec-role' | wc -l") == 0 && atoi(out) > 0 && psrec_test_now() < end)
            usleep(50000);
        assert_int_equal(atoi(out), 0);
    }
}

/* The link of the host with server 1 and worker 1 goes down mid-run and comes back. */
static void test_link_cut(void **state)
{
    (void)state;
    SKIP_IF_NEEDED();
    static char out[1 << 16];
    calm_run(); /* the reference (once) */
    hostfile("hosts-named", "%s coord\n%s server worker\n%s server worker\n");
    char outf[128];
    snprintf(outf, sizeof outf, "%s/cut.out", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 RUNSH "--hosts hosts-named --port 7790 --logs logs-cut --restart --host-timeout 3 -- "
                       "--data s2 --model cut " OPTS " --timeout 1000 --checkpoint-dir ck --checkpoint-every 0.2s "
                       "--durability log > %s 2>&1",
                 RUNSH_ARGS, outf);
        execl("/bin/bash", "bash", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* mid-run: a complete checkpoint round with at least 30% of the examples trained */
    double end = psrec_test_now() + 60, at = 0;
    while (at < 0.3 * total_examples && psrec_test_now() < end) {
        if (run(out, sizeof out, "grep -so 'complete ([0-9.]* s, [0-9]* examples' %s/logs-cut/coord.log | tail -1",
                dir) == 0 &&
            strchr(out, ','))
            at = atof(strchr(out, ',') + 1);
        if (at < 0.3 * total_examples) usleep(20000);
    }
    print_message("cutting the link after a round at %.0f of %.0f examples\n", at, total_examples);
    assert_true(at >= 0.3 * total_examples);
    double t_cut = psrec_test_now();
    assert_int_equal(run(out, sizeof out, "%s/tests/netns-hosts.sh cut %s 3", src, net), 0);
    /* run.sh notices that it lost the host (its ssh sessions get no keepalive answers) */
    end = psrec_test_now() + 30;
    int lost = 0;
    while (lost < 2 && psrec_test_now() < end) {
        run(out, sizeof out, "grep -c 'lost the connection to %s' %s", host[2], outf);
        lost = atoi(out);
        if (lost < 2) usleep(50000);
    }
    double t_lost = psrec_test_now();
    assert_int_equal(run(NULL, 0, "%s/tests/netns-hosts.sh heal %s 3", src, net), 0);
    print_message("link down for %.1f s: run.sh saw %d role(s) lost on %s\n", t_lost - t_cut, lost, host[2]);
    assert_int_equal(lost, 2);
    /* the run completes by itself */
    end = psrec_test_now() + 90;
    int st = 0, done = 0;
    while (!done && psrec_test_now() < end) {
        done = waitpid(pid, &st, WNOHANG) == pid;
        if (!done) usleep(50000);
    }
    if (!done) {
        kill(-pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    run(out, sizeof out, "cat %s; cat %s/logs-cut/server-1.log %s/logs-cut/worker-1.log", outf, dir, dir);
    if (!done || !WIFEXITED(st) || WEXITSTATUS(st)) print_message("%s\n", out);
    assert_true(done);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    print_message("the run took %.1f s in all\n", psrec_test_now() - t_cut);
    assert_non_null(strstr(out, "server-1 on"));
    assert_non_null(strstr(out, "restarting it"));
    char want[96];
    snprintf(want, sizeof want, "%s answers again; starting server-1", host[2]);
    assert_non_null(strstr(out, want));
    /* the restarted server took its shard from the shared checkpoint directory and its push log */
    const char *rec = strstr(out, "psrec server 1: recovered ");
    assert_non_null(rec);
    print_message("%.*s\n", (int)(strchr(rec, '\n') - rec), rec);
    assert_non_null(strstr(out, "from checkpoint round"));
    double r = recall_of("cut");
    print_message("Recall@10 uninterrupted %.4f, with the link cut %.4f\n", calm_recall, r);
    assert_true(calm_recall > 0.1);
    assert_true(r >= 0.85 * calm_recall); /* single asynchronous runs; the cut run's workers end unevenly */
    assert_run_dirs_gone(out);
    assert_int_equal(wait_no_roles(10), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_by_two_over_hosts),
        cmocka_unit_test(test_errors_and_stopping),
        cmocka_unit_test(test_link_cut),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    if (!failed && skip_reason[0]) {
        fprintf(stderr, "test_multihost: SKIPPED, not passed: %s", skip_reason);
        return 77; /* ctest: SKIP_RETURN_CODE */
    }
    return failed;
}

/* test_faults.c: fault injection (common/faults.c) and its hooks in psrec_wire_send and psrec_dfile_write.
 *
 * - Parsing: good specs give the stated values, bad ones (unknown key, bad number, out of range, rates
 *   summing over 1) are PSREC_EPARSE naming the key, and leave everything off.
 * - Decisions: 100k draws hit each rate within 4 sigma, also from two threads at once (whose streams
 *   differ and whose counts the atomics add up exactly); a disabled configuration never faults.
 * - End to end through the environment: the process configuration is read once from PSREC_FAULTS, so
 *   each variant runs in a child process (this executable again, `--child ...`) started with its own
 *   PSREC_FAULTS. That exercises the real path (getenv, pthread_once, psrec_wire_send) with no test-only
 *   setter compiled into the library. The child sends N messages DEALER -> ROUTER and N replies back
 *   over inproc, each followed by a sentinel sent with plain zmq_send (no faults), and checks that every
 *   message arrived exactly K times, in order, with intact frames: K = 2 for dup=1, 0 for drop=1, 1 when
 *   unset or invalid; delay=1 takes at least N x delay_ms; write_fail=1 fails psrec_dfile_write with
 *   PSREC_EIO. The parent states K and the minimum time from the spec it chose. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/durable.h"
#include "common/faults.h"
#include "common/wire.h"
#include "test_util.h"

static char self_exe[4096];

/* ---- parsing ---- */

static void test_parse_good(void **st)
{
    (void)st;
    psrec_faults_t f;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_faults_parse("drop=0.05,dup=0.05,delay=0.02,delay_ms=50,seed=7,write_fail=0.01", &f, err),
                     PSREC_OK);
    assert_true(f.enabled);
    assert_true(f.drop == 0.05 && f.dup == 0.05 && f.delay == 0.02 && f.write_fail == 0.01);
    assert_int_equal(f.delay_ms, 50);
    assert_int_equal(f.seed, 7);
    /* spaces, an empty item, a hex seed; unstated values take their defaults */
    assert_int_equal(psrec_faults_parse(" dup = 0.5 ,, seed=0x10,", &f, err), PSREC_OK);
    assert_true(f.enabled && f.dup == 0.5 && f.drop == 0 && f.delay == 0 && f.write_fail == 0);
    assert_int_equal(f.seed, 16);
    assert_int_equal(f.delay_ms, PSREC_FAULTS_DEFAULT_DELAY_MS);
    assert_int_equal(psrec_faults_parse("drop=0.5,dup=0.25,delay=0.25", &f, err), PSREC_OK); /* sum exactly 1 */
    assert_true(f.enabled);
    assert_int_equal(psrec_faults_parse("write_fail=1", &f, err), PSREC_OK);
    assert_true(f.enabled);
    /* off: unset, empty, only a seed, zero rates */
    const char *off[] = {NULL, "", "seed=3", "drop=0,dup=0.0,delay=0,write_fail=0,delay_ms=5"};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        assert_int_equal(psrec_faults_parse(off[i], &f, err), PSREC_OK);
        assert_false(f.enabled);
    }
}

static void test_parse_bad(void **st)
{
    (void)st;
    static const struct {
        const char *spec, *needle;
    } bad[] = {
        {"drip=0.1", "'drip'"},
        {"drop=0.1,bogus=3", "'bogus'"},
        {"=0.1", "unknown key ''"},
        {"drop", "'drop' has no value"},
        {"drop=abc", "drop='abc'"},
        {"drop=", "drop=''"},
        {"drop=1.5", "drop='1.5'"},
        {"dup=-0.1", "dup='-0.1'"},
        {"delay=nan", "delay='nan'"},
        {"write_fail=2", "write_fail='2'"},
        {"delay_ms=-1", "delay_ms='-1'"},
        {"delay_ms=5x", "delay_ms='5x'"},
        {"delay_ms=99999999", "delay_ms='99999999'"},
        {"seed=-1", "seed='-1'"},
        {"seed=abc", "seed='abc'"},
        {"drop=0.6,dup=0.5", "exceeds 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        psrec_faults_t f;
        memset(&f, 0xff, sizeof f);
        char err[PSREC_ERRBUF] = "";
        assert_int_equal(psrec_faults_parse(bad[i].spec, &f, err), PSREC_EPARSE);
        assert_false(f.enabled);
        assert_true(f.drop == 0 && f.dup == 0 && f.delay == 0 && f.write_fail == 0);
        if (!strstr(err, bad[i].needle))
            fail_msg("'%s': message '%s' does not name '%s'", bad[i].spec, err, bad[i].needle);
        assert_non_null(strstr(err, "PSREC_FAULTS"));
    }
    /* a NULL error buffer is fine */
    psrec_faults_t f;
    assert_int_equal(psrec_faults_parse("nope=1", &f, NULL), PSREC_EPARSE);
}

/* ---- decision rates ---- */

enum { DRAWS = 100000 };

typedef struct {
    const psrec_faults_t *f;
    uint64_t kind[4], fails;
    uint8_t first[1000]; /* the first decisions, to compare streams */
} draw_t;

static void *draw_main(void *p)
{
    draw_t *d = p;
    for (int i = 0; i < DRAWS; i++) {
        psrec_fault_kind k = psrec_faults_on_send(d->f);
        d->kind[k]++;
        if (i < 1000) d->first[i] = (uint8_t)k;
        d->fails += (uint64_t)psrec_faults_fail_write(d->f);
    }
    return NULL;
}

/* |x - n p| within 4 standard deviations of a binomial(n, p) */
static void within_4_sigma(uint64_t x, uint64_t n, double p, const char *what)
{
    double mean = (double)n * p, sd = sqrt((double)n * p * (1 - p));
    if (fabs((double)x - mean) > 4 * sd)
        fail_msg("%s: %llu of %llu, expected %.0f +- %.0f", what, (unsigned long long)x, (unsigned long long)n, mean,
                 4 * sd);
}

static void test_rates(void **st)
{
    (void)st;
    psrec_faults_t f;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_faults_parse("drop=0.1,dup=0.2,delay=0.05,write_fail=0.3,seed=5", &f, err), PSREC_OK);
    psrec_faults_stats_t s0, s1;
    psrec_faults_stats(&s0);
    /* one thread */
    draw_t one = {.f = &f};
    draw_main(&one);
    within_4_sigma(one.kind[PSREC_FAULT_DROP], DRAWS, 0.1, "drop");
    within_4_sigma(one.kind[PSREC_FAULT_DUP], DRAWS, 0.2, "dup");
    within_4_sigma(one.kind[PSREC_FAULT_DELAY], DRAWS, 0.05, "delay");
    within_4_sigma(one.kind[PSREC_FAULT_NONE], DRAWS, 0.65, "none");
    within_4_sigma(one.fails, DRAWS, 0.3, "write_fail");
    /* two threads at once: independent streams, and the atomics count every fault */
    draw_t two[2] = {{.f = &f}, {.f = &f}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, draw_main, &two[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_true(memcmp(two[0].first, two[1].first, sizeof two[0].first) != 0);
    within_4_sigma(two[0].kind[PSREC_FAULT_DROP] + two[1].kind[PSREC_FAULT_DROP], 2 * DRAWS, 0.1, "drop x2");
    within_4_sigma(two[0].kind[PSREC_FAULT_DUP] + two[1].kind[PSREC_FAULT_DUP], 2 * DRAWS, 0.2, "dup x2");
    psrec_faults_stats(&s1);
    uint64_t sum[4] = {0}, fails = one.fails + two[0].fails + two[1].fails;
    for (int k = 0; k < 4; k++)
        sum[k] = one.kind[k] + two[0].kind[k] + two[1].kind[k];
    assert_int_equal(s1.dropped - s0.dropped, sum[PSREC_FAULT_DROP]);
    assert_int_equal(s1.duplicated - s0.duplicated, sum[PSREC_FAULT_DUP]);
    assert_int_equal(s1.delayed - s0.delayed, sum[PSREC_FAULT_DELAY]);
    assert_int_equal(s1.failed_writes - s0.failed_writes, fails);
    /* certainties and nothing: drop=1 always drops, a disabled or write-only configuration never
     * touches a message, and none of the "nothing" draws is counted */
    psrec_faults_t all, off, wonly;
    assert_int_equal(psrec_faults_parse("drop=1", &all, err), PSREC_OK);
    assert_int_equal(psrec_faults_parse("", &off, err), PSREC_OK);
    assert_int_equal(psrec_faults_parse("write_fail=1", &wonly, err), PSREC_OK);
    psrec_faults_stats(&s0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(psrec_faults_on_send(&all), PSREC_FAULT_DROP);
        assert_int_equal(psrec_faults_fail_write(&all), 0);
        assert_int_equal(psrec_faults_on_send(&off), PSREC_FAULT_NONE);
        assert_int_equal(psrec_faults_fail_write(&off), 0);
        assert_int_equal(psrec_faults_on_send(&wonly), PSREC_FAULT_NONE);
        assert_int_equal(psrec_faults_fail_write(&wonly), 1);
    }
    psrec_faults_stats(&s1);
    assert_int_equal(s1.dropped - s0.dropped, 1000);
    assert_int_equal(s1.failed_writes - s0.failed_writes, 1000);
    assert_int_equal(s1.duplicated - s0.duplicated, 0);
    assert_int_equal(s1.delayed - s0.delayed, 0);
}

/* ---- children: the process configuration from PSREC_FAULTS ---- */

static int child_n, child_k, child_min_ms;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A header sent with plain zmq_send, bypassing psrec_wire_send and its faults. */
static void send_sentinel(void *sock, const psrec_wire_route_t *route)
{
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__SHUTDOWN);
    h.seq = 999999;
    unsigned char buf[64];
    size_t n = psrec__header__get_packed_size(&h);
    assert_true(n <= sizeof buf);
    psrec__header__pack(&h, buf);
    if (route) assert_int_equal(zmq_send(sock, route->id, route->len, ZMQ_SNDMORE), (int)route->len);
    assert_int_equal(zmq_send(sock, buf, n, 0), (int)n);
}

enum { NKEYS = 600, DIM = 3 };

/* Message i: keys i*1000 + j (compressible with LZ4: more than PSREC_WIRE_LZ4_MIN bytes of small
 * numbers) and rows i + j/1000. */
static void fill(int i, uint64_t *keys, float *rows)
{
    for (int j = 0; j < NKEYS; j++) {
        keys[j] = (uint64_t)i * 1000 + (uint64_t)j;
        for (int d = 0; d < DIM; d++)
            rows[j * DIM + d] = (float)i + (float)j / 1000.0f + (float)d;
    }
}

static void send_msg(void *sock, const psrec_wire_route_t *route, int i)
{
    static uint64_t keys[NKEYS];
    static float rows[NKEYS * DIM];
    fill(i, keys, rows);
    Psrec__Header h;
    psrec_wire_header_init(&h, route ? PSREC__TYPE__PUSH_OK : PSREC__TYPE__PUSH);
    h.seq = (uint64_t)i;
    h.count = NKEYS;
    h.dim = DIM;
    psrec_wire_bulk_t b[2] = {{keys, sizeof keys}, {rows, sizeof rows}};
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_wire_send(sock, route, &h, b, 2, 1, NULL, err);
    if (rc) fail_msg("send %d: %s", i, err);
}

/* Receives until the sentinel; every message must be an intact copy of message (received / k). */
static int recv_all(void *sock, psrec_wire_route_t *route)
{
    uint64_t keys[NKEYS];
    float rows[NKEYS * DIM];
    char err[PSREC_ERRBUF];
    for (int got = 0;; got++) {
        psrec_wire_msg_t m;
        psrec_err rc = psrec_wire_recv(sock, route, &m, 5000, NULL, err);
        if (rc) fail_msg("recv after %d messages: %s", got, err);
        if (m.hdr->type == PSREC__TYPE__SHUTDOWN) {
            psrec_wire_msg_clear(&m);
            return got;
        }
        assert_true(child_k > 0 && got < child_n * child_k);
        int i = got / child_k; /* copies are consecutive */
        assert_int_equal(m.hdr->seq, (uint64_t)i);
        fill(i, keys, rows);
        size_t want[2] = {sizeof keys, sizeof rows};
        assert_int_equal(psrec_wire_check_bulk(&m, 2, want, err), PSREC_OK);
        assert_memory_equal(m.bulk[0], keys, sizeof keys);
        assert_memory_equal(m.bulk[1], rows, sizeof rows);
        psrec_wire_msg_clear(&m);
    }
}

static void child_wire(void **st)
{
    (void)st;
    const psrec_faults_t *f = psrec_faults();
    printf("child: faults %s\n", f->enabled ? "on" : "off");
    psrec_faults_stats_t s0, s1;
    psrec_faults_stats(&s0);
    void *z = zmq_ctx_new();
    void *router = zmq_socket(z, ZMQ_ROUTER), *dealer = zmq_socket(z, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(router, "inproc://faults"), 0);
    assert_int_equal(zmq_connect(dealer, "inproc://faults"), 0);
    int64_t t0 = now_ms();
    for (int i = 0; i < child_n; i++) /* requests */
        send_msg(dealer, NULL, i);
    int64_t sending = now_ms() - t0;
    send_sentinel(dealer, NULL);
    psrec_wire_route_t route;
    assert_int_equal(recv_all(router, &route), child_n * child_k);
    for (int i = 0; i < child_n; i++) /* replies, through the ROUTER's routing frame */
        send_msg(router, &route, i);
    send_sentinel(router, &route);
    assert_int_equal(recv_all(dealer, NULL), child_n * child_k);
    if (sending < child_min_ms)
        fail_msg("%d sends took %lld ms, at least %d expected", child_n, (long long)sending, child_min_ms);
    psrec_faults_stats(&s1);
    uint64_t both = 2 * (uint64_t)child_n;
    assert_int_equal(s1.dropped - s0.dropped, child_k == 0 ? both : 0);
    assert_int_equal(s1.duplicated - s0.duplicated, child_k == 2 ? both : 0);
    assert_int_equal(s1.delayed - s0.delayed, child_min_ms > 0 ? both : 0);
    zmq_close(router);
    zmq_close(dealer);
    zmq_ctx_term(z);
}

static void child_write(void **st)
{
    (void)st;
    assert_true(psrec_faults()->enabled);
    char dir[] = "/tmp/psrec-faults-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/f.bin", dir);
    psrec_faults_stats_t s0, s1;
    psrec_faults_stats(&s0);
    psrec_dfile_t *f;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_dfile_open(&f, path, err), PSREC_OK);
    assert_int_equal(psrec_dfile_write(f, "abc", 3, err), PSREC_EIO);
    assert_non_null(strstr(err, "injected write failure"));
    assert_non_null(strstr(err, path));
    assert_int_equal(psrec_dfile_finish(&f, PSREC_EIO, err), PSREC_EIO);
    assert_null(f);
    psrec_faults_stats(&s1);
    assert_int_equal(s1.failed_writes - s0.failed_writes, 1);
    struct stat sb;
    assert_int_equal(stat(path, &sb), -1); /* nothing was committed */
    assert_int_equal(rmdir(dir), 0);       /* and no temporary file was left */
}

/* Runs this executable as a child with PSREC_FAULTS = spec (NULL: unset); returns its output. */
static void run_child(const char *spec, const char *args, char *out, size_t cap)
{
    int st;
    if (spec)
        st = psrec_test_run(out, cap, "PSREC_FAULTS='%s' '%s' --child %s", spec, self_exe, args);
    else
        st = psrec_test_run(out, cap, "env -u PSREC_FAULTS '%s' --child %s", self_exe, args);
    if (st != 0) fail_msg("child (PSREC_FAULTS=%s, %s) exited with %d:\n%s", spec ? spec : "unset", args, st, out);
}

static void test_env_dup(void **st)
{
    (void)st;
    char out[8192];
    run_child("dup=1,seed=3", "wire 20 2 0", out, sizeof out);
    assert_non_null(strstr(out, "fault injection on"));
}

static void test_env_drop(void **st)
{
    (void)st;
    char out[8192];
    run_child("drop=1", "wire 20 0 0", out, sizeof out);
}

static void test_env_unset(void **st)
{
    (void)st;
    char out[8192];
    run_child(NULL, "wire 20 1 0", out, sizeof out);
    assert_non_null(strstr(out, "child: faults off"));
    assert_null(strstr(out, "fault injection"));
    run_child("", "wire 5 1 0", out, sizeof out);
    assert_non_null(strstr(out, "child: faults off"));
}

static void test_env_invalid(void **st)
{
    (void)st;
    char out[8192];
    /* drop=1 is valid, but one bad key turns the whole spec off, with a message naming the key */
    run_child("drop=1,bogus=2", "wire 20 1 0", out, sizeof out);
    assert_non_null(strstr(out, "unknown key 'bogus'"));
    assert_non_null(strstr(out, "stays off"));
    assert_non_null(strstr(out, "child: faults off"));
    run_child("dup=2", "wire 5 1 0", out, sizeof out);
    assert_non_null(strstr(out, "dup='2'"));
}

static void test_env_delay(void **st)
{
    (void)st;
    char out[8192];
    run_child("delay=1,delay_ms=40", "wire 4 1 160", out, sizeof out);
}

static void test_env_write_fail(void **st)
{
    (void)st;
    char out[8192];
    run_child("write_fail=1", "write", out, sizeof out);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--child") == 0) {
        const struct CMUnitTest wire[] = {cmocka_unit_test(child_wire)};
        const struct CMUnitTest write[] = {cmocka_unit_test(child_write)};
        if (strcmp(argv[2], "wire") == 0 && argc == 6) {
            child_n = atoi(argv[3]);
            child_k = atoi(argv[4]);
            child_min_ms = atoi(argv[5]);
            return cmocka_run_group_tests(wire, NULL, NULL);
        }
        if (strcmp(argv[2], "write") == 0) return cmocka_run_group_tests(write, NULL, NULL);
        fprintf(stderr, "unknown child %s\n", argv[2]);
        return 2;
    }
    /* the parent's own configuration stays off whatever the caller's environment says */
    unsetenv(PSREC_FAULTS_ENV);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self_exe[n] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),  cmocka_unit_test(test_parse_bad), cmocka_unit_test(test_rates),
        cmocka_unit_test(test_env_dup),     cmocka_unit_test(test_env_drop),  cmocka_unit_test(test_env_unset),
        cmocka_unit_test(test_env_invalid), cmocka_unit_test(test_env_delay), cmocka_unit_test(test_env_write_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

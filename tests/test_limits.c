/* test_limits.c: a parameter server against a hostile client (ps/limits.c and its use in ps/server.c).
 * The limits alone: the burst counter and the new-rows check against a store. Then a real server fed by
 * a client that floods requests without reading replies (the excess over --max-inflight is answered
 * EFULL, every request gets one reply), declares LZ4 frames far above --max-msg-mb (EMSGSIZE before
 * any allocation: the process's peak RSS does not move), sends a frame over ZMQ_MAXMSGSIZE (ZeroMQ
 * drops the connection, psrec never sees it), and asks for more new rows than allowed per request and
 * per table (EFULL, nothing created); after all that an ordinary client is served. Synchronisation is
 * by replies and socket-monitor events, never by sleeping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/wire.h"
#include "ps/limits.h"
#include "ps/server.h"

#define JOB 5
#define DIM 4
#define WAIT_MS 5000

/* ---- the limits alone ---- */

static psrec_wire_route_t route_of(const char *id)
{
    psrec_wire_route_t r;
    r.len = strlen(id);
    memcpy(r.id, id, r.len);
    return r;
}

static void test_burst_counter(void **state)
{
    char err[PSREC_ERRBUF];
    psrec_limits_burst_t *b = NULL;
    assert_int_equal(psrec_limits_burst_new(&b, 2, 0), PSREC_EINVAL);
    assert_int_equal(psrec_limits_burst_new(&b, 2, 3), PSREC_OK);
    psrec_wire_route_t a = route_of("peer-a"), a2 = route_of("peer-a2"), c = route_of("peer-c");
    for (int i = 0; i < 3; i++)
        assert_int_equal(psrec_limits_burst_admit(b, &a, err), PSREC_OK);
    assert_int_equal(psrec_limits_burst_admit(b, &a, err), PSREC_EFULL);
    assert_non_null(strstr(err, "--max-inflight"));
    assert_int_equal(psrec_limits_burst_admit(b, &a2, err), PSREC_OK);   /* a prefix is another peer */
    assert_int_equal(psrec_limits_burst_admit(b, &c, err), PSREC_EFULL); /* a third peer in a 2-peer burst */
    psrec_limits_burst_reset(b);
    assert_int_equal(psrec_limits_burst_admit(b, &a, err), PSREC_OK);
    assert_int_equal(psrec_limits_burst_admit(b, &c, err), PSREC_OK);
    psrec_limits_burst_destroy(&b);
    assert_null(b);
    psrec_limits_burst_destroy(&b);

    psrec_limits_t l = {0};
    psrec_limits_resolve(&l);
    assert_int_equal(l.max_msg_bytes, PSREC_LIMITS_MAX_MSG);
    assert_int_equal(l.max_inflight, PSREC_LIMITS_INFLIGHT);
    assert_int_equal(l.max_new_rows, PSREC_LIMITS_NEW_ROWS);
    assert_int_equal(l.max_rows, 0);
    l.max_msg_bytes = UINT64_MAX;
    psrec_limits_resolve(&l);
    assert_int_equal(l.max_msg_bytes, PSREC_WIRE_MAX_FRAME_BYTES);
}

static void test_new_rows_check(void **state)
{
    char err[PSREC_ERRBUF];
    psrec_store_t *st;
    assert_int_equal(psrec_store_new(&st, 1, 4), PSREC_OK);
    psrec_table_conf_t tc = {.dim = DIM, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.1f}};
    assert_int_equal(psrec_store_add_table(st, 0, &tc, err), PSREC_OK);
    uint64_t keys[40], missing = 99;
    for (int i = 0; i < 40; i++)
        keys[i] = 1000 + (uint64_t)i;
    float out[40 * DIM];
    assert_int_equal(psrec_store_pull(st, 0, keys, 10, out), PSREC_OK); /* keys 0..9 exist */
    assert_int_equal(psrec_store_missing(st, 0, keys, 40, &missing), PSREC_OK);
    assert_int_equal(missing, 30);
    uint64_t twice[2] = {5, 5};
    assert_int_equal(psrec_store_missing(st, 0, twice, 2, &missing), PSREC_OK);
    assert_int_equal(missing, 2); /* a repeated new key counts each time */
    assert_int_equal(psrec_store_missing(st, 9, keys, 1, &missing), PSREC_ENOTFOUND);
    psrec_limits_t l = {.max_new_rows = 20};
    psrec_limits_resolve(&l);
    assert_int_equal(psrec_limits_check_new_rows(&l, st, 0, keys, 20, err), PSREC_OK); /* n <= limit */
    assert_int_equal(psrec_limits_check_new_rows(&l, st, 0, keys, 30, err), PSREC_OK); /* 20 new */
    assert_int_equal(psrec_limits_check_new_rows(&l, st, 0, keys, 31, err), PSREC_EFULL);
    assert_non_null(strstr(err, "21 rows"));
    assert_int_equal(psrec_store_rows(st, 0), 10); /* checking created nothing */
    psrec_store_destroy(&st);
}

/* ---- a real server ---- */

typedef struct {
    psrec_server_t *s;
    pthread_t th;
    psrec_err rc;
    char err[PSREC_ERRBUF];
} srv_t;

static void *srv_main(void *arg)
{
    srv_t *x = arg;
    x->rc = psrec_server_run(x->s, x->err);
    return NULL;
}

static const uint32_t ids[1] = {0};
static psrec_table_conf_t tconf[1];

static srv_t *server_new(void *zctx, const char *bind, psrec_limits_t lim)
{
    tconf[0] = (psrec_table_conf_t){
        .dim = DIM, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.1f}, .init = PSREC_INIT_UNIFORM, .init_scale = 0.5f};
    psrec_server_conf_t c = {
        .bind = bind, .job_id = JOB, .ntables = 1, .table_ids = ids, .tables = tconf, .seed = 7, .limits = lim};
    srv_t *x = calloc(1, sizeof *x);
    char err[PSREC_ERRBUF];
    if (psrec_server_new(&x->s, zctx, &c, err)) fail_msg("server_new: %s", err);
    return x;
}

static void server_run(srv_t *x)
{
    assert_int_equal(pthread_create(&x->th, NULL, srv_main, x), 0);
}

static void server_join(srv_t *x)
{
    psrec_server_stop(x->s);
    pthread_join(x->th, NULL);
    if (x->rc) fail_msg("server run: %s", x->err);
    psrec_server_destroy(&x->s);
    free(x);
}

static const char *endpoint(srv_t *x)
{
    return psrec_server_endpoint(x->s);
}

static void *dealer(void *zctx, const char *ep)
{
    void *d = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(d, ep), 0);
    return d;
}

static void hdr(Psrec__Header *h, Psrec__Type t, uint64_t count, uint64_t seq)
{
    psrec_wire_header_init(h, t);
    h->role = PSREC__ROLE__WORKER;
    h->rank = 1;
    h->epoch = 1;
    h->table = 0;
    h->count = count;
    h->dim = DIM;
    h->seq = seq;
    h->job_id = JOB;
}

static void send_req(void *d, Psrec__Type t, const uint64_t *keys, size_t n, const float *vals, uint64_t seq,
                     int compress)
{
    Psrec__Header h;
    hdr(&h, t, n, seq);
    psrec_wire_bulk_t b[2] = {{keys, n * sizeof *keys}, {vals, n * DIM * sizeof(float)}};
    char err[PSREC_ERRBUF];
    if (psrec_wire_send(d, NULL, &h, b, t == PSREC__TYPE__PULL ? 1 : 2, compress, NULL, err)) fail_msg("send: %s", err);
}

/* The reply's type and, for an ERROR, its code (and text in err). */
static Psrec__Type reply(void *d, psrec_err *code, uint64_t *seq, char *text, size_t cap)
{
    psrec_wire_msg_t m;
    char err[PSREC_ERRBUF];
    if (psrec_wire_recv(d, NULL, &m, WAIT_MS, NULL, err)) fail_msg("no reply: %s", err);
    Psrec__Type t = m.hdr->type;
    *code = t == PSREC__TYPE__ERROR ? (psrec_err)m.hdr->error_code : PSREC_OK;
    if (seq) *seq = m.hdr->seq;
    if (text) snprintf(text, cap, "%s", m.hdr->error_text ? m.hdr->error_text : "");
    psrec_wire_msg_clear(&m);
    return t;
}

/* One request, its reply: PSREC_OK or the ERROR code. */
static psrec_err call(void *d, Psrec__Type t, const uint64_t *keys, size_t n, const float *vals, uint64_t seq,
                      char *text, size_t cap)
{
    send_req(d, t, keys, n, vals, seq, 0);
    psrec_err code;
    uint64_t got;
    reply(d, &code, &got, text, cap);
    assert_int_equal(got, seq);
    return code;
}

/* A flood: 200 requests queued before the server reads any. Every one gets exactly one reply; the
 * ones beyond --max-inflight in a receive burst are EFULL; then a polite client is served. */
static void test_flood(void **state)
{
    void *z = zmq_ctx_new();
    srv_t *x = server_new(z, "inproc://limits-flood", (psrec_limits_t){.max_inflight = 8});
    void *bad = dealer(z, endpoint(x)), *good = dealer(z, endpoint(x));
    enum { N = 200 };
    uint64_t keys[4] = {1, 2, 3, 4};
    for (uint64_t i = 0; i < N; i++)
        send_req(bad, PSREC__TYPE__PULL, keys, 4, NULL, i + 1, 0);
    server_run(x);
    int ok = 0, full = 0;
    char seen[N + 1] = {0}, text[PSREC_ERRBUF];
    for (int i = 0; i < N; i++) {
        psrec_err code;
        uint64_t seq;
        Psrec__Type t = reply(bad, &code, &seq, text, sizeof text);
        assert_true(seq >= 1 && seq <= N && !seen[seq]);
        seen[seq] = 1;
        if (t == PSREC__TYPE__PULL_OK) {
            ok++;
        } else {
            assert_int_equal(code, PSREC_EFULL);
            assert_non_null(strstr(text, "--max-inflight"));
            full++;
        }
    }
    print_message("flood of %d: %d served, %d refused with EFULL\n", N, ok, full);
    assert_int_equal(ok + full, N);
    assert_true(ok >= 8);
    assert_true(full >= N / 2);
    assert_int_equal(call(good, PSREC__TYPE__PULL, keys, 4, NULL, 1, text, sizeof text), PSREC_OK);
    zmq_close(bad);
    zmq_close(good);
    server_join(x);
    zmq_ctx_term(z);
}

static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
    fclose(f);
    assert_true(kb > 0);
    return kb;
}

/* LZ4 frames declaring 64 MiB each (zeros compress ~250x) against a 1 MiB limit: EMSGSIZE before the
 * server allocates; 20 of them leave the peak RSS where it was (the old 1 GiB limit let each one cost
 * 64 MiB of decompressed zeros). */
static void test_declared_size(void **state)
{
    void *z = zmq_ctx_new();
    srv_t *x = server_new(z, "inproc://limits-decl", (psrec_limits_t){.max_msg_bytes = 1 << 20});
    server_run(x);
    void *bad = dealer(z, endpoint(x));
    enum { BIG = 64 << 20 };
    size_t n = BIG / (DIM * sizeof(float));
    uint64_t *keys = calloc(n, sizeof *keys); /* zero pages: read, never touched */
    float *vals = calloc(n * DIM, sizeof *vals);
    char text[PSREC_ERRBUF];
    psrec_err code;
    send_req(bad, PSREC__TYPE__PUSH, keys, n, vals, 1, 1); /* warm up the sending side */
    reply(bad, &code, NULL, text, sizeof text);
    assert_int_equal(code, PSREC_EMSGSIZE);
    assert_non_null(strstr(text, "limit 1048576"));
    long before = peak_rss_kb();
    for (uint64_t i = 0; i < 20; i++) {
        send_req(bad, PSREC__TYPE__PUSH, keys, n, vals, i + 2, 1);
        reply(bad, &code, NULL, text, sizeof text);
        assert_int_equal(code, PSREC_EMSGSIZE);
    }
    long grew = peak_rss_kb() - before;
    print_message("peak RSS grew by %ld KiB over 20 frames declaring 64 MiB each\n", grew);
    assert_true(grew < 16 * 1024);
    assert_int_equal(psrec_store_rows(psrec_server_store(x->s), 0), 0);
    free(keys);
    free(vals);
    zmq_close(bad);
    server_join(x);
    zmq_ctx_term(z);
}

/* A raw frame over ZMQ_MAXMSGSIZE: ZeroMQ drops the connection (the sender's monitor sees it) and no
 * request reaches psrec; the server keeps serving. */
static void test_frame_over_limit(void **state)
{
    void *z = zmq_ctx_new();
    srv_t *x = server_new(z, "tcp://127.0.0.1:0", (psrec_limits_t){.max_msg_bytes = 1 << 20});
    server_run(x);
    void *bad = zmq_socket(z, ZMQ_DEALER), *mon = zmq_socket(z, ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt(bad, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(
        zmq_socket_monitor(bad, "inproc://limits-mon", ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED), 0);
    assert_int_equal(zmq_connect(mon, "inproc://limits-mon"), 0);
    assert_int_equal(zmq_connect(bad, endpoint(x)), 0);
    size_t n = (2 << 20) / (DIM * sizeof(float)); /* a 2 MiB raw row frame */
    uint64_t *keys = calloc(n, sizeof *keys);
    float *vals = calloc(n * DIM, sizeof *vals);
    send_req(bad, PSREC__TYPE__PUSH, keys, n, vals, 1, 0);
    int disconnected = 0;
    while (!disconnected) {
        zmq_pollitem_t it = {.socket = mon, .events = ZMQ_POLLIN};
        assert_int_equal(zmq_poll(&it, 1, WAIT_MS), 1);
        unsigned char ev[6];
        char addr[256];
        assert_int_equal(zmq_recv(mon, ev, sizeof ev, 0), 6);
        assert_true(zmq_recv(mon, addr, sizeof addr, 0) >= 0);
        uint16_t e;
        memcpy(&e, ev, 2);
        disconnected = e == ZMQ_EVENT_DISCONNECTED;
    }
    zmq_socket_monitor(bad, NULL, 0);
    zmq_close(mon);
    zmq_close(bad);
    free(keys);
    free(vals);
    psrec_server_stats_t st;
    psrec_server_get_stats(x->s, &st);
    assert_int_equal(st.requests, 0);
    void *good = dealer(z, endpoint(x));
    uint64_t k[2] = {7, 8};
    char text[PSREC_ERRBUF];
    assert_int_equal(call(good, PSREC__TYPE__PULL, k, 2, NULL, 1, text, sizeof text), PSREC_OK);
    zmq_close(good);
    server_join(x);
    zmq_ctx_term(z);
}

/* New rows: at most 100 per request, 250 per table (--at-max-rows fail: a request past it is refused
 * whole). Expected row counts are kept by hand. */
static void test_new_rows(void **state)
{
    void *z = zmq_ctx_new();
    srv_t *x = server_new(z, "inproc://limits-rows",
                          (psrec_limits_t){.max_new_rows = 100, .max_rows = 250, .max_rows_fail = 1});
    server_run(x);
    psrec_store_t *st = psrec_server_store(x->s);
    void *d = dealer(z, endpoint(x));
    uint64_t keys[400];
    float vals[400 * DIM];
    for (int i = 0; i < 400; i++)
        keys[i] = 10000 + (uint64_t)i * 7919;
    for (int i = 0; i < 400 * DIM; i++)
        vals[i] = 0.01f;
    char text[PSREC_ERRBUF];
    uint64_t seq = 0, rows = 0;
    /* 150 new keys in one PULL, one PUSH, one SET: refused whole */
    assert_int_equal(call(d, PSREC__TYPE__PULL, keys, 150, NULL, ++seq, text, sizeof text), PSREC_EFULL);
    assert_non_null(strstr(text, "150 rows"));
    assert_int_equal(call(d, PSREC__TYPE__PUSH, keys, 150, vals, ++seq, text, sizeof text), PSREC_EFULL);
    assert_int_equal(call(d, PSREC__TYPE__SET, keys, 150, vals, ++seq, text, sizeof text), PSREC_EFULL);
    assert_int_equal(psrec_store_rows(st, 0), rows);
    /* 100 new: fine */
    assert_int_equal(call(d, PSREC__TYPE__PUSH, keys, 100, vals, ++seq, text, sizeof text), PSREC_OK);
    rows += 100;
    /* 150 keys of which 100 exist: 50 new, fine */
    assert_int_equal(call(d, PSREC__TYPE__PULL, keys, 150, NULL, ++seq, text, sizeof text), PSREC_OK);
    rows += 50;
    assert_int_equal(psrec_store_rows(st, 0), rows);
    /* up to the table's 250 rows, then no further */
    assert_int_equal(call(d, PSREC__TYPE__PUSH, keys + 150, 100, vals, ++seq, text, sizeof text), PSREC_OK);
    rows += 100;
    assert_int_equal(rows, 250);
    assert_int_equal(call(d, PSREC__TYPE__PUSH, keys + 250, 1, vals, ++seq, text, sizeof text), PSREC_EFULL);
    assert_int_equal(psrec_store_rows(st, 0), 250);
    /* existing rows are still served */
    assert_int_equal(call(d, PSREC__TYPE__PULL, keys, 250, NULL, ++seq, text, sizeof text), PSREC_OK);
    assert_int_equal(call(d, PSREC__TYPE__PUSH, keys + 10, 20, vals, ++seq, text, sizeof text), PSREC_OK);
    zmq_close(d);
    server_join(x);
    zmq_ctx_term(z);
}

/* --at-max-rows skip (the default): past 250 rows a request succeeds, its new keys are refused one by one
 * and counted, and the server logs that the table is full. */
static void test_full_table_skips(void **state)
{
    (void)state;
    void *z = zmq_ctx_new();
    srv_t *x = server_new(z, "inproc://limits-skip", (psrec_limits_t){.max_rows = 250});
    server_run(x);
    psrec_store_t *st = psrec_server_store(x->s);
    void *d = dealer(z, endpoint(x));
    uint64_t keys[550];
    float vals[550 * DIM];
    for (int i = 0; i < 550; i++)
        keys[i] = 20000 + (uint64_t)i * 7919;
    for (int i = 0; i < 550 * DIM; i++)
        vals[i] = 0.01f;
    char text[PSREC_ERRBUF];
    uint64_t seq = 0;
    assert_int_equal(call(d, PSREC__TYPE__PUSH, keys, 200, vals, ++seq, text, sizeof text), PSREC_OK);
    assert_int_equal(call(d, PSREC__TYPE__PULL, keys, 400, NULL, ++seq, text, sizeof text), PSREC_OK);
    assert_int_equal(psrec_store_rows(st, 0), 250);
    assert_int_equal(psrec_store_refused(st, 0), 150);
    /* keys never seen: every one refused (which 50 of the pull's new keys got rows is up to the store) */
    assert_int_equal(call(d, PSREC__TYPE__PUSH, keys + 400, 150, vals, ++seq, text, sizeof text), PSREC_OK);
    assert_int_equal(psrec_store_rows(st, 0), 250);
    assert_int_equal(psrec_store_refused(st, 0), 300);
    zmq_close(d);
    server_join(x);
    zmq_ctx_term(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_counter),
        cmocka_unit_test(test_new_rows_check),
        cmocka_unit_test(test_flood),
        cmocka_unit_test(test_declared_size),
        cmocka_unit_test(test_frame_over_limit),
        cmocka_unit_test(test_new_rows),
        cmocka_unit_test(test_full_table_skips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

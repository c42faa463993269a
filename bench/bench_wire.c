/* bench_wire.c: the cost of psrec's wire path. One standalone server thread on tcp loopback and a
 * remote client (worker/remote_client.h) pull and push rows of dim 64 in requests of 4096 keys, one
 * request at a time; the same program measures a plain ZeroMQ DEALER/ROUTER echo carrying the same
 * bytes each way (request: keys, or keys + rows; reply: rows, or a small header) as the ceiling, and
 * reports the ratio. Each is run with LZ4 off and on, with the bytes on the wire per request.
 * Two key sets: dense ids 0..N-1 (their uint64 arrays compress) and hashed 64-bit ids (they do not);
 * rows are dense normal floats (they do not compress). Usage: bench_wire [seconds_per_case]. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/rng.h"
#include "ps/server.h"
#include "worker/remote_client.h"

#define DIM 64
#define BATCH 4096
#define NROWS 200000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_wire: %s: %s\n", what, err);
    exit(1);
}

/* ---- the psrec server ---- */

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

/* ---- the plain ZeroMQ echo: answers every request with reply_bytes ---- */

typedef struct {
    void *zctx;
    char ep[128];
    size_t reply_bytes;
    atomic_int stop, ready;
    pthread_t th;
} echo_t;

static void *echo_main(void *arg)
{
    echo_t *e = arg;
    void *s = zmq_socket(e->zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_bind(s, "tcp://127.0.0.1:0");
    size_t len = sizeof e->ep;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, e->ep, &len);
    char *reply = calloc(1, e->reply_bytes + 1);
    atomic_store(&e->ready, 1);
    while (!atomic_load(&e->stop)) {
        zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 50) <= 0) continue;
        zmq_msg_t id, part;
        zmq_msg_init(&id);
        zmq_msg_recv(&id, s, 0);
        int more = zmq_msg_more(&id);
        while (more) { /* read (touch) the request like a server would */
            zmq_msg_init(&part);
            zmq_msg_recv(&part, s, 0);
            more = zmq_msg_more(&part);
            zmq_msg_close(&part);
        }
        zmq_msg_send(&id, s, ZMQ_SNDMORE);
        zmq_send(s, reply, e->reply_bytes, 0);
    }
    free(reply);
    zmq_close(s);
    return NULL;
}

/* Round trips of (req_bytes -> reply_bytes) for `secs`; returns round trips per second. */
static double echo_rate(void *z, size_t req_bytes, size_t reply_bytes, double secs)
{
    echo_t e = {.zctx = z, .reply_bytes = reply_bytes};
    atomic_init(&e.stop, 0);
    atomic_init(&e.ready, 0);
    pthread_create(&e.th, NULL, echo_main, &e);
    while (!atomic_load(&e.ready))
        zmq_poll(NULL, 0, 1);
    void *d = zmq_socket(z, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(d, e.ep);
    char *req = calloc(1, req_bytes + 1);
    size_t n = 0;
    double t0 = now(), t;
    do {
        zmq_send(d, "h", 1, ZMQ_SNDMORE); /* a small header frame, then the payload */
        zmq_send(d, req, req_bytes, 0);
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, d, 0);
        zmq_msg_close(&m);
        n++;
        t = now();
    } while (t - t0 < secs);
    atomic_store(&e.stop, 1);
    pthread_join(e.th, NULL);
    zmq_close(d);
    free(req);
    return (double)n / (t - t0);
}

/* ---- psrec ---- */

typedef struct {
    double calls_per_s, store_calls_per_s;
    double req_wire, req_raw, rep_wire, rep_raw; /* bytes per call */
} result_t;

static result_t psrec_rate(void *z, int compress, int push, int dense_ids, double secs)
{
    static const uint32_t ids[1] = {0};
    psrec_table_conf_t tc = {.dim = DIM,
                             .opt = {.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.05f},
                             .init = PSREC_INIT_UNIFORM,
                             .init_scale = 0.1f};
    psrec_server_conf_t sc = {.bind = "tcp://127.0.0.1:0",
                              .job_id = 1,
                              .compress = compress ? 1 : -1,
                              .ntables = 1,
                              .table_ids = ids,
                              .tables = &tc,
                              .seed = 7};
    srv_t x;
    memset(&x, 0, sizeof x);
    char err[PSREC_ERRBUF];
    if (psrec_server_new(&x.s, z, &sc, err)) die("server", err);
    pthread_create(&x.th, NULL, srv_main, &x);
    char *addr = (char *)psrec_server_endpoint(x.s);
    uint32_t slots[1] = {0};
    Psrec__ShardMap map;
    psrec__shard_map__init(&map);
    map.version = 1;
    map.nslots = 1;
    map.n_slot_server = 1;
    map.slot_server = slots;
    map.n_server_addr = 1;
    map.server_addr = &addr;
    psrec_remote_conf_t rc = {.job_id = 1, .rank = 0, .timeout_ms = 10000, .retries = 3, .compress = compress};
    psrec_remote_t *r;
    if (psrec_remote_new(&r, z, &map, &rc, err)) die("remote", err);
    uint64_t *all = malloc(NROWS * sizeof *all), *keys = malloc(BATCH * sizeof *keys);
    float *rows = malloc((size_t)BATCH * DIM * sizeof *rows);
    psrec_rng_t g;
    psrec_rng_seed(&g, 3, 4);
    for (size_t i = 0; i < NROWS; i++)
        all[i] = dense_ids ? i : psrec_mix64(i);
    for (size_t i = 0; i < (size_t)BATCH * DIM; i++)
        rows[i] = (float)(0.01 * psrec_rng_normal(&g));
    /* materialise every row first */
    for (size_t i = 0; i < NROWS; i += BATCH) {
        size_t n = NROWS - i < BATCH ? NROWS - i : BATCH;
        if (psrec_remote_pull(r, 0, all + i, n, rows, DIM, err)) die("warm-up", err);
    }
    psrec_wire_stats_t s0, r0, s1, r1;
    psrec_remote_stats(r, &s0, &r0);
    size_t calls = 0;
    uint32_t at = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < BATCH; i++) { /* a batch of unique keys: a stride walk over the rows */
            at = (at + 7919) % NROWS;
            keys[i] = all[at];
        }
        psrec_err e = push ? psrec_remote_push(r, 0, keys, BATCH, rows, DIM, err)
                           : psrec_remote_pull(r, 0, keys, BATCH, rows, DIM, err);
        if (e) die(push ? "push" : "pull", err);
        if (!push)
            for (size_t i = 0; i < (size_t)BATCH * DIM; i++)
                rows[i] *= 0.01f; /* keep gradients small */
        calls++;
        t = now();
    } while (t - t0 < secs);
    psrec_remote_stats(r, &s1, &r1);
    result_t res = {.calls_per_s = (double)calls / (t - t0)};
    /* the same calls straight into the server's store (server idle): the part no wire can remove */
    psrec_store_t *st = psrec_server_store(x.s);
    size_t scalls = 0;
    t0 = now();
    do {
        for (int i = 0; i < BATCH; i++) {
            at = (at + 7919) % NROWS;
            keys[i] = all[at];
        }
        psrec_err e = push ? psrec_store_push(st, 0, keys, BATCH, rows) : psrec_store_pull(st, 0, keys, BATCH, rows);
        if (e) die("store", psrec_strerror(e));
        if (!push)
            for (size_t i = 0; i < (size_t)BATCH * DIM; i++)
                rows[i] *= 0.01f;
        scalls++;
        t = now();
    } while (t - t0 < secs / 2);
    res.store_calls_per_s = (double)scalls / (t - t0);
    res.req_wire = (double)(s1.wire_bytes + s1.header_bytes - s0.wire_bytes - s0.header_bytes) / (double)calls;
    res.req_raw = (double)(s1.raw_bytes + s1.header_bytes - s0.raw_bytes - s0.header_bytes) / (double)calls;
    res.rep_wire = (double)(r1.wire_bytes + r1.header_bytes - r0.wire_bytes - r0.header_bytes) / (double)calls;
    res.rep_raw = (double)(r1.raw_bytes + r1.header_bytes - r0.raw_bytes - r0.header_bytes) / (double)calls;
    psrec_remote_destroy(&r);
    psrec_server_stop(x.s);
    pthread_join(x.th, NULL);
    if (x.rc) die("server run", x.err);
    psrec_server_destroy(&x.s);
    free(all);
    free(keys);
    free(rows);
    return res;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    if (secs <= 0) secs = 1.0;
    void *z = zmq_ctx_new();
    const size_t kb = BATCH * sizeof(uint64_t), rb = (size_t)BATCH * DIM * sizeof(float);
    printf("bench_wire: tcp loopback, one server thread + one client, dim %d, %d keys per request, %d rows,\n"
           "one request in flight; zmq echo = DEALER/ROUTER round trips of the same byte counts\n\n",
           DIM, BATCH, NROWS);
    double echo_pull = echo_rate(z, kb, rb, secs) * BATCH, echo_push = echo_rate(z, kb + rb, 64, secs) * BATCH;
    printf("zmq echo: pull-shaped %.0f rows/s (%.2f GB/s), push-shaped %.0f rows/s (%.2f GB/s)\n\n", echo_pull,
           echo_pull * DIM * 4 / 1e9, echo_push, echo_push * DIM * 4 / 1e9);
    printf("%-5s %-6s %-4s %12s %9s %8s %14s %14s %14s\n", "op", "ids", "lz4", "rows/s", "GB/s", "vs echo", "request B",
           "reply B", "store alone");
    printf("%-5s %-6s %-4s %12s %9s %8s %14s %14s %14s\n", "", "", "", "", "(rows)", "", "wire/raw", "wire/raw",
           "rows/s");
    for (int push = 0; push < 2; push++)
        for (int dense = 1; dense >= 0; dense--)
            for (int lz4 = 0; lz4 < 2; lz4++) {
                result_t r = psrec_rate(z, lz4, push, dense, secs);
                double rows = r.calls_per_s * BATCH;
                char rq[32], rp[32];
                snprintf(rq, sizeof rq, "%.0f/%.0f", r.req_wire, r.req_raw);
                snprintf(rp, sizeof rp, "%.0f/%.0f", r.rep_wire, r.rep_raw);
                printf("%-5s %-6s %-4s %12.0f %9.2f %8.2f %14s %14s %14.0f\n", push ? "push" : "pull",
                       dense ? "dense" : "hashed", lz4 ? "on" : "off", rows, rows * DIM * 4 / 1e9,
                       rows / (push ? echo_push : echo_pull), rq, rp, r.store_calls_per_s * BATCH);
            }
    zmq_ctx_term(z);
    return 0;
}

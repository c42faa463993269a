/* test_coord.c: the coordinator (ps/coord.c) through its client (worker/coord_client.c) and through raw
 * DEALER sockets: concurrent registration (unique ranks, identical balanced shard maps), refusals
 * (too many members, other job), barriers (held until the last arrival, reusable names, one reply per
 * request), epochs on re-registration, status with heartbeat stats, the end of a job, dead members
 * after the heartbeat timeout, a missing or silent coordinator, malformed messages, tcp.
 * Restarts: an unanswered request is re-sent with the same seq every resend_ms (REGISTER too: a copy of
 * a REGISTER the coordinator took is answered with the same rank and epoch),
 * a coordinator replaced on the same tcp port while a STATUS call waits answers it, and a BARRIER
 * that arrives twice counts once and is answered once.
 * The coordinator runs on a thread; nothing waits by sleeping: waits are request/reply round trips,
 * joins with a deadline, or bounded loops of STATUS requests. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/wire.h"
#include "ps/coord.h"
#include "worker/coord_client.h"

enum { JOB = 4242, SEED = 99 };
static const uint32_t table_ids[2] = {0, 3};

/* ---- fixture: a coordinator on its own thread ---- */

typedef struct {
    void *zctx;
    psrec_coord_t *coord;
    pthread_t th;
    int running;
    psrec_err run_rc;
    char run_err[PSREC_ERRBUF];
    psrec_table_conf_t tables[2];
} fx_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *coord_main(void *arg)
{
    fx_t *f = arg;
    f->run_rc = psrec_coord_run(f->coord, f->run_err);
    return NULL;
}

static void start(fx_t *f, const char *bind, int ns, int nw, int hb_ms)
{
    memset(f, 0, sizeof *f);
    f->zctx = zmq_ctx_new();
    assert_non_null(f->zctx);
    f->tables[0] = (psrec_table_conf_t){
        .dim = 16, .opt = {.kind = PSREC_OPT_ADAGRAD, .lr = 0.05f}, .init = PSREC_INIT_UNIFORM, .init_scale = 0.01f};
    f->tables[1] = (psrec_table_conf_t){.dim = 32,
                                        .opt = {.kind = PSREC_OPT_ADAM, .lr = 0.001f},
                                        .init = PSREC_INIT_NORMAL,
                                        .init_scale = 0.1f,
                                        .max_rows = 1000};
    psrec_coord_conf_t cc = {.bind = bind,
                             .n_servers = ns,
                             .n_workers = nw,
                             .job_id = JOB,
                             .seed = SEED,
                             .ntables = 2,
                             .table_ids = table_ids,
                             .tables = f->tables,
                             .heartbeat_timeout_ms = hb_ms};
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_coord_new(&f->coord, f->zctx, &cc, err);
    if (rc) fail_msg("coord_new: %s", err);
    assert_int_equal(pthread_create(&f->th, NULL, coord_main, f), 0);
    f->running = 1;
}

/* Joins the coordinator thread within ms; 0 on success. */
static int join_within(fx_t *f, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    int r = pthread_timedjoin_np(f->th, NULL, &ts);
    if (r == 0) f->running = 0;
    return r;
}

static void finish(fx_t *f)
{
    if (f->running) {
        psrec_coord_stop(f->coord);
        assert_int_equal(join_within(f, 5000), 0);
        assert_int_equal(f->run_rc, PSREC_OK);
    }
    psrec_coord_destroy(&f->coord);
    assert_null(f->coord);
    zmq_ctx_term(f->zctx);
}

static psrec_coord_client_t *client(fx_t *f, uint64_t job, int timeout_ms)
{
    psrec_coord_client_t *c;
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_coord_client_new(&c, f->zctx, psrec_coord_endpoint(f->coord), job, timeout_ms, err);
    if (rc) fail_msg("client_new: %s", err);
    return c;
}

/* Registers; returns the code, fills rank/epoch on success. */
static psrec_err reg(psrec_coord_client_t *c, Psrec__Role role, const char *addr, uint32_t want, uint32_t *rank,
                     uint64_t *epoch)
{
    Psrec__Header *r = NULL;
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_coord_client_register(c, role, addr, want, &r, err);
    if (rc) {
        assert_null(r);
        return rc;
    }
    if (rank) *rank = r->rank;
    if (epoch) *epoch = r->epoch;
    psrec__header__free_unpacked(r, NULL);
    return PSREC_OK;
}

static void reg_ok(psrec_coord_client_t *c, Psrec__Role role, const char *addr, uint32_t want, uint32_t *rank,
                   uint64_t *epoch)
{
    Psrec__Header *r = NULL;
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_coord_client_register(c, role, addr, want, &r, err);
    if (rc) fail_msg("register: %s", err);
    if (rank) *rank = r->rank;
    if (epoch) *epoch = r->epoch;
    psrec__header__free_unpacked(r, NULL);
}

/* Registrations that must overlap (a server's register() returns only once every server registered):
 * one thread each, joined before returning. Threads only record results (no cmocka asserts). */
typedef struct {
    psrec_coord_client_t *c;
    Psrec__Role role;
    const char *addr;
    uint32_t want;
    psrec_err rc;
    uint32_t rank;
    uint64_t epoch;
    pthread_t th;
    char err[PSREC_ERRBUF];
} regjob_t;

static void *regjob_main(void *p)
{
    regjob_t *j = p;
    Psrec__Header *r = NULL;
    j->rc = psrec_coord_client_register(j->c, j->role, j->addr, j->want, &r, j->err);
    if (!j->rc) {
        j->rank = r->rank;
        j->epoch = r->epoch;
        psrec__header__free_unpacked(r, NULL);
    }
    return NULL;
}

static void reg_parallel(regjob_t *j, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&j[i].th, NULL, regjob_main, &j[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(j[i].th, NULL);
    for (int i = 0; i < n; i++)
        if (j[i].rc) fail_msg("register %d: %s", i, j[i].err);
}

/* Registers servers (addresses given) in parallel, then workers one by one; ranks follow the order
 * of the workers (the map is complete by then) and the servers' ranks are returned in srank. */
static void reg_cluster(psrec_coord_client_t **s, const char *const *addrs, int ns, uint32_t *srank,
                        psrec_coord_client_t **w, int nw)
{
    regjob_t j[16];
    assert_true(ns <= 16);
    for (int i = 0; i < ns; i++)
        j[i] = (regjob_t){.c = s[i], .role = PSREC__ROLE__SERVER, .addr = addrs[i], .want = UINT32_MAX};
    reg_parallel(j, ns);
    for (int i = 0; i < ns; i++) {
        if (srank) srank[i] = j[i].rank;
    }
    for (int i = 0; i < nw; i++) {
        uint32_t rank;
        reg_ok(w[i], PSREC__ROLE__WORKER, NULL, UINT32_MAX, &rank, NULL);
        assert_int_equal(rank, (uint32_t)i);
    }
}

static int hb(psrec_coord_client_t *c, uint64_t examples, double loss, int stop_flag)
{
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    h.examples = examples;
    h.loss = loss;
    h.stop = stop_flag;
    int stop = -1;
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_coord_client_heartbeat(c, &h, &stop, err);
    if (rc) fail_msg("heartbeat: %s", err);
    return stop;
}

static Psrec__Header *status(psrec_coord_client_t *c)
{
    Psrec__Header *s = NULL;
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_coord_client_status(c, &s, err);
    if (rc) fail_msg("status: %s", err);
    assert_int_equal(s->type, PSREC__TYPE__STATUS_OK);
    return s;
}

static const Psrec__Member *find_member(const Psrec__Header *s, Psrec__Role role, uint32_t rank)
{
    const Psrec__Member *found = NULL;
    for (size_t i = 0; i < s->n_members; i++)
        if (s->members[i]->role == role && s->members[i]->rank == rank) {
            assert_null(found); /* exactly one entry per member */
            found = s->members[i];
        }
    return found;
}

/* ---- raw DEALER peers ---- */

static void *raw_dealer(fx_t *f)
{
    void *s = zmq_socket(f->zctx, ZMQ_DEALER);
    assert_non_null(s);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(s, psrec_coord_endpoint(f->coord)), 0);
    return s;
}

static void raw_send(void *s, Psrec__Header *h)
{
    char err[PSREC_ERRBUF];
    if (!h->job_id) h->job_id = JOB;
    if (!h->role) h->role = PSREC__ROLE__CLIENT;
    psrec_err rc = psrec_wire_send(s, NULL, h, NULL, 0, 0, NULL, err);
    if (rc) fail_msg("raw send: %s", err);
}

static Psrec__Header *raw_recv(void *s)
{
    psrec_wire_msg_t m;
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_wire_recv(s, NULL, &m, 5000, NULL, err);
    if (rc) fail_msg("raw recv: %s", err);
    Psrec__Header *h = m.hdr;
    m.hdr = NULL;
    psrec_wire_msg_clear(&m);
    return h;
}

static void expect_error(void *s, uint64_t seq, psrec_err code)
{
    Psrec__Header *h = raw_recv(s);
    assert_int_equal(h->type, PSREC__TYPE__ERROR);
    assert_int_equal(h->seq, seq);
    if (h->error_code != (uint32_t)code)
        fail_msg("expected %s, got %s (%s)", psrec_errname(code), psrec_errname((psrec_err)h->error_code),
                 h->error_text);
    psrec__header__free_unpacked(h, NULL);
}

/* ---- concurrent registration ---- */

typedef struct {
    fx_t *f;
    pthread_barrier_t *go;
    Psrec__Role role;
    char addr[64];
    psrec_err rc;
    uint32_t rank;
    uint64_t epoch, version, seed, job_id;
    uint32_t nslots;
    uint32_t slots[PSREC_WIRE_NSLOTS];
    char addrs[2][64];
    size_t naddrs, ntables;
    uint32_t tab_id[2], tab_dim[2];
    float tab_lr[2];
} reg_arg_t;

static void *reg_main(void *p)
{
    reg_arg_t *a = p;
    psrec_coord_client_t *c = client(a->f, JOB, 5000);
    pthread_barrier_wait(a->go);
    Psrec__Header *r = NULL;
    char err[PSREC_ERRBUF];
    a->rc =
        psrec_coord_client_register(c, a->role, a->role == PSREC__ROLE__SERVER ? a->addr : NULL, UINT32_MAX, &r, err);
    if (!a->rc) {
        a->rank = r->rank;
        a->epoch = r->epoch;
        a->seed = r->seed;
        a->job_id = r->job_id;
        a->ntables = r->n_tables;
        for (size_t i = 0; i < r->n_tables && i < 2; i++) {
            a->tab_id[i] = r->tables[i]->table;
            a->tab_dim[i] = r->tables[i]->dim;
            a->tab_lr[i] = r->tables[i]->lr;
        }
        if (r->shard_map) {
            a->version = r->shard_map->version;
            a->nslots = r->shard_map->nslots;
            for (size_t i = 0; i < r->shard_map->n_slot_server && i < PSREC_WIRE_NSLOTS; i++)
                a->slots[i] = r->shard_map->slot_server[i];
            a->naddrs = r->shard_map->n_server_addr;
            for (size_t i = 0; i < a->naddrs && i < 2; i++)
                snprintf(a->addrs[i], sizeof a->addrs[i], "%s", r->shard_map->server_addr[i]);
        }
        psrec__header__free_unpacked(r, NULL);
    }
    psrec_coord_client_destroy(&c);
    return NULL;
}

static void test_register_concurrent(void **st)
{
    (void)st;
    enum { NS = 2, NW = 3, N = NS + NW };
    fx_t f;
    start(&f, "inproc://coord-reg", NS, NW, 0);
    static reg_arg_t a[N];
    pthread_t th[N];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    /* interleave roles so workers often register before the map is complete */
    for (int i = 0; i < N; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].f = &f;
        a[i].go = &go;
        a[i].role = (i == 1 || i == 4) ? PSREC__ROLE__SERVER : PSREC__ROLE__WORKER;
        snprintf(a[i].addr, sizeof a[i].addr, "tcp://host-%d:%d", i, 5000 + i);
        assert_int_equal(pthread_create(&th[i], NULL, reg_main, &a[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);

    int seen_s[NS] = {0}, seen_w[NW] = {0};
    const reg_arg_t *ref = NULL;
    for (int i = 0; i < N; i++) {
        assert_int_equal(a[i].rc, PSREC_OK);
        assert_int_equal(a[i].epoch, 1);
        assert_int_equal(a[i].seed, SEED);
        assert_int_equal(a[i].job_id, JOB);
        assert_int_equal(a[i].ntables, 2);
        for (int t = 0; t < 2; t++) {
            assert_int_equal(a[i].tab_id[t], table_ids[t]);
            assert_int_equal(a[i].tab_dim[t], f.tables[t].dim);
            assert_true(a[i].tab_lr[t] == f.tables[t].opt.lr);
        }
        if (a[i].role == PSREC__ROLE__SERVER) {
            assert_true(a[i].rank < NS);
            seen_s[a[i].rank]++;
        } else {
            assert_true(a[i].rank < NW);
            seen_w[a[i].rank]++;
        }
        /* every member got the complete map, and the same one */
        assert_int_equal(a[i].version, 1);
        assert_int_equal(a[i].nslots, PSREC_WIRE_NSLOTS);
        assert_int_equal(a[i].naddrs, NS);
        if (!ref) ref = &a[i];
        assert_memory_equal(a[i].slots, ref->slots, sizeof ref->slots);
        for (int s = 0; s < NS; s++)
            assert_string_equal(a[i].addrs[s], ref->addrs[s]);
    }
    for (int r = 0; r < NS; r++)
        assert_int_equal(seen_s[r], 1);
    for (int r = 0; r < NW; r++)
        assert_int_equal(seen_w[r], 1);
    /* balanced: each server owns nslots / NS slots */
    int per[NS] = {0};
    for (int i = 0; i < PSREC_WIRE_NSLOTS; i++) {
        assert_true(ref->slots[i] < NS);
        per[ref->slots[i]]++;
    }
    for (int s = 0; s < NS; s++)
        assert_int_equal(per[s], PSREC_WIRE_NSLOTS / NS);
    /* addresses as each server registered them, indexed by its rank */
    for (int i = 0; i < N; i++)
        if (a[i].role == PSREC__ROLE__SERVER) assert_string_equal(ref->addrs[a[i].rank], a[i].addr);
    finish(&f);
}

/* A worker's register() returns only once the last server registered (SHARD_MAP_GET retries). */
typedef struct {
    psrec_coord_client_t *c;
    atomic_int done;
    psrec_err rc;
    uint64_t version;
} wait_arg_t;

static void *wait_main(void *p)
{
    wait_arg_t *a = p;
    Psrec__Header *r = NULL;
    char err[PSREC_ERRBUF];
    a->rc = psrec_coord_client_register(a->c, PSREC__ROLE__WORKER, NULL, UINT32_MAX, &r, err);
    if (!a->rc) {
        a->version = r->shard_map ? r->shard_map->version : 0;
        psrec__header__free_unpacked(r, NULL);
    }
    atomic_store(&a->done, 1);
    return NULL;
}

static void test_register_waits_for_map(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-wait", 2, 1, 0);
    psrec_coord_client_t *s0 = client(&f, JOB, 5000), *s1 = client(&f, JOB, 5000), *mon = client(&f, JOB, 5000);
    wait_arg_t w = {.c = client(&f, JOB, 5000)};
    atomic_init(&w.done, 0);
    regjob_t j0 = {.c = s0, .role = PSREC__ROLE__SERVER, .addr = "tcp://s0:1", .want = UINT32_MAX};
    assert_int_equal(pthread_create(&j0.th, NULL, regjob_main, &j0), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_main, &w), 0);
    /* wait (bounded) until the coordinator has server 0 and the worker registered */
    int64_t deadline = now_ms() + 5000;
    int registered = 0;
    while (!registered && now_ms() < deadline) {
        Psrec__Header *s = status(mon);
        registered = find_member(s, PSREC__ROLE__WORKER, 0) && find_member(s, PSREC__ROLE__SERVER, 0);
        assert_null(s->shard_map); /* one server is missing: no map yet */
        psrec__header__free_unpacked(s, NULL);
    }
    assert_true(registered);
    /* the map cannot be complete: register() must still be waiting */
    assert_int_equal(atomic_load(&w.done), 0);
    uint32_t rank;
    reg_ok(s1, PSREC__ROLE__SERVER, "tcp://s1:1", UINT32_MAX, &rank, NULL);
    assert_int_equal(rank, 1);
    pthread_join(th, NULL);
    pthread_join(j0.th, NULL);
    assert_int_equal(j0.rc, PSREC_OK);
    assert_int_equal(j0.rank, 0);
    assert_int_equal(w.rc, PSREC_OK);
    assert_int_equal(w.version, 1);
    psrec_coord_client_destroy(&w.c);
    psrec_coord_client_destroy(&s0);
    psrec_coord_client_destroy(&s1);
    psrec_coord_client_destroy(&mon);
    finish(&f);
}

static void test_refused(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-refuse", 2, 1, 0);
    psrec_coord_client_t *c[5];
    for (int i = 0; i < 5; i++)
        c[i] = client(&f, JOB, 3000);
    const char *addrs[2] = {"tcp://a:1", "tcp://b:1"};
    reg_cluster(c, addrs, 2, NULL, NULL, 0);
    assert_int_equal(reg(c[2], PSREC__ROLE__SERVER, "tcp://c:1", UINT32_MAX, NULL, NULL), PSREC_EREFUSED);
    assert_int_equal(reg(c[2], PSREC__ROLE__SERVER, "tcp://c:1", 2, NULL, NULL), PSREC_EREFUSED);
    reg_ok(c[3], PSREC__ROLE__WORKER, NULL, UINT32_MAX, NULL, NULL);
    assert_int_equal(reg(c[4], PSREC__ROLE__WORKER, NULL, UINT32_MAX, NULL, NULL), PSREC_EREFUSED);
    assert_int_equal(reg(c[4], PSREC__ROLE__WORKER, NULL, 7, NULL, NULL), PSREC_EREFUSED);
    /* another job: refused for every request */
    psrec_coord_client_t *other = client(&f, JOB + 1, 3000);
    char err[PSREC_ERRBUF];
    Psrec__Header *s = NULL;
    assert_int_equal(reg(other, PSREC__ROLE__WORKER, NULL, UINT32_MAX, NULL, NULL), PSREC_EREFUSED);
    assert_int_equal(psrec_coord_client_status(other, &s, err), PSREC_EREFUSED);
    assert_null(s);
    assert_int_equal(psrec_coord_client_barrier(other, "x", 1, err), PSREC_EREFUSED);
    /* the refused ones did not take a slot */
    s = status(c[0]);
    assert_int_equal(s->n_members, 3);
    psrec__header__free_unpacked(s, NULL);
    psrec_coord_client_destroy(&other);
    for (int i = 0; i < 5; i++)
        psrec_coord_client_destroy(&c[i]);
    finish(&f);
}

/* ---- barriers ---- */

typedef struct {
    psrec_coord_client_t *c;
    atomic_int *arrived;
    int seen[2];
    psrec_err rc[2];
} bar_arg_t;

static void *bar_main(void *p)
{
    bar_arg_t *a = p;
    char err[PSREC_ERRBUF];
    for (int round = 0; round < 2; round++) {
        atomic_fetch_add(a->arrived, 1);
        a->rc[round] = psrec_coord_client_barrier(a->c, "epoch-start", 3, err);
        a->seen[round] = atomic_load(a->arrived);
    }
    return NULL;
}

static void test_barrier_threads(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-bar", 1, 3, 0);
    psrec_coord_client_t *s = client(&f, JOB, 5000);
    reg_ok(s, PSREC__ROLE__SERVER, "tcp://s:1", UINT32_MAX, NULL, NULL);
    atomic_int arrived;
    atomic_init(&arrived, 0);
    bar_arg_t a[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].c = client(&f, JOB, 5000);
        a[i].arrived = &arrived;
        reg_ok(a[i].c, PSREC__ROLE__WORKER, NULL, UINT32_MAX, NULL, NULL);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, bar_main, &a[i]), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    /* nobody left a round before all three had arrived in it (the name is reused for round 2) */
    for (int i = 0; i < 3; i++)
        for (int r = 0; r < 2; r++) {
            assert_int_equal(a[i].rc[r], PSREC_OK);
            assert_true(a[i].seen[r] >= 3 * (r + 1));
        }
    for (int i = 0; i < 3; i++)
        psrec_coord_client_destroy(&a[i].c);
    psrec_coord_client_destroy(&s);
    finish(&f);
}

static Psrec__Header barrier_req(const char *name, uint32_t count, uint64_t seq)
{
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__BARRIER);
    h.barrier_name = (char *)name;
    h.barrier_count = count;
    h.seq = seq;
    return h;
}

/* Deterministic: a raw peer sends BARRIER then STATUS on one connection (processed in order). If the
 * barrier had been answered early, its BARRIER_OK would arrive before the STATUS_OK. */
static void test_barrier_held(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-held", 1, 3, 0);
    void *A = raw_dealer(&f), *B = raw_dealer(&f);
    psrec_coord_client_t *C = client(&f, JOB, 5000);
    char err[PSREC_ERRBUF];
    void *peers[2] = {A, B};
    for (int round = 0; round < 2; round++) {
        for (int p = 0; p < 2; p++) {
            Psrec__Header b = barrier_req("b", 3, 10 + round), s;
            raw_send(peers[p], &b);
            psrec_wire_header_init(&s, PSREC__TYPE__STATUS);
            s.seq = 20 + round;
            raw_send(peers[p], &s);
            Psrec__Header *r = raw_recv(peers[p]);
            assert_int_equal(r->type, PSREC__TYPE__STATUS_OK); /* the barrier is held */
            assert_int_equal(r->seq, 20 + round);
            psrec__header__free_unpacked(r, NULL);
        }
        assert_int_equal(psrec_coord_client_barrier(C, "b", 3, err), PSREC_OK); /* the third arrival */
        for (int p = 0; p < 2; p++) {
            Psrec__Header *r = raw_recv(peers[p]);
            assert_int_equal(r->type, PSREC__TYPE__BARRIER_OK);
            assert_int_equal(r->seq, 10 + round);
            assert_string_equal(r->barrier_name, "b");
            assert_int_equal(r->cursor, round); /* generation */
            psrec__header__free_unpacked(r, NULL);
        }
    }
    /* a different count for a pending barrier is refused; the waiting one is unaffected */
    Psrec__Header b1 = barrier_req("c", 2, 30), b2 = barrier_req("c", 3, 31), s1;
    raw_send(A, &b1);
    psrec_wire_header_init(&s1, PSREC__TYPE__STATUS);
    s1.seq = 32;
    raw_send(A, &s1);
    Psrec__Header *sr = raw_recv(A); /* A's BARRIER was handled before B's */
    assert_int_equal(sr->type, PSREC__TYPE__STATUS_OK);
    psrec__header__free_unpacked(sr, NULL);
    raw_send(B, &b2);
    expect_error(B, 31, PSREC_EINVAL);
    assert_int_equal(psrec_coord_client_barrier(C, "c", 2, err), PSREC_OK);
    Psrec__Header *r = raw_recv(A);
    assert_int_equal(r->type, PSREC__TYPE__BARRIER_OK);
    assert_int_equal(r->seq, 30);
    psrec__header__free_unpacked(r, NULL);
    /* the same peer asking again counts once, and its abandoned request gets its own reply */
    Psrec__Header d1 = barrier_req("d", 2, 40), d2 = barrier_req("d", 2, 41);
    raw_send(A, &d1);
    raw_send(A, &d2);
    expect_error(A, 40, PSREC_EINVAL);
    assert_int_equal(psrec_coord_client_barrier(C, "d", 2, err), PSREC_OK);
    r = raw_recv(A);
    assert_int_equal(r->type, PSREC__TYPE__BARRIER_OK);
    assert_int_equal(r->seq, 41);
    psrec__header__free_unpacked(r, NULL);
    /* bad barriers */
    Psrec__Header z = barrier_req("z", 0, 50), e = barrier_req("", 2, 51);
    raw_send(A, &z);
    expect_error(A, 50, PSREC_EINVAL);
    raw_send(A, &e);
    expect_error(A, 51, PSREC_EINVAL);
    assert_int_equal(psrec_coord_client_barrier(C, "", 2, err), PSREC_EINVAL);
    zmq_close(A);
    zmq_close(B);
    psrec_coord_client_destroy(&C);
    finish(&f);
}

/* ---- epochs ---- */

static void test_reregister_epoch(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-epoch", 2, 1, 0);
    psrec_coord_client_t *a = client(&f, JOB, 3000), *b = client(&f, JOB, 3000), *w = client(&f, JOB, 3000);
    psrec_coord_client_t *a2 = client(&f, JOB, 3000), *b2 = client(&f, JOB, 3000), *w2 = client(&f, JOB, 3000);
    uint32_t ra, rb, rw, r2;
    uint64_t ea, eb, ew, e2;
    /* a registers first (its register() then waits for b): ranks follow registration order */
    regjob_t ja = {.c = a, .role = PSREC__ROLE__SERVER, .addr = "tcp://a:1", .want = UINT32_MAX};
    assert_int_equal(pthread_create(&ja.th, NULL, regjob_main, &ja), 0);
    int64_t deadline = now_ms() + 5000;
    int seen = 0;
    while (!seen && now_ms() < deadline) {
        Psrec__Header *s0 = status(w);
        seen = s0->n_members == 1;
        psrec__header__free_unpacked(s0, NULL);
    }
    assert_true(seen);
    reg_ok(b, PSREC__ROLE__SERVER, "tcp://b:1", UINT32_MAX, &rb, &eb);
    pthread_join(ja.th, NULL);
    assert_int_equal(ja.rc, PSREC_OK);
    ra = ja.rank, ea = ja.epoch;
    reg_ok(w, PSREC__ROLE__WORKER, NULL, UINT32_MAX, &rw, &ew);
    assert_int_equal(ra, 0), assert_int_equal(rb, 1), assert_int_equal(rw, 0);
    assert_int_equal(ea, 1), assert_int_equal(eb, 1), assert_int_equal(ew, 1);
    /* a restarted server 0 at the same address: new epoch, same map version */
    reg_ok(a2, PSREC__ROLE__SERVER, "tcp://a:1", 0, &r2, &e2);
    assert_int_equal(r2, 0);
    assert_int_equal(e2, 2);
    Psrec__Header *s = status(w);
    assert_int_equal(s->shard_map->version, 1);
    assert_int_equal(find_member(s, PSREC__ROLE__SERVER, 0)->epoch, 2);
    psrec__header__free_unpacked(s, NULL);
    /* the old process is fenced; the new one is heard */
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    int stop;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_coord_client_heartbeat(a, &h, &stop, err), PSREC_ESTALE);
    assert_int_equal(hb(a2, 0, 0, 0), 0);
    /* server 1 comes back at another address: the map moves to version 2 */
    Psrec__Header *r = NULL;
    assert_int_equal(psrec_coord_client_register(b2, PSREC__ROLE__SERVER, "tcp://b:2", 1, &r, err), PSREC_OK);
    assert_int_equal(r->rank, 1);
    assert_int_equal(r->epoch, 2);
    assert_non_null(r->shard_map);
    assert_int_equal(r->shard_map->version, 2);
    assert_string_equal(r->shard_map->server_addr[0], "tcp://a:1");
    assert_string_equal(r->shard_map->server_addr[1], "tcp://b:2");
    psrec__header__free_unpacked(r, NULL);
    s = status(w);
    assert_int_equal(s->shard_map->version, 2);
    assert_int_equal(s->map_version, 2);
    psrec__header__free_unpacked(s, NULL);
    /* a worker too; its old client is fenced */
    reg_ok(w2, PSREC__ROLE__WORKER, NULL, 0, &r2, &e2);
    assert_int_equal(r2, 0);
    assert_int_equal(e2, 2);
    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    assert_int_equal(psrec_coord_client_heartbeat(w, &h, &stop, err), PSREC_ESTALE);
    assert_int_equal(psrec_coord_client_heartbeat(b, &h, &stop, err), PSREC_ESTALE);
    psrec_coord_client_t *all[] = {a, b, w, a2, b2, w2};
    for (int i = 0; i < 6; i++)
        psrec_coord_client_destroy(&all[i]);
    finish(&f);
}

/* ---- status ---- */

static void test_status_stats(void **st)
{
    (void)st;
    enum { NS = 2, NW = 3 };
    fx_t f;
    start(&f, "inproc://coord-status", NS, NW, 0);
    psrec_coord_client_t *s[NS], *w[NW];
    const char *addrs[NS] = {"tcp://srv0:90", "tcp://srv1:90"};
    uint32_t srank[NS];
    for (int i = 0; i < NS; i++)
        s[i] = client(&f, JOB, 3000);
    for (int i = 0; i < NW; i++)
        w[i] = client(&f, JOB, 3000);
    reg_cluster(s, addrs, NS, srank, w, NW);
    /* server heartbeats: table stats in the header, pull/push counters in its own Member entry;
     * the stats of client s[i] are keyed by i, its rank is srank[i] */
    for (int i = 0; i < NS; i++) {
        Psrec__Header h;
        psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
        Psrec__TableStats ts[2], *tsp[2] = {&ts[0], &ts[1]};
        for (int t = 0; t < 2; t++) {
            psrec__table_stats__init(&ts[t]);
            ts[t].table = table_ids[t];
            ts[t].rows = 1000u * (i + 1) + t;
            ts[t].bytes_per_row = 76.5 + t;
        }
        Psrec__Member me, *mep = &me;
        psrec__member__init(&me);
        me.pulls = 111u * (i + 1);
        me.pushes = 222u * (i + 1);
        h.n_table_stats = 2;
        h.table_stats = tsp;
        h.n_members = 1;
        h.members = &mep;
        int stop;
        char err[PSREC_ERRBUF];
        assert_int_equal(psrec_coord_client_heartbeat(s[i], &h, &stop, err), PSREC_OK);
        assert_int_equal(stop, 0);
    }
    const uint64_t ex[NW] = {1500, 250, 9000};
    const double loss[NW] = {2.5, 3.25, 1.75};
    for (int i = 0; i < NW; i++)
        assert_int_equal(hb(w[i], ex[i], loss[i], 0), 0);
    Psrec__Header *r = status(w[0]);
    assert_int_equal(r->n_members, NS + NW);
    for (int i = 0; i < NS; i++) {
        const Psrec__Member *m = find_member(r, PSREC__ROLE__SERVER, srank[i]);
        assert_non_null(m);
        assert_string_equal(m->addr, addrs[i]);
        assert_true(m->alive);
        assert_int_equal(m->epoch, 1);
        assert_true(m->seconds_since_seen >= 0 && m->seconds_since_seen < 10);
        assert_int_equal(m->pulls, 111u * (i + 1));
        assert_int_equal(m->pushes, 222u * (i + 1));
        assert_int_equal(m->n_tables, 2);
        for (int t = 0; t < 2; t++) {
            assert_int_equal(m->tables[t]->table, table_ids[t]);
            assert_int_equal(m->tables[t]->rows, 1000u * (i + 1) + t);
            assert_true(m->tables[t]->bytes_per_row == 76.5 + t);
        }
    }
    uint64_t sum = 0;
    double mean = 0;
    for (int i = 0; i < NW; i++) {
        const Psrec__Member *m = find_member(r, PSREC__ROLE__WORKER, (uint32_t)i);
        assert_non_null(m);
        assert_true(m->alive);
        /* ranks follow registration order: worker i is client w[i] */
        assert_int_equal(m->examples, ex[i]);
        assert_true(m->loss == loss[i]);
        sum += ex[i];
        mean += loss[i] / NW;
    }
    assert_int_equal(r->examples, sum);
    assert_true(r->loss > mean - 1e-12 && r->loss < mean + 1e-12);
    assert_non_null(r->shard_map);
    assert_int_equal(r->shard_map->version, 1);
    assert_false(r->stop);
    psrec__header__free_unpacked(r, NULL);
    for (int i = 0; i < NS; i++)
        psrec_coord_client_destroy(&s[i]);
    for (int i = 0; i < NW; i++)
        psrec_coord_client_destroy(&w[i]);
    finish(&f);
}

/* ---- job end ---- */

static void test_job_end(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-end", 2, 2, 0);
    psrec_coord_client_t *s0 = client(&f, JOB, 3000), *s1 = client(&f, JOB, 3000);
    psrec_coord_client_t *w0 = client(&f, JOB, 3000), *w1 = client(&f, JOB, 3000), *mon = client(&f, JOB, 3000);
    psrec_coord_client_t *sv[2] = {s0, s1}, *wk[2] = {w0, w1};
    const char *addrs[2] = {"tcp://s0:1", "tcp://s1:1"};
    reg_cluster(sv, addrs, 2, NULL, wk, 2);
    assert_int_equal(hb(w0, 10, 1.0, 0), 0);
    assert_int_equal(hb(s0, 0, 0, 0), 0);
    assert_int_equal(hb(w0, 20, 1.0, 1), 0); /* one of two workers finished: not over */
    assert_int_equal(hb(s0, 0, 0, 0), 0);
    assert_int_equal(hb(w0, 20, 1.0, 1), 0); /* the same worker twice still counts once */
    assert_int_equal(hb(s1, 0, 0, 0), 0);
    assert_int_equal(hb(w1, 30, 1.0, 1), 1); /* the last one: over */
    assert_int_equal(hb(s0, 0, 0, 0), 1);
    /* server 1 has not heard it yet: the coordinator still serves */
    Psrec__Header *r = status(mon);
    assert_true(r->stop);
    assert_int_equal(r->examples, 50);
    psrec__header__free_unpacked(r, NULL);
    assert_int_equal(hb(s1, 0, 0, 0), 1);
    assert_int_equal(join_within(&f, 5000), 0); /* run() returned by itself */
    assert_int_equal(f.run_rc, PSREC_OK);
    psrec_coord_client_t *all[] = {s0, s1, w0, w1, mon};
    for (int i = 0; i < 5; i++)
        psrec_coord_client_destroy(&all[i]);
    finish(&f);
}

/* A dead server does not hold the end of the job. */
static void test_job_end_dead_server(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-end-dead", 2, 1, 300);
    psrec_coord_client_t *s0 = client(&f, JOB, 3000), *s1 = client(&f, JOB, 3000), *w0 = client(&f, JOB, 3000);
    psrec_coord_client_t *sv[2] = {s0, s1};
    const char *addrs[2] = {"tcp://s0:1", "tcp://s1:1"};
    reg_cluster(sv, addrs, 2, NULL, &w0, 1);
    assert_int_equal(hb(w0, 5, 0.5, 1), 1);
    assert_int_equal(hb(s0, 0, 0, 0), 1);
    /* server 1 never heartbeats: once it is dead (300 ms), run() returns */
    assert_int_equal(join_within(&f, 5000), 0);
    assert_int_equal(f.run_rc, PSREC_OK);
    psrec_coord_client_destroy(&s0);
    psrec_coord_client_destroy(&s1);
    psrec_coord_client_destroy(&w0);
    finish(&f);
}

/* ---- liveness ---- */

/* alive must agree with seconds_since_seen and the 50 ms timeout (both computed at one instant) */
static void check_alive_consistent(const Psrec__Member *m)
{
    if (m->alive)
        assert_true(m->seconds_since_seen <= 0.050 + 1e-9);
    else
        assert_true(m->seconds_since_seen > 0.050 - 1e-9);
}

static void test_heartbeat_timeout(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-timeout", 1, 1, 50);
    psrec_coord_client_t *s = client(&f, JOB, 3000), *w = client(&f, JOB, 3000);
    uint64_t epoch;
    reg_ok(s, PSREC__ROLE__SERVER, "tcp://s:1", UINT32_MAX, NULL, &epoch);
    reg_ok(w, PSREC__ROLE__WORKER, NULL, UINT32_MAX, NULL, NULL);
    assert_int_equal(epoch, 1);
    /* the worker keeps heartbeating; the server stays silent until STATUS shows it dead */
    int64_t deadline = now_ms() + 5000;
    int dead = 0, worker_alive_seen = 0;
    while (!dead && now_ms() < deadline) {
        hb(w, 1, 1.0, 0);
        Psrec__Header *r = status(w);
        const Psrec__Member *sm = find_member(r, PSREC__ROLE__SERVER, 0), *wm = find_member(r, PSREC__ROLE__WORKER, 0);
        assert_non_null(sm);
        assert_non_null(wm);
        check_alive_consistent(sm);
        check_alive_consistent(wm);
        worker_alive_seen += wm->alive;
        dead = !sm->alive;
        psrec__header__free_unpacked(r, NULL);
    }
    assert_true(dead);
    assert_true(worker_alive_seen > 0);
    /* registering again with its old rank: a new epoch and alive again */
    int back = 0;
    for (int tries = 0; tries < 20 && !back; tries++) {
        uint32_t rank;
        reg_ok(s, PSREC__ROLE__SERVER, "tcp://s:1", 0, &rank, &epoch);
        assert_int_equal(rank, 0);
        assert_int_equal(epoch, 2 + (uint64_t)tries);
        Psrec__Header *r = status(w);
        const Psrec__Member *sm = find_member(r, PSREC__ROLE__SERVER, 0);
        assert_int_equal(sm->epoch, epoch);
        check_alive_consistent(sm);
        back = sm->alive;
        psrec__header__free_unpacked(r, NULL);
    }
    assert_true(back);
    psrec_coord_client_destroy(&s);
    psrec_coord_client_destroy(&w);
    finish(&f);
}

/* ---- a missing or silent coordinator ---- */

static void expect_timeouts(void *zctx, const char *ep)
{
    psrec_coord_client_t *c;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_coord_client_new(&c, zctx, ep, JOB, 100, err), PSREC_OK);
    Psrec__Header *r = NULL;
    int64_t t0 = now_ms();
    assert_int_equal(psrec_coord_client_register(c, PSREC__ROLE__WORKER, NULL, UINT32_MAX, &r, err), PSREC_ETIMEDOUT);
    assert_null(r);
    assert_int_equal(psrec_coord_client_status(c, &r, err), PSREC_ETIMEDOUT);
    assert_null(r);
    assert_int_equal(psrec_coord_client_barrier(c, "b", 2, err), PSREC_ETIMEDOUT);
    assert_int_equal(psrec_coord_client_shutdown(c, err), PSREC_ETIMEDOUT);
    int64_t dt = now_ms() - t0;
    assert_true(dt >= 4 * 90);        /* each call waited for its deadline ... */
    assert_true(dt < 4 * 100 + 1500); /* ... and not much longer */
    psrec_coord_client_destroy(&c);
}

static void test_no_coordinator(void **st)
{
    (void)st;
    void *zctx = zmq_ctx_new();
    /* nobody bound (inproc), nobody listening (tcp: a port just released) */
    expect_timeouts(zctx, "inproc://nobody-here");
    void *tmp = zmq_socket(zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(tmp, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(tmp, "tcp://127.0.0.1:0"), 0);
    char ep[256];
    size_t len = sizeof ep;
    assert_int_equal(zmq_getsockopt(tmp, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    zmq_close(tmp);
    expect_timeouts(zctx, ep);
    /* a coordinator that receives but never answers */
    void *silent = zmq_socket(zctx, ZMQ_ROUTER);
    zmq_setsockopt(silent, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(silent, "inproc://silent"), 0);
    expect_timeouts(zctx, "inproc://silent");
    zmq_close(silent);
    /* a heartbeat before registering is a caller bug */
    psrec_coord_client_t *c;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_coord_client_new(&c, zctx, "inproc://nobody-here", JOB, 100, err), PSREC_OK);
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    int stop;
    assert_int_equal(psrec_coord_client_heartbeat(c, &h, &stop, err), PSREC_EINVAL);
    Psrec__Header *r = NULL;
    assert_int_equal(psrec_coord_client_register(c, PSREC__ROLE__CLIENT, NULL, UINT32_MAX, &r, err), PSREC_EINVAL);
    assert_int_equal(psrec_coord_client_register(c, PSREC__ROLE__SERVER, "", UINT32_MAX, &r, err), PSREC_EINVAL);
    psrec_coord_client_destroy(&c);
    assert_null(c);
    psrec_coord_client_destroy(&c); /* NULL is fine */
    assert_int_equal(psrec_coord_client_new(&c, zctx, "bogus://x", JOB, 100, err), PSREC_EINVAL);
    assert_null(c);
    assert_int_equal(psrec_coord_client_new(&c, zctx, "inproc://x", JOB, -1, err), PSREC_EINVAL);
    zmq_ctx_term(zctx);
}

/* ---- re-sent requests and a restarting coordinator ---- */

/* Everything queued at a silent ROUTER (bounded wait for the last one). */
static int drain_silent(void *silent, Psrec__Type want, uint64_t *seq)
{
    int n = 0;
    for (;;) {
        psrec_wire_route_t route;
        psrec_wire_msg_t m;
        char err[PSREC_ERRBUF];
        psrec_err rc = psrec_wire_recv(silent, &route, &m, 100, NULL, err);
        if (rc == PSREC_ETIMEDOUT) return n;
        if (rc) fail_msg("silent recv: %s", err);
        assert_int_equal(m.hdr->type, want);
        if (n == 0) *seq = m.hdr->seq;
        assert_int_equal(m.hdr->seq, *seq); /* every copy carries the first one's seq */
        n++;
        psrec_wire_msg_clear(&m);
    }
}

static void test_resend_same_seq(void **st)
{
    (void)st;
    void *zctx = zmq_ctx_new();
    void *silent = zmq_socket(zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(silent, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(silent, "inproc://coord-resend"), 0);
    psrec_coord_client_t *c;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_coord_client_new(&c, zctx, "inproc://coord-resend", JOB, 20000, err), PSREC_OK);
    psrec_coord_client_set_timeout(c, 300); /* replaces the 20 s of the constructor */
    psrec_coord_client_set_resend(c, 50);
    Psrec__Header *r = NULL;
    int64_t t0 = now_ms();
    assert_int_equal(psrec_coord_client_status(c, &r, err), PSREC_ETIMEDOUT);
    int64_t dt = now_ms() - t0;
    assert_null(r);
    assert_true(dt >= 290 && dt < 3000);
    assert_non_null(strstr(err, "no reply to STATUS"));
    uint64_t seq = 0, seq2 = 0;
    int n = drain_silent(silent, PSREC__TYPE__STATUS, &seq);
    if (n < 3 || n > 7) fail_msg("STATUS sent %d times in 300 ms, every 50 ms expected", n);
    /* the next call has a new seq, re-sent likewise */
    assert_int_equal(psrec_coord_client_shutdown(c, err), PSREC_ETIMEDOUT);
    assert_true(drain_silent(silent, PSREC__TYPE__SHUTDOWN, &seq2) >= 3);
    assert_true(seq2 > seq);
    /* REGISTER is re-sent too (the coordinator answers copies alike) */
    assert_int_equal(psrec_coord_client_register(c, PSREC__ROLE__WORKER, NULL, UINT32_MAX, &r, err), PSREC_ETIMEDOUT);
    assert_true(drain_silent(silent, PSREC__TYPE__REGISTER, &seq) >= 3);
    psrec_coord_client_destroy(&c);
    zmq_close(silent);
    zmq_ctx_term(zctx);
}

/* The coordinator's replacement, from a helper thread: a stand-in on the port swallows the client's
 * STATUS twice (a coordinator that died with the request in flight, and the re-send), then a new
 * coordinator binds the same port. */
typedef struct {
    fx_t *f;
    char ep[256];
    uint64_t seq[2];
    int type[2];
    psrec_err rc;
    char err[PSREC_ERRBUF];
} replace_t;

static void *replace_main(void *p)
{
    replace_t *a = p;
    a->rc = PSREC_EIO;
    void *s = zmq_socket(a->f->zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    for (int tries = 0; zmq_bind(s, a->ep) != 0; tries++) { /* the old socket releases the port asynchronously */
        if (tries == 500) {
            snprintf(a->err, sizeof a->err, "stand-in cannot bind %s", a->ep);
            zmq_close(s);
            return NULL;
        }
        zmq_poll(NULL, 0, 10);
    }
    for (int i = 0; i < 2; i++) {
        psrec_wire_route_t route;
        psrec_wire_msg_t m;
        if ((a->rc = psrec_wire_recv(s, &route, &m, 5000, NULL, a->err))) {
            zmq_close(s);
            return NULL;
        }
        a->seq[i] = m.hdr->seq;
        a->type[i] = m.hdr->type;
        psrec_wire_msg_clear(&m);
    }
    zmq_close(s);
    psrec_coord_conf_t cc = {.bind = a->ep, .n_servers = 1, .n_workers = 1, .job_id = JOB, .seed = SEED};
    for (int tries = 0; (a->rc = psrec_coord_new(&a->f->coord, a->f->zctx, &cc, a->err)) == PSREC_EIO && tries < 500;
         tries++)
        zmq_poll(NULL, 0, 10);
    if (a->rc) return NULL;
    if (pthread_create(&a->f->th, NULL, coord_main, a->f)) {
        a->rc = psrec_fail(a->err, PSREC_EIO, "pthread_create");
        return NULL;
    }
    a->f->running = 1;
    return NULL;
}

static void test_restart_mid_call(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "tcp://127.0.0.1:0", 1, 1, 0);
    replace_t rp = {.f = &f};
    snprintf(rp.ep, sizeof rp.ep, "%s", psrec_coord_endpoint(f.coord));
    psrec_coord_client_t *c = client(&f, JOB, 10000);
    psrec_coord_client_set_resend(c, 100);
    reg_ok(c, PSREC__ROLE__SERVER, "tcp://s:1", UINT32_MAX, NULL, NULL);
    Psrec__Header *r = status(c);
    assert_int_equal(r->n_members, 1);
    psrec__header__free_unpacked(r, NULL);
    /* the coordinator goes away; a STATUS issued now is answered by its replacement */
    psrec_coord_stop(f.coord);
    assert_int_equal(join_within(&f, 5000), 0);
    assert_int_equal(f.run_rc, PSREC_OK);
    psrec_coord_destroy(&f.coord);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, replace_main, &rp), 0);
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_coord_client_status(c, &r, err);
    pthread_join(th, NULL);
    if (rp.rc) fail_msg("replacement: %s", rp.err);
    if (rc) fail_msg("status across the restart: %s", err);
    assert_int_equal(r->n_members, 0); /* the new coordinator answered (it knows nobody yet) */
    psrec__header__free_unpacked(r, NULL);
    assert_int_equal(rp.type[0], PSREC__TYPE__STATUS);
    assert_int_equal(rp.type[1], PSREC__TYPE__STATUS);
    assert_true(rp.seq[0] == rp.seq[1]);
    psrec_coord_client_destroy(&c);
    finish(&f);
}

/* A BARRIER re-sent (same peer, same seq) while it waits counts once and gets one reply. */
static void test_barrier_duplicate(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-bdup", 1, 2, 0);
    void *A = raw_dealer(&f);
    psrec_coord_client_t *C = client(&f, JOB, 5000);
    Psrec__Header b = barrier_req("dup", 2, 40), s;
    raw_send(A, &b);
    raw_send(A, &b); /* the re-send */
    psrec_wire_header_init(&s, PSREC__TYPE__STATUS);
    s.seq = 41;
    raw_send(A, &s);
    Psrec__Header *r = raw_recv(A); /* held, and no complaint about the copy */
    assert_int_equal(r->type, PSREC__TYPE__STATUS_OK);
    assert_int_equal(r->seq, 41);
    psrec__header__free_unpacked(r, NULL);
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_coord_client_barrier(C, "dup", 2, err), PSREC_OK); /* A counted once: 2 of 2 */
    r = raw_recv(A);
    assert_int_equal(r->type, PSREC__TYPE__BARRIER_OK);
    assert_int_equal(r->seq, 40);
    psrec__header__free_unpacked(r, NULL);
    s.seq = 42;
    raw_send(A, &s);
    r = raw_recv(A); /* one BARRIER_OK only */
    assert_int_equal(r->type, PSREC__TYPE__STATUS_OK);
    assert_int_equal(r->seq, 42);
    psrec__header__free_unpacked(r, NULL);
    zmq_close(A);
    psrec_coord_client_destroy(&C);
    finish(&f);
}

/* ---- malformed input ---- */

static void send_packed(void *s, const Psrec__Header *h, int extra_frame)
{
    unsigned char buf[512];
    size_t n = psrec__header__get_packed_size(h);
    assert_true(n <= sizeof buf);
    psrec__header__pack(h, buf);
    assert_int_equal(zmq_send(s, buf, n, extra_frame ? ZMQ_SNDMORE : 0), (int)n);
    if (extra_frame) assert_int_equal(zmq_send(s, "xyz", 3, 0), 3);
}

static void test_malformed(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "inproc://coord-bad", 1, 1, 0);
    void *A = raw_dealer(&f);
    /* undecodable header */
    const unsigned char junk[3] = {0xff, 0xff, 0xff};
    assert_int_equal(zmq_send(A, junk, sizeof junk, 0), 3);
    expect_error(A, 0, PSREC_EPROTO);
    /* another wire version */
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__STATUS);
    h.version = 99;
    h.job_id = JOB;
    send_packed(A, &h, 0);
    expect_error(A, 0, PSREC_EVERSION);
    /* a declared bulk frame that never comes, and a frame that was not declared */
    psrec_wire_header_init(&h, PSREC__TYPE__STATUS);
    h.job_id = JOB;
    Psrec__Frame fr, *frp = &fr;
    psrec__frame__init(&fr);
    fr.raw_bytes = 8;
    h.n_frames = 1;
    h.frames = &frp;
    send_packed(A, &h, 0);
    expect_error(A, 0, PSREC_EPROTO);
    psrec_wire_header_init(&h, PSREC__TYPE__STATUS);
    h.job_id = JOB;
    send_packed(A, &h, 1);
    expect_error(A, 0, PSREC_EPROTO);
    /* well-formed messages the coordinator refuses, with their seq echoed */
    psrec_wire_header_init(&h, PSREC__TYPE__PULL);
    h.seq = 77;
    raw_send(A, &h);
    expect_error(A, 77, PSREC_EPROTO);
    psrec_wire_header_init(&h, PSREC__TYPE__REGISTER);
    h.seq = 78;
    h.role = PSREC__ROLE__CLIENT;
    raw_send(A, &h);
    expect_error(A, 78, PSREC_EINVAL);
    psrec_wire_header_init(&h, PSREC__TYPE__REGISTER);
    h.seq = 79;
    h.role = PSREC__ROLE__SERVER;
    h.rank = UINT32_MAX;
    raw_send(A, &h); /* a server without an address */
    expect_error(A, 79, PSREC_EINVAL);
    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    h.seq = 80;
    h.role = PSREC__ROLE__WORKER;
    h.rank = 0;
    raw_send(A, &h); /* nobody registered as worker 0 */
    expect_error(A, 80, PSREC_ESTALE);
    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    h.seq = 81;
    h.role = PSREC__ROLE__WORKER;
    h.rank = 5;
    raw_send(A, &h);
    expect_error(A, 81, PSREC_ESTALE);
    psrec_wire_header_init(&h, PSREC__TYPE__SHARD_MAP_GET);
    h.seq = 82;
    raw_send(A, &h);
    expect_error(A, 82, PSREC_ENOTREADY);
    /* a REGISTER delivered twice (a duplicated or re-sent message) takes one rank and one epoch */
    for (int k = 0; k < 2; k++) {
        psrec_wire_header_init(&h, PSREC__TYPE__REGISTER);
        h.seq = 83;
        h.role = PSREC__ROLE__WORKER;
        h.rank = UINT32_MAX;
        raw_send(A, &h);
    }
    Psrec__Header *r1 = raw_recv(A), *r2 = raw_recv(A);
    assert_int_equal(r1->type, PSREC__TYPE__REGISTER_OK);
    assert_int_equal(r2->type, PSREC__TYPE__REGISTER_OK);
    assert_int_equal(r1->rank, r2->rank);
    assert_int_equal(r1->epoch, r2->epoch);
    assert_int_equal(r1->epoch, 1);
    psrec__header__free_unpacked(r1, NULL);
    psrec__header__free_unpacked(r2, NULL);
    /* and it still serves */
    psrec_coord_client_t *c = client(&f, JOB, 3000);
    reg_ok(c, PSREC__ROLE__SERVER, "tcp://s:1", UINT32_MAX, NULL, NULL);
    Psrec__Header *r = status(c);
    assert_int_equal(r->n_members, 2); /* the server and the one worker */
    psrec__header__free_unpacked(r, NULL);
    psrec_wire_header_init(&h, PSREC__TYPE__SHARD_MAP_GET);
    h.seq = 84;
    raw_send(A, &h);
    r = raw_recv(A);
    assert_int_equal(r->type, PSREC__TYPE__SHARD_MAP);
    assert_int_equal(r->seq, 84);
    assert_int_equal(r->shard_map->version, 1);
    psrec__header__free_unpacked(r, NULL);
    zmq_close(A);
    psrec_coord_client_destroy(&c);
    finish(&f);
}

/* ---- tcp and SHUTDOWN ---- */

static void test_tcp_shutdown(void **st)
{
    (void)st;
    fx_t f;
    start(&f, "tcp://127.0.0.1:0", 1, 1, 0);
    const char *ep = psrec_coord_endpoint(f.coord);
    assert_int_equal(strncmp(ep, "tcp://127.0.0.1:", 16), 0);
    assert_true(atoi(ep + 16) > 0);
    psrec_coord_client_t *s = client(&f, JOB, 3000), *w = client(&f, JOB, 3000);
    reg_ok(s, PSREC__ROLE__SERVER, "tcp://127.0.0.1:7777", UINT32_MAX, NULL, NULL);
    Psrec__Header *r = NULL;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_coord_client_register(w, PSREC__ROLE__WORKER, NULL, UINT32_MAX, &r, err), PSREC_OK);
    assert_int_equal(r->shard_map->version, 1);
    for (size_t i = 0; i < r->shard_map->n_slot_server; i++)
        assert_int_equal(r->shard_map->slot_server[i], 0);
    assert_string_equal(r->shard_map->server_addr[0], "tcp://127.0.0.1:7777");
    psrec__header__free_unpacked(r, NULL);
    assert_int_equal(psrec_coord_client_barrier(w, "solo", 1, err), PSREC_OK);
    assert_int_equal(hb(w, 3, 0.25, 0), 0);
    r = status(s);
    assert_int_equal(r->n_members, 2);
    assert_int_equal(r->examples, 3);
    psrec__header__free_unpacked(r, NULL);
    assert_int_equal(psrec_coord_client_shutdown(s, err), PSREC_OK);
    assert_int_equal(join_within(&f, 5000), 0);
    assert_int_equal(f.run_rc, PSREC_OK);
    psrec_coord_client_destroy(&s);
    psrec_coord_client_destroy(&w);
    finish(&f);
}

/* --checkpoint-every auto: Young's interval, against the expected loss it minimises. */
static void test_auto_interval(void **st)
{
    (void)st;
    /* 0.2 s rounds, one failure a day: sqrt(2 x 0.2 x 86400) = 185.9 s */
    assert_true(fabs(psrec_coord_auto_interval(0.2, 86400) - 185.903) < 0.01);
    /* it minimises C/T + T/(2M) (checkpoint overhead + expected rework per unit time): its neighbours
     * cost more */
    double C = 3.0, M = 7200, T = psrec_coord_auto_interval(C, M);
    double f = C / T + T / (2 * M);
    assert_true(f < C / (0.8 * T) + 0.8 * T / (2 * M));
    assert_true(f < C / (1.25 * T) + 1.25 * T / (2 * M));
    /* kept within [10 s, 6 h] */
    assert_true(psrec_coord_auto_interval(0.001, 60) == 10.0);
    assert_true(psrec_coord_auto_interval(0, 86400) == 10.0);
    assert_true(psrec_coord_auto_interval(600, 1e9) == 21600.0);
}

static void test_conf_errors(void **st)
{
    (void)st;
    void *zctx = zmq_ctx_new();
    psrec_coord_t *c = NULL;
    char err[PSREC_ERRBUF];
    psrec_coord_conf_t cc = {.bind = "inproc://conf", .n_servers = 0, .n_workers = 1, .job_id = JOB};
    assert_int_equal(psrec_coord_new(&c, zctx, &cc, err), PSREC_EINVAL);
    cc.n_servers = PSREC_WIRE_NSLOTS + 1;
    assert_int_equal(psrec_coord_new(&c, zctx, &cc, err), PSREC_EINVAL);
    cc.n_servers = 1;
    cc.n_workers = 0;
    assert_int_equal(psrec_coord_new(&c, zctx, &cc, err), PSREC_EINVAL);
    cc.n_workers = 1;
    cc.ntables = 1; /* no table list */
    assert_int_equal(psrec_coord_new(&c, zctx, &cc, err), PSREC_EINVAL);
    cc.ntables = 0;
    cc.heartbeat_timeout_ms = -5;
    assert_int_equal(psrec_coord_new(&c, zctx, &cc, err), PSREC_EINVAL);
    cc.heartbeat_timeout_ms = 0;
    cc.bind = "bogus://nowhere";
    assert_int_equal(psrec_coord_new(&c, zctx, &cc, err), PSREC_EIO);
    assert_null(c);
    cc.bind = "inproc://conf";
    assert_int_equal(psrec_coord_new(&c, zctx, &cc, err), PSREC_OK);
    psrec_coord_stop(c); /* run() returns at once after stop */
    assert_int_equal(psrec_coord_run(c, err), PSREC_OK);
    psrec_coord_destroy(&c);
    psrec_coord_destroy(&c);
    zmq_ctx_term(zctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_concurrent),
        cmocka_unit_test(test_register_waits_for_map),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_barrier_threads),
        cmocka_unit_test(test_barrier_held),
        cmocka_unit_test(test_reregister_epoch),
        cmocka_unit_test(test_status_stats),
        cmocka_unit_test(test_job_end),
        cmocka_unit_test(test_job_end_dead_server),
        cmocka_unit_test(test_heartbeat_timeout),
        cmocka_unit_test(test_no_coordinator),
        cmocka_unit_test(test_resend_same_seq),
        cmocka_unit_test(test_restart_mid_call),
        cmocka_unit_test(test_barrier_duplicate),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_tcp_shutdown),
        cmocka_unit_test(test_auto_interval),
        cmocka_unit_test(test_conf_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

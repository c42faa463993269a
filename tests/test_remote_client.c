/* test_remote_client.c: the distributed table client against live servers: random pull/push/set
 * sequences through 1 and 3 servers (inproc and tcp) give bit-identical results to a local store fed
 * the same calls, also through the table-client ops and across request chunks; errors keep their
 * server's code (ESTALE for a wrong map, ENOTFOUND, EPROTO); a server that never answers is
 * PSREC_ETIMEDOUT after timeout x retries naming it; a lost reply is retried with the same seq and the
 * push applied once (a proxy drops and duplicates replies); DUMP returns every row exactly once; and
 * a real coordinator assembles two servers, a worker uses them, and the job end stops everything.
 * Fault tolerance: with PSREC_FAULTS=drop=0.2,dup=0.2 (in a child process: the configuration is read
 * once per process, and the other tests here count messages exactly) 200 pushes of +1 to 50 keys are
 * applied exactly once each and pulls return the exact counts; a server stopped and started again on
 * the same tcp port (first a stand-in answering ENOTREADY, then a fresh server with the rows put back)
 * is waited for with recovery_ms; with no server at all, recovery_ms bounds the call, and the copies
 * queued meanwhile are at most PSREC_REMOTE_SNDHWM; psrec_remote_set_map moves a client to new
 * addresses and server counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/faults.h"
#include "common/rng.h"
#include "common/wire.h"
#include "ps/coord.h"
#include "ps/server.h"
#include "worker/coord_client.h"
#include "worker/remote_client.h"
#include "test_util.h"

#define JOB 31
#define SEED 4242

static const uint32_t ids[2] = {0, 5};
static psrec_table_conf_t tconf[2];

static void init_tables(void)
{
    tconf[0] = (psrec_table_conf_t){
        .dim = 8, .opt = {.kind = PSREC_OPT_ADAGRAD, .lr = 0.05f}, .init = PSREC_INIT_NORMAL, .init_scale = 0.1f};
    tconf[1] = (psrec_table_conf_t){.dim = 3, .opt = {.kind = PSREC_OPT_ADAM, .lr = 0.01f}, .init = PSREC_INIT_ZERO};
}

static psrec_store_t *ref_store(void)
{
    init_tables();
    psrec_store_t *r;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_store_new(&r, SEED, 8), PSREC_OK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(psrec_store_add_table(r, ids[i], &tconf[i], err), PSREC_OK);
    return r;
}

/* ---- servers on threads ---- */

typedef struct {
    psrec_server_t *s;
    pthread_t th;
    psrec_err rc;
    char err[PSREC_ERRBUF];
    /* coordinator mode: the server is created on its thread (registration waits for the others) */
    void *zctx;
    psrec_server_conf_t conf;
    char bind[64];
    atomic_int created;
} srv_t;

static void *srv_main(void *arg)
{
    srv_t *x = arg;
    x->rc = psrec_server_run(x->s, x->err);
    return NULL;
}

typedef struct {
    int n;
    srv_t srv[3];
    char *addr[3];
    Psrec__ShardMap map;
    uint32_t slots[PSREC_WIRE_NSLOTS];
} cluster_t;

/* n standalone servers with a hand-made map (slot -> mix(slot) % n); tcp or inproc. */
static void start_cluster(cluster_t *c, void *z, int n, int tcp, int compress, const char *tag)
{
    memset(c, 0, sizeof *c);
    init_tables();
    c->n = n;
    psrec__shard_map__init(&c->map);
    c->map.version = 1;
    c->map.nslots = PSREC_WIRE_NSLOTS;
    c->map.n_slot_server = PSREC_WIRE_NSLOTS;
    c->map.slot_server = c->slots;
    for (uint32_t i = 0; i < PSREC_WIRE_NSLOTS; i++)
        c->slots[i] = (uint32_t)(psrec_mix64(i * 7 + 1) % (uint64_t)n);
    c->map.n_server_addr = (size_t)n;
    c->map.server_addr = c->addr;
    for (int i = 0; i < n; i++) {
        srv_t *x = &c->srv[i];
        if (tcp)
            snprintf(x->bind, sizeof x->bind, "tcp://127.0.0.1:0");
        else
            snprintf(x->bind, sizeof x->bind, "inproc://%s-%d", tag, i);
        psrec_server_conf_t sc = {.bind = x->bind,
                                  .job_id = JOB,
                                  .compress = compress ? 1 : -1,
                                  .ntables = 2,
                                  .table_ids = ids,
                                  .tables = tconf,
                                  .seed = SEED,
                                  .rank = (uint32_t)i,
                                  .shard_map = n > 1 ? &c->map : NULL}; /* one server: owns every slot */
        char err[PSREC_ERRBUF];
        psrec_err rc = psrec_server_new(&x->s, z, &sc, err);
        if (rc) fail_msg("server %d: %s", i, err);
        c->addr[i] = strdup(psrec_server_endpoint(x->s));
        assert_int_equal(pthread_create(&x->th, NULL, srv_main, x), 0);
    }
}

static void stop_cluster(cluster_t *c, psrec_server_stats_t *st)
{
    for (int i = 0; i < c->n; i++)
        psrec_server_stop(c->srv[i].s);
    for (int i = 0; i < c->n; i++) {
        pthread_join(c->srv[i].th, NULL);
        if (c->srv[i].rc) fail_msg("server %d: %s", i, c->srv[i].err);
        if (st) psrec_server_get_stats(c->srv[i].s, &st[i]);
        psrec_server_destroy(&c->srv[i].s);
        free(c->addr[i]);
    }
}

static psrec_remote_conf_t rconf(uint32_t rank, int timeout_ms, int compress)
{
    init_tables();
    psrec_remote_conf_t rc = {
        .job_id = JOB, .rank = rank, .timeout_ms = timeout_ms, .retries = 3, .compress = compress};
    for (int i = 0; i < 2; i++)
        rc.table_dim[ids[i]] = tconf[i].dim;
    return rc;
}

static psrec_remote_t *mk_remote(void *z, const Psrec__ShardMap *m, const psrec_remote_conf_t *rc)
{
    psrec_remote_t *r;
    char err[PSREC_ERRBUF];
    psrec_err e = psrec_remote_new(&r, z, m, rc, err);
    if (e) fail_msg("remote_new: %s", err);
    return r;
}

/* ---- the comparison against a local store ---- */

/* Random calls (pull with repeats, push of unique keys, set), some larger than a request chunk, through
 * the remote client directly and through its table-client ops; every pull must equal the reference. */
static void random_ops(psrec_remote_t *r, psrec_table_client_t *tc, psrec_store_t *ref, uint64_t seed, int rounds,
                       int big)
{
    psrec_rng_t g;
    psrec_rng_seed(&g, seed, 3);
    size_t cap = 70000;
    uint64_t *k = malloc(cap * sizeof *k);
    float *v = malloc(cap * 8 * sizeof *v), *got = malloc(cap * 8 * sizeof *got),
          *want = malloc(cap * 8 * sizeof *want);
    char err[PSREC_ERRBUF];
    for (int round = 0; round < rounds; round++) {
        uint32_t ti = (uint32_t)psrec_rng_below(&g, 2), table = ids[ti], dim = tconf[ti].dim;
        size_t n = 1 + (size_t)psrec_rng_below(&g, 3000);
        if (big && round % 7 == 3) n = cap; /* more than PSREC_REMOTE_CHUNK keys */
        int op = (int)psrec_rng_below(&g, 3);
        /* keys from a range small enough to revisit rows; pushes use unique keys (stride walk) */
        uint64_t base = psrec_rng_below(&g, 50000), stride = 1 + 2 * psrec_rng_below(&g, 5);
        for (size_t i = 0; i < n; i++)
            k[i] = op == 0 ? psrec_rng_below(&g, 80000) : base + i * stride;
        for (size_t i = 0; i < n * dim; i++)
            v[i] = (float)psrec_rng_normal(&g);
        int via_ops = tc && (round % 2);
        psrec_err rc;
        if (op == 0) {
            rc = via_ops ? psrec_table_pull(tc, table, k, n, got) : psrec_remote_pull(r, table, k, n, got, dim, err);
            if (rc) fail_msg("pull: %s", via_ops ? psrec_remote_last_error(r) : err);
            assert_int_equal(psrec_store_pull(ref, table, k, n, want), PSREC_OK);
            assert_memory_equal(got, want, n * dim * sizeof(float));
        } else if (op == 1) {
            rc = via_ops ? psrec_table_push(tc, table, k, n, v) : psrec_remote_push(r, table, k, n, v, dim, err);
            if (rc) fail_msg("push: %s", via_ops ? psrec_remote_last_error(r) : err);
            assert_int_equal(psrec_store_push(ref, table, k, n, v), PSREC_OK);
        } else {
            rc = via_ops ? psrec_table_set(tc, table, k, n, v) : psrec_remote_set(r, table, k, n, v, dim, err);
            if (rc) fail_msg("set: %s", via_ops ? psrec_remote_last_error(r) : err);
            assert_int_equal(psrec_store_set(ref, table, k, n, v), PSREC_OK);
        }
    }
    free(k);
    free(v);
    free(got);
    free(want);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    uint64_t *k;
    float *v;
    size_t n;
    uint32_t dim;
} rows_t;

static void collect(uint64_t key, const float *w, uint32_t dim, void *ctx)
{
    rows_t *r = ctx;
    r->k[r->n] = key;
    memcpy(r->v + r->n * dim, w, dim * sizeof(float));
    r->n++;
}

/* DUMP of every table equals the reference's rows (as a set of (key, row)). */
static void check_dump(psrec_remote_t *r, psrec_store_t *ref)
{
    for (int ti = 0; ti < 2; ti++) {
        uint32_t table = ids[ti], dim = tconf[ti].dim;
        uint64_t *k;
        float *v;
        size_t n;
        char err[PSREC_ERRBUF];
        if (psrec_remote_dump(r, table, dim, &k, &v, &n, err)) fail_msg("dump: %s", err);
        size_t rn = (size_t)psrec_store_rows(ref, table);
        assert_int_equal(n, rn);
        /* sort the dumped keys, checking each row against the reference's pull */
        uint64_t *sk = malloc((n + 1) * sizeof *sk);
        memcpy(sk, k, n * sizeof *k);
        qsort(sk, n, sizeof *sk, cmp_u64);
        for (size_t i = 1; i < n; i++)
            assert_true(sk[i] != sk[i - 1]); /* each row once */
        rows_t rr = {malloc((rn + 1) * sizeof(uint64_t)), malloc((rn + 1) * dim * sizeof(float)), 0, dim};
        psrec_store_foreach(ref, table, collect, &rr);
        qsort(rr.k, rr.n, sizeof *rr.k, cmp_u64);
        assert_memory_equal(sk, rr.k, n * sizeof *sk);
        float *want = malloc((n + 1) * dim * sizeof *want);
        assert_int_equal(psrec_store_pull(ref, table, k, n, want), PSREC_OK);
        assert_memory_equal(v, want, n * dim * sizeof(float));
        free(want);
        free(rr.k);
        free(rr.v);
        free(sk);
        free(k);
        free(v);
    }
}

static void compare(void *z, int nservers, int tcp, int compress, const char *tag, int rounds, int big)
{
    cluster_t c;
    start_cluster(&c, z, nservers, tcp, compress, tag);
    psrec_store_t *ref = ref_store();
    psrec_remote_conf_t rc = rconf(1, 5000, compress);
    psrec_remote_t *r = mk_remote(z, &c.map, &rc);
    psrec_table_client_t *tc;
    assert_int_equal(psrec_table_client_new_remote(&tc, r), PSREC_OK);
    random_ops(r, tc, ref, 100 + (uint64_t)nservers, rounds, big);
    /* with big calls, one server holds more than one DUMP page (65536 rows) */
    uint64_t most = 0;
    for (int i = 0; i < nservers; i++) {
        uint64_t n = psrec_store_rows(psrec_server_store(c.srv[i].s), ids[0]);
        most = n > most ? n : most;
    }
    if (big) assert_true(most > 65536);
    check_dump(r, ref);
    /* every server holds only its own rows, and together all of them */
    uint64_t total = 0;
    for (int i = 0; i < nservers; i++)
        total += psrec_store_rows(psrec_server_store(c.srv[i].s), ids[0]);
    assert_int_equal(total, psrec_store_rows(ref, ids[0]));
    psrec_wire_stats_t sent, recv;
    psrec_remote_stats(r, &sent, &recv);
    assert_true(sent.msgs > 0 && recv.msgs == sent.msgs); /* no retries here: one reply per request */
    if (!compress) assert_int_equal(sent.wire_bytes, sent.raw_bytes);
    psrec_table_client_destroy(&tc); /* destroys r */
    psrec_server_stats_t st[3];
    stop_cluster(&c, st);
    for (int i = 0; i < nservers; i++) {
        assert_int_equal(st[i].errors, 0);
        assert_int_equal(st[i].duplicates, 0);
        if (nservers > 1) assert_true(st[i].rows_pulled > 0);
    }
    psrec_store_destroy(&ref);
}

static void test_one_server_inproc(void **st)
{
    void *z = zmq_ctx_new();
    compare(z, 1, 0, 1, "rc-one", 40, 1);
    zmq_ctx_term(z);
}

static void test_three_servers_inproc(void **st)
{
    void *z = zmq_ctx_new();
    compare(z, 3, 0, 0, "rc-three", 40, 1);
    zmq_ctx_term(z);
}

static void test_two_servers_tcp(void **st)
{
    void *z = zmq_ctx_new();
    compare(z, 2, 1, 1, "rc-tcp", 20, 0);
    zmq_ctx_term(z);
}

/* ---- errors ---- */

static void test_errors(void **st)
{
    void *z = zmq_ctx_new();
    cluster_t c;
    start_cluster(&c, z, 3, 0, 1, "rc-err");
    char err[PSREC_ERRBUF];
    uint64_t k[200];
    float v[200 * 8];
    for (int i = 0; i < 200; i++)
        k[i] = (uint64_t)i * 11;
    /* a client whose map sends everything to server 2: the other servers' keys are refused */
    uint32_t wrong[PSREC_WIRE_NSLOTS];
    for (int i = 0; i < PSREC_WIRE_NSLOTS; i++)
        wrong[i] = 2;
    Psrec__ShardMap wm = c.map;
    wm.slot_server = wrong;
    psrec_remote_conf_t rc = rconf(2, 5000, 1);
    psrec_remote_t *r = mk_remote(z, &wm, &rc);
    assert_int_equal(psrec_remote_pull(r, 0, k, 200, v, 8, err), PSREC_ESTALE);
    assert_non_null(strstr(err, c.addr[2]));
    assert_int_equal(psrec_remote_push(r, 0, k, 200, v, 8, err), PSREC_ESTALE);
    psrec_remote_destroy(&r);
    assert_null(r);
    /* right map: unknown table on the servers, wrong dim, unknown table in the client conf */
    rc.table_dim[7] = 4; /* the client believes in a table 7 the servers do not have */
    r = mk_remote(z, &c.map, &rc);
    assert_int_equal(psrec_remote_pull(r, 7, k, 200, v, 4, err), PSREC_ENOTFOUND);
    assert_int_equal(psrec_remote_pull(r, 0, k, 200, v, 9, err), PSREC_EPROTO);
    assert_int_equal(psrec_remote_set(r, 5, k, 200, v, 8, err), PSREC_EPROTO);
    assert_int_equal(psrec_remote_pull(r, 0, k, 200, v, 0, err), PSREC_EINVAL);
    psrec_table_client_t *tc;
    assert_int_equal(psrec_table_client_new_remote(&tc, r), PSREC_OK);
    assert_int_equal(psrec_table_pull(tc, 7, k, 10, v), PSREC_ENOTFOUND);
    assert_non_null(strstr(psrec_remote_last_error(r), "table 7"));
    assert_int_equal(psrec_table_push(tc, 9, k, 10, v), PSREC_ENOTFOUND);    /* not in the client conf */
    assert_int_equal(psrec_table_push(tc, 1000, k, 10, v), PSREC_ENOTFOUND); /* out of any range */
    /* after failures, the client still works (late replies of failed calls are dropped) */
    psrec_store_t *ref = ref_store();
    float want[200 * 8];
    assert_int_equal(psrec_table_pull(tc, 0, k, 200, v), PSREC_OK);
    assert_int_equal(psrec_store_pull(ref, 0, k, 200, want), PSREC_OK);
    assert_memory_equal(v, want, sizeof v);
    psrec_table_client_destroy(&tc);
    psrec_store_destroy(&ref);
    /* bad maps and confs */
    Psrec__ShardMap bad = c.map;
    bad.n_slot_server = 5;
    assert_int_equal(psrec_remote_new(&r, z, &bad, &rc, err), PSREC_EINVAL);
    bad = c.map;
    uint32_t oob[PSREC_WIRE_NSLOTS] = {0};
    oob[17] = 3;
    bad.slot_server = oob;
    assert_int_equal(psrec_remote_new(&r, z, &bad, &rc, err), PSREC_EINVAL);
    bad = c.map;
    bad.n_server_addr = 0;
    assert_int_equal(psrec_remote_new(&r, z, &bad, &rc, err), PSREC_EINVAL);
    assert_null(r);
    stop_cluster(&c, NULL);
    zmq_ctx_term(z);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A server that never answers: a bound ROUTER nobody reads. */
static void test_timeout(void **st)
{
    void *z = zmq_ctx_new();
    cluster_t c;
    start_cluster(&c, z, 1, 0, 1, "rc-to");
    void *dead = zmq_socket(z, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(dead, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(dead, "inproc://rc-dead"), 0);
    char *addrs[2] = {c.addr[0], "inproc://rc-dead"};
    uint32_t slots[PSREC_WIRE_NSLOTS];
    for (int i = 0; i < PSREC_WIRE_NSLOTS; i++)
        slots[i] = (uint32_t)(i % 2);
    Psrec__ShardMap m = c.map;
    m.n_server_addr = 2;
    m.server_addr = addrs;
    m.slot_server = slots;
    /* the dead one alone */
    Psrec__ShardMap only = m;
    only.n_server_addr = 1;
    only.server_addr = &addrs[1];
    uint32_t zeros[PSREC_WIRE_NSLOTS] = {0};
    only.slot_server = zeros;
    psrec_remote_conf_t rc = rconf(3, 50, 1);
    psrec_remote_t *r = mk_remote(z, &only, &rc);
    uint64_t k[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    float v[80];
    char err[PSREC_ERRBUF];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(psrec_remote_pull(r, 0, k, 10, v, 8, err), PSREC_ETIMEDOUT);
    double ms = ms_since(&t0);
    assert_true(ms >= 3 * 50 - 5);
    assert_true(ms < 3 * 50 + 400);
    assert_non_null(strstr(err, "inproc://rc-dead"));
    /* the requests did arrive, three times with the same seq */
    uint64_t seqs[3];
    for (int i = 0; i < 3; i++) {
        psrec_wire_route_t route;
        psrec_wire_msg_t msg;
        assert_int_equal(psrec_wire_recv(dead, &route, &msg, 1000, NULL, err), PSREC_OK);
        assert_int_equal(msg.hdr->type, PSREC__TYPE__PULL);
        seqs[i] = msg.hdr->seq;
        psrec_wire_msg_clear(&msg);
    }
    assert_true(seqs[0] == seqs[1] && seqs[1] == seqs[2]);
    psrec_remote_destroy(&r);
    /* a live server and a dead one: the call fails naming the dead one */
    rc.retries = 2;
    r = mk_remote(z, &m, &rc);
    uint64_t both[64];
    for (int i = 0; i < 64; i++)
        both[i] = (uint64_t)i;
    float vb[64 * 8];
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(psrec_remote_pull(r, 0, both, 64, vb, 8, err), PSREC_ETIMEDOUT);
    ms = ms_since(&t0);
    assert_true(ms >= 2 * 50 - 5 && ms < 2 * 50 + 400);
    assert_non_null(strstr(err, "inproc://rc-dead"));
    /* the live server answered its half */
    psrec_server_stats_t ss;
    psrec_server_get_stats(c.srv[0].s, &ss);
    uint64_t live = 0;
    for (int i = 0; i < 64; i++)
        live += slots[psrec_wire_slot(both[i], PSREC_WIRE_NSLOTS)] == 0;
    assert_true(live > 0 && live < 64);
    assert_int_equal(ss.rows_pulled, live);
    psrec_remote_destroy(&r);
    zmq_close(dead);
    stop_cluster(&c, NULL);
    zmq_ctx_term(z);
}

/* ---- a lossy proxy: drops and duplicates replies ---- */

typedef struct {
    void *zctx;
    const char *front, *back;
    atomic_int stop;
    int drop_every; /* drop reply number i when i % drop_every == 1 */
    int dup_every;  /* send reply number i twice when i % dup_every == 2 */
    int replies, dropped, duplicated;
    pthread_t th;
    atomic_int ready;
} proxy_t;

static void *proxy_main(void *arg)
{
    proxy_t *p = arg;
    void *f = zmq_socket(p->zctx, ZMQ_ROUTER), *b = zmq_socket(p->zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(f, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(b, ZMQ_LINGER, &zero, sizeof zero);
    zmq_bind(f, p->front);
    zmq_connect(b, p->back);
    atomic_store(&p->ready, 1);
    unsigned char id[256];
    size_t idlen = 0;
    zmq_msg_t parts[8];
    while (!atomic_load(&p->stop)) {
        zmq_pollitem_t it[2] = {{.socket = f, .events = ZMQ_POLLIN}, {.socket = b, .events = ZMQ_POLLIN}};
        if (zmq_poll(it, 2, 20) <= 0) continue;
        for (int side = 0; side < 2; side++) {
            if (!(it[side].revents & ZMQ_POLLIN)) continue;
            void *from = side ? b : f;
            int n = 0, more = 1;
            while (more && n < 8) {
                zmq_msg_init(&parts[n]);
                zmq_msg_recv(&parts[n], from, 0);
                more = zmq_msg_more(&parts[n]);
                n++;
            }
            int first = 0, copies = 1;
            if (side == 0) { /* request: remember the client, forward the rest */
                idlen = zmq_msg_size(&parts[0]);
                memcpy(id, zmq_msg_data(&parts[0]), idlen);
                first = 1;
            } else {
                p->replies++;
                if (p->drop_every && p->replies % p->drop_every == 1)
                    copies = 0, p->dropped++;
                else if (p->dup_every && p->replies % p->dup_every == 2)
                    copies = 2, p->duplicated++;
            }
            for (int c = 0; c < copies; c++) {
                if (side == 1) zmq_send(f, id, idlen, ZMQ_SNDMORE);
                for (int i = first; i < n; i++)
                    zmq_send(side ? f : b, zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i]),
                             i + 1 < n ? ZMQ_SNDMORE : 0);
            }
            for (int i = 0; i < n; i++)
                zmq_msg_close(&parts[i]);
        }
    }
    zmq_close(f);
    zmq_close(b);
    return NULL;
}

static void test_lost_replies(void **st)
{
    void *z = zmq_ctx_new();
    cluster_t c;
    start_cluster(&c, z, 1, 0, 1, "rc-lossy");
    proxy_t p = {.zctx = z, .front = "inproc://rc-proxy", .back = c.addr[0], .drop_every = 5, .dup_every = 5};
    atomic_init(&p.stop, 0);
    atomic_init(&p.ready, 0);
    assert_int_equal(pthread_create(&p.th, NULL, proxy_main, &p), 0);
    while (!atomic_load(&p.ready))
        zmq_poll(NULL, 0, 1); /* inproc connect needs the bind first */
    char *paddr = "inproc://rc-proxy";
    Psrec__ShardMap m = c.map;
    m.server_addr = &paddr;
    psrec_remote_conf_t rc = rconf(4, 100, 0);
    psrec_remote_t *r = mk_remote(z, &m, &rc);
    psrec_store_t *ref = ref_store();
    /* one request per call: pushes whose replies are lost are re-sent with the same seq */
    random_ops(r, NULL, ref, 77, 25, 0);
    psrec_remote_destroy(&r);
    atomic_store(&p.stop, 1);
    pthread_join(p.th, NULL);
    psrec_server_stats_t ss[1];
    stop_cluster(&c, ss);
    assert_true(p.dropped >= 4);
    assert_true(p.duplicated >= 4);
    /* every dropped reply made a retry; those of pushes/sets were recognised as duplicates */
    assert_int_equal(ss[0].requests, (uint64_t)p.replies);
    assert_true(ss[0].duplicates >= 1);
    assert_true(ss[0].duplicates <= (uint64_t)p.dropped);
    psrec_store_destroy(&ref);
    zmq_ctx_term(z);
}

/* ---- with a coordinator ---- */

static void *coord_main(void *arg)
{
    void **a = arg;
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_coord_run(a[0], err);
    *(psrec_err *)a[1] = rc;
    return NULL;
}

static void *srv_create_run(void *arg)
{
    srv_t *x = arg;
    x->rc = psrec_server_new(&x->s, x->zctx, &x->conf, x->err);
    atomic_store(&x->created, 1);
    if (!x->rc) x->rc = psrec_server_run(x->s, x->err);
    return NULL;
}

static void test_with_coordinator(void **st)
{
    void *z = zmq_ctx_new();
    init_tables();
    psrec_coord_conf_t cc = {.bind = "inproc://rc-coord",
                             .n_servers = 2,
                             .n_workers = 1,
                             .job_id = JOB,
                             .seed = SEED,
                             .ntables = 2,
                             .table_ids = ids,
                             .tables = tconf};
    psrec_coord_t *co;
    char err[PSREC_ERRBUF];
    if (psrec_coord_new(&co, z, &cc, err)) fail_msg("coord: %s", err);
    psrec_err co_rc = PSREC_EIO;
    void *ca[2] = {co, &co_rc};
    pthread_t cth;
    assert_int_equal(pthread_create(&cth, NULL, coord_main, ca), 0);
    srv_t s[2];
    memset(s, 0, sizeof s);
    for (int i = 0; i < 2; i++) {
        s[i].zctx = z;
        snprintf(s[i].bind, sizeof s[i].bind, "inproc://rc-cs%d", i);
        s[i].conf =
            (psrec_server_conf_t){.bind = s[i].bind, .coord = "inproc://rc-coord", .job_id = JOB, .heartbeat_ms = 20};
        atomic_init(&s[i].created, 0);
        assert_int_equal(pthread_create(&s[i].th, NULL, srv_create_run, &s[i]), 0);
    }
    /* a worker registers; the reply carries the complete map */
    psrec_coord_client_t *w;
    assert_int_equal(psrec_coord_client_new(&w, z, "inproc://rc-coord", JOB, 10000, err), PSREC_OK);
    Psrec__Header *reg = NULL;
    if (psrec_coord_client_register(w, PSREC__ROLE__WORKER, NULL, UINT32_MAX, &reg, err)) fail_msg("register: %s", err);
    assert_non_null(reg->shard_map);
    assert_int_equal(reg->shard_map->n_server_addr, 2);
    psrec_remote_conf_t rc = {
        .job_id = JOB, .rank = reg->rank, .epoch = reg->epoch, .timeout_ms = 5000, .retries = 3, .compress = 1};
    for (size_t i = 0; i < reg->n_tables; i++)
        rc.table_dim[reg->tables[i]->table] = reg->tables[i]->dim;
    psrec_remote_t *r = mk_remote(z, reg->shard_map, &rc);
    psrec_table_client_t *tc;
    assert_int_equal(psrec_table_client_new_remote(&tc, r), PSREC_OK);
    psrec_store_t *ref = ref_store();
    random_ops(r, tc, ref, 5, 20, 0);
    check_dump(r, ref);
    /* the servers own disjoint halves: a key sent by hand to the other server is refused */
    uint64_t key = 0;
    while (reg->shard_map->slot_server[psrec_wire_slot(key, reg->shard_map->nslots)] != 0)
        key++;
    void *d = zmq_socket(z, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(d, reg->shard_map->server_addr[1]);
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PULL);
    h.job_id = JOB, h.table = 0, h.dim = 8, h.count = 1, h.seq = 9;
    psrec_wire_bulk_t kb = {&key, sizeof key};
    assert_int_equal(psrec_wire_send(d, NULL, &h, &kb, 1, 0, NULL, err), PSREC_OK);
    psrec_wire_msg_t m;
    assert_int_equal(psrec_wire_recv(d, NULL, &m, 5000, NULL, err), PSREC_OK);
    assert_int_equal(m.hdr->type, PSREC__TYPE__ERROR);
    assert_int_equal(m.hdr->error_code, PSREC_ESTALE);
    psrec_wire_msg_clear(&m);
    zmq_close(d);
    psrec__header__free_unpacked(reg, NULL);
    /* the servers report through heartbeats: the coordinator's status shows their rows */
    uint64_t rows = 0;
    for (int tries = 0; tries < 500; tries++) {
        Psrec__Header *stt;
        assert_int_equal(psrec_coord_client_status(w, &stt, err), PSREC_OK);
        rows = 0;
        for (size_t i = 0; i < stt->n_members; i++)
            if (stt->members[i]->role == PSREC__ROLE__SERVER)
                for (size_t t = 0; t < stt->members[i]->n_tables; t++)
                    if (stt->members[i]->tables[t]->table == 0) rows += stt->members[i]->tables[t]->rows;
        psrec__header__free_unpacked(stt, NULL);
        if (rows == psrec_store_rows(ref, 0)) break;
        zmq_poll(NULL, 0, 10); /* waiting for the next heartbeat (20 ms), bounded */
    }
    assert_int_equal(rows, psrec_store_rows(ref, 0));
    /* the only worker finishes: the coordinator tells the servers to stop, and everything ends */
    Psrec__Header hb;
    psrec_wire_header_init(&hb, PSREC__TYPE__HEARTBEAT);
    hb.stop = 1;
    int over = 0;
    assert_int_equal(psrec_coord_client_heartbeat(w, &hb, &over, err), PSREC_OK);
    psrec_table_client_destroy(&tc);
    psrec_coord_client_destroy(&w);
    for (int i = 0; i < 2; i++) {
        pthread_join(s[i].th, NULL);
        if (s[i].rc) fail_msg("server %d: %s", i, s[i].err);
        psrec_server_destroy(&s[i].s);
    }
    pthread_join(cth, NULL);
    assert_int_equal(co_rc, PSREC_OK);
    psrec_coord_destroy(&co);
    psrec_store_destroy(&ref);
    zmq_ctx_term(z);
}

/* ---- fault tolerance ---- */

static char self_exe[4096];

/* A table whose rows count pushes: SGD with lr 1 from zero, so a gradient of -1 adds exactly 1. */
#define CNT_TABLE 2
#define CNT_DIM 4
#define CNT_KEYS 50
static const uint32_t cnt_ids[1] = {CNT_TABLE};
static const psrec_table_conf_t cnt_conf[1] = {
    {.dim = CNT_DIM, .opt = {.kind = PSREC_OPT_SGD, .lr = 1.0f}, .init = PSREC_INIT_ZERO}};

/* Creates a standalone counting server at bind (retrying while a just-closed socket still holds a tcp
 * port: the close completes asynchronously) and runs it on its own thread. No cmocka here (helper
 * threads call it): 0 on success, the code otherwise with x->err set. */
static psrec_err start_counter(srv_t *x, void *z, const char *bind)
{
    memset(x, 0, sizeof *x);
    psrec_server_conf_t sc = {.bind = bind,
                              .job_id = JOB,
                              .compress = -1,
                              .ntables = 1,
                              .table_ids = cnt_ids,
                              .tables = cnt_conf,
                              .seed = SEED};
    psrec_err rc;
    for (int tries = 0; (rc = psrec_server_new(&x->s, z, &sc, x->err)) == PSREC_EIO && tries < 500; tries++)
        zmq_poll(NULL, 0, 10);
    if (!rc && pthread_create(&x->th, NULL, srv_main, x)) {
        psrec_server_destroy(&x->s);
        rc = psrec_fail(x->err, PSREC_EIO, "pthread_create");
    }
    return rc;
}

static void stop_counter(srv_t *x, psrec_server_stats_t *st)
{
    psrec_server_stop(x->s);
    pthread_join(x->th, NULL);
    if (x->rc) fail_msg("server: %s", x->err);
    if (st) psrec_server_get_stats(x->s, st);
    psrec_server_destroy(&x->s);
}

/* A one-server map (every slot on server 0). */
static void one_map(Psrec__ShardMap *m, uint32_t *slots, char **addr)
{
    psrec__shard_map__init(m);
    m->version = 1;
    m->nslots = PSREC_WIRE_NSLOTS;
    m->n_slot_server = PSREC_WIRE_NSLOTS;
    memset(slots, 0, PSREC_WIRE_NSLOTS * sizeof *slots);
    m->slot_server = slots;
    m->n_server_addr = 1;
    m->server_addr = addr;
}

static psrec_remote_conf_t cnt_rconf(uint32_t rank, int timeout_ms, int retries, int recovery_ms)
{
    psrec_remote_conf_t rc = {
        .job_id = JOB, .rank = rank, .timeout_ms = timeout_ms, .retries = retries, .recovery_ms = recovery_ms};
    rc.table_dim[CNT_TABLE] = CNT_DIM;
    return rc;
}

static uint64_t cnt_key(int i)
{
    return (uint64_t)i * 1000003u + 17;
}

/* Pulls every counting key (each twice, in a shuffled order) and checks row i == counts[i] exactly. */
static void check_counts(psrec_remote_t *r, const float *counts, psrec_rng_t *g)
{
    uint64_t k[2 * CNT_KEYS];
    int idx[2 * CNT_KEYS];
    for (int i = 0; i < 2 * CNT_KEYS; i++)
        idx[i] = i % CNT_KEYS;
    for (int i = 2 * CNT_KEYS - 1; i > 0; i--) {
        int j = (int)psrec_rng_below(g, (uint64_t)i + 1), t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
    for (int i = 0; i < 2 * CNT_KEYS; i++)
        k[i] = cnt_key(idx[i]);
    float got[2 * CNT_KEYS * CNT_DIM];
    char err[PSREC_ERRBUF];
    if (psrec_remote_pull(r, CNT_TABLE, k, 2 * CNT_KEYS, got, CNT_DIM, err)) fail_msg("pull: %s", err);
    for (int i = 0; i < 2 * CNT_KEYS; i++)
        for (int d = 0; d < CNT_DIM; d++)
            if (got[i * CNT_DIM + d] != counts[idx[i]])
                fail_msg("key %d: %g, pushed %g times", idx[i], (double)got[i * CNT_DIM + d], (double)counts[idx[i]]);
}

/* Runs in the child started by test_lossy_transport, with PSREC_FAULTS set: every message of the
 * client and of the server may be dropped or duplicated. */
static void lossy_child(void **st)
{
    const psrec_faults_t *f = psrec_faults();
    assert_true(f->enabled && f->drop > 0 && f->dup > 0);
    void *z = zmq_ctx_new();
    srv_t x;
    if (start_counter(&x, z, "inproc://rc-lossy-count")) fail_msg("server: %s", x.err);
    char *addr = (char *)psrec_server_endpoint(x.s);
    uint32_t slots[PSREC_WIRE_NSLOTS];
    Psrec__ShardMap m;
    one_map(&m, slots, &addr);
    /* a short attempt timeout (inproc answers in microseconds); recovery bounds the whole wait */
    psrec_remote_conf_t rc = cnt_rconf(6, 10, 1, 5000);
    psrec_remote_t *r = mk_remote(z, &m, &rc);
    psrec_faults_stats_t f0, f1;
    psrec_faults_stats(&f0);
    psrec_rng_t g;
    psrec_rng_seed(&g, 99, 1);
    float counts[CNT_KEYS] = {0}, grads[CNT_KEYS * CNT_DIM];
    for (int i = 0; i < CNT_KEYS * CNT_DIM; i++)
        grads[i] = -1.0f;
    uint64_t k[CNT_KEYS], pushed = 0;
    char err[PSREC_ERRBUF];
    for (int call = 0; call < 200; call++) {
        size_t n = 0;
        for (int i = 0; i < CNT_KEYS; i++)
            if (psrec_rng_below(&g, 2)) k[n++] = cnt_key(i);
        if (n == 0) k[n++] = cnt_key(call % CNT_KEYS);
        if (psrec_remote_push(r, CNT_TABLE, k, n, grads, CNT_DIM, err)) fail_msg("push %d: %s", call, err);
        for (size_t i = 0; i < n; i++)
            counts[(k[i] - 17) / 1000003u] += 1.0f;
        pushed += n;
        if (call % 20 == 19) check_counts(r, counts, &g);
    }
    check_counts(r, counts, &g);
    psrec_faults_stats(&f1);
    psrec_remote_destroy(&r);
    psrec_server_stats_t ss;
    stop_counter(&x, &ss);
    /* faults happened in both directions of this run, and the server applied every row exactly once */
    assert_true(f1.dropped - f0.dropped >= 20);
    assert_true(f1.duplicated - f0.duplicated >= 20);
    assert_true(ss.duplicates >= 5);
    assert_int_equal(ss.rows_pushed, pushed);
    zmq_ctx_term(z);
}

static void test_lossy_transport(void **st)
{
    char out[16384];
    int rc = psrec_test_run(out, sizeof out, "PSREC_FAULTS='drop=0.2,dup=0.2,seed=11' '%s' --lossy-child", self_exe);
    if (rc != 0) fail_msg("lossy child exited with %d:\n%s", rc, out);
    assert_non_null(strstr(out, "fault injection on"));
    assert_non_null(strstr(out, "PASSED"));
}

/* The restart of a server on the same tcp port, seen from a helper thread: a stand-in first answers
 * ENOTREADY (the server is loading) to the client's request, then a fresh server with the counting
 * rows put back takes the port. */
typedef struct {
    void *z;
    const char *ep;
    const uint64_t *keys;
    const float *rows;
    srv_t *srv;
    uint64_t seq[2];
    int type[2];
    psrec_err rc;
    char err[PSREC_ERRBUF];
} restart_t;

static void *restart_main(void *p)
{
    restart_t *a = p;
    a->rc = PSREC_EIO;
    void *s = zmq_socket(a->z, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    for (int tries = 0; zmq_bind(s, a->ep) != 0; tries++) { /* the old server's port is released asynchronously */
        if (tries == 500) {
            snprintf(a->err, sizeof a->err, "stand-in cannot bind %s: %s", a->ep, zmq_strerror(zmq_errno()));
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
        if (i == 0) a->rc = psrec_wire_send_error(s, &route, m.hdr, PSREC_ENOTREADY, "loading the newest round");
        psrec_wire_msg_clear(&m);
        if (a->rc) {
            zmq_close(s);
            return NULL;
        }
    }
    zmq_close(s);
    if ((a->rc = start_counter(a->srv, a->z, a->ep))) {
        snprintf(a->err, sizeof a->err, "%s", a->srv->err);
        return NULL;
    }
    /* the rows as they were (what a restart loads from its checkpoint); the server serves meanwhile, but
     * the only client waits for its push, which the stand-in did not apply */
    a->rc = psrec_store_set(psrec_server_store(a->srv->s), CNT_TABLE, a->keys, CNT_KEYS, a->rows);
    if (a->rc) snprintf(a->err, sizeof a->err, "store_set failed");
    return NULL;
}

static void test_server_restart(void **st)
{
    void *z = zmq_ctx_new();
    srv_t a, b;
    if (start_counter(&a, z, "tcp://127.0.0.1:0")) fail_msg("server: %s", a.err);
    char *ep = strdup(psrec_server_endpoint(a.s));
    uint32_t slots[PSREC_WIRE_NSLOTS];
    Psrec__ShardMap m;
    one_map(&m, slots, &ep);
    psrec_remote_conf_t rc = cnt_rconf(5, 300, 1, 10000);
    psrec_remote_t *r = mk_remote(z, &m, &rc);
    psrec_rng_t g;
    psrec_rng_seed(&g, 5, 5);
    uint64_t k[CNT_KEYS];
    float counts[CNT_KEYS] = {0}, grads[CNT_KEYS * CNT_DIM], rows[CNT_KEYS * CNT_DIM];
    for (int i = 0; i < CNT_KEYS * CNT_DIM; i++)
        grads[i] = -1.0f;
    for (int i = 0; i < CNT_KEYS; i++)
        k[i] = cnt_key(i);
    char err[PSREC_ERRBUF];
    for (int round = 1; round <= 3; round++) { /* key i is pushed i % 4 times: uneven counts */
        size_t n = 0;
        uint64_t sub[CNT_KEYS];
        for (int i = 0; i < CNT_KEYS; i++)
            if (i % 4 >= round) sub[n++] = k[i], counts[i] += 1.0f;
        if (psrec_remote_push(r, CNT_TABLE, sub, n, grads, CNT_DIM, err)) fail_msg("push: %s", err);
    }
    check_counts(r, counts, &g);
    for (int i = 0; i < CNT_KEYS; i++)
        for (int d = 0; d < CNT_DIM; d++)
            rows[i * CNT_DIM + d] = counts[i];
    /* the server goes away; a push is issued while it is down and returns once it is back */
    stop_counter(&a, NULL);
    restart_t rs = {.z = z, .ep = ep, .keys = k, .rows = rows, .srv = &b};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, restart_main, &rs), 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    psrec_err prc = psrec_remote_push(r, CNT_TABLE, k, CNT_KEYS, grads, CNT_DIM, err);
    double ms = ms_since(&t0);
    pthread_join(th, NULL);
    if (rs.rc) fail_msg("restart helper: %s", rs.err);
    if (prc) fail_msg("push across the restart: %s", err);
    assert_true(ms < 10000);
    /* the stand-in saw the request twice with one seq: ENOTREADY made it re-send, not fail */
    assert_int_equal(rs.type[0], PSREC__TYPE__PUSH);
    assert_int_equal(rs.type[1], PSREC__TYPE__PUSH);
    assert_true(rs.seq[0] == rs.seq[1]);
    for (int i = 0; i < CNT_KEYS; i++)
        counts[i] += 1.0f;
    check_counts(r, counts, &g);
    psrec_remote_destroy(&r);
    psrec_server_stats_t ss;
    stop_counter(&b, &ss);
    assert_int_equal(ss.rows_pushed, CNT_KEYS); /* the new server applied the push once */
    free(ep);
    zmq_ctx_term(z);
}

/* A stand-in that counts the copies of the first seq it receives, then refuses the next request. */
typedef struct {
    void *z;
    const char *ep;
    int copies;
    psrec_err rc;
    char err[PSREC_ERRBUF];
} pileup_t;

static void *pileup_main(void *p)
{
    pileup_t *a = p;
    a->rc = PSREC_EIO;
    void *s = zmq_socket(a->z, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    for (int tries = 0; zmq_bind(s, a->ep) != 0; tries++) {
        if (tries == 500) {
            snprintf(a->err, sizeof a->err, "cannot bind %s", a->ep);
            zmq_close(s);
            return NULL;
        }
        zmq_poll(NULL, 0, 10);
    }
    uint64_t first = 0;
    for (;;) {
        psrec_wire_route_t route;
        psrec_wire_msg_t m;
        if ((a->rc = psrec_wire_recv(s, &route, &m, 5000, NULL, a->err))) break;
        if (a->copies == 0 || m.hdr->seq == first) {
            first = m.hdr->seq;
            a->copies++;
            psrec_wire_msg_clear(&m);
            continue;
        }
        a->rc = psrec_wire_send_error(s, &route, m.hdr, PSREC_EINVAL, "stand-in");
        psrec_wire_msg_clear(&m);
        break;
    }
    zmq_close(s);
    return NULL;
}

/* Nobody at the server's address: recovery_ms bounds the call (retries does not count), and the
 * copies queued for the absent server stay within the send high-water mark. */
static void test_recovery_deadline(void **st)
{
    void *z = zmq_ctx_new();
    void *tmp = zmq_socket(z, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(tmp, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(tmp, "tcp://127.0.0.1:0"), 0);
    char ep[256];
    size_t len = sizeof ep;
    assert_int_equal(zmq_getsockopt(tmp, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    zmq_close(tmp); /* a port nobody listens on */
    char *addr = ep;
    uint32_t slots[PSREC_WIRE_NSLOTS];
    Psrec__ShardMap m;
    one_map(&m, slots, &addr);
    psrec_remote_conf_t rc = cnt_rconf(8, 10, 1, 400);
    psrec_remote_t *r = mk_remote(z, &m, &rc);
    uint64_t k[5] = {1, 2, 3, 4, 5};
    float v[5 * CNT_DIM];
    char err[PSREC_ERRBUF];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(psrec_remote_pull(r, CNT_TABLE, k, 5, v, CNT_DIM, err), PSREC_ETIMEDOUT);
    double ms = ms_since(&t0);
    if (ms < 400 - 5 || ms > 400 + 1500) fail_msg("gave up after %.0f ms (recovery_ms 400): %s", ms, err);
    assert_non_null(strstr(err, ep));
    assert_non_null(strstr(err, "recovery_ms 400"));
    /* about 40 attempts were made; a listener appearing now gets at most SNDHWM of them, then the next
     * request (which it refuses, ending the call at once) */
    pileup_t pu = {.z = z, .ep = ep};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pileup_main, &pu), 0);
    psrec_err prc = psrec_remote_pull(r, CNT_TABLE, k, 5, v, CNT_DIM, err);
    pthread_join(th, NULL);
    if (pu.rc) fail_msg("stand-in: %s", pu.err);
    assert_int_equal(prc, PSREC_EINVAL);
    assert_true(pu.copies >= 1);
    if (pu.copies > PSREC_REMOTE_SNDHWM) fail_msg("%d copies queued, SNDHWM is %d", pu.copies, PSREC_REMOTE_SNDHWM);
    psrec_remote_destroy(&r);
    zmq_ctx_term(z);
}

/* psrec_remote_set_map: new addresses and a new server count take effect; a bad map changes nothing. */
static void test_set_map(void **st)
{
    void *z = zmq_ctx_new();
    cluster_t c;
    start_cluster(&c, z, 3, 0, 0, "rc-map");
    psrec_store_t *ref = ref_store();
    uint64_t k[300];
    for (int i = 0; i < 300; i++)
        k[i] = (uint64_t)i * 13 + 5;
    float got[300 * 8], want[300 * 8];
    assert_int_equal(psrec_store_pull(ref, 0, k, 300, want), PSREC_OK);
    char err[PSREC_ERRBUF];
    /* server 1 believed elsewhere (nobody there): its keys time out, naming the address */
    char *wrong[3] = {c.addr[0], "inproc://rc-map-nobody", c.addr[2]};
    Psrec__ShardMap m = c.map;
    m.server_addr = wrong;
    psrec_remote_conf_t rc = rconf(9, 50, 0);
    rc.retries = 2;
    psrec_remote_t *r = mk_remote(z, &m, &rc);
    assert_int_equal(psrec_remote_pull(r, 0, k, 300, got, 8, err), PSREC_ETIMEDOUT);
    assert_non_null(strstr(err, "inproc://rc-map-nobody"));
    assert_int_equal(psrec_remote_set_map(r, &c.map, err), PSREC_OK);
    assert_int_equal(psrec_remote_pull(r, 0, k, 300, got, 8, err), PSREC_OK);
    assert_memory_equal(got, want, sizeof got);
    /* one server for everything: the others' keys are refused by server 0 (ESTALE) */
    uint32_t all0[PSREC_WIRE_NSLOTS];
    Psrec__ShardMap one;
    one_map(&one, all0, &c.addr[0]);
    assert_int_equal(psrec_remote_set_map(r, &one, err), PSREC_OK);
    assert_int_equal(psrec_remote_pull(r, 0, k, 300, got, 8, err), PSREC_ESTALE);
    /* back to three servers */
    assert_int_equal(psrec_remote_set_map(r, &c.map, err), PSREC_OK);
    memset(got, 0, sizeof got);
    assert_int_equal(psrec_remote_pull(r, 0, k, 300, got, 8, err), PSREC_OK);
    assert_memory_equal(got, want, sizeof got);
    /* bad maps are refused and the client keeps working with its map */
    Psrec__ShardMap bad = c.map;
    uint32_t oob[PSREC_WIRE_NSLOTS] = {0};
    oob[5] = 3;
    bad.slot_server = oob;
    assert_int_equal(psrec_remote_set_map(r, &bad, err), PSREC_EINVAL);
    bad = c.map;
    char *noaddr[3] = {c.addr[0], "", c.addr[2]};
    bad.server_addr = noaddr;
    assert_int_equal(psrec_remote_set_map(r, &bad, err), PSREC_EINVAL);
    bad.server_addr = wrong;
    wrong[1] = "bogus://x"; /* cannot connect: nothing changes */
    assert_int_equal(psrec_remote_set_map(r, &bad, err), PSREC_EINVAL);
    assert_int_equal(psrec_remote_set_map(r, NULL, err), PSREC_EINVAL);
    memset(got, 0, sizeof got);
    assert_int_equal(psrec_remote_pull(r, 0, k, 300, got, 8, err), PSREC_OK);
    assert_memory_equal(got, want, sizeof got);
    psrec_remote_destroy(&r);
    psrec_store_destroy(&ref);
    stop_cluster(&c, NULL);
    zmq_ctx_term(z);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--lossy-child") == 0) { /* started by test_lossy_transport */
        const struct CMUnitTest child[] = {cmocka_unit_test(lossy_child)};
        return cmocka_run_group_tests(child, NULL, NULL);
    }
    /* the other tests count messages exactly: no injected faults in this process */
    unsetenv(PSREC_FAULTS_ENV);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self_exe[n] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_server_inproc), cmocka_unit_test(test_three_servers_inproc),
        cmocka_unit_test(test_two_servers_tcp),   cmocka_unit_test(test_errors),
        cmocka_unit_test(test_timeout),           cmocka_unit_test(test_lost_replies),
        cmocka_unit_test(test_with_coordinator),  cmocka_unit_test(test_lossy_transport),
        cmocka_unit_test(test_server_restart),    cmocka_unit_test(test_recovery_deadline),
        cmocka_unit_test(test_set_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_server.c: the parameter server over its wire protocol, driven by hand-made requests on a DEALER
 * socket: pull/push/set against a local reference store, the exact error code of every refusal (job,
 * table, dim, sizes, ownership, version, limits, max_rows), duplicate suppression (window, epochs),
 * DUMP paging across pages, STATS, SHUTDOWN, stop from another thread, a tcp ephemeral port, the
 * table-conf conversions, and 2000 hostile messages after which the server still answers correctly. */
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
#include <zmq.h>

#include "common/rng.h"
#include "common/wire.h"
#include "ps/negatives.h"
#include "ps/server.h"

#define JOB 77
#define DIM 8
#define WAIT_MS 5000

/* ---- fixtures ---- */

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

static const uint32_t ids[2] = {0, 3};
static psrec_table_conf_t tconf[2];

static void init_tables(void)
{
    tconf[0] = (psrec_table_conf_t){
        .dim = DIM, .opt = {.kind = PSREC_OPT_ADAGRAD, .lr = 0.1f}, .init = PSREC_INIT_UNIFORM, .init_scale = 0.5f};
    tconf[1] = (psrec_table_conf_t){
        .dim = 3, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.5f}, .init = PSREC_INIT_ZERO, .max_rows = 100};
}

static psrec_server_conf_t base_conf(const char *bind)
{
    init_tables();
    return (psrec_server_conf_t){
        .bind = bind, .job_id = JOB, .ntables = 2, .table_ids = ids, .tables = tconf, .seed = 1234};
}

static srv_t *start(void *zctx, const psrec_server_conf_t *c)
{
    srv_t *x = calloc(1, sizeof *x);
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_server_new(&x->s, zctx, c, err);
    if (rc) fail_msg("server_new: %s", err);
    assert_int_equal(pthread_create(&x->th, NULL, srv_main, x), 0);
    return x;
}

/* Joins (after SHUTDOWN or stop) and checks run returned OK. */
static void join_srv_keep(srv_t *x, psrec_server_stats_t *st)
{
    psrec_server_stop(x->s);
    pthread_join(x->th, NULL);
    if (x->rc) fail_msg("server run: %s", x->err);
    if (st) psrec_server_get_stats(x->s, st);
    psrec_server_destroy(&x->s);
    assert_null(x->s);
    free(x);
}

static void join_srv(srv_t *x, int stop)
{
    if (!stop) { /* ended by SHUTDOWN */
        pthread_join(x->th, NULL);
        if (x->rc) fail_msg("server run: %s", x->err);
        psrec_server_destroy(&x->s);
        free(x);
        return;
    }
    join_srv_keep(x, NULL);
}

/* The reference: a local store with the same seed and tables. */
static psrec_store_t *ref_store(void)
{
    init_tables();
    psrec_store_t *r;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_store_new(&r, 1234, 4), PSREC_OK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(psrec_store_add_table(r, ids[i], &tconf[i], err), PSREC_OK);
    return r;
}

static void *dealer(void *zctx, const char *ep)
{
    void *d = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(d, ep), 0);
    return d;
}

/* Sends one request and returns its reply (the reply must arrive and be well-formed). */
static void call(void *d, Psrec__Header *h, const psrec_wire_bulk_t *b, int nb, psrec_wire_msg_t *rep)
{
    char err[PSREC_ERRBUF];
    if (!h->job_id) h->job_id = JOB;
    psrec_err rc = psrec_wire_send(d, NULL, h, b, nb, 0, NULL, err);
    if (rc) fail_msg("send: %s", err);
    rc = psrec_wire_recv(d, NULL, rep, WAIT_MS, NULL, err);
    if (rc) fail_msg("recv: %s", err);
}

static void hdr(Psrec__Header *h, Psrec__Type t, uint32_t table, uint64_t count, uint32_t dim, uint64_t seq)
{
    psrec_wire_header_init(h, t);
    h->role = PSREC__ROLE__WORKER;
    h->table = table;
    h->count = count;
    h->dim = dim;
    h->seq = seq;
    h->job_id = JOB;
}

/* Expects an ERROR reply with `code` (and the request's seq echoed). */
static void expect_error(void *d, Psrec__Header *h, const psrec_wire_bulk_t *b, int nb, psrec_err code)
{
    psrec_wire_msg_t m;
    call(d, h, b, nb, &m);
    if (m.hdr->type != PSREC__TYPE__ERROR || m.hdr->error_code != (uint32_t)code)
        fail_msg("expected %s, got type %d code %s (%s)", psrec_errname(code), m.hdr->type,
                 psrec_errname((psrec_err)m.hdr->error_code), m.hdr->error_text);
    /* also when the framing refused it: the header was readable, so its seq is echoed and the
     * sender fails at once instead of at its deadline */
    assert_int_equal(m.hdr->seq, h->seq);
    assert_true(strlen(m.hdr->error_text) > 0);
    psrec_wire_msg_clear(&m);
}

static void pull(void *d, uint32_t table, uint32_t dim, const uint64_t *keys, size_t n, float *out)
{
    Psrec__Header h;
    hdr(&h, PSREC__TYPE__PULL, table, n, dim, 1);
    psrec_wire_bulk_t b = {keys, n * sizeof *keys};
    psrec_wire_msg_t m;
    call(d, &h, &b, 1, &m);
    if (m.hdr->type != PSREC__TYPE__PULL_OK) fail_msg("pull: %s", m.hdr->error_text);
    assert_int_equal(m.hdr->count, n);
    assert_int_equal(m.nbulk, 1);
    assert_int_equal(m.bulk_bytes[0], n * dim * sizeof(float));
    memcpy(out, m.bulk[0], m.bulk_bytes[0]);
    psrec_wire_msg_clear(&m);
}

/* PUSH or SET with (rank, epoch, seq); returns the reply type. */
static Psrec__Type update(void *d, Psrec__Type t, uint32_t table, uint32_t dim, const uint64_t *keys, size_t n,
                          const float *v, uint32_t rank, uint64_t epoch, uint64_t seq)
{
    Psrec__Header h;
    hdr(&h, t, table, n, dim, seq);
    h.rank = rank;
    h.epoch = epoch;
    psrec_wire_bulk_t b[2] = {{keys, n * sizeof *keys}, {v, n * dim * sizeof(float)}};
    psrec_wire_msg_t m;
    call(d, &h, b, 2, &m);
    Psrec__Type rt = m.hdr->type;
    assert_int_equal(m.hdr->seq, seq);
    psrec_wire_msg_clear(&m);
    return rt;
}

static void keys_and_grads(psrec_rng_t *r, uint64_t *k, float *g, size_t n, uint32_t dim)
{
    for (size_t i = 0; i < n; i++) {
        k[i] = psrec_rng_u64(r) % 100000; /* unique enough: dedup below */
        for (size_t j = 0; j < i; j++)
            if (k[j] == k[i]) {
                k[i] = psrec_rng_u64(r);
                j = (size_t)-1;
            }
        for (uint32_t j = 0; j < dim; j++)
            g[i * dim + j] = (float)(psrec_rng_uniform(r) - 0.5);
    }
}

/* ---- tests ---- */

static void test_pull_push_set(void **st)
{
    void *z = zmq_ctx_new();
    psrec_server_conf_t c = base_conf("inproc://t-basic");
    srv_t *x = start(z, &c);
    psrec_store_t *ref = ref_store();
    void *d = dealer(z, "inproc://t-basic");
    enum { N = 500 };
    uint64_t k[N];
    float g[N * DIM], got[N * DIM], want[N * DIM];
    psrec_rng_t r;
    psrec_rng_seed(&r, 5, 0);
    for (int round = 0; round < 5; round++) {
        keys_and_grads(&r, k, g, N, DIM);
        pull(d, 0, DIM, k, N, got);
        assert_int_equal(psrec_store_pull(ref, 0, k, N, want), PSREC_OK);
        assert_memory_equal(got, want, sizeof got);
        Psrec__Type t = round == 3 ? PSREC__TYPE__SET : PSREC__TYPE__PUSH;
        assert_int_equal(update(d, t, 0, DIM, k, N, g, 0, 0, 10 + round),
                         t == PSREC__TYPE__SET ? PSREC__TYPE__SET_OK : PSREC__TYPE__PUSH_OK);
        if (t == PSREC__TYPE__SET)
            assert_int_equal(psrec_store_set(ref, 0, k, N, g), PSREC_OK);
        else
            assert_int_equal(psrec_store_push(ref, 0, k, N, g), PSREC_OK);
        pull(d, 0, DIM, k, N, got);
        assert_int_equal(psrec_store_pull(ref, 0, k, N, want), PSREC_OK);
        assert_memory_equal(got, want, sizeof got);
    }
    /* a zero-initialised table of another dim */
    uint64_t k3[90];
    float z3[90 * 3];
    for (int i = 0; i < 90; i++)
        k3[i] = (uint64_t)i;
    pull(d, 3, 3, k3, 90, z3);
    for (int i = 0; i < 90 * 3; i++)
        assert_true(z3[i] == 0.0f);
    psrec_server_stats_t ss;
    psrec_server_get_stats(x->s, &ss);
    assert_int_equal(ss.requests, 5 * 3 + 1);
    assert_int_equal(ss.rows_pulled, 5 * 2 * N + 90);
    assert_int_equal(ss.rows_pushed, 4 * N);
    assert_int_equal(ss.rows_set, N);
    assert_int_equal(ss.errors, 0);
    assert_int_equal(ss.duplicates, 0);
    zmq_close(d);
    join_srv(x, 1);
    psrec_store_destroy(&ref);
    zmq_ctx_term(z);
}

/* Bytes on the wire of a pull reply of zero rows with LZ4 on and off (conf.compress 1 / -1). */
static void test_compress_flag(void **st)
{
    void *z = zmq_ctx_new();
    enum { N = 4000 };
    uint64_t *k = malloc(N * sizeof *k);
    float *v = malloc(N * DIM * sizeof *v), *zero = calloc(N * DIM, sizeof *zero);
    for (int i = 0; i < N; i++)
        k[i] = (uint64_t)i * 3;
    for (int on = 0; on < 2; on++) {
        psrec_server_conf_t c = base_conf(on ? "inproc://t-cf1" : "inproc://t-cf0");
        c.compress = on ? 0 : -1; /* 0 is the default: on */
        srv_t *x = start(z, &c);
        void *d = dealer(z, c.bind);
        assert_int_equal(update(d, PSREC__TYPE__SET, 0, DIM, k, N, zero, 1, 0, 5), PSREC__TYPE__SET_OK);
        psrec_server_stats_t a, b;
        psrec_server_get_stats(x->s, &a);
        pull(d, 0, DIM, k, N, v);
        assert_memory_equal(v, zero, N * DIM * sizeof(float));
        zmq_close(d);
        join_srv_keep(x, &b);
        uint64_t raw = b.sent.raw_bytes - a.sent.raw_bytes, wire = b.sent.wire_bytes - a.sent.wire_bytes;
        assert_int_equal(raw, (uint64_t)N * DIM * sizeof(float));
        if (on)
            assert_true(wire < raw / 20);
        else
            assert_int_equal(wire, raw);
        assert_int_equal(b.received.raw_bytes - a.received.raw_bytes, N * sizeof(uint64_t));
    }
    free(k);
    free(v);
    free(zero);
    zmq_ctx_term(z);
}

static void test_errors(void **st)
{
    void *z = zmq_ctx_new();
    psrec_server_conf_t c = base_conf("inproc://t-err");
    srv_t *x = start(z, &c);
    void *d = dealer(z, "inproc://t-err");
    uint64_t k[4] = {1, 2, 3, 4};
    float v[4 * DIM] = {0};
    psrec_wire_bulk_t kb = {k, sizeof k}, b2[2] = {{k, sizeof k}, {v, sizeof v}};
    Psrec__Header h;
    int nerr = 0;
    /* another job */
    hdr(&h, PSREC__TYPE__PULL, 0, 4, DIM, 101);
    h.job_id = JOB + 1;
    expect_error(d, &h, &kb, 1, PSREC_EREFUSED), nerr++;
    /* unknown tables, in and out of the store's range */
    hdr(&h, PSREC__TYPE__PULL, 1, 4, DIM, 102);
    expect_error(d, &h, &kb, 1, PSREC_ENOTFOUND), nerr++;
    hdr(&h, PSREC__TYPE__PUSH, 999, 4, DIM, 103);
    expect_error(d, &h, b2, 2, PSREC_ENOTFOUND), nerr++;
    /* dim mismatch */
    hdr(&h, PSREC__TYPE__PULL, 0, 4, DIM + 1, 104);
    expect_error(d, &h, &kb, 1, PSREC_EPROTO), nerr++;
    hdr(&h, PSREC__TYPE__SET, 3, 4, DIM, 105);
    expect_error(d, &h, b2, 2, PSREC_EPROTO), nerr++;
    /* count does not match the frames */
    hdr(&h, PSREC__TYPE__PULL, 0, 5, DIM, 106);
    expect_error(d, &h, &kb, 1, PSREC_EPROTO), nerr++;
    hdr(&h, PSREC__TYPE__PUSH, 0, 4, DIM, 107);
    psrec_wire_bulk_t short_vals[2] = {{k, sizeof k}, {v, sizeof v - 4}};
    expect_error(d, &h, short_vals, 2, PSREC_EPROTO), nerr++;
    /* missing values frame, extra frame */
    expect_error(d, &h, &kb, 1, PSREC_EPROTO), nerr++;
    hdr(&h, PSREC__TYPE__PULL, 0, 4, DIM, 108);
    expect_error(d, &h, b2, 2, PSREC_EPROTO), nerr++;
    /* declared count over the limit (refused by the framing before any allocation) */
    hdr(&h, PSREC__TYPE__PULL, 0, (uint64_t)PSREC_WIRE_MAX_KEYS + 1, DIM, 109);
    expect_error(d, &h, &kb, 1, PSREC_EMSGSIZE), nerr++;
    /* types a server does not serve */
    hdr(&h, PSREC__TYPE__REGISTER, 0, 0, 0, 110);
    expect_error(d, &h, NULL, 0, PSREC_EPROTO), nerr++;
    hdr(&h, PSREC__TYPE__PULL_OK, 0, 0, 0, 111);
    expect_error(d, &h, NULL, 0, PSREC_EPROTO), nerr++;
    hdr(&h, (Psrec__Type)77, 0, 0, 0, 112);
    expect_error(d, &h, NULL, 0, PSREC_EPROTO), nerr++;
    /* STATS with a bulk frame */
    hdr(&h, PSREC__TYPE__STATS, 0, 0, 0, 113);
    expect_error(d, &h, &kb, 1, PSREC_EPROTO), nerr++;
    /* another wire version: a raw header frame */
    {
        Psrec__Header vh;
        hdr(&vh, PSREC__TYPE__PULL, 0, 0, DIM, 114);
        vh.version = PSREC_WIRE_VERSION + 1;
        unsigned char buf[256];
        size_t len = psrec__header__pack(&vh, buf);
        assert_int_equal(zmq_send(d, buf, len, 0), (int)len);
        psrec_wire_msg_t m;
        char err[PSREC_ERRBUF];
        assert_int_equal(psrec_wire_recv(d, NULL, &m, WAIT_MS, NULL, err), PSREC_OK);
        assert_int_equal(m.hdr->type, PSREC__TYPE__ERROR);
        assert_int_equal(m.hdr->error_code, PSREC_EVERSION);
        psrec_wire_msg_clear(&m), nerr++;
    }
    /* max_rows: table 3 holds 100 rows; by default (--at-max-rows skip) a push of 101 new keys succeeds,
     * 100 take rows and the last is refused and counted */
    uint64_t many[101];
    float vals[101 * 3];
    for (int i = 0; i < 101; i++)
        many[i] = 5000 + (uint64_t)i, vals[i * 3] = vals[i * 3 + 1] = vals[i * 3 + 2] = 1.0f;
    hdr(&h, PSREC__TYPE__PUSH, 3, 101, 3, 115);
    psrec_wire_bulk_t fb[2] = {{many, sizeof many}, {vals, sizeof vals}};
    psrec_wire_msg_t fm;
    call(d, &h, fb, 2, &fm);
    assert_int_equal(fm.hdr->type, PSREC__TYPE__PUSH_OK);
    psrec_wire_msg_clear(&fm);
    assert_int_equal(psrec_store_rows(psrec_server_store(x->s), 3), 100);
    assert_int_equal(psrec_store_refused(psrec_server_store(x->s), 3), 1);
    /* nothing was applied by any refused request: table 0 is still untouched */
    assert_int_equal(psrec_store_rows(psrec_server_store(x->s), 0), 0);
    /* empty requests are fine */
    hdr(&h, PSREC__TYPE__PULL, 0, 0, DIM, 116);
    psrec_wire_bulk_t eb[2] = {{k, 0}, {v, 0}};
    psrec_wire_msg_t em;
    call(d, &h, eb, 1, &em);
    assert_int_equal(em.hdr->type, PSREC__TYPE__PULL_OK);
    assert_int_equal(em.hdr->count, 0);
    assert_int_equal(em.bulk_bytes[0], 0);
    psrec_wire_msg_clear(&em);
    hdr(&h, PSREC__TYPE__PUSH, 0, 0, DIM, 117);
    call(d, &h, eb, 2, &em);
    assert_int_equal(em.hdr->type, PSREC__TYPE__PUSH_OK);
    psrec_wire_msg_clear(&em);
    /* ...and the next good request works */
    float got[4 * DIM], want[4 * DIM];
    pull(d, 0, DIM, k, 4, got);
    for (int i = 0; i < 4; i++)
        psrec_store_init_row(psrec_server_store(x->s), 0, k[i], want + i * DIM);
    assert_memory_equal(got, want, sizeof got);
    psrec_server_stats_t ss;
    psrec_server_get_stats(x->s, &ss);
    assert_int_equal(ss.errors, nerr);
    assert_int_equal(ss.requests, nerr + 4); /* + the push that filled table 3, then the 3 just above */
    zmq_close(d);
    join_srv(x, 1);
    zmq_ctx_term(z);
}

static Psrec__ShardMap *make_map(uint32_t nservers, const char **addrs)
{
    Psrec__ShardMap *m = calloc(1, sizeof *m);
    psrec__shard_map__init(m);
    m->version = 3;
    m->nslots = PSREC_WIRE_NSLOTS;
    m->n_slot_server = PSREC_WIRE_NSLOTS;
    m->slot_server = calloc(PSREC_WIRE_NSLOTS, sizeof *m->slot_server);
    for (uint32_t i = 0; i < PSREC_WIRE_NSLOTS; i++)
        m->slot_server[i] = (uint32_t)(psrec_mix64(i) % nservers);
    m->n_server_addr = nservers;
    m->server_addr = (char **)addrs;
    return m;
}

static void free_map(Psrec__ShardMap *m)
{
    free(m->slot_server);
    free(m);
}

static void test_ownership(void **st)
{
    void *z = zmq_ctx_new();
    const char *addrs[2] = {"inproc://t-own0", "inproc://t-own1"};
    Psrec__ShardMap *map = make_map(2, addrs);
    psrec_server_conf_t c = base_conf(addrs[1]);
    c.rank = 1;
    c.shard_map = map;
    srv_t *x = start(z, &c);
    free_map(map); /* the server copied it */
    map = make_map(2, addrs);
    assert_int_equal(psrec_server_rank(x->s), 1);
    void *d = dealer(z, addrs[1]);
    uint64_t mine[8], foreign = 0;
    int nm = 0;
    for (uint64_t key = 0; nm < 8 || !foreign; key++) {
        uint32_t owner = map->slot_server[psrec_wire_slot(key, map->nslots)];
        if (owner == 1 && nm < 8) mine[nm++] = key;
        if (owner == 0 && !foreign) foreign = key;
    }
    float v[9 * DIM], got[8 * DIM], want[8 * DIM];
    for (int i = 0; i < 9 * DIM; i++)
        v[i] = 1.0f;
    Psrec__Header h;
    hdr(&h, PSREC__TYPE__PULL, 0, 1, DIM, 1);
    psrec_wire_bulk_t kb = {&foreign, sizeof foreign};
    expect_error(d, &h, &kb, 1, PSREC_ESTALE);
    /* one foreign key among owned ones: the whole push is refused, nothing applied */
    uint64_t mixed[9];
    memcpy(mixed, mine, sizeof mine);
    mixed[8] = foreign;
    hdr(&h, PSREC__TYPE__PUSH, 0, 9, DIM, 2);
    psrec_wire_bulk_t b2[2] = {{mixed, sizeof mixed}, {v, sizeof v}};
    expect_error(d, &h, b2, 2, PSREC_ESTALE);
    assert_int_equal(psrec_store_rows(psrec_server_store(x->s), 0), 0);
    pull(d, 0, DIM, mine, 8, got);
    for (int i = 0; i < 8; i++)
        psrec_store_init_row(psrec_server_store(x->s), 0, mine[i], want + i * DIM);
    assert_memory_equal(got, want, sizeof got);
    free_map(map);
    zmq_close(d);
    join_srv(x, 1);
    zmq_ctx_term(z);
}

/* PUSH/SET duplicates: one application per (sender, seq), a 64-seq window, epochs. */
static void test_duplicates(void **st)
{
    void *z = zmq_ctx_new();
    psrec_server_conf_t c = base_conf("inproc://t-dup");
    srv_t *x = start(z, &c);
    psrec_store_t *ref = ref_store();
    void *d = dealer(z, "inproc://t-dup");
    uint64_t k[3] = {11, 22, 33};
    float g[3 * DIM], got[3 * DIM], want[3 * DIM];
    for (int i = 0; i < 3 * DIM; i++)
        g[i] = 0.25f + 0.01f * (float)i;
    /* (rank, epoch, seq, applied?) in order */
    struct {
        uint32_t rank;
        uint64_t epoch, seq;
        int applied;
    } plan[] = {
        {0, 1, 100, 1}, {0, 1, 100, 0},                /* the same seq twice */
        {1, 1, 100, 1},                                /* another sender has its own window */
        {0, 1, 98, 1},  {0, 1, 98, 0},  {0, 1, 99, 1}, /* late but new seqs inside the window */
        {0, 1, 170, 1}, {0, 1, 106, 1},                /* 64 below the top: still in the window */
        {0, 1, 106, 0}, {0, 1, 105, 0},                /* 65 below: too old, counted as a duplicate */
        {0, 1, 100, 0},                                /* long gone */
        {0, 2, 1, 1},   {0, 2, 1, 0},                  /* a new epoch (restarted sender): fresh window */
    };
    int n = (int)(sizeof plan / sizeof plan[0]), dups = 0;
    for (int i = 0; i < n; i++) {
        Psrec__Type t = i == 3 ? PSREC__TYPE__SET : PSREC__TYPE__PUSH;
        Psrec__Type rt = update(d, t, 0, DIM, k, 3, g, plan[i].rank, plan[i].epoch, plan[i].seq);
        assert_int_equal(rt, t == PSREC__TYPE__SET ? PSREC__TYPE__SET_OK : PSREC__TYPE__PUSH_OK);
        if (plan[i].applied) {
            if (t == PSREC__TYPE__SET)
                assert_int_equal(psrec_store_set(ref, 0, k, 3, g), PSREC_OK);
            else
                assert_int_equal(psrec_store_push(ref, 0, k, 3, g), PSREC_OK);
        } else {
            dups++;
        }
        pull(d, 0, DIM, k, 3, got);
        assert_int_equal(psrec_store_pull(ref, 0, k, 3, want), PSREC_OK);
        assert_memory_equal(got, want, sizeof got);
    }
    /* an older epoch than one already seen is fenced */
    Psrec__Header h;
    hdr(&h, PSREC__TYPE__PUSH, 0, 3, DIM, 500);
    h.rank = 0;
    h.epoch = 1;
    psrec_wire_bulk_t b2[2] = {{k, sizeof k}, {g, sizeof g}};
    expect_error(d, &h, b2, 2, PSREC_ESTALE);
    psrec_server_stats_t ss;
    psrec_server_get_stats(x->s, &ss);
    assert_int_equal(ss.duplicates, dups);
    assert_int_equal(ss.errors, 1);
    pull(d, 0, DIM, k, 3, got);
    assert_memory_equal(got, want, sizeof got);
    zmq_close(d);
    join_srv(x, 1);
    psrec_store_destroy(&ref);
    zmq_ctx_term(z);
}

/* NEG_SCORE / NEG_APPLY (server-side negatives): the server's draw, scores and update equal the same
 * ps/negatives.h computation on a reference store built the same way; a repeated NEG_APPLY is not
 * applied twice (and answered as the first time), one without its score applies the worker's rows only
 * and says so, malformed ones get error replies and the server
 * keeps serving. */
static void neg_score_msg(Psrec__Header *h, psrec_wire_bulk_t *b, uint64_t seq, uint32_t negatives, const float *U,
                          const uint32_t *off, const uint64_t *pk)
{
    hdr(h, PSREC__TYPE__NEG_SCORE, 0, 3, DIM, seq);
    h->epoch = 1;
    h->negatives = negatives;
    h->n_pos = off[3];
    h->seed = 99;
    b[0] = (psrec_wire_bulk_t){U, 3 * DIM * sizeof(float)};
    b[1] = (psrec_wire_bulk_t){off, 4 * sizeof(uint32_t)};
    b[2] = (psrec_wire_bulk_t){pk, off[3] * sizeof(uint64_t)};
}

static void test_negatives(void **st)
{
    (void)st;
    void *z = zmq_ctx_new();
    psrec_server_conf_t c = base_conf("inproc://t-neg");
    srv_t *x = start(z, &c);
    void *d = dealer(z, "inproc://t-neg");
    /* the reference: the server's store layout (seed, 16 stripes), the same rows made the same way */
    psrec_store_t *ref = NULL;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_store_new(&ref, 1234, 16), PSREC_OK);
    assert_int_equal(psrec_store_add_table(ref, 0, &tconf[0], err), PSREC_OK);
    uint64_t keys[50];
    float rows[50 * DIM], want[50 * DIM];
    for (int i = 0; i < 50; i++)
        keys[i] = (uint64_t)i;
    /* rows made by a touch (materialising): count only in the reply, then the same rows a pull makes */
    Psrec__Header th;
    hdr(&th, PSREC__TYPE__PULL, 0, 50, DIM, 5);
    th.touch = 1;
    psrec_wire_bulk_t tb = {keys, sizeof keys};
    psrec_wire_msg_t tm;
    call(d, &th, &tb, 1, &tm);
    assert_int_equal(tm.hdr->type, PSREC__TYPE__PULL_OK);
    assert_int_equal(tm.hdr->count, 50);
    assert_int_equal(tm.nbulk, 0);
    psrec_wire_msg_clear(&tm);
    pull(d, 0, DIM, keys, 50, rows);
    assert_int_equal(psrec_store_pull(ref, 0, keys, 50, want), PSREC_OK);
    assert_memory_equal(rows, want, sizeof rows);

    float U[3 * DIM];
    for (int i = 0; i < 3 * DIM; i++)
        U[i] = 0.3f * (float)((i * 7) % 11) - 1.5f;
    uint32_t off[4] = {0, 1, 2, 2};
    uint64_t pk[2] = {3, 7};
    Psrec__Header h;
    psrec_wire_bulk_t b[3];
    neg_score_msg(&h, b, 10, 20, U, off, pk);
    psrec_wire_msg_t m;
    call(d, &h, b, 3, &m);
    if (m.hdr->type != PSREC__TYPE__NEG_SCORE_OK) fail_msg("NEG_SCORE: %s", m.hdr->error_text);
    assert_int_equal(m.hdr->count, 3);
    assert_int_equal(m.hdr->negatives, 20);
    assert_float_equal(m.hdr->neg_log_expected, log(20.0 / 50.0), 1e-6);
    assert_int_equal(m.nbulk, 2);
    float lse[3], ybar[3 * DIM], logE;
    psrec_negpart_t *part = NULL;
    assert_int_equal(psrec_negpart_new(&part), PSREC_OK);
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 99, 0); /* the worker's seed, server rank 0's stream */
    psrec_negbatch_t nb = {.B = 3, .d = DIM, .U = U, .pos_off = off, .pos_key = pk};
    assert_int_equal(
        psrec_negpart_draw_score(part, ref, 0, &rng, &nb, &(psrec_negdraw_t){.S = 20}, lse, ybar, &logE, err),
        PSREC_OK);
    assert_memory_equal(m.bulk[0], lse, sizeof lse);
    assert_memory_equal(m.bulk[1], ybar, sizeof ybar);
    assert_true(isinf(lse[2])); /* row 2 has no positives */
    psrec_wire_msg_clear(&m);

    /* NEG_APPLY with the worker's own rows (3 and 7 are positives, 60 is new): summed per key with the
     * negatives' gradients into one update; a copy is not applied again */
    float w[3] = {0.5f, 0.25f, 0.0f};
    uint64_t ek[3] = {3, 7, 60};
    float eg[3 * DIM];
    for (int i = 0; i < 3 * DIM; i++)
        eg[i] = 0.05f * (float)(i % 7) - 0.1f;
    const uint64_t *gk;
    const float *gv;
    size_t gn;
    assert_int_equal(psrec_negpart_gradients(part, w, ek, eg, 3, &gk, &gv, &gn, err), PSREC_OK);
    assert_true(gn > 3);
    assert_int_equal(psrec_store_push(ref, 0, gk, gn, gv), PSREC_OK);
    uint64_t keys51[51];
    float rows51[51 * DIM], want51[51 * DIM];
    memcpy(keys51, keys, sizeof keys);
    keys51[50] = 60;
    assert_int_equal(psrec_store_pull(ref, 0, keys51, 51, want51), PSREC_OK);
    for (int rep = 0; rep < 2; rep++) {
        hdr(&h, PSREC__TYPE__NEG_APPLY, 0, 3, DIM, 11);
        h.epoch = 1;
        h.score_seq = 10;
        h.push_rows = 3;
        psrec_wire_bulk_t wb[3] = {{w, sizeof w}, {ek, sizeof ek}, {eg, sizeof eg}};
        call(d, &h, wb, 3, &m);
        if (m.hdr->type != PSREC__TYPE__NEG_APPLY_OK) fail_msg("NEG_APPLY: %s", m.hdr->error_text);
        if (rep == 0) assert_int_equal(m.hdr->count, gn);
        assert_int_equal(m.hdr->negatives, 1); /* the copy is answered as the first was */
        psrec_wire_msg_clear(&m);
        pull(d, 0, DIM, keys51, 51, rows51);
        assert_memory_equal(rows51, want51, sizeof rows51);
    }
    /* a new seq for the batch already applied: only the worker's rows are applied, and the reply says so */
    hdr(&h, PSREC__TYPE__NEG_APPLY, 0, 3, DIM, 12);
    h.epoch = 1;
    h.score_seq = 10;
    h.push_rows = 3;
    psrec_wire_bulk_t wb[3] = {{w, sizeof w}, {ek, sizeof ek}, {eg, sizeof eg}};
    call(d, &h, wb, 3, &m);
    assert_int_equal(m.hdr->type, PSREC__TYPE__NEG_APPLY_OK);
    assert_int_equal(m.hdr->negatives, 0);
    assert_int_equal(m.hdr->count, 3);
    psrec_wire_msg_clear(&m);
    assert_int_equal(psrec_store_push(ref, 0, ek, 3, eg), PSREC_OK);
    assert_int_equal(psrec_store_pull(ref, 0, keys51, 51, want51), PSREC_OK);
    pull(d, 0, DIM, keys51, 51, rows51);
    assert_memory_equal(rows51, want51, sizeof rows51);
    /* the reference rows 0..49, for the checks below */
    assert_int_equal(psrec_store_pull(ref, 0, keys, 50, want), PSREC_OK);
    /* malformed: too many draws, offsets that do not match the positives, a missing frame, bad weights */
    neg_score_msg(&h, b, 20, 1u << 21, U, off, pk);
    expect_error(d, &h, b, 3, PSREC_EMSGSIZE);
    neg_score_msg(&h, b, 19, 20, U, off, pk); /* hard negatives need a positive temperature */
    h.neg_pool = 40;
    h.temperature = 0;
    expect_error(d, &h, b, 3, PSREC_EINVAL);
    uint32_t bad_off[4] = {0, 1, 2, 1};
    neg_score_msg(&h, b, 21, 20, U, bad_off, pk);
    h.n_pos = 2;
    b[2].bytes = 2 * sizeof(uint64_t);
    expect_error(d, &h, b, 3, PSREC_EPROTO);
    neg_score_msg(&h, b, 22, 20, U, off, pk);
    expect_error(d, &h, b, 2, PSREC_EPROTO);
    neg_score_msg(&h, b, 23, 20, U, off, pk);
    call(d, &h, b, 3, &m);
    assert_int_equal(m.hdr->type, PSREC__TYPE__NEG_SCORE_OK);
    psrec_wire_msg_clear(&m);
    float nan_w[3] = {NAN, 0, 0};
    hdr(&h, PSREC__TYPE__NEG_APPLY, 0, 3, DIM, 24);
    h.epoch = 1;
    h.score_seq = 23;
    psrec_wire_bulk_t nb3[3] = {{nan_w, sizeof nan_w}, {ek, 0}, {eg, 0}};
    expect_error(d, &h, nb3, 3, PSREC_EINVAL);
    /* push_rows that do not match the frames */
    hdr(&h, PSREC__TYPE__NEG_APPLY, 0, 3, DIM, 25);
    h.epoch = 1;
    h.score_seq = 23;
    h.push_rows = 2;
    psrec_wire_bulk_t bad3[3] = {{w, sizeof w}, {ek, sizeof ek}, {eg, sizeof eg}};
    expect_error(d, &h, bad3, 3, PSREC_EPROTO);
    /* weights for another batch size than the one scored */
    hdr(&h, PSREC__TYPE__NEG_APPLY, 0, 2, DIM, 26);
    h.epoch = 1;
    h.score_seq = 23;
    psrec_wire_bulk_t two[3] = {{w, 2 * sizeof(float)}, {ek, 0}, {eg, 0}};
    expect_error(d, &h, two, 3, PSREC_EPROTO);
    /* still serving, rows unchanged by the refused requests */
    pull(d, 0, DIM, keys, 50, rows);
    assert_memory_equal(rows, want, sizeof rows);
    psrec_server_stats_t ss;
    zmq_close(d);
    join_srv_keep(x, &ss);
    assert_int_equal(ss.neg_scored, 40);
    assert_int_equal(ss.neg_applied, gn);
    assert_int_equal(ss.rows_touched, 50);
    psrec_negpart_destroy(&part);
    psrec_store_destroy(&ref);
    zmq_ctx_term(z);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Pages through a dump by hand; returns the rows (keys sorted by the caller). */
static size_t dump_all(void *d, uint32_t rank, uint32_t table, uint32_t dim, uint64_t *keys, float *vals, size_t cap,
                       int *pages)
{
    uint64_t cursor = 0;
    size_t n = 0;
    *pages = 0;
    do {
        Psrec__Header h;
        hdr(&h, PSREC__TYPE__DUMP, table, 0, dim, 1000 + (uint64_t)*pages);
        h.rank = rank;
        h.cursor = cursor;
        psrec_wire_msg_t m;
        call(d, &h, NULL, 0, &m);
        if (m.hdr->type != PSREC__TYPE__DUMP_OK) fail_msg("dump: %s", m.hdr->error_text);
        size_t c = (size_t)m.hdr->count;
        assert_true(c <= 65536);
        assert_true(n + c <= cap);
        assert_int_equal(m.nbulk, 2);
        assert_int_equal(m.bulk_bytes[0], c * sizeof(uint64_t));
        assert_int_equal(m.bulk_bytes[1], c * dim * sizeof(float));
        memcpy(keys + n, m.bulk[0], m.bulk_bytes[0]);
        memcpy(vals + n * dim, m.bulk[1], m.bulk_bytes[1]);
        n += c;
        cursor = m.hdr->cursor;
        (*pages)++;
        psrec_wire_msg_clear(&m);
    } while (cursor != 0);
    return n;
}

static void test_dump(void **st)
{
    void *z = zmq_ctx_new();
    psrec_server_conf_t c = base_conf("inproc://t-dump");
    srv_t *x = start(z, &c);
    void *d = dealer(z, "inproc://t-dump");
    enum { N = 150000 };
    uint64_t *k = malloc(N * sizeof *k), *dk = malloc((N + 1) * sizeof *dk), *dk2 = malloc((N + 1) * sizeof *dk2);
    float *v = malloc((size_t)N * DIM * sizeof *v), *dv = malloc((size_t)(N + 1) * DIM * sizeof *dv),
          *dv2 = malloc((size_t)(N + 1) * DIM * sizeof *dv2);
    psrec_rng_t r;
    psrec_rng_seed(&r, 9, 9);
    for (size_t i = 0; i < N; i++)
        k[i] = psrec_rng_u64(&r); /* distinct with overwhelming probability */
    for (size_t i = 0; i < (size_t)N * DIM; i++)
        v[i] = (float)psrec_rng_normal(&r);
    assert_int_equal(update(d, PSREC__TYPE__SET, 0, DIM, k, N, v, 0, 0, 1), PSREC__TYPE__SET_OK);
    /* the empty table: one page, no rows */
    int pages;
    assert_int_equal(dump_all(d, 0, 3, 3, dk, dv, N, &pages), 0);
    assert_int_equal(pages, 1);
    /* two requesters page through at the same time, interleaved page by page */
    uint64_t cur[2] = {0, 0};
    size_t got[2] = {0, 0};
    int fin[2] = {0, 0};
    uint64_t *ok[2] = {dk, dk2};
    float *ov[2] = {dv, dv2};
    for (int step = 0; !fin[0] || !fin[1]; step++) {
        int who = step % 2;
        if (fin[who]) continue;
        Psrec__Header h;
        hdr(&h, PSREC__TYPE__DUMP, 0, 0, DIM, 5000 + (uint64_t)step);
        h.rank = 40 + (uint32_t)who;
        h.cursor = cur[who];
        psrec_wire_msg_t m;
        call(d, &h, NULL, 0, &m);
        if (m.hdr->type != PSREC__TYPE__DUMP_OK) fail_msg("dump: %s", m.hdr->error_text);
        size_t cnt = (size_t)m.hdr->count;
        assert_true(got[who] + cnt <= N);
        memcpy(ok[who] + got[who], m.bulk[0], cnt * sizeof(uint64_t));
        memcpy(ov[who] + got[who] * DIM, m.bulk[1], cnt * DIM * sizeof(float));
        got[who] += cnt;
        cur[who] = m.hdr->cursor;
        fin[who] = cur[who] == 0;
        psrec_wire_msg_clear(&m);
    }
    assert_int_equal(got[0], N);
    assert_int_equal(got[1], N);
    /* every row exactly once, with its value */
    for (int who = 0; who < 2; who++) {
        uint64_t *sk = malloc(N * sizeof *sk);
        memcpy(sk, ok[who], N * sizeof *sk);
        qsort(sk, N, sizeof *sk, cmp_u64);
        uint64_t *rk = malloc(N * sizeof *rk);
        memcpy(rk, k, N * sizeof *rk);
        qsort(rk, N, sizeof *rk, cmp_u64);
        assert_memory_equal(sk, rk, N * sizeof *sk);
        free(sk);
        free(rk);
    }
    /* values: the store holds exactly the set values, and each dumped row is its key's stored row */
    float *pv = malloc((size_t)N * DIM * sizeof *pv);
    assert_int_equal(psrec_store_pull(psrec_server_store(x->s), 0, k, N, pv), PSREC_OK);
    assert_memory_equal(pv, v, (size_t)N * DIM * sizeof(float));
    assert_int_equal(psrec_store_pull(psrec_server_store(x->s), 0, dk, N, pv), PSREC_OK);
    assert_memory_equal(pv, dv, (size_t)N * DIM * sizeof(float));
    assert_memory_equal(dk, dk2, N * sizeof *dk);
    assert_memory_equal(dv, dv2, (size_t)N * DIM * sizeof(float));
    free(pv);
    /* a retried page after the end (snapshot dropped): rebuilt, same rows */
    Psrec__Header h;
    hdr(&h, PSREC__TYPE__DUMP, 0, 0, DIM, 9000);
    h.rank = 40;
    h.cursor = 131072;
    psrec_wire_msg_t m;
    call(d, &h, NULL, 0, &m);
    assert_int_equal(m.hdr->type, PSREC__TYPE__DUMP_OK);
    assert_int_equal(m.hdr->count, N - 131072);
    assert_int_equal(m.hdr->cursor, 0);
    assert_memory_equal(m.bulk[0], dk + 131072, (N - 131072) * sizeof(uint64_t));
    psrec_wire_msg_clear(&m);
    /* a cursor past the end */
    hdr(&h, PSREC__TYPE__DUMP, 0, 0, DIM, 9001);
    h.rank = 40;
    h.cursor = N + 1;
    expect_error(d, &h, NULL, 0, PSREC_EPROTO);
    hdr(&h, PSREC__TYPE__DUMP, 0, 0, DIM + 1, 9002);
    expect_error(d, &h, NULL, 0, PSREC_EPROTO);
    free(k), free(dk), free(dk2), free(v), free(dv), free(dv2);
    zmq_close(d);
    join_srv(x, 1);
    zmq_ctx_term(z);
}

static void test_stats_and_shutdown(void **st)
{
    void *z = zmq_ctx_new();
    psrec_server_conf_t c = base_conf("inproc://t-stats");
    srv_t *x = start(z, &c);
    void *d = dealer(z, "inproc://t-stats");
    uint64_t k[50];
    float v[50 * DIM];
    for (int i = 0; i < 50; i++)
        k[i] = (uint64_t)i * 1000003;
    pull(d, 0, DIM, k, 50, v);
    pull(d, 0, DIM, k, 20, v);
    uint64_t k3[7] = {1, 2, 3, 4, 5, 6, 7};
    float v3[21];
    pull(d, 3, 3, k3, 7, v3);
    Psrec__Header h;
    hdr(&h, PSREC__TYPE__STATS, 0, 0, 0, 42);
    psrec_wire_msg_t m;
    call(d, &h, NULL, 0, &m);
    assert_int_equal(m.hdr->type, PSREC__TYPE__STATS_OK);
    assert_int_equal(m.hdr->seq, 42);
    assert_int_equal(m.hdr->n_table_stats, 2);
    for (size_t i = 0; i < 2; i++) {
        const Psrec__TableStats *t = m.hdr->table_stats[i];
        assert_int_equal(t->table, ids[i]);
        assert_int_equal(t->rows, i == 0 ? 50 : 7);
        assert_true(t->bytes_per_row == psrec_store_bytes_per_row(psrec_server_store(x->s), ids[i]));
    }
    assert_int_equal(m.hdr->n_members, 1);
    assert_int_equal(m.hdr->members[0]->pulls, 77);
    assert_int_equal(m.hdr->members[0]->pushes, 0);
    assert_string_equal(m.hdr->members[0]->addr, "inproc://t-stats");
    psrec_wire_msg_clear(&m);
    /* SHUTDOWN from another job is refused, from this one it is answered and ends run() */
    hdr(&h, PSREC__TYPE__SHUTDOWN, 0, 0, 0, 43);
    h.job_id = 1;
    expect_error(d, &h, NULL, 0, PSREC_EREFUSED);
    hdr(&h, PSREC__TYPE__SHUTDOWN, 0, 0, 0, 44);
    call(d, &h, NULL, 0, &m);
    assert_int_equal(m.hdr->type, PSREC__TYPE__SHUTDOWN_OK);
    assert_int_equal(m.hdr->seq, 44);
    psrec_wire_msg_clear(&m);
    zmq_close(d);
    join_srv(x, 0); /* no stop: SHUTDOWN alone must end run */
    zmq_ctx_term(z);
}

static void test_stop_and_tcp(void **st)
{
    void *z = zmq_ctx_new();
    psrec_server_conf_t c = base_conf("tcp://127.0.0.1:0");
    srv_t *x = start(z, &c);
    const char *ep = psrec_server_endpoint(x->s);
    assert_true(strncmp(ep, "tcp://127.0.0.1:", 16) == 0);
    assert_true(atoi(ep + 16) > 0);
    void *d = dealer(z, ep);
    uint64_t k[3] = {5, 6, 7};
    float v[3 * DIM], want[3 * DIM];
    pull(d, 0, DIM, k, 3, v);
    for (int i = 0; i < 3; i++)
        psrec_store_init_row(psrec_server_store(x->s), 0, k[i], want + i * DIM);
    assert_memory_equal(v, want, sizeof v);
    zmq_close(d);
    join_srv(x, 1); /* psrec_server_stop from this thread ends run on the server's */
    /* stop before run: run returns at once */
    psrec_server_t *s;
    char err[PSREC_ERRBUF];
    c.bind = "inproc://t-stop";
    assert_int_equal(psrec_server_new(&s, z, &c, err), PSREC_OK);
    psrec_server_stop(s);
    assert_int_equal(psrec_server_run(s, err), PSREC_OK);
    psrec_server_destroy(&s);
    psrec_server_destroy(&s); /* NULL is fine */
    /* bad configuration */
    c.bind = "nonsense://x";
    assert_int_equal(psrec_server_new(&s, z, &c, err), PSREC_EIO);
    assert_null(s);
    c.bind = "inproc://t-stop2";
    psrec_table_conf_t bad = {.dim = 0};
    c.tables = &bad;
    c.ntables = 1;
    assert_int_equal(psrec_server_new(&s, z, &c, err), PSREC_EINVAL);
    zmq_ctx_term(z);
}

static void test_table_conf_wire(void **st)
{
    psrec_table_conf_t a = {.dim = 48,
                            .opt = {.kind = PSREC_OPT_ADAM,
                                    .lr = 0.01f,
                                    .eps = 1e-7f,
                                    .init_acc = 0.1f,
                                    .beta1 = 0.8f,
                                    .beta2 = 0.99f,
                                    .l2 = 1e-5f},
                            .init = PSREC_INIT_NORMAL,
                            .init_scale = 0.02f,
                            .max_rows = 123456789};
    Psrec__TableConf w;
    psrec_table_conf_to_wire(9, &a, &w);
    /* through the bytes */
    unsigned char buf[256];
    size_t len = psrec__table_conf__pack(&w, buf);
    Psrec__TableConf *u = psrec__table_conf__unpack(NULL, len, buf);
    assert_non_null(u);
    uint32_t id;
    psrec_table_conf_t b;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_table_conf_from_wire(u, &id, &b, err), PSREC_OK);
    assert_int_equal(id, 9);
    assert_memory_equal(&a, &b, sizeof a);
    u->dim = 0;
    assert_int_equal(psrec_table_conf_from_wire(u, &id, &b, err), PSREC_EPROTO);
    u->dim = 48, u->table = PSREC_STORE_MAX_TABLES;
    assert_int_equal(psrec_table_conf_from_wire(u, &id, &b, err), PSREC_EPROTO);
    u->table = 1, u->opt = 4;
    assert_int_equal(psrec_table_conf_from_wire(u, &id, &b, err), PSREC_EPROTO);
    u->opt = 0, u->init = 3;
    assert_int_equal(psrec_table_conf_from_wire(u, &id, &b, err), PSREC_EPROTO);
    psrec__table_conf__free_unpacked(u, NULL);
}

/* ---- hostile peer ---- */

static void send_frames(void *d, int n, void *const *p, const size_t *len)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(zmq_send(d, p[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0), (int)len[i]);
}

/* Packs h with the given frame declarations. */
static size_t pack_decl(Psrec__Header *h, int nf, const uint64_t *raw, const int *codec, unsigned char *buf)
{
    Psrec__Frame fr[8], *frp[8];
    for (int i = 0; i < nf; i++) {
        psrec__frame__init(&fr[i]);
        fr[i].raw_bytes = raw[i];
        fr[i].codec = (Psrec__Codec)codec[i];
        frp[i] = &fr[i];
    }
    h->frames = frp;
    h->n_frames = (size_t)nf;
    size_t len = psrec__header__pack(h, buf);
    h->frames = NULL;
    h->n_frames = 0;
    return len;
}

static void test_hostile(void **st)
{
    void *z = zmq_ctx_new();
    psrec_server_conf_t c = base_conf("inproc://t-hostile");
    srv_t *x = start(z, &c);
    psrec_store_t *ref = ref_store();
    void *good = dealer(z, "inproc://t-hostile"), *bad = dealer(z, "inproc://t-hostile");
    /* some state first: pushed rows */
    enum { N = 64 };
    uint64_t k[N];
    float g[N * DIM], got[N * DIM], want[N * DIM];
    psrec_rng_t r;
    psrec_rng_seed(&r, 77, 1);
    keys_and_grads(&r, k, g, N, DIM);
    assert_int_equal(update(good, PSREC__TYPE__PUSH, 0, DIM, k, N, g, 0, 0, 1), PSREC__TYPE__PUSH_OK);
    assert_int_equal(psrec_store_push(ref, 0, k, N, g), PSREC_OK);

    /* a valid PULL and a valid PUSH, as bytes */
    unsigned char vpull[512], vpush[512], buf[1024], fr[4][2048];
    Psrec__Header h;
    hdr(&h, PSREC__TYPE__PULL, 0, 16, DIM, 7);
    h.rank = 999;
    uint64_t raw1[1] = {16 * 8};
    int raw0[4] = {0, 0, 0, 0};
    size_t lpull = pack_decl(&h, 1, raw1, raw0, vpull);
    hdr(&h, PSREC__TYPE__PUSH, 0, 16, DIM, 8);
    h.rank = 999;
    uint64_t raw2[2] = {16 * 8, 16 * DIM * 4};
    size_t lpush = pack_decl(&h, 2, raw2, raw0, vpush);
    unsigned char keys16[16 * 8], vals16[16 * DIM * 4];
    for (size_t i = 0; i < sizeof keys16; i++)
        keys16[i] = (unsigned char)psrec_rng_u64(&r);
    memset(vals16, 0x3f, sizeof vals16);

    int errors = 0, oks = 0, exact = 0;
    for (int i = 0; i < 2000; i++) {
        void *p[6];
        size_t len[6];
        int nf = 0;
        psrec_err want_code = PSREC_OK; /* OK: any reply; else exactly this ERROR */
        int kind = i % 6;
        if (kind == 0) { /* random bytes, 1..4 frames */
            nf = 1 + (int)psrec_rng_below(&r, 4);
            for (int f = 0; f < nf; f++) {
                len[f] = (size_t)psrec_rng_below(&r, 300);
                for (size_t b = 0; b < len[f]; b++)
                    fr[f][b] = (unsigned char)psrec_rng_u64(&r);
                p[f] = fr[f];
            }
        } else if (kind == 1) { /* a truncated valid message: cut header, or a missing frame */
            int which = (int)psrec_rng_below(&r, 3);
            if (which == 0) {
                len[0] = (size_t)psrec_rng_below(&r, lpush);
                memcpy(buf, vpush, len[0]);
                p[0] = buf;
                p[1] = keys16, len[1] = sizeof keys16;
                p[2] = vals16, len[2] = sizeof vals16;
                nf = 1 + (int)psrec_rng_below(&r, 3);
            } else if (which == 1) {
                p[0] = vpush, len[0] = lpush;
                p[1] = keys16, len[1] = sizeof keys16;
                nf = 2;
                want_code = PSREC_EPROTO;
            } else {
                p[0] = vpull, len[0] = lpull;
                p[1] = keys16, len[1] = (size_t)psrec_rng_below(&r, sizeof keys16); /* truncated frame */
                nf = 2;
                want_code = PSREC_EPROTO;
            }
        } else if (kind == 2) { /* a valid header that lies about sizes, each lie with its exact code */
            hdr(&h, PSREC__TYPE__PUSH, 0, 16, DIM, 10 + (uint64_t)i);
            h.rank = 999;
            uint64_t rawd[5] = {16 * 8, 16 * DIM * 4, 0, 0, 0};
            int codec[5] = {0, 0, 0, 0, 0};
            int lie = (int)psrec_rng_below(&r, 7);
            int ndecl = 2;
            p[1] = keys16, len[1] = sizeof keys16;
            p[2] = vals16, len[2] = sizeof vals16;
            nf = 3;
            switch (lie) {
            case 0: /* count says 17, frames hold 16 rows (declared truthfully) */
                h.count = 17;
                want_code = PSREC_EPROTO;
                break;
            case 1: /* declared bigger than sent */
                rawd[1] += 4 * (1 + psrec_rng_below(&r, 100));
                want_code = PSREC_EPROTO;
                break;
            case 2: /* declared over the frame limit */
                rawd[0] = PSREC_WIRE_MAX_FRAME_BYTES + 1 + psrec_rng_below(&r, 1u << 30);
                want_code = PSREC_EMSGSIZE;
                break;
            case 3: /* LZ4 that is not */
                codec[1] = 1;
                rawd[1] = 1 + psrec_rng_below(&r, 1u << 20);
                want_code = PSREC_ECORRUPT;
                break;
            case 4: /* more bulk frames declared than allowed */
                ndecl = 5;
                want_code = PSREC_EMSGSIZE;
                break;
            case 5: /* count over the key limit */
                h.count = PSREC_WIRE_MAX_KEYS + 1 + psrec_rng_below(&r, 1u << 30);
                want_code = PSREC_EMSGSIZE;
                break;
            default: /* unknown codec */ codec[0] = 2 + (int)psrec_rng_below(&r, 100); want_code = PSREC_EPROTO;
            }
            len[0] = pack_decl(&h, ndecl, rawd, codec, buf);
            p[0] = buf;
        } else if (kind == 3) { /* a valid PULL with bytes flipped (header or keys); never a SHUTDOWN */
            for (;;) {
                memcpy(buf, vpull, lpull);
                memcpy(fr[0], keys16, sizeof keys16);
                int flips = 1 + (int)psrec_rng_below(&r, 3);
                for (int f = 0; f < flips; f++) {
                    if (psrec_rng_below(&r, 2))
                        buf[psrec_rng_below(&r, lpull)] = (unsigned char)psrec_rng_u64(&r);
                    else
                        fr[0][psrec_rng_below(&r, sizeof keys16)] ^= (unsigned char)(1 + psrec_rng_below(&r, 255));
                }
                Psrec__Header *u = psrec__header__unpack(NULL, lpull, buf);
                int shut = u && (u->type == PSREC__TYPE__SHUTDOWN || u->type == PSREC__TYPE__PUSH ||
                                 u->type == PSREC__TYPE__SET);
                if (u) psrec__header__free_unpacked(u, NULL);
                if (!shut) break;
            }
            p[0] = buf, len[0] = lpull;
            p[1] = fr[0], len[1] = sizeof keys16;
            nf = 2;
        } else if (kind == 4) { /* well-formed, but wrong table / dim / job / type */
            int what = (int)psrec_rng_below(&r, 4);
            hdr(&h, PSREC__TYPE__PULL, 0, 16, DIM, 20 + (uint64_t)i);
            if (what == 0) h.table = 1 + (uint32_t)psrec_rng_below(&r, 2), want_code = PSREC_ENOTFOUND;
            if (what == 1) h.dim = DIM + 1 + (uint32_t)psrec_rng_below(&r, 100), want_code = PSREC_EPROTO;
            if (what == 2) h.job_id = JOB + 1 + psrec_rng_below(&r, 100), want_code = PSREC_EREFUSED;
            if (what == 3) h.type = (Psrec__Type)(24 + psrec_rng_below(&r, 1000)), want_code = PSREC_EPROTO;
            uint64_t rawk[1] = {sizeof keys16};
            len[0] = pack_decl(&h, 1, rawk, raw0, buf);
            p[0] = buf;
            p[1] = keys16, len[1] = sizeof keys16;
            nf = 2;
        } else { /* an empty message, or an empty header frame followed by junk */
            p[0] = buf, len[0] = 0;
            p[1] = keys16, len[1] = sizeof keys16;
            nf = 1 + (int)psrec_rng_below(&r, 2);
            want_code = PSREC_EVERSION; /* an empty header decodes to version 0 */
        }
        send_frames(bad, nf, p, len);
        psrec_wire_msg_t m;
        char err[PSREC_ERRBUF];
        psrec_err rc = psrec_wire_recv(bad, NULL, &m, WAIT_MS, NULL, err);
        if (rc) fail_msg("message %d (kind %d): no well-formed reply: %s", i, kind, err);
        if (m.hdr->type == PSREC__TYPE__ERROR) {
            errors++;
            assert_true(m.hdr->error_code > 0 && m.hdr->error_code < PSREC_ERR_COUNT);
        } else {
            oks++;
        }
        if (want_code) {
            if (m.hdr->type != PSREC__TYPE__ERROR || m.hdr->error_code != (uint32_t)want_code)
                fail_msg("message %d (kind %d): expected %s, got type %d %s (%s)", i, kind, psrec_errname(want_code),
                         m.hdr->type, psrec_errname((psrec_err)m.hdr->error_code), m.hdr->error_text);
            exact++;
        }
        psrec_wire_msg_clear(&m);
        /* exactly one reply: nothing else is waiting */
        zmq_pollitem_t it = {.socket = bad, .events = ZMQ_POLLIN};
        if (i % 100 == 99) assert_int_equal(zmq_poll(&it, 1, 0), 0);
    }
    assert_int_equal(errors + oks, 2000);
    assert_true(errors > 1000);
    assert_true(exact > 900);
    psrec_server_stats_t ss;
    psrec_server_get_stats(x->s, &ss);
    assert_int_equal(ss.errors, errors);
    assert_int_equal(ss.requests, 2000 + 1);
    /* the server still answers correctly */
    pull(good, 0, DIM, k, N, got);
    assert_int_equal(psrec_store_pull(ref, 0, k, N, want), PSREC_OK);
    assert_memory_equal(got, want, sizeof got);
    assert_int_equal(update(good, PSREC__TYPE__PUSH, 0, DIM, k, N, g, 0, 0, 2), PSREC__TYPE__PUSH_OK);
    assert_int_equal(psrec_store_push(ref, 0, k, N, g), PSREC_OK);
    pull(good, 0, DIM, k, N, got);
    assert_int_equal(psrec_store_pull(ref, 0, k, N, want), PSREC_OK);
    assert_memory_equal(got, want, sizeof got);
    zmq_close(good);
    zmq_close(bad);
    join_srv(x, 1);
    psrec_store_destroy(&ref);
    zmq_ctx_term(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_conf_wire),
        cmocka_unit_test(test_pull_push_set),
        cmocka_unit_test(test_compress_flag),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_ownership),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_negatives),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_stats_and_shutdown),
        cmocka_unit_test(test_stop_and_tcp),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

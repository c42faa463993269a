/* test_wire.c: the wire framing over real ZeroMQ sockets (inproc DEALER<->ROUTER, one tcp case on an
 * ephemeral port). Round trips of headers and bulk frames with and without LZ4, the LZ4 policy
 * checked on the bytes actually sent (sniffed part by part), stats counters, routing ids, timeouts,
 * and every kind of malformed message built by hand: each must give its exact code AND leave the
 * socket in sync (a valid message sent right after is received intact). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <lz4.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#include "common/wire.h"

#define DEALER_ID "dealer-1"
#define WAIT_MS 5000 /* a deadline for messages already sent, never a sleep */

typedef struct {
    void *ctx;
    void *router; /* bound */
    void *dealer; /* connected, routing id DEALER_ID */
    psrec_wire_route_t to_dealer;
} net_t;

static void *mksock(void *ctx, int type)
{
    void *s = zmq_socket(ctx, type);
    assert_non_null(s);
    int zero = 0;
    assert_int_equal(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero), 0);
    return s;
}

static void route_of(psrec_wire_route_t *r, const char *id)
{
    r->len = strlen(id);
    memcpy(r->id, id, r->len);
}

static void assert_route(const psrec_wire_route_t *r, const char *id)
{
    assert_int_equal(r->len, strlen(id));
    assert_memory_equal(r->id, id, r->len);
}

/* A dealer says hello so the router knows its routing id before anything is sent to it. */
static void hello(void *dealer, void *router, const char *id)
{
    char err[PSREC_ERRBUF];
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    assert_int_equal(psrec_wire_send(dealer, NULL, &h, NULL, 0, 0, NULL, err), PSREC_OK);
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    assert_int_equal(psrec_wire_recv(router, &r, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_int_equal(m.hdr->type, PSREC__TYPE__HEARTBEAT);
    assert_route(&r, id);
    psrec_wire_msg_clear(&m);
}

static void net_open(net_t *n, const char *bind_ep)
{
    n->ctx = zmq_ctx_new();
    assert_non_null(n->ctx);
    n->router = mksock(n->ctx, ZMQ_ROUTER);
    n->dealer = mksock(n->ctx, ZMQ_DEALER);
    assert_int_equal(zmq_setsockopt(n->dealer, ZMQ_ROUTING_ID, DEALER_ID, strlen(DEALER_ID)), 0);
    assert_int_equal(zmq_bind(n->router, bind_ep), 0);
    char ep[256];
    size_t len = sizeof ep;
    assert_int_equal(zmq_getsockopt(n->router, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    assert_int_equal(zmq_connect(n->dealer, ep), 0);
    hello(n->dealer, n->router, DEALER_ID);
    route_of(&n->to_dealer, DEALER_ID);
}

static void net_close(net_t *n)
{
    assert_int_equal(zmq_close(n->dealer), 0);
    assert_int_equal(zmq_close(n->router), 0);
    assert_int_equal(zmq_ctx_term(n->ctx), 0);
}

static int setup(void **state)
{
    net_t *n = calloc(1, sizeof *n);
    if (!n) return -1;
    net_open(n, "inproc://wire-test");
    *state = n;
    return 0;
}

static int teardown(void **state)
{
    net_close(*state);
    free(*state);
    return 0;
}

/* ---- raw parts: building malformed messages and sniffing real ones ---------------------------- */

#define MAXPARTS 12

typedef struct {
    unsigned char *data[MAXPARTS];
    size_t len[MAXPARTS];
    int n;
} parts_t;

static void parts_add(parts_t *p, const void *d, size_t n)
{
    assert_true(p->n < MAXPARTS);
    p->data[p->n] = malloc(n + 1);
    assert_non_null(p->data[p->n]);
    if (n) memcpy(p->data[p->n], d, n);
    p->len[p->n++] = n;
}

static void parts_add_hdr(parts_t *p, const Psrec__Header *h)
{
    size_t n = psrec__header__get_packed_size(h);
    unsigned char *b = malloc(n + 1);
    assert_non_null(b);
    assert_int_equal(psrec__header__pack(h, b), n);
    parts_add(p, b, n);
    free(b);
}

static void parts_free(parts_t *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->data[i]);
    memset(p, 0, sizeof *p);
}

/* Sends the parts by hand; on a ROUTER, route is the first part. */
static void send_parts(void *sock, const psrec_wire_route_t *route, const parts_t *p)
{
    if (route) assert_int_equal(zmq_send(sock, route->id, route->len, ZMQ_SNDMORE), (int)route->len);
    for (int i = 0; i < p->n; i++)
        assert_int_equal(zmq_send(sock, p->data[i], p->len[i], i + 1 < p->n ? ZMQ_SNDMORE : 0), (int)p->len[i]);
}

/* Receives one whole message part by part (dropping the routing id on a ROUTER). */
static void sniff(void *sock, int routed, parts_t *p)
{
    memset(p, 0, sizeof *p);
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, WAIT_MS), 1);
    int more = 1, first = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        assert_true(zmq_msg_recv(&m, sock, 0) >= 0);
        if (!(routed && first)) parts_add(p, zmq_msg_data(&m), zmq_msg_size(&m));
        first = 0;
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
}

/* Header frame declarations: n frames with the given raw sizes and codecs. */
typedef struct {
    Psrec__Frame fr[8];
    Psrec__Frame *frp[8];
} decl_t;

static void declare(Psrec__Header *h, decl_t *d, int n, const uint64_t *raw, const int *codec)
{
    assert_true(n <= 8);
    for (int i = 0; i < n; i++) {
        psrec__frame__init(&d->fr[i]);
        d->fr[i].raw_bytes = raw[i];
        d->fr[i].codec = (Psrec__Codec)codec[i];
        d->frp[i] = &d->fr[i];
    }
    h->frames = d->frp;
    h->n_frames = (size_t)n;
}

static void fill_random(void *p, size_t n, uint64_t seed)
{
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 7);
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)psrec_rng_u64(&r);
}

static void fill_normal_floats(float *f, size_t n, uint64_t seed)
{
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 3);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)psrec_rng_normal(&r);
}

/* ---- a valid PUSH used after every malformed message to prove the socket is still in sync ------- */

static void send_probe(void *sock, const psrec_wire_route_t *route, uint64_t seq)
{
    char err[PSREC_ERRBUF];
    uint64_t keys[8];
    float vals[8 * 4];
    for (int i = 0; i < 8; i++)
        keys[i] = seq * 100 + (uint64_t)i;
    for (int i = 0; i < 32; i++)
        vals[i] = (float)seq + 0.25f * (float)i;
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PUSH);
    h.seq = seq;
    h.count = 8;
    h.dim = 4;
    psrec_wire_bulk_t b[2] = {{keys, sizeof keys}, {vals, sizeof vals}};
    assert_int_equal(psrec_wire_send(sock, route, &h, b, 2, 1, NULL, err), PSREC_OK);
}

static void recv_probe(void *sock, int routed, uint64_t seq)
{
    char err[PSREC_ERRBUF];
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    psrec_err rc = psrec_wire_recv(sock, routed ? &r : NULL, &m, WAIT_MS, NULL, err);
    if (rc) fail_msg("probe %llu: %s: %s", (unsigned long long)seq, psrec_errname(rc), err);
    if (routed) assert_route(&r, DEALER_ID);
    assert_int_equal(m.hdr->type, PSREC__TYPE__PUSH);
    assert_int_equal(m.hdr->seq, seq);
    assert_int_equal(m.nbulk, 2);
    assert_int_equal(m.bulk_bytes[0], 8 * sizeof(uint64_t));
    assert_int_equal(m.bulk_bytes[1], 32 * sizeof(float));
    const uint64_t *k = m.bulk[0];
    const float *v = m.bulk[1];
    for (int i = 0; i < 8; i++)
        assert_int_equal(k[i], seq * 100 + (uint64_t)i);
    for (int i = 0; i < 32; i++)
        assert_true(v[i] == (float)seq + 0.25f * (float)i);
    psrec_wire_msg_clear(&m);
}

/* ---- round trips ----------------------------------------------------------------------------- */

static void roundtrip_one(net_t *n, int to_router, size_t count, uint32_t dim, int compress, int sequential,
                          uint64_t seed)
{
    char err[PSREC_ERRBUF];
    uint64_t *keys = malloc(count * sizeof *keys + 1);
    float *vals = malloc(count * dim * sizeof *vals + 1);
    assert_non_null(keys);
    assert_non_null(vals);
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 1);
    for (size_t i = 0; i < count; i++)
        keys[i] = sequential ? 1000 + i : psrec_rng_u64(&r);
    fill_normal_floats(vals, count * dim, seed);

    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PUSH);
    h.seq = seed;
    h.table = 3;
    h.count = count;
    h.dim = dim;
    h.rank = 5;
    h.epoch = 99;
    h.job_id = 0xfeedfacecafeULL;
    h.barrier_name = "sync";
    assert_null(h.frames);
    psrec_wire_bulk_t b[2] = {{count ? keys : NULL, count * sizeof *keys},
                              {count ? vals : NULL, count * dim * sizeof *vals}};
    psrec_wire_stats_t st = {0}, rst = {0};
    void *from = to_router ? n->dealer : n->router, *to = to_router ? n->router : n->dealer;
    assert_int_equal(psrec_wire_send(from, to_router ? NULL : &n->to_dealer, &h, b, 2, compress, &st, err), PSREC_OK);
    assert_null(h.frames); /* the caller's frames field is restored */
    assert_int_equal(h.n_frames, 0);

    psrec_wire_route_t route;
    psrec_wire_msg_t m;
    assert_int_equal(psrec_wire_recv(to, to_router ? &route : NULL, &m, WAIT_MS, &rst, err), PSREC_OK);
    if (to_router) assert_route(&route, DEALER_ID);
    assert_int_equal(m.hdr->version, PSREC_WIRE_VERSION);
    assert_int_equal(m.hdr->type, PSREC__TYPE__PUSH);
    assert_int_equal(m.hdr->seq, seed);
    assert_int_equal(m.hdr->table, 3);
    assert_int_equal(m.hdr->count, count);
    assert_int_equal(m.hdr->dim, dim);
    assert_int_equal(m.hdr->rank, 5);
    assert_int_equal(m.hdr->epoch, 99);
    assert_int_equal(m.hdr->job_id, 0xfeedfacecafeULL);
    assert_string_equal(m.hdr->barrier_name, "sync");
    assert_int_equal(m.nbulk, 2);
    assert_int_equal(m.hdr->n_frames, 2);
    size_t want[2] = {count * sizeof *keys, count * dim * sizeof *vals};
    assert_int_equal(psrec_wire_check_bulk(&m, 2, want, err), PSREC_OK);
    for (int i = 0; i < 2; i++) {
        assert_non_null(m.bulk[i]);
        assert_int_equal((uintptr_t)m.bulk[i] % 16, 0);
        assert_int_equal(m.hdr->frames[i]->raw_bytes, want[i]);
        if (!compress) assert_int_equal(m.hdr->frames[i]->codec, PSREC__CODEC__RAW);
    }
    if (count) {
        assert_memory_equal(m.bulk[0], keys, want[0]);
        assert_memory_equal(m.bulk[1], vals, want[1]);
    }
    /* both ends count the same bytes; raw bytes are what the caller handed over */
    assert_int_equal(st.msgs, 1);
    assert_int_equal(rst.msgs, 1);
    assert_int_equal(st.raw_bytes, want[0] + want[1]);
    assert_int_equal(rst.raw_bytes, want[0] + want[1]);
    assert_int_equal(rst.wire_bytes, st.wire_bytes);
    assert_int_equal(rst.header_bytes, st.header_bytes);
    if (!compress) assert_int_equal(st.wire_bytes, st.raw_bytes);
    psrec_wire_msg_clear(&m);
    assert_null(m.hdr);
    assert_int_equal(m.nbulk, 0);
    free(keys);
    free(vals);
}

static void test_roundtrip(void **state)
{
    net_t *n = *state;
    static const size_t counts[] = {0, 1, 7, 3000};
    static const uint32_t dims[] = {1, 16};
    uint64_t seed = 1;
    for (int to_router = 0; to_router < 2; to_router++)
        for (size_t c = 0; c < sizeof counts / sizeof *counts; c++)
            for (size_t d = 0; d < 2; d++)
                for (int comp = 0; comp < 2; comp++)
                    for (int seqk = 0; seqk < 2; seqk++)
                        roundtrip_one(n, to_router, counts[c], dims[d], comp, seqk, seed++);
}

/* A message with no bulk frame and rich header fields (strings, nested messages). */
static void test_roundtrip_header_only(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__SHARD_MAP);
    Psrec__ShardMap sm;
    psrec__shard_map__init(&sm);
    uint32_t slots[16];
    for (int i = 0; i < 16; i++)
        slots[i] = (uint32_t)(i % 3);
    char *addrs[3] = {"tcp://a:1", "tcp://b:2", "tcp://c:3"};
    sm.version = 42;
    sm.nslots = 16;
    sm.slot_server = slots;
    sm.n_slot_server = 16;
    sm.server_addr = addrs;
    sm.n_server_addr = 3;
    h.shard_map = &sm;
    h.seq = 12;
    assert_int_equal(psrec_wire_send(n->router, &n->to_dealer, &h, NULL, 0, 1, NULL, err), PSREC_OK);
    psrec_wire_msg_t m;
    assert_int_equal(psrec_wire_recv(n->dealer, NULL, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_int_equal(m.nbulk, 0);
    assert_int_equal(m.hdr->n_frames, 0);
    assert_int_equal(m.hdr->type, PSREC__TYPE__SHARD_MAP);
    assert_non_null(m.hdr->shard_map);
    assert_int_equal(m.hdr->shard_map->version, 42);
    assert_int_equal(m.hdr->shard_map->n_slot_server, 16);
    for (int i = 0; i < 16; i++)
        assert_int_equal(m.hdr->shard_map->slot_server[i], (uint32_t)(i % 3));
    assert_int_equal(m.hdr->shard_map->n_server_addr, 3);
    assert_string_equal(m.hdr->shard_map->server_addr[2], "tcp://c:3");
    assert_int_equal(psrec_wire_check_bulk(&m, 0, NULL, err), PSREC_OK);
    psrec_wire_msg_clear(&m);
}

/* ---- LZ4 policy, checked on the parts actually sent -------------------------------------------- */

enum { K_SEQ_IDS, K_ZERO_ROWS, K_RANDOM_FLOATS, K_ZEROS_BELOW_MIN, K_ZEROS_AT_MIN, K_NKIND };

static void test_lz4_policy(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    size_t bytes[K_NKIND] = {8192 * 8, 64 * 64 * 4, 64 * 64 * 4, PSREC_WIRE_LZ4_MIN - 8, PSREC_WIRE_LZ4_MIN};
    void *buf[K_NKIND];
    for (int k = 0; k < K_NKIND; k++) {
        buf[k] = calloc(1, bytes[k]);
        assert_non_null(buf[k]);
    }
    uint64_t *ids = buf[K_SEQ_IDS];
    for (size_t i = 0; i < 8192; i++)
        ids[i] = 500000 + i;
    fill_normal_floats(buf[K_RANDOM_FLOATS], 64 * 64, 77);
    /* precondition, computed with LZ4 directly: random floats do not shrink by even 1/16 */
    {
        int bound = LZ4_compressBound((int)bytes[K_RANDOM_FLOATS]);
        char *c = malloc((size_t)bound);
        assert_non_null(c);
        int cn = LZ4_compress_default(buf[K_RANDOM_FLOATS], c, (int)bytes[K_RANDOM_FLOATS], bound);
        assert_true((size_t)cn > bytes[K_RANDOM_FLOATS] - bytes[K_RANDOM_FLOATS] / 16);
        free(c);
    }
    const int want_lz4[K_NKIND] = {1, 1, 0, 0, 1};

    for (int comp = 0; comp < 2; comp++) {
        /* (a) bytes on the wire: sniff the parts and check each frame and the sender's counters */
        psrec_wire_bulk_t b[PSREC_WIRE_MAX_BULK];
        Psrec__Header h;
        psrec_wire_header_init(&h, PSREC__TYPE__DUMP_OK);
        psrec_wire_stats_t st = {0};
        /* 5 kinds but at most 4 frames per message: two messages, frames 0-3 then frame 4 */
        for (int first = 0; first < K_NKIND; first += PSREC_WIRE_MAX_BULK) {
            int nb = K_NKIND - first < PSREC_WIRE_MAX_BULK ? K_NKIND - first : PSREC_WIRE_MAX_BULK;
            for (int i = 0; i < nb; i++)
                b[i] = (psrec_wire_bulk_t){buf[first + i], bytes[first + i]};
            psrec_wire_stats_t one = {0};
            assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, b, nb, comp, &one, err), PSREC_OK);
            parts_t p;
            sniff(n->router, 1, &p);
            assert_int_equal(p.n, 1 + nb);
            Psrec__Header *got = psrec__header__unpack(NULL, p.len[0], p.data[0]);
            assert_non_null(got);
            assert_int_equal(got->n_frames, nb);
            uint64_t raw = 0, wire = 0;
            for (int i = 0; i < nb; i++) {
                int k = first + i;
                raw += bytes[k];
                wire += p.len[1 + i];
                assert_int_equal(got->frames[i]->raw_bytes, bytes[k]);
                int lz4 = comp && want_lz4[k];
                assert_int_equal(got->frames[i]->codec, lz4 ? PSREC__CODEC__LZ4 : PSREC__CODEC__RAW);
                if (lz4) {
                    assert_true(p.len[1 + i] < bytes[k]);
                    char *out = malloc(bytes[k]);
                    assert_non_null(out);
                    assert_int_equal(
                        LZ4_decompress_safe((const char *)p.data[1 + i], out, (int)p.len[1 + i], (int)bytes[k]),
                        (int)bytes[k]);
                    assert_memory_equal(out, buf[k], bytes[k]);
                    free(out);
                } else {
                    assert_int_equal(p.len[1 + i], bytes[k]);
                    assert_memory_equal(p.data[1 + i], buf[k], bytes[k]);
                }
            }
            assert_int_equal(one.msgs, 1);
            assert_int_equal(one.header_bytes, p.len[0]);
            assert_int_equal(one.raw_bytes, raw);
            assert_int_equal(one.wire_bytes, wire);
            if (comp)
                assert_true(wire < raw);
            else
                assert_int_equal(wire, raw);
            st.msgs += one.msgs;
            st.header_bytes += one.header_bytes;
            st.raw_bytes += one.raw_bytes;
            st.wire_bytes += one.wire_bytes;
            psrec__header__free_unpacked(got, NULL);
            parts_free(&p);

            /* (b) the same message through psrec_wire_recv: codecs in the received header, same counts */
            psrec_wire_stats_t rst = {0};
            assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, b, nb, comp, NULL, err), PSREC_OK);
            psrec_wire_route_t r;
            psrec_wire_msg_t m;
            assert_int_equal(psrec_wire_recv(n->router, &r, &m, WAIT_MS, &rst, err), PSREC_OK);
            for (int i = 0; i < nb; i++) {
                int k = first + i;
                int lz4 = comp && want_lz4[k];
                assert_int_equal(m.hdr->frames[i]->codec, lz4 ? PSREC__CODEC__LZ4 : PSREC__CODEC__RAW);
                assert_int_equal(m.bulk_bytes[i], bytes[k]);
                assert_memory_equal(m.bulk[i], buf[k], bytes[k]);
            }
            assert_int_equal(rst.msgs, one.msgs);
            assert_int_equal(rst.header_bytes, one.header_bytes);
            assert_int_equal(rst.raw_bytes, one.raw_bytes);
            assert_int_equal(rst.wire_bytes, one.wire_bytes);
            psrec_wire_msg_clear(&m);
        }
        assert_int_equal(st.msgs, 2);
    }
    for (int k = 0; k < K_NKIND; k++)
        free(buf[k]);
}

/* Counters accumulate across messages and directions. */
static void test_stats_accumulate(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    uint64_t keys[1024];
    for (int i = 0; i < 1024; i++)
        keys[i] = (uint64_t)i; /* 8 KiB, compressible */
    float vals[100];
    fill_normal_floats(vals, 100, 5);
    psrec_wire_stats_t st = {0}, rst = {0};
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PULL);
    for (int i = 0; i < 5; i++) {
        psrec_wire_bulk_t b[2] = {{keys, sizeof keys}, {vals, sizeof vals}};
        assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, b, 2, 1, &st, err), PSREC_OK);
        psrec_wire_route_t r;
        psrec_wire_msg_t m;
        assert_int_equal(psrec_wire_recv(n->router, &r, &m, WAIT_MS, &rst, err), PSREC_OK);
        psrec_wire_msg_clear(&m);
    }
    assert_int_equal(st.msgs, 5);
    assert_int_equal(rst.msgs, 5);
    assert_int_equal(st.raw_bytes, 5 * (sizeof keys + sizeof vals));
    assert_int_equal(rst.raw_bytes, st.raw_bytes);
    assert_int_equal(rst.wire_bytes, st.wire_bytes);
    assert_int_equal(rst.header_bytes, st.header_bytes);
    assert_true(st.wire_bytes < st.raw_bytes);                  /* the ids shrank */
    assert_true(st.wire_bytes > 5 * sizeof vals);               /* the floats did not vanish */
    assert_int_equal((st.wire_bytes - 5 * sizeof vals) % 5, 0); /* identical messages */
}

/* The most compressible frame there is (all zeros, LZ4's ratio tends to 255) is still accepted: the
 * receiver's "at most 255x" plausibility check must not refuse honest data. */
static void test_lz4_max_ratio(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    size_t bytes = 16u << 20;
    unsigned char *z = calloc(1, bytes);
    assert_non_null(z);
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__DUMP_OK);
    psrec_wire_bulk_t b = {z, bytes};
    psrec_wire_stats_t st = {0};
    assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, &b, 1, 1, &st, err), PSREC_OK);
    assert_true(st.wire_bytes * 250 < bytes); /* close to the 255x bound */
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    assert_int_equal(psrec_wire_recv(n->router, &r, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_int_equal(m.hdr->frames[0]->codec, PSREC__CODEC__LZ4);
    assert_int_equal(m.bulk_bytes[0], bytes);
    assert_memory_equal(m.bulk[0], z, bytes);
    psrec_wire_msg_clear(&m);
    free(z);
}

/* A lying declaration must not cost an allocation of the declared size: with the address space capped
 * a little above what the process uses, a 1 GiB declaration in a tiny message must still give its
 * protocol code, not PSREC_ENOMEM. (Skipped under ASan, whose shadow memory needs a huge address space.) */
static void test_no_alloc_from_declaration(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    unsigned long vm_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%lu", &vm_pages) != 1) {
        if (f) fclose(f);
        skip();
    }
    fclose(f);
    size_t vm = vm_pages * (size_t)sysconf(_SC_PAGESIZE);
    if (vm > (16ull << 30)) skip();
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_AS, &old), 0);
    lim = old;
    lim.rlim_cur = vm + (384u << 20);
    if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < lim.rlim_cur) lim.rlim_cur = old.rlim_cur;
    /* the cap is real: a 1 GiB allocation fails under it */
    assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0);
    void *probe = malloc(1u << 30);
    int capped = probe == NULL;
    free(probe);

    static const unsigned char junk[100];
    const uint64_t gib = 1ull << 30;
    for (int codec = 0; codec < 2; codec++) {
        parts_t p = {0};
        Psrec__Header h;
        psrec_wire_header_init(&h, PSREC__TYPE__PUSH);
        decl_t d;
        declare(&h, &d, 2, (uint64_t[]){8, gib}, (int[]){PSREC__CODEC__RAW, codec});
        parts_add_hdr(&p, &h);
        parts_add(&p, junk, 8);
        parts_add(&p, junk, sizeof junk);
        send_parts(n->dealer, NULL, &p);
        parts_free(&p);
        psrec_wire_route_t r;
        psrec_wire_msg_t m;
        psrec_err rc = psrec_wire_recv(n->router, &r, &m, WAIT_MS, NULL, err);
        if (rc != (codec ? PSREC_ECORRUPT : PSREC_EPROTO)) {
            assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
            fail_msg("codec %d: %s (%s)", codec, psrec_errname(rc), err);
        }
    }
    assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
    assert_true(capped);
    send_probe(n->dealer, NULL, 41);
    recv_probe(n->router, 1, 41);
}

/* ---- routing ids ----------------------------------------------------------------------------- */

static void test_routing(void **state)
{
    (void)state;
    char err[PSREC_ERRBUF];
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    void *router = mksock(ctx, ZMQ_ROUTER);
    assert_int_equal(zmq_bind(router, "inproc://wire-routing"), 0);
    const char *ids[3] = {"alpha", "beta", "a-much-longer-routing-id-of-the-third-peer"};
    void *d[3];
    for (int i = 0; i < 3; i++) {
        d[i] = mksock(ctx, ZMQ_DEALER);
        assert_int_equal(zmq_setsockopt(d[i], ZMQ_ROUTING_ID, ids[i], strlen(ids[i])), 0);
        assert_int_equal(zmq_connect(d[i], "inproc://wire-routing"), 0);
    }
    /* each dealer sends a request with its index as seq; the router learns who sent what */
    psrec_wire_route_t routes[3];
    for (int i = 0; i < 3; i++) {
        Psrec__Header h;
        psrec_wire_header_init(&h, PSREC__TYPE__STATS);
        h.seq = 10 + (uint64_t)i;
        assert_int_equal(psrec_wire_send(d[i], NULL, &h, NULL, 0, 0, NULL, err), PSREC_OK);
        psrec_wire_msg_t m;
        assert_int_equal(psrec_wire_recv(router, &routes[i], &m, WAIT_MS, NULL, err), PSREC_OK);
        assert_int_equal(m.hdr->seq, 10 + (uint64_t)i);
        assert_route(&routes[i], ids[i]);
        psrec_wire_msg_clear(&m);
    }
    /* replies in reverse order, each to its own peer only */
    for (int i = 2; i >= 0; i--) {
        Psrec__Header h;
        psrec_wire_header_init(&h, PSREC__TYPE__STATS_OK);
        h.seq = 10 + (uint64_t)i;
        uint64_t payload = 0xabc0 + (uint64_t)i;
        psrec_wire_bulk_t b = {&payload, sizeof payload};
        assert_int_equal(psrec_wire_send(router, &routes[i], &h, &b, 1, 0, NULL, err), PSREC_OK);
    }
    for (int i = 0; i < 3; i++) {
        psrec_wire_msg_t m;
        assert_int_equal(psrec_wire_recv(d[i], NULL, &m, WAIT_MS, NULL, err), PSREC_OK);
        assert_int_equal(m.hdr->seq, 10 + (uint64_t)i);
        assert_int_equal(*(uint64_t *)m.bulk[0], 0xabc0 + (uint64_t)i);
        psrec_wire_msg_clear(&m);
        /* and nothing else arrived there */
        assert_int_equal(psrec_wire_recv(d[i], NULL, &m, 0, NULL, err), PSREC_ETIMEDOUT);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(zmq_close(d[i]), 0);
    assert_int_equal(zmq_close(router), 0);
    assert_int_equal(zmq_ctx_term(ctx), 0);
}

/* ---- timeouts -------------------------------------------------------------------------------- */

static void test_timeout(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    static const int t[2] = {0, 10};
    for (int i = 0; i < 2; i++) {
        memset(&m, 0x5a, sizeof m);
        assert_int_equal(psrec_wire_recv(n->router, &r, &m, t[i], NULL, err), PSREC_ETIMEDOUT);
        assert_null(m.hdr);
        assert_int_equal(m.nbulk, 0);
        assert_int_equal(psrec_wire_recv(n->dealer, NULL, &m, t[i], NULL, err), PSREC_ETIMEDOUT);
        assert_null(m.hdr);
    }
    /* a timeout leaves the sockets usable */
    send_probe(n->dealer, NULL, 7);
    recv_probe(n->router, 1, 7);
    send_probe(n->router, &n->to_dealer, 8);
    recv_probe(n->dealer, 0, 8);
}

/* ---- tcp on an ephemeral port ---------------------------------------------------------------- */

static void test_tcp(void **state)
{
    (void)state;
    char err[PSREC_ERRBUF];
    net_t n;
    net_open(&n, "tcp://127.0.0.1:0");
    char ep[256];
    size_t len = sizeof ep;
    assert_int_equal(zmq_getsockopt(n.router, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    assert_true(strncmp(ep, "tcp://127.0.0.1:", 16) == 0);
    assert_true(atoi(ep + 16) > 0);

    size_t count = 10000;
    uint32_t dim = 8;
    uint64_t *keys = malloc(count * sizeof *keys);
    float *vals = malloc(count * dim * sizeof *vals);
    assert_non_null(keys);
    assert_non_null(vals);
    for (size_t i = 0; i < count; i++)
        keys[i] = 3 * i;
    fill_normal_floats(vals, count * dim, 11);
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PULL);
    h.seq = 31;
    h.count = count;
    psrec_wire_bulk_t kb = {keys, count * sizeof *keys};
    psrec_wire_stats_t st = {0};
    assert_int_equal(psrec_wire_send(n.dealer, NULL, &h, &kb, 1, 1, &st, err), PSREC_OK);
    assert_true(st.wire_bytes < st.raw_bytes);
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    assert_int_equal(psrec_wire_recv(n.router, &r, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_route(&r, DEALER_ID);
    assert_int_equal(m.hdr->frames[0]->codec, PSREC__CODEC__LZ4);
    assert_memory_equal(m.bulk[0], keys, kb.bytes);
    psrec_wire_msg_clear(&m);

    psrec_wire_header_init(&h, PSREC__TYPE__PULL_OK);
    h.seq = 31;
    h.count = count;
    h.dim = dim;
    psrec_wire_bulk_t vb = {vals, count * dim * sizeof *vals};
    assert_int_equal(psrec_wire_send(n.router, &r, &h, &vb, 1, 1, NULL, err), PSREC_OK);
    assert_int_equal(psrec_wire_recv(n.dealer, NULL, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_int_equal(m.hdr->type, PSREC__TYPE__PULL_OK);
    assert_int_equal(m.hdr->frames[0]->codec, PSREC__CODEC__RAW);
    assert_int_equal(m.bulk_bytes[0], vb.bytes);
    assert_memory_equal(m.bulk[0], vals, vb.bytes);
    psrec_wire_msg_clear(&m);

    /* a malformed message over tcp: exact code, then in sync */
    parts_t p = {0};
    Psrec__Header bad;
    psrec_wire_header_init(&bad, PSREC__TYPE__PUSH);
    decl_t d;
    declare(&bad, &d, 1, (uint64_t[]){64}, (int[]){PSREC__CODEC__RAW});
    parts_add_hdr(&p, &bad);
    parts_add(&p, keys, 63);
    send_parts(n.dealer, NULL, &p);
    parts_free(&p);
    assert_int_equal(psrec_wire_recv(n.router, &r, &m, WAIT_MS, NULL, err), PSREC_EPROTO);
    send_probe(n.dealer, NULL, 32);
    recv_probe(n.router, 1, 32);

    free(keys);
    free(vals);
    net_close(&n);
}

/* ---- malformed messages ---------------------------------------------------------------------- */

/* Builds malformed message k into p; returns the expected code, or PSREC_OK past the last case. */
static psrec_err build_bad(int k, parts_t *p, const char **name)
{
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PUSH);
    h.seq = 900 + (uint64_t)k;
    decl_t d;
    unsigned char junk[8192];
    fill_random(junk, sizeof junk, 1000 + (uint64_t)k);
    static const unsigned char zeros[9000];
    char lz[LZ4_COMPRESSBOUND(8192)];
    int lzn = LZ4_compress_default((const char *)zeros, lz, 8192, (int)sizeof lz);
    assert_true(lzn > 0 && lzn < 100);

    switch (k) {
    case 0: { /* garbage header: an 11-byte varint */
        *name = "garbage header";
        unsigned char g[11];
        memset(g, 0xff, sizeof g);
        parts_add(p, g, sizeof g);
        return PSREC_EPROTO;
    }
    case 1: /* garbage header followed by bulk frames, which must be drained */
        *name = "garbage header + 2 frames";
        parts_add(p, (const unsigned char[]){0x0f, 0xff, 0x00, 0x13, 0x37}, 5);
        parts_add(p, junk, 100);
        parts_add(p, junk, 200);
        return PSREC_EPROTO;
    case 2: { /* a valid header cut in the middle of a string */
        *name = "truncated header";
        h.error_text = "a fairly long error text that will be truncated";
        size_t n = psrec__header__get_packed_size(&h);
        unsigned char b[256];
        assert_true(n <= sizeof b);
        psrec__header__pack(&h, b);
        parts_add(p, b, n - 10);
        return PSREC_EPROTO;
    }
    case 3:
        *name = "version 2";
        h.version = 2;
        declare(&h, &d, 1, (uint64_t[]){16}, (int[]){PSREC__CODEC__RAW});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 16);
        return PSREC_EVERSION;
    case 4:
        *name = "empty header part (version 0)";
        parts_add(p, "", 0);
        return PSREC_EVERSION;
    case 5:
        *name = "raw frame declared over PSREC_WIRE_MAX_FRAME_BYTES";
        declare(&h, &d, 1, (uint64_t[]){PSREC_WIRE_MAX_FRAME_BYTES + 1}, (int[]){PSREC__CODEC__RAW});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 8);
        return PSREC_EMSGSIZE;
    case 6:
        *name = "LZ4 frame declared over PSREC_WIRE_MAX_FRAME_BYTES";
        declare(&h, &d, 2, (uint64_t[]){16, UINT64_MAX}, (int[]){PSREC__CODEC__RAW, PSREC__CODEC__LZ4});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 16);
        parts_add(p, lz, (size_t)lzn);
        return PSREC_EMSGSIZE;
    case 7:
        *name = "count over PSREC_WIRE_MAX_KEYS";
        h.count = (uint64_t)PSREC_WIRE_MAX_KEYS + 1;
        declare(&h, &d, 1, (uint64_t[]){8}, (int[]){PSREC__CODEC__RAW});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 8);
        return PSREC_EMSGSIZE;
    case 8:
        *name = "dim over PSREC_WIRE_MAX_DIM";
        h.dim = PSREC_WIRE_MAX_DIM + 1;
        parts_add_hdr(p, &h);
        return PSREC_EMSGSIZE;
    case 9:
        *name = "2 frames declared, 1 sent";
        declare(&h, &d, 2, (uint64_t[]){16, 16}, (int[]){PSREC__CODEC__RAW, PSREC__CODEC__RAW});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 16);
        return PSREC_EPROTO;
    case 10:
        *name = "1 frame declared, none sent";
        declare(&h, &d, 1, (uint64_t[]){0}, (int[]){PSREC__CODEC__RAW});
        parts_add_hdr(p, &h);
        return PSREC_EPROTO;
    case 11:
        *name = "no frame declared, 1 sent";
        parts_add_hdr(p, &h);
        parts_add(p, junk, 16);
        return PSREC_EPROTO;
    case 12:
        *name = "2 frames declared, 3 sent";
        declare(&h, &d, 2, (uint64_t[]){16, 8}, (int[]){PSREC__CODEC__RAW, PSREC__CODEC__RAW});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 16);
        parts_add(p, junk, 8);
        parts_add(p, junk, 8);
        return PSREC_EPROTO;
    case 13:
        *name = "raw frame shorter than declared";
        declare(&h, &d, 1, (uint64_t[]){16}, (int[]){PSREC__CODEC__RAW});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 15);
        return PSREC_EPROTO;
    case 14:
        *name = "raw frame longer than declared";
        declare(&h, &d, 2, (uint64_t[]){16, 16}, (int[]){PSREC__CODEC__RAW, PSREC__CODEC__RAW});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 16);
        parts_add(p, junk, 17);
        return PSREC_EPROTO;
    case 15: {
        *name = "LZ4 frame of garbage";
        char out[4096];
        /* precondition, checked with LZ4 directly: this garbage is not a 4096-byte block */
        assert_true(LZ4_decompress_safe((const char *)junk, out, 300, (int)sizeof out) != (int)sizeof out);
        declare(&h, &d, 1, (uint64_t[]){4096}, (int[]){PSREC__CODEC__LZ4});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 300);
        return PSREC_ECORRUPT;
    }
    case 16:
        *name = "LZ4 frame declared smaller than it decompresses";
        declare(&h, &d, 1, (uint64_t[]){8000}, (int[]){PSREC__CODEC__LZ4});
        parts_add_hdr(p, &h);
        parts_add(p, lz, (size_t)lzn);
        return PSREC_ECORRUPT;
    case 17:
        *name = "LZ4 frame declared larger than it decompresses";
        declare(&h, &d, 1, (uint64_t[]){9000}, (int[]){PSREC__CODEC__LZ4});
        parts_add_hdr(p, &h);
        parts_add(p, lz, (size_t)lzn);
        return PSREC_ECORRUPT;
    case 18:
        *name = "LZ4 frame declaring more than 255x its size";
        declare(&h, &d, 1, (uint64_t[]){(uint64_t)lzn * 255 + 1000}, (int[]){PSREC__CODEC__LZ4});
        parts_add_hdr(p, &h);
        parts_add(p, lz, (size_t)lzn);
        return PSREC_ECORRUPT;
    case 19:
        *name = "a valid frame, then a corrupt LZ4 frame";
        declare(&h, &d, 2, (uint64_t[]){64, 8192}, (int[]){PSREC__CODEC__RAW, PSREC__CODEC__LZ4});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 64);
        lz[lzn / 2] ^= 0x55;
        lz[lzn - 1] ^= 0x55;
        parts_add(p, lz, (size_t)lzn);
        return PSREC_ECORRUPT;
    case 20:
        *name = "unknown codec 2";
        declare(&h, &d, 1, (uint64_t[]){16}, (int[]){2});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 16);
        return PSREC_EPROTO;
    case 21:
        *name = "negative codec";
        declare(&h, &d, 2, (uint64_t[]){16, 16}, (int[]){PSREC__CODEC__RAW, -1});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 16);
        parts_add(p, junk, 16);
        return PSREC_EPROTO;
    case 22:
        *name = "PSREC_WIRE_MAX_BULK + 1 frames declared and sent";
        declare(&h, &d, PSREC_WIRE_MAX_BULK + 1, (uint64_t[]){8, 8, 8, 8, 8, 8, 8, 8}, (int[]){0, 0, 0, 0, 0, 0, 0, 0});
        parts_add_hdr(p, &h);
        for (int i = 0; i < PSREC_WIRE_MAX_BULK + 1; i++)
            parts_add(p, junk, 8);
        return PSREC_EMSGSIZE;
    case 23: { /* a valid protobuf header over the limit */
        *name = "header over PSREC_WIRE_MAX_HEADER";
        char *text = malloc(PSREC_WIRE_MAX_HEADER + 1);
        assert_non_null(text);
        memset(text, 'x', PSREC_WIRE_MAX_HEADER);
        text[PSREC_WIRE_MAX_HEADER] = 0;
        h.error_text = text;
        declare(&h, &d, 1, (uint64_t[]){16}, (int[]){PSREC__CODEC__RAW});
        parts_add_hdr(p, &h);
        free(text);
        parts_add(p, junk, 16);
        return PSREC_EMSGSIZE;
    }
    case 24: { /* garbage over the limit: refused on its size, before decoding */
        *name = "garbage header over PSREC_WIRE_MAX_HEADER";
        unsigned char *g = calloc(1, PSREC_WIRE_MAX_HEADER + 1);
        assert_non_null(g);
        parts_add(p, g, PSREC_WIRE_MAX_HEADER + 1);
        free(g);
        return PSREC_EMSGSIZE;
    }
    case 25:
        *name = "third of three frames missing";
        declare(&h, &d, 3, (uint64_t[]){32, 8192, 8}, (int[]){PSREC__CODEC__RAW, PSREC__CODEC__LZ4, 0});
        parts_add_hdr(p, &h);
        parts_add(p, junk, 32);
        parts_add(p, lz, (size_t)lzn);
        return PSREC_EPROTO;
    case 26:
        *name = "LZ4 frame empty";
        declare(&h, &d, 1, (uint64_t[]){100}, (int[]){PSREC__CODEC__LZ4});
        parts_add_hdr(p, &h);
        parts_add(p, "", 0);
        return PSREC_ECORRUPT;
    default: return PSREC_OK;
    }
}

static void run_bad_cases(net_t *n, int to_router)
{
    char err[PSREC_ERRBUF];
    void *from = to_router ? n->dealer : n->router, *to = to_router ? n->router : n->dealer;
    int ncases = 0;
    for (int k = 0;; k++) {
        parts_t p = {0};
        const char *name = "?";
        psrec_err want = build_bad(k, &p, &name);
        if (want == PSREC_OK) break;
        ncases++;
        /* the garbage headers must really be undecodable, or the case tests nothing */
        if (k <= 2) assert_null(psrec__header__unpack(NULL, p.len[0], p.data[0]));
        send_parts(from, to_router ? NULL : &n->to_dealer, &p);
        parts_free(&p);

        psrec_wire_route_t r;
        psrec_wire_msg_t m;
        psrec_wire_stats_t st = {0};
        memset(&r, 0, sizeof r);
        psrec_err rc = psrec_wire_recv(to, to_router ? &r : NULL, &m, WAIT_MS, &st, err);
        if (rc != want)
            fail_msg("case %d (%s), %s: got %s (%s), want %s", k, name, to_router ? "to router" : "to dealer",
                     psrec_errname(rc), rc ? err : "", psrec_errname(want));
        assert_true(strlen(err) > 0);
        assert_null(m.hdr); /* msg is left empty */
        assert_int_equal(m.nbulk, 0);
        for (int i = 0; i < PSREC_WIRE_MAX_BULK; i++)
            assert_null(m.bulk[i]);
        assert_int_equal(st.msgs, 0);               /* failures are not counted as received messages */
        if (to_router) assert_route(&r, DEALER_ID); /* route filled, so a server can reply */
        /* the socket is still in sync */
        send_probe(from, to_router ? NULL : &n->to_dealer, 5000 + (uint64_t)k);
        recv_probe(to, to_router, 5000 + (uint64_t)k);
    }
    assert_int_equal(ncases, 27);
}

static void test_malformed_to_router(void **state)
{
    run_bad_cases(*state, 1);
}

static void test_malformed_to_dealer(void **state)
{
    run_bad_cases(*state, 0);
}

/* Two malformed messages back to back, then two valid ones: each gets its own result. */
static void test_malformed_back_to_back(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    const char *name;
    parts_t p = {0};
    psrec_err w1 = build_bad(12, &p, &name); /* extra frame */
    send_parts(n->dealer, NULL, &p);
    parts_free(&p);
    psrec_err w2 = build_bad(9, &p, &name); /* missing frame */
    send_parts(n->dealer, NULL, &p);
    parts_free(&p);
    send_probe(n->dealer, NULL, 1);
    send_probe(n->dealer, NULL, 2);
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    assert_int_equal(psrec_wire_recv(n->router, &r, &m, WAIT_MS, NULL, err), w1);
    assert_int_equal(psrec_wire_recv(n->router, &r, &m, WAIT_MS, NULL, err), w2);
    recv_probe(n->router, 1, 1);
    recv_probe(n->router, 1, 2);
    assert_int_equal(psrec_wire_recv(n->router, &r, &m, 0, NULL, err), PSREC_ETIMEDOUT);
}

/* ---- send-side limits ------------------------------------------------------------------------- */

static void test_send_limits(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    uint64_t x[4] = {1, 2, 3, 4};
    psrec_wire_bulk_t b[PSREC_WIRE_MAX_BULK + 1];
    for (int i = 0; i <= PSREC_WIRE_MAX_BULK; i++)
        b[i] = (psrec_wire_bulk_t){x, sizeof x};
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PUSH);
    psrec_wire_stats_t st = {0};
    assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, b, PSREC_WIRE_MAX_BULK + 1, 0, &st, err), PSREC_EMSGSIZE);
    assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, b, -1, 0, &st, err), PSREC_EMSGSIZE);
    /* a frame over the limit is refused from its size alone (the data is never read) */
    psrec_wire_bulk_t huge[2] = {{x, sizeof x}, {x, (size_t)PSREC_WIRE_MAX_FRAME_BYTES + 1}};
    assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, huge, 2, 1, &st, err), PSREC_EMSGSIZE);
    /* a header over the limit */
    char *text = malloc(PSREC_WIRE_MAX_HEADER + 1);
    assert_non_null(text);
    memset(text, 'y', PSREC_WIRE_MAX_HEADER);
    text[PSREC_WIRE_MAX_HEADER] = 0;
    h.error_text = text;
    assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, b, 1, 1, &st, err), PSREC_EMSGSIZE);
    assert_null(h.frames);
    h.error_text = (char *)protobuf_c_empty_string;
    free(text);
    assert_int_equal(st.msgs, 0);
    /* the largest accepted bulk count goes through; nothing of the refused ones arrived before it */
    assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, b, PSREC_WIRE_MAX_BULK, 0, &st, err), PSREC_OK);
    assert_int_equal(st.msgs, 1);
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    assert_int_equal(psrec_wire_recv(n->router, &r, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_int_equal(m.nbulk, PSREC_WIRE_MAX_BULK);
    psrec_wire_msg_clear(&m);
    assert_int_equal(psrec_wire_recv(n->router, &r, &m, 0, NULL, err), PSREC_ETIMEDOUT);
}

/* ---- check_bulk and send_error --------------------------------------------------------------- */

static void test_check_bulk(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    unsigned char a[16] = {0}, c[32] = {0};
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__SET);
    psrec_wire_bulk_t b[2] = {{a, sizeof a}, {c, sizeof c}};
    assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, b, 2, 0, NULL, err), PSREC_OK);
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    assert_int_equal(psrec_wire_recv(n->router, &r, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_int_equal(psrec_wire_check_bulk(&m, 2, (size_t[]){16, 32}, err), PSREC_OK);
    assert_int_equal(psrec_wire_check_bulk(&m, 1, (size_t[]){16}, err), PSREC_EPROTO);
    assert_int_equal(psrec_wire_check_bulk(&m, 3, (size_t[]){16, 32, 0}, err), PSREC_EPROTO);
    assert_int_equal(psrec_wire_check_bulk(&m, 2, (size_t[]){16, 31}, err), PSREC_EPROTO);
    assert_int_equal(psrec_wire_check_bulk(&m, 2, (size_t[]){32, 16}, err), PSREC_EPROTO);
    assert_int_equal(psrec_wire_check_bulk(&m, 0, NULL, err), PSREC_EPROTO);
    psrec_wire_msg_clear(&m);
    /* an empty message */
    assert_int_equal(psrec_wire_check_bulk(&m, 0, NULL, err), PSREC_OK);
    assert_int_equal(psrec_wire_check_bulk(&m, 1, (size_t[]){0}, err), PSREC_EPROTO);
}

static void test_send_error(void **state)
{
    net_t *n = *state;
    char err[PSREC_ERRBUF];
    /* a request arrives; the server answers ERROR to it */
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PULL);
    h.seq = 77;
    h.table = 3;
    h.job_id = 4242;
    assert_int_equal(psrec_wire_send(n->dealer, NULL, &h, NULL, 0, 0, NULL, err), PSREC_OK);
    psrec_wire_route_t r;
    psrec_wire_msg_t req, m;
    assert_int_equal(psrec_wire_recv(n->router, &r, &req, WAIT_MS, NULL, err), PSREC_OK);
    assert_int_equal(psrec_wire_send_error(n->router, &r, req.hdr, PSREC_ESTALE, "wrong server for key 5"), PSREC_OK);
    psrec_wire_msg_clear(&req);
    assert_int_equal(psrec_wire_recv(n->dealer, NULL, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_int_equal(m.hdr->type, PSREC__TYPE__ERROR);
    assert_int_equal(m.hdr->version, PSREC_WIRE_VERSION);
    assert_int_equal(m.hdr->error_code, PSREC_ESTALE);
    assert_string_equal(m.hdr->error_text, "wrong server for key 5");
    assert_int_equal(m.hdr->seq, 77);
    assert_int_equal(m.hdr->table, 3);
    assert_int_equal(m.hdr->job_id, 4242);
    assert_int_equal(m.nbulk, 0);
    psrec_wire_msg_clear(&m);

    /* after a malformed message: no request header, default text */
    parts_t p = {0};
    const char *name;
    psrec_err want = build_bad(3, &p, &name); /* version 2 */
    send_parts(n->dealer, NULL, &p);
    parts_free(&p);
    assert_int_equal(psrec_wire_recv(n->router, &r, &req, WAIT_MS, NULL, err), want);
    assert_int_equal(psrec_wire_send_error(n->router, &r, req.hdr, want, NULL), PSREC_OK);
    assert_int_equal(psrec_wire_recv(n->dealer, NULL, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_int_equal(m.hdr->type, PSREC__TYPE__ERROR);
    assert_int_equal(m.hdr->error_code, PSREC_EVERSION);
    assert_string_equal(m.hdr->error_text, psrec_strerror(PSREC_EVERSION));
    assert_int_equal(m.hdr->seq, 0);
    psrec_wire_msg_clear(&m);

    /* from the dealer side (no route) too */
    assert_int_equal(psrec_wire_send_error(n->dealer, NULL, NULL, PSREC_EREFUSED, "other job"), PSREC_OK);
    assert_int_equal(psrec_wire_recv(n->router, &r, &m, WAIT_MS, NULL, err), PSREC_OK);
    assert_route(&r, DEALER_ID);
    assert_int_equal(m.hdr->error_code, PSREC_EREFUSED);
    assert_string_equal(m.hdr->error_text, "other job");
    psrec_wire_msg_clear(&m);
}

/* ---- slots ----------------------------------------------------------------------------------- */

/* Dense ids 0..n-1 spread over the slots (the point of hashing instead of ranges). */
static void test_slot_spread(void **state)
{
    (void)state;
    enum { N = 1 << 18 };
    static unsigned counts[PSREC_WIRE_NSLOTS];
    memset(counts, 0, sizeof counts);
    for (uint64_t k = 0; k < N; k++) {
        uint32_t s = psrec_wire_slot(k, PSREC_WIRE_NSLOTS);
        assert_true(s < PSREC_WIRE_NSLOTS);
        counts[s]++;
    }
    /* mean 64 per slot (sd 8): bounds at about -6 and +8 sd, loose for any decent 64-bit mix */
    for (int s = 0; s < PSREC_WIRE_NSLOTS; s++) {
        assert_true(counts[s] > 16);
        assert_true(counts[s] < 128);
    }
    /* 4 servers over the first 4 ids' slots: not all on the same one */
    assert_true(psrec_wire_slot(0, 4) != psrec_wire_slot(1, 4) || psrec_wire_slot(1, 4) != psrec_wire_slot(2, 4) ||
                psrec_wire_slot(2, 4) != psrec_wire_slot(3, 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_header_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lz4_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_accumulate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lz4_max_ratio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_alloc_from_declaration, setup, teardown),
        cmocka_unit_test(test_routing),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test_setup_teardown(test_malformed_to_router, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_to_dealer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_back_to_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_bulk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_error, setup, teardown),
        cmocka_unit_test(test_slot_spread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* fuzz_wire.c: libFuzzer target for psrec_wire_recv. Each input is cut into 1..6 ZeroMQ parts that
 * are sent as one message over an inproc DEALER->ROUTER pair (or ROUTER->DEALER) and received with
 * psrec_wire_recv. The only properties checked are the ones every input must keep: no crash (ASan),
 * a result that is OK or one of the malformed-message codes with the message left empty, a decoded
 * message consistent with its header, and a socket still in sync: after every input an ERROR reply
 * and a known-good message must come through intact, otherwise abort().
 *
 * Input format (also written by tests/fuzz_wire_replay.c):
 *   byte 0      bits 0-2: nparts = 1 + (bits % 6); bit 7: direction, 0 = DEALER -> ROUTER (received
 *               with a routing id), 1 = ROUTER -> DEALER (received without one)
 *   then        for each part but the last: a 2-byte little-endian length and that many bytes
 *               (clipped at the end of the input); the last part is the rest of the input.
 * The sockets and context are static and live across runs, as a long-running server's would.
 * Build: cmake -DPSREC_FUZZ=ON with clang (docs/wire.md); tests/fuzz_wire_replay.c drives the same
 * function without libFuzzer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/wire.h"

#define FUZZ_ID "fuzz-dealer"
#define FUZZ_WAIT_MS 10000 /* a deadline for a message already sent; hitting it means lost sync */
#define GOOD_N 512
#define GOOD_DIM 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
psrec_err fuzz_wire_last_rc(void);

static struct {
    int ready;
    void *ctx, *router, *dealer;
    psrec_wire_route_t to_dealer;
    uint64_t keys[GOOD_N];
    float vals[GOOD_N * GOOD_DIM];
    uint64_t seq;
    psrec_err last_rc;
} F;

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c)) {                                                                                                    \
            fprintf(stderr, "fuzz_wire: check failed at line %d: %s\n", __LINE__, #c);                                 \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

psrec_err fuzz_wire_last_rc(void)
{
    return F.last_rc;
}

static void *mksock(int type)
{
    void *s = zmq_socket(F.ctx, type);
    CHECK(s);
    int zero = 0;
    CHECK(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) == 0);
    return s;
}

static void init(void)
{
    char err[PSREC_ERRBUF];
    F.ctx = zmq_ctx_new();
    CHECK(F.ctx);
    F.router = mksock(ZMQ_ROUTER);
    F.dealer = mksock(ZMQ_DEALER);
    CHECK(zmq_setsockopt(F.dealer, ZMQ_ROUTING_ID, FUZZ_ID, strlen(FUZZ_ID)) == 0);
    CHECK(zmq_bind(F.router, "inproc://fuzz-wire") == 0);
    CHECK(zmq_connect(F.dealer, "inproc://fuzz-wire") == 0);
    F.to_dealer.len = strlen(FUZZ_ID);
    memcpy(F.to_dealer.id, FUZZ_ID, F.to_dealer.len);
    /* hello, so that the router knows the dealer before sending to it */
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    CHECK(psrec_wire_send(F.dealer, NULL, &h, NULL, 0, 0, NULL, err) == PSREC_OK);
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    CHECK(psrec_wire_recv(F.router, &r, &m, FUZZ_WAIT_MS, NULL, err) == PSREC_OK);
    psrec_wire_msg_clear(&m);
    /* the known-good message: sequential ids (an LZ4 frame) and pseudo-random floats (a raw frame) */
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 12345, 0);
    for (int i = 0; i < GOOD_N; i++)
        F.keys[i] = 1000 + (uint64_t)i;
    for (int i = 0; i < GOOD_N * GOOD_DIM; i++)
        F.vals[i] = (float)psrec_rng_normal(&rng);
    F.ready = 1;
}

static int is_malformed_code(psrec_err rc)
{
    return rc == PSREC_EPROTO || rc == PSREC_EVERSION || rc == PSREC_EMSGSIZE || rc == PSREC_ECORRUPT;
}

static void check_route(const psrec_wire_route_t *r)
{
    CHECK(r->len == strlen(FUZZ_ID) && memcmp(r->id, FUZZ_ID, r->len) == 0);
}

/* Sends the known-good message one way and checks it arrives intact. */
static void good_roundtrip(void *from, const psrec_wire_route_t *route, void *to, int routed)
{
    char err[PSREC_ERRBUF];
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PUSH);
    h.seq = ++F.seq;
    h.table = 3;
    h.count = GOOD_N;
    h.dim = GOOD_DIM;
    psrec_wire_bulk_t b[2] = {{F.keys, sizeof F.keys}, {F.vals, sizeof F.vals}};
    CHECK(psrec_wire_send(from, route, &h, b, 2, 1, NULL, err) == PSREC_OK);
    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    psrec_err rc = psrec_wire_recv(to, routed ? &r : NULL, &m, FUZZ_WAIT_MS, NULL, err);
    if (rc) fprintf(stderr, "fuzz_wire: known-good message: %s: %s\n", psrec_errname(rc), err);
    CHECK(rc == PSREC_OK);
    if (routed) check_route(&r);
    CHECK(m.hdr->type == PSREC__TYPE__PUSH && m.hdr->seq == F.seq && m.hdr->table == 3);
    CHECK(m.hdr->count == GOOD_N && m.hdr->dim == GOOD_DIM);
    CHECK(m.nbulk == 2 && m.hdr->n_frames == 2);
    CHECK(m.hdr->frames[0]->codec == PSREC__CODEC__LZ4); /* sequential ids compress */
    CHECK(m.bulk_bytes[0] == sizeof F.keys && memcmp(m.bulk[0], F.keys, sizeof F.keys) == 0);
    CHECK(m.bulk_bytes[1] == sizeof F.vals && memcmp(m.bulk[1], F.vals, sizeof F.vals) == 0);
    psrec_wire_msg_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[PSREC_ERRBUF];
    if (!F.ready) init();
    if (size == 0) return 0;
    int nparts = 1 + (data[0] & 7) % 6;
    int to_router = !(data[0] & 0x80);
    const uint8_t *part[6];
    size_t plen[6];
    size_t off = 1;
    for (int i = 0; i < nparts; i++) {
        size_t n = size - off;
        if (i + 1 < nparts) {
            size_t want = 0;
            if (off < size) want = data[off++];
            if (off < size) want |= (size_t)data[off++] << 8;
            n = size - off < want ? size - off : want;
        }
        part[i] = data + off;
        plen[i] = n;
        off += n;
    }

    void *from = to_router ? F.dealer : F.router, *to = to_router ? F.router : F.dealer;
    if (!to_router) CHECK(zmq_send(F.router, F.to_dealer.id, F.to_dealer.len, ZMQ_SNDMORE) == (int)F.to_dealer.len);
    for (int i = 0; i < nparts; i++)
        CHECK(zmq_send(from, part[i], plen[i], i + 1 < nparts ? ZMQ_SNDMORE : 0) == (int)plen[i]);

    psrec_wire_route_t r;
    psrec_wire_msg_t m;
    psrec_wire_stats_t st = {0};
    psrec_err rc = psrec_wire_recv(to, to_router ? &r : NULL, &m, FUZZ_WAIT_MS, &st, err);
    F.last_rc = rc;
    if (to_router) check_route(&r); /* filled on success and on a malformed message */
    if (rc == PSREC_OK) {
        /* the decoded message agrees with its header and with the parts sent */
        CHECK(m.hdr && m.hdr->version == PSREC_WIRE_VERSION);
        CHECK(m.hdr->n_frames <= PSREC_WIRE_MAX_BULK && m.nbulk == (int)m.hdr->n_frames);
        CHECK(m.nbulk == nparts - 1);
        CHECK(m.hdr->count <= PSREC_WIRE_MAX_KEYS && m.hdr->dim <= PSREC_WIRE_MAX_DIM);
        CHECK(plen[0] <= PSREC_WIRE_MAX_HEADER);
        uint64_t raw = 0, sum = 0;
        for (int i = 0; i < m.nbulk; i++) {
            const Psrec__Frame *f = m.hdr->frames[i];
            CHECK(m.bulk[i] && m.bulk_bytes[i] == f->raw_bytes && f->raw_bytes <= PSREC_WIRE_MAX_FRAME_BYTES);
            CHECK(f->codec == PSREC__CODEC__RAW || f->codec == PSREC__CODEC__LZ4);
            if (f->codec == PSREC__CODEC__RAW)
                CHECK(plen[1 + i] == f->raw_bytes && memcmp(m.bulk[i], part[1 + i], plen[1 + i]) == 0);
            const unsigned char *b = m.bulk[i];
            for (size_t j = 0; j < m.bulk_bytes[i]; j++)
                sum += b[j]; /* every byte readable (ASan) */
            raw += f->raw_bytes;
        }
        CHECK(st.msgs == 1 && st.raw_bytes == raw && st.header_bytes == plen[0]);
        (void)sum;
        psrec_wire_msg_clear(&m);
    } else {
        if (!is_malformed_code(rc)) fprintf(stderr, "fuzz_wire: unexpected %s: %s\n", psrec_errname(rc), err);
        CHECK(is_malformed_code(rc));
        CHECK(m.hdr == NULL && m.nbulk == 0 && st.msgs == 0);
        for (int i = 0; i < PSREC_WIRE_MAX_BULK; i++)
            CHECK(m.bulk[i] == NULL);
        /* the receiver answers ERROR, as a server does; the sender gets exactly that */
        CHECK(psrec_wire_send_error(to, to_router ? &r : NULL, NULL, rc, err) == PSREC_OK);
        psrec_wire_msg_t e;
        psrec_wire_route_t er;
        CHECK(psrec_wire_recv(from, to_router ? NULL : &er, &e, FUZZ_WAIT_MS, NULL, err) == PSREC_OK);
        if (!to_router) check_route(&er);
        CHECK(e.hdr->type == PSREC__TYPE__ERROR && e.hdr->error_code == (uint32_t)rc && e.nbulk == 0);
        psrec_wire_msg_clear(&e);
    }
    /* still in sync: a known-good message each way */
    good_roundtrip(F.dealer, NULL, F.router, 1);
    good_roundtrip(F.router, &F.to_dealer, F.dealer, 0);
    return 0;
}

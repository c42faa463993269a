/* fuzz_wire_replay.c: runs the libFuzzer target of tests/fuzz_wire.c without libFuzzer, with any
 * compiler, so CI exercises it on every build (ctest fuzz_wire_replay, a few seconds):
 *   (a) every file of the seed corpus (tests/fuzz-corpus/wire/, or the directory given), then
 *   (b) N inputs (default 20000) generated with a fixed seed: valid messages encoded by the real
 *       sender (psrec_wire_send, captured part by part), and mutations of them: header fields set to
 *       lying values (expected code checked here, from wire.h's rules), parts dropped or added,
 *       byte-level damage (bit flips, insertions, deletions, truncation) and pure noise.
 * The target aborts on a crash or a socket out of sync; this driver additionally checks that valid
 * messages are accepted and that each semantic mutation gets the code wire.h promises.
 *
 *   fuzz_wire_replay [CORPUS_DIR [N]]
 *   fuzz_wire_replay --write-seeds DIR     writes the seed corpus (small files) and exits
 * Seeds named ok_* must be accepted and bad_* refused; other names (libFuzzer's) are only replayed. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
psrec_err fuzz_wire_last_rc(void);

#ifndef PSREC_FUZZ_CORPUS_DIR
#define PSREC_FUZZ_CORPUS_DIR "tests/fuzz-corpus/wire"
#endif

#define MAXP 6
#define MAXIN (1 << 17)

static void die(const char *what)
{
    fprintf(stderr, "fuzz_wire_replay: %s\n", what);
    exit(1);
}

typedef struct {
    unsigned char *data[MAXP + 1];
    size_t len[MAXP + 1];
    int n;
} parts_t;

static void parts_free(parts_t *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->data[i]);
    p->n = 0;
}

static void parts_set(parts_t *p, int i, const void *d, size_t n)
{
    unsigned char *b = malloc(n + 1);
    if (!b) die("out of memory");
    if (n) memcpy(b, d, n);
    if (i < p->n)
        free(p->data[i]);
    else
        p->n = i + 1;
    p->data[i] = b;
    p->len[i] = n;
}

/* The fuzz input format of tests/fuzz_wire.c; returns the size (0 if it does not fit). */
static size_t encode(const parts_t *p, int to_dealer, unsigned char *out, size_t cap)
{
    if (p->n < 1 || p->n > MAXP) return 0;
    size_t o = 0;
    out[o++] = (unsigned char)((p->n - 1) | (to_dealer ? 0x80 : 0));
    for (int i = 0; i < p->n; i++) {
        if (i + 1 < p->n) {
            if (p->len[i] > 0xffff || o + 2 > cap) return 0;
            out[o++] = (unsigned char)(p->len[i] & 0xff);
            out[o++] = (unsigned char)(p->len[i] >> 8);
        }
        if (o + p->len[i] > cap) return 0;
        memcpy(out + o, p->data[i], p->len[i]);
        o += p->len[i];
    }
    return o;
}

/* ---- valid messages, encoded by the real sender -------------------------------------------------- */

typedef struct {
    void *ctx, *a, *b;
} capture_t;

static void capture_open(capture_t *c)
{
    c->ctx = zmq_ctx_new();
    c->a = zmq_socket(c->ctx, ZMQ_PAIR);
    c->b = zmq_socket(c->ctx, ZMQ_PAIR);
    int zero = 0;
    if (!c->a || !c->b || zmq_setsockopt(c->a, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_setsockopt(c->b, ZMQ_LINGER, &zero, sizeof zero) || zmq_bind(c->b, "inproc://replay-capture") ||
        zmq_connect(c->a, "inproc://replay-capture"))
        die("cannot open the capture sockets");
}

static void capture_close(capture_t *c)
{
    zmq_close(c->a);
    zmq_close(c->b);
    zmq_ctx_term(c->ctx);
}

/* Sends h + bulk with psrec_wire_send and reads the parts back as they went on the wire. */
static void capture(capture_t *c, Psrec__Header *h, const psrec_wire_bulk_t *b, int nb, int compress, parts_t *p)
{
    char err[PSREC_ERRBUF];
    if (psrec_wire_send(c->a, NULL, h, b, nb, compress, NULL, err)) die(err);
    p->n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->b, 0) < 0 || p->n > MAXP) die("capture recv");
        parts_set(p, p->n, zmq_msg_data(&m), zmq_msg_size(&m));
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
}

static char *rand_str(psrec_rng_t *r, char *buf, size_t max)
{
    size_t n = (size_t)psrec_rng_below(r, max);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + psrec_rng_below(r, 26));
    buf[n] = 0;
    return buf;
}

/* A random valid message of any type, 0..4 bulk frames of varied content, compressed or not. */
static void gen_valid(psrec_rng_t *r, capture_t *c, parts_t *p)
{
    Psrec__Header h;
    psrec_wire_header_init(&h, (Psrec__Type)(1 + psrec_rng_below(r, PSREC__TYPE__SHUTDOWN_OK)));
    h.role = (Psrec__Role)psrec_rng_below(r, 5);
    h.rank = (uint32_t)psrec_rng_below(r, 64);
    h.epoch = psrec_rng_below(r, 5);
    unsigned shift = (unsigned)psrec_rng_below(r, 64); /* two statements: operand order is unspecified */
    h.seq = psrec_rng_u64(r) >> shift;
    h.table = (uint32_t)psrec_rng_below(r, 4);
    h.job_id = psrec_rng_u64(r);
    char s1[40], s2[40], s3[40];
    if (psrec_rng_below(r, 4) == 0) h.error_text = rand_str(r, s1, sizeof s1);
    if (psrec_rng_below(r, 4) == 0) h.addr = rand_str(r, s2, sizeof s2);
    if (psrec_rng_below(r, 4) == 0) h.barrier_name = rand_str(r, s3, sizeof s3);
    Psrec__ShardMap sm;
    uint32_t slots[8];
    char *addrs[2] = {"tcp://127.0.0.1:5000", "tcp://127.0.0.1:5001"};
    if (psrec_rng_below(r, 8) == 0) {
        psrec__shard_map__init(&sm);
        for (int i = 0; i < 8; i++)
            slots[i] = (uint32_t)psrec_rng_below(r, 2);
        sm.version = 1 + psrec_rng_below(r, 9);
        sm.nslots = 8;
        sm.slot_server = slots;
        sm.n_slot_server = 8;
        sm.server_addr = addrs;
        sm.n_server_addr = 2;
        h.shard_map = &sm;
    }
    Psrec__TableConf tc, *tcp = &tc;
    if (psrec_rng_below(r, 8) == 0) {
        psrec__table_conf__init(&tc);
        tc.table = 1;
        tc.dim = 32;
        tc.lr = 0.05f;
        h.tables = &tcp;
        h.n_tables = 1;
    }
    static unsigned char buf[PSREC_WIRE_MAX_BULK][9216];
    psrec_wire_bulk_t b[PSREC_WIRE_MAX_BULK];
    int nb = (int)psrec_rng_below(r, PSREC_WIRE_MAX_BULK + 1);
    for (int i = 0; i < nb; i++) {
        size_t n;
        switch (psrec_rng_below(r, 4)) {
        case 0: /* zero rows */
            n = (size_t)psrec_rng_below(r, 9000);
            memset(buf[i], 0, n);
            break;
        case 1: { /* sequential ids */
            size_t k = (size_t)psrec_rng_below(r, 1100);
            uint64_t base = psrec_rng_u64(r) >> 8;
            for (size_t j = 0; j < k; j++) {
                uint64_t v = base + j;
                memcpy(buf[i] + 8 * j, &v, 8);
            }
            n = 8 * k;
            break;
        }
        case 2: { /* dense floats */
            size_t k = (size_t)psrec_rng_below(r, 2200);
            for (size_t j = 0; j < k; j++) {
                float v = (float)psrec_rng_normal(r);
                memcpy(buf[i] + 4 * j, &v, 4);
            }
            n = 4 * k;
            break;
        }
        default: /* a few random bytes */
            n = (size_t)psrec_rng_below(r, 65);
            for (size_t j = 0; j < n; j++)
                buf[i][j] = (unsigned char)psrec_rng_u64(r);
            break;
        }
        b[i] = (psrec_wire_bulk_t){buf[i], n};
    }
    if (nb) {
        h.count = b[0].bytes / 8;
        h.dim = (uint32_t)psrec_rng_below(r, 129);
    }
    capture(c, &h, b, nb, (int)psrec_rng_below(r, 2), p);
}

/* ---- semantic mutations with the code wire.h promises ------------------------------------------- */

/* Repacks part 0 from h. */
static void set_header(parts_t *p, const Psrec__Header *h)
{
    size_t n = psrec__header__get_packed_size(h);
    unsigned char *b = malloc(n + 1);
    if (!b) die("out of memory");
    psrec__header__pack(h, b);
    parts_set(p, 0, b, n);
    free(b);
}

/* Applies one lying change to the valid message p; returns the expected code (PSREC_OK: none applied). */
static psrec_err mutate_semantic(psrec_rng_t *r, parts_t *p)
{
    Psrec__Header *h = psrec__header__unpack(NULL, p->len[0], p->data[0]);
    if (!h) die("captured header does not decode");
    int nb = (int)h->n_frames;
    Psrec__Frame fr[PSREC_WIRE_MAX_BULK + 1], *frp[PSREC_WIRE_MAX_BULK + 1];
    for (int i = 0; i < nb; i++) {
        fr[i] = *h->frames[i];
        frp[i] = &fr[i];
    }
    Psrec__Frame **orig = h->frames;
    size_t orig_n = h->n_frames;
    h->frames = frp;
    psrec_err want = PSREC_OK;
    int i = nb ? (int)psrec_rng_below(r, (uint64_t)nb) : 0;
    switch (psrec_rng_below(r, 10)) {
    case 0: /* another version */
        h->version = psrec_rng_below(r, 2) ? 0 : 2 + (uint32_t)psrec_rng_below(r, 1000);
        want = PSREC_EVERSION;
        break;
    case 1: /* more frames declared than the limit, and sent */
        if (nb != PSREC_WIRE_MAX_BULK) break;
        psrec__frame__init(&fr[nb]);
        frp[nb] = &fr[nb];
        h->n_frames = (size_t)nb + 1;
        parts_set(p, nb + 1, "", 0);
        want = PSREC_EMSGSIZE;
        break;
    case 2: /* a raw frame declared one byte longer or shorter */
        if (!nb || fr[i].codec != PSREC__CODEC__RAW) break;
        if (fr[i].raw_bytes && psrec_rng_below(r, 2))
            fr[i].raw_bytes--;
        else
            fr[i].raw_bytes++;
        want = PSREC_EPROTO;
        break;
    case 3: /* an LZ4 frame declared one byte longer or shorter */
        if (!nb || fr[i].codec != PSREC__CODEC__LZ4) break;
        if (psrec_rng_below(r, 2))
            fr[i].raw_bytes--;
        else
            fr[i].raw_bytes++;
        want = PSREC_ECORRUPT;
        break;
    case 4: /* unknown codec */
        if (!nb) break;
        fr[i].codec = (Psrec__Codec)(2 + psrec_rng_below(r, 1000));
        want = PSREC_EPROTO;
        break;
    case 5: /* a frame over the size limit */
        if (!nb) break;
        fr[i].raw_bytes = PSREC_WIRE_MAX_FRAME_BYTES + 1 + psrec_rng_below(r, 1u << 30);
        want = PSREC_EMSGSIZE;
        break;
    case 6: /* count or dim over its limit */
        if (psrec_rng_below(r, 2))
            h->count = (uint64_t)PSREC_WIRE_MAX_KEYS + 1 + psrec_rng_below(r, 1000);
        else
            h->dim = PSREC_WIRE_MAX_DIM + 1 + (uint32_t)psrec_rng_below(r, 1000);
        want = PSREC_EMSGSIZE;
        break;
    case 7: /* the last bulk frame not sent */
        if (!nb) break;
        free(p->data[--p->n]);
        want = PSREC_EPROTO;
        break;
    case 8: /* an extra part */
        if (p->n >= MAXP) break;
        parts_set(p, p->n, "extra", psrec_rng_below(r, 6));
        want = PSREC_EPROTO;
        break;
    default: /* one frame declaration fewer (its part still sent) */
        if (!nb) break;
        h->n_frames--;
        want = PSREC_EPROTO;
        break;
    }
    if (want != PSREC_OK) set_header(p, h);
    h->frames = orig;
    h->n_frames = orig_n;
    psrec__header__free_unpacked(h, NULL);
    return want;
}

/* ---- byte-level damage -------------------------------------------------------------------------- */

static size_t mutate_bytes(psrec_rng_t *r, unsigned char *in, size_t n, size_t cap)
{
    int ops = 1 + (int)psrec_rng_below(r, 8);
    for (int k = 0; k < ops; k++) {
        size_t at = n ? (size_t)psrec_rng_below(r, n) : 0;
        switch (psrec_rng_below(r, 6)) {
        case 0:
            if (n) in[at] ^= (unsigned char)(1u << psrec_rng_below(r, 8));
            break;
        case 1:
            if (n) in[at] = (unsigned char)psrec_rng_u64(r);
            break;
        case 2: /* insert a byte */
            if (n < cap) {
                memmove(in + at + 1, in + at, n - at);
                in[at] = (unsigned char)psrec_rng_u64(r);
                n++;
            }
            break;
        case 3: /* delete a run */
            if (n) {
                size_t len = 1 + (size_t)psrec_rng_below(r, 16);
                if (len > n - at) len = n - at;
                memmove(in + at, in + at + len, n - at - len);
                n -= len;
            }
            break;
        case 4: /* truncate */ n = at; break;
        default: /* interesting values: 0x00, 0xff, 0x7f, 0x80 */
            if (n) in[at] = (unsigned char[]){0x00, 0xff, 0x7f, 0x80}[psrec_rng_below(r, 4)];
            break;
        }
    }
    return n;
}

/* ---- the seed corpus ---------------------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const unsigned char *d, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n || fclose(f)) die(path);
    printf("%s: %zu bytes\n", path, n);
}

static void seed(capture_t *c, const char *dir, const char *name, Psrec__Header *h, const psrec_wire_bulk_t *b, int nb,
                 int compress, int to_dealer)
{
    parts_t p = {0};
    capture(c, h, b, nb, compress, &p);
    static unsigned char out[MAXIN];
    size_t n = encode(&p, to_dealer, out, sizeof out);
    if (!n) die("seed does not fit");
    write_file(dir, name, out, n);
    parts_free(&p);
}

static int write_seeds(const char *dir)
{
    capture_t c;
    capture_open(&c);
    Psrec__Header h;
    uint64_t keys[8] = {3, 17, 42, 1000, 1001, 77777, 1ull << 40, UINT64_MAX};
    static float zeros[8 * 128];
    float vals[4 * 8];
    for (int i = 0; i < 32; i++)
        vals[i] = 0.125f * (float)(i - 16);

    psrec_wire_header_init(&h, PSREC__TYPE__PULL);
    h.seq = 1;
    h.table = 1;
    h.count = 8;
    seed(&c, dir, "ok_pull", &h, (psrec_wire_bulk_t[]){{keys, sizeof keys}}, 1, 1, 0);

    psrec_wire_header_init(&h, PSREC__TYPE__PULL_OK);
    h.seq = 1;
    h.count = 4;
    h.dim = 8;
    seed(&c, dir, "ok_pull_ok_to_dealer", &h, (psrec_wire_bulk_t[]){{vals, sizeof vals}}, 1, 1, 1);

    psrec_wire_header_init(&h, PSREC__TYPE__PUSH); /* 4 KiB of zero gradients: an LZ4 frame */
    h.seq = 2;
    h.count = 8;
    h.dim = 128;
    seed(&c, dir, "ok_push_lz4", &h, (psrec_wire_bulk_t[]){{keys, sizeof keys}, {zeros, sizeof zeros}}, 2, 1, 0);

    psrec_wire_header_init(&h, PSREC__TYPE__DUMP_OK);
    h.cursor = 9;
    h.count = 0;
    seed(&c, dir, "ok_dump_ok_empty", &h, (psrec_wire_bulk_t[]){{NULL, 0}, {NULL, 0}}, 2, 1, 1);

    psrec_wire_header_init(&h, PSREC__TYPE__SET);
    seed(&c, dir, "ok_four_frames", &h,
         (psrec_wire_bulk_t[]){{keys, 8}, {keys, 16}, {vals, 12}, {zeros, PSREC_WIRE_LZ4_MIN}}, 4, 1, 0);

    psrec_wire_header_init(&h, PSREC__TYPE__ERROR);
    h.seq = 5;
    h.error_code = PSREC_ESTALE;
    h.error_text = "wrong server for key 42";
    seed(&c, dir, "ok_error", &h, NULL, 0, 0, 1);

    psrec_wire_header_init(&h, PSREC__TYPE__REGISTER_OK);
    Psrec__ShardMap sm;
    psrec__shard_map__init(&sm);
    uint32_t slots[8] = {0, 1, 0, 1, 1, 0, 0, 1};
    char *addrs[2] = {"tcp://10.0.0.1:5000", "tcp://10.0.0.2:5000"};
    sm.version = 3;
    sm.nslots = 8;
    sm.slot_server = slots;
    sm.n_slot_server = 8;
    sm.server_addr = addrs;
    sm.n_server_addr = 2;
    h.shard_map = &sm;
    Psrec__TableConf tc, *tcp = &tc;
    psrec__table_conf__init(&tc);
    tc.table = 1;
    tc.dim = 64;
    tc.lr = 0.05f;
    h.tables = &tcp;
    h.n_tables = 1;
    h.rank = 1;
    h.epoch = 2;
    seed(&c, dir, "ok_register_ok", &h, NULL, 0, 0, 1);

    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    h.role = PSREC__ROLE__WORKER;
    h.examples = 123456;
    h.loss = 2.5;
    seed(&c, dir, "ok_heartbeat", &h, NULL, 0, 0, 0);

    /* malformed on purpose, one seed per check of psrec_wire_recv, so the fuzzer starts on each side of
     * every branch */
    static const char *lies[] = {
        "bad_version", "bad_missing_frame",    "bad_extra_frame",      "bad_raw_size",       "bad_lz4_size",
        "bad_codec",   "bad_frame_over_limit", "bad_count_over_limit", "bad_dim_over_limit", "bad_too_many_frames"};
    for (int k = 0; k < (int)(sizeof lies / sizeof *lies); k++) {
        parts_t p = {0};
        psrec_wire_header_init(&h, PSREC__TYPE__PUSH);
        h.count = 8;
        h.dim = 128;
        capture(&c, &h, (psrec_wire_bulk_t[]){{keys, sizeof keys}, {zeros, sizeof zeros}}, 2, 1, &p);
        Psrec__Header *l = psrec__header__unpack(NULL, p.len[0], p.data[0]);
        if (!l || l->n_frames != 2 || l->frames[1]->codec != PSREC__CODEC__LZ4) die("expected RAW + LZ4 frames");
        Psrec__Frame extra[3], *fr[5] = {l->frames[0], l->frames[1], &extra[0], &extra[1], &extra[2]};
        Psrec__Frame **orig = l->frames;
        switch (k) {
        case 0: l->version = 2; break;
        case 1: free(p.data[--p.n]); break;
        case 2: parts_set(&p, p.n, "x", 1); break;
        case 3: l->frames[0]->raw_bytes += 8; break;
        case 4: l->frames[1]->raw_bytes += 1; break;
        case 5: l->frames[0]->codec = (Psrec__Codec)7; break;
        case 6: l->frames[1]->raw_bytes = PSREC_WIRE_MAX_FRAME_BYTES + 1; break;
        case 7: l->count = (uint64_t)PSREC_WIRE_MAX_KEYS + 1; break;
        case 8: l->dim = PSREC_WIRE_MAX_DIM + 1; break;
        default:
            for (int i = 0; i < 3; i++) {
                psrec__frame__init(&extra[i]);
                parts_set(&p, p.n, "", 0);
            }
            l->frames = fr;
            l->n_frames = 5;
            break;
        }
        set_header(&p, l);
        l->frames = orig;
        l->n_frames = 2;
        psrec__header__free_unpacked(l, NULL);
        static unsigned char out[MAXIN];
        size_t n = encode(&p, k & 1, out, sizeof out);
        if (!n) die("seed does not fit");
        write_file(dir, lies[k], out, n);
        parts_free(&p);
    }

    capture_close(&c);
    return 0;
}

/* ---- main --------------------------------------------------------------------------------------- */

static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fuzz_wire_replay: %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    static unsigned char buf[1 << 20];
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) die(path);
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        /* seeds named ok_* are valid messages, bad_* are malformed ones (--write-seeds) */
        psrec_err rc = fuzz_wire_last_rc();
        if ((strncmp(e->d_name, "ok_", 3) == 0 && rc != PSREC_OK) ||
            (strncmp(e->d_name, "bad_", 4) == 0 && rc == PSREC_OK)) {
            fprintf(stderr, "fuzz_wire_replay: %s: %s\n", path, psrec_errname(rc));
            exit(1);
        }
        files++;
    }
    closedir(d);
    return files;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) return write_seeds(argv[2]);
    const char *dir = argc > 1 ? argv[1] : PSREC_FUZZ_CORPUS_DIR;
    long total = argc > 2 ? atol(argv[2]) : 20000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    int files = replay_dir(dir);
    if (files == 0) die("empty seed corpus");

    capture_t c;
    capture_open(&c);
    psrec_rng_t r;
    psrec_rng_seed(&r, 20240611, 0);
    static unsigned char in[MAXIN];
    long by_rc[PSREC_ERR_COUNT] = {0}, valid = 0, semantic = 0;
    for (long it = 0; it < total; it++) {
        parts_t p = {0};
        int to_dealer = (int)psrec_rng_below(&r, 2);
        unsigned kind = (unsigned)psrec_rng_below(&r, 10);
        size_t n;
        psrec_err want = PSREC_ERR_COUNT; /* unknown */
        if (kind == 0) {                  /* pure noise */
            n = (size_t)psrec_rng_below(&r, 400);
            for (size_t j = 0; j < n; j++)
                in[j] = (unsigned char)psrec_rng_u64(&r);
        } else {
            gen_valid(&r, &c, &p);
            if (kind <= 2) {
                want = PSREC_OK;
            } else if (kind <= 6) {
                want = mutate_semantic(&r, &p);
            }
            n = encode(&p, to_dealer, in, sizeof in);
            if (!n) die("generated input does not fit");
            if (kind >= 7) n = mutate_bytes(&r, in, n, sizeof in);
            parts_free(&p);
        }
        LLVMFuzzerTestOneInput(in, n);
        psrec_err got = fuzz_wire_last_rc();
        by_rc[got]++;
        if (want != PSREC_ERR_COUNT) {
            if (want == PSREC_OK)
                valid++;
            else
                semantic++;
            if (got != want) {
                fprintf(stderr, "fuzz_wire_replay: input %ld (kind %u): got %s, want %s\n", it, kind,
                        psrec_errname(got), psrec_errname(want));
                return 1;
            }
        }
    }
    capture_close(&c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("fuzz_wire_replay: %d corpus files, %ld generated inputs (%ld valid, %ld with a lying header or "
           "parts, checked), %.2f s\n",
           files, total, valid, semantic, s);
    for (int k = 0; k < PSREC_ERR_COUNT; k++)
        if (by_rc[k]) printf("  %-16s %ld\n", psrec_errname((psrec_err)k), by_rc[k]);
    return 0;
}

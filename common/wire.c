/* wire.c: encode/decode of psrec messages over ZeroMQ (see wire.h). Design: the protobuf header is
 * small and carries declarations; bulk frames are raw arrays, optionally LZ4 blocks, checked against
 * the declarations and the limits before any allocation sized by the peer. A malformed message is
 * drained completely so the socket stays in sync, and reported with a code the server turns into an
 * ERROR reply. Injected faults (common/faults.h, PSREC_FAULTS) act in psrec_wire_send, after the
 * frames are built: drop, send twice, or delay. Thread model: stateless; one thread per socket. */
#include "common/wire.h"

#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/faults.h"

void psrec_wire_header_init(Psrec__Header *h, Psrec__Type type)
{
    psrec__header__init(h);
    h->version = PSREC_WIRE_VERSION;
    h->type = type;
}

static psrec_err zerr(char *err, const char *what)
{
    int e = zmq_errno();
    if (e == EAGAIN) return psrec_fail(err, PSREC_ETIMEDOUT, "%s: timed out", what);
    return psrec_fail(err, PSREC_EIO, "%s: %s", what, zmq_strerror(e));
}

static psrec_err send_part(void *sock, const void *p, size_t n, int more, char *err)
{
    if (zmq_send(sock, p, n, more ? ZMQ_SNDMORE : 0) < 0) return zerr(err, "zmq send");
    return PSREC_OK;
}

/* How many times an injected fault lets this message go out: 0 (dropped), 1 (maybe after a pause) or
 * 2 (duplicated). Only reached with PSREC_FAULTS set. */
static int fault_copies(const psrec_faults_t *f)
{
    switch (psrec_faults_on_send(f)) {
    case PSREC_FAULT_DROP: return 0;
    case PSREC_FAULT_DUP: return 2;
    case PSREC_FAULT_DELAY: {
        struct timespec ts = {.tv_sec = f->delay_ms / 1000, .tv_nsec = (long)(f->delay_ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        return 1;
    }
    default: return 1;
    }
}

psrec_err psrec_wire_send(void *sock, const psrec_wire_route_t *route, Psrec__Header *hdr,
                          const psrec_wire_bulk_t *bulk, int nbulk, int compress, psrec_wire_stats_t *st, char *err)
{
    if (nbulk < 0 || nbulk > PSREC_WIRE_MAX_BULK)
        return psrec_fail(err, PSREC_EMSGSIZE, "too many bulk frames (%d)", nbulk);
    Psrec__Frame fr[PSREC_WIRE_MAX_BULK];
    Psrec__Frame *frp[PSREC_WIRE_MAX_BULK];
    void *comp[PSREC_WIRE_MAX_BULK] = {0};
    size_t comp_len[PSREC_WIRE_MAX_BULK] = {0};
    psrec_err rc = PSREC_OK;
    for (int i = 0; i < nbulk; i++) {
        psrec__frame__init(&fr[i]);
        frp[i] = &fr[i];
        fr[i].raw_bytes = bulk[i].bytes;
        if (bulk[i].bytes > PSREC_WIRE_MAX_FRAME_BYTES || bulk[i].bytes > (size_t)LZ4_MAX_INPUT_SIZE) {
            if (bulk[i].bytes > PSREC_WIRE_MAX_FRAME_BYTES) {
                rc = psrec_fail(err, PSREC_EMSGSIZE, "bulk frame of %zu bytes exceeds the limit", bulk[i].bytes);
                goto out;
            }
            continue; /* too big for one LZ4 block: sent raw */
        }
        if (compress && bulk[i].bytes >= PSREC_WIRE_LZ4_MIN) {
            int bound = LZ4_compressBound((int)bulk[i].bytes);
            comp[i] = malloc((size_t)bound);
            if (!comp[i]) {
                rc = psrec_fail(err, PSREC_ENOMEM, "out of memory compressing a frame");
                goto out;
            }
            int n = LZ4_compress_default(bulk[i].data, comp[i], (int)bulk[i].bytes, bound);
            if (n > 0 && (size_t)n < bulk[i].bytes - bulk[i].bytes / 16) { /* keep only a real gain */
                comp_len[i] = (size_t)n;
                fr[i].codec = PSREC__CODEC__LZ4;
            } else {
                free(comp[i]);
                comp[i] = NULL;
            }
        }
    }
    Psrec__Frame **saved = hdr->frames;
    size_t saved_n = hdr->n_frames;
    hdr->version = PSREC_WIRE_VERSION;
    hdr->frames = frp;
    hdr->n_frames = (size_t)nbulk;
    size_t hlen = psrec__header__get_packed_size(hdr);
    unsigned char stackbuf[512], *hb = hlen <= sizeof stackbuf ? stackbuf : malloc(hlen);
    if (!hb) {
        rc = psrec_fail(err, PSREC_ENOMEM, "out of memory packing a header");
    } else if (hlen > PSREC_WIRE_MAX_HEADER) {
        rc = psrec_fail(err, PSREC_EMSGSIZE, "header of %zu bytes exceeds the limit", hlen);
    } else {
        psrec__header__pack(hdr, hb);
    }
    hdr->frames = saved;
    hdr->n_frames = saved_n;
    /* Fault injection (common/faults.h): off unless PSREC_FAULTS is set, then this message may be
     * dropped (reported as sent), sent twice (the same frames again) or sent after a pause. */
    int copies = 1;
    const psrec_faults_t *faults = psrec_faults();
    if (__builtin_expect(faults->enabled, 0) && !rc) copies = fault_copies(faults);
    for (int c = 0; !rc && c < copies; c++) {
        if (route) rc = send_part(sock, route->id, route->len, 1, err);
        if (!rc) rc = send_part(sock, hb, hlen, nbulk > 0, err);
        for (int i = 0; !rc && i < nbulk; i++)
            rc = send_part(sock, comp[i] ? comp[i] : bulk[i].data, comp[i] ? comp_len[i] : bulk[i].bytes, i + 1 < nbulk,
                           err);
    }
    if (!rc && st) { /* one message as the caller sees it, whatever the injected faults did */
        st->msgs++;
        st->header_bytes += hlen;
        for (int i = 0; i < nbulk; i++) {
            st->raw_bytes += bulk[i].bytes;
            st->wire_bytes += comp[i] ? comp_len[i] : bulk[i].bytes;
        }
    }
    if (hb && hb != stackbuf) free(hb);
out:
    for (int i = 0; i < nbulk; i++)
        free(comp[i]);
    return rc;
}

void psrec_wire_msg_clear(psrec_wire_msg_t *m)
{
    if (m->hdr) psrec__header__free_unpacked(m->hdr, NULL);
    for (int i = 0; i < m->nbulk; i++)
        free(m->bulk[i]);
    memset(m, 0, sizeof *m);
}

/* Reads and drops the remaining parts of a multipart message. */
static void drain(void *sock)
{
    int more = 0;
    size_t len = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len) == 0 && more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            return;
        }
        zmq_msg_close(&part);
        len = sizeof more;
    }
}

static int has_more(void *sock)
{
    int more = 0;
    size_t len = sizeof more;
    return zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len) == 0 && more;
}

psrec_err psrec_wire_recv(void *sock, psrec_wire_route_t *route, psrec_wire_msg_t *m, int timeout_ms,
                          psrec_wire_stats_t *st, char *err)
{
    return psrec_wire_recv_limit(sock, route, m, timeout_ms, PSREC_WIRE_MAX_FRAME_BYTES, st, err);
}

psrec_err psrec_wire_recv_limit(void *sock, psrec_wire_route_t *route, psrec_wire_msg_t *m, int timeout_ms,
                                uint64_t max_frame_bytes, psrec_wire_stats_t *st, char *err)
{
    if (max_frame_bytes > PSREC_WIRE_MAX_FRAME_BYTES) max_frame_bytes = PSREC_WIRE_MAX_FRAME_BYTES;
    memset(m, 0, sizeof *m);
    if (route) route->len = 0;
    if (timeout_ms >= 0) {
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        int r = zmq_poll(&it, 1, timeout_ms);
        if (r < 0) return zerr(err, "zmq poll");
        if (r == 0) return psrec_fail(err, PSREC_ETIMEDOUT, "no message within %d ms", timeout_ms);
    }
    zmq_msg_t part;
    zmq_msg_init(&part);
    psrec_err rc = PSREC_OK;
    if (route) {
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            return zerr(err, "zmq recv");
        }
        size_t n = zmq_msg_size(&part);
        if (n > PSREC_WIRE_MAX_ROUTE || !has_more(sock)) {
            zmq_msg_close(&part);
            drain(sock);
            return psrec_fail(err, PSREC_EPROTO, "bad routing frame");
        }
        memcpy(route->id, zmq_msg_data(&part), n);
        route->len = n;
    }
    if (zmq_msg_recv(&part, sock, 0) < 0) {
        zmq_msg_close(&part);
        return zerr(err, "zmq recv");
    }
    size_t hlen = zmq_msg_size(&part);
    size_t wire_bulk = 0;
    if (hlen > PSREC_WIRE_MAX_HEADER) {
        rc = psrec_fail(err, PSREC_EMSGSIZE, "header of %zu bytes exceeds the limit", hlen);
    } else {
        m->hdr = psrec__header__unpack(NULL, hlen, zmq_msg_data(&part));
        if (!m->hdr) rc = psrec_fail(err, PSREC_EPROTO, "undecodable header (%zu bytes)", hlen);
    }
    if (!rc && m->hdr->version != PSREC_WIRE_VERSION)
        rc = psrec_fail(err, PSREC_EVERSION, "wire version %u, this build speaks %u", m->hdr->version,
                        PSREC_WIRE_VERSION);
    if (!rc && m->hdr->n_frames > PSREC_WIRE_MAX_BULK)
        rc = psrec_fail(err, PSREC_EMSGSIZE, "%zu bulk frames declared (limit %d)", m->hdr->n_frames,
                        PSREC_WIRE_MAX_BULK);
    if (!rc && (m->hdr->count > PSREC_WIRE_MAX_KEYS || m->hdr->dim > PSREC_WIRE_MAX_DIM))
        rc = psrec_fail(err, PSREC_EMSGSIZE, "declared count %llu or dim %u exceeds the limits",
                        (unsigned long long)m->hdr->count, m->hdr->dim);
    for (size_t i = 0; !rc && i < m->hdr->n_frames; i++) {
        const Psrec__Frame *f = m->hdr->frames[i];
        if (f->raw_bytes > max_frame_bytes) {
            rc = psrec_fail(err, PSREC_EMSGSIZE, "frame %zu declares %llu bytes (limit %llu)", i,
                            (unsigned long long)f->raw_bytes, (unsigned long long)max_frame_bytes);
            break;
        }
        if (f->codec != PSREC__CODEC__RAW && f->codec != PSREC__CODEC__LZ4) {
            rc = psrec_fail(err, PSREC_EPROTO, "frame %zu: unknown codec %d", i, (int)f->codec);
            break;
        }
        if (!has_more(sock)) {
            rc = psrec_fail(err, PSREC_EPROTO, "%zu bulk frames declared, %zu received", m->hdr->n_frames, i);
            break;
        }
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            rc = zerr(err, "zmq recv");
            break;
        }
        size_t n = zmq_msg_size(&part);
        wire_bulk += n;
        /* The received size is checked against the declaration BEFORE the declared size is allocated:
         * otherwise a 12-byte message declaring a 1 GiB frame costs a 1 GiB allocation (found by
         * tests/fuzz_wire.c with -malloc_limit_mb). A raw frame must match exactly; an LZ4 block expands
         * at most 255x (each input byte yields at most 255 output bytes), so a declaration beyond that
         * cannot be honest. */
        if (f->codec == PSREC__CODEC__RAW && n != f->raw_bytes) {
            rc = psrec_fail(err, PSREC_EPROTO, "frame %zu: %zu bytes received, %llu declared", i, n,
                            (unsigned long long)f->raw_bytes);
            break;
        }
        if (f->codec == PSREC__CODEC__LZ4) {
            if (n > (size_t)LZ4_MAX_INPUT_SIZE || f->raw_bytes > (uint64_t)LZ4_MAX_INPUT_SIZE) {
                rc = psrec_fail(err, PSREC_EMSGSIZE, "frame %zu: LZ4 block too large", i);
                break;
            }
            if (f->raw_bytes / 255 > n) {
                rc = psrec_fail(err, PSREC_ECORRUPT, "frame %zu: %zu LZ4 bytes cannot decompress to %llu bytes", i, n,
                                (unsigned long long)f->raw_bytes);
                break;
            }
        }
        /* 16 spare bytes: 16-byte alignment of malloc and a non-NULL buffer for empty frames */
        void *buf = malloc((size_t)f->raw_bytes + 16);
        if (!buf) {
            rc = psrec_fail(err, PSREC_ENOMEM, "cannot allocate a %llu-byte frame", (unsigned long long)f->raw_bytes);
            break;
        }
        m->bulk[m->nbulk] = buf;
        m->bulk_bytes[m->nbulk] = (size_t)f->raw_bytes;
        m->nbulk++;
        if (f->codec == PSREC__CODEC__RAW) {
            memcpy(buf, zmq_msg_data(&part), n);
        } else {
            int r = LZ4_decompress_safe(zmq_msg_data(&part), buf, (int)n, (int)f->raw_bytes);
            if (r < 0 || (uint64_t)r != f->raw_bytes) {
                rc = psrec_fail(err, PSREC_ECORRUPT, "frame %zu: LZ4 data does not decompress to %llu bytes", i,
                                (unsigned long long)f->raw_bytes);
                break;
            }
        }
    }
    if (!rc && has_more(sock)) rc = psrec_fail(err, PSREC_EPROTO, "more frames than declared");
    zmq_msg_close(&part);
    if (rc) {
        drain(sock);
        int has = m->hdr != NULL;
        uint64_t seq = has ? m->hdr->seq : 0, job = has ? m->hdr->job_id : 0;
        psrec_wire_msg_clear(m);
        m->rejected_has_seq = has;
        m->rejected_seq = seq;
        m->rejected_job_id = job;
        return rc;
    }
    if (st) {
        st->msgs++;
        st->header_bytes += hlen;
        st->wire_bytes += wire_bulk;
        for (int i = 0; i < m->nbulk; i++)
            st->raw_bytes += m->bulk_bytes[i];
    }
    return PSREC_OK;
}

psrec_err psrec_wire_check_bulk(const psrec_wire_msg_t *m, int nbulk, const size_t *bytes, char *err)
{
    if (m->nbulk != nbulk) return psrec_fail(err, PSREC_EPROTO, "%d bulk frames, expected %d", m->nbulk, nbulk);
    for (int i = 0; i < nbulk; i++)
        if (m->bulk_bytes[i] != bytes[i])
            return psrec_fail(err, PSREC_EPROTO, "bulk frame %d has %zu bytes, expected %zu", i, m->bulk_bytes[i],
                              bytes[i]);
    return PSREC_OK;
}

psrec_err psrec_wire_send_error(void *sock, const psrec_wire_route_t *route, const Psrec__Header *req, psrec_err code,
                                const char *text)
{
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__ERROR);
    if (req) {
        h.seq = req->seq;
        h.table = req->table;
        h.job_id = req->job_id;
    }
    h.error_code = (uint32_t)code;
    h.error_text = (char *)(text ? text : psrec_strerror(code));
    char err[PSREC_ERRBUF];
    return psrec_wire_send(sock, route, &h, NULL, 0, 0, NULL, err);
}

psrec_err psrec_wire_send_reject(void *sock, const psrec_wire_route_t *route, const psrec_wire_msg_t *rejected,
                                 psrec_err code, const char *text)
{
    if (!rejected || !rejected->rejected_has_seq) return psrec_wire_send_error(sock, route, NULL, code, text);
    Psrec__Header req;
    psrec_wire_header_init(&req, PSREC__TYPE__TYPE_UNSPECIFIED);
    req.seq = rejected->rejected_seq;
    req.job_id = rejected->rejected_job_id;
    return psrec_wire_send_error(sock, route, &req, code, text);
}

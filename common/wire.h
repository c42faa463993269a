/* wire.h: psrec's ZeroMQ message framing. A message is
 *     [routing id, ROUTER side only] [protobuf Psrec__Header] [bulk frame 0] [bulk frame 1] ...
 * The header declares every bulk frame (raw size, codec) and the counts; bulk frames carry uint64
 * key arrays and float32 row arrays outside protobuf. A bulk frame of at least PSREC_WIRE_LZ4_MIN
 * bytes is LZ4-compressed when that makes it smaller (dense float rows usually do not shrink, id
 * arrays often do), and the header says so per frame.
 *
 * Every protocol number lives here (version, limits, slots) so that a lying header becomes
 * PSREC_EMSGSIZE/PSREC_EPROTO before anything is allocated: the receiver checks the declared sizes
 * against the limits and against the frames actually received, and decompresses into exactly the
 * declared size.
 * Thread model: functions are stateless; a ZeroMQ socket is used by one thread at a time. */
#ifndef PSREC_WIRE_H
#define PSREC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/rng.h"
#include "proto/psrec.pb-c.h"

#define PSREC_WIRE_VERSION 1
#define PSREC_WIRE_MAX_HEADER (1u << 20)           /* bytes of the protobuf header frame */
#define PSREC_WIRE_MAX_BULK 4                      /* bulk frames per message */
#define PSREC_WIRE_MAX_FRAME_BYTES (1024ull << 20) /* one bulk frame, decompressed */
#define PSREC_WIRE_MAX_KEYS (1u << 24)             /* keys per request */
#define PSREC_WIRE_MAX_DIM 65536                   /* floats per row */
#define PSREC_WIRE_LZ4_MIN 4096                    /* smaller frames are never compressed */
#define PSREC_WIRE_NSLOTS 4096                     /* hash slots of the shard map */
#define PSREC_WIRE_MAX_ROUTE 255                   /* ZeroMQ routing ids are at most 255 bytes */

/* The hash slot of a key: a full 64-bit mix, so dense ids 0..n-1 spread evenly over slots (not
 * ps-lite's contiguous ranges, which put them all on one server). */
static inline uint32_t psrec_wire_slot(uint64_t key, uint32_t nslots)
{
    return (uint32_t)((psrec_mix64(key ^ 0x5ca1ab1e0ddba11ULL) >> 16) % nslots);
}

typedef struct {
    unsigned char id[PSREC_WIRE_MAX_ROUTE];
    size_t len;
} psrec_wire_route_t;

typedef struct {
    Psrec__Header *hdr;              /* decoded header; NULL after a failed receive */
    void *bulk[PSREC_WIRE_MAX_BULK]; /* decoded bulk frames (malloc'ed, 16-byte aligned) */
    size_t bulk_bytes[PSREC_WIRE_MAX_BULK];
    int nbulk;
    /* After a failed receive whose header did decode: the rejected request's seq and job id, so the
     * ERROR reply can echo them and the sender fails at once instead of waiting for its deadline. */
    int rejected_has_seq;
    uint64_t rejected_seq, rejected_job_id;
} psrec_wire_msg_t;

typedef struct {
    const void *data;
    size_t bytes;
} psrec_wire_bulk_t;

typedef struct {
    uint64_t msgs;
    uint64_t header_bytes;
    uint64_t raw_bytes;  /* bulk bytes before compression */
    uint64_t wire_bytes; /* bulk bytes as sent/received */
} psrec_wire_stats_t;

/* Fills a header with defaults (psrec__header__init + version + type). */
void psrec_wire_header_init(Psrec__Header *h, Psrec__Type type);

/* Sends one message. hdr->version and hdr->frames are set here (the caller's frames field is
 * replaced for the duration of the call). compress: 0 = never, 1 = LZ4 where it shrinks a frame.
 * Errors: PSREC_EMSGSIZE (a frame over the limits), PSREC_EIO (ZeroMQ refused: errno in err),
 * PSREC_ETIMEDOUT (the socket's send timeout expired). Never blocks forever if the socket has
 * ZMQ_SNDTIMEO set. st (may be NULL) accumulates byte counts. */
psrec_err psrec_wire_send(void *sock, const psrec_wire_route_t *route, Psrec__Header *hdr,
                          const psrec_wire_bulk_t *bulk, int nbulk, int compress, psrec_wire_stats_t *st,
                          char *err) PSREC_MUST_CHECK;

/* Receives one whole message, waiting up to timeout_ms (-1: forever). With route != NULL the first
 * frame is a routing id (ROUTER sockets). On success msg owns the header and the bulk frames.
 * On a malformed message every frame of it is consumed, msg is left empty, route is still filled
 * (so a server can send an error reply) and the code says what was wrong: PSREC_EVERSION,
 * PSREC_EMSGSIZE (declared or actual size over a limit), PSREC_EPROTO (undecodable header, frame
 * count or sizes not as declared), PSREC_ECORRUPT (LZ4 data does not decompress to the declared
 * size). PSREC_ETIMEDOUT if nothing arrived in time; PSREC_EIO if ZeroMQ failed (e.g. context
 * terminated). */
psrec_err psrec_wire_recv(void *sock, psrec_wire_route_t *route, psrec_wire_msg_t *msg, int timeout_ms,
                          psrec_wire_stats_t *st, char *err) PSREC_MUST_CHECK;

/* The same with a lower limit on the decoded size of each bulk frame (a server's own limit, see
 * ps/limits.h): a frame declaring more is PSREC_EMSGSIZE before anything is allocated. */
psrec_err psrec_wire_recv_limit(void *sock, psrec_wire_route_t *route, psrec_wire_msg_t *msg, int timeout_ms,
                                uint64_t max_frame_bytes, psrec_wire_stats_t *st, char *err) PSREC_MUST_CHECK;

void psrec_wire_msg_clear(psrec_wire_msg_t *msg);

/* Checks that msg has exactly nbulk bulk frames of the given byte sizes: PSREC_EPROTO otherwise. */
psrec_err psrec_wire_check_bulk(const psrec_wire_msg_t *msg, int nbulk, const size_t *bytes,
                                char *err) PSREC_MUST_CHECK;

/* Replies ERROR (code, text) to req (its seq, table and job id echoed); req may be NULL. */
psrec_err psrec_wire_send_error(void *sock, const psrec_wire_route_t *route, const Psrec__Header *req, psrec_err code,
                                const char *text) PSREC_MUST_CHECK;
/* Replies ERROR to a message psrec_wire_recv rejected (echoing its seq and job id when they were
 * readable). */
psrec_err psrec_wire_send_reject(void *sock, const psrec_wire_route_t *route, const psrec_wire_msg_t *rejected,
                                 psrec_err code, const char *text) PSREC_MUST_CHECK;

#endif

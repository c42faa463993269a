/* limits.h: what one peer may make a parameter server hold: the largest message, the requests it may
 * have queued, the rows one request may create, the rows a table may reach. A peer beyond a limit is
 * answered with an error (PSREC_EMSGSIZE, PSREC_EFULL) and the server keeps serving everyone else.
 *
 * Where each bound is enforced:
 *  - max_msg_bytes: ZeroMQ's ZMQ_MAXMSGSIZE on the server socket, per frame: a longer frame never
 *    reaches psrec (ZeroMQ drops that connection; the peer reconnects); and the decoded size of every
 *    bulk frame, checked against the header's declaration before anything is allocated (an LZ4 frame
 *    may declare up to 255x its wire size).
 *  - max_inflight: the server socket's receive queue per peer (ZMQ_RCVHWM): ZeroMQ stops reading a
 *    peer whose queue is full, so memory held for a peer is at most max_inflight messages; and within
 *    one receive burst, requests of a peer beyond max_inflight are answered EFULL, not served.
 *  - max_new_rows: a PULL, PUSH or SET whose keys would create more rows is refused whole (EFULL).
 *  - max_rows: every table's capacity (ps/store.h max_rows) unless the table sets its own.
 * Thread model: a psrec_limits_burst_t belongs to the server loop's thread. */
#ifndef PSREC_LIMITS_H
#define PSREC_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/wire.h"
#include "ps/store.h"

#define PSREC_LIMITS_MAX_MSG (256ull << 20) /* default max_msg_bytes: a chunk of 65536 rows of dim 1024 */
#define PSREC_LIMITS_INFLIGHT 64            /* default max_inflight */
#define PSREC_LIMITS_NEW_ROWS (1u << 20)    /* default max_new_rows: 16x the remote client's chunk */

typedef struct {
    uint64_t max_msg_bytes; /* 0: PSREC_LIMITS_MAX_MSG; at most PSREC_WIRE_MAX_FRAME_BYTES */
    uint32_t max_inflight;  /* 0: PSREC_LIMITS_INFLIGHT */
    uint32_t max_new_rows;  /* 0: PSREC_LIMITS_NEW_ROWS */
    uint64_t max_rows;      /* 0: unbounded */
    /* what a table at its row limit (this one or its own) does with new keys (ps/store.h skip_new):
     * 0 (default, `--at-max-rows skip`): refuses them one by one, counted, and the request succeeds (a pull
     * gets their initial values, an update of them is dropped); 1 (`--at-max-rows fail`): refuses the
     * whole request with PSREC_EFULL */
    int max_rows_fail;
} psrec_limits_t;

/* Replaces zeros by the defaults and clamps to the wire's own limits. */
void psrec_limits_resolve(psrec_limits_t *l);

/* PSREC_EFULL (err says how many) when the n keys would create more than l->max_new_rows rows of
 * table. Keys are looked up only when n exceeds the limit, so ordinary requests cost nothing. */
psrec_err psrec_limits_check_new_rows(const psrec_limits_t *l, psrec_store_t *st, uint32_t table, const uint64_t *keys,
                                      size_t n, char *err) PSREC_MUST_CHECK;

/* Requests per peer (routing id) within one receive burst. */
typedef struct psrec_limits_burst psrec_limits_burst_t;
/* max_peers: distinct peers one burst can hold (the burst's length); max_inflight: requests of one. */
psrec_err psrec_limits_burst_new(psrec_limits_burst_t **b, uint32_t max_peers, uint32_t max_inflight) PSREC_MUST_CHECK;
void psrec_limits_burst_destroy(psrec_limits_burst_t **b);
/* Starts a new burst (forgets every count). */
void psrec_limits_burst_reset(psrec_limits_burst_t *b);
/* Counts one request of route: PSREC_OK while its peer has at most max_inflight in this burst,
 * PSREC_EFULL beyond (err says so), or when more than max_peers peers showed up. */
psrec_err psrec_limits_burst_admit(psrec_limits_burst_t *b, const psrec_wire_route_t *route,
                                   char *err) PSREC_MUST_CHECK;

#endif

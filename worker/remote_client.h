/* remote_client.h: the table client of the distributed mode: pulls and pushes go to the servers
 * that own each key's hash slot (shard map from the coordinator).
 *
 * A call groups its keys by server, sends one request per server (split into chunks of at most
 * PSREC_REMOTE_CHUNK keys), has them all in flight at once, and waits for every reply; results are
 * scattered back in the caller's key order. Every request carries (rank, epoch, seq) and has a
 * deadline: on timeout it is re-sent with the same seq (servers drop duplicate pushes), and after
 * `retries` attempts the call fails with PSREC_ETIMEDOUT naming the server — never a hang or abort.
 * With recovery_ms > 0 a call outlives a restarting server instead: it keeps re-sending until the
 * server has been silent for recovery_ms since the request's first attempt. An ERROR reply fails the
 * call with the server's code and text, except ENOTREADY (a server still loading after a restart),
 * which is retried after a short pause like a lost reply.
 * Sends never block: at most PSREC_REMOTE_SNDHWM messages wait for a disconnected server (they go out
 * when the DEALER reconnects by itself), and a send beyond that counts as a lost message.
 * Thread model: one remote client per thread (its DEALER sockets are not thread-safe). */
#ifndef PSREC_REMOTE_CLIENT_H
#define PSREC_REMOTE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/wire.h"
#include "common/zsec.h"
#include "ps/store.h"
#include "worker/table_client.h"

#define PSREC_REMOTE_CHUNK 65536
#define PSREC_REMOTE_SNDHWM 16       /* messages queued per server socket (ZMQ_SNDHWM) */
#define PSREC_REMOTE_NOTREADY_MS 100 /* pause before re-sending a request a server answered ENOTREADY */

typedef struct {
    uint64_t job_id;
    uint32_t rank;                              /* this worker's rank (unique per worker thread/process) */
    uint64_t epoch;                             /* membership epoch from registration */
    int timeout_ms;                             /* per attempt (default 10000) */
    int retries;                                /* attempts before giving up (default 3; recovery_ms 0) */
    int compress;                               /* LZ4 on bulk frames where it shrinks: 1 on, 0 off */
    const psrec_zsec_t *sec;                    /* connection security (common/zsec.h; NULL: none) */
    uint32_t table_dim[PSREC_STORE_MAX_TABLES]; /* row width of each table (0 = no such table), for the
                                                   table-client ops, which do not pass it */
    /* > 0: re-send every timeout_ms until the server has been silent this long since the request's
     * first attempt, whatever `retries` says (a restarting server is waited for); 0: `retries` */
    int recovery_ms;
} psrec_remote_conf_t;

typedef struct psrec_remote psrec_remote_t;

/* Connects a DEALER socket to every server of the map (the map is copied). */
psrec_err psrec_remote_new(psrec_remote_t **r, void *zctx, const Psrec__ShardMap *map, const psrec_remote_conf_t *conf,
                           char *err) PSREC_MUST_CHECK;
void psrec_remote_destroy(psrec_remote_t **r);
/* Takes a new shard map (copied): the sockets of servers whose address changed (a restarted server
 * came back elsewhere) are closed and connected to the new address, the others are kept; the number
 * of servers may change. Requests are addressed by server index at every attempt, so anything sent
 * from now on goes to the new addresses. On failure r keeps its previous map. */
psrec_err psrec_remote_set_map(psrec_remote_t *r, const Psrec__ShardMap *map, char *err) PSREC_MUST_CHECK;
/* Wraps r in a table client; the client owns r from then on (also on failure). */
psrec_err psrec_table_client_new_remote(psrec_table_client_t **c, psrec_remote_t *r) PSREC_MUST_CHECK;

psrec_err psrec_remote_pull(psrec_remote_t *r, uint32_t table, const uint64_t *keys, size_t n, float *out, uint32_t dim,
                            char *err) PSREC_MUST_CHECK;
psrec_err psrec_remote_push(psrec_remote_t *r, uint32_t table, const uint64_t *keys, size_t n, const float *grads,
                            uint32_t dim, char *err) PSREC_MUST_CHECK;
psrec_err psrec_remote_set(psrec_remote_t *r, uint32_t table, const uint64_t *keys, size_t n, const float *values,
                           uint32_t dim, char *err) PSREC_MUST_CHECK;
/* Creates the rows of n keys on their servers without sending any back (PULL with touch): how a job
 * materialises its whole catalogue at 8 bytes per key on the wire. */
psrec_err psrec_remote_touch(psrec_remote_t *r, uint32_t table, const uint64_t *keys, size_t n, uint32_t dim,
                             char *err) PSREC_MUST_CHECK;
/* All rows of a table, from every server (DUMP with cursors). The caller frees *keys and *values. */
psrec_err psrec_remote_dump(psrec_remote_t *r, uint32_t table, uint32_t dim, uint64_t **keys, float **values, size_t *n,
                            char *err) PSREC_MUST_CHECK;
/* Checkpoint round `round` (ps/coord.h): CHECKPOINT to every server, waiting for each CHECKPOINT_OK
 * (a server answers a repeated round without taking it twice, so re-sends are safe). */
psrec_err psrec_remote_checkpoint(psrec_remote_t *r, uint64_t round, char *err) PSREC_MUST_CHECK;
/* Server-side negatives (ps/negatives.h; the table-client ops psrec_table_neg_*): every server draws
 * negatives from its rows as draw says and scores them against b; lse (nservers x B), ybar
 * (nservers x B x d) and logE (nservers) are filled by server index. apply sends each server its row
 * weights w (nservers x B) for the batch it scored last, with the caller's own gradient rows of the
 * table (n keys, unique, n x d grads) grouped by server: each server applies both as one update.
 * PSREC_ESTALE if there is no scored batch (or the map changed in between); *stale counts the servers
 * that answered without it (they restarted: they applied the caller's rows only). */
psrec_err psrec_remote_neg_score(psrec_remote_t *r, uint32_t table, const psrec_negbatch_t *b,
                                 const psrec_negdraw_t *draw, uint64_t seed, float *lse, float *ybar, float *logE,
                                 char *err) PSREC_MUST_CHECK;
psrec_err psrec_remote_neg_apply(psrec_remote_t *r, uint32_t table, const float *w, const uint64_t *keys,
                                 const float *grads, size_t n, uint32_t *stale, char *err) PSREC_MUST_CHECK;
uint32_t psrec_remote_nservers(const psrec_remote_t *r);
uint32_t psrec_remote_server_of(const psrec_remote_t *r, uint64_t key);
/* Bytes and messages sent/received so far (raw = before LZ4, wire = as sent). */
void psrec_remote_stats(const psrec_remote_t *r, psrec_wire_stats_t *sent, psrec_wire_stats_t *received);
/* The last error text of a failed call made through the table-client ops (which have no err buffer). */
const char *psrec_remote_last_error(const psrec_remote_t *r);

#endif

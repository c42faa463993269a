/* server.h: a parameter server: one shard of every table, served over a ZeroMQ ROUTER socket.
 *
 * Requests (common/wire.h, proto/psrec.proto): PULL, PUSH, SET, DUMP, STATS, SHUTDOWN. Every request
 * gets exactly one reply (the *_OK type or ERROR with a psrec_err code), including malformed ones,
 * and the server keeps serving. Checks per request: job id, table exists, count/dim match the
 * table and the bulk frames, every key belongs to this server under the current shard map
 * (PSREC_ESTALE otherwise). A PUSH/SET carries (rank, epoch, seq) of its sender; a duplicate of an
 * already-applied push (a retry after a lost reply) is acknowledged without being applied again.
 *
 * With a coordinator the server registers (REGISTER -> rank, tables, seed, shard map), sends
 * heartbeats with its stats, and stops when the coordinator says the job is over. Without one
 * (standalone: tests, benchmarks) the tables come from the configuration and it owns every slot, or
 * the slots of its rank in a shard map given by the configuration (several standalone servers).
 * Fault tolerance (with a coordinator that has a checkpoint directory; see ps/coord.h): CHECKPOINT r
 * fork()s a child that writes the shard to round-<r>/server-<rank>.snap while the parent keeps serving
 * (Redis's RDB way); its completion is reported in heartbeats. At registration the server loads the
 * newest complete round (keeping the rows it owns under the current map, so the server count may
 * change between runs) and, when the coordinator says it is a restart with --durability log, replays
 * its push log. With the log on, an acknowledged PUSH/SET is in the log first: acknowledgements of a
 * burst of requests wait for one group commit (write + fdatasync). A log that cannot be written stops
 * the server with an error (its launcher restarts it, and it recovers what was acknowledged).
 * conf.sec admits only peers that pass the job's connection security (common/zsec.h); conf.limits
 * bounds what one peer may make the server hold (ps/limits.h).
 * Thread model: psrec_server_run runs the loop on the calling thread; psrec_server_stop may be called
 * from any thread. */
#ifndef PSREC_SERVER_H
#define PSREC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/wire.h"
#include "common/zsec.h"
#include "ps/limits.h"
#include "ps/store.h"

typedef struct {
    const char *bind;      /* "tcp://127.0.0.1:0" (ephemeral port), "inproc://srv0" */
    const char *advertise; /* endpoint peers should connect to (NULL: the resolved bind endpoint) */
    const char *coord;     /* coordinator endpoint, or NULL for standalone */
    uint64_t job_id;
    int rejoin; /* coordinator mode: 1 = ask for rank rejoin_rank (a restarted server), 0 = any */
    uint32_t rejoin_rank;
    int heartbeat_ms; /* default 500 */
    int compress;     /* LZ4 on replies where it shrinks (default on: set -1 for off) */
    /* connection security (NULL: none: in-process tests and benchmarks) and per-peer bounds (zeros:
     * the defaults of ps/limits.h) */
    const psrec_zsec_t *sec;
    psrec_limits_t limits;
    /* standalone only */
    int ntables;
    const uint32_t *table_ids;
    const psrec_table_conf_t *tables;
    uint64_t seed;
    uint32_t rank;                    /* this server's rank in shard_map */
    const Psrec__ShardMap *shard_map; /* slots this server owns (copied); NULL: every slot */
} psrec_server_conf_t;

typedef struct {
    uint64_t requests, errors, duplicates;
    uint64_t rows_pulled, rows_pushed, rows_set;
    uint64_t neg_scored, neg_applied;  /* server-side negatives: rows drawn and scored, rows updated */
    uint64_t rows_touched;             /* PULLs with touch (materialising a catalogue) */
    uint64_t checkpoints;              /* snapshots taken (children forked) */
    uint64_t log_records, log_commits; /* --durability log */
    double log_fsync_seconds;
    uint64_t recovered_rows, replayed_records; /* at start: rows loaded from a round, log records replayed */
    psrec_wire_stats_t sent, received;
} psrec_server_stats_t;

typedef struct psrec_server psrec_server_t;

/* Binds the socket (and, with a coordinator, registers and waits for the complete shard map).
 * zctx is a ZeroMQ context shared with the caller (needed for inproc://). */
psrec_err psrec_server_new(psrec_server_t **s, void *zctx, const psrec_server_conf_t *conf, char *err) PSREC_MUST_CHECK;
void psrec_server_destroy(psrec_server_t **s);
/* The endpoint actually bound (ephemeral ports resolved). */
const char *psrec_server_endpoint(const psrec_server_t *s);
uint32_t psrec_server_rank(const psrec_server_t *s);
/* Serves until SHUTDOWN, the coordinator's stop, or psrec_server_stop. Returns PSREC_OK on an orderly
 * stop, an error if the socket failed. Never aborts on a bad request. */
psrec_err psrec_server_run(psrec_server_t *s, char *err) PSREC_MUST_CHECK;
void psrec_server_stop(psrec_server_t *s);
/* Counters (safe to read after run returned; approximate while it runs). */
void psrec_server_get_stats(const psrec_server_t *s, psrec_server_stats_t *st);
/* The server's store (for tests and model save in standalone mode). */
psrec_store_t *psrec_server_store(psrec_server_t *s);

/* Conversions between psrec_table_conf_t and the wire's TableConf. */
void psrec_table_conf_to_wire(uint32_t id, const psrec_table_conf_t *c, Psrec__TableConf *w);
psrec_err psrec_table_conf_from_wire(const Psrec__TableConf *w, uint32_t *id, psrec_table_conf_t *c,
                                     char *err) PSREC_MUST_CHECK;

#endif

/* coord.h: the coordinator of a psrec job: membership, ranks, the shard map, barriers, progress and
 * the end of the job. One per job (ps-lite's scheduler, with heartbeats on by default and no aborts).
 *
 * Protocol (proto/psrec.proto), all over one ROUTER socket; every request gets one reply:
 *  - REGISTER {role SERVER|WORKER, addr (servers: the endpoint workers connect to), rank (a restarted
 *    member asks for its old rank; UINT32_MAX = any: protobuf cannot tell an absent 0)}
 *    -> REGISTER_OK {rank, epoch (bumped on
 *    every registration of that rank: it fences the stale process), job_id, seed, tables, shard_map
 *    (present once all n_servers servers registered)}. More members than configured: ERROR EREFUSED.
 *  - SHARD_MAP_GET -> SHARD_MAP {shard_map} or ERROR ENOTREADY until every server registered.
 *    Slots are dealt round-robin: slot i -> server i % n_servers (balanced for any key distribution,
 *    since psrec_wire_slot hashes keys).
 *  - HEARTBEAT {role, rank, epoch, stats: servers table_stats/pulls/pushes; workers examples/loss/step,
 *    stop = 1 when the worker has finished} -> HEARTBEAT_OK {map_version, stop = 1 once every worker
 *    finished (servers then exit)}. A member silent for heartbeat_timeout_ms is marked dead (status).
 *  - BARRIER {barrier_name, barrier_count} -> BARRIER_OK once barrier_count members sent that name.
 *  - STATUS -> STATUS_OK {members (role, rank, addr, alive, seconds since seen, stats), shard_map,
 *    examples (sum), loss (mean of the workers' last)}. Every reply carries n_servers and n_workers.
 *  - SHUTDOWN -> SHUTDOWN_OK, then the coordinator stops.
 * Messages with another job_id get ERROR EREFUSED.
 *
 * Fault tolerance (with a checkpoint_dir):
 *  - Checkpoint rounds. Every checkpoint_steps/secs the coordinator announces round r in HEARTBEAT_OK
 *    (checkpoint_round). Each worker, at its next step boundary, drains its pushes and enters barrier
 *    "ckpt-<r>"; worker 0 then sends CHECKPOINT r to every server (each forks a child that writes its
 *    shard while the parent keeps serving) and everyone passes barrier "ckpt-<r>-go". So the snapshot
 *    holds exactly the updates acknowledged before the workers' recorded positions. Members report their
 *    part in heartbeats (checkpoint_done; servers with the file size, workers with their per-shard
 *    progress); when all have, the coordinator writes round-<r>/MANIFEST (ps/manifest.h) and prunes old
 *    rounds. No round starts once a worker says it is finishing.
 *  - Restarts. A member registering again with its rank gets a new epoch (which fences the old process)
 *    and, in REGISTER_OK, resume_round (the newest complete round), replay_log (a restarted server with
 *    --durability log replays its log after the round) and, for workers, every shard's last reported
 *    progress. A "worker" registering for any rank when all are taken gets the rank of a dead one.
 *  - The coordinator's own state (members, epochs, rounds, progress) is kept in coord.state (durable);
 *    a coordinator started again with the same job id and directory continues from it, and members
 *    reconnect by themselves. With resume, a new job starts from the newest complete round.
 * Messages with another job_id get ERROR EREFUSED (and a rate-limited log line). With conf.sec, the socket
 * admits only peers that pass the job's connection security (common/zsec.h).
 * psrec_coord_run returns when every worker has finished and every live server has been told to stop
 * (or after SHUTDOWN / psrec_coord_stop).
 * Thread model: run on one thread; stop from any thread. */
#ifndef PSREC_COORD_H
#define PSREC_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/wire.h"
#include "common/zsec.h"
#include "ps/store.h"

typedef struct {
    const char *bind; /* "tcp://127.0.0.1:0", "inproc://coord", ... */
    /* connection security (NULL: none: in-process tests and benchmarks) */
    const psrec_zsec_t *sec;
    int n_servers, n_workers;
    uint64_t job_id;
    uint64_t seed;
    int ntables;
    const uint32_t *table_ids;
    const psrec_table_conf_t *tables;
    int heartbeat_timeout_ms; /* default 10000 */
    /* fault tolerance (docs/operations.md); all off when checkpoint_dir is NULL */
    const char *checkpoint_dir; /* rounds (round-<r>/), coordinator state (coord.state), push logs */
    uint64_t checkpoint_steps;  /* start a round every N worker steps (summed over workers); 0 = off */
    double checkpoint_secs;     /* ... or every T seconds after the previous one ended; 0 = off;
                                   < 0 = automatic: Young's sqrt(2 C M) from the measured round cost C and
                                   mtbf_secs M (the first round after AUTO_FIRST_SECS) */
    double mtbf_secs;           /* expected time between failures of the job (default 24 h) */
    int keep_rounds;            /* complete rounds kept (default 2) */
    int resume;                 /* a new job that continues from the newest complete round */
    int durability_log;         /* servers log acknowledged pushes (REGISTER_OK tells them) */
    int fresh;                  /* never continue from coord.state (an embedded coordinator, which cannot
                                   outlive its own workers) */
} psrec_coord_conf_t;

typedef struct psrec_coord psrec_coord_t;

/* With a checkpoint_dir: loads coord.state (same job) or, with resume, the newest complete round
 * (PSREC_ENOTFOUND if there is none; refused rounds are reported on stderr). */
psrec_err psrec_coord_new(psrec_coord_t **c, void *zctx, const psrec_coord_conf_t *conf, char *err) PSREC_MUST_CHECK;
void psrec_coord_destroy(psrec_coord_t **c);
const char *psrec_coord_endpoint(const psrec_coord_t *c);
psrec_err psrec_coord_run(psrec_coord_t *c, char *err) PSREC_MUST_CHECK;
/* The automatic checkpoint interval (seconds) for a measured round cost and an MTBF: Young's
 * sqrt(2 C M), kept within [10 s, 6 h]. */
double psrec_coord_auto_interval(double round_cost_s, double mtbf_s);
void psrec_coord_stop(psrec_coord_t *c);

#endif

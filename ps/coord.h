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
} psrec_coord_conf_t;

typedef struct psrec_coord psrec_coord_t;

psrec_err psrec_coord_new(psrec_coord_t **c, void *zctx, const psrec_coord_conf_t *conf, char *err) PSREC_MUST_CHECK;
void psrec_coord_destroy(psrec_coord_t **c);
const char *psrec_coord_endpoint(const psrec_coord_t *c);
psrec_err psrec_coord_run(psrec_coord_t *c, char *err) PSREC_MUST_CHECK;
void psrec_coord_stop(psrec_coord_t *c);

#endif

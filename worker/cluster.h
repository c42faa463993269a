/* cluster.h: the embedded cluster: a coordinator and S parameter servers as threads of this process,
 * reached over inproc:// (or tcp loopback), so `psrec train` with no cluster flags runs the very code
 * of a distributed job. Workers join it through its coordinator endpoint like any remote worker.
 * Thread model: start/wait/stop from one thread; the roles run on their own threads. */
#ifndef PSREC_CLUSTER_H
#define PSREC_CLUSTER_H

#include <stdint.h>

#include "common/err.h"
#include "common/zsec.h"
#include "ps/store.h"

typedef struct {
    int servers, workers;
    int tcp;      /* 1: tcp://127.0.0.1 ephemeral ports; 0: inproc:// */
    int compress; /* servers compress replies with LZ4 where it shrinks */
    /* connection security shared by every role (one per ZeroMQ context) */
    const psrec_zsec_t *sec;
    uint64_t job_id, seed;
    int ntables;
    const uint32_t *table_ids;
    const psrec_table_conf_t *tables;
    /* fault tolerance: handed to the coordinator (ps/coord.h) */
    const char *checkpoint_dir;
    uint64_t checkpoint_steps;
    double checkpoint_secs, mtbf_secs;
    int heartbeat_timeout_ms;
    int keep_rounds, resume, durability_log;
} psrec_cluster_conf_t;

typedef struct psrec_cluster psrec_cluster_t;

/* Starts the coordinator and the servers (servers register in the background). zctx is shared with
 * the workers (inproc needs one context). */
psrec_err psrec_cluster_start(psrec_cluster_t **cl, void *zctx, const psrec_cluster_conf_t *conf,
                              char *err) PSREC_MUST_CHECK;
const char *psrec_cluster_coord(const psrec_cluster_t *cl);
/* Asks every role to stop now (error paths). */
void psrec_cluster_stop(psrec_cluster_t *cl);
/* Joins every role thread (they end when the coordinator ends the job) and frees; returns the first
 * role error. Destroys *cl in every case. */
psrec_err psrec_cluster_wait(psrec_cluster_t **cl, char *err) PSREC_MUST_CHECK;

#endif

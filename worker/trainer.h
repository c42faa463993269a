/* trainer.h: training (`psrec train`, `psrec worker`): W worker threads, each reading its data
 * shards, computing the query tower and the (sampled) softmax, pulling rows and pushing summed sparse
 * gradients through a psrec_table_client_t.
 *
 * Where the parameters live:
 *  - embedded (default, conf.coord == NULL): a coordinator and conf.servers parameter servers run as
 *    threads of this process over inproc:// (or tcp loopback with transport TCP) — the same code as
 *    a cluster; the workers register with that coordinator like remote workers do;
 *  - cluster (conf.coord set): the W threads join an existing job's coordinator as W workers;
 *  - direct (transport DIRECT): no messaging at all, the threads call one in-process store (the
 *    fastest path; the reference the cluster modes are measured against).
 * Asynchronous by default (Hogwild between workers, exact per row in the store), and in the cluster
 * modes each worker's pushes run on a pusher thread that overlaps them with the next step's pulls and
 * compute. With max_staleness k >= 0 no worker runs more than k steps ahead of the slowest and pushes
 * are synchronous: with one worker and a fixed seed the model is then the same byte for byte,
 * whatever the transport.
 * With checkpoints (coordinator's checkpoint_dir, ps/coord.h) each worker tracks its position per data
 * shard, reports the position whose pushes are acknowledged in every heartbeat, takes part in
 * checkpoint rounds at step boundaries, and on (re)start continues from the position the coordinator
 * hands back: a restarted worker loses at most the steps since its last heartbeat, a resumed job
 * restarts exactly at the round.
 * A progress line like fastText's goes to stderr, JSON-lines metrics to a file, and the model to a
 * directory (written by worker rank 0 once every worker finished).
 * Thread model: psrec_train runs the workers and a progress loop on the calling thread. */
#ifndef PSREC_TRAINER_H
#define PSREC_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "common/batch.h"
#include "common/err.h"
#include "common/zsec.h"
#include "ps/store.h"
#include "worker/loss.h"
#include "worker/sampler.h"
#include "worker/tower.h"

typedef struct {
    const char *data_dir;     /* from `psrec prep`: shard-*.bin and freq.bin */
    const char *model_dir;    /* output (NULL: do not save) */
    const char *metrics_path; /* JSON lines (NULL: none) */
    int threads;              /* worker threads W */
    int epochs;
    int batch;     /* B */
    int negatives; /* S shared negatives (pool size M for hard) */
    int hard_keep; /* HARD: h negatives kept from the pool (default S/4) */
    /* --negatives-on servers: each parameter server draws S / servers negatives from its own rows and
     * scores them (ps/negatives.h); negative rows never cross the network. Uniform sampler, softmax. */
    int negatives_on_servers;
    /* --materialise: before training, every catalogue item's output row is created (each worker
     * touches its share of freq.bin's ids; PULL with touch, 8 bytes per key on the wire), so the table
     * really holds the whole catalogue and server-side negatives draw from all of it. */
    int materialise;
    psrec_sampler_kind sampler;
    double alpha;       /* popularity exponent */
    double temperature; /* hard negatives T */
    psrec_loss_kind loss;
    float neg_weight; /* logistic loss */
    float gravity;    /* lambda (0 = off) */
    int gravity_rows; /* R uniform rows per step for the gravity estimate */
    int dim, emb_dim;
    psrec_tower_conf_t tower; /* hidden layers (n_in/out_dim are derived) */
    int tie;
    psrec_opt_t item_opt;      /* item/feature embedding tables */
    psrec_opt_t dense_opt;     /* tower weights */
    float init_scale;          /* N(0, init_scale^2) embedding init (0: 1/sqrt(dim)) */
    psrec_row_dtype row_dtype; /* how servers store embedding rows (f32, f16, bf16); tower weights stay f32 */
    uint64_t seed;
    uint64_t max_steps; /* per worker; 0 = until epochs are done */
    int progress;       /* print the progress line */
    int quiet;
    /* where the parameters live */
    const char *coord; /* join this coordinator (cluster mode); NULL = embedded */
    int servers;       /* embedded: parameter server threads (default 1) */
    int transport;     /* embedded: PSREC_TRANSPORT_* */
    int compress;      /* LZ4 on bulk frames where it shrinks (default: on for tcp, off for inproc) */
    uint64_t job_id;
    int timeout_ms;    /* per request attempt (default 10000) */
    int max_staleness; /* -1 = asynchronous (default); k >= 0 = bounded staleness */
    /* fault tolerance (docs/operations.md); the coordinator's settings rule (embedded: these) */
    const char *checkpoint_dir; /* checkpoint rounds, push logs, coordinator state (NULL: none) */
    uint64_t checkpoint_steps;  /* a round every N steps summed over workers (0: off) */
    double checkpoint_secs;     /* a round every T seconds (0: off; < 0: automatic from the MTBF) */
    double mtbf_secs;           /* --mtbf: expected time between failures (automatic interval) */
    int keep_checkpoints;       /* complete rounds kept (default 2) */
    int resume;                 /* continue from the newest complete round of checkpoint_dir */
    int durability_log;         /* servers log acknowledged pushes (--durability log) */
    int rank;                   /* cluster worker/server: the rank to take back after a restart (-1: any) */
    int recovery_ms;            /* how long to wait for a restarted peer (default 120000) */
    int heartbeat_timeout_ms;   /* coordinator: a member silent this long is dead (default 10000) */
    /* connection security (default: the job token; embedded mode makes its secrets in memory) */
    psrec_zsec_conf_t sec;
} psrec_train_conf_t;

enum { PSREC_TRANSPORT_INPROC = 0, PSREC_TRANSPORT_TCP = 1, PSREC_TRANSPORT_DIRECT = 2 };

typedef struct {
    uint64_t examples;
    uint64_t steps;
    double seconds;
    double examples_per_sec;
    double step_seconds;          /* from the first training step to the last (no start-up or saving) */
    double step_examples_per_sec; /* examples trained by this process over step_seconds */
    uint64_t step_wire_bytes;     /* bytes its workers moved during the steps (wire_bytes minus start-up) */
    double final_loss;            /* mean training loss over the last ~10% of steps */
    uint64_t rows_out;            /* materialised item output rows (direct mode) */
    double bytes_per_row_out;
    uint64_t wire_raw_bytes; /* bulk bytes sent + received by this process's workers, before LZ4 */
    uint64_t wire_bytes;     /* ... as they crossed the wire (plus headers) */
} psrec_train_result_t;

void psrec_train_defaults(psrec_train_conf_t *c);
/* The tables a job with this configuration and schema needs (ids and configurations; at most
 * PSREC_STORE_MAX_TABLES), as the coordinator hands them to servers. */
int psrec_train_tables(const psrec_train_conf_t *c, const psrec_schema_t *schema, uint32_t *ids,
                       psrec_table_conf_t *tables);
/* Reads the schema of a prepared data directory (from its first shard). */
psrec_err psrec_train_data_schema(const char *data_dir, psrec_schema_t *schema, char *err) PSREC_MUST_CHECK;
psrec_err psrec_train(const psrec_train_conf_t *c, psrec_train_result_t *res, char *err) PSREC_MUST_CHECK;

#endif

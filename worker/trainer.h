/* trainer.h: the embedded trainer (`psrec train`): W worker threads, each reading its data shards,
 * computing the query tower and the (sampled) softmax, pulling rows and pushing summed sparse
 * gradients through a psrec_table_client_t (local store today, the servers in distributed mode).
 * Asynchronous (Hogwild between workers, exact per row in the store). A progress line like
 * fastText's goes to stderr, JSON-lines metrics to a file, and the model to a directory.
 * Thread model: psrec_train runs the workers and a progress loop on the calling thread. */
#ifndef PSREC_TRAINER_H
#define PSREC_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
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
    int batch;                /* B */
    int negatives;            /* S shared negatives (pool size M for hard) */
    int hard_keep;            /* HARD: h negatives kept from the pool (default S/4) */
    psrec_sampler_kind sampler;
    double alpha;             /* popularity exponent */
    double temperature;       /* hard negatives T */
    psrec_loss_kind loss;
    float neg_weight;         /* logistic loss */
    float gravity;            /* lambda (0 = off) */
    int gravity_rows;         /* R uniform rows per step for the gravity estimate */
    int dim, emb_dim;
    psrec_tower_conf_t tower; /* hidden layers (n_in/out_dim are derived) */
    int tie;
    psrec_opt_t item_opt;     /* item/feature embedding tables */
    psrec_opt_t dense_opt;    /* tower weights */
    float init_scale;         /* N(0, init_scale^2) embedding init (0: 1/sqrt(dim)) */
    uint64_t seed;
    uint64_t max_steps;       /* per worker; 0 = until epochs are done */
    int progress;             /* print the progress line */
    int quiet;
} psrec_train_conf_t;

typedef struct {
    uint64_t examples;
    uint64_t steps;
    double seconds;
    double examples_per_sec;
    double final_loss; /* mean training loss over the last ~10% of steps */
    uint64_t rows_out; /* materialised item output rows */
    double bytes_per_row_out;
} psrec_train_result_t;

void psrec_train_defaults(psrec_train_conf_t *c);
psrec_err psrec_train(const psrec_train_conf_t *c, psrec_train_result_t *res, char *err) PSREC_MUST_CHECK;

#endif

/* bench_store.c: throughput of the parameter store (ps/store.h) on 1e6 keys of dim 64: pull and push
 * (SGD and row-wise Adagrad) rows/s with 1 and 2 threads (best of 3 runs), each thread sending batches of BATCH unique
 * random keys, against two baselines measured in the same program: a plain memcpy of the same bytes
 * (contiguous, the memory-bandwidth ceiling) and a gather of the same rows from a dense array by index
 * (what a pull costs without the hash table and locks). Usage: bench_store [rows_per_thread]. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/rng.h"
#include "ps/store.h"

#define NKEYS 1000000u
#define DIM 64
#define BATCH 4096
#define NLOCKS 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    psrec_store_t *s;
    uint32_t table;
    int op; /* 0 pull, 1 push, 2 dense gather */
    const uint64_t *ids;
    const float *dense;
    size_t rows;
    int id;
    pthread_barrier_t *bar;
    double t0, t1;
    int err;
} job_t;

static void *worker(void *p)
{
    job_t *j = p;
    psrec_rng_t r;
    psrec_rng_seed(&r, 99, (uint64_t)j->id);
    uint64_t *keys = malloc(BATCH * sizeof *keys);
    uint32_t *idx = malloc(BATCH * sizeof *idx);
    float *buf = malloc((size_t)BATCH * DIM * sizeof(float));
    for (size_t i = 0; i < (size_t)BATCH * DIM; i++)
        buf[i] = 1e-3f * (float)(i % 7);
    /* batches are consecutive windows of a random permutation walk: unique within a batch */
    uint32_t start = (uint32_t)psrec_rng_below(&r, NKEYS);
    pthread_barrier_wait(j->bar);
    j->t0 = now();
    for (size_t done = 0; done < j->rows; done += BATCH) {
        for (int i = 0; i < BATCH; i++) {
            idx[i] = (uint32_t)(((uint64_t)(start + (uint32_t)i) * 2654435761u) % NKEYS);
            keys[i] = j->ids[idx[i]];
        }
        start += BATCH;
        psrec_err rc = PSREC_OK;
        if (j->op == 0)
            rc = psrec_store_pull(j->s, j->table, keys, BATCH, buf);
        else if (j->op == 1)
            rc = psrec_store_push(j->s, j->table, keys, BATCH, buf);
        else
            for (int i = 0; i < BATCH; i++)
                memcpy(buf + (size_t)i * DIM, j->dense + (size_t)idx[i] * DIM, DIM * sizeof(float));
        if (rc) j->err++;
    }
    j->t1 = now();
    free(keys), free(idx), free(buf);
    return NULL;
}

static double run1(psrec_store_t *s, uint32_t table, int op, int nthreads, const uint64_t *ids, const float *dense,
                   size_t rows)
{
    pthread_t th[2];
    job_t jobs[2];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; i++) {
        jobs[i] =
            (job_t){.s = s, .table = table, .op = op, .ids = ids, .dense = dense, .rows = rows, .id = i, .bar = &bar};
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    double t0 = 1e300, t1 = 0;
    int err = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].t0 < t0) t0 = jobs[i].t0;
        if (jobs[i].t1 > t1) t1 = jobs[i].t1;
        err += jobs[i].err;
    }
    pthread_barrier_destroy(&bar);
    if (err) fprintf(stderr, "bench_store: %d failed calls\n", err);
    size_t batches = (rows + BATCH - 1) / BATCH;
    return (double)(batches * BATCH * (size_t)nthreads) / (t1 - t0);
}

/* Rows/s, best of 3 runs (the machine is shared; the best run is the least disturbed). */
static double run(psrec_store_t *s, uint32_t table, int op, int nthreads, const uint64_t *ids, const float *dense,
                  size_t rows)
{
    double best = 0;
    for (int k = 0; k < 3; k++) {
        double r = run1(s, table, op, nthreads, ids, dense, rows);
        if (r > best) best = r;
    }
    return best;
}

int main(int argc, char **argv)
{
    size_t rows = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    const size_t row_bytes = DIM * sizeof(float);
    psrec_store_t *s;
    char err[PSREC_ERRBUF];
    if (psrec_store_new(&s, 1, NLOCKS)) return 1;
    psrec_table_conf_t sgd = {
        .dim = DIM, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.01f}, .init = PSREC_INIT_UNIFORM, .init_scale = 0.1f};
    psrec_table_conf_t rwa = sgd;
    rwa.opt.kind = PSREC_OPT_ROWWISE_ADAGRAD;
    if (psrec_store_add_table(s, 0, &sgd, err) || psrec_store_add_table(s, 1, &rwa, err)) {
        fprintf(stderr, "bench_store: %s\n", err);
        return 1;
    }
    uint64_t *ids = malloc(NKEYS * sizeof *ids);
    float *dense = malloc((size_t)NKEYS * row_bytes), *dst = malloc((size_t)NKEYS * row_bytes);
    psrec_rng_t r;
    psrec_rng_seed(&r, 5, 5);
    for (uint32_t i = 0; i < NKEYS; i++)
        ids[i] = psrec_rng_u64(&r);
    for (size_t i = 0; i < (size_t)NKEYS * DIM; i++)
        dense[i] = (float)i, dst[i] = 0;

    /* create every row (first touch: hash insert + deterministic init) */
    float *tmp = malloc((size_t)BATCH * row_bytes);
    for (uint32_t t = 0; t < 2; t++) {
        double t0 = now();
        for (uint32_t b = 0; b < NKEYS; b += BATCH) {
            size_t m = NKEYS - b < BATCH ? NKEYS - b : BATCH;
            if (psrec_store_pull(s, t, ids + b, m, tmp)) return 1;
        }
        if (t == 0)
            printf("create  1e6 rows dim %d (first-touch pull):   %8.2f M rows/s, %.1f bytes/row (sgd)\n", DIM,
                   NKEYS / (now() - t0) / 1e6, psrec_store_bytes_per_row(s, 0));
    }
    free(tmp);

    /* baselines: contiguous memcpy of 1e6 rows (best of 3), and a random-row gather */
    double best = 1e300;
    for (int k = 0; k < 3; k++) {
        double t0 = now();
        memcpy(dst, dense, (size_t)NKEYS * row_bytes);
        double dt = now() - t0;
        if (dt < best) best = dt;
        dense[k] += dst[k * 7]; /* keep the copies observable */
    }
    double memcpy_rows = NKEYS / best;
    printf("memcpy  contiguous, 1 thread:                 %8.2f M rows/s (%.2f GB/s)\n", memcpy_rows / 1e6,
           memcpy_rows * row_bytes / 1e9);
    double gather1 = run(NULL, 0, 2, 1, ids, dense, rows);
    printf("gather  dense array by index, 1 thread:       %8.2f M rows/s\n", gather1 / 1e6);

    for (int nt = 1; nt <= 2; nt++) {
        double pull = run(s, 0, 0, nt, ids, NULL, rows);
        double push = run(s, 0, 1, nt, ids, NULL, rows);
        double push_rwa = run(s, 1, 1, nt, ids, NULL, rows);
        printf("store   %d thread%s pull:                     %8.2f M rows/s  (%.3f x memcpy, %.3f x gather)\n", nt,
               nt > 1 ? "s" : " ", pull / 1e6, pull / memcpy_rows, pull / gather1);
        printf("store   %d thread%s push sgd:                 %8.2f M rows/s  (%.3f x memcpy)\n", nt,
               nt > 1 ? "s" : " ", push / 1e6, push / memcpy_rows);
        printf("store   %d thread%s push rowwise-adagrad:     %8.2f M rows/s  (%.3f x memcpy)\n", nt,
               nt > 1 ? "s" : " ", push_rwa / 1e6, push_rwa / memcpy_rows);
    }
    free(ids), free(dense), free(dst);
    psrec_store_destroy(&s);
    return 0;
}

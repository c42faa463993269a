/* bench_rows.c: memory per row of one parameter server holding N item rows (default 10^7) at d=32
 * with row-wise Adagrad, filled through the real path (a remote client pushing to a server thread
 * over inproc). Reports the store's own accounting (psrec_store_bytes_per_row) next to an independent
 * measurement (growth of the process's resident memory divided by the rows), and the ideal payload
 * (4d + 4 bytes, or 2d + 4 with 16-bit rows) they are compared with. Usage: bench_rows [rows] [dim] [f32|f16|bf16]. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ps/server.h"
#include "worker/remote_client.h"

static double rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return (double)rss * (double)sysconf(_SC_PAGESIZE);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void *serve(void *p)
{
    char err[PSREC_ERRBUF];
    if (psrec_server_run(p, err)) fprintf(stderr, "server: %s\n", err);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t rows = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
    uint32_t dim = argc > 2 ? (uint32_t)atoi(argv[2]) : 32;
    psrec_row_dtype dt = PSREC_ROW_F32;
    if (argc > 3 && psrec_row_dtype_parse(argv[3], &dt)) {
        fprintf(stderr, "bench_rows: row type %s: want f32, f16 or bf16\n", argv[3]);
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
    void *zctx = zmq_ctx_new();
    uint32_t tid = 0;
    psrec_table_conf_t tc = {.dim = dim,
                             .opt = {.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.1f},
                             .init = PSREC_INIT_NORMAL,
                             .init_scale = 0.1f,
                             .dtype = dt};
    psrec_server_conf_t sc = {
        .bind = "inproc://bench-rows", .ntables = 1, .table_ids = &tid, .tables = &tc, .seed = 1, .compress = -1};
    psrec_server_t *srv;
    double rss0 = rss_bytes();
    if (psrec_server_new(&srv, zctx, &sc, err)) {
        fprintf(stderr, "bench_rows: %s\n", err);
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, serve, srv);
    Psrec__ShardMap map = PSREC__SHARD_MAP__INIT;
    uint32_t slots[PSREC_WIRE_NSLOTS] = {0};
    char *addr = "inproc://bench-rows";
    map.version = 1;
    map.nslots = PSREC_WIRE_NSLOTS;
    map.n_slot_server = PSREC_WIRE_NSLOTS;
    map.slot_server = slots;
    map.n_server_addr = 1;
    map.server_addr = &addr;
    psrec_remote_conf_t rc = {.job_id = 0, .rank = 0, .epoch = 1, .timeout_ms = 60000, .retries = 1};
    psrec_remote_t *r;
    if (psrec_remote_new(&r, zctx, &map, &rc, err)) {
        fprintf(stderr, "bench_rows: %s\n", err);
        return 1;
    }
    const size_t B = 65536;
    uint64_t *keys = malloc(B * 8);
    float *g = calloc(B * dim, 4);
    for (size_t i = 0; i < B * dim; i++)
        g[i] = 0.01f;
    double t0 = now();
    for (size_t at = 0; at < rows; at += B) {
        size_t n = rows - at < B ? rows - at : B;
        for (size_t i = 0; i < n; i++)
            keys[i] = (at + i) * 2654435761ULL; /* spread, distinct */
        if (psrec_remote_push(r, tid, keys, n, g, dim, err)) {
            fprintf(stderr, "bench_rows: push: %s\n", err);
            return 1;
        }
    }
    double t1 = now();
    psrec_store_t *st = psrec_server_store(srv);
    double rss1 = rss_bytes();
    uint64_t have = psrec_store_rows(st, tid);
    unsigned payload = 4 * psrec_store_row_width(st, tid);
    printf("rows %llu, dim %u, %s rows, row-wise Adagrad (1 state float): filled by pushes at %.2f M rows/s\n",
           (unsigned long long)have, dim, psrec_row_dtype_name(dt), have / (t1 - t0) / 1e6);
    printf("store accounting: %.1f bytes/row; resident memory growth: %.1f bytes/row; payload %u bytes\n",
           psrec_store_bytes_per_row(st, tid), (rss1 - rss0) / (double)have, payload);
    psrec_remote_destroy(&r);
    psrec_server_stop(srv);
    pthread_join(th, NULL);
    psrec_server_destroy(&srv);
    zmq_ctx_term(zctx);
    free(keys);
    free(g);
    return 0;
}

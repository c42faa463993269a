/* bench_snapshot.c: what a checkpoint of one server's shard costs (docs/operations.md).
 * A store of N rows (default 10^6) of d=32 with row-wise Adagrad is filled, then:
 *  - fork(): how long the serving thread is paused (the parent's side of fork, page tables copied);
 *  - the child's psrec_snapshot_write (LZ4 frame + durable file, fsync'ed) end to end, in rows/s and
 *    MB/s, against a peer in the same process: plain write() + fsync of the same number of raw bytes;
 *  - the parent pushing to the store while the child writes (copy-on-write cost): pushes/s during
 *    the snapshot against pushes/s without one;
 *  - psrec_snapshot_load of the file into a fresh store.
 * Usage: bench_snapshot [rows] [dir]. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/rng.h"
#include "ps/snapshot.h"
#include "ps/store.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define DIM 32
#define BATCH 4096

static psrec_store_t *make_store(void)
{
    psrec_store_t *s;
    char err[PSREC_ERRBUF];
    psrec_table_conf_t tc = {.dim = DIM,
                             .opt = {.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.05f},
                             .init = PSREC_INIT_NORMAL,
                             .init_scale = 0.1f};
    if (psrec_store_new(&s, 1, 64) || psrec_store_add_table(s, 0, &tc, err)) {
        fprintf(stderr, "store: %s\n", err);
        exit(1);
    }
    return s;
}

/* Pushes random-key batches for `secs`; returns rows pushed per second. */
static double push_for(psrec_store_t *s, uint64_t n, double secs, psrec_rng_t *rng)
{
    static uint64_t keys[BATCH];
    static float g[BATCH * DIM];
    for (int i = 0; i < BATCH * DIM; i++)
        g[i] = 0.01f;
    double t0 = now();
    uint64_t rows = 0;
    while (now() - t0 < secs) {
        for (int i = 0; i < BATCH; i++)
            keys[i] = psrec_rng_below(rng, n);
        if (psrec_store_push(s, 0, keys, BATCH, g)) exit(1);
        rows += BATCH;
    }
    return rows / (now() - t0);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    char path[512], raw[512], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/bench-snapshot.snap", dir);
    snprintf(raw, sizeof raw, "%s/bench-snapshot.raw", dir);
    psrec_store_t *s = make_store();
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 7, 1);
    float *g = calloc((size_t)BATCH * DIM, sizeof *g);
    uint64_t *keys = malloc(BATCH * sizeof *keys);
    for (uint64_t k = 0; k < n; k += BATCH) {
        size_t m = n - k < BATCH ? (size_t)(n - k) : BATCH;
        for (size_t i = 0; i < m; i++)
            keys[i] = k + i;
        if (psrec_store_push(s, 0, keys, m, g)) return 1;
    }
    uint32_t width = psrec_store_row_width(s, 0);
    printf("rows %llu, d=%d, row-wise Adagrad: %u floats per row (%.1f MB of rows)\n", (unsigned long long)n, DIM,
           width, n * width * 4 / 1e6);
    double base = push_for(s, n, 1.0, &rng);

    /* the snapshot in a fork()ed child, while the parent keeps pushing */
    double t0 = now();
    pid_t pid = fork();
    if (pid == 0) {
        psrec_snapshot_meta_t meta = {.job_id = 1, .round = 1, .rank = 0, .n_servers = 1};
        _exit(psrec_snapshot_write(path, s, &meta, NULL, 0, NULL, err) ? 1 : 0);
    }
    double fork_s = now() - t0;
    double during = 0;
    int st = 0;
    uint64_t rows = 0;
    double t1 = now();
    while (waitpid(pid, &st, WNOHANG) == 0) { /* push while the child writes */
        during += push_for(s, n, 0.05, &rng) * 0.05;
        rows++;
    }
    double write_s = now() - t0;
    double during_rate = during / (now() - t1);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "snapshot child failed\n");
        return 1;
    }
    struct stat sb;
    stat(path, &sb);

    /* peer: the same raw bytes with write() + fsync */
    size_t bytes = (size_t)n * width * 4;
    char *buf = malloc(1 << 20);
    memset(buf, 1, 1 << 20);
    t0 = now();
    int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (size_t done = 0; done < bytes; done += 1 << 20)
        if (write(fd, buf, bytes - done < (1u << 20) ? bytes - done : 1 << 20) < 0) return 1;
    fsync(fd);
    close(fd);
    double raw_s = now() - t0;
    unlink(raw);

    psrec_store_t *s2 = make_store();
    t0 = now();
    psrec_snapshot_meta_t meta;
    if (psrec_snapshot_load(path, s2, NULL, NULL, &meta, NULL, NULL, err)) {
        fprintf(stderr, "load: %s\n", err);
        return 1;
    }
    double load_s = now() - t0;
    printf("fork (the serving thread's pause): %.1f ms\n", fork_s * 1e3);
    printf("snapshot write (child, fsync'ed): %.2f s = %.2f M rows/s, %.0f MB/s of rows; file %.1f MB\n", write_s,
           n / write_s / 1e6, bytes / write_s / 1e6, sb.st_size / 1e6);
    printf("peer: write()+fsync of the same raw bytes: %.2f s (snapshot/peer time ratio %.2f)\n", raw_s,
           write_s / raw_s);
    printf("pushes while the child writes: %.2f M rows/s vs %.2f M rows/s without (ratio %.2f)\n", during_rate / 1e6,
           base / 1e6, during_rate / base);
    printf("load into a fresh store: %.2f s = %.2f M rows/s (%llu rows)\n", load_s, n / load_s / 1e6,
           (unsigned long long)psrec_store_rows(s2, 0));
    unlink(path);
    (void)rows;
    psrec_store_destroy(&s);
    psrec_store_destroy(&s2);
    free(buf);
    free(g);
    free(keys);
    return 0;
}

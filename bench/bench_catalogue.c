/* bench_catalogue.c: resident memory a worker process pays for the item catalogue and its negative
 * sampler at N items (default 10^7, dense ids, Zipf-like counts), each case in a fresh child process
 * so the growth of its resident set is the case's own. Growth is split as /proc/self/status does:
 * RssAnon (private to the process: paid once per worker process) and RssFile (pages of mapped files:
 * one copy in the page cache per machine, shared by its workers). Each case runs in this program
 * re-executed (--case K DIR), so no heap is inherited. Cases:
 *   old uniform / old popularity: a version-1 freq.bin loaded through the compatibility path (malloc'ed
 *     ids + counts), plus the tables the sampler used to build, rebuilt here the same way (a copy of the
 *     ids, and for popularity a key->index idmap, a log Q array, a double prob array and a uint32 alias);
 *   new uniform: the version-2 dense freq.bin mapped, a dense uniform sampler;
 *   new popularity (memory): mapped freq.bin, alias table built in this process;
 *   new popularity (cache): mapped freq.bin, alias table mapped from the cache file (built beforehand).
 * Every case then draws 10^6 negatives (S = 1000, 1000 batches) so the pages a trainer touches are
 * resident. Usage: bench_catalogue [items]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/data_freq.h"
#include "common/durable.h"
#include "common/endian.h"
#include "common/idmap.h"
#include "worker/sampler.h"

typedef struct {
    double anon, file; /* bytes */
} rss_t;

static rss_t rss_now(void)
{
    rss_t r = {0, 0};
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return r;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        long kb;
        if (sscanf(line, "RssAnon: %ld kB", &kb) == 1) r.anon = kb * 1024.0;
        if (sscanf(line, "RssFile: %ld kB", &kb) == 1) r.file = kb * 1024.0;
    }
    fclose(f);
    return r;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { OLD_UNIFORM, OLD_POPULARITY, NEW_UNIFORM, NEW_POP_MEMORY, NEW_POP_CACHE, NCASES };
static const char *const case_name[NCASES] = {"old uniform (v1 + copies)", "old popularity (v1 + copies)",
                                              "new uniform (mapped, dense)", "new popularity (in-memory alias)",
                                              "new popularity (mapped alias cache)"};

typedef struct {
    double anon, file, seconds;
    int ok;
} result_t;

static int die(const char *what, const char *err)
{
    fprintf(stderr, "bench_catalogue: %s: %s\n", what, err);
    return 1;
}

/* The old sampler's per-process tables, built as worker/sampler.c did before it borrowed the catalogue. */
static int old_tables(const psrec_freq_t *f, int popularity, double alpha)
{
    const size_t n = f->n;
    uint64_t *items = malloc(n * 8);
    if (!items) return 1;
    memcpy(items, f->ids, n * 8);
    if (!popularity) return 0; /* kept until exit, as a live sampler would */
    psrec_idmap_t *index;
    if (psrec_idmap_new(&index, n)) return 1;
    for (size_t j = 0; j < n; j++)
        if (!psrec_idmap_upsert(index, items[j], j, NULL)) return 1;
    double *logq = malloc(n * 8), *prob = malloc(n * 8);
    uint32_t *alias = malloc(n * 4);
    if (!logq || !prob || !alias) return 1;
    for (size_t j = 0; j < n; j++) {
        logq[j] = alpha * log((double)f->counts[j] + 1.0); /* not normalised: the memory is the point */
        prob[j] = 1.0;
        alias[j] = (uint32_t)j;
    }
    return 0;
}

static int run_case(int which, const char *dir, double *secs)
{
    char path[512], err[PSREC_ERRBUF];
    const double alpha = 0.75;
    double t0 = now();
    psrec_freq_t f;
    snprintf(path, sizeof path, "%s/%s", dir, which <= OLD_POPULARITY ? "freq-v1.bin" : "freq.bin");
    if (psrec_freq_load(&f, path, err)) return die("load", err);
    psrec_sampler_conf_t c = {.n_items = f.n, .items = f.ids, .counts = f.counts, .dense = f.dense, .alpha = alpha};
    psrec_sampler_t *s = NULL;
    char cache[512];
    snprintf(cache, sizeof cache, "%s/alias.bin", dir);
    switch (which) {
    case OLD_UNIFORM:
    case OLD_POPULARITY:
        if (old_tables(&f, which == OLD_POPULARITY, alpha)) return die("old tables", "out of memory");
        c.kind = PSREC_SAMPLER_UNIFORM;
        c.dense = 0;
        break;
    case NEW_UNIFORM: c.kind = PSREC_SAMPLER_UNIFORM; break;
    case NEW_POP_MEMORY: c.kind = PSREC_SAMPLER_POPULARITY; break;
    case NEW_POP_CACHE:
        c.kind = PSREC_SAMPLER_POPULARITY;
        c.cache_path = cache;
        break;
    }
    if (psrec_sampler_new(&s, &c, err)) return die("sampler", err);
    if (which == NEW_POP_CACHE && psrec_sampler_alias_origin(s) != PSREC_ALIAS_CACHE_HIT)
        return die("sampler", "the alias cache was not reused");
    *secs = now() - t0;
    enum { S = 1000, BATCHES = 1000 };
    static uint64_t keys[S];
    static float logE[S];
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 1, 0);
    for (int b = 0; b < BATCHES; b++) {
        size_t got;
        if (psrec_sampler_draw(s, &rng, S, NULL, 0, keys, logE, S, &got)) return die("draw", "failed");
        for (size_t i = 0; i < got; i += 50) /* the positives' log E read the counts too */
            (void)psrec_sampler_log_expected(s, keys[i], S, 0);
    }
    return 0; /* sampler and catalogue stay live until the child exits */
}

/* Runs one case in a fresh process (this program re-executed: no heap inherited from the parent). */
static result_t measure(int which, const char *dir)
{
    result_t r = {0, 0, 0, 0};
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/proc/%ld/exe --case %d '%s'", (long)getpid(), which, dir);
    FILE *p = popen(cmd, "r");
    if (!p) return r;
    if (fscanf(p, "%lf %lf %lf", &r.anon, &r.file, &r.seconds) == 3) r.ok = 1;
    if (pclose(p) != 0) r.ok = 0;
    return r;
}

static int child(int which, const char *dir)
{
    rss_t a = rss_now();
    double secs;
    if (run_case(which, dir, &secs)) return 1;
    rss_t b = rss_now();
    printf("%.0f %.0f %.6f\n", b.anon - a.anon, b.file - a.file, secs);
    return 0;
}

static int write_v1(const char *path, const uint64_t *counts, size_t n, char *err)
{
    psrec_dfile_t *d;
    psrec_err rc = psrec_dfile_open(&d, path, err);
    if (rc) return rc;
    unsigned char buf[1 << 16];
    memcpy(buf, "PSRECFQ1", 8);
    psrec_put64(buf + 8, n);
    size_t used = 16;
    for (size_t i = 0; i < n && !rc; i++) {
        if (used + 16 > sizeof buf) {
            rc = psrec_dfile_write(d, buf, used, err);
            used = 0;
        }
        psrec_put64(buf + used, i);
        psrec_put64(buf + used + 8, counts[i]);
        used += 16;
    }
    if (!rc) rc = psrec_dfile_write(d, buf, used, err);
    return psrec_dfile_finish(&d, rc, err);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--case") == 0) return child(atoi(argv[2]), argv[3]);
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 10000000;
    if (n < 1000) n = 1000;
    char dir[] = "/tmp/psrec-bench-cat-XXXXXX", path[512], err[PSREC_ERRBUF];
    if (!mkdtemp(dir)) return die("mkdtemp", "failed");
    /* Zipf-like counts: c_j = 10^6 / (j + 1) over a shuffled order, so most of the tail is 0..9 */
    uint64_t *counts = malloc(n * 8);
    if (!counts) return die("counts", "out of memory");
    for (size_t j = 0; j < n; j++)
        counts[j] = (uint64_t)(1e6 / (double)(psrec_mix64(j) % n + 1));
    psrec_freq_t f = {.n = n, .counts = counts, .dense = 1};
    double t0 = now();
    snprintf(path, sizeof path, "%s/freq.bin", dir);
    if (psrec_freq_save(&f, path, err)) return die("save", err);
    double t_save = now() - t0;
    snprintf(path, sizeof path, "%s/freq-v1.bin", dir);
    if (write_v1(path, counts, n, err)) return die("save v1", err);
    free(counts);
    /* the alias cache, built once (as the first worker of a machine would) */
    psrec_freq_t g;
    snprintf(path, sizeof path, "%s/freq.bin", dir);
    if (psrec_freq_load(&g, path, err)) return die("load", err);
    char cache[512];
    snprintf(cache, sizeof cache, "%s/alias.bin", dir);
    psrec_sampler_conf_t c = {.kind = PSREC_SAMPLER_POPULARITY,
                              .n_items = n,
                              .counts = g.counts,
                              .dense = 1,
                              .alpha = 0.75,
                              .cache_path = cache};
    psrec_sampler_t *s;
    t0 = now();
    if (psrec_sampler_new(&s, &c, err)) return die("sampler", err);
    double t_cache = now() - t0;
    if (psrec_sampler_alias_origin(s) != PSREC_ALIAS_CACHE_BUILT) return die("alias cache", "not written");
    psrec_sampler_destroy(&s);
    psrec_freq_free(&g);
    printf("catalogue: %zu items, dense; freq.bin v2 %.1f MB (saved in %.2f s), v1 %.1f MB; alias cache %.1f MB "
           "(built in %.2f s)\n",
           n, (32.0 + 8.0 * (double)n) / 1e6, t_save, (16.0 + 16.0 * (double)n) / 1e6, (40.0 + 8.0 * (double)n) / 1e6,
           t_cache);
    printf("per worker process after load + sampler + 10^6 draws: private (RssAnon) and shared (RssFile) growth\n");
    result_t r[NCASES];
    for (int k = 0; k < NCASES; k++) {
        r[k] = measure(k, dir);
        if (!r[k].ok) return die(case_name[k], "the child failed");
        printf("  %-38s private %8.1f MB (%5.1f B/item)  shared %7.1f MB (%4.1f B/item)  setup %.2f s\n", case_name[k],
               r[k].anon / 1e6, r[k].anon / (double)n, r[k].file / 1e6, r[k].file / (double)n, r[k].seconds);
    }
    double pu = r[NEW_UNIFORM].anon > 1e6 ? r[NEW_UNIFORM].anon : 1e6; /* below 1 MB: noise */
    double pc = r[NEW_POP_CACHE].anon > 1e6 ? r[NEW_POP_CACHE].anon : 1e6;
    printf("private-memory ratio old/new: uniform >= %.0fx, popularity %.1fx (in-memory alias), >= %.0fx (mapped "
           "cache) (a new private growth under 1 MB counted as 1 MB)\n",
           r[OLD_UNIFORM].anon / pu, r[OLD_POPULARITY].anon / r[NEW_POP_MEMORY].anon, r[OLD_POPULARITY].anon / pc);
    printf("with P worker processes on a machine: old P x private; new P x private + one shared copy\n");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}

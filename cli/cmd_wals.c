/* cmd_wals.c: `psrec wals`: the matrix-factorization baseline (ALGORITHMS.md §6). Reads a text
 * training file (each line is one user; its positives and hist ids are its observed items, weight =
 * the positive's weight rescaled to mean 1 over the line's positives, 1 for history ids; an item in
 * both keeps the larger weight), runs WALS, and writes a model directory with kind=wals that eval,
 * export and recommend load (queries are folded in on V from their hist slot).
 * Thread model: main thread; psrec_wals_train uses --threads threads. */
#include <cblas.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/data_text.h"
#include "common/grow.h"
#include "common/idmap.h"
#include "worker/model.h"
#include "worker/wals.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: psrec wals --train FILE --model DIR [options]\n"
               "  --train FILE   text examples (one user per line; pos and hist ids are observations)\n"
               "  --model DIR    where to write the model (kind=wals: queries folded in from hist)\n"
               "  --dim D        embedding size (default 32)\n"
               "  --w0 X         weight of every cell, i.e. unobserved weight (default 0.1)\n"
               "  --lambda X     L2 regularization (default 0.1)\n"
               "  --alpha X      confidence per unit of observation weight (default 1)\n"
               "  --sweeps N     alternating sweeps (default 10)\n"
               "  --threads N    (default 2)   --seed N (default 1)\n");
}

typedef struct {
    size_t nu, nnz, cap_u, cap_idx, cap_w;
    size_t *off;
    uint32_t *idx;
    float *w;
    size_t ni, cap_ids, cap_sr, cap_sa;
    uint64_t *ids; /* item index -> id */
    psrec_idmap_t *map;
    size_t *seen_row, *seen_at; /* per item: last row observing it, and where (dedupe) */
    /* the users' other feature slots (e.g. region), for the cold-start heuristic */
    psrec_schema_t schema;
    size_t nf, cap_fu, cap_fs, cap_fi;
    size_t *foff; /* per user: its features [foff[u], foff[u+1]) */
    uint8_t *fslot;
    uint64_t *fid;
} obs_t;

static psrec_err observe(obs_t *o, uint64_t id, float w)
{
    int found;
    uint64_t j = psrec_idmap_get(o->map, id, &found);
    if (!found) {
        if (psrec_grow((void **)&o->ids, &o->cap_ids, o->ni + 1, sizeof *o->ids) ||
            psrec_grow((void **)&o->seen_row, &o->cap_sr, o->ni + 1, sizeof *o->seen_row) ||
            psrec_grow((void **)&o->seen_at, &o->cap_sa, o->ni + 1, sizeof *o->seen_at))
            return PSREC_ENOMEM;
        j = o->ni++;
        o->ids[j] = id;
        o->seen_row[j] = SIZE_MAX;
        if (psrec_idmap_put(o->map, id, j)) return PSREC_ENOMEM;
    }
    if (o->seen_row[j] == o->nu) { /* already observed by this user: keep the larger weight */
        float *pw = &o->w[o->seen_at[j]];
        if (w > *pw) *pw = w;
        return PSREC_OK;
    }
    if (psrec_grow((void **)&o->idx, &o->cap_idx, o->nnz + 1, sizeof *o->idx) ||
        psrec_grow((void **)&o->w, &o->cap_w, o->nnz + 1, sizeof *o->w))
        return PSREC_ENOMEM;
    o->seen_row[j] = o->nu;
    o->seen_at[j] = o->nnz;
    o->idx[o->nnz] = (uint32_t)j;
    o->w[o->nnz++] = w;
    return PSREC_OK;
}

static psrec_err read_obs(const char *path, obs_t *o, char *err)
{
    psrec_schema_t schema = {0};
    psrec_text_opts_t opts = {0};
    psrec_text_reader_t *r = NULL;
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    psrec_err rc = psrec_idmap_new(&o->map, 1024);
    if (rc) return psrec_fail(err, rc, "out of memory");
    if ((rc = psrec_text_open(&r, path, &schema, &opts, err))) return rc;
    for (;;) {
        size_t got = 0;
        psrec_batch_clear(&b);
        if ((rc = psrec_text_read(r, &b, 4096, &got, err)) || got == 0) break;
        int hist = psrec_schema_hist(&schema);
        for (size_t i = 0; !rc && i < b.n; i++) {
            if (psrec_grow((void **)&o->off, &o->cap_u, o->nu + 2, sizeof *o->off)) {
                rc = PSREC_ENOMEM;
                break;
            }
            o->off[o->nu] = o->nnz;
            uint32_t np = b.pos_off[i + 1] - b.pos_off[i];
            for (uint32_t k = b.pos_off[i]; !rc && k < b.pos_off[i + 1]; k++)
                rc = observe(o, b.pos_id[k], b.pos_w[k] * (float)np);
            if (hist >= 0 && hist < b.nslots)
                for (uint32_t k = b.slot_off[hist][i]; !rc && k < b.slot_off[hist][i + 1]; k++)
                    rc = observe(o, b.slot_id[hist][k], 1.0f);
            if (!rc && psrec_grow((void **)&o->foff, &o->cap_fu, o->nu + 2, sizeof *o->foff)) rc = PSREC_ENOMEM;
            if (!rc) o->foff[o->nu] = o->nf;
            for (int sl = 0; !rc && sl < b.nslots; sl++)
                for (uint32_t k = b.slot_off[sl][i]; !rc && sl != hist && k < b.slot_off[sl][i + 1]; k++) {
                    if (psrec_grow((void **)&o->fslot, &o->cap_fs, o->nf + 1, sizeof *o->fslot) ||
                        psrec_grow((void **)&o->fid, &o->cap_fi, o->nf + 1, sizeof *o->fid)) {
                        rc = PSREC_ENOMEM;
                        break;
                    }
                    o->fslot[o->nf] = (uint8_t)sl;
                    o->fid[o->nf++] = b.slot_id[sl][k];
                }
            o->nu++;
            o->off[o->nu] = o->nnz;
            if (!rc) o->foff[o->nu] = o->nf;
        }
        if (rc) {
            psrec_fail(err, rc, "out of memory reading %s", path);
            break;
        }
    }
    psrec_text_close(&r);
    psrec_batch_free(&b);
    o->schema = schema;
    if (!rc && (o->nu == 0 || o->ni == 0)) rc = psrec_fail(err, PSREC_EINVAL, "%s: no observations", path);
    return rc;
}

/* Cold start by the reference page's heuristic: a query with no history gets the average embedding of
 * the training users that share its feature values. Per feature slot, the mean U row of the users
 * carrying each id. */
static psrec_err feature_means(const obs_t *o, const float *U, int d, psrec_wals_feature_t *feats, int *nfeat)
{
    *nfeat = 0;
    int hist = psrec_schema_hist(&o->schema);
    for (int sl = 0; sl < o->schema.nslots; sl++) {
        if (sl == hist) continue;
        psrec_idmap_t *map;
        if (psrec_idmap_new(&map, 64)) return PSREC_ENOMEM;
        psrec_wals_feature_t *f = &feats[(*nfeat)++];
        *f = (psrec_wals_feature_t){.slot = sl};
        double *sum = NULL;
        size_t cap = 0, *cnt = NULL;
        psrec_err rc = PSREC_OK;
        for (size_t u = 0; !rc && u < o->nu; u++)
            for (size_t k = o->foff[u]; !rc && k < o->foff[u + 1]; k++) {
                if (o->fslot[k] != sl) continue;
                int ins;
                uint64_t *at = psrec_idmap_upsert(map, o->fid[k], f->n, &ins);
                if (!at) rc = PSREC_ENOMEM;
                if (!rc && ins) {
                    if (f->n == cap) {
                        size_t nc = cap ? cap * 2 : 64;
                        double *s2 = realloc(sum, nc * (size_t)d * sizeof *s2);
                        if (s2) sum = s2;
                        size_t *c2 = s2 ? realloc(cnt, nc * sizeof *c2) : NULL;
                        if (c2) cnt = c2;
                        uint64_t *k2 = c2 ? realloc(f->keys, nc * sizeof *k2) : NULL;
                        if (k2) f->keys = k2;
                        if (!k2) rc = PSREC_ENOMEM;
                        cap = nc;
                    }
                    if (!rc) {
                        memset(sum + f->n * (size_t)d, 0, (size_t)d * sizeof *sum);
                        cnt[f->n] = 0;
                        f->keys[f->n++] = o->fid[k];
                    }
                }
                if (!rc) {
                    double *acc = sum + *at * (size_t)d;
                    for (int j = 0; j < d; j++)
                        acc[j] += U[u * (size_t)d + j];
                    cnt[*at]++;
                }
            }
        if (!rc && f->n && !(f->values = malloc(f->n * (size_t)d * sizeof *f->values))) rc = PSREC_ENOMEM;
        for (size_t i = 0; !rc && i < f->n; i++)
            for (int j = 0; j < d; j++)
                f->values[i * (size_t)d + j] = (float)(sum[i * (size_t)d + j] / (double)cnt[i]);
        free(sum);
        free(cnt);
        psrec_idmap_destroy(&map);
        if (rc) return rc;
    }
    return PSREC_OK;
}

typedef struct {
    uint64_t id;
    uint32_t j;
} idj_t;

static int cmp_idj(const void *a, const void *b)
{
    uint64_t x = ((const idj_t *)a)->id, y = ((const idj_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* Renumbers items so indexes follow ascending ids (the model's table order). */
static psrec_err sort_items(obs_t *o)
{
    idj_t *p = malloc(o->ni * sizeof *p + 1);
    uint32_t *rank = malloc(o->ni * sizeof *rank + 1);
    if (!p || !rank) {
        free(p);
        free(rank);
        return PSREC_ENOMEM;
    }
    for (size_t j = 0; j < o->ni; j++)
        p[j] = (idj_t){o->ids[j], (uint32_t)j};
    qsort(p, o->ni, sizeof *p, cmp_idj);
    for (size_t j = 0; j < o->ni; j++) {
        rank[p[j].j] = (uint32_t)j;
        o->ids[j] = p[j].id;
    }
    for (size_t k = 0; k < o->nnz; k++)
        o->idx[k] = rank[o->idx[k]];
    free(p);
    free(rank);
    return PSREC_OK;
}

static void progress(void *ctx, int sweep, double f)
{
    printf("sweep %d objective %.6g\n", sweep, f);
    fflush(stdout);
}

int psrec_cmd_wals(int argc, char **argv)
{
    const char *cmd = "wals", *train = NULL, *model = NULL;
    psrec_wals_conf_t c;
    psrec_wals_defaults(&c);
    static const struct option opts[] = {
        {"train", 1, 0, 't'},  {"model", 1, 0, 'm'}, {"dim", 1, 0, 'd'},    {"w0", 1, 0, 'w'},
        {"lambda", 1, 0, 'l'}, {"alpha", 1, 0, 'a'}, {"sweeps", 1, 0, 's'}, {"threads", 1, 0, 'T'},
        {"seed", 1, 0, 'S'},   {"help", 0, 0, 'h'},  {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 't': train = optarg; break;
        case 'm': model = optarg; break;
        case 'd':
            if (psrec_cli_int(cmd, "--dim", optarg, 1, 4096, &c.dim)) return 2;
            break;
        case 'w':
            if (psrec_cli_double(cmd, "--w0", optarg, 0, 1e9, &c.w0)) return 2;
            break;
        case 'l':
            if (psrec_cli_double(cmd, "--lambda", optarg, 1e-12, 1e9, &c.lambda)) return 2;
            break;
        case 'a':
            if (psrec_cli_double(cmd, "--alpha", optarg, 0, 1e9, &c.alpha)) return 2;
            break;
        case 's':
            if (psrec_cli_int(cmd, "--sweeps", optarg, 1, 100000, &c.sweeps)) return 2;
            break;
        case 'T':
            if (psrec_cli_int(cmd, "--threads", optarg, 1, 256, &c.threads)) return 2;
            break;
        case 'S':
            if (psrec_cli_u64(cmd, "--seed", optarg, &c.seed)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!train || !model || optind < argc) {
        fprintf(stderr, "psrec wals: --train and --model are required\n");
        usage(stderr);
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
    obs_t ob = {0};
    float *U = NULL, *V = NULL;
    psrec_err rc = read_obs(train, &ob, err);
    if (!rc && (rc = sort_items(&ob))) psrec_fail(err, rc, "out of memory");
    if (!rc) {
        printf("%zu users, %zu items, %zu observations\n", ob.nu, ob.ni, ob.nnz);
        U = malloc(ob.nu * (size_t)c.dim * sizeof *U);
        V = malloc(ob.ni * (size_t)c.dim * sizeof *V);
        if (!U || !V) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory for U and V");
    }
    psrec_wals_csr_t csr = {.n_rows = ob.nu, .n_cols = ob.ni, .off = ob.off, .idx = ob.idx, .w = ob.w};
    /* WALS runs its own row threads; OpenBLAS's threads inside each small solve would oversubscribe the
     * cores (measured: 4.9 s against 0.8 s per sweep at d = 64 on 2 cores, docs/seed-comparison.md) */
    if (c.threads > 1) openblas_set_num_threads(1);
    if (!rc) rc = psrec_wals_train(&c, &csr, U, V, progress, NULL, err);
    psrec_wals_feature_t feats[PSREC_MAX_SLOTS];
    int nfeat = 0;
    memset(feats, 0, sizeof feats);
    if (!rc && (rc = feature_means(&ob, U, c.dim, feats, &nfeat))) psrec_fail(err, rc, "out of memory");
    if (!rc) rc = psrec_model_save_wals(model, &c, &ob.schema, ob.ids, V, ob.ni, feats, nfeat, err);
    for (int i = 0; i < PSREC_MAX_SLOTS; i++) {
        free(feats[i].keys);
        free(feats[i].values);
    }
    if (!rc) printf("model written to %s\n", model);
    free(U);
    free(V);
    free(ob.off);
    free(ob.idx);
    free(ob.w);
    free(ob.ids);
    free(ob.seen_row);
    free(ob.seen_at);
    free(ob.foff);
    free(ob.fslot);
    free(ob.fid);
    psrec_idmap_destroy(&ob.map);
    if (rc) {
        fprintf(stderr, "psrec wals: %s\n", err[0] ? err : psrec_strerror(rc));
        return 1;
    }
    return 0;
}

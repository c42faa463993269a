/* cmd_eval.c: `psrec eval`: load a model, embed every test query, rank the whole catalogue, print
 * Recall@K, NDCG@K, MRR and (with an items file and `_home` sets) the folding metrics.
 * Thread model: main thread; psrec_eval_run uses --threads threads. */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/batch.h"
#include "common/data_gen.h"
#include "common/data_text.h"
#include "common/idmap.h"
#include "worker/eval.h"
#include "worker/model.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: psrec eval --model DIR --test FILE [--items items.tsv] [--k K] [--threads N]\n"
               "                  [--keep-history] [--json] [--skip-bad]\n"
               "History items are excluded from the ranking unless --keep-history. With --items (id<TAB>category)\n"
               "and `_home=` sets in the test lines, the folding metrics are reported too.\n");
}

/* Reads every line of a query file into b with the model's schema. */
psrec_err psrec_cli_read_queries(const char *path, const psrec_schema_t *model_schema, int require_pos, int skip_bad,
                                 psrec_batch_t *b, char *err);
psrec_err psrec_cli_read_queries(const char *path, const psrec_schema_t *model_schema, int require_pos, int skip_bad,
                                 psrec_batch_t *b, char *err)
{
    psrec_schema_t schema = *model_schema;
    psrec_text_opts_t o = {.skip_bad = skip_bad, .fixed_schema = 1, .ignore_unknown = 1, .require_pos = require_pos};
    psrec_text_reader_t *r;
    psrec_batch_init(b, schema.nslots);
    psrec_err rc = psrec_text_open(&r, path, &schema, &o, err);
    if (rc) return rc;
    size_t got;
    do {
        rc = psrec_text_read(r, b, 4096, &got, err);
    } while (!rc && got > 0);
    psrec_text_close(&r);
    return rc;
}

int psrec_cmd_eval(int argc, char **argv)
{
    const char *model_dir = NULL, *test = NULL, *items = NULL;
    int k = 10, threads = 2, keep_hist = 0, json = 0, skip_bad = 0;
    static const struct option opts[] = {{"model", 1, 0, 'm'}, {"test", 1, 0, 't'},     {"items", 1, 0, 'i'},
                                         {"k", 1, 0, 'k'},     {"threads", 1, 0, 'w'},  {"keep-history", 0, 0, 'H'},
                                         {"json", 0, 0, 'j'},  {"skip-bad", 0, 0, 's'}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm': model_dir = optarg; break;
        case 't': test = optarg; break;
        case 'i': items = optarg; break;
        case 'k':
            if (psrec_cli_int("eval", "--k", optarg, 1, 100000, &k)) return 2;
            break;
        case 'w':
            if (psrec_cli_int("eval", "--threads", optarg, 1, 256, &threads)) return 2;
            break;
        case 'H': keep_hist = 1; break;
        case 'j': json = 1; break;
        case 's': skip_bad = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!model_dir || !test) {
        usage(stderr);
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
    psrec_model_t *m = NULL;
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    float *U = NULL;
    int32_t *cat = NULL;
    uint32_t *rel_off = NULL, *rel_idx = NULL, *ex_off = NULL, *ex_idx = NULL;
    psrec_eval_result_t res = {0};
    psrec_err rc = psrec_model_load(&m, model_dir, err);
    if (!rc) rc = psrec_cli_read_queries(test, &psrec_model_conf(m)->schema, 1, skip_bad, &b, err);
    const uint64_t *ids = NULL;
    const float *V = NULL;
    size_t N = m ? psrec_model_items(m, &ids, &V) : 0;
    int d = m ? psrec_model_conf(m)->dim : 0;
    if (!rc && b.n == 0) rc = psrec_fail(err, PSREC_EINVAL, "%s: no test queries", test);
    if (!rc) {
        U = malloc(b.n * (size_t)d * sizeof(float) + 1);
        rc = U ? psrec_model_embed(m, &b, U) : PSREC_ENOMEM;
        if (rc) psrec_fail(err, rc, "embedding the queries: %s", psrec_strerror(rc));
    }
    if (!rc) { /* relevant and excluded items as catalogue indexes; unknown ids are dropped */
        int hist = psrec_schema_hist(&psrec_model_conf(m)->schema);
        size_t np = b.pos_off[b.n], nh = hist >= 0 ? b.slot_off[hist][b.n] : 0;
        rel_off = malloc((b.n + 1) * 4);
        rel_idx = malloc((np + 1) * 4);
        ex_off = malloc((b.n + 1) * 4);
        ex_idx = malloc((nh + 1) * 4);
        if (!rel_off || !rel_idx || !ex_off || !ex_idx) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
        size_t nr = 0, ne = 0;
        for (size_t q = 0; !rc && q < b.n; q++) {
            rel_off[q] = (uint32_t)nr;
            ex_off[q] = (uint32_t)ne;
            for (uint32_t j = b.pos_off[q]; j < b.pos_off[q + 1]; j++) {
                int64_t i = psrec_model_item_index(m, b.pos_id[j]);
                if (i >= 0) rel_idx[nr++] = (uint32_t)i;
            }
            if (hist >= 0 && !keep_hist)
                for (uint32_t j = b.slot_off[hist][q]; j < b.slot_off[hist][q + 1]; j++) {
                    int64_t i = psrec_model_item_index(m, b.slot_id[hist][j]);
                    if (i >= 0) ex_idx[ne++] = (uint32_t)i;
                }
        }
        if (!rc) {
            rel_off[b.n] = (uint32_t)nr;
            ex_off[b.n] = (uint32_t)ne;
        }
    }
    if (!rc && items) {
        uint64_t *iid = NULL;
        int32_t *icat = NULL;
        size_t ni = 0;
        rc = psrec_items_load(items, &iid, &icat, &ni, err);
        cat = rc ? NULL : malloc(N * sizeof *cat + 1);
        if (!rc && !cat) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
        for (size_t j = 0; !rc && j < N; j++)
            cat[j] = -1;
        for (size_t j = 0; !rc && j < ni; j++) {
            int64_t i = psrec_model_item_index(m, iid[j]);
            if (i >= 0) cat[i] = icat[j];
        }
        free(iid);
        free(icat);
    }
    if (!rc) {
        int has_home = b.home_off && b.home_off[b.n] > 0;
        psrec_eval_in_t in = {.Q = b.n,
                              .N = N,
                              .d = d,
                              .U = U,
                              .V = V,
                              .rel_off = rel_off,
                              .rel_idx = rel_idx,
                              .excl_off = ex_off,
                              .excl_idx = ex_idx,
                              .item_cat = has_home ? cat : NULL,
                              .home_off = has_home ? b.home_off : NULL,
                              .home_cat = has_home ? b.home_cat : NULL,
                              .k = k,
                              .threads = threads};
        /* eval runs its own threads; OpenBLAS's would only oversubscribe the cores */
        if (threads > 1) openblas_set_num_threads(1);
        rc = psrec_eval_run(&in, &res);
        if (rc) psrec_fail(err, rc, "evaluation failed: %s", psrec_strerror(rc));
    }
    if (!rc) {
        if (json) {
            printf("{\"queries\": %zu, \"skipped\": %zu, \"k\": %d, \"recall\": %.6f, \"ndcg\": %.6f, \"mrr\": %.6f",
                   res.n_queries, res.n_skipped, k, res.recall, res.ndcg, res.mrr);
            if (res.has_fold)
                printf(", \"fold\": %.6f, \"chance\": %.6f, \"fold_ratio\": %.6f, \"fold_auc\": %.6f, "
                       "\"foreign_top_share\": %.6f",
                       res.fold, res.chance, res.fold_ratio, res.fold_auc, res.foreign_top_share);
            printf("}\n");
        } else {
            printf("queries    %zu (%zu skipped: no relevant item in the catalogue)\n", res.n_queries, res.n_skipped);
            printf("items      %zu\n", N);
            printf("Recall@%-3d %.4f\nNDCG@%-5d %.4f\nMRR        %.4f\n", k, res.recall, k, res.ndcg, res.mrr);
            if (res.has_fold)
                printf("Fold@%-5d %.4f\nChance     %.4f\nFoldRatio  %.4f\nFoldAUC    %.4f\nTopForeign %.4f\n", k,
                       res.fold, res.chance, res.fold_ratio, res.fold_auc, res.foreign_top_share);
        }
    }
    free(U);
    free(cat);
    free(rel_off);
    free(rel_idx);
    free(ex_off);
    free(ex_idx);
    psrec_batch_free(&b);
    psrec_model_destroy(&m);
    if (rc) {
        fprintf(stderr, "psrec eval: %s\n", err[0] ? err : psrec_strerror(rc));
        return 1;
    }
    return 0;
}

/* cmd_recommend.c: `psrec recommend`: top-K items for query lines (the data format, positives
 * optional) from a file or stdin, one output line per query: "id:score id:score ...". A file is
 * processed in chunks of 256 queries; a pipe one query at a time, so each request is answered as it
 * arrives. A malformed line stops with file:line after answering every query before it.
 * Thread model: main thread. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/data_text.h"
#include "worker/eval.h"
#include "worker/model.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: psrec recommend --model DIR [--input FILE|-] [--k K] [--keep-history] [--skip-bad]\n"
               "Reads query lines such as \"hist=3,4,5 region=2\" and prints the top K items of each\n"
               "(\"id:score ...\"); items in the query's history are left out unless --keep-history.\n");
}

static psrec_err answer(const psrec_model_t *m, const psrec_batch_t *b, int k, int keep_hist, char *err)
{
    const uint64_t *ids;
    const float *V;
    size_t N = psrec_model_items(m, &ids, &V);
    int d = psrec_model_conf(m)->dim, hist = psrec_schema_hist(&psrec_model_conf(m)->schema);
    size_t nh = hist >= 0 ? b->slot_off[hist][b->n] : 0;
    float *U = malloc(b->n * (size_t)d * 4 + 1), *sc = malloc(b->n * (size_t)k * 4 + 1);
    uint32_t *idx = malloc(b->n * (size_t)k * 4 + 1), *eo = malloc((b->n + 1) * 4), *ei = malloc(nh * 4 + 1);
    psrec_err rc = (U && sc && idx && eo && ei) ? PSREC_OK : psrec_fail(err, PSREC_ENOMEM, "out of memory");
    if (!rc && (rc = psrec_model_embed(m, b, U))) psrec_fail(err, rc, "embedding failed");
    size_t ne = 0;
    for (size_t q = 0; !rc && q < b->n; q++) {
        eo[q] = (uint32_t)ne;
        if (hist >= 0 && !keep_hist)
            for (uint32_t j = b->slot_off[hist][q]; j < b->slot_off[hist][q + 1]; j++) {
                int64_t i = psrec_model_item_index(m, b->slot_id[hist][j]);
                if (i >= 0) ei[ne++] = (uint32_t)i;
            }
    }
    if (!rc) {
        eo[b->n] = (uint32_t)ne;
        if ((rc = psrec_topk(U, b->n, V, N, d, k, eo, ei, idx, sc))) psrec_fail(err, rc, "ranking failed");
    }
    for (size_t q = 0; !rc && q < b->n; q++) {
        for (int j = 0; j < k; j++) {
            uint32_t i = idx[q * (size_t)k + j];
            if (i == UINT32_MAX) break;
            printf("%s%" PRIu64 ":%.5g", j ? " " : "", ids[i], sc[q * (size_t)k + j]);
        }
        printf("\n");
    }
    fflush(stdout);
    free(U);
    free(sc);
    free(idx);
    free(eo);
    free(ei);
    return rc;
}

int psrec_cmd_recommend(int argc, char **argv)
{
    const char *model_dir = NULL, *input = "-";
    int k = 10, keep_hist = 0, skip_bad = 0;
    static const struct option opts[] = {
        {"model", 1, 0, 'm'},    {"input", 1, 0, 'i'}, {"k", 1, 0, 'k'}, {"keep-history", 0, 0, 'H'},
        {"skip-bad", 0, 0, 's'}, {"help", 0, 0, 'h'},  {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm': model_dir = optarg; break;
        case 'i': input = optarg; break;
        case 'k':
            if (psrec_cli_int("recommend", "--k", optarg, 1, 100000, &k)) return 2;
            break;
        case 'H': keep_hist = 1; break;
        case 's': skip_bad = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!model_dir) {
        usage(stderr);
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
    psrec_model_t *m;
    psrec_err rc = psrec_model_load(&m, model_dir, err);
    if (rc) {
        fprintf(stderr, "psrec recommend: %s\n", err);
        return 1;
    }
    psrec_schema_t schema = psrec_model_conf(m)->schema;
    psrec_text_opts_t to = {.skip_bad = skip_bad, .fixed_schema = 1, .ignore_unknown = 1};
    psrec_text_reader_t *r = NULL;
    psrec_batch_t b;
    psrec_batch_init(&b, schema.nslots);
    rc = psrec_text_open(&r, input, &schema, &to, err);
    size_t got = 0;
    /* A regular file is read in chunks of 256 queries (one GEMM each); a pipe or terminal one query at a
     * time, so each request is answered as soon as it arrives. */
    struct stat st;
    int stream = strcmp(input, "-") == 0 ? (fstat(0, &st) != 0 || !S_ISREG(st.st_mode)) : 0;
    size_t chunk = stream ? 1 : 256;
    while (!rc) {
        psrec_batch_clear(&b);
        rc = psrec_text_read(r, &b, chunk, &got, err);
        if (b.n > 0) { /* queries read before a malformed line are still answered */
            char e2[PSREC_ERRBUF] = "";
            psrec_err arc = answer(m, &b, k, keep_hist, e2);
            if (arc && !rc) {
                rc = arc;
                memcpy(err, e2, sizeof e2);
            }
        }
        if (rc || got == 0) break;
    }
    psrec_text_close(&r);
    psrec_batch_free(&b);
    psrec_model_destroy(&m);
    if (rc) {
        fprintf(stderr, "psrec recommend: %s\n", err[0] ? err : psrec_strerror(rc));
        return 1;
    }
    return 0;
}

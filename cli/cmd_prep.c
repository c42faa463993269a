/* cmd_prep.c: `psrec prep`: text examples -> binary shards (one per worker) + the item catalogue
 * with counts. Design: two passes over the text, the first only to learn the slot names, so every
 * shard carries the same final schema from its first example on. Examples are dealt round-robin to
 * shards. The catalogue is the ids seen (plus an items file's), or with --catalogue N the ids 0..N-1:
 * then only the ids seen are counted in memory and freq.bin is written dense (no ids) by streaming,
 * so a 10^8-item catalogue needs no O(N) table here. Thread model: main thread. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/batch.h"
#include "common/data_freq.h"
#include "common/data_gen.h"
#include "common/data_shard.h"
#include "common/data_text.h"
#include "common/durable.h"

#define MAX_INPUTS 64
#define MAX_OUT_SHARDS 4096
#define CHUNK 4096

static void usage(FILE *f)
{
    fprintf(f, "usage: psrec prep --in FILE [--in FILE ...] --out DIR [--shards N] [--items items.tsv]\n"
               "                  [--catalogue N] [--skip-bad]\n"
               "Writes DIR/shard-00000.bin ... (N shards, default 2) and DIR/freq.bin (item catalogue + counts).\n"
               "--items adds every item of an items file to the catalogue, even items with no interaction.\n"
               "--catalogue N declares the items 0..N-1 the catalogue (as `psrec gen` numbers them), without an\n"
               "items file; every item id in the data (positives and history) must be below N.\n");
}

static psrec_err scan_schema(char **inputs, int n, psrec_schema_t *schema, const psrec_text_opts_t *o, char *err)
{
    psrec_batch_t b;
    psrec_batch_init(&b, 0);
    psrec_err rc = PSREC_OK;
    for (int i = 0; !rc && i < n; i++) {
        psrec_text_reader_t *r;
        if ((rc = psrec_text_open(&r, inputs[i], schema, o, err))) break;
        size_t got;
        do {
            psrec_batch_clear(&b);
            rc = psrec_text_read(r, &b, CHUNK, &got, err);
        } while (!rc && got > 0);
        psrec_text_close(&r);
    }
    psrec_batch_free(&b);
    return rc;
}

int psrec_cmd_prep(int argc, char **argv)
{
    char *inputs[MAX_INPUTS];
    int n_in = 0, shards = 2;
    const char *out = NULL, *items = NULL;
    uint64_t catalogue = 0; /* 0 = the ids seen */
    psrec_text_opts_t topts = {.require_pos = 1};
    static const struct option opts[] = {
        {"in", 1, 0, 'i'},       {"out", 1, 0, 'o'},  {"shards", 1, 0, 's'},    {"items", 1, 0, 't'},
        {"skip-bad", 0, 0, 'k'}, {"help", 0, 0, 'h'}, {"catalogue", 1, 0, 'c'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'i':
            if (n_in == MAX_INPUTS) {
                fprintf(stderr, "psrec prep: at most %d --in files\n", MAX_INPUTS);
                return 2;
            }
            inputs[n_in++] = optarg;
            break;
        case 'o': out = optarg; break;
        case 's':
            if (psrec_cli_int("prep", "--shards", optarg, 1, MAX_OUT_SHARDS, &shards)) return 2;
            break;
        case 't': items = optarg; break;
        case 'c':
            if (psrec_cli_u64("prep", "--catalogue", optarg, &catalogue)) return 2;
            if (catalogue == 0 || catalogue > SIZE_MAX) {
                fprintf(stderr, "psrec prep: --catalogue must be at least 1\n");
                return 2;
            }
            break;
        case 'k': topts.skip_bad = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!n_in || !out) {
        usage(stderr);
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
    psrec_schema_t schema = {0};
    psrec_err rc = psrec_mkdirs(out, err);
    if (!rc) rc = scan_schema(inputs, n_in, &schema, &topts, err);
    if (!rc && schema.nslots == 0)
        rc = psrec_fail(err, PSREC_EPARSE, "no feature slot in the input (need e.g. hist=...)");

    psrec_shard_writer_t **w = calloc((size_t)shards, sizeof *w);
    psrec_freq_counter_t *fc = NULL;
    if (!w) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
    if (!rc && (rc = psrec_freq_counter_new(&fc))) psrec_fail(err, rc, "out of memory");
    char path[4096];
    for (int s = 0; !rc && s < shards; s++) {
        snprintf(path, sizeof path, "%s/shard-%05d.bin", out, s);
        rc = psrec_shard_writer_open(&w[s], path, err);
    }
    psrec_batch_t b;
    psrec_batch_init(&b, schema.nslots);
    topts.fixed_schema = 1;
    uint64_t n_ex = 0;
    size_t skipped = 0;
    int hist = psrec_schema_hist(&schema);
    for (int i = 0; !rc && i < n_in; i++) {
        psrec_text_reader_t *r;
        if ((rc = psrec_text_open(&r, inputs[i], &schema, &topts, err))) break;
        size_t got;
        do {
            psrec_batch_clear(&b);
            rc = psrec_text_read(r, &b, CHUNK, &got, err);
            for (size_t k = 0; !rc && k < got; k++, n_ex++)
                rc = psrec_shard_writer_add(w[n_ex % (uint64_t)shards], &b, k, err);
            if (!rc && got && (rc = psrec_freq_counter_add(fc, &b, hist))) psrec_fail(err, rc, "out of memory");
        } while (!rc && got > 0);
        skipped += psrec_text_skipped(r);
        psrec_text_close(&r);
    }
    psrec_batch_free(&b);
    if (!rc && items) {
        uint64_t *ids = NULL;
        int32_t *cats = NULL;
        size_t n = 0;
        rc = psrec_items_load(items, &ids, &cats, &n, err);
        for (size_t k = 0; !rc && k < n; k++)
            if ((rc = psrec_freq_counter_touch(fc, ids[k], 0))) psrec_fail(err, rc, "out of memory");
        free(ids);
        free(cats);
    }
    psrec_freq_t f = {0};
    if (!rc && (rc = psrec_freq_counter_result(fc, &f))) psrec_fail(err, rc, "out of memory");
    if (!rc && catalogue && f.n > 0 && f.ids[f.n - 1] >= catalogue) { /* refused before any shard is committed */
        size_t k = f.n - 1;
        while (k > 0 && f.ids[k - 1] >= catalogue)
            k--;
        rc = psrec_fail(err, PSREC_EINVAL, "item id %llu is not in the catalogue 0..%llu (--catalogue %llu)",
                        (unsigned long long)f.ids[k], (unsigned long long)catalogue - 1, (unsigned long long)catalogue);
    }
    for (int s = 0; s < shards && w; s++) {
        if (rc)
            psrec_shard_writer_abort(&w[s]);
        else
            rc = psrec_shard_writer_commit(&w[s], &schema, err);
    }
    snprintf(path, sizeof path, "%s/freq.bin", out);
    if (!rc) rc = catalogue ? psrec_freq_save_dense(&f, catalogue, path, err) : psrec_freq_save(&f, path, err);
    if (!rc) {
        fprintf(stderr, "psrec prep: %llu examples -> %d shard(s) in %s; %llu items in the catalogue%s; slots:",
                (unsigned long long)n_ex, shards, out, (unsigned long long)(catalogue ? catalogue : f.n),
                catalogue ? " (0..N-1)" : "");
        for (int s = 0; s < schema.nslots; s++)
            fprintf(stderr, " %s", schema.name[s]);
        if (skipped) fprintf(stderr, "; %zu malformed line(s) skipped", skipped);
        fprintf(stderr, "\n");
    }
    psrec_freq_free(&f);
    psrec_freq_counter_destroy(&fc);
    free(w);
    if (rc) {
        fprintf(stderr, "psrec prep: %s\n", err[0] ? err : psrec_strerror(rc));
        return 1;
    }
    return 0;
}

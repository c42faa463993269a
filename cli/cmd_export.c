/* cmd_export.c: `psrec export`: item embeddings for the ecosystem: NumPy .npy (float32, rows in the
 * order of the ids file) plus a text ids file, or the word2vec text format (gensim's
 * KeyedVectors.load_word2vec_format reads it). Design: exports are plain formats other tools read,
 * so they carry no psrec trailer; they still go through common/durable (temporary name, fsync, rename).
 * Thread model: main thread. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/durable.h"
#include "worker/checkpoint_export.h"
#include "worker/model.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: psrec export --model DIR --out PREFIX [--format npy|w2v]\n"
               "       psrec export --checkpoint CKPT [--round R] --data DATA --model-out DIR [--out PREFIX ...]\n"
               "  --checkpoint: a model directory from a checkpoint round (default: the newest complete one),\n"
               "  without a running cluster; DATA (from `psrec prep`) gives the item catalogue\n"
               "  npy: PREFIX.npy (float32, shape (n, d)) and PREFIX.ids (one item id per line, same order)\n"
               "  w2v: PREFIX.vec (word2vec text: \"n d\" then \"id v1 ... vd\" per line)\n");
}

static int fail(const char *path, psrec_err rc, const char *err)
{
    fprintf(stderr, "psrec export: %s\n", err[0] ? err : path);
    return rc ? -1 : 0;
}

static int write_npy(const char *prefix, const uint64_t *ids, const float *V, size_t n, int d)
{
    char path[4096], err[PSREC_ERRBUF] = "";
    psrec_dfile_t *f = NULL;
    snprintf(path, sizeof path, "%s.npy", prefix);
    psrec_err rc = psrec_dfile_open_plain(&f, path, err);
    if (rc) return fail(path, rc, err);
    char hdr[256];
    int len =
        snprintf(hdr + 10, sizeof hdr - 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %d), }", n, d);
    int pad = (64 - (10 + len + 1) % 64) % 64; /* header padded so the data starts 64-byte aligned */
    memset(hdr + 10 + len, ' ', (size_t)pad);
    hdr[10 + len + pad] = '\n';
    unsigned short hlen = (unsigned short)(len + pad + 1);
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    hdr[8] = (char)(hlen & 0xff);
    hdr[9] = (char)(hlen >> 8);
    rc = psrec_dfile_write(f, hdr, (size_t)(10 + hlen), err);
    if (!rc) rc = psrec_dfile_write(f, V, n * (size_t)d * sizeof(float), err);
    if ((rc = psrec_dfile_finish(&f, rc, err))) return fail(path, rc, err);
    snprintf(path, sizeof path, "%s.ids", prefix);
    if ((rc = psrec_dfile_open_plain(&f, path, err))) return fail(path, rc, err);
    for (size_t i = 0; !rc && i < n; i++) {
        char line[32];
        int l = snprintf(line, sizeof line, "%" PRIu64 "\n", ids[i]);
        rc = psrec_dfile_write(f, line, (size_t)l, err);
    }
    if ((rc = psrec_dfile_finish(&f, rc, err))) return fail(path, rc, err);
    return 0;
}

static int write_w2v(const char *prefix, const uint64_t *ids, const float *V, size_t n, int d)
{
    char path[4096], err[PSREC_ERRBUF] = "";
    psrec_dfile_t *f = NULL;
    snprintf(path, sizeof path, "%s.vec", prefix);
    psrec_err rc = psrec_dfile_open_plain(&f, path, err);
    if (rc) return fail(path, rc, err);
    char line[64];
    int l = snprintf(line, sizeof line, "%zu %d\n", n, d);
    rc = psrec_dfile_write(f, line, (size_t)l, err);
    for (size_t i = 0; !rc && i < n; i++) {
        l = snprintf(line, sizeof line, "%" PRIu64, ids[i]);
        rc = psrec_dfile_write(f, line, (size_t)l, err);
        for (int j = 0; !rc && j < d; j++) {
            l = snprintf(line, sizeof line, " %.7g", V[i * (size_t)d + j]);
            rc = psrec_dfile_write(f, line, (size_t)l, err);
        }
        if (!rc) rc = psrec_dfile_write(f, "\n", 1, err);
    }
    if ((rc = psrec_dfile_finish(&f, rc, err))) return fail(path, rc, err);
    return 0;
}

int psrec_cmd_export(int argc, char **argv)
{
    const char *model_dir = NULL, *out = NULL, *format = "npy", *ckpt = NULL, *data = NULL, *model_out = NULL;
    uint64_t round = 0;
    static const struct option opts[] = {{"model", 1, 0, 'm'},      {"out", 1, 0, 'o'},   {"format", 1, 0, 'f'},
                                         {"checkpoint", 1, 0, 'c'}, {"round", 1, 0, 'r'}, {"data", 1, 0, 'd'},
                                         {"model-out", 1, 0, 'M'},  {"help", 0, 0, 'h'},  {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': ckpt = optarg; break;
        case 'd': data = optarg; break;
        case 'M': model_out = optarg; break;
        case 'r':
            if (psrec_cli_u64("export", "--round", optarg, &round)) return 2;
            break;
        case 'm': model_dir = optarg; break;
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    char err[PSREC_ERRBUF] = "";
    if (ckpt) {
        if (!data || !model_out || model_dir) {
            fprintf(stderr, "psrec export: --checkpoint needs --data and --model-out (and no --model)\n");
            return 2;
        }
        uint64_t used = 0;
        psrec_err rc = psrec_checkpoint_export(ckpt, round, data, model_out, &used, err);
        if (rc) {
            fprintf(stderr, "psrec export: %s\n", err);
            return 1;
        }
        fprintf(stderr, "psrec export: checkpoint round %llu of %s -> model %s\n", (unsigned long long)used, ckpt,
                model_out);
        if (!out) return 0;
        model_dir = model_out;
    }
    if (!model_dir || !out || (strcmp(format, "npy") && strcmp(format, "w2v"))) {
        usage(stderr);
        return 2;
    }
    psrec_model_t *m;
    psrec_err rc = psrec_model_load(&m, model_dir, err);
    if (rc) {
        fprintf(stderr, "psrec export: %s\n", err);
        return 1;
    }
    const uint64_t *ids;
    const float *V;
    size_t n = psrec_model_items(m, &ids, &V);
    int d = psrec_model_conf(m)->dim;
    int r = !strcmp(format, "npy") ? write_npy(out, ids, V, n, d) : write_w2v(out, ids, V, n, d);
    if (!r)
        fprintf(stderr, "psrec export: %zu items x %d -> %s.%s\n", n, d, out, !strcmp(format, "npy") ? "npy" : "vec");
    psrec_model_destroy(&m);
    return r ? 1 : 0;
}

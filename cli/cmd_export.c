/* cmd_export.c: `psrec export`: item embeddings for the ecosystem: NumPy .npy (float32, rows in the
 * order of the ids file) plus a text ids file, or the word2vec text format (gensim's
 * KeyedVectors.load_word2vec_format reads it). Design: exports are plain formats other tools read,
 * so they carry no psrec trailer; they are still written to a temporary name, fsync'ed and renamed.
 * Thread model: main thread. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "worker/model.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: psrec export --model DIR --out PREFIX [--format npy|w2v]\n"
               "  npy: PREFIX.npy (float32, shape (n, d)) and PREFIX.ids (one item id per line, same order)\n"
               "  w2v: PREFIX.vec (word2vec text: \"n d\" then \"id v1 ... vd\" per line)\n");
}

typedef struct {
    FILE *fp;
    char tmp[4096], path[4096];
} outfile_t;

static int out_open(outfile_t *o, const char *path)
{
    snprintf(o->path, sizeof o->path, "%s", path);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp.%ld", path, (long)getpid());
    o->fp = fopen(o->tmp, "wb");
    if (!o->fp) fprintf(stderr, "psrec export: %s: %s\n", o->tmp, strerror(errno));
    return o->fp ? 0 : -1;
}

static int out_close(outfile_t *o, int ok)
{
    if (!o->fp) return -1;
    ok = ok && !ferror(o->fp) && fflush(o->fp) == 0 && fsync(fileno(o->fp)) == 0;
    ok = (fclose(o->fp) == 0) && ok;
    o->fp = NULL;
    if (ok && rename(o->tmp, o->path) == 0) return 0;
    fprintf(stderr, "psrec export: writing %s failed: %s\n", o->path, strerror(errno));
    unlink(o->tmp);
    return -1;
}

static int write_npy(const char *prefix, const uint64_t *ids, const float *V, size_t n, int d)
{
    char path[4096];
    outfile_t o;
    snprintf(path, sizeof path, "%s.npy", prefix);
    if (out_open(&o, path)) return -1;
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %d), }", n, d);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64; /* header padded so the data starts 64-byte aligned */
    unsigned short hlen = (unsigned short)(len + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, o.fp);
    fputc(hlen & 0xff, o.fp);
    fputc(hlen >> 8, o.fp);
    fwrite(dict, 1, (size_t)len, o.fp);
    for (int i = 0; i < pad; i++) fputc(' ', o.fp);
    fputc('\n', o.fp);
    fwrite(V, sizeof(float), n * (size_t)d, o.fp);
    if (out_close(&o, 1)) return -1;
    snprintf(path, sizeof path, "%s.ids", prefix);
    if (out_open(&o, path)) return -1;
    for (size_t i = 0; i < n; i++) fprintf(o.fp, "%" PRIu64 "\n", ids[i]);
    return out_close(&o, 1);
}

static int write_w2v(const char *prefix, const uint64_t *ids, const float *V, size_t n, int d)
{
    char path[4096];
    outfile_t o;
    snprintf(path, sizeof path, "%s.vec", prefix);
    if (out_open(&o, path)) return -1;
    fprintf(o.fp, "%zu %d\n", n, d);
    for (size_t i = 0; i < n; i++) {
        fprintf(o.fp, "%" PRIu64, ids[i]);
        for (int j = 0; j < d; j++) fprintf(o.fp, " %.7g", V[i * (size_t)d + j]);
        fputc('\n', o.fp);
    }
    return out_close(&o, 1);
}

int psrec_cmd_export(int argc, char **argv)
{
    const char *model_dir = NULL, *out = NULL, *format = "npy";
    static const struct option opts[] = {
        {"model", 1, 0, 'm'}, {"out", 1, 0, 'o'}, {"format", 1, 0, 'f'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm': model_dir = optarg; break;
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!model_dir || !out || (strcmp(format, "npy") && strcmp(format, "w2v"))) {
        usage(stderr);
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
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
    if (!r) fprintf(stderr, "psrec export: %zu items x %d -> %s.%s\n", n, d, out, !strcmp(format, "npy") ? "npy" : "vec");
    psrec_model_destroy(&m);
    return r ? 1 : 0;
}

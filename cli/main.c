/* main.c: `psrec <command> [options]`, git-style dispatch to the subcommands, plus the option-value
 * parsers they share. Design: one executable for every role (DESIGN.md), so a cluster needs one
 * binary. Thread model: main thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/blas_check.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"gen", psrec_cmd_gen, "write synthetic data with planted categories"},
    {"import", psrec_cmd_import, "convert a MovieLens-style ratings file into psrec examples"},
    {"prep", psrec_cmd_prep, "text examples -> binary shards + item counts"},
    {"train", psrec_cmd_train, "train a model (embedded: all roles in this process)"},
    {"eval", psrec_cmd_eval, "full-ranking Recall/NDCG/MRR and folding metrics"},
    {"export", psrec_cmd_export, "write item embeddings as .npy + ids, or word2vec text"},
    {"recommend", psrec_cmd_recommend, "top-K items for query lines"},
    {"wals", psrec_cmd_wals, "matrix-factorization baseline: weighted ALS (implicit feedback)"},
    {"coord", psrec_cmd_coord, "run a job's coordinator (membership, shard map, barriers, progress)"},
    {"server", psrec_cmd_server, "run a parameter server (one shard of every table)"},
    {"worker", psrec_cmd_worker, "run training worker(s) that join a coordinator"},
    {"status", psrec_cmd_status, "show a running cluster: members, shards, rows, rates, progress"},
    {"keygen", psrec_cmd_keygen, "write a job token or CURVE key pairs (connection security)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: psrec <command> [options]   (psrec <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int psrec_cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "psrec %s: %s: bad value '%s' (want a non-negative integer)\n", cmd, opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int psrec_cli_int(const char *cmd, const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "psrec %s: %s: bad value '%s' (want an integer in %d..%d)\n", cmd, opt, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int psrec_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "psrec %s: %s: bad value '%s' (want a number in %g..%g)\n", cmd, opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    int fix = 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--no-blas-fix") == 0) {
            fix = 0;
            memmove(argv + i, argv + i + 1, sizeof *argv * (size_t)(argc - i)); /* keeps the NULL */
            argc--;
            break;
        }
    if (fix) psrec_blas_fix(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "psrec: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

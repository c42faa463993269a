/* cmd_gen.c: `psrec gen` and `psrec import`: write example text files (synthetic data with planted
 * categories, or converted ratings logs). Thread model: main thread. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/data_gen.h"
#include "common/data_import.h"

static void gen_usage(FILE *f)
{
    fprintf(f, "usage: psrec gen --out DIR [--items N] [--categories C] [--train-users U] [--test-users T]\n"
               "                 [--zipf S] [--min-hist A] [--max-hist B] [--max-pos P] [--leak R]\n"
               "                 [--two-homes P] [--region-signal P] [--seed S]\n"
               "Writes DIR/train.txt, DIR/test.txt and DIR/items.tsv (item -> category).\n");
}

int psrec_cmd_gen(int argc, char **argv)
{
    psrec_gen_conf_t c;
    psrec_gen_defaults(&c);
    const char *out = NULL;
    static const struct option opts[] = {
        {"out", 1, 0, 'o'},         {"items", 1, 0, 'n'},      {"categories", 1, 0, 'c'},
        {"train-users", 1, 0, 'u'}, {"test-users", 1, 0, 't'}, {"zipf", 1, 0, 'z'},
        {"min-hist", 1, 0, 'a'},    {"max-hist", 1, 0, 'b'},   {"max-pos", 1, 0, 'p'},
        {"leak", 1, 0, 'l'},        {"two-homes", 1, 0, 'w'},  {"region-signal", 1, 0, 'r'},
        {"seed", 1, 0, 's'},        {"help", 0, 0, 'h'},       {0, 0, 0, 0}};
    int o, iv;
    double dv;
    uint64_t uv;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'o': out = optarg; break;
        case 'n':
            if (psrec_cli_u64("gen", "--items", optarg, &uv) || uv == 0) return 2;
            c.n_items = uv;
            break;
        case 'c':
            if (psrec_cli_int("gen", "--categories", optarg, 1, 1 << 30, &iv)) return 2;
            c.n_categories = (uint32_t)iv;
            break;
        case 'u':
            if (psrec_cli_u64("gen", "--train-users", optarg, &uv)) return 2;
            c.n_train_users = uv;
            break;
        case 't':
            if (psrec_cli_u64("gen", "--test-users", optarg, &uv)) return 2;
            c.n_test_users = uv;
            break;
        case 'z':
            if (psrec_cli_double("gen", "--zipf", optarg, 0, 10, &dv)) return 2;
            c.zipf_s = dv;
            break;
        case 'a':
            if (psrec_cli_int("gen", "--min-hist", optarg, 0, 100000, &iv)) return 2;
            c.min_hist = (uint32_t)iv;
            break;
        case 'b':
            if (psrec_cli_int("gen", "--max-hist", optarg, 0, 100000, &iv)) return 2;
            c.max_hist = (uint32_t)iv;
            break;
        case 'p':
            if (psrec_cli_int("gen", "--max-pos", optarg, 1, 100000, &iv)) return 2;
            c.max_pos = (uint32_t)iv;
            break;
        case 'l':
            if (psrec_cli_double("gen", "--leak", optarg, 0, 1, &dv)) return 2;
            c.leak_rate = dv;
            break;
        case 'w':
            if (psrec_cli_double("gen", "--two-homes", optarg, 0, 1, &dv)) return 2;
            c.p_two_homes = dv;
            break;
        case 'r':
            if (psrec_cli_double("gen", "--region-signal", optarg, 0, 1, &dv)) return 2;
            c.region_signal = dv;
            break;
        case 's':
            if (psrec_cli_u64("gen", "--seed", optarg, &uv)) return 2;
            c.seed = uv;
            break;
        case 'h': gen_usage(stdout); return 0;
        default: gen_usage(stderr); return 2;
        }
    }
    if (!out) {
        gen_usage(stderr);
        return 2;
    }
    if (c.min_hist > c.max_hist) {
        fprintf(stderr, "psrec gen: --min-hist must not exceed --max-hist\n");
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
    psrec_err rc = psrec_gen_write(&c, out, err);
    if (rc) {
        fprintf(stderr, "psrec gen: %s\n", err[0] ? err : psrec_strerror(rc));
        return 1;
    }
    fprintf(stderr, "psrec gen: %llu items in %u categories, %llu train and %llu test users -> %s\n",
            (unsigned long long)c.n_items, c.n_categories, (unsigned long long)c.n_train_users,
            (unsigned long long)c.n_test_users, out);
    return 0;
}

static void import_usage(FILE *f)
{
    fprintf(f, "usage: psrec import --ratings FILE --out DIR [--min-rating R] [--max-hist N] [--skip-bad]\n"
               "Formats: user::item::rating::time, tab-separated, or CSV with a header.\n"
               "Writes DIR/train.txt (history -> next item) and DIR/test.txt (leave-last-out per user).\n");
}

int psrec_cmd_import(int argc, char **argv)
{
    psrec_import_conf_t c = {.max_hist = 50};
    const char *in = NULL, *out = NULL;
    static const struct option opts[] = {{"ratings", 1, 0, 'i'},
                                         {"out", 1, 0, 'o'},
                                         {"min-rating", 1, 0, 'm'},
                                         {"max-hist", 1, 0, 'x'},
                                         {"skip-bad", 0, 0, 'k'},
                                         {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    int o, iv;
    double dv;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case 'm':
            if (psrec_cli_double("import", "--min-rating", optarg, -1e9, 1e9, &dv)) return 2;
            c.min_rating = dv;
            break;
        case 'x':
            if (psrec_cli_int("import", "--max-hist", optarg, 1, 100000, &iv)) return 2;
            c.max_hist = (unsigned)iv;
            break;
        case 'k': c.skip_bad = 1; break;
        case 'h': import_usage(stdout); return 0;
        default: import_usage(stderr); return 2;
        }
    }
    if (!in || !out) {
        import_usage(stderr);
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
    psrec_err rc = psrec_import_ratings(in, out, &c, err);
    if (rc) {
        fprintf(stderr, "psrec import: %s\n", err[0] ? err : psrec_strerror(rc));
        return 1;
    }
    fprintf(stderr, "psrec import: %zu users, %zu train and %zu test examples (%zu bad lines skipped) -> %s\n",
            c.n_users, c.n_train, c.n_test, c.skipped, out);
    return 0;
}

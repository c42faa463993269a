/* cmd_train.c: `psrec train`: options -> psrec_train_conf_t, run the embedded trainer, print a
 * summary. Thread model: main thread (the trainer starts the workers). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "worker/trainer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: psrec train --data DIR [--model DIR] [options]\n"
               "       psrec worker --coord ADDR --data DIR [--model DIR] [options]   (join a cluster)\n"
               "  --data DIR          output of `psrec prep` (shards + freq.bin)\n"
               "  --model DIR         where to save the model (default: no model saved)\n"
               "  --metrics FILE      JSON-lines training metrics\n"
               "  --threads W         worker threads (default 2)      --epochs E (default 5)\n"
               "  --batch B           (default 256)                   --negatives S shared per batch (default 1024)\n"
               "  --loss L            softmax | logistic | positives-only (default softmax)\n"
               "  --full              exact full softmax (every item is a candidate; the reference)\n"
               "  --sampler K         uniform | popularity | inbatch | mixed | hard | all (default uniform)\n"
               "  --alpha A           popularity exponent (default 0.75)\n"
               "  --hard-keep H       hard negatives kept from a uniform pool of S (default S/4)\n"
               "  --negatives-on W    workers (default) | servers: each parameter server draws S/servers\n"
               "                      negatives from its own rows and scores them; negative rows never\n"
               "                      cross the network (uniform or hard sampler, softmax loss; docs/scaling.md)\n"
               "  --materialise       create every catalogue item's output row before training (the\n"
               "                      table holds the whole catalogue; server-side negatives draw from it)\n"
               "  --temperature T     hard-negative sampling temperature (default 1)\n"
               "  --neg-weight K      logistic loss: weight of the negatives term (default 5)\n"
               "  --gravity L         gravity regularizer lambda (default 0 = off)\n"
               "  --gravity-rows R    uniform item rows per step for the gravity estimate (default 256)\n"
               "  --dim D             query/item embedding size (default 64)\n"
               "  --emb-dim E         input embedding size per slot (default = dim)\n"
               "  --hidden LIST       hidden layer widths, e.g. 128 or 256,128; 0 = linear (default 128)\n"
               "  --tie               history slot uses the item output embeddings\n"
               "  --opt O             item tables: sgd | adagrad | rowwise-adagrad | adam (default rowwise-adagrad)\n"
               "  --lr X              item tables learning rate (default 0.05)\n"
               "  --dense-opt O       tower weights optimizer (default adam)   --dense-lr X (default 0.002)\n"
               "  --init-scale X      std of the item embedding init (default 1/sqrt(dim))\n"
               "  --row-dtype T       how servers store embedding rows: f32 (default) | f16 | bf16 (half the\n"
               "                      memory; updates computed in f32 and rounded; tower weights stay f32)\n"
               "  --max-steps N       stop each worker after N steps\n"
               "  --seed N            (default 1)   --quiet   --no-progress\n"
               "parameters (embedded mode runs a coordinator and servers as threads of this process):\n"
               "  --servers S         embedded parameter servers (default 1)\n"
               "  --transport T       embedded: inproc (default) | tcp (loopback) | direct (no messaging)\n"
               "  --compress / --no-compress   LZ4 on bulk frames (default: on over tcp, off inproc)\n"
               "  --coord ADDR        join this coordinator instead (what `psrec worker` does)\n"
               "  --job-id N          job id every message carries (default 1)\n"
               "  --timeout MS        per-request deadline before a retry (default 10000)\n"
               "  --max-staleness K   no worker more than K steps ahead of the slowest (default: async)\n"
               "  --sync              same as --max-staleness 0\n"
               "fault tolerance (docs/operations.md):\n"
               "  --checkpoint-dir D  checkpoint rounds, push logs and coordinator state go here\n"
               "  --checkpoint-every N  a round every N steps (summed over workers), or every Ns / Nm, or auto:\n"
               "                      Young's sqrt(2 x round cost x MTBF), the cost measured on the job's rounds\n"
               "  --mtbf T            expected time between failures for auto (default 24h; e.g. 90m, 6h)\n"
               "  --keep-checkpoints K  complete rounds kept (default 2)\n"
               "  --resume D          continue from the newest complete round in D (implies --checkpoint-dir D)\n"
               "  --durability M      none (default) | log: servers log acknowledged pushes, so a restarted\n"
               "                      server recovers every acknowledged update without rolling others back\n"
               "  --rank R            server/worker: take rank R back (a restarted process)\n"
               "  --recovery-timeout MS  how long to wait for a restarted peer (default 120000)\n"
               "  --heartbeat-timeout MS  coordinator: a member silent this long is marked dead (default 10000)\n");
    psrec_cli_sec_usage(f, 1);
}

void psrec_cli_train_usage(FILE *f)
{
    usage(f);
}

/* Parses the training options shared by train, worker and coord (extra = the cluster-only options,
 * or NULL). Returns 0 = ok, 1 = --help printed, 2 = bad option (message printed). */
int psrec_cli_train_opts(const char *cmd, int argc, char **argv, psrec_train_conf_t *out, psrec_cli_cluster_t *extra)
{
    psrec_train_conf_t c;
    psrec_train_defaults(&c);
    int emb_set = 0, full = 0, hard_keep_set = 0;
    static const struct option opts[] = {{"data", 1, 0, 'D'},
                                         {"model", 1, 0, 'M'},
                                         {"metrics", 1, 0, 'J'},
                                         {"threads", 1, 0, 'w'},
                                         {"epochs", 1, 0, 'e'},
                                         {"batch", 1, 0, 'b'},
                                         {"negatives", 1, 0, 'n'},
                                         {"loss", 1, 0, 'L'},
                                         {"full", 0, 0, 'F'},
                                         {"sampler", 1, 0, 'S'},
                                         {"alpha", 1, 0, 'a'},
                                         {"hard-keep", 1, 0, 'k'},
                                         {"temperature", 1, 0, 'T'},
                                         {"neg-weight", 1, 0, 'g'},
                                         {"gravity", 1, 0, 'G'},
                                         {"gravity-rows", 1, 0, 'R'},
                                         {"dim", 1, 0, 'd'},
                                         {"emb-dim", 1, 0, 'E'},
                                         {"hidden", 1, 0, 'H'},
                                         {"tie", 0, 0, 't'},
                                         {"opt", 1, 0, 'o'},
                                         {"lr", 1, 0, 'l'},
                                         {"dense-opt", 1, 0, 'O'},
                                         {"dense-lr", 1, 0, 'r'},
                                         {"init-scale", 1, 0, 'i'},
                                         {"max-steps", 1, 0, 'x'},
                                         {"seed", 1, 0, 's'},
                                         {"quiet", 0, 0, 'q'},
                                         {"no-progress", 0, 0, 'P'},
                                         {"help", 0, 0, 'h'},
                                         {"servers", 1, 0, 1001},
                                         {"transport", 1, 0, 1002},
                                         {"compress", 0, 0, 1003},
                                         {"no-compress", 0, 0, 1004},
                                         {"coord", 1, 0, 1005},
                                         {"job-id", 1, 0, 1006},
                                         {"timeout", 1, 0, 1007},
                                         {"max-staleness", 1, 0, 1008},
                                         {"sync", 0, 0, 1009},
                                         {"bind", 1, 0, 1010},
                                         {"workers", 1, 0, 1011},
                                         {"advertise", 1, 0, 1012},
                                         {"checkpoint-dir", 1, 0, 1013},
                                         {"checkpoint-every", 1, 0, 1014},
                                         {"keep-checkpoints", 1, 0, 1015},
                                         {"resume", 1, 0, 1016},
                                         {"durability", 1, 0, 1017},
                                         {"rank", 1, 0, 1018},
                                         {"recovery-timeout", 1, 0, 1019},
                                         {"mtbf", 1, 0, 1020},
                                         {"heartbeat-timeout", 1, 0, 1021},
                                         {"row-dtype", 1, 0, 1022},
                                         {"negatives-on", 1, 0, 1023},
                                         {"materialise", 0, 0, 1024},
                                         {"materialize", 0, 0, 1024},
                                         {"token-file", 1, 0, PSREC_CLI_TOKEN_FILE},
                                         {"secure", 0, 0, PSREC_CLI_SECURE},
                                         {"keys", 1, 0, PSREC_CLI_KEYS},
                                         {"insecure", 0, 0, PSREC_CLI_INSECURE},
                                         {"max-msg-mb", 1, 0, PSREC_CLI_MAX_MSG_MB},
                                         {"max-inflight", 1, 0, PSREC_CLI_MAX_INFLIGHT},
                                         {"max-new-rows", 1, 0, PSREC_CLI_MAX_NEW_ROWS},
                                         {"max-rows", 1, 0, PSREC_CLI_MAX_ROWS},
                                         {"at-max-rows", 1, 0, PSREC_CLI_AT_MAX_ROWS},
                                         {0, 0, 0, 0}};
    int o, iv;
    double dv;
    uint64_t uv;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'D': c.data_dir = optarg; break;
        case 'M': c.model_dir = optarg; break;
        case 'J': c.metrics_path = optarg; break;
        case 'w':
            if (psrec_cli_int(cmd, "--threads", optarg, 1, 256, &c.threads)) return 2;
            break;
        case 'e':
            if (psrec_cli_int(cmd, "--epochs", optarg, 1, 1000000, &c.epochs)) return 2;
            break;
        case 'b':
            if (psrec_cli_int(cmd, "--batch", optarg, 1, 65536, &c.batch)) return 2;
            break;
        case 'n':
            if (psrec_cli_int(cmd, "--negatives", optarg, 0, 1 << 24, &c.negatives)) return 2;
            break;
        case 'L':
            if (psrec_loss_parse(optarg, &c.loss)) {
                fprintf(stderr, "psrec %s: --loss: unknown loss '%s'\n", cmd, optarg);
                return 2;
            }
            break;
        case 'F': full = 1; break;
        case 'S':
            if (psrec_sampler_parse(optarg, &c.sampler)) {
                fprintf(stderr, "psrec %s: --sampler: unknown sampler '%s'\n", cmd, optarg);
                return 2;
            }
            break;
        case 'a':
            if (psrec_cli_double(cmd, "--alpha", optarg, 0, 10, &c.alpha)) return 2;
            break;
        case 'k':
            if (psrec_cli_int(cmd, "--hard-keep", optarg, 1, 1 << 24, &c.hard_keep)) return 2;
            hard_keep_set = 1;
            break;
        case 'T':
            if (psrec_cli_double(cmd, "--temperature", optarg, 1e-3, 1e6, &c.temperature)) return 2;
            break;
        case 'g':
            if (psrec_cli_double(cmd, "--neg-weight", optarg, 0, 1e6, &dv)) return 2;
            c.neg_weight = (float)dv;
            break;
        case 'G':
            if (psrec_cli_double(cmd, "--gravity", optarg, 0, 1e9, &dv)) return 2;
            c.gravity = (float)dv;
            break;
        case 'R':
            if (psrec_cli_int(cmd, "--gravity-rows", optarg, 1, 1 << 24, &c.gravity_rows)) return 2;
            break;
        case 'd':
            if (psrec_cli_int(cmd, "--dim", optarg, 1, 4096, &c.dim)) return 2;
            break;
        case 'E':
            if (psrec_cli_int(cmd, "--emb-dim", optarg, 1, 4096, &c.emb_dim)) return 2;
            emb_set = 1;
            break;
        case 'H':
            if (psrec_tower_parse_hidden(optarg, &c.tower)) {
                fprintf(stderr, "psrec %s: --hidden: bad layer list '%s' (e.g. 128 or 256,128 or 0)\n", cmd, optarg);
                return 2;
            }
            break;
        case 't': c.tie = 1; break;
        case 'o':
            if (psrec_opt_parse(optarg, &c.item_opt.kind)) {
                fprintf(stderr, "psrec %s: --opt: unknown optimizer '%s'\n", cmd, optarg);
                return 2;
            }
            break;
        case 'l':
            if (psrec_cli_double(cmd, "--lr", optarg, 0, 1e6, &dv)) return 2;
            c.item_opt.lr = (float)dv;
            break;
        case 'O':
            if (psrec_opt_parse(optarg, &c.dense_opt.kind)) {
                fprintf(stderr, "psrec %s: --dense-opt: unknown optimizer '%s'\n", cmd, optarg);
                return 2;
            }
            break;
        case 'r':
            if (psrec_cli_double(cmd, "--dense-lr", optarg, 0, 1e6, &dv)) return 2;
            c.dense_opt.lr = (float)dv;
            break;
        case 'i':
            if (psrec_cli_double(cmd, "--init-scale", optarg, 0, 1e3, &dv)) return 2;
            c.init_scale = (float)dv;
            break;
        case 'x':
            if (psrec_cli_u64(cmd, "--max-steps", optarg, &uv)) return 2;
            c.max_steps = uv;
            break;
        case 's':
            if (psrec_cli_u64(cmd, "--seed", optarg, &uv)) return 2;
            c.seed = uv;
            break;
        case 'q': c.quiet = 1; break;
        case 'P': c.progress = 0; break;
        case 1001:
            if (psrec_cli_int(cmd, "--servers", optarg, 1, 1024, &c.servers)) return 2;
            break;
        case 1002:
            if (!strcmp(optarg, "inproc"))
                c.transport = PSREC_TRANSPORT_INPROC;
            else if (!strcmp(optarg, "tcp"))
                c.transport = PSREC_TRANSPORT_TCP;
            else if (!strcmp(optarg, "direct"))
                c.transport = PSREC_TRANSPORT_DIRECT;
            else {
                fprintf(stderr, "psrec %s: --transport: want inproc, tcp or direct, not '%s'\n", cmd, optarg);
                return 2;
            }
            break;
        case 1003: c.compress = 1; break;
        case 1004: c.compress = 0; break;
        case 1005: c.coord = optarg; break;
        case 1006:
            if (psrec_cli_u64(cmd, "--job-id", optarg, &uv)) return 2;
            c.job_id = uv;
            break;
        case 1007:
            if (psrec_cli_int(cmd, "--timeout", optarg, 1, 3600000, &c.timeout_ms)) return 2;
            break;
        case 1008:
            if (psrec_cli_int(cmd, "--max-staleness", optarg, 0, 1 << 30, &c.max_staleness)) return 2;
            break;
        case 1009: c.max_staleness = 0; break;
        case 1013: c.checkpoint_dir = optarg; break;
        case 1014: {
            if (!strcmp(optarg, "auto")) {
                c.checkpoint_secs = -1;
                break;
            }
            char *end;
            double v = strtod(optarg, &end);
            int secs = *end == 's' || *end == 'm';
            if (end == optarg || !(v > 0) || v > 1e12 || (*end && !(secs && end[1] == 0))) {
                fprintf(stderr, "psrec %s: --checkpoint-every: want N steps, Ns or Nm, not '%s'\n", cmd, optarg);
                return 2;
            }
            if (secs)
                c.checkpoint_secs = *end == 'm' ? v * 60 : v;
            else
                c.checkpoint_steps = (uint64_t)v;
            break;
        }
        case 1015:
            if (psrec_cli_int(cmd, "--keep-checkpoints", optarg, 1, 1000000, &c.keep_checkpoints)) return 2;
            break;
        case 1016:
            c.checkpoint_dir = optarg;
            c.resume = 1;
            break;
        case 1017:
            if (strcmp(optarg, "log") && strcmp(optarg, "none")) {
                fprintf(stderr, "psrec %s: --durability: want none or log, not '%s'\n", cmd, optarg);
                return 2;
            }
            c.durability_log = !strcmp(optarg, "log");
            break;
        case 1018:
            if (psrec_cli_int(cmd, "--rank", optarg, 0, 1 << 20, &c.rank)) return 2;
            break;
        case 1019:
            if (psrec_cli_int(cmd, "--recovery-timeout", optarg, 1, 86400000, &c.recovery_ms)) return 2;
            break;
        case 1022:
            if (psrec_row_dtype_parse(optarg, &c.row_dtype)) {
                fprintf(stderr, "psrec %s: --row-dtype: want f32, f16 or bf16, not '%s'\n", cmd, optarg);
                return 2;
            }
            break;
        case 1024: c.materialise = 1; break;
        case 1023:
            if (strcmp(optarg, "servers") && strcmp(optarg, "workers")) {
                fprintf(stderr, "psrec %s: --negatives-on: want workers or servers, not '%s'\n", cmd, optarg);
                return 2;
            }
            c.negatives_on_servers = strcmp(optarg, "servers") == 0;
            break;
        case 1021:
            if (psrec_cli_int(cmd, "--heartbeat-timeout", optarg, 100, 3600000, &c.heartbeat_timeout_ms)) return 2;
            break;
        case 1020: {
            char *end;
            double v = strtod(optarg, &end);
            double unit = *end == 'h' ? 3600 : *end == 'm' ? 60 : *end == 's' || !*end ? 1 : 0;
            if (end == optarg || !(v > 0) || unit == 0 || (*end && end[1])) {
                fprintf(stderr, "psrec %s: --mtbf: want a duration like 3600, 90m or 24h, not '%s'\n", cmd, optarg);
                return 2;
            }
            c.mtbf_secs = v * unit;
            break;
        }
        case 1010:
        case 1011:
        case 1012:
            if (!extra) {
                fprintf(stderr, "psrec %s: --bind/--workers/--advertise belong to `psrec coord` and `psrec server`\n",
                        cmd);
                return 2;
            }
            if (o == 1010)
                extra->bind = optarg;
            else if (o == 1012)
                extra->advertise = optarg;
            else if (psrec_cli_int(cmd, "--workers", optarg, 1, 65536, &extra->workers))
                return 2;
            break;
        case 'h': usage(stdout); return 1;
        default:
            if (o >= PSREC_CLI_SEC_FIRST && o <= PSREC_CLI_SEC_LAST) {
                if (psrec_cli_sec_parse(cmd, o, optarg, &c.sec,
                                        extra && !strcmp(cmd, "server") ? &extra->limits : NULL))
                    return 2;
                break;
            }
            usage(stderr);
            return 2;
        }
    }
    (void)iv;
    if (optind < argc) {
        fprintf(stderr, "psrec %s: unexpected argument '%s'\n", cmd, argv[optind]);
        return 2;
    }
    if (!emb_set) c.emb_dim = c.dim;
    if (full) c.sampler = PSREC_SAMPLER_ALL;
    if (!hard_keep_set) c.hard_keep = c.negatives / 4 > 0 ? c.negatives / 4 : 1;
    if (psrec_cli_sec_check(cmd, &c.sec, !strcmp(cmd, "train") && !c.coord)) return 2;
    *out = c;
    return 0;
}

static int run_training(const char *cmd, psrec_train_conf_t c)
{
    char err[PSREC_ERRBUF] = "";
    psrec_train_result_t res;
    psrec_err rc = psrec_train(&c, &res, err);
    if (rc) {
        fprintf(stderr, "psrec %s: %s\n", cmd, err[0] ? err : psrec_strerror(rc));
        return 1;
    }
    if (!c.quiet)
        fprintf(stderr,
                "psrec %s: %llu examples in %.2f s (%.0f examples/s, %llu steps), final loss %.5f, "
                "wire %.1f MB (%.1f MB before LZ4)%s%s\n",
                cmd, (unsigned long long)res.examples, res.seconds, res.examples_per_sec, (unsigned long long)res.steps,
                res.final_loss, res.wire_bytes / 1e6, res.wire_raw_bytes / 1e6, c.model_dir ? ", model in " : "",
                c.model_dir ? c.model_dir : "");
    struct rusage ru;
    double peak_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss / 1024.0 : 0; /* kB on Linux */
    printf("{\"examples\": %llu, \"seconds\": %.3f, \"examples_per_sec\": %.1f, \"final_loss\": %.6f, "
           "\"wire_bytes\": %llu, \"wire_raw_bytes\": %llu, \"peak_rss_mb\": %.1f, \"step_seconds\": %.3f, "
           "\"step_examples_per_sec\": %.1f, \"step_wire_bytes\": %llu}\n",
           (unsigned long long)res.examples, res.seconds, res.examples_per_sec, res.final_loss,
           (unsigned long long)res.wire_bytes, (unsigned long long)res.wire_raw_bytes, peak_mb, res.step_seconds,
           res.step_examples_per_sec, (unsigned long long)res.step_wire_bytes);
    return 0;
}

int psrec_cmd_train(int argc, char **argv)
{
    psrec_train_conf_t c;
    int r = psrec_cli_train_opts("train", argc, argv, &c, NULL);
    if (r) return r == 1 ? 0 : r;
    if (!c.data_dir) {
        usage(stderr);
        return 2;
    }
    return run_training("train", c);
}

int psrec_cmd_worker(int argc, char **argv)
{
    psrec_train_conf_t c;
    int r = psrec_cli_train_opts("worker", argc, argv, &c, NULL);
    if (r) return r == 1 ? 0 : r;
    if (!c.data_dir || !c.coord) {
        fprintf(stderr, "psrec worker: --coord ADDR and --data DIR are required\n");
        return 2;
    }
    return run_training("worker", c);
}

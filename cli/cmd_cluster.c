/* cmd_cluster.c: the cluster roles as processes: `psrec coord`, `psrec server`, `psrec status`
 * (`psrec worker` is training with --coord, in cmd_train.c). launch/run.sh starts these.
 * Thread model: main thread; ZeroMQ context per command. */
#include <cblas.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cli/cli.h"
#include "ps/coord.h"
#include "ps/server.h"
#include "worker/coord_client.h"
#include "worker/trainer.h"

int psrec_cmd_coord(int argc, char **argv)
{
    psrec_train_conf_t c;
    psrec_cli_cluster_t x = {.bind = "tcp://127.0.0.1:7750", .workers = 1};
    int r = psrec_cli_train_opts("coord", argc, argv, &c, &x);
    if (r) return r == 1 ? 0 : r;
    if (!c.data_dir) {
        fprintf(stderr, "psrec coord: --data DIR is required (the tables follow its slots)\n"
                        "usage: psrec coord --data DIR --servers S --workers W [--bind ADDR] [training options]\n");
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
    psrec_schema_t schema;
    psrec_err rc = psrec_train_data_schema(c.data_dir, &schema, err);
    if (rc) {
        fprintf(stderr, "psrec coord: %s\n", err);
        return 1;
    }
    if ((c.checkpoint_steps || c.checkpoint_secs != 0 || c.durability_log) && !c.checkpoint_dir) {
        fprintf(stderr, "psrec coord: --checkpoint-every and --durability need --checkpoint-dir\n");
        return 2;
    }
    uint32_t ids[PSREC_STORE_MAX_TABLES];
    psrec_table_conf_t tabs[PSREC_STORE_MAX_TABLES];
    int nt = psrec_train_tables(&c, &schema, ids, tabs);
    void *zctx = zmq_ctx_new();
    psrec_zsec_t *zs = NULL;
    rc = psrec_zsec_new(&zs, zctx, &c.sec, c.job_id, PSREC_ZSEC_SERVE, err);
    psrec_coord_conf_t cc = {.bind = x.bind,
                             .sec = zs,
                             .n_servers = c.servers,
                             .n_workers = x.workers,
                             .job_id = c.job_id,
                             .seed = c.seed,
                             .ntables = nt,
                             .table_ids = ids,
                             .tables = tabs,
                             .checkpoint_dir = c.checkpoint_dir,
                             .checkpoint_steps = c.checkpoint_steps,
                             .checkpoint_secs = c.checkpoint_secs,
                             .mtbf_secs = c.mtbf_secs,
                             .heartbeat_timeout_ms = c.heartbeat_timeout_ms,
                             .keep_rounds = c.keep_checkpoints,
                             .resume = c.resume,
                             .durability_log = c.durability_log};
    psrec_coord_t *co = NULL;
    if (!rc) rc = psrec_coord_new(&co, zctx, &cc, err);
    if (!rc) {
        fprintf(stderr,
                "psrec coord: listening on %s for %d server(s) and %d worker(s), job %" PRIu64
                ", connection security: %s\n",
                psrec_coord_endpoint(co), c.servers, x.workers, c.job_id, psrec_zsec_mode_name(zs));
        rc = psrec_coord_run(co, err);
    }
    psrec_coord_destroy(&co);
    psrec_zsec_destroy(&zs);
    zmq_ctx_term(zctx);
    if (rc) {
        fprintf(stderr, "psrec coord: %s\n", err[0] ? err : psrec_strerror(rc));
        return 1;
    }
    fprintf(stderr, "psrec coord: job complete\n");
    return 0;
}

int psrec_cmd_server(int argc, char **argv)
{
    psrec_train_conf_t c;
    psrec_cli_cluster_t x = {.bind = "tcp://127.0.0.1:0"};
    int r = psrec_cli_train_opts("server", argc, argv, &c, &x);
    if (r) return r == 1 ? 0 : r;
    if (!c.coord) {
        fprintf(stderr,
                "psrec server: --coord ADDR is required\n"
                "usage: psrec server --coord ADDR [--bind ADDR] [--advertise ADDR] [--job-id N] [--no-compress]\n");
        return 2;
    }
    char err[PSREC_ERRBUF] = "";
    /* the serving thread's GEMMs (server-side negatives) are small and share the machine with other
     * roles: OpenBLAS's own threads would only spin against them */
    openblas_set_num_threads(1);
    void *zctx = zmq_ctx_new();
    psrec_zsec_t *zs = NULL;
    psrec_err rc = psrec_zsec_new(&zs, zctx, &c.sec, c.job_id, PSREC_ZSEC_SERVE | PSREC_ZSEC_CONNECT, err);
    psrec_server_conf_t sc = {.bind = x.bind,
                              .advertise = x.advertise,
                              .coord = c.coord,
                              .job_id = c.job_id,
                              .rejoin = c.rank >= 0,
                              .rejoin_rank = c.rank >= 0 ? (uint32_t)c.rank : 0,
                              .compress = c.compress == 0 ? -1 : 1,
                              .sec = zs,
                              .limits = x.limits};
    psrec_server_t *s = NULL;
    if (!rc) rc = psrec_server_new(&s, zctx, &sc, err);
    if (!rc) {
        fprintf(stderr, "psrec server: rank %u serving on %s, connection security: %s\n", psrec_server_rank(s),
                psrec_server_endpoint(s), psrec_zsec_mode_name(zs));
        rc = psrec_server_run(s, err);
    }
    if (!rc) {
        psrec_server_stats_t st;
        psrec_server_get_stats(s, &st);
        uint64_t rows = 0;
        double bytes = 0;
        for (uint32_t t = 0; t < PSREC_STORE_MAX_TABLES; t++) {
            uint64_t n = psrec_store_rows(psrec_server_store(s), t);
            rows += n;
            bytes += n * psrec_store_bytes_per_row(psrec_server_store(s), t);
        }
        fprintf(stderr,
                "psrec server: stopped after %" PRIu64 " requests (%" PRIu64 " errors, %" PRIu64
                " duplicate pushes), %" PRIu64 " rows pulled, %" PRIu64 " pushed; holds %" PRIu64 " rows (%.1f MB)\n",
                st.requests, st.errors, st.duplicates, st.rows_pulled, st.rows_pushed, rows, bytes / 1e6);
        for (uint32_t t = 0; t < PSREC_STORE_MAX_TABLES; t++) { /* what each table's rows really cost */
            psrec_table_conf_t tc;
            if (psrec_store_table_conf(psrec_server_store(s), t, &tc)) continue;
            uint64_t refused = psrec_store_refused(psrec_server_store(s), t);
            char full[96] = "";
            if (refused)
                snprintf(full, sizeof full, "; full at %" PRIu64 " rows, %" PRIu64 " refusals of new keys", tc.max_rows,
                         refused);
            fprintf(stderr, "psrec server:   table %u: %" PRIu64 " rows of %u (%s, %s), %.1f bytes/row%s\n", t,
                    psrec_store_rows(psrec_server_store(s), t), tc.dim, psrec_row_dtype_name(tc.dtype),
                    psrec_opt_name(tc.opt.kind), psrec_store_bytes_per_row(psrec_server_store(s), t), full);
        }
        struct rusage ru;
        long hwm_kb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0; /* kB on Linux */
        fprintf(stderr,
                "psrec server: peak memory %.1f MB (max RSS); %" PRIu64 " rows touched (materialise), %" PRIu64
                " negatives drawn and scored here, %" PRIu64 " negative rows updated\n",
                hwm_kb / 1024.0, st.rows_touched, st.neg_scored, st.neg_applied);
        if (st.checkpoints || st.log_commits)
            fprintf(stderr,
                    "psrec server: %" PRIu64 " snapshot(s) taken; push log: %" PRIu64 " records in %" PRIu64
                    " group commits (%.1f records each, %.2f s in fdatasync)\n",
                    st.checkpoints, st.log_records, st.log_commits,
                    st.log_commits ? (double)st.log_records / (double)st.log_commits : 0.0, st.log_fsync_seconds);
    }
    psrec_server_destroy(&s);
    psrec_zsec_destroy(&zs);
    zmq_ctx_term(zctx);
    if (rc) {
        fprintf(stderr, "psrec server: %s\n", err[0] ? err : psrec_strerror(rc));
        return 1;
    }
    return 0;
}

static const char *role_name(Psrec__Role r)
{
    switch (r) {
    case PSREC__ROLE__SERVER: return "server";
    case PSREC__ROLE__WORKER: return "worker";
    case PSREC__ROLE__CLIENT: return "client";
    case PSREC__ROLE__COORDINATOR: return "coord";
    default: return "?";
    }
}

static void print_status(const Psrec__Header *st, const Psrec__Header *prev, double dt, const char *coord,
                         const psrec_zsec_t *zs)
{
    if (st->complete_round || st->checkpoint_round)
        printf("checkpoints: newest complete round %" PRIu64 "%s\n", st->complete_round,
               st->checkpoint_round ? " (a round is being taken)" : "");
    printf("job %" PRIu64 ": %u server(s), %u worker(s); shard map version %" PRIu64 "\n", st->job_id, st->n_servers,
           st->n_workers, st->shard_map ? st->shard_map->version : 0);
    /* what listens where: the coordinator here, each server in its row (workers only connect) */
    printf("coordinator listens on %s; connection security: %s\n", coord, psrec_zsec_mode_name(zs));
    if (st->shard_map && st->shard_map->n_slot_server) {
        printf("slots per server:");
        for (size_t s = 0; s < st->shard_map->n_server_addr; s++) {
            size_t n = 0;
            for (size_t i = 0; i < st->shard_map->n_slot_server; i++)
                n += st->shard_map->slot_server[i] == s;
            printf(" %zu:%zu", s, n);
        }
        printf("\n");
    }
    uint64_t max_step = 0;
    for (size_t i = 0; i < st->n_members; i++)
        if (st->members[i]->role == PSREC__ROLE__WORKER && st->members[i]->step > max_step)
            max_step = st->members[i]->step;
    printf("%-7s %4s %-6s %-28s %12s %10s %12s %12s %s\n", "role", "rank", "state", "listens on", "rows", "bytes/row",
           "pull rows/s", "push rows/s", "progress");
    for (size_t i = 0; i < st->n_members; i++) {
        const Psrec__Member *m = st->members[i];
        const Psrec__Member *p = NULL;
        for (size_t j = 0; prev && j < prev->n_members; j++)
            if (prev->members[j]->role == m->role && prev->members[j]->rank == m->rank) p = prev->members[j];
        uint64_t rows = 0;
        double bytes = 0;
        for (size_t t = 0; t < m->n_tables; t++) {
            rows += m->tables[t]->rows;
            bytes += m->tables[t]->rows * m->tables[t]->bytes_per_row;
        }
        char pr[32] = "-", ps[32] = "-", prog[96] = "";
        if (p && dt > 0) {
            snprintf(pr, sizeof pr, "%.0f", (m->pulls - p->pulls) / dt);
            snprintf(ps, sizeof ps, "%.0f", (m->pushes - p->pushes) / dt);
        }
        if (m->role == PSREC__ROLE__WORKER)
            snprintf(prog, sizeof prog, "%" PRIu64 "/%" PRIu64 " ex, loss %.4f, step %" PRIu64 " (lag %" PRIu64 ")",
                     m->examples, m->examples_total, m->loss, m->step, max_step - m->step);
        char rs[32] = "", bs[32] = "";
        if (m->role == PSREC__ROLE__SERVER) {
            snprintf(rs, sizeof rs, "%" PRIu64, rows);
            snprintf(bs, sizeof bs, "%.1f", rows ? bytes / rows : 0.0);
        }
        printf("%-7s %4u %-6s %-28s %12s %10s %12s %12s %s\n", role_name(m->role), m->rank, m->alive ? "alive" : "DEAD",
               m->addr && m->addr[0] ? m->addr : "-", rs, bs, m->role == PSREC__ROLE__SERVER ? pr : "",
               m->role == PSREC__ROLE__SERVER ? ps : "", prog);
    }
}

int psrec_cmd_status(int argc, char **argv)
{
    const char *coord = NULL;
    uint64_t job = 0; /* any job */
    int watch = 0, progress = 0, timeout = 3000;
    psrec_zsec_conf_t sec = {.mode = PSREC_ZSEC_TOKEN};
    static const struct option opts[] = {
        {"coord", 1, 0, 'c'},   {"job-id", 1, 0, 'j'}, {"watch", 0, 0, 'w'},  {"progress", 0, 0, 'p'},
        {"timeout", 1, 0, 't'}, {"help", 0, 0, 'h'},   PSREC_CLI_SEC_OPTIONS, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': coord = optarg; break;
        case 'j':
            if (psrec_cli_u64("status", "--job-id", optarg, &job)) return 2;
            break;
        case 'w': watch = 1; break;
        case 'p': progress = 1; break;
        case 't':
            if (psrec_cli_int("status", "--timeout", optarg, 1, 3600000, &timeout)) return 2;
            break;
        case 'h':
        default:
            if (o >= PSREC_CLI_SEC_FIRST && o <= PSREC_CLI_SEC_LAST) {
                if (psrec_cli_sec_parse("status", o, optarg, &sec, NULL)) return 2;
                break;
            }
            fprintf(o == 'h' ? stdout : stderr,
                    "usage: psrec status --coord ADDR --token-file FILE [--job-id N (default: any)] [--watch | "
                    "--progress]\n"
                    "                    [--timeout MS] [--secure --keys DIR | --insecure]\n"
                    "  members with the endpoints they listen on, shard map, rows and bytes per server, pull/push\n"
                    "  rates, worker progress and lag; --progress prints one combined progress line per second\n"
                    "  until the job ends.\n");
            if (o == 'h') psrec_cli_sec_usage(stdout, 0);
            return o == 'h' ? 0 : 2;
        }
    }
    if (!coord) {
        fprintf(stderr, "psrec status: --coord ADDR is required\n");
        return 2;
    }
    if (psrec_cli_sec_check("status", &sec, 0)) return 2;
    char err[PSREC_ERRBUF] = "";
    void *zctx = zmq_ctx_new();
    psrec_coord_client_t *cc = NULL;
    psrec_zsec_t *zs = NULL;
    psrec_err rc = psrec_zsec_new(&zs, zctx, &sec, job, PSREC_ZSEC_CONNECT, err);
    if (!rc) rc = psrec_coord_client_new_sec(&cc, zctx, coord, job, timeout, zs, err);
    Psrec__Header *prev = NULL, *st = NULL;
    double t_prev = 0;
    uint64_t prev_ex = 0; /* examples summed over the workers at the previous sample */
    int first = 1, ret = 0;
    while (!rc) {
        if ((rc = psrec_coord_client_status(cc, &st, err))) break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double t = ts.tv_sec + ts.tv_nsec * 1e-9;
        uint64_t ex = 0, total = 0;
        int done = st->n_members > 0, workers = 0;
        for (size_t i = 0; i < st->n_members; i++)
            if (st->members[i]->role == PSREC__ROLE__WORKER) {
                workers++;
                ex += st->members[i]->examples;
                total += st->members[i]->examples_total;
                if (!(st->members[i]->examples_total && st->members[i]->examples >= st->members[i]->examples_total))
                    done = 0;
            }
        if (progress) {
            double rate = prev && t > t_prev && ex >= prev_ex ? (double)(ex - prev_ex) / (t - t_prev) : 0;
            fprintf(stderr, "\rProgress: %5.1f%%  ex/s: %9.0f  loss: %8.5f  workers: %d/%u",
                    total ? 100.0 * ex / total : 0.0, rate, st->loss, workers, st->n_workers);
        } else if (!first) { /* the first sample only starts the rate measurement */
            print_status(st, prev, prev ? t - t_prev : 0, coord, zs);
        }
        if (prev) psrec__header__free_unpacked(prev, NULL);
        prev = st;
        prev_ex = ex;
        st = NULL;
        t_prev = t;
        if ((!watch && !progress && !first) || (progress && done && workers)) break;
        if (!watch && !progress) { /* one more sample a second later, for the rates */
            first = 0;
            zmq_poll(NULL, 0, 1000);
            continue;
        }
        first = 0;
        zmq_poll(NULL, 0, 1000);
    }
    if (progress) fprintf(stderr, "\n");
    if (prev) psrec__header__free_unpacked(prev, NULL);
    psrec_coord_client_destroy(&cc);
    psrec_zsec_destroy(&zs);
    zmq_ctx_term(zctx);
    if (rc) {
        /* --progress ends when the coordinator has gone away: the job is over */
        if (progress && !first) return 0;
        fprintf(stderr, "psrec status: %s\n", err[0] ? err : psrec_strerror(rc));
        ret = 1;
    }
    return ret;
}

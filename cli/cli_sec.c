/* cli_sec.c: the connection-security options (--token-file, --secure, --keys, --insecure) and the
 * server's per-peer limits (--max-msg-mb, --max-inflight, --max-new-rows, --max-rows), parsed the same
 * way by every command that opens sockets. Design: the roles of a job started by hand need the job's
 * token from a file (never the command line, where `ps` shows it to every user), so forgetting it is
 * an error that says how to make one, not a silently open server; `psrec train` alone makes its
 * secrets in memory. Thread model: main thread. */
#include "cli/cli.h"

#include <string.h>

int psrec_cli_sec_parse(const char *cmd, int code, const char *arg, psrec_zsec_conf_t *sec, psrec_limits_t *limits)
{
    int v;
    uint64_t u;
    switch (code) {
    case PSREC_CLI_TOKEN_FILE: sec->token_file = arg; return 0;
    case PSREC_CLI_SECURE: sec->mode = PSREC_ZSEC_CURVE; return 0;
    case PSREC_CLI_KEYS: sec->keys_dir = arg; return 0;
    case PSREC_CLI_INSECURE: sec->mode = PSREC_ZSEC_NONE; return 0;
    default: break;
    }
    if (!limits) {
        fprintf(stderr,
                "psrec %s: --max-msg-mb, --max-inflight, --max-new-rows, --max-rows and --at-max-rows belong "
                "to `psrec server`\n",
                cmd);
        return -1;
    }
    switch (code) {
    case PSREC_CLI_MAX_MSG_MB:
        if (psrec_cli_int(cmd, "--max-msg-mb", arg, 1, (int)(PSREC_WIRE_MAX_FRAME_BYTES >> 20), &v)) return -1;
        limits->max_msg_bytes = (uint64_t)v << 20;
        return 0;
    case PSREC_CLI_MAX_INFLIGHT:
        if (psrec_cli_int(cmd, "--max-inflight", arg, 1, 1 << 20, &v)) return -1;
        limits->max_inflight = (uint32_t)v;
        return 0;
    case PSREC_CLI_MAX_NEW_ROWS:
        if (psrec_cli_int(cmd, "--max-new-rows", arg, 1, (int)PSREC_WIRE_MAX_KEYS, &v)) return -1;
        limits->max_new_rows = (uint32_t)v;
        return 0;
    case PSREC_CLI_MAX_ROWS:
        if (psrec_cli_u64(cmd, "--max-rows", arg, &u)) return -1;
        limits->max_rows = u;
        return 0;
    case PSREC_CLI_AT_MAX_ROWS:
        if (strcmp(arg, "skip") && strcmp(arg, "fail")) {
            fprintf(stderr, "psrec %s: --at-max-rows: want skip or fail, not '%s'\n", cmd, arg);
            return -1;
        }
        limits->max_rows_fail = strcmp(arg, "fail") == 0;
        return 0;
    default: fprintf(stderr, "psrec %s: unknown option code %d\n", cmd, code); return -1;
    }
}

int psrec_cli_sec_check(const char *cmd, const psrec_zsec_conf_t *sec, int embedded)
{
    if (sec->mode == PSREC_ZSEC_CURVE) {
        if (!psrec_zsec_has_curve()) {
            fprintf(stderr,
                    "psrec %s: --secure needs CURVE, and this libzmq was built without it "
                    "(zmq_has(\"curve\") is false); install a libzmq built with libsodium\n",
                    cmd);
            return -1;
        }
        if (sec->token_file) {
            fprintf(stderr, "psrec %s: --token-file is the token mode; --secure authenticates with --keys\n", cmd);
            return -1;
        }
        if (!sec->keys_dir && !embedded) {
            fprintf(stderr, "psrec %s: --secure needs --keys DIR (make one with `psrec keygen --out DIR`)\n", cmd);
            return -1;
        }
        return 0;
    }
    if (sec->keys_dir) {
        fprintf(stderr, "psrec %s: --keys goes with --secure\n", cmd);
        return -1;
    }
    if (sec->mode == PSREC_ZSEC_NONE) {
        if (sec->token_file) {
            fprintf(stderr, "psrec %s: --insecure and --token-file contradict each other\n", cmd);
            return -1;
        }
        return 0;
    }
    if (!sec->token_file && !embedded) {
        fprintf(stderr,
                "psrec %s: --token-file FILE is required: the job's secret token, shared by every role of the job\n"
                "  (make one with `psrec keygen --token FILE`; launch/run.sh does it for you), or --secure --keys "
                "DIR for CURVE,\n  or --insecure on a network where every process is trusted\n",
                cmd);
        return -1;
    }
    return 0;
}

void psrec_cli_sec_usage(FILE *f, int with_limits)
{
    fprintf(f, "connection security (docs/security.md):\n"
               "  --token-file FILE   the job's secret token (`psrec keygen --token FILE`); required by coord,\n"
               "                      server, worker and status; `psrec train` alone makes one in memory\n"
               "  --secure --keys DIR CURVE encryption + authentication with the keys of `psrec keygen --out DIR`\n"
               "  --insecure          no connection check (benchmarks, fully trusted networks)\n");
    if (with_limits)
        fprintf(f,
                "per-peer limits (psrec server):\n"
                "  --max-msg-mb N      largest message frame, on the wire or decoded (default %llu)\n"
                "  --max-inflight N    requests of one client queued at once (default %d)\n"
                "  --max-new-rows N    rows one request may create (default %u)\n"
                "  --max-rows N        rows per table on this server (default: no limit)\n"
                "  --at-max-rows P     skip (default): a full table refuses new keys one by one, counted and\n"
                "                      logged (pulls get initial values, updates are dropped), and training goes\n"
                "                      on; fail: it refuses the whole request with an error\n",
                (unsigned long long)(PSREC_LIMITS_MAX_MSG >> 20), PSREC_LIMITS_INFLIGHT, PSREC_LIMITS_NEW_ROWS);
}

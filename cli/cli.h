/* cli.h: the `psrec` subcommands (one file each) and the small helpers they share. */
#ifndef PSREC_CLI_H
#define PSREC_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "common/zsec.h"
#include "ps/limits.h"

int psrec_cmd_gen(int argc, char **argv);
int psrec_cmd_import(int argc, char **argv);
int psrec_cmd_prep(int argc, char **argv);
int psrec_cmd_train(int argc, char **argv);
int psrec_cmd_eval(int argc, char **argv);
int psrec_cmd_export(int argc, char **argv);
int psrec_cmd_recommend(int argc, char **argv);
int psrec_cmd_worker(int argc, char **argv);
int psrec_cmd_coord(int argc, char **argv);
int psrec_cmd_server(int argc, char **argv);
int psrec_cmd_status(int argc, char **argv);
int psrec_cmd_wals(int argc, char **argv);
int psrec_cmd_keygen(int argc, char **argv);

/* Options of the cluster roles beyond the training options. */
typedef struct {
    const char *bind;
    const char *advertise;
    int workers;
    psrec_limits_t limits; /* psrec server: per-peer bounds */
} psrec_cli_cluster_t;

/* Connection-security and server-limit options (cli/cli_sec.c), shared by train, worker, coord, server
 * and status: append PSREC_CLI_SEC_OPTIONS to a getopt_long table and hand the codes in
 * [PSREC_CLI_SEC_FIRST, PSREC_CLI_SEC_LAST] to psrec_cli_sec_parse. */
enum {
    PSREC_CLI_SEC_FIRST = 1100,
    PSREC_CLI_TOKEN_FILE = PSREC_CLI_SEC_FIRST,
    PSREC_CLI_SECURE,
    PSREC_CLI_KEYS,
    PSREC_CLI_INSECURE,
    PSREC_CLI_MAX_MSG_MB,
    PSREC_CLI_MAX_INFLIGHT,
    PSREC_CLI_MAX_NEW_ROWS,
    PSREC_CLI_MAX_ROWS,
    PSREC_CLI_AT_MAX_ROWS,
    PSREC_CLI_SEC_LAST = PSREC_CLI_AT_MAX_ROWS
};
#define PSREC_CLI_SEC_OPTIONS                                                                                          \
    {"token-file", 1, 0, PSREC_CLI_TOKEN_FILE}, {"secure", 0, 0, PSREC_CLI_SECURE}, {"keys", 1, 0, PSREC_CLI_KEYS},    \
        {"insecure", 0, 0, PSREC_CLI_INSECURE}, {"max-msg-mb", 1, 0, PSREC_CLI_MAX_MSG_MB},                            \
        {"max-inflight", 1, 0, PSREC_CLI_MAX_INFLIGHT}, {"max-new-rows", 1, 0, PSREC_CLI_MAX_NEW_ROWS},                \
        {"max-rows", 1, 0, PSREC_CLI_MAX_ROWS},                                                                        \
    {                                                                                                                  \
        "at-max-rows", 1, 0, PSREC_CLI_AT_MAX_ROWS                                                                     \
    }
/* Handles one of those options (limits: only with a non-NULL limits, i.e. `psrec server`).
 * Returns 0, or -1 after printing why. */
int psrec_cli_sec_parse(const char *cmd, int code, const char *arg, psrec_zsec_conf_t *sec, psrec_limits_t *limits);
/* After parsing: a job's roles need --token-file (or --secure --keys, or --insecure); an embedded
 * `psrec train` (embedded = 1) makes its secrets in memory. Returns 0, or -1 after printing why. */
int psrec_cli_sec_check(const char *cmd, const psrec_zsec_conf_t *sec, int embedded);
/* The usage lines of those options. */
void psrec_cli_sec_usage(FILE *f, int with_limits);

#include "worker/trainer.h"
int psrec_cli_train_opts(const char *cmd, int argc, char **argv, psrec_train_conf_t *out, psrec_cli_cluster_t *extra);
void psrec_cli_train_usage(FILE *f);

/* Strict number parsing for options: prints "psrec <cmd>: --opt: bad value 'x'" and returns -1. */
int psrec_cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
int psrec_cli_int(const char *cmd, const char *opt, const char *s, int lo, int hi, int *out);
int psrec_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);

#endif

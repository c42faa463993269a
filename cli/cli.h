/* cli.h: the `psrec` subcommands (one file each) and the small helpers they share. */
#ifndef PSREC_CLI_H
#define PSREC_CLI_H

#include <stdint.h>

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

/* Options of the cluster roles beyond the training options. */
typedef struct {
    const char *bind;
    const char *advertise;
    int workers;
} psrec_cli_cluster_t;

#include <stdio.h>
#include "worker/trainer.h"
int psrec_cli_train_opts(const char *cmd, int argc, char **argv, psrec_train_conf_t *out, psrec_cli_cluster_t *extra);
void psrec_cli_train_usage(FILE *f);

/* Strict number parsing for options: prints "psrec <cmd>: --opt: bad value 'x'" and returns -1. */
int psrec_cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
int psrec_cli_int(const char *cmd, const char *opt, const char *s, int lo, int hi, int *out);
int psrec_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);

#endif

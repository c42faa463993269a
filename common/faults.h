/* faults.h: transport and disk fault injection, off unless the environment turns it on.
 *
 * PSREC_FAULTS="drop=0.05,dup=0.05,delay=0.02,delay_ms=50,seed=7,write_fail=0.01" makes every message
 * sent through psrec_wire_send (requests and replies, every role) independently
 *   - dropped (reported as sent, never sent) with probability drop,
 *   - sent twice with probability dup,
 *   - sent after a pause of delay_ms with probability delay (drop + dup + delay <= 1),
 * and every psrec_dfile_write fail with PSREC_EIO with probability write_fail. It is how the retry,
 * de-duplication and recovery paths are exercised (SQLite's test_vfs idea, but chosen at run time so
 * a whole cluster can run lossy without a special build).
 *
 * The variable is read once per process (pthread_once) into an immutable configuration; an unknown
 * key or a bad value is reported on stderr naming the key, and faults stay off (never an abort).
 * With the variable unset, the cost on the send path is one well-predicted branch.
 * Decisions draw from a per-thread xoshiro stream seeded from seed and a per-process thread counter,
 * so they are thread-safe without locks; the counters are atomics.
 * Thread model: everything here may be called from any thread. */
#ifndef PSREC_FAULTS_H
#define PSREC_FAULTS_H

#include <stdint.h>

#include "common/err.h"

#define PSREC_FAULTS_ENV "PSREC_FAULTS"
#define PSREC_FAULTS_MAX_DELAY_MS 60000
#define PSREC_FAULTS_DEFAULT_DELAY_MS 10

typedef struct {
    double drop, dup, delay; /* per message; their sum is at most 1 */
    int delay_ms;            /* pause of a delayed message (default 10) */
    double write_fail;       /* per psrec_dfile_write */
    uint64_t seed;           /* decision streams (default 1) */
    int enabled;             /* some probability is > 0 */
} psrec_faults_t;

/* The process configuration from PSREC_FAULTS (parsed at the first call; enabled = 0 when unset or
 * invalid). Never NULL. */
const psrec_faults_t *psrec_faults(void);

/* Parses a spec like the variable's value into *f (NULL or "" = all off). On a bad spec *f is all off,
 * err (may be NULL) names the key or value, and the code is PSREC_EPARSE. */
psrec_err psrec_faults_parse(const char *spec, psrec_faults_t *f, char *err) PSREC_MUST_CHECK;

typedef enum { PSREC_FAULT_NONE, PSREC_FAULT_DROP, PSREC_FAULT_DUP, PSREC_FAULT_DELAY } psrec_fault_kind;

/* What to do with the message about to be sent (counted in the statistics). */
psrec_fault_kind psrec_faults_on_send(const psrec_faults_t *f);
/* 1: the caller fails this write with PSREC_EIO (counted). */
int psrec_faults_fail_write(const psrec_faults_t *f);

typedef struct {
    uint64_t dropped, duplicated, delayed, failed_writes;
} psrec_faults_stats_t;

/* Faults injected so far in this process (any configuration). */
void psrec_faults_stats(psrec_faults_stats_t *st);

#endif

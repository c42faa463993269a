/* ratelog.h: rate-limited log lines, for events a peer can trigger at will (a refused connection, a
 * message from another job): the first line for a key is written at once, later ones for the same key
 * at most once per interval, each saying how many were suppressed since the previous one. A stray
 * process retrying every 100 ms thus costs one line per interval, not a flooded log.
 * Thread model: one owner thread per psrec_ratelog_t (each role loop and the ZAP handler own theirs). */
#ifndef PSREC_RATELOG_H
#define PSREC_RATELOG_H

#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

#define PSREC_RATELOG_KEYS 64    /* distinct keys remembered (least recently logged forgotten first) */
#define PSREC_RATELOG_KEY_MAX 96 /* bytes of a key kept (longer keys are cut) */

typedef struct psrec_ratelog psrec_ratelog_t;

/* out: where lines go (stderr in the roles); NULL keeps counting but writes nothing (quiet tests).
 * interval_ms: the least time between two lines of one key (> 0). */
psrec_err psrec_ratelog_new(psrec_ratelog_t **rl, FILE *out, int interval_ms) PSREC_MUST_CHECK;
void psrec_ratelog_destroy(psrec_ratelog_t **rl);

/* Logs "psrec: <text>" for key unless a line of that key went out less than interval ago; returns 1
 * if written, 0 if suppressed (counted, and reported as "(N more since)" with the next line). */
int psrec_ratelog(psrec_ratelog_t *rl, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Events seen so far (written + suppressed). */
uint64_t psrec_ratelog_events(const psrec_ratelog_t *rl);

#endif

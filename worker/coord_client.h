/* coord_client.h: a member's side of the coordinator protocol (ps/coord.h): register, heartbeat,
 * barrier, shard map, status. Each call is one request/reply over a DEALER socket with a deadline
 * and retries (ENOTREADY answers are retried until the deadline), so a slow or missing coordinator
 * becomes PSREC_ETIMEDOUT, never a hang. A request is re-sent with the same seq every resend_ms
 * until its reply comes (a restarted coordinator lost it); the coordinator answers a repeated
 * request once. REGISTER is the exception: it is sent once per call, because a second REGISTER would
 * take a second rank or bump the epoch again.
 * Thread model: one coord client per thread. */
#ifndef PSREC_COORD_CLIENT_H
#define PSREC_COORD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/wire.h"
#include "common/zsec.h"

typedef struct psrec_coord_client psrec_coord_client_t;

/* Connects to the coordinator; nothing is sent yet. timeout_ms bounds every call (default 30000 if 0). */
psrec_err psrec_coord_client_new(psrec_coord_client_t **c, void *zctx, const char *coord, uint64_t job_id,
                                 int timeout_ms, char *err) PSREC_MUST_CHECK;
/* The same through the job's connection security (common/zsec.h; NULL: none): the handshake is
 * tried first, so a coordinator that refuses this process's token or key is PSREC_EREFUSED saying
 * which, not a timeout. */
psrec_err psrec_coord_client_new_sec(psrec_coord_client_t **c, void *zctx, const char *coord, uint64_t job_id,
                                     int timeout_ms, const psrec_zsec_t *sec, char *err) PSREC_MUST_CHECK;
void psrec_coord_client_destroy(psrec_coord_client_t **c);
/* The deadline of every later call (timeout_ms <= 0: the default 30000), e.g. a long one for barriers
 * while a member restarts. */
void psrec_coord_client_set_timeout(psrec_coord_client_t *c, int timeout_ms);
/* The re-send interval of unanswered requests (resend_ms <= 0: the default 1000). */
void psrec_coord_client_set_resend(psrec_coord_client_t *c, int resend_ms);

/* Registers as role (PSREC__ROLE__SERVER/WORKER) with addr (servers) and wanted rank (UINT32_MAX =
 * any); waits until the shard map is complete. On success *reply is the REGISTER_OK header (the caller
 * frees it with psrec__header__free_unpacked): rank, epoch, tables, seed, shard_map. */
psrec_err psrec_coord_client_register(psrec_coord_client_t *c, Psrec__Role role, const char *addr, uint32_t want_rank,
                                      Psrec__Header **reply, char *err) PSREC_MUST_CHECK;
/* Sends a heartbeat built by the caller (type and identity are filled here); *stop = job over. */
psrec_err psrec_coord_client_heartbeat(psrec_coord_client_t *c, Psrec__Header *hb, int *stop,
                                       char *err) PSREC_MUST_CHECK;
/* The same, handing over the whole HEARTBEAT_OK header (checkpoint rounds...): the caller frees *reply
 * with psrec__header__free_unpacked; NULL on failure. */
psrec_err psrec_coord_client_heartbeat_reply(psrec_coord_client_t *c, Psrec__Header *hb, Psrec__Header **reply,
                                             char *err) PSREC_MUST_CHECK;
/* Waits until `count` members reached barrier `name` (bounded by the timeout). */
psrec_err psrec_coord_client_barrier(psrec_coord_client_t *c, const char *name, uint32_t count,
                                     char *err) PSREC_MUST_CHECK;
/* The cluster view (STATUS_OK header; caller frees). */
psrec_err psrec_coord_client_status(psrec_coord_client_t *c, Psrec__Header **reply, char *err) PSREC_MUST_CHECK;
/* Asks the coordinator to end the job. */
psrec_err psrec_coord_client_shutdown(psrec_coord_client_t *c, char *err) PSREC_MUST_CHECK;

#endif

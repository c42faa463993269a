/* zsec.h: who may talk to a psrec job: connection-level security for every ZeroMQ socket psrec binds
 * or connects, through ZeroMQ's own mechanisms and its ZAP handler (RFC 27).
 *
 * Modes (one per job; every role of the job uses the same):
 *  - TOKEN (default): the PLAIN mechanism with user name = job id and password = the job's secret
 *    token. Servers and the coordinator accept a connection only if the ZAP handler finds both right
 *    (job id 0 = "any job": `psrec status` without --job-id; the token still has to match). A stray
 *    process or another job on overlapping ports never gets a session. The token crosses the network
 *    in clear text: it protects against accidents and other users' processes, not against someone
 *    who can read the traffic (use CURVE on a shared network).
 *  - CURVE (--secure): CurveZMQ, i.e. encryption and mutual authentication. Servers and the
 *    coordinator hold the server key pair; clients know the server's public key and have key pairs of
 *    their own; the ZAP handler accepts only client public keys listed in authorized_keys.
 *  - NONE (--insecure): no connection-level check (benchmarks, fully trusted networks). Messages
 *    still carry the job id and servers refuse other jobs' messages.
 * inproc:// connections never run a ZeroMQ security handshake: threads of one process are trusted.
 *
 * Files (`psrec keygen`): a token file holds one line of at least PSREC_ZSEC_TOKEN_MIN printable
 * characters; a key directory holds server.key/server.pub, client.key/client.pub (Z85, 40
 * characters) and authorized_keys (one Z85 public key per line, lines starting with # are comments, anything after the
 * key ignored). Secret files (token, *.key) must not be readable by group or others (ssh's rule): on a shared machine a
 * readable secret is no secret.
 *
 * Thread model: a psrec_zsec_t is immutable after psrec_zsec_new except for counters; bind/connect may
 * be called from any thread (each on its own socket). The ZAP handler runs on a thread of its own,
 * started by new() when the process serves, and stopped by destroy(), which must come after every
 * socket that used the object is closed and before zmq_ctx_term. One psrec_zsec_t serving per
 * ZeroMQ context (ZeroMQ has one ZAP endpoint per context): embedded mode shares one between the
 * coordinator, the servers and the workers. */
#ifndef PSREC_ZSEC_H
#define PSREC_ZSEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define PSREC_ZSEC_TOKEN_MIN 32  /* characters of a token (a generated one has 64 hex digits: 256 bits) */
#define PSREC_ZSEC_TOKEN_MAX 255 /* the PLAIN mechanism's password limit */
#define PSREC_ZSEC_KEY_Z85 40    /* characters of a Z85 CURVE key */
#define PSREC_ZSEC_MAX_AUTHORIZED 65536

typedef enum { PSREC_ZSEC_NONE = 0, PSREC_ZSEC_TOKEN = 1, PSREC_ZSEC_CURVE = 2 } psrec_zsec_mode;

/* What this process does with its sockets (new() loads and checks only what is needed). */
enum { PSREC_ZSEC_SERVE = 1, PSREC_ZSEC_CONNECT = 2 };

typedef struct {
    psrec_zsec_mode mode;
    const char *token_file; /* TOKEN: the job's token; NULL: a fresh random token in memory (embedded) */
    const char *keys_dir;   /* CURVE: key directory; NULL: fresh key pairs in memory (embedded) */
    int quiet;              /* refusals are counted but not logged */
} psrec_zsec_conf_t;

typedef struct psrec_zsec psrec_zsec_t;

/* Loads the secrets (or makes them, see conf), and with PSREC_ZSEC_SERVE in roles starts the ZAP
 * handler on zctx. job_id is the PLAIN user name (0: any job, for a client such as status).
 * Errors: PSREC_ENOTFOUND (a token/key file missing), PSREC_EIO (unreadable), PSREC_EINVAL (too short,
 * malformed), PSREC_EREFUSED (a secret readable by others), PSREC_EUNSUPPORTED (CURVE requested but
 * this libzmq has none), PSREC_EIO (the ZAP endpoint is taken: another psrec_zsec_t serves zctx). */
psrec_err psrec_zsec_new(psrec_zsec_t **z, void *zctx, const psrec_zsec_conf_t *conf, uint64_t job_id, int roles,
                         char *err) PSREC_MUST_CHECK;
void psrec_zsec_destroy(psrec_zsec_t **z);

/* Sets the server side of the mechanism on sock and binds it (z NULL: a plain zmq_bind). A tcp
 * endpoint on a non-loopback address without CURVE is bound with a warning on stderr (the token
 * would cross that network in clear text). PSREC_EIO on a bind failure (text names the endpoint). */
psrec_err psrec_zsec_bind(const psrec_zsec_t *z, void *sock, const char *endpoint, char *err) PSREC_MUST_CHECK;

/* Sets the client side of the mechanism on sock and connects it (z NULL: a plain zmq_connect). With
 * probe_ms > 0 and a tcp/ipc endpoint, first tries a handshake on a scratch socket for up to probe_ms:
 * a peer that refuses this process's credentials, or speaks another mechanism, is PSREC_EREFUSED with
 * a message saying which and what to check; a peer that does not answer in time is not an error (the
 * caller's own deadline reports it). */
psrec_err psrec_zsec_connect(const psrec_zsec_t *z, void *zctx, void *sock, const char *endpoint, int probe_ms,
                             char *err) PSREC_MUST_CHECK;

/* "token", "curve" or "none" (z NULL: "none"). */
const char *psrec_zsec_mode_name(const psrec_zsec_t *z);
psrec_zsec_mode psrec_zsec_mode_of(const psrec_zsec_t *z);

typedef struct {
    uint64_t accepted, refused; /* ZAP verdicts given by this process's handler */
} psrec_zsec_stats_t;
void psrec_zsec_stats(const psrec_zsec_t *z, psrec_zsec_stats_t *st);

/* Does this libzmq do CURVE (zmq_has("curve"))? */
int psrec_zsec_has_curve(void);

/* ---- secrets on disk ---- */

/* A fresh random token: 64 hex digits and a NUL (out has at least 65 bytes). */
psrec_err psrec_zsec_token_generate(char *out, char *err) PSREC_MUST_CHECK;
/* Writes a fresh token to a new file of mode 0600 (never overwrites: PSREC_EINVAL if path exists). */
psrec_err psrec_zsec_token_write(const char *path, char *err) PSREC_MUST_CHECK;
/* Reads a token file (first line, trailing whitespace dropped) into out (cap >= PSREC_ZSEC_TOKEN_MAX+1). */
psrec_err psrec_zsec_token_read(const char *path, char *out, size_t cap, char *err) PSREC_MUST_CHECK;
/* Writes a CURVE key pair as DIR/NAME.key (secret, 0600) and DIR/NAME.pub (creating DIR, mode 0700);
 * never overwrites. */
psrec_err psrec_zsec_keygen(const char *dir, const char *name, char *err) PSREC_MUST_CHECK;
/* Appends DIR/NAME.pub to DIR/authorized_keys (created 0644 if missing). */
psrec_err psrec_zsec_authorize(const char *dir, const char *name, char *err) PSREC_MUST_CHECK;

#endif

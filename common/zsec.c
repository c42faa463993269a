/* zsec.c: connection-level security of psrec's ZeroMQ sockets (see zsec.h): the job token over the
 * PLAIN mechanism, CurveZMQ key pairs, the ZAP handler that judges every incoming connection, and a
 * handshake probe that turns a refusal into a clear client-side error.
 *
 * Design.
 * - Authentication happens once per connection, in ZeroMQ's handshake, not per message: a peer that
 *   fails it never gets a session, so nothing it sends reaches a role's loop or allocates a request
 *   (ZeroMQ reads only the few handshake commands). Messages keep their job id, checked by the roles,
 *   which separates jobs that share keys under CURVE.
 * - The judge is a ZAP handler (RFC 27): a REP socket on inproc://zeromq.zap.01 of the context, on a
 *   thread of its own, answering 200 or 400. Its verdicts are counted, and refusals logged through a
 *   ratelog (one line per peer address and reason per 10 s: a refused peer reconnects every 100 ms).
 *   The token is compared in constant time.
 * - Why PLAIN for the token rather than a token inside every message: a per-message check would let
 *   any process open a session and make the server decode its (possibly huge) messages before being
 *   refused; the handshake refuses it for a few hundred bytes. PLAIN is also free after the handshake
 *   (no per-frame cost), which CURVE is not (see docs/security.md for the measured cost).
 * - A refused client sees nothing from ZeroMQ but silence (its messages wait for a session that never
 *   comes). psrec_zsec_connect can first run the handshake on a scratch socket with a monitor and read
 *   the verdict event (HANDSHAKE_SUCCEEDED / FAILED_AUTH / FAILED_PROTOCOL), so "wrong token" or
 *   "mechanism mismatch" becomes an error naming what to check instead of a timeout. The monitor's
 *   PAIR end is connected before the scratch socket connects and the monitor is stopped before either
 *   closes, so no event is ever sent to a PAIR without a peer.
 * Thread model: see zsec.h. The handler thread owns the ZAP socket, its control socket and the
 *   ratelog; the rest of the object is read-only after new() except the atomic counters. */
#include "common/zsec.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/ratelog.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN "psrec"
#define LOG_INTERVAL_MS 10000
#define MAX_ZAP_FRAMES 8
#define KEYBUF (PSREC_ZSEC_KEY_Z85 + 1)
#define PROBE_CLOSED 4 /* handshakes the peer cut short before the probe calls it a refusal */

struct psrec_zsec {
    psrec_zsec_mode mode;
    int roles;
    uint64_t job_id;
    char job_str[24];
    char token[PSREC_ZSEC_TOKEN_MAX + 1];
    char keys_dir[512]; /* for messages ("" = in memory) */
    char server_public[KEYBUF], server_secret[KEYBUF];
    char client_public[KEYBUF], client_secret[KEYBUF];
    uint8_t (*authorized)[32];
    size_t nauthorized;
    /* ZAP handler */
    void *zap, *ctl_in, *ctl_out;
    pthread_t thread;
    int started;
    psrec_ratelog_t *log;
    atomic_uint_fast64_t accepted, refused;
};

int psrec_zsec_has_curve(void)
{
    return zmq_has("curve") != 0;
}

/* ---- secrets on disk ---- */

/* Reads the first line of a file into out (trailing whitespace dropped). secret: refuse a file that
 * group or others may read. what: "token file", "secret key", ... for messages. */
static psrec_err read_line(const char *path, char *out, size_t cap, int secret, const char *what, const char *hint,
                           char *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return psrec_fail(err, PSREC_ENOTFOUND, "%s %s does not exist%s%s", what, path, hint ? " " : "",
                              hint ? hint : "");
        return psrec_fail(err, PSREC_EIO, "%s %s: %s", what, path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return psrec_fail(err, PSREC_EINVAL, "%s %s is not a regular file", what, path);
    if (secret && (st.st_mode & 077))
        return psrec_fail(err, PSREC_EREFUSED,
                          "%s %s may be read by group or others (mode %04o): a shared secret is no secret; "
                          "chmod 600 %s",
                          what, path, (unsigned)(st.st_mode & 07777), path);
    FILE *f = fopen(path, "r");
    if (!f) return psrec_fail(err, PSREC_EIO, "%s %s: %s", what, path, strerror(errno));
    char line[1024];
    char *got = fgets(line, sizeof line, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) return psrec_fail(err, PSREC_EIO, "%s %s: read error", what, path);
    if (!got) line[0] = 0;
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = 0;
    if (n >= cap) return psrec_fail(err, PSREC_EINVAL, "%s %s: line of %zu characters is too long", what, path, n);
    memcpy(out, line, n + 1);
    return PSREC_OK;
}

psrec_err psrec_zsec_token_generate(char *out, char *err)
{
    unsigned char b[32];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t r = getrandom(b + got, sizeof b - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return psrec_fail(err, PSREC_EIO, "getrandom: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof b; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * sizeof b] = 0;
    return PSREC_OK;
}

/* Creates path (never overwriting) with mode and writes text + "\n" durably. */
static psrec_err write_new(const char *path, int mode, const char *text, const char *what, char *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST) return psrec_fail(err, PSREC_EINVAL, "%s %s exists already (not overwritten)", what, path);
        return psrec_fail(err, PSREC_EIO, "cannot create %s %s: %s", what, path, strerror(errno));
    }
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0) ok = 0;
    if (!ok) {
        unlink(path);
        return psrec_fail(err, PSREC_EIO, "writing %s %s: %s", what, path, strerror(e));
    }
    return PSREC_OK;
}

psrec_err psrec_zsec_token_write(const char *path, char *err)
{
    char tok[65];
    psrec_err rc = psrec_zsec_token_generate(tok, err);
    if (!rc) rc = write_new(path, 0600, tok, "token file", err);
    memset(tok, 0, sizeof tok);
    return rc;
}

psrec_err psrec_zsec_token_read(const char *path, char *out, size_t cap, char *err)
{
    char line[PSREC_ZSEC_TOKEN_MAX + 1];
    psrec_err rc =
        read_line(path, line, sizeof line, 1, "token file", "(create one with `psrec keygen --token FILE`)", err);
    if (rc) return rc;
    size_t n = strlen(line);
    if (n < PSREC_ZSEC_TOKEN_MIN)
        return psrec_fail(err, PSREC_EINVAL, "token file %s: token of %zu characters, at least %d needed", path, n,
                          PSREC_ZSEC_TOKEN_MIN);
    for (size_t i = 0; i < n; i++)
        if (line[i] <= ' ' || line[i] > '~')
            return psrec_fail(err, PSREC_EINVAL, "token file %s: character %zu is not printable ASCII", path, i + 1);
    if (n + 1 > cap) return psrec_fail(err, PSREC_EINVAL, "token file %s: token too long for the buffer", path);
    memcpy(out, line, n + 1);
    memset(line, 0, sizeof line);
    return PSREC_OK;
}

static int valid_name(const char *name)
{
    if (!name || !*name || strlen(name) > 64 || !strcmp(name, "authorized_keys") || name[0] == '.') return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return 0;
    return 1;
}

psrec_err psrec_zsec_keygen(const char *dir, const char *name, char *err)
{
    if (!psrec_zsec_has_curve())
        return psrec_fail(err, PSREC_EUNSUPPORTED, "this libzmq has no CURVE (zmq_has(\"curve\") is false)");
    if (!valid_name(name))
        return psrec_fail(err, PSREC_EINVAL, "key name '%s': use letters, digits, '-', '_' and '.'", name ? name : "");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return psrec_fail(err, PSREC_EIO, "cannot create key directory %s: %s", dir, strerror(errno));
    char pub[KEYBUF], sec[KEYBUF], path[4200];
    if (zmq_curve_keypair(pub, sec) != 0)
        return psrec_fail(err, PSREC_EIO, "zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
    snprintf(path, sizeof path, "%s/%s.pub", dir, name);
    struct stat st;
    if (stat(path, &st) == 0)
        return psrec_fail(err, PSREC_EINVAL, "public key %s exists already (not overwritten)", path);
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    psrec_err rc = write_new(path, 0600, sec, "secret key", err);
    memset(sec, 0, sizeof sec);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/%s.pub", dir, name);
    rc = write_new(path, 0644, pub, "public key", err);
    if (rc) {
        snprintf(path, sizeof path, "%s/%s.key", dir, name);
        unlink(path);
    }
    return rc;
}

static psrec_err read_key(const char *dir, const char *file, int secret, char *out, char *err)
{
    char path[4200], line[128];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    psrec_err rc = read_line(path, line, sizeof line, secret, secret ? "secret key" : "public key",
                             "(create the key directory with `psrec keygen --out DIR`)", err);
    if (rc) return rc;
    uint8_t bin[32];
    if (strlen(line) != PSREC_ZSEC_KEY_Z85 || !zmq_z85_decode(bin, line))
        return psrec_fail(err, PSREC_EINVAL, "%s: not a %d-character Z85 CURVE key", path, PSREC_ZSEC_KEY_Z85);
    memcpy(out, line, KEYBUF);
    memset(line, 0, sizeof line);
    return PSREC_OK;
}

psrec_err psrec_zsec_authorize(const char *dir, const char *name, char *err)
{
    char pub[KEYBUF], path[4200], line[128];
    if (!valid_name(name)) return psrec_fail(err, PSREC_EINVAL, "key name '%s' is not valid", name ? name : "");
    snprintf(path, sizeof path, "%s.pub", name);
    psrec_err rc = read_key(dir, path, 0, pub, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/authorized_keys", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return psrec_fail(err, PSREC_EIO, "cannot open %s: %s", path, strerror(errno));
    int n = snprintf(line, sizeof line, "%s %s\n", pub, name);
    int ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    if (close(fd) != 0) ok = 0;
    if (!ok) return psrec_fail(err, PSREC_EIO, "writing %s: %s", path, strerror(errno));
    return PSREC_OK;
}

/* authorized_keys: one Z85 key per line, '#' comments, anything after the key ignored. */
static psrec_err load_authorized(psrec_zsec_t *z, const char *dir, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/authorized_keys", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return psrec_fail(err, PSREC_ENOTFOUND,
                              "%s does not exist: list the client public keys this job accepts there "
                              "(`psrec keygen --out %s` writes one for its client key)",
                              path, dir);
        return psrec_fail(err, PSREC_EIO, "%s: %s", path, strerror(errno));
    }
    char line[1024];
    size_t lineno = 0, cap = 0;
    psrec_err rc = PSREC_OK;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == 0) continue;
        size_t n = strcspn(p, " \t\r\n");
        uint8_t bin[32];
        char key[KEYBUF];
        if (n != PSREC_ZSEC_KEY_Z85) {
            rc = psrec_fail(err, PSREC_EINVAL, "%s:%zu: not a %d-character Z85 public key", path, lineno,
                            PSREC_ZSEC_KEY_Z85);
            break;
        }
        memcpy(key, p, n);
        key[n] = 0;
        if (!zmq_z85_decode(bin, key)) {
            rc = psrec_fail(err, PSREC_EINVAL, "%s:%zu: not a Z85 public key", path, lineno);
            break;
        }
        if (z->nauthorized == PSREC_ZSEC_MAX_AUTHORIZED) {
            rc = psrec_fail(err, PSREC_EFULL, "%s: more than %d keys", path, PSREC_ZSEC_MAX_AUTHORIZED);
            break;
        }
        if (z->nauthorized == cap) {
            cap = cap ? cap * 2 : 16;
            void *q = realloc(z->authorized, cap * sizeof *z->authorized);
            if (!q) {
                rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
                break;
            }
            z->authorized = q;
        }
        memcpy(z->authorized[z->nauthorized++], bin, 32);
    }
    if (!rc && ferror(f)) rc = psrec_fail(err, PSREC_EIO, "%s: read error", path);
    fclose(f);
    if (!rc && z->nauthorized == 0)
        fprintf(stderr, "psrec: warning: %s lists no key: every client will be refused\n", path);
    return rc;
}

/* ---- the ZAP handler ---- */

static void send_str(void *sock, const char *s, int more)
{
    if (zmq_send(sock, s, strlen(s), more ? ZMQ_SNDMORE : 0) < 0) {
        /* REP: a failed send only happens when the context is terminating */
    }
}

static int frame_is(const zmq_msg_t *m, const char *s)
{
    size_t n = strlen(s);
    return zmq_msg_size((zmq_msg_t *)m) == n && memcmp(zmq_msg_data((zmq_msg_t *)m), s, n) == 0;
}

static void frame_str(const zmq_msg_t *m, char *out, size_t cap)
{
    size_t n = zmq_msg_size((zmq_msg_t *)m);
    if (n >= cap) n = cap - 1;
    memcpy(out, zmq_msg_data((zmq_msg_t *)m), n);
    out[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] < ' ' || out[i] > '~') out[i] = '?';
}

static int ct_equal(const void *a, size_t na, const void *b, size_t nb)
{
    const unsigned char *x = a, *y = b;
    unsigned char d = na != nb;
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

/* Judges one ZAP request: 1 accept, 0 refuse (reason and log key filled). */
static int judge(psrec_zsec_t *z, zmq_msg_t *f, int nf, char *reason, size_t rcap)
{
    char mech[16];
    frame_str(&f[5], mech, sizeof mech);
    if (z->mode == PSREC_ZSEC_TOKEN && !strcmp(mech, "PLAIN") && nf == 8) {
        char user[32];
        frame_str(&f[6], user, sizeof user);
        char *end;
        errno = 0;
        unsigned long long job = strtoull(user, &end, 10);
        if (errno || end == user || *end) {
            snprintf(reason, rcap, "user name '%s' is not a job id", user);
            return 0;
        }
        if (job != 0 && job != z->job_id) {
            snprintf(reason, rcap, "it belongs to job %llu, this is job %llu", job, (unsigned long long)z->job_id);
            return 0;
        }
        if (!ct_equal(zmq_msg_data(&f[7]), zmq_msg_size(&f[7]), z->token, strlen(z->token))) {
            snprintf(reason, rcap,
                     "wrong token for job %llu (a stray process, or a role started with another --token-file)",
                     (unsigned long long)z->job_id);
            return 0;
        }
        return 1;
    }
    if (z->mode == PSREC_ZSEC_CURVE && !strcmp(mech, "CURVE") && nf == 7 && zmq_msg_size(&f[6]) == 32) {
        const uint8_t *k = zmq_msg_data(&f[6]);
        for (size_t i = 0; i < z->nauthorized; i++)
            if (!memcmp(z->authorized[i], k, 32)) return 1;
        char z85[KEYBUF];
        zmq_z85_encode(z85, k, 32);
        snprintf(reason, rcap, "CURVE key %s is not in %.160s%sauthorized_keys", z85, z->keys_dir,
                 z->keys_dir[0] ? "/" : "the ");
        return 0;
    }
    snprintf(reason, rcap, "mechanism %s, this job uses %s", mech, psrec_zsec_mode_name(z));
    return 0;
}

static void handle_zap(psrec_zsec_t *z)
{
    zmq_msg_t f[MAX_ZAP_FRAMES];
    int nf = 0, more = 1, overflow = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->zap, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (nf < MAX_ZAP_FRAMES)
            f[nf++] = m;
        else {
            zmq_msg_close(&m);
            overflow = 1;
        }
    }
    if (nf < 2) { /* not even a request id: REP still needs an answer */
        send_str(z->zap, "1.0", 1);
        send_str(z->zap, "", 1);
        send_str(z->zap, "500", 1);
        send_str(z->zap, "malformed ZAP request", 1);
        send_str(z->zap, "", 1);
        send_str(z->zap, "", 0);
    } else {
        char reason[256] = "malformed ZAP request", addr[64] = "?";
        int ok = 0;
        if (!overflow && nf >= 6 && frame_is(&f[0], "1.0")) {
            frame_str(&f[3], addr, sizeof addr);
            ok = judge(z, f, nf, reason, sizeof reason);
        }
        atomic_fetch_add(ok ? &z->accepted : &z->refused, 1);
        if (!ok) {
            char key[PSREC_RATELOG_KEY_MAX];
            snprintf(key, sizeof key, "%s|%.40s", addr, reason);
            psrec_ratelog(z->log, key, "refused a connection from %s: %s", addr[0] ? addr : "a local peer", reason);
        }
        send_str(z->zap, "1.0", 1);
        if (zmq_send(z->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE) < 0) {
        }
        send_str(z->zap, ok ? "200" : "400", 1);
        send_str(z->zap, ok ? "OK" : "refused", 1);
        send_str(z->zap, ok ? z->job_str : "", 1);
        send_str(z->zap, "", 0);
    }
    for (int i = 0; i < nf; i++)
        zmq_msg_close(&f[i]);
}

static void *guard_main(void *arg)
{
    psrec_zsec_t *z = arg;
    for (;;) {
        zmq_pollitem_t it[2] = {{.socket = z->zap, .events = ZMQ_POLLIN}, {.socket = z->ctl_in, .events = ZMQ_POLLIN}};
        if (zmq_poll(it, 2, -1) < 0) {
            if (zmq_errno() == EINTR) continue;
            break;
        }
        if (it[1].revents & ZMQ_POLLIN) break;
        if (it[0].revents & ZMQ_POLLIN) handle_zap(z);
    }
    return NULL;
}

static psrec_err start_handler(psrec_zsec_t *z, void *zctx, int quiet, char *err)
{
    if (psrec_ratelog_new(&z->log, quiet ? NULL : stderr, LOG_INTERVAL_MS))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    int zero = 0;
    z->zap = zmq_socket(zctx, ZMQ_REP);
    if (!z->zap) return psrec_fail(err, PSREC_EIO, "ZAP handler: zmq_socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(z->zap, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(z->zap, ZAP_ENDPOINT) != 0) {
        if (zmq_errno() == EADDRINUSE)
            return psrec_fail(err, PSREC_EIO,
                              "a ZAP handler already serves this ZeroMQ context (one security context per "
                              "ZeroMQ context)");
        return psrec_fail(err, PSREC_EIO, "ZAP handler: bind %s: %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
    }
    char ctl[64];
    snprintf(ctl, sizeof ctl, "inproc://psrec-zsec-ctl-%p", (void *)z);
    z->ctl_in = zmq_socket(zctx, ZMQ_PAIR);
    z->ctl_out = zmq_socket(zctx, ZMQ_PAIR);
    if (!z->ctl_in || !z->ctl_out) return psrec_fail(err, PSREC_EIO, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(z->ctl_in, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(z->ctl_out, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(z->ctl_in, ctl) != 0 || zmq_connect(z->ctl_out, ctl) != 0)
        return psrec_fail(err, PSREC_EIO, "ZAP handler control: %s", zmq_strerror(zmq_errno()));
    if (pthread_create(&z->thread, NULL, guard_main, z) != 0)
        return psrec_fail(err, PSREC_ENOMEM, "cannot start the ZAP handler thread");
    z->started = 1;
    return PSREC_OK;
}

/* ---- the object ---- */

static psrec_err load_curve(psrec_zsec_t *z, const char *dir, char *err)
{
    psrec_err rc = PSREC_OK;
    if (!dir) { /* embedded: one fresh pair each, the client's key the only authorized one */
        if (zmq_curve_keypair(z->server_public, z->server_secret) ||
            zmq_curve_keypair(z->client_public, z->client_secret))
            return psrec_fail(err, PSREC_EIO, "zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
        if (!(z->authorized = malloc(sizeof *z->authorized))) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
        zmq_z85_decode(z->authorized[0], z->client_public);
        z->nauthorized = 1;
        return PSREC_OK;
    }
    snprintf(z->keys_dir, sizeof z->keys_dir, "%s", dir);
    if (z->roles & PSREC_ZSEC_SERVE) {
        if (!rc) rc = read_key(dir, "server.key", 1, z->server_secret, err);
        if (!rc && zmq_curve_public(z->server_public, z->server_secret))
            rc = psrec_fail(err, PSREC_EINVAL, "%s/server.key: not a CURVE secret key", dir);
        if (!rc) rc = load_authorized(z, dir, err);
    }
    if (!rc && (z->roles & PSREC_ZSEC_CONNECT)) {
        char pub[KEYBUF];
        rc = read_key(dir, "client.key", 1, z->client_secret, err);
        if (!rc && zmq_curve_public(z->client_public, z->client_secret))
            rc = psrec_fail(err, PSREC_EINVAL, "%s/client.key: not a CURVE secret key", dir);
        if (!rc) rc = read_key(dir, "server.pub", 0, pub, err);
        if (!rc && (z->roles & PSREC_ZSEC_SERVE) && strcmp(pub, z->server_public))
            rc = psrec_fail(err, PSREC_EINVAL, "%s: server.pub is not the public key of server.key", dir);
        if (!rc) memcpy(z->server_public, pub, KEYBUF);
    }
    return rc;
}

psrec_err psrec_zsec_new(psrec_zsec_t **out, void *zctx, const psrec_zsec_conf_t *conf, uint64_t job_id, int roles,
                         char *err)
{
    *out = NULL;
    if (!zctx || !conf || !(roles & (PSREC_ZSEC_SERVE | PSREC_ZSEC_CONNECT)))
        return psrec_fail(err, PSREC_EINVAL, "security: no context, configuration or role");
    if (conf->mode != PSREC_ZSEC_NONE && conf->mode != PSREC_ZSEC_TOKEN && conf->mode != PSREC_ZSEC_CURVE)
        return psrec_fail(err, PSREC_EINVAL, "security: unknown mode %d", (int)conf->mode);
    if (conf->mode == PSREC_ZSEC_CURVE && !psrec_zsec_has_curve())
        return psrec_fail(err, PSREC_EUNSUPPORTED,
                          "--secure needs CURVE, and this libzmq was built without it (zmq_has(\"curve\") is "
                          "false): install a libzmq built with libsodium (Debian's libzmq5 is)");
    psrec_zsec_t *z = calloc(1, sizeof *z);
    if (!z) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    atomic_init(&z->accepted, 0);
    atomic_init(&z->refused, 0);
    z->mode = conf->mode;
    z->roles = roles;
    z->job_id = job_id;
    snprintf(z->job_str, sizeof z->job_str, "%llu", (unsigned long long)job_id);
    psrec_err rc = PSREC_OK;
    if (z->mode == PSREC_ZSEC_TOKEN)
        rc = conf->token_file ? psrec_zsec_token_read(conf->token_file, z->token, sizeof z->token, err)
                              : psrec_zsec_token_generate(z->token, err);
    else if (z->mode == PSREC_ZSEC_CURVE)
        rc = load_curve(z, conf->keys_dir, err);
    if (!rc && z->mode != PSREC_ZSEC_NONE && (roles & PSREC_ZSEC_SERVE)) rc = start_handler(z, zctx, conf->quiet, err);
    if (rc) {
        psrec_zsec_destroy(&z);
        return rc;
    }
    *out = z;
    return PSREC_OK;
}

void psrec_zsec_destroy(psrec_zsec_t **pz)
{
    if (!pz || !*pz) return;
    psrec_zsec_t *z = *pz;
    if (z->started) {
        if (zmq_send(z->ctl_out, "", 0, 0) < 0) {
        }
        pthread_join(z->thread, NULL);
    }
    if (z->ctl_out) zmq_close(z->ctl_out);
    if (z->ctl_in) zmq_close(z->ctl_in);
    if (z->zap) zmq_close(z->zap);
    psrec_ratelog_destroy(&z->log);
    free(z->authorized);
    memset(z, 0, sizeof *z); /* secrets */
    free(z);
    *pz = NULL;
}

const char *psrec_zsec_mode_name(const psrec_zsec_t *z)
{
    switch (z ? z->mode : PSREC_ZSEC_NONE) {
    case PSREC_ZSEC_TOKEN: return "token";
    case PSREC_ZSEC_CURVE: return "curve";
    default: return "none";
    }
}

psrec_zsec_mode psrec_zsec_mode_of(const psrec_zsec_t *z)
{
    return z ? z->mode : PSREC_ZSEC_NONE;
}

void psrec_zsec_stats(const psrec_zsec_t *z, psrec_zsec_stats_t *st)
{
    st->accepted = z ? atomic_load(&((psrec_zsec_t *)z)->accepted) : 0;
    st->refused = z ? atomic_load(&((psrec_zsec_t *)z)->refused) : 0;
}

/* ---- sockets ---- */

static psrec_err zset(void *sock, int opt, const void *v, size_t n, const char *what, char *err)
{
    if (zmq_setsockopt(sock, opt, v, n) != 0)
        return psrec_fail(err, PSREC_EIO, "security: setting %s: %s", what, zmq_strerror(zmq_errno()));
    return PSREC_OK;
}

/* tcp://127.x.x.x, tcp://localhost, tcp://[::1], tcp://lo (the interface) */
static int loopback(const char *ep)
{
    if (strncmp(ep, "tcp://", 6)) return 1; /* inproc/ipc stay on this machine */
    const char *h = ep + 6;
    return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6) || !strncmp(h, "lo:", 3);
}

psrec_err psrec_zsec_bind(const psrec_zsec_t *z, void *sock, const char *endpoint, char *err)
{
    psrec_err rc = PSREC_OK;
    if (z && z->mode != PSREC_ZSEC_NONE) {
        if (!(z->roles & PSREC_ZSEC_SERVE))
            return psrec_fail(err, PSREC_EINVAL, "security: this process was not set up to serve (bind %s)", endpoint);
        int one = 1;
        rc = zset(sock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN), "ZMQ_ZAP_DOMAIN", err);
        if (!rc && z->mode == PSREC_ZSEC_TOKEN) rc = zset(sock, ZMQ_PLAIN_SERVER, &one, sizeof one, "PLAIN", err);
        if (!rc && z->mode == PSREC_ZSEC_CURVE) {
            rc = zset(sock, ZMQ_CURVE_SERVER, &one, sizeof one, "CURVE", err);
            if (!rc) rc = zset(sock, ZMQ_CURVE_SECRETKEY, z->server_secret, KEYBUF, "the CURVE secret key", err);
        }
        if (rc) return rc;
    }
    if (zmq_bind(sock, endpoint) != 0)
        return psrec_fail(err, PSREC_EIO, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
    if (z && z->mode != PSREC_ZSEC_CURVE && !loopback(endpoint))
        fprintf(stderr, "psrec: warning: listening on %s without encryption: %s\n", endpoint,
                z->mode == PSREC_ZSEC_TOKEN
                    ? "the job's token crosses that network in clear text (use --secure where others can read it)"
                    : "anyone who reaches it may read and change the model (--insecure)");
    return PSREC_OK;
}

static psrec_err apply_client(const psrec_zsec_t *z, void *sock, char *err)
{
    if (!z || z->mode == PSREC_ZSEC_NONE) return PSREC_OK;
    if (!(z->roles & PSREC_ZSEC_CONNECT))
        return psrec_fail(err, PSREC_EINVAL, "security: this process was not set up to connect");
    if (z->mode == PSREC_ZSEC_TOKEN) {
        psrec_err rc = zset(sock, ZMQ_PLAIN_USERNAME, z->job_str, strlen(z->job_str), "the PLAIN user name", err);
        if (!rc) rc = zset(sock, ZMQ_PLAIN_PASSWORD, z->token, strlen(z->token), "the PLAIN password", err);
        return rc;
    }
    psrec_err rc = zset(sock, ZMQ_CURVE_SERVERKEY, z->server_public, KEYBUF, "the CURVE server key", err);
    if (!rc) rc = zset(sock, ZMQ_CURVE_PUBLICKEY, z->client_public, KEYBUF, "the CURVE public key", err);
    if (!rc) rc = zset(sock, ZMQ_CURVE_SECRETKEY, z->client_secret, KEYBUF, "the CURVE secret key", err);
    return rc;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static psrec_err verdict(const psrec_zsec_t *z, const char *ep, uint16_t event, uint32_t value, char *err)
{
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        if (z->mode == PSREC_ZSEC_CURVE)
            return psrec_fail(err, PSREC_EREFUSED,
                              "%s refused this process's CURVE key %s (status %u): add it to the authorized_keys "
                              "of the coordinator and the servers",
                              ep, z->client_public, value);
        return psrec_fail(err, PSREC_EREFUSED,
                          "%s refused this process's token for job %s (status %u): is --token-file the file "
                          "this job was started with, and --job-id its id?",
                          ep, z->job_str, value);
    }
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        return psrec_fail(err, PSREC_EREFUSED,
                          "%s closed the connection during the security handshake (this process: %s): every role "
                          "of a job must use the same --token-file, --secure or --insecure%s",
                          ep, psrec_zsec_mode_name(z),
                          z->mode == PSREC_ZSEC_CURVE
                              ? ", and the servers must hold the secret key of the server.pub this process was given"
                              : "");
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        return psrec_fail(err, PSREC_EREFUSED,
                          "%s uses another security mode than this process (%s): every role of a job must use the "
                          "same --token-file, --secure or --insecure",
                          ep, psrec_zsec_mode_name(z));
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC || value == ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE)
        return psrec_fail(err, PSREC_EREFUSED,
                          "%s failed the CURVE handshake: it does not hold the secret key of the server.pub this "
                          "process was given",
                          ep);
    return psrec_fail(err, PSREC_EREFUSED, "%s: security handshake failed (ZeroMQ protocol error 0x%x)", ep, value);
}

/* Runs the handshake on a scratch socket; PSREC_OK also when no verdict came within ms. */
static psrec_err probe(const psrec_zsec_t *z, void *zctx, const char *endpoint, int ms, char *err)
{
    void *tmp = zmq_socket(zctx, ZMQ_DEALER), *mon = NULL;
    if (!tmp) return psrec_fail(err, PSREC_EIO, "probe: zmq_socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0, monitoring = 0, closed = 0;
    zmq_setsockopt(tmp, ZMQ_LINGER, &zero, sizeof zero);
    psrec_err rc = apply_client(z, tmp, err);
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://psrec-zsec-probe-%p", tmp);
    if (!rc && zmq_socket_monitor(tmp, ep,
                                  ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                      ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0)
        rc = psrec_fail(err, PSREC_EIO, "probe: zmq_socket_monitor: %s", zmq_strerror(zmq_errno()));
    if (!rc) monitoring = 1;
    if (!rc && (!(mon = zmq_socket(zctx, ZMQ_PAIR)) || zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero) ||
                zmq_connect(mon, ep)))
        rc = psrec_fail(err, PSREC_EIO, "probe: monitor socket: %s", zmq_strerror(zmq_errno()));
    if (!rc && zmq_connect(tmp, endpoint) != 0)
        rc = psrec_fail(err, PSREC_EINVAL, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
    int64_t deadline = now_ms() + ms;
    while (!rc) {
        int64_t left = deadline - now_ms();
        if (left <= 0) break;
        zmq_pollitem_t it = {.socket = mon, .events = ZMQ_POLLIN};
        int r = zmq_poll(&it, 1, (long)left);
        if (r < 0) {
            if (zmq_errno() == EINTR) continue;
            break;
        }
        if (r == 0) break;
        zmq_msg_t a, b;
        zmq_msg_init(&a);
        zmq_msg_init(&b);
        int ok =
            zmq_msg_recv(&a, mon, 0) >= 0 && zmq_msg_more(&a) && zmq_msg_recv(&b, mon, 0) >= 0 && zmq_msg_size(&a) >= 6;
        uint16_t event = 0;
        uint32_t value = 0;
        if (ok) {
            memcpy(&event, zmq_msg_data(&a), 2);
            memcpy(&value, (char *)zmq_msg_data(&a) + 2, 4);
        }
        zmq_msg_close(&a);
        zmq_msg_close(&b);
        if (!ok) break;
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && ++closed < PROBE_CLOSED) continue;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) break;
        if (event != ZMQ_EVENT_HANDSHAKE_SUCCEEDED) rc = verdict(z, endpoint, event, value, err);
    }
    if (monitoring) zmq_socket_monitor(tmp, NULL, 0); /* stop events before the PAIR goes */
    if (mon) zmq_close(mon);
    zmq_close(tmp);
    return rc;
}

psrec_err psrec_zsec_connect(const psrec_zsec_t *z, void *zctx, void *sock, const char *endpoint, int probe_ms,
                             char *err)
{
    psrec_err rc = apply_client(z, sock, err);
    if (rc) return rc;
    if (z && probe_ms > 0 && zctx && (!strncmp(endpoint, "tcp://", 6) || !strncmp(endpoint, "ipc://", 6))) {
        if ((rc = probe(z, zctx, endpoint, probe_ms, err))) return rc;
    }
    if (zmq_connect(sock, endpoint) != 0)
        return psrec_fail(err, PSREC_EINVAL, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
    return PSREC_OK;
}

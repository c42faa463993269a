/* test_zsec.c: connection-level security (common/zsec.c) over real tcp sockets on 127.0.0.1:
 * token files and key files are refused with the exact code when missing, short, malformed or readable
 * by others; with the job token (PLAIN + ZAP) the right token and job get a session while a wrong
 * token, another job and a peer without credentials are refused (the probe names why, and the ZAP
 * handler counts each refusal); CURVE accepts a listed client key, refuses an unlisted one and a
 * client that trusts another server key; inproc stays open to the process's own threads; one ZAP
 * handler per context. Synchronisation is by ZeroMQ handshake events and replies, never sleeping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/zsec.h"
#include "tests/test_util.h"

#define PROBE_MS 5000

static const char *tmp = psrec_test_tmp;

static int setup(void **state)
{
    return psrec_test_mktmp("zsec");
}

static int teardown(void **state)
{
    return psrec_test_rmtmp();
}

static void write_text(const char *path, const char *text, int mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, (mode_t)mode), 0);
}

/* ---- files ---- */

static void test_token_files(void **state)
{
    char path[256], tok[PSREC_ZSEC_TOKEN_MAX + 1], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/token", tmp);
    assert_int_equal(psrec_zsec_token_write(path, err), PSREC_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(psrec_zsec_token_read(path, tok, sizeof tok, err), PSREC_OK);
    assert_int_equal(strlen(tok), 64);
    /* never overwritten */
    assert_int_equal(psrec_zsec_token_write(path, err), PSREC_EINVAL);
    char again[PSREC_ZSEC_TOKEN_MAX + 1];
    assert_int_equal(psrec_zsec_token_read(path, again, sizeof again, err), PSREC_OK);
    assert_string_equal(tok, again);
    /* two generated tokens differ */
    char a[65], b[65];
    assert_int_equal(psrec_zsec_token_generate(a, err), PSREC_OK);
    assert_int_equal(psrec_zsec_token_generate(b, err), PSREC_OK);
    assert_string_not_equal(a, b);
    /* missing */
    snprintf(path, sizeof path, "%s/nope", tmp);
    assert_int_equal(psrec_zsec_token_read(path, tok, sizeof tok, err), PSREC_ENOTFOUND);
    assert_non_null(strstr(err, "psrec keygen --token"));
    /* readable by others */
    snprintf(path, sizeof path, "%s/open", tmp);
    write_text(path, "0123456789abcdef0123456789abcdef0123\n", 0644);
    assert_int_equal(psrec_zsec_token_read(path, tok, sizeof tok, err), PSREC_EREFUSED);
    assert_non_null(strstr(err, "chmod 600"));
    /* too short, trailing newline not counted */
    snprintf(path, sizeof path, "%s/short", tmp);
    write_text(path, "0123456789abcdef0123456789abcde\n", 0600); /* 31 characters */
    assert_int_equal(psrec_zsec_token_read(path, tok, sizeof tok, err), PSREC_EINVAL);
    assert_non_null(strstr(err, "31 characters"));
    /* not printable */
    snprintf(path, sizeof path, "%s/space", tmp);
    write_text(path, "0123456789abcdef 0123456789abcdef0123\n", 0600);
    assert_int_equal(psrec_zsec_token_read(path, tok, sizeof tok, err), PSREC_EINVAL);
    /* unreadable (not as root: root reads anything) */
    if (geteuid() != 0) {
        snprintf(path, sizeof path, "%s/locked", tmp);
        write_text(path, "0123456789abcdef0123456789abcdef0123\n", 0000);
        assert_int_equal(psrec_zsec_token_read(path, tok, sizeof tok, err), PSREC_EIO);
    }
}

static void test_key_files(void **state)
{
    if (!psrec_zsec_has_curve()) skip();
    char dir[256], path[300], err[PSREC_ERRBUF];
    snprintf(dir, sizeof dir, "%s/keys", tmp);
    assert_int_equal(psrec_zsec_keygen(dir, "server", err), PSREC_OK);
    assert_int_equal(psrec_zsec_keygen(dir, "client", err), PSREC_OK);
    assert_int_equal(psrec_zsec_keygen(dir, "client", err), PSREC_EINVAL); /* never overwritten */
    assert_int_equal(psrec_zsec_keygen(dir, "../evil", err), PSREC_EINVAL);
    assert_int_equal(psrec_zsec_authorize(dir, "client", err), PSREC_OK);
    struct stat st;
    snprintf(path, sizeof path, "%s/client.key", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    void *zctx = zmq_ctx_new();
    psrec_zsec_conf_t c = {.mode = PSREC_ZSEC_CURVE, .keys_dir = dir, .quiet = 1};
    psrec_zsec_t *z = NULL;
    psrec_err rc = psrec_zsec_new(&z, zctx, &c, 1, PSREC_ZSEC_SERVE | PSREC_ZSEC_CONNECT, err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, PSREC_OK);
    psrec_zsec_destroy(&z);
    assert_null(z);
    /* a secret key readable by others */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(psrec_zsec_new(&z, zctx, &c, 1, PSREC_ZSEC_CONNECT, err), PSREC_EREFUSED);
    assert_non_null(strstr(err, "client.key"));
    assert_int_equal(chmod(path, 0600), 0);
    /* a malformed authorized_keys line is named */
    char bad[256];
    snprintf(bad, sizeof bad, "%s/badkeys", tmp);
    assert_int_equal(psrec_zsec_keygen(bad, "server", err), PSREC_OK);
    snprintf(path, sizeof path, "%s/authorized_keys", bad);
    write_text(path, "# comment\n\nnot-a-key\n", 0644);
    c.keys_dir = bad;
    assert_int_equal(psrec_zsec_new(&z, zctx, &c, 1, PSREC_ZSEC_SERVE, err), PSREC_EINVAL);
    assert_non_null(strstr(err, "authorized_keys:3"));
    /* a missing client key when connecting */
    assert_int_equal(psrec_zsec_new(&z, zctx, &c, 1, PSREC_ZSEC_CONNECT, err), PSREC_ENOTFOUND);
    assert_non_null(strstr(err, "client.key"));
    zmq_ctx_term(zctx);
}

/* ---- sockets ---- */

typedef struct {
    void *zctx;
    psrec_zsec_t *z;
    void *router;
    char ep[256];
} server_t;

static void server_start(server_t *s, const psrec_zsec_conf_t *c, uint64_t job)
{
    char err[PSREC_ERRBUF];
    s->zctx = zmq_ctx_new();
    assert_int_equal(psrec_zsec_new(&s->z, s->zctx, c, job, PSREC_ZSEC_SERVE, err), PSREC_OK);
    s->router = zmq_socket(s->zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s->router, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(psrec_zsec_bind(s->z, s->router, "tcp://127.0.0.1:0", err), PSREC_OK);
    size_t len = sizeof s->ep;
    assert_int_equal(zmq_getsockopt(s->router, ZMQ_LAST_ENDPOINT, s->ep, &len), 0);
}

static void server_stop(server_t *s)
{
    zmq_close(s->router);
    psrec_zsec_destroy(&s->z);
    zmq_ctx_term(s->zctx);
}

/* Connects a client with conf c (job) and returns the probe's verdict; on success also checks a
 * request/reply round trip through the server. */
static psrec_err client_try(server_t *s, const psrec_zsec_conf_t *c, uint64_t job, char *err)
{
    void *zctx = zmq_ctx_new();
    psrec_zsec_t *z = NULL;
    psrec_err rc = psrec_zsec_new(&z, zctx, c, job, PSREC_ZSEC_CONNECT, err);
    assert_int_equal(rc, PSREC_OK);
    void *d = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    rc = psrec_zsec_connect(z, zctx, d, s->ep, PROBE_MS, err);
    print_message("client %s job %llu: %s\n", psrec_zsec_mode_name(z), (unsigned long long)job, rc ? err : "ok");
    if (!rc) {
        assert_int_equal(zmq_send(d, "ping", 4, 0), 4);
        zmq_pollitem_t it = {.socket = s->router, .events = ZMQ_POLLIN};
        assert_int_equal(zmq_poll(&it, 1, PROBE_MS), 1);
        char id[256], body[16];
        int idn = zmq_recv(s->router, id, sizeof id, 0);
        assert_true(idn > 0);
        assert_int_equal(zmq_recv(s->router, body, sizeof body, 0), 4);
        assert_memory_equal(body, "ping", 4);
        assert_int_equal(zmq_send(s->router, id, (size_t)idn, ZMQ_SNDMORE), idn);
        assert_int_equal(zmq_send(s->router, "pong", 4, 0), 4);
        zmq_pollitem_t ic = {.socket = d, .events = ZMQ_POLLIN};
        assert_int_equal(zmq_poll(&ic, 1, PROBE_MS), 1);
        assert_int_equal(zmq_recv(d, body, sizeof body, 0), 4);
        assert_memory_equal(body, "pong", 4);
    }
    zmq_close(d);
    psrec_zsec_destroy(&z);
    zmq_ctx_term(zctx);
    return rc;
}

static void test_token_auth(void **state)
{
    char ta[256], tb[256], err[PSREC_ERRBUF];
    snprintf(ta, sizeof ta, "%s/job-a.token", tmp);
    snprintf(tb, sizeof tb, "%s/job-b.token", tmp);
    assert_int_equal(psrec_zsec_token_write(ta, err), PSREC_OK);
    assert_int_equal(psrec_zsec_token_write(tb, err), PSREC_OK);
    psrec_zsec_conf_t ca = {.mode = PSREC_ZSEC_TOKEN, .token_file = ta, .quiet = 1};
    psrec_zsec_conf_t cb = {.mode = PSREC_ZSEC_TOKEN, .token_file = tb, .quiet = 1};
    psrec_zsec_conf_t none = {.mode = PSREC_ZSEC_NONE};
    server_t s;
    server_start(&s, &ca, 7);
    psrec_zsec_stats_t st;
    /* the right token and job */
    assert_int_equal(client_try(&s, &ca, 7, err), PSREC_OK);
    /* job id 0 = any job (status), still with the token */
    assert_int_equal(client_try(&s, &ca, 0, err), PSREC_OK);
    psrec_zsec_stats(s.z, &st);
    assert_int_equal(st.refused, 0);
    assert_true(st.accepted >= 2);
    /* another job's token */
    assert_int_equal(client_try(&s, &cb, 7, err), PSREC_EREFUSED);
    assert_non_null(strstr(err, "token"));
    psrec_zsec_stats(s.z, &st);
    assert_true(st.refused >= 1);
    uint64_t before = st.refused;
    /* the right token, another job id */
    assert_int_equal(client_try(&s, &ca, 8, err), PSREC_EREFUSED);
    psrec_zsec_stats(s.z, &st);
    assert_true(st.refused > before);
    /* no credentials at all: the mechanisms differ (ZAP is never asked) */
    assert_int_equal(client_try(&s, &none, 7, err), PSREC_EREFUSED);
    assert_non_null(strstr(err, "every role of a job must use the same"));
    /* and the right client still works afterwards */
    assert_int_equal(client_try(&s, &ca, 7, err), PSREC_OK);
    server_stop(&s);
}

/* A server without security refuses a client that insists on the token (mismatch named). */
static void test_mismatch_open_server(void **state)
{
    char err[PSREC_ERRBUF];
    psrec_zsec_conf_t none = {.mode = PSREC_ZSEC_NONE}, tok = {.mode = PSREC_ZSEC_TOKEN, .quiet = 1};
    server_t s;
    server_start(&s, &none, 7);
    assert_int_equal(client_try(&s, &none, 7, err), PSREC_OK);
    assert_int_equal(client_try(&s, &tok, 7, err), PSREC_EREFUSED);
    assert_non_null(strstr(err, "every role of a job must use the same"));
    server_stop(&s);
}

static void test_curve(void **state)
{
    if (!psrec_zsec_has_curve()) {
        print_message("this libzmq has no CURVE (zmq_has(\"curve\") is false): skipped\n");
        skip();
    }
    char dir[256], intr[256], other[256], cmd[1024], err[PSREC_ERRBUF];
    snprintf(dir, sizeof dir, "%s/ck", tmp);
    snprintf(intr, sizeof intr, "%s/ck-intruder", tmp);
    snprintf(other, sizeof other, "%s/ck-other", tmp);
    assert_int_equal(psrec_zsec_keygen(dir, "server", err), PSREC_OK);
    assert_int_equal(psrec_zsec_keygen(dir, "client", err), PSREC_OK);
    assert_int_equal(psrec_zsec_authorize(dir, "client", err), PSREC_OK);
    /* an intruder: its own client key, the real server's public key */
    assert_int_equal(psrec_zsec_keygen(intr, "client", err), PSREC_OK);
    snprintf(cmd, sizeof cmd, "cp %s/server.pub %s/server.pub", dir, intr);
    assert_int_equal(system(cmd), 0);
    /* a listed client that trusts another server key */
    assert_int_equal(psrec_zsec_keygen(other, "server", err), PSREC_OK);
    snprintf(cmd, sizeof cmd, "cp -p %s/client.key %s/client.key", dir, other);
    assert_int_equal(system(cmd), 0);
    psrec_zsec_conf_t cs = {.mode = PSREC_ZSEC_CURVE, .keys_dir = dir, .quiet = 1};
    psrec_zsec_conf_t ci = {.mode = PSREC_ZSEC_CURVE, .keys_dir = intr, .quiet = 1};
    psrec_zsec_conf_t co = {.mode = PSREC_ZSEC_CURVE, .keys_dir = other, .quiet = 1};
    psrec_zsec_conf_t tok = {.mode = PSREC_ZSEC_TOKEN, .quiet = 1};
    server_t s;
    server_start(&s, &cs, 3);
    assert_int_equal(client_try(&s, &cs, 3, err), PSREC_OK);
    assert_int_equal(client_try(&s, &ci, 3, err), PSREC_EREFUSED);
    assert_non_null(strstr(err, "authorized_keys"));
    psrec_zsec_stats_t st;
    psrec_zsec_stats(s.z, &st);
    assert_true(st.refused >= 1);
    assert_int_equal(client_try(&s, &co, 3, err), PSREC_EREFUSED);
    assert_non_null(strstr(err, "server.pub"));
    assert_int_equal(client_try(&s, &tok, 3, err), PSREC_EREFUSED);
    assert_non_null(strstr(err, "every role of a job must use the same"));
    assert_int_equal(client_try(&s, &cs, 3, err), PSREC_OK);
    server_stop(&s);
}

/* Embedded: one context, one object that serves and connects, secrets made in memory; tcp needs them,
 * inproc does not ask (threads of one process). A second serving object on the context is refused. */
static void test_embedded_one_context(void **state)
{
    char err[PSREC_ERRBUF];
    for (int m = 0; m < 2; m++) {
        if (m == 1 && !psrec_zsec_has_curve()) break;
        void *zctx = zmq_ctx_new();
        psrec_zsec_conf_t c = {.mode = m ? PSREC_ZSEC_CURVE : PSREC_ZSEC_TOKEN, .quiet = 1};
        psrec_zsec_t *z = NULL, *z2 = NULL;
        assert_int_equal(psrec_zsec_new(&z, zctx, &c, 5, PSREC_ZSEC_SERVE | PSREC_ZSEC_CONNECT, err), PSREC_OK);
        assert_int_equal(psrec_zsec_new(&z2, zctx, &c, 5, PSREC_ZSEC_SERVE, err), PSREC_EIO);
        assert_null(z2);
        void *r = zmq_socket(zctx, ZMQ_ROUTER), *d = zmq_socket(zctx, ZMQ_DEALER), *open = zmq_socket(zctx, ZMQ_DEALER);
        int zero = 0;
        zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(open, ZMQ_LINGER, &zero, sizeof zero);
        assert_int_equal(psrec_zsec_bind(z, r, "tcp://127.0.0.1:0", err), PSREC_OK);
        assert_int_equal(psrec_zsec_bind(z, r, "inproc://zsec-test", err), PSREC_OK);
        char ep[256];
        size_t len = sizeof ep;
        zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, ep, &len);
        assert_int_equal(psrec_zsec_connect(z, zctx, d, "tcp://127.0.0.1:1", 0, err), PSREC_OK); /* no probe */
        assert_int_equal(zmq_disconnect(d, "tcp://127.0.0.1:1"), 0);
        assert_int_equal(psrec_zsec_connect(z, zctx, d, ep, PROBE_MS, err), PSREC_OK);
        assert_int_equal(zmq_connect(open, "inproc://zsec-test"), 0); /* no credentials over inproc */
        void *socks[2] = {d, open};
        for (int k = 0; k < 2; k++) {
            assert_int_equal(zmq_send(socks[k], "x", 1, 0), 1);
            zmq_pollitem_t it = {.socket = r, .events = ZMQ_POLLIN};
            assert_int_equal(zmq_poll(&it, 1, PROBE_MS), 1);
            char buf[256];
            assert_true(zmq_recv(r, buf, sizeof buf, 0) > 0);
            assert_int_equal(zmq_recv(r, buf, sizeof buf, 0), 1);
        }
        zmq_close(open);
        zmq_close(d);
        zmq_close(r);
        psrec_zsec_destroy(&z);
        zmq_ctx_term(zctx);
    }
}

static void test_bad_conf(void **state)
{
    char err[PSREC_ERRBUF], path[256];
    void *zctx = zmq_ctx_new();
    psrec_zsec_t *z = NULL;
    snprintf(path, sizeof path, "%s/missing.token", tmp);
    psrec_zsec_conf_t c = {.mode = PSREC_ZSEC_TOKEN, .token_file = path};
    assert_int_equal(psrec_zsec_new(&z, zctx, &c, 1, PSREC_ZSEC_CONNECT, err), PSREC_ENOTFOUND);
    assert_null(z);
    assert_int_equal(psrec_zsec_new(&z, zctx, &c, 1, 0, err), PSREC_EINVAL);
    /* a client-only object cannot serve, and a NULL object binds plainly */
    c.token_file = NULL;
    assert_int_equal(psrec_zsec_new(&z, zctx, &c, 1, PSREC_ZSEC_CONNECT, err), PSREC_OK);
    void *r = zmq_socket(zctx, ZMQ_ROUTER);
    assert_int_equal(psrec_zsec_bind(z, r, "tcp://127.0.0.1:0", err), PSREC_EINVAL);
    assert_int_equal(psrec_zsec_bind(NULL, r, "tcp://127.0.0.1:0", err), PSREC_OK);
    assert_int_equal(psrec_zsec_bind(NULL, r, "nonsense", err), PSREC_EIO);
    assert_string_equal(psrec_zsec_mode_name(z), "token");
    assert_string_equal(psrec_zsec_mode_name(NULL), "none");
    zmq_close(r);
    psrec_zsec_destroy(&z);
    psrec_zsec_destroy(&z); /* NULL is fine */
    zmq_ctx_term(zctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_files), cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_token_auth),  cmocka_unit_test(test_mismatch_open_server),
        cmocka_unit_test(test_curve),       cmocka_unit_test(test_embedded_one_context),
        cmocka_unit_test(test_bad_conf),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

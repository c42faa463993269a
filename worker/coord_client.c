/* coord_client.c: a member's side of the coordinator protocol (see coord_client.h, ps/coord.h).
 *
 * Design: one DEALER socket; every call is one request with a fresh sequence number and a wait for
 * the reply carrying that number, all under one deadline (timeout_ms). Replies with another number
 * are late answers to requests that already timed out and are dropped. ZMQ_IMMEDIATE keeps requests
 * from queueing while no coordinator is connected (a stale REGISTER delivered much later would take
 * a rank): a send waits for a connection (DEALERs reconnect by themselves) at most until the next
 * re-send, so a missing coordinator is PSREC_ETIMEDOUT at the deadline. An unanswered request is
 * re-sent with the SAME seq every resend_ms: a coordinator that restarted lost what was in flight,
 * and the first reply with our seq ends the call (later copies are dropped like any late reply).
 * REGISTER too: the coordinator answers a copy of a REGISTER it already took (same socket and seq)
 * with the same REGISTER_OK instead of taking a second rank or bumping the epoch again. The only retried answer is
 * ENOTREADY to SHARD_MAP_GET (the cluster is still assembling): register() waits 20 ms on the socket between tries, up
 * to the deadline. The client remembers the rank, epoch and role of its registration and stamps them on every later
 * request. Thread model: one client per thread (ZeroMQ sockets are not thread-safe). */
#include "worker/coord_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_RESEND_MS 1000
#define NOTREADY_WAIT_MS 20

struct psrec_coord_client {
    void *sock;
    uint64_t job_id;
    int timeout_ms;
    int resend_ms;
    uint64_t seq;
    int registered;
    Psrec__Role role;
    uint32_t rank;
    uint64_t epoch;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

psrec_err psrec_coord_client_new(psrec_coord_client_t **out, void *zctx, const char *coord, uint64_t job_id,
                                 int timeout_ms, char *err)
{
    return psrec_coord_client_new_sec(out, zctx, coord, job_id, timeout_ms, NULL, err);
}

psrec_err psrec_coord_client_new_sec(psrec_coord_client_t **out, void *zctx, const char *coord, uint64_t job_id,
                                     int timeout_ms, const psrec_zsec_t *sec, char *err)
{
    *out = NULL;
    if (!zctx || !coord || !*coord) return psrec_fail(err, PSREC_EINVAL, "coord client: no context or endpoint");
    if (timeout_ms < 0) return psrec_fail(err, PSREC_EINVAL, "coord client: negative timeout %d", timeout_ms);
    psrec_coord_client_t *c = calloc(1, sizeof *c);
    if (!c) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    c->job_id = job_id;
    c->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    c->resend_ms = DEFAULT_RESEND_MS;
    c->role = PSREC__ROLE__CLIENT;
    c->sock = zmq_socket(zctx, ZMQ_DEALER);
    if (!c->sock) {
        free(c);
        return psrec_fail(err, PSREC_EIO, "coord client: zmq_socket: %s", zmq_strerror(zmq_errno()));
    }
    int zero = 0, one = 1;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    char e[PSREC_ERRBUF];
    psrec_err rc = psrec_zsec_connect(sec, zctx, c->sock, coord, c->timeout_ms, e);
    if (rc) {
        psrec_coord_client_destroy(&c);
        return psrec_fail(err, rc, "coord client: %s", e);
    }
    *out = c;
    return PSREC_OK;
}

void psrec_coord_client_destroy(psrec_coord_client_t **pc)
{
    psrec_coord_client_t *c = *pc;
    if (!c) return;
    if (c->sock) zmq_close(c->sock);
    free(c);
    *pc = NULL;
}

void psrec_coord_client_set_timeout(psrec_coord_client_t *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
}

void psrec_coord_client_set_resend(psrec_coord_client_t *c, int resend_ms)
{
    c->resend_ms = resend_ms > 0 ? resend_ms : DEFAULT_RESEND_MS;
}

static const char *type_name(Psrec__Type t)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&psrec__type__descriptor, (int)t);
    return v ? v->name : "?";
}

/* Stamps the registered identity (or CLIENT) on a request. */
static void identity(const psrec_coord_client_t *c, Psrec__Header *h)
{
    h->role = c->role;
    h->rank = c->registered ? c->rank : 0;
    h->epoch = c->registered ? c->epoch : 0;
}

/* One request/reply before deadline_ms (monotonic), re-sent with the same seq every resend_ms. On success *out is the
 * reply of type `want` (caller frees). An ERROR reply returns its code with its text. */
static psrec_err call(psrec_coord_client_t *c, Psrec__Header *req, Psrec__Type want, int64_t deadline_ms,
                      Psrec__Header **out, char *err)
{
    *out = NULL;
    req->seq = ++c->seq;
    req->job_id = c->job_id;
    int resend = 1, sent = 0;
    int64_t next_send = now_ms();
    char e[PSREC_ERRBUF];
    for (;;) {
        int64_t now = now_ms(), left = deadline_ms - now;
        if (left <= 0) break;
        if ((!sent || resend) && now >= next_send) {
            /* no connection (ZMQ_IMMEDIATE): the send waits for one until the next re-send is due */
            int sndtimeo = (int)(left < c->resend_ms ? left : c->resend_ms);
            zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
            psrec_err rc = psrec_wire_send(c->sock, NULL, req, NULL, 0, 0, NULL, e);
            if (rc == PSREC_ETIMEDOUT) {
                next_send = now_ms();
                continue;
            }
            if (rc) return psrec_fail(err, rc, "coordinator: sending %s: %s", type_name(req->type), e);
            sent++;
            next_send = now_ms() + c->resend_ms;
            continue;
        }
        int64_t wait = resend && next_send - now < left ? next_send - now : left;
        psrec_wire_msg_t m;
        psrec_err rc = psrec_wire_recv(c->sock, NULL, &m, (int)(wait > 0 ? wait : 0), NULL, e);
        if (rc == PSREC_ETIMEDOUT) continue;
        if (rc) return psrec_fail(err, rc, "coordinator: bad reply to %s: %s", type_name(req->type), e);
        Psrec__Header *h = m.hdr;
        if (h->seq != req->seq) { /* a late reply to an abandoned request */
            psrec_wire_msg_clear(&m);
            continue;
        }
        if (h->type == PSREC__TYPE__ERROR) {
            psrec_err code =
                (h->error_code > 0 && h->error_code < PSREC_ERR_COUNT) ? (psrec_err)h->error_code : PSREC_EPROTO;
            rc = psrec_fail(err, code, "coordinator refused %s: %s (%s)", type_name(req->type),
                            h->error_text ? h->error_text : "", psrec_errname(code));
            psrec_wire_msg_clear(&m);
            return rc;
        }
        if (h->type != want || (h->job_id != c->job_id && c->job_id != 0)) { /* job 0: status of any job */
            rc = psrec_fail(err, PSREC_EPROTO, "coordinator answered %s with %s (job %llu)", type_name(req->type),
                            type_name(h->type), (unsigned long long)h->job_id);
            psrec_wire_msg_clear(&m);
            return rc;
        }
        *out = h;
        m.hdr = NULL;
        psrec_wire_msg_clear(&m);
        return PSREC_OK;
    }
    if (!sent)
        return psrec_fail(err, PSREC_ETIMEDOUT, "coordinator unreachable: %s not sent within %d ms",
                          type_name(req->type), c->timeout_ms);
    return psrec_fail(err, PSREC_ETIMEDOUT, "coordinator: no reply to %s within %d ms (sent %d times)",
                      type_name(req->type), c->timeout_ms, sent);
}

/* 1: a complete, consistent map; 0: absent or not complete yet; -1: inconsistent. */
static int map_state(const Psrec__ShardMap *m)
{
    if (!m || m->version == 0) return 0;
    if (m->nslots == 0 || m->n_slot_server != m->nslots || m->n_server_addr == 0) return -1;
    for (size_t i = 0; i < m->n_slot_server; i++)
        if (m->slot_server[i] >= m->n_server_addr) return -1;
    for (size_t i = 0; i < m->n_server_addr; i++)
        if (!m->server_addr[i] || !m->server_addr[i][0]) return -1;
    return 1;
}

psrec_err psrec_coord_client_register(psrec_coord_client_t *c, Psrec__Role role, const char *addr, uint32_t want_rank,
                                      Psrec__Header **reply, char *err)
{
    *reply = NULL;
    if (role != PSREC__ROLE__SERVER && role != PSREC__ROLE__WORKER)
        return psrec_fail(err, PSREC_EINVAL, "register: role must be server or worker");
    if (role == PSREC__ROLE__SERVER && (!addr || !*addr))
        return psrec_fail(err, PSREC_EINVAL, "register: a server needs the address workers connect to");
    int64_t deadline = now_ms() + c->timeout_ms;
    Psrec__Header req, *r = NULL;
    psrec_wire_header_init(&req, PSREC__TYPE__REGISTER);
    req.role = role;
    req.rank = want_rank; /* always stated: proto3 cannot tell an absent 0 from rank 0 */
    req.addr = (char *)(addr ? addr : "");
    psrec_err rc = call(c, &req, PSREC__TYPE__REGISTER_OK, deadline, &r, err);
    if (rc) return rc;
    c->registered = 1;
    c->role = role;
    c->rank = r->rank;
    c->epoch = r->epoch;
    int st;
    while ((st = map_state(r->shard_map)) == 0) {
        Psrec__Header get, *m = NULL;
        psrec_wire_header_init(&get, PSREC__TYPE__SHARD_MAP_GET);
        identity(c, &get);
        rc = call(c, &get, PSREC__TYPE__SHARD_MAP, deadline, &m, err);
        if (rc == PSREC_ENOTREADY) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                rc =
                    psrec_fail(err, PSREC_ETIMEDOUT, "register: shard map still incomplete after %d ms", c->timeout_ms);
                break;
            }
            zmq_pollitem_t it = {.socket = c->sock, .events = ZMQ_POLLIN};
            if (zmq_poll(&it, 1, left < NOTREADY_WAIT_MS ? (int)left : NOTREADY_WAIT_MS) < 0 && zmq_errno() == ETERM) {
                rc = psrec_fail(err, PSREC_EIO, "register: context terminated");
                break;
            }
            continue;
        }
        if (rc == PSREC_ETIMEDOUT) {
            char why[PSREC_ERRBUF];
            snprintf(why, sizeof why, "%s", err ? err : "");
            rc = psrec_fail(err, rc, "register: no complete shard map within %d ms (%s)", c->timeout_ms, why);
        }
        if (rc) break;
        if (r->shard_map) psrec__shard_map__free_unpacked(r->shard_map, NULL);
        r->shard_map = m->shard_map; /* move the map into the REGISTER_OK reply */
        r->map_version = m->map_version;
        m->shard_map = NULL;
        psrec__header__free_unpacked(m, NULL);
    }
    if (!rc && st < 0) rc = psrec_fail(err, PSREC_EPROTO, "register: inconsistent shard map from the coordinator");
    if (rc) {
        psrec__header__free_unpacked(r, NULL);
        return rc;
    }
    *reply = r;
    return PSREC_OK;
}

psrec_err psrec_coord_client_heartbeat_reply(psrec_coord_client_t *c, Psrec__Header *hb, Psrec__Header **reply,
                                             char *err)
{
    *reply = NULL;
    if (!c->registered) return psrec_fail(err, PSREC_EINVAL, "heartbeat before register");
    hb->type = PSREC__TYPE__HEARTBEAT;
    identity(c, hb);
    return call(c, hb, PSREC__TYPE__HEARTBEAT_OK, now_ms() + c->timeout_ms, reply, err);
}

psrec_err psrec_coord_client_heartbeat(psrec_coord_client_t *c, Psrec__Header *hb, int *stop, char *err)
{
    *stop = 0;
    Psrec__Header *r;
    psrec_err rc = psrec_coord_client_heartbeat_reply(c, hb, &r, err);
    if (rc) return rc;
    *stop = r->stop ? 1 : 0;
    psrec__header__free_unpacked(r, NULL);
    return PSREC_OK;
}

psrec_err psrec_coord_client_barrier(psrec_coord_client_t *c, const char *name, uint32_t count, char *err)
{
    if (!name || !*name || count == 0) return psrec_fail(err, PSREC_EINVAL, "barrier: needs a name and a count");
    Psrec__Header req, *r;
    psrec_wire_header_init(&req, PSREC__TYPE__BARRIER);
    identity(c, &req);
    req.barrier_name = (char *)name;
    req.barrier_count = count;
    psrec_err rc = call(c, &req, PSREC__TYPE__BARRIER_OK, now_ms() + c->timeout_ms, &r, err);
    if (rc) return rc;
    psrec__header__free_unpacked(r, NULL);
    return PSREC_OK;
}

psrec_err psrec_coord_client_status(psrec_coord_client_t *c, Psrec__Header **reply, char *err)
{
    Psrec__Header req;
    psrec_wire_header_init(&req, PSREC__TYPE__STATUS);
    identity(c, &req);
    return call(c, &req, PSREC__TYPE__STATUS_OK, now_ms() + c->timeout_ms, reply, err);
}

psrec_err psrec_coord_client_shutdown(psrec_coord_client_t *c, char *err)
{
    Psrec__Header req, *r;
    psrec_wire_header_init(&req, PSREC__TYPE__SHUTDOWN);
    identity(c, &req);
    psrec_err rc = call(c, &req, PSREC__TYPE__SHUTDOWN_OK, now_ms() + c->timeout_ms, &r, err);
    if (rc) return rc;
    psrec__header__free_unpacked(r, NULL);
    return PSREC_OK;
}

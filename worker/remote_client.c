/* remote_client.c: the distributed table client (worker/remote_client.h): PULL/PUSH/SET/DUMP to the
 * servers owning each key's hash slot, over one DEALER socket per server.
 *
 * Design.
 * - A call counting-sorts its keys by server (psrec_wire_slot -> shard map) into reused buffers,
 *   remembering each key's caller position, cuts every server's run into requests of at most
 *   PSREC_REMOTE_CHUNK keys (and one frame's bytes), and keeps up to WINDOW requests per server in
 *   flight (bounded so neither side's high-water mark drops a reply), topping the window up as
 *   replies arrive. One zmq_poll over all sockets waits for them.
 * - Replies are matched by seq; anything else (a late reply to an earlier attempt or an abandoned
 *   call) is dropped. A request not answered within timeout_ms is re-sent with the same seq, so a
 *   server that applied it already acknowledges without applying twice; after `retries` attempts the
 *   call fails with PSREC_ETIMEDOUT naming the server.
 * - Recovery (recovery_ms > 0): the give-up rule is "this server has said nothing for recovery_ms
 *   since the request's first attempt" instead of an attempt count, so a call waits out a server
 *   restart (the DEALER reconnects to the same endpoint by itself) yet fails in bounded time when the
 *   server is gone. A server answering other requests is alive, so its slow request is not given up.
 *   ENOTREADY (restarting, still loading) is not a sign of life: the request is re-sent after
 *   PSREC_REMOTE_NOTREADY_MS, within the same deadline.
 * - Sends never block (ZMQ_SNDTIMEO 0, ZMQ_SNDHWM PSREC_REMOTE_SNDHWM): while a server is away, at
 *   most SNDHWM copies wait in its socket, and a send that would block is treated as a lost message
 *   (the request is re-sent at its next deadline). A reconnected server may then receive a few copies
 *   of one seq: pushes are de-duplicated by the server, extra replies dropped here.
 * - Seqs start at the wall clock in nanoseconds, so a restarted process with the same rank and epoch
 *   (standalone servers have no epochs) continues above its predecessor's seqs instead of being
 *   taken for its duplicates.
 * - LZ4 is tried only where it has paid recently: per (table, request type), after 4 requests in a
 *   row whose bulk did not shrink by 1/16, the next 60 go out raw without an attempt (dense float
 *   gradients never shrink; key arrays of dense ids do), then it probes again.
 * - A pull reply is scattered straight from the received frame into the caller's rows: no
 *   intermediate copy. With one server no grouping is done at all.
 * Thread model: one client per thread (DEALER sockets and the scratch buffers are not shared). */
#include "worker/remote_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/grow.h"

#define WINDOW 8 /* requests in flight per server */
/* The servers' duplicate window (ps/server.c): a retried seq must stay within DEDUP_SPAN of the
 * highest seq the server has applied from us, or it would be taken for a duplicate. */
#define DEDUP_SPAN 64
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_RETRIES 3
#define MAX_MSG_BYTES ((int64_t)PSREC_WIRE_MAX_FRAME_BYTES + (1 << 20))

/* Adaptive LZ4: skip attempts on a stream of requests that recently did not compress. */
typedef struct {
    uint8_t fail, skip;
} gate_t;
#define GATE_FAILS 4
#define GATE_SKIP 60

typedef struct {
    uint32_t server;
    int state; /* 0 queued, 1 in flight, 2 answered */
    int attempts;
    size_t off, count; /* range of the grouped arrays */
    uint64_t seq;
    uint64_t cursor; /* DUMP */
    int64_t deadline_ms;
    int64_t first_ms; /* first attempt (recovery deadline) */
    int notready;     /* the last answer was ENOTREADY */
} req_t;

/* What a call is doing; requests point into its arrays. */
typedef struct {
    Psrec__Type type, want;
    uint32_t table, dim;
    uint64_t round; /* CHECKPOINT */
    /* NEG_SCORE / NEG_APPLY: one request per server (the request's server index is the part) */
    const psrec_negbatch_t *nb;
    const psrec_negdraw_t *draw;
    uint64_t seed;
    float *lse, *ybar, *logE; /* NEG_SCORE_OK results, per server */
    const float *w;           /* NEG_APPLY: nservers x B weights */
    int stale;                /* NEG_APPLY: servers that no longer had the scored batch */
    const uint64_t *keys;     /* grouped by server */
    const float *vals;        /* grouped (PUSH/SET) */
    float *out;               /* PULL: caller's rows */
    int touch;                /* PULL: create the rows, none come back */
    const size_t *perm;       /* grouped position -> caller position; NULL = identity */
    /* DUMP results */
    uint64_t *dkeys;
    float *dvals;
    size_t dn, dcap;
} op_t;

typedef struct {
    size_t first, end, next; /* this server's requests [first, end), next to send */
    size_t oldest;           /* first request of this server not answered yet (<= next) */
    int inflight;
} sstate_t;

struct psrec_remote {
    void *zctx;
    psrec_remote_conf_t conf;
    uint32_t nservers;
    char **addr;
    void **socks;
    int64_t *heard_ms; /* per server: last reply (recovery deadline) */
    uint32_t nslots;
    uint32_t *slot_server;
    uint64_t map_version;
    uint64_t seq;
    /* scratch, kept across calls */
    uint32_t *srv;
    size_t srv_cap;
    size_t *perm;
    size_t perm_cap;
    uint64_t *gkeys;
    size_t gkeys_cap;
    float *gvals;
    size_t gvals_cap;
    req_t *reqs;
    size_t reqs_cap;
    size_t *cnt;
    sstate_t *ss;
    zmq_pollitem_t *items;
    uint32_t *item_server;
    psrec_wire_stats_t sent, received;
    uint64_t *neg_seq; /* per server: seq of the last NEG_SCORE answered (what NEG_APPLY completes) */
    uint32_t neg_n;    /* servers of that score (0: none) */
    int neg_B, neg_d;
    gate_t gates[PSREC_STORE_MAX_TABLES][3]; /* PULL, PUSH, SET */
    char last_err[PSREC_ERRBUF];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *type_name(Psrec__Type t)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&psrec__type__descriptor, (int)t);
    return v ? v->name : "?";
}

/* ---- lifetime ---- */

static psrec_err check_map(const Psrec__ShardMap *map, char *err)
{
    if (map->n_server_addr == 0 || map->n_server_addr > 65536 || map->nslots == 0 || map->nslots > (1u << 24) ||
        map->n_slot_server != map->nslots)
        return psrec_fail(err, PSREC_EINVAL, "remote client: bad shard map (%zu servers, %u slots, %zu entries)",
                          map->n_server_addr, map->nslots, map->n_slot_server);
    for (size_t i = 0; i < map->nslots; i++)
        if (map->slot_server[i] >= map->n_server_addr)
            return psrec_fail(err, PSREC_EINVAL, "remote client: slot %zu maps to server %u of %zu", i,
                              map->slot_server[i], map->n_server_addr);
    for (size_t i = 0; i < map->n_server_addr; i++)
        if (!map->server_addr[i] || !*map->server_addr[i])
            return psrec_fail(err, PSREC_EINVAL, "remote client: server %zu has no address", i);
    return PSREC_OK;
}

/* A DEALER connected to server i at addr: sends never block, few messages queue while it is away. */
static psrec_err open_sock(void *zctx, const psrec_zsec_t *sec, uint32_t i, const char *addr, void **out, char *err)
{
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    if (!s) return psrec_fail(err, PSREC_EIO, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0, hwm = PSREC_REMOTE_SNDHWM;
    int64_t maxmsg = MAX_MSG_BYTES;
    if (zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) || zmq_setsockopt(s, ZMQ_SNDTIMEO, &zero, sizeof zero) ||
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm) || zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg)) {
        psrec_err rc = psrec_fail(err, PSREC_EIO, "zmq_setsockopt: %s", zmq_strerror(zmq_errno()));
        zmq_close(s);
        return rc;
    }
    char e[PSREC_ERRBUF];
    psrec_err crc = psrec_zsec_connect(sec, zctx, s, addr, 0, e); /* the job's connection security */
    if (crc) {
        psrec_err rc = psrec_fail(err, crc, "server %u (%s): %s", i, addr, e);
        zmq_close(s);
        return rc;
    }
    *out = s;
    return PSREC_OK;
}

psrec_err psrec_remote_new(psrec_remote_t **out, void *zctx, const Psrec__ShardMap *map,
                           const psrec_remote_conf_t *conf, char *err)
{
    *out = NULL;
    if (!zctx || !map || !conf) return psrec_fail(err, PSREC_EINVAL, "remote client: missing context, map or conf");
    psrec_err rc = check_map(map, err);
    if (rc) return rc;
    if (conf->timeout_ms < 0 || conf->retries < 0 || conf->recovery_ms < 0)
        return psrec_fail(err, PSREC_EINVAL, "remote client: negative timeout, retries or recovery time");
    psrec_remote_t *r = calloc(1, sizeof *r);
    if (!r) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    r->zctx = zctx;
    r->conf = *conf;
    if (r->conf.timeout_ms == 0) r->conf.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (r->conf.retries == 0) r->conf.retries = DEFAULT_RETRIES;
    r->nservers = (uint32_t)map->n_server_addr;
    r->nslots = map->nslots;
    r->map_version = map->version;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->seq = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    r->slot_server = malloc(r->nslots * sizeof *r->slot_server);
    r->addr = calloc(r->nservers, sizeof *r->addr);
    r->socks = calloc(r->nservers, sizeof *r->socks);
    r->heard_ms = calloc(r->nservers, sizeof *r->heard_ms);
    r->cnt = calloc(r->nservers, sizeof *r->cnt);
    r->ss = calloc(r->nservers, sizeof *r->ss);
    r->items = calloc(r->nservers, sizeof *r->items);
    r->item_server = calloc(r->nservers, sizeof *r->item_server);
    if (!r->slot_server || !r->addr || !r->socks || !r->heard_ms || !r->cnt || !r->ss || !r->items || !r->item_server)
        rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
    if (!rc) memcpy(r->slot_server, map->slot_server, r->nslots * sizeof *r->slot_server);
    for (uint32_t i = 0; !rc && i < r->nservers; i++) {
        if (!(r->addr[i] = strdup(map->server_addr[i])))
            rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
        else
            rc = open_sock(zctx, r->conf.sec, i, r->addr[i], &r->socks[i], err);
    }
    if (rc) {
        psrec_remote_destroy(&r);
        return rc;
    }
    *out = r;
    return PSREC_OK;
}

void psrec_remote_destroy(psrec_remote_t **pr)
{
    if (!pr || !*pr) return;
    psrec_remote_t *r = *pr;
    for (uint32_t i = 0; i < r->nservers; i++) {
        if (r->socks && r->socks[i]) zmq_close(r->socks[i]);
        if (r->addr) free(r->addr[i]);
    }
    free(r->socks);
    free(r->addr);
    free(r->heard_ms);
    free(r->slot_server);
    free(r->srv);
    free(r->perm);
    free(r->gkeys);
    free(r->gvals);
    free(r->reqs);
    free(r->cnt);
    free(r->ss);
    free(r->items);
    free(r->item_server);
    free(r->neg_seq);
    free(r);
    *pr = NULL;
}

psrec_err psrec_remote_set_map(psrec_remote_t *r, const Psrec__ShardMap *map, char *err)
{
    if (!map) return psrec_fail(err, PSREC_EINVAL, "remote client: no shard map");
    psrec_err rc = check_map(map, err);
    if (rc) return rc;
    /* everything is built aside first, so that a failure leaves r as it was */
    uint32_t n = (uint32_t)map->n_server_addr;
    uint32_t *slots = malloc(map->nslots * sizeof *slots);
    char **addr = calloc(n, sizeof *addr);
    void **socks = calloc(n, sizeof *socks);
    int64_t *heard = calloc(n, sizeof *heard);
    size_t *cnt = calloc(n, sizeof *cnt);
    sstate_t *ss = calloc(n, sizeof *ss);
    zmq_pollitem_t *items = calloc(n, sizeof *items);
    uint32_t *item_server = calloc(n, sizeof *item_server);
    unsigned char *kept = calloc(n, 1); /* server i keeps its socket (same index, same address) */
    if (!slots || !addr || !socks || !heard || !cnt || !ss || !items || !item_server || !kept)
        rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
    if (!rc) memcpy(slots, map->slot_server, map->nslots * sizeof *slots);
    for (uint32_t i = 0; !rc && i < n; i++) {
        if (i < r->nservers && strcmp(r->addr[i], map->server_addr[i]) == 0) {
            kept[i] = 1;
            addr[i] = r->addr[i];
            socks[i] = r->socks[i];
            heard[i] = r->heard_ms[i];
        } else if (!(addr[i] = strdup(map->server_addr[i]))) {
            rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
        } else {
            rc = open_sock(r->zctx, r->conf.sec, i, addr[i], &socks[i], err);
        }
    }
    if (rc) {
        for (uint32_t i = 0; addr && i < n; i++)
            if (!kept || !kept[i]) {
                if (socks && socks[i]) zmq_close(socks[i]);
                free(addr[i]);
            }
    } else {
        for (uint32_t i = 0; i < r->nservers; i++)
            if (i >= n || !kept[i]) { /* its replies in flight are dropped with the socket */
                zmq_close(r->socks[i]);
                free(r->addr[i]);
            }
        free(r->slot_server), free(r->addr), free(r->socks), free(r->heard_ms);
        free(r->cnt), free(r->ss), free(r->items), free(r->item_server);
        r->slot_server = slots, r->addr = addr, r->socks = socks, r->heard_ms = heard;
        r->cnt = cnt, r->ss = ss, r->items = items, r->item_server = item_server;
        r->nservers = n;
        r->nslots = map->nslots;
        r->map_version = map->version;
        free(kept);
        return PSREC_OK;
    }
    free(slots), free(addr), free(socks), free(heard), free(cnt), free(ss), free(items), free(item_server);
    free(kept);
    return rc;
}

void psrec_remote_stats(const psrec_remote_t *r, psrec_wire_stats_t *sent, psrec_wire_stats_t *received)
{
    if (sent) *sent = r->sent;
    if (received) *received = r->received;
}

const char *psrec_remote_last_error(const psrec_remote_t *r)
{
    return r->last_err;
}

/* ---- requests ---- */

/* Since when server s of q has been silent as far as q is concerned (recovery deadline). */
static int64_t quiet_since(const psrec_remote_t *r, const req_t *q)
{
    int64_t h = r->heard_ms[q->server];
    return h > q->first_ms ? h : q->first_ms;
}

static psrec_err send_req(psrec_remote_t *r, const op_t *op, req_t *q, char *err)
{
    Psrec__Header h;
    psrec_wire_header_init(&h, op->type);
    h.role = PSREC__ROLE__WORKER;
    h.rank = r->conf.rank;
    h.epoch = r->conf.epoch;
    h.seq = q->seq;
    h.job_id = r->conf.job_id;
    h.map_version = r->map_version;
    h.table = op->table;
    h.dim = op->dim;
    h.count = q->count;
    h.cursor = q->cursor;
    h.checkpoint_round = op->round;
    h.touch = op->touch;
    psrec_wire_bulk_t b[3];
    int nb = 0;
    if (op->type == PSREC__TYPE__NEG_SCORE) {
        const psrec_negbatch_t *x = op->nb;
        h.count = (uint64_t)x->B;
        h.negatives = (uint32_t)op->draw->S;
        h.neg_pool = (uint32_t)op->draw->pool;
        h.temperature = (float)op->draw->temperature;
        h.n_pos = x->pos_off[x->B];
        h.seed = op->seed;
        b[nb++] = (psrec_wire_bulk_t){x->U, (size_t)x->B * x->d * sizeof(float)};
        b[nb++] = (psrec_wire_bulk_t){x->pos_off, ((size_t)x->B + 1) * sizeof(uint32_t)};
        b[nb++] = (psrec_wire_bulk_t){x->pos_key, (size_t)h.n_pos * sizeof(uint64_t)};
    } else if (op->type == PSREC__TYPE__NEG_APPLY) { /* then the vals frame below: the worker's rows */
        h.count = (uint64_t)r->neg_B;
        h.score_seq = r->neg_seq[q->server];
        h.push_rows = q->count;
        b[nb++] = (psrec_wire_bulk_t){op->w + (size_t)q->server * r->neg_B, (size_t)r->neg_B * sizeof(float)};
        b[nb++] = (psrec_wire_bulk_t){op->keys + q->off, q->count * sizeof(uint64_t)};
    } else if (op->type != PSREC__TYPE__DUMP && op->type != PSREC__TYPE__CHECKPOINT) {
        b[nb++] = (psrec_wire_bulk_t){op->keys + q->off, q->count * sizeof(uint64_t)};
    }
    if (op->vals) b[nb++] = (psrec_wire_bulk_t){op->vals + q->off * op->dim, q->count * op->dim * sizeof(float)};
    char e[PSREC_ERRBUF];
    gate_t *g = NULL;
    int negs = op->type == PSREC__TYPE__NEG_SCORE || op->type == PSREC__TYPE__NEG_APPLY; /* floats: raw */
    if (r->conf.compress && nb > 0 && !negs && op->table < PSREC_STORE_MAX_TABLES)
        g = &r->gates[op->table][op->type == PSREC__TYPE__PULL ? 0 : op->type == PSREC__TYPE__PUSH ? 1 : 2];
    int compress = 0;
    if (g && g->skip)
        g->skip--;
    else
        compress = g != NULL;
    uint64_t raw0 = r->sent.raw_bytes, wire0 = r->sent.wire_bytes;
    psrec_err rc = psrec_wire_send(r->socks[q->server], NULL, &h, b, nb, compress, &r->sent, e);
    if (!rc && compress) {
        if ((r->sent.wire_bytes - wire0) * 16 > (r->sent.raw_bytes - raw0) * 15) {
            if (++g->fail >= GATE_FAILS) g->fail = 0, g->skip = GATE_SKIP;
        } else {
            g->fail = 0;
        }
    }
    if (rc == PSREC_ETIMEDOUT) rc = PSREC_OK; /* would block (SNDHWM copies wait for an absent server): lost */
    if (rc)
        return psrec_fail(err, rc, "%s to server %u (%s): %s", type_name(op->type), q->server, r->addr[q->server], e);
    int64_t now = now_ms();
    if (q->attempts == 0) q->first_ms = now;
    q->state = 1;
    q->attempts++;
    q->deadline_ms = now + r->conf.timeout_ms;
    if (r->conf.recovery_ms > 0) {
        int64_t give_up = quiet_since(r, q) + r->conf.recovery_ms;
        if (give_up < q->deadline_ms) q->deadline_ms = give_up;
    }
    return PSREC_OK;
}

/* Sends queued requests of server s while its window has room. */
static psrec_err top_up(psrec_remote_t *r, const op_t *op, uint32_t s, char *err)
{
    sstate_t *x = &r->ss[s];
    while (x->inflight < WINDOW && x->next < x->end) {
        while (x->oldest < x->next && r->reqs[x->oldest].state == 2)
            x->oldest++;
        /* seqs of one server's requests are consecutive: never run DEDUP_SPAN ahead of an unanswered one */
        if (x->oldest < x->next && r->reqs[x->next].seq - r->reqs[x->oldest].seq >= DEDUP_SPAN) break;
        req_t *q = &r->reqs[x->next++];
        psrec_err rc = send_req(r, op, q, err);
        if (rc) return rc;
        x->inflight++;
    }
    return PSREC_OK;
}

/* Handles a reply to q. Returns 1 in *again when q was re-armed (DUMP: next page). */
static psrec_err on_reply(psrec_remote_t *r, op_t *op, req_t *q, const psrec_wire_msg_t *m, int *again, char *err)
{
    const Psrec__Header *h = m->hdr;
    *again = 0;
    if (h->type == PSREC__TYPE__ERROR) {
        psrec_err code = h->error_code > 0 && h->error_code < PSREC_ERR_COUNT ? (psrec_err)h->error_code : PSREC_EPROTO;
        return psrec_fail(err, code, "server %u (%s) refused %s: %s", q->server, r->addr[q->server],
                          type_name(op->type), h->error_text && *h->error_text ? h->error_text : psrec_strerror(code));
    }
    if (h->type != op->want)
        return psrec_fail(err, PSREC_EPROTO, "server %u (%s) answered %s with %s", q->server, r->addr[q->server],
                          type_name(op->type), type_name(h->type));
    if (op->type == PSREC__TYPE__PULL && op->touch) {
        if (h->count != q->count || m->nbulk != 0)
            return psrec_fail(err, PSREC_EPROTO, "server %u (%s): touch answered for %llu rows, %zu sent", q->server,
                              r->addr[q->server], (unsigned long long)h->count, q->count);
    } else if (op->type == PSREC__TYPE__PULL) {
        size_t bytes = q->count * op->dim * sizeof(float);
        if (h->count != q->count || h->dim != op->dim || m->nbulk != 1 || m->bulk_bytes[0] != bytes)
            return psrec_fail(err, PSREC_EPROTO, "server %u (%s): PULL_OK of %llu rows, %zu asked", q->server,
                              r->addr[q->server], (unsigned long long)h->count, q->count);
        const float *src = m->bulk[0];
        size_t row = op->dim * sizeof(float);
        if (!op->perm) {
            memcpy(op->out + q->off * op->dim, src, bytes);
        } else {
            for (size_t i = 0; i < q->count; i++)
                memcpy(op->out + op->perm[q->off + i] * op->dim, src + i * op->dim, row);
        }
    } else if (op->type == PSREC__TYPE__DUMP) {
        size_t n = (size_t)h->count;
        if (h->dim != op->dim || m->nbulk != 2 || m->bulk_bytes[0] != n * sizeof(uint64_t) ||
            m->bulk_bytes[1] != n * op->dim * sizeof(float) || (h->cursor != 0 && h->cursor <= q->cursor))
            return psrec_fail(err, PSREC_EPROTO, "server %u (%s): malformed DUMP_OK", q->server, r->addr[q->server]);
        if (op->dn + n > op->dcap) {
            size_t cap = op->dcap ? op->dcap : 1024;
            while (cap < op->dn + n)
                cap *= 2;
            uint64_t *k = realloc(op->dkeys, cap * sizeof *k);
            if (k) op->dkeys = k;
            float *v = k ? realloc(op->dvals, cap * op->dim * sizeof *v) : NULL;
            if (v) op->dvals = v;
            if (!k || !v) return psrec_fail(err, PSREC_ENOMEM, "out of memory for %zu dumped rows", op->dn + n);
            op->dcap = cap;
        }
        memcpy(op->dkeys + op->dn, m->bulk[0], m->bulk_bytes[0]);
        memcpy(op->dvals + op->dn * op->dim, m->bulk[1], m->bulk_bytes[1]);
        op->dn += n;
        if (h->cursor != 0) {
            q->cursor = h->cursor;
            q->seq = ++r->seq;
            q->attempts = 0;
            *again = 1;
            return send_req(r, op, q, err);
        }
    } else if (op->type == PSREC__TYPE__NEG_SCORE) {
        const psrec_negbatch_t *x = op->nb;
        size_t B = (size_t)x->B, d = (size_t)x->d;
        if (h->count != B || h->dim != d || m->nbulk != 2 || m->bulk_bytes[0] != B * sizeof(float) ||
            m->bulk_bytes[1] != B * d * sizeof(float))
            return psrec_fail(err, PSREC_EPROTO, "server %u (%s): malformed NEG_SCORE_OK", q->server,
                              r->addr[q->server]);
        memcpy(op->lse + q->server * B, m->bulk[0], B * sizeof(float));
        memcpy(op->ybar + q->server * B * d, m->bulk[1], B * d * sizeof(float));
        op->logE[q->server] = h->neg_log_expected;
        r->neg_seq[q->server] = q->seq;
    } else if (op->type == PSREC__TYPE__NEG_APPLY) {
        /* count = rows the server updated: nothing to check against; negatives = 0: the server had not
         * the scored batch (it restarted), only the worker's rows were applied */
        if (!h->negatives) op->stale++;
    } else if (op->type == PSREC__TYPE__CHECKPOINT) {
        if (h->checkpoint_round != op->round)
            return psrec_fail(err, PSREC_EPROTO, "server %u (%s): CHECKPOINT_OK for round %llu, round %llu asked",
                              q->server, r->addr[q->server], (unsigned long long)h->checkpoint_round,
                              (unsigned long long)op->round);
    } else if (h->count != q->count) {
        return psrec_fail(err, PSREC_EPROTO, "server %u (%s): %s for %llu keys, %zu sent", q->server,
                          r->addr[q->server], type_name(h->type), (unsigned long long)h->count, q->count);
    }
    return PSREC_OK;
}

/* Runs every request of r->reqs[0..nreq) (grouped by server, r->ss set up) to completion. */
static psrec_err run(psrec_remote_t *r, op_t *op, size_t nreq, char *err)
{
    psrec_err rc = PSREC_OK;
    for (uint32_t s = 0; !rc && s < r->nservers; s++)
        rc = top_up(r, op, s, err);
    size_t done = 0;
    while (!rc && done < nreq) {
        /* poll every server with requests in flight, until the earliest deadline */
        int n = 0;
        int64_t now = now_ms(), first = INT64_MAX;
        for (uint32_t s = 0; s < r->nservers; s++) {
            if (!r->ss[s].inflight) continue;
            r->items[n] = (zmq_pollitem_t){.socket = r->socks[s], .events = ZMQ_POLLIN};
            r->item_server[n++] = s;
        }
        for (size_t i = 0; i < nreq; i++)
            if (r->reqs[i].state == 1 && r->reqs[i].deadline_ms < first) first = r->reqs[i].deadline_ms;
        long wait = first == INT64_MAX ? 0 : first <= now ? 0 : (long)(first - now);
        int pr = zmq_poll(r->items, n, wait);
        if (pr < 0) {
            if (zmq_errno() == EINTR) continue;
            return psrec_fail(err, PSREC_EIO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        }
        for (int k = 0; !rc && pr > 0 && k < n; k++) {
            if (!(r->items[k].revents & ZMQ_POLLIN)) continue;
            uint32_t s = r->item_server[k];
            for (;;) {
                psrec_wire_msg_t m;
                char e[PSREC_ERRBUF];
                psrec_err mrc = psrec_wire_recv(r->socks[s], NULL, &m, 0, &r->received, e);
                if (mrc == PSREC_ETIMEDOUT) break;
                if (mrc) {
                    rc = psrec_fail(err, mrc, "reply from server %u (%s): %s", s, r->addr[s], e);
                    break;
                }
                /* ENOTREADY: restarting and still loading, so not a sign of life for the recovery deadline */
                int notready = m.hdr->type == PSREC__TYPE__ERROR && m.hdr->error_code == PSREC_ENOTREADY;
                if (!notready) r->heard_ms[s] = now_ms();
                req_t *q = NULL;
                for (size_t i = r->ss[s].first; i < r->ss[s].next; i++)
                    if (r->reqs[i].state == 1 && r->reqs[i].seq == m.hdr->seq) {
                        q = &r->reqs[i];
                        break;
                    }
                if (q && m.hdr->job_id == r->conf.job_id && notready) {
                    int pause =
                        r->conf.timeout_ms < PSREC_REMOTE_NOTREADY_MS ? r->conf.timeout_ms : PSREC_REMOTE_NOTREADY_MS;
                    q->notready = 1;
                    q->deadline_ms = now_ms() + pause; /* re-sent then, like a lost reply */
                } else if (q && m.hdr->job_id == r->conf.job_id) {
                    int again = 0;
                    rc = on_reply(r, op, q, &m, &again, err);
                    if (!rc && !again) {
                        q->state = 2;
                        done++;
                        r->ss[s].inflight--;
                        rc = top_up(r, op, s, err);
                    }
                } /* else: a late reply to an earlier attempt or call */
                psrec_wire_msg_clear(&m);
                if (rc) break;
            }
        }
        if (rc) break;
        now = now_ms();
        for (size_t i = 0; !rc && i < nreq; i++) {
            req_t *q = &r->reqs[i];
            if (q->state != 1 || q->deadline_ms > now) continue;
            const char *why = q->notready ? "; it answered ENOTREADY (still loading)" : "";
            if (r->conf.recovery_ms > 0 && now - quiet_since(r, q) >= r->conf.recovery_ms)
                rc = psrec_fail(err, PSREC_ETIMEDOUT,
                                "%s to server %u (%s): no reply for %lld ms (recovery_ms %d, %d attempts%s)",
                                type_name(op->type), q->server, r->addr[q->server], (long long)(now - q->first_ms),
                                r->conf.recovery_ms, q->attempts, why);
            else if (r->conf.recovery_ms == 0 && q->attempts >= r->conf.retries)
                rc = psrec_fail(err, PSREC_ETIMEDOUT, "%s to server %u (%s): no reply after %d attempts of %d ms%s",
                                type_name(op->type), q->server, r->addr[q->server], q->attempts, r->conf.timeout_ms,
                                why);
            else
                rc = send_req(r, op, q, err); /* same seq: the server drops it if it applied it */
        }
    }
    return rc;
}

/* Groups n keys (and rows of op->dim floats) by server: op->keys/vals/perm point at them in server
 * order (the caller's arrays with one server), r->cnt[s] is server s's count. */
static psrec_err group_rows(psrec_remote_t *r, op_t *op, const uint64_t *keys, size_t n, const float *vals, char *err)
{
    uint32_t dim = op->dim;
    memset(r->cnt, 0, r->nservers * sizeof *r->cnt);
    if (r->nservers == 1) {
        r->cnt[0] = n;
        op->keys = keys;
        op->vals = vals;
        op->perm = NULL;
        return PSREC_OK;
    }
    if (psrec_grow((void **)&r->srv, &r->srv_cap, n, sizeof *r->srv) ||
        psrec_grow((void **)&r->perm, &r->perm_cap, n, sizeof *r->perm) ||
        psrec_grow((void **)&r->gkeys, &r->gkeys_cap, n, sizeof *r->gkeys) ||
        (vals && psrec_grow((void **)&r->gvals, &r->gvals_cap, (size_t)n * dim, sizeof *r->gvals)))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory grouping %zu keys", n);
    for (size_t i = 0; i < n; i++) {
        uint32_t s = r->slot_server[psrec_wire_slot(keys[i], r->nslots)];
        r->srv[i] = s;
        r->cnt[s]++;
    }
    size_t off = 0;
    for (uint32_t s = 0; s < r->nservers; s++) {
        r->ss[s].first = off; /* temporarily: next free position of server s */
        off += r->cnt[s];
    }
    for (size_t i = 0; i < n; i++) {
        size_t p = r->ss[r->srv[i]].first++;
        r->perm[p] = i;
        r->gkeys[p] = keys[i];
        if (vals) memcpy(r->gvals + p * dim, vals + i * dim, dim * sizeof(float));
    }
    op->keys = r->gkeys;
    op->vals = vals ? r->gvals : NULL;
    op->perm = r->perm;
    return PSREC_OK;
}

/* Groups n keys (and rows) by server and builds the requests; returns their number in *nreq. */
static psrec_err plan(psrec_remote_t *r, op_t *op, const uint64_t *keys, size_t n, const float *vals, size_t *nreq,
                      char *err)
{
    size_t chunk = PSREC_WIRE_MAX_FRAME_BYTES / ((size_t)op->dim * sizeof(float));
    if (chunk > PSREC_REMOTE_CHUNK) chunk = PSREC_REMOTE_CHUNK;
    psrec_err rc = group_rows(r, op, keys, n, vals, err);
    if (rc) return rc;
    size_t total = 0;
    for (uint32_t s = 0; s < r->nservers; s++)
        total += (r->cnt[s] + chunk - 1) / chunk;
    if (psrec_grow((void **)&r->reqs, &r->reqs_cap, total, sizeof *r->reqs))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory for %zu requests", total);
    size_t k = 0, off = 0;
    for (uint32_t s = 0; s < r->nservers; s++) {
        r->ss[s] = (sstate_t){.first = k, .next = k, .oldest = k};
        for (size_t done = 0; done < r->cnt[s]; done += chunk) {
            size_t c = r->cnt[s] - done < chunk ? r->cnt[s] - done : chunk;
            r->reqs[k++] = (req_t){.server = s, .off = off + done, .count = c, .seq = ++r->seq};
        }
        r->ss[s].end = k;
        off += r->cnt[s];
    }
    *nreq = k;
    return PSREC_OK;
}

static psrec_err rows_call(psrec_remote_t *r, Psrec__Type type, Psrec__Type want, uint32_t table, const uint64_t *keys,
                           size_t n, const float *vals, float *out, uint32_t dim, char *err)
{
    if (dim == 0 || dim > PSREC_WIRE_MAX_DIM)
        return psrec_fail(err, PSREC_EINVAL, "%s: dim %u out of range", type_name(type), dim);
    if (n == 0) return PSREC_OK;
    op_t op = {.type = type, .want = want, .table = table, .dim = dim, .out = out};
    size_t nreq = 0;
    psrec_err rc = plan(r, &op, keys, n, vals, &nreq, err);
    if (!rc) rc = run(r, &op, nreq, err);
    return rc;
}

psrec_err psrec_remote_pull(psrec_remote_t *r, uint32_t table, const uint64_t *keys, size_t n, float *out, uint32_t dim,
                            char *err)
{
    return rows_call(r, PSREC__TYPE__PULL, PSREC__TYPE__PULL_OK, table, keys, n, NULL, out, dim, err);
}

psrec_err psrec_remote_touch(psrec_remote_t *r, uint32_t table, const uint64_t *keys, size_t n, uint32_t dim, char *err)
{
    if (dim == 0 || dim > PSREC_WIRE_MAX_DIM) return psrec_fail(err, PSREC_EINVAL, "touch: dim %u out of range", dim);
    if (n == 0) return PSREC_OK;
    op_t op = {.type = PSREC__TYPE__PULL, .want = PSREC__TYPE__PULL_OK, .table = table, .dim = dim, .touch = 1};
    size_t nreq = 0;
    psrec_err rc = plan(r, &op, keys, n, NULL, &nreq, err);
    if (!rc) rc = run(r, &op, nreq, err);
    return rc;
}

psrec_err psrec_remote_push(psrec_remote_t *r, uint32_t table, const uint64_t *keys, size_t n, const float *grads,
                            uint32_t dim, char *err)
{
    return rows_call(r, PSREC__TYPE__PUSH, PSREC__TYPE__PUSH_OK, table, keys, n, grads, NULL, dim, err);
}

psrec_err psrec_remote_set(psrec_remote_t *r, uint32_t table, const uint64_t *keys, size_t n, const float *values,
                           uint32_t dim, char *err)
{
    return rows_call(r, PSREC__TYPE__SET, PSREC__TYPE__SET_OK, table, keys, n, values, NULL, dim, err);
}

psrec_err psrec_remote_dump(psrec_remote_t *r, uint32_t table, uint32_t dim, uint64_t **keys, float **values, size_t *n,
                            char *err)
{
    *keys = NULL;
    *values = NULL;
    *n = 0;
    if (dim == 0 || dim > PSREC_WIRE_MAX_DIM) return psrec_fail(err, PSREC_EINVAL, "DUMP: dim %u out of range", dim);
    if (psrec_grow((void **)&r->reqs, &r->reqs_cap, r->nservers, sizeof *r->reqs))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    op_t op = {.type = PSREC__TYPE__DUMP, .want = PSREC__TYPE__DUMP_OK, .table = table, .dim = dim};
    for (uint32_t s = 0; s < r->nservers; s++) {
        r->reqs[s] = (req_t){.server = s, .seq = ++r->seq};
        r->ss[s] = (sstate_t){.first = s, .next = s, .oldest = s, .end = s + 1};
    }
    psrec_err rc = run(r, &op, r->nservers, err);
    if (rc) {
        free(op.dkeys);
        free(op.dvals);
        return rc;
    }
    *keys = op.dkeys;
    *values = op.dvals;
    *n = op.dn;
    return PSREC_OK;
}

psrec_err psrec_remote_checkpoint(psrec_remote_t *r, uint64_t round, char *err)
{
    if (round == 0) return psrec_fail(err, PSREC_EINVAL, "CHECKPOINT: round 0");
    if (psrec_grow((void **)&r->reqs, &r->reqs_cap, r->nservers, sizeof *r->reqs))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    op_t op = {.type = PSREC__TYPE__CHECKPOINT, .want = PSREC__TYPE__CHECKPOINT_OK, .round = round};
    for (uint32_t s = 0; s < r->nservers; s++) {
        r->reqs[s] = (req_t){.server = s, .seq = ++r->seq};
        r->ss[s] = (sstate_t){.first = s, .next = s, .oldest = s, .end = s + 1};
    }
    return run(r, &op, r->nservers, err);
}

/* One request per server, answered in parallel. */
static psrec_err per_server(psrec_remote_t *r, op_t *op, char *err)
{
    if (psrec_grow((void **)&r->reqs, &r->reqs_cap, r->nservers, sizeof *r->reqs))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    for (uint32_t s = 0; s < r->nservers; s++) {
        r->reqs[s] = (req_t){.server = s, .seq = ++r->seq};
        r->ss[s] = (sstate_t){.first = s, .next = s, .oldest = s, .end = s + 1};
    }
    return run(r, op, r->nservers, err);
}

uint32_t psrec_remote_nservers(const psrec_remote_t *r)
{
    return r->nservers;
}

uint32_t psrec_remote_server_of(const psrec_remote_t *r, uint64_t key)
{
    return r->slot_server[psrec_wire_slot(key, r->nslots)];
}

psrec_err psrec_remote_neg_score(psrec_remote_t *r, uint32_t table, const psrec_negbatch_t *b,
                                 const psrec_negdraw_t *draw, uint64_t seed, float *lse, float *ybar, float *logE,
                                 char *err)
{
    if (b->B < 1 || b->d < 1 || (uint32_t)b->d > PSREC_WIRE_MAX_DIM || draw->S < 0 || draw->pool < 0)
        return psrec_fail(err, PSREC_EINVAL, "NEG_SCORE: batch %d x %d, %d negatives of a pool of %d", b->B, b->d,
                          draw->S, draw->pool);
    if (r->neg_n < r->nservers) {
        uint64_t *q = realloc(r->neg_seq, r->nservers * sizeof *q);
        if (!q) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
        r->neg_seq = q;
    }
    r->neg_n = 0; /* until every server answered */
    op_t op = {.type = PSREC__TYPE__NEG_SCORE,
               .want = PSREC__TYPE__NEG_SCORE_OK,
               .table = table,
               .dim = (uint32_t)b->d,
               .nb = b,
               .draw = draw,
               .seed = seed,
               .lse = lse,
               .ybar = ybar,
               .logE = logE};
    psrec_err rc = per_server(r, &op, err);
    if (!rc) {
        r->neg_n = r->nservers;
        r->neg_B = b->B;
        r->neg_d = b->d;
    }
    return rc;
}

psrec_err psrec_remote_neg_apply(psrec_remote_t *r, uint32_t table, const float *w, const uint64_t *keys,
                                 const float *grads, size_t n, uint32_t *stale, char *err)
{
    *stale = 0;
    if (r->neg_n == 0 || r->neg_n != r->nservers)
        return psrec_fail(err, PSREC_ESTALE, "NEG_APPLY: no scored batch for the current servers");
    op_t op = {.type = PSREC__TYPE__NEG_APPLY,
               .want = PSREC__TYPE__NEG_APPLY_OK,
               .table = table,
               .dim = (uint32_t)r->neg_d,
               .w = w};
    /* the caller's rows grouped by server: one request each, every server gets its weights */
    if (psrec_grow((void **)&r->reqs, &r->reqs_cap, r->nservers, sizeof *r->reqs))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    static const uint64_t no_key[1];
    static const float no_row[1];
    /* no rows at all still sends the (empty) key and row frames the server expects */
    psrec_err rc = group_rows(r, &op, keys ? keys : no_key, n, grads ? grads : no_row, err);
    if (rc) return rc;
    size_t off = 0;
    for (uint32_t s = 0; s < r->nservers; s++) {
        r->reqs[s] = (req_t){.server = s, .seq = ++r->seq, .off = off, .count = r->cnt[s]};
        r->ss[s] = (sstate_t){.first = s, .next = s, .oldest = s, .end = s + 1};
        off += r->cnt[s];
    }
    rc = run(r, &op, r->nservers, err);
    r->neg_n = 0; /* applied (or failed) once */
    if (!rc && op.stale)
        snprintf(r->last_err, sizeof r->last_err, "NEG_APPLY: %d server(s) no longer had the scored batch (restarted)",
                 op.stale);
    *stale = (uint32_t)op.stale;
    return rc;
}

/* ---- table-client ops ---- */

static psrec_err ops_call(psrec_remote_t *r, Psrec__Type type, uint32_t table, const uint64_t *keys, size_t n,
                          const float *vals, float *out)
{
    uint32_t dim = table < PSREC_STORE_MAX_TABLES ? r->conf.table_dim[table] : 0;
    if (!dim)
        return psrec_fail(r->last_err, PSREC_ENOTFOUND, "no table %u in the remote client's configuration", table);
    switch (type) {
    case PSREC__TYPE__PULL: return psrec_remote_pull(r, table, keys, n, out, dim, r->last_err);
    case PSREC__TYPE__PUSH: return psrec_remote_push(r, table, keys, n, vals, dim, r->last_err);
    default: return psrec_remote_set(r, table, keys, n, vals, dim, r->last_err);
    }
}

static psrec_err ops_pull(void *impl, uint32_t table, const uint64_t *keys, size_t n, float *out)
{
    return ops_call(impl, PSREC__TYPE__PULL, table, keys, n, NULL, out);
}

static psrec_err ops_push(void *impl, uint32_t table, const uint64_t *keys, size_t n, const float *grads)
{
    return ops_call(impl, PSREC__TYPE__PUSH, table, keys, n, grads, NULL);
}

static psrec_err ops_set(void *impl, uint32_t table, const uint64_t *keys, size_t n, const float *values)
{
    return ops_call(impl, PSREC__TYPE__SET, table, keys, n, values, NULL);
}

static psrec_err ops_touch(void *impl, uint32_t table, const uint64_t *keys, size_t n)
{
    psrec_remote_t *r = impl;
    uint32_t dim = table < PSREC_STORE_MAX_TABLES ? r->conf.table_dim[table] : 0;
    if (!dim)
        return psrec_fail(r->last_err, PSREC_ENOTFOUND, "no table %u in the remote client's configuration", table);
    return psrec_remote_touch(r, table, keys, n, dim, r->last_err);
}

static uint32_t ops_neg_parts(void *impl)
{
    return psrec_remote_nservers(impl);
}

static uint32_t ops_neg_part_of(void *impl, uint64_t key)
{
    return psrec_remote_server_of(impl, key);
}

static psrec_err ops_neg_score(void *impl, uint32_t table, const psrec_negbatch_t *b, const psrec_negdraw_t *draw,
                               uint64_t seed, float *lse, float *ybar, float *logE)
{
    psrec_remote_t *r = impl;
    return psrec_remote_neg_score(r, table, b, draw, seed, lse, ybar, logE, r->last_err);
}

static psrec_err ops_neg_apply(void *impl, uint32_t table, const float *w, const uint64_t *keys, const float *grads,
                               size_t n, uint32_t *stale)
{
    psrec_remote_t *r = impl;
    return psrec_remote_neg_apply(r, table, w, keys, grads, n, stale, r->last_err);
}

static void ops_destroy(void *impl)
{
    psrec_remote_t *r = impl;
    psrec_remote_destroy(&r);
}

psrec_err psrec_table_client_new_remote(psrec_table_client_t **c, psrec_remote_t *r)
{
    static const psrec_table_ops_t remote_ops = {.pull = ops_pull,
                                                 .push = ops_push,
                                                 .set = ops_set,
                                                 .destroy = ops_destroy,
                                                 .touch = ops_touch,
                                                 .neg_parts = ops_neg_parts,
                                                 .neg_part_of = ops_neg_part_of,
                                                 .neg_score = ops_neg_score,
                                                 .neg_apply = ops_neg_apply};
    return psrec_table_client_new(c, &remote_ops, r);
}

/* server.c: a parameter server (ps/server.h): one ROUTER socket, one store, a poll loop that answers
 * PULL, PUSH, SET, DUMP, STATS and SHUTDOWN, and (with a coordinator) registration and heartbeats.
 *
 * Design.
 * - Every message gets exactly one reply. A request is checked completely before anything is
 *   applied: job id (EREFUSED), table (ENOTFOUND), dim (EPROTO), sizes (EMSGSIZE/EPROTO), ownership
 *   of every key under the shard map (ESTALE), sender epoch (ESTALE when older than one already seen).
 *   A malformed message (common/wire.c drains it) is answered with ERROR and its code.
 * - Duplicate suppression for PUSH and SET, per sender (role, rank): the highest applied seq and a
 *   64-bit window of the seqs below it (IPsec's anti-replay window). A seq older than the window
 *   counts as a duplicate. A newer epoch of the sender resets its window (a restarted worker), an
 *   older one is fenced. A duplicate is acknowledged and not applied (stats.duplicates).
 * - DUMP pages through a snapshot of the table's keys, sorted, taken when a requester sends cursor 0
 *   and kept per requester (a few at most, least recently used evicted). The cursor is an index into
 *   that sorted list; the reply's cursor is the next index or 0 when done. A cursor that arrives
 *   without its snapshot (evicted, or a retry of the last page) rebuilds it: positions are the same as
 *   long as no row was added in between.
 * - LZ4 on replies is tried only where it has paid recently: per (table, reply type), after 4 replies
 *   in a row that did not shrink by 1/16, the next 60 go out raw without an attempt (dense float rows
 *   never shrink, and trying costs about as much as sending them over loopback), then it probes again.
 * - Heartbeats never block serving: they are sent on a second socket to the coordinator from the
 *   same poll loop, and their replies are read when they come; a silent coordinator just means the
 *   next heartbeat goes out anyway. Registration (blocking, with the coordinator client's deadline)
 *   happens once, in psrec_server_new.
 *
 * - Who may connect is settled before any message, by the job's connection security (common/zsec.h);
 *   what one connected peer may make the server hold is bounded by ps/limits.h (frame and decoded sizes,
 *   queued requests, rows created per request and per table), each breach answered with an error.
 *
 * Thread model: psrec_server_run owns the sockets and the request state on its thread. stop is an
 * atomic flag checked at least every POLL_MS; counters are published under a mutex for
 * psrec_server_get_stats; the store is thread-safe (tests read it while the server runs). */
#include "ps/server.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/durable.h"
#include "common/grow.h"
#include "common/idmap.h"
#include "ps/manifest.h"
#include "ps/negatives.h"
#include "ps/pushlog.h"
#include "ps/snapshot.h"
#include "common/ratelog.h"
#include "worker/coord_client.h"

#define POLL_MS 50                   /* longest wait before the stop flag and heartbeats are looked at */
#define BURST 64                     /* requests served between two looks at them */
#define DUMP_PAGE 65536              /* rows per DUMP_OK at most */
#define MAX_DUMPS 4                  /* dump snapshots kept at once */
#define MAX_SENDERS (1u << 16)       /* senders with a duplicate-suppression window */
#define HWM 1000                     /* messages queued per peer */
#define MAX_NEG_SENDERS 4096         /* senders with a scored batch kept for NEG_APPLY */
#define NEG_MAX_DRAWS (1u << 20)     /* negatives one NEG_SCORE may ask of a server */
#define NEG_MAX_CELLS (1ull << 26)   /* B x negatives kept per sender (256 MiB of floats) */
#define NEG_KEEP_BYTES (64ull << 20) /* scratch of a sender's negatives kept between its batches */

typedef struct {
    uint64_t who; /* (role << 32) | rank */
    uint64_t epoch;
    uint64_t hi;     /* highest applied seq */
    uint64_t window; /* bit i: seq hi - 1 - i applied */
    int any;
} dedup_t;

/* A sender's scored batch of server-side negatives, kept until its NEG_APPLY (ps/negatives.h). */
typedef struct {
    uint64_t who, epoch;
    uint64_t seq; /* of the NEG_SCORE */
    uint32_t table;
    int live;
    uint64_t applied_seq; /* the last NEG_APPLY applied, and whether it had its batch (a retry's answer) */
    int applied_live;
    psrec_negpart_t *part;
} negslot_t;

/* A sender's window as saved in a snapshot (the blob after the rows). */
typedef struct {
    uint64_t who, epoch, hi, window, any;
} dedup_rec_t;

/* An acknowledgement held back until the push log's group commit. */
typedef struct {
    psrec_wire_route_t route;
    uint64_t seq, count;
    uint32_t type, table, dim;
    uint32_t negatives; /* NEG_APPLY_OK: whether the scored batch was applied */
} ack_t;

/* Adaptive LZ4: skip attempts on a stream of replies that recently did not compress. */
typedef struct {
    uint8_t fail, skip;
} gate_t;
#define GATE_FAILS 4
#define GATE_SKIP 60

static int gate_try(gate_t *g)
{
    if (g->skip) {
        g->skip--;
        return 0;
    }
    return 1;
}

static void gate_learn(gate_t *g, uint64_t raw, uint64_t wire)
{
    if (wire * 16 > raw * 15) {
        if (++g->fail >= GATE_FAILS) {
            g->fail = 0;
            g->skip = GATE_SKIP;
        }
    } else {
        g->fail = 0;
    }
}

typedef struct {
    int live;
    uint64_t who; /* (role << 32) | rank */
    uint32_t table;
    uint64_t *keys;
    size_t n, cap;
    uint64_t used; /* LRU tick */
    int oom;
} dump_t;

struct psrec_server {
    void *zctx, *sock;
    char endpoint[256];
    char addr[256]; /* advertised */
    uint64_t job_id;
    const psrec_zsec_t *sec;
    psrec_limits_t lim;
    psrec_limits_burst_t *burst;
    psrec_ratelog_t *rlog; /* refused messages (other jobs) */
    int compress, heartbeat_ms;
    uint32_t rank, n_servers;
    uint64_t epoch;
    uint64_t map_version;
    uint32_t nslots; /* 0: this server owns every slot */
    uint32_t *slot_server;
    psrec_store_t *store;
    uint64_t refused_seen[PSREC_STORE_MAX_TABLES]; /* new keys refused by full tables, as last logged */
    uint64_t publishes;
    atomic_int stop;

    psrec_idmap_t *senders; /* (role << 32 | rank) -> index into dd */
    dedup_t *dd;
    size_t ndd, capdd;
    psrec_idmap_t *negidx; /* (role << 32 | rank) -> index into negs */
    negslot_t *negs;
    size_t nnegs, capnegs;
    dump_t dumps[MAX_DUMPS];
    uint64_t tick;

    gate_t gates[PSREC_STORE_MAX_TABLES][2]; /* PULL_OK, DUMP_OK */
    float *out;                              /* pull/dump reply rows */
    size_t out_cap;

    psrec_server_stats_t st; /* serve thread's own */
    pthread_mutex_t mu;
    psrec_server_stats_t pub; /* published copy */

    /* coordinator */
    void *hb_sock;
    uint64_t hb_seq;
    struct timespec hb_next;

    /* fault tolerance */
    char *ckpt_dir;       /* from the coordinator; NULL: no checkpoints */
    psrec_pushlog_t *log; /* --durability log */
    ack_t *acks;          /* held until the log commits */
    size_t nacks, capacks;
    pid_t child;                    /* snapshot writer in flight (0: none) */
    double child_t0, child_fork_ms; /* when it was forked, and how long fork() held the serving thread */
    uint64_t child_round;           /* its round */
    uint64_t taken;                 /* newest round a snapshot was started for */
    uint64_t reported;              /* newest finished round, reported in heartbeats */
    uint64_t reported_bytes;
    psrec_err reported_err;
    uint64_t pruned;      /* log segments below this were deleted */
    psrec_err log_failed; /* the log lost a record: the server must stop (and be restarted) */
    /* the log's writer thread: lwork = a sealed batch to write, ldone = written (efd wakes the loop) */
    pthread_t lthread;
    int lstarted, lwork, ldone, lquit, efd;
    pthread_mutex_t lmu;
    pthread_cond_t lcv;
    ack_t *sacks; /* the acknowledgements of the batch being written */
    size_t nsacks, capsacks;
    int bye; /* the job is over: the last heartbeat says so (stop = 1) */

    /* STATS_OK / heartbeat scratch */
    Psrec__TableStats ts[PSREC_STORE_MAX_TABLES];
    Psrec__TableStats *tsp[PSREC_STORE_MAX_TABLES];
    Psrec__Member me;
    Psrec__Member *mep;
};

/* ---- table conf <-> wire ---- */

void psrec_table_conf_to_wire(uint32_t id, const psrec_table_conf_t *c, Psrec__TableConf *w)
{
    psrec__table_conf__init(w);
    w->table = id;
    w->dim = c->dim;
    w->opt = (uint32_t)c->opt.kind;
    w->lr = c->opt.lr;
    w->eps = c->opt.eps;
    w->init_acc = c->opt.init_acc;
    w->beta1 = c->opt.beta1;
    w->beta2 = c->opt.beta2;
    w->l2 = c->opt.l2;
    w->init = (uint32_t)c->init;
    w->init_scale = c->init_scale;
    w->max_rows = c->max_rows;
    w->dtype = (uint32_t)c->dtype;
    w->exact = c->exact != 0;
}

psrec_err psrec_table_conf_from_wire(const Psrec__TableConf *w, uint32_t *id, psrec_table_conf_t *c, char *err)
{
    if (w->table >= PSREC_STORE_MAX_TABLES) return psrec_fail(err, PSREC_EPROTO, "table id %u out of range", w->table);
    if (w->dim == 0 || w->dim > PSREC_WIRE_MAX_DIM)
        return psrec_fail(err, PSREC_EPROTO, "table %u: dim %u out of range", w->table, w->dim);
    if (w->opt > PSREC_OPT_ADAM)
        return psrec_fail(err, PSREC_EPROTO, "table %u: unknown optimizer %u", w->table, w->opt);
    if (w->init > PSREC_INIT_NORMAL)
        return psrec_fail(err, PSREC_EPROTO, "table %u: unknown init %u", w->table, w->init);
    if (w->dtype > PSREC_ROW_BF16)
        return psrec_fail(err, PSREC_EPROTO, "table %u: unknown row type %u", w->table, w->dtype);
    memset(c, 0, sizeof *c);
    *id = w->table;
    c->dim = w->dim;
    c->opt.kind = (psrec_opt_kind)w->opt;
    c->opt.lr = w->lr;
    c->opt.eps = w->eps;
    c->opt.init_acc = w->init_acc;
    c->opt.beta1 = w->beta1;
    c->opt.beta2 = w->beta2;
    c->opt.l2 = w->l2;
    c->init = (psrec_init_kind)w->init;
    c->init_scale = w->init_scale;
    c->max_rows = w->max_rows;
    c->exact = w->exact;
    c->dtype = (psrec_row_dtype)w->dtype;
    return PSREC_OK;
}

/* ---- setup ---- */

static psrec_err set_map(psrec_server_t *s, const Psrec__ShardMap *m, char *err)
{
    if (m->nslots == 0 || m->nslots > (1u << 24) || m->n_slot_server != m->nslots)
        return psrec_fail(err, PSREC_EINVAL, "shard map: %u slots, %zu entries", m->nslots, m->n_slot_server);
    uint32_t *ss = malloc(m->nslots * sizeof *ss);
    if (!ss) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    memcpy(ss, m->slot_server, m->nslots * sizeof *ss);
    free(s->slot_server);
    s->slot_server = ss;
    s->nslots = m->nslots;
    s->map_version = m->version;
    return PSREC_OK;
}

static psrec_err zfail(char *err, const char *what)
{
    return psrec_fail(err, PSREC_EIO, "%s: %s", what, zmq_strerror(zmq_errno()));
}

static psrec_err open_socket(psrec_server_t *s, const char *bind, char *err)
{
    s->sock = zmq_socket(s->zctx, ZMQ_ROUTER);
    if (!s->sock) return zfail(err, "zmq_socket");
    int zero = 0, hwm = HWM, rcvhwm = (int)s->lim.max_inflight; /* ps/limits.h */
    int64_t maxmsg =
        (int64_t)s->lim.max_msg_bytes > PSREC_WIRE_MAX_HEADER ? (int64_t)s->lim.max_msg_bytes : PSREC_WIRE_MAX_HEADER;
    if (zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_setsockopt(s->sock, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(s->sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm) ||
        zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg))
        return zfail(err, "zmq_setsockopt");
    psrec_err rc = psrec_zsec_bind(s->sec, s->sock, bind, err);
    if (rc) return rc;
    size_t len = sizeof s->endpoint;
    if (zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, s->endpoint, &len)) return zfail(err, "ZMQ_LAST_ENDPOINT");
    s->endpoint[sizeof s->endpoint - 1] = 0;
    return PSREC_OK;
}

/* The server's --max-rows and --at-max-rows on a table (not on an exact one: the tower's chunks). */
static void apply_row_limits(const psrec_server_t *s, psrec_table_conf_t *c)
{
    if (c->exact) return;
    if (!c->max_rows) c->max_rows = s->lim.max_rows;
    c->skip_new = !s->lim.max_rows_fail;
}

static psrec_err add_tables(psrec_server_t *s, int n, const uint32_t *ids, const psrec_table_conf_t *tc, char *err)
{
    for (int i = 0; i < n; i++) {
        psrec_table_conf_t c = tc[i];
        apply_row_limits(s, &c);
        psrec_err rc = psrec_store_add_table(s->store, ids[i], &c, err);
        if (rc) return rc;
    }
    return PSREC_OK;
}

/* ---- recovery (fault tolerance) ---- */

static int owned(uint32_t table, uint64_t key, void *ctx)
{
    const psrec_server_t *s = ctx;
    (void)table;
    return !s->nslots || s->slot_server[psrec_wire_slot(key, s->nslots)] == s->rank;
}

static psrec_err sender(psrec_server_t *s, const Psrec__Header *h, dedup_t **out, char *err);
static void *log_writer(void *p);
static int seen(const dedup_t *d, uint64_t seq);
static psrec_err apply_update(psrec_server_t *s, const Psrec__Header *h, dedup_t *d, int push, uint32_t dim,
                              const uint64_t *keys, size_t n, const float *vals, char *err);
static void mark(dedup_t *d, uint64_t seq);

static psrec_err load_windows(psrec_server_t *s, const void *blob, size_t len, char *err)
{
    if (len % sizeof(dedup_rec_t)) return psrec_fail(err, PSREC_ECORRUPT, "snapshot: bad duplicate windows");
    const dedup_rec_t *r = blob;
    for (size_t i = 0; i < len / sizeof *r; i++) {
        int found;
        uint64_t idx = psrec_idmap_get(s->senders, r[i].who, &found);
        if (!found) {
            if (s->ndd >= MAX_SENDERS) return psrec_fail(err, PSREC_EFULL, "too many senders");
            if (psrec_grow((void **)&s->dd, &s->capdd, s->ndd + 1, sizeof *s->dd) ||
                psrec_idmap_put(s->senders, r[i].who, s->ndd))
                return psrec_fail(err, PSREC_ENOMEM, "out of memory");
            idx = s->ndd++;
        }
        s->dd[idx] =
            (dedup_t){.who = r[i].who, .epoch = r[i].epoch, .hi = r[i].hi, .window = r[i].window, .any = (int)r[i].any};
    }
    return PSREC_OK;
}

/* A record of the push log applied again, through the same duplicate check as a live request. */
static psrec_err replay_one(const psrec_logrec_t *r, void *ctx, char *err)
{
    psrec_server_t *s = ctx;
    if (psrec_store_dim(s->store, r->table) != r->dim)
        return psrec_fail(err, PSREC_ECORRUPT, "push log: table %u with dim %u does not match the job", r->table,
                          r->dim);
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__PUSH);
    h.role = (Psrec__Role)r->role;
    h.rank = r->rank;
    h.epoch = r->epoch;
    dedup_t *d;
    psrec_err rc = sender(s, &h, &d, err);
    if (rc == PSREC_ESTALE) return PSREC_OK; /* fenced when it was live too */
    if (rc) return rc;
    if (seen(d, r->seq)) return PSREC_OK;
    rc = r->type == 1 ? psrec_store_push(s->store, r->table, r->keys, r->n, r->vals)
                      : psrec_store_set(s->store, r->table, r->keys, r->n, r->vals);
    if (rc) return psrec_fail(err, rc, "push log replay: %s", psrec_strerror(rc));
    mark(d, r->seq);
    s->st.replayed_records++;
    return PSREC_OK;
}

/* The newest push-log segment of this rank at or above from (from if there is none). */
static psrec_err newest_segment(const psrec_server_t *s, uint64_t from, uint64_t *seg, char *err)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "pushlog-%u-", s->rank);
    uint64_t *v = NULL;
    size_t n = 0;
    psrec_err rc = psrec_dir_numbers(s->ckpt_dir, prefix, ".log", &v, &n, err);
    *seg = n && v[n - 1] > from ? v[n - 1] : from; /* ascending */
    free(v);
    return rc == PSREC_ENOTFOUND ? PSREC_OK : rc;
}

static double mono_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* At registration: the newest complete round, then (a restart with --durability log) the push log. */
static psrec_err recover(psrec_server_t *s, const Psrec__Header *reg, char *err)
{
    if (!reg->checkpoint_dir || !reg->checkpoint_dir[0]) return PSREC_OK;
    if (!(s->ckpt_dir = strdup(reg->checkpoint_dir))) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    uint64_t round = reg->resume_round;
    psrec_err rc = PSREC_OK;
    double t0 = mono_sec();
    if (round) {
        psrec_manifest_t m;
        memset(&m, 0, sizeof m);
        if ((rc = psrec_manifest_read(s->ckpt_dir, round, &m, err))) return rc;
        char dir[4096], path[4200];
        psrec_manifest_round_dir(s->ckpt_dir, round, dir, sizeof dir);
        for (uint32_t i = 0; !rc && i < m.nfiles; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, m.files[i]);
            psrec_snapshot_meta_t meta;
            void *blob = NULL;
            size_t blen = 0;
            rc = psrec_snapshot_load(path, s->store, owned, s, &meta, &blob, &blen, err);
            /* the windows only mean something to the same rank under the same map */
            if (!rc && meta.rank == s->rank && m.n_servers == s->n_servers) rc = load_windows(s, blob, blen, err);
            free(blob);
        }
        psrec_manifest_free(&m);
        if (rc) return rc;
        for (uint32_t t = 0; t < PSREC_STORE_MAX_TABLES; t++)
            s->st.recovered_rows += psrec_store_rows(s->store, t);
    }
    s->taken = s->reported = s->pruned = round;
    if (reg->durability_log) {
        uint64_t seg = round;
        if (reg->replay_log) {
            rc = psrec_pushlog_replay(s->ckpt_dir, s->rank, round, replay_one, s, NULL, err);
            if (!rc) rc = newest_segment(s, round, &seg, err);
        } else {
            rc = psrec_pushlog_discard(s->ckpt_dir, s->rank, round, err); /* a new run from the round */
        }
        if (!rc) rc = psrec_pushlog_open(&s->log, s->ckpt_dir, s->rank, seg, err);
        if (rc) return rc;
        if ((s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
            return psrec_fail(err, PSREC_EIO, "eventfd: %s", strerror(errno));
        if (pthread_create(&s->lthread, NULL, log_writer, s) != 0)
            return psrec_fail(err, PSREC_ENOMEM, "cannot start the push log's writer thread");
        s->lstarted = 1;
    }
    if (round || reg->replay_log)
        fprintf(stderr,
                "psrec server %u: recovered %llu rows from checkpoint round %llu%s, replayed %llu log records "
                "(%.1f s)\n",
                s->rank, (unsigned long long)s->st.recovered_rows, (unsigned long long)round, round ? "" : " (none)",
                (unsigned long long)s->st.replayed_records, mono_sec() - t0);
    return PSREC_OK;
}

/* Registers with the coordinator: rank, epoch, seed, tables and the complete shard map. */
static psrec_err join(psrec_server_t *s, const psrec_server_conf_t *conf, char *err)
{
    psrec_coord_client_t *cc = NULL;
    Psrec__Header *reg = NULL;
    psrec_err rc = psrec_coord_client_new_sec(&cc, s->zctx, conf->coord, conf->job_id, 0, s->sec, err);
    if (!rc)
        rc = psrec_coord_client_register(cc, PSREC__ROLE__SERVER, s->addr,
                                         conf->rejoin ? conf->rejoin_rank : UINT32_MAX, &reg, err);
    psrec_coord_client_destroy(&cc);
    if (rc) return rc;
    s->rank = reg->rank;
    s->epoch = reg->epoch;
    s->n_servers = reg->n_servers;
    if (!reg->shard_map) rc = psrec_fail(err, PSREC_EPROTO, "the coordinator sent no shard map");
    if (!rc) rc = set_map(s, reg->shard_map, err);
    if (!rc)
        rc = psrec_store_new(&s->store, reg->seed, 16) ? psrec_fail(err, PSREC_ENOMEM, "cannot create the store")
                                                       : PSREC_OK;
    for (size_t i = 0; !rc && i < reg->n_tables; i++) {
        uint32_t id;
        psrec_table_conf_t tc;
        rc = psrec_table_conf_from_wire(reg->tables[i], &id, &tc, err);
        apply_row_limits(s, &tc);
        if (!rc) rc = psrec_store_add_table(s->store, id, &tc, err);
    }
    if (!rc) rc = recover(s, reg, err);
    psrec__header__free_unpacked(reg, NULL);
    if (rc) return rc;
    /* heartbeats: a socket of our own, used without blocking from the serve loop */
    s->hb_sock = zmq_socket(s->zctx, ZMQ_DEALER);
    if (!s->hb_sock) return zfail(err, "zmq_socket");
    int zero = 0, hwm = 16;
    if (zmq_setsockopt(s->hb_sock, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_setsockopt(s->hb_sock, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(s->hb_sock, ZMQ_SNDTIMEO, &zero, sizeof zero))
        return zfail(err, "zmq_setsockopt");
    return psrec_zsec_connect(s->sec, s->zctx, s->hb_sock, conf->coord, 0, err);
}

psrec_err psrec_server_new(psrec_server_t **out, void *zctx, const psrec_server_conf_t *conf, char *err)
{
    *out = NULL;
    if (!zctx || !conf || !conf->bind) return psrec_fail(err, PSREC_EINVAL, "server: no context or bind endpoint");
    if (!conf->coord && conf->ntables > 0 && (!conf->table_ids || !conf->tables))
        return psrec_fail(err, PSREC_EINVAL, "server: tables missing");
    psrec_server_t *s = calloc(1, sizeof *s);
    if (!s) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    s->zctx = zctx;
    s->job_id = conf->job_id;
    s->compress = conf->compress >= 0;
    s->heartbeat_ms = conf->heartbeat_ms > 0 ? conf->heartbeat_ms : 500;
    s->sec = conf->sec;
    s->lim = conf->limits;
    psrec_limits_resolve(&s->lim);
    atomic_init(&s->stop, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->lmu, NULL);
    pthread_cond_init(&s->lcv, NULL);
    s->efd = -1;
    psrec_err rc = psrec_idmap_new(&s->senders, 64);
    if (!rc) rc = psrec_idmap_new(&s->negidx, 64);
    if (!rc) rc = psrec_limits_burst_new(&s->burst, BURST, s->lim.max_inflight);
    if (!rc) rc = psrec_ratelog_new(&s->rlog, stderr, 10000);
    if (rc) rc = psrec_fail(err, rc, "out of memory");
    if (!rc) rc = open_socket(s, conf->bind, err);
    if (!rc) snprintf(s->addr, sizeof s->addr, "%s", conf->advertise ? conf->advertise : s->endpoint);
    if (!rc && conf->coord) {
        rc = join(s, conf, err);
    } else if (!rc) {
        s->rank = conf->rank;
        if (conf->shard_map) rc = set_map(s, conf->shard_map, err);
        if (!rc && psrec_store_new(&s->store, conf->seed, 16))
            rc = psrec_fail(err, PSREC_ENOMEM, "cannot create the store");
        if (!rc) rc = add_tables(s, conf->ntables, conf->table_ids, conf->tables, err);
    }
    if (rc) {
        psrec_server_destroy(&s);
        return rc;
    }
    *out = s;
    return PSREC_OK;
}

/* Stops a snapshot writer still in flight and removes its unfinished file (a durable file's temporary
 * name: "<path>.tmp.<pid>.<tid>", the child's only thread): a round cut short leaves no gigabytes behind. */
static void stop_writer(psrec_server_t *s)
{
    if (s->child <= 0) return;
    kill(s->child, SIGKILL);
    waitpid(s->child, NULL, 0);
    char dir[4096], tmp[4300];
    psrec_manifest_round_dir(s->ckpt_dir, s->child_round, dir, sizeof dir);
    snprintf(tmp, sizeof tmp, "%s/server-%u.snap.tmp.%ld.%ld", dir, s->rank, (long)s->child, (long)s->child);
    unlink(tmp);
    s->child = 0;
}

void psrec_server_destroy(psrec_server_t **ps)
{
    if (!ps || !*ps) return;
    psrec_server_t *s = *ps;
    if (s->sock) zmq_close(s->sock);
    if (s->hb_sock) { /* a little time for the last heartbeat ("heard the stop") to leave */
        int linger = 200;
        zmq_setsockopt(s->hb_sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(s->hb_sock);
    }
    stop_writer(s); /* a snapshot still being written when the job ended: nobody waits for it */
    if (s->lstarted) {
        pthread_mutex_lock(&s->lmu);
        s->lquit = 1;
        pthread_cond_broadcast(&s->lcv);
        pthread_mutex_unlock(&s->lmu);
        pthread_join(s->lthread, NULL);
    }
    if (s->efd >= 0) close(s->efd);
    pthread_mutex_destroy(&s->lmu);
    pthread_cond_destroy(&s->lcv);
    free(s->sacks);
    psrec_pushlog_close(&s->log);
    free(s->acks);
    free(s->ckpt_dir);
    psrec_store_destroy(&s->store);
    psrec_idmap_destroy(&s->senders);
    psrec_limits_burst_destroy(&s->burst);
    psrec_ratelog_destroy(&s->rlog);
    for (int i = 0; i < MAX_DUMPS; i++)
        free(s->dumps[i].keys);
    free(s->dd);
    for (size_t i = 0; i < s->nnegs; i++)
        psrec_negpart_destroy(&s->negs[i].part);
    free(s->negs);
    psrec_idmap_destroy(&s->negidx);
    free(s->slot_server);
    free(s->out);
    pthread_mutex_destroy(&s->mu);
    free(s);
    *ps = NULL;
}

const char *psrec_server_endpoint(const psrec_server_t *s)
{
    return s->endpoint;
}

uint32_t psrec_server_rank(const psrec_server_t *s)
{
    return s->rank;
}

void psrec_server_stop(psrec_server_t *s)
{
    atomic_store(&s->stop, 1);
}

void psrec_server_get_stats(const psrec_server_t *s, psrec_server_stats_t *st)
{
    pthread_mutex_lock((pthread_mutex_t *)&s->mu);
    *st = s->pub;
    pthread_mutex_unlock((pthread_mutex_t *)&s->mu);
}

psrec_store_t *psrec_server_store(psrec_server_t *s)
{
    return s->store;
}

static void publish(psrec_server_t *s)
{
    /* a full table says so, at most every 10 s (looked at every 256th publish: they follow every burst) */
    int look = (++s->publishes & 255) == 0;
    for (uint32_t t = 0; look && t < PSREC_STORE_MAX_TABLES; t++) {
        uint64_t r = psrec_store_refused(s->store, t);
        if (r == s->refused_seen[t]) continue;
        s->refused_seen[t] = r;
        char key[32];
        snprintf(key, sizeof key, "full %u", t);
        psrec_ratelog(s->rlog, key,
                      "server %u: table %u is full (%llu rows): %llu refusals of new keys so far (their pulls get "
                      "the initial values, their updates are dropped; --max-rows, --at-max-rows)",
                      s->rank, t, (unsigned long long)psrec_store_rows(s->store, t), (unsigned long long)r);
    }
    pthread_mutex_lock(&s->mu);
    s->pub = s->st;
    pthread_mutex_unlock(&s->mu);
}

/* ---- request checks ---- */

/* Table exists and dim matches; returns the table's dim through *dim. */
static psrec_err check_table(psrec_server_t *s, const Psrec__Header *h, uint32_t *dim, char *err)
{
    uint32_t d = h->table < PSREC_STORE_MAX_TABLES ? psrec_store_dim(s->store, h->table) : 0;
    if (!d) return psrec_fail(err, PSREC_ENOTFOUND, "no table %u on server %u", h->table, s->rank);
    if (h->dim != d) return psrec_fail(err, PSREC_EPROTO, "table %u has dim %u, request says %u", h->table, d, h->dim);
    *dim = d;
    return PSREC_OK;
}

/* count within limits, rows of count x dim floats fit one frame, bulk frames as declared. */
static psrec_err check_sizes(const psrec_wire_msg_t *m, uint32_t dim, int nbulk, char *err)
{
    uint64_t n = m->hdr->count;
    if (n > PSREC_WIRE_MAX_KEYS)
        return psrec_fail(err, PSREC_EMSGSIZE, "%llu keys (limit %u)", (unsigned long long)n, PSREC_WIRE_MAX_KEYS);
    if (n * dim * sizeof(float) > PSREC_WIRE_MAX_FRAME_BYTES)
        return psrec_fail(err, PSREC_EMSGSIZE, "%llu rows of dim %u exceed one frame", (unsigned long long)n, dim);
    size_t bytes[2] = {(size_t)n * sizeof(uint64_t), (size_t)n * dim * sizeof(float)};
    return psrec_wire_check_bulk(m, nbulk, bytes, err);
}

static psrec_err check_owner(const psrec_server_t *s, const uint64_t *keys, size_t n, char *err)
{
    if (!s->nslots) return PSREC_OK;
    for (size_t i = 0; i < n; i++) {
        uint32_t slot = psrec_wire_slot(keys[i], s->nslots);
        if (s->slot_server[slot] != s->rank)
            return psrec_fail(
                err, PSREC_ESTALE, "key %llu (slot %u) belongs to server %u, not %u (shard map version %llu)",
                (unsigned long long)keys[i], slot, s->slot_server[slot], s->rank, (unsigned long long)s->map_version);
    }
    return PSREC_OK;
}

/* ---- duplicate suppression ---- */

static int seen(const dedup_t *d, uint64_t seq)
{
    if (!d->any || seq > d->hi) return 0;
    uint64_t back = d->hi - seq;
    if (back == 0 || back > 64) return 1;
    return (int)((d->window >> (back - 1)) & 1);
}

static void mark(dedup_t *d, uint64_t seq)
{
    if (!d->any) {
        d->any = 1;
        d->hi = seq;
        d->window = 0;
    } else if (seq > d->hi) {
        uint64_t shift = seq - d->hi;
        d->window = shift > 64 ? 0 : shift == 64 ? 1ull << 63 : (d->window << shift) | (1ull << (shift - 1));
        d->hi = seq;
    } else if (seq < d->hi && d->hi - seq <= 64) {
        d->window |= 1ull << (d->hi - seq - 1);
    }
}

/* The sender's window (created on first use); ESTALE for an epoch older than one already seen. */
static psrec_err sender(psrec_server_t *s, const Psrec__Header *h, dedup_t **out, char *err)
{
    uint64_t who = ((uint64_t)h->role << 32) | h->rank;
    int found;
    uint64_t idx = psrec_idmap_get(s->senders, who, &found);
    if (!found) {
        if (s->ndd >= MAX_SENDERS) return psrec_fail(err, PSREC_EFULL, "too many senders (%u)", MAX_SENDERS);
        if (psrec_grow((void **)&s->dd, &s->capdd, s->ndd + 1, sizeof *s->dd) ||
            psrec_idmap_put(s->senders, who, s->ndd))
            return psrec_fail(err, PSREC_ENOMEM, "out of memory");
        idx = s->ndd++;
        memset(&s->dd[idx], 0, sizeof s->dd[idx]);
        s->dd[idx].epoch = h->epoch;
        s->dd[idx].who = who;
    }
    dedup_t *d = &s->dd[idx];
    if (h->epoch < d->epoch)
        return psrec_fail(err, PSREC_ESTALE, "sender rank %u: epoch %llu is older than %llu", h->rank,
                          (unsigned long long)h->epoch, (unsigned long long)d->epoch);
    if (h->epoch > d->epoch) {
        memset(d, 0, sizeof *d);
        d->epoch = h->epoch;
        d->who = who;
    }
    *out = d;
    return PSREC_OK;
}

/* ---- handlers: fill the reply or return an error code with text ---- */

typedef struct {
    Psrec__Header h;
    psrec_wire_bulk_t bulk[2];
    int nbulk;
} reply_t;

static psrec_err on_pull(psrec_server_t *s, const psrec_wire_msg_t *m, reply_t *r, char *err)
{
    uint32_t dim;
    psrec_err rc = check_table(s, m->hdr, &dim, err);
    if (!rc) rc = check_sizes(m, dim, 1, err);
    size_t n = (size_t)m->hdr->count;
    const uint64_t *keys = m->bulk[0];
    if (!rc) rc = check_owner(s, keys, n, err);
    if (!rc) rc = psrec_limits_check_new_rows(&s->lim, s->store, m->hdr->table, keys, n, err);
    if (rc) return rc;
    /* a touch creates the rows and sends none back: the whole pull runs in chunks through one small buffer */
    size_t chunk = m->hdr->touch ? (n < 4096 ? n : 4096) : n;
    if (psrec_grow((void **)&s->out, &s->out_cap, chunk * dim + 1, sizeof(float)))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory for %zu rows", n);
    for (size_t i = 0; i < n; i += chunk)
        if ((rc = psrec_store_pull(s->store, m->hdr->table, keys + i, n - i < chunk ? n - i : chunk, s->out)))
            return psrec_fail(err, rc, "pull of %zu rows: %s", n, psrec_strerror(rc));
    r->h.count = n;
    r->h.dim = dim;
    if (m->hdr->touch) {
        s->st.rows_touched += n;
        return PSREC_OK;
    }
    s->st.rows_pulled += n;
    r->bulk[0] = (psrec_wire_bulk_t){s->out, n * dim * sizeof(float)};
    r->nbulk = 1;
    return PSREC_OK;
}

static psrec_err on_update(psrec_server_t *s, const psrec_wire_msg_t *m, reply_t *r, char *err)
{
    const Psrec__Header *h = m->hdr;
    uint32_t dim;
    dedup_t *d = NULL;
    psrec_err rc = check_table(s, h, &dim, err);
    if (!rc) rc = check_sizes(m, dim, 2, err);
    size_t n = (size_t)h->count;
    const uint64_t *keys = m->bulk[0];
    if (!rc) rc = check_owner(s, keys, n, err);
    if (!rc) rc = psrec_limits_check_new_rows(&s->lim, s->store, h->table, keys, n, err);
    if (!rc) rc = sender(s, h, &d, err);
    if (rc) return rc;
    r->h.count = n;
    r->h.dim = dim;
    if (seen(d, h->seq)) {
        s->st.duplicates++;
        return PSREC_OK;
    }
    int push = h->type == PSREC__TYPE__PUSH;
    if ((rc = apply_update(s, h, d, push, dim, keys, n, m->bulk[1], err))) return rc;
    if (push)
        s->st.rows_pushed += n;
    else
        s->st.rows_set += n;
    return PSREC_OK;
}

/* ---- server-side negatives ---- */

/* The sender's scored-batch slot (created on first use; reset when the sender's epoch moves on). */
static psrec_err neg_slot(psrec_server_t *s, const Psrec__Header *h, negslot_t **out, char *err)
{
    uint64_t who = ((uint64_t)h->role << 32) | h->rank;
    int found;
    uint64_t idx = psrec_idmap_get(s->negidx, who, &found);
    if (!found) {
        if (s->nnegs >= MAX_NEG_SENDERS)
            return psrec_fail(err, PSREC_EFULL, "too many senders of negatives (%u)", MAX_NEG_SENDERS);
        if (psrec_grow((void **)&s->negs, &s->capnegs, s->nnegs + 1, sizeof *s->negs) ||
            psrec_idmap_put(s->negidx, who, s->nnegs))
            return psrec_fail(err, PSREC_ENOMEM, "out of memory");
        idx = s->nnegs++;
        s->negs[idx] = (negslot_t){.who = who, .epoch = h->epoch};
    }
    negslot_t *n = &s->negs[idx];
    if (h->epoch > n->epoch) {
        n->epoch = h->epoch;
        n->live = 0;
    }
    if (!n->part && psrec_negpart_new(&n->part)) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    *out = n;
    return PSREC_OK;
}

/* NEG_SCORE: draw this server's share of the negatives from its rows and score them (ps/negatives.h). */
static psrec_err on_neg_score(psrec_server_t *s, const psrec_wire_msg_t *m, reply_t *r, char *err)
{
    const Psrec__Header *h = m->hdr;
    uint32_t dim;
    dedup_t *d = NULL;
    negslot_t *ns = NULL;
    psrec_err rc = check_table(s, h, &dim, err);
    if (rc) return rc;
    uint64_t B = h->count, S = h->negatives, P = h->n_pos, M = h->neg_pool;
    /* the negatives' rows (S or M of them) and their gradient must fit what a PUSH may carry: a NEG_APPLY
     * is logged as one */
    if (B < 1 || B > PSREC_WIRE_MAX_KEYS || P > PSREC_WIRE_MAX_KEYS || S > NEG_MAX_DRAWS || B * S > NEG_MAX_CELLS ||
        M > NEG_MAX_DRAWS || B * M > NEG_MAX_CELLS || B * dim * sizeof(float) > PSREC_WIRE_MAX_FRAME_BYTES ||
        S * (sizeof(uint64_t) + dim * sizeof(float)) > PSREC_WIRE_MAX_FRAME_BYTES ||
        M * dim * sizeof(float) > PSREC_WIRE_MAX_FRAME_BYTES)
        return psrec_fail(err, PSREC_EMSGSIZE,
                          "NEG_SCORE of %llu rows x %llu negatives (pool %llu, %llu positives) is too big",
                          (unsigned long long)B, (unsigned long long)S, (unsigned long long)M, (unsigned long long)P);
    if (M > 0 && !(h->temperature > 0 && isfinite(h->temperature)))
        return psrec_fail(err, PSREC_EINVAL, "NEG_SCORE: hard negatives at temperature %g", (double)h->temperature);
    size_t bytes[3] = {(size_t)B * dim * sizeof(float), ((size_t)B + 1) * sizeof(uint32_t),
                       (size_t)P * sizeof(uint64_t)};
    if ((rc = psrec_wire_check_bulk(m, 3, bytes, err))) return rc;
    const uint32_t *pos_off = m->bulk[1];
    if (pos_off[B] != P)
        return psrec_fail(err, PSREC_EPROTO, "NEG_SCORE: offsets end at %u, %llu positives sent", pos_off[B],
                          (unsigned long long)P);
    if ((rc = sender(s, h, &d, err)) || (rc = neg_slot(s, h, &ns, err))) return rc;
    if (psrec_grow((void **)&s->out, &s->out_cap, (size_t)B * (dim + 1), sizeof(float)))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory for %llu rows", (unsigned long long)B);
    psrec_negbatch_t nb = {.B = (int)B, .d = (int)dim, .U = m->bulk[0], .pos_off = pos_off, .pos_key = m->bulk[2]};
    psrec_rng_t rng;
    psrec_rng_seed(&rng, h->seed, s->rank); /* the worker's seed, this shard's stream: reproducible */
    float logE = 0, *lse = s->out, *ybar = s->out + B;
    ns->live = 0;
    psrec_negdraw_t dr = {.S = (int)S, .pool = (int)M, .temperature = h->temperature};
    if ((rc = psrec_negpart_draw_score(ns->part, s->store, h->table, &rng, &nb, &dr, lse, ybar, &logE, err))) return rc;
    *ns = (negslot_t){.who = ns->who, .epoch = h->epoch, .seq = h->seq, .table = h->table, .live = 1, .part = ns->part};
    uint64_t drawn = psrec_store_rows(s->store, h->table) ? S : 0;
    s->st.neg_scored += drawn;
    r->h.count = B;
    r->h.dim = dim;
    r->h.negatives = (uint32_t)drawn;
    r->h.neg_log_expected = logE;
    r->bulk[0] = (psrec_wire_bulk_t){lse, (size_t)B * sizeof(float)};
    r->bulk[1] = (psrec_wire_bulk_t){ybar, (size_t)B * dim * sizeof(float)};
    r->nbulk = 2;
    return PSREC_OK;
}

/* Applies an update that passed every check, logs it (--durability log) and marks its seq: what a
 * PUSH, a SET and a NEG_APPLY share. */
static psrec_err apply_update(psrec_server_t *s, const Psrec__Header *h, dedup_t *d, int push, uint32_t dim,
                              const uint64_t *keys, size_t n, const float *vals, char *err)
{
    psrec_err rc =
        push ? psrec_store_push(s->store, h->table, keys, n, vals) : psrec_store_set(s->store, h->table, keys, n, vals);
    if (rc) return psrec_fail(err, rc, "%s of %zu rows: %s", push ? "push" : "set", n, psrec_strerror(rc));
    if (s->log) {
        psrec_logrec_t lr = {.type = push ? 1 : 2,
                             .table = h->table,
                             .dim = dim,
                             .role = (uint32_t)h->role,
                             .rank = h->rank,
                             .epoch = h->epoch,
                             .seq = h->seq,
                             .n = n,
                             .keys = keys,
                             .vals = vals};
        /* applied but not logged: acknowledging it, or a retry of it, would lose it at a restart */
        if ((rc = psrec_pushlog_append(s->log, &lr, err))) s->log_failed = rc;
        if (rc) return rc;
    }
    mark(d, h->seq);
    return PSREC_OK;
}

/* NEG_APPLY: the worker's row weights for the batch this sender scored last, and its own gradient rows
 * of this table on this server (push_rows keys: positives, gravity rows). The negatives' gradients are
 * summed with them per key and pushed through the optimizer as one PUSH (and logged as one): a key that
 * is a positive of one row and a negative of another gets one update, as with worker-side negatives.
 * Without the scored batch (a restarted server, a newer batch) only the worker's rows are applied and the
 * reply says `negatives = 0`. */
static psrec_err on_neg_apply(psrec_server_t *s, const psrec_wire_msg_t *m, reply_t *r, char *err)
{
    const Psrec__Header *h = m->hdr;
    uint32_t dim;
    dedup_t *d = NULL;
    negslot_t *ns = NULL;
    psrec_err rc = check_table(s, h, &dim, err);
    if (rc) return rc;
    uint64_t B = h->count, R = h->push_rows;
    if (B < 1 || B > PSREC_WIRE_MAX_KEYS || R > PSREC_WIRE_MAX_KEYS ||
        R * dim * sizeof(float) > PSREC_WIRE_MAX_FRAME_BYTES)
        return psrec_fail(err, PSREC_EMSGSIZE, "NEG_APPLY of %llu rows with %llu gradient rows", (unsigned long long)B,
                          (unsigned long long)R);
    size_t bytes[3] = {(size_t)B * sizeof(float), (size_t)R * sizeof(uint64_t), (size_t)R * dim * sizeof(float)};
    if ((rc = psrec_wire_check_bulk(m, 3, bytes, err))) return rc;
    const uint64_t *rkeys = m->bulk[1];
    const float *rgrads = m->bulk[2];
    if ((rc = check_owner(s, rkeys, R, err))) return rc;
    if ((rc = psrec_limits_check_new_rows(&s->lim, s->store, h->table, rkeys, R, err))) return rc;
    if ((rc = sender(s, h, &d, err)) || (rc = neg_slot(s, h, &ns, err))) return rc;
    r->h.dim = dim;
    if (seen(d, h->seq)) { /* a retry: answered as the first time was (applied before a restart: yes) */
        s->st.duplicates++;
        r->h.negatives = ns->applied_seq == h->seq ? (uint32_t)ns->applied_live : 1;
        return PSREC_OK;
    }
    int Bp, pd;
    psrec_negpart_shape(ns->part, &Bp, &pd);
    int live = ns->live && ns->seq == h->score_seq && ns->table == h->table;
    if (live && (uint64_t)Bp != B)
        return psrec_fail(err, PSREC_EPROTO, "NEG_APPLY: %llu weights for a scored batch of %d rows",
                          (unsigned long long)B, Bp);
    const uint64_t *keys = rkeys;
    const float *grads = rgrads;
    size_t n = R;
    if (live) {
        if ((rc = psrec_negpart_gradients(ns->part, m->bulk[0], rkeys, rgrads, R, &keys, &grads, &n, err))) return rc;
        ns->live = 0;
    }
    if ((rc = apply_update(s, h, d, 1, dim, keys, n, grads, err))) return rc;
    ns->applied_seq = h->seq;
    ns->applied_live = live;
    /* a peer's unusually big batch does not stay allocated until its next one */
    if (psrec_negpart_bytes(ns->part) > NEG_KEEP_BYTES) psrec_negpart_destroy(&ns->part);
    if (live) s->st.neg_applied += n;
    s->st.rows_pushed += n;
    r->h.count = n;
    r->h.negatives = (uint32_t)live;
    return PSREC_OK;
}

static void collect(uint64_t key, const float *w, uint32_t dim, void *ctx)
{
    dump_t *d = ctx;
    if (d->oom) return;
    if (psrec_grow((void **)&d->keys, &d->cap, d->n + 1, sizeof *d->keys)) {
        d->oom = 1;
        return;
    }
    d->keys[d->n++] = key;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static psrec_err on_dump(psrec_server_t *s, const psrec_wire_msg_t *m, reply_t *r, char *err)
{
    const Psrec__Header *h = m->hdr;
    uint32_t dim;
    psrec_err rc = check_table(s, h, &dim, err);
    if (!rc) rc = psrec_wire_check_bulk(m, 0, NULL, err);
    if (rc) return rc;
    uint64_t who = ((uint64_t)h->role << 32) | h->rank;
    dump_t *d = NULL, *lru = &s->dumps[0];
    for (int i = 0; i < MAX_DUMPS; i++) {
        dump_t *x = &s->dumps[i];
        if (x->live && x->who == who && x->table == h->table) d = x;
        if (!x->live || (lru->live && x->used < lru->used)) lru = x;
    }
    if (!d || h->cursor == 0) {
        if (!d) d = lru;
        d->live = 1;
        d->who = who;
        d->table = h->table;
        d->n = 0;
        d->oom = psrec_grow((void **)&d->keys, &d->cap, 1, sizeof *d->keys); /* never NULL, even when empty */
        if (!d->oom) psrec_store_foreach(s->store, h->table, collect, d);
        if (d->oom) {
            d->live = 0;
            return psrec_fail(err, PSREC_ENOMEM, "out of memory listing table %u", h->table);
        }
        qsort(d->keys, d->n, sizeof *d->keys, cmp_u64);
    }
    d->used = ++s->tick;
    if (h->cursor > d->n)
        return psrec_fail(err, PSREC_EPROTO, "dump cursor %llu beyond the %zu rows of table %u",
                          (unsigned long long)h->cursor, d->n, h->table);
    size_t page = PSREC_WIRE_MAX_FRAME_BYTES / ((size_t)dim * sizeof(float));
    if (page > DUMP_PAGE) page = DUMP_PAGE;
    size_t from = (size_t)h->cursor, n = d->n - from < page ? d->n - from : page;
    if (psrec_grow((void **)&s->out, &s->out_cap, n * dim + 1, sizeof(float)))
        return psrec_fail(err, PSREC_ENOMEM, "out of memory for %zu rows", n);
    if ((rc = psrec_store_pull(s->store, h->table, d->keys + from, n, s->out)))
        return psrec_fail(err, rc, "dump of table %u: %s", h->table, psrec_strerror(rc));
    r->h.count = n;
    r->h.dim = dim;
    r->h.cursor = from + n == d->n ? 0 : from + n;
    r->bulk[0] = (psrec_wire_bulk_t){d->keys + from, n * sizeof(uint64_t)};
    r->bulk[1] = (psrec_wire_bulk_t){s->out, n * dim * sizeof(float)};
    r->nbulk = 2;
    /* the keys stay alive until the reply is sent; the snapshot of a finished dump is dropped after */
    return PSREC_OK;
}

/* ---- checkpoints ---- */

/* Commits the push log, then sends the acknowledgements it held. A failed commit stops the server. */
static psrec_err flush_acks(psrec_server_t *s, char *fatal);
static psrec_err take_snapshot(psrec_server_t *s, uint64_t round, char *err);

static psrec_err on_checkpoint(psrec_server_t *s, const psrec_wire_msg_t *m, char *err)
{
    const Psrec__Header *h = m->hdr;
    psrec_err rc = psrec_wire_check_bulk(m, 0, NULL, err);
    if (rc) return rc;
    if (!s->ckpt_dir)
        return psrec_fail(err, PSREC_EINVAL, "server %u has no checkpoint directory (coordinator without one)",
                          s->rank);
    uint64_t round = h->checkpoint_round;
    if (round == 0) return psrec_fail(err, PSREC_EINVAL, "CHECKPOINT without a round");
    if (round == s->taken) { /* a retry: the snapshot is on its way, or failed */
        if (s->reported == round && s->reported_err)
            return psrec_fail(err, s->reported_err, "the snapshot of round %llu failed", (unsigned long long)round);
        return PSREC_OK;
    }
    if (round < s->taken)
        return psrec_fail(err, PSREC_ESTALE, "CHECKPOINT round %llu, round %llu was taken already",
                          (unsigned long long)round, (unsigned long long)s->taken);
    /* from here on a failure is the round's, not the request's: the coordinator hears it in the next
     * heartbeat and abandons the round, and training goes on */
    if ((rc = take_snapshot(s, round, err))) {
        if (s->log_failed) return rc; /* the log itself failed: the server stops */
        fprintf(stderr, "psrec server %u: checkpoint round %llu: %s\n", s->rank, (unsigned long long)round, err);
        s->taken = s->reported = round;
        s->reported_bytes = 0;
        s->reported_err = rc;
        clock_gettime(CLOCK_MONOTONIC, &s->hb_next);
    }
    return rc;
}

/* Rotates the push log and fork()s the child that writes round's snapshot. */
static psrec_err take_snapshot(psrec_server_t *s, uint64_t round, char *err)
{
    psrec_err rc;
    stop_writer(s); /* an abandoned round's writer: the new round supersedes it */
    /* updates applied so far belong to the old segment and to the snapshot; the new segment starts here */
    if ((rc = flush_acks(s, err))) return rc;
    if (s->log && (rc = psrec_pushlog_rotate(s->log, round, err))) {
        s->log_failed = rc;
        return rc;
    }
    char dir[4096], path[4200];
    psrec_manifest_round_dir(s->ckpt_dir, round, dir, sizeof dir);
    if ((rc = psrec_mkdirs(dir, err))) return rc;
    snprintf(path, sizeof path, "%s/server-%u.snap", dir, s->rank);
    dedup_rec_t *blob = malloc((s->ndd ? s->ndd : 1) * sizeof *blob);
    if (!blob) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->ndd; i++)
        blob[i] = (dedup_rec_t){.who = s->dd[i].who,
                                .epoch = s->dd[i].epoch,
                                .hi = s->dd[i].hi,
                                .window = s->dd[i].window,
                                .any = (uint64_t)s->dd[i].any};
    double t0 = mono_sec();
    pid_t pid = fork();
    if (pid > 0) s->child_fork_ms = (mono_sec() - t0) * 1e3; /* serving stood still this long */
    if (pid < 0) {
        free(blob);
        return psrec_fail(err, PSREC_EIO, "fork for the snapshot: %s", strerror(errno));
    }
    if (pid == 0) { /* child: write and leave; no ZeroMQ, no locks the parent could hold (one serving thread) */
        char e[PSREC_ERRBUF];
        psrec_snapshot_meta_t meta = {
            .job_id = s->job_id, .round = round, .seed = 0, .rank = s->rank, .n_servers = s->n_servers};
        psrec_err wrc = psrec_snapshot_write(path, s->store, &meta, blob, s->ndd * sizeof *blob, NULL, e);
        if (wrc)
            fprintf(stderr, "psrec server %u: snapshot of round %llu: %s\n", s->rank, (unsigned long long)round, e);
        _exit(wrc ? 1 : 0);
    }
    free(blob);
    s->child = pid;
    s->child_t0 = t0;
    s->child_round = round;
    s->taken = round;
    s->st.checkpoints++;
    return PSREC_OK;
}

/* A finished snapshot writer: its result goes into the next heartbeat, which is sent at once. */
static void reap(psrec_server_t *s)
{
    int status;
    if (s->child <= 0 || waitpid(s->child, &status, WNOHANG) != s->child) return;
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    char path[4200], dir[4096];
    psrec_manifest_round_dir(s->ckpt_dir, s->child_round, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/server-%u.snap", dir, s->rank);
    struct stat sb;
    if (ok && stat(path, &sb) != 0) ok = 0;
    s->reported = s->child_round;
    s->reported_bytes = ok ? (uint64_t)sb.st_size : 0;
    if (ok)
        fprintf(stderr,
                "psrec server %u: snapshot of round %llu: %.1f MB written in %.1f s while serving (the fork paused "
                "serving %.1f ms)\n",
                s->rank, (unsigned long long)s->child_round, sb.st_size / 1e6, mono_sec() - s->child_t0,
                s->child_fork_ms);
    s->reported_err = ok ? PSREC_OK : PSREC_EIO;
    s->child = 0;
    clock_gettime(CLOCK_MONOTONIC, &s->hb_next);
}

/* Fills s->ts/tsp/me with the current table sizes and counters; returns the number of tables. */
static size_t fill_stats(psrec_server_t *s)
{
    size_t nt = 0;
    for (uint32_t t = 0; t < PSREC_STORE_MAX_TABLES; t++) {
        if (!psrec_store_dim(s->store, t)) continue;
        Psrec__TableStats *x = &s->ts[nt];
        psrec__table_stats__init(x);
        x->table = t;
        x->rows = psrec_store_rows(s->store, t);
        x->bytes_per_row = psrec_store_bytes_per_row(s->store, t);
        s->tsp[nt++] = x;
    }
    psrec__member__init(&s->me);
    s->me.role = PSREC__ROLE__SERVER;
    s->me.rank = s->rank;
    s->me.addr = s->addr;
    s->me.epoch = s->epoch;
    s->me.alive = 1;
    s->me.n_tables = nt;
    s->me.tables = s->tsp;
    s->me.pulls = s->st.rows_pulled;
    s->me.pushes = s->st.rows_pushed;
    s->mep = &s->me;
    return nt;
}

static psrec_err on_stats(psrec_server_t *s, const psrec_wire_msg_t *m, reply_t *r, char *err)
{
    psrec_err rc = psrec_wire_check_bulk(m, 0, NULL, err);
    if (rc) return rc;
    size_t nt = fill_stats(s);
    r->h.n_table_stats = nt;
    r->h.table_stats = s->tsp;
    r->h.n_members = 1;
    r->h.members = &s->mep;
    r->h.addr = s->addr;
    return PSREC_OK;
}

/* ---- dispatch ---- */

/* Only PSREC_EIO (socket or context gone) is returned: ROUTER drops what it cannot route. */
static psrec_err send_reply(psrec_server_t *s, const psrec_wire_route_t *route, Psrec__Header *h,
                            const psrec_wire_bulk_t *bulk, int nbulk, char *fatal)
{
    publish(s);
    char err[PSREC_ERRBUF];
    gate_t *g = NULL;
    if (s->compress && nbulk > 0 && h->table < PSREC_STORE_MAX_TABLES)
        g = &s->gates[h->table][h->type == PSREC__TYPE__DUMP_OK];
    int compress = g ? gate_try(g) : 0;
    uint64_t raw0 = s->st.sent.raw_bytes, wire0 = s->st.sent.wire_bytes;
    psrec_err rc = psrec_wire_send(s->sock, route, h, bulk, nbulk, compress, &s->st.sent, err);
    if (rc == PSREC_EIO) return psrec_fail(fatal, rc, "reply: %s", err);
    if (!rc && compress) gate_learn(g, s->st.sent.raw_bytes - raw0, s->st.sent.wire_bytes - wire0);
    return PSREC_OK;
}

/* A reply's header: this server's identity, and the request's seq and table echoed. */
static void reply_header(const psrec_server_t *s, Psrec__Header *h, Psrec__Type type, uint64_t seq, uint32_t table)
{
    psrec_wire_header_init(h, type);
    h->role = PSREC__ROLE__SERVER;
    h->rank = s->rank;
    h->epoch = s->epoch;
    h->seq = seq;
    h->table = table;
    h->job_id = s->job_id;
    h->map_version = s->map_version;
}

static psrec_err send_error(psrec_server_t *s, const psrec_wire_route_t *route, const Psrec__Header *req,
                            psrec_err code, const char *text, char *fatal)
{
    Psrec__Header h;
    reply_header(s, &h, PSREC__TYPE__ERROR, req ? req->seq : 0, req ? req->table : 0);
    h.job_id = req ? req->job_id : 0; /* the sender's job: a refusal of another job's message reaches it */
    h.error_code = (uint32_t)code;
    h.error_text = (char *)(text && *text ? text : psrec_strerror(code));
    s->st.errors++;
    return send_reply(s, route, &h, NULL, 0, fatal);
}

static psrec_err send_acks(psrec_server_t *s, const ack_t *acks, size_t n, char *fatal)
{
    psrec_err rc = PSREC_OK;
    for (size_t i = 0; !rc && i < n; i++) {
        const ack_t *a = &acks[i];
        Psrec__Header h;
        reply_header(s, &h, (Psrec__Type)a->type, a->seq, a->table);
        h.count = a->count;
        h.dim = a->dim;
        h.negatives = a->negatives;
        rc = send_reply(s, &a->route, &h, NULL, 0, fatal);
    }
    return rc;
}

/* The push log's writer thread: writes and syncs the sealed batch it is handed, then wakes the serving
 * loop through the eventfd, which sends the batch's acknowledgements. */
static void *log_writer(void *p)
{
    psrec_server_t *s = p;
    pthread_mutex_lock(&s->lmu);
    for (;;) {
        while (!s->lwork && !s->lquit)
            pthread_cond_wait(&s->lcv, &s->lmu);
        if (!s->lwork) break;
        pthread_mutex_unlock(&s->lmu);
        psrec_pushlog_write_sealed(s->log);
        pthread_mutex_lock(&s->lmu);
        s->lwork = 0;
        s->ldone = 1;
        pthread_cond_broadcast(&s->lcv);
        uint64_t one = 1;
        ssize_t w = write(s->efd, &one, sizeof one);
        (void)w; /* the counter only wakes the poll; a full counter wakes it too */
    }
    pthread_mutex_unlock(&s->lmu);
    return NULL;
}

/* Group commit without stalling the loop: the batch being written is finished (its acknowledgements
 * sent) when the writer is done, and the acknowledgements held since then become the next batch. With
 * wait, returns only once everything appended so far is committed and acknowledged. A failed write or
 * sync stops the server (log_failed): nothing unlogged is ever acknowledged. */
static psrec_err log_step(psrec_server_t *s, int wait, char *fatal)
{
    char err[PSREC_ERRBUF] = "an earlier record could not be logged";
    for (;;) {
        pthread_mutex_lock(&s->lmu);
        while (wait && s->lwork)
            pthread_cond_wait(&s->lcv, &s->lmu);
        int busy = s->lwork, done = s->ldone;
        s->ldone = 0;
        pthread_mutex_unlock(&s->lmu);
        psrec_err rc = PSREC_OK;
        if (done) {
            uint64_t v;
            ssize_t r = read(s->efd, &v, sizeof v);
            (void)r;
            if ((rc = psrec_pushlog_finish_sealed(s->log, err))) s->log_failed = rc;
            if (!rc)
                rc = send_acks(s, s->sacks, s->nsacks, fatal);
            else
                psrec_fail(fatal, rc, "push log: %s", err);
            s->nsacks = 0; /* on failure never acknowledged: the senders retry against the restarted server */
            psrec_pushlog_stats_t ls;
            psrec_pushlog_stats(s->log, &ls);
            s->st.log_records = ls.records;
            s->st.log_commits = ls.commits;
            s->st.log_fsync_seconds = ls.fsync_seconds;
            if (rc) return rc;
        }
        if (s->log_failed) {
            s->nacks = 0;
            return psrec_fail(fatal, s->log_failed, "push log: %s", err);
        }
        if (!busy && s->nacks) { /* the held acknowledgements become the next batch */
            if ((rc = psrec_pushlog_seal(s->log, err))) {
                s->log_failed = rc;
                s->nacks = 0;
                return psrec_fail(fatal, rc, "push log: %s", err);
            }
            ack_t *t = s->sacks;
            size_t c = s->capsacks;
            s->sacks = s->acks, s->capsacks = s->capacks, s->nsacks = s->nacks;
            s->acks = t, s->capacks = c, s->nacks = 0;
            pthread_mutex_lock(&s->lmu);
            s->lwork = 1;
            pthread_cond_broadcast(&s->lcv);
            pthread_mutex_unlock(&s->lmu);
            busy = 1;
        }
        if (!wait || (!busy && !s->nacks)) return PSREC_OK;
    }
}

static psrec_err flush_acks(psrec_server_t *s, char *fatal)
{
    return s->log ? log_step(s, 1, fatal) : PSREC_OK;
}

static psrec_err serve(psrec_server_t *s, const psrec_wire_route_t *route, const psrec_wire_msg_t *m, char *fatal)
{
    const Psrec__Header *h = m->hdr;
    char err[PSREC_ERRBUF] = "";
    reply_t r;
    reply_header(s, &r.h, PSREC__TYPE__TYPE_UNSPECIFIED, h->seq, h->table);
    r.nbulk = 0;
    psrec_err rc = PSREC_OK;
    int shutdown = 0;
    if (h->job_id != s->job_id) {
        char key[32];
        snprintf(key, sizeof key, "job %llu", (unsigned long long)h->job_id);
        psrec_ratelog(s->rlog, key, "server %u: refused a message of job %llu (this is job %llu)", s->rank,
                      (unsigned long long)h->job_id, (unsigned long long)s->job_id);
        rc = psrec_fail(err, PSREC_EREFUSED, "job %llu, this server serves job %llu", (unsigned long long)h->job_id,
                        (unsigned long long)s->job_id);
    } else {
        switch (h->type) {
        case PSREC__TYPE__PULL:
            r.h.type = PSREC__TYPE__PULL_OK;
            rc = on_pull(s, m, &r, err);
            break;
        case PSREC__TYPE__PUSH:
            r.h.type = PSREC__TYPE__PUSH_OK;
            rc = on_update(s, m, &r, err);
            break;
        case PSREC__TYPE__SET:
            r.h.type = PSREC__TYPE__SET_OK;
            rc = on_update(s, m, &r, err);
            break;
        case PSREC__TYPE__DUMP:
            r.h.type = PSREC__TYPE__DUMP_OK;
            rc = on_dump(s, m, &r, err);
            break;
        case PSREC__TYPE__STATS:
            r.h.type = PSREC__TYPE__STATS_OK;
            rc = on_stats(s, m, &r, err);
            break;
        case PSREC__TYPE__SHUTDOWN:
            r.h.type = PSREC__TYPE__SHUTDOWN_OK;
            shutdown = 1;
            break;
        case PSREC__TYPE__NEG_SCORE:
            r.h.type = PSREC__TYPE__NEG_SCORE_OK;
            rc = on_neg_score(s, m, &r, err);
            break;
        case PSREC__TYPE__NEG_APPLY:
            r.h.type = PSREC__TYPE__NEG_APPLY_OK;
            rc = on_neg_apply(s, m, &r, err);
            break;
        case PSREC__TYPE__CHECKPOINT:
            r.h.type = PSREC__TYPE__CHECKPOINT_OK;
            r.h.checkpoint_round = h->checkpoint_round;
            rc = on_checkpoint(s, m, err);
            break;
        default: rc = psrec_fail(err, PSREC_EPROTO, "a server does not answer message type %d", (int)h->type);
        }
    }
    if (rc == PSREC_OK && s->log &&
        (h->type == PSREC__TYPE__PUSH || h->type == PSREC__TYPE__SET || h->type == PSREC__TYPE__NEG_APPLY)) {
        /* acknowledged after the group commit at the end of this burst (flush_acks) */
        if (psrec_grow((void **)&s->acks, &s->capacks, s->nacks + 1, sizeof *s->acks) == 0) {
            s->acks[s->nacks++] = (ack_t){.route = *route,
                                          .seq = h->seq,
                                          .count = r.h.count,
                                          .type = (uint32_t)r.h.type,
                                          .table = h->table,
                                          .dim = r.h.dim,
                                          .negatives = r.h.negatives};
            return PSREC_OK;
        }
        rc = psrec_fail(err, PSREC_ENOMEM, "out of memory for an acknowledgement");
        s->log_failed = rc; /* applied and logged, but its acknowledgement cannot be held */
    }
    if (s->log_failed) rc = rc ? rc : s->log_failed;
    psrec_err frc = rc ? send_error(s, route, h, rc, err, fatal) : send_reply(s, route, &r.h, r.bulk, r.nbulk, fatal);
    if (rc == PSREC_OK && h->type == PSREC__TYPE__DUMP && r.h.cursor == 0) {
        for (int i = 0; i < MAX_DUMPS; i++) { /* finished: drop the snapshot (a retry rebuilds it) */
            dump_t *d = &s->dumps[i];
            if (d->live && d->who == (((uint64_t)h->role << 32) | h->rank) && d->table == h->table) {
                free(d->keys);
                memset(d, 0, sizeof *d);
            }
        }
    }
    if (shutdown) atomic_store(&s->stop, 1);
    return frc;
}

/* ---- heartbeats (coordinator mode) ---- */

static int64_t ms_until(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(t->tv_sec - now.tv_sec) * 1000 + (t->tv_nsec - now.tv_nsec) / 1000000;
}

static void heartbeat(psrec_server_t *s)
{
    Psrec__Header h;
    psrec_wire_header_init(&h, PSREC__TYPE__HEARTBEAT);
    h.role = PSREC__ROLE__SERVER;
    h.rank = s->rank;
    h.epoch = s->epoch;
    h.seq = ++s->hb_seq;
    h.job_id = s->job_id;
    h.map_version = s->map_version;
    h.addr = s->addr;
    size_t nt = fill_stats(s);
    h.n_table_stats = nt;
    h.table_stats = s->tsp;
    h.n_members = 1;
    h.members = &s->mep;
    h.stop = s->bye;
    h.checkpoint_done = s->reported; /* repeated until a newer round: the coordinator takes it once */
    h.checkpoint_bytes = s->reported_bytes;
    h.checkpoint_error = (uint32_t)s->reported_err;
    char err[PSREC_ERRBUF];
    /* non-blocking: if the coordinator is unreachable and the queue is full the beat is skipped */
    psrec_err rc = psrec_wire_send(s->hb_sock, NULL, &h, NULL, 0, 0, NULL, err);
    (void)rc;
    clock_gettime(CLOCK_MONOTONIC, &s->hb_next);
    s->hb_next.tv_sec += s->heartbeat_ms / 1000;
    s->hb_next.tv_nsec += (long)(s->heartbeat_ms % 1000) * 1000000;
    if (s->hb_next.tv_nsec >= 1000000000) {
        s->hb_next.tv_sec++;
        s->hb_next.tv_nsec -= 1000000000;
    }
}

/* Reads heartbeat replies: stop when the coordinator says the job is over; a fenced server (ESTALE or
 * EREFUSED: another process took our rank) stops with that error. */
static psrec_err heartbeat_replies(psrec_server_t *s, char *err)
{
    for (;;) {
        psrec_wire_msg_t m;
        char e[PSREC_ERRBUF];
        psrec_err rc = psrec_wire_recv(s->hb_sock, NULL, &m, 0, NULL, e);
        if (rc == PSREC_ETIMEDOUT) return PSREC_OK;
        if (rc == PSREC_EIO) return psrec_fail(err, rc, "coordinator socket: %s", e);
        if (rc) continue; /* malformed reply: ignore, the next beat will tell */
        psrec_err out = PSREC_OK;
        if (m.hdr->type == PSREC__TYPE__HEARTBEAT_OK && m.hdr->stop) {
            atomic_store(&s->stop, 1);
            s->bye = 1; /* acknowledge with a last heartbeat, so the coordinator need not linger */
        } else if (m.hdr->type == PSREC__TYPE__HEARTBEAT_OK && s->log && m.hdr->complete_round > s->pruned) {
            /* segments before the newest complete round are covered by its snapshot */
            char e2[PSREC_ERRBUF];
            if (psrec_pushlog_prune(s->ckpt_dir, s->rank, m.hdr->complete_round, e2) == PSREC_OK)
                s->pruned = m.hdr->complete_round;
            else
                fprintf(stderr, "psrec server %u: %s\n", s->rank, e2);
        } else if (m.hdr->type == PSREC__TYPE__ERROR &&
                   (m.hdr->error_code == PSREC_ESTALE || m.hdr->error_code == PSREC_EREFUSED)) {
            out = psrec_fail(err, (psrec_err)m.hdr->error_code, "coordinator: %s", m.hdr->error_text);
        }
        psrec_wire_msg_clear(&m);
        if (out) return out;
    }
}

/* ---- loop ---- */

psrec_err psrec_server_run(psrec_server_t *s, char *err)
{
    psrec_err rc = PSREC_OK;
    if (s->hb_sock) heartbeat(s);
    while (!rc && !atomic_load(&s->stop)) {
        zmq_pollitem_t it[3] = {{.socket = s->sock, .events = ZMQ_POLLIN},
                                {.socket = s->hb_sock, .events = ZMQ_POLLIN},
                                {.socket = NULL, .fd = s->efd, .events = ZMQ_POLLIN}};
        int timeout = POLL_MS;
        if (s->hb_sock) {
            int64_t left = ms_until(&s->hb_next);
            if (left < timeout) timeout = left < 0 ? 0 : (int)left;
        }
        int r = zmq_poll(it, s->efd >= 0 ? 3 : s->hb_sock ? 2 : 1, timeout); /* a log implies a coordinator */
        if (r < 0) {
            if (zmq_errno() == EINTR) continue;
            rc = zfail(err, "zmq_poll");
            break;
        }
        psrec_limits_burst_reset(s->burst);
        for (int i = 0; i < BURST && (it[0].revents & ZMQ_POLLIN); i++) {
            psrec_wire_route_t route;
            psrec_wire_msg_t m;
            char e[PSREC_ERRBUF] = "";
            psrec_err mrc = psrec_wire_recv_limit(s->sock, &route, &m, 0, s->lim.max_msg_bytes, &s->st.received, e);
            if (mrc == PSREC_ETIMEDOUT) break;
            if (mrc == PSREC_EIO) {
                rc = psrec_fail(err, mrc, "%s", e);
                break;
            }
            s->st.requests++;
            if (!mrc && (mrc = psrec_limits_burst_admit(s->burst, &route, e))) { /* a flood: not served */
                m.rejected_has_seq = 1;
                m.rejected_seq = m.hdr->seq;
                m.rejected_job_id = m.hdr->job_id;
            }
            if (mrc) {
                if (route.len > 0) { /* echo the rejected request's seq when its header was readable */
                    Psrec__Header rq;
                    psrec_wire_header_init(&rq, PSREC__TYPE__TYPE_UNSPECIFIED);
                    rq.seq = m.rejected_seq;
                    rq.job_id = m.rejected_job_id;
                    rc = send_error(s, &route, m.rejected_has_seq ? &rq : NULL, mrc, e, err);
                }
            } else {
                rc = serve(s, &route, &m, err);
            }
            psrec_wire_msg_clear(&m);
            if (rc || atomic_load(&s->stop)) break;
        }
        if (!rc && s->log) rc = log_step(s, 0, err); /* the burst's updates: the next group commit */
        if (!rc && s->log_failed) rc = psrec_fail(err, s->log_failed, "push log failed: stopping");
        if (!rc) reap(s);
        if (!rc && s->hb_sock) {
            if (it[1].revents & ZMQ_POLLIN) rc = heartbeat_replies(s, err);
            if (!rc && ms_until(&s->hb_next) <= 0) heartbeat(s);
        }
        publish(s);
    }
    if (!rc && s->log) rc = log_step(s, 1, err); /* what was logged before the stop is acknowledged */
    if (!rc && s->bye) heartbeat(s);             /* the last one: "heard the stop" */
    publish(s);
    return rc;
}

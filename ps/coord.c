/* coord.c: the coordinator of a psrec job (see coord.h for the protocol): membership with ranks and
 * epochs, the shard map, named barriers, progress aggregation and the end of the job.
 *
 * Design: one ROUTER socket and one loop, with all state owned by the loop's thread, so no locks. A
 * member is a slot (role, rank) fixed by the configuration; registering (again) bumps the slot's
 * epoch, which fences an older process with the same rank. The shard map is a pure function of
 * n_servers (slot i -> server i % n_servers) plus the servers' addresses; its version is 1 once every
 * server registered and moves only when a server comes back at another address. Barriers hold the
 * waiters' routing ids and answer all of them at once; a generation counter lets a name be reused.
 * Liveness: any request that carries a member's current (role, rank, epoch) refreshes its
 * last-seen time (monotonic clock); a sweep after every poll round (<= 100 ms) marks members silent
 * for heartbeat_timeout_ms as dead. Today that is reported (STATUS) and lets the job end without a
 * dead server; restart and recovery are a later step.
 * Every request gets exactly one reply (ERROR with a psrec_err code for anything refused or
 * malformed) and the loop keeps serving.
 * Fault tolerance (coord.h): rounds are announced and completed from the loop (round_tick after every
 * poll round); the state file is rewritten at most every STATE_SAVE_MS when something changed, and at
 * once when membership or a round changed (a restarted coordinator must not hand out an epoch twice).
 * Thread model: psrec_coord_run on one thread; psrec_coord_stop from any thread (atomic flag). */
#include "ps/coord.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/durable.h"
#include "ps/manifest.h"
#include "common/ratelog.h"
#include "ps/server.h" /* psrec_table_conf_to_wire */

/* Coordinator policy limits (not wire numbers): they bound what a peer can make us hold. */
#define MAX_ADDR 1024        /* bytes of a member's advertised endpoint */
#define MAX_BARRIER_NAME 256 /* bytes of a barrier name */
#define MAX_BARRIERS 1024    /* distinct barrier names remembered */
#define MAX_BARRIER_COUNT (1u << 20)
#define MAX_POLL_MS 100      /* the loop wakes at least this often (stop flag, dead members) */
#define CLOSE_LINGER_MS 200  /* at close: time given to replies still queued (the last "stop") */
#define RECV_BATCH 256       /* messages handled per poll round before the sweep */
#define MAX_DATA_SHARDS 4096 /* data shards whose progress is kept (the trainer's limit) */
#define STATE_SAVE_MS 1000   /* progress-only changes of the state file are written this often at most */
#define AUTO_FIRST_SECS 60.0 /* automatic interval: the first round (to measure its cost) after this */
#define AUTO_MIN_SECS 10.0   /* ... and the chosen interval is kept within these bounds */
#define AUTO_MAX_SECS 21600.0

typedef struct {
    int registered;
    int alive;
    int done;      /* worker: sent stop = 1 */
    int told_stop; /* server: a HEARTBEAT_OK with stop = 1 was sent to its current epoch */
    int said_bye;  /* server: it heard the stop (its last heartbeat says stop = 1) */
    int64_t told_ns;
    int has_stats;
    uint64_t epoch;
    int64_t last_seen_ns;
    char *addr;
    uint64_t pulls, pushes, examples, step, examples_total;
    double loss;
    size_t ntables;
    Psrec__TableStats tstats[PSREC_STORE_MAX_TABLES];
    psrec_wire_route_t reg_route; /* the REGISTER that made the current epoch: a copy of it (a */
    uint64_t reg_seq;             /* duplicated or re-sent message) gets the same answer again */
    int reg_again;
    uint64_t ckpt_done;  /* newest round whose part this member finished */
    uint64_t ckpt_bytes; /* server: its snapshot's size */
} member_t;

typedef struct {
    psrec_wire_route_t route;
    uint64_t seq;
    uint64_t who; /* (role << 32 | rank) + 1 of a registered member, 0 = anonymous (matched by route) */
} waiter_t;

typedef struct {
    char *name;
    uint32_t count;
    uint64_t generation; /* completed rounds */
    waiter_t *w;
    uint32_t n, cap;
} barrier_t;

struct psrec_coord {
    void *sock;
    psrec_ratelog_t *rlog; /* refused messages (other jobs) */
    char endpoint[256];
    int n_servers, n_workers;
    uint64_t job_id, seed;
    int64_t hb_timeout_ns;
    int poll_ms;
    /* REGISTER_OK's table list, built once */
    size_t ntables;
    Psrec__TableConf *tconf;
    Psrec__TableConf **tconfp;
    member_t *servers, *workers;
    /* shard map: slot_server is fixed; addrs points at the servers' addr strings */
    uint32_t *slot_server;
    char **addrs;
    uint64_t map_version; /* 0 until every server registered */
    barrier_t *barriers;
    int nbarriers;
    int job_over;
    int shutdown;
    atomic_int stop;
    /* fault tolerance */
    char *ckpt_dir; /* NULL: no checkpoints, no state file */
    uint64_t ckpt_steps;
    int64_t ckpt_ns;
    int ckpt_auto; /* interval from measured round cost and the MTBF (Young) */
    double mtbf_secs;
    double round_cost_s; /* duration of the last complete round (0: none yet) */
    int keep_rounds, durability_log;
    uint64_t round;      /* in progress (0: none) */
    uint64_t next_round; /* number of the next round (never reused, also after an abandoned one) */
    uint64_t complete;   /* newest complete round (0: none) */
    int64_t round_start_ns, round_end_ns;
    uint64_t steps_at_round; /* workers' summed steps when the last round started */
    int finishing;           /* a worker entered its final barrier: no new round */
    uint32_t nshards;
    psrec_shard_progress_t *prog;       /* per data shard, as last reported (acknowledged positions) */
    psrec_shard_progress_t *round_prog; /* per data shard, as reported for the round in progress */
    int dirty;                          /* 1: progress changed; 2: membership/round changed (save now) */
    int64_t saved_ns;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *role_name(Psrec__Role r)
{
    switch (r) {
    case PSREC__ROLE__SERVER: return "server";
    case PSREC__ROLE__WORKER: return "worker";
    case PSREC__ROLE__CLIENT: return "client";
    case PSREC__ROLE__COORDINATOR: return "coordinator";
    default: return "unknown role";
    }
}

static void save_state(psrec_coord_t *c);
static void abandon_round(psrec_coord_t *c, const char *why, uint32_t rank);
static void send_register_ok(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req, uint32_t rank,
                             const member_t *m);
static uint64_t newest_round_dir(const char *dir);
static psrec_err load_state(psrec_coord_t *c, const char *path, int *loaded, char *err);
static psrec_err start_resume(psrec_coord_t *c, char *err);

/* ---- construction ---- */

psrec_err psrec_coord_new(psrec_coord_t **out, void *zctx, const psrec_coord_conf_t *conf, char *err)
{
    *out = NULL;
    if (!zctx || !conf || !conf->bind) return psrec_fail(err, PSREC_EINVAL, "coordinator: no context or bind endpoint");
    if (conf->n_servers < 1 || conf->n_servers > PSREC_WIRE_NSLOTS)
        return psrec_fail(err, PSREC_EINVAL, "coordinator: n_servers %d not in 1..%d", conf->n_servers,
                          PSREC_WIRE_NSLOTS);
    if (conf->n_workers < 1 || conf->n_workers > (1 << 20))
        return psrec_fail(err, PSREC_EINVAL, "coordinator: n_workers %d not in 1..%d", conf->n_workers, 1 << 20);
    if (conf->ntables < 0 || conf->ntables > PSREC_STORE_MAX_TABLES ||
        (conf->ntables > 0 && (!conf->table_ids || !conf->tables)))
        return psrec_fail(err, PSREC_EINVAL, "coordinator: bad table list (%d tables)", conf->ntables);
    if (conf->heartbeat_timeout_ms < 0) return psrec_fail(err, PSREC_EINVAL, "coordinator: negative heartbeat timeout");

    psrec_coord_t *c = calloc(1, sizeof *c);
    if (!c) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    atomic_init(&c->stop, 0);
    c->n_servers = conf->n_servers;
    c->n_workers = conf->n_workers;
    c->job_id = conf->job_id;
    c->seed = conf->seed;
    int hb_ms = conf->heartbeat_timeout_ms ? conf->heartbeat_timeout_ms : 10000;
    c->hb_timeout_ns = (int64_t)hb_ms * 1000000;
    c->poll_ms = hb_ms / 2 < MAX_POLL_MS ? (hb_ms / 2 > 0 ? hb_ms / 2 : 1) : MAX_POLL_MS;
    c->ntables = (size_t)conf->ntables;
    c->servers = calloc((size_t)c->n_servers, sizeof *c->servers);
    c->workers = calloc((size_t)c->n_workers, sizeof *c->workers);
    c->addrs = calloc((size_t)c->n_servers, sizeof *c->addrs);
    c->slot_server = malloc(PSREC_WIRE_NSLOTS * sizeof *c->slot_server);
    c->tconf = calloc(c->ntables ? c->ntables : 1, sizeof *c->tconf);
    c->tconfp = calloc(c->ntables ? c->ntables : 1, sizeof *c->tconfp);
    c->barriers = calloc(MAX_BARRIERS, sizeof *c->barriers);
    c->prog = calloc(MAX_DATA_SHARDS, sizeof *c->prog);
    c->round_prog = calloc(MAX_DATA_SHARDS, sizeof *c->round_prog);
    c->keep_rounds = conf->keep_rounds > 0 ? conf->keep_rounds : 2;
    c->ckpt_steps = conf->checkpoint_steps;
    c->ckpt_ns = conf->checkpoint_secs > 0 ? (int64_t)(conf->checkpoint_secs * 1e9) : 0;
    c->ckpt_auto = conf->checkpoint_secs < 0;
    c->mtbf_secs = conf->mtbf_secs > 0 ? conf->mtbf_secs : 86400;
    if (c->ckpt_auto) c->ckpt_ns = (int64_t)(AUTO_FIRST_SECS * 1e9);
    c->durability_log = conf->durability_log;
    c->next_round = 1;
    c->round_end_ns = now_ns();
    if (conf->checkpoint_dir) c->ckpt_dir = strdup(conf->checkpoint_dir);
    if (!c->servers || !c->workers || !c->addrs || !c->slot_server || !c->tconf || !c->tconfp || !c->barriers ||
        !c->prog || !c->round_prog || (conf->checkpoint_dir && !c->ckpt_dir)) {
        psrec_coord_destroy(&c);
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < PSREC_WIRE_NSLOTS; i++)
        c->slot_server[i] = i % (uint32_t)c->n_servers;
    for (size_t i = 0; i < c->ntables; i++) {
        psrec__table_conf__init(&c->tconf[i]);
        psrec_table_conf_to_wire(conf->table_ids[i], &conf->tables[i], &c->tconf[i]);
        c->tconfp[i] = &c->tconf[i];
    }
    if (c->ckpt_dir) {
        char path[4096];
        int loaded = 0;
        snprintf(path, sizeof path, "%s/coord.state", c->ckpt_dir);
        psrec_err rc = psrec_mkdirs(c->ckpt_dir, err);
        if (!rc && !conf->fresh) rc = load_state(c, path, &loaded, err);
        if (!rc && !loaded && conf->resume) rc = start_resume(c, err);
        if (rc) {
            psrec_coord_destroy(&c);
            return rc;
        }
        if (!loaded && !conf->resume) c->next_round = newest_round_dir(c->ckpt_dir) + 1; /* never reuse a name */
        if (!loaded) save_state(c);
    }

    c->sock = zmq_socket(zctx, ZMQ_ROUTER);
    if (!c->sock) {
        psrec_err rc = psrec_fail(err, PSREC_EIO, "coordinator: zmq_socket: %s", zmq_strerror(zmq_errno()));
        psrec_coord_destroy(&c);
        return rc;
    }
    int zero = 0;
    int64_t maxmsg = PSREC_WIRE_MAX_HEADER; /* requests are headers only */
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    char e[PSREC_ERRBUF] = "out of memory";
    psrec_err brc = psrec_ratelog_new(&c->rlog, stderr, 10000);
    if (brc || (brc = psrec_zsec_bind(conf->sec, c->sock, conf->bind, e))) {
        psrec_coord_destroy(&c);
        return psrec_fail(err, brc, "coordinator: %s", e);
    }
    size_t len = sizeof c->endpoint;
    if (zmq_getsockopt(c->sock, ZMQ_LAST_ENDPOINT, c->endpoint, &len) != 0 || !c->endpoint[0])
        snprintf(c->endpoint, sizeof c->endpoint, "%s", conf->bind);
    *out = c;
    return PSREC_OK;
}

void psrec_coord_destroy(psrec_coord_t **pc)
{
    psrec_coord_t *c = *pc;
    if (!c) return;
    if (c->sock) {
        /* Linger 0 while serving (nothing ever blocks on a lost peer); a short bounded linger at close
         * so replies queued just before run() returned (the last server's stop) still go out. */
        int linger = CLOSE_LINGER_MS;
        zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(c->sock);
    }
    for (int i = 0; c->servers && i < c->n_servers; i++)
        free(c->servers[i].addr);
    for (int i = 0; c->workers && i < c->n_workers; i++)
        free(c->workers[i].addr);
    for (int i = 0; c->barriers && i < c->nbarriers; i++) {
        free(c->barriers[i].name);
        free(c->barriers[i].w);
    }
    free(c->barriers);
    free(c->servers);
    free(c->workers);
    free(c->addrs);
    free(c->slot_server);
    free(c->tconf);
    free(c->tconfp);
    free(c->prog);
    free(c->round_prog);
    free(c->ckpt_dir);
    psrec_ratelog_destroy(&c->rlog);
    free(c);
    *pc = NULL;
}

const char *psrec_coord_endpoint(const psrec_coord_t *c)
{
    return c->endpoint;
}

void psrec_coord_stop(psrec_coord_t *c)
{
    if (c) atomic_store(&c->stop, 1);
}

/* ---- helpers ---- */

static member_t *slots(psrec_coord_t *c, Psrec__Role role, int *n)
{
    if (role == PSREC__ROLE__SERVER) {
        *n = c->n_servers;
        return c->servers;
    }
    if (role == PSREC__ROLE__WORKER) {
        *n = c->n_workers;
        return c->workers;
    }
    *n = 0;
    return NULL;
}

/* The registered member named by (role, rank, epoch) of a request, or NULL. */
static member_t *identify(psrec_coord_t *c, const Psrec__Header *h)
{
    int n;
    member_t *m = slots(c, h->role, &n);
    if (!m || h->rank >= (uint32_t)n) return NULL;
    m += h->rank;
    return m->registered && m->epoch == h->epoch ? m : NULL;
}

static int map_complete(const psrec_coord_t *c)
{
    return c->map_version > 0;
}

static void fill_map(psrec_coord_t *c, Psrec__ShardMap *m)
{
    psrec__shard_map__init(m);
    m->version = c->map_version;
    m->nslots = PSREC_WIRE_NSLOTS;
    m->n_slot_server = PSREC_WIRE_NSLOTS;
    m->slot_server = c->slot_server;
    m->n_server_addr = (size_t)c->n_servers;
    m->server_addr = c->addrs;
}

static void reply_header(psrec_coord_t *c, Psrec__Header *h, Psrec__Type type, const Psrec__Header *req)
{
    psrec_wire_header_init(h, type);
    h->role = PSREC__ROLE__COORDINATOR;
    h->seq = req->seq;
    h->job_id = c->job_id;
    h->n_servers = (uint32_t)c->n_servers; /* every reply tells the job's configured size */
    h->n_workers = (uint32_t)c->n_workers;
}

/* Sends a reply; a reply that cannot be encoded becomes an ERROR, a vanished peer is ignored
 * (ROUTER drops messages to unknown routes, it never blocks). */
static void send_reply(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req, Psrec__Header *h)
{
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_wire_send(c->sock, route, h, NULL, 0, 0, NULL, err);
    if (rc == PSREC_EMSGSIZE || rc == PSREC_ENOMEM) {
        psrec_err ignored = psrec_wire_send_error(c->sock, route, req, rc, err);
        (void)ignored;
    }
}

static void send_err(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req, psrec_err code,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void send_err(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req, psrec_err code,
                     const char *fmt, ...)
{
    char text[PSREC_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    psrec_err ignored = psrec_wire_send_error(c->sock, route, req, code, text);
    (void)ignored;
}

/* Marks members silent for longer than the heartbeat timeout as dead. */
static void sweep(psrec_coord_t *c, int64_t now)
{
    for (int i = 0; i < c->n_servers; i++)
        if (c->servers[i].alive && now - c->servers[i].last_seen_ns > c->hb_timeout_ns) c->servers[i].alive = 0;
    for (int i = 0; i < c->n_workers; i++)
        if (c->workers[i].alive && now - c->workers[i].last_seen_ns > c->hb_timeout_ns) c->workers[i].alive = 0;
}

/* The job is over and every live server has heard so: run() may return. A server acknowledges the
 * stop with a last heartbeat (stop = 1); if that is lost, BYE_GRACE_MS after the stop went out is
 * enough (a server whose stop reply was lost asks again within its heartbeat interval). */
#define BYE_GRACE_MS 3000
static int finished(const psrec_coord_t *c, int64_t now)
{
    if (!c->job_over) return 0;
    for (int i = 0; i < c->n_servers; i++) {
        const member_t *m = &c->servers[i];
        if (!m->registered || !m->alive || m->said_bye) continue;
        if (!m->told_stop || now - m->told_ns < (int64_t)BYE_GRACE_MS * 1000000) return 0;
    }
    return 1;
}

/* ---- requests ---- */

static void on_register(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req, int64_t now)
{
    int n;
    member_t *arr = slots(c, req->role, &n);
    if (!arr) {
        send_err(c, route, req, PSREC_EINVAL, "REGISTER as %s: only servers and workers register",
                 role_name(req->role));
        return;
    }
    for (int i = 0; i < n; i++) { /* the same request again: the same answer, no new epoch */
        member_t *x = &arr[i];
        if (x->registered && x->reg_seq == req->seq && x->reg_route.len == route->len &&
            memcmp(x->reg_route.id, route->id, route->len) == 0) {
            send_register_ok(c, route, req, (uint32_t)i, x);
            return;
        }
    }
    const char *addr = req->addr ? req->addr : "";
    size_t alen = strlen(addr);
    if (alen >= MAX_ADDR) {
        send_err(c, route, req, PSREC_EMSGSIZE, "REGISTER: address of %zu bytes (limit %d)", alen, MAX_ADDR - 1);
        return;
    }
    if (req->role == PSREC__ROLE__SERVER && alen == 0) {
        send_err(c, route, req, PSREC_EINVAL, "REGISTER: a server must give the endpoint workers connect to");
        return;
    }
    uint32_t rank = req->rank;
    if (rank == UINT32_MAX) { /* any: the lowest rank never assigned (registration order), else a dead one */
        for (rank = 0; rank < (uint32_t)n && arr[rank].registered; rank++) {
        }
        if (rank == (uint32_t)n)
            for (rank = 0; rank < (uint32_t)n && arr[rank].alive; rank++) {
            }
        if (rank == (uint32_t)n) {
            send_err(c, route, req, PSREC_EREFUSED, "REGISTER: all %d %s ranks are taken", n, role_name(req->role));
            return;
        }
    } else if (rank >= (uint32_t)n) {
        send_err(c, route, req, PSREC_EREFUSED, "REGISTER: %s rank %u requested, the job has %d", role_name(req->role),
                 rank, n);
        return;
    }
    member_t *m = &arr[rank];
    char *copy = strdup(addr);
    if (!copy) {
        send_err(c, route, req, PSREC_ENOMEM, "REGISTER: out of memory");
        return;
    }
    int addr_changed = m->addr && strcmp(m->addr, copy) != 0;
    int again = m->registered; /* a restart within this job (or after the coordinator's own restart) */
    m->reg_route = *route;
    m->reg_seq = req->seq;
    m->reg_again = again;
    if (c->round) /* the member's part of the round died with its old process */
        abandon_round(c, req->role == PSREC__ROLE__SERVER ? "server %u registered again" : "worker %u registered again",
                      rank);
    free(m->addr);
    m->addr = copy;
    m->registered = 1;
    m->alive = 1;
    m->told_stop = 0;
    m->said_bye = 0;
    m->last_seen_ns = now;
    m->epoch++;
    if (req->role == PSREC__ROLE__SERVER) {
        c->addrs[rank] = m->addr;
        if (map_complete(c)) {
            if (addr_changed) c->map_version++;
        } else {
            int all = 1;
            for (int i = 0; i < c->n_servers && all; i++)
                all = c->servers[i].registered;
            if (all) c->map_version = 1;
        }
    }
    c->dirty = 2; /* a new epoch must be on disk before it is handed out (a restarted coordinator) */
    if (c->ckpt_dir) save_state(c);
    send_register_ok(c, route, req, rank, m);
}

/* REGISTER_OK for member m (rank), also when a copy of its REGISTER is answered again. */
static void send_register_ok(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req, uint32_t rank,
                             const member_t *m)
{
    Psrec__Header h;
    Psrec__ShardMap map;
    reply_header(c, &h, PSREC__TYPE__REGISTER_OK, req);
    h.rank = rank;
    h.epoch = m->epoch;
    h.seed = c->seed;
    h.n_tables = c->ntables;
    h.tables = c->tconfp;
    h.map_version = c->map_version;
    if (map_complete(c)) {
        fill_map(c, &map);
        h.shard_map = &map;
    }
    Psrec__ShardProgress *pg = NULL, **pgp = NULL;
    if (c->ckpt_dir) {
        h.checkpoint_dir = c->ckpt_dir;
        h.resume_round = c->complete;
        h.durability_log = c->durability_log;
        h.replay_log = c->durability_log && m->reg_again && req->role == PSREC__ROLE__SERVER;
        h.complete_round = c->complete;
        if (req->role == PSREC__ROLE__WORKER && c->nshards > 0) {
            pg = calloc(c->nshards, sizeof *pg);
            pgp = calloc(c->nshards, sizeof *pgp);
            if (!pg || !pgp) {
                free(pg), free(pgp);
                send_err(c, route, req, PSREC_ENOMEM, "REGISTER: out of memory");
                return;
            }
            for (uint32_t i = 0; i < c->nshards; i++) {
                psrec__shard_progress__init(&pg[i]);
                pg[i].shard = i;
                pg[i].passes = c->prog[i].passes;
                pg[i].block = c->prog[i].pos.block;
                pg[i].index = c->prog[i].pos.index;
                pg[i].examples = c->prog[i].examples;
                pgp[i] = &pg[i];
            }
            h.n_progress = c->nshards;
            h.progress = pgp;
        }
    }
    send_reply(c, route, req, &h);
    free(pg), free(pgp);
}

static void on_shard_map_get(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req)
{
    if (!map_complete(c)) {
        int reg = 0;
        for (int i = 0; i < c->n_servers; i++)
            reg += c->servers[i].registered;
        send_err(c, route, req, PSREC_ENOTREADY, "shard map incomplete: %d of %d servers registered", reg,
                 c->n_servers);
        return;
    }
    Psrec__Header h;
    Psrec__ShardMap map;
    reply_header(c, &h, PSREC__TYPE__SHARD_MAP, req);
    fill_map(c, &map);
    h.shard_map = &map;
    h.map_version = c->map_version;
    send_reply(c, route, req, &h);
}

/* A heartbeat's fault-tolerance fields: worker progress, "finishing", a member's part of a round. */
static void note_checkpoint(psrec_coord_t *c, member_t *m, const Psrec__Header *req)
{
    int worker = req->role == PSREC__ROLE__WORKER;
    if (worker) {
        int in_round = c->round && req->checkpoint_done == c->round;
        for (size_t i = 0; i < req->n_progress; i++) {
            const Psrec__ShardProgress *p = req->progress[i];
            if (p->shard >= MAX_DATA_SHARDS) continue;
            psrec_shard_progress_t v = {.passes = p->passes, .pos = {p->block, p->index}, .examples = p->examples};
            c->prog[p->shard] = v;
            if (in_round) c->round_prog[p->shard] = v;
            if (p->shard >= c->nshards) c->nshards = p->shard + 1;
            if (!c->dirty) c->dirty = 1;
        }
        if (req->finishing && !c->finishing) {
            c->finishing = 1;
            c->dirty = 2;
        }
    }
    if (!c->round || req->checkpoint_done != c->round || m->ckpt_done == c->round) return;
    if (!worker && req->checkpoint_error) {
        abandon_round(c, "server %u could not write its snapshot", req->rank);
        return;
    }
    m->ckpt_done = c->round;
    m->ckpt_bytes = req->checkpoint_bytes;
}

static void on_heartbeat(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req)
{
    int n;
    member_t *arr = slots(c, req->role, &n);
    if (!arr || req->rank >= (uint32_t)n || !arr[req->rank].registered) {
        send_err(c, route, req, PSREC_ESTALE, "HEARTBEAT from %s %u, which is not registered", role_name(req->role),
                 req->rank);
        return;
    }
    member_t *m = &arr[req->rank];
    if (req->epoch != m->epoch) {
        send_err(c, route, req, PSREC_ESTALE, "HEARTBEAT from %s %u epoch %llu, current epoch is %llu",
                 role_name(req->role), req->rank, (unsigned long long)req->epoch, (unsigned long long)m->epoch);
        return;
    }
    if (req->n_table_stats > PSREC_STORE_MAX_TABLES) {
        send_err(c, route, req, PSREC_EMSGSIZE, "HEARTBEAT with %zu table stats (limit %d)", req->n_table_stats,
                 PSREC_STORE_MAX_TABLES);
        return;
    }
    /* last_seen/alive were refreshed by the identity check in handle() */
    m->has_stats = 1;
    m->ntables = req->n_table_stats;
    for (size_t i = 0; i < m->ntables; i++) {
        psrec__table_stats__init(&m->tstats[i]);
        m->tstats[i].table = req->table_stats[i]->table;
        m->tstats[i].rows = req->table_stats[i]->rows;
        m->tstats[i].bytes_per_row = req->table_stats[i]->bytes_per_row;
    }
    if (req->n_members > 0) { /* the header has no pull/push counters: a server sends its own Member */
        m->pulls = req->members[0]->pulls;
        m->pushes = req->members[0]->pushes;
    }
    m->examples = req->examples;
    m->examples_total = req->examples_total;
    m->loss = req->loss;
    m->step = req->step;
    if (c->ckpt_dir) note_checkpoint(c, m, req);
    if (req->role == PSREC__ROLE__WORKER && req->stop && !m->done) {
        m->done = 1;
        c->dirty = 2;
        int all = 1;
        for (int i = 0; i < c->n_workers && all; i++)
            all = c->workers[i].done;
        if (all) c->job_over = 1;
    }
    Psrec__Header h;
    reply_header(c, &h, PSREC__TYPE__HEARTBEAT_OK, req);
    h.rank = req->rank;
    h.epoch = m->epoch;
    h.map_version = c->map_version;
    h.stop = c->job_over;
    h.checkpoint_round = c->round;
    h.complete_round = c->complete;
    send_reply(c, route, req, &h);
    if (c->job_over && req->role == PSREC__ROLE__SERVER) {
        if (!m->told_stop) m->told_ns = now_ns();
        m->told_stop = 1;
        if (req->stop) m->said_bye = 1;
    }
}

static barrier_t *find_barrier(psrec_coord_t *c, const char *name)
{
    for (int i = 0; i < c->nbarriers; i++)
        if (strcmp(c->barriers[i].name, name) == 0) return &c->barriers[i];
    if (c->nbarriers == MAX_BARRIERS) { /* forget an idle one */
        for (int i = 0; i < c->nbarriers; i++)
            if (c->barriers[i].n == 0) {
                free(c->barriers[i].name);
                free(c->barriers[i].w);
                c->barriers[i] = c->barriers[--c->nbarriers];
                break;
            }
        if (c->nbarriers == MAX_BARRIERS) return NULL;
    }
    barrier_t *b = &c->barriers[c->nbarriers];
    memset(b, 0, sizeof *b);
    b->name = strdup(name);
    if (!b->name) return NULL;
    c->nbarriers++;
    return b;
}

static void on_barrier(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req)
{
    const char *name = req->barrier_name ? req->barrier_name : "";
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen >= MAX_BARRIER_NAME) {
        send_err(c, route, req, PSREC_EINVAL, "BARRIER: name of %zu bytes (1..%d)", nlen, MAX_BARRIER_NAME - 1);
        return;
    }
    if (req->barrier_count == 0 || req->barrier_count > MAX_BARRIER_COUNT) {
        send_err(c, route, req, PSREC_EINVAL, "BARRIER '%s': count %u not in 1..%u", name, req->barrier_count,
                 MAX_BARRIER_COUNT);
        return;
    }
    unsigned long long r;
    if (sscanf(name, "ckpt-%llu", &r) == 1 && r != c->round) { /* abandoned (or never started) */
        send_err(c, route, req, PSREC_ESTALE, "BARRIER '%s': checkpoint round %llu is not in progress", name, r);
        return;
    }
    barrier_t *b = find_barrier(c, name);
    if (!b) {
        send_err(c, route, req, PSREC_EFULL, "BARRIER '%s': too many barriers in progress", name);
        return;
    }
    if (b->n == 0) b->count = req->barrier_count;
    if (b->count != req->barrier_count) {
        send_err(c, route, req, PSREC_EINVAL, "BARRIER '%s': count %u, but %u members wait for count %u", name,
                 req->barrier_count, b->n, b->count);
        return;
    }
    /* The same member again (its earlier request timed out and it asked anew, or it was restarted and
     * asks from a new socket), or the same anonymous peer: it counts once; a superseded request from the
     * same socket is answered now so that every request gets one reply. */
    uint64_t who = identify(c, req) ? (((uint64_t)req->role << 32) | req->rank) + 1 : 0;
    for (uint32_t i = 0; i < b->n; i++) {
        waiter_t *w = &b->w[i];
        int same_route = w->route.len == route->len && memcmp(w->route.id, route->id, route->len) == 0;
        if ((who && w->who == who) || (!who && !w->who && same_route)) {
            if (same_route && w->seq != req->seq) {
                Psrec__Header old = *req;
                old.seq = w->seq;
                send_err(c, route, &old, PSREC_EINVAL, "BARRIER '%s': superseded by a newer request", name);
            }
            w->route = *route;
            w->seq = req->seq;
            return;
        }
    }
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 8;
        if (cap > b->count) cap = b->count;
        waiter_t *w = realloc(b->w, cap * sizeof *w);
        if (!w) {
            send_err(c, route, req, PSREC_ENOMEM, "BARRIER '%s': out of memory", name);
            return;
        }
        b->w = w;
        b->cap = cap;
    }
    b->w[b->n].route = *route;
    b->w[b->n].seq = req->seq;
    b->w[b->n].who = who;
    b->n++;
    if (b->n < b->count) return; /* held: answered when the last one arrives */
    for (uint32_t i = 0; i < b->n; i++) {
        Psrec__Header h;
        psrec_wire_header_init(&h, PSREC__TYPE__BARRIER_OK);
        h.role = PSREC__ROLE__COORDINATOR;
        h.seq = b->w[i].seq;
        h.job_id = c->job_id;
        h.barrier_name = b->name;
        h.barrier_count = b->count;
        h.cursor = b->generation;
        send_reply(c, &b->w[i].route, &h, &h);
    }
    b->n = 0;
    b->generation++;
}

static void fill_member(const member_t *m, Psrec__Role role, uint32_t rank, int64_t now, Psrec__Member *e,
                        Psrec__TableStats **tp)
{
    psrec__member__init(e);
    e->role = role;
    e->rank = rank;
    e->addr = m->addr ? m->addr : (char *)"";
    e->epoch = m->epoch;
    e->seconds_since_seen = (double)(now - m->last_seen_ns) / 1e9;
    e->alive = m->alive;
    e->n_tables = m->ntables;
    e->tables = tp;
    for (size_t i = 0; i < m->ntables; i++)
        tp[i] = (Psrec__TableStats *)&m->tstats[i];
    e->pulls = m->pulls;
    e->pushes = m->pushes;
    e->examples = m->examples;
    e->examples_total = m->examples_total;
    e->loss = m->loss;
    e->step = m->step;
}

static void on_status(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req, int64_t now)
{
    sweep(c, now);
    size_t nm = 0, nt = 0;
    for (int i = 0; i < c->n_servers; i++)
        if (c->servers[i].registered) nm++, nt += c->servers[i].ntables;
    for (int i = 0; i < c->n_workers; i++)
        if (c->workers[i].registered) nm++, nt += c->workers[i].ntables;
    Psrec__Member *mem = calloc(nm ? nm : 1, sizeof *mem);
    Psrec__Member **memp = calloc(nm ? nm : 1, sizeof *memp);
    Psrec__TableStats **tp = calloc(nt ? nt : 1, sizeof *tp);
    if (!mem || !memp || !tp) {
        free(mem), free(memp), free(tp);
        send_err(c, route, req, PSREC_ENOMEM, "STATUS: out of memory");
        return;
    }
    size_t k = 0, t = 0, nloss = 0;
    uint64_t examples = 0;
    double loss = 0;
    for (int i = 0; i < c->n_servers; i++)
        if (c->servers[i].registered) {
            fill_member(&c->servers[i], PSREC__ROLE__SERVER, (uint32_t)i, now, &mem[k], tp + t);
            t += c->servers[i].ntables;
            memp[k] = &mem[k];
            k++;
        }
    for (int i = 0; i < c->n_workers; i++)
        if (c->workers[i].registered) {
            const member_t *m = &c->workers[i];
            fill_member(m, PSREC__ROLE__WORKER, (uint32_t)i, now, &mem[k], tp + t);
            t += m->ntables;
            memp[k] = &mem[k];
            k++;
            if (m->has_stats) {
                examples += m->examples;
                loss += m->loss;
                nloss++;
            }
        }
    Psrec__Header h;
    Psrec__ShardMap map;
    reply_header(c, &h, PSREC__TYPE__STATUS_OK, req);
    h.n_members = nm;
    h.members = memp;
    h.examples = examples;
    h.loss = nloss ? loss / (double)nloss : 0.0;
    h.map_version = c->map_version;
    h.stop = c->job_over;
    h.checkpoint_round = c->round;
    h.complete_round = c->complete;
    if (map_complete(c)) {
        fill_map(c, &map);
        h.shard_map = &map;
    }
    send_reply(c, route, req, &h);
    free(mem), free(memp), free(tp);
}

/* ---- fault tolerance: rounds and the state file ---- */

static void round_dir(const psrec_coord_t *c, uint64_t round, char *out, size_t cap)
{
    psrec_manifest_round_dir(c->ckpt_dir, round, out, cap);
}

/* Gives up the round in progress (a member died or came back, or could not write): its barriers'
 * waiters are answered ESTALE, which makes the workers go on training; a new round starts later. */
static void abandon_round(psrec_coord_t *c, const char *why, uint32_t rank)
{
    char text[256], n1[64], n2[64];
    snprintf(text, sizeof text, why, rank);
    fprintf(stderr, "psrec coord: checkpoint round %llu abandoned: %s\n", (unsigned long long)c->round, text);
    snprintf(n1, sizeof n1, "ckpt-%llu", (unsigned long long)c->round);
    snprintf(n2, sizeof n2, "ckpt-%llu-go", (unsigned long long)c->round);
    for (int i = 0; i < c->nbarriers; i++) {
        barrier_t *b = &c->barriers[i];
        if (strcmp(b->name, n1) && strcmp(b->name, n2)) continue;
        for (uint32_t k = 0; k < b->n; k++) {
            Psrec__Header h;
            psrec_wire_header_init(&h, PSREC__TYPE__BARRIER);
            h.seq = b->w[k].seq;
            h.job_id = c->job_id;
            send_err(c, &b->w[k].route, &h, PSREC_ESTALE, "BARRIER '%s': checkpoint round abandoned (%s)", b->name,
                     text);
        }
        b->n = 0;
    }
    c->round = 0;
    c->round_end_ns = now_ns();
    c->dirty = 2;
}

_Static_assert(PSREC_MANIFEST_MAX_FILES >= PSREC_WIRE_NSLOTS, "a manifest lists one snapshot per server");

/* Every member did its part of the round: write its manifest, prune old rounds. */
static void complete_round(psrec_coord_t *c, int64_t now)
{
    for (int i = 0; i < c->n_servers; i++)
        if (c->servers[i].ckpt_done != c->round) return;
    for (int i = 0; i < c->n_workers; i++)
        if (c->workers[i].ckpt_done != c->round) return;
    int nf = c->n_servers; /* <= PSREC_WIRE_NSLOTS = PSREC_MANIFEST_MAX_FILES */
    char(*names)[64] = malloc((size_t)nf * sizeof *names);
    uint64_t *bytes = malloc((size_t)nf * sizeof *bytes);
    if (!names || !bytes) {
        free(names), free(bytes);
        return; /* tried again at the next tick */
    }
    uint64_t steps = 0, examples = 0;
    for (int i = 0; i < c->n_workers; i++)
        steps += c->workers[i].step;
    for (uint32_t i = 0; i < c->nshards; i++)
        examples += c->round_prog[i].examples;
    for (int i = 0; i < nf; i++) {
        snprintf(names[i], sizeof names[i], "server-%d.snap", i);
        bytes[i] = c->servers[i].ckpt_bytes;
    }
    psrec_manifest_t mf = {.round = c->round,
                           .job_id = c->job_id,
                           .seed = c->seed,
                           .created_unix = (uint64_t)time(NULL),
                           .n_servers = (uint32_t)c->n_servers,
                           .n_workers = (uint32_t)c->n_workers,
                           .steps = steps,
                           .examples = examples,
                           .nfiles = (uint32_t)nf,
                           .files = names,
                           .file_bytes = bytes,
                           .nshards = c->nshards,
                           .shards = c->round_prog};
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_manifest_write(c->ckpt_dir, &mf, err);
    free(names), free(bytes);
    if (rc) {
        fprintf(stderr, "psrec coord: checkpoint round %llu abandoned: %s\n", (unsigned long long)c->round, err);
    } else {
        c->complete = c->round;
        c->round_cost_s = (double)(now - c->round_start_ns) / 1e9;
        if (c->ckpt_auto) {
            double t = psrec_coord_auto_interval(c->round_cost_s, c->mtbf_secs);
            c->ckpt_ns = (int64_t)(t * 1e9);
            fprintf(stderr, "psrec coord: automatic checkpoint interval %.1f s (round cost %.3f s, MTBF %.0f s)\n", t,
                    c->round_cost_s, c->mtbf_secs);
        }
        fprintf(stderr, "psrec coord: checkpoint round %llu complete (%.2f s, %llu examples)\n",
                (unsigned long long)c->round, (double)(now - c->round_start_ns) / 1e9, (unsigned long long)examples);
        if ((rc = psrec_manifest_prune(c->ckpt_dir, (uint64_t)c->keep_rounds, err)))
            fprintf(stderr, "psrec coord: pruning old rounds: %s\n", err);
    }
    c->round = 0;
    c->round_end_ns = now;
    c->dirty = 2;
}

/* Young (1974): the interval minimising the expected work lost to failures plus checkpoints. */
double psrec_coord_auto_interval(double round_cost_s, double mtbf_s)
{
    double t = sqrt(2.0 * (round_cost_s > 0 ? round_cost_s : 0) * (mtbf_s > 0 ? mtbf_s : 0));
    return t < AUTO_MIN_SECS ? AUTO_MIN_SECS : t > AUTO_MAX_SECS ? AUTO_MAX_SECS : t;
}

/* Starts a round when one is due and every worker can take part. */
static void start_round(psrec_coord_t *c, int64_t now)
{
    if (c->round || c->finishing || c->job_over || !map_complete(c) || (!c->ckpt_steps && !c->ckpt_ns)) return;
    uint64_t steps = 0;
    for (int i = 0; i < c->n_workers; i++) {
        if (!c->workers[i].registered) return;
        steps += c->workers[i].step;
    }
    if (steps < c->steps_at_round) c->steps_at_round = steps; /* a restarted worker counts anew */
    int due = (c->ckpt_steps && steps >= c->steps_at_round + c->ckpt_steps) ||
              (c->ckpt_ns && now - c->round_end_ns >= c->ckpt_ns);
    if (!due) return;
    char dir[4096], err[PSREC_ERRBUF];
    round_dir(c, c->next_round, dir, sizeof dir);
    if (psrec_mkdirs(dir, err)) {
        fprintf(stderr, "psrec coord: cannot start checkpoint round %llu: %s\n", (unsigned long long)c->next_round,
                err);
        c->round_end_ns = now;
        return;
    }
    c->round = c->next_round++;
    c->round_start_ns = now;
    c->steps_at_round = steps;
    memset(c->round_prog, 0, MAX_DATA_SHARDS * sizeof *c->round_prog);
    c->dirty = 2;
}

static void round_tick(psrec_coord_t *c, int64_t now)
{
    if (!c->ckpt_dir) return;
    for (int i = 0; c->round && i < c->n_servers; i++)
        if (!c->servers[i].alive) abandon_round(c, "server %u is not responding", (uint32_t)i);
    for (int i = 0; c->round && i < c->n_workers; i++)
        if (!c->workers[i].alive) abandon_round(c, "worker %u is not responding", (uint32_t)i);
    if (c->round) complete_round(c, now);
    start_round(c, now);
    if (c->dirty == 2 || (c->dirty && now - c->saved_ns >= (int64_t)STATE_SAVE_MS * 1000000)) save_state(c);
}

/* coord.state: "key value..." lines, one member or shard per line (durable file, checksummed). */
static void save_state(psrec_coord_t *c)
{
    size_t cap = 4096 + (size_t)(c->n_servers + c->n_workers) * (MAX_ADDR + 64) + (size_t)c->nshards * 96;
    char *t = malloc(cap), err[PSREC_ERRBUF], path[4096];
    if (!t) return;
    size_t n = 0;
#define PUT(...) n += (size_t)snprintf(t + n, cap - n, __VA_ARGS__)
    PUT("psrec-coord-state 1\njob_id %llu\nn_servers %d\nn_workers %d\nmap_version %llu\nnext_round %llu\n"
        "complete %llu\nround %llu\nfinishing %d\njob_over %d\nnshards %u\n",
        (unsigned long long)c->job_id, c->n_servers, c->n_workers, (unsigned long long)c->map_version,
        (unsigned long long)c->next_round, (unsigned long long)c->complete, (unsigned long long)c->round, c->finishing,
        c->job_over, c->nshards);
    for (int i = 0; i < c->n_servers; i++)
        if (c->servers[i].registered)
            PUT("server %d %llu %s\n", i, (unsigned long long)c->servers[i].epoch, c->servers[i].addr);
    for (int i = 0; i < c->n_workers; i++)
        if (c->workers[i].registered)
            PUT("worker %d %llu %d\n", i, (unsigned long long)c->workers[i].epoch, c->workers[i].done);
    for (uint32_t i = 0; i < c->nshards; i++)
        PUT("shard %u %llu %llu %u %llu\n", i, (unsigned long long)c->prog[i].passes,
            (unsigned long long)c->prog[i].pos.block, c->prog[i].pos.index, (unsigned long long)c->prog[i].examples);
#undef PUT
    snprintf(path, sizeof path, "%s/coord.state", c->ckpt_dir);
    psrec_dfile_t *f = NULL;
    psrec_err rc = n < cap ? psrec_dfile_open(&f, path, err) : psrec_fail(err, PSREC_EINVAL, "state too large");
    if (!rc) rc = psrec_dfile_finish(&f, psrec_dfile_write(f, t, n, err), err);
    free(t);
    if (rc) {
        fprintf(stderr, "psrec coord: cannot save %s: %s\n", path, err); /* retried at the next change */
        return;
    }
    c->dirty = 0;
    c->saved_ns = now_ns();
}

/* Loads coord.state when it belongs to this job (*loaded = 1); another job's state is ignored. A
 * corrupt state file is refused: handing out epochs again could let a fenced process back in. */
static psrec_err load_state(psrec_coord_t *c, const char *path, int *loaded, char *err)
{
    *loaded = 0;
    void *buf = NULL;
    size_t len = 0;
    psrec_err rc = psrec_dfile_read_all(path, &buf, &len, err);
    if (rc == PSREC_ENOTFOUND) return PSREC_OK;
    if (rc) return psrec_fail(err, rc, "coordinator state refused (%s); move it away to start the job afresh", err);
    char *text = realloc(buf, len + 1);
    if (!text) {
        free(buf);
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    }
    text[len] = 0;
    unsigned long long job = 0, u1, u2, u3, u4;
    int ns = -1, nw = -1, line = 0, i1, i2;
    char addr[MAX_ADDR];
    rc = PSREC_OK;
    if (sscanf(text, "psrec-coord-state 1\njob_id %llu\nn_servers %d\nn_workers %d", &job, &ns, &nw) != 3)
        rc = psrec_fail(err, PSREC_ECORRUPT, "%s: not a coordinator state file", path);
    else if (job != c->job_id) {
        fprintf(stderr, "psrec coord: %s belongs to job %llu, not %llu: starting afresh\n", path, job,
                (unsigned long long)c->job_id);
        free(text);
        return PSREC_OK;
    } else if (strstr(text, "\njob_over 1\n")) {
        fprintf(stderr, "psrec coord: job %llu in %s is over: starting afresh\n", job, path);
        free(text);
        return PSREC_OK;
    } else if (ns != c->n_servers || nw != c->n_workers)
        rc = psrec_fail(err, PSREC_EINVAL, "%s: job %llu had %d servers and %d workers, not %d and %d", path, job, ns,
                        nw, c->n_servers, c->n_workers);
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); !rc && l; l = strtok_r(NULL, "\n", &save)) {
        line++;
        int ok = 1;
        if (sscanf(l, "map_version %llu", &u1) == 1)
            c->map_version = u1;
        else if (sscanf(l, "next_round %llu", &u1) == 1)
            c->next_round = u1;
        else if (sscanf(l, "complete %llu", &u1) == 1)
            c->complete = u1;
        else if (sscanf(l, "finishing %d", &i1) == 1)
            c->finishing = i1;
        else if (sscanf(l, "job_over %d", &i1) == 1)
            c->job_over = i1;
        else if (sscanf(l, "nshards %llu", &u1) == 1)
            ok = u1 <= MAX_DATA_SHARDS, c->nshards = (uint32_t)u1;
        else if (sscanf(l, "server %d %llu %1023s", &i1, &u1, addr) == 3 && i1 >= 0 && i1 < c->n_servers) {
            member_t *m = &c->servers[i1];
            free(m->addr);
            ok = (m->addr = strdup(addr)) != NULL;
            m->registered = m->alive = 1;
            m->epoch = u1;
            c->addrs[i1] = m->addr;
        } else if (sscanf(l, "worker %d %llu %d", &i1, &u1, &i2) == 3 && i1 >= 0 && i1 < c->n_workers) {
            member_t *m = &c->workers[i1];
            m->registered = m->alive = 1;
            m->epoch = u1;
            m->done = i2;
        } else if (sscanf(l, "shard %d %llu %llu %llu %llu", &i1, &u1, &u2, &u3, &u4) == 5 && i1 >= 0 &&
                   i1 < MAX_DATA_SHARDS && u3 <= UINT32_MAX) {
            c->prog[i1] = (psrec_shard_progress_t){.passes = u1, .pos = {u2, (uint32_t)u3}, .examples = u4};
        } else if (strncmp(l, "psrec-coord-state", 17) && strncmp(l, "job_id", 6) && strncmp(l, "n_servers", 9) &&
                   strncmp(l, "n_workers", 9) && strncmp(l, "round", 5)) {
            ok = 0;
        }
        if (!ok) rc = psrec_fail(err, PSREC_ECORRUPT, "%s:%d: cannot read '%.80s'", path, line, l);
    }
    free(text);
    if (rc) return rc;
    /* members get a heartbeat timeout's grace to reconnect; a round in flight is abandoned (its members
     * may have lost their part of it with us) and a new one starts later */
    int64_t now = now_ns();
    for (int i = 0; i < c->n_servers; i++)
        c->servers[i].last_seen_ns = now;
    for (int i = 0; i < c->n_workers; i++)
        c->workers[i].last_seen_ns = now;
    c->round = 0;
    c->round_end_ns = now;
    *loaded = 1;
    fprintf(stderr, "psrec coord: continuing job %llu from %s (newest complete round %llu)\n",
            (unsigned long long)c->job_id, path, (unsigned long long)c->complete);
    return PSREC_OK;
}

/* The highest N of the round-N directories in dir (complete or not), 0 if none. */
static uint64_t newest_round_dir(const char *dir)
{
    uint64_t *v = NULL, best;
    size_t n = 0;
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_dir_numbers(dir, "round-", "", &v, &n, err);
    best = !rc && n ? v[n - 1] : 0; /* ascending */
    free(v);
    return best;
}

static void warn_line(const char *line, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "psrec coord: %s\n", line);
}

/* A new job continuing from the newest complete round of the directory. */
static psrec_err start_resume(psrec_coord_t *c, char *err)
{
    psrec_manifest_t m;
    memset(&m, 0, sizeof m);
    psrec_err rc = psrec_manifest_latest(c->ckpt_dir, &m, warn_line, NULL, err);
    if (rc == PSREC_ENOTFOUND)
        return psrec_fail(err, rc, "--resume %s: no complete checkpoint round there", c->ckpt_dir);
    if (rc) return rc;
    if (m.nshards > MAX_DATA_SHARDS)
        rc = psrec_fail(err, PSREC_ECORRUPT, "round %llu: %u data shards", (unsigned long long)m.round, m.nshards);
    if (!rc) {
        c->complete = m.round;
        c->next_round = m.round + 1;
        c->nshards = m.nshards;
        memcpy(c->prog, m.shards, m.nshards * sizeof *c->prog);
        fprintf(stderr, "psrec coord: resuming from checkpoint round %llu (%llu examples trained, %u servers then)\n",
                (unsigned long long)m.round, (unsigned long long)m.examples, m.n_servers);
    }
    psrec_manifest_free(&m);
    return rc;
}

static void handle(psrec_coord_t *c, const psrec_wire_route_t *route, const Psrec__Header *req)
{
    /* STATUS is read-only: job id 0 asks whatever job runs here (`psrec status` without --job-id) */
    int any_job = req->type == PSREC__TYPE__STATUS && req->job_id == 0;
    if (req->job_id != c->job_id && !any_job) {
        char key[32];
        snprintf(key, sizeof key, "job %llu", (unsigned long long)req->job_id);
        psrec_ratelog(c->rlog, key, "coordinator: refused a message of job %llu (this is job %llu)",
                      (unsigned long long)req->job_id, (unsigned long long)c->job_id);
        send_err(c, route, req, PSREC_EREFUSED, "job id %llu, this coordinator runs job %llu",
                 (unsigned long long)req->job_id, (unsigned long long)c->job_id);
        return;
    }
    int64_t now = now_ns();
    if (req->type != PSREC__TYPE__REGISTER) {
        member_t *m = identify(c, req);
        if (m) {
            m->last_seen_ns = now;
            m->alive = 1;
        }
    }
    switch (req->type) {
    case PSREC__TYPE__REGISTER: on_register(c, route, req, now); break;
    case PSREC__TYPE__SHARD_MAP_GET: on_shard_map_get(c, route, req); break;
    case PSREC__TYPE__HEARTBEAT: on_heartbeat(c, route, req); break;
    case PSREC__TYPE__BARRIER: on_barrier(c, route, req); break;
    case PSREC__TYPE__STATUS: on_status(c, route, req, now); break;
    case PSREC__TYPE__SHUTDOWN: {
        Psrec__Header h;
        reply_header(c, &h, PSREC__TYPE__SHUTDOWN_OK, req);
        send_reply(c, route, req, &h);
        c->shutdown = 1;
        break;
    }
    default:
        send_err(c, route, req, PSREC_EPROTO, "message type %d is not a coordinator request", (int)req->type);
        break;
    }
}

static psrec_err run_loop(psrec_coord_t *c, char *err)
{
    while (!atomic_load(&c->stop)) {
        zmq_pollitem_t it = {.socket = c->sock, .events = ZMQ_POLLIN};
        int r = zmq_poll(&it, 1, c->poll_ms);
        if (r < 0) {
            if (zmq_errno() == EINTR) continue;
            return psrec_fail(err, PSREC_EIO, "coordinator: zmq_poll: %s", zmq_strerror(zmq_errno()));
        }
        for (int k = 0; r > 0 && k < RECV_BATCH && !c->shutdown; k++) {
            psrec_wire_route_t route;
            psrec_wire_msg_t m;
            char e[PSREC_ERRBUF];
            psrec_err rc = psrec_wire_recv(c->sock, &route, &m, 0, NULL, e);
            if (rc == PSREC_ETIMEDOUT) break; /* nothing more queued */
            if (rc == PSREC_EIO) {
                if (zmq_errno() == ETERM) return psrec_fail(err, PSREC_EIO, "coordinator: %s", e);
                break;
            }
            if (rc) { /* malformed: answer it and keep serving */
                if (route.len) {
                    psrec_err ignored = psrec_wire_send_reject(c->sock, &route, &m, rc, e);
                    (void)ignored;
                }
                continue;
            }
            handle(c, &route, m.hdr);
            psrec_wire_msg_clear(&m);
        }
        if (c->shutdown) break;
        int64_t now = now_ns();
        sweep(c, now);
        round_tick(c, now);
        if (finished(c, now)) break;
    }
    return PSREC_OK;
}

psrec_err psrec_coord_run(psrec_coord_t *c, char *err)
{
    psrec_err rc = run_loop(c, err);
    if (c->ckpt_dir && (c->dirty || c->job_over)) save_state(c);
    return rc;
}

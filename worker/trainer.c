/* trainer.c: the embedded trainer. Each worker thread runs the training step of DESIGN.md:
 * read a batch, deduplicate the ids it needs per table ("groups"), pull them, query tower forward,
 * draw the shared negatives, (sampled) softmax, backward, sum gradients per id, push per table.
 * Design: every parameter access goes through psrec_table_client_t, so this file is the worker of the
 * distributed mode too; a step allocates nothing once its buffers have grown to the batch's size.
 * Thread model: W worker threads share the client, the sampler and a progress record (mutex); the
 * calling thread prints progress and metrics until the workers finish. */
#include "worker/trainer.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/batch.h"
#include "common/data_freq.h"
#include "common/data_shard.h"
#include "common/hard.h"
#include "common/idmap.h"
#include "common/rng.h"
#include "ps/manifest.h"
#include "worker/cluster.h"
#include "worker/coord_client.h"
#include "worker/model.h"
#include "worker/remote_client.h"
#include "worker/table_client.h"

#define MAX_SHARDS 4096
/* sender rank of a worker's push thread: rank | this bit (servers keep one duplicate window per rank) */
#define PSREC_PUSHER_RANK_BIT 0x80000000u

/* ---- per-table deduplicated key sets ---- */

typedef struct {
    uint32_t table, dim;
    psrec_idmap_t *map;
    uint64_t *keys;
    float *rows, *grads;
    size_t n, cap, pulled;
} group_t;

static psrec_err group_init(group_t *g, uint32_t table, uint32_t dim)
{
    memset(g, 0, sizeof *g);
    g->table = table;
    g->dim = dim;
    return psrec_idmap_new(&g->map, 4096);
}

static void group_free(group_t *g)
{
    psrec_idmap_destroy(&g->map);
    free(g->keys);
    free(g->rows);
    free(g->grads);
}

static void group_clear(group_t *g)
{
    psrec_idmap_clear(g->map);
    g->n = g->pulled = 0;
}

/* Index of key in the group, adding it if new; -1 on allocation failure. */
static int64_t group_add(group_t *g, uint64_t key)
{
    int inserted;
    uint64_t *v = psrec_idmap_upsert(g->map, key, g->n, &inserted);
    if (!v) return -1;
    if (!inserted) return (int64_t)*v;
    if (g->n == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 1024;
        uint64_t *k = realloc(g->keys, nc * 8);
        if (k) g->keys = k;
        float *r = realloc(g->rows, nc * g->dim * sizeof(float));
        if (r) g->rows = r;
        float *gr = realloc(g->grads, nc * g->dim * sizeof(float));
        if (gr) g->grads = gr;
        if (!k || !r || !gr) return -1;
        g->cap = nc;
    }
    g->keys[g->n] = key;
    return (int64_t)g->n++;
}

static psrec_err group_pull_new(psrec_table_client_t *c, group_t *g)
{
    psrec_err rc = psrec_table_pull(c, g->table, g->keys + g->pulled, g->n - g->pulled, g->rows + g->pulled * g->dim);
    if (!rc) g->pulled = g->n;
    return rc;
}

/* ---- shared state ---- */

typedef struct trainer trainer_t;

typedef struct {
    trainer_t *tr;
    int id;
    pthread_t thread;
    psrec_rng_t rng;
    /* data */
    int shard_list[MAX_SHARDS];
    int nshard_list, cur_shard, epoch;
    /* per entry of shard_list: where this worker is (prog), as of before the last batch (before), and
     * as of the last step whose pushes are acknowledged (acked: what heartbeats report) */
    psrec_shard_progress_t prog[MAX_SHARDS], before[MAX_SHARDS], acked[MAX_SHARDS];
    uint64_t round_seen, round_done; /* checkpoint rounds: announced, taken part in */
    uint64_t map_version;            /* of the shard map the clients use */
    char *ckpt_dir;                  /* the coordinator's (cluster modes) */
    int resumed;                     /* started from a round or a restart: no tower init */
    psrec_shard_reader_t *rd;
    psrec_batch_t batch;
    /* model scratch */
    psrec_tower_t *tower;
    psrec_loss_ws_t *lws;
    group_t g_out, g_slot[PSREC_MAX_SLOTS];
    group_t *slot_group[PSREC_MAX_SLOTS];
    int64_t *slot_idx[PSREC_MAX_SLOTS];
    size_t slot_idx_cap[PSREC_MAX_SLOTS];
    float *params, *dparams, *X, *dX, *U, *dU;
    float *Vpos, *dVpos, *Vneg, *dVneg, *Vr, *dVr, *pool, *pscore, *poolscore_b;
    int64_t *pos_idx, *neg_idx, *grav_idx;
    float *pos_logE, *neg_logE, *pool_logE;
    uint64_t *neg_keys, *pool_keys, *grav_keys;
    size_t cap_pos, cap_neg;
    /* --negatives-on servers: per part (server) lse (B), ybar (B x d), log E, row weights (B) */
    float *part_lse, *part_ybar, *part_logE, *part_w;
    size_t cap_parts;
    uint64_t neg_lost; /* steps whose negatives' update a server could not apply (it restarted) */
    uint64_t steps;
    /* where the parameters are */
    psrec_table_client_t *client; /* owned in cluster modes, borrowed (the trainer's) in direct mode */
    psrec_remote_t *remote;       /* inside client (cluster modes) */
    psrec_coord_client_t *cc;     /* cluster modes */
    uint32_t rank, nworkers;
    double next_heartbeat;
    uint64_t examples, my_total;
    double last_loss;
    /* asynchronous pushes (cluster modes, asynchronous training): a pusher thread with its own remote
     * client sends step t's gradients while this thread pulls and computes step t+1 */
    struct pusher *pusher;
} worker_t;

/* One step's summed gradients, copied out of the worker's groups, and the thread that pushes them. */
typedef struct pusher {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, pending, quit;
    psrec_table_client_t *client;
    psrec_remote_t *remote;
    int ntab;
    uint32_t table[PSREC_MAX_SLOTS + 2];
    uint64_t *keys[PSREC_MAX_SLOTS + 2];
    float *grads[PSREC_MAX_SLOTS + 2];
    size_t n[PSREC_MAX_SLOTS + 2], cap[PSREC_MAX_SLOTS + 2];
    uint32_t dim[PSREC_MAX_SLOTS + 2];
    psrec_err rc;
    char err[PSREC_ERRBUF];
} pusher_t;

struct trainer {
    const psrec_train_conf_t *c;
    psrec_store_t *store;         /* direct mode */
    psrec_table_client_t *client; /* direct mode: shared by the worker threads */
    void *zctx;                   /* cluster modes */
    psrec_zsec_t *zsec;           /* cluster modes: connection security (common/zsec.h) */
    const char *coord;            /* cluster modes: the coordinator endpoint */
    int local_workers;            /* worker threads of this process */
    double last_line;             /* when the last progress line went to a log file */
    psrec_sampler_t *sampler;
    psrec_freq_t freq;
    psrec_schema_t schema;
    psrec_model_conf_t mconf;
    int hist_slot;
    int nshards;
    char *shard_path[MAX_SHARDS];
    size_t nparams, nchunks;
    uint64_t *chunk_keys;
    uint64_t total_examples; /* over all epochs */
    /* progress, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t done_examples, global_step;
    double steps_t0, steps_t1; /* first step started, last step finished (all workers) */
    uint64_t steps_examples, steps_wire;
    double loss_sum;
    uint64_t loss_n;
    int running;
    psrec_err first_rc;
    char first_err[PSREC_ERRBUF];
};

static void record_error(trainer_t *tr, psrec_err rc, const char *msg)
{
    pthread_mutex_lock(&tr->mu);
    if (!tr->first_rc) {
        tr->first_rc = rc;
        snprintf(tr->first_err, sizeof tr->first_err, "%s", msg);
    }
    pthread_mutex_unlock(&tr->mu);
}

static int should_stop(trainer_t *tr)
{
    pthread_mutex_lock(&tr->mu);
    int s = tr->first_rc != PSREC_OK;
    pthread_mutex_unlock(&tr->mu);
    return s;
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Grows an array to cap_needed elements (keeps the contents); returns PSREC_ENOMEM from the caller. */
#define GROW(ptr, cap_needed)                                                                                          \
    do {                                                                                                               \
        void *q_ = realloc((ptr), (cap_needed) * sizeof *(ptr));                                                       \
        if (!q_) return PSREC_ENOMEM;                                                                                  \
        (ptr) = q_;                                                                                                    \
    } while (0)

/* ---- data ---- */

/* Fills w->batch with up to B examples, moving through this worker's shards and epochs.
 * *got = 0 when the worker's epochs are done. */
static psrec_err next_batch(worker_t *w, size_t B, size_t *got, char *err)
{
    trainer_t *tr = w->tr;
    psrec_batch_clear(&w->batch);
    memcpy(w->before, w->prog, (size_t)w->nshard_list * sizeof *w->prog);
    while (w->batch.n < B) {
        if (w->epoch >= tr->c->epochs) break;
        psrec_shard_progress_t *p = &w->prog[w->cur_shard];
        int skip = p->passes > (uint64_t)w->epoch; /* done already this epoch (resumed) */
        if (!w->rd && !skip) {
            psrec_err rc = psrec_shard_reader_open(&w->rd, tr->shard_path[w->shard_list[w->cur_shard]], err);
            if (!rc && (p->pos.block || p->pos.index)) rc = psrec_shard_reader_seek(w->rd, p->pos, err);
            if (rc) return rc;
        }
        size_t g = 0;
        if (!skip) {
            psrec_err rc = psrec_shard_reader_next(w->rd, &w->batch, B - w->batch.n, &g, err);
            if (rc) return rc;
            p->pos = psrec_shard_reader_tell(w->rd);
            p->examples += g;
        }
        if (g == 0) {
            if (!skip) {
                psrec_shard_reader_close(&w->rd);
                p->passes = (uint64_t)w->epoch + 1;
                p->pos = (psrec_shard_pos_t){0, 0};
            }
            if (++w->cur_shard == w->nshard_list) {
                w->cur_shard = 0;
                w->epoch++;
            }
        }
    }
    *got = w->batch.n;
    return PSREC_OK;
}

/* ---- one training step ---- */

static psrec_err ensure_caps(worker_t *w, size_t B, size_t P, size_t S)
{
    const psrec_train_conf_t *c = w->tr->c;
    size_t d = (size_t)c->dim;
    if (B > (size_t)c->batch) return PSREC_EINVAL;
    if (P > w->cap_pos) {
        size_t n = P * 2;
        GROW(w->pos_idx, n);
        GROW(w->pos_logE, n);
        GROW(w->Vpos, n * d);
        GROW(w->dVpos, n * d);
        w->cap_pos = n;
    }
    if (S > w->cap_neg) {
        size_t n = S;
        GROW(w->neg_idx, n);
        GROW(w->neg_logE, n);
        GROW(w->neg_keys, n);
        GROW(w->Vneg, n * d);
        GROW(w->dVneg, n * d);
        w->cap_neg = n;
    }
    return PSREC_OK;
}

static psrec_err alloc_worker(worker_t *w)
{
    trainer_t *tr = w->tr;
    const psrec_train_conf_t *c = tr->c;
    size_t B = (size_t)c->batch, d = (size_t)c->dim, nin = (size_t)tr->mconf.tower.n_in;
    psrec_err rc;
    if ((rc = psrec_tower_new(&w->tower, &tr->mconf.tower))) return rc;
    if ((rc = psrec_loss_ws_new(&w->lws))) return rc;
    if ((rc = group_init(&w->g_out, PSREC_TABLE_ITEM_OUT, (uint32_t)d))) return rc;
    for (int s = 0; s < tr->schema.nslots; s++) {
        uint32_t t = psrec_model_slot_table(&tr->mconf, s);
        if (t == PSREC_TABLE_ITEM_OUT) {
            w->slot_group[s] = &w->g_out;
        } else {
            if ((rc = group_init(&w->g_slot[s], t, (uint32_t)c->emb_dim))) return rc;
            w->slot_group[s] = &w->g_slot[s];
        }
    }
    psrec_batch_init(&w->batch, tr->schema.nslots);
    size_t np = tr->nchunks * PSREC_DENSE_CHUNK;
    w->params = malloc(np * 4);
    w->dparams = calloc(np, 4);
    w->X = malloc(B * nin * 4);
    w->dX = malloc(B * nin * 4);
    w->U = malloc(B * d * 4);
    w->dU = malloc(B * d * 4);
    size_t R = (size_t)(c->gravity > 0 ? c->gravity_rows : 0);
    w->Vr = malloc((R + 1) * d * 4);
    w->dVr = malloc((R + 1) * d * 4);
    w->grav_idx = malloc((R + 1) * sizeof *w->grav_idx);
    w->grav_keys = malloc((R + 1) * 8);
    if (c->sampler == PSREC_SAMPLER_HARD) {
        size_t M = (size_t)c->negatives;
        w->pool = malloc(M * d * 4);
        w->pscore = malloc(B * M * 4);
        w->poolscore_b = malloc(M * 4);
        w->pool_keys = malloc(M * 8);
        w->pool_logE = malloc(M * 4);
        if (!w->pool || !w->pscore || !w->poolscore_b || !w->pool_keys || !w->pool_logE) return PSREC_ENOMEM;
    }
    if (!w->params || !w->dparams || !w->X || !w->dX || !w->U || !w->dU || !w->Vr || !w->dVr || !w->grav_idx ||
        !w->grav_keys)
        return PSREC_ENOMEM;
    return PSREC_OK;
}

static void free_worker(worker_t *w)
{
    free(w->ckpt_dir);
    psrec_shard_reader_close(&w->rd);
    psrec_batch_free(&w->batch);
    psrec_tower_destroy(&w->tower);
    psrec_loss_ws_destroy(&w->lws);
    group_free(&w->g_out);
    for (int s = 0; s < PSREC_MAX_SLOTS; s++) {
        if (w->slot_group[s] == &w->g_slot[s]) group_free(&w->g_slot[s]);
        free(w->slot_idx[s]);
    }
    void *ptrs[] = {w->params,      w->dparams,   w->X,         w->dX,       w->U,         w->dU,        w->Vpos,
                    w->dVpos,       w->Vneg,      w->dVneg,     w->Vr,       w->dVr,       w->pool,      w->pscore,
                    w->poolscore_b, w->pos_idx,   w->neg_idx,   w->grav_idx, w->pos_logE,  w->neg_logE,  w->pool_logE,
                    w->neg_keys,    w->pool_keys, w->grav_keys, w->part_lse, w->part_ybar, w->part_logE, w->part_w};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
        free(ptrs[i]);
}

/* Scores a uniform pool against the batch and keeps `h` hard negatives (ALGORITHMS.md §3.5 b). The
 * pool score of item j is the batch's log-mean-exp of u_b.v_j: one proposal shared by the batch. */
static psrec_err draw_hard(worker_t *w, int B, size_t *n_neg)
{
    trainer_t *tr = w->tr;
    const psrec_train_conf_t *c = tr->c;
    size_t M = (size_t)c->negatives, d = (size_t)c->dim, got = 0;
    psrec_err rc = psrec_sampler_draw(tr->sampler, &w->rng, M, NULL, 0, w->pool_keys, w->pool_logE, M, &got);
    if (rc) return rc;
    if ((rc = psrec_table_pull(w->client, PSREC_TABLE_ITEM_OUT, w->pool_keys, got, w->pool))) return rc;
    psrec_hard_pool_scores(B, (int)got, (int)d, w->U, w->pool, w->pscore, w->poolscore_b);
    size_t h = (size_t)c->hard_keep;
    if ((rc = ensure_caps(w, (size_t)B, 0, h))) return rc;
    rc = psrec_sampler_hard_resample(tr->sampler, &w->rng, w->pool_keys, w->poolscore_b, got, h, w->neg_keys,
                                     w->neg_logE);
    *n_neg = h;
    return rc;
}

/* Step 5 with server-side negatives (ps/negatives.h): every server draws its share of the negatives
 * from its rows and scores them against U; the parts are combined with the positives here
 * (psrec_loss_softmax_parts: loss, dU, dVpos, and the row weights each server gets back in step 7).
 * A positive's log E is its owner's (the stratified draw). */
static psrec_err server_negatives(worker_t *w, psrec_loss_in_t *in, const psrec_loss_out_t *out, double *loss)
{
    const psrec_train_conf_t *c = w->tr->c;
    const psrec_batch_t *b = &w->batch;
    size_t B = (size_t)in->B, d = (size_t)in->d, P = b->pos_off[B];
    uint32_t K = psrec_table_neg_parts(w->client);
    if (K == 0) return PSREC_EUNSUPPORTED;
    if (K * B > w->cap_parts) {
        size_t n = K * B;
        GROW(w->part_lse, n);
        GROW(w->part_ybar, n * d);
        GROW(w->part_w, n);
        GROW(w->part_logE, K);
        w->cap_parts = n;
    }
    /* each server's share: S uniform draws, or h hard negatives mined from a pool of M (rounded up) */
    int hard = c->sampler == PSREC_SAMPLER_HARD;
    psrec_negdraw_t dr = {.S = (int)(((size_t)(hard ? c->hard_keep : c->negatives) + K - 1) / K),
                          .pool = hard ? (int)(((size_t)c->negatives + K - 1) / K) : 0,
                          .temperature = c->temperature > 0 ? c->temperature : 1.0};
    psrec_negbatch_t nb = {.B = in->B, .d = in->d, .U = in->U, .pos_off = b->pos_off, .pos_key = b->pos_id};
    uint64_t seed = psrec_rng_u64(&w->rng);
    psrec_err rc =
        psrec_table_neg_score(w->client, PSREC_TABLE_ITEM_OUT, &nb, &dr, seed, w->part_lse, w->part_ybar, w->part_logE);
    if (rc) return rc;
    for (size_t k = 0; k < P; k++)
        w->pos_logE[k] = w->part_logE[psrec_table_neg_part_of(w->client, b->pos_id[k])];
    return psrec_loss_softmax_parts(in, (int)K, w->part_lse, w->part_ybar, w->lws, loss, out, w->part_w);
}

/* Step 7 with server-side negatives: the servers apply their negatives' gradients (weights part_w)
 * summed per key with this step's output-table rows (positives, gravity rows), so that every key gets
 * one update per step, as the worker-side path gives it. */
static psrec_err apply_server_negatives(worker_t *w)
{
    uint32_t stale = 0;
    psrec_err rc = psrec_table_neg_apply(w->client, PSREC_TABLE_ITEM_OUT, w->part_w, w->g_out.keys, w->g_out.grads,
                                         w->g_out.n, &stale);
    if (!rc && stale && w->neg_lost++ == 0) /* a server restarted between score and apply: its negatives are lost */
        fprintf(stderr, "psrec worker %u: %s; training on\n", w->rank,
                w->remote ? psrec_remote_last_error(w->remote) : "a server restarted");
    return rc;
}

/* ---- asynchronous pushes ---- */

static void *pusher_main(void *arg)
{
    pusher_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->pending && !p->quit)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->pending && p->quit) break;
        pthread_mutex_unlock(&p->mu);
        psrec_err rc = PSREC_OK;
        for (int i = 0; !rc && i < p->ntab; i++)
            rc = psrec_table_push(p->client, p->table[i], p->keys[i], p->n[i], p->grads[i]);
        pthread_mutex_lock(&p->mu);
        if (rc && !p->rc) {
            p->rc = rc;
            snprintf(p->err, sizeof p->err, "push failed: %s: %s", psrec_strerror(rc),
                     psrec_remote_last_error(p->remote));
        }
        p->pending = 0;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Waits until the previous step's push is done; returns its error. */
static psrec_err pusher_wait(pusher_t *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->pending)
        pthread_cond_wait(&p->cv, &p->mu);
    psrec_err rc = p->rc;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static psrec_err stage(pusher_t *p, uint32_t table, uint32_t dim, const uint64_t *keys, const float *grads, size_t n)
{
    int i = p->ntab++;
    if (n > p->cap[i]) {
        uint64_t *k = realloc(p->keys[i], n * 8);
        if (k) p->keys[i] = k;
        float *g = k ? realloc(p->grads[i], n * dim * sizeof(float)) : NULL;
        if (g) p->grads[i] = g;
        if (!k || !g) return PSREC_ENOMEM;
        p->cap[i] = n;
    }
    p->table[i] = table;
    p->dim[i] = dim;
    p->n[i] = n;
    memcpy(p->keys[i], keys, n * 8);
    memcpy(p->grads[i], grads, n * dim * sizeof(float));
    return PSREC_OK;
}

/* Copies this step's gradients to the pusher (after the previous push finished) and returns at once:
 * the next step's pulls overlap this push. A worker's own update may thus be one step late in what
 * it pulls next, which asynchronous training tolerates anyway. */
static psrec_err hand_to_pusher(worker_t *w, int skip_out)
{
    pusher_t *p = w->pusher;
    psrec_err rc = pusher_wait(p);
    if (rc) return rc;
    const psrec_batch_t *b = &w->batch;
    p->ntab = 0;
    if (!skip_out) rc = stage(p, PSREC_TABLE_ITEM_OUT, w->g_out.dim, w->g_out.keys, w->g_out.grads, w->g_out.n);
    for (int s = 0; !rc && s < b->nslots; s++) {
        group_t *g = w->slot_group[s];
        if (g != &w->g_out) rc = stage(p, g->table, g->dim, g->keys, g->grads, g->n);
    }
    if (!rc) rc = stage(p, PSREC_TABLE_DENSE, PSREC_DENSE_CHUNK, w->tr->chunk_keys, w->dparams, w->tr->nchunks);
    if (rc) return rc;
    pthread_mutex_lock(&p->mu);
    p->pending = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return PSREC_OK;
}

static void pusher_destroy(pusher_t **pp)
{
    pusher_t *p = *pp;
    if (!p) return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->quit = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    psrec_table_client_destroy(&p->client);
    for (int i = 0; i < PSREC_MAX_SLOTS + 2; i++) {
        free(p->keys[i]);
        free(p->grads[i]);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    *pp = NULL;
}

static psrec_err train_step(worker_t *w, double *loss_out)
{
    trainer_t *tr = w->tr;
    const psrec_train_conf_t *c = tr->c;
    psrec_batch_t *b = &w->batch;
    int B = (int)b->n;
    size_t d = (size_t)c->dim, e = (size_t)c->emb_dim, nin = (size_t)tr->mconf.tower.n_in;
    size_t P = b->pos_off[B];
    psrec_err rc;

    group_clear(&w->g_out);
    for (int s = 0; s < b->nslots; s++)
        if (w->slot_group[s] != &w->g_out) group_clear(w->slot_group[s]);

    /* 1. input ids, deduplicated per table, pulled with the tower weights */
    for (int s = 0; s < b->nslots; s++) {
        size_t n = b->slot_off[s][B];
        if (n > w->slot_idx_cap[s]) {
            GROW(w->slot_idx[s], n * 2);
            w->slot_idx_cap[s] = n * 2;
        }
        for (size_t k = 0; k < n; k++)
            if ((w->slot_idx[s][k] = group_add(w->slot_group[s], b->slot_id[s][k])) < 0) return PSREC_ENOMEM;
    }
    for (int s = 0; s < b->nslots; s++)
        if ((rc = group_pull_new(w->client, w->slot_group[s]))) return rc;
    if ((rc = psrec_table_pull(w->client, PSREC_TABLE_DENSE, tr->chunk_keys, tr->nchunks, w->params))) return rc;

    /* 2. X = per-slot means, U = psi(X) */
    memset(w->X, 0, (size_t)B * nin * 4);
    for (int s = 0; s < b->nslots; s++) {
        group_t *g = w->slot_group[s];
        for (int i = 0; i < B; i++) {
            uint32_t a = b->slot_off[s][i], z = b->slot_off[s][i + 1];
            if (a == z) continue;
            float *x = w->X + (size_t)i * nin + (size_t)s * e, inv = 1.0f / (float)(z - a);
            for (uint32_t k = a; k < z; k++) {
                const float *row = g->rows + (size_t)w->slot_idx[s][k] * g->dim;
                for (size_t j = 0; j < e; j++)
                    x[j] += row[j];
            }
            for (size_t j = 0; j < e; j++)
                x[j] *= inv;
        }
    }
    if ((rc = psrec_tower_forward(w->tower, w->params, w->X, B, w->U))) return rc;

    /* 3. shared negatives (drawn here, or by the servers in step 5) */
    size_t n_neg = 0;
    int on_servers = c->negatives_on_servers && c->loss == PSREC_LOSS_SOFTMAX;
    if (c->loss != PSREC_LOSS_POSITIVES_ONLY && !on_servers) {
        if (c->sampler == PSREC_SAMPLER_INBATCH || c->sampler == PSREC_SAMPLER_MIXED) {
            pthread_mutex_lock(&tr->mu);
            uint64_t t = ++tr->global_step;
            pthread_mutex_unlock(&tr->mu);
            psrec_sampler_observe(tr->sampler, b->pos_id, P, t);
        }
        if (c->sampler == PSREC_SAMPLER_HARD) {
            rc = draw_hard(w, B, &n_neg);
        } else {
            size_t cap = (size_t)c->negatives + P + tr->freq.n * (c->sampler == PSREC_SAMPLER_ALL);
            if ((rc = ensure_caps(w, (size_t)B, P, cap))) return rc;
            rc = psrec_sampler_draw(tr->sampler, &w->rng, (size_t)c->negatives, b->pos_id, P, w->neg_keys, w->neg_logE,
                                    cap, &n_neg);
        }
        if (rc) return rc;
    }
    if ((rc = ensure_caps(w, (size_t)B, P, n_neg))) return rc;

    /* 4. output rows: positives, negatives, gravity rows */
    for (size_t k = 0; k < P; k++) {
        if ((w->pos_idx[k] = group_add(&w->g_out, b->pos_id[k])) < 0) return PSREC_ENOMEM;
        w->pos_logE[k] = n_neg && !on_servers
                             ? psrec_sampler_log_expected(tr->sampler, b->pos_id[k], (size_t)c->negatives, P)
                             : 0.0f;
    }
    for (size_t j = 0; j < n_neg; j++)
        if ((w->neg_idx[j] = group_add(&w->g_out, w->neg_keys[j])) < 0) return PSREC_ENOMEM;
    size_t R = c->gravity > 0 ? (size_t)c->gravity_rows : 0;
    for (size_t r = 0; r < R; r++) {
        w->grav_keys[r] = psrec_freq_id(&tr->freq, psrec_rng_below(&w->rng, tr->freq.n));
        if ((w->grav_idx[r] = group_add(&w->g_out, w->grav_keys[r])) < 0) return PSREC_ENOMEM;
    }
    if ((rc = group_pull_new(w->client, &w->g_out))) return rc;
    for (size_t k = 0; k < P; k++)
        memcpy(w->Vpos + k * d, w->g_out.rows + w->pos_idx[k] * d, d * 4);
    for (size_t j = 0; j < n_neg; j++)
        memcpy(w->Vneg + j * d, w->g_out.rows + w->neg_idx[j] * d, d * 4);
    for (size_t r = 0; r < R; r++)
        memcpy(w->Vr + r * d, w->g_out.rows + w->grav_idx[r] * d, d * 4);

    /* 5. loss and gradients */
    psrec_loss_in_t in = {.B = B,
                          .d = (int)d,
                          .U = w->U,
                          .pos_off = b->pos_off,
                          .pos_key = b->pos_id,
                          .pos_w = b->pos_w,
                          .pos_logE = w->pos_logE,
                          .Vpos = w->Vpos,
                          .S = (int)n_neg,
                          .neg_key = w->neg_keys,
                          .neg_logE = w->neg_logE,
                          .Vneg = w->Vneg,
                          .neg_weight = c->neg_weight};
    psrec_loss_out_t out = {.dU = w->dU, .dVpos = w->dVpos, .dVneg = w->dVneg};
    double loss = 0;
    if (on_servers) {
        if ((rc = server_negatives(w, &in, &out, &loss))) return rc;
    } else if ((rc = psrec_loss_compute(c->loss, &in, w->lws, &loss, &out))) {
        return rc;
    }
    if (R) {
        memset(w->dVr, 0, R * d * 4);
        if ((rc = psrec_loss_gravity(B, (int)R, (int)d, w->U, w->Vr, c->gravity, &loss, w->dU, w->dVr))) return rc;
    }
    *loss_out = loss;

    /* 6. gradients summed per id */
    memset(w->g_out.grads, 0, w->g_out.n * d * 4);
    for (int s = 0; s < b->nslots; s++)
        if (w->slot_group[s] != &w->g_out) memset(w->slot_group[s]->grads, 0, w->slot_group[s]->n * e * 4);
    for (size_t k = 0; k < P; k++) {
        float *g = w->g_out.grads + w->pos_idx[k] * d;
        const float *src = w->dVpos + k * d;
        for (size_t j = 0; j < d; j++)
            g[j] += src[j];
    }
    for (size_t k = 0; k < n_neg; k++) {
        float *g = w->g_out.grads + w->neg_idx[k] * d;
        const float *src = w->dVneg + k * d;
        for (size_t j = 0; j < d; j++)
            g[j] += src[j];
    }
    for (size_t k = 0; k < R; k++) {
        float *g = w->g_out.grads + w->grav_idx[k] * d;
        const float *src = w->dVr + k * d;
        for (size_t j = 0; j < d; j++)
            g[j] += src[j];
    }
    if ((rc = psrec_tower_backward(w->tower, w->params, w->X, w->dU, B, w->dparams, w->dX))) return rc;
    for (int s = 0; s < b->nslots; s++) {
        group_t *g = w->slot_group[s];
        for (int i = 0; i < B; i++) {
            uint32_t a = b->slot_off[s][i], z = b->slot_off[s][i + 1];
            if (a == z) continue;
            const float *dx = w->dX + (size_t)i * nin + (size_t)s * e;
            float inv = 1.0f / (float)(z - a);
            for (uint32_t k = a; k < z; k++) {
                float *gr = g->grads + (size_t)w->slot_idx[s][k] * g->dim;
                for (size_t j = 0; j < e; j++)
                    gr[j] += dx[j] * inv;
            }
        }
    }

    /* 7. push (with server-side negatives, the output rows go with the negatives' update) */
    if (on_servers && (rc = apply_server_negatives(w))) return rc;
    if (w->pusher) return hand_to_pusher(w, on_servers);
    if (!on_servers &&
        (rc = psrec_table_push(w->client, PSREC_TABLE_ITEM_OUT, w->g_out.keys, w->g_out.n, w->g_out.grads)))
        return rc;
    for (int s = 0; s < b->nslots; s++) {
        group_t *g = w->slot_group[s];
        if (g == &w->g_out) continue;
        if ((rc = psrec_table_push(w->client, g->table, g->keys, g->n, g->grads))) return rc;
    }
    return psrec_table_push(w->client, PSREC_TABLE_DENSE, tr->chunk_keys, tr->nchunks, w->dparams);
}

/* ---- joining the parameters ---- */

/* Cluster modes: register as a worker, get rank and shard map, connect to every server. */
static psrec_err join_cluster(worker_t *w, char *err)
{
    trainer_t *tr = w->tr;
    const psrec_train_conf_t *c = tr->c;
    psrec_err rc = psrec_coord_client_new_sec(&w->cc, tr->zctx, tr->coord, c->job_id, c->timeout_ms * 3, tr->zsec, err);
    if (rc) return rc;
    Psrec__Header *reg = NULL;
    uint32_t want = c->rank >= 0 ? (uint32_t)c->rank + (uint32_t)w->id : UINT32_MAX;
    if ((rc = psrec_coord_client_register(w->cc, PSREC__ROLE__WORKER, NULL, want, &reg, err))) return rc;
    w->rank = reg->rank;
    w->nworkers = reg->n_workers ? reg->n_workers : (uint32_t)c->threads;
    if (reg->checkpoint_dir && reg->checkpoint_dir[0]) {
        if (!(w->ckpt_dir = strdup(reg->checkpoint_dir))) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
        /* barriers may wait for a restarted member */
        psrec_coord_client_set_timeout(w->cc, c->recovery_ms > c->timeout_ms * 3 ? c->recovery_ms : c->timeout_ms * 3);
    }
    w->round_seen = w->round_done = reg->resume_round;
    /* resumed: from a round, or this rank registered before (a restarted process: a new epoch). Progress
     * that other workers reported alone does not make a fresh worker resumed (a late-starting worker of
     * a new job would skip the tower init, --materialise and their barriers, and the others would wait) */
    w->resumed = reg->resume_round > 0 || reg->epoch > 1;
    /* progress per data shard (indexed by shard id): this worker's list is set up in worker_start */
    for (size_t i = 0; !rc && i < reg->n_progress; i++) {
        const Psrec__ShardProgress *p = reg->progress[i];
        if (p->shard < MAX_SHARDS)
            w->acked[p->shard] =
                (psrec_shard_progress_t){.passes = p->passes, .pos = {p->block, p->index}, .examples = p->examples};
    }
    psrec_remote_conf_t rcf = {.job_id = c->job_id,
                               .rank = reg->rank,
                               .epoch = reg->epoch,
                               .timeout_ms = c->timeout_ms,
                               .retries = 3,
                               .recovery_ms = w->ckpt_dir ? c->recovery_ms : 0,
                               .compress = c->compress,
                               .sec = tr->zsec};
    for (size_t i = 0; i < reg->n_tables; i++)
        if (reg->tables[i]->table < PSREC_STORE_MAX_TABLES) rcf.table_dim[reg->tables[i]->table] = reg->tables[i]->dim;
    if (!reg->shard_map) rc = psrec_fail(err, PSREC_EPROTO, "the coordinator sent no shard map");
    if (!rc) w->map_version = reg->shard_map->version;
    if (!rc) rc = psrec_remote_new(&w->remote, tr->zctx, reg->shard_map, &rcf, err);
    if (!rc && (rc = psrec_table_client_new_remote(&w->client, w->remote))) {
        w->remote = NULL;
        psrec_fail(err, rc, "cannot create the remote table client");
    }
    if (!rc && c->max_staleness < 0) { /* asynchronous: pushes overlap the next step */
        pusher_t *p = calloc(1, sizeof *p);
        if (!p) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
        if (p) {
            pthread_mutex_init(&p->mu, NULL);
            pthread_cond_init(&p->cv, NULL);
            w->pusher = p;
            /* its own sockets and sender identity: servers de-duplicate its pushes separately */
            rcf.rank = w->rank | PSREC_PUSHER_RANK_BIT;
            rc = psrec_remote_new(&p->remote, tr->zctx, reg->shard_map, &rcf, err);
            if (!rc && (rc = psrec_table_client_new_remote(&p->client, p->remote))) {
                p->remote = NULL;
                psrec_fail(err, rc, "cannot create the push client");
            }
            if (!rc && pthread_create(&p->thread, NULL, pusher_main, p) != 0)
                rc = psrec_fail(err, PSREC_ENOMEM, "cannot start the push thread");
            if (!rc) p->started = 1;
        }
    }
    psrec__header__free_unpacked(reg, NULL);
    return rc;
}

/* A server came back at another address (a cluster manager restarted it elsewhere): the coordinator's
 * map version moved, so both of this worker's clients reconnect (the pusher first finishes its push). */
static psrec_err refresh_map(worker_t *w, char *err)
{
    Psrec__Header *st = NULL;
    psrec_err rc = psrec_coord_client_status(w->cc, &st, err);
    if (!rc && !st->shard_map) rc = psrec_fail(err, PSREC_ENOTREADY, "no shard map from the coordinator");
    if (!rc && w->pusher && (rc = pusher_wait(w->pusher))) psrec_fail(err, rc, "%s", w->pusher->err);
    if (!rc) rc = psrec_remote_set_map(w->remote, st->shard_map, err);
    if (!rc && w->pusher) rc = psrec_remote_set_map(w->pusher->remote, st->shard_map, err);
    if (!rc) w->map_version = st->shard_map->version;
    psrec__header__free_unpacked(st, NULL);
    return rc;
}

/* Sends a heartbeat with this worker's counters and acknowledged per-shard progress (flags: HB_STOP =
 * finished, HB_FINISHING = about to enter the final barrier, HB_ROUND = its part of round_done is done);
 * notes the checkpoint round the coordinator announces. */
enum { HB_STOP = 1, HB_FINISHING = 2, HB_ROUND = 4 };
static psrec_err heartbeat(worker_t *w, int flags, char *err)
{
    Psrec__Header hb;
    psrec_wire_header_init(&hb, PSREC__TYPE__HEARTBEAT);
    hb.examples = w->examples;
    hb.examples_total = w->my_total;
    hb.loss = w->last_loss;
    hb.step = w->steps;
    hb.stop = (flags & HB_STOP) != 0;
    hb.finishing = (flags & HB_FINISHING) != 0;
    hb.checkpoint_done = (flags & HB_ROUND) ? w->round_done : 0;
    Psrec__ShardProgress pg[64], *pgp[64];
    if (w->ckpt_dir) { /* in pieces of 64 shards: usually one */
        for (int k0 = 0; k0 < w->nshard_list; k0 += 64) {
            size_t n = 0;
            for (int k = k0; k < w->nshard_list && k < k0 + 64; k++, n++) {
                psrec__shard_progress__init(&pg[n]);
                pg[n].shard = (uint32_t)w->shard_list[k];
                pg[n].passes = w->acked[k].passes;
                pg[n].block = w->acked[k].pos.block;
                pg[n].index = w->acked[k].pos.index;
                pg[n].examples = w->acked[k].examples;
                pgp[n] = &pg[n];
            }
            hb.n_progress = n;
            hb.progress = pgp;
            if (k0 + 64 >= w->nshard_list) break;
            Psrec__Header *r = NULL;
            psrec_err rc = psrec_coord_client_heartbeat_reply(w->cc, &hb, &r, err);
            psrec__header__free_unpacked(r, NULL);
            if (rc) return rc;
        }
    }
    Psrec__Header *r = NULL;
    psrec_err rc = psrec_coord_client_heartbeat_reply(w->cc, &hb, &r, err);
    if (!rc && r->checkpoint_round > w->round_seen) w->round_seen = r->checkpoint_round;
    uint64_t mv = rc ? 0 : r->map_version;
    psrec__header__free_unpacked(r, NULL);
    if (!rc && mv > w->map_version) rc = refresh_map(w, err);
    return rc;
}

/* A checkpoint round (ps/coord.h): drain this worker's pushes, wait for every worker, worker 0 has every
 * server snapshot its shard, wait again, report the position the snapshot matches. */
static psrec_err take_part_in_round(worker_t *w, char *err)
{
    uint64_t round = w->round_seen;
    psrec_err rc = w->pusher ? pusher_wait(w->pusher) : PSREC_OK;
    if (rc) return psrec_fail(err, rc, "worker %u: %s", w->rank, w->pusher->err);
    memcpy(w->acked, w->prog, (size_t)w->nshard_list * sizeof *w->prog);
    char name[64];
    w->round_done = round;
    snprintf(name, sizeof name, "ckpt-%llu", (unsigned long long)round);
    rc = psrec_coord_client_barrier(w->cc, name, w->nworkers, err);
    if (!rc && w->rank == 0 && psrec_remote_checkpoint(w->remote, round, err))
        /* a server that cannot snapshot reports it to the coordinator, which abandons the round: the
         * workers waiting at the next barrier are released, and training goes on */
        fprintf(stderr, "psrec worker %u: checkpoint round %llu: %s\n", w->rank, (unsigned long long)round, err);
    snprintf(name, sizeof name, "ckpt-%llu-go", (unsigned long long)round);
    if (!rc) rc = psrec_coord_client_barrier(w->cc, name, w->nworkers, err);
    if (rc == PSREC_ESTALE) return PSREC_OK; /* the round was abandoned (a member died): train on */
    return rc ? rc : heartbeat(w, HB_ROUND, err);
}

/* Bounded staleness: wait while this worker is more than k steps ahead of the slowest live worker. */
static psrec_err wait_for_stragglers(worker_t *w, char *err)
{
    int k = w->tr->c->max_staleness;
    psrec_err rc = heartbeat(w, 0, err); /* the coordinator learns our step right away */
    for (int spins = 0; !rc; spins++) {
        Psrec__Header *st = NULL;
        if ((rc = psrec_coord_client_status(w->cc, &st, err))) break;
        uint64_t min_step = UINT64_MAX;
        for (size_t i = 0; i < st->n_members; i++) {
            const Psrec__Member *m = st->members[i];
            if (m->role == PSREC__ROLE__WORKER && m->alive && m->step < min_step &&
                !(m->examples_total && m->examples >= m->examples_total))
                min_step = m->step;
        }
        psrec__header__free_unpacked(st, NULL);
        if (min_step == UINT64_MAX || w->steps <= min_step + (uint64_t)k) break;
        if (should_stop(w->tr)) break;
        zmq_poll(NULL, 0, spins < 100 ? 0 : 1); /* yield between polls; the status request paces us */
    }
    return rc;
}

static uint64_t count_examples(trainer_t *tr, const int *list, int n, char *err, psrec_err *rc)
{
    uint64_t total = 0;
    for (int i = 0; i < n && !*rc; i++) {
        psrec_shard_reader_t *r;
        if ((*rc = psrec_shard_reader_open(&r, tr->shard_path[list[i]], err))) break;
        total += psrec_shard_reader_examples(r);
        psrec_shard_reader_close(&r);
    }
    return total;
}

static psrec_err dump_remote(void *ctx, uint32_t table, uint32_t dim, uint64_t **keys, float **values, size_t *n,
                             char *err)
{
    return psrec_remote_dump(ctx, table, dim, keys, values, n, err);
}

/* Barrier `name` of all workers, for as long as they take (materialising 10^8 rows takes minutes), but
 * not for a dead one: after each deadline without the barrier, the coordinator's view is checked, and a
 * worker it declared dead ends the wait with an error naming it (re-sending the barrier counts once). */
static psrec_err wait_for_workers(worker_t *w, const char *name, char *err)
{
    psrec_err rc;
    while ((rc = psrec_coord_client_barrier(w->cc, name, w->nworkers, err)) == PSREC_ETIMEDOUT) {
        Psrec__Header *st = NULL;
        if ((rc = psrec_coord_client_status(w->cc, &st, err))) return rc;
        for (size_t i = 0; !rc && i < st->n_members; i++) {
            const Psrec__Member *m = st->members[i];
            if (m->role == PSREC__ROLE__WORKER && !m->alive)
                rc = psrec_fail(err, PSREC_ETIMEDOUT, "worker %u stopped answering before barrier '%s'", m->rank, name);
        }
        psrec__header__free_unpacked(st, NULL);
        if (rc) return rc;
    }
    return rc;
}

/* --materialise: this worker's share of the catalogue's output rows, created on their servers in
 * chunks (heartbeats go on in between: it takes a while at 10^8 items), then every worker waits for
 * the others so that training starts on the whole table. */
static psrec_err materialise(worker_t *w, char *err)
{
    trainer_t *tr = w->tr;
    const psrec_train_conf_t *c = tr->c;
    size_t n = tr->freq.n, lo = n * w->rank / w->nworkers, hi = n * (w->rank + 1) / w->nworkers;
    const size_t chunk = 1u << 16;
    uint64_t *keys = tr->freq.ids ? NULL : malloc(chunk * sizeof *keys); /* a dense catalogue lists no ids */
    if (!tr->freq.ids && !keys) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    double t0 = now_sec();
    psrec_err rc = PSREC_OK;
    for (size_t i = lo; !rc && i < hi; i += chunk) {
        size_t m = hi - i < chunk ? hi - i : chunk;
        for (size_t k = 0; keys && k < m; k++)
            keys[k] = psrec_freq_id(&tr->freq, i + k);
        rc = psrec_table_touch(w->client, PSREC_TABLE_ITEM_OUT, (uint32_t)c->dim, keys ? keys : tr->freq.ids + i, m);
        if (rc) {
            free(keys);
            return psrec_fail(err, rc, "materialising catalogue rows %zu..%zu: %s", i, i + m,
                              w->remote ? psrec_remote_last_error(w->remote) : psrec_strerror(rc));
        }
        if (tr->coord && now_sec() >= w->next_heartbeat) {
            w->next_heartbeat = now_sec() + 0.2;
            rc = heartbeat(w, 0, err);
        }
    }
    free(keys);
    if (!rc && tr->coord) rc = wait_for_workers(w, "materialised", err);
    if (!rc && !c->quiet)
        fprintf(stderr, "psrec worker %u: materialised %zu catalogue rows in %.1f s (%.2f M rows/s)\n", w->rank,
                hi - lo, now_sec() - t0, (double)(hi - lo) / 1e6 / (now_sec() - t0 + 1e-9));
    return rc;
}

/* Everything a worker thread does before its first step. */
static psrec_err worker_start(worker_t *w, char *err)
{
    trainer_t *tr = w->tr;
    const psrec_train_conf_t *c = tr->c;
    psrec_err rc;
    if (tr->coord) {
        if ((rc = join_cluster(w, err))) return rc;
    } else {
        w->client = tr->client;
        /* a local client keeps one scored batch of negatives: each thread needs its own */
        if (c->negatives_on_servers && (rc = psrec_table_client_new_local(&w->client, tr->store)))
            return psrec_fail(err, rc, "cannot create the table client");
        w->rank = (uint32_t)w->id;
        w->nworkers = (uint32_t)tr->local_workers;
    }
    psrec_rng_seed(&w->rng, c->seed, 1000 + (uint64_t)w->rank);
    if (w->nworkers > (uint32_t)tr->nshards)
        return psrec_fail(err, PSREC_EINVAL, "%u workers but only %d data shard(s): re-run prep with --shards %u",
                          w->nworkers, tr->nshards, w->nworkers);
    for (int s = (int)w->rank; s < tr->nshards; s += (int)w->nworkers)
        w->shard_list[w->nshard_list++] = s;
    uint64_t done_before = 0;
    if (w->resumed) { /* acked holds the coordinator's progress by shard id: take this worker's shards */
        for (int k = 0; k < w->nshard_list; k++) {
            w->prog[k] = w->acked[w->shard_list[k]];
            done_before += w->prog[k].examples;
        }
        psrec_rng_seed(&w->rng, c->seed, 1000 + (uint64_t)w->rank + (done_before << 20)); /* fresh negatives */
    }
    memcpy(w->acked, w->prog, (size_t)w->nshard_list * sizeof *w->prog);
    rc = PSREC_OK;
    w->my_total = count_examples(tr, w->shard_list, w->nshard_list, err, &rc) * (uint64_t)c->epochs;
    if (rc) return rc;
    if (c->max_steps && c->max_steps * (uint64_t)c->batch < w->my_total)
        w->my_total = c->max_steps * (uint64_t)c->batch;
    w->examples = done_before < w->my_total ? done_before : w->my_total;
    pthread_mutex_lock(&tr->mu);
    tr->total_examples += w->my_total - w->examples;
    pthread_mutex_unlock(&tr->mu);
    if ((rc = alloc_worker(w))) return psrec_fail(err, rc, "cannot allocate worker buffers");
    if (tr->coord && w->ckpt_dir && w->rank == 0 && !w->resumed) {
        /* the model's shape next to the rounds: `psrec export --checkpoint` needs no running cluster; a
         * disk that refuses it costs that export, not the training */
        char e[PSREC_ERRBUF];
        if (psrec_model_save_conf(w->ckpt_dir, &tr->mconf, e))
            fprintf(stderr, "psrec worker 0: %s (export --checkpoint will not find the model's shape)\n", e);
    }
    /* a worker that rejoins a running job (or resumes one) finds the rows there already, and the
     * others are long past the "materialised" barrier */
    if (c->materialise && !w->resumed && (rc = materialise(w, err))) return rc;
    if (tr->coord && !w->resumed) {
        /* rank 0 writes the initial tower weights; nobody trains before they are there */
        if (w->rank == 0) {
            float *p = calloc(tr->nchunks * PSREC_DENSE_CHUNK, 4);
            if (!p) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
            psrec_tower_init_params(w->tower, c->seed, p);
            rc = psrec_table_set(w->client, PSREC_TABLE_DENSE, tr->chunk_keys, tr->nchunks, p);
            free(p);
            if (rc) return psrec_fail(err, rc, "initialising the tower: %s", psrec_remote_last_error(w->remote));
        }
        if ((rc = psrec_coord_client_barrier(w->cc, "init", w->nworkers, err))) return rc;
    }
    return PSREC_OK;
}

/* After the last step: in cluster modes, wait for every worker, then rank 0 saves the model, then
 * everyone tells the coordinator it is done (which ends the job once all have). */
static psrec_err worker_finish(worker_t *w, char *err)
{
    trainer_t *tr = w->tr;
    const psrec_train_conf_t *c = tr->c;
    if (!tr->coord) return PSREC_OK;
    psrec_err rc = PSREC_OK;
    if (w->pusher && (rc = pusher_wait(w->pusher)))
        return psrec_fail(err, rc, "worker %u: %s", w->rank, w->pusher->err);
    memcpy(w->acked, w->prog, (size_t)w->nshard_list * sizeof *w->prog);
    /* no round starts after this; one announced before must still be taken part in */
    rc = heartbeat(w, w->ckpt_dir ? HB_FINISHING : 0, err);
    if (!rc && w->round_seen > w->round_done) rc = take_part_in_round(w, err);
    if (!rc) rc = psrec_coord_client_barrier(w->cc, "done", w->nworkers, err);
    if (!rc && w->rank == 0 && c->model_dir)
        rc = psrec_model_save(c->model_dir, &tr->mconf, w->client, dump_remote, w->remote, tr->freq.ids, tr->freq.n,
                              err);
    if (!rc && w->nworkers > 1) rc = psrec_coord_client_barrier(w->cc, "saved", w->nworkers, err);
    if (!rc) {
        /* the last word: once every worker said it, the coordinator ends the job and exits, so a reply
         * lost on the way (a lossy network) cannot be asked for again: not hearing it is no failure */
        psrec_coord_client_set_timeout(w->cc, 3000);
        rc = heartbeat(w, HB_STOP, err);
        if (rc == PSREC_ETIMEDOUT) rc = PSREC_OK;
    }
    return rc;
}

/* Bytes this worker's clients moved so far: as they crossed the wire (bulk frames as sent, plus headers),
 * and the bulk frames before LZ4 (raw, may be NULL). */
static uint64_t wire_bytes_of(const worker_t *w, uint64_t *raw)
{
    uint64_t b = 0, rb = 0;
    psrec_remote_t *rs[2] = {w->remote, w->pusher ? w->pusher->remote : NULL};
    for (int k = 0; k < 2; k++) {
        if (!rs[k]) continue;
        psrec_wire_stats_t s, r;
        psrec_remote_stats(rs[k], &s, &r);
        b += s.wire_bytes + r.wire_bytes + s.header_bytes + r.header_bytes;
        rb += s.raw_bytes + r.raw_bytes;
    }
    if (raw) *raw = rb;
    return b;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    trainer_t *tr = w->tr;
    const psrec_train_conf_t *c = tr->c;
    char err[PSREC_ERRBUF] = "";
    psrec_err rc = worker_start(w, err);
    double t_start = now_sec();
    uint64_t ex0 = w->examples, wire0 = rc ? 0 : wire_bytes_of(w, NULL);
    while (!rc && !should_stop(tr)) {
        if (c->max_steps && w->steps >= c->max_steps) break;
        size_t got = 0;
        if ((rc = next_batch(w, (size_t)c->batch, &got, err))) break;
        if (got == 0) break;
        if (c->max_staleness >= 0 && tr->coord && w->nworkers > 1 && (rc = wait_for_stragglers(w, err))) break;
        double loss = 0;
        if ((rc = train_step(w, &loss))) {
            const char *detail = w->remote ? psrec_remote_last_error(w->remote) : "";
            snprintf(err, sizeof err, "worker %u: training step failed: %s%s%s", w->rank, psrec_strerror(rc),
                     detail[0] ? ": " : "", detail);
            break;
        }
        w->steps++;
        w->examples += got;
        w->last_loss = loss;
        /* acknowledged so far: everything (synchronous pushes) or all but this step (its push is pending) */
        memcpy(w->acked, w->pusher ? w->before : w->prog, (size_t)w->nshard_list * sizeof *w->prog);
        pthread_mutex_lock(&tr->mu);
        tr->done_examples += got;
        tr->loss_sum += loss * (double)got;
        tr->loss_n += got;
        pthread_mutex_unlock(&tr->mu);
        if (tr->coord && now_sec() >= w->next_heartbeat) {
            w->next_heartbeat = now_sec() + 0.2;
            if ((rc = heartbeat(w, 0, err))) break;
        }
        if (w->round_seen > w->round_done && (rc = take_part_in_round(w, err))) break;
    }
    if (!rc && w->pusher && (rc = pusher_wait(w->pusher)))
        psrec_fail(err, rc, "worker %u: %s", w->rank, w->pusher->err);
    if (w->neg_lost)
        fprintf(stderr, "psrec worker %u: %llu of %llu steps' negatives were not applied (a server restarted)\n",
                w->rank, (unsigned long long)w->neg_lost, (unsigned long long)w->steps);
    pthread_mutex_lock(&tr->mu); /* the training steps alone: no joining, materialising or saving */
    if (!tr->steps_t0 || t_start < tr->steps_t0) tr->steps_t0 = t_start;
    if (now_sec() > tr->steps_t1) tr->steps_t1 = now_sec();
    tr->steps_examples += w->examples - ex0;
    tr->steps_wire += rc ? 0 : wire_bytes_of(w, NULL) - wire0;
    pthread_mutex_unlock(&tr->mu);
    if (!rc) rc = worker_finish(w, err);
    if (rc) record_error(tr, rc, err);
    pthread_mutex_lock(&tr->mu);
    tr->running--;
    pthread_cond_broadcast(&tr->cv);
    pthread_mutex_unlock(&tr->mu);
    return NULL;
}

/* ---- setup ---- */

void psrec_train_defaults(psrec_train_conf_t *c)
{
    memset(c, 0, sizeof *c);
    c->threads = 2;
    c->epochs = 5;
    c->batch = 256;
    c->negatives = 1024;
    c->sampler = PSREC_SAMPLER_UNIFORM;
    c->alpha = 0.75;
    c->temperature = 1.0;
    c->loss = PSREC_LOSS_SOFTMAX;
    c->neg_weight = 5.0f;
    c->gravity_rows = 256;
    c->dim = 64;
    c->emb_dim = 64;
    c->tower.n_hidden = 1;
    c->tower.hidden[0] = 128;
    c->item_opt = (psrec_opt_t){.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.05f};
    c->dense_opt = (psrec_opt_t){.kind = PSREC_OPT_ADAM, .lr = 0.002f};
    c->seed = 1;
    c->progress = 1;
    c->servers = 1;
    c->transport = PSREC_TRANSPORT_INPROC;
    c->compress = -1; /* resolved by transport */
    c->job_id = 1;
    c->sec.mode = PSREC_ZSEC_TOKEN;
    c->timeout_ms = 10000;
    c->max_staleness = -1;
    c->keep_checkpoints = 2;
    c->rank = -1;
    c->recovery_ms = 120000;
}

int psrec_train_tables(const psrec_train_conf_t *c, const psrec_schema_t *schema, uint32_t *ids,
                       psrec_table_conf_t *tables)
{
    int n = 0, hist = psrec_schema_hist(schema);
    float scale = c->init_scale > 0 ? c->init_scale : 1.0f / sqrtf((float)c->dim);
    float in_scale = c->init_scale > 0 ? c->init_scale : 1.0f / sqrtf((float)c->emb_dim);
    ids[n] = PSREC_TABLE_ITEM_OUT;
    tables[n++] = (psrec_table_conf_t){.dim = (uint32_t)c->dim,
                                       .opt = c->item_opt,
                                       .init = PSREC_INIT_NORMAL,
                                       .init_scale = scale,
                                       .dtype = c->row_dtype};
    psrec_table_conf_t tin = {.dim = (uint32_t)c->emb_dim,
                              .opt = c->item_opt,
                              .init = PSREC_INIT_NORMAL,
                              .init_scale = in_scale,
                              .dtype = c->row_dtype};
    if (!c->tie && hist >= 0) {
        ids[n] = PSREC_TABLE_ITEM_IN;
        tables[n++] = tin;
    }
    for (int s = 0; s < schema->nslots; s++)
        if (s != hist) {
            ids[n] = PSREC_TABLE_SLOT0 + (uint32_t)s;
            tables[n++] = tin;
        }
    ids[n] = PSREC_TABLE_DENSE;
    tables[n++] =
        (psrec_table_conf_t){.dim = PSREC_DENSE_CHUNK, .opt = c->dense_opt, .init = PSREC_INIT_ZERO, .exact = 1};
    return n;
}

psrec_err psrec_train_data_schema(const char *data_dir, psrec_schema_t *schema, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/shard-00000.bin", data_dir);
    psrec_shard_reader_t *r;
    psrec_err rc = psrec_shard_reader_open(&r, path, err);
    if (rc == PSREC_ENOTFOUND || (rc == PSREC_EIO && access(path, F_OK) != 0))
        return psrec_fail(err, PSREC_ENOTFOUND, "%s: no shard-00000.bin (run `psrec prep` first)", data_dir);
    if (rc) return rc;
    *schema = *psrec_shard_reader_schema(r);
    psrec_shard_reader_close(&r);
    return PSREC_OK;
}

static psrec_err find_shards(trainer_t *tr, char *err)
{
    for (int i = 0; i < MAX_SHARDS; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/shard-%05d.bin", tr->c->data_dir, i);
        if (access(path, F_OK) != 0) break;
        if (!(tr->shard_path[i] = strdup(path))) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
        tr->nshards = i + 1;
    }
    if (tr->nshards == 0)
        return psrec_fail(err, PSREC_ENOTFOUND, "%s: no shard-00000.bin (run `psrec prep` first)", tr->c->data_dir);
    return psrec_train_data_schema(tr->c->data_dir, &tr->schema, err);
}

static psrec_err check_conf(const psrec_train_conf_t *c, char *err)
{
    if (c->threads < 1 || c->threads > 256) return psrec_fail(err, PSREC_EINVAL, "--threads must be in 1..256");
    if (c->epochs < 1) return psrec_fail(err, PSREC_EINVAL, "--epochs must be >= 1");
    if (c->batch < 1 || c->batch > 65536) return psrec_fail(err, PSREC_EINVAL, "--batch must be in 1..65536");
    if (c->negatives < 0 || c->negatives > (1 << 24)) return psrec_fail(err, PSREC_EINVAL, "--negatives out of range");
    if (c->dim < 1 || c->dim > 4096 || c->emb_dim < 1 || c->emb_dim > 4096)
        return psrec_fail(err, PSREC_EINVAL, "--dim/--emb-dim must be in 1..4096");
    if (c->tie && c->emb_dim != c->dim) return psrec_fail(err, PSREC_EINVAL, "--tie needs --emb-dim equal to --dim");
    if (c->loss != PSREC_LOSS_POSITIVES_ONLY && c->negatives == 0 && c->sampler != PSREC_SAMPLER_ALL &&
        c->sampler != PSREC_SAMPLER_INBATCH)
        return psrec_fail(err, PSREC_EINVAL, "--negatives must be > 0 for this sampler");
    if (c->sampler == PSREC_SAMPLER_HARD && (c->hard_keep < 1 || c->hard_keep > c->negatives))
        return psrec_fail(err, PSREC_EINVAL, "--hard-keep must be in 1..--negatives");
    if (c->gravity < 0 || (c->gravity > 0 && c->gravity_rows < 1))
        return psrec_fail(err, PSREC_EINVAL, "--gravity must be >= 0 with --gravity-rows >= 1");
    if (c->negatives_on_servers &&
        (c->loss != PSREC_LOSS_SOFTMAX || (c->sampler != PSREC_SAMPLER_UNIFORM && c->sampler != PSREC_SAMPLER_HARD)))
        return psrec_fail(err, PSREC_EINVAL,
                          "--negatives-on servers draws from each server's rows (uniform, or hard negatives mined "
                          "there) for the softmax loss: use --sampler uniform|hard --loss softmax (or --negatives-on "
                          "workers)");
    if (c->negatives_on_servers && c->negatives < 1)
        return psrec_fail(err, PSREC_EINVAL, "--negatives-on servers needs --negatives > 0");
    if (c->servers < 1 || c->servers > 1024) return psrec_fail(err, PSREC_EINVAL, "--servers must be in 1..1024");
    if (c->timeout_ms < 1) return psrec_fail(err, PSREC_EINVAL, "--timeout must be positive");
    if ((c->checkpoint_steps || c->checkpoint_secs != 0 || c->durability_log || c->resume) && !c->checkpoint_dir)
        return psrec_fail(err, PSREC_EINVAL, "--checkpoint-every, --durability and --resume need --checkpoint-dir");
    if (c->checkpoint_dir && !c->coord && c->transport == PSREC_TRANSPORT_DIRECT)
        return psrec_fail(err, PSREC_EINVAL, "checkpoints need the parameter servers (not --transport direct)");
    return PSREC_OK;
}

/* Data, catalogue, model shape, sampler: what every mode needs. */
static psrec_err setup_common(trainer_t *tr, char *err)
{
    const psrec_train_conf_t *c = tr->c;
    psrec_err rc = check_conf(c, err);
    if (rc) return rc;
    if ((rc = find_shards(tr, err))) return rc;
    char path[4096];
    snprintf(path, sizeof path, "%s/freq.bin", c->data_dir);
    if ((rc = psrec_freq_load(&tr->freq, path, err))) return rc;
    if (tr->freq.n == 0) return psrec_fail(err, PSREC_EINVAL, "%s: the item catalogue is empty", path);
    tr->hist_slot = psrec_schema_hist(&tr->schema);
    if (tr->schema.nslots == 0) return psrec_fail(err, PSREC_EINVAL, "the data has no feature slots");

    psrec_model_conf_t *m = &tr->mconf;
    m->dim = c->dim;
    m->emb_dim = c->emb_dim;
    m->tie = c->tie;
    m->schema = tr->schema;
    m->seed = c->seed;
    m->tower = c->tower;
    m->tower.n_in = tr->schema.nslots * c->emb_dim;
    m->tower.out_dim = c->dim;
    psrec_tower_t *tw;
    if ((rc = psrec_tower_new(&tw, &m->tower))) return psrec_fail(err, rc, "bad tower layout");
    tr->nparams = psrec_tower_nparams(tw);
    psrec_tower_destroy(&tw);
    tr->nchunks = (tr->nparams + PSREC_DENSE_CHUNK - 1) / PSREC_DENSE_CHUNK;
    if (!(tr->chunk_keys = malloc(tr->nchunks * 8))) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    for (size_t k = 0; k < tr->nchunks; k++)
        tr->chunk_keys[k] = k;

    if (c->loss != PSREC_LOSS_POSITIVES_ONLY && !c->negatives_on_servers) {
        char alias_path[4096]; /* the popularity alias table, built once per machine and shared */
        snprintf(alias_path, sizeof alias_path, "%s/alias-%g.bin", c->data_dir, c->alpha);
        psrec_sampler_conf_t sc = {.kind = c->sampler,
                                   .n_items = tr->freq.n,
                                   .items = tr->freq.ids,
                                   .counts = tr->freq.counts,
                                   .dense = tr->freq.dense,
                                   .cache_path = c->sampler == PSREC_SAMPLER_POPULARITY ? alias_path : NULL,
                                   .alpha = c->alpha,
                                   .temperature = c->temperature};
        if ((rc = psrec_sampler_new(&tr->sampler, &sc, err))) return rc;
    }
    return PSREC_OK;
}

/* Direct mode: one store in this process, shared by the worker threads. */
static psrec_err setup_direct(trainer_t *tr, char *err)
{
    const psrec_train_conf_t *c = tr->c;
    uint32_t ids[PSREC_STORE_MAX_TABLES];
    psrec_table_conf_t tabs[PSREC_STORE_MAX_TABLES];
    int nt = psrec_train_tables(c, &tr->schema, ids, tabs);
    psrec_err rc = psrec_store_new(&tr->store, c->seed, 64);
    if (rc) return psrec_fail(err, rc, "cannot create the store");
    for (int i = 0; i < nt; i++)
        if ((rc = psrec_store_add_table(tr->store, ids[i], &tabs[i], err))) return rc;
    if ((rc = psrec_table_client_new_local(&tr->client, tr->store)))
        return psrec_fail(err, rc, "cannot create the table client");
    psrec_tower_t *tw;
    if ((rc = psrec_tower_new(&tw, &tr->mconf.tower))) return psrec_fail(err, rc, "bad tower layout");
    float *p = calloc(tr->nchunks * PSREC_DENSE_CHUNK, 4);
    if (!p) rc = PSREC_ENOMEM;
    if (!rc) {
        psrec_tower_init_params(tw, c->seed, p);
        rc = psrec_table_set(tr->client, PSREC_TABLE_DENSE, tr->chunk_keys, tr->nchunks, p);
    }
    free(p);
    psrec_tower_destroy(&tw);
    return rc ? psrec_fail(err, rc, "cannot initialise the tower") : PSREC_OK;
}

static void print_progress(trainer_t *tr, double t0, uint64_t done, double loss, FILE *metrics, int final)
{
    const psrec_train_conf_t *c = tr->c;
    double el = now_sec() - t0;
    double rate = el > 0 ? done / el : 0;
    pthread_mutex_lock(&tr->mu);
    uint64_t total = tr->total_examples;
    pthread_mutex_unlock(&tr->mu);
    double frac = total ? (double)done / total : 0;
    if (frac > 1) frac = 1;
    double eta = rate > 0 && frac < 1 ? (frac > 0 ? el / frac - el : 0) : 0;
    int eh = (int)(eta / 3600), em = (int)(eta / 60) % 60, es = (int)eta % 60;
    /* on a terminal one line redrawn in place (fastText's style); in a log file a line every 10 s */
    int tty = isatty(STDERR_FILENO);
    if (c->progress && !c->quiet && (tty || final || el - tr->last_line >= 10)) {
        tr->last_line = el;
        fprintf(stderr, "%sProgress: %5.1f%%  ex/s: %9.0f  loss: %8.5f  lr: %.4f  ETA: %dh%02dm%02ds%s",
                tty ? "\r" : "", 100 * frac, rate, loss, c->item_opt.lr, eh, em, es, final || !tty ? "\n" : "");
    }
    if (metrics) {
        fprintf(metrics,
                "{\"elapsed\": %.3f, \"examples\": %llu, \"progress\": %.5f, \"examples_per_sec\": %.1f, "
                "\"loss\": %.6f}\n",
                el, (unsigned long long)done, frac, rate, loss);
        fflush(metrics);
    }
}

static void destroy_trainer(trainer_t *tr, worker_t *ws, int W)
{
    for (int i = 0; ws && i < W; i++) {
        pusher_destroy(&ws[i].pusher);
        if (ws[i].client != tr->client) psrec_table_client_destroy(&ws[i].client);
        psrec_coord_client_destroy(&ws[i].cc);
        free_worker(&ws[i]);
    }
    free(ws);
    psrec_sampler_destroy(&tr->sampler);
    psrec_table_client_destroy(&tr->client);
    psrec_store_destroy(&tr->store);
    psrec_freq_free(&tr->freq);
    free(tr->chunk_keys);
    for (int i = 0; i < tr->nshards; i++)
        free(tr->shard_path[i]);
    pthread_mutex_destroy(&tr->mu);
    pthread_cond_destroy(&tr->cv);
    free(tr);
}

psrec_err psrec_train(const psrec_train_conf_t *conf, psrec_train_result_t *res, char *err)
{
    memset(res, 0, sizeof *res);
    psrec_train_conf_t cc = *conf;
    const psrec_train_conf_t *c = &cc;
    int direct = !c->coord && c->transport == PSREC_TRANSPORT_DIRECT;
    if (cc.compress < 0) cc.compress = c->coord || c->transport == PSREC_TRANSPORT_TCP;
    trainer_t *tr = calloc(1, sizeof *tr);
    if (!tr) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    tr->c = c;
    pthread_mutex_init(&tr->mu, NULL);
    pthread_cond_init(&tr->cv, NULL);
    worker_t *ws = NULL;
    FILE *metrics = NULL;
    psrec_cluster_t *cluster = NULL;
    int W = c->threads;
    psrec_err rc = setup_common(tr, err);
    if (!rc && !c->coord && W > tr->nshards) {
        /* each worker owns whole shards; more threads than shards would read data twice */
        if (!c->quiet)
            fprintf(stderr,
                    "psrec train: %d shard(s) in %s, using %d worker thread(s) (re-run prep with --shards %d)\n",
                    tr->nshards, c->data_dir, tr->nshards, W);
        W = tr->nshards;
    }
    tr->local_workers = W;
    if (!rc && direct) rc = setup_direct(tr, err);
    if (!rc && !direct) {
        if (!(tr->zctx = zmq_ctx_new())) rc = psrec_fail(err, PSREC_EIO, "cannot create a ZeroMQ context");
        int roles = c->coord ? PSREC_ZSEC_CONNECT : PSREC_ZSEC_SERVE | PSREC_ZSEC_CONNECT;
        if (!rc) rc = psrec_zsec_new(&tr->zsec, tr->zctx, &c->sec, c->job_id, roles, err);
        tr->coord = c->coord;
    }
    if (!rc && !direct && !c->coord) { /* embedded: coordinator and servers as threads */
        uint32_t ids[PSREC_STORE_MAX_TABLES];
        psrec_table_conf_t tabs[PSREC_STORE_MAX_TABLES];
        int nt = psrec_train_tables(c, &tr->schema, ids, tabs);
        psrec_cluster_conf_t clc = {.servers = c->servers,
                                    .workers = W,
                                    .tcp = c->transport == PSREC_TRANSPORT_TCP,
                                    .compress = cc.compress,
                                    .sec = tr->zsec,
                                    .job_id = c->job_id,
                                    .seed = c->seed,
                                    .ntables = nt,
                                    .table_ids = ids,
                                    .tables = tabs,
                                    .checkpoint_dir = c->checkpoint_dir,
                                    .checkpoint_steps = c->checkpoint_steps,
                                    .checkpoint_secs = c->checkpoint_secs,
                                    .mtbf_secs = c->mtbf_secs,
                                    .heartbeat_timeout_ms = c->heartbeat_timeout_ms,
                                    .keep_rounds = c->keep_checkpoints,
                                    .resume = c->resume,
                                    .durability_log = c->durability_log};
        if (!(rc = psrec_cluster_start(&cluster, tr->zctx, &clc, err))) tr->coord = psrec_cluster_coord(cluster);
    }
    if (!rc && c->metrics_path && !(metrics = fopen(c->metrics_path, "w")))
        rc = psrec_fail(err, PSREC_EIO, "%s: cannot open metrics file: %s", c->metrics_path, strerror(errno));
    if (!rc && !(ws = calloc((size_t)W, sizeof *ws))) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
    /* BLAS calls are small and come from W threads: OpenBLAS's own threads would only contend */
    openblas_set_num_threads(1);
    double t0 = now_sec();
    int started = 0;
    if (!rc) {
        tr->running = W;
        for (int i = 0; i < W; i++) {
            ws[i].tr = tr;
            ws[i].id = i;
            if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
                record_error(tr, PSREC_ENOMEM, "cannot start a worker thread");
                pthread_mutex_lock(&tr->mu);
                tr->running -= W - i;
                pthread_mutex_unlock(&tr->mu);
                break;
            }
            started++;
        }
        /* progress loop: wakes on a worker's exit or every half second to print */
        double last_loss = 0;
        pthread_mutex_lock(&tr->mu);
        while (tr->running > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 500000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&tr->cv, &tr->mu, &ts);
            uint64_t done = tr->done_examples;
            if (tr->loss_n) last_loss = tr->loss_sum / tr->loss_n;
            tr->loss_sum = 0;
            tr->loss_n = 0;
            int failed = tr->first_rc != PSREC_OK;
            pthread_mutex_unlock(&tr->mu);
            if (failed) psrec_cluster_stop(cluster); /* unblock workers waiting on the cluster */
            print_progress(tr, t0, done, last_loss, metrics, 0);
            pthread_mutex_lock(&tr->mu);
        }
        if (tr->loss_n) last_loss = tr->loss_sum / tr->loss_n;
        pthread_mutex_unlock(&tr->mu);
        for (int i = 0; i < started; i++)
            pthread_join(ws[i].thread, NULL);
        print_progress(tr, t0, tr->done_examples, last_loss, metrics, 1);
        res->seconds = now_sec() - t0;
        res->examples = tr->done_examples;
        res->examples_per_sec = res->seconds > 0 ? res->examples / res->seconds : 0;
        res->step_seconds = tr->steps_t1 > tr->steps_t0 ? tr->steps_t1 - tr->steps_t0 : 0;
        res->step_examples_per_sec = res->step_seconds > 0 ? tr->steps_examples / res->step_seconds : 0;
        res->step_wire_bytes = tr->steps_wire;
        res->final_loss = last_loss;
        for (int i = 0; i < W; i++) {
            res->steps += ws[i].steps;
            uint64_t raw = 0;
            res->wire_bytes += wire_bytes_of(&ws[i], &raw);
            res->wire_raw_bytes += raw;
        }
        if (tr->first_rc) rc = psrec_fail(err, tr->first_rc, "%s", tr->first_err);
    }
    if (cluster) {
        if (rc) psrec_cluster_stop(cluster);
        char e2[PSREC_ERRBUF] = "";
        psrec_err rc2 = psrec_cluster_wait(&cluster, e2);
        if (!rc && rc2) rc = psrec_fail(err, rc2, "%s", e2);
    }
    if (!rc && direct && c->model_dir)
        rc = psrec_model_save(c->model_dir, &tr->mconf, tr->client, psrec_model_store_dump, tr->store, tr->freq.ids,
                              tr->freq.n, err);
    if (tr->store) {
        res->rows_out = psrec_store_rows(tr->store, PSREC_TABLE_ITEM_OUT);
        res->bytes_per_row_out = psrec_store_bytes_per_row(tr->store, PSREC_TABLE_ITEM_OUT);
    }
    if (metrics) fclose(metrics);
    void *zctx = tr->zctx;
    psrec_zsec_t *zsec = tr->zsec;
    destroy_trainer(tr, ws, W);
    psrec_zsec_destroy(&zsec); /* after every socket that used it */
    if (zctx) zmq_ctx_term(zctx);
    return rc;
}

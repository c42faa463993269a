/* cluster.c: coordinator and servers as threads (see cluster.h). Design: each server thread creates
 * its server itself, because creating one registers with the coordinator and waits for the complete
 * shard map, which needs every server registering concurrently. Thread model: one thread per role;
 * errors are recorded under a mutex and reported by psrec_cluster_wait. */
#include "worker/cluster.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps/coord.h"
#include "ps/server.h"

typedef struct role role_t;

struct psrec_cluster {
    psrec_cluster_conf_t conf;
    void *zctx;
    psrec_coord_t *coord;
    pthread_t coord_thread;
    int coord_started;
    role_t *srv;
    pthread_mutex_t mu;
    psrec_err first_rc;
    char first_err[PSREC_ERRBUF];
    int stopping;
};

struct role {
    psrec_cluster_t *cl;
    int index;
    pthread_t thread;
    int started;
    psrec_server_t *server; /* set once created, under cl->mu */
};

static void record(psrec_cluster_t *cl, psrec_err rc, const char *who, const char *msg)
{
    pthread_mutex_lock(&cl->mu);
    if (!cl->first_rc) {
        cl->first_rc = rc;
        snprintf(cl->first_err, sizeof cl->first_err, "%s: %s", who, msg);
    }
    pthread_mutex_unlock(&cl->mu);
}

static void *coord_main(void *arg)
{
    psrec_cluster_t *cl = arg;
    char err[PSREC_ERRBUF] = "";
    psrec_err rc = psrec_coord_run(cl->coord, err);
    if (rc) record(cl, rc, "coordinator", err);
    return NULL;
}

static void *server_main(void *arg)
{
    role_t *r = arg;
    psrec_cluster_t *cl = r->cl;
    char err[PSREC_ERRBUF] = "", bind[128], who[32];
    snprintf(who, sizeof who, "server %d", r->index);
    if (cl->conf.tcp)
        snprintf(bind, sizeof bind, "tcp://127.0.0.1:0");
    else
        snprintf(bind, sizeof bind, "inproc://psrec-%ld-%p-server-%d", (long)getpid(), (void *)cl, r->index);
    psrec_server_conf_t sc = {.bind = bind,
                              .coord = psrec_coord_endpoint(cl->coord),
                              .job_id = cl->conf.job_id,
                              .compress = cl->conf.compress ? 1 : -1,
                              .sec = cl->conf.sec};
    psrec_server_t *s = NULL;
    psrec_err rc = psrec_server_new(&s, cl->zctx, &sc, err);
    if (rc) {
        record(cl, rc, who, err);
        psrec_coord_stop(cl->coord);
        return NULL;
    }
    pthread_mutex_lock(&cl->mu);
    r->server = s;
    int stop = cl->stopping;
    pthread_mutex_unlock(&cl->mu);
    if (stop) psrec_server_stop(s);
    rc = psrec_server_run(s, err);
    if (rc) record(cl, rc, who, err);
    pthread_mutex_lock(&cl->mu);
    r->server = NULL;
    pthread_mutex_unlock(&cl->mu);
    psrec_server_destroy(&s);
    return NULL;
}

psrec_err psrec_cluster_start(psrec_cluster_t **out, void *zctx, const psrec_cluster_conf_t *conf, char *err)
{
    *out = NULL;
    if (conf->servers < 1 || conf->servers > 1024 || conf->workers < 1)
        return psrec_fail(err, PSREC_EINVAL, "need 1..1024 servers and at least one worker");
    psrec_cluster_t *cl = calloc(1, sizeof *cl);
    if (!cl) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    cl->conf = *conf;
    cl->zctx = zctx;
    pthread_mutex_init(&cl->mu, NULL);
    char bind[128];
    if (conf->tcp)
        snprintf(bind, sizeof bind, "tcp://127.0.0.1:0");
    else
        snprintf(bind, sizeof bind, "inproc://psrec-%ld-%p-coord", (long)getpid(), (void *)cl);
    psrec_coord_conf_t cc = {.bind = bind,
                             .sec = conf->sec,
                             .n_servers = conf->servers,
                             .n_workers = conf->workers,
                             .job_id = conf->job_id,
                             .seed = conf->seed,
                             .ntables = conf->ntables,
                             .table_ids = conf->table_ids,
                             .tables = conf->tables,
                             .checkpoint_dir = conf->checkpoint_dir,
                             .checkpoint_steps = conf->checkpoint_steps,
                             .checkpoint_secs = conf->checkpoint_secs,
                             .mtbf_secs = conf->mtbf_secs,
                             .heartbeat_timeout_ms = conf->heartbeat_timeout_ms,
                             .keep_rounds = conf->keep_rounds,
                             .resume = conf->resume,
                             .durability_log = conf->durability_log,
                             .fresh = 1};
    psrec_err rc = psrec_coord_new(&cl->coord, zctx, &cc, err);
    cl->srv = rc ? NULL : calloc((size_t)conf->servers, sizeof *cl->srv);
    if (!rc && !cl->srv) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
    if (!rc) {
        if (pthread_create(&cl->coord_thread, NULL, coord_main, cl) != 0)
            rc = psrec_fail(err, PSREC_ENOMEM, "cannot start the coordinator thread");
        else
            cl->coord_started = 1;
    }
    for (int i = 0; !rc && i < conf->servers; i++) {
        cl->srv[i].cl = cl;
        cl->srv[i].index = i;
        if (pthread_create(&cl->srv[i].thread, NULL, server_main, &cl->srv[i]) != 0)
            rc = psrec_fail(err, PSREC_ENOMEM, "cannot start a server thread");
        else
            cl->srv[i].started = 1;
    }
    if (rc) {
        psrec_cluster_stop(cl);
        char e2[PSREC_ERRBUF];
        psrec_err ignored = psrec_cluster_wait(&cl, e2);
        (void)ignored;
        return rc;
    }
    *out = cl;
    return PSREC_OK;
}

const char *psrec_cluster_coord(const psrec_cluster_t *cl)
{
    return psrec_coord_endpoint(cl->coord);
}

void psrec_cluster_stop(psrec_cluster_t *cl)
{
    if (!cl) return;
    pthread_mutex_lock(&cl->mu);
    cl->stopping = 1;
    for (int i = 0; cl->srv && i < cl->conf.servers; i++)
        if (cl->srv[i].server) psrec_server_stop(cl->srv[i].server);
    pthread_mutex_unlock(&cl->mu);
    if (cl->coord) psrec_coord_stop(cl->coord);
}

psrec_err psrec_cluster_wait(psrec_cluster_t **pcl, char *err)
{
    psrec_cluster_t *cl = *pcl;
    if (!cl) return PSREC_OK;
    if (cl->coord_started) pthread_join(cl->coord_thread, NULL);
    /* the coordinator is done: servers that did not hear "stop" (e.g. it was stopped) must stop too */
    psrec_cluster_stop(cl);
    for (int i = 0; cl->srv && i < cl->conf.servers; i++)
        if (cl->srv[i].started) pthread_join(cl->srv[i].thread, NULL);
    psrec_err rc = cl->first_rc;
    if (rc) psrec_fail(err, rc, "%s", cl->first_err);
    psrec_coord_destroy(&cl->coord);
    free(cl->srv);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
    *pcl = NULL;
    return rc;
}

/* checkpoint_export.c: a model directory from a checkpoint round (worker/checkpoint_export.h).
 * Design: the round's snapshot files are read with ps/snapshot into one psrec_store_t whose seed is the
 * job's (from the manifest), then psrec_model_save runs over a local table client exactly as after a
 * live job. Every file is verified (ps/manifest.h) before any is loaded.
 * Thread model: single-threaded. */
#include "worker/checkpoint_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/data_freq.h"
#include "ps/manifest.h"
#include "ps/snapshot.h"
#include "ps/store.h"
#include "worker/model.h"
#include "worker/table_client.h"

static void warn(const char *line, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "psrec export: %s\n", line);
}

/* Loads every snapshot of the round into a new store with the tables of the first one. */
static psrec_err load_round(const char *ckpt_dir, const psrec_manifest_t *m, psrec_store_t **out, char *err)
{
    char dir[4096], path[4200];
    psrec_manifest_round_dir(ckpt_dir, m->round, dir, sizeof dir);
    if (m->nfiles == 0) return psrec_fail(err, PSREC_ECORRUPT, "%s: the round lists no snapshot", dir);
    psrec_snapshot_meta_t meta;
    psrec_snapshot_info_t info;
    snprintf(path, sizeof path, "%s/%s", dir, m->files[0]);
    psrec_err rc = psrec_snapshot_info(path, &meta, &info, err);
    if (rc) return rc;
    if ((rc = psrec_store_new(out, m->seed, 64))) return psrec_fail(err, rc, "cannot create a store");
    for (uint32_t t = 0; !rc && t < info.ntables; t++)
        rc = psrec_store_add_table(*out, info.ids[t], &info.conf[t], err);
    for (uint32_t i = 0; !rc && i < m->nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, m->files[i]);
        rc = psrec_snapshot_load(path, *out, NULL, NULL, &meta, NULL, NULL, err);
    }
    if (rc) psrec_store_destroy(out);
    return rc;
}

psrec_err psrec_checkpoint_export(const char *ckpt_dir, uint64_t round, const char *data_dir, const char *model_dir,
                                  uint64_t *used_round, char *err)
{
    psrec_manifest_t m;
    memset(&m, 0, sizeof m);
    psrec_err rc =
        round ? psrec_manifest_read(ckpt_dir, round, &m, err) : psrec_manifest_latest(ckpt_dir, &m, warn, NULL, err);
    if (rc == PSREC_ENOTFOUND && !round)
        return psrec_fail(err, rc, "%s: no complete checkpoint round (%s)", ckpt_dir, err);
    if (rc) return rc;
    psrec_model_conf_t conf;
    psrec_store_t *store = NULL;
    psrec_table_client_t *client = NULL;
    psrec_freq_t freq;
    memset(&freq, 0, sizeof freq);
    char path[4096];
    snprintf(path, sizeof path, "%s/freq.bin", data_dir);
    rc = psrec_model_load_conf(ckpt_dir, &conf, err);
    if (!rc) rc = psrec_freq_load(&freq, path, err);
    if (!rc) rc = load_round(ckpt_dir, &m, &store, err);
    if (!rc && (rc = psrec_table_client_new_local(&client, store))) psrec_fail(err, rc, "cannot create a client");
    if (!rc) rc = psrec_model_save(model_dir, &conf, client, psrec_model_store_dump, store, freq.ids, freq.n, err);
    if (!rc && used_round) *used_round = m.round;
    psrec_table_client_destroy(&client);
    psrec_store_destroy(&store);
    psrec_freq_free(&freq);
    psrec_manifest_free(&m);
    return rc;
}

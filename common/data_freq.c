/* data_freq.c: the item catalogue with positive counts, counted on an idmap and stored as a durable
 * file (docs/data-format.md, "Frequency file").
 *
 * Design: counting is one idmap upsert per id (no per-id allocation); the sorted snapshot is built
 * once at the end. The file is little-endian: magic "PSRECFQ1", n (u64), then n (id u64, count u64)
 * pairs with ids strictly ascending; the durable trailer's XXH64 covers it, and the loader also
 * checks n against the payload length before allocating and that ids ascend.
 * Thread model: a counter has one owner; psrec_freq_t is plain data. */
#include "common/data_freq.h"

#include <stdlib.h>
#include <string.h>

#include "common/durable.h"
#include "common/endian.h"
#include "common/idmap.h"

#define FREQ_MAGIC "PSRECFQ1"
#define FREQ_HEADER 16
#define FREQ_ENTRY 16

struct psrec_freq_counter {
    psrec_idmap_t *m;
};

psrec_err psrec_freq_counter_new(psrec_freq_counter_t **out)
{
    *out = NULL;
    psrec_freq_counter_t *c = calloc(1, sizeof *c);
    if (!c) return PSREC_ENOMEM;
    if (psrec_idmap_new(&c->m, 1024)) {
        free(c);
        return PSREC_ENOMEM;
    }
    *out = c;
    return PSREC_OK;
}

void psrec_freq_counter_destroy(psrec_freq_counter_t **c)
{
    if (!c || !*c) return;
    psrec_idmap_destroy(&(*c)->m);
    free(*c);
    *c = NULL;
}

psrec_err psrec_freq_counter_touch(psrec_freq_counter_t *c, uint64_t id, uint64_t add)
{
    uint64_t *v = psrec_idmap_upsert(c->m, id, 0, NULL);
    if (!v) return PSREC_ENOMEM;
    *v += add;
    return PSREC_OK;
}

psrec_err psrec_freq_counter_add(psrec_freq_counter_t *c, const psrec_batch_t *b, int hist_slot)
{
    if (hist_slot >= b->nslots) return PSREC_EINVAL;
    for (size_t i = 0; i < b->n; i++) {
        for (uint32_t k = b->pos_off[i]; k < b->pos_off[i + 1]; k++)
            if (psrec_freq_counter_touch(c, b->pos_id[k], 1)) return PSREC_ENOMEM;
        if (hist_slot < 0) continue;
        for (uint32_t k = b->slot_off[hist_slot][i]; k < b->slot_off[hist_slot][i + 1]; k++)
            if (psrec_freq_counter_touch(c, b->slot_id[hist_slot][k], 0)) return PSREC_ENOMEM;
    }
    return PSREC_OK;
}

typedef struct {
    uint64_t id, count;
} pair_t;

static int cmp_pair(const void *a, const void *b)
{
    uint64_t x = ((const pair_t *)a)->id, y = ((const pair_t *)b)->id;
    return (x > y) - (x < y);
}

static psrec_err alloc_freq(psrec_freq_t *f, size_t n)
{
    f->n = 0;
    f->ids = malloc((n ? n : 1) * sizeof *f->ids);
    f->counts = malloc((n ? n : 1) * sizeof *f->counts);
    if (!f->ids || !f->counts) {
        psrec_freq_free(f);
        return PSREC_ENOMEM;
    }
    f->n = n;
    return PSREC_OK;
}

psrec_err psrec_freq_counter_result(const psrec_freq_counter_t *c, psrec_freq_t *f)
{
    memset(f, 0, sizeof *f);
    size_t n = psrec_idmap_size(c->m), it = 0, k = 0;
    pair_t *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return PSREC_ENOMEM;
    while (k < n && psrec_idmap_next(c->m, &it, &p[k].id, &p[k].count))
        k++;
    qsort(p, k, sizeof *p, cmp_pair);
    if (alloc_freq(f, k)) {
        free(p);
        return PSREC_ENOMEM;
    }
    for (size_t i = 0; i < k; i++) {
        f->ids[i] = p[i].id;
        f->counts[i] = p[i].count;
    }
    free(p);
    return PSREC_OK;
}

psrec_err psrec_freq_save(const psrec_freq_t *f, const char *path, char *err)
{
    for (size_t i = 1; i < f->n; i++)
        if (f->ids[i] <= f->ids[i - 1])
            return psrec_fail(err, PSREC_EINVAL, "%s: ids are not strictly ascending at entry %zu", path, i);
    psrec_dfile_t *d;
    psrec_err rc = psrec_dfile_open(&d, path, err);
    if (rc) return rc;
    unsigned char buf[4096];
    memcpy(buf, FREQ_MAGIC, 8);
    psrec_put64(buf + 8, f->n);
    size_t used = FREQ_HEADER;
    for (size_t i = 0; i < f->n && !rc; i++) {
        if (used + FREQ_ENTRY > sizeof buf) {
            rc = psrec_dfile_write(d, buf, used, err);
            used = 0;
        }
        psrec_put64(buf + used, f->ids[i]);
        psrec_put64(buf + used + 8, f->counts[i]);
        used += FREQ_ENTRY;
    }
    if (!rc) rc = psrec_dfile_write(d, buf, used, err);
    if (rc) {
        psrec_dfile_abort(&d);
        return rc;
    }
    return psrec_dfile_commit(&d, err);
}

psrec_err psrec_freq_load(psrec_freq_t *f, const char *path, char *err)
{
    memset(f, 0, sizeof *f);
    void *buf;
    size_t len;
    psrec_err rc = psrec_dfile_read_all(path, &buf, &len, err);
    if (rc) return rc;
    const unsigned char *p = buf;
    if (len < FREQ_HEADER || memcmp(p, FREQ_MAGIC, 8) != 0) {
        free(buf);
        return psrec_fail(err, PSREC_ECORRUPT, "%s: not a psrec frequency file", path);
    }
    uint64_t n = psrec_get64(p + 8);
    if (n != (len - FREQ_HEADER) / FREQ_ENTRY || (len - FREQ_HEADER) % FREQ_ENTRY != 0) {
        free(buf);
        return psrec_fail(err, PSREC_ECORRUPT, "%s: entry count %llu does not match the file size", path,
                          (unsigned long long)n);
    }
    if (alloc_freq(f, (size_t)n)) {
        free(buf);
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++) {
        f->ids[i] = psrec_get64(p + FREQ_HEADER + i * FREQ_ENTRY);
        f->counts[i] = psrec_get64(p + FREQ_HEADER + i * FREQ_ENTRY + 8);
        if (i > 0 && f->ids[i] <= f->ids[i - 1]) {
            free(buf);
            psrec_freq_free(f);
            return psrec_fail(err, PSREC_ECORRUPT, "%s: ids not ascending at entry %zu", path, i);
        }
    }
    free(buf);
    return PSREC_OK;
}

void psrec_freq_free(psrec_freq_t *f)
{
    if (!f) return;
    free(f->ids);
    free(f->counts);
    memset(f, 0, sizeof *f);
}

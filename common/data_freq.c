/* data_freq.c: the item catalogue with positive counts, counted on an idmap and stored as a durable
 * file (docs/data-format.md §3, "Frequency file").
 *
 * Design: counting is one idmap upsert per id (no per-id allocation); the sorted snapshot is built
 * once at the end. The file (version 2) is columnar and little-endian: magic "PSRECFQ2", n, flags,
 * total (u64 each), then n ids unless the DENSE flag says they are 0..n-1, then n counts; every
 * column starts at an 8-aligned offset, so a little-endian host maps the file read-only and shared
 * (psrec_dfile_map) and reads ids and counts in place: the worker processes of one machine share
 * one copy in the page cache instead of each holding O(n) malloc'ed arrays, and a DENSE catalogue
 * (`psrec prep --catalogue N`) needs no ids at all. The loader checks the durable checksum over the
 * mapping, n against the payload length, the ids ascending and the counts summing to total, one
 * chunk at a time, dropping each chunk from the resident set after it is checked. Version 1 files
 * ("PSRECFQ1", n, then (id, count) pairs) are still read, copied into malloc'ed arrays, as is any
 * file on a big-endian host.
 * Thread model: a counter has one owner; psrec_freq_t is plain data, read-only once loaded. */
#include "common/data_freq.h"

#include <stdlib.h>
#include <string.h>

#include "common/durable.h"
#include "common/endian.h"
#include "common/idmap.h"

#define FREQ_MAGIC_V1 "PSRECFQ1"
#define FREQ_MAGIC "PSRECFQ2"
#define FREQ_HEADER_V1 16
#define FREQ_ENTRY_V1 16
#define FREQ_HEADER 32               /* magic, n, flags, total */
#define FREQ_DENSE 1ULL              /* flags: no ids on disk, they are 0..n-1 */
#define CHECK_STEP ((size_t)1 << 20) /* entries checked between two resident-set drops (8 MB) */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_LE 1
#else
#define HOST_LE 0
#endif

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
    memset(f, 0, sizeof *f);
    f->ids = malloc((n ? n : 1) * sizeof *f->ids);
    f->counts = malloc((n ? n : 1) * sizeof *f->counts);
    if (!f->ids || !f->counts) {
        psrec_freq_free(f);
        return PSREC_ENOMEM;
    }
    f->n = n;
    return PSREC_OK;
}

/* dense and total of a catalogue whose ids (if any) are known to ascend strictly */
static void finish_freq(psrec_freq_t *f)
{
    f->dense = !f->ids || (f->n > 0 && f->ids[0] == 0 && f->ids[f->n - 1] == f->n - 1);
    f->total = 0;
    for (size_t i = 0; i < f->n; i++)
        f->total += f->counts[i];
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
    finish_freq(f);
    return PSREC_OK;
}

/* ---- save ---- */

typedef struct {
    psrec_dfile_t *d;
    unsigned char buf[1 << 16];
    size_t used;
} writer_t;

static psrec_err put(writer_t *w, uint64_t v, char *err)
{
    if (w->used == sizeof w->buf) {
        psrec_err rc = psrec_dfile_write(w->d, w->buf, w->used, err);
        if (rc) return rc;
        w->used = 0;
    }
    psrec_put64(w->buf + w->used, v);
    w->used += 8;
    return PSREC_OK;
}

/* Opens path and writes the header; *out stays NULL if nothing was opened. */
static psrec_err begin(writer_t **out, const char *path, uint64_t n, uint64_t flags, uint64_t total, char *err)
{
    *out = NULL;
    writer_t *w = malloc(sizeof *w);
    if (!w) return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    psrec_err rc = psrec_dfile_open(&w->d, path, err);
    if (rc) {
        free(w);
        return rc;
    }
    memcpy(w->buf, FREQ_MAGIC, 8);
    w->used = 8;
    rc = put(w, n, err);
    if (!rc) rc = put(w, flags, err);
    if (!rc) rc = put(w, total, err);
    *out = w;
    return rc;
}

static psrec_err end(writer_t *w, psrec_err rc, char *err)
{
    if (!rc && w->used) rc = psrec_dfile_write(w->d, w->buf, w->used, err);
    rc = psrec_dfile_finish(&w->d, rc, err);
    free(w);
    return rc;
}

psrec_err psrec_freq_save(const psrec_freq_t *f, const char *path, char *err)
{
    if (!f->ids && !f->dense && f->n > 0)
        return psrec_fail(err, PSREC_EINVAL, "%s: a catalogue without ids must be dense", path);
    for (size_t i = 1; f->ids && i < f->n; i++)
        if (f->ids[i] <= f->ids[i - 1])
            return psrec_fail(err, PSREC_EINVAL, "%s: ids are not strictly ascending at entry %zu", path, i);
    uint64_t total = 0;
    for (size_t i = 0; i < f->n; i++)
        total += f->counts[i];
    writer_t *w;
    psrec_err rc = begin(&w, path, f->n, f->ids ? 0 : FREQ_DENSE, total, err);
    if (!w) return rc;
    for (size_t i = 0; !rc && f->ids && i < f->n; i++)
        rc = put(w, f->ids[i], err);
    for (size_t i = 0; !rc && i < f->n; i++)
        rc = put(w, f->counts[i], err);
    return end(w, rc, err);
}

psrec_err psrec_freq_save_dense(const psrec_freq_t *seen, uint64_t n, const char *path, char *err)
{
    /* the smallest id >= n: seen ascends, so it is the first entry past a binary search */
    size_t lo = 0, hi = seen->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (psrec_freq_id(seen, mid) < n)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < seen->n)
        return psrec_fail(err, PSREC_EINVAL, "%s: id %llu is not in the catalogue 0..%llu", path,
                          (unsigned long long)psrec_freq_id(seen, lo), (unsigned long long)n - 1);
    for (size_t i = 1; seen->ids && i < seen->n; i++)
        if (seen->ids[i] <= seen->ids[i - 1])
            return psrec_fail(err, PSREC_EINVAL, "%s: ids are not strictly ascending at entry %zu", path, i);
    uint64_t total = 0;
    for (size_t i = 0; i < seen->n; i++)
        total += seen->counts[i];
    writer_t *w;
    psrec_err rc = begin(&w, path, n, FREQ_DENSE, total, err);
    if (!w) return rc;
    size_t k = 0;
    for (uint64_t id = 0; !rc && id < n; id++) {
        uint64_t c = 0;
        if (k < seen->n && psrec_freq_id(seen, k) == id) c = seen->counts[k++];
        rc = put(w, c, err);
    }
    return end(w, rc, err);
}

/* ---- load ---- */

static psrec_err load_v1(psrec_freq_t *f, const unsigned char *p, size_t len, const char *path, char *err)
{
    uint64_t n = psrec_get64(p + 8);
    if (n != (len - FREQ_HEADER_V1) / FREQ_ENTRY_V1 || (len - FREQ_HEADER_V1) % FREQ_ENTRY_V1 != 0)
        return psrec_fail(err, PSREC_ECORRUPT, "%s: entry count %llu does not match the file size", path,
                          (unsigned long long)n);
    if (alloc_freq(f, (size_t)n)) return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        f->ids[i] = psrec_get64(p + FREQ_HEADER_V1 + i * FREQ_ENTRY_V1);
        f->counts[i] = psrec_get64(p + FREQ_HEADER_V1 + i * FREQ_ENTRY_V1 + 8);
        if (i > 0 && f->ids[i] <= f->ids[i - 1])
            return psrec_fail(err, PSREC_ECORRUPT, "%s: ids not ascending at entry %zu", path, i);
    }
    finish_freq(f);
    return PSREC_OK;
}

/* Version 2 over the mapping p (len payload bytes): checks, then points f into it (or copies on a
 * big-endian host). */
static psrec_err load_v2(psrec_freq_t *f, const unsigned char *p, size_t len, const char *path, char *err)
{
    uint64_t n = psrec_get64(p + 8), flags = psrec_get64(p + 16), total = psrec_get64(p + 24);
    if (flags & ~FREQ_DENSE)
        return psrec_fail(err, PSREC_EVERSION, "%s: unknown flags 0x%llx (written by a newer psrec?)", path,
                          (unsigned long long)flags);
    const int dense = (flags & FREQ_DENSE) != 0;
    const size_t per = dense ? 8 : 16, body = len - FREQ_HEADER;
    if (n > body / per || n * per != body)
        return psrec_fail(err, PSREC_ECORRUPT, "%s: entry count %llu does not match the file size", path,
                          (unsigned long long)n);
    const unsigned char *ids = dense ? NULL : p + FREQ_HEADER, *counts = p + FREQ_HEADER + (dense ? 0 : 8 * n);
    /* the checks, a chunk at a time, each chunk dropped from the resident set once read */
    uint64_t sum = 0, prev = 0;
    for (size_t i0 = 0; i0 < n; i0 += CHECK_STEP) {
        size_t i1 = n - i0 < CHECK_STEP ? (size_t)n : i0 + CHECK_STEP;
        for (size_t i = i0; ids && i < i1; i++) {
            uint64_t id = psrec_get64(ids + 8 * i);
            if (i > 0 && id <= prev)
                return psrec_fail(err, PSREC_ECORRUPT, "%s: ids not ascending at entry %zu", path, i);
            prev = id;
        }
        for (size_t i = i0; i < i1; i++)
            sum += psrec_get64(counts + 8 * i);
        if (ids) psrec_dfile_map_drop(p, (size_t)(ids - p) + 8 * i0, 8 * (i1 - i0));
        psrec_dfile_map_drop(p, (size_t)(counts - p) + 8 * i0, 8 * (i1 - i0));
    }
    if (sum != total)
        return psrec_fail(err, PSREC_ECORRUPT, "%s: counts sum to %llu, the header says %llu", path,
                          (unsigned long long)sum, (unsigned long long)total);
    if (!HOST_LE) { /* the file's byte order is not the host's: a converted copy */
        if (alloc_freq(f, (size_t)n)) return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; i < n; i++) {
            f->ids[i] = ids ? psrec_get64(ids + 8 * i) : (uint64_t)i;
            f->counts[i] = psrec_get64(counts + 8 * i);
        }
        finish_freq(f);
        return PSREC_OK;
    }
    f->n = (size_t)n;
    f->ids = (uint64_t *)(uintptr_t)ids; /* read-only: the mapping is PROT_READ */
    f->counts = (uint64_t *)(uintptr_t)counts;
    f->dense = dense || (n > 0 && psrec_get64(ids) == 0 && psrec_get64(ids + 8 * (n - 1)) == n - 1);
    f->total = total;
    return PSREC_OK;
}

psrec_err psrec_freq_load(psrec_freq_t *f, const char *path, char *err)
{
    memset(f, 0, sizeof *f);
    const void *map;
    size_t len;
    psrec_err rc = psrec_dfile_map(path, &map, &len, err);
    if (rc) return rc;
    const unsigned char *p = map;
    if (len >= FREQ_HEADER_V1 && memcmp(p, FREQ_MAGIC_V1, 8) == 0) {
        rc = load_v1(f, p, len, path, err);
    } else if (len >= FREQ_HEADER && memcmp(p, FREQ_MAGIC, 8) == 0) {
        rc = load_v2(f, p, len, path, err);
        if (!rc && HOST_LE && f->n > 0) { /* f points into the mapping: it owns it */
            f->map = map;
            f->map_len = len;
            map = NULL;
        }
    } else {
        rc = psrec_fail(err, PSREC_ECORRUPT, "%s: not a psrec frequency file", path);
    }
    psrec_dfile_unmap(map, len);
    if (rc) psrec_freq_free(f);
    if (!rc && f->n == 0) memset(f, 0, sizeof *f);
    return rc;
}

void psrec_freq_free(psrec_freq_t *f)
{
    if (!f) return;
    if (f->map) {
        psrec_dfile_unmap(f->map, f->map_len);
    } else {
        free(f->ids);
        free(f->counts);
    }
    memset(f, 0, sizeof *f);
}

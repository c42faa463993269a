/* batch.c: growable CSR arrays for examples (see batch.h). Design: an example is appended in place
 * (begin/add/end) so readers never build temporary per-example objects; abort rolls the tails back,
 * which is how a malformed line leaves no trace. Thread model: single owner. */
#include "common/batch.h"

#include <stdlib.h>
#include <string.h>

int psrec_schema_find(const psrec_schema_t *s, const char *name, size_t len)
{
    for (int i = 0; i < s->nslots; i++)
        if (strlen(s->name[i]) == len && memcmp(s->name[i], name, len) == 0) return i;
    return -1;
}

int psrec_schema_add(psrec_schema_t *s, const char *name, size_t len)
{
    if (len == 0 || len >= PSREC_SLOT_NAME_MAX || s->nslots >= PSREC_MAX_SLOTS) return -1;
    int i = psrec_schema_find(s, name, len);
    if (i >= 0) return i;
    memcpy(s->name[s->nslots], name, len);
    s->name[s->nslots][len] = '\0';
    return s->nslots++;
}

int psrec_schema_hist(const psrec_schema_t *s)
{
    return psrec_schema_find(s, PSREC_HIST_SLOT, strlen(PSREC_HIST_SLOT));
}

static int reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

void psrec_batch_init(psrec_batch_t *b, int nslots)
{
    memset(b, 0, sizeof *b);
    b->nslots = nslots;
}

void psrec_batch_free(psrec_batch_t *b)
{
    free(b->pos_off);
    free(b->pos_id);
    free(b->pos_w);
    for (int s = 0; s < PSREC_MAX_SLOTS; s++) {
        free(b->slot_off[s]);
        free(b->slot_id[s]);
    }
    free(b->home_off);
    free(b->home_cat);
    memset(b, 0, sizeof *b);
}

void psrec_batch_clear(psrec_batch_t *b)
{
    b->n = 0;
    if (b->pos_off) b->pos_off[0] = 0;
    if (b->home_off) b->home_off[0] = 0;
    for (int s = 0; s < b->nslots; s++)
        if (b->slot_off[s]) b->slot_off[s][0] = 0;
}

/* Offsets arrays hold cap_ex+2 entries: n+1 for complete examples plus one under construction. */
static psrec_err reserve_ex(psrec_batch_t *b, size_t need)
{
    if (need + 2 <= b->cap_ex) return PSREC_OK;
    size_t nc = b->cap_ex ? b->cap_ex * 2 : 64;
    while (nc < need + 2)
        nc *= 2;
    uint32_t *p;
    if (!(p = realloc(b->pos_off, nc * sizeof *p))) return PSREC_ENOMEM;
    b->pos_off = p;
    if (!(p = realloc(b->home_off, nc * sizeof *p))) return PSREC_ENOMEM;
    b->home_off = p;
    for (int s = 0; s < b->nslots; s++) {
        if (!(p = realloc(b->slot_off[s], nc * sizeof *p))) return PSREC_ENOMEM;
        b->slot_off[s] = p;
    }
    if (b->cap_ex == 0) {
        b->pos_off[0] = 0;
        b->home_off[0] = 0;
        for (int s = 0; s < b->nslots; s++)
            b->slot_off[s][0] = 0;
    }
    b->cap_ex = nc;
    return PSREC_OK;
}

psrec_err psrec_batch_set_nslots(psrec_batch_t *b, int nslots)
{
    if (nslots > PSREC_MAX_SLOTS) return PSREC_EINVAL;
    for (int s = b->nslots; s < nslots; s++) {
        if (b->cap_ex) {
            b->slot_off[s] = calloc(b->cap_ex, sizeof(uint32_t)); /* all examples empty */
            if (!b->slot_off[s]) return PSREC_ENOMEM;
        }
        b->nslots = s + 1;
    }
    return PSREC_OK;
}

psrec_err psrec_batch_begin(psrec_batch_t *b)
{
    if (reserve_ex(b, b->n + 1)) return PSREC_ENOMEM;
    size_t n = b->n;
    b->pos_off[n + 1] = b->pos_off[n];
    b->home_off[n + 1] = b->home_off[n];
    for (int s = 0; s < b->nslots; s++)
        b->slot_off[s][n + 1] = b->slot_off[s][n];
    return PSREC_OK;
}

psrec_err psrec_batch_add_pos(psrec_batch_t *b, uint64_t id, float w)
{
    size_t k = b->pos_off[b->n + 1];
    size_t cap = b->cap_pos;
    if (reserve((void **)&b->pos_id, &cap, k + 1, sizeof *b->pos_id)) return PSREC_ENOMEM;
    cap = b->cap_pos;
    if (reserve((void **)&b->pos_w, &cap, k + 1, sizeof *b->pos_w)) return PSREC_ENOMEM;
    b->cap_pos = cap;
    b->pos_id[k] = id;
    b->pos_w[k] = w;
    b->pos_off[b->n + 1] = (uint32_t)(k + 1);
    return PSREC_OK;
}

psrec_err psrec_batch_add_slot(psrec_batch_t *b, int slot, uint64_t id)
{
    if (slot < 0 || slot >= b->nslots) return PSREC_EINVAL;
    size_t k = b->slot_off[slot][b->n + 1];
    if (reserve((void **)&b->slot_id[slot], &b->cap_slot[slot], k + 1, sizeof(uint64_t))) return PSREC_ENOMEM;
    b->slot_id[slot][k] = id;
    b->slot_off[slot][b->n + 1] = (uint32_t)(k + 1);
    return PSREC_OK;
}

psrec_err psrec_batch_add_home(psrec_batch_t *b, uint32_t cat)
{
    size_t k = b->home_off[b->n + 1];
    if (reserve((void **)&b->home_cat, &b->cap_home, k + 1, sizeof *b->home_cat)) return PSREC_ENOMEM;
    b->home_cat[k] = cat;
    b->home_off[b->n + 1] = (uint32_t)(k + 1);
    return PSREC_OK;
}

void psrec_batch_end(psrec_batch_t *b)
{
    size_t a = b->pos_off[b->n], e = b->pos_off[b->n + 1];
    double sum = 0;
    for (size_t k = a; k < e; k++)
        sum += b->pos_w[k];
    if (sum > 0)
        for (size_t k = a; k < e; k++)
            b->pos_w[k] = (float)(b->pos_w[k] / sum);
    b->n++;
}

void psrec_batch_abort(psrec_batch_t *b)
{
    /* nothing to roll back: the next begin() resets the tails from the n-th offsets */
    (void)b;
}

psrec_err psrec_batch_copy_example(psrec_batch_t *dst, const psrec_batch_t *src, size_t i)
{
    if (dst->nslots < src->nslots) return PSREC_EINVAL;
    psrec_err rc = psrec_batch_begin(dst);
    for (uint32_t k = src->pos_off[i]; rc == PSREC_OK && k < src->pos_off[i + 1]; k++)
        rc = psrec_batch_add_pos(dst, src->pos_id[k], src->pos_w[k]);
    for (int s = 0; s < src->nslots; s++)
        for (uint32_t k = src->slot_off[s][i]; rc == PSREC_OK && k < src->slot_off[s][i + 1]; k++)
            rc = psrec_batch_add_slot(dst, s, src->slot_id[s][k]);
    for (uint32_t k = src->home_off[i]; rc == PSREC_OK && k < src->home_off[i + 1]; k++)
        rc = psrec_batch_add_home(dst, src->home_cat[k]);
    if (rc) return rc;
    /* weights are already normalised; end() renormalises, which is a no-op up to rounding */
    psrec_batch_end(dst);
    return PSREC_OK;
}

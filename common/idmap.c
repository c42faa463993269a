/* idmap.c: linear-probing uint64 -> uint64 map. Design: 16-byte slots in one array (one cache line
 * holds four), keys hashed with splitmix's finaliser so dense ids 0..n spread; the sentinel key
 * EMPTY is stored out of line so callers may use every uint64. Thread model: single owner. */
#include "common/idmap.h"

#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

#define EMPTY UINT64_MAX

typedef struct {
    uint64_t key;
    uint64_t val;
} slot_t;

struct psrec_idmap {
    slot_t *slots;
    size_t cap; /* power of two */
    size_t n;   /* entries in slots (not counting the sentinel key) */
    int has_empty_key;
    uint64_t empty_key_val;
};

static slot_t *alloc_slots(size_t cap)
{
    slot_t *s = malloc(cap * sizeof *s);
    if (s) memset(s, 0xff, cap * sizeof *s);
    return s;
}

psrec_err psrec_idmap_new(psrec_idmap_t **out, size_t expected)
{
    *out = NULL;
    psrec_idmap_t *m = calloc(1, sizeof *m);
    if (!m) return PSREC_ENOMEM;
    size_t cap = 16;
    while (cap < expected * 2)
        cap <<= 1;
    m->slots = alloc_slots(cap);
    if (!m->slots) {
        free(m);
        return PSREC_ENOMEM;
    }
    m->cap = cap;
    *out = m;
    return PSREC_OK;
}

void psrec_idmap_destroy(psrec_idmap_t **m)
{
    if (!m || !*m) return;
    free((*m)->slots);
    free(*m);
    *m = NULL;
}

static size_t find(const psrec_idmap_t *m, uint64_t key)
{
    size_t mask = m->cap - 1, i = psrec_mix64(key) & mask;
    while (m->slots[i].key != key && m->slots[i].key != EMPTY)
        i = (i + 1) & mask;
    return i;
}

uint64_t psrec_idmap_get(const psrec_idmap_t *m, uint64_t key, int *found)
{
    if (key == EMPTY) {
        if (found) *found = m->has_empty_key;
        return m->has_empty_key ? m->empty_key_val : 0;
    }
    size_t i = find(m, key);
    int f = m->slots[i].key == key;
    if (found) *found = f;
    return f ? m->slots[i].val : 0;
}

static int grow(psrec_idmap_t *m)
{
    size_t ncap = m->cap * 2;
    slot_t *old = m->slots, *ns = alloc_slots(ncap);
    if (!ns) return -1;
    size_t ocap = m->cap;
    m->slots = ns;
    m->cap = ncap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].key != EMPTY) m->slots[find(m, old[i].key)] = old[i];
    free(old);
    return 0;
}

uint64_t *psrec_idmap_upsert(psrec_idmap_t *m, uint64_t key, uint64_t init, int *inserted)
{
    if (key == EMPTY) {
        if (inserted) *inserted = !m->has_empty_key;
        if (!m->has_empty_key) {
            m->has_empty_key = 1;
            m->empty_key_val = init;
        }
        return &m->empty_key_val;
    }
    size_t i = find(m, key);
    if (m->slots[i].key == key) {
        if (inserted) *inserted = 0;
        return &m->slots[i].val;
    }
    if ((m->n + 1) * 2 > m->cap) {
        if (grow(m) != 0) return NULL;
        i = find(m, key);
    }
    m->slots[i].key = key;
    m->slots[i].val = init;
    m->n++;
    if (inserted) *inserted = 1;
    return &m->slots[i].val;
}

psrec_err psrec_idmap_put(psrec_idmap_t *m, uint64_t key, uint64_t value)
{
    uint64_t *v = psrec_idmap_upsert(m, key, value, NULL);
    if (!v) return PSREC_ENOMEM;
    *v = value;
    return PSREC_OK;
}

size_t psrec_idmap_size(const psrec_idmap_t *m)
{
    return m->n + (size_t)m->has_empty_key;
}

void psrec_idmap_clear(psrec_idmap_t *m)
{
    memset(m->slots, 0xff, m->cap * sizeof *m->slots);
    m->n = 0;
    m->has_empty_key = 0;
}

int psrec_idmap_next(const psrec_idmap_t *m, size_t *it, uint64_t *key, uint64_t *value)
{
    while (*it < m->cap) {
        size_t i = (*it)++;
        if (m->slots[i].key != EMPTY) {
            *key = m->slots[i].key;
            *value = m->slots[i].val;
            return 1;
        }
    }
    if (*it == m->cap && m->has_empty_key) {
        (*it)++;
        *key = EMPTY;
        *value = m->empty_key_val;
        return 1;
    }
    return 0;
}

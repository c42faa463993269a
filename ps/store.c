/* store.c: the parameter store of one server (ps/store.h): per table, uint64 key -> row of `dim` weights
 * followed by the optimizer state (ps/optim.h), created on first touch with a deterministic init.
 *
 * Design.
 * - Each table is split into nlocks stripes by a salted hash of the key (the high 32 bits of
 *   psrec_mix64(key ^ SALT); salted so the split is independent of any shard map built on
 *   psrec_mix64(key)). A stripe owns a mutex, an open-addressing hash table and its slabs.
 * - Hash table: 12-byte slots {key, uint32 row index}, linear probing, home slot by multiply-shift of
 *   the low 32 hash bits (any capacity, not only powers of two), grown by 1.5x when 70% full, so the load
 *   stays within [0.47, 0.70] and a row costs 17-26 bytes of table. An empty slot has row UINT32_MAX,
 *   so every uint64 is a valid key. There are no deletions (no tombstones).
 * - Rows live in slabs that are never moved or freed before destroy, so a row pointer stays valid while
 *   the stripe grows. Slab sizes: 16, 16, 32, 64, ... rows (doubling, malloc'd) up to 2^L rows, then 2^L
 *   each, where 2^L is the largest power of two with a slab <= 512 KiB (L in [6, 16]). A small table
 *   costs little; a big one wastes at most one partly filled slab per stripe. Full-size slabs are carved
 *   from per-table anonymous mappings advised for transparent huge pages (and so are hash arrays of
 *   4 MiB or more): random row access misses the TLB far less (pulls of 1e6 rows of dim 64 ran 1.3-1.7x
 *   faster here). A fork()ed snapshot then copies-on-write in 2 MiB units.
 * - psrec_store_bytes_per_row counts every byte the table allocated (slabs, hash slots, slab directory,
 *   stripe array) over its rows: at d=32 with row-wise Adagrad that is 132 bytes of payload plus ~20-30.
 *   Address space reserved for the arena but not yet carved is not counted (never touched).
 * - Calls are processed in chunks of CHUNK keys: hash every key once, counting-sort the chunk by stripe,
 *   then take each touched stripe's lock once and run its keys through a software pipeline (home slot
 *   prefetched PREFETCH_SLOT keys ahead, row prefetched as soon as found and used PREFETCH_ROW keys
 *   later). No allocation per call or per row except when a stripe grows.
 * - max_rows (per table) is checked for the whole call before anything is applied: the call first counts
 *   its keys that have no row yet (a repeated new key counts twice), reserves that many rows of the
 *   table's capacity atomically, and fails with PSREC_EFULL, changing nothing, if they do not fit.
 *   Unused reservations are returned at the end of the call. Without max_rows this pass is skipped.
 * - 16-bit rows (conf.dtype f16/bf16): the weights are stored as dim 16-bit values packed two to a
 *   32-bit word, the optimizer state stays float32 after them; a pull widens, a push widens the row into
 *   a per-call float buffer, runs the optimizer and rounds back to nearest even, a set rounds. So a
 *   d=32 row-wise Adagrad row is 17 words (68 bytes) instead of 33 (132).
 * - Init: the row's RNG is psrec_rng_seed(seed ^ psrec_mix64(TABLE_SALT + table), key), so a row's first
 *   value depends only on (seed, table, key), not on the order or place of its creation.
 *
 * - Checkpoints see whole rows: foreach_raw hands out weights and optimizer state (`stride` floats), in a
 *   scrambled slot order (a golden-ratio stride, see there: hash order would make reloading quadratic), and
 *   put_raw writes them back through the same chunked path as set (OP_RAW: no init, no state reset), so a
 *   restored row continues exactly (Adam's step count included). The table's conf is kept as added.
 *
 * Thread model: every call is thread-safe. Tables are published once (add_table under a store mutex,
 * then an atomic pointer read by everyone); a stripe's rows and hash table are only touched under its
 * mutex, which a call takes once per chunk per stripe it touches, never two at a time (no lock order
 * issues). Row counts are atomics. */
#include "ps/store.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/rng.h"
#include "ps/optim.h"

#define MAX_LOCKS 1024
#define MAX_DIM (1u << 20)
#define CHUNK 4096       /* keys grouped by stripe per pass (uint16 counts) */
#define PREFETCH_SLOT 16 /* keys ahead whose home slot is prefetched */
#define PREFETCH_ROW 8   /* keys between a row's lookup (and prefetch) and its use */
#define RING 16          /* row pointers in flight (power of two > PREFETCH_ROW) */
#define EMPTY_ROW UINT32_MAX
#define MAX_STRIPE_ROWS (UINT32_MAX - 1u)
#define HASH_MIN_CAP 16
#define SLAB_MIN_LOG 4
#define SLAB_TARGET_BYTES (512u << 10)
#define HUGE_PAGE ((size_t)2 << 20)
#define SEG_MIN ((size_t)16 << 20) /* first arena segment; doubling up to SEG_MAX */
#define SEG_MAX ((size_t)1 << 30)
#define HASH_MMAP_MIN ((size_t)4 << 20) /* hash arrays at least this big get their own huge-page mapping */
#define HASH_SALT 0x2545f4914f6cdd1dULL
#define TABLE_SALT 0x7461626c65000000ULL /* "table" */

typedef struct __attribute__((packed)) {
    uint64_t key;
    uint32_t row; /* EMPTY_ROW = free slot */
} slot_t;
_Static_assert(sizeof(slot_t) == 12, "hash slots are 12 bytes");

/* The arena of full-size slabs: segments of 16 MiB doubling to 1 GiB, mapped with MAP_NORESERVE and
 * MADV_HUGEPAGE, carved front to back (pages are only touched as slabs are used). */
typedef struct {
    void *base;
    size_t len;
} seg_t;

typedef struct {
    pthread_mutex_t mu; /* taken under a stripe lock, never the other way round */
    char *cur;
    size_t left, next_len;
    seg_t *segs;
    uint32_t nsegs, segs_cap;
} arena_t;

typedef struct {
    pthread_mutex_t mu;
    slot_t *slots;
    size_t slots_map; /* > 0: slots is its own mapping of this many bytes (big tables), else malloc'd */
    uint32_t cap;     /* slots */
    uint32_t grow_at; /* grow before inserting when nrows reaches this (70% of cap) */
    uint32_t nrows;   /* rows of this stripe = next row index */
    uint32_t row_cap; /* rows available in the allocated slabs */
    uint32_t nslabs, dir_cap;
    float **slabs;
    uint64_t slab_bytes;
    /* copies of slots/cap for prefetch hints taken without the lock (a stale pair only wastes a prefetch,
     * which never faults) */
    _Atomic(slot_t *) hint_slots;
    _Atomic uint32_t hint_cap;
} __attribute__((aligned(64))) stripe_t;

typedef struct {
    uint32_t id, dim, stride; /* stride = weight words + state floats (32-bit words) */
    uint32_t wwords;          /* 32-bit words of weights: dim (f32) or ceil(dim / 2) (16-bit) */
    psrec_row_dtype dtype;
    uint32_t slab_log; /* log2 of the rows of a full-size slab */
    uint32_t nlocks;
    psrec_init_kind init;
    float init_scale;
    uint64_t seed; /* store seed mixed with the table id */
    uint64_t max_rows;
    psrec_optim_t opt;
    psrec_table_conf_t conf; /* as added (psrec_store_table_conf) */
    arena_t arena;
    _Atomic uint64_t rows;      /* materialised rows */
    _Atomic uint64_t committed; /* with max_rows: rows + outstanding reservations */
    int skip_new;               /* with max_rows: refuse new keys one by one instead of the call */
    _Atomic uint64_t refused;   /* skip_new: keys refused */
    stripe_t *stripes;
} table_t;

struct psrec_store {
    uint64_t seed;
    uint32_t nlocks;
    pthread_mutex_t add_mu;
    _Atomic(table_t *) tables[PSREC_STORE_MAX_TABLES];
};

/* Per-chunk scratch, on the stack (~42 KiB). */
typedef struct {
    uint64_t h[CHUNK];
    uint16_t order[CHUNK];
    uint16_t end[MAX_LOCKS + 1]; /* after group(): keys of stripe s are order[s ? end[s-1] : 0 .. end[s]) */
    float *rp[RING];
} scratch_t;

enum { OP_PULL, OP_PUSH, OP_SET, OP_RAW }; /* OP_RAW: put_raw, whole rows with their state */

static inline uint64_t khash(uint64_t key)
{
    return psrec_mix64(key ^ HASH_SALT);
}

static inline uint32_t stripe_of(uint64_t h, uint32_t nlocks)
{
    return (uint32_t)(((h >> 32) * nlocks) >> 32);
}

static inline uint32_t home(uint64_t h, uint32_t cap)
{
    return (uint32_t)(((h & 0xffffffffu) * cap) >> 32);
}

static table_t *get_table(const psrec_store_t *s, uint32_t table)
{
    if (table >= PSREC_STORE_MAX_TABLES) return NULL;
    return atomic_load_explicit(&((psrec_store_t *)s)->tables[table], memory_order_acquire);
}

/* ---- slabs ---- */

static inline uint32_t slab_rows(const table_t *t, uint32_t k)
{
    if (k == 0) return 1u << SLAB_MIN_LOG;
    if (k <= t->slab_log - SLAB_MIN_LOG) return 1u << (k + SLAB_MIN_LOG - 1);
    return 1u << t->slab_log;
}

static inline float *row_ptr(const table_t *t, const stripe_t *st, uint32_t r)
{
    const uint32_t L = t->slab_log;
    uint32_t k, off;
    if (r < (1u << SLAB_MIN_LOG)) {
        k = 0;
        off = r;
    } else if (r < (1u << L)) {
        uint32_t lg = 31 - (uint32_t)__builtin_clz(r);
        k = lg - SLAB_MIN_LOG + 1;
        off = r - (1u << lg);
    } else {
        k = L - SLAB_MIN_LOG + (r >> L);
        off = r & ((1u << L) - 1);
    }
    return st->slabs[k] + (size_t)off * t->stride;
}

/* Number of slabs that are malloc'd (the doubling ones); the rest come from the arena. */
static inline uint32_t small_slabs(const table_t *t)
{
    return t->slab_log - SLAB_MIN_LOG + 1;
}

static void *map_huge(size_t len, size_t *maplen)
{
    len = (len + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE + HUGE_PAGE; /* room to align the start */
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *a = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    (void)madvise(a, len - (size_t)(a - (char *)p), MADV_HUGEPAGE); /* a hint: failure is harmless */
    *maplen = len;
    return p;
}

static void *arena_alloc(arena_t *a, size_t bytes)
{
    bytes = (bytes + 63) & ~(size_t)63;
    void *r = NULL;
    pthread_mutex_lock(&a->mu);
    if (bytes > a->left) {
        if (a->nsegs == a->segs_cap) {
            uint32_t nc = a->segs_cap ? 2 * a->segs_cap : 8;
            seg_t *d = realloc(a->segs, nc * sizeof *d);
            if (!d) goto out;
            a->segs = d;
            a->segs_cap = nc;
        }
        size_t want = a->next_len < bytes ? bytes : a->next_len, len;
        void *p = map_huge(want, &len);
        if (!p) goto out;
        a->segs[a->nsegs++] = (seg_t){p, len};
        a->cur = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
        a->left = len - (size_t)(a->cur - (char *)p);
        if (a->next_len < SEG_MAX) a->next_len *= 2;
    }
    r = a->cur;
    a->cur += bytes;
    a->left -= bytes;
out:
    pthread_mutex_unlock(&a->mu);
    return r;
}

/* Takes the next row index of the stripe, adding a slab if needed. */
static psrec_err new_row(table_t *t, stripe_t *st, uint32_t *r)
{
    if (st->nrows == st->row_cap) {
        if (st->nrows >= MAX_STRIPE_ROWS) return PSREC_EFULL;
        if (st->nslabs == st->dir_cap) {
            uint32_t nc = st->dir_cap ? 2 * st->dir_cap : 8;
            float **d = realloc(st->slabs, nc * sizeof *d);
            if (!d) return PSREC_ENOMEM;
            st->slabs = d;
            st->dir_cap = nc;
        }
        uint32_t rows = slab_rows(t, st->nslabs);
        if (rows > MAX_STRIPE_ROWS - st->row_cap) rows = MAX_STRIPE_ROWS - st->row_cap;
        size_t bytes = (size_t)rows * t->stride * sizeof(float);
        float *p = st->nslabs < small_slabs(t) ? malloc(bytes) : arena_alloc(&t->arena, bytes);
        if (!p) return PSREC_ENOMEM;
        st->slabs[st->nslabs++] = p;
        st->slab_bytes += bytes;
        st->row_cap += rows;
    }
    *r = st->nrows++;
    return PSREC_OK;
}

/* ---- hash table ---- */

static void set_cap(stripe_t *st, slot_t *slots, size_t map, uint32_t cap)
{
    st->slots = slots;
    st->slots_map = map;
    st->cap = cap;
    st->grow_at = (uint32_t)((uint64_t)cap * 7 / 10);
    atomic_store_explicit(&st->hint_slots, slots, memory_order_relaxed);
    atomic_store_explicit(&st->hint_cap, cap, memory_order_relaxed);
}

/* *map = 0 for a malloc'd array, else the length of its own mapping (starting at the array). */
static slot_t *alloc_slots(uint32_t cap, size_t *map)
{
    size_t bytes = (size_t)cap * sizeof(slot_t);
    slot_t *p;
    *map = 0;
    if (bytes >= HASH_MMAP_MIN) {
        size_t len;
        char *base = map_huge(bytes, &len);
        if (!base) return NULL;
        /* keep the array at the aligned start; give back the unaligned head */
        char *a = (char *)(((uintptr_t)base + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
        if (a > base) munmap(base, (size_t)(a - base));
        *map = len - (size_t)(a - base);
        p = (slot_t *)a;
    } else {
        p = malloc(bytes);
    }
    if (p) memset(p, 0xff, bytes); /* row = EMPTY_ROW */
    return p;
}

static void free_slots(slot_t *p, size_t map)
{
    if (map)
        munmap(p, map);
    else
        free(p);
}

static psrec_err grow(stripe_t *st)
{
    uint64_t nc = (uint64_t)st->cap + st->cap / 2;
    if (nc > UINT32_MAX) return PSREC_EFULL;
    size_t map;
    slot_t *ns = alloc_slots((uint32_t)nc, &map);
    if (!ns) return PSREC_ENOMEM;
    for (uint32_t i = 0; i < st->cap; i++) {
        const slot_t *o = &st->slots[i];
        if (o->row == EMPTY_ROW) continue;
        uint32_t j = home(khash(o->key), (uint32_t)nc);
        while (ns[j].row != EMPTY_ROW)
            if (++j == nc) j = 0;
        ns[j] = *o;
    }
    free_slots(st->slots, st->slots_map);
    set_cap(st, ns, map, (uint32_t)nc);
    return PSREC_OK;
}

/* The slot holding key, or the empty slot where it would go. */
static inline slot_t *probe(const stripe_t *st, uint64_t key, uint64_t h)
{
    uint32_t i = home(h, st->cap);
    for (;;) {
        slot_t *sl = &st->slots[i];
        if (sl->row == EMPTY_ROW || sl->key == key) return sl;
        if (++i == st->cap) i = 0;
    }
}

/* ---- 16-bit weights ---- */

uint16_t psrec_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays a (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1);                                           /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float psrec_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t psrec_f32_to_f16(float f)
{
    return ((union {
               _Float16 h;
               uint16_t u;
           }){.h = (_Float16)f})
        .u; /* GCC's conversion: round to nearest even, overflow to infinity */
}

float psrec_f16_to_f32(uint16_t h)
{
    return (float)((union {
               uint16_t u;
               _Float16 h;
           }){.u = h})
        .h;
}

const char *psrec_row_dtype_name(psrec_row_dtype d)
{
    return d == PSREC_ROW_F16 ? "f16" : d == PSREC_ROW_BF16 ? "bf16" : "f32";
}

int psrec_row_dtype_parse(const char *name, psrec_row_dtype *d)
{
    if (!strcmp(name, "f32") || !strcmp(name, "fp32") || !strcmp(name, "float32"))
        *d = PSREC_ROW_F32;
    else if (!strcmp(name, "f16") || !strcmp(name, "fp16") || !strcmp(name, "float16"))
        *d = PSREC_ROW_F16;
    else if (!strcmp(name, "bf16") || !strcmp(name, "bfloat16"))
        *d = PSREC_ROW_BF16;
    else
        return -1;
    return 0;
}

typedef uint16_t __attribute__((may_alias)) u16_alias; /* the packed weights live in float-typed slabs */

/* Widens the row's weights into w (dim floats). */
static inline void load_w(const table_t *t, const float *p, float *w)
{
    const u16_alias *h = (const u16_alias *)p;
    if (t->dtype == PSREC_ROW_F16)
        for (uint32_t i = 0; i < t->dim; i++)
            w[i] = psrec_f16_to_f32(h[i]);
    else
        for (uint32_t i = 0; i < t->dim; i++)
            w[i] = psrec_bf16_to_f32(h[i]);
}

/* Rounds w (dim floats) into the row's weights. */
static inline void store_w(const table_t *t, const float *w, float *p)
{
    u16_alias *h = (u16_alias *)p;
    if (t->dtype == PSREC_ROW_F16)
        for (uint32_t i = 0; i < t->dim; i++)
            h[i] = psrec_f32_to_f16(w[i]);
    else
        for (uint32_t i = 0; i < t->dim; i++)
            h[i] = psrec_f32_to_bf16(w[i]);
    if (t->dim & 1) h[t->dim] = 0; /* the padding half of the last word: deterministic snapshots */
}

static void init_weights(const table_t *t, uint64_t key, float *w)
{
    if (t->init == PSREC_INIT_ZERO || t->init_scale == 0) {
        memset(w, 0, t->dim * sizeof *w);
        return;
    }
    psrec_rng_t r;
    psrec_rng_seed(&r, t->seed, key);
    const double sc = t->init_scale;
    if (t->init == PSREC_INIT_UNIFORM)
        for (uint32_t i = 0; i < t->dim; i++)
            w[i] = (float)((2.0 * psrec_rng_uniform(&r) - 1.0) * sc);
    else
        for (uint32_t i = 0; i < t->dim; i++)
            w[i] = (float)(psrec_rng_normal(&r) * sc);
}

/* The row of key in stripe st, created if absent (with the table's init unless op is OP_SET or OP_RAW,
 * whose caller overwrites the weights, and the state too for OP_RAW). *added counts created rows. A full
 * skip_new table gives *row = NULL for a new key. */
static inline psrec_err find_or_add(table_t *t, stripe_t *st, uint64_t key, uint64_t h, int op, float **row,
                                    uint64_t *added, float *tmp)
{
    slot_t *sl = probe(st, key, h);
    if (sl->row != EMPTY_ROW) {
        *row = row_ptr(t, st, sl->row);
        return PSREC_OK;
    }
    psrec_err rc;
    if (t->max_rows && t->skip_new && op != OP_RAW) { /* one row of capacity, or refused (caller serves init) */
        uint64_t cur = atomic_load_explicit(&t->committed, memory_order_relaxed);
        do {
            if (cur >= t->max_rows) {
                atomic_fetch_add_explicit(&t->refused, 1, memory_order_relaxed);
                *row = NULL;
                return PSREC_OK;
            }
        } while (!atomic_compare_exchange_weak_explicit(&t->committed, &cur, cur + 1, memory_order_relaxed,
                                                        memory_order_relaxed));
    }
    uint32_t r;
    if ((st->nrows >= st->grow_at && (rc = grow(st))) || (rc = new_row(t, st, &r))) {
        if (t->max_rows && t->skip_new && op != OP_RAW)
            atomic_fetch_sub_explicit(&t->committed, 1, memory_order_relaxed);
        return rc;
    }
    sl = probe(st, key, h); /* the slot moved if the stripe grew */
    sl->key = key;
    sl->row = r;
    float *p = row_ptr(t, st, r);
    if (op != OP_RAW) {
        if (op != OP_SET && t->dtype == PSREC_ROW_F32) {
            init_weights(t, key, p);
        } else if (op != OP_SET) {
            init_weights(t, key, tmp);
            store_w(t, tmp, p);
        }
        psrec_optim_reset_state(&t->opt, p + t->wwords, t->dim);
    }
    *row = p;
    (*added)++;
    return PSREC_OK;
}

/* ---- calls ---- */

/* Hashes keys[0..m) into sc->h and counting-sorts their indexes by stripe into sc->order. */
static void group(const table_t *t, const uint64_t *keys, size_t m, scratch_t *sc)
{
    const uint32_t nl = t->nlocks;
    memset(sc->end, 0, (nl + 1) * sizeof sc->end[0]);
    for (size_t j = 0; j < m; j++) {
        uint64_t h = khash(keys[j]);
        sc->h[j] = h;
        sc->end[stripe_of(h, nl) + 1]++;
    }
    for (uint32_t s = 1; s <= nl; s++)
        sc->end[s] += sc->end[s - 1];
    /* end[s] is now the start of stripe s; placing advances it to the end of stripe s */
    for (size_t j = 0; j < m; j++)
        sc->order[sc->end[stripe_of(sc->h[j], nl)]++] = (uint16_t)j;
}

/* Prefetches the cache lines of a row (at most 1 KiB of it). */
static inline void prefetch_row(const float *p, size_t bytes)
{
    if (bytes > 1024) bytes = 1024;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, e = (uintptr_t)p + bytes;
    for (; a < e; a += 64)
        __builtin_prefetch((const void *)a, 1, 3);
}

/* Prefetches the home slot of the key at position k of the chunk's order (whatever its stripe). */
static inline void prefetch_slot(const table_t *t, const scratch_t *sc, uint32_t k)
{
    uint64_t h = sc->h[sc->order[k]];
    stripe_t *st = &t->stripes[stripe_of(h, t->nlocks)];
    const slot_t *slots = atomic_load_explicit(&st->hint_slots, memory_order_relaxed);
    __builtin_prefetch(slots + home(h, atomic_load_explicit(&st->hint_cap, memory_order_relaxed)));
}

/* Handles the keys order[lo..hi) of one stripe (of a chunk of m keys), under its lock, as a software
 * pipeline: the home slot of key k + PREFETCH_SLOT is prefetched (through the whole chunk, whatever its
 * stripe), key k is looked up and its row prefetched, and the row of key k - PREFETCH_ROW is copied or
 * updated. */
static psrec_err run_stripe(table_t *t, stripe_t *st, const uint64_t *keys, scratch_t *sc, uint32_t lo, uint32_t hi,
                            uint32_t m, int op, const float *in, float *out, uint64_t *added, float *tmp)
{
    const uint32_t dim = t->dim, ww = t->wwords;
    const int f32 = t->dtype == PSREC_ROW_F32;
    const size_t rbytes = (size_t)(op == OP_PULL ? ww : t->stride) * sizeof(float);
    psrec_err rc = PSREC_OK;
    pthread_mutex_lock(&st->mu);
    for (uint32_t k = lo; k < hi + PREFETCH_ROW; k++) {
        if (k < hi) {
            if (k + PREFETCH_SLOT < m) prefetch_slot(t, sc, k + PREFETCH_SLOT);
            uint32_t j = sc->order[k];
            float **rp = &sc->rp[k % RING];
            if ((rc = find_or_add(t, st, keys[j], sc->h[j], op, rp, added, tmp))) break;
            if (*rp) prefetch_row(*rp, rbytes);
        }
        if (k < lo + PREFETCH_ROW) continue;
        uint32_t k0 = k - PREFETCH_ROW;
        size_t j = sc->order[k0];
        float *p = sc->rp[k0 % RING];
        if (!p) { /* refused by a full table: a pull sees the initial values, an update is dropped */
            if (op == OP_PULL) init_weights(t, keys[j], out + j * dim);
            continue;
        }
        switch (op) {
        case OP_PULL:
            if (f32)
                memcpy(out + j * dim, p, dim * sizeof(float));
            else
                load_w(t, p, out + j * dim);
            break;
        case OP_PUSH:
            if (f32) {
                psrec_optim_apply(&t->opt, p, p + dim, in + j * dim, dim);
            } else { /* in float32, then rounded back */
                load_w(t, p, tmp);
                psrec_optim_apply(&t->opt, tmp, p + ww, in + j * dim, dim);
                store_w(t, tmp, p);
            }
            break;
        case OP_RAW: memcpy(p, in + j * t->stride, t->stride * sizeof(float)); break;
        default:
            if (f32)
                memcpy(p, in + j * dim, dim * sizeof(float));
            else
                store_w(t, in + j * dim, p);
            psrec_optim_reset_state(&t->opt, p + ww, dim);
            break;
        }
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* The keys without a row (a repeated new key counts each time). */
static uint64_t count_missing(table_t *t, const uint64_t *keys, size_t n, scratch_t *sc)
{
    uint64_t missing = 0;
    for (size_t base = 0; base < n; base += CHUNK) {
        size_t m = n - base < CHUNK ? n - base : CHUNK;
        group(t, keys + base, m, sc);
        for (uint32_t s = 0; s < t->nlocks; s++) {
            uint32_t lo = s ? sc->end[s - 1] : 0, hi = sc->end[s];
            if (lo == hi) continue;
            stripe_t *st = &t->stripes[s];
            pthread_mutex_lock(&st->mu);
            for (uint32_t k = lo; k < hi; k++) {
                uint32_t j = sc->order[k];
                missing += probe(st, keys[base + j], sc->h[j])->row == EMPTY_ROW;
            }
            pthread_mutex_unlock(&st->mu);
        }
    }
    return missing;
}

/* max_rows: counts the keys without a row and reserves that much of the table's capacity. */
static psrec_err reserve(table_t *t, const uint64_t *keys, size_t n, scratch_t *sc, uint64_t *reserved)
{
    uint64_t missing = count_missing(t, keys, n, sc);
    *reserved = 0;
    if (!missing) return PSREC_OK;
    uint64_t cur = atomic_load_explicit(&t->committed, memory_order_relaxed);
    do {
        if (missing > t->max_rows || cur > t->max_rows - missing) return PSREC_EFULL;
    } while (!atomic_compare_exchange_weak_explicit(&t->committed, &cur, cur + missing, memory_order_relaxed,
                                                    memory_order_relaxed));
    *reserved = missing;
    return PSREC_OK;
}

static psrec_err run(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n, int op, const float *in,
                     float *out)
{
    table_t *t = get_table(s, table);
    if (!t) return PSREC_ENOTFOUND;
    if (n == 0) return PSREC_OK;
    if (!keys || (op == OP_PULL ? !out : !in)) return PSREC_EINVAL;
    scratch_t sc;
    uint64_t reserved = 0, added = 0;
    psrec_err rc = PSREC_OK;
    /* restoring rows (OP_RAW) is all or nothing even on a skip_new table: a checkpoint is never cut short */
    if (t->max_rows && (!t->skip_new || op == OP_RAW) && (rc = reserve(t, keys, n, &sc, &reserved))) return rc;
    const size_t dim = t->dim, win = op == OP_RAW ? t->stride : dim; /* floats per key of `in` */
    float *tmp = NULL;                                               /* 16-bit rows: one widened row (init, push) */
    if (t->dtype != PSREC_ROW_F32 && !(tmp = malloc(dim * sizeof *tmp))) rc = PSREC_ENOMEM;
    for (size_t base = 0; base < n && !rc; base += CHUNK) {
        size_t m = n - base < CHUNK ? n - base : CHUNK;
        group(t, keys + base, m, &sc);
        uint64_t a = 0;
        for (uint32_t k = 0; k < PREFETCH_SLOT && k < m; k++)
            prefetch_slot(t, &sc, k);
        for (uint32_t st = 0; st < t->nlocks && !rc; st++) {
            uint32_t lo = st ? sc.end[st - 1] : 0, hi = sc.end[st];
            if (lo < hi)
                rc = run_stripe(t, &t->stripes[st], keys + base, &sc, lo, hi, (uint32_t)m, op,
                                in ? in + base * win : NULL, out ? out + base * dim : NULL, &a, tmp);
        }
        if (a) atomic_fetch_add_explicit(&t->rows, a, memory_order_relaxed);
        added += a;
    }
    if (t->max_rows && reserved > added)
        atomic_fetch_sub_explicit(&t->committed, reserved - added, memory_order_relaxed);
    free(tmp);
    return rc;
}

psrec_err psrec_store_missing(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n, uint64_t *missing)
{
    table_t *t = get_table(s, table);
    *missing = 0;
    if (!t) return PSREC_ENOTFOUND;
    if (n == 0) return PSREC_OK;
    if (!keys) return PSREC_EINVAL;
    scratch_t sc;
    *missing = count_missing(t, keys, n, &sc);
    return PSREC_OK;
}

psrec_err psrec_store_pull(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n, float *out)
{
    return run(s, table, keys, n, OP_PULL, NULL, out);
}

psrec_err psrec_store_push(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n, const float *grads)
{
    return run(s, table, keys, n, OP_PUSH, grads, NULL);
}

psrec_err psrec_store_set(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n, const float *values)
{
    return run(s, table, keys, n, OP_SET, values, NULL);
}

/* ---- lifetime and tables ---- */

psrec_err psrec_store_new(psrec_store_t **out, uint64_t seed, int nlocks)
{
    *out = NULL;
    if (nlocks < 1 || nlocks > MAX_LOCKS) return PSREC_EINVAL;
    psrec_store_t *s = calloc(1, sizeof *s);
    if (!s) return PSREC_ENOMEM;
    if (pthread_mutex_init(&s->add_mu, NULL)) {
        free(s);
        return PSREC_ENOMEM;
    }
    s->seed = seed;
    s->nlocks = (uint32_t)nlocks;
    for (int i = 0; i < PSREC_STORE_MAX_TABLES; i++)
        atomic_init(&s->tables[i], NULL);
    *out = s;
    return PSREC_OK;
}

static void table_free(table_t *t, uint32_t ninit)
{
    if (!t) return;
    for (uint32_t i = 0; i < ninit; i++) {
        stripe_t *st = &t->stripes[i];
        pthread_mutex_destroy(&st->mu);
        free_slots(st->slots, st->slots_map);
        for (uint32_t k = 0; k < st->nslabs && k < small_slabs(t); k++)
            free(st->slabs[k]);
        free(st->slabs);
    }
    for (uint32_t k = 0; k < t->arena.nsegs; k++)
        munmap(t->arena.segs[k].base, t->arena.segs[k].len);
    free(t->arena.segs);
    pthread_mutex_destroy(&t->arena.mu);
    free(t->stripes);
    free(t);
}

void psrec_store_destroy(psrec_store_t **s)
{
    if (!s || !*s) return;
    for (int i = 0; i < PSREC_STORE_MAX_TABLES; i++) {
        table_t *t = atomic_load_explicit(&(*s)->tables[i], memory_order_acquire);
        if (t) table_free(t, t->nlocks);
    }
    pthread_mutex_destroy(&(*s)->add_mu);
    free(*s);
    *s = NULL;
}

static psrec_err table_new(table_t **out, const psrec_store_t *s, uint32_t table, const psrec_table_conf_t *c,
                           char *err)
{
    *out = NULL;
    if (c->dim == 0 || c->dim > MAX_DIM)
        return psrec_fail(err, PSREC_EINVAL, "table %u: dim %u out of range [1, %u]", table, c->dim, MAX_DIM);
    if ((unsigned)c->init > PSREC_INIT_NORMAL)
        return psrec_fail(err, PSREC_EINVAL, "table %u: unknown init kind %d", table, (int)c->init);
    if ((unsigned)c->dtype > PSREC_ROW_BF16)
        return psrec_fail(err, PSREC_EINVAL, "table %u: unknown row type %d", table, (int)c->dtype);
    if (!isfinite(c->init_scale) || c->init_scale < 0)
        return psrec_fail(err, PSREC_EINVAL, "table %u: init scale %g must be finite and >= 0", table, c->init_scale);
    psrec_optim_t opt;
    psrec_err rc = psrec_optim_init(&opt, &c->opt, err);
    if (rc) return rc;
    table_t *t = calloc(1, sizeof *t);
    if (!t) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    t->id = table;
    t->dim = c->dim;
    t->dtype = c->dtype;
    t->wwords = c->dtype == PSREC_ROW_F32 ? c->dim : (c->dim + 1) / 2;
    t->stride = t->wwords + psrec_optim_state_floats(opt.kind, c->dim);
    t->slab_log = 6;
    while (t->slab_log < 16 && ((size_t)2 << t->slab_log) * t->stride * sizeof(float) <= SLAB_TARGET_BYTES)
        t->slab_log++;
    t->nlocks = s->nlocks;
    t->init = c->init;
    t->init_scale = c->init_scale;
    t->seed = s->seed ^ psrec_mix64(TABLE_SALT + table);
    t->max_rows = c->max_rows;
    t->skip_new = c->skip_new != 0;
    t->opt = opt;
    t->conf = *c;
    atomic_init(&t->rows, 0);
    atomic_init(&t->committed, 0);
    atomic_init(&t->refused, 0);
    t->arena.next_len = SEG_MIN;
    if (pthread_mutex_init(&t->arena.mu, NULL)) {
        free(t);
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    }
    t->stripes = aligned_alloc(64, t->nlocks * sizeof(stripe_t));
    if (!t->stripes) {
        pthread_mutex_destroy(&t->arena.mu);
        free(t);
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    }
    memset(t->stripes, 0, t->nlocks * sizeof(stripe_t));
    for (uint32_t i = 0; i < t->nlocks; i++) {
        stripe_t *st = &t->stripes[i];
        size_t map;
        slot_t *slots = alloc_slots(HASH_MIN_CAP, &map);
        if (!slots || pthread_mutex_init(&st->mu, NULL)) {
            free(slots);
            table_free(t, i);
            return psrec_fail(err, PSREC_ENOMEM, "out of memory");
        }
        set_cap(st, slots, map, HASH_MIN_CAP);
    }
    *out = t;
    return PSREC_OK;
}

psrec_err psrec_store_add_table(psrec_store_t *s, uint32_t table, const psrec_table_conf_t *conf, char *err)
{
    if (table >= PSREC_STORE_MAX_TABLES)
        return psrec_fail(err, PSREC_EINVAL, "table id %u >= %d", table, PSREC_STORE_MAX_TABLES);
    pthread_mutex_lock(&s->add_mu);
    psrec_err rc = PSREC_OK;
    if (atomic_load_explicit(&s->tables[table], memory_order_relaxed)) {
        rc = psrec_fail(err, PSREC_EINVAL, "table %u already exists", table);
    } else {
        table_t *t;
        if (!(rc = table_new(&t, s, table, conf, err)))
            atomic_store_explicit(&s->tables[table], t, memory_order_release);
    }
    pthread_mutex_unlock(&s->add_mu);
    return rc;
}

uint32_t psrec_store_dim(const psrec_store_t *s, uint32_t table)
{
    const table_t *t = get_table(s, table);
    return t ? t->dim : 0;
}

uint64_t psrec_store_refused(const psrec_store_t *s, uint32_t table)
{
    table_t *t = get_table(s, table);
    return t ? atomic_load_explicit(&t->refused, memory_order_relaxed) : 0;
}

uint64_t psrec_store_rows(const psrec_store_t *s, uint32_t table)
{
    table_t *t = get_table(s, table);
    return t ? atomic_load_explicit(&t->rows, memory_order_relaxed) : 0;
}

double psrec_store_bytes_per_row(const psrec_store_t *s, uint32_t table)
{
    table_t *t = get_table(s, table);
    if (!t) return 0;
    uint64_t bytes = t->nlocks * sizeof(stripe_t) + sizeof *t, rows = 0;
    for (uint32_t i = 0; i < t->nlocks; i++) {
        stripe_t *st = &t->stripes[i];
        pthread_mutex_lock(&st->mu);
        bytes += st->slab_bytes + (uint64_t)st->cap * sizeof(slot_t) + (uint64_t)st->dir_cap * sizeof(float *);
        rows += st->nrows;
        pthread_mutex_unlock(&st->mu);
    }
    return rows ? (double)bytes / (double)rows : 0;
}

void psrec_store_foreach(psrec_store_t *s, uint32_t table, psrec_store_row_fn fn, void *ctx)
{
    table_t *t = get_table(s, table);
    if (!t) return;
    float *w = NULL; /* 16-bit rows are handed out widened */
    if (t->dtype != PSREC_ROW_F32 && !(w = malloc(t->dim * sizeof *w))) return;
    for (uint32_t i = 0; i < t->nlocks; i++) {
        stripe_t *st = &t->stripes[i];
        pthread_mutex_lock(&st->mu);
        for (uint32_t k = 0; k < st->cap; k++) {
            const slot_t *sl = &st->slots[k];
            if (sl->row == EMPTY_ROW) continue;
            const float *p = row_ptr(t, st, sl->row);
            if (w) load_w(t, p, w);
            fn(sl->key, w ? w : p, t->dim, ctx);
        }
        pthread_mutex_unlock(&st->mu);
    }
    free(w);
}

/* Uniform over rows in two stages: a stripe with probability nrows_s / rows (multinomial counts from the
 * row counts seen under each lock), then a uniformly random occupied hash slot of that stripe (random
 * slots until one is occupied: the load stays >= 0.47 once a stripe has grown, so ~2 tries per key). */
psrec_err psrec_store_sample(psrec_store_t *s, uint32_t table, psrec_rng_t *rng, size_t n, uint64_t *keys,
                             uint64_t *rows)
{
    table_t *t = get_table(s, table);
    *rows = 0;
    if (!t) return PSREC_ENOTFOUND;
    if (n == 0) return PSREC_OK;
    uint64_t cum[MAX_LOCKS + 1]; /* 12 KiB on the stack: no allocation per draw */
    uint32_t cnt[MAX_LOCKS];
    memset(cnt, 0, t->nlocks * sizeof *cnt);
    cum[0] = 0;
    for (uint32_t i = 0; i < t->nlocks; i++) {
        pthread_mutex_lock(&t->stripes[i].mu);
        cum[i + 1] = cum[i] + t->stripes[i].nrows;
        pthread_mutex_unlock(&t->stripes[i].mu);
    }
    uint64_t total = cum[t->nlocks];
    if (total == 0) return PSREC_OK;
    for (size_t k = 0; k < n; k++) {
        uint64_t r = psrec_rng_below(rng, total);
        uint32_t lo = 0, hi = t->nlocks; /* stripe i with cum[i] <= r < cum[i + 1] */
        while (hi - lo > 1) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (cum[mid] <= r)
                lo = mid;
            else
                hi = mid;
        }
        cnt[lo]++;
    }
    size_t out = 0;
    for (uint32_t i = 0; i < t->nlocks; i++) {
        if (!cnt[i]) continue;
        stripe_t *st = &t->stripes[i];
        pthread_mutex_lock(&st->mu); /* rows only grow: the stripe still has rows */
        for (uint32_t c = 0; c < cnt[i]; c++) {
            const slot_t *sl;
            do
                sl = &st->slots[psrec_rng_below(rng, st->cap)];
            while (sl->row == EMPTY_ROW);
            keys[out++] = sl->key;
        }
        pthread_mutex_unlock(&st->mu);
    }
    *rows = total;
    return PSREC_OK;
}

void psrec_store_init_row(const psrec_store_t *s, uint32_t table, uint64_t key, float *out)
{
    const table_t *t = get_table(s, table);
    if (!t) return;
    init_weights(t, key, out);
    if (t->dtype == PSREC_ROW_F32) return;
    for (uint32_t i = 0; i < t->dim; i++) /* what a first touch stores, rounded */
        out[i] = t->dtype == PSREC_ROW_F16 ? psrec_f16_to_f32(psrec_f32_to_f16(out[i]))
                                           : psrec_bf16_to_f32(psrec_f32_to_bf16(out[i]));
}

/* ---- raw rows (checkpoints) ---- */

uint32_t psrec_store_row_width(const psrec_store_t *s, uint32_t table)
{
    const table_t *t = get_table(s, table);
    return t ? t->stride : 0;
}

psrec_err psrec_store_table_conf(const psrec_store_t *s, uint32_t table, psrec_table_conf_t *conf)
{
    const table_t *t = get_table(s, table);
    if (!t) return PSREC_ENOTFOUND;
    *conf = t->conf;
    return PSREC_OK;
}

/* Slots are NOT visited in hash order: a store filled in its own hash order (a snapshot loaded into a
 * growing table) would pile every early key into one cluster of the small table and turn each insert
 * into a walk along it (quadratic: 1e6 rows took 8 s to load instead of <1 s). A golden-ratio stride
 * through the slots spreads every prefix of the visit over the whole hash range instead. The slot
 * FOREACH_SLOT_AHEAD visits ahead is prefetched, and the row of the one FOREACH_ROW_AHEAD ahead. */
#define FOREACH_SLOT_AHEAD 16
#define FOREACH_ROW_AHEAD 8

static uint32_t gcd32(uint32_t a, uint32_t b)
{
    while (b) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

void psrec_store_foreach_raw(psrec_store_t *s, uint32_t table, psrec_store_raw_fn fn, void *ctx)
{
    table_t *t = get_table(s, table);
    if (!t) return;
    const size_t rbytes = (size_t)t->stride * sizeof(float);
    for (uint32_t i = 0; i < t->nlocks; i++) {
        stripe_t *st = &t->stripes[i];
        pthread_mutex_lock(&st->mu);
        const uint32_t cap = st->cap;
        uint32_t step = (uint32_t)((double)cap * 0.6180339887498949) | 1;
        while (gcd32(step, cap) != 1)
            step++;
        /* three positions of the same walk: visited (k), row prefetched, slot prefetched */
        uint32_t k = 0, kr = 0, ks = 0;
        for (uint32_t j = 0; j < FOREACH_SLOT_AHEAD; j++) {
            ks = ks + step >= cap ? ks + step - cap : ks + step;
            if (j + 1 == FOREACH_ROW_AHEAD) kr = ks;
        }
        for (uint32_t n = 0; n < cap; n++) {
            __builtin_prefetch(&st->slots[ks]);
            if (st->slots[kr].row != EMPTY_ROW) prefetch_row(row_ptr(t, st, st->slots[kr].row), rbytes);
            const slot_t *sl = &st->slots[k];
            if (sl->row != EMPTY_ROW) fn(sl->key, row_ptr(t, st, sl->row), t->stride, ctx);
            k = k + step >= cap ? k + step - cap : k + step;
            kr = kr + step >= cap ? kr + step - cap : kr + step;
            ks = ks + step >= cap ? ks + step - cap : ks + step;
        }
        pthread_mutex_unlock(&st->mu);
    }
}

psrec_err psrec_store_put_raw(psrec_store_t *s, uint32_t table, const uint64_t *keys, size_t n, const float *rows)
{
    return run(s, table, keys, n, OP_RAW, rows, NULL);
}

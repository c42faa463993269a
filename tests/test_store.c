/* test_store.c: the parameter store: deterministic init, optimizer updates through push against the
 * double reference of optim_ref.h, set, repeated keys, max_rows, errors, foreach, growth across slabs,
 * concurrent pushes without lost updates, the bytes-per-row accounting, and raw rows (weights + optimizer
 * state) out of one store and into another. 16-bit rows (f16, bf16): the conversions (exact values,
 * round to nearest even, NaN), and every operation against a float32 reference that rounds the same way;
 * the row is half the memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "optim_ref.h"
#include "ps/store.h"

static psrec_store_t *mk(uint64_t seed, int nlocks)
{
    psrec_store_t *s;
    assert_int_equal(psrec_store_new(&s, seed, nlocks), PSREC_OK);
    return s;
}

static void add(psrec_store_t *s, uint32_t table, psrec_table_conf_t c)
{
    char err[PSREC_ERRBUF];
    psrec_err rc = psrec_store_add_table(s, table, &c, err);
    if (rc) fail_msg("add_table %u: %s", table, err);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- init ---- */

static void test_deterministic_init(void **st)
{
    enum { N = 3000, DIM = 16 };
    psrec_table_conf_t cu = {
        .dim = DIM, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.1f}, .init = PSREC_INIT_UNIFORM, .init_scale = 0.5f};
    psrec_table_conf_t cn = cu;
    cn.init = PSREC_INIT_NORMAL;
    cn.opt.kind = PSREC_OPT_ADAM; /* init must not depend on the optimizer */
    psrec_store_t *a = mk(7, 4), *b = mk(7, 32), *c = mk(8, 4);
    add(a, 1, cu), add(a, 5, cn), add(b, 1, cu), add(b, 5, cn), add(c, 1, cu);
    uint64_t *keys = malloc(N * sizeof *keys);
    psrec_rng_t r;
    psrec_rng_seed(&r, 1, 2);
    for (int i = 0; i < N; i++)
        keys[i] = i < 10 ? (uint64_t)i : psrec_rng_u64(&r);
    keys[10] = UINT64_MAX;
    float *va = malloc(N * DIM * sizeof(float)), *vb = malloc(N * DIM * sizeof(float)), one[DIM], ref[DIM];
    for (uint32_t table = 1; table <= 5; table += 4) {
        /* a: one call in order; b: key by key in reverse order, another stripe count */
        assert_int_equal(psrec_store_pull(a, table, keys, N, va), PSREC_OK);
        for (int i = N - 1; i >= 0; i--) {
            assert_int_equal(psrec_store_pull(b, table, &keys[i], 1, one), PSREC_OK);
            memcpy(vb + (size_t)i * DIM, one, sizeof one);
        }
        assert_memory_equal(va, vb, N * DIM * sizeof(float));
        double sum = 0, sum2 = 0;
        for (int i = 0; i < N; i++) {
            psrec_store_init_row(a, table, keys[i], ref);
            assert_memory_equal(ref, va + (size_t)i * DIM, sizeof ref);
            for (int j = 0; j < DIM; j++) {
                float x = va[(size_t)i * DIM + j];
                if (table == 1) assert_true(x >= -0.5f && x <= 0.5f);
                sum += x, sum2 += (double)x * x;
            }
        }
        double mean = sum / (N * DIM), var = sum2 / (N * DIM) - mean * mean;
        /* U(-s,s): var s^2/3 = 0.0833; N(0,s^2): 0.25 */
        double want = table == 1 ? 0.25 / 3 : 0.25;
        assert_true(fabs(mean) < 0.01);
        assert_true(fabs(var - want) < 0.05 * want);
        assert_int_equal(psrec_store_rows(a, table), N);
    }
    /* other table / other seed give other rows; rows are not all equal */
    psrec_store_init_row(a, 5, keys[3], one);
    psrec_store_init_row(a, 1, keys[3], ref);
    assert_memory_not_equal(one, ref, sizeof one);
    psrec_store_init_row(c, 1, keys[3], one);
    assert_memory_not_equal(one, ref, sizeof one);
    assert_memory_not_equal(va, va + DIM, DIM * sizeof(float));
    /* zero init */
    add(c, 2, (psrec_table_conf_t){.dim = DIM, .init = PSREC_INIT_ZERO});
    assert_int_equal(psrec_store_pull(c, 2, keys, 5, va), PSREC_OK);
    for (int i = 0; i < 5 * DIM; i++)
        assert_true(va[i] == 0.0f);
    free(keys), free(va), free(vb);
    psrec_store_destroy(&a), psrec_store_destroy(&b), psrec_store_destroy(&c);
    assert_null(a);
    psrec_store_destroy(NULL);
    psrec_store_destroy(&a);
}

/* ---- optimizers through push ---- */

/* Keys 0..K-1; at step t keys with (key + t) % 3 != 0 are pushed together in one call, so rows have
 * different step counts (matters for Adam). Pulled weights must match the per-row double reference. */
static void check_push(psrec_opt_t o)
{
    enum { K = 10, DIM = 9, STEPS = 8 };
    psrec_store_t *s = mk(3, 4);
    add(s, 0, (psrec_table_conf_t){.dim = DIM, .opt = o, .init = PSREC_INIT_NORMAL, .init_scale = 0.3f});
    ref_row_t ref[K];
    float w0[DIM], g[K * DIM], out[K * DIM];
    for (int k = 0; k < K; k++) {
        psrec_store_init_row(s, 0, (uint64_t)k * 1000003, w0);
        ref_row_init(&ref[k], DIM, w0, &o);
    }
    psrec_rng_t r;
    psrec_rng_seed(&r, 9, 9);
    uint64_t keys[K];
    for (int t = 0; t < STEPS; t++) {
        size_t n = 0;
        for (int k = 0; k < K; k++) {
            if ((k + t) % 3 == 0) continue;
            keys[n] = (uint64_t)k * 1000003;
            for (int i = 0; i < DIM; i++)
                g[n * DIM + i] = (float)(2 * psrec_rng_uniform(&r) - 1);
            ref_step(&ref[k], &o, &g[n * DIM]);
            n++;
        }
        assert_int_equal(psrec_store_push(s, 0, keys, n, g), PSREC_OK);
    }
    for (int k = 0; k < K; k++)
        keys[k] = (uint64_t)k * 1000003;
    assert_int_equal(psrec_store_pull(s, 0, keys, K, out), PSREC_OK);
    for (int k = 0; k < K; k++) {
        double ex = ref_max_excess(out + k * DIM, &ref[k], 2e-6, 2e-5);
        if (ex > 0) fail_msg("%s key %d: off by %g", psrec_opt_name(o.kind), k, ex);
        ref_row_free(&ref[k]);
    }
    assert_int_equal(psrec_store_rows(s, 0), K);
    psrec_store_destroy(&s);
}

static void test_push_optimizers(void **st)
{
    check_push((psrec_opt_t){.kind = PSREC_OPT_SGD, .lr = 0.2f});
    check_push((psrec_opt_t){.kind = PSREC_OPT_SGD, .lr = 0.2f, .l2 = 0.1f});
    check_push((psrec_opt_t){.kind = PSREC_OPT_ADAGRAD, .lr = 0.1f, .init_acc = 0.1f});
    check_push((psrec_opt_t){.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.1f});
    check_push((psrec_opt_t){.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.1f, .l2 = 0.01f});
    check_push((psrec_opt_t){.kind = PSREC_OPT_ADAM, .lr = 0.01f});
    check_push((psrec_opt_t){.kind = PSREC_OPT_ADAM, .lr = 0.01f, .beta1 = 0.5f, .l2 = 0.01f});
}

/* A repeated key in one call is applied twice; set overwrites weights and resets the state. */
static void test_repeat_and_set(void **st)
{
    enum { DIM = 4 };
    psrec_opt_t o = {.kind = PSREC_OPT_ADAM, .lr = 0.05f};
    psrec_store_t *s = mk(5, 2);
    add(s, 3, (psrec_table_conf_t){.dim = DIM, .opt = o, .init = PSREC_INIT_UNIFORM, .init_scale = 1});
    uint64_t k2[2] = {77, 77};
    float g[2 * DIM] = {0.1f, -0.2f, 0.3f, -0.4f, 1, 2, -3, 4}, w[DIM], w0[DIM];
    psrec_store_init_row(s, 3, 77, w0);
    ref_row_t ref;
    ref_row_init(&ref, DIM, w0, &o);
    ref_step(&ref, &o, g);
    ref_step(&ref, &o, g + DIM);
    assert_int_equal(psrec_store_push(s, 3, k2, 2, g), PSREC_OK);
    assert_int_equal(psrec_store_pull(s, 3, k2, 1, w), PSREC_OK);
    assert_true(ref_max_excess(w, &ref, 2e-6, 2e-5) <= 0);
    ref_row_free(&ref);
    assert_int_equal(psrec_store_rows(s, 3), 1);

    /* set: a known row and a new one; then one push behaves like a fresh Adam row (t = 1) */
    uint64_t ks[2] = {77, 12345};
    float v[2 * DIM] = {1, 2, 3, 4, -1, -2, -3, -4}, out[2 * DIM];
    assert_int_equal(psrec_store_set(s, 3, ks, 2, v), PSREC_OK);
    assert_int_equal(psrec_store_pull(s, 3, ks, 2, out), PSREC_OK);
    assert_memory_equal(out, v, sizeof v);
    assert_int_equal(psrec_store_rows(s, 3), 2);
    ref_row_t r2[2];
    for (int i = 0; i < 2; i++) {
        ref_row_init(&r2[i], DIM, v + i * DIM, &o);
        ref_step(&r2[i], &o, g + i * DIM);
    }
    assert_int_equal(psrec_store_push(s, 3, ks, 2, g), PSREC_OK);
    assert_int_equal(psrec_store_pull(s, 3, ks, 2, out), PSREC_OK);
    for (int i = 0; i < 2; i++) {
        assert_true(ref_max_excess(out + i * DIM, &r2[i], 2e-6, 2e-5) <= 0);
        ref_row_free(&r2[i]);
    }
    psrec_store_destroy(&s);
}

/* ---- capacity and errors ---- */

static void test_max_rows(void **st)
{
    enum { DIM = 3 };
    psrec_store_t *s = mk(1, 4);
    add(s, 0, (psrec_table_conf_t){.dim = DIM, .opt = {.kind = PSREC_OPT_SGD, .lr = 1}, .max_rows = 10});
    uint64_t keys[16];
    float g[16 * DIM], out[16 * DIM];
    for (int i = 0; i < 16; i++)
        keys[i] = 100 + (uint64_t)i;
    for (int i = 0; i < 16 * DIM; i++)
        g[i] = 1;
    assert_int_equal(psrec_store_push(s, 0, keys, 8, g), PSREC_OK); /* keys 100..107 = -1 */
    assert_int_equal(psrec_store_rows(s, 0), 8);
    /* 3 new keys + one existing: refused as a whole, nothing applied */
    uint64_t k4[4] = {100, 108, 109, 110};
    assert_int_equal(psrec_store_push(s, 0, k4, 4, g), PSREC_EFULL);
    assert_int_equal(psrec_store_pull(s, 0, k4, 4, out), PSREC_EFULL);
    assert_int_equal(psrec_store_set(s, 0, k4, 4, g), PSREC_EFULL);
    assert_int_equal(psrec_store_rows(s, 0), 8);
    assert_int_equal(psrec_store_pull(s, 0, keys, 8, out), PSREC_OK);
    for (int i = 0; i < 8 * DIM; i++)
        assert_true(out[i] == -1.0f);
    /* a repeated new key is counted twice by the up-front check */
    uint64_t rep[3] = {108, 108, 109};
    assert_int_equal(psrec_store_push(s, 0, rep, 3, g), PSREC_EFULL);
    /* exactly filling up is fine, existing keys still work, one more is refused */
    assert_int_equal(psrec_store_push(s, 0, k4, 3, g), PSREC_OK);
    assert_int_equal(psrec_store_rows(s, 0), 10);
    assert_int_equal(psrec_store_pull(s, 0, keys, 10, out), PSREC_OK);
    assert_true(out[0] == -2.0f && out[9 * DIM] == -1.0f);
    assert_int_equal(psrec_store_pull(s, 0, &keys[10], 1, out), PSREC_EFULL);
    assert_int_equal(psrec_store_rows(s, 0), 10);
    /* a single call larger than the whole capacity on a fresh table */
    add(s, 1, (psrec_table_conf_t){.dim = DIM, .max_rows = 5});
    assert_int_equal(psrec_store_pull(s, 1, keys, 6, out), PSREC_EFULL);
    assert_int_equal(psrec_store_rows(s, 1), 0);
    assert_int_equal(psrec_store_pull(s, 1, keys, 5, out), PSREC_OK);
    psrec_store_destroy(&s);
}

typedef struct {
    psrec_store_t *s;
    uint64_t base;
    psrec_err rc;
} skip_arg_t;

static void *skip_puller(void *p)
{
    skip_arg_t *a = p;
    uint64_t k[100];
    float out[100 * 3];
    a->rc = PSREC_OK;
    for (int c = 0; c < 10 && !a->rc; c++) {
        for (int i = 0; i < 100; i++)
            k[i] = a->base + (uint64_t)(c * 100 + i);
        a->rc = psrec_store_pull(a->s, 1, k, 100, out);
    }
    return NULL;
}

/* skip_new: a full table keeps serving; new keys beyond the capacity are refused one by one and counted
 * (pulls see their initial values, updates of them are dropped), across threads too. */
static void test_max_rows_skip_new(void **st)
{
    enum { DIM = 3 };
    psrec_store_t *s = mk(1, 4);
    add(s, 0,
        (psrec_table_conf_t){.dim = DIM,
                             .opt = {.kind = PSREC_OPT_SGD, .lr = 1},
                             .init = PSREC_INIT_UNIFORM,
                             .init_scale = 0.5f,
                             .max_rows = 10,
                             .skip_new = 1});
    uint64_t keys[16];
    float g[16 * DIM], out[16 * DIM], init[DIM];
    for (int i = 0; i < 16; i++)
        keys[i] = 100 + (uint64_t)i;
    for (int i = 0; i < 16 * DIM; i++)
        g[i] = 1;
    assert_int_equal(psrec_store_push(s, 0, keys, 8, g), PSREC_OK);
    /* 8 new keys, 2 of which fit: the call succeeds, 6 are refused */
    assert_int_equal(psrec_store_push(s, 0, keys + 8, 8, g), PSREC_OK);
    assert_int_equal(psrec_store_rows(s, 0), 10);
    assert_int_equal(psrec_store_refused(s, 0), 6);
    /* a pull of every key: stored rows moved by one push, refused ones are their initial values */
    assert_int_equal(psrec_store_pull(s, 0, keys, 16, out), PSREC_OK);
    assert_int_equal(psrec_store_refused(s, 0), 12);
    int moved = 0, at_init = 0;
    for (int i = 0; i < 16; i++) {
        psrec_store_init_row(s, 0, keys[i], init);
        int same = 1;
        for (int j = 0; j < DIM; j++)
            same &= out[i * DIM + j] == init[j];
        int shifted = 1;
        for (int j = 0; j < DIM; j++)
            shifted &= out[i * DIM + j] == init[j] - 1.0f;
        moved += shifted;
        at_init += same;
    }
    assert_int_equal(moved, 10);
    assert_int_equal(at_init, 6);
    assert_int_equal(psrec_store_rows(s, 0), 10);
    /* set of a refused key is dropped too; existing keys are still updated */
    assert_int_equal(psrec_store_set(s, 0, keys, 16, g), PSREC_OK);
    assert_int_equal(psrec_store_rows(s, 0), 10);
    assert_int_equal(psrec_store_refused(s, 0), 18);
    /* restoring rows (a checkpoint) is all or nothing even here: a round is never cut short */
    uint32_t wd = psrec_store_row_width(s, 0);
    float *raw = calloc(2 * wd, sizeof *raw);
    uint64_t fresh[2] = {900, 901};
    assert_int_equal(psrec_store_put_raw(s, 0, fresh, 2, raw), PSREC_EFULL);
    assert_int_equal(psrec_store_put_raw(s, 0, keys, 2, raw), PSREC_OK); /* existing rows: fine */
    assert_int_equal(psrec_store_rows(s, 0), 10);
    assert_int_equal(psrec_store_refused(s, 0), 18);
    free(raw);
    /* a refusing table without skip_new never counts refusals */
    assert_int_equal(psrec_store_refused(s, 5), 0);
    /* 4 threads pulling 1000 new keys each into room for 1500: exactly 1500 rows, 2500 refused */
    add(s, 1, (psrec_table_conf_t){.dim = DIM, .max_rows = 1500, .skip_new = 1});
    skip_arg_t a[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (skip_arg_t){.s = s, .base = 1000000 * (uint64_t)(i + 1)};
        assert_int_equal(pthread_create(&th[i], NULL, skip_puller, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].rc, PSREC_OK);
    }
    assert_int_equal(psrec_store_rows(s, 1), 1500);
    assert_int_equal(psrec_store_refused(s, 1), 2500);
    psrec_store_destroy(&s);
}

static void test_errors(void **st)
{
    psrec_store_t *s;
    assert_int_equal(psrec_store_new(&s, 1, 0), PSREC_EINVAL);
    assert_null(s);
    assert_int_equal(psrec_store_new(&s, 1, -3), PSREC_EINVAL);
    assert_int_equal(psrec_store_new(&s, 1, 1 << 20), PSREC_EINVAL);
    s = mk(1, 2);
    char err[PSREC_ERRBUF] = "";
    psrec_table_conf_t c = {.dim = 4, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.1f}};
    assert_int_equal(psrec_store_add_table(s, 2, &c, err), PSREC_OK);
    assert_int_equal(psrec_store_add_table(s, 2, &c, err), PSREC_EINVAL);
    assert_non_null(strstr(err, "exists"));
    assert_int_equal(psrec_store_add_table(s, PSREC_STORE_MAX_TABLES, &c, err), PSREC_EINVAL);
    psrec_table_conf_t bad = c;
    bad.dim = 0;
    assert_int_equal(psrec_store_add_table(s, 3, &bad, err), PSREC_EINVAL);
    bad = c;
    bad.opt.kind = (psrec_opt_kind)17;
    assert_int_equal(psrec_store_add_table(s, 3, &bad, err), PSREC_EINVAL);
    bad = c;
    bad.opt.beta2 = 1.5f;
    assert_int_equal(psrec_store_add_table(s, 3, &bad, err), PSREC_EINVAL);
    bad = c;
    bad.init = (psrec_init_kind)9;
    assert_int_equal(psrec_store_add_table(s, 3, &bad, err), PSREC_EINVAL);
    bad = c;
    bad.init_scale = -1;
    assert_int_equal(psrec_store_add_table(s, 3, &bad, err), PSREC_EINVAL);
    assert_int_equal(psrec_store_dim(s, 3), 0); /* failed adds leave no table */
    assert_int_equal(psrec_store_dim(s, 2), 4);
    assert_int_equal(psrec_store_dim(s, 999), 0);
    uint64_t k = 1;
    float v[4] = {0};
    assert_int_equal(psrec_store_pull(s, 3, &k, 1, v), PSREC_ENOTFOUND);
    assert_int_equal(psrec_store_push(s, 3, &k, 1, v), PSREC_ENOTFOUND);
    assert_int_equal(psrec_store_set(s, 3, &k, 1, v), PSREC_ENOTFOUND);
    assert_int_equal(psrec_store_pull(s, PSREC_STORE_MAX_TABLES + 5, &k, 1, v), PSREC_ENOTFOUND);
    assert_int_equal(psrec_store_pull(s, 3, &k, 0, v), PSREC_ENOTFOUND);
    assert_int_equal(psrec_store_pull(s, 2, &k, 0, v), PSREC_OK);
    assert_int_equal(psrec_store_rows(s, 2), 0);
    assert_int_equal(psrec_store_rows(s, 3), 0);
    assert_true(psrec_store_bytes_per_row(s, 2) == 0);
    psrec_store_destroy(&s);
}

/* ---- iteration and growth ---- */

typedef struct {
    uint64_t *keys;
    size_t n, cap;
    int bad;
    psrec_store_t *s;
} visit_t;

static void visit(uint64_t key, const float *w, uint32_t dim, void *ctx)
{
    visit_t *v = ctx;
    if (v->n < v->cap) v->keys[v->n] = key;
    v->n++;
    if (dim != 2 || w[0] != (float)(key % 1000003) || w[1] != -1.0f) v->bad++;
}

static void test_foreach(void **st)
{
    enum { N = 20000 };
    psrec_store_t *s = mk(11, 8);
    add(s, 4, (psrec_table_conf_t){.dim = 2, .opt = {.kind = PSREC_OPT_SGD, .lr = 1}});
    uint64_t *keys = malloc(N * sizeof *keys), *got = malloc((N + 1) * sizeof *got);
    float *vals = malloc(N * 2 * sizeof(float));
    psrec_rng_t r;
    psrec_rng_seed(&r, 3, 3);
    for (int i = 0; i < N; i++)
        keys[i] = i < 2 ? (uint64_t)i * UINT64_MAX : psrec_rng_u64(&r);
    for (int i = 0; i < N; i++)
        vals[2 * i] = (float)(keys[i] % 1000003), vals[2 * i + 1] = -1;
    assert_int_equal(psrec_store_set(s, 4, keys, N, vals), PSREC_OK);
    visit_t v = {.keys = got, .cap = N + 1, .s = s};
    psrec_store_foreach(s, 4, visit, &v);
    assert_int_equal(v.n, N);
    assert_int_equal(v.bad, 0);
    qsort(keys, N, sizeof *keys, cmp_u64);
    qsort(got, N, sizeof *got, cmp_u64);
    assert_memory_equal(keys, got, N * sizeof *keys);
    v.n = 0;
    psrec_store_foreach(s, 9, visit, &v); /* unknown table: nothing */
    assert_int_equal(v.n, 0);
    free(keys), free(got), free(vals);
    psrec_store_destroy(&s);
}

/* One stripe, 300k rows: the hash table grows many times and rows span the doubling and the full-size
 * slabs; every row must keep its own value (no aliasing in the row index -> slab mapping). */
static void test_growth_one_stripe(void **st)
{
    enum { N = 300000, DIM = 3 };
    psrec_store_t *s = mk(2, 1);
    add(s, 0, (psrec_table_conf_t){.dim = DIM, .opt = {.kind = PSREC_OPT_ADAGRAD, .lr = 0.1f}});
    uint64_t *keys = malloc(N * sizeof *keys);
    float *v = malloc((size_t)N * DIM * sizeof(float)), *out = malloc((size_t)N * DIM * sizeof(float));
    for (int i = 0; i < N; i++) {
        keys[i] = (uint64_t)i * 7919;
        for (int j = 0; j < DIM; j++)
            v[(size_t)i * DIM + j] = (float)(i * DIM + j);
    }
    for (int b = 0; b < N; b += 777) {
        size_t m = N - b < 777 ? (size_t)(N - b) : 777;
        assert_int_equal(psrec_store_set(s, 0, keys + b, m, v + (size_t)b * DIM), PSREC_OK);
    }
    assert_int_equal(psrec_store_rows(s, 0), N);
    /* pull in reverse order in one call */
    for (int i = 0; i < N / 2; i++) {
        uint64_t t = keys[i];
        keys[i] = keys[N - 1 - i];
        keys[N - 1 - i] = t;
    }
    assert_int_equal(psrec_store_pull(s, 0, keys, N, out), PSREC_OK);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < DIM; j++)
            assert_true(out[(size_t)i * DIM + j] == (float)((N - 1 - i) * DIM + j));
    free(keys), free(v), free(out);
    psrec_store_destroy(&s);
}

/* ---- concurrency ---- */

enum { CT_THREADS = 4, CT_KEYS = 3000, CT_ROUNDS = 200, CT_BATCH = 256, CT_DIM = 8 };

typedef struct {
    psrec_store_t *s;
    pthread_barrier_t *bar;
    int id;
    uint32_t count[CT_KEYS];
    int err;
} ct_arg_t;

static void *ct_worker(void *p)
{
    ct_arg_t *a = p;
    psrec_rng_t r;
    psrec_rng_seed(&r, 100, (uint64_t)a->id);
    uint64_t keys[CT_BATCH];
    static const float ones[CT_BATCH * CT_DIM] = {[0 ... CT_BATCH * CT_DIM - 1] = 1.0f};
    float out[CT_BATCH * CT_DIM];
    uint8_t used[CT_KEYS];
    pthread_barrier_wait(a->bar);
    for (int round = 0; round < CT_ROUNDS; round++) {
        /* unique keys within a batch (as a worker sends them), overlapping between threads */
        memset(used, 0, sizeof used);
        size_t n = 0;
        while (n < CT_BATCH) {
            uint32_t k = (uint32_t)psrec_rng_below(&r, CT_KEYS);
            if (used[k]) continue;
            used[k] = 1;
            keys[n++] = k;
            a->count[k]++;
        }
        if (psrec_store_push(a->s, 0, keys, n, ones)) a->err++;
        if (round % 8 == 0 && psrec_store_pull(a->s, 0, keys, n, out)) a->err++;
    }
    return NULL;
}

static void test_concurrent_push(void **st)
{
    psrec_store_t *s = mk(4, 4);
    add(s, 0, (psrec_table_conf_t){.dim = CT_DIM, .opt = {.kind = PSREC_OPT_SGD, .lr = 1}, .init = PSREC_INIT_ZERO});
    /* even keys exist beforehand (lost updates on existing rows), odd ones are created under contention */
    uint64_t keys[CT_KEYS];
    static float out[CT_KEYS * CT_DIM];
    for (int k = 0; k < CT_KEYS / 2; k++)
        keys[k] = 2 * (uint64_t)k;
    assert_int_equal(psrec_store_pull(s, 0, keys, CT_KEYS / 2, out), PSREC_OK);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, CT_THREADS);
    ct_arg_t *args = calloc(CT_THREADS, sizeof *args);
    pthread_t th[CT_THREADS];
    for (int i = 0; i < CT_THREADS; i++) {
        args[i] = (ct_arg_t){.s = s, .bar = &bar, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, ct_worker, &args[i]), 0);
    }
    for (int i = 0; i < CT_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int k = 0; k < CT_KEYS; k++)
        keys[k] = (uint64_t)k;
    assert_int_equal(psrec_store_pull(s, 0, keys, CT_KEYS, out), PSREC_OK);
    uint64_t touched = 0;
    for (int k = 0; k < CT_KEYS; k++) {
        uint32_t total = 0;
        for (int i = 0; i < CT_THREADS; i++)
            total += args[i].count[k];
        touched += total > 0;
        for (int j = 0; j < CT_DIM; j++)
            if (out[k * CT_DIM + j] != -(float)total) fail_msg("key %d: %g, want -%u", k, out[k * CT_DIM + j], total);
    }
    for (int i = 0; i < CT_THREADS; i++)
        assert_int_equal(args[i].err, 0);
    assert_int_equal(psrec_store_rows(s, 0), CT_KEYS); /* the final pull creates untouched keys too */
    assert_true(touched > CT_KEYS * 9 / 10);
    free(args);
    psrec_store_destroy(&s);
}

/* ---- memory accounting ---- */

static double fill_and_measure(int nlocks, uint64_t nrows)
{
    enum { DIM = 32, B = 8192 };
    psrec_store_t *s = mk(1, nlocks);
    add(s, 0,
        (psrec_table_conf_t){.dim = DIM,
                             .opt = {.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.1f},
                             .init = PSREC_INIT_UNIFORM,
                             .init_scale = 0.1f});
    uint64_t *keys = malloc(B * sizeof *keys);
    float *out = malloc((size_t)B * DIM * sizeof(float));
    for (uint64_t b = 0; b < nrows; b += B) {
        size_t m = nrows - b < B ? (size_t)(nrows - b) : B;
        for (size_t i = 0; i < m; i++)
            keys[i] = b + i;
        assert_int_equal(psrec_store_pull(s, 0, keys, m, out), PSREC_OK);
    }
    assert_int_equal(psrec_store_rows(s, 0), nrows);
    double bpr = psrec_store_bytes_per_row(s, 0);
    free(keys), free(out);
    psrec_store_destroy(&s);
    return bpr;
}

static void test_bytes_per_row(void **st)
{
    const double payload = 4 * 32 + 4; /* dim floats + one accumulator */
    /* lower bound independent of the layout: payload + a 12-byte slot at most 70% full */
    const double floor_ = payload + 12 / 0.7;
    int nl[2] = {16, 64};
    for (int i = 0; i < 2; i++) {
        double b = fill_and_measure(nl[i], 1000000);
        printf("bytes_per_row dim 32 rowwise-adagrad 1e6 rows nlocks %d: %.2f (payload %.0f)\n", nl[i], b, payload);
        assert_true(b >= floor_);
        assert_true(b < 4 * 32 + 4 + 32);
    }
}

/* ---- raw rows ---- */

typedef struct {
    uint64_t *keys;
    float *rows;
    size_t n, cap;
    uint32_t width;
} raw_t;

static void raw_visit(uint64_t key, const float *row, uint32_t width, void *ctx)
{
    raw_t *r = ctx;
    assert_int_equal(width, r->width);
    assert_true(r->n < r->cap);
    r->keys[r->n] = key;
    memcpy(r->rows + r->n * width, row, width * sizeof(float));
    r->n++;
}

/* All raw rows of a table, sorted by key (selection by an index sort, rows moved along). */
static raw_t raw_collect(psrec_store_t *s, uint32_t table, size_t cap)
{
    raw_t r = {.cap = cap, .width = psrec_store_row_width(s, table)};
    r.keys = malloc(cap * sizeof *r.keys);
    r.rows = malloc(cap * r.width * sizeof(float));
    psrec_store_foreach_raw(s, table, raw_visit, &r);
    uint64_t *k2 = malloc(r.n * sizeof *k2);
    float *r2 = malloc(r.n * r.width * sizeof(float) + 1);
    memcpy(k2, r.keys, r.n * sizeof *k2);
    qsort(k2, r.n, sizeof *k2, cmp_u64);
    for (size_t i = 0; i < r.n; i++) {
        size_t j = 0;
        while (r.keys[j] != k2[i])
            j++;
        memcpy(r2 + i * r.width, r.rows + j * r.width, r.width * sizeof(float));
    }
    free(r.keys), free(r.rows);
    r.keys = k2, r.rows = r2;
    return r;
}

/* foreach_raw -> put_raw copies weights AND optimizer state: identical further pushes then give
 * bit-identical rows in both stores (with a reset state, Adam's step count and moments would differ). */
static void test_raw_roundtrip(void **st)
{
    enum { K = 300, DIM = 6, STEPS = 5 };
    const psrec_opt_kind kinds[] = {PSREC_OPT_ADAM, PSREC_OPT_ADAGRAD, PSREC_OPT_ROWWISE_ADAGRAD, PSREC_OPT_SGD};
    const uint32_t state[] = {2 * DIM + 1, DIM, 1, 0}; /* ps/optim.h's layout, spelled out */
    for (int ki = 0; ki < 4; ki++) {
        psrec_table_conf_t c = {.dim = DIM,
                                .opt = {.kind = kinds[ki], .lr = 0.05f, .init_acc = 0.1f, .l2 = 0.01f},
                                .init = PSREC_INIT_NORMAL,
                                .init_scale = 0.2f,
                                .max_rows = 10 * K};
        psrec_store_t *a = mk(21, 4), *b = mk(22, 16); /* another seed: b's init must not matter */
        add(a, 3, c), add(b, 3, c);
        assert_int_equal(psrec_store_row_width(a, 3), DIM + state[ki]);
        assert_int_equal(psrec_store_row_width(a, 4), 0);
        psrec_table_conf_t got;
        assert_int_equal(psrec_store_table_conf(a, 3, &got), PSREC_OK);
        assert_memory_equal(&got, &c, sizeof c);
        assert_int_equal(psrec_store_table_conf(a, 4, &got), PSREC_ENOTFOUND);
        assert_int_equal(psrec_store_table_conf(a, 999, &got), PSREC_ENOTFOUND);
        uint64_t keys[K];
        float g[K * DIM];
        psrec_rng_t r;
        psrec_rng_seed(&r, 5, (uint64_t)ki);
        for (int i = 0; i < K; i++)
            keys[i] = psrec_rng_u64(&r);
        for (int t = 0; t < STEPS; t++) { /* rows get different step counts */
            size_t n = (size_t)K * (t + 1) / STEPS;
            for (size_t i = 0; i < n * DIM; i++)
                g[i] = (float)(2 * psrec_rng_uniform(&r) - 1);
            assert_int_equal(psrec_store_push(a, 3, keys, n, g), PSREC_OK);
        }
        raw_t ra = raw_collect(a, 3, K + 1);
        assert_int_equal(ra.n, K);
        /* b already holds some other rows, some of them keys of a (overwritten) */
        assert_int_equal(psrec_store_push(b, 3, keys + K / 2, 10, g), PSREC_OK);
        assert_int_equal(psrec_store_put_raw(b, 3, ra.keys, ra.n, ra.rows), PSREC_OK);
        raw_t rb = raw_collect(b, 3, K + 11);
        assert_int_equal(rb.n, K);
        assert_memory_equal(ra.keys, rb.keys, K * sizeof(uint64_t));
        assert_memory_equal(ra.rows, rb.rows, K * ra.width * sizeof(float));
        for (int t = 0; t < 3; t++) {
            for (size_t i = 0; i < (size_t)K * DIM; i++)
                g[i] = (float)(2 * psrec_rng_uniform(&r) - 1);
            assert_int_equal(psrec_store_push(a, 3, keys, K, g), PSREC_OK);
            assert_int_equal(psrec_store_push(b, 3, keys, K, g), PSREC_OK);
        }
        raw_t ra2 = raw_collect(a, 3, K + 1), rb2 = raw_collect(b, 3, K + 1);
        assert_memory_equal(ra2.rows, rb2.rows, K * ra.width * sizeof(float));
        if (kinds[ki] != PSREC_OPT_SGD) /* the state moved, so the test above saw it */
            assert_memory_not_equal(ra.rows + DIM, ra2.rows + DIM, state[ki] * sizeof(float));
        free(ra.keys), free(ra.rows), free(rb.keys), free(rb.rows);
        free(ra2.keys), free(ra2.rows), free(rb2.keys), free(rb2.rows);
        psrec_store_destroy(&a);
        psrec_store_destroy(&b);
    }
}

/* put_raw: max_rows refuses a call whose new rows do not fit (nothing changed); unknown table. */
static void test_raw_errors(void **st)
{
    enum { DIM = 2, W = 2 * DIM + 1 };
    psrec_store_t *s = mk(1, 2);
    add(s, 0, (psrec_table_conf_t){.dim = DIM, .opt = {.kind = PSREC_OPT_ADAM, .lr = 0.1f}, .max_rows = 3});
    uint64_t keys[4] = {1, 2, 3, 4};
    float rows[4 * W];
    for (int i = 0; i < 4 * W; i++)
        rows[i] = (float)i;
    assert_int_equal(psrec_store_put_raw(s, 0, keys, 2, rows), PSREC_OK);
    assert_int_equal(psrec_store_put_raw(s, 0, keys, 4, rows), PSREC_EFULL);
    assert_int_equal(psrec_store_rows(s, 0), 2);
    raw_t r = raw_collect(s, 0, 4);
    assert_int_equal(r.n, 2);
    assert_memory_equal(r.rows, rows, 2 * W * sizeof(float));
    assert_int_equal(psrec_store_put_raw(s, 1, keys, 1, rows), PSREC_ENOTFOUND);
    assert_int_equal(psrec_store_put_raw(s, 0, keys, 0, NULL), PSREC_OK);
    free(r.keys), free(r.rows);
    psrec_store_destroy(&s);
}

/* ---- 16-bit rows ---- */

static float round16(psrec_row_dtype d, float x)
{
    return d == PSREC_ROW_F16 ? psrec_f16_to_f32(psrec_f32_to_f16(x)) : psrec_bf16_to_f32(psrec_f32_to_bf16(x));
}

static void test_half_conversions(void **st)
{
    (void)st;
    /* exactly representable values come back unchanged */
    const float exact[] = {0.0f, 1.0f, -2.5f, 0.099609375f, 65504.0f, 6.103515625e-05f};
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        assert_true(psrec_f16_to_f32(psrec_f32_to_f16(exact[i])) == exact[i]);
    assert_true(psrec_bf16_to_f32(psrec_f32_to_bf16(-2.5f)) == -2.5f);
    assert_true(psrec_bf16_to_f32(psrec_f32_to_bf16(3.0e38f)) == 2.99881e38f ||
                fabsf(psrec_bf16_to_f32(psrec_f32_to_bf16(3.0e38f)) - 3.0e38f) < 3.0e38f / 128);
    /* halfway cases round to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 in binary16 */
    assert_true(psrec_f16_to_f32(psrec_f32_to_f16(1.0f + 0x1p-11f)) == 1.0f);
    assert_true(psrec_f16_to_f32(psrec_f32_to_f16(1.0f + 3 * 0x1p-11f)) == 1.0f + 0x1p-9f);
    assert_true(psrec_bf16_to_f32(psrec_f32_to_bf16(1.0f + 0x1p-8f)) == 1.0f);
    assert_true(psrec_bf16_to_f32(psrec_f32_to_bf16(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);
    /* error bounds: half an ulp of 11 (f16) and 8 (bf16) significant bits */
    psrec_rng_t r;
    psrec_rng_seed(&r, 3, 0);
    for (int i = 0; i < 10000; i++) {
        float x = (float)psrec_rng_normal(&r);
        assert_true(fabsf(round16(PSREC_ROW_F16, x) - x) <= fabsf(x) * 0x1p-11f + 0x1p-25f);
        assert_true(fabsf(round16(PSREC_ROW_BF16, x) - x) <= fabsf(x) * 0x1p-8f);
    }
    assert_true(isnan(psrec_f16_to_f32(psrec_f32_to_f16(NAN))));
    assert_true(isnan(psrec_bf16_to_f32(psrec_f32_to_bf16(NAN))));
    assert_true(isinf(psrec_f16_to_f32(psrec_f32_to_f16(1e6f)))); /* beyond binary16's range */
    psrec_row_dtype d;
    assert_int_equal(psrec_row_dtype_parse("bf16", &d), 0);
    assert_int_equal(d, PSREC_ROW_BF16);
    assert_int_equal(psrec_row_dtype_parse("f8", &d), -1);
}

static void test_half_rows(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    const uint32_t D = 33; /* odd: the last word is half padding */
    for (int dt = PSREC_ROW_F16; dt <= PSREC_ROW_BF16; dt++) {
        psrec_store_t *s, *s32, *copy;
        psrec_table_conf_t tc = {.dim = D,
                                 .opt = {.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.1f},
                                 .init = PSREC_INIT_NORMAL,
                                 .init_scale = 0.3f,
                                 .dtype = (psrec_row_dtype)dt};
        psrec_table_conf_t tf = tc;
        tf.dtype = PSREC_ROW_F32;
        assert_int_equal(psrec_store_new(&s, 11, 8), PSREC_OK);
        assert_int_equal(psrec_store_new(&s32, 11, 8), PSREC_OK);
        assert_int_equal(psrec_store_new(&copy, 11, 8), PSREC_OK);
        assert_int_equal(psrec_store_add_table(s, 2, &tc, err), PSREC_OK);
        assert_int_equal(psrec_store_add_table(s32, 2, &tf, err), PSREC_OK);
        assert_int_equal(psrec_store_add_table(copy, 2, &tc, err), PSREC_OK);
        assert_int_equal(psrec_store_row_width(s, 2), (D + 1) / 2 + 1);
        enum { N = 200 };
        uint64_t keys[N];
        for (int i = 0; i < N; i++)
            keys[i] = (uint64_t)i * 977 + 5;
        /* first touch: the float32 init, rounded (init_row says the same) */
        float *got = malloc(N * D * sizeof *got), *ref = malloc(N * D * sizeof *ref), *g = malloc(N * D * sizeof *g);
        float acc[N] = {0};
        assert_int_equal(psrec_store_pull(s, 2, keys, N, got), PSREC_OK);
        assert_int_equal(psrec_store_pull(s32, 2, keys, N, ref), PSREC_OK);
        float one[64];
        for (int i = 0; i < N; i++) {
            psrec_store_init_row(s, 2, keys[i], one);
            for (uint32_t j = 0; j < D; j++) {
                assert_true(got[i * D + j] == round16((psrec_row_dtype)dt, ref[i * D + j]));
                assert_true(one[j] == got[i * D + j]);
            }
        }
        /* pushes: the optimizer in float32 on the widened row, then rounded (reference kept here) */
        memcpy(ref, got, N * D * sizeof *ref);
        psrec_rng_t r;
        psrec_rng_seed(&r, 9, (uint64_t)dt);
        for (int step = 0; step < 5; step++) {
            for (int i = 0; i < N * (int)D; i++)
                g[i] = (float)psrec_rng_normal(&r);
            assert_int_equal(psrec_store_push(s, 2, keys, N, g), PSREC_OK);
            for (int i = 0; i < N; i++) {
                double n2 = 0;
                for (uint32_t j = 0; j < D; j++)
                    n2 += (double)g[i * D + j] * g[i * D + j];
                acc[i] += (float)(n2 / D);
                for (uint32_t j = 0; j < D; j++) {
                    float w = ref[i * D + j] - 0.1f * g[i * D + j] / (sqrtf(acc[i]) + 1e-8f);
                    ref[i * D + j] = round16((psrec_row_dtype)dt, w);
                }
            }
        }
        assert_int_equal(psrec_store_pull(s, 2, keys, N, got), PSREC_OK);
        for (int i = 0; i < N * (int)D; i++) /* one rounding step apart at most (the state sum's order) */
            assert_true(fabsf(got[i] - ref[i]) <= fabsf(ref[i]) * (dt == PSREC_ROW_F16 ? 0x1p-10f : 0x1p-7f) + 1e-6f);
        /* set rounds; raw rows carry the packed weights and the state bit for bit */
        assert_int_equal(psrec_store_set(s, 2, keys, 1, ref), PSREC_OK);
        assert_int_equal(psrec_store_pull(s, 2, keys, 1, got), PSREC_OK);
        for (uint32_t j = 0; j < D; j++)
            assert_true(got[j] == round16((psrec_row_dtype)dt, ref[j]));
        raw_t rw = raw_collect(s, 2, N + 1);
        assert_int_equal(rw.n, N);
        assert_int_equal(psrec_store_put_raw(copy, 2, rw.keys, rw.n, rw.rows), PSREC_OK);
        float *a = malloc(N * D * sizeof *a), *b = malloc(N * D * sizeof *b);
        assert_int_equal(psrec_store_push(s, 2, keys, N, g), PSREC_OK);
        assert_int_equal(psrec_store_push(copy, 2, keys, N, g), PSREC_OK);
        assert_int_equal(psrec_store_pull(s, 2, keys, N, a), PSREC_OK);
        assert_int_equal(psrec_store_pull(copy, 2, keys, N, b), PSREC_OK);
        assert_memory_equal(a, b, N * D * sizeof *a);
        /* half the memory of float32 rows (payload 17 words + hash entry against 34 + hash entry) */
        assert_true(psrec_store_bytes_per_row(s, 2) < 0.65 * psrec_store_bytes_per_row(s32, 2));
        free(rw.keys), free(rw.rows), free(a), free(b), free(got), free(ref), free(g);
        psrec_store_destroy(&s);
        psrec_store_destroy(&s32);
        psrec_store_destroy(&copy);
    }
    /* an unknown row type is refused */
    psrec_store_t *s;
    assert_int_equal(psrec_store_new(&s, 1, 4), PSREC_OK);
    psrec_table_conf_t bad = {.dim = 4, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.1f}, .dtype = (psrec_row_dtype)7};
    assert_int_equal(psrec_store_add_table(s, 0, &bad, err), PSREC_EINVAL);
    psrec_store_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_init),
        cmocka_unit_test(test_push_optimizers),
        cmocka_unit_test(test_repeat_and_set),
        cmocka_unit_test(test_max_rows),
        cmocka_unit_test(test_max_rows_skip_new),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_foreach),
        cmocka_unit_test(test_growth_one_stripe),
        cmocka_unit_test(test_concurrent_push),
        cmocka_unit_test(test_bytes_per_row),
        cmocka_unit_test(test_raw_roundtrip),
        cmocka_unit_test(test_raw_errors),
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_half_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_model.c: a model saved from a store loads back with the same rows, psi(x) computed from the
 * loaded model equals the tower applied to hand-built slot means, and damaged files are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/model.h"

static char dir[64];

static int setup(void **state)
{
    strcpy(dir, "/tmp/psrec-model-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static psrec_model_conf_t make_conf(void)
{
    psrec_model_conf_t c = {.dim = 4, .emb_dim = 3, .tie = 0, .seed = 9};
    psrec_schema_add(&c.schema, "hist", 4);
    psrec_schema_add(&c.schema, "region", 6);
    c.tower.n_in = 2 * 3;
    c.tower.n_hidden = 1;
    c.tower.hidden[0] = 5;
    c.tower.out_dim = 4;
    return c;
}

static void save_model(const char *mdir, psrec_model_conf_t *c, float *params_out)
{
    char err[PSREC_ERRBUF] = "";
    psrec_store_t *s;
    assert_int_equal(psrec_store_new(&s, 5, 4), PSREC_OK);
    psrec_table_conf_t tout = {
        .dim = 4, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.1f}, .init = PSREC_INIT_NORMAL, .init_scale = 0.5f};
    psrec_table_conf_t tin = tout;
    tin.dim = 3;
    psrec_table_conf_t td = {.dim = PSREC_DENSE_CHUNK, .opt = tout.opt, .init = PSREC_INIT_ZERO};
    assert_int_equal(psrec_store_add_table(s, PSREC_TABLE_ITEM_OUT, &tout, err), PSREC_OK);
    assert_int_equal(psrec_store_add_table(s, PSREC_TABLE_ITEM_IN, &tin, err), PSREC_OK);
    assert_int_equal(psrec_store_add_table(s, PSREC_TABLE_SLOT0 + 1, &tin, err), PSREC_OK);
    assert_int_equal(psrec_store_add_table(s, PSREC_TABLE_DENSE, &td, err), PSREC_OK);
    psrec_table_client_t *cl;
    assert_int_equal(psrec_table_client_new_local(&cl, s), PSREC_OK);
    psrec_tower_t *t;
    assert_int_equal(psrec_tower_new(&t, &c->tower), PSREC_OK);
    size_t np = psrec_tower_nparams(t);
    float p[PSREC_DENSE_CHUNK] = {0};
    assert_true(np <= PSREC_DENSE_CHUNK);
    psrec_tower_init_params(t, 3, p);
    for (size_t i = 0; i < np; i++)
        p[i] += 0.05f; /* positive biases keep ReLUs alive */
    memcpy(params_out, p, sizeof p);
    uint64_t k0 = 0;
    assert_int_equal(psrec_table_set(cl, PSREC_TABLE_DENSE, &k0, 1, p), PSREC_OK);
    /* touch some input rows */
    uint64_t hk[3] = {10, 11, 12}, rk[2] = {100, 200};
    float tmp[12];
    assert_int_equal(psrec_table_pull(cl, PSREC_TABLE_ITEM_IN, hk, 3, tmp), PSREC_OK);
    assert_int_equal(psrec_table_pull(cl, PSREC_TABLE_SLOT0 + 1, rk, 2, tmp), PSREC_OK);
    uint64_t cat[5] = {14, 10, 11, 12, 13};
    assert_int_equal(psrec_model_save(mdir, c, cl, psrec_model_store_dump, s, cat, 5, err), PSREC_OK);
    psrec_tower_destroy(&t);
    psrec_table_client_destroy(&cl);
    psrec_store_destroy(&s);
}

static void test_roundtrip_and_embed(void **state)
{
    char mdir[128], err[PSREC_ERRBUF] = "";
    snprintf(mdir, sizeof mdir, "%s/m1", dir);
    psrec_model_conf_t c = make_conf();
    float params[PSREC_DENSE_CHUNK];
    save_model(mdir, &c, params);

    psrec_model_t *m;
    assert_int_equal(psrec_model_load(&m, mdir, err), PSREC_OK);
    const psrec_model_conf_t *lc = psrec_model_conf(m);
    assert_int_equal(lc->dim, 4);
    assert_int_equal(lc->emb_dim, 3);
    assert_int_equal(lc->schema.nslots, 2);
    assert_int_equal(lc->tower.n_hidden, 1);
    assert_int_equal(lc->tower.hidden[0], 5);
    const uint64_t *ids;
    const float *V;
    assert_int_equal(psrec_model_items(m, &ids, &V), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ids[i], 10 + i); /* sorted catalogue */
    assert_int_equal(psrec_model_item_index(m, 13), 3);
    assert_int_equal(psrec_model_item_index(m, 99), -1);

    /* the same rows as a fresh store's deterministic init (seed 5) */
    psrec_store_t *s;
    assert_int_equal(psrec_store_new(&s, 5, 1), PSREC_OK);
    psrec_table_conf_t tin = {
        .dim = 3, .opt = {.kind = PSREC_OPT_SGD, .lr = 0.1f}, .init = PSREC_INIT_NORMAL, .init_scale = 0.5f};
    assert_int_equal(psrec_store_add_table(s, PSREC_TABLE_ITEM_IN, &tin, err), PSREC_OK);
    assert_int_equal(psrec_store_add_table(s, PSREC_TABLE_SLOT0 + 1, &tin, err), PSREC_OK);
    float h10[3], h11[3], r200[3];
    uint64_t k = 10;
    assert_int_equal(psrec_store_pull(s, PSREC_TABLE_ITEM_IN, &k, 1, h10), PSREC_OK);
    k = 11;
    assert_int_equal(psrec_store_pull(s, PSREC_TABLE_ITEM_IN, &k, 1, h11), PSREC_OK);
    k = 200;
    assert_int_equal(psrec_store_pull(s, PSREC_TABLE_SLOT0 + 1, &k, 1, r200), PSREC_OK);
    psrec_store_destroy(&s);

    /* one query: hist = {10, 11, 999 (unknown: ignored)}, region = {200} */
    psrec_batch_t b;
    psrec_batch_init(&b, 2);
    assert_int_equal(psrec_batch_begin(&b), PSREC_OK);
    assert_int_equal(psrec_batch_add_slot(&b, 0, 10), PSREC_OK);
    assert_int_equal(psrec_batch_add_slot(&b, 0, 11), PSREC_OK);
    assert_int_equal(psrec_batch_add_slot(&b, 0, 999), PSREC_OK);
    assert_int_equal(psrec_batch_add_slot(&b, 1, 200), PSREC_OK);
    psrec_batch_end(&b);
    float U[4], X[6], ref[4];
    assert_int_equal(psrec_model_embed(m, &b, U), PSREC_OK);
    for (int j = 0; j < 3; j++) {
        X[j] = (h10[j] + h11[j]) / 2;
        X[3 + j] = r200[j];
    }
    psrec_tower_t *t;
    assert_int_equal(psrec_tower_new(&t, &c.tower), PSREC_OK);
    assert_int_equal(psrec_tower_forward(t, params, X, 1, ref), PSREC_OK);
    for (int j = 0; j < 4; j++)
        assert_true(fabsf(U[j] - ref[j]) < 1e-5f);
    psrec_tower_destroy(&t);
    psrec_batch_free(&b);
    psrec_model_destroy(&m);
    assert_null(m);
}

static void test_damage_refused(void **state)
{
    char mdir[128], path[256], err[PSREC_ERRBUF] = "";
    snprintf(mdir, sizeof mdir, "%s/m2", dir);
    psrec_model_conf_t c = make_conf();
    float params[PSREC_DENSE_CHUNK];
    save_model(mdir, &c, params);
    psrec_model_t *m = NULL;
    /* one flipped byte in the item table */
    snprintf(path, sizeof path, "%s/table-%u.bin", mdir, PSREC_TABLE_ITEM_OUT);
    FILE *f = fopen(path, "r+b");
    fseek(f, 40, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 40, SEEK_SET);
    fputc(ch ^ 1, f);
    fclose(f);
    assert_int_equal(psrec_model_load(&m, mdir, err), PSREC_ECORRUPT);
    assert_null(m);
    assert_non_null(strstr(err, "table-0.bin"));
    /* the tower weights missing */
    save_model(mdir, &c, params);
    snprintf(path, sizeof path, "%s/table-%u.bin", mdir, PSREC_TABLE_DENSE);
    assert_int_equal(remove(path), 0);
    assert_int_equal(psrec_model_load(&m, mdir, err), PSREC_ENOTFOUND);
    /* no model at all */
    snprintf(path, sizeof path, "%s/none", dir);
    assert_int_equal(psrec_model_load(&m, path, err), PSREC_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roundtrip_and_embed),
                                       cmocka_unit_test(test_damage_refused)};
    return cmocka_run_group_tests(tests, setup, teardown);
}

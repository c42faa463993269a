/* test_idmap.c: the id map against a brute-force reference, including the sentinel key and growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/idmap.h"
#include "common/rng.h"

static void test_against_reference(void **state)
{
    enum { N = 20000 };
    uint64_t *keys = malloc(N * 8), *vals = malloc(N * 8);
    psrec_rng_t r;
    psrec_rng_seed(&r, 11, 0);
    for (int i = 0; i < N; i++) {
        keys[i] = i % 3 == 0 ? (uint64_t)i : psrec_rng_u64(&r); /* dense and random ids */
        vals[i] = (uint64_t)i * 7;
    }
    keys[5] = UINT64_MAX; /* the sentinel key is a valid key */
    psrec_idmap_t *m;
    assert_int_equal(psrec_idmap_new(&m, 4), PSREC_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(psrec_idmap_put(m, keys[i], vals[i]), PSREC_OK);
    assert_int_equal(psrec_idmap_size(m), N);
    for (int i = 0; i < N; i++) {
        int found = 0;
        assert_int_equal(psrec_idmap_get(m, keys[i], &found), vals[i]);
        assert_true(found);
    }
    int found = 1;
    assert_int_equal(psrec_idmap_get(m, 12345678901ULL, &found), 0);
    assert_false(found);
    /* upsert on an existing key returns its value and does not insert */
    int ins = 1;
    uint64_t *v = psrec_idmap_upsert(m, keys[9], 0, &ins);
    assert_false(ins);
    assert_int_equal(*v, vals[9]);
    /* iteration visits each entry once */
    size_t it = 0, count = 0;
    uint64_t k, val, sum = 0, ref = 0;
    while (psrec_idmap_next(m, &it, &k, &val)) {
        count++;
        sum += val;
    }
    for (int i = 0; i < N; i++)
        ref += vals[i];
    assert_int_equal(count, N);
    assert_int_equal(sum, ref);
    psrec_idmap_clear(m);
    assert_int_equal(psrec_idmap_size(m), 0);
    psrec_idmap_get(m, keys[0], &found);
    assert_false(found);
    psrec_idmap_get(m, UINT64_MAX, &found);
    assert_false(found);
    psrec_idmap_destroy(&m);
    assert_null(m);
    psrec_idmap_destroy(NULL);
    free(keys);
    free(vals);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_against_reference)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

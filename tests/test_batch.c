/* test_batch.c: CSR batches: building, weight normalisation, slots added later, copy, schema. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "common/batch.h"

static void test_build_and_normalise(void **state)
{
    psrec_batch_t b;
    psrec_batch_init(&b, 2);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(psrec_batch_begin(&b), PSREC_OK);
        assert_int_equal(psrec_batch_add_pos(&b, (uint64_t)i, 1.0f), PSREC_OK);
        assert_int_equal(psrec_batch_add_pos(&b, (uint64_t)i + 1, 3.0f), PSREC_OK);
        for (int k = 0; k < i % 5; k++)
            assert_int_equal(psrec_batch_add_slot(&b, 1, (uint64_t)k), PSREC_OK);
        if (i % 7 == 0) assert_int_equal(psrec_batch_add_home(&b, 3), PSREC_OK);
        psrec_batch_end(&b);
    }
    assert_int_equal(b.n, 1000);
    assert_int_equal(b.pos_off[1000], 2000);
    assert_true(fabsf(b.pos_w[0] - 0.25f) < 1e-7f && fabsf(b.pos_w[1] - 0.75f) < 1e-7f);
    assert_int_equal(b.slot_off[0][1000], 0);
    assert_int_equal(b.slot_off[1][4] - b.slot_off[1][3], 3);
    assert_int_equal(b.home_off[1000], 143);
    assert_int_equal(psrec_batch_add_slot(&b, 2, 1), PSREC_EINVAL);

    /* an aborted example leaves nothing behind */
    assert_int_equal(psrec_batch_begin(&b), PSREC_OK);
    assert_int_equal(psrec_batch_add_pos(&b, 77, 1.0f), PSREC_OK);
    psrec_batch_abort(&b);
    assert_int_equal(psrec_batch_begin(&b), PSREC_OK);
    psrec_batch_end(&b);
    assert_int_equal(b.pos_off[1001] - b.pos_off[1000], 0);

    /* a slot added later is empty for earlier examples */
    assert_int_equal(psrec_batch_set_nslots(&b, 3), PSREC_OK);
    assert_int_equal(b.slot_off[2][b.n], 0);
    assert_int_equal(psrec_batch_begin(&b), PSREC_OK);
    assert_int_equal(psrec_batch_add_slot(&b, 2, 9), PSREC_OK);
    psrec_batch_end(&b);
    assert_int_equal(b.slot_off[2][b.n], 1);

    psrec_batch_t c;
    psrec_batch_init(&c, 3);
    assert_int_equal(psrec_batch_copy_example(&c, &b, 4), PSREC_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.pos_id[1], 5);
    assert_int_equal(c.slot_off[1][1], 4);
    psrec_batch_clear(&c);
    assert_int_equal(c.n, 0);
    psrec_batch_free(&c);
    psrec_batch_free(&b);
}

static void test_schema(void **state)
{
    psrec_schema_t s = {0};
    assert_int_equal(psrec_schema_hist(&s), -1);
    assert_int_equal(psrec_schema_add(&s, "region", 6), 0);
    assert_int_equal(psrec_schema_add(&s, "hist", 4), 1);
    assert_int_equal(psrec_schema_add(&s, "region", 6), 0);
    assert_int_equal(psrec_schema_hist(&s), 1);
    assert_int_equal(psrec_schema_find(&s, "regionX", 6), 0);
    assert_int_equal(psrec_schema_add(&s, "", 0), -1);
    char longname[64];
    memset(longname, 'a', sizeof longname);
    assert_int_equal(psrec_schema_add(&s, longname, sizeof longname), -1);
    for (int i = 2; i < PSREC_MAX_SLOTS; i++) {
        char n[8] = {'s', (char)('a' + i)};
        assert_int_equal(psrec_schema_add(&s, n, 2), i);
    }
    assert_int_equal(psrec_schema_add(&s, "full", 4), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_build_and_normalise), cmocka_unit_test(test_schema)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

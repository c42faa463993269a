/* test_optim.c: the per-row optimizers against an independent double-precision reference (optim_ref.h),
 * state sizes, defaults, validation and names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/rng.h"
#include "optim_ref.h"
#include "ps/optim.h"

#define D 7
#define STEPS 6

static void random_vec(psrec_rng_t *r, float *v, int n, double scale)
{
    for (int i = 0; i < n; i++)
        v[i] = (float)((2 * psrec_rng_uniform(r) - 1) * scale);
}

/* STEPS updates of one row with random gradients; float store vs double reference after every step. */
static void check_kind(const psrec_opt_t *conf)
{
    psrec_optim_t o;
    char err[PSREC_ERRBUF];
    assert_int_equal(psrec_optim_init(&o, conf, err), PSREC_OK);
    uint32_t ns = psrec_optim_state_floats(conf->kind, D);
    float w[D], state[2 * D + 1], g[D];
    psrec_rng_t r;
    psrec_rng_seed(&r, 42, (uint64_t)conf->kind);
    random_vec(&r, w, D, 0.5);
    psrec_optim_reset_state(&o, state, D);
    ref_row_t ref;
    ref_row_init(&ref, D, w, conf);
    for (int step = 0; step < STEPS; step++) {
        random_vec(&r, g, D, 1.0);
        psrec_optim_apply(&o, w, ns ? state : NULL, g, D);
        ref_step(&ref, conf, g);
        double ex = ref_max_excess(w, &ref, 2e-6, 2e-5);
        if (ex > 0)
            fail_msg("%s l2=%g step %d: off by %g beyond tolerance", psrec_opt_name(conf->kind), conf->l2, step, ex);
    }
    if (conf->kind == PSREC_OPT_ADAM) assert_int_equal(psrec_optim_adam_steps(state, D), STEPS);
    ref_row_free(&ref);
}

static void test_sgd(void **st)
{
    check_kind(&(psrec_opt_t){.kind = PSREC_OPT_SGD, .lr = 0.3f});
    check_kind(&(psrec_opt_t){.kind = PSREC_OPT_SGD, .lr = 0.3f, .l2 = 0.1f});
}

static void test_adagrad(void **st)
{
    check_kind(&(psrec_opt_t){.kind = PSREC_OPT_ADAGRAD, .lr = 0.1f});
    check_kind(&(psrec_opt_t){.kind = PSREC_OPT_ADAGRAD, .lr = 0.1f, .init_acc = 0.1f, .eps = 1e-3f, .l2 = 0.05f});
}

static void test_rowwise_adagrad(void **st)
{
    check_kind(&(psrec_opt_t){.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.1f});
    check_kind(&(psrec_opt_t){.kind = PSREC_OPT_ROWWISE_ADAGRAD, .lr = 0.2f, .init_acc = 0.1f, .l2 = 0.05f});
}

static void test_adam(void **st)
{
    check_kind(&(psrec_opt_t){.kind = PSREC_OPT_ADAM, .lr = 0.01f});
    check_kind(
        &(psrec_opt_t){.kind = PSREC_OPT_ADAM, .lr = 0.01f, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-6f, .l2 = 0.01f});
}

/* Adam's first step with the row's own count is bias-corrected: |dw| = lr |g| / (|g| + eps / sqrt(1 - b2)) ~ lr
 * (|g| >= 0.02 keeps the eps term below 2e-5 relative). */
static void test_adam_first_step(void **st)
{
    psrec_optim_t o;
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.kind = PSREC_OPT_ADAM, .lr = 0.01f}, NULL), PSREC_OK);
    float w[2] = {1, 1}, s[5], g[2] = {0.5f, -0.02f};
    psrec_optim_reset_state(&o, s, 2);
    psrec_optim_apply(&o, w, s, g, 2);
    assert_float_equal(w[0], 1 - 0.01, 1e-6);
    assert_float_equal(w[1], 1 + 0.01, 1e-6);
}

static void test_state_and_defaults(void **st)
{
    assert_int_equal(psrec_optim_state_floats(PSREC_OPT_SGD, 32), 0);
    assert_int_equal(psrec_optim_state_floats(PSREC_OPT_ADAGRAD, 32), 32);
    assert_int_equal(psrec_optim_state_floats(PSREC_OPT_ROWWISE_ADAGRAD, 32), 1);
    assert_int_equal(psrec_optim_state_floats(PSREC_OPT_ADAM, 32), 65);
    psrec_optim_t o;
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.kind = PSREC_OPT_ADAM, .lr = 1}, NULL), PSREC_OK);
    assert_true(o.eps == 1e-8f && o.beta1 == 0.9f && o.beta2 == 0.999f);
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.kind = PSREC_OPT_ADAGRAD, .init_acc = 0.25f}, NULL),
                     PSREC_OK);
    float a[3] = {9, 9, 9};
    psrec_optim_reset_state(&o, a, 3);
    assert_true(a[0] == 0.25f && a[1] == 0.25f && a[2] == 0.25f);
}

static void test_invalid(void **st)
{
    psrec_optim_t o;
    char err[PSREC_ERRBUF] = "";
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.kind = (psrec_opt_kind)9}, err), PSREC_EINVAL);
    assert_true(err[0] != 0);
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.lr = -1}, err), PSREC_EINVAL);
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.lr = NAN}, err), PSREC_EINVAL);
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.kind = PSREC_OPT_ADAM, .beta1 = 1}, err), PSREC_EINVAL);
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.kind = PSREC_OPT_ADAM, .beta2 = -0.5f}, err), PSREC_EINVAL);
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.eps = -1}, err), PSREC_EINVAL);
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.l2 = INFINITY}, err), PSREC_EINVAL);
    assert_int_equal(psrec_optim_init(&o, &(psrec_opt_t){.init_acc = -0.1f}, err), PSREC_EINVAL);
}

static void test_names(void **st)
{
    const char *n[] = {"sgd", "adagrad", "rowwise-adagrad", "adam"};
    for (int i = 0; i < 4; i++) {
        psrec_opt_kind k = (psrec_opt_kind)99;
        assert_int_equal(psrec_opt_parse(n[i], &k), 0);
        assert_int_equal(k, i);
        assert_string_equal(psrec_opt_name(k), n[i]);
    }
    psrec_opt_kind k;
    assert_int_not_equal(psrec_opt_parse("Adam", &k), 0);
    assert_int_not_equal(psrec_opt_parse("", &k), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adagrad),
        cmocka_unit_test(test_rowwise_adagrad),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adam_first_step),
        cmocka_unit_test(test_state_and_defaults),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_blas_check.c: which OpenBLAS kernel psrec asks for, given the detected one and the CPU flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "common/blas_check.h"

static void test_choice(void **state)
{
    const char *avx512 = "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl\n";
    const char *avx2 = "flags\t\t: fpu sse2 avx avx2 fma\n";
    const char *sse = "flags\t\t: fpu sse2\n";
    assert_string_equal(psrec_blas_better_core("Prescott", avx512), "SkylakeX");
    assert_string_equal(psrec_blas_better_core("Prescott", avx2), "Haswell");
    assert_null(psrec_blas_better_core("Prescott", sse));
    assert_null(psrec_blas_better_core("Haswell", avx512)); /* a modern kernel is left alone */
    assert_null(psrec_blas_better_core("Zen", avx2));
    assert_null(psrec_blas_better_core(NULL, avx2));
    /* a flag must match as a whole word: "avx512fx" is not avx512f */
    assert_string_equal(psrec_blas_better_core("Core2", "flags : avx2 fma avx512fx avx512bw\n"), "Haswell");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_choice)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

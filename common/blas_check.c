/* blas_check.c: OpenBLAS kernel sanity check (see blas_check.h). Design: compare the detected core
 * name with the CPU's flags and re-exec once with OPENBLAS_CORETYPE; an environment marker prevents
 * loops. Thread model: main thread, before any other thread exists. */
#include "common/blas_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);

static int has_flag(const char *flags, const char *f)
{
    size_t n = strlen(f);
    for (const char *p = flags; (p = strstr(p, f)) != NULL; p += n) {
        int start = p == flags || p[-1] == ' ' || p[-1] == '\t' || p[-1] == ':';
        int end = p[n] == '\0' || p[n] == ' ' || p[n] == '\n' || p[n] == '\t';
        if (start && end) return 1;
    }
    return 0;
}

const char *psrec_blas_better_core(const char *detected, const char *cpu_flags)
{
    static const char *old[] = {"Prescott",   "Core2",     "Penryn", "Dunnington", "Nehalem", "Atom",      "Katmai",
                                "Coppermine", "Northwood", "Banias", "Athlon",     "Opteron", "Barcelona", "unknown"};
    int is_old = 0;
    for (size_t i = 0; detected && i < sizeof old / sizeof *old; i++)
        if (strcasecmp(detected, old[i]) == 0) is_old = 1;
    if (!is_old || !cpu_flags) return NULL;
    if (has_flag(cpu_flags, "avx512f") && has_flag(cpu_flags, "avx512bw")) return "SkylakeX";
    if (has_flag(cpu_flags, "avx2") && has_flag(cpu_flags, "fma")) return "Haswell";
    return NULL;
}

void psrec_blas_fix(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || getenv("PSREC_NO_BLAS_FIX") || getenv("PSREC_BLAS_FIXED")) return;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[8192], flags[8192] = "";
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0) {
            snprintf(flags, sizeof flags, "%s", line);
            break;
        }
    fclose(f);
    const char *core = psrec_blas_better_core(openblas_get_corename(), flags);
    if (!core) return;
    fprintf(stderr,
            "psrec: OpenBLAS detected '%s' but this CPU supports %s kernels; re-running with "
            "OPENBLAS_CORETYPE=%s (disable with PSREC_NO_BLAS_FIX=1)\n",
            openblas_get_corename(), core, core);
    setenv("OPENBLAS_CORETYPE", core, 1);
    setenv("PSREC_BLAS_FIXED", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernel rather than fail */
}

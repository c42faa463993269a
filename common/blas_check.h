/* blas_check.h: notice when OpenBLAS picked a kernel far below what the CPU can do (in some VMs
 * Debian's OpenBLAS 0.3.21 detects an AVX-512 CPU as "Prescott" and runs sgemm ~4x slower) and fix it
 * by re-executing the program once with OPENBLAS_CORETYPE set, which must happen before OpenBLAS
 * initialises. Opt out with --no-blas-fix or PSREC_NO_BLAS_FIX=1; a user-set OPENBLAS_CORETYPE is
 * always respected. Thread model: call first thing in main(), single-threaded. */
#ifndef PSREC_BLAS_CHECK_H
#define PSREC_BLAS_CHECK_H

/* The kernel OpenBLAS should use on this CPU ("SkylakeX", "Haswell") when the one it detected
 * (`detected`) is an older generic one, else NULL. `cpu_flags` is the flags line of /proc/cpuinfo. */
const char *psrec_blas_better_core(const char *detected, const char *cpu_flags);

/* Re-executes argv with OPENBLAS_CORETYPE set when psrec_blas_better_core says so (returns only if
 * nothing was done or exec failed). */
void psrec_blas_fix(char **argv);

#endif

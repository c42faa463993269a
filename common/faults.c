/* faults.c: fault injection for the transport and the durable writer (common/faults.h).
 *
 * Design: the configuration is an immutable value built once from PSREC_FAULTS under pthread_once, so
 * the hot path (psrec_wire_send) only tests `enabled`. A spec is parsed completely before anything is
 * turned on: a typo never leaves a half-applied configuration, and it never aborts a run (the message
 * names the key and faults stay off). One uniform draw per message picks drop / dup / delay from
 * disjoint intervals, so the three rates are exactly the configured ones.
 * Thread model: the decision state is thread-local (a xoshiro stream per thread, seeded from the
 * configuration's seed and a process-wide thread counter); the counters are relaxed atomics. Nothing
 * here takes a lock. */
#include "common/faults.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

/* The one process-wide configuration (written once under pthread_once, read-only afterwards) and the
 * injected-fault counters: the process-wide fault table STYLE.md allows. */
static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;
static psrec_faults_t cfg;
static atomic_uint_fast64_t n_dropped, n_duplicated, n_delayed, n_failed_writes, n_threads;

/* This thread's decision stream, reseeded when a configuration with another seed is used. */
static _Thread_local struct {
    psrec_rng_t rng;
    uint64_t seed, stream;
    int init;
} tls;

static psrec_rng_t *stream_for(const psrec_faults_t *f)
{
    if (!tls.init) {
        tls.stream = atomic_fetch_add_explicit(&n_threads, 1, memory_order_relaxed);
        tls.init = 1;
        psrec_rng_seed(&tls.rng, f->seed, tls.stream);
        tls.seed = f->seed;
    } else if (tls.seed != f->seed) {
        psrec_rng_seed(&tls.rng, f->seed, tls.stream);
        tls.seed = f->seed;
    }
    return &tls.rng;
}

/* ---- parsing ---- */

static const char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int parse_prob(const char *v, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= 0.0 && x <= 1.0)) return -1;
    *out = x;
    return 0;
}

psrec_err psrec_faults_parse(const char *spec, psrec_faults_t *out, char *err)
{
    psrec_faults_t f = {.delay_ms = PSREC_FAULTS_DEFAULT_DELAY_MS, .seed = 1};
    memset(out, 0, sizeof *out);
    out->delay_ms = f.delay_ms;
    out->seed = f.seed;
    if (!spec) return PSREC_OK;
    char buf[1024];
    if (strlen(spec) >= sizeof buf)
        return psrec_fail(err, PSREC_EPARSE, "%s: spec of %zu bytes is too long", PSREC_FAULTS_ENV, strlen(spec));
    strcpy(buf, spec);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) {
            const char *k = trim(item);
            if (!*k) continue; /* "drop=0.1,,dup=0.1" or a trailing comma */
            return psrec_fail(err, PSREC_EPARSE, "%s: '%s' has no value (key=value expected)", PSREC_FAULTS_ENV, k);
        }
        *eq = '\0';
        const char *k = trim(item), *v = trim(eq + 1);
        int bad = 0;
        if (!strcmp(k, "drop")) {
            bad = parse_prob(v, &f.drop);
        } else if (!strcmp(k, "dup")) {
            bad = parse_prob(v, &f.dup);
        } else if (!strcmp(k, "delay")) {
            bad = parse_prob(v, &f.delay);
        } else if (!strcmp(k, "write_fail")) {
            bad = parse_prob(v, &f.write_fail);
        } else if (!strcmp(k, "delay_ms")) {
            char *end;
            errno = 0;
            long x = strtol(v, &end, 10);
            if (errno || end == v || *end || x < 0 || x > PSREC_FAULTS_MAX_DELAY_MS)
                return psrec_fail(err, PSREC_EPARSE, "%s: delay_ms='%s' is not a number of ms in 0..%d",
                                  PSREC_FAULTS_ENV, v, PSREC_FAULTS_MAX_DELAY_MS);
            f.delay_ms = (int)x;
        } else if (!strcmp(k, "seed")) {
            char *end;
            errno = 0;
            unsigned long long x = strtoull(v, &end, 0);
            if (errno || end == v || *end || *v == '-')
                return psrec_fail(err, PSREC_EPARSE, "%s: seed='%s' is not an unsigned integer", PSREC_FAULTS_ENV, v);
            f.seed = x;
        } else {
            return psrec_fail(err, PSREC_EPARSE,
                              "%s: unknown key '%s' (known: drop, dup, delay, delay_ms, write_fail, seed)",
                              PSREC_FAULTS_ENV, k);
        }
        if (bad)
            return psrec_fail(err, PSREC_EPARSE, "%s: %s='%s' is not a probability in [0, 1]", PSREC_FAULTS_ENV, k, v);
    }
    if (f.drop + f.dup + f.delay > 1.0 + 1e-12)
        return psrec_fail(err, PSREC_EPARSE, "%s: drop + dup + delay = %g exceeds 1", PSREC_FAULTS_ENV,
                          f.drop + f.dup + f.delay);
    f.enabled = f.drop > 0 || f.dup > 0 || f.delay > 0 || f.write_fail > 0;
    *out = f;
    return PSREC_OK;
}

/* ---- the process configuration ---- */

static void load(void)
{
    const char *spec = getenv(PSREC_FAULTS_ENV);
    char err[PSREC_ERRBUF];
    if (psrec_faults_parse(spec, &cfg, err)) {
        fprintf(stderr, "psrec: %s; fault injection stays off\n", err);
        return;
    }
    if (cfg.enabled)
        fprintf(stderr, "psrec: fault injection on: drop=%g dup=%g delay=%g (delay_ms=%d) write_fail=%g seed=%llu\n",
                cfg.drop, cfg.dup, cfg.delay, cfg.delay_ms, cfg.write_fail, (unsigned long long)cfg.seed);
}

const psrec_faults_t *psrec_faults(void)
{
    pthread_once(&cfg_once, load);
    return &cfg;
}

/* ---- decisions ---- */

psrec_fault_kind psrec_faults_on_send(const psrec_faults_t *f)
{
    if (!f->enabled || f->drop + f->dup + f->delay <= 0) return PSREC_FAULT_NONE;
    double u = psrec_rng_uniform(stream_for(f));
    if (u < f->drop) {
        atomic_fetch_add_explicit(&n_dropped, 1, memory_order_relaxed);
        return PSREC_FAULT_DROP;
    }
    u -= f->drop;
    if (u < f->dup) {
        atomic_fetch_add_explicit(&n_duplicated, 1, memory_order_relaxed);
        return PSREC_FAULT_DUP;
    }
    u -= f->dup;
    if (u < f->delay) {
        atomic_fetch_add_explicit(&n_delayed, 1, memory_order_relaxed);
        return PSREC_FAULT_DELAY;
    }
    return PSREC_FAULT_NONE;
}

int psrec_faults_fail_write(const psrec_faults_t *f)
{
    if (!f->enabled || f->write_fail <= 0) return 0;
    if (psrec_rng_uniform(stream_for(f)) >= f->write_fail) return 0;
    atomic_fetch_add_explicit(&n_failed_writes, 1, memory_order_relaxed);
    return 1;
}

void psrec_faults_stats(psrec_faults_stats_t *st)
{
    st->dropped = atomic_load_explicit(&n_dropped, memory_order_relaxed);
    st->duplicated = atomic_load_explicit(&n_duplicated, memory_order_relaxed);
    st->delayed = atomic_load_explicit(&n_delayed, memory_order_relaxed);
    st->failed_writes = atomic_load_explicit(&n_failed_writes, memory_order_relaxed);
}

/* ratelog.c: rate-limited log lines (see ratelog.h).
 *
 * Design: a fixed table of PSREC_RATELOG_KEYS keys with the time of their last line and the count of
 * lines suppressed since; a new key takes the least recently logged entry. Fixed memory whatever a
 * peer does: many distinct keys (addresses) only make the oldest ones forgettable, so a peer can at
 * worst get one line per interval per key it controls, bounded by the table turning over.
 * Thread model: one owner thread; no locks. */
#include "common/ratelog.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char key[PSREC_RATELOG_KEY_MAX];
    int64_t last_ms; /* monotonic time of the last line written */
    uint64_t suppressed;
    uint64_t tick; /* order of the last line written (LRU) */
    int used;
} entry_t;

struct psrec_ratelog {
    FILE *out;
    int64_t interval_ms;
    uint64_t events, ticks;
    entry_t e[PSREC_RATELOG_KEYS];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

psrec_err psrec_ratelog_new(psrec_ratelog_t **out, FILE *f, int interval_ms)
{
    *out = NULL;
    if (interval_ms <= 0) return PSREC_EINVAL;
    psrec_ratelog_t *rl = calloc(1, sizeof *rl);
    if (!rl) return PSREC_ENOMEM;
    rl->out = f;
    rl->interval_ms = interval_ms;
    *out = rl;
    return PSREC_OK;
}

void psrec_ratelog_destroy(psrec_ratelog_t **rl)
{
    if (!rl || !*rl) return;
    free(*rl);
    *rl = NULL;
}

uint64_t psrec_ratelog_events(const psrec_ratelog_t *rl)
{
    return rl->events;
}

int psrec_ratelog(psrec_ratelog_t *rl, const char *key, const char *fmt, ...)
{
    rl->events++;
    int64_t now = now_ms();
    entry_t *e = NULL, *old = &rl->e[0];
    for (int i = 0; i < PSREC_RATELOG_KEYS && !e; i++) {
        entry_t *x = &rl->e[i];
        if (x->used && strncmp(x->key, key, sizeof x->key - 1) == 0) e = x;
        if (old->used && (!x->used || x->tick < old->tick)) old = x;
    }
    if (e && now - e->last_ms < rl->interval_ms) {
        e->suppressed++;
        return 0;
    }
    if (!e) {
        e = old;
        memset(e, 0, sizeof *e);
        e->used = 1;
        snprintf(e->key, sizeof e->key, "%s", key);
    }
    uint64_t more = e->suppressed;
    e->suppressed = 0;
    e->last_ms = now;
    e->tick = ++rl->ticks;
    if (!rl->out) return 1;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (more)
        fprintf(rl->out, "psrec: %s (%llu more like it since the last such line)\n", text, (unsigned long long)more);
    else
        fprintf(rl->out, "psrec: %s\n", text);
    fflush(rl->out);
    return 1;
}

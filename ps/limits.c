/* limits.c: per-peer resource limits of a parameter server (see limits.h).
 *
 * Design: the memory bounds come from ZeroMQ itself (frame size, receive queue per peer), set once on
 * the socket; what psrec adds is what ZeroMQ cannot see: decoded sizes (LZ4), rows a request would
 * create, and a peer flooding faster than the server drains it. The burst counter is a small array
 * searched linearly: a burst holds at most BURST (64) requests, so at most that many peers, and a
 * linear search over them costs less than one hash of a routing id per request would save.
 * Counting new rows looks every key up once more, so it runs only for requests larger than the limit
 * (a request of n keys cannot create more than n rows).
 * Thread model: the server loop's thread. */
#include "ps/limits.h"

#include <stdlib.h>
#include <string.h>

void psrec_limits_resolve(psrec_limits_t *l)
{
    if (!l->max_msg_bytes) l->max_msg_bytes = PSREC_LIMITS_MAX_MSG;
    if (l->max_msg_bytes > PSREC_WIRE_MAX_FRAME_BYTES) l->max_msg_bytes = PSREC_WIRE_MAX_FRAME_BYTES;
    if (!l->max_inflight) l->max_inflight = PSREC_LIMITS_INFLIGHT;
    if (!l->max_new_rows) l->max_new_rows = PSREC_LIMITS_NEW_ROWS;
}

psrec_err psrec_limits_check_new_rows(const psrec_limits_t *l, psrec_store_t *st, uint32_t table, const uint64_t *keys,
                                      size_t n, char *err)
{
    if (n <= l->max_new_rows) return PSREC_OK;
    uint64_t missing = 0;
    psrec_err rc = psrec_store_missing(st, table, keys, n, &missing);
    if (rc) return psrec_fail(err, rc, "table %u: %s", table, psrec_strerror(rc));
    if (missing > l->max_new_rows)
        return psrec_fail(err, PSREC_EFULL, "request would create %llu rows of table %u (limit %u per request)",
                          (unsigned long long)missing, table, l->max_new_rows);
    return PSREC_OK;
}

typedef struct {
    psrec_wire_route_t route;
    uint32_t count;
} peer_t;

struct psrec_limits_burst {
    uint32_t max_peers, max_inflight, n;
    peer_t *p;
};

psrec_err psrec_limits_burst_new(psrec_limits_burst_t **out, uint32_t max_peers, uint32_t max_inflight)
{
    *out = NULL;
    if (!max_peers || !max_inflight) return PSREC_EINVAL;
    psrec_limits_burst_t *b = calloc(1, sizeof *b);
    if (!b || !(b->p = calloc(max_peers, sizeof *b->p))) {
        free(b);
        return PSREC_ENOMEM;
    }
    b->max_peers = max_peers;
    b->max_inflight = max_inflight;
    *out = b;
    return PSREC_OK;
}

void psrec_limits_burst_destroy(psrec_limits_burst_t **b)
{
    if (!b || !*b) return;
    free((*b)->p);
    free(*b);
    *b = NULL;
}

void psrec_limits_burst_reset(psrec_limits_burst_t *b)
{
    b->n = 0;
}

psrec_err psrec_limits_burst_admit(psrec_limits_burst_t *b, const psrec_wire_route_t *route, char *err)
{
    peer_t *p = NULL;
    for (uint32_t i = 0; i < b->n && !p; i++)
        if (b->p[i].route.len == route->len && !memcmp(b->p[i].route.id, route->id, route->len)) p = &b->p[i];
    if (!p) {
        if (b->n == b->max_peers)
            return psrec_fail(err, PSREC_EFULL, "more than %u clients in one burst", b->max_peers);
        p = &b->p[b->n++];
        p->route = *route;
        p->count = 0;
    }
    if (++p->count > b->max_inflight)
        return psrec_fail(err, PSREC_EFULL,
                          "more than %u requests of this client queued at once (server limit --max-inflight)",
                          b->max_inflight);
    return PSREC_OK;
}

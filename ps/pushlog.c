/* pushlog.c: the append-only log of applied updates (ps/pushlog.h), replayed after a restart.
 *
 * Format (little-endian). A segment "<dir>/pushlog-<rank>-<segment %06>.log" starts with a 32-byte file
 * header {"PSRPLOG" + version byte 1, u32 rank, u32 0, u64 segment, u64 XXH64 of the 24 bytes before}
 * and is followed by records:
 *   header  u32 magic "LOGR", type, table, dim, role, rank; u64 epoch, seq, n, payload length;
 *           u32 header checksum (low 32 bits of XXH64 of the 56 bytes before), u32 0     (64 bytes)
 *   payload n x u64 keys, then n x dim x f32 vals                           (payload length bytes)
 *   sum     u64 XXH64 of header and payload
 *
 * Design.
 * - Group commit: append() serialises into one growing buffer; commit() is one pwrite() at the committed
 *   end plus one fdatasync(). The server acknowledges after commit(), so everything acknowledged is on
 *   disk, and a crash can only tear what was written after the last commit: the tail of the last segment.
 * - The header has its own checksum so a record's length can be trusted before its payload is read: a
 *   flipped length is "bad record" (then corrupt unless only zeros follow), never "incomplete last record"
 *   (which would silently drop the acknowledged records behind it).
 * - Torn tail, precisely: the first bad record at offset o of the LAST segment is a torn tail when
 *   (a) fewer than 64 bytes remain, or (b) its header is valid and the record reaches or passes the end
 *   of the file, or (c) the file ends in zeros starting inside that record (or its header, when the
 *   header is bad): the file grew but the data never reached the disk. Anything else - bad data
 *   followed by other data, or any bad record in an older segment - is PSREC_ECORRUPT with file and
 *   offset. open() cuts a torn tail off (ftruncate + fdatasync) and appends after the last good record.
 * - A failed write or fdatasync makes the log unusable (after fsync fails, Linux may have dropped the
 *   dirty pages, so retrying proves nothing): the file is cut back to the last commit if possible and
 *   every later call fails, so nothing unsynced is ever acknowledged.
 * - Reading (open's scan, replay) holds one record at a time; its buffer never exceeds what the file
 *   really holds, so a lying length cannot make it allocate absurdly.
 *
 * Thread model: a psrec_pushlog_t belongs to one thread; replay, prune and discard are stateless. A sealed
 * batch has its own buffer, so a writer thread's write_sealed() touches only it, the fd and the committed
 * offset, which the owner does not change until finish_sealed(). */
#include "ps/pushlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/durable.h"
#include "common/endian.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "keys and vals are logged in host order: little-endian only");

#define FILE_MAGIC "PSRPLOG"
#define VERSION 1
#define FILE_HDR 32
#define REC_MAGIC 0x52474f4cu /* "LOGR" */
#define REC_HDR 64
#define REC_SUM 8
#define MAX_DIM (1u << 20)
#define MAX_PAYLOAD (2ull << 30) /* bytes of keys + vals in one record */
#define KEEP_BUF (64u << 20)     /* a commit buffer bigger than this is freed after the commit */
#define DISCARD_SUFFIX ".discarded"

struct psrec_pushlog {
    char *dir;
    char *path; /* current segment */
    uint32_t rank;
    uint64_t segment;
    int fd;
    uint64_t off; /* committed end of the segment */
    unsigned char *buf;
    size_t len, cap;
    uint64_t pending;
    int broken;
    psrec_pushlog_stats_t st;
    /* a sealed batch, written by a writer thread (seal / write_sealed / finish_sealed) */
    unsigned char *sbuf;
    size_t slen, scap;
    uint64_t spending;
    int sealed, s_errno;
    const char *s_what;
    double s_fsync;
};

/* ---- encoding ---- */

/* Payload bytes of n keys of dim floats; 0 with *ok = 0 if over MAX_PAYLOAD. */
static uint64_t payload_bytes(uint64_t n, uint32_t dim, int *ok)
{
    uint64_t per = 8 + 4 * (uint64_t)dim;
    *ok = n <= MAX_PAYLOAD / per;
    return *ok ? n * per : 0;
}

static void encode_file_header(unsigned char *h, uint32_t rank, uint64_t segment)
{
    memset(h, 0, FILE_HDR);
    memcpy(h, FILE_MAGIC, 7);
    h[7] = VERSION;
    psrec_put32(h + 8, rank);
    psrec_put64(h + 16, segment);
    psrec_put64(h + 24, (uint64_t)XXH64(h, 24, 0));
}

/* A record header that checks out: magic, own checksum, known type, sane sizes. */
static int header_ok(const unsigned char *h, psrec_logrec_t *r, uint64_t *payload)
{
    if (psrec_get32(h) != REC_MAGIC || psrec_get32(h + 60) != 0 || psrec_get32(h + 56) != (uint32_t)XXH64(h, 56, 0))
        return 0;
    r->type = psrec_get32(h + 4);
    r->table = psrec_get32(h + 8);
    r->dim = psrec_get32(h + 12);
    r->role = psrec_get32(h + 16);
    r->rank = psrec_get32(h + 20);
    r->epoch = psrec_get64(h + 24);
    r->seq = psrec_get64(h + 32);
    uint64_t n = psrec_get64(h + 40);
    *payload = psrec_get64(h + 48);
    int ok;
    if ((r->type != PSREC_LOGREC_PUSH && r->type != PSREC_LOGREC_SET) || r->dim == 0 || r->dim > MAX_DIM) return 0;
    if (payload_bytes(n, r->dim, &ok) != *payload || !ok) return 0;
    r->n = (size_t)n;
    return 1;
}

static void segment_path(char *out, size_t cap, const char *dir, uint32_t rank, uint64_t segment)
{
    snprintf(out, cap, "%s/pushlog-%u-%06llu.log", dir, rank, (unsigned long long)segment);
}

static psrec_err sync_dir(const char *dir, char *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    psrec_err rc = PSREC_OK;
    if (fd < 0 || fsync(fd) != 0)
        rc = psrec_fail(err, PSREC_EIO, "%s: cannot sync directory: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- scanning a segment (open and replay) ---- */

typedef struct {
    int fd;
    const char *path;
    uint64_t size;
    uint64_t zeros_from; /* start of the all-zero suffix of the file; UINT64_MAX until computed */
    unsigned char *buf;
    size_t cap;
    char *err;
} scan_t;

static psrec_err read_at(scan_t *s, void *p, size_t n, uint64_t off)
{
    unsigned char *d = p;
    while (n > 0) {
        ssize_t r = pread(s->fd, d, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return psrec_fail(s->err, PSREC_EIO, "%s: read failed at offset %llu: %s", s->path, (unsigned long long)off,
                              r < 0 ? strerror(errno) : "file shrank");
        d += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return PSREC_OK;
}

/* Where the file's trailing run of zero bytes starts (size if it does not end in a zero). */
static psrec_err zeros_from(scan_t *s, uint64_t *out)
{
    if (s->zeros_from == UINT64_MAX) {
        unsigned char chunk[65536];
        uint64_t end = s->size;
        s->zeros_from = 0;
        while (end > 0) {
            size_t n = end < sizeof chunk ? (size_t)end : sizeof chunk;
            psrec_err rc = read_at(s, chunk, n, end - n);
            if (rc) return rc;
            size_t i = n;
            while (i > 0 && chunk[i - 1] == 0)
                i--;
            if (i > 0) {
                s->zeros_from = end - n + i;
                break;
            }
            end -= n;
        }
    }
    *out = s->zeros_from;
    return PSREC_OK;
}

/* Scans the segment. fn (may be NULL) gets every good record. *good_end = end of the last good record
 * (0 when even the file header is torn). A bad record is a torn tail (stop) when `last` allows it and the
 * rules above say so, else PSREC_ECORRUPT. */
static psrec_err scan(scan_t *s, uint32_t rank, uint64_t segment, int last, psrec_logrec_fn fn, void *ctx,
                      uint64_t *good_end, uint64_t *records)
{
    *good_end = 0;
    uint64_t z;
    psrec_err rc;
    unsigned char fh[FILE_HDR], want[FILE_HDR];
    encode_file_header(want, rank, segment);
    if (s->size < FILE_HDR) {
        if (last) return PSREC_OK;
        return psrec_fail(s->err, PSREC_ECORRUPT, "%s: file header torn (%llu bytes) in a segment that is not the last",
                          s->path, (unsigned long long)s->size);
    }
    if ((rc = read_at(s, fh, FILE_HDR, 0))) return rc;
    if (memcmp(fh, want, FILE_HDR) != 0) {
        if (memcmp(fh, FILE_MAGIC, 7) == 0 && fh[7] != VERSION)
            return psrec_fail(s->err, PSREC_EVERSION, "%s: push log version %u, this build reads %u", s->path, fh[7],
                              VERSION);
        if ((rc = zeros_from(s, &z))) return rc;
        if (last && z < FILE_HDR) return PSREC_OK;
        return psrec_fail(s->err, PSREC_ECORRUPT, "%s: bad file header (not rank %u's segment %llu, or corrupt)",
                          s->path, rank, (unsigned long long)segment);
    }
    uint64_t off = FILE_HDR;
    *good_end = off;
    while (off < s->size) {
        const char *why = NULL;
        unsigned char h[REC_HDR];
        psrec_logrec_t r;
        uint64_t payload = 0, end = 0;
        if (s->size - off < REC_HDR) {
            why = "incomplete record header";
            goto torn; /* (a) */
        }
        if ((rc = read_at(s, h, REC_HDR, off))) return rc;
        if (!header_ok(h, &r, &payload)) {
            why = "bad record header";
            if ((rc = zeros_from(s, &z))) return rc;
            if (z < off + REC_HDR) goto torn; /* (c) */
            goto bad;
        }
        end = off + REC_HDR + payload + REC_SUM;
        if (end > s->size) {
            why = "incomplete record";
            goto torn; /* (b) */
        }
        size_t need = (size_t)(payload + REC_HDR + REC_SUM);
        if (need > s->cap) {
            unsigned char *nb = malloc(need);
            if (!nb) return psrec_fail(s->err, PSREC_ENOMEM, "%s: out of memory for a %zu-byte record", s->path, need);
            free(s->buf);
            s->buf = nb;
            s->cap = need;
        }
        memcpy(s->buf, h, REC_HDR);
        if ((rc = read_at(s, s->buf + REC_HDR, (size_t)payload + REC_SUM, off + REC_HDR))) return rc;
        if ((uint64_t)XXH64(s->buf, REC_HDR + (size_t)payload, 0) != psrec_get64(s->buf + REC_HDR + payload)) {
            why = "record checksum mismatch";
            if (end == s->size) goto torn; /* (b) */
            if ((rc = zeros_from(s, &z))) return rc;
            if (z < end) goto torn; /* (c) */
            goto bad;
        }
        r.keys = (const uint64_t *)(s->buf + REC_HDR);
        r.vals = (const float *)(s->buf + REC_HDR + (size_t)r.n * 8);
        if (fn && (rc = fn(&r, ctx, s->err))) return rc;
        if (records) (*records)++;
        off = end;
        *good_end = off;
        continue;
    torn:
        if (last) return PSREC_OK;
    bad:
        return psrec_fail(s->err, PSREC_ECORRUPT, "%s: offset %llu: %s%s", s->path, (unsigned long long)off, why,
                          last ? " followed by more data" : " in a segment that is not the last");
    }
    return PSREC_OK;
}

/* Opens path read-only and scans it. *exists = 0 (and OK) if there is no such file. */
static psrec_err scan_file(const char *path, uint32_t rank, uint64_t segment, int last, psrec_logrec_fn fn, void *ctx,
                           uint64_t *good_end, uint64_t *size, int *exists, uint64_t *records, char *err)
{
    *exists = 0;
    *good_end = *size = 0;
    scan_t s = {.path = path, .zeros_from = UINT64_MAX, .err = err};
    s.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s.fd < 0) {
        if (errno == ENOENT) return PSREC_OK;
        return psrec_fail(err, PSREC_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    *exists = 1;
    struct stat st;
    psrec_err rc;
    if (fstat(s.fd, &st) != 0)
        rc = psrec_fail(err, PSREC_EIO, "%s: cannot stat: %s", path, strerror(errno));
    else {
        s.size = *size = (uint64_t)st.st_size;
        rc = scan(&s, rank, segment, last, fn, ctx, good_end, records);
    }
    close(s.fd);
    free(s.buf);
    return rc;
}

/* ---- the writer ---- */

static psrec_err write_all(int fd, const void *p, size_t n, uint64_t off)
{
    const unsigned char *s = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, s, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return PSREC_EIO;
        s += w;
        off += (uint64_t)w;
        n -= (size_t)w;
    }
    return PSREC_OK;
}

/* Opens (or creates) `segment` as the current one: scans an existing file, cuts a torn tail. */
static psrec_err open_segment(psrec_pushlog_t *l, uint64_t segment, char *err)
{
    size_t plen = strlen(l->dir) + 64;
    char *path = malloc(plen);
    if (!path) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    segment_path(path, plen, l->dir, l->rank, segment);
    uint64_t good_end, size;
    int exists;
    psrec_err rc = scan_file(path, l->rank, segment, 1, NULL, NULL, &good_end, &size, &exists, NULL, err);
    int fd = -1;
    if (!rc) {
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) rc = psrec_fail(err, PSREC_EIO, "%s: cannot open for appending: %s", path, strerror(errno));
    }
    if (!rc && (size != good_end || good_end == 0)) {
        /* a torn tail to cut, or a new (or torn) file that needs its header */
        int bad = ftruncate(fd, (off_t)good_end) != 0;
        if (!bad && good_end == 0) {
            unsigned char fh[FILE_HDR];
            encode_file_header(fh, l->rank, segment);
            bad = write_all(fd, fh, FILE_HDR, 0) != PSREC_OK;
            good_end = FILE_HDR;
        }
        if (bad || fdatasync(fd) != 0)
            rc = psrec_fail(err, PSREC_EIO, "%s: cannot %s: %s", path, exists ? "cut the torn tail" : "create",
                            strerror(errno));
        if (!rc && !exists) rc = sync_dir(l->dir, err);
    }
    if (rc) {
        if (fd >= 0) close(fd);
        free(path);
        return rc;
    }
    free(l->path);
    l->path = path;
    l->fd = fd;
    l->segment = segment;
    l->off = good_end;
    return PSREC_OK;
}

psrec_err psrec_pushlog_open(psrec_pushlog_t **out, const char *dir, uint32_t rank, uint64_t segment, char *err)
{
    *out = NULL;
    if (!dir || !*dir || strlen(dir) > 3800) return psrec_fail(err, PSREC_EINVAL, "push log: bad directory path");
    psrec_pushlog_t *l = calloc(1, sizeof *l);
    if (!l || !(l->dir = strdup(dir))) {
        free(l);
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    }
    l->rank = rank;
    l->fd = -1;
    psrec_err rc = psrec_mkdirs(dir, err);
    if (!rc) rc = open_segment(l, segment, err);
    if (rc) {
        psrec_pushlog_close(&l);
        return rc;
    }
    *out = l;
    return PSREC_OK;
}

static psrec_err unusable(const psrec_pushlog_t *l, char *err)
{
    return psrec_fail(err, PSREC_EIO, "%s: push log unusable after an earlier write or sync failure",
                      l->path ? l->path : l->dir);
}

psrec_err psrec_pushlog_append(psrec_pushlog_t *l, const psrec_logrec_t *r, char *err)
{
    if (l->broken) return unusable(l, err);
    int ok;
    if (r->type != PSREC_LOGREC_PUSH && r->type != PSREC_LOGREC_SET)
        return psrec_fail(err, PSREC_EINVAL, "push log: record type %u", r->type);
    if (r->dim == 0 || r->dim > MAX_DIM) return psrec_fail(err, PSREC_EINVAL, "push log: record dim %u", r->dim);
    uint64_t payload = payload_bytes(r->n, r->dim, &ok);
    if (!ok) return psrec_fail(err, PSREC_EINVAL, "push log: record of %zu keys x %u too large", r->n, r->dim);
    if (r->n && (!r->keys || !r->vals)) return psrec_fail(err, PSREC_EINVAL, "push log: record without keys or vals");
    size_t need = REC_HDR + (size_t)payload + REC_SUM;
    if (l->cap - l->len < need) {
        size_t nc = l->cap ? l->cap : 65536;
        while (nc - l->len < need)
            nc *= 2;
        unsigned char *nb = realloc(l->buf, nc);
        if (!nb) return psrec_fail(err, PSREC_ENOMEM, "push log: out of memory (%zu bytes pending)", l->len + need);
        l->buf = nb;
        l->cap = nc;
    }
    unsigned char *h = l->buf + l->len;
    psrec_put32(h, REC_MAGIC);
    psrec_put32(h + 4, r->type);
    psrec_put32(h + 8, r->table);
    psrec_put32(h + 12, r->dim);
    psrec_put32(h + 16, r->role);
    psrec_put32(h + 20, r->rank);
    psrec_put64(h + 24, r->epoch);
    psrec_put64(h + 32, r->seq);
    psrec_put64(h + 40, (uint64_t)r->n);
    psrec_put64(h + 48, payload);
    psrec_put32(h + 56, (uint32_t)XXH64(h, 56, 0));
    psrec_put32(h + 60, 0);
    if (r->n) {
        memcpy(h + REC_HDR, r->keys, r->n * 8);
        memcpy(h + REC_HDR + r->n * 8, r->vals, r->n * r->dim * sizeof(float));
    }
    psrec_put64(h + REC_HDR + payload, (uint64_t)XXH64(h, REC_HDR + (size_t)payload, 0));
    l->len += need;
    l->pending++;
    return PSREC_OK;
}

psrec_err psrec_pushlog_seal(psrec_pushlog_t *l, char *err)
{
    if (l->broken) return unusable(l, err);
    if (l->sealed) return psrec_fail(err, PSREC_EINVAL, "%s: a sealed batch is still being written", l->path);
    unsigned char *b = l->sbuf; /* swap: the appends go on into the other buffer */
    size_t c = l->scap;
    l->sbuf = l->buf, l->scap = l->cap, l->slen = l->len, l->spending = l->pending;
    l->buf = b, l->cap = c, l->len = 0, l->pending = 0;
    l->sealed = 1;
    return PSREC_OK;
}

void psrec_pushlog_write_sealed(psrec_pushlog_t *l)
{
    l->s_errno = 0;
    l->s_fsync = 0;
    if (!l->sealed || l->slen == 0) return;
    if (write_all(l->fd, l->sbuf, l->slen, l->off)) {
        l->s_errno = errno ? errno : EIO;
        l->s_what = "write";
        return;
    }
    double t0 = now_s();
    if (fdatasync(l->fd) != 0) l->s_errno = errno ? errno : EIO, l->s_what = "fdatasync";
    l->s_fsync = now_s() - t0;
}

psrec_err psrec_pushlog_finish_sealed(psrec_pushlog_t *l, char *err)
{
    if (!l->sealed) return PSREC_OK;
    l->sealed = 0;
    if (l->s_errno) {
        l->broken = 1;
        l->len = l->pending = 0;
        if (ftruncate(l->fd, (off_t)l->off) == 0) (void)fdatasync(l->fd);
        return psrec_fail(err, PSREC_EIO, "%s: %s failed: %s (the log is now unusable)", l->path, l->s_what,
                          strerror(l->s_errno));
    }
    l->off += l->slen;
    l->st.records += l->spending;
    l->st.commits += l->slen > 0;
    l->st.bytes += l->slen;
    l->st.fsync_seconds += l->s_fsync;
    l->slen = 0;
    l->spending = 0;
    if (l->scap > KEEP_BUF) {
        free(l->sbuf);
        l->sbuf = NULL;
        l->scap = 0;
    }
    return PSREC_OK;
}

psrec_err psrec_pushlog_commit(psrec_pushlog_t *l, char *err)
{
    if (l->broken) return unusable(l, err);
    if (l->sealed) return psrec_fail(err, PSREC_EINVAL, "%s: a sealed batch is still being written", l->path);
    if (l->len == 0) return PSREC_OK;
    int e = 0;
    const char *what = "write";
    if (write_all(l->fd, l->buf, l->len, l->off)) {
        e = errno;
    } else {
        double t0 = now_s();
        if (fdatasync(l->fd) != 0) e = errno, what = "fdatasync";
        l->st.fsync_seconds += now_s() - t0;
    }
    if (e) {
        l->broken = 1;
        l->len = 0;
        l->pending = 0;
        if (ftruncate(l->fd, (off_t)l->off) == 0) (void)fdatasync(l->fd);
        return psrec_fail(err, PSREC_EIO, "%s: %s failed: %s (the log is now unusable)", l->path, what, strerror(e));
    }
    l->off += l->len;
    l->st.records += l->pending;
    l->st.commits++;
    l->st.bytes += l->len;
    l->len = 0;
    l->pending = 0;
    if (l->cap > KEEP_BUF) {
        free(l->buf);
        l->buf = NULL;
        l->cap = 0;
    }
    return PSREC_OK;
}

psrec_err psrec_pushlog_rotate(psrec_pushlog_t *l, uint64_t segment, char *err)
{
    psrec_err rc = psrec_pushlog_commit(l, err);
    if (rc) return rc;
    close(l->fd);
    l->fd = -1;
    if ((rc = open_segment(l, segment, err))) l->broken = 1;
    return rc;
}

void psrec_pushlog_stats(const psrec_pushlog_t *l, psrec_pushlog_stats_t *st)
{
    *st = l->st;
}

void psrec_pushlog_close(psrec_pushlog_t **pl)
{
    if (!pl || !*pl) return;
    psrec_pushlog_t *l = *pl;
    if (l->fd >= 0) close(l->fd);
    free(l->buf);
    free(l->sbuf);
    free(l->path);
    free(l->dir);
    free(l);
    *pl = NULL;
}

/* ---- segments of a directory ---- */

/* rank's segment numbers in dir, ascending (malloc'ed). A missing directory has none. */
static psrec_err list_segments(const char *dir, uint32_t rank, uint64_t **out, size_t *n, char *err)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "pushlog-%u-", rank);
    psrec_err rc = psrec_dir_numbers(dir, prefix, ".log", out, n, err);
    return rc == PSREC_ENOTFOUND ? PSREC_OK : rc; /* no directory yet: nothing logged */
}

psrec_err psrec_pushlog_replay(const char *dir, uint32_t rank, uint64_t from_segment, psrec_logrec_fn fn, void *ctx,
                               uint64_t *records, char *err)
{
    if (records) *records = 0;
    uint64_t *segs, count = 0;
    size_t n;
    psrec_err rc = list_segments(dir, rank, &segs, &n, err);
    if (rc) return rc;
    size_t plen = strlen(dir) + 64;
    char *path = malloc(plen);
    if (!path) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        if (segs[i] < from_segment) continue;
        segment_path(path, plen, dir, rank, segs[i]);
        uint64_t good_end, size;
        int exists;
        rc = scan_file(path, rank, segs[i], i + 1 == n, fn, ctx, &good_end, &size, &exists, &count, err);
        if (!rc && !exists) rc = psrec_fail(err, PSREC_ENOTFOUND, "%s: vanished during replay", path);
    }
    free(path);
    free(segs);
    if (records) *records = count;
    return rc;
}

/* Deletes rank's segments < bound (prune), or renames those >= bound aside (discard); syncs the directory. */
static psrec_err each_segment(const char *dir, uint32_t rank, uint64_t bound, int discard, char *err)
{
    uint64_t *segs;
    size_t n, done = 0;
    psrec_err rc = list_segments(dir, rank, &segs, &n, err);
    if (rc) return rc;
    size_t plen = strlen(dir) + 64;
    char *path = malloc(plen), *to = malloc(plen + sizeof DISCARD_SUFFIX);
    if (!path || !to) rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        if (discard ? segs[i] < bound : segs[i] >= bound) continue;
        segment_path(path, plen, dir, rank, segs[i]);
        if (discard) {
            snprintf(to, plen + sizeof DISCARD_SUFFIX, "%s" DISCARD_SUFFIX, path);
            if (rename(path, to) != 0)
                rc = psrec_fail(err, PSREC_EIO, "%s: cannot rename aside: %s", path, strerror(errno));
        } else if (unlink(path) != 0) {
            rc = psrec_fail(err, PSREC_EIO, "%s: cannot delete: %s", path, strerror(errno));
        }
        done++;
    }
    if (!rc && done) rc = sync_dir(dir, err);
    free(path);
    free(to);
    free(segs);
    return rc;
}

psrec_err psrec_pushlog_prune(const char *dir, uint32_t rank, uint64_t below, char *err)
{
    return each_segment(dir, rank, below, 0, err);
}

psrec_err psrec_pushlog_discard(const char *dir, uint32_t rank, uint64_t from, char *err)
{
    return each_segment(dir, rank, from, 1, err);
}

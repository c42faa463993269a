/* manifest.c: the manifest of a complete checkpoint round (ps/manifest.h), and finding, checking and
 * pruning rounds.
 *
 * Format: a durable file (common/durable.h: temp + fsync + rename, XXH64 trailer) of text lines, in
 * this order and nothing else:
 *   psrec-manifest 1
 *   round=7  job_id=..  seed=..  created_unix=..  n_servers=..  n_workers=..  steps=..  examples=..
 *   nfiles=2, then one "file=<name> <bytes>" line per file
 *   nshards=3, then one "shard=<i> passes=<n> block=<n> index=<n> examples=<n>" line per data shard
 *   end
 * (one key=value per line). Numbers are canonical decimal (no sign, no leading zero, no overflow).
 *
 * Design.
 * - Text because people look at checkpoints (`cat round-000007/MANIFEST`); parsed strictly anyway: a
 *   line out of place, an unknown key, a count that does not match its lines, a file name that could
 *   leave the round directory or anything after "end" is PSREC_ECORRUPT naming the line.
 * - A round is complete only when its MANIFEST and every file it lists pass their checks (present, of
 *   the listed size, durable checksum right). The coordinator writes the MANIFEST last, so a round
 *   directory without one is a round in progress or abandoned, never used.
 * - Counts are bounded before allocation, also by the text they need (a line per entry).
 *
 * Thread model: stateless functions. */
#include "ps/manifest.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/durable.h"

#define HEADER_LINE "psrec-manifest 1"
#define HEADER_PREFIX "psrec-manifest "
#define ROUND_PREFIX "round-"
#define MIN_FILE_LINE 8   /* "file=a 0" */
#define MIN_SHARD_LINE 40 /* "shard=0 passes=0 block=0 index=0 examples=0" is 43 */
#define MAX_DIR 3800      /* longest checkpoint directory path (paths are built in 4 KiB buffers) */

void psrec_manifest_round_dir(const char *dir, uint64_t round, char *out, size_t cap)
{
    snprintf(out, cap, "%s/" ROUND_PREFIX "%06llu", dir, (unsigned long long)round);
}

void psrec_manifest_free(psrec_manifest_t *m)
{
    if (!m) return;
    free(m->files);
    free(m->file_bytes);
    free(m->shards);
    memset(m, 0, sizeof *m);
}

static int valid_name(const char *s)
{
    size_t n = strnlen(s, 64);
    if (n == 0 || n >= 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strcmp(s, "MANIFEST") == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* ---- write ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} text_t;

static void __attribute__((format(printf, 2, 3))) add(text_t *t, const char *fmt, ...)
{
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t nc = 2 * t->cap + (size_t)n + 1;
        char *np = realloc(t->p, nc);
        if (!np) {
            t->oom = 1;
            return;
        }
        t->p = np;
        t->cap = nc;
    }
}

static psrec_err check_dir(const char *dir, char *err)
{
    if (!dir || !*dir || strlen(dir) > MAX_DIR)
        return psrec_fail(err, PSREC_EINVAL, "bad checkpoint directory path (empty or over %d bytes)", MAX_DIR);
    return PSREC_OK;
}

psrec_err psrec_manifest_write(const char *dir, const psrec_manifest_t *m, char *err)
{
    if (check_dir(dir, err)) return PSREC_EINVAL;
    if (m->nfiles > PSREC_MANIFEST_MAX_FILES)
        return psrec_fail(err, PSREC_EINVAL, "manifest: %u files (at most %d)", m->nfiles, PSREC_MANIFEST_MAX_FILES);
    if (m->nshards > PSREC_MANIFEST_MAX_SHARDS)
        return psrec_fail(err, PSREC_EINVAL, "manifest: %u data shards (at most %u)", m->nshards,
                          PSREC_MANIFEST_MAX_SHARDS);
    if ((m->nfiles && (!m->files || !m->file_bytes)) || (m->nshards && !m->shards))
        return psrec_fail(err, PSREC_EINVAL, "manifest: missing file or shard arrays");
    for (uint32_t i = 0; i < m->nfiles; i++) {
        if (!valid_name(m->files[i]))
            return psrec_fail(err, PSREC_EINVAL, "manifest: bad file name '%.63s' (1-63 of [A-Za-z0-9._-])",
                              m->files[i]);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(m->files[i], m->files[j]) == 0)
                return psrec_fail(err, PSREC_EINVAL, "manifest: file '%s' listed twice", m->files[i]);
    }
    text_t t = {.cap = 4096 + (size_t)m->nfiles * 96 + (size_t)m->nshards * 128};
    t.p = malloc(t.cap);
    if (!t.p) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    add(&t, HEADER_LINE "\n");
    add(&t, "round=%llu\njob_id=%llu\nseed=%llu\ncreated_unix=%llu\n", (unsigned long long)m->round,
        (unsigned long long)m->job_id, (unsigned long long)m->seed, (unsigned long long)m->created_unix);
    add(&t, "n_servers=%u\nn_workers=%u\nsteps=%llu\nexamples=%llu\n", m->n_servers, m->n_workers,
        (unsigned long long)m->steps, (unsigned long long)m->examples);
    add(&t, "nfiles=%u\n", m->nfiles);
    for (uint32_t i = 0; i < m->nfiles; i++)
        add(&t, "file=%s %llu\n", m->files[i], (unsigned long long)m->file_bytes[i]);
    add(&t, "nshards=%u\n", m->nshards);
    for (uint32_t i = 0; i < m->nshards; i++) {
        const psrec_shard_progress_t *s = &m->shards[i];
        add(&t, "shard=%u passes=%llu block=%llu index=%u examples=%llu\n", i, (unsigned long long)s->passes,
            (unsigned long long)s->pos.block, s->pos.index, (unsigned long long)s->examples);
    }
    add(&t, "end\n");
    if (t.oom) {
        free(t.p);
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    }
    char path[4096];
    psrec_manifest_round_dir(dir, m->round, path, sizeof path - 16);
    strcat(path, "/MANIFEST");
    psrec_dfile_t *f;
    psrec_err rc = psrec_dfile_open(&f, path, err);
    if (!rc) rc = psrec_dfile_finish(&f, psrec_dfile_write(f, t.p, t.len, err), err);
    free(t.p);
    return rc;
}

/* ---- read ---- */

typedef struct {
    const char *p, *end;
    const char *path;
    unsigned line;
    char *err;
    const char *cur; /* the current line (NUL-free, without its newline) */
    size_t len;
} parser_t;

static psrec_err bad(parser_t *ps, const char *what)
{
    return psrec_fail(ps->err, PSREC_ECORRUPT, "%s:%u: %s", ps->path, ps->line, what);
}

static psrec_err next_line(parser_t *ps)
{
    ps->line++;
    if (ps->p >= ps->end) return bad(ps, "unexpected end of file");
    const char *nl = memchr(ps->p, '\n', (size_t)(ps->end - ps->p));
    if (!nl) return bad(ps, "last line not terminated");
    ps->cur = ps->p;
    ps->len = (size_t)(nl - ps->p);
    if (memchr(ps->cur, '\0', ps->len)) return bad(ps, "NUL byte");
    ps->p = nl + 1;
    return PSREC_OK;
}

/* Canonical decimal: 1..20 digits, no leading zero, <= max. *used = characters taken. */
static int parse_num(const char *s, size_t len, uint64_t max, uint64_t *v, size_t *used)
{
    size_t i = 0;
    uint64_t x = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10) return 0;
        x = x * 10 + d;
        i++;
    }
    if (i == 0 || (i > 1 && s[0] == '0') || x > max) return 0;
    *v = x;
    *used = i;
    return 1;
}

/* Expects `key=<number>` as the whole next line. */
static psrec_err expect_num(parser_t *ps, const char *key, uint64_t max, uint64_t *v)
{
    psrec_err rc = next_line(ps);
    if (rc) return rc;
    size_t k = strlen(key), used;
    char what[96];
    if (ps->len <= k || memcmp(ps->cur, key, k) != 0 || ps->cur[k] != '=') {
        snprintf(what, sizeof what, "expected '%s='", key);
        return bad(ps, what);
    }
    if (!parse_num(ps->cur + k + 1, ps->len - k - 1, max, v, &used) || used != ps->len - k - 1) {
        snprintf(what, sizeof what, "bad value of %s", key);
        return bad(ps, what);
    }
    return PSREC_OK;
}

/* Takes the literal `lit` then a number from *s (advancing it). */
static int take(const char **s, const char *e, const char *lit, uint64_t max, uint64_t *v)
{
    size_t n = strlen(lit), used;
    if ((size_t)(e - *s) < n || memcmp(*s, lit, n) != 0) return 0;
    *s += n;
    if (!parse_num(*s, (size_t)(e - *s), max, v, &used)) return 0;
    *s += used;
    return 1;
}

static psrec_err parse(parser_t *ps, psrec_manifest_t *m)
{
    psrec_err rc = next_line(ps);
    if (rc) return rc;
    if (ps->len != strlen(HEADER_LINE) || memcmp(ps->cur, HEADER_LINE, ps->len) != 0) {
        if (ps->len > strlen(HEADER_PREFIX) && memcmp(ps->cur, HEADER_PREFIX, strlen(HEADER_PREFIX)) == 0)
            return psrec_fail(ps->err, PSREC_EVERSION, "%s:1: unknown manifest version", ps->path);
        return bad(ps, "not a psrec manifest");
    }
    uint64_t v;
    if ((rc = expect_num(ps, "round", UINT64_MAX, &m->round)) ||
        (rc = expect_num(ps, "job_id", UINT64_MAX, &m->job_id)) ||
        (rc = expect_num(ps, "seed", UINT64_MAX, &m->seed)) ||
        (rc = expect_num(ps, "created_unix", UINT64_MAX, &m->created_unix)))
        return rc;
    if ((rc = expect_num(ps, "n_servers", UINT32_MAX, &v))) return rc;
    m->n_servers = (uint32_t)v;
    if ((rc = expect_num(ps, "n_workers", UINT32_MAX, &v))) return rc;
    m->n_workers = (uint32_t)v;
    if ((rc = expect_num(ps, "steps", UINT64_MAX, &m->steps)) ||
        (rc = expect_num(ps, "examples", UINT64_MAX, &m->examples)))
        return rc;

    if ((rc = expect_num(ps, "nfiles", PSREC_MANIFEST_MAX_FILES, &v))) return rc;
    if (v > (uint64_t)(ps->end - ps->p) / MIN_FILE_LINE) return bad(ps, "more files than lines");
    m->nfiles = (uint32_t)v;
    m->files = calloc(m->nfiles ? m->nfiles : 1, sizeof *m->files);
    m->file_bytes = calloc(m->nfiles ? m->nfiles : 1, sizeof *m->file_bytes);
    if (!m->files || !m->file_bytes) return psrec_fail(ps->err, PSREC_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < m->nfiles; i++) {
        if ((rc = next_line(ps))) return rc;
        const char *s = ps->cur, *e = ps->cur + ps->len, *sp;
        if (ps->len < 5 || memcmp(s, "file=", 5) != 0) return bad(ps, "expected 'file=<name> <bytes>'");
        s += 5;
        sp = memchr(s, ' ', (size_t)(e - s));
        if (!sp || sp - s >= 64) return bad(ps, "bad file line");
        memcpy(m->files[i], s, (size_t)(sp - s));
        m->files[i][sp - s] = '\0';
        if (!valid_name(m->files[i])) return bad(ps, "bad file name");
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(m->files[i], m->files[j]) == 0) return bad(ps, "file listed twice");
        size_t used;
        s = sp + 1;
        if (!parse_num(s, (size_t)(e - s), UINT64_MAX, &m->file_bytes[i], &used) || used != (size_t)(e - s))
            return bad(ps, "bad file size");
    }

    if ((rc = expect_num(ps, "nshards", PSREC_MANIFEST_MAX_SHARDS, &v))) return rc;
    if (v > (uint64_t)(ps->end - ps->p) / MIN_SHARD_LINE) return bad(ps, "more shards than lines");
    m->nshards = (uint32_t)v;
    m->shards = calloc(m->nshards ? m->nshards : 1, sizeof *m->shards);
    if (!m->shards) return psrec_fail(ps->err, PSREC_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < m->nshards; i++) {
        if ((rc = next_line(ps))) return rc;
        const char *s = ps->cur, *e = ps->cur + ps->len;
        psrec_shard_progress_t *p = &m->shards[i];
        uint64_t idx, pos_index;
        if (!take(&s, e, "shard=", UINT32_MAX, &idx) || idx != i) return bad(ps, "expected 'shard=<next index>'");
        if (!take(&s, e, " passes=", UINT64_MAX, &p->passes) || !take(&s, e, " block=", UINT64_MAX, &p->pos.block) ||
            !take(&s, e, " index=", UINT32_MAX, &pos_index) || !take(&s, e, " examples=", UINT64_MAX, &p->examples) ||
            s != e)
            return bad(ps, "bad shard line");
        p->pos.index = (uint32_t)pos_index;
    }
    if ((rc = next_line(ps))) return rc;
    if (ps->len != 3 || memcmp(ps->cur, "end", 3) != 0) return bad(ps, "expected 'end'");
    if (ps->p != ps->end) return bad(ps, "data after 'end'");
    return PSREC_OK;
}

/* Every listed file: present, of the listed size, durable checksum right. */
static psrec_err check_files(const char *rdir, const psrec_manifest_t *m, char *err)
{
    char path[4096 + 64];
    for (uint32_t i = 0; i < m->nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", rdir, m->files[i]);
        struct stat st;
        if (stat(path, &st) != 0) {
            int e = errno;
            return psrec_fail(err, e == ENOENT ? PSREC_ENOTFOUND : PSREC_EIO, "%s: %s (listed in the MANIFEST)", path,
                              e == ENOENT ? "missing" : strerror(e));
        }
        if (!S_ISREG(st.st_mode)) return psrec_fail(err, PSREC_ECORRUPT, "%s: not a regular file", path);
        if ((uint64_t)st.st_size != m->file_bytes[i])
            return psrec_fail(err, PSREC_ECORRUPT, "%s: %llu bytes, the MANIFEST lists %llu (truncated or replaced)",
                              path, (unsigned long long)st.st_size, (unsigned long long)m->file_bytes[i]);
        psrec_err rc = psrec_dfile_verify(path, NULL, err);
        if (rc) return rc;
    }
    return PSREC_OK;
}

psrec_err psrec_manifest_read(const char *dir, uint64_t round, psrec_manifest_t *m, char *err)
{
    memset(m, 0, sizeof *m);
    if (check_dir(dir, err)) return PSREC_EINVAL;
    char rdir[4096], path[4096 + 16];
    psrec_manifest_round_dir(dir, round, rdir, sizeof rdir);
    snprintf(path, sizeof path, "%s/MANIFEST", rdir);
    void *buf;
    size_t len;
    psrec_err rc = psrec_dfile_read_all(path, &buf, &len, err);
    if (rc == PSREC_ENOTFOUND) return psrec_fail(err, rc, "%s: no MANIFEST (round incomplete or abandoned)", path);
    if (rc) return rc;
    parser_t ps = {.p = buf, .end = (const char *)buf + len, .path = path, .err = err};
    rc = parse(&ps, m);
    free(buf);
    if (!rc && m->round != round)
        rc = psrec_fail(err, PSREC_ECORRUPT, "%s: says round %llu", path, (unsigned long long)m->round);
    if (!rc) rc = check_files(rdir, m, err);
    if (rc) psrec_manifest_free(m);
    return rc;
}

/* ---- finding and pruning rounds ---- */

/* The round numbers of dir's "round-NNNNNN" directories, newest first (malloc'ed; *n of them). */
static psrec_err list_rounds(const char *dir, uint64_t **out, size_t *n, char *err)
{
    *out = NULL;
    *n = 0;
    if (check_dir(dir, err)) return PSREC_EINVAL;
    psrec_err rc = psrec_dir_numbers(dir, ROUND_PREFIX, "", out, n, err);
    if (rc) return psrec_fail(err, rc, "checkpoint directory %s", err);
    for (size_t i = 0; i < *n / 2; i++) { /* newest first */
        uint64_t t = (*out)[i];
        (*out)[i] = (*out)[*n - 1 - i];
        (*out)[*n - 1 - i] = t;
    }
    return PSREC_OK;
}

psrec_err psrec_manifest_latest(const char *dir, psrec_manifest_t *m, psrec_manifest_warn_fn warn, void *ctx, char *err)
{
    memset(m, 0, sizeof *m);
    uint64_t *rounds;
    size_t n;
    psrec_err rc = list_rounds(dir, &rounds, &n, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        char e[PSREC_ERRBUF];
        if (psrec_manifest_read(dir, rounds[i], m, e) == PSREC_OK) {
            free(rounds);
            return PSREC_OK;
        }
        if (warn) {
            char line[PSREC_ERRBUF + 64];
            snprintf(line, sizeof line, "round %llu refused: %s", (unsigned long long)rounds[i], e);
            warn(line, ctx);
        }
    }
    free(rounds);
    return psrec_fail(err, PSREC_ENOTFOUND, "%s: no complete checkpoint round", dir);
}

/* Deletes a round directory and the files in it. */
static psrec_err remove_round(const char *dir, uint64_t round, char *err)
{
    char rdir[4096], path[4096 + 300];
    psrec_manifest_round_dir(dir, round, rdir, sizeof rdir);
    DIR *d = opendir(rdir);
    if (!d) return psrec_fail(err, PSREC_EIO, "%s: cannot open: %s", rdir, strerror(errno));
    struct dirent *de;
    psrec_err rc = PSREC_OK;
    while ((de = readdir(d)) && !rc) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", rdir, de->d_name);
        if (unlink(path) != 0) rc = psrec_fail(err, PSREC_EIO, "%s: cannot delete: %s", path, strerror(errno));
    }
    closedir(d);
    if (!rc && rmdir(rdir) != 0) rc = psrec_fail(err, PSREC_EIO, "%s: cannot delete: %s", rdir, strerror(errno));
    return rc;
}

psrec_err psrec_manifest_prune(const char *dir, uint64_t keep, char *err)
{
    if (keep == 0) return psrec_fail(err, PSREC_EINVAL, "prune: keep must be at least 1");
    uint64_t *rounds;
    size_t n;
    psrec_err rc = list_rounds(dir, &rounds, &n, err);
    if (rc) return rc;
    /* newest first: find the keep-th complete round; only rounds older than it go (a round that fails its
     * checks between kept ones stays: it may be a round in progress, or worth a look) */
    uint64_t complete = 0;
    size_t i = 0;
    for (; i < n && complete < keep; i++) {
        psrec_manifest_t m;
        char e[PSREC_ERRBUF];
        if (psrec_manifest_read(dir, rounds[i], &m, e) == PSREC_OK) complete++;
        psrec_manifest_free(&m);
    }
    for (; complete == keep && i < n && !rc; i++)
        rc = remove_round(dir, rounds[i], err);
    free(rounds);
    return rc;
}

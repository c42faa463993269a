/* durable.c: crash-safe file writes (temp + fsync + rename + fsync dir) with an XXH64 trailer, and
 * the matching verified reads. Design: one helper for every durable file (models, frequency counts,
 * manifests) so "a reader never loads a torn or corrupt file" is proven once. Large read-only
 * files (the item catalogue, the alias cache) can instead be mapped shared after the same check
 * over the mapping, so the processes of one machine hold one copy in the page cache.
 * Thread model: a psrec_dfile_t is used by one thread; the functions keep no global state. */
#include "common/durable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/faults.h"

#define TRAILER_MAGIC "PSRECEND"
#define TRAILER_SIZE 24

struct psrec_dfile {
    FILE *fp;
    char *path;
    char *tmp;
    uint64_t len;
    XXH64_state_t *h;
    int plain; /* no trailer: a file for other tools */
};

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

psrec_err psrec_dfile_open(psrec_dfile_t **out, const char *path, char *err)
{
    *out = NULL;
    psrec_dfile_t *f = calloc(1, sizeof *f);
    if (!f) return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(path) + 32;
    f->path = strdup(path);
    f->tmp = malloc(n);
    f->h = XXH64_createState();
    if (!f->path || !f->tmp || !f->h) {
        psrec_dfile_abort(&f);
        return psrec_fail(err, PSREC_ENOMEM, "%s: out of memory", path);
    }
    /* per thread: two threads of one process may write the same path at once (the last rename wins) */
    snprintf(f->tmp, n, "%s.tmp.%ld.%ld", path, (long)getpid(), (long)syscall(SYS_gettid));
    XXH64_reset(f->h, 0);
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp) {
        int e = errno;
        psrec_dfile_abort(&f);
        return psrec_fail(err, PSREC_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    *out = f;
    return PSREC_OK;
}

psrec_err psrec_dfile_open_plain(psrec_dfile_t **f, const char *path, char *err)
{
    psrec_err rc = psrec_dfile_open(f, path, err);
    if (!rc) (*f)->plain = 1;
    return rc;
}

psrec_err psrec_dfile_finish(psrec_dfile_t **f, psrec_err rc, char *err)
{
    if (rc) {
        psrec_dfile_abort(f);
        return rc;
    }
    return psrec_dfile_commit(f, err);
}

psrec_err psrec_dfile_write(psrec_dfile_t *f, const void *p, size_t len, char *err)
{
    if (len == 0) return PSREC_OK;
    if (psrec_faults_fail_write(psrec_faults()))
        return psrec_fail(err, PSREC_EIO, "%s: injected write failure", f->path);
    if (fwrite(p, 1, len, f->fp) != len)
        return psrec_fail(err, PSREC_EIO, "%s: write failed: %s", f->path, strerror(errno));
    XXH64_update(f->h, p, len);
    f->len += len;
    return PSREC_OK;
}

uint64_t psrec_dfile_tell(const psrec_dfile_t *f)
{
    return f->len;
}

static psrec_err fsync_dir_of(const char *path, char *err)
{
    char *copy = strdup(path);
    if (!copy) return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    psrec_err rc = PSREC_OK;
    if (fd < 0 || fsync(fd) != 0)
        rc = psrec_fail(err, PSREC_EIO, "%s: cannot sync directory: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(copy);
    return rc;
}

psrec_err psrec_dfile_commit(psrec_dfile_t **pf, char *err)
{
    psrec_dfile_t *f = *pf;
    unsigned char tr[TRAILER_SIZE];
    memcpy(tr, TRAILER_MAGIC, 8);
    put_u64(tr + 8, f->len);
    put_u64(tr + 16, (uint64_t)XXH64_digest(f->h));
    psrec_err rc = PSREC_OK;
    if ((!f->plain && fwrite(tr, 1, sizeof tr, f->fp) != sizeof tr) || fflush(f->fp) != 0 ||
        fsync(fileno(f->fp)) != 0) {
        rc = psrec_fail(err, PSREC_EIO, "%s: write/sync failed: %s", f->path, strerror(errno));
    }
    if (fclose(f->fp) != 0 && rc == PSREC_OK)
        rc = psrec_fail(err, PSREC_EIO, "%s: close failed: %s", f->path, strerror(errno));
    f->fp = NULL;
    if (rc == PSREC_OK && rename(f->tmp, f->path) != 0)
        rc = psrec_fail(err, PSREC_EIO, "%s: rename failed: %s", f->path, strerror(errno));
    if (rc == PSREC_OK) rc = fsync_dir_of(f->path, err);
    psrec_dfile_abort(pf); /* removes the temp file if it is still there, frees */
    return rc;
}

void psrec_dfile_abort(psrec_dfile_t **pf)
{
    if (!pf || !*pf) return;
    psrec_dfile_t *f = *pf;
    if (f->fp) fclose(f->fp);
    if (f->tmp) unlink(f->tmp); /* after a successful rename this fails harmlessly */
    if (f->h) XXH64_freeState(f->h);
    free(f->tmp);
    free(f->path);
    free(f);
    *pf = NULL;
}

static psrec_err open_checked(const char *path, FILE **fp, uint64_t *payload, uint64_t *sum, char *err)
{
    *fp = fopen(path, "rb");
    if (!*fp) {
        int e = errno;
        return psrec_fail(err, e == ENOENT ? PSREC_ENOTFOUND : PSREC_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fileno(*fp), &st) != 0 || st.st_size < TRAILER_SIZE) {
        fclose(*fp);
        *fp = NULL;
        return psrec_fail(err, PSREC_ECORRUPT, "%s: too short to be a psrec file (truncated?)", path);
    }
    unsigned char tr[TRAILER_SIZE];
    if (fseeko(*fp, st.st_size - TRAILER_SIZE, SEEK_SET) != 0 || fread(tr, 1, sizeof tr, *fp) != sizeof tr ||
        memcmp(tr, TRAILER_MAGIC, 8) != 0 || get_u64(tr + 8) != (uint64_t)st.st_size - TRAILER_SIZE) {
        fclose(*fp);
        *fp = NULL;
        return psrec_fail(err, PSREC_ECORRUPT, "%s: missing or inconsistent trailer (truncated or not a psrec file)",
                          path);
    }
    *payload = get_u64(tr + 8);
    *sum = get_u64(tr + 16);
    rewind(*fp);
    return PSREC_OK;
}

psrec_err psrec_dfile_read_all(const char *path, void **buf, size_t *len, char *err)
{
    *buf = NULL;
    *len = 0;
    FILE *fp;
    uint64_t payload, sum;
    psrec_err rc = open_checked(path, &fp, &payload, &sum, err);
    if (rc) return rc;
    void *p = malloc(payload ? payload : 1);
    if (!p) {
        fclose(fp);
        return psrec_fail(err, PSREC_ENOMEM, "%s: cannot allocate %llu bytes", path, (unsigned long long)payload);
    }
    if (fread(p, 1, payload, fp) != payload) {
        fclose(fp);
        free(p);
        return psrec_fail(err, PSREC_EIO, "%s: read failed", path);
    }
    fclose(fp);
    if ((uint64_t)XXH64(p, payload, 0) != sum) {
        free(p);
        return psrec_fail(err, PSREC_ECORRUPT, "%s: checksum mismatch (file is corrupt)", path);
    }
    *buf = p;
    *len = payload;
    return PSREC_OK;
}

psrec_err psrec_dfile_verify(const char *path, uint64_t *payload_len, char *err)
{
    FILE *fp;
    uint64_t payload, sum;
    psrec_err rc = open_checked(path, &fp, &payload, &sum, err);
    if (rc) return rc;
    XXH64_state_t *h = XXH64_createState();
    char *chunk = malloc(1 << 20);
    if (!h || !chunk) {
        fclose(fp);
        XXH64_freeState(h);
        free(chunk);
        return psrec_fail(err, PSREC_ENOMEM, "out of memory");
    }
    XXH64_reset(h, 0);
    uint64_t left = payload;
    while (left > 0 && rc == PSREC_OK) {
        size_t want = left < (1u << 20) ? (size_t)left : (1u << 20);
        if (fread(chunk, 1, want, fp) != want) rc = psrec_fail(err, PSREC_EIO, "%s: read failed", path);
        XXH64_update(h, chunk, want);
        left -= want;
    }
    if (rc == PSREC_OK && (uint64_t)XXH64_digest(h) != sum)
        rc = psrec_fail(err, PSREC_ECORRUPT, "%s: checksum mismatch (file is corrupt)", path);
    fclose(fp);
    XXH64_freeState(h);
    free(chunk);
    if (rc == PSREC_OK && payload_len) *payload_len = payload;
    return rc;
}

#define MAP_CHUNK ((size_t)64 << 20) /* checksum step of psrec_dfile_map; a multiple of any page size */

psrec_err psrec_dfile_map(const char *path, const void **payload, size_t *len, char *err)
{
    *payload = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return psrec_fail(err, e == ENOENT ? PSREC_ENOTFOUND : PSREC_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < TRAILER_SIZE) {
        close(fd);
        return psrec_fail(err, PSREC_ECORRUPT, "%s: too short to be a psrec file (truncated?)", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return psrec_fail(err, PSREC_EMSGSIZE, "%s: too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file open */
    if (m == MAP_FAILED) return psrec_fail(err, PSREC_EIO, "%s: cannot map: %s", path, strerror(e));
    const unsigned char *p = m, *tr = p + size - TRAILER_SIZE;
    size_t payload_len = size - TRAILER_SIZE;
    psrec_err rc = PSREC_OK;
    if (memcmp(tr, TRAILER_MAGIC, 8) != 0 || get_u64(tr + 8) != (uint64_t)payload_len) {
        rc = psrec_fail(err, PSREC_ECORRUPT, "%s: missing or inconsistent trailer (truncated or not a psrec file)",
                        path);
    } else {
        XXH64_state_t *h = XXH64_createState();
        if (!h) {
            rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
        } else {
            XXH64_reset(h, 0);
            for (size_t off = 0; off < payload_len; off += MAP_CHUNK) {
                size_t n = payload_len - off < MAP_CHUNK ? payload_len - off : MAP_CHUNK;
                XXH64_update(h, p + off, n);
                madvise((unsigned char *)m + off, n,
                        MADV_DONTNEED); /* shared file pages: only unmapped here, kept in the cache */
            }
            if ((uint64_t)XXH64_digest(h) != get_u64(tr + 16))
                rc = psrec_fail(err, PSREC_ECORRUPT, "%s: checksum mismatch (file is corrupt)", path);
            XXH64_freeState(h);
        }
    }
    if (rc) {
        munmap(m, size);
        return rc;
    }
    *payload = m;
    *len = payload_len;
    return PSREC_OK;
}

void psrec_dfile_unmap(const void *payload, size_t len)
{
    if (payload) munmap((void *)payload, len + TRAILER_SIZE);
}

void psrec_dfile_map_drop(const void *payload, size_t off, size_t len)
{
    if (!payload || len == 0) return;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t start = off / pg * pg;
    madvise((unsigned char *)payload + start, off + len - start, MADV_DONTNEED);
}

psrec_err psrec_mkdirs(const char *path, char *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return psrec_fail(err, PSREC_EINVAL, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return psrec_fail(err, PSREC_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    return PSREC_OK;
}

static int cmp_u64_asc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

psrec_err psrec_dir_numbers(const char *dir, const char *prefix, const char *suffix, uint64_t **out, size_t *n,
                            char *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        return psrec_fail(err, e == ENOENT ? PSREC_ENOTFOUND : PSREC_EIO, "%s: cannot open: %s", dir, strerror(e));
    }
    size_t pl = strlen(prefix), cap = 0;
    uint64_t *v = NULL;
    psrec_err rc = PSREC_OK;
    for (struct dirent *de; (de = readdir(d));) {
        const char *s = de->d_name;
        if (strncmp(s, prefix, pl) != 0) continue;
        size_t dl = strspn(s + pl, "0123456789");
        if (dl < 6 || dl > 20 || strcmp(s + pl + dl, suffix) != 0) continue;
        errno = 0;
        unsigned long long x = strtoull(s + pl, NULL, 10);
        char canon[512];
        if (errno || (size_t)snprintf(canon, sizeof canon, "%s%06llu%s", prefix, x, suffix) >= sizeof canon ||
            strcmp(canon, s) != 0)
            continue; /* "round-0000007" is not a name psrec writes */
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            uint64_t *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                rc = psrec_fail(err, PSREC_ENOMEM, "out of memory");
                break;
            }
            v = nv;
            cap = nc;
        }
        v[(*n)++] = x;
    }
    closedir(d);
    if (rc) {
        free(v);
        *n = 0;
        return rc;
    }
    if (*n) qsort(v, *n, sizeof *v, cmp_u64_asc);
    *out = v;
    return PSREC_OK;
}

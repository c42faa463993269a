/* test_manifest.c: checkpoint round manifests: a round of two real snapshots and its MANIFEST reads back
 * exactly; then, each on a fresh copy, flipped bytes, truncated, grown or deleted snapshots and a damaged
 * MANIFEST are refused with the exact code and a message naming the file; strict parsing of MANIFEST
 * texts that have a right checksum but wrong content; latest() skips refused rounds (reporting each) and
 * falls back to the newest intact one; prune keeps the newest K complete rounds. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/durable.h"
#include "ps/manifest.h"
#include "ps/snapshot.h"
#include "test_util.h"

static char *sub(const char *fmt, ...)
{
    static char p[8][1024];
    static int k;
    k = (k + 1) % 8;
    int n = snprintf(p[k], sizeof p[k], "%s/", psrec_test_tmp);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p[k] + n, sizeof p[k] - (size_t)n, fmt, ap);
    va_end(ap);
    return p[k];
}

static int64_t fsize(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- building rounds ---- */

static char NAMES[2][64] = {"server-0.snap", "server-1.snap"};

typedef struct {
    uint64_t bytes[2];
    psrec_shard_progress_t shards[3];
    psrec_manifest_t m;
} round_t;

/* Writes round r of dir: two snapshots of different small stores and the MANIFEST. */
static void make_round(const char *dir, uint64_t r, int with_manifest, round_t *out)
{
    char err[PSREC_ERRBUF], rdir[1024], path[1100];
    psrec_manifest_round_dir(dir, r, rdir, sizeof rdir);
    assert_int_equal(psrec_mkdirs(rdir, err), PSREC_OK);
    memset(out, 0, sizeof *out);
    for (uint32_t s = 0; s < 2; s++) {
        psrec_store_t *st;
        assert_int_equal(psrec_store_new(&st, 1, 2), PSREC_OK);
        psrec_table_conf_t c = {
            .dim = 8, .opt = {.kind = PSREC_OPT_ADAGRAD, .lr = 0.1f}, .init = PSREC_INIT_NORMAL, .init_scale = 0.2f};
        assert_int_equal(psrec_store_add_table(st, 0, &c, err), PSREC_OK);
        uint64_t keys[200];
        float w[200 * 8];
        for (int i = 0; i < 200; i++)
            keys[i] = (uint64_t)i * 2 + s + 1000 * r;
        assert_int_equal(psrec_store_pull(st, 0, keys, 200, w), PSREC_OK);
        psrec_snapshot_meta_t meta = {.job_id = 5, .round = r, .seed = 1, .rank = s, .n_servers = 2};
        snprintf(path, sizeof path, "%s/%s", rdir, NAMES[s]);
        assert_int_equal(psrec_snapshot_write(path, st, &meta, "x", 1, &out->bytes[s], err), PSREC_OK);
        psrec_store_destroy(&st);
    }
    for (int i = 0; i < 3; i++)
        out->shards[i] = (psrec_shard_progress_t){.passes = (uint64_t)i + r,
                                                  .pos = {.block = 10 * r + (uint64_t)i, .index = 7u * (uint32_t)i},
                                                  .examples = 1000 * r + (uint64_t)i};
    out->shards[2].examples = UINT64_MAX; /* the extremes go through the text */
    out->shards[2].pos.index = UINT32_MAX;
    out->m = (psrec_manifest_t){.round = r,
                                .job_id = 5,
                                .seed = 1,
                                .created_unix = 1700000000 + r,
                                .n_servers = 2,
                                .n_workers = 3,
                                .steps = 100 * r,
                                .examples = 25600 * r,
                                .nfiles = 2,
                                .files = NAMES,
                                .file_bytes = out->bytes,
                                .nshards = 3,
                                .shards = out->shards};
    if (with_manifest) assert_int_equal(psrec_manifest_write(dir, &out->m, err), PSREC_OK);
}

static void assert_manifest_equal(const psrec_manifest_t *a, const psrec_manifest_t *b)
{
    assert_int_equal(a->round, b->round);
    assert_int_equal(a->job_id, b->job_id);
    assert_int_equal(a->seed, b->seed);
    assert_int_equal(a->created_unix, b->created_unix);
    assert_int_equal(a->n_servers, b->n_servers);
    assert_int_equal(a->n_workers, b->n_workers);
    assert_int_equal(a->steps, b->steps);
    assert_int_equal(a->examples, b->examples);
    assert_int_equal(a->nfiles, b->nfiles);
    for (uint32_t i = 0; i < a->nfiles; i++) {
        assert_string_equal(a->files[i], b->files[i]);
        assert_int_equal(a->file_bytes[i], b->file_bytes[i]);
    }
    assert_int_equal(a->nshards, b->nshards);
    for (uint32_t i = 0; i < a->nshards; i++) {
        assert_int_equal(a->shards[i].passes, b->shards[i].passes);
        assert_int_equal(a->shards[i].pos.block, b->shards[i].pos.block);
        assert_int_equal(a->shards[i].pos.index, b->shards[i].pos.index);
        assert_int_equal(a->shards[i].examples, b->shards[i].examples);
    }
}

static int setup(void **st)
{
    (void)st;
    return psrec_test_mktmp("manifest");
}

static int teardown(void **st)
{
    (void)st;
    return psrec_test_rmtmp();
}

/* ---- tests ---- */

static void test_write_read(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", sub("wr")); /* sub() reuses its buffers */
    round_t r;
    make_round(dir, 3, 1, &r);
    psrec_manifest_t m;
    psrec_err rc = psrec_manifest_read(dir, 3, &m, err);
    if (rc) fail_msg("%s", err);
    assert_manifest_equal(&m, &r.m);
    assert_int_equal(m.file_bytes[0], fsize(sub("wr/round-000003/server-0.snap")));
    psrec_manifest_free(&m);
    assert_null(m.files);
    psrec_manifest_free(&m); /* twice is fine */
    /* people can read it */
    void *text;
    size_t len;
    assert_int_equal(psrec_dfile_read_all(sub("wr/round-000003/MANIFEST"), &text, &len, err), PSREC_OK);
    assert_true(len > 20 && memcmp(text, "psrec-manifest 1\nround=3\n", 25) == 0);
    assert_non_null(memmem(text, len, "file=server-1.snap ", 19));
    free(text);
    char rd[256];
    psrec_manifest_round_dir("/ck", 12, rd, sizeof rd);
    assert_string_equal(rd, "/ck/round-000012");
    psrec_manifest_round_dir("/ck", 1234567, rd, sizeof rd);
    assert_string_equal(rd, "/ck/round-1234567");
    err[0] = 0;
    assert_int_equal(psrec_manifest_read(dir, 4, &m, err), PSREC_ENOTFOUND);
    assert_non_null(strstr(err, "round-000004/MANIFEST"));
    assert_null(m.files);
}

static void flip(const char *path, int64_t off)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_true(c != EOF);
    assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
    fputc(c ^ 0x04, f);
    assert_int_equal(fclose(f), 0);
}

/* Reads round 3 of a fresh copy of base after `damage` ran there; checks code and message. */
static void expect_refused(const char *base, const char *what, int64_t arg, psrec_err want, const char *names)
{
    char work[1024];
    snprintf(work, sizeof work, "%s", sub("faults-work"));
    assert_int_equal(psrec_test_run(NULL, 0, "rm -rf '%s' && cp -a '%s' '%s'", work, base, work), 0);
    char path[1100];
    snprintf(path, sizeof path, "%s/round-000003/%s", work, names);
    int64_t size = fsize(path);
    if (strcmp(what, "flip") == 0) {
        flip(path, arg < 0 ? size + arg : arg);
    } else if (strcmp(what, "truncate") == 0) {
        assert_int_equal(truncate(path, arg < 0 ? size + arg : arg), 0);
    } else if (strcmp(what, "grow") == 0) {
        FILE *f = fopen(path, "ab");
        fputc(0, f);
        fclose(f);
    } else {
        assert_int_equal(unlink(path), 0);
    }
    char err[PSREC_ERRBUF] = "";
    psrec_manifest_t m;
    psrec_err rc = psrec_manifest_read(work, 3, &m, err);
    if (rc != want || !strstr(err, names))
        fail_msg("%s %s at %lld: %s, '%s'", what, names, (long long)arg, psrec_errname(rc), err);
    assert_null(m.files);
}

static void test_faults(void **st)
{
    (void)st;
    char base[1024];
    snprintf(base, sizeof base, "%s", sub("faults")); /* sub() reuses its buffers */
    round_t r;
    make_round(base, 3, 1, &r);
    const int64_t offs[] = {0, 7, 50, 100, (int64_t)r.bytes[1] / 2, -30, -24, -17, -1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        expect_refused(base, "flip", offs[i], PSREC_ECORRUPT, "server-1.snap");
    expect_refused(base, "truncate", -1, PSREC_ECORRUPT, "server-0.snap");
    expect_refused(base, "truncate", 10, PSREC_ECORRUPT, "server-0.snap");
    expect_refused(base, "truncate", 0, PSREC_ECORRUPT, "server-0.snap");
    expect_refused(base, "grow", 0, PSREC_ECORRUPT, "server-0.snap");
    expect_refused(base, "delete", 0, PSREC_ENOTFOUND, "server-1.snap");
    const int64_t moffs[] = {0, 20, 100, -30, -1};
    for (size_t i = 0; i < sizeof moffs / sizeof moffs[0]; i++)
        expect_refused(base, "flip", moffs[i], PSREC_ECORRUPT, "MANIFEST");
    expect_refused(base, "truncate", -1, PSREC_ECORRUPT, "MANIFEST");
    expect_refused(base, "delete", 0, PSREC_ENOTFOUND, "MANIFEST");
    /* control: an untouched copy reads */
    char err[PSREC_ERRBUF];
    psrec_manifest_t m;
    assert_int_equal(psrec_manifest_read(base, 3, &m, err), PSREC_OK);
    psrec_manifest_free(&m);
}

/* MANIFEST texts with a right checksum but wrong content: edits of the real text. */
static void test_strict_parse(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", sub("strict")); /* sub() reuses its buffers */
    round_t r;
    make_round(dir, 3, 1, &r);
    const char *mpath = sub("strict/round-000003/MANIFEST");
    void *orig;
    size_t olen;
    assert_int_equal(psrec_dfile_read_all(mpath, &orig, &olen, err), PSREC_OK);
    char *text = malloc(olen + 1);
    memcpy(text, orig, olen);
    text[olen] = 0;
    struct {
        const char *from, *to;
        psrec_err want;
    } edits[] = {
        {"n_servers=2\n", "n_servers=2\n", PSREC_OK}, /* control */
        {"n_servers=2\n", "n_servers=02\n", PSREC_ECORRUPT},
        {"n_servers=2\n", "n_servers=2 \n", PSREC_ECORRUPT},
        {"n_servers=2\n", "n_servers=+2\n", PSREC_ECORRUPT},
        {"n_servers=2\n", "n_servers=4294967296\n", PSREC_ECORRUPT},
        {"n_servers=2\n", "n_servers=\n", PSREC_ECORRUPT},
        {"n_servers=2\n", "n_workers=2\n", PSREC_ECORRUPT},
        {"seed=1\n", "", PSREC_ECORRUPT},
        {"steps=300\n", "steps=99999999999999999999\n", PSREC_ECORRUPT},
        {"nfiles=2\n", "nfiles=3\n", PSREC_ECORRUPT},
        {"nfiles=2\n", "nfiles=1\n", PSREC_ECORRUPT},
        {"nfiles=2\n", "nfiles=4097\n", PSREC_ECORRUPT},
        {"file=server-1.snap", "file=../x.snap", PSREC_ECORRUPT},
        {"file=server-1.snap", "file=server-0.snap", PSREC_ECORRUPT}, /* twice */
        {"file=server-1.snap", "file=MANIFEST", PSREC_ECORRUPT},
        {"nshards=3\n", "nshards=99999999\n", PSREC_ECORRUPT},
        {"nshards=3\n", "nshards=2\n", PSREC_ECORRUPT},
        {"shard=1 ", "shard=2 ", PSREC_ECORRUPT},
        {"shard=1 passes=", "shard=1  passes=", PSREC_ECORRUPT},
        {" index=4294967295 ", " index=4294967296 ", PSREC_ECORRUPT},
        {"end\n", "extra=1\nend\n", PSREC_ECORRUPT},
        {"end\n", "end\njunk\n", PSREC_ECORRUPT},
        {"end\n", "end", PSREC_ECORRUPT},
        {"end\n", "end\n\n", PSREC_ECORRUPT},
        {"round=3\n", "round=4\n", PSREC_ECORRUPT},
        {"psrec-manifest 1\n", "psrec-manifest 2\n", PSREC_EVERSION},
        {"psrec-manifest 1\n", "psrec-manifesto 1\n", PSREC_ECORRUPT},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *at = strstr(text, edits[i].from);
        if (!at) fail_msg("edit %zu: '%s' not in the text", i, edits[i].from);
        size_t fl = strlen(edits[i].from), tl = strlen(edits[i].to);
        char *t = malloc(olen + tl + 1);
        size_t pre = (size_t)(at - text);
        memcpy(t, text, pre);
        memcpy(t + pre, edits[i].to, tl);
        memcpy(t + pre + tl, at + fl, olen - pre - fl);
        size_t tlen = olen - fl + tl;
        psrec_dfile_t *f;
        assert_int_equal(psrec_dfile_open(&f, mpath, err), PSREC_OK);
        assert_int_equal(psrec_dfile_write(f, t, tlen, err), PSREC_OK);
        assert_int_equal(psrec_dfile_commit(&f, err), PSREC_OK);
        free(t);
        psrec_manifest_t m;
        err[0] = 0;
        psrec_err rc = psrec_manifest_read(dir, 3, &m, err);
        if (rc != edits[i].want) fail_msg("edit %zu (%s): %s '%s'", i, edits[i].to, psrec_errname(rc), err);
        if (rc == PSREC_OK) {
            assert_manifest_equal(&m, &r.m);
            psrec_manifest_free(&m);
        } else {
            assert_non_null(strstr(err, "MANIFEST"));
            assert_null(m.files);
        }
    }
    free(text);
    free(orig);
}

typedef struct {
    char lines[8][PSREC_ERRBUF + 64];
    int n;
} warns_t;

static void warn(const char *line, void *ctx)
{
    warns_t *w = ctx;
    assert_true(w->n < 8);
    snprintf(w->lines[w->n++], sizeof w->lines[0], "%s", line);
}

static void corrupt_snapshot(const char *dir, uint64_t round, int server)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/round-%06llu/server-%d.snap", dir, (unsigned long long)round, server);
    flip(path, fsize(path) / 2);
}

static void test_latest(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", sub("latest")); /* sub() reuses its buffers */
    round_t r1, r2, r3;
    make_round(dir, 1, 1, &r1);
    make_round(dir, 2, 1, &r2);
    make_round(dir, 3, 0, &r3); /* in progress: no MANIFEST yet */
    corrupt_snapshot(dir, 2, 1);
    assert_int_equal(psrec_mkdirs(sub("latest/round-abc"), err), PSREC_OK); /* not rounds */
    assert_int_equal(psrec_mkdirs(sub("latest/round-9"), err), PSREC_OK);
    assert_int_equal(psrec_test_run(NULL, 0, "echo hi > '%s'", sub("latest/notes")), 0);
    warns_t w = {.n = 0};
    psrec_manifest_t m;
    psrec_err rc = psrec_manifest_latest(dir, &m, warn, &w, err);
    if (rc) fail_msg("%s", err);
    assert_manifest_equal(&m, &r1.m);
    psrec_manifest_free(&m);
    assert_int_equal(w.n, 2);
    assert_true(strncmp(w.lines[0], "round 3 refused: ", 17) == 0 && strstr(w.lines[0], "MANIFEST"));
    assert_true(strncmp(w.lines[1], "round 2 refused: ", 17) == 0 && strstr(w.lines[1], "server-1.snap") &&
                strstr(w.lines[1], "checksum"));
    /* without a warn callback; then with no intact round at all */
    assert_int_equal(psrec_manifest_latest(dir, &m, NULL, NULL, err), PSREC_OK);
    assert_int_equal(m.round, 1);
    psrec_manifest_free(&m);
    corrupt_snapshot(dir, 1, 0);
    w.n = 0;
    assert_int_equal(psrec_manifest_latest(dir, &m, warn, &w, err), PSREC_ENOTFOUND);
    assert_int_equal(w.n, 3);
    assert_null(m.files);
    assert_int_equal(psrec_manifest_latest(sub("latest/round-abc"), &m, NULL, NULL, err), PSREC_ENOTFOUND);
    assert_int_equal(psrec_manifest_latest(sub("nowhere"), &m, NULL, NULL, err), PSREC_ENOTFOUND);
}

static void test_prune(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", sub("prune")); /* sub() reuses its buffers */
    round_t r;
    for (uint64_t i = 1; i <= 5; i++)
        make_round(dir, i, 1, &r);
    make_round(dir, 6, 0, &r); /* in progress */
    corrupt_snapshot(dir, 4, 0);
    assert_int_equal(psrec_manifest_prune(dir, 0, err), PSREC_EINVAL);
    assert_int_equal(psrec_manifest_prune(dir, 10, err), PSREC_OK); /* fewer complete rounds than that */
    for (int i = 1; i <= 6; i++)
        assert_true(is_dir(sub("prune/round-%06d", i)));
    assert_int_equal(psrec_manifest_prune(dir, 2, err), PSREC_OK);
    /* newest complete: 5 and 3 kept, everything older than 3 deleted; 4 (refused) and 6 untouched */
    const int want[7] = {0, 0, 0, 1, 1, 1, 1};
    for (int i = 1; i <= 6; i++)
        if (is_dir(sub("prune/round-%06d", i)) != want[i]) fail_msg("round %d: %d", i, !want[i]);
    psrec_manifest_t m;
    assert_int_equal(psrec_manifest_latest(dir, &m, NULL, NULL, err), PSREC_OK);
    assert_int_equal(m.round, 5);
    psrec_manifest_free(&m);
    assert_int_equal(psrec_manifest_prune(dir, 1, err), PSREC_OK);
    assert_false(is_dir(sub("prune/round-000003")));
    assert_false(is_dir(sub("prune/round-000004")));
    assert_true(is_dir(sub("prune/round-000005")) && is_dir(sub("prune/round-000006")));
}

static void test_write_errors(void **st)
{
    (void)st;
    char err[PSREC_ERRBUF];
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", sub("werr")); /* sub() reuses its buffers */
    round_t r;
    make_round(dir, 1, 0, &r);
    char bad[2][64] = {"server-0.snap", "a/b"};
    psrec_manifest_t m = r.m;
    m.files = bad;
    assert_int_equal(psrec_manifest_write(dir, &m, err), PSREC_EINVAL);
    strcpy(bad[1], "..");
    assert_int_equal(psrec_manifest_write(dir, &m, err), PSREC_EINVAL);
    strcpy(bad[1], "server-0.snap");
    assert_int_equal(psrec_manifest_write(dir, &m, err), PSREC_EINVAL);
    strcpy(bad[1], "");
    assert_int_equal(psrec_manifest_write(dir, &m, err), PSREC_EINVAL);
    memset(bad[1], 'a', 64); /* no terminator */
    assert_int_equal(psrec_manifest_write(dir, &m, err), PSREC_EINVAL);
    m = r.m;
    m.nfiles = PSREC_MANIFEST_MAX_FILES + 1;
    assert_int_equal(psrec_manifest_write(dir, &m, err), PSREC_EINVAL);
    m = r.m;
    m.round = 2; /* no such round directory */
    assert_int_equal(psrec_manifest_write(dir, &m, err), PSREC_EIO);
    assert_int_equal(psrec_manifest_write(dir, &r.m, err), PSREC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_read), cmocka_unit_test(test_faults), cmocka_unit_test(test_strict_parse),
        cmocka_unit_test(test_latest),     cmocka_unit_test(test_prune),  cmocka_unit_test(test_write_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

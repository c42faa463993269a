/* test_data_shard.c: binary shards (common/data_shard.h): round trip, exact seek/tell resume, damage
 * detection (every single-byte flip of a small shard, a flip inside a block, truncation, a lying
 * declared size). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/data_shard.h"
#include "common/rng.h"

#define NSLOTS 12

#define tmpdir psrec_test_tmp

static int setup_dir(void **state)
{
    (void)state;
    return psrec_test_mktmp("shard");
}

static int teardown_dir(void **state)
{
    (void)state;
    return psrec_test_rmtmp();
}

static void make_schema(psrec_schema_t *s, int n)
{
    memset(s, 0, sizeof *s);
    char nm[16];
    for (int k = 0; k < n; k++) {
        int l = k == 0 ? sprintf(nm, "hist") : sprintf(nm, "slot%d", k);
        assert_int_equal(psrec_schema_add(s, nm, (size_t)l), k);
    }
}

static uint64_t rand_id(psrec_rng_t *r)
{
    switch (psrec_rng_below(r, 3)) {
    case 0: return psrec_rng_below(r, 100);
    case 1: return psrec_rng_u64(r) | (1ULL << 63); /* hashed-string-like */
    default: return psrec_rng_u64(r) >> psrec_rng_below(r, 64);
    }
}

/* n random examples with many slots, weights, home categories; example `big` has a huge history. */
static void make_examples(psrec_batch_t *b, size_t n, uint64_t seed, size_t big)
{
    psrec_batch_init(b, NSLOTS);
    psrec_rng_t r;
    psrec_rng_seed(&r, seed, 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(psrec_batch_begin(b), PSREC_OK);
        int npos = (int)psrec_rng_below(&r, 6);
        int eq = psrec_rng_below(&r, 2) == 0;
        for (int k = 0; k < npos; k++)
            assert_int_equal(psrec_batch_add_pos(b, rand_id(&r), eq ? 1.0f : (float)(0.1 + psrec_rng_uniform(&r))),
                             PSREC_OK);
        int sparse = psrec_rng_below(&r, 4) == 0; /* all slots empty */
        for (int s = 0; s < NSLOTS && !sparse; s++) {
            int c = (int)psrec_rng_below(&r, s == 0 ? 30 : 4);
            if (i == big && s == 0) c = 150000; /* ~1.5 MB raw: a block flushed on size */
            for (int k = 0; k < c; k++)
                assert_int_equal(psrec_batch_add_slot(b, s, rand_id(&r)), PSREC_OK);
        }
        int nh = (int)psrec_rng_below(&r, 3);
        for (int k = 0; k < nh; k++)
            assert_int_equal(psrec_batch_add_home(b, k == 1 ? UINT32_MAX : (uint32_t)psrec_rng_below(&r, 50)),
                             PSREC_OK);
        psrec_batch_end(b);
    }
}

static void assert_same_example(const psrec_batch_t *a, size_t i, const psrec_batch_t *b, size_t j)
{
    assert_int_equal(a->pos_off[i + 1] - a->pos_off[i], b->pos_off[j + 1] - b->pos_off[j]);
    for (uint32_t k = 0; k < a->pos_off[i + 1] - a->pos_off[i]; k++) {
        assert_true(a->pos_id[a->pos_off[i] + k] == b->pos_id[b->pos_off[j] + k]);
        assert_memory_equal(&a->pos_w[a->pos_off[i] + k], &b->pos_w[b->pos_off[j] + k], sizeof(float));
    }
    for (int s = 0; s < a->nslots; s++) {
        uint32_t na = a->slot_off[s][i + 1] - a->slot_off[s][i];
        uint32_t nb = s < b->nslots ? b->slot_off[s][j + 1] - b->slot_off[s][j] : 0;
        assert_int_equal(na, nb);
        if (na) assert_memory_equal(a->slot_id[s] + a->slot_off[s][i], b->slot_id[s] + b->slot_off[s][j], na * 8);
    }
    assert_int_equal(a->home_off[i + 1] - a->home_off[i], b->home_off[j + 1] - b->home_off[j]);
    for (uint32_t k = 0; k < a->home_off[i + 1] - a->home_off[i]; k++)
        assert_int_equal(a->home_cat[a->home_off[i] + k], b->home_cat[b->home_off[j] + k]);
}

static void write_shard(const char *path, const psrec_batch_t *b, int nslots)
{
    char err[PSREC_ERRBUF];
    psrec_schema_t s;
    make_schema(&s, nslots);
    psrec_shard_writer_t *w;
    assert_int_equal(psrec_shard_writer_open(&w, path, err), PSREC_OK);
    for (size_t i = 0; i < b->n; i++)
        assert_int_equal(psrec_shard_writer_add(w, b, i, err), PSREC_OK);
    assert_int_equal(psrec_shard_writer_commit(&w, &s, err), PSREC_OK);
    assert_null(w);
}

/* Reads everything from r (in chunks of `chunk`) into out; returns the last error code. */
static psrec_err read_rest(psrec_shard_reader_t *r, psrec_batch_t *out, size_t chunk, char *err)
{
    size_t got;
    psrec_err rc;
    do {
        rc = psrec_shard_reader_next(r, out, chunk, &got, err);
    } while (rc == PSREC_OK && got > 0);
    return rc;
}

static void test_round_trip(void **state)
{
    (void)state;
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/rt.bin", tmpdir);
    psrec_batch_t src, dst;
    make_examples(&src, 14000, 1, 5000);
    write_shard(path, &src, NSLOTS);

    psrec_shard_reader_t *r;
    assert_int_equal(psrec_shard_reader_open(&r, path, err), PSREC_OK);
    assert_int_equal(psrec_shard_reader_examples(r), src.n);
    const psrec_schema_t *s = psrec_shard_reader_schema(r);
    psrec_schema_t want;
    make_schema(&want, NSLOTS);
    assert_int_equal(s->nslots, NSLOTS);
    for (int k = 0; k < NSLOTS; k++)
        assert_string_equal(s->name[k], want.name[k]);
    psrec_batch_init(&dst, 0);
    size_t got;
    assert_int_equal(psrec_shard_reader_next(r, &dst, 10, &got, err), PSREC_EINVAL); /* batch lacks slots */
    assert_int_equal(psrec_batch_set_nslots(&dst, NSLOTS), PSREC_OK);
    assert_int_equal(read_rest(r, &dst, 777, err), PSREC_OK);
    assert_int_equal(dst.n, src.n);
    for (size_t i = 0; i < src.n; i++)
        assert_same_example(&src, i, &dst, i);
    psrec_shard_pos_t end = psrec_shard_reader_tell(r);
    assert_true(end.block >= 4 && end.index == 0); /* 14000 examples: at least 4 blocks */
    psrec_shard_reader_close(&r);
    assert_null(r);
    psrec_batch_free(&dst);
    psrec_batch_free(&src);

    /* an empty shard */
    snprintf(path, sizeof path, "%s/empty.bin", tmpdir);
    psrec_batch_init(&src, 0);
    write_shard(path, &src, 0);
    assert_int_equal(psrec_shard_reader_open(&r, path, err), PSREC_OK);
    assert_int_equal(psrec_shard_reader_examples(r), 0);
    psrec_batch_init(&dst, 0);
    assert_int_equal(psrec_shard_reader_next(r, &dst, 10, &got, err), PSREC_OK);
    assert_int_equal(got, 0);
    psrec_shard_reader_close(&r);
    psrec_batch_free(&dst);
}

static void test_seek_tell(void **state)
{
    (void)state;
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/seek.bin", tmpdir);
    psrec_batch_t src, a, b;
    make_examples(&src, 9000, 2, SIZE_MAX);
    write_shard(path, &src, NSLOTS);
    psrec_rng_t rng;
    psrec_rng_seed(&rng, 3, 0);
    psrec_shard_reader_t *r1, *r2;
    assert_int_equal(psrec_shard_reader_open(&r1, path, err), PSREC_OK);
    assert_int_equal(psrec_shard_reader_open(&r2, path, err), PSREC_OK);
    for (int trial = 0; trial < 12; trial++) {
        size_t skip = trial == 0 ? 0 : trial == 1 ? 4096 : trial == 2 ? src.n : (size_t)psrec_rng_below(&rng, src.n);
        psrec_batch_init(&a, NSLOTS);
        psrec_batch_init(&b, NSLOTS);
        /* r1: fresh position 0, read `skip` examples in odd chunks, tell, read the rest */
        assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){0, 0}, err), PSREC_OK);
        size_t done = 0, got;
        while (done < skip) {
            size_t want = skip - done < 333 ? skip - done : 333;
            assert_int_equal(psrec_shard_reader_next(r1, &a, want, &got, err), PSREC_OK);
            assert_int_equal(got, want);
            done += got;
        }
        psrec_shard_pos_t pos = psrec_shard_reader_tell(r1);
        psrec_batch_clear(&a);
        assert_int_equal(read_rest(r1, &a, 1000, err), PSREC_OK);
        assert_int_equal(a.n, src.n - skip);
        /* r2 (used before: its loaded block is stale) resumes from the recorded position */
        assert_int_equal(psrec_shard_reader_seek(r2, pos, err), PSREC_OK);
        assert_int_equal(read_rest(r2, &b, 517, err), PSREC_OK);
        assert_int_equal(b.n, a.n);
        for (size_t i = 0; i < a.n; i++) {
            assert_same_example(&a, i, &b, i);
            assert_same_example(&src, skip + i, &b, i);
        }
        psrec_batch_free(&a);
        psrec_batch_free(&b);
    }
    /* seeking backwards inside the loaded block */
    psrec_batch_init(&a, NSLOTS);
    size_t got;
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){1, 100}, err), PSREC_OK);
    assert_int_equal(psrec_shard_reader_next(r1, &a, 50, &got, err), PSREC_OK);
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){1, 10}, err), PSREC_OK);
    assert_int_equal(psrec_shard_reader_next(r1, &a, 1, &got, err), PSREC_OK);
    assert_same_example(&src, 4096 + 10, &a, 50);
    /* (block, nex) is the same place as (block + 1, 0) */
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){0, 4096}, err), PSREC_OK);
    psrec_shard_pos_t p = psrec_shard_reader_tell(r1);
    assert_true(p.block == 1 && p.index == 0);
    /* out of range */
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){0, 4097}, err), PSREC_EINVAL);
    /* 9000 = 4096 + 4096 + 808: blocks 0..2, the end is (3, 0) = (2, 808) */
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){4, 0}, err), PSREC_EINVAL);
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){3, 1}, err), PSREC_EINVAL);
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){2, 809}, err), PSREC_EINVAL);
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){UINT64_MAX, 0}, err), PSREC_EINVAL);
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){3, 0}, err), PSREC_OK);
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){2, 807}, err), PSREC_OK);
    psrec_batch_clear(&a);
    assert_int_equal(psrec_shard_reader_next(r1, &a, 10, &got, err), PSREC_OK);
    assert_int_equal(got, 1);
    assert_same_example(&src, 8999, &a, 0);
    assert_int_equal(psrec_shard_reader_seek(r1, (psrec_shard_pos_t){2, 808}, err), PSREC_OK); /* = end */
    psrec_batch_clear(&a);
    assert_int_equal(psrec_shard_reader_next(r1, &a, 10, &got, err), PSREC_OK);
    assert_int_equal(got, 0);
    psrec_batch_free(&a);
    psrec_shard_reader_close(&r1);
    psrec_shard_reader_close(&r2);
    psrec_batch_free(&src);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    unsigned char *p = malloc(*len);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, *len, f), *len);
    fclose(f);
    return p;
}

static void spill(const char *path, const unsigned char *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Opens and reads path completely: returns the first error, or OK with the examples in out. */
static psrec_err open_read(const char *path, psrec_batch_t *out, char *err)
{
    psrec_shard_reader_t *r;
    psrec_err rc = psrec_shard_reader_open(&r, path, err);
    if (rc) {
        assert_null(r);
        return rc;
    }
    rc = psrec_batch_set_nslots(out, psrec_shard_reader_schema(r)->nslots);
    if (!rc) rc = read_rest(r, out, 64, err);
    psrec_shard_reader_close(&r);
    return rc;
}

static void test_corrupt_block(void **state)
{
    (void)state;
    char path[128], bad[140], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/c.bin", tmpdir);
    snprintf(bad, sizeof bad, "%s/c_bad.bin", tmpdir);
    psrec_batch_t src, out;
    make_examples(&src, 9000, 4, SIZE_MAX);
    write_shard(path, &src, NSLOTS);
    size_t len;
    unsigned char *orig = slurp(path, &len);
    /* documented layout: 16-byte file header, then blocks with a 24-byte header (comp size at +12) */
    size_t b0 = 16, b1 = b0 + 24 + rd32(orig + b0 + 12);
    assert_memory_equal(orig + b1, "PSBK", 4);
    size_t targets[] = {b1 + 24 + 5, b1 + 24 + rd32(orig + b1 + 12) - 1, b1 + 8, b1 + 17};
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        unsigned char *p = malloc(len);
        memcpy(p, orig, len);
        p[targets[t]] ^= 0x10;
        spill(bad, p, len);
        free(p);
        psrec_shard_reader_t *r;
        assert_int_equal(psrec_shard_reader_open(&r, bad, err), PSREC_OK); /* blocks are checked when read */
        psrec_batch_init(&out, NSLOTS);
        size_t got;
        assert_int_equal(psrec_shard_reader_next(r, &out, 4096, &got, err), PSREC_OK); /* block 0 is fine */
        assert_int_equal(got, 4096);
        assert_int_equal(psrec_shard_reader_next(r, &out, 10, &got, err), PSREC_ECORRUPT);
        assert_non_null(strstr(err, bad));
        assert_non_null(strstr(err, "block 1"));
        assert_int_equal(out.n, 4096);
        /* block 2 can still be read by seeking past the damage */
        assert_int_equal(psrec_shard_reader_seek(r, (psrec_shard_pos_t){2, 0}, err), PSREC_OK);
        assert_int_equal(psrec_shard_reader_next(r, &out, 10000, &got, err), PSREC_OK);
        assert_int_equal(got, 9000 - 2 * 4096);
        psrec_shard_reader_close(&r);
        psrec_batch_free(&out);
    }
    free(orig);
    psrec_batch_free(&src);
}

/* Every single-byte change of a small shard is either detected (ECORRUPT/EVERSION) or harmless
 * (the trailer's own checksum, which opening does not verify, by design): never a crash, never
 * different data. */
static void test_every_byte_flip(void **state)
{
    (void)state;
    char path[128], bad[140], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/f.bin", tmpdir);
    snprintf(bad, sizeof bad, "%s/f_bad.bin", tmpdir);
    psrec_batch_t src, out;
    make_examples(&src, 12, 5, SIZE_MAX);
    write_shard(path, &src, NSLOTS);
    size_t len;
    unsigned char *orig = slurp(path, &len);
    unsigned char *p = malloc(len);
    size_t detected = 0;
    for (size_t at = 0; at < len; at++) {
        memcpy(p, orig, len);
        p[at] ^= (unsigned char)(1u << (at % 8));
        spill(bad, p, len);
        psrec_batch_init(&out, 0);
        psrec_err rc = open_read(bad, &out, err);
        if (rc == PSREC_OK) {
            assert_true(at >= len - 8); /* only the trailer checksum may go unnoticed */
            assert_int_equal(out.n, src.n);
            for (size_t i = 0; i < src.n; i++)
                assert_same_example(&src, i, &out, i);
        } else {
            if (rc != PSREC_ECORRUPT && rc != PSREC_EVERSION) fail_msg("byte %zu: %s (%s)", at, psrec_errname(rc), err);
            detected++;
        }
        psrec_batch_free(&out);
    }
    assert_int_equal(detected, len - 8);
    free(p);
    free(orig);
    psrec_batch_free(&src);
}

static void test_truncation_and_limits(void **state)
{
    (void)state;
    char path[128], bad[140], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/t.bin", tmpdir);
    snprintf(bad, sizeof bad, "%s/t_bad.bin", tmpdir);
    psrec_batch_t src;
    make_examples(&src, 5000, 6, SIZE_MAX);
    write_shard(path, &src, NSLOTS);
    size_t len;
    unsigned char *orig = slurp(path, &len);
    size_t cuts[] = {0, 1, 15, 16, 100, len / 2, len - 49, len - 25, len - 24, len - 1};
    psrec_shard_reader_t *r;
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        spill(bad, orig, cuts[k]);
        assert_int_equal(psrec_shard_reader_open(&r, bad, err), PSREC_ECORRUPT);
        assert_null(r);
        assert_non_null(strstr(err, bad));
    }
    /* appended garbage also breaks the framing */
    unsigned char *p = malloc(len + 3);
    memcpy(p, orig, len);
    memcpy(p + len, "xyz", 3);
    spill(bad, p, len + 3);
    assert_int_equal(psrec_shard_reader_open(&r, bad, err), PSREC_ECORRUPT);

    /* a footer with a valid checksum that declares a 1 GiB raw block is refused at open */
    memcpy(p, orig, len);
    size_t tail = len - 24 - 24;
    uint64_t foff = rd64(p + tail), flen = rd64(p + tail + 8);
    assert_memory_equal(p + foff, "PSRECSF1", 8);
    size_t fixed = 8 + 4 + 16 * 32 + 8 + 8 * 19; /* documented footer layout up to the block index */
    size_t entry0 = foff + fixed;
    p[entry0 + 12 + 3] = 0x40; /* raw size of block 0 := ~1 GiB */
    wr64(p + foff + flen - 8, (uint64_t)XXH64(p + foff, flen - 8, 0));
    spill(bad, p, len);
    assert_int_equal(psrec_shard_reader_open(&r, bad, err), PSREC_ECORRUPT);
    assert_non_null(strstr(err, "inconsistent block index"));
    free(p);
    free(orig);

    /* missing file */
    snprintf(bad, sizeof bad, "%s/none.bin", tmpdir);
    assert_int_equal(psrec_shard_reader_open(&r, bad, err), PSREC_ENOTFOUND);
    psrec_batch_free(&src);
}

static void test_writer_errors(void **state)
{
    (void)state;
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/w.bin", tmpdir);
    psrec_batch_t src;
    make_examples(&src, 20, 7, SIZE_MAX);
    psrec_shard_writer_t *w;
    assert_int_equal(psrec_shard_writer_open(&w, path, err), PSREC_OK);
    assert_int_equal(psrec_shard_writer_add(w, &src, 20, err), PSREC_EINVAL);
    psrec_shard_writer_abort(&w);
    assert_null(w);
    assert_int_not_equal(access(path, F_OK), 0);

    assert_int_equal(psrec_shard_writer_open(&w, path, err), PSREC_OK);
    for (size_t i = 0; i < src.n; i++)
        assert_int_equal(psrec_shard_writer_add(w, &src, i, err), PSREC_OK);
    psrec_schema_t s;
    make_schema(&s, 2); /* the examples use more slots than that */
    assert_int_equal(psrec_shard_writer_commit(&w, &s, err), PSREC_EINVAL);
    assert_null(w);
    assert_int_not_equal(access(path, F_OK), 0);

    snprintf(path, sizeof path, "%s/nodir/w.bin", tmpdir);
    assert_int_equal(psrec_shard_writer_open(&w, path, err), PSREC_EIO);
    assert_null(w);
    psrec_batch_free(&src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_seek_tell),
        cmocka_unit_test(test_corrupt_block),
        cmocka_unit_test(test_every_byte_flip),
        cmocka_unit_test(test_truncation_and_limits),
        cmocka_unit_test(test_writer_errors),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

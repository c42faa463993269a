/* test_durable.c: durable files round-trip, and every kind of damage (flipped byte, truncation,
 * missing trailer, missing file) is refused with the exact code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/durable.h"

static char dir[64];

static int setup(void **state)
{
    strcpy(dir, "/tmp/psrec-durable-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void write_file(const char *path, const char *text)
{
    char err[PSREC_ERRBUF];
    psrec_dfile_t *f;
    assert_int_equal(psrec_dfile_open(&f, path, err), PSREC_OK);
    assert_int_equal(psrec_dfile_write(f, text, strlen(text), err), PSREC_OK);
    assert_int_equal(psrec_dfile_tell(f), strlen(text));
    assert_int_equal(psrec_dfile_commit(&f, err), PSREC_OK);
    assert_null(f);
}

static void test_roundtrip(void **state)
{
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/a.bin", dir);
    write_file(path, "hello durable world");
    void *buf;
    size_t len;
    assert_int_equal(psrec_dfile_read_all(path, &buf, &len, err), PSREC_OK);
    assert_int_equal(len, 19);
    assert_memory_equal(buf, "hello durable world", 19);
    free(buf);
    uint64_t pl = 0;
    assert_int_equal(psrec_dfile_verify(path, &pl, err), PSREC_OK);
    assert_int_equal(pl, 19);
    /* overwrite: the new content replaces the old atomically, no temp file left */
    write_file(path, "second");
    assert_int_equal(psrec_dfile_read_all(path, &buf, &len, err), PSREC_OK);
    assert_int_equal(len, 6);
    free(buf);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    assert_int_equal(n, 0);
}

static void test_damage_refused(void **state)
{
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/b.bin", dir);
    const char *text = "0123456789abcdefghijklmnopqrstuvwxyz";
    struct stat st;
    void *buf = NULL;
    size_t len;
    /* flip each byte of the payload and of the trailer in turn */
    write_file(path, text);
    assert_int_equal(stat(path, &st), 0);
    for (off_t i = 0; i < st.st_size; i++) {
        write_file(path, text);
        FILE *f = fopen(path, "r+b");
        fseeko(f, i, SEEK_SET);
        int c = fgetc(f);
        fseeko(f, i, SEEK_SET);
        fputc(c ^ 0x20, f);
        fclose(f);
        assert_int_equal(psrec_dfile_read_all(path, &buf, &len, err), PSREC_ECORRUPT);
        assert_null(buf);
        assert_int_equal(psrec_dfile_verify(path, NULL, err), PSREC_ECORRUPT);
        assert_non_null(strstr(err, path));
    }
    /* truncation at every length */
    for (off_t n = 0; n < st.st_size; n++) {
        write_file(path, text);
        assert_int_equal(truncate(path, n), 0);
        assert_int_equal(psrec_dfile_read_all(path, &buf, &len, err), PSREC_ECORRUPT);
    }
    snprintf(path, sizeof path, "%s/missing.bin", dir);
    assert_int_equal(psrec_dfile_read_all(path, &buf, &len, err), PSREC_ENOTFOUND);
}

static void test_open_fails_in_missing_dir(void **state)
{
    char path[128], err[PSREC_ERRBUF] = "";
    snprintf(path, sizeof path, "%s/no/such/dir/x.bin", dir);
    psrec_dfile_t *f = (psrec_dfile_t *)1;
    assert_int_equal(psrec_dfile_open(&f, path, err), PSREC_EIO);
    assert_null(f);
    assert_non_null(strstr(err, "x.bin"));
    snprintf(path, sizeof path, "%s/no/such/dir", dir);
    assert_int_equal(psrec_mkdirs(path, err), PSREC_OK);
    assert_int_equal(psrec_mkdirs(path, err), PSREC_OK);
    psrec_dfile_abort(NULL);
}

static void test_plain_files(void **state)
{
    char path[128], err[PSREC_ERRBUF];
    snprintf(path, sizeof path, "%s/plain.txt", dir);
    psrec_dfile_t *f;
    assert_int_equal(psrec_dfile_open_plain(&f, path, err), PSREC_OK);
    assert_int_equal(psrec_dfile_write(f, "a b c\n", 6, err), PSREC_OK);
    assert_int_equal(psrec_dfile_finish(&f, PSREC_OK, err), PSREC_OK);
    assert_null(f);
    /* exactly the bytes written: no trailer for files other tools read */
    FILE *fp = fopen(path, "rb");
    char buf[64];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "a b c\n", 6);
    /* a failed writer (finish with an error) leaves the old file untouched and no temporary behind */
    assert_int_equal(psrec_dfile_open_plain(&f, path, err), PSREC_OK);
    assert_int_equal(psrec_dfile_write(f, "partial", 7, err), PSREC_OK);
    assert_int_equal(psrec_dfile_finish(&f, PSREC_EIO, err), PSREC_EIO);
    assert_null(f);
    fp = fopen(path, "rb");
    n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_int_equal(n, 6);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", dir);
    FILE *p = popen(cmd, "r");
    int count = -1;
    assert_int_equal(fscanf(p, "%d", &count), 1);
    pclose(p);
    assert_int_equal(count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_damage_refused),
        cmocka_unit_test(test_open_fails_in_missing_dir),
        cmocka_unit_test(test_plain_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

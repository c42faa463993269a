/* test_util.h: helpers shared by the test executables (header-only, since each test is one .c file;
 * include after <cmocka.h>): a temporary directory per test group, running a shell command with its
 * output captured, reading a number out of a JSON line, a monotonic clock for deadlines, and a free
 * tcp port on 127.0.0.1. */
#ifndef PSREC_TEST_UTIL_H
#define PSREC_TEST_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char psrec_test_tmp[64];

/* Creates /tmp/psrec-<tag>-XXXXXX into psrec_test_tmp; 0 on success (cmocka group setup style). */
static inline int psrec_test_mktmp(const char *tag)
{
    snprintf(psrec_test_tmp, sizeof psrec_test_tmp, "/tmp/psrec-%.16s-XXXXXX", tag);
    return mkdtemp(psrec_test_tmp) ? 0 : -1;
}

static inline int psrec_test_rmtmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", psrec_test_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs a shell command (stderr merged into stdout), stores up to cap-1 bytes of its output in out
 * (may be NULL), returns its exit status (-1 if it did not exit normally). */
static inline int psrec_test_run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = 0, r;
    char tmp[4096];
    while ((r = fread(tmp, 1, sizeof tmp, p)) > 0)
        if (out && n + 1 < cap) {
            size_t c = r < cap - 1 - n ? r : cap - 1 - n;
            memcpy(out + n, tmp, c);
            n += c;
        }
    if (out) out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The number after "key": in text (the test fails if the key is missing). */
static inline double psrec_test_json_num(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(text, pat);
    assert_non_null(p);
    return atof(p + strlen(pat));
}

/* Monotonic seconds (for deadlines when waiting on a condition). */
static inline double psrec_test_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* A tcp port on 127.0.0.1 that was free a moment ago (bound and released). */
static inline int psrec_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

#endif

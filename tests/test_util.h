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

/* Whether a tcp port on 127.0.0.1 can be bound now. */
static inline int psrec_test_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* The first of 16 consecutive tcp ports on 127.0.0.1 that were free a moment ago: a job's coordinator
 * port and the fixed server ports after it (launch/run.sh: port + 1 + rank). They are drawn below the
 * kernel's ephemeral range (32768 and up here), which every bind to port 0 and every outgoing
 * connection of the tests running in parallel draws from: a port taken from there could be handed to
 * another test's socket before the job binds it (a restarted server then found its port busy). */
static inline int psrec_test_free_port(void)
{
    static unsigned calls;
    unsigned x = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^ (++calls * 40503u);
    for (int tries = 0; tries < 1000; tries++) {
        x = x * 1103515245u + 12345u;
        int base = 20000 + (int)((x >> 8) % 750) * 16; /* 20000 .. 31984 */
        int ok = 1;
        for (int p = base; ok && p < base + 16; p++)
            ok = psrec_test_port_free(p);
        if (ok) return base;
    }
    fail_msg("no 16 free consecutive tcp ports in 20000..31999");
    return -1;
}

#endif

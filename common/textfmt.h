/* textfmt.h: the tiny formatters the text writers share (generator, importer): decimal uint64 and
 * string copies into a line buffer, faster than snprintf on the hot path of writing 10^8 lines.
 * Thread model: pure functions. */
#ifndef PSREC_TEXTFMT_H
#define PSREC_TEXTFMT_H

#include <stdint.h>
#include <string.h>

/* Writes v in decimal at p; returns the end. */
static inline char *psrec_put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Copies s (without its NUL) at p; returns the end. */
static inline char *psrec_put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

#endif

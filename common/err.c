/* err.c: names and descriptions of psrec_err codes, and psrec_fail() which fills an error buffer.
 * Thread model: stateless, safe from any thread. */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    const char *name;
    const char *text;
} table[PSREC_ERR_COUNT] = {
    [PSREC_OK] = {"PSREC_OK", "success"},
    [PSREC_ENOMEM] = {"PSREC_ENOMEM", "out of memory"},
    [PSREC_EINVAL] = {"PSREC_EINVAL", "invalid argument"},
    [PSREC_EIO] = {"PSREC_EIO", "input/output error"},
    [PSREC_EPARSE] = {"PSREC_EPARSE", "malformed input"},
    [PSREC_ECORRUPT] = {"PSREC_ECORRUPT", "corrupt or truncated file"},
    [PSREC_EMSGSIZE] = {"PSREC_EMSGSIZE", "declared size exceeds limit"},
    [PSREC_ENOTFOUND] = {"PSREC_ENOTFOUND", "not found"},
    [PSREC_EFULL] = {"PSREC_EFULL", "capacity reached"},
    [PSREC_EEOF] = {"PSREC_EEOF", "end of input"},
    [PSREC_EVERSION] = {"PSREC_EVERSION", "unsupported format version"},
    [PSREC_EUNSUPPORTED] = {"PSREC_EUNSUPPORTED", "not supported"},
    [PSREC_ETIMEDOUT] = {"PSREC_ETIMEDOUT", "timed out"},
    [PSREC_EPROTO] = {"PSREC_EPROTO", "protocol error"},
    [PSREC_ESTALE] = {"PSREC_ESTALE", "wrong server or stale shard map"},
    [PSREC_ENOTREADY] = {"PSREC_ENOTREADY", "cluster not ready"},
    [PSREC_EREFUSED] = {"PSREC_EREFUSED", "refused"},
};

const char *psrec_strerror(psrec_err e)
{
    if ((unsigned)e >= PSREC_ERR_COUNT) return "unknown error";
    return table[e].text;
}

const char *psrec_errname(psrec_err e)
{
    if ((unsigned)e >= PSREC_ERR_COUNT) return "PSREC_E?";
    return table[e].name;
}

psrec_err psrec_fail(char *buf, psrec_err code, const char *fmt, ...)
{
    if (buf) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, PSREC_ERRBUF, fmt, ap);
        va_end(ap);
    }
    return code;
}

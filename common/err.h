/* err.h: the one error enum of psrec (0 = OK) and the caller-supplied error buffer.
 * Every function that can fail returns psrec_err; parsers and loaders also fill a char buffer
 * (PSREC_ERRBUF bytes) with a readable message such as "train.txt:12: bad weight 'x'". */
#ifndef PSREC_ERR_H
#define PSREC_ERR_H

#include <stddef.h>

typedef enum {
    PSREC_OK = 0,
    PSREC_ENOMEM,       /* allocation failed */
    PSREC_EINVAL,       /* bad argument or option */
    PSREC_EIO,          /* read/write/fsync/rename failed */
    PSREC_EPARSE,       /* malformed text input (data line, config) */
    PSREC_ECORRUPT,     /* checksum mismatch, truncated or inconsistent binary file */
    PSREC_EMSGSIZE,     /* a declared length exceeds a limit */
    PSREC_ENOTFOUND,    /* missing file, key or table */
    PSREC_EFULL,        /* a capacity bound was reached */
    PSREC_EEOF,         /* end of input (not an error for readers that loop) */
    PSREC_EVERSION,     /* unknown format version */
    PSREC_EUNSUPPORTED, /* valid but not supported in this build/mode */
    PSREC_ETIMEDOUT,    /* a deadline passed */
    PSREC_EPROTO,       /* protocol violation */
    PSREC_ESTALE,       /* wrong server for a key, or a stale shard map / membership epoch */
    PSREC_ENOTREADY,    /* the cluster is not complete yet (retry later) */
    PSREC_EREFUSED,     /* refused by policy: other job, limits */
    PSREC_ERR_COUNT
} psrec_err;

#define PSREC_MUST_CHECK __attribute__((warn_unused_result))
#define PSREC_ERRBUF 512

/* Name of the code ("PSREC_EIO") and a short description. Never NULL. */
const char *psrec_strerror(psrec_err e);
const char *psrec_errname(psrec_err e);

/* Formats into buf (may be NULL) and returns code, so parsers can write
 * `return psrec_fail(buf, PSREC_EPARSE, "%s:%zu: ...", ...);`. */
psrec_err psrec_fail(char *buf, psrec_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

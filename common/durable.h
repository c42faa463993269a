/* durable.h: the one way psrec writes files that must survive a crash, and reads them back safely.
 *
 * A durable file is written to "<path>.tmp.<pid>.<tid>", fsync'ed, renamed over <path>, and the directory
 * is fsync'ed (Redis rdbSave's sequence): after kill -9 a reader sees the old file or the new one,
 * never a mix. Every durable file ends with a 24-byte trailer {"PSRECEND", payload length, XXH64 of
 * the payload}, so a truncated or corrupted file is detected and refused before anything is used.
 *
 * Thread model: a psrec_dfile_t belongs to one thread. */
#ifndef PSREC_DURABLE_H
#define PSREC_DURABLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct psrec_dfile psrec_dfile_t;

/* Opens a temporary file next to path. On failure *f stays NULL and err says why. */
psrec_err psrec_dfile_open(psrec_dfile_t **f, const char *path, char *err) PSREC_MUST_CHECK;
/* The same crash-safe sequence for files other tools read (text examples, .npy, word2vec text):
 * no psrec trailer is appended at commit. */
psrec_err psrec_dfile_open_plain(psrec_dfile_t **f, const char *path, char *err) PSREC_MUST_CHECK;
/* Commits when rc is PSREC_OK, aborts otherwise; returns rc or the commit's error (err set). For the
 * one-exit style: `return psrec_dfile_finish(&f, rc, err);`. */
psrec_err psrec_dfile_finish(psrec_dfile_t **f, psrec_err rc, char *err) PSREC_MUST_CHECK;
/* Appends len bytes (buffered, checksummed as it goes). */
psrec_err psrec_dfile_write(psrec_dfile_t *f, const void *p, size_t len, char *err) PSREC_MUST_CHECK;
/* Bytes written so far (payload only). */
uint64_t psrec_dfile_tell(const psrec_dfile_t *f);
/* Writes the trailer, fsyncs, renames into place, fsyncs the directory. Always destroys *f and sets
 * it to NULL; on failure the temporary file is removed and the old file (if any) is untouched. */
psrec_err psrec_dfile_commit(psrec_dfile_t **f, char *err) PSREC_MUST_CHECK;
/* Discards the temporary file. Accepts NULL. */
void psrec_dfile_abort(psrec_dfile_t **f);

/* Reads a whole durable file into a malloc'ed buffer after checking its trailer and checksum.
 * On success the caller owns *buf (payload only, *len bytes). A missing file is PSREC_ENOTFOUND;
 * a short, truncated or mismatching file is PSREC_ECORRUPT; err names the file and the fault. */
psrec_err psrec_dfile_read_all(const char *path, void **buf, size_t *len, char *err) PSREC_MUST_CHECK;

/* Checks a durable file's trailer and checksum by streaming it (for files too big to load);
 * *payload_len gets the payload size. Same codes as psrec_dfile_read_all. */
psrec_err psrec_dfile_verify(const char *path, uint64_t *payload_len, char *err) PSREC_MUST_CHECK;

/* Maps a durable file read-only and shared (MAP_SHARED: the processes of one machine share its pages
 * in the page cache) after checking its trailer and checksum over the mapping itself, so what was
 * checked is what is read. The check walks the file in chunks and drops each chunk from this
 * process's resident set again: a large file costs this process memory only where it is read later.
 * *payload = the start of the mapping (page aligned, so 8-byte fields at 8-aligned offsets can be
 * read in place), *len = payload bytes. Release with psrec_dfile_unmap. Same codes as
 * psrec_dfile_read_all. The file must only ever be replaced by rename (psrec_dfile_commit does):
 * truncating a mapped file in place would fault its readers. */
psrec_err psrec_dfile_map(const char *path, const void **payload, size_t *len, char *err) PSREC_MUST_CHECK;
/* Unmaps a psrec_dfile_map mapping (payload and len as returned). Accepts NULL. */
void psrec_dfile_unmap(const void *payload, size_t len);
/* Drops bytes [off, off + len) of a psrec_dfile_map mapping from the resident set (whole pages
 * around them); they are read back from the page cache when touched again. A hint: never fails. */
void psrec_dfile_map_drop(const void *payload, size_t off, size_t len);

/* The numbers N of the entries of dir named exactly prefix + N + suffix, with N printed as "%06llu"
 * prints it (6 to 20 digits, no other spelling), in ascending order; the caller frees *out (NULL when
 * *n = 0). A missing directory is PSREC_ENOTFOUND, another failure to read it PSREC_EIO. */
psrec_err psrec_dir_numbers(const char *dir, const char *prefix, const char *suffix, uint64_t **out, size_t *n,
                            char *err) PSREC_MUST_CHECK;

/* mkdir -p; existing directories are fine. */
psrec_err psrec_mkdirs(const char *path, char *err) PSREC_MUST_CHECK;

#endif

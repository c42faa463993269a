/* data_shard.h: binary training shards written by `psrec prep` and read by workers.
 *
 * A shard is a sequence of blocks, each holding up to a few thousand examples serialised and
 * LZ4-compressed, with a per-block header (magic, sizes, example count, XXH64 of the compressed
 * bytes) so a corrupt block is detected; a footer holds the slot schema, the block index and the
 * totals, and the file is written through common/durable (temp + fsync + rename, trailer checksum
 * over the whole payload is NOT re-verified on open: blocks are verified as they are read).
 * A read position is (block, example-in-block): it can be recorded and resumed exactly.
 * Thread model: one writer/reader per thread. */
#ifndef PSREC_DATA_SHARD_H
#define PSREC_DATA_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/batch.h"
#include "common/err.h"

typedef struct {
    uint64_t block; /* index of the block */
    uint32_t index; /* example within the block */
} psrec_shard_pos_t;

typedef struct psrec_shard_writer psrec_shard_writer_t;
typedef struct psrec_shard_reader psrec_shard_reader_t;

psrec_err psrec_shard_writer_open(psrec_shard_writer_t **w, const char *path, char *err) PSREC_MUST_CHECK;
/* Appends example i of b. */
psrec_err psrec_shard_writer_add(psrec_shard_writer_t *w, const psrec_batch_t *b, size_t i, char *err) PSREC_MUST_CHECK;
/* Flushes, writes the footer with `schema`, commits durably. Destroys *w in every case. */
psrec_err psrec_shard_writer_commit(psrec_shard_writer_t **w, const psrec_schema_t *schema, char *err) PSREC_MUST_CHECK;
void psrec_shard_writer_abort(psrec_shard_writer_t **w);

/* Opens a shard, checks header, footer and trailer framing (not every block). */
psrec_err psrec_shard_reader_open(psrec_shard_reader_t **r, const char *path, char *err) PSREC_MUST_CHECK;
void psrec_shard_reader_close(psrec_shard_reader_t **r);
const psrec_schema_t *psrec_shard_reader_schema(const psrec_shard_reader_t *r);
uint64_t psrec_shard_reader_examples(const psrec_shard_reader_t *r);
/* Appends up to max examples to b (b must carry the schema's slots); *got = 0 at end of shard.
 * A corrupt block is PSREC_ECORRUPT naming the file and block. */
psrec_err psrec_shard_reader_next(psrec_shard_reader_t *r, psrec_batch_t *b, size_t max, size_t *got,
                                  char *err) PSREC_MUST_CHECK;
psrec_shard_pos_t psrec_shard_reader_tell(const psrec_shard_reader_t *r);
psrec_err psrec_shard_reader_seek(psrec_shard_reader_t *r, psrec_shard_pos_t pos, char *err) PSREC_MUST_CHECK;

#endif

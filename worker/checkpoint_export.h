/* checkpoint_export.h: a model directory (worker/model.h) from a checkpoint round, without a cluster:
 * every server's snapshot of the round is loaded into one store of this process, and the model is
 * written as a live job's rank 0 would write it (the catalogue's untouched rows get the same
 * deterministic init a server would give them). The model's shape comes from <ckpt>/model.conf, which
 * worker 0 writes when a job with checkpoints starts; the catalogue from the data's freq.bin.
 * Thread model: one call at a time per output directory. */
#ifndef PSREC_CHECKPOINT_EXPORT_H
#define PSREC_CHECKPOINT_EXPORT_H

#include <stdint.h>

#include "common/err.h"

/* round 0 = the newest complete round (refused rounds are reported on stderr). *used_round (may be
 * NULL) gets the round exported. A corrupt or incomplete round is refused (ps/manifest.h). */
psrec_err psrec_checkpoint_export(const char *ckpt_dir, uint64_t round, const char *data_dir, const char *model_dir,
                                  uint64_t *used_round, char *err) PSREC_MUST_CHECK;

#endif

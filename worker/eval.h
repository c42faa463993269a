/* eval.h: full-ranking evaluation (ALGORITHMS.md §8) and top-K retrieval.
 *
 * Scores are s(q, j) = U[q] . V[j] over all N catalogue rows, computed tile by tile with one GEMM per
 * tile (Q x T) and a size-K min-heap per query; ties break toward the lower catalogue index.
 * Items in excl(q) (training/history items) are never ranked. Per query q with relevant set rel(q)
 * (catalogue indexes, excl items removed from it first):
 *   Recall@K = |topK ∩ rel| / |rel|   (divided by |rel|, not min(K,|rel|))
 *   NDCG@K   = DCG/IDCG with binary gains
 *   MRR      = 1/rank of the best relevant item, rank computed exactly by counting, not sorting.
 * With item categories and home sets (home(q) non-empty): Fold@K, Chance, FoldRatio = mean Fold /
 * mean Chance, FoldAUC (P(score of a random out-of-home eligible item > score of a random relevant
 * item), estimated exactly over all pairs per query by counting), and the share of the most common
 * foreign category among out-of-home recommendations (§4).
 * Queries with empty rel(q) are skipped (counted in n_skipped).
 *
 * Thread model: psrec_eval_run uses up to `threads` threads internally; inputs are read-only. */
#ifndef PSREC_EVAL_H
#define PSREC_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct {
    size_t Q, N;
    int d;
    const float *U;          /* Q x d query embeddings */
    const float *V;          /* N x d catalogue item embeddings */
    const uint32_t *rel_off; /* Q+1, CSR of catalogue indexes */
    const uint32_t *rel_idx;
    const uint32_t *excl_off; /* Q+1 or NULL */
    const uint32_t *excl_idx;
    const int32_t *item_cat;  /* N categories (or NULL: no folding metrics); -1 = unknown */
    const uint32_t *home_off; /* Q+1 or NULL */
    const uint32_t *home_cat;
    int k;
    int threads;
} psrec_eval_in_t;

typedef struct {
    size_t n_queries, n_skipped;
    double recall, ndcg, mrr;
    int has_fold;
    double fold, chance, fold_ratio, fold_auc, foreign_top_share;
} psrec_eval_result_t;

psrec_err psrec_eval_run(const psrec_eval_in_t *in, psrec_eval_result_t *res) PSREC_MUST_CHECK;

/* Top-k catalogue indexes and scores for each of Q queries, best first (ties: lower index first),
 * skipping excl(q). out_idx/out_score are Q x k; unused tail entries (N - |excl| < k) get index
 * UINT32_MAX and score -INFINITY. */
psrec_err psrec_topk(const float *U, size_t Q, const float *V, size_t N, int d, int k, const uint32_t *excl_off,
                     const uint32_t *excl_idx, uint32_t *out_idx, float *out_score) PSREC_MUST_CHECK;

#endif

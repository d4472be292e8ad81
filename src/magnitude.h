// Magnitude pruning (SPEC 2.3), the reference's `--gmp` semantics.
#pragma once
#include "pattern.h"

#include <stdint.h>

// Prunes W_local (rows_local, cols) row-major in place and writes mask_local (same shape,
// 1 = pruned). Rows are a shard of a (rows_global, cols) matrix (a single process passes
// rows_local == rows_global).
//   unstructured: one threshold per matrix, t = sorted(|W|.flat)[floor(rows_global*cols*p)],
//                 prune |W| <= t (ties at t are all pruned, as in the reference). The global
//                 order statistic comes from `select` (NULL: sds_select_kth_local).
//   N:M:          in each row, in each group of m consecutive columns, the n smallest |W|
//                 (ties to the lower column).
// Input error if W holds NaN or Inf; usage error if the pattern does not fit the shape.
int sds_magnitude_prune(float *W_local, int64_t rows_local, int64_t rows_global, int64_t cols,
                        sds_pattern p, sds_select_fn select, void *select_ctx, uint8_t *mask_local);

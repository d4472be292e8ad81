// Wanda pruning (SPEC 2.4): score S_ij = |W_ij| * sqrt(s_j), s the Wanda statistic of the
// sublayer's input (sds_hessian with SDS_HESSIAN_WANDA).
#pragma once
#include "pattern.h"

#include <stdint.h>

// Prunes W_local (rows_local, cols) row-major in place and writes mask_local (same shape,
// 1 = pruned). Every row is independent, so any row shard works unchanged.
//   unstructured: per row, the floor(cols*p) smallest scores in stable order (ties to the
//                 lower column), as torch.sort(stable=True) in the reference;
//   N:M:          per row and group of m columns, the n smallest scores (ties to the lower column).
// The score is computed in fp32 exactly as the reference does (fabsf(w) * sqrtf(s)), so the same
// statistic gives bit-identical scores and the same mask.
// Input error if W or s hold NaN/Inf or s is negative; usage error if the pattern does not fit.
int sds_wanda_prune(float *W_local, int64_t rows_local, int64_t cols, const float *stat,
                    sds_pattern p, uint8_t *mask_local);

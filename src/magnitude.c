#include "magnitude.h"

#include "sds_error.h"

#include <math.h>
#include <stdlib.h>

int sds_magnitude_prune(float *W_local, int64_t rows_local, int64_t rows_global, int64_t cols,
                        sds_pattern p, sds_select_fn select, void *select_ctx,
                        uint8_t *mask_local) {
    SDS_TRY(sds_pattern_check(p, rows_global, cols, "the weight"));
    SDS_ASSERT(rows_local >= 0 && rows_local <= rows_global);
    const int64_t numel = rows_local * cols;
    for (int64_t i = 0; i < numel; i++)
        if (!isfinite(W_local[i]))
            return sds_error_set(SDS_ERR_INPUT,
                                 "magnitude pruning: the weight holds NaN or Inf "
                                 "(row %lld, column %lld of the shard)",
                                 (long long)(i / cols), (long long)(i % cols));
    if (p.kind == SDS_PATTERN_NM) {
        float score[SDS_PATTERN_MAX_M];
        for (int64_t r = 0; r < rows_local; r++) {
            const float *w = W_local + r * cols;
            for (int64_t j0 = 0; j0 < cols; j0 += p.m) {
                for (int32_t j = 0; j < p.m; j++) score[j] = fabsf(w[j0 + j]);
                sds_pattern_nm_group(score, p.n, p.m, mask_local + r * cols + j0);
            }
        }
    } else {
        float *mag = sds_malloc((size_t)(numel ? numel : 1) * sizeof(float), "magnitude scores");
        if (!mag) return SDS_ERR_IO;
        for (int64_t i = 0; i < numel; i++) mag[i] = fabsf(W_local[i]);
        float t = 0.0f;
        const int64_t n_global = rows_global * cols;
        int rc = (select ? select : sds_select_kth_local)(select_ctx, mag, numel, n_global,
                                                          sds_pattern_kth(n_global, p.p), &t);
        free(mag);
        if (rc != SDS_OK) return rc;
        for (int64_t i = 0; i < numel; i++) mask_local[i] = fabsf(W_local[i]) <= t;
    }
    sds_pattern_apply(W_local, mask_local, numel);
    return SDS_OK;
}

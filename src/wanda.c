#include "wanda.h"

#include "sds_error.h"

#include <math.h>
#include <stdlib.h>

int sds_wanda_prune(float *W_local, int64_t rows_local, int64_t cols, const float *stat,
                    sds_pattern p, uint8_t *mask_local) {
    SDS_TRY(sds_pattern_check(p, rows_local > 0 ? rows_local : 1, cols, "the weight"));
    for (int64_t j = 0; j < cols; j++)
        if (!isfinite(stat[j]) || stat[j] < 0.0f)
            return sds_error_set(SDS_ERR_INPUT,
                                 "Wanda: the input statistic of column %lld is %g (expected a "
                                 "finite value >= 0)",
                                 (long long)j, (double)stat[j]);
    const int64_t numel = rows_local * cols;
    for (int64_t i = 0; i < numel; i++)
        if (!isfinite(W_local[i]))
            return sds_error_set(SDS_ERR_INPUT,
                                 "Wanda: the weight holds NaN or Inf (row %lld, "
                                 "column %lld of the shard)",
                                 (long long)(i / cols), (long long)(i % cols));
    float *root = sds_malloc((size_t)cols * sizeof(float), "Wanda scores");
    float *score = sds_malloc((size_t)cols * sizeof(float), "Wanda scores");
    int64_t *work = sds_malloc((size_t)cols * sizeof(int64_t), "Wanda scores");
    if (!root || !score || !work) {
        free(root);
        free(score);
        free(work);
        return SDS_ERR_IO;
    }
    for (int64_t j = 0; j < cols; j++) root[j] = sqrtf(stat[j]);
    const int64_t k = (int64_t)((double)cols * sds_pattern_fraction(p));
    for (int64_t r = 0; r < rows_local; r++) {
        const float *w = W_local + r * cols;
        uint8_t *mask = mask_local + r * cols;
        for (int64_t j = 0; j < cols; j++) score[j] = fabsf(w[j]) * root[j];
        if (p.kind == SDS_PATTERN_NM) {
            for (int64_t j0 = 0; j0 < cols; j0 += p.m)
                sds_pattern_nm_group(score + j0, p.n, p.m, mask + j0);
        } else {
            sds_pattern_smallest_k(score, cols, k, work, mask);
        }
    }
    free(root);
    free(score);
    free(work);
    sds_pattern_apply(W_local, mask_local, numel);
    return SDS_OK;
}

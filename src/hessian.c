#include "hessian.h"

#include "sds_error.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int64_t sds_hessian_packed_len(const sds_hessian *h) {
    return h->cols * (h->cols + 1) / 2;
}

static void free_acc(sds_hessian *h) {
    free(h->acc);
    free(h->sq_acc);
    h->acc = h->sq_acc = NULL;
}

int sds_hessian_init(sds_hessian *h, int64_t cols, int32_t flags) {
    memset(h, 0, sizeof *h);
    if (cols < 1 || cols > INT_MAX)
        return sds_error_set(SDS_ERR_INPUT, "Hessian: %lld input columns is out of range",
                             (long long)cols);
    h->cols = cols;
    h->flags = flags;
    if (flags & SDS_HESSIAN_GRAM) {
        h->H = sds_calloc((size_t)(cols * cols), sizeof(float), "the Hessian");
        h->acc = sds_calloc((size_t)sds_hessian_packed_len(h), sizeof(sds_xsum_t), "the Hessian");
        if (!h->H || !h->acc) {
            sds_hessian_free(h);
            return SDS_ERR_IO;
        }
    }
    if (flags & SDS_HESSIAN_WANDA) {
        h->sq = sds_calloc((size_t)cols, sizeof(double), "the Wanda statistic");
        h->wanda = sds_calloc((size_t)cols, sizeof(float), "the Wanda statistic");
        h->sq_acc = sds_calloc((size_t)cols, sizeof(sds_xsum_t), "the Wanda statistic");
        if (!h->sq || !h->wanda || !h->sq_acc) {
            sds_hessian_free(h);
            return SDS_ERR_IO;
        }
    }
    return SDS_OK;
}

int sds_hessian_add(sds_hessian *h, const float *X, int64_t nseq, int64_t tokens) {
    SDS_ASSERT(!h->done);
    if (nseq < 0 || tokens < 0 || nseq * tokens > INT_MAX)
        return sds_error_set(SDS_ERR_INPUT,
                             "Hessian: %lld sequences of %lld tokens is too many "
                             "for one call",
                             (long long)nseq, (long long)tokens);
    const int64_t cols = h->cols;
    for (int64_t s = 0; s < nseq; s++) {
        const float *Xs = X + s * tokens * cols;
        if (tokens > 0 && (h->flags & SDS_HESSIAN_GRAM)) {
            // X_s row-major (tokens, cols): this sequence's X_s^T X_s (upper, row-major) in fp32,
            // then into the exact sum. ssyrk reached ~0.8 of sgemm's GFLOP/s on X^T X at 768
            // columns and 2 threads in paired runs; triangles of ssyrk + sgemm tiles
            // (OpenBLAS-threaded, or single-threaded tiles on our own threads) were slower.
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)tokens, 1.0f, Xs,
                        (int)cols, 0.0f, h->H, (int)cols);
            if (sds_xsum_add_upper_f32(h->acc, h->H, cols, SDS_HESSIAN_XSUM_LIMIT))
                return sds_error_set(SDS_ERR_NUMERIC,
                                     "Hessian: an entry of one sequence's X^T X is not finite or "
                                     "%.3g or more: the calibration activations are too large "
                                     "for exact sums",
                                     SDS_HESSIAN_XSUM_LIMIT);
        }
        if (h->flags & SDS_HESSIAN_WANDA) {
            memset(h->sq, 0, (size_t)cols * sizeof(double));
            for (int64_t t = 0; t < tokens; t++) {
                const float *x = Xs + t * cols;
                for (int64_t j = 0; j < cols; j++) h->sq[j] += (double)x[j] * x[j];
            }
            if (sds_xsum_add_f64(h->sq_acc, h->sq, (size_t)cols, SDS_HESSIAN_XSUM_LIMIT))
                return sds_error_set(SDS_ERR_NUMERIC,
                                     "Wanda statistic: a sum of squares of one sequence is not "
                                     "finite or %.3g or more: the calibration activations are "
                                     "too large for exact sums",
                                     SDS_HESSIAN_XSUM_LIMIT);
        }
    }
    h->nseq += nseq;
    return SDS_OK;
}

int sds_hessian_finish(sds_hessian *h) {
    SDS_ASSERT(!h->done);
    if (h->nseq < 1)
        return sds_error_set(SDS_ERR_INPUT, "Hessian: no calibration sequences were added");
    const int64_t cols = h->cols;
    if (h->flags & SDS_HESSIAN_GRAM) {
        const float scale = (float)(2.0 / (double)h->nseq);
        float *H = h->H;
        sds_xsum_upper_to_f32(h->acc, H, cols);
        // One pass in 64 x 64 tiles: scale the upper tile (ib, jb), jb >= ib, and write it
        // transposed into the lower tile (jb, ib) while it is in cache.
        const int64_t T = 64;
        for (int64_t ib = 0; ib < cols; ib += T) {
            const int64_t ie = ib + T < cols ? ib + T : cols;
            for (int64_t jb = ib; jb < cols; jb += T) {
                const int64_t je = jb + T < cols ? jb + T : cols;
                for (int64_t i = ib; i < ie; i++)
                    for (int64_t j = jb > i ? jb : i; j < je; j++) H[i * cols + j] *= scale;
                for (int64_t j = jb; j < je; j++)
                    for (int64_t i = ib; i < ie && i < j; i++) H[j * cols + i] = H[i * cols + j];
            }
        }
    }
    if (h->flags & SDS_HESSIAN_WANDA) {
        sds_xsum_to_f64(h->sq_acc, h->sq, (size_t)cols);
        for (int64_t j = 0; j < cols; j++) h->wanda[j] = (float)(h->sq[j] / (double)h->nseq);
    }
    free_acc(h);
    h->done = 1;
    return SDS_OK;
}

float sds_hessian_entry(const sds_hessian *h, int64_t i, int64_t j) {
    SDS_ASSERT(h->acc && h->nseq > 0 && 0 <= i && i <= j && j < h->cols);
    // the packed upper triangle, row by row: row i starts at i cols - i (i - 1) / 2
    float v;
    sds_xsum_to_f32(h->acc + (i * h->cols - i * (i - 1) / 2) + (j - i), &v, 1);
    return v * (float)(2.0 / (double)h->nseq);
}

void sds_hessian_free(sds_hessian *h) {
    free_acc(h);
    free(h->H);
    free(h->sq);
    free(h->wanda);
    memset(h, 0, sizeof *h);
}

int sds_hessian_recon_terms(const float *H, int64_t cols, const float *W_local,
                            const float *Wp_local, int64_t rows_local, double *num, double *den) {
    *num = 0.0;
    *den = 0.0;
    if (rows_local <= 0) return SDS_OK;
    if (cols > INT_MAX)
        return sds_error_set(SDS_ERR_INPUT, "reconstruction error: %lld columns is too many",
                             (long long)cols);
    // Chunks of R rows: A = [W - Wp ; W] (2R, cols), T = A H; bounded memory for any row count.
    const int64_t R = 64;
    float *A = sds_malloc((size_t)(2 * R * cols) * sizeof(float), "the reconstruction error");
    float *T = sds_malloc((size_t)(2 * R * cols) * sizeof(float), "the reconstruction error");
    if (!A || !T) {
        free(A);
        free(T);
        return SDS_ERR_IO;
    }
    for (int64_t r0 = 0; r0 < rows_local; r0 += R) {
        const int64_t nr = rows_local - r0 < R ? rows_local - r0 : R;
        for (int64_t r = 0; r < nr; r++) {
            const float *w = W_local + (r0 + r) * cols, *wp = Wp_local + (r0 + r) * cols;
            float *d = A + r * cols, *a = A + (nr + r) * cols;
            for (int64_t j = 0; j < cols; j++) {
                d[j] = w[j] - wp[j];
                a[j] = w[j];
            }
        }
        // Row-major: T (2nr, cols) = A (2nr, cols) * H (cols, cols).
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(2 * nr), (int)cols, (int)cols,
                    1.0f, A, (int)cols, H, (int)cols, 0.0f, T, (int)cols);
        for (int64_t r = 0; r < 2 * nr; r++) {
            double s = 0.0;
            for (int64_t j = 0; j < cols; j++) s += (double)T[r * cols + j] * A[r * cols + j];
            if (r < nr)
                *num += s;
            else
                *den += s;
        }
    }
    free(A);
    free(T);
    return SDS_OK;
}

int sds_hessian_recon_error(const float *H, int64_t cols, const float *W, const float *Wp,
                            int64_t rows, double *err) {
    double num = 0.0, den = 0.0;
    SDS_TRY(sds_hessian_recon_terms(H, cols, W, Wp, rows, &num, &den));
    *err = den > 0.0 ? num / den : 0.0;
    return SDS_OK;
}

#include "hessian.h"

#include "sds_error.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

int sds_hessian_init(sds_hessian *h, int64_t cols, int32_t flags) {
    memset(h, 0, sizeof *h);
    if (cols < 1 || cols > INT_MAX)
        return sds_error_set(SDS_ERR_INPUT, "Hessian: %lld input columns is out of range",
                             (long long)cols);
    h->cols = cols;
    h->flags = flags;
    if (flags & SDS_HESSIAN_GRAM) {
        h->H = sds_calloc((size_t)(cols * cols), sizeof(float), "the Hessian");
        if (!h->H) return SDS_ERR_IO;
    }
    if (flags & SDS_HESSIAN_WANDA) {
        h->sq = sds_calloc((size_t)cols, sizeof(double), "the Wanda statistic");
        h->wanda = sds_calloc((size_t)cols, sizeof(float), "the Wanda statistic");
        if (!h->sq || !h->wanda) {
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
    const int64_t n = nseq * tokens, cols = h->cols;
    if (n > 0 && (h->flags & SDS_HESSIAN_GRAM))
        // X row-major (n, cols): H (upper, row-major) += X^T X. ssyrk does half of sgemm's flops
        // and took 0.55 of sgemm's time on X^T X here (a triangle of sgemm panels took 0.70).
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)n, 1.0f, X, (int)cols,
                    1.0f, h->H, (int)cols);
    if (h->flags & SDS_HESSIAN_WANDA) {
        for (int64_t t = 0; t < n; t++) {
            const float *x = X + t * cols;
            for (int64_t j = 0; j < cols; j++) h->sq[j] += (double)x[j] * x[j];
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
        for (int64_t i = 0; i < cols; i++)
            for (int64_t j = i; j < cols; j++) h->H[i * cols + j] *= scale;
        // Lower from upper in 64 x 64 tiles, so the strided reads stay in cache.
        const int64_t T = 64;
        for (int64_t ib = 0; ib < cols; ib += T)
            for (int64_t jb = 0; jb <= ib; jb += T)
                for (int64_t i = ib; i < ib + T && i < cols; i++)
                    for (int64_t j = jb; j < jb + T && j < i; j++)
                        h->H[i * cols + j] = h->H[j * cols + i];
    }
    if (h->flags & SDS_HESSIAN_WANDA)
        for (int64_t j = 0; j < cols; j++) h->wanda[j] = (float)(h->sq[j] / (double)h->nseq);
    h->done = 1;
    return SDS_OK;
}

void sds_hessian_free(sds_hessian *h) {
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

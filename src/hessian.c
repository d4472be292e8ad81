#include "hessian.h"

#include "sds_error.h"
#include "threads.h"

#include <cblas.h>
#include <errno.h>
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
    free(h->pend);
    free(h->pend_T);
    free(h->Hx);
    h->pend = h->Hx = NULL;
    h->pend_T = NULL;
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

static int gram_limit_error(void) {
    return sds_error_set(SDS_ERR_NUMERIC,
                         "Hessian: an entry of one sequence's X^T X is not finite or %.3g or "
                         "more: the calibration activations are too large for exact sums",
                         SDS_HESSIAN_XSUM_LIMIT);
}

typedef struct {
    const float *X;
    float *G;
    int cols, tokens;
} syrk_job;

static void *syrk_run(void *arg) {
    const syrk_job *j = arg;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, j->cols, j->tokens, 1.0f, j->X, j->cols,
                0.0f, j->G, j->cols);
    return NULL;
}

// The rows [i0, i1) of m Grams (upper, row-major) into the exact sums: a thread's share of the
// additions, so that no two threads touch the same sums.
typedef struct {
    sds_xsum_t *acc;
    const float *const *G;
    int32_t m;
    int64_t n, i0, i1;
    int bad;
} rows_job;

static void *rows_run(void *arg) {
    rows_job *j = arg;
    const int64_t n = j->n;
    for (int32_t q = 0; q < j->m; q++)
        for (int64_t i = j->i0; i < j->i1; i++)
            j->bad |= sds_xsum_add_f32(j->acc + (i * n - i * (i - 1) / 2), j->G[q] + i * n + i,
                                       (size_t)(n - i), SDS_HESSIAN_XSUM_LIMIT);
    return NULL;
}

// m sequences' Grams at once (X[i], T[i] tokens), each on its own thread with a single-threaded
// ssyrk into h->H (the first) or h->Hx; then the m Grams into the exact sums, the rows shared
// among m threads by their entries.
static int gram_batch(sds_hessian *h, int32_t m, const float *const *X, const int64_t *T) {
    enum { MAXB = SDS_HESSIAN_MAX_BATCH };
    SDS_ASSERT(m >= 1 && m <= MAXB);
    const int64_t n = h->cols;
    syrk_job job[MAXB];
    rows_job rj[MAXB];
    memset(rj, 0, sizeof rj);
    const float *G[MAXB];
    for (int32_t i = 0; i < m; i++) {
        G[i] = i ? h->Hx + (i - 1) * n * n : h->H;
        job[i] = (syrk_job){X[i], (float *)G[i], (int)n, (int)T[i]};
    }
    const int threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    sds_threads_run(m, syrk_run, job, sizeof job[0]);
    openblas_set_num_threads(threads);
    // rows [i0, i1) of thread t: about t / m of the n (n + 1) / 2 entries before i0
    const double total = (double)n * (double)(n + 1) / 2.0;
    int64_t i = 0;
    double before = 0.0;
    for (int32_t t = 0; t < m; t++) {
        rj[t] = (rows_job){h->acc, G, m, n, i, i, 0};
        const double want = total * (double)(t + 1) / (double)m;
        while (i < n && (t == m - 1 || before + (double)(n - i) / 2.0 < want))
            before += (double)(n - i++);
        rj[t].i1 = i;
    }
    sds_threads_run(m, rows_run, rj, sizeof rj[0]);
    int bad = 0;
    for (int32_t t = 0; t < m; t++) bad |= rj[t].bad;
    return bad ? gram_limit_error() : SDS_OK;
}

int sds_hessian_batch(sds_hessian *h, int64_t max_tokens, int32_t k) {
    SDS_ASSERT(!h->done && h->npend == 0 && max_tokens > 0);
    if (k > SDS_HESSIAN_MAX_BATCH) k = SDS_HESSIAN_MAX_BATCH;
    if (!(h->flags & SDS_HESSIAN_GRAM) || h->batch || k < 2 || h->cols > SDS_HESSIAN_BATCH_MAX_COLS)
        return SDS_OK;
    const size_t n = (size_t)h->cols, w = (size_t)(k - 1);
    h->pend = sds_malloc(w * (size_t)max_tokens * n * sizeof(float), "the Hessian's batch");
    h->pend_T = sds_malloc(w * sizeof(int64_t), "the Hessian's batch");
    h->Hx = sds_malloc(w * n * n * sizeof(float), "the Hessian's batch");
    if (!h->pend || !h->pend_T || !h->Hx) return SDS_ERR_IO;
    h->pend_cap = max_tokens;
    h->batch = k;
    return SDS_OK;
}

int sds_hessian_batch_size(const char *env, int threads, int32_t *k) {
    if (env) {
        char *end;
        errno = 0;
        const long v = strtol(env, &end, 10);
        if (end == env || *end || errno || v < 1 || v > SDS_HESSIAN_MAX_BATCH)
            return sds_error_set(SDS_ERR_USAGE,
                                 "SDS_GRAM_BATCH=%s: expected an integer from 1 to %d (the "
                                 "sequences whose Grams are computed at once; 1: one at a time)",
                                 env, SDS_HESSIAN_MAX_BATCH);
        *k = (int32_t)v;
        return SDS_OK;
    }
    *k = threads < 1 ? 1 : threads > SDS_HESSIAN_MAX_BATCH ? SDS_HESSIAN_MAX_BATCH : threads;
    return SDS_OK;
}

int sds_hessian_flush(sds_hessian *h) {
    if (h->npend == 0) return SDS_OK;
    const float *X[SDS_HESSIAN_MAX_BATCH];
    for (int32_t i = 0; i < h->npend; i++) X[i] = h->pend + i * h->pend_cap * h->cols;
    const int32_t m = h->npend;
    h->npend = 0;
    return gram_batch(h, m, X, h->pend_T);
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
        if (tokens > 0 && (h->flags & SDS_HESSIAN_GRAM) && h->batch) {
            SDS_ASSERT(tokens <= h->pend_cap);
            if (h->npend < h->batch - 1) {
                memcpy(h->pend + h->npend * h->pend_cap * cols, Xs,
                       (size_t)(tokens * cols) * sizeof(float));
                h->pend_T[h->npend++] = tokens;
            } else {
                const float *Xb[SDS_HESSIAN_MAX_BATCH];
                int64_t Tb[SDS_HESSIAN_MAX_BATCH];
                for (int32_t i = 0; i < h->npend; i++) {
                    Xb[i] = h->pend + i * h->pend_cap * cols;
                    Tb[i] = h->pend_T[i];
                }
                Xb[h->npend] = Xs;
                Tb[h->npend] = tokens;
                const int32_t m = h->npend + 1;
                h->npend = 0;
                const int rc = gram_batch(h, m, Xb, Tb);
                if (rc != SDS_OK) return rc;
            }
        } else if (tokens > 0 && (h->flags & SDS_HESSIAN_GRAM)) {
            // X_s row-major (tokens, cols): this sequence's X_s^T X_s (upper, row-major) in fp32,
            // then into the exact sum. ssyrk reached ~0.8 of sgemm's GFLOP/s on X^T X at 768
            // columns and 2 threads in paired runs (hence the batches above); triangles of
            // ssyrk + sgemm tiles (OpenBLAS-threaded, or single-threaded tiles on our own
            // threads) were slower.
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)tokens, 1.0f, Xs,
                        (int)cols, 0.0f, h->H, (int)cols);
            if (sds_xsum_add_upper_f32(h->acc, h->H, cols, SDS_HESSIAN_XSUM_LIMIT))
                return gram_limit_error();
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
    SDS_ASSERT(!h->done && h->npend == 0);
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

#include "sparsegpt.h"

#include "sds_error.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// LAPACK (Fortran, column-major); the trailing size_t is gfortran's hidden length of `uplo`.
extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);
extern void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);

int64_t sds_sparsegpt_dead_inputs(float *H, int64_t cols, uint8_t *dead) {
    int64_t count = 0;
    for (int64_t j = 0; j < cols; j++) {
        int is_dead = H[j * cols + j] == 0.0f;
        if (is_dead) H[j * cols + j] = 1.0f;
        if (dead) dead[j] = (uint8_t)is_dead;
        count += is_dead;
    }
    return count;
}

void sds_sparsegpt_zero_dead(float *W_local, int64_t rows_local, int64_t cols,
                             const uint8_t *dead) {
    for (int64_t r = 0; r < rows_local; r++)
        for (int64_t j = 0; j < cols; j++)
            if (dead[j]) W_local[r * cols + j] = 0.0f;
}

// Precision: fp32 LAPACK (spotrf, spotri, spotrf), as the reference (torch fp32 cholesky,
// cholesky_inverse, cholesky upper). The damped H has condition number at most
// (lambda_max + d) / d <= cols / percdamp, the same for both; fp32 keeps memory at one cols^2
// float array (the retry restores H from the untouched triangle instead of from a copy),
// which matters at cols = 28672 (OPT-30B fc2: 3.3 GB), and it is what ScaLAPACK's ps* routines
// will do in the distributed path, so 1 rank and P ranks agree. On the golden files (one of
// them rank-deficient) the masks equal the fp32 reference's everywhere and the weights agree to
// ~5e-6 of max |W|, so double precision would buy nothing measurable there.
//
// Layout: H is row-major and symmetric, so LAPACK (column-major) sees the same matrix. All
// three calls use uplo = 'L' (column-major lower = row-major upper): the row-major strict lower
// triangle keeps the original H, and the final column-major lower factor L (H^-1 = L L^T) read
// row-major is U = L^T, the upper factor with H^-1 = U^T U.
static int factor_once(float *H, int64_t cols, const float *diag, float damp) {
    const int n = (int)cols;
    for (int64_t i = 0; i < cols; i++) {
        float *row = H + i * cols;
        for (int64_t j = i + 1; j < cols; j++) row[j] = H[j * cols + i]; // from the kept triangle
        row[i] = diag[i] + damp;
    }
    int info = 0;
    spotrf_("L", &n, H, &n, &info, 1);
    if (info != 0) return info;
    spotri_("L", &n, H, &n, &info, 1);
    if (info != 0) return info;
    spotrf_("L", &n, H, &n, &info, 1);
    return info;
}

int sds_sparsegpt_factor(float *H, int64_t cols, double percdamp, int32_t max_tries,
                         sds_sparsegpt_info *info) {
    if (cols < 1 || cols > INT_MAX)
        return sds_error_set(SDS_ERR_INPUT, "SparseGPT: %lld input columns is out of range",
                             (long long)cols);
    SDS_ASSERT(max_tries >= 1 && percdamp >= 0.0);
    float *diag = sds_malloc((size_t)cols * sizeof(float), "the Hessian diagonal");
    if (!diag) return SDS_ERR_IO;
    double mean = 0.0;
    for (int64_t j = 0; j < cols; j++) {
        diag[j] = H[j * cols + j];
        mean += diag[j];
        if (!isfinite(diag[j]) || diag[j] < 0.0f) {
            const double bad = diag[j];
            free(diag);
            return sds_error_set(SDS_ERR_NUMERIC,
                                 "SparseGPT: Hessian diagonal entry %lld is %g (expected finite "
                                 ">= 0: are the calibration activations finite?)",
                                 (long long)j, bad);
        }
    }
    mean /= (double)cols;
    int rc = -1;
    int32_t tries = 0;
    double pd = percdamp;
    for (; tries < max_tries; tries++, pd *= SDS_SPARSEGPT_DAMP_GROW) {
        rc = factor_once(H, cols, diag, (float)(pd * mean));
        if (rc == 0) break;
        if (rc < 0) break; // an argument error: a bug
    }
    free(diag);
    if (rc < 0)
        return sds_error_set(SDS_ERR_INTERNAL, "SparseGPT: LAPACK rejected argument %d", -rc);
    if (rc > 0)
        return sds_error_set(SDS_ERR_NUMERIC,
                             "SparseGPT: Cholesky factorisation of the damped Hessian (%lld "
                             "columns) failed %d times, last with damping %g x mean(diag H)",
                             (long long)cols, (int)tries, pd / SDS_SPARSEGPT_DAMP_GROW);
    for (int64_t i = 1; i < cols; i++) memset(H + i * cols, 0, (size_t)i * sizeof(float));
    if (info) {
        info->percdamp = pd;
        info->damp = pd * mean;
        info->tries = tries + 1;
    }
    return SDS_OK;
}

int sds_sparsegpt_prepare(float *H, int64_t cols, float *W_local, int64_t rows_local,
                          double percdamp, int32_t max_tries, sds_sparsegpt_info *info) {
    uint8_t *dead = sds_malloc((size_t)(cols > 0 ? cols : 1), "dead-input flags");
    if (!dead) return SDS_ERR_IO;
    int64_t ndead = sds_sparsegpt_dead_inputs(H, cols, dead);
    if (ndead > 0 && W_local) sds_sparsegpt_zero_dead(W_local, rows_local, cols, dead);
    free(dead);
    SDS_TRY(sds_sparsegpt_factor(H, cols, percdamp, max_tries, info));
    if (info) info->dead = ndead;
    return SDS_OK;
}

int sds_sparsegpt_panel_local(void *ctx, int64_t i1, int64_t i2, const float **panel, int64_t *ld) {
    const sds_sparsegpt_local *l = ctx;
    SDS_ASSERT(i1 >= 0 && i1 < i2 && i2 <= l->cols);
    *panel = l->U + i1 * l->cols + i1;
    *ld = l->cols;
    return SDS_OK;
}

int sds_sparsegpt_select_local(void *ctx, const float *scores_local, int64_t n_local,
                               int64_t n_global, int64_t k, float *value) {
    (void)ctx;
    return sds_select_kth_local(NULL, scores_local, n_local, n_global, k, value);
}

// Columns per sub-block. Inside a block, updates run column by column only within a sub-block;
// the block's columns right of it get them as one sgemm over all rows (the reference's lazy
// batch, one level down: the same arithmetic in another order, and BLAS-3 instead of one
// rank-1 update per column). A multiple of m, so that no N:M group straddles two sub-blocks.
#define SUB 32
// Row chunks on threads start at multiples of this (as the grid's row shards, mpi/prune.c).
#define CHUNK_ALIGN SDS_SPARSEGPT_ROW_ALIGN
static int64_t sub_block_width(sds_pattern p, int64_t B) {
    int64_t b = SUB;
    if (p.kind == SDS_PATTERN_NM) b = ((b + p.m - 1) / p.m) * p.m;
    return b < B ? b : B;
}

// w[0..SUB) -= err * t[0..SUB): a fixed trip count, which GCC vectorises at -O2.
static void update_sub(float *restrict w, const float *restrict t, float err) {
    for (int j = 0; j < SUB; j++) w[j] -= err * t[j];
}

// Sweeps one row through columns [j1, j2) of the block: w is the row's slice of the block,
// P the panel (ld), dsq[i] = diag(U)[i1+i]^2, mask preset for unstructured patterns; the row's
// errors go to err_row. Updates reach w[.. j2) only. A sub-block of width SUB goes through
// sweep_tri instead, which does the same arithmetic.
static void sweep_row(float *restrict w, const float *restrict P, int64_t ld,
                      const float *restrict dsq, int64_t j1, int64_t j2, sds_pattern p,
                      uint8_t *restrict mask, float *restrict err_row) {
    float score[SDS_PATTERN_MAX_M];
    for (int64_t i = j1; i < j2; i++) {
        if (p.kind == SDS_PATTERN_NM && i % p.m == 0) {
            for (int32_t j = 0; j < p.m; j++) score[j] = (w[i + j] * w[i + j]) / dsq[i + j];
            sds_pattern_nm_group(score, p.n, p.m, mask + i);
        }
        const float *u = P + i * ld; // U[i1+i, i1 ..]
        const float wi = w[i];
        const float q = mask[i] ? 0.0f : wi;
        const float err = (wi - q) / u[i];
        err_row[i] = err;
        if (err != 0.0f)
            for (int64_t j = i + 1; j < j2; j++) w[j] -= err * u[j];
        w[i] = q;
    }
}

// Rows swept together by sweep_tri: each row's column loop is a chain of dependent steps
// (load, divide, vector update), so independent rows side by side keep the core busy.
#define TRI_ROWS 4
// SUB zeros: where a column's error is 0, the update w - (+0 * +0) returns w bit for bit (-0
// included), as skipping it would, without a branch on the mask.
static _Alignas(64) const float zero_sub[SUB];

// sweep_row over the SUB-wide sub-block [j1, j1 + SUB) for nr <= TRI_ROWS rows at once (row r
// at W + r * cols, mask + r * cols, E + r * count). tri (SUB x SUB) is U's diagonal sub-block
// with zeros on and below the diagonal, so that every column's update is one full-width
// vector operation (w - err * 0 leaves w unchanged). Each row's arithmetic is sweep_row's, in
// the same order: the same bits. Cloned per instruction set (the vector width of update_sub);
// there is no FMA contraction in ISO C mode, so every clone rounds each multiply and subtract
// as the baseline does.
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
sweep_tri(float *restrict W, int64_t cols, int64_t nr, const float *restrict P, int64_t ld,
          const float *restrict dsq, int64_t j1, sds_pattern p, const float *restrict tri,
          uint8_t *restrict mask, float *restrict E, int64_t count) {
    float score[SDS_PATTERN_MAX_M];
    for (int64_t i = j1; i < j1 + SUB; i++) {
        if (p.kind == SDS_PATTERN_NM && i % p.m == 0)
            for (int64_t r = 0; r < nr; r++) {
                const float *w = W + r * cols;
                for (int32_t j = 0; j < p.m; j++) score[j] = (w[i + j] * w[i + j]) / dsq[i + j];
                sds_pattern_nm_group(score, p.n, p.m, mask + r * cols + i);
            }
        const float ui = P[i * ld + i];
        const float *t = tri + (i - j1) * SUB;
        for (int64_t r = 0; r < nr; r++) {
            float *w = W + r * cols;
            const float wi = w[i];
            // q = mask ? +0 : wi, without a branch (mask is 0 or 1)
            uint32_t bits;
            memcpy(&bits, &wi, sizeof bits);
            bits &= (uint32_t)mask[r * cols + i] - 1u;
            float q;
            memcpy(&q, &bits, sizeof q);
            const float err = (wi - q) / ui;
            E[r * count + i] = err;
            // err == 0 ? (+0, zero_sub) : (err, t), in bit operations: a branch here would
            // follow the mask and miss half the time
            const uintptr_t keep = (uintptr_t)0 - (uintptr_t)(err != 0.0f); // all ones or 0
            memcpy(&bits, &err, sizeof bits);
            bits &= (uint32_t)keep;
            float e;
            memcpy(&e, &bits, sizeof e);
            const float *tt =
                (const float *)(((uintptr_t)t & keep) | ((uintptr_t)zero_sub & ~keep));
            update_sub(w + j1, tt, e);
            w[i] = q;
        }
    }
}

// Rows [0, rows) of W (ld cols, the block's columns [i1, i2)) through one block: the column
// loop of every sub-block of width b, its in-block BLAS update, then the lazy update of the
// columns right of the block. mask and E (ld i2 - i1) belong to the same rows. Each row's
// arithmetic does not depend on the others: a caller may split the rows among threads, at
// multiples of CHUNK_ALIGN so that BLAS groups the rows as one call over all of them would.
static void sweep_rows(float *W, int64_t rows, int64_t cols, int64_t i1, int64_t i2, const float *P,
                       int64_t ld, const float *dsq, int64_t b, sds_pattern p, const float *tri,
                       uint8_t *mask, float *E) {
    const int64_t count = i2 - i1;
    for (int64_t j1 = 0, k = 0; j1 < count; j1 += b, k++) {
        const int64_t j2 = j1 + b < count ? j1 + b : count;
        if (j2 - j1 == SUB)
            for (int64_t r = 0; r < rows; r += TRI_ROWS)
                sweep_tri(W + r * cols + i1, cols, rows - r < TRI_ROWS ? rows - r : TRI_ROWS, P, ld,
                          dsq, j1, p, tri + k * SUB * SUB, mask + r * cols + i1, E + r * count,
                          count);
        else
            for (int64_t r = 0; r < rows; r++)
                sweep_row(W + r * cols + i1, P, ld, dsq, j1, j2, p, mask + r * cols + i1,
                          E + r * count);
        // W[:, i1+j2 : i2] (rows, count - j2; ld cols)
        //     -= E[:, j1:j2] (rows, j2 - j1; ld count) * U[i1+j1 : i1+j2, i1+j2 : i2]
        if (j2 < count && rows > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(count - j2),
                        (int)(j2 - j1), -1.0f, E + j1, (int)count, P + j1 * ld + j2, (int)ld, 1.0f,
                        W + i1 + j2, (int)cols);
    }
    // Lazy BLAS-3 update of the columns right of the block, all row-major:
    // W[:, i2:] (rows, cols - i2; ld cols) -= E (rows, count; ld count)
    //                                         * U[i1:i2, i2:] (count, cols - i2; ld ld)
    if (i2 < cols && rows > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(cols - i2),
                    (int)count, -1.0f, E, (int)count, P + count, (int)ld, 1.0f, W + i2, (int)cols);
}

int sds_sparsegpt_sweep(float *W_local, int64_t rows_local, int64_t rows_global, int64_t cols,
                        sds_pattern p, int64_t B, sds_panel_fn panel, sds_select_fn select,
                        void *ctx, uint8_t *mask_local) {
    SDS_TRY(sds_pattern_check(p, rows_global, cols, "the weight"));
    SDS_ASSERT(rows_local >= 0 && rows_local <= rows_global && B >= 1);
    if (p.kind == SDS_PATTERN_NM && B % p.m != 0)
        return sds_error_set(SDS_ERR_USAGE,
                             "--sparsity %d:%d: the SparseGPT block of %lld columns is not a "
                             "multiple of %d",
                             p.n, p.m, (long long)B, p.m);
    if (cols > INT_MAX || rows_local > INT_MAX)
        return sds_error_set(SDS_ERR_INPUT, "SparseGPT: weight shard (%lld, %lld) is too large",
                             (long long)rows_local, (long long)cols);
    const size_t nblock = (size_t)(rows_local > 0 ? rows_local : 1) * (size_t)B;
    float *E = sds_malloc(nblock * sizeof(float), "the SparseGPT block errors");
    float *scores = sds_malloc(nblock * sizeof(float), "the SparseGPT block scores");
    float *dsq = sds_malloc((size_t)B * sizeof(float), "the SparseGPT block diagonal");
    // the sub-blocks' triangles of one block: at most B / SUB + 1 of them
    float *tri = sds_malloc((size_t)(B / SUB + 1) * SUB * SUB * sizeof(float),
                            "the SparseGPT block triangles");
    // Threads: as many as BLAS has, when there are rows for each (at one rank per core, 1).
    const int nthreads = openblas_get_num_threads();
    const int64_t nchunks =
        nthreads > 1
            ? rows_local / (2 * CHUNK_ALIGN) < nthreads ? rows_local / (2 * CHUNK_ALIGN) : nthreads
            : 1;
    int rc = SDS_OK;
    if (!E || !scores || !dsq || !tri) rc = SDS_ERR_IO;
    memset(mask_local, 0, (size_t)(rows_local * cols));
    for (int64_t i1 = 0; i1 < cols && rc == SDS_OK; i1 += B) {
        const int64_t i2 = i1 + B < cols ? i1 + B : cols, count = i2 - i1;
        const float *P = NULL;
        int64_t ld = 0;
        rc = panel(ctx, i1, i2, &P, &ld);
        if (rc != SDS_OK) break;
        for (int64_t i = 0; i < count; i++) {
            const float d = P[i * ld + i];
            if (!(d > 0.0f) || !isfinite(d)) {
                rc = sds_error_set(SDS_ERR_NUMERIC,
                                   "SparseGPT: diagonal %lld of the inverse Hessian factor is %g",
                                   (long long)(i1 + i), (double)d);
                break;
            }
            dsq[i] = d * d;
        }
        if (rc != SDS_OK) break;
        if (p.kind == SDS_PATTERN_UNSTRUCTURED) {
            // One threshold over the whole (rows_global, count) block, as the reference. The
            // rows' scores and masks on the chunks' threads (element-wise: the same values).
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nchunks > 1)
            for (int64_t r = 0; r < rows_local; r++) {
                const float *w = W_local + r * cols + i1;
                for (int64_t i = 0; i < count; i++) scores[r * count + i] = (w[i] * w[i]) / dsq[i];
            }
            const int64_t n_global = rows_global * count;
            float thresh = 0.0f;
            rc = select(ctx, scores, rows_local * count, n_global, sds_pattern_kth(n_global, p.p),
                        &thresh);
            if (rc != SDS_OK) break;
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nchunks > 1)
            for (int64_t r = 0; r < rows_local; r++) {
                const float *s = scores + r * count;
                uint8_t *m = mask_local + r * cols + i1;
                for (int64_t i = 0; i < count; i++) m[i] = s[i] <= thresh;
            }
        }
        const int64_t b = sub_block_width(p, B);
        // U's diagonal sub-blocks (tri[k] for sub-block k), shared read-only by the chunks
        for (int64_t j1 = 0, k = 0; j1 < count; j1 += b, k++)
            if ((j1 + b < count ? b : count - j1) == SUB) // the width sweep_rows sees
                for (int64_t i = 0; i < SUB; i++)
                    for (int64_t j = 0; j < SUB; j++)
                        tri[(k * SUB + i) * SUB + j] = j > i ? P[(j1 + i) * ld + j1 + j] : 0.0f;
        if (nchunks > 1) {
            // rows in chunks of whole CHUNK_ALIGN-row groups, each on its own thread with
            // single-threaded BLAS
            openblas_set_num_threads(1);
#pragma omp parallel for schedule(static, 1) num_threads(nthreads)
            for (int64_t c = 0; c < nchunks; c++) {
                const int64_t r0 = rows_local * c / nchunks / CHUNK_ALIGN * CHUNK_ALIGN;
                const int64_t r1 = c + 1 == nchunks
                                       ? rows_local
                                       : rows_local * (c + 1) / nchunks / CHUNK_ALIGN * CHUNK_ALIGN;
                sweep_rows(W_local + r0 * cols, r1 - r0, cols, i1, i2, P, ld, dsq, b, p, tri,
                           mask_local + r0 * cols, E + r0 * count);
            }
            openblas_set_num_threads(nthreads);
        } else {
            sweep_rows(W_local, rows_local, cols, i1, i2, P, ld, dsq, b, p, tri, mask_local, E);
        }
    }
    free(E);
    free(scores);
    free(dsq);
    free(tri);
    return rc;
}

int sds_sparsegpt_prune(float *W, int64_t rows, int64_t cols, float *H, sds_pattern p,
                        sds_sparsegpt_info *info, uint8_t *mask) {
    SDS_TRY(sds_pattern_check(p, rows, cols, "the weight"));
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(W[i]))
            return sds_error_set(SDS_ERR_INPUT,
                                 "SparseGPT: the weight holds NaN or Inf (row "
                                 "%lld, column %lld)",
                                 (long long)(i / cols), (long long)(i % cols));
    SDS_TRY(sds_sparsegpt_prepare(H, cols, W, rows, SDS_SPARSEGPT_PERCDAMP, SDS_SPARSEGPT_MAX_TRIES,
                                  info));
    sds_sparsegpt_local ctx = {.U = H, .cols = cols};
    return sds_sparsegpt_sweep(W, rows, rows, cols, p, SDS_SPARSEGPT_BLOCK,
                               sds_sparsegpt_panel_local, sds_sparsegpt_select_local, &ctx, mask);
}

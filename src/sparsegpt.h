// SparseGPT one-shot pruning (SPEC 2.5): the reference algorithm of IST-DASLab/sparsegpt
// (blocksize 128, percdamp 0.01), split so that the column sweep runs on a shard of rows.
//
// Preparation (whole matrix, one process): dead inputs, damping with retries, and
// U = upper Cholesky factor of H^-1 (H^-1 = U^T U), U stored row-major in place of H.
// Sweep (rows sharded): needs only the B-row panels U[i1:i2, i1:cols], supplied block by block
// by a callback, and, for unstructured patterns, the exact k-th smallest score of each
// (rows_global x B) block over all shards, supplied by a second callback.
#pragma once
#include "pattern.h"

#include <stdint.h>

#define SDS_SPARSEGPT_BLOCK     128  // columns per block (the reference's blocksize)
#define SDS_SPARSEGPT_PERCDAMP  0.01 // damping relative to mean(diag H)
#define SDS_SPARSEGPT_DAMP_GROW 10.0 // damping factor between factorisation attempts
#define SDS_SPARSEGPT_MAX_TRIES 6    // attempts: percdamp 0.01 .. 1000 (then a numeric error)
// Row shards (ranks, mpi/prune.c) and row chunks (threads, the sweep) start at multiples of
// this many rows, so that the sweep's sgemms group the rows as one call over all of them would
// and the weights are the same bits at any rank or thread count. OpenBLAS's sgemm groups the
// rows (its N) in kernel-dependent units, and a boundary inside one changes the last bits of
// the rows around it: 32 rows suffice for the SkylakeX and Cooperlake kernels, the Haswell and
// Zen kernels (AVX2) need multiples of 24 (measured with OpenBLAS 0.3.21 on an AMD EPYC, Zen 3:
// shards at 128 rows changed rows 120-299 of 300; at any multiple of 24 none). 96 is both.
#define SDS_SPARSEGPT_ROW_ALIGN 96

typedef struct {
    int64_t dead;    // inputs with H_jj == 0 (their weights are zeroed)
    double percdamp; // relative damping actually used (0.01 unless a factorisation failed)
    double damp;     // absolute value added to the diagonal: percdamp * mean(diag H)
    int32_t tries;   // factorisation attempts (1 = the first one worked)
} sds_sparsegpt_info;

// Step 1: where H_jj == 0 sets H_jj = 1 and dead[j] = 1 (dead may be NULL); returns the count.
// H (cols, cols) row-major, full symmetric.
int64_t sds_sparsegpt_dead_inputs(float *H, int64_t cols, uint8_t *dead);
// Step 1 on the weight shard: W_local[:, j] = 0 where dead[j].
void sds_sparsegpt_zero_dead(float *W_local, int64_t rows_local, int64_t cols, const uint8_t *dead);
// Steps 2-3: adds percdamp * mean(diag H) to the diagonal and overwrites H (cols, cols),
// row-major, full symmetric, with U (row-major, upper triangle; strict lower set to 0).
// If a factorisation fails, retries from the original H with percdamp multiplied by
// SDS_SPARSEGPT_DAMP_GROW, at most max_tries attempts in all; numeric error after the last.
// info (may be NULL) receives the damping used.
int sds_sparsegpt_factor(float *H, int64_t cols, double percdamp, int32_t max_tries,
                         sds_sparsegpt_info *info);
// Steps 1-3 for one process: dead inputs (zeroing W_local's columns; W_local may be NULL when
// rows_local == 0), then sds_sparsegpt_factor. H becomes U.
int sds_sparsegpt_prepare(float *H, int64_t cols, float *W_local, int64_t rows_local,
                          double percdamp, int32_t max_tries, sds_sparsegpt_info *info);

// Supplies the panel U[i1:i2, i1:cols] (global indices) for the block of columns [i1, i2):
// U[r][c] for i1 <= r < i2, r <= c < cols is (*panel)[(r - i1) * (*ld) + (c - i1)]; entries
// below the diagonal are not read. The pointer stays valid until the next call.
typedef int (*sds_panel_fn)(void *ctx, int64_t i1, int64_t i2, const float **panel, int64_t *ld);

// Step 4 on a shard of rows. W_local (rows_local, cols) row-major (local) is pruned and
// updated in place; mask_local (rows_local, cols) receives 1 where the pattern pruned a weight.
// rows_global (global) is the row count over all shards: the unstructured threshold of block
// [i1, i2) is the value at index floor(rows_global * (i2 - i1) * p) of the sorted scores
// W^2 / diag(U)^2 over all shards, and every weight with score <= it is pruned.
// panel and select are called once per block in column order, on every shard (also with
// rows_local == 0), with the same ctx; select only for unstructured patterns.
// B is the block width (SDS_SPARSEGPT_BLOCK); for N:M it must be a multiple of m.
int sds_sparsegpt_sweep(float *W_local, int64_t rows_local, int64_t rows_global, int64_t cols,
                        sds_pattern p, int64_t B, sds_panel_fn panel, sds_select_fn select,
                        void *ctx, uint8_t *mask_local);

// Single-process callbacks: ctx is a sds_sparsegpt_local pointing at the whole U.
typedef struct {
    const float *U; // (cols, cols) row-major, from sds_sparsegpt_prepare
    int64_t cols;
} sds_sparsegpt_local;
int sds_sparsegpt_panel_local(void *ctx, int64_t i1, int64_t i2, const float **panel, int64_t *ld);
int sds_sparsegpt_select_local(void *ctx, const float *scores_local, int64_t n_local,
                               int64_t n_global, int64_t k, float *value);

// The whole method on one process: prepare (H becomes U) then sweep with the local callbacks.
// W (rows, cols) row-major is pruned in place; mask (rows, cols) 1 = pruned by the pattern
// (dead inputs' weights are zero but flagged only where the pattern selected them).
int sds_sparsegpt_prune(float *W, int64_t rows, int64_t cols, float *H, sds_pattern p,
                        sds_sparsegpt_info *info, uint8_t *mask);

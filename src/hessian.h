// Calibration statistics of one linear sublayer's input (SPEC 2.2):
//   Hessian  H   = (2/n) * sum over sequences s of X_s^T X_s      (cols, cols), fp32
//   Wanda    s_j = (1/n) * sum over sequences of sum over tokens of x_j^2   (cols)
// where X_s is (tokens, cols) row-major (one row per token) and n counts sequences.
// Lifecycle: init, add (any number of times), finish, then read H / wanda, free.
// Distributed use: every rank adds its own sequences, the raw sums `H` (upper triangle),
// `sq` and `nseq` are summed across ranks, then each rank (or the owner) calls finish.
#pragma once
#include <stdint.h>

enum {
    SDS_HESSIAN_GRAM = 1, // accumulate H
    SDS_HESSIAN_WANDA = 2 // accumulate the Wanda statistic
};

typedef struct {
    int64_t cols;  // input features
    int64_t nseq;  // sequences added so far
    int32_t flags; // SDS_HESSIAN_GRAM | SDS_HESSIAN_WANDA
    int32_t done;  // finish() was called
    float *H;      // (cols, cols) row-major. Before finish: raw sum of X^T X, upper triangle
                   // only (j >= i). After finish: the full symmetric H, scaled by 2/nseq.
    double *sq;    // (cols) raw sum of x_j^2 (double: sums of up to ~10^6 squares)
    float *wanda;  // (cols) s_j after finish
} sds_hessian;

// Allocates zeroed accumulators. Returns a status code (out of memory: message says so).
int sds_hessian_init(sds_hessian *h, int64_t cols, int32_t flags);
// Adds nseq sequences of `tokens` tokens each: X is (nseq, tokens, cols) row-major. One BLAS-3
// call (ssyrk) over all nseq * tokens rows: sum_s X_s^T X_s is X_all^T X_all.
int sds_hessian_add(sds_hessian *h, const float *X, int64_t nseq, int64_t tokens);
// Scales by the sequence count and fills the lower triangle. Input error if nothing was added.
int sds_hessian_finish(sds_hessian *h);
void sds_hessian_free(sds_hessian *h);

// Relative reconstruction error of a pruned weight from the Hessian (SPEC 2.5's objective):
//   |X (W - Wp)^T|^2 / |X W^T|^2 = tr((W - Wp) H (W - Wp)^T) / tr(W H W^T)
// (the factor 2/n of H cancels). H (cols, cols) row-major, full symmetric, as after finish
// (not the factor SparseGPT leaves in its place). W_local, Wp_local (rows_local, cols)
// row-major. fp32 products (sgemm), summed in double.
// sds_hessian_recon_terms gives numerator and denominator for a row shard, to be summed
// across shards; sds_hessian_recon_error their ratio (0 when W H W^T is 0).
int sds_hessian_recon_terms(const float *H, int64_t cols, const float *W_local,
                            const float *Wp_local, int64_t rows_local, double *num, double *den);
int sds_hessian_recon_error(const float *H, int64_t cols, const float *W, const float *Wp,
                            int64_t rows, double *err);

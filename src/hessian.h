// Calibration statistics of one linear sublayer's input (SPEC 2.2):
//   Hessian  H   = (2/n) * sum over sequences s of X_s^T X_s      (cols, cols), fp32
//   Wanda    s_j = (1/n) * sum over sequences of sum over tokens of x_j^2   (cols)
// where X_s is (tokens, cols) row-major (one row per token) and n counts sequences.
// Lifecycle: init, add (any number of times), finish, then read H / wanda, free.
// Exact sums: each sequence's X_s^T X_s is computed in fp32 (ssyrk) and added to a 128-bit
// fixed-point accumulator (src/xsum.h), as are its sums of squares; so the statistics do not
// depend on the order the sequences come in, nor on how they are spread over ranks.
// Distributed use: every rank adds its own sequences, the accumulators `acc` and `sq_acc` are
// summed across ranks (mpi/xsum_mpi.h: sds_hessian_allreduce), then each rank calls finish.
#pragma once
#include "threads.h"
#include "xsum.h"

#include <stdint.h>

// The largest entry of one sequence's Gram (or sum of squares) that the exact sums take: room
// for 2^16 sequences below 2^62 (src/xsum.h). At 2048 tokens, activations up to ~1.6e5.
#define SDS_HESSIAN_XSUM_LIMIT 70368744177664.0 // 2^46
// The most sequences sds_hessian_batch computes at once (threads beyond it are not used).
#define SDS_HESSIAN_MAX_BATCH SDS_THREADS_MAX
// The widest Gram sds_hessian_batch batches: wider ones keep OpenBLAS's threaded ssyrk, which
// reaches 0.87 of its sgemm at 3072 columns and 2 threads (bench/bench_gram.c) while a batch
// would hold k - 1 more (cols x cols) matrices (3 x 3.3 GB at OPT-30B's fc2 input, 4 threads).
#define SDS_HESSIAN_BATCH_MAX_COLS 2048

enum {
    SDS_HESSIAN_GRAM = 1, // accumulate H
    SDS_HESSIAN_WANDA = 2 // accumulate the Wanda statistic
};

typedef struct {
    int64_t cols;  // input features
    int64_t nseq;  // sequences added so far
    int32_t flags; // SDS_HESSIAN_GRAM | SDS_HESSIAN_WANDA
    int32_t done;  // finish() was called
    float *H;      // (cols, cols) row-major. Before finish: scratch (one sequence's X^T X).
                   // After finish: the full symmetric H, scaled by 2/nseq.
    double *sq;    // (cols) scratch: one sequence's sums of x_j^2
    float *wanda;  // (cols) s_j after finish
    // exact sums until finish (then freed): the upper triangle of sum_s X_s^T X_s, row by row,
    // cols (cols + 1) / 2 entries; and sum of x_j^2 (cols)
    sds_xsum_t *acc, *sq_acc;
    // sds_hessian_batch: the Grams of `batch` sequences at once, one per thread (0: off).
    // Up to batch - 1 sequences wait, copied, in pend (pend_cap tokens each, npend of them,
    // their token counts in pend_T), and the other threads' fp32 scratch Hx ((batch - 1) x
    // cols x cols)
    int32_t batch, npend;
    int64_t pend_cap;
    int64_t *pend_T;
    float *pend, *Hx;
} sds_hessian;

// Packed length of h->acc: cols (cols + 1) / 2.
int64_t sds_hessian_packed_len(const sds_hessian *h);
// Allocates zeroed accumulators. Returns a status code (out of memory: message says so).
int sds_hessian_init(sds_hessian *h, int64_t cols, int32_t flags);
// Adds nseq sequences of `tokens` tokens each: X is (nseq, tokens, cols) row-major. One BLAS-3
// call (ssyrk) per sequence, in order: the raw sum is the same, bit for bit, whether sequences
// come one per call or several per call.
int sds_hessian_add(sds_hessian *h, const float *X, int64_t nseq, int64_t tokens);
// Batches, for a rank with several BLAS threads (OpenBLAS's threaded ssyrk reaches 0.7-0.8 of
// its threaded sgemm at these widths): from now on the Grams of k sequences are computed at
// once, each on its own thread with a single-threaded ssyrk, the same call as a 1-thread rank
// makes, so the sums are the same bits as with one BLAS thread. A sequence waits, copied, until
// k have come: (k - 1) (max_tokens + cols) cols floats more. k < 2, or no Gram: nothing
// changes, nor for cols above SDS_HESSIAN_BATCH_MAX_COLS. Call sds_hessian_flush before
// reading or reducing the sums. Out of memory: status code.
int sds_hessian_batch(sds_hessian *h, int64_t max_tokens, int32_t k);
// Adds the sequences still waiting for their batch. Numeric errors as sds_hessian_add.
int sds_hessian_flush(sds_hessian *h);
// The batch for a rank with `threads` BLAS threads into *k: `env` (the variable SDS_GRAM_BATCH,
// NULL when unset) when given, an integer from 1 (off) to SDS_HESSIAN_MAX_BATCH; else threads
// (at most SDS_HESSIAN_MAX_BATCH). Usage error naming the variable when it is not such a number.
int sds_hessian_batch_size(const char *env, int threads, int32_t *k);
// Numeric error naming the limit when an entry of one sequence's Gram or sum of squares is not
// finite or reaches SDS_HESSIAN_XSUM_LIMIT.
// finish: H and wanda from the exact sums, scaled by the sequence count, the lower triangle
// filled; frees the accumulators. Input error if nothing was added.
int sds_hessian_finish(sds_hessian *h);
// One entry H[i][j], i <= j, straight from the exact sums, with finish's arithmetic (the same
// bits): for a caller that needs only some entries (prune's block-cyclic piece) and so skips
// finish. The sums must be complete (all-reduced) and nseq set.
float sds_hessian_entry(const sds_hessian *h, int64_t i, int64_t j);
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

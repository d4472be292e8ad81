// The Hessian H = (2 / nseq) * sum_s X_s^T X_s accumulated directly onto the block-cyclic grid
// of mpi/dist_sparsegpt.h, so that no rank of a pipeline stage ever holds the whole (n, n) matrix.
// The caller broadcasts every sequence's X_s (T tokens x n columns, row-major) to the G ranks of
// the grid; each rank computes and sums only its own block-cyclic piece of X_s^T X_s.
// prune takes this route for input groups wider than --local-hessian-max (default 2048); narrower
// ones are summed whole on each rank from its own sequences (mpi/prune.c, local_hessian_piece).
//
// Bit for bit the same at any grid shape (1x1, 1x2, 2x2, 1x3, ...): each global nb x nb block
// (I, J), I <= J, of one sequence's X^T X is one BLAS call (cblas_sgemm; cblas_ssyrk, upper
// triangle only, on the diagonal, I == J) whose shape and operand layout depend on (I, J)
// only, its operands X's column panels I and J, copied out of each sequence (leading dimension
// the panel's width; OpenBLAS's bits do not depend on it), so every grid makes the same
// calls on the same data; the entries then
// go into exact sums (src/xsum.h), whose result does not depend on the order of the additions.
// (One call per block, not per column block: OpenBLAS's value for an entry depends on the call's
// shape (edge kernels, small-matrix kernels, where the token loop is split), which would differ
// between grids.) The invariance assumes the same BLAS library, kernel (OPENBLAS_CORETYPE) and
// BLAS thread count on every rank and in every run compared.
//
// Against the serial sds_hessian: the conversion at finish is sds_hessian_finish's float
// arithmetic, but the serial per-sequence entries come from one ssyrk over all columns, which
// OpenBLAS rounds alike only when its ssyrk and the block's sgemm use the same kernel and split
// the token loop at the same places. Measured with OpenBLAS 0.3.21 (nb = 64; n = 256, 768,
// 1000; T = 64 to 4096): bit for bit with the SkylakeX and Cooperlake kernels, except blocks
// small enough for sgemm's small-matrix path (wi * wj * T below ~1e6, e.g. a short last block)
// once T exceeds the kernel's token block (n = 1000, T = 512: 734 of 500500 entries differ);
// with the Prescott kernels (what 0.3.21 picks on the development machine) except for some T
// between one and two token blocks (T = 200, 321, 600 seen); never with the Haswell and Zen
// kernels (the last bits of 1/6 to 2/3 of the entries). Smaller nb (16 to 32) takes the
// small-matrix path more often. The differences measured are below 1e-6 of sqrt(H_ii H_jj)
// (tests/test_dist_gram.c prints them).
//
// Who computes a block. The upper triangle's blocks are unevenly spread over the owners of the
// block-cyclic layout (1 x 2 grid, n = 768: 3 block columns, one rank owns 3 of the 4.5
// block-equivalents of work; a 2 x 2 grid at n = 2048 gives one rank 10 of 32), and every rank
// waits for the slowest. So a block may be computed by a rank that does not own it: starting
// from the owners, the most loaded rank repeatedly hands one of its own blocks to the least
// loaded (the block that brings their loads closest, while both end below the former maximum;
// flops as the weight: 2 wi wj off the diagonal, wi (wi + 1) on it), until no such move is left.
// The assignment depends on n, nb and the grid shape only, so every rank computes it alike. A
// block computed elsewhere is summed there over all sequences with the same call, converted with
// the same arithmetic, and sent to its owner once, by sds_dist_gram_exchange: the owner's piece
// is the same bits as if it had computed the block itself.
//
// Cost: one call per block instead of one ssyrk over all columns. bench/bench_gram.c, 2 ranks
// x 1 thread, 64 sequences of 2048 tokens: 0.75 (n = 768), 0.83 (2048) and 0.83 (3072) of the
// machine's sgemm GFLOP/s, against the serial ssyrk + exact sums' 0.88-0.92; 0.60, 0.73 and
// 0.76 with the owners computing their own blocks; 0.40, 0.61 and 0.66 when the diagonal
// blocks were whole sgemms and X was first gathered into panels. At n = 768 a rank still has
// 2.5 of the 4.5 block-equivalents: a diagonal block is one call and cannot be split.
// With 2 BLAS threads in one rank, OpenBLAS's threaded calls on 256-wide blocks reached 0.71
// of its threaded sgemm at n = 3072; sds_dist_gram_threads spreads the rank's blocks over its
// own threads instead, each block one single-threaded call (the same call, so the same bits):
// 0.80-0.83 there (1 rank x 2 threads).
//
// Only the upper triangle (global row <= global column) is accumulated and written; that is
// all sds_dist_sparsegpt_grid reads.
//
// Memory per rank (bytes held at once; d->bytes / d->peak_bytes count it, sds_dist_gram_bound
// computes it), with K the blocks this rank computes (sds_dist_gram_blocks: about the upper
// triangle's B (B + 1) / 2 blocks over G, B = n / nb), mloc x nloc its piece (lld = max(1, mloc))
// and T the most tokens of one sequence:
//     16 * nb * nb * K         the exact sums, one nb x nb block of them per block computed
//   +  4 * nb * nb             one block of one sequence's X^T X
//   +  the larger of
//      4 * T * nb * P          X's column panels that the K blocks read (P of the n / nb),
//                              copied out of each sequence while sequences are added, and
//      4 * lld * nloc          the fp32 piece sds_dist_gram_finish_in_place returns, while the
//                              sums are converted into it (4 bytes for an empty piece)
// (16 bytes for the sums when K is 0; no panels when T is 0)
// So about 8 n^2 / G + 4 n^2 / G bytes: the upper triangle's sums and the piece (X is the
// caller's; the panels, at most T n floats, are smaller than the piece where T < n / G).
// No rank allocates anything of size n x n.
#pragma once
#include "dist_sparsegpt.h"
#include "xsum.h"

#include <stdint.h>

typedef struct {
    const sds_dist_grid *g; // the grid (not owned; must outlive this object)
    int64_t T;              // the most tokens one sequence may have
    sds_xsum_t *acc;        // (ntask x nb x nb) exact sums of the blocks this rank computes, in
                            // task order, each column-major with leading dimension nb
    float *tile;            // (nb x nb) one block of one sequence's X^T X
    int64_t nseq;           // sequences added
    // the blocks this rank computes (its own, less those moved away, and F = nforeign for
    // other owners) and those of its own another rank computes (nmissing)
    int32_t ntask, nforeign, nmissing;
    struct sds_dist_gram_task *task;    // (ntask) block and its owner, in column order
    struct sds_dist_gram_task *missing; // (nmissing) block, the rank that sends it
    // sds_dist_gram_threads: the tasks split over nthreads threads (1: this one), task k on
    // thread task_thread[k], thread t > 0 with its own block buffer at xtile + (t - 1) nb nb
    int32_t nthreads;
    int32_t *task_thread;
    float *xtile;
    // the column panels of X the tasks read, copied out of each sequence: panel b (nb columns,
    // fewer for the last) at panel + slot[b] T nb, column-major with leading dimension its
    // width; slot[b] -1 for a panel no task reads
    int32_t npanel;
    int32_t *slot;
    float *panel;
    int64_t bytes;      // bytes this object holds now (for the caller's memory accounting)
    int64_t peak_bytes; // most bytes held at once (kept by sds_dist_gram_free)
} sds_dist_gram;

// (local) The memory bound above, in bytes, for this rank of grid g and sequences of up to T
// tokens.
int64_t sds_dist_gram_bound(const sds_dist_grid *g, int64_t T);

// (local) Allocates zeroed sums and the block buffer for sequences of up to T tokens (T >= 0). g
// must outlive d. Errors: SDS_ERR_INPUT for T out of range; SDS_ERR_IO when out of memory (the
// message names the buffer). On failure d holds nothing (sds_dist_gram_free is still safe).
int sds_dist_gram_init(sds_dist_gram *d, const sds_dist_grid *g, int64_t T);

// (local) For a rank with several BLAS threads (whose threaded calls on 256-wide blocks are
// slow): from now on each sds_dist_gram_add spreads this rank's blocks over k threads (at most
// its block count), each block one single-threaded call, the same call as with one BLAS thread;
// blocks are handed out largest first to the least loaded thread (diagonal blocks weigh half).
// Holds (k - 1) nb nb floats more, in d->bytes. k < 2: nothing changes. SDS_ERR_IO when out of
// memory.
int sds_dist_gram_threads(sds_dist_gram *d, int32_t k);

// (local) Adds this rank's piece of X^T X for one sequence: X (T x g->n, row-major, the same on
// every rank of the grid), T <= d->T; T = 0 counts a sequence and adds nothing, as
// sds_hessian_add does. Only the blocks at or above the block diagonal are computed (for local
// column block J the local row blocks needed are a prefix of the local rows), one BLAS call
// per block; in the diagonal blocks only entries with global row <= global column go into the
// sums. X is read (the panels copied out) during the call only. Errors: SDS_ERR_INPUT for T out of
// range; SDS_ERR_NUMERIC (message as sds_hessian_add's, naming SDS_HESSIAN_XSUM_LIMIT) when an
// entry of this rank's piece is not finite or reaches the limit; the sums are then unspecified. A
// failure is this rank's alone: the caller agrees on it before its next collective.
int sds_dist_gram_add(sds_dist_gram *d, const float *X, int64_t T);

// (local) H's piece from the sums: entries with global row <= global column receive
// float(sum) * (float)(2.0 / nseq), sds_hessian_finish's arithmetic; the others (and the padding
// rows of lld) 0. A (lld x nloc floats, column-major, the caller's) receives it; the blocks that
// other ranks computed stay 0 until sds_dist_gram_exchange. Frees the sums and buffers (d->bytes
// 0), or, when there is something to exchange, keeps them for it. Errors: SDS_ERR_INPUT when no
// sequence was added (d unchanged).
int sds_dist_gram_finish(sds_dist_gram *d, float *A);

// (local) The same into a piece it allocates (counted in d->bytes while the sums are converted
// into it): *A receives it (lld x nloc floats, the caller's to free(); d->bytes then excludes
// it, the caller accounts 4 * lld * nloc bytes for it). Errors (*A NULL; d still to be freed):
// SDS_ERR_INPUT when no sequence was added; SDS_ERR_IO when out of memory for the piece.
int sds_dist_gram_finish_in_place(sds_dist_gram *d, float **A);

// (collective over g->comm) After sds_dist_gram_finish or _finish_in_place on every rank of
// the grid (and an agreement that all succeeded): sends the blocks this rank computed for other
// owners and writes those of its own that others computed into A (its piece, lld x nloc, as
// finish produced it). Releases the sums and the tile. A grid whose blocks were all computed by
// their owners exchanges nothing.
void sds_dist_gram_exchange(sds_dist_gram *d, float *A);

// (local) The rank of g->comm that computes global block (bi, bj), bi <= bj, of grid g (the
// assignment above), and how many blocks this rank computes for other owners.
int sds_dist_gram_worker(const sds_dist_grid *g, int64_t bi, int64_t bj);
int32_t sds_dist_gram_foreign(const sds_dist_grid *g);
// (local) How many blocks this rank of grid g computes (its own that stay, and the foreign).
int32_t sds_dist_gram_blocks(const sds_dist_grid *g);

// (local) Frees what d holds; safe on a zeroed, failed or finished object.
void sds_dist_gram_free(sds_dist_gram *d);

// (collective over g->comm) The whole diagonal of the distributed matrix A (g's layout) into
// diag (g->n floats) on every rank. Each entry has one owner, the others contribute zero bits
// (bitwise OR), so the values are A's bits exactly.
void sds_dist_grid_diag(const sds_dist_grid *g, const float *A, float *diag);

// (local) Writes diag (g->n floats) into the diagonal entries of A that this rank owns.
void sds_dist_grid_set_diag(const sds_dist_grid *g, float *A, const float *diag);

// (collective over g->comm) out = sum over i, j of H_ij * (D^T D)_ij for the symmetric H whose
// strict upper triangle is in A (global row < global column; A's lower triangle and diagonal are
// not read, the caller may have overwritten them) and whose diagonal is diag (g->n floats, the
// same on every rank). D (rows x g->n, row-major) is the same on every rank. Each rank computes
// D^T D on its upper blocks with cblas_sgemm (as sds_dist_gram_add does), multiplies entry-wise
// in double (a float product is exact in double), the diagonal once and the strict upper
// triangle twice, scales by a power of two chosen from global bounds (max |H|, the largest
// column norm of D), adds into one exact sum, and the sums are reduced exactly over the ranks:
// the result is the same bits at any grid shape (as for sds_dist_gram_add: one sgemm per block).
// The exact sums' grid costs at most n^4 2^-125 max|H| max_j |D_j|^2 in absolute error.
// Errors (the same code and message on every rank):
// SDS_ERR_NUMERIC when an entry of H's strict upper triangle, of diag or of D is not finite (or
// a term still reaches the exact sums' limit); SDS_ERR_IO when out of memory on some rank (extra
// memory: 4 * rows * (mloc + nloc) + 4 * nb * nb bytes). rows 0 gives 0 (rows must be the same
// on every rank).
int sds_dist_quad_trace(const sds_dist_grid *g, const float *A, const float *diag, const float *D,
                        int64_t rows, double *out);

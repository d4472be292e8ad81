// The lower Cholesky factor of A^-1 for a symmetric positive definite A distributed on the
// block-cyclic grid of mpi/dist_sparsegpt.h, bit for bit the same at any grid shape (1x1, 1x2,
// 1x3, 2x2, ...), as a tile algorithm instead of ScaLAPACK's pspotrf / pspotri.
//
// Why: ScaLAPACK's local BLAS calls have shapes that depend on the grid (how many blocks of a
// panel a rank owns), and OpenBLAS's value for an entry depends on the call's shape, so its
// results differ between grids in the last bits, and SparseGPT's masks diverge from there.
// Here every BLAS / LAPACK call works on whole nb x nb tiles (the last tile row and column
// ragged: n - (nt - 1) nb, nt = ceil(n / nb)), each tile receives its updates in a fixed order,
// and every operand that is not the tile being updated is a copy (made by MPI, so the same
// bits) in a contiguous buffer with the tile's own leading dimension. Every grid therefore
// makes the same calls on the same values. The invariance assumes the same BLAS library,
// kernel (OPENBLAS_CORETYPE) and BLAS thread count on every rank and in every run compared:
// OpenBLAS 0.3.21's spotrf, strtri and slauum on one 128 x 128 tile give other bits at 2
// threads than at 1 (Prescott, Haswell, SkylakeX kernels; with Haswell's, sgemm too), so runs
// whose ranks get different thread counts (sds_runtime_blas_threads shares a node's cores
// among its ranks) differ. Measured bit for bit across 1, 2, 3 and 4 ranks at
// OPENBLAS_NUM_THREADS 1 and (separately) at 2, with the Prescott, Haswell, Zen, SkylakeX and
// Cooperlake kernels.
//
// The sequence, the serial sds_sparsegpt_factor's spotrf, spotri, spotrf ('L'), as four tile
// algorithms (right-looking, PLASMA's order), in float, in place on the lower triangle:
//   1. potrf  A = L L^T               per step k: spotrf of tile (k, k); strsm of the tiles below
//                                     it; ssyrk / sgemm of the trailing tiles
//   2. trtri  L := L^-1               per step k: strsm of column k's tiles by -L_kk^-1 (right);
//                                     sgemm of the tiles left of and below (k, k); strsm of row
//                                     k's tiles by L_kk^-1 (left); strtri of tile (k, k)
//   3. lauum  A^-1 = L^-T L^-1        per step k: ssyrk / sgemm of the tiles above row k with
//                                     row k's tiles; strmm of row k's tiles; slauum of (k, k)
//   4. potrf  A^-1 = U^T U            as step 1; the lower triangle receives U^T
// Communication per step: MPI_Bcast of the diagonal tile from its owner where a step needs it
// before the panel, and one MPI_Allgatherv of the step's panel (column k below the diagonal,
// and/or row k left of it) to every rank. So each rank receives about n^2 floats per algorithm:
// meant for the ranks of one node, not for scaling far out. Time, one thread per rank, nb 128,
// SkylakeX kernels: n = 3072 in 0.75 s on 1 rank, 0.46 s on 2 (serial LAPACK 0.67 s).
// Against serial LAPACK (the same sequence on the whole matrix): the same arithmetic blocked
// another way, so equal to rounding; tests/test_dist_tiles.c states the differences measured.
//
// Memory per rank (bytes; sds_dist_tiles_bytes), allocated once per call, with bw = min(nb, n),
// nt tiles and G ranks:
//     4 * bw * n        the panel (column and row tiles of one step)
//   + 4 * bw * bw       one diagonal tile
//   + 8 * nt + 16 * G   tile offsets, gather counts and offsets, the grid's rank table
#pragma once
#include "dist_sparsegpt.h"

#include <stdint.h>

// (local) The workspace one sds_dist_tiles_inv_chol call holds on this rank of grid g, bytes.
int64_t sds_dist_tiles_bytes(const sds_dist_grid *g);

// Return values beyond LAPACK's (below any LAPACK argument number). Each records a message
// on every rank with sds_error_set, under the code named; no other outcome sets a message.
// Out of memory on some rank (SDS_ERR_IO); A untouched. Test hook: SDS_TEST_FAIL listing
// "tiles-memory:R" makes world rank R's allocation fail:
#define SDS_DIST_TILES_NO_MEMORY (-1001)
// A panel of min(nb, n) x n floats exceeds MPI's int counts (SDS_ERR_INPUT); A untouched:
#define SDS_DIST_TILES_TOO_LARGE (-1002)

// (collective over g->comm) A (local; g->lld x g->nloc, column-major, g's block-cyclic layout)
// is this rank's piece of a symmetric positive definite (g->n, g->n) matrix whose lower
// triangle (global row >= global column) holds it. On return 0 the lower triangle holds the
// lower Cholesky factor of A^-1 (U^T with A^-1 = U^T U). Only the lower triangle is read or
// written, also inside the diagonal tiles: the strict upper triangle keeps its bits (a caller
// may restore the lower triangle from it and retry), and may hold anything, NaN included.
//
// Returns LAPACK's info in global terms, the same on every rank, as ScaLAPACK's p?potrf would:
//   0     done
//   > 0   step 1 or 4 found the matrix not positive definite (or step 2 a zero diagonal entry):
//         the 1-based global column where the local LAPACK call stopped (tile offset + its
//         info); the lower triangle is then partly overwritten, the strict upper one intact
//   < 0   a LAPACK call rejected argument -info (a bug), or SDS_DIST_TILES_* above
// Each diagonal tile's LAPACK call is agreed (MPI_Allreduce) right after it, so a failure
// stops every rank at the same step. fail_rank (may be NULL) receives the lowest
// MPI_COMM_WORLD rank whose LAPACK call failed, or that ran out of memory; -1 on success.
int sds_dist_tiles_inv_chol(const sds_dist_grid *g, float *A, int *fail_rank);

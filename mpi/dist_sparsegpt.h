// SparseGPT (SPEC 2.5) for one sublayer over the G ranks of a communicator: U comes from
// ScaLAPACK on a BLACS grid made from the communicator, the column sweep runs on each rank's
// shard of rows (SPEC 4: "rows of W are sharded for the SparseGPT sweep, which needs only the
// B-row panels of U, broadcast block by block").
//
// Steps, mirroring the serial sds_sparsegpt_prepare + sds_sparsegpt_sweep (src/sparsegpt.h):
//   1. dead inputs from diag(H) (every rank holds the whole diagonal), W_local's columns zeroed;
//   2. damping percdamp * mean(diag H); the damped H is distributed block-cyclically (nb x nb
//      blocks on a nprow x npcol grid, nprow * npcol = G, as square as possible);
//   3. pspotrf, pspotri, pspotrf, all with uplo 'L' on the column-major global matrix, the
//      serial sequence exactly; or (opts->tiles) the same sequence as tile algorithms
//      (mpi/dist_tiles.h), whose results are the same bits at any grid shape; a failed
//      factorisation is agreed by every rank and retried from the original damped H with percdamp x
//      SDS_SPARSEGPT_DAMP_GROW, numeric error after the last attempt. Afterwards the column-major
//      lower triangle holds U^T (H^-1 = U^T U);
//   4. the sweep: each rank calls sds_sparsegpt_sweep on its rows; the panel U[i1:i2, i1:n] is
//      assembled on every rank from the block-cyclic pieces (one MPI_Allgatherv per slab of
//      nprow * nb rows of the global matrix), the unstructured threshold is the exact k-th
//      smallest score over every shard (scores gathered on rank 0, radix select there, the value
//      broadcast: the same value sds_select_kth_local gives on the concatenation).
// Results equal the serial sds_sparsegpt_prune's to rounding (ScaLAPACK's blocking sums in
// another order than LAPACK's): tests/test_dist_sparsegpt.c states the tolerances.
//
// Block size: SDS_DIST_NB = 64 by default: a usual ScaLAPACK choice for p?potrf/p?potri, it
// keeps every rank busy down to n = 64 * max(nprow, npcol), and a panel of B = 128 rows spans
// two block columns, so two process columns feed each panel.
//
// Memory per rank (bytes) held by this module's own allocations at once (reported in
// sds_dist_sparsegpt_info.peak_bytes; sds_dist_sparsegpt_bound computes the formula). With
// n = cols, Bw = min(B, n), pr = nprow, mloc x nloc this rank's block-cyclic piece and
// mT = ceil(ceil(n / nb) / pr) * nb:
//     4 * mloc * nloc                 the local piece of U (sds_dist_sparsegpt only: with
//                                     sds_dist_sparsegpt_grid the caller's A_local is used)
//   + 5 * n + 16 * G + 64             diagonal, dead-input flags, counts and row table
//   + max(factor, sweep), where
//       factor = 4 * mT * nb          (sds_dist_sparsegpt_grid only: one block column of the
//                                     transpose that fills the lower triangle from the upper
//                                     one before each attempt)
//              + sds_dist_tiles_bytes (opts->tiles: the tile algorithms' panels)
//       sweep  = 4 * Bw * (n + pr * nb + nb)        when G > 1: the panel, one slab, the pack
//              + 4 * rows_global * Bw               on rank 0 when G > 1 and the pattern is
//                                                   unstructured: the gathered block scores
// So no rank holds more than its ~n^2 / G share of U plus a B x n panel and a slab. Not counted:
// sds_sparsegpt_sweep's own 4 * (2 * rows_local * B + B) bytes (src/sparsegpt.c), and
// ScaLAPACK/PBLAS's internal workspaces (block panels, O((n / pr + n / pc) * nb) floats).
//
// Errors (every rank returns the same code; the failing rank's message is recorded on every
// rank with sds_error_set, nothing is printed: the caller's sds_agree prints it once):
//   SDS_ERR_NUMERIC  the Cholesky factorisation failed after the last damping retry, or a
//                    diagonal entry of H is negative or not finite; the message names `name`
//   SDS_ERR_INPUT    W holds NaN/Inf, shards do not add up to rows_global, sizes out of range
//   SDS_ERR_USAGE    the pattern does not fit (cols % m, B % m)
//   SDS_ERR_IO       out of memory (or over opts->mem_limit) on some rank
// No error path leaves a rank waiting in a collective: every allocation and every local
// failure is agreed before the next collective step.
#pragma once
#include "pattern.h"
#include "sparsegpt.h"

#include <mpi.h>
#include <stdint.h>

#define SDS_DIST_NB 64 // ScaLAPACK block size (rows and columns) of U's distribution

// The BLACS grid over a communicator and the block-cyclic layout of one (n, n) matrix on it.
// Global indices are 0-based, of the column-major global matrix; block (I, J) (nb x nb) lives
// on grid place (I mod nprow, J mod npcol); a rank's piece is (mloc, nloc) column-major with
// leading dimension lld.
typedef struct {
    MPI_Comm comm;      // the communicator the grid was made from (not owned)
    int rank, size;     // in comm
    int handle, ctxt;   // BLACS system handle of comm and the grid's context
    int nprow, npcol;   // grid shape, nprow * npcol = size, nprow <= npcol
    int myrow, mycol;   // this rank's place
    int *prow, *pcol;   // (size) every rank's place, by rank in comm
    int64_t n;          // (global) order of the matrix
    int nb;             // (global) block size
    int64_t mloc, nloc; // (local) rows and columns of this rank's piece
    int lld;            // (local) leading dimension of the piece, max(1, mloc)
    int desc[9];        // ScaLAPACK descriptor of the (n, n) matrix
} sds_dist_grid;

// (collective) Makes the grid (Csys2blacs_handle + Cblacs_gridinit, row-major place order) for
// an (n, n) matrix in nb x nb blocks (nb 0 = SDS_DIST_NB). Agreed status.
int sds_dist_grid_init(sds_dist_grid *g, MPI_Comm comm, int64_t n, int nb);
// (collective) Releases the BLACS context and handle. Safe on a zeroed or failed grid.
void sds_dist_grid_free(sds_dist_grid *g);
// (local) Global row / column of this rank's local row il < mloc / column jl < nloc.
int64_t sds_dist_grid_row_global(const sds_dist_grid *g, int64_t il);
int64_t sds_dist_grid_col_global(const sds_dist_grid *g, int64_t jl);

typedef struct {
    int64_t blocksize; // SparseGPT's column block B (SDS_SPARSEGPT_BLOCK); a multiple of m
    double percdamp;   // first relative damping (SDS_SPARSEGPT_PERCDAMP)
    int32_t max_tries; // factorisation attempts (SDS_SPARSEGPT_MAX_TRIES)
    int32_t nb;        // ScaLAPACK block size for sds_dist_sparsegpt (0 = SDS_DIST_NB)
    int64_t mem_limit; // (local) refuse, as out of memory, allocations that would take this
                       // call past this many bytes held at once on this rank; 0 = no limit
    int32_t tiles;     // 1: steps 3 by mpi/dist_tiles.h's tile algorithms (the same bits at any
                       // grid shape) instead of ScaLAPACK's p?potrf/p?potri (0, the default)
} sds_dist_sparsegpt_opts;

// The defaults above (blocksize 128, percdamp 0.01, 6 tries, nb 64, no limit).
sds_dist_sparsegpt_opts sds_dist_sparsegpt_defaults(void);

typedef struct {
    sds_sparsegpt_info sg;    // (global) dead inputs, damping used, attempts: as the serial
    int32_t nprow, npcol, nb; // (global) the grid and block size used
    int64_t peak_bytes;       // (local) the most bytes this call's allocations held at once
    int64_t bound_bytes;      // (local) the documented bound for this rank
    double seconds_factor;    // (local) wall time of steps 1-3
    double seconds_sweep;     // (local) wall time of step 4
} sds_dist_sparsegpt_info;

// (collective over comm) SparseGPT on one sublayer from the situation prune is in: every rank
// holds the whole H (global; cols x cols, row-major, full symmetric, as after
// sds_hessian_finish; not modified; only its lower triangle H[i][j], j <= i, is read, as the
// serial sds_sparsegpt_factor reads) and its own contiguous shard of rows of W: W_local
// (local; rows_local x cols, row-major), pruned and updated in place; mask_local (local;
// rows_local x cols) receives 1 where the pattern pruned. rows_global (global) is the sum of
// rows_local over comm; shards are in rank order (rank r holds rows [row0_r, row0_r + rows_local)
// with row0_r = sum of lower ranks' rows_local). Ranks with rows_local == 0 take part (W_local
// and mask_local may then be NULL). name (the sublayer, e.g. "model.layers.3.mlp.down_proj")
// appears in error messages. opts NULL = defaults. info (may be NULL) receives the figures.
int sds_dist_sparsegpt(MPI_Comm comm, const char *name, const float *H, int64_t cols,
                       float *W_local, int64_t rows_local, int64_t rows_global, sds_pattern p,
                       const sds_dist_sparsegpt_opts *opts, uint8_t *mask_local,
                       sds_dist_sparsegpt_info *info);

// (collective over g->comm) The same from H already distributed on the grid (g->n = cols):
// A_local (local; g->mloc x g->nloc, column-major, leading dimension g->lld) is this rank's
// piece of H. Only the upper triangle (global row <= global column) is read, so a reduction
// onto the grid may skip the blocks below the diagonal; the rest is overwritten. On success
// A_local's lower triangle holds U^T (column-major), its strict upper triangle still H.
// opts->nb is ignored (the grid's). Other arguments as sds_dist_sparsegpt.
int sds_dist_sparsegpt_grid(const sds_dist_grid *g, const char *name, float *A_local,
                            float *W_local, int64_t rows_local, int64_t rows_global, sds_pattern p,
                            const sds_dist_sparsegpt_opts *opts, uint8_t *mask_local,
                            sds_dist_sparsegpt_info *info);

// (local) The memory bound above, in bytes, for this rank of grid g. full_h: 1 for
// sds_dist_sparsegpt (the module holds U's piece), 0 for sds_dist_sparsegpt_grid.
int64_t sds_dist_sparsegpt_bound(const sds_dist_grid *g, int64_t rows_global, sds_pattern p,
                                 int64_t blocksize, int full_h);

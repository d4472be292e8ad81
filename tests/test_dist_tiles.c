// The tile inverse Cholesky (mpi/dist_tiles.h) at the rank count it is launched with
// (tests/dist_grid.cmake runs it at 1, 2, 3 and 4: grids 1x1, 1x2, 1x3, 2x2):
//   mpirun -np G test_dist_tiles            the checks below
//   mpirun -np G test_dist_tiles time N...  only the timing, at order N (nb 128), for N given
// Rank 0 generates each matrix, computes the references and broadcasts them; every rank then
// compares its own piece at the pieces' global positions (every entry has exactly one owner;
// the counts of compared entries are summed to prove it).
// Rank 0 prints OK / NOT OK per check and PASSED / FAILED; every rank exits 1 on a failure.
//
// What is asserted, for n in {1, 50, 128, 300, 1000} and nb in {16, 32, 64, 128}:
// - the grid's result equals, bit for bit, the same function's on a 1x1 grid (MPI_COMM_SELF);
// - against serial LAPACK in float (spotrf, spotri, spotrf, 'L', the serial SparseGPT's
//   sequence): max |difference| / max |result| <= LAPACK_TOL; and both against the same
//   sequence in double, printed (the tile algorithm is about as accurate as LAPACK's: its
//   error is asserted <= DOUBLE_FACTOR x LAPACK float's + 1e-7);
// - the strict upper triangle (a NaN pattern) keeps its bits;
// - a matrix that is not positive definite (a negative diagonal entry in a tile of the last
//   rank, or of rank 0) returns the column of LAPACK's info on every rank, the 1x1 grid's,
//   with fail_rank the tile owner's world rank;
// - out of memory on one rank (a test hook) is agreed, with fail_rank and message;
// - timing (printed, not asserted): n = 2048, nb = 128 at this rank count, and serial LAPACK.
#define _POSIX_C_SOURCE 200809L
#include "dist_sparsegpt.h"
#include "dist_tiles.h"
#include "sds_error.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_test_util.h"

extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);
extern void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);

// Measured at 1-4 ranks, OpenBLAS 0.3.21 with the Prescott, Haswell, Zen, SkylakeX and
// Cooperlake kernels: at most 2.2e-6 against LAPACK float, at most 1.5 x LAPACK float's own
// error against double (damped Gram matrices of condition ~400: float's rounding times the
// condition bounds both).
#define LAPACK_TOL    5e-6
#define DOUBLE_FACTOR 2.0

// A quiet NaN whose payload names the entry: what the strict upper triangle must keep.
static uint32_t sentinel(int64_t i, int64_t j) {
    return 0x7fc00000u | (uint32_t)((i * 7919 + j * 104729) & 0x3fffff);
}

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

// S = X^T X + 0.01 mean(diag) I with X (n x n) N(0, 1): a damped Gram matrix as SparseGPT's,
// condition ~400. Column-major, full. Built on rank 0, broadcast: every rank returns it.
static float *make_spd(int64_t n, uint64_t seed) {
    float *S = xmalloc((size_t)(n * n) * sizeof(float));
    if (g_rank == 0) {
        float *X = xmalloc((size_t)(n * n) * sizeof(float));
        g_rng = seed;
        for (int64_t k = 0; k < n * n; k++) X[k] = normal();
        cblas_ssyrk(CblasColMajor, CblasLower, CblasTrans, (int)n, (int)n, 1.0f, X, (int)n, 0.0f, S,
                    (int)n);
        double mean = 0.0;
        for (int64_t j = 0; j < n; j++) mean += S[j * n + j];
        const float damp = (float)(0.01 * mean / (double)n);
        for (int64_t j = 0; j < n; j++) {
            S[j * n + j] += damp;
            for (int64_t i = 0; i < j; i++) S[j * n + i] = S[i * n + j];
        }
        free(X);
    }
    MPI_Bcast(S, (int)(n * n), MPI_FLOAT, 0, MPI_COMM_WORLD);
    return S;
}

// (rank 0) The serial sequence with LAPACK on a copy of S: float in F, double in D (rounded).
static void lapack_refs(const float *S, int64_t n, float *F, float *D) {
    const int ni = (int)n;
    int info = 0;
    memcpy(F, S, (size_t)(n * n) * sizeof(float));
    spotrf_("L", &ni, F, &ni, &info, 1);
    if (info == 0) spotri_("L", &ni, F, &ni, &info, 1);
    if (info == 0) spotrf_("L", &ni, F, &ni, &info, 1);
    SDS_ASSERT(info == 0);
    double *W = xmalloc((size_t)(n * n) * sizeof(double));
    for (int64_t k = 0; k < n * n; k++) W[k] = S[k];
    dpotrf_("L", &ni, W, &ni, &info, 1);
    if (info == 0) dpotri_("L", &ni, W, &ni, &info, 1);
    if (info == 0) dpotrf_("L", &ni, W, &ni, &info, 1);
    SDS_ASSERT(info == 0);
    for (int64_t k = 0; k < n * n; k++) D[k] = (float)W[k];
    free(W);
}

// The piece of grid g: the lower triangle from S (column-major, full), the sentinels above.
static float *distribute(const sds_dist_grid *g, const float *S) {
    float *A = xmalloc((size_t)(g->lld * g->nloc) * sizeof(float));
    for (int64_t jl = 0; jl < g->nloc; jl++) {
        const int64_t j = sds_dist_grid_col_global(g, jl);
        for (int64_t il = 0; il < g->mloc; il++) {
            const int64_t i = sds_dist_grid_row_global(g, il);
            if (i >= j) {
                A[jl * g->lld + il] = S[j * g->n + i];
            } else {
                const uint32_t u = sentinel(i, j);
                memcpy(&A[jl * g->lld + il], &u, sizeof u);
            }
        }
    }
    return A;
}

// (rank 0) The function on a 1x1 grid: R (n x n, column-major) receives the whole piece.
static int run_serial_grid(const float *S, int64_t n, int nb, float *R, int *fail_rank) {
    sds_dist_grid g1;
    SDS_ASSERT(sds_dist_grid_init(&g1, MPI_COMM_SELF, n, nb) == SDS_OK);
    SDS_ASSERT(g1.lld == n && g1.nloc == n);
    float *A1 = distribute(&g1, S);
    const int rc = sds_dist_tiles_inv_chol(&g1, A1, fail_rank);
    memcpy(R, A1, (size_t)(n * n) * sizeof(float));
    free(A1);
    sds_dist_grid_free(&g1);
    return rc;
}

// The strict upper triangle of this rank's piece still holds the sentinels.
static int64_t upper_damaged(const sds_dist_grid *g, const float *A) {
    int64_t bad = 0;
    for (int64_t jl = 0; jl < g->nloc; jl++) {
        const int64_t j = sds_dist_grid_col_global(g, jl);
        for (int64_t il = 0; il < g->mloc; il++) {
            const int64_t i = sds_dist_grid_row_global(g, il);
            if (i < j && bits(A[jl * g->lld + il]) != sentinel(i, j)) bad++;
        }
    }
    return bad;
}

// ---- (a) - (c): one n, every nb ------------------------------------------------------------

static void check_order(int64_t n, uint64_t seed) {
    const size_t nn = (size_t)(n * n);
    float *S = make_spd(n, seed), *F = xmalloc(nn * sizeof(float));
    float *D = xmalloc(nn * sizeof(float)), *R = xmalloc(nn * sizeof(float));
    if (g_rank == 0) lapack_refs(S, n, F, D);
    // (n <= 1000: the counts fit in int)
    MPI_Bcast(F, (int)nn, MPI_FLOAT, 0, MPI_COMM_WORLD);
    MPI_Bcast(D, (int)nn, MPI_FLOAT, 0, MPI_COMM_WORLD);
    // LAPACK float against double, the yardstick for the tile algorithm's error.
    double lap_err = 0.0, dmax = 0.0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = j; i < n; i++) {
            lap_err = fmax(lap_err, fabs((double)F[j * n + i] - D[j * n + i]));
            dmax = fmax(dmax, fabs((double)D[j * n + i]));
        }
    lap_err /= dmax;

    const int nbs[] = {16, 32, 64, 128};
    for (size_t b = 0; b < sizeof nbs / sizeof nbs[0]; b++) {
        const int nb = nbs[b];
        sds_dist_grid g;
        SDS_ASSERT(sds_dist_grid_init(&g, MPI_COMM_WORLD, n, nb) == SDS_OK);
        float *A = distribute(&g, S);
        int fail_rank = 0, fail1 = 0, rc1 = 0;
        const double t0 = MPI_Wtime();
        const int rc = sds_dist_tiles_inv_chol(&g, A, &fail_rank);
        const double secs = max_ranks(MPI_Wtime() - t0);
        if (g_rank == 0) rc1 = run_serial_grid(S, n, nb, R, &fail1);
        MPI_Bcast(&rc1, 1, MPI_INT, 0, MPI_COMM_WORLD);
        MPI_Bcast(R, (int)nn, MPI_FLOAT, 0, MPI_COMM_WORLD);

        int64_t entries = 0, differ = 0;
        double err_f = 0.0, err_d = 0.0, rmax = 0.0;
        for (int64_t jl = 0; jl < g.nloc; jl++) {
            const int64_t j = sds_dist_grid_col_global(&g, jl);
            for (int64_t il = 0; il < g.mloc; il++) {
                const int64_t i = sds_dist_grid_row_global(&g, il);
                if (i < j) continue;
                const float a = A[jl * g.lld + il];
                entries++;
                differ += bits(a) != bits(R[j * n + i]);
                err_f = fmax(err_f, fabs((double)a - F[j * n + i]));
                err_d = fmax(err_d, fabs((double)a - D[j * n + i]));
                rmax = fmax(rmax, fabs((double)a));
            }
        }
        entries = sum_ranks(entries);
        differ = sum_ranks(differ);
        rmax = max_ranks(rmax);
        err_f = max_ranks(err_f) / rmax;
        err_d = max_ranks(err_d) / dmax;
        const int64_t damaged = sum_ranks(upper_damaged(&g, A));
        const int nt = (int)((n + nb - 1) / nb);
        check(all_ranks(rc == 0 && fail_rank == -1) && rc1 == 0 && entries == n * (n + 1) / 2 &&
                  differ == 0,
              "n %4lld nb %3d (nt %2d, grid %dx%d): bit for bit the 1x1 grid's (%lld of %lld "
              "entries differ), %.3f s",
              (long long)n, nb, nt, g.nprow, g.npcol, (long long)differ, (long long)entries, secs);
        check(err_f <= LAPACK_TOL && err_d <= DOUBLE_FACTOR * lap_err + 1e-7,
              "n %4lld nb %3d: max |tiles - LAPACK float| / max = %.2e (<= %.0e); against "
              "double: tiles %.2e, LAPACK float %.2e (<= %.0f x)",
              (long long)n, nb, err_f, LAPACK_TOL, err_d, lap_err, DOUBLE_FACTOR);
        check(damaged == 0, "n %4lld nb %3d: strict upper triangle intact (%lld entries changed)",
              (long long)n, nb, (long long)damaged);
        free(A);
        sds_dist_grid_free(&g);
    }
    free(R);
    free(D);
    free(F);
    free(S);
}

// ---- (d): not positive definite ------------------------------------------------------------

// The diagonal entry (c, c) set to -1: spotrf on tile c / nb stops at its column c, every
// earlier leading minor being S's. want_rank: the comm rank that must own that tile.
static void check_not_spd(int64_t n, int nb, int want_rank) {
    sds_dist_grid g;
    SDS_ASSERT(sds_dist_grid_init(&g, MPI_COMM_WORLD, n, nb) == SDS_OK);
    const int nt = (int)((n + nb - 1) / nb);
    int k = -1; // the last diagonal tile owned by want_rank
    for (int t = 0; t < nt; t++)
        if (g.prow[want_rank] == t % g.nprow && g.pcol[want_rank] == t % g.npcol) k = t;
    SDS_ASSERT(k >= 0);
    const int64_t c = (int64_t)k * nb + ((int64_t)k * nb + 5 < n ? 5 : 0);
    float *S = make_spd(n, 99);
    S[c * n + c] = -1.0f;
    float *A = distribute(&g, S);
    int fail_rank = 0, fail1 = 0, rc1 = 0;
    const int want_world = want_rank; // g.comm is MPI_COMM_WORLD: the same numbering
    const int rc = sds_dist_tiles_inv_chol(&g, A, &fail_rank);
    if (g_rank == 0) {
        float *R = xmalloc((size_t)(n * n) * sizeof(float));
        rc1 = run_serial_grid(S, n, nb, R, &fail1);
        free(R);
    }
    MPI_Bcast(&rc1, 1, MPI_INT, 0, MPI_COMM_WORLD);
    const int64_t damaged = sum_ranks(upper_damaged(&g, A));
    check(all_ranks(rc == c + 1 && fail_rank == want_world) && rc1 == c + 1 && damaged == 0,
          "n %lld nb %d, A(%lld, %lld) = -1 in tile %d of rank %d: info %d (1x1 grid: %d), "
          "fail_rank %d on every rank, upper triangle intact",
          (long long)n, nb, (long long)c, (long long)c, k, want_rank, rc, rc1, fail_rank);
    free(A);
    free(S);
    sds_dist_grid_free(&g);
}

// ---- out of memory on one rank -------------------------------------------------------------

// The test hook makes rank `who`'s workspace allocation fail: every rank returns
// SDS_DIST_TILES_NO_MEMORY with fail_rank `who` and its message, A untouched.
static void check_no_memory(int who) {
    const int64_t n = 100;
    sds_dist_grid g;
    SDS_ASSERT(sds_dist_grid_init(&g, MPI_COMM_WORLD, n, 32) == SDS_OK);
    float *S = make_spd(n, 5);
    float *A = distribute(&g, S);
    float *A0 = xmalloc((size_t)(g.lld * g.nloc) * sizeof(float));
    memcpy(A0, A, (size_t)(g.lld * g.nloc) * sizeof(float));
    char hook[64];
    snprintf(hook, sizeof hook, "tiles-memory:%d", who);
    setenv("SDS_TEST_FAIL", hook, 1);
    sds_error_clear();
    int fail_rank = 0;
    const int rc = sds_dist_tiles_inv_chol(&g, A, &fail_rank);
    unsetenv("SDS_TEST_FAIL");
    const bool same = memcmp(A, A0, (size_t)(g.lld * g.nloc) * sizeof(float)) == 0;
    const bool told =
        sds_error_code() == SDS_ERR_IO && strstr(sds_error_message(), "out of memory") != NULL;
    check(all_ranks(rc == SDS_DIST_TILES_NO_MEMORY && fail_rank == who && same && told),
          "out of memory on rank %d: %d (SDS_DIST_TILES_NO_MEMORY) on every rank, fail_rank "
          "%d, \"%s\", A untouched",
          who, rc, fail_rank, sds_error_message());
    sds_error_clear();
    free(A0);
    free(A);
    free(S);
    sds_dist_grid_free(&g);
}

// An order-free fingerprint of the lower triangle (XOR over entries of a hash of position and
// bits), the same at any grid when the bits are: printed by the timing runs, so that separate
// runs (rank counts, BLAS thread counts, kernels) can be compared.
static uint64_t lower_hash(const sds_dist_grid *g, const float *A) {
    uint64_t h = 0;
    for (int64_t jl = 0; jl < g->nloc; jl++) {
        const int64_t j = sds_dist_grid_col_global(g, jl);
        for (int64_t il = 0; il < g->mloc; il++) {
            const int64_t i = sds_dist_grid_row_global(g, il);
            if (i < j) continue;
            uint64_t z = ((uint64_t)(i * g->n + j) << 32 | bits(A[jl * g->lld + il])) +
                         0x9e3779b97f4a7c15ull;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull; // splitmix64's finaliser
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            h ^= z ^ (z >> 31);
        }
    }
    uint64_t all = 0;
    MPI_Allreduce(&h, &all, 1, MPI_UINT64_T, MPI_BXOR, MPI_COMM_WORLD);
    return all;
}

// ---- (e): timing -----------------------------------------------------------------------------

static void timing(int64_t n, int nb) {
    float *S = make_spd(n, 7);
    sds_dist_grid g;
    SDS_ASSERT(sds_dist_grid_init(&g, MPI_COMM_WORLD, n, nb) == SDS_OK);
    float *A = distribute(&g, S);
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    const int rc = sds_dist_tiles_inv_chol(&g, A, NULL);
    const double secs = max_ranks(MPI_Wtime() - t0);
    const uint64_t hash = lower_hash(&g, A);
    double lap = 0.0;
    if (g_rank == 0) {
        const int ni = (int)n;
        int info = 0;
        const double t1 = MPI_Wtime();
        spotrf_("L", &ni, S, &ni, &info, 1);
        if (info == 0) spotri_("L", &ni, S, &ni, &info, 1);
        if (info == 0) spotrf_("L", &ni, S, &ni, &info, 1);
        lap = MPI_Wtime() - t1;
        SDS_ASSERT(info == 0);
    }
    check(all_ranks(rc == 0),
          "timing n %lld nb %d grid %dx%d: tiles %.3f s, serial LAPACK float (rank 0) %.3f s; "
          "workspace %.1f MiB per rank; result hash %016llx",
          (long long)n, nb, g.nprow, g.npcol, secs, lap,
          (double)sds_dist_tiles_bytes(&g) / 1048576.0, (unsigned long long)hash);
    free(A);
    free(S);
    sds_dist_grid_free(&g);
}

int main(int argc, char **argv) {
    mpi_test_init(&argc, &argv);
    if (g_rank == 0) printf("test_dist_tiles at %d ranks\n", g_size);
    if (argc > 1 && strcmp(argv[1], "time") == 0) {
        for (int a = 2; a < argc; a++) timing(atoll(argv[a]), 128);
    } else {
        const int64_t orders[] = {1, 50, 128, 300, 1000};
        for (size_t i = 0; i < sizeof orders / sizeof orders[0]; i++)
            check_order(orders[i], 11 + i);
        check_not_spd(300, 32, g_size - 1);
        check_not_spd(300, 32, 0);
        check_not_spd(50, 64, 0); // a single tile
        check_no_memory(g_size - 1);
        timing(2048, 128);
    }
    return mpi_test_finish();
}

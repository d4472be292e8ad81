// The Hessian accumulated on the block-cyclic grid (mpi/dist_gram.h), at the rank count it is
// launched with (tests/dist_grid.cmake runs it at 1, 2, 3 and 4: grids 1x1, 1x2, 1x3, 2x2):
//   mpirun -np G test_dist_gram
// Every rank generates the same sequences from fixed seeds; rank 0 computes the references (the
// serial sds_hessian, and the same module on a 1x1 grid over MPI_COMM_SELF) and broadcasts
// them, and every rank compares its own piece of the grid's result at the pieces' global
// positions; every upper-triangle entry has exactly one owner, and the counts of compared
// entries are summed to prove it.
// Rank 0 prints OK / NOT OK per check and PASSED / FAILED; every rank exits 1 on a failure.
//
// What is asserted:
// - the grid's H equals the 1x1 grid's bit for bit (exact sums: the grid shape cannot matter);
// - the grid's H against the serial ssyrk-based sds_hessian: max |difference| / sqrt(H_ii H_jj)
//   <= SERIAL_TOL; how many entries differ in bits is printed. Bit for bit only where OpenBLAS's
//   ssyrk and the per-block sgemm calls happen to round every dot product alike: they do not in
//   general (mpi/dist_gram.h);
// - diag / set_diag round trips; the quadratic trace within 1e-6 relative of a double
//   computation, and bit for bit the 1x1 grid's; the limit; the memory bound.
#define _POSIX_C_SOURCE 200809L
#include "dist_gram.h"
#include "dist_sparsegpt.h"
#include "hessian.h"
#include "sds_error.h"

#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_test_util.h"

static bool same_bits(float a, float b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

// ---- one configuration -------------------------------------------------------------------

typedef struct {
    int64_t n;
    int nb;
    int nseq;
    int64_t tokens[4]; // per sequence (0 allowed)
    uint64_t seed;
    bool in_place; // sds_dist_gram_finish_in_place, not sds_dist_gram_finish
    int threads;   // sds_dist_gram_threads on the grid under test (0: not called)
} config;

// The sequences: N(0, 1), every 29th column from 3 dead, every 41st from 7 scaled by 30.
static float *make_sequences(const config *c, int64_t *tmax) {
    int64_t total = 0;
    *tmax = 0;
    for (int s = 0; s < c->nseq; s++) {
        total += c->tokens[s];
        if (c->tokens[s] > *tmax) *tmax = c->tokens[s];
    }
    float *X = xmalloc((size_t)(total * c->n) * sizeof(float));
    g_rng = c->seed;
    for (int64_t t = 0; t < total; t++)
        for (int64_t j = 0; j < c->n; j++) {
            float x = normal();
            if (j % 29 == 3) x = 0.0f;
            if (j % 41 == 7) x *= 30.0f;
            X[t * c->n + j] = x;
        }
    return X;
}

// Every rank of g's communicator has mine (the agreement before sds_dist_gram_exchange).
static bool grid_all(const sds_dist_grid *g, bool mine) {
    int v = mine ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, g->comm);
    return v == 1;
}

// The module on grid g over the sequences; A (lld x nloc) receives the piece. Returns status.
static int grid_hessian(const sds_dist_grid *g, const config *c, int threads, const float *X,
                        int64_t tmax, float *A, int64_t *peak) {
    sds_dist_gram d;
    int rc = sds_dist_gram_init(&d, g, tmax);
    if (rc == SDS_OK && threads > 0) rc = sds_dist_gram_threads(&d, threads);
    const float *x = X;
    for (int s = 0; rc == SDS_OK && s < c->nseq; s++) {
        rc = sds_dist_gram_add(&d, x, c->tokens[s]);
        x += c->tokens[s] * c->n;
    }
    if (c->in_place) {
        float *piece = NULL;
        if (rc == SDS_OK) rc = sds_dist_gram_finish_in_place(&d, &piece);
        if (grid_all(g, rc == SDS_OK)) sds_dist_gram_exchange(&d, piece);
        if (rc == SDS_OK) memcpy(A, piece, (size_t)(g->lld * g->nloc) * sizeof(float));
        free(piece);
    } else if (rc == SDS_OK) {
        rc = sds_dist_gram_finish(&d, A);
        if (grid_all(g, rc == SDS_OK)) sds_dist_gram_exchange(&d, A);
    }
    if (rc == SDS_OK && (d.bytes != 0 || d.acc || d.tile)) rc = SDS_ERR_INTERNAL;
    *peak = d.peak_bytes;
    sds_dist_gram_free(&d);
    return rc;
}

// The header's memory bound, recomputed from the grid's shape and the blocks this rank computes
// (counted from sds_dist_gram_worker), with sds_dist_gram_threads' buffers for `threads`.
static int64_t bound_bytes(const sds_dist_grid *g, int64_t T, int threads) {
    int pr, pc, myrow, mycol;
    grid_place(&pr, &pc, &myrow, &mycol);
    const int64_t n = g->n, nb = g->nb;
    const int64_t mloc = numroc(n, (int)nb, myrow, pr), nloc = numroc(n, (int)nb, mycol, pc);
    const int64_t lld = mloc > 1 ? mloc : 1;
    // the blocks this rank computes, and X's column panels they read (nb x T floats each,
    // held while sequences are added, released before the piece is allocated)
    int64_t K = 0, P = 0;
    const int64_t B = (n + nb - 1) / nb;
    char *used = calloc((size_t)B, 1);
    for (int64_t bj = 0; bj < B; bj++)
        for (int64_t bi = 0; bi <= bj; bi++)
            if (sds_dist_gram_worker(g, bi, bj) == g_rank) {
                K++;
                used[bi] = used[bj] = 1;
            }
    for (int64_t b = 0; b < B; b++) P += used[b];
    free(used);
    const int64_t k = threads < K ? threads : K; // (threads only where there are blocks)
    const int64_t panels = T > 0 && K > 0 ? 4 * T * nb * P : 0,
                  piece = nloc > 0 ? 4 * lld * nloc : 4;
    return (K > 0 ? 16 * nb * nb * K : 16) + 4 * nb * nb + (panels > piece ? panels : piece) +
           (k > 1 ? 4 * nb * nb * (k - 1) : 0);
}

// The assignment of blocks to the ranks that compute them (mpi/dist_gram.h), seen from every
// rank: each block's worker is a rank of the grid and every rank agrees on it; the largest load
// (flops as the header weighs them) is never above the owners' and at most one block's weight
// above the mean; the blocks a rank computes for others are sds_dist_gram_foreign's count, and
// all it computes sds_dist_gram_blocks'. Adds the blocks moved (over all ranks) to moved_blocks.
static int64_t moved_blocks = 0;

// Block (bi, bj)'s flops as the header weighs them, and its block-cyclic owner ("Row" order).
static double block_weight(const sds_dist_grid *g, int64_t bi, int64_t bj) {
    const double wi = (double)(g->n - bi * g->nb < g->nb ? g->n - bi * g->nb : g->nb);
    const double wj = (double)(g->n - bj * g->nb < g->nb ? g->n - bj * g->nb : g->nb);
    return bi == bj ? wi * (wi + 1) : 2 * wi * wj;
}
static int block_owner(const sds_dist_grid *g, int64_t bi, int64_t bj) {
    return (int)((bi % g->nprow) * g->npcol + bj % g->npcol);
}

static void check_assignment(const sds_dist_grid *g, const char *name) {
    const int64_t B = (g->n + g->nb - 1) / g->nb;
    double *own = calloc((size_t)g_size, sizeof(double));
    double *work = calloc((size_t)g_size, sizeof(double));
    SDS_ASSERT(own && work);
    double total = 0.0, wmax = 0.0;
    int32_t foreign = 0, mine = 0;
    bool agree = true, in_range = true;
    for (int64_t bj = 0; bj < B; bj++)
        for (int64_t bi = 0; bi <= bj; bi++) {
            const double w = block_weight(g, bi, bj);
            const int o = block_owner(g, bi, bj);
            const int r = sds_dist_gram_worker(g, bi, bj);
            int r0 = r;
            MPI_Bcast(&r0, 1, MPI_INT, 0, MPI_COMM_WORLD);
            agree = agree && r0 == r;
            in_range = in_range && r >= 0 && r < g_size;
            if (r < 0 || r >= g_size) continue;
            own[o] += w;
            work[r] += w;
            total += w;
            if (w > wmax) wmax = w;
            foreign += r == g_rank && o != g_rank;
            mine += r == g_rank;
        }
    double omax = 0.0, amax = 0.0;
    for (int r = 0; r < g_size; r++) {
        if (own[r] > omax) omax = own[r];
        if (work[r] > amax) amax = work[r];
    }
    const double mean = total / g_size;
    const bool better = amax <= omax && amax <= mean + wmax;
    const int64_t moved = sum_ranks(foreign);
    moved_blocks += moved;
    check(all_ranks(agree && in_range && better && foreign == sds_dist_gram_foreign(g) &&
                    mine == sds_dist_gram_blocks(g)),
          "%s: block assignment agreed on every rank, largest load %.3f of the mean (owners "
          "%.3f), %lld block(s) moved",
          name, amax / mean, omax / mean, (long long)moved);
    free(own);
    free(work);
}

// Grid against serial: both are sums over sequences of fp32 dot products over the tokens,
// summed in other orders by OpenBLAS's sgemm blocks and ssyrk; relative to sqrt(H_ii H_jj) the
// difference is a few fp32 roundings of a dot product: up to 8.7e-7 measured (2048 tokens,
// OpenBLAS 0.3.21's Prescott, Haswell, SkylakeX, Cooperlake and Zen kernels).
#define SERIAL_TOL 4e-6

static void run_config(const config *c) {
    const int64_t n = c->n;
    int64_t tmax;
    float *X = make_sequences(c, &tmax);
    char name[96];
    snprintf(name, sizeof name, "n %lld nb %d tokens %lld/%lld/%lld/%lld%s", (long long)n, c->nb,
             (long long)c->tokens[0], (long long)c->tokens[1], (long long)c->tokens[2],
             (long long)c->tokens[3], c->threads > 1 ? ", blocks on threads" : "");

    // References on rank 0 (serial sds_hessian; the module on a 1x1 grid over MPI_COMM_SELF),
    // broadcast whole: every rank checks its own piece against them.
    float *Hs = xmalloc((size_t)(n * n) * sizeof(float)); // row-major, full
    float *A1 = xmalloc((size_t)(n * n) * sizeof(float)); // column-major, lld = n
    sds_dist_grid g1;
    int rc1 = SDS_OK;
    if (g_rank == 0) {
        sds_hessian h;
        SDS_ASSERT(sds_hessian_init(&h, n, SDS_HESSIAN_GRAM) == SDS_OK);
        const float *x = X;
        for (int s = 0; s < c->nseq; s++) {
            SDS_ASSERT(sds_hessian_add(&h, x, 1, c->tokens[s]) == SDS_OK);
            x += c->tokens[s] * n;
        }
        SDS_ASSERT(sds_hessian_finish(&h) == SDS_OK);
        memcpy(Hs, h.H, (size_t)(n * n) * sizeof(float));
        sds_hessian_free(&h);
        SDS_ASSERT(sds_dist_grid_init(&g1, MPI_COMM_SELF, n, c->nb) == SDS_OK);
        int64_t peak1;
        rc1 = grid_hessian(&g1, c, 0, X, tmax, A1, &peak1);
    }
    MPI_Bcast(&rc1, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(Hs, (int)(n * n), MPI_FLOAT, 0, MPI_COMM_WORLD);
    MPI_Bcast(A1, (int)(n * n), MPI_FLOAT, 0, MPI_COMM_WORLD);

    sds_dist_grid g;
    SDS_ASSERT(sds_dist_grid_init(&g, MPI_COMM_WORLD, n, c->nb) == SDS_OK);
    float *A = xmalloc((size_t)(g.lld * g.nloc) * sizeof(float));
    int64_t peak;
    const int rc = grid_hessian(&g, c, c->threads, X, tmax, A, &peak);
    check(all_ranks(rc == SDS_OK && rc1 == SDS_OK), "%s (grid %dx%d): init, add, finish succeed",
          name, g.nprow, g.npcol);

    // This rank's piece against both references.
    int64_t compared = 0, diff_1x1 = 0, diff_serial = 0, lower_nonzero = 0;
    double rel_serial = 0.0;
    for (int64_t jl = 0; jl < g.nloc; jl++) {
        const int64_t j = sds_dist_grid_col_global(&g, jl);
        for (int64_t il = 0; il < g.mloc; il++) {
            const int64_t i = sds_dist_grid_row_global(&g, il);
            const float a = A[jl * g.lld + il];
            if (i > j) {
                lower_nonzero += a != 0.0f;
                continue;
            }
            compared++;
            diff_1x1 += !same_bits(a, A1[j * n + i]);
            const float s = Hs[i * n + j];
            diff_serial += !same_bits(a, s);
            // relative to sqrt(H_ii H_jj) >= |H_ij|: the scale of the dot products' rounding
            // (off-diagonal entries near 0 have no relative accuracy of their own)
            const double scale = sqrt(fabs((double)Hs[i * n + i] * Hs[j * n + j]));
            const double dif = fabs((double)a - (double)s);
            const double rel = dif == 0.0 ? 0.0 : dif / (scale > 0.0 ? scale : 1e-30);
            if (rel > rel_serial) rel_serial = rel;
        }
    }
    // The 1x1 grid against the serial too.
    int64_t diff_1x1_serial = 0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i <= j; i++)
            diff_1x1_serial += !same_bits(A1[j * n + i], Hs[i * n + j]);
    compared = sum_ranks(compared);
    diff_1x1 = sum_ranks(diff_1x1);
    diff_serial = sum_ranks(diff_serial);
    lower_nonzero = sum_ranks(lower_nonzero);
    rel_serial = max_ranks(rel_serial);
    check(compared == n * (n + 1) / 2 && lower_nonzero == 0,
          "%s: every upper entry owned once (%lld of %lld), lower entries 0", name,
          (long long)compared, (long long)(n * (n + 1) / 2));
    check(diff_1x1 == 0, "%s: grid %dx%d equals the 1x1 grid bit for bit (%lld entries differ)",
          name, g.nprow, g.npcol, (long long)diff_1x1);
    // The grid equals the 1x1 grid, so it differs from the serial where the 1x1 grid does.
    check(rel_serial <= SERIAL_TOL && all_ranks(diff_1x1_serial == 0) == (diff_serial == 0),
          "%s: against the serial ssyrk sds_hessian: %lld of %lld upper entries differ in bits "
          "(1x1 grid: %lld), max |difference| / sqrt(H_ii H_jj) %.3g <= %.0e",
          name, (long long)diff_serial, (long long)compared, (long long)diff_1x1_serial, rel_serial,
          SERIAL_TOL);

    check_assignment(&g, name);
    // Memory: the documented bound, and the bound against the share of the upper triangle's
    // sums (8 n^2 bytes) and the fp32 matrix (4 n^2).
    const int64_t bound = bound_bytes(&g, tmax, c->threads);
    const bool mem_ok = peak <= bound && (c->threads > 1 || sds_dist_gram_bound(&g, tmax) == bound);
    const int64_t peak_max = (int64_t)max_ranks((double)peak);
    const int64_t bound_max = (int64_t)max_ranks((double)bound);
    check(all_ranks(mem_ok), "%s: peak bytes per rank <= the header's bound (max %lld <= %lld)",
          name, (long long)peak_max, (long long)bound_max);
    if (n >= 768) {
        const double share = 12.0 * (double)n * (double)n / g_size;
        check(all_ranks((double)bound <= 1.5 * share),
              "%s: bound <= 1.5 x 12 n^2 bytes / %d (max %.3f x)", name, g_size,
              max_ranks((double)bound / share));
    }

    // diag / set_diag
    if (rc == SDS_OK) {
        float *dg = xmalloc((size_t)n * sizeof(float)), *d2 = xmalloc((size_t)n * sizeof(float));
        sds_dist_grid_diag(&g, A, dg);
        bool ok = true;
        for (int64_t j = 0; j < n; j++) ok = ok && same_bits(dg[j], A1[j * n + j]);
        float *B = xmalloc((size_t)(g.lld * g.nloc) * sizeof(float));
        memcpy(B, A, (size_t)(g.lld * g.nloc) * sizeof(float));
        for (int64_t j = 0; j < n; j++) d2[j] = j % 3 == 0 ? -0.0f : 3.0f * dg[j] + 1.0f;
        sds_dist_grid_set_diag(&g, B, d2);
        sds_dist_grid_diag(&g, B, dg);
        for (int64_t j = 0; j < n; j++) ok = ok && same_bits(dg[j], d2[j]);
        for (int64_t jl = 0; jl < g.nloc; jl++)
            for (int64_t il = 0; il < g.mloc; il++)
                if (sds_dist_grid_row_global(&g, il) != sds_dist_grid_col_global(&g, jl))
                    ok = ok && same_bits(B[jl * g.lld + il], A[jl * g.lld + il]);
        check(all_ranks(ok),
              "%s: diag equals the 1x1 grid's diagonal; set_diag then diag round trips "
              "(-0.0 kept), off-diagonal entries untouched",
              name);

        // Quadratic trace: H's lower triangle and diagonal in A overwritten with NaN (not read).
        sds_dist_grid_diag(&g, A, dg);
        for (int64_t jl = 0; jl < g.nloc; jl++)
            for (int64_t il = 0; il < g.mloc; il++)
                if (sds_dist_grid_row_global(&g, il) >= sds_dist_grid_col_global(&g, jl))
                    B[jl * g.lld + il] = NAN;
        const int64_t rows = 1 + n / 16;
        float *D = xmalloc((size_t)(rows * n) * sizeof(float));
        g_rng = c->seed + 100;
        for (int64_t k = 0; k < rows * n; k++) D[k] = normal() * 0.05f;
        double q = 0.0;
        const int rq = sds_dist_quad_trace(&g, B, dg, D, rows, &q);
        // on rank 0: the 1x1 grid, and sum_ij H_ij (D^T D)_ij in double with the serial H
        double ref[3] = {0.0, 0.0, 0.0}; // 1x1 grid's status, its value, the reference
        if (g_rank == 0) {
            ref[0] = sds_dist_quad_trace(&g1, A1, dg, D, rows, &ref[1]);
            double *col = xmalloc((size_t)n * sizeof(double));
            for (int64_t j = 0; j < n; j++) {
                for (int64_t i = 0; i < n; i++) col[i] = 0.0;
                for (int64_t r = 0; r < rows; r++) {
                    const double dj = D[r * n + j];
                    for (int64_t i = 0; i < n; i++) col[i] += (double)D[r * n + i] * dj;
                }
                for (int64_t i = 0; i < n; i++) ref[2] += (double)Hs[i * n + j] * col[i];
            }
            free(col);
        }
        MPI_Bcast(ref, 3, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        const int rq1 = (int)ref[0];
        const double q1 = ref[1];
        const double rel = fabs(q - ref[2]) / fabs(ref[2]);
        check(all_ranks(rq == SDS_OK && rq1 == SDS_OK && rel <= 1e-6 &&
                        memcmp(&q, &q1, sizeof q) == 0),
              "%s: quadratic trace %.17g, 1x1 grid %.17g (bit for bit), double reference %.17g "
              "(relative %.2g <= 1e-6)",
              name, q, q1, ref[2], rel);
        // A NaN in D: numeric error on every rank, whichever rank's columns hold it.
        D[(rows - 1) * n + n / 2] = NAN;
        sds_error_clear();
        const int rn = sds_dist_quad_trace(&g, B, dg, D, rows, &q);
        check(all_ranks(rn == SDS_ERR_NUMERIC && strstr(sds_error_message(), "not finite") != NULL),
              "%s: a NaN in D: every rank returns numeric, \"%s\"", name, sds_error_message());
        sds_error_clear();
        free(D);
        free(B);
        free(dg);
        free(d2);
    }

    sds_dist_grid_free(&g);
    if (g_rank == 0) sds_dist_grid_free(&g1);
    free(Hs);
    free(A);
    free(A1);
    free(X);
}

// ---- failures ----------------------------------------------------------------------------

static void check_failures(void) {
    const int64_t n = 96, T = 16;
    const int nb = 16;
    sds_dist_grid g;
    SDS_ASSERT(sds_dist_grid_init(&g, MPI_COMM_WORLD, n, nb) == SDS_OK);
    float *X = xmalloc((size_t)(T * n) * sizeof(float));
    const int64_t c = 53; // the column made large; (c, c) is computed by one rank
    const int worker = sds_dist_gram_worker(&g, c / nb, c / nb);
    const bool owner = worker == g_rank;
    const char *needle = "7.04e+13"; // SDS_HESSIAN_XSUM_LIMIT, as the message prints it

    // Finite but over the limit: only Gram entry (c, c) = T * 1e16 >= 2^46.
    // Not finite: X[0][c] = 1e30 makes (c, c) overflow fp32.
    // Passes 2 and 3: the same with the blocks on 3 threads.
    for (int pass = 0; pass < 4; pass++) {
        g_rng = 77;
        for (int64_t k = 0; k < T * n; k++) X[k] = normal();
        if (pass % 2 == 0)
            for (int64_t t = 0; t < T; t++) X[t * n + c] = 1e8f;
        else
            X[c] = 1e30f;
        sds_dist_gram d;
        SDS_ASSERT(sds_dist_gram_init(&d, &g, T) == SDS_OK);
        if (pass >= 2) SDS_ASSERT(sds_dist_gram_threads(&d, 3) == SDS_OK);
        sds_error_clear();
        const int rc = sds_dist_gram_add(&d, X, T);
        const bool named = strstr(sds_error_message(), needle) != NULL;
        const bool mine = owner
                              ? rc == SDS_ERR_NUMERIC && named
                              : (rc == SDS_OK || (pass % 2 == 1 && rc == SDS_ERR_NUMERIC && named));
        char msg[256];
        snprintf(msg, sizeof msg, "%s", owner ? sds_error_message() : "");
        MPI_Bcast(msg, sizeof msg, MPI_CHAR, worker, MPI_COMM_WORLD);
        check(all_ranks(mine),
              "%s%s: the rank computing (%lld, %lld) returns numeric naming the limit: \"%s\"",
              pass % 2 == 0 ? "a Gram entry of 1.6e17" : "an activation of 1e30",
              pass >= 2 ? " (blocks on 3 threads)" : "", (long long)c, (long long)c, msg);
        sds_dist_gram_free(&d);
        sds_error_clear();
    }

    // finish with nothing added; T beyond the buffers.
    sds_dist_gram d;
    SDS_ASSERT(sds_dist_gram_init(&d, &g, T) == SDS_OK);
    const int r1 = sds_dist_gram_add(&d, X, T + 1);
    float *none = NULL;
    const int r2 = sds_dist_gram_finish_in_place(&d, &none);
    check(all_ranks(r1 == SDS_ERR_INPUT && r2 == SDS_ERR_INPUT),
          "a sequence longer than init's T, finish with no sequence: input errors");
    sds_dist_gram_free(&d);
    sds_error_clear();
    free(X);
    sds_dist_grid_free(&g);
}

// The assignment on grids larger than this run's ranks: shapes up to 8 x 8 (as at 64 ranks a
// stage) and widths up to 8192 with a short last block, on grid structs filled without BLACS
// (the assignment reads only the shape, every rank's place, n and nb). Per shape: every block's
// worker is a rank of the grid; the largest load is never above the owners' and at most one
// block's weight above the mean; and for every rank sds_dist_gram_blocks and _foreign count
// what the workers say. Returns the blocks moved over all shapes.
static int64_t check_assignment_shapes(void) {
    static const int shapes[][2] = {{1, 3}, {2, 3}, {3, 3}, {2, 4}, {3, 5}, {4, 4}, {4, 8}, {8, 8}};
    static const int64_t widths[] = {1000, 2048, 3000, 7168, 8192};
    int64_t moved = 0, bad_shapes = 0, cases = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
            sds_dist_grid g;
            memset(&g, 0, sizeof g);
            g.nprow = shapes[si][0];
            g.npcol = shapes[si][1];
            g.size = g.nprow * g.npcol;
            g.n = widths[wi];
            g.nb = 256;
            int *pl = malloc(2 * sizeof(int) * (size_t)g.size);
            SDS_ASSERT(pl);
            g.prow = pl;
            g.pcol = pl + g.size;
            for (int r = 0; r < g.size; r++) {
                g.prow[r] = r / g.npcol; // "Row" order, as sds_dist_grid_init's
                g.pcol[r] = r % g.npcol;
            }
            const int64_t B = (g.n + g.nb - 1) / g.nb;
            double *own = calloc((size_t)g.size, sizeof(double));
            double *work = calloc((size_t)g.size, sizeof(double));
            int32_t *blocks = calloc((size_t)g.size, sizeof(int32_t));
            int32_t *foreign = calloc((size_t)g.size, sizeof(int32_t));
            SDS_ASSERT(own && work && blocks && foreign);
            double total = 0.0, wmax = 0.0;
            bool ok = true;
            for (int64_t bj = 0; bj < B; bj++)
                for (int64_t bi = 0; bi <= bj; bi++) {
                    const double w = block_weight(&g, bi, bj);
                    const int o = block_owner(&g, bi, bj);
                    const int r = sds_dist_gram_worker(&g, bi, bj);
                    if (r < 0 || r >= g.size) {
                        ok = false;
                        continue;
                    }
                    own[o] += w;
                    work[r] += w;
                    total += w;
                    wmax = w > wmax ? w : wmax;
                    blocks[r]++;
                    foreign[r] += r != o;
                    moved += r != o;
                }
            double omax = 0.0, amax = 0.0;
            for (int r = 0; r < g.size; r++) {
                omax = own[r] > omax ? own[r] : omax;
                amax = work[r] > amax ? work[r] : amax;
                g.rank = r;
                ok = ok && sds_dist_gram_blocks(&g) == blocks[r] &&
                     sds_dist_gram_foreign(&g) == foreign[r];
            }
            ok = ok && amax <= omax && amax <= total / g.size + wmax;
            bad_shapes += !ok;
            cases++;
            if (!ok && g_rank == 0)
                printf("  grid %dx%d, n %lld: largest load %.3f of the mean (owners %.3f)\n",
                       g.nprow, g.npcol, (long long)g.n, amax / (total / g.size),
                       omax / (total / g.size));
            free(own);
            free(work);
            free(blocks);
            free(foreign);
            free(pl);
        }
    check(all_ranks(bad_shapes == 0),
          "block assignment on %lld grid shapes up to 8x8 and widths up to 8192 (no BLACS): "
          "workers in range, largest load within one block of the mean and never above the "
          "owners', blocks and foreign blocks counted alike (%lld shapes fail, %lld blocks moved)",
          (long long)cases, (long long)bad_shapes, (long long)moved);
    return moved;
}

int main(int argc, char **argv) {
    mpi_test_init(&argc, &argv);
    if (g_rank == 0) printf("test_dist_gram at %d ranks\n", g_size);

    const config configs[] = {
        {64, 16, 3, {5, 37, 128, 0}, 1, false, 0},
        {200, 32, 4, {37, 0, 128, 5}, 2, true, 0},     // an empty sequence; short last block
        {768, 64, 2, {128, 37, 0, 0}, 3, false, 0},    // the default block size
        {40, 32, 2, {37, 5, 0, 0}, 4, true, 0},        // empty pieces at 3 ranks
        {20, 32, 2, {5, 37, 0, 0}, 5, true, 0},        // one block: empty pieces beyond 1 rank
        {200, 24, 3, {600, 2048, 321, 0}, 6, true, 0}, // token loops longer than BLAS's inner block
        // blocks spread over 3 and 2 threads (sds_dist_gram_threads): the same bits
        {768, 64, 2, {128, 37, 0, 0}, 3, false, 3},
        {200, 24, 3, {600, 2048, 321, 0}, 6, true, 2},
        {20, 32, 2, {5, 37, 0, 0}, 5, true, 4}, // one block: a single thread
    };
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) run_config(&configs[i]);
    check(check_assignment_shapes() > 0, "the larger grids move blocks");
    // the bit-for-bit checks above covered blocks computed away from their owners
    if (g_size > 1)
        check(moved_blocks > 0, "blocks computed by other ranks than their owners: %lld",
              (long long)moved_blocks);
    check_failures();

    return mpi_test_finish();
}

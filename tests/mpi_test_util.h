// Helpers shared by the MPI tests (test_dist_sparsegpt.c, test_dist_gram.c, test_dist_tiles.c):
// checks that rank 0 prints and every rank counts, reductions over MPI_COMM_WORLD, a seeded
// generator, and the block-cyclic counts. Static inline, so a test need not use every one.
// A test's main starts with mpi_test_init and returns mpi_test_finish().
#pragma once
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int g_rank, g_size, g_failures;

// MPI_Init, then g_rank and g_size in MPI_COMM_WORLD.
static inline void mpi_test_init(int *argc, char ***argv) {
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
}

// Rank 0 prints PASSED / FAILED and the count; MPI_Finalize; returns main's status (1: failed).
static inline int mpi_test_finish(void) {
    if (g_rank == 0)
        printf("%s: %d failed checks at %d ranks\n", g_failures ? "FAILED" : "PASSED", g_failures,
               g_size);
    MPI_Finalize();
    return g_failures ? 1 : 0;
}

// Rank 0 prints; every rank counts, so every rank exits alike. ok must be the same everywhere.
static inline void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void check(bool ok, const char *fmt, ...) {
    if (g_rank == 0) {
        va_list ap;
        va_start(ap, fmt);
        printf("%s ", ok ? "OK    " : "NOT OK");
        vprintf(fmt, ap);
        printf("\n");
        fflush(stdout);
        va_end(ap);
    }
    if (!ok) g_failures++;
}

// malloc (of at least 1 byte) that aborts every rank when out of memory.
static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return p;
}

// true on every rank when true on all.
static inline bool all_ranks(bool mine) {
    int in = mine, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    return out != 0;
}

// The sum over all ranks, on every rank.
static inline int64_t sum_ranks(int64_t mine) {
    int64_t out = 0;
    MPI_Allreduce(&mine, &out, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return out;
}

// The maximum over all ranks, on every rank.
static inline double max_ranks(double mine) {
    double out = 0.0;
    MPI_Allreduce(&mine, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

// The generator's state: set it to a seed, and every rank draws the same sequence.
static uint64_t g_rng;

// Uniform in (0, 1): a 64-bit LCG's top 53 bits.
static inline double uniform(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(g_rng >> 11) + 0.5) / 9007199254740992.0;
}

// N(0, 1) by Box-Muller, two uniform draws.
static inline float normal(void) {
    return (float)(sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform()));
}

// How many of n indices, in blocks of nb dealt cyclically to P places, place p holds (numroc).
static inline int64_t numroc(int64_t n, int64_t nb, int p, int P) {
    int64_t count = 0;
    for (int64_t b = p; b * nb < n; b += P) count += (b * nb + nb < n ? nb : n - b * nb);
    return count;
}

// The grid of g_size ranks as sds_dist_grid makes it (pr <= pc, most square) and this rank's place.
static inline void grid_place(int *pr, int *pc, int *myrow, int *mycol) {
    *pr = 1;
    for (int d = 1; d * d <= g_size; d++)
        if (g_size % d == 0) *pr = d;
    *pc = g_size > *pr ? g_size / *pr : 1; // row-major places, as BLACS's "Row"
    *myrow = g_rank / *pc;
    *mycol = g_rank % *pc;
}

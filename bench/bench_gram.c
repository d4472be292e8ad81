// Hessian accumulation as `sds-mpi prune` runs it, next to the machine's sgemm in the same run.
//
//   mpirun -np P bench_gram [--seqs N] [--seqlen S] [--repeats R] [--json] [COLS ...]
//   COLS: input widths (default 768 2048 3072: OPT-125M's and OPT-1.3B's).
//
// For each width, R rounds (default 3), each timing three things one after the other on the
// same random operands (uniform [-1, 1]; N sequences of S tokens, default 64 x 2048, cycling
// through 4 distinct sequences so that the operands do not sit in cache):
//   - "exact": the statistics of Wanda and SDS, and SparseGPT's up to prune's
//     --local-hessian-max columns (default 2048: its local route, mpi/prune.c; the
//     conversion there is only of the rank's piece, here of the whole H): each rank adds its share
//     of the sequences (contiguous, as prune deals them) with sds_hessian_add, one ssyrk and one
//     exact-sum conversion per sequence; then the exact sums' all-reduce and the conversion to
//     H (sds_hessian_allreduce, sds_hessian_finish);
//   - "grid": SparseGPT's above --local-hessian-max (mpi/dist_gram.h): every rank adds its
//   block-cyclic piece of every
//     sequence's Gram on the P-rank grid (256 x 256 blocks, as prune), then converts it. Not
//     counted: the broadcast of each sequence's inputs, which prune times as communication;
//   - "sgemm": each rank computes the full X^T X (cblas_sgemm, beta 1) of its share of the
//     sequences: the machine's sgemm GFLOP/s on the same operands with the same ranks and BLAS
//     threads.
// Each time runs from a barrier to a barrier. Medians of R. GFLOP/s of the two Hessians count
// the triangle, N S n (n + 1) flops; sgemm's its 2 N S n^2. The ratio (Hessian GFLOP/s over
// sgemm GFLOP/s) is issue 4's measure (target 0.8). Ranks take BLAS threads as prune does
// (mpi/runtime.c: the cores they may run on, shared among the node's ranks).
#define _POSIX_C_SOURCE 200809L
#include "dist_gram.h"
#include "hessian.h"
#include "plan.h"
#include "runtime.h"
#include "sds_error.h"
#include "xsum_mpi.h"

#include <cblas.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPEATS 15
#define MAX_WIDTHS  16
enum { NBUF = 4, GRID_NB = 256 };

static double median(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            const double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what) {
    fprintf(stderr, "bench_gram: %s: %s\n", what, sds_error_message());
    MPI_Abort(MPI_COMM_WORLD, 2);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_gram: out of memory (%zu bytes)\n", n);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return p;
}

static void fill_uniform(float *a, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        a[i] = (float)((double)(s >> 11) * 0x1.0p-52 - 1.0);
    }
}

// sequences at once / threads per rank for the Grams (prune's: SDS_GRAM_BATCH, else the BLAS
// threads)
static int32_t gram_batch = 1;

static double exact_path(int64_t n, const float *X, int64_t lo, int64_t hi, int64_t S) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    sds_hessian h;
    if (sds_hessian_init(&h, n, SDS_HESSIAN_GRAM) != SDS_OK) die("sds_hessian_init");
    // (as prune: with several BLAS threads, that many sequences' Grams at once)
    if (sds_hessian_batch(&h, S, gram_batch) != SDS_OK) die("sds_hessian_batch");
    for (int64_t s = lo; s < hi; s++)
        if (sds_hessian_add(&h, X + (s % NBUF) * S * n, 1, S) != SDS_OK) die("sds_hessian_add");
    if (sds_hessian_flush(&h) != SDS_OK) die("sds_hessian_flush");
    sds_hessian_allreduce(MPI_COMM_WORLD, &h);
    if (sds_hessian_finish(&h) != SDS_OK) die("sds_hessian_finish");
    MPI_Barrier(MPI_COMM_WORLD);
    const double t = MPI_Wtime() - t0;
    sds_hessian_free(&h);
    return t;
}

static double grid_path(const sds_dist_grid *g, const float *X, int64_t N, int64_t S) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    sds_dist_gram d;
    if (sds_dist_gram_init(&d, g, S) != SDS_OK) die("sds_dist_gram_init");
    if (sds_dist_gram_threads(&d, gram_batch) != SDS_OK) die("sds_dist_gram_threads");
    for (int64_t s = 0; s < N; s++)
        if (sds_dist_gram_add(&d, X + (s % NBUF) * S * g->n, S) != SDS_OK) die("sds_dist_gram_add");
    float *A = NULL;
    if (sds_dist_gram_finish_in_place(&d, &A) != SDS_OK) die("sds_dist_gram_finish");
    sds_dist_gram_exchange(&d, A);
    MPI_Barrier(MPI_COMM_WORLD);
    const double t = MPI_Wtime() - t0;
    free(A);
    sds_dist_gram_free(&d);
    return t;
}

static double sgemm_path(int64_t n, const float *X, int64_t lo, int64_t hi, int64_t S, float *G) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    memset(G, 0, (size_t)(n * n) * sizeof(float));
    for (int64_t s = lo; s < hi; s++) {
        const float *x = X + (s % NBUF) * S * n;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)n, (int)S, 1.0f, x,
                    (int)n, x, (int)n, 1.0f, G, (int)n);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return MPI_Wtime() - t0;
}

int main(int argc, char **argv) {
    sds_runtime_blas_core_fix(argc, argv);
    MPI_Init(&argc, &argv);
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    const int threads = sds_runtime_blas_threads(MPI_COMM_WORLD);
    if (sds_hessian_batch_size(getenv("SDS_GRAM_BATCH"), threads, &gram_batch) != SDS_OK) {
        fprintf(stderr, "bench_gram: %s\n", sds_error_message());
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int64_t N = 64, S = 2048, widths[MAX_WIDTHS];
    int repeats = 3, nw = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--seqs") && i + 1 < argc)
            N = atoll(argv[++i]);
        else if (!strcmp(a, "--seqlen") && i + 1 < argc)
            S = atoll(argv[++i]);
        else if (!strcmp(a, "--repeats") && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else if (!strcmp(a, "--json"))
            json = true;
        else if (a[0] != '-' && nw < MAX_WIDTHS && atoll(a) > 0)
            widths[nw++] = atoll(a);
        else {
            if (rank == 0)
                fprintf(stderr,
                        "usage: %s [--seqs N] [--seqlen S] [--repeats R] [--json] [COLS ...] "
                        "(at most %d widths)\n",
                        argv[0], MAX_WIDTHS);
            MPI_Finalize();
            return 2;
        }
    }
    if (N < P || S < 1 || S > 65536 || repeats < 1 || repeats > MAX_REPEATS) {
        if (rank == 0)
            fprintf(stderr,
                    "bench_gram: need --seqs >= ranks (%d), 1 <= --seqlen <= 65536, "
                    "1 <= --repeats <= %d\n",
                    P, MAX_REPEATS);
        MPI_Finalize();
        return 2;
    }
    if (nw == 0) {
        widths[nw++] = 768;
        widths[nw++] = 2048;
        widths[nw++] = 3072;
    }
    const int64_t lo = N * rank / P, hi = N * (rank + 1) / P; // this rank's sequences
    if (rank == 0) {
        if (json)
            printf("{\"kind\": \"setup\", \"ranks\": %d, \"blas_threads\": %d, \"blas_core\": "
                   "\"%s\", \"seqs\": %lld, \"seqlen\": %lld, \"repeats\": %d}\n",
                   P, threads, openblas_get_corename(), (long long)N, (long long)S, repeats);
        else
            printf("%d rank(s) x %d BLAS thread(s), OpenBLAS %s kernels; %lld sequences of %lld "
                   "tokens; medians of %d\n",
                   P, threads, openblas_get_corename(), (long long)N, (long long)S, repeats);
        fflush(stdout);
    }
    for (int w = 0; w < nw; w++) {
        const int64_t n = widths[w];
        float *X = xmalloc((size_t)(NBUF * S * n) * sizeof(float));
        fill_uniform(X, NBUF * S * n, (uint64_t)n);
        float *G = xmalloc((size_t)(n * n) * sizeof(float));
        sds_dist_grid g;
        if (sds_dist_grid_init(&g, MPI_COMM_WORLD, n, GRID_NB) != SDS_OK) die("the grid");
        double te[MAX_REPEATS], tg[MAX_REPEATS], tm[MAX_REPEATS];
        for (int r = 0; r < repeats; r++) {
            te[r] = exact_path(n, X, lo, hi, S);
            tg[r] = grid_path(&g, X, N, S);
            tm[r] = sgemm_path(n, X, lo, hi, S, G);
        }
        sds_dist_grid_free(&g);
        free(G);
        free(X);
        const double e = median(te, repeats), gr = median(tg, repeats), m = median(tm, repeats);
        const double tri = (double)N * (double)S * (double)n * (double)(n + 1);
        const double full = 2.0 * (double)N * (double)S * (double)n * (double)n;
        const double ge = 1e-9 * tri / e, gg = 1e-9 * tri / gr, gm = 1e-9 * full / m;
        if (rank != 0) continue;
        // (prune's default route for SparseGPT at this width; Wanda and SDS always take exact)
        const char *sgpt = n <= SDS_LOCAL_HESSIAN_MAX ? "exact" : "grid";
        if (json)
            printf("{\"kind\": \"gram\", \"cols\": %lld, \"exact_seconds\": %.6f, "
                   "\"exact_gflops\": %.3f, \"grid_seconds\": %.6f, \"grid_gflops\": %.3f, "
                   "\"sgemm_seconds\": %.6f, \"sgemm_gflops\": %.3f, \"sparsegpt_path\": "
                   "\"%s\"}\n",
                   (long long)n, e, ge, gr, gg, m, gm, sgpt);
        else
            printf("cols %5lld | exact %8.3f s %6.1f GFLOP/s %.2f | grid %8.3f s %6.1f GFLOP/s "
                   "%.2f | sgemm %8.3f s %6.1f GFLOP/s | SparseGPT's path: %s\n",
                   (long long)n, e, ge, ge / gm, gr, gg, gg / gm, m, gm, sgpt);
        fflush(stdout);
    }
    MPI_Finalize();
    return 0;
}

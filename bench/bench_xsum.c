#define _POSIX_C_SOURCE 200809L
// The exact-sum statistics' extra cost: one sequence's X^T X (ssyrk, as sds_hessian_add does it)
// next to converting that triangle into the 128-bit accumulators (src/xsum.h), median of 7.
//   build/bench_xsum [tokens=2048] [cols ...]    (OPENBLAS_NUM_THREADS as prune would use)
#include "xsum.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const int T = argc > 1 ? atoi(argv[1]) : 2048;
    int defaults[] = {768, 2048, 3072}, *cols = defaults, ncols = 3;
    if (argc > 2) {
        ncols = argc - 2;
        cols = malloc(sizeof(int) * (size_t)ncols);
        for (int k = 0; k < ncols; k++) cols[k] = atoi(argv[k + 2]);
    }
    printf("tokens %d, %d BLAS thread(s)\n", T, openblas_get_num_threads());
    for (int k = 0; k < ncols; k++) {
        const int n = cols[k];
        float *X = malloc(sizeof(float) * (size_t)T * (size_t)n);
        float *H = calloc((size_t)n * (size_t)n, sizeof(float));
        sds_xsum_t *acc = calloc((size_t)n * (size_t)(n + 1) / 2, sizeof(sds_xsum_t));
        if (!X || !H || !acc) return 1;
        for (size_t i = 0; i < (size_t)T * (size_t)n; i++)
            X[i] = (float)((i * 2654435761u) % 1000u) / 500.0f - 1.0f;
        double ts[7], tc[7];
        for (int r = 0; r < 7; r++) {
            const double t0 = now();
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, T, 1.0f, X, n, 0.0f, H, n);
            const double t1 = now();
            sds_xsum_add_upper_f32(acc, H, n, 7.0e13);
            ts[r] = t1 - t0;
            tc[r] = now() - t1;
        }
        qsort(ts, 7, sizeof(double), cmp);
        qsort(tc, 7, sizeof(double), cmp);
        printf("cols %5d: ssyrk %8.2f ms, exact-sum conversion %7.2f ms (%.1f%% of the ssyrk)\n", n,
               1e3 * ts[3], 1e3 * tc[3], 100.0 * tc[3] / ts[3]);
        free(X);
        free(H);
        free(acc);
    }
    return 0;
}

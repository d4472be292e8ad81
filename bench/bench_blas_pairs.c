#define _POSIX_C_SOURCE 200809L
// Why prune batches its Grams on a rank with 2 BLAS threads (src/hessian.h: sds_hessian_batch)
// and starts with OPENBLAS_THREAD_TIMEOUT=4 (mpi/runtime.h): one sequence's Gram (ssyrk) per
// call on OpenBLAS's 2 threads, against two sequences at once, each on its own thread with
// single-threaded ssyrk calls (the same calls, so the same bits per sequence). It does not
// re-execute itself as sds-mpi does: as it is it shows OpenBLAS's default. Before each
// Gram, as in prune, a threaded sgemm of the forward pass's size (T x cols x cols) runs; after
// it OpenBLAS's pthread workers spin for OPENBLAS_THREAD_TIMEOUT (default 2^28 cycles) before
// they sleep, taking a core from our second thread. Compare:
//   build/tests/bench_blas_pairs [cols=768]
//   OPENBLAS_THREAD_TIMEOUT=4 build/tests/bench_blas_pairs [cols=768]
// Prints each way's triangle GFLOP/s over the 2-thread sgemm's (the full X^T X of the same
// sequences), 3 rounds of 16 sequences of 2048 tokens. Only the Gram calls are timed.
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { T = 2048, S = 16 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    const float *X;
    float *G;
    int n;
} gram_job;

static void *gram(void *arg) {
    const gram_job *j = arg;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, j->n, T, 1.0f, j->X, j->n, 0.0f, j->G, j->n);
    return NULL;
}

static float *filled(size_t count) {
    float *p = malloc(count * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_blas_pairs: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < count; i++) p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return p;
}

int main(int argc, char **argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 768;
    if (n < 1 || n > 16384) {
        fprintf(stderr, "usage: %s [cols, 1 to 16384]\n", argv[0]);
        return 2;
    }
    const size_t seq = (size_t)T * (size_t)n;
    float *X = filled((size_t)S * seq), *W = filled((size_t)n * (size_t)n), *Y = filled(seq);
    float *G0 = filled((size_t)n * (size_t)n), *G1 = filled((size_t)n * (size_t)n);
    const double tri = (double)S * T * n * (n + 1.0), full = 2.0 * S * T * (double)n * n;
    const char *tmo = getenv("OPENBLAS_THREAD_TIMEOUT");
    for (int round = 0; round < 3; round++) {
        double one = 0.0, pairs = 0.0;
        openblas_set_num_threads(2);
        for (int s = 0; s < S; s++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, n, n, 1.0f, X + s * seq, n, W,
                        n, 0.0f, Y, n);
            const double t0 = now();
            gram_job j = {X + s * seq, G0, n};
            gram(&j);
            one += now() - t0;
        }
        for (int s = 0; s + 1 < S; s += 2) {
            openblas_set_num_threads(2);
            for (int k = 0; k < 2; k++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, n, n, 1.0f,
                            X + (s + k) * seq, n, W, n, 0.0f, Y, n);
            const double t0 = now();
            openblas_set_num_threads(1);
            gram_job j0 = {X + s * seq, G0, n}, j1 = {X + (s + 1) * seq, G1, n};
            pthread_t th;
            if (pthread_create(&th, NULL, gram, &j1) != 0) {
                fprintf(stderr, "bench_blas_pairs: pthread_create failed\n");
                return 1;
            }
            gram(&j0);
            pthread_join(th, NULL);
            pairs += now() - t0;
        }
        openblas_set_num_threads(2);
        const double t0 = now();
        for (int s = 0; s < S; s++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, T, 1.0f, X + s * seq, n,
                        X + s * seq, n, 0.0f, G0, n);
        const double rate = full / (now() - t0);
        printf("cols %d, OPENBLAS_THREAD_TIMEOUT %s: one sequence on 2 threads %.2f of sgemm, two "
               "at once on 1 thread each %.2f (sgemm %.1f GFLOP/s)\n",
               n, tmo ? tmo : "unset", tri / one / rate, tri / pairs / rate, 1e-9 * rate);
    }
    free(X);
    free(W);
    free(Y);
    free(G0);
    free(G1);
    return 0;
}

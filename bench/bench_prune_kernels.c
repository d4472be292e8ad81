// Pruning kernels on OPT shapes: Hessian accumulation against plain sgemm on the same operands,
// and SparseGPT preparation (damping, H^-1 factor) and column sweep.
//
//   bench_prune_kernels [--tokens T] [--seqlen S] [--repeats R] [--threads N] [--json]
//                       [SHAPE ...]
//   SHAPE: ROWSxCOLS (out x in features), or opt125m (768x768 3072x768 768x3072) or opt1.3b
//          (2048x2048 8192x2048 2048x8192); default: both sets.
//
// Calibration: T tokens in sequences of S (default 16 x 2048 = 32768, scaled down from the
// 128 x 2048 of the papers: GFLOP/s do not depend on the count, Hessian times scale linearly).
// Every figure is the median of R runs (default 3). The operands are random (uniform [-1, 1]);
// the sweep's time does not depend on their values. Like sds-mpi, the program re-executes
// itself with OPENBLAS_CORETYPE set when Debian's OpenBLAS falls back to its Prescott kernels.
// With --json, one JSON object per line (read by bench_prune_kernels.py).
#define _POSIX_C_SOURCE 200809L
#include "hessian.h"
#include "pattern.h"
#include "runtime.h"
#include "sds_error.h"
#include "sparsegpt.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SHAPES  32
#define MAX_REPEATS 15

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double median(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_prune_kernels: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static void fill_uniform(float *a, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        a[i] = (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
}

static void die_sds(const char *what) {
    fprintf(stderr, "bench_prune_kernels: %s: %s\n", what, sds_error_message());
    exit(1);
}

typedef struct {
    int64_t rows, cols;
} shape;

static int add_shapes(shape *s, int n, const char *arg) {
    static const shape opt125m[3] = {{768, 768}, {3072, 768}, {768, 3072}};
    static const shape opt13b[3] = {{2048, 2048}, {8192, 2048}, {2048, 8192}};
    const shape *set = NULL;
    if (!strcmp(arg, "opt125m")) set = opt125m;
    if (!strcmp(arg, "opt1.3b")) set = opt13b;
    if (set) {
        for (int i = 0; i < 3 && n < MAX_SHAPES; i++) s[n++] = set[i];
        return n;
    }
    long long r = 0, c = 0;
    char tail = 0;
    if (sscanf(arg, "%lldx%lld%c", &r, &c, &tail) != 2 || r < 1 || c < 1) {
        fprintf(stderr, "bench_prune_kernels: shape \"%s\" is not ROWSxCOLS, opt125m or opt1.3b\n",
                arg);
        exit(2);
    }
    if (n < MAX_SHAPES) s[n++] = (shape){r, c};
    return n;
}

// Hessian accumulation (ssyrk via sds_hessian) and plain sgemm computing the full X^T X from
// the same (seqlen, cols) operands. X cycles through `nbuf` random sequences.
static void bench_hessian(int64_t cols, int64_t tokens, int64_t seqlen, int repeats, bool json,
                          float **Hout) {
    const int nbuf = 4;
    const int64_t nseq = tokens / seqlen;
    float *X = xmalloc((size_t)(nbuf * seqlen * cols) * sizeof(float));
    fill_uniform(X, nbuf * seqlen * cols, (uint64_t)cols);
    double t_h[MAX_REPEATS], t_g[MAX_REPEATS];
    sds_hessian h;
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        if (sds_hessian_init(&h, cols, SDS_HESSIAN_GRAM) != SDS_OK) die_sds("Hessian");
        for (int64_t s = 0; s < nseq; s++)
            if (sds_hessian_add(&h, X + (s % nbuf) * seqlen * cols, 1, seqlen) != SDS_OK)
                die_sds("Hessian");
        if (sds_hessian_finish(&h) != SDS_OK) die_sds("Hessian");
        t_h[r] = now() - t0;
        if (r + 1 < repeats) sds_hessian_free(&h);
    }
    float *G = xmalloc((size_t)(cols * cols) * sizeof(float));
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        memset(G, 0, (size_t)(cols * cols) * sizeof(float));
        // Row-major X (seqlen, cols): G (cols, cols) += X^T X, the whole square.
        for (int64_t s = 0; s < nseq; s++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)cols, (int)cols, (int)seqlen,
                        1.0f, X + (s % nbuf) * seqlen * cols, (int)cols,
                        X + (s % nbuf) * seqlen * cols, (int)cols, 1.0f, G, (int)cols);
        t_g[r] = now() - t0;
    }
    free(G);
    free(X);
    const double th = median(t_h, repeats), tg = median(t_g, repeats);
    const double T = (double)(nseq * seqlen), c = (double)cols;
    const double f_syrk = T * c * (c + 1.0), f_gemm = 2.0 * T * c * c;
    if (json)
        printf("{\"kind\": \"hessian\", \"cols\": %lld, \"tokens\": %.0f, \"seconds\": %.6f, "
               "\"gflops\": %.3f, \"sgemm_seconds\": %.6f, \"sgemm_gflops\": %.3f}\n",
               (long long)cols, T, th, 1e-9 * f_syrk / th, tg, 1e-9 * f_gemm / tg);
    else
        printf("hessian  cols %5lld  tokens %7.0f | sds_hessian (ssyrk) %8.3f s %7.1f GFLOP/s "
               "| sgemm X^T X %8.3f s %7.1f GFLOP/s | time ratio %.2f\n",
               (long long)cols, T, th, 1e-9 * f_syrk / th, tg, 1e-9 * f_gemm / tg, th / tg);
    fflush(stdout);
    // The accumulated H (same inputs) feeds the SparseGPT runs: keep the last one.
    *Hout = xmalloc((size_t)(cols * cols) * sizeof(float));
    memcpy(*Hout, h.H, (size_t)(cols * cols) * sizeof(float));
    sds_hessian_free(&h);
}

static void bench_sparsegpt(shape s, const float *H, int repeats, bool json) {
    const int64_t rows = s.rows, cols = s.cols;
    float *Hw = xmalloc((size_t)(cols * cols) * sizeof(float));
    float *W0 = xmalloc((size_t)(rows * cols) * sizeof(float));
    float *W = xmalloc((size_t)(rows * cols) * sizeof(float));
    uint8_t *mask = xmalloc((size_t)(rows * cols));
    fill_uniform(W0, rows * cols, (uint64_t)(rows * 7 + cols));
    double t_prep[MAX_REPEATS];
    sds_sparsegpt_info info = {0};
    for (int r = 0; r < repeats; r++) {
        memcpy(Hw, H, (size_t)(cols * cols) * sizeof(float));
        memcpy(W, W0, (size_t)(rows * cols) * sizeof(float));
        double t0 = now();
        if (sds_sparsegpt_prepare(Hw, cols, W, rows, SDS_SPARSEGPT_PERCDAMP,
                                  SDS_SPARSEGPT_MAX_TRIES, &info) != SDS_OK)
            die_sds("SparseGPT prepare");
        t_prep[r] = now() - t0;
    }
    const double tp = median(t_prep, repeats);
    const char *patterns[2] = {"0.5", "2:4"};
    for (int pi = 0; pi < 2; pi++) {
        sds_pattern p;
        sds_pattern_parse(patterns[pi], &p);
        double t_sweep[MAX_REPEATS];
        sds_sparsegpt_local ctx = {.U = Hw, .cols = cols};
        for (int r = 0; r < repeats; r++) {
            memcpy(W, W0, (size_t)(rows * cols) * sizeof(float));
            double t0 = now();
            if (sds_sparsegpt_sweep(W, rows, rows, cols, p, SDS_SPARSEGPT_BLOCK,
                                    sds_sparsegpt_panel_local, sds_sparsegpt_select_local, &ctx,
                                    mask) != SDS_OK)
                die_sds("SparseGPT sweep");
            t_sweep[r] = now() - t0;
        }
        const double ts = median(t_sweep, repeats);
        if (json)
            printf("{\"kind\": \"sparsegpt\", \"rows\": %lld, \"cols\": %lld, \"pattern\": "
                   "\"%s\", \"prepare_seconds\": %.6f, \"sweep_seconds\": %.6f, \"percdamp\": "
                   "%g}\n",
                   (long long)rows, (long long)cols, patterns[pi], tp, ts, info.percdamp);
        else
            printf("sparsegpt %5lld x %5lld  %-3s | prepare %8.3f s | sweep %8.3f s | total "
                   "%8.3f s | damping %g\n",
                   (long long)rows, (long long)cols, patterns[pi], tp, ts, tp + ts, info.percdamp);
        fflush(stdout);
    }
    free(Hw);
    free(W0);
    free(W);
    free(mask);
}

int main(int argc, char **argv) {
    sds_runtime_blas_core_fix(argc, argv);
    int64_t tokens = 16 * 2048, seqlen = 2048;
    int repeats = 3, threads = 0;
    bool json = false;
    shape shapes[MAX_SHAPES];
    int nshapes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tokens") && i + 1 < argc)
            tokens = atoll(argv[++i]);
        else if (!strcmp(a, "--seqlen") && i + 1 < argc)
            seqlen = atoll(argv[++i]);
        else if (!strcmp(a, "--repeats") && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(a, "--json"))
            json = true;
        else if (a[0] == '-') {
            fprintf(stderr,
                    "usage: %s [--tokens T] [--seqlen S] [--repeats R] [--threads N] "
                    "[--json] [SHAPE ...]\n",
                    argv[0]);
            return 2;
        } else
            nshapes = add_shapes(shapes, nshapes, a);
    }
    if (nshapes == 0) {
        nshapes = add_shapes(shapes, nshapes, "opt125m");
        nshapes = add_shapes(shapes, nshapes, "opt1.3b");
    }
    if (seqlen < 1 || tokens < seqlen || repeats < 1 || repeats > MAX_REPEATS) {
        fprintf(stderr, "bench_prune_kernels: need 1 <= seqlen <= tokens, 1 <= repeats <= %d\n",
                MAX_REPEATS);
        return 2;
    }
    if (threads > 0) openblas_set_num_threads(threads);
    const char *fixed = getenv("SDS_BLAS_CORETYPE_FIXED");
    if (json)
        printf("{\"kind\": \"setup\", \"blas_core\": \"%s\", \"blas_threads\": %d, \"tokens\": "
               "%lld, \"seqlen\": %lld, \"repeats\": %d}\n",
               openblas_get_corename(), openblas_get_num_threads(),
               (long long)(tokens / seqlen * seqlen), (long long)seqlen, repeats);
    else
        printf("OpenBLAS %s kernels%s, %d thread(s); %lld tokens in sequences of %lld; median of "
               "%d\n",
               openblas_get_corename(),
               fixed ? " (chosen: OpenBLAS had fallen back to Prescott)" : "",
               openblas_get_num_threads(), (long long)(tokens / seqlen * seqlen), (long long)seqlen,
               repeats);
    fflush(stdout);
    // One Hessian per distinct input width, shared by the shapes that read it.
    for (int i = 0; i < nshapes; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++) seen |= shapes[j].cols == shapes[i].cols;
        if (seen) continue;
        float *H = NULL;
        bench_hessian(shapes[i].cols, tokens, seqlen, repeats, json, &H);
        for (int j = i; j < nshapes; j++)
            if (shapes[j].cols == shapes[i].cols) bench_sparsegpt(shapes[j], H, repeats, json);
        free(H);
    }
    return 0;
}

#define _GNU_SOURCE
#include "runtime.h"

#include <cblas.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sds_runtime_blas_core_fix(int argc, char **argv) {
    (void)argc;
    const char *off = getenv("SDS_BLAS_CORETYPE_FIX");
    const char *want = NULL;
    if (!getenv("OPENBLAS_CORETYPE") && !(off && !strcmp(off, "0"))) {
        const char *core = openblas_get_corename();
        if (core && !strcmp(core, "Prescott")) {
            __builtin_cpu_init();
            if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
                want = "SkylakeX";
            else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
                want = "Haswell";
        }
    }
    // OpenBLAS's pthread workers spin for 2^28 cycles after each threaded call by default,
    // taking a core from the Grams that src/hessian.h (batches) and mpi/dist_gram.h (threads)
    // run on our own threads (bench/bench_blas_pairs.c: two at once 0.53 of sgemm with the
    // workers spinning, 1.05 with the timeout at 4); the forward pass does not slow down
    // measurably with them sleeping at once. Not needed with one BLAS thread.
    const char *toff = getenv("SDS_BLAS_TIMEOUT_FIX"), *nt = getenv("OPENBLAS_NUM_THREADS");
    const int timeout = !getenv("OPENBLAS_THREAD_TIMEOUT") && !(toff && !strcmp(toff, "0")) &&
                        !(nt && !strcmp(nt, "1"));
    if (!want && !timeout) return;
    // OpenBLAS reads both when it is loaded: only a fresh image sees them.
    if (want) {
        setenv("OPENBLAS_CORETYPE", want, 1);
        setenv("SDS_BLAS_CORETYPE_FIXED", want, 1);
    }
    if (timeout) setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    execv("/proc/self/exe", argv);
    // exec failed: carry on as loaded
    if (want) unsetenv("OPENBLAS_CORETYPE");
    if (timeout) unsetenv("OPENBLAS_THREAD_TIMEOUT");
}

int sds_runtime_blas_threads(MPI_Comm comm) {
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    if (env && *env) return atoi(env) > 0 ? atoi(env) : 1;
    cpu_set_t set;
    int mine = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0) mine = CPU_COUNT(&set);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    MPI_Comm node;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    int local = 1;
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
    // Unbound ranks all see every core: share them. Bound ranks own their cores.
    int threads = (mine >= online && local > 1) ? mine / local : mine;
    if (threads < 1) threads = 1;
    openblas_set_num_threads(threads);
    return threads;
}

double sds_now(void) {
    return MPI_Wtime();
}

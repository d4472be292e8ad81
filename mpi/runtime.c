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
    if (getenv("OPENBLAS_CORETYPE") || (off && !strcmp(off, "0"))) return;
    const char *core = openblas_get_corename();
    if (!core || strcmp(core, "Prescott") != 0) return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want) return;
    // OpenBLAS picks its kernels when it is loaded: only a fresh image sees the variable.
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("SDS_BLAS_CORETYPE_FIXED", want, 1);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); // exec failed: carry on with the slow kernels
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

#define _GNU_SOURCE
#include "runtime.h"

#include <cblas.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

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

// Short-lived worker threads for the statistics' batches (src/hessian.c, mpi/dist_gram.c).
#pragma once
#include <stddef.h>
#include <stdint.h>

// The most jobs sds_threads_run takes at once.
#define SDS_THREADS_MAX 16

// Runs fn on each of the m jobs (job i at (char *)jobs + i * size), job 0 on the calling thread
// and the others on threads of their own, and returns when all are done. A job whose thread
// cannot be created runs on the calling thread after job 0: the same calls, later. 1 <= m <=
// SDS_THREADS_MAX.
void sds_threads_run(int32_t m, void *(*fn)(void *), void *jobs, size_t size);

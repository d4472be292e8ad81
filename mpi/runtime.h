// Process-level setup shared by every subcommand.
#pragma once
#include <mpi.h>

// Called first thing in main, before MPI_Init. Debian's OpenBLAS 0.3.21 does not know recent
// Xeons and falls back to its Prescott (SSE3) kernels, 3-6x slower than the AVX-512 ones the
// CPU can run. When OPENBLAS_CORETYPE is unset, the core is "Prescott" and the CPU has
// AVX-512 (or AVX2+FMA), the program re-executes itself with OPENBLAS_CORETYPE=SkylakeX (or
// Haswell). Set OPENBLAS_CORETYPE yourself to choose, or SDS_BLAS_CORETYPE_FIX=0 to disable.
// Also, unless OPENBLAS_NUM_THREADS is 1, OPENBLAS_THREAD_TIMEOUT=4 (OpenBLAS's threads sleep
// at once after a call instead of spinning, so that the Grams on our own threads get the
// cores): set OPENBLAS_THREAD_TIMEOUT yourself to choose, or SDS_BLAS_TIMEOUT_FIX=0 to disable.
void sds_runtime_blas_core_fix(int argc, char **argv);
// Chooses the BLAS threads of this rank when OPENBLAS_NUM_THREADS is not set: the cores this
// rank may run on, divided among the ranks of its node that share them. Returns the count.
int sds_runtime_blas_threads(MPI_Comm comm);
// Wall-clock seconds.
double sds_now(void);

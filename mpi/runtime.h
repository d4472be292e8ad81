// Process-level setup shared by every subcommand.
#pragma once
#include <mpi.h>

// Chooses the BLAS threads of this rank when OPENBLAS_NUM_THREADS is not set: the cores this
// rank may run on, divided among the ranks of its node that share them. Returns the count.
int sds_runtime_blas_threads(MPI_Comm comm);
// Wall-clock seconds.
double sds_now(void);

// MPI sums of exact accumulators (src/xsum.h): the same bits at any rank count.
#pragma once
#include "xsum.h"

#include <mpi.h>
#include <stddef.h>

// (collective) acc[i] summed over the ranks of comm, in place, on every rank.
void sds_xsum_allreduce(MPI_Comm comm, sds_xsum_t *acc, size_t n);

#include "hessian.h"

// (collective) A Hessian's exact accumulators (h->acc, h->sq_acc) summed over comm before
// sds_hessian_finish; nseq is the caller's to set.
void sds_hessian_allreduce(MPI_Comm comm, sds_hessian *h);

// Agreeing on failures: every rank learns the same status, and rank 0 alone prints it.
#pragma once
#include <mpi.h>

// (collective over comm) Each rank passes its local code (SDS_OK or an sds_code; its message is
// the one recorded with sds_error_set). Returns on every rank the code of the lowest-numbered
// failing rank, or SDS_OK. On failure rank 0 prints "sds-mpi: error: MESSAGE" (with
// "(rank R)" when R != 0 or the run has more than one rank) to stderr.
int sds_agree(MPI_Comm comm, int local_code);

// (collective) The same agreement without printing: every rank gets the lowest failing rank's
// code, and its message replaces the local one (sds_error_message()); *first_rank (may be NULL)
// receives that rank, or -1 when all succeeded. For modules whose caller agrees and prints.
int sds_agree_quiet(MPI_Comm comm, int local_code, int *first_rank);

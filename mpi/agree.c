#include "agree.h"

#include "sds_error.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

int sds_agree_quiet(MPI_Comm comm, int local_code, int *first_rank) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    int mine = local_code != SDS_OK ? rank : INT_MAX;
    int first = INT_MAX;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first_rank) *first_rank = first == INT_MAX ? -1 : first;
    if (first == INT_MAX) return SDS_OK;

    // The failing rank's code and message travel to everyone, so all exit alike.
    struct {
        int code;
        char msg[1024];
    } pkt;
    memset(&pkt, 0, sizeof pkt);
    if (rank == first) {
        pkt.code = local_code;
        snprintf(pkt.msg, sizeof pkt.msg, "%s",
                 sds_error_message()[0] ? sds_error_message() : "unspecified failure");
    }
    MPI_Bcast(&pkt, (int)sizeof pkt, MPI_BYTE, first, comm);
    if (rank != first) {
        sds_error_clear();
        sds_error_set(pkt.code, "%s", pkt.msg);
    }
    return pkt.code;
}

int sds_agree(MPI_Comm comm, int local_code) {
    int rank, size, first = -1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    const int code = sds_agree_quiet(comm, local_code, &first);
    if (code != SDS_OK && rank == 0) {
        if (size > 1)
            fprintf(stderr, "sds-mpi: error (rank %d of %d): %s\n", first, size,
                    sds_error_message());
        else
            fprintf(stderr, "sds-mpi: error: %s\n", sds_error_message());
        fflush(stderr);
    }
    return code;
}

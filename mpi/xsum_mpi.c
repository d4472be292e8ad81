#include "xsum_mpi.h"

#include <string.h>

// 128-bit integers travel as 16 bytes; memcpy keeps the op free of alignment assumptions.
static void add_op(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const unsigned char *a = in;
    unsigned char *b = inout;
    for (int i = 0; i < *len; i++) {
        sds_xsum_t x, y;
        memcpy(&x, a + 16 * (size_t)i, 16);
        memcpy(&y, b + 16 * (size_t)i, 16);
        // two's complement addition, wrapping as unsigned (the values stay far from the ends)
        y = (sds_xsum_t)((unsigned __int128)x + (unsigned __int128)y);
        memcpy(b + 16 * (size_t)i, &y, 16);
    }
}

void sds_xsum_allreduce(MPI_Comm comm, sds_xsum_t *acc, size_t n) {
    int size;
    MPI_Comm_size(comm, &size);
    if (size == 1 || n == 0) return;
    MPI_Datatype t;
    MPI_Type_contiguous(16, MPI_BYTE, &t);
    MPI_Type_commit(&t);
    MPI_Op op;
    MPI_Op_create(add_op, 1, &op);
    const size_t chunk = (size_t)1 << 24; // 256 MiB per call: counts stay ints
    for (size_t off = 0; off < n; off += chunk) {
        const size_t k = n - off < chunk ? n - off : chunk;
        MPI_Allreduce(MPI_IN_PLACE, acc + off, (int)k, t, op, comm);
    }
    MPI_Op_free(&op);
    MPI_Type_free(&t);
}

void sds_hessian_allreduce(MPI_Comm comm, sds_hessian *h) {
    if (h->acc) sds_xsum_allreduce(comm, h->acc, (size_t)sds_hessian_packed_len(h));
    if (h->sq_acc) sds_xsum_allreduce(comm, h->sq_acc, (size_t)h->cols);
}

#define _POSIX_C_SOURCE 200809L
#include "export.h"

#include "agree.h"
#include "hf_export.h"
#include "model_load.h"
#include "pruned_load.h"
#include "runtime.h"
#include "sds_error.h"

#include <stdio.h>
#include <time.h>

// The other ranks idle here until rank 0 has finished: a blocking collective would busy-poll
// and take a core from rank 0 when ranks share a node.
static void wait_for_rank0(MPI_Comm comm) {
    MPI_Request req;
    MPI_Ibarrier(comm, &req);
    int done = 0;
    for (;;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) break;
        nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000}, NULL);
    }
}

int sds_export_from_h5(const char *model, const char *weights, const char *tokenizer,
                       const char *out) {
    const double t0 = sds_now();
    // refuse an existing output before the (long) model load
    SDS_TRY(sds_hf_export_check_out(out));
    sds_model m;
    SDS_TRY(sds_model_load(model, &m));
    int64_t n = 0;
    int rc = sds_model_load_pruned(&m, weights, &n);
    if (rc == SDS_OK) {
        printf("model %s: %s, %lld layers, hidden %lld, vocab %lld\n", model, m.cfg.model_type,
               (long long)m.cfg.n_layers, (long long)m.cfg.hidden_size,
               (long long)m.cfg.vocab_size);
        printf("weights %s: %lld pruned sublayers\n", weights, (long long)n);
        fflush(stdout);
        rc = sds_hf_export(&m, model, tokenizer, out);
    }
    if (rc == SDS_OK) printf("exported %s in %.2fs\n", out, sds_now() - t0);
    sds_model_free(&m);
    return rc;
}

int sds_export_run(MPI_Comm comm, const sds_export_opts *o) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    int rc = SDS_OK;
    if (rank == 0) {
        rc = sds_export_from_h5(o->model, o->weights, o->tokenizer, o->out);
        fflush(stdout);
        MPI_Request req; // matches the others' MPI_Ibarrier: releases them
        MPI_Ibarrier(comm, &req);
        MPI_Wait(&req, MPI_STATUS_IGNORE);
    } else {
        wait_for_rank0(comm);
    }
    return sds_agree(comm, rc);
}

#include "eval.h"

#include "agree.h"
#include "json_out.h"
#include "model_load.h"
#include "pruned_load.h"
#include "runtime.h"
#include "sds_error.h"
#include "stage_map.h"
#include "text_ids.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int write_json(const sds_eval_opts *o, int nranks, int64_t n_tokens, int64_t windows,
                      double ppl, double mean_nll, double seconds) {
    json_t *root = json_object();
    json_object_set_new(root, "command", json_string("eval"));
    json_object_set_new(root, "model", json_string(o->model));
    json_object_set_new(root, "text", json_string(o->text));
    json_object_set_new(root, "tokenizer", o->tokenizer ? json_string(o->tokenizer) : json_null());
    json_object_set_new(root, "weights", o->weights ? json_string(o->weights) : json_null());
    json_object_set_new(root, "seqlen", json_integer(o->seqlen));
    json_object_set_new(root, "max_windows", json_integer(o->max_windows));
    json_object_set_new(root, "ranks", json_integer(nranks));
    json_object_set_new(root, "tokens", json_integer(n_tokens));
    json_object_set_new(root, "windows", json_integer(windows));
    json_object_set_new(root, "mean_nll", json_real(mean_nll));
    json_object_set_new(root, "perplexity", json_real(ppl));
    json_object_set_new(root, "seconds", json_real(seconds));
    return sds_json_write_atomic(root, o->json);
}

int sds_eval_model(MPI_Comm comm, const sds_model *mp, const sds_eval_opts *o_in) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    sds_eval_opts o = *o_in;
    const double t_start = sds_now();

    const sds_model m = *mp; // a shallow copy: the caller owns and frees the model
    int rc = SDS_OK;
    const int64_t max_pos = m.cfg.max_position_embeddings;
    if (o.seqlen == 0) o.seqlen = max_pos < 2048 ? max_pos : 2048;
    if (o.seqlen < 2 || o.seqlen > max_pos) {
        rc = sds_error_set(SDS_ERR_USAGE, "--seqlen %lld: must be in [2, %lld] for this model",
                           (long long)o.seqlen, (long long)max_pos);
        rc = sds_agree(comm, rc);
        return rc;
    }

    int32_t *ids = NULL;
    int64_t n_tokens = 0;
    rc = SDS_OK;
    if (rank == 0) {
        rc = sds_text_token_ids(o.text, o.model, o.tokenizer, &m, &ids, &n_tokens);
        if (rc == SDS_OK && n_tokens < o.seqlen) {
            rc = sds_error_set(SDS_ERR_INPUT,
                               "%s: %lld tokens, fewer than one window of --seqlen %lld", o.text,
                               (long long)n_tokens, (long long)o.seqlen);
        }
    }
    rc = sds_agree(comm, rc);
    if (rc != SDS_OK) {
        free(ids);
        return rc;
    }
    MPI_Bcast(&n_tokens, 1, MPI_INT64_T, 0, comm);
    if (rank != 0) ids = sds_malloc((size_t)n_tokens * sizeof(int32_t), "token ids");
    rc = sds_agree(comm, ids ? SDS_OK : SDS_ERR_IO);
    if (rc != SDS_OK) {
        free(ids);
        return rc;
    }
    // ids travel in pieces: MPI counts are int
    for (int64_t off = 0; off < n_tokens; off += 1 << 28) {
        int64_t n = n_tokens - off < (1 << 28) ? n_tokens - off : (1 << 28);
        MPI_Bcast(ids + off, (int)n, MPI_INT32_T, 0, comm);
    }

    int64_t windows = n_tokens / o.seqlen;
    if (o.max_windows > 0 && o.max_windows < windows) windows = o.max_windows;
    if (rank == 0) {
        printf("model %s: %s, %lld layers, hidden %lld, vocab %lld\n", o.model, m.cfg.model_type,
               (long long)m.cfg.n_layers, (long long)m.cfg.hidden_size,
               (long long)m.cfg.vocab_size);
        const char *fixed = getenv("SDS_BLAS_CORETYPE_FIXED");
        printf("blas OpenBLAS %s kernels%s, %d thread%s per rank\n", openblas_get_corename(),
               fixed ? " (chosen by sds-mpi: OpenBLAS had fallen back to Prescott)" : "",
               openblas_get_num_threads(), openblas_get_num_threads() > 1 ? "s" : "");
        printf("text %s: %lld tokens, %lld windows of %lld over %d rank%s", o.text,
               (long long)n_tokens, (long long)windows, (long long)o.seqlen, size,
               size > 1 ? "s" : "");
        if (o.stages > 1) printf(" in %lld pipeline stages", (long long)o.stages);
        printf("\n");
        fflush(stdout);
    }

    sds_model_work w;
    rc = sds_agree(comm, sds_model_work_alloc(&w, &m, o.seqlen));
    if (rc != SDS_OK) {
        free(ids);
        return rc;
    }
    // Window i goes to rank i % G of every stage (G: the stage's ranks); each window's NLL lands
    // in its own slot so the sum is taken in window order on rank 0: the result does not depend
    // on the rank or stage count.
    const int S = o.stages > 1 ? (int)o.stages : 1;
    const int stage = sds_stage_of_rank(size, S, rank);
    int rlo, rhi, plo = 0, phi = 0, nlo = 0, nhi = 0;
    int64_t llo, lhi;
    sds_stage_ranks(size, S, stage, &rlo, &rhi);
    sds_stage_layers(m.cfg.n_layers, S, stage, &llo, &lhi);
    if (stage > 0) sds_stage_ranks(size, S, stage - 1, &plo, &phi);
    if (stage + 1 < S) sds_stage_ranks(size, S, stage + 1, &nlo, &nhi);
    const int G = rhi - rlo, j = rank - rlo;
    double *nll = sds_calloc((size_t)windows, sizeof(double), "window NLLs");
    double *nll_all = rank == 0 ? sds_calloc((size_t)windows, sizeof(double), "window NLLs") : NULL;
    float *x = sds_malloc((size_t)(o.seqlen * m.cfg.hidden_size) * sizeof(float), "activations");
    rc = sds_agree(comm, (nll && x && (rank != 0 || nll_all)) ? SDS_OK : SDS_ERR_IO);
    if (rc == SDS_OK) {
        const double t0 = sds_now();
        const int64_t mine = windows / G + (j < windows % G ? 1 : 0);
        const int count = (int)(o.seqlen * m.cfg.hidden_size);
        int64_t done = 0;
        for (int64_t i = j; i < windows; i += G) {
            const int32_t *tok = ids + i * o.seqlen;
            if (S == 1) {
                nll[i] = sds_model_window_nll(&m, tok, o.seqlen, &w);
            } else {
                // (windows between two ranks travel in window order: one tag suffices)
                if (stage == 0)
                    sds_model_embed(&m, tok, o.seqlen, x, &w);
                else
                    MPI_Recv(x, count, MPI_FLOAT, plo + (int)(i % (phi - plo)), 13, comm,
                             MPI_STATUS_IGNORE);
                for (int64_t l = llo; l < lhi; l++) sds_model_layer_forward(&m, l, x, o.seqlen, &w);
                if (stage + 1 < S)
                    MPI_Send(x, count, MPI_FLOAT, nlo + (int)(i % (nhi - nlo)), 13, comm);
                else
                    nll[i] = sds_model_head_nll(&m, tok, x, o.seqlen, &w);
            }
            done++;
            if (rank == 0) {
                double el = sds_now() - t0;
                double eta = el / (double)done * (double)(mine - done);
                fprintf(stderr,
                        "eval: window %lld/%lld on rank 0 (%lld in all), %.1f tok/s per rank, "
                        "elapsed %.1fs, ETA %.1fs\n",
                        (long long)done, (long long)mine, (long long)windows,
                        (double)(done * o.seqlen) / el, el, eta);
            }
        }
        MPI_Reduce(nll, nll_all, (int)windows, MPI_DOUBLE, MPI_SUM, 0, comm);
        if (rank == 0) {
            double total = 0.0;
            for (int64_t i = 0; i < windows; i++) total += nll_all[i];
            const double mean = total / ((double)windows * (double)(o.seqlen - 1));
            const double ppl = exp(mean);
            const double secs = sds_now() - t_start;
            printf("evaluated %lld tokens in %.2fs (%.1f tok/s)\n", (long long)(windows * o.seqlen),
                   secs, (double)(windows * o.seqlen) / (sds_now() - t0));
            printf("perplexity %.10g\n", ppl);
            if (o.result) *o.result = ppl;
            fflush(stdout);
            if (o.json) rc = write_json(&o, size, n_tokens, windows, ppl, mean, secs);
        }
        rc = sds_agree(comm, rc);
        if (o.result) MPI_Bcast(o.result, 1, MPI_DOUBLE, 0, comm);
    }
    free(nll);
    free(nll_all);
    free(x);
    free(ids);
    sds_model_work_free(&w);
    return rc;
}

int sds_eval_run(MPI_Comm comm, const sds_eval_opts *o) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    sds_model m;
    // stages: the configuration first, then each rank loads its stage's layers only
    int rc = sds_agree(comm, sds_model_load_part(o->model, 0, 0, 0, &m));
    if (rc != SDS_OK) return rc;
    const int64_t L = m.cfg.n_layers;
    sds_model_free(&m);
    if (o->stages > size || o->stages > L)
        return sds_agree(comm, sds_error_set(SDS_ERR_USAGE,
                                             "--stages %lld: must be at most the rank count (%d) "
                                             "and the decoder layers (%lld)",
                                             (long long)o->stages, size, (long long)L));
    const int S = o->stages > 1 ? (int)o->stages : 1;
    const int stage = sds_stage_of_rank(size, S, rank);
    int64_t llo, lhi;
    sds_stage_layers(L, S, stage, &llo, &lhi);
    const int32_t parts =
        (stage == 0 ? SDS_MODEL_EMBED : 0) | (stage == S - 1 ? SDS_MODEL_HEAD : 0);
    rc = sds_agree(comm, sds_model_load_part(o->model, llo, lhi, parts, &m));
    if (rc != SDS_OK) return rc;
    if (o->weights) {
        int64_t n = 0;
        rc = sds_agree(comm, sds_model_load_pruned(&m, o->weights, &n));
        if (rc != SDS_OK) {
            sds_model_free(&m);
            return rc;
        }
        if (rank == 0) printf("weights %s: %lld pruned sublayers\n", o->weights, (long long)n);
    }
    rc = sds_eval_model(comm, &m, o);
    sds_model_free(&m);
    return rc;
}

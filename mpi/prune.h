// sds-mpi prune: one-shot pruning of every decoder layer (SPEC 2.1), layer after layer.
#pragma once
#include "pattern.h"
#include "plan.h"
#include "sds.h"

#include <mpi.h>
#include <stdint.h>

typedef enum {
    SDS_METHOD_MAGNITUDE = 0,
    SDS_METHOD_WANDA,
    SDS_METHOD_SPARSEGPT,
    SDS_METHOD_SDS // Sparse-Dense-Sparse over sds.base (src/sds.h)
} sds_method;

typedef struct {
    const char *model;        // checkpoint directory or GGUF file
    const char *calib;        // calibration text (UTF-8), or NULL with calib_tokens
    const char *calib_tokens; // calibration token file (io/token_file.h), or NULL
    const char *out;          // HDF5 output (required)
    const char *tokenizer;    // NULL = the model's
    const char *eval;         // NULL, or a text to evaluate dense and pruned perplexity on
    const char *json;         // NULL, or the JSON summary
    sds_method method;
    const char *sparsity_text; // as given ("0.5", "2:4")
    sds_pattern pattern;
    int64_t nsamples;          // calibration windows
    int64_t seqlen;            // tokens per window (0: min(2048, max positions))
    uint64_t seed;             // calibration window generator (src/calib.h)
    int64_t blocksize;         // SparseGPT column block B
    double percdamp;           // SparseGPT relative damping
    int64_t eval_max_windows;  // --eval-max-windows (0: all)
    const char *export_hf;     // NULL, or a Hugging Face directory to export to
    sds_sds_opts sds;          // --method sds: base, target, solver, ...
    int resume;                // --resume: go on from OUT.ckpt/ when it holds a checkpoint
    int every_layer;           // --checkpoint-every-layer: a checkpoint after every layer
    int64_t stages;            // --stages: pipeline stages (0: chosen from the plan)
    int sds_parallel;          // --sds-order parallel (SDS): layers see first-pruned inputs
    int64_t local_hessian_max; // --local-hessian-max (SparseGPT): groups at most this wide
                               // accumulate their Hessian whole on every rank from its own
                               // sequences (exact sums all-reduced), wider ones on the grid
} sds_prune_opts;

const char *sds_method_name(sds_method m);

// (collective) Returns the agreed status. Rank 0 prints one line per sublayer with an ETA, a
// final table and, with --eval, the dense and pruned perplexity. SIGTERM or SIGUSR1 during the
// run (or SDS_TEST_STOP_AFTER_LAYER=N, a test hook: as if a signal came during layer N) ends
// the layer under way, writes a checkpoint (mpi/prune_ckpt.h) and returns SDS_ERR_CHECKPOINTED.
int sds_prune_run(MPI_Comm comm, const sds_prune_opts *o);

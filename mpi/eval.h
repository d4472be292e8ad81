// sds-mpi eval: perplexity of a model on a text (SPEC 2.7), windows spread over the ranks.
#pragma once
#include "model.h"

#include <mpi.h>
#include <stdint.h>

typedef struct {
    const char *model;     // checkpoint directory
    const char *text;      // UTF-8 text file
    const char *tokenizer; // tokenizer directory, NULL = the model's
    const char *json;      // write the result here too, NULL = no
    const char *weights;   // an sds-mpi prune output whose weights replace the model's, or NULL
    int64_t seqlen;        // window length; 0 = min(2048, max_position_embeddings)
    int64_t max_windows;   // 0 = all
    double *result;        // NULL, or receives the perplexity (every rank)
    int64_t stages;        // pipeline stages (0: one); see sds_eval_model
} sds_eval_opts;

// (collective) Evaluates an already loaded model (the caller keeps ownership). o->model names it
// in the output and selects its tokenizer. With o->stages S > 1 the ranks form S pipeline
// stages (src/stage_map.h): a rank of stage k holds that stage's decoder layers, the first
// stage also the embeddings, the last the head; window i goes to rank i % G of each stage (G
// ranks) and its activations from stage to stage. With one stage every rank holds the whole
// model. The perplexity does not depend on the rank or stage count (window NLLs are summed in
// window order).
int sds_eval_model(MPI_Comm comm, const sds_model *m, const sds_eval_opts *o);

// (collective) Loads o->model, then as sds_eval_model. Returns the agreed status; rank 0 prints
// progress to stderr and the result to stdout, ending with "perplexity <value>".
int sds_eval_run(MPI_Comm comm, const sds_eval_opts *o);

// sds-mpi export: a model with the pruned weights of an sds-mpi prune output, written as a
// Hugging Face checkpoint directory (io/hf_export.h says what goes into it).
#pragma once
#include <mpi.h>

typedef struct {
    const char *model;     // checkpoint directory or GGUF file
    const char *weights;   // the sds-mpi prune output (HDF5) whose weights replace the model's
    const char *out;       // the directory to create (absent or empty)
    const char *tokenizer; // tokenizer files to copy, NULL = the model's
} sds_export_opts;

// (collective) Rank 0 loads the model, applies the pruned weights and writes the directory;
// the other ranks wait for it without spinning. Returns the agreed status on every rank; rank 0
// prints what it wrote.
int sds_export_run(MPI_Comm comm, const sds_export_opts *o);

// (local, rank 0's part) Loads the model, puts the pruned weights of `weights` into it and
// writes the Hugging Face directory `out`; prints what it wrote. Also prune --export-hf's path
// when the run had pipeline stages (no rank holds every layer).
int sds_export_from_h5(const char *model, const char *weights, const char *tokenizer,
                       const char *out);

// Checkpoint and resume of sds-mpi prune (README "Checkpoint and resume"): the state after a
// completed decoder layer, saved collectively into OUT.ckpt/ (io/checkpoint.h lays out the
// files) and restored by `--resume`, so that the resumed run ends with the very bytes an
// uninterrupted run writes.
#pragma once
#include "checkpoint.h"
#include "h5out.h"
#include "model.h"

#include <jansson.h>
#include <mpi.h>
#include <stdint.h>

// Per-sublayer figures for the progress lines, the final table, the JSON summary and the
// checkpoint.
typedef struct {
    sds_h5out_stats st;
    char name[96]; // Hugging Face module name, e.g. model.layers.3.mlp.down_proj
} sds_sublayer_report;

// What a run carries from one layer to the next.
typedef struct {
    sds_model *m;             // every rank's copy of the model, pruned up to the current layer
    sds_sublayer_report *rep; // L x n_lin (rank 0's are authoritative)
    const char *opts_text;    // (global) the options JSON, compact with sorted keys
    uint64_t calib_fp;        // (rank 0) fingerprint of the options and calibration tokens
    uint64_t fp;              // (rank 0) ... then of every completed layer's dense weights
    float *inps;              // (local) the pruned path's activations, n_local x T x C
    float *inps_d;            // (local) the dense path's (SDS, dense target), else NULL
    int64_t n_local, T, C;    // (local) sequences held, tokens per sequence, width
} sds_prune_state;

typedef struct {
    char dir[4096];                 // (global) OUT.ckpt
    int64_t L;                      // (global) decoder layers
    int32_t n_lin;                  // (global) linear sublayers per layer
    uint8_t **masks;                // (rank 0) bit-packed mask of every pruned sublayer
    sds_ckpt_file_info *layer_info; // (rank 0) the layer files written, L entries
    int64_t layers_on_disk;         // (global) layer files 0 .. layers_on_disk - 1 are in dir
    int64_t saved_layer;            // (global) last completed layer of the checkpoint in dir, -1
    json_t *meta;                   // (rank 0) the meta.json being resumed, until restored
    sds_ckpt_file_info acts_info;   // (local) this rank's activation file being resumed
} sds_prune_ckpt;

// (local) For the output path `out` and model m; SDS_ERR_IO when out of memory.
int sds_prune_ckpt_init(sds_prune_ckpt *c, const char *out, sds_model *m, int rank);
void sds_prune_ckpt_free(sds_prune_ckpt *c);

// (collective) Looks for a checkpoint before any work. Without resume, a complete checkpoint in
// the directory is refused (usage: it would be overwritten). With resume and none, rank 0 says
// the run starts from scratch. With one, it must match this run (rank count, options,
// calibration tokens, the dense weights of the layers it holds: a usage error naming --resume
// and what differs), and its files must have the sizes it records (input error naming the
// file); rank 0 folds the restored layers' dense weights into s->fp. *last (global): the last
// completed layer to resume after, or -1. The agreed status, printed by rank 0.
int sds_prune_ckpt_open(MPI_Comm comm, sds_prune_ckpt *c, int resume, sds_prune_state *s,
                        int64_t *last);

// (collective) Loads layers 0..last (weights into every rank's model, masks and statistics,
// written to h5 in their order) and this rank's activations, whose checksums must match.
int sds_prune_ckpt_restore(MPI_Comm comm, sds_prune_ckpt *c, sds_prune_state *s, int64_t last,
                           sds_h5out *h5);

// (collective) Sublayer (layer, i) was pruned by `owner`, whose mask (1 = pruned, numel
// entries) rank 0 keeps, bit-packed, for the checkpoints to come.
int sds_prune_ckpt_keep_mask(MPI_Comm comm, sds_prune_ckpt *c, int64_t layer, int32_t i, int owner,
                             const uint8_t *mask, int64_t numel);

// (collective) Writes the checkpoint after `layer` has completed; the agreed status (printed by
// rank 0). The previous checkpoint stays valid until the new meta.json replaces it.
int sds_prune_ckpt_save(MPI_Comm comm, sds_prune_ckpt *c, const sds_prune_state *s, int64_t layer);

// (collective) After a completed run: rank 0 removes the checkpoint directory.
void sds_prune_ckpt_remove(MPI_Comm comm, sds_prune_ckpt *c);

// Checkpoint and resume of sds-mpi prune (README "Checkpoint and resume"): the state after a
// completed decoder layer, saved collectively into OUT.ckpt/ (io/checkpoint.h lays out the
// files) and restored by `--resume`, so that the resumed run ends with the very bytes an
// uninterrupted run writes.
//
// With pipeline stages each layer's file is written and read by the leader of the stage that
// owns the layer (the first rank of the stage, which keeps that stage's masks), and only the
// ranks of the stage that works on the next layer have activations to save: the others' files
// hold none. Rank 0 writes meta.json.
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
    int P, S;                       // (global) ranks and pipeline stages
    int rank, stage;                // (local) this rank and its stage
    int64_t shape_layer;            // (local) a layer this rank holds (every layer's shapes)
    MPI_Comm scomm;                 // (local) this rank's stage (not owned)
    uint8_t **masks;                // (keepers) bit-packed mask of every sublayer kept here
    sds_ckpt_file_info *layer_info; // (global) the layer files written, L entries
    int64_t layers_on_disk;         // (global) layer files 0 .. layers_on_disk - 1 are in dir
    int64_t saved_layer;            // (global) last completed layer of the checkpoint in dir, -1
    json_t *meta;                   // (rank 0) the meta.json being resumed, until restored
    sds_ckpt_file_info acts_info;   // (local) this rank's activation file being resumed
} sds_prune_ckpt;

// (local) For the output path `out` and model m (this rank's part of it), run over comm's P
// ranks in S stages; scomm is this rank's stage. SDS_ERR_IO when out of memory.
int sds_prune_ckpt_init(sds_prune_ckpt *c, const char *out, sds_model *m, MPI_Comm comm, int S,
                        MPI_Comm scomm);

// (global) The world rank that keeps layer l's masks and writes its file: its stage's leader.
int sds_prune_ckpt_keeper(const sds_prune_ckpt *c, int64_t l);

// (global) The stage whose ranks hold the activations after `layer` (those of layer + 1; after
// the last layer, the last stage's).
int sds_prune_ckpt_acts_stage(const sds_prune_ckpt *c, int64_t layer);
void sds_prune_ckpt_free(sds_prune_ckpt *c);

// (collective) Looks for a checkpoint before any work. Without resume, a complete checkpoint in
// the directory is refused (usage: it would be overwritten). With resume and none, rank 0 says
// the run starts from scratch. With one, it must match this run (rank count, options,
// calibration tokens, the dense weights of the layers it holds: a usage error naming --resume
// and what differs), and its files must have the sizes it records (input error naming the
// file); the restored layers' dense weights are folded into s->fp, stage after stage. *last
// (global): the last completed layer to resume after, or -1. The agreed status, printed by rank 0.
int sds_prune_ckpt_open(MPI_Comm comm, sds_prune_ckpt *c, int resume, sds_prune_state *s,
                        int64_t *last);

// (collective) Loads layers 0..last (weights into the models of their stage's ranks, masks and
// statistics, written to h5 in their order) and this rank's activations, whose checksums must
// match.
int sds_prune_ckpt_restore(MPI_Comm comm, sds_prune_ckpt *c, sds_prune_state *s, int64_t last,
                           sds_h5out *h5);

// (collective) Sublayer (layer, i) was pruned by `owner`, whose mask (1 = pruned, numel
// entries) the layer's keeper keeps, bit-packed, for the checkpoints to come.
int sds_prune_ckpt_keep_mask(MPI_Comm comm, sds_prune_ckpt *c, int64_t layer, int32_t i, int owner,
                             const uint8_t *mask, int64_t numel);

// (collective) Writes the checkpoint after `layer` has completed; the agreed status (printed by
// rank 0). The previous checkpoint stays valid until the new meta.json replaces it. The ranks of
// sds_prune_ckpt_acts_stage(layer) must have received their activations.
int sds_prune_ckpt_save(MPI_Comm comm, sds_prune_ckpt *c, const sds_prune_state *s, int64_t layer);

// (collective) After a completed run: rank 0 removes the checkpoint directory.
void sds_prune_ckpt_remove(MPI_Comm comm, sds_prune_ckpt *c);

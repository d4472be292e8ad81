// A model of what `sds-mpi prune` costs per rank, before anything heavy runs (SPEC 4: "memory
// per rank and run time are predictable"): per pipeline stage, the bytes a rank holds at its
// peak and the seconds of compute and communication, from the model's shapes, the calibration
// size and a few machine constants (BLAS GFLOP/s, MPI bandwidth and latency, the process
// baseline). Pure arithmetic, no MPI; mpi/plan.c measures the constants.
#pragma once
#include "model_config.h"

#include <stdint.h>

typedef struct {
    double gemm_gflops;    // sgemm GFLOP/s per rank with 1 BLAS thread
    double mpi_bw;         // point-to-point bandwidth between ranks, bytes/s
    double mpi_lat;        // point-to-point latency, s
    double baseline_bytes; // resident bytes of a rank before it holds any model data (MPI,
                           // OpenBLAS buffers, HDF5, libraries)
    // below: not measured by default; sds_plan_machine_default documents the values
    double select_s;  // seconds per weight of one magnitude mask selection (SDS adjust steps)
    double stream_bw; // bytes/s of one core streaming through memory (elementwise passes)
    double io_bw;     // bytes/s reading the checkpoint and writing the HDF5 output
    double exp_s;     // seconds per element of a softmax or SiLU (an expf and a few passes)
} sds_plan_machine;

// prune --local-hessian-max's default: SparseGPT sums a Hessian at most this wide on every rank
// from the rank's own sequences and all-reduces the exact sums (16 bytes per entry of the upper
// triangle: 32 MiB at 2048 columns); a wider one goes on the stage's BLACS grid.
#define SDS_LOCAL_HESSIAN_MAX 2048

typedef struct {
    sds_model_config cfg;
    int nranks, stages;
    int64_t nsamples, seqlen;
    int method;           // sds_method values: 0 magnitude, 1 wanda, 2 sparsegpt, 3 sds
    int sds_dense_target; // SDS: carries the dense path (default target)
    int sds_auto_mix;     // SDS: --sds-mix auto (held-out Grams)
    int eval;             // prune --eval: the last stage holds the head
    // optional (0 = none): bytes resident only while the model loads (a GGUF file is mapped
    // whole while it is dequantised)
    double load_extra_bytes;
    // optional: the SDS adjustment steps and whether they are accelerated (src/sds.h), when
    // sds_adjust_given is set; else sds_sds_defaults'
    int sds_adjust_given, sds_adjust_iters, sds_adjust_nesterov;
    int sds_parallel; // SDS: --sds-order parallel (a stage keeps its layers until their SDS)
    // SparseGPT: input groups at most this many columns wide sum their Hessian whole on every
    // rank (prune --local-hessian-max); wider ones on the stage's grid. 0: all on the grid
    int64_t local_hessian_max;
    // how many sequences' Grams a rank computes at once (prune's SDS_GRAM_BATCH, else its BLAS
    // threads; src/hessian.h): 0 or 1 one at a time; k > 1 holds k - 1 sequences' inputs and
    // Grams more per Gram at most SDS_HESSIAN_BATCH_MAX_COLS wide, and k - 1 blocks more per
    // Gram on the grid
    int32_t gram_batch;
} sds_plan_input;

// Bytes one rank holds at its peak, by kind.
typedef struct {
    double weights;     // fp32 decoder layers of the stage
    double embeddings;  // stage 0: token, position embeddings, project_in
    double head;        // last stage with --eval: final norm, project_out, LM head
    double activations; // the rank's calibration sequences (x2 with SDS's dense path)
    double calib_ids;   // N x T int32 on every rank
    double statistics;  // one layer's Grams with their exact-sum accumulators (and SDS's
                        // copies of the sublayer inputs)
    double prune;       // the largest sublayer's pruning buffers beyond the accumulators,
                        // freed before them (owner rank)
    double forward;     // one sequence of forward scratch
    double masks;       // the bit-packed masks kept for checkpoints (stage's first rank)
    double held;        // --sds-order parallel: what a stage's rank keeps of its layers until
                        // their SDS has run and they are written (the owned groups' Grams,
                        // dense weights and uint8 masks of its sublayers; the last stage,
                        // which runs SDS at once, the masks only)
    double baseline;    // the process before any model data
    double load;        // peak while loading: baseline, weights, load_extra, rank 0 tokenizer, ids
} sds_plan_memory;

typedef struct {
    int rank_lo, rank_hi;       // ranks [rank_lo, rank_hi) (global)
    int64_t layer_lo, layer_hi; // decoder layers [layer_lo, layer_hi)
    double peak_bytes;          // max(load, sum of the run's kinds) on the stage's largest rank
    double compute_s, comm_s;   // the stage's predicted seconds (stages run one after another)
    sds_plan_memory mem;
    // compute breakdown (s): forward passes, Gram accumulation, pruning (every sublayer in
    // turn: today each waits for the previous one's broadcast), loading and writing
    double forward_s, gram_s, prune_s, io_s;
    // communication breakdown (s): Gram all-reduces, weight broadcasts, activation handoff to
    // the next stage
    double allreduce_s, bcast_s, handoff_s;
    double flops; // per rank, all compute terms
    // --sds-order parallel: the SDS part of prune_s (steps 2-3), which overlaps the later
    // stages' work (sds_plan_totals); 0 and overlap 0 otherwise
    double sds_s;
    int overlap;
} sds_plan_stage;

// Fills out[0..in->stages) for the stage map of src/stage_map.h. Returns 0, or -1 on
// inconsistent input (stages outside [1, min(nranks, n_layers)], sizes <= 0).
int sds_plan_compute(const sds_plan_input *in, const sds_plan_machine *mc, sds_plan_stage *out);
// Typical constants, used when nothing is measured (see plan.c for their sources).
void sds_plan_machine_default(sds_plan_machine *mc);
// Smallest S in [1, min(P, L)] whose largest per-rank peak fits mem_per_rank_bytes; min(P, L)
// if none does. in->stages is ignored.
int sds_plan_default_stages(const sds_plan_input *in, const sds_plan_machine *mc,
                            double mem_per_rank_bytes);
// The largest peak_bytes and the summed seconds over the stages.
void sds_plan_totals(const sds_plan_stage *st, int stages, double *peak_bytes, double *seconds);

// The pruning output file ("sds-mpi-prune" format 1), written collectively with parallel HDF5.
//
// Layout (every name below is fixed; <name> is a sublayer such as
// "model.layers.3.self_attn.q_proj"):
//   /                      attributes format = "sds-mpi-prune", format_version = 1 (int32),
//                          fingerprint = hex string (after sds_h5out_set_fingerprint)
//   /config                scalar fixed-length string dataset: the resolved configuration (JSON)
//   /weights/<name>        float32 [rows, cols], row-major, Hugging Face orientation
//                          [out_features, in_features]; attributes: the sublayer statistics
//                          (layer, method, pattern, sparsity, rel_err_first, rel_err_final,
//                          damping, seconds, and any named extras)
//   /masks/<name>          uint8 [rows, cols], 1 = pruned
// Sublayers are listed in the order they were written (link creation order is tracked).
//
// Datasets are contiguous, not chunked or compressed: HDF5 1.10 writes filtered datasets in
// parallel only through collective chunk redistribution, pruned fp32 weights barely compress,
// and contiguous storage allocated at creation gives each rank's rows one fixed file range, which
// the rank writes itself (io/h5out.c says why with pwrite rather than H5Dwrite). The file
// depends only on what is written, not on the rank count: files written at 1, 2 or 4 ranks are
// byte-identical (no object timestamps are stored).
//
// The file is created as PATH.tmp.<id> in PATH's directory (with PATH.tmp.<id>.reserve beside it
// while it is written: disk space held for the metadata) and renamed to PATH by sds_h5out_close
// only when every rank commits, nothing failed, and the closed file reads back with the
// sublayers written; otherwise both are removed. An existing PATH is never opened, written or
// removed before that rename.
//
// Every function is collective over the communicator given to sds_h5out_create and returns the
// same status on every rank: a failure on any rank (a write refused, a full disk, an unwritable
// directory) is SDS_ERR_IO on all of them, with the failing rank's message (naming the file and
// the dataset; "(on rank R)" appended on the other ranks) recorded on every rank through
// sds_error_set. After a failure the handle is "failed": later calls do nothing and return the
// same code, and sds_h5out_close removes the temporary file. HDF5's own error printing is
// switched off for the process (messages come back through sds_error instead).
#pragma once
#include <mpi.h>
#include <stdint.h>

#define SDS_H5OUT_FORMAT         "sds-mpi-prune"
#define SDS_H5OUT_FORMAT_VERSION 1
#define SDS_H5OUT_MAX_EXTRA      12
#define SDS_H5OUT_NAME_LEN       32

// Per-sublayer statistics (the same figures rank 0 prints). Rank 0's values are authoritative:
// they are broadcast before writing, so other ranks may pass anything of the right shape.
typedef struct {
    int32_t layer;                    // decoder layer index
    char method[SDS_H5OUT_NAME_LEN];  // "sparsegpt", "wanda", "magnitude", "sds", ...
    char pattern[SDS_H5OUT_NAME_LEN]; // "50%", "2:4", ...
    double sparsity;                  // fraction of the sublayer's weights pruned (global)
    double rel_err_first;             // relative reconstruction error after the first pruning
    double rel_err_final;             // relative reconstruction error of the weights written
    double damping; // damping actually used (relative, after retries; 0 when none)
    double seconds; // wall time spent on the sublayer
    // Named extras (e.g. "rel_err_second", "sds_steps"), each written as a double attribute.
    // Names must be non-empty, free of '/', and differ from the fixed fields above.
    int32_t n_extra;
    char extra_name[SDS_H5OUT_MAX_EXTRA][SDS_H5OUT_NAME_LEN];
    double extra[SDS_H5OUT_MAX_EXTRA];
} sds_h5out_stats;

typedef struct sds_h5out sds_h5out;

// (collective) Creates PATH.tmp.<id> (id: $SLURM_JOB_ID or $PBS_JOBID when set, then rank 0's
// pid) with the MPI-IO driver (metadata read collectively, written by rank 0), and writes the
// format attributes. path (global) must be the same on every rank. On failure *out is NULL and
// nothing is left on disk.
int sds_h5out_create(MPI_Comm comm, const char *path, sds_h5out **out);

// (collective) Writes sublayer `name` (global): weights (float32) and mask (uint8, 1 = pruned),
// both [rows, cols] (global). Each rank writes rows [row0, row0 + rows_local) (local) from
// w_local and mask_local, row-major (rows_local, cols); ranks with rows_local = 0 still call.
// The rank ranges must tile [0, rows) without overlap (any order). st: the statistics (rank 0's
// are used). A name written twice, or arguments that differ across ranks, are
// SDS_ERR_INTERNAL on every rank.
int sds_h5out_sublayer(sds_h5out *h, const char *name, int64_t rows, int64_t cols, int64_t row0,
                       int64_t rows_local, const float *w_local, const uint8_t *mask_local,
                       const sds_h5out_stats *st);

// (collective) The resolved configuration (rank 0's text; JSON) as the /config dataset, and the
// fingerprint of model, calibration and options (rank 0's hex string) as a root attribute.
// Each may be set once.
int sds_h5out_set_config(sds_h5out *h, const char *json_text);
int sds_h5out_set_fingerprint(sds_h5out *h, const char *hex);

// (collective) Closes the file and frees h (also on failure). commit (local): non-zero when this
// rank wants the file kept. When every rank commits and nothing failed, every rank syncs its
// writes, rank 0 reads the closed file back (sublayer names and shapes) and renames it to PATH,
// and every rank returns SDS_OK. Otherwise the temporary file is removed and every rank returns
// the same code:
//   - the handle's code when an earlier call failed (SDS_ERR_IO for I/O, SDS_ERR_INTERNAL for
//     misuse), or SDS_ERR_IO when the close, sync, read-back or rename fails;
//   - else, when some ranks passed commit = 0: the code recorded with sds_error_set on the
//     lowest such rank that has one (its message copied to every rank), or SDS_OK when none
//     has (a deliberate discard).
// h may be NULL (returns SDS_OK; not collective then).
int sds_h5out_close(sds_h5out *h, int commit);

// The files of a pruning checkpoint (sds-mpi prune --resume): everything a run needs to go on
// after its last completed decoder layer, in the directory OUT.ckpt/ beside --out.
//
//   meta.json                       (rank 0) format, options, rank count, last completed layer,
//                                   fingerprints, every finished sublayer's statistics, and the
//                                   size and checksum of every binary file below
//   layer-LLLL.bin                  (rank 0) the pruned weights and masks of layer LLLL
//   rank-R.after-layer-LLLL.bin     (rank R) its calibration activations after layer LLLL
//
// Binary files: a header (magic, version, byte-order mark, sizes), the payload in the host's
// byte order (float32 rows row-major, uint8 masks with 1 = pruned), and a trailer with the
// 64-bit FNV-1a of every byte before it. Every file is written as NAME.tmp, synced and renamed;
// meta.json is renamed last, so a checkpoint is complete exactly when meta.json is there and
// the files it lists have the sizes and checksums it records. Layer files are written once
// (layers never change after they are pruned); activation files carry their layer in the name,
// so the previous checkpoint's stay valid until the new meta.json replaces the old one.
//
// Every function here is local to the calling process; mpi/prune_ckpt.c makes them collective.
// Errors: SDS_ERR_IO when the system refuses a write, SDS_ERR_INPUT naming the file when a file
// read is missing, truncated, of the wrong size or kind, or fails its checksum.
#pragma once
#include "h5out.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define SDS_CKPT_FORMAT         "sds-mpi-checkpoint"
#define SDS_CKPT_FORMAT_VERSION 1
#define SDS_FNV1A64_INIT        0xcbf29ce484222325ull

// 64-bit FNV-1a of data, continuing from h (SDS_FNV1A64_INIT to start).
uint64_t sds_fnv1a64(uint64_t h, const void *data, size_t n);

// Size and checksum of a binary file written or expected.
typedef struct {
    uint64_t bytes;
    uint64_t checksum;
} sds_ckpt_file_info;

// Paths inside the checkpoint directory dir (buffers of cap bytes; truncation is a bug).
void sds_ckpt_meta_path(const char *dir, char *buf, size_t cap);
void sds_ckpt_layer_path(const char *dir, int64_t layer, char *buf, size_t cap);
void sds_ckpt_acts_path(const char *dir, int32_t rank, int64_t layer, char *buf, size_t cap);

// Creates dir when absent (an existing directory is fine).
int sds_ckpt_dir_create(const char *dir);
// Removes the checkpoint files in dir (meta.json, layer-*.bin, rank-*.bin and their .tmp),
// then dir itself when that leaves it empty. Best effort: returns the number of entries left.
int sds_ckpt_dir_remove(const char *dir);
// Removes one file; a missing file is fine.
void sds_ckpt_file_remove(const char *path);
// SDS_OK when path is a regular file of info->bytes bytes (a cheap check before the long read).
int sds_ckpt_file_check_size(const char *path, const sds_ckpt_file_info *info);

// ---- layer files ----

// One sublayer's record: [rows, cols] float32 weights then [rows, cols] uint8 mask.
typedef struct {
    int64_t rows, cols;
} sds_ckpt_shape;

// Bytes of a layer file with n sublayers of these shapes.
uint64_t sds_ckpt_layer_bytes(int32_t n, const sds_ckpt_shape *shapes);

// Streaming writer of one layer file: begin, one put per sublayer in order, commit.
typedef struct sds_ckpt_writer sds_ckpt_writer;
int sds_ckpt_layer_begin(const char *path, int64_t layer, int32_t n, const sds_ckpt_shape *shapes,
                         sds_ckpt_writer **out);
int sds_ckpt_layer_put(sds_ckpt_writer *wr, const float *w, const uint8_t *mask);
// Writes the trailer, syncs, closes and renames; frees wr (also on failure, leaving nothing).
int sds_ckpt_writer_commit(sds_ckpt_writer *wr, sds_ckpt_file_info *info);
// Abandons a file being written (removes its temporary name); wr may be NULL.
void sds_ckpt_writer_abort(sds_ckpt_writer *wr);

// Streaming reader of one layer file, checked against what meta.json records.
typedef struct sds_ckpt_reader sds_ckpt_reader;
int sds_ckpt_layer_open(const char *path, int64_t layer, int32_t n, const sds_ckpt_shape *shapes,
                        const sds_ckpt_file_info *expect, sds_ckpt_reader **out);
int sds_ckpt_layer_get(sds_ckpt_reader *rd, float *w, uint8_t *mask);
// Reads the trailer and checks the checksum; frees rd (also on failure).
int sds_ckpt_reader_finish(sds_ckpt_reader *rd);
// Abandons a read; rd may be NULL.
void sds_ckpt_reader_abort(sds_ckpt_reader *rd);

// ---- activation files ----

typedef struct {
    int32_t rank, nranks; // the writer and the run's rank count
    int64_t layer;        // the last completed layer: these are the inputs of layer + 1
    int64_t n_local;      // calibration sequences this rank holds
    int64_t T, C;         // tokens per sequence, residual width
    int32_t dense;        // 1: the dense path's activations follow the pruned ones (SDS)
} sds_ckpt_acts_header;

uint64_t sds_ckpt_acts_bytes(const sds_ckpt_acts_header *hd);
// inps (and inps_d when hd->dense): n_local x T x C float32 each.
int sds_ckpt_acts_write(const char *path, const sds_ckpt_acts_header *hd, const float *inps,
                        const float *inps_d, sds_ckpt_file_info *info);
// Reads a file written with exactly the header *expect, checked against *info.
int sds_ckpt_acts_read(const char *path, const sds_ckpt_acts_header *expect,
                       const sds_ckpt_file_info *info, float *inps, float *inps_d);

// ---- meta.json ----

// Writes root (takes ownership) as dir's meta.json, atomically and durably.
int sds_ckpt_meta_write(const char *dir, json_t *root);
// Reads dir's meta.json: *root is NULL (and SDS_OK) when there is none.
int sds_ckpt_meta_read(const char *dir, json_t **root);

// A sublayer's statistics as JSON and back (every double exactly; NaN and infinities as the
// strings "nan", "inf", "-inf"). what names the file for the error message.
json_t *sds_ckpt_stats_json(const sds_h5out_stats *st);
int sds_ckpt_stats_parse(const json_t *j, const char *what, sds_h5out_stats *st);

// File info as JSON ({"bytes": N, "fnv1a64": "hex"}) and back.
json_t *sds_ckpt_info_json(const sds_ckpt_file_info *info);
int sds_ckpt_info_parse(const json_t *j, const char *what, sds_ckpt_file_info *info);

// Reading a pruning output file (io/h5out.h describes the layout), e.g. for
// `eval --weights pruned.h5`. Serial: each process opens the file read-only on its own (no MPI
// calls), so any rank can read any sublayer.
//
// Errors are SDS_ERR_INPUT with a message naming the file and dataset (missing file, not an
// HDF5 file, not an sds-mpi prune file, a newer format version, a missing sublayer, a wrong
// shape or type, NaN/Inf weights, mask values other than 0/1), or SDS_ERR_IO when a read fails.
#pragma once
#include "h5out.h"

#include <stdint.h>

typedef struct sds_h5in sds_h5in;

// Opens PATH and checks the format attributes; reads the sublayer list, the configuration and
// the fingerprint.
int sds_h5in_open(const char *path, sds_h5in **out);
void sds_h5in_close(sds_h5in *h);

int32_t sds_h5in_format_version(const sds_h5in *h);
// The sublayers in the order they were written.
int64_t sds_h5in_count(const sds_h5in *h);
const char *sds_h5in_name(const sds_h5in *h, int64_t i);
// The resolved configuration (JSON) and the fingerprint; "" when the file has none.
const char *sds_h5in_config(const sds_h5in *h);
const char *sds_h5in_fingerprint(const sds_h5in *h);

// The shape [rows, cols] of sublayer `name`'s weights.
int sds_h5in_shape(const sds_h5in *h, const char *name, int64_t *rows, int64_t *cols);
// Reads the weights (fp32) or the mask (1 = pruned) of sublayer `name` into dst (rows x cols,
// row-major) after checking that the dataset exists and has shape [rows, cols].
int sds_h5in_read_weights(const sds_h5in *h, const char *name, int64_t rows, int64_t cols,
                          float *dst);
int sds_h5in_read_mask(const sds_h5in *h, const char *name, int64_t rows, int64_t cols,
                       uint8_t *dst);
// The statistics of sublayer `name`; extras come back in name order.
int sds_h5in_read_stats(const sds_h5in *h, const char *name, sds_h5out_stats *st);

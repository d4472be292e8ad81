// safetensors checkpoints: one file, or shards listed by model.safetensors.index.json.
// Headers are parsed at open; tensor data is read per tensor with pread, so a rank reads only
// the tensors it asks for. F32, F16 and BF16 convert to fp32.
#pragma once
#include <stdint.h>
#include <stddef.h>

typedef enum {
    SDS_DTYPE_F32,
    SDS_DTYPE_F16,
    SDS_DTYPE_BF16,
    SDS_DTYPE_OTHER // any dtype safetensors allows but we do not convert (F64, I64, ...)
} sds_dtype;

#define SDS_ST_MAX_DIMS 8

typedef struct {
    char *name;
    sds_dtype dtype;
    char dtype_name[8]; // as written in the header ("F16", "I64", ...)
    int32_t ndim;
    int64_t shape[SDS_ST_MAX_DIMS];
    uint64_t data_begin; // absolute byte offset in its file
    uint64_t data_bytes;
    int32_t file_index; // into sds_safetensors' file list
} sds_st_tensor;

typedef struct sds_safetensors sds_safetensors;

// path: a .safetensors file, or a directory holding model.safetensors or
// model.safetensors.index.json. Errors (SDS_ERR_INPUT, message names the file): missing file,
// header length past the end, header not valid JSON, unknown dtype string, data offsets
// inconsistent with shape x dtype size or past the end of the file (a truncated file).
int sds_safetensors_open(const char *path, sds_safetensors **out);
void sds_safetensors_free(sds_safetensors *st);

int64_t sds_safetensors_count(const sds_safetensors *st);
const sds_st_tensor *sds_safetensors_at(const sds_safetensors *st, int64_t i);
// NULL when absent.
const sds_st_tensor *sds_safetensors_find(const sds_safetensors *st, const char *name);
// The file a tensor lives in (for messages).
const char *sds_safetensors_file_of(const sds_safetensors *st, const sds_st_tensor *t);

// Reads tensor `name` into dst (fp32, row-major, numel floats) after checking that it exists
// (else "tensor NAME missing from PATH"), that its shape equals shape[0..ndim) ("tensor NAME in
// FILE has shape [a, b], expected [c, d]"), that its dtype converts ("has dtype I64, expected
// F32, F16 or BF16"), and that every value is finite ("tensor NAME in FILE holds NaN at index
// i"). All these are SDS_ERR_INPUT; a failed read is SDS_ERR_IO.
int sds_safetensors_read_f32(const sds_safetensors *st, const char *name, int32_t ndim,
                             const int64_t *shape, float *dst);

// IEEE half and bfloat16 to float (exact).
float sds_f16_to_f32(uint16_t h);
float sds_bf16_to_f32(uint16_t h);

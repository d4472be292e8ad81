// GGUF files (llama.cpp's format), versions 2 and 3, little-endian. The header, metadata and
// tensor infos are parsed and checked at open; tensor data stays in a read-only mapping of the
// file and is dequantised to fp32 per tensor on request (F32, F16, BF16, Q8_0, Q4_0, Q4_1).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Metadata value types, numbered as in the file.
typedef enum {
    SDS_GGUF_UINT8 = 0,
    SDS_GGUF_INT8 = 1,
    SDS_GGUF_UINT16 = 2,
    SDS_GGUF_INT16 = 3,
    SDS_GGUF_UINT32 = 4,
    SDS_GGUF_INT32 = 5,
    SDS_GGUF_FLOAT32 = 6,
    SDS_GGUF_BOOL = 7,
    SDS_GGUF_STRING = 8,
    SDS_GGUF_ARRAY = 9,
    SDS_GGUF_UINT64 = 10,
    SDS_GGUF_INT64 = 11,
    SDS_GGUF_FLOAT64 = 12
} sds_gguf_vtype;

// Tensor types (ggml's numbering). Only the ones read_f32 converts are named; the others are
// known by their block layout so that a file holding them still opens.
typedef enum {
    SDS_GGML_F32 = 0,
    SDS_GGML_F16 = 1,
    SDS_GGML_Q4_0 = 2,
    SDS_GGML_Q4_1 = 3,
    SDS_GGML_Q8_0 = 8,
    SDS_GGML_BF16 = 30
} sds_ggml_type;

#define SDS_GGUF_MAX_DIMS 4

// One metadata entry. Values are copied out of the file at open into host-order arrays of the
// element type (uint8_t, int8_t, ..., float, double; bool as uint8_t 0/1), so a reader casts
// `data` to the matching pointer type.
typedef struct {
    const char *key;
    sds_gguf_vtype type;      // SDS_GGUF_ARRAY for arrays
    sds_gguf_vtype elem_type; // arrays: the element type; scalars: equal to type
    int64_t n;                // arrays: element count; scalars: 1
    const void *data;         // numeric and bool values (NULL for strings)
    const char *const *strs;  // string values, NUL-terminated (NULL for numbers)
    const uint64_t *lens;     // their byte lengths (a string may hold NUL bytes)
} sds_gguf_kv;

typedef struct {
    const char *name;
    int32_t type; // ggml type number (sds_ggml_type for the converted ones)
    int32_t n_dims;
    int64_t ne[SDS_GGUF_MAX_DIMS]; // innermost first: ne[0] is the row length; unused dims are 1
    uint64_t offset;               // absolute byte offset of the data in the file
    uint64_t n_bytes;
} sds_gguf_tensor;

typedef struct sds_gguf sds_gguf;

// Errors are SDS_ERR_INPUT with the path and what is wrong: bad magic, version other than 2 or 3,
// a truncated header / key / value / tensor info / data, an unknown value or tensor type, nested
// arrays, counts or lengths that cannot fit in the file, duplicate keys or tensor names, more
// than 4 dimensions, a bad general.alignment, tensor data misaligned or past the end. A system
// failure (open, mmap) is SDS_ERR_IO.
int sds_gguf_open(const char *path, sds_gguf **out);
void sds_gguf_free(sds_gguf *g);

const char *sds_gguf_path(const sds_gguf *g);
uint32_t sds_gguf_version(const sds_gguf *g);
uint64_t sds_gguf_alignment(const sds_gguf *g);
uint64_t sds_gguf_data_start(const sds_gguf *g); // absolute byte offset of the data section

// ---- metadata ----
int64_t sds_gguf_kv_count(const sds_gguf *g);
const sds_gguf_kv *sds_gguf_kv_at(const sds_gguf *g, int64_t i);         // in file order
const sds_gguf_kv *sds_gguf_find_kv(const sds_gguf *g, const char *key); // NULL when absent
bool sds_gguf_has(const sds_gguf *g, const char *key);
// Name of a value type ("uint32", "array", ...; "unknown" outside the enum).
const char *sds_gguf_vtype_name(int32_t type);

// Typed getters: SDS_ERR_INPUT naming the key and the file when the key is missing, has another
// type, or does not fit. Integers convert between integer types when the value fits; u32 takes
// no negatives. f32 takes float32, float64 (rounded) and integers. bool takes only bool.
int sds_gguf_get_u32(const sds_gguf *g, const char *key, uint32_t *out);
int sds_gguf_get_i64(const sds_gguf *g, const char *key, int64_t *out);
int sds_gguf_get_f32(const sds_gguf *g, const char *key, float *out);
int sds_gguf_get_bool(const sds_gguf *g, const char *key, bool *out);
// *out points into g (valid until sds_gguf_free).
int sds_gguf_get_str(const sds_gguf *g, const char *key, const char **out);
// An array of strings: *strs[i] NUL-terminated, pointing into g; lens (may be NULL) gets the byte
// lengths. An empty array is fine (*n = 0).
int sds_gguf_get_str_array(const sds_gguf *g, const char *key, const char *const **strs,
                           const uint64_t **lens, int64_t *n);
// An array of any integer type as int64 (malloc'ed, caller frees; NULL when *n = 0).
int sds_gguf_get_i64_array(const sds_gguf *g, const char *key, int64_t **vals, int64_t *n);

// ---- tensors ----
int64_t sds_gguf_tensor_count(const sds_gguf *g);
const sds_gguf_tensor *sds_gguf_tensor_at(const sds_gguf *g, int64_t i);          // in file order
const sds_gguf_tensor *sds_gguf_find_tensor(const sds_gguf *g, const char *name); // NULL: absent
// Name of a ggml type ("Q4_1"), or NULL for a number this reader does not know.
const char *sds_ggml_type_name(int32_t type);
// Whether sds_gguf_read_f32 converts the type.
bool sds_ggml_type_readable(int32_t type);

// Reads tensor `name` as fp32 into dst, row-major: shape_rowmajor is the PyTorch-style shape, so
// [rows, cols] means ne[0] = cols, ne[1] = rows. Checks that the tensor exists, that ndim and the
// shape match exactly, that the type converts (else the message names the type and tensor), and
// that every value is finite. All SDS_ERR_INPUT naming the tensor and the file.
int sds_gguf_read_f32(const sds_gguf *g, const char *name, int32_t ndim,
                      const int64_t *shape_rowmajor, float *dst);

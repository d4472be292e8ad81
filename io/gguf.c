// GGUF reader. Layout (v2 and v3, little-endian): "GGUF", u32 version, u64 tensor count, u64 kv
// count; each kv is a string key, a u32 value type and the value (an array is a u32 element type,
// a u64 count and the elements; a string is a u64 length and its bytes); each tensor info is a
// string name, u32 n_dims, u64 ne[n_dims], u32 ggml type and a u64 offset relative to the data
// section, which starts at the end of the infos rounded up to general.alignment (default 32).
// The file is mapped read-only: every field is bounds-checked against the file size before it
// is read, and every allocation is bounded by the bytes the file actually holds.
#define _POSIX_C_SOURCE 200809L
#include "gguf.h"

#include "file.h"
#include "safetensors.h" // sds_f16_to_f32, sds_bf16_to_f32
#include "sds_error.h"
#include "strmap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GG_DEFAULT_ALIGNMENT 32
#define GG_MAX_ALIGNMENT     (1u << 30)

struct sds_gguf {
    char *path;
    const unsigned char *map; // the whole file, read-only (NULL for an empty file)
    uint64_t size;
    uint32_t version;
    uint64_t alignment, data_start;
    sds_gguf_kv *kvs;
    int64_t n_kv;
    sds_gguf_tensor *tensors;
    int64_t n_tensors;
    sds_strmap *kv_index;     // key -> index in kvs
    sds_strmap *tensor_index; // name -> index in tensors
};

// ---- tensor types ----

typedef struct {
    const char *name;
    int32_t block;     // elements per block
    int32_t type_size; // bytes per block
} gg_type_info;

// ggml's types by number; a NULL name is a number ggml never used or has retired (4, 5, 36-38).
// Q8_1 is ggml's 36-byte block (two fp16 and 32 int8); it never appears in model files.
static const gg_type_info gg_types[] = {
    [0] = {"F32", 1, 4},         [1] = {"F16", 1, 2},         [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},      [6] = {"Q5_0", 32, 22},      [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},      [9] = {"Q8_1", 32, 36},      [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},   [12] = {"Q4_K", 256, 144},   [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},   [15] = {"Q8_K", 256, 292},   [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},  [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},   [21] = {"IQ3_S", 256, 110},  [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},         [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},        [27] = {"I64", 1, 8},        [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},   [30] = {"BF16", 1, 2},       [31] = {"Q4_0_4_4", 32, 18},
    [32] = {"Q4_0_4_8", 32, 18}, [33] = {"Q4_0_8_8", 32, 18}, [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},   [39] = {"MXFP4", 32, 17},
};
#define GG_N_TYPES ((int32_t)(sizeof gg_types / sizeof gg_types[0]))

static const gg_type_info *gg_type(int64_t type) {
    if (type < 0 || type >= GG_N_TYPES || !gg_types[type].name) return NULL;
    return &gg_types[type];
}

const char *sds_ggml_type_name(int32_t type) {
    const gg_type_info *t = gg_type(type);
    return t ? t->name : NULL;
}

bool sds_ggml_type_readable(int32_t type) {
    return type == SDS_GGML_F32 || type == SDS_GGML_F16 || type == SDS_GGML_BF16 ||
           type == SDS_GGML_Q8_0 || type == SDS_GGML_Q4_0 || type == SDS_GGML_Q4_1;
}

// ---- value types ----

static const char *const gg_vtype_names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                             "int32",  "float32", "bool",   "string", "array",
                                             "uint64", "int64",   "float64"};
#define GG_N_VTYPES 13

const char *sds_gguf_vtype_name(int32_t type) {
    return type >= 0 && type < GG_N_VTYPES ? gg_vtype_names[type] : "unknown";
}

// Bytes of one value in the file; 0 for string and array.
static uint64_t gg_vtype_size(uint32_t type) {
    switch (type) {
    case SDS_GGUF_UINT8:
    case SDS_GGUF_INT8:
    case SDS_GGUF_BOOL:
        return 1;
    case SDS_GGUF_UINT16:
    case SDS_GGUF_INT16:
        return 2;
    case SDS_GGUF_UINT32:
    case SDS_GGUF_INT32:
    case SDS_GGUF_FLOAT32:
        return 4;
    case SDS_GGUF_UINT64:
    case SDS_GGUF_INT64:
    case SDS_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

static bool gg_vtype_is_int(int32_t type) {
    return type == SDS_GGUF_UINT8 || type == SDS_GGUF_INT8 || type == SDS_GGUF_UINT16 ||
           type == SDS_GGUF_INT16 || type == SDS_GGUF_UINT32 || type == SDS_GGUF_INT32 ||
           type == SDS_GGUF_UINT64 || type == SDS_GGUF_INT64;
}

// ---- little-endian reads from the mapping ----

static uint16_t gg_le16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t gg_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t gg_le64(const unsigned char *p) {
    return (uint64_t)gg_le32(p) | (uint64_t)gg_le32(p + 4) << 32;
}

// n values of `size` bytes, little-endian in src, to host order in dst.
static void gg_copy_le(void *dst, const unsigned char *src, uint64_t n, uint64_t size) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    unsigned char *d = dst;
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t b = 0; b < size; b++) d[i * size + b] = src[i * size + size - 1 - b];
#else
    memcpy(dst, src, (size_t)(n * size));
#endif
}

// ---- the parser: a cursor over the mapping, and what it is reading (for messages) ----

typedef struct {
    const char *path;
    const unsigned char *p;
    uint64_t size, pos;
    char what[200]; // "key 3 (\"general.name\")", "tensor info 7 (\"blk.0.attn_q.weight\")"
} gg_parser;

__attribute__((format(printf, 2, 3))) static int gg_fail(const gg_parser *ps, const char *fmt,
                                                         ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sds_error_set(SDS_ERR_INPUT, "%s: %s", ps->path, msg);
}

static uint64_t gg_left(const gg_parser *ps) {
    return ps->size - ps->pos;
}

// Ensures n more bytes exist; `field` names them ("the value type", "ne[2]").
static int gg_need(const gg_parser *ps, uint64_t n, const char *field) {
    if (n <= gg_left(ps)) return SDS_OK;
    return gg_fail(ps,
                   "truncated file: %s%s%s needs %" PRIu64 " bytes at offset %" PRIu64
                   " but the file ends at %" PRIu64,
                   ps->what, ps->what[0] ? ": " : "", field, n, ps->pos, ps->size);
}

static int gg_read_u32(gg_parser *ps, const char *field, uint32_t *v) {
    SDS_TRY(gg_need(ps, 4, field));
    *v = gg_le32(ps->p + ps->pos);
    ps->pos += 4;
    return SDS_OK;
}

static int gg_read_u64(gg_parser *ps, const char *field, uint64_t *v) {
    SDS_TRY(gg_need(ps, 8, field));
    *v = gg_le64(ps->p + ps->pos);
    ps->pos += 8;
    return SDS_OK;
}

// A string: *s points into the mapping (not NUL-terminated).
static int gg_read_str(gg_parser *ps, const char *field, const unsigned char **s, uint64_t *len) {
    SDS_TRY(gg_read_u64(ps, field, len));
    if (*len > gg_left(ps))
        return gg_fail(ps,
                       "%s%s%s: string length %" PRIu64 " at offset %" PRIu64
                       " runs past the end of the file (%" PRIu64
                       " bytes left): truncated or corrupt",
                       ps->what, ps->what[0] ? ": " : "", field, *len, ps->pos - 8, gg_left(ps));
    *s = ps->p + ps->pos;
    ps->pos += *len;
    return SDS_OK;
}

static char *gg_strndup(const unsigned char *s, uint64_t len, const char *what) {
    char *d = sds_malloc((size_t)len + 1, what);
    if (!d) return NULL;
    memcpy(d, s, (size_t)len);
    d[len] = '\0';
    return d;
}

// Copies a key or tensor name, refusing NUL bytes (lookups take C strings).
static int gg_read_name(gg_parser *ps, const char *field, char **out) {
    const unsigned char *s = NULL; // (set on success; GCC -O3 cannot see it)
    uint64_t len = 0;
    SDS_TRY(gg_read_str(ps, field, &s, &len));
    if (memchr(s, '\0', (size_t)len))
        return gg_fail(ps, "%s: %s holds a NUL byte", ps->what, field);
    *out = gg_strndup(s, len, field);
    return *out ? SDS_OK : SDS_ERR_IO;
}

// Strings of one kv (n >= 1): pointer table, lengths and one block of characters.
static int gg_read_strings(gg_parser *ps, sds_gguf_kv *kv, uint64_t n) {
    // First pass: check every length and add them up, so the copy is one exact allocation.
    uint64_t start = ps->pos, total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char *s;
        uint64_t len;
        char field[48];
        snprintf(field, sizeof field, "string %" PRIu64, i);
        SDS_TRY(gg_read_str(ps, field, &s, &len));
        total += len + 1; // bounded by the file size: each string has 8 bytes of length before it
    }
    ps->pos = start;
    char **strs = sds_calloc((size_t)n, sizeof *strs, "GGUF string table");
    uint64_t *lens = sds_calloc((size_t)n, sizeof *lens, "GGUF string lengths");
    char *chars = sds_malloc((size_t)total, "GGUF strings");
    kv->strs = (const char *const *)strs;
    kv->lens = lens;
    if (!strs || !lens || !chars) {
        free(chars);
        return SDS_ERR_IO;
    }
    char *c = chars;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = gg_le64(ps->p + ps->pos);
        memcpy(c, ps->p + ps->pos + 8, (size_t)len);
        c[len] = '\0';
        strs[i] = c;
        lens[i] = len;
        c += len + 1;
        ps->pos += 8 + len;
    }
    return SDS_OK;
}

// The value(s) of one kv: n elements of elem_type.
static int gg_read_values(gg_parser *ps, sds_gguf_kv *kv, uint32_t elem_type, uint64_t n) {
    if (n == 0) return SDS_OK;
    if (elem_type == SDS_GGUF_STRING) return gg_read_strings(ps, kv, n);
    uint64_t size = gg_vtype_size(elem_type);
    SDS_TRY(gg_need(ps, n * size, "the value")); // n * size <= file size: checked by the caller
    unsigned char *data = sds_malloc((size_t)(n * size), "GGUF metadata values");
    if (!data) return SDS_ERR_IO;
    gg_copy_le(data, ps->p + ps->pos, n, size);
    if (elem_type == SDS_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++) data[i] = data[i] != 0;
    kv->data = data;
    ps->pos += n * size;
    return SDS_OK;
}

// "key 3" or "tensor info 7 ("blk.0.attn_q.weight")": names from the file are cut at 120 bytes
// and their control characters shown as '?', so that a message stays one readable line.
static void gg_set_what(gg_parser *ps, const char *kind, int64_t i, const char *name) {
    int n = snprintf(ps->what, sizeof ps->what, "%s %" PRId64, kind, i);
    if (!name) return;
    char shown[121];
    size_t k = 0;
    for (; k < sizeof shown - 1 && name[k]; k++) {
        unsigned char c = (unsigned char)name[k];
        shown[k] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    shown[k] = '\0';
    snprintf(ps->what + n, sizeof ps->what - (size_t)n, " (\"%s\"%s)", shown, name[k] ? "..." : "");
}

static int gg_parse_kv(gg_parser *ps, sds_gguf *g, int64_t i) {
    sds_gguf_kv *kv = &g->kvs[i];
    gg_set_what(ps, "key", i, NULL);
    char *key = NULL;
    SDS_TRY(gg_read_name(ps, "the key", &key));
    kv->key = key;
    gg_set_what(ps, "key", i, key);
    int64_t earlier;
    if (sds_strmap_get(g->kv_index, key, strlen(key), &earlier))
        return gg_fail(ps, "%s: duplicate metadata key (also entry %" PRId64 ")", ps->what,
                       earlier);
    SDS_TRY(sds_strmap_put(g->kv_index, key, strlen(key), i));

    uint32_t type, elem;
    SDS_TRY(gg_read_u32(ps, "the value type", &type));
    if (type >= GG_N_VTYPES)
        return gg_fail(ps, "%s: unknown value type %" PRIu32 " (known: 0 to 12)", ps->what, type);
    uint64_t n = 1;
    elem = type;
    if (type == SDS_GGUF_ARRAY) {
        SDS_TRY(gg_read_u32(ps, "the array element type", &elem));
        if (elem >= GG_N_VTYPES)
            return gg_fail(ps, "%s: unknown array element type %" PRIu32 " (known: 0 to 12)",
                           ps->what, elem);
        if (elem == SDS_GGUF_ARRAY)
            return gg_fail(ps, "%s: arrays of arrays are not supported", ps->what);
        SDS_TRY(gg_read_u64(ps, "the array length", &n));
        // A string takes at least its 8-byte length: the count must fit in what is left.
        uint64_t min_size = elem == SDS_GGUF_STRING ? 8 : gg_vtype_size(elem);
        if (n > gg_left(ps) / min_size)
            return gg_fail(ps,
                           "%s: an array of %" PRIu64 " %s values cannot fit in the %" PRIu64
                           " bytes left in the file: truncated or corrupt",
                           ps->what, n, gg_vtype_names[elem], gg_left(ps));
    }
    kv->type = (sds_gguf_vtype)type;
    kv->elem_type = (sds_gguf_vtype)elem;
    kv->n = (int64_t)n;
    return gg_read_values(ps, kv, elem, n);
}

static int gg_parse_tensor(gg_parser *ps, sds_gguf *g, int64_t i) {
    sds_gguf_tensor *t = &g->tensors[i];
    gg_set_what(ps, "tensor info", i, NULL);
    char *name = NULL;
    SDS_TRY(gg_read_name(ps, "the name", &name));
    t->name = name;
    gg_set_what(ps, "tensor info", i, name);
    int64_t earlier;
    if (sds_strmap_get(g->tensor_index, name, strlen(name), &earlier))
        return gg_fail(ps, "%s: duplicate tensor name (also tensor %" PRId64 ")", ps->what,
                       earlier);
    SDS_TRY(sds_strmap_put(g->tensor_index, name, strlen(name), i));

    uint32_t n_dims;
    SDS_TRY(gg_read_u32(ps, "n_dims", &n_dims));
    if (n_dims > SDS_GGUF_MAX_DIMS)
        return gg_fail(ps, "%s: %" PRIu32 " dimensions; at most %d are supported", ps->what, n_dims,
                       SDS_GGUF_MAX_DIMS);
    t->n_dims = (int32_t)n_dims;
    uint64_t numel = 1;
    bool overflow = false, any_zero = false;
    for (int d = 0; d < SDS_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        char field[16];
        snprintf(field, sizeof field, "ne[%" PRIu32 "]", d);
        uint64_t ne;
        SDS_TRY(gg_read_u64(ps, field, &ne));
        if (ne > (uint64_t)INT64_MAX)
            return gg_fail(ps, "%s: ne[%" PRIu32 "] = %" PRIu64 " is not a valid size", ps->what, d,
                           ne);
        t->ne[d] = (int64_t)ne;
        any_zero |= ne == 0;
        if (ne != 0 && numel > (uint64_t)INT64_MAX / ne) overflow = true;
        numel *= ne; // may wrap when overflow is set; only used when it is not
    }
    uint32_t type;
    SDS_TRY(gg_read_u32(ps, "the tensor type", &type));
    SDS_TRY(gg_read_u64(ps, "the data offset", &t->offset));
    const gg_type_info *ti = gg_type(type);
    if (!ti) return gg_fail(ps, "%s: unknown tensor type %" PRIu32, ps->what, type);
    t->type = (int32_t)type;
    if (any_zero) numel = 0; // an empty tensor, whatever the other dimensions are
    if (overflow && !any_zero)
        return gg_fail(ps, "%s: the element count overflows 64 bits", ps->what);
    if (t->ne[0] % ti->block != 0)
        return gg_fail(ps,
                       "%s: row length ne[0] = %" PRId64 " is not a multiple of %s's block of %d",
                       ps->what, t->ne[0], ti->name, ti->block);
    uint64_t blocks = numel / (uint64_t)ti->block;
    if (blocks > ps->size / (uint64_t)ti->type_size)
        return gg_fail(ps,
                       "%s: %" PRIu64 " elements of %s cannot fit in the file (%" PRIu64
                       " bytes): truncated or corrupt",
                       ps->what, numel, ti->name, ps->size);
    t->n_bytes = blocks * (uint64_t)ti->type_size;
    return SDS_OK;
}

// general.alignment, when present: an integer power of two.
static int gg_parse_alignment(gg_parser *ps, sds_gguf *g) {
    g->alignment = GG_DEFAULT_ALIGNMENT;
    const sds_gguf_kv *kv = sds_gguf_find_kv(g, "general.alignment");
    if (!kv) return SDS_OK;
    int64_t v;
    if (kv->type == SDS_GGUF_ARRAY || !gg_vtype_is_int(kv->type))
        return gg_fail(ps, "general.alignment has type %s, expected uint32",
                       sds_gguf_vtype_name(kv->type));
    SDS_TRY(sds_gguf_get_i64(g, "general.alignment", &v));
    if (v <= 0 || v > (int64_t)GG_MAX_ALIGNMENT || (v & (v - 1)) != 0)
        return gg_fail(ps, "general.alignment is %" PRId64 "; it must be a power of two up to %u",
                       v, GG_MAX_ALIGNMENT);
    g->alignment = (uint64_t)v;
    return SDS_OK;
}

static int gg_parse(gg_parser *ps, sds_gguf *g) {
    ps->what[0] = '\0';
    if (ps->size < 4) return gg_need(ps, 4, "the magic \"GGUF\"");
    const unsigned char *m = ps->p;
    if (memcmp(m, "GGUF", 4) != 0)
        return gg_fail(ps, "not a GGUF file: the magic is %02x %02x %02x %02x, expected \"GGUF\"",
                       m[0], m[1], m[2], m[3]);
    ps->pos = 4;
    SDS_TRY(gg_read_u32(ps, "the version", &g->version));
    if (g->version == 1)
        return gg_fail(ps, "GGUF version 1 is not supported (only 2 and 3): convert the model "
                           "again with a current llama.cpp");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xFFFF) == 0)
            return gg_fail(ps,
                           "unsupported GGUF version %" PRIu32 " (0x%08" PRIx32
                           "): a big-endian file? Only little-endian v2 and v3 "
                           "are read",
                           g->version, g->version);
        return gg_fail(ps, "unsupported GGUF version %" PRIu32 " (only 2 and 3 are read)",
                       g->version);
    }
    uint64_t n_tensors, n_kv;
    SDS_TRY(gg_read_u64(ps, "the tensor count", &n_tensors));
    SDS_TRY(gg_read_u64(ps, "the metadata key count", &n_kv));
    // Smallest kv: 8-byte key length, 4-byte type, 1-byte value. Smallest tensor info: 8-byte
    // name length, 4-byte n_dims, 4-byte type, 8-byte offset.
    if (n_kv > gg_left(ps) / 13)
        return gg_fail(ps,
                       "the header claims %" PRIu64 " metadata keys, more than the %" PRIu64
                       " bytes left could hold: truncated or corrupt",
                       n_kv, gg_left(ps));
    if (n_tensors > gg_left(ps) / 24)
        return gg_fail(ps,
                       "the header claims %" PRIu64 " tensors, more than the %" PRIu64
                       " bytes left could hold: truncated or corrupt",
                       n_tensors, gg_left(ps));

    g->kvs = sds_calloc((size_t)n_kv, sizeof *g->kvs, "GGUF metadata");
    if (!g->kvs) return SDS_ERR_IO;
    SDS_TRY(sds_strmap_init((size_t)n_kv, &g->kv_index));
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; // the entry being filled is freed with the others on failure
        SDS_TRY(gg_parse_kv(ps, g, (int64_t)i));
    }
    g->n_kv = (int64_t)n_kv;
    ps->what[0] = '\0';
    SDS_TRY(gg_parse_alignment(ps, g));

    if (n_tensors > gg_left(ps) / 24)
        return gg_fail(ps,
                       "the header claims %" PRIu64 " tensors, more than the %" PRIu64
                       " bytes left after the metadata could hold: truncated or corrupt",
                       n_tensors, gg_left(ps));
    g->tensors = sds_calloc((size_t)n_tensors, sizeof *g->tensors, "GGUF tensor infos");
    if (!g->tensors) return SDS_ERR_IO;
    SDS_TRY(sds_strmap_init((size_t)n_tensors, &g->tensor_index));
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int64_t)i + 1;
        SDS_TRY(gg_parse_tensor(ps, g, (int64_t)i));
    }
    g->n_tensors = (int64_t)n_tensors;
    ps->what[0] = '\0';

    // The data section starts at the next multiple of the alignment (pos <= size < 2^63).
    g->data_start = (ps->pos + g->alignment - 1) / g->alignment * g->alignment;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        sds_gguf_tensor *t = &g->tensors[i];
        uint64_t rel = t->offset;
        gg_set_what(ps, "tensor", i, t->name);
        if (rel % g->alignment != 0)
            return gg_fail(
                ps, "%s: data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                ps->what, rel, g->alignment);
        if (t->n_bytes > 0 && (rel > ps->size || g->data_start > ps->size - rel ||
                               t->n_bytes > ps->size - rel - g->data_start))
            return gg_fail(ps,
                           "%s: data at offset %" PRIu64 " + %" PRIu64 " (%" PRIu64
                           " bytes) runs past the end of the file (%" PRIu64
                           " bytes): truncated or corrupt",
                           ps->what, g->data_start, rel, t->n_bytes, ps->size);
        t->offset = g->data_start + (t->n_bytes > 0 ? rel : 0);
    }
    ps->what[0] = '\0';
    return SDS_OK;
}

int sds_gguf_open(const char *path, sds_gguf **out) {
    *out = NULL;
    int fd = -1;
    uint64_t file_size = 0;
    SDS_TRY(sds_file_open_regular(path, &fd, &file_size));
    sds_gguf *g = sds_calloc(1, sizeof *g, "GGUF reader");
    if (!g) {
        close(fd);
        return SDS_ERR_IO;
    }
    g->size = file_size;
    g->path = gg_strndup((const unsigned char *)path, strlen(path), "GGUF path");
    int rc = g->path ? SDS_OK : SDS_ERR_IO;
    if (rc == SDS_OK && g->size > 0) {
        // MAP_PRIVATE + PROT_READ: the pages are the page cache's, shared by the ranks of a node.
        void *m = mmap(NULL, (size_t)g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            rc = sds_error_set(SDS_ERR_IO, "%s: cannot map %" PRIu64 " bytes: %s", path, g->size,
                               strerror(errno));
        else
            g->map = m;
    }
    close(fd); // the mapping keeps the file
    if (rc == SDS_OK) {
        gg_parser ps = {.path = path, .p = g->map, .size = g->size, .pos = 0};
        rc = gg_parse(&ps, g);
    }
    if (rc != SDS_OK) {
        sds_gguf_free(g);
        return rc;
    }
    *out = g;
    return SDS_OK;
}

void sds_gguf_free(sds_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        sds_gguf_kv *kv = &g->kvs[i];
        free((void *)kv->key);
        free((void *)kv->data);
        if (kv->strs) free((void *)kv->strs[0]); // the block of characters starts at string 0
        free((void *)kv->strs);
        free((void *)kv->lens);
    }
    free(g->kvs);
    for (int64_t i = 0; i < g->n_tensors; i++) free((void *)g->tensors[i].name);
    free(g->tensors);
    sds_strmap_free(g->kv_index);
    sds_strmap_free(g->tensor_index);
    if (g->map) munmap((void *)g->map, (size_t)g->size);
    free(g->path);
    free(g);
}

const char *sds_gguf_path(const sds_gguf *g) {
    return g->path;
}

uint32_t sds_gguf_version(const sds_gguf *g) {
    return g->version;
}

uint64_t sds_gguf_alignment(const sds_gguf *g) {
    return g->alignment;
}

uint64_t sds_gguf_data_start(const sds_gguf *g) {
    return g->data_start;
}

// ---- metadata getters ----

int64_t sds_gguf_kv_count(const sds_gguf *g) {
    return g->n_kv;
}

const sds_gguf_kv *sds_gguf_kv_at(const sds_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const sds_gguf_kv *sds_gguf_find_kv(const sds_gguf *g, const char *key) {
    int64_t i;
    if (!g->kv_index || !sds_strmap_get(g->kv_index, key, strlen(key), &i)) return NULL;
    return &g->kvs[i];
}

bool sds_gguf_has(const sds_gguf *g, const char *key) {
    return sds_gguf_find_kv(g, key) != NULL;
}

// "uint32" or "array of string", for messages.
static const char *gg_kv_type_text(const sds_gguf_kv *kv, char *buf, size_t n) {
    if (kv->type != SDS_GGUF_ARRAY) return sds_gguf_vtype_name(kv->type);
    snprintf(buf, n, "array of %s", sds_gguf_vtype_name(kv->elem_type));
    return buf;
}

static int gg_missing(const sds_gguf *g, const char *key) {
    return sds_error_set(SDS_ERR_INPUT, "%s: metadata key %s is missing", g->path, key);
}

static int gg_wrong_type(const sds_gguf *g, const sds_gguf_kv *kv, const char *expected) {
    char buf[48];
    return sds_error_set(SDS_ERR_INPUT, "%s: metadata key %s has type %s, expected %s", g->path,
                         kv->key, gg_kv_type_text(kv, buf, sizeof buf), expected);
}

// Element i of an integer kv; false when a uint64 is above INT64_MAX.
static bool gg_int_at(const sds_gguf_kv *kv, int64_t i, int64_t *v) {
    const void *d = kv->data;
    switch (kv->elem_type) {
    case SDS_GGUF_UINT8:
        *v = ((const uint8_t *)d)[i];
        return true;
    case SDS_GGUF_INT8:
        *v = ((const int8_t *)d)[i];
        return true;
    case SDS_GGUF_UINT16:
        *v = ((const uint16_t *)d)[i];
        return true;
    case SDS_GGUF_INT16:
        *v = ((const int16_t *)d)[i];
        return true;
    case SDS_GGUF_UINT32:
        *v = ((const uint32_t *)d)[i];
        return true;
    case SDS_GGUF_INT32:
        *v = ((const int32_t *)d)[i];
        return true;
    case SDS_GGUF_INT64:
        *v = ((const int64_t *)d)[i];
        return true;
    case SDS_GGUF_UINT64: {
        uint64_t u = ((const uint64_t *)d)[i];
        *v = (int64_t)(u > (uint64_t)INT64_MAX ? INT64_MAX : u);
        return u <= (uint64_t)INT64_MAX;
    }
    default:
        SDS_ASSERT(!"gg_int_at on a non-integer kv");
        return false;
    }
}

static int gg_find_scalar(const sds_gguf *g, const char *key, const sds_gguf_kv **kv) {
    *kv = sds_gguf_find_kv(g, key);
    if (!*kv) return gg_missing(g, key);
    return SDS_OK;
}

int sds_gguf_get_i64(const sds_gguf *g, const char *key, int64_t *out) {
    const sds_gguf_kv *kv;
    SDS_TRY(gg_find_scalar(g, key, &kv));
    if (kv->type == SDS_GGUF_ARRAY || !gg_vtype_is_int(kv->type))
        return gg_wrong_type(g, kv, "an integer");
    if (!gg_int_at(kv, 0, out))
        return sds_error_set(SDS_ERR_INPUT, "%s: metadata key %s = %" PRIu64 " does not fit int64",
                             g->path, key, ((const uint64_t *)kv->data)[0]);
    return SDS_OK;
}

int sds_gguf_get_u32(const sds_gguf *g, const char *key, uint32_t *out) {
    int64_t v;
    const sds_gguf_kv *kv;
    SDS_TRY(gg_find_scalar(g, key, &kv));
    if (kv->type == SDS_GGUF_ARRAY || !gg_vtype_is_int(kv->type))
        return gg_wrong_type(g, kv, "an unsigned integer");
    bool fits = gg_int_at(kv, 0, &v);
    if (!fits || v < 0 || v > (int64_t)UINT32_MAX)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: metadata key %s = %" PRId64 "%s does not fit uint32", g->path,
                             key, v, fits ? "" : " or more");
    *out = (uint32_t)v;
    return SDS_OK;
}

int sds_gguf_get_f32(const sds_gguf *g, const char *key, float *out) {
    const sds_gguf_kv *kv;
    SDS_TRY(gg_find_scalar(g, key, &kv));
    if (kv->type == SDS_GGUF_FLOAT32) {
        *out = ((const float *)kv->data)[0];
    } else if (kv->type == SDS_GGUF_FLOAT64) {
        *out = (float)((const double *)kv->data)[0];
    } else if (gg_vtype_is_int(kv->type)) {
        int64_t v;
        if (!gg_int_at(kv, 0, &v)) v = INT64_MAX;
        *out = (float)v;
    } else {
        return gg_wrong_type(g, kv, "a number");
    }
    return SDS_OK;
}

int sds_gguf_get_bool(const sds_gguf *g, const char *key, bool *out) {
    const sds_gguf_kv *kv;
    SDS_TRY(gg_find_scalar(g, key, &kv));
    if (kv->type != SDS_GGUF_BOOL) return gg_wrong_type(g, kv, "bool");
    *out = ((const uint8_t *)kv->data)[0] != 0;
    return SDS_OK;
}

int sds_gguf_get_str(const sds_gguf *g, const char *key, const char **out) {
    const sds_gguf_kv *kv;
    SDS_TRY(gg_find_scalar(g, key, &kv));
    if (kv->type != SDS_GGUF_STRING) return gg_wrong_type(g, kv, "string");
    *out = kv->strs[0];
    return SDS_OK;
}

int sds_gguf_get_str_array(const sds_gguf *g, const char *key, const char *const **strs,
                           const uint64_t **lens, int64_t *n) {
    const sds_gguf_kv *kv;
    SDS_TRY(gg_find_scalar(g, key, &kv));
    if (kv->type != SDS_GGUF_ARRAY || kv->elem_type != SDS_GGUF_STRING)
        return gg_wrong_type(g, kv, "array of string");
    *strs = kv->strs;
    if (lens) *lens = kv->lens;
    *n = kv->n;
    return SDS_OK;
}

int sds_gguf_get_i64_array(const sds_gguf *g, const char *key, int64_t **vals, int64_t *n) {
    *vals = NULL;
    *n = 0;
    const sds_gguf_kv *kv;
    SDS_TRY(gg_find_scalar(g, key, &kv));
    if (kv->type != SDS_GGUF_ARRAY || !gg_vtype_is_int(kv->elem_type))
        return gg_wrong_type(g, kv, "an array of integers");
    if (kv->n == 0) return SDS_OK;
    int64_t *v = sds_malloc((size_t)kv->n * sizeof *v, "GGUF integer array");
    if (!v) return SDS_ERR_IO;
    for (int64_t i = 0; i < kv->n; i++) {
        if (!gg_int_at(kv, i, &v[i])) {
            free(v);
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: metadata key %s: element %" PRId64 " does not fit int64",
                                 g->path, key, i);
        }
    }
    *vals = v;
    *n = kv->n;
    return SDS_OK;
}

// ---- tensors ----

int64_t sds_gguf_tensor_count(const sds_gguf *g) {
    return g->n_tensors;
}

const sds_gguf_tensor *sds_gguf_tensor_at(const sds_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const sds_gguf_tensor *sds_gguf_find_tensor(const sds_gguf *g, const char *name) {
    int64_t i;
    if (!g->tensor_index || !sds_strmap_get(g->tensor_index, name, strlen(name), &i)) return NULL;
    return &g->tensors[i];
}

// "[a, b, c]" into buf.
static void gg_format_shape(char *buf, size_t n, int32_t ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int32_t d = 0; d < ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

// Elements per ggml block of the types we convert; one block is converted at a time.
#define GG_QK 32

static void gg_dequant_block(int32_t type, const unsigned char *b, float *y) {
    switch (type) {
    case SDS_GGML_Q8_0: { // fp16 d, int8 q[32]: d * q
        float d = sds_f16_to_f32(gg_le16(b));
        for (int j = 0; j < GG_QK; j++) y[j] = (float)(int8_t)b[2 + j] * d;
        break;
    }
    case SDS_GGML_Q4_0: { // fp16 d, 16 bytes: element j in the low nibble of byte j, j + 16 high
        float d = sds_f16_to_f32(gg_le16(b));
        const unsigned char *q = b + 2;
        for (int j = 0; j < GG_QK / 2; j++) {
            y[j] = (float)((int)(q[j] & 0x0F) - 8) * d;
            y[j + GG_QK / 2] = (float)((int)(q[j] >> 4) - 8) * d;
        }
        break;
    }
    case SDS_GGML_Q4_1: { // fp16 d, fp16 m, 16 bytes of nibbles as Q4_0: q * d + m
        float d = sds_f16_to_f32(gg_le16(b)), m = sds_f16_to_f32(gg_le16(b + 2));
        const unsigned char *q = b + 4;
        for (int j = 0; j < GG_QK / 2; j++) {
            // Two roundings, as ggml's reference and gguf-py do (a fused multiply-add differs).
            float lo = (float)(q[j] & 0x0F) * d, hi = (float)(q[j] >> 4) * d;
            y[j] = lo + m;
            y[j + GG_QK / 2] = hi + m;
        }
        break;
    }
    default:
        SDS_ASSERT(!"gg_dequant_block: not a block type");
    }
}

int sds_gguf_read_f32(const sds_gguf *g, const char *name, int32_t ndim,
                      const int64_t *shape_rowmajor, float *dst) {
    SDS_ASSERT(g && name && ndim >= 0 && (shape_rowmajor || ndim == 0));
    const sds_gguf_tensor *t = sds_gguf_find_tensor(g, name);
    if (!t) return sds_error_set(SDS_ERR_INPUT, "tensor %s missing from %s", name, g->path);
    // The file's shape, outermost first.
    int64_t have[SDS_GGUF_MAX_DIMS] = {0};
    for (int32_t d = 0; d < t->n_dims; d++) have[d] = t->ne[t->n_dims - 1 - d];
    bool same = ndim == t->n_dims;
    for (int32_t d = 0; same && d < ndim; d++) same = shape_rowmajor[d] == have[d];
    if (!same) {
        char hs[160], ws[160];
        gg_format_shape(hs, sizeof hs, t->n_dims, have);
        gg_format_shape(ws, sizeof ws, ndim, shape_rowmajor);
        return sds_error_set(SDS_ERR_INPUT, "tensor %s in %s has shape %s (row-major), expected %s",
                             name, g->path, hs, ws);
    }
    if (!sds_ggml_type_readable(t->type))
        return sds_error_set(SDS_ERR_INPUT,
                             "tensor %s in %s has type %s, which is not converted (only F32, F16, "
                             "BF16, Q8_0, Q4_0 and Q4_1 are)",
                             name, g->path, sds_ggml_type_name(t->type));
    const gg_type_info *ti = gg_type(t->type);
    uint64_t numel = t->n_bytes / (uint64_t)ti->type_size * (uint64_t)ti->block;
    if (numel == 0) return SDS_OK;
    SDS_ASSERT(dst);
    const unsigned char *src = g->map + t->offset;
    switch (t->type) {
    case SDS_GGML_F32:
        gg_copy_le(dst, src, numel, 4);
        break;
    case SDS_GGML_F16:
        for (uint64_t i = 0; i < numel; i++) dst[i] = sds_f16_to_f32(gg_le16(src + 2 * i));
        break;
    case SDS_GGML_BF16:
        for (uint64_t i = 0; i < numel; i++) dst[i] = sds_bf16_to_f32(gg_le16(src + 2 * i));
        break;
    default:
        for (uint64_t b = 0; b < numel / GG_QK; b++)
            gg_dequant_block(t->type, src + b * (uint64_t)ti->type_size, dst + b * GG_QK);
    }
    for (uint64_t i = 0; i < numel; i++) {
        if (!isfinite(dst[i]))
            return sds_error_set(
                SDS_ERR_INPUT,
                "tensor %s in %s holds %s at index %" PRIu64 " (after dequantising %s)", name,
                g->path, isnan(dst[i]) ? "NaN" : "an infinity", i, sds_ggml_type_name(t->type));
    }
    return SDS_OK;
}

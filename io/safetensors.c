// safetensors reader: headers parsed with jansson at open, tensor data read with pread on demand.
// Layout of one file: u64 little-endian header length N, N bytes of JSON, then the data section;
// each tensor's data_offsets are relative to the data section's start (byte 8 + N).
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include "file.h"
#include "sds_error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// A header (or index) larger than this is not a checkpoint we should trust with an allocation.
#define ST_MAX_JSON_BYTES (100u * 1024u * 1024u)
// Staging buffer for F16/BF16 conversion, so dst is the only full-size buffer.
#define ST_STAGE_BYTES (1u << 20)
#define ST_INDEX_NAME  "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

struct sds_safetensors {
    char *path; // as given to open, for messages
    int32_t n_files;
    char **files; // full paths
    int *fds;
    int64_t n_tensors;
    sds_st_tensor *tensors;  // ordered by file, then by data offset
    sds_st_tensor **by_name; // into tensors, sorted by name
};

typedef struct {
    const char *name;
    sds_dtype dtype;
    uint32_t bits; // per element; F4 and F6 are sub-byte
} st_dtype_info;

// Every dtype safetensors 0.x writes; only the first three convert.
static const st_dtype_info st_dtypes[] = {
    {"F32", SDS_DTYPE_F32, 32},      {"F16", SDS_DTYPE_F16, 16},
    {"BF16", SDS_DTYPE_BF16, 16},    {"F64", SDS_DTYPE_OTHER, 64},
    {"I64", SDS_DTYPE_OTHER, 64},    {"U64", SDS_DTYPE_OTHER, 64},
    {"I32", SDS_DTYPE_OTHER, 32},    {"U32", SDS_DTYPE_OTHER, 32},
    {"I16", SDS_DTYPE_OTHER, 16},    {"U16", SDS_DTYPE_OTHER, 16},
    {"I8", SDS_DTYPE_OTHER, 8},      {"U8", SDS_DTYPE_OTHER, 8},
    {"BOOL", SDS_DTYPE_OTHER, 8},    {"F8_E4M3", SDS_DTYPE_OTHER, 8},
    {"F8_E5M2", SDS_DTYPE_OTHER, 8}, {"F8_E8M0", SDS_DTYPE_OTHER, 8},
    {"F6_E2M3", SDS_DTYPE_OTHER, 6}, {"F6_E3M2", SDS_DTYPE_OTHER, 6},
    {"F4", SDS_DTYPE_OTHER, 4},      {"C64", SDS_DTYPE_OTHER, 64},
};

static const st_dtype_info *st_dtype_lookup(const char *s) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
    }
    return NULL;
}

float sds_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13); // inf, or NaN keeping its payload
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13); // rebias 15 -> 127
    } else if (mant == 0) {
        bits = sign; // signed zero
    } else {
        // Subnormal mant * 2^-24: shift the leading one up to the implicit bit's place.
        uint32_t e = 113u; // exponent field of 2^-14, the smallest normal half
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float sds_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16; // bfloat16 is the top half of a float
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// ---- small helpers ----

static void st_format_shape(char *buf, size_t cap, int32_t ndim, const int64_t *shape) {
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    if (n > 0) used = (size_t)n;
    for (int32_t d = 0; d < ndim && used < cap; d++) {
        n = snprintf(buf + used, cap - used, "%s%" PRId64, d ? ", " : "", shape[d]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

static char *st_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = sds_malloc(a + b + 2, "a safetensors path");
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a == 0 || dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static char *st_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = sds_malloc(n, "a safetensors name");
    if (p) memcpy(p, s, n);
    return p;
}

// Reads exactly len bytes at offset; returns SDS_ERR_IO naming path (and tensor when given).
static int st_pread_all(int fd, void *buf, size_t len, uint64_t offset, const char *path,
                        const char *tensor) {
    char *p = buf;
    while (len > 0) {
        size_t want = len > (1u << 30) ? (1u << 30) : len;
        ssize_t got = pread(fd, p, want, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR) continue;
            if (tensor)
                return sds_error_set(SDS_ERR_IO, "%s: reading tensor %s: %s", path, tensor,
                                     strerror(errno));
            return sds_error_set(SDS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        }
        if (got == 0) {
            // The size was checked at open, so the file shrank since.
            if (tensor)
                return sds_error_set(SDS_ERR_IO,
                                     "%s: unexpected end of file reading tensor %s (file "
                                     "truncated after it was opened?)",
                                     path, tensor);
            return sds_error_set(SDS_ERR_IO, "%s: unexpected end of file", path);
        }
        p += got;
        len -= (size_t)got;
        offset += (uint64_t)got;
    }
    return SDS_OK;
}

static int st_json_error(const char *path, const char *what, const json_error_t *err) {
    return sds_error_set(SDS_ERR_INPUT, "%s: %s is not valid JSON (line %d, column %d: %s)", path,
                         what, err->line, err->column, err->text);
}

// ---- the object ----

static int st_add_file(sds_safetensors *st, const char *path, int fd) {
    char **files = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *files);
    if (!files) return sds_error_set(SDS_ERR_IO, "out of memory listing safetensors files");
    st->files = files;
    int *fds = realloc(st->fds, (size_t)(st->n_files + 1) * sizeof *fds);
    if (!fds) return sds_error_set(SDS_ERR_IO, "out of memory listing safetensors files");
    st->fds = fds;
    char *copy = st_strdup(path);
    if (!copy) return SDS_ERR_IO;
    st->files[st->n_files] = copy;
    st->fds[st->n_files] = fd;
    st->n_files++;
    return SDS_OK;
}

void sds_safetensors_free(sds_safetensors *st) {
    if (!st) return;
    for (int32_t i = 0; i < st->n_files; i++) {
        if (st->fds[i] >= 0) close(st->fds[i]);
        free(st->files[i]);
    }
    for (int64_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->files);
    free(st->fds);
    free(st->tensors);
    free(st->by_name);
    free(st->path);
    free(st);
}

static int st_cmp_offset(const void *a, const void *b) {
    const sds_st_tensor *x = a, *y = b;
    if (x->file_index != y->file_index) return x->file_index < y->file_index ? -1 : 1;
    if (x->data_begin != y->data_begin) return x->data_begin < y->data_begin ? -1 : 1;
    return 0;
}

// ---- one file's header ----

// Parses one header entry into t (name not yet set). Messages name the file and tensor.
static int st_parse_entry(const char *path, const char *name, json_t *v, uint64_t data_start,
                          sds_st_tensor *t) {
    if (!json_is_object(v))
        return sds_error_set(SDS_ERR_INPUT, "%s: header entry for tensor %s is not an object", path,
                             name);
    json_t *jd = json_object_get(v, "dtype");
    json_t *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        return sds_error_set(SDS_ERR_INPUT, "%s: tensor %s has no \"dtype\" string", path, name);
    if (!json_is_array(js))
        return sds_error_set(SDS_ERR_INPUT, "%s: tensor %s has no \"shape\" array", path, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: tensor %s has no \"data_offsets\" array of two integers", path,
                             name);

    const char *dname = json_string_value(jd);
    const st_dtype_info *info = st_dtype_lookup(dname);
    if (!info)
        return sds_error_set(SDS_ERR_INPUT, "%s: tensor %s has unknown dtype \"%.32s\"", path, name,
                             dname);
    t->dtype = info->dtype;
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", info->name);

    size_t ndim = json_array_size(js);
    if (ndim > SDS_ST_MAX_DIMS)
        return sds_error_set(SDS_ERR_INPUT, "%s: tensor %s has %zu dimensions (at most %d allowed)",
                             path, name, ndim, SDS_ST_MAX_DIMS);
    t->ndim = (int32_t)ndim;
    bool empty = false;
    for (size_t d = 0; d < ndim; d++) {
        json_t *e = json_array_get(js, d);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: tensor %s: shape entry %zu is not a non-negative integer",
                                 path, name, d);
        t->shape[d] = (int64_t)json_integer_value(e);
        if (t->shape[d] == 0) empty = true;
    }
    for (size_t d = ndim; d < SDS_ST_MAX_DIMS; d++) t->shape[d] = 0;
    uint64_t numel = empty ? 0 : 1;
    bool overflow = false;
    for (size_t d = 0; d < ndim && !empty; d++) {
        uint64_t dim = (uint64_t)t->shape[d];
        if (numel > UINT64_MAX / dim) overflow = true;
        numel *= dim;
    }
    if (overflow || numel > UINT64_MAX / info->bits)
        return sds_error_set(SDS_ERR_INPUT, "%s: tensor %s: shape is too large", path, name);
    uint64_t bits = numel * info->bits;
    if (bits % 8 != 0)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: tensor %s: %" PRIu64 " elements of %s do not fill whole bytes",
                             path, name, numel, info->name);
    uint64_t need = bits / 8;

    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
        json_integer_value(je) < 0)
        return sds_error_set(
            SDS_ERR_INPUT, "%s: tensor %s: data_offsets are not non-negative integers", path, name);
    uint64_t begin = (uint64_t)json_integer_value(jb), end = (uint64_t)json_integer_value(je);
    char sh[160];
    st_format_shape(sh, sizeof sh, t->ndim, t->shape);
    if (end < begin || end - begin != need)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                             "] do not match shape %s of %s (%" PRIu64 " bytes)",
                             path, name, begin, end, sh, info->name, need);
    t->data_begin = data_start + begin;
    t->data_bytes = need;
    return SDS_OK;
}

// Opens one .safetensors file and appends its tensors to st. When weight_map is given (sharded),
// tensors it maps to another shard are skipped: the index decides where a tensor lives.
static int st_load_file(sds_safetensors *st, const char *path, json_t *weight_map,
                        const char *shard_name) {
    int fd;
    uint64_t size;
    SDS_TRY(sds_file_open_regular(path, &fd, &size));
    int rc = st_add_file(st, path, fd);
    if (rc != SDS_OK) {
        close(fd);
        return rc;
    }
    int32_t file_index = st->n_files - 1;

    if (size < 8)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: file has %" PRIu64
                             " bytes, too short for a safetensors header length",
                             path, size);
    unsigned char le[8];
    SDS_TRY(st_pread_all(fd, le, 8, 0, path, NULL));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | le[i];
    if (hlen > size - 8)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64
                             " bytes): not a safetensors file, or truncated",
                             path, hlen, size);
    if (hlen > ST_MAX_JSON_BYTES)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: header length %" PRIu64 " exceeds the %u byte limit", path, hlen,
                             ST_MAX_JSON_BYTES);
    char *hbuf = sds_malloc((size_t)hlen, "a safetensors header");
    if (!hbuf) return SDS_ERR_IO;
    rc = st_pread_all(fd, hbuf, (size_t)hlen, 8, path, NULL);
    if (rc != SDS_OK) {
        free(hbuf);
        return rc;
    }
    json_error_t jerr;
    json_t *root = json_loadb(hbuf, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    free(hbuf);
    if (!root) return st_json_error(path, "header", &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return sds_error_set(SDS_ERR_INPUT, "%s: header is not a JSON object", path);
    }

    uint64_t data_start = 8 + hlen, data_size = size - 8 - hlen;
    size_t n_entries = json_object_size(root);
    sds_st_tensor *local = sds_calloc(n_entries, sizeof *local, "safetensors header entries");
    if (!local) {
        json_decref(root);
        return SDS_ERR_IO;
    }
    size_t n = 0;
    const char *key;
    json_t *val;
    rc = SDS_OK;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue; // free-form string map; unused
        sds_st_tensor *t = &local[n];
        rc = st_parse_entry(path, key, val, data_start, t);
        if (rc != SDS_OK) break;
        t->name = (char *)key; // borrowed from root until copied below
        t->file_index = file_index;
        n++;
    }

    // Truncated files: name the first tensor, in file order, whose data is past the end.
    if (rc == SDS_OK) {
        qsort(local, n, sizeof *local, st_cmp_offset);
        for (size_t i = 0; i < n; i++) {
            uint64_t end = local[i].data_begin - data_start + local[i].data_bytes;
            if (end > data_size) {
                rc = sds_error_set(SDS_ERR_INPUT,
                                   "%s: file is truncated: tensor %s needs bytes up to %" PRIu64
                                   " but the file has %" PRIu64 " bytes",
                                   path, local[i].name, data_start + end, size);
                break;
            }
        }
    }

    if (rc == SDS_OK) {
        size_t keep = 0;
        for (size_t i = 0; i < n; i++) {
            if (weight_map) {
                json_t *m = json_object_get(weight_map, local[i].name);
                if (json_is_string(m) && strcmp(json_string_value(m), shard_name) != 0) continue;
            }
            local[keep++] = local[i];
        }
        sds_st_tensor *grown =
            realloc(st->tensors, ((size_t)st->n_tensors + keep + 1) * sizeof *grown);
        if (!grown) {
            rc = sds_error_set(SDS_ERR_IO, "out of memory listing tensors of %s", path);
        } else {
            st->tensors = grown;
            for (size_t i = 0; i < keep && rc == SDS_OK; i++) {
                sds_st_tensor t = local[i];
                t.name = st_strdup(local[i].name);
                if (!t.name) {
                    rc = SDS_ERR_IO;
                    break;
                }
                st->tensors[st->n_tensors++] = t;
            }
        }
    }
    free(local);
    json_decref(root);
    return rc;
}

// ---- name lookup ----

static int st_cmp_name(const void *a, const void *b) {
    const sds_st_tensor *x = *(sds_st_tensor *const *)a, *y = *(sds_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int st_build_index(sds_safetensors *st) {
    st->by_name = sds_malloc((size_t)st->n_tensors * sizeof *st->by_name, "a tensor name index");
    if (!st->by_name) return SDS_ERR_IO;
    for (int64_t i = 0; i < st->n_tensors; i++) st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, (size_t)st->n_tensors, sizeof *st->by_name, st_cmp_name);
    for (int64_t k = 1; k < st->n_tensors; k++) {
        const sds_st_tensor *a = st->by_name[k - 1], *b = st->by_name[k];
        if (strcmp(a->name, b->name) == 0)
            return sds_error_set(SDS_ERR_INPUT, "%s: tensor %s appears in both %s and %s", st->path,
                                 a->name, st->files[a->file_index], st->files[b->file_index]);
    }
    return SDS_OK;
}

const sds_st_tensor *sds_safetensors_find(const sds_safetensors *st, const char *name) {
    int64_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const sds_st_tensor *t = st->by_name[mid];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int64_t sds_safetensors_count(const sds_safetensors *st) {
    return st->n_tensors;
}

const sds_st_tensor *sds_safetensors_at(const sds_safetensors *st, int64_t i) {
    if (i < 0 || i >= st->n_tensors) return NULL;
    return &st->tensors[i];
}

const char *sds_safetensors_file_of(const sds_safetensors *st, const sds_st_tensor *t) {
    if (t->file_index < 0 || t->file_index >= st->n_files) return NULL;
    return st->files[t->file_index];
}

// ---- sharded checkpoints ----

static bool st_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int st_load_index(sds_safetensors *st, const char *index_path, const char *dir) {
    int fd;
    uint64_t size;
    SDS_TRY(sds_file_open_regular(index_path, &fd, &size));
    if (size > ST_MAX_JSON_BYTES) {
        close(fd);
        return sds_error_set(SDS_ERR_INPUT, "%s: %" PRIu64 " bytes exceeds the %u byte limit",
                             index_path, size, ST_MAX_JSON_BYTES);
    }
    char *buf = sds_malloc((size_t)size, "a safetensors index");
    if (!buf) {
        close(fd);
        return SDS_ERR_IO;
    }
    int rc = st_pread_all(fd, buf, (size_t)size, 0, index_path, NULL);
    close(fd);
    if (rc != SDS_OK) {
        free(buf);
        return rc;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, (size_t)size, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root) return st_json_error(index_path, "index", &jerr);

    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        rc = sds_error_set(SDS_ERR_INPUT, "%s: no \"weight_map\" object", index_path);
    } else if (json_object_size(wm) == 0) {
        rc = sds_error_set(SDS_ERR_INPUT, "%s: \"weight_map\" is empty", index_path);
    }
    const char *key;
    json_t *val;
    if (rc == SDS_OK) {
        json_object_foreach(wm, key, val) {
            if (!json_is_string(val) || json_string_length(val) == 0) {
                rc = sds_error_set(SDS_ERR_INPUT,
                                   "%s: weight_map entry for tensor %s is not a file name",
                                   index_path, key);
                break;
            }
        }
    }

    // Open each shard once, in order of first mention.
    char **shards = NULL;
    size_t n_shards = 0;
    if (rc == SDS_OK) {
        shards = sds_calloc(json_object_size(wm), sizeof *shards, "a shard list");
        if (!shards) rc = SDS_ERR_IO;
    }
    if (rc == SDS_OK) {
        json_object_foreach(wm, key, val) {
            const char *f = json_string_value(val);
            bool seen = false;
            for (size_t i = 0; i < n_shards && !seen; i++) seen = strcmp(shards[i], f) == 0;
            if (seen) continue;
            shards[n_shards++] = (char *)f;
            char *shard_path = st_join(dir, f);
            if (!shard_path) {
                rc = SDS_ERR_IO;
                break;
            }
            if (!st_is_file(shard_path))
                rc = sds_error_set(SDS_ERR_INPUT,
                                   "%s: no such file or directory (a shard listed in %s)",
                                   shard_path, index_path);
            else
                rc = st_load_file(st, shard_path, wm, f);
            free(shard_path);
            if (rc != SDS_OK) break;
        }
    }
    free(shards);
    if (rc == SDS_OK) rc = st_build_index(st);
    if (rc == SDS_OK) {
        json_object_foreach(wm, key, val) {
            if (sds_safetensors_find(st, key)) continue;
            char *shard_path = st_join(dir, json_string_value(val));
            if (!shard_path) {
                rc = SDS_ERR_IO;
                break;
            }
            rc = sds_error_set(SDS_ERR_INPUT, "%s maps tensor %s to %s, which has no tensor %s",
                               index_path, key, shard_path, key);
            free(shard_path);
            break;
        }
    }
    json_decref(root);
    return rc;
}

static bool st_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int st_open_path(sds_safetensors *st, const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return sds_error_set(SDS_ERR_INPUT, "%s: no such file or directory", path);
        return sds_error_set(SDS_ERR_INPUT, "%s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (st_ends_with(path, ".json")) {
            // An index file given directly: its shards sit next to it.
            const char *slash = strrchr(path, '/');
            char *dir = slash ? st_strdup(path) : st_strdup(".");
            if (!dir) return SDS_ERR_IO;
            if (slash) dir[slash - path + (slash == path)] = '\0';
            int rc = st_load_index(st, path, dir);
            free(dir);
            return rc;
        }
        SDS_TRY(st_load_file(st, path, NULL, NULL));
        return st_build_index(st);
    }
    // Same preference as transformers: the single file, then the index.
    char *single = st_join(path, ST_SINGLE_NAME);
    char *index = st_join(path, ST_INDEX_NAME);
    int rc = SDS_OK;
    if (!single || !index) {
        rc = SDS_ERR_IO;
    } else if (st_is_file(single)) {
        rc = st_load_file(st, single, NULL, NULL);
        if (rc == SDS_OK) rc = st_build_index(st);
    } else if (st_is_file(index)) {
        rc = st_load_index(st, index, path);
    } else {
        rc = sds_error_set(SDS_ERR_INPUT, "%s: directory holds neither %s nor %s", path,
                           ST_SINGLE_NAME, ST_INDEX_NAME);
    }
    free(single);
    free(index);
    return rc;
}

int sds_safetensors_open(const char *path, sds_safetensors **out) {
    *out = NULL;
    sds_safetensors *st = sds_calloc(1, sizeof *st, "a safetensors handle");
    if (!st) return SDS_ERR_IO;
    st->path = st_strdup(path);
    int rc = st->path ? st_open_path(st, path) : SDS_ERR_IO;
    if (rc != SDS_OK) {
        sds_safetensors_free(st);
        return rc;
    }
    *out = st;
    return SDS_OK;
}

// ---- reading ----

static int st_check_finite(const sds_st_tensor *t, const char *file, const float *v, size_t n,
                           uint64_t base) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            const char *what = isnan(v[i]) ? "NaN" : (v[i] > 0 ? "+inf" : "-inf");
            return sds_error_set(SDS_ERR_INPUT, "tensor %s in %s holds %s at index %" PRIu64,
                                 t->name, file, what, base + i);
        }
    }
    return SDS_OK;
}

int sds_safetensors_read_f32(const sds_safetensors *st, const char *name, int32_t ndim,
                             const int64_t *shape, float *dst) {
    SDS_ASSERT(st && name && ndim >= 0 && (shape || ndim == 0));
    const sds_st_tensor *t = sds_safetensors_find(st, name);
    if (!t) return sds_error_set(SDS_ERR_INPUT, "tensor %s missing from %s", name, st->path);
    const char *file = st->files[t->file_index];
    int fd = st->fds[t->file_index];

    bool same = ndim == t->ndim;
    for (int32_t d = 0; same && d < ndim; d++) same = shape[d] == t->shape[d];
    if (!same) {
        char have[160], want[160];
        st_format_shape(have, sizeof have, t->ndim, t->shape);
        st_format_shape(want, sizeof want, ndim, shape);
        return sds_error_set(SDS_ERR_INPUT, "tensor %s in %s has shape %s, expected %s", name, file,
                             have, want);
    }
    if (t->dtype == SDS_DTYPE_OTHER)
        return sds_error_set(SDS_ERR_INPUT,
                             "tensor %s in %s has dtype %s, expected F32, F16 or BF16", name, file,
                             t->dtype_name);
    SDS_ASSERT(dst || t->data_bytes == 0);

    if (t->dtype == SDS_DTYPE_F32) {
        // Straight into dst: no staging needed, only the byte order to fix on big-endian hosts.
        SDS_TRY(st_pread_all(fd, dst, (size_t)t->data_bytes, t->data_begin, file, name));
        size_t n = (size_t)(t->data_bytes / 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &dst[i], 4);
            u = __builtin_bswap32(u);
            memcpy(&dst[i], &u, 4);
        }
#endif
        return st_check_finite(t, file, dst, n, 0);
    }

    size_t stage_bytes = t->data_bytes < ST_STAGE_BYTES ? (size_t)t->data_bytes : ST_STAGE_BYTES;
    unsigned char *stage = sds_malloc(stage_bytes, "a safetensors staging buffer");
    if (!stage) return SDS_ERR_IO;
    int rc = SDS_OK;
    uint64_t done = 0; // bytes converted so far
    while (done < t->data_bytes) {
        size_t len =
            t->data_bytes - done < stage_bytes ? (size_t)(t->data_bytes - done) : stage_bytes;
        rc = st_pread_all(fd, stage, len, t->data_begin + done, file, name);
        if (rc != SDS_OK) break;
        float *out = dst + done / 2;
        size_t n = len / 2;
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(stage[2 * i] | (stage[2 * i + 1] << 8)); // little-endian
            out[i] = t->dtype == SDS_DTYPE_F16 ? sds_f16_to_f32(h) : sds_bf16_to_f32(h);
        }
        rc = st_check_finite(t, file, out, n, done / 2);
        if (rc != SDS_OK) break;
        done += len;
    }
    free(stage);
    return rc;
}

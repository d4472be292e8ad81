// test_gguf: io/gguf.c and the GGUF tokenizer, driven by test_gguf.py.
//   test_gguf dump FILE                   metadata and tensor infos, one line each (text below)
//   test_gguf dequant FILE                every tensor through sds_gguf_read_f32, to stdout as
//                                         (u32 rc, u64 count, count fp32) per tensor, file order
//   test_gguf open FILE...                per file: "FILE<TAB>rc<TAB>message" after opening it and
//                                         reading every convertible tensor
//   test_gguf read FILE NAME [DIM...]     one tensor with the given row-major shape: "rc<TAB>msg"
//   test_gguf get FILE KIND:KEY...        typed getters (u32 i64 f32 bool str strs ints):
//                                         "KIND:KEY<TAB>rc<TAB>value or message" each
//   test_gguf types                       the ggml type table: "number name readable"
//   test_gguf tokenize FILE TEXT OUT.bin  the GGUF's tokenizer on TEXT, ids as little-endian int32
// Dump lines: "version V", "alignment A", "data_start D", "kv KEY TYPE ELEM N V...",
// "tensor NAME TYPE NDIMS NE... OFFSET NBYTES". Strings (keys, names, values) are hex so that any
// byte survives; floats are their IEEE bits in hex; bools 0/1.
#include "gguf.h"
#include "sds_error.h"
#include "tokenizer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void print_hex(const char *s, uint64_t len) {
    if (len == 0) fputc('-', stdout); // an empty string is still a field
    for (uint64_t i = 0; i < len; i++) printf("%02x", (unsigned char)s[i]);
}

static void print_value(const sds_gguf_kv *kv, int64_t i) {
    const void *d = kv->data;
    switch (kv->elem_type) {
    case SDS_GGUF_UINT8:
    case SDS_GGUF_BOOL:
        printf("%u", ((const uint8_t *)d)[i]);
        break;
    case SDS_GGUF_INT8:
        printf("%d", ((const int8_t *)d)[i]);
        break;
    case SDS_GGUF_UINT16:
        printf("%u", ((const uint16_t *)d)[i]);
        break;
    case SDS_GGUF_INT16:
        printf("%d", ((const int16_t *)d)[i]);
        break;
    case SDS_GGUF_UINT32:
        printf("%" PRIu32, ((const uint32_t *)d)[i]);
        break;
    case SDS_GGUF_INT32:
        printf("%" PRId32, ((const int32_t *)d)[i]);
        break;
    case SDS_GGUF_UINT64:
        printf("%" PRIu64, ((const uint64_t *)d)[i]);
        break;
    case SDS_GGUF_INT64:
        printf("%" PRId64, ((const int64_t *)d)[i]);
        break;
    case SDS_GGUF_FLOAT32: {
        uint32_t u;
        memcpy(&u, (const float *)d + i, 4);
        printf("%08" PRIx32, u);
        break;
    }
    case SDS_GGUF_FLOAT64: {
        uint64_t u;
        memcpy(&u, (const double *)d + i, 8);
        printf("%016" PRIx64, u);
        break;
    }
    case SDS_GGUF_STRING:
        print_hex(kv->strs[i], kv->lens[i]);
        break;
    default:
        printf("?");
    }
}

static int cmd_dump(const char *path) {
    sds_gguf *g;
    SDS_TRY(sds_gguf_open(path, &g));
    printf("version %" PRIu32 "\nalignment %" PRIu64 "\ndata_start %" PRIu64 "\n",
           sds_gguf_version(g), sds_gguf_alignment(g), sds_gguf_data_start(g));
    for (int64_t i = 0; i < sds_gguf_kv_count(g); i++) {
        const sds_gguf_kv *kv = sds_gguf_kv_at(g, i);
        printf("kv ");
        print_hex(kv->key, strlen(kv->key));
        printf(" %d %d %" PRId64, (int)kv->type, (int)kv->elem_type, kv->n);
        for (int64_t k = 0; k < kv->n; k++) {
            putchar(' ');
            print_value(kv, k);
        }
        putchar('\n');
    }
    for (int64_t i = 0; i < sds_gguf_tensor_count(g); i++) {
        const sds_gguf_tensor *t = sds_gguf_tensor_at(g, i);
        printf("tensor ");
        print_hex(t->name, strlen(t->name));
        printf(" %d %d", t->type, t->n_dims);
        for (int32_t d = 0; d < t->n_dims; d++) printf(" %" PRId64, t->ne[d]);
        printf(" %" PRIu64 " %" PRIu64 "\n", t->offset, t->n_bytes);
    }
    sds_gguf_free(g);
    return SDS_OK;
}

// Row-major shape of a tensor (outermost first) and its element count.
static int64_t rowmajor_shape(const sds_gguf_tensor *t, int64_t *shape) {
    int64_t n = 1;
    for (int32_t d = 0; d < t->n_dims; d++) {
        shape[d] = t->ne[t->n_dims - 1 - d];
        n *= shape[d];
    }
    return n;
}

static int cmd_dequant(const char *path) {
    sds_gguf *g;
    SDS_TRY(sds_gguf_open(path, &g));
    for (int64_t i = 0; i < sds_gguf_tensor_count(g); i++) {
        const sds_gguf_tensor *t = sds_gguf_tensor_at(g, i);
        int64_t shape[SDS_GGUF_MAX_DIMS];
        int64_t n = rowmajor_shape(t, shape);
        float *buf = malloc((size_t)(n > 0 ? n : 1) * sizeof *buf);
        if (!buf) {
            fprintf(stderr, "test_gguf: out of memory for tensor %s\n", t->name);
            sds_gguf_free(g);
            return SDS_ERR_IO;
        }
        int rc = sds_gguf_read_f32(g, t->name, t->n_dims, shape, buf);
        uint32_t rc32 = (uint32_t)rc;
        uint64_t count = rc == SDS_OK ? (uint64_t)n : 0;
        fwrite(&rc32, 4, 1, stdout);
        fwrite(&count, 8, 1, stdout);
        if (count > 0) fwrite(buf, 4, (size_t)count, stdout);
        if (rc != SDS_OK) {
            fprintf(stderr, "test_gguf: %s\n", sds_error_message());
            sds_error_clear();
        }
        free(buf);
    }
    sds_gguf_free(g);
    fflush(stdout);
    return ferror(stdout) ? SDS_ERR_IO : SDS_OK;
}

// Opens path and reads every convertible tensor; the first error, if any, is left recorded.
static int open_and_read(const char *path) {
    sds_gguf *g;
    SDS_TRY(sds_gguf_open(path, &g));
    int rc = SDS_OK;
    for (int64_t i = 0; rc == SDS_OK && i < sds_gguf_tensor_count(g); i++) {
        const sds_gguf_tensor *t = sds_gguf_tensor_at(g, i);
        if (!sds_ggml_type_readable(t->type)) continue;
        int64_t shape[SDS_GGUF_MAX_DIMS];
        int64_t n = rowmajor_shape(t, shape);
        float *buf = malloc((size_t)(n > 0 ? n : 1) * sizeof *buf);
        if (!buf) {
            rc = sds_error_set(SDS_ERR_IO, "out of memory for tensor %s", t->name);
            break;
        }
        rc = sds_gguf_read_f32(g, t->name, t->n_dims, shape, buf);
        free(buf);
    }
    sds_gguf_free(g);
    return rc;
}

static int cmd_open(int n, char **paths) {
    for (int i = 0; i < n; i++) {
        sds_error_clear();
        int rc = open_and_read(paths[i]);
        printf("%s\t%d\t%s\n", paths[i], rc, rc == SDS_OK ? "ok" : sds_error_message());
        fflush(stdout);
    }
    return SDS_OK;
}

static int cmd_read(const char *path, const char *name, int ndim, char **dims) {
    int64_t shape[8];
    if (ndim > 8) return sds_error_set(SDS_ERR_USAGE, "at most 8 dimensions");
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        shape[d] = strtoll(dims[d], NULL, 10);
        n *= shape[d] > 0 ? shape[d] : 1;
    }
    sds_gguf *g;
    int rc = sds_gguf_open(path, &g);
    if (rc == SDS_OK) {
        float *buf = malloc((size_t)n * sizeof *buf);
        rc = buf ? sds_gguf_read_f32(g, name, ndim, shape, buf)
                 : sds_error_set(SDS_ERR_IO, "out of memory");
        free(buf);
        sds_gguf_free(g);
    }
    printf("%d\t%s\n", rc, rc == SDS_OK ? "ok" : sds_error_message());
    return SDS_OK;
}

static void get_one(const sds_gguf *g, const char *request) {
    const char *colon = strchr(request, ':');
    if (!colon) {
        printf("%s\t%d\tbad request\n", request, SDS_ERR_USAGE);
        return;
    }
    char kind[16];
    snprintf(kind, sizeof kind, "%.*s", (int)(colon - request), request);
    const char *key = colon + 1;
    char value[512] = "";
    int rc;
    sds_error_clear();
    if (strcmp(kind, "u32") == 0) {
        uint32_t v;
        rc = sds_gguf_get_u32(g, key, &v);
        if (rc == SDS_OK) snprintf(value, sizeof value, "%" PRIu32, v);
    } else if (strcmp(kind, "i64") == 0) {
        int64_t v;
        rc = sds_gguf_get_i64(g, key, &v);
        if (rc == SDS_OK) snprintf(value, sizeof value, "%" PRId64, v);
    } else if (strcmp(kind, "f32") == 0) {
        float v;
        rc = sds_gguf_get_f32(g, key, &v);
        if (rc == SDS_OK) snprintf(value, sizeof value, "%.9g", (double)v);
    } else if (strcmp(kind, "bool") == 0) {
        bool v;
        rc = sds_gguf_get_bool(g, key, &v);
        if (rc == SDS_OK) snprintf(value, sizeof value, "%d", (int)v);
    } else if (strcmp(kind, "str") == 0) {
        const char *v;
        rc = sds_gguf_get_str(g, key, &v);
        if (rc == SDS_OK) snprintf(value, sizeof value, "%.200s", v);
    } else if (strcmp(kind, "strs") == 0) {
        const char *const *v;
        const uint64_t *lens;
        int64_t n;
        rc = sds_gguf_get_str_array(g, key, &v, &lens, &n);
        if (rc == SDS_OK)
            snprintf(value, sizeof value, "%" PRId64 " %s %s", n, n > 0 ? v[0] : "-",
                     n > 0 ? v[n - 1] : "-");
    } else if (strcmp(kind, "ints") == 0) {
        int64_t *v, n;
        rc = sds_gguf_get_i64_array(g, key, &v, &n);
        if (rc == SDS_OK) {
            int64_t sum = 0;
            for (int64_t i = 0; i < n; i++) sum += v[i];
            snprintf(value, sizeof value, "%" PRId64 " sum %" PRId64, n, sum);
            free(v);
        }
    } else if (strcmp(kind, "has") == 0) {
        rc = SDS_OK;
        snprintf(value, sizeof value, "%d", (int)sds_gguf_has(g, key));
    } else {
        rc = SDS_ERR_USAGE;
        snprintf(value, sizeof value, "unknown kind %s", kind);
    }
    printf("%s\t%d\t%s\n", request, rc, rc == SDS_OK ? value : sds_error_message());
}

static int cmd_get(const char *path, int n, char **requests) {
    sds_gguf *g;
    SDS_TRY(sds_gguf_open(path, &g));
    for (int i = 0; i < n; i++) get_one(g, requests[i]);
    sds_gguf_free(g);
    return SDS_OK;
}

static int cmd_types(void) {
    for (int32_t t = 0; t < 64; t++) {
        const char *name = sds_ggml_type_name(t);
        if (name) printf("%d %s %d\n", t, name, (int)sds_ggml_type_readable(t));
    }
    return SDS_OK;
}

// The whole file, NUL-terminated.
static int read_all(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return sds_error_set(SDS_ERR_INPUT, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *grown = realloc(buf, cap *= 2);
        if (!grown) free(buf);
        buf = grown;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf) return sds_error_set(SDS_ERR_IO, "%s: out of memory", path);
    if (bad) {
        free(buf);
        return sds_error_set(SDS_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return SDS_OK;
}

static double now_s(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmd_tokenize(const char *path, const char *text_path, const char *out_path) {
    double t0 = now_s();
    sds_gguf *g;
    SDS_TRY(sds_gguf_open(path, &g));
    sds_tokenizer *tok;
    int rc = sds_tokenizer_load_gguf(g, path, &tok);
    sds_gguf_free(g); // the tokenizer keeps copies
    if (rc != SDS_OK) return rc;
    double t1 = now_s();
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    rc = read_all(text_path, &text, &len);
    double t2 = now_s(), t3 = t2;
    if (rc == SDS_OK) {
        rc = sds_tokenizer_encode(tok, text, len, &ids, &n_ids);
        t3 = now_s();
    }
    if (rc == SDS_OK) {
        FILE *f = fopen(out_path, "wb");
        if (!f) {
            rc = sds_error_set(SDS_ERR_IO, "%s: %s", out_path, strerror(errno));
        } else {
            for (int64_t i = 0; i < n_ids; i++) {
                uint32_t v = (uint32_t)ids[i];
                unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                                       (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
                fwrite(le, 1, 4, f);
            }
            if (fclose(f) != 0) rc = sds_error_set(SDS_ERR_IO, "%s: write failed", out_path);
        }
    }
    if (rc == SDS_OK)
        fprintf(stderr, "load %.3f s, encode %zu bytes -> %lld ids in %.3f s\n", t1 - t0, len,
                (long long)n_ids, t3 - t2);
    free(ids);
    free(text);
    sds_tokenizer_free(tok);
    return rc;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "";
    int rc;
    if (strcmp(cmd, "dump") == 0 && argc == 3) {
        rc = cmd_dump(argv[2]);
    } else if (strcmp(cmd, "dequant") == 0 && argc == 3) {
        rc = cmd_dequant(argv[2]);
    } else if (strcmp(cmd, "open") == 0 && argc >= 3) {
        rc = cmd_open(argc - 2, argv + 2);
    } else if (strcmp(cmd, "read") == 0 && argc >= 4) {
        rc = cmd_read(argv[2], argv[3], argc - 4, argv + 4);
    } else if (strcmp(cmd, "get") == 0 && argc >= 3) {
        rc = cmd_get(argv[2], argc - 3, argv + 3);
    } else if (strcmp(cmd, "types") == 0 && argc == 2) {
        rc = cmd_types();
    } else if (strcmp(cmd, "tokenize") == 0 && argc == 5) {
        rc = cmd_tokenize(argv[2], argv[3], argv[4]);
    } else {
        fprintf(stderr,
                "usage: %s dump|dequant|open|read|get|types|tokenize ... (see the source)\n",
                argv[0]);
        return SDS_ERR_USAGE;
    }
    if (rc != SDS_OK) fprintf(stderr, "test_gguf: %s\n", sds_error_message());
    return rc;
}

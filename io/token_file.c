#include "token_file.h"

#include "sds_error.h"
#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

// The value text of `key` in the .npy header dict (a Python literal such as
// "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }"): a pointer just past "'key':".
static const char *npy_field(const char *hdr, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s':", key);
    const char *p = strstr(hdr, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    return p;
}

static int npy_error(const char *path, const char *what) {
    return sds_error_set(SDS_ERR_INPUT, "%s: not a usable .npy token file: %s", path, what);
}

static int read_npy(const char *path, const unsigned char *d, size_t len, int64_t vocab,
                    int32_t **ids_out, int64_t *n_out) {
    if (len < 10) return npy_error(path, "truncated header");
    const int major = d[6];
    size_t hlen, off;
    if (major == 1) {
        hlen = (size_t)d[8] | (size_t)d[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return npy_error(path, "truncated header");
        hlen = (size_t)d[8] | (size_t)d[9] << 8 | (size_t)d[10] << 16 | (size_t)d[11] << 24;
        off = 12;
    } else {
        return npy_error(path, "unknown format version");
    }
    if (hlen > len - off) return npy_error(path, "truncated header");
    char *hdr = malloc(hlen + 1);
    if (!hdr) return sds_error_set(SDS_ERR_IO, "%s: out of memory", path);
    memcpy(hdr, d + off, hlen);
    hdr[hlen] = '\0';
    int rc = SDS_OK;
    const char *descr = npy_field(hdr, "descr"), *fo = npy_field(hdr, "fortran_order"),
               *shape = npy_field(hdr, "shape");
    size_t width = 0;
    int is_signed = 0;
    if (!descr || !fo || !shape) {
        rc = npy_error(path, "the header lacks descr, fortran_order or shape");
    } else if (!strncmp(descr, "'<i4'", 5)) {
        width = 4;
        is_signed = 1;
    } else if (!strncmp(descr, "'<i8'", 5)) {
        width = 8;
        is_signed = 1;
    } else if (!strncmp(descr, "'<u2'", 5)) {
        width = 2;
    } else if (!strncmp(descr, "'<u4'", 5)) {
        width = 4;
    } else {
        rc = npy_error(path, "dtype is not little-endian int32, int64, uint16 or uint32");
    }
    if (rc == SDS_OK && strncmp(fo, "False", 5) != 0)
        rc = npy_error(path, "Fortran order (save a C-ordered array)");
    // shape: "(a, b, ...)" or "()" (a scalar)
    int64_t count = 1;
    if (rc == SDS_OK) {
        if (*shape != '(') {
            rc = npy_error(path, "malformed shape");
        } else {
            const char *p = shape + 1;
            for (;;) {
                while (*p == ' ' || *p == ',') p++;
                if (*p == ')') break;
                char *end = NULL;
                errno = 0;
                const long long v = strtoll(p, &end, 10);
                if (errno || end == p || v < 0 || (v > 0 && count > INT64_MAX / v)) {
                    rc = npy_error(path, "malformed shape");
                    break;
                }
                count *= v;
                p = end;
            }
        }
    }
    free(hdr);
    if (rc != SDS_OK) return rc;
    const size_t data_off = off + hlen;
    if ((uint64_t)count > (len - data_off) / width)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: truncated: the header announces %lld ids, the file holds %zu "
                             "bytes of data",
                             path, (long long)count, len - data_off);
    if (count == 0) return sds_error_set(SDS_ERR_INPUT, "%s: holds no token ids", path);
    int32_t *ids = sds_malloc((size_t)count * sizeof(int32_t), "token ids");
    if (!ids) return SDS_ERR_IO;
    const unsigned char *q = d + data_off;
    for (int64_t i = 0; i < count; i++, q += width) {
        uint64_t u = 0;
        for (size_t b = 0; b < width; b++) u |= (uint64_t)q[b] << (8 * b);
        int64_t v = (int64_t)u;
        if (is_signed && width == 4) v = (int32_t)(uint32_t)u;
        if (v < 0 || v >= vocab) {
            free(ids);
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: id %lld at index %lld is outside the model's vocabulary "
                                 "(%lld)",
                                 path, (long long)v, (long long)i, (long long)vocab);
        }
        ids[i] = (int32_t)v;
    }
    *ids_out = ids;
    *n_out = count;
    return SDS_OK;
}

static int read_text_ids(const char *path, const char *t, size_t len, int64_t vocab,
                         int32_t **ids_out, int64_t *n_out) {
    int64_t cap = 1024, n = 0;
    int32_t *ids = sds_malloc((size_t)cap * sizeof(int32_t), "token ids");
    if (!ids) return SDS_ERR_IO;
    size_t i = 0;
    while (i < len) {
        if (isspace((unsigned char)t[i])) {
            i++;
            continue;
        }
        const size_t start = i;
        long long v = 0;
        while (i < len && isdigit((unsigned char)t[i]) && v <= INT32_MAX)
            v = v * 10 + (t[i++] - '0');
        if (i == start || (i < len && !isspace((unsigned char)t[i])) || v >= vocab) {
            free(ids);
            if (i > start && v >= vocab)
                return sds_error_set(SDS_ERR_INPUT,
                                     "%s: id %lld at byte %zu is outside the model's vocabulary "
                                     "(%lld)",
                                     path, v, start, (long long)vocab);
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: byte %zu: expected a token id (a non-negative integer): "
                                 "token files are .npy or white-space separated decimal ids",
                                 path, start);
        }
        if (n == cap) {
            cap *= 2;
            int32_t *grown = realloc(ids, (size_t)cap * sizeof(int32_t));
            if (!grown) {
                free(ids);
                return sds_error_set(SDS_ERR_IO, "%s: out of memory", path);
            }
            ids = grown;
        }
        ids[n++] = (int32_t)v;
    }
    if (n == 0) {
        free(ids);
        return sds_error_set(SDS_ERR_INPUT, "%s: holds no token ids", path);
    }
    *ids_out = ids;
    *n_out = n;
    return SDS_OK;
}

int sds_token_file_read(const char *path, int64_t vocab, int32_t **ids, int64_t *n) {
    char *data = NULL;
    size_t len = 0;
    SDS_TRY(sds_text_read(path, &data, &len));
    int rc;
    if (len >= sizeof npy_magic && !memcmp(data, npy_magic, sizeof npy_magic))
        rc = read_npy(path, (const unsigned char *)data, len, vocab, ids, n);
    else
        rc = read_text_ids(path, data, len, vocab, ids, n);
    free(data);
    return rc;
}

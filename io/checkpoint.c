#define _POSIX_C_SOURCE 200809L
#include "checkpoint.h"

#include "file.h"
#include "sds_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Headers are written field by field in the host's byte order; the mark tells another order.
#define CKPT_BYTE_ORDER_MARK 0x01020304u
#define CKPT_LAYER_MAGIC     "SDSLAYER"
#define CKPT_ACTS_MAGIC      "SDSACTS1"
#define CKPT_LAYER_HEAD      32 // magic, version, mark, layer, n
#define CKPT_ACTS_HEAD       64
#define CKPT_TRAILER         8
#define CKPT_IO_CHUNK        ((size_t)1 << 26) // bytes per read/write call

uint64_t sds_fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void sds_ckpt_meta_path(const char *dir, char *buf, size_t cap) {
    SDS_ASSERT((size_t)snprintf(buf, cap, "%s/meta.json", dir) < cap);
}

void sds_ckpt_layer_path(const char *dir, int64_t layer, char *buf, size_t cap) {
    SDS_ASSERT((size_t)snprintf(buf, cap, "%s/layer-%04lld.bin", dir, (long long)layer) < cap);
}

void sds_ckpt_acts_path(const char *dir, int32_t rank, int64_t layer, char *buf, size_t cap) {
    SDS_ASSERT((size_t)snprintf(buf, cap, "%s/rank-%d.after-layer-%04lld.bin", dir, (int)rank,
                                (long long)layer) < cap);
}

int sds_ckpt_dir_create(const char *dir) {
    if (mkdir(dir, 0777) == 0) return SDS_OK;
    struct stat sb;
    if (errno == EEXIST && stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return SDS_OK;
    return sds_error_set(SDS_ERR_IO, "%s: cannot create the checkpoint directory: %s", dir,
                         strerror(errno));
}

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

// Only the names a checkpoint writes are removed, so a file someone put there survives.
static int is_ckpt_name(const char *name) {
    if (!strcmp(name, "meta.json") || !strcmp(name, "meta.json.tmp")) return 1;
    return (!strncmp(name, "layer-", 6) || !strncmp(name, "rank-", 5)) &&
           (ends_with(name, ".bin") || ends_with(name, ".bin.tmp"));
}

int sds_ckpt_dir_remove(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : 1;
    int left = 0;
    const struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!is_ckpt_name(e->d_name) || unlink(path) != 0) left++;
    }
    closedir(d);
    if (left == 0 && rmdir(dir) != 0) left = 1;
    return left;
}

void sds_ckpt_file_remove(const char *path) {
    if (unlink(path) != 0 && errno != ENOENT) {
        // a stale file costs disk space only; it is never read without meta.json naming it
    }
}

int sds_ckpt_file_check_size(const char *path, const sds_ckpt_file_info *info) {
    int fd = -1;
    uint64_t size = 0;
    SDS_TRY(sds_file_open_regular(path, &fd, &size));
    close(fd);
    if (size == info->bytes) return SDS_OK;
    return sds_error_set(SDS_ERR_INPUT,
                         "%s: %s checkpoint file (%llu bytes, meta.json records %llu)", path,
                         size < info->bytes ? "truncated" : "wrong size of",
                         (unsigned long long)size, (unsigned long long)info->bytes);
}

// ---- writing ----

struct sds_ckpt_writer {
    int fd;
    uint64_t fnv, bytes;
    char *path, *tmp;
    int32_t n, next;        // sublayers in the file, the next one to put
    sds_ckpt_shape *shapes; // n
};

static int writer_put(sds_ckpt_writer *wr, const void *data, size_t n) {
    wr->fnv = sds_fnv1a64(wr->fnv, data, n);
    const char *p = data;
    while (n > 0) {
        const size_t k = n < CKPT_IO_CHUNK ? n : CKPT_IO_CHUNK;
        const ssize_t got = write(wr->fd, p, k);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return sds_error_set(SDS_ERR_IO, "%s: writing the checkpoint file: %s", wr->tmp,
                                 got < 0 ? strerror(errno) : "no progress");
        p += got;
        n -= (size_t)got;
        wr->bytes += (uint64_t)got;
    }
    return SDS_OK;
}

static int writer_open(const char *path, sds_ckpt_writer **out) {
    *out = NULL;
    sds_ckpt_writer *wr = sds_calloc(1, sizeof *wr, "checkpoint writer");
    if (!wr) return SDS_ERR_IO;
    wr->fd = -1;
    wr->fnv = SDS_FNV1A64_INIT;
    const size_t n = strlen(path) + sizeof ".tmp";
    wr->path = strdup(path);
    wr->tmp = malloc(n);
    if (!wr->path || !wr->tmp) {
        sds_ckpt_writer_abort(wr);
        return sds_error_set(SDS_ERR_IO, "out of memory");
    }
    snprintf(wr->tmp, n, "%s.tmp", path);
    wr->fd = open(wr->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (wr->fd < 0) {
        int rc = sds_error_set(SDS_ERR_IO, "%s: cannot create: %s", wr->tmp, strerror(errno));
        sds_ckpt_writer_abort(wr);
        return rc;
    }
    *out = wr;
    return SDS_OK;
}

void sds_ckpt_writer_abort(sds_ckpt_writer *wr) {
    if (!wr) return;
    if (wr->fd >= 0) {
        close(wr->fd);
        unlink(wr->tmp);
    }
    free(wr->path);
    free(wr->tmp);
    free(wr->shapes);
    free(wr);
}

// The directory entry of a rename is durable once its directory is synced (best effort).
static void sync_parent_dir(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    if (fsync(fd) != 0) {
        // some file systems refuse to sync directories; the files themselves are synced
    }
    close(fd);
}

int sds_ckpt_writer_commit(sds_ckpt_writer *wr, sds_ckpt_file_info *info) {
    SDS_ASSERT(wr && wr->next == wr->n);
    const uint64_t sum = wr->fnv;
    int rc = writer_put(wr, &sum, sizeof sum);
    if (rc == SDS_OK && fsync(wr->fd) != 0)
        rc = sds_error_set(SDS_ERR_IO, "%s: syncing to disk: %s", wr->tmp, strerror(errno));
    if (rc == SDS_OK) {
        const int closed = close(wr->fd);
        wr->fd = -1;
        if (closed != 0)
            rc = sds_error_set(SDS_ERR_IO, "%s: closing: %s", wr->tmp, strerror(errno));
        else if (rename(wr->tmp, wr->path) != 0)
            rc = sds_error_set(SDS_ERR_IO, "%s: renaming %s to it: %s", wr->path, wr->tmp,
                               strerror(errno));
        if (rc != SDS_OK) unlink(wr->tmp);
    }
    if (rc == SDS_OK) {
        sync_parent_dir(wr->path);
        if (info) {
            info->bytes = wr->bytes;
            info->checksum = sum;
        }
    }
    sds_ckpt_writer_abort(wr); // frees (the file descriptor is closed unless a write failed)
    return rc;
}

static void put_u32(unsigned char **p, uint32_t v) {
    memcpy(*p, &v, 4);
    *p += 4;
}

static void put_i64(unsigned char **p, int64_t v) {
    memcpy(*p, &v, 8);
    *p += 8;
}

static uint32_t get_u32(const unsigned char **p) {
    uint32_t v;
    memcpy(&v, *p, 4);
    *p += 4;
    return v;
}

static int64_t get_i64(const unsigned char **p) {
    int64_t v;
    memcpy(&v, *p, 8);
    *p += 8;
    return v;
}

uint64_t sds_ckpt_layer_bytes(int32_t n, const sds_ckpt_shape *shapes) {
    uint64_t b = CKPT_LAYER_HEAD + 16 * (uint64_t)n + CKPT_TRAILER;
    for (int32_t i = 0; i < n; i++) b += 5 * (uint64_t)(shapes[i].rows * shapes[i].cols);
    return b;
}

int sds_ckpt_layer_begin(const char *path, int64_t layer, int32_t n, const sds_ckpt_shape *shapes,
                         sds_ckpt_writer **out) {
    SDS_TRY(writer_open(path, out));
    sds_ckpt_writer *wr = *out;
    wr->n = n;
    wr->shapes = sds_malloc((size_t)(n ? n : 1) * sizeof *shapes, "checkpoint shapes");
    unsigned char *head = sds_malloc(CKPT_LAYER_HEAD + 16 * (size_t)n, "checkpoint header");
    int rc = wr->shapes && head ? SDS_OK : SDS_ERR_IO;
    if (rc == SDS_OK) {
        memcpy(wr->shapes, shapes, (size_t)n * sizeof *shapes);
        unsigned char *p = head;
        memcpy(p, CKPT_LAYER_MAGIC, 8);
        p += 8;
        put_u32(&p, SDS_CKPT_FORMAT_VERSION);
        put_u32(&p, CKPT_BYTE_ORDER_MARK);
        put_i64(&p, layer);
        put_i64(&p, n);
        for (int32_t i = 0; i < n; i++) {
            put_i64(&p, shapes[i].rows);
            put_i64(&p, shapes[i].cols);
        }
        rc = writer_put(wr, head, (size_t)(p - head));
    }
    free(head);
    if (rc != SDS_OK) {
        sds_ckpt_writer_abort(wr);
        *out = NULL;
    }
    return rc;
}

int sds_ckpt_layer_put(sds_ckpt_writer *wr, const float *w, const uint8_t *mask) {
    SDS_ASSERT(wr->next < wr->n);
    const sds_ckpt_shape s = wr->shapes[wr->next++];
    const size_t numel = (size_t)(s.rows * s.cols);
    SDS_TRY(writer_put(wr, w, numel * sizeof(float)));
    return writer_put(wr, mask, numel);
}

// ---- reading ----

struct sds_ckpt_reader {
    int fd;
    uint64_t fnv, expect_sum;
    char *path;
    int32_t n, next;
    sds_ckpt_shape *shapes;
};

void sds_ckpt_reader_abort(sds_ckpt_reader *rd) {
    if (!rd) return;
    if (rd->fd >= 0) close(rd->fd);
    free(rd->path);
    free(rd->shapes);
    free(rd);
}

static int reader_get(sds_ckpt_reader *rd, void *data, size_t n) {
    char *p = data;
    const size_t want = n;
    while (n > 0) {
        const size_t k = n < CKPT_IO_CHUNK ? n : CKPT_IO_CHUNK;
        const ssize_t got = read(rd->fd, p, k);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0)
            return sds_error_set(SDS_ERR_IO, "%s: reading the checkpoint file: %s", rd->path,
                                 strerror(errno));
        if (got == 0)
            return sds_error_set(SDS_ERR_INPUT, "%s: truncated checkpoint file", rd->path);
        p += got;
        n -= (size_t)got;
    }
    rd->fnv = sds_fnv1a64(rd->fnv, data, want);
    return SDS_OK;
}

// Opens path, which must be exactly expect->bytes long.
static int reader_open(const char *path, const sds_ckpt_file_info *expect, sds_ckpt_reader **out) {
    *out = NULL;
    int fd = -1;
    uint64_t size = 0;
    SDS_TRY(sds_ckpt_file_check_size(path, expect));
    SDS_TRY(sds_file_open_regular(path, &fd, &size));
    sds_ckpt_reader *rd = sds_calloc(1, sizeof *rd, "checkpoint reader");
    char *p = strdup(path);
    if (!rd || !p) {
        close(fd);
        free(rd);
        free(p);
        return sds_error_set(SDS_ERR_IO, "out of memory");
    }
    rd->fd = fd;
    rd->path = p;
    rd->fnv = SDS_FNV1A64_INIT;
    rd->expect_sum = expect->checksum;
    *out = rd;
    return SDS_OK;
}

int sds_ckpt_reader_finish(sds_ckpt_reader *rd) {
    SDS_ASSERT(rd && rd->next == rd->n);
    const uint64_t computed = rd->fnv;
    uint64_t stored = 0;
    int rc = reader_get(rd, &stored, sizeof stored);
    if (rc == SDS_OK && (stored != computed || stored != rd->expect_sum))
        rc = sds_error_set(SDS_ERR_INPUT,
                           "%s: checkpoint file corrupted (checksum %016llx, trailer %016llx, "
                           "meta.json %016llx)",
                           rd->path, (unsigned long long)computed, (unsigned long long)stored,
                           (unsigned long long)rd->expect_sum);
    sds_ckpt_reader_abort(rd);
    return rc;
}

static int bad_header(const char *path, const char *what) {
    return sds_error_set(SDS_ERR_INPUT, "%s: not the checkpoint file meta.json describes (%s)",
                         path, what);
}

int sds_ckpt_layer_open(const char *path, int64_t layer, int32_t n, const sds_ckpt_shape *shapes,
                        const sds_ckpt_file_info *expect, sds_ckpt_reader **out) {
    *out = NULL;
    if (expect->bytes != sds_ckpt_layer_bytes(n, shapes))
        return bad_header(path, "its recorded size does not fit the model's sublayers");
    SDS_TRY(reader_open(path, expect, out));
    sds_ckpt_reader *rd = *out;
    rd->n = n;
    const size_t head_bytes = CKPT_LAYER_HEAD + 16 * (size_t)n;
    unsigned char *head = sds_malloc(head_bytes, "checkpoint header");
    rd->shapes = sds_malloc((size_t)(n ? n : 1) * sizeof *shapes, "checkpoint shapes");
    int rc = head && rd->shapes ? SDS_OK : SDS_ERR_IO;
    if (rc == SDS_OK) rc = reader_get(rd, head, head_bytes);
    if (rc == SDS_OK) {
        const unsigned char *p = head;
        const int magic_ok = !memcmp(p, CKPT_LAYER_MAGIC, 8);
        p += 8;
        const uint32_t version = get_u32(&p), mark = get_u32(&p);
        const int64_t l = get_i64(&p), n_file = get_i64(&p);
        if (!magic_ok)
            rc = bad_header(path, "no layer file magic");
        else if (version != SDS_CKPT_FORMAT_VERSION || mark != CKPT_BYTE_ORDER_MARK)
            rc = bad_header(path, "another format version or byte order");
        else if (l != layer || n_file != n)
            rc = bad_header(path, "another layer or sublayer count");
        for (int32_t i = 0; rc == SDS_OK && i < n; i++) {
            rd->shapes[i].rows = get_i64(&p);
            rd->shapes[i].cols = get_i64(&p);
            if (rd->shapes[i].rows != shapes[i].rows || rd->shapes[i].cols != shapes[i].cols)
                rc = bad_header(path, "sublayer shapes differ from the model's");
        }
    }
    free(head);
    if (rc != SDS_OK) {
        sds_ckpt_reader_abort(rd);
        *out = NULL;
    }
    return rc;
}

int sds_ckpt_layer_get(sds_ckpt_reader *rd, float *w, uint8_t *mask) {
    SDS_ASSERT(rd->next < rd->n);
    const sds_ckpt_shape s = rd->shapes[rd->next++];
    const size_t numel = (size_t)(s.rows * s.cols);
    SDS_TRY(reader_get(rd, w, numel * sizeof(float)));
    return reader_get(rd, mask, numel);
}

// ---- activation files ----

uint64_t sds_ckpt_acts_bytes(const sds_ckpt_acts_header *hd) {
    const uint64_t per = (uint64_t)(hd->n_local * hd->T * hd->C) * sizeof(float);
    return CKPT_ACTS_HEAD + per * (hd->dense ? 2u : 1u) + CKPT_TRAILER;
}

static void acts_header_bytes(const sds_ckpt_acts_header *hd, unsigned char *head) {
    memset(head, 0, CKPT_ACTS_HEAD);
    unsigned char *p = head;
    memcpy(p, CKPT_ACTS_MAGIC, 8);
    p += 8;
    put_u32(&p, SDS_CKPT_FORMAT_VERSION);
    put_u32(&p, CKPT_BYTE_ORDER_MARK);
    put_u32(&p, (uint32_t)hd->rank);
    put_u32(&p, (uint32_t)hd->nranks);
    put_i64(&p, hd->layer);
    put_i64(&p, hd->n_local);
    put_i64(&p, hd->T);
    put_i64(&p, hd->C);
    put_u32(&p, (uint32_t)hd->dense);
}

int sds_ckpt_acts_write(const char *path, const sds_ckpt_acts_header *hd, const float *inps,
                        const float *inps_d, sds_ckpt_file_info *info) {
    sds_ckpt_writer *wr = NULL;
    SDS_TRY(writer_open(path, &wr));
    unsigned char head[CKPT_ACTS_HEAD];
    acts_header_bytes(hd, head);
    const size_t per = (size_t)(hd->n_local * hd->T * hd->C) * sizeof(float);
    int rc = writer_put(wr, head, sizeof head);
    if (rc == SDS_OK) rc = writer_put(wr, inps, per);
    if (rc == SDS_OK && hd->dense) rc = writer_put(wr, inps_d, per);
    if (rc != SDS_OK) {
        sds_ckpt_writer_abort(wr);
        return rc;
    }
    return sds_ckpt_writer_commit(wr, info);
}

int sds_ckpt_acts_read(const char *path, const sds_ckpt_acts_header *expect,
                       const sds_ckpt_file_info *info, float *inps, float *inps_d) {
    sds_ckpt_reader *rd = NULL;
    if (info->bytes != sds_ckpt_acts_bytes(expect))
        return bad_header(path, "its recorded size does not fit this rank's activations");
    SDS_TRY(reader_open(path, info, &rd));
    unsigned char head[CKPT_ACTS_HEAD], want[CKPT_ACTS_HEAD];
    acts_header_bytes(expect, want);
    int rc = reader_get(rd, head, sizeof head);
    if (rc == SDS_OK && memcmp(head, want, sizeof head) != 0)
        rc = memcmp(head, want, 8) ? bad_header(path, "no activation file magic")
                                   : bad_header(path, "another rank, layer or size");
    const size_t per = (size_t)(expect->n_local * expect->T * expect->C) * sizeof(float);
    if (rc == SDS_OK) rc = reader_get(rd, inps, per);
    if (rc == SDS_OK && expect->dense) rc = reader_get(rd, inps_d, per);
    if (rc != SDS_OK) {
        sds_ckpt_reader_abort(rd);
        return rc;
    }
    return sds_ckpt_reader_finish(rd);
}

// ---- meta.json ----

int sds_ckpt_meta_write(const char *dir, json_t *root) {
    char path[4096];
    sds_ckpt_meta_path(dir, path, sizeof path);
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!text) return sds_error_set(SDS_ERR_IO, "%s: cannot encode the checkpoint metadata", path);
    sds_ckpt_writer *wr = NULL;
    int rc = writer_open(path, &wr);
    if (rc == SDS_OK) {
        wr->fnv = 0; // meta.json has no trailer: it is what the other files are checked against
        rc = writer_put(wr, text, strlen(text));
        if (rc == SDS_OK && fsync(wr->fd) != 0)
            rc = sds_error_set(SDS_ERR_IO, "%s: syncing to disk: %s", wr->tmp, strerror(errno));
        if (rc == SDS_OK) {
            const int closed = close(wr->fd);
            wr->fd = -1;
            if (closed != 0 || rename(wr->tmp, wr->path) != 0) {
                rc = sds_error_set(SDS_ERR_IO, "%s: writing: %s", wr->path, strerror(errno));
                unlink(wr->tmp);
            }
        }
        if (rc == SDS_OK) sync_parent_dir(path);
        sds_ckpt_writer_abort(wr);
    }
    free(text);
    return rc;
}

int sds_ckpt_meta_read(const char *dir, json_t **root) {
    *root = NULL;
    char path[4096];
    sds_ckpt_meta_path(dir, path, sizeof path);
    struct stat sb;
    if (stat(path, &sb) != 0 && (errno == ENOENT || errno == ENOTDIR)) return SDS_OK;
    json_error_t err;
    *root = json_load_file(path, 0, &err);
    if (!*root)
        return sds_error_set(SDS_ERR_INPUT, "%s: malformed checkpoint metadata (line %d: %s)", path,
                             err.line, err.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return sds_error_set(SDS_ERR_INPUT, "%s: malformed checkpoint metadata (not an object)",
                             path);
    }
    return SDS_OK;
}

static json_t *number_json(double v) {
    if (isfinite(v)) return json_real(v);
    return json_string(isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
}

static int number_parse(const json_t *j, double *v) {
    if (json_is_number(j)) {
        *v = json_number_value(j);
        return 1;
    }
    const char *s = json_string_value(j);
    if (!s) return 0;
    if (!strcmp(s, "nan"))
        *v = NAN;
    else if (!strcmp(s, "inf"))
        *v = INFINITY;
    else if (!strcmp(s, "-inf"))
        *v = -INFINITY;
    else
        return 0;
    return 1;
}

json_t *sds_ckpt_stats_json(const sds_h5out_stats *st) {
    json_t *j = json_object();
    json_object_set_new(j, "layer", json_integer(st->layer));
    json_object_set_new(j, "method", json_string(st->method));
    json_object_set_new(j, "pattern", json_string(st->pattern));
    json_object_set_new(j, "sparsity", number_json(st->sparsity));
    json_object_set_new(j, "rel_err_first", number_json(st->rel_err_first));
    json_object_set_new(j, "rel_err_final", number_json(st->rel_err_final));
    json_object_set_new(j, "damping", number_json(st->damping));
    json_object_set_new(j, "seconds", number_json(st->seconds));
    json_t *extra = json_object(); // jansson keeps the keys in their order
    for (int32_t i = 0; i < st->n_extra; i++)
        json_object_set_new(extra, st->extra_name[i], number_json(st->extra[i]));
    json_object_set_new(j, "extra", extra);
    return j;
}

static int copy_name(const json_t *j, char *buf, size_t cap) {
    const char *s = json_string_value(j);
    if (!s || strlen(s) >= cap) return 0;
    snprintf(buf, cap, "%s", s);
    return 1;
}

int sds_ckpt_stats_parse(const json_t *j, const char *what, sds_h5out_stats *st) {
    memset(st, 0, sizeof *st);
    const json_t *layer = json_object_get(j, "layer");
    json_t *extra = json_object_get(j, "extra");
    int ok = json_is_integer(layer) &&
             copy_name(json_object_get(j, "method"), st->method, sizeof st->method) &&
             copy_name(json_object_get(j, "pattern"), st->pattern, sizeof st->pattern) &&
             number_parse(json_object_get(j, "sparsity"), &st->sparsity) &&
             number_parse(json_object_get(j, "rel_err_first"), &st->rel_err_first) &&
             number_parse(json_object_get(j, "rel_err_final"), &st->rel_err_final) &&
             number_parse(json_object_get(j, "damping"), &st->damping) &&
             number_parse(json_object_get(j, "seconds"), &st->seconds) && json_is_object(extra) &&
             json_object_size(extra) <= SDS_H5OUT_MAX_EXTRA;
    if (ok) st->layer = (int32_t)json_integer_value(layer);
    const char *key;
    const json_t *v;
    json_object_foreach(extra, key, v) {
        if (!ok) break;
        const int32_t i = st->n_extra++;
        ok = strlen(key) < sizeof st->extra_name[i] && number_parse(v, &st->extra[i]);
        if (ok) snprintf(st->extra_name[i], sizeof st->extra_name[i], "%s", key);
    }
    if (!ok) return sds_error_set(SDS_ERR_INPUT, "%s: malformed sublayer statistics", what);
    return SDS_OK;
}

json_t *sds_ckpt_info_json(const sds_ckpt_file_info *info) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)info->checksum);
    return json_pack("{s:I,s:s}", "bytes", (json_int_t)info->bytes, "fnv1a64", hex);
}

int sds_ckpt_info_parse(const json_t *j, const char *what, sds_ckpt_file_info *info) {
    const json_t *b = json_object_get(j, "bytes");
    const char *hex = json_string_value(json_object_get(j, "fnv1a64"));
    char *end = NULL;
    unsigned long long sum = hex ? strtoull(hex, &end, 16) : 0;
    if (!json_is_integer(b) || json_integer_value(b) < 0 || !hex || strlen(hex) != 16 || *end)
        return sds_error_set(SDS_ERR_INPUT, "%s: malformed file entry in the checkpoint metadata",
                             what);
    info->bytes = (uint64_t)json_integer_value(b);
    info->checksum = sum;
    return SDS_OK;
}

// Reading the pruning output file with the default (POSIX) HDF5 driver, read-only.
#define _POSIX_C_SOURCE 200809L
#include "h5in.h"
#include "sds_error.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct sds_h5in {
    char *path;
    hid_t file, g_weights, g_masks;
    int32_t version;
    int64_t n_names, cap_names;
    char **names; // creation order
    char *config, *fingerprint;
};

static const char *const h5in_fixed_attrs[] = {"layer",    "method",        "pattern",
                                               "sparsity", "rel_err_first", "rel_err_final",
                                               "damping",  "seconds"};

static herr_t h5in_detail_cb(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = data;
    if (n == 0 && e->desc) snprintf(buf, 256, "%s", e->desc);
    return 0;
}

// The innermost HDF5 error, for messages; clears the stack.
static const char *h5in_detail(char buf[256]) {
    snprintf(buf, 256, "HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, h5in_detail_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf;
}

// Reads a fixed-length string attribute of obj into a malloc'ed NUL-terminated string.
// Returns SDS_OK, or SDS_ERR_INPUT naming `where`.
static int h5in_attr_str(const sds_h5in *h, hid_t obj, const char *where, const char *name,
                         char **out) {
    *out = NULL;
    char detail[256];
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return sds_error_set(SDS_ERR_INPUT, "%s: %s has no attribute %s (%s)", h->path, where, name,
                             h5in_detail(detail));
    hid_t type = H5Aget_type(a);
    int rc = SDS_OK;
    if (type < 0 || H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) != 0) {
        rc = sds_error_set(SDS_ERR_INPUT, "%s: attribute %s of %s is not a fixed-length string",
                           h->path, name, where);
    } else {
        size_t size = H5Tget_size(type);
        char *buf = sds_calloc(size + 1, 1, "an HDF5 string attribute");
        if (!buf)
            rc = SDS_ERR_IO;
        else if (H5Aread(a, type, buf) < 0) {
            free(buf);
            rc = sds_error_set(SDS_ERR_IO, "%s: reading attribute %s of %s: %s", h->path, name,
                               where, h5in_detail(detail));
        } else
            *out = buf;
    }
    if (type >= 0) H5Tclose(type);
    H5Aclose(a);
    return rc;
}

// Reads a scalar numeric attribute as memtype (HDF5 converts).
static int h5in_attr_num(const sds_h5in *h, hid_t obj, const char *where, const char *name,
                         hid_t memtype, void *out) {
    char detail[256];
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return sds_error_set(SDS_ERR_INPUT, "%s: %s has no attribute %s (%s)", h->path, where, name,
                             h5in_detail(detail));
    hid_t type = H5Aget_type(a);
    H5T_class_t cls = type < 0 ? H5T_NO_CLASS : H5Tget_class(type);
    hid_t space = H5Aget_space(a);
    hssize_t n = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    int rc = SDS_OK;
    if ((cls != H5T_INTEGER && cls != H5T_FLOAT) || n != 1)
        rc = sds_error_set(SDS_ERR_INPUT, "%s: attribute %s of %s is not a single number", h->path,
                           name, where);
    else if (H5Aread(a, memtype, out) < 0)
        rc = sds_error_set(SDS_ERR_IO, "%s: reading attribute %s of %s: %s", h->path, name, where,
                           h5in_detail(detail));
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    H5Aclose(a);
    return rc;
}

static herr_t h5in_name_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    sds_h5in *h = data;
    if (h->n_names == h->cap_names) {
        int64_t cap = h->cap_names ? 2 * h->cap_names : 64;
        char **nn = realloc(h->names, sizeof(char *) * (size_t)cap);
        if (!nn) return -1;
        h->names = nn;
        h->cap_names = cap;
    }
    h->names[h->n_names] = strdup(name);
    if (!h->names[h->n_names]) return -1;
    h->n_names++;
    return 0;
}

// The sublayer names, in creation order when the file tracks it (ours does), else by name.
static int h5in_list(sds_h5in *h) {
    hsize_t idx = 0;
    if (H5Literate(h->g_weights, H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, h5in_name_cb, h) >= 0)
        return SDS_OK;
    for (int64_t i = 0; i < h->n_names; i++) free(h->names[i]);
    h->n_names = 0;
    H5Eclear2(H5E_DEFAULT);
    idx = 0;
    if (H5Literate(h->g_weights, H5_INDEX_NAME, H5_ITER_INC, &idx, h5in_name_cb, h) >= 0)
        return SDS_OK;
    char detail[256];
    return sds_error_set(SDS_ERR_IO, "%s: listing /weights: %s", h->path, h5in_detail(detail));
}

// Reads the /config string dataset ("" when absent).
static int h5in_read_config(sds_h5in *h) {
    char detail[256];
    htri_t exists = H5Lexists(h->file, "config", H5P_DEFAULT);
    if (exists <= 0) {
        h->config = strdup("");
        return h->config ? SDS_OK : sds_error_set(SDS_ERR_IO, "out of memory");
    }
    hid_t d = H5Dopen2(h->file, "config", H5P_DEFAULT);
    hid_t type = d < 0 ? -1 : H5Dget_type(d);
    hid_t space = d < 0 ? -1 : H5Dget_space(d);
    int rc = SDS_OK;
    if (d < 0 || type < 0 || space < 0)
        rc = sds_error_set(SDS_ERR_INPUT, "%s: cannot open dataset /config: %s", h->path,
                           h5in_detail(detail));
    else if (H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) != 0 ||
             H5Sget_simple_extent_npoints(space) != 1)
        rc = sds_error_set(SDS_ERR_INPUT, "%s: dataset /config is not a scalar fixed-length string",
                           h->path);
    else {
        size_t size = H5Tget_size(type);
        h->config = sds_calloc(size + 1, 1, "the configuration text");
        if (!h->config)
            rc = SDS_ERR_IO;
        else if (H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, h->config) < 0)
            rc = sds_error_set(SDS_ERR_IO, "%s: reading dataset /config: %s", h->path,
                               h5in_detail(detail));
    }
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (d >= 0) H5Dclose(d);
    return rc;
}

int sds_h5in_open(const char *path, sds_h5in **out) {
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    struct stat sb;
    if (stat(path, &sb) != 0) return sds_error_set(SDS_ERR_INPUT, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return sds_error_set(SDS_ERR_INPUT, "%s: is a directory, expected an HDF5 file", path);
    FILE *probe = fopen(path, "rb");
    if (!probe) return sds_error_set(SDS_ERR_INPUT, "%s: %s", path, strerror(errno));
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return sds_error_set(SDS_ERR_INPUT, "%s: not an HDF5 file", path);
    }

    sds_h5in *h = sds_calloc(1, sizeof *h, "the HDF5 reader");
    if (!h) return SDS_ERR_IO;
    h->file = h->g_weights = h->g_masks = -1;
    h->path = strdup(path);
    if (!h->path) {
        free(h);
        return sds_error_set(SDS_ERR_IO, "out of memory");
    }
    char detail[256];
    int rc = SDS_OK;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    // lock when the file system can, read anyway when it cannot (NFS, some Lustre mounts)
    if (fapl >= 0) H5Pset_file_locking(fapl, 1, 1);
    h->file = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (fapl >= 0) H5Pclose(fapl);
    if (h->file < 0) {
        rc = sds_error_set(SDS_ERR_INPUT, "%s: cannot open as HDF5: %s", path, h5in_detail(detail));
        goto fail;
    }

    htri_t has = H5Aexists(h->file, "format");
    htri_t has_v = H5Aexists(h->file, "format_version");
    if (has <= 0 || has_v <= 0) {
        H5Eclear2(H5E_DEFAULT);
        rc = sds_error_set(SDS_ERR_INPUT,
                           "%s: not an sds-mpi prune file (no format/format_version attribute)",
                           path);
        goto fail;
    }
    char *format = NULL;
    if ((rc = h5in_attr_str(h, h->file, "/", "format", &format)) != SDS_OK) goto fail;
    bool ours = strcmp(format, SDS_H5OUT_FORMAT) == 0;
    if (!ours)
        rc = sds_error_set(SDS_ERR_INPUT, "%s: not an sds-mpi prune file (format \"%s\")", path,
                           format);
    free(format);
    if (rc != SDS_OK) goto fail;
    int version = 0;
    if ((rc = h5in_attr_num(h, h->file, "/", "format_version", H5T_NATIVE_INT, &version)) != SDS_OK)
        goto fail;
    if (version < 1 || version > SDS_H5OUT_FORMAT_VERSION) {
        rc = sds_error_set(SDS_ERR_INPUT,
                           "%s: %s format version %d, this build reads versions 1 to %d", path,
                           SDS_H5OUT_FORMAT, version, SDS_H5OUT_FORMAT_VERSION);
        goto fail;
    }
    h->version = version;

    if (H5Lexists(h->file, "weights", H5P_DEFAULT) <= 0 ||
        H5Lexists(h->file, "masks", H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        rc = sds_error_set(SDS_ERR_INPUT, "%s: missing group /weights or /masks", path);
        goto fail;
    }
    h->g_weights = H5Gopen2(h->file, "weights", H5P_DEFAULT);
    h->g_masks = H5Gopen2(h->file, "masks", H5P_DEFAULT);
    if (h->g_weights < 0 || h->g_masks < 0) {
        rc = sds_error_set(SDS_ERR_INPUT, "%s: cannot open group /weights or /masks: %s", path,
                           h5in_detail(detail));
        goto fail;
    }
    if ((rc = h5in_list(h)) != SDS_OK) goto fail;
    if ((rc = h5in_read_config(h)) != SDS_OK) goto fail;
    if (H5Aexists(h->file, "fingerprint") > 0) {
        if ((rc = h5in_attr_str(h, h->file, "/", "fingerprint", &h->fingerprint)) != SDS_OK)
            goto fail;
    } else {
        H5Eclear2(H5E_DEFAULT);
        h->fingerprint = strdup("");
        if (!h->fingerprint) {
            rc = sds_error_set(SDS_ERR_IO, "out of memory");
            goto fail;
        }
    }
    *out = h;
    return SDS_OK;

fail:
    sds_h5in_close(h);
    return rc;
}

void sds_h5in_close(sds_h5in *h) {
    if (!h) return;
    if (h->g_weights >= 0) H5Gclose(h->g_weights);
    if (h->g_masks >= 0) H5Gclose(h->g_masks);
    if (h->file >= 0) H5Fclose(h->file);
    for (int64_t i = 0; i < h->n_names; i++) free(h->names[i]);
    free(h->names);
    free(h->config);
    free(h->fingerprint);
    free(h->path);
    free(h);
}

int32_t sds_h5in_format_version(const sds_h5in *h) {
    return h->version;
}

int64_t sds_h5in_count(const sds_h5in *h) {
    return h->n_names;
}

const char *sds_h5in_name(const sds_h5in *h, int64_t i) {
    SDS_ASSERT(i >= 0 && i < h->n_names);
    return h->names[i];
}

const char *sds_h5in_config(const sds_h5in *h) {
    return h->config;
}

const char *sds_h5in_fingerprint(const sds_h5in *h) {
    return h->fingerprint;
}

// Opens /GROUP/NAME after checking it exists; its dataspace must be 2-D (shape in dims).
static int h5in_open_2d(const sds_h5in *h, hid_t g, const char *group, const char *name, hid_t *d,
                        hsize_t dims[2]) {
    *d = -1;
    char detail[256];
    htri_t exists = name[0] && !strchr(name, '/') ? H5Lexists(g, name, H5P_DEFAULT) : 0;
    if (exists <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return sds_error_set(SDS_ERR_INPUT, "%s: no sublayer %s (dataset /%s/%s missing)", h->path,
                             name, group, name);
    }
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0)
        return sds_error_set(SDS_ERR_INPUT, "%s: cannot open dataset /%s/%s: %s", h->path, group,
                             name, h5in_detail(detail));
    hid_t space = H5Dget_space(ds);
    int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    hsize_t got[H5S_MAX_RANK];
    if (nd >= 0) H5Sget_simple_extent_dims(space, got, NULL);
    if (space >= 0) H5Sclose(space);
    if (nd != 2) {
        H5Dclose(ds);
        return sds_error_set(SDS_ERR_INPUT, "%s: dataset /%s/%s has %d dimensions, expected 2",
                             h->path, group, name, nd);
    }
    dims[0] = got[0];
    dims[1] = got[1];
    *d = ds;
    return SDS_OK;
}

int sds_h5in_shape(const sds_h5in *h, const char *name, int64_t *rows, int64_t *cols) {
    hid_t d;
    hsize_t dims[2];
    SDS_TRY(h5in_open_2d(h, h->g_weights, "weights", name, &d, dims));
    H5Dclose(d);
    *rows = (int64_t)dims[0];
    *cols = (int64_t)dims[1];
    return SDS_OK;
}

// Reads dataset /GROUP/NAME of shape [rows, cols] and type class cls into dst as memtype.
static int h5in_read_2d(const sds_h5in *h, hid_t g, const char *group, const char *name,
                        int64_t rows, int64_t cols, H5T_class_t cls, hid_t memtype, void *dst) {
    hid_t d;
    hsize_t dims[2];
    SDS_TRY(h5in_open_2d(h, g, group, name, &d, dims));
    char detail[256];
    int rc = SDS_OK;
    hid_t type = H5Dget_type(d);
    if ((int64_t)dims[0] != rows || (int64_t)dims[1] != cols)
        rc = sds_error_set(SDS_ERR_INPUT,
                           "%s: dataset /%s/%s has shape [%lld, %lld], expected [%lld, %lld]",
                           h->path, group, name, (long long)dims[0], (long long)dims[1],
                           (long long)rows, (long long)cols);
    else if (type < 0 || H5Tget_class(type) != cls)
        rc = sds_error_set(SDS_ERR_INPUT, "%s: dataset /%s/%s has type class %d, expected %s",
                           h->path, group, name, type < 0 ? -1 : (int)H5Tget_class(type),
                           cls == H5T_FLOAT ? "float" : "integer");
    else if (H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        rc = sds_error_set(SDS_ERR_IO, "%s: reading dataset /%s/%s: %s", h->path, group, name,
                           h5in_detail(detail));
    if (type >= 0) H5Tclose(type);
    H5Dclose(d);
    return rc;
}

int sds_h5in_read_weights(const sds_h5in *h, const char *name, int64_t rows, int64_t cols,
                          float *dst) {
    SDS_TRY(h5in_read_2d(h, h->g_weights, "weights", name, rows, cols, H5T_FLOAT, H5T_NATIVE_FLOAT,
                         dst));
    int64_t n = rows * cols;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(dst[i]))
            return sds_error_set(SDS_ERR_INPUT, "%s: dataset /weights/%s holds %s at index %lld",
                                 h->path, name, isnan(dst[i]) ? "NaN" : "Inf", (long long)i);
    }
    return SDS_OK;
}

int sds_h5in_read_mask(const sds_h5in *h, const char *name, int64_t rows, int64_t cols,
                       uint8_t *dst) {
    SDS_TRY(
        h5in_read_2d(h, h->g_masks, "masks", name, rows, cols, H5T_INTEGER, H5T_NATIVE_UINT8, dst));
    int64_t n = rows * cols;
    for (int64_t i = 0; i < n; i++) {
        if (dst[i] > 1)
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: dataset /masks/%s holds %u at index %lld, expected 0 or 1",
                                 h->path, name, (unsigned)dst[i], (long long)i);
    }
    return SDS_OK;
}

typedef struct {
    const sds_h5in *h;
    const char *where;
    sds_h5out_stats *st;
    int rc;
} h5in_extra_ctx;

static herr_t h5in_extra_cb(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    h5in_extra_ctx *c = data;
    for (size_t k = 0; k < sizeof h5in_fixed_attrs / sizeof h5in_fixed_attrs[0]; k++)
        if (strcmp(name, h5in_fixed_attrs[k]) == 0) return 0;
    sds_h5out_stats *st = c->st;
    if (st->n_extra == SDS_H5OUT_MAX_EXTRA || strlen(name) >= SDS_H5OUT_NAME_LEN) {
        c->rc =
            sds_error_set(SDS_ERR_INPUT,
                          "%s: %s has more than %d extra statistics, or a name longer than "
                          "%d bytes (%s)",
                          c->h->path, c->where, SDS_H5OUT_MAX_EXTRA, SDS_H5OUT_NAME_LEN - 1, name);
        return 1;
    }
    c->rc = h5in_attr_num(c->h, obj, c->where, name, H5T_NATIVE_DOUBLE, &st->extra[st->n_extra]);
    if (c->rc != SDS_OK) return 1;
    snprintf(st->extra_name[st->n_extra], SDS_H5OUT_NAME_LEN, "%s", name);
    st->n_extra++;
    return 0;
}

int sds_h5in_read_stats(const sds_h5in *h, const char *name, sds_h5out_stats *st) {
    memset(st, 0, sizeof *st);
    hid_t d;
    hsize_t dims[2];
    SDS_TRY(h5in_open_2d(h, h->g_weights, "weights", name, &d, dims));
    char where[256 + SDS_H5OUT_NAME_LEN];
    snprintf(where, sizeof where, "/weights/%s", name);
    int rc = h5in_attr_num(h, d, where, "layer", H5T_NATIVE_INT32, &st->layer);
    char *s = NULL;
    if (rc == SDS_OK && (rc = h5in_attr_str(h, d, where, "method", &s)) == SDS_OK)
        snprintf(st->method, sizeof st->method, "%s", s);
    free(s);
    s = NULL;
    if (rc == SDS_OK && (rc = h5in_attr_str(h, d, where, "pattern", &s)) == SDS_OK)
        snprintf(st->pattern, sizeof st->pattern, "%s", s);
    free(s);
    struct {
        const char *name;
        double *dst;
    } nums[] = {{"sparsity", &st->sparsity},
                {"rel_err_first", &st->rel_err_first},
                {"rel_err_final", &st->rel_err_final},
                {"damping", &st->damping},
                {"seconds", &st->seconds}};
    for (size_t i = 0; rc == SDS_OK && i < sizeof nums / sizeof nums[0]; i++)
        rc = h5in_attr_num(h, d, where, nums[i].name, H5T_NATIVE_DOUBLE, nums[i].dst);
    if (rc == SDS_OK) {
        h5in_extra_ctx c = {h, where, st, SDS_OK};
        hsize_t idx = 0;
        herr_t it = H5Aiterate2(d, H5_INDEX_NAME, H5_ITER_INC, &idx, h5in_extra_cb, &c);
        char detail[256];
        if (c.rc != SDS_OK)
            rc = c.rc;
        else if (it < 0)
            rc = sds_error_set(SDS_ERR_IO, "%s: listing the attributes of %s: %s", h->path, where,
                               h5in_detail(detail));
    }
    H5Dclose(d);
    return rc;
}

// The pruning output file: created and described with parallel HDF5 (MPI-IO driver; metadata
// read collectively and written by rank 0), filled by every rank with its own rows.
//
// How failures stay clean. Every HDF5 call here is made by all ranks, and after each one the
// ranks agree on its status, so a failure on one rank never leaves the others waiting in the
// next collective call. What HDF5 1.10 and the MPI-IO layers do on a failed write decided the
// rest (each seen on a full file system, see tests/test_h5out.py):
//   - Open MPI 4.1's OMPIO collective writes report success after a failed write, so a
//     collective H5Dwrite on a full disk "succeeds" and a corrupt file would be committed.
//   - With ROMIO a failed independent H5Dwrite is reported, but the next collective HDF5 call
//     (the metadata flush in H5Fclose) hangs; so does a metadata write that fails on one rank
//     while HDF5 spreads metadata writes over the ranks.
//   - An H5Fclose that fails leaves a dangling file ID that crashes at MPI_Finalize.
// So HDF5 allocates each dataset (contiguous, at creation) and each rank writes its rows with
// pwrite at the dataset's file offset: one contiguous range per rank, which is what an
// independent MPI-IO write would issue, and whose errors come back exactly. HDF5 keeps only the
// metadata, written by rank 0 when the file is closed; for that write to find room even on a
// full disk or quota, rank 0 holds a reserve file (TMP.reserve) sized for the metadata and
// removes it just before H5Fclose (on the failure path it also truncates the temporary file to
// nothing first). On the commit path every rank syncs its writes and rank 0 reads the closed
// file back with the reader (io/h5in.h), which catches a metadata write lost without a word.
// What remains: an I/O error on rank 0 itself that freeing space cannot cure (EIO, a file
// size limit) during that final metadata write can still hang or crash inside HDF5.
#define _POSIX_C_SOURCE 200809L
#include "h5out.h"
#include "h5in.h"
#include "sds_error.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Disk space held back for HDF5's metadata: a base, and more per sublayer (a sublayer's two
// object headers, statistics and links take about 2 KiB).
#define H5OUT_RESERVE_BASE         (256 * 1024)
#define H5OUT_RESERVE_PER_SUBLAYER (8 * 1024)

// The datasets are little-endian and the rows are written as they are in memory.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "io/h5out.c writes float32 and uint8 rows as in memory: little-endian hosts only"
#endif

typedef struct {
    char *name;
    int64_t rows, cols;
} h5out_entry;

struct sds_h5out {
    MPI_Comm comm; // private duplicate, so our agreements never match a caller's messages
    int rank, size;
    char *path;    // the final name
    char *tmp;     // PATH.tmp.<id>, where everything is written
    bool created;  // (rank 0) this process created tmp, so it may remove it
    int fd;        // tmp opened for writing rows (every rank)
    char *reserve; // (rank 0) TMP.reserve, space kept for the metadata; NULL once released
    off_t reserved;
    hid_t file, g_weights, g_masks;
    bool has_config, has_fingerprint;
    int64_t n_entries, cap_entries;
    h5out_entry *entries; // (rank 0) what was written, to check the file read back
    int failed; // agreed code of the first failure (the same on every rank), SDS_OK if none
};

// Names of the fixed statistics attributes; extras must not reuse them.
static const char *const h5out_fixed_attrs[] = {"layer",    "method",        "pattern",
                                                "sparsity", "rel_err_first", "rel_err_final",
                                                "damping",  "seconds"};

// The innermost (most specific) entries of HDF5's error stack, which say what the operating
// system or MPI-IO refused, with line breaks flattened.
typedef struct {
    char *buf;
    size_t cap;
    int taken;
} h5out_detail;

static herr_t h5out_detail_cb(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    h5out_detail *d = data;
    if (d->taken >= 2 || !e->desc || !e->desc[0]) return 0;
    size_t used = strlen(d->buf);
    snprintf(d->buf + used, d->cap - used, "%s%s", d->taken ? "; " : "", e->desc);
    for (char *c = d->buf + used; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    d->taken++;
    return 0;
}

// Every HDF5 API call clears the error stack on entry, so the cause of a failure is noted
// right after the failing call, before any cleanup call erases it.
static char g_h5out_detail[512];

static void h5out_note(void) {
    if (g_h5out_detail[0]) return;
    h5out_detail d = {g_h5out_detail, sizeof g_h5out_detail, 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5out_detail_cb, &d);
    H5Eclear2(H5E_DEFAULT);
}

// Records an I/O failure on this rank: "PATH: WHAT: detail from HDF5".
static int h5out_fail(const sds_h5out *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int h5out_fail(const sds_h5out *h, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    h5out_note();
    int code = sds_error_set(SDS_ERR_IO, "%s: %s: %s", h->path, what,
                             g_h5out_detail[0] ? g_h5out_detail : "HDF5 error");
    g_h5out_detail[0] = '\0';
    return code;
}

// (collective) Every rank learns the code of the lowest-numbered failing rank, and ranks that
// did not fail record that rank's message, so whichever rank prints, it prints the cause.
static int h5out_agree(MPI_Comm comm, int rank, int local) {
    int mine = local != SDS_OK ? rank : INT_MAX, first = INT_MAX;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == INT_MAX) return SDS_OK;
    struct {
        int code;
        char msg[1024];
    } pkt;
    memset(&pkt, 0, sizeof pkt);
    if (rank == first) {
        pkt.code = local;
        snprintf(pkt.msg, sizeof pkt.msg, "%s",
                 sds_error_message()[0] ? sds_error_message() : "unspecified failure");
    }
    MPI_Bcast(&pkt, (int)sizeof pkt, MPI_BYTE, first, comm);
    if (local == SDS_OK) sds_error_set(pkt.code, "%s (on rank %d)", pkt.msg, first);
    return pkt.code;
}

// (collective) Agrees on one step; a failure makes the handle failed for good.
static int h5out_step(sds_h5out *h, int local) {
    int code = h5out_agree(h->comm, h->rank, local);
    if (code != SDS_OK && h->failed == SDS_OK) h->failed = code;
    return code;
}

// (collective) Rank 0's copy of `len` bytes (NUL-terminated, malloc'ed) in *copy, and whether
// this rank's bytes equal it. Returns SDS_OK or SDS_ERR_IO (allocation, not agreed).
static int h5out_bcast_bytes(MPI_Comm comm, int rank, const void *mine, size_t len, char **copy,
                             bool *same) {
    uint64_t n = len;
    MPI_Bcast(&n, 1, MPI_UINT64_T, 0, comm);
    char *buf = malloc(n + 1);
    int ok = buf != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
    if (!all_ok) {
        free(buf);
        return ok ? sds_error_set(SDS_ERR_IO, "out of memory on another rank")
                  : sds_error_set(SDS_ERR_IO, "out of memory (%llu bytes)",
                                  (unsigned long long)n + 1);
    }
    if (rank == 0) memcpy(buf, mine, n);
    // MPI counts are int: large texts go in pieces
    for (uint64_t off = 0; off < n; off += (uint64_t)1 << 30) {
        uint64_t piece = n - off < ((uint64_t)1 << 30) ? n - off : (uint64_t)1 << 30;
        MPI_Bcast(buf + off, (int)piece, MPI_BYTE, 0, comm);
    }
    buf[n] = '\0';
    *same = n == len && memcmp(buf, mine, len) == 0;
    *copy = buf;
    return SDS_OK;
}

static bool h5out_name_ok(const char *name) {
    return name && name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

// Attribute writers (collective; every rank passes the same value).
static herr_t h5out_attr_write(hid_t obj, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space < 0 ? -1 : H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, type, value);
    if (rc < 0) h5out_note();
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    if (space >= 0) H5Sclose(space);
    return rc;
}

static herr_t h5out_attr_str(hid_t obj, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0) return -1;
    herr_t rc = H5Tset_size(type, strlen(value) + 1);
    if (rc >= 0) rc = H5Tset_strpad(type, H5T_STR_NULLTERM);
    if (rc >= 0) rc = h5out_attr_write(obj, name, type, value);
    H5Tclose(type);
    return rc;
}

static herr_t h5out_attr_double(hid_t obj, const char *name, double value) {
    return h5out_attr_write(obj, name, H5T_NATIVE_DOUBLE, &value);
}

// Creation properties shared by every object: no modification times, so that files written
// with different rank counts (or at different times) are byte-identical.
static hid_t h5out_plist(hid_t cls) {
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0) {
        H5Pclose(p);
        return -1;
    }
    return p;
}

static hid_t h5out_group(hid_t file, const char *name) {
    hid_t gcpl = h5out_plist(H5P_GROUP_CREATE);
    if (gcpl < 0) return -1;
    hid_t g = -1;
    // creation order lets the reader list sublayers in the order they were written
    if (H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) >= 0)
        g = H5Gcreate2(file, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g < 0) h5out_note();
    H5Pclose(gcpl);
    return g;
}

// Contiguous, allocated at creation (so its file offset is known before any rank writes),
// never filled: every byte is written by some rank.
static hid_t h5out_dataset(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *dims) {
    hid_t dcpl = h5out_plist(H5P_DATASET_CREATE);
    if (dcpl < 0) return -1;
    hid_t space = -1, d = -1;
    if (H5Pset_layout(dcpl, H5D_CONTIGUOUS) >= 0 &&
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0 &&
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0) {
        space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
        if (space >= 0) d = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0) h5out_note();
    }
    if (space >= 0) H5Sclose(space);
    H5Pclose(dcpl);
    return d;
}

// Writes rows [row0, row0 + nrows) (local) of dataset d, whose rows are row_bytes long, from
// buf: one pwrite range at the dataset's file offset.
static int h5out_put_rows(const sds_h5out *h, hid_t d, const char *what, int64_t row0,
                          int64_t nrows, size_t row_bytes, const void *buf) {
    haddr_t base = H5Dget_offset(d);
    if (base == HADDR_UNDEF) return h5out_fail(h, "locating %s in the file", what);
    const char *p = buf;
    size_t left = (size_t)nrows * row_bytes;
    off_t off = (off_t)(base + (haddr_t)row0 * row_bytes);
    while (left > 0) {
        size_t piece = left < ((size_t)1 << 30) ? left : (size_t)1 << 30;
        ssize_t n = pwrite(h->fd, p, piece, off);
        if (sds_test_fail("write", h->rank)) { // test hook: a failing disk on this rank
            n = -1;
            errno = EIO;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return sds_error_set(SDS_ERR_IO, "%s: writing rows %lld..%lld of %s: %s", h->path,
                                 (long long)row0, (long long)(row0 + nrows), what,
                                 n < 0 ? strerror(errno) : "nothing written");
        p += n;
        off += n;
        left -= (size_t)n;
    }
    return SDS_OK;
}

// (rank 0) Grows the reserve file to `bytes`; a full disk or quota shows up here, cleanly.
static int h5out_reserve(sds_h5out *h, off_t bytes) {
    if (h->rank != 0 || !h->reserve || bytes <= h->reserved) return SDS_OK;
    int fd = open(h->reserve, O_WRONLY | O_CREAT, 0666);
    int rc = fd < 0 ? errno : posix_fallocate(fd, h->reserved, bytes - h->reserved);
    if (fd >= 0) close(fd);
    if (rc != 0)
        return sds_error_set(SDS_ERR_IO, "%s: reserving %lld bytes for the file's metadata: %s",
                             h->path, (long long)bytes, strerror(rc));
    h->reserved = bytes;
    return SDS_OK;
}

// (rank 0) Gives the reserved space back, for HDF5's metadata to use.
static void h5out_release(sds_h5out *h) {
    if (h->reserve) unlink(h->reserve);
    free(h->reserve);
    h->reserve = NULL;
}

static void h5out_free(sds_h5out *h) {
    h5out_release(h);
    if (h->fd >= 0) close(h->fd);
    if (h->comm != MPI_COMM_NULL) MPI_Comm_free(&h->comm);
    for (int64_t i = 0; i < h->n_entries; i++) free(h->entries[i].name);
    free(h->entries);
    free(h->path);
    free(h->tmp);
    free(h);
}

// (collective) Closes every HDF5 object. Rank 0 first releases the reserve, and on the failure
// path (keep = false) truncates the temporary file to nothing, so that the metadata HDF5
// flushes now finds room even on a full disk. Returns the agreed code of the close.
static int h5out_close_file(sds_h5out *h, bool keep) {
    h5out_release(h);
    if (!keep && h->rank == 0 && h->fd >= 0 && ftruncate(h->fd, 0) != 0) {
        // nothing more to do: the file is removed next
    }
    MPI_Barrier(h->comm);
    if (h->g_weights >= 0) H5Gclose(h->g_weights);
    if (h->g_masks >= 0) H5Gclose(h->g_masks);
    h->g_weights = h->g_masks = -1;
    int local = SDS_OK;
    if (h->file >= 0 && H5Fclose(h->file) < 0) local = h5out_fail(h, "closing the file");
    h->file = -1;
    return h5out_agree(h->comm, h->rank, local);
}

// (collective) Rank 0 removes the temporary file it created; the barrier makes sure it is gone
// when any rank returns.
static void h5out_discard(sds_h5out *h) {
    if (h->rank == 0 && h->created) unlink(h->tmp);
    h->created = false;
    MPI_Barrier(h->comm);
}

int sds_h5out_create(MPI_Comm comm, const char *path, sds_h5out **out) {
    *out = NULL;
    int rank;
    MPI_Comm_rank(comm, &rank);
    // our messages replace HDF5's stack dumps
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    sds_h5out *h = sds_calloc(1, sizeof *h, "the HDF5 output handle");
    int code = h5out_agree(comm, rank, h ? SDS_OK : SDS_ERR_IO);
    if (code != SDS_OK) {
        free(h);
        return code;
    }
    h->file = h->g_weights = h->g_masks = -1;
    h->fd = -1;
    h->failed = SDS_OK;
    MPI_Comm_dup(comm, &h->comm);
    h->rank = rank;
    MPI_Comm_size(h->comm, &h->size);

    // The same path everywhere (a mismatch would make ranks write different files).
    bool same = false;
    char *path0 = NULL;
    int local = h5out_bcast_bytes(h->comm, h->rank, path, strlen(path), &path0, &same);
    if (local == SDS_OK && !same)
        local = sds_error_set(SDS_ERR_INTERNAL, "output path differs across ranks: %s vs %s", path,
                              path0);
    if (local == SDS_OK && (!path0[0] || strlen(path0) >= PATH_MAX))
        local = sds_error_set(SDS_ERR_USAGE, "output file name empty or too long: \"%s\"", path0);
    h->path = path0;
    if ((code = h5out_agree(h->comm, h->rank, local)) != SDS_OK) goto fail;

    // Rank 0 names the temporary file and creates it exclusively: a clear error for a missing
    // or unwritable directory, and a file we know is ours to remove.
    char tmp[PATH_MAX + 64];
    if (h->rank == 0) {
        const char *job = getenv("SLURM_JOB_ID");
        if (!job || !job[0]) job = getenv("PBS_JOBID");
        if (job && job[0] && strlen(job) < 32 && !strchr(job, '/'))
            snprintf(tmp, sizeof tmp, "%s.tmp.%s.%ld", path, job, (long)getpid());
        else
            snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    }
    MPI_Bcast(tmp, (int)sizeof tmp, MPI_CHAR, 0, h->comm);
    h->tmp = strdup(tmp);
    local = h->tmp ? SDS_OK : sds_error_set(SDS_ERR_IO, "out of memory");
    if (local == SDS_OK && h->rank == 0) {
        h->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (h->fd < 0)
            local = sds_error_set(SDS_ERR_IO, "%s: cannot create the output file (as %s): %s",
                                  h->path, tmp, strerror(errno));
        h->created = h->fd >= 0;
        size_t n = strlen(tmp) + sizeof ".reserve";
        h->reserve = h->fd >= 0 ? malloc(n) : NULL;
        if (h->reserve) snprintf(h->reserve, n, "%s.reserve", tmp);
        if (local == SDS_OK && !h->reserve) local = sds_error_set(SDS_ERR_IO, "out of memory");
        if (local == SDS_OK) local = h5out_reserve(h, H5OUT_RESERVE_BASE);
    }
    if ((code = h5out_agree(h->comm, h->rank, local)) != SDS_OK) goto fail;
    if (h->rank != 0) {
        h->fd = open(tmp, O_WRONLY);
        if (h->fd < 0)
            local = sds_error_set(SDS_ERR_IO, "%s: cannot open %s for writing: %s", h->path, tmp,
                                  strerror(errno));
    }
    if ((code = h5out_agree(h->comm, h->rank, local)) != SDS_OK) goto fail;

    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = h5out_plist(H5P_FILE_CREATE);
    herr_t prc = fapl < 0 || fcpl < 0 ? -1 : H5Pset_fapl_mpio(fapl, h->comm, MPI_INFO_NULL);
    // Metadata is read collectively (one rank reads, all receive) and written by rank 0 alone:
    // with writes spread over the ranks, one rank's I/O fault inside HDF5's flush could hang
    // the others, and the metadata is a few KiB per sublayer.
    if (prc >= 0) prc = H5Pset_all_coll_metadata_ops(fapl, 1);
    if (prc >= 0) prc = H5Pset_coll_metadata_write(fapl, 0);
    H5AC_cache_config_t mdc;
    memset(&mdc, 0, sizeof mdc);
    mdc.version = H5AC__CURR_CACHE_CONFIG_VERSION;
    if (prc >= 0) prc = H5Pget_mdc_config(fapl, &mdc);
    mdc.metadata_write_strategy = H5AC_METADATA_WRITE_STRATEGY__PROCESS_0_ONLY;
    if (prc >= 0) prc = H5Pset_mdc_config(fapl, &mdc);
    if (prc >= 0) h->file = H5Fcreate(h->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    local = h->file >= 0 ? SDS_OK : h5out_fail(h, "creating HDF5 file %s", h->tmp);
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if ((code = h5out_step(h, local)) != SDS_OK) goto fail;

    h->g_weights = h5out_group(h->file, "weights");
    local = h->g_weights >= 0 ? SDS_OK : h5out_fail(h, "creating group /weights");
    if ((code = h5out_step(h, local)) != SDS_OK) goto fail;
    h->g_masks = h5out_group(h->file, "masks");
    local = h->g_masks >= 0 ? SDS_OK : h5out_fail(h, "creating group /masks");
    if ((code = h5out_step(h, local)) != SDS_OK) goto fail;

    int32_t version = SDS_H5OUT_FORMAT_VERSION;
    local = h5out_attr_str(h->file, "format", SDS_H5OUT_FORMAT) < 0
                ? h5out_fail(h, "writing attribute /format")
                : SDS_OK;
    if ((code = h5out_step(h, local)) != SDS_OK) goto fail;
    local = h5out_attr_write(h->file, "format_version", H5T_STD_I32LE, &version) < 0
                ? h5out_fail(h, "writing attribute /format_version")
                : SDS_OK;
    if ((code = h5out_step(h, local)) != SDS_OK) goto fail;
    *out = h;
    return SDS_OK;

fail:
    h5out_close_file(h, false);
    h5out_discard(h);
    h5out_free(h);
    return code;
}

// (local) Checks rank 0's statistics (the ones written).
static int h5out_stats_check(const sds_h5out *h, const char *name, sds_h5out_stats *st) {
    st->method[SDS_H5OUT_NAME_LEN - 1] = '\0';
    st->pattern[SDS_H5OUT_NAME_LEN - 1] = '\0';
    if (st->n_extra < 0 || st->n_extra > SDS_H5OUT_MAX_EXTRA)
        return sds_error_set(SDS_ERR_INTERNAL, "%s: sublayer %s: %d extra statistics (at most %d)",
                             h->path, name, st->n_extra, SDS_H5OUT_MAX_EXTRA);
    for (int32_t i = 0; i < st->n_extra; i++) {
        char *e = st->extra_name[i];
        e[SDS_H5OUT_NAME_LEN - 1] = '\0';
        bool ok = h5out_name_ok(e);
        for (size_t k = 0; k < sizeof h5out_fixed_attrs / sizeof h5out_fixed_attrs[0]; k++)
            if (strcmp(e, h5out_fixed_attrs[k]) == 0) ok = false;
        for (int32_t j = 0; j < i; j++)
            if (strcmp(e, st->extra_name[j]) == 0) ok = false;
        if (!ok)
            return sds_error_set(SDS_ERR_INTERNAL,
                                 "%s: sublayer %s: invalid or repeated statistic name \"%s\"",
                                 h->path, name, e);
    }
    return SDS_OK;
}

static int h5out_cmp_range(const void *a, const void *b) {
    const int64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

// (collective) Checks that name and shape agree across ranks and that the row ranges tile
// [0, rows). Returns the agreed code.
static int h5out_sublayer_check(sds_h5out *h, const char *name, int64_t rows, int64_t cols,
                                int64_t row0, int64_t rows_local) {
    char *name0 = NULL;
    bool same = false;
    int local = h5out_bcast_bytes(h->comm, h->rank, name, strlen(name), &name0, &same);
    int64_t shape[2] = {rows, cols};
    MPI_Bcast(shape, 2, MPI_INT64_T, 0, h->comm);
    if (local == SDS_OK && (!same || shape[0] != rows || shape[1] != cols))
        local = sds_error_set(SDS_ERR_INTERNAL,
                              "%s: sublayer %s [%lld, %lld] on rank %d is %s [%lld, %lld] on rank "
                              "0",
                              h->path, name, (long long)rows, (long long)cols, h->rank, name0,
                              (long long)shape[0], (long long)shape[1]);
    if (local == SDS_OK && (!h5out_name_ok(name) || rows <= 0 || cols <= 0))
        local = sds_error_set(SDS_ERR_INTERNAL,
                              "%s: invalid sublayer name or shape: \"%s\" [%lld, %lld]", h->path,
                              name, (long long)rows, (long long)cols);
    free(name0);
    int code = h5out_agree(h->comm, h->rank, local);
    if (code != SDS_OK) return code;

    int64_t mine[2] = {row0, rows_local};
    int64_t *all = malloc(sizeof(int64_t) * 2 * (size_t)h->size);
    int ok = all != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, h->comm);
    if (!all_ok) {
        free(all);
        return h5out_agree(
            h->comm, h->rank,
            sds_error_set(SDS_ERR_IO, ok ? "out of memory on another rank" : "out of memory"));
    }
    MPI_Allgather(mine, 2, MPI_INT64_T, all, 2, MPI_INT64_T, h->comm);
    // every rank checks the same gathered ranges, so the verdict is the same everywhere
    qsort(all, (size_t)h->size, 2 * sizeof(int64_t), h5out_cmp_range);
    int64_t next = 0;
    bool tiled = true;
    for (int r = 0; r < h->size; r++) {
        int64_t b = all[2 * r], n = all[2 * r + 1];
        if (n < 0 || b < 0 || b > rows) tiled = false;
        if (n <= 0) continue;
        if (b != next) tiled = false;
        next = b + n;
    }
    if (next != rows) tiled = false;
    free(all);
    local = tiled ? SDS_OK
                  : sds_error_set(SDS_ERR_INTERNAL,
                                  "%s: sublayer %s: the ranks' row ranges do not tile [0, %lld) "
                                  "(rank %d has [%lld, %lld))",
                                  h->path, name, (long long)rows, h->rank, (long long)row0,
                                  (long long)(row0 + rows_local));
    return h5out_agree(h->comm, h->rank, local);
}

// Remembers a sublayer for the read-back check (rank 0 only).
static int h5out_remember(sds_h5out *h, const char *name, int64_t rows, int64_t cols) {
    if (h->rank != 0) return SDS_OK;
    if (h->n_entries == h->cap_entries) {
        int64_t cap = h->cap_entries ? 2 * h->cap_entries : 64;
        h5out_entry *e = realloc(h->entries, sizeof *e * (size_t)cap);
        if (!e) return sds_error_set(SDS_ERR_IO, "out of memory");
        h->entries = e;
        h->cap_entries = cap;
    }
    h5out_entry *e = &h->entries[h->n_entries];
    e->name = strdup(name);
    if (!e->name) return sds_error_set(SDS_ERR_IO, "out of memory");
    e->rows = rows;
    e->cols = cols;
    h->n_entries++;
    return SDS_OK;
}

int sds_h5out_sublayer(sds_h5out *h, const char *name, int64_t rows, int64_t cols, int64_t row0,
                       int64_t rows_local, const float *w_local, const uint8_t *mask_local,
                       const sds_h5out_stats *st) {
    SDS_ASSERT(h && name && st);
    SDS_ASSERT(rows_local <= 0 || (w_local && mask_local));
    if (h->failed != SDS_OK) return h->failed;
    int code = h5out_sublayer_check(h, name, rows, cols, row0, rows_local);
    if (code != SDS_OK) return h->failed = code;
    hid_t dw = -1, dm = -1;

    sds_h5out_stats s0 = *st;
    MPI_Bcast(&s0, (int)sizeof s0, MPI_BYTE, 0, h->comm);
    int local = h5out_stats_check(h, name, &s0);
    htri_t exists = local == SDS_OK ? H5Lexists(h->g_weights, name, H5P_DEFAULT) : 0;
    if (exists < 0)
        local = h5out_fail(h, "looking up /weights/%s", name);
    else if (exists > 0)
        local = sds_error_set(SDS_ERR_INTERNAL, "%s: sublayer %s written twice", h->path, name);
    if (local == SDS_OK) local = h5out_remember(h, name, rows, cols);
    if (local == SDS_OK)
        local =
            h5out_reserve(h, H5OUT_RESERVE_BASE + (off_t)h->n_entries * H5OUT_RESERVE_PER_SUBLAYER);
    if ((code = h5out_step(h, local)) != SDS_OK) return code;

    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    dw = h5out_dataset(h->g_weights, name, H5T_IEEE_F32LE, 2, dims);
    local = dw >= 0 ? SDS_OK : h5out_fail(h, "creating dataset /weights/%s", name);
    if ((code = h5out_step(h, local)) != SDS_OK) goto done;
    dm = h5out_dataset(h->g_masks, name, H5T_STD_U8LE, 2, dims);
    local = dm >= 0 ? SDS_OK : h5out_fail(h, "creating dataset /masks/%s", name);
    if ((code = h5out_step(h, local)) != SDS_OK) goto done;

    // Each rank's rows, straight to their place (see the top of the file).
    char what[64 + 256];
    snprintf(what, sizeof what, "dataset /weights/%s", name);
    local = rows_local > 0 ? h5out_put_rows(h, dw, what, row0, rows_local,
                                            (size_t)cols * sizeof(float), w_local)
                           : SDS_OK;
    snprintf(what, sizeof what, "dataset /masks/%s", name);
    if (local == SDS_OK && rows_local > 0)
        local = h5out_put_rows(h, dm, what, row0, rows_local, (size_t)cols, mask_local);
    if ((code = h5out_step(h, local)) != SDS_OK) goto done;

    // The statistics, one attribute each, so h5dump and h5py show them by name.
    int32_t layer = s0.layer;
    local = h5out_attr_write(dw, "layer", H5T_STD_I32LE, &layer) < 0 ||
                    h5out_attr_str(dw, "method", s0.method) < 0 ||
                    h5out_attr_str(dw, "pattern", s0.pattern) < 0 ||
                    h5out_attr_double(dw, "sparsity", s0.sparsity) < 0 ||
                    h5out_attr_double(dw, "rel_err_first", s0.rel_err_first) < 0 ||
                    h5out_attr_double(dw, "rel_err_final", s0.rel_err_final) < 0 ||
                    h5out_attr_double(dw, "damping", s0.damping) < 0 ||
                    h5out_attr_double(dw, "seconds", s0.seconds) < 0
                ? h5out_fail(h, "writing the statistics of /weights/%s", name)
                : SDS_OK;
    if ((code = h5out_step(h, local)) != SDS_OK) goto done;
    for (int32_t i = 0; i < s0.n_extra; i++) {
        local = h5out_attr_double(dw, s0.extra_name[i], s0.extra[i]) < 0
                    ? h5out_fail(h, "writing statistic %s of /weights/%s", s0.extra_name[i], name)
                    : SDS_OK;
        if ((code = h5out_step(h, local)) != SDS_OK) goto done;
    }

done:
    // closing a dataset is collective metadata work too
    local = SDS_OK;
    if (dw >= 0 && H5Dclose(dw) < 0) local = h5out_fail(h, "closing /weights/%s", name);
    if (dm >= 0 && H5Dclose(dm) < 0 && local == SDS_OK)
        local = h5out_fail(h, "closing /masks/%s", name);
    int closed = h5out_step(h, local);
    return code != SDS_OK ? code : closed;
}

int sds_h5out_set_config(sds_h5out *h, const char *json_text) {
    SDS_ASSERT(h && json_text);
    if (h->failed != SDS_OK) return h->failed;
    char *text0 = NULL;
    bool same;
    int local = h5out_bcast_bytes(h->comm, h->rank, json_text, strlen(json_text), &text0, &same);
    if (local == SDS_OK && h->has_config)
        local = sds_error_set(SDS_ERR_INTERNAL, "%s: configuration written twice", h->path);
    int code = h5out_step(h, local);
    if (code != SDS_OK) {
        free(text0);
        return code;
    }
    h->has_config = true;
    // a scalar fixed-length UTF-8 string (NUL included), written by rank 0
    size_t len = strlen(text0) + 1;
    hid_t type = H5Tcopy(H5T_C_S1), d = -1;
    herr_t rc = type < 0 ? -1 : H5Tset_size(type, len);
    if (rc >= 0) rc = H5Tset_strpad(type, H5T_STR_NULLTERM);
    if (rc >= 0) rc = H5Tset_cset(type, H5T_CSET_UTF8);
    if (rc >= 0) d = h5out_dataset(h->file, "config", type, 0, NULL);
    local = d >= 0 ? SDS_OK : h5out_fail(h, "creating dataset /config");
    code = h5out_step(h, local);
    if (code == SDS_OK) {
        local = h->rank == 0 ? h5out_put_rows(h, d, "dataset /config", 0, 1, len, text0) : SDS_OK;
        code = h5out_step(h, local);
    }
    local = d >= 0 && H5Dclose(d) < 0 ? h5out_fail(h, "closing dataset /config") : SDS_OK;
    int closed = h5out_step(h, local);
    if (type >= 0) H5Tclose(type);
    free(text0);
    return code != SDS_OK ? code : closed;
}

int sds_h5out_set_fingerprint(sds_h5out *h, const char *hex) {
    SDS_ASSERT(h && hex);
    if (h->failed != SDS_OK) return h->failed;
    char *hex0 = NULL;
    bool same;
    int local = h5out_bcast_bytes(h->comm, h->rank, hex, strlen(hex), &hex0, &same);
    if (local == SDS_OK && h->has_fingerprint)
        local = sds_error_set(SDS_ERR_INTERNAL, "%s: fingerprint written twice", h->path);
    int code = h5out_step(h, local);
    if (code == SDS_OK) {
        h->has_fingerprint = true;
        local = h5out_attr_str(h->file, "fingerprint", hex0) < 0
                    ? h5out_fail(h, "writing attribute /fingerprint")
                    : SDS_OK;
        code = h5out_step(h, local);
    }
    free(hex0);
    return code;
}

// Flushes this rank's writes to disk, so that an error the file system reports late (NFS,
// Lustre, quotas) still stops the commit.
static int h5out_sync(const sds_h5out *h) {
    if (h->fd < 0 || fsync(h->fd) == 0) return SDS_OK;
    return sds_error_set(SDS_ERR_IO, "%s: syncing %s to disk: %s", h->path, h->tmp,
                         strerror(errno));
}

// (rank 0) The closed file must read back with exactly the sublayers written, in order.
static int h5out_verify(const sds_h5out *h) {
    sds_h5in *in = NULL;
    int rc = sds_h5in_open(h->tmp, &in);
    bool ok = rc == SDS_OK && sds_h5in_count(in) == h->n_entries;
    char why[512] = "";
    if (rc != SDS_OK)
        snprintf(why, sizeof why, "%s", sds_error_message());
    else if (!ok)
        snprintf(why, sizeof why, "%lld sublayers instead of %lld", (long long)sds_h5in_count(in),
                 (long long)h->n_entries);
    for (int64_t i = 0; ok && i < h->n_entries; i++) {
        const h5out_entry *e = &h->entries[i];
        int64_t rows = -1, cols = -1;
        ok = strcmp(sds_h5in_name(in, i), e->name) == 0 &&
             sds_h5in_shape(in, e->name, &rows, &cols) == SDS_OK && rows == e->rows &&
             cols == e->cols;
        if (!ok) snprintf(why, sizeof why, "sublayer %s does not read back", e->name);
    }
    sds_h5in_close(in);
    if (ok) return SDS_OK;
    // the reader recorded its own (input) error: this is an output failure
    sds_error_clear();
    return sds_error_set(SDS_ERR_IO, "%s: the file written does not read back (%s)", h->path, why);
}

// (rank 0) Gives the checked temporary file its final name, durably.
static int h5out_rename(const sds_h5out *h) {
    if (rename(h->tmp, h->path) != 0)
        return sds_error_set(SDS_ERR_IO, "%s: renaming %s to it: %s", h->path, h->tmp,
                             strerror(errno));
    // the rename is durable once the directory is synced (best effort: some file systems
    // refuse to sync directories)
    char *dir = strdup(h->path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
        int dfd = open(d, O_RDONLY);
        if (dfd >= 0) {
            if (fsync(dfd) != 0) {
                // not fatal: the file itself is synced
            }
            close(dfd);
        }
        free(dir);
    }
    return SDS_OK;
}

int sds_h5out_close(sds_h5out *h, int commit) {
    if (!h) return SDS_OK;
    int mine = commit != 0, all_commit = 0;
    MPI_Allreduce(&mine, &all_commit, 1, MPI_INT, MPI_MIN, h->comm);
    int code = h->failed;
    // the rows are on disk before HDF5 writes the metadata that points at them
    if (code == SDS_OK && all_commit) code = h5out_step(h, h5out_sync(h));
    bool keep = code == SDS_OK && all_commit;
    int closed = h5out_close_file(h, keep);
    if (code == SDS_OK) code = closed;
    // the agreements double as barriers: every rank has closed before rank 0 checks and renames
    if (code == SDS_OK && all_commit)
        code = h5out_agree(h->comm, h->rank, h->rank == 0 ? h5out_sync(h) : SDS_OK);
    if (code == SDS_OK && all_commit)
        code = h5out_agree(h->comm, h->rank, h->rank == 0 ? h5out_verify(h) : SDS_OK);
    if (code == SDS_OK && all_commit) {
        int local = h->rank == 0 ? h5out_rename(h) : SDS_OK;
        if (local == SDS_OK) h->created = false; // it is PATH now
        code = h5out_agree(h->comm, h->rank, local);
    }
    if (code != SDS_OK || !all_commit) h5out_discard(h);
    if (code == SDS_OK && !all_commit)
        code = h5out_agree(h->comm, h->rank, commit ? SDS_OK : sds_error_code());
    h5out_free(h);
    return code;
}

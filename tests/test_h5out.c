// The HDF5 pruning output: written collectively, read back, every value checked.
//   mpirun -np N test_h5out write PATH   writes sublayers of several shapes (rows not divisible
//                                        by N, ranks with no rows, one sublayer stored in
//                                        reversed rank order), then every rank reads the file
//                                        back with the reader and checks it bit for bit; also
//                                        checks that misuse (row ranges that do not tile) is
//                                        agreed on every rank and leaves nothing behind.
//   mpirun -np 1 test_h5out reader DIR   the reader's errors on broken files written into DIR.
// Test-only hooks, read here and never by the library:
//   SDS_TEST_FAIL_WRITE_RANK=r   rank r records an injected write failure and passes
//                                commit = 0 to sds_h5out_close
//   SDS_TEST_FSIZE_LIMIT=B[:r]   every rank (or rank r only) limits the size of files it writes
//                                to B bytes (RLIMIT_FSIZE), so its writes past B fail (EFBIG)
// Exit code: 0 when every check passed, 1 when one failed, else the code the library agreed
// (every rank prints "rank R: code C: MESSAGE" to stderr for it).
#define _POSIX_C_SOURCE 200809L
#include "h5in.h"
#include "h5out.h"
#include "sds_error.h"

#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int g_rank, g_size, g_failures;

// Rank 0 prints; every rank counts its own failures (summed at the end).
static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
    if (!ok) g_failures++;
    if (g_rank != 0 && ok) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_rank == 0)
        printf("%s %s\n", ok ? "OK  " : "FAIL", buf);
    else
        printf("FAIL (rank %d) %s\n", g_rank, buf);
    fflush(stdout);
}

// The data: a hash of (sublayer, row, col), so any rank count writes the same file; test_h5out.py
// computes the same values with numpy.
static uint32_t mix(uint32_t x) {
    x ^= x >> 16;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    x *= 0xc2b2ae35u;
    x ^= x >> 16;
    return x;
}

static uint32_t cell(int32_t sub, int64_t r, int64_t c) {
    return mix((uint32_t)sub * 1000003u + (uint32_t)r * 7919u + (uint32_t)c);
}

static uint8_t cell_mask(int32_t sub, int64_t r, int64_t c) {
    return (uint8_t)((cell(sub, r, c) >> 24) & 1u);
}

// Pruned weights are zero; kept ones are exact multiples of 2^-16 in [-128, 128).
static float cell_weight(int32_t sub, int64_t r, int64_t c) {
    if (cell_mask(sub, r, c)) return 0.0f;
    return (float)((int32_t)(cell(sub, r, c) & 0xFFFFFFu) - 0x800000) / 65536.0f;
}

typedef struct {
    const char *name;
    int64_t rows, cols;
    bool reversed; // rank 0 holds the last block of rows
} sublayer;

static const sublayer g_subs[] = {
    {"model.decoder.layers.0.self_attn.q_proj", 7, 5, false},
    {"model.decoder.layers.0.fc1", 13, 3, false},
    {"model.decoder.layers.1.self_attn.k_proj", 3, 17, false}, // a rank with 0 rows at -np 4
    {"model.decoder.layers.1.fc2", 1, 9, false},               // only one rank has rows
    {"model.layers.2.mlp.down_proj", 64, 48, true},
    {"model.layers.2.mlp.up_proj", 130, 257, false},
};
#define N_SUBS ((int32_t)(sizeof g_subs / sizeof g_subs[0]))

static void block(int64_t rows, int part, int parts, int64_t *row0, int64_t *n) {
    int64_t base = rows / parts, extra = rows % parts;
    *n = base + (part < extra);
    *row0 = part * base + (part < extra ? part : extra);
}

// The statistics of sublayer i as rank 0 passes them; other ranks pass garbage, which the
// library must ignore.
static void stats_of(int32_t i, sds_h5out_stats *st) {
    memset(st, 0, sizeof *st);
    st->layer = i / 2;
    snprintf(st->method, sizeof st->method, "%s", i % 2 ? "sds" : "sparsegpt");
    snprintf(st->pattern, sizeof st->pattern, "%s", i % 3 ? "2:4" : "50%");
    int64_t pruned = 0;
    for (int64_t r = 0; r < g_subs[i].rows; r++)
        for (int64_t c = 0; c < g_subs[i].cols; c++) pruned += cell_mask(i, r, c);
    st->sparsity = (double)pruned / (double)(g_subs[i].rows * g_subs[i].cols);
    st->rel_err_first = 0.1 * (i + 1);
    st->rel_err_final = 0.05 * (i + 1) + 1e-17;
    st->damping = 0.01 * pow(10.0, i % 3);
    st->seconds = 1.5 * i;
    st->n_extra = i % 3;
    static const char *extra[] = {"rel_err_second", "sds_steps"};
    for (int32_t k = 0; k < st->n_extra; k++) {
        snprintf(st->extra_name[k], sizeof st->extra_name[k], "%s", extra[k]);
        st->extra[k] = (k + 1) * 1000.0 + i + 0.25;
    }
}

static char *config_text(void) {
    // longer than the 64 KiB an HDF5 attribute can hold in the default format
    const char *head =
        "{\"method\": \"sds\", \"sparsity\": \"2:4\", \"note\": \"\xc3\xbc\xc3\xb1\", "
        "\"pad\": \"";
    size_t pad = 100000, n = strlen(head);
    char *s = malloc(n + pad + 3);
    memcpy(s, head, n);
    for (size_t i = 0; i < pad; i++) s[n + i] = (char)('a' + i % 26);
    memcpy(s + n + pad, "\"}", 3);
    return s;
}

static const char *g_fingerprint =
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

// Prints this rank's view of a library failure and turns it into the exit code.
static int report(int code) {
    fprintf(stderr, "rank %d: code %d: %s\n", g_rank, code, sds_error_message());
    fflush(stderr);
    return code;
}

static int write_file(const char *path) {
    const char *fail_rank = getenv("SDS_TEST_FAIL_WRITE_RANK");
    const char *fsize = getenv("SDS_TEST_FSIZE_LIMIT");
    sds_h5out *h = NULL;
    int code = sds_h5out_create(MPI_COMM_WORLD, path, &h);
    if (code != SDS_OK) return report(code);
    // "BYTES" limits every rank, "BYTES:R" rank R only. Set once the file is open: the limit
    // covers every file of the process, and Open MPI's OMPIO deadlocks in MPI_File_open when
    // one rank cannot write its shared-file-pointer file.
    const char *colon = fsize ? strchr(fsize, ':') : NULL;
    if (fsize && fsize[0] && (!colon || atoi(colon + 1) == g_rank)) {
        // writes past the limit fail with EFBIG instead of raising a signal
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {(rlim_t)atoll(fsize), (rlim_t)atoll(fsize)};
        setrlimit(RLIMIT_FSIZE, &rl);
    }
    // every call is collective: the return codes must agree without further help
    char *config = config_text();
    code = sds_h5out_set_config(h, g_rank == 0 ? config : "{\"not\": \"rank 0\"}");
    free(config);
    if (code == SDS_OK) code = sds_h5out_set_fingerprint(h, g_rank == 0 ? g_fingerprint : "bad");
    for (int32_t i = 0; i < N_SUBS && code == SDS_OK; i++) {
        const sublayer *s = &g_subs[i];
        int64_t row0, n;
        block(s->rows, s->reversed ? g_size - 1 - g_rank : g_rank, g_size, &row0, &n);
        float *w = malloc(sizeof(float) * (size_t)(n * s->cols + 1));
        uint8_t *m = malloc((size_t)(n * s->cols + 1));
        for (int64_t r = 0; r < n; r++) {
            for (int64_t c = 0; c < s->cols; c++) {
                w[r * s->cols + c] = cell_weight(i, row0 + r, c);
                m[r * s->cols + c] = cell_mask(i, row0 + r, c);
            }
        }
        sds_h5out_stats st;
        stats_of(i, &st);
        if (g_rank != 0) {
            memset(&st, 0xff, sizeof st); // garbage: rank 0's figures are the ones written
            st.n_extra = 0;
        }
        code = sds_h5out_sublayer(h, s->name, s->rows, s->cols, row0, n, w, m, &st);
        free(w);
        free(m);
    }
    int commit = code == SDS_OK;
    if (fail_rank && fail_rank[0] && atoi(fail_rank) == g_rank) {
        sds_error_set(SDS_ERR_IO, "%s: injected write failure", path);
        commit = 0;
    }
    int closed = sds_h5out_close(h, commit);
    if (code == SDS_OK) code = closed;
    return code == SDS_OK ? SDS_OK : report(code);
}

static void read_back(const char *path) {
    sds_h5in *in = NULL;
    int rc = sds_h5in_open(path, &in);
    check(rc == SDS_OK, "open %s with the reader (%s)", path, sds_error_message());
    if (rc != SDS_OK) return;
    check(sds_h5in_format_version(in) == SDS_H5OUT_FORMAT_VERSION, "format version %d",
          sds_h5in_format_version(in));
    char *config = config_text();
    check(strcmp(sds_h5in_config(in), config) == 0, "configuration (%zu bytes)", strlen(config));
    free(config);
    check(strcmp(sds_h5in_fingerprint(in), g_fingerprint) == 0, "fingerprint");
    check(sds_h5in_count(in) == N_SUBS, "%lld sublayers", (long long)sds_h5in_count(in));
    for (int32_t i = 0; i < N_SUBS && i < sds_h5in_count(in); i++) {
        const sublayer *s = &g_subs[i];
        check(strcmp(sds_h5in_name(in, i), s->name) == 0, "sublayer %d is %s (in write order)", i,
              sds_h5in_name(in, i));
        int64_t rows = -1, cols = -1;
        rc = sds_h5in_shape(in, s->name, &rows, &cols);
        check(rc == SDS_OK && rows == s->rows && cols == s->cols, "%s shape [%lld, %lld]", s->name,
              (long long)rows, (long long)cols);
        size_t n = (size_t)(s->rows * s->cols);
        float *w = malloc(sizeof(float) * n);
        uint8_t *m = malloc(n);
        int rw = sds_h5in_read_weights(in, s->name, s->rows, s->cols, w);
        int rm = sds_h5in_read_mask(in, s->name, s->rows, s->cols, m);
        int64_t bad_w = 0, bad_m = 0;
        for (int64_t r = 0; r < s->rows; r++) {
            for (int64_t c = 0; c < s->cols; c++) {
                float want = cell_weight(i, r, c);
                // bit for bit: nothing converts on the way, so any difference is a bug
                if (memcmp(&w[r * s->cols + c], &want, sizeof want) != 0) bad_w++;
                if (m[r * s->cols + c] != cell_mask(i, r, c)) bad_m++;
            }
        }
        check(rw == SDS_OK && bad_w == 0, "%s weights bit-exact (%lld differ)", s->name,
              (long long)bad_w);
        check(rm == SDS_OK && bad_m == 0, "%s mask exact (%lld differ)", s->name, (long long)bad_m);
        free(w);
        free(m);

        sds_h5out_stats got, want;
        stats_of(i, &want);
        rc = sds_h5in_read_stats(in, s->name, &got);
        bool same = rc == SDS_OK && got.layer == want.layer &&
                    strcmp(got.method, want.method) == 0 &&
                    strcmp(got.pattern, want.pattern) == 0 && got.sparsity == want.sparsity &&
                    got.rel_err_first == want.rel_err_first &&
                    got.rel_err_final == want.rel_err_final && got.damping == want.damping &&
                    got.seconds == want.seconds && got.n_extra == want.n_extra;
        // extras come back in name order; ours are written in name order already
        for (int32_t k = 0; same && k < want.n_extra; k++)
            same =
                strcmp(got.extra_name[k], want.extra_name[k]) == 0 && got.extra[k] == want.extra[k];
        check(same, "%s statistics (rank 0's; sparsity %.6f, %d extras)", s->name, got.sparsity,
              got.n_extra);
    }
    sds_h5in_close(in);
}

// The same code on every rank, checked by an all-reduce of code and -code.
static bool same_everywhere(int code) {
    int codes[2] = {code, -code}, agreed[2];
    MPI_Allreduce(codes, agreed, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return agreed[0] == -agreed[1];
}

// Misuse is SDS_ERR_INTERNAL on every rank, later calls and the close return it too, and
// nothing is left at PATH or under a temporary name: row ranges that do not tile, and a
// sublayer written twice.
static void misuse(const char *path) {
    for (int twice = 0; twice < 2; twice++) {
        char bad[4096];
        snprintf(bad, sizeof bad, "%s.misuse%d.h5", path, twice);
        sds_h5out *h = NULL;
        int code = sds_h5out_create(MPI_COMM_WORLD, bad, &h);
        check(code == SDS_OK, "create %s", bad);
        if (code != SDS_OK) return;
        float w[4] = {0};
        uint8_t m[4] = {0};
        sds_h5out_stats st;
        stats_of(0, &st);
        const char *what;
        if (twice) {
            // rank 0 holds both rows of "x", the others none
            int64_t n = g_rank == 0 ? 2 : 0;
            code = sds_h5out_sublayer(h, "x", 2, 2, 0, n, w, m, &st);
            check(code == SDS_OK, "first write of sublayer x");
            code = sds_h5out_sublayer(h, "x", 2, 2, 0, n, w, m, &st);
            what = "a sublayer written twice";
        } else {
            // every rank claims row 0: overlapping (or, at one rank, short of 2 rows)
            code = sds_h5out_sublayer(h, "x", 2, 2, 0, 1, w, m, &st);
            what = "rows that do not tile";
        }
        check(code == SDS_ERR_INTERNAL && same_everywhere(code), "%s: code %d on every rank (%s)",
              what, code, sds_error_message());
        code = sds_h5out_set_fingerprint(h, "00");
        check(code == SDS_ERR_INTERNAL, "a failed handle keeps its code (%d)", code);
        code = sds_h5out_close(h, 1);
        check(code == SDS_ERR_INTERNAL, "close after the failure returns it (%d)", code);
        check(access(bad, F_OK) != 0, "nothing left at %s", bad);
        sds_error_clear();
    }
}

static int cmd_write(const char *path) {
    int code = write_file(path);
    if (code != SDS_OK) return code;
    MPI_Barrier(MPI_COMM_WORLD);
    read_back(path);
    misuse(path);
    int total = 0;
    MPI_Allreduce(&g_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0)
        printf("%s (%d ranks, %d failures)\n", total ? "FAILED" : "PASSED", g_size, total);
    return total ? 1 : 0;
}

// The reader's error, its code and the pieces of its message.
static void check_error(int rc, int code, const char *label, const char *n1, const char *n2) {
    const char *msg = sds_error_message();
    bool ok = rc == code && (!n1 || strstr(msg, n1)) && (!n2 || strstr(msg, n2));
    check(ok, "%s (rc %d, \"%s\")", label, rc, msg);
    sds_error_clear();
}

// A plain HDF5 file with a root attribute set or not, as another program would write it.
static void write_foreign(const char *path, const char *format, int version, bool with_groups) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t space = H5Screate(H5S_SCALAR);
    if (format) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, strlen(format) + 1);
        hid_t a = H5Acreate2(f, "format", t, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, format);
        H5Aclose(a);
        H5Tclose(t);
        a = H5Acreate2(f, "format_version", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT, &version);
        H5Aclose(a);
    }
    if (with_groups) {
        H5Gclose(H5Gcreate2(f, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        H5Gclose(H5Gcreate2(f, "masks", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    }
    H5Sclose(space);
    H5Fclose(f);
}

// Writes a NaN into element 12 of /weights/NAME and 2 into element 3 of /masks/NAME.
static void corrupt(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    char ds[512];
    snprintf(ds, sizeof ds, "/weights/%s", name);
    hid_t d = H5Dopen2(f, ds, H5P_DEFAULT);
    hid_t space = H5Dget_space(d);
    hsize_t at[2] = {2, 2}; // element 12 of a [7, 5] matrix
    H5Sselect_elements(space, H5S_SELECT_SET, 1, at);
    hsize_t one = 1;
    hid_t mem = H5Screate_simple(1, &one, NULL);
    float nan = NAN;
    H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, &nan);
    H5Sclose(space);
    H5Dclose(d);
    snprintf(ds, sizeof ds, "/masks/%s", name);
    d = H5Dopen2(f, ds, H5P_DEFAULT);
    space = H5Dget_space(d);
    hsize_t at3[2] = {0, 3};
    H5Sselect_elements(space, H5S_SELECT_SET, 1, at3);
    uint8_t two = 2;
    H5Dwrite(d, H5T_NATIVE_UINT8, mem, space, H5P_DEFAULT, &two);
    H5Sclose(mem);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
}

static int cmd_reader(const char *dir) {
    char path[4096];
    sds_h5in *in = NULL;
    snprintf(path, sizeof path, "%s/missing.h5", dir);
    check_error(sds_h5in_open(path, &in), SDS_ERR_INPUT, "missing file", path, "No such file");

    snprintf(path, sizeof path, "%s/text.h5", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not HDF5\n", f);
    fclose(f);
    check_error(sds_h5in_open(path, &in), SDS_ERR_INPUT, "not an HDF5 file", path,
                "not an HDF5 file");

    snprintf(path, sizeof path, "%s/plain.h5", dir);
    write_foreign(path, NULL, 0, true);
    check_error(sds_h5in_open(path, &in), SDS_ERR_INPUT, "HDF5 without the version attribute", path,
                "not an sds-mpi prune file");

    snprintf(path, sizeof path, "%s/other.h5", dir);
    write_foreign(path, "something-else", 1, true);
    check_error(sds_h5in_open(path, &in), SDS_ERR_INPUT, "another format", path, "something-else");

    snprintf(path, sizeof path, "%s/future.h5", dir);
    write_foreign(path, SDS_H5OUT_FORMAT, 2, true);
    check_error(sds_h5in_open(path, &in), SDS_ERR_INPUT, "a newer format version", path,
                "version 2");

    snprintf(path, sizeof path, "%s/nogroups.h5", dir);
    write_foreign(path, SDS_H5OUT_FORMAT, 1, false);
    check_error(sds_h5in_open(path, &in), SDS_ERR_INPUT, "no /weights group", path, "/weights");

    // a real file: a missing sublayer, a wrong shape
    snprintf(path, sizeof path, "%s/good.h5", dir);
    int code = write_file(path);
    check(code == SDS_OK, "write %s", path);
    if (code == SDS_OK) {
        int rc = sds_h5in_open(path, &in);
        check(rc == SDS_OK, "open %s", path);
        if (rc == SDS_OK) {
            float w[64];
            uint8_t m[64];
            sds_h5out_stats st;
            int64_t rows, cols;
            check_error(sds_h5in_read_weights(in, "model.decoder.layers.9.fc1", 7, 5, w),
                        SDS_ERR_INPUT, "missing sublayer", path,
                        "/weights/model.decoder.layers.9.fc1");
            check_error(sds_h5in_read_mask(in, "nope", 7, 5, m), SDS_ERR_INPUT, "missing mask",
                        path, "/masks/nope");
            check_error(sds_h5in_read_stats(in, "nope", &st), SDS_ERR_INPUT, "missing stats", path,
                        "nope");
            check_error(sds_h5in_shape(in, "a/b", &rows, &cols), SDS_ERR_INPUT,
                        "a name with a slash", path, "a/b");
            check_error(sds_h5in_read_weights(in, g_subs[0].name, 5, 7, w), SDS_ERR_INPUT,
                        "wrong shape", "has shape [7, 5], expected [5, 7]", g_subs[0].name);
            check_error(sds_h5in_read_mask(in, g_subs[0].name, 7, 6, m), SDS_ERR_INPUT,
                        "wrong mask shape", "/masks/", "expected [7, 6]");
            sds_h5in_close(in);
        }
        // a NaN weight and a mask value of 2, written over the good file
        corrupt(path, g_subs[0].name);
        rc = sds_h5in_open(path, &in);
        check(rc == SDS_OK, "open the altered %s", path);
        if (rc == SDS_OK) {
            float w[35];
            uint8_t m[35];
            check_error(sds_h5in_read_weights(in, g_subs[0].name, 7, 5, w), SDS_ERR_INPUT,
                        "NaN weight", "holds NaN at index 12", g_subs[0].name);
            check_error(sds_h5in_read_mask(in, g_subs[0].name, 7, 5, m), SDS_ERR_INPUT,
                        "mask value 2", "holds 2 at index 3", "expected 0 or 1");
            sds_h5in_close(in);
        }
    }
    // a directory is not a file
    check_error(sds_h5in_open(dir, &in), SDS_ERR_INPUT, "a directory", dir, "directory");
    printf("%s (reader errors, %d failures)\n", g_failures ? "FAILED" : "PASSED", g_failures);
    return g_failures ? 1 : 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    int rc = 2;
    if (argc == 3 && strcmp(argv[1], "write") == 0)
        rc = cmd_write(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "reader") == 0 && g_size == 1)
        rc = cmd_reader(argv[2]);
    else if (g_rank == 0)
        fprintf(stderr, "usage: test_h5out write PATH | test_h5out reader DIR (1 rank)\n");
    MPI_Finalize();
    return rc;
}

// Helpers shared by the golden-file tests (test_prune_golden.c, test_sds_golden.c): checks that
// print OK / NOT OK and count failures, and HDF5 reads that exit on any error.
#pragma once
#include <hdf5.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static int g_failures = 0;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "OK    " : "NOT OK");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!ok) g_failures++;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

// ---- HDF5 --------------------------------------------------------------------------------

// Reads a float dataset of rank `rank`; dims receives its shape. Exits on any error.
static float *read_f32(hid_t file, const char *name, int rank, hsize_t *dims) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) {
        fprintf(stderr, "missing dataset %s\n", name);
        exit(2);
    }
    hid_t s = H5Dget_space(d);
    if (H5Sget_simple_extent_ndims(s) != rank) {
        fprintf(stderr, "dataset %s: expected rank %d\n", name, rank);
        exit(2);
    }
    H5Sget_simple_extent_dims(s, dims, NULL);
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    float *buf = xmalloc(n * sizeof(float));
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        fprintf(stderr, "cannot read %s\n", name);
        exit(2);
    }
    H5Sclose(s);
    H5Dclose(d);
    return buf;
}

// safetensors reader checks.
//   test_safetensors TMPDIR                 writes small files into TMPDIR and checks the reader
//                                           on valid, sharded and broken ones (OK / FAIL each)
//   test_safetensors dump PATH TENSOR OUT   writes tensor TENSOR of PATH as fp32 little-endian
//                                           (used by test_safetensors.py against torch)
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"
#include "sds_error.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_failures = 0;
static char g_dir[4096];

static void check(bool ok, const char *label) {
    printf("%s %s\n", ok ? "OK  " : "FAIL", label);
    if (!ok) g_failures++;
}

// Error expected: right code, and the message contains every non-NULL needle.
static void check_error(int rc, int code, const char *label, const char *n1, const char *n2,
                        const char *n3) {
    const char *msg = sds_error_message();
    bool ok = rc == code && sds_error_code() == code;
    const char *needles[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++) {
        if (needles[i] && !strstr(msg, needles[i])) ok = false;
    }
    printf("%s %s (rc %d, \"%s\")\n", ok ? "OK  " : "FAIL", label, rc, msg);
    if (!ok) g_failures++;
    sds_error_clear();
}

static void path_in(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_dir, name);
}

static void make_dir(const char *path) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
        exit(2);
    }
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

// Writes a safetensors file: u64 LE header length (hlen; the real length when hlen is 0),
// header text, data. Returns the total size.
static size_t write_st(const char *path, const char *header, uint64_t hlen, const void *data,
                       size_t len) {
    size_t h = strlen(header);
    if (hlen == 0) hlen = h;
    size_t total = 8 + h + len;
    unsigned char *buf = malloc(total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, header, h);
    if (len) memcpy(buf + 8 + h, data, len);
    write_bytes(path, buf, total);
    free(buf);
    return total;
}

// Copies the first len bytes of src to dst.
static void copy_prefix(const char *src, const char *dst, size_t len) {
    FILE *f = fopen(src, "rb");
    unsigned char *buf = malloc(len ? len : 1);
    if (!f || fread(buf, 1, len, f) != len) {
        fprintf(stderr, "cannot read %s\n", src);
        exit(2);
    }
    fclose(f);
    write_bytes(dst, buf, len);
    free(buf);
}

static void put_f32(unsigned char *p, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(u >> (8 * i));
}

static void put_u16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static bool same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// ---- conversions ----

static void test_conversions(void) {
    // Every finite half against the definition: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m.
    bool ok = true;
    for (uint32_t h = 0; h < 65536 && ok; h++) {
        uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        if (e == 0x1f) continue;
        double v = e ? ldexp(1024.0 + m, (int)e - 25) : ldexp((double)m, -24);
        if (h & 0x8000) v = -v;
        float got = sds_f16_to_f32((uint16_t)h);
        ok = f32_bits(got) == f32_bits((float)v);
        if (!ok) printf("     half 0x%04x -> %.9g, expected %.9g\n", h, got, v);
    }
    check(ok, "f16 -> f32 exact for all 63488 finite halves (subnormals included)");
    check(isinf(sds_f16_to_f32(0x7c00)) && sds_f16_to_f32(0x7c00) > 0, "f16 +inf");
    check(isinf(sds_f16_to_f32(0xfc00)) && sds_f16_to_f32(0xfc00) < 0, "f16 -inf");
    check(isnan(sds_f16_to_f32(0x7e00)) && isnan(sds_f16_to_f32(0xfc01)), "f16 NaN");
    check(f32_bits(sds_f16_to_f32(0x8000)) == 0x80000000u, "f16 -0 keeps its sign");
    check(sds_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "f16 smallest subnormal is 2^-24");
    check(sds_f16_to_f32(0x7bff) == 65504.0f, "f16 largest finite is 65504");

    ok = true;
    for (uint32_t h = 0; h < 65536 && ok; h++) {
        uint32_t e = (h >> 7) & 0xff, m = h & 0x7f;
        if (e == 0xff) continue;
        double v = e ? ldexp(128.0 + m, (int)e - 134) : ldexp((double)m, -133);
        if (h & 0x8000) v = -v;
        ok = f32_bits(sds_bf16_to_f32((uint16_t)h)) == f32_bits((float)v);
    }
    check(ok, "bf16 -> f32 exact for all finite bfloat16 values");
    check(isinf(sds_bf16_to_f32(0x7f80)) && isnan(sds_bf16_to_f32(0xffc0)), "bf16 inf and NaN");
}

// ---- a valid file with every kind of tensor ----

// Data layout of valid.safetensors: w.f32 [2,3] at 0..24, w.f16 [4] 24..32, w.bf16 [2,2] 32..40,
// w.i64 [2] 40..56, w.f8 [3] 56..59. The header lists them out of data order on purpose.
static const char *k_valid_header =
    "{\"w.i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[40,56]},"
    "\"__metadata__\":{\"format\":\"pt\"},"
    "\"w.bf16\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[32,40]},"
    "\"w.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"w.f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[3],\"data_offsets\":[56,59]},"
    "\"w.f16\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]}}";
static const uint16_t k_f16[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};
static const uint16_t k_bf16[4] = {0x3f80, 0xbf80, 0x0001, 0x7f7f};
static float k_f32[6];

static size_t write_valid(const char *path) {
    k_f32[0] = 1.0f;
    k_f32[1] = -2.0f;
    k_f32[2] = 0.5f;
    k_f32[3] = 3.25f;
    k_f32[4] = -0.0f;
    k_f32[5] = bits_f32(0x00000005u); // an fp32 subnormal
    unsigned char data[59];
    memset(data, 0, sizeof data);
    for (int i = 0; i < 6; i++) put_f32(data + 4 * i, k_f32[i]);
    for (int i = 0; i < 4; i++) put_u16(data + 24 + 2 * i, k_f16[i]);
    for (int i = 0; i < 4; i++) put_u16(data + 32 + 2 * i, k_bf16[i]);
    data[40] = 7;
    data[48] = 9;
    data[56] = 0x38;
    return write_st(path, k_valid_header, 0, data, sizeof data);
}

static void test_valid(const char *path) {
    sds_safetensors *st = NULL;
    int rc = sds_safetensors_open(path, &st);
    check(rc == SDS_OK, "open a valid single file");
    if (rc != SDS_OK) {
        printf("     %s\n", sds_error_message());
        sds_error_clear();
        return;
    }
    check(sds_safetensors_count(st) == 5, "five tensors, __metadata__ skipped");
    const sds_st_tensor *first = sds_safetensors_at(st, 0);
    check(first && strcmp(first->name, "w.f32") == 0 &&
              first->data_begin == 8 + strlen(k_valid_header),
          "tensors listed in file order with absolute offsets");
    check(sds_safetensors_at(st, 5) == NULL && sds_safetensors_at(st, -1) == NULL,
          "at() out of range is NULL");
    const sds_st_tensor *f8 = sds_safetensors_find(st, "w.f8");
    check(f8 && f8->dtype == SDS_DTYPE_OTHER && strcmp(f8->dtype_name, "F8_E4M3") == 0 &&
              f8->data_bytes == 3,
          "F8_E4M3 recorded as OTHER with its name");
    const sds_st_tensor *b = sds_safetensors_find(st, "w.bf16");
    check(b && b->dtype == SDS_DTYPE_BF16 && b->ndim == 2 && b->shape[0] == 2 && b->shape[1] == 2,
          "BF16 tensor's dtype and shape");
    check(b && strcmp(sds_safetensors_file_of(st, b), path) == 0, "file_of names the file");
    check(sds_safetensors_find(st, "w") == NULL, "find of an absent name is NULL");

    float got[6], want[6];
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s4[1] = {4}, s22[2] = {2, 2}, s6[1] = {6};
    check(sds_safetensors_read_f32(st, "w.f32", 2, s23, got) == SDS_OK && same_bits(got, k_f32, 6),
          "F32 read bit-exact (subnormal and -0 included)");
    for (int i = 0; i < 4; i++) want[i] = sds_f16_to_f32(k_f16[i]);
    check(sds_safetensors_read_f32(st, "w.f16", 1, s4, got) == SDS_OK && same_bits(got, want, 4) &&
              got[2] == ldexpf(1.0f, -24) && got[3] == 65504.0f,
          "F16 read and converted");
    for (int i = 0; i < 4; i++) want[i] = sds_bf16_to_f32(k_bf16[i]);
    check(sds_safetensors_read_f32(st, "w.bf16", 2, s22, got) == SDS_OK &&
              same_bits(got, want, 4) && got[0] == 1.0f && got[1] == -1.0f,
          "BF16 read and converted");

    rc = sds_safetensors_read_f32(st, "w.i64", 1, (int64_t[]){2}, got);
    check_error(rc, SDS_ERR_INPUT, "I64 tensor requested as float", "w.i64", path, "dtype I64");
    rc = sds_safetensors_read_f32(st, "nope", 1, s4, got);
    check_error(rc, SDS_ERR_INPUT, "missing tensor name", "tensor nope missing from", path, NULL);
    rc = sds_safetensors_read_f32(st, "w.f32", 2, s32, got);
    check_error(rc, SDS_ERR_INPUT, "wrong shape requested", "w.f32", "has shape [2, 3]",
                "expected [3, 2]");
    rc = sds_safetensors_read_f32(st, "w.f32", 1, s6, got);
    check_error(rc, SDS_ERR_INPUT, "wrong rank requested", path, "expected [6]", NULL);
    sds_safetensors_free(st);
}

static void test_directory_forms(const char *valid) {
    char dir[4200], file[4300];
    path_in(dir, sizeof dir, "single_dir");
    make_dir(dir);
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    write_valid(file);
    sds_safetensors *st = NULL;
    int rc = sds_safetensors_open(dir, &st);
    check(rc == SDS_OK && sds_safetensors_count(st) == 5 &&
              strcmp(sds_safetensors_file_of(st, sds_safetensors_at(st, 0)), file) == 0,
          "directory with model.safetensors");
    if (rc != SDS_OK) sds_error_clear();
    sds_safetensors_free(st);

    path_in(dir, sizeof dir, "empty_dir");
    make_dir(dir);
    rc = sds_safetensors_open(dir, &st);
    check_error(rc, SDS_ERR_INPUT, "directory with neither file", dir, "model.safetensors",
                "model.safetensors.index.json");
    check(st == NULL, "failed open leaves *out NULL");

    path_in(file, sizeof file, "does_not_exist.safetensors");
    rc = sds_safetensors_open(file, &st);
    check_error(rc, SDS_ERR_INPUT, "path that does not exist", file, "no such file or directory",
                NULL);
    (void)valid;
}

// ---- sharded ----

static void write_shards(const char *dir) {
    char p[4400];
    unsigned char d1[12];
    put_f32(d1, 1.5f);
    put_f32(d1 + 4, -4.0f);
    put_u16(d1 + 8, 0x3800); // 0.5
    put_u16(d1 + 10, 0x8001);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    write_st(p,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]}}",
             0, d1, sizeof d1);
    unsigned char d2[6];
    put_u16(d2, 0x4040); // 3
    put_u16(d2 + 2, 0xc0a0);
    put_u16(d2 + 4, 0x3c23);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_st(p, "{\"c\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]}}", 0, d2,
             sizeof d2);
}

static void write_index(const char *dir, const char *c_shard) {
    char p[4400], text[1024];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    snprintf(text, sizeof text,
             "{\"metadata\": {\"total_size\": 18}, \"weight_map\": {"
             "\"a\": \"model-00001-of-00002.safetensors\", "
             "\"b\": \"model-00001-of-00002.safetensors\", \"c\": \"%s\"}}\n",
             c_shard);
    write_bytes(p, text, strlen(text));
}

static void test_sharded(void) {
    char dir[4200], p[4400];
    path_in(dir, sizeof dir, "sharded");
    make_dir(dir);
    write_shards(dir);
    write_index(dir, "model-00002-of-00002.safetensors");
    sds_safetensors *st = NULL;
    int rc = sds_safetensors_open(dir, &st);
    check(rc == SDS_OK, "open a sharded directory");
    if (rc != SDS_OK) {
        printf("     %s\n", sds_error_message());
        sds_error_clear();
    } else {
        check(sds_safetensors_count(st) == 3, "three tensors over two shards");
        float got[3];
        const sds_st_tensor *c = sds_safetensors_find(st, "c");
        snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
        check(c && strcmp(sds_safetensors_file_of(st, c), p) == 0, "tensor c lives in shard 2");
        check(sds_safetensors_read_f32(st, "c", 1, (int64_t[]){3}, got) == SDS_OK &&
                  got[0] == 3.0f && got[1] == -5.0f,
              "read BF16 from shard 2");
        check(sds_safetensors_read_f32(st, "a", 1, (int64_t[]){2}, got) == SDS_OK &&
                  got[0] == 1.5f && got[1] == -4.0f,
              "read F32 from shard 1");
        check(sds_safetensors_read_f32(st, "b", 1, (int64_t[]){2}, got) == SDS_OK &&
                  got[0] == 0.5f && got[1] == -ldexpf(1.0f, -24),
              "read F16 from shard 1");
        sds_safetensors_free(st);
    }

    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    rc = sds_safetensors_open(p, &st);
    check(rc == SDS_OK && sds_safetensors_count(st) == 3, "open the index file itself");
    if (rc != SDS_OK) sds_error_clear();
    sds_safetensors_free(st);

    // The index maps c to the shard that does not hold it.
    path_in(dir, sizeof dir, "sharded_misplaced");
    make_dir(dir);
    write_shards(dir);
    write_index(dir, "model-00001-of-00002.safetensors");
    rc = sds_safetensors_open(dir, &st);
    check_error(rc, SDS_ERR_INPUT, "index maps a tensor to a shard without it",
                "model-00001-of-00002.safetensors", "no tensor c", "model.safetensors.index.json");

    path_in(dir, sizeof dir, "sharded_missing_shard");
    make_dir(dir);
    write_shards(dir);
    write_index(dir, "model-00003-of-00002.safetensors");
    rc = sds_safetensors_open(dir, &st);
    check_error(rc, SDS_ERR_INPUT, "index names a shard that does not exist",
                "model-00003-of-00002.safetensors", "no such file", NULL);

    path_in(dir, sizeof dir, "sharded_bad_index");
    make_dir(dir);
    write_shards(dir);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_bytes(p, "{\"weight_map\": {\"a\": ", 21);
    rc = sds_safetensors_open(dir, &st);
    check_error(rc, SDS_ERR_INPUT, "index that is not valid JSON", p, "not valid JSON", NULL);
    write_bytes(p, "{\"metadata\": {}}", 16);
    rc = sds_safetensors_open(dir, &st);
    check_error(rc, SDS_ERR_INPUT, "index without weight_map", p, "weight_map", NULL);
}

// ---- broken single files ----

static void expect_open_error(const char *name, const char *header, uint64_t hlen, const void *data,
                              size_t len, const char *label, const char *n2, const char *n3) {
    char p[4300];
    path_in(p, sizeof p, name);
    write_st(p, header, hlen, data, len);
    sds_safetensors *st = NULL;
    int rc = sds_safetensors_open(p, &st);
    check_error(rc, SDS_ERR_INPUT, label, p, n2, n3);
    sds_safetensors_free(st);
}

static void test_broken(const char *valid, size_t valid_size) {
    char p[4300];
    sds_safetensors *st = NULL;
    int rc;

    // Cutting the last 2 bytes leaves only w.f8 (56..59) past the end.
    path_in(p, sizeof p, "truncated_tail.safetensors");
    copy_prefix(valid, p, valid_size - 2);
    rc = sds_safetensors_open(p, &st);
    check_error(rc, SDS_ERR_INPUT, "truncated copy (tail)", p, "truncated", "tensor w.f8");
    // Keeping 30 data bytes leaves w.f16, w.bf16, w.i64 and w.f8 past the end: name the first.
    path_in(p, sizeof p, "truncated_mid.safetensors");
    copy_prefix(valid, p, 8 + strlen(k_valid_header) + 30);
    rc = sds_safetensors_open(p, &st);
    check_error(rc, SDS_ERR_INPUT, "truncated copy names the first tensor past the end", p,
                "truncated", "tensor w.f16 ");
    path_in(p, sizeof p, "short.safetensors");
    copy_prefix(valid, p, 5);
    rc = sds_safetensors_open(p, &st);
    check_error(rc, SDS_ERR_INPUT, "file shorter than the length field", p, "too short", NULL);

    unsigned char zeros[64];
    memset(zeros, 0, sizeof zeros);
    expect_open_error("bad_json.safetensors", "{\"x\": {\"dtype\": \"F32\", ", 0, zeros, 8,
                      "header that is not valid JSON", "not valid JSON", NULL);
    expect_open_error("not_object.safetensors", "[1, 2, 3]", 0, NULL, 0,
                      "header that is a JSON array", "not a JSON object", NULL);
    expect_open_error("long_header.safetensors", "{}", 1000, NULL, 0,
                      "header length past the end of file", "header length 1000", "past the end");
    expect_open_error("huge_header.safetensors", "{}", UINT64_MAX, NULL, 0, "header length 2^64-1",
                      "header length", NULL);
    // A sparse file, so the 150 MB header is a length the file really holds, yet over the cap.
    path_in(p, sizeof p, "capped_header.safetensors");
    write_st(p, "{}", 150u << 20, NULL, 0);
    if (truncate(p, (off_t)(8 + (150u << 20))) != 0) check(false, "make a sparse file");
    rc = sds_safetensors_open(p, &st);
    check_error(rc, SDS_ERR_INPUT, "header length over the 100 MB cap", p, "exceeds", NULL);
    unlink(p);
    expect_open_error("bad_offsets.safetensors",
                      "{\"w.x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 0,
                      zeros, 24, "offsets inconsistent with the shape", "tensor w.x",
                      "data_offsets [0, 20]");
    expect_open_error("reversed_offsets.safetensors",
                      "{\"w.x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 0,
                      zeros, 8, "end before begin", "tensor w.x", "data_offsets");
    expect_open_error("unknown_dtype.safetensors",
                      "{\"w.x\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0,
                      zeros, 8, "unknown dtype string", "tensor w.x", "F33");
    expect_open_error("negative_shape.safetensors",
                      "{\"w.x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0,
                      zeros, 8, "negative shape entry", "tensor w.x", "non-negative");
    expect_open_error(
        "nine_dims.safetensors",
        "{\"w.x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 0,
        zeros, 4, "nine dimensions", "tensor w.x", "9 dimensions");
    expect_open_error("overflow_shape.safetensors",
                      "{\"w.x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                      "\"data_offsets\":[0,4]}}",
                      0, zeros, 4, "shape whose size overflows", "tensor w.x", "too large");
    expect_open_error("no_dtype.safetensors", "{\"w.x\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 0,
                      zeros, 8, "entry without dtype", "tensor w.x", "dtype");
    expect_open_error("duplicate.safetensors",
                      "{\"w.x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"w.x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      0, zeros, 8, "duplicate tensor name", "w.x", NULL);
}

// ---- non-finite values ----

static void test_nonfinite(void) {
    char p[4300];
    unsigned char data[16 + 8];
    put_f32(data, 1.0f);
    put_f32(data + 4, 2.0f);
    put_f32(data + 8, 3.0f);
    put_f32(data + 12, NAN);
    put_u16(data + 16, 0x3c00);
    put_u16(data + 18, 0xfc00); // -inf
    put_u16(data + 20, 0x0000);
    put_u16(data + 22, 0x0000);
    path_in(p, sizeof p, "nonfinite.safetensors");
    write_st(p,
             "{\"w.nan\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"w.inf\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,24]}}",
             0, data, sizeof data);
    sds_safetensors *st = NULL;
    int rc = sds_safetensors_open(p, &st);
    check(rc == SDS_OK, "open a file holding NaN (values are checked on read)");
    if (rc != SDS_OK) {
        sds_error_clear();
        return;
    }
    float got[4];
    rc = sds_safetensors_read_f32(st, "w.nan", 1, (int64_t[]){4}, got);
    check_error(rc, SDS_ERR_INPUT, "tensor holding NaN", "tensor w.nan in", p, "NaN at index 3");
    rc = sds_safetensors_read_f32(st, "w.inf", 1, (int64_t[]){4}, got);
    check_error(rc, SDS_ERR_INPUT, "F16 tensor holding -inf", "tensor w.inf in", p,
                "-inf at index 1");
    sds_safetensors_free(st);
}

// An F16 tensor larger than the 1 MiB staging buffer: values and indices across chunks.
static void test_chunked(void) {
    const size_t n = 1300000; // 2.6 MB of F16: three staging chunks
    unsigned char *data = malloc(4 * n);
    for (size_t i = 0; i < n; i++) put_u16(data + 2 * i, (uint16_t)(i % 0x7c00));
    for (size_t i = 0; i < n; i++) put_u16(data + 2 * n + 2 * i, (uint16_t)(i % 0x7c00));
    put_u16(data + 2 * n + 2 * 1100000, 0x7e00); // NaN in the third chunk
    char p[4300], header[512];
    snprintf(header, sizeof header,
             "{\"big\":{\"dtype\":\"F16\",\"shape\":[1300,1000],\"data_offsets\":[0,%zu]},"
             "\"big.nan\":{\"dtype\":\"F16\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]}}",
             2 * n, n, 2 * n, 4 * n);
    path_in(p, sizeof p, "big.safetensors");
    write_st(p, header, 0, data, 4 * n);
    free(data);

    sds_safetensors *st = NULL;
    int rc = sds_safetensors_open(p, &st);
    check(rc == SDS_OK, "open a file with a 2.6 MB F16 tensor");
    if (rc != SDS_OK) {
        sds_error_clear();
        return;
    }
    float *got = malloc(n * sizeof *got);
    bool ok = sds_safetensors_read_f32(st, "big", 2, (int64_t[]){1300, 1000}, got) == SDS_OK;
    for (size_t i = 0; i < n && ok; i++) {
        ok = f32_bits(got[i]) == f32_bits(sds_f16_to_f32((uint16_t)(i % 0x7c00)));
    }
    check(ok, "F16 tensor over several staging chunks converted in place");
    rc = sds_safetensors_read_f32(st, "big.nan", 1, (int64_t[]){(int64_t)n}, got);
    check_error(rc, SDS_ERR_INPUT, "NaN in a later chunk reports its global index", "big.nan",
                "NaN at index 1100000", NULL);
    free(got);
    sds_safetensors_free(st);
}

// ---- dump mode ----

static int dump(const char *path, const char *name, const char *out) {
    sds_safetensors *st = NULL;
    int rc = sds_safetensors_open(path, &st);
    if (rc == SDS_OK) {
        const sds_st_tensor *t = sds_safetensors_find(st, name);
        if (!t) {
            rc = sds_error_set(SDS_ERR_INPUT, "tensor %s missing from %s", name, path);
        } else {
            int64_t numel = 1;
            for (int32_t d = 0; d < t->ndim; d++) numel *= t->shape[d];
            float *buf = malloc((size_t)(numel ? numel : 1) * sizeof *buf);
            rc = sds_safetensors_read_f32(st, name, t->ndim, t->shape, buf);
            if (rc == SDS_OK) {
                FILE *f = fopen(out, "wb");
                // fp32 little-endian: the host order on every machine this runs on.
                if (!f || fwrite(buf, sizeof *buf, (size_t)numel, f) != (size_t)numel ||
                    fclose(f) != 0)
                    rc = sds_error_set(SDS_ERR_IO, "%s: cannot write", out);
            }
            free(buf);
        }
    }
    sds_safetensors_free(st);
    if (rc != SDS_OK) fprintf(stderr, "error (%s): %s\n", sds_code_name(rc), sds_error_message());
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "dump") == 0) return dump(argv[2], argv[3], argv[4]);
    if (argc != 2) {
        fprintf(stderr, "usage: %s TMPDIR\n       %s dump PATH TENSOR OUT.bin\n", argv[0], argv[0]);
        return 2;
    }
    snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
    make_dir(g_dir);

    test_conversions();
    char valid[4300];
    path_in(valid, sizeof valid, "valid.safetensors");
    size_t valid_size = write_valid(valid);
    test_valid(valid);
    test_directory_forms(valid);
    test_sharded();
    test_broken(valid, valid_size);
    test_nonfinite();
    test_chunked();

    if (g_failures) {
        printf("FAILED: %d check(s)\n", g_failures);
        return 1;
    }
    printf("PASSED\n");
    return 0;
}

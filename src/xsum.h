// Exact sums whose result does not depend on the order of the additions (SPEC 4: the same
// masks at any rank count). Each value is truncated to a fixed grid of 2^-64 and added as a
// 128-bit integer: integer addition is associative, so a sum over calibration sequences is the
// same bits however the sequences are spread over ranks and whatever tree MPI reduces with.
// The grid is far finer than fp32 carries for any statistic that matters (2^-64 ~ 5e-20
// absolute); values from 2^(62 - log2(terms)) up cannot be represented and are reported.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef __int128 sds_xsum_t;

// The largest |value| that sds_xsum_add_* accept when at most `terms` values are summed into
// one accumulator (so the total stays below 2^62).
double sds_xsum_limit(int64_t terms);
// acc[i] += x[i] on the grid, i < n. Returns 0, or 1 when some |x[i]| >= limit (or is not
// finite); acc is then unspecified.
int sds_xsum_add_f32(sds_xsum_t *acc, const float *x, size_t n, double limit);
// The loop sds_xsum_add_f32 runs on this CPU: "AVX-512" (x86-64 with AVX-512F and DQ), "AVX2"
// (x86-64 with AVX2 but not those), or "scalar"; all give the same bits.
const char *sds_xsum_loop(void);
// One loop alone, by the name sds_xsum_loop gives, for the tests (so that every loop this CPU
// can run is checked, the scalar one on any CPU); NULL where this CPU cannot run it.
typedef int (*sds_xsum_add_fn)(sds_xsum_t *acc, const float *x, size_t n, double limit);
sds_xsum_add_fn sds_xsum_add_f32_loop(const char *name);
int sds_xsum_add_f64(sds_xsum_t *acc, const double *x, size_t n, double limit);
// Upper triangle of a row-major (n, n) float matrix, row by row (j >= i), into packed acc of
// n (n + 1) / 2 entries.
int sds_xsum_add_upper_f32(sds_xsum_t *acc, const float *X, int64_t n, double limit);
// out[i] = acc[i] as the nearest float / double (scaled back by 2^-64).
void sds_xsum_to_f32(const sds_xsum_t *acc, float *out, size_t n);
void sds_xsum_to_f64(const sds_xsum_t *acc, double *out, size_t n);
// Packed upper triangle into the upper triangle of a row-major (n, n) float matrix.
void sds_xsum_upper_to_f32(const sds_xsum_t *acc, float *X, int64_t n);

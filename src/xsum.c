#include "xsum.h"

#include <math.h>
#include <string.h>

double sds_xsum_limit(int64_t terms) {
    int bits = 0;
    while (bits < 62 && ((int64_t)1 << bits) < terms) bits++;
    return ldexp(1.0, 62 - bits);
}

// The value m * 2^e (m an integer below 2^53) on the 2^-64 grid, truncated toward zero.
static inline sds_xsum_t fixed(uint64_t m, int e, int neg) {
    const int sh = e + 64;
    sds_xsum_t v;
    if (sh >= 0)
        v = (sds_xsum_t)m << sh; // (callers keep m 2^e below the limit, so no overflow)
    else if (sh > -64)
        v = (sds_xsum_t)(m >> -sh);
    else
        v = 0;
    return neg ? -v : v;
}

int sds_xsum_add_f32(sds_xsum_t *acc, const float *x, size_t n, double limit) {
    int bad = 0;
    const float lim = (float)limit;
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        if (!(fabsf(v) < lim)) {
            bad = 1;
            continue;
        }
        uint32_t b;
        memcpy(&b, &v, sizeof b);
        const int E = (int)((b >> 23) & 0xffu);
        if (E == 0) continue; // zero or subnormal: below the grid
        acc[i] += fixed((b & 0x7fffffu) | 0x800000u, E - 150, (int)(b >> 31));
    }
    return bad;
}

int sds_xsum_add_f64(sds_xsum_t *acc, const double *x, size_t n, double limit) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double v = x[i];
        if (!(fabs(v) < limit)) {
            bad = 1;
            continue;
        }
        uint64_t b;
        memcpy(&b, &v, sizeof b);
        const int E = (int)((b >> 52) & 0x7ffu);
        if (E == 0) continue;
        acc[i] += fixed((b & 0xfffffffffffffull) | 0x10000000000000ull, E - 1075, (int)(b >> 63));
    }
    return bad;
}

int sds_xsum_add_upper_f32(sds_xsum_t *acc, const float *X, int64_t n, double limit) {
    int bad = 0;
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        bad |= sds_xsum_add_f32(acc + k, X + i * n + i, (size_t)(n - i), limit);
        k += (size_t)(n - i);
    }
    return bad;
}

static inline long double value(sds_xsum_t a) {
    // exact in long double for |a| < 2^64; beyond, one rounding (x87: 64-bit mantissa)
    return ldexpl((long double)a, -64);
}

void sds_xsum_to_f32(const sds_xsum_t *acc, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (float)value(acc[i]);
}

void sds_xsum_to_f64(const sds_xsum_t *acc, double *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (double)value(acc[i]);
}

void sds_xsum_upper_to_f32(const sds_xsum_t *acc, float *X, int64_t n) {
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        sds_xsum_to_f32(acc + k, X + i * n + i, (size_t)(n - i));
        k += (size_t)(n - i);
    }
}

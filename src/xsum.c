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

// The conversions give the bits (float)/(double) of ldexpl((long double)a, -64) gives (their
// definition until they were rewritten; x87 long double: a 64-bit mantissa): |a| rounded first
// to 64 significant bits, then to 24 or 53, both to nearest, ties to even. They do it in 64-bit
// integers: the long double path (a libgcc call and ldexpl per entry) took 27 ns an entry, this
// one 9-10 ns, and SDS converts 3 Grams per input group and layer on every rank of a stage.
// test_xsum checks the bits against the long double path.

// |a| rounded to 64 significant bits (the long double), to nearest, ties to even: m (its top
// bit set) times 2^e; a != 0. On the two 64-bit halves, which a variable shift of a 128-bit
// integer is not.
static inline uint64_t round64(sds_xsum_t a, int *e) {
    const unsigned __int128 u = a < 0 ? -(unsigned __int128)a : (unsigned __int128)a;
    const uint64_t hi = (uint64_t)(u >> 64), lo = (uint64_t)u;
    if (hi == 0) {
        const int c = __builtin_clzll(lo);
        *e = -c;
        return lo << c;
    }
    const int c = __builtin_clzll(hi);
    // the top 64 bits and the rest, left-aligned (the rounding bit on top)
    uint64_t q = c ? hi << c | lo >> (64 - c) : hi;
    const uint64_t rest = lo << c, half = 1ull << 63;
    *e = 64 - c;
    if (rest > half || (rest == half && (q & 1))) {
        if (++q == 0) { // 2^64: even, nothing lost
            q = half;
            (*e)++;
        }
    }
    return q;
}

// m (top bit set) times 2^e rounded to `bits` significant bits, to nearest, ties to even: the
// result times 2^e' (e' returned through e).
static inline uint64_t round_bits(uint64_t m, int bits, int *e) {
    const int sh = 64 - bits;
    uint64_t q = m >> sh;
    const uint64_t rest = m << bits, half = 1ull << 63;
    *e += sh;
    if (rest > half || (rest == half && (q & 1))) {
        if (++q >> bits) {
            q >>= 1;
            (*e)++;
        }
    }
    return q;
}

// a / 2^64 rounded to `bits` (24 or 53) significant bits, as a double (exact for both).
static inline double rounded(sds_xsum_t a, int bits) {
    if (a == 0) return 0.0;
    int e;
    const uint64_t m = round_bits(round64(a, &e), bits, &e);
    // m 2^(e - 64): m exact in a double, 2^(e - 64) a normal power of two (|a| < 2^127)
    const uint64_t pb = (uint64_t)(1023 + e - 64) << 52;
    double p2;
    memcpy(&p2, &pb, sizeof p2);
    const double v = (double)m * p2;
    return a < 0 ? -v : v;
}

void sds_xsum_to_f32(const sds_xsum_t *acc, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (float)rounded(acc[i], 24); // (exact)
}

void sds_xsum_to_f64(const sds_xsum_t *acc, double *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = rounded(acc[i], 53);
}

void sds_xsum_upper_to_f32(const sds_xsum_t *acc, float *X, int64_t n) {
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        sds_xsum_to_f32(acc + k, X + i * n + i, (size_t)(n - i));
        k += (size_t)(n - i);
    }
}

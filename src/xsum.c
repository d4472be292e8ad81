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

static int add_f32_scalar(sds_xsum_t *acc, const float *x, size_t n, double limit) {
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
        // modulo 2^128, as the vector loop's lanes (no signed overflow where a sum wraps)
        const unsigned __int128 t =
            (unsigned __int128)fixed((b & 0x7fffffu) | 0x800000u, E - 150, (int)(b >> 31));
        acc[i] = (sds_xsum_t)((unsigned __int128)acc[i] + t);
    }
    return bad;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SDS_XSUM_AVX512 1

// The same truncation, 8 values at a time. In double (a float converts exactly), |v| 2^64
// truncated is hi 2^64 + lo with hi = trunc(|v|) (below 2^62) and lo = (|v| - hi) 2^64 (below
// 2^64, exact), both converted to integers exactly; a negative v negates the pair. The pairs
// are interleaved into the accumulators' layout (low word first) and added as 64-bit lanes, a
// carry out of each low lane added into the high lane above it. Bit for bit the scalar loop's
// result (test_xsum checks it against long double on 2e6 values of every magnitude); 5-8x
// faster on this machine, where the scalar loop's variable 128-bit shifts and branches took
// 5-8 ns an entry and this runs at the speed of memory (~1 ns: 36 bytes an entry).
__attribute__((target("avx512f,avx512dq"))) static int
add_f32_avx512(sds_xsum_t *acc, const float *x, size_t n, double limit) {
    const __m512d two64 = _mm512_set1_pd(0x1p64), lim = _mm512_set1_pd((double)(float)limit);
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1);
    const __m512i lo4 = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);   // lanes 0-3 of lo, hi
    const __m512i hi4 = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4); // lanes 4-7
    unsigned bad = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512d d = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        const __mmask8 ok = _mm512_cmp_pd_mask(_mm512_abs_pd(d), lim, _CMP_LT_OQ); // NaN: not
        bad |= (unsigned)(__mmask8)~ok;
        const __m512d a = _mm512_maskz_mov_pd(ok, _mm512_abs_pd(d));
        const __m512d t = _mm512_roundscale_pd(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __m512i hi = _mm512_cvttpd_epu64(t);
        __m512i lo = _mm512_cvttpd_epu64(_mm512_mul_pd(_mm512_sub_pd(a, t), two64));
        // -(hi 2^64 + lo): lo' = -lo, hi' = -hi, less a borrow where lo != 0
        const __mmask8 neg = _mm512_mask_cmp_pd_mask(ok, d, _mm512_setzero_pd(), _CMP_LT_OQ);
        const __m512i nhi =
            _mm512_mask_sub_epi64(_mm512_sub_epi64(zero, hi), _mm512_test_epi64_mask(lo, lo),
                                  _mm512_sub_epi64(zero, hi), one);
        hi = _mm512_mask_mov_epi64(hi, neg, nhi);
        lo = _mm512_mask_sub_epi64(lo, neg, zero, lo);
        __m512i *p = (__m512i *)(void *)(acc + i);
        for (int k = 0; k < 2; k++) {
            const __m512i v = _mm512_permutex2var_epi64(lo, k ? hi4 : lo4, hi);
            const __m512i a0 = _mm512_loadu_si512(p + k);
            const __m512i s = _mm512_add_epi64(a0, v);
            const __mmask8 carry = _mm512_cmplt_epu64_mask(s, a0) & 0x55; // out of low lanes
            _mm512_storeu_si512(p + k, _mm512_mask_add_epi64(s, (__mmask8)(carry << 1), s, one));
        }
    }
    if (i < n) bad |= (unsigned)add_f32_scalar(acc + i, x + i, n - i, limit);
    return bad != 0;
}
#endif

#ifdef SDS_XSUM_AVX512
// The same, 4 values at a time, for CPUs with AVX2 but not AVX-512 (AMD before Zen 4, Intel
// before Skylake-SP), which have no double-to-integer conversion to 64 bits: straight from the
// float's bits instead, as the scalar loop. |v| 2^64 = M 2^sh, M the 24-bit significand and
// sh = E - 86; the 128-bit M 2^sh is lo = M << sh | M >> -sh and hi = M >> (64 - sh) |
// M << (sh - 64), AVX2's variable shifts giving 0 for every count outside 0-63 (a negative
// count is a huge unsigned one), so each half takes whichever term applies and a value below
// the grid gives 0. Then the sign and the lanes' addition as in the AVX-512 loop (the unsigned
// comparison for the carry by flipping the sign bits). 3-5x the scalar loop's speed on an
// AMD EPYC (Zen 3).
// *p += v as two 128-bit integers (low word first): a carry where a low lane's sum is below
// its old value (unsigned), added into the high lane above it.
__attribute__((target("avx2"))) static inline void add_pairs_avx2(__m256i *p, __m256i v,
                                                                  __m256i sign) {
    const __m256i a0 = _mm256_loadu_si256(p);
    const __m256i s = _mm256_add_epi64(a0, v);
    const __m256i carry = _mm256_cmpgt_epi64(_mm256_xor_si256(a0, sign), _mm256_xor_si256(s, sign));
    _mm256_storeu_si256(p, _mm256_sub_epi64(s, _mm256_slli_si256(carry, 8)));
}

__attribute__((target("avx2"))) static int add_f32_avx2(sds_xsum_t *acc, const float *x, size_t n,
                                                        double limit) {
    const __m128 lim = _mm_set1_ps((float)limit);
    const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi64x(-1);
    const __m256i expmask = _mm256_set1_epi64x(0xff), mantmask = _mm256_set1_epi64x(0x7fffff);
    const __m256i implicit = _mm256_set1_epi64x(0x800000), c86 = _mm256_set1_epi64x(86);
    const __m256i c64 = _mm256_set1_epi64x(64), sign = _mm256_set1_epi64x(INT64_MIN);
    int bad = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m128 f = _mm_loadu_ps(x + i);
        const __m128 ok = _mm_cmp_ps(_mm_and_ps(f, absmask), lim, _CMP_LT_OQ); // NaN: not
        bad |= _mm_movemask_ps(ok) != 0xf;
        const __m256i b = _mm256_cvtepu32_epi64(_mm_castps_si128(_mm_and_ps(f, ok))); // bad: 0
        const __m256i E = _mm256_and_si256(_mm256_srli_epi64(b, 23), expmask);
        __m256i M = _mm256_or_si256(_mm256_and_si256(b, mantmask), implicit);
        M = _mm256_andnot_si256(_mm256_cmpeq_epi64(E, zero), M); // zero or subnormal: 0
        const __m256i sh = _mm256_sub_epi64(E, c86);
        __m256i lo = _mm256_or_si256(_mm256_sllv_epi64(M, sh),
                                     _mm256_srlv_epi64(M, _mm256_sub_epi64(zero, sh)));
        __m256i hi = _mm256_or_si256(_mm256_srlv_epi64(M, _mm256_sub_epi64(c64, sh)),
                                     _mm256_sllv_epi64(M, _mm256_sub_epi64(sh, c64)));
        // -(hi 2^64 + lo) = (~hi + (lo == 0)) 2^64 - lo; the sign is bit 31 of b
        const __m256i neg = _mm256_cmpgt_epi64(zero, _mm256_slli_epi64(b, 32));
        const __m256i nhi =
            _mm256_sub_epi64(_mm256_xor_si256(hi, ones), _mm256_cmpeq_epi64(lo, zero));
        hi = _mm256_blendv_epi8(hi, nhi, neg);
        lo = _mm256_blendv_epi8(lo, _mm256_sub_epi64(zero, lo), neg);
        const __m256i v02 = _mm256_unpacklo_epi64(lo, hi), v13 = _mm256_unpackhi_epi64(lo, hi);
        __m256i *p = (__m256i *)(void *)(acc + i);
        // (the permutes' selectors are literal: an immediate must be one without optimisation)
        add_pairs_avx2(p, _mm256_permute2x128_si256(v02, v13, 0x20), sign);
        add_pairs_avx2(p + 1, _mm256_permute2x128_si256(v02, v13, 0x31), sign);
    }
    if (i < n) bad |= add_f32_scalar(acc + i, x + i, n - i, limit);
    return bad;
}
#endif

static int have_avx512(void) {
#ifdef SDS_XSUM_AVX512
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

static int have_avx2(void) {
#ifdef SDS_XSUM_AVX512
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

const char *sds_xsum_loop(void) {
    return have_avx512() ? "AVX-512" : have_avx2() ? "AVX2" : "scalar";
}

sds_xsum_add_fn sds_xsum_add_f32_loop(const char *name) {
    if (!strcmp(name, "scalar")) return add_f32_scalar;
#ifdef SDS_XSUM_AVX512
    if (!strcmp(name, "AVX-512") && have_avx512()) return add_f32_avx512;
    if (!strcmp(name, "AVX2") && have_avx2()) return add_f32_avx2;
#endif
    return NULL;
}

int sds_xsum_add_f32(sds_xsum_t *acc, const float *x, size_t n, double limit) {
#ifdef SDS_XSUM_AVX512
    if (have_avx512()) return add_f32_avx512(acc, x, n, limit);
    if (have_avx2()) return add_f32_avx2(acc, x, n, limit);
#endif
    return add_f32_scalar(acc, x, n, limit);
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

#include "pattern.h"

#include "sds_error.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Strict decimal integer: digits only, no sign, no spaces.
static int parse_count(const char *s, size_t len, int32_t *out) {
    if (len == 0 || len > 9) return 0;
    int32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

int sds_pattern_parse(const char *text, sds_pattern *out) {
    if (!text || !*text)
        return sds_error_set(SDS_ERR_USAGE, "--sparsity: empty value (expected a fraction like "
                                            "0.5 or an N:M pattern like 2:4)");
    const char *colon = strchr(text, ':');
    if (colon) {
        int32_t n = 0, m = 0;
        if (!parse_count(text, (size_t)(colon - text), &n) ||
            !parse_count(colon + 1, strlen(colon + 1), &m))
            return sds_error_set(SDS_ERR_USAGE,
                                 "--sparsity: \"%s\" is not an N:M pattern like 2:4 or 4:8", text);
        if (m < 2 || m > SDS_PATTERN_MAX_M || n < 1 || n >= m)
            return sds_error_set(SDS_ERR_USAGE,
                                 "--sparsity: \"%s\" needs 0 < N < M <= %d (N zeros in every "
                                 "group of M consecutive weights)",
                                 text, SDS_PATTERN_MAX_M);
        *out = (sds_pattern){.kind = SDS_PATTERN_NM, .p = (double)n / m, .n = n, .m = m};
        return SDS_OK;
    }
    char *end = NULL;
    errno = 0;
    double p = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || text[0] == ' ' || text[0] == '\t')
        return sds_error_set(SDS_ERR_USAGE,
                             "--sparsity: \"%s\" is neither a fraction like 0.5 nor an N:M "
                             "pattern like 2:4",
                             text);
    if (!(p > 0.0 && p < 1.0))
        return sds_error_set(SDS_ERR_USAGE,
                             "--sparsity: fraction %s is out of range (expected 0 < p < 1)", text);
    *out = (sds_pattern){.kind = SDS_PATTERN_UNSTRUCTURED, .p = p, .n = 0, .m = 0};
    return SDS_OK;
}

int sds_pattern_check(sds_pattern p, int64_t rows, int64_t cols, const char *what) {
    char name[32];
    sds_pattern_format(p, name, sizeof name);
    if (rows < 1 || cols < 1)
        return sds_error_set(SDS_ERR_INPUT, "--sparsity %s: %s has an empty shape (%lld, %lld)",
                             name, what, (long long)rows, (long long)cols);
    if (p.kind == SDS_PATTERN_NM) {
        if (p.m < 2 || p.n < 1 || p.n >= p.m || p.m > SDS_PATTERN_MAX_M)
            return sds_error_set(SDS_ERR_USAGE, "--sparsity %s: invalid N:M pattern", name);
        if (cols % p.m != 0)
            return sds_error_set(SDS_ERR_USAGE,
                                 "--sparsity %s: %s has %lld input columns, not a multiple of %d",
                                 name, what, (long long)cols, p.m);
    } else if (!(p.p > 0.0 && p.p < 1.0)) {
        return sds_error_set(SDS_ERR_USAGE, "--sparsity %s: fraction out of range (0, 1)", name);
    }
    return SDS_OK;
}

void sds_pattern_format(sds_pattern p, char *buf, size_t size) {
    if (p.kind == SDS_PATTERN_NM)
        snprintf(buf, size, "%d:%d", p.n, p.m);
    else
        snprintf(buf, size, "%g", p.p);
}

double sds_pattern_fraction(sds_pattern p) {
    return p.kind == SDS_PATTERN_NM ? (double)p.n / p.m : p.p;
}

int64_t sds_pattern_kth(int64_t count, double p) {
    int64_t k = (int64_t)((double)count * p);
    if (k > count - 1) k = count - 1; // p < 1 guarantees this; keeps the index in range
    if (k < 0) k = 0;
    return k;
}

static float median3(float a, float b, float c) {
    if (a < b) {
        if (b < c) return b;
        return a < c ? c : a;
    }
    if (a < c) return a;
    return b < c ? c : b;
}

// Hoare partitioning around a median-of-three value; runs of equal values split evenly, so
// many ties (dead inputs, zeros) cost no more than distinct values.
float sds_select_kth(float *a, int64_t n, int64_t k) {
    SDS_ASSERT(n > 0 && k >= 0 && k < n);
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        float x = median3(a[lo], a[lo + (hi - lo) / 2], a[hi]);
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < x) i++;
            while (a[j] > x) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break; // a[j+1 .. i-1] all equal x
    }
    return a[k];
}

// A float's bits mapped so that unsigned order is the floats' order (-0 just below +0).
static uint32_t order_key(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b ^ (b >> 31 ? 0xFFFFFFFFu : 0x80000000u); // negatives: all bits; others: the sign
}

float sds_kth_smallest(const float *a, int64_t n, int64_t k) {
    SDS_ASSERT(n > 0 && k >= 0 && k < n);
    // pass 0: the top 11 bits; pass 1: the next 11 among keys with that top; pass 2: the last 10.
    static const int shift[3] = {21, 10, 0}, width[3] = {11, 11, 10};
    uint32_t prefix = 0; // the key's bits above shift[pass], found so far
    int64_t rank = k;    // k's rank among the keys that share the prefix
    for (int pass = 0; pass < 3; pass++) {
        int64_t hist[(1 << 11) + 1] = {0}; // the last bin counts the keys without the prefix
        const int s = shift[pass], nb = 1 << width[pass];
        const int top = s + width[pass]; // the prefix is key >> top
        for (int64_t i = 0; i < n; i++) {
            const uint32_t key = order_key(a[i]);
            const uint32_t bin = (key >> s) & (uint32_t)(nb - 1);
            const int match = top == 32 || (key >> (top & 31)) == prefix;
            hist[match ? bin : (uint32_t)nb]++;
        }
        int bin = 0;
        while (rank >= hist[bin]) rank -= hist[bin++];
        prefix = (prefix << width[pass]) | (uint32_t)bin;
    }
    const uint32_t b = prefix & 0x80000000u ? prefix ^ 0x80000000u : ~prefix;
    float v;
    memcpy(&v, &b, sizeof v);
    return v;
}

int sds_select_kth_local(void *ctx, const float *scores_local, int64_t n_local, int64_t n_global,
                         int64_t k, float *value) {
    (void)ctx;
    SDS_ASSERT(n_local == n_global);
    *value = sds_kth_smallest(scores_local, n_local, k);
    return SDS_OK;
}

// The n smallest by (score, index), the order the selection below makes: index j is among them
// when fewer than n others come before it (a smaller score, or an equal one at a lower index).
// Comparisons only, no data-dependent branches (the loop below mispredicts on random scores).
// Returns how many it flagged: n exactly when no score is NaN (a NaN compares false both ways,
// so it would be flagged along with the n smallest others; the loop below decides then).
int32_t sds_pattern_nm_by_rank(const float *s, int32_t n, int32_t m, uint8_t *mask) {
    int32_t total = 0;
    if (m == 4) {
        const float a = s[0], b = s[1], c = s[2], d = s[3];
        const int32_t ab = a <= b, ac = a <= c, ad = a <= d, bc = b <= c, bd = b <= d, cd = c <= d;
        // rank of a: b, c, d below it (strictly); of b: a at or below it, c, d below it; ...
        const int32_t ra = (b < a) + (c < a) + (d < a);
        const int32_t rb = ab + (c < b) + (d < b);
        const int32_t rc = ac + bc + (d < c);
        const int32_t rd = ad + bd + cd;
        mask[0] = (uint8_t)(ra < n);
        mask[1] = (uint8_t)(rb < n);
        mask[2] = (uint8_t)(rc < n);
        mask[3] = (uint8_t)(rd < n);
        return mask[0] + mask[1] + mask[2] + mask[3];
    }
    for (int32_t j = 0; j < m; j++) {
        int32_t r = 0;
        for (int32_t i = 0; i < j; i++) r += s[i] <= s[j];
        for (int32_t i = j + 1; i < m; i++) r += s[i] < s[j];
        mask[j] = (uint8_t)(r < n);
        total += mask[j];
    }
    return total;
}

void sds_pattern_nm_group(const float *scores, int32_t n, int32_t m, uint8_t *mask) {
    if (sds_pattern_nm_by_rank(scores, n, m, mask) == n) return;
    for (int32_t j = 0; j < m; j++) mask[j] = 0;
    for (int32_t t = 0; t < n; t++) {
        int32_t best = -1;
        for (int32_t j = 0; j < m; j++) {
            if (mask[j]) continue;
            if (best < 0 || scores[j] < scores[best]) best = j;
        }
        mask[best] = 1;
    }
}

// (score, index) order: a total order, so the k smallest are exactly a stable sort's first k.
static int stable_less(const float *s, int64_t a, int64_t b) {
    // cppcheck-suppress arrayIndexThenCheck ; a < b compares positions, not a bound
    return s[a] < s[b] || (s[a] == s[b] && a < b);
}

void sds_pattern_smallest_k(const float *scores, int64_t n, int64_t k, int64_t *work,
                            uint8_t *mask) {
    for (int64_t i = 0; i < n; i++) mask[i] = 0;
    if (k <= 0) return;
    if (k >= n) {
        for (int64_t i = 0; i < n; i++) mask[i] = 1;
        return;
    }
    int64_t *idx = work;
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    // Quickselect on indices for position k-1; keys are distinct, so Hoare's scheme is exact.
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (hi > lo) {
        int64_t a = idx[lo], b = idx[lo + (hi - lo) / 2], c = idx[hi];
        int64_t piv;
        if (stable_less(scores, a, b))
            piv = stable_less(scores, b, c) ? b : (stable_less(scores, a, c) ? c : a);
        else
            piv = stable_less(scores, a, c) ? a : (stable_less(scores, b, c) ? c : b);
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (stable_less(scores, idx[i], piv)) i++;
            while (stable_less(scores, piv, idx[j])) j--;
            if (i <= j) {
                int64_t t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
    for (int64_t i = 0; i < k; i++) mask[idx[i]] = 1;
}

void sds_pattern_apply(float *W, const uint8_t *mask, int64_t numel) {
    // W[i] = +0.0f where masked, by clearing its bits: branch-free, so it vectorises
    for (int64_t i = 0; i < numel; i++) {
        uint32_t u;
        memcpy(&u, &W[i], sizeof u);
        u &= -(uint32_t)(mask[i] == 0);
        memcpy(&W[i], &u, sizeof u);
    }
}

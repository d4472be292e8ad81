// Sparsity patterns (--sparsity) and the selections that turn scores into a pruning mask.
// Masks are uint8_t, 1 = pruned, laid out like the weight they describe.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SDS_PATTERN_UNSTRUCTURED = 0, // a fraction p of the weights, wherever they are
    SDS_PATTERN_NM = 1            // n zeros in every group of m consecutive columns of a row
} sds_pattern_kind;

typedef struct {
    sds_pattern_kind kind;
    double p;  // SDS_PATTERN_UNSTRUCTURED: fraction pruned, 0 < p < 1
    int32_t n; // SDS_PATTERN_NM: zeros per group, 0 < n < m
    int32_t m; // SDS_PATTERN_NM: group width in columns, m <= SDS_PATTERN_MAX_M
} sds_pattern;

#define SDS_PATTERN_MAX_M 256

// Parses "0.5" / "0.7" (a fraction) or "2:4" / "4:8" (N:M). Usage error naming --sparsity.
int sds_pattern_parse(const char *text, sds_pattern *out);
// Checks that the pattern fits a (rows, cols) weight, e.g. cols divisible by m. Usage error
// naming --sparsity and `what` (the tensor).
int sds_pattern_check(sds_pattern p, int64_t rows, int64_t cols, const char *what);
// "0.5" or "2:4", into buf (size bytes).
void sds_pattern_format(sds_pattern p, char *buf, size_t size);
// Fraction of weights the pattern prunes (p, or n/m).
double sds_pattern_fraction(sds_pattern p);
// Number of pruned entries among `count` by the reference's rule: floor(count * p) for an
// unstructured pattern, computed as Python's int(count * p) in double.
int64_t sds_pattern_kth(int64_t count, double p);

// The k-th smallest (0-based) score over every shard of a distributed score array, given this
// shard's n_local scores (local; left unchanged). n_global is the total over all shards
// (global). Returns a status code; *value is the same on every shard.
typedef int (*sds_select_fn)(void *ctx, const float *scores_local, int64_t n_local,
                             int64_t n_global, int64_t k, float *value);
// Single-process select: exact k-th smallest of scores (n_local == n_global), the value
// torch.sort(scores)[0][k] gives (sds_kth_smallest). ctx is unused.
int sds_select_kth_local(void *ctx, const float *scores_local, int64_t n_local, int64_t n_global,
                         int64_t k, float *value);
// In-place quickselect: afterwards a[k] holds the k-th smallest value. NaN-free input.
float sds_select_kth(float *a, int64_t n, int64_t k);
// The same value without moving a: a radix select on the floats' order-preserving bit keys,
// three counting passes over a (11, 11 and 10 bits). NaN-free input; where the k-th smallest
// is a zero it may return -0 for +0 (they compare equal).
float sds_kth_smallest(const float *a, int64_t n, int64_t k);

// N:M within one group: marks (mask[j] = 1) the n smallest of scores[0..m), ties to the lower
// column, the order a stable sort gives.
void sds_pattern_nm_group(const float *scores, int32_t n, int32_t m, uint8_t *mask);
// Its fast path: the same selection from comparison ranks, without data-dependent branches.
// Returns how many it flagged: n exactly when no score is NaN (then sds_pattern_nm_group falls
// back to a loop that gives NaN an order).
int32_t sds_pattern_nm_by_rank(const float *scores, int32_t n, int32_t m, uint8_t *mask);
// Marks the k smallest of scores[0..n) in stable order (ties to the lower index), as
// torch.sort(scores, stable=True)[1][:k] does. work holds n int64_t.
void sds_pattern_smallest_k(const float *scores, int64_t n, int64_t k, int64_t *work,
                            uint8_t *mask);
// Applies a mask to a (rows, cols) row-major weight: W[i] = 0 where mask[i] == 1.
void sds_pattern_apply(float *W, const uint8_t *mask, int64_t numel);

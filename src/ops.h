// Transformer building blocks over plain fp32 arrays, row-major, shapes in the names.
// Matrix products go through OpenBLAS (cblas, row-major).
#pragma once
#include "capture.h"

#include <stdint.h>

// out (T,OC) = inp (T,IC) @ weight (OC,IC)^T + bias (OC) [bias may be NULL]
void sds_linear(float *out, const float *inp, const float *weight, const float *bias, int64_t T,
                int64_t IC, int64_t OC);
// The same, with the output before the bias handed to c's `out` (if it watches outputs) as
// linear sublayer `linear`; the result is the very bits of sds_linear's.
void sds_linear_watched(const sds_capture *c, int32_t linear, float *out, const float *inp,
                        const float *weight, const float *bias, int64_t T, int64_t IC, int64_t OC);
// out (T,C) = layernorm(inp (T,C)) * weight + bias [weight, bias may be NULL]; out may be inp
void sds_layernorm(float *out, const float *inp, const float *weight, const float *bias, int64_t T,
                   int64_t C, float eps);
// out (T,C) = inp / rms(inp) * weight; out may be inp
void sds_rmsnorm(float *out, const float *inp, const float *weight, int64_t T, int64_t C,
                 float eps);
void sds_relu(float *x, int64_t n);
// x (n) += y (n)
void sds_add(float *x, const float *y, int64_t n);

// Causal self-attention, one sequence.
// out (T, NH*HD) from q (T, NH*HD), k and v (T, NKV*HD); query head h reads kv head
// h / (NH/NKV) (grouped-query attention; NKV = NH is plain multi-head). q is not scaled here:
// scores are (q . k) * scale. scratch holds at least sds_attention_scratch(T) floats.
void sds_attention(float *out, const float *q, const float *k, const float *v, int64_t T,
                   int64_t NH, int64_t NKV, int64_t HD, float scale, float *scratch);
int64_t sds_attention_scratch(int64_t T);

// Sum over t in [0, T-1) of -log softmax(logits[t])[targets[t+1]]... see sds_nll_rows.
// logits (n, V): returns sum over rows r of (logsumexp(logits[r]) - logits[r][targets[r]]),
// in double.
double sds_nll_rows(const float *logits, const int32_t *targets, int64_t n, int64_t V);

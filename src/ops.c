#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

static void add_bias(float *out, const float *bias, int64_t T, int64_t OC) {
    for (int64_t t = 0; t < T; t++) {
        float *o = out + t * OC;
        for (int64_t i = 0; i < OC; i++) o[i] += bias[i];
    }
}

void sds_linear(float *out, const float *inp, const float *weight, const float *bias, int64_t T,
                int64_t IC, int64_t OC) {
    // row-major: out (T,OC) = inp (T,IC) * weight^T, weight stored (OC,IC)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)OC, (int)IC, 1.0f, inp,
                (int)IC, weight, (int)IC, 0.0f, out, (int)OC);
    if (bias) add_bias(out, bias, T, OC);
}

void sds_linear_watched(const sds_capture *c, int32_t linear, float *out, const float *inp,
                        const float *weight, const float *bias, int64_t T, int64_t IC, int64_t OC) {
    if (!sds_capture_wants_out(c)) {
        sds_linear(out, inp, weight, bias, T, IC, OC);
        return;
    }
    sds_linear(out, inp, weight, NULL, T, IC, OC);
    c->out(c->ctx, linear, out, T, OC);
    if (bias) add_bias(out, bias, T, OC);
}

void sds_layernorm(float *out, const float *inp, const float *weight, const float *bias, int64_t T,
                   int64_t C, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *x = inp + t * C;
        float *o = out + t * C;
        // double accumulation: the statistics then do not depend on C's size
        double mean = 0.0;
        for (int64_t i = 0; i < C; i++) mean += x[i];
        mean /= (double)C;
        double var = 0.0;
        for (int64_t i = 0; i < C; i++) {
            double d = x[i] - mean;
            var += d * d;
        }
        var /= (double)C;
        float rstd = (float)(1.0 / sqrt(var + eps));
        float m = (float)mean;
        for (int64_t i = 0; i < C; i++) {
            float n = (x[i] - m) * rstd;
            if (weight) n *= weight[i];
            if (bias) n += bias[i];
            o[i] = n;
        }
    }
}

void sds_rmsnorm(float *out, const float *inp, const float *weight, int64_t T, int64_t C,
                 float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *x = inp + t * C;
        float *o = out + t * C;
        double ss = 0.0;
        for (int64_t i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / (double)C + eps));
        for (int64_t i = 0; i < C; i++) o[i] = (x[i] * r) * (weight ? weight[i] : 1.0f);
    }
}

void sds_relu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void sds_add(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

// Rows are processed in blocks so that only the causal part [0, r1) of the scores is formed.
#define SDS_ATTN_ROWS 128

int64_t sds_attention_scratch(int64_t T) {
    return (int64_t)SDS_ATTN_ROWS * T;
}

void sds_attention(float *out, const float *q, const float *k, const float *v, int64_t T,
                   int64_t NH, int64_t NKV, int64_t HD, float scale, float *scratch) {
    const int64_t C = NH * HD, CKV = NKV * HD, group = NH / NKV;
    for (int64_t h = 0; h < NH; h++) {
        const float *qh = q + h * HD;           // (T,HD) with leading dim C
        const float *kh = k + (h / group) * HD; // (T,HD) with leading dim CKV
        const float *vh = v + (h / group) * HD;
        float *oh = out + h * HD;
        for (int64_t r0 = 0; r0 < T; r0 += SDS_ATTN_ROWS) {
            int64_t r1 = r0 + SDS_ATTN_ROWS < T ? r0 + SDS_ATTN_ROWS : T;
            int64_t nr = r1 - r0;
            float *s = scratch; // (nr, r1): scores of rows [r0,r1) against keys [0,r1)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)r1, (int)HD, scale,
                        qh + r0 * C, (int)C, kh, (int)CKV, 0.0f, s, (int)r1);
            for (int64_t i = 0; i < nr; i++) {
                float *row = s + i * r1;
                int64_t n = r0 + i + 1; // keys 0..t inclusive
                float mx = row[0];
                for (int64_t j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
                float sum = 0.0f;
                for (int64_t j = 0; j < n; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                float inv = 1.0f / sum;
                for (int64_t j = 0; j < n; j++) row[j] *= inv;
                for (int64_t j = n; j < r1; j++) row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)HD, (int)r1, 1.0f,
                        s, (int)r1, vh, (int)CKV, 0.0f, oh + r0 * C, (int)C);
        }
    }
}

double sds_nll_rows(const float *logits, const int32_t *targets, int64_t n, int64_t V) {
    double total = 0.0;
    for (int64_t r = 0; r < n; r++) {
        const float *x = logits + r * V;
        float mx = x[0];
        for (int64_t j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        double sum = 0.0;
        for (int64_t j = 0; j < V; j++) sum += exp((double)(x[j] - mx));
        // sum >= 1: the maximum contributes exp(0)
        // cppcheck-suppress invalidFunctionArg
        total += (double)mx + log(sum) - (double)x[targets[r]];
    }
    return total;
}

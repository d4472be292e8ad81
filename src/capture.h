// Watching the inputs of a decoder layer's linear sublayers during a forward pass: pruning
// statistics (Hessians, Wanda norms) are accumulated from exactly what each sublayer reads.
#pragma once
#include <stdint.h>

// Input groups: sublayers that read the same input share one group (and one Hessian).
//   OPT:   0 q,k,v_proj (C) | 1 out_proj (C) | 2 fc1 (C)           | 3 fc2 (F)
//   Llama: 0 q,k,v_proj (C) | 1 o_proj (Q)   | 2 gate,up_proj (C)  | 3 down_proj (F)
#define SDS_CAPTURE_GROUPS 4

typedef struct {
    // x (T, cols), row-major, valid only during the call.
    void (*fn)(void *ctx, int32_t group, const float *x, int64_t T, int64_t cols);
    void *ctx;
    // Optional: the output of linear sublayer `linear` (sds_model_linear's index) before its
    // bias, y = x W^T (T, rows), valid only during the call; NULL when not watched.
    void (*out)(void *ctx, int32_t linear, const float *y, int64_t T, int64_t rows);
} sds_capture;

static inline void sds_capture_call(const sds_capture *c, int32_t group, const float *x, int64_t T,
                                    int64_t cols) {
    if (c && c->fn) c->fn(c->ctx, group, x, T, cols);
}

static inline int sds_capture_wants_out(const sds_capture *c) {
    return c && c->out;
}

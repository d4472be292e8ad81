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
} sds_capture;

static inline void sds_capture_call(const sds_capture *c, int32_t group, const float *x, int64_t T,
                                    int64_t cols) {
    if (c && c->fn) c->fn(c->ctx, group, x, T, cols);
}

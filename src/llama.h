// Llama decoder (Hugging Face LlamaForCausalLM semantics, transformers 4.44), fp32, one sequence
// at a time. Shapes: C = hidden_size, F = intermediate_size, NH = heads, NKV = key/value heads,
// HD = head_dim, Q = NH*HD, KV = NKV*HD, V = vocab_size, T = tokens.
#pragma once
#include "capture.h"
#include "model_config.h"

#include <stddef.h>
#include <stdint.h>

// Linear sublayers of one decoder layer, in the order pruning visits them.
typedef enum {
    SDS_LLAMA_Q = 0,
    SDS_LLAMA_K,
    SDS_LLAMA_V,
    SDS_LLAMA_O,
    SDS_LLAMA_GATE,
    SDS_LLAMA_UP,
    SDS_LLAMA_DOWN,
    SDS_LLAMA_N_LINEAR
} sds_llama_linear;

typedef struct {
    // One buffer per layer, carved into named pointers, so a rank can hold only its layers.
    float *params;
    size_t n_params;
    float *q_w;                    // (Q,C)
    float *k_w, *v_w;              // (KV,C)
    float *o_w;                    // (C,Q)
    float *q_b, *k_b, *v_b, *o_b;  // (Q), (KV), (KV), (C) or NULL without attention_bias
    float *gate_w, *up_w;          // (F,C)
    float *down_w;                 // (C,F)
    float *gate_b, *up_b, *down_b; // (F), (F), (C) or NULL without mlp_bias
    float *attn_norm_w;            // input_layernorm (C)
    float *mlp_norm_w;             // post_attention_layernorm (C)
} sds_llama_layer;

typedef struct {
    sds_model_config cfg;
    float *params; // embeddings, final norm, untied head
    size_t n_params;
    float *embed_tokens;     // (V,C)
    float *final_norm_w;     // model.norm (C)
    float *lm_head;          // (V,C): embed_tokens when tied
    sds_llama_layer *layers; // n_layers entries (params NULL for layers not held)
    int has_embed;           // embed_tokens held for the embedding
    int has_head;            // final norm and lm_head held
} sds_llama_model;

// Allocates the parameter buffers for cfg (zeroed). Returns SDS_OK or an error.
int sds_llama_alloc(sds_llama_model *m, const sds_model_config *cfg);
// The same for decoder layers [layer_lo, layer_hi) only (clamped to [0, n_layers]), with the
// embedding (embed) and the head (head: final norm, lm_head; a tied head holds embed_tokens)
// when asked. Other layers keep params NULL and n_params 0; params holds what is asked in
// sds_llama_alloc's order (NULL when nothing).
int sds_llama_alloc_part(sds_llama_model *m, const sds_model_config *cfg, int64_t layer_lo,
                         int64_t layer_hi, int embed, int head);
void sds_llama_free(sds_llama_model *m);
// Weight matrix of a linear sublayer (rows,cols) for messages and pruning.
float *sds_llama_linear_weight(sds_llama_layer *l, sds_llama_linear which, int64_t *rows,
                               int64_t *cols, const sds_model_config *cfg);
// Its bias (rows), or NULL when the model has none.
float *sds_llama_linear_bias(sds_llama_layer *l, sds_llama_linear which);
const char *sds_llama_linear_name(sds_llama_linear which); // "self_attn.q_proj", ...

// inv_freq (HD/2) of the rotary embedding, rounded as transformers computes it in fp32.
void sds_llama_rope_inv_freq(const sds_model_config *cfg, float *inv_freq);

// Scratch for one sequence of up to T tokens.
typedef struct {
    int64_t T;
    float *x;                   // (T,C) residual stream
    float *h;                   // (T,C) normed input, sublayer output
    float *q, *att;             // (T,Q)
    float *k, *v;               // (T,KV)
    float *gate, *up;           // (T,F)
    float *scores;              // attention scratch
    float *rope_cos, *rope_sin; // (T,HD/2) for positions 0..T-1
    float *logits;              // (chunk,V)
    const sds_capture *capture; // NULL, or sees every linear sublayer's input (and output)
} sds_llama_work;

int sds_llama_work_alloc(sds_llama_work *w, const sds_model_config *cfg, int64_t T);
void sds_llama_work_free(sds_llama_work *w);

// x (T,C) = input of layer 0 for tokens (T).
void sds_llama_embed(const sds_llama_model *m, const int32_t *tokens, int64_t T, float *x);
// x (T,C) = layer l (x (T,C)), in place; tokens at positions 0..T-1 (T <= w->T); l must be held.
void sds_llama_layer_forward(const sds_llama_model *m, const sds_llama_layer *l, float *x,
                             int64_t T, sds_llama_work *w);
// y (T,C) = final RMSNorm of x (T,C); y may be x.
void sds_llama_head_prepare(const sds_llama_model *m, const float *x, int64_t T, float *y);
// logits (T,V) of the prepared head input y (T,C).
void sds_llama_logits(const sds_llama_model *m, const float *y, int64_t T, float *logits);
// Sum over t in [0,T-1) of -log p(tokens[t+1] | tokens[..t]) given x (T,C), the output of the
// last decoder layer (final norm, logits in chunks); x is not modified (it may be w->x, not
// another of w's buffers).
double sds_llama_head_nll(const sds_llama_model *m, const int32_t *tokens, const float *x,
                          int64_t T, sds_llama_work *w);
// Sum over t in [0,T-1) of -log p(tokens[t+1] | tokens[..t]) for one whole window (double):
// embed, every layer, then sds_llama_head_nll.
double sds_llama_window_nll(const sds_llama_model *m, const int32_t *tokens, int64_t T,
                            sds_llama_work *w);

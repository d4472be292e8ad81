// OPT decoder (Hugging Face OPTForCausalLM semantics), fp32, one sequence at a time.
// Shapes: C = hidden_size, F = ffn_dim, E = word_embed_proj_dim, V = vocab_size, T = tokens.
#pragma once
#include "capture.h"
#include "model_config.h"

#include <stddef.h>
#include <stdint.h>

// Linear sublayers of one decoder layer, in the order pruning visits them.
typedef enum {
    SDS_OPT_Q = 0,
    SDS_OPT_K,
    SDS_OPT_V,
    SDS_OPT_OUT,
    SDS_OPT_FC1,
    SDS_OPT_FC2,
    SDS_OPT_N_LINEAR
} sds_opt_linear;

typedef struct {
    // One buffer per layer, carved into named pointers, so a rank can hold only its layers.
    float *params;
    size_t n_params;
    float *q_w, *k_w, *v_w, *out_w; // (C,C)
    float *q_b, *k_b, *v_b, *out_b; // (C) or NULL without bias
    float *attn_ln_w, *attn_ln_b;   // self_attn_layer_norm (C) or NULL without affine
    float *fc1_w, *fc1_b;           // (F,C), (F)
    float *fc2_w, *fc2_b;           // (C,F), (C)
    float *ffn_ln_w, *ffn_ln_b;     // the layer's final_layer_norm (C)
} sds_opt_layer;

typedef struct {
    sds_model_config cfg;
    float *params; // embeddings, projections, final norm, untied head
    size_t n_params;
    float *embed_tokens;            // (V,E)
    float *embed_positions;         // (max_position_embeddings + 2, C)
    float *project_in;              // (C,E) or NULL when E == C
    float *project_out;             // (E,C) or NULL when E == C
    float *final_ln_w, *final_ln_b; // (C) or NULL (post-LN models have none)
    float *lm_head;                 // (V,E): embed_tokens when tied
    sds_opt_layer *layers;          // n_layers entries (params NULL for layers not held)
    int has_embed;                  // embed_tokens, embed_positions, project_in held
    int has_head;                   // final norm, project_out, lm_head held
} sds_opt_model;

// Allocates the parameter buffers for cfg (zeroed). Returns SDS_OK or an error.
int sds_opt_alloc(sds_opt_model *m, const sds_model_config *cfg);
// The same for decoder layers [layer_lo, layer_hi) only (clamped to [0, n_layers]), with the
// embeddings (embed: embed_tokens, embed_positions, project_in) and the head (head: final norm,
// project_out, lm_head; a tied head holds embed_tokens) when asked. Other layers keep params NULL
// and n_params 0; params holds what is asked in sds_opt_alloc's order (NULL when nothing).
int sds_opt_alloc_part(sds_opt_model *m, const sds_model_config *cfg, int64_t layer_lo,
                       int64_t layer_hi, int embed, int head);
void sds_opt_free(sds_opt_model *m);
// Weight matrix of a linear sublayer (rows,cols) for messages and pruning.
float *sds_opt_linear_weight(sds_opt_layer *l, sds_opt_linear which, int64_t *rows, int64_t *cols,
                             const sds_model_config *cfg);
const char *sds_opt_linear_name(sds_opt_linear which); // "self_attn.q_proj", ...

// Scratch for one sequence of up to T tokens.
typedef struct {
    int64_t T;
    float *x;                   // (T,C) residual stream
    float *h;                   // (T,C) normed input
    float *q, *k, *v, *att;     // (T,C)
    float *ff;                  // (T,F)
    float *scores;              // attention scratch
    float *emb;                 // (T,E)
    float *logits;              // (chunk,V)
    const sds_capture *capture; // NULL, or sees every linear sublayer's input (and output)
} sds_opt_work;

int sds_opt_work_alloc(sds_opt_work *w, const sds_model_config *cfg, int64_t T);
void sds_opt_work_free(sds_opt_work *w);

// x (T,C) = input of layer 0 for tokens (T).
void sds_opt_embed(const sds_opt_model *m, const int32_t *tokens, int64_t T, float *x,
                   sds_opt_work *w);
// x (T,C) = layer l (x (T,C)), in place; l must be held.
void sds_opt_layer_forward(const sds_opt_model *m, const sds_opt_layer *l, float *x, int64_t T,
                           sds_opt_work *w);
// y (T,E) = final norm and project_out of x (T,C) (x is overwritten).
void sds_opt_head_prepare(const sds_opt_model *m, float *x, int64_t T, float *y);
// logits (T,V) of the prepared head input y (T,E).
void sds_opt_logits(const sds_opt_model *m, const float *y, int64_t T, float *logits);
// Sum over t in [0,T-1) of -log p(tokens[t+1] | tokens[..t]) given x (T,C), the output of the
// last decoder layer (final norm, project_out, logits in chunks); x is not modified (it may be
// w->x, not another of w's buffers).
double sds_opt_head_nll(const sds_opt_model *m, const int32_t *tokens, const float *x, int64_t T,
                        sds_opt_work *w);
// Sum over t in [0,T-1) of -log p(tokens[t+1] | tokens[..t]) for one whole window (double):
// embed, every layer, then sds_opt_head_nll.
double sds_opt_window_nll(const sds_opt_model *m, const int32_t *tokens, int64_t T,
                          sds_opt_work *w);

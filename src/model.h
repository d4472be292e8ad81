// A decoder-only language model of any supported architecture, behind one small interface.
#pragma once
#include "llama.h"
#include "model_config.h"
#include "opt.h"

// Parts of a model besides its decoder layers (sds_model_load_part).
enum { SDS_MODEL_EMBED = 1, SDS_MODEL_HEAD = 2 };

typedef struct {
    sds_arch arch;
    sds_model_config cfg;  // always complete, whatever part is held
    sds_opt_model opt;     // when arch == SDS_ARCH_OPT
    sds_llama_model llama; // when arch == SDS_ARCH_LLAMA
} sds_model;

typedef struct {
    sds_arch arch;
    sds_opt_work opt;
    sds_llama_work llama;
} sds_model_work;

// Frees a whole or partially loaded model.
void sds_model_free(sds_model *m);
// 1 when decoder layer `layer`'s weights are held by this process (0 outside [0, n_layers)).
int sds_model_has_layer(const sds_model *m, int64_t layer);
// Whether the embeddings (SDS_MODEL_EMBED) / the head (SDS_MODEL_HEAD) are held: a mask.
int32_t sds_model_parts(const sds_model *m);
// Bytes of fp32 parameters this process holds (all loaded buffers), for memory reports.
size_t sds_model_held_bytes(const sds_model *m);
// Scratch for sequences of up to T tokens.
int sds_model_work_alloc(sds_model_work *w, const sds_model *m, int64_t T);
void sds_model_work_free(sds_model_work *w);
// Sum of the NLL of tokens[1..T) given their prefixes, in double: exactly sds_model_embed, every
// sds_model_layer_forward, then sds_model_head_nll (needs the whole model).
double sds_model_window_nll(const sds_model *m, const int32_t *tokens, int64_t T,
                            sds_model_work *w);
// Sum of the NLL of tokens[1..T) given the final hidden states x (T, C) of the last decoder layer
// (the head: final norm, projection, logits, log-softmax), in double; needs SDS_MODEL_HEAD.
// x is not modified; it may be the caller's buffer or the work's residual stream (w->opt.x,
// w->llama.x), not another of w's buffers. embed -> layers on several processes -> head_nll
// gives the same bits as sds_model_window_nll.
double sds_model_head_nll(const sds_model *m, const int32_t *tokens, const float *x, int64_t T,
                          sds_model_work *w);
// logits (T,V) of one sequence ids (T), T <= the work's T.
void sds_model_forward_logits(const sds_model *m, const int32_t *ids, int64_t T, float *logits,
                              sds_model_work *w);

// ---- layer by layer (pruning) ----

// A linear sublayer of a decoder layer: its weight (rows = out_features, cols = in_features,
// row-major), the input group it reads (see capture.h) and its Hugging Face name suffix.
typedef struct {
    float *w;
    int64_t rows, cols;
    int32_t group;
    const char *name; // "self_attn.q_proj", "fc1", "mlp.down_proj", ...
} sds_linear_ref;

// Linear sublayers per decoder layer (OPT 6, Llama 7), in the order pruning visits them.
int32_t sds_model_n_linear(const sds_model *m);
// Sublayer i of a held layer (asserts that the layer is held).
sds_linear_ref sds_model_linear(sds_model *m, int64_t layer, int32_t i);
// Width of the residual stream (C).
int64_t sds_model_width(const sds_model *m);
// x (T,C) = input of layer 0 for tokens (T); needs SDS_MODEL_EMBED.
void sds_model_embed(const sds_model *m, const int32_t *tokens, int64_t T, float *x,
                     sds_model_work *w);
// x (T,C) = decoder layer `layer` applied to x, in place; with w's capture (if set) called for
// every input group (and every linear sublayer's output, if it watches them). The layer must be
// held.
void sds_model_layer_forward(const sds_model *m, int64_t layer, float *x, int64_t T,
                             sds_model_work *w);
void sds_model_work_set_capture(sds_model_work *w, const sds_capture *c);
// The Hugging Face module name of sublayer i of a layer ("model.decoder.layers.3.fc1",
// "model.layers.3.mlp.down_proj"): how weights are named in outputs.
void sds_model_linear_module(const sds_model *m, int64_t layer, int32_t i, char *buf, size_t cap);

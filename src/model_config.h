// The resolved configuration of a model: the fields the forward passes use.
#pragma once
#include <stdint.h>

typedef enum { SDS_ARCH_OPT = 0, SDS_ARCH_LLAMA = 1 } sds_arch;

// Llama rotary-embedding frequency schedules (config.json "rope_scaling"), as transformers 4.44.
typedef enum {
    SDS_ROPE_DEFAULT = 0, // rope_scaling null or rope_type "default"
    SDS_ROPE_LINEAR,      // inv_freq / factor
    SDS_ROPE_LLAMA3       // Llama 3.1: low frequencies / factor, a smooth ramp in between
} sds_rope_type;

typedef struct {
    sds_arch arch;
    char model_type[32];
    char torch_dtype[16]; // "float16", "float32", ... ("" when absent)
    int64_t vocab_size;
    int64_t hidden_size; // C
    int64_t ffn_dim;     // F (OPT ffn_dim, Llama intermediate_size)
    int64_t n_layers;
    int64_t n_heads;
    int64_t n_kv_heads; // = n_heads for OPT
    int64_t head_dim;   // C / n_heads (Llama: config head_dim when given)
    int64_t max_position_embeddings;
    int64_t word_embed_proj_dim;     // E: OPT's embedding width (= C unless project_in/out exist)
    int32_t do_layer_norm_before;    // OPT: pre-LN (1) or post-LN (0)
    int32_t remove_final_layer_norm; // OPT: _remove_final_layer_norm
    int32_t enable_bias;             // OPT: biases on linear layers
    int32_t layer_norm_affine;       // OPT: layer_norm_elementwise_affine
    int32_t tie_word_embeddings;
    int32_t attention_bias; // Llama: biases on q,k,v,o_proj
    int32_t mlp_bias;       // Llama: biases on gate,up,down_proj
    // Llama RoPE: inv_freq[i] = rope_theta^(-2i/head_dim), then rescaled per rope_type.
    double rope_theta;
    sds_rope_type rope_type;
    double rope_factor;                               // linear, llama3
    double rope_low_freq_factor;                      // llama3
    double rope_high_freq_factor;                     // llama3
    int64_t rope_original_max_position;               // llama3: original_max_position_embeddings
    float norm_eps;                                   // LayerNorm eps (OPT: 1e-5) or RMSNorm eps
    int64_t bos_token_id, eos_token_id, pad_token_id; // -1 when absent
} sds_model_config;

// Llama-architecture models from GGUF files (llama.cpp's format): configuration from the
// metadata, weights dequantised to fp32 and put back into Hugging Face's layout.
#pragma once
#include "gguf.h"
#include "llama.h"
#include "model.h"

// Resolves the configuration from g's metadata (general.architecture must be "llama").
int sds_gguf_llama_config(const sds_gguf *g, sds_model_config *cfg);
// path: a .gguf file. Loads every tensor, dequantised, with attn_q/attn_k rows un-permuted
// from llama.cpp's interleaved RoPE order to Hugging Face's half-split order, so the model
// is exactly LlamaForCausalLM with the dequantised weights.
int sds_llama_load_gguf(const char *path, sds_llama_model *m);
// Only decoder layers [layer_lo, layer_hi) (clamped) and, per parts (SDS_MODEL_EMBED,
// SDS_MODEL_HEAD), the embedding and the head: only those tensors are read and dequantised.
// sds_llama_load_gguf is this with all layers and EMBED|HEAD.
int sds_llama_load_gguf_part(const char *path, int64_t layer_lo, int64_t layer_hi, int32_t parts,
                             sds_llama_model *m);

// Loading a Llama checkpoint: the Hugging Face layout (config.json + safetensors), and a
// tensor-by-tensor fill that other formats (GGUF) reuse after their own allocation.
#pragma once
#include "llama.h"
#include "model.h"

// Reads the tensor Hugging Face calls `name` ("model.layers.3.self_attn.q_proj.weight", ...)
// into dst: fp32, row-major, the HF orientation ([out_features, in_features] for linears),
// after checking that its shape is shape[0..ndim). Returns SDS_OK, or an error code with the
// message set (naming the tensor and its file).
typedef int (*sds_llama_read_fn)(void *ctx, const char *name, int32_t ndim, const int64_t *shape,
                                 float *dst);

// Fills m (from sds_llama_alloc or sds_llama_alloc_part) by asking read for every tensor m holds
// and no other: the embedding, each held layer's norms, projections and (when the config has them)
// biases, the final norm, and lm_head.weight only when the embeddings are not tied. A source whose
// q/k rows are stored in another RoPE layout (llama.cpp's GGUF) must undo that permutation in read.
// Stops at the first error and returns it; m is left allocated for the caller to free.
int sds_llama_fill(sds_llama_model *m, sds_llama_read_fn read, void *ctx);

// dir: a directory with config.json (model_type "llama") and model.safetensors (or sharded
// with its index). Every tensor's presence, shape, dtype and finiteness is checked
// (SDS_ERR_INPUT naming tensor and file).
int sds_llama_load_dir(const char *dir, sds_llama_model *m);
// Only decoder layers [layer_lo, layer_hi) (clamped) and, per parts (SDS_MODEL_EMBED,
// SDS_MODEL_HEAD), the embedding and the head (sds_llama_alloc_part); only those tensors are
// read and checked. sds_llama_load_dir is this with all layers and EMBED|HEAD.
int sds_llama_load_dir_part(const char *dir, int64_t layer_lo, int64_t layer_hi, int32_t parts,
                            sds_llama_model *m);

// Opening a model and its tokenizer from what the user names with --model.
#pragma once
#include "model.h"
#include "tokenizer.h"

// path: a Hugging Face checkpoint directory (config.json + safetensors), whose config.json
// model_type ("opt", "llama") picks the architecture; or a GGUF file (llama architecture).
int sds_model_load(const char *path, sds_model *m);
// Loads decoder layers [layer_lo, layer_hi) (clamped to [0, n_layers]) and, per `parts`, the
// embeddings (SDS_MODEL_EMBED: token and position embeddings, project_in) and the head
// (SDS_MODEL_HEAD: final norm, project_out, LM head; a tied head loads embed_tokens even without
// EMBED). Other layers stay unallocated (params NULL, n_params 0). cfg is always complete. Same
// errors and messages as sds_model_load, for the tensors it reads (only those are checked).
// sds_model_load(path, m) == sds_model_load_part(path, 0, INT64_MAX, EMBED|HEAD, m).
int sds_model_load_part(const char *path, int64_t layer_lo, int64_t layer_hi, int32_t parts,
                        sds_model *m);
// Whether path is a file starting with GGUF's magic.
int sds_model_is_gguf(const char *path);
// The tokenizer that goes with the model: from tokenizer_dir when given, else from the model
// directory or the GGUF metadata (BOS when tokenizer.ggml.add_bos_token is true). *bos is the id
// the model's tokenizer puts before a text (-1: none): OPT's </s>; for Llama what
// transformers 4.44's AutoTokenizer adds (tokenizer_config.json's add_bos_token for the Llama
// tokenizer classes, default true; else tokenizer.json's post_processor).
int sds_model_tokenizer(const char *path, const char *tokenizer_dir, const sds_model *m,
                        sds_tokenizer **tok, int32_t *bos);

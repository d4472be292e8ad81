// Opening a model and its tokenizer from what the user names with --model.
#pragma once
#include "model.h"
#include "tokenizer.h"

// path: a Hugging Face checkpoint directory (config.json + safetensors).
int sds_model_load(const char *path, sds_model *m);
// The tokenizer that goes with the model: from tokenizer_dir when given, else from the model
// directory. *bos is the id the model's tokenizer puts before a text (-1: none).
int sds_model_tokenizer(const char *path, const char *tokenizer_dir, const sds_model *m,
                        sds_tokenizer **tok, int32_t *bos);

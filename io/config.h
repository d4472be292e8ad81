// Hugging Face config.json, resolved into sds_model_config.
#pragma once
#include "model_config.h"

// Parses PATH (a config.json). SDS_ERR_INPUT naming the file and field on anything missing,
// mistyped or inconsistent (e.g. hidden_size not a multiple of num_attention_heads).
int sds_config_load(const char *path, sds_model_config *cfg);

// dir: a Hugging Face checkpoint directory. Checks that it exists and is a directory, then
// parses dir/config.json as sds_config_load does.
int sds_config_load_dir(const char *dir, sds_model_config *cfg);

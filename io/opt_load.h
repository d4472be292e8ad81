// Loading an OPT checkpoint in the Hugging Face layout (config.json + safetensors).
#pragma once
#include "opt.h"
#include "safetensors.h"

// dir: a directory with config.json and model.safetensors (or sharded with its index).
// Tensor names may carry the "model." prefix (OPTForCausalLM.save_pretrained) or not
// (OPTModel / original conversions). Every tensor's presence, shape, dtype and finiteness is
// checked (SDS_ERR_INPUT naming tensor and file).
int sds_opt_load_dir(const char *dir, sds_opt_model *m);

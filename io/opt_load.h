// Loading an OPT checkpoint in the Hugging Face layout (config.json + safetensors).
#pragma once
#include "model.h"
#include "opt.h"
#include "safetensors.h"

// dir: a directory with config.json and model.safetensors (or sharded with its index).
// Tensor names may carry the "model." prefix (OPTForCausalLM.save_pretrained) or not
// (OPTModel / original conversions). Every tensor's presence, shape, dtype and finiteness is
// checked (SDS_ERR_INPUT naming tensor and file).
int sds_opt_load_dir(const char *dir, sds_opt_model *m);
// Only decoder layers [layer_lo, layer_hi) (clamped) and, per parts (SDS_MODEL_EMBED,
// SDS_MODEL_HEAD), the embeddings and the head (sds_opt_alloc_part); only those tensors are
// read and checked. sds_opt_load_dir is this with all layers and EMBED|HEAD.
int sds_opt_load_dir_part(const char *dir, int64_t layer_lo, int64_t layer_hi, int32_t parts,
                          sds_opt_model *m);

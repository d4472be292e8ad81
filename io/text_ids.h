// A text file as the model's token ids (evaluation and calibration text).
#pragma once
#include "model.h"

#include <stdint.h>

// Reads text_path whole, tokenizes it with the model's tokenizer (tokenizer_dir when given,
// else the one found with the model at model_path), puts the model's BOS first where its
// tokenizer adds one, and checks every id against the vocabulary. *ids is malloc'ed.
// SDS_ERR_INPUT naming the text file for missing/empty files, invalid UTF-8, ids out of range.
int sds_text_token_ids(const char *text_path, const char *model_path, const char *tokenizer_dir,
                       const sds_model *m, int32_t **ids, int64_t *n);

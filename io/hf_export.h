// Exporting a (pruned) model as a Hugging Face checkpoint directory that transformers'
// AutoModelForCausalLM / AutoTokenizer load as they are:
//   config.json        the source's, byte for byte; for a GGUF source, generated for
//                      LlamaForCausalLM from the model's configuration (torch_dtype "float32")
//   model.safetensors  every parameter under its Hugging Face name, as OPTForCausalLM /
//                      LlamaForCausalLM's state_dict holds it (lm_head.weight only when the head
//                      is not tied), each tensor in the dtype it had in the source safetensors
//                      (F32, F16 or BF16, rounded to nearest even from the fp32 in memory). A GGUF
//                      source is written in F32: its quantised types (Q4_1, ...) have no
//                      safetensors dtype, and the loader has already undone llama.cpp's q/k row
//                      permutation, so the weights in memory are in Hugging Face's layout.
//   tokenizer files    tokenizer.json, tokenizer_config.json, vocab.json, merges.txt,
//                      special_tokens_map.json, added_tokens.json copied from the tokenizer
//                      directory (the model directory by default) where they exist, and
//                      generation_config.json from the model directory; for a GGUF source
//                      without a tokenizer directory, tokenizer.json (byte-level BPE from the
//                      GGUF vocabulary and merges, its pre-tokenizer, CONTROL / USER_DEFINED
//                      tokens as added tokens, BOS as tokenizer.ggml.add_bos_token says) and
//                      tokenizer_config.json are generated.
// Zeros stay exactly where the weights in memory are zero: a non-zero weight too small for F16
// or BF16 is written as the smallest subnormal of its sign instead of rounding to zero, so the
// pruning masks read back from the exported zeros. A weight beyond the dtype's range is refused
// (SDS_ERR_NUMERIC naming the tensor) rather than written as infinity.
//
// Serial (no MPI): one process writes. Everything goes into OUT.tmp.<pid> beside OUT, which is
// renamed to OUT at the end and removed on any failure, so OUT is never half-written.
#pragma once
#include "model.h"

// Whether out_dir may be written: absent, or an empty directory. SDS_ERR_USAGE naming it when
// it exists and is not an empty directory (nothing is ever overwritten).
int sds_hf_export_check_out(const char *out_dir);

// m: the model loaded from model_path (a Hugging Face directory or a GGUF file), its sublayer
// weights possibly replaced by pruned ones. tokenizer_dir: where the tokenizer files are, or NULL
// for the model's own. Errors: SDS_ERR_USAGE (out_dir not writable as above), SDS_ERR_INPUT (a
// source tensor missing or of an unexpected dtype or shape, a GGUF tokenizer we cannot express),
// SDS_ERR_NUMERIC (a weight overflowing F16 or BF16), SDS_ERR_IO (a write, rename or copy refused);
// messages name the file or tensor.
int sds_hf_export(const sds_model *m, const char *model_path, const char *tokenizer_dir,
                  const char *out_dir);

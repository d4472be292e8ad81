// Byte-level BPE tokenizer (GPT-2 / OPT style), ids identical to Hugging Face `tokenizers`.
// Pre-split with PCRE2 using GPT-2's pattern, bytes mapped to GPT-2's printable unicode
// alphabet, then BPE merges by rank. BOS is the caller's business (see sds_tokenizer_bos).
#pragma once
#include <stdint.h>
#include <stddef.h>

typedef struct sds_tokenizer sds_tokenizer;

// dir holds tokenizer.json (preferred when present) or vocab.json + merges.txt.
// Errors are SDS_ERR_INPUT with the file named.
int sds_tokenizer_load_dir(const char *dir, sds_tokenizer **out);
// From in-memory pieces (GGUF metadata later): tokens[i] is the string of id i, merges[k] is
// "a b" with rank k.
int sds_tokenizer_load_lists(const char *const *tokens, int64_t n_tokens, const char *const *merges,
                             int64_t n_merges, sds_tokenizer **out);
void sds_tokenizer_free(sds_tokenizer *tok);

int64_t sds_tokenizer_vocab_size(const sds_tokenizer *tok);
// Id of a token string, or -1.
int32_t sds_tokenizer_token_id(const sds_tokenizer *tok, const char *token);
// String of an id (NULL when out of range).
const char *sds_tokenizer_token(const sds_tokenizer *tok, int32_t id);

// Encodes UTF-8 text (no special tokens added). *ids is malloc'ed; caller frees.
// Invalid UTF-8 is SDS_ERR_INPUT (message gives the byte offset; the caller adds the file name).
int sds_tokenizer_encode(const sds_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                         int64_t *n_ids);

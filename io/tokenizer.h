// Byte-level BPE tokenizer (GPT-2 / OPT / SmolLM style), ids identical to Hugging Face
// `tokenizers`. Pre-split with PCRE2 using GPT-2's pattern (after isolating every numeric
// character when the pre-tokenizer says so), bytes mapped to GPT-2's printable unicode alphabet,
// then BPE merges by rank. BOS is the caller's business.
#pragma once
#include <stdint.h>
#include <stddef.h>

#include "gguf.h"

typedef struct sds_tokenizer sds_tokenizer;

// dir holds tokenizer.json (preferred when present) or vocab.json + merges.txt.
// Errors are SDS_ERR_INPUT with the file named.
int sds_tokenizer_load_dir(const char *dir, sds_tokenizer **out);

// How text is cut into words before BPE.
typedef enum {
    // GPT-2's regex (Hugging Face ByteLevel with use_regex).
    SDS_TOK_PRE_GPT2 = 0,
    // Every numeric character (\p{N}) alone, then GPT-2's regex on each piece: Hugging Face's
    // Sequence[Digits(individual_digits=true), ByteLevel], GGUF tokenizer.ggml.pre "smollm".
    SDS_TOK_PRE_DIGITS_GPT2 = 1
} sds_tok_pre;

// In-memory pieces (GGUF metadata, tests).
typedef struct {
    const char *source;        // names the origin in messages (a file path)
    const char *const *tokens; // tokens[i] is the string of id i (byte alphabet); NULL: unused
    int64_t n_tokens;
    const char *const *merges; // merges[k] is "left right", rank k
    int64_t n_merges;
    const int32_t *special_ids; // optional: ids matched literally in the text before the
    int64_t n_special;          // pre-split, like Hugging Face's special added tokens
    sds_tok_pre pre;
} sds_tokenizer_lists;

// Errors are SDS_ERR_INPUT naming lists->source.
int sds_tokenizer_load_lists(const sds_tokenizer_lists *lists, sds_tokenizer **out);

// From a GGUF file's metadata: tokenizer.ggml.model must be "gpt2" and tokenizer.ggml.pre
// "gpt-2" or "smollm"; tokens and merges come from tokenizer.ggml.tokens / .merges, and the
// tokens that tokenizer.ggml.token_type marks CONTROL (3) or USER_DEFINED (4) are matched
// literally in the text. path names the file in messages (NULL: the GGUF's own path).
// tokenizer.ggml.add_bos_token is the caller's to read.
int sds_tokenizer_load_gguf(const sds_gguf *g, const char *path, sds_tokenizer **out);

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

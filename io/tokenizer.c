#include "tokenizer.h"

#include "sds_error.h"
#include "strmap.h"
#include "text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

// GPT-2's pre-split pattern, as Hugging Face's ByteLevel pre-tokenizer uses it.
static const char tok_split_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
// Hugging Face's Digits(individual_digits=true): every numeric character (Rust's is_numeric,
// categories Nd, Nl and No) becomes a piece of its own before GPT-2's split.
static const char tok_digit_pattern[] = "\\p{N}";
// A "word character" next to a single_word added token (Rust regex's Unicode \w, closely).
static const char tok_word_char_pattern[] = "[\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}\\x{200C}\\x{200D}]";

// Ids above this are taken for a corrupt file rather than a vocabulary (the tables are dense).
#define TOK_MAX_ID (1 << 24)
// Words longer than this are not cached (as in Hugging Face); the cache restarts when full.
#define TOK_CACHE_MAX_WORD  255
#define TOK_CACHE_MAX_WORDS (1 << 19)
#define TOK_CACHE_MAX_IDS   (1 << 23)

// A token matched verbatim in the text before pre-splitting (Hugging Face "added_tokens").
typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized;
} tok_added;

// (left id, right id) -> (rank, merged id), open addressing; an empty slot has key TOK_NO_PAIR.
typedef struct {
    uint64_t key;
    int32_t rank;
    int32_t merged;
} tok_merge;
#define TOK_NO_PAIR UINT64_MAX

// Word bytes -> offset in pool, where pool[offset] is the id count and the ids follow.
typedef struct {
    sds_strmap *words;
    int32_t *pool;
    size_t used, cap;
} tok_cache;

struct sds_tokenizer {
    const char **tokens; // id -> string (into vocab's or added's storage); NULL for unused ids
    int64_t n_tokens;
    sds_strmap *vocab; // the BPE model's vocabulary, string -> id
    tok_merge *merges;
    size_t merge_mask;
    int32_t byte_id[256];   // id of the one-character token of each byte, -1 when absent
    char byte_char[256][3]; // GPT-2's printable character of each byte, UTF-8, NUL-terminated
    int32_t unk_id;         // -1: characters missing from the vocabulary are dropped
    bool fuse_unk, ignore_merges, add_prefix_space;
    tok_added *added; // sorted by (normalized, first byte, length descending)
    int64_t n_added;
    sds_strmap *added_ids;        // content -> id
    uint32_t added_first[2][257]; // [normalized][first byte] -> range in added
    sds_tok_pre pre;
    pcre2_code *split_re;
    pcre2_code *digit_re;     // only for SDS_TOK_PRE_DIGITS_GPT2
    pcre2_code *word_char_re; // only when some added token is single_word
    tok_cache *cache;         // shared by encode calls: the tokenizer is not thread-safe
};

__attribute__((format(printf, 2, 3))) static int tok_fail(const char *src, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sds_error_set(SDS_ERR_INPUT, "%s: %s", src, msg);
}

static char *tok_strndup(const char *s, size_t len) {
    char *d = sds_malloc(len + 1, "tokenizer string");
    if (!d) return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other bytes take
// U+0100 onwards in byte order, so every byte has a visible one-character token.
static void tok_byte_alphabet(char out[256][3]) {
    unsigned extra = 0;
    for (unsigned b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        unsigned cp = printable ? b : 256 + extra++;
        if (cp < 0x80) {
            out[b][0] = (char)cp;
            out[b][1] = '\0';
        } else {
            out[b][0] = (char)(0xC0 | (cp >> 6));
            out[b][1] = (char)(0x80 | (cp & 0x3F));
            out[b][2] = '\0';
        }
    }
}

// Offset of the first byte that is not part of well-formed UTF-8 (no overlongs, surrogates or
// code points above U+10FFFF), or n when the whole text is valid.
static size_t tok_utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        if (need >= n - i) return i; // truncated at the end
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += need + 1;
    }
    return n;
}

// ---- building ----

static uint64_t tok_pair_key(int32_t left, int32_t right) {
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

static size_t tok_pair_slot(const sds_tokenizer *t, uint64_t key) {
    size_t i = (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 20) & t->merge_mask;
    while (t->merges[i].key != TOK_NO_PAIR && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
    return i;
}

static const tok_merge *tok_pair_find(const sds_tokenizer *t, int32_t left, int32_t right) {
    const tok_merge *m = &t->merges[tok_pair_slot(t, tok_pair_key(left, right))];
    return m->key == TOK_NO_PAIR ? NULL : m;
}

static int tok_new(sds_tokenizer **out) {
    *out = NULL;
    sds_tokenizer *t = sds_calloc(1, sizeof *t, "tokenizer");
    if (!t) return SDS_ERR_IO;
    t->unk_id = -1;
    tok_byte_alphabet(t->byte_char);
    int rc = sds_strmap_init(65536, &t->vocab);
    if (rc == SDS_OK) rc = sds_strmap_init(16, &t->added_ids);
    if (rc != SDS_OK) {
        sds_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return SDS_OK;
}

static int tok_vocab_add(sds_tokenizer *t, const char *src, const char *token, size_t len,
                         json_int_t id) {
    if (id < 0 || id >= TOK_MAX_ID)
        return tok_fail(src, "token \"%.64s\" has id %lld, outside [0, %d)", token, (long long)id,
                        TOK_MAX_ID);
    return sds_strmap_put(t->vocab, token, len, (int64_t)id);
}

static int tok_merges_init(sds_tokenizer *t, size_t n_merges) {
    size_t cap = 64;
    while (cap < 2 * n_merges) cap *= 2;
    t->merges = sds_malloc(cap * sizeof *t->merges, "tokenizer merges");
    if (!t->merges) return SDS_ERR_IO;
    for (size_t i = 0; i < cap; i++) t->merges[i].key = TOK_NO_PAIR;
    t->merge_mask = cap - 1;
    return SDS_OK;
}

// Merge of rank `rank`: "left right" -> "leftright". A later duplicate of a pair replaces the
// earlier one, as in Hugging Face. `where` names the merge in messages ("line 7", "merge 6").
static int tok_merge_add(sds_tokenizer *t, const char *src, const char *where, const char *left,
                         size_t left_len, const char *right, size_t right_len, int64_t rank) {
    int64_t a, b, m;
    if (!sds_strmap_get(t->vocab, left, left_len, &a))
        return tok_fail(src, "%s: merge token \"%.*s\" is not in the vocabulary", where,
                        (int)left_len, left);
    if (!sds_strmap_get(t->vocab, right, right_len, &b))
        return tok_fail(src, "%s: merge token \"%.*s\" is not in the vocabulary", where,
                        (int)right_len, right);
    char local[256];
    char *joined = local;
    if (left_len + right_len > sizeof local) {
        joined = sds_malloc(left_len + right_len, "tokenizer merge");
        if (!joined) return SDS_ERR_IO;
    }
    memcpy(joined, left, left_len);
    memcpy(joined + left_len, right, right_len);
    int found = sds_strmap_get(t->vocab, joined, left_len + right_len, &m);
    int rc = SDS_OK;
    if (!found)
        rc = tok_fail(src, "%s: merged token \"%.*s\" is not in the vocabulary", where,
                      (int)(left_len + right_len), joined);
    if (joined != local) free(joined);
    if (rc != SDS_OK) return rc;
    if (rank > INT32_MAX) return tok_fail(src, "%s: too many merges", where);
    size_t i = tok_pair_slot(t, tok_pair_key((int32_t)a, (int32_t)b));
    t->merges[i] = (tok_merge){tok_pair_key((int32_t)a, (int32_t)b), (int32_t)rank, (int32_t)m};
    return SDS_OK;
}

// A merge written as "left right": exactly one space separates the two tokens.
static int tok_merge_add_text(sds_tokenizer *t, const char *src, const char *where,
                              const char *line, size_t len, int64_t rank) {
    const char *space = memchr(line, ' ', len);
    if (!space || memchr(space + 1, ' ', len - (size_t)(space - line) - 1) || space == line ||
        space == line + len - 1)
        return tok_fail(src, "%s: expected \"left right\", got \"%.*s\"", where,
                        (int)(len > 80 ? 80 : len), line);
    return tok_merge_add(t, src, where, line, (size_t)(space - line), space + 1,
                         len - (size_t)(space - line) - 1, rank);
}

// Ids follow Hugging Face, not the file: a token already known keeps its id, a new one takes the
// vocabulary's size, or one past the largest added id when that is already at or above it.
// (Hugging Face only warns when the id written in tokenizer.json differs.)
static int tok_added_add(sds_tokenizer *t, const char *content, size_t len, bool single_word,
                         bool lstrip, bool rstrip, bool normalized) {
    if (len == 0) return SDS_OK; // Hugging Face ignores empty added tokens
    int64_t id;
    if (sds_strmap_get(t->added_ids, content, len, &id)) {
        // The same content again: the later flags win.
        for (int64_t i = 0; i < t->n_added; i++) {
            tok_added *a = &t->added[i];
            if (a->len == len && memcmp(a->content, content, len) == 0) {
                *a = (tok_added){a->content, len, a->id, single_word, lstrip, rstrip, normalized};
                break;
            }
        }
        return SDS_OK;
    }
    if (!sds_strmap_get(t->vocab, content, len, &id)) {
        int64_t n_vocab = (int64_t)sds_strmap_count(t->vocab), max_added = -1;
        for (int64_t i = 0; i < t->n_added; i++)
            if (t->added[i].id > max_added) max_added = t->added[i].id;
        id = max_added < 0 ? n_vocab
                           : (max_added >= n_vocab || n_vocab == 0 ? max_added + 1 : n_vocab);
        if (id >= TOK_MAX_ID) return sds_error_set(SDS_ERR_INPUT, "too many added tokens");
    }
    tok_added *grown = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *grown);
    if (!grown) return sds_error_set(SDS_ERR_IO, "out of memory adding a tokenizer added token");
    t->added = grown;
    char *copy = tok_strndup(content, len);
    if (!copy) return SDS_ERR_IO;
    t->added[t->n_added++] =
        (tok_added){copy, len, (int32_t)id, single_word, lstrip, rstrip, normalized};
    return sds_strmap_put(t->added_ids, content, len, id);
}

static int tok_added_cmp(const void *pa, const void *pb) {
    const tok_added *a = pa, *b = pb;
    if (a->normalized != b->normalized) return a->normalized ? 1 : -1;
    unsigned ca = (unsigned char)a->content[0], cb = (unsigned char)b->content[0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return memcmp(a->content, b->content, a->len);
}

static pcre2_code *tok_compile(const char *src, const char *pattern) {
    int err;
    PCRE2_SIZE err_off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        sds_error_set(SDS_ERR_INTERNAL, "%s: PCRE2 rejected the pattern at %zu: %s", src,
                      (size_t)err_off, (const char *)msg);
        return NULL;
    }
    // JIT makes the pre-split several times faster; without it pcre2_match interprets.
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

// After the vocabulary, merges and added tokens are in: the id -> string table, the byte
// alphabet's ids, the added-token index and the patterns.
static int tok_finish(sds_tokenizer *t, const char *src) {
    int64_t max_id = -1, id;
    size_t cursor = 0;
    const char *key;
    while (sds_strmap_next(t->vocab, &cursor, NULL, NULL, &id))
        if (id > max_id) max_id = id;
    for (int64_t i = 0; i < t->n_added; i++)
        if (t->added[i].id > max_id) max_id = t->added[i].id;
    if (max_id < 0) return tok_fail(src, "the vocabulary is empty");
    t->n_tokens = max_id + 1;
    t->tokens = sds_calloc((size_t)t->n_tokens, sizeof *t->tokens, "tokenizer id table");
    if (!t->tokens) return SDS_ERR_IO;
    cursor = 0;
    while (sds_strmap_next(t->vocab, &cursor, &key, NULL, &id))
        if (!t->tokens[id]) t->tokens[id] = key;
    for (int64_t i = 0; i < t->n_added; i++) t->tokens[t->added[i].id] = t->added[i].content;

    for (int b = 0; b < 256; b++) {
        int64_t v;
        t->byte_id[b] = -1;
        if (sds_strmap_get(t->vocab, t->byte_char[b], strlen(t->byte_char[b]), &v))
            t->byte_id[b] = (int32_t)v;
    }

    if (t->n_added > 0) qsort(t->added, (size_t)t->n_added, sizeof *t->added, tok_added_cmp);
    memset(t->added_first, 0, sizeof t->added_first);
    bool any_single_word = false;
    for (int64_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        t->added_first[a->normalized][(unsigned char)a->content[0] + 1]++;
        any_single_word |= a->single_word;
    }
    // Counts -> starts: added_first[n][c] .. added_first[n][c + 1] is byte c's range.
    uint32_t base = 0;
    for (int n = 0; n < 2; n++) {
        uint32_t acc = base;
        t->added_first[n][0] = acc;
        for (int c = 1; c <= 256; c++) {
            acc += t->added_first[n][c];
            t->added_first[n][c] = acc;
        }
        base = acc;
    }

    t->split_re = tok_compile(src, tok_split_pattern);
    if (!t->split_re) return SDS_ERR_INTERNAL;
    if (t->pre == SDS_TOK_PRE_DIGITS_GPT2) {
        t->digit_re = tok_compile(src, tok_digit_pattern);
        if (!t->digit_re) return SDS_ERR_INTERNAL;
    }
    if (any_single_word) {
        t->word_char_re = tok_compile(src, tok_word_char_pattern);
        if (!t->word_char_re) return SDS_ERR_INTERNAL;
    }
    t->cache = sds_calloc(1, sizeof *t->cache, "tokenizer cache");
    if (!t->cache) return SDS_ERR_IO;
    SDS_TRY(sds_strmap_init(4096, &t->cache->words));
    return SDS_OK;
}

void sds_tokenizer_free(sds_tokenizer *tok) {
    if (!tok) return;
    free(tok->tokens);
    sds_strmap_free(tok->vocab);
    free(tok->merges);
    for (int64_t i = 0; i < tok->n_added; i++) free(tok->added[i].content);
    free(tok->added);
    sds_strmap_free(tok->added_ids);
    pcre2_code_free(tok->split_re);
    pcre2_code_free(tok->digit_re);
    pcre2_code_free(tok->word_char_re);
    if (tok->cache) {
        sds_strmap_free(tok->cache->words);
        free(tok->cache->pool);
        free(tok->cache);
    }
    free(tok);
}

// ---- loading ----

static int tok_load_vocab_object(sds_tokenizer *t, const char *src, const char *what,
                                 json_t *vocab) {
    if (!json_is_object(vocab)) return tok_fail(src, "%s is missing or not a JSON object", what);
    const char *token;
    json_t *value;
    json_object_foreach(vocab, token, value) {
        if (!json_is_integer(value))
            return tok_fail(src, "token \"%.64s\" has a non-integer id", token);
        SDS_TRY(tok_vocab_add(t, src, token, strlen(token), json_integer_value(value)));
    }
    return SDS_OK;
}

static bool tok_json_flag(json_t *obj, const char *key, bool fallback) {
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : fallback;
}

// A model option we do not implement must be absent or at its neutral value.
static int tok_json_require_empty(const char *src, json_t *model, const char *key) {
    json_t *v = json_object_get(model, key);
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) return SDS_OK;
    if (json_is_number(v) && json_number_value(v) == 0.0) return SDS_OK;
    return tok_fail(src, "model.%s is set; only plain byte-level BPE is supported", key);
}

// The one Sequence pre-tokenizer we implement: [Digits(individual_digits=true), ByteLevel].
// *byte_level gets the ByteLevel member, whose flags then apply as for a plain ByteLevel.
static int tok_json_sequence(const char *path, json_t *pre, json_t **byte_level) {
    json_t *list = json_object_get(pre, "pretokenizers");
    json_t *digits = json_array_get(list, 0), *bl = json_array_get(list, 1);
    json_t *digits_type = json_object_get(digits, "type"), *bl_type = json_object_get(bl, "type");
    if (!json_is_array(list) || json_array_size(list) != 2 || !json_is_string(digits_type) ||
        strcmp(json_string_value(digits_type), "Digits") != 0 || !json_is_string(bl_type) ||
        strcmp(json_string_value(bl_type), "ByteLevel") != 0)
        return tok_fail(path, "pre_tokenizer is a Sequence other than [Digits, ByteLevel]; only "
                              "ByteLevel or Sequence[Digits(individual_digits=true), ByteLevel] "
                              "are supported");
    if (!tok_json_flag(digits, "individual_digits", false))
        return tok_fail(path, "pre_tokenizer Digits has individual_digits false; only "
                              "individual_digits=true is supported");
    *byte_level = bl;
    return SDS_OK;
}

static int tok_load_json(sds_tokenizer *t, const char *path) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return tok_fail(path, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    int rc = SDS_OK;
    json_t *model = json_object_get(root, "model");
    json_t *type = json_object_get(model, "type");
    json_t *norm = json_object_get(root, "normalizer");
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *pre_type = json_object_get(pre, "type");
    json_t *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (json_is_string(pre_type) && strcmp(json_string_value(pre_type), "Sequence") == 0) {
        rc = tok_json_sequence(path, pre, &pre);
        pre_type = json_object_get(pre, "type");
        t->pre = SDS_TOK_PRE_DIGITS_GPT2;
    }
    if (rc != SDS_OK) {
        // reported by tok_json_sequence
    } else if (!json_is_object(model)) {
        rc = tok_fail(path, "no \"model\" object");
    } else if (type && (!json_is_string(type) || strcmp(json_string_value(type), "BPE") != 0)) {
        rc = tok_fail(path, "model.type is %s; only BPE is supported",
                      json_is_string(type) ? json_string_value(type) : "not a string");
    } else if (norm && !json_is_null(norm)) {
        rc = tok_fail(path, "a normalizer is set; only byte-level BPE without one is supported");
    } else if (!json_is_string(pre_type) || strcmp(json_string_value(pre_type), "ByteLevel") != 0) {
        rc = tok_fail(
            path, "pre_tokenizer is %s; only ByteLevel or Sequence[Digits, ByteLevel] is supported",
            json_is_string(pre_type) ? json_string_value(pre_type) : "missing");
    } else if (!tok_json_flag(pre, "use_regex", true)) {
        rc = tok_fail(path, "pre_tokenizer.use_regex is false; only GPT-2's split is supported");
    } else if (!json_is_array(merges)) {
        rc = tok_fail(path, "model.merges is missing or not an array");
    } else if (added && !json_is_array(added)) {
        rc = tok_fail(path, "added_tokens is not an array");
    }
    if (rc == SDS_OK) rc = tok_json_require_empty(path, model, "dropout");
    if (rc == SDS_OK) rc = tok_json_require_empty(path, model, "continuing_subword_prefix");
    if (rc == SDS_OK) rc = tok_json_require_empty(path, model, "end_of_word_suffix");
    if (rc == SDS_OK)
        rc = tok_load_vocab_object(t, path, "model.vocab", json_object_get(model, "vocab"));
    if (rc == SDS_OK) {
        t->add_prefix_space = tok_json_flag(pre, "add_prefix_space", false);
        t->fuse_unk = tok_json_flag(model, "fuse_unk", false);
        t->ignore_merges = tok_json_flag(model, "ignore_merges", false);
        json_t *unk = json_object_get(model, "unk_token");
        int64_t v;
        if (json_is_string(unk) &&
            sds_strmap_get(t->vocab, json_string_value(unk), json_string_length(unk), &v))
            t->unk_id = (int32_t)v;
        rc = tok_merges_init(t, json_array_size(merges));
    }
    for (size_t k = 0; rc == SDS_OK && k < json_array_size(merges); k++) {
        json_t *m = json_array_get(merges, k);
        char where[48];
        snprintf(where, sizeof where, "model.merges[%zu]", k);
        if (json_is_string(m)) {
            rc = tok_merge_add_text(t, path, where, json_string_value(m), json_string_length(m),
                                    (int64_t)k);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
            rc = tok_merge_add(t, path, where, json_string_value(l), json_string_length(l),
                               json_string_value(r), json_string_length(r), (int64_t)k);
        } else {
            rc = tok_fail(path, "%s: expected \"left right\" or [left, right]", where);
        }
    }
    for (size_t k = 0; rc == SDS_OK && k < json_array_size(added); k++) {
        json_t *a = json_array_get(added, k);
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(content)) {
            rc = tok_fail(path,
                          "added_tokens[%zu]: needs an integer \"id\" and a string \"content\"", k);
            break;
        }
        // The id is checked for its type only: tok_added_add assigns it as Hugging Face does.
        rc =
            tok_added_add(t, json_string_value(content), json_string_length(content),
                          tok_json_flag(a, "single_word", false), tok_json_flag(a, "lstrip", false),
                          tok_json_flag(a, "rstrip", false), tok_json_flag(a, "normalized", true));
    }
    json_decref(root);
    if (rc != SDS_OK) return rc;
    return tok_finish(t, path);
}

static int tok_load_merges_txt(sds_tokenizer *t, const char *path) {
    char *text;
    size_t len;
    SDS_TRY(sds_text_read(path, &text, &len));
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++) n_lines += text[i] == '\n';
    int rc = tok_merges_init(t, n_lines);
    int64_t rank = 0, line_no = 0;
    for (size_t pos = 0; rc == SDS_OK && pos < len;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t line_len = nl ? (size_t)(nl - line) : len - pos;
        pos += line_len + 1;
        line_no++;
        if (line_len > 0 && line[line_len - 1] == '\r') line_len--;
        if (line_len == 0) continue;
        if (line_len >= 8 && memcmp(line, "#version", 8) == 0) continue;
        char where[32];
        snprintf(where, sizeof where, "line %lld", (long long)line_no);
        rc = tok_merge_add_text(t, path, where, line, line_len, rank++);
    }
    free(text);
    return rc;
}

// special_tokens_map.json (optional next to vocab.json): Transformers matches these in the text.
static int tok_load_special_map(sds_tokenizer *t, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? SDS_OK : tok_fail(path, "%s", strerror(errno));
    fclose(f);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return tok_fail(path, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    int rc = SDS_OK;
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        size_t n = json_is_array(value) ? json_array_size(value) : 1;
        for (size_t k = 0; rc == SDS_OK && k < n; k++) {
            json_t *v = json_is_array(value) ? json_array_get(value, k) : value;
            json_t *content = json_is_object(v) ? json_object_get(v, "content") : v;
            if (!json_is_string(content)) continue;
            const char *s = json_string_value(content);
            size_t len = json_string_length(content);
            rc = tok_added_add(t, s, len, tok_json_flag(v, "single_word", false),
                               tok_json_flag(v, "lstrip", false), tok_json_flag(v, "rstrip", false),
                               tok_json_flag(v, "normalized", true));
        }
        if (rc != SDS_OK) break;
    }
    json_decref(root);
    return rc;
}

static int tok_load_vocab_merges(sds_tokenizer *t, const char *dir) {
    size_t n = strlen(dir) + 32;
    char *path = sds_malloc(n, "tokenizer path");
    if (!path) return SDS_ERR_IO;
    snprintf(path, n, "%s/vocab.json", dir);
    json_error_t jerr;
    json_t *vocab = json_load_file(path, 0, &jerr);
    int rc;
    if (!vocab) {
        FILE *f = fopen(path, "rb");
        if (!f)
            rc = tok_fail(path, "%s (and no tokenizer.json in %s)", strerror(errno), dir);
        else
            rc = tok_fail(path, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        if (f) fclose(f);
    } else {
        rc = tok_load_vocab_object(t, path, "the top level", vocab);
        json_decref(vocab);
    }
    if (rc == SDS_OK) {
        snprintf(path, n, "%s/merges.txt", dir);
        rc = tok_load_merges_txt(t, path);
    }
    if (rc == SDS_OK) {
        snprintf(path, n, "%s/special_tokens_map.json", dir);
        rc = tok_load_special_map(t, path);
    }
    if (rc == SDS_OK) {
        snprintf(path, n, "%s/vocab.json", dir);
        rc = tok_finish(t, path);
    }
    free(path);
    return rc;
}

int sds_tokenizer_load_dir(const char *dir, sds_tokenizer **out) {
    *out = NULL;
    sds_tokenizer *t;
    SDS_TRY(tok_new(&t));
    size_t n = strlen(dir) + 32;
    char *path = sds_malloc(n, "tokenizer path");
    if (!path) {
        sds_tokenizer_free(t);
        return SDS_ERR_IO;
    }
    snprintf(path, n, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "rb");
    int rc;
    if (f) {
        fclose(f);
        rc = tok_load_json(t, path);
    } else if (errno == ENOENT) {
        rc = tok_load_vocab_merges(t, dir);
    } else {
        rc = tok_fail(path, "%s", strerror(errno));
    }
    free(path);
    if (rc != SDS_OK) {
        sds_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return SDS_OK;
}

int sds_tokenizer_load_lists(const sds_tokenizer_lists *lists, sds_tokenizer **out) {
    *out = NULL;
    const char *src = lists->source ? lists->source : "tokenizer lists";
    if (lists->n_tokens < 0 || lists->n_merges < 0 || lists->n_special < 0)
        return tok_fail(src, "negative list length");
    if (lists->pre != SDS_TOK_PRE_GPT2 && lists->pre != SDS_TOK_PRE_DIGITS_GPT2)
        return tok_fail(src, "unknown pre-tokenizer mode %d", (int)lists->pre);
    sds_tokenizer *t;
    SDS_TRY(tok_new(&t));
    t->pre = lists->pre;
    int rc = SDS_OK;
    for (int64_t i = 0; rc == SDS_OK && i < lists->n_tokens; i++)
        if (lists->tokens[i])
            rc = tok_vocab_add(t, src, lists->tokens[i], strlen(lists->tokens[i]), i);
    if (rc == SDS_OK) rc = tok_merges_init(t, (size_t)lists->n_merges);
    for (int64_t k = 0; rc == SDS_OK && k < lists->n_merges; k++) {
        const char *m = lists->merges[k];
        char where[32];
        snprintf(where, sizeof where, "merge %lld", (long long)k);
        if (!m)
            rc = tok_fail(src, "%s is NULL", where);
        else
            rc = tok_merge_add_text(t, src, where, m, strlen(m), k);
    }
    // Special tokens: matched before the pre-split, not normalized (Hugging Face's default for
    // special=true), no stripping. Each is already in the vocabulary, so it keeps its id.
    for (int64_t k = 0; rc == SDS_OK && k < lists->n_special; k++) {
        int32_t id = lists->special_ids[k];
        if (id < 0 || id >= lists->n_tokens || !lists->tokens[id])
            rc = tok_fail(src, "special token id %d is not a token (vocabulary of %lld)", (int)id,
                          (long long)lists->n_tokens);
        else
            rc = tok_added_add(t, lists->tokens[id], strlen(lists->tokens[id]), false, false, false,
                               false);
    }
    if (rc == SDS_OK) rc = tok_finish(t, src);
    if (rc != SDS_OK) {
        sds_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return SDS_OK;
}

// GGUF token types (llama.cpp's llama_token_type).
enum { TOK_GGUF_CONTROL = 3, TOK_GGUF_USER_DEFINED = 4, TOK_GGUF_N_TYPES = 7 };

int sds_tokenizer_load_gguf(const sds_gguf *g, const char *path, sds_tokenizer **out) {
    *out = NULL;
    const char *src = path ? path : sds_gguf_path(g);
    const char *model, *pre_name;
    SDS_TRY(sds_gguf_get_str(g, "tokenizer.ggml.model", &model));
    if (strcmp(model, "gpt2") != 0)
        return tok_fail(src,
                        "tokenizer.ggml.model is \"%.64s\"; only \"gpt2\" (byte-level BPE) is "
                        "supported",
                        model);
    if (!sds_gguf_has(g, "tokenizer.ggml.pre"))
        return tok_fail(src, "tokenizer.ggml.pre is missing, so the pre-tokenizer is unknown "
                             "(supported: \"gpt-2\", \"smollm\")");
    SDS_TRY(sds_gguf_get_str(g, "tokenizer.ggml.pre", &pre_name));
    sds_tokenizer_lists lists = {.source = src};
    if (strcmp(pre_name, "smollm") == 0)
        lists.pre = SDS_TOK_PRE_DIGITS_GPT2;
    else if (strcmp(pre_name, "gpt-2") == 0)
        lists.pre = SDS_TOK_PRE_GPT2;
    else
        return tok_fail(src,
                        "tokenizer.ggml.pre is \"%.64s\", which is not supported (supported: "
                        "\"gpt-2\", \"smollm\")",
                        pre_name);

    const uint64_t *tok_lens, *merge_lens;
    SDS_TRY(sds_gguf_get_str_array(g, "tokenizer.ggml.tokens", &lists.tokens, &tok_lens,
                                   &lists.n_tokens));
    SDS_TRY(sds_gguf_get_str_array(g, "tokenizer.ggml.merges", &lists.merges, &merge_lens,
                                   &lists.n_merges));
    if (lists.n_tokens == 0) return tok_fail(src, "tokenizer.ggml.tokens is empty");
    if (lists.n_tokens >= TOK_MAX_ID)
        return tok_fail(src, "tokenizer.ggml.tokens has %lld entries, more than %d",
                        (long long)lists.n_tokens, TOK_MAX_ID);
    for (int64_t i = 0; i < lists.n_tokens; i++)
        if (strlen(lists.tokens[i]) != tok_lens[i])
            return tok_fail(src, "tokenizer.ggml.tokens[%lld] holds a NUL byte", (long long)i);
    for (int64_t k = 0; k < lists.n_merges; k++)
        if (strlen(lists.merges[k]) != merge_lens[k])
            return tok_fail(src, "tokenizer.ggml.merges[%lld] holds a NUL byte", (long long)k);

    int64_t *types = NULL, n_types = 0;
    int32_t *special = NULL;
    int rc = SDS_OK;
    if (sds_gguf_has(g, "tokenizer.ggml.token_type")) {
        rc = sds_gguf_get_i64_array(g, "tokenizer.ggml.token_type", &types, &n_types);
        if (rc == SDS_OK && n_types != lists.n_tokens)
            rc = tok_fail(src, "tokenizer.ggml.token_type has %lld entries for %lld tokens",
                          (long long)n_types, (long long)lists.n_tokens);
        if (rc == SDS_OK) {
            special = sds_malloc((size_t)n_types * sizeof *special, "tokenizer special ids");
            if (!special) rc = SDS_ERR_IO;
        }
        for (int64_t i = 0; rc == SDS_OK && i < n_types; i++) {
            if (types[i] < 0 || types[i] >= TOK_GGUF_N_TYPES)
                rc = tok_fail(src, "tokenizer.ggml.token_type[%lld] is %lld, not a token type",
                              (long long)i, (long long)types[i]);
            else if (types[i] == TOK_GGUF_CONTROL || types[i] == TOK_GGUF_USER_DEFINED)
                special[lists.n_special++] = (int32_t)i;
        }
    }
    lists.special_ids = special;
    if (rc == SDS_OK) rc = sds_tokenizer_load_lists(&lists, out);
    free(types);
    free(special);
    return rc;
}

int64_t sds_tokenizer_vocab_size(const sds_tokenizer *tok) {
    return tok->n_tokens;
}

int32_t sds_tokenizer_token_id(const sds_tokenizer *tok, const char *token) {
    int64_t id;
    size_t len = strlen(token);
    if (sds_strmap_get(tok->added_ids, token, len, &id)) return (int32_t)id;
    if (sds_strmap_get(tok->vocab, token, len, &id)) return (int32_t)id;
    return -1;
}

const char *sds_tokenizer_token(const sds_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= tok->n_tokens) return NULL;
    return tok->tokens[id];
}

// ---- encoding ----

typedef struct {
    int32_t rank, pos, merged;
} tok_heap_item;

// Per-call scratch: output ids, and the symbol list and merge heap of the word in hand.
typedef struct {
    int32_t *ids;
    size_t n_ids, cap_ids;
    int32_t *sym, *prev, *next; // symbols of one word, a linked list; sym < 0 once merged away
    tok_heap_item *heap;
    size_t cap_word, n_heap;
    char *buf; // a word in the byte alphabet (ignore_merges)
    size_t cap_buf;
    char *seg; // a segment with its prefix space
    size_t cap_seg;
    pcre2_match_data *md;
} tok_work;

// Grows p (cap elements of elem bytes, doubling) to hold need; NULL with the error recorded
// when out of memory, p then still being the caller's.
static void *tok_grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(p, cap2 * elem);
    if (!q) {
        sds_error_set(SDS_ERR_IO, "out of memory (%zu bytes) while tokenizing", cap2 * elem);
        return NULL;
    }
    *cap = cap2;
    return q;
}

static int tok_reserve_ids(int32_t **ids, size_t *cap, size_t need) {
    int32_t *grown = tok_grow(*ids, cap, need, sizeof **ids);
    if (!grown) return SDS_ERR_IO;
    *ids = grown;
    return SDS_OK;
}

static int tok_reserve_chars(char **buf, size_t *cap, size_t need) {
    char *grown = tok_grow(*buf, cap, need, 1);
    if (!grown) return SDS_ERR_IO;
    *buf = grown;
    return SDS_OK;
}

static int tok_emit(tok_work *w, int32_t id) {
    if (w->n_ids == w->cap_ids) SDS_TRY(tok_reserve_ids(&w->ids, &w->cap_ids, w->n_ids + 1));
    w->ids[w->n_ids++] = id;
    return SDS_OK;
}

static bool tok_heap_less(const tok_heap_item *a, const tok_heap_item *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void tok_heap_push(tok_work *w, tok_heap_item it) {
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!tok_heap_less(&it, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = it;
}

static tok_heap_item tok_heap_pop(tok_work *w) {
    tok_heap_item top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && tok_heap_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!tok_heap_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

static void tok_heap_push_pair(const sds_tokenizer *t, tok_work *w, int32_t pos) {
    const tok_merge *m = tok_pair_find(t, w->sym[pos], w->sym[w->next[pos]]);
    if (m) tok_heap_push(w, (tok_heap_item){m->rank, pos, m->merged});
}

// BPE of one pre-split word, as Hugging Face does it: always apply the lowest-rank merge
// present, the leftmost one among equal ranks, until no adjacent pair has a merge.
static int tok_bpe_word(const sds_tokenizer *t, tok_work *w, const unsigned char *word, size_t n) {
    if (t->ignore_merges) {
        SDS_TRY(tok_reserve_chars(&w->buf, &w->cap_buf, 2 * n));
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            for (const char *c = t->byte_char[word[i]]; *c; c++) w->buf[m++] = *c;
        int64_t id;
        if (sds_strmap_get(t->vocab, w->buf, m, &id)) return tok_emit(w, (int32_t)id);
    }
    if (n > w->cap_word) {
        size_t cap = w->cap_word ? w->cap_word : 64;
        while (cap < n) cap *= 2;
        int32_t *sym = realloc(w->sym, cap * sizeof *sym);
        if (sym) w->sym = sym;
        int32_t *prev = realloc(w->prev, cap * sizeof *prev);
        if (prev) w->prev = prev;
        int32_t *next = realloc(w->next, cap * sizeof *next);
        if (next) w->next = next;
        tok_heap_item *heap = realloc(w->heap, 3 * cap * sizeof *heap);
        if (heap) w->heap = heap;
        if (!sym || !prev || !next || !heap)
            return sds_error_set(SDS_ERR_IO, "out of memory for a %zu-byte word", n);
        w->cap_word = cap;
    }
    int32_t m = 0;
    bool last_unknown = false;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[word[i]];
        if (id < 0) {
            if (t->unk_id < 0) continue;
            if (t->fuse_unk && last_unknown) continue;
            id = t->unk_id;
            last_unknown = true;
        } else {
            last_unknown = false;
        }
        w->sym[m] = id;
        w->prev[m] = m - 1;
        w->next[m] = m + 1;
        m++;
    }
    if (m == 0) return SDS_OK;
    w->next[m - 1] = -1;
    w->n_heap = 0;
    for (int32_t i = 0; i + 1 < m; i++) tok_heap_push_pair(t, w, i);
    while (w->n_heap > 0) {
        tok_heap_item top = tok_heap_pop(w);
        int32_t p = top.pos;
        if (w->sym[p] < 0 || w->next[p] < 0) continue;
        int32_t q = w->next[p];
        // Stale entry: one side has changed since it was pushed.
        const tok_merge *mg = tok_pair_find(t, w->sym[p], w->sym[q]);
        if (!mg || mg->merged != top.merged) continue;
        w->sym[p] = top.merged;
        w->sym[q] = -1;
        w->next[p] = w->next[q];
        if (w->next[p] >= 0) w->prev[w->next[p]] = p;
        if (w->prev[p] >= 0) tok_heap_push_pair(t, w, w->prev[p]);
        if (w->next[p] >= 0) tok_heap_push_pair(t, w, p);
    }
    for (int32_t i = 0; i >= 0; i = w->next[i]) SDS_TRY(tok_emit(w, w->sym[i]));
    return SDS_OK;
}

static int tok_word(const sds_tokenizer *t, tok_work *w, const char *word, size_t n) {
    tok_cache *c = t->cache;
    int64_t off;
    if (n <= TOK_CACHE_MAX_WORD && sds_strmap_get(c->words, word, n, &off)) {
        int32_t count = c->pool[off];
        SDS_TRY(tok_reserve_ids(&w->ids, &w->cap_ids, w->n_ids + (size_t)count));
        memcpy(w->ids + w->n_ids, c->pool + off + 1, (size_t)count * sizeof *w->ids);
        w->n_ids += (size_t)count;
        return SDS_OK;
    }
    size_t first = w->n_ids;
    SDS_TRY(tok_bpe_word(t, w, (const unsigned char *)word, n));
    if (n > TOK_CACHE_MAX_WORD) return SDS_OK;
    size_t count = w->n_ids - first;
    if (sds_strmap_count(c->words) >= TOK_CACHE_MAX_WORDS ||
        c->used + count + 1 > TOK_CACHE_MAX_IDS) {
        sds_strmap_clear(c->words);
        c->used = 0;
    }
    SDS_TRY(tok_reserve_ids(&c->pool, &c->cap, c->used + count + 1));
    c->pool[c->used] = (int32_t)count;
    memcpy(c->pool + c->used + 1, w->ids + first, count * sizeof *w->ids);
    SDS_TRY(sds_strmap_put(c->words, word, n, (int64_t)c->used));
    c->used += count + 1;
    return SDS_OK;
}

// One pre-tokenizer piece: GPT-2's split, then BPE per word.
static int tok_encode_piece(const sds_tokenizer *t, tok_work *w, const char *text, size_t n) {
    if (n == 0) return SDS_OK;
    if (t->add_prefix_space && text[0] != ' ') {
        // A copy apart from buf, which ignore_merges lookups reuse word by word.
        SDS_TRY(tok_reserve_chars(&w->seg, &w->cap_seg, n + 1));
        w->seg[0] = ' ';
        memcpy(w->seg + 1, text, n);
        text = w->seg;
        n++;
    }
    size_t pos = 0;
    while (pos < n) {
        int rc =
            pcre2_match(t->split_re, (PCRE2_SPTR)text, n, pos, PCRE2_NO_UTF_CHECK, w->md, NULL);
        size_t start = n, end = n;
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
            start = ov[0];
            end = ov[1];
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return sds_error_set(SDS_ERR_INPUT, "pre-splitting the text failed near byte %zu: %s",
                                 pos, (const char *)msg);
        }
        if (start > pos) SDS_TRY(tok_word(t, w, text + pos, start - pos));
        if (end > start) SDS_TRY(tok_word(t, w, text + start, end - start));
        pos = end > pos ? end : pos + 1;
    }
    return SDS_OK;
}

// A piece of text with no added tokens in it. With the digits pre-tokenizer, every numeric
// character is a piece of its own, and so is each stretch between them: GPT-2's pattern must not
// look past a piece's end (its "\\s+(?!\\S)" would).
static int tok_encode_plain(const sds_tokenizer *t, tok_work *w, const char *text, size_t n) {
    if (t->pre != SDS_TOK_PRE_DIGITS_GPT2) return tok_encode_piece(t, w, text, n);
    size_t pos = 0;
    while (pos < n) {
        int rc =
            pcre2_match(t->digit_re, (PCRE2_SPTR)text, n, pos, PCRE2_NO_UTF_CHECK, w->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return sds_error_set(SDS_ERR_INPUT, "splitting digits failed near byte %zu: %s", pos,
                                 (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t start = ov[0], end = ov[1];
        if (start > pos) SDS_TRY(tok_encode_piece(t, w, text + pos, start - pos));
        SDS_TRY(tok_encode_piece(t, w, text + start, end - start));
        pos = end;
    }
    return tok_encode_piece(t, w, text + pos, n - pos);
}

static bool tok_is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

// Decodes the (valid) UTF-8 character starting at s[0]; *size gets its length.
static uint32_t tok_utf8_decode(const unsigned char *s, size_t *size) {
    if (s[0] < 0x80) {
        *size = 1;
        return s[0];
    }
    if (s[0] < 0xE0) {
        *size = 2;
        return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    }
    if (s[0] < 0xF0) {
        *size = 3;
        return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    }
    *size = 4;
    return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
           (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
}

static bool tok_is_word_char_at(const sds_tokenizer *t, tok_work *w, const char *text, size_t n,
                                size_t at) {
    return pcre2_match(t->word_char_re, (PCRE2_SPTR)text, n, at,
                       PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, w->md, NULL) >= 0;
}

// Hugging Face's added-token split: pass 0 matches the tokens with normalized = false, pass 1
// the others in what is left; leftmost-longest, non-overlapping, left to right.
static int tok_encode_pass(const sds_tokenizer *t, tok_work *w, const char *text, size_t n,
                           int pass) {
    if (n == 0) return SDS_OK;
    if (pass == 2) return tok_encode_plain(t, w, text, n);
    const uint32_t *first = t->added_first[pass];
    if (first[0] == first[256]) return tok_encode_pass(t, w, text, n, pass + 1);
    const unsigned char *s = (const unsigned char *)text;
    size_t done = 0; // text[0, done) has been encoded
    size_t pos = 0;
    while (pos < n) {
        const tok_added *hit = NULL;
        for (uint32_t k = first[s[pos]]; k < first[s[pos] + 1]; k++) {
            const tok_added *a = &t->added[k];
            if (a->len <= n - pos && memcmp(a->content, text + pos, a->len) == 0) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + hit->len;
        pos = stop;
        if (hit->single_word) {
            size_t before = start > 0 ? start - 1 : 0; // start of the character before
            while (before > 0 && (s[before] & 0xC0) == 0x80) before--;
            if ((start > 0 && tok_is_word_char_at(t, w, text, n, before)) ||
                (stop < n && tok_is_word_char_at(t, w, text, n, stop)))
                continue;
        }
        if (hit->lstrip) {
            size_t b = start;
            while (b > done) {
                size_t c = b - 1, size;
                while (c > done && (s[c] & 0xC0) == 0x80) c--;
                if (!tok_is_white_space(tok_utf8_decode(s + c, &size))) break;
                b = c;
            }
            start = b;
        }
        if (hit->rstrip) {
            size_t size;
            while (stop < n && tok_is_white_space(tok_utf8_decode(s + stop, &size))) stop += size;
            pos = stop;
        }
        SDS_TRY(tok_encode_pass(t, w, text + done, start - done, pass + 1));
        SDS_TRY(tok_emit(w, hit->id));
        done = stop;
    }
    return tok_encode_pass(t, w, text + done, n - done, pass + 1);
}

int sds_tokenizer_encode(const sds_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                         int64_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    size_t bad = tok_utf8_invalid_at((const unsigned char *)text, len);
    if (bad < len)
        return sds_error_set(SDS_ERR_INPUT, "invalid UTF-8 at byte offset %zu (byte 0x%02x)", bad,
                             (unsigned char)text[bad]);
    tok_work w = {0};
    w.md = pcre2_match_data_create_from_pattern(tok->split_re, NULL);
    int rc = w.md ? SDS_OK : sds_error_set(SDS_ERR_IO, "out of memory for PCRE2 match data");
    if (rc == SDS_OK) rc = tok_reserve_ids(&w.ids, &w.cap_ids, len / 3 + 16);
    if (rc == SDS_OK) rc = tok_encode_pass(tok, &w, text, len, 0);
    pcre2_match_data_free(w.md);
    free(w.sym);
    free(w.prev);
    free(w.next);
    free(w.heap);
    free(w.buf);
    free(w.seg);
    if (rc != SDS_OK) {
        free(w.ids);
        return rc;
    }
    *ids = w.ids;
    *n_ids = (int64_t)w.n_ids;
    return SDS_OK;
}

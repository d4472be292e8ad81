// Hugging Face export: parameter list by architecture, a streaming safetensors writer, file
// copies, and (for GGUF sources) a generated config.json and tokenizer.
#define _POSIX_C_SOURCE 200809L
#include "hf_export.h"

#include "file.h"
#include "gguf.h"
#include "model_load.h"
#include "safetensors.h"
#include "sds_error.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_PATH_MAX 4096
// Elements converted per write, so the fp32 model in memory is the only full-size buffer.
#define HF_CHUNK (1u << 18)

// ---- the parameters, by Hugging Face name ----

typedef struct {
    char name[192];
    const float *data; // fp32, row-major, numel = shape[0] * shape[1]
    int32_t ndim;
    int64_t shape[2];
    sds_dtype dtype; // what to write
} hf_tensor;

typedef struct {
    hf_tensor *t;
    int64_t n, cap;
} hf_list;

static int list_add(hf_list *l, const float *data, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

// One tensor: 1-D when d1 is 0.
static int list_add(hf_list *l, const float *data, int64_t d0, int64_t d1, const char *fmt, ...) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 64;
        hf_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) return sds_error_set(SDS_ERR_IO, "out of memory listing the export's tensors");
        l->t = t;
        l->cap = cap;
    }
    hf_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->data = data;
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->dtype = SDS_DTYPE_F32;
    return SDS_OK;
}

static int64_t tensor_numel(const hf_tensor *t) {
    return t->ndim == 2 ? t->shape[0] * t->shape[1] : t->shape[0];
}

// OPTForCausalLM: model.decoder.* and, untied, lm_head.weight (opt_load.c reads the same set).
static int list_opt(const sds_opt_model *m, hf_list *l) {
    const sds_model_config *c = &m->cfg;
    const int64_t C = c->hidden_size, F = c->ffn_dim, E = c->word_embed_proj_dim, V = c->vocab_size,
                  P = c->max_position_embeddings + 2;
    const char *d = "model.decoder";
    SDS_TRY(list_add(l, m->embed_tokens, V, E, "%s.embed_tokens.weight", d));
    SDS_TRY(list_add(l, m->embed_positions, P, C, "%s.embed_positions.weight", d));
    if (m->project_in) SDS_TRY(list_add(l, m->project_in, C, E, "%s.project_in.weight", d));
    if (m->project_out) SDS_TRY(list_add(l, m->project_out, E, C, "%s.project_out.weight", d));
    if (m->final_ln_w) {
        SDS_TRY(list_add(l, m->final_ln_w, C, 0, "%s.final_layer_norm.weight", d));
        SDS_TRY(list_add(l, m->final_ln_b, C, 0, "%s.final_layer_norm.bias", d));
    }
    for (int64_t i = 0; i < c->n_layers; i++) {
        const sds_opt_layer *y = &m->layers[i];
        const long long li = (long long)i;
        const struct {
            const char *name;
            const float *w, *b;
            int64_t rows, cols;
        } lin[] = {{"self_attn.q_proj", y->q_w, y->q_b, C, C},
                   {"self_attn.k_proj", y->k_w, y->k_b, C, C},
                   {"self_attn.v_proj", y->v_w, y->v_b, C, C},
                   {"self_attn.out_proj", y->out_w, y->out_b, C, C},
                   {"fc1", y->fc1_w, y->fc1_b, F, C},
                   {"fc2", y->fc2_w, y->fc2_b, C, F}};
        for (size_t j = 0; j < sizeof lin / sizeof lin[0]; j++) {
            SDS_TRY(list_add(l, lin[j].w, lin[j].rows, lin[j].cols, "%s.layers.%lld.%s.weight", d,
                             li, lin[j].name));
            if (lin[j].b)
                SDS_TRY(list_add(l, lin[j].b, lin[j].rows, 0, "%s.layers.%lld.%s.bias", d, li,
                                 lin[j].name));
        }
        if (y->attn_ln_w) {
            SDS_TRY(list_add(l, y->attn_ln_w, C, 0, "%s.layers.%lld.self_attn_layer_norm.weight", d,
                             li));
            SDS_TRY(
                list_add(l, y->attn_ln_b, C, 0, "%s.layers.%lld.self_attn_layer_norm.bias", d, li));
            SDS_TRY(
                list_add(l, y->ffn_ln_w, C, 0, "%s.layers.%lld.final_layer_norm.weight", d, li));
            SDS_TRY(list_add(l, y->ffn_ln_b, C, 0, "%s.layers.%lld.final_layer_norm.bias", d, li));
        }
    }
    if (!c->tie_word_embeddings) SDS_TRY(list_add(l, m->lm_head, V, E, "lm_head.weight"));
    return SDS_OK;
}

// LlamaForCausalLM: model.* and, untied, lm_head.weight (llama_load.c reads the same set).
static int list_llama(const sds_llama_model *m, hf_list *l) {
    const sds_model_config *c = &m->cfg;
    const int64_t C = c->hidden_size, V = c->vocab_size;
    SDS_TRY(list_add(l, m->embed_tokens, V, C, "model.embed_tokens.weight"));
    for (int64_t i = 0; i < c->n_layers; i++) {
        sds_llama_layer *y = &m->layers[i];
        const long long li = (long long)i;
        for (int j = 0; j < SDS_LLAMA_N_LINEAR; j++) {
            int64_t rows, cols;
            const float *w = sds_llama_linear_weight(y, (sds_llama_linear)j, &rows, &cols, c);
            const float *b = sds_llama_linear_bias(y, (sds_llama_linear)j);
            const char *ln = sds_llama_linear_name((sds_llama_linear)j);
            SDS_TRY(list_add(l, w, rows, cols, "model.layers.%lld.%s.weight", li, ln));
            if (b) SDS_TRY(list_add(l, b, rows, 0, "model.layers.%lld.%s.bias", li, ln));
        }
        SDS_TRY(list_add(l, y->attn_norm_w, C, 0, "model.layers.%lld.input_layernorm.weight", li));
        SDS_TRY(list_add(l, y->mlp_norm_w, C, 0,
                         "model.layers.%lld.post_attention_layernorm.weight", li));
    }
    SDS_TRY(list_add(l, m->final_norm_w, C, 0, "model.norm.weight"));
    if (!c->tie_word_embeddings) SDS_TRY(list_add(l, m->lm_head, V, C, "lm_head.weight"));
    return SDS_OK;
}

// Each tensor's dtype in the source checkpoint. OPT checkpoints may name the decoder
// "decoder.*" rather than "model.decoder.*" (opt_load.c accepts both).
static int source_dtypes(const char *model_path, hf_list *l) {
    sds_safetensors *st = NULL;
    SDS_TRY(sds_safetensors_open(model_path, &st));
    int rc = SDS_OK;
    for (int64_t i = 0; rc == SDS_OK && i < l->n; i++) {
        hf_tensor *t = &l->t[i];
        const sds_st_tensor *s = sds_safetensors_find(st, t->name);
        if (!s && strncmp(t->name, "model.", 6) == 0) s = sds_safetensors_find(st, t->name + 6);
        if (!s) {
            rc = sds_error_set(SDS_ERR_INPUT, "tensor %s missing from %s", t->name, model_path);
            break;
        }
        const char *file = sds_safetensors_file_of(st, s);
        if (s->dtype == SDS_DTYPE_OTHER) {
            rc = sds_error_set(SDS_ERR_INPUT,
                               "tensor %s in %s has dtype %s, expected F32, F16 or BF16", s->name,
                               file, s->dtype_name);
            break;
        }
        bool same = s->ndim == t->ndim;
        for (int32_t k = 0; same && k < t->ndim; k++) same = s->shape[k] == t->shape[k];
        if (!same) {
            rc = sds_error_set(SDS_ERR_INPUT, "tensor %s in %s does not have the model's shape",
                               s->name, file);
            break;
        }
        t->dtype = s->dtype;
    }
    sds_safetensors_free(st);
    return rc;
}

// ---- fp32 to the stored dtypes ----

// IEEE half, round to nearest even; +-inf beyond the range (convert refuses those).
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu)); // NaN
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); // >= 65520 rounds past 65504
    uint32_t q, rem, half;
    if (ax < 0x38800000u) {
        // below 2^-14: a subnormal half, q units of 2^-24
        const uint32_t e = ax >> 23;
        if (e < 102) return (uint16_t)sign; // below 2^-25: rounds to zero
        const uint32_t mant = (ax & 0x7fffffu) | 0x800000u, shift = 126u - e;
        q = mant >> shift;
        rem = mant & ((1u << shift) - 1u);
        half = 1u << (shift - 1u);
    } else {
        const uint32_t r = ax - 0x38000000u; // exponent rebiased 127 -> 15
        q = r >> 13;
        rem = r & 0x1fffu;
        half = 0x1000u;
    }
    if (rem > half || (rem == half && (q & 1u))) q++; // a carry moves into the exponent
    return (uint16_t)(sign | q);
}

// bfloat16, round to nearest even (as torch's .to(torch.bfloat16)).
static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); // quiet NaN
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static size_t dtype_size(sds_dtype d) {
    return d == SDS_DTYPE_F32 ? 4 : 2;
}

static const char *dtype_name(sds_dtype d) {
    return d == SDS_DTYPE_F32 ? "F32" : d == SDS_DTYPE_F16 ? "F16" : "BF16";
}

// src (n) -> little-endian bytes of dtype d in out. A non-zero value that would round to zero
// becomes the smallest subnormal of its sign, so zeros in the output are exactly the zeros of
// src. SDS_ERR_NUMERIC when a value overflows the dtype.
static int convert(const hf_tensor *t, const float *src, size_t n, int64_t at, unsigned char *out) {
    if (t->dtype == SDS_DTYPE_F32) {
        for (size_t i = 0; i < n; i++) {
            uint32_t x;
            memcpy(&x, &src[i], sizeof x);
            for (int b = 0; b < 4; b++) out[4 * i + (size_t)b] = (unsigned char)(x >> (8 * b));
        }
        return SDS_OK;
    }
    const bool half = t->dtype == SDS_DTYPE_F16;
    const uint16_t inf = half ? 0x7c00u : 0x7f80u;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = half ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
        if ((h & 0x7fffu) == 0 && src[i] != 0.0f) h = (uint16_t)((h & 0x8000u) | 1u);
        if ((h & 0x7fffu) == inf) // src is finite (the loaders and h5in check)
            return sds_error_set(SDS_ERR_NUMERIC,
                                 "tensor %s: value %g at index %lld does not fit in %s (largest "
                                 "%s)",
                                 t->name, (double)src[i], (long long)(at + (int64_t)i),
                                 dtype_name(t->dtype), half ? "65504" : "3.3895e38");
        out[2 * i] = (unsigned char)h;
        out[2 * i + 1] = (unsigned char)(h >> 8);
    }
    return SDS_OK;
}

// ---- output files ----

// buf (HF_PATH_MAX) = dir/name.
static int join(char *buf, const char *dir, const char *name) {
    int n = snprintf(buf, HF_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= HF_PATH_MAX)
        return sds_error_set(SDS_ERR_USAGE, "%s/%s: path too long", dir, name);
    return SDS_OK;
}

static int out_open(const char *path, FILE **f) {
    *f = fopen(path, "wb");
    if (!*f) return sds_error_set(SDS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return SDS_OK;
}

// Flushes to the disk and closes; an earlier write error shows here too.
static int out_close(FILE *f, const char *path, int rc) {
    errno = 0;
    int bad = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int e = errno;
    bad = (fclose(f) != 0) || bad;
    if (bad && rc == SDS_OK)
        rc = sds_error_set(SDS_ERR_IO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    return rc;
}

static int out_write(FILE *f, const void *p, size_t n, const char *path) {
    if (n > 0 && fwrite(p, 1, n, f) != n)
        return sds_error_set(SDS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return SDS_OK;
}

// model.safetensors: u64 little-endian header length, the JSON header (padded with spaces to a
// multiple of 8 so the data is aligned), then every tensor's bytes in list order.
static int write_safetensors(const hf_list *l, const char *path) {
    json_t *hdr = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(hdr, "__metadata__", meta);
    uint64_t off = 0;
    for (int64_t i = 0; i < l->n; i++) {
        const hf_tensor *t = &l->t[i];
        const uint64_t bytes = (uint64_t)tensor_numel(t) * dtype_size(t->dtype);
        json_t *e = json_object(), *shape = json_array();
        for (int32_t k = 0; k < t->ndim; k++)
            json_array_append_new(shape, json_integer(t->shape[k]));
        json_object_set_new(e, "dtype", json_string(dtype_name(t->dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets",
                            json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
        json_object_set_new(hdr, t->name, e);
        off += bytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    if (!text) return sds_error_set(SDS_ERR_IO, "%s: out of memory writing the header", path);
    size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
    unsigned char *buf = malloc(HF_CHUNK * 4 > padded + 8 ? HF_CHUNK * 4 : padded + 8);
    if (!buf) {
        free(text);
        return sds_error_set(SDS_ERR_IO, "%s: out of memory", path);
    }
    for (int b = 0; b < 8; b++) buf[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(buf + 8, text, n);
    memset(buf + 8 + n, ' ', padded - n);
    free(text);
    FILE *f = NULL;
    int rc = out_open(path, &f);
    if (rc != SDS_OK) {
        free(buf);
        return rc;
    }
    rc = out_write(f, buf, padded + 8, path);
    for (int64_t i = 0; rc == SDS_OK && i < l->n; i++) {
        const hf_tensor *t = &l->t[i];
        const int64_t numel = tensor_numel(t);
        for (int64_t at = 0; rc == SDS_OK && at < numel; at += HF_CHUNK) {
            const size_t k = (size_t)(numel - at < HF_CHUNK ? numel - at : HF_CHUNK);
            rc = convert(t, t->data + at, k, at, buf);
            if (rc == SDS_OK) rc = out_write(f, buf, k * dtype_size(t->dtype), path);
        }
    }
    free(buf);
    return out_close(f, path, rc);
}

// Copies src to dst byte for byte.
static int copy_file(const char *src, const char *dst) {
    int in;
    uint64_t size;
    SDS_TRY(sds_file_open_regular(src, &in, &size));
    FILE *f = NULL;
    int rc = out_open(dst, &f);
    if (rc != SDS_OK) {
        close(in);
        return rc;
    }
    char *buf = malloc(1u << 20);
    if (!buf) rc = sds_error_set(SDS_ERR_IO, "%s: out of memory", dst);
    while (rc == SDS_OK) {
        ssize_t got = read(in, buf, 1u << 20);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) rc = sds_error_set(SDS_ERR_IO, "%s: read failed: %s", src, strerror(errno));
        if (got <= 0) break;
        rc = out_write(f, buf, (size_t)got, dst);
    }
    free(buf);
    close(in);
    return out_close(f, dst, rc);
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

// Copies dir/name to out/name when it exists.
static int copy_if_present(const char *dir, const char *name, const char *out) {
    char src[HF_PATH_MAX], dst[HF_PATH_MAX];
    SDS_TRY(join(src, dir, name));
    SDS_TRY(join(dst, out, name));
    return is_file(src) ? copy_file(src, dst) : SDS_OK;
}

static const char *const tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json",   "vocab.json",
    "merges.txt",     "special_tokens_map.json", "added_tokens.json"};

static int copy_tokenizer(const char *dir, const char *out) {
    for (size_t i = 0; i < sizeof tokenizer_files / sizeof tokenizer_files[0]; i++)
        SDS_TRY(copy_if_present(dir, tokenizer_files[i], out));
    return SDS_OK;
}

static int write_json(json_t *root, const char *out, const char *name, size_t flags) {
    char path[HF_PATH_MAX];
    int rc = join(path, out, name);
    if (rc != SDS_OK) {
        json_decref(root);
        return rc;
    }
    if (!root) return sds_error_set(SDS_ERR_IO, "%s: out of memory building the JSON", path);
    char *text = json_dumps(root, flags);
    json_decref(root);
    if (!text) return sds_error_set(SDS_ERR_IO, "%s: out of memory writing the JSON", path);
    FILE *f = NULL;
    rc = out_open(path, &f);
    if (rc == SDS_OK) {
        rc = out_write(f, text, strlen(text), path);
        if (rc == SDS_OK) rc = out_write(f, "\n", 1, path);
        rc = out_close(f, path, rc);
    }
    free(text);
    return rc;
}

// ---- GGUF sources: config.json and the tokenizer, generated ----

// The shortest decimal that reads back as the float32 x (1e-05 rather than 9.99999975e-06), as
// a double; written with 9 significant digits (what a float32 needs), %g drops the zeros.
static double short_float(float x) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return strtod(buf, NULL);
}

// config.json for LlamaForCausalLM (transformers 4.44's field names).
static int gguf_config(const sds_model_config *c, const char *out) {
    json_t *r = json_object();
    json_object_set_new(r, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    json_object_set_new(r, "model_type", json_string("llama"));
    json_object_set_new(r, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(r, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(r, "intermediate_size", json_integer(c->ffn_dim));
    json_object_set_new(r, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(r, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(r, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(r, "hidden_act", json_string("silu"));
    json_object_set_new(r, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(r, "rms_norm_eps", json_real(short_float(c->norm_eps)));
    json_object_set_new(r, "rope_theta", json_real(short_float((float)c->rope_theta)));
    if (c->rope_type == SDS_ROPE_LINEAR) {
        json_object_set_new(r, "rope_scaling",
                            json_pack("{s:s, s:f}", "rope_type", "linear", "factor",
                                      short_float((float)c->rope_factor)));
    } else {
        SDS_ASSERT(c->rope_type == SDS_ROPE_DEFAULT); // the GGUF loader knows no other
        json_object_set_new(r, "rope_scaling", json_null());
    }
    json_object_set_new(r, "attention_bias", json_boolean(c->attention_bias));
    json_object_set_new(r, "attention_dropout", json_real(0.0));
    json_object_set_new(r, "mlp_bias", json_boolean(c->mlp_bias));
    json_object_set_new(r, "pretraining_tp", json_integer(1));
    json_object_set_new(r, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    if (c->bos_token_id >= 0) json_object_set_new(r, "bos_token_id", json_integer(c->bos_token_id));
    if (c->eos_token_id >= 0) json_object_set_new(r, "eos_token_id", json_integer(c->eos_token_id));
    if (c->pad_token_id >= 0) json_object_set_new(r, "pad_token_id", json_integer(c->pad_token_id));
    json_object_set_new(r, "torch_dtype", json_string("float32"));
    json_object_set_new(r, "use_cache", json_true());
    return write_json(r, out, "config.json", JSON_INDENT(2) | JSON_REAL_PRECISION(9));
}

// A string from the GGUF as JSON; NULL (an error recorded) when it is not valid UTF-8.
static json_t *gguf_string(const char *s, const char *path, const char *what, int64_t i) {
    json_t *v = json_string(s);
    if (!v)
        sds_error_set(SDS_ERR_INPUT, "%s: %s[%lld] is not valid UTF-8", path, what, (long long)i);
    return v;
}

// GGUF token types (llama.cpp's llama_token_type), as tokenizer.c reads them.
enum { HF_GGUF_CONTROL = 3, HF_GGUF_USER_DEFINED = 4 };

typedef struct {
    const char *const *tokens;
    int64_t n_tokens;
    const char *const *merges;
    int64_t n_merges;
    int64_t *types; // NULL when the file has no token_type
    bool digits;    // tokenizer.ggml.pre "smollm": digits split one by one first
    bool add_bos;
    int64_t bos, eos, unk, pad; // -1 when absent
    const char *chat_template;  // NULL when absent
} gguf_tok;

static int gguf_tok_read(const sds_gguf *g, gguf_tok *t) {
    const char *path = sds_gguf_path(g), *model = NULL, *pre = NULL;
    memset(t, 0, sizeof *t);
    SDS_TRY(sds_gguf_get_str(g, "tokenizer.ggml.model", &model));
    if (strcmp(model, "gpt2") != 0)
        return sds_error_set(
            SDS_ERR_INPUT,
            "%s: tokenizer.ggml.model is \"%.64s\"; only \"gpt2\" (byte-level BPE) "
            "can be exported as a tokenizer.json",
            path, model);
    if (!sds_gguf_has(g, "tokenizer.ggml.pre"))
        return sds_error_set(SDS_ERR_INPUT, "%s: tokenizer.ggml.pre is missing", path);
    SDS_TRY(sds_gguf_get_str(g, "tokenizer.ggml.pre", &pre));
    if (strcmp(pre, "smollm") == 0)
        t->digits = true;
    else if (strcmp(pre, "gpt-2") != 0)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: tokenizer.ggml.pre is \"%.64s\", not one we can export "
                             "(\"gpt-2\", \"smollm\")",
                             path, pre);
    const uint64_t *tok_lens, *merge_lens;
    SDS_TRY(
        sds_gguf_get_str_array(g, "tokenizer.ggml.tokens", &t->tokens, &tok_lens, &t->n_tokens));
    SDS_TRY(
        sds_gguf_get_str_array(g, "tokenizer.ggml.merges", &t->merges, &merge_lens, &t->n_merges));
    for (int64_t i = 0; i < t->n_tokens; i++)
        if (strlen(t->tokens[i]) != tok_lens[i])
            return sds_error_set(SDS_ERR_INPUT, "%s: tokenizer.ggml.tokens[%lld] holds a NUL byte",
                                 path, (long long)i);
    for (int64_t k = 0; k < t->n_merges; k++)
        if (strlen(t->merges[k]) != merge_lens[k])
            return sds_error_set(SDS_ERR_INPUT, "%s: tokenizer.ggml.merges[%lld] holds a NUL byte",
                                 path, (long long)k);
    struct {
        const char *key;
        int64_t *dst;
    } ids[] = {{"tokenizer.ggml.bos_token_id", &t->bos},
               {"tokenizer.ggml.eos_token_id", &t->eos},
               {"tokenizer.ggml.unknown_token_id", &t->unk},
               {"tokenizer.ggml.padding_token_id", &t->pad}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        *ids[i].dst = -1;
        if (sds_gguf_has(g, ids[i].key)) SDS_TRY(sds_gguf_get_i64(g, ids[i].key, ids[i].dst));
        if (*ids[i].dst >= t->n_tokens)
            return sds_error_set(SDS_ERR_INPUT, "%s: %s %lld is not a token (vocabulary of %lld)",
                                 path, ids[i].key, (long long)*ids[i].dst, (long long)t->n_tokens);
    }
    if (sds_gguf_has(g, "tokenizer.ggml.add_bos_token"))
        SDS_TRY(sds_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos));
    if (t->add_bos && t->bos < 0)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: tokenizer.ggml.add_bos_token is true but there is no "
                             "tokenizer.ggml.bos_token_id",
                             path);
    if (sds_gguf_has(g, "tokenizer.chat_template"))
        SDS_TRY(sds_gguf_get_str(g, "tokenizer.chat_template", &t->chat_template));
    if (sds_gguf_has(g, "tokenizer.ggml.token_type")) {
        int64_t n = 0;
        SDS_TRY(sds_gguf_get_i64_array(g, "tokenizer.ggml.token_type", &t->types, &n));
        if (n != t->n_tokens) {
            free(t->types);
            t->types = NULL;
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: tokenizer.ggml.token_type has %lld entries for %lld tokens",
                                 path, (long long)n, (long long)t->n_tokens);
        }
    }
    return SDS_OK;
}

static json_t *byte_level(bool add_prefix_space, bool trim_offsets) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
                     add_prefix_space, "trim_offsets", trim_offsets, "use_regex", 1);
}

// tokenizer.json as Hugging Face `tokenizers` 0.19 writes a byte-level BPE, with the
// pre-tokenizer io/tokenizer.c applies for the GGUF (so both give the same ids).
static int gguf_tokenizer_json(const gguf_tok *t, const char *path, const char *out) {
    json_t *root = json_object(), *added = json_array(), *vocab = json_object(),
           *merges = json_array();
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "truncation", json_null());
    json_object_set_new(root, "padding", json_null());
    json_object_set_new(root, "added_tokens", added);
    json_object_set_new(root, "normalizer", json_null());
    json_t *pre = byte_level(false, true);
    if (t->digits)
        pre = json_pack("{s:s, s:[{s:s, s:b}, o]}", "type", "Sequence", "pretokenizers", "type",
                        "Digits", "individual_digits", 1, pre);
    json_object_set_new(root, "pre_tokenizer", pre);
    if (t->add_bos) {
        const char *b = t->tokens[t->bos];
        json_t *single = json_pack("[{s:{s:s, s:i}}, {s:{s:s, s:i}}]", "SpecialToken", "id", b,
                                   "type_id", 0, "Sequence", "id", "A", "type_id", 0);
        json_t *pair =
            json_pack("[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}]",
                      "SpecialToken", "id", b, "type_id", 0, "Sequence", "id", "A", "type_id", 0,
                      "SpecialToken", "id", b, "type_id", 1, "Sequence", "id", "B", "type_id", 1);
        json_t *special = json_object();
        json_object_set_new(
            special, b,
            json_pack("{s:s, s:[I], s:[s]}", "id", b, "ids", (json_int_t)t->bos, "tokens", b));
        json_object_set_new(root, "post_processor",
                            json_pack("{s:s, s:o, s:o, s:o}", "type", "TemplateProcessing",
                                      "single", single, "pair", pair, "special_tokens", special));
    } else {
        json_object_set_new(root, "post_processor", byte_level(true, false));
    }
    json_object_set_new(root, "decoder", byte_level(true, true));
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b}", "type", "BPE", "dropout",
                              "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                              "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0);
    json_object_set_new(model, "vocab", vocab);
    json_object_set_new(model, "merges", merges);
    json_object_set_new(root, "model", model);
    int rc = SDS_OK;
    for (int64_t i = 0; rc == SDS_OK && i < t->n_tokens; i++) {
        json_t *s = gguf_string(t->tokens[i], path, "tokenizer.ggml.tokens", i);
        if (!s) {
            rc = SDS_ERR_INPUT;
            break;
        }
        json_object_set_new(vocab, t->tokens[i], json_integer(i));
        const int64_t ty = t->types ? t->types[i] : 1;
        if (ty == HF_GGUF_CONTROL || ty == HF_GGUF_USER_DEFINED) {
            // matched literally before the pre-split, like tokenizer.c's special ids
            json_array_append_new(added, json_pack("{s:I, s:o, s:b, s:b, s:b, s:b, s:b}", "id",
                                                   (json_int_t)i, "content", s, "single_word", 0,
                                                   "lstrip", 0, "rstrip", 0, "normalized", 0,
                                                   "special", ty == HF_GGUF_CONTROL));
        } else {
            json_decref(s);
        }
    }
    for (int64_t k = 0; rc == SDS_OK && k < t->n_merges; k++) {
        json_t *s = gguf_string(t->merges[k], path, "tokenizer.ggml.merges", k);
        if (!s)
            rc = SDS_ERR_INPUT;
        else
            json_array_append_new(merges, s);
    }
    if (rc != SDS_OK) {
        json_decref(root);
        return rc;
    }
    return write_json(root, out, "tokenizer.json", JSON_INDENT(2));
}

// tokenizer_config.json: the generic fast tokenizer class, so AutoTokenizer keeps
// tokenizer.json's post-processor (BOS exactly as the GGUF says).
static int gguf_tokenizer_config(const gguf_tok *t, int64_t max_len, const char *out) {
    json_t *r = json_object();
    json_object_set_new(r, "tokenizer_class", json_string("PreTrainedTokenizerFast"));
    json_object_set_new(r, "add_bos_token", json_boolean(t->add_bos));
    json_object_set_new(r, "add_eos_token", json_false());
    const struct {
        const char *key;
        int64_t id;
    } named[] = {
        {"bos_token", t->bos}, {"eos_token", t->eos}, {"unk_token", t->unk}, {"pad_token", t->pad}};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (named[i].id >= 0)
            json_object_set_new(r, named[i].key, json_string(t->tokens[named[i].id]));
    json_object_set_new(r, "clean_up_tokenization_spaces", json_false());
    json_object_set_new(r, "model_max_length", json_integer(max_len));
    if (t->chat_template) json_object_set_new(r, "chat_template", json_string(t->chat_template));
    return write_json(r, out, "tokenizer_config.json", JSON_INDENT(2));
}

static int gguf_tokenizer(const char *gguf_path, const sds_model_config *c, const char *out) {
    sds_gguf *g = NULL;
    SDS_TRY(sds_gguf_open(gguf_path, &g));
    gguf_tok t;
    int rc = gguf_tok_read(g, &t);
    if (rc == SDS_OK) rc = gguf_tokenizer_json(&t, gguf_path, out);
    if (rc == SDS_OK) rc = gguf_tokenizer_config(&t, c->max_position_embeddings, out);
    free(t.types);
    sds_gguf_free(g);
    return rc;
}

// ---- the directory ----

int sds_hf_export_check_out(const char *out_dir) {
    struct stat sb;
    if (stat(out_dir, &sb) != 0) return SDS_OK;
    if (!S_ISDIR(sb.st_mode))
        return sds_error_set(SDS_ERR_USAGE, "%s exists and is not a directory; not overwriting it",
                             out_dir);
    DIR *d = opendir(out_dir);
    if (!d)
        return sds_error_set(SDS_ERR_USAGE, "%s exists and cannot be read: %s", out_dir,
                             strerror(errno));
    bool empty = true;
    const struct dirent *e;
    while (empty && (e = readdir(d)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    if (!empty)
        return sds_error_set(SDS_ERR_USAGE,
                             "%s exists and is not empty; not overwriting it (name a new or empty "
                             "directory)",
                             out_dir);
    return SDS_OK;
}

// Removes the (flat) temporary directory and what was written into it.
static void remove_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        const struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[HF_PATH_MAX];
            if (join(p, dir, e->d_name) == SDS_OK) unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int export_into(const sds_model *m, const char *model_path, const char *tokenizer_dir,
                       const char *tmp) {
    hf_list l = {0};
    const bool gguf = sds_model_is_gguf(model_path);
    int rc = m->arch == SDS_ARCH_OPT ? list_opt(&m->opt, &l) : list_llama(&m->llama, &l);
    if (rc == SDS_OK && !gguf) rc = source_dtypes(model_path, &l);
    char path[HF_PATH_MAX];
    if (rc == SDS_OK) rc = join(path, tmp, "model.safetensors");
    if (rc == SDS_OK) rc = write_safetensors(&l, path);
    free(l.t);
    if (rc != SDS_OK) return rc;
    if (gguf) {
        SDS_TRY(gguf_config(&m->cfg, tmp));
        return tokenizer_dir ? copy_tokenizer(tokenizer_dir, tmp)
                             : gguf_tokenizer(model_path, &m->cfg, tmp);
    }
    char src[HF_PATH_MAX];
    SDS_TRY(join(src, model_path, "config.json"));
    SDS_TRY(join(path, tmp, "config.json"));
    SDS_TRY(copy_file(src, path));
    SDS_TRY(copy_if_present(model_path, "generation_config.json", tmp));
    return copy_tokenizer(tokenizer_dir ? tokenizer_dir : model_path, tmp);
}

int sds_hf_export(const sds_model *m, const char *model_path, const char *tokenizer_dir,
                  const char *out_dir) {
    char dir[HF_PATH_MAX], tmp[HF_PATH_MAX + 32];
    if (strlen(out_dir) >= sizeof dir - 64)
        return sds_error_set(SDS_ERR_USAGE, "%.64s...: path too long", out_dir);
    snprintf(dir, sizeof dir, "%s", out_dir);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) dir[n - 1] = '\0';
    SDS_TRY(sds_hf_export_check_out(dir));
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", dir, (int)getpid());
    if (mkdir(tmp, 0777) != 0)
        return sds_error_set(SDS_ERR_IO, "%s: cannot create the directory: %s", tmp,
                             strerror(errno));
    int rc = export_into(m, model_path, tokenizer_dir, tmp);
    // an empty directory of that name is replaced; a non-empty one makes rename fail
    if (rc == SDS_OK && rename(tmp, dir) != 0)
        rc = sds_error_set(SDS_ERR_IO, "%s: cannot rename %s to it: %s", dir, tmp, strerror(errno));
    if (rc != SDS_OK) remove_tmp(tmp);
    return rc;
}

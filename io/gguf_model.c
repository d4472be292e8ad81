#include "gguf_model.h"

#include "llama_load.h"
#include "sds_error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int get_i64_or(const sds_gguf *g, const char *key, int64_t dflt, int64_t *out) {
    if (!sds_gguf_has(g, key)) {
        *out = dflt;
        return SDS_OK;
    }
    return sds_gguf_get_i64(g, key, out);
}

int sds_gguf_llama_config(const sds_gguf *g, sds_model_config *c) {
    const char *path = sds_gguf_path(g);
    memset(c, 0, sizeof *c);
    const char *arch = NULL;
    SDS_TRY(sds_gguf_get_str(g, "general.architecture", &arch));
    if (strcmp(arch, "llama") != 0)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: general.architecture \"%s\" is not supported (supported: llama)",
                             path, arch);
    c->arch = SDS_ARCH_LLAMA;
    snprintf(c->model_type, sizeof c->model_type, "llama");
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "float32");
    SDS_TRY(sds_gguf_get_i64(g, "llama.block_count", &c->n_layers));
    SDS_TRY(sds_gguf_get_i64(g, "llama.embedding_length", &c->hidden_size));
    SDS_TRY(sds_gguf_get_i64(g, "llama.feed_forward_length", &c->ffn_dim));
    SDS_TRY(sds_gguf_get_i64(g, "llama.attention.head_count", &c->n_heads));
    SDS_TRY(get_i64_or(g, "llama.attention.head_count_kv", c->n_heads, &c->n_kv_heads));
    SDS_TRY(get_i64_or(g, "llama.context_length", 2048, &c->max_position_embeddings));
    SDS_TRY(sds_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &c->norm_eps));
    float theta = 10000.0f;
    if (sds_gguf_has(g, "llama.rope.freq_base"))
        SDS_TRY(sds_gguf_get_f32(g, "llama.rope.freq_base", &theta));
    c->rope_theta = theta;
    c->rope_type = SDS_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (sds_gguf_has(g, "llama.rope.scaling.type")) {
        const char *st = NULL;
        SDS_TRY(sds_gguf_get_str(g, "llama.rope.scaling.type", &st));
        if (strcmp(st, "linear") == 0) {
            float f = 1.0f;
            SDS_TRY(sds_gguf_get_f32(g, "llama.rope.scaling.factor", &f));
            c->rope_type = SDS_ROPE_LINEAR;
            c->rope_factor = f;
        } else if (strcmp(st, "none") != 0) {
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: llama.rope.scaling.type \"%s\" is not supported (none, "
                                 "linear)",
                                 path, st);
        }
    }
    const sds_gguf_tensor *emb = sds_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return sds_error_set(SDS_ERR_INPUT, "%s: tensor token_embd.weight missing", path);
    SDS_TRY(get_i64_or(g, "llama.vocab_size", emb->ne[1], &c->vocab_size));
    if (c->n_heads <= 0 || c->hidden_size <= 0 || c->hidden_size % c->n_heads != 0 ||
        c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads != 0 || c->n_layers <= 0 ||
        c->ffn_dim <= 0 || c->vocab_size <= 0)
        return sds_error_set(SDS_ERR_INPUT, "%s: inconsistent llama.* sizes in the metadata", path);
    c->head_dim = c->hidden_size / c->n_heads;
    int64_t rope_dim = c->head_dim;
    SDS_TRY(get_i64_or(g, "llama.rope.dimension_count", c->head_dim, &rope_dim));
    if (rope_dim != c->head_dim)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: llama.rope.dimension_count %lld differs from the head size %lld "
                             "(partial rotary embeddings are not supported)",
                             path, (long long)rope_dim, (long long)c->head_dim);
    c->word_embed_proj_dim = c->hidden_size;
    c->do_layer_norm_before = 1;
    // llama.cpp writes output.weight only when the head is not tied to the embedding
    c->tie_word_embeddings = sds_gguf_find_tensor(g, "output.weight") == NULL;
    c->attention_bias = sds_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    c->mlp_bias = sds_gguf_find_tensor(g, "blk.0.ffn_up.bias") != NULL;
    SDS_TRY(get_i64_or(g, "tokenizer.ggml.bos_token_id", -1, &c->bos_token_id));
    SDS_TRY(get_i64_or(g, "tokenizer.ggml.eos_token_id", -1, &c->eos_token_id));
    SDS_TRY(get_i64_or(g, "tokenizer.ggml.padding_token_id", -1, &c->pad_token_id));
    return SDS_OK;
}

typedef struct {
    const sds_gguf *g;
    const sds_model_config *cfg;
} gguf_src;

// HF name -> GGUF name; *permute_heads > 0 when the rows need llama.cpp's RoPE order undone.
static int map_name(const char *hf, const sds_model_config *c, char *out, size_t cap,
                    int64_t *permute_heads) {
    *permute_heads = 0;
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, cap, "token_embd.weight"), 0;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, cap, "output_norm.weight"), 0;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, cap, "output.weight"), 0;
    static const struct {
        const char *hf, *gguf;
    } map[] = {{"self_attn.q_proj", "attn_q"},          {"self_attn.k_proj", "attn_k"},
               {"self_attn.v_proj", "attn_v"},          {"self_attn.o_proj", "attn_output"},
               {"mlp.gate_proj", "ffn_gate"},           {"mlp.up_proj", "ffn_up"},
               {"mlp.down_proj", "ffn_down"},           {"input_layernorm", "attn_norm"},
               {"post_attention_layernorm", "ffn_norm"}};
    long long layer = -1;
    int used = 0;
    if (sscanf(hf, "model.layers.%lld.%n", &layer, &used) != 1 || used == 0) return -1;
    const char *rest = hf + used;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t n = strlen(map[i].hf);
        if (strncmp(rest, map[i].hf, n) == 0 && rest[n] == '.') {
            snprintf(out, cap, "blk.%lld.%s.%s", layer, map[i].gguf, rest + n + 1);
            if (i == 0) *permute_heads = c->n_heads;
            if (i == 1) *permute_heads = c->n_kv_heads;
            return 0;
        }
    }
    return -1;
}

// llama.cpp stores row h*HD + 2j + s of q/k where Hugging Face has row h*HD + s*HD/2 + j.
static int unpermute_rows(float *w, int64_t rows, int64_t cols, int64_t heads) {
    const int64_t hd = rows / heads, half = hd / 2;
    float *tmp = sds_malloc((size_t)(hd * cols) * sizeof(float), "RoPE un-permutation");
    if (!tmp) return SDS_ERR_IO;
    for (int64_t h = 0; h < heads; h++) {
        float *blk = w + h * hd * cols;
        memcpy(tmp, blk, (size_t)(hd * cols) * sizeof(float));
        for (int64_t j = 0; j < half; j++)
            for (int64_t s = 0; s < 2; s++)
                memcpy(blk + (s * half + j) * cols, tmp + (2 * j + s) * cols,
                       (size_t)cols * sizeof(float));
    }
    free(tmp);
    return SDS_OK;
}

static int read_gguf(void *ctx, const char *name, int32_t ndim, const int64_t *shape, float *dst) {
    const gguf_src *s = ctx;
    char gname[256];
    int64_t heads = 0;
    if (map_name(name, s->cfg, gname, sizeof gname, &heads) != 0)
        return sds_error_set(SDS_ERR_INTERNAL, "no GGUF name for tensor %s", name);
    SDS_TRY(sds_gguf_read_f32(s->g, gname, ndim, shape, dst));
    if (heads > 0) {
        int64_t rows = shape[0], cols = ndim == 2 ? shape[1] : 1;
        if (rows % heads != 0 || (rows / heads) % 2 != 0)
            return sds_error_set(SDS_ERR_INPUT, "%s: tensor %s has %lld rows, not %lld heads",
                                 sds_gguf_path(s->g), gname, (long long)rows, (long long)heads);
        SDS_TRY(unpermute_rows(dst, rows, cols, heads));
    }
    return SDS_OK;
}

int sds_llama_load_gguf(const char *path, sds_llama_model *m) {
    return sds_llama_load_gguf_part(path, 0, INT64_MAX, SDS_MODEL_EMBED | SDS_MODEL_HEAD, m);
}

int sds_llama_load_gguf_part(const char *path, int64_t layer_lo, int64_t layer_hi, int32_t parts,
                             sds_llama_model *m) {
    memset(m, 0, sizeof *m);
    sds_gguf *g = NULL;
    SDS_TRY(sds_gguf_open(path, &g));
    sds_model_config cfg;
    int rc = sds_gguf_llama_config(g, &cfg);
    if (rc == SDS_OK)
        rc = sds_llama_alloc_part(m, &cfg, layer_lo, layer_hi, (parts & SDS_MODEL_EMBED) != 0,
                                  (parts & SDS_MODEL_HEAD) != 0);
    if (rc == SDS_OK) {
        gguf_src s = {g, &cfg};
        rc = sds_llama_fill(m, read_gguf, &s);
        if (rc != SDS_OK) sds_llama_free(m);
    }
    sds_gguf_free(g);
    return rc;
}

#include "llama_load.h"

#include "config.h"
#include "safetensors.h"
#include "sds_error.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int read1(sds_llama_read_fn read, void *ctx, const char *name, float *dst, int64_t n0) {
    return read(ctx, name, 1, &n0, dst);
}

static int read2(sds_llama_read_fn read, void *ctx, const char *name, float *dst, int64_t n0,
                 int64_t n1) {
    int64_t shape[2] = {n0, n1};
    return read(ctx, name, 2, shape, dst);
}

int sds_llama_fill(sds_llama_model *m, sds_llama_read_fn read, void *ctx) {
    const sds_model_config *c = &m->cfg;
    const int64_t C = c->hidden_size, V = c->vocab_size;
    // only what m holds (a tied head holds embed_tokens without the embedding)
    if (m->embed_tokens)
        SDS_TRY(read2(read, ctx, "model.embed_tokens.weight", m->embed_tokens, V, C));
    for (int64_t i = 0; i < c->n_layers; i++) {
        sds_llama_layer *l = &m->layers[i];
        if (!l->params) continue;
        char n[160];
        for (int j = 0; j < SDS_LLAMA_N_LINEAR; j++) {
            int64_t rows, cols;
            float *w = sds_llama_linear_weight(l, (sds_llama_linear)j, &rows, &cols, c);
            float *b = sds_llama_linear_bias(l, (sds_llama_linear)j);
            const char *ln = sds_llama_linear_name((sds_llama_linear)j);
            snprintf(n, sizeof n, "model.layers.%lld.%s.weight", (long long)i, ln);
            SDS_TRY(read2(read, ctx, n, w, rows, cols));
            if (b) {
                snprintf(n, sizeof n, "model.layers.%lld.%s.bias", (long long)i, ln);
                SDS_TRY(read1(read, ctx, n, b, rows));
            }
        }
        snprintf(n, sizeof n, "model.layers.%lld.input_layernorm.weight", (long long)i);
        SDS_TRY(read1(read, ctx, n, l->attn_norm_w, C));
        snprintf(n, sizeof n, "model.layers.%lld.post_attention_layernorm.weight", (long long)i);
        SDS_TRY(read1(read, ctx, n, l->mlp_norm_w, C));
    }
    if (m->final_norm_w) SDS_TRY(read1(read, ctx, "model.norm.weight", m->final_norm_w, C));
    if (m->lm_head && !c->tie_word_embeddings)
        SDS_TRY(read2(read, ctx, "lm_head.weight", m->lm_head, V, C));
    return SDS_OK;
}

static int read_safetensors(void *ctx, const char *name, int32_t ndim, const int64_t *shape,
                            float *dst) {
    return sds_safetensors_read_f32((const sds_safetensors *)ctx, name, ndim, shape, dst);
}

int sds_llama_load_dir(const char *dir, sds_llama_model *m) {
    return sds_llama_load_dir_part(dir, 0, INT64_MAX, SDS_MODEL_EMBED | SDS_MODEL_HEAD, m);
}

int sds_llama_load_dir_part(const char *dir, int64_t layer_lo, int64_t layer_hi, int32_t parts,
                            sds_llama_model *m) {
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    sds_model_config cfg;
    SDS_TRY(sds_config_load_dir(dir, &cfg));
    if (cfg.arch != SDS_ARCH_LLAMA)
        return sds_error_set(SDS_ERR_INPUT, "%s: model_type \"%s\" is not Llama", path,
                             cfg.model_type);
    sds_safetensors *st = NULL;
    SDS_TRY(sds_safetensors_open(dir, &st));
    int rc = sds_llama_alloc_part(m, &cfg, layer_lo, layer_hi, (parts & SDS_MODEL_EMBED) != 0,
                                  (parts & SDS_MODEL_HEAD) != 0);
    if (rc == SDS_OK) rc = sds_llama_fill(m, read_safetensors, st);
    sds_safetensors_free(st);
    if (rc != SDS_OK) sds_llama_free(m);
    return rc;
}

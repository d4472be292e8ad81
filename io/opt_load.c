#include "opt_load.h"

#include "config.h"

#include "sds_error.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const sds_safetensors *st;
    const char *prefix; // "model.decoder." or "decoder."
} opt_src;

static int read1(const opt_src *s, const char *name, float *dst, int64_t n0) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", s->prefix, name);
    return sds_safetensors_read_f32(s->st, full, 1, &n0, dst);
}

static int read2(const opt_src *s, const char *name, float *dst, int64_t n0, int64_t n1) {
    char full[256];
    int64_t shape[2] = {n0, n1};
    snprintf(full, sizeof full, "%s%s", s->prefix, name);
    return sds_safetensors_read_f32(s->st, full, 2, shape, dst);
}

static int read_layer(const opt_src *s, const sds_model_config *c, int64_t i, sds_opt_layer *l) {
    const int64_t C = c->hidden_size, F = c->ffn_dim;
    char n[128];
    struct {
        const char *name;
        float *w, *b;
        int64_t rows, cols;
    } lin[] = {{"self_attn.q_proj", l->q_w, l->q_b, C, C},
               {"self_attn.k_proj", l->k_w, l->k_b, C, C},
               {"self_attn.v_proj", l->v_w, l->v_b, C, C},
               {"self_attn.out_proj", l->out_w, l->out_b, C, C},
               {"fc1", l->fc1_w, l->fc1_b, F, C},
               {"fc2", l->fc2_w, l->fc2_b, C, F}};
    for (size_t j = 0; j < sizeof lin / sizeof lin[0]; j++) {
        snprintf(n, sizeof n, "layers.%lld.%s.weight", (long long)i, lin[j].name);
        SDS_TRY(read2(s, n, lin[j].w, lin[j].rows, lin[j].cols));
        if (lin[j].b) {
            snprintf(n, sizeof n, "layers.%lld.%s.bias", (long long)i, lin[j].name);
            SDS_TRY(read1(s, n, lin[j].b, lin[j].rows));
        }
    }
    if (l->attn_ln_w) {
        snprintf(n, sizeof n, "layers.%lld.self_attn_layer_norm.weight", (long long)i);
        SDS_TRY(read1(s, n, l->attn_ln_w, C));
        snprintf(n, sizeof n, "layers.%lld.self_attn_layer_norm.bias", (long long)i);
        SDS_TRY(read1(s, n, l->attn_ln_b, C));
        snprintf(n, sizeof n, "layers.%lld.final_layer_norm.weight", (long long)i);
        SDS_TRY(read1(s, n, l->ffn_ln_w, C));
        snprintf(n, sizeof n, "layers.%lld.final_layer_norm.bias", (long long)i);
        SDS_TRY(read1(s, n, l->ffn_ln_b, C));
    }
    return SDS_OK;
}

int sds_opt_load_dir(const char *dir, sds_opt_model *m) {
    return sds_opt_load_dir_part(dir, 0, INT64_MAX, SDS_MODEL_EMBED | SDS_MODEL_HEAD, m);
}

int sds_opt_load_dir_part(const char *dir, int64_t layer_lo, int64_t layer_hi, int32_t parts,
                          sds_opt_model *m) {
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    sds_model_config cfg;
    SDS_TRY(sds_config_load_dir(dir, &cfg));
    if (cfg.arch != SDS_ARCH_OPT)
        return sds_error_set(SDS_ERR_INPUT, "%s: model_type \"%s\" is not OPT", path,
                             cfg.model_type);
    sds_safetensors *st = NULL;
    SDS_TRY(sds_safetensors_open(dir, &st));
    int rc = sds_opt_alloc_part(m, &cfg, layer_lo, layer_hi, (parts & SDS_MODEL_EMBED) != 0,
                                (parts & SDS_MODEL_HEAD) != 0);
    if (rc != SDS_OK) {
        sds_safetensors_free(st);
        return rc;
    }
    opt_src s = {st, "model.decoder."};
    if (!sds_safetensors_find(st, "model.decoder.embed_tokens.weight") &&
        sds_safetensors_find(st, "decoder.embed_tokens.weight"))
        s.prefix = "decoder.";
    const int64_t C = cfg.hidden_size, E = cfg.word_embed_proj_dim, V = cfg.vocab_size;
    // only what m holds (a tied head holds embed_tokens without the embeddings)
    if (m->embed_tokens) rc = read2(&s, "embed_tokens.weight", m->embed_tokens, V, E);
    if (rc == SDS_OK && m->embed_positions)
        rc = read2(&s, "embed_positions.weight", m->embed_positions,
                   cfg.max_position_embeddings + 2, C);
    if (rc == SDS_OK && m->project_in) rc = read2(&s, "project_in.weight", m->project_in, C, E);
    if (rc == SDS_OK && m->project_out) rc = read2(&s, "project_out.weight", m->project_out, E, C);
    if (rc == SDS_OK && m->final_ln_w) {
        rc = read1(&s, "final_layer_norm.weight", m->final_ln_w, C);
        if (rc == SDS_OK) rc = read1(&s, "final_layer_norm.bias", m->final_ln_b, C);
    }
    if (rc == SDS_OK && m->lm_head && !cfg.tie_word_embeddings) {
        int64_t shape[2] = {V, E};
        rc = sds_safetensors_read_f32(st, "lm_head.weight", 2, shape, m->lm_head);
    }
    for (int64_t i = 0; rc == SDS_OK && i < cfg.n_layers; i++)
        if (m->layers[i].params) rc = read_layer(&s, &cfg, i, &m->layers[i]);
    sds_safetensors_free(st);
    if (rc != SDS_OK) sds_opt_free(m);
    return rc;
}

#include "opt.h"

#include "ops.h"
#include "sds_error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Rows of logits formed at once when only the NLL is wanted: bounds memory to 64 x V floats.
#define SDS_OPT_HEAD_CHUNK 64

static float *carve(float **cursor, size_t n) {
    float *p = *cursor;
    *cursor += n;
    return p;
}

int sds_opt_alloc(sds_opt_model *m, const sds_model_config *cfg) {
    return sds_opt_alloc_part(m, cfg, 0, cfg->n_layers, 1, 1);
}

int sds_opt_alloc_part(sds_opt_model *m, const sds_model_config *cfg, int64_t layer_lo,
                       int64_t layer_hi, int embed, int head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const size_t C = (size_t)cfg->hidden_size, F = (size_t)cfg->ffn_dim,
                 E = (size_t)cfg->word_embed_proj_dim, V = (size_t)cfg->vocab_size,
                 P = (size_t)cfg->max_position_embeddings + 2;
    const int proj = E != C, final_ln = cfg->do_layer_norm_before && !cfg->remove_final_layer_norm;
    const int affine = cfg->layer_norm_affine, bias = cfg->enable_bias;
    const int tied = cfg->tie_word_embeddings, tokens = embed || (head && tied);
    if (layer_lo < 0) layer_lo = 0;
    if (layer_hi > cfg->n_layers) layer_hi = cfg->n_layers;
    m->has_embed = embed != 0;
    m->has_head = head != 0;
    size_t n = 0;
    if (tokens) n += V * E;
    if (embed) n += P * C;
    if (embed && proj) n += C * E;
    if (head && proj) n += E * C;
    if (head && final_ln && affine) n += 2 * C;
    if (head && !tied) n += V * E;
    m->n_params = n;
    m->params = n ? sds_calloc(n, sizeof(float), "OPT embeddings") : NULL;
    m->layers = sds_calloc((size_t)cfg->n_layers, sizeof(sds_opt_layer), "OPT layers");
    if ((n && !m->params) || !m->layers) {
        sds_opt_free(m);
        return SDS_ERR_IO;
    }
    float *c = m->params;
    if (tokens) m->embed_tokens = carve(&c, V * E);
    if (embed) m->embed_positions = carve(&c, P * C);
    if (embed && proj) m->project_in = carve(&c, C * E);
    if (head && proj) m->project_out = carve(&c, E * C);
    if (head && final_ln && affine) {
        m->final_ln_w = carve(&c, C);
        m->final_ln_b = carve(&c, C);
    }
    if (head) m->lm_head = tied ? m->embed_tokens : carve(&c, V * E);

    size_t nl = 4 * C * C + 2 * C * F;
    if (bias) nl += 4 * C + F + C;
    if (affine) nl += 4 * C;
    for (int64_t i = layer_lo; i < layer_hi; i++) {
        sds_opt_layer *l = &m->layers[i];
        l->n_params = nl;
        l->params = sds_calloc(nl, sizeof(float), "OPT layer");
        if (!l->params) {
            sds_opt_free(m);
            return SDS_ERR_IO;
        }
        float *p = l->params;
        l->q_w = carve(&p, C * C);
        l->k_w = carve(&p, C * C);
        l->v_w = carve(&p, C * C);
        l->out_w = carve(&p, C * C);
        l->fc1_w = carve(&p, F * C);
        l->fc2_w = carve(&p, C * F);
        if (bias) {
            l->q_b = carve(&p, C);
            l->k_b = carve(&p, C);
            l->v_b = carve(&p, C);
            l->out_b = carve(&p, C);
            l->fc1_b = carve(&p, F);
            l->fc2_b = carve(&p, C);
        }
        if (affine) {
            l->attn_ln_w = carve(&p, C);
            l->attn_ln_b = carve(&p, C);
            l->ffn_ln_w = carve(&p, C);
            l->ffn_ln_b = carve(&p, C);
        }
    }
    return SDS_OK;
}

void sds_opt_free(sds_opt_model *m) {
    if (m->layers) {
        for (int64_t i = 0; i < m->cfg.n_layers; i++) free(m->layers[i].params);
        free(m->layers);
    }
    free(m->params);
    memset(m, 0, sizeof *m);
}

float *sds_opt_linear_weight(sds_opt_layer *l, sds_opt_linear which, int64_t *rows, int64_t *cols,
                             const sds_model_config *cfg) {
    const int64_t C = cfg->hidden_size, F = cfg->ffn_dim;
    switch (which) {
    case SDS_OPT_Q:
        *rows = C, *cols = C;
        return l->q_w;
    case SDS_OPT_K:
        *rows = C, *cols = C;
        return l->k_w;
    case SDS_OPT_V:
        *rows = C, *cols = C;
        return l->v_w;
    case SDS_OPT_OUT:
        *rows = C, *cols = C;
        return l->out_w;
    case SDS_OPT_FC1:
        *rows = F, *cols = C;
        return l->fc1_w;
    case SDS_OPT_FC2:
        *rows = C, *cols = F;
        return l->fc2_w;
    default:
        SDS_ASSERT(0);
        return NULL;
    }
}

const char *sds_opt_linear_name(sds_opt_linear which) {
    static const char *names[SDS_OPT_N_LINEAR] = {"self_attn.q_proj",
                                                  "self_attn.k_proj",
                                                  "self_attn.v_proj",
                                                  "self_attn.out_proj",
                                                  "fc1",
                                                  "fc2"};
    SDS_ASSERT(which >= 0 && which < SDS_OPT_N_LINEAR);
    return names[which];
}

int sds_opt_work_alloc(sds_opt_work *w, const sds_model_config *cfg, int64_t T) {
    memset(w, 0, sizeof *w);
    w->T = T;
    const size_t C = (size_t)cfg->hidden_size, F = (size_t)cfg->ffn_dim,
                 E = (size_t)cfg->word_embed_proj_dim, V = (size_t)cfg->vocab_size;
    const size_t t = (size_t)T;
    w->x = sds_malloc(t * C * sizeof(float), "activations");
    w->h = sds_malloc(t * C * sizeof(float), "activations");
    w->q = sds_malloc(t * C * sizeof(float), "activations");
    w->k = sds_malloc(t * C * sizeof(float), "activations");
    w->v = sds_malloc(t * C * sizeof(float), "activations");
    w->att = sds_malloc(t * C * sizeof(float), "activations");
    w->ff = sds_malloc(t * F * sizeof(float), "activations");
    w->scores = sds_malloc((size_t)sds_attention_scratch(T) * sizeof(float), "attention scores");
    w->emb = sds_malloc(t * (E > C ? E : C) * sizeof(float), "activations");
    w->logits = sds_malloc((size_t)SDS_OPT_HEAD_CHUNK * V * sizeof(float), "logits");
    if (!w->x || !w->h || !w->q || !w->k || !w->v || !w->att || !w->ff || !w->scores || !w->emb ||
        !w->logits) {
        sds_opt_work_free(w);
        return SDS_ERR_IO;
    }
    return SDS_OK;
}

void sds_opt_work_free(sds_opt_work *w) {
    free(w->x);
    free(w->h);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->att);
    free(w->ff);
    free(w->scores);
    free(w->emb);
    free(w->logits);
    memset(w, 0, sizeof *w);
}

void sds_opt_embed(const sds_opt_model *m, const int32_t *tokens, int64_t T, float *x,
                   sds_opt_work *w) {
    SDS_ASSERT(m->has_embed);
    const int64_t C = m->cfg.hidden_size, E = m->cfg.word_embed_proj_dim;
    // emb (T,E) = embed_tokens[tokens]; x (T,C) = project_in(emb) or emb
    float *emb = m->project_in ? w->emb : x;
    for (int64_t t = 0; t < T; t++)
        memcpy(emb + t * E, m->embed_tokens + (int64_t)tokens[t] * E, (size_t)E * sizeof(float));
    if (m->project_in) sds_linear(x, emb, m->project_in, NULL, T, E, C);
    // learned positions: HF OPT offsets them by 2 (position t uses row t + 2)
    for (int64_t t = 0; t < T; t++) sds_add(x + t * C, m->embed_positions + (t + 2) * C, C);
}

void sds_opt_layer_forward(const sds_opt_model *m, const sds_opt_layer *l, float *x, int64_t T,
                           sds_opt_work *w) {
    SDS_ASSERT(l->params != NULL); // a layer this process does not hold
    const sds_model_config *c = &m->cfg;
    const int64_t C = c->hidden_size, F = c->ffn_dim, NH = c->n_heads, HD = c->head_dim;
    const int pre = c->do_layer_norm_before;
    const float eps = c->norm_eps, scale = 1.0f / sqrtf((float)HD);

    // attention block
    const float *a_in = x;
    if (pre) {
        sds_layernorm(w->h, x, l->attn_ln_w, l->attn_ln_b, T, C, eps);
        a_in = w->h;
    }
    sds_capture_call(w->capture, 0, a_in, T, C);
    sds_linear_watched(w->capture, SDS_OPT_Q, w->q, a_in, l->q_w, l->q_b, T, C, C);
    sds_linear_watched(w->capture, SDS_OPT_K, w->k, a_in, l->k_w, l->k_b, T, C, C);
    sds_linear_watched(w->capture, SDS_OPT_V, w->v, a_in, l->v_w, l->v_b, T, C, C);
    // HF scales q (bias included) before the product; same here, then scale 1 in attention
    for (int64_t i = 0; i < T * C; i++) w->q[i] *= scale;
    sds_attention(w->att, w->q, w->k, w->v, T, NH, NH, HD, 1.0f, w->scores);
    sds_capture_call(w->capture, 1, w->att, T, C);
    sds_linear_watched(w->capture, SDS_OPT_OUT, w->h, w->att, l->out_w, l->out_b, T, C, C);
    sds_add(x, w->h, T * C);
    if (!pre) sds_layernorm(x, x, l->attn_ln_w, l->attn_ln_b, T, C, eps);

    // feed-forward block
    const float *f_in = x;
    if (pre) {
        sds_layernorm(w->h, x, l->ffn_ln_w, l->ffn_ln_b, T, C, eps);
        f_in = w->h;
    }
    sds_capture_call(w->capture, 2, f_in, T, C);
    sds_linear_watched(w->capture, SDS_OPT_FC1, w->ff, f_in, l->fc1_w, l->fc1_b, T, C, F);
    sds_relu(w->ff, T * F);
    sds_capture_call(w->capture, 3, w->ff, T, F);
    sds_linear_watched(w->capture, SDS_OPT_FC2, w->att, w->ff, l->fc2_w, l->fc2_b, T, F, C);
    sds_add(x, w->att, T * C);
    if (!pre) sds_layernorm(x, x, l->ffn_ln_w, l->ffn_ln_b, T, C, eps);
}

void sds_opt_head_prepare(const sds_opt_model *m, float *x, int64_t T, float *y) {
    SDS_ASSERT(m->has_head);
    const int64_t C = m->cfg.hidden_size, E = m->cfg.word_embed_proj_dim;
    const int final_ln = m->cfg.do_layer_norm_before && !m->cfg.remove_final_layer_norm;
    if (final_ln) sds_layernorm(x, x, m->final_ln_w, m->final_ln_b, T, C, m->cfg.norm_eps);
    if (m->project_out)
        sds_linear(y, x, m->project_out, NULL, T, C, E);
    else if (y != x)
        memcpy(y, x, (size_t)(T * C) * sizeof(float));
}

void sds_opt_logits(const sds_opt_model *m, const float *y, int64_t T, float *logits) {
    sds_linear(logits, y, m->lm_head, NULL, T, m->cfg.word_embed_proj_dim, m->cfg.vocab_size);
}

double sds_opt_head_nll(const sds_opt_model *m, const int32_t *tokens, const float *x, int64_t T,
                        sds_opt_work *w) {
    SDS_ASSERT(T <= w->T && T >= 2);
    const int64_t C = m->cfg.hidden_size, E = m->cfg.word_embed_proj_dim, V = m->cfg.vocab_size;
    // the final norm works in place: on a copy in w->h, so x is left as it was
    float *h = w->h;
    if (x != h) memcpy(h, x, (size_t)(T * C) * sizeof(float));
    float *y = m->project_out ? w->emb : h;
    sds_opt_head_prepare(m, h, T, y);
    double nll = 0.0;
    // position t predicts tokens[t+1]; the last position predicts nothing
    for (int64_t t0 = 0; t0 < T - 1; t0 += SDS_OPT_HEAD_CHUNK) {
        int64_t n = T - 1 - t0 < SDS_OPT_HEAD_CHUNK ? T - 1 - t0 : SDS_OPT_HEAD_CHUNK;
        sds_opt_logits(m, y + t0 * E, n, w->logits);
        nll += sds_nll_rows(w->logits, tokens + t0 + 1, n, V);
    }
    return nll;
}

double sds_opt_window_nll(const sds_opt_model *m, const int32_t *tokens, int64_t T,
                          sds_opt_work *w) {
    SDS_ASSERT(T <= w->T && T >= 2);
    sds_opt_embed(m, tokens, T, w->x, w);
    for (int64_t i = 0; i < m->cfg.n_layers; i++)
        sds_opt_layer_forward(m, &m->layers[i], w->x, T, w);
    return sds_opt_head_nll(m, tokens, w->x, T, w);
}

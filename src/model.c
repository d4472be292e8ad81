#include "model.h"

#include "sds_error.h"

#include <stdio.h>
#include <string.h>

void sds_model_free(sds_model *m) {
    if (m->arch == SDS_ARCH_OPT) sds_opt_free(&m->opt);
    if (m->arch == SDS_ARCH_LLAMA) sds_llama_free(&m->llama);
    memset(m, 0, sizeof *m);
}

int sds_model_work_alloc(sds_model_work *w, const sds_model *m, int64_t T) {
    memset(w, 0, sizeof *w);
    w->arch = m->arch;
    switch (m->arch) {
    case SDS_ARCH_OPT:
        return sds_opt_work_alloc(&w->opt, &m->cfg, T);
    case SDS_ARCH_LLAMA:
        return sds_llama_work_alloc(&w->llama, &m->cfg, T);
    default:
        return sds_error_set(SDS_ERR_INPUT, "architecture not supported yet");
    }
}

void sds_model_work_free(sds_model_work *w) {
    if (w->arch == SDS_ARCH_OPT) sds_opt_work_free(&w->opt);
    if (w->arch == SDS_ARCH_LLAMA) sds_llama_work_free(&w->llama);
    memset(w, 0, sizeof *w);
}

int sds_model_has_layer(const sds_model *m, int64_t layer) {
    if (layer < 0 || layer >= m->cfg.n_layers) return 0;
    if (m->arch == SDS_ARCH_OPT) return m->opt.layers && m->opt.layers[layer].params != NULL;
    if (m->arch == SDS_ARCH_LLAMA) return m->llama.layers && m->llama.layers[layer].params != NULL;
    return 0;
}

int32_t sds_model_parts(const sds_model *m) {
    int embed = 0, head = 0;
    if (m->arch == SDS_ARCH_OPT) embed = m->opt.has_embed, head = m->opt.has_head;
    if (m->arch == SDS_ARCH_LLAMA) embed = m->llama.has_embed, head = m->llama.has_head;
    return (embed ? SDS_MODEL_EMBED : 0) | (head ? SDS_MODEL_HEAD : 0);
}

size_t sds_model_held_bytes(const sds_model *m) {
    size_t n = 0;
    if (m->arch == SDS_ARCH_OPT) {
        n = m->opt.params ? m->opt.n_params : 0;
        for (int64_t i = 0; m->opt.layers && i < m->cfg.n_layers; i++)
            if (m->opt.layers[i].params) n += m->opt.layers[i].n_params;
    } else if (m->arch == SDS_ARCH_LLAMA) {
        n = m->llama.params ? m->llama.n_params : 0;
        for (int64_t i = 0; m->llama.layers && i < m->cfg.n_layers; i++)
            if (m->llama.layers[i].params) n += m->llama.layers[i].n_params;
    }
    return n * sizeof(float);
}

// The work's residual stream (T,C).
static float *work_x(sds_model_work *w) {
    return w->arch == SDS_ARCH_OPT ? w->opt.x : w->llama.x;
}

double sds_model_window_nll(const sds_model *m, const int32_t *tokens, int64_t T,
                            sds_model_work *w) {
    SDS_ASSERT(m->arch == w->arch);
    SDS_ASSERT(m->arch == SDS_ARCH_OPT || m->arch == SDS_ARCH_LLAMA);
    float *x = work_x(w);
    sds_model_embed(m, tokens, T, x, w);
    for (int64_t i = 0; i < m->cfg.n_layers; i++) sds_model_layer_forward(m, i, x, T, w);
    return sds_model_head_nll(m, tokens, x, T, w);
}

double sds_model_head_nll(const sds_model *m, const int32_t *tokens, const float *x, int64_t T,
                          sds_model_work *w) {
    SDS_ASSERT(m->arch == w->arch);
    switch (m->arch) {
    case SDS_ARCH_OPT:
        return sds_opt_head_nll(&m->opt, tokens, x, T, &w->opt);
    case SDS_ARCH_LLAMA:
        return sds_llama_head_nll(&m->llama, tokens, x, T, &w->llama);
    default:
        SDS_ASSERT(0);
        return 0.0;
    }
}

void sds_model_forward_logits(const sds_model *m, const int32_t *ids, int64_t T, float *logits,
                              sds_model_work *w) {
    SDS_ASSERT(m->arch == w->arch);
    switch (m->arch) {
    case SDS_ARCH_OPT: {
        const sds_opt_model *o = &m->opt;
        SDS_ASSERT(T <= w->opt.T);
        sds_opt_embed(o, ids, T, w->opt.x, &w->opt);
        for (int64_t i = 0; i < m->cfg.n_layers; i++)
            sds_opt_layer_forward(o, &o->layers[i], w->opt.x, T, &w->opt);
        sds_opt_head_prepare(o, w->opt.x, T, w->opt.emb);
        sds_opt_logits(o, w->opt.emb, T, logits);
        break;
    }
    case SDS_ARCH_LLAMA: {
        const sds_llama_model *l = &m->llama;
        SDS_ASSERT(T <= w->llama.T);
        sds_llama_embed(l, ids, T, w->llama.x);
        for (int64_t i = 0; i < m->cfg.n_layers; i++)
            sds_llama_layer_forward(l, &l->layers[i], w->llama.x, T, &w->llama);
        sds_llama_head_prepare(l, w->llama.x, T, w->llama.x);
        sds_llama_logits(l, w->llama.x, T, logits);
        break;
    }
    default:
        SDS_ASSERT(0);
    }
}

int32_t sds_model_n_linear(const sds_model *m) {
    return m->arch == SDS_ARCH_OPT ? SDS_OPT_N_LINEAR : SDS_LLAMA_N_LINEAR;
}

sds_linear_ref sds_model_linear(sds_model *m, int64_t layer, int32_t i) {
    sds_linear_ref r;
    SDS_ASSERT(layer >= 0 && layer < m->cfg.n_layers && i >= 0 && i < sds_model_n_linear(m));
    SDS_ASSERT(sds_model_has_layer(m, layer)); // a layer this process does not hold
    if (m->arch == SDS_ARCH_OPT) {
        static const int32_t group[SDS_OPT_N_LINEAR] = {0, 0, 0, 1, 2, 3};
        r.w = sds_opt_linear_weight(&m->opt.layers[layer], (sds_opt_linear)i, &r.rows, &r.cols,
                                    &m->cfg);
        r.group = group[i];
        r.name = sds_opt_linear_name((sds_opt_linear)i);
    } else {
        static const int32_t group[SDS_LLAMA_N_LINEAR] = {0, 0, 0, 1, 2, 2, 3};
        r.w = sds_llama_linear_weight(&m->llama.layers[layer], (sds_llama_linear)i, &r.rows,
                                      &r.cols, &m->cfg);
        r.group = group[i];
        r.name = sds_llama_linear_name((sds_llama_linear)i);
    }
    return r;
}

int64_t sds_model_width(const sds_model *m) {
    return m->cfg.hidden_size;
}

void sds_model_embed(const sds_model *m, const int32_t *tokens, int64_t T, float *x,
                     sds_model_work *w) {
    SDS_ASSERT(m->arch == w->arch);
    if (m->arch == SDS_ARCH_OPT)
        sds_opt_embed(&m->opt, tokens, T, x, &w->opt);
    else
        sds_llama_embed(&m->llama, tokens, T, x);
}

void sds_model_layer_forward(const sds_model *m, int64_t layer, float *x, int64_t T,
                             sds_model_work *w) {
    SDS_ASSERT(m->arch == w->arch);
    SDS_ASSERT(sds_model_has_layer(m, layer)); // a layer this process does not hold
    if (m->arch == SDS_ARCH_OPT)
        sds_opt_layer_forward(&m->opt, &m->opt.layers[layer], x, T, &w->opt);
    else
        sds_llama_layer_forward(&m->llama, &m->llama.layers[layer], x, T, &w->llama);
}

void sds_model_work_set_capture(sds_model_work *w, const sds_capture *c) {
    w->opt.capture = c;
    w->llama.capture = c;
}

void sds_model_linear_module(const sds_model *m, int64_t layer, int32_t i, char *buf, size_t cap) {
    const char *sub = m->arch == SDS_ARCH_OPT ? sds_opt_linear_name((sds_opt_linear)i)
                                              : sds_llama_linear_name((sds_llama_linear)i);
    snprintf(buf, cap, "%s.layers.%lld.%s", m->arch == SDS_ARCH_OPT ? "model.decoder" : "model",
             (long long)layer, sub);
}

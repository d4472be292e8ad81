#include "llama.h"

#include "ops.h"
#include "sds_error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Rows of logits formed at once when only the NLL is wanted: bounds memory to 64 x V floats.
#define SDS_LLAMA_HEAD_CHUNK 64
// Python's math.pi (M_PI is not in strict C11)
#define SDS_LLAMA_PI 3.141592653589793

static float *carve(float **cursor, size_t n) {
    float *p = *cursor;
    *cursor += n;
    return p;
}

int sds_llama_alloc(sds_llama_model *m, const sds_model_config *cfg) {
    return sds_llama_alloc_part(m, cfg, 0, cfg->n_layers, 1, 1);
}

int sds_llama_alloc_part(sds_llama_model *m, const sds_model_config *cfg, int64_t layer_lo,
                         int64_t layer_hi, int embed, int head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const size_t C = (size_t)cfg->hidden_size, F = (size_t)cfg->ffn_dim,
                 V = (size_t)cfg->vocab_size, Q = (size_t)(cfg->n_heads * cfg->head_dim),
                 KV = (size_t)(cfg->n_kv_heads * cfg->head_dim);
    const int tied = cfg->tie_word_embeddings, tokens = embed || (head && tied);
    if (layer_lo < 0) layer_lo = 0;
    if (layer_hi > cfg->n_layers) layer_hi = cfg->n_layers;
    m->has_embed = embed != 0;
    m->has_head = head != 0;
    size_t n = 0;
    if (tokens) n += V * C;
    if (head) n += C;
    if (head && !tied) n += V * C;
    m->n_params = n;
    m->params = n ? sds_calloc(n, sizeof(float), "Llama embeddings") : NULL;
    m->layers = sds_calloc((size_t)cfg->n_layers, sizeof(sds_llama_layer), "Llama layers");
    if ((n && !m->params) || !m->layers) {
        sds_llama_free(m);
        return SDS_ERR_IO;
    }
    float *c = m->params;
    if (tokens) m->embed_tokens = carve(&c, V * C);
    if (head) {
        m->final_norm_w = carve(&c, C);
        m->lm_head = tied ? m->embed_tokens : carve(&c, V * C);
    }

    size_t nl = 2 * Q * C + 2 * KV * C + 3 * F * C + 2 * C;
    if (cfg->attention_bias) nl += Q + 2 * KV + C;
    if (cfg->mlp_bias) nl += 2 * F + C;
    for (int64_t i = layer_lo; i < layer_hi; i++) {
        sds_llama_layer *l = &m->layers[i];
        l->n_params = nl;
        l->params = sds_calloc(nl, sizeof(float), "Llama layer");
        if (!l->params) {
            sds_llama_free(m);
            return SDS_ERR_IO;
        }
        float *p = l->params;
        l->q_w = carve(&p, Q * C);
        l->k_w = carve(&p, KV * C);
        l->v_w = carve(&p, KV * C);
        l->o_w = carve(&p, C * Q);
        l->gate_w = carve(&p, F * C);
        l->up_w = carve(&p, F * C);
        l->down_w = carve(&p, C * F);
        l->attn_norm_w = carve(&p, C);
        l->mlp_norm_w = carve(&p, C);
        if (cfg->attention_bias) {
            l->q_b = carve(&p, Q);
            l->k_b = carve(&p, KV);
            l->v_b = carve(&p, KV);
            l->o_b = carve(&p, C);
        }
        if (cfg->mlp_bias) {
            l->gate_b = carve(&p, F);
            l->up_b = carve(&p, F);
            l->down_b = carve(&p, C);
        }
    }
    return SDS_OK;
}

void sds_llama_free(sds_llama_model *m) {
    if (m->layers) {
        for (int64_t i = 0; i < m->cfg.n_layers; i++) free(m->layers[i].params);
        free(m->layers);
    }
    free(m->params);
    memset(m, 0, sizeof *m);
}

float *sds_llama_linear_weight(sds_llama_layer *l, sds_llama_linear which, int64_t *rows,
                               int64_t *cols, const sds_model_config *cfg) {
    const int64_t C = cfg->hidden_size, F = cfg->ffn_dim, Q = cfg->n_heads * cfg->head_dim,
                  KV = cfg->n_kv_heads * cfg->head_dim;
    switch (which) {
    case SDS_LLAMA_Q:
        *rows = Q, *cols = C;
        return l->q_w;
    case SDS_LLAMA_K:
        *rows = KV, *cols = C;
        return l->k_w;
    case SDS_LLAMA_V:
        *rows = KV, *cols = C;
        return l->v_w;
    case SDS_LLAMA_O:
        *rows = C, *cols = Q;
        return l->o_w;
    case SDS_LLAMA_GATE:
        *rows = F, *cols = C;
        return l->gate_w;
    case SDS_LLAMA_UP:
        *rows = F, *cols = C;
        return l->up_w;
    case SDS_LLAMA_DOWN:
        *rows = C, *cols = F;
        return l->down_w;
    default:
        SDS_ASSERT(0);
        return NULL;
    }
}

float *sds_llama_linear_bias(sds_llama_layer *l, sds_llama_linear which) {
    float *b[SDS_LLAMA_N_LINEAR] = {l->q_b, l->k_b, l->v_b, l->o_b, l->gate_b, l->up_b, l->down_b};
    SDS_ASSERT(which >= 0 && which < SDS_LLAMA_N_LINEAR);
    return b[which];
}

const char *sds_llama_linear_name(sds_llama_linear which) {
    static const char *names[SDS_LLAMA_N_LINEAR] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    SDS_ASSERT(which >= 0 && which < SDS_LLAMA_N_LINEAR);
    return names[which];
}

void sds_llama_rope_inv_freq(const sds_model_config *cfg, float *inv_freq) {
    // Every step is an fp32 tensor op in transformers (modeling_rope_utils.py); each is rounded
    // to float here in the same order, so the angles agree to the last bit or one ulp.
    const int64_t half = cfg->head_dim / 2;
    const float base = (float)cfg->rope_theta, dim = (float)cfg->head_dim;
    for (int64_t i = 0; i < half; i++) {
        float e = (float)(2 * i) / dim;
        inv_freq[i] = 1.0f / (float)pow((double)base, (double)e);
    }
    if (cfg->rope_type == SDS_ROPE_LINEAR) {
        for (int64_t i = 0; i < half; i++) inv_freq[i] /= (float)cfg->rope_factor;
    } else if (cfg->rope_type == SDS_ROPE_LLAMA3) {
        const float factor = (float)cfg->rope_factor, lo = (float)cfg->rope_low_freq_factor,
                    ramp = (float)(cfg->rope_high_freq_factor - cfg->rope_low_freq_factor);
        const double old_len = (double)cfg->rope_original_max_position;
        const float lo_wavelen = (float)(old_len / cfg->rope_low_freq_factor),
                    hi_wavelen = (float)(old_len / cfg->rope_high_freq_factor);
        for (int64_t i = 0; i < half; i++) {
            const float f = inv_freq[i];
            // python scalar / tensor is reciprocal(tensor) * scalar in torch
            const float wavelen = (1.0f / f) * (float)(2.0 * SDS_LLAMA_PI);
            if (wavelen < hi_wavelen) continue; // high frequencies: unchanged
            if (wavelen > lo_wavelen) {         // low frequencies: interpolated by factor
                inv_freq[i] = f / factor;
                continue;
            }
            const float smooth = ((1.0f / wavelen) * (float)old_len - lo) / ramp;
            inv_freq[i] = (1.0f - smooth) * f / factor + smooth * f;
        }
    }
}

int sds_llama_work_alloc(sds_llama_work *w, const sds_model_config *cfg, int64_t T) {
    memset(w, 0, sizeof *w);
    w->T = T;
    const size_t C = (size_t)cfg->hidden_size, F = (size_t)cfg->ffn_dim,
                 V = (size_t)cfg->vocab_size, Q = (size_t)(cfg->n_heads * cfg->head_dim),
                 KV = (size_t)(cfg->n_kv_heads * cfg->head_dim), half = (size_t)cfg->head_dim / 2;
    const size_t t = (size_t)T;
    w->x = sds_malloc(t * C * sizeof(float), "activations");
    w->h = sds_malloc(t * C * sizeof(float), "activations");
    w->q = sds_malloc(t * Q * sizeof(float), "activations");
    w->att = sds_malloc(t * Q * sizeof(float), "activations");
    w->k = sds_malloc(t * KV * sizeof(float), "activations");
    w->v = sds_malloc(t * KV * sizeof(float), "activations");
    w->gate = sds_malloc(t * F * sizeof(float), "activations");
    w->up = sds_malloc(t * F * sizeof(float), "activations");
    w->scores = sds_malloc((size_t)sds_attention_scratch(T) * sizeof(float), "attention scores");
    w->rope_cos = sds_malloc(t * half * sizeof(float), "rotary tables");
    w->rope_sin = sds_malloc(t * half * sizeof(float), "rotary tables");
    w->logits = sds_malloc((size_t)SDS_LLAMA_HEAD_CHUNK * V * sizeof(float), "logits");
    float *inv_freq = sds_malloc(half * sizeof(float), "rotary frequencies");
    if (!w->x || !w->h || !w->q || !w->att || !w->k || !w->v || !w->gate || !w->up || !w->scores ||
        !w->rope_cos || !w->rope_sin || !w->logits || !inv_freq) {
        free(inv_freq);
        sds_llama_work_free(w);
        return SDS_ERR_IO;
    }
    sds_llama_rope_inv_freq(cfg, inv_freq);
    for (size_t p = 0; p < t; p++) {
        for (size_t i = 0; i < half; i++) {
            // the angle is an fp32 product (inv_freq @ positions); cos/sin of it are fp32
            const float a = inv_freq[i] * (float)p;
            w->rope_cos[p * half + i] = (float)cos((double)a);
            w->rope_sin[p * half + i] = (float)sin((double)a);
        }
    }
    free(inv_freq);
    return SDS_OK;
}

void sds_llama_work_free(sds_llama_work *w) {
    free(w->x);
    free(w->h);
    free(w->q);
    free(w->att);
    free(w->k);
    free(w->v);
    free(w->gate);
    free(w->up);
    free(w->scores);
    free(w->rope_cos);
    free(w->rope_sin);
    free(w->logits);
    memset(w, 0, sizeof *w);
}

void sds_llama_embed(const sds_llama_model *m, const int32_t *tokens, int64_t T, float *x) {
    SDS_ASSERT(m->has_embed);
    const int64_t C = m->cfg.hidden_size;
    for (int64_t t = 0; t < T; t++)
        memcpy(x + t * C, m->embed_tokens + (int64_t)tokens[t] * C, (size_t)C * sizeof(float));
}

// x (T, NH*HD) rotated in place: HF's rotate_half pairs element i with i + HD/2 of each head,
// x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin.
static void rope_apply(float *x, int64_t T, int64_t NH, int64_t HD, const float *cos_t,
                       const float *sin_t) {
    const int64_t half = HD / 2;
    for (int64_t t = 0; t < T; t++) {
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int64_t h = 0; h < NH; h++) {
            float *x1 = x + (t * NH + h) * HD, *x2 = x1 + half;
            for (int64_t i = 0; i < half; i++) {
                const float a = x1[i], b = x2[i];
                x1[i] = a * c[i] - b * s[i];
                x2[i] = b * c[i] + a * s[i];
            }
        }
    }
}

void sds_llama_layer_forward(const sds_llama_model *m, const sds_llama_layer *l, float *x,
                             int64_t T, sds_llama_work *w) {
    SDS_ASSERT(l->params != NULL); // a layer this process does not hold
    SDS_ASSERT(T <= w->T);
    const sds_model_config *c = &m->cfg;
    const int64_t C = c->hidden_size, F = c->ffn_dim, NH = c->n_heads, NKV = c->n_kv_heads,
                  HD = c->head_dim, Q = NH * HD, KV = NKV * HD;
    const float eps = c->norm_eps;

    // attention block: x += o_proj(attention(rope(q), rope(k), v)) of rmsnorm(x)
    sds_rmsnorm(w->h, x, l->attn_norm_w, T, C, eps);
    sds_capture_call(w->capture, 0, w->h, T, C);
    sds_linear_watched(w->capture, SDS_LLAMA_Q, w->q, w->h, l->q_w, l->q_b, T, C, Q);
    sds_linear_watched(w->capture, SDS_LLAMA_K, w->k, w->h, l->k_w, l->k_b, T, C, KV);
    sds_linear_watched(w->capture, SDS_LLAMA_V, w->v, w->h, l->v_w, l->v_b, T, C, KV);
    rope_apply(w->q, T, NH, HD, w->rope_cos, w->rope_sin);
    rope_apply(w->k, T, NKV, HD, w->rope_cos, w->rope_sin);
    sds_attention(w->att, w->q, w->k, w->v, T, NH, NKV, HD, 1.0f / sqrtf((float)HD), w->scores);
    sds_capture_call(w->capture, 1, w->att, T, Q);
    sds_linear_watched(w->capture, SDS_LLAMA_O, w->h, w->att, l->o_w, l->o_b, T, Q, C);
    sds_add(x, w->h, T * C);

    // SwiGLU block: x += down(silu(gate(h)) * up(h)), h = rmsnorm(x)
    sds_rmsnorm(w->h, x, l->mlp_norm_w, T, C, eps);
    sds_capture_call(w->capture, 2, w->h, T, C);
    sds_linear_watched(w->capture, SDS_LLAMA_GATE, w->gate, w->h, l->gate_w, l->gate_b, T, C, F);
    sds_linear_watched(w->capture, SDS_LLAMA_UP, w->up, w->h, l->up_w, l->up_b, T, C, F);
    for (int64_t i = 0; i < T * F; i++) {
        const float g = w->gate[i];
        w->gate[i] = g / (1.0f + expf(-g)) * w->up[i];
    }
    sds_capture_call(w->capture, 3, w->gate, T, F);
    sds_linear_watched(w->capture, SDS_LLAMA_DOWN, w->h, w->gate, l->down_w, l->down_b, T, F, C);
    sds_add(x, w->h, T * C);
}

void sds_llama_head_prepare(const sds_llama_model *m, const float *x, int64_t T, float *y) {
    SDS_ASSERT(m->has_head);
    sds_rmsnorm(y, x, m->final_norm_w, T, m->cfg.hidden_size, m->cfg.norm_eps);
}

void sds_llama_logits(const sds_llama_model *m, const float *y, int64_t T, float *logits) {
    sds_linear(logits, y, m->lm_head, NULL, T, m->cfg.hidden_size, m->cfg.vocab_size);
}

double sds_llama_head_nll(const sds_llama_model *m, const int32_t *tokens, const float *x,
                          int64_t T, sds_llama_work *w) {
    SDS_ASSERT(T <= w->T && T >= 2);
    const int64_t C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    float *y = w->h; // x is left as it was
    sds_llama_head_prepare(m, x, T, y);
    double nll = 0.0;
    // position t predicts tokens[t+1]; the last position predicts nothing
    for (int64_t t0 = 0; t0 < T - 1; t0 += SDS_LLAMA_HEAD_CHUNK) {
        int64_t n = T - 1 - t0 < SDS_LLAMA_HEAD_CHUNK ? T - 1 - t0 : SDS_LLAMA_HEAD_CHUNK;
        sds_llama_logits(m, y + t0 * C, n, w->logits);
        nll += sds_nll_rows(w->logits, tokens + t0 + 1, n, V);
    }
    return nll;
}

double sds_llama_window_nll(const sds_llama_model *m, const int32_t *tokens, int64_t T,
                            sds_llama_work *w) {
    SDS_ASSERT(T <= w->T && T >= 2);
    sds_llama_embed(m, tokens, T, w->x);
    for (int64_t i = 0; i < m->cfg.n_layers; i++)
        sds_llama_layer_forward(m, &m->layers[i], w->x, T, w);
    return sds_llama_head_nll(m, tokens, w->x, T, w);
}

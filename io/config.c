#include "config.h"

#include "sds_error.h"

#include <jansson.h>
#include <string.h>

// Integer field with a default (HF's default for that model type); -2 default = required.
static int get_int(json_t *root, const char *path, const char *key, int64_t dflt, int64_t *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (dflt == -2)
            return sds_error_set(SDS_ERR_INPUT, "%s: field \"%s\" is missing", path, key);
        *out = dflt;
        return SDS_OK;
    }
    if (!json_is_integer(v))
        return sds_error_set(SDS_ERR_INPUT, "%s: field \"%s\" must be an integer", path, key);
    *out = (int64_t)json_integer_value(v);
    return SDS_OK;
}

static int get_bool(json_t *root, const char *path, const char *key, int dflt, int32_t *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return SDS_OK;
    }
    if (!json_is_boolean(v))
        return sds_error_set(SDS_ERR_INPUT, "%s: field \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return SDS_OK;
}

static int get_float(json_t *root, const char *path, const char *key, double dflt, float *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = (float)dflt;
        return SDS_OK;
    }
    if (!json_is_number(v))
        return sds_error_set(SDS_ERR_INPUT, "%s: field \"%s\" must be a number", path, key);
    *out = (float)json_number_value(v);
    return SDS_OK;
}

static int get_str(json_t *root, const char *key, char *dst, size_t cap) {
    json_t *v = json_object_get(root, key);
    dst[0] = '\0';
    if (json_is_string(v)) snprintf(dst, cap, "%s", json_string_value(v));
    return SDS_OK;
}

static int load_opt(json_t *root, const char *path, sds_model_config *c) {
    SDS_TRY(get_int(root, path, "vocab_size", 50272, &c->vocab_size));
    SDS_TRY(get_int(root, path, "hidden_size", 768, &c->hidden_size));
    SDS_TRY(get_int(root, path, "ffn_dim", 3072, &c->ffn_dim));
    SDS_TRY(get_int(root, path, "num_hidden_layers", 12, &c->n_layers));
    SDS_TRY(get_int(root, path, "num_attention_heads", 12, &c->n_heads));
    SDS_TRY(get_int(root, path, "max_position_embeddings", 2048, &c->max_position_embeddings));
    SDS_TRY(get_int(root, path, "word_embed_proj_dim", c->hidden_size, &c->word_embed_proj_dim));
    SDS_TRY(get_bool(root, path, "do_layer_norm_before", 1, &c->do_layer_norm_before));
    SDS_TRY(get_bool(root, path, "_remove_final_layer_norm", 0, &c->remove_final_layer_norm));
    SDS_TRY(get_bool(root, path, "enable_bias", 1, &c->enable_bias));
    SDS_TRY(get_bool(root, path, "layer_norm_elementwise_affine", 1, &c->layer_norm_affine));
    SDS_TRY(get_bool(root, path, "tie_word_embeddings", 1, &c->tie_word_embeddings));
    SDS_TRY(get_int(root, path, "bos_token_id", 2, &c->bos_token_id));
    SDS_TRY(get_int(root, path, "eos_token_id", 2, &c->eos_token_id));
    SDS_TRY(get_int(root, path, "pad_token_id", 1, &c->pad_token_id));
    c->n_kv_heads = c->n_heads;
    c->norm_eps = 1e-5f; // torch.nn.LayerNorm's default, which HF OPT uses
    char act[32];
    get_str(root, "activation_function", act, sizeof act);
    if (act[0] && strcmp(act, "relu") != 0)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: activation_function \"%s\" is not supported (OPT uses \"relu\")",
                             path, act);
    return SDS_OK;
}

static int load_llama(json_t *root, const char *path, sds_model_config *c) {
    SDS_TRY(get_int(root, path, "vocab_size", -2, &c->vocab_size));
    SDS_TRY(get_int(root, path, "hidden_size", -2, &c->hidden_size));
    SDS_TRY(get_int(root, path, "intermediate_size", -2, &c->ffn_dim));
    SDS_TRY(get_int(root, path, "num_hidden_layers", -2, &c->n_layers));
    SDS_TRY(get_int(root, path, "num_attention_heads", -2, &c->n_heads));
    SDS_TRY(get_int(root, path, "num_key_value_heads", c->n_heads, &c->n_kv_heads));
    SDS_TRY(get_int(root, path, "max_position_embeddings", 2048, &c->max_position_embeddings));
    SDS_TRY(get_bool(root, path, "tie_word_embeddings", 0, &c->tie_word_embeddings));
    SDS_TRY(get_float(root, path, "rms_norm_eps", 1e-6, &c->norm_eps));
    SDS_TRY(get_int(root, path, "bos_token_id", -1, &c->bos_token_id));
    SDS_TRY(get_int(root, path, "eos_token_id", -1, &c->eos_token_id));
    SDS_TRY(get_int(root, path, "pad_token_id", -1, &c->pad_token_id));
    c->word_embed_proj_dim = c->hidden_size;
    c->do_layer_norm_before = 1;
    return SDS_OK;
}

int sds_config_load(const char *path, sds_model_config *c) {
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (jerr.line < 0 || strstr(jerr.text, "unable to open"))
            return sds_error_set(SDS_ERR_INPUT, "%s: cannot open (%s)", path, jerr.text);
        return sds_error_set(SDS_ERR_INPUT, "%s: not valid JSON (line %d: %s)", path, jerr.line,
                             jerr.text);
    }
    int rc = SDS_OK;
    if (!json_is_object(root)) {
        rc = sds_error_set(SDS_ERR_INPUT, "%s: not a JSON object", path);
        goto done;
    }
    get_str(root, "model_type", c->model_type, sizeof c->model_type);
    get_str(root, "torch_dtype", c->torch_dtype, sizeof c->torch_dtype);
    if (strcmp(c->model_type, "opt") == 0) {
        c->arch = SDS_ARCH_OPT;
        rc = load_opt(root, path, c);
    } else if (strcmp(c->model_type, "llama") == 0) {
        c->arch = SDS_ARCH_LLAMA;
        rc = load_llama(root, path, c);
    } else {
        rc = sds_error_set(SDS_ERR_INPUT,
                           "%s: model_type \"%s\" is not supported (supported: opt, llama)", path,
                           c->model_type);
    }
    if (rc != SDS_OK) goto done;
    // Consistency: the shapes every later step relies on.
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->ffn_dim <= 0 || c->n_layers <= 0 ||
        c->n_heads <= 0 || c->n_kv_heads <= 0 || c->max_position_embeddings <= 0 ||
        c->word_embed_proj_dim <= 0) {
        rc = sds_error_set(SDS_ERR_INPUT, "%s: sizes must be positive", path);
        goto done;
    }
    if (c->hidden_size % c->n_heads != 0) {
        rc = sds_error_set(SDS_ERR_INPUT,
                           "%s: hidden_size %lld is not a multiple of num_attention_heads %lld",
                           path, (long long)c->hidden_size, (long long)c->n_heads);
        goto done;
    }
    if (c->n_heads % c->n_kv_heads != 0) {
        rc = sds_error_set(SDS_ERR_INPUT,
                           "%s: num_attention_heads %lld is not a multiple of num_key_value_heads "
                           "%lld",
                           path, (long long)c->n_heads, (long long)c->n_kv_heads);
        goto done;
    }
    c->head_dim = c->hidden_size / c->n_heads;
done:
    json_decref(root);
    return rc;
}

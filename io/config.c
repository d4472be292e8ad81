#include "config.h"

#include "sds_error.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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

static int get_double(json_t *root, const char *path, const char *key, double dflt, double *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return SDS_OK;
    }
    if (!json_is_number(v))
        return sds_error_set(SDS_ERR_INPUT, "%s: field \"%s\" must be a number", path, key);
    *out = json_number_value(v);
    return SDS_OK;
}

// A number inside rope_scaling that the schedule needs; positive.
static int rope_number(json_t *rs, const char *path, const char *key, double *out) {
    json_t *v = json_object_get(rs, key);
    if (!v) return sds_error_set(SDS_ERR_INPUT, "%s: rope_scaling.%s is missing", path, key);
    if (!json_is_number(v))
        return sds_error_set(SDS_ERR_INPUT, "%s: rope_scaling.%s must be a number", path, key);
    *out = json_number_value(v);
    if (!(*out > 0.0))
        return sds_error_set(SDS_ERR_INPUT, "%s: rope_scaling.%s is %g; it must be positive", path,
                             key, *out);
    return SDS_OK;
}

// rope_scaling as transformers 4.44 reads it: "rope_type", or the older "type", names the
// schedule. Dynamic NTK, YaRN, LongRoPE, ... change the frequencies in ways not implemented here.
static int load_rope_scaling(json_t *root, const char *path, sds_model_config *c) {
    c->rope_type = SDS_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!rs || json_is_null(rs)) return SDS_OK;
    if (!json_is_object(rs))
        return sds_error_set(SDS_ERR_INPUT, "%s: rope_scaling must be null or an object", path);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t || json_is_null(t)) t = json_object_get(rs, "type");
    if (!json_is_string(t))
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: rope_scaling has no string \"rope_type\" (or \"type\")", path);
    const char *type = json_string_value(t);
    if (strcmp(type, "default") == 0) return SDS_OK;
    if (strcmp(type, "linear") == 0) {
        c->rope_type = SDS_ROPE_LINEAR;
        return rope_number(rs, path, "factor", &c->rope_factor);
    }
    if (strcmp(type, "llama3") == 0) {
        c->rope_type = SDS_ROPE_LLAMA3;
        double omax = 0.0;
        SDS_TRY(rope_number(rs, path, "factor", &c->rope_factor));
        SDS_TRY(rope_number(rs, path, "low_freq_factor", &c->rope_low_freq_factor));
        SDS_TRY(rope_number(rs, path, "high_freq_factor", &c->rope_high_freq_factor));
        SDS_TRY(rope_number(rs, path, "original_max_position_embeddings", &omax));
        c->rope_original_max_position = (int64_t)omax;
        // the smooth ramp divides by their difference
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: rope_scaling.high_freq_factor %g must exceed "
                                 "rope_scaling.low_freq_factor %g",
                                 path, c->rope_high_freq_factor, c->rope_low_freq_factor);
        return SDS_OK;
    }
    return sds_error_set(SDS_ERR_INPUT,
                         "%s: rope_scaling type \"%s\" is not supported (supported: null, "
                         "\"default\", \"linear\", \"llama3\")",
                         path, type);
}

static int load_llama(json_t *root, const char *path, sds_model_config *c) {
    SDS_TRY(get_int(root, path, "vocab_size", -2, &c->vocab_size));
    SDS_TRY(get_int(root, path, "hidden_size", -2, &c->hidden_size));
    SDS_TRY(get_int(root, path, "intermediate_size", -2, &c->ffn_dim));
    SDS_TRY(get_int(root, path, "num_hidden_layers", -2, &c->n_layers));
    SDS_TRY(get_int(root, path, "num_attention_heads", -2, &c->n_heads));
    SDS_TRY(get_int(root, path, "num_key_value_heads", c->n_heads, &c->n_kv_heads));
    // 0: hidden_size / num_attention_heads (resolved with the consistency checks)
    SDS_TRY(get_int(root, path, "head_dim", 0, &c->head_dim));
    SDS_TRY(get_int(root, path, "max_position_embeddings", 2048, &c->max_position_embeddings));
    SDS_TRY(get_bool(root, path, "tie_word_embeddings", 0, &c->tie_word_embeddings));
    SDS_TRY(get_bool(root, path, "attention_bias", 0, &c->attention_bias));
    SDS_TRY(get_bool(root, path, "mlp_bias", 0, &c->mlp_bias));
    SDS_TRY(get_float(root, path, "rms_norm_eps", 1e-6, &c->norm_eps));
    SDS_TRY(get_double(root, path, "rope_theta", 10000.0, &c->rope_theta));
    SDS_TRY(get_int(root, path, "bos_token_id", -1, &c->bos_token_id));
    SDS_TRY(get_int(root, path, "eos_token_id", -1, &c->eos_token_id));
    SDS_TRY(get_int(root, path, "pad_token_id", -1, &c->pad_token_id));
    c->word_embed_proj_dim = c->hidden_size;
    c->do_layer_norm_before = 1;
    char act[32];
    get_str(root, "hidden_act", act, sizeof act);
    if (act[0] && strcmp(act, "silu") != 0)
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: hidden_act \"%s\" is not supported (Llama uses \"silu\")", path,
                             act);
    if (!(c->rope_theta > 0.0))
        return sds_error_set(SDS_ERR_INPUT, "%s: rope_theta must be positive", path);
    return load_rope_scaling(root, path, c);
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
    if (c->head_dim == 0 && c->hidden_size % c->n_heads != 0) {
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
    if (c->head_dim == 0) c->head_dim = c->hidden_size / c->n_heads;
    // RoPE rotates pairs (i, i + head_dim/2)
    if (c->arch == SDS_ARCH_LLAMA && (c->head_dim < 0 || c->head_dim % 2 != 0)) {
        rc = sds_error_set(SDS_ERR_INPUT, "%s: head_dim %lld must be positive and even", path,
                           (long long)c->head_dim);
        goto done;
    }
done:
    json_decref(root);
    return rc;
}

int sds_config_load_dir(const char *dir, sds_model_config *cfg) {
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return sds_error_set(SDS_ERR_INPUT, "%s: no such file or directory", dir);
    if (!S_ISDIR(sb.st_mode))
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: not a directory (expected a Hugging Face checkpoint directory "
                             "with config.json and *.safetensors)",
                             dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    return sds_config_load(path, cfg);
}

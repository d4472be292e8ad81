#include "model_load.h"

#include "config.h"
#include "gguf_model.h"
#include "llama_load.h"
#include "opt_load.h"
#include "sds_error.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int sds_model_is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

int sds_model_load(const char *path, sds_model *m) {
    return sds_model_load_part(path, 0, INT64_MAX, SDS_MODEL_EMBED | SDS_MODEL_HEAD, m);
}

int sds_model_load_part(const char *path, int64_t layer_lo, int64_t layer_hi, int32_t parts,
                        sds_model *m) {
    memset(m, 0, sizeof *m);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return sds_error_set(SDS_ERR_INPUT, "%s: no such file or directory", path);
    if (!S_ISDIR(sb.st_mode)) {
        if (!sds_model_is_gguf(path))
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: neither a GGUF file nor a Hugging Face checkpoint "
                                 "directory (config.json and *.safetensors)",
                                 path);
        m->arch = SDS_ARCH_LLAMA;
        SDS_TRY(sds_llama_load_gguf_part(path, layer_lo, layer_hi, parts, &m->llama));
        m->cfg = m->llama.cfg;
        return SDS_OK;
    }
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
    sds_model_config cfg;
    SDS_TRY(sds_config_load(cfg_path, &cfg)); // model_type decides the loader
    m->arch = cfg.arch;
    switch (cfg.arch) {
    case SDS_ARCH_OPT:
        SDS_TRY(sds_opt_load_dir_part(path, layer_lo, layer_hi, parts, &m->opt));
        m->cfg = m->opt.cfg;
        return SDS_OK;
    case SDS_ARCH_LLAMA:
        SDS_TRY(sds_llama_load_dir_part(path, layer_lo, layer_hi, parts, &m->llama));
        m->cfg = m->llama.cfg;
        return SDS_OK;
    default:
        return sds_error_set(SDS_ERR_INPUT, "%s: model_type \"%s\" is not supported", cfg_path,
                             cfg.model_type);
    }
}

// A JSON file of the tokenizer directory; *root NULL when the file does not exist. flags:
// JSON_DECODE_INT_AS_REAL for tokenizer_config.json, whose model_max_length is often 1e30
// written as an integer (too big for jansson's integers).
static int load_json(const char *dir, const char *name, size_t flags, json_t **root) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *root = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return SDS_OK;
    json_error_t jerr;
    *root = json_load_file(path, flags, &jerr);
    if (!*root)
        return sds_error_set(SDS_ERR_INPUT, "%s: not valid JSON (line %d: %s)", path, jerr.line,
                             jerr.text);
    return SDS_OK;
}

// The first token a tokenizers post_processor puts before a single text, or -1.
static int32_t post_processor_bos(json_t *pp) {
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (!type) return -1;
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(pp, "processors");
        for (size_t i = 0; i < json_array_size(list); i++) {
            int32_t id = post_processor_bos(json_array_get(list, i));
            if (id >= 0) return id;
        }
        return -1;
    }
    if (strcmp(type, "TemplateProcessing") == 0) {
        json_t *first = json_array_get(json_object_get(pp, "single"), 0);
        json_t *special = json_object_get(first, "SpecialToken"); // {"id": "<s>", ...}
        const char *name = json_string_value(json_object_get(special, "id"));
        if (!name) return -1;
        json_t *entry = json_object_get(json_object_get(pp, "special_tokens"), name);
        json_t *id = json_array_get(json_object_get(entry, "ids"), 0);
        return json_is_integer(id) ? (int32_t)json_integer_value(id) : -1;
    }
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        json_t *id = json_array_get(json_object_get(pp, "cls"), 1);
        return json_is_integer(id) ? (int32_t)json_integer_value(id) : -1;
    }
    return -1;
}

// The BOS that transformers 4.44's AutoTokenizer puts before a text (add_special_tokens=True)
// for this tokenizer directory, or -1:
// - the class is tokenizer_config.json's "tokenizer_class", else the model type's
//   (llama: LlamaTokenizerFast);
// - LlamaTokenizer[Fast] and CodeLlamaTokenizer[Fast] rebuild the post-processor from
//   "add_bos_token", default true, with "bos_token" (default "<s>");
// - any other class with a tokenizer.json keeps its post_processor (Llama 3 ships
//   PreTrainedTokenizerFast with a TemplateProcessing that adds <|begin_of_text|>);
// - without tokenizer.json the slow GPT-2 files are converted with "add_bos_token", default
//   false.
static int hf_bos(const char *dir, const sds_model *m, const sds_tokenizer *tok, int32_t *bos) {
    json_t *tc = NULL, *tj = NULL;
    *bos = -1;
    int rc = load_json(dir, "tokenizer_config.json", JSON_DECODE_INT_AS_REAL, &tc);
    if (rc == SDS_OK) rc = load_json(dir, "tokenizer.json", 0, &tj);
    if (rc != SDS_OK) goto done;
    const char *cls = json_string_value(json_object_get(tc, "tokenizer_class"));
    if (!cls) cls = m->arch == SDS_ARCH_LLAMA ? "LlamaTokenizerFast" : "";
    const int llama_class =
        strncmp(cls, "LlamaTokenizer", 14) == 0 || strncmp(cls, "CodeLlamaTokenizer", 18) == 0;
    json_t *add = json_object_get(tc, "add_bos_token");
    if (llama_class || !tj) {
        int on = json_is_boolean(add) ? json_is_true(add) : llama_class;
        if (!on) goto done;
        // bos_token is a string or an AddedToken object {"content": ...}
        json_t *bt = json_object_get(tc, "bos_token");
        const char *s = json_is_object(bt) ? json_string_value(json_object_get(bt, "content"))
                                           : json_string_value(bt);
        if (!s && !bt && llama_class) s = "<s>";
        if (!s) {
            *bos = (int32_t)m->cfg.bos_token_id; // no bos_token named: config.json's
            if (*bos < 0)
                rc = sds_error_set(SDS_ERR_INPUT,
                                   "%s/tokenizer_config.json: add_bos_token is true but no "
                                   "bos_token is set (nor bos_token_id in config.json)",
                                   dir);
        } else {
            *bos = sds_tokenizer_token_id(tok, s);
            if (*bos < 0)
                rc = sds_error_set(SDS_ERR_INPUT,
                                   "%s/tokenizer_config.json: bos_token \"%s\" is not in the "
                                   "tokenizer's vocabulary",
                                   dir, s);
        }
        goto done;
    }
    *bos = post_processor_bos(json_object_get(tj, "post_processor"));
done:
    json_decref(tc);
    json_decref(tj);
    return rc;
}

int sds_model_tokenizer(const char *path, const char *tokenizer_dir, const sds_model *m,
                        sds_tokenizer **tok, int32_t *bos) {
    const char *dir = tokenizer_dir ? tokenizer_dir : path;
    if (!tokenizer_dir && sds_model_is_gguf(path)) {
        // the tokenizer is in the GGUF metadata, BOS as tokenizer.ggml.add_bos_token says
        sds_gguf *g = NULL;
        SDS_TRY(sds_gguf_open(path, &g));
        int rc = sds_tokenizer_load_gguf(g, path, tok);
        bool add = false;
        *bos = -1;
        if (rc == SDS_OK && sds_gguf_has(g, "tokenizer.ggml.add_bos_token"))
            rc = sds_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add);
        if (rc == SDS_OK && add) {
            int64_t id = -1;
            rc = sds_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &id);
            *bos = (int32_t)id;
        }
        sds_gguf_free(g);
        if (rc != SDS_OK) {
            sds_tokenizer_free(*tok);
            *tok = NULL;
        }
        return rc;
    }
    SDS_TRY(sds_tokenizer_load_dir(dir, tok));
    // Hugging Face's OPT tokenizer starts every text with </s> (= bos_token_id, 2).
    if (m->arch == SDS_ARCH_OPT) {
        *bos = (int32_t)m->cfg.bos_token_id;
        return SDS_OK;
    }
    int rc = hf_bos(dir, m, *tok, bos);
    if (rc != SDS_OK) {
        sds_tokenizer_free(*tok);
        *tok = NULL;
    }
    return rc;
}

#include "text_ids.h"

#include "model_load.h"
#include "sds_error.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>

int sds_text_token_ids(const char *text_path, const char *model_path, const char *tokenizer_dir,
                       const sds_model *m, int32_t **ids_out, int64_t *n_out) {
    sds_tokenizer *tok = NULL;
    int32_t bos = -1;
    SDS_TRY(sds_model_tokenizer(model_path, tokenizer_dir, m, &tok, &bos));
    char *text = NULL;
    size_t len = 0;
    int rc = sds_text_read(text_path, &text, &len);
    int32_t *raw = NULL;
    int64_t n = 0;
    if (rc == SDS_OK) {
        rc = sds_tokenizer_encode(tok, text, len, &raw, &n);
        if (rc != SDS_OK) {
            // the tokenizer reports the offset; the file name makes it actionable
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", sds_error_message());
            sds_error_clear();
            rc = sds_error_set(rc, "%s: %s", text_path, msg);
        }
    }
    free(text);
    sds_tokenizer_free(tok);
    if (rc != SDS_OK) return rc;
    int64_t total = n + (bos >= 0 ? 1 : 0);
    int32_t *ids = sds_malloc((size_t)(total ? total : 1) * sizeof(int32_t), "token ids");
    if (!ids) {
        free(raw);
        return SDS_ERR_IO;
    }
    int64_t k = 0;
    if (bos >= 0) ids[k++] = bos;
    for (int64_t i = 0; i < n; i++) ids[k++] = raw[i];
    free(raw);
    for (int64_t i = 0; i < total; i++) {
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size) {
            const int32_t bad = ids[i];
            free(ids);
            return sds_error_set(SDS_ERR_INPUT,
                                 "%s: token id %d is outside the model's vocabulary (%lld): the "
                                 "tokenizer does not match the model",
                                 text_path, bad, (long long)m->cfg.vocab_size);
        }
    }
    *ids_out = ids;
    *n_out = total;
    return SDS_OK;
}

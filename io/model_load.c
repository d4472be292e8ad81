#include "model_load.h"

#include "opt_load.h"
#include "sds_error.h"

#include <string.h>

int sds_model_load(const char *path, sds_model *m) {
    memset(m, 0, sizeof *m);
    m->arch = SDS_ARCH_OPT;
    SDS_TRY(sds_opt_load_dir(path, &m->opt));
    m->cfg = m->opt.cfg;
    return SDS_OK;
}

int sds_model_tokenizer(const char *path, const char *tokenizer_dir, const sds_model *m,
                        sds_tokenizer **tok, int32_t *bos) {
    SDS_TRY(sds_tokenizer_load_dir(tokenizer_dir ? tokenizer_dir : path, tok));
    // Hugging Face's OPT tokenizer starts every text with </s> (= bos_token_id, 2).
    *bos = m->arch == SDS_ARCH_OPT ? (int32_t)m->cfg.bos_token_id : -1;
    return SDS_OK;
}

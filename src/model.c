#include "model.h"

#include "sds_error.h"

#include <string.h>

void sds_model_free(sds_model *m) {
    if (m->arch == SDS_ARCH_OPT) sds_opt_free(&m->opt);
    memset(m, 0, sizeof *m);
}

int sds_model_work_alloc(sds_model_work *w, const sds_model *m, int64_t T) {
    memset(w, 0, sizeof *w);
    w->arch = m->arch;
    switch (m->arch) {
    case SDS_ARCH_OPT:
        return sds_opt_work_alloc(&w->opt, &m->cfg, T);
    default:
        return sds_error_set(SDS_ERR_INPUT, "architecture not supported yet");
    }
}

void sds_model_work_free(sds_model_work *w) {
    if (w->arch == SDS_ARCH_OPT) sds_opt_work_free(&w->opt);
    memset(w, 0, sizeof *w);
}

double sds_model_window_nll(const sds_model *m, const int32_t *tokens, int64_t T,
                            sds_model_work *w) {
    SDS_ASSERT(m->arch == w->arch);
    switch (m->arch) {
    case SDS_ARCH_OPT:
        return sds_opt_window_nll(&m->opt, tokens, T, &w->opt);
    default:
        SDS_ASSERT(0);
        return 0.0;
    }
}

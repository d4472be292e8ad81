#include "pruned_load.h"

#include "h5in.h"
#include "sds_error.h"

#include <string.h>

int sds_model_load_pruned(sds_model *m, const char *path, int64_t *n_replaced) {
    *n_replaced = 0;
    sds_h5in *h = NULL;
    SDS_TRY(sds_h5in_open(path, &h));
    int rc = SDS_OK;
    const int32_t n_lin = sds_model_n_linear(m);
    for (int64_t k = 0; rc == SDS_OK && k < sds_h5in_count(h); k++) {
        const char *name = sds_h5in_name(h, k);
        int found = 0;
        for (int64_t l = 0; !found && l < m->cfg.n_layers; l++) {
            for (int32_t i = 0; !found && i < n_lin; i++) {
                char mod[128];
                sds_model_linear_module(m, l, i, mod, sizeof mod);
                if (strcmp(mod, name) != 0) continue;
                found = 1;
                if (!sds_model_has_layer(m, l)) break; // another pipeline stage's
                sds_linear_ref r = sds_model_linear(m, l, i);
                rc = sds_h5in_read_weights(h, name, r.rows, r.cols, r.w);
            }
        }
        if (rc == SDS_OK && !found)
            rc = sds_error_set(SDS_ERR_INPUT,
                               "%s: sublayer %s is not part of this model (a prune output of "
                               "another model?)",
                               path, name);
        if (rc == SDS_OK) (*n_replaced)++;
    }
    sds_h5in_close(h);
    return rc;
}

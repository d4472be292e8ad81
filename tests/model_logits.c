// model_logits MODEL IDS.bin OUT.bin: logits (T,V) fp32 of one sequence of int32 ids.
// The reference comparison lives in test_logits.py.
#include "model_load.h"
#include "sds_error.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: model_logits MODEL IDS.bin OUT.bin\n");
        return 2;
    }
    sds_model m;
    if (sds_model_load(argv[1], &m) != SDS_OK) {
        fprintf(stderr, "model_logits: %s\n", sds_error_message());
        return 3;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) return 3;
    int32_t ids[4096];
    int64_t T = (int64_t)fread(ids, sizeof(int32_t), 4096, f);
    fclose(f);
    const int64_t V = m.cfg.vocab_size, C = m.cfg.hidden_size, E = m.cfg.word_embed_proj_dim;
    SDS_ASSERT(m.arch == SDS_ARCH_OPT);
    sds_opt_work w;
    SDS_ASSERT(sds_opt_work_alloc(&w, &m.cfg, T) == SDS_OK);
    float *logits = malloc((size_t)(T * V) * sizeof(float));
    float *y = malloc((size_t)(T * (E > C ? E : C)) * sizeof(float));
    SDS_ASSERT(logits && y);
    sds_opt_embed(&m.opt, ids, T, w.x, &w);
    for (int64_t i = 0; i < m.cfg.n_layers; i++)
        sds_opt_layer_forward(&m.opt, &m.opt.layers[i], w.x, T, &w);
    sds_opt_head_prepare(&m.opt, w.x, T, y);
    sds_opt_logits(&m.opt, y, T, logits);
    f = fopen(argv[3], "wb");
    SDS_ASSERT(f && fwrite(logits, sizeof(float), (size_t)(T * V), f) == (size_t)(T * V));
    fclose(f);
    free(logits);
    free(y);
    sds_opt_work_free(&w);
    sds_model_free(&m);
    return 0;
}

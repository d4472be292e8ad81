// model_logits MODEL IDS.bin OUT.bin: logits (T,V) fp32 of one sequence of int32 ids, for any
// architecture sds_model_load opens. The reference comparison lives in test_logits.py.
#include "model_load.h"
#include "sds_error.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_T 4096

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
    static int32_t ids[MAX_T];
    int64_t T = (int64_t)fread(ids, sizeof(int32_t), MAX_T, f);
    fclose(f);
    const int64_t V = m.cfg.vocab_size;
    for (int64_t t = 0; t < T; t++) SDS_ASSERT(ids[t] >= 0 && ids[t] < V);
    sds_model_work w;
    if (T < 1 || sds_model_work_alloc(&w, &m, T) != SDS_OK) {
        fprintf(stderr, "model_logits: %lld ids: %s\n", (long long)T, sds_error_message());
        return 3;
    }
    float *logits = malloc((size_t)(T * V) * sizeof(float));
    SDS_ASSERT(logits);
    sds_model_forward_logits(&m, ids, T, logits, &w);
    f = fopen(argv[3], "wb");
    SDS_ASSERT(f && fwrite(logits, sizeof(float), (size_t)(T * V), f) == (size_t)(T * V));
    fclose(f);
    free(logits);
    sds_model_work_free(&w);
    sds_model_free(&m);
    return 0;
}

#include "stage_map.h"

void sds_stage_ranks(int nranks, int stages, int k, int *lo, int *hi) {
    *lo = (int)((int64_t)nranks * k / stages);
    *hi = (int)((int64_t)nranks * (k + 1) / stages);
}

int sds_stage_of_rank(int nranks, int stages, int rank) {
    for (int k = 0; k < stages; k++) {
        int lo, hi;
        sds_stage_ranks(nranks, stages, k, &lo, &hi);
        if (rank >= lo && rank < hi) return k;
    }
    return stages - 1;
}

void sds_stage_layers(int64_t n_layers, int stages, int k, int64_t *lo, int64_t *hi) {
    *lo = n_layers * k / stages;
    *hi = n_layers * (k + 1) / stages;
}

int sds_stage_of_layer(int64_t n_layers, int stages, int64_t layer) {
    for (int k = 0; k < stages; k++) {
        int64_t lo, hi;
        sds_stage_layers(n_layers, stages, k, &lo, &hi);
        if (layer >= lo && layer < hi) return k;
    }
    return stages - 1;
}

// Pipeline stages (SPEC 4): P ranks split into S contiguous groups, stage k owning a contiguous
// range of decoder layers. Every decoder layer of a model costs the same, so the layers are
// split as evenly as the counts allow (the first stages get the smaller share when L % S != 0,
// since the first stage also holds the embeddings and the last the head).
#pragma once
#include <stdint.h>

// Ranks [*lo, *hi) form stage k of `stages` over `nranks` ranks (1 <= stages <= nranks).
void sds_stage_ranks(int nranks, int stages, int k, int *lo, int *hi);
// The stage of a rank.
int sds_stage_of_rank(int nranks, int stages, int rank);
// Decoder layers [*lo, *hi) of stage k (1 <= stages <= n_layers).
void sds_stage_layers(int64_t n_layers, int stages, int k, int64_t *lo, int64_t *hi);
// The stage owning a decoder layer.
int sds_stage_of_layer(int64_t n_layers, int stages, int64_t layer);

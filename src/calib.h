// Calibration windows: which stretches of the tokenized calibration text the pruner sees.
#pragma once
#include <stdint.h>

// starts[i] (i < nsamples) = first token of window i, each window seqlen tokens inside
// [0, n_tokens). The generator is SplitMix64 seeded with `seed`; draw i maps the i-th 64-bit
// output r to floor(r * (n_tokens - seqlen + 1) / 2^64), so the windows depend only on
// (n_tokens, nsamples, seqlen, seed), on any machine and at any rank count.
// Requires n_tokens >= seqlen.
void sds_calib_starts(int64_t n_tokens, int64_t nsamples, int64_t seqlen, uint64_t seed,
                      int64_t *starts);

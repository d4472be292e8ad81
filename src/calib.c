#include "calib.h"

#include "sds_error.h"

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void sds_calib_starts(int64_t n_tokens, int64_t nsamples, int64_t seqlen, uint64_t seed,
                      int64_t *starts) {
    SDS_ASSERT(n_tokens >= seqlen && seqlen > 0 && nsamples >= 0);
    const uint64_t range = (uint64_t)(n_tokens - seqlen + 1);
    uint64_t state = seed;
    for (int64_t i = 0; i < nsamples; i++) {
        // multiply-shift maps 64 random bits onto [0, range) without a division
        const unsigned __int128 r = (unsigned __int128)splitmix64(&state) * range;
        starts[i] = (int64_t)(r >> 64);
    }
}

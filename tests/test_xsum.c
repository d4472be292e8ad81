// Exact order-independent sums (src/xsum.h, mpi/xsum_mpi.h): the same bits whatever the order
// of the additions and however the terms are spread over ranks; accurate to the grid; values
// too large reported. Run at 1, 2 and 4 ranks.
#include "xsum.h"
#include "xsum_mpi.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

static void check(int rank, int ok, const char *what) {
    if (rank == 0) printf("%s %s\n", ok ? "OK" : "NOT OK", what);
    if (!ok) failures++;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) { // splitmix64
    rng_state += 0x9E3779B97F4A7C15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(void) {
    return (double)(next_u64() >> 11) * 0x1p-53;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    // terms x elements: values over 40 binades, both signs, like Gram entries of varied scale
    enum { TERMS = 64, N = 4096 };
    float *x = malloc(sizeof(float) * TERMS * N);
    for (int t = 0; t < TERMS; t++)
        for (int i = 0; i < N; i++) {
            const double mag = ldexp(1.0, (int)(uniform() * 40.0) - 20);
            x[t * N + i] = (float)((uniform() - 0.3) * mag);
        }
    const double limit = sds_xsum_limit(TERMS);

    // sequential, forward and backward, on every rank
    sds_xsum_t *fw = calloc(N, sizeof *fw), *bw = calloc(N, sizeof *bw);
    int bad = 0;
    for (int t = 0; t < TERMS; t++) bad |= sds_xsum_add_f32(fw, x + t * N, N, limit);
    for (int t = TERMS - 1; t >= 0; t--) bad |= sds_xsum_add_f32(bw, x + t * N, N, limit);
    check(rank, !bad && !memcmp(fw, bw, sizeof *fw * N),
          "forward and backward order give the same bits");

    // this rank's share of the terms, strided (rank r: terms r, r + P, ...), then MPI
    sds_xsum_t *mine = calloc(N, sizeof *mine);
    for (int t = rank; t < TERMS; t += size) bad |= sds_xsum_add_f32(mine, x + t * N, N, limit);
    sds_xsum_allreduce(MPI_COMM_WORLD, mine, N);
    char what[256];
    snprintf(what, sizeof what, "%d rank%s, strided shares: the same bits as one sequential sum",
             size, size > 1 ? "s" : "");
    check(rank, !bad && !memcmp(fw, mine, sizeof *fw * N), what);

    // accuracy: against a long double sum, to the grid (2^-64 per term)
    float *f = malloc(sizeof(float) * N);
    sds_xsum_to_f32(fw, f, N);
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        long double s = 0.0L;
        for (int t = 0; t < TERMS; t++) s += (long double)x[t * N + i];
        const double err = fabs((double)((long double)f[i] - s));
        const double tol = 0.51 * fabs((double)s) * 0x1p-23 + TERMS * 0x1p-64;
        if (err / tol > worst) worst = err / tol;
    }
    snprintf(what, sizeof what, "within 0.51 fp32 ulp of the exact sum (worst %.3f of it)", worst);
    check(rank, worst <= 1.0, what);

    // doubles and the packed upper triangle
    double d[3] = {1e-3, -2.5, 1e10}, back[3];
    sds_xsum_t acc3[3] = {0, 0, 0};
    bad = sds_xsum_add_f64(acc3, d, 3, limit);
    sds_xsum_to_f64(acc3, back, 3);
    check(rank, !bad && fabs(back[0] - 1e-3) < 1e-18 && back[1] == -2.5 && back[2] == 1e10,
          "doubles round-trip");
    float M[9] = {1, 2, 3, 9, 4, 5, 9, 9, 6}, U[9];
    memset(U, 0, sizeof U);
    sds_xsum_t up[6] = {0};
    bad = sds_xsum_add_upper_f32(up, M, 3, limit);
    sds_xsum_upper_to_f32(up, U, 3);
    check(rank,
          !bad && U[0] == 1 && U[1] == 2 && U[2] == 3 && U[4] == 4 && U[5] == 5 && U[8] == 6 &&
              U[3] == 0,
          "packed upper triangle round-trips, the lower stays untouched");

    // one value onto the grid: the truncation toward zero of |v| 2^64, with v's sign, bit for
    // bit against long double (exact for floats and doubles at these magnitudes), on values of
    // every magnitude from subnormal to just below 2^62, integers and halves included
    long bad_f = 0, bad_d = 0;
    for (long t = 0; t < 2000000; t++) {
        const int e = (int)(uniform() * 200.0) - 140; // 2^-140 .. 2^59
        double v = ldexp(uniform() + 0.5, e);
        if (t % 7 == 0) v = floor(v);            // integers (and 0)
        if (t % 11 == 0) v = floor(v * 2.0) / 2; // halves
        if (t % 2) v = -v;
        const float vf = (float)v;
        sds_xsum_t af = 0, ad = 0;
        const int bf = sds_xsum_add_f32(&af, &vf, 1, 0x1p62);
        const int bd = sds_xsum_add_f64(&ad, &v, 1, 0x1p62);
        const sds_xsum_t rf = (sds_xsum_t)truncl(ldexpl((long double)vf, 64));
        const sds_xsum_t rd = (sds_xsum_t)truncl(ldexpl((long double)v, 64));
        bad_f += bf || af != rf;
        bad_d += bd || ad != rd;
    }
    snprintf(what, sizeof what,
             "add_f32 and add_f64: |v| 2^64 truncated, v's sign (2e6 values; %ld and %ld differ)",
             bad_f, bad_d);
    check(rank, bad_f == 0 && bad_d == 0, what);

    // the same in bulk (sds_xsum_add_f32's vector loop where the CPU has one, and its tail;
    // then the scalar loop alone, which CPUs without AVX-512 run), into accumulators that start
    // anywhere in the 128-bit range, so that the additions carry and borrow across the 64-bit
    // halves: each entry against its own 128-bit addition of the long double truncation, at
    // offsets 0 to 8 (tails of every length, unaligned starts)
    enum { BULK = 1 << 18 };
    float *vb = malloc(sizeof(float) * (BULK + 8));
    sds_xsum_t *ab = malloc(sizeof(sds_xsum_t) * (BULK + 8));
    sds_xsum_t *ref = malloc(sizeof(sds_xsum_t) * (BULK + 8));
    // every loop this CPU runs (the scalar one on any), then the dispatch
    const char *loops[4] = {"AVX-512", "AVX2", "scalar", NULL};
    int tested = 0;
    for (int loop = 0; loop < 4; loop++) {
        sds_xsum_add_fn add = loop < 3 ? sds_xsum_add_f32_loop(loops[loop]) : sds_xsum_add_f32;
        if (!add) {
            if (rank == 0) printf("# the %s loop: this CPU cannot run it\n", loops[loop]);
            continue;
        }
        tested += loop < 3;
        char name[64];
        snprintf(name, sizeof name, "%s", loop < 3 ? loops[loop] : "dispatch: ");
        if (loop == 3) strncat(name, sds_xsum_loop(), sizeof name - strlen(name) - 1);
        long bad_bulk = 0, flagged = 0;
        for (int off = 0; off <= 8; off++) {
            const size_t nb = BULK - (size_t)off * 3;
            for (size_t i = 0; i < nb + (size_t)off; i++) {
                const int e = (int)(uniform() * 200.0) - 140;
                double v = ldexp(uniform() + 0.5, e);
                if (i % 7 == 0) v = floor(v);
                if (i % 13 == 0) v = 0.0;
                if (i % 2) v = -v;
                vb[i] = (float)v;
                if (i % 17 == 0) vb[i] = -0.0f;
                if (i % 19 == 0) vb[i] = (float)ldexp(uniform(), -130); // subnormal
                unsigned __int128 a0 = (unsigned __int128)next_u64() << 64 | next_u64();
                if (i % 3 == 0) a0 = (unsigned __int128)next_u64(); // a carry into the high half
                if (i % 5 == 0) a0 = ~(unsigned __int128)0 - (next_u64() & 0xffff); // near -1
                memcpy(&ab[i], &a0, sizeof a0);
                const unsigned __int128 t =
                    (unsigned __int128)(sds_xsum_t)truncl(ldexpl((long double)vb[i], 64));
                const unsigned __int128 r = a0 + t; // (two's complement, modulo 2^128)
                memcpy(&ref[i], &r, sizeof r);
            }
            flagged += add(ab + off, vb + off, nb, 0x1p62);
            for (size_t i = (size_t)off; i < nb + (size_t)off; i++) bad_bulk += ab[i] != ref[i];
        }
        snprintf(
            what, sizeof what,
            "add_f32 in bulk (%s loop), 9 offsets and tails, carries across the halves (%ld of "
            "%d x 9 differ)",
            name, bad_bulk, BULK);
        check(rank, bad_bulk == 0 && flagged == 0, what);
        // one bad value anywhere in a vector or the tail is reported
        long missed = 0;
        for (int pos = 0; pos < 21; pos++)
            for (int k = 0; k < 3; k++) {
                const float bads[3] = {0x1p62f, -INFINITY, NAN};
                for (int i = 0; i < 21; i++) vb[i] = (float)i;
                vb[pos] = bads[k];
                memset(ab, 0, sizeof(sds_xsum_t) * 21);
                missed += !add(ab, vb, 21, 0x1p62);
            }
        snprintf(what, sizeof what,
                 "add_f32 in bulk (%s loop) reports a bad value at any of 21 places", name);
        check(rank, missed == 0, what);
    }
    free(vb);
    free(ab);
    free(ref);
    check(rank, tested >= 1 && sds_xsum_add_f32_loop("scalar") && !sds_xsum_add_f32_loop("SSE"),
          "the scalar loop runs everywhere, an unknown loop's name gives NULL");

    // too large, infinite, NaN: reported
    float big[3] = {(float)limit, INFINITY, NAN};
    sds_xsum_t accb[1] = {0};
    int flags = 0;
    for (int k = 0; k < 3; k++) flags += sds_xsum_add_f32(accb, big + k, 1, limit);
    check(rank, flags == 3, "a value at the limit, inf and NaN are reported");

    // the conversions: the bits of the long double path they replaced, on random values of
    // every magnitude, with ties and carries forced at both roundings (64 bits, then 24 or 53)
    long bad32 = 0, bad64 = 0;
    for (long t = 0; t < 2000000; t++) {
        const int p = (int)(uniform() * 127.0); // the leading bit
        unsigned __int128 u = (unsigned __int128)next_u64() << 64 | next_u64();
        u &= p == 127 ? ~(unsigned __int128)0 : (((unsigned __int128)1 << (p + 1)) - 1);
        u |= (unsigned __int128)1 << p;
        const int kind = (int)(uniform() * 9.0);
        for (int cut = 1; cut >= 0; cut--) {
            // cut 0: below the long double's 64 bits; cut 1: below the float's or double's.
            // Each: kept random (0), exactly half (1: ties to even), all ones (2: carries).
            const int how = cut == 0 ? kind % 3 : kind / 3;
            const int sh = p - (cut == 0 ? 64 : (t & 1 ? 24 : 53)) + 1;
            if (sh < 1 || how == 0) continue;
            const unsigned __int128 low = ((unsigned __int128)1 << sh) - 1;
            u &= ~low;
            u |= how == 2 ? low : (unsigned __int128)1 << (sh - 1);
        }
        if (u >> 127) u >>= 1; // |a| < 2^127
        const sds_xsum_t a = uniform() < 0.5 ? -(sds_xsum_t)u : (sds_xsum_t)u;
        const long double ref = ldexpl((long double)a, -64);
        const float f_ref = (float)ref;
        const double d_ref = (double)ref;
        float f;
        double d;
        sds_xsum_to_f32(&a, &f, 1);
        sds_xsum_to_f64(&a, &d, 1);
        bad32 += memcmp(&f, &f_ref, sizeof f) != 0;
        bad64 += memcmp(&d, &d_ref, sizeof d) != 0;
    }
    char conv[192];
    snprintf(conv, sizeof conv,
             "to_f32 and to_f64: the long double path's bits (2e6 values, ties and carries "
             "forced; %ld and %ld differ)",
             bad32, bad64);
    check(rank, bad32 == 0 && bad64 == 0, conv);
    const sds_xsum_t zero = 0;
    float fz = 1.0f;
    sds_xsum_to_f32(&zero, &fz, 1);
    check(rank, fz == 0.0f && !signbit(fz), "zero converts to +0");

    free(x);
    free(fw);
    free(bw);
    free(mine);
    free(f);
    MPI_Finalize();
    return failures ? 1 : 0;
}

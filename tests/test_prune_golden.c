// One-shot pruning against the public reference pruners' outputs (shared/golden, see its
// README): statistics, magnitude, Wanda and SparseGPT at 50%, 70%, 2:4 and 4:8 on every file.
//   test_prune_golden GOLDEN_DIR
// Prints OK / NOT OK per check with the numbers, a summary table, and exits 1 on any failure.
//
// Tolerances, and why they are enough:
// - H: |H - H_ref|_ij <= 1e-5 * sqrt(H_ii H_jj). Both sides sum fp32 products of the same
//   inputs (ssyrk here, torch matmul with a running 1/n rescale there); their rounding is
//   ~sqrt(tokens) * 6e-8 ~ 3e-6 of the Cauchy-Schwarz scale sqrt(H_ii H_jj).
// - Wanda statistic: relative 1e-5 per column (sums of squares; exact 0 for dead inputs).
// - Masks compare zero patterns (W_pruned == 0), ours against the reference's.
//   Magnitude: identical, since |W| involves no arithmetic. Wanda with the reference's
//   statistic: identical (fabsf(w) * sqrtf(s) is correctly rounded, so scores are bit-equal);
//   with our own statistic, whose last bits may differ, every disagreement must be a near tie
//   (scores within 1e-5 relative of each other across the row's cut), else it fails.
//   SparseGPT: >= 99.5% (the sweep amplifies rounding: a flip at the threshold changes later
//   updates), and the relative reconstruction error within 1% of the reference's.
// - N:M: counted on our mask (exactly N pruned per group of M). On the weights, each group has
//   at least N zeros, and more only when the group holds a dead input (H_jj == 0): SparseGPT
//   zeroes those columns before pruning and the group's N picks may land elsewhere. The
//   reference output is checked by the same rule.
#define _POSIX_C_SOURCE 200809L
#include "hessian.h"
#include "magnitude.h"
#include "pattern.h"
#include "sds_error.h"
#include "sparsegpt.h"
#include "wanda.h"

#include <cblas.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_util.h"

static double read_attr_f64(hid_t file, const char *obj, const char *attr) {
    double v = NAN;
    hid_t a = H5Aopen_by_name(file, obj, attr, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) {
        fprintf(stderr, "cannot read attribute %s of %s\n", attr, obj);
        exit(2);
    }
    H5Aclose(a);
    return v;
}

// ---- helpers -----------------------------------------------------------------------------

// |X (W - Wp)^T|^2 / |X W^T|^2 from the raw inputs, in double. X (tokens, cols).
static double recon_from_x(const float *X, int64_t tokens, const float *W, const float *Wp,
                           int64_t rows, int64_t cols) {
    double *Xd = xmalloc((size_t)(tokens * cols) * sizeof(double));
    double *A = xmalloc((size_t)(2 * rows * cols) * sizeof(double));
    double *Y = xmalloc((size_t)(tokens * 2 * rows) * sizeof(double));
    for (int64_t i = 0; i < tokens * cols; i++) Xd[i] = X[i];
    for (int64_t i = 0; i < rows * cols; i++) {
        A[i] = (double)W[i] - (double)Wp[i];
        A[rows * cols + i] = W[i];
    }
    // Y (tokens, 2 rows) = X (tokens, cols) * A^T, row-major.
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tokens, (int)(2 * rows), (int)cols,
                1.0, Xd, (int)cols, A, (int)cols, 0.0, Y, (int)(2 * rows));
    double num = 0.0, den = 0.0;
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t r = 0; r < rows; r++) {
            double a = Y[t * 2 * rows + r], b = Y[t * 2 * rows + rows + r];
            num += a * a;
            den += b * b;
        }
    free(Xd);
    free(A);
    free(Y);
    return num / den;
}

typedef struct {
    int64_t groups_bad;   // groups whose pruned count is not exactly N (mask) / < N (zeros)
    int64_t groups_extra; // groups with more than N zeros (weights)
    int64_t extra_nodead; // of those, groups without a dead input
} nm_count;

// Mask count: exactly n flagged per group of m.
static nm_count nm_mask_count(const uint8_t *mask, int64_t rows, int64_t cols, int n, int m) {
    nm_count c = {0, 0, 0};
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j0 = 0; j0 < cols; j0 += m) {
            int z = 0;
            for (int j = 0; j < m; j++) z += mask[r * cols + j0 + j] != 0;
            if (z != n) c.groups_bad++;
        }
    return c;
}

// Zero count on weights: at least n per group; more only where the group holds a dead input.
static nm_count nm_zero_count(const float *Wp, const uint8_t *dead, int64_t rows, int64_t cols,
                              int n, int m) {
    nm_count c = {0, 0, 0};
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j0 = 0; j0 < cols; j0 += m) {
            int z = 0, has_dead = 0;
            for (int j = 0; j < m; j++) {
                z += Wp[r * cols + j0 + j] == 0.0f;
                has_dead |= dead[j0 + j];
            }
            if (z < n) c.groups_bad++;
            if (z > n) {
                c.groups_extra++;
                if (!has_dead) c.extra_nodead++;
            }
        }
    return c;
}

static double zero_agreement(const float *a, const float *b, int64_t n, int64_t *diff) {
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++) same += (a[i] == 0.0f) == (b[i] == 0.0f);
    *diff = n - same;
    return (double)same / (double)n;
}

// Wanda disagreements explained by near ties: for each row with a difference, the scores
// (computed with the reference statistic) of the entries that differ lie within rel of the
// row's cut (the largest pruned score of the reference).
static bool wanda_diffs_are_ties(const float *W, const float *stat_ref, const float *ours,
                                 const float *ref, int64_t rows, int64_t cols, double rel) {
    for (int64_t r = 0; r < rows; r++) {
        float cut = 0.0f;
        for (int64_t j = 0; j < cols; j++) {
            float s = fabsf(W[r * cols + j]) * sqrtf(stat_ref[j]);
            if (ref[r * cols + j] == 0.0f && s > cut) cut = s;
        }
        for (int64_t j = 0; j < cols; j++) {
            if ((ours[r * cols + j] == 0.0f) == (ref[r * cols + j] == 0.0f)) continue;
            float s = fabsf(W[r * cols + j]) * sqrtf(stat_ref[j]);
            if (fabs((double)s - cut) > rel * cut) return false;
        }
    }
    return true;
}

// ---- row-sharded sweep with threads standing in for ranks ----------------------------------

#define SHARDS 3

typedef struct {
    pthread_barrier_t barrier;
    const float *U;
    int64_t cols;
    float *all;             // gathered scores of every shard
    int64_t offset[SHARDS]; // where each shard's scores go
    int64_t count[SHARDS];
    float value;
} shard_world;

typedef struct {
    shard_world *world;
    int id;
    float *W;
    int64_t rows_local, rows_global;
    sds_pattern p;
    uint8_t *mask;
    int rc;
} shard_ctx;

static int shard_panel(void *ctx, int64_t i1, int64_t i2, const float **panel, int64_t *ld) {
    shard_ctx *c = ctx;
    (void)i2;
    *panel = c->world->U + i1 * c->world->cols + i1;
    *ld = c->world->cols;
    return SDS_OK;
}

// Gather, one shard selects, everyone reads: what an MPI_Allgatherv would do.
static int shard_select(void *ctx, const float *scores_local, int64_t n_local, int64_t n_global,
                        int64_t k, float *value) {
    shard_ctx *c = ctx;
    shard_world *w = c->world;
    w->count[c->id] = n_local;
    pthread_barrier_wait(&w->barrier);
    if (c->id == 0) {
        int64_t off = 0;
        for (int s = 0; s < SHARDS; s++) {
            w->offset[s] = off;
            off += w->count[s];
        }
        SDS_ASSERT(off == n_global);
    }
    pthread_barrier_wait(&w->barrier);
    memcpy(w->all + w->offset[c->id], scores_local, (size_t)n_local * sizeof(float));
    pthread_barrier_wait(&w->barrier);
    if (c->id == 0) w->value = sds_select_kth(w->all, n_global, k);
    pthread_barrier_wait(&w->barrier);
    *value = w->value;
    pthread_barrier_wait(&w->barrier);
    return SDS_OK;
}

static void *shard_main(void *arg) {
    shard_ctx *c = arg;
    c->rc = sds_sparsegpt_sweep(c->W, c->rows_local, c->rows_global, c->world->cols, c->p,
                                SDS_SPARSEGPT_BLOCK, shard_panel, shard_select, c, c->mask);
    return NULL;
}

// ---- the checks --------------------------------------------------------------------------

static const char *k_methods[3] = {"magnitude", "wanda", "sparsegpt"};
static const char *k_patterns[4] = {"unstructured50", "unstructured70", "2of4", "4of8"};
static const char *k_sparsity[4] = {"0.5", "0.7", "2:4", "4:8"};

typedef struct {
    char file[32];
    const char *method, *pattern;
    double agree, err_ours, err_ref, err_h, wdiff;
    int64_t diff;
} row_result;

static row_result g_rows[64];
static int g_nrows = 0;

static void check_golden(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        check(false, "%s: cannot open %s", name, path);
        return;
    }
    hsize_t dw[2], dx[3], dh[2], ds[1];
    float *W = read_f32(f, "W", 2, dw);
    float *X = read_f32(f, "X", 3, dx);
    float *Href = read_f32(f, "H", 2, dh);
    float *sref = read_f32(f, "wanda_scaler_row", 1, ds);
    const int64_t rows = (int64_t)dw[0], cols = (int64_t)dw[1];
    const int64_t nseq = (int64_t)dx[0], seqlen = (int64_t)dx[1];
    SDS_ASSERT((int64_t)dx[2] == cols && (int64_t)dh[0] == cols && (int64_t)ds[0] == cols);
    printf("== %s: W (%lld, %lld), X (%lld, %lld, %lld)\n", name, (long long)rows, (long long)cols,
           (long long)nseq, (long long)seqlen, (long long)cols);

    // Statistics, added in two calls (first sequence, then the rest) to exercise accumulation.
    sds_hessian hs;
    int rc = sds_hessian_init(&hs, cols, SDS_HESSIAN_GRAM | SDS_HESSIAN_WANDA);
    if (rc == SDS_OK) rc = sds_hessian_add(&hs, X, 1, seqlen);
    if (rc == SDS_OK) rc = sds_hessian_add(&hs, X + seqlen * cols, nseq - 1, seqlen);
    if (rc == SDS_OK) rc = sds_hessian_finish(&hs);
    if (rc != SDS_OK) {
        check(false, "%s: statistics: %s", name, sds_error_message());
        exit(1);
    }
    double hmax = 0.0;
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = 0; j < cols; j++) {
            double scale = sqrt((double)Href[i * cols + i] * Href[j * cols + j]);
            double d = fabs((double)hs.H[i * cols + j] - Href[i * cols + j]);
            double e = scale > 0.0 ? d / scale : (d > 0.0 ? INFINITY : 0.0);
            if (e > hmax) hmax = e;
        }
    check(hmax <= 1e-5,
          "%s: H equals the reference: max |dH_ij| / sqrt(H_ii H_jj) = %.2e (<= 1e-5)", name, hmax);
    double smax = 0.0;
    uint8_t *dead = xmalloc((size_t)cols);
    int64_t ndead = 0;
    for (int64_t j = 0; j < cols; j++) {
        double d = fabs((double)hs.wanda[j] - sref[j]);
        double e = sref[j] > 0.0f ? d / sref[j] : (d > 0.0 ? INFINITY : 0.0);
        if (e > smax) smax = e;
        dead[j] = Href[j * cols + j] == 0.0f;
        ndead += dead[j];
    }
    printf("       %s: %lld dead input(s) (H_jj == 0)\n", name, (long long)ndead);
    check(smax <= 1e-5,
          "%s: Wanda statistic equals wanda_scaler_row: max relative diff %.2e "
          "(<= 1e-5)",
          name, smax);

    const int64_t numel = rows * cols;
    float *Wp = xmalloc((size_t)numel * sizeof(float));
    float *Wq = xmalloc((size_t)numel * sizeof(float));
    float *Hw = xmalloc((size_t)(cols * cols) * sizeof(float));
    uint8_t *mask = xmalloc((size_t)numel);
    uint8_t *mask2 = xmalloc((size_t)numel);
    for (int mi = 0; mi < 3; mi++) {
        for (int pi = 0; pi < 4; pi++) {
            const char *method = k_methods[mi], *pname = k_patterns[pi];
            char label[128], obj[64];
            snprintf(label, sizeof label, "%s %s %s", name, method, pname);
            snprintf(obj, sizeof obj, "%s/%s", method, pname);
            sds_pattern p;
            if (sds_pattern_parse(k_sparsity[pi], &p) != SDS_OK) {
                check(false, "%s: parse %s: %s", label, k_sparsity[pi], sds_error_message());
                continue;
            }
            hsize_t dr[2];
            float *ref = read_f32(f, obj, 2, dr);
            const double err_ref = read_attr_f64(f, obj, "rel_recon_err");
            memcpy(Wp, W, (size_t)numel * sizeof(float));
            sds_sparsegpt_info info = {0};
            if (mi == 0) {
                rc = sds_magnitude_prune(Wp, rows, rows, cols, p, NULL, NULL, mask);
            } else if (mi == 1) {
                rc = sds_wanda_prune(Wp, rows, cols, hs.wanda, p, mask);
            } else {
                memcpy(Hw, hs.H, (size_t)(cols * cols) * sizeof(float));
                rc = sds_sparsegpt_prune(Wp, rows, cols, Hw, p, &info, mask);
            }
            if (rc != SDS_OK) {
                check(false, "%s: pruning failed: %s", label, sds_error_message());
                sds_error_clear();
                free(ref);
                continue;
            }
            if (mi == 2)
                printf("       %s: damping %.3g x mean(diag H) = %.4g, %d attempt(s), %lld dead "
                       "input(s)\n",
                       label, info.percdamp, info.damp, info.tries, (long long)info.dead);

            // Pattern shape.
            if (p.kind == SDS_PATTERN_NM) {
                nm_count cm = nm_mask_count(mask, rows, cols, p.n, p.m);
                check(cm.groups_bad == 0,
                      "%s: mask has exactly %d pruned in each group of %d "
                      "(%lld groups off)",
                      label, p.n, p.m, (long long)cm.groups_bad);
                nm_count cz = nm_zero_count(Wp, dead, rows, cols, p.n, p.m);
                check(cz.groups_bad == 0 && cz.extra_nodead == 0,
                      "%s: weights have >= %d zeros per group, more only with a dead input "
                      "(%lld short, %lld with more zeros, %lld of them without a dead input)",
                      label, p.n, (long long)cz.groups_bad, (long long)cz.groups_extra,
                      (long long)cz.extra_nodead);
                nm_count cr = nm_zero_count(ref, dead, rows, cols, p.n, p.m);
                check(cr.groups_bad == 0 && cr.extra_nodead == 0,
                      "%s: reference, same count (%lld short, %lld with more zeros, %lld "
                      "without a dead input)",
                      label, (long long)cr.groups_bad, (long long)cr.groups_extra,
                      (long long)cr.extra_nodead);
            } else if (mi == 1) {
                const int64_t k = (int64_t)((double)cols * p.p);
                int64_t bad = 0;
                for (int64_t r = 0; r < rows; r++) {
                    int64_t z = 0;
                    for (int64_t j = 0; j < cols; j++) z += mask[r * cols + j];
                    bad += z != k;
                }
                check(bad == 0, "%s: every row has floor(cols*p) = %lld pruned (%lld rows off)",
                      label, (long long)k, (long long)bad);
            } else {
                // At least floor(n*p)+1 per threshold unit (matrix / block): ties prune more.
                const int64_t unit = mi == 0 ? cols : SDS_SPARSEGPT_BLOCK;
                int64_t bad = 0;
                for (int64_t i1 = 0; i1 < cols; i1 += unit) {
                    int64_t c = i1 + unit < cols ? unit : cols - i1, z = 0;
                    for (int64_t r = 0; r < rows; r++)
                        for (int64_t j = i1; j < i1 + c; j++) z += mask[r * cols + j];
                    bad += z < sds_pattern_kth(rows * c, p.p) + 1;
                }
                check(bad == 0, "%s: each %s has at least floor(n*p)+1 pruned (%lld short)", label,
                      mi == 0 ? "matrix" : "block", (long long)bad);
            }

            // Masks against the reference.
            int64_t diff = 0;
            double agree = zero_agreement(Wp, ref, numel, &diff);
            if (mi == 0) {
                check(diff == 0, "%s: mask identical to the reference (%lld differ)", label,
                      (long long)diff);
            } else if (mi == 1) {
                bool ties = diff == 0 || wanda_diffs_are_ties(W, sref, Wp, ref, rows, cols, 1e-5);
                check(ties, "%s: mask identical to the reference except near ties (%lld differ)",
                      label, (long long)diff);
                memcpy(Wq, W, (size_t)numel * sizeof(float));
                rc = sds_wanda_prune(Wq, rows, cols, sref, p, mask2);
                int64_t diff2 = 0;
                zero_agreement(Wq, ref, numel, &diff2);
                check(rc == SDS_OK && diff2 == 0,
                      "%s: with the reference statistic, mask identical (%lld differ)", label,
                      (long long)diff2);
            } else {
                check(agree >= 0.995, "%s: mask agreement %.4f%% (%lld differ; >= 99.5%%)", label,
                      100.0 * agree, (long long)diff);
            }
            // Updated weights: informative (the order of fp32 operations differs).
            double wdiff = 0.0, wref = 0.0;
            for (int64_t i = 0; i < numel; i++) {
                double d = fabs((double)Wp[i] - ref[i]);
                if (d > wdiff) wdiff = d;
                if (fabs(ref[i]) > wref) wref = fabs(ref[i]);
            }
            wdiff = wref > 0.0 ? wdiff / wref : wdiff;
            if (mi == 2) printf("       %s: max |W - W_ref| / max |W_ref| = %.2e\n", label, wdiff);

            // Reconstruction error.
            double err_x = recon_from_x(X, nseq * seqlen, W, Wp, rows, cols);
            double err_h = 0.0;
            sds_hessian_recon_error(hs.H, cols, W, Wp, rows, &err_h);
            double rel = fabs(err_x - err_ref) / err_ref;
            double tol = mi == 2 ? 0.01 : 1e-4;
            check(rel <= tol, "%s: recon error %.6g vs reference %.6g (relative %.2e <= %.0e)",
                  label, err_x, err_ref, rel, tol);
            double rel_h = fabs(err_h - err_x) / err_x;
            check(rel_h <= 1e-4,
                  "%s: recon error from H %.6g vs from X %.6g (relative %.2e <= 1e-4)", label,
                  err_h, err_x, rel_h);

            if (mi == 2 && pi == 0) {
                // Row-sharded sweep (3 shards, threads for ranks) equals the single process.
                memcpy(Hw, hs.H, (size_t)(cols * cols) * sizeof(float));
                memcpy(Wq, W, (size_t)numel * sizeof(float));
                sds_sparsegpt_prepare(Hw, cols, Wq, rows, SDS_SPARSEGPT_PERCDAMP,
                                      SDS_SPARSEGPT_MAX_TRIES, NULL);
                for (int pj = 0; pj < 4; pj++) {
                    sds_pattern q;
                    sds_pattern_parse(k_sparsity[pj], &q);
                    float *Ws = xmalloc((size_t)numel * sizeof(float));
                    memcpy(Ws, Wq, (size_t)numel * sizeof(float));
                    float *W1 = xmalloc((size_t)numel * sizeof(float));
                    memcpy(W1, Wq, (size_t)numel * sizeof(float));
                    sds_sparsegpt_local lc = {.U = Hw, .cols = cols};
                    int rc1 = sds_sparsegpt_sweep(W1, rows, rows, cols, q, SDS_SPARSEGPT_BLOCK,
                                                  sds_sparsegpt_panel_local,
                                                  sds_sparsegpt_select_local, &lc, mask);
                    shard_world world = {.U = Hw, .cols = cols};
                    world.all = xmalloc((size_t)(rows * SDS_SPARSEGPT_BLOCK) * sizeof(float));
                    pthread_barrier_init(&world.barrier, NULL, SHARDS);
                    shard_ctx sc[SHARDS];
                    pthread_t th[SHARDS];
                    // Uneven shards, one of them empty when rows allow: 0, rows/3, rest.
                    int64_t start[SHARDS + 1] = {0, 0, rows / 3, rows};
                    for (int s = 0; s < SHARDS; s++) {
                        sc[s] = (shard_ctx){.world = &world,
                                            .id = s,
                                            .W = Ws + start[s] * cols,
                                            .rows_local = start[s + 1] - start[s],
                                            .rows_global = rows,
                                            .p = q,
                                            .mask = mask2 + start[s] * cols};
                        pthread_create(&th[s], NULL, shard_main, &sc[s]);
                    }
                    int rcs = SDS_OK;
                    for (int s = 0; s < SHARDS; s++) {
                        pthread_join(th[s], NULL);
                        if (sc[s].rc != SDS_OK) rcs = sc[s].rc;
                    }
                    pthread_barrier_destroy(&world.barrier);
                    free(world.all);
                    int64_t mdiff = 0;
                    double wmax = 0.0;
                    for (int64_t i = 0; i < numel; i++) {
                        mdiff += mask[i] != mask2[i];
                        double d = fabs((double)W1[i] - Ws[i]);
                        if (d > wmax) wmax = d;
                    }
                    check(rc1 == SDS_OK && rcs == SDS_OK && mdiff == 0 && wmax <= 1e-6,
                          "%s sparsegpt %s: 3 row shards (0, %lld, %lld rows) equal one "
                          "process: %lld mask entries differ, max |dW| %.1e (<= 1e-6)",
                          name, k_patterns[pj], (long long)(start[2] - start[1]),
                          (long long)(start[3] - start[2]), (long long)mdiff, wmax);
                    free(Ws);
                    free(W1);
                }
            }

            row_result *rr = &g_rows[g_nrows++];
            snprintf(rr->file, sizeof rr->file, "%s", name);
            rr->method = method;
            rr->pattern = pname;
            rr->agree = agree;
            rr->diff = diff;
            rr->err_ours = err_x;
            rr->err_h = err_h;
            rr->err_ref = err_ref;
            rr->wdiff = wdiff;
            free(ref);
        }
    }
    free(W);
    free(X);
    free(Href);
    free(sref);
    free(dead);
    free(Wp);
    free(Wq);
    free(Hw);
    free(mask);
    free(mask2);
    sds_hessian_free(&hs);
    H5Fclose(f);
}

// ---- the blocked sweep against a literal, unblocked transcription of SPEC 2.5 ------------------

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Fills a[0..n) with uniform values in [-0.5, 0.5) from the LCG state *s.
static void fill_lcg(float *a, int64_t n, uint64_t *s) {
    for (int64_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        a[i] = (float)((double)(*s >> 11) / 9007199254740992.0 - 0.5);
    }
}

// SPEC 2.5 step 4 as written: column by column, every in-block update at once, one lazy update
// per block. U (cols, cols) row-major upper. Prunes W in place, mask 1 = pruned.
static void naive_sweep(float *W, int64_t rows, int64_t cols, const float *U, sds_pattern p,
                        uint8_t *mask) {
    const int64_t B = SDS_SPARSEGPT_BLOCK;
    float *E = xmalloc((size_t)(rows * B) * sizeof(float));
    float *sc = xmalloc((size_t)(rows * B) * sizeof(float));
    memset(mask, 0, (size_t)(rows * cols));
    for (int64_t i1 = 0; i1 < cols; i1 += B) {
        const int64_t i2 = i1 + B < cols ? i1 + B : cols, count = i2 - i1;
        if (p.kind == SDS_PATTERN_UNSTRUCTURED) {
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = i1; j < i2; j++) {
                    float w = W[r * cols + j], d = U[j * cols + j];
                    sc[r * count + j - i1] = (w * w) / (d * d);
                }
            qsort(sc, (size_t)(rows * count), sizeof(float), cmp_float);
            float t = sc[(int64_t)((double)(rows * count) * p.p)];
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = i1; j < i2; j++) {
                    float w = W[r * cols + j], d = U[j * cols + j];
                    mask[r * cols + j] = (w * w) / (d * d) <= t;
                }
        }
        for (int64_t j = i1; j < i2; j++) {
            for (int64_t r = 0; r < rows; r++) {
                float *w = W + r * cols;
                if (p.kind == SDS_PATTERN_NM && (j - i1) % p.m == 0) {
                    float g[SDS_PATTERN_MAX_M];
                    for (int c = 0; c < p.m; c++) {
                        float d = U[(j + c) * cols + j + c];
                        g[c] = (w[j + c] * w[j + c]) / (d * d);
                    }
                    sds_pattern_nm_group(g, p.n, p.m, mask + r * cols + j);
                }
                float q = mask[r * cols + j] ? 0.0f : w[j];
                float err = (w[j] - q) / U[j * cols + j];
                for (int64_t c = j; c < i2; c++) w[c] -= err * U[j * cols + c];
                w[j] = q;
                E[r * count + j - i1] = err;
            }
        }
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = i2; c < cols; c++) {
                double s = 0.0;
                for (int64_t t = 0; t < count; t++)
                    s += (double)E[r * count + t] * U[(i1 + t) * cols + c];
                W[r * cols + c] -= (float)s;
            }
    }
    free(E);
    free(sc);
}

// Shapes the golden files lack: a partial last block, sub-blocks shorter than 32, and N:M
// groups wider than 32 (4:64). Masks: >= 99.5% equal; weights within 1e-5 of max |W|: the
// same fp32 operations in another order (~4e-7 seen).
static void check_blocked_sweep(void) {
    const char *pats[4] = {"0.5", "0.7", "2:4", "4:64"};
    const int64_t rows = 40, tokens = 400;
    for (int pi = 0; pi < 4; pi++) {
        sds_pattern p;
        sds_pattern_parse(pats[pi], &p);
        const int64_t cols = p.kind == SDS_PATTERN_NM ? 320 : 300;
        float *X = xmalloc((size_t)(tokens * cols) * sizeof(float));
        float *W = xmalloc((size_t)(rows * cols) * sizeof(float));
        uint64_t s = 12345 + (uint64_t)pi;
        fill_lcg(X, tokens * cols, &s);
        fill_lcg(W, rows * cols, &s);
        sds_hessian h;
        sds_hessian_init(&h, cols, SDS_HESSIAN_GRAM);
        sds_hessian_add(&h, X, 1, tokens);
        sds_hessian_finish(&h);
        float *Hk = xmalloc((size_t)(cols * cols) * sizeof(float));
        memcpy(Hk, h.H, (size_t)(cols * cols) * sizeof(float));
        int rc = sds_sparsegpt_prepare(Hk, cols, W, rows, SDS_SPARSEGPT_PERCDAMP,
                                       SDS_SPARSEGPT_MAX_TRIES, NULL);
        float *Wa = xmalloc((size_t)(rows * cols) * sizeof(float));
        float *Wb = xmalloc((size_t)(rows * cols) * sizeof(float));
        uint8_t *ma = xmalloc((size_t)(rows * cols)), *mb = xmalloc((size_t)(rows * cols));
        memcpy(Wa, W, (size_t)(rows * cols) * sizeof(float));
        memcpy(Wb, W, (size_t)(rows * cols) * sizeof(float));
        sds_sparsegpt_local lc = {.U = Hk, .cols = cols};
        if (rc == SDS_OK)
            rc =
                sds_sparsegpt_sweep(Wa, rows, rows, cols, p, SDS_SPARSEGPT_BLOCK,
                                    sds_sparsegpt_panel_local, sds_sparsegpt_select_local, &lc, ma);
        naive_sweep(Wb, rows, cols, Hk, p, mb);
        int64_t diff = 0;
        double dmax = 0.0, wmax = 0.0;
        for (int64_t i = 0; i < rows * cols; i++) {
            diff += ma[i] != mb[i];
            if (fabs((double)Wa[i] - Wb[i]) > dmax) dmax = fabs((double)Wa[i] - Wb[i]);
            if (fabs(Wb[i]) > wmax) wmax = fabs(Wb[i]);
        }
        double agree = 1.0 - (double)diff / (double)(rows * cols);
        check(rc == SDS_OK && agree >= 0.995 && dmax <= 1e-5 * wmax,
              "blocked sweep = SPEC 2.5 as written, %lld x %lld, %s: mask agreement %.3f%%, "
              "max |dW| / max |W| %.1e (<= 1e-5)",
              (long long)rows, (long long)cols, pats[pi], 100.0 * agree, dmax / wmax);
        sds_hessian_free(&h);
        free(X);
        free(W);
        free(Hk);
        free(Wa);
        free(Wb);
        free(ma);
        free(mb);
    }
}

// The sweep's row chunks (one per BLAS thread, src/sparsegpt.c): 1, 2, 3 and 5 threads give
// the same weights and masks bit for bit, with row counts that leave short and uneven chunks
// (below two SDS_SPARSEGPT_ROW_ALIGN-row groups a thread, and a remainder that is not a
// multiple of it).
static void check_sweep_threads(void) {
    const char *pats[3] = {"0.5", "2:4", "4:8"};
    const int64_t rows_list[3] = {1000, 457, 390}, cols = 384, tokens = 512;
    const int threads[4] = {1, 2, 3, 5};
    const int saved = openblas_get_num_threads();
    float *X = xmalloc((size_t)(tokens * cols) * sizeof(float));
    uint64_t s = 777;
    fill_lcg(X, tokens * cols, &s);
    sds_hessian h;
    sds_hessian_init(&h, cols, SDS_HESSIAN_GRAM);
    sds_hessian_add(&h, X, 1, tokens);
    sds_hessian_finish(&h);
    for (int ri = 0; ri < 3; ri++)
        for (int pi = 0; pi < 3; pi++) {
            const int64_t rows = rows_list[ri], n = rows * cols;
            sds_pattern p;
            sds_pattern_parse(pats[pi], &p);
            float *W0 = xmalloc((size_t)n * sizeof(float)),
                  *Wt = xmalloc((size_t)n * sizeof(float));
            float *Hk = xmalloc((size_t)(cols * cols) * sizeof(float));
            uint8_t *m0 = xmalloc((size_t)n), *mt = xmalloc((size_t)n);
            fill_lcg(W0, n, &s);
            int64_t worst = 0;
            float *Wref = xmalloc((size_t)n * sizeof(float));
            // the factor once (LAPACK's threads may round it otherwise), then the sweeps
            memcpy(Hk, h.H, (size_t)(cols * cols) * sizeof(float));
            int rc = sds_sparsegpt_prepare(Hk, cols, W0, rows, SDS_SPARSEGPT_PERCDAMP,
                                           SDS_SPARSEGPT_MAX_TRIES, NULL);
            sds_sparsegpt_local lc = {.U = Hk, .cols = cols};
            for (int ti = 0; ti < 4 && rc == SDS_OK; ti++) {
                openblas_set_num_threads(threads[ti]);
                memcpy(Wt, W0, (size_t)n * sizeof(float));
                rc = sds_sparsegpt_sweep(Wt, rows, rows, cols, p, SDS_SPARSEGPT_BLOCK,
                                         sds_sparsegpt_panel_local, sds_sparsegpt_select_local, &lc,
                                         ti ? mt : m0);
                if (ti == 0) {
                    memcpy(Wref, Wt, (size_t)n * sizeof(float));
                    continue;
                }
                int64_t d = 0;
                for (int64_t i = 0; i < n; i++)
                    d += memcmp(&Wt[i], &Wref[i], sizeof(float)) != 0 || mt[i] != m0[i];
                if (d > worst) worst = d;
            }
            openblas_set_num_threads(saved);
            check(rc == SDS_OK && worst == 0,
                  "SparseGPT sweep, %lld x %lld, %s: 2, 3 and 5 threads' row chunks equal 1 "
                  "thread bit for bit (worst %lld of %lld weights or mask entries differ)",
                  (long long)rows, (long long)cols, pats[pi], (long long)worst, (long long)n);
            free(W0);
            free(Wt);
            free(Wref);
            free(Hk);
            free(m0);
            free(mt);
        }
    sds_hessian_free(&h);
    free(X);
}

// ---- pattern parsing and the damping retry -----------------------------------------------

static void check_parse_error(const char *text) {
    sds_pattern p;
    int rc = sds_pattern_parse(text, &p);
    const char *msg = sds_error_message();
    check(rc == SDS_ERR_USAGE && strstr(msg, "--sparsity") != NULL,
          "--sparsity \"%s\" rejected: \"%s\"", text, msg);
    sds_error_clear();
}

static void check_patterns(void) {
    const char *good[4] = {"0.5", "0.7", "2:4", "4:8"};
    for (int i = 0; i < 4; i++) {
        sds_pattern p;
        int rc = sds_pattern_parse(good[i], &p);
        char back[32];
        sds_pattern_format(p, back, sizeof back);
        check(rc == SDS_OK && strcmp(back, good[i]) == 0, "--sparsity %s parses (%s)", good[i],
              back);
    }
    const char *bad[] = {"",    "abc", "0",   "1",  "1.5", "-0.5",  "0.5x",  "nan",
                         "4:4", "0:4", "5:4", "2:", ":4",  "2:4:8", "2.0:4", "2:1000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) check_parse_error(bad[i]);
    sds_pattern p;
    sds_pattern_parse("2:4", &p);
    int rc = sds_pattern_check(p, 4, 6, "model.decoder.layers.0.fc1");
    check(rc == SDS_ERR_USAGE && strstr(sds_error_message(), "--sparsity") &&
              strstr(sds_error_message(), "fc1"),
          "2:4 on 6 columns rejected: \"%s\"", sds_error_message());
    sds_error_clear();
}

// The N:M selection as first written: n rounds, each flagging the first smallest unflagged.
static void nm_group_reference(const float *s, int32_t n, int32_t m, uint8_t *mask) {
    for (int32_t j = 0; j < m; j++) mask[j] = 0;
    for (int32_t t = 0; t < n; t++) {
        int32_t best = -1;
        for (int32_t j = 0; j < m; j++)
            if (!mask[j] && (best < 0 || s[j] < s[best])) best = j;
        mask[best] = 1;
    }
}

// sds_pattern_nm_group (comparison ranks) flags exactly what the reference loop flags, for
// every N:M with M in {2, 4, 8, 16} on 200,000 groups each of values drawn from a small set, so
// that ties are common, with -0 and +0, infinities and (1 in 50 groups) NaN; and
// sds_pattern_apply leaves +0.0 exactly where the mask is set, every other bit pattern as it was.
static void check_nm_selection(void) {
    const float vals[8] = {0.5f, -0.0f, 0.0f, 1.0f, 0.25f, INFINITY, 3.0f, 1e-30f};
    uint64_t st = 12345;
    int64_t groups = 0, differ = 0, nan_groups = 0, fast_off = 0;
    const int32_t ms[4] = {2, 4, 8, 16};
    for (int k = 0; k < 4; k++)
        for (int32_t n = 1; n < ms[k]; n++)
            for (int g = 0; g < 200000 / (ms[k] - 1); g++) {
                float sc[SDS_PATTERN_MAX_M];
                uint8_t a[SDS_PATTERN_MAX_M], b[SDS_PATTERN_MAX_M];
                const int with_nan = g % 50 == 0;
                for (int32_t j = 0; j < ms[k]; j++) {
                    st = st * 6364136223846793005ull + 1442695040888963407ull;
                    sc[j] = vals[(st >> 33) % 8] * (float)(1 + (st >> 40) % 3);
                }
                if (with_nan) sc[(st >> 20) % (uint64_t)ms[k]] = NAN;
                sds_pattern_nm_group(sc, n, ms[k], a);
                nm_group_reference(sc, n, ms[k], b);
                differ += memcmp(a, b, (size_t)ms[k]) != 0;
                // the fast path alone: exactly n flagged, the same ones, whenever no NaN
                if (!with_nan)
                    fast_off += sds_pattern_nm_by_rank(sc, n, ms[k], a) != n ||
                                memcmp(a, b, (size_t)ms[k]) != 0;
                nan_groups += with_nan;
                groups++;
            }
    check(differ == 0 && fast_off == 0,
          "N:M selection: %lld of %lld groups differ from the reference loop (%lld with a NaN); "
          "the comparison ranks alone differ in %lld of those without",
          (long long)differ, (long long)groups, (long long)nan_groups, (long long)fast_off);
    float w[6] = {-1.5f, -0.0f, 2.0f, -3.0f, NAN, INFINITY};
    const uint8_t mk[6] = {1, 1, 0, 1, 1, 0};
    sds_pattern_apply(w, mk, 6);
    const int ok = !signbit(w[0]) && w[0] == 0.0f && !signbit(w[1]) && w[2] == 2.0f &&
                   !signbit(w[3]) && w[3] == 0.0f && !signbit(w[4]) && w[4] == 0.0f && isinf(w[5]);
    check(ok, "mask applied: +0.0 where masked (also over -0, negatives and NaN), the rest kept");
}

// The radix select against the quickselect: the same k-th smallest (as a float) at every size
// and rank tried, over negatives, zeros of both signs, infinities, subnormals and ties, and the
// input left as it was.
static void check_kth_select(void) {
    const float special[8] = {-0.0f, 0.0f, INFINITY, -INFINITY, 1e-40f, -1e-40f, 1.0f, -2.5f};
    const int64_t sizes[7] = {1, 2, 3, 7, 100, 4097, 100003};
    uint64_t st = 4242;
    int64_t cases = 0, wrong = 0, moved = 0;
    for (int si = 0; si < 7; si++)
        for (int mix = 0; mix < 3; mix++) {
            const int64_t n = sizes[si];
            float *a = xmalloc((size_t)n * sizeof(float)), *b = xmalloc((size_t)n * sizeof(float));
            fill_lcg(a, n, &st);
            for (int64_t i = 0; i < n; i++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                // mix 0: distinct values; 1: some specials; 2: mostly ties
                if (mix == 1 && (st >> 60) < 4) a[i] = special[(st >> 40) % 8];
                if (mix == 2) a[i] = special[(st >> 40) % 8] * (float)(1 + (st >> 20) % 2);
            }
            const int64_t ks[4] = {0, n - 1, n / 2, (int64_t)(st % (uint64_t)n)};
            for (int ki = 0; ki < 4; ki++) {
                memcpy(b, a, (size_t)n * sizeof(float));
                const float want = sds_select_kth(b, n, ks[ki]);
                memcpy(b, a, (size_t)n * sizeof(float));
                const float got = sds_kth_smallest(b, n, ks[ki]);
                wrong += !(got == want);
                moved += memcmp(a, b, (size_t)n * sizeof(float)) != 0;
                cases++;
            }
            free(a);
            free(b);
        }
    check(wrong == 0 && moved == 0,
          "radix select: the quickselect's k-th smallest in %lld of %lld cases, the input "
          "unchanged in %lld",
          (long long)(cases - wrong), (long long)cases, (long long)(cases - moved));
}

// H = [[1, 2], [2, 1]] is indefinite: damping 0.01, 0.1 and 1 x mean(diag) = 1 fail, 10 works.
static void check_damping_retry(void) {
    float H[4] = {1.0f, 2.0f, 2.0f, 1.0f};
    sds_sparsegpt_info info = {0};
    int rc = sds_sparsegpt_factor(H, 2, 0.01, SDS_SPARSEGPT_MAX_TRIES, &info);
    // U^T U must equal (H + 10 I)^-1 = [[11, 2], [2, 11]]^-1 = [[11, -2], [-2, 11]] / 117.
    double a = H[0], b = H[1], c = H[3];
    double m00 = a * a, m01 = a * b, m11 = b * b + c * c;
    double e = fabs(m00 - 11.0 / 117) + fabs(m01 + 2.0 / 117) + fabs(m11 - 11.0 / 117);
    check(rc == SDS_OK && info.tries == 4 && fabs(info.percdamp - 10.0) < 1e-9 && e < 1e-6 &&
              H[2] == 0.0f,
          "damping retry: %d attempts, percdamp %g, |U^T U - (H + damp I)^-1| = %.1e", info.tries,
          info.percdamp, e);
    float H2[4] = {1.0f, 2.0f, 2.0f, 1.0f};
    rc = sds_sparsegpt_factor(H2, 2, 0.01, 2, &info);
    check(rc == SDS_ERR_NUMERIC && strstr(sds_error_message(), "Cholesky"),
          "damping retry gives up after the limit: \"%s\"", sds_error_message());
    sds_error_clear();
}

// Batches (sds_hessian_batch, for ranks with several BLAS threads): k sequences' Grams at once,
// one per thread, must give the very bits of one at a time, whatever k against the sequence
// count (waiting sequences flushed at the end), with sequences of different lengths; a NaN in a
// sequence still waiting is reported by the flush; SDS_GRAM_BATCH's parsing.
static void check_hessian_batch(void) {
    const int64_t cols = 150, tokens[7] = {37, 64, 5, 0, 64, 100, 1};
    const int nseq = 7;
    int64_t total = 0;
    for (int s = 0; s < nseq; s++) total += tokens[s];
    float *X = malloc((size_t)(total * cols) * sizeof(float));
    uint64_t st = 99;
    fill_lcg(X, total * cols, &st);
    float *ref = malloc((size_t)(cols * cols) * sizeof(float));
    float wref[150];
    const int ks[] = {1, 2, 4, 16};
    for (size_t q = 0; q < sizeof ks / sizeof ks[0]; q++) {
        const int k = ks[q];
        sds_hessian h;
        int rc = sds_hessian_init(&h, cols, SDS_HESSIAN_GRAM | SDS_HESSIAN_WANDA);
        if (rc == SDS_OK && k > 1) rc = sds_hessian_batch(&h, 100, k);
        const float *x = X;
        for (int s = 0; s < nseq && rc == SDS_OK; s++) {
            rc = sds_hessian_add(&h, x, 1, tokens[s]);
            x += tokens[s] * cols;
        }
        const int waiting = h.npend;
        if (rc == SDS_OK) rc = sds_hessian_flush(&h);
        if (rc == SDS_OK) rc = sds_hessian_finish(&h);
        if (k == 1 && rc == SDS_OK) {
            memcpy(ref, h.H, (size_t)(cols * cols) * sizeof(float));
            memcpy(wref, h.wanda, sizeof wref);
        }
        const bool same = rc == SDS_OK &&
                          !memcmp(ref, h.H, (size_t)(cols * cols) * sizeof(float)) &&
                          !memcmp(wref, h.wanda, sizeof wref);
        check(same && h.batch == (k > 1 ? k : 0),
              "Hessian in batches of %d (%d sequences of 37/64/5/0/64/100/1 tokens, %d waiting "
              "for the flush): H and the Wanda statistic the same bits as one at a time",
              k, nseq, waiting);
        sds_hessian_free(&h);
    }
    // a NaN in the last sequence, still waiting when the adds end
    sds_hessian h;
    int rc = sds_hessian_init(&h, cols, SDS_HESSIAN_GRAM);
    if (rc == SDS_OK) rc = sds_hessian_batch(&h, 64, 4);
    X[5] = NAN;
    for (int s = 0; s < 3 && rc == SDS_OK; s++)
        rc = sds_hessian_add(&h, X + 64 * cols * (2 - s), 1, 64);
    const int added = rc;
    sds_error_clear();
    rc = sds_hessian_flush(&h);
    check(added == SDS_OK && rc == SDS_ERR_NUMERIC && strstr(sds_error_message(), "not finite"),
          "a NaN in a sequence waiting for its batch: the flush reports \"%s\"",
          sds_error_message());
    sds_error_clear();
    sds_hessian_free(&h);
    free(X);
    free(ref);

    // wider than SDS_HESSIAN_BATCH_MAX_COLS: not batched (no k - 1 more matrices)
    sds_hessian wide;
    rc = sds_hessian_init(&wide, SDS_HESSIAN_BATCH_MAX_COLS + 1, SDS_HESSIAN_GRAM);
    if (rc == SDS_OK) rc = sds_hessian_batch(&wide, 64, 4);
    check(rc == SDS_OK && wide.batch == 0 && !wide.Hx && !wide.pend,
          "a Gram %d columns wide is not batched", SDS_HESSIAN_BATCH_MAX_COLS + 1);
    sds_hessian_free(&wide);

    int32_t k = 0;
    bool ok = sds_hessian_batch_size(NULL, 4, &k) == SDS_OK && k == 4;
    ok = ok && sds_hessian_batch_size(NULL, 64, &k) == SDS_OK && k == SDS_HESSIAN_MAX_BATCH;
    ok = ok && sds_hessian_batch_size("3", 1, &k) == SDS_OK && k == 3;
    ok = ok && sds_hessian_batch_size("1", 8, &k) == SDS_OK && k == 1;
    const char *bad[] = {"0", "17", "x", "2a", "", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sds_error_clear();
        ok = ok && sds_hessian_batch_size(bad[i], 2, &k) == SDS_ERR_USAGE &&
             strstr(sds_error_message(), "SDS_GRAM_BATCH") != NULL;
    }
    check(ok,
          "SDS_GRAM_BATCH: unset gives the BLAS threads (at most %d), 1 to %d taken, "
          "0 / 17 / x / 2a / empty / -1 refused naming the variable",
          SDS_HESSIAN_MAX_BATCH, SDS_HESSIAN_MAX_BATCH);
    sds_error_clear();
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    check_patterns();
    check_nm_selection();
    check_kth_select();
    check_damping_retry();
    check_blocked_sweep();
    check_sweep_threads();
    check_hessian_batch();
    const char *files[3] = {"small.h5", "outliers.h5", "rankdef.h5"};
    for (int i = 0; i < 3; i++) check_golden(argv[1], files[i]);

    printf("\n| file | method | pattern | zero pattern agreement | differ | recon err ours (X) | "
           "ours (H) | reference | rel diff | max dW / max W |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < g_nrows; i++) {
        row_result *r = &g_rows[i];
        printf("| %s | %s | %s | %.3f%% | %lld | %.6f | %.6f | %.6f | %+.2e | %.1e |\n", r->file,
               r->method, r->pattern, 100.0 * r->agree, (long long)r->diff, r->err_ours, r->err_h,
               r->err_ref, (r->err_ours - r->err_ref) / r->err_ref, r->wdiff);
    }
    printf("\n%s: %d check(s) failed\n", g_failures ? "FAILED" : "PASSED", g_failures);
    return g_failures ? 1 : 0;
}

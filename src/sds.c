#include "sds.h"

#include "magnitude.h"
#include "sds_error.h"
#include "sparsegpt.h"
#include "wanda.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// LAPACK (Fortran, column-major); the trailing size_t is gfortran's hidden length of `uplo`.
extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);
extern void spotrs_(const char *uplo, const int *n, const int *nrhs, const float *a, const int *lda,
                    float *b, const int *ldb, int *info, size_t uplo_len);

void sds_sds_defaults(sds_sds_opts *o) {
    memset(o, 0, sizeof *o);
    o->base = SDS_BASE_SPARSEGPT;
    o->target = SDS_TARGET_DENSE;
    o->solver = SDS_SOLVER_RIDGE;
    o->iters = 200;
    o->lr = 1.0;
    o->l1 = 0.0;
    o->l2 = 0.0;
    o->adjust_iters = 10;
    o->adjust_lr = 1.0;
    o->adjust_nesterov = 1;
    o->early_exit = 0;
    o->redense = 1;
    o->mix = 0.3;
    o->percdamp = SDS_SPARSEGPT_PERCDAMP;
    o->blocksize = SDS_SPARSEGPT_BLOCK;
}

int sds_sds_output_route(double rows, double cols) {
    return rows < cols;
}

void sds_sds_target_terms(double ss, double dd, double diff, double b, double *e_tt, double *c0) {
    const double e = ss + b * (dd - ss - diff) + b * b * diff;
    *e_tt = e > 0.0 ? e : 0.0; // (a sum of squares; rounding alone could take it below 0)
    *c0 = b * b * diff;
}

const char *sds_target_name(sds_target t) {
    return t == SDS_TARGET_DENSE ? "dense" : "pruned";
}
const char *sds_solver_name(sds_solver s) {
    return s == SDS_SOLVER_GD ? "gd" : s == SDS_SOLVER_FISTA ? "fista" : "ridge";
}
const char *sds_base_name(sds_base b) {
    return b == SDS_BASE_WANDA ? "wanda" : "sparsegpt";
}

// The fixed parts of a problem: S (the problem's), c0, e_tt, lambda_max(G).
typedef struct {
    const sds_problem *p;
    const float *S; // (rows, cols), NULL for target (a)
    double c0, e_tt, lmax, wd_s;
    double wd_l1, wd_l2; // |W_d|_1, |W_d|_F^2
} fixed;

static double dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

// out (rows, cols) = A (rows, cols) * M (cols, cols), M symmetric or not (as given, row-major).
static void mul(const float *A, int64_t rows, int64_t cols, const float *M, float *out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0f, A,
                (int)cols, M, (int)cols, 0.0f, out, (int)cols);
}

// Largest eigenvalue of the symmetric G by power iteration (deterministic start), in double.
static double lambda_max(const float *G, int64_t n) {
    float *v = malloc((size_t)n * sizeof(float)), *u = malloc((size_t)n * sizeof(float));
    double lam = 0.0;
    if (!v || !u) {
        // the bound max row sum is always safe
        for (int64_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int64_t j = 0; j < n; j++) s += fabs(G[i * n + j]);
            if (s > lam) lam = s;
        }
        free(v);
        free(u);
        return lam;
    }
    for (int64_t i = 0; i < n; i++) v[i] = 1.0f / sqrtf((float)n) * (1.0f + 0.01f * (float)(i % 7));
    for (int it = 0; it < 60; it++) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)n, 1.0f, G, (int)n, v, 1, 0.0f, u, 1);
        double nu = sqrt(dot(u, u, (size_t)n)), nv = sqrt(dot(v, v, (size_t)n));
        lam = nv > 0.0 ? nu / nv : 0.0;
        if (nu == 0.0) break;
        for (int64_t i = 0; i < n; i++) v[i] = (float)(u[i] / nu);
    }
    free(v);
    free(u);
    return lam * 1.02; // power iteration approaches from below
}

int sds_sds_term_from_cross(const float *Wd, int64_t rows, int64_t cols, const float *G,
                            const float *K, float *S) {
    const int64_t C = cols;
    float *M = sds_malloc((size_t)(C * C) * sizeof(float), "SDS cross Gram");
    if (!M) return SDS_ERR_IO;
    for (int64_t i = 0; i < C; i++)
        for (int64_t j = 0; j < C; j++) M[i * C + j] = G[i * C + j] - K[j * C + i];
    mul(Wd, rows, C, M, S);
    free(M);
    return SDS_OK;
}

static int fixed_init(fixed *f, const sds_problem *p) {
    memset(f, 0, sizeof *f);
    f->p = p;
    const int64_t R = p->rows, C = p->cols;
    const size_t nw = (size_t)(R * C);
    if (p->S) {
        f->S = p->S;
        f->wd_s = dot(p->Wd, f->S, nw);
        f->c0 = p->c0;
        f->e_tt = p->e_tt;
    } else {
        float *T = sds_malloc(nw * sizeof(float), "SDS scratch");
        if (!T) return SDS_ERR_IO;
        mul(p->Wd, R, C, p->G, T);
        f->e_tt = dot(p->Wd, T, nw);
        f->c0 = 0.0;
        free(T);
    }
    f->lmax = lambda_max(p->G, C);
    for (size_t i = 0; i < nw; i++) {
        f->wd_l1 += fabs(p->Wd[i]);
        f->wd_l2 += (double)p->Wd[i] * p->Wd[i];
    }
    return SDS_OK;
}

// err(W) with D = W - W_d written to D and D G to DG (both rows x cols).
static double err_of(const fixed *f, const float *W, float *D, float *DG) {
    const sds_problem *p = f->p;
    const size_t nw = (size_t)(p->rows * p->cols);
    for (size_t i = 0; i < nw; i++) D[i] = W[i] - p->Wd[i];
    mul(D, p->rows, p->cols, p->G, DG);
    double e = dot(D, DG, nw) + f->c0;
    if (f->S) e += 2.0 * dot(D, f->S, nw);
    return e > 0.0 ? e : 0.0;
}

static double rel(const fixed *f, double e) {
    return f->e_tt > 0.0 ? e / f->e_tt : 0.0;
}

int sds_sds_rel_error(const sds_problem *p, const float *W, double *r) {
    fixed f;
    SDS_TRY(fixed_init(&f, p));
    const size_t nw = (size_t)(p->rows * p->cols);
    float *D = sds_malloc(nw * sizeof(float), "SDS scratch");
    float *DG = sds_malloc(nw * sizeof(float), "SDS scratch");
    int rc = D && DG ? SDS_OK : SDS_ERR_IO;
    if (rc == SDS_OK) *r = rel(&f, err_of(&f, W, D, DG));
    free(D);
    free(DG);
    return rc;
}

// Ridge: D (G + (l2' + damp) I) = -(S + l2' W_d); W = W_d + D. Retries with 10x damping when
// the factorisation fails, like SparseGPT.
static int redense_ridge(const fixed *f, const sds_sds_opts *o, float *W) {
    const sds_problem *p = f->p;
    const int64_t R = p->rows, C = p->cols;
    const size_t nw = (size_t)(R * C), ng = (size_t)(C * C);
    const double l2p = f->wd_l2 > 0.0 ? o->l2 * f->e_tt / f->wd_l2 : 0.0;
    if (!f->S && l2p == 0.0) { // target (a) without L2: the optimum is W_d itself
        memcpy(W, p->Wd, nw * sizeof(float));
        return SDS_OK;
    }
    double mean_diag = 0.0;
    for (int64_t j = 0; j < C; j++) mean_diag += p->G[j * C + j];
    mean_diag /= (double)C;
    float *A = sds_malloc(ng * sizeof(float), "SDS ridge matrix");
    if (!A) return SDS_ERR_IO;
    const int n = (int)C, nrhs = (int)R;
    int info = 1;
    double pd = o->percdamp;
    for (int tries = 0; tries < SDS_SPARSEGPT_MAX_TRIES && info != 0; tries++, pd *= 10.0) {
        memcpy(A, p->G, ng * sizeof(float));
        const float add = (float)(l2p + pd * mean_diag);
        for (int64_t j = 0; j < C; j++) A[j * C + j] += add > 0.0f ? add : 1e-30f;
        spotrf_("L", &n, A, &n, &info, 1);
    }
    if (info != 0) {
        free(A);
        return sds_error_set(SDS_ERR_NUMERIC,
                             "SDS re-dense: G + damping is not positive definite after %d tries",
                             SDS_SPARSEGPT_MAX_TRIES);
    }
    // right-hand side, row-major (rows, cols) = column-major (cols, rows) = B^T
    for (size_t i = 0; i < nw; i++) W[i] = -((f->S ? f->S[i] : 0.0f) + (float)l2p * p->Wd[i]);
    spotrs_("L", &n, &nrhs, A, &n, W, &n, &info, 1);
    free(A);
    if (info != 0) return sds_error_set(SDS_ERR_INTERNAL, "SDS re-dense: spotrs info %d", info);
    for (size_t i = 0; i < nw; i++) W[i] += p->Wd[i];
    return SDS_OK;
}

int sds_sds_choose_mix(const sds_problem *fit, const sds_problem *val, double percdamp, double *b) {
    *b = 1.0;
    const int64_t R = fit->rows, C = fit->cols;
    const size_t nw = (size_t)(R * C), ng = (size_t)(C * C);
    if (!fit->S || !val->S)
        return sds_error_set(SDS_ERR_INTERNAL, "SDS mix: a problem without the dense target");
    float *A = sds_malloc(ng * sizeof(float), "SDS mix");
    float *M = sds_malloc(ng * sizeof(float), "SDS mix");
    float *D1 = sds_malloc(nw * sizeof(float), "SDS mix");
    float *T = sds_malloc(nw * sizeof(float), "SDS mix");
    int rc = A && M && D1 && T ? SDS_OK : SDS_ERR_IO;
    if (rc == SDS_OK) {
        // fitting part: D1 (G_f + damp I) = -S_f, S_f = W_d (G_f - K_f^T)
        double mean_diag = 0.0;
        memcpy(A, fit->G, ng * sizeof(float));
        for (int64_t j = 0; j < C; j++) mean_diag += A[j * C + j];
        mean_diag /= (double)C;
        for (size_t i = 0; i < nw; i++) D1[i] = -fit->S[i];
        const int n = (int)C, nrhs = (int)R;
        int info = 1;
        float *G0 = M; // reuse: keep the undamped G_f for the retries
        memcpy(G0, A, ng * sizeof(float));
        double pd = percdamp > 0.0 ? percdamp : 0.01;
        for (int tries = 0; tries < SDS_SPARSEGPT_MAX_TRIES && info != 0; tries++, pd *= 10.0) {
            memcpy(A, G0, ng * sizeof(float));
            const float add = (float)(pd * mean_diag);
            for (int64_t j = 0; j < C; j++) A[j * C + j] += add > 0.0f ? add : 1e-30f;
            spotrf_("L", &n, A, &n, &info, 1);
        }
        if (info == 0) spotrs_("L", &n, &nrhs, A, &n, D1, &n, &info, 1);
        if (info == 0) {
            // held-out: err_v(W_d + b D1) = b^2 <D1, D1 G_v> + 2 b <D1, S_v> + c
            const double lin = dot(D1, val->S, nw);
            mul(D1, R, C, val->G, T);
            const double quad = dot(D1, T, nw);
            double best = quad > 0.0 ? -lin / quad : 0.0; // no held-out data: pruned target
            *b = best < 0.0 ? 0.0 : best > 1.0 ? 1.0 : best;
        } else {
            *b = 0.0; // no usable fit: fall back to the pruned target
        }
    }
    free(A);
    free(M);
    free(D1);
    free(T);
    return rc;
}

static float soft(float x, float t) {
    return x > t ? x - t : x < -t ? x + t : 0.0f;
}

// Gradient descent (subgradient for L1) or FISTA on F, from W (W1) in place.
static int redense_iterative(const fixed *f, const sds_sds_opts *o, float *W, float *D, float *DG) {
    const sds_problem *p = f->p;
    const size_t nw = (size_t)(p->rows * p->cols);
    const double l2p = f->wd_l2 > 0.0 ? o->l2 * f->e_tt / f->wd_l2 : 0.0;
    const double l1p = f->wd_l1 > 0.0 ? o->l1 * f->e_tt / f->wd_l1 : 0.0;
    const double L = 2.0 * (f->lmax + l2p);
    if (L <= 0.0) return SDS_OK;
    const float eta = (float)(o->lr / L);
    if (o->solver == SDS_SOLVER_GD) {
        for (int32_t it = 0; it < o->iters; it++) {
            err_of(f, W, D, DG);
            for (size_t i = 0; i < nw; i++) {
                float g = 2.0f * (DG[i] + (f->S ? f->S[i] : 0.0f)) + 2.0f * (float)l2p * W[i];
                if (l1p > 0.0) g += (float)l1p * (W[i] > 0.0f ? 1.0f : W[i] < 0.0f ? -1.0f : 0.0f);
                W[i] -= eta * g;
            }
        }
        return SDS_OK;
    }
    // FISTA: x (W), y (extrapolated point), t
    float *Y = sds_malloc(nw * sizeof(float), "SDS FISTA point");
    float *Xprev = sds_malloc(nw * sizeof(float), "SDS FISTA point");
    if (!Y || !Xprev) {
        free(Y);
        free(Xprev);
        return SDS_ERR_IO;
    }
    memcpy(Y, W, nw * sizeof(float));
    double t = 1.0;
    const float thr = (float)(eta * l1p);
    for (int32_t it = 0; it < o->iters; it++) {
        err_of(f, Y, D, DG);
        memcpy(Xprev, W, nw * sizeof(float));
        for (size_t i = 0; i < nw; i++) {
            float g = 2.0f * (DG[i] + (f->S ? f->S[i] : 0.0f)) + 2.0f * (float)l2p * Y[i];
            W[i] = soft(Y[i] - eta * g, thr);
        }
        const double tn = 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t));
        const float beta = (float)((t - 1.0) / tn);
        for (size_t i = 0; i < nw; i++) Y[i] = W[i] + beta * (W[i] - Xprev[i]);
        t = tn;
    }
    free(Y);
    free(Xprev);
    return SDS_OK;
}

// The base method on W (rows, cols) in place; mask receives its selection.
static int base_prune(const sds_problem *p, sds_pattern pat, const sds_sds_opts *o, float *W,
                      uint8_t *mask, double *damping) {
    *damping = 0.0;
    if (o->base == SDS_BASE_WANDA) {
        if (!p->stat)
            return sds_error_set(SDS_ERR_INTERNAL, "SDS over Wanda without the input statistic");
        return sds_wanda_prune(W, p->rows, p->cols, p->stat, pat, mask);
    }
    const int64_t C = p->cols;
    float *own = NULL; // this call's factor, where the problem gives none
    double pd = p->U_percdamp;
    int rc = SDS_OK;
    if (p->U) {
        // the first pruning's factor of G: only its dead inputs' weights are to be zeroed
        uint8_t *dead = sds_malloc((size_t)C, "dead-input flags");
        if (!dead) return SDS_ERR_IO;
        for (int64_t j = 0; j < C; j++) dead[j] = p->G[j * C + j] == 0.0f;
        sds_sparsegpt_zero_dead(W, p->rows, C, dead);
        free(dead);
    } else {
        own = sds_malloc((size_t)(C * C) * sizeof(float), "SparseGPT factor");
        if (!own) return SDS_ERR_IO;
        memcpy(own, p->G, (size_t)(C * C) * sizeof(float));
        sds_sparsegpt_info info;
        rc = sds_sparsegpt_prepare(own, C, W, p->rows, o->percdamp, SDS_SPARSEGPT_MAX_TRIES, &info);
        if (rc == SDS_OK) pd = info.percdamp;
    }
    if (rc == SDS_OK) {
        sds_sparsegpt_local loc = {p->U ? p->U : own, C};
        rc = sds_sparsegpt_sweep(W, p->rows, p->rows, C, pat, o->blocksize,
                                 sds_sparsegpt_panel_local, sds_sparsegpt_select_local, &loc, mask);
        *damping = pd;
    }
    free(own);
    return rc;
}

int sds_sds_run(const sds_problem *p, sds_pattern pat, const sds_sds_opts *o, float *W,
                uint8_t *mask, sds_sds_info *info) {
    memset(info, 0, sizeof *info);
    if (p->S && !(p->e_tt >= 0.0 && p->c0 >= 0.0 && isfinite(p->e_tt) && isfinite(p->c0)))
        return sds_error_set(SDS_ERR_NUMERIC,
                             "SDS: the dense target's output energy is %g and the error of the "
                             "dense weights %g: the sublayer's outputs are not finite",
                             p->e_tt, p->c0);
    if (o->solver == SDS_SOLVER_RIDGE && o->l1 != 0.0)
        return sds_error_set(SDS_ERR_USAGE,
                             "--sds-solver ridge has no L1 term: use gd or fista with --sds-l1");
    const size_t nw = (size_t)(p->rows * p->cols);
    fixed f;
    SDS_TRY(fixed_init(&f, p));
    info->wd_s = f.wd_s;
    float *D = sds_malloc(nw * sizeof(float), "SDS scratch");
    float *DG = sds_malloc(nw * sizeof(float), "SDS scratch");
    float *Wc = sds_malloc(nw * sizeof(float), "SDS weights");
    float *Wb = sds_malloc(nw * sizeof(float), "SDS weights");
    uint8_t *mc = sds_malloc(nw, "SDS mask");
    uint8_t *mb = sds_malloc(nw, "SDS mask");
    // (accelerated adjustment: the previous iterate and its product)
    float *Wp = o->adjust_nesterov ? sds_malloc(nw * sizeof(float), "SDS weights") : NULL;
    float *DGp = o->adjust_nesterov ? sds_malloc(nw * sizeof(float), "SDS scratch") : NULL;
    int rc = D && DG && Wc && Wb && mc && mb && (!o->adjust_nesterov || (Wp && DGp)) ? SDS_OK
                                                                                     : SDS_ERR_IO;
    double e1 = 0.0, eb = 0.0;
    if (rc == SDS_OK) {
        e1 = err_of(&f, W, D, DG);
        info->rel_err_first = rel(&f, e1);
        // 2. re-dense, from W1
        memcpy(Wc, W, nw * sizeof(float));
        if (o->redense) {
            if (o->solver == SDS_SOLVER_RIDGE)
                rc = redense_ridge(&f, o, Wc);
            else
                rc = redense_iterative(&f, o, Wc, D, DG);
        }
    }
    if (rc == SDS_OK) {
        info->rel_err_redense = rel(&f, err_of(&f, Wc, D, DG));
        // 3. second pruning
        rc = base_prune(p, pat, o, Wc, mc, &info->damping);
    }
    if (rc == SDS_OK) {
        eb = err_of(&f, Wc, D, DG);
        info->rel_err_second = rel(&f, eb);
        memcpy(Wb, Wc, nw * sizeof(float));
        memcpy(mb, mc, nw);
        const int skip = o->early_exit && eb < e1;
        const float eta = f.lmax > 0.0 ? (float)(o->adjust_lr / (2.0 * f.lmax)) : 0.0f;
        if (Wp) {
            memcpy(Wp, Wc, nw * sizeof(float));
            memcpy(DGp, DG, nw * sizeof(float));
        }
        double e_last = eb;
        int32_t k = 0; // steps since the momentum was last reset
        for (int32_t it = 0; !skip && eta > 0.0f && it < o->adjust_iters && rc == SDS_OK; it++) {
            // DG holds (Wc - W_d) G for the current Wc (DGp for the previous iterate Wp)
            if (!Wp) {
                for (size_t i = 0; i < nw; i++)
                    Wc[i] -= eta * 2.0f * (DG[i] + (f.S ? f.S[i] : 0.0f));
            } else {
                const float beta = (float)k / (float)(k + 3), a = 1.0f + beta;
                for (size_t i = 0; i < nw; i++) {
                    const float y = a * Wc[i] - beta * Wp[i];
                    const float g = a * DG[i] - beta * DGp[i] + (f.S ? f.S[i] : 0.0f);
                    Wp[i] = Wc[i];
                    DGp[i] = DG[i];
                    Wc[i] = y - eta * 2.0f * g;
                }
            }
            rc = sds_magnitude_prune(Wc, p->rows, p->rows, p->cols, pat, NULL, NULL, mc);
            if (rc != SDS_OK) break;
            const double e = err_of(&f, Wc, D, DG);
            info->adjust_steps++;
            k = e > e_last ? 0 : k + 1;
            e_last = e;
            if (e < eb) {
                eb = e;
                info->adjust_best = it + 1;
                memcpy(Wb, Wc, nw * sizeof(float));
                memcpy(mb, mc, nw);
            }
        }
    }
    if (rc == SDS_OK) {
        info->rel_err_sds = rel(&f, eb);
        if (eb < e1) {
            memcpy(W, Wb, nw * sizeof(float));
            memcpy(mask, mb, nw);
            info->kept_sds = 1;
            info->rel_err_final = info->rel_err_sds;
        } else {
            info->rel_err_final = info->rel_err_first;
        }
    }
    free(D);
    free(DG);
    free(Wc);
    free(Wb);
    free(mc);
    free(mb);
    free(Wp);
    free(DGp);
    return rc;
}

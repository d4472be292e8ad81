#define _DEFAULT_SOURCE
#include "prune.h"

#include "agree.h"
#include "json_out.h"
#include "calib.h"
#include "dist_gram.h"
#include "dist_sparsegpt.h"
#include "eval.h"
#include "export.h"
#include "h5out.h"
#include "hf_export.h"
#include "hessian.h"
#include "magnitude.h"
#include "model_load.h"
#include "plan.h"
#include "prune_ckpt.h"
#include "runtime.h"
#include "sds_error.h"
#include "sparsegpt.h"
#include "stage_map.h"
#include "stop.h"
#include "xsum_mpi.h"
#include "text_ids.h"
#include "token_file.h"
#include "wanda.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

const char *sds_method_name(sds_method m) {
    switch (m) {
    case SDS_METHOD_MAGNITUDE:
        return "magnitude";
    case SDS_METHOD_WANDA:
        return "wanda";
    case SDS_METHOD_SPARSEGPT:
        return "sparsegpt";
    case SDS_METHOD_SDS:
        return "sds";
    default:
        return "?";
    }
}

// The capture hook: every input a sublayer group sees goes into that group's statistics, or,
// when copy is set (SDS with the dense target), into copy[group] (T, cols) where that is not
// NULL, so that the pruned and the dense path's inputs of one sequence can be combined into the
// cross Gram. SDS with the dense target also watches the linear sublayers' outputs
// (capture_out): the pruned path's are kept in ys[i] (T, rows), the dense path's compared with
// them into one sequence's sums (ss, dd, diff of sds_sds_target_terms) at ysum[3 i .. 3 i + 2],
// and ys[i] then holds the difference Y_s - Y_d (for the output route's S = (Y_s - Y_d)^T X_s).
typedef struct {
    sds_hessian *h; // SDS_CAPTURE_GROUPS entries
    float **copy;   // NULL, or SDS_CAPTURE_GROUPS buffers of (T, cols)
    int rc;
    int out_mode; // OUT_KEEP: the pruned path's outputs into ys; OUT_COMPARE: the dense path's
    float **ys;
    double *ysum;
} capture_ctx;

enum { OUT_OFF = 0, OUT_KEEP = 1, OUT_COMPARE = 2 };
enum { MAX_LINEAR = 8 }; // linear sublayers per decoder layer (OPT 6, Llama 7)

static void capture_add(void *ctx, int32_t group, const float *x, int64_t T, int64_t cols) {
    capture_ctx *c = ctx;
    SDS_ASSERT(group >= 0 && group < SDS_CAPTURE_GROUPS && c->h[group].cols == cols);
    if (c->copy) {
        if (c->copy[group]) memcpy(c->copy[group], x, (size_t)(T * cols) * sizeof(float));
    } else if (c->rc == SDS_OK)
        c->rc = sds_hessian_add(&c->h[group], x, 1, T);
}

static void capture_out(void *ctx, int32_t i, const float *y, int64_t T, int64_t rows) {
    capture_ctx *c = ctx;
    SDS_ASSERT(i >= 0 && i < MAX_LINEAR);
    const size_t n = (size_t)(T * rows);
    if (c->out_mode == OUT_KEEP) {
        memcpy(c->ys[i], y, n * sizeof(float));
    } else if (c->out_mode == OUT_COMPARE) {
        float *ys = c->ys[i];
        double ss = 0.0, dd = 0.0, diff = 0.0;
        for (size_t k = 0; k < n; k++) {
            const double a = ys[k], b = y[k];
            ss += a * a;
            dd += b * b;
            diff += (a - b) * (a - b);
            ys[k] -= y[k];
        }
        c->ysum[3 * i] = ss;
        c->ysum[3 * i + 1] = dd;
        c->ysum[3 * i + 2] = diff;
    }
}

static json_t *options_json(const sds_prune_opts *o, int nranks) {
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(o->model));
    if (o->calib)
        json_object_set_new(j, "calib", json_string(o->calib));
    else
        json_object_set_new(j, "calib_tokens", json_string(o->calib_tokens));
    json_object_set_new(j, "method", json_string(sds_method_name(o->method)));
    json_object_set_new(j, "sparsity", json_string(o->sparsity_text));
    json_object_set_new(j, "nsamples", json_integer(o->nsamples));
    json_object_set_new(j, "seqlen", json_integer(o->seqlen));
    json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(j, "blocksize", json_integer(o->blocksize));
    json_object_set_new(j, "percdamp", json_real(o->percdamp));
    json_object_set_new(j, "ranks", json_integer(nranks));
    if (o->method == SDS_METHOD_SPARSEGPT)
        json_object_set_new(j, "local_hessian_max", json_integer(o->local_hessian_max));
    if (o->method == SDS_METHOD_SDS) {
        const sds_sds_opts *s = &o->sds;
        json_object_set_new(j, "base", json_string(sds_base_name(s->base)));
        json_object_set_new(j, "sds_target", json_string(sds_target_name(s->target)));
        if (s->mix < 0.0)
            json_object_set_new(j, "sds_mix", json_string("auto"));
        else
            json_object_set_new(j, "sds_mix", json_real(s->mix));
        json_object_set_new(j, "sds_solver", json_string(sds_solver_name(s->solver)));
        json_object_set_new(j, "sds_iters", json_integer(s->iters));
        json_object_set_new(j, "sds_lr", json_real(s->lr));
        json_object_set_new(j, "sds_l1", json_real(s->l1));
        json_object_set_new(j, "sds_l2", json_real(s->l2));
        json_object_set_new(j, "sds_adjust_iters", json_integer(s->adjust_iters));
        json_object_set_new(j, "sds_adjust_lr", json_real(s->adjust_lr));
        json_object_set_new(j, "sds_adjust_solver",
                            json_string(s->adjust_nesterov ? "nesterov" : "gd"));
        json_object_set_new(j, "sds_early_exit", json_boolean(s->early_exit));
        json_object_set_new(j, "sds_redense", json_boolean(s->redense));
        json_object_set_new(j, "sds_order",
                            json_string(o->sds_parallel ? "parallel" : "sequential"));
    }
    return j;
}

// Rank 0: the calibration windows as one (nsamples, seqlen) array of ids.
static int calibration_tokens(const sds_prune_opts *o, const sds_model *m, int32_t *samples) {
    int32_t *ids = NULL;
    int64_t n = 0;
    if (o->calib)
        SDS_TRY(sds_text_token_ids(o->calib, o->model, o->tokenizer, m, &ids, &n));
    else
        SDS_TRY(sds_token_file_read(o->calib_tokens, m->cfg.vocab_size, &ids, &n));
    if (n < o->seqlen) {
        free(ids);
        return sds_error_set(SDS_ERR_INPUT,
                             "%s: %lld tokens, fewer than one calibration window of --seqlen "
                             "%lld",
                             o->calib ? o->calib : o->calib_tokens, (long long)n,
                             (long long)o->seqlen);
    }
    int64_t *starts = sds_malloc((size_t)o->nsamples * sizeof(int64_t), "calibration windows");
    if (!starts) {
        free(ids);
        return SDS_ERR_IO;
    }
    sds_calib_starts(n, o->nsamples, o->seqlen, o->seed, starts);
    for (int64_t s = 0; s < o->nsamples; s++)
        memcpy(samples + s * o->seqlen, ids + starts[s], (size_t)o->seqlen * sizeof(int32_t));
    free(starts);
    free(ids);
    return SDS_OK;
}

// SparseGPT on one whole sublayer: preparation turns its H into U, and q/k/v share one H, so
// it works on a copy. keep_U, when not NULL, receives U (the caller frees it).
static int sparsegpt_sublayer(const sds_prune_opts *o, sds_linear_ref r, const float *H,
                              uint8_t *mask, double *damping, float **keep_U) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    float *U = sds_malloc((size_t)(r.cols * r.cols) * sizeof(float), "SparseGPT factor");
    if (!U) return SDS_ERR_IO;
    memcpy(U, H, (size_t)(r.cols * r.cols) * sizeof(float));
    if (sds_test_fail("cholesky", rank)) {
        // test hook: an indefinite H that no damping retry can fix
        const float big = 1e12f * (fabsf(U[0]) + 1.0f);
        U[1] = U[r.cols] = big;
    }
    sds_sparsegpt_info info;
    int rc =
        sds_sparsegpt_prepare(U, r.cols, r.w, r.rows, o->percdamp, SDS_SPARSEGPT_MAX_TRIES, &info);
    if (rc == SDS_OK) {
        sds_sparsegpt_local loc = {U, r.cols};
        rc = sds_sparsegpt_sweep(r.w, r.rows, r.rows, r.cols, o->pattern, o->blocksize,
                                 sds_sparsegpt_panel_local, sds_sparsegpt_select_local, &loc, mask);
        *damping = info.percdamp;
    }
    if (rc == SDS_OK && keep_U)
        *keep_U = U;
    else
        free(U);
    return rc;
}

static void add_extra(sds_h5out_stats *st, const char *name, double v) {
    SDS_ASSERT(st->n_extra < SDS_H5OUT_MAX_EXTRA);
    snprintf(st->extra_name[st->n_extra], sizeof st->extra_name[0], "%s", name);
    st->extra[st->n_extra++] = v;
}

// Owner rank: the first pruning of sublayer r in place (the method, or SDS's base) into mask.
static int first_prune(const sds_prune_opts *o, sds_linear_ref r, const sds_hessian *h,
                       uint8_t *mask, double *damping, float **keep_U) {
    *damping = 0.0;
    const int wanda = o->method == SDS_METHOD_WANDA ||
                      (o->method == SDS_METHOD_SDS && o->sds.base == SDS_BASE_WANDA);
    if (o->method == SDS_METHOD_MAGNITUDE)
        return sds_magnitude_prune(r.w, r.rows, r.rows, r.cols, o->pattern, NULL, NULL, mask);
    if (wanda) return sds_wanda_prune(r.w, r.rows, r.cols, h->wanda, o->pattern, mask);
    return sparsegpt_sublayer(o, r, h->H, mask, damping, keep_U);
}

// SDS's dense-target statistics of one sublayer, for the full correction X_t = X_d: either its
// group's cross Gram K = X_s^T X_d or (the output route) its own S = W_d (G - K^T), and the
// sums of its outputs (ss, dd, diff: sds_sds_target_terms), all on the Hessian's scale; for
// --sds-mix auto also the held-out (odd) sequences' Hessian, K or S, and output sums (else Gv,
// Kv, Sv NULL).
typedef struct {
    const float *K, *S, *Gv, *Kv, *Sv;
    double y[3], yv[3];
} dense_stats;

// Owner rank: SDS's steps 2-3 on sublayer r, first-pruned in place (mask), from its dense
// weights; fills st's errors and extras. ds: the dense target's statistics, NULL for the
// pruned target.
// U1: the first pruning's SparseGPT factor of h->H (damping d1), or NULL.
static int sds_step(const sds_prune_opts *o, sds_linear_ref r, const sds_hessian *h,
                    const dense_stats *ds, const float *dense, uint8_t *mask, sds_h5out_stats *st,
                    const float *U1, double d1) {
    int rc = SDS_OK;
    sds_problem p = {r.rows, r.cols, dense, h->H, NULL, 0.0, 0.0, h->wanda, U1, d1};
    float *S = NULL, *Sv = NULL, *Gf = NULL;
    const size_t nw = (size_t)(r.rows * r.cols);
    double mix = ds ? o->sds.mix : 0.0, y[3] = {0.0, 0.0, 0.0};
    if (ds) {
        // the full correction's term S = W_d (G - K^T); the blend's is mix times it
        S = sds_malloc(nw * sizeof(float), "SDS target term");
        if (!S)
            rc = SDS_ERR_IO;
        else if (ds->K)
            rc = sds_sds_term_from_cross(dense, r.rows, r.cols, h->H, ds->K, S);
        else
            memcpy(S, ds->S, nw * sizeof(float));
        memcpy(y, ds->y, sizeof y);
    }
    if (rc == SDS_OK && ds && ds->Gv) {
        // --sds-mix auto: SDS is fitted on the even sequences only (G_f = G - G_v, ...),
        // the blend chosen on the odd ones, so they stay held out through every layer
        const size_t ng = (size_t)(r.cols * r.cols);
        Sv = sds_malloc(nw * sizeof(float), "SDS held-out target term");
        Gf = sds_malloc(ng * sizeof(float), "SDS fitting Gram");
        if (!Sv || !Gf) rc = SDS_ERR_IO;
        if (rc == SDS_OK && ds->Kv)
            rc = sds_sds_term_from_cross(dense, r.rows, r.cols, ds->Gv, ds->Kv, Sv);
        else if (rc == SDS_OK)
            memcpy(Sv, ds->Sv, nw * sizeof(float));
        if (rc == SDS_OK) {
            for (size_t i = 0; i < ng; i++) Gf[i] = h->H[i] - ds->Gv[i];
            for (size_t i = 0; i < nw; i++) S[i] -= Sv[i];
            for (int k = 0; k < 3; k++) y[k] -= ds->yv[k];
            const sds_problem fit = {r.rows, r.cols, dense, Gf, S, 0.0, 0.0, NULL, NULL, 0.0};
            const sds_problem val = {r.rows, r.cols, dense, ds->Gv, Sv, 0.0, 0.0, NULL, NULL, 0.0};
            rc = sds_sds_choose_mix(&fit, &val, o->percdamp, &mix);
        }
        if (rc == SDS_OK) {
            p.G = Gf;
            p.U = NULL; // (a factor of h->H, not of G_f)
        }
    }
    if (rc == SDS_OK && ds) {
        if (mix != 1.0)
            for (size_t i = 0; i < nw; i++) S[i] = (float)(mix * (double)S[i]);
        p.S = S;
        sds_sds_target_terms(y[0], y[1], y[2], mix, &p.e_tt, &p.c0);
    }
    sds_sds_info info;
    if (rc == SDS_OK) rc = sds_sds_run(&p, o->pattern, &o->sds, r.w, mask, &info);
    free(S);
    free(Sv);
    free(Gf);
    if (rc != SDS_OK) return rc;
    add_extra(st, "sds_mix", mix);
    st->rel_err_first = info.rel_err_first;
    st->rel_err_final = info.rel_err_final;
    add_extra(st, "rel_err_redense", info.rel_err_redense);
    add_extra(st, "rel_err_second", info.rel_err_second);
    add_extra(st, "rel_err_sds", info.rel_err_sds);
    add_extra(st, "kept_sds", info.kept_sds);
    add_extra(st, "adjust_steps", info.adjust_steps);
    add_extra(st, "adjust_best", info.adjust_best);
    if (ds) {
        // K (Grams of the inputs) against the output sums: <W_d, S> = <Y_s, Y_s - Y_t>
        // = b <Y_s, Y_s - Y_d> = b (ss - dd + diff) / 2; relative to ss, ~1e-6 from rounding
        const double want = mix * (y[0] - y[1] + y[2]) / 2.0;
        add_extra(st, "sds_target_check", y[0] > 0.0 ? fabs(info.wd_s - want) / y[0] : 0.0);
    }
    return SDS_OK;
}

// The sparsity a pruned sublayer reached, into st.
static void count_sparsity(sds_linear_ref r, sds_h5out_stats *st) {
    const size_t numel = (size_t)(r.rows * r.cols);
    size_t zeros = 0;
    for (size_t i = 0; i < numel; i++) zeros += r.w[i] == 0.0f;
    st->sparsity = (double)zeros / (double)numel;
}

// Owner rank: prunes one sublayer in place with the group's statistics; fills st and mask.
// ds: SDS's dense-target statistics, else NULL.
static int prune_sublayer(const sds_prune_opts *o, sds_linear_ref r, const sds_hessian *h,
                          const dense_stats *ds, uint8_t *mask, sds_h5out_stats *st) {
    const size_t numel = (size_t)(r.rows * r.cols);
    float *dense = sds_malloc(numel * sizeof(float), "dense weights");
    if (!dense) return SDS_ERR_IO;
    memcpy(dense, r.w, numel * sizeof(float));
    // SDS over SparseGPT prunes twice with the same H (but for --sds-mix auto's fitting half):
    // the second pruning reuses the first's factor
    const int reuse =
        o->method == SDS_METHOD_SDS && o->sds.base == SDS_BASE_SPARSEGPT && !(ds && ds->Gv);
    float *U1 = NULL;
    int rc = first_prune(o, r, h, mask, &st->damping, reuse ? &U1 : NULL);
    double err = 0.0;
    if (rc == SDS_OK && o->method == SDS_METHOD_SDS)
        rc = sds_step(o, r, h, ds, dense, mask, st, U1, st->damping);
    else if (rc == SDS_OK)
        rc = sds_hessian_recon_error(h->H, r.cols, dense, r.w, r.rows, &err);
    free(dense);
    free(U1);
    if (rc != SDS_OK) return rc;
    count_sparsity(r, st);
    if (o->method != SDS_METHOD_SDS) {
        st->rel_err_first = err;
        st->rel_err_final = err;
    }
    return SDS_OK;
}

static double extra_of(const sds_h5out_stats *st, const char *name) {
    for (int32_t i = 0; i < st->n_extra; i++)
        if (!strcmp(st->extra_name[i], name)) return st->extra[i];
    return 0.0;
}

static int write_summary(const sds_prune_opts *o, int nranks, int stages, int32_t gram_batch,
                         const sds_sublayer_report *rep, int64_t n_rep, double seconds,
                         double ppl_dense, double ppl_pruned, double peak_mib,
                         const double timing[8], const int64_t grid_bytes[2]) {
    json_t *root = json_object();
    json_object_set_new(root, "command", json_string("prune"));
    json_object_set_new(root, "options", options_json(o, nranks));
    json_object_set_new(root, "output", json_string(o->out));
    json_t *subs = json_array();
    for (int64_t i = 0; i < n_rep; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "name", json_string(rep[i].name));
        json_object_set_new(s, "layer", json_integer(rep[i].st.layer));
        json_object_set_new(s, "sparsity", json_real(rep[i].st.sparsity));
        json_object_set_new(s, "rel_err", json_real(rep[i].st.rel_err_final));
        json_object_set_new(s, "rel_err_first", json_real(rep[i].st.rel_err_first));
        for (int32_t k = 0; k < rep[i].st.n_extra; k++)
            json_object_set_new(s, rep[i].st.extra_name[k], json_real(rep[i].st.extra[k]));
        json_object_set_new(s, "damping", json_real(rep[i].st.damping));
        json_object_set_new(s, "seconds", json_real(rep[i].st.seconds));
        json_array_append_new(subs, s);
    }
    json_object_set_new(root, "sublayers", subs);
    json_object_set_new(root, "seconds", json_real(seconds));
    json_object_set_new(root, "peak_rss_mib_max", json_real(peak_mib));
    json_object_set_new(root, "stages", json_integer(stages));
    // (not an option: the output's bits do not depend on it, so it is not in the fingerprint)
    json_object_set_new(root, "gram_batch", json_integer(gram_batch));
    static const char *tnames[8] = {"statistics", "reduce", "prune", "forward",
                                    "handoff",    "sync",   "idle",  "compute"};
    json_t *tj = json_object();
    for (int k = 0; k < 8; k++) json_object_set_new(tj, tnames[k], json_real(timing[k]));
    json_object_set_new(root, "timing_max_s", tj);
    if (o->method == SDS_METHOD_SPARSEGPT) {
        // the grid path's bytes on the largest rank (mpi/dist_gram.h, mpi/dist_sparsegpt.h)
        json_object_set_new(root, "grid_piece_bytes_max", json_integer(grid_bytes[0]));
        json_object_set_new(root, "grid_buffer_bytes_max", json_integer(grid_bytes[1]));
    }
    if (o->eval) {
        json_object_set_new(root, "eval_text", json_string(o->eval));
        json_object_set_new(root, "perplexity_dense", json_real(ppl_dense));
        json_object_set_new(root, "perplexity_pruned", json_real(ppl_pruned));
    }
    return sds_json_write_atomic(root, o->json);
}

static int run_eval(MPI_Comm comm, const sds_prune_opts *o, const sds_model *m, int stages,
                    double *ppl) {
    sds_eval_opts e;
    memset(&e, 0, sizeof e);
    e.model = o->model;
    e.text = o->eval;
    e.tokenizer = o->tokenizer;
    e.seqlen = o->seqlen;
    e.max_windows = o->eval_max_windows;
    e.result = ppl;
    e.stages = stages;
    return sds_eval_model(comm, m, &e);
}

// ---- pipeline stages (SPEC 4, src/stage_map.h) ----

typedef struct {
    int S, stage;     // stages; this rank's
    MPI_Comm scomm;   // the ranks of this rank's stage
    int srank, ssize; // this rank within it, its size
    int64_t llo, lhi; // its decoder layers [llo, lhi)
} stage_info;

enum { TAG_ACTS = 11, TAG_ACTS_DENSE = 12 };

static int stage_world(int P, int S, int k, int j) {
    int lo, hi;
    sds_stage_ranks(P, S, k, &lo, &hi);
    return lo + j;
}

static int stage_size(int P, int S, int k) {
    int lo, hi;
    sds_stage_ranks(P, S, k, &lo, &hi);
    return hi - lo;
}

// The rank (of G) whose share [N j / G, N (j+1) / G) of N sequences holds sequence s.
static int seq_owner(int64_t N, int G, int64_t s) {
    int j = (int)(s * G / N);
    while (j > 0 && N * j / G > s) j--;
    while (j + 1 < G && N * (j + 1) / G <= s) j++;
    return j;
}

// The statistics of one layer's input groups on one stage (see layer_stats_compute).
typedef struct {
    sds_hessian h[SDS_CAPTURE_GROUPS], hv[SDS_CAPTURE_GROUPS];
    float *K[SDS_CAPTURE_GROUPS], *Kv[SDS_CAPTURE_GROUPS], *xs_buf[SDS_CAPTURE_GROUPS],
        *xd_buf[SDS_CAPTURE_GROUPS];
    // exact sums of the cross Grams (src/xsum.h) until they are reduced into K, Kv
    sds_xsum_t *Kacc[SDS_CAPTURE_GROUPS], *Kvacc[SDS_CAPTURE_GROUPS];
    // SDS, dense target: groups on the output route (sds_sds_output_route) have no K; each of
    // their sublayers has S = W_d (G - K^T) = (Y_s - Y_d)^T X_s instead (S, held-out Sv, and
    // their exact sums until reduced); lin_group: each sublayer's group
    int out_route[SDS_CAPTURE_GROUPS];
    int32_t lin_group[MAX_LINEAR];
    float *S[MAX_LINEAR], *Sv[MAX_LINEAR];
    sds_xsum_t *Sacc[MAX_LINEAR], *Svacc[MAX_LINEAR];
    // SDS, dense target: per linear sublayer the sums of its outputs (ss, dd, diff), all
    // sequences (y) and the held-out odd ones (yv), on the Hessian's scale; while they are
    // gathered, the pruned path's outputs of one sequence (ys) and every sequence's sums (ysum)
    double y[MAX_LINEAR][3], yv[MAX_LINEAR][3];
    float *ys[MAX_LINEAR];
    double *ysum;
} layer_stats;

// The dense-target statistics of sublayer i (group g) into ds; NULL without the dense path.
static const dense_stats *dense_stats_of(const layer_stats *ls, int32_t i, int32_t g, int two_paths,
                                         int auto_mix, dense_stats *ds) {
    if (!two_paths) return NULL;
    memset(ds, 0, sizeof *ds);
    ds->K = ls->K[g];
    ds->S = ls->S[i];
    memcpy(ds->y, ls->y[i], sizeof ds->y);
    if (auto_mix) {
        ds->Gv = ls->hv[g].H;
        ds->Kv = ls->Kv[g];
        ds->Sv = ls->Sv[i];
        memcpy(ds->yv, ls->yv[i], sizeof ds->yv);
    }
    return ds;
}

static void layer_stats_free_outputs(layer_stats *ls) {
    for (int32_t i = 0; i < MAX_LINEAR; i++) {
        free(ls->ys[i]);
        ls->ys[i] = NULL;
    }
    free(ls->ysum);
    ls->ysum = NULL;
}

// Frees group g's statistics (its scratch too); with grams_too == 0 only the scratch: the
// per-sequence input copies.
static void layer_stats_free_group(layer_stats *ls, int32_t g, int grams_too) {
    free(ls->xs_buf[g]);
    free(ls->xd_buf[g]);
    ls->xs_buf[g] = ls->xd_buf[g] = NULL;
    if (!grams_too) return;
    sds_hessian_free(&ls->h[g]);
    sds_hessian_free(&ls->hv[g]);
    free(ls->K[g]);
    free(ls->Kv[g]);
    free(ls->Kacc[g]);
    free(ls->Kvacc[g]);
    ls->K[g] = ls->Kv[g] = NULL;
    ls->Kacc[g] = ls->Kvacc[g] = NULL;
    for (int32_t i = 0; i < MAX_LINEAR; i++) {
        if (ls->lin_group[i] != g) continue;
        free(ls->S[i]);
        free(ls->Sv[i]);
        free(ls->Sacc[i]);
        free(ls->Svacc[i]);
        ls->S[i] = ls->Sv[i] = NULL;
        ls->Sacc[i] = ls->Svacc[i] = NULL;
    }
}

static void layer_stats_free(layer_stats *ls) {
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++) layer_stats_free_group(ls, g, 1);
    layer_stats_free_outputs(ls);
    memset(ls, 0, sizeof *ls);
}

// What a rank carries through the layers.
typedef struct {
    const sds_prune_opts *o;
    sds_model *m;
    stage_info si;
    int P, rank;
    int64_t lo, n_local, T, C; // its sequences [lo, lo + n_local) of the stage's split
    float *inps, *inps_d, *x;
    sds_model_work w;
    MPI_Request *rreq; // stage > 0: 2 per local sequence (pruned, dense path), until received
    int two_paths, auto_mix, wanda_stat;
    // several BLAS threads: the Grams of this many sequences at once, one per thread
    // (src/hessian.h: sds_hessian_batch), and the grid's blocks split over as many threads
    // (mpi/dist_gram.h: sds_dist_gram_threads); 1: off
    int32_t gram_batch;
    // SparseGPT on the stage's BLACS grids (grid_stats_compute, grid_prune_sublayer): one grid
    // per input group (its cols), made once; the most bytes the distributed statistics and
    // factorisation held at once on this rank (pieces that scale as 1/G, and the rest)
    int grid;
    sds_dist_grid grids[SDS_CAPTURE_GROUPS];
    int64_t grid_piece_peak, grid_buffer_peak;
    // seconds this rank spent (reported, the largest over the ranks, for the scaling figures)
    double t_stats;   // statistics: the dense layer's forward and the Gram accumulation
    double t_reduce;  // all-reducing the statistics over the stage
    double t_prune;   // pruning the sublayers it owns
    double t_advance; // the pruned layer's forward
    double t_handoff; // sending to the next stage and waiting for the stage before
    double t_sync;    // agreements, broadcasts of pruned weights, writing the output
    double t_idle;    // waiting while another stage works on its layers
    int own_fail;     // (--sds-order parallel) this rank's own first failure, for the agreement
} run_ctx;

// Quiet agreement inside a stage: its ranks stop alike. *own keeps this rank's first failure,
// which the world agreement that follows is given, so that it names the rank that failed.
static int stage_ok(const run_ctx *c, int local, int *own) {
    if (local != SDS_OK && *own == SDS_OK) *own = local;
    return sds_agree_quiet(c->si.scomm, local, NULL) == SDS_OK;
}

// One sequence's cross Gram or output term (n entries) into its exact sum.
static int cross_add(sds_xsum_t *acc, const float *Kseq, size_t n, const char *what) {
    if (sds_xsum_add_f32(acc, Kseq, n, SDS_HESSIAN_XSUM_LIMIT))
        return sds_error_set(SDS_ERR_NUMERIC,
                             "SDS %s: an entry of one sequence is not finite or beyond "
                             "%.3g: the calibration activations are too large for exact sums",
                             what, SDS_HESSIAN_XSUM_LIMIT);
    return SDS_OK;
}

// (stage collective) A cross Gram's or output term's exact sums *acc (n entries) summed over
// the stage, into out on the Hessian's scale (2 / nsamples); the sums are freed.
static void cross_reduce(MPI_Comm sc, sds_xsum_t **acc, float *out, size_t n, int64_t nsamples) {
    sds_xsum_allreduce(sc, *acc, n);
    sds_xsum_to_f32(*acc, out, n);
    free(*acc);
    *acc = NULL;
    const float scale = (float)(2.0 / (double)nsamples);
    for (size_t k = 0; k < n; k++) out[k] *= scale;
}

// (stage collective) Step 1 for layer l: the statistics of the dense layer on the pruned
// model's activations (SDS, dense target: also the cross Gram K = X_s^T X_d per group, or on
// the output route each sublayer's S = (Y_s - Y_d)^T X_s, and the sums of each sublayer's
// outputs on both paths, and the dense path advances through the still dense layer;
// --sds-mix auto: the Hessian, K or S and output sums of the odd sequences, held out to choose
// it). The first layer of a later stage takes each sequence as it arrives
// from the stage before. Returns this rank's own failure (SDS_OK when it had none).
static int layer_stats_compute(run_ctx *c, int64_t l, layer_stats *ls) {
    const sds_prune_opts *o = c->o;
    sds_model *m = c->m;
    const int64_t T = c->T, C = c->C, N = o->nsamples;
    const int32_t n_lin = sds_model_n_linear(m);
    SDS_ASSERT(n_lin <= MAX_LINEAR);
    int own = SDS_OK, rc = SDS_OK;
    memset(ls, 0, sizeof *ls);
    sds_hessian *h = ls->h, *hv = ls->hv;
    float **K = ls->K, **Kv = ls->Kv;
    int32_t flags = SDS_HESSIAN_GRAM | (c->wanda_stat ? SDS_HESSIAN_WANDA : 0);
    double grows[SDS_CAPTURE_GROUPS] = {0.0}, gcols[SDS_CAPTURE_GROUPS] = {0.0};
    for (int32_t i = 0; i < n_lin; i++) {
        const sds_linear_ref r = sds_model_linear(m, l, i);
        ls->lin_group[i] = r.group;
        grows[r.group] += (double)r.rows;
        gcols[r.group] = (double)r.cols;
    }
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++)
        ls->out_route[g] = c->two_paths && sds_sds_output_route(grows[g], gcols[g]);
    for (int32_t i = 0; i < n_lin && rc == SDS_OK; i++) {
        sds_linear_ref r = sds_model_linear(m, l, i);
        const int32_t g = r.group;
        const size_t ng = (size_t)(r.cols * r.cols), nw = (size_t)(r.rows * r.cols);
        if (c->two_paths) {
            ls->ys[i] = sds_malloc((size_t)(T * r.rows) * sizeof(float), "SDS outputs");
            if (!ls->ys[i]) rc = SDS_ERR_IO;
        }
        if (rc == SDS_OK && ls->out_route[g]) {
            ls->S[i] = sds_calloc(nw, sizeof(float), "SDS target term");
            ls->Sacc[i] = sds_calloc(nw, sizeof(sds_xsum_t), "SDS target term");
            if (!ls->S[i] || !ls->Sacc[i]) rc = SDS_ERR_IO;
            if (rc == SDS_OK && c->auto_mix) {
                ls->Sv[i] = sds_calloc(nw, sizeof(float), "SDS target term");
                ls->Svacc[i] = sds_calloc(nw, sizeof(sds_xsum_t), "SDS target term");
                if (!ls->Sv[i] || !ls->Svacc[i]) rc = SDS_ERR_IO;
            }
        }
        if (h[g].cols != 0) continue;
        if (rc == SDS_OK) rc = sds_hessian_init(&h[g], r.cols, flags);
        if (rc == SDS_OK) rc = sds_hessian_batch(&h[g], T, c->gram_batch);
        if (rc == SDS_OK && c->two_paths) {
            ls->xs_buf[g] = sds_malloc((size_t)(T * r.cols) * sizeof(float), "SDS inputs");
            if (!ls->xs_buf[g]) rc = SDS_ERR_IO;
        }
        if (rc == SDS_OK && c->two_paths && !ls->out_route[g]) {
            K[g] = sds_calloc(ng, sizeof(float), "SDS cross Gram");
            ls->Kacc[g] = sds_calloc(ng, sizeof(sds_xsum_t), "SDS cross Gram");
            ls->xd_buf[g] = sds_malloc((size_t)(T * r.cols) * sizeof(float), "SDS inputs");
            if (!K[g] || !ls->Kacc[g] || !ls->xd_buf[g]) rc = SDS_ERR_IO;
        }
        if (rc == SDS_OK && c->auto_mix) {
            rc = sds_hessian_init(&hv[g], r.cols, SDS_HESSIAN_GRAM);
            if (rc == SDS_OK) rc = sds_hessian_batch(&hv[g], T, c->gram_batch);
            if (rc == SDS_OK && !ls->out_route[g]) {
                Kv[g] = sds_calloc(ng, sizeof(float), "SDS cross Gram");
                ls->Kvacc[g] = sds_calloc(ng, sizeof(sds_xsum_t), "SDS cross Gram");
                if (!Kv[g] || !ls->Kvacc[g]) rc = SDS_ERR_IO;
            }
        }
    }
    if (rc == SDS_OK && c->two_paths) {
        // every sequence's output sums; this rank fills its own sequences' entries
        ls->ysum = sds_calloc((size_t)(N * n_lin * 3), sizeof(double), "SDS output sums");
        if (!ls->ysum) rc = SDS_ERR_IO;
    }
    capture_ctx cc = {h, NULL, rc, OUT_OFF, ls->ys, NULL};
    sds_capture cap = {capture_add, &cc, c->two_paths ? capture_out : NULL};
    sds_model_work_set_capture(&c->w, &cap);
    const int receive = c->rreq && l == c->si.llo;
    double t0 = sds_now();
    for (int64_t s = 0; s < c->n_local && cc.rc == SDS_OK; s++) {
        if (receive) {
            const double tw = sds_now();
            MPI_Wait(&c->rreq[2 * s], MPI_STATUS_IGNORE);
            if (c->two_paths) MPI_Wait(&c->rreq[2 * s + 1], MPI_STATUS_IGNORE);
            c->t_handoff += sds_now() - tw;
            c->t_stats -= sds_now() - tw;
        }
        memcpy(c->x, c->inps + s * T * C, (size_t)(T * C) * sizeof(float));
        if (!c->two_paths) {
            sds_model_layer_forward(m, l, c->x, T, &c->w);
            continue;
        }
        cc.copy = ls->xs_buf;
        cc.out_mode = OUT_KEEP;
        sds_model_layer_forward(m, l, c->x, T, &c->w);
        cc.copy = ls->xd_buf;
        cc.out_mode = OUT_COMPARE;
        cc.ysum = ls->ysum + (c->lo + s) * n_lin * 3;
        sds_model_layer_forward(m, l, c->inps_d + s * T * C, T, &c->w);
        cc.copy = NULL;
        cc.out_mode = OUT_OFF;
        const int odd = c->auto_mix && (c->lo + s) % 2 == 1;
        for (int32_t g = 0; g < SDS_CAPTURE_GROUPS && cc.rc == SDS_OK; g++) {
            if (h[g].cols == 0) continue;
            const int cg = (int)h[g].cols;
            const float *xs = ls->xs_buf[g], *xd = ls->xd_buf[g];
            cc.rc = sds_hessian_add(&h[g], xs, 1, T);
            if (odd && cc.rc == SDS_OK) cc.rc = sds_hessian_add(&hv[g], xs, 1, T);
            if (ls->out_route[g]) continue;
            // this sequence's X_s^T X_d, added exactly (K serves as the scratch until the end)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cg, cg, (int)T, 1.0f, xs, cg, xd,
                        cg, 0.0f, K[g], cg);
            const size_t ng = (size_t)cg * (size_t)cg;
            if (cc.rc == SDS_OK) cc.rc = cross_add(ls->Kacc[g], K[g], ng, "cross Gram");
            if (odd && cc.rc == SDS_OK) cc.rc = cross_add(ls->Kvacc[g], K[g], ng, "cross Gram");
        }
        for (int32_t i = 0; i < n_lin && cc.rc == SDS_OK; i++) {
            const int32_t g = ls->lin_group[i];
            if (!ls->out_route[g]) continue;
            // this sequence's (Y_s - Y_d)^T X_s = W_d X_s^T X_s - W_d X_d^T X_s, added exactly
            // (S serves as the scratch until the end)
            const int rows = (int)sds_model_linear(m, l, i).rows, cg = (int)h[g].cols;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, cg, (int)T, 1.0f, ls->ys[i],
                        rows, ls->xs_buf[g], cg, 0.0f, ls->S[i], cg);
            const size_t nw = (size_t)rows * (size_t)cg;
            cc.rc = cross_add(ls->Sacc[i], ls->S[i], nw, "output term");
            if (odd && cc.rc == SDS_OK)
                cc.rc = cross_add(ls->Svacc[i], ls->S[i], nw, "output term");
        }
    }
    sds_model_work_set_capture(&c->w, NULL);
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++) {
        // (sequences still waiting for their batch)
        if (cc.rc == SDS_OK && h[g].cols != 0) cc.rc = sds_hessian_flush(&h[g]);
        if (cc.rc == SDS_OK && hv[g].cols != 0) cc.rc = sds_hessian_flush(&hv[g]);
    }
    for (int32_t i = 0; i < MAX_LINEAR; i++) {
        free(ls->ys[i]);
        ls->ys[i] = NULL;
    }
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++) layer_stats_free_group(ls, g, 0);
    c->t_stats += sds_now() - t0;
    t0 = sds_now();
    if (!stage_ok(c, cc.rc, &own)) return own;
    MPI_Comm sc = c->si.scomm;
    if (c->two_paths) {
        // Each sequence's sums come from the one rank that holds it (the others add zeros), and
        // they are added in sequence order: the same bits at any rank count.
        MPI_Allreduce(MPI_IN_PLACE, ls->ysum, (int)(N * n_lin * 3), MPI_DOUBLE, MPI_SUM, sc);
        const double scale = 2.0 / (double)N; // as the Hessian's
        for (int32_t i = 0; i < n_lin; i++)
            for (int k = 0; k < 3; k++) {
                double all = 0.0, odd = 0.0;
                for (int64_t q = 0; q < N; q++) {
                    const double v = ls->ysum[(q * n_lin + i) * 3 + k];
                    all += v;
                    if (q % 2 == 1) odd += v;
                }
                ls->y[i][k] = all * scale;
                ls->yv[i][k] = odd * scale;
            }
        layer_stats_free_outputs(ls);
    }
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++) {
        if (h[g].cols == 0) continue;
        const int n2 = (int)(h[g].cols * h[g].cols);
        // exact sums over every stage rank's sequences (X^T X, sum of squares): the same bits
        // at any rank count
        sds_hessian_allreduce(sc, &h[g]);
        h[g].nseq = N;
        if (!stage_ok(c, sds_hessian_finish(&h[g]), &own)) return own;
        if (c->auto_mix) {
            // held-out Hessian on the same scale as the full one (2 / nsamples)
            sds_hessian_allreduce(sc, &hv[g]);
            hv[g].nseq = N;
            if (!stage_ok(c, sds_hessian_finish(&hv[g]), &own)) return own;
        }
        if (!c->two_paths || ls->out_route[g]) continue;
        cross_reduce(sc, &ls->Kacc[g], K[g], (size_t)n2, N);
        if (c->auto_mix) cross_reduce(sc, &ls->Kvacc[g], Kv[g], (size_t)n2, N); // held-out
    }
    for (int32_t i = 0; i < n_lin && c->two_paths; i++) {
        if (!ls->out_route[ls->lin_group[i]]) continue;
        // the output route's S (and held-out Sv)
        const sds_linear_ref r = sds_model_linear(m, l, i);
        const size_t nw = (size_t)(r.rows * r.cols);
        cross_reduce(sc, &ls->Sacc[i], ls->S[i], nw, N);
        if (c->auto_mix) cross_reduce(sc, &ls->Svacc[i], ls->Sv[i], nw, N);
    }
    c->t_reduce += sds_now() - t0;
    return own;
}

// ---- SparseGPT on the stage's grid (SPEC 4: no rank holds a whole H or U) ----
//
// Every sequence's input to each group is broadcast over the stage, and each rank adds only
// its block-cyclic piece of X^T X to exact sums (mpi/dist_gram.h): the pieces are the same bits
// at any G. The factorisation (ScaLAPACK, in double) and the sweep on row shards are
// mpi/dist_sparsegpt.h's; row shards start at multiples of GRID_ROW_ALIGN rows so that BLAS
// groups rows alike at any G (a shard boundary inside a kernel's row group changed the last
// bits of that row's weights, measured at 3 ranks; src/sparsegpt.h says why 96).
// Block size of the grids and tiles: 256. The Gram is one sgemm per block and sequence (for
// grid invariance, mpi/dist_gram.h), and at 128 those calls were small enough to cost: OPT-125M
// shapes, 8 x 512 tokens, one rank: 63.8 s at 128, 51.5 s at 256, 51.1 s for the former
// whole-H path (statistics 27.6, 22.2 and 21.8 s). 256 still spreads a 3072-wide fc2 over a
// 4 x 4 grid (12 blocks a side).
enum { GRID_ROW_ALIGN = SDS_SPARSEGPT_ROW_ALIGN, GRID_NB = 256 };

// A group at most --local-hessian-max columns wide takes the other route of SPEC 4 (sequences
// split across ranks, the Hessian reduced onto the grid): each rank sums its own sequences' X^T X
// (sds_hessian: one ssyrk per sequence, exact sums), the sums are all-reduced, and each rank
// keeps its piece of H. No inputs are broadcast, every rank's share is its sequences' share
// rather than its blocks' (3 block columns at 768 columns: 2.5 of 4.5 block-equivalents on one
// of 2 ranks), and the calls are whole-width ssyrks; the price is a whole H and its exact sums
// on every rank (24 bytes per entry of the upper triangle, 7.1 MB at 768 columns, 50 MB at
// 2048). The exact sums make both routes independent of the rank count, and the route depends
// on the width only; the two routes' per-sequence fp32 products agree except where OpenBLAS's
// ssyrk and its per-block calls round differently (mpi/dist_gram.h).
typedef struct {
    sds_dist_gram dg[SDS_CAPTURE_GROUPS];
    int local[SDS_CAPTURE_GROUPS];     // the group takes the local route
    sds_hessian h[SDS_CAPTURE_GROUPS]; // its sums, until its piece is made
    int add_rc;                        // the local route's first failure while capturing
    float *A[SDS_CAPTURE_GROUPS];      // (local) H's piece, upper triangle; then U^T below it
    float *diag[SDS_CAPTURE_GROUPS];   // (cols) diag(H), every rank
    float *cap[SDS_CAPTURE_GROUPS];    // (T, cols) this rank's sequence's input
    float *rbuf[SDS_CAPTURE_GROUPS];   // (T, cols) another rank's, as broadcast
    int64_t cols[SDS_CAPTURE_GROUPS];
} grid_stats;

static void grid_stats_free(grid_stats *gs) {
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++) {
        sds_dist_gram_free(&gs->dg[g]);
        sds_hessian_free(&gs->h[g]);
        free(gs->A[g]);
        free(gs->diag[g]);
        free(gs->cap[g]);
        free(gs->rbuf[g]);
    }
    memset(gs, 0, sizeof *gs);
}

static void grid_capture(void *ctx, int32_t group, const float *x, int64_t T, int64_t cols) {
    grid_stats *gs = ctx;
    SDS_ASSERT(group >= 0 && group < SDS_CAPTURE_GROUPS && gs->cols[group] == cols);
    if (gs->local[group]) {
        if (gs->add_rc == SDS_OK) gs->add_rc = sds_hessian_add(&gs->h[group], x, 1, T);
        return;
    }
    memcpy(gs->cap[group], x, (size_t)(T * cols) * sizeof(float));
}

// Rows [*row0, *row0 + *n) of `rows` for stage rank j of G.
static void grid_rows(int64_t rows, int G, int j, int64_t *row0, int64_t *n) {
    const int64_t a = rows * j / G / GRID_ROW_ALIGN * GRID_ROW_ALIGN;
    const int64_t b = j + 1 == G ? rows : rows * (j + 1) / G / GRID_ROW_ALIGN * GRID_ROW_ALIGN;
    *row0 = a;
    *n = b - a;
}

// Every stage rank's share of a (rows, cols) sublayer for the gathers: counts[j] entries at
// offset counts[G + j], as grid_rows splits the rows.
static void grid_counts(int64_t rows, int64_t cols, int G, int *counts) {
    for (int j = 0; j < G; j++) {
        int64_t a, n;
        grid_rows(rows, G, j, &a, &n);
        counts[j] = (int)(n * cols);
        counts[G + j] = (int)(a * cols);
    }
}

// (stage collective) The grids, one per input group of the stage's layers.
static int grid_init(run_ctx *c) {
    int rc = SDS_OK;
    for (int32_t i = 0; i < sds_model_n_linear(c->m) && rc == SDS_OK; i++) {
        const sds_linear_ref r = sds_model_linear(c->m, c->si.llo, i);
        if (c->grids[r.group].n != 0) continue;
        rc = sds_dist_grid_init(&c->grids[r.group], c->si.scomm, r.cols, GRID_NB);
    }
    return rc;
}

static void grid_free(run_ctx *c) {
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++)
        if (c->grids[g].n != 0) sds_dist_grid_free(&c->grids[g]);
}

// The local route's H for group g, from the exact sums of every stage rank's sequences (already
// all-reduced): this rank converts only its block-cyclic piece's entries (upper triangle) and the
// diagonal (sds_hessian_entry: sds_hessian_finish's arithmetic).
static int local_hessian_piece(run_ctx *c, grid_stats *gs, int32_t g) {
    sds_hessian *h = &gs->h[g];
    const sds_dist_grid *gr = &c->grids[g];
    const int64_t n = h->cols;
    h->nseq = c->o->nsamples;
    free(h->H); // (one sequence's scratch)
    h->H = NULL;
    gs->A[g] =
        sds_malloc((size_t)gr->lld * (size_t)gr->nloc * sizeof(float) + 1, "the Hessian's piece");
    gs->diag[g] = sds_malloc((size_t)n * sizeof(float), "the Hessian's diagonal");
    if (!gs->A[g] || !gs->diag[g]) return SDS_ERR_IO;
    for (int64_t il = 0; il < gr->mloc; il++) {
        const int64_t i = sds_dist_grid_row_global(gr, il);
        for (int64_t jl = 0; jl < gr->nloc; jl++) {
            const int64_t j = sds_dist_grid_col_global(gr, jl);
            if (j >= i) gs->A[g][jl * gr->lld + il] = sds_hessian_entry(h, i, j);
        }
    }
    for (int64_t j = 0; j < n; j++) gs->diag[g][j] = sds_hessian_entry(h, j, j);
    sds_hessian_free(h);
    return SDS_OK;
}

// (stage collective) Step 1 on the grid for layer l: H's pieces and its diagonal per group.
// Sequences go round by round: each rank runs the dense layer on its next sequence, then every
// rank's captured inputs are broadcast in turn and every rank adds its piece of their Gram.
static int grid_stats_compute(run_ctx *c, int64_t l, grid_stats *gs) {
    const int64_t T = c->T, N = c->o->nsamples;
    const int G = c->si.ssize;
    int own = SDS_OK, rc = SDS_OK;
    memset(gs, 0, sizeof *gs);
    int64_t buf_bytes = 0;
    for (int32_t i = 0; i < sds_model_n_linear(c->m) && rc == SDS_OK; i++) {
        const sds_linear_ref r = sds_model_linear(c->m, l, i);
        const int32_t g = r.group;
        if (gs->cols[g] != 0) continue;
        gs->cols[g] = r.cols;
        if (r.cols <= c->o->local_hessian_max) {
            gs->local[g] = 1;
            rc = sds_hessian_init(&gs->h[g], r.cols, SDS_HESSIAN_GRAM);
            if (rc == SDS_OK) rc = sds_hessian_batch(&gs->h[g], T, c->gram_batch);
            continue;
        }
        rc = sds_dist_gram_init(&gs->dg[g], &c->grids[g], T);
        if (rc == SDS_OK) rc = sds_dist_gram_threads(&gs->dg[g], c->gram_batch);
        gs->cap[g] = sds_malloc((size_t)(T * r.cols) * sizeof(float), "captured inputs");
        gs->rbuf[g] = sds_malloc((size_t)(T * r.cols) * sizeof(float), "broadcast inputs");
        buf_bytes += 8 * T * r.cols;
        if (rc == SDS_OK && (!gs->cap[g] || !gs->rbuf[g])) rc = SDS_ERR_IO;
    }
    if (!stage_ok(c, rc, &own)) return own;
    sds_capture cap = {grid_capture, gs, NULL};
    const int receive = c->rreq && l == c->si.llo;
    const int64_t rounds = (N + G - 1) / G;
    MPI_Comm sc = c->si.scomm;
    for (int64_t k = 0; k < rounds; k++) {
        double t0 = sds_now();
        if (k < c->n_local) {
            if (receive) {
                const double tw = sds_now();
                MPI_Wait(&c->rreq[2 * k], MPI_STATUS_IGNORE);
                c->t_handoff += sds_now() - tw;
                t0 = sds_now();
            }
            memcpy(c->x, c->inps + k * T * c->C, (size_t)(T * c->C) * sizeof(float));
            sds_model_work_set_capture(&c->w, &cap);
            sds_model_layer_forward(c->m, l, c->x, T, &c->w);
            sds_model_work_set_capture(&c->w, NULL);
        }
        c->t_stats += sds_now() - t0;
        for (int j = 0; j < G; j++) {
            const int64_t nj = N * (j + 1) / G - N * j / G;
            if (k >= nj) continue;
            for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++) {
                if (gs->cols[g] == 0 || gs->local[g]) continue;
                float *buf = j == c->si.srank ? gs->cap[g] : gs->rbuf[g];
                const double tb = sds_now();
                MPI_Bcast(buf, (int)(T * gs->cols[g]), MPI_FLOAT, j, sc);
                const double ta = sds_now();
                c->t_reduce += ta - tb;
                // (after a failure the broadcasts go on, so that no rank waits in one)
                if (rc == SDS_OK) rc = sds_dist_gram_add(&gs->dg[g], buf, T);
                c->t_stats += sds_now() - ta;
            }
        }
    }
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS && gs->add_rc == SDS_OK; g++)
        if (gs->local[g]) gs->add_rc = sds_hessian_flush(&gs->h[g]);
    if (rc == SDS_OK) rc = gs->add_rc;
    int64_t piece = 0;
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++) {
        const int64_t n = gs->h[g].cols; // (the local route: its sums and fp32 scratch)
        piece += gs->dg[g].peak_bytes + 16 * sds_hessian_packed_len(&gs->h[g]) + 4 * n * n;
    }
    if (piece > c->grid_piece_peak) c->grid_piece_peak = piece;
    if (buf_bytes > c->grid_buffer_peak) c->grid_buffer_peak = buf_bytes;
    if (!stage_ok(c, rc, &own)) return own;
    const double tr = sds_now();
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++)
        if (gs->local[g]) sds_hessian_allreduce(c->si.scomm, &gs->h[g]);
    c->t_reduce += sds_now() - tr;
    const double t0 = sds_now();
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS && rc == SDS_OK; g++) {
        if (gs->cols[g] == 0) continue;
        if (gs->local[g]) {
            rc = local_hessian_piece(c, gs, g);
            continue;
        }
        free(gs->cap[g]);
        free(gs->rbuf[g]);
        gs->cap[g] = gs->rbuf[g] = NULL;
        const sds_dist_grid *gr = &c->grids[g];
        gs->A[g] = sds_malloc((size_t)gr->lld * (size_t)gr->nloc * sizeof(float) + 1,
                              "the Hessian's piece");
        gs->diag[g] = sds_malloc((size_t)gs->cols[g] * sizeof(float), "the Hessian's diagonal");
        rc = gs->A[g] && gs->diag[g] ? sds_dist_gram_finish(&gs->dg[g], gs->A[g]) : SDS_ERR_IO;
    }
    if (!stage_ok(c, rc, &own)) return own;
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++)
        if (gs->cols[g] != 0 && !gs->local[g]) sds_dist_gram_exchange(&gs->dg[g], gs->A[g]);
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++)
        if (gs->cols[g] != 0 && !gs->local[g])
            sds_dist_grid_diag(&c->grids[g], gs->A[g], gs->diag[g]);
    c->t_stats += sds_now() - t0;
    return own;
}

// (stage collective) SparseGPT on sublayer r (whole, as every stage rank holds it) on the grid of
// its group: this rank prunes rows [row0, row0 + nrows) into mask_local; then every stage rank
// gets the whole pruned weight (for the forward pass) and the same statistics in st.
static int grid_prune_sublayer(run_ctx *c, grid_stats *gs, sds_linear_ref r, const char *name,
                               int64_t row0, int64_t nrows, uint8_t *mask_local,
                               sds_h5out_stats *st) {
    const int32_t g = r.group;
    const sds_dist_grid *gr = &c->grids[g];
    const int G = c->si.ssize;
    const size_t numel = (size_t)(r.rows * r.cols);
    int own = SDS_OK;
    float *dense = sds_malloc(numel * sizeof(float), "dense weights");
    if (!stage_ok(c, dense ? SDS_OK : SDS_ERR_IO, &own)) {
        free(dense);
        return own;
    }
    memcpy(dense, r.w, numel * sizeof(float));
    // (a group's earlier sublayer left U^T's diagonal in A: its lower triangle comes back from
    // the upper one inside the call, the diagonal from here)
    sds_dist_grid_set_diag(gr, gs->A[g], gs->diag[g]);
    sds_dist_sparsegpt_opts dopt = sds_dist_sparsegpt_defaults();
    dopt.blocksize = c->o->blocksize;
    dopt.percdamp = c->o->percdamp;
    dopt.tiles = 1; // the same bits at any stage size (mpi/dist_tiles.h)
    sds_dist_sparsegpt_info info;
    int rc = sds_dist_sparsegpt_grid(gr, name, gs->A[g], r.w + row0 * r.cols, nrows, r.rows,
                                     c->o->pattern, &dopt, mask_local, &info);
    if (rc == SDS_OK) {
        int64_t piece = 0;
        for (int32_t k = 0; k < SDS_CAPTURE_GROUPS; k++)
            if (gs->A[k]) piece += 4 * (int64_t)c->grids[k].lld * c->grids[k].nloc;
        piece += info.peak_bytes;
        if (piece > c->grid_piece_peak) c->grid_piece_peak = piece;
        // every stage rank gets every row (the next layer's forward needs them all)
        int *counts = sds_malloc((size_t)G * 2 * sizeof(int), "row counts");
        rc = stage_ok(c, counts ? SDS_OK : SDS_ERR_IO, &own) ? SDS_OK : own;
        if (rc == SDS_OK) {
            grid_counts(r.rows, r.cols, G, counts);
            MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, r.w, counts, counts + G, MPI_FLOAT,
                           c->si.scomm);
        }
        free(counts);
    }
    double num = 0.0, den = 0.0;
    if (rc == SDS_OK) rc = sds_dist_quad_trace(gr, gs->A[g], gs->diag[g], dense, r.rows, &den);
    if (rc == SDS_OK) {
        for (size_t k = 0; k < numel; k++) dense[k] -= r.w[k];
        rc = sds_dist_quad_trace(gr, gs->A[g], gs->diag[g], dense, r.rows, &num);
    }
    free(dense);
    if (rc != SDS_OK) return rc;
    size_t zeros = 0;
    for (size_t k = 0; k < numel; k++) zeros += r.w[k] == 0.0f;
    st->sparsity = (double)zeros / (double)numel;
    st->damping = info.sg.percdamp;
    st->rel_err_first = st->rel_err_final = den > 0.0 ? num / den : 0.0;
    return SDS_OK;
}

// Step 3 for layer l (stage ranks): the pruned layer's outputs are the next layer's inputs;
// after a stage's last layer each sequence goes on to its rank in the next stage as soon as
// it is computed (with the dense path's, for SDS's dense target).
static void layer_advance(run_ctx *c, int64_t l) {
    const int64_t T = c->T, C = c->C, N = c->o->nsamples;
    const int send = l == c->si.lhi - 1 && c->si.stage + 1 < c->si.S;
    const int next = c->si.stage + 1;
    const int Gn = send ? stage_size(c->P, c->si.S, next) : 1;
    for (int64_t s = 0; s < c->n_local; s++) {
        float *xs = c->inps + s * T * C;
        const double t0 = sds_now();
        sds_model_layer_forward(c->m, l, xs, T, &c->w);
        c->t_advance += sds_now() - t0;
        if (!send) continue;
        const double ts = sds_now();
        const int dst = stage_world(c->P, c->si.S, next, seq_owner(N, Gn, c->lo + s));
        MPI_Send(xs, (int)(T * C), MPI_FLOAT, dst, TAG_ACTS, MPI_COMM_WORLD);
        if (c->two_paths)
            MPI_Send(c->inps_d + s * T * C, (int)(T * C), MPI_FLOAT, dst, TAG_ACTS_DENSE,
                     MPI_COMM_WORLD);
        c->t_handoff += sds_now() - ts;
    }
}

// (stage > 0) Receives for every local sequence, posted before any work so that the stage
// before never waits on this one.
static void post_receives(run_ctx *c) {
    const int64_t T = c->T, C = c->C, N = c->o->nsamples;
    const int prev = c->si.stage - 1, Gp = stage_size(c->P, c->si.S, prev);
    for (int64_t s = 0; s < c->n_local; s++) {
        const int src = stage_world(c->P, c->si.S, prev, seq_owner(N, Gp, c->lo + s));
        MPI_Irecv(c->inps + s * T * C, (int)(T * C), MPI_FLOAT, src, TAG_ACTS, MPI_COMM_WORLD,
                  &c->rreq[2 * s]);
        if (c->two_paths)
            MPI_Irecv(c->inps_d + s * T * C, (int)(T * C), MPI_FLOAT, src, TAG_ACTS_DENSE,
                      MPI_COMM_WORLD, &c->rreq[2 * s + 1]);
    }
}

// Receives still pending after a failure are cancelled.
static void cancel_receives(run_ctx *c) {
    if (!c->rreq) return;
    for (int64_t k = 0; k < 2 * c->n_local; k++) {
        if (c->rreq[k] == MPI_REQUEST_NULL) continue;
        MPI_Cancel(&c->rreq[k]);
        MPI_Wait(&c->rreq[k], MPI_STATUS_IGNORE);
    }
}

// Which of a stage's G ranks prunes each sublayer: largest cost first, each to the least
// loaded rank (lowest on ties), the same on every rank. Cost: `measured` where given (each
// sublayer's seconds in the layer before, which every rank has from its owner's report), else
// SparseGPT's (and SDS's) cols^3 + 2 rows cols^2, else rows cols. (Where a sublayer is pruned
// does not change it.) The model misjudges SDS's mix: on SmolLM2 it gives down_proj (the
// largest) one rank and the six others to the second rank, which then takes 45% longer.
static void assign_owners(sds_model *m, int64_t layer, int32_t n_lin, int G, int is_cubic,
                          const double *measured, int *owner) {
    double cost[8], load[256];
    int order[8];
    SDS_ASSERT(n_lin <= 8);
    for (int32_t i = 0; i < n_lin; i++) {
        const sds_linear_ref r = sds_model_linear(m, layer, i);
        const double rows = (double)r.rows, cols = (double)r.cols;
        cost[i] = measured   ? measured[i]
                  : is_cubic ? cols * cols * cols + 2.0 * rows * cols * cols
                             : rows * cols;
        order[i] = i;
    }
    for (int32_t a = 1; a < n_lin; a++) // insertion sort, descending cost, stable
        for (int32_t b = a; b > 0 && cost[order[b]] > cost[order[b - 1]]; b--) {
            const int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    const int ng = G < 256 ? G : 256;
    for (int j = 0; j < ng; j++) load[j] = 0.0;
    for (int32_t k = 0; k < n_lin; k++) {
        int best = 0;
        for (int j = 1; j < ng; j++)
            if (load[j] < load[best]) best = j;
        owner[order[k]] = best;
        load[best] += cost[order[k]];
    }
}

// The stage count: --stages, or the fewest stages whose ranks fit their share of the node's
// memory by the plan's model (src/plan.h; `sds-mpi plan` prints it).
static int choose_stages(MPI_Comm comm, const sds_prune_opts *o, const sds_model_config *cfg,
                         int32_t gram_batch, int *S) {
    int P;
    MPI_Comm_size(comm, &P);
    if (o->stages > 0) {
        if (o->stages > P || o->stages > cfg->n_layers)
            return sds_error_set(SDS_ERR_USAGE,
                                 "--stages %lld: must be at most the rank count (%d) and the "
                                 "decoder layers (%lld)",
                                 (long long)o->stages, P, (long long)cfg->n_layers);
        *S = (int)o->stages;
        return SDS_OK;
    }
    // the memory of this node shared by the ranks on it, and the plan's per-rank peak
    MPI_Comm node;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    int local;
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
    const long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    double mem = (double)pages * (double)psz / (double)local;
    MPI_Allreduce(MPI_IN_PLACE, &mem, 1, MPI_DOUBLE, MPI_MIN, comm);
    sds_plan_input in;
    memset(&in, 0, sizeof in);
    in.cfg = *cfg;
    in.nranks = P;
    in.nsamples = o->nsamples;
    in.seqlen = o->seqlen
                    ? o->seqlen
                    : (cfg->max_position_embeddings < 2048 ? cfg->max_position_embeddings : 2048);
    in.method = (int)o->method;
    in.sds_dense_target = o->method == SDS_METHOD_SDS && o->sds.target == SDS_TARGET_DENSE;
    in.sds_auto_mix = in.sds_dense_target && o->sds.mix < 0.0;
    in.eval = o->eval != NULL || o->export_hf != NULL; // the last stage holds the head
    in.sds_adjust_given = 1;
    in.sds_adjust_iters = o->sds.adjust_iters;
    in.sds_adjust_nesterov = o->sds.adjust_nesterov;
    in.sds_parallel = in.method == SDS_METHOD_SDS && o->sds_parallel;
    in.local_hessian_max = o->local_hessian_max;
    in.gram_batch = gram_batch;
    sds_plan_machine mc;
    sds_plan_machine_default(&mc);
    *S = sds_plan_default_stages(&in, &mc, mem);
    return SDS_OK;
}

// A failure on this rank in sublayer name: its message gets the name in front.
static int name_failure(int lrc, const char *name) {
    if (lrc == SDS_OK) return lrc;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sds_error_message());
    sds_error_clear();
    return sds_error_set(lrc, "%s: %s", name, msg);
}

// A sublayer's report before it is pruned: its module name, layer, method and pattern.
static void report_head(sds_sublayer_report *rp, sds_model *m, const sds_prune_opts *o, int64_t l,
                        int32_t i) {
    sds_model_linear_module(m, l, i, rp->name, sizeof rp->name);
    rp->st.layer = (int32_t)l;
    snprintf(rp->st.method, sizeof rp->st.method, "%s", sds_method_name(o->method));
    sds_pattern_format(o->pattern, rp->st.pattern, sizeof rp->st.pattern);
}

// Rank 0's line for one pruned sublayer, with the ETA from done of all sublayers so far.
static void progress_line(const sds_sublayer_report *rp, const char *short_name, int64_t l,
                          double done, double all, double elapsed) {
    char sds_note[96] = "";
    if (strcmp(rp->st.method, "sds") == 0)
        snprintf(sds_note, sizeof sds_note, "  first %.4e %s", rp->st.rel_err_first,
                 extra_of(&rp->st, "kept_sds") > 0.5 ? "-> SDS" : "(kept)");
    printf("%5lld  %-22s %-10s %-7s %8.2f%% %11.4e %9.2g %8.2f%s  ETA %.0fs\n", (long long)l,
           short_name, rp->st.method, rp->st.pattern, 100.0 * rp->st.sparsity, rp->st.rel_err_final,
           rp->st.damping, rp->st.seconds, sds_note, elapsed / done * (all - done));
    fflush(stdout);
}

// (all ranks) Step 2 on the grid for layer l, whose stage is ks (G ranks, leader its first):
// its ranks prune each sublayer together, each writes its rows, and rank 0 keeps the mask.
static int grid_layer(run_ctx *c, grid_stats *gs, int64_t l, int ks, int G, sds_h5out *h5,
                      sds_prune_ckpt *ck, sds_sublayer_report *rep, double progress[3]) {
    const sds_prune_opts *o = c->o;
    const int mine = ks == c->si.stage;
    const int leader = stage_world(c->P, c->si.S, ks, 0);
    const int32_t n_lin = sds_model_n_linear(c->m);
    MPI_Comm comm = MPI_COMM_WORLD;
    int rc = SDS_OK;
    int *counts = mine ? sds_malloc((size_t)G * 2 * sizeof(int), "mask counts") : NULL;
    rc = sds_agree(comm, mine && !counts ? SDS_ERR_IO : SDS_OK);
    for (int32_t i = 0; i < n_lin && rc == SDS_OK; i++) {
        sds_sublayer_report *rp = &rep[l * n_lin + i];
        report_head(rp, c->m, o, l, i);
        // (the shapes are every layer's: a rank reads them from a layer it holds)
        const sds_linear_ref r = sds_model_linear(c->m, mine ? l : c->si.llo, i);
        int64_t row0 = 0, nrows = 0;
        uint8_t *mask = NULL, *full = NULL;
        int lrc = SDS_OK;
        if (mine) {
            const double t0 = sds_now();
            grid_rows(r.rows, G, c->si.srank, &row0, &nrows);
            mask = sds_calloc((size_t)(nrows * r.cols) + 1, 1, "mask");
            if (stage_ok(c, mask ? SDS_OK : SDS_ERR_IO, &lrc))
                lrc = grid_prune_sublayer(c, gs, r, rp->name, row0, nrows, mask, &rp->st);
            rp->st.seconds = sds_now() - t0;
            c->t_prune += rp->st.seconds;
        }
        const double tsync = sds_now();
        rc = sds_agree(comm, lrc);
        if (rc != SDS_OK) {
            free(mask);
            break;
        }
        {
            MPI_Bcast(&rp->st, (int)sizeof rp->st, MPI_BYTE, leader, comm);
            rc = sds_h5out_sublayer(h5, rp->name, r.rows, r.cols, row0, nrows,
                                    mine ? r.w + row0 * r.cols : NULL, mask, &rp->st);
        }
        // the stage's leader keeps its layers' masks for checkpoints: it gathers this one
        if (rc == SDS_OK && mine && c->si.srank == 0)
            full = sds_malloc((size_t)(r.rows * r.cols), "mask");
        if (rc == SDS_OK)
            rc = sds_agree(comm, mine && c->si.srank == 0 && !full ? SDS_ERR_IO : SDS_OK);
        if (rc == SDS_OK && mine) {
            grid_counts(r.rows, r.cols, G, counts);
            MPI_Gatherv(mask, (int)(nrows * r.cols), MPI_BYTE, full, counts, counts + G, MPI_BYTE,
                        0, c->si.scomm);
        }
        if (rc == SDS_OK)
            rc = sds_prune_ckpt_keep_mask(comm, ck, l, i, leader, full, r.rows * r.cols);
        free(full);
        free(mask);
        rc = sds_agree(comm, rc);
        c->t_sync += sds_now() - tsync;
        if (c->rank == 0 && rc == SDS_OK) {
            progress[0] += 1.0;
            progress_line(rp, r.name, l, progress[0], progress[1], sds_now() - progress[2]);
        }
    }
    free(counts);
    return rc;
}

// ---- --sds-order parallel: SDS on a stage's layers while the later stages work ----
//
// Each stage runs its own layers without the others: statistics, the first pruning (SDS's
// base) and the forward pass with the first-pruned weights, whose outputs go on to the next
// stage as soon as the stage's last layer is done. Then the stage runs SDS's steps 2-3 on its
// layers from what their owners kept (dense weights, mask, the Grams of the groups they own),
// while the later stages work; the last stage runs SDS on each layer at once, as no stage waits
// for it. Only then do all ranks write the output, layer by layer as in the sequential order.
// Agreements stay inside a stage; a stage's leader tells the next stage's leader whether it
// succeeded (and the dense weights' fingerprint so far) before that stage waits for any input,
// so that a failure upstream ends the later stages instead of leaving them waiting.
enum { TAG_STAGE_STATUS = 13, PAR_MAX_LIN = 8 };

// What a stage's leader tells the next stage's leader: its status, the fingerprint so far.
typedef struct {
    int64_t code;
    uint64_t fp;
} stage_status;

typedef struct {
    layer_stats ls; // the Grams of the groups whose sublayers this rank owns
    int own_at[PAR_MAX_LIN];
    float *dense[PAR_MAX_LIN];  // owned sublayers: the dense weights, until SDS has run
    uint8_t *mask[PAR_MAX_LIN]; // owned sublayers: the mask, until it is written
} held_layer;

// Keeps of ls only the groups keep[] marks (and none of the per-sequence scratch).
static void layer_stats_keep(layer_stats *ls, const int *keep) {
    for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++) layer_stats_free_group(ls, g, !keep[g]);
}

// (stage collective) Every rank of the stage gets held layer l's weights from their owners.
static void held_bcast(run_ctx *c, int64_t l, const held_layer *hl) {
    for (int32_t i = 0; i < sds_model_n_linear(c->m); i++) {
        const sds_linear_ref r = sds_model_linear(c->m, l, i);
        MPI_Bcast(r.w, (int)(r.rows * r.cols), MPI_FLOAT, hl->own_at[i], c->si.scomm);
    }
}

// (stage collective) SDS's steps 2-3 on held layer l: each owner on its sublayers, then the
// stage gets the final weights. Returns the stage's agreed status.
static int held_sds(run_ctx *c, int64_t l, held_layer *hl, sds_sublayer_report *rep) {
    const sds_prune_opts *o = c->o;
    const int32_t n_lin = sds_model_n_linear(c->m);
    int lrc = SDS_OK;
    for (int32_t i = 0; i < n_lin && lrc == SDS_OK; i++) {
        if (hl->own_at[i] != c->si.srank) continue;
        const sds_linear_ref r = sds_model_linear(c->m, l, i);
        sds_sublayer_report *rp = &rep[l * n_lin + i];
        const int32_t g = r.group;
        const layer_stats *ls = &hl->ls;
        dense_stats ds;
        const double t0 = sds_now();
        lrc = sds_step(o, r, &ls->h[g], dense_stats_of(ls, i, g, c->two_paths, c->auto_mix, &ds),
                       hl->dense[i], hl->mask[i], &rp->st, NULL, 0.0);
        if (lrc == SDS_OK) count_sparsity(r, &rp->st);
        free(hl->dense[i]);
        hl->dense[i] = NULL;
        rp->st.seconds += sds_now() - t0;
        c->t_prune += sds_now() - t0;
        lrc = name_failure(lrc, rp->name);
        if (c->own_fail == SDS_OK) c->own_fail = lrc;
    }
    layer_stats_free(&hl->ls);
    const double ts = sds_now();
    const int rc = sds_agree_quiet(c->si.scomm, lrc, NULL);
    if (rc == SDS_OK) held_bcast(c, l, hl);
    c->t_sync += sds_now() - ts;
    return rc;
}

// (stage collective) Layer l in the parallel order: statistics, first pruning of each owned
// sublayer (the dense weights and the mask kept), the stage gets the first-pruned weights, the
// layer's forward pass (sent on after the stage's last layer). Returns the stage's status.
static int held_first(run_ctx *c, int64_t l, held_layer *hl, sds_sublayer_report *rep,
                      uint64_t *fp) {
    const sds_prune_opts *o = c->o;
    sds_model *m = c->m;
    const int32_t n_lin = sds_model_n_linear(m);
    const int own = layer_stats_compute(c, l, &hl->ls);
    if (c->own_fail == SDS_OK) c->own_fail = own;
    int rc = sds_agree_quiet(c->si.scomm, own, NULL);
    if (rc != SDS_OK) return rc;
    if (c->si.srank == 0)
        for (int32_t i = 0; i < n_lin; i++) {
            const sds_linear_ref r = sds_model_linear(m, l, i);
            *fp = sds_fnv1a64(*fp, r.w, (size_t)(r.rows * r.cols) * sizeof(float));
        }
    assign_owners(m, l, n_lin, c->si.ssize, 1, NULL, hl->own_at);
    int keep[SDS_CAPTURE_GROUPS] = {0};
    int lrc = SDS_OK;
    for (int32_t i = 0; i < n_lin && lrc == SDS_OK; i++) {
        if (hl->own_at[i] != c->si.srank) continue;
        const sds_linear_ref r = sds_model_linear(m, l, i);
        sds_sublayer_report *rp = &rep[l * n_lin + i];
        keep[r.group] = 1;
        const double t0 = sds_now();
        const size_t numel = (size_t)(r.rows * r.cols);
        hl->dense[i] = sds_malloc(numel * sizeof(float), "dense weights");
        hl->mask[i] = sds_calloc(numel, 1, "mask");
        lrc = hl->dense[i] && hl->mask[i] ? SDS_OK : SDS_ERR_IO;
        if (lrc == SDS_OK) {
            memcpy(hl->dense[i], r.w, numel * sizeof(float));
            lrc = first_prune(o, r, &hl->ls.h[r.group], hl->mask[i], &rp->st.damping, NULL);
        }
        rp->st.seconds = sds_now() - t0;
        c->t_prune += rp->st.seconds;
        lrc = name_failure(lrc, rp->name);
        if (c->own_fail == SDS_OK) c->own_fail = lrc;
    }
    layer_stats_keep(&hl->ls, keep);
    const double ts = sds_now();
    rc = sds_agree_quiet(c->si.scomm, lrc, NULL);
    if (rc == SDS_OK) held_bcast(c, l, hl);
    c->t_sync += sds_now() - ts;
    if (rc == SDS_OK) layer_advance(c, l);
    return rc;
}

// (all ranks) The layer loop in the parallel order; *fp: rank 0's fingerprint so far in, every
// rank's final one out. Returns the agreed status (printed on failure).
static int parallel_layers(run_ctx *c, sds_h5out *h5, sds_sublayer_report *rep, uint64_t *fp,
                           double progress[3]) {
    const sds_prune_opts *o = c->o;
    sds_model *m = c->m;
    const int32_t n_lin = sds_model_n_linear(m);
    SDS_ASSERT(n_lin <= PAR_MAX_LIN);
    const int P = c->P, S = c->si.S, stage = c->si.stage;
    const int64_t L = m->cfg.n_layers, llo = c->si.llo, lhi = c->si.lhi;
    MPI_Comm sc = c->si.scomm;
    for (int64_t l = 0; l < L; l++)
        for (int32_t i = 0; i < n_lin; i++) report_head(&rep[l * n_lin + i], m, o, l, i);
    // the stage before: did it succeed, and the fingerprint after its layers
    stage_status prev = {SDS_OK, *fp};
    if (stage > 0) {
        const double tw = sds_now();
        if (c->si.srank == 0)
            MPI_Recv(&prev, (int)sizeof prev, MPI_BYTE, stage_world(P, S, stage - 1, 0),
                     TAG_STAGE_STATUS, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Bcast(&prev, (int)sizeof prev, MPI_BYTE, 0, sc);
        c->t_handoff += sds_now() - tw;
    }
    uint64_t sfp = prev.fp;
    int rc = SDS_OK;
    held_layer *held = NULL;
    if (prev.code == SDS_OK) {
        held = sds_calloc((size_t)(lhi - llo), sizeof *held, "held layers");
        if (!held) c->own_fail = SDS_ERR_IO;
        rc = sds_agree_quiet(sc, held ? SDS_OK : SDS_ERR_IO, NULL);
    }
    // 1. first pruning and forward of every layer of the stage (SDS at once on the last stage)
    for (int64_t l = llo; l < lhi && held && rc == SDS_OK; l++) {
        held_layer *hl = &held[l - llo];
        rc = held_first(c, l, hl, rep, &sfp);
        if (rc == SDS_OK && stage == S - 1) rc = held_sds(c, l, hl, rep);
        const int why = rc == SDS_OK ? sds_stop_agree(sc, l) : SDS_STOP_NONE;
        if (why != SDS_STOP_NONE)
            rc = c->own_fail =
                sds_error_set(SDS_ERR_IO,
                              "%s: stopped after layer %lld with nothing written: --sds-order "
                              "parallel keeps no checkpoints (resubmit starts from scratch; "
                              "--sds-order sequential checkpoints)",
                              sds_stop_name(why), (long long)l);
    }
    // 2. the next stage may start; SDS on this stage's layers meanwhile
    if (stage + 1 < S && c->si.srank == 0) {
        const double ts = sds_now();
        const int64_t code = prev.code != SDS_OK ? prev.code : rc;
        const stage_status next = {code, sfp};
        MPI_Send(&next, (int)sizeof next, MPI_BYTE, stage_world(P, S, stage + 1, 0),
                 TAG_STAGE_STATUS, MPI_COMM_WORLD);
        c->t_handoff += sds_now() - ts;
    }
    for (int64_t l = llo; l < lhi && held && rc == SDS_OK && stage + 1 < S; l++)
        rc = held_sds(c, l, &held[l - llo], rep);
    // 3. every rank: the status (each rank its own failure, so that the message names the rank
    //    that failed; the stages after a failed one report none), then the output in layer order
    const double ti = sds_now();
    rc = sds_agree(MPI_COMM_WORLD, c->own_fail);
    c->t_idle += sds_now() - ti;
    MPI_Bcast(&sfp, 1, MPI_UINT64_T, stage_world(P, S, S - 1, 0), MPI_COMM_WORLD);
    *fp = sfp;
    const double tw = sds_now();
    for (int64_t l = 0; l < L && rc == SDS_OK; l++) {
        const int ks = sds_stage_of_layer(L, S, l), mine = ks == stage;
        int own_at[PAR_MAX_LIN];
        assign_owners(m, mine ? l : llo, n_lin, stage_size(P, S, ks), 1, NULL, own_at);
        for (int32_t i = 0; i < n_lin && rc == SDS_OK; i++) {
            const sds_linear_ref r = sds_model_linear(m, mine ? l : llo, i);
            const int owner = stage_world(P, S, ks, own_at[i]);
            sds_sublayer_report *rp = &rep[l * n_lin + i];
            MPI_Bcast(&rp->st, (int)sizeof rp->st, MPI_BYTE, owner, MPI_COMM_WORLD);
            const int is_owner = c->rank == owner;
            rc = sds_h5out_sublayer(h5, rp->name, r.rows, r.cols, 0, is_owner ? r.rows : 0,
                                    is_owner ? r.w : NULL, is_owner ? held[l - llo].mask[i] : NULL,
                                    &rp->st);
            rc = sds_agree(MPI_COMM_WORLD, rc);
            if (c->rank == 0 && rc == SDS_OK) {
                progress[0] += 1.0;
                progress_line(rp, r.name, l, progress[0], progress[1], sds_now() - progress[2]);
            }
        }
    }
    c->t_sync += sds_now() - tw;
    for (int64_t l = llo; held && l < lhi; l++) {
        layer_stats_free(&held[l - llo].ls);
        for (int32_t i = 0; i < n_lin; i++) {
            free(held[l - llo].dense[i]);
            free(held[l - llo].mask[i]);
        }
    }
    free(held);
    return rc;
}

static int prune_run(MPI_Comm comm, const sds_prune_opts *o_in) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    sds_prune_opts o = *o_in;
    const double t_start = sds_now();

    // an --export-hf directory that would be refused at the end is refused before any work
    int rc =
        sds_agree(comm, rank == 0 && o.export_hf ? sds_hf_export_check_out(o.export_hf) : SDS_OK);
    if (rc != SDS_OK) return rc;
    // how many sequences' Grams at once (SDS_GRAM_BATCH, else the BLAS threads)
    int32_t gram_batch = 1;
    rc = sds_agree(comm, sds_hessian_batch_size(getenv("SDS_GRAM_BATCH"),
                                                openblas_get_num_threads(), &gram_batch));
    if (rc != SDS_OK) return rc;

    // stages: the configuration first, then each rank loads its stage's layers only
    sds_model m;
    rc = sds_agree(comm, sds_model_load_part(o.model, 0, 0, 0, &m));
    if (rc != SDS_OK) return rc;
    stage_info si;
    memset(&si, 0, sizeof si);
    rc = sds_agree(comm, choose_stages(comm, &o, &m.cfg, gram_batch, &si.S));
    const int64_t L = m.cfg.n_layers;
    sds_model_free(&m);
    if (rc != SDS_OK) return rc;
    si.stage = sds_stage_of_rank(size, si.S, rank);
    sds_stage_layers(L, si.S, si.stage, &si.llo, &si.lhi);
    MPI_Comm_split(comm, si.stage, rank, &si.scomm);
    MPI_Comm_rank(si.scomm, &si.srank);
    MPI_Comm_size(si.scomm, &si.ssize);
    const int32_t parts = (si.stage == 0 ? SDS_MODEL_EMBED : 0) |
                          (si.stage == si.S - 1 && (o.eval || o.export_hf) ? SDS_MODEL_HEAD : 0);
    rc = sds_agree(comm, sds_model_load_part(o.model, si.llo, si.lhi, parts, &m));
    if (rc != SDS_OK) {
        MPI_Comm_free(&si.scomm);
        return rc;
    }
    const int64_t max_pos = m.cfg.max_position_embeddings;
    if (o.seqlen == 0) o.seqlen = max_pos < 2048 ? max_pos : 2048;
    rc = SDS_OK;
    if (o.seqlen < 2 || o.seqlen > max_pos)
        rc = sds_error_set(SDS_ERR_USAGE, "--seqlen %lld: must be in [2, %lld] for this model",
                           (long long)o.seqlen, (long long)max_pos);
    // (every layer has the same shapes: each stage checks its own)
    for (int64_t l = si.llo; rc == SDS_OK && l < si.lhi; l++)
        for (int32_t i = 0; rc == SDS_OK && i < sds_model_n_linear(&m); i++) {
            sds_linear_ref r = sds_model_linear(&m, l, i);
            char nm[96];
            sds_model_linear_module(&m, l, i, nm, sizeof nm);
            rc = sds_pattern_check(o.pattern, r.rows, r.cols, nm);
            if (rc == SDS_OK && o.method == SDS_METHOD_SPARSEGPT &&
                o.pattern.kind == SDS_PATTERN_NM && o.blocksize % o.pattern.m != 0)
                rc = sds_error_set(SDS_ERR_USAGE,
                                   "--blocksize %lld is not a multiple of %d (--sparsity %s)",
                                   (long long)o.blocksize, o.pattern.m, o.sparsity_text);
        }
    rc = sds_agree(comm, rc);
    if (rc != SDS_OK) {
        sds_model_free(&m);
        MPI_Comm_free(&si.scomm);
        return rc;
    }

    // Calibration windows: drawn on rank 0, sent to all; a rank keeps its stage's share.
    const int64_t T = o.seqlen, C = sds_model_width(&m);
    int32_t *samples = sds_malloc((size_t)(o.nsamples * T) * sizeof(int32_t), "calibration");
    rc = samples ? SDS_OK : SDS_ERR_IO;
    if (rc == SDS_OK && rank == 0) rc = calibration_tokens(&o, &m, samples);
    rc = sds_agree(comm, rc);
    if (rc != SDS_OK) {
        free(samples);
        sds_model_free(&m);
        MPI_Comm_free(&si.scomm);
        return rc;
    }
    MPI_Bcast(samples, (int)(o.nsamples * T), MPI_INT32_T, 0, comm);
    const int64_t lo = o.nsamples * si.srank / si.ssize,
                  hi = o.nsamples * (si.srank + 1) / si.ssize;
    const int64_t n_local = hi - lo;

    uint64_t fp = SDS_FNV1A64_INIT;
    json_t *opts = options_json(&o, size);
    if (si.S > 1) json_object_set_new(opts, "stages", json_integer(si.S));
    char *opts_text = json_dumps(opts, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(opts);
    fp = sds_fnv1a64(fp, opts_text, strlen(opts_text));
    fp = sds_fnv1a64(fp, samples, (size_t)(o.nsamples * T) * sizeof(int32_t));

    // a checkpoint to resume from (or one that must not be overwritten) is found before any work
    const int32_t n_lin = sds_model_n_linear(&m);
    sds_sublayer_report *rep = sds_calloc((size_t)(L * n_lin), sizeof *rep, "report");
    sds_prune_ckpt ck;
    rc = sds_prune_ckpt_init(&ck, o.out, &m, comm, si.S, si.scomm);
    rc = sds_agree(comm, rc == SDS_OK && !rep ? SDS_ERR_IO : rc);
    sds_prune_state st = {&m, rep, opts_text, fp, fp, NULL, NULL, n_local, T, C};
    int64_t last_done = -1; // the last layer restored from the checkpoint
    if (rc == SDS_OK) rc = sds_prune_ckpt_open(comm, &ck, o.resume, &st, &last_done);
    if (rc != SDS_OK) goto out_early;
    fp = st.fp;

    double ppl_dense = 0.0, ppl_pruned = 0.0;
    if (o.eval) {
        if (rank == 0) printf("== dense model\n");
        rc = run_eval(comm, &o, &m, si.S, &ppl_dense);
        if (rc != SDS_OK) goto out_early;
    }

    // SDS with the dense target carries the dense model's activations beside the pruned ones
    run_ctx c;
    memset(&c, 0, sizeof c);
    c.o = &o;
    c.m = &m;
    c.si = si;
    c.P = size;
    c.rank = rank;
    c.lo = lo;
    c.n_local = n_local;
    c.T = T;
    c.C = C;
    const int is_sds = o.method == SDS_METHOD_SDS;
    c.two_paths = is_sds && o.sds.target == SDS_TARGET_DENSE;
    c.auto_mix = c.two_paths && o.sds.mix < 0.0;
    c.wanda_stat = o.method == SDS_METHOD_WANDA || (is_sds && o.sds.base == SDS_BASE_WANDA);
    // SparseGPT runs on the stage's grids (SDS keeps whole Grams on each sublayer's owner)
    c.grid = o.method == SDS_METHOD_SPARSEGPT;
    c.gram_batch = gram_batch;
    const int two_paths = c.two_paths, auto_mix = c.auto_mix;
    const size_t act_bytes = (size_t)((n_local ? n_local : 1) * T * C) * sizeof(float);
    c.inps = sds_malloc(act_bytes, "calibration activations");
    c.inps_d = two_paths ? sds_malloc(act_bytes, "dense calibration activations") : NULL;
    c.x = sds_malloc((size_t)(T * C) * sizeof(float), "activations");
    if (si.stage > 0) {
        c.rreq = sds_malloc((size_t)(2 * (n_local ? n_local : 1)) * sizeof *c.rreq, "receives");
        for (int64_t k = 0; c.rreq && k < 2 * n_local; k++) c.rreq[k] = MPI_REQUEST_NULL;
    }
    rc = sds_model_work_alloc(&c.w, &m, T);
    if (rc == SDS_OK && (!c.inps || !c.x || (two_paths && !c.inps_d) || (si.stage > 0 && !c.rreq)))
        rc = SDS_ERR_IO;
    rc = sds_agree(comm, rc);
    if (rc == SDS_OK && c.grid) rc = sds_agree(comm, grid_init(&c));
    if (rc != SDS_OK) {
        grid_free(&c);
        free(c.inps);
        free(c.inps_d);
        free(c.x);
        free(c.rreq);
        goto out_early;
    }
    if (si.stage == 0)
        for (int64_t s = 0; s < n_local; s++)
            sds_model_embed(&m, samples + (lo + s) * T, T, c.inps + s * T * C, &c.w);
    if (two_paths && si.stage == 0) memcpy(c.inps_d, c.inps, act_bytes);
    // (resuming: the stage that works on the next layer reads its inputs from the checkpoint,
    // and the stages before it send nothing more)
    if (si.stage > sds_prune_ckpt_acts_stage(&ck, last_done)) post_receives(&c);

    sds_h5out *h5 = NULL;
    rc = sds_agree(comm, sds_h5out_create(comm, o.out, &h5));
    if (rc != SDS_OK) {
        if (h5) sds_h5out_close(h5, 0);
        cancel_receives(&c);
        grid_free(&c);
        free(c.inps);
        free(c.inps_d);
        free(c.x);
        free(c.rreq);
        sds_model_work_free(&c.w);
        goto out_early;
    }
    if (rank == 0) {
        char pat[32];
        sds_pattern_format(o.pattern, pat, sizeof pat);
        printf("prune %s: %s at %s, %lld x %lld calibration tokens over %d rank%s\n", o.model,
               sds_method_name(o.method), pat, (long long)o.nsamples, (long long)T, size,
               size > 1 ? "s" : "");
        if (si.S > 1)
            for (int k = 0; k < si.S; k++) {
                int rlo, rhi;
                int64_t llo, lhi;
                sds_stage_ranks(size, si.S, k, &rlo, &rhi);
                sds_stage_layers(L, si.S, k, &llo, &lhi);
                printf("stage %d: ranks %d-%d, layers %lld-%lld\n", k, rlo, rhi - 1, (long long)llo,
                       (long long)(lhi - 1));
            }
        if (is_sds)
            printf("SDS over %s: target %s, re-dense %s%s, %d adjustment steps%s, %s order\n",
                   sds_base_name(o.sds.base), sds_target_name(o.sds.target),
                   o.sds.redense ? sds_solver_name(o.sds.solver) : "off",
                   o.sds.solver == SDS_SOLVER_RIDGE ? "" : " (iterative)", o.sds.adjust_iters,
                   o.sds.early_exit ? ", early exit" : "",
                   o.sds_parallel ? "parallel" : "sequential");
        printf("%5s  %-22s %-10s %-7s %9s %11s %9s %8s\n", "layer", "sublayer", "method", "pattern",
               "sparsity", "rel.error", "damping", "seconds");
        fflush(stdout);
    }
    // resuming: the finished layers' weights, masks and statistics (into the output, in their
    // order) and this rank's activations after the last of them
    st.inps = c.inps;
    st.inps_d = c.inps_d;
    if (last_done >= 0) rc = sds_prune_ckpt_restore(comm, &ck, &st, last_done, h5);
    const int64_t restored = (last_done + 1) * n_lin; // sublayers not pruned by this run

    const double t_layers = sds_now();
    double progress[3] = {0.0, (double)(L * n_lin - restored), t_layers};
    if (rc == SDS_OK && is_sds && o.sds_parallel) {
        SDS_ASSERT(last_done == -1); // (the parallel order never checkpoints)
        rc = parallel_layers(&c, h5, rep, &fp, progress);
    }
    for (int64_t l = last_done + 1; l < L && rc == SDS_OK && !(is_sds && o.sds_parallel); l++) {
        // the stage that owns layer l works on it; the others take part in the output
        const int ks = sds_stage_of_layer(L, si.S, l), Gs = stage_size(size, si.S, ks);
        const int mine = ks == si.stage, leader = stage_world(size, si.S, ks, 0);
        // 1. statistics of the dense layer on the pruned model's activations
        layer_stats ls;
        grid_stats gs;
        memset(&ls, 0, sizeof ls);
        memset(&gs, 0, sizeof gs);
        const int own = !mine    ? SDS_OK
                        : c.grid ? grid_stats_compute(&c, l, &gs)
                                 : layer_stats_compute(&c, l, &ls);
        const double ta = sds_now();
        rc = sds_agree(comm, own);
        if (mine)
            c.t_sync += sds_now() - ta;
        else
            c.t_idle += sds_now() - ta; // another stage's layer
        if (rank == leader)
            for (int32_t i = 0; i < n_lin; i++) {
                sds_linear_ref r = sds_model_linear(&m, l, i);
                fp = sds_fnv1a64(fp, r.w, (size_t)(r.rows * r.cols) * sizeof(float));
            }
        if (si.S > 1) MPI_Bcast(&fp, 1, MPI_UINT64_T, leader, comm);

        // 2. prune every sublayer: each on one rank of the stage (assign_owners), each rank all of
        // its
        //    sublayers at once (they are independent: each reads only its own weight and the
        //    layer's statistics); then, in order, the stage gets each result and everyone
        //    writes it (each rank its rows: the owner all of them)
        enum { MAX_LIN = 8 };
        SDS_ASSERT(n_lin <= MAX_LIN);
        uint8_t *masks[MAX_LIN] = {0};
        int lrcs[MAX_LIN] = {0}, own_at[MAX_LIN] = {0};
        int failed_here = 0;
        if (c.grid && rc == SDS_OK) rc = grid_layer(&c, &gs, l, ks, Gs, h5, &ck, rep, progress);
        grid_stats_free(&gs);
        if (!c.grid) {
            // after a layer this run pruned, its sublayers' seconds (every layer has the same
            // shapes) are the cost
            double measured[MAX_LIN];
            int have = l - 1 > last_done && Gs > 1;
            for (int32_t i = 0; have && i < n_lin; i++) {
                measured[i] = rep[(l - 1) * n_lin + i].st.seconds;
                have = measured[i] > 0.0;
            }
            assign_owners(&m, mine ? l : si.llo, n_lin, Gs,
                          o.method == SDS_METHOD_SPARSEGPT || o.method == SDS_METHOD_SDS,
                          have ? measured : NULL, own_at);
        }
        for (int32_t i = 0; i < n_lin && rc == SDS_OK && !c.grid; i++) {
            sds_sublayer_report *rp = &rep[l * n_lin + i];
            report_head(rp, &m, &o, l, i);
            if (rank != stage_world(size, si.S, ks, own_at[i]) || failed_here) continue;
            sds_linear_ref r = sds_model_linear(&m, l, i);
            const double t0 = sds_now();
            uint8_t *mask = sds_calloc((size_t)(r.rows * r.cols), 1, "mask");
            const int32_t g = r.group;
            dense_stats ds;
            int lrc = mask ? prune_sublayer(&o, r, &ls.h[g],
                                            dense_stats_of(&ls, i, g, two_paths, auto_mix, &ds),
                                            mask, &rp->st)
                           : SDS_ERR_IO;
            lrc = name_failure(lrc, rp->name);
            if (lrc != SDS_OK)
                failed_here = 1; // (its later sublayers are not needed: the run ends)
            masks[i] = mask;
            lrcs[i] = lrc;
            rp->st.seconds = sds_now() - t0;
            c.t_prune += rp->st.seconds;
        }
        for (int32_t i = 0; i < n_lin && rc == SDS_OK && !c.grid; i++) {
            // (the shapes are every layer's: a rank reads them from a layer it holds)
            sds_linear_ref r = sds_model_linear(&m, mine ? l : si.llo, i);
            const int owner = stage_world(size, si.S, ks, own_at[i]);
            sds_sublayer_report *rp = &rep[l * n_lin + i];
            uint8_t *mask = masks[i];
            masks[i] = NULL;
            const double tsync = sds_now();
            rc = sds_agree(comm, rank == owner ? lrcs[i] : SDS_OK);
            if (rc != SDS_OK) {
                free(mask);
                break;
            }
            if (mine) MPI_Bcast(r.w, (int)(r.rows * r.cols), MPI_FLOAT, own_at[i], si.scomm);
            MPI_Bcast(&rp->st, (int)sizeof rp->st, MPI_BYTE, owner, comm);
            rc = sds_h5out_sublayer(h5, rp->name, r.rows, r.cols, 0, rank == owner ? r.rows : 0,
                                    rank == owner ? r.w : NULL, mask, &rp->st);
            // (the status is the same on every rank) rank 0 keeps the mask for checkpoints
            if (rc == SDS_OK)
                rc = sds_prune_ckpt_keep_mask(comm, &ck, l, i, owner, mask, r.rows * r.cols);
            free(mask);
            rc = sds_agree(comm, rc);
            c.t_sync += sds_now() - tsync;
            if (rank == 0 && rc == SDS_OK) {
                progress[0] += 1.0;
                progress_line(rp, r.name, l, progress[0], progress[1], sds_now() - t_layers);
            }
        }
        for (int32_t i = 0; i < MAX_LIN; i++) free(masks[i]);
        layer_stats_free(&ls);

        // 3. the pruned layer's outputs are the next layer's inputs (after a stage's last
        //    layer: the next stage's)
        if (rc == SDS_OK && mine) layer_advance(&c, l);

        // 4. a signal (or the test hook) stops the run here, after a checkpoint
        if (rc != SDS_OK) break;
        const int why = sds_stop_agree(comm, l);
        if (why != SDS_STOP_NONE || o.every_layer) {
            // the next stage's inputs have all been sent (blocking sends): complete the receives
            if (c.rreq && si.stage == sds_prune_ckpt_acts_stage(&ck, l)) {
                const double tw = sds_now();
                MPI_Waitall((int)(2 * n_local), c.rreq, MPI_STATUSES_IGNORE);
                c.t_handoff += sds_now() - tw;
            }
            st.fp = fp;
            rc = sds_prune_ckpt_save(comm, &ck, &st, l);
        }
        if (rc == SDS_OK && why != SDS_STOP_NONE) {
            if (rank == 0) {
                fprintf(stderr,
                        "sds-mpi: %s: stopped after layer %lld (%lld of %lld layers done) with "
                        "a checkpoint in %s; resubmit the same command with --resume (exit %d)\n",
                        sds_stop_name(why), (long long)l, (long long)(l + 1), (long long)L, ck.dir,
                        SDS_ERR_CHECKPOINTED);
                fflush(stderr);
            }
            rc = SDS_ERR_CHECKPOINTED;
        }
    }
    cancel_receives(&c);
    // the time split, the largest over the ranks (compute, communication, waiting)
    double timing[8] = {c.t_stats,   c.t_reduce, c.t_prune, c.t_advance,
                        c.t_handoff, c.t_sync,   c.t_idle,  0.0};
    timing[7] = c.t_stats + c.t_prune + c.t_advance; // this rank's compute
    MPI_Allreduce(MPI_IN_PLACE, timing, 8, MPI_DOUBLE, MPI_MAX, comm);
    grid_free(&c);
    // the distributed statistics' bytes on the largest rank: pieces (1/G of the whole) and
    // buffers (a sequence's inputs, own and broadcast)
    int64_t grid_bytes[2] = {c.grid_piece_peak, c.grid_buffer_peak};
    MPI_Allreduce(MPI_IN_PLACE, grid_bytes, 2, MPI_INT64_T, MPI_MAX, comm);
    free(c.inps);
    free(c.inps_d);
    free(c.x);
    free(c.rreq);
    sds_model_work_free(&c.w);

    if (rc == SDS_OK) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fp);
        MPI_Bcast(hex, sizeof hex, MPI_CHAR, 0, comm);
        rc = sds_h5out_set_config(h5, opts_text);
        if (rc == SDS_OK) rc = sds_h5out_set_fingerprint(h5, hex);
        rc = sds_agree(comm, rc);
    }
    {
        int crc = sds_h5out_close(h5, rc == SDS_OK);
        if (rc == SDS_OK) rc = sds_agree(comm, crc);
    }
    if (rc == SDS_OK && o.export_hf) {
        // rank 0 writes the Hugging Face directory from its (complete) copy of the model
        // (with stages rank 0 holds only its layers: the export reads the others' from the
        // output just written)
        int erc = SDS_OK;
        if (rank == 0) {
            erc = si.S == 1 ? sds_hf_export(&m, o.model, o.tokenizer, o.export_hf)
                            : sds_export_from_h5(o.model, o.out, o.tokenizer, o.export_hf);
            if (erc == SDS_OK) printf("exported %s\n", o.export_hf);
            fflush(stdout);
        }
        rc = sds_agree(comm, erc);
    }
    const double seconds = sds_now() - t_start;
    // peak resident memory, the largest over the ranks (SPEC 4: the run reports what it used)
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak_mib = (double)ru.ru_maxrss / 1024.0, peak_sum = peak_mib;
    MPI_Allreduce(MPI_IN_PLACE, &peak_mib, 1, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(MPI_IN_PLACE, &peak_sum, 1, MPI_DOUBLE, MPI_SUM, comm);
    if (rc == SDS_OK && rank == 0) {
        // final table: per sublayer name, mean over layers
        printf("\nsummary (mean over %lld layers)\n%-22s %9s %11s\n", (long long)L, "sublayer",
               "sparsity", "rel.error");
        for (int32_t i = 0; i < n_lin; i++) {
            double sp = 0.0, er = 0.0;
            for (int64_t l = 0; l < L; l++) {
                sp += rep[l * n_lin + i].st.sparsity;
                er += rep[l * n_lin + i].st.rel_err_final;
            }
            printf("%-22s %8.2f%% %11.4e\n", sds_model_linear(&m, 0, i).name, 100.0 * sp / L,
                   er / L);
        }
        if (is_sds) {
            int64_t kept = 0;
            double first = 0.0, final = 0.0;
            for (int64_t k = 0; k < L * n_lin; k++) {
                kept += extra_of(&rep[k].st, "kept_sds") > 0.5;
                first += rep[k].st.rel_err_first;
                final += rep[k].st.rel_err_final;
            }
            printf("SDS kept in %lld of %lld sublayers (the first pruning in the others); mean "
                   "rel.error %.4e -> %.4e\n",
                   (long long)kept, (long long)(L * n_lin), first / (double)(L * n_lin),
                   final / (double)(L * n_lin));
        }
        printf("wrote %s in %.1fs\n", o.out, seconds);
        printf("peak memory: %.1f MiB on the largest rank, %.1f MiB over all %d\n", peak_mib,
               peak_sum, size);
        printf("time (largest rank): statistics %.2fs, pruning %.2fs, forward %.2fs; "
               "all-reduce %.2fs, stage hand-off %.2fs, agree/broadcast/write %.2fs, other "
               "stages %.2fs\n",
               timing[0], timing[2], timing[3], timing[1], timing[4], timing[5], timing[6]);
        fflush(stdout);
    }
    if (rc == SDS_OK && o.eval) {
        if (rank == 0) printf("== pruned model\n");
        rc = run_eval(comm, &o, &m, si.S, &ppl_pruned);
        if (rc == SDS_OK && rank == 0) {
            printf("dense perplexity %.10g\n", ppl_dense);
            printf("pruned perplexity %.10g\n", ppl_pruned);
        }
    }
    if (rc == SDS_OK && o.json) {
        int jrc = rank == 0 ? write_summary(&o, size, si.S, gram_batch, rep, L * n_lin, seconds,
                                            ppl_dense, ppl_pruned, peak_mib, timing, grid_bytes)
                            : SDS_OK;
        rc = sds_agree(comm, jrc);
    }
    // a completed run needs its checkpoint no more
    if (rc == SDS_OK) sds_prune_ckpt_remove(comm, &ck);
    sds_prune_ckpt_free(&ck);
    free(rep);
    free(opts_text);
    free(samples);
    sds_model_free(&m);
    MPI_Comm_free(&si.scomm);
    return rc;

out_early:
    sds_prune_ckpt_free(&ck);
    free(rep);
    free(opts_text);
    free(samples);
    sds_model_free(&m);
    MPI_Comm_free(&si.scomm);
    return rc;
}

int sds_prune_run(MPI_Comm comm, const sds_prune_opts *o) {
    // SIGTERM and SIGUSR1 only ask the layer loop to checkpoint and stop (main has installed
    // the handlers already, before MPI_Init)
    sds_stop_install();
    return prune_run(comm, o);
}

#include "prune.h"

#include "agree.h"
#include "json_out.h"
#include "calib.h"
#include "eval.h"
#include "h5out.h"
#include "hf_export.h"
#include "hessian.h"
#include "magnitude.h"
#include "model_load.h"
#include "prune_ckpt.h"
#include "runtime.h"
#include "sds_error.h"
#include "sparsegpt.h"
#include "stop.h"
#include "text_ids.h"
#include "token_file.h"
#include "wanda.h"

#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/resource.h>
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
// when copy is set (SDS with the dense target), into copy[group] (T, cols) so that the pruned
// and the dense path's inputs of one sequence can be combined into the cross Gram.
typedef struct {
    sds_hessian *h; // SDS_CAPTURE_GROUPS entries
    float **copy;   // NULL, or SDS_CAPTURE_GROUPS buffers of (T, cols)
    int rc;
} capture_ctx;

static void capture_add(void *ctx, int32_t group, const float *x, int64_t T, int64_t cols) {
    capture_ctx *c = ctx;
    SDS_ASSERT(group >= 0 && group < SDS_CAPTURE_GROUPS && c->h[group].cols == cols);
    if (c->copy)
        memcpy(c->copy[group], x, (size_t)(T * cols) * sizeof(float));
    else if (c->rc == SDS_OK)
        c->rc = sds_hessian_add(&c->h[group], x, 1, T);
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
        json_object_set_new(j, "sds_early_exit", json_boolean(s->early_exit));
        json_object_set_new(j, "sds_redense", json_boolean(s->redense));
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
// it works on a copy.
static int sparsegpt_sublayer(const sds_prune_opts *o, sds_linear_ref r, const float *H,
                              uint8_t *mask, double *damping) {
    float *U = sds_malloc((size_t)(r.cols * r.cols) * sizeof(float), "SparseGPT factor");
    if (!U) return SDS_ERR_IO;
    memcpy(U, H, (size_t)(r.cols * r.cols) * sizeof(float));
    sds_sparsegpt_info info;
    int rc =
        sds_sparsegpt_prepare(U, r.cols, r.w, r.rows, o->percdamp, SDS_SPARSEGPT_MAX_TRIES, &info);
    if (rc == SDS_OK) {
        sds_sparsegpt_local loc = {U, r.cols};
        rc = sds_sparsegpt_sweep(r.w, r.rows, r.rows, r.cols, o->pattern, o->blocksize,
                                 sds_sparsegpt_panel_local, sds_sparsegpt_select_local, &loc, mask);
        *damping = info.percdamp;
    }
    free(U);
    return rc;
}

static void add_extra(sds_h5out_stats *st, const char *name, double v) {
    SDS_ASSERT(st->n_extra < SDS_H5OUT_MAX_EXTRA);
    snprintf(st->extra_name[st->n_extra], sizeof st->extra_name[0], "%s", name);
    st->extra[st->n_extra++] = v;
}

// Owner rank: prunes one sublayer in place with the group's statistics; fills st and mask.
// K, Gtt: SDS's cross Gram and target Gram (dense target), else NULL.
// val: the held-out Grams for --sds-mix auto (G, K, Gtt of the odd sequences), else NULL.
static int prune_sublayer(const sds_prune_opts *o, sds_linear_ref r, const sds_hessian *h,
                          const float *K, const float *Gtt, const sds_problem *val, uint8_t *mask,
                          sds_h5out_stats *st) {
    const size_t numel = (size_t)(r.rows * r.cols);
    float *dense = sds_malloc(numel * sizeof(float), "dense weights");
    if (!dense) return SDS_ERR_IO;
    memcpy(dense, r.w, numel * sizeof(float));
    int rc = SDS_OK;
    st->damping = 0.0;
    switch (o->method) {
    case SDS_METHOD_MAGNITUDE:
        rc = sds_magnitude_prune(r.w, r.rows, r.rows, r.cols, o->pattern, NULL, NULL, mask);
        break;
    case SDS_METHOD_WANDA:
        rc = sds_wanda_prune(r.w, r.rows, r.cols, h->wanda, o->pattern, mask);
        break;
    case SDS_METHOD_SPARSEGPT:
        rc = sparsegpt_sublayer(o, r, h->H, mask, &st->damping);
        break;
    case SDS_METHOD_SDS: {
        if (o->sds.base == SDS_BASE_WANDA)
            rc = sds_wanda_prune(r.w, r.rows, r.cols, h->wanda, o->pattern, mask);
        else
            rc = sparsegpt_sublayer(o, r, h->H, mask, &st->damping);
        if (rc != SDS_OK) break;
        sds_problem p = {r.rows, r.cols, dense, h->H, K, Gtt, h->wanda};
        float *Kb = NULL, *Gb = NULL, *Gf = NULL;
        double mix = K ? o->sds.mix : 0.0;
        if (val) {
            // --sds-mix auto: SDS is fitted on the even sequences only (G_f = G - G_v, ...),
            // the blend chosen on the odd ones, so they stay held out through every layer
            const size_t ng = (size_t)(r.cols * r.cols);
            Kb = sds_malloc(ng * sizeof(float), "SDS target Gram");
            Gb = sds_malloc(ng * sizeof(float), "SDS target Gram");
            Gf = sds_malloc(ng * sizeof(float), "SDS fitting Gram");
            if (!Kb || !Gb || !Gf) rc = SDS_ERR_IO;
            if (rc == SDS_OK) {
                for (size_t i = 0; i < ng; i++) {
                    Gf[i] = h->H[i] - val->G[i];
                    Kb[i] = K[i] - val->K[i];
                    Gb[i] = Gtt[i] - val->Gtt[i];
                }
                const sds_problem fit = {r.rows, r.cols, dense, Gf, Kb, Gb, NULL};
                rc = sds_sds_choose_mix(&fit, val, o->percdamp, &mix);
            }
            if (rc == SDS_OK) {
                sds_sds_mix_target(Gf, Kb, Gb, r.cols, mix, Kb, Gb);
                p.G = Gf;
                p.K = Kb;
                p.Gtt = Gb;
            }
        }
        sds_sds_info info;
        if (rc == SDS_OK) rc = sds_sds_run(&p, o->pattern, &o->sds, r.w, mask, &info);
        free(Kb);
        free(Gb);
        free(Gf);
        if (rc != SDS_OK) break;
        add_extra(st, "sds_mix", mix);
        st->rel_err_first = info.rel_err_first;
        st->rel_err_final = info.rel_err_final;
        add_extra(st, "rel_err_redense", info.rel_err_redense);
        add_extra(st, "rel_err_second", info.rel_err_second);
        add_extra(st, "rel_err_sds", info.rel_err_sds);
        add_extra(st, "kept_sds", info.kept_sds);
        add_extra(st, "adjust_steps", info.adjust_steps);
        break;
    }
    }
    double err = 0.0;
    if (rc == SDS_OK && o->method != SDS_METHOD_SDS)
        rc = sds_hessian_recon_error(h->H, r.cols, dense, r.w, r.rows, &err);
    free(dense);
    if (rc != SDS_OK) return rc;
    size_t zeros = 0;
    for (size_t i = 0; i < numel; i++) zeros += r.w[i] == 0.0f;
    st->sparsity = (double)zeros / (double)numel;
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

static int write_summary(const sds_prune_opts *o, int nranks, const sds_sublayer_report *rep,
                         int64_t n_rep, double seconds, double ppl_dense, double ppl_pruned,
                         double peak_mib) {
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
    if (o->eval) {
        json_object_set_new(root, "eval_text", json_string(o->eval));
        json_object_set_new(root, "perplexity_dense", json_real(ppl_dense));
        json_object_set_new(root, "perplexity_pruned", json_real(ppl_pruned));
    }
    return sds_json_write_atomic(root, o->json);
}

static int run_eval(MPI_Comm comm, const sds_prune_opts *o, const sds_model *m, double *ppl) {
    sds_eval_opts e;
    memset(&e, 0, sizeof e);
    e.model = o->model;
    e.text = o->eval;
    e.tokenizer = o->tokenizer;
    e.seqlen = o->seqlen;
    e.max_windows = o->eval_max_windows;
    e.result = ppl;
    return sds_eval_model(comm, m, &e);
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
    sds_model m;
    rc = sds_agree(comm, sds_model_load(o.model, &m));
    if (rc != SDS_OK) return rc;
    const int64_t max_pos = m.cfg.max_position_embeddings;
    if (o.seqlen == 0) o.seqlen = max_pos < 2048 ? max_pos : 2048;
    rc = SDS_OK;
    if (o.seqlen < 2 || o.seqlen > max_pos)
        rc = sds_error_set(SDS_ERR_USAGE, "--seqlen %lld: must be in [2, %lld] for this model",
                           (long long)o.seqlen, (long long)max_pos);
    for (int64_t l = 0; rc == SDS_OK && l < m.cfg.n_layers; l++)
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
        return rc;
    }

    // Calibration windows: drawn on rank 0, sent to all; rank r keeps [lo, hi).
    const int64_t T = o.seqlen, C = sds_model_width(&m), L = m.cfg.n_layers;
    int32_t *samples = sds_malloc((size_t)(o.nsamples * T) * sizeof(int32_t), "calibration");
    rc = samples ? SDS_OK : SDS_ERR_IO;
    if (rc == SDS_OK && rank == 0) rc = calibration_tokens(&o, &m, samples);
    rc = sds_agree(comm, rc);
    if (rc != SDS_OK) {
        free(samples);
        sds_model_free(&m);
        return rc;
    }
    MPI_Bcast(samples, (int)(o.nsamples * T), MPI_INT32_T, 0, comm);
    const int64_t lo = o.nsamples * rank / size, hi = o.nsamples * (rank + 1) / size;
    const int64_t n_local = hi - lo;

    uint64_t fp = SDS_FNV1A64_INIT;
    json_t *opts = options_json(&o, size);
    char *opts_text = json_dumps(opts, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(opts);
    fp = sds_fnv1a64(fp, opts_text, strlen(opts_text));
    fp = sds_fnv1a64(fp, samples, (size_t)(o.nsamples * T) * sizeof(int32_t));

    // a checkpoint to resume from (or one that must not be overwritten) is found before any work
    const int32_t n_lin = sds_model_n_linear(&m);
    sds_sublayer_report *rep = sds_calloc((size_t)(L * n_lin), sizeof *rep, "report");
    sds_prune_ckpt ck;
    rc = sds_prune_ckpt_init(&ck, o.out, &m, rank);
    rc = sds_agree(comm, rc == SDS_OK && !rep ? SDS_ERR_IO : rc);
    sds_prune_state st = {&m, rep, opts_text, fp, fp, NULL, NULL, n_local, T, C};
    int64_t last_done = -1; // the last layer restored from the checkpoint
    if (rc == SDS_OK) rc = sds_prune_ckpt_open(comm, &ck, o.resume, &st, &last_done);
    if (rc != SDS_OK) goto out_early;
    fp = st.fp;

    double ppl_dense = 0.0, ppl_pruned = 0.0;
    if (o.eval) {
        if (rank == 0) printf("== dense model\n");
        rc = run_eval(comm, &o, &m, &ppl_dense);
        if (rc != SDS_OK) goto out_early;
    }

    // SDS with the dense target carries the dense model's activations beside the pruned ones
    const int is_sds = o.method == SDS_METHOD_SDS;
    const int two_paths = is_sds && o.sds.target == SDS_TARGET_DENSE;
    const int auto_mix = two_paths && o.sds.mix < 0.0;
    const int wanda_stat = o.method == SDS_METHOD_WANDA || (is_sds && o.sds.base == SDS_BASE_WANDA);
    const size_t act_bytes = (size_t)((n_local ? n_local : 1) * T * C) * sizeof(float);
    sds_model_work w;
    float *inps = sds_malloc(act_bytes, "calibration activations");
    float *inps_d = two_paths ? sds_malloc(act_bytes, "dense calibration activations") : NULL;
    float *x = sds_malloc((size_t)(T * C) * sizeof(float), "activations");
    rc = sds_model_work_alloc(&w, &m, T);
    if (rc == SDS_OK && (!inps || !x || (two_paths && !inps_d))) rc = SDS_ERR_IO;
    rc = sds_agree(comm, rc);
    if (rc != SDS_OK) {
        free(inps);
        free(inps_d);
        free(x);
        goto out_early;
    }
    for (int64_t s = 0; s < n_local; s++)
        sds_model_embed(&m, samples + (lo + s) * T, T, inps + s * T * C, &w);
    if (two_paths) memcpy(inps_d, inps, act_bytes);

    sds_h5out *h5 = NULL;
    rc = sds_agree(comm, sds_h5out_create(comm, o.out, &h5));
    if (rc != SDS_OK) {
        if (h5) sds_h5out_close(h5, 0);
        free(inps);
        free(inps_d);
        free(x);
        sds_model_work_free(&w);
        goto out_early;
    }
    if (rank == 0) {
        char pat[32];
        sds_pattern_format(o.pattern, pat, sizeof pat);
        printf("prune %s: %s at %s, %lld x %lld calibration tokens over %d rank%s\n", o.model,
               sds_method_name(o.method), pat, (long long)o.nsamples, (long long)T, size,
               size > 1 ? "s" : "");
        if (is_sds)
            printf("SDS over %s: target %s, re-dense %s%s, %d adjustment steps%s\n",
                   sds_base_name(o.sds.base), sds_target_name(o.sds.target),
                   o.sds.redense ? sds_solver_name(o.sds.solver) : "off",
                   o.sds.solver == SDS_SOLVER_RIDGE ? "" : " (iterative)", o.sds.adjust_iters,
                   o.sds.early_exit ? ", early exit" : "");
        printf("%5s  %-22s %-10s %-7s %9s %11s %9s %8s\n", "layer", "sublayer", "method", "pattern",
               "sparsity", "rel.error", "damping", "seconds");
        fflush(stdout);
    }
    // resuming: the finished layers' weights, masks and statistics (into the output, in their
    // order) and this rank's activations after the last of them
    st.inps = inps;
    st.inps_d = inps_d;
    if (last_done >= 0) rc = sds_prune_ckpt_restore(comm, &ck, &st, last_done, h5);
    const int64_t restored = (last_done + 1) * n_lin; // sublayers not pruned by this run

    const double t_layers = sds_now();
    for (int64_t l = last_done + 1; l < L && rc == SDS_OK; l++) {
        // 1. statistics of the dense layer on the pruned model's activations
        //    (SDS, dense target: also the dense path's Gram G_tt and the cross Gram K = X_s^T X_d
        //    per group, and the dense path advances through the still dense layer)
        //    (--sds-mix auto: the same three Grams of the odd sequences, held out to choose it)
        sds_hessian h[SDS_CAPTURE_GROUPS], hd[SDS_CAPTURE_GROUPS], hv[SDS_CAPTURE_GROUPS],
            hdv[SDS_CAPTURE_GROUPS];
        float *K[SDS_CAPTURE_GROUPS] = {0}, *Kv[SDS_CAPTURE_GROUPS] = {0},
              *xs_buf[SDS_CAPTURE_GROUPS] = {0}, *xd_buf[SDS_CAPTURE_GROUPS] = {0};
        memset(h, 0, sizeof h);
        memset(hd, 0, sizeof hd);
        memset(hv, 0, sizeof hv);
        memset(hdv, 0, sizeof hdv);
        int32_t flags = SDS_HESSIAN_GRAM | (wanda_stat ? SDS_HESSIAN_WANDA : 0);
        for (int32_t i = 0; i < n_lin && rc == SDS_OK; i++) {
            sds_linear_ref r = sds_model_linear(&m, l, i);
            const int32_t g = r.group;
            if (h[g].cols != 0) continue;
            rc = sds_hessian_init(&h[g], r.cols, flags);
            if (rc == SDS_OK && two_paths) {
                rc = sds_hessian_init(&hd[g], r.cols, SDS_HESSIAN_GRAM);
                K[g] = sds_calloc((size_t)(r.cols * r.cols), sizeof(float), "SDS cross Gram");
                xs_buf[g] = sds_malloc((size_t)(T * r.cols) * sizeof(float), "SDS inputs");
                xd_buf[g] = sds_malloc((size_t)(T * r.cols) * sizeof(float), "SDS inputs");
                if (rc == SDS_OK && (!K[g] || !xs_buf[g] || !xd_buf[g])) rc = SDS_ERR_IO;
            }
            if (rc == SDS_OK && auto_mix) {
                rc = sds_hessian_init(&hv[g], r.cols, SDS_HESSIAN_GRAM);
                if (rc == SDS_OK) rc = sds_hessian_init(&hdv[g], r.cols, SDS_HESSIAN_GRAM);
                Kv[g] = sds_calloc((size_t)(r.cols * r.cols), sizeof(float), "SDS cross Gram");
                if (rc == SDS_OK && !Kv[g]) rc = SDS_ERR_IO;
            }
        }
        capture_ctx cc = {h, NULL, rc};
        sds_capture cap = {capture_add, &cc};
        sds_model_work_set_capture(&w, &cap);
        for (int64_t s = 0; s < n_local && cc.rc == SDS_OK; s++) {
            memcpy(x, inps + s * T * C, (size_t)(T * C) * sizeof(float));
            if (!two_paths) {
                sds_model_layer_forward(&m, l, x, T, &w);
                continue;
            }
            cc.copy = xs_buf;
            sds_model_layer_forward(&m, l, x, T, &w);
            cc.copy = xd_buf;
            sds_model_layer_forward(&m, l, inps_d + s * T * C, T, &w);
            cc.copy = NULL;
            for (int32_t g = 0; g < SDS_CAPTURE_GROUPS && cc.rc == SDS_OK; g++) {
                if (h[g].cols == 0) continue;
                const int cg = (int)h[g].cols;
                cc.rc = sds_hessian_add(&h[g], xs_buf[g], 1, T);
                if (cc.rc == SDS_OK) cc.rc = sds_hessian_add(&hd[g], xd_buf[g], 1, T);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cg, cg, (int)T, 1.0f,
                            xs_buf[g], cg, xd_buf[g], cg, 1.0f, K[g], cg);
                if (auto_mix && (lo + s) % 2 == 1 && cc.rc == SDS_OK) {
                    cc.rc = sds_hessian_add(&hv[g], xs_buf[g], 1, T);
                    if (cc.rc == SDS_OK) cc.rc = sds_hessian_add(&hdv[g], xd_buf[g], 1, T);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cg, cg, (int)T, 1.0f,
                                xs_buf[g], cg, xd_buf[g], cg, 1.0f, Kv[g], cg);
                }
            }
        }
        sds_model_work_set_capture(&w, NULL);
        rc = sds_agree(comm, cc.rc);
        for (int32_t g = 0; g < SDS_CAPTURE_GROUPS && rc == SDS_OK; g++) {
            if (h[g].cols == 0) continue;
            const int n2 = (int)(h[g].cols * h[g].cols);
            // sums over every rank's sequences (upper triangle of X^T X, sum of squares)
            MPI_Allreduce(MPI_IN_PLACE, h[g].H, n2, MPI_FLOAT, MPI_SUM, comm);
            if (h[g].sq)
                MPI_Allreduce(MPI_IN_PLACE, h[g].sq, (int)h[g].cols, MPI_DOUBLE, MPI_SUM, comm);
            h[g].nseq = o.nsamples;
            rc = sds_agree(comm, sds_hessian_finish(&h[g]));
            if (rc == SDS_OK && two_paths) {
                MPI_Allreduce(MPI_IN_PLACE, hd[g].H, n2, MPI_FLOAT, MPI_SUM, comm);
                MPI_Allreduce(MPI_IN_PLACE, K[g], n2, MPI_FLOAT, MPI_SUM, comm);
                hd[g].nseq = o.nsamples;
                const float scale = (float)(2.0 / (double)o.nsamples); // as the Hessian's
                for (int i2 = 0; i2 < n2; i2++) K[g][i2] *= scale;
                rc = sds_agree(comm, sds_hessian_finish(&hd[g]));
                // a fixed partial target X_t = (1 - b) X_s + b X_d (auto: per sublayer, later)
                if (rc == SDS_OK && o.sds.mix >= 0.0 && o.sds.mix != 1.0)
                    sds_sds_mix_target(h[g].H, K[g], hd[g].H, h[g].cols, o.sds.mix, K[g], hd[g].H);
                if (rc == SDS_OK && auto_mix) {
                    // held-out Grams on the same scale as the full ones (2 / nsamples)
                    MPI_Allreduce(MPI_IN_PLACE, hv[g].H, n2, MPI_FLOAT, MPI_SUM, comm);
                    MPI_Allreduce(MPI_IN_PLACE, hdv[g].H, n2, MPI_FLOAT, MPI_SUM, comm);
                    MPI_Allreduce(MPI_IN_PLACE, Kv[g], n2, MPI_FLOAT, MPI_SUM, comm);
                    hv[g].nseq = hdv[g].nseq = o.nsamples;
                    for (int i2 = 0; i2 < n2; i2++) Kv[g][i2] *= scale;
                    rc = sds_hessian_finish(&hv[g]);
                    if (rc == SDS_OK) rc = sds_hessian_finish(&hdv[g]);
                    rc = sds_agree(comm, rc);
                }
            }
        }
        if (rank == 0)
            for (int32_t i = 0; i < n_lin; i++) {
                sds_linear_ref r = sds_model_linear(&m, l, i);
                fp = sds_fnv1a64(fp, r.w, (size_t)(r.rows * r.cols) * sizeof(float));
            }

        // 2. prune every sublayer: sublayer i on rank i % size, then everyone gets the result
        for (int32_t i = 0; i < n_lin && rc == SDS_OK; i++) {
            sds_linear_ref r = sds_model_linear(&m, l, i);
            const int owner = i % size;
            sds_sublayer_report *rp = &rep[l * n_lin + i];
            sds_model_linear_module(&m, l, i, rp->name, sizeof rp->name);
            rp->st.layer = (int32_t)l;
            snprintf(rp->st.method, sizeof rp->st.method, "%s", sds_method_name(o.method));
            sds_pattern_format(o.pattern, rp->st.pattern, sizeof rp->st.pattern);
            uint8_t *mask = NULL;
            const double t0 = sds_now();
            int lrc = SDS_OK;
            if (rank == owner) {
                mask = sds_calloc((size_t)(r.rows * r.cols), 1, "mask");
                const int32_t g = r.group;
                const sds_problem val = {r.rows, r.cols, r.w, hv[g].H, Kv[g], hdv[g].H, NULL};
                lrc = mask ? prune_sublayer(&o, r, &h[g], K[g], two_paths ? hd[g].H : NULL,
                                            auto_mix ? &val : NULL, mask, &rp->st)
                           : SDS_ERR_IO;
                if (lrc != SDS_OK) {
                    char msg[1024];
                    snprintf(msg, sizeof msg, "%s", sds_error_message());
                    sds_error_clear();
                    sds_error_set(lrc, "%s: %s", rp->name, msg);
                }
            }
            rp->st.seconds = sds_now() - t0;
            rc = sds_agree(comm, lrc);
            if (rc != SDS_OK) {
                free(mask);
                break;
            }
            MPI_Bcast(r.w, (int)(r.rows * r.cols), MPI_FLOAT, owner, comm);
            MPI_Bcast(&rp->st, (int)sizeof rp->st, MPI_BYTE, owner, comm);
            rc = sds_h5out_sublayer(h5, rp->name, r.rows, r.cols, 0, rank == owner ? r.rows : 0,
                                    rank == owner ? r.w : NULL, mask, &rp->st);
            // (the status is the same on every rank) rank 0 keeps the mask for checkpoints
            if (rc == SDS_OK)
                rc = sds_prune_ckpt_keep_mask(comm, &ck, l, i, owner, mask, r.rows * r.cols);
            free(mask);
            rc = sds_agree(comm, rc);
            if (rank == 0 && rc == SDS_OK) {
                const double done = (double)(l * n_lin + i + 1 - restored),
                             all = (double)(L * n_lin - restored);
                const double el = sds_now() - t_layers;
                char sds_note[96] = "";
                if (is_sds)
                    snprintf(sds_note, sizeof sds_note, "  first %.4e %s", rp->st.rel_err_first,
                             extra_of(&rp->st, "kept_sds") > 0.5 ? "-> SDS" : "(kept)");
                printf("%5lld  %-22s %-10s %-7s %8.2f%% %11.4e %9.2g %8.2f%s  ETA %.0fs\n",
                       (long long)l, r.name, rp->st.method, rp->st.pattern, 100.0 * rp->st.sparsity,
                       rp->st.rel_err_final, rp->st.damping, rp->st.seconds, sds_note,
                       el / done * (all - done));
                fflush(stdout);
            }
        }
        for (int32_t g = 0; g < SDS_CAPTURE_GROUPS; g++) {
            sds_hessian_free(&h[g]);
            sds_hessian_free(&hd[g]);
            sds_hessian_free(&hv[g]);
            sds_hessian_free(&hdv[g]);
            free(K[g]);
            free(Kv[g]);
            free(xs_buf[g]);
            free(xd_buf[g]);
        }

        // 3. the pruned layer's outputs are the next layer's inputs
        for (int64_t s = 0; s < n_local && rc == SDS_OK; s++)
            sds_model_layer_forward(&m, l, inps + s * T * C, T, &w);

        // 4. a signal (or the test hook) stops the run here, after a checkpoint
        if (rc != SDS_OK) break;
        const int why = sds_stop_agree(comm, l);
        if (why != SDS_STOP_NONE || o.every_layer) {
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
    free(inps);
    free(inps_d);
    free(x);
    sds_model_work_free(&w);

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
        int erc = SDS_OK;
        if (rank == 0) {
            erc = sds_hf_export(&m, o.model, o.tokenizer, o.export_hf);
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
        fflush(stdout);
    }
    if (rc == SDS_OK && o.eval) {
        if (rank == 0) printf("== pruned model\n");
        rc = run_eval(comm, &o, &m, &ppl_pruned);
        if (rc == SDS_OK && rank == 0) {
            printf("dense perplexity %.10g\n", ppl_dense);
            printf("pruned perplexity %.10g\n", ppl_pruned);
        }
    }
    if (rc == SDS_OK && o.json) {
        int jrc = rank == 0 ? write_summary(&o, size, rep, L * n_lin, seconds, ppl_dense,
                                            ppl_pruned, peak_mib)
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
    return rc;

out_early:
    sds_prune_ckpt_free(&ck);
    free(rep);
    free(opts_text);
    free(samples);
    sds_model_free(&m);
    return rc;
}

int sds_prune_run(MPI_Comm comm, const sds_prune_opts *o) {
    // SIGTERM and SIGUSR1 only ask the layer loop to checkpoint and stop (main has installed
    // the handlers already, before MPI_Init)
    sds_stop_install();
    return prune_run(comm, o);
}

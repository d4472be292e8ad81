#include "plan.h"

#include "hessian.h"

#include "sds.h"
#include "stage_map.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// The SDS adjustment steps the run will take: the input's when given, else the defaults.
static void sds_adjust_of(const sds_plan_input *in, int *iters, int *nesterov) {
    sds_sds_opts d;
    sds_sds_defaults(&d);
    *iters = in->sds_adjust_given ? in->sds_adjust_iters : d.adjust_iters;
    *nesterov = in->sds_adjust_given ? in->sds_adjust_nesterov : d.adjust_nesterov;
}

#define F4 4.0 // bytes of an fp32
// Bytes per entry of a cols x cols Gram as held and as all-reduced: fp32 today. (Exact sums in
// 128-bit integers over the packed upper triangle would add ~8 bytes per entry held and make the
// all-reduce ~8 bytes per entry: change these two.)
#define PLAN_GRAM_HELD 4.0 // the fp32 Gram matrices a layer's pruning reads

// The linear sublayers of one decoder layer: (rows, cols) and the input group each reads.
// OPT: q/k/v share one group (C), out_proj (C), fc1 (C), fc2 (F). Llama: q/k/v (C), o (Q),
// gate/up (C), down (F).
#define PLAN_MAX_LIN 7
typedef struct {
    int n;
    double rows[PLAN_MAX_LIN], cols[PLAN_MAX_LIN];
    int group[PLAN_MAX_LIN];
    int n_groups;
    double group_cols[4];
    double layer_params; // every parameter of one layer (weights, biases, norms)
    double lin_params;   // the linear weights alone (what the forward's matmuls touch)
    double attn_width;   // heads x head_dim (attention's matmul width)
} plan_layer;

static void lin(plan_layer *p, double rows, double cols, int group) {
    p->rows[p->n] = rows;
    p->cols[p->n] = cols;
    p->group[p->n] = group;
    p->lin_params += rows * cols;
    p->n++;
    if (group >= p->n_groups) {
        p->n_groups = group + 1;
        p->group_cols[group] = cols;
    }
}

static void layer_shapes(const sds_model_config *c, plan_layer *p) {
    memset(p, 0, sizeof *p);
    const double C = (double)c->hidden_size, F = (double)c->ffn_dim;
    if (c->arch == SDS_ARCH_OPT) {
        lin(p, C, C, 0);
        lin(p, C, C, 0);
        lin(p, C, C, 0);
        lin(p, C, C, 1);
        lin(p, F, C, 2);
        lin(p, C, F, 3);
        p->layer_params =
            p->lin_params + (c->enable_bias ? 5 * C + F : 0) + (c->layer_norm_affine ? 4 * C : 0);
        p->attn_width = C;
    } else {
        const double Q = (double)(c->n_heads * c->head_dim),
                     KV = (double)(c->n_kv_heads * c->head_dim);
        lin(p, Q, C, 0);
        lin(p, KV, C, 0);
        lin(p, KV, C, 0);
        lin(p, C, Q, 1);
        lin(p, F, C, 2);
        lin(p, F, C, 2);
        lin(p, C, F, 3);
        p->layer_params = p->lin_params + 2 * C + (c->attention_bias ? Q + 2 * KV + C : 0) +
                          (c->mlp_bias ? 2 * F + C : 0);
        p->attn_width = Q;
    }
}

void sds_plan_machine_default(sds_plan_machine *mc) {
    // One core of a current x86 server with AVX-512 OpenBLAS kernels: ~100 GFLOP/s sgemm per
    // core (this machine measures 110-135 with 1 thread); MPI inside a node through shared
    // memory ~5 GB/s and ~1 us; between nodes (100 Gb/s InfiniBand) ~10 GB/s and ~2 us, so the
    // node figure is the conservative one. Baseline: what a 1-sample prune of a tiny model holds
    // here (Open MPI, OpenBLAS with 1 thread, HDF5, jansson): ~110 MiB.
    mc->gemm_gflops = 100.0;
    mc->mpi_bw = 5e9;
    mc->mpi_lat = 1e-6;
    mc->baseline_bytes = 110.0 * 1024 * 1024;
    mc->select_s = 10e-9; // a magnitude selection per weight (50% and 2:4, measured 5-15 ns)
    mc->stream_bw = 5e9;  // one core streaming fp32 arrays
    mc->io_bw = 1e9;      // a parallel file system or local SSD
    mc->exp_s = 5e-9;     // softmax / SiLU element (measured 3-8 ns here)
}

// Ring all-reduce of `bytes` over g ranks: reduce-scatter then all-gather.
static double allreduce_s(double bytes, int g, const sds_plan_machine *mc) {
    if (g <= 1) return 0.0;
    return 2.0 * (g - 1) / g * bytes / mc->mpi_bw + 2.0 * (g - 1) * mc->mpi_lat;
}

// Broadcast of `bytes` from one rank to g: scatter then all-gather for large messages.
static double bcast_s(double bytes, int g, const sds_plan_machine *mc) {
    if (g <= 1) return 0.0;
    return 2.0 * (g - 1) / g * bytes / mc->mpi_bw + ceil(log2((double)g)) * mc->mpi_lat;
}

// SparseGPT on one (rows, cols) sublayer: flops at BLAS speed. Preparation: Cholesky, inverse,
// Cholesky (cols^3 / 3 + 2 cols^3 / 3 + cols^3 / 3); the blocked sweep's updates ~rows cols^2,
// counted twice since its within-block column loop runs at about half sgemm's rate (measured:
// the bench_prune_kernels table gives 40-50% of sgemm's GFLOP/s on rows cols^2).
static double sparsegpt_flops(double rows, double cols) {
    return 4.0 / 3.0 * cols * cols * cols + 4.0 * rows * cols * cols;
}

// One sublayer's pruning on its owner: seconds.
static double prune_sublayer_s(const sds_plan_input *in, const sds_plan_machine *mc, double rows,
                               double cols, double *flops) {
    const double g = mc->gemm_gflops * 1e9, nw = rows * cols, rcc = rows * cols * cols;
    // every method: a dense copy of W, the mask, the zero count: a few streaming passes
    double f = 0.0, s = 4.0 * nw * F4 / mc->stream_bw;
    switch (in->method) {
    case 0: // magnitude
    case 1: // wanda: one selection; the reconstruction error A H on 2 x rows rows
        s += nw * mc->select_s;
        f += 4.0 * rcc;
        break;
    case 2: // SparseGPT, then its reconstruction error
        f += sparsegpt_flops(rows, cols) + 4.0 * rcc;
        break;
    default: { // SDS over SparseGPT (src/sds.c), ridge re-dense
        int adj, nest;
        sds_adjust_of(in, &adj, &nest);
        const int dense = in->sds_dense_target;
        // first and second pruning (the second reuses the first's factor, but for --sds-mix
        // auto, which fits on half the sequences)
        f += 2.0 * sparsegpt_flops(rows, cols) -
             (in->sds_auto_mix ? 0.0 : 4.0 / 3.0 * cols * cols * cols);
        // fixed terms: W_d (G - K^T) (dense target) or W_d G; power iteration
        f += 2.0 * rcc + 60.0 * 2.0 * cols * cols;
        // the error (W - W_d) G at the first, re-dense, second pruning and every adjust step
        f += 2.0 * rcc * (3 + adj);
        // ridge: Cholesky of G + damping, two triangular solves with rows right-hand sides
        if (dense) f += cols * cols * cols / 3.0 + 2.0 * rcc;
        // --sds-mix auto: the blend's closed form (a Cholesky and a few products)
        if (in->sds_auto_mix) f += cols * cols * cols / 3.0 + 6.0 * rcc;
        // each adjust step: a selection and ~8 passes over weight-sized arrays (~12 when
        // accelerated: the previous iterate and product too)
        s += adj * (nw * mc->select_s + (nest ? 12.0 : 8.0) * nw * F4 / mc->stream_bw);
        break;
    }
    }
    *flops += f;
    return s + f / g;
}

// SparseGPT's grid path (mpi/dist_gram.h, mpi/dist_sparsegpt.h): a rank's block-cyclic piece
// of a cols x cols matrix on the stage's G ranks (256 x 256 blocks, prune's GRID_NB; the
// squarest grid pr x pc with pr <= pc), the largest rank's entries.
#define PLAN_DIST_NB 256.0
// The fraction of the measured sgemm rate that the grid path's per-block and per-tile BLAS calls
// reach: measured on SmolLM2 (576 and 1536 wide, 4 x 128 tokens, 2 ranks) 37% for the pruning
// and less for the Grams; OPT-shaped 512/2048 about 60%. Counted as 1/2.
#define PLAN_GRID_RATE 0.5
// prune's local route for a SparseGPT group this wide (--local-hessian-max), and the bytes of
// its exact sums (16 per entry of the upper triangle), held on every rank and all-reduced
static int local_route(const sds_plan_input *in, double cols) {
    return cols <= (double)in->local_hessian_max;
}
static double local_sums(double cols) {
    return 16.0 * cols * (cols + 1.0) / 2.0;
}

// The batch's buffers of one Gram cols wide (src/hessian.h's sds_hessian_batch): k - 1
// sequences' inputs (T x cols) and k - 1 fp32 Grams; none for k < 2 or wider Grams.
static double batch_extra(const sds_plan_input *in) {
    const int32_t k =
        in->gram_batch > SDS_HESSIAN_MAX_BATCH ? SDS_HESSIAN_MAX_BATCH : in->gram_batch;
    return k > 1 ? (double)(k - 1) : 0.0;
}
static double batch_bytes(const sds_plan_input *in, double T, double cols) {
    if (cols > (double)SDS_HESSIAN_BATCH_MAX_COLS) return 0.0;
    return batch_extra(in) * (T + cols) * cols * 4.0;
}

static double grid_piece(double cols, int G, double *mloc, double *nloc) {
    int pr = 1;
    for (int d = 1; d * d <= G; d++)
        if (G % d == 0) pr = d;
    const int pc = G / pr;
    const double blocks = ceil(cols / PLAN_DIST_NB);
    *mloc = fmin(cols, ceil(blocks / pr) * PLAN_DIST_NB);
    *nloc = fmin(cols, ceil(blocks / pc) * PLAN_DIST_NB);
    return *mloc * *nloc;
}

int sds_plan_compute(const sds_plan_input *in, const sds_plan_machine *mc, sds_plan_stage *out) {
    const sds_model_config *c = &in->cfg;
    const int64_t L = c->n_layers;
    const int S = in->stages, P = in->nranks;
    if (L <= 0 || P <= 0 || S < 1 || S > P || S > L || in->nsamples <= 0 || in->seqlen <= 0 ||
        c->hidden_size <= 0 || c->ffn_dim <= 0 || mc->gemm_gflops <= 0 || mc->mpi_bw <= 0)
        return -1;
    plan_layer pl;
    layer_shapes(c, &pl);
    const double C = (double)c->hidden_size, F = (double)c->ffn_dim, V = (double)c->vocab_size,
                 T = (double)in->seqlen, N = (double)in->nsamples;
    const double E = c->arch == SDS_ARCH_OPT ? (double)c->word_embed_proj_dim : C;
    const int is_sds = in->method == 3, two = is_sds && in->sds_dense_target,
              auto_mix = two && in->sds_auto_mix, wanda = in->method == 1;
    int adj_iters, adj_nesterov;
    sds_adjust_of(in, &adj_iters, &adj_nesterov);
    const double g = mc->gemm_gflops * 1e9;

    // embeddings (stage 0) and head (last stage with --eval)
    double emb = 0.0, head = 0.0;
    if (c->arch == SDS_ARCH_OPT) {
        const double Pp = (double)c->max_position_embeddings + 2;
        emb = V * E + Pp * C + (E != C ? C * E : 0);
        head = (E != C ? E * C : 0) + (c->layer_norm_affine ? 2 * C : 0);
    } else {
        emb = V * C;
        head = C;
    }
    // the LM head: a second V x E when untied, or when tied but the last stage is not stage 0
    // (it then holds embed_tokens again)
    const double lm = V * E;

    // forward scratch of one sequence (sds_opt_work / sds_llama_work) plus prune's x (T,C)
    double fwd;
    if (c->arch == SDS_ARCH_OPT)
        fwd = 6 * T * C + T * F + 128 * T + T * (E > C ? E : C) + T * C;
    else {
        const double Q = (double)(c->n_heads * c->head_dim),
                     KV = (double)(c->n_kv_heads * c->head_dim);
        fwd = 2 * T * C + 2 * T * Q + 2 * T * KV + 2 * T * F + 128 * T + T * (double)c->head_dim +
              T * C + (double)c->head_dim;
    }
    // the logits of 64 rows are only touched (resident) when --eval runs the head
    if (in->eval) fwd += 64 * V;
    fwd *= F4;

    // one layer's statistics: a Gram per group (x2 with the dense path: K; x4 with --sds-mix
    // auto: the held-out two), SDS's copies of each group's inputs and each sublayer's outputs
    // for one sequence, Wanda's column sums
    // The Grams are exact sums (src/xsum.h): while a layer's sequences are added, the symmetric
    // Gram G has its fp32 matrix (4 B per entry) and a packed 128-bit accumulator of its upper
    // triangle (8 B per entry), the cross Gram K its fp32 matrix and a full 128-bit accumulator
    // (16 B); the accumulators are freed once reduced (before any pruning), and they are what
    // is all-reduced.
    // A group on SDS's output route (sds_sds_output_route: its sublayers' rows together fewer
    // than its cols) has no K; each of its sublayers has S (rows x cols: fp32 and a full 128-bit
    // accumulator, a gemm of 2 rows cols per token), and no copy of the dense path's inputs.
    // With batched Grams (k = in->gram_batch > 1), each Gram at most SDS_HESSIAN_BATCH_MAX_COLS
    // wide also holds k - 1 waiting sequences' inputs and k - 1 more fp32 Grams while the
    // sequences are added, freed with the accumulators (src/hessian.c).
    double stats = 0.0, acc_bytes = 0.0, gram_flops_tok = 0.0, gram_bytes = 0.0;
    double group_rows[4] = {0.0, 0.0, 0.0, 0.0}, held_grams[4];
    for (int i = 0; i < pl.n; i++) group_rows[pl.group[i]] += pl.rows[i];
    for (int k = 0; k < pl.n_groups; k++) {
        const double cc = pl.group_cols[k], halves = auto_mix ? 2.0 : 1.0;
        const int out_route = two && sds_sds_output_route(group_rows[k], cc);
        // K's or the sublayers' S's entries
        const double cross = !two ? 0.0 : out_route ? group_rows[k] * cc : cc * cc;
        const double acc = halves * (8.0 * cc * cc + 16.0 * cross);
        held_grams[k] = halves * (cc * cc + cross) * PLAN_GRAM_HELD;
        stats += held_grams[k];
        acc_bytes += acc + halves * batch_bytes(in, T, cc);
        if (two) stats += (out_route ? 1.0 : 2.0) * T * cc * F4;
        if (wanda || is_sds) stats += cc * 12.0;
        // ssyrk of G (cols^2 per token); dense path: K (gemm, 2 cols^2) or S (2 rows cols);
        // auto: G of the odd half again
        gram_flops_tok += halves * cc * cc + 2.0 * cross;
        gram_bytes += acc;
    }
    if (two)
        for (int i = 0; i < pl.n; i++) stats += T * pl.rows[i] * F4; // the pruned path's outputs

    // the largest sublayer's pruning buffers on its owner
    double prune_mem = 0.0, lin_params = 0.0;
    for (int i = 0; i < pl.n; i++) {
        const double nw = pl.rows[i] * pl.cols[i], ng = pl.cols[i] * pl.cols[i];
        double b = nw * F4 + nw;                              // the dense copy, the mask
        if (in->method == 2) b += ng * F4;                    // the SparseGPT factor U
        if (in->method <= 1) b += 4.0 * 64 * pl.cols[i] * F4; // the error's row chunks
        if (is_sds) {
            // S, D, DG, Wc, Wb (weight-sized), two more masks, and one cols^2 (U or the ridge
            // matrix; while fixed_init runs, T and M instead of D and U: no more)
            b += 5.0 * nw * F4 + 2.0 * nw + ng * F4;
            if (adj_nesterov) b += 2.0 * nw * F4; // the previous iterate and its product
            if (auto_mix) b += ng * F4 + nw * F4; // the fitting Gram G_f, held-out S_v
            // (sequential order, one fixed mix) the first SparseGPT's U, kept for the second
            if (!auto_mix && !in->sds_parallel) b += ng * F4;
        }
        prune_mem = b > prune_mem ? b : prune_mem;
        lin_params += nw;
    }

    for (int k = 0; k < S; k++) {
        sds_plan_stage *st = &out[k];
        memset(st, 0, sizeof *st);
        sds_stage_ranks(P, S, k, &st->rank_lo, &st->rank_hi);
        sds_stage_layers(L, S, k, &st->layer_lo, &st->layer_hi);
        const int G = st->rank_hi - st->rank_lo;
        const double nl = (double)(st->layer_hi - st->layer_lo);
        const double nloc = ceil(N / G); // the stage's largest rank's sequences
        sds_plan_memory *m = &st->mem;
        m->weights = nl * pl.layer_params * F4;
        m->embeddings = k == 0 ? emb * F4 : 0.0;
        if (k == S - 1 && in->eval)
            m->head = (head + (c->tie_word_embeddings && k == 0 ? 0.0 : lm)) * F4;
        m->activations = nloc * T * C * F4 * (two ? 2 : 1);
        // SparseGPT on the grid: each group's exact sums (16 B per entry), one tile of one
        // sequence's Gram, and the sequence's inputs (own and broadcast, read in place)
        // while the statistics run; then each group's fp32 piece of H, and for the sublayer
        // being pruned the tile algorithms' panels (a column and a row of tiles), the dense copy
        // of W, the row shard's mask, the leader's whole mask, and the sweep's panel and slab
        // A group at most --local-hessian-max wide (mpi/prune.c's local route): its whole H's
        // exact sums (16 B per entry of the upper triangle) and fp32 scratch on every rank, no
        // inputs but the rank's own; then the same piece.
        double grid_held = 0.0, grid_stats = 0.0, grid_prune = 0.0;
        if (in->method == 2) {
            for (int q = 0; q < pl.n_groups; q++) {
                double ml, nlc;
                const double cc = pl.group_cols[q], pe = grid_piece(cc, G, &ml, &nlc);
                grid_held += 4.0 * pe;
                if (local_route(in, cc)) {
                    grid_stats +=
                        local_sums(cc) + 4.0 * cc * cc - 4.0 * pe + batch_bytes(in, T, cc);
                    continue;
                }
                // (only blocks on or above the diagonal are computed: the others' pages of the
                // sums are never touched, so they are not resident; with G > 1 the blocks are
                // shared out by work, and a rank may compute up to one block more than its
                // share, for another owner)
                const double upper = fmin(1.0, 0.5 + 0.5 * PLAN_DIST_NB / cc);
                const double extra = G > 1 ? 16.0 * PLAN_DIST_NB * PLAN_DIST_NB : 0.0;
                // (with k > 1 threads, sds_dist_gram_threads: one block more per extra thread)
                const double tiles = batch_extra(in) * 4.0 * PLAN_DIST_NB * PLAN_DIST_NB;
                // and X's column panels that the rank's blocks read, copied out of each
                // sequence (mpi/dist_gram.c): at most its piece's block rows and columns
                const double panels =
                    fmin(ceil(cc / PLAN_DIST_NB) * PLAN_DIST_NB, ml + nlc) * T * F4;
                grid_stats += 16.0 * pe * upper - 4.0 * pe + 4.0 * PLAN_DIST_NB * PLAN_DIST_NB +
                              extra + 2.0 * T * cc * F4 + panels + tiles;
            }
            for (int i = 0; i < pl.n; i++) {
                const double cc = pl.cols[i], nw = pl.rows[i] * cc;
                const double b =
                    2.0 * PLAN_DIST_NB * cc * F4 + nw * F4 + nw / G + nw + 2.0 * 128.0 * cc * F4;
                grid_prune = b > grid_prune ? b : grid_prune;
            }
        }
        m->calib_ids = N * T * 4.0;
        // the accumulators are gone before the pruning buffers come: the larger of the two
        m->statistics = stats + acc_bytes;
        m->prune = prune_mem > acc_bytes ? prune_mem - acc_bytes : 0.0;
        if (in->method == 2) {
            m->statistics = grid_held + grid_stats;
            m->prune = grid_prune > grid_stats ? grid_prune - grid_stats : 0.0;
        }
        m->forward = fwd;
        m->masks = nl * lin_params / 8.0;
        if (is_sds && in->sds_parallel) {
            // (no checkpoints) the owners' sublayers: the largest rank's share, at least the
            // largest sublayer or group
            double gram_all = 0.0, gram_max = 0.0, w_max = 0.0;
            for (int q = 0; q < pl.n_groups; q++) {
                const double b = held_grams[q];
                gram_all += b;
                gram_max = b > gram_max ? b : gram_max;
            }
            for (int i = 0; i < pl.n; i++)
                w_max = pl.rows[i] * pl.cols[i] > w_max ? pl.rows[i] * pl.cols[i] : w_max;
            const double grams = G == 1 ? gram_all : fmax(gram_max, gram_all / G);
            const double w = G == 1 ? lin_params : fmax(w_max, lin_params / G);
            m->masks = 0.0;
            // (the layer under way's Grams are the statistics term's)
            m->held = k < S - 1 ? (nl - 1.0) * grams + nl * w * (F4 + 1.0) : nl * w;
        }
        m->baseline = mc->baseline_bytes;
        // while loading, rank 0 also holds the tokenizer (~350 bytes per vocabulary entry,
        // measured with the OPT tokenizer) to read a --calib text
        m->load = m->baseline + m->weights + m->embeddings + m->head + in->load_extra_bytes +
                  (k == 0 ? 350.0 * V : 0.0) + m->calib_ids;
        const double run = m->weights + m->embeddings + m->head + m->activations + m->calib_ids +
                           m->statistics + m->prune + m->forward + m->masks + m->held + m->baseline;
        st->peak_bytes = run > m->load ? run : m->load;

        // compute, per layer on the stage's largest rank: forward passes (statistics pass and
        // output pass; SDS's dense path a third), 2 flops per weight per token plus causal
        // attention (QK^T and AV: 2 T x width per token on average)
        const double tok = nloc * T;
        const double passes = two ? 3.0 : 2.0;
        const double fwd_flops = passes * tok * (2.0 * pl.lin_params + 2.0 * T * pl.attn_width);
        // (the grid path: every rank its piece of every sequence's Gram, one sgemm per 256-wide
        // block and sequence; such calls, like the tile algorithms' below, ran at about half the
        // 1024^3 sgemm rate the constants measure: PLAN_GRID_RATE)
        // (--local-hessian-max's groups: each rank its own sequences, as the exact path)
        double gram_flops = tok * gram_flops_tok;
        if (in->method == 2) {
            gram_flops = 0.0;
            for (int q = 0; q < pl.n_groups; q++) {
                const double cc = pl.group_cols[q];
                gram_flops +=
                    local_route(in, cc) ? tok * cc * cc : N * T * cc * cc / G / PLAN_GRID_RATE;
            }
        }
        // softmax over the causal scores (heads x T(T+1)/2 per sequence) and Llama's SiLU
        // (T x F): expf-bound, not BLAS
        const double exps =
            passes * nloc *
            ((double)c->n_heads * T * (T + 1) / 2.0 + (c->arch == SDS_ARCH_LLAMA ? T * F : 0.0));
        st->forward_s = nl * (fwd_flops / g + exps * mc->exp_s);
        st->gram_s = nl * gram_flops / g;
        double pflops = 0.0, ps = 0.0, ps_first = 0.0, unused = 0.0;
        sds_plan_input base = *in;
        base.method = 2; // SDS's first pruning: its base's (SparseGPT's) part of the time
        for (int i = 0; i < pl.n; i++) {
            ps += prune_sublayer_s(in, mc, pl.rows[i], pl.cols[i], &pflops);
            ps_first += prune_sublayer_s(&base, mc, pl.rows[i], pl.cols[i], &unused);
        }
        if (is_sds && in->sds_parallel) {
            st->overlap = 1;
            st->sds_s = nl * (ps > ps_first ? ps - ps_first : 0.0);
        }
        if (in->method == 2) {
            // the grid: every sublayer over the G ranks (the factorisation's tile algorithms
            // counted at half sgemm's rate) and the error's D^T D on half the blocks
            ps = 0.0;
            pflops = 0.0;
            for (int i = 0; i < pl.n; i++) {
                const double cc = pl.cols[i], rows = pl.rows[i];
                const double f =
                    sparsegpt_flops(rows, cc) + 4.0 / 3.0 * cc * cc * cc + 2.0 * rows * cc * cc;
                pflops += f / G;
                ps += f / G / (PLAN_GRID_RATE * g) + 4.0 * rows * cc * F4 / mc->stream_bw;
            }
        }
        st->prune_s = nl * ps;
        // loading the stage's weights, writing weights (fp32) and masks (uint8) of its layers
        st->io_s = (m->weights + m->embeddings + m->head) / mc->io_bw +
                   nl * lin_params * 5.0 / mc->io_bw / G;
        st->flops = nl * (fwd_flops + gram_flops + pflops);
        st->compute_s = st->forward_s + st->gram_s + st->prune_s + st->io_s;

        // communication: the Grams all-reduced over the stage, every pruned sublayer broadcast
        // from its owner, the activations handed to the next stage (all N x T x C of them,
        // from the stage's ranks in parallel to the next stage's)
        st->allreduce_s = nl * pl.n_groups * allreduce_s(gram_bytes / pl.n_groups, G, mc);
        if (in->method == 2) {
            // the grid: every sequence's inputs broadcast over the stage, the scalars reduced;
            // the local route: the exact sums all-reduced
            double in_cols = 0.0, sums = 0.0;
            for (int q = 0; q < pl.n_groups; q++) {
                const double cc = pl.group_cols[q];
                if (local_route(in, cc))
                    sums += allreduce_s(local_sums(cc), G, mc);
                else
                    in_cols += cc;
            }
            st->allreduce_s = nl * (N * bcast_s(T * in_cols * F4, G, mc) + sums);
        }
        double bc = 0.0;
        for (int i = 0; i < pl.n; i++) bc += bcast_s(pl.rows[i] * pl.cols[i] * F4, G, mc);
        st->bcast_s = nl * bc;
        if (k < S - 1) {
            int lo2, hi2;
            sds_stage_ranks(P, S, k + 1, &lo2, &hi2);
            const int links = G < hi2 - lo2 ? G : hi2 - lo2;
            st->handoff_s = N * T * C * F4 * (two ? 2 : 1) / links / mc->mpi_bw + mc->mpi_lat;
        }
        st->comm_s = st->allreduce_s + st->bcast_s + st->handoff_s;
    }
    return 0;
}

void sds_plan_totals(const sds_plan_stage *st, int stages, double *peak_bytes, double *seconds) {
    double pk = 0.0, s = 0.0, end = 0.0;
    for (int k = 0; k < stages; k++) {
        pk = st[k].peak_bytes > pk ? st[k].peak_bytes : pk;
        // (parallel order: stage k starts once the stages before it have passed their
        // first-pruned outputs on, and ends its SDS part after that; else one after another)
        s += st[k].compute_s + st[k].comm_s - st[k].sds_s;
        end = s + st[k].sds_s > end ? s + st[k].sds_s : end;
    }
    s = end;
    if (peak_bytes) *peak_bytes = pk;
    if (seconds) *seconds = s;
}

int sds_plan_default_stages(const sds_plan_input *in, const sds_plan_machine *mc,
                            double mem_per_rank_bytes) {
    const int64_t L = in->cfg.n_layers;
    const int smax = (int64_t)in->nranks < L ? in->nranks : (int)L;
    if (smax < 1) return 1;
    sds_plan_stage *st = malloc((size_t)smax * sizeof *st);
    if (!st) return smax;
    sds_plan_input x = *in;
    int found = smax;
    for (int s = 1; s <= smax; s++) {
        x.stages = s;
        if (sds_plan_compute(&x, mc, st) != 0) break;
        double pk;
        sds_plan_totals(st, s, &pk, NULL);
        if (pk <= mem_per_rank_bytes) {
            found = s;
            break;
        }
    }
    free(st);
    return found;
}

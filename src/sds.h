// SDS (Sparse-Dense-Sparse, SPEC 2.6) for one linear sublayer, entirely on Gram matrices.
//
// Notation (X row-major, one row per token; outputs Y = X W^T):
//   X_s  the sublayer's inputs in the pruned model, X_t the target inputs: X_s itself for
//        target (a) "pruned" (the objective SparseGPT reconstructs), the dense model's inputs
//        X_d for target (b) "dense" (the dense model's own outputs: also corrects the error
//        carried in from earlier layers).
//   G = X_s^T X_s, K = X_s^T X_t   (cols, cols), with the same scale (the Hessian's 2/n; it
//        cancels everywhere). K is needed only through S = W_d (G - K^T) (rows, cols), which
//        the problem carries.
//   err(W) = |X_s W^T - X_t W_d^T|^2 = <D, D G> + 2 <D, S> + c0, with D = W - W_d,
//        S = W_d (G - K^T), c0 = err(W_d) = |X_s W_d^T - X_t W_d^T|^2
//        (target (a): S = 0, c0 = 0). Relative error: err / e_tt, e_tt = |X_t W_d^T|^2.
//   c0 and e_tt are sums over the calibration tokens of the sublayer's outputs, which the
//   forward passes compute anyway (sds_sds_target_terms): X_t^T X_t itself is never needed.
//   The gradient is 2 (D G + S): one (rows x cols x cols) sgemm per step, never the raw X.
//
// The cycle:
//   1. first pruning W1 (given: the base method's result and its mask);
//   2. re-dense: from W1, every weight free, minimise
//        F(W) = err(W) / e_tt + l1 |W|_1 / |W_d|_1 + l2 |W|_F^2 / |W_d|_F^2
//      (each term relative, so l1 and l2 do not depend on the layer's scale) with
//        ridge  the closed form (l1 must be 0): D (G + (l2' + damp) I) = -(S + l2' W_d),
//               l2' = l2 e_tt / |W_d|_F^2, damp = percdamp * mean(diag G) as SparseGPT's;
//        gd     the paper's gradient descent (L1 by its subgradient), `iters` steps of
//               lr / L, L the Lipschitz constant of F's smooth part (lambda_max(G) by power
//               iteration);
//        fista  accelerated proximal gradient (L1 by soft thresholding), same step;
//   3. second pruning of the re-dense weights with the base method (SparseGPT on G, or
//      Wanda with the input statistic), then weight adjustment: `adjust_iters` projected
//      gradient steps of adjust_lr / L on err, the mask re-chosen by magnitude in the target
//      pattern after each step (best iterate kept); with `adjust_nesterov` each step is taken
//      from the extrapolated point W + k/(k+3) (W - W_prev) (k reset to 0 whenever err rises),
//      still one rows x cols x cols product a step since (Y - W_d) G is the same combination
//      of the two last products; skipped when `early_exit` is set and the second pruning
//      already beats the first;
//   4. the sublayer keeps whichever of W1 and the SDS result has the lower err.
#pragma once
#include "pattern.h"

#include <stdint.h>

typedef enum { SDS_TARGET_PRUNED = 0, SDS_TARGET_DENSE = 1 } sds_target;
typedef enum { SDS_SOLVER_RIDGE = 0, SDS_SOLVER_GD = 1, SDS_SOLVER_FISTA = 2 } sds_solver;
typedef enum { SDS_BASE_SPARSEGPT = 0, SDS_BASE_WANDA = 1 } sds_base;

typedef struct {
    sds_base base;
    sds_target target;
    sds_solver solver;
    int32_t iters;           // re-dense steps (gd, fista)
    double lr;               // re-dense step in units of 1/L
    double l1, l2;           // relative regularisation weights (see above)
    int32_t adjust_iters;    // projected gradient steps after the second pruning
    double adjust_lr;        // their step in units of 1/L
    int32_t adjust_nesterov; // 1: accelerated (momentum) adjustment steps, 0: plain
    int32_t early_exit;      // skip the adjustment when the second pruning beats the first
    int32_t redense;         // 0: skip step 2 (ablation: second pruning of W1 itself)
    double mix;        // target dense only: X_t = (1 - mix) X_s + mix X_d (1: the dense path);
                       // SDS_MIX_AUTO: chosen per sublayer on held-out sequences (below)
    double percdamp;   // SparseGPT damping (also the ridge's)
    int64_t blocksize; // SparseGPT block
} sds_sds_opts;

#define SDS_MIX_AUTO (-1.0)

// Defaults (README "SDS defaults" says how they were chosen).
void sds_sds_defaults(sds_sds_opts *o);

// One sublayer's problem. G (cols, cols) full symmetric: the sublayer's Hessian (X_s).
// For target (a) S is NULL (e_tt and c0 are then computed from G); for (b) S = W_d (G - K^T)
// (rows, cols) is given, with K = X_s^T X_t on G's scale (sds_sds_term_from_cross makes it;
// prune also accumulates it from the sublayer's outputs, S = (Y_s - Y_t)^T X_s with
// Y = X W_d^T, where that is cheaper: sds_sds_output_route), and e_tt >= 0, c0 >= 0 on the same
// scale.
// stat: the Wanda statistic of X_s (cols) for the Wanda base, else NULL.
typedef struct {
    int64_t rows, cols;
    const float *Wd; // dense weights (rows, cols) row-major
    const float *G;
    const float *S;
    double e_tt, c0;
    const float *stat;
    // Optional, for the SparseGPT base: U, sds_sparsegpt_prepare's factor of this G, and the
    // damping it took (from the first pruning, with the same percdamp). The second pruning then
    // sweeps with it (the same bits as factoring G again, at none of the cost); NULL: it
    // factors G.
    const float *U;
    double U_percdamp;
} sds_problem;

typedef struct {
    double rel_err_first;   // err(W1) / e_tt
    double rel_err_redense; // err(W_r) / e_tt (the dense reconstruction: a lower bound-ish)
    double rel_err_second;  // err after the second pruning, before adjustment
    double rel_err_sds;     // err of the SDS result (after adjustment)
    double rel_err_final;   // of what is kept
    int32_t kept_sds;       // 1 when the SDS result replaced W1
    int32_t adjust_steps;   // adjustment steps taken (0 after an early exit)
    int32_t adjust_best;    // the step whose iterate was kept (0: the second pruning's)
    double damping;         // relative damping of the second SparseGPT (0 for Wanda)
    double wd_s;            // <W_d, S> (0 for the pruned target): equals
                            // <X_s W_d^T, X_s W_d^T - X_t W_d^T>, a check of K against e_tt, c0
} sds_sds_info;

// Relative error err(W)/e_tt of any W (rows, cols) for the problem.
int sds_sds_rel_error(const sds_problem *p, const float *W, double *rel);

// Runs steps 2-4. W (rows, cols) holds W1 on entry and the kept weights on return; mask holds
// W1's mask (1 = pruned) on entry and the kept mask on return. pat: the target pattern.
int sds_sds_run(const sds_problem *p, sds_pattern pat, const sds_sds_opts *o, float *W,
                uint8_t *mask, sds_sds_info *info);

// The dense target's term S = W_d (G - K^T) (rows, cols) from the Grams (cols, cols, G = X_s^T X_s
// full symmetric, K = X_s^T X_t). The blended target X_t = (1 - b) X_s + b X_d has
// G - K_b^T = b (G - K^T), so its term is b times that of X_d: S is linear in the blend.
int sds_sds_term_from_cross(const float *Wd, int64_t rows, int64_t cols, const float *G,
                            const float *K, float *S);

// Whether a group of sublayers sharing one input of `cols` columns, with `rows` output rows
// together, gets its dense-target terms from the outputs (each sublayer's S = (Y_s - Y_d)^T X_s,
// 2 rows cols flops a token) rather than from the cross Gram K = X_s^T X_d (2 cols^2 a token):
// rows < cols (Llama's down_proj, OPT's fc2: a quarter to a third of the cross Gram's flops
// and memory).
int sds_sds_output_route(double rows, double cols);

// The blended target's e_tt and c0 from three sums over the calibration tokens of a sublayer's
// outputs without bias (any common scale): ss = |X_s W_d^T|^2 (the dense sublayer on the pruned
// path), dd = |X_d W_d^T|^2 (on the dense path), diff = |X_s W_d^T - X_d W_d^T|^2.
// e_tt = |X_t W_d^T|^2 = ss + b (dd - ss - diff) + b^2 diff, c0 = b^2 diff.
void sds_sds_target_terms(double ss, double dd, double diff, double b, double *e_tt, double *c0);

// The mix for one sublayer, chosen on held-out sequences: `fit` holds the Hessian and the full
// correction's term (G, S of X_t = X_d) of the fitting sequences, `val` those of held-out ones,
// on the same scale (e_tt, c0 unused).
// The full correction (ridge re-dense to the dense target, damping percdamp) is fitted on `fit`;
// the returned b in [0, 1] minimises the held-out error of W_d + b (W_r - W_d), a quadratic in b
// (0 when val is empty).
int sds_sds_choose_mix(const sds_problem *fit, const sds_problem *val, double percdamp, double *b);

const char *sds_target_name(sds_target t);
const char *sds_solver_name(sds_solver s);
const char *sds_base_name(sds_base b);

// sds-mpi: the command-line entry point. Every rank parses the same options; rank 0 speaks.
#include "agree.h"
#include "eval.h"
#include "export.h"
#include "plan_cli.h"
#include "prune.h"
#include "runtime.h"
#include "sds_error.h"
#include "stop.h"

#include <errno.h>
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: sds-mpi COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  eval     perplexity of a model on a text\n"
    "  prune    one-shot pruning (magnitude, Wanda, SparseGPT) of every decoder layer\n"
    "  export   a model with pruned weights as a Hugging Face directory\n"
    "  plan     per-rank memory and time of a prune run, before running it\n"
    "\n"
    "sds-mpi eval --model DIR --text FILE [--seqlen N] [--max-windows K] [--tokenizer DIR]\n"
    "             [--json FILE] [--weights FILE.h5] [--stages S]\n"
    "  --model DIR        Hugging Face checkpoint (config.json + *.safetensors)\n"
    "  --text FILE        UTF-8 text, tokenized as a whole and cut into windows\n"
    "  --seqlen N         window length in tokens (default: min(2048, max positions))\n"
    "  --max-windows K    evaluate only the first K windows (default: all)\n"
    "  --tokenizer DIR    tokenizer files (default: the model directory)\n"
    "  --json FILE        also write the result and settings as JSON\n"
    "  --weights FILE.h5  evaluate with the pruned weights of an sds-mpi prune output\n"
    "  --stages S         pipeline stages, each rank holding its stage's layers (default 1)\n"
    "\n"
    "sds-mpi prune --model M --calib FILE --method magnitude|wanda|sparsegpt|sds\n"
    "              --sparsity 0.5|0.7|2:4|4:8 --out FILE.h5 [--nsamples 128] [--seqlen N]\n"
    "              [--seed 0] [--blocksize 128] [--percdamp 0.01] [--eval FILE]\n"
    "              [--eval-max-windows K] [--tokenizer DIR] [--json FILE] [--export-hf DIR]\n"
    "              [--base sparsegpt|wanda] [--sds-* ...] [--resume] [--checkpoint-every-layer]\n"
    "  --model M          as for eval\n"
    "  --calib FILE       calibration text; windows drawn with SplitMix64(--seed)\n"
    "  --calib-tokens F   calibration as token ids instead: .npy (int32/int64/uint16/uint32)\n"
    "                     or white-space separated decimal ids, used as they are\n"
    "  --method NAME      magnitude, wanda, sparsegpt, or sds (Sparse-Dense-Sparse over --base)\n"
    "  --export-hf DIR    also write a Hugging Face directory (config, safetensors, tokenizer)\n"
    "  --base NAME        SDS's first and second pruning: sparsegpt (default) or wanda\n"
    "  --sds-target T     re-dense target: dense (W_d X_d, default) or pruned (W_d X_s)\n"
    "  --sds-mix B        dense target X_t = (1-B) X_s + B X_d, B in [0, 1], or auto: chosen\n"
    "                     per sublayer on held-out calibration sequences (default 0.3)\n"
    "  --sds-solver S     re-dense solver: ridge (closed form, default), gd or fista\n"
    "  --sds-iters N      gd/fista steps (default 200)\n"
    "  --sds-lr X         gd/fista step in units of 1/L (default 1)\n"
    "  --sds-l1 X, --sds-l2 X  relative L1 / L2 weights (default 0, 0)\n"
    "  --sds-adjust-iters N  projected-gradient adjustment steps (default 10)\n"
    "  --sds-adjust-lr X  their step in units of 1/L (default 1)\n"
    "  --sds-adjust-solver S  adjustment steps: nesterov (accelerated, default) or gd (plain)\n"
    "  --sds-early-exit   skip the adjustment when the second pruning beats the first\n"
    "  --sds-no-redense   ablation: prune the first-pruned weights again, no re-dense step\n"
    "  --sds-order O      sequential (default): each layer's calibration inputs come from the\n"
    "                     SDS-adjusted layers before it; parallel: from the first-pruned ones,\n"
    "                     so that every stage runs SDS on its layers while the later stages\n"
    "                     work (no checkpoints; a signal ends the run with exit 5, nothing kept)\n"
    "  --sparsity S       unstructured fraction (0 < S < 1) or N:M (N zeros in every M)\n"
    "  --out FILE.h5      pruned weights, masks and statistics (HDF5, written atomically)\n"
    "  --nsamples N       calibration windows (default 128)\n"
    "  --seqlen N         tokens per window (default: min(2048, max positions))\n"
    "  --seed N           calibration window generator seed (default 0)\n"
    "  --blocksize B      SparseGPT column block (default 128)\n"
    "  --percdamp D       SparseGPT damping relative to mean(diag H) (default 0.01)\n"
    "  --local-hessian-max C  SparseGPT: Hessians at most C columns wide are summed on each\n"
    "                     rank from its own sequences and all-reduced; wider ones on the\n"
    "                     stage's grid, no rank holding a whole one (default 2048; 0: all on\n"
    "                     the grid)\n"
    "  --eval FILE        evaluate dense and pruned perplexity on FILE\n"
    "  --eval-max-windows K  evaluate only the first K windows\n"
    "  --json FILE        also write a JSON summary\n"
    "  --resume           go on from the checkpoint in FILE.h5.ckpt/ when there is one (same\n"
    "                     options and rank count), else start from scratch\n"
    "  --checkpoint-every-layer  write FILE.h5.ckpt/ after every layer (survives kill -9);\n"
    "                     SIGTERM/SIGUSR1 always finish the layer, checkpoint and exit 75\n"
    "  --stages S         pipeline stages: the ranks split into S groups, each owning a\n"
    "                     contiguous range of decoder layers (default: the fewest whose\n"
    "                     per-rank memory fits, see sds-mpi plan)\n"
    "\n"
    "sds-mpi export --model M --weights FILE.h5 --out DIR [--tokenizer DIR]\n"
    "  --model M          as for eval\n"
    "  --weights FILE.h5  the sds-mpi prune output whose weights replace the model's\n"
    "  --out DIR          the directory to create (absent or empty): config.json,\n"
    "                     model.safetensors in the source's dtypes (F32 from GGUF), tokenizer\n"
    "  --tokenizer DIR    tokenizer files to copy (default: the model's)\n"
    "\n"
    "sds-mpi plan --model M [-np P] [--stages S] [--nsamples 128] [--seqlen N]\n"
    "             [--method M] [--sds-target T] [--sds-mix auto] [--sds-order O] [--eval]\n"
    "             [--mem-per-rank GiB] [--machine FILE] [--json FILE] [--local-hessian-max C]\n"
    "  --model M          as for eval; a directory with only config.json is enough\n"
    "  -np P              ranks of the planned run (default: this run's)\n"
    "  --stages S         pipeline stages (default: the fewest whose peak fits --mem-per-rank)\n"
    "  --method M         as for prune (default sparsegpt)\n"
    "  --mem-per-rank G   GiB per rank (default: this node's memory over its ranks)\n"
    "  --machine FILE     JSON constants (gemm_gflops, mpi_bw, mpi_lat, baseline_mib, ...)\n"
    "                     instead of measuring them here\n"
    "  --json FILE        also write the plan as JSON\n"
    "  --local-hessian-max C  as for prune\n"
    "\n"
    "exit codes: 0 ok, 1 internal error, 2 usage, 3 input data, 4 numerical failure, 5 I/O,\n"
    "            75 checkpointed (resubmit with --resume)\n";

static int parse_int(const char *opt, const char *arg, int64_t lo, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno || !end || *end || end == arg || v < lo)
        return sds_error_set(SDS_ERR_USAGE, "option %s: \"%s\" is not an integer >= %lld", opt, arg,
                             (long long)lo);
    *out = v;
    return SDS_OK;
}

static int unknown_option(char **argv, int idx) {
    const char *a = (idx >= 1 && argv[idx - 1]) ? argv[idx - 1] : "?";
    return sds_error_set(SDS_ERR_USAGE, "unknown or incomplete option '%s' (see sds-mpi --help)",
                         a);
}

static int parse_eval(int argc, char **argv, sds_eval_opts *o) {
    memset(o, 0, sizeof *o);
    enum { O_MODEL = 256, O_TEXT, O_SEQLEN, O_MAXW, O_TOK, O_JSON, O_WEIGHTS, O_STAGES };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"text", required_argument, 0, O_TEXT},
                                         {"seqlen", required_argument, 0, O_SEQLEN},
                                         {"max-windows", required_argument, 0, O_MAXW},
                                         {"tokenizer", required_argument, 0, O_TOK},
                                         {"json", required_argument, 0, O_JSON},
                                         {"weights", required_argument, 0, O_WEIGHTS},
                                         {"stages", required_argument, 0, O_STAGES},
                                         {0, 0, 0, 0}};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL:
            o->model = optarg;
            break;
        case O_WEIGHTS:
            o->weights = optarg;
            break;
        case O_TEXT:
            o->text = optarg;
            break;
        case O_SEQLEN:
            SDS_TRY(parse_int("--seqlen", optarg, 2, &o->seqlen));
            break;
        case O_MAXW:
            SDS_TRY(parse_int("--max-windows", optarg, 1, &o->max_windows));
            break;
        case O_TOK:
            o->tokenizer = optarg;
            break;
        case O_JSON:
            o->json = optarg;
            break;
        case O_STAGES:
            SDS_TRY(parse_int("--stages", optarg, 1, &o->stages));
            break;
        default:
            return unknown_option(argv, optind);
        }
    }
    if (optind < argc)
        return sds_error_set(SDS_ERR_USAGE, "unexpected argument '%s'", argv[optind]);
    if (!o->model) return sds_error_set(SDS_ERR_USAGE, "eval: --model is required");
    if (!o->text) return sds_error_set(SDS_ERR_USAGE, "eval: --text is required");
    return SDS_OK;
}

static int parse_export(int argc, char **argv, sds_export_opts *o) {
    memset(o, 0, sizeof *o);
    enum { O_MODEL = 256, O_WEIGHTS, O_OUT, O_TOK };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"weights", required_argument, 0, O_WEIGHTS},
                                         {"out", required_argument, 0, O_OUT},
                                         {"tokenizer", required_argument, 0, O_TOK},
                                         {0, 0, 0, 0}};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL:
            o->model = optarg;
            break;
        case O_WEIGHTS:
            o->weights = optarg;
            break;
        case O_OUT:
            o->out = optarg;
            break;
        case O_TOK:
            o->tokenizer = optarg;
            break;
        default:
            return unknown_option(argv, optind);
        }
    }
    if (optind < argc)
        return sds_error_set(SDS_ERR_USAGE, "unexpected argument '%s'", argv[optind]);
    if (!o->model) return sds_error_set(SDS_ERR_USAGE, "export: --model is required");
    if (!o->weights) return sds_error_set(SDS_ERR_USAGE, "export: --weights is required");
    if (!o->out) return sds_error_set(SDS_ERR_USAGE, "export: --out is required");
    return SDS_OK;
}

// A number in (lo, hi), or in [lo, hi) when lo_closed (regularisation weights may be 0).
static int parse_range(const char *opt, const char *arg, double lo, int lo_closed, double hi,
                       double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || !end || *end || end == arg || !((lo_closed ? v >= lo : v > lo) && v < hi))
        return sds_error_set(SDS_ERR_USAGE, "option %s: \"%s\" is not a number in %c%g, %g)", opt,
                             arg, lo_closed ? '[' : '(', lo, hi);
    *out = v;
    return SDS_OK;
}

static int parse_double(const char *opt, const char *arg, double lo, double hi, double *out) {
    return parse_range(opt, arg, lo, 0, hi, out);
}

// A number >= 0 (regularisation weights, the SDS blend).
static int parse_nonneg(const char *opt, const char *arg, double *out) {
    return parse_range(opt, arg, 0.0, 1, 1e6, out);
}

static int parse_prune(int argc, char **argv, sds_prune_opts *o) {
    memset(o, 0, sizeof *o);
    o->nsamples = 128;
    o->blocksize = 128;
    o->percdamp = 0.01;
    o->local_hessian_max = SDS_LOCAL_HESSIAN_MAX;
    sds_sds_defaults(&o->sds);
    const char *method = NULL, *base = NULL;
    int sds_option = 0; // an --sds-* or --base option was given
    enum {
        O_MODEL = 256,
        O_CALIB,
        O_METHOD,
        O_SPARSITY,
        O_OUT,
        O_NSAMPLES,
        O_SEQLEN,
        O_SEED,
        O_BLOCK,
        O_DAMP,
        O_EVAL,
        O_EVALW,
        O_TOK,
        O_JSON,
        O_EXPORT,
        O_BASE,
        O_TARGET,
        O_SOLVER,
        O_ITERS,
        O_LR,
        O_L1,
        O_L2,
        O_AITERS,
        O_ALR,
        O_ASOLVER,
        O_EARLY,
        O_NOREDENSE,
        O_MIX,
        O_CTOK,
        O_RESUME,
        O_CKPT_EVERY,
        O_STAGES,
        O_ORDER,
        O_LOCALH
    };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"calib", required_argument, 0, O_CALIB},
                                         {"method", required_argument, 0, O_METHOD},
                                         {"sparsity", required_argument, 0, O_SPARSITY},
                                         {"out", required_argument, 0, O_OUT},
                                         {"nsamples", required_argument, 0, O_NSAMPLES},
                                         {"seqlen", required_argument, 0, O_SEQLEN},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"blocksize", required_argument, 0, O_BLOCK},
                                         {"percdamp", required_argument, 0, O_DAMP},
                                         {"eval", required_argument, 0, O_EVAL},
                                         {"eval-max-windows", required_argument, 0, O_EVALW},
                                         {"tokenizer", required_argument, 0, O_TOK},
                                         {"json", required_argument, 0, O_JSON},
                                         {"export-hf", required_argument, 0, O_EXPORT},
                                         {"base", required_argument, 0, O_BASE},
                                         {"sds-target", required_argument, 0, O_TARGET},
                                         {"sds-solver", required_argument, 0, O_SOLVER},
                                         {"sds-iters", required_argument, 0, O_ITERS},
                                         {"sds-lr", required_argument, 0, O_LR},
                                         {"sds-l1", required_argument, 0, O_L1},
                                         {"sds-l2", required_argument, 0, O_L2},
                                         {"sds-adjust-iters", required_argument, 0, O_AITERS},
                                         {"sds-adjust-lr", required_argument, 0, O_ALR},
                                         {"sds-adjust-solver", required_argument, 0, O_ASOLVER},
                                         {"sds-early-exit", no_argument, 0, O_EARLY},
                                         {"sds-no-redense", no_argument, 0, O_NOREDENSE},
                                         {"sds-mix", required_argument, 0, O_MIX},
                                         {"calib-tokens", required_argument, 0, O_CTOK},
                                         {"resume", no_argument, 0, O_RESUME},
                                         {"checkpoint-every-layer", no_argument, 0, O_CKPT_EVERY},
                                         {"stages", required_argument, 0, O_STAGES},
                                         {"sds-order", required_argument, 0, O_ORDER},
                                         {"local-hessian-max", required_argument, 0, O_LOCALH},
                                         {0, 0, 0, 0}};
    opterr = 0;
    optind = 1;
    int c;
    int64_t v;
    const char *target = NULL, *solver = NULL;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL:
            o->model = optarg;
            break;
        case O_CALIB:
            o->calib = optarg;
            break;
        case O_METHOD:
            method = optarg;
            break;
        case O_SPARSITY:
            o->sparsity_text = optarg;
            SDS_TRY(sds_pattern_parse(optarg, &o->pattern));
            break;
        case O_OUT:
            o->out = optarg;
            break;
        case O_NSAMPLES:
            SDS_TRY(parse_int("--nsamples", optarg, 1, &o->nsamples));
            break;
        case O_SEQLEN:
            SDS_TRY(parse_int("--seqlen", optarg, 2, &o->seqlen));
            break;
        case O_SEED:
            SDS_TRY(parse_int("--seed", optarg, 0, &v));
            o->seed = (uint64_t)v;
            break;
        case O_BLOCK:
            SDS_TRY(parse_int("--blocksize", optarg, 1, &o->blocksize));
            break;
        case O_DAMP:
            SDS_TRY(parse_double("--percdamp", optarg, 0.0, 1e6, &o->percdamp));
            break;
        case O_EVAL:
            o->eval = optarg;
            break;
        case O_EVALW:
            SDS_TRY(parse_int("--eval-max-windows", optarg, 1, &o->eval_max_windows));
            break;
        case O_TOK:
            o->tokenizer = optarg;
            break;
        case O_JSON:
            o->json = optarg;
            break;
        case O_EXPORT:
            o->export_hf = optarg;
            break;
        case O_CTOK:
            o->calib_tokens = optarg;
            break;
        case O_RESUME:
            o->resume = 1;
            break;
        case O_CKPT_EVERY:
            o->every_layer = 1;
            break;
        case O_STAGES:
            SDS_TRY(parse_int("--stages", optarg, 1, &v));
            o->stages = v;
            break;
        case O_LOCALH:
            SDS_TRY(parse_int("--local-hessian-max", optarg, 0, &o->local_hessian_max));
            break;
        case O_BASE:
            base = optarg;
            sds_option = 1;
            break;
        case O_TARGET:
            target = optarg;
            sds_option = 1;
            break;
        case O_SOLVER:
            solver = optarg;
            sds_option = 1;
            break;
        case O_ITERS:
            SDS_TRY(parse_int("--sds-iters", optarg, 0, &v));
            o->sds.iters = (int32_t)(v > 1000000 ? 1000000 : v);
            sds_option = 1;
            break;
        case O_LR:
            SDS_TRY(parse_double("--sds-lr", optarg, 0.0, 2.0, &o->sds.lr));
            sds_option = 1;
            break;
        case O_L1:
            SDS_TRY(parse_nonneg("--sds-l1", optarg, &o->sds.l1));
            sds_option = 1;
            break;
        case O_L2:
            SDS_TRY(parse_nonneg("--sds-l2", optarg, &o->sds.l2));
            sds_option = 1;
            break;
        case O_AITERS:
            SDS_TRY(parse_int("--sds-adjust-iters", optarg, 0, &v));
            o->sds.adjust_iters = (int32_t)(v > 1000000 ? 1000000 : v);
            sds_option = 1;
            break;
        case O_ALR:
            SDS_TRY(parse_double("--sds-adjust-lr", optarg, 0.0, 2.0, &o->sds.adjust_lr));
            sds_option = 1;
            break;
        case O_ASOLVER:
            if (!strcmp(optarg, "gd"))
                o->sds.adjust_nesterov = 0;
            else if (!strcmp(optarg, "nesterov"))
                o->sds.adjust_nesterov = 1;
            else
                return sds_error_set(SDS_ERR_USAGE,
                                     "option --sds-adjust-solver: \"%s\" is not one of gd, "
                                     "nesterov",
                                     optarg);
            sds_option = 1;
            break;
        case O_ORDER:
            if (!strcmp(optarg, "sequential"))
                o->sds_parallel = 0;
            else if (!strcmp(optarg, "parallel"))
                o->sds_parallel = 1;
            else
                return sds_error_set(SDS_ERR_USAGE,
                                     "option --sds-order: \"%s\" is not one of sequential, "
                                     "parallel",
                                     optarg);
            sds_option = 1;
            break;
        case O_EARLY:
            o->sds.early_exit = 1;
            sds_option = 1;
            break;
        case O_NOREDENSE:
            o->sds.redense = 0;
            sds_option = 1;
            break;
        case O_MIX:
            if (!strcmp(optarg, "auto")) {
                o->sds.mix = SDS_MIX_AUTO;
                sds_option = 1;
                break;
            }
            SDS_TRY(parse_nonneg("--sds-mix", optarg, &o->sds.mix));
            if (o->sds.mix > 1.0)
                return sds_error_set(SDS_ERR_USAGE,
                                     "option --sds-mix: \"%s\" is not in [0, 1] or auto", optarg);
            sds_option = 1;
            break;
        default:
            return unknown_option(argv, optind);
        }
    }
    if (optind < argc)
        return sds_error_set(SDS_ERR_USAGE, "unexpected argument '%s'", argv[optind]);
    if (base) {
        if (!strcmp(base, "sparsegpt"))
            o->sds.base = SDS_BASE_SPARSEGPT;
        else if (!strcmp(base, "wanda"))
            o->sds.base = SDS_BASE_WANDA;
        else
            return sds_error_set(SDS_ERR_USAGE,
                                 "option --base: \"%s\" is not one of sparsegpt, wanda", base);
    }
    if (target) {
        if (!strcmp(target, "dense"))
            o->sds.target = SDS_TARGET_DENSE;
        else if (!strcmp(target, "pruned"))
            o->sds.target = SDS_TARGET_PRUNED;
        else
            return sds_error_set(SDS_ERR_USAGE,
                                 "option --sds-target: \"%s\" is not one of dense, pruned", target);
    }
    if (solver) {
        if (!strcmp(solver, "ridge"))
            o->sds.solver = SDS_SOLVER_RIDGE;
        else if (!strcmp(solver, "gd"))
            o->sds.solver = SDS_SOLVER_GD;
        else if (!strcmp(solver, "fista"))
            o->sds.solver = SDS_SOLVER_FISTA;
        else
            return sds_error_set(SDS_ERR_USAGE,
                                 "option --sds-solver: \"%s\" is not one of ridge, gd, fista",
                                 solver);
    }
    if (o->sds.solver == SDS_SOLVER_RIDGE && o->sds.l1 != 0.0)
        return sds_error_set(SDS_ERR_USAGE,
                             "option --sds-l1: the ridge solver has no L1 term (use --sds-solver "
                             "gd or fista)");
    o->sds.percdamp = o->percdamp;
    o->sds.blocksize = o->blocksize;
    if (!o->model) return sds_error_set(SDS_ERR_USAGE, "prune: --model is required");
    if (!o->calib && !o->calib_tokens)
        return sds_error_set(SDS_ERR_USAGE, "prune: --calib (text) or --calib-tokens is required");
    if (o->calib && o->calib_tokens)
        return sds_error_set(SDS_ERR_USAGE, "prune: give --calib or --calib-tokens, not both");
    if (!o->out) return sds_error_set(SDS_ERR_USAGE, "prune: --out is required");
    if (!o->sparsity_text) return sds_error_set(SDS_ERR_USAGE, "prune: --sparsity is required");
    if (!method) return sds_error_set(SDS_ERR_USAGE, "prune: --method is required");
    if (!strcmp(method, "magnitude"))
        o->method = SDS_METHOD_MAGNITUDE;
    else if (!strcmp(method, "wanda"))
        o->method = SDS_METHOD_WANDA;
    else if (!strcmp(method, "sparsegpt"))
        o->method = SDS_METHOD_SPARSEGPT;
    else if (!strcmp(method, "sds"))
        o->method = SDS_METHOD_SDS;
    else
        return sds_error_set(SDS_ERR_USAGE,
                             "option --method: \"%s\" is not one of magnitude, wanda, sparsegpt, "
                             "sds",
                             method);
    if (o->sds_parallel && o->every_layer)
        return sds_error_set(SDS_ERR_USAGE,
                             "option --sds-order parallel keeps no checkpoints: drop "
                             "--checkpoint-every-layer, or use --sds-order sequential");
    if (sds_option && o->method != SDS_METHOD_SDS)
        return sds_error_set(SDS_ERR_USAGE,
                             "options --base and --sds-* apply only to --method sds (got --method "
                             "%s)",
                             method);
    return SDS_OK;
}

int main(int argc, char **argv) {
    sds_runtime_blas_core_fix(argc, argv);
    // prune: from start-up on, SIGTERM/SIGUSR1 mean "checkpoint after this layer" (mpi/stop.h)
    if (argc >= 2 && !strcmp(argv[1], "prune")) sds_stop_install();
    MPI_Init(&argc, &argv);
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank;
    MPI_Comm_rank(comm, &rank);
    int rc = SDS_OK;
    if (argc < 2) {
        if (rank == 0) fputs(usage_text, stderr);
        rc = SDS_ERR_USAGE;
    } else if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (rank == 0) fputs(usage_text, stdout);
    } else if (!strcmp(argv[1], "--version")) {
        if (rank == 0) printf("sds-mpi 0.1.0\n");
    } else if (!strcmp(argv[1], "eval")) {
        sds_eval_opts o;
        rc = sds_agree(comm, parse_eval(argc - 1, argv + 1, &o));
        if (rc == SDS_OK) {
            sds_runtime_blas_threads(comm);
            rc = sds_eval_run(comm, &o);
        }
    } else if (!strcmp(argv[1], "prune")) {
        sds_prune_opts o;
        rc = sds_agree(comm, parse_prune(argc - 1, argv + 1, &o));
        if (rc == SDS_OK) {
            sds_runtime_blas_threads(comm);
            rc = sds_prune_run(comm, &o);
        }
    } else if (!strcmp(argv[1], "plan")) {
        rc = sds_plan_cli(comm, argc - 1, argv + 1);
    } else if (!strcmp(argv[1], "export")) {
        sds_export_opts o;
        rc = sds_agree(comm, parse_export(argc - 1, argv + 1, &o));
        if (rc == SDS_OK) rc = sds_export_run(comm, &o);
    } else {
        sds_error_set(SDS_ERR_USAGE, "unknown command '%s' (see sds-mpi --help)", argv[1]);
        rc = sds_agree(comm, SDS_ERR_USAGE);
    }
    MPI_Finalize();
    return rc;
}

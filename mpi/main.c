// sds-mpi: the command-line entry point. Every rank parses the same options; rank 0 speaks.
#include "agree.h"
#include "eval.h"
#include "runtime.h"
#include "sds_error.h"

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
    "\n"
    "sds-mpi eval --model DIR --text FILE [--seqlen N] [--max-windows K] [--tokenizer DIR]\n"
    "             [--json FILE]\n"
    "  --model DIR        Hugging Face checkpoint (config.json + *.safetensors)\n"
    "  --text FILE        UTF-8 text, tokenized as a whole and cut into windows\n"
    "  --seqlen N         window length in tokens (default: min(2048, max positions))\n"
    "  --max-windows K    evaluate only the first K windows (default: all)\n"
    "  --tokenizer DIR    tokenizer files (default: the model directory)\n"
    "  --json FILE        also write the result and settings as JSON\n"
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
    enum { O_MODEL = 256, O_TEXT, O_SEQLEN, O_MAXW, O_TOK, O_JSON };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"text", required_argument, 0, O_TEXT},
                                         {"seqlen", required_argument, 0, O_SEQLEN},
                                         {"max-windows", required_argument, 0, O_MAXW},
                                         {"tokenizer", required_argument, 0, O_TOK},
                                         {"json", required_argument, 0, O_JSON},
                                         {0, 0, 0, 0}};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL:
            o->model = optarg;
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

int main(int argc, char **argv) {
    sds_runtime_blas_core_fix(argc, argv);
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
    } else {
        sds_error_set(SDS_ERR_USAGE, "unknown command '%s' (see sds-mpi --help)", argv[1]);
        rc = sds_agree(comm, SDS_ERR_USAGE);
    }
    MPI_Finalize();
    return rc;
}

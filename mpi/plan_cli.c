#include "plan_cli.h"

#include "plan.h"
#include "agree.h"
#include "config.h"
#include "gguf.h"
#include "gguf_model.h"
#include "hessian.h"
#include "json_out.h"
#include "magnitude.h"
#include "model_load.h"
#include "pattern.h"
#include "runtime.h"
#include "sds_error.h"

#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)

typedef struct {
    const char *model, *machine, *json;
    int64_t nranks, stages, nsamples, seqlen;
    int method, dense_target, auto_mix, eval, parallel;
    int64_t local_hessian_max;
    double mem_per_rank; // bytes, 0 = this node's memory over its ranks
} plan_opts;

static int opt_int(const char *opt, const char *arg, int64_t lo, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno || !end || *end || end == arg || v < lo)
        return sds_error_set(SDS_ERR_USAGE, "option %s: \"%s\" is not an integer >= %lld", opt, arg,
                             (long long)lo);
    *out = v;
    return SDS_OK;
}

static int parse(int argc, char **argv, plan_opts *o) {
    memset(o, 0, sizeof *o);
    o->nsamples = 128;
    o->method = 2;
    o->dense_target = 1;
    o->local_hessian_max = SDS_LOCAL_HESSIAN_MAX;
    enum {
        O_MODEL = 256,
        O_NP,
        O_STAGES,
        O_NSAMPLES,
        O_SEQLEN,
        O_METHOD,
        O_TARGET,
        O_MIX,
        O_ORDER,
        O_EVAL,
        O_MEM,
        O_MACHINE,
        O_JSON,
        O_LOCALH
    };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"np", required_argument, 0, O_NP},
                                         {"nranks", required_argument, 0, O_NP},
                                         {"stages", required_argument, 0, O_STAGES},
                                         {"nsamples", required_argument, 0, O_NSAMPLES},
                                         {"seqlen", required_argument, 0, O_SEQLEN},
                                         {"method", required_argument, 0, O_METHOD},
                                         {"sds-target", required_argument, 0, O_TARGET},
                                         {"sds-mix", required_argument, 0, O_MIX},
                                         {"sds-order", required_argument, 0, O_ORDER},
                                         {"eval", no_argument, 0, O_EVAL},
                                         {"mem-per-rank", required_argument, 0, O_MEM},
                                         {"machine", required_argument, 0, O_MACHINE},
                                         {"json", required_argument, 0, O_JSON},
                                         {"local-hessian-max", required_argument, 0, O_LOCALH},
                                         {0, 0, 0, 0}};
    opterr = 0;
    optind = 1;
    int c;
    // getopt_long_only, so that -np P reads like mpirun's
    while ((c = getopt_long_only(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL:
            o->model = optarg;
            break;
        case O_NP:
            SDS_TRY(opt_int("-np", optarg, 1, &o->nranks));
            break;
        case O_STAGES:
            SDS_TRY(opt_int("--stages", optarg, 1, &o->stages));
            break;
        case O_NSAMPLES:
            SDS_TRY(opt_int("--nsamples", optarg, 1, &o->nsamples));
            break;
        case O_SEQLEN:
            SDS_TRY(opt_int("--seqlen", optarg, 2, &o->seqlen));
            break;
        case O_METHOD:
            if (!strcmp(optarg, "magnitude"))
                o->method = 0;
            else if (!strcmp(optarg, "wanda"))
                o->method = 1;
            else if (!strcmp(optarg, "sparsegpt"))
                o->method = 2;
            else if (!strcmp(optarg, "sds"))
                o->method = 3;
            else
                return sds_error_set(SDS_ERR_USAGE,
                                     "option --method: \"%s\" is not one of magnitude, wanda, "
                                     "sparsegpt, sds",
                                     optarg);
            break;
        case O_TARGET:
            if (strcmp(optarg, "dense") && strcmp(optarg, "pruned"))
                return sds_error_set(SDS_ERR_USAGE,
                                     "option --sds-target: \"%s\" is not dense or pruned", optarg);
            o->dense_target = !strcmp(optarg, "dense");
            break;
        case O_MIX:
            o->auto_mix = !strcmp(optarg, "auto");
            break;
        case O_ORDER:
            if (strcmp(optarg, "sequential") && strcmp(optarg, "parallel"))
                return sds_error_set(SDS_ERR_USAGE,
                                     "option --sds-order: \"%s\" is not sequential or parallel",
                                     optarg);
            o->parallel = !strcmp(optarg, "parallel");
            break;
        case O_EVAL:
            o->eval = 1;
            break;
        case O_LOCALH:
            SDS_TRY(opt_int("--local-hessian-max", optarg, 0, &o->local_hessian_max));
            break;
        case O_MEM: {
            char *end = NULL;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || !end || *end || end == optarg || !(v > 0.0))
                return sds_error_set(SDS_ERR_USAGE,
                                     "option --mem-per-rank: \"%s\" is not a positive number of "
                                     "GiB",
                                     optarg);
            o->mem_per_rank = v * GIB;
            break;
        }
        case O_MACHINE:
            o->machine = optarg;
            break;
        case O_JSON:
            o->json = optarg;
            break;
        default: {
            const char *a = optind >= 1 && argv[optind - 1] ? argv[optind - 1] : "?";
            return sds_error_set(SDS_ERR_USAGE,
                                 "unknown or incomplete option '%s' (see sds-mpi --help)", a);
        }
        }
    }
    if (optind < argc)
        return sds_error_set(SDS_ERR_USAGE, "unexpected argument '%s'", argv[optind]);
    if (!o->model) return sds_error_set(SDS_ERR_USAGE, "plan: --model is required");
    return SDS_OK;
}

// The configuration alone: config.json of a directory (no weights needed), or a GGUF's metadata.
// *file_bytes: the GGUF's size (it is mapped whole while the model loads), else 0.
static int load_config(const char *path, sds_model_config *cfg, double *file_bytes) {
    *file_bytes = 0.0;
    if (sds_model_is_gguf(path)) {
        sds_gguf *g = NULL;
        SDS_TRY(sds_gguf_open(path, &g));
        int rc = sds_gguf_llama_config(g, cfg);
        sds_gguf_free(g);
        struct stat sb;
        if (rc == SDS_OK && stat(path, &sb) == 0) *file_bytes = (double)sb.st_size;
        return rc;
    }
    return sds_config_load_dir(path, cfg);
}

static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

// Single-thread sgemm GFLOP/s: the best of a few 1024^3 products (the machine may be shared).
static double measure_gemm(void) {
    const int n = 1024;
    float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float)),
          *c = malloc((size_t)n * n * sizeof(float));
    double best = 0.0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)n * n; i++) {
            a[i] = (float)(i % 17) * 0.01f;
            b[i] = (float)(i % 13) * 0.02f;
        }
        for (int r = 0; r < 6; r++) {
            const double t0 = sds_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                        c, n);
            const double dt = sds_now() - t0, gf = 2.0 * n * n * n / dt / 1e9;
            best = gf > best ? gf : best;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

// Seconds per weight of a magnitude selection (the mean of 50% and 2:4) and the streaming
// bandwidth of one core (a 64 MiB copy), both the best of three.
static void measure_select_stream(double *select_s, double *stream_bw) {
    const int64_t rows = 512, cols = 2048;
    const size_t nw = (size_t)(rows * cols), big = 16u << 20;
    float *w = malloc(nw * sizeof(float)), *w2 = malloc(nw * sizeof(float));
    uint8_t *mask = malloc(nw);
    float *x = malloc(big * sizeof(float)), *y = malloc(big * sizeof(float));
    double sel = 0.0, bw = 0.0;
    if (w && w2 && mask && x && y) {
        uint64_t s = 88172645463325252ull;
        for (size_t i = 0; i < nw; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            w[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
        }
        sds_pattern pats[2];
        sds_pattern_parse("0.5", &pats[0]);
        sds_pattern_parse("2:4", &pats[1]);
        double sum = 0.0;
        for (int p = 0; p < 2; p++) {
            double best = 1e30;
            for (int r = 0; r < 3; r++) {
                memcpy(w2, w, nw * sizeof(float));
                const double t0 = sds_now();
                sds_magnitude_prune(w2, rows, rows, cols, pats[p], NULL, NULL, mask);
                const double dt = sds_now() - t0;
                best = dt < best ? dt : best;
            }
            sum += best / (double)nw;
        }
        sel = sum / 2.0;
        memset(x, 1, big * sizeof(float));
        memset(y, 0, big * sizeof(float));
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            const double t0 = sds_now();
            memcpy(y, x, big * sizeof(float));
            const double dt = sds_now() - t0;
            best = dt < best ? dt : best;
        }
        bw = 2.0 * (double)big * sizeof(float) / best; // read + write
    }
    free(w);
    free(w2);
    free(mask);
    free(x);
    free(y);
    *select_s = sel;
    *stream_bw = bw;
}

// Seconds per element of a row softmax (max, expf and sum, scale), the best of three.
static double measure_exp(void) {
    const int n = 1 << 20, w = 1024;
    float *x = malloc((size_t)n * sizeof(float));
    double best = 1e30;
    if (!x) return 0.0;
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < n; i++) x[i] = (float)(i % 97) * 0.01f;
        const double t0 = sds_now();
        for (int r0 = 0; r0 < n; r0 += w) {
            float *row = x + r0, mx = row[0], sum = 0.0f;
            for (int j = 1; j < w; j++) mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < w; j++) {
                row[j] = expf(row[j] - mx);
                sum += row[j];
            }
            const float inv = 1.0f / sum;
            for (int j = 0; j < w; j++) row[j] *= inv;
        }
        const double dt = sds_now() - t0;
        best = dt < best ? dt : best;
    }
    free(x);
    return best / n;
}

// (collective) Ping-pong between ranks 0 and 1: latency from 8-byte messages, bandwidth from
// 16 MiB ones; the best of the repetitions. Other ranks take no part.
static void measure_mpi(MPI_Comm comm, double *bw, double *lat) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    const int big = 16 << 20, reps_small = 200, reps_big = 6;
    char *buf = calloc((size_t)big, 1);
    double l = 1e30, b = 0.0;
    if (rank <= 1 && buf) {
        const int peer = 1 - rank;
        for (int r = 0; r < reps_small; r++) {
            const double t0 = MPI_Wtime();
            if (rank == 0) {
                MPI_Send(buf, 8, MPI_BYTE, peer, 0, comm);
                MPI_Recv(buf, 8, MPI_BYTE, peer, 0, comm, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(buf, 8, MPI_BYTE, peer, 0, comm, MPI_STATUS_IGNORE);
                MPI_Send(buf, 8, MPI_BYTE, peer, 0, comm);
            }
            const double dt = (MPI_Wtime() - t0) / 2.0;
            l = dt < l ? dt : l;
        }
        for (int r = 0; r < reps_big; r++) {
            const double t0 = MPI_Wtime();
            if (rank == 0) {
                MPI_Send(buf, big, MPI_BYTE, peer, 1, comm);
                MPI_Recv(buf, big, MPI_BYTE, peer, 1, comm, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(buf, big, MPI_BYTE, peer, 1, comm, MPI_STATUS_IGNORE);
                MPI_Send(buf, big, MPI_BYTE, peer, 1, comm);
            }
            const double dt = (MPI_Wtime() - t0) / 2.0;
            const double bb = (double)big / (dt - l > 0 ? dt - l : dt);
            b = bb > b ? bb : b;
        }
    }
    free(buf);
    double v[2] = {b, l};
    MPI_Bcast(v, 2, MPI_DOUBLE, 0, comm);
    *bw = v[0];
    *lat = v[1];
}

// A JSON machine file: any of gemm_gflops, mpi_bw (bytes/s), mpi_lat (s), baseline_mib,
// select_ns, stream_bw, io_bw, exp_ns; the others keep their defaults.
static int read_machine(const char *path, sds_plan_machine *mc) {
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) return sds_error_set(SDS_ERR_INPUT, "%s: %s (line %d)", path, err.text, err.line);
    if (!json_is_object(j)) {
        json_decref(j);
        return sds_error_set(SDS_ERR_INPUT, "%s: not a JSON object", path);
    }
    static const char *keys[] = {"gemm_gflops", "mpi_bw",    "mpi_lat", "baseline_mib",
                                 "select_ns",   "stream_bw", "io_bw",   "exp_ns"};
    double *dst[] = {&mc->gemm_gflops, &mc->mpi_bw,    &mc->mpi_lat, &mc->baseline_bytes,
                     &mc->select_s,    &mc->stream_bw, &mc->io_bw,   &mc->exp_s};
    const double scale[] = {1, 1, 1, MIB, 1e-9, 1, 1, 1e-9};
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        size_t i = 0;
        while (i < sizeof keys / sizeof keys[0] && strcmp(keys[i], k)) i++;
        if (i == sizeof keys / sizeof keys[0] || !json_is_number(v) ||
            !(json_number_value(v) > 0)) {
            json_decref(j);
            return sds_error_set(
                SDS_ERR_INPUT,
                "%s: \"%s\" is not one of gemm_gflops, mpi_bw, mpi_lat, "
                "baseline_mib, select_ns, stream_bw, io_bw, exp_ns with a positive value",
                path, k);
        }
        *dst[i] = json_number_value(v) * scale[i];
    }
    json_decref(j);
    return SDS_OK;
}

static double mib(double b) {
    return b / MIB;
}

static json_t *stage_json(const sds_plan_stage *s) {
    json_t *j = json_object();
    json_object_set_new(j, "rank_lo", json_integer(s->rank_lo));
    json_object_set_new(j, "rank_hi", json_integer(s->rank_hi));
    json_object_set_new(j, "layer_lo", json_integer(s->layer_lo));
    json_object_set_new(j, "layer_hi", json_integer(s->layer_hi));
    json_object_set_new(j, "peak_mib", json_real(mib(s->peak_bytes)));
    const sds_plan_memory *m = &s->mem;
    json_t *mj = json_object();
    json_object_set_new(mj, "weights", json_real(mib(m->weights)));
    json_object_set_new(mj, "embeddings", json_real(mib(m->embeddings)));
    json_object_set_new(mj, "head", json_real(mib(m->head)));
    json_object_set_new(mj, "activations", json_real(mib(m->activations)));
    json_object_set_new(mj, "calib_ids", json_real(mib(m->calib_ids)));
    json_object_set_new(mj, "statistics", json_real(mib(m->statistics)));
    json_object_set_new(mj, "prune", json_real(mib(m->prune)));
    json_object_set_new(mj, "forward", json_real(mib(m->forward)));
    json_object_set_new(mj, "masks", json_real(mib(m->masks)));
    json_object_set_new(mj, "held", json_real(mib(m->held)));
    json_object_set_new(mj, "baseline", json_real(mib(m->baseline)));
    json_object_set_new(mj, "load", json_real(mib(m->load)));
    json_object_set_new(j, "memory_mib", mj);
    json_object_set_new(j, "compute_s", json_real(s->compute_s));
    json_object_set_new(j, "comm_s", json_real(s->comm_s));
    json_object_set_new(j, "forward_s", json_real(s->forward_s));
    json_object_set_new(j, "gram_s", json_real(s->gram_s));
    json_object_set_new(j, "prune_s", json_real(s->prune_s));
    json_object_set_new(j, "io_s", json_real(s->io_s));
    json_object_set_new(j, "allreduce_s", json_real(s->allreduce_s));
    json_object_set_new(j, "bcast_s", json_real(s->bcast_s));
    json_object_set_new(j, "handoff_s", json_real(s->handoff_s));
    json_object_set_new(j, "flops", json_real(s->flops));
    json_object_set_new(j, "sds_s", json_real(s->sds_s));
    return j;
}

static const char *method_name(int m) {
    static const char *n[] = {"magnitude", "wanda", "sparsegpt", "sds"};
    return n[m];
}

static int plan_run(MPI_Comm comm, const plan_opts *o) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    sds_plan_input in;
    memset(&in, 0, sizeof in);
    double file_bytes = 0.0;
    int rc = sds_agree(comm, load_config(o->model, &in.cfg, &file_bytes));
    if (rc != SDS_OK) return rc;
    const int64_t max_pos = in.cfg.max_position_embeddings;
    in.nranks = (int)(o->nranks ? o->nranks : size);
    in.nsamples = o->nsamples;
    in.seqlen = o->seqlen ? o->seqlen : (max_pos < 2048 ? max_pos : 2048);
    in.method = o->method;
    in.sds_dense_target = o->method == 3 && o->dense_target;
    in.sds_auto_mix = in.sds_dense_target && o->auto_mix;
    in.sds_parallel = o->method == 3 && o->parallel;
    in.eval = o->eval;
    in.local_hessian_max = o->local_hessian_max;
    in.load_extra_bytes = file_bytes;
    // the Gram batch a prune started like this would use (before the constants' 1 thread)
    rc = sds_agree(comm, sds_hessian_batch_size(getenv("SDS_GRAM_BATCH"),
                                                openblas_get_num_threads(), &in.gram_batch));
    if (rc != SDS_OK) return rc;
    const int64_t L = in.cfg.n_layers;
    const int smax = (int64_t)in.nranks < L ? in.nranks : (int)L;
    rc = SDS_OK;
    if (in.seqlen < 2 || in.seqlen > max_pos)
        rc = sds_error_set(SDS_ERR_USAGE,
                           "option --seqlen %lld: must be in [2, %lld] for this model",
                           (long long)in.seqlen, (long long)max_pos);
    else if (o->stages > smax)
        rc = sds_error_set(SDS_ERR_USAGE,
                           "option --stages %lld: must be in [1, %d] (min of ranks and layers)",
                           (long long)o->stages, smax);
    rc = sds_agree(comm, rc);
    if (rc != SDS_OK) return rc;

    // machine constants: a file, or measured here (BLAS with 1 thread, as a rank of a full node)
    sds_plan_machine mc;
    sds_plan_machine_default(&mc);
    const char *src_gemm = "default", *src_mpi = "default", *src_base = "default",
               *src_sel = "default";
    if (o->machine) {
        rc = sds_agree(comm, read_machine(o->machine, &mc));
        if (rc != SDS_OK) return rc;
        src_gemm = src_mpi = src_base = src_sel = o->machine;
    } else {
        openblas_set_num_threads(1);
        // the baseline: this process after MPI, HDF5 and a first BLAS call have started, before
        // the measurements' buffers (a prune rank has the same libraries and threads)
        H5open();
        {
            float a[64 * 64] = {0}, c[64 * 64];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 64, 64, 64, 1.0f, a, 64, a, 64,
                        0.0f, c, 64);
        }
        const double rss = peak_rss_bytes();
        if (rss > 0) {
            mc.baseline_bytes = rss;
            src_base = "measured, this process after MPI, OpenBLAS and HDF5 start";
        }
        double gf = measure_gemm(), sel = 0.0, sbw = 0.0;
        measure_select_stream(&sel, &sbw);
        if (gf > 0) {
            mc.gemm_gflops = gf;
            src_gemm = "measured, 1 thread";
        }
        const double ex = measure_exp();
        if (ex > 0) mc.exp_s = ex;
        if (sel > 0 && sbw > 0) {
            mc.select_s = sel;
            mc.stream_bw = sbw;
            src_sel = "measured";
        }
        if (size >= 2) {
            double bw = 0.0, lat = 0.0;
            measure_mpi(comm, &bw, &lat);
            if (bw > 0 && lat < 1.0) {
                mc.mpi_bw = bw;
                mc.mpi_lat = lat;
                src_mpi = "measured, ping-pong of ranks 0 and 1";
            }
        } else {
            src_mpi = "default: run under mpirun with 2 or more ranks to measure";
        }
    }

    // stages: as given, else the fewest whose peak fits the memory per rank
    double mem = o->mem_per_rank;
    if (mem <= 0.0) {
        const long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (cpus < 1) cpus = 1;
        const double node = (double)pages * (double)psz;
        mem = node / (double)(in.nranks < cpus ? in.nranks : cpus);
    }
    in.stages = (int)(o->stages ? o->stages : sds_plan_default_stages(&in, &mc, mem));
    sds_plan_stage *st = calloc((size_t)in.stages, sizeof *st);
    rc = st ? SDS_OK : sds_error_set(SDS_ERR_IO, "plan: out of memory");
    if (rc == SDS_OK && sds_plan_compute(&in, &mc, st) != 0)
        rc = sds_error_set(SDS_ERR_USAGE, "plan: inconsistent sizes for %s", o->model);
    rc = sds_agree(comm, rc);
    if (rc != SDS_OK) {
        free(st);
        return rc;
    }
    double peak = 0.0, secs = 0.0;
    sds_plan_totals(st, in.stages, &peak, &secs);
    int jrc = SDS_OK;
    if (rank == 0) {
        const sds_model_config *c = &in.cfg;
        printf("plan: %s (%s, %lld layers, hidden %lld, FFN %lld, heads %lld/%lld, vocab %lld)\n",
               o->model, c->model_type, (long long)L, (long long)c->hidden_size,
               (long long)c->ffn_dim, (long long)c->n_heads, (long long)c->n_kv_heads,
               (long long)c->vocab_size);
        printf("prune %s%s%s%s, %lld x %lld calibration tokens, %d ranks, %d stage%s%s, Grams "
               "%d at a time\n",
               method_name(in.method),
               in.method == 3 ? (in.sds_dense_target ? " (dense target" : " (pruned target") : "",
               in.method == 3 ? (in.sds_auto_mix ? ", mix auto" : "") : "",
               in.method == 3 ? (in.sds_parallel ? ", parallel order)" : ")") : "",
               (long long)in.nsamples, (long long)in.seqlen, in.nranks, in.stages,
               in.stages > 1 ? "s" : "", o->eval ? ", --eval" : "", (int)in.gram_batch);
        if (!o->stages)
            printf("stages: the fewest whose per-rank peak fits %.2f GiB per rank%s\n", mem / GIB,
                   o->mem_per_rank > 0 ? "" : " (this node's memory over its ranks)");
        printf("constants: sgemm %.1f GFLOP/s per rank (%s); MPI %.2f GB/s, %.2f us (%s);\n"
               "           baseline %.1f MiB (%s); selection %.1f ns/weight, stream %.1f GB/s "
               "(%s); I/O %.2f GB/s (%s); softmax %.1f ns/element\n",
               mc.gemm_gflops, src_gemm, mc.mpi_bw / 1e9, mc.mpi_lat * 1e6, src_mpi,
               mib(mc.baseline_bytes), src_base, mc.select_s * 1e9, mc.stream_bw / 1e9, src_sel,
               mc.io_bw / 1e9, o->machine ? o->machine : "default", mc.exp_s * 1e9);
        printf("\nper-rank peak memory (MiB, the stage's largest rank)\n");
        printf("%5s %11s %11s %10s %9s %8s %7s %8s %7s %8s %8s %7s %6s %8s %8s\n", "stage", "ranks",
               "layers", "peak", "weights", "embed", "head", "activ", "ids", "stats", "prune",
               "fwd", "masks", "held", "baseline");
        for (int k = 0; k < in.stages; k++) {
            const sds_plan_stage *s = &st[k];
            const sds_plan_memory *m = &s->mem;
            char rr[32], ll[32];
            snprintf(rr, sizeof rr, "%d-%d", s->rank_lo, s->rank_hi - 1);
            snprintf(ll, sizeof ll, "%lld-%lld", (long long)s->layer_lo,
                     (long long)s->layer_hi - 1);
            printf("%5d %11s %11s %10.1f %9.1f %8.1f %7.1f %8.1f %7.1f %8.1f %8.1f %7.1f %6.1f "
                   "%8.1f %8.1f%s\n",
                   k, rr, ll, mib(s->peak_bytes), mib(m->weights), mib(m->embeddings), mib(m->head),
                   mib(m->activations), mib(m->calib_ids), mib(m->statistics), mib(m->prune),
                   mib(m->forward), mib(m->masks), mib(m->held), mib(m->baseline),
                   s->peak_bytes == m->load ? "  (peak while loading)" : "");
        }
        printf("\npredicted seconds (%s)\n",
               st[0].overlap ? "parallel order: a stage's SDS part overlaps the later stages"
                             : "stages run one after another");
        printf("%5s %10s %9s %9s %9s %8s %10s %9s %9s %9s %10s\n", "stage", "compute", "forward",
               "grams", "prune", "io", "comm", "allreduce", "bcast", "handoff", "total");
        for (int k = 0; k < in.stages; k++) {
            const sds_plan_stage *s = &st[k];
            printf("%5d %10.1f %9.1f %9.1f %9.1f %8.1f %10.1f %9.1f %9.1f %9.1f %10.1f\n", k,
                   s->compute_s, s->forward_s, s->gram_s, s->prune_s, s->io_s, s->comm_s,
                   s->allreduce_s, s->bcast_s, s->handoff_s, s->compute_s + s->comm_s);
        }
        printf("\npeak memory per rank %.1f MiB (%.2f GiB), predicted time %.1f s (%.2f h)\n",
               mib(peak), peak / GIB, secs, secs / 3600.0);
        fflush(stdout);
        if (o->json) {
            json_t *root = json_object();
            json_object_set_new(root, "command", json_string("plan"));
            json_object_set_new(root, "model", json_string(o->model));
            json_object_set_new(root, "method", json_string(method_name(in.method)));
            json_object_set_new(root, "ranks", json_integer(in.nranks));
            json_object_set_new(root, "stages", json_integer(in.stages));
            json_object_set_new(root, "nsamples", json_integer(in.nsamples));
            json_object_set_new(root, "seqlen", json_integer(in.seqlen));
            json_object_set_new(root, "gram_batch", json_integer(in.gram_batch));
            json_t *mj = json_object();
            json_object_set_new(mj, "gemm_gflops", json_real(mc.gemm_gflops));
            json_object_set_new(mj, "mpi_bw", json_real(mc.mpi_bw));
            json_object_set_new(mj, "mpi_lat", json_real(mc.mpi_lat));
            json_object_set_new(mj, "baseline_mib", json_real(mib(mc.baseline_bytes)));
            json_object_set_new(mj, "select_ns", json_real(mc.select_s * 1e9));
            json_object_set_new(mj, "stream_bw", json_real(mc.stream_bw));
            json_object_set_new(mj, "io_bw", json_real(mc.io_bw));
            json_object_set_new(mj, "exp_ns", json_real(mc.exp_s * 1e9));
            json_object_set_new(root, "machine", mj);
            json_t *sa = json_array();
            for (int k = 0; k < in.stages; k++) json_array_append_new(sa, stage_json(&st[k]));
            json_object_set_new(root, "stage_plans", sa);
            json_object_set_new(root, "peak_mib", json_real(mib(peak)));
            json_object_set_new(root, "seconds", json_real(secs));
            jrc = sds_json_write_atomic(root, o->json);
        }
    }
    free(st);
    return sds_agree(comm, jrc);
}

int sds_plan_cli(MPI_Comm comm, int argc, char **argv) {
    plan_opts o;
    int rc = sds_agree(comm, parse(argc, argv, &o));
    if (rc != SDS_OK) return rc;
    return plan_run(comm, &o);
}

#define _POSIX_C_SOURCE 200809L
#include "prune_ckpt.h"

#include "agree.h"
#include "sds_error.h"
#include "stage_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CKPT_MASK_TAG 7501 // point-to-point: a sublayer's packed mask, owner -> keeper

static void hex64(uint64_t v, char out[17]) {
    snprintf(out, 17, "%016llx", (unsigned long long)v);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int sds_prune_ckpt_init(sds_prune_ckpt *c, const char *out, sds_model *m, MPI_Comm comm, int S,
                        MPI_Comm scomm) {
    memset(c, 0, sizeof *c);
    c->saved_layer = -1;
    c->L = m->cfg.n_layers;
    c->n_lin = sds_model_n_linear(m);
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->P);
    c->S = S;
    c->stage = sds_stage_of_rank(c->P, S, c->rank);
    c->scomm = scomm;
    int64_t llo, lhi;
    sds_stage_layers(c->L, S, c->stage, &llo, &lhi);
    c->shape_layer = llo;
    if ((size_t)snprintf(c->dir, sizeof c->dir, "%s.ckpt", out) >= sizeof c->dir - 64)
        return sds_error_set(SDS_ERR_USAGE, "--out %s: path too long", out);
    c->masks = sds_calloc((size_t)(c->L * c->n_lin), sizeof *c->masks, "checkpoint masks");
    c->layer_info = sds_calloc((size_t)c->L, sizeof *c->layer_info, "checkpoint files");
    return c->masks && c->layer_info ? SDS_OK : SDS_ERR_IO;
}

int sds_prune_ckpt_keeper(const sds_prune_ckpt *c, int64_t l) {
    int lo, hi;
    sds_stage_ranks(c->P, c->S, sds_stage_of_layer(c->L, c->S, l), &lo, &hi);
    return lo;
}

int sds_prune_ckpt_acts_stage(const sds_prune_ckpt *c, int64_t layer) {
    return sds_stage_of_layer(c->L, c->S, layer + 1 < c->L ? layer + 1 : c->L - 1);
}

// The sequences whose activations this rank saves after `layer`.
static int64_t acts_held(const sds_prune_ckpt *c, const sds_prune_state *s, int64_t layer) {
    return c->stage == sds_prune_ckpt_acts_stage(c, layer) ? s->n_local : 0;
}

void sds_prune_ckpt_free(sds_prune_ckpt *c) {
    if (c->masks)
        for (int64_t k = 0; k < c->L * c->n_lin; k++) free(c->masks[k]);
    free(c->masks);
    free(c->layer_info);
    json_decref(c->meta);
    memset(c, 0, sizeof *c);
}

static void mask_pack(const uint8_t *mask, int64_t numel, uint8_t *packed) {
    memset(packed, 0, (size_t)((numel + 7) / 8));
    for (int64_t k = 0; k < numel; k++)
        if (mask[k]) packed[k >> 3] |= (uint8_t)(1u << (k & 7));
}

static void mask_unpack(const uint8_t *packed, int64_t numel, uint8_t *mask) {
    for (int64_t k = 0; k < numel; k++) mask[k] = (packed[k >> 3] >> (k & 7)) & 1u;
}

int sds_prune_ckpt_keep_mask(MPI_Comm comm, sds_prune_ckpt *c, int64_t layer, int32_t i, int owner,
                             const uint8_t *mask, int64_t numel) {
    const int rank = c->rank, keeper = sds_prune_ckpt_keeper(c, layer);
    const size_t nb = (size_t)((numel + 7) / 8);
    uint8_t *packed = NULL;
    if (rank == owner || rank == keeper) packed = sds_malloc(nb, "packed mask");
    int rc = sds_agree(comm, (rank == owner || rank == keeper) && !packed ? SDS_ERR_IO : SDS_OK);
    if (rc != SDS_OK) {
        free(packed);
        return rc;
    }
    if (rank == owner) mask_pack(mask, numel, packed);
    if (owner != keeper && rank == owner)
        MPI_Send(packed, (int)nb, MPI_BYTE, keeper, CKPT_MASK_TAG, comm);
    else if (owner != keeper && rank == keeper)
        MPI_Recv(packed, (int)nb, MPI_BYTE, owner, CKPT_MASK_TAG, comm, MPI_STATUS_IGNORE);
    if (rank == keeper) {
        const int64_t k = layer * c->n_lin + i;
        free(c->masks[k]);
        c->masks[k] = packed;
    } else {
        free(packed);
    }
    return SDS_OK;
}

static void layer_shapes(sds_model *m, int64_t l, int32_t n, sds_ckpt_shape *shapes,
                         int64_t *max_numel) {
    *max_numel = 0;
    for (int32_t i = 0; i < n; i++) {
        const sds_linear_ref r = sds_model_linear(m, l, i);
        shapes[i].rows = r.rows;
        shapes[i].cols = r.cols;
        if (r.rows * r.cols > *max_numel) *max_numel = r.rows * r.cols;
    }
}

#define CKPT_MAX_LINEAR 16 // linear sublayers per decoder layer (OPT 6, Llama 7)

// ---- looking for a checkpoint ----

static const char *option_name(const char *key, char *buf, size_t cap) {
    if (!strcmp(key, "sds_redense")) return "--sds-no-redense";
    snprintf(buf, cap, "--%s", key);
    for (char *p = buf; *p; p++)
        if (*p == '_') *p = '-';
    return buf;
}

static void value_text(const json_t *v, char *buf, size_t cap) {
    if (!v) {
        snprintf(buf, cap, "unset");
    } else if (json_is_string(v)) {
        snprintf(buf, cap, "%s", json_string_value(v));
    } else {
        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        snprintf(buf, cap, "%s", t ? t : "?");
        free(t);
    }
}

// "--sparsity 2:4 (now 0.5), ..." for every option whose value differs; the count.
static int options_diff(json_t *ck, json_t *cur, char *buf, size_t cap) {
    int n = 0;
    size_t used = 0;
    buf[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        json_t *from = pass == 0 ? cur : ck, *other = pass == 0 ? ck : cur;
        const char *key;
        json_t *v;
        json_object_foreach(from, key, v) {
            if (!strcmp(key, "ranks")) continue;
            const json_t *o = json_object_get(other, key);
            if (pass == 1 && o) continue; // reported in the first pass
            if (o && json_equal(o, v)) continue;
            char name[64], was[128], now[128];
            value_text(pass == 0 ? o : v, was, sizeof was);
            value_text(pass == 0 ? v : NULL, now, sizeof now);
            if (used < cap)
                used += (size_t)snprintf(buf + used, cap - used, "%s%s %s (now %s)", n ? ", " : "",
                                         option_name(key, name, sizeof name), was, now);
            n++;
        }
    }
    return n;
}

static int meta_bad(const char *path, const char *what) {
    return sds_error_set(SDS_ERR_INPUT, "%s: malformed checkpoint metadata (%s)", path, what);
}

static int hex_equal(const json_t *j, uint64_t v) {
    char hex[17];
    hex64(v, hex);
    return json_is_string(j) && !strcmp(json_string_value(j), hex);
}

// (rank 0) Checks meta.json against this run; fills s->rep and c->layer_info; *last.
static int meta_check(sds_prune_ckpt *c, json_t *meta, sds_prune_state *s, int nranks,
                      const char *path, int64_t *last) {
    const char *fmt = json_string_value(json_object_get(meta, "format"));
    if (!fmt || strcmp(fmt, SDS_CKPT_FORMAT) != 0 ||
        json_integer_value(json_object_get(meta, "format_version")) != SDS_CKPT_FORMAT_VERSION)
        return sds_error_set(SDS_ERR_INPUT, "%s: not an %s version %d file", path, SDS_CKPT_FORMAT,
                             SDS_CKPT_FORMAT_VERSION);
    const json_t *jr = json_object_get(meta, "ranks");
    if (!json_is_integer(jr)) return meta_bad(path, "ranks");
    if (json_integer_value(jr) != nranks)
        return sds_error_set(SDS_ERR_USAGE,
                             "--resume: the checkpoint in %s was written by a run of %lld ranks, "
                             "this one has %d: resubmit with %lld ranks (or remove %s to start "
                             "over)",
                             c->dir, (long long)json_integer_value(jr), nranks,
                             (long long)json_integer_value(jr), c->dir);
    json_t *ck_opts = json_object_get(meta, "options");
    if (!json_is_object(ck_opts)) return meta_bad(path, "options");
    json_t *cur = json_loads(s->opts_text, 0, NULL);
    SDS_ASSERT(cur);
    char diff[1024];
    const int n_diff = options_diff(ck_opts, cur, diff, sizeof diff);
    json_decref(cur);
    if (n_diff)
        return sds_error_set(SDS_ERR_USAGE,
                             "--resume: the checkpoint in %s was made with other options: %s; "
                             "resume with the checkpoint's options (or remove %s to start over)",
                             c->dir, diff, c->dir);
    if (!hex_equal(json_object_get(meta, "calibration_fingerprint"), s->calib_fp))
        return sds_error_set(SDS_ERR_USAGE,
                             "--resume: the calibration tokens differ from those of the checkpoint "
                             "in %s (the calibration file or the tokenizer changed; remove %s to "
                             "start over)",
                             c->dir, c->dir);
    const json_t *jl = json_object_get(meta, "layers"),
                 *jn = json_object_get(meta, "sublayers_per_layer"),
                 *jlast = json_object_get(meta, "last_completed_layer");
    if (!json_is_integer(jl) || !json_is_integer(jn) || !json_is_integer(jlast))
        return meta_bad(path, "layers");
    if (json_integer_value(jl) != c->L || json_integer_value(jn) != c->n_lin)
        return sds_error_set(SDS_ERR_USAGE,
                             "--resume: the model differs from the one of the checkpoint in %s "
                             "(%lld layers of %lld sublayers there, %lld of %d here)",
                             c->dir, (long long)json_integer_value(jl),
                             (long long)json_integer_value(jn), (long long)c->L, (int)c->n_lin);
    const int64_t lst = json_integer_value(jlast);
    if (lst < 0 || lst >= c->L) return meta_bad(path, "last_completed_layer");
    if (!json_is_string(json_object_get(meta, "fingerprint"))) return meta_bad(path, "fingerprint");
    const json_t *subs = json_object_get(meta, "sublayers"),
                 *lfiles = json_object_get(meta, "layer_files"),
                 *rfiles = json_object_get(meta, "rank_files");
    if (!json_is_array(subs) || (int64_t)json_array_size(subs) != (lst + 1) * c->n_lin)
        return meta_bad(path, "sublayers");
    if (!json_is_array(lfiles) || (int64_t)json_array_size(lfiles) != lst + 1)
        return meta_bad(path, "layer_files");
    if (!json_is_array(rfiles) || (int64_t)json_array_size(rfiles) != nranks)
        return meta_bad(path, "rank_files");
    for (int64_t k = 0; k < (lst + 1) * c->n_lin; k++) {
        const json_t *e = json_array_get(subs, (size_t)k);
        sds_sublayer_report *rp = &s->rep[k];
        const int64_t l = k / c->n_lin;
        const int32_t i = (int32_t)(k % c->n_lin);
        sds_model_linear_module(s->m, l, i, rp->name, sizeof rp->name);
        const char *nm = json_string_value(json_object_get(e, "name"));
        const sds_linear_ref r = sds_model_linear(s->m, c->shape_layer, i);
        if (!nm || strcmp(nm, rp->name) != 0 ||
            json_integer_value(json_object_get(e, "rows")) != r.rows ||
            json_integer_value(json_object_get(e, "cols")) != r.cols)
            return meta_bad(path, "sublayer names or shapes");
        SDS_TRY(sds_ckpt_stats_parse(json_object_get(e, "stats"), path, &rp->st));
    }
    for (int64_t l = 0; l <= lst; l++) {
        char lp[4200];
        sds_ckpt_layer_path(c->dir, l, lp, sizeof lp);
        SDS_TRY(sds_ckpt_info_parse(json_array_get(lfiles, (size_t)l), path, &c->layer_info[l]));
        SDS_TRY(sds_ckpt_file_check_size(lp, &c->layer_info[l]));
    }
    *last = lst;
    return SDS_OK;
}

// (collective) The dense weights of layers 0..last folded into s->fp as the uninterrupted run
// folds them: each stage's leader folds its layers and hands the value on. Rank 0 compares it
// with meta.json's; the agreed status.
static int fingerprint_check(MPI_Comm comm, sds_prune_ckpt *c, sds_prune_state *s, int64_t last) {
    uint64_t fp = s->fp;
    for (int k = 0; k < c->S; k++) {
        int64_t llo, lhi;
        int rlo, rhi;
        sds_stage_layers(c->L, c->S, k, &llo, &lhi);
        sds_stage_ranks(c->P, c->S, k, &rlo, &rhi);
        if (llo > last) break;
        if (c->rank == rlo)
            for (int64_t l = llo; l < lhi && l <= last; l++)
                for (int32_t i = 0; i < c->n_lin; i++) {
                    const sds_linear_ref r = sds_model_linear(s->m, l, i);
                    fp = sds_fnv1a64(fp, r.w, (size_t)(r.rows * r.cols) * sizeof(float));
                }
        MPI_Bcast(&fp, 1, MPI_UINT64_T, rlo, comm);
    }
    int rc = SDS_OK;
    if (c->rank == 0 && !hex_equal(json_object_get(c->meta, "fingerprint"), fp))
        rc = sds_error_set(SDS_ERR_USAGE,
                           "--resume: the model's weights differ from those the checkpoint in "
                           "%s was made from (remove %s to start over)",
                           c->dir, c->dir);
    rc = sds_agree(comm, rc);
    if (rc == SDS_OK) s->fp = fp;
    return rc;
}

// (rank 0) Reads and checks meta.json; *last = -1 when the run starts from scratch.
static int open_rank0(sds_prune_ckpt *c, int resume, sds_prune_state *s, int nranks,
                      int64_t *last) {
    json_t *meta = NULL;
    SDS_TRY(sds_ckpt_meta_read(c->dir, &meta));
    if (!meta) {
        if (resume) {
            printf("--resume: no checkpoint in %s, starting from scratch\n", c->dir);
            fflush(stdout);
        }
        return SDS_OK;
    }
    if (!resume) {
        json_decref(meta);
        return sds_error_set(SDS_ERR_USAGE,
                             "%s holds the checkpoint of an interrupted run: pass --resume to "
                             "continue it, or remove the directory to start over",
                             c->dir);
    }
    char path[4200];
    sds_ckpt_meta_path(c->dir, path, sizeof path);
    int rc = meta_check(c, meta, s, nranks, path, last);
    if (rc == SDS_OK)
        c->meta = meta;
    else
        json_decref(meta);
    return rc;
}

int sds_prune_ckpt_open(MPI_Comm comm, sds_prune_ckpt *c, int resume, sds_prune_state *s,
                        int64_t *last) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int64_t lst = -1;
    int rc = sds_agree(comm, rank == 0 ? open_rank0(c, resume, s, size, &lst) : SDS_OK);
    if (rc != SDS_OK) return rc;
    MPI_Bcast(&lst, 1, MPI_INT64_T, 0, comm);
    *last = lst;
    if (lst < 0) return SDS_OK;
    rc = fingerprint_check(comm, c, s, lst);
    if (rc != SDS_OK) return rc;
    // the layer files' sizes and checksums, for their keepers
    MPI_Bcast(c->layer_info, (int)((lst + 1) * (int64_t)sizeof *c->layer_info), MPI_BYTE, 0, comm);
    // each rank's activation file: its size and checksum as meta.json records them
    uint64_t *all = NULL, mine[2] = {0, 0};
    int local = SDS_OK;
    if (rank == 0) {
        all = sds_calloc((size_t)size * 2, sizeof *all, "checkpoint file list");
        const json_t *rfiles = json_object_get(c->meta, "rank_files");
        char path[4200];
        sds_ckpt_meta_path(c->dir, path, sizeof path);
        for (int r = 0; all && r < size && local == SDS_OK; r++) {
            sds_ckpt_file_info info;
            local = sds_ckpt_info_parse(json_array_get(rfiles, (size_t)r), path, &info);
            all[2 * r] = info.bytes;
            all[2 * r + 1] = info.checksum;
        }
        if (!all) local = SDS_ERR_IO;
    }
    rc = sds_agree(comm, local);
    if (rc == SDS_OK) {
        MPI_Scatter(all, 2, MPI_UINT64_T, mine, 2, MPI_UINT64_T, 0, comm);
        c->acts_info.bytes = mine[0];
        c->acts_info.checksum = mine[1];
        char ap[4200];
        sds_ckpt_acts_path(c->dir, rank, lst, ap, sizeof ap);
        rc = sds_agree(comm, sds_ckpt_file_check_size(ap, &c->acts_info));
    }
    free(all);
    return rc;
}

// ---- restoring ----

int sds_prune_ckpt_restore(MPI_Comm comm, sds_prune_ckpt *c, sds_prune_state *s, int64_t last,
                           sds_h5out *h5) {
    const int rank = c->rank, size = c->P;
    const int32_t n = c->n_lin;
    SDS_ASSERT(n <= CKPT_MAX_LINEAR);
    // statistics and names: rank 0 read them from meta.json
    MPI_Bcast(s->rep, (int)((last + 1) * n * (int64_t)sizeof *s->rep), MPI_BYTE, 0, comm);
    // (every layer has the same shapes)
    int64_t max_numel = 0;
    sds_ckpt_shape shapes[CKPT_MAX_LINEAR];
    layer_shapes(s->m, c->shape_layer, n, shapes, &max_numel);
    int64_t first_kept = 0; // the first layer this rank keeps (only keepers read files)
    while (first_kept <= last && sds_prune_ckpt_keeper(c, first_kept) != rank) first_kept++;
    uint8_t *mask = first_kept <= last ? sds_malloc((size_t)max_numel, "checkpoint mask") : NULL;
    int rc = sds_agree(comm, first_kept <= last && !mask ? SDS_ERR_IO : SDS_OK);
    for (int64_t l = 0; l <= last && rc == SDS_OK; l++) {
        // layer l's keeper reads its file; the stage that owns it gets the weights
        const int keeper = sds_prune_ckpt_keeper(c, l);
        const int here = sds_stage_of_layer(c->L, c->S, l) == c->stage;
        char path[4200];
        sds_ckpt_layer_path(c->dir, l, path, sizeof path);
        sds_ckpt_reader *rd = NULL;
        rc = sds_agree(comm, rank == keeper
                                 ? sds_ckpt_layer_open(path, l, n, shapes, &c->layer_info[l], &rd)
                                 : SDS_OK);
        for (int32_t i = 0; i < n && rc == SDS_OK; i++) {
            const int64_t k = l * n + i;
            const int64_t rows = shapes[i].rows, cols = shapes[i].cols;
            float *w = here ? sds_model_linear(s->m, l, i).w : NULL;
            int local = SDS_OK;
            if (rank == keeper) {
                local = sds_ckpt_layer_get(rd, w, mask);
                free(c->masks[k]);
                c->masks[k] = sds_malloc((size_t)((rows * cols + 7) / 8), "packed mask");
                if (local == SDS_OK && !c->masks[k]) local = SDS_ERR_IO;
                if (local == SDS_OK) mask_pack(mask, rows * cols, c->masks[k]);
            }
            rc = sds_agree(comm, local);
            if (rc != SDS_OK) break;
            if (here) MPI_Bcast(w, (int)(rows * cols), MPI_FLOAT, 0, c->scomm);
            const sds_sublayer_report *rp = &s->rep[k];
            rc = sds_agree(comm,
                           sds_h5out_sublayer(h5, rp->name, rows, cols, 0,
                                              rank == keeper ? rows : 0, rank == keeper ? w : NULL,
                                              rank == keeper ? mask : NULL, &rp->st));
        }
        if (rc != SDS_OK) {
            sds_ckpt_reader_abort(rd);
            break;
        }
        rc = sds_agree(comm, rank == keeper ? sds_ckpt_reader_finish(rd) : SDS_OK);
    }
    free(mask);
    if (rc == SDS_OK) {
        char path[4200];
        sds_ckpt_acts_path(c->dir, rank, last, path, sizeof path);
        const sds_ckpt_acts_header hd = {
            rank, size, last, acts_held(c, s, last), s->T, s->C, s->inps_d != NULL};
        rc = sds_agree(comm, sds_ckpt_acts_read(path, &hd, &c->acts_info, s->inps, s->inps_d));
    }
    if (rc != SDS_OK) return rc;
    json_decref(c->meta);
    c->meta = NULL;
    c->layers_on_disk = last + 1;
    c->saved_layer = last;
    if (rank == 0) {
        printf("resumed from %s: layers 0-%lld restored (%lld sublayers), going on with layer "
               "%lld of %lld\n",
               c->dir, (long long)last, (long long)((last + 1) * n), (long long)(last + 1),
               (long long)c->L);
        fflush(stdout);
    }
    return SDS_OK;
}

// ---- saving ----

// (layer l's keeper) Writes layer l's file from the model's weights and the kept masks.
static int write_layer(sds_prune_ckpt *c, sds_model *m, int64_t l) {
    const int32_t n = c->n_lin;
    sds_ckpt_shape shapes[CKPT_MAX_LINEAR];
    int64_t max_numel;
    layer_shapes(m, l, n, shapes, &max_numel);
    uint8_t *mask = sds_malloc((size_t)max_numel, "checkpoint mask");
    if (!mask) return SDS_ERR_IO;
    char path[4200];
    sds_ckpt_layer_path(c->dir, l, path, sizeof path);
    sds_ckpt_writer *wr = NULL;
    int rc = sds_ckpt_layer_begin(path, l, n, shapes, &wr);
    for (int32_t i = 0; i < n && rc == SDS_OK; i++) {
        const sds_linear_ref r = sds_model_linear(m, l, i);
        SDS_ASSERT(c->masks[l * n + i]);
        mask_unpack(c->masks[l * n + i], r.rows * r.cols, mask);
        rc = sds_ckpt_layer_put(wr, r.w, mask);
    }
    free(mask);
    if (rc != SDS_OK) {
        sds_ckpt_writer_abort(wr);
        return rc;
    }
    return sds_ckpt_writer_commit(wr, &c->layer_info[l]);
}

static json_t *file_json(const char *path, const sds_ckpt_file_info *info) {
    json_t *j = sds_ckpt_info_json(info);
    json_object_set_new(j, "file", json_string(base_name(path)));
    return j;
}

// (rank 0) meta.json for the checkpoint after `layer`; acts: every rank's (bytes, checksum).
static int write_meta(sds_prune_ckpt *c, const sds_prune_state *s, int64_t layer,
                      const uint64_t *acts, int nranks) {
    json_t *root = json_object();
    char hex[17], path[4200];
    json_object_set_new(root, "format", json_string(SDS_CKPT_FORMAT));
    json_object_set_new(root, "format_version", json_integer(SDS_CKPT_FORMAT_VERSION));
    json_object_set_new(root, "options", json_loads(s->opts_text, 0, NULL));
    json_object_set_new(root, "ranks", json_integer(nranks));
    json_object_set_new(root, "layers", json_integer(c->L));
    json_object_set_new(root, "sublayers_per_layer", json_integer(c->n_lin));
    json_object_set_new(root, "last_completed_layer", json_integer(layer));
    hex64(s->calib_fp, hex);
    json_object_set_new(root, "calibration_fingerprint", json_string(hex));
    hex64(s->fp, hex);
    json_object_set_new(root, "fingerprint", json_string(hex));
    json_t *subs = json_array();
    for (int64_t k = 0; k < (layer + 1) * c->n_lin; k++) {
        const sds_linear_ref r = sds_model_linear(s->m, c->shape_layer, (int32_t)(k % c->n_lin));
        json_array_append_new(subs, json_pack("{s:s,s:I,s:I,s:o}", "name", s->rep[k].name, "rows",
                                              (json_int_t)r.rows, "cols", (json_int_t)r.cols,
                                              "stats", sds_ckpt_stats_json(&s->rep[k].st)));
    }
    json_object_set_new(root, "sublayers", subs);
    json_t *lf = json_array();
    for (int64_t l = 0; l <= layer; l++) {
        sds_ckpt_layer_path(c->dir, l, path, sizeof path);
        json_array_append_new(lf, file_json(path, &c->layer_info[l]));
    }
    json_object_set_new(root, "layer_files", lf);
    json_t *rf = json_array();
    for (int r = 0; r < nranks; r++) {
        const sds_ckpt_file_info info = {acts[2 * r], acts[2 * r + 1]};
        sds_ckpt_acts_path(c->dir, r, layer, path, sizeof path);
        json_array_append_new(rf, file_json(path, &info));
    }
    json_object_set_new(root, "rank_files", rf);
    return sds_ckpt_meta_write(c->dir, root);
}

int sds_prune_ckpt_save(MPI_Comm comm, sds_prune_ckpt *c, const sds_prune_state *s, int64_t layer) {
    const int rank = c->rank, size = c->P;
    SDS_ASSERT(c->n_lin <= CKPT_MAX_LINEAR && layer > c->saved_layer);
    uint64_t *acts = NULL;
    int local = SDS_OK;
    if (rank == 0) {
        acts = sds_calloc((size_t)size * 2, sizeof *acts, "checkpoint file list");
        local = acts ? sds_ckpt_dir_create(c->dir) : SDS_ERR_IO;
    }
    int rc = sds_agree(comm, local);
    if (rc != SDS_OK) {
        free(acts);
        return rc;
    }
    // 1. each keeper: its layers not yet on disk; every rank: its activations (if it holds any)
    for (int64_t l = c->layers_on_disk; l <= layer && local == SDS_OK; l++)
        if (sds_prune_ckpt_keeper(c, l) == rank) local = write_layer(c, s->m, l);
    char path[4200];
    sds_ckpt_acts_path(c->dir, rank, layer, path, sizeof path);
    const sds_ckpt_acts_header hd = {
        rank, size, layer, acts_held(c, s, layer), s->T, s->C, s->inps_d != NULL};
    sds_ckpt_file_info mine = {0, 0};
    const int arc = sds_ckpt_acts_write(path, &hd, s->inps, s->inps_d, &mine);
    rc = sds_agree(comm, local != SDS_OK ? local : arc);
    // the new layer files' sizes and checksums, from their keepers to every rank (each entry is
    // set on one rank, zero on the others)
    if (rc == SDS_OK && layer >= c->layers_on_disk) {
        const int64_t n_new = layer + 1 - c->layers_on_disk;
        sds_ckpt_file_info *fresh = c->layer_info + c->layers_on_disk;
        for (int64_t l = 0; l < n_new; l++)
            if (sds_prune_ckpt_keeper(c, c->layers_on_disk + l) != rank)
                fresh[l] = (sds_ckpt_file_info){0, 0};
        MPI_Allreduce(MPI_IN_PLACE, fresh, (int)(2 * n_new), MPI_UINT64_T, MPI_BOR, comm);
    }
    // 2. rank 0: meta.json, naming every file with its size and checksum, renamed last
    if (rc == SDS_OK) {
        const uint64_t pair[2] = {mine.bytes, mine.checksum};
        MPI_Gather(pair, 2, MPI_UINT64_T, acts, 2, MPI_UINT64_T, 0, comm);
        rc = sds_agree(comm, rank == 0 ? write_meta(c, s, layer, acts, size) : SDS_OK);
    }
    free(acts);
    if (rc != SDS_OK) return rc;
    // 3. the previous checkpoint's activations are no longer named by meta.json
    if (c->saved_layer >= 0) {
        sds_ckpt_acts_path(c->dir, rank, c->saved_layer, path, sizeof path);
        sds_ckpt_file_remove(path);
    }
    c->saved_layer = layer;
    c->layers_on_disk = layer + 1;
    return SDS_OK;
}

void sds_prune_ckpt_remove(MPI_Comm comm, sds_prune_ckpt *c) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    struct stat sb;
    if (rank == 0 && stat(c->dir, &sb) == 0) {
        const int left = sds_ckpt_dir_remove(c->dir);
        if (left) printf("note: %s kept: %d other entries in it\n", c->dir, left);
        fflush(stdout);
    }
    MPI_Barrier(comm);
}

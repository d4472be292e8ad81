// test_model_part MODEL...: sds_model_load_part against sds_model_load, for each model (a Hugging
// Face checkpoint directory or a GGUF file). Parts of the whole model ([0,1) with the embeddings,
// a middle range with nothing, [L-1,L) with the head, an empty range with only the head, ...) must
// hold exactly their tensors, bitwise equal to the whole model's, report their bytes, and give
// the whole model's window NLL bit for bit when the window is passed from part to part as
// pipeline stages do: embed -> layers -> ... -> head_nll. Prints OK / NOT OK per check and exits 1
// on any NOT OK.
#include "model_load.h"
#include "sds_error.h"

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WINDOW 70 // more than one chunk of head logits (64 rows)

static int failures = 0;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "OK    " : "NOT OK");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (!ok) failures++;
}

static const char *parts_name(int32_t parts) {
    static const char *names[4] = {"none", "EMBED", "HEAD", "EMBED|HEAD"};
    return names[parts & 3];
}

// A tensor outside the decoder layers: the whole model's, the part's, its size and whether the
// part must hold it.
typedef struct {
    const char *name;
    const float *whole, *part;
    size_t n;
    int wanted;
} top_tensor;

// The tensors outside the layers of whole and part; returns how many.
static int top_tensors(const sds_model *whole, const sds_model *part, int32_t parts,
                       top_tensor *t) {
    const sds_model_config *c = &whole->cfg;
    const size_t C = (size_t)c->hidden_size, E = (size_t)c->word_embed_proj_dim,
                 V = (size_t)c->vocab_size, P = (size_t)c->max_position_embeddings + 2;
    const int embed = (parts & SDS_MODEL_EMBED) != 0, head = (parts & SDS_MODEL_HEAD) != 0;
    const int tied = c->tie_word_embeddings;
    int n = 0;
    if (whole->arch == SDS_ARCH_OPT) {
        const sds_opt_model *w = &whole->opt, *p = &part->opt;
        t[n++] = (top_tensor){"embed_tokens", w->embed_tokens, p->embed_tokens, V * E,
                              embed || (head && tied)};
        t[n++] =
            (top_tensor){"embed_positions", w->embed_positions, p->embed_positions, P * C, embed};
        t[n++] = (top_tensor){"project_in", w->project_in, p->project_in, C * E, embed};
        t[n++] = (top_tensor){"project_out", w->project_out, p->project_out, E * C, head};
        t[n++] = (top_tensor){"final_layer_norm.weight", w->final_ln_w, p->final_ln_w, C, head};
        t[n++] = (top_tensor){"final_layer_norm.bias", w->final_ln_b, p->final_ln_b, C, head};
        if (!tied) t[n++] = (top_tensor){"lm_head", w->lm_head, p->lm_head, V * E, head};
    } else {
        const sds_llama_model *w = &whole->llama, *p = &part->llama;
        t[n++] = (top_tensor){"embed_tokens", w->embed_tokens, p->embed_tokens, V * C,
                              embed || (head && tied)};
        t[n++] = (top_tensor){"norm", w->final_norm_w, p->final_norm_w, C, head};
        if (!tied) t[n++] = (top_tensor){"lm_head", w->lm_head, p->lm_head, V * C, head};
    }
    return n;
}

static const float *lm_head_of(const sds_model *m) {
    return m->arch == SDS_ARCH_OPT ? m->opt.lm_head : m->llama.lm_head;
}
static const float *embed_tokens_of(const sds_model *m) {
    return m->arch == SDS_ARCH_OPT ? m->opt.embed_tokens : m->llama.embed_tokens;
}
static const float *layer_params(const sds_model *m, int64_t i, size_t *n) {
    if (m->arch == SDS_ARCH_OPT) {
        *n = m->opt.layers[i].n_params;
        return m->opt.layers[i].params;
    }
    *n = m->llama.layers[i].n_params;
    return m->llama.layers[i].params;
}

// Loads part [lo, hi) with parts of path and checks what it holds against whole. Returns the
// part loaded (or a zeroed model when loading failed).
static sds_model load_checked(const char *path, const sds_model *whole, int64_t lo, int64_t hi,
                              int32_t parts) {
    sds_model m;
    char what[512];
    const int64_t L = whole->cfg.n_layers;
    snprintf(what, sizeof what, "%s [%lld,%lld) %s", path, (long long)lo, (long long)hi,
             parts_name(parts));
    int rc = sds_model_load_part(path, lo, hi, parts, &m);
    check(rc == SDS_OK, "%s: loads%s%s", what, rc == SDS_OK ? "" : ": ",
          rc == SDS_OK ? "" : sds_error_message());
    if (rc != SDS_OK) {
        sds_error_clear();
        memset(&m, 0, sizeof m);
        return m;
    }
    const sds_model_config *a = &whole->cfg, *b = &m.cfg;
    check(m.arch == whole->arch && a->n_layers == b->n_layers && a->hidden_size == b->hidden_size &&
              a->vocab_size == b->vocab_size && a->ffn_dim == b->ffn_dim &&
              a->n_heads == b->n_heads && a->tie_word_embeddings == b->tie_word_embeddings &&
              a->norm_eps == b->norm_eps,
          "%s: architecture and configuration complete", what);
    check(sds_model_parts(&m) == parts, "%s: sds_model_parts %d", what, sds_model_parts(&m));

    // the layers
    const int64_t clo = lo < 0 ? 0 : lo, chi = hi > L ? L : hi;
    size_t expect = 0;
    int layers_ok = 1, unheld_ok = 1, has_ok = 1;
    for (int64_t i = 0; i < L; i++) {
        const int held = i >= clo && i < chi;
        size_t nw, np;
        const float *pw = layer_params(whole, i, &nw), *pp = layer_params(&m, i, &np);
        if (sds_model_has_layer(&m, i) != held) has_ok = 0;
        if (held) {
            if (!pp || np != nw || memcmp(pp, pw, nw * sizeof(float)) != 0) layers_ok = 0;
            expect += nw;
        } else if (pp || np != 0) {
            unheld_ok = 0;
        }
    }
    check(has_ok && !sds_model_has_layer(&m, -1) && !sds_model_has_layer(&m, L),
          "%s: sds_model_has_layer is 1 exactly on [%lld,%lld)", what, (long long)clo,
          (long long)(chi > clo ? chi : clo));
    check(layers_ok, "%s: held layers bitwise equal to the whole model's", what);
    check(unheld_ok, "%s: other layers unallocated (params NULL, n_params 0)", what);

    // embeddings and head
    top_tensor t[8];
    const int nt = top_tensors(whole, &m, parts, t);
    for (int k = 0; k < nt; k++) {
        if (!t[k].whole) {
            check(t[k].part == NULL, "%s: %s absent as in the whole model", what, t[k].name);
        } else if (t[k].wanted) {
            check(t[k].part && memcmp(t[k].part, t[k].whole, t[k].n * sizeof(float)) == 0,
                  "%s: %s held, bitwise equal", what, t[k].name);
            expect += t[k].n;
        } else {
            check(t[k].part == NULL, "%s: %s not held", what, t[k].name);
        }
    }
    if (whole->cfg.tie_word_embeddings)
        check((parts & SDS_MODEL_HEAD) ? lm_head_of(&m) == embed_tokens_of(&m)
                                       : lm_head_of(&m) == NULL,
              "%s: tied lm_head %s", what,
              (parts & SDS_MODEL_HEAD) ? "is embed_tokens" : "not held");
    check(sds_model_held_bytes(&m) == expect * sizeof(float), "%s: held bytes %zu (expected %zu)",
          what, sds_model_held_bytes(&m), expect * sizeof(float));
    return m;
}

// Runs layers [lo, hi) of m on x.
static void run_layers(const sds_model *m, int64_t lo, int64_t hi, float *x, int64_t T,
                       sds_model_work *w) {
    for (int64_t i = lo; i < hi; i++) sds_model_layer_forward(m, i, x, T, w);
}

// Whether calling fn in a child process aborts (an SDS_ASSERT).
static int aborts(void (*fn)(void *), void *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        FILE *devnull = freopen("/dev/null", "w", stderr);
        (void)devnull;
        fn(arg);
        _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 0;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

typedef struct {
    sds_model *m;
    int64_t layer;
    float *x;
    sds_model_work *w;
} unheld_call;

static void call_forward(void *arg) {
    unheld_call *c = arg;
    sds_model_layer_forward(c->m, c->layer, c->x, 2, c->w);
}
static void call_linear(void *arg) {
    unheld_call *c = arg;
    sds_linear_ref r = sds_model_linear(c->m, c->layer, 0);
    (void)r;
}

static void check_model(const char *path) {
    sds_model whole, full;
    int rc = sds_model_load(path, &whole);
    check(rc == SDS_OK, "%s: whole model loads%s%s", path, rc == SDS_OK ? "" : ": ",
          rc == SDS_OK ? "" : sds_error_message());
    if (rc != SDS_OK) {
        sds_error_clear();
        return;
    }
    const int64_t L = whole.cfg.n_layers, C = whole.cfg.hidden_size, T = WINDOW;
    printf("# %s: %s, %lld layers, hidden %lld, vocab %lld, %stied head\n", path,
           whole.arch == SDS_ARCH_OPT ? "OPT" : "Llama", (long long)L, (long long)C,
           (long long)whole.cfg.vocab_size, whole.cfg.tie_word_embeddings ? "" : "un");

    // load_part(0, INT64_MAX, EMBED|HEAD) is the whole model
    full = load_checked(path, &whole, 0, INT64_MAX, SDS_MODEL_EMBED | SDS_MODEL_HEAD);
    sds_model_free(&full);

    int32_t tokens[WINDOW];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    const int64_t vmax = whole.cfg.vocab_size < 50000 ? whole.cfg.vocab_size : 50000;
    for (int64_t t = 0; t < T; t++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[t] = (int32_t)((s >> 33) % (uint64_t)vmax);
    }
    sds_model_work ww;
    SDS_ASSERT(sds_model_work_alloc(&ww, &whole, T) == SDS_OK);
    const double ref = sds_model_window_nll(&whole, tokens, T, &ww);
    printf("# window NLL of the whole model: %.17g\n", ref);

    // the stages: [0,1) EMBED, [1,L-1) nothing, [L-1,L) HEAD, and [1,L) HEAD
    const int64_t mid_hi = L - 1 > 1 ? L - 1 : 1;
    sds_model a = load_checked(path, &whole, 0, 1, SDS_MODEL_EMBED);
    sds_model b = load_checked(path, &whole, 1, mid_hi, 0);
    sds_model c = load_checked(path, &whole, mid_hi, L, SDS_MODEL_HEAD);
    sds_model rest = load_checked(path, &whole, 1, L, SDS_MODEL_HEAD);
    sds_model head = load_checked(path, &whole, L, L, SDS_MODEL_HEAD);
    sds_model clamped = load_checked(path, &whole, -5, 1, SDS_MODEL_EMBED);
    sds_model beyond = load_checked(path, &whole, L + 3, INT64_MAX, 0);
    sds_model both = load_checked(path, &whole, L / 2, L / 2 + 1, SDS_MODEL_EMBED | SDS_MODEL_HEAD);

    float *x = malloc((size_t)(T * C) * sizeof(float));
    float *x0 = malloc((size_t)(T * C) * sizeof(float));
    SDS_ASSERT(x && x0);
    if (a.cfg.n_layers && b.cfg.n_layers && c.cfg.n_layers) {
        sds_model_work wa, wb, wc;
        SDS_ASSERT(sds_model_work_alloc(&wa, &a, T) == SDS_OK);
        SDS_ASSERT(sds_model_work_alloc(&wb, &b, T) == SDS_OK);
        SDS_ASSERT(sds_model_work_alloc(&wc, &c, T) == SDS_OK);
        sds_model_embed(&a, tokens, T, x, &wa);
        run_layers(&a, 0, 1, x, T, &wa);
        run_layers(&b, 1, mid_hi, x, T, &wb);
        run_layers(&c, mid_hi, L, x, T, &wc);
        memcpy(x0, x, (size_t)(T * C) * sizeof(float));
        const double nll = sds_model_head_nll(&c, tokens, x, T, &wc);
        check(memcmp(&nll, &ref, sizeof nll) == 0,
              "%s: NLL of [0,1) EMBED -> [1,%lld) -> [%lld,%lld) HEAD = whole model's bit for bit "
              "(%.17g)",
              path, (long long)mid_hi, (long long)mid_hi, (long long)L, nll);
        check(memcmp(x, x0, (size_t)(T * C) * sizeof(float)) == 0,
              "%s: sds_model_head_nll leaves x unchanged", path);
        sds_model_work_free(&wa);
        sds_model_work_free(&wb);
        sds_model_work_free(&wc);
    }
    if (clamped.cfg.n_layers && rest.cfg.n_layers) {
        sds_model_work wa, wr;
        SDS_ASSERT(sds_model_work_alloc(&wa, &clamped, T) == SDS_OK);
        SDS_ASSERT(sds_model_work_alloc(&wr, &rest, T) == SDS_OK);
        sds_model_embed(&clamped, tokens, T, x, &wa);
        run_layers(&clamped, 0, 1, x, T, &wa);
        run_layers(&rest, 1, L, x, T, &wr);
        const double nll = sds_model_head_nll(&rest, tokens, x, T, &wr);
        check(memcmp(&nll, &ref, sizeof nll) == 0,
              "%s: NLL of [-5,1) EMBED -> [1,%lld) HEAD = whole model's bit for bit", path,
              (long long)L);
        sds_model_work_free(&wa);
        sds_model_work_free(&wr);
    }
    if (head.cfg.n_layers) {
        // the whole model's layers, then a process that holds only the head
        sds_model_work wh;
        SDS_ASSERT(sds_model_work_alloc(&wh, &head, T) == SDS_OK);
        sds_model_embed(&whole, tokens, T, x, &ww);
        run_layers(&whole, 0, L, x, T, &ww);
        const double nll = sds_model_head_nll(&head, tokens, x, T, &wh);
        check(memcmp(&nll, &ref, sizeof nll) == 0,
              "%s: NLL of whole layers -> [%lld,%lld) HEAD only = whole model's bit for bit", path,
              (long long)L, (long long)L);
        // a layer that is not held: an assertion, not a read of NULL
        unheld_call u = {&head, 0, x, &wh};
        check(aborts(call_forward, &u), "%s: sds_model_layer_forward on a layer not held aborts",
              path);
        check(aborts(call_linear, &u), "%s: sds_model_linear on a layer not held aborts", path);
        sds_model_work_free(&wh);
    }
    // the whole model's window NLL is unchanged by a second call (head_nll leaves w->x alone)
    const double again = sds_model_window_nll(&whole, tokens, T, &ww);
    check(memcmp(&again, &ref, sizeof again) == 0, "%s: window NLL reproducible", path);

    free(x);
    free(x0);
    sds_model_work_free(&ww);
    sds_model_free(&a);
    sds_model_free(&b);
    sds_model_free(&c);
    sds_model_free(&rest);
    sds_model_free(&head);
    sds_model_free(&clamped);
    sds_model_free(&beyond);
    sds_model_free(&both);
    sds_model_free(&whole);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_model_part MODEL...\n");
        return 2;
    }
    // the same errors as sds_model_load
    const char *missing = "/nonexistent/sds-model-part";
    sds_model m;
    int rc1 = sds_model_load(missing, &m);
    char msg1[1024];
    snprintf(msg1, sizeof msg1, "%s", sds_error_message());
    sds_error_clear();
    int rc2 = sds_model_load_part(missing, 0, 1, SDS_MODEL_EMBED, &m);
    check(rc1 != SDS_OK && rc1 == rc2 && strcmp(msg1, sds_error_message()) == 0,
          "missing model: same code and message as sds_model_load (%s)", msg1);
    sds_error_clear();

    for (int i = 1; i < argc; i++) check_model(argv[i]);
    printf("%s: %d check(s) failed\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}

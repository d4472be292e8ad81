#include "dist_gram.h"

#include "agree.h"
#include "hessian.h"
#include "sds_error.h"
#include "threads.h"
#include "xsum_mpi.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- 1-D block-cyclic index arithmetic (blocks of nb over P processes, source 0) -----------
// (the same formulas as mpi/dist_sparsegpt.c, whose helpers are private to it)

// Indices below e owned by process p.
static int64_t bc_count(int64_t e, int64_t nb, int P, int p) {
    const int64_t blocks = (e + nb - 1) / nb;
    if (p >= blocks) return 0;
    const int64_t mine = (blocks - 1 - p) / P + 1; // blocks p, p + P, ... below `blocks`
    int64_t count = mine * nb;
    if ((blocks - 1) % P == p) count -= blocks * nb - e; // the last block is short
    return count;
}

static int64_t bc_local(int64_t i, int64_t nb, int P) {
    return (i / (nb * P)) * nb + i % nb;
}

// Local rows whose global row is below e: a prefix of the local rows, since global rows grow
// with local ones.
static int64_t rows_below(const sds_dist_grid *g, int64_t e) {
    return bc_count(e, g->nb, g->nprow, g->myrow);
}

// The columns of X (T x n, row-major) that process p of P owns, gathered block by block into
// panels: local block b (width w) is the column-major (w x T) panel at dst + b * nb * T, so that
// every block's operand has the same layout (leading dimension w) whatever the grid.
static void gather_panels(const float *X, int64_t T, int64_t n, int64_t nb, int P, int p,
                          int64_t cnt, float *dst) {
    for (int64_t l = 0; l < cnt; l += nb) {
        const int64_t j0 = ((l / nb) * P + p) * nb;
        const int64_t w = cnt - l < nb ? cnt - l : nb;
        float *panel = dst + l * T;
        for (int64_t t = 0; t < T; t++)
            memcpy(panel + t * w, X + t * n + j0, (size_t)w * sizeof(float));
    }
}

// Width of local block starting at local index l of cnt.
static int64_t block_width(int64_t l, int64_t cnt, int64_t nb) {
    return cnt - l < nb ? cnt - l : nb;
}

// tile (wi x wj, column-major, leading dimension nb) = the global block (I, J) of X^T X from
// X's column panels I and J: A and B, the column-major (wi x K) and (wj x K) operands with
// leading dimensions wi and wj (sds_dist_gram_add copies them out of X first). One call per
// global block, its shape fixed by (I, J) alone: OpenBLAS's result for an entry depends on the
// call's shape (edge kernels, small matrix kernels, where the K loop is split), so a call per
// column block spanning the local rows would give other bits on other grids. Per block, every
// grid makes the same calls (the operands' leading dimensions do not change the bits: the
// kernels pack them first). A diagonal block (I == J) is one ssyrk, its upper triangle only:
// half the flops of the block's sgemm.
static void tile_gram(const float *A, int64_t wi, const float *B, int64_t wj, int diag, int64_t K,
                      float *tile, int64_t nb) {
    if (diag)
        cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, (int)wi, (int)K, 1.0f, A, (int)wi,
                    0.0f, tile, (int)nb);
    else
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)wi, (int)wj, (int)K, 1.0f, A,
                    (int)wi, B, (int)wj, 0.0f, tile, (int)nb);
}

// ---- who computes which block (mpi/dist_gram.h) --------------------------------------------

struct sds_dist_gram_task {
    int64_t bi, bj; // global block (row, column)
    int rank;       // tasks: the owner (this rank for its own); missing: the computing rank
};

static int64_t nblocks(const sds_dist_grid *g) {
    return (g->n + g->nb - 1) / g->nb;
}

static int64_t bwidth(const sds_dist_grid *g, int64_t bi) {
    return g->n - bi * g->nb < g->nb ? g->n - bi * g->nb : g->nb;
}

// The work of global block (bi, bj), bi <= bj, in flops: 2 wi wj off the diagonal, wi (wi + 1)
// on it (one ssyrk, the upper triangle).
static int64_t block_weight(const sds_dist_grid *g, int64_t bi, int64_t bj) {
    const int64_t wi = bwidth(g, bi), wj = bwidth(g, bj);
    return bi == bj ? wi * (wi + 1) : 2 * wi * wj;
}

static int owner_rank(const sds_dist_grid *g, int64_t bi, int64_t bj) {
    const int pr = (int)(bi % g->nprow), pc = (int)(bj % g->npcol);
    for (int r = 0; r < g->size; r++)
        if (g->prow[r] == pr && g->pcol[r] == pc) return r;
    SDS_ASSERT(0);
    return -1;
}

// worker[b] for the upper blocks b in column order ((0,0), (0,1), (1,1), (0,2), ...); NULL when
// out of memory. The moves of the header: deterministic (ties to the lowest rank and the first
// block), and each lowers the sum of the squared loads, so they end.
static int *assign(const sds_dist_grid *g) {
    const int64_t B = nblocks(g), nbk = B * (B + 1) / 2;
    const int P = g->size;
    int *worker = malloc((size_t)nbk * sizeof(int));
    int *owner = malloc((size_t)nbk * sizeof(int));
    int64_t *w = malloc((size_t)nbk * sizeof(int64_t));
    int64_t *load = calloc((size_t)P, sizeof(int64_t));
    if (!worker || !owner || !w || !load) {
        free(worker);
        worker = NULL;
        goto out;
    }
    for (int64_t bj = 0, b = 0; bj < B; bj++)
        for (int64_t bi = 0; bi <= bj; bi++, b++) {
            w[b] = block_weight(g, bi, bj);
            owner[b] = worker[b] = owner_rank(g, bi, bj);
            load[owner[b]] += w[b];
        }
    for (;;) {
        int p = 0, q = 0;
        for (int r = 1; r < P; r++) {
            if (load[r] > load[p]) p = r;
            if (load[r] < load[q]) q = r;
        }
        const int64_t gap = load[p] - load[q];
        int64_t best = -1, best_score = 0;
        for (int64_t b = 0; b < nbk; b++) {
            if (worker[b] != p || owner[b] != p || w[b] >= gap) continue;
            const int64_t score = gap - 2 * w[b] < 0 ? 2 * w[b] - gap : gap - 2 * w[b];
            if (best < 0 || score < best_score) {
                best = b;
                best_score = score;
            }
        }
        if (best < 0) break;
        worker[best] = q;
        load[p] -= w[best];
        load[q] += w[best];
    }
out:
    free(owner);
    free(w);
    free(load);
    return worker;
}

int sds_dist_gram_worker(const sds_dist_grid *g, int64_t bi, int64_t bj) {
    SDS_ASSERT(0 <= bi && bi <= bj && bj < nblocks(g));
    int *worker = assign(g);
    SDS_ASSERT(worker);
    const int r = worker[bj * (bj + 1) / 2 + bi];
    free(worker);
    return r;
}

// ---- the Hessian on the grid -----------------------------------------------------------------

static void *held(sds_dist_gram *d, int64_t bytes, const char *what) {
    void *p = sds_calloc((size_t)bytes, 1, what);
    if (p) {
        d->bytes += bytes;
        if (d->bytes > d->peak_bytes) d->peak_bytes = d->bytes;
    }
    return p;
}

// The sums of the blocks this rank computes: one nb x nb block of 128-bit sums each.
static int64_t sums_bytes(const sds_dist_gram *d) {
    return d->ntask > 0 ? 16 * (int64_t)d->g->nb * d->g->nb * d->ntask : 16;
}

static void release(sds_dist_gram *d, void *p, int64_t bytes) {
    if (!p) return;
    free(p);
    d->bytes -= bytes;
}

// This rank's tasks, in column order (*nforeign of them for other owners), and the own blocks
// others compute; NULL arrays: counts only.
static void plan_tasks(const sds_dist_grid *g, const int *worker, int32_t *ntask, int32_t *nforeign,
                       int32_t *nmissing, struct sds_dist_gram_task *task,
                       struct sds_dist_gram_task *missing) {
    const int64_t B = nblocks(g);
    *ntask = *nforeign = *nmissing = 0;
    for (int64_t bj = 0, b = 0; bj < B; bj++)
        for (int64_t bi = 0; bi <= bj; bi++, b++) {
            const int owner = owner_rank(g, bi, bj);
            struct sds_dist_gram_task *k;
            if (worker[b] == g->rank) {
                k = task ? &task[*ntask] : NULL;
                (*ntask)++;
                *nforeign += owner != g->rank;
            } else if (owner == g->rank) {
                k = missing ? &missing[*nmissing] : NULL;
                (*nmissing)++;
            } else {
                continue;
            }
            if (!k) continue;
            k->bi = bi;
            k->bj = bj;
            k->rank = worker[b] == g->rank ? owner : worker[b];
        }
}

// How many blocks this rank computes, and how many of them for other owners.
static void count_tasks(const sds_dist_grid *g, int32_t *ntask, int32_t *nforeign) {
    int *worker = assign(g);
    SDS_ASSERT(worker);
    int32_t nmissing;
    plan_tasks(g, worker, ntask, nforeign, &nmissing, NULL, NULL);
    free(worker);
}

// The column panels of X that tasks[0..ntask) read (block rows and columns), numbered in
// order into slot[0..B) (-1 for the others) when slot is not NULL; returns their count.
static int32_t count_panels(const sds_dist_grid *g, const struct sds_dist_gram_task *task,
                            int32_t ntask, int32_t *slot) {
    const int64_t B = nblocks(g);
    uint8_t *used = calloc((size_t)B + 1, 1);
    SDS_ASSERT(used);
    for (int32_t k = 0; k < ntask; k++) used[task[k].bi] = used[task[k].bj] = 1;
    int32_t n = 0;
    for (int64_t b = 0; b < B; b++) {
        if (slot) slot[b] = used[b] ? n : -1;
        n += used[b];
    }
    free(used);
    return n;
}

// This rank's tasks and the own blocks others compute (plan_tasks' arrays, allocated) into d's
// task, missing and counts; status code when out of memory (d's arrays then NULL).
static int rank_tasks(const sds_dist_grid *g, sds_dist_gram *d) {
    int *worker = assign(g);
    if (worker) {
        plan_tasks(g, worker, &d->ntask, &d->nforeign, &d->nmissing, NULL, NULL);
        d->task = calloc((size_t)d->ntask + 1, sizeof *d->task);
        d->missing = calloc((size_t)d->nmissing + 1, sizeof *d->missing);
        if (d->task && d->missing)
            plan_tasks(g, worker, &d->ntask, &d->nforeign, &d->nmissing, d->task, d->missing);
    }
    free(worker);
    if (worker && d->task && d->missing) return SDS_OK;
    free(d->task);
    free(d->missing);
    d->task = d->missing = NULL;
    return sds_error_set(SDS_ERR_IO, "out of memory for the Hessian's block assignment");
}

int64_t sds_dist_gram_bound(const sds_dist_grid *g, int64_t T) {
    sds_dist_gram d;
    memset(&d, 0, sizeof d);
    const int rc = rank_tasks(g, &d);
    SDS_ASSERT(rc == SDS_OK);
    const int64_t nb2 = (int64_t)g->nb * g->nb, blocks = d.ntask;
    const int64_t panels =
        T > 0 && blocks > 0 ? 4 * T * g->nb * count_panels(g, d.task, d.ntask, NULL) : 0;
    free(d.task);
    free(d.missing);
    const int64_t piece = g->nloc > 0 ? 4 * (int64_t)g->lld * g->nloc : 4;
    return (blocks > 0 ? 16 * nb2 * blocks : 16) + 4 * nb2 + (panels > piece ? panels : piece);
}

int32_t sds_dist_gram_blocks(const sds_dist_grid *g) {
    int32_t ntask, nforeign;
    count_tasks(g, &ntask, &nforeign);
    return ntask;
}

int32_t sds_dist_gram_foreign(const sds_dist_grid *g) {
    int32_t ntask, nforeign;
    count_tasks(g, &ntask, &nforeign);
    return nforeign;
}

int sds_dist_gram_init(sds_dist_gram *d, const sds_dist_grid *g, int64_t T) {
    memset(d, 0, sizeof *d);
    d->g = g;
    if (T < 0 || T > INT_MAX)
        return sds_error_set(SDS_ERR_INPUT, "Hessian on the grid: %lld tokens is out of range",
                             (long long)T);
    d->T = T;
    const int rc = rank_tasks(g, d);
    if (rc != SDS_OK) {
        sds_dist_gram_free(d);
        return rc;
    }
    const int64_t nb = g->nb;
    d->acc = held(d, sums_bytes(d), "the Hessian's exact sums on the grid");
    d->tile = d->acc ? held(d, 4 * nb * nb, "one block of X^T X") : NULL;
    if (!d->tile) {
        sds_dist_gram_free(d);
        return SDS_ERR_IO;
    }
    d->slot = sds_malloc((size_t)(nblocks(g) + 1) * sizeof(int32_t), "the Hessian's panels");
    if (!d->slot) {
        sds_dist_gram_free(d);
        return SDS_ERR_IO;
    }
    d->npanel = count_panels(g, d->task, d->ntask, d->slot);
    if (T > 0 && d->npanel > 0) {
        d->panel = held(d, 4 * T * nb * d->npanel, "X's column panels of the rank's blocks");
        if (!d->panel) {
            sds_dist_gram_free(d);
            return SDS_ERR_IO;
        }
    }
    return SDS_OK;
}

int sds_dist_gram_threads(sds_dist_gram *d, int32_t k) {
    SDS_ASSERT(d->acc && d->nseq == 0);
    if (k > SDS_THREADS_MAX) k = SDS_THREADS_MAX;
    if (k > d->ntask) k = d->ntask;
    if (k < 2 || d->nthreads > 1) return SDS_OK;
    const sds_dist_grid *g = d->g;
    const int64_t nb = g->nb;
    d->task_thread = sds_malloc((size_t)d->ntask * sizeof(int32_t), "the Hessian's threads");
    int64_t *load = sds_calloc((size_t)k, sizeof(int64_t), "the Hessian's threads");
    d->xtile = held(d, 4 * nb * nb * (k - 1), "blocks of X^T X, one per thread");
    if (!d->task_thread || !load || !d->xtile) {
        free(load);
        return SDS_ERR_IO;
    }
    // largest first (ties: the earlier task), each to the least loaded thread (ties: the lowest)
    for (int32_t k0 = 0; k0 < d->ntask; k0++) d->task_thread[k0] = -1;
    for (int32_t n = 0; n < d->ntask; n++) {
        int32_t best = -1;
        int64_t bw = -1;
        for (int32_t q = 0; q < d->ntask; q++) {
            if (d->task_thread[q] >= 0) continue;
            const int64_t w = block_weight(g, d->task[q].bi, d->task[q].bj);
            if (w > bw) {
                bw = w;
                best = q;
            }
        }
        int32_t t = 0;
        for (int32_t u = 1; u < k; u++)
            if (load[u] < load[t]) t = u;
        d->task_thread[best] = t;
        load[t] += bw;
    }
    free(load);
    d->nthreads = k;
    return SDS_OK;
}

// Panel p of X (T x n, row-major) for this rank's blocks: its columns b nb .. as the
// column-major (w x T) matrix with leading dimension w, at d->panel + slot * d->T * nb.
static float *panel_at(const sds_dist_gram *d, int64_t b) {
    return d->panel + (int64_t)d->slot[b] * d->T * d->g->nb;
}

// Copies the panels whose slot is t modulo k out of X. Read straight from X (leading dimension
// n), every block call packed its operands from rows n floats apart, a power of two for most
// widths: at n = 8192 (32 KB apart) the blocks ran at 0.89 of their speed from the copies on an
// AMD EPYC (Zen 3), 1 thread, and at 0.85-0.92 with 2 threads sharing the caches. The copy is
// T n floats a sequence (all panels), against T n^2 flops.
static void copy_panels(const sds_dist_gram *d, const float *X, int64_t T, int32_t t, int32_t k) {
    const sds_dist_grid *g = d->g;
    const int64_t B = nblocks(g), nb = g->nb, n = g->n;
    for (int64_t b = 0; b < B; b++) {
        if (d->slot[b] < 0 || d->slot[b] % k != t) continue;
        const int64_t w = bwidth(g, b);
        float *dst = panel_at(d, b);
        for (int64_t r = 0; r < T; r++)
            memcpy(dst + r * w, X + r * n + b * nb, (size_t)w * sizeof(float));
    }
}

// The blocks of thread t (all of them when the tasks are not split) of one sequence's X^T X into
// the sums, through `tile`; nonzero when an entry is not finite or reaches the limit.
static int add_blocks(const sds_dist_gram *d, int64_t T, int32_t t, float *tile) {
    const sds_dist_grid *g = d->g;
    const int64_t nb = g->nb;
    int bad = 0;
    for (int32_t k = 0; k < d->ntask; k++) {
        if (d->nthreads > 1 && d->task_thread[k] != t) continue;
        const struct sds_dist_gram_task *tk = &d->task[k];
        const int64_t i0 = tk->bi * nb, j0 = tk->bj * nb;
        const int64_t wi = bwidth(g, tk->bi), wj = bwidth(g, tk->bj);
        tile_gram(panel_at(d, tk->bi), wi, panel_at(d, tk->bj), wj, i0 == j0, T, tile, nb);
        for (int64_t c = 0; c < wj; c++) {
            // in the diagonal block only rows i0 + r <= j0 + c
            const int64_t r = i0 < j0 || c + 1 > wi ? wi : c + 1;
            bad |= sds_xsum_add_f32(d->acc + (k * nb + c) * nb, tile + c * nb, (size_t)r,
                                    SDS_HESSIAN_XSUM_LIMIT);
        }
    }
    return bad;
}

typedef struct {
    const sds_dist_gram *d;
    const float *X;
    int64_t T;
    int32_t t;
    int bad;
} add_job;

static void *copy_run(void *arg) {
    const add_job *j = arg;
    copy_panels(j->d, j->X, j->T, j->t, j->d->nthreads);
    return NULL;
}

static void *add_run(void *arg) {
    add_job *j = arg;
    const int64_t nb = j->d->g->nb;
    j->bad = add_blocks(j->d, j->T, j->t, j->t ? j->d->xtile + (j->t - 1) * nb * nb : j->d->tile);
    return NULL;
}

int sds_dist_gram_add(sds_dist_gram *d, const float *X, int64_t T) {
    SDS_ASSERT(d->acc);
    if (T < 0 || T > d->T)
        return sds_error_set(SDS_ERR_INPUT,
                             "Hessian on the grid: a sequence of %lld tokens, at most %lld "
                             "were provided for",
                             (long long)T, (long long)d->T);
    if (T > 0 && d->ntask > 0) {
        int bad = 0;
        if (d->nthreads > 1) {
            add_job job[SDS_THREADS_MAX];
            const int32_t k = d->nthreads;
            for (int32_t t = 0; t < k; t++) job[t] = (add_job){d, X, T, t, 0};
            const int threads = openblas_get_num_threads();
            openblas_set_num_threads(1);
            sds_threads_run(k, copy_run, job, sizeof job[0]);
            sds_threads_run(k, add_run, job, sizeof job[0]);
            for (int32_t t = 0; t < k; t++) bad |= job[t].bad;
            openblas_set_num_threads(threads);
        } else {
            copy_panels(d, X, T, 0, 1);
            bad = add_blocks(d, T, 0, d->tile);
        }
        if (bad)
            return sds_error_set(SDS_ERR_NUMERIC,
                                 "Hessian: an entry of one sequence's X^T X is not finite or "
                                 "%.3g or more: the calibration activations are too large "
                                 "for exact sums",
                                 SDS_HESSIAN_XSUM_LIMIT);
    }
    d->nseq++;
    return SDS_OK;
}

static float finish_scale(const sds_dist_gram *d) {
    return (float)(2.0 / (double)d->nseq);
}

// Task k's block as floats (sds_hessian_finish's arithmetic: the sum rounded to float, then one
// float product; 0 below the diagonal) into dst, column-major with leading dimension ld.
static void convert_block(const sds_dist_gram *d, int32_t k, float scale, float *dst, int64_t ld) {
    const sds_dist_grid *g = d->g;
    const struct sds_dist_gram_task *tk = &d->task[k];
    const int64_t nb = g->nb, wi = bwidth(g, tk->bi), wj = bwidth(g, tk->bj);
    for (int64_t c = 0; c < wj; c++) {
        const int64_t r = tk->bi < tk->bj || c + 1 > wi ? wi : c + 1;
        float *col = dst + c * ld;
        sds_xsum_to_f32(d->acc + (k * nb + c) * nb, col, (size_t)r);
        for (int64_t i = 0; i < r; i++) col[i] *= scale;
        for (int64_t i = r; i < wi; i++) col[i] = 0.0f;
    }
}

// Where block (bi, bj) of this rank's piece starts in A.
static float *piece_block(const sds_dist_grid *g, float *A, int64_t bi, int64_t bj) {
    return A + bc_local(bj * g->nb, g->nb, g->npcol) * g->lld +
           bc_local(bi * g->nb, g->nb, g->nprow);
}

// The piece A from the own blocks (the others 0 until sds_dist_gram_exchange), and each block
// computed for another owner packed (wi x wj floats) at the start of its own sums' memory,
// through the tile and memcpy, so that no float store aliases a 128-bit load. Releases what the
// exchange does not need.
static void finish_blocks(sds_dist_gram *d, float *A) {
    const sds_dist_grid *g = d->g;
    const int64_t nb = g->nb;
    const float scale = finish_scale(d);
    memset(A, 0, (size_t)g->lld * (size_t)g->nloc * sizeof(float));
    for (int32_t k = 0; k < d->ntask; k++) {
        const struct sds_dist_gram_task *tk = &d->task[k];
        if (tk->rank == g->rank) {
            convert_block(d, k, scale, piece_block(g, A, tk->bi, tk->bj), g->lld);
        } else {
            const int64_t wi = bwidth(g, tk->bi), wj = bwidth(g, tk->bj);
            convert_block(d, k, scale, d->tile, wi);
            memcpy(d->acc + k * nb * nb, d->tile, (size_t)(wi * wj) * sizeof(float));
        }
    }
    release(d, d->xtile, 4 * nb * nb * (d->nthreads > 1 ? d->nthreads - 1 : 0));
    d->xtile = NULL;
    if (d->nforeign > 0 || d->nmissing > 0) return; // the exchange's
    release(d, d->tile, 4 * nb * nb);
    d->tile = NULL;
    release(d, d->acc, sums_bytes(d));
    d->acc = NULL;
}

// X's panels are only read by sds_dist_gram_add: gone before the piece comes.
static void release_panels(sds_dist_gram *d) {
    release(d, d->panel, d->panel ? 4 * d->T * d->g->nb * d->npanel : 0);
    d->panel = NULL;
}

int sds_dist_gram_finish(sds_dist_gram *d, float *A) {
    SDS_ASSERT(d->acc && A);
    if (d->nseq < 1)
        return sds_error_set(SDS_ERR_INPUT, "Hessian: no calibration sequences were added");
    release_panels(d);
    finish_blocks(d, A);
    return SDS_OK;
}

int sds_dist_gram_finish_in_place(sds_dist_gram *d, float **A) {
    const sds_dist_grid *g = d->g;
    SDS_ASSERT(d->acc);
    *A = NULL;
    if (d->nseq < 1)
        return sds_error_set(SDS_ERR_INPUT, "Hessian: no calibration sequences were added");
    const int64_t piece = 4 * (int64_t)g->lld * g->nloc;
    release_panels(d);
    float *p = held(d, piece > 0 ? piece : 4, "the Hessian's piece");
    if (!p) return SDS_ERR_IO;
    finish_blocks(d, p);
    d->bytes -= piece > 0 ? piece : 4; // the piece is the caller's now
    *A = p;
    return SDS_OK;
}

// Blocks move in one global order (column order), each from its worker to its owner with a
// blocking send and receive: every rank meets its blocks in that order, so the earliest block
// a rank waits on always has its partner at it too, and nothing deadlocks.
enum { EXCHANGE_TAG = 7311 };

void sds_dist_gram_exchange(sds_dist_gram *d, float *A) {
    const sds_dist_grid *g = d->g;
    if (d->nforeign == 0 && d->nmissing == 0) return;
    SDS_ASSERT(d->tile && d->acc && (A || d->nmissing == 0));
    const int64_t nb = g->nb;
    int32_t k = 0, m = 0;
    for (;;) {
        while (k < d->ntask && d->task[k].rank == g->rank) k++; // own blocks stay
        const struct sds_dist_gram_task *send = k < d->ntask ? &d->task[k] : NULL;
        const struct sds_dist_gram_task *recv = m < d->nmissing ? &d->missing[m] : NULL;
        if (!send && !recv) break;
        const int sending =
            send && (!recv || send->bj < recv->bj || (send->bj == recv->bj && send->bi < recv->bi));
        const struct sds_dist_gram_task *b = sending ? send : recv;
        const int64_t wi = bwidth(g, b->bi), wj = bwidth(g, b->bj);
        if (sending) {
            MPI_Send(d->acc + k * nb * nb, (int)(wi * wj), MPI_FLOAT, b->rank, EXCHANGE_TAG,
                     g->comm);
            k++;
        } else {
            MPI_Recv(d->tile, (int)(wi * wj), MPI_FLOAT, b->rank, EXCHANGE_TAG, g->comm,
                     MPI_STATUS_IGNORE);
            float *dst = piece_block(g, A, b->bi, b->bj);
            for (int64_t c = 0; c < wj; c++)
                memcpy(dst + c * g->lld, d->tile + c * wi, (size_t)wi * sizeof(float));
            m++;
        }
    }
    release(d, d->acc, sums_bytes(d));
    d->acc = NULL;
    release(d, d->tile, 4 * nb * nb);
    d->tile = NULL;
    d->nforeign = d->nmissing = 0;
}

void sds_dist_gram_free(sds_dist_gram *d) {
    free(d->acc);
    free(d->tile);
    free(d->xtile);
    free(d->panel);
    free(d->slot);
    free(d->task_thread);
    free(d->task);
    free(d->missing);
    const sds_dist_grid *g = d->g;
    const int64_t peak = d->peak_bytes;
    memset(d, 0, sizeof *d);
    d->g = g;
    d->peak_bytes = peak; // still worth reading after the object is released
}

// ---- the diagonal --------------------------------------------------------------------------

void sds_dist_grid_diag(const sds_dist_grid *g, const float *A, float *diag) {
    memset(diag, 0, (size_t)g->n * sizeof(float));
    for (int64_t jl = 0; jl < g->nloc; jl++) {
        const int64_t j = sds_dist_grid_col_global(g, jl);
        if ((j / g->nb) % g->nprow == g->myrow)
            diag[j] = A[jl * g->lld + bc_local(j, g->nb, g->nprow)];
    }
    // one owner per entry, zero bits elsewhere: OR keeps every bit (-0.0 and NaN payloads too)
    MPI_Allreduce(MPI_IN_PLACE, diag, (int)g->n, MPI_UINT32_T, MPI_BOR, g->comm);
}

void sds_dist_grid_set_diag(const sds_dist_grid *g, float *A, const float *diag) {
    for (int64_t jl = 0; jl < g->nloc; jl++) {
        const int64_t j = sds_dist_grid_col_global(g, jl);
        if ((j / g->nb) % g->nprow == g->myrow)
            A[jl * g->lld + bc_local(j, g->nb, g->nprow)] = diag[j];
    }
}

// ---- the quadratic trace -------------------------------------------------------------------

int sds_dist_quad_trace(const sds_dist_grid *g, const float *A, const float *diag, const float *D,
                        int64_t rows, double *out) {
    *out = 0.0;
    if (rows < 0 || rows > INT_MAX)
        return sds_error_set(SDS_ERR_INPUT, "quadratic trace: %lld rows is out of range",
                             (long long)rows);
    if (rows == 0) return SDS_OK; // rows is the same on every rank: no collective is skipped
    const int64_t n = g->n, nb = g->nb, mloc = g->mloc, nloc = g->nloc, lld = g->lld;
    float *dr = sds_malloc((size_t)(rows * mloc) * sizeof(float), "the quadratic trace");
    float *dc = sds_malloc((size_t)(rows * nloc) * sizeof(float), "the quadratic trace");
    float *tile = sds_malloc((size_t)(nb * nb) * sizeof(float), "the quadratic trace");
    int rc = dr && dc && tile ? SDS_OK : SDS_ERR_IO;

    // Global bounds for the scale: max |H| over the upper triangle, max over columns of |D_j|^2
    // (>= every |(D^T D)_ij| but for rounding). Each figure is computed by the same loop
    // whichever rank computes it, and maxima are exact, so the scale is the same at any grid.
    double bounds[2] = {0.0, 0.0}; // max of 2 |H_ij| (i < j) and |diag_j|; max |D_j|^2
    if (rc == SDS_OK) {
        int bad = 0;
        gather_panels(D, rows, n, nb, g->nprow, g->myrow, mloc, dr);
        gather_panels(D, rows, n, nb, g->npcol, g->mycol, nloc, dc);
        for (int64_t jl = 0; jl < nloc; jl++) {
            const int64_t jl0 = jl - jl % nb, w = block_width(jl0, nloc, nb);
            const float *x = dc + jl0 * rows + (jl - jl0);
            double s = 0.0;
            for (int64_t r = 0; r < rows; r++) s += (double)x[r * w] * (double)x[r * w];
            bad |= !isfinite(s);
            if (s > bounds[1]) bounds[1] = s;
            const int64_t p = rows_below(g, sds_dist_grid_col_global(g, jl)); // strict upper
            for (int64_t il = 0; il < p; il++) {
                const double a = 2.0 * fabs((double)A[jl * lld + il]);
                bad |= !isfinite(a);
                if (a > bounds[0]) bounds[0] = a;
            }
        }
        for (int64_t j = 0; j < n; j++) {
            const double a = fabs((double)diag[j]);
            bad |= !isfinite(a);
            if (a > bounds[0]) bounds[0] = a;
        }
        if (bad)
            rc = sds_error_set(SDS_ERR_NUMERIC, "quadratic trace: an entry of H, of its diagonal "
                                                "or of D is not finite");
    }
    rc = sds_agree_quiet(g->comm, rc, NULL);
    if (rc != SDS_OK) {
        free(dr);
        free(dc);
        free(tile);
        return rc;
    }
    MPI_Allreduce(MPI_IN_PLACE, bounds, 2, MPI_DOUBLE, MPI_MAX, g->comm);

    // Every term |H_ij (D^T D)_ij| (x2 off the diagonal) < B = bounds[0] * 2 bounds[1] (the 2
    // for the rounding of the fp32 dot products). Scaled by 2^k so that B 2^k < limit / 2: the
    // n (n + 1) / 2 terms then stay within the exact sums' range, on the finest grid that
    // allows. Powers of two scale exactly.
    const int64_t terms = n * (n + 1) / 2;
    const double limit = sds_xsum_limit(terms);
    int k = 0;
    const double B = bounds[0] * 2.0 * bounds[1];
    if (B > 0.0) {
        int e;
        frexp(B, &e); // B < 2^e
        k = ilogb(limit) - 1 - e;
    }
    sds_xsum_t acc = 0;
    int bad = 0;
    for (int64_t jl0 = 0; jl0 < nloc; jl0 += nb) {
        const int64_t wj = block_width(jl0, nloc, nb);
        const int64_t j0 = sds_dist_grid_col_global(g, jl0);
        for (int64_t il0 = 0; il0 < mloc; il0 += nb) {
            const int64_t i0 = sds_dist_grid_row_global(g, il0);
            if (i0 > j0) break;
            const int64_t wi = block_width(il0, mloc, nb);
            cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)wi, (int)wj, (int)rows, 1.0f,
                        dr + il0 * rows, (int)wi, dc + jl0 * rows, (int)wj, 0.0f, tile, (int)nb);
            for (int64_t c = 0; c < wj; c++) {
                const int64_t r = i0 < j0 || c + 1 > wi ? wi : c + 1;
                const float *gc = tile + c * nb, *ac = A + (jl0 + c) * lld + il0;
                for (int64_t i = 0; i < r; i++) {
                    // float x float is exact in double, and so are 2x and the scaling
                    double v = i0 + i == j0 + c ? (double)diag[j0 + c] * (double)gc[i]
                                                : 2.0 * (double)ac[i] * (double)gc[i];
                    v = ldexp(v, k);
                    bad |= sds_xsum_add_f64(&acc, &v, 1, limit);
                }
            }
        }
    }
    if (bad)
        rc = sds_error_set(SDS_ERR_NUMERIC,
                           "quadratic trace: a term reached the exact sums' limit %.3g "
                           "(scaled by 2^%d)",
                           limit, k);
    free(dr);
    free(dc);
    free(tile);
    rc = sds_agree_quiet(g->comm, rc, NULL);
    if (rc != SDS_OK) return rc;
    sds_xsum_allreduce(g->comm, &acc, 1);
    double sum;
    sds_xsum_to_f64(&acc, &sum, 1);
    *out = ldexp(sum, -k);
    return SDS_OK;
}

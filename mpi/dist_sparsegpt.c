#include "dist_sparsegpt.h"

#include "agree.h"

#include "dist_tiles.h"
#include "sds_error.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// BLACS, C interface (Debian's libscalapack-openmpi exports these names).
extern int Csys2blacs_handle(MPI_Comm comm);
extern void Cfree_blacs_system_handle(int handle);
extern void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
extern void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int ctxt);
// ScaLAPACK tools and PBLAS (column-major; descriptors of 9 ints; 1-based ia, ja). The
// trailing size_t of the Fortran routines is gfortran's hidden length of `uplo`.
extern int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc,
                   const int *nprocs);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
                      const int *irsrc, const int *icsrc, const int *ictxt, const int *lld,
                      int *info);
extern void pspotrf_(const char *uplo, const int *n, float *a, const int *ia, const int *ja,
                     const int *desca, int *info, size_t uplo_len);
extern void pspotri_(const char *uplo, const int *n, float *a, const int *ia, const int *ja,
                     const int *desca, int *info, size_t uplo_len);
// sub(C) (m, n) := beta * sub(C) + alpha * sub(A)^T, sub(A) (n, m).
extern void pstran_(const int *m, const int *n, const float *alpha, const float *a, const int *ia,
                    const int *ja, const int *desca, const float *beta, float *c, const int *ic,
                    const int *jc, const int *descc);

// ---- agreement without printing: sds_agree_quiet (mpi/agree.h) ----------------------------

static int agree_quiet(MPI_Comm comm, int local_code) {
    return sds_agree_quiet(comm, local_code, NULL);
}

// ---- allocations, counted ----------------------------------------------------------------

typedef struct {
    int64_t cur, peak, limit; // bytes held now, at most, allowed (0 = no limit)
} mem_track;

static void *mem_get(mem_track *m, int64_t bytes, const char *what) {
    if (m->limit > 0 && m->cur + bytes > m->limit) {
        sds_error_set(SDS_ERR_IO, "out of memory allocating %lld bytes for %s (limit %lld bytes)",
                      (long long)bytes, what, (long long)m->limit);
        return NULL;
    }
    void *p = sds_malloc((size_t)bytes, what);
    if (p) {
        m->cur += bytes;
        if (m->cur > m->peak) m->peak = m->cur;
    }
    return p;
}

static void mem_put(mem_track *m, void *p, int64_t bytes) {
    if (!p) return;
    free(p);
    m->cur -= bytes;
}

// ---- 1-D block-cyclic index arithmetic (blocks of nb over P processes, source 0) -----------

static int64_t bc_local(int64_t g, int64_t nb, int P) {
    return (g / (nb * P)) * nb + g % nb;
}

static int64_t bc_global(int64_t l, int64_t nb, int P, int p) {
    return ((l / nb) * P + p) * nb + l % nb;
}

// Indices below n owned by process p (numroc with source 0).
static int64_t bc_count(int64_t n, int64_t nb, int P, int p) {
    const int64_t blocks = (n + nb - 1) / nb;
    if (p >= blocks) return 0;
    int64_t mine = (blocks - 1 - p) / P + 1; // blocks p, p + P, ... below `blocks`
    int64_t count = mine * nb;
    if ((blocks - 1) % P == p) count -= blocks * nb - n; // the last block is short
    return count;
}

// First block at or after block a / nb that process p owns.
static int64_t bc_first_block(int64_t a, int64_t nb, int P, int p) {
    const int64_t b0 = a / nb;
    return b0 + (((p - b0 % P) % P) + P) % P;
}

int64_t sds_dist_grid_row_global(const sds_dist_grid *g, int64_t il) {
    return bc_global(il, g->nb, g->nprow, g->myrow);
}

int64_t sds_dist_grid_col_global(const sds_dist_grid *g, int64_t jl) {
    return bc_global(jl, g->nb, g->npcol, g->mycol);
}

// ---- the grid ----------------------------------------------------------------------------

// Grids alive per BLACS system handle (Csys2blacs_handle returns one handle per communicator).
enum { SDS_DIST_MAX_HANDLES = 256 };
static int handle_refs[SDS_DIST_MAX_HANDLES];

int sds_dist_grid_init(sds_dist_grid *g, MPI_Comm comm, int64_t n, int nb) {
    memset(g, 0, sizeof *g);
    g->handle = -1;
    g->ctxt = -1;
    g->comm = comm;
    MPI_Comm_rank(comm, &g->rank);
    MPI_Comm_size(comm, &g->size);
    if (nb == 0) nb = SDS_DIST_NB;
    if (n < 1 || n > INT_MAX || nb < 1)
        return sds_error_set(SDS_ERR_INPUT,
                             "SparseGPT: a (%lld, %lld) matrix in blocks of %d "
                             "cannot be distributed",
                             (long long)n, (long long)n, nb);
    g->n = n;
    g->nb = nb;
    g->nprow = 1;
    for (int d = 1; (int64_t)d * d <= g->size; d++)
        if (g->size % d == 0) g->nprow = d;
    g->npcol = g->size / g->nprow;
    g->prow = sds_malloc((size_t)g->size * sizeof(int), "the BLACS grid places");
    g->pcol = sds_malloc((size_t)g->size * sizeof(int), "the BLACS grid places");
    int rc = agree_quiet(comm, g->prow && g->pcol ? SDS_OK : SDS_ERR_IO);
    if (rc != SDS_OK) {
        sds_dist_grid_free(g);
        return rc;
    }
    g->handle = Csys2blacs_handle(comm);
    if (g->handle >= 0 && g->handle < SDS_DIST_MAX_HANDLES) handle_refs[g->handle]++;
    g->ctxt = g->handle;
    Cblacs_gridinit(&g->ctxt, "Row", g->nprow, g->npcol);
    int pr = 0, pc = 0;
    Cblacs_gridinfo(g->ctxt, &pr, &pc, &g->myrow, &g->mycol);
    SDS_ASSERT(pr == g->nprow && pc == g->npcol && g->myrow >= 0 && g->mycol >= 0);
    MPI_Allgather(&g->myrow, 1, MPI_INT, g->prow, 1, MPI_INT, comm);
    MPI_Allgather(&g->mycol, 1, MPI_INT, g->pcol, 1, MPI_INT, comm);
    g->mloc = bc_count(n, nb, g->nprow, g->myrow);
    g->nloc = bc_count(n, nb, g->npcol, g->mycol);
    const int ni = (int)n, zero = 0;
    SDS_ASSERT(g->mloc == numroc_(&ni, &nb, &g->myrow, &zero, &g->nprow));
    g->lld = g->mloc > 1 ? (int)g->mloc : 1;
    int info = 0;
    descinit_(g->desc, &ni, &ni, &nb, &nb, &zero, &zero, &g->ctxt, &g->lld, &info);
    SDS_ASSERT(info == 0);
    return SDS_OK;
}

void sds_dist_grid_free(sds_dist_grid *g) {
    if (g->ctxt >= 0) Cblacs_gridexit(g->ctxt);
    // (BLACS gives every grid of one communicator the same system handle: freed with the last)
    if (g->handle >= 0 && (g->handle >= SDS_DIST_MAX_HANDLES || --handle_refs[g->handle] == 0))
        Cfree_blacs_system_handle(g->handle);
    free(g->prow);
    free(g->pcol);
    g->prow = g->pcol = NULL;
    g->ctxt = g->handle = -1;
}

// ---- memory bound ------------------------------------------------------------------------

static int64_t slab_rows(const sds_dist_grid *g) {
    return (int64_t)g->nprow * g->nb;
}

// Rows of the largest local piece of a block column of the transpose (see restore_lower).
static int64_t transpose_rows(const sds_dist_grid *g) {
    const int64_t blocks = (g->n + g->nb - 1) / g->nb;
    return ((blocks + g->nprow - 1) / g->nprow) * g->nb;
}

int64_t sds_dist_sparsegpt_bound(const sds_dist_grid *g, int64_t rows_global, sds_pattern p,
                                 int64_t blocksize, int full_h) {
    const int64_t n = g->n, bw = blocksize < n ? blocksize : n;
    int64_t bytes = 5 * n + 16 * (int64_t)g->size + 64;
    if (full_h) bytes += 4 * g->mloc * g->nloc;
    const int64_t factor = full_h ? 0 : 4 * transpose_rows(g) * g->nb;
    int64_t sweep = 0;
    if (g->size > 1) {
        sweep = 4 * bw * (n + slab_rows(g) + g->nb);
        if (g->rank == 0 && p.kind == SDS_PATTERN_UNSTRUCTURED) sweep += 4 * rows_global * bw;
    }
    return bytes + (factor > sweep ? factor : sweep);
}

// ---- steps 2-3: damping and the factorisations on the grid ---------------------------------

typedef struct {
    const sds_dist_grid *g;
    const char *name;
    float *A;          // (local) this rank's piece of the matrix
    const float *H;    // (global) the caller's whole H, or NULL: restore from A's upper triangle
    const float *diag; // (n) diag(H) with dead inputs set to 1
    float *T;          // (local) one block column of the transpose, when H is NULL
    int tiles;         // 1: mpi/dist_tiles.h's tile algorithms instead of ScaLAPACK's
    int *fail_rank;    // the lowest MPI_COMM_WORLD rank whose part reported the last failure
} factor_ctx;

// Lower triangle of the global matrix from its strict upper one, one block column at a time:
// T (n - j, jb) := A(j : j + jb, j : n)^T with PBLAS, T aligned with A(j :, j :) so that its
// local rows are A's local rows from j on; then the strict lower part is copied into A.
static void restore_lower(const factor_ctx *f) {
    const sds_dist_grid *g = f->g;
    const float one = 1.0f, zero = 0.0f;
    const int ione = 1;
    for (int64_t j = 0; j < g->n; j += g->nb) {
        const int m = (int)(g->n - j), jb = (int)(g->n - j < g->nb ? g->n - j : g->nb);
        const int rsrc = (int)((j / g->nb) % g->nprow), csrc = (int)((j / g->nb) % g->npcol);
        const int mloc_t = numroc_(&m, &g->nb, &g->myrow, &rsrc, &g->nprow);
        const int lld_t = mloc_t > 1 ? mloc_t : 1;
        int desc_t[9], info = 0;
        descinit_(desc_t, &m, &jb, &g->nb, &g->nb, &rsrc, &csrc, &g->ctxt, &lld_t, &info);
        SDS_ASSERT(info == 0 && mloc_t <= transpose_rows(g));
        memset(f->T, 0, (size_t)lld_t * (size_t)jb * sizeof(float));
        const int ja = (int)j + 1;
        pstran_(&m, &jb, &one, f->A, &ja, &ja, g->desc, &zero, f->T, &ione, &ione, desc_t);
        if (g->mycol != csrc) continue;
        const int64_t row0 = bc_count(j, g->nb, g->nprow, g->myrow); // A's local rows above j
        const int64_t col0 = bc_local(j, g->nb, g->npcol);
        for (int64_t c = 0; c < jb; c++) {
            float *a = f->A + (col0 + c) * g->lld + row0;
            const float *t = f->T + c * lld_t;
            for (int64_t i = 0; i < mloc_t; i++) {
                const int64_t r =
                    bc_global(i, g->nb, g->nprow, (g->myrow - rsrc + g->nprow) % g->nprow);
                if (r > c) a[i] = t[i];
            }
        }
    }
}

// The damped matrix in A: lower triangle from the source, diagonal diag + damp. The strict
// upper triangle is left alone when restoring from A itself (it is the source).
static void fill_damped(const factor_ctx *f, float damp) {
    const sds_dist_grid *g = f->g;
    const int64_t n = g->n;
    if (f->H) {
        // A(i, j) = H[max(i, j)][min(i, j)]: the row-major lower triangle, as the serial.
        for (int64_t jl = 0; jl < g->nloc; jl++) {
            const int64_t j = sds_dist_grid_col_global(g, jl);
            float *a = f->A + jl * g->lld;
            for (int64_t il = 0; il < g->mloc; il++) {
                const int64_t i = sds_dist_grid_row_global(g, il);
                a[il] = i >= j ? f->H[i * n + j] : f->H[j * n + i];
            }
        }
    } else {
        restore_lower(f);
    }
    for (int64_t jl = 0; jl < g->nloc; jl++) {
        const int64_t j = sds_dist_grid_col_global(g, jl);
        if ((j / g->nb) % g->nprow != g->myrow) continue;
        f->A[jl * g->lld + bc_local(j, g->nb, g->nprow)] = f->diag[j] + damp;
    }
}

// (collective) info agreed over comm: the most negative value if any is negative (an
// argument error), else the largest.
static int agree_info(MPI_Comm comm, int info) {
    int in[2] = {info, -info}, out[2];
    MPI_Allreduce(in, out, 2, MPI_INT, MPI_MAX, comm);
    return out[1] > 0 ? -out[1] : out[0];
}

// (collective) info agreed over comm as agree_info; *who gets the lowest MPI_COMM_WORLD rank
// whose own info was not 0 (named in the message: the rank whose part failed).
static int agree_info_who(MPI_Comm comm, int info, int *who) {
    int wrank;
    MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
    const int cand = info != 0 ? wrank : INT_MAX;
    MPI_Allreduce(&cand, who, 1, MPI_INT, MPI_MIN, comm);
    return agree_info(comm, info);
}

static int factor_once(const factor_ctx *f, float damp) {
    const sds_dist_grid *g = f->g;
    const int n = (int)g->n, ione = 1;
    fill_damped(f, damp);
    int info = 0, wrank;
    MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
    // test hook (src/sds_error.h): this rank's part of every attempt fails
    info = agree_info_who(g->comm, sds_test_fail("cholesky", wrank) ? 1 : 0, f->fail_rank);
    if (info != 0) return info;
    if (f->tiles) return sds_dist_tiles_inv_chol(g, f->A, f->fail_rank);
    pspotrf_("L", &n, f->A, &ione, &ione, g->desc, &info, 1);
    info = agree_info_who(g->comm, info, f->fail_rank);
    if (info != 0) return info;
    pspotri_("L", &n, f->A, &ione, &ione, g->desc, &info, 1);
    info = agree_info_who(g->comm, info, f->fail_rank);
    if (info != 0) return info;
    pspotrf_("L", &n, f->A, &ione, &ione, g->desc, &info, 1);
    return agree_info_who(g->comm, info, f->fail_rank);
}

// (collective) Steps 2-3 with the serial's retries; mean is mean(diag) in double.
static int factor(const factor_ctx *f, double mean, double percdamp, int32_t max_tries,
                  sds_sparsegpt_info *sg) {
    int rc = -1;
    int32_t tries = 0;
    double pd = percdamp;
    for (; tries < max_tries; tries++, pd *= SDS_SPARSEGPT_DAMP_GROW) {
        rc = factor_once(f, (float)(pd * mean));
        if (rc <= 0) break; // 0: done; < 0: an argument error, a bug
    }
    if (rc == SDS_DIST_TILES_NO_MEMORY) return SDS_ERR_IO; // (the message is recorded)
    if (rc == SDS_DIST_TILES_TOO_LARGE) return SDS_ERR_INPUT;
    if (rc < 0)
        return sds_error_set(SDS_ERR_INTERNAL, "SparseGPT on %s: %s rejected argument %d", f->name,
                             f->tiles ? "LAPACK" : "ScaLAPACK", -rc);
    if (rc > 0)
        return sds_error_set(SDS_ERR_NUMERIC,
                             "SparseGPT on %s: Cholesky factorisation of the damped Hessian "
                             "(%lld columns) failed %d times, last with damping %g x mean(diag H) "
                             "(on rank %d)",
                             f->name, (long long)f->g->n, (int)tries, pd / SDS_SPARSEGPT_DAMP_GROW,
                             *f->fail_rank);
    sg->percdamp = pd;
    sg->damp = pd * mean;
    sg->tries = tries + 1;
    return SDS_OK;
}

// ---- step 4: the sweep's callbacks ----------------------------------------------------------

typedef struct {
    const sds_dist_grid *g;
    const float *A;         // (local) the factor's piece: lower triangle = U^T
    float *panel;           // (Bw x n) the assembled panel, G > 1
    float *slab;            // (Bw x nprow * nb) one slab from every rank
    float *pack;            // (Bw x nb) this rank's share of a slab
    int *counts, *displs;   // (G) per-rank floats of a slab, or of a block's scores
    const int64_t *rows_of; // (G) rows_local of every rank
    float *scores;          // (rows_global x Bw) rank 0's gathered scores, or NULL
    int synced;             // a failure was seen by every rank in one collective
    int peer_failed;        // this rank stopped because another one failed
} sweep_ctx;

// Every callback starts here: one all-reduce that tells whether a rank has left the sweep on a
// failure of its own (it then calls the same all-reduce once, from finish_sweep).
static int sweep_enter(sweep_ctx *c) {
    int mine = 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, c->g->comm);
    if (!any) return SDS_OK;
    c->synced = 1;
    c->peer_failed = 1;
    return SDS_ERR_INTERNAL; // replaced by the failing rank's code when agreed
}

// Visits the entries A(r, c) of grid place (pr, pc)'s piece with c in [c1, c2), r in [r1, r2),
// columns outer, rows inner, both ascending, in runs of consecutive rows: copies each run
// between `buf` (packed, in visit order) and the panel (row c - i1, columns r - i1; ld), in the
// direction `to_panel` says (and from A when `A` is not NULL). Returns the entries visited.
static int64_t slab_visit(const sds_dist_grid *g, int pr, int pc, int64_t c1, int64_t c2,
                          int64_t r1, int64_t r2, const float *A, float *buf, float *panel,
                          int64_t ld, int64_t i1) {
    const int64_t nb = g->nb;
    int64_t k = 0;
    for (int64_t cb = bc_first_block(c1, nb, g->npcol, pc); cb * nb < c2; cb += g->npcol) {
        const int64_t clo = c1 > cb * nb ? c1 : cb * nb,
                      chi = c2 < cb * nb + nb ? c2 : cb * nb + nb;
        for (int64_t c = clo; c < chi; c++) {
            for (int64_t rb = bc_first_block(r1, nb, g->nprow, pr); rb * nb < r2; rb += g->nprow) {
                const int64_t rlo = r1 > rb * nb ? r1 : rb * nb;
                const int64_t rhi = r2 < rb * nb + nb ? r2 : rb * nb + nb, len = rhi - rlo;
                if (A)
                    memcpy(buf + k,
                           A + bc_local(c, nb, g->npcol) * g->lld + bc_local(rlo, nb, g->nprow),
                           (size_t)len * sizeof(float));
                else if (panel)
                    memcpy(panel + (c - i1) * ld + (rlo - i1), buf + k,
                           (size_t)len * sizeof(float));
                k += len;
            }
        }
    }
    return k;
}

// U[i1:i2, i1:n] row-major = the column-major global A(i1:n, i1:i2) (U = L^T): gathered slab by
// slab of nprow * nb rows of A (each rank owns one block of rows of an aligned slab).
static int dist_panel(void *ctx, int64_t i1, int64_t i2, const float **panel, int64_t *ld) {
    sweep_ctx *c = ctx;
    SDS_TRY(sweep_enter(c));
    const sds_dist_grid *g = c->g;
    if (g->size == 1) { // the piece is the whole matrix: no copy
        *panel = c->A + i1 * g->lld + i1;
        *ld = g->lld;
        return SDS_OK;
    }
    const int64_t n = g->n, S = slab_rows(g), ldp = n - i1;
    for (int64_t a = i1, b; a < n; a = b) {
        b = (a / S + 1) * S < n ? (a / S + 1) * S : n;
        int off = 0;
        for (int q = 0; q < g->size; q++) {
            c->counts[q] =
                (int)slab_visit(g, g->prow[q], g->pcol[q], i1, i2, a, b, NULL, NULL, NULL, 0, i1);
            c->displs[q] = off;
            off += c->counts[q];
        }
        slab_visit(g, g->myrow, g->mycol, i1, i2, a, b, c->A, c->pack, NULL, 0, i1);
        MPI_Allgatherv(c->pack, c->counts[g->rank], MPI_FLOAT, c->slab, c->counts, c->displs,
                       MPI_FLOAT, g->comm);
        for (int q = 0; q < g->size; q++)
            slab_visit(g, g->prow[q], g->pcol[q], i1, i2, a, b, NULL, c->slab + c->displs[q],
                       c->panel, ldp, i1);
    }
    *panel = c->panel;
    *ld = ldp;
    return SDS_OK;
}

// The exact k-th smallest over every shard: gathered on rank 0 in rank order, radix select,
// broadcast. The k-th smallest value does not depend on the order, so it is the serial's.
static int dist_select(void *ctx, const float *scores_local, int64_t n_local, int64_t n_global,
                       int64_t k, float *value) {
    sweep_ctx *c = ctx;
    SDS_TRY(sweep_enter(c));
    const sds_dist_grid *g = c->g;
    if (g->size == 1) return sds_select_kth_local(NULL, scores_local, n_local, n_global, k, value);
    int64_t rows_global = 0;
    for (int q = 0; q < g->size; q++) rows_global += c->rows_of[q];
    const int64_t per_row = rows_global > 0 ? n_global / rows_global : 0;
    SDS_ASSERT(per_row * rows_global == n_global && n_local == c->rows_of[g->rank] * per_row);
    int off = 0;
    for (int q = 0; q < g->size; q++) {
        c->counts[q] = (int)(c->rows_of[q] * per_row);
        c->displs[q] = off;
        off += c->counts[q];
    }
    MPI_Gatherv(scores_local, (int)n_local, MPI_FLOAT, c->scores, c->counts, c->displs, MPI_FLOAT,
                0, g->comm);
    float v = 0.0f;
    if (g->rank == 0) v = sds_kth_smallest(c->scores, n_global, k);
    MPI_Bcast(&v, 1, MPI_FLOAT, 0, g->comm);
    *value = v;
    return SDS_OK;
}

// (collective) After sds_sparsegpt_sweep: a rank that failed on its own (say, out of memory
// before its first callback) meets the others' next sweep_enter here; when all succeeded this
// is one all-reduce more. Returns the code to agree on (SDS_OK where another rank failed).
static int finish_sweep(sweep_ctx *c, int rc) {
    if (!c->synced) {
        int mine = rc != SDS_OK, any = 0;
        MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, c->g->comm);
    }
    return c->peer_failed ? SDS_OK : rc;
}

// ---- the whole method ----------------------------------------------------------------------

// Local checks of the arguments; status code (message names the sublayer).
static int check_args(const sds_dist_grid *g, const char *name, const float *W_local,
                      int64_t rows_local, const int64_t *rows_of, int64_t rows_global,
                      sds_pattern p, const sds_dist_sparsegpt_opts *o) {
    const int64_t cols = g->n;
    int64_t sum = 0;
    for (int q = 0; q < g->size; q++) sum += rows_of[q];
    if (sum != rows_global || rows_local < 0 || rows_local > INT_MAX)
        return sds_error_set(SDS_ERR_INPUT,
                             "SparseGPT on %s: the row shards add up to %lld "
                             "rows, not %lld",
                             name, (long long)sum, (long long)rows_global);
    SDS_TRY(sds_pattern_check(p, rows_global, cols, name));
    if (o->blocksize < 1 || (p.kind == SDS_PATTERN_NM && o->blocksize % p.m != 0))
        return sds_error_set(SDS_ERR_USAGE,
                             "SparseGPT on %s: the block of %lld columns is not "
                             "a positive multiple of the pattern's group",
                             name, (long long)o->blocksize);
    if (o->max_tries < 1 || !(o->percdamp >= 0.0))
        return sds_error_set(SDS_ERR_USAGE, "SparseGPT on %s: damping %g with %d attempts", name,
                             o->percdamp, (int)o->max_tries);
    for (int64_t i = 0; i < rows_local * cols; i++)
        if (!isfinite(W_local[i]))
            return sds_error_set(SDS_ERR_INPUT,
                                 "SparseGPT on %s: the weight holds NaN or Inf "
                                 "(local row %lld, column %lld)",
                                 name, (long long)(i / cols), (long long)(i % cols));
    return SDS_OK;
}

// (collective) Step 4 on grid g with the factor in A: the sweep's buffers, the sweep, agreed.
static int sweep_run(const sds_dist_grid *g, const char *name, const float *A, float *W_local,
                     int64_t rows_local, int64_t rows_global, sds_pattern p,
                     const sds_dist_sparsegpt_opts *o, uint8_t *mask_local, const int64_t *rows_of,
                     int *counts, int *displs, mem_track *mem) {
    const int64_t n = g->n, bw = o->blocksize < n ? o->blocksize : n;
    const int64_t panel_bytes = g->size > 1 ? 4 * bw * n : 0;
    const int64_t slab_bytes = g->size > 1 ? 4 * bw * slab_rows(g) : 0;
    const int64_t pack_bytes = g->size > 1 ? 4 * bw * g->nb : 0;
    const int64_t scores_bytes = g->size > 1 && g->rank == 0 && p.kind == SDS_PATTERN_UNSTRUCTURED
                                     ? 4 * rows_global * bw
                                     : 0;
    float *panel = NULL, *slab = NULL, *pack = NULL, *scores = NULL;
    int lrc = SDS_OK;
    if (g->size > 1) {
        panel = mem_get(mem, panel_bytes, "the SparseGPT panel of U");
        slab = panel ? mem_get(mem, slab_bytes, "a slab of the SparseGPT panel") : NULL;
        pack = slab ? mem_get(mem, pack_bytes, "this rank's part of a slab") : NULL;
        if (pack && scores_bytes > 0)
            scores = mem_get(mem, scores_bytes, "the gathered SparseGPT block scores");
        if (!pack || (scores_bytes > 0 && !scores)) lrc = SDS_ERR_IO;
        if (lrc == SDS_OK && rows_global * bw > INT_MAX)
            lrc = sds_error_set(SDS_ERR_INPUT,
                                "SparseGPT on %s: %lld x %lld block scores are too many to "
                                "gather",
                                name, (long long)rows_global, (long long)bw);
    }
    int rc = agree_quiet(g->comm, lrc);
    if (rc == SDS_OK) {
        // A shard without rows still takes part; the sweep gets non-NULL pointers to nothing.
        float w_none = 0.0f;
        uint8_t m_none = 0;
        sweep_ctx c = {g, A, panel, slab, pack, counts, displs, rows_of, scores, 0, 0};
        rc = sds_sparsegpt_sweep(rows_local > 0 ? W_local : &w_none, rows_local, rows_global, n, p,
                                 o->blocksize, dist_panel, dist_select, &c,
                                 rows_local > 0 ? mask_local : &m_none);
        if (rc != SDS_OK && !c.peer_failed && !sds_error_message()[0])
            sds_error_set(rc, "SparseGPT on %s: the sweep failed", name);
        rc = agree_quiet(g->comm, finish_sweep(&c, rc));
    }
    mem_put(mem, scores, scores_bytes);
    mem_put(mem, pack, pack_bytes);
    mem_put(mem, slab, slab_bytes);
    mem_put(mem, panel, panel_bytes);
    return rc;
}

// (local) Step 1 on the whole diagonal (the same on every rank): dead inputs set to 1 and
// flagged, W_local's dead columns zeroed, mean(diag) in double; numeric error on a negative
// or non-finite entry.
static int dead_and_mean(const char *name, float *diag, uint8_t *dead, int64_t n, float *W_local,
                         int64_t rows_local, int64_t *ndead, double *mean) {
    *ndead = 0;
    for (int64_t j = 0; j < n; j++) {
        dead[j] = diag[j] == 0.0f;
        if (dead[j]) diag[j] = 1.0f;
        *ndead += dead[j];
    }
    if (*ndead > 0 && rows_local > 0) sds_sparsegpt_zero_dead(W_local, rows_local, n, dead);
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        sum += diag[j];
        if (!isfinite(diag[j]) || diag[j] < 0.0f)
            return sds_error_set(SDS_ERR_NUMERIC,
                                 "SparseGPT on %s: Hessian diagonal entry %lld is %g (expected "
                                 "finite >= 0: are the calibration activations finite?)",
                                 name, (long long)j, (double)diag[j]);
    }
    *mean = sum / (double)n;
    return SDS_OK;
}

// (collective) Every step on grid g. A is the (local) piece to factor in place; H the caller's
// whole H, or NULL: then A's upper triangle is the source. mem counts the caller's A too.
static int dist_run(const sds_dist_grid *g, const char *name, float *A, const float *H,
                    float *W_local, int64_t rows_local, int64_t rows_global, sds_pattern p,
                    const sds_dist_sparsegpt_opts *o, uint8_t *mask_local, mem_track *mem,
                    sds_dist_sparsegpt_info *info) {
    const int64_t n = g->n, G = g->size;
    const double t0 = MPI_Wtime();
    double t1 = t0;
    // Small tables first, agreed, so that the collectives below have their buffers.
    float *diag = mem_get(mem, 4 * n, "the Hessian diagonal");
    uint8_t *dead = diag ? mem_get(mem, n, "dead-input flags") : NULL;
    int64_t *rows_of = dead ? mem_get(mem, 8 * G, "the row shards") : NULL;
    int *counts = rows_of ? mem_get(mem, 4 * G, "gather counts") : NULL;
    int *displs = counts ? mem_get(mem, 4 * G, "gather offsets") : NULL;
    float *T = NULL;
    const int64_t t_bytes = H ? 0 : 4 * transpose_rows(g) * g->nb;
    int rc = agree_quiet(g->comm, displs ? SDS_OK : SDS_ERR_IO);
    if (rc == SDS_OK) {
        MPI_Allgather(&rows_local, 1, MPI_INT64_T, rows_of, 1, MPI_INT64_T, g->comm);
        rc = agree_quiet(g->comm,
                         check_args(g, name, W_local, rows_local, rows_of, rows_global, p, o));
    }
    if (rc == SDS_OK && H) {
        for (int64_t j = 0; j < n; j++) diag[j] = H[j * n + j];
    } else if (rc == SDS_OK) {
        // Each diagonal entry has one owner; the others add zeros, so the sum is exact.
        memset(diag, 0, (size_t)n * sizeof(float));
        for (int64_t jl = 0; jl < g->nloc; jl++) {
            const int64_t j = sds_dist_grid_col_global(g, jl);
            if ((j / g->nb) % g->nprow == g->myrow)
                diag[j] = A[jl * g->lld + bc_local(j, g->nb, g->nprow)];
        }
        MPI_Allreduce(MPI_IN_PLACE, diag, (int)n, MPI_FLOAT, MPI_SUM, g->comm);
    }
    int64_t ndead = 0;
    double mean = 0.0;
    if (rc == SDS_OK) {
        int lrc = dead_and_mean(name, diag, dead, n, W_local, rows_local, &ndead, &mean);
        if (lrc == SDS_OK && t_bytes > 0) {
            T = mem_get(mem, t_bytes, "a block column of the transposed Hessian");
            if (!T) lrc = SDS_ERR_IO;
        }
        rc = agree_quiet(g->comm, lrc);
    }
    // the tile algorithms' workspace (they allocate it themselves): counted, and refused over
    // the limit like this module's own allocations
    const int64_t tiles_bytes = o->tiles ? sds_dist_tiles_bytes(g) : 0;
    int64_t tiles_held = 0;
    if (rc == SDS_OK && tiles_bytes > 0) {
        int lrc = SDS_OK;
        if (mem->limit > 0 && mem->cur + tiles_bytes > mem->limit)
            lrc = sds_error_set(SDS_ERR_IO,
                                "out of memory allocating %lld bytes for the tile algorithms' "
                                "panels (limit %lld bytes)",
                                (long long)tiles_bytes, (long long)mem->limit);
        rc = agree_quiet(g->comm, lrc);
        if (rc == SDS_OK) {
            mem->cur += tiles_bytes;
            if (mem->cur > mem->peak) mem->peak = mem->cur;
            tiles_held = tiles_bytes;
        }
    }
    if (rc == SDS_OK) { // steps 2-3
        int fail_rank = -1;
        const factor_ctx f = {g, name, A, H, diag, T, o->tiles, &fail_rank};
        rc = agree_quiet(g->comm, factor(&f, mean, o->percdamp, o->max_tries, &info->sg));
        info->sg.dead = ndead;
    }
    mem_put(mem, T, t_bytes);
    mem->cur -= tiles_held;
    t1 = MPI_Wtime();
    if (rc == SDS_OK)
        rc = sweep_run(g, name, A, W_local, rows_local, rows_global, p, o, mask_local, rows_of,
                       counts, displs, mem);
    info->nprow = g->nprow;
    info->npcol = g->npcol;
    info->nb = g->nb;
    info->seconds_factor = t1 - t0;
    info->seconds_sweep = MPI_Wtime() - t1;
    mem_put(mem, displs, 4 * G);
    mem_put(mem, counts, 4 * G);
    mem_put(mem, rows_of, 8 * G);
    mem_put(mem, dead, n);
    mem_put(mem, diag, 4 * n);
    return rc;
}

sds_dist_sparsegpt_opts sds_dist_sparsegpt_defaults(void) {
    sds_dist_sparsegpt_opts o = {
        SDS_SPARSEGPT_BLOCK, SDS_SPARSEGPT_PERCDAMP, SDS_SPARSEGPT_MAX_TRIES, SDS_DIST_NB, 0, 0};
    return o;
}

int sds_dist_sparsegpt_grid(const sds_dist_grid *g, const char *name, float *A_local,
                            float *W_local, int64_t rows_local, int64_t rows_global, sds_pattern p,
                            const sds_dist_sparsegpt_opts *opts, uint8_t *mask_local,
                            sds_dist_sparsegpt_info *info) {
    const sds_dist_sparsegpt_opts o = opts ? *opts : sds_dist_sparsegpt_defaults();
    sds_dist_sparsegpt_info local_info;
    if (!info) info = &local_info;
    memset(info, 0, sizeof *info);
    mem_track mem = {0, 0, o.mem_limit};
    int rc = dist_run(g, name, A_local, NULL, W_local, rows_local, rows_global, p, &o, mask_local,
                      &mem, info);
    info->peak_bytes = mem.peak;
    // (the tiles' panels come on top of the factorisation's part of the bound: over-counted
    // against the sweep's, which is never held at the same time)
    info->bound_bytes = sds_dist_sparsegpt_bound(g, rows_global, p, o.blocksize, 0) +
                        (o.tiles ? sds_dist_tiles_bytes(g) : 0);
    return rc;
}

int sds_dist_sparsegpt(MPI_Comm comm, const char *name, const float *H, int64_t cols,
                       float *W_local, int64_t rows_local, int64_t rows_global, sds_pattern p,
                       const sds_dist_sparsegpt_opts *opts, uint8_t *mask_local,
                       sds_dist_sparsegpt_info *info) {
    const sds_dist_sparsegpt_opts o = opts ? *opts : sds_dist_sparsegpt_defaults();
    sds_dist_sparsegpt_info local_info;
    if (!info) info = &local_info;
    memset(info, 0, sizeof *info);
    sds_dist_grid g;
    int rc = sds_dist_grid_init(&g, comm, cols, o.nb);
    if (rc != SDS_OK) return rc;
    mem_track mem = {0, 0, o.mem_limit};
    const int64_t a_bytes = 4 * g.mloc * g.nloc;
    float *A = mem_get(&mem, a_bytes, "this rank's block-cyclic piece of U");
    rc = agree_quiet(comm, A ? SDS_OK : SDS_ERR_IO);
    if (rc == SDS_OK)
        rc = dist_run(&g, name, A, H, W_local, rows_local, rows_global, p, &o, mask_local, &mem,
                      info);
    mem_put(&mem, A, a_bytes);
    info->peak_bytes = mem.peak;
    info->bound_bytes = sds_dist_sparsegpt_bound(&g, rows_global, p, o.blocksize, 1);
    sds_dist_grid_free(&g);
    return rc;
}

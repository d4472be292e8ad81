#include "dist_tiles.h"

#include "agree.h"

#include "sds_error.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

// LAPACK (Fortran, column-major); the trailing size_t are gfortran's hidden lengths of the
// character arguments.
extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);
extern void strtri_(const char *uplo, const char *diag, const int *n, float *a, const int *lda,
                    int *info, size_t uplo_len, size_t diag_len);
extern void slauum_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);

typedef struct {
    const sds_dist_grid *g;
    float *A;      // (local) the caller's piece
    int64_t n;     // order of the matrix
    int nb, nt;    // tile size, tiles per row and column
    int wrank;     // this rank in MPI_COMM_WORLD, for fail_rank
    float *panel;  // (bw * n) one step's gathered tiles, each contiguous (ld = its rows)
    float *diag;   // (bw * bw) a diagonal tile, contiguous (ld = its rows)
    int64_t *off;  // (nt) where tile t of the current panel starts in `panel`
    int *counts;   // (G) floats each rank contributes to the panel
    int *displs;   // (G) where each rank's contribution starts
    int *cursor;   // (G) scratch while the offsets are laid out
    int *place;    // (G) rank of grid place (pr, pc) at pr * npcol + pc
    int fail_rank; // (agreed) the world rank whose LAPACK call failed, -1 if none
} tiles;

static int64_t panel_width(const sds_dist_grid *g) {
    return g->nb < g->n ? g->nb : g->n;
}

static int tile_count(const sds_dist_grid *g) {
    return (int)((g->n + g->nb - 1) / g->nb);
}

int64_t sds_dist_tiles_bytes(const sds_dist_grid *g) {
    const int64_t bw = panel_width(g);
    return 4 * bw * g->n + 4 * bw * bw + 8 * (int64_t)tile_count(g) + 16 * (int64_t)g->size;
}

// Rows (= columns) of tile row t: nb, the last one ragged.
static int tsize(const tiles *t, int i) {
    return i < t->nt - 1 ? t->nb : (int)(t->n - (int64_t)(t->nt - 1) * t->nb);
}

static int is_mine(const tiles *t, int i, int j) {
    return i % t->g->nprow == t->g->myrow && j % t->g->npcol == t->g->mycol;
}

static int owner(const tiles *t, int i, int j) {
    return t->place[(i % t->g->nprow) * t->g->npcol + j % t->g->npcol];
}

// Tile (i, j) in this rank's piece (it must own it).
static float *tile(const tiles *t, int i, int j) {
    const sds_dist_grid *g = t->g;
    return t->A + (int64_t)(j / g->npcol) * g->nb * g->lld + (int64_t)(i / g->nprow) * g->nb;
}

// The first index >= lo of process p's blocks (index mod P == p).
static int first_own(int lo, int p, int P) {
    return lo + ((p - lo % P) % P + P) % P;
}

// dst (rows x cols, ld rows) := src (ld lds).
static void copy_tile(float *dst, const float *src, int lds, int rows, int cols) {
    for (int c = 0; c < cols; c++)
        memcpy(dst + (int64_t)c * rows, src + (int64_t)c * lds, (size_t)rows * sizeof(float));
}

// dst (b x b, ld b) := the lower triangle of src (ld lds), zeros above: LAPACK's 'L' routines
// do not read the strict upper part, but the copy must not depend on what the caller keeps
// there (the same bits in every grid's copies).
static void copy_lower(float *dst, const float *src, int lds, int b) {
    for (int c = 0; c < b; c++) {
        memset(dst + (int64_t)c * b, 0, (size_t)c * sizeof(float));
        memcpy(dst + (int64_t)c * b + c, src + (int64_t)c * lds + c,
               (size_t)(b - c) * sizeof(float));
    }
}

// The lower triangle of src (b x b, ld b) into dst (ld ldd); dst's strict upper part kept.
static void put_lower(float *dst, int ldd, const float *src, int b) {
    for (int c = 0; c < b; c++)
        memcpy(dst + (int64_t)c * ldd + c, src + (int64_t)c * b + c,
               (size_t)(b - c) * sizeof(float));
}

// (collective) A local LAPACK info (0 where this rank made no call) agreed: the failure of the
// lowest world rank wins (one rank calls per step, so there is at most one). col0 turns a
// positive local info into a global column. Returns 0 to go on, else the info to stop with.
static int agree_info(tiles *t, int info, int64_t col0) {
    struct {
        int rank, info;
    } in = {info != 0 ? t->wrank : INT_MAX, info}, out;
    MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MINLOC, t->g->comm);
    if (out.rank == INT_MAX) return 0;
    t->fail_rank = out.rank;
    return out.info < 0 ? out.info : (int)(col0 + out.info);
}

// (collective) Gathers, to every rank, the column-k tiles (m, k), c0 <= m < c1, and the row-k
// tiles (k, j), r0 <= j < r1 (the two ranges disjoint), at their current values. Rank q
// contributes its own tiles in that order (column tiles by m, then row tiles by j); every rank
// lays out the same counts and offsets. Tile u of either range is at panel + off[u],
// contiguous: (m, k) b_m x b_k, (k, j) b_k x b_j. A diagonal tile (k, k) comes as its lower
// triangle with zeros above (copy_lower).
static void gather(tiles *t, int k, int c0, int c1, int r0, int r1) {
    const sds_dist_grid *g = t->g;
    const int bk = tsize(t, k);
    memset(t->counts, 0, (size_t)g->size * sizeof(int));
    for (int m = c0; m < c1; m++) t->counts[owner(t, m, k)] += tsize(t, m) * bk;
    for (int j = r0; j < r1; j++) t->counts[owner(t, k, j)] += bk * tsize(t, j);
    int pos = 0;
    for (int q = 0; q < g->size; q++) {
        t->displs[q] = t->cursor[q] = pos;
        pos += t->counts[q];
    }
    for (int m = c0; m < c1; m++) {
        const int q = owner(t, m, k), bm = tsize(t, m);
        t->off[m] = t->cursor[q];
        t->cursor[q] += bm * bk;
        if (q == g->rank) copy_tile(t->panel + t->off[m], tile(t, m, k), g->lld, bm, bk);
    }
    for (int j = r0; j < r1; j++) {
        const int q = owner(t, k, j), bj = tsize(t, j);
        t->off[j] = t->cursor[q];
        t->cursor[q] += bk * bj;
        if (q != g->rank) continue;
        if (j == k)
            copy_lower(t->panel + t->off[j], tile(t, k, k), g->lld, bk);
        else
            copy_tile(t->panel + t->off[j], tile(t, k, j), g->lld, bk, bj);
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, t->panel, t->counts, t->displs, MPI_FLOAT,
                   g->comm);
}

// (collective) Tile (k, k)'s lower triangle from its owner into t->diag on every rank.
static void bcast_diag(tiles *t, int k) {
    const int bk = tsize(t, k);
    if (is_mine(t, k, k)) copy_lower(t->diag, tile(t, k, k), t->g->lld, bk);
    MPI_Bcast(t->diag, bk * bk, MPI_FLOAT, owner(t, k, k), t->g->comm);
}

// Step 1 / 4: A = L L^T, L into the lower triangle. Tile (i, j), i >= j, receives the updates
// of steps k = 0 .. j - 1 in that order, then its own step's spotrf (i = j) or strsm.
static int potrf(tiles *t) {
    const sds_dist_grid *g = t->g;
    const int nt = t->nt, P = g->nprow, Q = g->npcol;
    for (int k = 0; k < nt; k++) {
        const int bk = tsize(t, k);
        int info = 0;
        if (is_mine(t, k, k)) {
            copy_lower(t->diag, tile(t, k, k), g->lld, bk);
            spotrf_("L", &bk, t->diag, &bk, &info, 1);
        }
        const int agreed = agree_info(t, info, (int64_t)k * t->nb);
        if (agreed != 0) return agreed;
        if (is_mine(t, k, k)) put_lower(tile(t, k, k), g->lld, t->diag, bk);
        if (k == nt - 1) break;
        MPI_Bcast(t->diag, bk * bk, MPI_FLOAT, owner(t, k, k), g->comm);
        if (k % Q == g->mycol)
            for (int m = first_own(k + 1, g->myrow, P); m < nt; m += P)
                cblas_strsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit,
                            tsize(t, m), bk, 1.0f, t->diag, bk, tile(t, m, k), g->lld);
        gather(t, k, k + 1, nt, 0, 0);
        for (int j = first_own(k + 1, g->mycol, Q); j < nt; j += Q) {
            const int bj = tsize(t, j);
            const float *pj = t->panel + t->off[j];
            for (int i = first_own(j, g->myrow, P); i < nt; i += P) {
                const int bi = tsize(t, i);
                const float *pi = t->panel + t->off[i];
                if (i == j)
                    cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, bi, bk, -1.0f, pi, bi,
                                1.0f, tile(t, i, i), g->lld);
                else
                    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, bi, bj, bk, -1.0f, pi, bi,
                                pj, bj, 1.0f, tile(t, i, j), g->lld);
            }
        }
    }
    return 0;
}

// Step 2: L := L^-1 (lower, non-unit). With X = L^-1, X_kk = L_kk^-1 and, for m > k,
// X_mk = -L_mm^-1 (sum_{k <= j < m} L_mj X_jk). Step k: (a) column k below the diagonal
// := -A_mk L_kk^-1; (b) A_mj += A_mk A_kj for j < k < m (A_kj not yet finished); (c) row k
// left of the diagonal := L_kk^-1 A_kj, which completes it; (d) A_kk := L_kk^-1.
static int trtri(tiles *t) {
    const sds_dist_grid *g = t->g;
    const int nt = t->nt, P = g->nprow, Q = g->npcol;
    for (int k = 0; k < nt; k++) {
        const int bk = tsize(t, k);
        if (nt > 1) bcast_diag(t, k); // (a) and (c) need L_kk, before (d) inverts it
        if (k % Q == g->mycol)        // (a)
            for (int m = first_own(k + 1, g->myrow, P); m < nt; m += P)
                cblas_strsm(CblasColMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit,
                            tsize(t, m), bk, -1.0f, t->diag, bk, tile(t, m, k), g->lld);
        if (k > 0 && k < nt - 1) { // (b)
            gather(t, k, k + 1, nt, 0, k);
            for (int j = first_own(0, g->mycol, Q); j < k; j += Q) {
                const int bj = tsize(t, j);
                const float *rj = t->panel + t->off[j];
                for (int m = first_own(k + 1, g->myrow, P); m < nt; m += P) {
                    const int bm = tsize(t, m);
                    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, bm, bj, bk, 1.0f,
                                t->panel + t->off[m], bm, rj, bk, 1.0f, tile(t, m, j), g->lld);
                }
            }
        }
        if (k % P == g->myrow) // (c)
            for (int j = first_own(0, g->mycol, Q); j < k; j += Q)
                cblas_strsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, bk,
                            tsize(t, j), 1.0f, t->diag, bk, tile(t, k, j), g->lld);
        int info = 0; // (d)
        if (is_mine(t, k, k)) {
            if (nt == 1) copy_lower(t->diag, tile(t, k, k), g->lld, bk);
            strtri_("L", "N", &bk, t->diag, &bk, &info, 1, 1);
        }
        const int agreed = agree_info(t, info, (int64_t)k * t->nb);
        if (agreed != 0) return agreed;
        if (is_mine(t, k, k)) put_lower(tile(t, k, k), g->lld, t->diag, bk);
    }
    return 0;
}

// Step 3: A := L^T L, lower part, with L = the current lower triangle (L^-1 of step 2).
// (L^T L)_mj = sum_{k >= m} L_km^T L_kj for m >= j. Step k adds row k's term to the tiles
// above it ((j, j) and (m, j), j < m < k, from row k's original tiles), then finishes row k:
// A_kj := L_kk^T A_kj, A_kk := L_kk^T L_kk (slauum).
static int lauum(tiles *t) {
    const sds_dist_grid *g = t->g;
    const int nt = t->nt, P = g->nprow, Q = g->npcol;
    for (int k = 0; k < nt; k++) {
        const int bk = tsize(t, k);
        gather(t, k, 0, 0, 0, k + 1); // row k with (k, k): its tiles are not yet changed
        for (int j = first_own(0, g->mycol, Q); j < k; j += Q) {
            const int bj = tsize(t, j);
            const float *rj = t->panel + t->off[j];
            for (int m = first_own(j, g->myrow, P); m < k; m += P) {
                const int bm = tsize(t, m);
                if (m == j)
                    cblas_ssyrk(CblasColMajor, CblasLower, CblasTrans, bj, bk, 1.0f, rj, bk, 1.0f,
                                tile(t, j, j), g->lld);
                else
                    cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, bm, bj, bk, 1.0f,
                                t->panel + t->off[m], bk, rj, bk, 1.0f, tile(t, m, j), g->lld);
            }
        }
        float *rk = t->panel + t->off[k];
        if (k % P == g->myrow)
            for (int j = first_own(0, g->mycol, Q); j < k; j += Q)
                cblas_strmm(CblasColMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, bk,
                            tsize(t, j), 1.0f, rk, bk, tile(t, k, j), g->lld);
        int info = 0;
        if (is_mine(t, k, k)) slauum_("L", &bk, rk, &bk, &info, 1); // the panel's own copy
        const int agreed = agree_info(t, info, (int64_t)k * t->nb);
        if (agreed != 0) return agreed;
        if (is_mine(t, k, k)) put_lower(tile(t, k, k), g->lld, rk, bk);
    }
    return 0;
}

int sds_dist_tiles_inv_chol(const sds_dist_grid *g, float *A, int *fail_rank) {
    int dummy;
    if (!fail_rank) fail_rank = &dummy;
    *fail_rank = -1;
    const int64_t bw = panel_width(g), G = g->size;
    if (bw * g->n > INT_MAX) { // (global values: every rank returns alike without agreeing)
        sds_error_set(SDS_ERR_INPUT,
                      "tile inverse Cholesky: a panel of %lld x %lld floats exceeds MPI's counts",
                      (long long)bw, (long long)g->n);
        return SDS_DIST_TILES_TOO_LARGE;
    }
    tiles t = {.g = g, .A = A, .n = g->n, .nb = g->nb, .nt = tile_count(g), .fail_rank = -1};
    MPI_Comm_rank(MPI_COMM_WORLD, &t.wrank);
    t.panel = sds_malloc((size_t)(bw * g->n) * sizeof(float), "the tile panel");
    t.diag = sds_malloc((size_t)(bw * bw) * sizeof(float), "a diagonal tile");
    t.off = sds_malloc((size_t)t.nt * sizeof(int64_t), "the tile offsets");
    t.counts = sds_malloc((size_t)(4 * G) * sizeof(int), "the tile gather counts");
    int ok = t.panel && t.diag && t.off && t.counts;
    if (ok && sds_test_fail("tiles-memory", t.wrank)) { // test hook (src/sds_error.h)
        ok = 0;
        sds_error_set(SDS_ERR_IO, "out of memory allocating the tile panel (SDS_TEST_FAIL)");
    }
    const int mine = ok ? INT_MAX : t.wrank;
    MPI_Allreduce(&mine, fail_rank, 1, MPI_INT, MPI_MIN, g->comm);
    int rc = SDS_DIST_TILES_NO_MEMORY;
    if (*fail_rank != INT_MAX) { // the lowest failing rank's message to every rank
        sds_agree_quiet(g->comm, ok ? SDS_OK : SDS_ERR_IO, NULL);
    } else {
        *fail_rank = -1;
        t.displs = t.counts + G;
        t.cursor = t.counts + 2 * G;
        t.place = t.counts + 3 * G;
        for (int q = 0; q < g->size; q++) t.place[g->prow[q] * g->npcol + g->pcol[q]] = q;
        rc = potrf(&t);              // 1. A = L L^T
        if (rc == 0) rc = trtri(&t); // 2. L^-1
        if (rc == 0) rc = lauum(&t); // 3. A^-1 = L^-T L^-1
        if (rc == 0) rc = potrf(&t); // 4. A^-1 = U^T U
        *fail_rank = t.fail_rank;
    }
    free(t.counts);
    free(t.off);
    free(t.diag);
    free(t.panel);
    return rc;
}

/* Single-precision dense-layer kernels for AVX2 + FMA; see _simd.h.
 *
 * They are written for the small products of training with small batches (a few dozen
 * rows against a weight matrix of a few hundred kilobytes), where a general BLAS spends
 * much of its time copying operands into its packed formats.  These kernels read the
 * operands where they lie:
 *
 * - forward, z = x w^T: each output is a dot product of a row of x and a row of w, both
 *   contiguous.  A tile of 3 rows of x by 4 rows of w keeps 12 vector accumulators;
 *   every step loads 7 vectors for 12 fused multiply-adds.
 * - update, w += alpha g^T x: each row of w gains a combination of the rows of x.  A tile
 *   of 3 rows of w by 32 columns keeps 12 accumulators; every step loads 4 vectors of a
 *   row of x and broadcasts 3 entries of a row of g.  Each 32-column panel of x serves
 *   every row of w before the next panel.  The input gradient g w is the same kind of
 *   product, with the rows of w combined.
 *
 * Rows of x are taken ROW_BLOCK at a time: the forward pass computes a block of output
 * rows at a time, and the update adds each block's partial sums to w in turn, so that a
 * block's rows of x stay in the caches.
 *
 * Zero columns: before each block of rows, the kernels list the groups of 8 columns of
 * x that hold a nonzero entry in the block and skip the others (for the input layer of
 * an image network many are blank: on MNIST a fifth of the groups in a batch of 32, in
 * about 8 runs).  With finite weights a skipped group would only have added exact zeros,
 * so the results are those of the full product.  The forward pass steps through runs of
 * adjacent groups (a loop reading each group's offset from a list measured slower than
 * the full product); the update takes its panels of 4 groups from the list.
 *
 * The order of the additions for one output depends only on k and m, never on how the
 * caller splits the outputs between threads, so results do not depend on the split.
 * The tile helpers are inlined with constant sizes, so the compiler keeps the
 * accumulators in registers and unrolls the inner loops.
 */
#include "_simd.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))

#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#define KERNEL __attribute__((target("avx2,fma")))
#define TILE KERNEL static inline __attribute__((always_inline))

#ifndef ROW_BLOCK
#define ROW_BLOCK 32
#endif

int nr_simd_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

TILE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Lanes 0..count-1 set (0 < count < 8). */
TILE __m256i lanes_below_count(int count)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* ---- groups of 8 columns ---------------------------------------------------------- */

/* At most this many groups are listed (k <= 8192); wider inputs are not scanned. */
#define MAX_GROUPS 1024

/* Writes to `offsets` the first column p of each group x[0:m, p:p+8], p < k8, holding a
 * bit that is set, and returns how many; if there are more than MAX_GROUPS groups,
 * lists none and returns -1 (the caller then steps through all columns). */
TILE int nonzero_groups(int m, int k8, const float *x, int ldx, int *offsets)
{
    if (k8 / 8 > MAX_GROUPS)
        return -1;
    int count = 0;
    for (int p = 0; p < k8; p += 8) {
        __m256i any = _mm256_setzero_si256();
        for (int i = 0; i < m; i++)
            any = _mm256_or_si256(any, _mm256_loadu_si256((const __m256i *)(x + (size_t)i * ldx + p)));
        if (!_mm256_testz_si256(any, any))
            offsets[count++] = p;
    }
    return count;
}

/* Listing the nonzero groups costs a pass over a block of x; it pays for itself only
 * when each group feeds enough outputs. */
#define MIN_OUTPUTS_TO_SCAN 32

/* ---- forward ------------------------------------------------------------------- */

/* z[i, j] = x[i, :] . w[j, :] + b[j] for i < MI, j < NJ (MI <= 3, NJ <= 4), summing
 * the columns p of each run bounds[2 r] <= p < bounds[2 r + 1] (r < runs, multiples of 8)
 * and the k - k8 last columns. */
TILE void forward_tile(int MI, int NJ, const int *bounds, int runs, int k, const float *x,
                       int ldx, const float *w, int ldw, const float *b, float *z, int ldz)
{
    __m256 acc[3][4];
    int k8 = k & ~7;
    for (int i = 0; i < MI; i++)
        for (int j = 0; j < NJ; j++)
            acc[i][j] = _mm256_setzero_ps();
    for (int r = 0; r < runs; r++)
        for (int p = bounds[2 * r]; p < bounds[2 * r + 1]; p += 8) {
            __m256 wv[4];
            for (int j = 0; j < NJ; j++)
                wv[j] = _mm256_loadu_ps(w + (size_t)j * ldw + p);
            for (int i = 0; i < MI; i++) {
                __m256 xv = _mm256_loadu_ps(x + (size_t)i * ldx + p);
                for (int j = 0; j < NJ; j++)
                    acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
            }
        }
    for (int i = 0; i < MI; i++)
        for (int j = 0; j < NJ; j++) {
            float sum = hsum(acc[i][j]);
            for (int p = k8; p < k; p++)
                sum += x[(size_t)i * ldx + p] * w[(size_t)j * ldw + p];
            z[(size_t)i * ldz + j] = sum + (b ? b[j] : 0.0f);
        }
}

#define FORWARD_TILE(MI, NJ) \
    forward_tile(MI, NJ, bounds, runs, k, x + (size_t)i * ldx, ldx, w + (size_t)j * ldw, \
                 ldw, b ? b + j : NULL, z + (size_t)i * ldz + j, ldz)

/* Rows i..i+mi of z (mi <= 3), units j..j+NJ. */
TILE void forward_rows(int mi, int NJ, const int *bounds, int runs, int i, int j, int k,
                       const float *x, int ldx, const float *w, int ldw, const float *b,
                       float *z, int ldz)
{
    switch (mi) {
    case 3: FORWARD_TILE(3, NJ); break;
    case 2: FORWARD_TILE(2, NJ); break;
    default: FORWARD_TILE(1, NJ); break;
    }
}

#define FORWARD_ROWS(NJ) \
    forward_rows(mi, NJ, bounds, runs, i, j, k, x, ldx, w, ldw, b, z, ldz)

/* Rows 0..m of z, all n units. */
TILE void forward_block(const int *bounds, int runs, int m, int n, int k, const float *x,
                        int ldx, const float *w, int ldw, const float *b, float *z, int ldz)
{
    for (int j = 0; j < n; j += 4) {
        int nj = n - j < 4 ? n - j : 4;
        for (int i = 0; i < m; i += 3) {
            int mi = m - i < 3 ? m - i : 3;
            switch (nj) {
            case 4: FORWARD_ROWS(4); break;
            case 3: FORWARD_ROWS(3); break;
            case 2: FORWARD_ROWS(2); break;
            default: FORWARD_ROWS(1); break;
            }
        }
    }
}

/* Merges the groups listed by nonzero_groups into runs of adjacent columns: run r is
 * bounds[2 r] <= p < bounds[2 r + 1].  Returns the number of runs. */
TILE int group_runs(const int *offsets, int groups, int *bounds)
{
    int runs = 0;
    for (int t = 0; t < groups; t++) {
        if (runs > 0 && bounds[2 * runs - 1] == offsets[t]) {
            bounds[2 * runs - 1] += 8;
        } else {
            bounds[2 * runs] = offsets[t];
            bounds[2 * runs + 1] = offsets[t] + 8;
            runs++;
        }
    }
    return runs;
}

KERNEL void nr_dense_forward_f32(int m, int n, int k,
                                 const float *x, int ldx, const float *w, int ldw,
                                 const float *b, float *z, int ldz)
{
    int offsets[MAX_GROUPS], bounds[2 * MAX_GROUPS];
    /* Blocks of rows small enough to stay in the L2 cache beside the weights. */
    for (int i = 0; i < m; i += ROW_BLOCK) {
        int mi = m - i < ROW_BLOCK ? m - i : ROW_BLOCK;
        const float *xb = x + (size_t)i * ldx;
        int groups = n >= MIN_OUTPUTS_TO_SCAN ? nonzero_groups(mi, k & ~7, xb, ldx, offsets) : -1;
        int runs = 1;
        if (groups >= 0) {
            runs = group_runs(offsets, groups, bounds);
        } else {
            bounds[0] = 0;
            bounds[1] = k & ~7;
        }
        forward_block(bounds, runs, mi, n, k, xb, ldx, w, ldw, b, z + (size_t)i * ldz, ldz);
    }
}

/* ---- update and input gradient --------------------------------------------------- */

/* Both are rank-m updates of a row-major matrix c (n, k):
 *     c[r, p] += alpha * sum_i coef(i, r) * x[i, p],   coef(i, r) = g[i * gi + r * gr],
 * the weight update with g (m, n) as stored (gi = ldg, gr = 1) and the input gradient
 * with c = dL/dx, x = w and coef read across the rows of g (gi = 1, gr = ldg). */

/* c[r, col(v):col(v)+8] += alpha * sum_i coef(i, r) x[i, col(v):col(v)+8] for r < MR,
 * v < V (MR <= 3, V <= 4), where col(v) is offsets[v] with GATHER, else 8 v.  With
 * MASKED, V is 1 and only the lanes set in `mask` are read and written. */
TILE void update_tile(int MR, int V, int GATHER, const int *offsets, int MASKED,
                      __m256i mask, int m, __m256 alpha, const float *g, ptrdiff_t gi,
                      ptrdiff_t gr, const float *x, int ldx, float *c, int ldc)
{
    __m256 acc[3][4];
    int col[4];
    for (int v = 0; v < V; v++)
        col[v] = GATHER ? offsets[v] : 8 * v;
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < V; v++)
            acc[r][v] = _mm256_setzero_ps();
    for (int i = 0; i < m; i++) {
        __m256 xv[4];
        const float *xrow = x + (size_t)i * ldx;
        for (int v = 0; v < V; v++)
            xv[v] = MASKED ? _mm256_maskload_ps(xrow, mask) : _mm256_loadu_ps(xrow + col[v]);
        for (int r = 0; r < MR; r++) {
            __m256 gv = _mm256_broadcast_ss(g + i * gi + r * gr);
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm256_fmadd_ps(gv, xv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < V; v++) {
            float *out = c + (size_t)r * ldc + col[v];
            if (MASKED)
                _mm256_maskstore_ps(out, mask, _mm256_fmadd_ps(
                    alpha, acc[r][v], _mm256_maskload_ps(out, mask)));
            else
                _mm256_storeu_ps(out, _mm256_fmadd_ps(alpha, acc[r][v], _mm256_loadu_ps(out)));
        }
}

#define UPDATE_TILE(MR) \
    update_tile(MR, V, GATHER, offsets, MASKED, mask, m, alpha, g + r * gr, gi, gr, x, ldx, \
                c + (size_t)r * ldc, ldc)

/* The V column groups of update_tile in rows 0..n of c: tiles of 3 rows, then the 1 or
 * 2 left over. */
TILE void update_columns(int V, int GATHER, const int *offsets, int MASKED, __m256i mask,
                         int m, int n, __m256 alpha, const float *g, ptrdiff_t gi,
                         ptrdiff_t gr, const float *x, int ldx, float *c, int ldc)
{
    int r = 0;
    for (; r + 3 <= n; r += 3)
        UPDATE_TILE(3);
    if (n - r == 2)
        UPDATE_TILE(2);
    else if (n - r == 1)
        UPDATE_TILE(1);
}

/* With `scan`, the groups of 8 columns of x that are zero in a block of rows are skipped
 * (they would add nothing). */
TILE void rank_update(int scan, int m, int n, int k, float alpha, const float *g,
                      ptrdiff_t gi, ptrdiff_t gr, const float *x, int ldx, float *c, int ldc)
{
    __m256 a = _mm256_set1_ps(alpha);
    __m256i none = _mm256_setzero_si256();
    int offsets[MAX_GROUPS], k8 = k & ~7;
    /* Blocks of m small enough that a tile's rows of x stay in the L1 cache; within a
     * block, each panel of 32 columns of x serves every row of c before the next. */
    for (int i = 0; i < m; i += ROW_BLOCK) {
        int mi = m - i < ROW_BLOCK ? m - i : ROW_BLOCK;
        const float *gb = g + i * gi, *xb = x + (size_t)i * ldx;
        int groups = scan && n >= MIN_OUTPUTS_TO_SCAN
                         ? nonzero_groups(mi, k8, xb, ldx, offsets) : -1;
        if (groups >= 0 && groups < k8 / 8) {
            int t = 0;
            for (; t + 4 <= groups; t += 4)
                update_columns(4, 1, offsets + t, 0, none, mi, n, a, gb, gi, gr, xb, ldx, c, ldc);
            for (; t < groups; t++)
                update_columns(1, 1, offsets + t, 0, none, mi, n, a, gb, gi, gr, xb, ldx, c, ldc);
        } else {
            int p = 0;
            for (; p + 32 <= k8; p += 32)
                update_columns(4, 0, NULL, 0, none, mi, n, a, gb, gi, gr, xb + p, ldx, c + p, ldc);
            for (; p < k8; p += 8)
                update_columns(1, 0, NULL, 0, none, mi, n, a, gb, gi, gr, xb + p, ldx, c + p, ldc);
        }
        if (k8 < k) {
            __m256i mask = lanes_below_count(k - k8);
            update_columns(1, 0, NULL, 1, mask, mi, n, a, gb, gi, gr, xb + k8, ldx, c + k8, ldc);
        }
    }
}

KERNEL void nr_dense_update_f32(int m, int n, int k, float alpha,
                                const float *g, int ldg, const float *x, int ldx,
                                float *w, int ldw)
{
    rank_update(1, m, n, k, alpha, g, ldg, 1, x, ldx, w, ldw);
}

/* gx[i, p] for rows i < MI and the columns of V vectors from p (the last one only in the
 * lanes of `mask` with MASKED): sums over j of g[i, j] w[j, p], ROW_BLOCK values of j at
 * a time, each block's sum added to the earlier ones' (as rank_update would add it to
 * gx), written without reading gx first when there is one block. */
TILE void input_grad_tile(int MI, int V, int MASKED, __m256i mask, int n, const float *g,
                          int ldg, const float *w, int ldw, float *gx, int ldgx)
{
    for (int j0 = 0; j0 < n; j0 += ROW_BLOCK) {
        int nj = n - j0 < ROW_BLOCK ? n - j0 : ROW_BLOCK;
        __m256 acc[3][4];
        for (int r = 0; r < MI; r++)
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm256_setzero_ps();
        for (int j = j0; j < j0 + nj; j++) {
            __m256 wv[4];
            for (int v = 0; v < V; v++)
                wv[v] = MASKED && v == V - 1 ? _mm256_maskload_ps(w + (size_t)j * ldw + 8 * v, mask)
                                             : _mm256_loadu_ps(w + (size_t)j * ldw + 8 * v);
            for (int r = 0; r < MI; r++) {
                __m256 gv = _mm256_broadcast_ss(g + (size_t)r * ldg + j);
                for (int v = 0; v < V; v++)
                    acc[r][v] = _mm256_fmadd_ps(gv, wv[v], acc[r][v]);
            }
        }
        for (int r = 0; r < MI; r++)
            for (int v = 0; v < V; v++) {
                float *out = gx + (size_t)r * ldgx + 8 * v;
                int last = MASKED && v == V - 1;
                __m256 sum = acc[r][v];
                if (j0 > 0)
                    sum = _mm256_add_ps(sum, last ? _mm256_maskload_ps(out, mask) : _mm256_loadu_ps(out));
                if (last)
                    _mm256_maskstore_ps(out, mask, sum);
                else
                    _mm256_storeu_ps(out, sum);
            }
    }
}

#define INPUT_GRAD_TILE(MI) \
    input_grad_tile(MI, V, MASKED, mask, n, g + (size_t)i * ldg, ldg, w + p, ldw, \
                    gx + (size_t)i * ldgx + p, ldgx)

/* input_grad_tile over all rows, for the V vectors of columns from p. */
TILE void input_grad_columns(int V, int MASKED, __m256i mask, int m, int n, int p,
                             const float *g, int ldg, const float *w, int ldw, float *gx,
                             int ldgx)
{
    int i = 0;
    for (; i + 3 <= m; i += 3)
        INPUT_GRAD_TILE(3);
    if (m - i == 2)
        INPUT_GRAD_TILE(2);
    else if (m - i == 1)
        INPUT_GRAD_TILE(1);
}

/* The same sums, in the same order, as rank_update(0, ...) into a zeroed gx (an addition
 * of a block's sum to +0 leaves it as it is: the sums are never -0), without zeroing gx
 * and reading it back. */
KERNEL void nr_dense_input_grad_f32(int m, int n, int k, const float *g, int ldg,
                                    const float *w, int ldw, float *gx, int ldgx)
{
    __m256i none = _mm256_setzero_si256();
    int p = 0, k8 = k & ~7;
    for (; p + 32 <= k8; p += 32)
        input_grad_columns(4, 0, none, m, n, p, g, ldg, w, ldw, gx, ldgx);
    for (; p < k8; p += 8)
        input_grad_columns(1, 0, none, m, n, p, g, ldg, w, ldw, gx, ldgx);
    if (k8 < k)
        input_grad_columns(1, 1, lanes_below_count(k - k8), m, n, k8, g, ldg, w, ldw, gx, ldgx);
}

KERNEL void nr_axpy_fma_f32(ptrdiff_t n, float alpha, const float *x, float *y)
{
    __m256 a = _mm256_set1_ps(alpha);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] = __builtin_fmaf(alpha, x[i], y[i]);
}

#else  /* not GCC or Clang on x86: callers use BLAS */

int nr_simd_available(void) { return 0; }

void nr_dense_forward_f32(int m, int n, int k, const float *x, int ldx, const float *w,
                          int ldw, const float *b, float *z, int ldz) {}

void nr_dense_update_f32(int m, int n, int k, float alpha, const float *g, int ldg,
                         const float *x, int ldx, float *w, int ldw) {}

void nr_dense_input_grad_f32(int m, int n, int k, const float *g, int ldg,
                             const float *w, int ldw, float *gx, int ldgx) {}

void nr_axpy_fma_f32(ptrdiff_t n, float alpha, const float *x, float *y) {}

#endif

/* AVX-512 versions of the dense-layer kernels of _simd.c; see _simd.h.
 *
 * They give the AVX2 kernels' results bit for bit, so that a seeded run gives the same
 * numbers on any x86-64 processor.  Each output keeps the AVX2 kernels' sequence of
 * roundings; only the grouping of outputs into vectors changes:
 *
 * - forward: each output is still summed in 8 lanes (lane l takes the columns p with
 *   p % 8 == l, in the same runs of nonzero groups) and reduced by the same hsum.  A
 *   512-bit accumulator holds two outputs, units j and j + 1 in its two halves, against
 *   8 entries of a row of x broadcast to both halves.  A tile of 8 rows of x by 4 units
 *   keeps 16 accumulators in the 32 registers, and 4 rows of w in the L1 cache as the
 *   AVX2 tile does (a tile of 4 rows by 8 units, whose 8 rows of w crowd that cache,
 *   measured slower at batch 128).  FORWARD_ROWS_MAX (at most 8) sets the tile's rows.
 * - update and input gradient: lanes are columns of the result, each summed over the
 *   rows in the same order (blocks of ROW_BLOCK rows), so 16 columns per vector change
 *   nothing.  The update skips the same groups of 8 columns as the AVX2 kernel: a
 *   16-column vector whose one half is blank in a block leaves that half unwritten
 *   through its mask.
 *
 * Only AVX-512F instructions are used beside AVX2 and FMA.
 */
#include "_simd.h"

#if defined(__GNUC__) && defined(__x86_64__)

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define KERNEL __attribute__((target("avx512f,avx2,fma")))
#define TILE KERNEL static inline __attribute__((always_inline))

/* The same constants as _simd.c: they decide the order of the additions. */
#define ROW_BLOCK 32
#define MAX_GROUPS 1024
#define MIN_OUTPUTS_TO_SCAN 32

#ifndef FORWARD_ROWS_MAX
#define FORWARD_ROWS_MAX 8
#endif

int nr_avx512_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2")
           && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt");
}

/* The AVX2 kernels' reduction of 8 lanes, step for step. */
TILE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Half h (0: lanes 0-7, 1: lanes 8-15) of v. */
TILE __m256 half(__m512 v, int h)
{
    return h ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))
             : _mm512_castps512_ps256(v);
}

/* 8 floats from a in lanes 0-7 and 8 from b in lanes 8-15. */
TILE __m512 join(const float *a, const float *b)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(a))),
        _mm256_castps_pd(_mm256_loadu_ps(b)), 1));
}

/* 8 floats from a in both halves. */
TILE __m512 twice(const float *a)
{
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(a))));
}

/* ---- groups of 8 columns (as in _simd.c) ------------------------------------------ */

/* flags[q] = 1 if x[0:m, 8 q : 8 q + 8] holds a set bit, for 8 q < k8; returns how many
 * groups are set, or -1 (flags untouched) if there are more than MAX_GROUPS groups. */
TILE int flag_groups(int m, int k8, const float *x, int ldx, uint8_t *flags)
{
    if (k8 / 8 > MAX_GROUPS)
        return -1;
    int count = 0;
    for (int p = 0; p < k8; p += 8) {
        __m256i any = _mm256_setzero_si256();
        for (int i = 0; i < m; i++)
            any = _mm256_or_si256(any, _mm256_loadu_si256((const __m256i *)(x + (size_t)i * ldx + p)));
        flags[p / 8] = !_mm256_testz_si256(any, any);
        count += flags[p / 8];
    }
    return count;
}

/* ---- forward ------------------------------------------------------------------- */

/* z[i, j] = x[i, :] . w[j, :] + b[j] for i < MI (<= 8), j < 2 NP - ODD (NP <= 2), over
 * the runs of columns in `bounds` and the k - k8 last columns, as _simd.c's forward_tile. */
TILE void forward_tile(int MI, int NP, int ODD, const int *bounds, int runs, int k,
                       const float *x, int ldx, const float *w, int ldw, const float *b,
                       float *z, int ldz)
{
    __m512 acc[8][2];
    int k8 = k & ~7;
    for (int i = 0; i < MI; i++)
        for (int q = 0; q < NP; q++)
            acc[i][q] = _mm512_setzero_ps();
    for (int r = 0; r < runs; r++)
        for (int p = bounds[2 * r]; p < bounds[2 * r + 1]; p += 8) {
            __m512 wv[2];
            for (int q = 0; q < NP; q++) {
                const float *row = w + (size_t)(2 * q) * ldw + p;
                wv[q] = ODD && q == NP - 1 ? _mm512_zextps256_ps512(_mm256_loadu_ps(row))
                                           : join(row, row + ldw);
            }
            for (int i = 0; i < MI; i++) {
                __m512 xv = twice(x + (size_t)i * ldx + p);
                for (int q = 0; q < NP; q++)
                    acc[i][q] = _mm512_fmadd_ps(xv, wv[q], acc[i][q]);
            }
        }
    for (int i = 0; i < MI; i++)
        for (int j = 0; j < 2 * NP - ODD; j++) {
            float sum = hsum(half(acc[i][j / 2], j % 2));
            for (int p = k8; p < k; p++)
                sum += x[(size_t)i * ldx + p] * w[(size_t)j * ldw + p];
            z[(size_t)i * ldz + j] = sum + (b ? b[j] : 0.0f);
        }
}

#define FORWARD_TILE(MI) \
    forward_tile(MI, NP, ODD, bounds, runs, k, x + (size_t)i * ldx, ldx, w + (size_t)j * ldw, \
                 ldw, b ? b + j : NULL, z + (size_t)i * ldz + j, ldz)

/* Rows i..i+mi of z (mi <= 8), units j..j+2 NP-ODD. */
TILE void forward_rows(int mi, int NP, int ODD, const int *bounds, int runs, int i, int j,
                       int k, const float *x, int ldx, const float *w, int ldw,
                       const float *b, float *z, int ldz)
{
    switch (mi) {
    case 8: FORWARD_TILE(8); break;
    case 7: FORWARD_TILE(7); break;
    case 6: FORWARD_TILE(6); break;
    case 5: FORWARD_TILE(5); break;
    case 4: FORWARD_TILE(4); break;
    case 3: FORWARD_TILE(3); break;
    case 2: FORWARD_TILE(2); break;
    default: FORWARD_TILE(1); break;
    }
}

#define FORWARD_ROWS(NP, ODD) \
    forward_rows(mi, NP, ODD, bounds, runs, i, j, k, x, ldx, w, ldw, b, z, ldz)

/* Rows 0..m of z, all n units. */
TILE void forward_block(const int *bounds, int runs, int m, int n, int k, const float *x,
                        int ldx, const float *w, int ldw, const float *b, float *z, int ldz)
{
    for (int j = 0; j < n; j += 4) {
        int nj = n - j < 4 ? n - j : 4;
        for (int i = 0; i < m; i += FORWARD_ROWS_MAX) {
            int mi = m - i < FORWARD_ROWS_MAX ? m - i : FORWARD_ROWS_MAX;
            switch (nj) {
            case 4: FORWARD_ROWS(2, 0); break;
            case 3: FORWARD_ROWS(2, 1); break;
            case 2: FORWARD_ROWS(1, 0); break;
            default: FORWARD_ROWS(1, 1); break;
            }
        }
    }
}

/* The runs of adjacent set groups (flags of `groups` groups of 8 columns from 0): run r
 * is bounds[2 r] <= p < bounds[2 r + 1].  Returns the number of runs. */
TILE int group_runs(const uint8_t *flags, int groups, int *bounds)
{
    int runs = 0;
    for (int t = 0; t < groups; t++) {
        if (!flags[t])
            continue;
        if (runs > 0 && bounds[2 * runs - 1] == 8 * t) {
            bounds[2 * runs - 1] += 8;
        } else {
            bounds[2 * runs] = 8 * t;
            bounds[2 * runs + 1] = 8 * t + 8;
            runs++;
        }
    }
    return runs;
}

KERNEL void nr_dense_forward_f32_avx512(int m, int n, int k,
                                        const float *x, int ldx, const float *w, int ldw,
                                        const float *b, float *z, int ldz)
{
    uint8_t flags[MAX_GROUPS];
    int bounds[2 * MAX_GROUPS];
    for (int i = 0; i < m; i += ROW_BLOCK) {
        int mi = m - i < ROW_BLOCK ? m - i : ROW_BLOCK;
        const float *xb = x + (size_t)i * ldx;
        int groups = n >= MIN_OUTPUTS_TO_SCAN ? flag_groups(mi, k & ~7, xb, ldx, flags) : -1;
        int runs = 1;
        if (groups >= 0) {
            runs = group_runs(flags, (k & ~7) / 8, bounds);
        } else {
            bounds[0] = 0;
            bounds[1] = k & ~7;
        }
        forward_block(bounds, runs, mi, n, k, xb, ldx, w, ldw, b, z + (size_t)i * ldz, ldz);
    }
}

/* ---- update and input gradient --------------------------------------------------- */

/* The rank-m update of _simd.c,
 *     c[r, p] += alpha * sum_i coef(i, r) * x[i, p],   coef(i, r) = g[i * gi + r * gr],
 * on the columns of V vectors of 16 (V <= 4) from offsets[v], each only in the lanes of
 * masks[v], for the rows r < MR (MR <= 4) of c. */
TILE void update_tile(int MR, int V, const int *offsets, const __mmask16 *masks, int m,
                      __m512 alpha, const float *g, ptrdiff_t gi, ptrdiff_t gr,
                      const float *x, int ldx, float *c, int ldc)
{
    __m512 acc[4][4];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < V; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int i = 0; i < m; i++) {
        __m512 xv[4];
        const float *xrow = x + (size_t)i * ldx;
        for (int v = 0; v < V; v++)
            xv[v] = _mm512_maskz_loadu_ps(masks[v], xrow + offsets[v]);
        for (int r = 0; r < MR; r++) {
            __m512 gv = _mm512_set1_ps(g[i * gi + r * gr]);
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm512_fmadd_ps(gv, xv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < V; v++) {
            float *out = c + (size_t)r * ldc + offsets[v];
            _mm512_mask_storeu_ps(out, masks[v], _mm512_fmadd_ps(
                alpha, acc[r][v], _mm512_maskz_loadu_ps(masks[v], out)));
        }
}

#define UPDATE_TILE(MR) \
    update_tile(MR, V, offsets, masks, m, alpha, g + r * gr, gi, gr, x, ldx, \
                c + (size_t)r * ldc, ldc)

/* update_tile in rows 0..n of c: tiles of 4 rows, then the 1 to 3 left over. */
TILE void update_columns(int V, const int *offsets, const __mmask16 *masks, int m, int n,
                         __m512 alpha, const float *g, ptrdiff_t gi, ptrdiff_t gr,
                         const float *x, int ldx, float *c, int ldc)
{
    int r = 0;
    for (; r + 4 <= n; r += 4)
        UPDATE_TILE(4);
    switch (n - r) {
    case 3: UPDATE_TILE(3); break;
    case 2: UPDATE_TILE(2); break;
    case 1: UPDATE_TILE(1); break;
    default: break;
    }
}

/* Which lanes of the 16 columns from p a block updates: the columns p < k8 of its set
 * groups (all of them if flags is NULL) and the columns k8 <= p < k. */
TILE __mmask16 columns_mask(int p, int k, int k8, const uint8_t *flags)
{
    unsigned mask = 0;
    for (int h = 0; h < 2; h++) {
        int q = p + 8 * h;
        unsigned lanes;
        if (q >= k)
            lanes = 0;
        else if (q >= k8)
            lanes = (1u << (k - q)) - 1;
        else
            lanes = !flags || flags[q / 8] ? 0xffu : 0;
        mask |= lanes << (8 * h);
    }
    return (__mmask16)mask;
}

/* Blocks of 16 columns that rank_update holds at once (any k takes several). */
#define OFFSETS 512

/* With `scan`, the groups of 8 columns of x that are zero in a block of rows are left
 * alone, as _simd.c's rank_update leaves them. */
TILE void rank_update(int scan, int m, int n, int k, float alpha, const float *g,
                      ptrdiff_t gi, ptrdiff_t gr, const float *x, int ldx, float *c, int ldc)
{
    __m512 a = _mm512_set1_ps(alpha);
    uint8_t flags[MAX_GROUPS];
    int offsets[OFFSETS];
    __mmask16 masks[OFFSETS];
    int k8 = k & ~7;
    for (int i = 0; i < m; i += ROW_BLOCK) {
        int mi = m - i < ROW_BLOCK ? m - i : ROW_BLOCK;
        const float *gb = g + i * gi, *xb = x + (size_t)i * ldx;
        int groups = scan && n >= MIN_OUTPUTS_TO_SCAN ? flag_groups(mi, k8, xb, ldx, flags) : -1;
        const uint8_t *set = groups >= 0 && groups < k8 / 8 ? flags : NULL;
        /* the columns in batches of at most OFFSETS (a multiple of 4, so that the
         * tiles are those of one batch over all k columns) */
        for (int p0 = 0; p0 < k; p0 += 16 * OFFSETS) {
            int p1 = k - p0 < 16 * OFFSETS ? k : p0 + 16 * OFFSETS;
            int count = 0;
            for (int p = p0; p < p1; p += 16) {
                __mmask16 mask = columns_mask(p, k, k8, set);
                if (mask) {
                    offsets[count] = p;
                    masks[count++] = mask;
                }
            }
            int t = 0;
            for (; t + 4 <= count; t += 4)
                update_columns(4, offsets + t, masks + t, mi, n, a, gb, gi, gr, xb, ldx, c, ldc);
            switch (count - t) {
            case 3: update_columns(3, offsets + t, masks + t, mi, n, a, gb, gi, gr, xb, ldx, c, ldc); break;
            case 2: update_columns(2, offsets + t, masks + t, mi, n, a, gb, gi, gr, xb, ldx, c, ldc); break;
            case 1: update_columns(1, offsets + t, masks + t, mi, n, a, gb, gi, gr, xb, ldx, c, ldc); break;
            default: break;
            }
        }
    }
}

KERNEL void nr_dense_update_f32_avx512(int m, int n, int k, float alpha,
                                       const float *g, int ldg, const float *x, int ldx,
                                       float *w, int ldw)
{
    rank_update(1, m, n, k, alpha, g, ldg, 1, x, ldx, w, ldw);
}

/* gx[i, p] for rows i < MI (<= 4) and the columns of V (<= 4) vectors of 16 from p, the
 * last one only in the lanes of `last`: as _simd.c's input_grad_tile, blocks of
 * ROW_BLOCK values of j, each block's sum added to the earlier ones'. */
TILE void input_grad_tile(int MI, int V, __mmask16 last, int n, const float *g, int ldg,
                          const float *w, int ldw, float *gx, int ldgx)
{
    for (int j0 = 0; j0 < n; j0 += ROW_BLOCK) {
        int nj = n - j0 < ROW_BLOCK ? n - j0 : ROW_BLOCK;
        __m512 acc[4][4];
        for (int r = 0; r < MI; r++)
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm512_setzero_ps();
        for (int j = j0; j < j0 + nj; j++) {
            __m512 wv[4];
            for (int v = 0; v < V; v++)
                wv[v] = _mm512_maskz_loadu_ps(v == V - 1 ? last : 0xffff, w + (size_t)j * ldw + 16 * v);
            for (int r = 0; r < MI; r++) {
                __m512 gv = _mm512_set1_ps(g[(size_t)r * ldg + j]);
                for (int v = 0; v < V; v++)
                    acc[r][v] = _mm512_fmadd_ps(gv, wv[v], acc[r][v]);
            }
        }
        for (int r = 0; r < MI; r++)
            for (int v = 0; v < V; v++) {
                float *out = gx + (size_t)r * ldgx + 16 * v;
                __mmask16 lanes = v == V - 1 ? last : 0xffff;
                __m512 sum = acc[r][v];
                if (j0 > 0)
                    sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(lanes, out));
                _mm512_mask_storeu_ps(out, lanes, sum);
            }
    }
}

#define INPUT_GRAD_TILE(MI) \
    input_grad_tile(MI, V, last, n, g + (size_t)i * ldg, ldg, w + p, ldw, \
                    gx + (size_t)i * ldgx + p, ldgx)

/* input_grad_tile over all rows, for the V vectors of columns from p. */
TILE void input_grad_columns(int V, __mmask16 last, int m, int n, int p, const float *g,
                             int ldg, const float *w, int ldw, float *gx, int ldgx)
{
    int i = 0;
    for (; i + 4 <= m; i += 4)
        INPUT_GRAD_TILE(4);
    switch (m - i) {
    case 3: INPUT_GRAD_TILE(3); break;
    case 2: INPUT_GRAD_TILE(2); break;
    case 1: INPUT_GRAD_TILE(1); break;
    default: break;
    }
}

KERNEL void nr_dense_input_grad_f32_avx512(int m, int n, int k, const float *g, int ldg,
                                           const float *w, int ldw, float *gx, int ldgx)
{
    int p = 0, k16 = k & ~15;
    for (; p + 64 <= k16; p += 64)
        input_grad_columns(4, 0xffff, m, n, p, g, ldg, w, ldw, gx, ldgx);
    for (; p < k16; p += 16)
        input_grad_columns(1, 0xffff, m, n, p, g, ldg, w, ldw, gx, ldgx);
    if (k16 < k)
        input_grad_columns(1, (__mmask16)((1u << (k - k16)) - 1), m, n, k16, g, ldg, w, ldw,
                           gx, ldgx);
}

#else  /* not GCC or Clang on x86-64: never called */

int nr_avx512_available(void) { return 0; }

void nr_dense_forward_f32_avx512(int m, int n, int k, const float *x, int ldx,
                                 const float *w, int ldw, const float *b, float *z, int ldz) {}

void nr_dense_update_f32_avx512(int m, int n, int k, float alpha, const float *g, int ldg,
                                const float *x, int ldx, float *w, int ldw) {}

void nr_dense_input_grad_f32_avx512(int m, int n, int k, const float *g, int ldg,
                                    const float *w, int ldw, float *gx, int ldgx) {}

#endif

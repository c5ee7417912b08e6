/* Dense-layer kernels that skip zero inputs; see _sparse.h.
 *
 * - forward: for each pair of rows of x, the columns where either row holds a nonzero
 *   entry are listed first (8 at a time, through a table of bit positions, without a
 *   branch per entry), then each listed column adds its weights, scaled by the two
 *   entries, to 6 vector accumulators per row: 48 units per pass over the list.  The two
 *   rows share each load of weights (on MNIST the nonzero pixels of two rows cover 29 %
 *   of the columns, against 2 x 19 % for the rows apart); a column where only one row is
 *   nonzero adds an exact zero to the other's sums, which leaves them as they were (they
 *   start at +0.0 and never become -0.0).  A last odd row takes 64 units per pass.
 * - update: for each block of up to 32 rows of x, a 32-bit mask per column marks the
 *   rows where the column is nonzero; then each column p with a nonzero entry sums
 *   x[i, p] g[i, :] over its rows into 8 accumulators (64 units at a time; the units
 *   past the last multiple of 64 in a pass of their own) and adds alpha times the sum to
 *   row p of wt.  The block's rows of g stay in the L1 cache.
 *
 * - on dense inputs both work in blocks of four: the forward pass takes four rows over
 *   the columns where any is nonzero, 16 units per pass (when that list is not much
 *   longer than each pair's), so that each weight vector read serves four rows; the
 *   update takes four columns over the rows where any is nonzero (for a block of rows
 *   mostly nonzero), so that each vector of g serves four columns.
 *
 * Which zeros a block skips changes no result, since a zero entry adds an exact zero:
 * the kernels give the same bits on any inputs whichever way they group them.
 *
 * Both read the weights of each nonzero column from the L2 cache once per pass (the
 * forward pass takes the same time per unit whether or not a core's weights fit in
 * that cache, 32 to 384 units).  On MNIST they do a fifth of the full product's
 * arithmetic in about half its time (forward 0.65, update 0.45, one core, batches of
 * 32); with more than about two inputs in five nonzero the full product is faster.
 *
 * Each kernel reads its input rows either as float32 or as uint8 pixels standing for
 * pixel / 255 (the same helpers, inlined with PIXELS constant): a quarter of the bytes
 * for the batch of inputs, with the same bits in the results.
 *
 * The weights come in panels of 16 units so that the units a thread owns (a multiple of
 * 16) lie together in memory and stay in its L2 cache; rows of 16 units 1 KB apart
 * (W^T row-major, 256 units) would leave half of the cache's sets unused.
 */
#include "_sparse.h"

#include <stddef.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define KERNEL __attribute__((target("avx2,fma,popcnt")))
#define TILE KERNEL static inline __attribute__((always_inline))

/* positions[bits]: the indices of the set bits of `bits`, one per byte, lowest first. */
static uint64_t positions[256];

/* pixel_values[v] = v / 255 in float32 (correctly rounded, as a float32 division gives). */
static float pixel_values[256];

void nr_sparse_init(void)
{
    for (int bits = 0; bits < 256; bits++) {
        uint64_t packed = 0;
        int count = 0;
        for (int b = 0; b < 8; b++)
            if (bits >> b & 1)
                packed |= (uint64_t)b << (8 * count++);
        positions[bits] = packed;
    }
    for (int v = 0; v < 256; v++)
        pixel_values[v] = (float)v / 255.0f;
}

/* Lanes 0..count-1 set (count <= 8). */
TILE __m256i lanes_below(int count)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The kernels read their inputs x either as float32 rows or, with PIXELS, as rows of
 * uint8 pixels standing for pixel / 255 (pixel_values); a pixel is zero exactly when its
 * value is +0.0, so both skip the same entries and give the same bits. */

/* Entry `offset` of x, as a float pointer for a broadcast. */
TILE const float *input_at(int PIXELS, const void *x, size_t offset)
{
    return PIXELS ? pixel_values + ((const uint8_t *)x)[offset] : (const float *)x + offset;
}

/* Row i of x, ldx entries per row. */
TILE const void *input_row(int PIXELS, const void *x, size_t i, int ldx)
{
    return PIXELS ? (const void *)((const uint8_t *)x + i * ldx)
                  : (const void *)((const float *)x + i * ldx);
}

/* Entries p..p+7 of the row x as integers, zero exactly where the entry is +0.0 (only
 * the lanes in `valid` read unless FULL, others 0). */
TILE __m256i load_group(int PIXELS, int FULL, const void *x, int p, __m256i valid)
{
    if (PIXELS) {
        const uint8_t *u = (const uint8_t *)x + p;
        if (FULL)
            return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)u));
        uint8_t tail[8] = {0};
        int count = __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(valid)));
        for (int b = 0; b < count; b++)
            tail[b] = u[b];
        return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)tail));
    }
    const float *f = (const float *)x + p;
    return FULL ? _mm256_loadu_si256((const __m256i *)f)
                : _mm256_maskload_epi32((const int *)f, valid);
}

/* ---- forward -------------------------------------------------------------------- */

TILE unsigned nonzero_bits(int PIXELS, int FULL, const void *x, int p, __m256i valid)
{
    __m256i zero = _mm256_cmpeq_epi32(load_group(PIXELS, FULL, x, p, valid), _mm256_setzero_si256());
    return ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(zero)) & 0xffu;
}

/* Appends to idx[count:] the columns p + b (b < 8) where x[p + b] or, with y, y[p + b] is
 * not +0.0, for the lanes in `valid`; returns the new count.  Writes 8 entries whatever
 * the count. */
TILE int list_group(int PIXELS, int FULL, const void *x, const void *y, __m256i valid, int p,
                    int *idx, int count)
{
    unsigned bits = nonzero_bits(PIXELS, FULL, x, p, valid)
                    | (y ? nonzero_bits(PIXELS, FULL, y, p, valid) : 0);
    __m256i found = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)positions[bits]));
    _mm256_storeu_si256((__m256i *)(idx + count), _mm256_add_epi32(found, _mm256_set1_epi32(p)));
    return count + __builtin_popcount(bits);
}

/* Lists the columns p < k where the row x, or the row y unless NULL, holds a nonzero
 * entry; idx has room for k + 8. */
TILE int nonzero_columns(int PIXELS, const void *x, const void *y, int k, int *idx)
{
    int count = 0, k8 = k & ~7;
    __m256i all = _mm256_set1_epi32(-1);
    for (int p = 0; p < k8; p += 8)
        count = list_group(PIXELS, 1, x, y, all, p, idx, count);
    if (k8 < k)
        count = list_group(PIXELS, 0, x, y, lanes_below(k - k8), k8, idx, count);
    return count;
}

/* Vector v (8 units) of input p in the panels from `wt` on (see _sparse.h). */
TILE const float *panel_vector(const float *wt, size_t panel_stride, int v, int p)
{
    return wt + (size_t)(v / 2) * panel_stride + (size_t)NR_SPARSE_PANEL * p + 8 * (v % 2);
}

/* z[j] = sum_t x[idx[t]] * W^T[idx[t], j] + b[j] for j < 8 V; with MASKED, the last
 * vector covers only the lanes in `mask`. */
TILE void forward_units(int PIXELS, int V, int MASKED, __m256i mask, const void *x,
                        const int *idx, int count, const float *wt, size_t panel_stride,
                        const float *b, float *z)
{
    __m256 acc[8];
    for (int v = 0; v < V; v++)
        acc[v] = _mm256_setzero_ps();
    for (int t = 0; t < count; t++) {
        __m256 xv = _mm256_broadcast_ss(input_at(PIXELS, x, idx[t]));
        for (int v = 0; v < V; v++)  /* panels are padded: the last vector reads zeros */
            acc[v] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(panel_vector(wt, panel_stride, v, idx[t])),
                                     acc[v]);
    }
    for (int v = 0; v < V; v++) {
        int last = MASKED && v == V - 1;
        __m256 bias = !b ? _mm256_setzero_ps()
                         : last ? _mm256_maskload_ps(b + 8 * v, mask) : _mm256_loadu_ps(b + 8 * v);
        __m256 out = _mm256_add_ps(acc[v], bias);
        if (last)
            _mm256_maskstore_ps(z + 8 * v, mask, out);
        else
            _mm256_storeu_ps(z + 8 * v, out);
    }
}

/* forward_units for two rows x and y at once, over the columns where either is nonzero
 * (a zero entry adds an exact zero), 6 vectors at most. */
TILE void forward_pair(int PIXELS, int V, int MASKED, __m256i mask, const void *x,
                       const void *y, const int *idx, int count, const float *wt,
                       size_t panel_stride, const float *b, float *zx, float *zy)
{
    __m256 ax[6], ay[6];
    for (int v = 0; v < V; v++)
        ax[v] = ay[v] = _mm256_setzero_ps();
    for (int t = 0; t < count; t++) {
        __m256 xv = _mm256_broadcast_ss(input_at(PIXELS, x, idx[t]));
        __m256 yv = _mm256_broadcast_ss(input_at(PIXELS, y, idx[t]));
        for (int v = 0; v < V; v++) {
            __m256 wv = _mm256_loadu_ps(panel_vector(wt, panel_stride, v, idx[t]));
            ax[v] = _mm256_fmadd_ps(xv, wv, ax[v]);
            ay[v] = _mm256_fmadd_ps(yv, wv, ay[v]);
        }
    }
    for (int v = 0; v < V; v++) {
        int last = MASKED && v == V - 1;
        __m256 bias = !b ? _mm256_setzero_ps()
                         : last ? _mm256_maskload_ps(b + 8 * v, mask) : _mm256_loadu_ps(b + 8 * v);
        if (last) {
            _mm256_maskstore_ps(zx + 8 * v, mask, _mm256_add_ps(ax[v], bias));
            _mm256_maskstore_ps(zy + 8 * v, mask, _mm256_add_ps(ay[v], bias));
        } else {
            _mm256_storeu_ps(zx + 8 * v, _mm256_add_ps(ax[v], bias));
            _mm256_storeu_ps(zy + 8 * v, _mm256_add_ps(ay[v], bias));
        }
    }
}

/* Four rows at a time forward when their list of nonzero columns is at most this share
 * of the two pairs' lists, and four columns at a time in the update for a block of rows
 * at least BY_FOURS_MIN_DENSITY nonzero (below, Fashion-MNIST's half, one at a time
 * measured faster). */
#ifndef FOUR_ROWS_MAX_SHARE
#define FOUR_ROWS_MAX_SHARE 0.57
#endif
#ifndef BY_FOURS_MIN_DENSITY
#define BY_FOURS_MIN_DENSITY 0.7
#endif

/* The panel holding unit j (a multiple of NR_SPARSE_PANEL). */
#define panels(wt, stride, j) ((wt) + (size_t)((j) / NR_SPARSE_PANEL) * (stride))

/* forward_units for the 4 rows from x on at once, over the columns where any of them is
 * nonzero, units j < 8 V (V <= 2: one panel; with MASKED the last vector covers only
 * the lanes in `mask`): each weight vector read serves four rows. */
TILE void forward_four_units(int PIXELS, int V, int MASKED, __m256i mask, const void *x,
                             int ldx, const int *idx, int count, const float *wt,
                             const float *b, float *z, int ldz)
{
    __m256 acc[4][2];
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < V; v++)
            acc[r][v] = _mm256_setzero_ps();
    for (int t = 0; t < count; t++) {
        int p = idx[t];
        __m256 wv[2];
        for (int v = 0; v < V; v++)
            wv[v] = _mm256_loadu_ps(wt + (size_t)NR_SPARSE_PANEL * p + 8 * v);
        for (int r = 0; r < 4; r++) {
            __m256 xv = _mm256_broadcast_ss(input_at(PIXELS, input_row(PIXELS, x, r, ldx), p));
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm256_fmadd_ps(xv, wv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < V; v++) {
            int last = MASKED && v == V - 1;
            __m256 bias = !b ? _mm256_setzero_ps()
                             : last ? _mm256_maskload_ps(b + 8 * v, mask) : _mm256_loadu_ps(b + 8 * v);
            float *out = z + (size_t)r * ldz + 8 * v;
            if (last)
                _mm256_maskstore_ps(out, mask, _mm256_add_ps(acc[r][v], bias));
            else
                _mm256_storeu_ps(out, _mm256_add_ps(acc[r][v], bias));
        }
}

/* Lists the columns p < k where any of the 4 rows from x on holds a nonzero entry, and
 * sets *pairs to the lengths of the lists of rows 0-1 and rows 2-3 together. */
TILE int nonzero_columns_of_four(int PIXELS, const void *x, int ldx, int k, int *idx, int *pairs)
{
    int count = 0, paired = 0;
    __m256i all = _mm256_set1_epi32(-1);
    for (int p = 0; p < k; p += 8) {
        int full = k - p >= 8;
        __m256i valid = full ? all : lanes_below(k - p);
        unsigned bits[4];
        for (int r = 0; r < 4; r++)
            bits[r] = full ? nonzero_bits(PIXELS, 1, input_row(PIXELS, x, r, ldx), p, valid)
                           : nonzero_bits(PIXELS, 0, input_row(PIXELS, x, r, ldx), p, valid);
        unsigned any = bits[0] | bits[1] | bits[2] | bits[3];
        __m256i found = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)positions[any]));
        _mm256_storeu_si256((__m256i *)(idx + count), _mm256_add_epi32(found, _mm256_set1_epi32(p)));
        count += __builtin_popcount(any);
        paired += __builtin_popcount(bits[0] | bits[1]) + __builtin_popcount(bits[2] | bits[3]);
    }
    *pairs = paired;
    return count;
}

/* Rows i .. i + 3 of x through forward_four_units, a panel at a time, if the four
 * rows' list of nonzero columns is short enough for them to cost less than two pairs
 * (on dense inputs it is as long as each pair's); returns whether it ran them. */
TILE int forward_four(int PIXELS, int i, int n, int k, const void *x, int ldx,
                      const float *wt, size_t stride, const float *b, float *z, int ldz,
                      int *idx)
{
    const void *xr = input_row(PIXELS, x, i, ldx);
    float *zr = z + (size_t)i * ldz;
    int pairs;
    int count = nonzero_columns_of_four(PIXELS, xr, ldx, k, idx, &pairs);
    if (count > FOUR_ROWS_MAX_SHARE * pairs)
        return 0;
    __m256i all = _mm256_set1_epi32(-1);
    int j = 0;
    for (; j + 16 <= n; j += 16)
        forward_four_units(PIXELS, 2, 0, all, xr, ldx, idx, count, panels(wt, stride, j),
                           b ? b + j : NULL, zr + j, ldz);
    if (j < n) {
        int rest = n - j;
        __m256i mask = lanes_below(rest - 8 * ((rest - 1) / 8));
        if (rest > 8)
            forward_four_units(PIXELS, 2, 1, mask, xr, ldx, idx, count, panels(wt, stride, j),
                               b ? b + j : NULL, zr + j, ldz);
        else
            forward_four_units(PIXELS, 1, 1, mask, xr, ldx, idx, count, panels(wt, stride, j),
                               b ? b + j : NULL, zr + j, ldz);
    }
    return 1;
}

#define PAIR_REST(V) \
    forward_pair(PIXELS, V, 1, mask, xr, yr, idx, count, panels(wt, stride, j), stride, \
                 b ? b + j : NULL, zr + j, zr + ldz + j)

#define FORWARD_REST(V) \
    forward_units(PIXELS, V, 1, mask, xr, idx, count, panels(wt, stride, j), stride, \
                  b ? b + j : NULL, zr + j)

TILE void forward_rows(int PIXELS, int m, int n, int k, const void *x, int ldx,
                       const float *wt, const float *b, float *z, int ldz)
{
    int idx[NR_SPARSE_MAX_INPUTS + 8];
    size_t stride = (size_t)NR_SPARSE_PANEL * k;
    __m256i all = _mm256_set1_epi32(-1);
    int i = 0;
    for (; i + 2 <= m; i += 2) {
        if (i + 4 <= m && i % 4 == 0
            && forward_four(PIXELS, i, n, k, x, ldx, wt, stride, b, z, ldz, idx)) {
            i += 2;  /* and 2 more by the loop */
            continue;
        }
        const void *xr = input_row(PIXELS, x, i, ldx), *yr = input_row(PIXELS, x, i + 1, ldx);
        float *zr = z + (size_t)i * ldz;
        int count = nonzero_columns(PIXELS, xr, yr, k, idx), j = 0;
        for (; j + 48 <= n; j += 48)
            forward_pair(PIXELS, 6, 0, all, xr, yr, idx, count, panels(wt, stride, j), stride,
                         b ? b + j : NULL, zr + j, zr + ldz + j);
        if (j < n) {
            int rest = n - j;
            __m256i mask = lanes_below(rest - 8 * ((rest - 1) / 8));
            switch ((rest + 7) / 8) {
            case 6: PAIR_REST(6); break;
            case 5: PAIR_REST(5); break;
            case 4: PAIR_REST(4); break;
            case 3: PAIR_REST(3); break;
            case 2: PAIR_REST(2); break;
            default: PAIR_REST(1); break;
            }
        }
    }
    for (; i < m; i++) {
        const void *xr = input_row(PIXELS, x, i, ldx);
        float *zr = z + (size_t)i * ldz;
        int count = nonzero_columns(PIXELS, xr, NULL, k, idx), j = 0;
        for (; j + 64 <= n; j += 64)
            forward_units(PIXELS, 8, 0, all, xr, idx, count, panels(wt, stride, j), stride,
                          b ? b + j : NULL, zr + j);
        if (j < n) {
            int rest = n - j;
            __m256i mask = lanes_below(rest - 8 * ((rest - 1) / 8));
            switch ((rest + 7) / 8) {
            case 8: FORWARD_REST(8); break;
            case 7: FORWARD_REST(7); break;
            case 6: FORWARD_REST(6); break;
            case 5: FORWARD_REST(5); break;
            case 4: FORWARD_REST(4); break;
            case 3: FORWARD_REST(3); break;
            case 2: FORWARD_REST(2); break;
            default: FORWARD_REST(1); break;
            }
        }
    }
}

KERNEL void nr_sparse_forward_f32(int m, int n, int k, const float *x, int ldx,
                                  const float *wt, const float *b, float *z, int ldz)
{
    forward_rows(0, m, n, k, x, ldx, wt, b, z, ldz);
}

KERNEL void nr_sparse_forward_pixels_f32(int m, int n, int k, const uint8_t *x, int ldx,
                                         const float *wt, const float *b, float *z, int ldz)
{
    forward_rows(1, m, n, k, x, ldx, wt, b, z, ldz);
}

/* ---- update --------------------------------------------------------------------- */

/* Lane b: bit i set if x[i, b] (i < m <= 32) is not +0.0, for the lanes in `valid`. */
TILE __m256i group_rows(int PIXELS, int FULL, int m, const void *x, int ldx, int p,
                        __m256i valid)
{
    __m256i rows = _mm256_setzero_si256();
    for (int i = 0; i < m; i++) {
        __m256i zero = _mm256_cmpeq_epi32(load_group(PIXELS, FULL, input_row(PIXELS, x, i, ldx),
                                                     p, valid),
                                          _mm256_setzero_si256());
        rows = _mm256_or_si256(rows, _mm256_andnot_si256(zero, _mm256_set1_epi32((int)(1u << i))));
    }
    return rows;
}

/* rows_of[p]: bit i set if x[i, p] is not +0.0, for p < k, i < m <= 32. */
TILE void column_rows(int PIXELS, int m, int k, const void *x, int ldx, uint32_t *rows_of)
{
    int k8 = k & ~7;
    __m256i all = _mm256_set1_epi32(-1);
    for (int p = 0; p < k8; p += 8)
        _mm256_storeu_si256((__m256i *)(rows_of + p), group_rows(PIXELS, 1, m, x, ldx, p, all));
    if (k8 < k) {
        __m256i valid = lanes_below(k - k8);
        _mm256_maskstore_epi32((int *)(rows_of + k8), valid,
                               group_rows(PIXELS, 0, m, x, ldx, k8, valid));
    }
}

/* W^T[p, j] += alpha * sum_{i in rows} x[i, p] * g[i, j] for j < 8 V (the last vector
 * only in the lanes of `mask` with MASKED). */
TILE void update_units(int PIXELS, int V, int MASKED, __m256i mask, uint32_t rows,
                       const void *x, int ldx, const float *g, int ldg, __m256 alpha,
                       float *wt, size_t panel_stride, int p)
{
    __m256 acc[8];
    for (int v = 0; v < V; v++)
        acc[v] = _mm256_setzero_ps();
    while (rows) {
        int i = __builtin_ctz(rows);
        rows &= rows - 1;
        __m256 xv = _mm256_broadcast_ss(input_at(PIXELS, x, (size_t)i * ldx + p));
        const float *gr = g + (size_t)i * ldg;
        for (int v = 0; v < V; v++) {
            __m256 gv = MASKED && v == V - 1 ? _mm256_maskload_ps(gr + 8 * v, mask)
                                             : _mm256_loadu_ps(gr + 8 * v);
            acc[v] = _mm256_fmadd_ps(xv, gv, acc[v]);
        }
    }
    for (int v = 0; v < V; v++) {
        float *w = (float *)panel_vector(wt, panel_stride, v, p);
        __m256 out = _mm256_fmadd_ps(alpha, acc[v], _mm256_loadu_ps(w));
        if (MASKED && v == V - 1)
            _mm256_maskstore_ps(w, mask, out);
        else
            _mm256_storeu_ps(w, out);
    }
}

/* update_units on the first 64 * blocks units, for each column with a nonzero entry.
 * BLOCKS is 0 or the same count as a constant: the compiler then lays the loop out
 * straight (6 % faster for a thread's 128 units of the reference network). */
TILE void update_blocks(int PIXELS, int BLOCKS, int blocks, int k, const uint32_t *rows_of,
                        const void *x, int ldx, const float *g, int ldg, __m256 alpha,
                        float *wt, size_t stride)
{
    __m256i all = _mm256_set1_epi32(-1);
    int count = BLOCKS ? BLOCKS : blocks;
    for (int p = 0; p < k; p++) {
        uint32_t rows = rows_of[p];
        if (rows)
            for (int q = 0; q < count; q++)
                update_units(PIXELS, 8, 0, all, rows, x, ldx, g + 64 * q, ldg, alpha,
                             panels(wt, stride, 64 * q), stride, p);
    }
}

#define UPDATE_REST(V) \
    update_units(PIXELS, V, 1, mask, rows, x, ldx, g + j, ldg, alpha, panels(wt, stride, j), \
                 stride, p)

/* update_units on units j .. n - 1 (fewer than 64) for each column with a nonzero entry. */
TILE void update_rest(int PIXELS, int j, int n, int k, const uint32_t *rows_of, const void *x,
                      int ldx, const float *g, int ldg, __m256 alpha, float *wt, size_t stride)
{
    int rest = n - j;
    __m256i mask = lanes_below(rest - 8 * ((rest - 1) / 8));
    for (int p = 0; p < k; p++) {
        uint32_t rows = rows_of[p];
        if (!rows)
            continue;
        switch ((rest + 7) / 8) {
        case 8: UPDATE_REST(8); break;
        case 7: UPDATE_REST(7); break;
        case 6: UPDATE_REST(6); break;
        case 5: UPDATE_REST(5); break;
        case 4: UPDATE_REST(4); break;
        case 3: UPDATE_REST(3); break;
        case 2: UPDATE_REST(2); break;
        default: UPDATE_REST(1); break;
        }
    }
}

/* update_units for the 4 columns from p on at once, over the rows where any of them is
 * nonzero, units j < 8 V (V <= 2: one panel; with MASKED the last vector covers only
 * the lanes in `mask`): each gradient vector read serves four columns. */
TILE void update_four_columns(int PIXELS, int V, int MASKED, __m256i mask, uint32_t rows,
                              const void *x, int ldx, const float *g, int ldg, __m256 alpha,
                              float *wt, int p)
{
    __m256 acc[4][2];
    for (int c = 0; c < 4; c++)
        for (int v = 0; v < V; v++)
            acc[c][v] = _mm256_setzero_ps();
    while (rows) {
        int i = __builtin_ctz(rows);
        rows &= rows - 1;
        const float *gr = g + (size_t)i * ldg;
        __m256 gv[2];
        for (int v = 0; v < V; v++)
            gv[v] = MASKED && v == V - 1 ? _mm256_maskload_ps(gr + 8 * v, mask)
                                         : _mm256_loadu_ps(gr + 8 * v);
        for (int c = 0; c < 4; c++) {
            __m256 xv = _mm256_broadcast_ss(input_at(PIXELS, x, (size_t)i * ldx + p + c));
            for (int v = 0; v < V; v++)
                acc[c][v] = _mm256_fmadd_ps(xv, gv[v], acc[c][v]);
        }
    }
    for (int c = 0; c < 4; c++)
        for (int v = 0; v < V; v++) {
            float *w = wt + (size_t)NR_SPARSE_PANEL * (p + c) + 8 * v;
            __m256 out = _mm256_fmadd_ps(alpha, acc[c][v], _mm256_loadu_ps(w));
            if (MASKED && v == V - 1)
                _mm256_maskstore_ps(w, mask, out);
            else
                _mm256_storeu_ps(w, out);
        }
}

/* The update of the units of one panel (units j .. j + 8 V - 1) over all columns, four
 * at a time; the k % 4 last ones one at a time. */
TILE void update_panel_by_fours(int PIXELS, int V, int MASKED, __m256i mask, int k,
                                const uint32_t *rows_of, const void *x, int ldx,
                                const float *g, int ldg, __m256 alpha, float *wt)
{
    int p = 0;
    for (; p + 4 <= k; p += 4) {
        uint32_t rows = rows_of[p] | rows_of[p + 1] | rows_of[p + 2] | rows_of[p + 3];
        if (rows)
            update_four_columns(PIXELS, V, MASKED, mask, rows, x, ldx, g, ldg, alpha, wt, p);
    }
    for (; p < k; p++)
        if (rows_of[p])
            update_units(PIXELS, V, MASKED, mask, rows_of[p], x, ldx, g, ldg, alpha, wt, 0, p);
}

/* The update of all n units, a panel at a time, through update_panel_by_fours. */
TILE void update_by_fours(int PIXELS, int n, int k, const uint32_t *rows_of, const void *x,
                          int ldx, const float *g, int ldg, __m256 alpha, float *wt,
                          size_t stride)
{
    __m256i all = _mm256_set1_epi32(-1);
    int j = 0;
    for (; j + 16 <= n; j += 16)
        update_panel_by_fours(PIXELS, 2, 0, all, k, rows_of, x, ldx, g + j, ldg, alpha,
                              panels(wt, stride, j));
    if (j < n) {
        int rest = n - j;
        __m256i mask = lanes_below(rest - 8 * ((rest - 1) / 8));
        if (rest > 8)
            update_panel_by_fours(PIXELS, 2, 1, mask, k, rows_of, x, ldx, g + j, ldg, alpha,
                                  panels(wt, stride, j));
        else
            update_panel_by_fours(PIXELS, 1, 1, mask, k, rows_of, x, ldx, g + j, ldg, alpha,
                                  panels(wt, stride, j));
    }
}

/* How many entries rows_of marks. */
TILE int marked(int k, const uint32_t *rows_of)
{
    int count = 0;
    for (int p = 0; p < k; p++)
        count += __builtin_popcount(rows_of[p]);
    return count;
}

TILE void update_rows(int PIXELS, int m, int n, int k, float alpha, const float *g, int ldg,
                      const void *x, int ldx, float *wt)
{
    uint32_t rows_of[NR_SPARSE_MAX_INPUTS];
    size_t stride = (size_t)NR_SPARSE_PANEL * k;
    __m256 a = _mm256_set1_ps(alpha);
    int blocks = n / 64;
    for (int i0 = 0; i0 < m; i0 += 32) {
        int mi = m - i0 < 32 ? m - i0 : 32;
        const void *xb = input_row(PIXELS, x, i0, ldx);
        const float *gb = g + (size_t)i0 * ldg;
        column_rows(PIXELS, mi, k, xb, ldx, rows_of);
        if (marked(k, rows_of) >= BY_FOURS_MIN_DENSITY * mi * k) {
            update_by_fours(PIXELS, n, k, rows_of, xb, ldx, gb, ldg, a, wt, stride);
            continue;
        }
        switch (blocks) {
        case 0: break;
        case 1: update_blocks(PIXELS, 1, 1, k, rows_of, xb, ldx, gb, ldg, a, wt, stride); break;
        case 2: update_blocks(PIXELS, 2, 2, k, rows_of, xb, ldx, gb, ldg, a, wt, stride); break;
        default:
            update_blocks(PIXELS, 0, blocks, k, rows_of, xb, ldx, gb, ldg, a, wt, stride);
            break;
        }
        if (64 * blocks < n)
            update_rest(PIXELS, 64 * blocks, n, k, rows_of, xb, ldx, gb, ldg, a, wt, stride);
    }
}

KERNEL void nr_sparse_update_f32(int m, int n, int k, float alpha, const float *g, int ldg,
                                 const float *x, int ldx, float *wt)
{
    update_rows(0, m, n, k, alpha, g, ldg, x, ldx, wt);
}

KERNEL void nr_sparse_update_pixels_f32(int m, int n, int k, float alpha, const float *g,
                                        int ldg, const uint8_t *x, int ldx, float *wt)
{
    update_rows(1, m, n, k, alpha, g, ldg, x, ldx, wt);
}

#endif

/* ---- layout ---------------------------------------------------------------------- */

void nr_sparse_to_panels(int n, int k, const float *w, float *wt)
{
    for (int q = 0; q * NR_SPARSE_PANEL < n; q++) {
        int units = n - q * NR_SPARSE_PANEL < NR_SPARSE_PANEL ? n - q * NR_SPARSE_PANEL : NR_SPARSE_PANEL;
        const float *rows = w + (size_t)q * NR_SPARSE_PANEL * k;
        float *panel = wt + (size_t)q * NR_SPARSE_PANEL * k;
        for (int p = 0; p < k; p++)
            for (int r = 0; r < units; r++)
                panel[(size_t)NR_SPARSE_PANEL * p + r] = rows[(size_t)r * k + p];
    }
}

void nr_sparse_from_panels(int n, int k, const float *wt, float *w)
{
    for (int q = 0; q * NR_SPARSE_PANEL < n; q++) {
        int units = n - q * NR_SPARSE_PANEL < NR_SPARSE_PANEL ? n - q * NR_SPARSE_PANEL : NR_SPARSE_PANEL;
        float *rows = w + (size_t)q * NR_SPARSE_PANEL * k;
        const float *panel = wt + (size_t)q * NR_SPARSE_PANEL * k;
        for (int p = 0; p < k; p++)
            for (int r = 0; r < units; r++)
                rows[(size_t)r * k + p] = panel[(size_t)NR_SPARSE_PANEL * p + r];
    }
}

#if !(defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)))
/* not GCC or Clang on x86: nr_simd_available() is 0 and callers use BLAS */

void nr_sparse_init(void) {}

void nr_sparse_forward_f32(int m, int n, int k, const float *x, int ldx, const float *wt,
                           const float *b, float *z, int ldz) {}

void nr_sparse_update_f32(int m, int n, int k, float alpha, const float *g, int ldg,
                          const float *x, int ldx, float *wt) {}

void nr_sparse_forward_pixels_f32(int m, int n, int k, const uint8_t *x, int ldx,
                                  const float *wt, const float *b, float *z, int ldz) {}

void nr_sparse_update_pixels_f32(int m, int n, int k, float alpha, const float *g, int ldg,
                                 const uint8_t *x, int ldx, float *wt) {}

#endif

/* AVX-512 versions of the kernels for mostly-zero inputs of _sparse.c; see _sparse.h.
 *
 * They give the AVX2 kernels' results bit for bit: the lanes of a vector are units, and
 * each unit's sum runs over the same inputs in the same order (the update in the same
 * blocks of 32 rows), less zeros that would have added exact zeros, so a vector of 16
 * units, one panel, changes nothing but the count of instructions.  With 32 registers a
 * pass over the list of nonzero columns serves 128 units of a pair of rows (256 of a
 * single row), against 48 (64) with AVX2; the update takes 128 units per column.
 *
 * On dense inputs the forward pass takes four rows at a time (64 units per pass: each
 * weight vector read serves four rows, against two), and the update four columns at a
 * time (64 units: each vector of g serves four columns), as _sparse.c does with AVX2;
 * the same bits, since the zeros a block of four adds are exact.  One core, 512 rows,
 * 128 units, 784 dense inputs: forward 108 GFLOP/s, update 100 (against 94 and 90 for
 * OpenBLAS's sgemm on the same products).
 *
 * The columns are listed 16 at a time by a compress instruction into a register (a
 * compress straight to memory is slow on some processors).  Only AVX-512F instructions
 * are used beside AVX2, FMA and POPCNT.
 */
#include "_sparse.h"

#include <stddef.h>

#if defined(__GNUC__) && defined(__x86_64__)

#include <immintrin.h>
#include <stdint.h>

#define KERNEL __attribute__((target("avx512f,avx2,fma,popcnt")))
#define TILE KERNEL static inline __attribute__((always_inline))

/* pixel_values[v] = v / 255 in float32, as in _sparse.c. */
static float pixel_values[256];

void nr_sparse_init_avx512(void)
{
    for (int v = 0; v < 256; v++)
        pixel_values[v] = (float)v / 255.0f;
}

/* Lanes 0..count-1 (count <= 16). */
TILE __mmask16 lanes_below(int count)
{
    return (__mmask16)((1u << count) - 1);
}

/* The units of the last of V vectors when `rest` units remain (0 < rest <= 16 V). */
TILE __mmask16 last_lanes(int rest)
{
    return lanes_below(rest - 16 * ((rest - 1) / 16));
}

/* Entry `offset` of x (float32, or uint8 pixels with PIXELS), as a float pointer. */
TILE const float *input_at(int PIXELS, const void *x, size_t offset)
{
    return PIXELS ? pixel_values + ((const uint8_t *)x)[offset] : (const float *)x + offset;
}

TILE const void *input_row(int PIXELS, const void *x, size_t i, int ldx)
{
    return PIXELS ? (const void *)((const uint8_t *)x + i * ldx)
                  : (const void *)((const float *)x + i * ldx);
}

/* Lanes of the entries p..p+15 of the row x (only the lanes in `valid`) that are not
 * +0.0. */
TILE __mmask16 nonzero_lanes(int PIXELS, const void *x, int p, __mmask16 valid)
{
    __m512i v;
    if (PIXELS) {
        const uint8_t *u = (const uint8_t *)x + p;
        if (valid == 0xffff) {
            v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)u));
        } else {
            uint8_t tail[16] = {0};
            for (int b = 0; b < 16 && (valid >> b & 1); b++)
                tail[b] = u[b];
            v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)tail));
        }
    } else {
        v = _mm512_maskz_loadu_epi32(valid, (const float *)x + p);
    }
    return _mm512_test_epi32_mask(v, v);
}

/* ---- forward -------------------------------------------------------------------- */

/* 64-bit words of bits, one per input column: room for NR_SPARSE_MAX_INPUTS. */
#define MAX_WORDS (NR_SPARSE_MAX_INPUTS / 64)

/* bits[w], bit b: whether entry 64 w + b (< k) of the row x is not +0.0; the bits past k
 * are zero.  Pixels 32 at a time by a byte comparison. */
TILE void row_bits(int PIXELS, const void *x, int k, uint64_t *bits)
{
    int words = (k + 63) / 64;
    for (int w = 0; w < words; w++) {
        int p = 64 * w;
        uint64_t word = 0;
        if (PIXELS && k - p >= 64) {
            const uint8_t *u = (const uint8_t *)x + p;
            __m256i zero = _mm256_setzero_si256();
            uint32_t low = (uint32_t)_mm256_movemask_epi8(
                _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)u), zero));
            uint32_t high = (uint32_t)_mm256_movemask_epi8(
                _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(u + 32)), zero));
            word = ~((uint64_t)high << 32 | low);
        } else {
            for (int q = 0; q < 64 && p + q < k; q += 16) {
                __mmask16 valid = k - p - q >= 16 ? 0xffff : lanes_below(k - p - q);
                word |= (uint64_t)nonzero_lanes(PIXELS, x, p + q, valid) << q;
            }
        }
        bits[w] = word;
    }
}

/* Lists the set bits of bits[0 .. words) in increasing order in idx (room for 64 words
 * + 16 entries); returns how many. */
TILE int list_bits(const uint64_t *bits, int words, int *idx)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int count = 0;
    for (int w = 0; w < words; w++)
        for (int q = 0; q < 4; q++) {
            __mmask16 set = (__mmask16)(bits[w] >> (16 * q));
            __m512i found = _mm512_maskz_compress_epi32(
                set, _mm512_add_epi32(iota, _mm512_set1_epi32(64 * w + 16 * q)));
            _mm512_storeu_si512((void *)(idx + count), found);
            count += __builtin_popcount(set);
        }
    return count;
}

/* out = a | b, word by word; returns how many bits are set in out. */
TILE int either(const uint64_t *a, const uint64_t *b, int words, uint64_t *out)
{
    int count = 0;
    for (int w = 0; w < words; w++) {
        out[w] = a[w] | b[w];
        count += __builtin_popcountll(out[w]);
    }
    return count;
}

/* Vector v (the 16 units of panel v) of input p, panels from `wt` on. */
TILE const float *panel_vector(const float *wt, size_t panel_stride, int v, int p)
{
    return wt + (size_t)v * panel_stride + (size_t)NR_SPARSE_PANEL * p;
}

/* z = acc + b (b may be NULL), the last vector of V only in the lanes of `last`. */
TILE void store_units(__m512 acc, int v, int V, __mmask16 last, const float *b, float *z)
{
    __mmask16 lanes = v == V - 1 ? last : 0xffff;
    __m512 bias = b ? _mm512_maskz_loadu_ps(lanes, b + 16 * v) : _mm512_setzero_ps();
    _mm512_mask_storeu_ps(z + 16 * v, lanes, _mm512_add_ps(acc, bias));
}

/* z[j] = sum_t x[idx[t]] * W^T[idx[t], j] + b[j] for the units of V (<= 16) vectors. */
TILE void forward_units(int PIXELS, int V, __mmask16 last, const void *x, const int *idx,
                        int count, const float *wt, size_t panel_stride, const float *b,
                        float *z)
{
    __m512 acc[16];
    for (int v = 0; v < V; v++)
        acc[v] = _mm512_setzero_ps();
    for (int t = 0; t < count; t++) {
        __m512 xv = _mm512_set1_ps(*input_at(PIXELS, x, idx[t]));
        for (int v = 0; v < V; v++)  /* panels are padded: the last vector reads zeros */
            acc[v] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(panel_vector(wt, panel_stride, v, idx[t])),
                                     acc[v]);
    }
    for (int v = 0; v < V; v++)
        store_units(acc[v], v, V, last, b, z);
}

/* forward_units for two rows x and y at once, over the columns where either is nonzero,
 * V <= 8 vectors. */
TILE void forward_pair(int PIXELS, int V, __mmask16 last, const void *x, const void *y,
                       const int *idx, int count, const float *wt, size_t panel_stride,
                       const float *b, float *zx, float *zy)
{
    __m512 ax[8], ay[8];
    for (int v = 0; v < V; v++)
        ax[v] = ay[v] = _mm512_setzero_ps();
    for (int t = 0; t < count; t++) {
        __m512 xv = _mm512_set1_ps(*input_at(PIXELS, x, idx[t]));
        __m512 yv = _mm512_set1_ps(*input_at(PIXELS, y, idx[t]));
        for (int v = 0; v < V; v++) {
            __m512 wv = _mm512_loadu_ps(panel_vector(wt, panel_stride, v, idx[t]));
            ax[v] = _mm512_fmadd_ps(xv, wv, ax[v]);
            ay[v] = _mm512_fmadd_ps(yv, wv, ay[v]);
        }
    }
    for (int v = 0; v < V; v++) {
        store_units(ax[v], v, V, last, b, zx);
        store_units(ay[v], v, V, last, b, zy);
    }
}

/* forward_units for the R (<= 4) rows from x on, over the columns where any of them is
 * nonzero, V (<= 4) vectors: each weight vector read serves R rows. */
TILE void forward_block(int PIXELS, int R, int V, __mmask16 last, const void *x, int ldx,
                        const int *idx, int count, const float *wt, size_t panel_stride,
                        const float *b, float *z, int ldz)
{
    __m512 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int t = 0; t < count; t++) {
        int p = idx[t];
        __m512 wv[4];
        for (int v = 0; v < V; v++)
            wv[v] = _mm512_loadu_ps(panel_vector(wt, panel_stride, v, p));
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_set1_ps(*input_at(PIXELS, input_row(PIXELS, x, r, ldx), p));
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm512_fmadd_ps(xv, wv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            store_units(acc[r][v], v, V, last, b, z + (size_t)r * ldz);
}

/* Four rows at a time when their list of nonzero columns is at most this share of the
 * two pairs' lists (each entry then costs about 0.88 of a pair's: one core, dense inputs). */
#ifndef FOUR_ROWS_MAX_SHARE
#define FOUR_ROWS_MAX_SHARE 0.57
#endif

/* The panel holding unit j (a multiple of NR_SPARSE_PANEL). */
#define panels(wt, stride, j) ((wt) + (size_t)((j) / NR_SPARSE_PANEL) * (stride))

#define PAIR(V) \
    forward_pair(PIXELS, V, last, xr, yr, idx, count, panels(wt, stride, j), stride, \
                 b ? b + j : NULL, zr + j, zr + ldz + j)

#define SINGLE(V) \
    forward_units(PIXELS, V, last, xr, idx, count, panels(wt, stride, j), stride, \
                  b ? b + j : NULL, zr + j)

/* The units of rows i, i + 1 of x through forward_pair, 128 at a time, over the columns
 * idx[0 .. count) (those where either row is nonzero). */
TILE void forward_two(int PIXELS, int i, int n, const void *x, int ldx, const float *wt,
                      size_t stride, const float *b, float *z, int ldz, const int *idx,
                      int count)
{
    const void *xr = input_row(PIXELS, x, i, ldx), *yr = input_row(PIXELS, x, i + 1, ldx);
    float *zr = z + (size_t)i * ldz;
    for (int j = 0; j < n; j += 128) {
        int rest = n - j < 128 ? n - j : 128;
        __mmask16 last = last_lanes(rest);
        switch ((rest + 15) / 16) {
        case 8: PAIR(8); break;
        case 7: PAIR(7); break;
        case 6: PAIR(6); break;
        case 5: PAIR(5); break;
        case 4: PAIR(4); break;
        case 3: PAIR(3); break;
        case 2: PAIR(2); break;
        default: PAIR(1); break;
        }
    }
}

/* The units of row i of x through forward_units, 256 at a time, over the columns
 * idx[0 .. count) (those where the row is nonzero). */
TILE void forward_one(int PIXELS, int i, int n, const void *x, int ldx, const float *wt,
                      size_t stride, const float *b, float *z, int ldz, const int *idx,
                      int count)
{
    const void *xr = input_row(PIXELS, x, i, ldx);
    float *zr = z + (size_t)i * ldz;
    for (int j = 0; j < n; j += 256) {
        int rest = n - j < 256 ? n - j : 256;
        __mmask16 last = last_lanes(rest);
        switch ((rest + 15) / 16) {
        case 16: SINGLE(16); break;
        case 15: SINGLE(15); break;
        case 14: SINGLE(14); break;
        case 13: SINGLE(13); break;
        case 12: SINGLE(12); break;
        case 11: SINGLE(11); break;
        case 10: SINGLE(10); break;
        case 9: SINGLE(9); break;
        case 8: SINGLE(8); break;
        case 7: SINGLE(7); break;
        case 6: SINGLE(6); break;
        case 5: SINGLE(5); break;
        case 4: SINGLE(4); break;
        case 3: SINGLE(3); break;
        case 2: SINGLE(2); break;
        default: SINGLE(1); break;
        }
    }
}

#define QUAD(V) \
    forward_block(PIXELS, 4, V, last, xr, ldx, idx, count, panels(wt, stride, j), stride, \
                  b ? b + j : NULL, zr + j, ldz)

/* The units of rows i .. i + 3 of x through forward_block, 64 at a time, over the
 * columns idx[0 .. count) (those where any of the four is nonzero). */
TILE void forward_four(int PIXELS, int i, int n, const void *x, int ldx, const float *wt,
                       size_t stride, const float *b, float *z, int ldz, const int *idx,
                       int count)
{
    const void *xr = input_row(PIXELS, x, i, ldx);
    float *zr = z + (size_t)i * ldz;
    for (int j = 0; j < n; j += 64) {
        int rest = n - j < 64 ? n - j : 64;
        __mmask16 last = last_lanes(rest);
        switch ((rest + 15) / 16) {
        case 4: QUAD(4); break;
        case 3: QUAD(3); break;
        case 2: QUAD(2); break;
        default: QUAD(1); break;
        }
    }
}

/* Rows in blocks of four where the four rows' list of nonzero columns is short enough
 * (FOUR_ROWS_MAX_SHARE of the two pairs' lists: dense inputs), else in pairs; a last
 * odd row alone. */
TILE void forward_rows(int PIXELS, int m, int n, int k, const void *x, int ldx,
                       const float *wt, const float *b, float *z, int ldz)
{
    int idx[NR_SPARSE_MAX_INPUTS + 16];
    uint64_t bits[4][MAX_WORDS], pair[2][MAX_WORDS], all[MAX_WORDS];
    int words = (k + 63) / 64;
    size_t stride = (size_t)NR_SPARSE_PANEL * k;
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        for (int r = 0; r < 4; r++)
            row_bits(PIXELS, input_row(PIXELS, x, i + r, ldx), k, bits[r]);
        int first = either(bits[0], bits[1], words, pair[0]);
        int second = either(bits[2], bits[3], words, pair[1]);
        if (either(pair[0], pair[1], words, all) <= FOUR_ROWS_MAX_SHARE * (first + second)) {
            int count = list_bits(all, words, idx);
            forward_four(PIXELS, i, n, x, ldx, wt, stride, b, z, ldz, idx, count);
            continue;
        }
        for (int h = 0; h < 2; h++) {
            int count = list_bits(pair[h], words, idx);
            forward_two(PIXELS, i + 2 * h, n, x, ldx, wt, stride, b, z, ldz, idx, count);
        }
    }
    for (; i + 2 <= m; i += 2) {
        row_bits(PIXELS, input_row(PIXELS, x, i, ldx), k, bits[0]);
        row_bits(PIXELS, input_row(PIXELS, x, i + 1, ldx), k, bits[1]);
        either(bits[0], bits[1], words, pair[0]);
        forward_two(PIXELS, i, n, x, ldx, wt, stride, b, z, ldz, idx,
                    list_bits(pair[0], words, idx));
    }
    for (; i < m; i++) {
        row_bits(PIXELS, input_row(PIXELS, x, i, ldx), k, bits[0]);
        forward_one(PIXELS, i, n, x, ldx, wt, stride, b, z, ldz, idx,
                    list_bits(bits[0], words, idx));
    }
}

KERNEL void nr_sparse_forward_f32_avx512(int m, int n, int k, const float *x, int ldx,
                                         const float *wt, const float *b, float *z, int ldz)
{
    forward_rows(0, m, n, k, x, ldx, wt, b, z, ldz);
}

KERNEL void nr_sparse_forward_pixels_f32_avx512(int m, int n, int k, const uint8_t *x,
                                                int ldx, const float *wt, const float *b,
                                                float *z, int ldz)
{
    forward_rows(1, m, n, k, x, ldx, wt, b, z, ldz);
}

/* ---- update --------------------------------------------------------------------- */

/* rows_of[p]: bit i set if x[i, p] is not +0.0, for p < k, i < m <= 32. */
TILE void column_rows(int PIXELS, int m, int k, const void *x, int ldx, uint32_t *rows_of)
{
    for (int p = 0; p < k; p += 16) {
        __mmask16 valid = k - p >= 16 ? 0xffff : lanes_below(k - p);
        __m512i rows = _mm512_setzero_si512();
        for (int i = 0; i < m; i++)
            rows = _mm512_mask_or_epi32(
                rows, nonzero_lanes(PIXELS, input_row(PIXELS, x, i, ldx), p, valid), rows,
                _mm512_set1_epi32((int)(1u << i)));
        _mm512_mask_storeu_epi32(rows_of + p, valid, rows);
    }
}

/* W^T[p + c, j] += alpha * sum_{i in rows} x[i, p + c] * g[i, j] for the C columns
 * from p on (c < C) at once, over the rows where any of them is nonzero, and the units
 * of V vectors, the last only in the lanes of `last` (C <= 4, V <= 8, C V <= 16): each
 * vector of g read serves C columns. */
TILE void update_block(int PIXELS, int C, int V, __mmask16 last, uint32_t rows, const void *x,
                       int ldx, const float *g, int ldg, __m512 alpha, float *wt,
                       size_t panel_stride, int p)
{
    __m512 acc[4][8];
    for (int c = 0; c < C; c++)
        for (int v = 0; v < V; v++)
            acc[c][v] = _mm512_setzero_ps();
    while (rows) {
        int i = __builtin_ctz(rows);
        rows &= rows - 1;
        const float *gr = g + (size_t)i * ldg;
        __m512 gv[8];
        for (int v = 0; v < V; v++)
            gv[v] = _mm512_maskz_loadu_ps(v == V - 1 ? last : 0xffff, gr + 16 * v);
        for (int c = 0; c < C; c++) {
            __m512 xv = _mm512_set1_ps(*input_at(PIXELS, x, (size_t)i * ldx + p + c));
            for (int v = 0; v < V; v++)
                acc[c][v] = _mm512_fmadd_ps(xv, gv[v], acc[c][v]);
        }
    }
    for (int c = 0; c < C; c++)
        for (int v = 0; v < V; v++) {
            float *w = (float *)panel_vector(wt, panel_stride, v, p + c);
            _mm512_mask_storeu_ps(w, v == V - 1 ? last : 0xffff,
                                  _mm512_fmadd_ps(alpha, acc[c][v], _mm512_loadu_ps(w)));
        }
}

/* The update takes four columns at a time for a block of rows at least this share
 * nonzero (Fashion-MNIST, half nonzero: 1.1x; MNIST, a fifth: one at a time is faster). */
#ifndef BY_FOURS_MIN_DENSITY
#define BY_FOURS_MIN_DENSITY 0.4
#endif

/* update_block over all columns, four at a time, for V vectors of units from j on. */
TILE void update_columns(int PIXELS, int V, __mmask16 last, int k, const uint32_t *rows_of,
                         const void *x, int ldx, const float *g, int ldg, __m512 alpha,
                         float *wt, size_t stride)
{
    int p = 0;
    for (; p + 4 <= k; p += 4) {
        uint32_t rows = rows_of[p] | rows_of[p + 1] | rows_of[p + 2] | rows_of[p + 3];
        if (rows)
            update_block(PIXELS, 4, V, last, rows, x, ldx, g, ldg, alpha, wt, stride, p);
    }
    for (; p < k; p++)
        if (rows_of[p])
            update_block(PIXELS, 1, V, last, rows_of[p], x, ldx, g, ldg, alpha, wt, stride, p);
}

#define COLUMNS(V) \
    update_columns(PIXELS, V, last, k, rows_of, xb, ldx, gb + j, ldg, a, \
                   panels(wt, stride, j), stride)

/* The update of units 0 .. n - 1 from the rows whose nonzero columns `rows_of` marks,
 * through update_columns, 64 units at a time. */
TILE void update_by_fours(int PIXELS, int n, int k, const uint32_t *rows_of, const void *xb,
                         int ldx, const float *gb, int ldg, __m512 a, float *wt, size_t stride)
{
    for (int j = 0; j < n; j += 64) {
        int rest = n - j < 64 ? n - j : 64;
        __mmask16 last = last_lanes(rest);
        switch ((rest + 15) / 16) {
        case 4: COLUMNS(4); break;
        case 3: COLUMNS(3); break;
        case 2: COLUMNS(2); break;
        default: COLUMNS(1); break;
        }
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

#define UPDATE(C, V) \
    update_block(PIXELS, C, V, last, rows, x, ldx, g + j, ldg, alpha, panels(wt, stride, j), \
                 stride, p)

#define UPDATE_CASES(C) \
    switch ((rest + 15) / 16) { \
    case 8: UPDATE(C, 8); break; \
    case 7: UPDATE(C, 7); break; \
    case 6: UPDATE(C, 6); break; \
    case 5: UPDATE(C, 5); break; \
    case 4: UPDATE(C, 4); break; \
    case 3: UPDATE(C, 3); break; \
    case 2: UPDATE(C, 2); break; \
    default: UPDATE(C, 1); break; \
    }

/* The update of units j .. j + units - 1 (units <= 128) for the columns with a nonzero
 * entry, two at a time over the rows where either is nonzero (each vector of g then
 * serves two columns: 1.25x faster on MNIST, where neighbouring pixels are mostly
 * nonzero in the same rows).  UNITS is 0 or the same count as a constant, for the
 * compiler to lay the common case out straight. */
TILE void update_units_block(int PIXELS, int UNITS, int units, int j, int k,
                             const uint32_t *rows_of, const void *x, int ldx, const float *g,
                             int ldg, __m512 alpha, float *wt, size_t stride)
{
    int rest = UNITS ? UNITS : units;
    __mmask16 last = last_lanes(rest);
    int p = 0;
    for (; p + 2 <= k; p += 2) {
        uint32_t rows = rows_of[p] | rows_of[p + 1];
        if (rows)
            UPDATE_CASES(2)
    }
    if (p < k) {
        uint32_t rows = rows_of[p];
        if (rows)
            UPDATE_CASES(1)
    }
}

TILE void update_rows(int PIXELS, int m, int n, int k, float alpha, const float *g, int ldg,
                      const void *x, int ldx, float *wt)
{
    uint32_t rows_of[NR_SPARSE_MAX_INPUTS];
    size_t stride = (size_t)NR_SPARSE_PANEL * k;
    __m512 a = _mm512_set1_ps(alpha);
    for (int i0 = 0; i0 < m; i0 += 32) {
        int mi = m - i0 < 32 ? m - i0 : 32;
        const void *xb = input_row(PIXELS, x, i0, ldx);
        const float *gb = g + (size_t)i0 * ldg;
        column_rows(PIXELS, mi, k, xb, ldx, rows_of);
        if (marked(k, rows_of) >= BY_FOURS_MIN_DENSITY * mi * k) {
            update_by_fours(PIXELS, n, k, rows_of, xb, ldx, gb, ldg, a, wt, stride);
            continue;
        }
        for (int j = 0; j < n; j += 128) {
            int units = n - j < 128 ? n - j : 128;
            if (units == 128)
                update_units_block(PIXELS, 128, 128, j, k, rows_of, xb, ldx, gb, ldg, a, wt, stride);
            else
                update_units_block(PIXELS, 0, units, j, k, rows_of, xb, ldx, gb, ldg, a, wt, stride);
        }
    }
}

KERNEL void nr_sparse_update_f32_avx512(int m, int n, int k, float alpha, const float *g,
                                        int ldg, const float *x, int ldx, float *wt)
{
    update_rows(0, m, n, k, alpha, g, ldg, x, ldx, wt);
}

KERNEL void nr_sparse_update_pixels_f32_avx512(int m, int n, int k, float alpha,
                                               const float *g, int ldg, const uint8_t *x,
                                               int ldx, float *wt)
{
    update_rows(1, m, n, k, alpha, g, ldg, x, ldx, wt);
}

#else  /* not GCC or Clang on x86-64: never called */

void nr_sparse_init_avx512(void) {}

void nr_sparse_forward_f32_avx512(int m, int n, int k, const float *x, int ldx,
                                  const float *wt, const float *b, float *z, int ldz) {}

void nr_sparse_update_f32_avx512(int m, int n, int k, float alpha, const float *g, int ldg,
                                 const float *x, int ldx, float *wt) {}

void nr_sparse_forward_pixels_f32_avx512(int m, int n, int k, const uint8_t *x, int ldx,
                                         const float *wt, const float *b, float *z, int ldz) {}

void nr_sparse_update_pixels_f32_avx512(int m, int n, int k, float alpha, const float *g,
                                        int ldg, const uint8_t *x, int ldx, float *wt) {}

#endif

/* Columns of the weights back from the panels of _sparse.h, for the gradient of a layer's
 * input; see nr_sparse_from_panels_columns there.
 *
 * A hidden layer that trains on the kernels for zero inputs still needs g W, for the layer
 * below.  In the panels the weights of one unit lie 16 floats apart, which suits no
 * product kernel; so each batch the threads copy their columns of W back into row-major
 * form and run the dense kernel on them, with its bits.  The copy takes 16 x 8 blocks:
 * eight rows of a panel (16 units each, two vectors) become, by two 8 x 8 transposes,
 * eight columns of 16 rows of W.  About a tenth of the product's time at 128 rows.
 */
#include "_sparse.h"

#include <stddef.h>

/* Units in panel q of a layer of n units (16, or fewer in the last). */
static inline int panel_units(int n, int q)
{
    int rest = n - q * NR_SPARSE_PANEL;
    return rest < NR_SPARSE_PANEL ? rest : NR_SPARSE_PANEL;
}

/* Columns from <= p < to of one panel's `units` rows, one entry at a time. */
static void copy_columns(const float *panel, float *rows, int k, int units, int from, int to)
{
    for (int p = from; p < to; p++)
        for (int r = 0; r < units; r++)
            rows[(size_t)r * k + p] = panel[(size_t)NR_SPARSE_PANEL * p + r];
}

#if defined(__GNUC__) && defined(__x86_64__)

#include <immintrin.h>

#define KERNEL __attribute__((target("avx2")))
#define TILE KERNEL static inline __attribute__((always_inline))

/* Transpose the 8 x 8 block r[0..7] in place. */
TILE void transpose8(__m256 *r)
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* Columns p .. p + 7 of the 16 rows of panel `panel` (units of the panel: `units`). */
TILE void block_back(const float *panel, float *rows, int k, int p, int units)
{
    __m256 low[8], high[8];
    for (int c = 0; c < 8; c++) {
        low[c] = _mm256_loadu_ps(panel + 16 * (size_t)(p + c));
        high[c] = _mm256_loadu_ps(panel + 16 * (size_t)(p + c) + 8);
    }
    transpose8(low);
    transpose8(high);
    for (int r = 0; r < units && r < 8; r++)
        _mm256_storeu_ps(rows + (size_t)r * k + p, low[r]);
    for (int r = 8; r < units; r++)
        _mm256_storeu_ps(rows + (size_t)r * k + p, high[r - 8]);
}

/* Whole blocks of 8 columns from the first multiple of 8 on; the columns before and after
 * them one by one. */
KERNEL void nr_sparse_from_panels_columns(int n, int k, const float *wt, float *w, int lo,
                                          int hi)
{
    int first = (lo + 7) & ~7;
    if (first > hi)
        first = hi;
    int last = first + ((hi - first) & ~7);
    for (int q = 0; q * NR_SPARSE_PANEL < n; q++) {
        int units = panel_units(n, q);
        float *rows = w + (size_t)q * NR_SPARSE_PANEL * k;
        const float *panel = wt + (size_t)q * NR_SPARSE_PANEL * k;
        copy_columns(panel, rows, k, units, lo, first);
        for (int p = first; p < last; p += 8)
            block_back(panel, rows, k, p, units);
        copy_columns(panel, rows, k, units, last, hi);
    }
}

#else  /* not GCC or Clang on x86-64: the kernels for zero inputs do not run */

void nr_sparse_from_panels_columns(int n, int k, const float *wt, float *w, int lo, int hi)
{
    for (int q = 0; q * NR_SPARSE_PANEL < n; q++)
        copy_columns(wt + (size_t)q * NR_SPARSE_PANEL * k, w + (size_t)q * NR_SPARSE_PANEL * k,
                     k, panel_units(n, q), lo, hi);
}

#endif

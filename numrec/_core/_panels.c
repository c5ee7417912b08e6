/* The gradient of a layer's input from weights in panels (_sparse.h's layout); see
 * nr_panels_input_grad_f32 there.
 *
 * gx[i, p] = sum_j g[i, j] W[j, p].  In a panel the 16 weights W[16 P + l, p] of input p
 * lie together, as do the 16 entries g[i, 16 P + l] of a row of g, so each entry of gx is
 * a 16-lane sum: lane l takes the units 16 P + l, panel after panel, by fused
 * multiply-adds, and the lanes are then added in a fixed tree (sum4 below).  Neither
 * depends on which rows and columns a call or a block covers, nor on the vector width:
 * AVX2 holds the 16 lanes in two registers, AVX-512 in one, and both add the halves
 * first.  So threads that share the columns, and the two kernel levels, give the same
 * bits.  Blocks: 4 rows x 4 columns with AVX-512 (16 accumulators; each vector of g and
 * of W loaded serves four), 2 x 2 with AVX2; a block past the last row or column repeats
 * the last one and stores nothing for it.
 *
 * The last panel's lanes past unit n take g as zero (a masked load: the row of g ends
 * there) and W's zero padding.  One 512->256 layer, 128 rows, one core: see
 * docs/benchmarks.rst.
 */
#include "_sparse.h"

#include <stddef.h>

#if defined(__GNUC__) && defined(__x86_64__)

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* [sum a, sum b, sum c, sum d] of four 8-lane vectors, each summed as
 * ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)). */
AVX2 INLINE __m128 sum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/* Lanes 0-7 plus lanes 8-15 of a 16-lane sum held in one AVX-512 register. */
AVX512 INLINE __m256 halves512(__m512 s)
{
    __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1));
    return _mm256_add_ps(_mm512_castps512_ps256(s), high);
}

/* The four sums of `sums` into out[0..count-1]. */
AVX2 INLINE void store_first(float *out, __m128 sums, int count)
{
    float lanes[4];
    if (count == 4) {
        _mm_storeu_ps(out, sums);
        return;
    }
    _mm_storeu_ps(lanes, sums);
    for (int c = 0; c < count; c++)
        out[c] = lanes[c];
}

static inline int min_int(int a, int b)
{
    return a < b ? a : b;
}

/* Mask of the units of the last panel: n - 16 (panels - 1) of them. */
static inline unsigned last_panel_lanes(int n, int panels)
{
    return (1u << (n - 16 * (panels - 1))) - 1;
}

AVX2 INLINE __m256i lane_mask8(unsigned bits)
{
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), lane), lane);
}

/* Rows i0, i0 + 1 and columns p0, p0 + 1 (clamped to the last row and column). */
AVX2 static void block_avx2(int n, int k, const float *g0, const float *g1,
                            const float *wt, size_t c0, size_t c1, __m128 *sums)
{
    int panels = (n + 15) / 16;
    unsigned last = last_panel_lanes(n, panels);
    __m256i mask_low = lane_mask8(last & 0xff), mask_high = lane_mask8(last >> 8);
    __m256 a00l = _mm256_setzero_ps(), a00h = a00l, a01l = a00l, a01h = a00l;
    __m256 a10l = a00l, a10h = a00l, a11l = a00l, a11h = a00l;
    for (int P = 0; P < panels; P++) {
        const float *w = wt + (size_t)P * 16 * k;
        __m256 g0l, g0h, g1l, g1h;
        if (P < panels - 1) {
            g0l = _mm256_loadu_ps(g0 + 16 * P);
            g0h = _mm256_loadu_ps(g0 + 16 * P + 8);
            g1l = _mm256_loadu_ps(g1 + 16 * P);
            g1h = _mm256_loadu_ps(g1 + 16 * P + 8);
        } else {
            g0l = _mm256_maskload_ps(g0 + 16 * P, mask_low);
            g0h = _mm256_maskload_ps(g0 + 16 * P + 8, mask_high);
            g1l = _mm256_maskload_ps(g1 + 16 * P, mask_low);
            g1h = _mm256_maskload_ps(g1 + 16 * P + 8, mask_high);
        }
        __m256 w0l = _mm256_loadu_ps(w + c0), w0h = _mm256_loadu_ps(w + c0 + 8);
        __m256 w1l = _mm256_loadu_ps(w + c1), w1h = _mm256_loadu_ps(w + c1 + 8);
        a00l = _mm256_fmadd_ps(g0l, w0l, a00l);
        a00h = _mm256_fmadd_ps(g0h, w0h, a00h);
        a01l = _mm256_fmadd_ps(g0l, w1l, a01l);
        a01h = _mm256_fmadd_ps(g0h, w1h, a01h);
        a10l = _mm256_fmadd_ps(g1l, w0l, a10l);
        a10h = _mm256_fmadd_ps(g1h, w0h, a10h);
        a11l = _mm256_fmadd_ps(g1l, w1l, a11l);
        a11h = _mm256_fmadd_ps(g1h, w1h, a11h);
    }
    *sums = sum4(_mm256_add_ps(a00l, a00h), _mm256_add_ps(a01l, a01h),
                 _mm256_add_ps(a10l, a10h), _mm256_add_ps(a11l, a11h));
}

AVX2 void nr_panels_input_grad_f32(int m, int n, int k, const float *g, int ldg,
                                   const float *wt, float *gx, int ldgx, int lo, int hi)
{
    for (int i = 0; i < m; i += 2) {
        int rows = min_int(2, m - i);
        const float *g0 = g + (size_t)i * ldg, *g1 = g + (size_t)(i + rows - 1) * ldg;
        for (int p = lo; p < hi; p += 2) {
            int cols = min_int(2, hi - p);
            __m128 sums;
            float lanes[4];
            block_avx2(n, k, g0, g1, wt, 16 * (size_t)p, 16 * (size_t)(p + cols - 1), &sums);
            _mm_storeu_ps(lanes, sums);
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    gx[(size_t)(i + r) * ldgx + p + c] = lanes[2 * r + c];
        }
    }
}

/* Rows gr[0..3] and columns at offsets col[0..3] of each panel: 16 sums into sums[r]. */
AVX512 static void block_avx512(int n, int k, const float *const *gr, const float *wt,
                                const size_t *col, __m128 *sums)
{
    int panels = (n + 15) / 16;
    __mmask16 last = (__mmask16)last_panel_lanes(n, panels);
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (int P = 0; P < panels; P++) {
        const float *w = wt + (size_t)P * 16 * k;
        __mmask16 mask = P < panels - 1 ? (__mmask16)0xffff : last;
        __m512 gv[4];
        for (int r = 0; r < 4; r++)
            gv[r] = _mm512_maskz_loadu_ps(mask, gr[r] + 16 * P);
        for (int c = 0; c < 4; c++) {
            __m512 wv = _mm512_loadu_ps(w + col[c]);
            for (int r = 0; r < 4; r++)
                acc[r][c] = _mm512_fmadd_ps(gv[r], wv, acc[r][c]);
        }
    }
    for (int r = 0; r < 4; r++)
        sums[r] = sum4(halves512(acc[r][0]), halves512(acc[r][1]), halves512(acc[r][2]),
                       halves512(acc[r][3]));
}

AVX512 void nr_panels_input_grad_f32_avx512(int m, int n, int k, const float *g, int ldg,
                                            const float *wt, float *gx, int ldgx, int lo,
                                            int hi)
{
    for (int i = 0; i < m; i += 4) {
        int rows = min_int(4, m - i);
        const float *gr[4];
        for (int r = 0; r < 4; r++)
            gr[r] = g + (size_t)(i + min_int(r, rows - 1)) * ldg;
        for (int p = lo; p < hi; p += 4) {
            int cols = min_int(4, hi - p);
            size_t col[4];
            __m128 sums[4];
            for (int c = 0; c < 4; c++)
                col[c] = 16 * (size_t)(p + min_int(c, cols - 1));
            block_avx512(n, k, gr, wt, col, sums);
            for (int r = 0; r < rows; r++)
                store_first(gx + (size_t)(i + r) * ldgx + p, sums[r], cols);
        }
    }
}

#endif

/* Double-precision kernels for mostly-zero inputs (see _sparse64.h): one body,
 * _sparse64_impl.h, compiled at three levels.
 *
 * - portable: scalar C with fma() (one rounding, as the vector instructions);
 * - AVX2 + FMA: 4 doubles per vector, 6 vectors (24 units) per pass over a pair of
 *   rows, 12 over one row, 8 in the update (12 or 8 accumulators of the 16 registers);
 * - AVX-512F: 8 doubles per vector, 8 vectors (64 units) per pass over a pair, 16 over
 *   one row, 8 in the update (of the 32 registers).
 * Each output's chain of operations is the same at every level, so are the bits.
 */
#include "_sparse64.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The bits of v, zero exactly for +0.0. */
static inline uint64_t nr_bits64(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

/* The index of the lowest set bit of a nonzero word. */
static inline int nr_lowest_bit(uint32_t word)
{
#if defined(__GNUC__)
    return __builtin_ctz(word);
#else
    int i = 0;
    while (!(word >> i & 1))
        i++;
    return i;
#endif
}

int nr_sparse_f64_portable_fast(void)
{
#ifdef FP_FAST_FMA
    return 1;
#else
    return 0;
#endif
}

/* ---- portable ------------------------------------------------------------------- */

#define NAME(f) f
#define VEC double
#define LANES 1
#define V_PAIR 4
#define V_ONE 8
#define V_UPDATE 4
#define vzero() 0.0
#define vload(p) (*(p))
#define vstore(p, v) (*(p) = (v))
#define vbroadcast(p) (*(p))
#define vadd(a, b) ((a) + (b))
#define vfma(a, b, c) fma((a), (b), (c))
#define vload_part(p, r) (*(p))
#define vstore_part(p, v, r) (*(p) = (v))
#include "_sparse64_impl.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))

#include <immintrin.h>

/* ---- AVX2 + FMA ----------------------------------------------------------------- */

#pragma GCC push_options
#pragma GCC target("avx2,fma")

static inline __m256i nr_lanes_below4(int r)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(r), _mm256_setr_epi64x(0, 1, 2, 3));
}

#define NAME(f) f##_avx2
#define VEC __m256d
#define LANES 4
#define V_PAIR 6
#define V_ONE 12
#define V_UPDATE 8
#define vzero() _mm256_setzero_pd()
#define vload(p) _mm256_loadu_pd(p)
#define vstore(p, v) _mm256_storeu_pd((p), (v))
#define vbroadcast(p) _mm256_broadcast_sd(p)
#define vadd(a, b) _mm256_add_pd((a), (b))
#define vfma(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define vload_part(p, r) _mm256_maskload_pd((p), nr_lanes_below4(r))
#define vstore_part(p, v, r) _mm256_maskstore_pd((p), nr_lanes_below4(r), (v))
#include "_sparse64_impl.h"

#pragma GCC pop_options

/* ---- AVX-512F ------------------------------------------------------------------- */

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

#define NAME(f) f##_avx512
#define VEC __m512d
#define LANES 8
#define V_PAIR 8
#define V_ONE 16
#define V_UPDATE 8
#define vzero() _mm512_setzero_pd()
#define vload(p) _mm512_loadu_pd(p)
#define vstore(p, v) _mm512_storeu_pd((p), (v))
#define vbroadcast(p) _mm512_set1_pd(*(p))
#define vadd(a, b) _mm512_add_pd((a), (b))
#define vfma(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define vload_part(p, r) _mm512_maskz_loadu_pd((__mmask8)((1u << (r)) - 1), (p))
#define vstore_part(p, v, r) _mm512_mask_storeu_pd((p), (__mmask8)((1u << (r)) - 1), (v))
#include "_sparse64_impl.h"

#pragma GCC pop_options

#else
/* not GCC or Clang on x86: nr_simd_available() is 0 and these are never called */

void nr_sparse_forward_f64_avx2(int m, int n, int k, const double *x, int ldx,
                                const double *wt, const double *b, double *z, int ldz) {}
void nr_sparse_update_f64_avx2(int m, int n, int k, double alpha, const double *g, int ldg,
                               const double *x, int ldx, double *wt) {}
void nr_sparse_forward_f64_avx512(int m, int n, int k, const double *x, int ldx,
                                  const double *wt, const double *b, double *z, int ldz) {}
void nr_sparse_update_f64_avx512(int m, int n, int k, double alpha, const double *g,
                                 int ldg, const double *x, int ldx, double *wt) {}

#endif

/* ---- layout ---------------------------------------------------------------------- */

void nr_sparse_to_panels_f64(int n, int k, const double *w, double *wt)
{
    for (int q = 0; q * NR_SPARSE_PANEL < n; q++) {
        int units = n - q * NR_SPARSE_PANEL < NR_SPARSE_PANEL ? n - q * NR_SPARSE_PANEL : NR_SPARSE_PANEL;
        const double *rows = w + (size_t)q * NR_SPARSE_PANEL * k;
        double *panel = wt + (size_t)q * NR_SPARSE_PANEL * k;
        for (int p = 0; p < k; p++)
            for (int r = 0; r < units; r++)
                panel[(size_t)NR_SPARSE_PANEL * p + r] = rows[(size_t)r * k + p];
    }
}

void nr_sparse_from_panels_f64(int n, int k, const double *wt, double *w)
{
    for (int q = 0; q * NR_SPARSE_PANEL < n; q++) {
        int units = n - q * NR_SPARSE_PANEL < NR_SPARSE_PANEL ? n - q * NR_SPARSE_PANEL : NR_SPARSE_PANEL;
        double *rows = w + (size_t)q * NR_SPARSE_PANEL * k;
        const double *panel = wt + (size_t)q * NR_SPARSE_PANEL * k;
        for (int p = 0; p < k; p++)
            for (int r = 0; r < units; r++)
                rows[(size_t)r * k + p] = panel[(size_t)NR_SPARSE_PANEL * p + r];
    }
}

/* Vector logistic sigmoid for float32; see _sigmoid.h.
 *
 * exp(x) for x <= 0: x = k ln 2 + r with k = round(x / ln 2) and |r| <= ln 2 / 2 (the
 * Cody-Waite split of ln 2 into a high part with trailing zeros and a low part keeps r
 * exact), then e^r by its Taylor series to the 13th power (truncation below 1e-17 of
 * the result) and 2^k put into the exponent bits.  Inputs below -104 give exactly 0:
 * their exp rounds to 0 in float32, and 1 + exp to 1 in double.
 */
#include "_sigmoid.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))

#include <immintrin.h>

#define KERNEL __attribute__((target("avx2,fma")))
#define TILE KERNEL static inline __attribute__((always_inline))

int nr_sigmoid_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* e^x for -104 <= x <= 0. */
TILE __m256d exp_nonpositive(__m256d x)
{
    /* 1 / j! for j = 13 down to 0 */
    static const double inverse_factorials[14] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
        1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
        1.0 / 6.0, 0.5, 1.0, 1.0,
    };
    __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), x);
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.90821492927058770002e-10), r);
    __m256d p = _mm256_set1_pd(inverse_factorials[0]);
    for (int j = 1; j < 14; j++)
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(inverse_factorials[j]));
    __m256i bits = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k)), _mm256_set1_epi64x(1023)), 52);
    return _mm256_mul_pd(p, _mm256_castsi256_pd(bits));
}

/* Four entries; NaN stays NaN. */
TILE __m128 sigmoid4(__m128 z)
{
    __m256d zd = _mm256_cvtps_pd(z);
    __m256d x = _mm256_or_pd(zd, _mm256_set1_pd(-0.0));               /* -|z| */
    __m256d tiny = _mm256_cmp_pd(x, _mm256_set1_pd(-104.0), _CMP_LT_OQ);
    __m256d e = exp_nonpositive(_mm256_max_pd(x, _mm256_set1_pd(-104.0)));
    e = _mm256_andnot_pd(tiny, e);
    __m128 positive = _mm256_cvtpd_ps(
        _mm256_div_pd(_mm256_set1_pd(1.0), _mm256_add_pd(_mm256_set1_pd(1.0), e)));
    __m256d e_rounded = _mm256_cvtps_pd(_mm256_cvtpd_ps(e));
    __m128 negative = _mm256_cvtpd_ps(
        _mm256_div_pd(e_rounded, _mm256_add_pd(_mm256_set1_pd(1.0), e_rounded)));
    __m128 a = _mm_blendv_ps(negative, positive, _mm_cmpge_ps(z, _mm_setzero_ps()));
    return _mm_blendv_ps(a, z, _mm_cmpunord_ps(z, z));
}

KERNEL ptrdiff_t nr_sigmoid_f32(const float *z, float *a, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(a + i, sigmoid4(_mm_loadu_ps(z + i)));
    return i;
}

/* ---- AVX-512: the same operations on eight entries, the same bits ------------------ */

#define KERNEL512 __attribute__((target("avx512f,avx2,fma")))
#define TILE512 KERNEL512 static inline __attribute__((always_inline))

int nr_sigmoid_avx512_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && nr_sigmoid_available();
}

TILE512 __m512d exp_nonpositive8(__m512d x)
{
    static const double inverse_factorials[14] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
        1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
        1.0 / 6.0, 0.5, 1.0, 1.0,
    };
    __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(6.93147180369123816490e-01), x);
    r = _mm512_fnmadd_pd(k, _mm512_set1_pd(1.90821492927058770002e-10), r);
    __m512d p = _mm512_set1_pd(inverse_factorials[0]);
    for (int j = 1; j < 14; j++)
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(inverse_factorials[j]));
    __m512i bits = _mm512_slli_epi64(
        _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_cvtpd_epi32(k)), _mm512_set1_epi64(1023)), 52);
    return _mm512_mul_pd(p, _mm512_castsi512_pd(bits));
}

/* sigmoid4 on eight entries. */
TILE512 __m256 sigmoid8(__m256 z)
{
    __m512d zd = _mm512_cvtps_pd(z);
    __m512d x = _mm512_castsi512_pd(_mm512_or_si512(                     /* -|z| */
        _mm512_castpd_si512(zd), _mm512_castpd_si512(_mm512_set1_pd(-0.0))));
    __mmask8 tiny = _mm512_cmp_pd_mask(x, _mm512_set1_pd(-104.0), _CMP_LT_OQ);
    __m512d e = exp_nonpositive8(_mm512_max_pd(x, _mm512_set1_pd(-104.0)));
    e = _mm512_mask_blend_pd(tiny, e, _mm512_setzero_pd());
    __m256 positive = _mm512_cvtpd_ps(
        _mm512_div_pd(_mm512_set1_pd(1.0), _mm512_add_pd(_mm512_set1_pd(1.0), e)));
    __m512d e_rounded = _mm512_cvtps_pd(_mm512_cvtpd_ps(e));
    __m256 negative = _mm512_cvtpd_ps(
        _mm512_div_pd(e_rounded, _mm512_add_pd(_mm512_set1_pd(1.0), e_rounded)));
    __m256 a = _mm256_blendv_ps(negative, positive, _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GE_OS));
    return _mm256_blendv_ps(a, z, _mm256_cmp_ps(z, z, _CMP_UNORD_Q));
}

KERNEL512 ptrdiff_t nr_sigmoid_f32_avx512(const float *z, float *a, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(a + i, sigmoid8(_mm256_loadu_ps(z + i)));
    if (i + 4 <= n) {
        _mm_storeu_ps(a + i, sigmoid4(_mm_loadu_ps(z + i)));
        i += 4;
    }
    return i;
}

#else

int nr_sigmoid_available(void) { return 0; }

ptrdiff_t nr_sigmoid_f32(const float *z, float *a, ptrdiff_t n) { return 0; }

int nr_sigmoid_avx512_available(void) { return 0; }

ptrdiff_t nr_sigmoid_f32_avx512(const float *z, float *a, ptrdiff_t n) { return 0; }

#endif

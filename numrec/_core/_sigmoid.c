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

#else

int nr_sigmoid_available(void) { return 0; }

ptrdiff_t nr_sigmoid_f32(const float *z, float *a, ptrdiff_t n) { return 0; }

#endif

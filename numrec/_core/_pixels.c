/* Pixels for the training loop; see _pixels.h.
 *
 * On x86-64 processors with AVX2, 8 pixels at a time are widened to 32-bit integers,
 * converted and divided in one vector each; elsewhere a plain loop does the same
 * arithmetic (a float32 division is correctly rounded either way, so both give the
 * same bits).
 */
#include "_pixels.h"

static void convert_scalar(const uint8_t *x, ptrdiff_t count, float *out)
{
    for (ptrdiff_t j = 0; j < count; j++)
        out[j] = (float)x[j] / 255.0f;
}

#if defined(__GNUC__) && defined(__x86_64__)

#include <immintrin.h>

__attribute__((target("avx2")))
static void convert_avx2(const uint8_t *x, ptrdiff_t count, float *out)
{
    const __m256 scale = _mm256_set1_ps(255.0f);
    ptrdiff_t j = 0;
    for (; j + 8 <= count; j += 8) {
        __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(x + j)));
        _mm256_storeu_ps(out + j, _mm256_div_ps(_mm256_cvtepi32_ps(v), scale));
    }
    convert_scalar(x + j, count - j, out + j);
}

static int have_avx2;

void nr_pixels_init(void)
{
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
}

static void convert(const uint8_t *x, ptrdiff_t count, float *out)
{
    if (have_avx2)
        convert_avx2(x, count, out);
    else
        convert_scalar(x, count, out);
}

#else

void nr_pixels_init(void) {}

static void convert(const uint8_t *x, ptrdiff_t count, float *out)
{
    convert_scalar(x, count, out);
}

#endif

void nr_gather_pixels_f32(const uint8_t *x, ptrdiff_t width, const int64_t *rows,
                          ptrdiff_t m, float *out)
{
    for (ptrdiff_t i = 0; i < m; i++)
        convert(x + rows[i] * width, width, out + i * width);
}

void nr_convert_pixels_f32(const uint8_t *x, ptrdiff_t count, float *out)
{
    convert(x, count, out);
}

void nr_prefetch_rows(const uint8_t *x, ptrdiff_t width, const int64_t *rows, ptrdiff_t m)
{
#if defined(__GNUC__)
    for (ptrdiff_t i = 0; i < m; i++) {
        const uint8_t *row = x + rows[i] * width;
        for (ptrdiff_t j = 0; j < width; j += 64)
            __builtin_prefetch(row + j);
        if (width > 0)
            __builtin_prefetch(row + width - 1);
    }
#else
    (void)x; (void)width; (void)rows; (void)m;
#endif
}

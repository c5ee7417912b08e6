/* One core's fused multiply-add peak: 12 independent chains of 8-wide float FMAs.
 *
 *     gcc -O3 -o fma_peak benchmarks/c/fma_peak.c && ./fma_peak
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

__attribute__((target("avx2,fma"))) static double gflops(long steps)
{
    __m256 acc[12];
    __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-4f);
    for (int i = 0; i < 12; i++)
        acc[i] = _mm256_set1_ps(i * 1e-3f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long r = 0; r < steps; r++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    float sink = 0;
    for (int i = 0; i < 12; i++)
        sink += acc[i][0];
    double seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return sink == 12345.0f ? 0 : steps * 12 * 16.0 / seconds / 1e9;
}

int main(void)
{
    for (int run = 0; run < 3; run++)
        printf("%.1f GFLOP/s on one core\n", gflops(20000000));
    return 0;
}

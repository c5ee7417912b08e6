/* numrec's own kernels on the first layer of the reference network, as the training loop
 * runs them: each thread forward and update on its share of the 256 units, with a
 * barrier after each step.  Prints GFLOP/s for all threads together.
 *
 *     gcc -O3 -fopenmp -I numrec/_core -o kernels_threads \
 *         benchmarks/c/kernels_threads.c numrec/_core/_simd.c
 *     ./kernels_threads 32 2      # batch size, threads
 *     ./kernels_threads 32 2 train-images-idx3-ubyte   # gunzipped MNIST file
 *     ./kernels_threads 32 2 train-images-idx3-ubyte sparse
 *
 * (build with numrec/_core/_sparse.c as well).  With an MNIST image file, each step takes
 * the next of 64 batches of its images (in file order, scaled to [0, 1]) instead of dense
 * made-up numbers, so the kernels skip the blank groups of columns as they do in
 * training; with `sparse`, the kernels that skip every zero input (weights in panels)
 * run instead.  Shares of units start at multiples of 16, as in training.  GFLOP/s count
 * the full product.
 */
#include "_simd.h"
#include "_sparse.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCHES 64

int main(int argc, char **argv)
{
    int m = argc > 1 ? atoi(argv[1]) : 32, threads = argc > 2 ? atoi(argv[2]) : 2;
    int n = 256, k = 784, reps = 240000 / (m > 0 ? m : 1);
    if (m < 1 || threads < 1 || !nr_simd_available()) {
        fprintf(stderr, "usage: kernels_threads BATCH THREADS [IMAGES [sparse]] (needs AVX2 and FMA)\n");
        return 2;
    }
    float *x = aligned_alloc(64, sizeof(float) * m * k), *w = aligned_alloc(64, sizeof(float) * n * k);
    float *z = aligned_alloc(64, sizeof(float) * m * n), *g = aligned_alloc(64, sizeof(float) * m * n);
    float *b = aligned_alloc(64, sizeof(float) * n);
    float *images = NULL;
    int sparse = argc > 4 && strcmp(argv[4], "sparse") == 0;
    nr_sparse_init();
    if (argc > 3) {
        FILE *f = fopen(argv[3], "rb");
        size_t count = (size_t)BATCHES * m * k;
        unsigned char *bytes = malloc(count);
        images = malloc(sizeof(float) * count);
        if (!f || fseek(f, 16, SEEK_SET) || fread(bytes, 1, count, f) != count) {
            fprintf(stderr, "cannot read %zu pixels from %s\n", count, argv[3]);
            return 2;
        }
        for (size_t i = 0; i < count; i++) images[i] = bytes[i] / 255.0f;
        free(bytes);
        fclose(f);
    }
    for (int i = 0; i < m * k; i++) x[i] = 0.001f * (i % 13);
    for (int i = 0; i < n * k; i++) w[i] = 0.001f * (i % 7);
    for (int i = 0; i < m * n; i++) g[i] = 0.01f;
    for (int i = 0; i < n; i++) b[i] = 0;
    double forward = 0, update = 0;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), team = omp_get_num_threads();
        int lo = n * t / team / 16 * 16, hi = t + 1 == team ? n : n * (t + 1) / team / 16 * 16;
        float *panels = w + (size_t)lo * k;   /* in panels, unit lo's panel starts here too */
        for (int r = 0; r < reps; r++) {
            if (images) {
                if (t == 0)
                    memcpy(x, images + (size_t)(r % BATCHES) * m * k, sizeof(float) * m * k);
#pragma omp barrier
            }
            double t0 = omp_get_wtime();
            if (sparse)
                nr_sparse_forward_f32(m, hi - lo, k, x, k, panels, b + lo, z + lo, n);
            else
                nr_dense_forward_f32(m, hi - lo, k, x, k, w + (size_t)lo * k, k, b + lo, z + lo, n);
#pragma omp barrier
            double t1 = omp_get_wtime();
            if (sparse)
                nr_sparse_update_f32(m, hi - lo, k, -1e-9f, g + lo, n, x, k, panels);
            else
                nr_dense_update_f32(m, hi - lo, k, -1e-9f, g + lo, n, x, k, w + (size_t)lo * k, k);
#pragma omp barrier
            if (t == 0) {
                forward += t1 - t0;
                update += omp_get_wtime() - t1;
            }
        }
    }
    double flop = 2.0 * m * n * k * reps;
    printf("%s, batch %d, %d threads: forward %.1f GFLOP/s, update %.1f GFLOP/s, both %.1f\n",
           sparse ? "zero-skipping kernels" : "full-product kernels", m, threads, flop / forward / 1e9, flop / update / 1e9, 2 * flop / (forward + update) / 1e9);
    free(images); free(x); free(w); free(z); free(g); free(b);
    return 0;
}

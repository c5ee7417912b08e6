/* Single-precision dense-layer kernels for x86-64 processors with AVX2 and FMA.
 *
 * All matrices are row-major with explicit row strides (ld*).  Callers check
 * nr_simd_available() first; on other processors, or other compilers, it returns 0
 * and the kernels must not be called.
 */
#ifndef NUMREC_SIMD_H
#define NUMREC_SIMD_H

#include <stddef.h>

/* 1 if this processor runs the kernels below, else 0. */
int nr_simd_available(void);

/* z[i, j] = sum_p x[i, p] * w[j, p] + b[j]   for i < m, j < n, p < k.
 * x (m, k), w (n, k), z (m, n); b has n entries, or is NULL for no bias. */
void nr_dense_forward_f32(int m, int n, int k,
                          const float *x, int ldx, const float *w, int ldw,
                          const float *b, float *z, int ldz);

/* w[j, p] += alpha * sum_i g[i, j] * x[i, p]   for j < n, p < k, i < m.
 * g (m, n), x (m, k), w (n, k). */
void nr_dense_update_f32(int m, int n, int k, float alpha,
                         const float *g, int ldg, const float *x, int ldx,
                         float *w, int ldw);

/* gx[i, p] = sum_j g[i, j] * w[j, p]   for i < m, p < k, j < n.
 * g (m, n), w (n, k), gx (m, k). */
void nr_dense_input_grad_f32(int m, int n, int k, const float *g, int ldg,
                             const float *w, int ldw, float *gx, int ldgx);

/* y[i] = fma(alpha, x[i], y[i]) for i < n: one rounding, as the update's last step. */
void nr_axpy_fma_f32(ptrdiff_t n, float alpha, const float *x, float *y);

/* AVX-512 versions (_simd512.c): the same contracts and the same results, bit for bit.
 * Callers check nr_avx512_available() (AVX-512F beside AVX2, FMA and POPCNT) first. */
int nr_avx512_available(void);

void nr_dense_forward_f32_avx512(int m, int n, int k,
                                 const float *x, int ldx, const float *w, int ldw,
                                 const float *b, float *z, int ldz);

void nr_dense_update_f32_avx512(int m, int n, int k, float alpha,
                                const float *g, int ldg, const float *x, int ldx,
                                float *w, int ldw);

void nr_dense_input_grad_f32_avx512(int m, int n, int k, const float *g, int ldg,
                                    const float *w, int ldw, float *gx, int ldgx);

#endif

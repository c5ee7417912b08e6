/* Single-precision dense-layer kernels for inputs that are mostly zeros (x86-64, AVX2 + FMA).
 *
 * They skip every zero entry of the input rows, so their cost follows the number of
 * nonzero inputs rather than the full product: on MNIST, where four pixels in five are
 * blank, they do a fifth of the multiply-adds.  They take the weights transposed, in
 * panels of NR_SPARSE_PANEL units: W[j, p] (unit j, input p < k) lies at
 *     wt[(j / 16) * 16 k + 16 p + j % 16],
 * so that a nonzero input meets its unit weights in runs of 16, and the units of a thread
 * lie together.  The last panel is padded with zeros to 16 units.  Calls cover the units
 * j0 <= j < j0 + n with j0 a multiple of 16: they take wt, b and z from unit j0 on.
 *
 * An entry is skipped when all its bits are zero (+0.0).  With finite weights a skipped
 * entry would only have added exact zeros, so the results are those of the full product
 * up to the order of the additions; -0.0, NaN and infinities are not skipped.  The order
 * of the additions for one output depends only on the inputs, never on which units a
 * call covers, so threads that share the units give the same results as one thread.
 *
 * All matrices are row-major with explicit row strides (ld*).  Callers check
 * nr_simd_available() (_simd.h) first, and keep k <= NR_SPARSE_MAX_INPUTS.
 */
#ifndef NUMREC_SPARSE_H
#define NUMREC_SPARSE_H

#include <stdint.h>

/* The widest input the kernels take (their lists of nonzero columns live on the stack). */
#define NR_SPARSE_MAX_INPUTS 8192

/* Units per panel of transposed weights. */
#define NR_SPARSE_PANEL 16

/* Fills a table the kernels use; call once before them. */
void nr_sparse_init(void);

/* Copies W (n, k), row-major, into the panels wt (padding untouched), and back.  Plain C:
 * these two need no AVX2. */
void nr_sparse_to_panels(int n, int k, const float *w, float *wt);
void nr_sparse_from_panels(int n, int k, const float *wt, float *w);

/* z[i, j] = sum_p x[i, p] * W[j, p] + b[j]   for i < m, j < n, p < k, x[i, p] != +0.0.
 * x (m, k), z (m, n), W in panels wt; b has n entries, or is NULL for no bias. */
void nr_sparse_forward_f32(int m, int n, int k, const float *x, int ldx,
                           const float *wt, const float *b, float *z, int ldz);

/* W[j, p] += alpha * sum_i g[i, j] * x[i, p]   for j < n, p < k, i < m, x[i, p] != +0.0.
 * g (m, n), x (m, k), W in panels wt. */
void nr_sparse_update_f32(int m, int n, int k, float alpha, const float *g, int ldg,
                          const float *x, int ldx, float *wt);

/* The same two for inputs given as uint8 pixels: entry x[i, p] stands for x[i, p] / 255
 * (float32, correctly rounded), as converting the pixels first would give, bit for bit. */
void nr_sparse_forward_pixels_f32(int m, int n, int k, const uint8_t *x, int ldx,
                                  const float *wt, const float *b, float *z, int ldz);
void nr_sparse_update_pixels_f32(int m, int n, int k, float alpha, const float *g, int ldg,
                                 const uint8_t *x, int ldx, float *wt);

/* Copies columns lo <= p < hi of W (n, k) from the panels wt into w (row-major, the
 * others untouched), for the dense kernels to compute g W while the layer trains on
 * panels (_panels.c; AVX2 where built for x86-64, as the kernels above). */
void nr_sparse_from_panels_columns(int n, int k, const float *wt, float *w, int lo, int hi);

/* AVX-512 versions (_sparse512.c): the same contracts and the same results, bit for bit.
 * Call nr_sparse_init_avx512() once before them; callers check nr_avx512_available()
 * (_simd.h) first. */
void nr_sparse_init_avx512(void);
void nr_sparse_forward_f32_avx512(int m, int n, int k, const float *x, int ldx,
                                  const float *wt, const float *b, float *z, int ldz);
void nr_sparse_update_f32_avx512(int m, int n, int k, float alpha, const float *g, int ldg,
                                 const float *x, int ldx, float *wt);
void nr_sparse_forward_pixels_f32_avx512(int m, int n, int k, const uint8_t *x, int ldx,
                                         const float *wt, const float *b, float *z, int ldz);
void nr_sparse_update_pixels_f32_avx512(int m, int n, int k, float alpha, const float *g,
                                        int ldg, const uint8_t *x, int ldx, float *wt);

#endif

/* Double-precision dense-layer kernels for inputs that are mostly zeros.
 *
 * The float64 counterparts of _sparse.h, in the same layout: the weights transposed in
 * panels of NR_SPARSE_PANEL (16) units, W[j, p] at wt[(j / 16) * 16 k + 16 p + j % 16],
 * the last panel padded with zeros; calls cover the units j0 <= j < j0 + n with j0 a
 * multiple of 16 and take wt, b and z from unit j0 on.
 *
 * An entry is skipped when all its bits are zero (+0.0); -0.0, NaN and infinities are
 * not.  Each output is one chain of fused multiply-adds in a fixed order:
 *     forward  z[i, j] = fl(fl(... fma(x[i, p2], W[j, p2], fma(x[i, p1], W[j, p1], +0))) + b[j])
 *              over the nonzero entries p1 < p2 < ... of row i;
 *     update   for each block of 32 rows i0 <= i < i0 + 32 (in order):
 *              s = fma-chain of x[i, p] g[i, j] over the block's rows with x[i, p] nonzero,
 *              W[j, p] = fma(alpha, s, W[j, p]).
 * So every level (portable C, AVX2 + FMA, AVX-512F) gives the same bits, and the bits
 * depend neither on which units a call covers nor on how rows are paired.
 *
 * Matrices are row-major with explicit row strides (ld*); k <= NR_SPARSE_MAX_INPUTS.
 * The AVX2 and AVX-512 versions need the checks of _simd.h (nr_simd_available(),
 * nr_avx512_available()); the portable ones run anywhere.
 */
#ifndef NUMREC_SPARSE64_H
#define NUMREC_SPARSE64_H

#include "_sparse.h"

/* 1 if the portable versions' fma() is a single instruction (FP_FAST_FMA), so that they
 * are worth running instead of BLAS; they give the same bits either way. */
int nr_sparse_f64_portable_fast(void);

/* Copies W (n, k), row-major, into the panels wt (padding untouched), and back. */
void nr_sparse_to_panels_f64(int n, int k, const double *w, double *wt);
void nr_sparse_from_panels_f64(int n, int k, const double *wt, double *w);

/* z[i, j] = sum_p x[i, p] * W[j, p] + b[j]   for i < m, j < n, p < k, x[i, p] != +0.0.
 * x (m, k), z (m, n), W in panels wt; b has n entries, or is NULL for no bias. */
void nr_sparse_forward_f64(int m, int n, int k, const double *x, int ldx,
                           const double *wt, const double *b, double *z, int ldz);
void nr_sparse_forward_f64_avx2(int m, int n, int k, const double *x, int ldx,
                                const double *wt, const double *b, double *z, int ldz);
void nr_sparse_forward_f64_avx512(int m, int n, int k, const double *x, int ldx,
                                  const double *wt, const double *b, double *z, int ldz);

/* W[j, p] += alpha * sum_i g[i, j] * x[i, p]   for j < n, p < k, i < m, x[i, p] != +0.0.
 * g (m, n), x (m, k), W in panels wt. */
void nr_sparse_update_f64(int m, int n, int k, double alpha, const double *g, int ldg,
                          const double *x, int ldx, double *wt);
void nr_sparse_update_f64_avx2(int m, int n, int k, double alpha, const double *g, int ldg,
                               const double *x, int ldx, double *wt);
void nr_sparse_update_f64_avx512(int m, int n, int k, double alpha, const double *g,
                                 int ldg, const double *x, int ldx, double *wt);

#endif

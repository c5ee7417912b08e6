/* The logistic sigmoid in float32, four entries at a time on processors with AVX2 and FMA.
 *
 * nr_sigmoid_f32 gives what the scalar form gives,
 *     a = z >= 0 ? (float)(1 / (1 + exp(-z)))
 *                : (float)(e / (1 + e)),  e = (float)exp(z),
 * in double arithmetic,
 * but with its own exp in double (within about 2 ulp, against the C library's correctly
 * rounded one): the results round to the same float32 except where an exact result lies
 * within a few double ulp of a rounding boundary between two floats (about one entry in
 * 10^8).  Callers check nr_sigmoid_available() first.
 */
#ifndef NUMREC_SIGMOID_H
#define NUMREC_SIGMOID_H

#include <stddef.h>

int nr_sigmoid_available(void);

/* a[i] = sigmoid(z[i]) for the first n - n % 4 entries (a may be z); returns how many:
 * the caller runs the scalar form on the rest. */
ptrdiff_t nr_sigmoid_f32(const float *z, float *a, ptrdiff_t n);

/* The same, eight entries at a time with AVX-512F, giving nr_sigmoid_f32's bits (it
 * also covers the first n - n % 4 entries).  Callers check nr_sigmoid_avx512_available()
 * first. */
int nr_sigmoid_avx512_available(void);
ptrdiff_t nr_sigmoid_f32_avx512(const float *z, float *a, ptrdiff_t n);

#endif

/* Pixels for the training loop: rows of uint8 images to float32 in [0, 1].
 *
 * Each pixel v becomes v / 255.0f, the float32 nearest to v / 255 (the same value as
 * rounding v * (1.0 / 255) computed in double).
 */
#ifndef NUMREC_PIXELS_H
#define NUMREC_PIXELS_H

#include <stddef.h>
#include <stdint.h>

/* Picks the code for this processor; call once before the functions below. */
void nr_pixels_init(void);

/* out[i, :] = x[rows[i], :] / 255 for i < m; x and out have `width` columns. */
void nr_gather_pixels_f32(const uint8_t *x, ptrdiff_t width, const int64_t *rows,
                          ptrdiff_t m, float *out);

/* out[i] = x[i] / 255 for i < count. */
void nr_convert_pixels_f32(const uint8_t *x, ptrdiff_t count, float *out);

/* Asks the processor to start loading rows `rows[:m]` of x into the caches. */
void nr_prefetch_rows(const uint8_t *x, ptrdiff_t width, const int64_t *rows, ptrdiff_t m);

#endif

/* The optimizers' element-wise steps, in float32 and float64, at three widths.
 *
 * Every operation is an IEEE addition, multiplication, division or square root, each
 * correctly rounded and none fused (the file is compiled with -ffp-contract=off), so
 * the levels give the same bits: only the number of entries per instruction changes.
 * The arrays of one call must not overlap.
 *
 * Adam, for i in [0, n), in the order of PyTorch's _single_tensor_adam:
 *     theta = param[i] * shrink
 *     g     = grad[i] + l2 * theta
 *     m     = exp_avg[i] + weight1 * (g - exp_avg[i])   (weight1 < 0.5; torch.lerp)
 *           = g - (g - exp_avg[i]) * (1 - weight1)      (otherwise)
 *     v     = exp_avg_sq[i] * beta2 + weight2 * g * g
 *     denom = sqrt(v) / bias_correction2_sqrt + eps
 *     exp_avg[i] = m; exp_avg_sq[i] = v; param[i] = theta + neg_step_size * m / denom
 *
 * SGD with PyTorch's momentum (velocity NULL: none; weight_decay 0: no decay term):
 *     d = grad[i]  (+ weight_decay * param[i])
 *     velocity[i] = momentum * velocity[i] + d
 *     d = velocity[i]  (nesterov: d + momentum * velocity[i])
 *     param[i] = param[i] - lr * d
 * and the classic momentum (weight_decay 0 adds an exact 0):
 *     velocity[i] = momentum * velocity[i] + lr * (grad[i] + weight_decay * param[i])
 *     param[i] = param[i] - velocity[i]
 */
#ifndef NUMREC_STEPS_H
#define NUMREC_STEPS_H

#include <stddef.h>

/* The highest level this processor runs: 2 (AVX-512F), 1 (AVX2) or 0 (portable). */
int nr_steps_available_level(void);

/* Each step at `level` (0, 1 or 2; a level the processor lacks must not be asked). */
void nr_adam_f32(int level, float *param, const float *grad, float *exp_avg,
                 float *exp_avg_sq, ptrdiff_t n, float shrink, float l2, float weight1,
                 float beta2, float weight2, float bias_correction2_sqrt, float eps,
                 float neg_step_size);
void nr_adam_f64(int level, double *param, const double *grad, double *exp_avg,
                 double *exp_avg_sq, ptrdiff_t n, double shrink, double l2, double weight1,
                 double beta2, double weight2, double bias_correction2_sqrt, double eps,
                 double neg_step_size);
void nr_sgd_f32(int level, float *param, const float *grad, float *velocity, ptrdiff_t n,
                float lr, float momentum, float weight_decay, int nesterov);
void nr_sgd_f64(int level, double *param, const double *grad, double *velocity,
                ptrdiff_t n, double lr, double momentum, double weight_decay, int nesterov);
void nr_classic_momentum_f32(int level, float *param, const float *grad, float *velocity,
                             ptrdiff_t n, float lr, float momentum, float weight_decay);
void nr_classic_momentum_f64(int level, double *param, const double *grad,
                             double *velocity, ptrdiff_t n, double lr, double momentum,
                             double weight_decay);

#endif

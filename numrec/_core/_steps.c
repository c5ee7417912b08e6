/* The optimizers' element-wise steps; see _steps.h.
 *
 * Each loop body is compiled three times: for any x86-64 (SSE2), with AVX2 and with
 * AVX-512F, and GCC vectorises each.  Adam's two divisions and square root per entry
 * bound its speed, so the wider the vectors the faster (about 2x from SSE2 to AVX2
 * here); SGD's steps read and write more than they compute.  Every choice between
 * formulas (the lerp's form, weight decay or not, Nesterov) is made outside the loops.
 */
#include "_steps.h"

#include <math.h>

#define ADAM_ENTRY(T, SQRT, M)                                                           \
    {                                                                                    \
        T theta = param[i] * shrink;                                                     \
        T g = grad[i] + l2 * theta;                                                      \
        T m = M;                                                                         \
        T v = exp_avg_sq[i] * beta2 + weight2 * g * g;                                   \
        T denom = SQRT(v) / bias_correction2_sqrt + eps;                                 \
        exp_avg[i] = m;                                                                  \
        exp_avg_sq[i] = v;                                                               \
        param[i] = theta + neg_step_size * m / denom;                                    \
    }

#define ADAM_BODY(T, SQRT)                                                               \
    {                                                                                    \
        if (weight1 < (T)0.5) {                                                          \
            for (ptrdiff_t i = 0; i < n; i++)                                            \
                ADAM_ENTRY(T, SQRT, exp_avg[i] + weight1 * (g - exp_avg[i]))             \
        } else {                                                                         \
            T rest = (T)1 - weight1;                                                     \
            for (ptrdiff_t i = 0; i < n; i++)                                            \
                ADAM_ENTRY(T, SQRT, g - (g - exp_avg[i]) * rest)                         \
        }                                                                                \
    }

#define ADAM_SIGNATURE(T)                                                                \
    (T *restrict param, const T *restrict grad, T *restrict exp_avg,                     \
     T *restrict exp_avg_sq, ptrdiff_t n, T shrink, T l2, T weight1, T beta2, T weight2, \
     T bias_correction2_sqrt, T eps, T neg_step_size)

#define ADAM_ARGUMENTS                                                                   \
    (param, grad, exp_avg, exp_avg_sq, n, shrink, l2, weight1, beta2, weight2,           \
     bias_correction2_sqrt, eps, neg_step_size)

/* SGD: the loop for one choice of (velocity, weight decay, Nesterov). */
#define SGD_LOOP(T, DECAY, VELOCITY, NESTEROV)                                              \
    for (ptrdiff_t i = 0; i < n; i++) {                                                  \
        T d = grad[i];                                                                   \
        if (DECAY)                                                                       \
            d = d + weight_decay * param[i];                                             \
        if (VELOCITY) {                                                                  \
            velocity[i] = momentum * velocity[i] + d;                                    \
            d = NESTEROV ? d + momentum * velocity[i] : velocity[i];                     \
        }                                                                                \
        param[i] = param[i] - lr * d;                                                    \
    }

#define SGD_BODY(T)                                                                       \
    {                                                                                    \
        int decay = weight_decay != 0;                                                   \
        if (velocity == NULL) {                                                          \
            if (decay) SGD_LOOP(T, 1, 0, 0) else SGD_LOOP(T, 0, 0, 0)                          \
        } else if (nesterov) {                                                           \
            if (decay) SGD_LOOP(T, 1, 1, 1) else SGD_LOOP(T, 0, 1, 1)                          \
        } else {                                                                         \
            if (decay) SGD_LOOP(T, 1, 1, 0) else SGD_LOOP(T, 0, 1, 0)                          \
        }                                                                                \
    }

#define SGD_SIGNATURE(T)                                                                 \
    (T *restrict param, const T *restrict grad, T *restrict velocity, ptrdiff_t n, T lr, \
     T momentum, T weight_decay, int nesterov)

#define SGD_ARGUMENTS (param, grad, velocity, n, lr, momentum, weight_decay, nesterov)

#define CLASSIC_BODY                                                                     \
    {                                                                                    \
        for (ptrdiff_t i = 0; i < n; i++) {                                              \
            velocity[i] = momentum * velocity[i] + lr * (grad[i] + weight_decay * param[i]); \
            param[i] = param[i] - velocity[i];                                           \
        }                                                                                \
    }

#define CLASSIC_SIGNATURE(T)                                                             \
    (T *restrict param, const T *restrict grad, T *restrict velocity, ptrdiff_t n, T lr, \
     T momentum, T weight_decay)

#define CLASSIC_ARGUMENTS (param, grad, velocity, n, lr, momentum, weight_decay)

#define STEP_KERNELS(ATTRIBUTES, SUFFIX, T, SQRT)                                        \
    ATTRIBUTES static void adam_##T##_##SUFFIX ADAM_SIGNATURE(T) ADAM_BODY(T, SQRT)      \
    ATTRIBUTES static void sgd_##T##_##SUFFIX SGD_SIGNATURE(T) SGD_BODY(T)                \
    ATTRIBUTES static void classic_##T##_##SUFFIX CLASSIC_SIGNATURE(T) CLASSIC_BODY

#define LEVEL_KERNELS(ATTRIBUTES, SUFFIX)                                                \
    STEP_KERNELS(ATTRIBUTES, SUFFIX, float, sqrtf)                                       \
    STEP_KERNELS(ATTRIBUTES, SUFFIX, double, sqrt)

LEVEL_KERNELS(, portable)

#if defined(__GNUC__) && defined(__x86_64__)

LEVEL_KERNELS(__attribute__((target("avx2"))), avx2)
LEVEL_KERNELS(__attribute__((target("avx512f,avx2"))), avx512)

int nr_steps_available_level(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2"))
        return 2;
    return __builtin_cpu_supports("avx2") ? 1 : 0;
}

#define DISPATCH(NAME, ARGUMENTS)                                                        \
    switch (level) {                                                                     \
    case 2: NAME##_avx512 ARGUMENTS; break;                                              \
    case 1: NAME##_avx2 ARGUMENTS; break;                                                \
    default: NAME##_portable ARGUMENTS;                                                  \
    }

#else

int nr_steps_available_level(void) { return 0; }

#define DISPATCH(NAME, ARGUMENTS) ((void)level, NAME##_portable ARGUMENTS)

#endif

void nr_adam_f32(int level, float *param, const float *grad, float *exp_avg,
                 float *exp_avg_sq, ptrdiff_t n, float shrink, float l2, float weight1,
                 float beta2, float weight2, float bias_correction2_sqrt, float eps,
                 float neg_step_size)
{
    DISPATCH(adam_float, ADAM_ARGUMENTS);
}

void nr_adam_f64(int level, double *param, const double *grad, double *exp_avg,
                 double *exp_avg_sq, ptrdiff_t n, double shrink, double l2, double weight1,
                 double beta2, double weight2, double bias_correction2_sqrt, double eps,
                 double neg_step_size)
{
    DISPATCH(adam_double, ADAM_ARGUMENTS);
}

void nr_sgd_f32(int level, float *param, const float *grad, float *velocity, ptrdiff_t n,
                float lr, float momentum, float weight_decay, int nesterov)
{
    DISPATCH(sgd_float, SGD_ARGUMENTS);
}

void nr_sgd_f64(int level, double *param, const double *grad, double *velocity,
                ptrdiff_t n, double lr, double momentum, double weight_decay, int nesterov)
{
    DISPATCH(sgd_double, SGD_ARGUMENTS);
}

void nr_classic_momentum_f32(int level, float *param, const float *grad, float *velocity,
                             ptrdiff_t n, float lr, float momentum, float weight_decay)
{
    DISPATCH(classic_float, CLASSIC_ARGUMENTS);
}

void nr_classic_momentum_f64(int level, double *param, const double *grad,
                             double *velocity, ptrdiff_t n, double lr, double momentum,
                             double weight_decay)
{
    DISPATCH(classic_double, CLASSIC_ARGUMENTS);
}

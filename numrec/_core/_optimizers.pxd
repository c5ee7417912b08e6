cdef class Optimizer:
    # Kernels for compiled optimizers, called by the fused training loop without the GIL.
    # update: apply one step to the n values of parameter number `slot` given its gradient.
    # plain_step_scale: s if the update is exactly `param += s * grad` with no state (lets
    # the loop fold the step into the matrix product), otherwise NaN.
    cdef void update_f32(self, float* param, const float* grad, Py_ssize_t n,
                         Py_ssize_t slot) noexcept nogil
    cdef void update_f64(self, double* param, const double* grad, Py_ssize_t n,
                         Py_ssize_t slot) noexcept nogil
    cdef double plain_step_scale(self) noexcept nogil


cdef class SGD(Optimizer):
    cdef readonly double lr

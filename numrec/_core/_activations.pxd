cdef class Activation:
    # Kernels for compiled activations, called by the fused training loop without the GIL.
    # forward: a = f(z), elementwise over n values.  backward: g *= f'(z), in place.
    cdef void forward_f32(self, const float* z, float* a, Py_ssize_t n) noexcept nogil
    cdef void forward_f64(self, const double* z, double* a, Py_ssize_t n) noexcept nogil
    cdef void backward_f32(self, const float* z, const float* a, float* g,
                           Py_ssize_t n) noexcept nogil
    cdef void backward_f64(self, const double* z, const double* a, double* g,
                           Py_ssize_t n) noexcept nogil


cdef class ElementwiseActivation(Activation):
    pass


cdef class LeakyReLU(ElementwiseActivation):
    cdef readonly double alpha


cdef class Sigmoid(ElementwiseActivation):
    pass

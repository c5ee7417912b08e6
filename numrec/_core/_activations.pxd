cdef class Activation:
    # The kernel contract of compiled activations (docs/architecture.rst), called by the
    # compiled loop without the GIL.  z, a and g hold `rows` rows of `width` values, each
    # row `stride` values after the one before (stride >= width: a thread's share of a
    # layer's units is a block of columns).  forward: a = f(z).  backward: g *= f'(z), in
    # place (dL/da into dL/dz).  A class that declares rowwise = True is only called on
    # whole rows (width is the row's full length); an elementwise one on any block.
    cdef object _z, _a          # what forward_pass() keeps for backward_pass()
    cdef void forward_f32(self, const float* z, float* a, Py_ssize_t rows,
                          Py_ssize_t width, Py_ssize_t stride) noexcept nogil
    cdef void forward_f64(self, const double* z, double* a, Py_ssize_t rows,
                          Py_ssize_t width, Py_ssize_t stride) noexcept nogil
    cdef void backward_f32(self, const float* z, const float* a, float* g, Py_ssize_t rows,
                           Py_ssize_t width, Py_ssize_t stride) noexcept nogil
    cdef void backward_f64(self, const double* z, const double* a, double* g,
                           Py_ssize_t rows, Py_ssize_t width,
                           Py_ssize_t stride) noexcept nogil


cdef class ElementwiseActivation(Activation):
    # A subclass implements the function on n contiguous values; the row kernels above
    # call it once per row, or once for the whole block when its rows are contiguous.
    cdef void map_forward_f32(self, const float* z, float* a, Py_ssize_t n) noexcept nogil
    cdef void map_forward_f64(self, const double* z, double* a, Py_ssize_t n) noexcept nogil
    cdef void map_backward_f32(self, const float* z, const float* a, float* g,
                               Py_ssize_t n) noexcept nogil
    cdef void map_backward_f64(self, const double* z, const double* a, double* g,
                               Py_ssize_t n) noexcept nogil


cdef class LeakyReLU(ElementwiseActivation):
    cdef readonly double alpha


cdef class ReLU(ElementwiseActivation):
    pass


cdef class Sigmoid(ElementwiseActivation):
    pass


cdef class Tanh(ElementwiseActivation):
    pass


cdef class Identity(ElementwiseActivation):
    pass


cdef class Softmax(Activation):
    pass

cdef class Loss:
    # Kernel for compiled losses: for a batch of m rows of n outputs, write dL/da into g
    # (L is the mean over the batch) and return the loss summed over the batch.
    cdef double value_and_gradient_f32(self, const float* a, const float* y, float* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil
    cdef double value_and_gradient_f64(self, const double* a, const double* y, double* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil


cdef class MSE(Loss):
    pass


cdef class CrossEntropy(Loss):
    cdef readonly double eps


cdef class SoftmaxCrossEntropy(Loss):
    pass


cdef class BinaryCrossEntropy(Loss):
    pass

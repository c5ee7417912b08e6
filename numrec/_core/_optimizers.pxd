cdef class Optimizer:
    # The kernel contract of compiled optimizers (docs/architecture.rst), called by the
    # compiled loop without the GIL.  prepare() has allocated the state of every
    # parameter (slot = its position in the model's parameters()) before the loop.
    # advance: one call per batch, before any update of that batch (thread 0).
    # update: the step on elements begin:end of parameter `slot`, flattened, given its
    # gradient; threads update disjoint ranges of one parameter at once.
    cdef readonly long long steps
    cdef readonly int state_per_parameter
    cdef list _state                # prepare(): the state arrays, slot by slot
    cdef void** _state_data         # their data: [slot * state_per_parameter + k]
    cdef Py_ssize_t _n_slots
    cdef object _prepared_for       # the shapes and dtypes prepare() allocated for
    cdef void advance(self) noexcept nogil
    cdef void update_f32(self, Py_ssize_t slot, float* param, const float* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil
    cdef void update_f64(self, Py_ssize_t slot, double* param, const double* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil


cdef class SGD(Optimizer):
    cdef readonly double lr
    cdef readonly double momentum
    cdef readonly bint nesterov
    cdef readonly double weight_decay

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
    cdef double _lr                 # the property lr (writable, checked)
    cdef readonly double momentum
    cdef readonly bint nesterov
    cdef readonly bint classic
    cdef readonly double weight_decay


cdef class Adam(Optimizer):
    cdef double _lr                 # the property lr (writable, checked)
    cdef readonly double beta1
    cdef readonly double beta2
    cdef readonly double eps
    cdef readonly double weight_decay
    cdef bint _decoupled            # AdamW: theta *= 1 - lr * weight_decay, no L2 term
    # The scalars of the current step, set by advance() (the same for every parameter):
    cdef double _neg_step_size      # -lr / (1 - beta1 ** t)
    cdef double _bias_correction2_sqrt   # (1 - beta2 ** t) ** 0.5
    cdef double _shrink             # 1 - lr * weight_decay (AdamW), else 1
    cdef double _l2                 # weight_decay (Adam), else 0
    cdef void _set_step_scalars(self) noexcept nogil


cdef class AdamW(Adam):
    pass

"""Optimizers: the abstract ``Optimizer`` and its compiled implementations."""
from cython cimport floating
from libc.stdlib cimport malloc, free
cimport numpy as cnp

import numpy as np

from numrec._core._copying import reduce_component

from numrec._core._memory import aligned_zeros
from numrec._core._validation import check_finite_number, FLOAT_DTYPES

cnp.import_array()


cdef class Optimizer:
    """Abstract optimizer: updates parameters in place from their gradients.

    ``step(parameters, gradients)`` receives two lists of the same length, in the model's
    order (for each :class:`~numrec.Dense`: ``weights`` then ``bias``), and must change the
    parameter arrays **in place**.  An optimizer with state (momentum, Adam's moments)
    keys it by position in these lists.  To write one in Python, subclass it and implement
    ``step``; inside ``fit``, the model's compiled parts then compute the gradients and
    the optimizer runs per batch.

    Compiled optimizers fill the kernel contract (``update_f32/f64`` on a range of a
    parameter, so that threads share the update) and declare it:

    ``kernel_dtypes``
        The dtypes whose update kernels the class implements; empty for the abstract
        class, which the compiled loop therefore never admits.
    ``state_per_parameter``
        Arrays of state kept per parameter (the shape of the parameter each), set by
        the constructor; :meth:`prepare` allocates them before training, zeroed.
    :meth:`folded_step`
        Whether the update is exactly ``param += s * grad`` with no state, which layers
        that can apply it inside their gradient product do.

    ``steps`` counts the updates made (one per batch), for bias corrections.
    """

    kernel_dtypes = ()

    def __cinit__(self, *args, **kwargs):
        if type(self) is Optimizer:
            raise TypeError("Optimizer is abstract: subclass it and implement step")
        self._state_data = NULL
        self._state = []

    def __dealloc__(self):
        free(self._state_data)

    def __reduce__(self):
        """For ``pickle`` and ``copy``: see :mod:`numrec._core._copying`."""
        return reduce_component(self, Optimizer)

    def step(self, parameters, gradients):
        """Update every array in ``parameters`` in place from ``gradients``."""
        raise NotImplementedError(f"{type(self).__name__} must implement step(parameters, gradients)")

    def prepare(self, parameters):
        """Allocate the state for ``parameters`` (the model's, in its order).

        Called by :meth:`~numrec.Sequential.fit` before training and by :meth:`step`.
        State already allocated for the same parameter arrays is kept, so a second
        ``fit`` of the same model continues where the first stopped (as a PyTorch
        optimizer does); other parameters (another model) start afresh, with ``steps``
        at 0.
        """
        signature = tuple((param.__array_interface__["data"][0], param.shape, param.dtype.str)
                          for param in parameters)
        if signature == self._prepared_for:
            return
        state = [[aligned_zeros(param.shape, param.dtype)
                  for _ in range(self.state_per_parameter)] for param in parameters]
        cdef Py_ssize_t count = len(state) * self.state_per_parameter
        cdef void** data = <void**>malloc(max(count, 1) * sizeof(void*))
        if data == NULL:
            raise MemoryError()
        for slot, arrays in enumerate(state):
            for k, array in enumerate(arrays):
                data[slot * self.state_per_parameter + k] = cnp.PyArray_DATA(array)
        free(self._state_data)
        self._state_data = data
        self._state = state
        self._n_slots = len(state)
        self._prepared_for = signature
        self.steps = 0

    def state(self):
        """The state arrays, one list per parameter (empty lists for a stateless one)."""
        return [list(arrays) for arrays in self._state]

    def folded_step(self):
        """``s`` if every update is exactly ``param += s * grad`` with no state, else None.

        The compiled loop then lets layers that declare the ``"folded_sgd"`` capability
        apply the step inside their gradient product (one pass over the weights instead
        of three).  The abstract optimizer never folds.
        """
        return None

    def get_config(self):
        """Return the constructor arguments as a JSON-serialisable dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"

    cdef void advance(self) noexcept nogil:
        self.steps += 1

    # The abstract kernels do nothing: the compiled loop never calls them, because it
    # admits only classes that declare their kernels (kernel_dtypes).

    cdef void update_f32(self, Py_ssize_t slot, float* param, const float* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        pass

    cdef void update_f64(self, Py_ssize_t slot, double* param, const double* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        pass

    def _run(self, floating[::1] param, floating[::1] grad, Py_ssize_t slot):
        """One update of the whole parameter ``slot`` through the kernels."""
        cdef Py_ssize_t n = param.shape[0]
        if grad.shape[0] != n:
            raise ValueError("a parameter and its gradient must have the same size")
        if self.state_per_parameter and (not 0 <= slot < self._n_slots
                                         or self._state[slot][0].size != n):
            raise ValueError(f"slot {slot} has no state of {n} values: call prepare() first")
        if n == 0:
            return
        with nogil:
            if floating is float:
                self.update_f32(slot, &param[0], &grad[0], 0, n)
            else:
                self.update_f64(slot, &param[0], &grad[0], 0, n)

    def _check_prepared(self, Py_ssize_t slot, param):
        """Raise ValueError unless :meth:`prepare` has allocated the state of ``param``
        as parameter ``slot`` (the compiled loop's kernels trust it)."""
        if self.state_per_parameter == 0:
            return
        if not 0 <= slot < self._n_slots or any(
                state.shape != param.shape or state.dtype != param.dtype
                for state in self._state[slot]):
            raise ValueError(f"{type(self).__name__} has no state for parameter {slot} of "
                             f"shape {param.shape}: call prepare(model.parameters()) first")

    def _advance(self):
        """Count one step (the segmented loop's call, once per batch)."""
        self.advance()

    def _update(self, Py_ssize_t slot, param, grad):
        """The update of parameter ``slot`` alone (prepared already), in place."""
        if not param.flags.c_contiguous:
            raise ValueError(f"parameter {slot} must be C-contiguous to be updated in place")
        self._run(param.reshape(-1), np.ascontiguousarray(grad).reshape(-1), slot)

    def _compiled_step(self, parameters, gradients):
        """``step`` for compiled subclasses: prepare, count the step, run the kernels."""
        parameters, gradients = _check_pairs(parameters, gradients)
        self.prepare(parameters)
        self.advance()
        for slot, (param, grad) in enumerate(zip(parameters, gradients)):
            self._run(param.reshape(-1), grad.reshape(-1), slot)


def _check_pairs(parameters, gradients):
    parameters, gradients = list(parameters), list(gradients)
    if len(parameters) != len(gradients):
        raise ValueError(
            f"parameters and gradients must have the same length, "
            f"got {len(parameters)} and {len(gradients)}"
        )
    for index, (param, grad) in enumerate(zip(parameters, gradients)):
        if not isinstance(param, np.ndarray) or not isinstance(grad, np.ndarray):
            raise TypeError(f"parameters[{index}] and gradients[{index}] must be numpy arrays")
        if param.dtype not in FLOAT_DTYPES or grad.dtype != param.dtype:
            raise TypeError(
                f"parameters[{index}] and gradients[{index}] must share a float32 or float64 "
                f"dtype, got {param.dtype} and {grad.dtype}"
            )
        if param.shape != grad.shape:
            raise ValueError(
                f"gradients[{index}] must have shape {param.shape}, got {grad.shape}"
            )
        if not (param.flags.c_contiguous and param.flags.writeable):
            raise ValueError(f"parameters[{index}] must be a writeable C-contiguous array")
    return parameters, [np.ascontiguousarray(grad) for grad in gradients]


cdef class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional momentum and weight decay.

    For a parameter :math:`\theta` with gradient :math:`g`, at step :math:`t`
    (PyTorch's ``torch.optim.SGD`` with ``dampening=0``, the same formulas and order):

    .. math::

        d_t &= g_t + \lambda \theta_{t-1} \\
        v_t &= \mu v_{t-1} + d_t \qquad (v_0 = 0, \text{ so } v_1 = d_1) \\
        \theta_t &= \theta_{t-1} - \eta \, u_t, \qquad
        u_t = \begin{cases} d_t + \mu v_t & \text{nesterov} \\ v_t & \text{otherwise}
        \end{cases}

    With ``momentum=0`` this is plain SGD, :math:`\theta \leftarrow \theta - \eta g`,
    which the compiled loop folds into the layers' gradient products.

    The classic momentum of the reference network's code,
    :math:`v \leftarrow \mu v + \eta g,\ \theta \leftarrow \theta - v`, is the same
    sequence of parameters for a constant learning rate: its :math:`v` is
    :math:`\eta` times this one.

    Parameters
    ----------
    lr : float, default 0.5
        Learning rate :math:`\eta`, positive.  With the quadratic cost and a sigmoid
        output, rates of about 1 and above tend to diverge.
    momentum : float, default 0
        :math:`\mu`, in [0, 1).
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0``).
    weight_decay : float, default 0
        :math:`\lambda \ge 0`, L2 penalty added to the gradient.
    """

    kernel_dtypes = ("float32", "float64")

    def __init__(self, lr=0.5, momentum=0.0, *, nesterov=False, weight_decay=0.0):
        self.lr = check_finite_number(lr, "lr", positive=True)
        self.momentum = check_finite_number(momentum, "momentum", minimum=0.0)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be below 1, got {self.momentum!r}")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum above 0")
        self.nesterov = nesterov
        self.weight_decay = check_finite_number(weight_decay, "weight_decay", minimum=0.0)
        self.state_per_parameter = 1 if self.momentum > 0 else 0

    def get_config(self):
        config = {"lr": self.lr}
        if self.momentum:
            config.update(momentum=self.momentum, nesterov=bool(self.nesterov))
        if self.weight_decay:
            config["weight_decay"] = self.weight_decay
        return config

    def folded_step(self):
        """``-lr`` for plain SGD (no momentum, no weight decay), else None."""
        if self.momentum == 0 and self.weight_decay == 0:
            return -self.lr
        return None

    def step(self, parameters, gradients):
        """Apply one step (see the formulas above) to each parameter in place."""
        self._compiled_step(parameters, gradients)

    cdef void update_f32(self, Py_ssize_t slot, float* param, const float* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        cdef float* velocity = NULL
        if self.state_per_parameter:
            velocity = <float*>self._state_data[slot]
        _sgd_update(param, grad, velocity, begin, end, <float>self.lr, <float>self.momentum,
                    <float>self.weight_decay, self.nesterov)

    cdef void update_f64(self, Py_ssize_t slot, double* param, const double* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        cdef double* velocity = NULL
        if self.state_per_parameter:
            velocity = <double*>self._state_data[slot]
        _sgd_update(param, grad, velocity, begin, end, self.lr, self.momentum,
                    self.weight_decay, self.nesterov)


cdef inline void _sgd_update(floating* param, const floating* grad, floating* velocity,
                             Py_ssize_t begin, Py_ssize_t end, floating lr,
                             floating momentum, floating weight_decay,
                             bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d
    if velocity == NULL and weight_decay == 0:
        for i in range(begin, end):
            param[i] -= lr * grad[i]
        return
    for i in range(begin, end):
        d = grad[i]
        if weight_decay != 0:
            d = d + weight_decay * param[i]
        if velocity != NULL:
            velocity[i] = momentum * velocity[i] + d
            d = d + momentum * velocity[i] if nesterov else velocity[i]
        param[i] -= lr * d

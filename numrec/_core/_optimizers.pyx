"""Optimizers: the abstract ``Optimizer`` and its compiled implementations."""
from cython cimport floating
from libc.math cimport NAN

import numpy as np

from numrec._core._validation import check_finite_number, FLOAT_DTYPES


cdef class Optimizer:
    """Abstract optimizer: updates parameters in place from their gradients.

    ``step(parameters, gradients)`` receives two lists of the same length, in the model's
    order (for each :class:`~numrec.Dense`: ``weights`` then ``bias``), and must change the
    parameter arrays **in place**.  An optimizer with state (momentum, Adam's moments)
    keys it by position in these lists.  To write one in Python, subclass it and implement
    ``step``; a model trained with it uses the general per-batch loop.
    """

    def __cinit__(self, *args, **kwargs):
        if type(self) is Optimizer:
            raise TypeError("Optimizer is abstract: subclass it and implement step")

    def step(self, parameters, gradients):
        """Update every array in ``parameters`` in place from ``gradients``."""
        raise NotImplementedError(f"{type(self).__name__} must implement step(parameters, gradients)")

    def get_config(self):
        """Return the constructor arguments as a JSON-serialisable dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"

    cdef void update_f32(self, float* param, const float* grad, Py_ssize_t n,
                         Py_ssize_t slot) noexcept nogil:
        pass

    cdef void update_f64(self, double* param, const double* grad, Py_ssize_t n,
                         Py_ssize_t slot) noexcept nogil:
        pass

    cdef double plain_step_scale(self) noexcept nogil:
        return NAN


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
    r"""Plain stochastic gradient descent.

    .. math::

        \theta \leftarrow \theta - \eta \, \nabla_\theta L

    Parameters
    ----------
    lr : float, default 0.5
        Learning rate :math:`\eta`, positive.  With the quadratic cost and a sigmoid
        output, rates of about 1 and above tend to diverge.
    """

    def __init__(self, lr=0.5):
        self.lr = check_finite_number(lr, "lr", positive=True)

    def get_config(self):
        return {"lr": self.lr}

    def step(self, parameters, gradients):
        """Apply :math:`\\theta \\leftarrow \\theta - \\eta g` to each parameter in place."""
        parameters, gradients = _check_pairs(parameters, gradients)
        for slot, (param, grad) in enumerate(zip(parameters, gradients)):
            self._run(param.reshape(-1), grad.reshape(-1), slot)

    def _run(self, floating[::1] param, floating[::1] grad, Py_ssize_t slot):
        cdef Py_ssize_t n = param.shape[0]
        if grad.shape[0] != n:
            raise ValueError("a parameter and its gradient must have the same size")
        if n == 0:
            return
        with nogil:
            if floating is float:
                self.update_f32(&param[0], &grad[0], n, slot)
            else:
                self.update_f64(&param[0], &grad[0], n, slot)

    cdef void update_f32(self, float* param, const float* grad, Py_ssize_t n,
                         Py_ssize_t slot) noexcept nogil:
        _sgd_update(param, grad, n, <float>self.lr)

    cdef void update_f64(self, double* param, const double* grad, Py_ssize_t n,
                         Py_ssize_t slot) noexcept nogil:
        _sgd_update(param, grad, n, self.lr)

    cdef double plain_step_scale(self) noexcept nogil:
        return -self.lr


cdef inline void _sgd_update(floating* param, const floating* grad, Py_ssize_t n,
                             floating lr) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        param[i] -= lr * grad[i]

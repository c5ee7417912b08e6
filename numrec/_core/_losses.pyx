"""Loss functions: the abstract ``Loss`` and its compiled implementations."""
from cython cimport floating

import numpy as np

from numrec._core._copying import reduce_component

from numrec._core._validation import check_array, FLOAT_DTYPES


cdef class Loss:
    """Abstract loss ``L(output, target)``, a mean over the batch.

    ``output`` and ``target`` have shape ``(n_samples, n_outputs)``.  To write one in
    Python, subclass it and implement

    - ``value(output, target) -> float``: the loss, averaged over the batch;
    - ``gradient(output, target) -> array``: ``dL/d output``, same shape as ``output``
      (so it carries the ``1 / n_samples`` of the mean).

    Inside a model trained with a Python-written loss, the compiled parts stay compiled
    and the loss runs per batch on their output (see :doc:`architecture`).

    Compiled losses fill the kernel contract (``value_and_gradient_f32/f64`` over the
    batch's ``(rows, width)``) and declare the dtypes they implement in
    ``kernel_dtypes``, empty for the abstract class.
    """

    kernel_dtypes = ()

    def __cinit__(self, *args, **kwargs):
        if type(self) is Loss:
            raise TypeError("Loss is abstract: subclass it and implement value and gradient")

    def __init__(self):
        # Without it, a subclass with no arguments of its own would accept any.
        pass

    def __reduce__(self):
        """For ``pickle`` and ``copy``: see :mod:`numrec._core._copying`."""
        return reduce_component(self, Loss)

    def value(self, output, target):
        """Return the loss of ``output`` against ``target``, averaged over the batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement value(output, target)")

    def gradient(self, output, target):
        """Return ``dL/d output``, an array shaped like ``output``."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement gradient(output, target)"
        )

    def probabilities(self, output):
        """What :meth:`Sequential.predict <numrec.Sequential.predict>` reports for
        ``output``, the model's last outputs: ``output`` itself, unless the loss reads
        its outputs as something else (logits, for :class:`SoftmaxCrossEntropy`)."""
        return output

    def get_config(self):
        """Return the constructor arguments as a JSON-serialisable dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"

    cdef double value_and_gradient_f32(self, const float* a, const float* y, float* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return 0

    cdef double value_and_gradient_f64(self, const double* a, const double* y, double* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return 0

    def _checked_pair(self, output, target):
        output = check_array(output, "output", shape=(None, None), finite=False)
        if output.dtype not in FLOAT_DTYPES:
            raise TypeError(f"output must have dtype float32 or float64, got {output.dtype}")
        target = check_array(target, "target", shape=output.shape, dtype=output.dtype,
                             finite=False)
        return output, target

    def _run(self, floating[:, ::1] a, floating[:, ::1] y, floating[:, ::1] g):
        cdef Py_ssize_t m = a.shape[0], n = a.shape[1]
        cdef double total
        if y.shape[0] != m or y.shape[1] != n or g.shape[0] != m or g.shape[1] != n:
            raise ValueError("output, target and gradient must have the same shape")
        if m == 0 or n == 0:
            return 0.0
        with nogil:
            if floating is float:
                total = self.value_and_gradient_f32(&a[0, 0], &y[0, 0], &g[0, 0], m, n)
            else:
                total = self.value_and_gradient_f64(&a[0, 0], &y[0, 0], &g[0, 0], m, n)
        return total / m


cdef inline double _squared_error(const floating* a, const floating* y, floating* g,
                                  Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating diff
    cdef floating scale = 2.0 / m
    cdef double total = 0
    for i in range(m * n):
        diff = a[i] - y[i]
        total += diff * diff
        g[i] = scale * diff
    return total


cdef class MSE(Loss):
    r"""Quadratic cost, summed over the outputs and averaged over the batch.

    For a batch of :math:`n` rows with outputs :math:`a` and targets :math:`y`:

    .. math::

        L = \frac{1}{n} \sum_{i=1}^{n} \sum_{j} (a_{ij} - y_{ij})^2
        \qquad
        \frac{\partial L}{\partial a_{ij}} = \frac{2 (a_{ij} - y_{ij})}{n}

    For one sample this is the reference network's cost :math:`C = \sum_j (a_j - y_j)^2`
    with gradient :math:`2 (a - y)`.  PyTorch's ``MSELoss`` differs: it also divides by
    the number of outputs, so its value and gradient are smaller by that factor.
    """

    kernel_dtypes = ("float32", "float64")

    def value(self, output, target):
        """Return :math:`L`, the summed squared error averaged over the batch (a float)."""
        output, target = self._checked_pair(output, target)
        return float(self._run(output, target, np.empty_like(output)))

    def gradient(self, output, target):
        """Return :math:`2 (a - y) / n`, shaped like ``output``."""
        output, target = self._checked_pair(output, target)
        grad = np.empty_like(output)
        self._run(output, target, grad)
        return grad

    cdef double value_and_gradient_f32(self, const float* a, const float* y, float* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _squared_error(a, y, g, m, n)

    cdef double value_and_gradient_f64(self, const double* a, const double* y, double* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _squared_error(a, y, g, m, n)

"""Loss functions: the abstract ``Loss`` and its compiled implementations."""
from cython cimport floating
from libc.math cimport exp, log, log1p

import numpy as np

from numrec._core._activations import Softmax
from numrec._core._copying import reduce_component

from numrec._core._validation import check_array, check_finite_number, FLOAT_DTYPES


cdef class Loss:
    """Abstract loss ``L(output, target)``, a mean over the batch.

    ``output`` and ``target`` have shape ``(n_samples, n_outputs)``.  To write one in
    Python, subclass it and implement

    - ``value(output, target) -> float``: the loss, averaged over the batch;
    - ``gradient(output, target) -> array``: ``dL/d output``, same shape as ``output``
      (so it carries the ``1 / n_samples`` of the mean);
    - optionally ``probabilities(output) -> array``, if the loss reads the model's output
      as something other than what a user wants to see (the default returns ``output``).

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
        """Return what the model's ``output`` means as probabilities: ``output`` itself.

        A loss that reads the output as something else (logits, for
        :class:`SoftmaxCrossEntropy`) overrides it to return the probabilities the output
        stands for; :meth:`Sequential.predict <numrec.Sequential.predict>` reports them
        for a model trained with that loss.
        """
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

    def _kernel_value(self, output, target):
        """``value`` of a compiled loss: its kernel on the checked arrays."""
        output, target = self._checked_pair(output, target)
        return float(self._run(output, target, np.empty_like(output)))

    def _kernel_gradient(self, output, target):
        """``gradient`` of a compiled loss: its kernel on the checked arrays."""
        output, target = self._checked_pair(output, target)
        grad = np.empty_like(output)
        self._run(output, target, grad)
        return grad

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
        return self._kernel_value(output, target)

    def gradient(self, output, target):
        """Return :math:`2 (a - y) / n`, shaped like ``output``."""
        return self._kernel_gradient(output, target)

    cdef double value_and_gradient_f32(self, const float* a, const float* y, float* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _squared_error(a, y, g, m, n)

    cdef double value_and_gradient_f64(self, const double* a, const double* y, double* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _squared_error(a, y, g, m, n)


cdef inline double _cross_entropy(const floating* a, const floating* y, floating* g,
                                  Py_ssize_t m, Py_ssize_t n, double eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef double shifted, total = 0
    for i in range(m * n):
        if y[i] == 0:  # 0 ln 0 = 0: an output of 0 counts only under a target > 0
            g[i] = 0
            continue
        shifted = eps + a[i]
        total -= y[i] * log(shifted)
        g[i] = <floating>(-y[i] / (shifted * m))
    return total


cdef class CrossEntropy(Loss):
    r"""Categorical cross-entropy of probabilities, summed over the outputs and averaged
    over the batch.

    For a batch of :math:`m` rows of outputs :math:`a` (probabilities, such as the output
    of a softmax) and targets :math:`y` (one-hot labels, or any non-negative weights):

    .. math::

        L = -\frac{1}{m} \sum_{i=1}^{m} \sum_{j} y_{ij} \ln(\varepsilon + a_{ij})
        \qquad
        \frac{\partial L}{\partial a_{ij}} = -\frac{y_{ij}}{(\varepsilon + a_{ij})\, m}

    This is the categorical cross-entropy of the reference network's own code, meant
    to follow a softmax output.  :math:`\varepsilon` keeps the logarithm finite where
    an output is exactly 0 (a saturated softmax); it shifts the loss of a correct,
    confident output by about :math:`-\varepsilon`.  A term whose target is 0 counts as
    0, value and gradient, whatever its output (:math:`0 \ln 0 = 0`).  ``output`` and
    ``target`` have shape ``(m, n_outputs)``.  To train from raw scores (a model ending
    in a :class:`Dense` layer), prefer :class:`SoftmaxCrossEntropy`, which is exact and
    numerically stable.

    PyTorch: ``-(y * torch.log(eps + a)).sum() / m``, i.e.
    ``torch.nn.NLLLoss()(torch.log(eps + a), labels)`` for one-hot targets (its
    ``reduction="mean"`` divides by the batch size).

    Parameters
    ----------
    eps : float, default 1e-7
        The shift inside the logarithm, >= 0 (the value of Keras's ``epsilon()``; with 0,
        an output of exactly 0 under a target > 0 gives an infinite loss, which ``fit``
        reports as a divergence).
    """

    kernel_dtypes = ("float32", "float64")

    def __init__(self, eps=1e-7):
        self.eps = check_finite_number(eps, "eps", minimum=0.0)

    def get_config(self):
        return {"eps": self.eps}

    def value(self, output, target):
        """Return :math:`L`, the cross-entropy averaged over the batch (a float)."""
        return self._kernel_value(output, target)

    def gradient(self, output, target):
        """Return :math:`-y / ((\\varepsilon + a) m)`, shaped like ``output``."""
        return self._kernel_gradient(output, target)

    cdef double value_and_gradient_f32(self, const float* a, const float* y, float* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _cross_entropy(a, y, g, m, n, self.eps)

    cdef double value_and_gradient_f64(self, const double* a, const double* y, double* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _cross_entropy(a, y, g, m, n, self.eps)


cdef inline double _softmax_cross_entropy(const floating* a, const floating* y, floating* g,
                                          Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """Row by row, the log-sum-exp with the row's maximum subtracted."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    cdef const floating* target
    cdef floating* grad
    cdef double top, sum_exp, log_sum_exp, y_sum, row_loss, total = 0
    for i in range(m):
        row, target, grad = a + i * n, y + i * n, g + i * n
        top = row[0]
        for j in range(1, n):
            if row[j] > top:
                top = row[j]
        sum_exp = 0
        for j in range(n):
            sum_exp += exp(row[j] - top)
        log_sum_exp = top + log(sum_exp)
        y_sum = 0
        row_loss = 0
        for j in range(n):
            y_sum += target[j]
            row_loss -= target[j] * (row[j] - log_sum_exp)
        total += row_loss
        for j in range(n):
            grad[j] = <floating>((exp(row[j] - top) / sum_exp * y_sum - target[j]) / m)
    return total


cdef class SoftmaxCrossEntropy(Loss):
    r"""Softmax and cross-entropy in one, from raw scores (logits): summed over the
    outputs, averaged over the batch.

    For a batch of :math:`m` rows of scores :math:`a` (a model ending in a
    :class:`Dense` layer, no activation) and targets :math:`y` (one-hot labels, or
    probabilities):

    .. math::

        L = -\frac{1}{m} \sum_{i=1}^{m} \sum_j y_{ij} \log \operatorname{softmax}(a_i)_j
          = \frac{1}{m} \sum_{i=1}^{m} \Bigl[\Bigl(\sum_j y_{ij}\Bigr)
            \operatorname{logsumexp}(a_i) - \sum_j y_{ij} a_{ij}\Bigr]

    .. math::

        \frac{\partial L}{\partial a_{ij}}
          = \frac{\operatorname{softmax}(a_i)_j \sum_k y_{ik} - y_{ij}}{m}

    which for targets whose rows sum to 1 is :math:`(\operatorname{softmax}(a)_{ij} -
    y_{ij}) / m`.  The log-sum-exp subtracts each row's maximum before the exponential,
    so large scores neither overflow nor lose the loss.  ``output`` and ``target`` have
    shape ``(m, n_outputs)``.

    A model trained with this loss outputs scores; :meth:`probabilities` turns them into
    the softmax probabilities, which :meth:`Sequential.predict
    <numrec.Sequential.predict>` reports.  Its accuracy is unchanged (the largest score
    is the largest probability).

    PyTorch: ``torch.nn.CrossEntropyLoss()`` on the logits, with class-index targets or
    (for soft targets) probabilities; its ``reduction="mean"`` divides by the batch size.
    """

    kernel_dtypes = ("float32", "float64")

    def value(self, output, target):
        """Return :math:`L`, the cross-entropy of the softmax averaged over the batch."""
        return self._kernel_value(output, target)

    def gradient(self, output, target):
        """Return :math:`(\\operatorname{softmax}(a) \\sum_k y_k - y) / m`, shaped like
        ``output``."""
        return self._kernel_gradient(output, target)

    def probabilities(self, output):
        """Return the row-wise softmax of the scores ``output`` ``(n_samples,
        n_outputs)``, in its dtype: each row is non-negative and sums to 1 (the kernel of
        :class:`~numrec.Softmax`)."""
        output = check_array(output, "output", shape=(None, None))
        if output.dtype not in FLOAT_DTYPES:
            raise TypeError(f"output must have dtype float32 or float64, got {output.dtype}")
        if output.shape[1] == 0:
            return output.copy()
        return Softmax().forward(output)

    cdef double value_and_gradient_f32(self, const float* a, const float* y, float* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _softmax_cross_entropy(a, y, g, m, n)

    cdef double value_and_gradient_f64(self, const double* a, const double* y, double* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _softmax_cross_entropy(a, y, g, m, n)


# PyTorch's binary_cross_entropy: each logarithm clamped at -100, and the derivative's
# denominator a (1 - a) floored at its EPSILON, the float 1e-12.
cdef double _LOG_FLOOR = -100.0
cdef double _BCE_EPS = <double><float>1e-12


cdef inline double _binary_cross_entropy(const floating* a, const floating* y, floating* g,
                                         Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double p, t, log_p, log_q, denominator, total = 0
    cdef double inv_m = 1.0 / m
    for i in range(m * n):
        p, t = a[i], y[i]
        log_p = log(p)
        log_q = log1p(-p)
        if log_p < _LOG_FLOOR:
            log_p = _LOG_FLOOR
        if log_q < _LOG_FLOOR:
            log_q = _LOG_FLOOR
        total += (t - 1) * log_q - t * log_p
        denominator = (1 - p) * p
        if denominator < _BCE_EPS:
            denominator = _BCE_EPS
        g[i] = <floating>(inv_m * (p - t) / denominator)
    return total


cdef class BinaryCrossEntropy(Loss):
    r"""Binary cross-entropy of probabilities, summed over the outputs and averaged over
    the batch.

    For a batch of :math:`m` rows of outputs :math:`a` in :math:`[0, 1]` (after a
    :class:`Sigmoid`) and targets :math:`y` in :math:`[0, 1]`:

    .. math::

        L = -\frac{1}{m} \sum_{i=1}^{m} \sum_{j}
            \bigl[y_{ij} \ln a_{ij} + (1 - y_{ij}) \ln(1 - a_{ij})\bigr]
        \qquad
        \frac{\partial L}{\partial a_{ij}}
          = \frac{a_{ij} - y_{ij}}{a_{ij} (1 - a_{ij})\, m}

    As in PyTorch, each logarithm is clamped at :math:`-100`, so that an output of
    exactly 0 or 1 (a saturated sigmoid) gives a finite loss, and the gradient's
    denominator :math:`a (1 - a)` is floored at :math:`10^{-12}` (the gradient is
    otherwise that of the formula above, not of the clamped one).  ``output`` and
    ``target`` have shape ``(m, n_outputs)``; ``value`` and ``gradient`` refuse outputs
    outside :math:`[0, 1]`.

    PyTorch: ``torch.nn.BCELoss(reduction="sum")(a, y) / m``; its default
    ``reduction="mean"`` would also divide by the number of outputs.
    """

    kernel_dtypes = ("float32", "float64")

    def _checked_pair(self, output, target):
        output, target = Loss._checked_pair(self, output, target)
        if output.size and not (output.min() >= 0 and output.max() <= 1):
            raise ValueError("output must hold probabilities in [0, 1] (BinaryCrossEntropy "
                             "follows a Sigmoid)")
        return output, target

    def value(self, output, target):
        """Return :math:`L`, the binary cross-entropy averaged over the batch (a float)."""
        return self._kernel_value(output, target)

    def gradient(self, output, target):
        """Return :math:`(a - y) / (a (1 - a) m)`, shaped like ``output``."""
        return self._kernel_gradient(output, target)

    cdef double value_and_gradient_f32(self, const float* a, const float* y, float* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _binary_cross_entropy(a, y, g, m, n)

    cdef double value_and_gradient_f64(self, const double* a, const double* y, double* g,
                                       Py_ssize_t m, Py_ssize_t n) noexcept nogil:
        return _binary_cross_entropy(a, y, g, m, n)

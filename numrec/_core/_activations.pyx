"""Activation functions: the abstract ``Activation`` and its compiled implementations."""
from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf
from libc.string cimport memcpy

import numpy as np

from numrec._core import _kernels
from numrec._core._copying import reduce_component

from numrec._core._validation import check_array, check_finite_number, FLOAT_DTYPES

cdef extern from "_sigmoid.h" nogil:
    int nr_sigmoid_available()
    int nr_sigmoid_avx512_available()
    Py_ssize_t nr_sigmoid_f32(const float* z, float* a, Py_ssize_t n)
    Py_ssize_t nr_sigmoid_f32_avx512(const float* z, float* a, Py_ssize_t n)

# The sigmoid's kernel level, an index into _kernels.LEVELS (0: the scalar form alone).
cdef int _sigmoid_available = (2 if nr_sigmoid_avx512_available()
                               else 1 if nr_sigmoid_available() else 0)
cdef int _sigmoid_level = _kernels.LEVELS.index(
    _kernels.default_level(_kernels.LEVELS[_sigmoid_available]))
cdef int _sigmoid_last_vector_level = _sigmoid_level or 1


def _vector_sigmoid_kernel(enable=None):
    """Whether float32 ``Sigmoid`` runs numrec's own AVX2 or AVX-512 code (four or eight
    entries at a time).

    With ``enable``, switch it on (at the level it last ran, where the processor has AVX2
    and FMA) or off, and return the previous setting.  For benchmarks and tests: it gives
    the scalar form's float32 results except, rarely, in the last bit (see _sigmoid.h);
    both levels give the same bits.
    """
    global _sigmoid_level
    previous = _sigmoid_level > 0
    if enable is not None:
        _sigmoid_level = min(_sigmoid_last_vector_level, _sigmoid_available) if enable else 0
    return previous


def _sigmoid_kernel_level(level=None):
    """The sigmoid's kernel level, ``"avx512"``, ``"avx2"`` or ``"portable"`` (the scalar
    form); with ``level``, set it and return the previous one.  ValueError for an unknown
    level or one the processor lacks.  ``_layers._kernel_level`` sets it with the rest."""
    global _sigmoid_level, _sigmoid_last_vector_level
    previous = _kernels.LEVELS[_sigmoid_level]
    if level is not None:
        _sigmoid_level = _kernels.check_level(level, _kernels.LEVELS[_sigmoid_available])
        if _sigmoid_level:
            _sigmoid_last_vector_level = _sigmoid_level
    return previous


cdef class Activation:
    """Abstract elementwise (or row-wise) activation function ``a = f(z)``.

    An activation has no parameters.  Inside a :class:`~numrec.Sequential` it follows a
    layer and transforms that layer's output.  Arrays are batch first:
    ``z`` and ``a`` have shape ``(n_samples, n_features)``.

    To write one in Python, subclass it and implement

    - ``forward(z) -> a``, and
    - ``derivative(z, a) -> f'(z)`` (elementwise, same shape as ``z``), **or**, for an
      activation that mixes the values of a row (softmax), ``backward(z, a, grad_a) -> grad_z``.

    The default ``backward`` returns ``grad_a * derivative(z, a)``.  Inside a model, a
    Python-written activation runs per batch between the compiled parts, which stay
    compiled (see :doc:`architecture`).

    Compiled activations fill the kernel contract and declare it in class attributes:
    ``kernel_dtypes`` (the dtypes whose kernels the class implements; empty for the
    abstract classes, which the compiled loop therefore never admits), ``rowwise``
    (True for a function of a whole row, such as softmax, whose kernels the loop calls
    on whole rows only) and ``zero_outputs`` (True for a function that maps a large
    share of typical inputs to exact zeros, as ReLU does: the layer above it may then
    train on kernels that skip them; a hint about speed, never about results).
    """

    kernel_dtypes = ()
    rowwise = False
    zero_outputs = False

    def __cinit__(self, *args, **kwargs):
        if type(self) is Activation or type(self) is ElementwiseActivation:
            raise TypeError(
                f"{type(self).__name__} is abstract: subclass it and implement forward"
            )

    def __init__(self):
        # Without it, a subclass with no arguments of its own would accept any.
        pass

    def __reduce__(self):
        """For ``pickle`` and ``copy``: see :mod:`numrec._core._copying`."""
        return reduce_component(self, Activation)

    def forward(self, z):
        """Return ``f(z)``, an array of the same shape as ``z``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(z)")

    def derivative(self, z, a):
        """Return ``f'(z)`` elementwise; ``a = f(z)`` is given because it is often cheaper."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement derivative(z, a) or backward(z, a, grad_a)"
        )

    def backward(self, z, a, grad_a):
        """Return ``dL/dz = dL/da * f'(z)`` given ``z``, ``a = f(z)`` and ``dL/da``."""
        return grad_a * self.derivative(z, a)

    def forward_pass(self, z):
        """The step of a training pass: ``a = forward(z)``, keeping ``z`` and ``a``.

        :class:`~numrec.Sequential` calls ``forward_pass`` and ``backward_pass`` on every
        component alike (layers and activations).
        """
        a = self.forward(z)
        self._z, self._a = z, a
        return a

    def backward_pass(self, grad_output):
        """``backward(z, a, grad_output)`` for the ``z`` and ``a`` of the last
        :meth:`forward_pass`."""
        if self._z is None:
            raise RuntimeError(f"{type(self).__name__}.backward_pass called before forward_pass")
        return self.backward(self._z, self._a, grad_output)

    def get_config(self):
        """Return the constructor arguments as a JSON-serialisable dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # The abstract kernels do nothing: the compiled loop never calls them, because it
    # admits only classes that declare their kernels (kernel_dtypes).

    cdef void forward_f32(self, const float* z, float* a, Py_ssize_t rows,
                          Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
        pass

    cdef void forward_f64(self, const double* z, double* a, Py_ssize_t rows,
                          Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
        pass

    cdef void backward_f32(self, const float* z, const float* a, float* g, Py_ssize_t rows,
                           Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
        pass

    cdef void backward_f64(self, const double* z, const double* a, double* g,
                           Py_ssize_t rows, Py_ssize_t width,
                           Py_ssize_t stride) noexcept nogil:
        pass


def _check_float_array(value, name):
    array = check_array(value, name, shape=(None,) * getattr(value, "ndim", 0), finite=False)
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    return array


cdef class ElementwiseActivation(Activation):
    """Base of the compiled elementwise activations: the Python methods run the C kernels.

    A subclass implements the four ``cdef`` kernels over contiguous values
    (``map_forward_f32/f64``, ``map_backward_f32/f64``) and declares
    ``kernel_dtypes``; ``forward``, ``derivative`` and ``backward`` and the compiled
    loop then all use them.
    """

    def forward(self, z):
        """Return ``f(z)``; ``z`` is a float32 or float64 array of any shape."""
        z = _check_float_array(z, "z")
        a = np.empty_like(z)
        self._run_forward(z.reshape(-1), a.reshape(-1))
        return a

    def derivative(self, z, a):
        """Return ``f'(z)`` elementwise, given ``z`` and ``a = f(z)``."""
        return self.backward(z, a, np.ones_like(z))

    def backward(self, z, a, grad_a):
        """Return ``grad_a * f'(z)``; the three arrays share one shape and dtype."""
        z = _check_float_array(z, "z")
        a = _check_float_array(a, "a")
        grad_a = _check_float_array(grad_a, "grad_a")
        for array, name in ((a, "a"), (grad_a, "grad_a")):
            if array.shape != z.shape:
                raise ValueError(f"{name} must have the shape of z {z.shape}, got {array.shape}")
            if array.dtype != z.dtype:
                raise TypeError(f"{name} must have the dtype of z ({z.dtype}), got {array.dtype}")
        grad_z = grad_a.copy()
        self._run_backward(z.reshape(-1), a.reshape(-1), grad_z.reshape(-1))
        return grad_z

    def _run_forward(self, floating[::1] z, floating[::1] a):
        cdef Py_ssize_t n = z.shape[0]
        if a.shape[0] != n:
            raise ValueError(f"a must hold {n} values like z, got {a.shape[0]}")
        if n == 0:
            return
        with nogil:
            if floating is float:
                self.forward_f32(&z[0], &a[0], 1, n, n)
            else:
                self.forward_f64(&z[0], &a[0], 1, n, n)

    def _run_backward(self, floating[::1] z, floating[::1] a, floating[::1] g):
        cdef Py_ssize_t n = z.shape[0]
        if a.shape[0] != n or g.shape[0] != n:
            raise ValueError(f"z, a and grad must hold the same number of values")
        if n == 0:
            return
        with nogil:
            if floating is float:
                self.backward_f32(&z[0], &a[0], &g[0], 1, n, n)
            else:
                self.backward_f64(&z[0], &a[0], &g[0], 1, n, n)

    cdef void forward_f32(self, const float* z, float* a, Py_ssize_t rows,
                          Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
        cdef Py_ssize_t i
        if width == stride:
            self.map_forward_f32(z, a, rows * width)
            return
        for i in range(rows):
            self.map_forward_f32(z + i * stride, a + i * stride, width)

    cdef void forward_f64(self, const double* z, double* a, Py_ssize_t rows,
                          Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
        cdef Py_ssize_t i
        if width == stride:
            self.map_forward_f64(z, a, rows * width)
            return
        for i in range(rows):
            self.map_forward_f64(z + i * stride, a + i * stride, width)

    cdef void backward_f32(self, const float* z, const float* a, float* g, Py_ssize_t rows,
                           Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
        cdef Py_ssize_t i
        if width == stride:
            self.map_backward_f32(z, a, g, rows * width)
            return
        for i in range(rows):
            self.map_backward_f32(z + i * stride, a + i * stride, g + i * stride, width)

    cdef void backward_f64(self, const double* z, const double* a, double* g,
                           Py_ssize_t rows, Py_ssize_t width,
                           Py_ssize_t stride) noexcept nogil:
        cdef Py_ssize_t i
        if width == stride:
            self.map_backward_f64(z, a, g, rows * width)
            return
        for i in range(rows):
            self.map_backward_f64(z + i * stride, a + i * stride, g + i * stride, width)

    cdef void map_forward_f32(self, const float* z, float* a, Py_ssize_t n) noexcept nogil:
        pass

    cdef void map_forward_f64(self, const double* z, double* a, Py_ssize_t n) noexcept nogil:
        pass

    cdef void map_backward_f32(self, const float* z, const float* a, float* g,
                               Py_ssize_t n) noexcept nogil:
        pass

    cdef void map_backward_f64(self, const double* z, const double* a, double* g,
                               Py_ssize_t n) noexcept nogil:
        pass


# --- LeakyReLU -----------------------------------------------------------------------------

# Multiplying by a slope chosen between two constants, rather than branching on the sign
# of z (mispredicted half the time), lets the compiler use vector instructions.

cdef inline void _leaky_forward(const floating* z, floating* a, Py_ssize_t n,
                                floating alpha) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating slope
    for i in range(n):
        slope = 1 if z[i] > 0 else alpha
        a[i] = z[i] * slope


cdef inline void _leaky_backward(const floating* z, floating* g, Py_ssize_t n,
                                 floating alpha) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating slope
    for i in range(n):
        slope = 1 if z[i] > 0 else alpha
        g[i] = g[i] * slope


cdef class LeakyReLU(ElementwiseActivation):
    r"""Leaky rectified linear unit.

    .. math::

        f(z) = \begin{cases} z & z > 0 \\ \alpha z & z \le 0 \end{cases}
        \qquad
        f'(z) = \begin{cases} 1 & z > 0 \\ \alpha & z \le 0 \end{cases}

    Parameters
    ----------
    alpha : float, default 0.2
        Slope for negative inputs (0.2 is the value of the reference network).
        ``alpha = 0`` gives the plain ReLU.
    """

    kernel_dtypes = ("float32", "float64")

    def __init__(self, alpha=0.2):
        self.alpha = check_finite_number(alpha, "alpha", minimum=0.0)

    def get_config(self):
        return {"alpha": self.alpha}

    cdef void map_forward_f32(self, const float* z, float* a, Py_ssize_t n) noexcept nogil:
        _leaky_forward(z, a, n, <float>self.alpha)

    cdef void map_forward_f64(self, const double* z, double* a, Py_ssize_t n) noexcept nogil:
        _leaky_forward(z, a, n, self.alpha)

    cdef void map_backward_f32(self, const float* z, const float* a, float* g,
                               Py_ssize_t n) noexcept nogil:
        _leaky_backward(z, g, n, <float>self.alpha)

    cdef void map_backward_f64(self, const double* z, const double* a, double* g,
                               Py_ssize_t n) noexcept nogil:
        _leaky_backward(z, g, n, self.alpha)


# --- ReLU ----------------------------------------------------------------------------------

cdef inline void _relu_forward(const floating* z, floating* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        a[i] = z[i] if z[i] > 0 else 0


cdef inline void _relu_backward(const floating* z, floating* g, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        g[i] = g[i] if z[i] > 0 else 0


cdef class ReLU(ElementwiseActivation):
    r"""Rectified linear unit.

    .. math::

        f(z) = \max(z, 0) \qquad
        f'(z) = \begin{cases} 1 & z > 0 \\ 0 & z \le 0 \end{cases}

    PyTorch: ``torch.nn.ReLU`` (the same derivative, 0, at :math:`z = 0`).  Equal to
    ``LeakyReLU(alpha=0)`` in value and gradient.  About half of a hidden layer's
    outputs are zeros (``zero_outputs``): a large float32 layer above one trains on the
    kernels that skip them (docs/architecture.rst).
    """

    kernel_dtypes = ("float32", "float64")
    zero_outputs = True

    cdef void map_forward_f32(self, const float* z, float* a, Py_ssize_t n) noexcept nogil:
        _relu_forward(z, a, n)

    cdef void map_forward_f64(self, const double* z, double* a, Py_ssize_t n) noexcept nogil:
        _relu_forward(z, a, n)

    cdef void map_backward_f32(self, const float* z, const float* a, float* g,
                               Py_ssize_t n) noexcept nogil:
        _relu_backward(z, g, n)

    cdef void map_backward_f64(self, const double* z, const double* a, double* g,
                               Py_ssize_t n) noexcept nogil:
        _relu_backward(z, g, n)


# --- Sigmoid -------------------------------------------------------------------------------

cdef inline void _sigmoid_forward(const floating* z, floating* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating e
    for i in range(n):
        # Two branches keep exp's argument non-positive: no overflow for large |z|.
        if z[i] >= 0:
            a[i] = 1 / (1 + exp(-z[i]))
        else:
            e = exp(z[i])
            a[i] = e / (1 + e)


cdef inline void _sigmoid_backward(const floating* a, floating* g, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        g[i] *= a[i] * (1 - a[i])


cdef class Sigmoid(ElementwiseActivation):
    r"""Logistic sigmoid.

    .. math::

        \sigma(z) = \frac{1}{1 + e^{-z}} \qquad \sigma'(z) = \sigma(z)\,(1 - \sigma(z))

    PyTorch: ``torch.nn.Sigmoid``.
    """

    kernel_dtypes = ("float32", "float64")

    cdef void map_forward_f32(self, const float* z, float* a, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t done = (nr_sigmoid_f32_avx512(z, a, n) if _sigmoid_level == 2
                                else nr_sigmoid_f32(z, a, n) if _sigmoid_level == 1 else 0)
        _sigmoid_forward(z + done, a + done, n - done)

    cdef void map_forward_f64(self, const double* z, double* a, Py_ssize_t n) noexcept nogil:
        _sigmoid_forward(z, a, n)

    cdef void map_backward_f32(self, const float* z, const float* a, float* g,
                               Py_ssize_t n) noexcept nogil:
        _sigmoid_backward(a, g, n)

    cdef void map_backward_f64(self, const double* z, const double* a, double* g,
                               Py_ssize_t n) noexcept nogil:
        _sigmoid_backward(a, g, n)


# --- Tanh ----------------------------------------------------------------------------------

cdef inline void _tanh_forward(const floating* z, floating* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if floating is float:
            a[i] = tanhf(z[i])
        else:
            a[i] = tanh(z[i])


cdef inline void _tanh_backward(const floating* a, floating* g, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        g[i] *= 1 - a[i] * a[i]


cdef class Tanh(ElementwiseActivation):
    r"""Hyperbolic tangent.

    .. math::

        f(z) = \tanh z \qquad f'(z) = 1 - \tanh^2 z = 1 - a^2

    Elementwise: ``z`` and ``a`` have any shape, typically ``(n_samples, n_features)``.
    The C library's ``tanhf`` (float32) and ``tanh`` (float64) compute it, one value at a
    time, so the results do not depend on the batch or the number of threads.

    PyTorch: ``torch.nn.Tanh`` (whose backward is also ``grad * (1 - a * a)``).
    No parameters.
    """

    kernel_dtypes = ("float32", "float64")

    cdef void map_forward_f32(self, const float* z, float* a, Py_ssize_t n) noexcept nogil:
        _tanh_forward(z, a, n)

    cdef void map_forward_f64(self, const double* z, double* a, Py_ssize_t n) noexcept nogil:
        _tanh_forward(z, a, n)

    cdef void map_backward_f32(self, const float* z, const float* a, float* g,
                               Py_ssize_t n) noexcept nogil:
        _tanh_backward(a, g, n)

    cdef void map_backward_f64(self, const double* z, const double* a, double* g,
                               Py_ssize_t n) noexcept nogil:
        _tanh_backward(a, g, n)


# --- Identity ------------------------------------------------------------------------------

cdef class Identity(ElementwiseActivation):
    r"""The identity, for a linear output layer.

    .. math::

        f(z) = z \qquad f'(z) = 1

    Elementwise: ``z`` and ``a`` have any shape, typically ``(n_samples, n_features)``.
    ``forward`` returns a copy of ``z``; ``backward`` returns (a copy of) ``grad_a``
    unchanged.  A :class:`Dense` layer followed by ``Identity`` computes what the layer
    alone computes; the activation makes the linear output explicit in a model.

    PyTorch: ``torch.nn.Identity``.  No parameters.
    """

    kernel_dtypes = ("float32", "float64")

    cdef void map_forward_f32(self, const float* z, float* a, Py_ssize_t n) noexcept nogil:
        if a != z:
            memcpy(a, z, n * sizeof(float))

    cdef void map_forward_f64(self, const double* z, double* a, Py_ssize_t n) noexcept nogil:
        if a != z:
            memcpy(a, z, n * sizeof(double))

    cdef void map_backward_f32(self, const float* z, const float* a, float* g,
                               Py_ssize_t n) noexcept nogil:
        pass  # g *= 1

    cdef void map_backward_f64(self, const double* z, const double* a, double* g,
                               Py_ssize_t n) noexcept nogil:
        pass  # g *= 1


# --- Softmax -------------------------------------------------------------------------------

# Row by row, each in one fixed order, so that the result of a row depends on that row
# alone: the same bits whatever the batch and however the threads share the rows.  The
# sums are kept in double in float32 as well (a row is short: it costs nothing).

cdef inline void _softmax_forward(const floating* z, floating* a, Py_ssize_t rows,
                                  Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef const floating* zi
    cdef floating* ai
    cdef floating top
    cdef double total
    if width <= 0:
        return
    for i in range(rows):
        zi = z + i * stride
        ai = a + i * stride
        top = zi[0]
        for j in range(1, width):
            if zi[j] > top:
                top = zi[j]
        total = 0
        for j in range(width):
            # z - max <= 0: exp never overflows, and the largest term is exactly 1.
            if floating is float:
                ai[j] = expf(zi[j] - top)
            else:
                ai[j] = exp(zi[j] - top)
            total += ai[j]
        for j in range(width):
            ai[j] = <floating>(ai[j] / total)


cdef inline void _softmax_backward(const floating* a, floating* g, Py_ssize_t rows,
                                   Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef const floating* ai
    cdef floating* gi
    cdef double dot
    for i in range(rows):
        ai = a + i * stride
        gi = g + i * stride
        dot = 0
        for j in range(width):
            dot += <double>gi[j] * ai[j]
        for j in range(width):
            gi[j] = <floating>(ai[j] * (gi[j] - dot))


def _check_row_array(value, name):
    """_check_float_array for a function of the last axis: a 0-d array is refused (and
    must be caught before numpy.ascontiguousarray turns it into one of shape (1,))."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (softmax runs over the last), "
                         f"got a 0-d array")
    return _check_float_array(value, name)


def _rows_of(array):
    """A C-contiguous float array as a 2-D view (rows, last axis)."""
    return array.reshape(-1, array.shape[array.ndim - 1])


cdef class Softmax(Activation):
    r"""Softmax over each row (the last axis), a probability distribution per sample.

    .. math::

        a_{ij} = \frac{e^{z_{ij} - m_i}}{\sum_k e^{z_{ik} - m_i}},
        \qquad m_i = \max_k z_{ik}

    Subtracting the row's maximum changes nothing mathematically and keeps ``exp`` from
    overflowing: rows of large values (1000, say) give finite probabilities.  Each row of
    ``a`` sums to 1.

    The Jacobian mixes the values of a row, so there is no elementwise derivative:
    ``backward`` computes the vector-Jacobian product

    .. math::

        \frac{\partial L}{\partial z_{ij}} = a_{ij} \Big(\frac{\partial L}{\partial a_{ij}}
        - \sum_k \frac{\partial L}{\partial a_{ik}}\, a_{ik}\Big)

    and ``derivative`` raises ``NotImplementedError``.

    Shapes: ``z`` and ``a`` are ``(n_samples, n_classes)`` (more generally any shape of at
    least one axis; softmax runs over the last).  The class declares ``rowwise = True``:
    the compiled loop calls its kernels on whole rows only.  Use it on a model's output
    layer with a loss on probabilities, such as :class:`MSE`.

    PyTorch: ``torch.nn.Softmax(dim=1)`` on ``(n_samples, n_classes)`` (``dim=-1`` in
    general).  No parameters.
    """

    kernel_dtypes = ("float32", "float64")
    rowwise = True

    def forward(self, z):
        """Return the softmax of each row of ``z`` (over its last axis).

        ``z`` is a float32 or float64 array of at least one axis, usually
        ``(n_samples, n_classes)``; the result has its shape and dtype.
        """
        z = _check_row_array(z, "z")
        a = np.empty_like(z)
        if z.size:
            self._run_forward(_rows_of(z), _rows_of(a))
        return a

    def derivative(self, z, a):
        """Not available: softmax has no elementwise derivative; use :meth:`backward`."""
        raise NotImplementedError(
            "Softmax has no elementwise derivative (each output depends on the whole row): "
            "use backward(z, a, grad_a), the vector-Jacobian product"
        )

    def backward(self, z, a, grad_a):
        """Return ``dL/dz = a * (grad_a - sum(grad_a * a, over the row))``.

        ``z``, ``a = forward(z)`` and ``grad_a = dL/da`` share one shape and dtype;
        ``z`` is checked but not needed (``a`` carries what the product needs).
        """
        z = _check_row_array(z, "z")
        a = _check_row_array(a, "a")
        grad_a = _check_row_array(grad_a, "grad_a")
        for array, name in ((a, "a"), (grad_a, "grad_a")):
            if array.shape != z.shape:
                raise ValueError(f"{name} must have the shape of z {z.shape}, got {array.shape}")
            if array.dtype != z.dtype:
                raise TypeError(f"{name} must have the dtype of z ({z.dtype}), got {array.dtype}")
        grad_z = grad_a.copy()
        if z.size:
            self._run_backward(_rows_of(z), _rows_of(a), _rows_of(grad_z))
        return grad_z

    def _run_forward(self, floating[:, ::1] z, floating[:, ::1] a):
        cdef Py_ssize_t rows = z.shape[0], width = z.shape[1]
        if a.shape[0] != rows or a.shape[1] != width:
            raise ValueError(f"a must have the shape of z ({rows}, {width})")
        if rows == 0 or width == 0:
            return
        with nogil:
            if floating is float:
                self.forward_f32(&z[0, 0], &a[0, 0], rows, width, width)
            else:
                self.forward_f64(&z[0, 0], &a[0, 0], rows, width, width)

    def _run_backward(self, floating[:, ::1] z, floating[:, ::1] a, floating[:, ::1] g):
        cdef Py_ssize_t rows = z.shape[0], width = z.shape[1]
        if (a.shape[0] != rows or a.shape[1] != width
                or g.shape[0] != rows or g.shape[1] != width):
            raise ValueError(f"z, a and grad must have the same shape")
        if rows == 0 or width == 0:
            return
        with nogil:
            if floating is float:
                self.backward_f32(&z[0, 0], &a[0, 0], &g[0, 0], rows, width, width)
            else:
                self.backward_f64(&z[0, 0], &a[0, 0], &g[0, 0], rows, width, width)

    cdef void forward_f32(self, const float* z, float* a, Py_ssize_t rows,
                          Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
        _softmax_forward(z, a, rows, width, stride)

    cdef void forward_f64(self, const double* z, double* a, Py_ssize_t rows,
                          Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
        _softmax_forward(z, a, rows, width, stride)

    cdef void backward_f32(self, const float* z, const float* a, float* g, Py_ssize_t rows,
                           Py_ssize_t width, Py_ssize_t stride) noexcept nogil:
        _softmax_backward(a, g, rows, width, stride)

    cdef void backward_f64(self, const double* z, const double* a, double* g,
                           Py_ssize_t rows, Py_ssize_t width,
                           Py_ssize_t stride) noexcept nogil:
        _softmax_backward(a, g, rows, width, stride)

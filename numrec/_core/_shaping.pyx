"""Layers without parameters that pass rows on: ``Flatten`` and ``Dropout``.

Inside a model every batch is a C-contiguous 2-D array ``(m, prod(shape))`` (an image's
channels, rows and columns flattened in that order), so ``Flatten`` only changes the
per-sample shape that the layers after it see, and ``Dropout`` works on rows whatever
their shape.
"""
from cython cimport floating
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
cimport numpy as cnp

import numbers

import numpy as np

from numrec._core._layers cimport Layer
from numrec._core._validation import as_shape, check_finite_number, shape_size

cnp.import_array()


cdef inline void _copy_columns(const floating* x, floating* z, int m, int n, int lo,
                               int hi) noexcept nogil:
    """z[:, lo:hi] = x[:, lo:hi] for (m, n) rows."""
    cdef int i
    if lo == 0 and hi == n:
        memcpy(z, x, <size_t>m * n * sizeof(floating))
        return
    for i in range(m):
        memcpy(z + <Py_ssize_t>i * n + lo, x + <Py_ssize_t>i * n + lo,
               <size_t>(hi - lo) * sizeof(floating))


def _rows_of(x, name):
    """``x`` (batch first, any rank) as C-contiguous float rows ``(m, values)``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32 and x.dtype != np.float64:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be batch first, (n, ...), got shape {x.shape}")
    return np.ascontiguousarray(x).reshape(x.shape[0], -1)


cdef class _Passing(Layer):
    """A layer without parameters whose output has as many values as its input."""
    cdef int _n             # values per sample once built (0 before)
    cdef object _shape_in   # the shape of the last forward's input, for backward

    def __cinit__(self, *args, **kwargs):
        self._n = 0
        self._shape_in = None

    @property
    def in_features(self):
        """Values per sample (the product of :attr:`input_shape`), or None before
        :meth:`build`."""
        return self._n if self._n else None

    @property
    def out_features(self):
        """Values per sample of the output (as many as the input), or None before
        :meth:`build`."""
        return self._n if self._n else None

    def _set_shapes(self, shape, output_shape):
        self._n = shape_size(shape)
        self.input_shape, self.output_shape = shape, output_shape
        return output_shape

    def _check_width(self, rows, name):
        if self._n and rows.shape[1] != self._n:
            raise ValueError(f"{name} must hold {self._n} values per sample "
                             f"{self.input_shape}, got shape {rows.shape}")

    cdef void gradient_f32(self, const float* x, const float* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        pass

    cdef void gradient_f64(self, const double* x, const double* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        pass


cdef class Flatten(_Passing):
    """Flatten each sample: ``(channels, height, width)`` → ``(channels * height * width,)``.

    Put it between convolutional or pooling layers and :class:`Dense` layers, as
    PyTorch's ``nn.Flatten``.  The values keep their order (channel-major, then rows,
    then columns); inside a model, where every batch travels as rows, it costs one copy.

    ``forward(x)`` takes ``x`` of shape ``(n, *input_shape)`` (or rows ``(n, values)``)
    and returns ``(n, values)``; ``backward(grad_output)`` returns the gradient in the
    shape of the last input.
    """

    kernel_dtypes = ("float32", "float64")
    capabilities = frozenset()

    def __init__(self):
        pass

    def build(self, input_shape):
        """Take any per-sample shape; return ``(prod(input_shape),)``."""
        shape = as_shape(input_shape)
        return self._set_shapes(shape, (shape_size(shape),))

    def forward(self, x):
        """Return ``x`` as rows ``(n, values)`` (a copy)."""
        rows = _rows_of(x, "x")
        self._check_width(rows, "x")
        self._shape_in = x.shape
        return rows.copy()

    def backward(self, grad_output):
        """Return ``grad_output`` in the shape of the last :meth:`forward`'s input."""
        if self._shape_in is None:
            raise RuntimeError("Flatten.backward called before forward")
        grad = _rows_of(grad_output, "grad_output")
        if grad.size != int(np.prod(self._shape_in)):
            raise ValueError(f"grad_output must have {self._shape_in[0]} rows of "
                             f"{grad.size // max(self._shape_in[0], 1)} values")
        return grad.reshape(self._shape_in).copy()

    cdef void forward_f32(self, const float* x, float* z, int m, int lo,
                          int hi) noexcept nogil:
        _copy_columns(x, z, m, self._n, lo, hi)

    cdef void forward_f64(self, const double* x, double* z, int m, int lo,
                          int hi) noexcept nogil:
        _copy_columns(x, z, m, self._n, lo, hi)

    cdef void backward_input_f32(self, const float* g, float* gx, int m) noexcept nogil:
        _copy_columns(g, gx, m, self._n, 0, self._n)

    cdef void backward_input_f64(self, const double* g, double* gx, int m) noexcept nogil:
        _copy_columns(g, gx, m, self._n, 0, self._n)


# --- Dropout's masks -----------------------------------------------------------------------

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL


cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    """The output function of splitmix64 (Steele, Lea and Flood, 2014)."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t _draw_key(uint64_t seed, uint64_t draw) noexcept nogil:
    """The key of mask number ``draw`` of the layer seeded with ``seed``."""
    return _mix(_mix(seed + GOLDEN) + (draw + 1) * GOLDEN)


cdef void _masked(const floating* x, floating* z, int m, int n, uint64_t key,
                  uint64_t threshold, floating scale) noexcept nogil:
    """z = x * mask * scale: element e = i * n + j is kept when
    splitmix64(key + (e + 1) * golden) >= threshold."""
    cdef Py_ssize_t e, count = <Py_ssize_t>m * n
    for e in range(count):
        if _mix(key + <uint64_t>(e + 1) * GOLDEN) >= threshold:
            z[e] = x[e] * scale
        else:
            z[e] = 0


cdef class Dropout(_Passing):
    r"""Inverted dropout: in training, zero each value with probability ``p`` and scale
    the others by :math:`1 / (1 - p)`; in evaluation, pass the values on unchanged.

    .. math::

        z = \frac{x \odot M}{1 - p}, \qquad M_{ij} \sim \mathrm{Bernoulli}(1 - p)
        \qquad \frac{\partial L}{\partial x} = \frac{g \odot M}{1 - p}

    It drops only while :attr:`~numrec.Layer.training` is True: :meth:`Sequential.fit
    <numrec.Sequential.fit>` trains in training mode, and :meth:`~numrec.Sequential.predict`,
    :meth:`~numrec.Sequential.evaluate` and the validation passes run in evaluation
    mode, as PyTorch's ``nn.Dropout``.

    The masks are reproducible: mask number :attr:`draws` of a layer seeded with
    ``seed`` keeps element :math:`e` of the batch (row-major) when
    :math:`\mathrm{splitmix64}(k + (e + 1)\gamma) \ge p \cdot 2^{64}`, where :math:`k`
    depends on the seed and the draw alone.  So the same seed gives the same masks, in
    the compiled loop and the Python loop, whatever the number of threads.

    Parameters
    ----------
    p : float
        Probability of dropping a value, in ``[0, 1)``.
    seed : int or numpy.random.Generator, optional
        The masks' seed (a non-negative integer below :math:`2^{64}`; a Generator draws
        one); None draws one from the operating system.

    Attributes
    ----------
    p : float
    seed : int
        The masks' seed (drawn when None was given).
    draws : int
        Masks drawn so far (each training-mode forward pass draws one); settable, to
        replay a mask.
    """
    cdef readonly double p
    cdef readonly object seed
    cdef public uint64_t draws
    cdef uint64_t _seed
    cdef uint64_t _threshold
    cdef uint64_t _last_key     # the key of the last forward's mask
    cdef bint _last_masked      # whether the last forward dropped values

    kernel_dtypes = ("float32", "float64")
    capabilities = frozenset()

    def __init__(self, p, *, seed=None):
        p = check_finite_number(p, "p")
        if not 0 <= p < 1:
            raise ValueError(f"p is the probability of dropping a value, in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = _mask_seed(seed)
        self._seed = self.seed
        # Keep when the 64-bit hash >= p * 2**64 (p = 0 keeps everything).
        self._threshold = <uint64_t>min(int(self.p * 2.0 ** 64), 2 ** 64 - 1)
        self.draws = 0
        self._last_masked = False

    def get_config(self):
        return {"p": self.p, "seed": self.seed}

    def build(self, input_shape):
        """Take any per-sample shape; return it unchanged."""
        shape = as_shape(input_shape)
        return self._set_shapes(shape, shape)

    def forward(self, x):
        """Return ``x`` with dropped values zeroed and the others scaled (training mode),
        or a copy of ``x`` (evaluation mode); ``x`` is ``(n, ...)``, float32 or float64."""
        rows = _rows_of(x, "x")
        self._check_width(rows, "x")
        z = np.empty_like(rows)
        self._forward_rows(rows, z)
        self._shape_in = x.shape
        return z.reshape(x.shape)

    def backward(self, grad_output):
        """Return ``grad_output`` times the last forward's mask, scaled by 1/(1 - p)."""
        if self._shape_in is None:
            raise RuntimeError("Dropout.backward called before forward")
        if tuple(np.shape(grad_output)) != tuple(self._shape_in):
            raise ValueError(f"grad_output must have shape {tuple(self._shape_in)}, got "
                             f"{tuple(np.shape(grad_output))}")
        grad = _rows_of(grad_output, "grad_output")
        gx = np.empty_like(grad)
        self._backward_rows(grad, gx)
        return gx.reshape(self._shape_in)

    def _forward_rows(self, floating[:, ::1] x, floating[:, ::1] z):
        cdef int m = x.shape[0], n = x.shape[1]
        if m == 0 or n == 0:
            self._last_masked = False
            return
        with nogil:
            self._forward(&x[0, 0], &z[0, 0], m, n)

    def _backward_rows(self, floating[:, ::1] g, floating[:, ::1] gx):
        cdef int m = g.shape[0], n = g.shape[1]
        if m == 0 or n == 0:
            return
        with nogil:
            self._backward(&g[0, 0], &gx[0, 0], m, n)

    cdef void _forward(self, const floating* x, floating* z, int m, int n) noexcept nogil:
        self._last_masked = self.training and self._threshold > 0
        if not self._last_masked:
            memcpy(z, x, <size_t>m * n * sizeof(floating))
            return
        self._last_key = _draw_key(self._seed, self.draws)
        self.draws += 1
        _masked(x, z, m, n, self._last_key, self._threshold, <floating>(1 / (1 - self.p)))

    cdef void _backward(self, const floating* g, floating* gx, int m, int n) noexcept nogil:
        if not self._last_masked:
            memcpy(gx, g, <size_t>m * n * sizeof(floating))
            return
        _masked(g, gx, m, n, self._last_key, self._threshold, <floating>(1 / (1 - self.p)))

    # Not shared between threads (unit_shares): the forward kernel runs on all units.
    cdef void forward_f32(self, const float* x, float* z, int m, int lo,
                          int hi) noexcept nogil:
        self._forward(x, z, m, self._n)

    cdef void forward_f64(self, const double* x, double* z, int m, int lo,
                          int hi) noexcept nogil:
        self._forward(x, z, m, self._n)

    cdef void backward_input_f32(self, const float* g, float* gx, int m) noexcept nogil:
        self._backward(g, gx, m, self._n)

    cdef void backward_input_f64(self, const double* g, double* gx, int m) noexcept nogil:
        self._backward(g, gx, m, self._n)


def _mask_seed(seed):
    """The masks' 64-bit seed from None, an int or a Generator."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2 ** 63, dtype=np.uint64)) * 2 + int(seed.integers(0, 2))
    if (isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer))
            or not 0 <= seed < 2 ** 64):
        raise TypeError(f"seed must be None, an integer in 0..2**64 - 1 or a "
                        f"numpy.random.Generator, got {seed!r}")
    return int(seed)

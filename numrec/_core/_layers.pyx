"""Layers with parameters: the abstract ``Layer`` and the compiled ``Dense``."""
from cython cimport floating
from libc.string cimport memset
from libc.stdint cimport uint8_t
cimport numpy as cnp

import numpy as np

from numrec._core import _activations, _kernels, _optimizers
from numrec._core._copying import reduce_component

from numrec._core._blas cimport _gemm, matmul_nt, matmul_tn, matmul_nn
from numrec._core._memory import aligned_zeros
from numrec._core._validation import (
    as_rng, as_shape, check_array, check_dtype, check_positive_int, shape_size,
)

cnp.import_array()

cdef extern from "_simd.h" nogil:
    int nr_simd_available()
    int nr_avx512_available()
    void nr_dense_forward_f32(int m, int n, int k, const float* x, int ldx,
                              const float* w, int ldw, const float* b, float* z, int ldz)
    void nr_dense_update_f32(int m, int n, int k, float alpha, const float* g, int ldg,
                             const float* x, int ldx, float* w, int ldw)
    void nr_dense_input_grad_f32(int m, int n, int k, const float* g, int ldg,
                                 const float* w, int ldw, float* gx, int ldgx)
    void nr_dense_forward_f32_avx512(int m, int n, int k, const float* x, int ldx,
                                     const float* w, int ldw, const float* b, float* z,
                                     int ldz)
    void nr_dense_update_f32_avx512(int m, int n, int k, float alpha, const float* g,
                                    int ldg, const float* x, int ldx, float* w, int ldw)
    void nr_dense_input_grad_f32_avx512(int m, int n, int k, const float* g, int ldg,
                                        const float* w, int ldw, float* gx, int ldgx)
    void nr_axpy_fma_f32(Py_ssize_t n, float alpha, const float* x, float* y)

cdef extern from "_sparse.h" nogil:
    enum: NR_SPARSE_MAX_INPUTS
    enum: NR_SPARSE_PANEL
    void nr_sparse_init()
    void nr_sparse_init_avx512()
    void nr_sparse_forward_f32(int m, int n, int k, const float* x, int ldx,
                               const float* wt, const float* b, float* z, int ldz)
    void nr_sparse_update_f32(int m, int n, int k, float alpha, const float* g, int ldg,
                              const float* x, int ldx, float* wt)
    void nr_sparse_forward_pixels_f32(int m, int n, int k, const uint8_t* x, int ldx,
                                      const float* wt, const float* b, float* z, int ldz)
    void nr_sparse_update_pixels_f32(int m, int n, int k, float alpha, const float* g,
                                     int ldg, const uint8_t* x, int ldx, float* wt)
    void nr_sparse_forward_f32_avx512(int m, int n, int k, const float* x, int ldx,
                                      const float* wt, const float* b, float* z, int ldz)
    void nr_sparse_update_f32_avx512(int m, int n, int k, float alpha, const float* g,
                                     int ldg, const float* x, int ldx, float* wt)
    void nr_sparse_forward_pixels_f32_avx512(int m, int n, int k, const uint8_t* x,
                                             int ldx, const float* wt, const float* b,
                                             float* z, int ldz)
    void nr_sparse_update_pixels_f32_avx512(int m, int n, int k, float alpha,
                                            const float* g, int ldg, const uint8_t* x,
                                            int ldx, float* wt)
    void nr_sparse_from_panels_columns(int n, int k, const float* wt, float* w, int lo,
                                       int hi)
    void nr_sparse_to_panels(int n, int k, const float* w, float* wt)
    void nr_sparse_from_panels(int n, int k, const float* wt, float* w)

cdef extern from "_sparse64.h" nogil:
    int nr_sparse_f64_portable_fast()
    void nr_sparse_to_panels_f64(int n, int k, const double* w, double* wt)
    void nr_sparse_from_panels_f64(int n, int k, const double* wt, double* w)
    void nr_sparse_forward_f64(int m, int n, int k, const double* x, int ldx,
                               const double* wt, const double* b, double* z, int ldz)
    void nr_sparse_forward_f64_avx2(int m, int n, int k, const double* x, int ldx,
                                    const double* wt, const double* b, double* z, int ldz)
    void nr_sparse_forward_f64_avx512(int m, int n, int k, const double* x, int ldx,
                                      const double* wt, const double* b, double* z,
                                      int ldz)
    void nr_sparse_update_f64(int m, int n, int k, double alpha, const double* g, int ldg,
                              const double* x, int ldx, double* wt)
    void nr_sparse_update_f64_avx2(int m, int n, int k, double alpha, const double* g,
                                   int ldg, const double* x, int ldx, double* wt)
    void nr_sparse_update_f64_avx512(int m, int n, int k, double alpha, const double* g,
                                     int ldg, const double* x, int ldx, double* wt)

nr_sparse_init()
nr_sparse_init_avx512()

# The float32 kernels in use, AVX2 or AVX-512 (the same results); _simd says whether
# either runs (else the portable loops and BLAS do).
ctypedef void (*forward_kernel)(int m, int n, int k, const float* x, int ldx,
                                const float* w, int ldw, const float* b, float* z,
                                int ldz) noexcept nogil
ctypedef void (*update_kernel)(int m, int n, int k, float alpha, const float* g, int ldg,
                               const float* x, int ldx, float* w, int ldw) noexcept nogil
ctypedef void (*input_grad_kernel)(int m, int n, int k, const float* g, int ldg,
                                   const float* w, int ldw, float* gx,
                                   int ldgx) noexcept nogil
ctypedef void (*sparse_forward_kernel)(int m, int n, int k, const float* x, int ldx,
                                       const float* wt, const float* b, float* z,
                                       int ldz) noexcept nogil
ctypedef void (*sparse_update_kernel)(int m, int n, int k, float alpha, const float* g,
                                      int ldg, const float* x, int ldx,
                                      float* wt) noexcept nogil
ctypedef void (*pixels_forward_kernel)(int m, int n, int k, const uint8_t* x, int ldx,
                                       const float* wt, const float* b, float* z,
                                       int ldz) noexcept nogil
ctypedef void (*pixels_update_kernel)(int m, int n, int k, float alpha, const float* g,
                                      int ldg, const uint8_t* x, int ldx,
                                      float* wt) noexcept nogil

cdef forward_kernel dense_forward = nr_dense_forward_f32
cdef update_kernel dense_update = nr_dense_update_f32
cdef input_grad_kernel dense_input_grad = nr_dense_input_grad_f32
cdef sparse_forward_kernel sparse_forward = nr_sparse_forward_f32
cdef sparse_update_kernel sparse_update = nr_sparse_update_f32
cdef pixels_forward_kernel pixels_forward = nr_sparse_forward_pixels_f32
cdef pixels_update_kernel pixels_update = nr_sparse_update_pixels_f32

# The float64 kernels for mostly-zero inputs in use (_sparse64.h: the same bits at every
# level); _sparse64 says whether Dense runs them (at the portable level only where fma()
# is one instruction: else BLAS's full product is faster).
ctypedef void (*sparse_forward_f64_kernel)(int m, int n, int k, const double* x, int ldx,
                                           const double* wt, const double* b, double* z,
                                           int ldz) noexcept nogil
ctypedef void (*sparse_update_f64_kernel)(int m, int n, int k, double alpha,
                                          const double* g, int ldg, const double* x,
                                          int ldx, double* wt) noexcept nogil

cdef sparse_forward_f64_kernel sparse_forward_f64 = nr_sparse_forward_f64
cdef sparse_update_f64_kernel sparse_update_f64 = nr_sparse_update_f64
cdef bint _sparse64 = False

# Kernel levels, as indices into _kernels.LEVELS.
cdef enum:
    LEVEL_PORTABLE = 0
    LEVEL_AVX2 = 1
    LEVEL_AVX512 = 2

cdef int _available_level = (LEVEL_AVX512 if nr_avx512_available()
                             else LEVEL_AVX2 if nr_simd_available() else LEVEL_PORTABLE)
cdef int _level = LEVEL_PORTABLE
cdef bint _simd = False
cdef int _last_simd_level = LEVEL_AVX2  # where _simd_kernels(True) returns to


cdef void _use_level(int level):
    global _level, _simd, _last_simd_level
    global dense_forward, dense_update, dense_input_grad
    global sparse_forward, sparse_update, pixels_forward, pixels_update
    global sparse_forward_f64, sparse_update_f64, _sparse64
    _level = level
    _simd = level >= LEVEL_AVX2
    _sparse64 = _simd or nr_sparse_f64_portable_fast()
    if level == LEVEL_AVX512:
        sparse_forward_f64 = nr_sparse_forward_f64_avx512
        sparse_update_f64 = nr_sparse_update_f64_avx512
    elif level == LEVEL_AVX2:
        sparse_forward_f64 = nr_sparse_forward_f64_avx2
        sparse_update_f64 = nr_sparse_update_f64_avx2
    else:
        sparse_forward_f64 = nr_sparse_forward_f64
        sparse_update_f64 = nr_sparse_update_f64
    if _simd:
        _last_simd_level = level
    if level == LEVEL_AVX512:
        dense_forward = nr_dense_forward_f32_avx512
        dense_update = nr_dense_update_f32_avx512
        dense_input_grad = nr_dense_input_grad_f32_avx512
        sparse_forward = nr_sparse_forward_f32_avx512
        sparse_update = nr_sparse_update_f32_avx512
        pixels_forward = nr_sparse_forward_pixels_f32_avx512
        pixels_update = nr_sparse_update_pixels_f32_avx512
    else:
        dense_forward = nr_dense_forward_f32
        dense_update = nr_dense_update_f32
        dense_input_grad = nr_dense_input_grad_f32
        sparse_forward = nr_sparse_forward_f32
        sparse_update = nr_sparse_update_f32
        pixels_forward = nr_sparse_forward_pixels_f32
        pixels_update = nr_sparse_update_pixels_f32


_use_level(_kernels.LEVELS.index(_kernels.default_level(_kernels.LEVELS[_available_level])))

# A layer with at least this many weights is worth sharing between threads: below it, the
# threads' meeting at a barrier costs more than half the product (docs/benchmarks.rst).
cdef int SPLIT_MIN_WEIGHTS = 32768


def _simd_kernels(enable=None):
    """Whether float32 ``Dense`` products of up to 128 rows use numrec's own AVX2 or
    AVX-512 code (see :func:`_kernel_level`).

    With ``enable``, switch them on (at the level they last ran, where the processor has
    AVX2 and FMA) or off (the portable level), and return the previous setting.  For
    benchmarks and tests; results agree with BLAS to float32 rounding.
    """
    previous = bool(_simd)
    if enable is not None:
        _use_level(min(_last_simd_level, _available_level) if enable else LEVEL_PORTABLE)
    return previous


def _kernel_level(level=None):
    """The level of numrec's own float32 kernels: ``"avx512"``, ``"avx2"`` or
    ``"portable"`` (see ``numrec._core._kernels``).

    With ``level``, run the dense-layer kernels, those for mostly-zero inputs (float32
    and float64), the sigmoid and the optimizers' steps at that level and return the
    previous one (of the dense-layer kernels).
    "avx512" and "avx2" give the same bits; "portable" runs compiled loops and BLAS.
    Raises ValueError for an unknown level or one the processor lacks.  For tests and
    benchmarks; ``NUMREC_KERNELS`` pins the level at import.
    """
    previous = _kernels.LEVELS[_level]
    if level is not None:
        index = _kernels.check_level(level, _kernels.LEVELS[_available_level])
        _activations._sigmoid_kernel_level(level)
        _optimizers._step_kernel_level(level)
        _use_level(index)
    return previous


cdef class Layer:
    """Abstract layer with parameters, such as :class:`Dense`.

    Arrays are batch first.  A layer

    - ``forward(x)`` maps ``x`` of shape ``(n_samples, n_inputs)`` to its output of shape
      ``(n_samples, n_outputs)`` and remembers what ``backward`` needs;
    - ``backward(grad_output)`` takes ``dL/d output`` (shape of the output), stores the
      gradients of its parameters beside them and returns ``dL/d x`` (shape of ``x``);
    - ``parameters()`` and ``gradients()`` list its parameter arrays and their gradient
      arrays in matching order; an optimizer updates the parameter arrays in place.

    ``training`` is True in training mode (the default) and False in evaluation mode,
    as PyTorch's ``Module.training``: :meth:`Sequential.train` and
    :meth:`Sequential.eval` set it on every layer, :meth:`Sequential.fit` trains in
    training mode, and :meth:`Sequential.predict` and :meth:`Sequential.evaluate` run in
    evaluation mode.  Only layers that behave differently in training (such as dropout)
    read it.

    To write one in Python, subclass it and implement these methods.  Inside a model,
    a Python-written layer runs per batch between the compiled parts, which stay
    compiled (see :doc:`architecture`).

    Compiled layers also fill the kernel contract and declare it in class attributes
    that the compiled loop reads before it admits them:

    ``kernel_dtypes``
        The dtypes (``"float32"``, ``"float64"``) whose kernels the class implements;
        empty for the abstract class, so it is never compiled in by accident.
    ``capabilities``
        Optional fast cases it provides: ``"folded_sgd"``, ``"pixels"``,
        ``"sparse_inputs"``, ``"deferred_update"``.
    """

    kernel_dtypes = ()
    capabilities = frozenset()

    def __cinit__(self, *args, **kwargs):
        if type(self) is Layer:
            raise TypeError("Layer is abstract: subclass it and implement forward and backward")
        self.training = True
        self._input_shape = None
        self._output_shape = None

    @property
    def input_shape(self):
        """The per-sample input shape the layer is built for (:meth:`build`), or None."""
        return self._input_shape

    @input_shape.setter
    def input_shape(self, value):
        self._input_shape = None if value is None else tuple(value)

    @property
    def output_shape(self):
        """The per-sample output shape, once built (:meth:`build`), or None."""
        return self._output_shape

    @output_shape.setter
    def output_shape(self, value):
        self._output_shape = None if value is None else tuple(value)

    def build(self, input_shape):
        """Fit the layer to inputs of the per-sample shape ``input_shape``; return its
        output shape (a tuple without the batch axis), or None if it cannot say.

        :class:`~numrec.Sequential` calls it on each layer in order when it is made.  The
        default, for a layer with ``in_features`` and ``out_features``: the input must
        hold ``in_features`` values per sample (any shape), and the output is
        ``(out_features,)``; a layer without them returns None (the model then checks no
        shapes after it).  Sets :attr:`input_shape` and :attr:`output_shape`.

        Raises
        ------
        ValueError
            If the layer cannot take inputs of that shape; the message says what it
            expects, as ``"expects 784 inputs"``.
        """
        shape = as_shape(input_shape)
        n_in = getattr(self, "in_features", None)
        n_out = getattr(self, "out_features", None)
        if n_in is None or n_out is None:
            return None
        if shape_size(shape) != n_in:
            raise ValueError(f"expects {n_in} inputs")
        self.input_shape, self.output_shape = shape, (int(n_out),)
        return self.output_shape

    def __reduce__(self):
        """For ``pickle`` and ``copy``: see :mod:`numrec._core._copying`."""
        return reduce_component(self, Layer)

    def forward(self, x):
        """Return the layer's output for the batch ``x``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def backward(self, grad_output):
        """Store parameter gradients and return ``dL/dx`` for the last ``forward``."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward(grad_output)")

    def forward_pass(self, x):
        """The step of a training pass: ``forward(x)`` (the layer keeps what it needs).

        :class:`~numrec.Sequential` calls ``forward_pass`` and ``backward_pass`` on every
        component alike; a layer's are its ``forward`` and ``backward``.
        """
        return self.forward(x)

    def backward_pass(self, grad_output):
        """The step back through the last :meth:`forward_pass`: ``backward(grad_output)``."""
        return self.backward(grad_output)

    def parameters(self):
        """Return the list of parameter arrays (empty for a layer without parameters)."""
        return []

    def gradients(self):
        """Return the gradient arrays, in the order of :meth:`parameters`."""
        return []

    def get_config(self):
        """Return the constructor arguments as a JSON-serialisable dict."""
        return {}

    def unit_sizes(self):
        """Elements of each parameter that belong to one output unit, in the order of
        :meth:`parameters` (a Dense: ``[in_features, 1]``).

        The compiled loop gives each thread the units ``lo:hi`` of a shared layer; its
        share of a parameter is the flat range ``[lo * size, hi * size)``, which a
        stateful optimizer updates.
        """
        return [1 for _ in self.parameters()]

    def unit_shares(self, dtype):
        """How the threads of the compiled loop may share this layer's output units.

        Returns ``(worth_it, align, max_rows, exact)``: whether splitting the layer
        between threads pays; the multiple at which each thread's share of units must
        start; the longest batch on which the kernels, each on its share, beat a
        product threaded by BLAS (longer batches are left to BLAS, or run in blocks of
        this many rows); and whether, up to ``max_rows`` rows, the results do not
        depend on the split.  The abstract layer is never shared.
        """
        return (False, 1, 0, False)

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def _sparse_inputs(self, enable):
        """Switch the kernels to inputs that are mostly zeros (``enable``), or back.

        Returns whether the layer now runs such kernels; a layer without them (no
        ``"sparse_inputs"`` capability) returns False.  The compiled loop switches them
        on around a run of batches with the folded update only.  While they are on, the
        parameters may live in another layout that only the kernels see; switching off
        brings the public arrays up to date.
        """
        return False

    # The abstract kernels do nothing: the compiled loop never calls them, because it
    # admits only classes that declare their kernels (kernel_dtypes, capabilities).

    cdef void forward_f32(self, const float* x, float* z, int m, int lo,
                          int hi) noexcept nogil:
        pass

    cdef void forward_f64(self, const double* x, double* z, int m, int lo,
                          int hi) noexcept nogil:
        pass

    cdef void backward_input_f32(self, const float* g, float* gx, int m) noexcept nogil:
        pass

    cdef void backward_input_f64(self, const double* g, double* gx, int m) noexcept nogil:
        pass

    cdef void backward_input_columns_f32(self, const float* g, float* gx, int m, int lo,
                                         int hi) noexcept nogil:
        pass

    cdef void gradient_f32(self, const float* x, const float* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        pass

    cdef void gradient_f64(self, const double* x, const double* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        pass

    cdef void folded_update_f32(self, const float* x, const float* g, int m, double step,
                                int lo, int hi) noexcept nogil:
        pass

    cdef void folded_update_f64(self, const double* x, const double* g, int m, double step,
                                int lo, int hi) noexcept nogil:
        pass

    cdef bint takes_pixels(self) noexcept nogil:
        return False

    cdef void forward_pixels_f32(self, const uint8_t* x, float* z, int m, int lo,
                                 int hi) noexcept nogil:
        pass

    cdef void folded_update_pixels_f32(self, const uint8_t* x, const float* g, int m,
                                       double step, int lo, int hi) noexcept nogil:
        pass

    cdef bint defers_update(self, int m) noexcept nogil:
        return False

    cdef void deferred_update_f32(self, const float* x, const float* g, int m,
                                  double step, bint apply) noexcept nogil:
        pass


# --- Dense kernels -------------------------------------------------------------------------

cdef inline void _dense_forward(const floating* x, const floating* w, const floating* b,
                                floating* z, int m, int n_out, int n_in,
                                int lo, int hi) noexcept nogil:
    """``z[:, lo:hi] = x @ w[lo:hi].T + b[lo:hi]``."""
    cdef int i, j
    matmul_nt(m, hi - lo, n_in, 1, x, n_in, w + <Py_ssize_t>lo * n_in, n_in, 0, z + lo, n_out)
    for i in range(m):
        for j in range(lo, hi):
            z[i * n_out + j] += b[j]


cdef inline void _column_sums(const floating* g, floating* out, int m, int n, int lo, int hi,
                              floating scale, floating beta) noexcept nogil:
    """``out[lo:hi] = beta * out[lo:hi] + scale * g[:, lo:hi].sum(axis=0)``, g (m, n)."""
    cdef int i, j
    for j in range(lo, hi):
        out[j] *= beta
    for i in range(m):
        for j in range(lo, hi):
            out[j] += scale * g[i * n + j]


cdef inline void _dense_gradient(const floating* x, const floating* g, floating* gw,
                                 floating* gb, int m, int n_out, int n_in, int lo, int hi,
                                 bint accumulate) noexcept nogil:
    """Rows lo:hi of ``dL/dW = g.T @ x`` and ``dL/db``, written or (accumulate) added."""
    cdef floating beta = 1 if accumulate else 0
    matmul_tn(hi - lo, n_in, m, 1, g + lo, n_out, x, n_in, beta,
              gw + <Py_ssize_t>lo * n_in, n_in)
    _column_sums(g, gb, m, n_out, lo, hi, 1, beta)


cdef inline void _dense_folded(const floating* x, const floating* g, floating* w,
                               floating* b, int m, int n_out, int n_in, double step,
                               int lo, int hi) noexcept nogil:
    """Rows lo:hi of ``W += step * g.T @ x`` and ``b += step * g.sum(axis=0)``."""
    matmul_tn(hi - lo, n_in, m, <floating>step, g + lo, n_out, x, n_in, 1,
              w + <Py_ssize_t>lo * n_in, n_in)
    _column_sums(g, b, m, n_out, lo, hi, <floating>step, 1)


cdef void _panels_input_grad(const floating* g, const floating* wt, floating* gx, int m,
                             int n, int k, int lo, int hi) noexcept nogil:
    """Columns lo:hi of ``gx = g @ W`` with W in the panels of ``Dense._weights_t``:
    g (m, n), gx (m, k).

    Plain loops: the fused loop never asks the first layer, the one it runs on panels,
    for the gradient of its input.
    """
    cdef int i, j, p
    cdef const floating* panel
    for i in range(m):
        for p in range(lo, hi):
            gx[i * k + p] = 0
        for j in range(n):
            panel = wt + <Py_ssize_t>(j // NR_SPARSE_PANEL) * NR_SPARSE_PANEL * k + j % NR_SPARSE_PANEL
            for p in range(lo, hi):
                gx[i * k + p] += g[i * n + j] * panel[p * NR_SPARSE_PANEL]


cdef inline int _padded_units(int units) noexcept nogil:
    """``units`` rounded up to whole panels of NR_SPARSE_PANEL."""
    return (units + NR_SPARSE_PANEL - 1) // NR_SPARSE_PANEL * NR_SPARSE_PANEL


cdef void _to_panels(int n, int k, bint single, const void* w, void* wt) noexcept:
    """Copy W (n, k), float32 if ``single`` else float64, into the panels ``wt``."""
    with nogil:
        if single:
            nr_sparse_to_panels(n, k, <const float*>w, <float*>wt)
        else:
            nr_sparse_to_panels_f64(n, k, <const double*>w, <double*>wt)


cdef void _from_panels(int n, int k, bint single, const void* wt, void* w) noexcept:
    """Copy the panels ``wt`` back into W (n, k), float32 if ``single`` else float64."""
    with nogil:
        if single:
            nr_sparse_from_panels(n, k, <const float*>wt, <float*>w)
        else:
            nr_sparse_from_panels_f64(n, k, <const double*>wt, <double*>w)


def _panels(array):
    """A copy of the 2-D float32 or float64 ``array`` (n, k) in the panels of the kernels
    for zero inputs, ``(ceil(n / 16), k, 16)``, zero-padded."""
    array = np.ascontiguousarray(array)
    if array.ndim != 2 or array.dtype not in (np.float32, np.float64):
        raise TypeError("expected a 2-D float32 or float64 array")
    cdef int n = array.shape[0], k = array.shape[1]
    out = aligned_zeros(((n + NR_SPARSE_PANEL - 1) // NR_SPARSE_PANEL, k, NR_SPARSE_PANEL),
                        array.dtype)
    _to_panels(n, k, array.dtype == np.float32, cnp.PyArray_DATA(array),
               cnp.PyArray_DATA(out))
    return out


def _unpanel(panels, out):
    """Copy ``panels`` (as from :func:`_panels`) back into ``out`` (n, k), C-contiguous,
    of the panels' dtype."""
    if (not out.flags.c_contiguous or out.dtype != panels.dtype or not panels.flags.c_contiguous
            or panels.shape != ((out.shape[0] + NR_SPARSE_PANEL - 1) // NR_SPARSE_PANEL,
                                out.shape[1], NR_SPARSE_PANEL)):
        raise ValueError("panels and out do not match")
    _from_panels(out.shape[0], out.shape[1], out.dtype == np.float32,
                 cnp.PyArray_DATA(panels), cnp.PyArray_DATA(out))


def _he_normal(rng, shape):
    return rng.standard_normal(shape) * np.sqrt(2.0 / shape[1]), None


def _glorot_uniform(rng, shape):
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape), None


def _plain_uniform(rng, shape):
    return rng.uniform(-1.0, 1.0, shape), None


def _torch_linear(rng, shape):
    bound = 1.0 / np.sqrt(shape[1])
    return rng.uniform(-bound, bound, shape), rng.uniform(-bound, bound, shape[0])


#: ``Dense(init=...)`` name -> ``f(rng, (out, in)) -> (weights, bias or None)``.
INITIALISERS = {"he": _he_normal, "glorot": _glorot_uniform, "xavier": _glorot_uniform,
                "uniform": _plain_uniform, "torch": _torch_linear}


cdef class Dense(Layer):
    r"""Fully connected layer, :math:`z = x W^\top + b`.

    Parameters
    ----------
    in_features : int
        Number of inputs per sample.
    out_features : int
        Number of outputs per sample.
    seed : int or numpy.random.Generator, optional
        Source of the initial weights; the same seed gives the same weights.
    dtype : {numpy.float32, numpy.float64}, default float32
        Data type of the parameters and of the arrays the layer accepts.
    init : {"he", "glorot", "uniform", "torch"}, default "he"
        How the weights start, with :math:`n_{in}` = ``in_features`` and
        :math:`n_{out}` = ``out_features``:

        ``"he"``
            He (Kaiming) normal: :math:`W_{ij} \sim \mathcal{N}(0, 2 / n_{in})`.  The
            reference network's rule; PyTorch's ``nn.init.kaiming_normal_`` (fan-in,
            ReLU gain).
        ``"glorot"`` (or ``"xavier"``)
            Glorot (Xavier) uniform: :math:`W_{ij} \sim U(-r, r)`,
            :math:`r = \sqrt{6 / (n_{in} + n_{out})}`; ``nn.init.xavier_uniform_``.
        ``"uniform"``
            :math:`W_{ij} \sim U(-1, 1)`, the plain initialisation of the reference
            network's code.
        ``"torch"``
            PyTorch ``nn.Linear``'s default: weights *and biases*
            :math:`\sim U(-1/\sqrt{n_{in}}, 1/\sqrt{n_{in}})`.

        Biases start at zero except with ``"torch"``.  The rule is a starting point, not
        part of the model: ``get_config()`` does not hold it.

    Attributes
    ----------
    weights : ndarray, shape (out_features, in_features)
        :math:`W`, initialised by the rule ``init``.
    bias : ndarray, shape (out_features,)
        :math:`b`, zero unless ``init="torch"``.
    grad_weights, grad_bias : ndarray
        :math:`\partial L / \partial W` and :math:`\partial L / \partial b`, filled by
        :meth:`backward`.

    Notes
    -----
    For a batch :math:`x` of shape ``(n, in_features)`` and upstream gradient
    :math:`g = \partial L / \partial z` of shape ``(n, out_features)``:

    .. math::

        \frac{\partial L}{\partial W} = g^\top x \qquad
        \frac{\partial L}{\partial b} = \sum_{i=1}^{n} g_i \qquad
        \frac{\partial L}{\partial x} = g W
    """

    kernel_dtypes = ("float32", "float64")
    capabilities = frozenset({"folded_sgd", "pixels", "sparse_inputs", "sparse_gradients",
                              "deferred_update", "columnwise_input"})

    def __init__(self, in_features, out_features, *, seed=None, dtype=np.float32,
                 init="he"):
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.dtype = check_dtype(dtype)
        if init not in INITIALISERS:
            raise ValueError(f"init must be one of {sorted(INITIALISERS)}, got {init!r}")
        shape = (self.out_features, self.in_features)
        weights, bias = INITIALISERS[init](as_rng(seed), shape)
        self._weights = aligned_zeros(shape, self.dtype)
        self._weights[...] = weights
        self._bias = np.zeros(self.out_features, dtype=self.dtype)
        if bias is not None:
            self._bias[...] = bias
        self._grad_weights = aligned_zeros(shape, self.dtype)
        self._grad_bias = np.zeros(self.out_features, dtype=self.dtype)
        self._w = cnp.PyArray_DATA(self._weights)
        self._b = cnp.PyArray_DATA(self._bias)
        self._gw = cnp.PyArray_DATA(self._grad_weights)
        self._gb = cnp.PyArray_DATA(self._grad_bias)
        self._input = None
        self._weights_t = None
        self._grad_t = None
        self._sparse = False
        self._sparse_grads = False
        self._single = self.dtype == np.float32

    def get_config(self):
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "dtype": self.dtype.name,
        }

    def build(self, input_shape):
        """Take flat rows of ``in_features`` values: ``input_shape`` must be
        ``(in_features,)``; return ``(out_features,)``.  Images (a shape such as
        ``(64, 12, 12)``) need a :class:`Flatten` before the layer."""
        shape = as_shape(input_shape)
        if shape_size(shape) != self.in_features:
            raise ValueError(f"expects {self.in_features} inputs")
        if len(shape) != 1:
            raise ValueError(f"takes flat rows of {self.in_features} values, not images "
                             f"(put Flatten() before it)")
        self.input_shape, self.output_shape = shape, (self.out_features,)
        return self.output_shape

    # The parameter arrays are allocated once and always updated in place, so that the
    # kernels' pointers stay valid; assigning copies the new values in after checking them.
    @property
    def weights(self):
        """ndarray of shape ``(out_features, in_features)``: the weight matrix :math:`W`."""
        return self._weights

    @weights.setter
    def weights(self, value):
        self._weights[...] = check_array(
            value, "weights", shape=self._weights.shape, dtype=self.dtype
        )

    @property
    def bias(self):
        """ndarray of shape ``(out_features,)``: the bias :math:`b`."""
        return self._bias

    @bias.setter
    def bias(self, value):
        self._bias[...] = check_array(value, "bias", shape=self._bias.shape, dtype=self.dtype)

    @property
    def grad_weights(self):
        """ndarray of shape ``(out_features, in_features)``: :math:`\\partial L / \\partial W`."""
        return self._grad_weights

    @property
    def grad_bias(self):
        """ndarray of shape ``(out_features,)``: :math:`\\partial L / \\partial b`."""
        return self._grad_bias

    def parameters(self):
        """Return ``[weights, bias]``."""
        return [self._weights, self._bias]

    def unit_sizes(self):
        """Return ``[in_features, 1]``: output unit ``j`` owns row ``j`` of ``weights``
        and entry ``j`` of ``bias``."""
        return [self.in_features, 1]

    def unit_shares(self, dtype):
        """Shared when it has at least 32768 weights (smaller layers cost less than the
        threads' meeting at a barrier), in blocks of 16 units (whole panels of the
        kernels for zero inputs), up to 128 rows; exact in float32 where the own AVX2
        kernels run."""
        worth_it = self.in_features * self.out_features >= SPLIT_MIN_WEIGHTS
        exact = bool(_simd) and np.dtype(dtype) == np.float32
        return (worth_it, NR_SPARSE_PANEL, SIMD_MAX_ROWS, exact)

    def gradients(self):
        """Return ``[grad_weights, grad_bias]``."""
        return [self._grad_weights, self._grad_bias]

    def forward(self, x):
        """Return ``x @ weights.T + bias`` for ``x`` of shape ``(n, in_features)``.

        ``x`` must have the layer's dtype.  The layer keeps a reference to ``x`` for
        :meth:`backward`.
        """
        x = check_array(x, "x", shape=(None, self.in_features), dtype=self.dtype)
        z = np.empty((x.shape[0], self.out_features), dtype=self.dtype)
        self._forward(x, z)
        self._input = x
        return z

    def backward(self, grad_output):
        """Fill ``grad_weights`` and ``grad_bias``; return ``dL/dx`` of shape ``(n, in_features)``.

        ``grad_output`` is ``dL/dz`` for the batch of the last :meth:`forward`, of shape
        ``(n, out_features)``.
        """
        if self._input is None:
            raise RuntimeError("Dense.backward called before forward")
        grad_output = check_array(
            grad_output, "grad_output", shape=(self._input.shape[0], self.out_features),
            dtype=self.dtype,
        )
        grad_input = np.empty_like(self._input)
        self._backward(self._input, grad_output, grad_input)
        return grad_input

    def _sparse_inputs(self, enable):
        """Switch to the kernels that skip zero inputs, or back.

        On, the kernels keep :math:`W^\\top` in a private array, in panels of 16 units
        ``(ceil(out_features / 16), in_features, 16)`` (see ``_sparse.h``), so that each
        nonzero input reads its units' weights in runs; ``weights`` is stale until they
        are switched off, and the kernels' unit ranges must start at multiples of 16.
        Needs AVX2 and FMA (float64: or a portable build whose fma() is one
        instruction), and at most 8192 inputs; returns whether they are on.
        """
        if enable and not self._sparse:
            if not ((_simd if self._single else _sparse64)
                    and self.in_features <= NR_SPARSE_MAX_INPUTS):
                return False
            if self._weights_t is None:
                n_panels = (self.out_features + NR_SPARSE_PANEL - 1) // NR_SPARSE_PANEL
                self._weights_t = aligned_zeros(
                    (n_panels, self.in_features, NR_SPARSE_PANEL), self.dtype)
                self._wt = cnp.PyArray_DATA(self._weights_t)
            _to_panels(self.out_features, self.in_features, self._single, self._w,
                       self._wt)
            self._sparse = True
        elif not enable and self._sparse:
            self._sparse_gradients(False)
            _from_panels(self.out_features, self.in_features, self._single, self._wt,
                         self._w)
            self._sparse = False
        return bool(self._sparse)

    def _sparse_gradients(self, enable):
        """While the kernels for zero inputs are on, compute the weights' gradient in
        their layout too (for an optimizer with state, which cannot be folded into the
        product), or stop.

        On, :meth:`gradient_f32` (or ``gradient_f64``) writes :math:`\partial L / \partial W` into a private
        array in the panels of the weights, and returns ``(weights, gradient)``: the two
        panel arrays ``(ceil(out_features / 16), in_features, 16)``, whose padding stays
        zero, for the optimizer to update element by element as it would the public
        arrays.  Off (and when the kernels for zero inputs are switched off),
        ``grad_weights`` is brought up to date; returns None.
        """
        if enable:
            if not self._sparse:
                raise RuntimeError("the kernels for zero inputs are off")
            if self._grad_t is None:
                self._grad_t = aligned_zeros(self._weights_t.shape, self.dtype)
                self._gt = cnp.PyArray_DATA(self._grad_t)
            self._sparse_grads = True
            return self._weights_t, self._grad_t
        if self._sparse_grads:
            _from_panels(self.out_features, self.in_features, self._single, self._gt,
                         self._gw)
            self._sparse_grads = False
        return None

    def _forward(self, floating[:, ::1] x, floating[:, ::1] z):
        cdef int m = x.shape[0]
        self._check_kernel_args(floating is float, x, z, None)
        if m == 0:
            return
        with nogil:
            if floating is float:
                self.forward_f32(&x[0, 0], &z[0, 0], m, 0, self.out_features)
            else:
                self.forward_f64(&x[0, 0], &z[0, 0], m, 0, self.out_features)

    def _backward(self, floating[:, ::1] x, floating[:, ::1] g, floating[:, ::1] gx):
        cdef int m = x.shape[0]
        self._check_kernel_args(floating is float, x, g, gx)
        if m == 0:
            self._grad_weights[...] = 0
            self._grad_bias[...] = 0
            return
        with nogil:
            if floating is float:
                self.backward_input_f32(&g[0, 0], &gx[0, 0], m)
                self.gradient_f32(&x[0, 0], &g[0, 0], m, 0, self.out_features, False)
            else:
                self.backward_input_f64(&g[0, 0], &gx[0, 0], m)
                self.gradient_f64(&x[0, 0], &g[0, 0], m, 0, self.out_features, False)

    def _check_kernel_args(self, bint single, x, out, grad_input):
        """Shapes and dtype of the kernels' arrays (x: inputs, out: outputs or their
        gradient, grad_input: like x); the public methods have checked them already."""
        if single != (self.dtype == np.float32):
            raise TypeError(f"the arrays must have the layer's dtype {self.dtype}")
        m = x.shape[0]
        if (x.shape[1] != self.in_features or tuple(out.shape[:2]) != (m, self.out_features)
                or (grad_input is not None and tuple(grad_input.shape[:2]) != (m, self.in_features))):
            raise ValueError("array shapes do not match the layer")

    cdef void forward_f32(self, const float* x, float* z, int m, int lo,
                          int hi) noexcept nogil:
        cdef int n_in = self.in_features
        if self._sparse:
            sparse_forward(m, hi - lo, n_in, x, n_in, self._panels_from(lo),
                           <float*>self._b + lo, z + lo, self.out_features)
            return
        if self._own_kernels(m):
            dense_forward(m, hi - lo, n_in, x, n_in,
                          <float*>self._w + <Py_ssize_t>lo * n_in, n_in,
                          <float*>self._b + lo, z + lo, self.out_features)
            return
        _dense_forward(x, <float*>self._w, <float*>self._b, z, m,
                       self.out_features, self.in_features, lo, hi)

    cdef bint _own_kernels(self, int m) noexcept nogil:
        """Whether the float32 products of ``m`` rows run numrec's own kernels rather
        than BLAS: up to SIMD_MAX_ROWS rows, and at any batch size for a layer too small
        to share (BLAS would hand it to a team of threads for no gain)."""
        return _simd and (m <= SIMD_MAX_ROWS
                          or <Py_ssize_t>self.out_features * self.in_features < SPLIT_MIN_WEIGHTS)

    cdef inline float* _panels_from(self, int lo) noexcept nogil:
        """The panel of ``_weights_t`` that starts at unit ``lo`` (a multiple of 16)."""
        return <float*>self._wt + self._panel_offset(lo)

    cdef inline Py_ssize_t _panel_offset(self, int lo) noexcept nogil:
        """Where the panel of unit ``lo`` (a multiple of 16) starts, in elements."""
        return <Py_ssize_t>(lo // NR_SPARSE_PANEL) * NR_SPARSE_PANEL * self.in_features

    cdef void forward_f64(self, const double* x, double* z, int m, int lo,
                          int hi) noexcept nogil:
        cdef int n_in = self.in_features
        if self._sparse:
            sparse_forward_f64(m, hi - lo, n_in, x, n_in,
                               <double*>self._wt + self._panel_offset(lo),
                               <double*>self._b + lo, z + lo, self.out_features)
            return
        _dense_forward(x, <double*>self._w, <double*>self._b, z, m,
                       self.out_features, self.in_features, lo, hi)

    cdef void backward_input_f32(self, const float* g, float* gx, int m) noexcept nogil:
        self.backward_input_columns_f32(g, gx, m, 0, self.in_features)

    cdef void backward_input_columns_f32(self, const float* g, float* gx, int m, int lo,
                                         int hi) noexcept nogil:
        """Columns lo:hi of ``gx = g @ W``: each column's sums run in the same order
        whatever the range, so threads sharing the columns get the bits of one call.

        On the kernels for zero inputs, those columns of W are first copied back from
        the panels into ``weights`` (stale meanwhile, and rewritten when they are
        switched off), so that the product and its bits are those of the dense layout.
        """
        cdef int n_in = self.in_features, n_out = self.out_features
        if lo >= hi:
            return
        if self._sparse:
            nr_sparse_from_panels_columns(n_out, n_in, <float*>self._wt, <float*>self._w,
                                          lo, hi)
        if self._own_kernels(m):
            dense_input_grad(m, n_out, hi - lo, g, n_out, <float*>self._w + lo, n_in,
                             gx + lo, n_in)
        else:  # gx[:, lo:hi] = g @ W[:, lo:hi], to column-major BLAS its transpose
            _gemm(b"N", b"N", hi - lo, m, n_out, <float>1, <float*>self._w + lo, n_in,
                  g, n_out, <float>0, gx + lo, n_in)

    cdef void backward_input_f64(self, const double* g, double* gx, int m) noexcept nogil:
        if self._sparse:
            _panels_input_grad(g, <double*>self._wt, gx, m, self.out_features,
                               self.in_features, 0, self.in_features)
            return
        matmul_nn(m, self.in_features, self.out_features, 1, g, <double*>self._w, 0, gx)

    cdef void gradient_f32(self, const float* x, const float* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        cdef int n_in = self.in_features, n_out = self.out_features
        cdef float* gw = <float*>self._gw + <Py_ssize_t>lo * n_in
        cdef float* gt
        if self._sparse_grads:  # the sparse update with step 1 on the gradient's panels
            gt = <float*>self._gt + <Py_ssize_t>(lo // NR_SPARSE_PANEL) * NR_SPARSE_PANEL * n_in
            if not accumulate:
                memset(gt, 0, <size_t>_padded_units(hi - lo) * n_in * sizeof(float))
            sparse_update(m, hi - lo, n_in, 1, g + lo, n_out, x, n_in, gt)
            _column_sums(g, <float*>self._gb, m, n_out, lo, hi, 1, 1 if accumulate else 0)
            return
        if self._own_kernels(m):  # the folded kernel with step 1 on the gradient
            if not accumulate:
                memset(gw, 0, <size_t>(hi - lo) * n_in * sizeof(float))
            dense_update(m, hi - lo, n_in, 1, g + lo, n_out, x, n_in, gw, n_in)
            _column_sums(g, <float*>self._gb, m, n_out, lo, hi, 1, 1 if accumulate else 0)
            return
        _dense_gradient(x, g, <float*>self._gw, <float*>self._gb, m, n_out, n_in, lo, hi,
                        accumulate)

    cdef void gradient_f64(self, const double* x, const double* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        cdef int n_in = self.in_features, n_out = self.out_features
        cdef double* gt
        if self._sparse_grads:  # the sparse update with step 1 on the gradient's panels
            gt = <double*>self._gt + self._panel_offset(lo)
            if not accumulate:
                memset(gt, 0, <size_t>_padded_units(hi - lo) * n_in * sizeof(double))
            sparse_update_f64(m, hi - lo, n_in, 1, g + lo, n_out, x, n_in, gt)
            _column_sums(g, <double*>self._gb, m, n_out, lo, hi, 1, 1 if accumulate else 0)
            return
        _dense_gradient(x, g, <double*>self._gw, <double*>self._gb, m, self.out_features,
                        self.in_features, lo, hi, accumulate)

    cdef void folded_update_f32(self, const float* x, const float* g, int m, double step,
                                int lo, int hi) noexcept nogil:
        cdef int n_in = self.in_features, n_out = self.out_features
        if self._sparse:
            sparse_update(m, hi - lo, n_in, <float>step, g + lo, n_out, x, n_in,
                          self._panels_from(lo))
            _column_sums(g, <float*>self._b, m, n_out, lo, hi, <float>step, 1)
            return
        if self._own_kernels(m):
            dense_update(m, hi - lo, n_in, <float>step, g + lo, n_out, x, n_in,
                         <float*>self._w + <Py_ssize_t>lo * n_in, n_in)
            _column_sums(g, <float*>self._b, m, n_out, lo, hi, <float>step, 1)
            return
        _dense_folded(x, g, <float*>self._w, <float*>self._b, m, n_out, n_in, step, lo, hi)

    cdef void folded_update_f64(self, const double* x, const double* g, int m, double step,
                                int lo, int hi) noexcept nogil:
        cdef int n_in = self.in_features, n_out = self.out_features
        if self._sparse:
            sparse_update_f64(m, hi - lo, n_in, step, g + lo, n_out, x, n_in,
                              <double*>self._wt + self._panel_offset(lo))
            _column_sums(g, <double*>self._b, m, n_out, lo, hi, step, 1)
            return
        _dense_folded(x, g, <double*>self._w, <double*>self._b, m, self.out_features,
                      self.in_features, step, lo, hi)

    cdef bint defers_update(self, int m) noexcept nogil:
        return self._single and _simd and not self._sparse and m <= SIMD_MAX_ROWS

    cdef void deferred_update_f32(self, const float* x, const float* g, int m,
                                  double step, bint apply) noexcept nogil:
        """W += step * (g.T @ x) in one rounding per weight, the sum kept in
        grad_weights between the steps; b += step * column sums of g at once."""
        cdef int n_in = self.in_features, n_out = self.out_features
        if apply:
            nr_axpy_fma_f32(<Py_ssize_t>n_out * n_in, <float>step, <float*>self._gw,
                            <float*>self._w)
            return
        memset(self._gw, 0, <size_t>n_out * n_in * sizeof(float))
        dense_update(m, n_out, n_in, 1, g, n_out, x, n_in, <float*>self._gw, n_in)
        _column_sums(g, <float*>self._b, m, n_out, 0, n_out, <float>step, 1)

    cdef bint takes_pixels(self) noexcept nogil:
        return self._sparse  # the kernels for zero inputs read pixels as well

    cdef void forward_pixels_f32(self, const uint8_t* x, float* z, int m, int lo,
                                 int hi) noexcept nogil:
        pixels_forward(m, hi - lo, self.in_features, x, self.in_features,
                       self._panels_from(lo), <float*>self._b + lo, z + lo,
                       self.out_features)

    cdef void folded_update_pixels_f32(self, const uint8_t* x, const float* g, int m,
                                       double step, int lo, int hi) noexcept nogil:
        cdef int n_in = self.in_features, n_out = self.out_features
        pixels_update(m, hi - lo, n_in, <float>step, g + lo, n_out, x,
                      n_in, self._panels_from(lo))
        _column_sums(g, <float*>self._b, m, n_out, lo, hi, <float>step, 1)


def _repeat_kernel(str kernel, Dense layer, float[:, ::1] x, float[:, ::1] g,
                   float[:, ::1] out, int repeats):
    """Run one float32 kernel of ``layer`` ``repeats`` times without the GIL, for
    benchmarks (benchmarks/bench_kernels.py): ``"forward"`` (out = x W^T + b),
    ``"input_grad"`` (out = g W) or ``"update"`` (the folded SGD step W -= 1e-9 g^T x,
    b -= 1e-9 column sums of g), on the layer's current kernels: those for mostly-zero
    inputs after ``layer._sparse_inputs(True)``.  x (m, in), g and z (m, out), gx (m, in).
    """
    cdef int m = x.shape[0], r, which
    if kernel not in ("forward", "input_grad", "update"):
        raise ValueError(f"unknown kernel {kernel!r}")
    which = ("forward", "input_grad", "update").index(kernel)
    layer._check_kernel_args(True, x, g, None)
    width = layer.in_features if which == 1 else layer.out_features
    if out.shape[0] != m or out.shape[1] != width:
        raise ValueError(f"out must have shape ({m}, {width})")
    if m == 0:
        return
    with nogil:
        for r in range(repeats):
            if which == 0:
                layer.forward_f32(&x[0, 0], &out[0, 0], m, 0, layer.out_features)
            elif which == 1:
                layer.backward_input_f32(&g[0, 0], &out[0, 0], m)
            else:
                layer.folded_update_f32(&x[0, 0], &g[0, 0], m, -1e-9, 0, layer.out_features)


def _sparse_forward_f64(str level, double[:, ::1] x, double[:, :, ::1] wt, b, int n):
    """``x @ W.T + b`` (m, n) by the float64 kernel for zero inputs of ``level``
    (``"portable"``, ``"avx2"`` or ``"avx512"``), W (n, k) in the panels ``wt`` (as from
    :func:`_panels`), ``b`` a float64 array of n entries or None.  For tests."""
    cdef int index = _kernels.check_level(level, _kernels.LEVELS[_available_level])
    cdef int m = x.shape[0], k = x.shape[1]
    cdef double[::1] bias
    cdef const double* bp = NULL
    _check_panels_f64(wt, n, k)
    if b is not None:
        bias = b
        if bias.shape[0] != n:
            raise ValueError(f"b must have {n} entries")
        bp = &bias[0]
    z = np.zeros((m, n))
    cdef double[:, ::1] out = z
    if m == 0:
        return z
    with nogil:
        (nr_sparse_forward_f64_avx512 if index == LEVEL_AVX512 else
         nr_sparse_forward_f64_avx2 if index == LEVEL_AVX2 else
         nr_sparse_forward_f64)(m, n, k, &x[0, 0], k, &wt[0, 0, 0], bp, &out[0, 0], n)
    return z


def _sparse_update_f64(str level, double alpha, double[:, ::1] g, double[:, ::1] x,
                       double[:, :, ::1] wt):
    """``W += alpha * g.T @ x`` in place on the panels ``wt`` by the float64 kernel for
    zero inputs of ``level``; g (m, n), x (m, k).  For tests."""
    cdef int index = _kernels.check_level(level, _kernels.LEVELS[_available_level])
    cdef int m = x.shape[0], k = x.shape[1], n = g.shape[1]
    if g.shape[0] != m:
        raise ValueError("g and x must have the same number of rows")
    _check_panels_f64(wt, n, k)
    if m == 0:
        return
    with nogil:
        (nr_sparse_update_f64_avx512 if index == LEVEL_AVX512 else
         nr_sparse_update_f64_avx2 if index == LEVEL_AVX2 else
         nr_sparse_update_f64)(m, n, k, alpha, &g[0, 0], n, &x[0, 0], k, &wt[0, 0, 0])


def _unpanel_columns(float[:, :, ::1] wt, float[:, ::1] w, int lo, int hi):
    """Copy columns lo:hi of W (n, k) from the panels ``wt`` (as from :func:`_panels`) into
    ``w``, leaving its other columns as they are.  For tests."""
    cdef int n = w.shape[0], k = w.shape[1]
    if (wt.shape[0] != (n + NR_SPARSE_PANEL - 1) // NR_SPARSE_PANEL or wt.shape[1] != k
            or wt.shape[2] != NR_SPARSE_PANEL):
        raise ValueError("wt must be the panels of w's shape")
    if not 0 <= lo <= hi <= k:
        raise ValueError(f"need 0 <= lo <= hi <= {k}, got {lo} and {hi}")
    if n == 0 or lo == hi:
        return
    with nogil:
        nr_sparse_from_panels_columns(n, k, &wt[0, 0, 0], &w[0, 0], lo, hi)


def _check_panels_f64(double[:, :, ::1] wt, int n, int k):
    if (wt.shape[0] != (n + NR_SPARSE_PANEL - 1) // NR_SPARSE_PANEL or wt.shape[1] != k
            or wt.shape[2] != NR_SPARSE_PANEL or k > NR_SPARSE_MAX_INPUTS):
        raise ValueError("wt must be the panels of a (n, k) matrix, k <= 8192")

"""Layers over images: the convolution ``Conv2D`` and the max pooling ``MaxPool2D``.

Images are PyTorch's layout, ``(channels, height, width)`` per sample; between
components a batch is the C-contiguous rows ``(m, channels * height * width)`` of those
values (channel-major, then rows, then columns), so that the kernel contract of
``Layer`` (docs/architecture.rst) holds as for ``Dense``: ``in_features`` and
``out_features`` are the products of the input and output shapes, known once the layer
is built for an input shape (:meth:`Conv2D.build`).

The convolution runs as matrix products (im2col): each sample's input windows are
copied into a column matrix of ``in_channels * kh * kw`` rows, one column per output
position, in blocks of columns that fit a few megabytes, and multiplied by the weights
through BLAS.
"""
from cython cimport floating
from cpython.pythread cimport (
    PyThread_allocate_lock, PyThread_free_lock, PyThread_acquire_lock,
    PyThread_release_lock, WAIT_LOCK,
)
from libc.math cimport isnan
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
cimport numpy as cnp

import numbers

import numpy as np

from numrec._core._blas cimport _gemm
from numrec._core._copying import reduce_component
from numrec._core._layers import INITIALISERS
from numrec._core._memory import aligned_zeros
from numrec._core._validation import (
    MAX_INT, as_rng, check_array, check_dtype, check_positive_int,
)

cnp.import_array()

# Bytes of one block of the column matrix: each sample's columns are built and
# multiplied this many at a time, so that memory stays bounded for large images.
cdef size_t BLOCK_BYTES = 2 << 20

# A layer with at least this many multiply-adds per sample is worth sharing between
# threads (as Dense's 32768 weights: below it, the barrier costs more than half).
cdef Py_ssize_t SPLIT_MIN_WORK = 32768

# Longest batch on which the threads share a layer by channels: no limit, because each
# sample's product is small enough that BLAS's own threads gain nothing on it.
cdef int NO_ROW_LIMIT = 1 << 30

#: ``Conv2D(init=...)`` rules, from the initialisers of ``Dense`` with fan-in
#: ``in_channels * kh * kw``.
CONV_INITIALISERS = ("torch", "he")


cdef class _Scratch:
    """Work buffers for kernels that may run at once on several threads.

    ``take`` hands out a free buffer of at least ``size`` bytes (kept for reuse after
    ``give``), so no two running kernels share one; beyond SCRATCH_SLOTS at once, a
    buffer of their own that ``give`` frees.  NULL if memory runs out.
    """

    def __cinit__(self):
        cdef int i
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError()
        for i in range(SCRATCH_SLOTS):
            self._slots[i] = NULL
            self._sizes[i] = 0
            self._busy[i] = False

    def __dealloc__(self):
        cdef int i
        for i in range(SCRATCH_SLOTS):
            free(self._slots[i])
        if self._lock != NULL:
            PyThread_free_lock(self._lock)

    cdef void* take(self, size_t size) noexcept nogil:
        cdef int i
        cdef void* buffer = NULL
        PyThread_acquire_lock(self._lock, WAIT_LOCK)
        for i in range(SCRATCH_SLOTS):
            if not self._busy[i]:
                if self._sizes[i] < size:
                    free(self._slots[i])
                    self._slots[i] = malloc(size)
                    self._sizes[i] = size if self._slots[i] != NULL else 0
                if self._slots[i] != NULL:
                    self._busy[i] = True
                    buffer = self._slots[i]
                break
        PyThread_release_lock(self._lock)
        if buffer == NULL:
            buffer = malloc(size)
        return buffer

    cdef void give(self, void* buffer) noexcept nogil:
        cdef int i
        PyThread_acquire_lock(self._lock, WAIT_LOCK)
        for i in range(SCRATCH_SLOTS):
            if self._slots[i] == buffer and self._busy[i]:
                self._busy[i] = False
                buffer = NULL
                break
        PyThread_release_lock(self._lock)
        free(buffer)


# Bytes of column matrices that a Conv2D keeps from its forward pass for the weight
# gradient (the small network's two layers at batch 256 take 15 and 26 MB a batch; the
# first layer's inputs alternate between the trainer's two batch buffers, so two
# batches' matrices can be kept at once).  With 32 MB the weight gradients built many
# of them again at batch 256 (im2col 14 % of the epoch's perf samples, 7 % with 64 MB).
cdef size_t KEPT_BYTES = 64 << 20


cdef class _KeptColumns:
    """Column matrices that forward passes built, kept for the weight gradient.

    A forward pass on a block of rows ``claim``s room for their matrices (which drops
    any kept block whose input rows it overlaps: those rows hold new values); the
    weight gradient finds a row's matrix by the address of its input row
    (:func:`_kept_columns` on a ``snapshot``).  Holds at most ``limit`` bytes, and
    blocks of at most as many rows as a weight gradient has taken (so that passes that
    only evaluate keep nothing): beyond, ``claim`` returns NULL and the matrices are
    built again.  Only the compiled loop's
    passes keep matrices, where the rows of a forward pass stay unchanged until its
    backward pass; the Python-level passes ``forget`` them.
    """

    def __cinit__(self):
        cdef int i
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError()
        for i in range(KEPT_BLOCKS):
            self._table.x[i] = NULL
            self._table.rows[i] = 0
            self._table.col[i] = NULL
            self._sizes[i] = 0
        self._total = 0
        self._limit = KEPT_BYTES
        self._rows_wanted = 0

    def __dealloc__(self):
        cdef int i
        for i in range(KEPT_BLOCKS):
            free(self._table.col[i])
        if self._lock != NULL:
            PyThread_free_lock(self._lock)

    cdef char* claim(self, const char* x, Py_ssize_t rows, size_t row_bytes,
                     size_t col_bytes, bint keep) noexcept nogil:
        """Room for the column matrices of ``rows`` input rows from ``x`` on (each row
        ``row_bytes`` long, each matrix ``col_bytes``), kept until a later claim
        overlaps those rows; NULL if they do not fit or not ``keep`` (which still drops
        the kept blocks that those rows overlap)."""
        cdef int i, slot = -1
        cdef size_t need = <size_t>rows * col_bytes
        cdef const char* end = x + <size_t>rows * row_bytes
        cdef char* buffer = NULL
        PyThread_acquire_lock(self._lock, WAIT_LOCK)
        for i in range(KEPT_BLOCKS):
            if self._table.x[i] != NULL and x < self._table.x[i] + <size_t>self._table.rows[i] * row_bytes and self._table.x[i] < end:
                self._table.x[i] = NULL
        for i in range(KEPT_BLOCKS if keep and rows <= self._rows_wanted else 0):
            # a free slot large enough, else any free one
            if self._table.x[i] == NULL and (slot < 0 or self._sizes[i] >= need):
                slot = i
                if self._sizes[i] >= need:
                    break
        if slot >= 0 and self._sizes[slot] < need:
            if self._total - self._sizes[slot] + need <= self._limit:
                free(self._table.col[slot])
                self._total -= self._sizes[slot]
                self._table.col[slot] = <char*>malloc(need)
                self._sizes[slot] = need if self._table.col[slot] != NULL else 0
                self._total += self._sizes[slot]
            if self._sizes[slot] < need:
                slot = -1
        if slot >= 0:
            self._table.x[slot] = x
            self._table.rows[slot] = rows
            buffer = self._table.col[slot]
        PyThread_release_lock(self._lock)
        return buffer

    cdef void snapshot(self, KeptTable* table, Py_ssize_t rows) noexcept nogil:
        """The kept blocks, for a weight gradient over ``rows`` rows."""
        PyThread_acquire_lock(self._lock, WAIT_LOCK)
        table[0] = self._table
        self._rows_wanted = max(self._rows_wanted, rows)
        PyThread_release_lock(self._lock)

    cdef void forget(self) noexcept nogil:
        cdef int i
        PyThread_acquire_lock(self._lock, WAIT_LOCK)
        for i in range(KEPT_BLOCKS):
            self._table.x[i] = NULL
        PyThread_release_lock(self._lock)


cdef inline const char* _kept_columns(const KeptTable* table, const char* x,
                                      size_t row_bytes, size_t col_bytes) noexcept nogil:
    """The kept column matrix of the input row at ``x``, or NULL."""
    cdef int i
    cdef Py_ssize_t offset
    for i in range(KEPT_BLOCKS):
        if table.x[i] != NULL and table.x[i] <= x:
            offset = x - table.x[i]
            if offset < table.rows[i] * <Py_ssize_t>row_bytes and offset % row_bytes == 0:
                return table.col[i] + (offset // row_bytes) * col_bytes
    return NULL


# --- arguments and shapes --------------------------------------------------------------

def _pair(value, name, minimum=1):
    """``value`` (an int or a pair of ints, each >= minimum) as a pair of ints."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an integer or a pair of integers, got {value!r}")
    pair = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(f"{name} must be an integer or a pair of integers, got {value!r}")
        if not minimum <= item <= MAX_INT:
            raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
        pair.append(int(item))
    return tuple(pair)


def _config_pair(a, b):
    """A pair for ``get_config``: one int when both are equal, else a list (JSON)."""
    return a if a == b else [a, b]


def _image_shape(layer, input_shape):
    """``input_shape`` checked to be ``(channels, height, width)`` of positive ints."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (shape is None or len(shape) != 3
            or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1
                   for n in shape)):
        raise ValueError(f"{layer!r} takes images of shape (channels, height, width), "
                         f"got input shape {input_shape!r}")
    return tuple(int(n) for n in shape)


cdef int _set_geometry(Geometry* g, layer, tuple shape, int itemsize) except -1:
    """Fill the input and output sizes of ``g`` (window, stride and padding set) for
    images of ``shape``; ValueError if the window does not fit."""
    c, h, w = shape
    padded_h, padded_w = h + 2 * g.ph, w + 2 * g.pw
    if g.kh > padded_h or g.kw > padded_w:
        raise ValueError(
            f"{layer!r}: its {g.kh}x{g.kw} window is larger than the input "
            f"{h}x{w} with padding ({padded_h}x{padded_w})")
    oh = (padded_h - g.kh) // g.sh + 1
    ow = (padded_w - g.kw) // g.sw + 1
    if c * h * w > MAX_INT or oh * ow * max(c, 1) > MAX_INT:
        raise ValueError(f"{layer!r}: images of shape {shape} are too large")
    g.c, g.h, g.w, g.oh, g.ow = c, h, w, oh, ow
    g.k = c * g.kh * g.kw
    g.hw = oh * ow
    g.block = <int>max(1, min(g.hw, BLOCK_BYTES // (<size_t>g.k * itemsize)))
    return 0


def _rows_in(layer, x, dtype, int n_in, tuple shape):
    """``x`` as C-contiguous rows ``(m, n_in)`` and whether it came as images."""
    if isinstance(x, np.ndarray) and x.ndim == 4:
        x = check_array(x, "x", shape=(None,) + shape, dtype=dtype)
        return x.reshape(x.shape[0], n_in), True
    return check_array(x, "x", shape=(None, n_in), dtype=dtype), False


def _rows_of_gradient(grad_output, dtype, Py_ssize_t m, int n_out, tuple shape):
    """``grad_output`` as rows ``(m, n_out)`` and whether it came as images."""
    if isinstance(grad_output, np.ndarray) and grad_output.ndim == 4:
        grad_output = check_array(grad_output, "grad_output", shape=(m,) + shape,
                                  dtype=dtype)
        return grad_output.reshape(m, n_out), True
    return check_array(grad_output, "grad_output", shape=(m, n_out), dtype=dtype), False


def _not_built(layer):
    return AttributeError(
        f"{layer!r} is not built: its input shape is unknown until build((channels, "
        f"height, width)), which a Sequential with input_shape calls")


def _rebuilt(rebuild, args, input_shape):
    """For ``pickle`` and ``copy``: the component that ``rebuild(*args)`` makes, built
    for ``input_shape`` if the original was."""
    component = rebuild(*args)
    if input_shape is not None:
        component.build(input_shape)
    return component


# --- kernels -------------------------------------------------------------------------------

cdef inline void _matmul(char* trans_a, char* trans_b, int m, int n, int k,
                         const floating* a, int lda, const floating* b, int ldb,
                         floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major ``C (m, n) = op(A) @ op(B) + beta * C`` with row strides lda, ldb, ldc
    (column-major BLAS sees the transposes, so the operands swap)."""
    _gemm(trans_b, trans_a, n, m, k, <floating>1, b, ldb, a, lda, beta, c, ldc)


cdef inline void _valid_columns(const Geometry* g, int j, int* first, int* last) noexcept nogil:
    """The output columns ``first:last`` whose window column ``j`` falls inside the
    image: ``0 <= x * sw - pw + j < w``."""
    cdef int before = g.pw - j, inside = g.w + g.pw - j
    first[0] = 0 if before <= 0 else (before + g.sw - 1) // g.sw
    last[0] = 0 if inside <= 0 else min(g.ow, (inside + g.sw - 1) // g.sw)
    if last[0] < first[0]:
        last[0] = first[0]


cdef void _im2col(const floating* x, floating* col, const Geometry* g, int p0,
                  int p1) noexcept nogil:
    """Columns p0:p1 of one sample's column matrix, ``col`` ``(k, p1 - p0)``:
    ``col[(c * kh + i) * kw + j, q] = x[c, y * sh - ph + i, x * sw - pw + j]`` for the
    output position ``p0 + q = y * ow + x``, zero outside the image."""
    cdef int n = p1 - p0, c, i, j, p, q, oy, ox, start, end, iy, valid_first, valid_last
    cdef int v0, v1
    cdef const floating* plane
    cdef const floating* src
    cdef floating* row
    if g.sw == 1 and p0 == 0 and p1 == g.hw:
        _im2col_whole(x, col, g)
        return
    for c in range(g.c):
        plane = x + <Py_ssize_t>c * g.h * g.w
        for i in range(g.kh):
            for j in range(g.kw):
                row = col + <Py_ssize_t>((c * g.kh + i) * g.kw + j) * n
                _valid_columns(g, j, &valid_first, &valid_last)
                p = p0
                q = 0
                while p < p1:  # one output row (or the part of it in p0:p1) at a time
                    oy = p // g.ow
                    start = p - oy * g.ow
                    end = min(g.ow, start + p1 - p)
                    iy = oy * g.sh - g.ph + i
                    if iy < 0 or iy >= g.h:
                        memset(row + q, 0, <size_t>(end - start) * sizeof(floating))
                    else:
                        v0 = min(max(start, valid_first), end)
                        v1 = max(min(end, valid_last), v0)
                        src = plane + <Py_ssize_t>iy * g.w - g.pw + j
                        for ox in range(start, v0):
                            row[q + ox - start] = 0
                        if g.sw == 1:
                            memcpy(row + q + v0 - start, src + v0,
                                   <size_t>(v1 - v0) * sizeof(floating))
                        else:
                            for ox in range(v0, v1):
                                row[q + ox - start] = src[ox * g.sw]
                        for ox in range(v1, end):
                            row[q + ox - start] = 0
                    q += end - start
                    p += end - start


cdef extern from *:
    """
    /* Rows of a window's run for im2col and col2im with a horizontal stride of 1:
       `rows` output rows, each `ow` long in col (one after another) and `step` apart
       in the image; columns first:last of a row lie in the image.  The pointers do not
       alias, which lets the compiler copy each run without checking.  GCC would turn
       the copy loop into a memcpy call per run, which costs more than the copy itself
       for runs of a few dozen bytes (a 5x5 window's run over an 8-wide output is 32
       bytes): NR_INLINE_COPIES keeps the loop, which it vectorises instead. */
    #if defined(__GNUC__) && !defined(__clang__)
    #define NR_INLINE_COPIES __attribute__((optimize("no-tree-loop-distribute-patterns")))
    #else
    #define NR_INLINE_COPIES
    #endif
    #define NR_RUNS(T, SUFFIX)                                                          \
    static NR_INLINE_COPIES void nr_copy_runs_##SUFFIX(const T* restrict src, ptrdiff_t step,          \
                                      T* restrict dst, int rows, int ow, int first,   \
                                      int last)                                       \
    {                                                                                 \
        for (int r = 0; r < rows; r++, src += step, dst += ow) {                      \
            for (int ox = 0; ox < first; ox++)                                        \
                dst[ox] = 0;                                                          \
            for (int ox = first; ox < last; ox++)                                     \
                dst[ox] = src[ox];                                                    \
            for (int ox = last; ox < ow; ox++)                                        \
                dst[ox] = 0;                                                          \
        }                                                                             \
    }                                                                                 \
    static void nr_add_runs_##SUFFIX(const T* restrict src, T* restrict dst,          \
                                     ptrdiff_t step, int rows, int ow, int first,     \
                                     int last)                                        \
    {                                                                                 \
        for (int r = 0; r < rows; r++, src += ow, dst += step)                        \
            for (int ox = first; ox < last; ox++)                                     \
                dst[ox] += src[ox];                                                   \
    }
    NR_RUNS(float, f32)
    NR_RUNS(double, f64)
    """
    void _copy_runs_f32 "nr_copy_runs_f32" (const float* src, Py_ssize_t step, float* dst,
                                            int rows, int ow, int first,
                                            int last) noexcept nogil
    void _copy_runs_f64 "nr_copy_runs_f64" (const double* src, Py_ssize_t step, double* dst,
                                            int rows, int ow, int first,
                                            int last) noexcept nogil
    void _add_runs_f32 "nr_add_runs_f32" (const float* src, float* dst, Py_ssize_t step,
                                          int rows, int ow, int first, int last) noexcept nogil
    void _add_runs_f64 "nr_add_runs_f64" (const double* src, double* dst, Py_ssize_t step,
                                          int rows, int ow, int first, int last) noexcept nogil


cdef inline void _rows_inside(const Geometry* g, int i, int* first, int* last) noexcept nogil:
    """The output rows ``first:last`` whose window row ``i`` falls inside the image:
    ``0 <= y * sh - ph + i < h``."""
    cdef int before = g.ph - i, inside = g.h + g.ph - i
    first[0] = 0 if before <= 0 else (before + g.sh - 1) // g.sh
    last[0] = 0 if inside <= 0 else min(g.oh, (inside + g.sh - 1) // g.sh)
    if last[0] < first[0]:
        last[0] = first[0]


cdef void _im2col_whole(const floating* x, floating* col, const Geometry* g) noexcept nogil:
    """:func:`_im2col` of all of a sample's columns, for a horizontal stride of 1: each
    output row's window row is a run of the input row."""
    cdef int c, i, j, first, last, y0, y1
    cdef const floating* plane
    cdef const floating* src
    cdef floating* dst
    for c in range(g.c):
        plane = x + <Py_ssize_t>c * g.h * g.w
        for i in range(g.kh):
            for j in range(g.kw):
                dst = col + <Py_ssize_t>((c * g.kh + i) * g.kw + j) * g.hw
                _valid_columns(g, j, &first, &last)
                _rows_inside(g, i, &y0, &y1)
                if y0 > 0:
                    memset(dst, 0, <size_t>y0 * g.ow * sizeof(floating))
                src = plane + <Py_ssize_t>(y0 * g.sh - g.ph + i) * g.w - g.pw + j
                if floating is float:
                    _copy_runs_f32(src, <Py_ssize_t>g.sh * g.w, dst + y0 * g.ow, y1 - y0,
                                   g.ow, first, last)
                else:
                    _copy_runs_f64(src, <Py_ssize_t>g.sh * g.w, dst + y0 * g.ow, y1 - y0,
                                   g.ow, first, last)
                if y1 < g.oh:
                    memset(dst + y1 * g.ow, 0, <size_t>(g.oh - y1) * g.ow * sizeof(floating))


cdef void _col2im_whole(const floating* col, floating* gx, const Geometry* g) noexcept nogil:
    """:func:`_col2im` of all of a sample's columns, for a horizontal stride of 1."""
    cdef int c, i, j, first, last, y0, y1
    cdef floating* plane
    cdef floating* dst
    cdef const floating* src
    for c in range(g.c):
        plane = gx + <Py_ssize_t>c * g.h * g.w
        for i in range(g.kh):
            for j in range(g.kw):
                src = col + <Py_ssize_t>((c * g.kh + i) * g.kw + j) * g.hw
                _valid_columns(g, j, &first, &last)
                _rows_inside(g, i, &y0, &y1)
                dst = plane + <Py_ssize_t>(y0 * g.sh - g.ph + i) * g.w - g.pw + j
                if floating is float:
                    _add_runs_f32(src + y0 * g.ow, dst, <Py_ssize_t>g.sh * g.w, y1 - y0,
                                  g.ow, first, last)
                else:
                    _add_runs_f64(src + y0 * g.ow, dst, <Py_ssize_t>g.sh * g.w, y1 - y0,
                                  g.ow, first, last)


cdef void _col2im(const floating* col, floating* gx, const Geometry* g, int p0,
                  int p1) noexcept nogil:
    """Add columns p0:p1 of a column matrix's gradient back onto one sample's input
    gradient ``gx`` (the transpose of :func:`_im2col`)."""
    cdef int n = p1 - p0, c, i, j, p, q, oy, ox, start, end, iy, valid_first, valid_last
    cdef int v0, v1
    cdef floating* plane
    cdef floating* dst
    cdef const floating* row
    if g.sw == 1 and p0 == 0 and p1 == g.hw:
        _col2im_whole(col, gx, g)
        return
    for c in range(g.c):
        plane = gx + <Py_ssize_t>c * g.h * g.w
        for i in range(g.kh):
            for j in range(g.kw):
                row = col + <Py_ssize_t>((c * g.kh + i) * g.kw + j) * n
                _valid_columns(g, j, &valid_first, &valid_last)
                p = p0
                q = 0
                while p < p1:
                    oy = p // g.ow
                    start = p - oy * g.ow
                    end = min(g.ow, start + p1 - p)
                    iy = oy * g.sh - g.ph + i
                    if 0 <= iy < g.h:
                        v0 = min(max(start, valid_first), end)
                        v1 = max(min(end, valid_last), v0)
                        dst = plane + <Py_ssize_t>iy * g.w - g.pw + j
                        if g.sw == 1:
                            _add_to(dst + v0, row + q + v0 - start, v1 - v0)
                        else:
                            for ox in range(v0, v1):
                                dst[ox * g.sw] += row[q + ox - start]
                    q += end - start
                    p += end - start


cdef inline void _add_to(floating* dst, const floating* src, int n) noexcept nogil:
    cdef int t
    for t in range(n):
        dst[t] += src[t]


cdef void _conv_forward(const Geometry* g, const floating* x, const floating* w,
                        const floating* b, floating* z, int m, int n_out, int lo, int hi,
                        floating* col, floating* kept) noexcept nogil:
    """Channels lo:hi of ``z`` (m, n_out): per sample, ``W[lo:hi] @ col + b[lo:hi]``
    (without the bias if ``b`` is NULL).
    The samples' column matrices are built in ``kept`` one after another unless it is
    NULL (for a whole sample in one block), else in ``col``, a block at a time."""
    cdef int s, c, p, p0, p1
    cdef Py_ssize_t n_in = <Py_ssize_t>g.c * g.h * g.w
    cdef floating* zs
    cdef floating* out
    for s in range(m):
        zs = z + <Py_ssize_t>s * n_out
        if kept != NULL:
            col = kept + <Py_ssize_t>s * g.k * g.hw
        p0 = 0
        while p0 < g.hw:
            p1 = min(g.hw, p0 + g.block)
            _im2col(x + s * n_in, col, g, p0, p1)
            _matmul(b"N", b"N", hi - lo, p1 - p0, g.k, w + <Py_ssize_t>lo * g.k, g.k,
                    col, p1 - p0, 0, zs + <Py_ssize_t>lo * g.hw + p0, g.hw)
            p0 = p1
        for c in range(lo, hi if b != NULL else lo):
            out = zs + <Py_ssize_t>c * g.hw
            for p in range(g.hw):
                out[p] += b[c]


cdef inline bint _gradient_by_columns(const Geometry* g, int units) noexcept nogil:
    """Whether the weight gradient of ``units`` output channels takes its products as
    ``col_s @ g_s.T`` (a product of two operands stored along their rows, which BLAS
    runs without repacking them) rather than ``g_s @ col_s.T`` (both stored along the
    reduction, which BLAS packs first unless the result is small: at most 1200 entries
    from sums of at least 32 terms).  Measured: conv(16->32, 5x5) on 12x12 takes 2.3
    times less, conv(32->64, 3x3) on 26x26 1.2 times less; conv(1->16, 5x5) on 28x28 is
    as fast either way."""
    return <Py_ssize_t>g.k * units > 1200 or g.hw < 32


cdef inline size_t _gradient_work(const Geometry* g, int units, size_t itemsize) noexcept nogil:
    """Bytes of :func:`_conv_gradient`'s work buffer: a block of a column matrix and,
    for :func:`_gradient_by_columns`, a transposed output gradient and dL/dW."""
    cdef size_t size = <size_t>g.k * g.block
    if _gradient_by_columns(g, units):
        size += <size_t>(g.hw + g.k) * units
    return size * itemsize


cdef void _conv_gradient(const Geometry* g, const floating* x, const floating* grad,
                         floating* gw, floating* gb, int m, int n_out, int lo, int hi,
                         bint accumulate, floating* col, const KeptTable* kept) noexcept nogil:
    """Channels lo:hi of ``dL/dW += g_s[lo:hi] @ col_s.T`` and ``dL/db += g_s[lo:hi]``
    summed over positions, sample after sample (written afresh unless accumulate);
    a sample's column matrix from ``kept`` if a forward pass kept it, else built in
    ``col``, a block at a time (:func:`_gradient_sample`)."""
    cdef int s
    cdef Py_ssize_t n_in = <Py_ssize_t>g.c * g.h * g.w
    cdef size_t col_bytes = <size_t>g.k * g.hw * sizeof(floating)
    cdef const floating* whole
    _gradient_begin(g, gw, gb, lo, hi, accumulate, col)
    for s in range(m):
        whole = <const floating*>_kept_columns(kept, <const char*>(x + s * n_in),
                                               n_in * sizeof(floating), col_bytes)
        _gradient_sample(g, x + s * n_in, grad + <Py_ssize_t>s * n_out, whole, gw, gb, lo,
                         hi, col)
    _gradient_end(g, gw, lo, hi, col)


cdef inline void _gradient_begin(const Geometry* g, floating* gw, floating* gb, int lo,
                                 int hi, bint accumulate, floating* col) noexcept nogil:
    """Clear channels lo:hi of dL/dW and dL/db unless accumulate; for
    :func:`_gradient_by_columns`, copy dL/dW's rows into their transpose ``acc`` in
    the work buffer ``col`` (after a block of the column matrix and the transposed
    output gradient ``gt``)."""
    cdef int c, j, units = hi - lo
    cdef floating* rows = gw + <Py_ssize_t>lo * g.k
    cdef floating* acc = col + <Py_ssize_t>g.k * g.block + <Py_ssize_t>g.hw * units
    if not accumulate:
        memset(rows, 0, <size_t>units * g.k * sizeof(floating))
        memset(gb + lo, 0, <size_t>units * sizeof(floating))
    if _gradient_by_columns(g, units):
        for j in range(g.k):
            for c in range(units):
                acc[j * units + c] = rows[c * g.k + j]


cdef inline void _gradient_end(const Geometry* g, floating* gw, int lo, int hi,
                               floating* col) noexcept nogil:
    """For :func:`_gradient_by_columns`, dL/dW's rows back from ``acc``."""
    cdef int c, j, units = hi - lo
    cdef floating* rows = gw + <Py_ssize_t>lo * g.k
    cdef floating* acc = col + <Py_ssize_t>g.k * g.block + <Py_ssize_t>g.hw * units
    if _gradient_by_columns(g, units):
        for c in range(units):
            for j in range(g.k):
                rows[c * g.k + j] = acc[j * units + c]


cdef void _gradient_sample(const Geometry* g, const floating* xs, const floating* gs,
                           const floating* whole, floating* gw, floating* gb, int lo,
                           int hi, floating* col) noexcept nogil:
    """One sample's part of :func:`_conv_gradient`: its output gradient ``gs`` (all
    channels) and column matrix ``whole`` if kept (else NULL: built in ``col`` a block
    at a time).  For :func:`_gradient_by_columns`, the transposes:
    ``dL/dW.T += col_s @ g_s[lo:hi].T`` into ``acc``, with g_s's transpose ``gt``
    (both in ``col`` after the block; see :func:`_gradient_begin`)."""
    cdef int c, p0, p1, units = hi - lo
    cdef bint by_columns = _gradient_by_columns(g, units)
    cdef floating* gt = col + <Py_ssize_t>g.k * g.block       # (hw, units)
    cdef floating* acc = gt + <Py_ssize_t>g.hw * units          # (k, units)
    cdef floating* rows = gw + <Py_ssize_t>lo * g.k
    if by_columns:
        _transpose(gs + <Py_ssize_t>lo * g.hw, gt, units, g.hw)
    if whole != NULL:
        _weight_product(g, by_columns, whole, gs, gt, rows, acc, lo, units, 0, g.hw)
    p0 = g.hw if whole != NULL else 0
    while p0 < g.hw:
        p1 = min(g.hw, p0 + g.block)
        _im2col(xs, col, g, p0, p1)
        _weight_product(g, by_columns, col, gs, gt, rows, acc, lo, units, p0, p1)
        p0 = p1
    for c in range(lo, hi):
        gb[c] += _sum(gs + <Py_ssize_t>c * g.hw, g.hw)


cdef inline floating _sum(const floating* a, int n) noexcept nogil:
    """``a[0] + ... + a[n - 1]`` in 16 interleaved partial sums (a[i] into sum i % 16),
    added pairwise at the end, then the last n % 16 terms: independent additions that
    the compiler runs as vectors, where one running sum waits on each addition."""
    cdef floating part[16]
    cdef floating total
    cdef int i, l, full = n - n % 16
    for l in range(16):
        part[l] = 0
    for i in range(0, full, 16):
        for l in range(16):
            part[l] += a[i + l]
    for l in range(8):
        part[l] += part[l + 8]
    for l in range(4):
        part[l] += part[l + 4]
    total = (part[0] + part[2]) + (part[1] + part[3])
    for i in range(full, n):
        total += a[i]
    return total


cdef inline void _weight_product(const Geometry* g, bint by_columns, const floating* col,
                                 const floating* gs, const floating* gt, floating* rows,
                                 floating* acc, int lo, int units, int p0,
                                 int p1) noexcept nogil:
    """Add the product of columns p0:p1 of a sample's column matrix ``col`` (k, p1 - p0)
    to dL/dW's ``rows`` (units, k), or to its transpose ``acc`` (k, units) from the
    transposed output gradient ``gt`` (hw, units)."""
    if by_columns:
        _matmul(b"N", b"N", g.k, units, p1 - p0, col, p1 - p0,
                gt + <Py_ssize_t>p0 * units, units, 1, acc, units)
    else:
        _matmul(b"N", b"T", units, g.k, p1 - p0, gs + <Py_ssize_t>lo * g.hw + p0, g.hw,
                col, p1 - p0, 1, rows, g.k)


cdef inline void _transpose(const floating* a, floating* t, int rows, int cols) noexcept nogil:
    """``t`` (cols, rows) = ``a`` (rows, cols).T"""
    cdef int i, j
    for i in range(rows):
        for j in range(cols):
            t[j * rows + i] = a[i * cols + j]


cdef void _conv_input_gradient(const Geometry* g, const floating* grad, const floating* w,
                               floating* gx, int m, int n_out, floating* col) noexcept nogil:
    """``dL/dx``: per sample, ``W.T @ g_s`` scattered back onto the input (col2im)."""
    cdef int s, p0, p1
    cdef Py_ssize_t n_in = <Py_ssize_t>g.c * g.h * g.w
    memset(gx, 0, <size_t>m * n_in * sizeof(floating))
    for s in range(m):
        p0 = 0
        while p0 < g.hw:
            p1 = min(g.hw, p0 + g.block)
            _matmul(b"T", b"N", g.k, p1 - p0, n_out // g.hw, w, g.k, grad + <Py_ssize_t>s * n_out + p0, g.hw, 0, col, p1 - p0)
            _col2im(col, gx + s * n_in, g, p0, p1)
            p0 = p1


cdef void _pool_forward(const Geometry* g, const floating* x, floating* z, int* argmax,
                        int m, int lo, int hi) noexcept nogil:
    """Channels lo:hi of the window maxima of m samples, and where each was (an offset
    into the sample's input row).  The first maximum in scan order wins, and NaN
    propagates, as in PyTorch's max_pool2d."""
    cdef int s, c, oy, ox, i, j, best, offset
    cdef Py_ssize_t n_in = <Py_ssize_t>g.c * g.h * g.w
    cdef Py_ssize_t n_out = <Py_ssize_t>g.c * g.hw, out
    cdef const floating* xs
    cdef floating value, top
    if g.kh == 2 and g.kw == 2 and g.sh == 2 and g.sw == 2:
        _pool_forward_2x2(g, x, z, argmax, m, lo, hi)
        return
    for s in range(m):
        xs = x + s * n_in
        for c in range(lo, hi):
            out = s * n_out + <Py_ssize_t>c * g.hw
            for oy in range(g.oh):
                for ox in range(g.ow):
                    best = (c * g.h + oy * g.sh) * g.w + ox * g.sw
                    top = xs[best]
                    for i in range(g.kh):
                        offset = (c * g.h + oy * g.sh + i) * g.w + ox * g.sw
                        for j in range(g.kw):
                            value = xs[offset + j]
                            if value > top or isnan(value):
                                top = value
                                best = offset + j
                    z[out] = top
                    argmax[out] = best
                    out += 1


cdef extern from *:
    """
    /* One output row of 2x2 max pooling with stride 2: input rows r0 and r1, the
       maxima into z and their offsets (from `offset`, r0's offset in the sample; rows
       `w` apart) into where.  Branch-free selects, so that the compiler vectorises:
       each later value of a window replaces the maximum so far if larger or NaN. */
    #define NR_POOL_2X2(NAME, T)                                                      \
    static void NAME(const T* r0, const T* r1, int ow, int offset, int w, T* z,      \
                     int* where)                                                     \
    {                                                                                \
        for (int ox = 0; ox < ow; ox++) {                                            \
            T top = r0[2 * ox], value;                                               \
            int best = offset + 2 * ox, take;                                        \
            value = r0[2 * ox + 1];                                                  \
            take = (value > top) | (value != value);                                 \
            top = take ? value : top;                                                \
            best = take ? offset + 2 * ox + 1 : best;                                \
            value = r1[2 * ox];                                                      \
            take = (value > top) | (value != value);                                 \
            top = take ? value : top;                                                \
            best = take ? offset + w + 2 * ox : best;                                \
            value = r1[2 * ox + 1];                                                  \
            take = (value > top) | (value != value);                                 \
            top = take ? value : top;                                                \
            best = take ? offset + w + 2 * ox + 1 : best;                            \
            z[ox] = top;                                                             \
            where[ox] = best;                                                        \
        }                                                                            \
    }
    NR_POOL_2X2(nr_pool_row_2x2_f32, float)
    NR_POOL_2X2(nr_pool_row_2x2_f64, double)
    """
    void _pool_row_2x2_f32 "nr_pool_row_2x2_f32" (const float* r0, const float* r1, int ow,
                                                  int offset, int w, float* z,
                                                  int* where) noexcept nogil
    void _pool_row_2x2_f64 "nr_pool_row_2x2_f64" (const double* r0, const double* r1,
                                                  int ow, int offset, int w, double* z,
                                                  int* where) noexcept nogil


cdef void _pool_forward_2x2(const Geometry* g, const floating* x, floating* z, int* argmax,
                            int m, int lo, int hi) noexcept nogil:
    """:func:`_pool_forward` for 2x2 windows with stride 2 (the same results)."""
    cdef int s, c, oy, offset
    cdef Py_ssize_t n_in = <Py_ssize_t>g.c * g.h * g.w
    cdef Py_ssize_t n_out = <Py_ssize_t>g.c * g.hw, out
    cdef const floating* r0
    for s in range(m):
        for c in range(lo, hi):
            out = s * n_out + <Py_ssize_t>c * g.hw
            for oy in range(g.oh):
                offset = (c * g.h + 2 * oy) * g.w
                r0 = x + s * n_in + offset
                if floating is float:
                    _pool_row_2x2_f32(r0, r0 + g.w, g.ow, offset, g.w, z + out,
                                      argmax + out)
                else:
                    _pool_row_2x2_f64(r0, r0 + g.w, g.ow, offset, g.w, z + out,
                                      argmax + out)
                out += g.ow


cdef void _pool_input_gradient(const Geometry* g, const floating* grad, const int* argmax,
                               floating* gx, int m) noexcept nogil:
    """``dL/dx``: each output's gradient added onto the input where its maximum was."""
    cdef int s
    cdef Py_ssize_t n_in = <Py_ssize_t>g.c * g.h * g.w
    cdef Py_ssize_t n_out = <Py_ssize_t>g.c * g.hw, o
    cdef floating* gxs
    memset(gx, 0, <size_t>m * n_in * sizeof(floating))
    for s in range(m):
        gxs = gx + s * n_in
        for o in range(s * n_out, (s + 1) * n_out):
            gxs[argmax[o]] += grad[o]


# --- the layers ----------------------------------------------------------------------------

cdef class Conv2D(Layer):
    r"""2-D convolution (cross-correlation) over images, as PyTorch's ``nn.Conv2d``.

    .. math::

        z_{s,o,y,x} = b_o + \sum_{c,i,j} W_{o,c,i,j}\,
                      \tilde x_{s,c,\,y s_h + i,\,x s_w + j}

    where :math:`\tilde x` is the input with ``padding`` zeros around each image.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output images.
    kernel_size : int or (int, int)
        Window height and width :math:`(k_h, k_w)`.
    stride : int or (int, int), default 1
        Step :math:`(s_h, s_w)` between windows.
    padding : int or (int, int), default 0
        Zeros added above and below, left and right of each image :math:`(p_h, p_w)`.
    dtype : {numpy.float32, numpy.float64}, default float32
    seed : int or numpy.random.Generator, optional
        Source of the initial weights.
    init : {"torch", "he"}, default "torch"
        With fan-in :math:`n = ` ``in_channels * kh * kw``: ``"torch"`` is PyTorch's
        default for ``Conv2d``, weights and bias :math:`\sim U(-1/\sqrt n, 1/\sqrt n)`;
        ``"he"`` is He normal, :math:`W \sim \mathcal N(0, 2/n)` and zero bias.  Not
        part of ``get_config()``.

    Attributes
    ----------
    weights : ndarray, shape (out_channels, in_channels, kh, kw)
    bias : ndarray, shape (out_channels,)
    grad_weights, grad_bias : ndarray
        :math:`\partial L/\partial W` and :math:`\partial L/\partial b` after
        :meth:`backward`.

    Notes
    -----
    Input images ``(in_channels, H, W)`` give output images ``(out_channels, H', W')``
    with :math:`H' = \lfloor (H + 2 p_h - k_h) / s_h \rfloor + 1` (and :math:`W'`
    alike).  The layer learns ``H`` and ``W`` from :meth:`build` (a
    :class:`~numrec.Sequential` with ``input_shape`` calls it), after which
    ``in_features = in_channels * H * W`` and ``out_features = out_channels * H' * W'``.
    For an output gradient :math:`g`, with :math:`X_s` the column matrix of sample
    :math:`s` (``in_channels * kh * kw`` rows, one column per output position):

    .. math::

        \frac{\partial L}{\partial W} = \sum_s g_s X_s^\top \qquad
        \frac{\partial L}{\partial b_o} = \sum_{s,y,x} g_{s,o,y,x} \qquad
        \frac{\partial L}{\partial x_s} = \operatorname{col2im}(W^\top g_s)
    """

    kernel_dtypes = ("float32", "float64")
    # Each sample's output and dL/dx are its own products: the threads of the compiled
    # loop may share them by rows (each then builds only its own samples' columns).
    capabilities = frozenset({"rowwise_input", "rowwise_forward"})

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 dtype=np.float32, seed=None, init="torch"):
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self._g.kh, self._g.kw = _pair(kernel_size, "kernel_size")
        self._g.sh, self._g.sw = _pair(stride, "stride")
        self._g.ph, self._g.pw = _pair(padding, "padding", minimum=0)
        self.dtype = check_dtype(dtype)
        if init not in CONV_INITIALISERS:
            raise ValueError(f"init must be one of {list(CONV_INITIALISERS)}, got {init!r}")
        fan_in = self.in_channels * self._g.kh * self._g.kw
        if fan_in * self.out_channels > MAX_INT:
            raise ValueError("Conv2D has too many weights")
        shape = (self.out_channels, self.in_channels, self._g.kh, self._g.kw)
        weights, bias = INITIALISERS[init](as_rng(seed), (self.out_channels, fan_in))
        self._weights = aligned_zeros(shape, self.dtype)
        self._weights[...] = weights.reshape(shape)
        self._bias = np.zeros(self.out_channels, dtype=self.dtype)
        if bias is not None:
            self._bias[...] = bias
        self._grad_weights = aligned_zeros(shape, self.dtype)
        self._grad_bias = np.zeros(self.out_channels, dtype=self.dtype)
        self._w = cnp.PyArray_DATA(self._weights)
        self._b = cnp.PyArray_DATA(self._bias)
        self._gw = cnp.PyArray_DATA(self._grad_weights)
        self._gb = cnp.PyArray_DATA(self._grad_bias)
        self._g.k = fan_in
        self._built = False
        self._input = None
        self._scratch = _Scratch()
        self._kept = _KeptColumns()
        self._keeping = True

    def __reduce__(self):
        rebuild, args = reduce_component(self, Layer)
        return _rebuilt, (rebuild, args, self.input_shape if self._built else None)

    def get_config(self):
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": _config_pair(self._g.kh, self._g.kw),
            "stride": _config_pair(self._g.sh, self._g.sw),
            "padding": _config_pair(self._g.ph, self._g.pw),
            "dtype": self.dtype.name,
        }

    @property
    def kernel_size(self):
        """``(kh, kw)``: the window's height and width."""
        return (self._g.kh, self._g.kw)

    @property
    def stride(self):
        """``(sh, sw)``: the step between windows."""
        return (self._g.sh, self._g.sw)

    @property
    def padding(self):
        """``(ph, pw)``: zeros around each image, above and below, left and right."""
        return (self._g.ph, self._g.pw)

    # --- the shape protocol

    def build(self, input_shape):
        """Set the input images' shape ``(in_channels, H, W)``; return the output's
        ``(out_channels, H', W')``.  Again with the same shape it does nothing; with
        another, ValueError."""
        shape = _image_shape(self, input_shape)
        if shape[0] != self.in_channels:
            raise ValueError(f"{self!r} takes images of {self.in_channels} channels, "
                             f"got input shape {shape}")
        if self._built:
            if shape != self.input_shape:
                raise ValueError(f"{self!r} is built for input shape {self.input_shape}, "
                                 f"got {shape}")
            return self.output_shape
        cdef Geometry g = self._g
        _set_geometry(&g, self, shape, self.dtype.itemsize)
        if self.out_channels * g.hw > MAX_INT:
            raise ValueError(f"{self!r}: its outputs for input shape {shape} are too many")
        self._g = g
        self._built = True
        return self.output_shape

    @property
    def built(self):
        """Whether :meth:`build` has set the input shape."""
        return bool(self._built)

    @property
    def input_shape(self):
        """``(in_channels, H, W)`` after :meth:`build`."""
        if not self._built:
            raise _not_built(self)
        return (self._g.c, self._g.h, self._g.w)

    @property
    def output_shape(self):
        """``(out_channels, H', W')`` after :meth:`build`."""
        if not self._built:
            raise _not_built(self)
        return (self.out_channels, self._g.oh, self._g.ow)

    @property
    def in_features(self):
        """``in_channels * H * W`` after :meth:`build`."""
        if not self._built:
            raise _not_built(self)
        return self._g.c * self._g.h * self._g.w

    @property
    def out_features(self):
        """``out_channels * H' * W'`` after :meth:`build`."""
        if not self._built:
            raise _not_built(self)
        return self.out_channels * self._g.hw

    # --- parameters

    @property
    def weights(self):
        """ndarray ``(out_channels, in_channels, kh, kw)``: :math:`W`."""
        return self._weights

    @weights.setter
    def weights(self, value):
        self._weights[...] = check_array(value, "weights", shape=self._weights.shape,
                                         dtype=self.dtype)

    @property
    def bias(self):
        """ndarray ``(out_channels,)``: :math:`b`."""
        return self._bias

    @bias.setter
    def bias(self, value):
        self._bias[...] = check_array(value, "bias", shape=self._bias.shape, dtype=self.dtype)

    @property
    def grad_weights(self):
        """ndarray ``(out_channels, in_channels, kh, kw)``: :math:`\\partial L/\\partial W`."""
        return self._grad_weights

    @property
    def grad_bias(self):
        """ndarray ``(out_channels,)``: :math:`\\partial L/\\partial b`."""
        return self._grad_bias

    def parameters(self):
        """Return ``[weights, bias]``."""
        return [self._weights, self._bias]

    def gradients(self):
        """Return ``[grad_weights, grad_bias]``."""
        return [self._grad_weights, self._grad_bias]

    @property
    def n_units(self):
        """Output units, which the kernels' ``lo:hi`` count: ``out_channels``."""
        return self.out_channels

    def unit_sizes(self):
        """Return ``[in_channels * kh * kw, 1]``: output channel ``o`` owns
        ``weights[o]`` and ``bias[o]``."""
        return [self._g.k, 1]

    def unit_shares(self, dtype):
        """The threads share the layer when a sample takes at least 32768
        multiply-adds, on batches of any length (each sample's products are too small
        for BLAS's own threads): the forward pass and dL/dx by samples (the
        "rowwise_forward" and "rowwise_input" capabilities: the same bits as on one
        thread), the parameter gradients by output channels, whose results do not
        depend on the split only as far as BLAS's do not, so not declared exact."""
        work = <Py_ssize_t>self._g.k * self.out_channels * (self._g.hw if self._built else 1)
        return (self.out_channels > 1 and work >= SPLIT_MIN_WORK, 1, NO_ROW_LIMIT, False)

    # --- Python-level passes

    def forward(self, x):
        """Return the output for ``x``: rows ``(m, in_features)`` give rows
        ``(m, out_features)``; images ``(m, in_channels, H, W)`` give images
        ``(m, out_channels, H', W')`` (building an unbuilt layer for them).

        ``x`` must have the layer's dtype; the layer keeps it for :meth:`backward`.
        """
        if isinstance(x, np.ndarray) and x.ndim == 4 and not self._built:
            self.build(x.shape[1:])
        if not self._built:
            raise _not_built(self)
        rows, images = _rows_in(self, x, self.dtype, self.in_features, self.input_shape)
        z = np.empty((rows.shape[0], self.out_features), dtype=self.dtype)
        self._forward(rows, z)
        self._input = rows
        return z.reshape((rows.shape[0],) + self.output_shape) if images else z

    def backward(self, grad_output):
        """Fill ``grad_weights`` and ``grad_bias``; return ``dL/dx`` for the last
        :meth:`forward`: rows ``(m, in_features)`` for rows of ``grad_output``
        ``(m, out_features)``, images for images."""
        if self._input is None:
            raise RuntimeError("Conv2D.backward called before forward")
        m = self._input.shape[0]
        g, images = _rows_of_gradient(grad_output, self.dtype, m, self.out_features,
                                      self.output_shape)
        gx = np.empty_like(self._input)
        self._backward(self._input, g, gx)
        return gx.reshape((m,) + self.input_shape) if images else gx

    def _forward(self, floating[:, ::1] x, floating[:, ::1] z):
        _check_kernel_args(self, floating is float, x, z, None)
        if x.shape[0] == 0:
            return
        with nogil:
            self._kept.forget()  # (x may change before a backward pass: none kept)
            self._keeping = False
            if floating is float:
                self.forward_f32(&x[0, 0], &z[0, 0], x.shape[0], 0, self.out_channels)
            else:
                self.forward_f64(&x[0, 0], &z[0, 0], x.shape[0], 0, self.out_channels)
            self._keeping = True

    def _backward(self, floating[:, ::1] x, floating[:, ::1] g, floating[:, ::1] gx):
        _check_kernel_args(self, floating is float, x, g, gx)
        cdef int m = x.shape[0]
        if m == 0:
            self._grad_weights[...] = 0
            self._grad_bias[...] = 0
            return
        with nogil:
            self._kept.forget()
            if floating is float:
                self.backward_input_f32(&g[0, 0], &gx[0, 0], m)
                self.gradient_f32(&x[0, 0], &g[0, 0], m, 0, self.out_channels, False)
            else:
                self.backward_input_f64(&g[0, 0], &gx[0, 0], m)
                self.gradient_f64(&x[0, 0], &g[0, 0], m, 0, self.out_channels, False)

    # --- the kernel contract: units are output channels

    cdef void forward_f32(self, const float* x, float* z, int m, int lo,
                          int hi) noexcept nogil:
        cdef float* kept = <float*>self._keep(<const char*>x, m, lo, hi, sizeof(float))
        cdef float* col = NULL
        if kept == NULL:
            col = <float*>self._scratch.take(<size_t>self._g.k * self._g.block * sizeof(float))
        if kept != NULL or col != NULL:
            _conv_forward(&self._g, x, <float*>self._w, <float*>self._b, z, m,
                          self.out_channels * self._g.hw, lo, hi, col, kept)
        self._scratch.give(col)

    cdef void forward_f64(self, const double* x, double* z, int m, int lo,
                          int hi) noexcept nogil:
        cdef double* kept = <double*>self._keep(<const char*>x, m, lo, hi, sizeof(double))
        cdef double* col = NULL
        if kept == NULL:
            col = <double*>self._scratch.take(<size_t>self._g.k * self._g.block * sizeof(double))
        if kept != NULL or col != NULL:
            _conv_forward(&self._g, x, <double*>self._w, <double*>self._b, z, m,
                          self.out_channels * self._g.hw, lo, hi, col, kept)
        self._scratch.give(col)

    cdef char* _keep(self, const char* x, int m, int lo, int hi,
                     size_t itemsize) noexcept nogil:
        """Room to keep the column matrices of a forward pass over all output channels
        of m rows from ``x`` (whole samples in one block), else NULL (the blocks kept
        for those rows are dropped either way)."""
        cdef bint keep = (self._keeping and lo == 0 and hi == self.out_channels
                          and self._g.block == self._g.hw)
        return self._kept.claim(x, m, <size_t>self._g.c * self._g.h * self._g.w * itemsize,
                                <size_t>self._g.k * self._g.hw * itemsize, keep)

    cdef void backward_input_f32(self, const float* g, float* gx, int m) noexcept nogil:
        cdef float* col = <float*>self._scratch.take(<size_t>self._g.k * self._g.block * sizeof(float))
        if col != NULL:
            _conv_input_gradient(&self._g, g, <float*>self._w, gx, m,
                                 self.out_channels * self._g.hw, col)
        self._scratch.give(col)

    cdef void backward_input_f64(self, const double* g, double* gx, int m) noexcept nogil:
        cdef double* col = <double*>self._scratch.take(<size_t>self._g.k * self._g.block * sizeof(double))
        if col != NULL:
            _conv_input_gradient(&self._g, g, <double*>self._w, gx, m,
                                 self.out_channels * self._g.hw, col)
        self._scratch.give(col)

    cdef void gradient_f32(self, const float* x, const float* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        cdef KeptTable kept
        cdef float* col = <float*>self._scratch.take(_gradient_work(&self._g, hi - lo, sizeof(float)))
        self._kept.snapshot(&kept, m)
        if col != NULL:
            _conv_gradient(&self._g, x, g, <float*>self._gw, <float*>self._gb, m,
                           self.out_channels * self._g.hw, lo, hi, accumulate, col, &kept)
        self._scratch.give(col)

    cdef void gradient_f64(self, const double* x, const double* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        cdef KeptTable kept
        cdef double* col = <double*>self._scratch.take(_gradient_work(&self._g, hi - lo, sizeof(double)))
        self._kept.snapshot(&kept, m)
        if col != NULL:
            _conv_gradient(&self._g, x, g, <double*>self._gw, <double*>self._gb, m,
                           self.out_channels * self._g.hw, lo, hi, accumulate, col, &kept)
        self._scratch.give(col)


def _check_kernel_args(layer, bint single, x, out, grad_input):
    """Dtype and shapes of the kernels' arrays (x: inputs, out: outputs or their
    gradient, grad_input: like x), which the public methods have checked already."""
    dtype = getattr(layer, "dtype", None)
    if dtype is not None and single != (dtype == np.float32):
        raise TypeError(f"the arrays must have the layer's dtype {dtype}")
    m = x.shape[0]
    if (x.shape[1] != layer.in_features or tuple(out.shape[:2]) != (m, layer.out_features)
            or (grad_input is not None
                and tuple(grad_input.shape[:2]) != (m, layer.in_features))):
        raise ValueError("array shapes do not match the layer")


cdef class MaxPool2D(Layer):
    r"""2-D max pooling over images, as PyTorch's ``nn.MaxPool2d`` (no padding, floor).

    .. math::

        z_{s,c,y,x} = \max_{0 \le i < k_h,\ 0 \le j < k_w} x_{s,c,\,y s_h + i,\,x s_w + j}

    Parameters
    ----------
    size : int or (int, int)
        Window height and width :math:`(k_h, k_w)`.
    stride : int or (int, int), optional
        Step :math:`(s_h, s_w)` between windows; the window size by default.

    Notes
    -----
    Images ``(C, H, W)`` give ``(C, H', W')``, :math:`H' = \lfloor (H - k_h)/s_h
    \rfloor + 1`.  No parameters.  The forward pass keeps where each maximum was (the
    first in scan order on ties, as PyTorch); the backward pass adds each output's
    gradient there.  Works on float32 and float64 arrays alike.
    """

    kernel_dtypes = ("float32", "float64")
    capabilities = frozenset()

    def __cinit__(self, *args, **kwargs):
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError()
        self._argmax = NULL
        self._capacity = 0

    def __dealloc__(self):
        free(self._argmax)
        if self._lock != NULL:
            PyThread_free_lock(self._lock)

    def __init__(self, size, stride=None):
        self._g.kh, self._g.kw = _pair(size, "size")
        self._g.sh, self._g.sw = _pair(size if stride is None else stride, "stride")
        self._g.ph = self._g.pw = 0
        self._built = False
        self._input = None

    def __reduce__(self):
        rebuild, args = reduce_component(self, Layer)
        return _rebuilt, (rebuild, args, self.input_shape if self._built else None)

    def get_config(self):
        return {"size": _config_pair(self._g.kh, self._g.kw),
                "stride": _config_pair(self._g.sh, self._g.sw)}

    @property
    def size(self):
        """``(kh, kw)``: the window's height and width."""
        return (self._g.kh, self._g.kw)

    @property
    def stride(self):
        """``(sh, sw)``: the step between windows."""
        return (self._g.sh, self._g.sw)

    def build(self, input_shape):
        """Set the input images' shape ``(C, H, W)``; return the output's
        ``(C, H', W')``.  A layer without parameters may be built again for another
        shape."""
        shape = _image_shape(self, input_shape)
        cdef Geometry g = self._g
        _set_geometry(&g, self, shape, 4)
        self._g = g
        self._built = True
        return self.output_shape

    @property
    def built(self):
        """Whether :meth:`build` has set the input shape."""
        return bool(self._built)

    @property
    def input_shape(self):
        """``(C, H, W)`` after :meth:`build`."""
        if not self._built:
            raise _not_built(self)
        return (self._g.c, self._g.h, self._g.w)

    @property
    def output_shape(self):
        """``(C, H', W')`` after :meth:`build`."""
        if not self._built:
            raise _not_built(self)
        return (self._g.c, self._g.oh, self._g.ow)

    @property
    def in_features(self):
        """``C * H * W`` after :meth:`build`."""
        if not self._built:
            raise _not_built(self)
        return self._g.c * self._g.h * self._g.w

    @property
    def out_features(self):
        """``C * H' * W'`` after :meth:`build`."""
        if not self._built:
            raise _not_built(self)
        return self._g.c * self._g.hw

    @property
    def n_units(self):
        """Output units, which the kernels' ``lo:hi`` count: the channels (after
        :meth:`build`)."""
        if not self._built:
            raise _not_built(self)
        return self._g.c

    def unit_sizes(self):
        """Return ``[]``: no parameters."""
        return []

    def unit_shares(self, dtype):
        """The threads share the channels of inputs of at least 8192 values, on batches
        of any length; each output is the same whatever the split."""
        worth_it = self._built and self._g.c > 1 and self.in_features >= 8192
        return (worth_it, 1, NO_ROW_LIMIT, True)

    def forward(self, x):
        """Return the window maxima of ``x``: rows ``(m, in_features)`` give rows
        ``(m, out_features)``; images ``(m, C, H, W)`` give images (building an unbuilt
        layer for them).  ``x`` is float32 or float64."""
        if isinstance(x, np.ndarray) and x.ndim == 4 and not self._built:
            self.build(x.shape[1:])
        if not self._built:
            raise _not_built(self)
        dtype = x.dtype if isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64) else np.float64
        rows, images = _rows_in(self, x, dtype, self.in_features, self.input_shape)
        z = np.empty((rows.shape[0], self.out_features), dtype=rows.dtype)
        self._forward(rows, z)
        self._input = rows
        return z.reshape((rows.shape[0],) + self.output_shape) if images else z

    def backward(self, grad_output):
        """Return ``dL/dx`` for the last :meth:`forward` (rows for rows, images for
        images): each output's gradient goes to where its maximum was."""
        if self._input is None:
            raise RuntimeError("MaxPool2D.backward called before forward")
        m = self._input.shape[0]
        g, images = _rows_of_gradient(grad_output, self._input.dtype, m,
                                      self.out_features, self.output_shape)
        gx = np.empty_like(self._input)
        self._backward(g, gx)
        return gx.reshape((m,) + self.input_shape) if images else gx

    def _forward(self, floating[:, ::1] x, floating[:, ::1] z):
        _check_kernel_args(self, floating is float, x, z, None)
        if x.shape[0] == 0:
            return
        with nogil:
            if floating is float:
                self.forward_f32(&x[0, 0], &z[0, 0], x.shape[0], 0, self._g.c)
            else:
                self.forward_f64(&x[0, 0], &z[0, 0], x.shape[0], 0, self._g.c)

    def _backward(self, floating[:, ::1] g, floating[:, ::1] gx):
        _check_kernel_args(self, floating is float, gx, g, None)
        if gx.shape[0] == 0:
            return
        with nogil:
            if floating is float:
                self.backward_input_f32(&g[0, 0], &gx[0, 0], gx.shape[0])
            else:
                self.backward_input_f64(&g[0, 0], &gx[0, 0], gx.shape[0])

    cdef int* _reserve(self, size_t count) noexcept nogil:
        """The argmax buffer, grown to ``count`` entries if needed.  The threads that
        share a forward pass ask for the same count: the first grows it, the others
        find it grown (no thread holds the old buffer across passes)."""
        cdef int* buffer
        PyThread_acquire_lock(self._lock, WAIT_LOCK)
        if self._capacity < count:
            free(self._argmax)
            self._argmax = <int*>malloc(count * sizeof(int))
            self._capacity = count if self._argmax != NULL else 0
        buffer = self._argmax
        PyThread_release_lock(self._lock)
        return buffer

    cdef void forward_f32(self, const float* x, float* z, int m, int lo,
                          int hi) noexcept nogil:
        cdef int* argmax = self._reserve(<size_t>m * self._g.c * self._g.hw)
        if argmax != NULL:
            _pool_forward(&self._g, x, z, argmax, m, lo, hi)

    cdef void forward_f64(self, const double* x, double* z, int m, int lo,
                          int hi) noexcept nogil:
        cdef int* argmax = self._reserve(<size_t>m * self._g.c * self._g.hw)
        if argmax != NULL:
            _pool_forward(&self._g, x, z, argmax, m, lo, hi)

    cdef void backward_input_f32(self, const float* g, float* gx, int m) noexcept nogil:
        if self._argmax != NULL:
            _pool_input_gradient(&self._g, g, self._argmax, gx, m)

    cdef void backward_input_f64(self, const double* g, double* gx, int m) noexcept nogil:
        if self._argmax != NULL:
            _pool_input_gradient(&self._g, g, self._argmax, gx, m)

    cdef void gradient_f32(self, const float* x, const float* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        pass

    cdef void gradient_f64(self, const double* x, const double* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        pass


# --- a convolution, its ReLU and its pooling as one stage of the compiled loop -------------

cdef class _ConvReLUPool(Layer):
    r"""``MaxPool2D(ReLU(Conv2D(x)))`` as one layer of the compiled loop, sample by sample.

    The compiled loop (FusedTrainer) runs a :class:`Conv2D`, the :class:`ReLU` after it
    and a :class:`MaxPool2D` after that as this one stage, so that each sample's
    convolution output is pooled while it is in the cache.  Apart, the three stages
    write that output, read it and write its ReLU, read that again to pool it, and in
    the backward pass write, read and rewrite its gradient: for conv(1->16, 5x5) on
    28x28 images, 36 KB a sample each time, and at batch 256 none of it stays in the
    cache.  This stage keeps only the pooled outputs ``z`` and where each maximum was,
    and builds a sample's dL/dz again in the backward pass; the column matrices are
    kept for the weight gradient as the Conv2D keeps its own (``Conv2D._keep``).

    The same bits as the three stages apart: a window's output is the first maximum
    of :math:`\max(z, 0)` over it in scan order, and :math:`\partial L/\partial z` is
    the sum of the pooled gradients of the windows whose maximum is at that position
    and positive, zero elsewhere (ReLU's derivative is zero where the maximum is zero).
    The parameters and their gradients are the Conv2D's own arrays.  Made by
    :func:`fuse_stages` and bound to one trainer's buffers (:meth:`_bind`): the kernels
    find a row's maxima by the row's place in the trainer's ``z`` or ``g`` buffer.
    """

    kernel_dtypes = ("float32", "float64")
    capabilities = frozenset({"rowwise_input", "rowwise_forward"})

    cdef Conv2D _conv
    cdef Geometry _pg              # the pooling's geometry (its input: the conv's output)
    cdef _Scratch _scratch
    cdef object _buffers           # (z, g, argmax) of the trainer, kept alive
    cdef int* _argmax              # (rows, out_features) offsets into each pool input row
    cdef char* _z0
    cdef char* _g0
    cdef Py_ssize_t _rows
    cdef int _n_out

    def __init__(self, Conv2D conv, MaxPool2D pool):
        if not (conv.built and pool.built) or pool.input_shape != conv.output_shape:
            raise ValueError(f"{pool!r} does not take the output of {conv!r}")
        self._conv = conv
        self._pg = pool._g
        self._scratch = _Scratch()
        self._buffers = None
        self._argmax = NULL
        self._rows = 0
        self._n_out = pool.out_features

    def __repr__(self):
        return f"_ConvReLUPool({self._conv!r})"

    @property
    def in_features(self):
        return self._conv.in_features

    @property
    def out_features(self):
        return self._n_out

    @property
    def n_units(self):
        """The convolution's output channels (each pooled apart)."""
        return self._conv.out_channels

    def parameters(self):
        return self._conv.parameters()

    def gradients(self):
        return self._conv.gradients()

    def unit_sizes(self):
        return self._conv.unit_sizes()

    def unit_shares(self, dtype):
        return self._conv.unit_shares(dtype)

    def _bind(self, z, g):
        """Take the trainer's ``z`` and ``g`` buffers ``(rows, out_features)``, C-ordered,
        and room for the maxima's places of as many rows."""
        if z.shape != g.shape or z.ndim != 2 or z.shape[1] != self._n_out:
            raise ValueError("z and g must be (rows, out_features)")
        argmax = np.zeros(z.shape, np.int32)
        self._buffers = (z, g, argmax)
        self._z0 = <char*>cnp.PyArray_DATA(z)
        self._g0 = <char*>cnp.PyArray_DATA(g)
        self._argmax = <int*>cnp.PyArray_DATA(argmax)
        self._rows = z.shape[0]

    cdef Py_ssize_t _row(self, const char* base, const char* at, int m,
                         size_t itemsize) noexcept nogil:
        """The row of ``at`` in a bound buffer from ``base``, or -1 if rows
        ``row:row + m`` are not all in it."""
        cdef size_t row_bytes = <size_t>self._n_out * itemsize
        cdef Py_ssize_t offset = at - base, row
        if self._argmax == NULL or offset < 0 or offset % row_bytes:
            return -1
        row = offset // row_bytes
        return row if row + m <= self._rows else -1

    cdef size_t _work(self, size_t itemsize) noexcept nogil:
        """Bytes of a kernel's work buffer: a sample's convolution output (or dL/dz),
        then the convolution's own work buffer."""
        cdef size_t conv = <size_t>self._pg.c * self._pg.h * self._pg.w * itemsize
        return conv + max(_gradient_work(&self._conv._g, self._conv.out_channels, itemsize),
                          <size_t>self._conv._g.k * self._conv._g.block * itemsize)

    cdef void forward_f32(self, const float* x, float* z, int m, int lo,
                          int hi) noexcept nogil:
        _crp_forward_rows(self, x, z, m, lo, hi)

    cdef void forward_f64(self, const double* x, double* z, int m, int lo,
                          int hi) noexcept nogil:
        _crp_forward_rows(self, x, z, m, lo, hi)

    cdef void backward_input_f32(self, const float* g, float* gx, int m) noexcept nogil:
        _crp_input_gradient_rows(self, g, gx, m)

    cdef void backward_input_f64(self, const double* g, double* gx, int m) noexcept nogil:
        _crp_input_gradient_rows(self, g, gx, m)

    cdef void gradient_f32(self, const float* x, const float* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        _crp_gradient_rows(self, x, g, m, lo, hi, accumulate)

    cdef void gradient_f64(self, const double* x, const double* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil:
        _crp_gradient_rows(self, x, g, m, lo, hi, accumulate)


# The stage's kernels: each finds its rows' place in the bound buffers, takes a work
# buffer, and runs the per-sample function below on them.

cdef void _crp_forward_rows(_ConvReLUPool layer, const floating* x, floating* z, int m,
                            int lo, int hi) noexcept nogil:
    cdef Py_ssize_t row = layer._row(layer._z0, <const char*>z, m, sizeof(floating))
    cdef floating* kept
    cdef floating* work
    if row < 0:
        return
    kept = <floating*>layer._conv._keep(<const char*>x, m, lo, hi, sizeof(floating))
    work = <floating*>layer._scratch.take(layer._work(sizeof(floating)))
    if work != NULL:
        _crp_forward(&layer._conv._g, &layer._pg, x, <floating*>layer._conv._w,
                     <floating*>layer._conv._b, z, layer._argmax + row * layer._n_out, m,
                     lo, hi, work, kept)
    layer._scratch.give(work)


cdef void _crp_input_gradient_rows(_ConvReLUPool layer, const floating* g, floating* gx,
                                   int m) noexcept nogil:
    cdef Py_ssize_t row = layer._row(layer._g0, <const char*>g, m, sizeof(floating))
    cdef floating* work
    if row < 0:
        return
    work = <floating*>layer._scratch.take(layer._work(sizeof(floating)))
    if work != NULL:
        _crp_input_gradient(&layer._conv._g, &layer._pg, g,
                            <floating*>layer._z0 + row * layer._n_out,
                            layer._argmax + row * layer._n_out, <floating*>layer._conv._w,
                            gx, m, work)
    layer._scratch.give(work)


cdef void _crp_gradient_rows(_ConvReLUPool layer, const floating* x, const floating* g,
                             int m, int lo, int hi, bint accumulate) noexcept nogil:
    cdef Py_ssize_t row = layer._row(layer._g0, <const char*>g, m, sizeof(floating))
    cdef KeptTable kept
    cdef floating* work
    if row < 0:
        return
    layer._conv._kept.snapshot(&kept, m)
    work = <floating*>layer._scratch.take(layer._work(sizeof(floating)))
    if work != NULL:
        _crp_gradient(&layer._conv._g, &layer._pg, x, g,
                      <floating*>layer._z0 + row * layer._n_out,
                      layer._argmax + row * layer._n_out, <floating*>layer._conv._gw,
                      <floating*>layer._conv._gb, m, lo, hi, accumulate, work, &kept)
    layer._scratch.give(work)


cdef void _crp_forward(const Geometry* cg, const Geometry* pg, const floating* x,
                       const floating* w, const floating* b, floating* z, int* argmax,
                       int m, int lo, int hi, floating* work,
                       floating* kept) noexcept nogil:
    """Channels lo:hi of m samples' pooled outputs ``z`` (m, pg.c * pg.hw) and their
    maxima's places: per sample, the convolution into ``work`` (pg.c, pg.h, pg.w), its
    bias and ReLU in place in one pass (as ReLU's kernel: z if z > 0 else 0), then the
    pooling.  The column matrices are built in ``kept`` one after another, unless it
    is NULL."""
    cdef int s, c
    cdef Py_ssize_t n_in = <Py_ssize_t>cg.c * cg.h * cg.w
    cdef Py_ssize_t n_conv = <Py_ssize_t>pg.c * pg.h * pg.w, n_out = <Py_ssize_t>pg.c * pg.hw
    cdef floating* col = work + n_conv
    for s in range(m):
        _conv_forward(cg, x + s * n_in, w, NULL, work, 1, n_conv, lo, hi, col,
                      kept + <Py_ssize_t>s * cg.k * cg.hw if kept != NULL else NULL)
        for c in range(lo, hi):
            _bias_relu(work + <Py_ssize_t>c * cg.hw, b[c], cg.hw)
        _pool_forward(pg, work, z + s * n_out, argmax + s * n_out, 1, lo, hi)


cdef inline void _bias_relu(floating* z, floating bias, int n) noexcept nogil:
    """``z = ReLU(z + bias)`` in one pass, computed as the bias loop of
    :func:`_conv_forward` and ReLU's kernel compute it."""
    cdef int p
    cdef floating v
    for p in range(n):
        v = z[p] + bias
        z[p] = v if v > 0 else 0


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* v if keep, else +0.0, without a branch (the bits of v masked). */
    static inline float nr_keep_if_f32(float v, int keep)
    {
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        bits &= -(uint32_t)(keep != 0);
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    static inline double nr_keep_if_f64(double v, int keep)
    {
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        bits &= -(uint64_t)(keep != 0);
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    """
    float _keep_if_f32 "nr_keep_if_f32" (float v, int keep) noexcept nogil
    double _keep_if_f64 "nr_keep_if_f64" (double v, int keep) noexcept nogil


cdef void _crp_expand(const Geometry* pg, const floating* gp, const floating* zp,
                      const int* argmax, floating* ge, int lo, int hi) noexcept nogil:
    """Channels lo:hi of one sample's dL/dz ``ge`` (pg.c, pg.h, pg.w) from its pooled
    outputs ``zp``, their gradient ``gp`` and their maxima's places: each window's
    gradient added at its maximum if that is positive, zero elsewhere."""
    cdef Py_ssize_t o, plane = <Py_ssize_t>pg.h * pg.w
    memset(ge + lo * plane, 0, <size_t>(hi - lo) * plane * sizeof(floating))
    for o in range(lo * <Py_ssize_t>pg.hw, hi * <Py_ssize_t>pg.hw):
        # (+0 where the maximum is not positive, rather than a branch that the
        # processor mispredicts about half the time: a sum from +0 stays the same bits)
        if floating is float:
            ge[argmax[o]] += _keep_if_f32(gp[o], zp[o] > 0)
        else:
            ge[argmax[o]] += _keep_if_f64(gp[o], zp[o] > 0)


cdef void _crp_input_gradient(const Geometry* cg, const Geometry* pg, const floating* gp,
                              const floating* zp, const int* argmax, const floating* w,
                              floating* gx, int m, floating* work) noexcept nogil:
    """dL/dx of m samples: per sample, dL/dz in ``work``, then the convolution's."""
    cdef int s
    cdef Py_ssize_t n_in = <Py_ssize_t>cg.c * cg.h * cg.w
    cdef Py_ssize_t n_conv = <Py_ssize_t>pg.c * pg.h * pg.w, n_out = <Py_ssize_t>pg.c * pg.hw
    for s in range(m):
        _crp_expand(pg, gp + s * n_out, zp + s * n_out, argmax + s * n_out, work, 0, pg.c)
        _conv_input_gradient(cg, work, w, gx + s * n_in, 1, <int>n_conv, work + n_conv)


cdef void _crp_gradient(const Geometry* cg, const Geometry* pg, const floating* x,
                        const floating* gp, const floating* zp, const int* argmax,
                        floating* gw, floating* gb, int m, int lo, int hi, bint accumulate,
                        floating* work, const KeptTable* kept) noexcept nogil:
    """Channels lo:hi of the convolution's parameter gradients over m samples (written
    afresh unless accumulate): per sample, its dL/dz in ``work``, then the
    convolution's gradient of that one sample (:func:`_gradient_sample`), from its
    column matrix in ``kept`` if the forward pass kept it."""
    cdef int s
    cdef Py_ssize_t n_in = <Py_ssize_t>cg.c * cg.h * cg.w
    cdef Py_ssize_t n_conv = <Py_ssize_t>pg.c * pg.h * pg.w, n_out = <Py_ssize_t>pg.c * pg.hw
    cdef size_t col_bytes = <size_t>cg.k * cg.hw * sizeof(floating)
    cdef const floating* whole
    _gradient_begin(cg, gw, gb, lo, hi, accumulate, work + n_conv)
    for s in range(m):
        _crp_expand(pg, gp + s * n_out, zp + s * n_out, argmax + s * n_out, work, lo, hi)
        whole = <const floating*>_kept_columns(kept, <const char*>(x + s * n_in),
                                               n_in * sizeof(floating), col_bytes)
        _gradient_sample(cg, x + s * n_in, work, whole, gw, gb, lo, hi, work + n_conv)
    _gradient_end(cg, gw, lo, hi, work + n_conv)


def fuse_stages(stages):
    """``stages`` (FusedTrainer's (layer, activation) pairs) with each Conv2D + ReLU
    followed by a MaxPool2D stage made one :class:`_ConvReLUPool` stage.  Only the
    built-in classes themselves, not subclasses (which may change what they compute)."""
    from numrec._core._activations import ReLU

    fused, i = [], 0
    while i < len(stages):
        layer, activation = stages[i]
        if (i + 1 < len(stages) and type(layer) is Conv2D and type(activation) is ReLU
                and type(stages[i + 1][0]) is MaxPool2D and stages[i + 1][1] is None
                and layer.built and stages[i + 1][0].built
                and stages[i + 1][0].input_shape == layer.output_shape):
            fused.append((_ConvReLUPool(layer, stages[i + 1][0]), None))
            i += 2
        else:
            fused.append((layer, activation))
            i += 1
    return fused

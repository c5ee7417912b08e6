from cpython.pythread cimport PyThread_type_lock

from numrec._core._layers cimport Layer

cdef enum:
    SCRATCH_SLOTS = 16


cdef class _Scratch:
    # Work buffers that kernels running at once on different threads take and give back.
    cdef PyThread_type_lock _lock
    cdef void* _slots[SCRATCH_SLOTS]
    cdef size_t _sizes[SCRATCH_SLOTS]
    cdef bint _busy[SCRATCH_SLOTS]
    cdef void* take(self, size_t size) noexcept nogil
    cdef void give(self, void* buffer) noexcept nogil


cdef enum:
    KEPT_BLOCKS = 8


cdef struct KeptTable:
    # Blocks of rows whose column matrices a forward pass kept: block i holds the
    # matrices of rows[i] input rows from x[i] on (NULL: a free slot), one after another.
    const char* x[KEPT_BLOCKS]
    Py_ssize_t rows[KEPT_BLOCKS]
    char* col[KEPT_BLOCKS]


cdef class _KeptColumns:
    # The column matrices of the last forward passes, for the weight gradient of the
    # same rows (which then need not build them again).
    cdef PyThread_type_lock _lock
    cdef KeptTable _table
    cdef size_t _sizes[KEPT_BLOCKS]
    cdef size_t _total
    cdef size_t _limit
    cdef Py_ssize_t _rows_wanted   # the most rows a weight gradient has taken
    cdef char* claim(self, const char* x, Py_ssize_t rows, size_t row_bytes,
                     size_t col_bytes, bint keep) noexcept nogil
    cdef void snapshot(self, KeptTable* table, Py_ssize_t rows) noexcept nogil
    cdef void forget(self) noexcept nogil


cdef struct Geometry:
    int c, h, w           # input channels, height, width
    int kh, kw            # window
    int sh, sw            # stride
    int ph, pw            # zero padding
    int oh, ow            # output height, width
    int k                 # c * kh * kw: rows of the column matrix
    int hw                # oh * ow: output positions per channel
    int block             # output positions per block of the column matrix


cdef class Conv2D(Layer):
    cdef readonly int in_channels
    cdef readonly int out_channels
    cdef readonly object dtype
    cdef Geometry _g
    cdef bint _built
    cdef object _weights, _bias, _grad_weights, _grad_bias, _input
    cdef void* _w
    cdef void* _b
    cdef void* _gw
    cdef void* _gb
    cdef _Scratch _scratch
    cdef _KeptColumns _kept
    cdef bint _keeping             # whether forward passes keep their column matrices
    cdef char* _keep(self, const char* x, int m, int lo, int hi,
                     size_t itemsize) noexcept nogil


cdef class MaxPool2D(Layer):
    cdef Geometry _g
    cdef bint _built
    cdef object _input
    cdef PyThread_type_lock _lock
    cdef int* _argmax          # (rows, out_features) offsets into each input row
    cdef size_t _capacity
    cdef int* _reserve(self, size_t count) noexcept nogil

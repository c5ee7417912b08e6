"""The fused training loop: whole epochs of compiled components, in C.

When every component of a model is a compiled built-in, :class:`FusedTrainer` runs an
epoch's batches without a Python call per batch and without the GIL: it gathers each batch
into buffers allocated once (converting uint8 pixels on the way, or copying them as they
are for a first layer that reads pixels), calls the components'
``cdef`` kernels through their virtual tables, and applies the optimizer in place.  It
knows the components only through the kernel interfaces of ``Layer``, ``Activation``,
``Loss`` and ``Optimizer``, so a new compiled component needs no change here.
"""
from cpython.ref cimport PyObject
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport isnan
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
cimport numpy as cnp

from contextlib import contextmanager

import numpy as np

from numrec._core._memory import aligned_zeros

from numrec._core._layers cimport Layer, SIMD_MAX_ROWS
from numrec._core._activations cimport Activation
from numrec._core._losses cimport Loss
from numrec._core._optimizers cimport Optimizer

cnp.import_array()

cdef extern from "_pixels.h" nogil:
    void nr_pixels_init()
    void nr_gather_pixels_f32(const cnp.uint8_t* x, Py_ssize_t width,
                              const cnp.int64_t* rows, Py_ssize_t m, float* out)
    void nr_convert_pixels_f32(const cnp.uint8_t* x, Py_ssize_t count, float* out)
    void nr_prefetch_rows(const cnp.uint8_t* x, Py_ssize_t width, const cnp.int64_t* rows,
                          Py_ssize_t m)

nr_pixels_init()

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int nr_thread_id(void) { return omp_get_thread_num(); }
    static int nr_team_size(void) { return omp_get_num_threads(); }
    #else
    static int nr_thread_id(void) { return 0; }
    static int nr_team_size(void) { return 1; }
    #endif
    static void nr_barrier(void)
    {
    #pragma omp barrier
    }
    """
    int _thread_id "nr_thread_id" () noexcept nogil
    int _team_size "nr_team_size" () noexcept nogil
    void _barrier "nr_barrier" () noexcept nogil

ctypedef fused pixel_t:
    cnp.uint8_t
    float
    double

cdef enum:
    EVAL_ROWS = 1024       # rows per forward pass when evaluating
    SPLIT_MIN = 32768      # a layer with at least this many weights is shared by the threads
    SPLIT_ALIGN = 16       # the threads' shares of output units start at multiples of this
                           # (whole panels for Dense's kernels for zero inputs)
    SPARSE_SAMPLE_ROWS = 1024  # rows of the data looked at to choose the first layer's kernels

# The first layer skips zero inputs when at most this fraction of the entries are nonzero:
# on the reference network its kernels then measured faster than the full product (at
# 0.4 forward and update together took as long as the full product's; MNIST: 0.19).
cdef double SPARSE_MAX_DENSITY = 0.35
cdef bint _sparse_allowed = True
cdef bint _defer_allowed = True


def _deferred_updates(enable=None):
    """Whether a small float32 stage above a large one may defer its update to another
    thread (for trainers made afterwards).

    With ``enable``, allow it or not, and return the previous setting.  For benchmarks
    and tests: the results are the same bits either way up to batch 32 (beyond, the
    sums of each 32 rows are added before the weights are, instead of after).
    """
    global _defer_allowed
    previous = bool(_defer_allowed)
    if enable is not None:
        _defer_allowed = bool(enable)
    return previous


def _sparse_input_kernels(enable=None):
    """Whether the fused loop may run the first layer on kernels that skip zero inputs.

    With ``enable``, allow them or not, and return the previous setting.  For benchmarks
    and tests: results agree with the full product's up to the order of the additions.
    """
    global _sparse_allowed
    previous = bool(_sparse_allowed)
    if enable is not None:
        _sparse_allowed = bool(enable)
    return previous


def mostly_zeros(x):
    """True if at most SPARSE_MAX_DENSITY of the entries in the first rows of ``x`` are
    nonzero (the first SPARSE_SAMPLE_ROWS rows stand for the data)."""
    sample = x[:SPARSE_SAMPLE_ROWS]
    return sample.size > 0 and np.count_nonzero(sample) <= SPARSE_MAX_DENSITY * sample.size




cdef struct Stage:
    PyObject* layer        # a compiled Layer (borrowed: the trainer keeps it alive)
    PyObject* activation   # a compiled Activation, or NULL
    int n_in
    int n_out
    void* z                # (rows, n_out) layer output, before the activation
    void* a                # (rows, n_out) activation output (the same buffer as z without one)
    void* g                # (rows, n_out) dL/da, turned in place into dL/dz
    bint split             # whether the threads share this stage's output units
    int row_block          # if > 0, the stage's forward pass and plain-SGD update take
                           # at most this many rows at a time
    bint defer             # float32, not large, above a large stage: may defer its update


cdef struct Param:
    void* value
    void* grad
    Py_ssize_t size
    Py_ssize_t slot


def is_compiled(component):
    """True if ``component``'s own type is a compiled built-in, not a Python subclass.

    Python classes are heap types; Cython ``cdef class``es are static types.  A Python
    subclass of a compiled class may override its methods, so it is not compiled.
    """
    return not (type(component).__flags__ & (1 << 9))  # Py_TPFLAGS_HEAPTYPE


def plan_stages(components):
    """Group compiled components into (layer, activation-or-None) stages, or return None.

    Returns None when the fused loop cannot run them: a Python-written component, an
    activation that does not follow a layer, or a layer without ``in_features``.
    """
    stages = []  # (this module compiles with wraparound off: no negative indices)
    for component in components:
        if not is_compiled(component):
            return None
        if isinstance(component, Layer):
            if not hasattr(component, "in_features"):
                return None
            stages.append([component, None])
        elif isinstance(component, Activation):
            if not stages or stages[len(stages) - 1][1] is not None:
                return None
            stages[len(stages) - 1][1] = component
        else:
            return None
    return [tuple(stage) for stage in stages] or None


cdef class FusedTrainer:
    """Runs batches of a model made only of compiled components, without the GIL.

    Parameters
    ----------
    stages : list of (Layer, Activation or None)
        From :func:`plan_stages`.
    loss : Loss
        A compiled loss.
    optimizer : Optimizer
        A compiled optimizer.
    batch_size : int
    dtype : numpy.dtype
        float32 or float64, the dtype of every layer.
    n_threads : int
        Threads that share the output units of each large layer (forward pass and
        update); the caller keeps BLAS single-threaded meanwhile.
    exact_shares : bool
        Run each large float32 layer on at most 128 rows at a time, where its kernels'
        results do not depend on how the units are shared, so that they are the same
        bits for any ``n_threads`` at any batch size.  For callers that share the units
        at this batch size (even with one thread); slower than BLAS on dense data.
    """
    cdef Stage* _stages
    cdef int _n_stages
    cdef Param* _params
    cdef int* _param_start      # _params[_param_start[s]:_param_start[s + 1]] belong to stage s
    cdef int _n_params
    cdef PyObject* _loss
    cdef PyObject* _optimizer
    cdef int _rows              # buffer rows: max(batch_size, EVAL_ROWS)
    cdef bint _any_split
    cdef readonly int batch_size
    cdef readonly int n_threads
    cdef readonly object dtype
    cdef object _keepalive
    cdef object _x, _x_next, _y
    cdef object _pixels, _pixels_next   # uint8 batches for a first layer that takes pixels
    cdef object _held           # the x of holding(), or None

    def __cinit__(self):
        self._stages = NULL
        self._params = NULL
        self._param_start = NULL

    def __dealloc__(self):
        free(self._stages)
        free(self._params)
        free(self._param_start)

    def __init__(self, stages, Loss loss, Optimizer optimizer, int batch_size, dtype,
                 int n_threads=1, bint exact_shares=False):
        cdef int s, p, n_params
        below_big = False
        self.batch_size = batch_size
        self.n_threads = max(1, n_threads)
        self.dtype = np.dtype(dtype)
        self._rows = max(batch_size, EVAL_ROWS)
        self._n_stages = len(stages)
        self._loss = <PyObject*>loss
        self._optimizer = <PyObject*>optimizer
        buffers = []
        params = []
        self._stages = <Stage*>malloc(self._n_stages * sizeof(Stage))
        self._param_start = <int*>malloc((self._n_stages + 1) * sizeof(int))
        if self._stages == NULL or self._param_start == NULL:
            raise MemoryError()
        for s, (layer, activation) in enumerate(stages):
            shape = (self._rows, layer.out_features)
            z = aligned_zeros(shape, self.dtype)
            a = aligned_zeros(shape, self.dtype) if activation is not None else z
            g = aligned_zeros(shape, self.dtype)
            buffers += [z, a, g]
            self._stages[s].layer = <PyObject*>layer
            self._stages[s].activation = (<PyObject*>activation
                                          if activation is not None else NULL)
            self._stages[s].n_in = layer.in_features
            self._stages[s].n_out = layer.out_features
            self._stages[s].z = cnp.PyArray_DATA(z)
            self._stages[s].a = cnp.PyArray_DATA(a)
            self._stages[s].g = cnp.PyArray_DATA(g)
            big = layer.in_features * layer.out_features >= SPLIT_MIN
            self._stages[s].split = big and self.n_threads > 1
            self._stages[s].row_block = (SIMD_MAX_ROWS if big and exact_shares
                                         and self.dtype == np.float32 else 0)
            self._stages[s].defer = (_defer_allowed and s > 0 and not big and below_big
                                     and self.dtype == np.float32)
            below_big = big
            self._any_split = self._any_split or self._stages[s].split
            self._param_start[s] = len(params)
            params += list(zip(layer.parameters(), layer.gradients()))
        self._param_start[self._n_stages] = len(params)
        self._n_params = len(params)
        self._params = <Param*>malloc(max(self._n_params, 1) * sizeof(Param))
        if self._params == NULL:
            raise MemoryError()
        for p, (value, grad) in enumerate(params):
            self._params[p].value = cnp.PyArray_DATA(value)
            self._params[p].grad = cnp.PyArray_DATA(grad)
            self._params[p].size = value.size
            self._params[p].slot = p
        self._x = aligned_zeros((self._rows, self._stages[0].n_in), self.dtype)
        self._x_next = aligned_zeros((batch_size, self._stages[0].n_in), self.dtype)
        self._y = aligned_zeros((self._rows, self._stages[self._n_stages - 1].n_out),
                                self.dtype)
        self._pixels = aligned_zeros((batch_size, self._stages[0].n_in), np.uint8)
        self._pixels_next = aligned_zeros((batch_size, self._stages[0].n_in), np.uint8)
        self._keepalive = (stages, loss, optimizer, buffers, params)

    @property
    def n_inputs(self):
        return self._stages[0].n_in

    @property
    def n_outputs(self):
        return self._stages[self._n_stages - 1].n_out

    def train(self, x, targets, order, Py_ssize_t start, Py_ssize_t stop):
        """Train on the batches of ``order[start:stop]``; return the summed loss.

        ``x`` is ``(n_samples, n_inputs)``, uint8 (scaled by 1/255 while gathered) or the
        trainer's dtype; ``targets`` is int64 labels ``(n_samples,)`` (one-hot targets) or
        an array ``(n_samples, n_outputs)`` of the trainer's dtype.  ``start`` is a multiple
        of ``batch_size``.  The caller has checked every shape, dtype and index.
        """
        self._check_train_args(x, targets, order, start, stop)
        if self._held is not None and x is not self._held:
            raise RuntimeError("train() inside holding() must train on the held data")
        sparse = self._held is None and self._sparse_first_layer(x, plain_sgd=True)
        try:
            return self._train(x, self._x, self._x_next, targets, order, start, stop,
                               self._takes_pixels(x))
        finally:
            if sparse:
                (<Layer>self._stages[0].layer)._sparse_inputs(False)

    @contextmanager
    def holding(self, x):
        """A context manager that keeps the first layer's kernels chosen for ``x``.

        Each :meth:`train` call on its own chooses the first layer's kernels for its data
        (:func:`mostly_zeros`) and switches them back when it returns, copying the
        weights into the kernels' layout and out again.  Within ``with
        trainer.holding(x):`` the calls that train on this same ``x`` skip both: the
        choice is made once on entry, and the public weights are brought up to date on
        exit (meanwhile they may be stale).
        """
        if self._held is not None:
            raise RuntimeError("the trainer already holds its kernels")
        self._check_inputs(x)
        held_sparse = self._sparse_first_layer(x, plain_sgd=True)
        self._held = x
        try:
            yield self
        finally:
            self._held = None
            if held_sparse:
                (<Layer>self._stages[0].layer)._sparse_inputs(False)

    def count_correct(self, x, labels):
        """Return how many rows of ``x`` the model classifies as ``labels`` (argmax)."""
        self._check_inputs(x)
        if labels.ndim != 1 or len(labels) != len(x):
            raise ValueError("labels must be one per row of x")
        if self._held is not None:
            raise RuntimeError("count_correct() cannot run while the trainer holds its "
                               "kernels (inside holding())")
        sparse = self._sparse_first_layer(x, plain_sgd=False)
        try:
            return self._count_correct(x, self._x, labels, self._takes_pixels(x))
        finally:
            if sparse:
                (<Layer>self._stages[0].layer)._sparse_inputs(False)

    def _sparse_first_layer(self, x, bint plain_sgd):
        """Switch the first layer to its kernels for zero inputs if they suit ``x``.

        Only for ``x`` that is :func:`mostly_zeros`, and in training only with plain SGD
        (those kernels apply the step inside the product).  Returns whether it switched.
        """
        cdef double step_scale = (<Optimizer>self._optimizer).plain_step_scale()
        if not _sparse_allowed or (plain_sgd and isnan(step_scale)) or not mostly_zeros(x):
            return False
        return (<Layer>self._stages[0].layer)._sparse_inputs(True)

    def _takes_pixels(self, x):
        """Whether the first layer can read the uint8 pixels of ``x`` as they are.

        Then the loop copies batches of pixels instead of converting them to floats
        (a quarter of the bytes), and evaluation reads the rows of ``x`` in place.
        """
        return (x.dtype == np.uint8 and self.dtype == np.float32
                and (<Layer>self._stages[0].layer).takes_pixels())

    def _check_inputs(self, x):
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"x must have shape (n, {self.n_inputs})")
        if x.dtype != np.uint8 and x.dtype != self.dtype:
            raise TypeError(f"x must hold uint8 pixels or {self.dtype}, got {x.dtype}")

    def _check_train_args(self, x, targets, order, Py_ssize_t start, Py_ssize_t stop):
        """What train() trusts, checked at the cost of a pass over ``order[start:stop]``."""
        self._check_inputs(x)
        n = len(x)
        if order.ndim != 1 or not 0 <= start <= stop <= len(order):
            raise ValueError("start and stop must lie within order")
        rows = order[start:stop]
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(f"order must hold row numbers in 0..{n - 1}")
        if targets.ndim == 1:
            labels = targets[rows] if len(targets) == n else None
            if labels is None or (len(labels) and (labels.min() < 0
                                                   or labels.max() >= self.n_outputs)):
                raise ValueError(f"targets must be {n} labels in 0..{self.n_outputs - 1}")
        elif targets.shape != (n, self.n_outputs) or targets.dtype != self.dtype:
            raise ValueError(f"targets must have shape ({n}, {self.n_outputs}) and dtype {self.dtype}")

    def _train(self, const pixel_t[:, ::1] x, floating[:, ::1] xbuf,
               floating[:, ::1] xbuf_next, targets, const cnp.int64_t[::1] order,
               Py_ssize_t start, Py_ssize_t stop, bint take_pixels):
        cdef const cnp.int64_t[::1] labels = None
        cdef const floating[:, ::1] dense_targets = None
        cdef const cnp.int64_t* label_ptr = NULL
        cdef const floating* target_ptr = NULL
        cdef floating[:, ::1] ybuf = self._y
        cdef floating* buffers[2]
        cdef cnp.uint8_t* pixel_buffers[2]
        cdef cnp.uint8_t[:, ::1] pixels = self._pixels
        cdef cnp.uint8_t[:, ::1] pixels_next = self._pixels_next
        cdef Py_ssize_t begin, m, m_next, width = x.shape[1]
        cdef int t, team, current, gatherer, gatherers
        cdef double total = 0
        cdef double* shared_total = &total
        cdef double step_scale = (<Optimizer>self._optimizer).plain_step_scale()
        cdef int n_threads = self.n_threads if self._any_split else 1
        if targets.ndim == 1:
            labels = targets
            label_ptr = &labels[0]
        else:
            dense_targets = targets
            target_ptr = &dense_targets[0, 0]
        if start >= stop:
            return 0.0
        buffers[0] = &xbuf[0, 0]
        buffers[1] = &xbuf_next[0, 0]
        pixel_buffers[0] = pixel_buffers[1] = NULL
        if take_pixels and pixel_t is cnp.uint8_t and floating is float:
            pixel_buffers[0] = &pixels[0, 0]
            pixel_buffers[1] = &pixels_next[0, 0]
        # One team of threads for the whole chunk.  Every thread walks the same batches
        # and computes its share of each large layer; thread 0 alone works on the small
        # layers and the loss, and meanwhile the others gather the next batch into the
        # second input buffer.  Barriers order the steps.
        with nogil, parallel(num_threads=n_threads):
            t = _thread_id()
            team = _team_size()
            current = 0
            m = min(self.batch_size, stop - start)
            _gather_share(&x[0, 0], width, &order[start], m, t, team, buffers[0],
                          pixel_buffers[0])
            if t == 0:
                _gather_targets(label_ptr, target_ptr, &order[start], m, ybuf.shape[1],
                                &ybuf[0, 0])
            _barrier()
            begin = start
            while begin < stop:
                m_next = min(self.batch_size, stop - begin - m)
                self._forward_and_loss(buffers[current], pixel_buffers[current], &ybuf[0, 0],
                                       <int>m, t, team, shared_total)
                if m_next > 0 and (team == 1 or t > 0):
                    gatherer = 0 if team == 1 else t - 1
                    gatherers = 1 if team == 1 else team - 1
                    _gather_share(&x[0, 0], width, &order[begin + m], m_next, gatherer,
                                  gatherers, buffers[1 - current], pixel_buffers[1 - current])
                    # The batch after next, from memory into the caches meanwhile.
                    _prefetch_share(&x[0, 0], width, &order[begin + m + m_next],
                                    min(self.batch_size, stop - begin - m - m_next),
                                    gatherer, gatherers)
                self._backward(buffers[current], pixel_buffers[current], <int>m, step_scale,
                               t, team)
                if t == 0 and m_next > 0:  # the loss has used this batch's targets
                    _gather_targets(label_ptr, target_ptr, &order[begin + m], m_next,
                                    ybuf.shape[1], &ybuf[0, 0])
                _barrier()
                begin = begin + m
                m = m_next
                current = 1 - current
        return total

    cdef void _forward_and_loss(self, floating* x, const cnp.uint8_t* pixels,
                                const floating* y, int m, int t, int team,
                                double* total) noexcept nogil:
        """Forward pass and loss gradient, run by every thread (thread t of ``team``).

        The first layer reads ``pixels`` unless NULL, else ``x``.  A barrier follows each
        stage that is shared or feeds a shared one; the loss is thread 0's, and the other
        threads do not wait for it.
        """
        cdef Stage* last = &self._stages[self._n_stages - 1]
        cdef floating* inputs = x
        cdef int s
        for s in range(self._n_stages):
            _forward_part(&self._stages[s], inputs, pixels if s == 0 else NULL, m,
                          _first_unit(&self._stages[s], t, team),
                          _first_unit(&self._stages[s], t + 1, team))
            inputs = <floating*>self._stages[s].a
            if self._stages[s].split or (s + 1 < self._n_stages
                                         and self._stages[s + 1].split):
                _barrier()
        if t == 0:
            if floating is float:
                total[0] += (<Loss>self._loss).value_and_gradient_f32(
                    <float*>last.a, y, <float*>last.g, m, last.n_out)
            else:
                total[0] += (<Loss>self._loss).value_and_gradient_f64(
                    <double*>last.a, y, <double*>last.g, m, last.n_out)

    cdef void _backward(self, floating* x, const cnp.uint8_t* pixels, int m,
                        double step_scale, int t, int team) noexcept nogil:
        """Backward pass and update, run by every thread; the caller's barrier ends it."""
        cdef int s
        for s in range(self._n_stages - 1, -1, -1):
            self._backward_stage(s, x, pixels if s == 0 else NULL, m, step_scale, t, team)

    cdef void _backward_stage(self, int s, floating* x, const cnp.uint8_t* pixels, int m,
                              double step_scale, int t, int team) noexcept nogil:
        """Turn stage s's dL/da into dL/dz, pass dL/dx down, then update its parameters.

        dL/dx needs all of dL/dz and this step's weights, so with a layer below, thread 0
        applies the activation's derivative in full and computes dL/dx first; a shared
        stage's update waits for that at a barrier, then each thread updates its share.
        A small stage above a large one defers its update: the last thread computes it
        while thread 0 computes dL/dx, and adds it after the large stage's barrier.
        """
        cdef Stage* stage = &self._stages[s]
        cdef floating* inputs = x if s == 0 else <floating*>self._stages[s - 1].a
        cdef int p
        if self._defers(s, m, step_scale):
            self._backward_deferred(s, m, step_scale, t, team)
            return
        if t == 0 and s > 0:
            _activation_backward_part(stage, <floating*>stage.g, m, 0, stage.n_out)
            if floating is float:
                (<Layer>stage.layer).backward_input_f32(
                    <float*>stage.g, <float*>self._stages[s - 1].g, m)
            else:
                (<Layer>stage.layer).backward_input_f64(
                    <double*>stage.g, <double*>self._stages[s - 1].g, m)
        if stage.split:
            _barrier()
        if t == team - 1 and self._defers(s + 1, m, step_scale):  # (thread 0 has read
            # the weights of stage s + 1 for dL/dx before the barrier)
            (<Layer>self._stages[s + 1].layer).deferred_update_f32(NULL, NULL, m,
                                                                   step_scale, True)
        if not isnan(step_scale):
            _gradient_part(stage, inputs, pixels, m, step_scale, s == 0,
                           _first_unit(stage, t, team), _first_unit(stage, t + 1, team))
        elif t == 0:  # an optimizer that cannot be folded into the product
            _gradient_part(stage, inputs, NULL, m, step_scale, s == 0, 0, stage.n_out)
            for p in range(self._param_start[s], self._param_start[s + 1]):
                if floating is float:
                    (<Optimizer>self._optimizer).update_f32(
                        <float*>self._params[p].value, <float*>self._params[p].grad,
                        self._params[p].size, self._params[p].slot)
                else:
                    (<Optimizer>self._optimizer).update_f64(
                        <double*>self._params[p].value, <double*>self._params[p].grad,
                        self._params[p].size, self._params[p].slot)

    cdef inline bint _defers(self, int s, int m, double step_scale) noexcept nogil:
        """Whether stage s defers its plain-SGD update (see _backward_stage)."""
        return (0 < s < self._n_stages and self._stages[s].defer
                and not isnan(step_scale)
                and (<Layer>self._stages[s].layer).defers_update(m))

    cdef void _backward_deferred(self, int s, int m, double step_scale, int t,
                                 int team) noexcept nogil:
        """Stage s (float32, not shared, above a large stage): thread 0 turns dL/da into
        dL/dz and computes dL/dx; meanwhile the last thread prepares the update, which
        it applies after the stage below's barrier (_backward_stage)."""
        cdef Stage* stage = &self._stages[s]
        if t == 0:
            _activation_backward_part(stage, <float*>stage.g, m, 0, stage.n_out)
        if team > 1:
            _barrier()
        if t == 0:
            (<Layer>stage.layer).backward_input_f32(<float*>stage.g,
                                                    <float*>self._stages[s - 1].g, m)
        if t == team - 1:
            (<Layer>stage.layer).deferred_update_f32(
                <float*>self._stages[s - 1].a, <float*>stage.g, m, step_scale, False)

    cdef void _forward(self, floating* x, const cnp.uint8_t* pixels, int m) noexcept nogil:
        """The forward pass alone (evaluation): each large stage shared by the threads.

        The first layer reads ``pixels`` unless NULL, else ``x``."""
        cdef Stage* stage
        cdef floating* inputs = x
        cdef const cnp.uint8_t* stage_pixels
        cdef int s, t
        for s in range(self._n_stages):
            stage = &self._stages[s]
            stage_pixels = pixels if s == 0 else NULL
            if stage.split == 0 or self.n_threads == 1:
                _forward_part(stage, inputs, stage_pixels, m, 0, stage.n_out)
            else:
                for t in prange(self.n_threads, num_threads=self.n_threads,
                                schedule="static", chunksize=1):
                    _forward_part(stage, inputs, stage_pixels, m,
                                  _first_unit(stage, t, self.n_threads),
                                  _first_unit(stage, t + 1, self.n_threads))
            inputs = <floating*>stage.a

    def _count_correct(self, const pixel_t[:, ::1] x, floating[:, ::1] xbuf,
                       const cnp.int64_t[::1] labels, bint take_pixels):
        cdef Stage* last = &self._stages[self._n_stages - 1]
        cdef Py_ssize_t n = x.shape[0], begin = 0, m, i
        cdef Py_ssize_t correct = 0
        if n == 0:
            return 0
        with nogil:
            while begin < n:
                m = min(<Py_ssize_t>self._rows, n - begin)
                if pixel_t is cnp.uint8_t and floating is float and take_pixels:
                    self._forward(&xbuf[0, 0], &x[begin, 0], <int>m)
                else:
                    _copy_rows(&x[begin, 0], m * x.shape[1], &xbuf[0, 0])
                    self._forward(&xbuf[0, 0], NULL, <int>m)
                for i in range(m):
                    if _argmax(<floating*>last.a + i * last.n_out, last.n_out) == labels[begin + i]:
                        correct += 1
                begin += m
        return correct


cdef inline int _first_unit(Stage* stage, int t, int team) noexcept nogil:
    """First output unit of thread t's share of a stage, out of ``team`` threads.

    t = team gives n_out.  A stage that is not split belongs to thread 0 alone: the
    other threads get empty shares.
    """
    if not stage.split:
        return 0 if t == 0 else stage.n_out
    if t >= team:
        return stage.n_out
    return (stage.n_out * t // team) // SPLIT_ALIGN * SPLIT_ALIGN


cdef void _forward_part(Stage* stage, floating* inputs, const cnp.uint8_t* pixels, int m,
                        int lo, int hi) noexcept nogil:
    """Outputs lo:hi of a stage: the layer's (from ``pixels`` unless NULL, float32
    only), then the activation's; stage.row_block rows at a time if set."""
    cdef int first, rows
    if stage.row_block == 0 or m <= stage.row_block:
        _forward_rows(stage, inputs, pixels, 0, m, lo, hi)
        return
    first = 0
    while first < m:
        rows = min(stage.row_block, m - first)
        _forward_rows(stage, inputs + <Py_ssize_t>first * stage.n_in,
                      pixels + <Py_ssize_t>first * stage.n_in if pixels != NULL else NULL,
                      first, rows, lo, hi)
        first += rows


cdef void _forward_rows(Stage* stage, floating* inputs, const cnp.uint8_t* pixels,
                        int first, int m, int lo, int hi) noexcept nogil:
    """_forward_part on the m rows from row ``first`` of the stage's outputs (``inputs``
    and ``pixels`` point at that row)."""
    cdef int i
    cdef floating* z = <floating*>stage.z + <Py_ssize_t>first * stage.n_out
    cdef floating* a = <floating*>stage.a + <Py_ssize_t>first * stage.n_out
    if lo >= hi:
        return
    if floating is float and pixels != NULL:
        (<Layer>stage.layer).forward_pixels_f32(pixels, z, m, lo, hi)
    elif floating is float:
        (<Layer>stage.layer).forward_f32(inputs, z, m, lo, hi)
    else:
        (<Layer>stage.layer).forward_f64(inputs, z, m, lo, hi)
    if stage.activation == NULL:
        return
    if lo == 0 and hi == stage.n_out:
        _activation_forward(stage, z, a, <Py_ssize_t>m * stage.n_out)
    else:
        for i in range(m):
            _activation_forward(stage, z + i * stage.n_out + lo, a + i * stage.n_out + lo,
                                hi - lo)


cdef inline void _activation_forward(Stage* stage, floating* z, floating* a,
                                     Py_ssize_t n) noexcept nogil:
    if floating is float:
        (<Activation>stage.activation).forward_f32(z, a, n)
    else:
        (<Activation>stage.activation).forward_f64(z, a, n)


cdef void _activation_backward_part(Stage* stage, floating* g, int m, int lo,
                                    int hi) noexcept nogil:
    """g[:, lo:hi] *= f'(z[:, lo:hi]) for the stage's activation, if it has one."""
    cdef int i
    cdef Py_ssize_t offset
    if stage.activation == NULL:
        return
    if lo == 0 and hi == stage.n_out:
        _activation_backward(stage, 0, g, <Py_ssize_t>m * stage.n_out)
        return
    for i in range(m):
        offset = <Py_ssize_t>i * stage.n_out + lo
        _activation_backward(stage, offset, g + offset, hi - lo)


cdef inline void _activation_backward(Stage* stage, Py_ssize_t offset, floating* g,
                                      Py_ssize_t n) noexcept nogil:
    if floating is float:
        (<Activation>stage.activation).backward_f32(
            <float*>stage.z + offset, <float*>stage.a + offset, g, n)
    else:
        (<Activation>stage.activation).backward_f64(
            <double*>stage.z + offset, <double*>stage.a + offset, g, n)


cdef void _gradient_part(Stage* stage, floating* inputs, const cnp.uint8_t* pixels, int m,
                         double step_scale, bint with_activation, int lo,
                         int hi) noexcept nogil:
    """Outputs lo:hi: (optionally) the activation's derivative, then the layer's gradient
    (from ``pixels`` unless NULL, float32 with a finite ``step_scale`` only); with a
    finite ``step_scale``, stage.row_block rows at a time if set."""
    cdef int first, rows
    cdef floating* g = <floating*>stage.g
    if lo >= hi:
        return
    if with_activation:
        _activation_backward_part(stage, g, m, lo, hi)
    if stage.row_block == 0 or m <= stage.row_block or isnan(step_scale):
        _layer_gradient(stage, inputs, pixels, g, m, step_scale, lo, hi)
        return
    first = 0
    while first < m:  # each block's update in turn
        rows = min(stage.row_block, m - first)
        _layer_gradient(stage, inputs + <Py_ssize_t>first * stage.n_in,
                        pixels + <Py_ssize_t>first * stage.n_in if pixels != NULL else NULL,
                        g + <Py_ssize_t>first * stage.n_out, rows, step_scale, lo, hi)
        first += rows


cdef inline void _layer_gradient(Stage* stage, floating* inputs, const cnp.uint8_t* pixels,
                                 floating* g, int m, double step_scale, int lo,
                                 int hi) noexcept nogil:
    if floating is float and pixels != NULL:
        (<Layer>stage.layer).gradient_pixels_f32(pixels, g, m, step_scale, lo, hi)
    elif floating is float:
        (<Layer>stage.layer).gradient_f32(inputs, g, m, step_scale, lo, hi)
    else:
        (<Layer>stage.layer).gradient_f64(inputs, g, m, step_scale, lo, hi)


cdef inline floating _convert(pixel_t value, floating kind) noexcept nogil:
    if pixel_t is cnp.uint8_t:
        return value * (<floating>1 / 255)
    else:
        return <floating>value


cdef void _gather(const pixel_t* x, Py_ssize_t width, const cnp.int64_t* rows,
                  Py_ssize_t m, floating* out) noexcept nogil:
    """Copy rows ``rows[:m]`` of ``x`` into ``out``, converting pixels to floats."""
    cdef Py_ssize_t i, j
    cdef const pixel_t* src
    if pixel_t is cnp.uint8_t and floating is float:
        nr_gather_pixels_f32(x, width, rows, m, out)
        return
    for i in range(m):
        src = x + rows[i] * width
        for j in range(width):
            out[i * width + j] = _convert(src[j], out[0])


cdef inline void _gather_share(const pixel_t* x, Py_ssize_t width,
                               const cnp.int64_t* rows, Py_ssize_t m, int t, int team,
                               floating* out, cnp.uint8_t* pixels_out) noexcept nogil:
    """Thread t's share (of ``team``) of gathering rows ``rows[:m]`` into ``out``, or
    into ``pixels_out`` as they are unless it is NULL (uint8 ``x`` only)."""
    cdef Py_ssize_t i, first = m * t // team, last = m * (t + 1) // team
    if pixel_t is cnp.uint8_t and pixels_out != NULL:
        for i in range(first, last):
            memcpy(pixels_out + i * width, x + rows[i] * width, width)
        return
    _gather(x, width, rows + first, last - first, out + first * width)


cdef inline void _prefetch_share(const pixel_t* x, Py_ssize_t width,
                                 const cnp.int64_t* rows, Py_ssize_t m, int t,
                                 int team) noexcept nogil:
    """Thread t's share (of ``team``) of prefetching rows ``rows[:m]`` of uint8 ``x``."""
    cdef Py_ssize_t first = m * t // team, last = m * (t + 1) // team
    if pixel_t is cnp.uint8_t and m > 0:
        nr_prefetch_rows(x, width, rows + first, last - first)


cdef void _copy_rows(const pixel_t* x, Py_ssize_t count, floating* out) noexcept nogil:
    cdef Py_ssize_t i
    if pixel_t is cnp.uint8_t and floating is float:
        nr_convert_pixels_f32(x, count, out)
        return
    for i in range(count):
        out[i] = _convert(x[i], out[0])


cdef void _gather_targets(const cnp.int64_t* labels, const floating* targets,
                          const cnp.int64_t* rows, Py_ssize_t m, Py_ssize_t width,
                          floating* out) noexcept nogil:
    """One-hot rows for ``labels``, or copied rows of ``targets``, into ``out``."""
    cdef Py_ssize_t i, j
    if labels != NULL:
        memset(out, 0, m * width * sizeof(floating))
        for i in range(m):
            out[i * width + labels[rows[i]]] = 1
    else:
        for i in range(m):
            for j in range(width):
                out[i * width + j] = targets[rows[i] * width + j]


cdef inline Py_ssize_t _argmax(const floating* row, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j, best = 0
    for j in range(1, n):
        if row[j] > row[best]:
            best = j
    return best

"""The compiled training loop: runs of compiled components, in C, without the GIL.

:class:`FusedTrainer` runs a run of compiled stages (a layer and the activation after it).
When the whole model, its loss and its optimizer are compiled, it runs an epoch's batches
without a Python call per batch: it gathers each batch into buffers allocated once
(converting uint8 pixels on the way, or copying them as they are for a first layer that
reads pixels), calls the components' ``cdef`` kernels through their virtual tables, and
applies the optimizer in place.  Between Python-written components it runs one batch's
forward or backward pass at a time (``forward_batch``, ``forward_input``,
``backward_batch``), so that only the Python-written parts leave compiled code.

It knows the components only through the kernel contract of ``Layer``, ``Activation``,
``Loss`` and ``Optimizer`` and what each class declares (``kernel_dtypes``,
``capabilities``, ``rowwise``, ``unit_shares()``, ``folded_step()``), so a new compiled
component needs no change here (docs/architecture.rst).
"""
from cpython.ref cimport PyObject
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport isnan
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
cimport numpy as cnp

import contextlib
from contextlib import contextmanager

import numpy as np

from numrec._core._conv import _ConvReLUPool, fuse_stages
from numrec._core._memory import aligned_zeros

from numrec._core._layers cimport Layer
from numrec._core._layers import _panels, _unpanel
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
    SPARSE_SAMPLE_ROWS = 1024  # rows of the data looked at to choose the first layer's kernels
    FINITE_SHARED_MIN = 1 << 16  # values from which the threads share a finiteness check
    # Up to this many rows predict() runs on the calling thread, on the layers' kernels as
    # they are: no thread team to start, and no switch to the kernels for zero inputs
    # (which copies the first layer's weights into their layout and back).
    SMALL_ROWS = 16

# The first layer skips zero inputs when at most this fraction of the entries are nonzero
# (where its kernels measured faster than the full product: docs/benchmarks.rst).
cdef double SPARSE_MAX_DENSITY = 0.35
# Training on batches of up to SPARSE_SMALL_BATCH rows, they stay faster up to this
# fraction: against numrec's own full-product kernels rather than BLAS (Fashion-MNIST,
# half nonzero, trains 1.2-1.4x faster on them at batch 32 and 128, and still 1.14-1.25x
# at 63 % nonzero; at batch 512 BLAS's product is faster from 49 %: docs/benchmarks.rst).
cdef double SPARSE_MAX_DENSITY_SMALL_BATCH = 0.6
# The float32 kernels work in blocks of four rows or columns on dense inputs (_sparse.c,
# _sparse512.c), which makes them faster than the full products on any inputs when
# training on batches of up to SPARSE_SMALL_BATCH rows (standardised MNIST, batch 32:
# 1.17x with AVX-512), and otherwise up to SPARSE_MAX_DENSITY_F32 nonzero
# (Fashion-MNIST, half nonzero, batch 512: 1.23x; on denser inputs BLAS's threaded
# product was as fast with AVX-512, and faster with AVX2).  Inference takes the latter
# share whatever the batch, so that fit's test passes and evaluate() agree bit for bit.
# The same shares at every kernel level, so that the AVX2 and AVX-512 levels give the
# same bits.  _panels_for_dense_f32 off restores the float64 shares (for benchmarks).
cdef double SPARSE_MAX_DENSITY_F32 = 0.6
cdef bint _panels_for_dense_f32 = True
cdef int SPARSE_SMALL_BATCH = 128
# Multiply-adds of a float32 input gradient (rows x inputs x outputs) from which the
# threads share it by columns: below, the extra barrier costs more than half the product
# saves (784-512-256-10, batch 32: 4.2 M, 4 % slower shared; batch 128, 17 M: even).
cdef double COLUMN_SHARE_MIN_PRODUCT = 16777216
cdef bint _sparse_allowed = True
cdef bint _defer_allowed = True
cdef bint _fusion_allowed = True
cdef bint _hidden_panels_allowed = True


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


def _stage_fusion(enable=None):
    """Whether trainers made afterwards run each Conv2D + ReLU + MaxPool2D as one stage
    (``_conv.fuse_stages``).

    With ``enable``, allow it or not, and return the previous setting.  For benchmarks
    and tests: the results are the same bits either way.
    """
    global _fusion_allowed
    previous = bool(_fusion_allowed)
    if enable is not None:
        _fusion_allowed = bool(enable)
    return previous


def _dense_inputs_on_panels(enable=None):
    """Whether a float32 first layer runs its kernels for zero inputs up to its own
    shares of nonzero inputs (:func:`sparse_max_density`), else up to the float64
    layer's, the full products beyond.

    With ``enable``, allow it or not, and return the previous setting.  For benchmarks.
    """
    global _panels_for_dense_f32
    previous = bool(_panels_for_dense_f32)
    if enable is not None:
        _panels_for_dense_f32 = bool(enable)
    return previous


def _hidden_layer_panels(enable=None):
    """Whether trainers may train their large float32 layers above the first on the
    kernels for zero inputs (:meth:`FusedTrainer._sparse_hidden_layers`).

    With ``enable``, allow it or not, and return the previous setting.  For benchmarks
    and tests: results agree either way up to the order of the additions.
    """
    global _hidden_panels_allowed
    previous = bool(_hidden_panels_allowed)
    if enable is not None:
        _hidden_panels_allowed = bool(enable)
    return previous


def _dense_share_f32(value=None):
    """The largest share of nonzero inputs at which a float32 first layer runs its kernels
    for zero inputs beyond SPARSE_SMALL_BATCH rows and in inference (SPARSE_MAX_DENSITY_F32,
    for trainers made afterwards).  With ``value``, set it, and return the previous one.
    For benchmarks."""
    global SPARSE_MAX_DENSITY_F32
    previous = SPARSE_MAX_DENSITY_F32
    if value is not None:
        SPARSE_MAX_DENSITY_F32 = float(value)
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


def sparse_max_density(dtype, bint training, int batch_size):
    """The largest share of nonzero inputs at which a first layer of ``dtype`` runs its
    kernels for zero inputs.

    When training on batches of up to SPARSE_SMALL_BATCH rows, any share in float32 and
    SPARSE_MAX_DENSITY_SMALL_BATCH in float64; otherwise (larger batches, inference)
    SPARSE_MAX_DENSITY_F32 and SPARSE_MAX_DENSITY.
    """
    cdef bint small = training and batch_size <= SPARSE_SMALL_BATCH
    if _panels_for_dense_f32 and np.dtype(dtype) == np.float32:
        return 1.0 if small else SPARSE_MAX_DENSITY_F32
    return SPARSE_MAX_DENSITY_SMALL_BATCH if small else SPARSE_MAX_DENSITY


def mostly_zeros(x, max_density=None):
    """True if at most ``max_density`` (default SPARSE_MAX_DENSITY) of the entries in
    the first rows of ``x`` are nonzero (the first SPARSE_SAMPLE_ROWS rows stand for the
    data)."""
    if max_density is None:
        max_density = SPARSE_MAX_DENSITY
    sample = x[:SPARSE_SAMPLE_ROWS]
    return sample.size > 0 and np.count_nonzero(sample) <= max_density * sample.size




cdef struct Stage:
    PyObject* layer        # a compiled Layer (borrowed: the trainer keeps it alive)
    PyObject* activation   # a compiled Activation, or NULL
    int n_in
    int n_out
    int n_units            # output units that threads share: n_out, or fewer (Layer.n_units)
    int unit_width         # outputs per unit: n_out / n_units (a unit's outputs are columns
                           # [unit * unit_width, (unit + 1) * unit_width) of each row)
    void* z                # (rows, n_out) layer output, before the activation
    void* a                # (rows, n_out) activation output (the same buffer as z without one)
    void* g                # (rows, n_out) dL/da, turned in place into dL/dz
    bint split             # whether the threads share this stage's output units
    int align              # the threads' shares of units start at multiples of this
    bint rowwise           # the activation takes whole rows (only on full rows)
    bint folded            # the optimizer's step is applied inside the layer's product
    int row_block          # if > 0, the stage's forward pass and parameter kernels take
                           # at most this many rows at a time
    bint defer             # may defer its folded update (float32, small, above a shared stage)
    bint input_rows        # the threads share dL/dx by rows ("rowwise_input" capability)
    bint input_columns     # the threads share dL/dx by input columns (float32,
                           # "columnwise_input" capability)
    bint forward_rows      # the threads share the forward pass by rows, not units
                           # ("rowwise_forward" capability, on a shared stage)


cdef struct Param:
    void* value
    void* grad
    Py_ssize_t size
    Py_ssize_t slot        # position in the model's parameters(): the optimizer's key
    Py_ssize_t unit        # elements per output unit of the layer (Layer.unit_sizes())


def is_compiled(component):
    """True if ``component``'s own type is a compiled built-in, not a Python subclass.

    Python classes are heap types; Cython ``cdef class``es are static types.  A Python
    subclass of a compiled class may override its methods, so it is not compiled.
    """
    return not (type(component).__flags__ & (1 << 9))  # Py_TPFLAGS_HEAPTYPE


def kernel_problem(component, dtype):
    """Why the compiled loop cannot run ``component`` in ``dtype``, or None if it can.

    A component joins the loop when its class is compiled and declares, in its own
    class body, the kernels it implements (``kernel_dtypes``).  A class that only
    inherits the declaration (a compiled subclass that forgot it, or the abstract
    bases, whose kernels do nothing) is refused: it would train on zeros.
    """
    kind = type(component)
    name = kind.__name__
    if not is_compiled(component):
        return f"{name} is written in Python"
    if "kernel_dtypes" not in kind.__dict__:
        return f"{name} declares no compiled kernels (kernel_dtypes)"
    if np.dtype(dtype).name not in kind.kernel_dtypes:
        return f"{name} has no {np.dtype(dtype).name} kernels"
    return None


def plan_stages(components, dtype=np.float32):
    """Group compiled components into (layer, activation-or-None) stages, or return None.

    Returns None when the compiled loop cannot run them all (see :func:`plan_problem`).
    """
    return None if plan_problem(components, dtype) else _group_stages(components)


def plan_problem(components, dtype=np.float32):
    """Why the compiled loop cannot run ``components`` as one run of stages, or None.

    Each component must pass :func:`kernel_problem`, each activation must follow a
    layer, and each layer must say its widths (``in_features``, ``out_features``).
    """
    components = list(components)
    if not components:
        return "there are no components"
    previous = None
    for index, component in enumerate(components):
        problem = kernel_problem(component, dtype)
        if problem is not None:
            return f"components[{index}]: {problem}"
        if isinstance(component, Layer):
            if (getattr(component, "in_features", None) is None
                    or getattr(component, "out_features", None) is None):
                return (f"components[{index}]: a layer without in_features and out_features "
                        f"(one that takes its sizes from its input needs a model that knows "
                        f"its input shape)")
        elif isinstance(component, Activation):
            if not isinstance(previous, Layer):
                return f"components[{index}]: an activation must follow a layer"
        else:
            return f"components[{index}]: neither a Layer nor an Activation"
        previous = component
    return None


def _group_stages(components):
    stages = []  # (this module compiles with wraparound off: no negative indices)
    for component in components:
        if isinstance(component, Layer):
            stages.append([component, None])
        else:
            stages[len(stages) - 1][1] = component
    return [tuple(stage) for stage in stages]


def thread_plan(stages, dtype, int batch_size, x, int threads, bint training=True):
    """How a trainer for ``stages`` uses ``threads`` threads on data ``x``.

    Returns ``(n_threads, blas_threads, exact_shares)`` for :class:`FusedTrainer` and
    the caller's BLAS limit.  The threads share the large layers' units when some
    shared layer's kernels beat a threaded BLAS product at this batch size
    (``Layer.unit_shares()``: all of a dense network's alike, while a convolution's
    have no row limit), or when the first layer runs its kernels for zero inputs on
    ``x`` (:func:`sparse_max_density`, for ``training`` or for inference: those kernels
    have no row limit).  The other shared layers then run their
    longest exact blocks of rows, so that results do not depend on the threads, or
    their single-threaded products on their share of the units.  Otherwise BLAS
    threads each product itself.
    """
    limits = [max_rows for worth_it, _, max_rows, _ in
              (layer.unit_shares(dtype) for layer, _ in stages) if worth_it]
    shared = (not limits or batch_size <= max(limits)
              or (_sparse_capable(stages[0][0])
                  and mostly_zeros(x, sparse_max_density(dtype, training, batch_size))))
    split = threads if shared else 1
    return split, (1 if split > 1 else threads), shared


def _sparse_capable(layer):
    return "sparse_inputs" in type(layer).capabilities


cdef class FusedTrainer:
    """Runs a run of compiled stages over batches, without the GIL.

    Parameters
    ----------
    stages : list of (Layer, Activation or None)
        From :func:`plan_stages`.
    loss : Loss or None
        A compiled loss, or None when the stages' output goes on to Python-written code
        (then :meth:`backward_batch` receives dL/d output).
    optimizer : Optimizer or None
        A compiled optimizer (prepared for the model's parameters), or None to leave
        the update to the caller (the gradients are written beside the parameters).
    batch_size : int
    dtype : numpy.dtype
        float32 or float64, the dtype of every layer.
    n_threads : int
        Threads that share the output units of each large layer (forward pass and
        update); the caller keeps BLAS single-threaded meanwhile.
    exact_shares : bool
        Run each large layer whose kernels' results do not depend on how the units are
        shared up to ``max_rows`` rows (``Layer.unit_shares()``) on blocks of that many
        rows, so that they are the same bits for any ``n_threads`` at any batch size.  For callers that share the units at this batch size (even
        with one thread); slower than BLAS on dense data.
    first_slot : int
        Position of the first stage's first parameter in the model's parameters (the
        optimizer's key for it); later ones follow in order.
    input_gradient : bool
        Whether :meth:`backward_batch` computes dL/d input for a Python-written
        component below (the first layer of a model has none to compute).
    """
    cdef Stage* _stages
    cdef int _n_stages
    cdef Param* _params
    cdef int* _param_start      # _params[_param_start[s]:_param_start[s + 1]] belong to stage s
    cdef int _n_params
    cdef PyObject* _loss        # NULL: the loss is the caller's
    cdef PyObject* _optimizer   # NULL: the update is the caller's
    cdef bint _fold             # the optimizer's step is param += _step * grad
    cdef double _step
    cdef bint _input_gradient
    cdef void* _gx_data         # dL/d input for the caller (input_gradient), else NULL
    cdef int _rows              # buffer rows: max(batch_size, EVAL_ROWS)
    cdef bint _any_split
    cdef readonly int batch_size
    cdef readonly int n_threads
    cdef readonly object dtype
    cdef int _kind              # the NumPy type number of dtype
    cdef object _keepalive
    cdef object _x, _x_next, _y, _gx
    cdef object _pixels, _pixels_next   # uint8 batches for a first layer that takes pixels
    cdef object _held           # the x of holding(), or None
    cdef object _epoch          # (x, targets, order) of epoch(), checked, or None
    cdef object _batch_input    # the input of the last forward_input() (kept alive)
    cdef object _batch_pixels   # whether the last forward_batch() read pixels
    cdef Py_ssize_t _batch_rows # rows of the last forward_batch() or forward_input()
    cdef object _outputs        # (rows, n_out) activation output of the last stage
    cdef object _epoch_weights  # the sample weights of epoch(), or None
    cdef readonly Py_ssize_t correct  # training rows classified right (see train())
    cdef dict _panelled         # see _panel_parameters(): per stage, what to restore

    def __cinit__(self):
        self._panelled = {}
        self._stages = NULL
        self._params = NULL
        self._param_start = NULL

    def __dealloc__(self):
        free(self._stages)
        free(self._params)
        free(self._param_start)

    def __init__(self, stages, loss, optimizer, int batch_size, dtype,
                 int n_threads=1, bint exact_shares=False, *, Py_ssize_t first_slot=0,
                 bint input_gradient=False):
        cdef int s, p
        if loss is not None and not isinstance(loss, Loss):
            raise TypeError("loss must be a compiled Loss or None")
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError("optimizer must be a compiled Optimizer or None")
        below_shared = False
        if _fusion_allowed:
            stages = fuse_stages(stages)
        self.batch_size = batch_size
        self.n_threads = max(1, n_threads)
        self.dtype = np.dtype(dtype)
        self._kind = cnp.NPY_FLOAT32 if self.dtype == np.float32 else cnp.NPY_FLOAT64
        self._rows = max(batch_size, EVAL_ROWS)
        self._n_stages = len(stages)
        self._loss = <PyObject*>loss if loss is not None else NULL
        self._optimizer = <PyObject*>optimizer if optimizer is not None else NULL
        folded_step = optimizer.folded_step() if optimizer is not None else None
        self._fold = folded_step is not None
        self._step = folded_step if folded_step is not None else 0.0
        self._input_gradient = input_gradient
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
            capabilities = type(layer).capabilities
            worth_it, align, max_rows, exact = layer.unit_shares(self.dtype)
            self._stages[s].layer = <PyObject*>layer
            self._stages[s].activation = (<PyObject*>activation
                                          if activation is not None else NULL)
            self._stages[s].n_in = layer.in_features
            self._stages[s].n_out = layer.out_features
            n_units = getattr(layer, "n_units", layer.out_features)
            if n_units < 1 or layer.out_features % n_units:
                raise ValueError(f"{layer!r}: n_units must divide out_features")
            self._stages[s].n_units = n_units
            self._stages[s].unit_width = layer.out_features // n_units
            if isinstance(layer, _ConvReLUPool):
                layer._bind(z, g)
            self._stages[s].z = cnp.PyArray_DATA(z)
            self._stages[s].a = cnp.PyArray_DATA(a)
            self._stages[s].g = cnp.PyArray_DATA(g)
            self._stages[s].split = worth_it and self.n_threads > 1
            self._stages[s].align = max(1, align)
            self._stages[s].rowwise = activation is not None and type(activation).rowwise
            self._stages[s].folded = self._fold and "folded_sgd" in capabilities
            self._stages[s].row_block = max_rows if worth_it and exact_shares and exact else 0
            self._stages[s].defer = (_defer_allowed and s > 0 and not worth_it and below_shared
                                     and self._stages[s].folded
                                     and "deferred_update" in capabilities
                                     and self.dtype == np.float32)
            self._stages[s].input_rows = ("rowwise_input" in capabilities
                                          and self.n_threads > 1)
            self._stages[s].input_columns = ("columnwise_input" in capabilities
                                             and self.n_threads > 1
                                             and self.dtype == np.float32)
            self._stages[s].forward_rows = ("rowwise_forward" in capabilities
                                            and self._stages[s].split)
            below_shared = worth_it
            self._any_split = self._any_split or self._stages[s].split
            self._param_start[s] = len(params)
            params += list(zip(layer.parameters(), layer.gradients(), layer.unit_sizes()))
        self._param_start[self._n_stages] = len(params)
        self._n_params = len(params)
        self._params = <Param*>malloc(max(self._n_params, 1) * sizeof(Param))
        if self._params == NULL:
            raise MemoryError()
        for p, (value, grad, unit) in enumerate(params):
            if optimizer is not None:
                optimizer._check_prepared(first_slot + p, value)
            self._params[p].value = cnp.PyArray_DATA(value)
            self._params[p].grad = cnp.PyArray_DATA(grad)
            self._params[p].size = value.size
            self._params[p].slot = first_slot + p
            self._params[p].unit = unit
        self._x = aligned_zeros((self._rows, self._stages[0].n_in), self.dtype)
        self._x_next = aligned_zeros((batch_size, self._stages[0].n_in), self.dtype)
        self._y = aligned_zeros((self._rows, self._stages[self._n_stages - 1].n_out),
                                self.dtype)
        self._gx = (aligned_zeros((batch_size, self._stages[0].n_in), self.dtype)
                    if input_gradient else None)
        self._gx_data = cnp.PyArray_DATA(self._gx) if input_gradient else NULL
        self._pixels = aligned_zeros((batch_size, self._stages[0].n_in), np.uint8)
        self._pixels_next = aligned_zeros((batch_size, self._stages[0].n_in), np.uint8)
        self._outputs = buffers[len(buffers) - 2]
        self._keepalive = (stages, loss, optimizer, buffers, params)

    @property
    def n_inputs(self):
        return self._stages[0].n_in

    @property
    def n_outputs(self):
        return self._stages[self._n_stages - 1].n_out

    def train(self, x, targets, order, Py_ssize_t start, Py_ssize_t stop, weights=None):
        """Train on the batches of ``order[start:stop]``; return the summed loss.

        ``x`` is ``(n_samples, n_inputs)``, uint8 (scaled by 1/255 while gathered) or the
        trainer's dtype; ``targets`` is int64 labels ``(n_samples,)`` (one-hot targets) or
        an array ``(n_samples, n_outputs)`` of the trainer's dtype.  ``start`` is a multiple
        of ``batch_size``.  The caller has checked every shape, dtype and index.

        ``weights``, float64 ``(n_samples,)`` or None, weighs each sample's loss: a batch
        of m rows then has the loss :math:`\\sum_i w_i l_i / m` (its gradient likewise),
        and the summed loss returned is :math:`\\sum_i w_i l_i`.  Without weights no
        multiplication takes place.  Each batch also adds to :attr:`correct` the rows
        whose largest output is at their target's largest entry (before the update, as
        Keras counts training accuracy).
        """
        self._check_train_args(x, targets, order, start, stop)
        self._check_weights(weights, len(x))
        if self._held is not None and x is not self._held:
            raise RuntimeError("train() inside holding() must train on the held data")
        sparse = self._held is None and self._sparse_first_layer(x, training=True)
        hidden = []
        try:
            if self._held is None:
                hidden = self._sparse_hidden_layers()
            return self._train(x, self._x, self._x_next, targets, order, start, stop,
                               self._takes_pixels(x, training=True), weights)
        finally:
            self._dense_hidden_layers(hidden)
            if sparse:
                self._dense_first_layer()

    def _check_weights(self, weights, Py_ssize_t n):
        if weights is not None and (not isinstance(weights, np.ndarray)
                                    or weights.dtype != np.float64 or weights.shape != (n,)
                                    or not weights.flags.c_contiguous):
            raise ValueError(f"weights must be a C-contiguous float64 array of shape ({n},)")

    def refresh_step(self):
        """Read the optimizer's folded step again: its learning rate may have changed
        since the trainer was built (a schedule between epochs)."""
        if not self._fold:
            return
        step = (<Optimizer>self._optimizer).folded_step()
        if step is None:
            raise ValueError("the optimizer's update can no longer be folded into the "
                             "gradient products: build a new trainer")
        self._step = step

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
        held_sparse = self._sparse_first_layer(x, training=True)
        hidden = []
        try:
            hidden = self._sparse_hidden_layers()
            self._held = x
            yield self
        finally:
            self._held = None
            self._dense_hidden_layers(hidden)
            if held_sparse:
                self._dense_first_layer()

    @contextmanager
    def epoch(self, x, targets, order, weights=None):
        """A context manager for running batches of ``order`` one at a time.

        For a model with Python-written parts: checks ``x``, ``targets`` and ``order``
        (as :meth:`train` does) once, holds the first layer's kernels for ``x``
        (:meth:`holding`), and lets :meth:`forward_batch` and :meth:`loss_batch` name the
        rows by position in ``order``.  A later run of stages, which reads no data,
        passes ``x=None`` (then only :meth:`loss_batch` uses the epoch).  ``weights``
        weighs the samples' losses in :meth:`loss_batch` as in :meth:`train`.
        """
        self._check_weights(weights, len(targets))
        if x is None:  # a later run of stages: the targets and order alone
            self._check_targets(targets, self._check_rows(len(targets), order, 0, len(order)),
                                len(targets))
            held = contextlib.nullcontext()
        else:
            self._check_inputs(x)
            self._check_targets(targets, self._check_rows(len(x), order, 0, len(order)),
                                len(x))
            held = self.holding(x)
        with held:
            self._epoch = (x, targets, order)
            self._epoch_weights = weights
            try:
                yield self
            finally:
                self._epoch = None
                self._epoch_weights = None

    def count_correct(self, x, labels):
        """Return how many rows of ``x`` the model classifies as ``labels`` (argmax)."""
        self._check_inputs(x)
        if labels.ndim != 1 or len(labels) != len(x):
            raise ValueError("labels must be one per row of x")
        if self._held is not None:
            raise RuntimeError("count_correct() cannot run while the trainer holds its "
                               "kernels (inside holding())")
        sparse = self._sparse_first_layer(x, training=False)
        try:
            return self._count_correct(x, self._x, labels, self._takes_pixels(x, training=False))
        finally:
            if sparse:
                self._dense_first_layer()

    def evaluate(self, x, targets, loss=None):
        """Return ``(summed loss, correct rows)`` of the model on ``x`` against
        ``targets`` (int64 labels ``(n,)`` or rows ``(n, n_outputs)`` of the trainer's
        dtype), from one forward pass per 1024 rows: the loss as in training (unweighted)
        and the rows whose largest output is at their target's largest entry.  Needs a
        trainer with a compiled loss, or a compiled ``loss`` to use instead of it for
        this call.  Raises ``ValueError`` if ``x`` holds NaN or infinity."""
        if loss is not None:
            if kernel_problem(loss, self.dtype) is not None or not isinstance(loss, Loss):
                raise TypeError(f"loss must be a compiled Loss with {self.dtype} kernels")
            own = self._loss
            self._loss = <PyObject*>loss
            try:
                return self.evaluate(x, targets)
            finally:
                self._loss = own
        if self._loss == NULL:
            raise RuntimeError("evaluate() needs a trainer with a compiled loss")
        self._check_inputs(x)
        rows = np.arange(len(x), dtype=np.int64)
        self._check_targets(targets, rows, len(x))
        if self._held is not None:
            raise RuntimeError("evaluate() cannot run while the trainer holds its kernels "
                               "(inside holding())")
        if len(x) == 0:
            return 0.0, 0
        sparse = self._sparse_first_layer(x, training=False)
        try:
            return self._evaluate(x, self._x, self._y, targets, rows,
                                  self._takes_pixels(x, training=False))
        finally:
            if sparse:
                self._dense_first_layer()

    def _evaluate(self, const pixel_t[:, ::1] x, floating[:, ::1] xbuf,
                  floating[:, ::1] ybuf, targets, const cnp.int64_t[::1] rows,
                  bint take_pixels):
        cdef const cnp.int64_t[::1] labels = None
        cdef const floating[:, ::1] dense_targets = None
        cdef const cnp.int64_t* label_ptr = NULL
        cdef const floating* target_ptr = NULL
        cdef Py_ssize_t n = x.shape[0], begin = 0, m, correct = 0
        cdef double total = 0
        cdef bint finite = True
        if targets.ndim == 1:
            labels = targets
            label_ptr = &labels[0]
        else:
            dense_targets = targets
            target_ptr = &dense_targets[0, 0]
        with nogil:
            while begin < n:
                m = min(<Py_ssize_t>self._rows, n - begin)
                if not self._forward_chunk(&x[begin, 0], m, x.shape[1], &xbuf[0, 0],
                                           take_pixels, False):
                    finite = False
                    break
                _gather_targets(label_ptr, target_ptr, &rows[begin], m, ybuf.shape[1],
                                &ybuf[0, 0])
                total += self._loss_kernel(&ybuf[0, 0], <int>m, NULL, NULL)
                correct += self._count_rows(&ybuf[0, 0], <int>m)
                begin += m
        if not finite:
            raise ValueError("x contains NaN or infinity")
        return total, correct

    def predict(self, x, out):
        """Write the outputs of the stages for the rows of ``x`` into ``out``.

        ``x`` is ``(n, n_inputs)``, C-contiguous, uint8 pixels or the trainer's dtype;
        pixels are scaled as the model scales them, ``pixel * dtype(1 / 255)`` (so
        that they give the same bits as ``load_mnist``'s floats), except where the
        first layer reads them in place (its kernels for zero inputs take the
        correctly rounded pixel / 255, as in training).  ``out`` is ``(n, n_outputs)``,
        C-contiguous, of the trainer's dtype.  Returns False, leaving ``out``
        incomplete, if ``x`` holds NaN or infinity (checked as the rows are copied into
        the trainer's buffer), else True.

        Longer inputs run exactly as :meth:`evaluate` runs them, with the same bits: 1024
        rows at a time (or ``batch_size``), each large stage shared by the threads, the
        first layer on its kernels for zero inputs when ``x`` is mostly zeros, reading
        uint8 pixels in place where it can.  Up to 16 rows run on the calling thread
        alone, on the layers' kernels as they are (no thread team to start, and no copy
        of the first layer's weights into the layout of the kernels for zero inputs):
        the same bits as longer inputs wherever those use the same kernels, within
        rounding elsewhere (a dense product's additions in another order).
        """
        cdef Py_ssize_t n
        cdef int kind = self._kind
        if not isinstance(x, np.ndarray) or not isinstance(out, np.ndarray):
            raise TypeError("x and out must be numpy arrays")
        if (cnp.PyArray_NDIM(<cnp.ndarray>x) != 2
                or cnp.PyArray_DIM(<cnp.ndarray>x, 1) != self._stages[0].n_in
                or cnp.PyArray_TYPE(<cnp.ndarray>x) not in (cnp.NPY_UINT8, kind)):
            self._check_inputs(x)
        n = cnp.PyArray_DIM(<cnp.ndarray>x, 0)
        if (cnp.PyArray_NDIM(<cnp.ndarray>out) != 2 or cnp.PyArray_DIM(<cnp.ndarray>out, 0) != n
                or cnp.PyArray_DIM(<cnp.ndarray>out, 1) != self.n_outputs
                or cnp.PyArray_TYPE(<cnp.ndarray>out) != kind
                or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>out)
                or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)):
            raise ValueError(f"x must be C-contiguous and out a C-contiguous {self.dtype} "
                             f"array of shape ({n}, {self.n_outputs})")
        if self._held is not None:
            raise RuntimeError("predict() cannot run while the trainer holds its kernels "
                               "(inside holding())")
        if n == 0:
            return True
        if n <= SMALL_ROWS:
            return self._predict_small(x, out)
        sparse = self._sparse_first_layer(x, training=False)
        try:
            return self._predict(x, self._x, out, self._takes_pixels(x, training=False))
        finally:
            if sparse:
                (<Layer>self._stages[0].layer)._sparse_inputs(False)

    def _predict_small(self, cnp.ndarray x, cnp.ndarray out):
        """predict() of up to SMALL_ROWS rows: one call to C on raw pointers, without a
        fused-type dispatch in Python."""
        cdef void* xp = cnp.PyArray_DATA(x)
        cdef void* buf = cnp.PyArray_DATA(self._x)
        cdef void* outp = cnp.PyArray_DATA(out)
        cdef Py_ssize_t m = cnp.PyArray_DIM(x, 0)
        cdef bint pixels = cnp.PyArray_TYPE(x) == cnp.NPY_UINT8
        cdef bint single = cnp.PyArray_TYPE(out) == cnp.NPY_FLOAT32
        cdef bint finite
        with nogil:
            if single and pixels:
                finite = self._small_rows(<const cnp.uint8_t*>xp, m, <float*>buf, <float*>outp)
            elif single:
                finite = self._small_rows(<const float*>xp, m, <float*>buf, <float*>outp)
            elif pixels:
                finite = self._small_rows(<const cnp.uint8_t*>xp, m, <double*>buf,
                                          <double*>outp)
            else:
                finite = self._small_rows(<const double*>xp, m, <double*>buf, <double*>outp)
        return finite

    cdef bint _small_rows(self, const pixel_t* x, Py_ssize_t m, floating* xbuf,
                          floating* out) noexcept nogil:
        """Copy (and check) m rows of x into xbuf, run every stage on all its units on
        this thread, and copy the last stage's output rows into out."""
        cdef Stage* stage
        cdef floating* inputs = xbuf
        cdef int s
        if not _copy_inputs(x, m * self._stages[0].n_in, xbuf):
            return False
        for s in range(self._n_stages):
            stage = &self._stages[s]
            _forward_part(stage, inputs, NULL, <int>m, 0, stage.n_units, True)
            inputs = <floating*>stage.a
        memcpy(out, inputs, m * self._stages[self._n_stages - 1].n_out * sizeof(floating))
        return True

    cdef bint _forward_chunk(self, const pixel_t* x, Py_ssize_t m, Py_ssize_t width,
                             floating* xbuf, bint take_pixels,
                             bint loader_scaling) noexcept nogil:
        """The stages' forward pass over m rows of x: pixels read in place when
        ``take_pixels``, floats of the trainer's dtype read in place, else x copied
        into xbuf (scaled as predict() scales them with ``loader_scaling``, see
        _copy_inputs, else as the training loop does); False, with nothing run, if a
        float of x is not finite."""
        if pixel_t is cnp.uint8_t and floating is float and take_pixels:
            self._forward(xbuf, x, <int>m)
            return True
        if (pixel_t is float and floating is float) or (pixel_t is double and floating is double):
            if not self._all_finite_shared(x, m * width):  # read in place: the stages do not write it
                return False
            self._forward(<floating*>x, NULL, <int>m)
            return True
        if loader_scaling:
            if not _copy_inputs(x, m * width, xbuf):
                return False
        elif not _copy_checked(x, m * width, xbuf):
            return False
        self._forward(xbuf, NULL, <int>m)
        return True

    cdef bint _all_finite_shared(self, const floating* x, Py_ssize_t count) noexcept nogil:
        """Whether the ``count`` values of x are finite, the threads taking a part each."""
        cdef int t, n = self.n_threads, bad = 0
        cdef Py_ssize_t lo, hi
        if n == 1 or count < FINITE_SHARED_MIN:
            return _all_finite(x, count)
        for t in prange(n, num_threads=n, schedule="static", chunksize=1):
            lo = count * t // n
            hi = count * (t + 1) // n
            bad += not _all_finite(x + lo, hi - lo)
        return bad == 0

    def _predict(self, const pixel_t[:, ::1] x, floating[:, ::1] xbuf,
                 floating[:, ::1] out, bint take_pixels):
        cdef Stage* last = &self._stages[self._n_stages - 1]
        cdef Py_ssize_t n = x.shape[0], begin = 0, m
        cdef bint finite = True
        with nogil:
            while begin < n:
                m = min(<Py_ssize_t>self._rows, n - begin)
                if not self._forward_chunk(&x[begin, 0], m, x.shape[1], &xbuf[0, 0],
                                           take_pixels, True):
                    finite = False
                    break
                memcpy(&out[begin, 0], last.a, m * last.n_out * sizeof(floating))
                begin += m
        return finite

    def _sparse_first_layer(self, x, bint training):
        """Switch the first layer to its kernels for zero inputs if they suit ``x``.

        Only for a layer with the ``"sparse_inputs"`` capability and ``x`` that is
        :func:`mostly_zeros` (up to SPARSE_MAX_DENSITY_SMALL_BATCH nonzero when training
        on batches of up to SPARSE_SMALL_BATCH rows); in training, with the folded update
        (those kernels apply the step inside the product) or with a compiled optimizer and a layer that has
        the ``"sparse_gradients"`` capability (:meth:`_panel_parameters`).  Returns
        whether it switched.
        """
        layer = <Layer>self._stages[0].layer
        density = sparse_max_density(self.dtype, training, self.batch_size)
        if not (_sparse_allowed and _sparse_capable(layer)) or not mostly_zeros(x, density):
            return False
        if layer.takes_pixels():  # switched already, by a trainer that holds them
            return False
        if training and not (self._stages[0].folded or self._gradients_in_panels(0)):
            return False
        if not layer._sparse_inputs(True):
            return False
        if training and not self._stages[0].folded:
            self._panel_parameters(0)
        return True

    def _sparse_hidden_layers(self):
        """Switch the large float32 layers above the first to their kernels for zero
        inputs, for training on batches of up to SPARSE_SMALL_BATCH rows; returns the
        stages switched, for :meth:`_dense_hidden_layers`.

        Their inputs are the activations of the layer below: after ReLU about half
        zeros, which those kernels skip (one core's share of a 512->256 layer at batch
        128: forward 1.5x, update 1.15x, docs/benchmarks.rst).  Only while training: the
        test pass and ``evaluate`` keep the full products, so that they give the same
        bits.  If a switch fails, those made are undone before the error propagates.
        """
        cdef int s
        switched = []
        if not (_sparse_allowed and _hidden_panels_allowed) or self.dtype != np.float32 \
                or self.batch_size > SPARSE_SMALL_BATCH:
            return switched
        try:
            for s in range(1, self._n_stages):
                if self._hidden_layer_suits_panels(s) and self._switch_to_panels(s):
                    switched.append(s)
        except BaseException:
            self._dense_hidden_layers(switched)
            raise
        return switched

    def _hidden_layer_suits_panels(self, int s):
        """Whether stage s's layer should train on the kernels for zero inputs: it has
        them, is large enough to share, has mostly zero inputs, shares its input
        gradient, can be updated in their layout, and is not on them already."""
        layer = <object>self._stages[s].layer
        return (_sparse_capable(layer) and layer.unit_shares(self.dtype)[0]
                and self._zero_inputs(s) and self._input_gradient_shared(s)
                and (self._stages[s].folded or self._gradients_in_panels(s))
                and not (<Layer>self._stages[s].layer).takes_pixels())

    def _switch_to_panels(self, int s):
        """Switch stage s's layer (and its parameters, for an optimizer with state) to
        the kernels for zero inputs; returns whether it switched."""
        if not (<object>self._stages[s].layer)._sparse_inputs(True):
            return False
        if not self._stages[s].folded:
            try:
                self._panel_parameters(s)
            except BaseException:
                (<object>self._stages[s].layer)._sparse_inputs(False)
                raise
        return True

    def _zero_inputs(self, int s):
        """Whether stage s's inputs are mostly exact zeros: the activation below it says
        so (``zero_outputs``, ReLU).  On LeakyReLU's outputs, at batch 32, the kernels
        for zero inputs made a 784-512-256-10 epoch 9 % slower."""
        below = self._stages[s - 1].activation
        return below != NULL and getattr(type(<object>below), "zero_outputs", False)

    def _input_gradient_shared(self, int s):
        """Whether the threads share stage s's input gradient by columns, so that they
        also share copying its weights back from the panels (or the trainer runs one
        thread); at batch 32 thread 0 alone computes it, and the copy makes the wait of
        the other longer."""
        cdef Stage* stage = &self._stages[s]
        return self.n_threads == 1 or (
            stage.input_columns
            and <double>self.batch_size * stage.n_in * stage.n_out >= COLUMN_SHARE_MIN_PRODUCT)

    def _dense_hidden_layers(self, stages):
        """Undo :meth:`_sparse_hidden_layers` for ``stages``."""
        for s in stages:
            self._dense_layer(s)

    def _gradients_in_panels(self, int s):
        """Whether training stage s's layer on the kernels for zero inputs can go through
        the gradient: the layer computes it in its panels and a compiled optimizer
        updates them."""
        return (self._optimizer != NULL
                and "sparse_gradients" in type(<object>self._stages[s].layer).capabilities
                and self._param_start[s + 1] > self._param_start[s])

    def _panel_parameters(self, int s):
        """Point the loop at the panel layout of stage s's weights (its layer's first
        parameter): the weights, their gradient and the optimizer's state for them,
        which is copied into that layout.  The optimizer's update is element by element,
        so it gives the same bits in either layout.  :meth:`_dense_layer` undoes it."""
        cdef Param* param = &self._params[self._param_start[s]]
        cdef Optimizer optimizer = <Optimizer>self._optimizer
        cdef Py_ssize_t slot = param.slot
        weights, gradient = (<object>self._stages[s].layer)._sparse_gradients(True)
        state = optimizer._state[slot]
        panelled_state = [_panels(array) for array in state]
        self._panelled[s] = (<Py_ssize_t>param.value, <Py_ssize_t>param.grad, param.size,
                             state, panelled_state)
        self._point_state(optimizer, slot, panelled_state)
        param.value = cnp.PyArray_DATA(weights)
        param.grad = cnp.PyArray_DATA(gradient)
        param.size = weights.size

    def _point_state(self, Optimizer optimizer, Py_ssize_t slot, list arrays):
        """Make ``arrays`` the optimizer's state for parameter ``slot``."""
        cdef Py_ssize_t k
        optimizer._state[slot] = arrays
        for k in range(len(arrays)):
            optimizer._state_data[slot * optimizer.state_per_parameter + k] = \
                cnp.PyArray_DATA(arrays[k])

    def _dense_first_layer(self):
        """Switch the first layer back from its kernels for zero inputs, bringing the
        public arrays (and the optimizer's state) up to date."""
        self._dense_layer(0)

    def _dense_layer(self, int s):
        """Switch stage s's layer back from its kernels for zero inputs, bringing the
        public arrays (and the optimizer's state) up to date."""
        cdef Param* param = &self._params[self._param_start[s]]
        panelled = self._panelled.pop(s, None)
        if panelled is not None:
            value, grad, size, state, panelled_state = panelled
            for array, panels in zip(state, panelled_state):
                _unpanel(panels, array)
            self._point_state(<Optimizer>self._optimizer, param.slot, state)
            param.value = <void*><Py_ssize_t>value
            param.grad = <void*><Py_ssize_t>grad
            param.size = size
        (<Layer>self._stages[s].layer)._sparse_inputs(False)

    def _takes_pixels(self, x, bint training):
        """Whether the first layer can read the uint8 pixels of ``x`` as they are.

        Then the loop copies batches of pixels instead of converting them to floats
        (a quarter of the bytes), and evaluation reads the rows of ``x`` in place.
        Needs the ``"pixels"`` capability (and, in training, the folded update: the
        pixel kernels have no gradient-only form).
        """
        return (x.dtype == np.uint8 and self.dtype == np.float32
                and "pixels" in type(<object>self._stages[0].layer).capabilities
                and (self._stages[0].folded or not training)
                and (<Layer>self._stages[0].layer).takes_pixels())

    def _check_inputs(self, x):
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"x must have shape (n, {self.n_inputs})")
        if x.dtype != np.uint8 and x.dtype != self.dtype:
            raise TypeError(f"x must hold uint8 pixels or {self.dtype}, got {x.dtype}")

    def _check_train_args(self, x, targets, order, Py_ssize_t start, Py_ssize_t stop):
        """What train() trusts, checked at the cost of a pass over ``order[start:stop]``."""
        if self._loss == NULL or self._optimizer == NULL:
            raise RuntimeError("train() needs a trainer with a compiled loss and optimizer")
        self._check_inputs(x)
        rows = self._check_rows(len(x), order, start, stop)
        self._check_targets(targets, rows, len(x))

    def _check_rows(self, Py_ssize_t n, order, Py_ssize_t start, Py_ssize_t stop):
        """The rows ``order[start:stop]``, checked to be row numbers of n rows."""
        if not isinstance(order, np.ndarray) or order.dtype != np.int64 or order.ndim != 1:
            raise ValueError("order must be a 1-D int64 array of row numbers")
        if not 0 <= start <= stop <= len(order):
            raise ValueError("start and stop must lie within order")
        rows = order[start:stop]
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(f"order must hold row numbers in 0..{n - 1}")
        return rows

    def _check_targets(self, targets, rows, Py_ssize_t n):
        if targets.ndim == 1:
            labels = targets[rows] if len(targets) == n else None
            if labels is None or (len(labels) and (labels.min() < 0
                                                   or labels.max() >= self.n_outputs)):
                raise ValueError(f"targets must be {n} labels in 0..{self.n_outputs - 1}")
        elif targets.shape != (n, self.n_outputs) or targets.dtype != self.dtype:
            raise ValueError(f"targets must have shape ({n}, {self.n_outputs}) and dtype {self.dtype}")

    def _train(self, const pixel_t[:, ::1] x, floating[:, ::1] xbuf,
               floating[:, ::1] xbuf_next, targets, const cnp.int64_t[::1] order,
               Py_ssize_t start, Py_ssize_t stop, bint take_pixels, weights):
        cdef const cnp.int64_t[::1] labels = None
        cdef const double[::1] weight_view = weights
        cdef const double* weight_ptr = &weight_view[0] if weights is not None else NULL
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
        cdef Py_ssize_t correct = 0
        cdef Py_ssize_t* shared_correct = &correct
        cdef int n_threads = self.n_threads if self._any_split else 1
        if start >= stop:
            return 0.0
        if targets.ndim == 1:
            labels = targets
            label_ptr = &labels[0]
        else:
            dense_targets = targets
            target_ptr = &dense_targets[0, 0]
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
                if t == 0:  # the others read the count only after a barrier
                    (<Optimizer>self._optimizer).advance()
                self._forward_all(buffers[current], pixel_buffers[current], <int>m, t, team)
                if t == 0:
                    shared_total[0] += self._loss_kernel(&ybuf[0, 0], <int>m, weight_ptr,
                                                         &order[begin])
                    shared_correct[0] += self._count_rows(&ybuf[0, 0], <int>m)
                if m_next > 0 and (team == 1 or t > 0):
                    gatherer = 0 if team == 1 else t - 1
                    gatherers = 1 if team == 1 else team - 1
                    _gather_share(&x[0, 0], width, &order[begin + m], m_next, gatherer,
                                  gatherers, buffers[1 - current], pixel_buffers[1 - current])
                    # The batch after next, from memory into the caches meanwhile.
                    _prefetch_share(&x[0, 0], width, &order[begin + m + m_next],
                                    min(self.batch_size, stop - begin - m - m_next),
                                    gatherer, gatherers)
                self._backward(buffers[current], pixel_buffers[current], <int>m, t, team)
                if t == 0 and m_next > 0:  # the loss has used this batch's targets
                    _gather_targets(label_ptr, target_ptr, &order[begin + m], m_next,
                                    ybuf.shape[1], &ybuf[0, 0])
                _barrier()
                begin = begin + m
                m = m_next
                current = 1 - current
        self.correct += correct
        return total

    cdef double _loss_kernel(self, const floating* y, int m, const double* weights,
                             const cnp.int64_t* rows) noexcept nogil:
        """The compiled loss of the last stage's output against y: writes its dL/da and
        returns the loss summed over the m rows.

        With ``weights`` (else NULL), row i weighs ``weights[rows[i]]``: the loss runs
        row by row, each row's gradient scaled by its weight / m, and the weighted sum
        is returned.
        """
        cdef Stage* last = &self._stages[self._n_stages - 1]
        cdef Py_ssize_t i, j, n = last.n_out
        cdef double total = 0, row_loss
        cdef floating scale
        cdef floating* g
        if weights != NULL:
            for i in range(m):
                g = <floating*>last.g + i * n
                if floating is float:
                    row_loss = (<Loss>self._loss).value_and_gradient_f32(
                        <float*>last.a + i * n, y + i * n, g, 1, n)
                else:
                    row_loss = (<Loss>self._loss).value_and_gradient_f64(
                        <double*>last.a + i * n, y + i * n, g, 1, n)
                scale = <floating>(weights[rows[i]] / m)
                for j in range(n):
                    g[j] = g[j] * scale
                total += weights[rows[i]] * row_loss
            return total
        if floating is float:
            return (<Loss>self._loss).value_and_gradient_f32(
                <float*>last.a, y, <float*>last.g, m, last.n_out)
        else:
            return (<Loss>self._loss).value_and_gradient_f64(
                <double*>last.a, y, <double*>last.g, m, last.n_out)

    cdef Py_ssize_t _count_rows(self, const floating* y, int m) noexcept nogil:
        """How many of the last stage's m output rows have their largest entry where
        the target rows y have theirs (the label, for one-hot rows)."""
        cdef Stage* last = &self._stages[self._n_stages - 1]
        cdef Py_ssize_t i, n = last.n_out, count = 0
        for i in range(m):
            if _argmax(<floating*>last.a + i * n, n) == _argmax(y + i * n, n):
                count += 1
        return count

    cdef void _forward_all(self, floating* x, const cnp.uint8_t* pixels, int m, int t,
                           int team) noexcept nogil:
        """Forward pass, run by every thread (thread t of ``team``).

        The first layer reads ``pixels`` unless NULL, else ``x``.  A barrier follows each
        stage that is shared or feeds a shared one; a row-wise activation of a shared
        stage runs after its layer's barrier, each thread on its share of the rows.
        """
        cdef Stage* stage
        cdef floating* inputs = x
        cdef int s
        for s in range(self._n_stages):
            stage = &self._stages[s]
            if stage.forward_rows:
                _forward_row_share(stage, inputs, pixels if s == 0 else NULL,
                                   m * t // team, m * (t + 1) // team)
                inputs = <floating*>stage.a
                _barrier()
                continue
            _forward_part(stage, inputs, pixels if s == 0 else NULL, m,
                          _first_unit(stage, t, team), _first_unit(stage, t + 1, team),
                          not (stage.rowwise and stage.split))
            if stage.rowwise and stage.split:
                _barrier()
                _activation_forward_rows(stage, m * t // team, m * (t + 1) // team,
                                         <floating*>stage.z)
            inputs = <floating*>stage.a
            if stage.split or (s + 1 < self._n_stages and self._stages[s + 1].split):
                _barrier()

    cdef void _backward(self, floating* x, const cnp.uint8_t* pixels, int m, int t,
                        int team) noexcept nogil:
        """Backward pass and update, run by every thread; the caller's barrier ends it."""
        cdef int s
        for s in range(self._n_stages - 1, -1, -1):
            self._backward_stage(s, x, pixels if s == 0 else NULL, m, t, team)

    cdef void _backward_stage(self, int s, floating* x, const cnp.uint8_t* pixels, int m,
                              int t, int team) noexcept nogil:
        """Turn stage s's dL/da into dL/dz, pass dL/dx down, then update its parameters.

        dL/dx needs all of dL/dz and this step's weights, so thread 0 applies the
        activation's derivative in full and computes dL/dx first (when there is a layer
        below, or a caller that asked for it); a shared stage's update waits for that at
        a barrier, then each thread updates its share: inside the layer's product when
        the step is folded, else the layer writes its share of the gradients and the
        optimizer updates the same share of each parameter.  A small stage above a large
        one defers its folded update: the last thread computes it while thread 0
        computes dL/dx, and adds it after the large stage's barrier.  A layer with the
        "rowwise_input" capability has dL/dx computed by all threads, each on its share
        of the rows, between two barriers; one with "columnwise_input" (float32), each
        on its share of the input columns.
        """
        cdef Stage* stage = &self._stages[s]
        cdef floating* inputs = x if s == 0 else <floating*>self._stages[s - 1].a
        cdef floating* below = NULL
        cdef bint full_activation, input_rows, input_columns
        if self._defers(s, m):
            self._backward_deferred(s, m, t, team)
            return
        if s > 0:
            below = <floating*>self._stages[s - 1].g
        else:
            below = <floating*>self._gx_data
        full_activation = below != NULL or stage.rowwise
        input_rows = stage.input_rows and team > 1 and below != NULL
        input_columns = (floating is float and stage.input_columns and team > 1
                         and below != NULL and not input_rows
                         and <double>m * stage.n_in * stage.n_out >= COLUMN_SHARE_MIN_PRODUCT)
        if t == 0 and full_activation:
            _activation_backward_part(stage, <floating*>stage.g, m, 0, stage.n_units)
        if input_rows:  # every thread its share of the rows, once dL/dz is whole
            _barrier()
            _input_gradient_rows(stage, below, m * t // team, m * (t + 1) // team)
        elif input_columns:  # or of the columns
            _barrier()
            (<Layer>stage.layer).backward_input_columns_f32(
                <float*>stage.g, <float*>below, m, _first_column(stage.n_in, t, team),
                _first_column(stage.n_in, t + 1, team))
        elif t == 0 and below != NULL:
            _input_gradient_rows(stage, below, 0, m)
        if stage.split or input_rows or input_columns:  # (the update waits for every
            _barrier()                                  # reader of the weights)
        if t == team - 1 and self._defers(s + 1, m):  # (thread 0 has read the weights
            # of stage s + 1 for dL/dx before the barrier)
            (<Layer>self._stages[s + 1].layer).deferred_update_f32(NULL, NULL, m,
                                                                   self._step, True)
        self._parameter_part(s, inputs, pixels, m, not full_activation,
                             _first_unit(stage, t, team), _first_unit(stage, t + 1, team))

    cdef void _parameter_part(self, int s, floating* inputs, const cnp.uint8_t* pixels,
                              int m, bint with_activation, int lo, int hi) noexcept nogil:
        """Units lo:hi of stage s: (optionally) the activation's derivative, then the
        folded update, or the gradients and the optimizer's update of that share of each
        parameter (the gradients only, without an optimizer)."""
        cdef Stage* stage = &self._stages[s]
        cdef Param* param
        cdef int p
        cdef Py_ssize_t end
        if lo >= hi:
            return
        if with_activation:
            _activation_backward_part(stage, <floating*>stage.g, m, lo, hi)
        _parameter_rows(stage, inputs, pixels, m, stage.folded, self._step, lo, hi)
        if stage.folded or self._optimizer == NULL:
            return
        for p in range(self._param_start[s], self._param_start[s + 1]):
            param = &self._params[p]
            # the last share takes the whole tail, padding included (panel layouts)
            end = param.size if hi == stage.n_out else hi * param.unit
            if floating is float:
                (<Optimizer>self._optimizer).update_f32(
                    param.slot, <float*>param.value, <float*>param.grad,
                    lo * param.unit, end)
            else:
                (<Optimizer>self._optimizer).update_f64(
                    param.slot, <double*>param.value, <double*>param.grad,
                    lo * param.unit, end)

    cdef inline bint _defers(self, int s, int m) noexcept nogil:
        """Whether stage s defers its folded update (see _backward_stage)."""
        return (0 < s < self._n_stages and self._stages[s].defer
                and (<Layer>self._stages[s].layer).defers_update(m))

    cdef void _backward_deferred(self, int s, int m, int t, int team) noexcept nogil:
        """Stage s (float32, not shared, above a large stage): thread 0 turns dL/da into
        dL/dz and computes dL/dx; meanwhile the last thread prepares the update, which
        it applies after the stage below's barrier (_backward_stage)."""
        cdef Stage* stage = &self._stages[s]
        if t == 0:
            _activation_backward_part(stage, <float*>stage.g, m, 0, stage.n_units)
        if team > 1:
            _barrier()
        if t == 0:
            (<Layer>stage.layer).backward_input_f32(<float*>stage.g,
                                                    <float*>self._stages[s - 1].g, m)
        if t == team - 1:
            (<Layer>stage.layer).deferred_update_f32(
                <float*>self._stages[s - 1].a, <float*>stage.g, m, self._step, False)

    cdef void _forward(self, floating* x, const cnp.uint8_t* pixels, int m) noexcept nogil:
        """The forward pass alone: each large stage shared by the threads.

        The first layer reads ``pixels`` unless NULL, else ``x``."""
        cdef Stage* stage
        cdef floating* inputs = x
        cdef const cnp.uint8_t* stage_pixels
        cdef int s, t
        for s in range(self._n_stages):
            stage = &self._stages[s]
            stage_pixels = pixels if s == 0 else NULL
            if stage.split == 0 or self.n_threads == 1:
                _forward_part(stage, inputs, stage_pixels, m, 0, stage.n_units, True)
            else:
                for t in prange(self.n_threads, num_threads=self.n_threads,
                                schedule="static", chunksize=1):
                    if stage.forward_rows:
                        _forward_row_share(stage, inputs, stage_pixels,
                                           m * t // self.n_threads,
                                           m * (t + 1) // self.n_threads)
                    else:
                        _forward_part(stage, inputs, stage_pixels, m,
                                      _first_unit(stage, t, self.n_threads),
                                      _first_unit(stage, t + 1, self.n_threads),
                                      not stage.rowwise)
                if stage.rowwise and not stage.forward_rows:
                    _activation_forward_rows(stage, 0, m, <floating*>stage.z)
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

    # --- one batch at a time, between Python-written components ---------------------------

    def forward_batch(self, Py_ssize_t start, Py_ssize_t m):
        """Gather rows ``order[start:start + m]`` of the data of :meth:`epoch` and run the
        forward pass.  Returns the last stage's output rows, a view of a buffer that the
        next call overwrites."""
        x, _, order = self._epoch_data(start, m)
        if x is None:
            raise RuntimeError("forward_batch() needs an epoch() with data")
        take_pixels = self._takes_pixels(x, training=True)
        self._batch_pixels = take_pixels
        self._batch_input = None
        self._forward_gathered(x, self._x, order, start, m, take_pixels)
        self._batch_rows = m
        return self._outputs[:m]

    def _epoch_data(self, Py_ssize_t start, Py_ssize_t m):
        if self._epoch is None:
            raise RuntimeError("forward_batch() and loss_batch() run inside epoch()")
        x, targets, order = self._epoch
        if not 0 < m <= self.batch_size or not 0 <= start <= len(order) - m:
            raise ValueError(f"m must be in 1..{self.batch_size} and the rows within order")
        return self._epoch

    def forward_input(self, x):
        """Run the forward pass on the rows ``x`` (``(m, n_inputs)``, the trainer's dtype,
        C-contiguous), output of a Python-written component.  Returns the last stage's
        output rows (a view, as :meth:`forward_batch`); ``x`` is kept for the backward
        pass."""
        if (not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != self.n_inputs
                or x.dtype != self.dtype or not x.flags.c_contiguous
                or not 0 < x.shape[0] <= self.batch_size):
            raise ValueError(f"x must be a C-contiguous {self.dtype} array of shape "
                             f"(m, {self.n_inputs}) with m in 1..{self.batch_size}")
        self._batch_input = x
        self._batch_pixels = False
        self._forward_input(x, x.shape[0])
        self._batch_rows = x.shape[0]
        return self._outputs[:x.shape[0]]

    def forward_rows(self, x):
        """The forward pass alone on up to 1024 rows ``x`` (uint8 pixels or the
        trainer's dtype, C-contiguous): returns the output rows, a view of a buffer that
        the next call overwrites.  For evaluation between Python-written components."""
        self._check_inputs(x)
        if not 0 < len(x) <= self._rows or not x.flags.c_contiguous:
            raise ValueError(f"x must be C-contiguous and hold 1 to {self._rows} rows")
        self._forward_copied(x, self._x)
        return self._outputs[:len(x)]

    def _forward_copied(self, const pixel_t[:, ::1] x, floating[:, ::1] xbuf):
        cdef Py_ssize_t m = x.shape[0]
        with nogil:
            _copy_rows(&x[0, 0], m * x.shape[1], &xbuf[0, 0])
            self._forward(&xbuf[0, 0], NULL, <int>m)

    def loss_batch(self, Py_ssize_t start, Py_ssize_t m):
        """The compiled loss of the last forward pass against the targets of rows
        ``order[start:start + m]`` of :meth:`epoch`: writes dL/d output for
        :meth:`backward_batch` and returns the loss summed over the rows."""
        if self._loss == NULL:
            raise RuntimeError("this trainer has no compiled loss")
        _, targets, order = self._epoch_data(start, m)
        return self._loss_rows(targets, self._y, order, start, m, self._epoch_weights)

    def backward_batch(self, grad_output, Py_ssize_t m):
        """The backward pass of the last forward pass over its ``m`` rows.

        ``grad_output`` is dL/d output ``(m, n_outputs)`` from the Python-written code
        above, or None after :meth:`loss_batch`.  Updates the parameters with the
        compiled optimizer (or writes their gradients, without one) and returns dL/d
        input (a view, overwritten by the next call) if the trainer was made with
        ``input_gradient``, else None.
        """
        if m != self._batch_rows:
            raise ValueError(f"m must be the {self._batch_rows} rows of the last forward pass")
        if grad_output is not None:
            if (not isinstance(grad_output, np.ndarray)
                    or grad_output.shape != (m, self.n_outputs)):
                raise ValueError(f"grad_output must have shape ({m}, {self.n_outputs})")
            self._store_gradient(np.ascontiguousarray(grad_output, dtype=self.dtype))
        self._backward_rows(self._x, m)
        return self._gx[:m] if self._input_gradient else None

    def _forward_gathered(self, const pixel_t[:, ::1] x, floating[:, ::1] xbuf,
                          const cnp.int64_t[::1] order, Py_ssize_t start, Py_ssize_t m,
                          bint take_pixels):
        cdef cnp.uint8_t[:, ::1] pixels = self._pixels
        cdef cnp.uint8_t* pixel_ptr = NULL
        if take_pixels and pixel_t is cnp.uint8_t and floating is float:
            pixel_ptr = &pixels[0, 0]
        self._run_forward(&x[0, 0], x.shape[1], &order[start], m, &xbuf[0, 0], pixel_ptr)

    cdef void _run_forward(self, const pixel_t* x, Py_ssize_t width,
                           const cnp.int64_t* rows, Py_ssize_t m, floating* xbuf,
                           cnp.uint8_t* pixels) noexcept:
        cdef int t, team
        cdef int n_threads = self.n_threads if self._any_split else 1
        with nogil, parallel(num_threads=n_threads):
            t = _thread_id()
            team = _team_size()
            _gather_share(x, width, rows, m, t, team, xbuf, pixels)
            _barrier()
            self._forward_all(xbuf, pixels, <int>m, t, team)

    def _forward_input(self, floating[:, ::1] x, Py_ssize_t m):
        cdef int t, team
        cdef int n_threads = self.n_threads if self._any_split else 1
        with nogil, parallel(num_threads=n_threads):
            t = _thread_id()
            team = _team_size()
            self._forward_all(&x[0, 0], NULL, <int>m, t, team)

    def _loss_rows(self, targets, floating[:, ::1] ybuf, const cnp.int64_t[::1] order,
                   Py_ssize_t start, Py_ssize_t m, weights):
        cdef const double[::1] weight_view = weights
        cdef const double* weight_ptr = &weight_view[0] if weights is not None else NULL
        cdef Py_ssize_t correct
        cdef const cnp.int64_t[::1] labels = None
        cdef const floating[:, ::1] dense_targets = None
        cdef const cnp.int64_t* label_ptr = NULL
        cdef const floating* target_ptr = NULL
        cdef double total
        if targets.ndim == 1:
            labels = targets
            label_ptr = &labels[0]
        else:
            dense_targets = targets
            target_ptr = &dense_targets[0, 0]
        with nogil:
            _gather_targets(label_ptr, target_ptr, &order[start], m, ybuf.shape[1],
                            &ybuf[0, 0])
            total = self._loss_kernel(&ybuf[0, 0], <int>m, weight_ptr, &order[start])
            correct = self._count_rows(&ybuf[0, 0], <int>m)
        self.correct += correct
        return total

    def _store_gradient(self, const floating[:, ::1] grad):
        cdef Stage* last = &self._stages[self._n_stages - 1]
        memcpy(last.g, &grad[0, 0], grad.shape[0] * grad.shape[1] * sizeof(floating))

    def _backward_rows(self, floating[:, ::1] xbuf, Py_ssize_t m):
        cdef floating[:, ::1] inputs
        cdef cnp.uint8_t[:, ::1] pixels = self._pixels
        cdef cnp.uint8_t* pixel_ptr = NULL
        cdef int t, team
        cdef int n_threads = self.n_threads if self._any_split else 1
        if self._batch_input is not None:
            inputs = self._batch_input
        else:
            inputs = xbuf
        if self._batch_pixels and floating is float:
            pixel_ptr = &pixels[0, 0]
        with nogil, parallel(num_threads=n_threads):
            t = _thread_id()
            team = _team_size()
            self._backward(&inputs[0, 0], pixel_ptr, <int>m, t, team)


cdef inline int _first_column(int n_in, int t, int team) noexcept nogil:
    """First input column of thread t's share of dL/dx, a multiple of 8 (whole vectors);
    t = team gives n_in."""
    if t >= team:
        return n_in
    return (n_in // 8) * t // team * 8


cdef inline int _first_unit(Stage* stage, int t, int team) noexcept nogil:
    """First output unit of thread t's share of a stage, out of ``team`` threads.

    t = team gives n_units.  A stage that is not split belongs to thread 0 alone: the
    other threads get empty shares.
    """
    if not stage.split:
        return 0 if t == 0 else stage.n_units
    if t >= team:
        return stage.n_units
    return (stage.n_units * t // team) // stage.align * stage.align


cdef void _forward_part(Stage* stage, floating* inputs, const cnp.uint8_t* pixels, int m,
                        int lo, int hi, bint with_activation) noexcept nogil:
    """Units lo:hi of a stage: the layer's (from ``pixels`` unless NULL, float32
    only), then (optionally) the activation's; stage.row_block rows at a time if set."""
    cdef int first, rows
    if stage.row_block == 0 or m <= stage.row_block:
        _forward_rows(stage, inputs, pixels, 0, m, lo, hi, with_activation)
        return
    first = 0
    while first < m:
        rows = min(stage.row_block, m - first)
        _forward_rows(stage, inputs + <Py_ssize_t>first * stage.n_in,
                      pixels + <Py_ssize_t>first * stage.n_in if pixels != NULL else NULL,
                      first, rows, lo, hi, with_activation)
        first += rows


cdef inline void _forward_row_share(Stage* stage, floating* inputs,
                                    const cnp.uint8_t* pixels, int first,
                                    int last) noexcept nogil:
    """Rows first:last of a stage's forward pass, all its units and the activation (a
    thread's share of a stage whose threads share the rows)."""
    if first >= last:
        return
    _forward_rows(stage, inputs + <Py_ssize_t>first * stage.n_in,
                  pixels + <Py_ssize_t>first * stage.n_in if pixels != NULL else NULL,
                  first, last - first, 0, stage.n_units, True)


cdef void _forward_rows(Stage* stage, floating* inputs, const cnp.uint8_t* pixels,
                        int first, int m, int lo, int hi,
                        bint with_activation) noexcept nogil:
    """_forward_part on the m rows from row ``first`` of the stage's outputs (``inputs``
    and ``pixels`` point at that row)."""
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
    if stage.activation == NULL or not with_activation:
        return
    lo *= stage.unit_width  # the units' columns
    hi *= stage.unit_width
    if floating is float:
        (<Activation>stage.activation).forward_f32(z + lo, a + lo, m, hi - lo, stage.n_out)
    else:
        (<Activation>stage.activation).forward_f64(z + lo, a + lo, m, hi - lo, stage.n_out)


cdef void _activation_forward_rows(Stage* stage, int first, int last,
                                   floating* z) noexcept nogil:
    """The activation of whole rows first:last of a stage (a row-wise one); ``z`` is
    the stage's z buffer, typed."""
    cdef Py_ssize_t offset = <Py_ssize_t>first * stage.n_out
    if stage.activation == NULL or first >= last:
        return
    if floating is float:
        (<Activation>stage.activation).forward_f32(
            z + offset, <float*>stage.a + offset, last - first, stage.n_out, stage.n_out)
    else:
        (<Activation>stage.activation).forward_f64(
            z + offset, <double*>stage.a + offset, last - first, stage.n_out, stage.n_out)


cdef void _activation_backward_part(Stage* stage, floating* g, int m, int lo,
                                    int hi) noexcept nogil:
    """g *= f'(z) on the columns of units lo:hi, for the stage's activation if it has one."""
    if stage.activation == NULL or lo >= hi:
        return
    lo *= stage.unit_width
    hi *= stage.unit_width
    if floating is float:
        (<Activation>stage.activation).backward_f32(
            <float*>stage.z + lo, <float*>stage.a + lo, g + lo, m, hi - lo, stage.n_out)
    else:
        (<Activation>stage.activation).backward_f64(
            <double*>stage.z + lo, <double*>stage.a + lo, g + lo, m, hi - lo, stage.n_out)


cdef void _parameter_rows(Stage* stage, floating* inputs, const cnp.uint8_t* pixels, int m,
                          bint folded, double step, int lo, int hi) noexcept nogil:
    """Units lo:hi of the stage's layer: the folded update (from ``pixels`` unless NULL,
    float32 only), or its gradients; stage.row_block rows at a time if set (the
    gradients of later blocks added to the first's)."""
    cdef int first, rows
    cdef floating* g = <floating*>stage.g
    if stage.row_block == 0 or m <= stage.row_block:
        _layer_parameters(stage, inputs, pixels, g, m, folded, step, lo, hi, False)
        return
    first = 0
    while first < m:
        rows = min(stage.row_block, m - first)
        _layer_parameters(stage, inputs + <Py_ssize_t>first * stage.n_in,
                          pixels + <Py_ssize_t>first * stage.n_in if pixels != NULL else NULL,
                          g + <Py_ssize_t>first * stage.n_out, rows, folded, step, lo, hi,
                          first > 0)
        first += rows


cdef inline void _input_gradient_rows(Stage* stage, floating* below, int first,
                                      int last) noexcept nogil:
    """Rows first:last of dL/dx of a stage's layer into ``below``, from its dL/dz."""
    if first >= last:
        return
    if floating is float:
        (<Layer>stage.layer).backward_input_f32(
            <float*>stage.g + <Py_ssize_t>first * stage.n_out,
            below + <Py_ssize_t>first * stage.n_in, last - first)
    else:
        (<Layer>stage.layer).backward_input_f64(
            <double*>stage.g + <Py_ssize_t>first * stage.n_out,
            below + <Py_ssize_t>first * stage.n_in, last - first)


cdef inline void _layer_parameters(Stage* stage, floating* inputs, const cnp.uint8_t* pixels,
                                   floating* g, int m, bint folded, double step, int lo,
                                   int hi, bint accumulate) noexcept nogil:
    if floating is float:
        if folded and pixels != NULL:
            (<Layer>stage.layer).folded_update_pixels_f32(pixels, g, m, step, lo, hi)
        elif folded:
            (<Layer>stage.layer).folded_update_f32(inputs, g, m, step, lo, hi)
        else:
            (<Layer>stage.layer).gradient_f32(inputs, g, m, lo, hi, accumulate)
    else:
        if folded:
            (<Layer>stage.layer).folded_update_f64(inputs, g, m, step, lo, hi)
        else:
            (<Layer>stage.layer).gradient_f64(inputs, g, m, lo, hi, accumulate)


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


cdef bint _copy_checked(const pixel_t* x, Py_ssize_t count, floating* out) noexcept nogil:
    """_copy_rows, and whether every value copied is finite (pixels always are)."""
    if pixel_t is cnp.uint8_t:
        _copy_rows(x, count, out)
        return True
    return _copy_finite(x, count, out)


cdef bint _copy_inputs(const pixel_t* x, Py_ssize_t count, floating* out) noexcept nogil:
    """Copy inputs for predict(): floats as _copy_checked, pixels scaled as the model
    scales them outside the loop, ``pixel * floating(1 / 255)`` (numpy's
    ``np.multiply(x, 1 / 255, dtype=...)``, as ``load_mnist`` gives floats), so that
    predict() of pixels and of the loader's floats agree bit for bit."""
    cdef Py_ssize_t i
    cdef floating scale = <floating>(1.0 / 255)
    if pixel_t is cnp.uint8_t:
        for i in range(count):
            out[i] = <floating>x[i] * scale
        return True
    return _copy_finite(x, count, out)


cdef bint _all_finite(const floating* x, Py_ssize_t count) noexcept nogil:
    """Whether every one of ``count`` values is finite."""
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(count):
        bad |= (x[i] - x[i]) != 0  # NaN for NaN and infinity, 0 for finite values
    return bad == 0


cdef bint _copy_finite(const pixel_t* x, Py_ssize_t count, floating* out) noexcept nogil:
    """Copy floats, converting them, and return whether all are finite."""
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(count):
        out[i] = <floating>x[i]
        bad |= (x[i] - x[i]) != 0  # NaN for NaN and infinity, 0 for finite values
    return bad == 0


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

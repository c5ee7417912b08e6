from libc.stdint cimport uint8_t

cdef enum:
    # Up to this many rows Dense's own float32 kernels, one thread per share of the units,
    # beat BLAS; for larger products BLAS with its own threads measured faster
    # (docs/benchmarks.rst).  Dense reports it through Layer.unit_shares().
    SIMD_MAX_ROWS = 128


cdef class Layer:
    # Training mode (Layer.training): True while a model trains.  A layer that behaves
    # differently in training (Dropout) reads it in forward, forward_pass and its kernels.
    cdef public bint training
    # Per-sample shapes set by build() (tuples without the batch axis), or None;
    # the properties input_shape and output_shape (a subclass may define its own).
    cdef object _input_shape
    cdef object _output_shape
    # The kernel contract of compiled layers (docs/architecture.rst), called by the
    # compiled loop without the GIL.  x: (m, n_inputs) input rows, z: (m, n_outputs)
    # output rows, g: dL/dz, gx: dL/dx.  forward and the parameter kernels work on the
    # output units lo:hi only, so that threads can share a layer by output units (as
    # unit_shares() allows); a parameter's elements for those units are the range
    # [lo * unit_size, hi * unit_size) of it, flattened (unit_sizes()).
    #
    # Required, for each dtype in kernel_dtypes:
    cdef void forward_f32(self, const float* x, float* z, int m, int lo, int hi) noexcept nogil
    cdef void forward_f64(self, const double* x, double* z, int m, int lo, int hi) noexcept nogil
    cdef void backward_input_f32(self, const float* g, float* gx, int m) noexcept nogil
    cdef void backward_input_f64(self, const double* g, double* gx, int m) noexcept nogil
    # Write the gradients of units lo:hi into the gradient arrays, or add to them
    # (accumulate: the loop's later blocks of rows of one batch).
    cdef void gradient_f32(self, const float* x, const float* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil
    cdef void gradient_f64(self, const double* x, const double* g, int m, int lo, int hi,
                           bint accumulate) noexcept nogil
    #
    # Optional capabilities, each called only when the layer lists it in `capabilities`.
    # "folded_sgd": param += step * grad for units lo:hi straight from the product,
    # without writing the gradient (plain SGD's fast case).
    cdef void folded_update_f32(self, const float* x, const float* g, int m, double step,
                                int lo, int hi) noexcept nogil
    cdef void folded_update_f64(self, const double* x, const double* g, int m, double step,
                                int lo, int hi) noexcept nogil
    # "pixels": a first layer may take its inputs as uint8 pixels, each standing for
    # pixel / 255 in float32, with the same results as the float32 inputs, while
    # takes_pixels() says so (the update is the folded one).
    cdef bint takes_pixels(self) noexcept nogil
    cdef void forward_pixels_f32(self, const uint8_t* x, float* z, int m, int lo,
                                 int hi) noexcept nogil
    cdef void folded_update_pixels_f32(self, const uint8_t* x, const float* g, int m,
                                       double step, int lo, int hi) noexcept nogil
    # "deferred_update": the folded update of all outputs in two steps, so that one
    # thread can prepare it while another still reads the weights for dL/dx:
    # deferred_update_f32 with ``apply`` false computes what the update adds to the
    # weights (and may update parameters that dL/dx does not read, such as the bias);
    # with ``apply`` true (x and g unused) it adds that.  defers_update says whether the
    # layer can, for m rows; the two steps give the same bits whichever threads run them.
    cdef bint defers_update(self, int m) noexcept nogil
    cdef void deferred_update_f32(self, const float* x, const float* g, int m,
                                  double step, bint apply) noexcept nogil
    # "sparse_inputs": Python-level _sparse_inputs(enable) switches kernels for inputs
    # that are mostly zeros (with the folded update, or with _sparse_gradients(True) the
    # gradient kernels as well, in the layout of the parameters' panels).
    # "rowwise_input": backward_input may run on any block of the rows (g and gx
    # pointing at its first row), on several threads at once; the loop then shares
    # dL/dx between its threads by rows.
    # "columnwise_input" (float32): backward_input_columns_f32 writes columns lo:hi of
    # dL/dx (all m rows), with the same bits as backward_input_f32 gives them; the loop
    # then shares dL/dx between its threads by input columns.
    cdef void backward_input_columns_f32(self, const float* g, float* gx, int m, int lo,
                                         int hi) noexcept nogil
    # "rowwise_forward": forward may run on any block of the rows (x and z pointing at
    # its first row), on several threads at once; the loop then shares the forward pass
    # of a shared stage between its threads by rows instead of by units.


cdef class Dense(Layer):
    cdef readonly int in_features
    cdef readonly int out_features
    cdef readonly object dtype
    cdef object _weights, _bias, _grad_weights, _grad_bias, _input, _weights_t, _grad_t
    cdef bint _sparse           # kernels skip zero inputs, on _weights_t (_sparse_inputs)
    cdef bint _sparse_grads     # gradient_f32 writes into _grad_t (_sparse_gradients)
    cdef bint _single           # float32
    cdef void* _wt
    cdef void* _gt
    cdef void* _w
    cdef void* _b
    cdef void* _gw
    cdef void* _gb
    cdef bint _own_kernels(self, int m) noexcept nogil
    cdef float* _panels_from(self, int lo) noexcept nogil
    cdef Py_ssize_t _panel_offset(self, int lo) noexcept nogil

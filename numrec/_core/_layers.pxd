from libc.stdint cimport uint8_t

cdef enum:
    # Up to this many rows the own kernels, one thread per share of the units, beat BLAS;
    # for larger products BLAS with its own threads measured faster (benchmarks/).  Keep
    # equal to numrec.model.SPLIT_MAX_BATCH, the largest batch the loop splits.
    SIMD_MAX_ROWS = 128


cdef class Layer:
    # Kernels for compiled layers, called by the fused training loop without the GIL.
    # x: (m, n_inputs) input rows, z: (m, n_outputs) output rows, g: dL/dz, gx: dL/dx.
    # forward and gradient work on the outputs lo:hi only, so that threads can share a
    # layer by output units.  gradient: with a finite `step_scale` apply
    # param += step_scale * grad directly (plain SGD folded into the matrix product);
    # with NaN, write grad_weights/grad_bias.
    cdef void forward_f32(self, const float* x, float* z, int m, int lo, int hi) noexcept nogil
    cdef void forward_f64(self, const double* x, double* z, int m, int lo, int hi) noexcept nogil
    cdef void backward_input_f32(self, const float* g, float* gx, int m) noexcept nogil
    cdef void backward_input_f64(self, const double* g, double* gx, int m) noexcept nogil
    cdef void gradient_f32(self, const float* x, const float* g, int m,
                           double step_scale, int lo, int hi) noexcept nogil
    cdef void gradient_f64(self, const double* x, const double* g, int m,
                           double step_scale, int lo, int hi) noexcept nogil
    # A first layer may also take its inputs as uint8 pixels, each standing for
    # pixel / 255 in float32, with the same results as the float32 inputs (takes_pixels
    # says whether it can now; the gradient then needs a finite step_scale).
    cdef bint takes_pixels(self) noexcept nogil
    cdef void forward_pixels_f32(self, const uint8_t* x, float* z, int m, int lo,
                                 int hi) noexcept nogil
    cdef void gradient_pixels_f32(self, const uint8_t* x, const float* g, int m,
                                  double step_scale, int lo, int hi) noexcept nogil
    # The plain-SGD update of all outputs in two steps, so that one thread can prepare
    # it while another still reads the weights for dL/dx: deferred_update_f32 with
    # ``apply`` false computes what the update adds to the weights (and may update
    # parameters that dL/dx does not read, such as the bias); with ``apply`` true
    # (x and g unused) it adds that.  defers_update says whether the layer can, for m
    # rows; the two steps give the same bits whichever threads run them.
    cdef bint defers_update(self, int m) noexcept nogil
    cdef void deferred_update_f32(self, const float* x, const float* g, int m,
                                  double step_scale, bint apply) noexcept nogil


cdef class Dense(Layer):
    cdef readonly int in_features
    cdef readonly int out_features
    cdef readonly object dtype
    cdef object _weights, _bias, _grad_weights, _grad_bias, _input, _weights_t
    cdef bint _sparse           # kernels skip zero inputs, on _weights_t (_sparse_inputs)
    cdef bint _single           # float32
    cdef void* _wt
    cdef void* _w
    cdef void* _b
    cdef void* _gw
    cdef void* _gb
    cdef float* _panels_from(self, int lo) noexcept nogil

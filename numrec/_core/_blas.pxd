"""Row-major matrix products on top of the Fortran BLAS that SciPy ships.

A C-contiguous ``(rows, cols)`` matrix is, to column-major BLAS, its own transpose,
so ``C = A @ B.T`` in row-major is ``C.T = B @ A.T`` in column-major: the operands
swap places and the transpose flags follow.  These helpers hide that swap.
"""
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void _gemm(char* trans_a, char* trans_b, int m, int n, int k,
                       floating alpha, const floating* a, int lda,
                       const floating* b, int ldb,
                       floating beta, floating* c, int ldc) noexcept nogil:
    """Column-major ``C = alpha op(A) op(B) + beta C`` for float32 or float64."""
    if floating is float:
        sgemm(trans_a, trans_b, &m, &n, &k, &alpha, <float*>a, &lda,
              <float*>b, &ldb, &beta, c, &ldc)
    else:
        dgemm(trans_a, trans_b, &m, &n, &k, &alpha, <double*>a, &lda,
              <double*>b, &ldb, &beta, c, &ldc)


cdef inline void matmul_nt(int m, int n, int k, floating alpha,
                           const floating* a, int lda, const floating* b, int ldb,
                           floating beta, floating* c, int ldc) noexcept nogil:
    """``C (m, n) = alpha * A (m, k) @ B (n, k).T + beta * C``.

    Row-major blocks: ``lda``, ``ldb``, ``ldc`` are the row strides of A, B and C.
    """
    _gemm(b"T", b"N", n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)


cdef inline void matmul_tn(int m, int n, int k, floating alpha,
                           const floating* a, int lda, const floating* b, int ldb,
                           floating beta, floating* c, int ldc) noexcept nogil:
    """``C (m, n) = alpha * A (k, m).T @ B (k, n) + beta * C``, with row strides as above."""
    _gemm(b"N", b"T", n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)


cdef inline void matmul_nn(int m, int n, int k, floating alpha,
                           const floating* a, const floating* b,
                           floating beta, floating* c) noexcept nogil:
    """``C (m, n) = alpha * A (m, k) @ B (k, n) + beta * C``, all C-contiguous."""
    _gemm(b"N", b"N", n, m, k, alpha, b, n, a, k, beta, c, n)

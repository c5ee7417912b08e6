"""Arrays whose data start on a cache-line boundary."""
import numpy as np

CACHE_LINE = 64


def aligned_zeros(shape, dtype, alignment=CACHE_LINE):
    """Return a C-contiguous array of zeros whose data start at a multiple of ``alignment``.

    NumPy guarantees only 16-byte alignment.  With rows whose length is a multiple of 64
    bytes (784 float32 are 49 lines), aligned data let 32-byte vector loads stay within
    one cache line instead of half of them straddling two.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    raw = np.zeros(size * dtype.itemsize + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + size * dtype.itemsize].view(dtype).reshape(shape)

"""Fuzz target: the IDX reader, :func:`numrec.datasets.read_idx` (raw and gzipped).

Every input must give an array or a :class:`~numrec.datasets.DataFormatError`.
"""
import gzip
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import instrumented_imports, main, workfile  # noqa: E402

with instrumented_imports():
    import numpy as np
    from numrec.datasets import DataFormatError, read_idx

_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32, np.float32,
                                 np.float64)}


def _idx(code, shape, data):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


def seeds():
    """Valid files: each element type, one to three dimensions, raw, gzipped, gzipped in
    several members and with zero padding."""
    images = _idx(0x08, (3, 4, 4), bytes(range(48)))
    labels = _idx(0x08, (5,), bytes([1, 2, 3, 4, 5]))
    floats = _idx(0x0D, (2, 3), struct.pack(">6f", 0.5, -1, 2, 3, 4, 5))
    doubles = _idx(0x0E, (2,), struct.pack(">2d", 1.5, -2.5))
    shorts = _idx(0x0B, (2, 2), struct.pack(">4h", 1, -2, 3, -4))
    ints = _idx(0x0C, (1, 1, 1), struct.pack(">i", -7))
    raw = [images, labels, floats, doubles, shorts, ints, _idx(0x09, (0,), b"")]
    zipped = [gzip.compress(data, mtime=0) for data in raw]
    split = gzip.compress(images[:10], mtime=0) + gzip.compress(images[10:], mtime=0)
    return raw + zipped + [split, zipped[1] + b"\0" * 8]


def check(data):
    path = workfile(data)
    try:
        array = read_idx(path)
    except DataFormatError as error:
        assert str(error).startswith(path) and "\n" not in str(error), str(error)
        return
    assert isinstance(array, np.ndarray) and 1 <= array.ndim <= 32, array
    assert array.dtype in _DTYPES and array.dtype.isnative, array.dtype


if __name__ == "__main__":
    main(check, seeds, "IDX reader")

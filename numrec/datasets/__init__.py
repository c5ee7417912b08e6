"""Data sets: IDX files and the MNIST digits.

:func:`load_mnist` returns MNIST from a copy shipped with numrec (or from any directory
of MNIST-format files, such as Fashion-MNIST); :func:`read_idx` and :func:`write_idx`
read and write the IDX format itself.  This package depends on numpy only.
"""
from numrec.datasets.idx import DataFormatError, read_idx, write_idx
from numrec.datasets.mnist import MNIST_FILES, MNIST_SHA256, load_mnist

__all__ = [
    "DataFormatError", "MNIST_FILES", "MNIST_SHA256", "load_mnist", "read_idx", "write_idx",
]

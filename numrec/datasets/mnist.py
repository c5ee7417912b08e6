"""The MNIST handwritten digits, and data sets stored like them (Fashion-MNIST, ...).

numrec ships a copy of MNIST, so :func:`load_mnist` works offline and never downloads
anything.  Any directory holding the four standard file names, gzipped or raw, loads
the same way.
"""
import hashlib
import os
from importlib import resources

import numpy as np

from numrec.datasets.idx import DataFormatError, _read_idx

__all__ = ["MNIST_FILES", "MNIST_SHA256", "load_mnist"]

#: The four standard file names, in the order train images, train labels, test images,
#: test labels.  Each may also be gzipped, with ``.gz`` appended.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the uncompressed MNIST files; the bundled copy is checked against them.
MNIST_SHA256 = {
    "train-images-idx3-ubyte":
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte":
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte":
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte":
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Environment variable naming the default data directory.
DATA_ENV = "NUMREC_DATA"
_IMAGE_SHAPE = (28, 28)
_N_CLASSES = 10
_OUTPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))


def load_mnist(directory=None, *, dtype=np.float32, flatten=True):
    """Load the MNIST training and test sets.

    Parameters
    ----------
    directory : str or os.PathLike, optional
        A directory holding the four standard files ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte``, each raw or gzipped (``.gz`` appended; the raw file
        is used when both exist).  Any data set in this form loads, for example
        Fashion-MNIST.  When omitted, the directory named by the environment variable
        ``NUMREC_DATA`` is used if it is set, otherwise the copy of MNIST shipped with
        numrec, whose SHA-256 checksums are verified (:data:`MNIST_SHA256`).
    dtype : {numpy.float32, numpy.float64, numpy.uint8}, default float32
        Floating-point images are scaled from 0..255 to [0, 1]; ``uint8`` keeps the raw
        pixel values (a quarter of the memory; :class:`numrec.Sequential` accepts them
        and scales them itself).
    flatten : bool, default True
        Return images as rows of 784 pixels instead of 28 x 28 arrays.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        ``x_*`` : ndarray of ``dtype``, shape (n, 784), or (n, 28, 28) if not ``flatten``.
        ``y_*`` : ndarray of int64, shape (n,), the class labels 0 to 9.
        For MNIST, n is 60000 for training and 10000 for test.

    Raises
    ------
    FileNotFoundError
        If the directory does not exist or lacks some of the four files (all missing
        names are listed).
    DataFormatError
        If a file is not valid IDX (see :func:`read_idx`), images are not 28 x 28
        unsigned bytes, image and label counts differ, labels fall outside 0 to 9, or a
        bundled file does not match its checksum.
    TypeError
        If ``dtype`` is not one of the three above.

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()        # doctest: +SKIP
    >>> x_train.shape, x_train.dtype, y_train[:5]                  # doctest: +SKIP
    ((60000, 784), dtype('float32'), array([5, 0, 4, 1, 9]))
    """
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        out_dtype = None
    if out_dtype not in _OUTPUT_DTYPES:
        raise TypeError(f"dtype must be float32, float64 or uint8, got {dtype!r}")
    if directory is not None:
        arrays = _load_directory(os.fspath(directory))
    elif os.environ.get(DATA_ENV):
        arrays = _load_directory(os.environ[DATA_ENV], f" (from {DATA_ENV})")
    else:
        arrays = _load_bundled()
    train = _prepare(arrays[0], arrays[1], "training", out_dtype, flatten)
    test = _prepare(arrays[2], arrays[3], "test", out_dtype, flatten)
    return train, test


def _load_directory(directory, source=""):
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            raise NotADirectoryError(f"data directory {directory}{source} is not a directory")
        raise FileNotFoundError(f"data directory {directory}{source} does not exist")
    paths, missing = [], []
    for name in MNIST_FILES:
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                paths.append(path)
                break
        else:
            missing.append(f"{name}[.gz]")
    if missing:
        raise FileNotFoundError(
            f"data directory {directory}{source} lacks " + ", ".join(missing)
            + " (expected the four MNIST-format files, raw or gzipped)"
        )
    return [_checked(_read_idx(path, check=_header_check(path, name)), path, name)
            for path, name in zip(paths, MNIST_FILES)]


def _load_bundled():
    data = resources.files("numrec.datasets").joinpath("data")
    arrays = []
    for name in MNIST_FILES:
        resource = data.joinpath(name + ".gz")
        with resources.as_file(resource) as path:
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"the MNIST copy shipped with numrec is missing {name}.gz "
                    f"(looked in {os.path.dirname(path)}): reinstall numrec, or pass a "
                    f"directory or set {DATA_ENV}"
                )
            hasher = hashlib.sha256()
            array = _read_idx(path, hasher, check=_header_check(path, name))
            if hasher.hexdigest() != MNIST_SHA256[name]:
                raise DataFormatError(
                    f"{path}: the bundled MNIST file is damaged (SHA-256 of its contents is "
                    f"{hasher.hexdigest()}, expected {MNIST_SHA256[name]}): reinstall numrec"
                )
            arrays.append(_checked(array, str(path), name))
    return arrays


def _header_check(path, name):
    """A check of a file's header (dtype, shape), before its data is read."""

    def check(dtype, shape):
        _check_layout(path, name, len(shape), tuple(shape), dtype.newbyteorder("="))

    return check


def _check_layout(path, name, ndim, shape, dtype):
    if "images" in name:
        if ndim != 3 or shape[1:] != _IMAGE_SHAPE:
            raise DataFormatError(
                f"{path}: images must be a 3-D array of shape (n, 28, 28), found a "
                f"{ndim}-D array of shape {shape}"
            )
        if dtype != np.uint8:
            raise DataFormatError(
                f"{path}: images must be unsigned bytes (IDX type 0x08), found {dtype}"
            )
    else:
        if ndim != 1:
            raise DataFormatError(
                f"{path}: labels must be a 1-D array, found a {ndim}-D array of "
                f"shape {shape}"
            )
        if dtype.kind not in "iu":
            raise DataFormatError(f"{path}: labels must be integers, found {dtype}")


def _checked(array, path, name):
    """Check one file's array: images (n, 28, 28) of uint8, or labels (n,) of integers
    from 0 to 9."""
    _check_layout(path, name, array.ndim, array.shape, array.dtype)
    if "images" not in name:
        if array.size and (array.min() < 0 or array.max() >= _N_CLASSES):
            bad = np.flatnonzero((array < 0) | (array >= _N_CLASSES))
            raise DataFormatError(
                f"{path}: labels must lie in 0 to {_N_CLASSES - 1}, found {array[bad[0]]} "
                f"at index {bad[0]} ({bad.size} labels out of range)"
            )
    return _Named(array, path)


class _Named:
    """An array with the file it came from, for error messages."""

    def __init__(self, array, path):
        self.array, self.path = array, path


def _prepare(images, labels, which, dtype, flatten):
    if len(images.array) != len(labels.array):
        raise DataFormatError(
            f"the {which} set has {len(images.array)} images ({images.path}) but "
            f"{len(labels.array)} labels ({labels.path})"
        )
    x = images.array
    if flatten:
        x = x.reshape(len(x), -1)
    if dtype != np.uint8:
        x = np.multiply(x, 1 / 255, dtype=dtype)
    y = labels.array.astype(np.int64)
    return x, y

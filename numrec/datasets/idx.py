"""Reading and writing IDX files, the format of MNIST and of the data sets made like it.

An IDX file is a header followed by the array's elements in C order, big-endian:

=========  =======================================================================
bytes      meaning
=========  =======================================================================
0-1        zero
2          element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
           0x0D float32, 0x0E float64
3          number of dimensions, ``ndim``
4 ...      ``ndim`` sizes, each a big-endian unsigned 32-bit integer
then       the elements
=========  =======================================================================

Files are often gzipped (``train-images-idx3-ubyte.gz``).  :func:`read_idx` checks the
whole header against the length of the data *before* allocating the array, so a damaged
or hostile header (say, one claiming four billion images) fails at once with a
:class:`DataFormatError` instead of exhausting memory.  Gzipped data, whose length is
known only once decompressed, is bounded by a limit (``max_bytes``), and the array grows
as the data actually comes.
"""
import math
import os
import re
import struct
import sys
import zlib

import numpy as np

from numrec._files import atomic_writer
from numrec._limits import how_to_raise, limit

__all__ = ["DataFormatError", "read_idx", "write_idx"]

#: IDX element-type code -> big-endian numpy dtype of the stored elements.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dtype.kind, dtype.itemsize): code for code, dtype in IDX_DTYPES.items()}
_TYPE_NAMES = ", ".join(
    f"0x{code:02X} ({dtype.newbyteorder('=').name})" for code, dtype in IDX_DTYPES.items()
)
#: Most dimensions accepted (numpy's limit on every supported version).
MAX_NDIM = 32
_GZIP_MAGIC = b"\x1f\x8b"
#: Largest piece decompressed at once (bounds the memory a wrong header can claim).
_CHUNK = 1 << 20
#: Compressed bytes handed to the decompressor at once: what is left of them is copied
#: at the end of each gzip member, so that many small members cost linear time.
_INPUT_CHUNK = 1 << 14
#: Array capacity first allocated for gzip data, in bytes (then doubled as data comes).
_FIRST_CAPACITY = 1 << 24
_NON_ZERO = re.compile(rb"[^\x00]")
#: The largest expansion deflate can achieve (a run of one byte value), rounded up.
_MAX_DEFLATE_RATIO = 1040


class DataFormatError(ValueError):
    """A data file is malformed: its contents do not match what its format requires.

    The message names the file and the problem.
    """


def read_idx(path, *, max_bytes=None):
    """Read an IDX file, gzipped or raw, into a numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file.  Gzip-compressed files (conventionally named ``*.gz``) are recognised
        by their content and decompressed on the fly.
    max_bytes : int, optional
        The largest data a gzipped file's header may announce, in bytes (default: the
        environment variable ``NUMREC_MAX_DATA_BYTES``, else 1 GiB; MNIST's training
        images take 47 MB).  A raw file's data is bounded by the file's own size.

    Returns
    -------
    ndarray, shape (d_0, d_1, ..., d_{ndim-1})
        The array with the dimensions of the file's header, in native byte order, of
        dtype ``uint8``, ``int8``, ``int16``, ``int32``, ``float32`` or ``float64``.
        For MNIST images that is ``uint8`` of shape ``(n_images, 28, 28)``; for labels,
        ``uint8`` of shape ``(n_labels,)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DataFormatError
        If the file is empty, does not start with an IDX magic number, names an
        unknown element type, holds fewer or more data bytes than its header
        announces, announces more than ``max_bytes`` of gzipped data, or is a damaged
        gzip stream.  Header and length are checked before any array is allocated.
    ValueError
        If ``max_bytes`` is not a positive whole number.
    """
    return _read_idx(path, max_bytes=max_bytes)


def _read_idx(path, hasher=None, *, check=None, max_bytes=None):
    """:func:`read_idx`, feeding the uncompressed bytes to ``hasher`` if one is given and
    calling ``check(dtype, shape)`` on the header before any array is allocated."""
    path = os.fspath(path)
    max_bytes = limit("MAX_DATA_BYTES", max_bytes)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            raise DataFormatError(f"{path}: the file is empty")
        if file.read(2) == _GZIP_MAGIC:
            file.seek(0)
            stream = _GzipStream(file.read(), path)
            data_size = None
        else:
            file.seek(0)
            stream = file
            data_size = size
        header, dtype, shape = _read_header(stream, path, data_size)
        if check is not None:
            check(dtype, shape)
        if hasher is not None:
            hasher.update(header)
        expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if data_size is not None:
            _check_length(path, data_size - len(header), expected)
            array = np.empty(expected // dtype.itemsize, dtype=dtype)
            _read_exactly(file, array, path, expected)
            if file.read(1):  # the file grew while it was read
                raise DataFormatError(f"{path}: trailing bytes after the data")
        else:
            # The uncompressed length is unknown until the stream is read: read at most one
            # byte more than the header announces, so that a wrong header costs no memory.
            # Deflate expands at most about 1032-fold: a header announcing more than that
            # is refused before anything is allocated.  Otherwise the data is decompressed
            # straight into the array, so that it is held once in memory.
            if expected > _MAX_DEFLATE_RATIO * size:
                raise DataFormatError(
                    f"{path}: truncated data (the header announces {expected} bytes of data, "
                    f"more than a gzip file of {size} bytes can hold)"
                )
            if expected > max_bytes:
                raise DataFormatError(
                    f"{path}: the header announces {expected} bytes of data, more than the "
                    f"limit of {max_bytes} ({how_to_raise('MAX_DATA_BYTES')})"
                )
            array, filled = _read_growing(stream, dtype, expected)
            extra = stream.read(1)
            _check_length(path, filled + len(extra), expected, at_least=bool(extra))
        if hasher is not None:
            hasher.update(array)
    native = dtype.newbyteorder("=")
    if array.dtype != native:
        array = array.astype(native)
    return array.reshape(shape)


def _read_header(stream, path, data_size):
    """Read and check the header; return ``(header_bytes, dtype, shape)``."""
    magic = stream.read(4)
    if len(magic) < 4:
        what = "the file is empty" if not magic else "the file is too short for an IDX header"
        if data_size is None and not magic:
            what = "the file decompresses to nothing"
        raise DataFormatError(f"{path}: {what}")
    zero, code, ndim = magic[:2], magic[2], magic[3]
    if zero != b"\x00\x00" or code not in IDX_DTYPES:
        if zero == b"\x00\x00":
            raise DataFormatError(
                f"{path}: unknown IDX element type 0x{code:02X} (expected one of {_TYPE_NAMES})"
            )
        raise DataFormatError(
            f"{path}: not an IDX file (wrong magic number 0x{magic.hex().upper()}; an IDX "
            f"file starts with two zero bytes, a type code and the number of dimensions)"
        )
    if not 1 <= ndim <= MAX_NDIM:
        raise DataFormatError(
            f"{path}: the header gives {ndim} dimensions (expected 1 to {MAX_NDIM})"
        )
    sizes = stream.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataFormatError(
            f"{path}: truncated header (it announces {ndim} dimensions but the file ends "
            f"before their sizes)"
        )
    shape = struct.unpack(f">{ndim}I", sizes)
    dtype = IDX_DTYPES[code]
    # NumPy refuses a shape whose nonzero sizes multiply beyond its index range, even
    # with no data (a zero size): say what is wrong before it does.
    if math.prod(d for d in shape if d) * dtype.itemsize > sys.maxsize:
        raise DataFormatError(
            f"{path}: the header's dimensions {' x '.join(map(str, shape))} multiply to "
            f"more elements than any array can hold"
        )
    return magic + sizes, dtype, shape


def _check_length(path, actual, expected, at_least=False):
    if actual < expected:
        raise DataFormatError(
            f"{path}: truncated data (the header announces {expected} bytes of data, the "
            f"file holds {actual})"
        )
    if actual > expected:
        more = "more than " if at_least else ""
        raise DataFormatError(
            f"{path}: trailing bytes after the data (the header announces {expected} bytes "
            f"of data, the file holds {more}{actual})"
        )


def _read_growing(stream, dtype, expected):
    """Read up to ``expected`` bytes of ``stream``; return ``(array, count)``.

    The 1-D array starts small and doubles as the data comes, so that a header announcing
    more than the stream holds costs at most twice the data really there.  It holds the
    data if ``count == expected``; otherwise the data is too short and the array is of no
    use.
    """
    capacity = min(expected, _FIRST_CAPACITY)
    array = np.empty(capacity // dtype.itemsize, dtype=dtype)
    filled = 0
    while True:
        filled += stream.readinto(memoryview(array).cast("B")[filled:])
        if filled < capacity or capacity == expected:
            return array, filled
        capacity = min(2 * capacity, expected)
        array.resize(capacity // dtype.itemsize, refcheck=False)


def _read_exactly(file, array, path, expected):
    view = memoryview(array.reshape(-1).view(np.uint8))
    done = 0
    while done < expected:
        count = file.readinto(view[done:])
        if not count:
            raise DataFormatError(
                f"{path}: truncated data (the file ended after {done} of {expected} bytes)"
            )
        done += count


class _GzipStream:
    """Bounded reads from the bytes of a gzip file (one or more members).

    ``read(n)`` never produces more than ``n`` bytes, so reading ``expected + 1`` bytes
    detects trailing data without decompressing the rest of a large stream.  The
    compressed bytes are fed to the decompressor a small piece at a time, so that the
    input left over at the end of a member (which zlib copies) stays small: a file of
    many members takes time in proportion to its size.
    """

    def __init__(self, data, path):
        self._path = path
        self._decompressor = zlib.decompressobj(wbits=31)
        self._data = memoryview(data)
        self._position = 0       # of the first byte not yet given to the decompressor
        self._pending = b""      # input given but not yet consumed (max_length reached)

    def _next_member(self):
        """Start the next member after the end of one; False at the end of the stream."""
        self._position -= len(self._decompressor.unused_data)
        self._pending = b""
        # Zero bytes after the last member are padding, which gzip allows.
        if _NON_ZERO.search(self._data, self._position) is None:
            self._position = len(self._data)
            return False
        self._decompressor = zlib.decompressobj(wbits=31)
        return True

    def read(self, n):
        pieces = []
        need = n
        while need > 0:
            if self._decompressor.eof and not self._next_member():
                break
            if not self._pending:
                self._pending = self._data[self._position:self._position + _INPUT_CHUNK]
                self._position += len(self._pending)
            try:
                piece = self._decompressor.decompress(self._pending, min(need, _CHUNK))
            except zlib.error as error:
                raise DataFormatError(f"{self._path}: damaged gzip data ({error})") from None
            self._pending = self._decompressor.unconsumed_tail
            if (not piece and not self._pending and not self._decompressor.eof
                    and self._position >= len(self._data)):
                raise DataFormatError(
                    f"{self._path}: truncated gzip stream (the compressed data ends early)"
                )
            pieces.append(piece)
            need -= len(piece)
        return b"".join(pieces)

    def readinto(self, buffer):
        """Fill the writable byte buffer as far as the stream goes; return the count."""
        filled = 0
        while filled < len(buffer):
            piece = self.read(min(len(buffer) - filled, _CHUNK))
            if not piece:
                break
            buffer[filled:filled + len(piece)] = piece
            filled += len(piece)
        return filled


def write_idx(path, array):
    """Write an array to an IDX file, gzipped if ``path`` ends in ``.gz``.

    The file is written atomically: the data goes to a temporary file in the same
    directory, which then replaces ``path``, so a failure never leaves a partial file.
    A replaced file keeps its permission bits; a symbolic link is followed, and a device,
    a pipe or a socket is never replaced (``OSError``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced if it exists).
    array : array_like, shape (d_0, ..., d_{ndim-1})
        At least one dimension, each smaller than 2**32; dtype ``uint8``, ``int8``,
        ``int16``, ``int32``, ``float32`` or ``float64`` (other dtypes must be converted
        first, for example integer labels with ``labels.astype(np.uint8)``).

    Raises
    ------
    TypeError
        If the dtype has no IDX type code.
    ValueError
        If ``array`` is 0-dimensional, has more than 32 dimensions or a dimension
        of 2**32 or more.
    """
    path = os.fspath(path)
    array = np.asarray(array)
    code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None or array.dtype.kind not in "uif":
        raise TypeError(
            f"IDX files cannot hold dtype {array.dtype}: convert the array to one of "
            f"uint8, int8, int16, int32, float32, float64"
        )
    if not 1 <= array.ndim <= MAX_NDIM:
        raise ValueError(f"array must have 1 to {MAX_NDIM} dimensions, got {array.ndim}")
    if any(size >= 2**32 for size in array.shape):
        raise ValueError(f"every dimension must be below 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).reshape(-1).view(np.uint8)
    with atomic_writer(path) as file:
        if path.endswith(".gz"):
            import gzip

            name = os.path.basename(path)
            with gzip.GzipFile(filename=name, mode="wb", fileobj=file, compresslevel=6,
                               mtime=0) as compressed:
                compressed.write(header)
                compressed.write(data)
        else:
            file.write(header)
            file.write(data)



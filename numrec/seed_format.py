"""The seed's text model files: read and write the models of the Rust network numrec reproduces.

The seed (the Rust network of ``number_recognition``, with nalgebra matrices) saves a
model as four sections of text::

    [layers]
    [784, 64, 64, 10]

    [weights]
    [w, w, ...]
    [w, w, ...]
    [w, w, ...]

    [biases]
    [b, b, ...]
    [b, b, ...]
    [b, b, ...]

    [alpha]
    0.01

``[layers]`` lists the layer sizes, inputs first.  ``[weights]`` has one line per pair of
consecutive layers: the ``out x in`` matrix ω of that layer in nalgebra's column-major
order (column by column: all the weights from input 0, then from input 1, ...).
``[biases]`` has one line of ``out`` values per layer, and ``[alpha]`` the leaky ReLU
slope of every hidden layer.  The output activation is not in the file: the seed picks
it from its cost function (logistic sigmoid with the quadratic cost, softmax with
cross-entropy), so readers take it as an argument.

The network is ``Dense`` layers with a ``LeakyReLU(alpha)`` after every hidden one, so a
numrec :class:`~numrec.Dense` ``(in, out)`` holds ``weights`` of shape ``(out, in)`` equal
to ``np.array(values).reshape(in, out).T``.

Reading never evaluates anything: each line is matched against the grammar of a list of
decimal numbers and converted with :class:`float`, and the declared layer sizes are
checked against the size of the file before any parameter array is allocated.  Every
problem is a :class:`~numrec.ModelFileError` naming the file and the line.  Writing is
atomic, like :meth:`numrec.Sequential.save`.
"""
import os
import re
from fractions import Fraction

import numpy as np

from numrec._core._activations import LeakyReLU, Sigmoid, Softmax
from numrec._core._layers import Dense
from numrec._files import atomic_writer
from numrec.model import Sequential
from numrec.serialization import ModelFileError

__all__ = ["DEFAULT_ALPHA", "OUTPUTS", "check_seed_model", "is_seed_model", "read_seed_model",
           "write_seed_model"]

#: The output activations a seed model file can be read with: the seed's two
#: (``"softmax"`` with its cross-entropy cost, ``"sigmoid"`` with its quadratic cost) and
#: ``"none"`` for the raw scores of the last layer.
OUTPUTS = ("softmax", "sigmoid", "none")
#: The slope the seed gives its leaky ReLUs unless told otherwise; written for a model
#: without hidden layers, whose file still needs an ``[alpha]`` section.
DEFAULT_ALPHA = 0.01

_HEADER = b"[layers]"
#: Largest layer size read (the seed's sizes are ``i32``).
_MAX_LAYER_SIZE = 2**31 - 1
#: Characters allowed per value (with its separator) when reading a line: enough for any
#: float64 written without an exponent (the smallest subnormal takes 327).
_MAX_CHARS_PER_VALUE = 400
#: Longest line read where no list of parameters is expected (headers, sizes, alpha).
_MAX_SHORT_LINE = 1 << 20

_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_NUMBER_RE = re.compile(_NUMBER)
_NUMBER_CHARS = frozenset("0123456789+-.eE, \t")
_SIZE_RE = re.compile(r"[0-9]+")
_HEADER_RE = re.compile(r"\[[A-Za-z_ ]*\]")
_NON_FINITE = {"nan", "inf", "infinity"}


def is_seed_model(path):
    """Return True if the file ``path`` starts like a seed model file.

    The seed's files begin with the line ``[layers]``; nothing else is read.

    Raises
    ------
    OSError
        If the file cannot be opened (``FileNotFoundError`` if it does not exist).
    """
    with open(path, "rb") as file:
        return _is_header_line(file.readline(64))


def _is_header_line(raw):
    """Is ``raw`` (the start of a file) a complete first line ``[layers]``?"""
    if raw.endswith(b"\n"):
        return raw.rstrip(b" \t\r\n") == _HEADER
    return raw.rstrip(b" \t\r") == _HEADER  # a file holding that one line, unterminated


# --- reading -------------------------------------------------------------------------------

class _Lines:
    """The lines of an open binary file, numbered from 1, with errors naming them."""

    def __init__(self, path, file):
        self.path = path
        self.file = file
        self.number = 0

    def error(self, message, number=None):
        """A ModelFileError about line ``number`` (default: the last line read)."""
        number = self.number if number is None else number
        return ModelFileError(f"{self.path}: line {number}: {message}")

    def end(self, what):
        """The error for a file that ends before ``what``."""
        return self.error(f"the file ends before {what}", self.number + 1)

    def next(self, limit=_MAX_SHORT_LINE):
        """The next line without its line break and surrounding blanks; None at the end."""
        raw = self.file.readline(limit + 1)
        if not raw:
            return None
        self.number += 1
        if len(raw.rstrip(b"\r\n")) > limit:
            raise self.error(f"the line is longer than the {limit} characters it can "
                             f"take here")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as error:
            raise self.error(f"not plain text (byte 0x{raw[error.start]:02x} at column "
                             f"{error.start + 1})") from None
        return text.strip(" \t\r\n")

    def section(self, name, after):
        """Skip blank lines up to the header ``[name]``; ``after`` says what came before."""
        while True:
            line = self.next()
            if line is None:
                raise self.end(f"the [{name}] section")
            if line:
                break
        if line != f"[{name}]":
            if _HEADER_RE.fullmatch(line):
                found = f"the header {line}"
            elif line.startswith("["):
                found = "another line of values"
            else:
                found = _show(line)
            raise self.error(f"expected the section header [{name}] after {after}, "
                             f"found {found}")


def _show(text, width=40):
    """``text`` quoted and cut short for an error message."""
    return repr(text if len(text) <= width else text[:width] + "...")


def read_seed_model(path, *, output="softmax", dtype=np.float32):
    """Read a model saved in the seed's text format.

    Parameters
    ----------
    path : str or os.PathLike
        A file in the seed's format (see :mod:`numrec.seed_format`).
    output : {"softmax", "sigmoid", "none"}, default "softmax"
        The activation after the last layer, which the file does not record:
        ``"softmax"`` (:class:`~numrec.Softmax`, the seed's cross-entropy networks),
        ``"sigmoid"`` (:class:`numrec.Sigmoid`, its quadratic-cost networks, the one
        numrec's reference network uses) or ``"none"`` (the last layer's raw scores).
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The model's dtype.  Each decimal in the file is rounded correctly to it, so a
        float32 value written by the seed (or by :func:`write_seed_model`) is read back
        bit for bit.

    Returns
    -------
    Sequential
        ``Dense(sizes[0], sizes[1]), LeakyReLU(alpha), ..., Dense(sizes[-2], sizes[-1])``
        followed by the output activation.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file does not follow the format; the message names the file, the line and
        the problem (a missing section, a wrong count of values, a value that is not a
        number or not finite, a layer size below 1, a negative alpha, extra lines, ...).
    ValueError
        If ``output`` or ``dtype`` is not one of the accepted values.
    """
    output_cls = _output_class(output)
    dtype = _check_dtype(dtype)
    path = os.fspath(path)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        lines = _Lines(path, file)
        sizes = _read_sizes(lines, size)
        pairs = list(zip(sizes[:-1], sizes[1:]))
        n_layers = len(pairs)
        counted = f"{n_layers} {'line' if n_layers == 1 else 'lines'}"

        lines.section("weights", "the layer sizes")
        weights = []
        for index, (n_in, n_out) in enumerate(pairs, 1):
            what = f"the weights of layer {index} ({n_out} x {n_in}: out x in)"
            values = _read_values(lines, n_out * n_in, dtype, what)
            weights.append(values.reshape(n_in, n_out).T)  # nalgebra stores column-major

        lines.section("biases", f"the {counted} of weights the {len(sizes)} layer sizes "
                                f"call for")
        biases = [_read_values(lines, n_out, dtype, f"the biases of layer {index} "
                                                    f"({n_out} values)")
                  for index, (_, n_out) in enumerate(pairs, 1)]

        lines.section("alpha", f"the {counted} of biases the {len(sizes)} layer sizes "
                               f"call for")
        alpha = _read_alpha(lines)
        while True:
            line = lines.next()
            if line is None:
                break
            if line:
                raise lines.error(f"unexpected text after the alpha value: {_show(line)}")

    components = []
    for index, (w, b) in enumerate(zip(weights, biases)):
        layer = Dense(w.shape[1], w.shape[0], dtype=dtype)
        # Copied in place: the compiled layers keep pointers to their own arrays.
        layer.weights[...] = w
        layer.bias[...] = b
        components.append(layer)
        if index < n_layers - 1:
            components.append(LeakyReLU(alpha))
    if output_cls is not None:
        components.append(output_cls())
    return Sequential(components)


def _output_class(output):
    if output == "sigmoid":
        return Sigmoid
    if output == "none":
        return None
    if output == "softmax":
        return Softmax
    raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}")


def _check_dtype(dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        dtype = None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}")
    return dtype


def _read_sizes(lines, file_size):
    first = lines.file.readline(64)
    if not first:
        raise ModelFileError(f"{lines.path}: not a seed model file (the file is empty)")
    lines.number = 1
    if not _is_header_line(first):
        raise lines.error("not a seed model file (the first line must be [layers])")
    line = lines.next()
    if line is None:
        raise lines.end("the layer sizes")
    if not (line.startswith("[") and line.endswith("]")):
        raise lines.error(f"the layer sizes must be a list in square brackets such as "
                          f"[784, 256, 10], found {_show(line)}")
    inner = line[1:-1]
    tokens = [token.strip(" \t") for token in inner.split(",")] if inner.strip(" \t") else []
    sizes = []
    for position, token in enumerate(tokens, 1):
        if not _SIZE_RE.fullmatch(token):
            raise lines.error(f"layer size {position} is not a whole number: {_show(token)}")
        digits = token.lstrip("0") or "0"
        if len(digits) > 10 or int(digits) > _MAX_LAYER_SIZE:
            raise lines.error(f"layer size {position} is too large: {_show(token)}")
        size = int(digits)
        if size < 1:
            raise lines.error(f"layer sizes must be at least 1, but size {position} is {size}")
        sizes.append(size)
    if len(sizes) < 2:
        raise lines.error(f"a network needs at least 2 layer sizes (inputs and outputs), "
                          f"got {len(sizes)}")
    # Before anything is allocated: the file must be long enough to hold what the sizes
    # declare (each value takes at least one digit and one separator).
    pairs = list(zip(sizes[:-1], sizes[1:]))
    n_values = sum(n_out * n_in + n_out for n_in, n_out in pairs)
    if 2 * n_values > file_size:
        raise lines.error(
            f"the layer sizes {sizes} call for {n_values} weights and biases, more than "
            f"a file of {file_size} bytes can hold")
    return sizes


def _read_values(lines, count, dtype, what):
    """Read one line ``[v, v, ...]`` of exactly ``count`` finite values as ``dtype``."""
    line = lines.next(limit=2 + count * _MAX_CHARS_PER_VALUE)
    if line is None:
        raise lines.end(what)
    if not line:
        raise lines.error(f"expected {what}, found a blank line")
    if not (line.startswith("[") and line.endswith("]")):
        raise lines.error(f"expected {what} as a list in square brackets, found {_show(line)}")
    inner = line[1:-1]
    found = inner.count(",") + 1 if inner.strip(" \t") else 0
    if found != count:
        raise lines.error(f"{what} must have {count} values, found {found}")
    tokens = inner.split(",")
    try:
        # Within these characters, float() accepts exactly the grammar of _NUMBER.
        if not set(inner) <= _NUMBER_CHARS:
            raise ValueError
        values = np.array([float(token) for token in tokens], dtype=np.float64)
    except ValueError:
        for position, token in enumerate(tokens, 1):
            token = token.strip(" \t")
            if not _NUMBER_RE.fullmatch(token):
                if token.lower().lstrip("+-") in _NON_FINITE:
                    problem = f"is not finite: {token}"
                elif not token:
                    problem = "is empty"
                else:
                    problem = f"is not a number: {_show(token)}"
                raise lines.error(f"value {position} of {what} {problem}")
        raise lines.error(f"{what} is not a list of numbers")  # pragma: no cover
    if dtype == np.float32:
        converted = _to_float32(values, tokens)
    else:
        converted = values
    bad = np.flatnonzero(~np.isfinite(converted))
    if bad.size:
        position = int(bad[0])
        raise lines.error(f"value {position + 1} of {what} is outside the {dtype.name} "
                          f"range: {_show(tokens[position].strip(' '))}")
    return converted


def _to_float32(values, tokens):
    """Round the decimals ``tokens`` (already read as the float64 ``values``) to float32.

    Casting float64 to float32 rounds twice, and a double exactly halfway between two
    float32 may come from a decimal that is not halfway: those few are decided from the
    exact decimal, so the result is the correctly rounded float32 of every decimal, as
    the seed's own parser gives.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        single = values.astype(np.float32)
        back = single.astype(np.float64)
        toward = np.where(values > back, np.float32(np.inf), np.float32(-np.inf))
        other = np.nextafter(single, toward)
        halfway = values == (back + other.astype(np.float64)) / 2
    for index in np.flatnonzero(halfway & np.isfinite(back)):
        exact = Fraction(tokens[index].strip(" \t"))
        middle = Fraction(float(values[index]))
        if exact != middle:
            low, high = sorted((single[index], other[index]))
            single[index] = high if exact > middle else low
    return single


def _read_alpha(lines):
    line = lines.next()
    if line is None:
        raise lines.end("the alpha value")
    if not _NUMBER_RE.fullmatch(line):
        if line.lower().lstrip("+-") in _NON_FINITE:
            raise lines.error(f"alpha is not finite: {line}")
        raise lines.error(f"alpha must be one number (the leaky ReLU slope), "
                          f"found {_show(line)}")
    alpha = float(line)
    if not np.isfinite(alpha):
        raise lines.error(f"alpha is outside the float range: {_show(line)}")
    if alpha < 0:
        raise lines.error(f"alpha (the leaky ReLU slope) must be at least 0, got {line}")
    return alpha


# --- writing -------------------------------------------------------------------------------

def write_seed_model(model, path):
    """Write ``model`` to ``path`` in the seed's text format.

    The model must be what the format can describe: :class:`~numrec.Dense` layers with
    one :class:`~numrec.LeakyReLU` slope after every hidden layer, and after the last one
    :class:`~numrec.Sigmoid`, :class:`~numrec.Softmax` or nothing (the file does not record
    which: give it again when reading).  Each value is written as the shortest decimal
    that reads back to the same float32 (float64 for a float64 model), without an
    exponent, as the seed writes them.  A model without hidden layers gets the seed's
    default slope :data:`DEFAULT_ALPHA`.

    The file is written atomically: an existing file is replaced only once the new one
    is complete, and nothing is left behind if writing fails.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`~numrec.Sequential`.
    ValueError
        If the model cannot be described in the format (the message says why) or a
        parameter holds NaN or infinity.
    OSError
        If the file cannot be written.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a numrec.Sequential, got {type(model).__name__}")
    layers, alpha = _seed_structure(model)
    for index, layer in enumerate(layers, 1):
        for name, values in (("weights", layer.weights), ("bias", layer.bias)):
            if not np.isfinite(values).all():
                raise ValueError(f"cannot save the model: the {name} of Dense layer {index} "
                                 f"hold NaN or infinite values")
    sizes = [layers[0].in_features] + [layer.out_features for layer in layers]
    parts = ["[layers]\n", _format_list(sizes), "\n[weights]\n"]
    # nalgebra's column-major order: the transpose of numrec's (out, in), row by row.
    parts.extend(_format_list(np.asarray(layer.weights).T.ravel()) for layer in layers)
    parts.append("\n[biases]\n")
    parts.extend(_format_list(np.asarray(layer.bias)) for layer in layers)
    parts.append(f"\n[alpha]\n{_format_float(np.float64(alpha))}\n")
    text = "".join(parts)
    with atomic_writer(os.fspath(path)) as file:
        file.write(text.encode("ascii"))


def check_seed_model(model):
    """Raise ``ValueError``, saying why, unless :func:`write_seed_model` can write ``model``
    (its structure; its values are checked when written)."""
    _seed_structure(model)


def _format_float(value):
    return np.format_float_positional(value, unique=True, trim="-")


def _format_list(values):
    if isinstance(values, np.ndarray):
        items = [_format_float(value) for value in values]
    else:
        items = [str(value) for value in values]
    return "[" + ", ".join(items) + "]\n"


def _seed_structure(model):
    """Return the Dense layers and the hidden slope, or say why the format cannot hold it."""
    outputs = (Sigmoid, Softmax)
    what = ("the seed's text format holds only Dense layers with a LeakyReLU after each "
            "hidden one and Sigmoid, Softmax or nothing after the last")
    components = model.components
    layers, alpha, alpha_at = [], None, None
    for index, component in enumerate(components):
        kind = type(component)
        expect_dense = index % 2 == 0
        if expect_dense:
            if kind is not Dense:
                raise ValueError(
                    f"cannot save components[{index}] ({component!r}) in the seed's text "
                    f"format: expected a Dense layer there ({what})")
            layers.append(component)
            continue
        last = index == len(components) - 1
        if kind is LeakyReLU and not last:
            if alpha is not None and component.alpha != alpha:
                raise ValueError(
                    f"cannot save the model in the seed's text format: it has one leaky "
                    f"ReLU slope for all hidden layers, but components[{alpha_at}] has "
                    f"alpha {alpha} and components[{index}] has {component.alpha}")
            alpha, alpha_at = component.alpha, index
            continue
        if last and kind in outputs:
            continue
        following = components[index + 1] if not last else None
        if kind in outputs and type(following) is not Dense:
            raise ValueError(
                f"cannot save components[{index + 1}] ({following!r}) in the seed's text "
                f"format: nothing may follow the output activation components[{index}] "
                f"({what})")
        hint = " (write a ReLU as LeakyReLU(0.0))" if kind.__name__ == "ReLU" else ""
        place = "after the last Dense layer" if last else "between Dense layers"
        raise ValueError(
            f"cannot save components[{index}] ({component!r}) in the seed's text format "
            f"{place}: {what}{hint}")
    return layers, DEFAULT_ALPHA if alpha is None else alpha

"""Model files: one ``.npz`` archive holding the parameters and a JSON architecture.

A model file is a numpy ``.npz`` archive (written by :func:`numpy.savez`, uncompressed)
with these entries:

``architecture``
    A ``uint8`` array holding UTF-8 JSON::

        {"format": "numrec-model", "version": 1, "dtype": "float32",
         "components": [{"type": "Dense",
                         "config": {"in_features": 784, "out_features": 256,
                                    "dtype": "float32"}},
                        {"type": "LeakyReLU", "config": {"alpha": 0.2}},
                        ...]}

    Each component is a built-in type named in :data:`COMPONENTS`, or one registered
    with :func:`numrec.registry.register_custom`, with the arguments of its
    ``get_config()``.  An optional ``"loss"`` entry of the same form
    (``{"type": "SoftmaxCrossEntropy", "config": {}}``) names the built-in loss the model
    was trained with (:attr:`numrec.Sequential.loss`); a Python-written loss is not kept.
    An optional ``"dataset"`` entry describes the data the model was trained on
    (:attr:`numrec.Sequential.dataset`)::

        "dataset": {"name": "MNIST", "input_shape": [784], "n_classes": 10,
                    "class_names": ["0", "1", ..., "9"], "source": null}

    An optional ``"input_shape"`` entry, a list of positive integers such as
    ``[1, 28, 28]``, is the shape of one input sample (:attr:`numrec.Sequential.input_shape`),
    for which loading builds the layers again.  It is written only when it is not the
    default, ``[in_features]`` of the first layer (a dense model's files are as before).
    Files without these optional entries load as before.
``param_0``, ``param_1``, ...
    The parameter arrays in the order of :meth:`numrec.Sequential.parameters` (for each
    Dense: ``weights`` of shape ``(out_features, in_features)``, then ``bias`` of shape
    ``(out_features,)``).

:func:`load` also reads the seed's text model files (recognised by their first line,
``[layers]``), and :func:`save_model` writes one when the path ends in ``.txt``: see
:mod:`numrec.seed_format`.

Loading never runs code from the file: the archive is opened with
``allow_pickle=False``, only the built-in component types are recognised, and every
value is checked (types, shapes, dtypes, finiteness) before a model is built.  Saving is
atomic: the archive is written to a temporary file in the destination's directory and
renamed over the destination only once complete.
"""
import json
import math
import os
import struct
import tokenize
import zipfile
import zlib

import numpy as np

from numrec._core._validation import is_finite_real
from numrec._files import atomic_writer
from numrec._limits import how_to_raise, limit

from numrec.model import Sequential, check_dataset
from numrec.registry import BUILTINS, savable

__all__ = ["COMPONENTS", "FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "save_model"]

#: Value of the architecture's ``"format"`` key.
FORMAT = "numrec-model"
#: Version of the file layout written by :func:`save_model` (and the newest one read).
FORMAT_VERSION = 1
_FLOAT_NAMES = ("float32", "float64")
#: Largest JSON architecture read, in bytes.
_MAX_ARCHITECTURE_BYTES = 1 << 20
#: The largest expansion deflate can achieve (a run of one byte value), rounded up: a
#: deflated entry announcing more than this many times its compressed size lies.
_MAX_DEFLATE_RATIO = 1040
#: Entry names listed at most in an error message.
_NAMES_SHOWN = 5

#: Component type name -> how it is stored (:class:`numrec.registry.Builtin`): the
#: layers and activations of :data:`numrec.registry.BUILTINS`.
COMPONENTS = savable()


class ModelFileError(ValueError):
    """A model file is not a valid numrec model file; the message names the file."""


# --- saving ------------------------------------------------------------------------------

def save_model(model, path):
    """Save ``model`` to the file ``path`` (see :meth:`numrec.Sequential.save`).

    Parameters
    ----------
    model : Sequential
        A model made only of built-in components (see :data:`COMPONENTS`).
    path : str or os.PathLike
        The file to write, exactly as given: no suffix is added (``.npz`` is the
        conventional one).  A path ending in ``.txt`` (in any case) is written in the
        seed's text format instead (:func:`numrec.seed_format.write_seed_model`).  An
        existing file is replaced atomically: it stays intact if saving fails or is
        interrupted, and no temporary file is left behind.  It keeps its permission
        bits.  A symbolic link is followed (the file it points to is replaced); a
        device, a pipe or a socket is never replaced.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`Sequential` or holds a component that is not a
        built-in (a Python-written one, or a subclass of a built-in), which a file
        cannot describe.
    ValueError
        If a parameter holds NaN or infinity (such a file could not be loaded), or, for
        a ``.txt`` path, if the seed's format cannot describe the model (the message
        says why).
    OSError
        If the file cannot be written (the error names ``path``, not a temporary file),
        or ``path`` is a device, a pipe or a socket.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a numrec.Sequential, got {type(model).__name__}")
    path = os.fspath(path)
    if os.fsdecode(path).lower().endswith(".txt"):
        from numrec.seed_format import write_seed_model

        write_seed_model(model, path)
        return
    components = []
    for index, component in enumerate(model.components):
        kind = type(component)
        spec = savable().get(kind.__name__)
        if spec is None or kind is not spec.cls:
            raise TypeError(
                f"cannot save components[{index}] ({kind.__module__}.{kind.__qualname__}): "
                f"model files hold the built-in components {', '.join(COMPONENTS)} and "
                f"those registered with numrec.registry.register_custom"
            )
        config = component.get_config()
        components.append({"type": kind.__name__, "config": config})
    architecture = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "dtype": np.dtype(model.dtype).name,
        "components": components,
    }
    if model.input_shape is not None and model.input_shape != _default_input_shape(model):
        architecture["input_shape"] = list(model.input_shape)
    loss = model.loss
    if loss is not None and BUILTINS.get(type(loss).__name__, None) is not None \
            and BUILTINS[type(loss).__name__].cls is type(loss):
        architecture["loss"] = {"type": type(loss).__name__, "config": loss.get_config()}
    if model.dataset is not None:
        try:
            architecture["dataset"] = check_dataset(model.dataset)
        except (TypeError, ValueError) as error:
            raise ValueError(f"cannot save the model's dataset: {error}") from None
    arrays = {"architecture": np.frombuffer(
        json.dumps(architecture, allow_nan=False).encode("utf-8"), dtype=np.uint8)}
    for index, param in enumerate(model.parameters()):
        if not np.isfinite(param).all():
            raise ValueError(
                f"cannot save the model: parameter {index} holds NaN or infinite values"
            )
        arrays[f"param_{index}"] = param
    with atomic_writer(path) as file:
        np.savez(file, **arrays)


def _default_input_shape(model):
    """The input shape a model gets without one: ``(in_features,)`` of its first layer."""
    n_in = getattr(model.components[0], "in_features", None)
    return None if n_in is None else (int(n_in),)


# --- loading -----------------------------------------------------------------------------

def load(path, *, output=None, dtype=None, max_bytes=None):
    """Load a model saved by :meth:`numrec.Sequential.save`, or by the seed.

    Parameters
    ----------
    path : str or os.PathLike
        A model file: a numrec ``.npz`` file, or a text file in the seed's format
        (recognised by its first line, ``[layers]``; see :mod:`numrec.seed_format`),
        whatever its name.
    output : {"softmax", "sigmoid", "none"}, optional
        For a seed text file only, the activation after the last layer, which such a
        file does not record (default ``"softmax"``).  A ``.npz`` file records its own.
    dtype : numpy.float32 or numpy.float64, optional
        For a seed text file only, the model's dtype (default float32).
    max_bytes : int, optional
        The largest total size of the parameters a ``.npz`` file may declare, in bytes,
        checked before any parameter is read (default: the environment variable
        ``NUMREC_MAX_MODEL_BYTES``, else 256 MiB: 67 million float32 parameters).
        Loading takes about four times the parameters' size in memory: the model's
        parameters and gradients, and the values read and first drawn.

    Returns
    -------
    Sequential
        The model, with parameters bit-identical to the saved ones.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is not a valid numrec model file: empty, truncated or otherwise not
        a ``.npz`` archive, a pickle, an archive holding Python objects, a missing or
        malformed architecture, an unknown format version or component type, or
        parameters whose number, shapes, dtypes or values (NaN, infinity) do not match
        the architecture, an entry whose header announces more or less data than it
        holds, parameters larger than ``max_bytes``, an encrypted entry or one
        compressed otherwise than by deflate; or a seed text file that does not follow
        its format (the message names the line).  No code from the file is ever run.
    ValueError
        If ``output`` or ``dtype`` is given for a ``.npz`` file, or is not one of the
        accepted values, or ``max_bytes`` is not a positive whole number.
    """
    path = os.fspath(path)
    max_bytes = limit("MAX_MODEL_BYTES", max_bytes)
    with open(path, "rb") as file:
        start = file.readline(64)
        size = os.fstat(file.fileno()).st_size
    from numrec.seed_format import _is_header_line, read_seed_model

    if _is_header_line(start):
        return read_seed_model(path, output="softmax" if output is None else output,
                               dtype=np.float32 if dtype is None else dtype)
    _check_start(path, start[:8], size)
    if output is not None or dtype is not None:
        given = " and ".join(name for name, value in (("output", output), ("dtype", dtype))
                             if value is not None)
        raise ValueError(f"{path}: {given} applies only to the seed's text model files; "
                         f"a .npz model file records its own activations and dtype")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ModelFileError(f"{path}: not a numrec model file (not a .npz archive)")
            return _load_archive(path, archive, max_bytes)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            NotImplementedError, struct.error, OverflowError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ModelFileError(
            f"{path}: not a valid numrec model file (damaged or truncated archive: "
            f"{_show(' '.join(str(error).split()), width=120, quote=False)})"
        ) from None


def _check_start(path, start, size):
    """Recognise what the file is from its first bytes."""
    if size == 0:
        raise ModelFileError(f"{path}: not a numrec model file (the file is empty)")
    if start[:1] == b"\x80":  # the PROTO opcode that starts every pickle since protocol 2
        raise ModelFileError(
            f"{path}: not a numrec model file (it is a Python pickle, which is never "
            f"loaded because unpickling can run arbitrary code)"
        )
    if start.startswith(b"\x93NUMPY"):
        raise ModelFileError(
            f"{path}: not a numrec model file (it is a single .npy array, not a .npz archive)"
        )
    if not start.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ModelFileError(f"{path}: not a numrec model file (neither a .npz archive nor "
                             f"a seed text model starting with the line [layers])")


def _load_archive(path, archive, max_bytes):
    _check_entries(path, archive.zip)
    if "architecture" not in archive.files:
        raise ModelFileError(f"{path}: not a numrec model file (no 'architecture' entry)")
    architecture = _read_architecture(path, archive)
    dtype_name = architecture["dtype"]
    specs = []
    shapes = []
    for index, entry in enumerate(architecture["components"]):
        spec, config = _check_component(path, index, entry, dtype_name)
        specs.append((spec, config))
        shapes.extend(spec.parameter_shapes(config))
    total = sum(math.prod(shape) for shape in shapes) * np.dtype(dtype_name).itemsize
    if total > max_bytes:
        raise ModelFileError(
            f"{path}: the architecture's parameters take {total} bytes, more than the "
            f"limit of {max_bytes} ({how_to_raise('MAX_MODEL_BYTES')})"
        )
    expected = {"architecture"} | {f"param_{i}" for i in range(len(shapes))}
    found = set(archive.files)
    if found != expected:
        missing = sorted(expected - found, key=_entry_order)
        extra = sorted(found - expected, key=_entry_order)
        problems = []
        if missing:
            problems.append("missing " + _listing(missing))
        if extra:
            problems.append("unexpected " + _listing(extra))
        raise ModelFileError(
            f"{path}: the parameters do not match the architecture, which needs "
            f"{len(shapes)} arrays ({'; '.join(problems)})"
        )
    params = [_read_param(path, archive, index, shape, dtype_name)
              for index, shape in enumerate(shapes)]
    try:
        components = []
        position = 0
        for spec, config in specs:
            component = spec.cls(**config)
            count = len(spec.parameter_shapes(config))
            if count:
                # Copied in place: the compiled layers keep pointers to their own arrays.
                for target, value in zip(component.parameters(),
                                         params[position:position + count]):
                    target[...] = value
                position += count
            components.append(component)
        model = Sequential(components, loss=_read_loss(path, architecture.get("loss")),
                           input_shape=_read_input_shape(path, architecture))
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: inconsistent architecture ({error})") from None
    if architecture.get("dataset") is not None:
        try:
            model.dataset = check_dataset(architecture["dataset"])
        except (TypeError, ValueError) as error:
            raise ModelFileError(f"{path}: invalid 'dataset' entry ({error})") from None
    return model


def _check_entries(path, archive):
    """Refuse, before any entry is read, entries that cannot be read safely."""
    for info in archive.infolist():
        name = _show(info.filename)
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{path}: entry {name} is encrypted, which model files "
                                 f"never are")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(
                f"{path}: entry {name} is compressed with zip method {info.compress_type}; "
                f"model files hold stored or deflated entries"
            )
        if (info.compress_type == zipfile.ZIP_DEFLATED
                and info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024):
            raise ModelFileError(
                f"{path}: entry {name} announces {info.file_size} bytes, more than its "
                f"{info.compress_size} compressed bytes can hold"
            )


def _listing(names):
    """The first few of ``names``, and how many more."""
    shown = ", ".join(_show(name, quote=False) for name in names[:_NAMES_SHOWN])
    more = len(names) - _NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _show(value, width=40, quote=True):
    """A short ``repr`` of a value read from a file (which may be megabytes long)."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _entry_order(name):
    prefix, _, number = name.partition("_")
    return (prefix != "param" or not number.isdigit(), int(number) if number.isdigit() else 0,
            name)


def _read_npy_header(path, archive, name):
    """Return ``(shape, fortran_order, dtype)`` from an entry's header, without its data."""
    with archive.zip.open(name + ".npy") as member:
        version = np.lib.format.read_magic(member)
        try:
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(member)
            else:
                raise ModelFileError(
                    f"{path}: entry {name!r} uses an unsupported .npy version {version}"
                )
        except (ValueError, SyntaxError, TypeError, tokenize.TokenError) as error:
            # NumPy's parser raises TypeError too: a key of bytes among the str ones.
            raise ModelFileError(f"{path}: entry {name!r} has a damaged .npy header "
                                 f"({type(error).__name__})") from None
        header_length = member.tell()
    shape, _, dtype = header
    if not dtype.hasobject:
        # Before anything is allocated: the member must hold exactly the data its header
        # announces (a header may declare any shape).
        declared = header_length + math.prod(shape) * dtype.itemsize
        stored = archive.zip.getinfo(name + ".npy").file_size
        if stored != declared:
            raise ModelFileError(
                f"{path}: entry {name!r} announces shape {tuple(shape)} of {dtype} "
                f"({declared} bytes with its header) but holds {stored} bytes"
            )
    if dtype.hasobject:
        raise ModelFileError(
            f"{path}: not a valid numrec model file (entry {name!r} holds Python objects, "
            f"which are never loaded because unpickling can run arbitrary code)"
        )
    return header


def _read_architecture(path, archive):
    shape, _, dtype = _read_npy_header(path, archive, "architecture")
    if dtype == np.uint8 and len(shape) == 1:
        if shape[0] > _MAX_ARCHITECTURE_BYTES:
            raise ModelFileError(f"{path}: the architecture entry is too large")
        try:
            text = archive["architecture"].tobytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{path}: the architecture is not UTF-8 text") from None
    elif dtype.kind == "U" and shape == () and dtype.itemsize <= 4 * _MAX_ARCHITECTURE_BYTES:
        text = str(archive["architecture"][()])
    else:
        raise ModelFileError(
            f"{path}: the architecture entry must be UTF-8 JSON bytes (uint8) or a string, "
            f"got dtype {dtype} and shape {shape}"
        )
    try:
        architecture = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise ModelFileError(f"{path}: the architecture is not valid JSON ({error})") from None
    if not isinstance(architecture, dict):
        raise ModelFileError(f"{path}: the architecture must be a JSON object")
    if architecture.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: not a numrec model file (format is {_show(architecture.get('format'))}, "
            f"expected {FORMAT!r})"
        )
    version = architecture.get("version")
    if not (isinstance(version, int) and not isinstance(version, bool) and version >= 1):
        raise ModelFileError(f"{path}: the format version must be a positive integer, "
                             f"got {_show(version)}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format version {version} was written by a newer numrec; this one "
            f"reads versions up to {FORMAT_VERSION}"
        )
    expected_keys = {"format", "version", "dtype", "components"}
    if not expected_keys <= set(architecture) <= expected_keys | set(_OPTIONAL_KEYS):
        raise ModelFileError(
            f"{path}: the architecture must have the keys {sorted(expected_keys)} "
            f"(and optionally {', '.join(map(repr, _OPTIONAL_KEYS))}), "
            f"got {_listing(sorted(architecture))}"
        )
    if architecture["dtype"] not in _FLOAT_NAMES:
        raise ModelFileError(
            f"{path}: the model dtype must be 'float32' or 'float64', "
            f"got {_show(architecture['dtype'])}"
        )
    components = architecture["components"]
    if not isinstance(components, list) or not components:
        raise ModelFileError(f"{path}: 'components' must be a non-empty list")
    return architecture


#: Keys an architecture may hold besides the required ones.
_OPTIONAL_KEYS = ("loss", "input_shape", "dataset")


def _read_input_shape(path, architecture):
    """The architecture's ``"input_shape"``, checked, as a tuple, or None without one."""
    shape = architecture.get("input_shape")
    if shape is None:
        return None
    if (not isinstance(shape, list) or not shape or len(shape) > 8
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2 ** 31
                       for v in shape)
            or math.prod(shape) >= 2 ** 31):
        raise ModelFileError(f"{path}: 'input_shape' must be a list of positive integers "
                             f"such as [1, 28, 28], got {shape!r}")
    return tuple(shape)


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def _check_component(path, index, entry, dtype_name):
    where = f"{path}: components[{index}]"
    if not isinstance(entry, dict) or set(entry) != {"type", "config"}:
        raise ModelFileError(f"{where} must be an object with the keys 'type' and 'config'")
    name, config = entry["type"], entry["config"]
    known = savable()
    spec = known.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ModelFileError(
            f"{where} has unknown type {_show(name)} (known: {', '.join(known)}; register a "
            f"class of your own with numrec.registry.register_custom)"
        )
    if not isinstance(config, dict) or set(config) != set(spec.config):
        got = _listing(sorted(config)) if isinstance(config, dict) else type(config).__name__
        raise ModelFileError(
            f"{where} ({name}) must have a config with the keys {sorted(spec.config)}, "
            f"got {got}"
        )
    for key, check in spec.config.items():
        if not check(config[key]):
            raise ModelFileError(f"{where} ({name}) has an invalid {key}: {_show(config[key])}")
    if "dtype" in config and config["dtype"] != dtype_name:
        raise ModelFileError(
            f"{where} ({name}) has dtype {_show(config['dtype'])} but the model's is "
            f"{dtype_name!r}"
        )
    return spec, config


def _read_loss(path, entry):
    """The built-in loss an architecture's ``"loss"`` entry names, or None without one."""
    if entry is None:
        return None
    if not isinstance(entry, dict) or set(entry) != {"type", "config"}:
        raise ModelFileError(f"{path}: 'loss' must be an object with the keys 'type' and "
                             f"'config'")
    name, config = entry["type"], entry["config"]
    spec = BUILTINS.get(name) if isinstance(name, str) else None
    if spec is None or spec.kind != "loss":
        losses = [n for n, e in BUILTINS.items() if e.kind == "loss"]
        raise ModelFileError(f"{path}: unknown loss {_show(name)} (known: {', '.join(losses)})")
    if not isinstance(config, dict) or not all(map(is_finite_real, config.values())):
        raise ModelFileError(f"{path}: the config of the loss {name} must map names to "
                             f"finite numbers, got {_show(config)}")
    try:
        return spec.cls(**config)
    except (TypeError, ValueError, OverflowError) as error:
        raise ModelFileError(f"{path}: invalid config for the loss {name} ({error})") from None


def _read_param(path, archive, index, shape, dtype_name):
    name = f"param_{index}"
    found_shape, _, dtype = _read_npy_header(path, archive, name)
    if tuple(found_shape) != tuple(shape):
        raise ModelFileError(
            f"{path}: {name} has shape {tuple(found_shape)} but the architecture needs "
            f"{tuple(shape)}"
        )
    if dtype.kind != "f" or dtype.name != dtype_name:
        raise ModelFileError(
            f"{path}: {name} has dtype {dtype} but the model's dtype is {dtype_name}"
        )
    value = archive[name]
    if not np.isfinite(value).all():
        raise ModelFileError(f"{path}: {name} holds NaN or infinite values")
    return np.ascontiguousarray(value, dtype=np.dtype(dtype_name))

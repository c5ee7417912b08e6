"""Property-based tests (hypothesis) of the IDX reader and the model loader.

``tests/test_hostile_files.py`` runs this file in a subprocess, which first limits its
own address space (``resource.RLIMIT_AS``) to what it uses after start-up plus
:data:`HEADROOM`: an input that made a reader allocate what a header claims, instead of
what the file holds, would fail with ``MemoryError`` instead of passing.  The test puts a
generous time limit on the whole run, so that a hang fails too.

Each property asserts that a reader returns the right result for a valid file (and the
same array or parameters as were written) and raises only its documented error
(``DataFormatError``, ``ModelFileError``) for anything else: random bytes, truncations,
header mutations, shape lies, zip and gzip bombs.

Run it directly with ``python tests/hostile_inputs.py [idx|model] [--examples N]``.
"""
import argparse
import gzip
import io
import json
import os
import resource
import struct
import tempfile
import zipfile
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numrec
from numrec import ModelFileError
from numrec.datasets import DataFormatError, read_idx

#: Bytes the process may allocate beyond what it holds after start-up.
HEADROOM = 400 << 20
_DIR = tempfile.mkdtemp(prefix="numrec-hostile-")
_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_U32 = st.one_of(st.integers(0, 8), st.sampled_from([2**31 - 1, 2**31, 2**32 - 1]),
                 st.integers(0, 2**32 - 1))


def _file(data, name="input"):
    path = os.path.join(_DIR, name)
    with open(path, "wb") as file:
        file.write(data)
    return path


def _settings(examples):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


# --- IDX -----------------------------------------------------------------------------------

@st.composite
def idx_arrays(draw):
    """A valid IDX file's array: any element type, one to four small dimensions."""
    code = draw(st.sampled_from(sorted(_CODES)))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=4)))
    count = int(np.prod(shape))
    raw = draw(st.binary(min_size=count * np.dtype(_CODES[code]).itemsize,
                         max_size=count * np.dtype(_CODES[code]).itemsize))
    array = np.frombuffer(raw, dtype=_CODES[code]).reshape(shape)
    return code, array


def _idx_bytes(code, array):
    return (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.tobytes())


def _deflate(data, level=6):
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def _gzip_named(data, name_length):
    """A gzip member of ``data`` whose header holds a file name of ``name_length`` bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush()
    return (b"\x1f\x8b\x08\x08" + bytes(4) + b"\x02\xff" + b"n" * name_length + b"\0"
            + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF))


@st.composite
def valid_idx_files(draw):
    """``(file bytes, array)``: raw, gzipped, in several gzip members, zero-padded."""
    code, array = draw(idx_arrays())
    data = _idx_bytes(code, array)
    form = draw(st.sampled_from(["raw", "gzip", "members", "padded"]))
    if form == "gzip":
        data = _deflate(data, draw(st.integers(0, 9)))
    elif form == "members":
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        data = b"".join(_deflate(piece) for piece in pieces)
    elif form == "padded":
        data = _deflate(data) + b"\0" * draw(st.integers(1, 64))
    return data, array


@st.composite
def hostile_idx_files(draw):
    """Valid files broken in one of the ways a damaged or hostile file is."""
    data, array = draw(valid_idx_files())
    header_length = 4 + 4 * array.ndim
    kind = draw(st.sampled_from(["random", "truncate", "append", "header byte",
                                 "shape lie", "gzip of a lie", "gzip truncated",
                                 "empty members"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "truncate":
        return data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "append":
        return data + draw(st.binary(min_size=1, max_size=16))
    raw = bytes([0, 0, draw(st.sampled_from(sorted(_CODES))), array.ndim]) + \
        struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if kind == "header byte":
        at = draw(st.integers(0, header_length - 1))
        return raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1:]
    lie = tuple(draw(st.lists(_U32, min_size=1, max_size=6)))
    lied = bytes([0, 0, raw[2], len(lie)]) + struct.pack(f">{len(lie)}I", *lie) + \
        raw[header_length:]
    if kind == "shape lie":
        return lied
    if kind == "gzip of a lie":
        return _deflate(lied)
    if kind == "gzip truncated":
        zipped = _deflate(raw)
        return zipped[:draw(st.integers(1, len(zipped) - 1))]
    empty = _deflate(b"")
    return empty * draw(st.integers(1, 2000)) + _deflate(raw)


@st.composite
def gzip_bombs(draw):
    """Images (n, 28, 28) announced up to what the file's size lets deflate hold (a long
    name in the gzip header makes the file large), followed by fewer zeros or none."""
    padding = draw(st.sampled_from([0, 1000, 100_000, 600_000]))
    most = 1000 * (padding + 1000) // 784
    n = max(1, int(most * draw(st.sampled_from([1.0, 0.9, 0.5, 0.01]))))
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28)
    return _gzip_named(header + bytes(draw(st.sampled_from([0, 1000, 1 << 20]))), padding)


def _read_idx_or_error(data):
    path = _file(data)
    try:
        return read_idx(path)
    except DataFormatError as error:
        message = str(error)
        assert message.startswith(path) and "\n" not in message, message
        return None


def property_idx_valid_files_read_back(examples):
    @_settings(examples)
    @given(valid_idx_files())
    def valid_files_read_back(case):
        data, array = case
        result = read_idx(_file(data))
        assert result.dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(result, array)

    valid_files_read_back()
    return examples


def property_idx_hostile_files_give_data_format_errors(examples):
    @_settings(examples)
    @given(hostile_idx_files())
    def hostile_files(data):
        result = _read_idx_or_error(data)
        assert result is None or isinstance(result, np.ndarray)

    hostile_files()
    return examples


def property_idx_gzip_bombs(examples):
    @_settings(min(examples, 60))
    @given(gzip_bombs())
    def bombs(data):
        assert _read_idx_or_error(data) is None   # none holds the data it announces

    bombs()
    return min(examples, 60)


def property_idx_random_bytes(examples):
    @_settings(examples)
    @given(st.one_of(st.binary(max_size=200),
                     st.binary(max_size=200).map(lambda b: b"\0\0\x08\x03" + b),
                     st.binary(max_size=200).map(lambda b: gzip.compress(b, mtime=0)),
                     st.binary(max_size=200).map(lambda b: b"\x1f\x8b" + b)))
    def random_bytes(data):
        _read_idx_or_error(data)

    random_bytes()
    return examples


# --- model files ---------------------------------------------------------------------------

def _model_file(seed=0, dtype=np.float32):
    model = numrec.Sequential([numrec.Dense(3, 4, seed=seed, dtype=dtype),
                               numrec.LeakyReLU(0.2),
                               numrec.Dense(4, 2, seed=seed + 1, dtype=dtype),
                               numrec.Sigmoid()])
    path = os.path.join(_DIR, "source.npz")
    model.save(path)
    with open(path, "rb") as file:
        return file.read(), model


def _members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info.filename) for info in archive.infolist()}


def _zipped(members, deflated=()):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content, zipfile.ZIP_DEFLATED if name in deflated
                             else zipfile.ZIP_STORED)
    return out.getvalue()


def _npy_header(shape, descr="<f4", fortran=False):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return out.getvalue()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12)
_SHAPES = st.lists(st.one_of(st.integers(0, 6), st.sampled_from([2**31, 2**63, 2**64]),
                             st.integers(0, 2**70)), max_size=4).map(tuple)
_DESCRS = st.sampled_from(["<f4", ">f4", "<f8", "<f2", "<i4", "|u1", "<c8", "|b1", "|V4",
                           "<U3", "|S2", "<M8[s]", "|O"])


@st.composite
def hostile_model_files(draw):
    """A valid small model file changed in one of the ways a damaged or hostile one is."""
    data, _ = _model_file(draw(st.integers(0, 3)), draw(st.sampled_from([np.float32,
                                                                          np.float64])))
    members = _members(data)
    names = sorted(members)
    kind = draw(st.sampled_from(["flip", "truncate", "architecture value", "architecture",
                                 "shape lie", "dtype", "header bytes", "zip bomb", "extra",
                                 "missing", "random"]))
    if kind == "flip":
        data = bytearray(data)
        for at, bits in draw(st.lists(st.tuples(st.integers(0, len(data) - 1),
                                                st.integers(1, 255)), min_size=1, max_size=4)):
            data[at] ^= bits
        return bytes(data)
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "random":
        return b"PK\x03\x04" + draw(st.binary(max_size=400))
    if kind in ("architecture value", "architecture"):
        architecture = json.loads(np.load(io.BytesIO(members["architecture.npy"])).tobytes())
        if kind == "architecture":
            architecture = draw(_JSON)
        else:
            target = draw(st.sampled_from(["top", "component", "config"]))
            component = architecture["components"][draw(st.integers(0, 3))]
            where = {"top": architecture, "component": component,
                     "config": component["config"]}[target]
            key = draw(st.sampled_from(sorted(where) + ["extra"]))
            where[key] = draw(_JSON)
        text = json.dumps(architecture).encode()
        out = io.BytesIO()
        np.save(out, np.frombuffer(text, dtype=np.uint8))
        members["architecture.npy"] = out.getvalue()
        return _zipped(members)
    name = draw(st.sampled_from(names))
    content = members[name]
    stream = io.BytesIO(content)
    np.lib.format.read_magic(stream)
    np.lib.format.read_array_header_1_0(stream)
    header_length = stream.tell()
    body = content[header_length:]
    if kind == "shape lie":
        members[name] = _npy_header(draw(_SHAPES), "<f4", draw(st.booleans())) + body
    elif kind == "dtype":
        members[name] = _npy_header((len(body) // 4,), draw(_DESCRS)) + body
    elif kind == "header bytes":
        header = bytearray(content[:header_length])
        at = draw(st.integers(0, len(header) - 1))
        header[at] = draw(st.integers(0, 255))
        members[name] = bytes(header) + body
    elif kind == "zip bomb":  # a deflated member: a huge shape, then zeros
        shape = draw(st.sampled_from([(1000, 1000), (100000, 100000), (784, 250000)]))
        members[name] = _npy_header(shape) + bytes(draw(st.integers(0, 4 << 20)))
        return _zipped(members, deflated={name})
    elif kind == "extra":
        for index in range(draw(st.integers(1, 200))):
            members[f"junk_{index}.npy"] = b""
    elif kind == "missing":
        del members[name]
    return _zipped(members, deflated=set(draw(st.lists(st.sampled_from(names)))))


def _load_or_error(data):
    path = _file(data, "model.npz")
    try:
        return numrec.load(path)
    except ModelFileError as error:
        message = str(error)
        assert message.startswith(path) and "\n" not in message, message
        assert len(message) < 1000, message
        return None


def property_model_valid_files_load_back(examples):
    @_settings(examples)
    @given(st.integers(0, 50), st.sampled_from([np.float32, np.float64]),
           st.lists(st.sampled_from(["architecture.npy", "param_0.npy", "param_1.npy",
                                     "param_2.npy", "param_3.npy"]), unique=True))
    def valid_files(seed, dtype, deflated):
        data, model = _model_file(seed, dtype)
        loaded = numrec.load(_file(_zipped(_members(data), deflated=set(deflated)),
                                   "model.npz"))
        for saved, read in zip(model.parameters(), loaded.parameters()):
            np.testing.assert_array_equal(saved, read)

    valid_files()
    return examples


def property_model_hostile_files_give_model_file_errors(examples):
    @_settings(examples)
    @given(hostile_model_files())
    def hostile_files(data):
        model = _load_or_error(data)
        if model is not None:
            assert isinstance(model, numrec.Sequential)
            model.predict(np.zeros((1, model.n_inputs), dtype=model.dtype))

    hostile_files()
    return examples


PROPERTIES = {
    "idx": [property_idx_valid_files_read_back,
            property_idx_hostile_files_give_data_format_errors, property_idx_gzip_bombs,
            property_idx_random_bytes],
    "model": [property_model_valid_files_load_back,
              property_model_hostile_files_give_model_file_errors],
}


def limit_memory(headroom=HEADROOM):
    """Limit the address space to what the process holds now plus ``headroom``."""
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status
                    if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, size + headroom))
    return size + headroom


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reader", choices=sorted(PROPERTIES))
    parser.add_argument("--examples", type=int, default=150,
                        help="examples per property (default 150)")
    args = parser.parse_args(argv)
    _read_idx_or_error(_idx_bytes(0x08, np.zeros(3, np.uint8)))   # warm up before the limit
    _load_or_error(_model_file()[0])
    limit = limit_memory()
    for prop in PROPERTIES[args.reader]:
        count = prop(args.examples)
        print(f"{prop.__name__}: {count} examples passed "
              f"(address space limited to {limit >> 20} MiB)", flush=True)


if __name__ == "__main__":
    main()

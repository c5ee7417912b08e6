"""IDX reading and writing, and the MNIST loader."""
import gzip
import os
import struct

import numpy as np
import pytest

import numrec
from numrec.datasets import (
    MNIST_FILES, MNIST_SHA256, DataFormatError, load_mnist, read_idx, write_idx,
)
from numrec.datasets import mnist as mnist_module

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def header(code, *shape):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def write_bytes(path, data, gz=False):
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# --- IDX round trips -----------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", IDX_DTYPES)
def test_round_trip_every_dtype(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        array = rng.standard_normal((3, 4, 5)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True, dtype=dtype)
    path = tmp_path / f"array-idx3{suffix}"
    write_idx(path, array)
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    assert result.shape == (3, 4, 5)
    np.testing.assert_array_equal(result, array)
    assert result.flags.c_contiguous and result.flags.writeable


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (2, 3), (0, 28, 28), (1, 1, 1, 1)])
def test_round_trip_shapes(tmp_path, shape, suffix):
    array = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    write_idx(str(tmp_path / f"a{suffix}"), array)
    result = read_idx(str(tmp_path / f"a{suffix}"))
    assert result.shape == shape
    np.testing.assert_array_equal(result, array)


def test_written_bytes_follow_the_format(tmp_path):
    write_idx(tmp_path / "a", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16))
    expected = header(0x0B, 2, 3) + struct.pack(">6h", 1, 2, 3, 4, 5, 6)
    assert (tmp_path / "a").read_bytes() == expected
    write_idx(tmp_path / "a.gz", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16))
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == expected


def test_gzip_is_recognised_by_content_and_members_may_be_concatenated(tmp_path):
    data = header(0x08, 6) + bytes(range(6))
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(data[:7]) + gzip.compress(data[7:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(6, dtype=np.uint8))


def test_write_rejects_what_idx_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="bool"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=bool))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "a", np.float32(1.0))
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_atomically(tmp_path):
    path = tmp_path / "a.gz"
    write_idx(path, np.zeros(3, dtype=np.uint8))
    write_idx(path, np.ones(4, dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(path), np.ones(4, dtype=np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.gz"]


# --- malformed IDX files -------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nothing-here"
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_empty_file(tmp_path, gz):
    path = write_bytes(tmp_path / "empty", b"", gz)
    with pytest.raises(DataFormatError, match=r"empty.*|.*decompresses to nothing") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_data_format_error_is_a_value_error():
    assert issubclass(DataFormatError, ValueError)


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic(tmp_path, gz):
    path = write_bytes(tmp_path / "bad", b"\x01\x02\x08\x01" + b"\x00" * 8, gz)
    with pytest.raises(DataFormatError, match="wrong magic number 0x01020801") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_unknown_dtype_code(tmp_path, gz):
    path = write_bytes(tmp_path / "bad", header(0x0A, 2) + b"\x00\x00", gz)
    with pytest.raises(DataFormatError, match="unknown IDX element type 0x0A"):
        read_idx(path)


def test_zero_dimensions(tmp_path):
    path = write_bytes(tmp_path / "bad", b"\x00\x00\x08\x00")
    with pytest.raises(DataFormatError, match="0 dimensions"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_header(tmp_path, gz):
    path = write_bytes(tmp_path / "bad", header(0x08, 5, 5)[:9], gz)
    with pytest.raises(DataFormatError, match="truncated header"):
        read_idx(path)
    path = write_bytes(tmp_path / "bad", b"\x00\x00", gz)
    with pytest.raises(DataFormatError, match="too short"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data(tmp_path, gz):
    path = write_bytes(tmp_path / "bad", header(0x0C, 2, 3) + b"\x00" * 23, gz)
    with pytest.raises(DataFormatError, match=r"truncated data.*24 bytes.*holds 23") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_stream(tmp_path):
    compressed = gzip.compress(header(0x08, 1000) + os.urandom(1000))
    path = write_bytes(tmp_path / "bad.gz", compressed[: len(compressed) // 2])
    with pytest.raises(DataFormatError, match="truncated"):
        read_idx(path)


def test_damaged_gzip_stream(tmp_path):
    compressed = bytearray(gzip.compress(header(0x08, 1000) + bytes(1000)))
    compressed[12:20] = b"\xff" * 8
    path = write_bytes(tmp_path / "bad.gz", bytes(compressed))
    with pytest.raises(DataFormatError, match="gzip"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes(tmp_path, gz):
    path = write_bytes(tmp_path / "bad", header(0x08, 2, 2) + b"\x01" * 5, gz)
    with pytest.raises(DataFormatError, match="trailing bytes") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_huge_header_fails_before_allocating(tmp_path, gz):
    # Four billion 28 x 28 images would be about 3 TB: the reader must not try.
    path = write_bytes(tmp_path / "huge", header(0x08, 4_000_000_000, 28, 28) + b"\x00" * 100, gz)
    with pytest.raises(DataFormatError, match="truncated data"):
        read_idx(path)


def test_huge_header_in_large_gzip_reads_bounded_amounts(tmp_path):
    # Data that does not end where the header says is rejected after reading at most one
    # byte more than announced, however much follows.
    path = write_bytes(tmp_path / "big", header(0x08, 10) + bytes(5_000_000), gz=True)
    with pytest.raises(DataFormatError, match=r"trailing bytes.*more than 11"):
        read_idx(path)


# --- MNIST from a directory -----------------------------------------------------------------

def make_mnist_dir(directory, n_train=12, n_test=5, gz=(True, False, True, False), seed=0,
                   images=None, labels=None):
    """Write four small MNIST-format files; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    ]
    arrays[0][0, 0, 0], arrays[0][0, 0, 1] = 0, 255
    if images is not None:
        arrays[0] = images
    if labels is not None:
        arrays[1] = labels
    directory.mkdir(exist_ok=True)
    for name, array, zipped in zip(MNIST_FILES, arrays, gz):
        write_idx(directory / (name + (".gz" if zipped else "")), array)
    return arrays


@pytest.mark.parametrize("gz", [(True,) * 4, (False,) * 4, (True, False, False, True)])
def test_load_from_directory(tmp_path, gz):
    arrays = make_mnist_dir(tmp_path / "data", gz=gz)
    (x_train, y_train), (x_test, y_test) = load_mnist(tmp_path / "data")
    assert x_train.shape == (12, 784) and x_test.shape == (5, 784)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    np.testing.assert_array_equal(x_train, arrays[0].reshape(12, 784) * np.float32(1 / 255))
    np.testing.assert_array_equal(y_train, arrays[1])
    np.testing.assert_array_equal(y_test, arrays[3])
    np.testing.assert_allclose(x_test * 255, arrays[2].reshape(5, 784), atol=1e-4)


def test_load_options(tmp_path):
    arrays = make_mnist_dir(tmp_path)
    (x_train, _), (x_test, _) = load_mnist(str(tmp_path), dtype=np.uint8, flatten=False)
    assert x_train.dtype == np.uint8 and x_train.shape == (12, 28, 28)
    np.testing.assert_array_equal(x_train, arrays[0])
    x_train[0, 0, 0] = 7  # the arrays belong to the caller
    (x64, _), _ = load_mnist(tmp_path, dtype=np.float64)
    assert x64.dtype == np.float64
    np.testing.assert_allclose(x64, arrays[0].reshape(12, 784) / 255.0)
    with pytest.raises(TypeError, match="dtype"):
        load_mnist(tmp_path, dtype=np.int32)


def test_uint8_images_train_like_float_ones(tmp_path):
    # The loader's scaling and the model's own scaling of uint8 input agree exactly.
    make_mnist_dir(tmp_path)
    (x_float, _), _ = load_mnist(tmp_path)
    (x_bytes, _), _ = load_mnist(tmp_path, dtype=np.uint8)
    model = numrec.mnist_mlp(seed=0)
    np.testing.assert_array_equal(model.predict(x_float), model.predict(x_bytes))


def test_raw_file_preferred_when_both_exist(tmp_path):
    arrays = make_mnist_dir(tmp_path, gz=(False,) * 4)
    write_idx(tmp_path / (MNIST_FILES[1] + ".gz"), np.zeros(12, dtype=np.uint8))
    (_, y_train), _ = load_mnist(tmp_path)
    np.testing.assert_array_equal(y_train, arrays[1])


def test_environment_variable(tmp_path, monkeypatch):
    arrays = make_mnist_dir(tmp_path / "env", n_train=3, n_test=2)
    monkeypatch.setenv("NUMREC_DATA", str(tmp_path / "env"))
    (x_train, y_train), (x_test, _) = load_mnist()
    assert x_train.shape == (3, 784) and x_test.shape == (2, 784)
    np.testing.assert_array_equal(y_train, arrays[1])
    # An explicit directory wins over the environment.
    make_mnist_dir(tmp_path / "arg", n_train=4, n_test=1)
    (x_train, _), _ = load_mnist(tmp_path / "arg")
    assert x_train.shape == (4, 784)
    monkeypatch.setenv("NUMREC_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="absent .from NUMREC_DATA. does not exist"):
        load_mnist()


def test_missing_files_are_listed(tmp_path):
    make_mnist_dir(tmp_path)
    os.remove(tmp_path / (MNIST_FILES[0] + ".gz"))
    os.remove(tmp_path / MNIST_FILES[3])
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert MNIST_FILES[0] in message and MNIST_FILES[3] in message
    assert MNIST_FILES[1] not in message and MNIST_FILES[2] not in message


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "absent")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        load_mnist(tmp_path / "file")


def test_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path, labels=np.zeros(11, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="training set has 12 images .* but 11 labels"):
        load_mnist(tmp_path)


def test_labels_out_of_range(tmp_path):
    labels = np.zeros(12, dtype=np.uint8)
    labels[4] = 10
    make_mnist_dir(tmp_path, labels=labels)
    with pytest.raises(DataFormatError, match="labels must lie in 0 to 9, found 10 at index 4"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("images, found", [
    (np.zeros((12, 784), dtype=np.uint8), r"2-D array of shape \(12, 784\)"),
    (np.zeros((12, 32, 32), dtype=np.uint8), r"3-D array of shape \(12, 32, 32\)"),
    (np.zeros((12, 28, 28), dtype=np.float32), "unsigned bytes .* found float32"),
])
def test_images_of_the_wrong_form(tmp_path, images, found):
    make_mnist_dir(tmp_path, images=images)
    with pytest.raises(DataFormatError, match=found) as info:
        load_mnist(tmp_path)
    assert MNIST_FILES[0] in str(info.value)


def test_malformed_file_in_directory(tmp_path):
    make_mnist_dir(tmp_path, gz=(False,) * 4)
    path = tmp_path / MNIST_FILES[2]
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataFormatError, match="truncated data") as info:
        load_mnist(tmp_path)
    assert str(path) in str(info.value)


# --- the bundled copy of MNIST -----------------------------------------------------------

@pytest.fixture(scope="module")
def bundled():
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("NUMREC_DATA", raising=False)
        return load_mnist(dtype=np.uint8)


def test_bundled_mnist(bundled):
    (x_train, y_train), (x_test, y_test) = bundled
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert x_train.max() == 255 and x_train.min() == 0
    assert np.bincount(y_train).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]


def test_bundled_mnist_as_floats(bundled, monkeypatch):
    monkeypatch.delenv("NUMREC_DATA", raising=False)
    (x_train, y_train), (x_test, y_test) = numrec.datasets.load_mnist()
    assert x_train.shape == (60000, 784) and x_train.dtype == np.float32
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    np.testing.assert_array_equal(x_test, bundled[1][0] * np.float32(1 / 255))
    np.testing.assert_array_equal(y_test, bundled[1][1])


def test_bundled_checksums_are_verified(monkeypatch):
    monkeypatch.delenv("NUMREC_DATA", raising=False)
    monkeypatch.setitem(mnist_module.MNIST_SHA256, MNIST_FILES[0], "0" * 64)
    with pytest.raises(DataFormatError, match=f"{MNIST_FILES[0]}.*damaged.*SHA-256"):
        load_mnist()


def test_checksums_match_the_design_notes():
    assert MNIST_SHA256 == {
        "train-images-idx3-ubyte":
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte":
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte":
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte":
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }


@pytest.mark.parametrize("sizes", [(0, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF,) * 3])
def test_a_header_beyond_any_array_is_refused_by_name(tmp_path, sizes):
    """Dimensions whose product no array can hold (even with a zero among them)."""
    import struct
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08" + bytes([len(sizes)]) + struct.pack(">3I", *sizes))
    with pytest.raises(DataFormatError, match="huge-idx3-ubyte: the header's dimensions "
                                              r".* more elements than any array can hold"):
        read_idx(path)

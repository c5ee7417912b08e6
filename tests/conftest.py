"""Shared fixtures: the reference network's worked example and the MNIST files."""
import gzip
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import numrec
from numrec.datasets import MNIST_FILES, load_mnist, write_idx

#: The genuine MNIST files (gzipped IDX) live in ``shared/mnist`` beside the repository.
MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "mnist"


# The 3 -> 2 -> 3 example of number_recognition's README ("Testing data").
SEED_EXAMPLE = {
    "w1": [[-0.75, 0.5, -0.25], [0.25, -0.5, 0.75]],
    "b1": [0.0, 1.0],
    "w2": [[-0.75, 0.75], [0.5, -0.5], [-0.25, 0.25]],
    "b2": [0.75, 0.5, 0.25],
    "x": [[0.25, 0.5, 0.75]],
    "y": [[0.0, 1.0, 0.0]],
    "alpha": 0.2,
}


@pytest.fixture
def seed_example():
    """The worked example's parameters, input and target as float64 arrays."""
    return {
        key: (np.array(value, dtype=np.float64) if key != "alpha" else value)
        for key, value in SEED_EXAMPLE.items()
    }


@pytest.fixture
def seed_network(seed_example):
    """Build the worked example's network (Dense, LeakyReLU(0.2), Dense, Sigmoid)."""

    def build(dtype=np.float64):
        first = numrec.Dense(3, 2, dtype=dtype)
        second = numrec.Dense(2, 3, dtype=dtype)
        first.weights = seed_example["w1"].astype(dtype)
        first.bias = seed_example["b1"].astype(dtype)
        second.weights = seed_example["w2"].astype(dtype)
        second.bias = seed_example["b2"].astype(dtype)
        return numrec.Sequential(
            [first, numrec.LeakyReLU(seed_example["alpha"]), second, numrec.Sigmoid()]
        )

    return build


def read_idx(path):
    """Read a gzipped IDX file of unsigned bytes into an array of its declared shape."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    shape = tuple(
        int.from_bytes(data[4 + 4 * axis:8 + 4 * axis], "big") for axis in range(ndim)
    )
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"{path}: {len(data) - offset} bytes of data for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


@pytest.fixture(scope="session")
def mnist():
    """``((x_train, y_train), (x_test, y_test))``: uint8 rows of 784 pixels, uint8 labels.

    Read by this file's own IDX reader from the genuine files beside the repository when
    they are there, else from the copy inside the installed package.
    """
    names = [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
    ]
    directory = MNIST_DIR if all((MNIST_DIR / name).is_file() for name in names) \
        else resources.files("numrec.datasets").joinpath("data")
    x_train, y_train, x_test, y_test = (read_idx(directory / name) for name in names)
    return (
        (x_train.reshape(len(x_train), -1), y_train),
        (x_test.reshape(len(x_test), -1), y_test),
    )


@pytest.fixture(autouse=True)
def _outside_the_source_tree(tmp_path, monkeypatch):
    """Run every test in its own temporary directory.

    Started from the repository root, ``python -m numrec`` (and ``python -m sphinx``)
    would import the source folder ``numrec/``, which holds no compiled modules, instead of
    the installed package.
    """
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """A directory with a small MNIST-format data set: 3000 training and 500 test images."""
    (x_train, y_train), (x_test, y_test) = load_mnist(dtype=np.uint8, flatten=False)
    directory = tmp_path_factory.mktemp("small-mnist")
    arrays = (x_train[:3000], y_train[:3000].astype(np.uint8),
              x_test[:500], y_test[:500].astype(np.uint8))
    for name, array in zip(MNIST_FILES, arrays):
        write_idx(directory / name, array)
    return directory

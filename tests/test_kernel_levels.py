"""Kernel levels: the AVX-512 kernels give the AVX2 kernels' bits; the portable level runs.

Each float32 kernel (dense forward, weight update, input gradient; the kernels for
mostly-zero inputs, float32 and pixels; the sigmoid) runs at the "avx2" and "avx512"
levels on awkward shapes (rows, units and inputs that are not multiples of the tiles'
sizes, up to a few thousand inputs, blank columns, thread shares that start inside the
weight matrix) and must give the same bits, and agree with float64 NumPy to float32
rounding.  Seeded training runs must end with the same parameter bits at both levels.
The tests that need AVX-512 (or AVX2) skip on processors without it.
"""
import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

import numrec
from numrec._core import _activations
from numrec._core._layers import _kernel_level, _simd_kernels
from numrec._core._training import _sparse_input_kernels


def _runs(level):
    """Whether this processor runs the kernels of `level`."""
    try:
        _kernel_level(_kernel_level(level))
    except ValueError:
        return False
    return True


needs_avx512 = pytest.mark.skipif(not (_runs("avx512") and _runs("avx2")),
                                  reason="the processor lacks AVX-512F (or AVX2 and FMA)")


@contextlib.contextmanager
def level(name):
    previous = _kernel_level(name)
    try:
        yield
    finally:
        _kernel_level(previous)


def _both_levels(compute):
    """compute() at the avx2 and avx512 levels."""
    results = []
    for name in ("avx2", "avx512"):
        with level(name):
            results.append(compute())
    return results


def _assert_same_bits(a, b):
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype == np.float32
        assert np.array_equal(x.view(np.uint32), y.view(np.uint32))


def _tolerance(a, b):
    """float32 rounding of dot products of |a| . |b| (k terms): a few ulps per term."""
    return 4e-7 * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-7


def _inputs(rng, m, k, density=1.0):
    """Normal entries with blank columns: a run of whole groups of 8 and scattered ones
    (and, with density < 1, only that share of the others nonzero)."""
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[:, 8:min(k, 40)] = 0
    x[:, rng.random(k) < 0.1] = 0
    if density < 1:
        x[rng.random((m, k)) >= density] = 0
    return x


def _layer(n_in, n_out, rng):
    layer = numrec.Dense(n_in, n_out, seed=rng)
    layer.bias = rng.standard_normal(n_out).astype(np.float32)
    return layer


ROWS = [1, 2, 5, 31, 33, 67, 128]
UNITS = [1, 3, 7, 9, 17, 33, 50]
INPUTS = [1, 7, 13, 17, 40, 75, 784, 3001]


@needs_avx512
@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("n_out", UNITS)
@pytest.mark.parametrize("n_in", INPUTS)
def test_dense_kernels_give_the_same_bits(m, n_out, n_in):
    """forward (x w^T + b), input gradient (g w) and weight gradient (g^T x, the update
    kernel with step 1), against each other and float64."""
    rng = np.random.default_rng(m * 100000 + n_out * 1000 + n_in)
    layer = _layer(n_in, n_out, rng)
    x = _inputs(rng, m, n_in)
    g = rng.standard_normal((m, n_out)).astype(np.float32)

    def compute():
        z = layer.forward(x)
        gx = layer.backward(g)
        return z, gx, layer.grad_weights.copy()

    avx2, avx512 = _both_levels(compute)
    _assert_same_bits(avx2, avx512)
    z, gx, gw = avx512
    w = layer.weights
    assert np.all(np.abs(z - (x.astype(np.float64) @ w.T.astype(np.float64) + layer.bias))
                  <= _tolerance(x, w.T) + 1e-6 * np.abs(layer.bias))
    assert np.all(np.abs(gx - g.astype(np.float64) @ w.astype(np.float64)) <= _tolerance(g, w))
    assert np.all(np.abs(gw - g.T.astype(np.float64) @ x.astype(np.float64)) <= _tolerance(g.T, x))



@needs_avx512
@pytest.mark.parametrize("n_in", [8200, 9216, 12301])
def test_dense_kernels_take_more_inputs_than_one_pass_of_columns(n_in):
    """Inputs beyond 8192 (the update kernel's columns in several batches), as the
    convolutional network's Dense(9216, 128): the same bits and float64's values."""
    rng = np.random.default_rng(n_in)
    layer = _layer(n_in, 130, rng)
    x = _inputs(rng, 70, n_in, density=0.5)
    g = rng.standard_normal((70, 130)).astype(np.float32)

    def compute():
        layer.forward(x)
        layer.backward(g)
        return (layer.grad_weights.copy(),)

    avx2, avx512 = _both_levels(compute)
    _assert_same_bits(avx2, avx512)
    gw = avx512[0]
    assert np.all(np.abs(gw - g.T.astype(np.float64) @ x.astype(np.float64)) <= _tolerance(g.T, x))

def _fit(model, x, y, threads, epochs=1, batch_size=None, lr=0.25):
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size or len(x),
                        optimizer=numrec.SGD(lr), fused=True, threads=threads, seed=0)
    assert history.fused
    return [p.copy() for p in model.parameters()]


@needs_avx512
@pytest.mark.parametrize("m", [1, 5, 33, 128])
@pytest.mark.parametrize("n_out", [7, 33, 100])
@pytest.mark.parametrize("n_in", [13, 75, 2053])
@pytest.mark.parametrize("threads", [1, 2])
def test_folded_update_gives_the_same_bits(m, n_out, n_in, threads):
    """The fused SGD step (w += -lr g^T x on each thread's share of the units, whose rows
    start inside w), with weights of -0.0 in blank columns: the same bits at both levels,
    and the float64 step to float32 rounding."""
    rng = np.random.default_rng(m * 100000 + n_out * 1000 + n_in + 1)
    x = _inputs(rng, m, n_in)
    targets = rng.standard_normal((m, n_out)).astype(np.float32)
    start = _layer(n_in, n_out, rng)
    weights = start.weights.copy()
    weights[:, 8:16] = -0.0
    start.weights = weights

    def compute():
        layer = _layer(n_in, n_out, np.random.default_rng(0))
        layer.weights, layer.bias = start.weights, start.bias
        previous = _sparse_input_kernels(False)
        try:
            return _fit(numrec.Sequential([layer]), x, targets, threads)
        finally:
            _sparse_input_kernels(previous)

    avx2, avx512 = _both_levels(compute)
    _assert_same_bits(avx2, avx512)
    w0, b0, x64 = (start.weights.astype(np.float64), start.bias.astype(np.float64),
                   x.astype(np.float64))
    gz = 2 * (x64 @ w0.T + b0 - targets) / m
    g_error = 1e-5 * np.abs(gz) + 2e-6 / m * (np.abs(x64) @ np.abs(w0).T + np.abs(b0)
                                             + np.abs(targets))
    slack = 0.25 * g_error.T @ np.abs(x64) + 1e-6 * np.abs(w0) + 1e-7
    assert np.all(np.abs(avx512[0] - (w0 - 0.25 * gz.T @ x64)) <= slack)


@needs_avx512
@pytest.mark.parametrize("m", [1, 2, 3, 33, 64])
@pytest.mark.parametrize("n_out", [1, 15, 16, 17, 37, 100, 129, 300])
@pytest.mark.parametrize("n_in", [1, 9, 17, 75, 784, 2053])
@pytest.mark.parametrize("density", [0.2, 1.0])
def test_sparse_forward_gives_the_same_bits(m, n_out, n_in, density):
    """Mostly zeros (pairs of rows), and dense inputs (blocks of four rows)."""
    rng = np.random.default_rng(m * 100000 + n_out * 1000 + n_in + 2)
    layer = _layer(n_in, n_out, rng)
    x = _inputs(rng, m, n_in, density=density)
    expected = x.astype(np.float64) @ layer.weights.T.astype(np.float64) + layer.bias
    tolerance = _tolerance(x, layer.weights.T) + 1e-6 * np.abs(layer.bias)

    def compute():
        assert layer._sparse_inputs(True)
        try:
            return [layer.forward(x)]
        finally:
            layer._sparse_inputs(False)

    avx2, avx512 = _both_levels(compute)
    _assert_same_bits(avx2, avx512)
    assert np.all(np.abs(avx512[0] - expected) <= tolerance)


def _pixels(rng, m, n_in, density=0.2):
    x = rng.integers(1, 256, size=(m, n_in), dtype=np.uint8)
    x[rng.random(x.shape) >= density] = 0
    return x


@needs_avx512
@pytest.mark.parametrize("n_in", [9, 75, 784])
@pytest.mark.parametrize("n_hidden", [37, 128, 300])
@pytest.mark.parametrize("batch_size", [1, 5, 32, 33])
@pytest.mark.parametrize("pixels", [True, False], ids=["uint8", "float32"])
@pytest.mark.parametrize("density", [0.2, 0.9])
def test_sparse_training_gives_the_same_bits(n_in, n_hidden, batch_size, pixels, density):
    """The first layer's kernels for zero inputs (forward and update, uint8 pixels or
    float32), two threads, two epochs: on mostly zeros, and on dense inputs, where the
    AVX-512 kernels take blocks of four rows forward and of four columns in the update."""
    rng = np.random.default_rng(n_in + n_hidden + batch_size)
    x = _pixels(rng, 203, n_in, density)
    if not pixels:
        x = x.astype(np.float32) / np.float32(255)
    y = rng.integers(0, 10, size=203)

    def compute():
        model = numrec.Sequential([numrec.Dense(n_in, n_hidden, seed=1), numrec.LeakyReLU(0.2),
                                   numrec.Dense(n_hidden, 10, seed=2), numrec.Sigmoid()])
        return _fit(model, x, y, threads=2, epochs=2, batch_size=batch_size, lr=0.5)

    avx2, avx512 = _both_levels(compute)
    _assert_same_bits(avx2, avx512)
    assert not np.array_equal(avx512[0], numrec.Dense(n_in, n_hidden, seed=1).weights)


@needs_avx512
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 1001])
def test_sigmoid_gives_the_same_bits(n):
    rng = np.random.default_rng(n)
    z = (rng.standard_normal(n) * 30).astype(np.float32)
    z[::7] = rng.choice(np.array([0.0, -0.0, 105.0, -105.0, 1e-30, np.nan], np.float32),
                        size=z[::7].shape)

    def compute():
        return [numrec.Sigmoid().forward(z.reshape(1, n)).ravel()]

    avx2, avx512 = _both_levels(compute)
    _assert_same_bits(avx2, avx512)
    expected = 1 / (1 + np.exp(-z.astype(np.float64)))
    finite = ~np.isnan(z)
    np.testing.assert_allclose(avx512[0][finite], expected[finite], rtol=2e-7, atol=1e-45)
    assert np.all(np.isnan(avx512[0][~finite]))


@needs_avx512
def test_reference_network_trains_to_the_same_bits():
    """The reference network (784-256-10) on 3000 MNIST-like rows, two threads."""
    rng = np.random.default_rng(11)
    x = _pixels(rng, 3000, 784)
    y = rng.integers(0, 10, size=3000)
    avx2, avx512 = _both_levels(
        lambda: _fit(numrec.mnist_mlp(seed=4), x, y, threads=2, batch_size=32, lr=0.5))
    _assert_same_bits(avx2, avx512)


@needs_avx512
@pytest.mark.parametrize("sparse", [True, False], ids=["zero-skipping", "dense"])
def test_wide_network_trains_to_the_same_bits(sparse):
    """784-512-256-10 on 1000 float32 rows, two threads, with and without the kernels
    for mostly-zero inputs."""
    rng = np.random.default_rng(12)
    x = _pixels(rng, 1000, 784).astype(np.float32) / np.float32(255)
    y = rng.integers(0, 10, size=1000)

    def compute():
        model = numrec.Sequential([
            numrec.Dense(784, 512, seed=1), numrec.LeakyReLU(0.2),
            numrec.Dense(512, 256, seed=2), numrec.LeakyReLU(0.2),
            numrec.Dense(256, 10, seed=3), numrec.Sigmoid()])
        previous = _sparse_input_kernels(sparse)
        try:
            return _fit(model, x, y, threads=2, batch_size=32, lr=0.5)
        finally:
            _sparse_input_kernels(previous)

    avx2, avx512 = _both_levels(compute)
    _assert_same_bits(avx2, avx512)


@needs_avx512
def test_relu_network_with_adam_trains_to_the_same_bits():
    """784-512-256-10 with ReLU and Adam at batch 128, two threads: the hidden layer on
    the kernels for zero inputs, its gradient and Adam's state in their panels."""
    rng = np.random.default_rng(14)
    x = _pixels(rng, 1024, 784)
    y = rng.integers(0, 10, size=1024)

    def compute():
        model = numrec.Sequential([
            numrec.Dense(784, 512, seed=1), numrec.ReLU(),
            numrec.Dense(512, 256, seed=2), numrec.ReLU(),
            numrec.Dense(256, 10, seed=3)], loss=numrec.SoftmaxCrossEntropy())
        history = model.fit(x, y, epochs=1, batch_size=128, optimizer=numrec.Adam(1e-3),
                            threads=2, seed=0)
        assert history.fused
        return [p.copy() for p in model.parameters()]

    avx2, avx512 = _both_levels(compute)
    _assert_same_bits(avx2, avx512)


@pytest.mark.parametrize("name", ["portable", "avx2"])
def test_lower_levels_run_and_agree_with_float64(name):
    if not _runs(name):
        pytest.skip(f"the processor cannot run the {name} kernels")
    rng = np.random.default_rng(13)
    layer = _layer(75, 33, rng)
    x = _inputs(rng, 20, 75)
    z = rng.standard_normal((4, 9)).astype(np.float32)
    with level(name):
        assert _kernel_level() == name
        assert _simd_kernels() == (name != "portable")
        assert _activations._sigmoid_kernel_level() == name
        got = layer.forward(x)
        sigmoid = numrec.Sigmoid().forward(z)
    expected = x.astype(np.float64) @ layer.weights.T.astype(np.float64) + layer.bias
    assert np.all(np.abs(got - expected) <= _tolerance(x, layer.weights.T) + 1e-6 * np.abs(layer.bias))
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-z.astype(np.float64))), rtol=2e-7)


def test_switches_restore_the_level():
    original = _kernel_level()
    try:
        assert _kernel_level("portable") == original
        assert _simd_kernels() is False
        assert _activations._vector_sigmoid_kernel() is False
        if _runs("avx2"):
            _kernel_level("avx2")
            assert _simd_kernels(False) is True
            assert _kernel_level() == "portable"
            _simd_kernels(True)
            assert _kernel_level() == "avx2"  # where it was, not the highest level
    finally:
        _kernel_level(original)
    assert _kernel_level() == original


@pytest.mark.parametrize("bad", ["avx1024", "AVX-512", "", None, 2])
def test_unknown_level_is_refused_by_name(bad):
    if bad is None:
        assert _kernel_level(bad) in ("avx512", "avx2", "portable")
        return
    with pytest.raises(ValueError, match="unknown kernel level"):
        _kernel_level(bad)


def test_a_level_the_processor_lacks_is_refused():
    if _runs("avx512"):
        pytest.skip("this processor runs every level")
    with pytest.raises(ValueError, match="cannot run the 'avx512' kernels"):
        _kernel_level("avx512")


def _level_at_import(value):
    """(kernel level, sigmoid level, stderr) of a fresh interpreter with NUMREC_KERNELS."""
    env = dict(os.environ, NUMREC_KERNELS=value)
    code = ("import numrec._core._layers as l, numrec._core._activations as a; "
            "print(l._kernel_level(), a._sigmoid_kernel_level())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    dense, sigmoid = done.stdout.split()
    return dense, sigmoid, done.stderr


def _highest_level():
    return next(name for name in ("avx512", "avx2", "portable") if _runs(name))


@pytest.mark.parametrize("value", ["portable", "avx2", "AVX512", " auto "])
def test_environment_variable_pins_the_level(value):
    highest = _highest_level()
    wanted = value.strip().lower()
    expected = highest if wanted == "auto" else wanted
    if not _runs(expected):
        expected = highest
    dense, sigmoid, stderr = _level_at_import(value)
    assert (dense, sigmoid) == (expected, expected)
    assert ("cannot run" in stderr) == (wanted not in ("auto", expected))


def test_environment_variable_with_an_unknown_value_warns_naming_it():
    dense, sigmoid, stderr = _level_at_import("avx3")
    assert (dense, sigmoid) == (_highest_level(), _highest_level())
    assert "NUMREC_KERNELS='avx3' is not a kernel level" in stderr
    assert stderr.count("NUMREC_KERNELS") == 1

"""float64 kernels for inputs that are mostly zeros (_sparse64.h).

Each kernel (forward, folded update) runs at every level the processor has on awkward
shapes (rows, units and inputs that are not multiples of the tiles' sizes, partial
panels, blank columns, -0.0 entries) and must agree with float64 NumPy to float64
rounding and give the same bits at every level.  Seeded float64 training with the
kernels must agree with training without them to ~1e-12, and repeat bit for bit.
"""
import numpy as np
import pytest

import numrec
from numrec._core._layers import (
    _kernel_level, _panels, _sparse_forward_f64, _sparse_update_f64, _unpanel,
)
from numrec._core._training import _sparse_input_kernels

LEVELS = ("portable", "avx2", "avx512")

# Random data and labels: these networks have nothing to learn, and fit says so.
pytestmark = pytest.mark.filterwarnings("ignore::numrec.TrainingWarning")


def _runs(level):
    try:
        _kernel_level(_kernel_level(level))
    except ValueError:
        return False
    return True


AVAILABLE = [level for level in LEVELS if _runs(level)]

SHAPES = [  # (rows, units, inputs)
    (1, 1, 1), (2, 3, 7), (3, 16, 29), (5, 17, 64), (7, 37, 100), (2, 48, 785),
    (33, 64, 300), (65, 130, 784), (4, 200, 17), (9, 256, 784), (1, 97, 2049),
]


def _inputs(rng, m, k, density=0.25):
    """Mostly zeros, with blank runs of columns, a blank row and a -0.0 entry."""
    x = rng.standard_normal((m, k))
    x[rng.random((m, k)) >= density] = 0
    x[:, 8:min(k, 40)] = 0
    if m > 2:
        x[2] = 0
    x[0, k // 2] = -0.0
    return x


def _tolerance(a, b):
    """float64 rounding of the dot products of |a| . |b|: one ulp per term, and a floor."""
    return 2.5e-16 * a.shape[1] * (np.abs(a) @ np.abs(b)) + 1e-300


def _same_bits(arrays):
    first = arrays[0].view(np.uint64)
    return all(np.array_equal(first, a.view(np.uint64)) for a in arrays[1:])


@pytest.mark.parametrize("m, n, k", SHAPES)
def test_forward_agrees_with_numpy_at_every_level(m, n, k):
    rng = np.random.default_rng(m * 1000 + n + k)
    x, w, b = _inputs(rng, m, k), rng.standard_normal((n, k)), rng.standard_normal(n)
    wt = _panels(w)
    results = [_sparse_forward_f64(level, x, wt, b, n) for level in AVAILABLE]
    expected = x @ w.T + b
    bound = _tolerance(x, w.T) + 2.3e-16 * np.abs(expected)
    for z in results:
        assert np.all(np.abs(z - expected) <= bound)
    assert _same_bits(results)
    no_bias = _sparse_forward_f64(AVAILABLE[-1], x, wt, None, n)
    assert np.all(np.abs(no_bias - x @ w.T) <= _tolerance(x, w.T))


@pytest.mark.parametrize("m, n, k", SHAPES)
def test_folded_update_agrees_with_numpy_at_every_level(m, n, k):
    rng = np.random.default_rng(m * 1000 + n + k + 1)
    x, g, w = _inputs(rng, m, k), rng.standard_normal((m, n)), rng.standard_normal((n, k))
    results = []
    for level in AVAILABLE:
        wt = _panels(w)
        _sparse_update_f64(level, -0.01, g, x, wt)
        padding = wt[-1, :, n - 16 * (wt.shape[0] - 1):]
        assert not padding.any(), "the panels' padding must stay zero"
        out = np.empty_like(w)
        _unpanel(wt, out)
        results.append(out)
    expected = w - 0.01 * (g.T @ x)
    bound = 0.01 * _tolerance(g.T, x) + 4.5e-16 * np.abs(w) + 1e-300
    for out in results:
        assert np.all(np.abs(out - expected) <= bound)
    assert _same_bits(results)


def test_only_plus_zero_is_skipped():
    """-0.0 times an infinite weight is NaN, and a NaN input spreads: neither is skipped."""
    w = np.ones((20, 6))
    w[:, 1] = np.inf
    x = np.zeros((3, 6))
    x[0, 1] = -0.0
    x[1, 3] = np.nan
    x[2, 1] = 0.0
    for level in AVAILABLE:
        z = _sparse_forward_f64(level, x, _panels(w), np.zeros(20), 20)
        assert np.isnan(z[0]).all() and np.isnan(z[1]).all()
        assert np.array_equal(z[2], np.zeros(20))


def test_bad_arguments_are_refused_by_name():
    x, wt = np.zeros((2, 5)), _panels(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="wt must be the panels"):
        _sparse_forward_f64("portable", x, wt, None, 17)
    with pytest.raises(ValueError, match="b must have 3 entries"):
        _sparse_forward_f64("portable", x, wt, np.zeros(4), 3)
    with pytest.raises(ValueError, match="unknown kernel level"):
        _sparse_forward_f64("sse", x, wt, None, 3)
    with pytest.raises(ValueError, match="same number of rows"):
        _sparse_update_f64("portable", 1.0, np.zeros((3, 3)), x, wt)


def test_panels_round_trip_in_float64():
    w = np.random.default_rng(0).standard_normal((37, 11))
    panels = _panels(w)
    assert panels.dtype == np.float64 and panels.shape == (3, 11, 16)
    assert np.array_equal(panels[2, :, :5], w[32:].T) and not panels[2, :, 5:].any()
    back = np.empty_like(w)
    _unpanel(panels, back)
    assert np.array_equal(back, w)


@pytest.mark.parametrize("n_out", [10, 37])
def test_dense_layer_on_the_kernels_agrees_with_blas(n_out):
    rng = np.random.default_rng(3)
    x, g = _inputs(rng, 21, 300), rng.standard_normal((21, n_out))
    plain = numrec.Dense(300, n_out, seed=1, dtype=np.float64)
    sparse = numrec.Dense(300, n_out, seed=1, dtype=np.float64)
    assert sparse._sparse_inputs(True)
    np.testing.assert_allclose(sparse.forward(x), plain.forward(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(sparse.backward(g), plain.backward(g), rtol=1e-13, atol=1e-13)
    sparse._sparse_inputs(False)
    assert np.array_equal(sparse.weights, plain.weights)


def _mostly_zero_data(n=640, n_in=300, n_out=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, n_in)).astype(np.float64) / 255
    x[rng.random(x.shape) < 0.8] = 0
    return x, rng.integers(0, n_out, size=n)


def _fit(x, y, sparse, threads, batch_size, optimizer):
    rng = np.random.default_rng(42)
    model = numrec.Sequential([
        numrec.Dense(x.shape[1], 200, seed=rng, dtype=np.float64), numrec.LeakyReLU(0.2),
        numrec.Dense(200, 10, seed=rng, dtype=np.float64), numrec.Sigmoid(),
    ])
    previous = _sparse_input_kernels(sparse)
    try:
        history = model.fit(x, y, epochs=2, batch_size=batch_size, optimizer=optimizer(),
                            seed=7, threads=threads, fused=True)
    finally:
        _sparse_input_kernels(previous)
    return [p.copy() for p in model.parameters()], history.loss


OPTIMIZERS = {"sgd": lambda: numrec.SGD(0.3), "adam": lambda: numrec.Adam(1e-3)}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("threads, batch_size", [(1, 32), (2, 32), (2, 77), (1, 150), (2, 150)])
def test_seeded_fit_agrees_with_and_without_the_kernels(optimizer, threads, batch_size):
    x, y = _mostly_zero_data()
    with_kernels = _fit(x, y, True, threads, batch_size, OPTIMIZERS[optimizer])
    without = _fit(x, y, False, threads, batch_size, OPTIMIZERS[optimizer])
    for got, expected in zip(with_kernels[0], without[0]):
        scale = np.max(np.abs(expected))
        assert np.max(np.abs(got - expected)) <= 1e-12 * scale
    if optimizer == "sgd":  # the folded step rounds once, BLAS's alpha * sum + w twice
        assert not np.array_equal(with_kernels[0][0], without[0][0]), "the kernels did not run"
    np.testing.assert_allclose(with_kernels[1], without[1], rtol=1e-12)
    again = _fit(x, y, True, threads, batch_size, OPTIMIZERS[optimizer])
    for a, b in zip(with_kernels[0], again[0]):
        assert np.array_equal(a.view(np.uint64), b.view(np.uint64))
    assert again[1] == with_kernels[1]


@pytest.mark.parametrize("batch_size", [32, 150])
def test_the_kernels_give_the_same_first_layer_bits_for_one_and_two_threads(batch_size):
    """The first layer's kernels do not depend on the split of its units between threads;
    the layer above it still runs BLAS on each share, so only the loss is compared
    loosely."""
    x, y = _mostly_zero_data()
    one = _fit(x, y, True, 1, batch_size, OPTIMIZERS["sgd"])
    two = _fit(x, y, True, 2, batch_size, OPTIMIZERS["sgd"])
    for a, b in zip(one[0], two[0]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(one[1], two[1], rtol=1e-10)


@pytest.mark.parametrize("level", [level for level in AVAILABLE if level != "portable"])
def test_training_gives_the_same_bits_at_every_simd_level(level):
    x, y = _mostly_zero_data()
    previous = _kernel_level(level)
    try:
        result = _fit(x, y, True, 1, 32, OPTIMIZERS["sgd"])
    finally:
        _kernel_level(previous)
    reference = _fit(x, y, True, 1, 32, OPTIMIZERS["sgd"])
    for a, b in zip(result[0], reference[0]):
        assert np.array_equal(a.view(np.uint64), b.view(np.uint64))

"""numrec's own float32 Dense kernels (AVX2 + FMA) against float64 NumPy and against BLAS.

Shapes cover every tile remainder: rows modulo 3, units modulo 3 and 4, inputs modulo 8
and 32.  On a processor without AVX2 and FMA the kernels are off and these tests check
that BLAS alone gives the same answers.
"""
import numpy as np
import pytest

import numrec
from numrec._core._layers import _simd_kernels

ROWS = [1, 2, 3, 4, 5, 31, 32, 33, 64, 65, 128, 129]
UNITS = [1, 2, 3, 4, 5, 7, 13]
INPUTS = [1, 7, 8, 9, 31, 32, 33, 40, 75]


@pytest.fixture(params=[True, False], ids=["own-kernels", "blas"])
def kernels(request):
    previous = _simd_kernels(request.param)
    yield request.param
    _simd_kernels(previous)


def _layer(n_in, n_out, rng):
    layer = numrec.Dense(n_in, n_out, seed=rng)
    layer.bias = rng.standard_normal(n_out).astype(np.float32)
    return layer


def _tolerance(a, b):
    """float32 rounding of dot products of |a| . |b| (k terms): a few ulps per term."""
    return 4e-7 * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-7


@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("n_out", UNITS)
@pytest.mark.parametrize("n_in", INPUTS)
def test_forward_matches_float64(kernels, m, n_out, n_in):
    rng = np.random.default_rng(m * 10000 + n_out * 100 + n_in)
    layer = _layer(n_in, n_out, rng)
    x = rng.standard_normal((m, n_in)).astype(np.float32)
    expected = x.astype(np.float64) @ layer.weights.T.astype(np.float64) + layer.bias
    got = layer.forward(x)
    assert got.dtype == np.float32
    assert np.all(np.abs(got - expected) <= _tolerance(x, layer.weights.T) + 1e-6 * np.abs(layer.bias))


@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("n_out", UNITS)
@pytest.mark.parametrize("n_in", [1, 8, 9, 33, 75])
def test_input_gradient_matches_float64(kernels, m, n_out, n_in):
    rng = np.random.default_rng(m * 10000 + n_out * 100 + n_in + 1)
    layer = _layer(n_in, n_out, rng)
    x = rng.standard_normal((m, n_in)).astype(np.float32)
    grad_output = rng.standard_normal((m, n_out)).astype(np.float32)
    layer.forward(x)
    got = layer.backward(grad_output)
    expected = grad_output.astype(np.float64) @ layer.weights.astype(np.float64)
    assert got.dtype == np.float32
    assert np.all(np.abs(got - expected) <= _tolerance(grad_output, layer.weights))


def _one_sgd_step(n_in, n_out, m, lr, seed, threads):
    """One fused SGD step of a single Dense layer under MSE, and the float64 reference."""
    rng = np.random.default_rng(seed)
    layer = _layer(n_in, n_out, rng)
    x = rng.standard_normal((m, n_in)).astype(np.float32)
    targets = rng.standard_normal((m, n_out)).astype(np.float32)
    w0 = layer.weights.astype(np.float64)
    b0 = layer.bias.astype(np.float64)
    x64 = x.astype(np.float64)
    g = 2 * (x64 @ w0.T + b0 - targets) / m            # dL/dz of MSE (mean over the batch)
    expected_w = w0 - lr * g.T @ x64
    expected_b = b0 - lr * g.sum(axis=0)
    model = numrec.Sequential([layer])
    history = model.fit(x, targets, batch_size=m, optimizer=numrec.SGD(lr), fused=True,
                        threads=threads)
    assert history.fused
    return layer, expected_w, expected_b, x, g


@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("n_out", [1, 2, 3, 4, 13])
@pytest.mark.parametrize("n_in", [1, 8, 9, 33, 75])
def test_fused_update_matches_float64(kernels, m, n_out, n_in):
    lr = 0.25
    layer, expected_w, expected_b, x, g = _one_sgd_step(n_in, n_out, m, lr, m + n_out + n_in, 1)
    # float32 rounds g (forward pass), each product and sum, and the stored weights; an
    # error in the kernel (a row or column missed or repeated) is of order lr |g|.T |x|.
    slack = 1e-5 * lr * np.abs(g).T @ np.abs(x) + 1e-6 * np.abs(expected_w) + 1e-7
    assert np.all(np.abs(layer.weights - expected_w) <= slack)
    np.testing.assert_allclose(layer.bias, expected_b, rtol=1e-5, atol=1e-5)


def _blank_groups(x, rng, share):
    """x with about `share` of its groups of 8 columns set to zero in every row."""
    n_groups = -(-x.shape[1] // 8)
    blank = rng.random(n_groups) < share
    x = x.copy()
    for group in np.flatnonzero(blank):
        x[:, 8 * group:8 * group + 8] = 0
    return x


def _fused_step(layer, x, targets, lr):
    model = numrec.Sequential([layer])
    history = model.fit(x, targets, batch_size=len(x), optimizer=numrec.SGD(lr), fused=True,
                        threads=1, seed=0)
    assert history.fused
    return layer.weights.copy(), layer.bias.copy()


# Both passes skip blank groups of columns of x for layers of at least 32 units.
@pytest.mark.parametrize("m", [1, 3, 32, 33, 64, 129])
@pytest.mark.parametrize("n_out", [32, 37])
@pytest.mark.parametrize("n_in", [8, 64, 75, 784])
@pytest.mark.parametrize("share", [0.3, 0.8, 1.0])
def test_forward_with_blank_columns_matches_float64(kernels, m, n_out, n_in, share):
    rng = np.random.default_rng(m * 10000 + n_out * 100 + n_in + 2)
    layer = _layer(n_in, n_out, rng)
    x = _blank_groups(rng.standard_normal((m, n_in)).astype(np.float32), rng, share)
    expected = x.astype(np.float64) @ layer.weights.T.astype(np.float64) + layer.bias
    got = layer.forward(x)
    assert np.all(np.abs(got - expected) <= _tolerance(x, layer.weights.T) + 1e-6 * np.abs(layer.bias))


@pytest.mark.parametrize("m", [1, 3, 32, 33, 64])
@pytest.mark.parametrize("n_out", [32, 37, 96])
@pytest.mark.parametrize("n_in", [8, 64, 75, 784])
@pytest.mark.parametrize("share", [0.0, 0.3, 0.8, 1.0])
def test_update_with_blank_columns_matches_float64(kernels, m, n_out, n_in, share):
    lr = 0.25
    rng = np.random.default_rng(m * 10000 + n_out * 100 + n_in)
    layer = _layer(n_in, n_out, rng)
    x = _blank_groups(rng.standard_normal((m, n_in)).astype(np.float32), rng, share)
    targets = rng.standard_normal((m, n_out)).astype(np.float32)
    w0, b0, x64 = layer.weights.astype(np.float64), layer.bias.astype(np.float64), x.astype(np.float64)
    g = 2 * (x64 @ w0.T + b0 - targets) / m
    weights, bias = _fused_step(layer, x, targets, lr)
    # g itself is rounded in float32 from z, whose error scales with |x| |w| + |b|.
    g_error = 1e-5 * np.abs(g) + 2e-6 / m * (np.abs(x64) @ np.abs(w0).T + np.abs(b0) + np.abs(targets))
    slack = lr * g_error.T @ np.abs(x64) + 1e-6 * np.abs(w0) + 1e-7
    assert np.all(np.abs(weights - (w0 - lr * g.T @ x64)) <= slack)
    np.testing.assert_allclose(bias, b0 - lr * g.sum(axis=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m", [1, 5, 32, 64])
@pytest.mark.parametrize("n_in", [64, 75, 784])
def test_skipping_blank_columns_changes_no_bit(m, n_in):
    """-0.0 has its sign bit set, so a group of -0.0 is not skipped; it adds only zeros."""
    rng = np.random.default_rng(m + n_in)
    x = _blank_groups(rng.random((m, n_in), dtype=np.float32), rng, 0.5)
    x[:, :8] = 0                                   # at least one blank group
    targets = rng.standard_normal((m, 48)).astype(np.float32)
    skipped = _fused_step(_layer(n_in, 48, np.random.default_rng(1)), x, targets, 0.5)
    computed = _fused_step(_layer(n_in, 48, np.random.default_rng(1)),
                           np.where(x == 0, np.float32(-0.0), x), targets, 0.5)
    for a, b in zip(skipped, computed):
        assert np.array_equal(a, b)
    assert not np.array_equal(skipped[0], _layer(n_in, 48, np.random.default_rng(1)).weights)


@pytest.mark.skipif(not _simd_kernels(), reason="the processor lacks AVX2 and FMA")
@pytest.mark.parametrize("blank, batch_size", [
    *[(0.0, b) for b in (1, 17, 32, 64, 100, 128)],      # full-product kernels
    *[(0.8, b) for b in (1, 17, 32, 100, 128, 150)],     # zero-skipping first layer
])
def test_own_kernels_give_the_same_bits_for_any_thread_count(blank, batch_size):
    """Each output's sum runs in one fixed order, however the threads share the units."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(300, 784), dtype=np.uint8)
    x[rng.random(x.shape) < blank] = 0
    y = rng.integers(0, 10, size=300)
    results = []
    for threads in (1, 2, 3):
        model = numrec.mnist_mlp(seed=5)
        model.fit(x, y, epochs=2, batch_size=batch_size, optimizer=numrec.SGD(0.5), seed=1,
                  threads=threads)
        results.append(model.parameters())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_own_kernels_and_blas_agree_on_a_training_run():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(640, 784), dtype=np.uint8)
    y = rng.integers(0, 10, size=640)
    trained = []
    for own in (True, False):
        previous = _simd_kernels(own)
        try:
            model = numrec.mnist_mlp(seed=2)
            model.fit(x, y, epochs=2, batch_size=32, optimizer=numrec.SGD(0.5), seed=1)
        finally:
            _simd_kernels(previous)
        trained.append(model.parameters())
    for a, b in zip(*trained):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_switch_reports_and_restores_the_setting():
    original = _simd_kernels()
    assert _simd_kernels(False) == original
    assert _simd_kernels() is False
    _simd_kernels(original)
    assert _simd_kernels() == original


def test_vector_sigmoid_gives_the_scalar_forms_bits():
    """Sigmoid's AVX2 code, with its own exp, against the scalar form with the C
    library's: the same float32 on a dense sweep, random values and the edges (where
    exp underflows in float32, infinities, NaN, signed zeros)."""
    from numrec._core._activations import _vector_sigmoid_kernel
    if not _vector_sigmoid_kernel():
        pytest.skip("no AVX2 and FMA: the scalar form runs alone")
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-30, -1e-30,
             88.7, -88.7, 103.9, -103.9, 104.0, -104.0, 104.1, -104.1, 200.0, -200.0]
    z = np.concatenate([
        np.linspace(-110, 110, 2_000_001), np.random.default_rng(5).normal(0, 4, 2_000_000),
        edges, np.arange(-1000, 1000) * 0.0625,
    ]).astype(np.float32)
    z = np.concatenate([z, z[:3]])[:len(z) // 4 * 4 + 3].reshape(-1, 1)  # a tail of 3
    sigmoid = numrec.Sigmoid()
    try:
        vector = sigmoid.forward(z)
        _vector_sigmoid_kernel(False)
        scalar = sigmoid.forward(z)
    finally:
        _vector_sigmoid_kernel(True)
    np.testing.assert_array_equal(vector, scalar)

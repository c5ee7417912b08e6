"""Tanh, Identity and Softmax against NumPy formulas, and inside the compiled loop.

The conformance suite (tests/test_conformance.py) already checks their gradients by
finite differences, save and load and the compiled loop on small models; here: the
values against NumPy references, softmax's stability on large inputs, its errors, and
MNIST networks with these activations trained in the compiled loop on one and two
threads.
"""
import numpy as np
import pytest

import numrec
from numrec._core._training import thread_plan

DTYPES = (np.float32, np.float64)


def softmax_reference(z):
    """Row-wise softmax in float64, max-subtracted."""
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward_reference(a, g):
    """dL/dz from the explicit Jacobian, row by row: J = diag(a) - a a^T (symmetric)."""
    a, g = np.asarray(a, np.float64), np.asarray(g, np.float64)
    out = np.empty_like(g)
    for i in range(len(a)):
        jacobian = np.diag(a[i]) - np.outer(a[i], a[i])
        out[i] = jacobian.T @ g[i]
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


# --- Tanh ----------------------------------------------------------------------------------

def test_tanh_forward_matches_numpy(rng):
    z = rng.uniform(-6, 6, (7, 13))
    z[0, :4] = [0.0, -0.0, 30.0, -30.0]
    np.testing.assert_allclose(numrec.Tanh().forward(z), np.tanh(z), rtol=1e-14, atol=0)
    z32 = z.astype(np.float32)
    a32 = numrec.Tanh().forward(z32)
    assert a32.dtype == np.float32
    np.testing.assert_array_max_ulp(a32, np.tanh(z32.astype(np.float64)).astype(np.float32),
                                    maxulp=2)
    assert a32[0, 2] == 1 and a32[0, 3] == -1


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_backward_is_one_minus_a_squared(rng, dtype):
    z = rng.uniform(-3, 3, (5, 9)).astype(dtype)
    g = rng.standard_normal((5, 9)).astype(dtype)
    tanh = numrec.Tanh()
    a = tanh.forward(z)
    expected = g * (1 - a * a)  # the same operations as the kernel, in the same dtype
    np.testing.assert_allclose(tanh.backward(z, a, g), expected, rtol=2 * np.finfo(dtype).eps)
    np.testing.assert_allclose(tanh.derivative(z, a), 1 - np.tanh(z.astype(np.float64)) ** 2,
                               rtol=20 * np.finfo(dtype).eps, atol=20 * np.finfo(dtype).eps)


# --- Identity ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_copies_forward_and_passes_the_gradient(rng, dtype):
    z = rng.standard_normal((4, 6)).astype(dtype)
    g = rng.standard_normal((4, 6)).astype(dtype)
    identity = numrec.Identity()
    a = identity.forward(z)
    assert a.dtype == z.dtype and np.array_equal(a, z)
    assert not np.shares_memory(a, z)
    grad_z = identity.backward(z, a, g)
    assert np.array_equal(grad_z, g) and not np.shares_memory(grad_z, g)
    assert np.array_equal(identity.derivative(z, a), np.ones_like(z))


@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_output_trains_like_no_output_activation(dtype):
    """Dense then Identity gives the bits of the Dense layer alone, in the compiled loop."""
    data = np.random.default_rng(5)
    x = data.standard_normal((300, 20)).astype(dtype)
    y = data.integers(0, 4, 300)
    runs = []
    for tail in ([numrec.Identity()], []):
        rng = np.random.default_rng(6)
        model = numrec.Sequential([numrec.Dense(20, 32, seed=rng, dtype=dtype), numrec.Tanh(),
                                   numrec.Dense(32, 4, seed=rng, dtype=dtype), *tail])
        history = model.fit(x, y, epochs=2, batch_size=16, optimizer=numrec.SGD(0.05),
                            seed=7, fused=True)
        assert history.loop == "compiled"
        runs.append((model, history))
    (with_identity, h1), (without, h2) = runs
    assert h1.loss == h2.loss and h1.loss[-1] < h1.loss[0]
    for a, b in zip(with_identity.parameters(), without.parameters()):
        assert np.array_equal(a, b)
    np.testing.assert_array_equal(with_identity.predict(x), without.predict(x))


# --- Softmax -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_forward_matches_numpy(rng, dtype):
    z = rng.uniform(-8, 8, (9, 10)).astype(dtype)
    a = numrec.Softmax().forward(z)
    assert a.dtype == dtype and a.shape == z.shape
    tolerance = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(a, softmax_reference(z), rtol=tolerance, atol=0)
    np.testing.assert_allclose(a.astype(np.float64).sum(axis=1), 1, rtol=tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_of_large_inputs_does_not_overflow(dtype):
    z = np.array([[1000, 1001, 999],
                  [-1000, 0, 1000],
                  [1e4, 1e4, 1e4],
                  [-1e4, -1e4, -1e4],
                  [88.5, 89.0, 0.0]], dtype=dtype)
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            np.exp(z)  # the naive formula would overflow
    a = numrec.Softmax().forward(z)
    assert np.all(np.isfinite(a)) and np.all(a >= 0)
    tolerance = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(a.astype(np.float64).sum(axis=1), 1, rtol=tolerance)
    np.testing.assert_allclose(a, softmax_reference(z), rtol=tolerance, atol=1e-300)
    e = np.exp([0.0, 1.0, -1.0])  # row 0 is (0, 1, -1) shifted by 1000
    np.testing.assert_allclose(a[0], e / e.sum(), rtol=tolerance)
    np.testing.assert_allclose(a[1], [0, 0, 1], atol=1e-300)
    np.testing.assert_allclose(a[2], [1 / 3] * 3, rtol=tolerance)
    np.testing.assert_allclose(a[3], [1 / 3] * 3, rtol=tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_backward_is_the_jacobian_product(rng, dtype):
    softmax = numrec.Softmax()
    z = rng.uniform(-4, 4, (6, 10)).astype(dtype)
    g = rng.standard_normal((6, 10)).astype(dtype)
    a = softmax.forward(z)
    grad_z = softmax.backward(z, a, g)
    assert grad_z.dtype == dtype and grad_z.shape == z.shape
    tolerance = 1e-13 if dtype == np.float64 else 2e-6
    expected = softmax_backward_reference(a, g)
    np.testing.assert_allclose(grad_z, expected, rtol=tolerance,
                               atol=tolerance * np.abs(expected).max())
    # The rows of the Jacobian sum to 0: a gradient equal along a row vanishes.
    flat = softmax.backward(z, a, np.full_like(z, 3.0))
    np.testing.assert_allclose(flat, 0, atol=10 * np.finfo(dtype).eps)
    # backward_pass uses the z and a of the last forward_pass.
    np.testing.assert_array_equal(softmax.forward_pass(z), a)
    np.testing.assert_array_equal(softmax.backward_pass(g), grad_z)


def test_softmax_runs_over_the_last_axis(rng):
    softmax = numrec.Softmax()
    z3 = rng.standard_normal((2, 3, 5))
    np.testing.assert_allclose(softmax.forward(z3), softmax_reference(z3), rtol=1e-14)
    z1 = rng.standard_normal(5)
    np.testing.assert_allclose(softmax.forward(z1), softmax_reference(z1), rtol=1e-14)
    a1, g1 = softmax.forward(z1), rng.standard_normal(5)
    np.testing.assert_allclose(softmax.backward(z1, a1, g1),
                               softmax_backward_reference(a1[None], g1[None])[0], rtol=1e-13)
    assert softmax.forward(np.empty((0, 10))).shape == (0, 10)
    # Non-contiguous input (a column slice) gives the values of the contiguous copy.
    wide = rng.standard_normal((4, 12))
    np.testing.assert_array_equal(softmax.forward(wide[:, ::2]),
                                  softmax.forward(np.ascontiguousarray(wide[:, ::2])))


def test_softmax_derivative_points_to_backward():
    z = np.zeros((2, 3))
    softmax = numrec.Softmax()
    with pytest.raises(NotImplementedError, match=r"backward\(z, a, grad_a\)"):
        softmax.derivative(z, softmax.forward(z))
    assert numrec.Softmax.rowwise is True
    assert numrec.Tanh.rowwise is False and numrec.Identity.rowwise is False


def test_softmax_bad_arguments_name_the_argument():
    softmax = numrec.Softmax()
    z = np.zeros((2, 3))
    a = softmax.forward(z)
    with pytest.raises(TypeError, match="z must be a numpy array"):
        softmax.forward([[1.0, 2.0]])
    with pytest.raises(TypeError, match="z must have dtype float32 or float64"):
        softmax.forward(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="at least one axis"):
        softmax.forward(np.ones(()))
    with pytest.raises(ValueError, match=r"grad_a must have the shape of z \(2, 3\)"):
        softmax.backward(z, a, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"a must have the shape of z"):
        softmax.backward(z, a[:1], np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"grad_a must have the dtype of z \(float64\)"):
        softmax.backward(z, a, np.zeros((2, 3), np.float32))


# --- in the compiled loop ------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    (x_train, y_train), (x_test, y_test) = numrec.datasets.load_mnist(dtype=np.uint8)
    return x_train[:3000], y_train[:3000], x_test[:1000], y_test[:1000]


def assert_thread_invariance(runs, dtype):
    """``runs``: (model, history) on 1 and 2 threads.  Softmax, Tanh and Identity compute
    each row (each value) on its own, in a fixed order, so they add no dependence on the
    threads.  Dense does: in float64 its share of the units is a BLAS product whose bits
    may depend on the share's width (its ``unit_shares()`` say it is exact in float32
    only; this happens with ReLU and Sigmoid alone too), so there the runs must agree up
    to rounding, in float32 to the bit."""
    (one, h1), (two, h2) = runs
    if dtype == np.float32:
        assert h1.loss == h2.loss, "the loss differs between 1 and 2 threads"
        for i, (a, b) in enumerate(zip(one.parameters(), two.parameters())):
            assert np.array_equal(a, b), f"parameter {i} differs between 1 and 2 threads"
    else:
        np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-13)
        for a, b in zip(one.parameters(), two.parameters()):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max())


def softmax_model(hidden, dtype):
    rng = np.random.default_rng(0)
    return numrec.Sequential([
        numrec.Dense(784, 64, seed=rng, dtype=dtype), hidden(),
        numrec.Dense(64, 10, seed=rng, dtype=dtype), numrec.Softmax(),
    ])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("batch_size", [32, 512])
@pytest.mark.parametrize("hidden", [numrec.ReLU, numrec.Tanh], ids=lambda c: c.__name__)
def test_softmax_output_trains_in_the_compiled_loop(digits, hidden, batch_size, dtype):
    # 784 x 64 = 50176 weights: two threads share the first layer.
    x, y, x_test, y_test = digits
    runs = []
    for threads in (1, 2, 2):
        model = softmax_model(hidden, dtype)
        history = model.fit(x, y, epochs=2, batch_size=batch_size, loss=numrec.MSE(),
                            optimizer=numrec.SGD(0.5), seed=1, threads=threads, fused=True)
        assert history.loop == "compiled" and history.fused
        runs.append((model, history))
    assert_thread_invariance(runs[:2], dtype)
    # The same run twice gives the same bits.
    assert runs[1][1].loss == runs[2][1].loss
    for a, b in zip(runs[1][0].parameters(), runs[2][0].parameters()):
        assert np.array_equal(a, b)
    model, history = runs[0]
    assert history.loss[-1] < 0.9 * history.loss[0]
    probabilities = model.predict(x_test)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-6)
    if batch_size == 32:  # 188 steps: well past chance
        assert model.evaluate(x_test, y_test)["accuracy"] > 0.7
    # The Python loop (the same kernels, one call per component) agrees up to rounding.
    python = softmax_model(hidden, dtype)
    h3 = python.fit(x, y, epochs=2, batch_size=batch_size, loss=numrec.MSE(),
                    optimizer=numrec.SGD(0.5), seed=1, fused=False)
    assert h3.loop == "python"
    rtol = 1e-10 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(h3.loss, history.loss, rtol=rtol)
    for a, b in zip(python.parameters(), model.parameters()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("batch_size", [32, 512])
def test_softmax_in_a_shared_hidden_stage(digits, dtype, batch_size):
    """A row-wise activation after a layer the threads share: each thread runs it on its
    share of whole rows after the layer's barrier; thread 0 runs its backward on all rows
    before the threads update their units."""
    x, y, _, _ = digits
    x = (x[:1000] / 255).astype(dtype)
    y = y[:1000]
    runs = []
    for threads, fused in ((1, True), (2, True), (1, False)):
        rng = np.random.default_rng(3)
        model = numrec.Sequential([
            numrec.Dense(784, 256, seed=rng, dtype=dtype), numrec.Softmax(),
            numrec.Dense(256, 10, seed=rng, dtype=dtype), numrec.Sigmoid(),
        ])
        initial = [p.copy() for p in model.parameters()]
        stages = [(model.components[0], model.components[1]),
                  (model.components[2], model.components[3])]
        assert thread_plan(stages, dtype, batch_size, x, 2)[0] == 2  # the stage is shared
        history = model.fit(x, y, epochs=2, batch_size=batch_size, optimizer=numrec.SGD(0.5),
                            seed=4, threads=threads, fused=fused)
        runs.append((model, history))
    (one, h1), (two, h2), (python, h3) = runs
    assert h1.loop == h2.loop == "compiled" and h3.loop == "python"
    assert_thread_invariance(runs[:2], dtype)
    rtol = 1e-10 if dtype == np.float64 else 2e-3
    for a, b in zip(python.parameters(), one.parameters()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    # The first layer learned through the softmax's Jacobian.
    assert not np.array_equal(one.parameters()[0], initial[0])
    assert h1.loss[-1] < h1.loss[0]


def test_softmax_after_a_python_layer_runs_in_the_segmented_loop():
    """After a Python-written layer the softmax is a part of its own, called through its
    Python methods between the compiled parts: the same training as all-compiled."""
    from python_components import PyDense

    data = np.random.default_rng(8)
    x, y = data.standard_normal((200, 8)), data.integers(0, 3, 200)
    runs = {}
    for kind in ("compiled", "segmented"):
        rng = np.random.default_rng(9)
        first = numrec.Dense(8, 16, seed=rng, dtype=np.float64)
        second = numrec.Dense(16, 3, seed=rng, dtype=np.float64)
        if kind == "segmented":
            second = PyDense(second.weights, second.bias)
        model = numrec.Sequential([first, numrec.Tanh(), second, numrec.Softmax()])
        history = model.fit(x, y, epochs=2, batch_size=16, optimizer=numrec.SGD(0.5), seed=10)
        assert history.loop == kind
        runs[kind] = model, history
    (compiled, h1), (segmented, h2) = runs["compiled"], runs["segmented"]
    assert h1.loss[-1] < h1.loss[0]
    np.testing.assert_allclose(h2.loss, h1.loss, rtol=1e-12)
    for a, b in zip(segmented.parameters(), compiled.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())

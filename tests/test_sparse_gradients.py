"""Training with a stateful optimizer on the first layer's kernels for zero inputs.

With an optimizer that cannot be folded into the product (momentum, Adam, AdamW), the
compiled loop still runs the first layer's kernels for mostly-zero inputs: the layer
writes its weight gradient in the panels of those kernels and the optimizer updates the
panels, its state copied into the same layout for the run.  The gradient is checked
against float64 NumPy, and whole runs against the same runs on the full-product kernels
(another order of the additions, so to float32 rounding), with the optimizer's state
back in the public layout afterwards.
"""
import numpy as np
import pytest

import numrec
from numrec._core._layers import _simd_kernels
from numrec._core._training import _sparse_input_kernels

pytestmark = pytest.mark.skipif(not _simd_kernels(), reason="the processor lacks AVX2 and FMA")


def _mostly_zero_pixels(rng, n, n_in, density=0.2):
    pixels = rng.integers(1, 256, size=(n, n_in), dtype=np.uint8)
    return np.where(rng.random((n, n_in)) < density, pixels, 0).astype(np.uint8)


@pytest.mark.parametrize("n_out", [5, 16, 37, 64, 100])
@pytest.mark.parametrize("m", [1, 7, 33])
def test_gradient_in_panels_matches_float64(n_out, m):
    rng = np.random.default_rng(n_out * 100 + m)
    layer = numrec.Dense(75, n_out, seed=rng)
    x = (_mostly_zero_pixels(rng, m, 75) / np.float32(255)).astype(np.float32)
    g = rng.standard_normal((m, n_out)).astype(np.float32)
    weights = layer.weights.copy()
    assert layer._sparse_inputs(True)
    try:
        panels, gradient = layer._sparse_gradients(True)
        assert panels.shape == gradient.shape == ((n_out + 15) // 16, 75, 16)
        layer.forward(x)
        layer.backward(g)
        if n_out % 16:
            assert not gradient[-1, :, n_out % 16:].any()  # the padding stays zero
    finally:
        layer._sparse_inputs(False)
    expected = g.T.astype(np.float64) @ x.astype(np.float64)
    bound = 4e-7 * (np.abs(g.T).astype(np.float64) @ np.abs(x).astype(np.float64)) + 1e-12
    assert np.all(np.abs(layer.grad_weights - expected) <= bound)
    assert np.allclose(layer.grad_bias, g.sum(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-6)
    assert np.array_equal(layer.weights, weights)


def test_gradients_in_panels_need_the_kernels_for_zero_inputs():
    with pytest.raises(RuntimeError, match="zero inputs are off"):
        numrec.Dense(8, 4)._sparse_gradients(True)


OPTIMIZERS = {
    "adam": lambda: numrec.Adam(lr=1e-3),
    "adamw": lambda: numrec.AdamW(lr=1e-3, weight_decay=0.1),
    "momentum": lambda: numrec.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "weight-decay": lambda: numrec.SGD(lr=0.05, weight_decay=0.01),
}


def _run(optimizer_name, hidden, threads, sparse, data, epochs=2):
    x, y = data
    model = numrec.Sequential([numrec.Dense(x.shape[1], hidden, seed=1), numrec.ReLU(),
                               numrec.Dense(hidden, 10, seed=2)])
    optimizer = OPTIMIZERS[optimizer_name]()
    previous = _sparse_input_kernels(sparse)
    try:
        model.fit(x, y, loss=numrec.SoftmaxCrossEntropy(), optimizer=optimizer,
                  batch_size=32, epochs=epochs, seed=3, threads=threads)
    finally:
        _sparse_input_kernels(previous)
    first = model.components[0]
    return first.weights.copy(), first.bias.copy(), optimizer.state()[0], model


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(0)
    x = _mostly_zero_pixels(rng, 640, 196)
    y = rng.integers(0, 10, size=640)
    return x, y


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("hidden", [64, 37])
def test_stateful_training_on_sparse_kernels(digits, optimizer_name, hidden):
    weights, bias, state, model = _run(optimizer_name, hidden, 2, True, digits)
    ref_weights, ref_bias, ref_state, _ = _run(optimizer_name, hidden, 2, False, digits)
    # another order of the additions: the runs differ in their last bits only
    assert not np.array_equal(weights, ref_weights)
    assert np.allclose(weights, ref_weights, rtol=1e-4, atol=2e-6)
    assert np.allclose(bias, ref_bias, rtol=1e-4, atol=2e-6)
    assert len(state) == len(ref_state)
    for got, expected in zip(state, ref_state):  # back in the layout of the weights
        assert got.shape == weights.shape
        assert np.allclose(got, expected, rtol=1e-3, atol=1e-7)
    # the last batch's gradient is readable in the public layout too
    assert model.components[0].grad_weights.shape == weights.shape
    assert np.any(model.components[0].grad_weights)


@pytest.mark.parametrize("optimizer_name", ["adam", "momentum"])
def test_stateful_training_on_sparse_kernels_is_independent_of_threads(digits,
                                                                       optimizer_name):
    one = _run(optimizer_name, 37, 1, True, digits)
    two = _run(optimizer_name, 37, 2, True, digits)
    for a, b in zip(one[:2], two[:2]):
        assert np.array_equal(a, b)
    for a, b in zip(one[2], two[2]):
        assert np.array_equal(a, b)


def test_a_second_fit_continues_from_the_state(digits):
    """Two one-epoch fits with one optimizer equal one two-epoch fit: the state goes
    back to the public layout between them and into the panels again."""
    x, y = digits

    def model():
        return numrec.Sequential([numrec.Dense(196, 37, seed=1), numrec.ReLU(),
                                  numrec.Dense(37, 10, seed=2)])

    both, optimizer = model(), numrec.Adam(lr=1e-3)
    both.fit(x, y, loss=numrec.SoftmaxCrossEntropy(), optimizer=optimizer, batch_size=32,
             epochs=2, seed=3, shuffle=False)
    split, optimizer = model(), numrec.Adam(lr=1e-3)
    for _ in range(2):
        split.fit(x, y, loss=numrec.SoftmaxCrossEntropy(), optimizer=optimizer,
                  batch_size=32, epochs=1, seed=3, shuffle=False)
    for a, b in zip(both.parameters(), split.parameters()):
        assert np.array_equal(a, b)

"""The cross-entropy losses: values worked out by hand, the numerically hard cases
(saturated outputs, large logits), ``probabilities``, argument checks, and training from
logits in the compiled loop.

The conformance suite (tests/test_conformance.py) checks every registered loss against
its NumPy formula and finite differences; these tests cover what is particular to each.
"""
import math
import re

import numpy as np
import pytest

import numrec

FLOAT_NAMES = ("float32", "float64")
# PyTorch's BCELoss floors the derivative's denominator a (1 - a) at the float 1e-12.
BCE_EPS = float(np.float32(1e-12))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- CrossEntropy -------------------------------------------------------------------------

def test_cross_entropy_by_hand():
    output = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
    target = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss = numrec.CrossEntropy(eps=0.0)
    assert loss.value(output, target) == pytest.approx(
        -(math.log(0.7) + math.log(0.5)) / 2, rel=1e-15)
    np.testing.assert_array_equal(loss.gradient(output, target),
                                  [[0, -1 / (0.7 * 2), 0], [-1 / (0.5 * 2), 0, 0]])
    # The default eps = 1e-7 shifts the logarithm's argument.
    default = numrec.CrossEntropy()
    assert default.eps == 1e-7 and repr(default) == "CrossEntropy(eps=1e-07)"
    assert default.value(output, target) == pytest.approx(
        -(math.log(0.7 + 1e-7) + math.log(0.5 + 1e-7)) / 2, rel=1e-15)


@pytest.mark.parametrize("dtype", FLOAT_NAMES)
def test_cross_entropy_of_a_zero_output_is_finite(dtype):
    output = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    target = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=dtype)
    loss = numrec.CrossEntropy(eps=1e-7)
    expected = -(math.log(1e-7) + math.log(1 + 1e-7)) / 2
    assert loss.value(output, target) == pytest.approx(expected, rel=1e-6)
    grad = loss.gradient(output, target)
    assert grad.dtype == dtype and np.isfinite(grad).all()
    assert grad[0, 0] == pytest.approx(-1 / (1e-7 * 2), rel=1e-6)
    # Without eps the logarithm of 0 is infinite: training would stop as diverged.
    assert numrec.CrossEntropy(eps=0).value(output, target) == math.inf


@pytest.mark.parametrize("eps, error, message", [
    (-1e-7, ValueError, "eps must be at least 0.0, got -1e-07"),
    (float("nan"), ValueError, "eps must be finite"),
    ("small", TypeError, "eps must be a number, got str"),
    (True, TypeError, "eps must be a number, got bool"),
])
def test_cross_entropy_bad_eps(eps, error, message):
    with pytest.raises(error, match=re.escape(message)):
        numrec.CrossEntropy(eps=eps)


# --- SoftmaxCrossEntropy ------------------------------------------------------------------

def test_softmax_cross_entropy_by_hand():
    # Row 1: logits (0, ln 3): softmax (1/4, 3/4); row 2: equal logits, softmax 1/2 each.
    logits = np.array([[0.0, math.log(3.0)], [5.0, 5.0]])
    target = np.array([[0.0, 1.0], [1.0, 0.0]])
    loss = numrec.SoftmaxCrossEntropy()
    assert loss.value(logits, target) == pytest.approx(
        -(math.log(0.75) + math.log(0.5)) / 2, rel=1e-15)
    np.testing.assert_allclose(loss.gradient(logits, target),
                               [[0.25 / 2, -0.25 / 2], [-0.5 / 2, 0.5 / 2]], rtol=1e-15)


@pytest.mark.parametrize("dtype", FLOAT_NAMES)
def test_softmax_cross_entropy_of_large_logits_is_exact(dtype):
    """The log-sum-exp subtracts the row's maximum: no overflow, no lost loss."""
    logits = np.array([[1000.0, -1000.0, 0.0], [-1e4, -1e4 + 1, -1e4]], dtype=dtype)
    target = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    loss = numrec.SoftmaxCrossEntropy()
    # Row 1: -log softmax = 2000 + log(1 + e^-1000 + e^-2000) = 2000; row 2:
    # log(e^0 + e^1 + e^0) - 0 with the row's logits shifted by 1e4.
    expected = (2000.0 + math.log(2 + math.e)) / 2
    assert loss.value(logits, target) == pytest.approx(expected, rel=1e-12)
    grad = loss.gradient(logits, target)
    assert grad.dtype == dtype
    p = np.array([1, math.e, 1]) / (2 + math.e)
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], (p - [0, 0, 1]) / 2], rtol=1e-6,
                               atol=1e-300)


def test_softmax_cross_entropy_ignores_a_shift_of_the_logits(rng):
    logits = rng.standard_normal((5, 4))
    target = softmax(rng.standard_normal((5, 4)))  # soft targets, rows summing to 1
    loss = numrec.SoftmaxCrossEntropy()
    shifted = logits + rng.uniform(-50, 50, (5, 1))
    assert loss.value(shifted, target) == pytest.approx(loss.value(logits, target), rel=1e-12)
    np.testing.assert_allclose(loss.gradient(shifted, target), loss.gradient(logits, target),
                               rtol=1e-10, atol=1e-15)
    # Rows summing to 1: the gradient is (softmax - target) / m and each row sums to 0.
    np.testing.assert_allclose(loss.gradient(logits, target), (softmax(logits) - target) / 5,
                               rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("dtype", FLOAT_NAMES)
def test_probabilities(dtype, rng):
    logits = rng.normal(0, 20, (6, 5)).astype(dtype)
    probabilities = numrec.SoftmaxCrossEntropy().probabilities(logits)
    assert probabilities.dtype == dtype and probabilities.shape == logits.shape
    np.testing.assert_allclose(probabilities, softmax(logits.astype(np.float64)),
                               rtol=1e-5 if dtype == "float32" else 1e-13, atol=1e-30)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-6)
    # Every other loss reads the output as it is.
    output = rng.uniform(0, 1, (3, 2))
    for loss in (numrec.MSE(), numrec.CrossEntropy(), numrec.BinaryCrossEntropy()):
        assert loss.probabilities(output) is output


def test_probabilities_of_a_python_loss_is_the_output():
    class Half(numrec.Loss):
        def value(self, output, target):
            return float(np.sum(output - target) / 2)

    output = np.ones((2, 3))
    assert Half().probabilities(output) is output


def test_probabilities_bad_input():
    loss = numrec.SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=re.escape("output must have shape (n, n)")):
        loss.probabilities(np.ones(3))
    with pytest.raises(TypeError, match="output must have dtype float32 or float64"):
        loss.probabilities(np.ones((2, 3), dtype=np.int64))


# --- BinaryCrossEntropy -------------------------------------------------------------------

def test_binary_cross_entropy_by_hand():
    output = np.array([[0.2, 0.9], [0.5, 0.6]])
    target = np.array([[0.0, 1.0], [1.0, 0.25]])
    loss = numrec.BinaryCrossEntropy()
    expected = -(math.log(0.8) + math.log(0.9) + math.log(0.5)
                 + 0.25 * math.log(0.6) + 0.75 * math.log(0.4)) / 2
    assert loss.value(output, target) == pytest.approx(expected, rel=1e-15)
    np.testing.assert_allclose(
        loss.gradient(output, target),
        [[0.2 / (0.2 * 0.8 * 2), -0.1 / (0.9 * 0.1 * 2)],
         [-0.5 / (0.25 * 2), 0.35 / (0.6 * 0.4 * 2)]], rtol=1e-14)


@pytest.mark.parametrize("dtype", FLOAT_NAMES)
def test_binary_cross_entropy_of_saturated_outputs(dtype):
    """As in PyTorch: logarithms clamped at -100, the denominator a (1 - a) at 1e-12."""
    output = np.array([[0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    target = np.array([[1.0, 0.0, 0.0, 1.0]], dtype=dtype)
    loss = numrec.BinaryCrossEntropy()
    assert loss.value(output, target) == 200.0
    grad = loss.gradient(output, target)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, [[-1 / BCE_EPS, 1 / BCE_EPS, 0.0, 0.0]], rtol=1e-7)


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan")])
def test_binary_cross_entropy_refuses_outputs_outside_0_1(bad):
    output = np.array([[0.5, bad]])
    message = "output must hold probabilities in [0, 1]"
    with pytest.raises(ValueError, match=re.escape(message)):
        numrec.BinaryCrossEntropy().value(output, np.zeros((1, 2)))
    with pytest.raises(ValueError, match=re.escape(message)):
        numrec.BinaryCrossEntropy().gradient(output, np.zeros((1, 2)))


# --- inside models ------------------------------------------------------------------------

def logits_model(dtype, sizes=(20, 32, 4), seed=3):
    """Dense, ReLU, Dense: the output is the last layer's scores."""
    rng = np.random.default_rng(seed)
    n_in, hidden, n_out = sizes
    return numrec.Sequential([
        numrec.Dense(n_in, hidden, seed=rng, dtype=dtype), numrec.ReLU(),
        numrec.Dense(hidden, n_out, seed=rng, dtype=dtype),
    ])


def data(n, n_in, n_out, seed=4):
    """Inputs and labels that a linear model can learn (the argmax of x @ w)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in))
    return x, (x @ rng.standard_normal((n_in, n_out))).argmax(axis=1)


@pytest.mark.parametrize("dtype", FLOAT_NAMES)
def test_logits_model_trains_in_the_compiled_loop(dtype):
    x, y = data(400, 20, 4)
    x = x.astype(dtype)
    runs = {}
    for fused in (True, False):
        model = logits_model(dtype)
        history = model.fit(x, y, epochs=3, batch_size=32, loss=numrec.SoftmaxCrossEntropy(),
                            optimizer=numrec.SGD(0.1), seed=5, fused=fused)
        runs[fused] = model, history
    (compiled, compiled_history), (python, python_history) = runs[True], runs[False]
    assert compiled_history.loop == "compiled" and python_history.loop == "python"
    rtol = 1e-12 if dtype == "float64" else 1e-4
    for a, b in zip(compiled.parameters(), python.parameters()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    np.testing.assert_allclose(compiled_history.loss, python_history.loss, rtol=rtol)
    assert compiled_history.loss[-1] < 0.8 * compiled_history.loss[0]
    # The training loss is the NumPy formula on the model's scores (here after the run).
    scores = compiled.forward(x)
    expected = -np.mean(np.log(softmax(scores.astype(np.float64))[np.arange(len(y)), y]))
    result = compiled.evaluate(x, y, loss=numrec.SoftmaxCrossEntropy())
    assert result["loss"] == pytest.approx(expected, rel=1e-12 if dtype == "float64" else 1e-5)
    assert result["accuracy"] == np.mean(scores.argmax(axis=1) == y)


def test_single_dense_layer_trains_in_the_compiled_loop():
    """Multinomial logistic regression: one Dense layer and no activation at all."""
    x, y = data(300, 10, 3)
    runs = []
    for fused in (True, False):
        model = numrec.Sequential([numrec.Dense(10, 3, seed=6, dtype=np.float64)])
        history = model.fit(x, y, epochs=2, batch_size=16, loss=numrec.SoftmaxCrossEntropy(),
                            optimizer=numrec.SGD(0.2), seed=7, fused=fused)
        runs.append((model, history))
    assert runs[0][1].loop == "compiled" and runs[1][1].loop == "python"
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert runs[0][1].loss[-1] < runs[0][1].loss[0]


@pytest.mark.parametrize("dtype", FLOAT_NAMES)
@pytest.mark.parametrize("batch_size, sizes", [(32, (784, 256, 10)), (512, (100, 64, 10))])
def test_logits_model_same_bits_for_one_and_two_threads(dtype, batch_size, sizes):
    # Batch 32: the threads share the 784 x 256 layer's units.  Batch 512: BLAS would
    # thread the 784 x 256 products with other bits (see tests/test_conformance.py).
    rng = np.random.default_rng(8)
    x = rng.uniform(0, 1, (1200, sizes[0])).astype(dtype)
    y = rng.integers(0, 10, 1200)
    runs = []
    for threads in (1, 2):
        model = logits_model(dtype, sizes)
        history = model.fit(x, y, epochs=2, batch_size=batch_size,
                            loss=numrec.SoftmaxCrossEntropy(), optimizer=numrec.SGD(0.1),
                            seed=9, threads=threads, fused=True)
        assert history.loop == "compiled"
        runs.append((model.parameters(), history.loss))
    for i, (a, b) in enumerate(zip(runs[0][0], runs[1][0])):
        assert np.array_equal(a, b), f"parameter {i} differs between 1 and 2 threads"
    assert runs[0][1] == runs[1][1]


@pytest.mark.parametrize("loss, reference", [
    (numrec.CrossEntropy(), lambda a, y: -np.sum(y * np.log(1e-7 + a)) / len(a)),
    (numrec.SoftmaxCrossEntropy(), lambda a, y: -np.sum(y * np.log(softmax(a))) / len(a)),
    (numrec.BinaryCrossEntropy(),
     lambda a, y: -np.sum(y * np.log(a) + (1 - y) * np.log(1 - a)) / len(a)),
], ids=lambda value: type(value).__name__)
def test_evaluate_with_each_loss(loss, reference):
    """evaluate() gives the loss of the model's raw output (scores, for the softmax one)."""
    x, y = data(50, 20, 4, seed=10)
    rng = np.random.default_rng(11)
    model = numrec.Sequential([numrec.Dense(20, 4, seed=rng, dtype=np.float64),
                               numrec.Sigmoid()])
    output = model.forward(x)
    expected = reference(output, np.eye(4)[y])
    assert model.evaluate(x, y, loss=loss)["loss"] == pytest.approx(expected, rel=1e-12)


class PyReLU(numrec.Activation):
    def forward(self, z):
        return np.maximum(z, 0)

    def derivative(self, z, a):
        return (z > 0).astype(z.dtype)


@pytest.mark.parametrize("loss", [numrec.SoftmaxCrossEntropy(), numrec.CrossEntropy(),
                                  numrec.BinaryCrossEntropy()],
                         ids=lambda loss: type(loss).__name__)
def test_segmented_loop_runs_the_loss_inside_the_last_trainer(loss):
    """A Python hidden activation: the last Dense layer (and its Sigmoid, except for the
    softmax loss, which reads scores) run compiled with the loss after it."""
    x, y = data(300, 20, 4, seed=12)
    runs = []
    for fused in (None, False):
        rng = np.random.default_rng(13)
        components = [numrec.Dense(20, 32, seed=rng, dtype=np.float64), PyReLU(),
                      numrec.Dense(32, 4, seed=rng, dtype=np.float64)]
        if not isinstance(loss, numrec.SoftmaxCrossEntropy):
            components.append(numrec.Sigmoid())
        model = numrec.Sequential(components)
        history = model.fit(x, y, epochs=2, batch_size=16, loss=loss,
                            optimizer=numrec.SGD(0.1), seed=14, fused=fused)
        runs.append((model, history))
    assert runs[0][1].loop == "segmented" and runs[1][1].loop == "python"
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(runs[0][1].loss, runs[1][1].loss, rtol=1e-12)
    assert runs[0][1].loss[-1] < runs[0][1].loss[0]

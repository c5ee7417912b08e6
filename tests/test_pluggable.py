"""Components written in plain Python work beside the compiled ones.

Also: the compiled training loop (``fused=True``) and the per-batch Python loop
(``fused=False``) compute the same numbers.
"""
import numpy as np
import pytest

import numrec
from python_components import PyDense, PyMSE, PySigmoid


# --- Python components, written with NumPy only --------------------------------------------

class PyLeakyReLU(numrec.Activation):
    def __init__(self, alpha=0.2):
        self.alpha = alpha

    def forward(self, z):
        return np.where(z > 0, z, self.alpha * z).astype(z.dtype)

    def derivative(self, z, a):
        return np.where(z > 0, 1.0, self.alpha).astype(z.dtype)


class PySGD(numrec.Optimizer):
    def __init__(self, lr):
        self.lr = lr

    def step(self, parameters, gradients):
        for param, grad in zip(parameters, gradients):
            param -= param.dtype.type(self.lr) * grad


class PyMomentum(numrec.Optimizer):
    """Classic momentum: v <- mu v - lr g; theta <- theta + v."""

    def __init__(self, lr, momentum=0.9):
        self.lr, self.momentum = lr, momentum
        self.velocity = {}

    def step(self, parameters, gradients):
        for slot, (param, grad) in enumerate(zip(parameters, gradients)):
            velocity = self.velocity.setdefault(slot, np.zeros_like(param))
            velocity *= self.momentum
            velocity -= self.lr * grad
            param += velocity


# --- models and data ---------------------------------------------------------------------

def make_model(dtype=np.float64, hidden=None, output=None, first=None, sizes=(6, 5, 3)):
    """A small network; each part may be replaced by a Python-written one."""
    n_in, n_hidden, n_out = sizes
    dense1 = numrec.Dense(n_in, n_hidden, seed=21, dtype=dtype)
    dense2 = numrec.Dense(n_hidden, n_out, seed=22, dtype=dtype)
    dense1.bias = np.linspace(-0.3, 0.3, n_hidden).astype(dtype)
    if first is not None:
        dense1 = first(dense1.weights.copy(), dense1.bias.copy())
    return numrec.Sequential([
        dense1, hidden if hidden is not None else numrec.LeakyReLU(0.2),
        dense2, output if output is not None else numrec.Sigmoid(),
    ])


def toy_data(n=240, n_in=6, n_out=3, seed=0, dtype=np.float64):
    """Classes separable by a random linear map."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(dtype)
    y = np.argmax(x @ rng.standard_normal((n_in, n_out)), axis=1)
    return x, y


def assert_same_parameters(model_a, model_b, rtol):
    params_a, params_b = model_a.parameters(), model_b.parameters()
    assert len(params_a) == len(params_b) > 0
    for a, b in zip(params_a, params_b):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)))


# --- isinstance ----------------------------------------------------------------------------

def test_builtins_are_instances_of_the_abstract_classes():
    assert isinstance(numrec.Dense(2, 3), numrec.Layer)
    assert isinstance(numrec.LeakyReLU(), numrec.Activation)
    assert isinstance(numrec.Sigmoid(), numrec.Activation)
    assert isinstance(numrec.MSE(), numrec.Loss)
    assert isinstance(numrec.SGD(0.1), numrec.Optimizer)
    assert not isinstance(numrec.Dense(2, 3), numrec.Activation)
    assert not isinstance(numrec.Sigmoid(), numrec.Layer)
    assert not isinstance(numrec.MSE(), numrec.Optimizer)


def test_python_subclasses_are_instances():
    assert isinstance(PyLeakyReLU(), numrec.Activation)
    assert isinstance(PyMSE(), numrec.Loss)
    assert isinstance(PySGD(0.1), numrec.Optimizer)
    assert isinstance(PyDense(np.ones((2, 3)), np.zeros(2)), numrec.Layer)


def assert_same_outputs_and_gradients(compiled, python):
    """Both models give the same outputs, dL/dx and parameter gradients on toy data."""
    x, y = toy_data(n=9)
    target = np.eye(3)[y]
    out_c, out_p = compiled.forward(x), python.forward(x)
    np.testing.assert_allclose(out_p, out_c, rtol=1e-13)
    gx_c = compiled.backward(numrec.MSE().gradient(out_c, target))
    gx_p = python.backward(numrec.MSE().gradient(out_p, target))
    np.testing.assert_allclose(gx_p, gx_c, rtol=1e-12, atol=1e-15)
    for g_c, g_p in zip(compiled.gradients(), python.gradients()):
        np.testing.assert_allclose(g_p, g_c, rtol=1e-12, atol=1e-15)


# --- activations ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "slot, python_component",
    [("hidden", PyLeakyReLU(0.2)), ("output", PySigmoid())],
    ids=["leaky_relu", "sigmoid"],
)
def test_python_activation_same_outputs_and_gradients(slot, python_component):
    compiled = make_model()
    python = make_model(**{slot: python_component})
    assert_same_outputs_and_gradients(compiled, python)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_python_activation_trains_like_the_compiled_one(dtype):
    x, y = toy_data(dtype=dtype)
    compiled = make_model(dtype)
    python = make_model(dtype, hidden=PyLeakyReLU(0.2), output=PySigmoid())
    h_c = compiled.fit(x, y, epochs=3, batch_size=16, seed=5)
    h_p = python.fit(x, y, epochs=3, batch_size=16, seed=5)
    assert h_c.fused is True
    assert h_p.fused is False
    assert_same_parameters(python, compiled, rtol=1e-10 if dtype == np.float64 else 1e-4)
    np.testing.assert_allclose(h_p.loss, h_c.loss, rtol=1e-10 if dtype == np.float64 else 1e-4)


# --- loss and optimizer --------------------------------------------------------------------

def test_python_loss_matches_compiled_mse():
    x, y = toy_data(n=8)
    target = np.eye(3)[y]
    output = make_model().forward(x)
    assert PyMSE().value(output, target) == pytest.approx(
        numrec.MSE().value(output, target), rel=1e-13)
    compiled, python = make_model(), make_model()
    h_c = compiled.fit(x, y, epochs=2, batch_size=4, loss=numrec.MSE(), seed=1)
    h_p = python.fit(x, y, epochs=2, batch_size=4, loss=PyMSE(), seed=1)
    assert h_p.fused is False
    assert_same_parameters(python, compiled, rtol=1e-10)
    np.testing.assert_allclose(h_p.loss, h_c.loss, rtol=1e-10)


def test_python_loss_trains():
    x, y = toy_data()
    model = make_model()
    history = model.fit(x, y, epochs=15, batch_size=16, loss=PyMSE(),
                        optimizer=numrec.SGD(0.5), seed=2)
    assert history.loss[-1] < 0.6 * history.loss[0]


def test_python_sgd_matches_compiled_sgd():
    x, y = toy_data()
    fallback, fused, python = make_model(), make_model(), make_model()
    h_fallback = fallback.fit(x, y, epochs=3, batch_size=16, optimizer=numrec.SGD(0.5),
                              seed=3, fused=False)
    h_fused = fused.fit(x, y, epochs=3, batch_size=16, optimizer=numrec.SGD(0.5), seed=3)
    h_python = python.fit(x, y, epochs=3, batch_size=16, optimizer=PySGD(0.5), seed=3)
    assert (h_fallback.fused, h_fused.fused, h_python.fused) == (False, True, False)
    assert_same_parameters(python, fallback, rtol=1e-13)
    assert_same_parameters(python, fused, rtol=1e-10)
    np.testing.assert_allclose(h_python.loss, h_fused.loss, rtol=1e-10)


def test_python_momentum_trains():
    x, y = toy_data()
    model = make_model()
    start = model.evaluate(x, np.eye(3)[y])
    history = model.fit(x, y, epochs=15, batch_size=16, optimizer=PyMomentum(0.1, 0.9),
                        seed=4)
    assert history.fused is False
    assert history.loss[-1] < 0.5 * history.loss[0]
    end = model.evaluate(x, np.eye(3)[y])
    assert end["loss"] < start["loss"]
    assert end["accuracy"] > 0.9


def test_python_momentum_step_matches_numpy():
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((2, 3)), rng.standard_normal(3)]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(3)]
    expected = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    optimizer = PyMomentum(0.1, 0.9)
    for step_grads in grads:
        optimizer.step(params, step_grads)
        for i, g in enumerate(step_grads):
            velocity[i] = 0.9 * velocity[i] - 0.1 * g
            expected[i] = expected[i] + velocity[i]
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=1e-14)


# --- layers --------------------------------------------------------------------------------

def test_python_layer_same_outputs_and_gradients():
    compiled, python = make_model(), make_model(first=PyDense)
    assert isinstance(python.components[0], PyDense)
    assert_same_outputs_and_gradients(compiled, python)


def test_python_layer_trains_like_the_compiled_one():
    x, y = toy_data()
    compiled, python = make_model(), make_model(first=PyDense)
    h_c = compiled.fit(x, y, epochs=3, batch_size=16, seed=6)
    h_p = python.fit(x, y, epochs=3, batch_size=16, seed=6)
    assert (h_c.fused, h_p.fused) == (True, False)
    assert_same_parameters(python, compiled, rtol=1e-10)
    assert h_p.loss[-1] < h_p.loss[0]


# --- fused and fallback loops ----------------------------------------------------------------

@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)],
                         ids=["float64", "float32"])
def test_fused_and_fallback_give_the_same_weights(dtype, rtol):
    x, y = toy_data(dtype=dtype)
    results = {}
    for fused in (True, False):
        model = make_model(dtype)
        history = model.fit(x, y, epochs=3, batch_size=16, optimizer=numrec.SGD(0.5),
                            validation_data=(x[:60], y[:60]), seed=7, fused=fused)
        assert history.fused is fused
        results[fused] = model, history
    (m_fused, h_fused), (m_fallback, h_fallback) = results[True], results[False]
    assert_same_parameters(m_fused, m_fallback, rtol)
    np.testing.assert_allclose(h_fused.loss, h_fallback.loss, rtol=rtol)
    assert h_fused.val_accuracy == h_fallback.val_accuracy


def test_fused_and_fallback_with_uint8_pixels_and_target_rows():
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, size=(96, 6), dtype=np.uint8)
    target = rng.uniform(size=(96, 3))
    models = {}
    for fused in (True, False):
        model = make_model()
        assert model.fit(x, target, epochs=2, batch_size=10, seed=9, fused=fused).fused is fused
        models[fused] = model
    assert_same_parameters(models[True], models[False], rtol=1e-10)


def test_default_picks_the_fused_loop_for_compiled_models():
    x, y = toy_data(n=32)
    assert make_model().fit(x, y, seed=0).fused is True
    assert make_model().fit(x, y, seed=0, fused=True).fused is True


@pytest.mark.parametrize(
    "case",
    ["activation", "layer", "loss", "optimizer"],
)
def test_python_component_means_fallback_and_fused_true_raises(case):
    x, y = toy_data(n=32)

    def build():
        if case == "activation":
            return make_model(hidden=PyLeakyReLU(0.2)), {}
        if case == "layer":
            return make_model(first=PyDense), {}
        if case == "loss":
            return make_model(), {"loss": PyMSE()}
        return make_model(), {"optimizer": PySGD(0.5)}

    model, extra = build()
    assert model.fit(x, y, seed=0, **extra).fused is False
    model, extra = build()
    before = [param.copy() for param in model.parameters()]
    with pytest.raises(ValueError, match="fused=True"):
        model.fit(x, y, seed=0, fused=True, **extra)
    for param, old in zip(model.parameters(), before):  # nothing was trained
        np.testing.assert_array_equal(param, old)


def test_python_subclass_of_a_compiled_component_is_not_fused():
    class LoggingSigmoid(numrec.Sigmoid):
        calls = 0

        def forward(self, z):
            LoggingSigmoid.calls += 1
            return super().forward(z)

    x, y = toy_data(n=32)
    model = make_model(output=LoggingSigmoid())
    history = model.fit(x, y, epochs=1, batch_size=8, seed=0)
    assert history.fused is False
    assert LoggingSigmoid.calls >= 4  # the override ran for every batch
    reference = make_model()
    reference.fit(x, y, epochs=1, batch_size=8, seed=0)
    assert_same_parameters(model, reference, rtol=1e-10)

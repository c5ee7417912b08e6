"""The segmented loop: Python-written parts inside an otherwise compiled model.

``fit`` keeps each run of compiled components compiled and calls only the Python-written
components (and a Python-written loss or optimizer) per batch.  It computes the same
numbers as the compiled loop and as the Python loop (``fused=False``), and checks what a
Python-written component returns before compiled code reads it.
"""
import numpy as np
import pytest

import numrec
from python_components import PyDense, PyMSE, PySigmoid


# --- Python components, written with NumPy only --------------------------------------------

class PyLeakyReLU(numrec.Activation):
    """The leaky ReLU as the compiled kernel computes it: z times a slope of z's dtype."""

    def __init__(self, alpha=0.2):
        self.alpha = alpha

    def forward(self, z):
        return z * self.slope(z)

    def derivative(self, z, a):
        return self.slope(z)

    def slope(self, z):
        return np.where(z > 0, z.dtype.type(1), z.dtype.type(self.alpha))


class PyMomentumSGD(numrec.Optimizer):
    """torch.optim.SGD with momentum (dampening 0): v <- mu v + g; theta <- theta - lr v."""

    def __init__(self, lr, momentum=0.0):
        self.lr, self.momentum = lr, momentum
        self.velocity = {}

    def step(self, parameters, gradients):
        for slot, (param, grad) in enumerate(zip(parameters, gradients)):
            if self.momentum:
                velocity = self.velocity.setdefault(slot, np.zeros_like(param))
                velocity *= self.momentum
                velocity += grad
                grad = velocity
            param -= self.lr * grad


# --- models and data -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    """2000 MNIST training digits and 500 test digits, uint8 pixels."""
    (x_train, y_train), (x_test, y_test) = numrec.datasets.load_mnist(dtype=np.uint8)
    return (x_train[:2000], y_train[:2000]), (x_test[:500], y_test[:500])


def reference_network(dtype, hidden=None):
    """numrec's reference network (784-256-10), its hidden activation replaceable."""
    model = numrec.mnist_mlp(seed=3, dtype=dtype)
    if hidden is not None:
        model.components[1] = hidden
    return numrec.Sequential(model.components)


def small_model(dtype=np.float64, hidden=None, output=None, middle=None, first=None):
    """Dense(20, 32) LeakyReLU Dense(32, 16) ReLU Dense(16, 3) Sigmoid; ``hidden`` and
    ``output`` replace the first and last activations, ``first`` and ``middle`` (a
    layer class taking weights and bias) the first two Dense layers."""
    rng = np.random.default_rng(30)
    layers = []
    for n_in, n_out in ((20, 32), (32, 16), (16, 3)):
        layer = numrec.Dense(n_in, n_out, seed=rng, dtype=dtype)
        layer.bias = rng.uniform(-0.2, 0.2, n_out).astype(dtype)
        layers.append(layer)
    if first is not None:
        layers[0] = first(layers[0].weights.copy(), layers[0].bias.copy())
    if middle is not None:
        layers[1] = middle(layers[1].weights.copy(), layers[1].bias.copy())
    return numrec.Sequential([
        layers[0], hidden if hidden is not None else numrec.LeakyReLU(0.2),
        layers[1], numrec.ReLU(),
        layers[2], output if output is not None else numrec.Sigmoid(),
    ])


def random_data(n=300, n_in=20, n_out=3, dtype=np.float64, seed=31):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(dtype)
    return x, np.argmax(x @ rng.standard_normal((n_in, n_out)), axis=1)


def train(model, data=None, **options):
    x, y = data if data is not None else random_data(dtype=model.dtype)
    options = {"epochs": 2, "batch_size": 32, "seed": 32, **options}
    if "optimizer" not in options:
        options["optimizer"] = numrec.SGD(0.2)
    return model.fit(x, y, **options)


def assert_same_parameters(model_a, model_b, rtol=1e-12):
    params_a, params_b = model_a.parameters(), model_b.parameters()
    assert len(params_a) == len(params_b) > 0
    for i, (a, b) in enumerate(zip(params_a, params_b)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)),
                                   err_msg=f"parameter {i}")


# --- the same numbers as the compiled loop and the Python loop --------------------------------

@pytest.mark.parametrize("threads", [1, 2])
def test_python_activation_gives_the_compiled_bits_in_float32(digits, threads):
    """The segmented model runs the very kernels of the compiled one around the
    Python-written activation: the same bits, batch 32, float32."""
    (x, y), validation = digits
    runs = []
    for hidden in (None, PyLeakyReLU(0.2)):
        model = reference_network(np.float32, hidden)
        history = model.fit(x, y, epochs=2, batch_size=32, optimizer=numrec.SGD(0.5),
                            seed=4, threads=threads, validation_data=validation)
        runs.append((model, history))
    (compiled, h_compiled), (segmented, h_segmented) = runs
    assert h_compiled.loop == "compiled" and h_segmented.loop == "segmented"
    for i, (a, b) in enumerate(zip(compiled.parameters(), segmented.parameters())):
        assert a.dtype == b.dtype == np.float32
        assert np.array_equal(a, b), f"parameter {i} differs"
    assert h_segmented.loss == h_compiled.loss
    assert h_segmented.val_accuracy == h_compiled.val_accuracy
    assert h_segmented.loss[-1] < h_segmented.loss[0]


def test_python_activation_agrees_with_the_python_loop_in_float64(digits):
    (x, y), validation = digits
    runs = []
    for fused in (None, False):
        model = reference_network(np.float64, PyLeakyReLU(0.2))
        history = model.fit(x, y, epochs=2, batch_size=32, optimizer=numrec.SGD(0.5),
                            seed=5, fused=fused, validation_data=validation)
        runs.append((model, history))
    (segmented, h_segmented), (python, h_python) = runs
    assert (h_segmented.loop, h_python.loop) == ("segmented", "python")
    assert_same_parameters(segmented, python, rtol=1e-12)
    np.testing.assert_allclose(h_segmented.loss, h_python.loss, rtol=1e-12)
    assert h_segmented.val_accuracy == h_python.val_accuracy


@pytest.mark.parametrize("where", ["hidden", "output", "both"])
def test_python_activations_anywhere_match_both_loops(where):
    """Before a compiled run, at the model's end (the loss then runs on its output), or
    both."""
    def build():
        python = {}
        if where in ("hidden", "both"):
            python["hidden"] = PyLeakyReLU(0.2)
        if where in ("output", "both"):
            python["output"] = PySigmoid()
        return small_model(**python)

    compiled, segmented, python = small_model(), build(), build()
    h_compiled, h_segmented = train(compiled), train(segmented)
    h_python = train(python, fused=False)
    assert (h_compiled.loop, h_segmented.loop, h_python.loop) == \
        ("compiled", "segmented", "python")
    assert_same_parameters(segmented, python)
    assert_same_parameters(segmented, compiled)
    np.testing.assert_allclose(h_segmented.loss, h_python.loss, rtol=1e-12)


def test_python_loss_runs_in_the_segmented_loop():
    compiled, segmented, python = small_model(), small_model(), small_model()
    h_compiled = train(compiled, loss=numrec.MSE())
    h_segmented = train(segmented, loss=PyMSE())
    h_python = train(python, loss=PyMSE(), fused=False)
    assert (h_compiled.loop, h_segmented.loop, h_python.loop) == \
        ("compiled", "segmented", "python")
    assert_same_parameters(segmented, compiled)
    assert_same_parameters(segmented, python)
    np.testing.assert_allclose(h_segmented.loss, h_compiled.loss, rtol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_python_optimizer_runs_in_the_segmented_loop(momentum):
    """The compiled parts write the gradients beside the parameters; the Python-written
    optimizer updates them after each batch, as SGD would."""
    compiled, segmented, python = small_model(), small_model(), small_model()
    h_compiled = train(compiled, optimizer=numrec.SGD(0.1, momentum))
    h_segmented = train(segmented, optimizer=PyMomentumSGD(0.1, momentum))
    h_python = train(python, optimizer=PyMomentumSGD(0.1, momentum), fused=False)
    assert (h_compiled.loop, h_segmented.loop, h_python.loop) == \
        ("compiled", "segmented", "python")
    assert_same_parameters(segmented, compiled)
    assert_same_parameters(segmented, python)
    np.testing.assert_allclose(h_segmented.loss, h_compiled.loss, rtol=1e-12)


@pytest.mark.parametrize("position", ["middle", "first"])
def test_python_layer_with_compiled_momentum(position):
    """A NumPy Dense between compiled layers (or first): the compiled SGD with momentum
    updates its parameters too, part by part."""
    segmented, python = small_model(**{position: PyDense}), small_model(**{position: PyDense})
    compiled = small_model()
    index = 2 if position == "middle" else 0
    before = [p.copy() for p in segmented.components[index].parameters()]
    runs = [train(model, optimizer=numrec.SGD(0.05, 0.9), **options)
            for model, options in ((segmented, {}), (python, {"fused": False}),
                                   (compiled, {}))]
    assert [history.loop for history in runs] == ["segmented", "python", "compiled"]
    for old, new in zip(before, segmented.components[index].parameters()):
        assert not np.array_equal(old, new), "the Python layer's parameters must train"
    assert_same_parameters(segmented, python)
    assert_same_parameters(segmented, compiled)
    np.testing.assert_allclose(runs[0].loss, runs[1].loss, rtol=1e-12)


# --- which loop ran ------------------------------------------------------------------------

@pytest.mark.parametrize("fused, loop", [(None, "compiled"), (True, "compiled"),
                                         (False, "python")])
def test_history_loop_of_a_compiled_model(fused, loop):
    history = train(small_model(), epochs=1, fused=fused)
    assert history.loop == loop
    assert history.fused is (loop == "compiled")


@pytest.mark.parametrize("part", ["activation", "layer", "loss", "optimizer"])
@pytest.mark.parametrize("fused, loop", [(None, "segmented"), (False, "python")])
def test_history_loop_with_a_python_part(part, fused, loop):
    model, options = with_python_part(part)
    history = train(model, epochs=1, fused=fused, **options)
    assert history.loop == loop
    assert history.fused is False


def with_python_part(part):
    """A small model and fit options with one Python-written part."""
    if part == "activation":
        return small_model(hidden=PyLeakyReLU(0.2)), {}
    if part == "layer":
        return small_model(middle=PyDense), {}
    if part == "loss":
        return small_model(), {"loss": PyMSE()}
    return small_model(), {"optimizer": PyMomentumSGD(0.1)}


@pytest.mark.parametrize("part, names", [
    ("activation", r"components\[1\]: PyLeakyReLU"),
    ("layer", r"components\[2\]: PyDense"),
    ("loss", r"loss: PyMSE"),
    ("optimizer", r"optimizer: PyMomentumSGD"),
])
def test_fused_true_names_the_python_part(part, names):
    model, options = with_python_part(part)
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"fused=True .*" + names + " is written in Python"):
        train(model, fused=True, **options)
    for param, old in zip(model.parameters(), before):  # nothing was trained
        np.testing.assert_array_equal(param, old)


# --- what a Python-written component returns is checked ----------------------------------------

class WrongDtype(numrec.Activation):
    """Returns float64 whatever the model's dtype, from call ``bad_from`` on."""

    def __init__(self, bad_from=1):
        self.calls, self.bad_from = 0, bad_from

    def forward(self, z):
        self.calls += 1
        a = np.maximum(z, 0)
        return a.astype(np.float64) if self.calls >= self.bad_from else a

    def derivative(self, z, a):
        return (z > 0).astype(z.dtype)


class WrongWidth(numrec.Activation):
    """Drops the last column, from call ``bad_from`` on."""

    def __init__(self, bad_from=1):
        self.calls, self.bad_from = 0, bad_from

    def forward(self, z):
        self.calls += 1
        a = np.maximum(z, 0)
        return a[:, :-1].copy() if self.calls >= self.bad_from else a

    def derivative(self, z, a):
        return (z > 0).astype(z.dtype)


ERRORS = {
    "dtype": (WrongDtype, TypeError,
              r"components\[1\] \(WrongDtype\) returned dtype float64; the model's dtype "
              r"is float32"),
    "width": (WrongWidth, ValueError,
              r"components\[1\] \(WrongWidth\) returned shape \(32, 31\) for a batch of 32; "
              r"expected \(32, 32\)"),
}


@pytest.mark.parametrize("kind", list(ERRORS))
def test_wrong_output_mid_training_is_named(kind):
    """The segmented loop checks every batch's output of a Python-written part before
    the compiled part after it reads it (here the part goes wrong after fit's first
    look at the model)."""
    cls, error, message = ERRORS[kind]
    model = small_model(np.float32, hidden=cls(bad_from=2))
    with pytest.raises(error, match=message):
        train(model)


# fit's first look at the model (the one-row forward pass that counts the outputs) checks a
# Python-written component's output as the segmented loop does per batch.
@pytest.mark.parametrize("kind", list(ERRORS))
def test_wrong_output_from_the_start_is_named(kind):
    """The same mistake from the first call on gets the same message naming the part.

    FAILS at the time of writing (a numrec bug, reported): before the loop starts, ``fit``
    runs the model on one row (``_predict_batch``, to count the outputs), and the Dense
    after the Python-written part rejects its input with a message that names neither
    the part nor its index ("x must have dtype float32, got float64"; "x must have shape
    (n, 32), got (1, 31)").
    """
    cls, error, message = ERRORS[kind]
    model = small_model(np.float32, hidden=cls())
    with pytest.raises(error, match=message.split(" returned")[0]):
        train(model)

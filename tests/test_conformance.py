"""The conformance suite: every registered built-in keeps every promise of its kind.

The tests are parametrised over :data:`numrec.registry.BUILTINS` and each entry's
``examples`` (ids such as ``Dense-0``), so a new built-in is tested by being registered:

- layers and activations: gradients against central finite differences (float64, and
  float32 against the float64 analytic gradient), ``forward_pass``/``backward_pass``,
  a save and load round trip, the compiled loop against the Python loop;
- losses: the value (and, where given, the gradient) against a NumPy formula, the
  gradient against finite differences, the compiled loop against the Python loop, and
  the same bits for one and two threads;
- optimizers: three steps against a NumPy implementation of the documented formula,
  ``prepare`` and ``steps``, the compiled loop against the Python loop, and the same bits
  for one and two threads;
- every component: ``get_config`` round trips, ``repr``, the kernel contract
  (``kernel_dtypes``, ``kernel_problem``).

A new loss or optimizer also needs its NumPy reference in ``LOSS_REFERENCES`` or
``OPTIMIZER_REFERENCES`` below (the tests say so when it is missing).
"""
import re
from pathlib import Path

import numpy as np
import pytest

import numrec
from numrec._core._training import kernel_problem, plan_problem
from numrec.registry import BUILTINS, KINDS

DOCS = Path(__file__).resolve().parents[1] / "docs"
FLOAT_NAMES = ("float32", "float64")
CAPABILITIES = {"folded_sgd", "pixels", "sparse_inputs", "sparse_gradients", "deferred_update",
                "rowwise_input", "columnwise_input", "rowwise_forward"}
BASES = {"layer": numrec.Layer, "activation": numrec.Activation, "loss": numrec.Loss,
         "optimizer": numrec.Optimizer}

EPS64 = 1e-6        # finite-difference step in float64
EPS32 = 1e-2        # in float32 (a smaller step drowns in rounding)
TIGHT = 1e-7        # relative error (by norm) of a float64 gradient check
LOOSE = 1e-3        # of a float32 finite-difference check
ROUNDING32 = 1e-5   # float32 analytic gradient against the float64 one at the same point
MAX_CHECKED = 120   # entries of one array checked by finite differences (a random sample)
KINK_MARGIN = 0.05  # activations are checked away from z = 0 (the kink of ReLU-like ones)


def cases(*kinds):
    """``pytest.param(entry, config, id="Name-i")`` for each example of each entry of ``kinds``."""
    return [pytest.param(entry, config, id=f"{name}-{index}")
            for name, entry in BUILTINS.items() if entry.kind in kinds
            for index, config in enumerate(entry.examples)]


# Layers over images: the input shape (channels, height, width) of each example.
IMAGE_SHAPES = {"Conv2D": [(2, 5, 4), (3, 6, 5)], "MaxPool2D": [(2, 6, 4), (3, 5, 6)],
                "Flatten": [(2, 3, 4)]}


def build(entry, config, dtype=None):
    """An instance of ``entry`` from the example ``config`` (in ``dtype``, for a class whose
    config has a dtype), built for its input shape if it takes images."""
    kwargs = dict(config)
    if dtype is not None and "dtype" in entry.config:
        kwargs["dtype"] = np.dtype(dtype).name
    component = entry.cls(**kwargs)
    if entry.name in IMAGE_SHAPES:
        component.build(IMAGE_SHAPES[entry.name][entry.examples.index(config)])
    return component


def dtypes_of(entry):
    return [np.dtype(name) for name in entry.cls.kernel_dtypes]


# --- finite differences --------------------------------------------------------------------

def checked_indices(size, rng):
    """All flat indices of a small array; a random sample (with both ends) of a large one."""
    if size <= MAX_CHECKED:
        return np.arange(size)
    sample = rng.choice(size, MAX_CHECKED - 2, replace=False)
    return np.unique(np.concatenate([[0, size - 1], sample]))


def numeric_gradient(scalar, array, eps, indices):
    """Central differences of ``scalar()`` (a float64) with respect to the entries
    ``indices`` of ``array``, which is perturbed in place and restored.  The step is the
    one actually taken after rounding to the array's dtype."""
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array)
    result = np.empty(len(indices))
    for out, index in enumerate(indices):
        original = flat[index]
        flat[index] = original + eps
        up, plus = float(flat[index]), scalar()
        flat[index] = original - eps
        down, minus = float(flat[index]), scalar()
        flat[index] = original
        result[out] = (plus - minus) / (up - down)
    return result


def relative_error(analytic, numeric):
    analytic = np.asarray(analytic, np.float64).reshape(-1)
    numeric = np.asarray(numeric, np.float64).reshape(-1)
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric))
    assert scale > 0, "a gradient check on an all-zero gradient proves nothing"
    return np.linalg.norm(analytic - numeric) / scale


def assert_close_by_norm(analytic, expected, tolerance, what):
    error = relative_error(analytic, expected)
    assert error < tolerance, f"{what}: relative error {error:.3g} (tolerance {tolerance:g})"


def as_float32_point(*arrays):
    """The float64 arrays rounded to float32, and those values again in float64."""
    single = [np.ascontiguousarray(a, np.float32) for a in arrays]
    return single, [s.astype(np.float64) for s in single]


# --- layers --------------------------------------------------------------------------------

def layer_point(entry, config, rng, rows=4):
    """A float64 layer with random parameters, an input batch and dL/d output."""
    layer = build(entry, config, np.float64)
    for param in layer.parameters():
        param[...] = rng.uniform(-1, 1, param.shape)
    x = rng.standard_normal((rows, layer.in_features))
    upstream = rng.standard_normal((rows, layer.out_features))
    return layer, x, upstream


def layer_gradients(layer, x, upstream):
    """dL/dx and the parameter gradients of ``L = sum(upstream * layer(x))``."""
    layer.forward(x)
    grad_x = layer.backward(upstream)
    return grad_x, [grad.copy() for grad in layer.gradients()]


@pytest.mark.parametrize("entry, config", cases("layer"))
def test_layer_gradients_float64(entry, config):
    rng = np.random.default_rng(10)
    layer, x, upstream = layer_point(entry, config, rng)
    grad_x, grads = layer_gradients(layer, x, upstream)
    assert grad_x.shape == x.shape and grad_x.dtype == np.float64
    params = layer.parameters()
    assert len(params) == len(grads) == len(entry.parameter_shapes(layer.get_config()))

    def loss():
        return float(np.sum(upstream * layer.forward(x)))

    for name, array, analytic in [("x", x, grad_x)] + [
            (f"parameters()[{i}]", p, g) for i, (p, g) in enumerate(zip(params, grads))]:
        assert analytic.shape == array.shape and analytic.dtype == array.dtype
        indices = checked_indices(array.size, rng)
        numeric = numeric_gradient(loss, array, EPS64, indices)
        assert_close_by_norm(analytic.reshape(-1)[indices], numeric, TIGHT, f"dL/d {name}")


@pytest.mark.parametrize("entry, config", cases("layer"))
def test_layer_gradients_float32(entry, config):
    if "float32" not in entry.cls.kernel_dtypes:
        pytest.skip(f"{entry.name} has no float32 kernels")
    rng = np.random.default_rng(11)
    layer64, x, upstream = layer_point(entry, config, rng)
    (x32, up32, *params32), (x, upstream, *params64) = as_float32_point(
        x, upstream, *layer64.parameters())
    layer32 = build(entry, config, np.float32)
    for p32, p64, value32, value64 in zip(layer32.parameters(), layer64.parameters(),
                                          params32, params64):
        p32[...], p64[...] = value32, value64
    grad_x64, grads64 = layer_gradients(layer64, x, upstream)
    grad_x32, grads32 = layer_gradients(layer32, x32, up32)
    assert grad_x32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads32)

    def loss():
        return float(np.sum(up32.astype(np.float64) * layer32.forward(x32)))

    for name, array, analytic32, analytic64 in [("x", x32, grad_x32, grad_x64)] + [
            (f"parameters()[{i}]", p, g32, g64)
            for i, (p, g32, g64) in enumerate(zip(layer32.parameters(), grads32, grads64))]:
        assert_close_by_norm(analytic32, analytic64, ROUNDING32, f"dL/d {name} (float32)")
        indices = checked_indices(array.size, rng)
        numeric = numeric_gradient(loss, array, EPS32, indices)
        assert_close_by_norm(analytic64.reshape(-1)[indices], numeric, LOOSE,
                             f"dL/d {name} (float32 differences)")


@pytest.mark.parametrize("entry, config", cases("layer"))
def test_layer_passes_are_forward_and_backward(entry, config):
    rng = np.random.default_rng(12)
    layer, x, upstream = layer_point(entry, config, rng)
    out = layer.forward(x)
    grad_x, grads = layer_gradients(layer, x, upstream)
    np.testing.assert_array_equal(layer.forward_pass(x), out)
    np.testing.assert_array_equal(layer.backward_pass(upstream), grad_x)
    for got, expected in zip(layer.gradients(), grads):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("entry, config", cases("layer"))
def test_layer_parameters_match_the_registered_shapes(entry, config):
    for dtype in dtypes_of(entry):
        layer = build(entry, config, dtype)
        params, grads = layer.parameters(), layer.gradients()
        assert entry.parameter_shapes(layer.get_config()) == [p.shape for p in params]
        assert [g.shape for g in grads] == [p.shape for p in params]
        assert all(p.dtype == dtype and g.dtype == dtype for p, g in zip(params, grads))
        assert all(p.flags.c_contiguous for p in params)
        assert len(layer.unit_sizes()) == len(params)


# --- activations ---------------------------------------------------------------------------

def activation_point(rng, shape=(5, 6)):
    """Pre-activations away from the kink at 0, and an upstream gradient."""
    z = rng.uniform(-3, 3, shape)
    z[np.abs(z) < KINK_MARGIN] += 2 * KINK_MARGIN
    assert np.min(np.abs(z)) >= KINK_MARGIN > EPS32
    return z, rng.standard_normal(shape)


@pytest.mark.parametrize("entry, config", cases("activation"))
def test_activation_gradient_float64(entry, config):
    rng = np.random.default_rng(20)
    activation = build(entry, config)
    z, upstream = activation_point(rng)
    a = activation.forward(z)
    assert a.shape == z.shape and a.dtype == np.float64
    analytic = activation.backward(z, a, upstream)
    assert analytic.shape == z.shape and analytic.dtype == np.float64

    def loss():
        return float(np.sum(upstream * activation.forward(z)))

    numeric = numeric_gradient(loss, z, EPS64, np.arange(z.size))
    assert_close_by_norm(analytic, numeric, TIGHT, "dL/dz")
    if not type(activation).rowwise:  # elementwise: backward is upstream * f'(z)
        np.testing.assert_allclose(analytic, upstream * activation.derivative(z, a),
                                   rtol=1e-15, atol=0)


@pytest.mark.parametrize("entry, config", cases("activation"))
def test_activation_gradient_float32(entry, config):
    if "float32" not in entry.cls.kernel_dtypes:
        pytest.skip(f"{entry.name} has no float32 kernels")
    rng = np.random.default_rng(21)
    activation = build(entry, config)
    (z32, up32), (z, upstream) = as_float32_point(*activation_point(rng))
    a32, a64 = activation.forward(z32), activation.forward(z)
    assert a32.dtype == np.float32
    np.testing.assert_allclose(a32, a64, rtol=1e-6, atol=1e-7)
    analytic32 = activation.backward(z32, a32, up32)
    analytic64 = activation.backward(z, a64, upstream)
    assert analytic32.dtype == np.float32
    assert_close_by_norm(analytic32, analytic64, ROUNDING32, "dL/dz (float32)")

    def loss():
        return float(np.sum(upstream * activation.forward(z32)))

    numeric = numeric_gradient(loss, z32, EPS32, np.arange(z32.size))
    assert_close_by_norm(analytic64, numeric, LOOSE, "dL/dz (float32 differences)")


@pytest.mark.parametrize("entry, config", cases("activation"))
@pytest.mark.parametrize("dtype", FLOAT_NAMES)
def test_activation_passes_are_forward_and_backward(entry, config, dtype):
    rng = np.random.default_rng(22)
    activation = build(entry, config)
    z, upstream = (array.astype(dtype) for array in activation_point(rng))
    a = activation.forward(z)
    expected = activation.backward(z, a, upstream)
    np.testing.assert_array_equal(activation.forward_pass(z), a)
    np.testing.assert_array_equal(activation.backward_pass(upstream), expected)


# --- losses --------------------------------------------------------------------------------

def _mse(output, target):
    return float(np.sum((output - target) ** 2) / len(output))


def _cross_entropy(output, target, eps=1e-7):
    return float(-np.sum(target * np.log(eps + output)) / len(output))


def _cross_entropy_gradient(output, target, eps=1e-7):
    return -target / ((eps + output) * len(output))


def _log_softmax(output):
    shifted = output - output.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _softmax_cross_entropy(output, target):
    return float(-np.sum(target * _log_softmax(output)) / len(output))


def _softmax_cross_entropy_gradient(output, target):
    softmax = np.exp(_log_softmax(output))
    return (softmax * target.sum(axis=1, keepdims=True) - target) / len(output)


def _binary_cross_entropy(output, target):
    log_p = np.maximum(np.log(output), -100)
    log_q = np.maximum(np.log(1 - output), -100)
    return float(-np.sum(target * log_p + (1 - target) * log_q) / len(output))


def _binary_cross_entropy_gradient(output, target):
    return (output - target) / (output * (1 - output) * len(output))


#: Loss name -> NumPy formula of its value (float64), as its docstring writes it, or the
#: pair (value, gradient) of formulas, each called as ``f(output, target, **config)``.
LOSS_REFERENCES = {
    "MSE": _mse,
    "CrossEntropy": (_cross_entropy, _cross_entropy_gradient),
    "SoftmaxCrossEntropy": (_softmax_cross_entropy, _softmax_cross_entropy_gradient),
    "BinaryCrossEntropy": (_binary_cross_entropy, _binary_cross_entropy_gradient),
}


def loss_references(entry, config):
    """The NumPy formulas of ``entry``'s value and gradient (None if not given) for the
    example ``config``, as functions of (output, target)."""
    if entry.name not in LOSS_REFERENCES:
        pytest.fail(f"add the NumPy formula of {entry.name} to LOSS_REFERENCES")
    reference = LOSS_REFERENCES[entry.name]
    if callable(reference):
        return reference, None
    value, gradient = reference
    return (lambda output, target: value(output, target, **config),
            lambda output, target: gradient(output, target, **config))


@pytest.mark.parametrize("entry, config", cases("loss"))
def test_loss_value_and_gradient_float64(entry, config):
    rng = np.random.default_rng(30)
    loss = build(entry, config)
    output, target = rng.uniform(0.05, 0.95, (6, 4)), rng.uniform(0, 1, (6, 4))
    reference_value, reference_gradient = loss_references(entry, config)
    value = loss.value(output, target)
    assert isinstance(value, float)
    assert value == pytest.approx(reference_value(output, target), rel=1e-13)
    analytic = loss.gradient(output, target)
    assert analytic.shape == output.shape and analytic.dtype == np.float64
    if reference_gradient is not None:
        np.testing.assert_allclose(analytic, reference_gradient(output, target), rtol=1e-13,
                                   atol=0)
    numeric = numeric_gradient(lambda: loss.value(output, target), output, EPS64,
                               np.arange(output.size))
    assert_close_by_norm(analytic, numeric, TIGHT, "dL/d output")


@pytest.mark.parametrize("entry, config", cases("loss"))
def test_loss_value_and_gradient_float32(entry, config):
    if "float32" not in entry.cls.kernel_dtypes:
        pytest.skip(f"{entry.name} has no float32 kernels")
    rng = np.random.default_rng(31)
    loss = build(entry, config)
    (out32, target32), (output, target) = as_float32_point(
        rng.uniform(0.05, 0.95, (6, 4)), rng.uniform(0, 1, (6, 4)))
    assert loss.value(out32, target32) == pytest.approx(loss.value(output, target), rel=1e-6)
    analytic32, analytic64 = loss.gradient(out32, target32), loss.gradient(output, target)
    assert analytic32.dtype == np.float32
    assert_close_by_norm(analytic32, analytic64, ROUNDING32, "dL/d output (float32)")
    # Richardson's extrapolation of the central differences with steps h and h/2 (error
    # O(h^4)): at the float32 step, a plain central difference of a logarithmic loss is
    # off by about h^2 / (3 a^2), 1 % at a = 0.05.
    def differences(step):
        return numeric_gradient(lambda: loss.value(out32, target32), out32, step,
                                np.arange(out32.size))

    numeric = (4 * differences(EPS32 / 2) - differences(EPS32)) / 3
    assert_close_by_norm(analytic64, numeric, LOOSE, "dL/d output (float32 differences)")


@pytest.mark.parametrize("entry, config", cases("loss"))
def test_loss_compiled_loop_equals_python_loop(entry, config):
    x, y = random_data(300, 20, 3)
    runs = {}
    for fused in (None, False):
        model = trainable_model(np.float64)
        history = model.fit(x, y, epochs=2, batch_size=32, loss=build(entry, config),
                            optimizer=numrec.SGD(0.5), seed=56, fused=fused)
        runs[fused] = model, history
    assert runs[None][1].loop == "compiled" and runs[False][1].loop == "python"
    assert_same_training(*runs[None], *runs[False], rtol=1e-12)
    assert runs[None][1].loss[-1] < runs[None][1].loss[0]


@pytest.mark.parametrize("entry, config", cases("loss"))
@pytest.mark.parametrize("dtype", FLOAT_NAMES)
@pytest.mark.parametrize("batch_size, sizes", [(32, (784, 256, 10)), (512, (100, 64, 10))])
def test_loss_same_bits_for_one_and_two_threads(entry, config, dtype, batch_size, sizes):
    # At batch 32 the threads share the 784 x 256 layer's units.  Above a layer's
    # max_rows (128 for Dense) BLAS threads each product instead, and OpenBLAS's threaded
    # products of the 784 -> 256 layer at 512 rows do not give the bits of its one-thread
    # ones (whatever the loss); a smaller model's products it runs on one thread anyway.
    x = np.random.default_rng(57).uniform(0, 1, (1200, sizes[0])).astype(dtype)
    y = np.random.default_rng(58).integers(0, 10, 1200)
    runs = []
    for threads in (1, 2):
        model = trainable_model(dtype, sizes=sizes)
        history = model.fit(x, y, epochs=2, batch_size=batch_size, loss=build(entry, config),
                            optimizer=numrec.SGD(0.1), seed=59, threads=threads)
        assert history.loop == "compiled"
        runs.append((model.parameters(), history.loss))
    (params_1, loss_1), (params_2, loss_2) = runs
    for i, (a, b) in enumerate(zip(params_1, params_2)):
        assert np.array_equal(a, b), f"parameter {i} differs between 1 and 2 threads"
    assert loss_1 == loss_2
    assert np.isfinite(loss_1).all() and loss_1[-1] < loss_1[0]


# --- optimizers ----------------------------------------------------------------------------

def _sgd_steps(config, params, grad_steps):
    """SGD as its docstring writes it (torch.optim.SGD, dampening 0), in the params' dtype.

    Returns the parameters after the steps and the state (the velocity with momentum)."""
    dtype = params[0].dtype.type
    lr, momentum = dtype(config.get("lr", 0.5)), dtype(config.get("momentum", 0.0))
    nesterov, decay = config.get("nesterov", False), dtype(config.get("weight_decay", 0.0))
    params = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    for grads in grad_steps:
        for i, (theta, g) in enumerate(zip(params, grads)):
            d = g + decay * theta if decay else g
            if config.get("classic", False):   # v <- mu v + lr d; theta <- theta - v
                velocity[i] = momentum * velocity[i] + lr * d
                params[i] = theta - velocity[i]
                continue
            if momentum:
                velocity[i] = momentum * velocity[i] + d
                d = d + momentum * velocity[i] if nesterov else velocity[i]
            params[i] = theta - lr * d
    return params, [[v] if momentum else [] for v in velocity]


def _adam_steps(config, params, grad_steps, decoupled=False):
    """Adam (AdamW if ``decoupled``) as its docstring writes it, in the order of
    torch.optim.Adam's single-tensor code, in the params' dtype (the per-step scalars in
    float64, as Python floats, then rounded to the dtype).

    Returns the parameters after the steps and the state ``[m, v]`` of each."""
    dtype = params[0].dtype.type
    lr = config.get("lr", 0.001)
    beta1, beta2 = config.get("betas", (0.9, 0.999))
    eps = config.get("eps", 1e-8)
    decay = config.get("weight_decay", 0.01 if decoupled else 0.0)
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grad_steps, start=1):
        step_size = lr / (1 - beta1 ** t)
        bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
        for i, (theta, g) in enumerate(zip(params, grads)):
            if decoupled:
                theta = theta * dtype(1 - lr * decay)
            elif decay:
                g = g + dtype(decay) * theta
            weight = dtype(1 - beta1)
            if weight < 0.5:   # torch.lerp(m, g, weight)
                m[i] = m[i] + weight * (g - m[i])
            else:
                m[i] = g - (g - m[i]) * (dtype(1) - weight)
            v[i] = v[i] * dtype(beta2) + dtype(1 - beta2) * g * g
            denom = np.sqrt(v[i]) / dtype(bias_correction2_sqrt) + dtype(eps)
            params[i] = theta + dtype(-step_size) * m[i] / denom
    return params, [[m_i, v_i] for m_i, v_i in zip(m, v)]


def _adamw_steps(config, params, grad_steps):
    return _adam_steps(config, params, grad_steps, decoupled=True)


#: Optimizer name -> ``steps(config, params, grad_steps) -> (params, state)`` in NumPy.
OPTIMIZER_REFERENCES = {"SGD": _sgd_steps, "Adam": _adam_steps, "AdamW": _adamw_steps}


def random_parameters(rng, dtype):
    shapes = [(5, 7), (5,), (3, 5), (3,)]
    params = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    grad_steps = [[rng.standard_normal(shape).astype(dtype) for shape in shapes]
                  for _ in range(3)]
    return params, grad_steps


@pytest.mark.parametrize("entry, config", cases("optimizer"))
@pytest.mark.parametrize("dtype", FLOAT_NAMES)
def test_optimizer_steps_follow_the_formula(entry, config, dtype):
    if entry.name not in OPTIMIZER_REFERENCES:
        pytest.fail(f"add a NumPy implementation of {entry.name} to OPTIMIZER_REFERENCES")
    rng = np.random.default_rng(40)
    params, grad_steps = random_parameters(rng, dtype)
    optimizer = build(entry, config)
    originals = [p for p in params]
    working = [p.copy() for p in params]
    eps = np.finfo(dtype).eps
    for count in range(1, len(grad_steps) + 1):
        optimizer.step(working, grad_steps[count - 1])
        assert optimizer.steps == count
        expected, state = OPTIMIZER_REFERENCES[entry.name](config, originals,
                                                           grad_steps[:count])
        for got, want in zip(working, expected):
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_allclose(got, want, rtol=8 * eps, atol=8 * eps,
                                       err_msg=f"after step {count}")
        got_state = optimizer.state()
        assert [len(arrays) for arrays in got_state] == [len(arrays) for arrays in state]
        for got_arrays, want_arrays in zip(got_state, state):
            for got, want in zip(got_arrays, want_arrays):
                np.testing.assert_allclose(got, want, rtol=8 * eps, atol=8 * eps)


@pytest.mark.parametrize("entry, config", cases("optimizer"))
def test_optimizer_prepare_and_steps(entry, config):
    rng = np.random.default_rng(41)
    params, grad_steps = random_parameters(rng, np.float64)
    optimizer = build(entry, config)
    optimizer.prepare(params)
    assert optimizer.steps == 0
    state = optimizer.state()
    assert len(state) == len(params)
    for arrays, param in zip(state, params):
        assert len(arrays) == optimizer.state_per_parameter
        for array in arrays:
            assert array.shape == param.shape and array.dtype == param.dtype
            assert not array.any()
    for grads in grad_steps:
        optimizer.step(params, grads)
    assert optimizer.steps == len(grad_steps)
    optimizer.prepare(params)  # the same arrays: the state is kept
    assert optimizer.steps == len(grad_steps)
    others = [p.copy() for p in params]  # other arrays (another model): afresh
    optimizer.prepare(others)
    assert optimizer.steps == 0
    assert not any(array.any() for arrays in optimizer.state() for array in arrays)


def trainable_model(dtype, sizes=(20, 64, 3), hidden=None, seed=50):
    """Dense, an activation (ReLU by default), Dense, Sigmoid."""
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out = sizes
    first = numrec.Dense(n_in, n_hidden, seed=rng, dtype=dtype)
    first.bias = rng.uniform(-0.2, 0.2, n_hidden).astype(dtype)
    return numrec.Sequential([
        first, hidden if hidden is not None else numrec.ReLU(),
        numrec.Dense(n_hidden, n_out, seed=rng, dtype=dtype), numrec.Sigmoid(),
    ])


def random_data(n, n_in, n_out, dtype=np.float64, seed=51):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)).astype(dtype), rng.integers(0, n_out, n)


def assert_same_training(model_a, history_a, model_b, history_b, rtol):
    params_a, params_b = model_a.parameters(), model_b.parameters()
    assert len(params_a) == len(params_b) > 0
    for i, (a, b) in enumerate(zip(params_a, params_b)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)),
                                   err_msg=f"parameter {i}")
    np.testing.assert_allclose(history_a.loss, history_b.loss, rtol=rtol)


@pytest.mark.parametrize("entry, config", cases("optimizer"))
def test_optimizer_compiled_loop_equals_python_loop(entry, config):
    x, y = random_data(300, 20, 3)
    runs = {}
    for fused in (None, False):
        model = trainable_model(np.float64)
        history = model.fit(x, y, epochs=2, batch_size=32, optimizer=build(entry, config),
                            seed=52, fused=fused)
        runs[fused] = model, history
    assert runs[None][1].loop == "compiled" and runs[None][1].fused is True
    assert runs[False][1].loop == "python" and runs[False][1].fused is False
    assert_same_training(*runs[None], *runs[False], rtol=1e-12)
    assert runs[None][1].loss[-1] < runs[None][1].loss[0]


@pytest.mark.parametrize("entry, config", cases("optimizer"))
@pytest.mark.parametrize("dtype", FLOAT_NAMES)
def test_optimizer_same_bits_for_one_and_two_threads(entry, config, dtype):
    # 784 x 256 weights: the threads share the first layer's units.
    assert 784 * 256 >= 32768
    x = np.random.default_rng(53).uniform(0, 1, (300, 784)).astype(dtype)
    y = np.random.default_rng(54).integers(0, 10, 300)
    runs = []
    for threads in (1, 2):
        model = trainable_model(dtype, sizes=(784, 256, 10))
        history = model.fit(x, y, epochs=2, batch_size=32, optimizer=build(entry, config),
                            seed=55, threads=threads)
        assert history.loop == "compiled"
        runs.append((model.parameters(), history.loss))
    (params_1, loss_1), (params_2, loss_2) = runs
    for i, (a, b) in enumerate(zip(params_1, params_2)):
        assert np.array_equal(a, b), f"parameter {i} differs between 1 and 2 threads"
    assert loss_1 == loss_2


# --- layers and activations inside models --------------------------------------------------

def model_around(component, dtype, rng, second=None):
    """A small model holding ``component``: a layer between two Dense layers, an
    activation after the hidden layer and (``second``, another instance, which keeps its
    own pass) after the output layer."""
    def dense(n_in, n_out):
        layer = numrec.Dense(n_in, n_out, seed=rng, dtype=dtype)
        layer.bias = rng.uniform(-0.2, 0.2, n_out).astype(dtype)
        return layer

    if isinstance(component, numrec.Layer) and len(component.input_shape or ()) > 1:
        # Over images: first, then flattened for the Dense layer (inputs: n_inputs).
        return numrec.Sequential([
            component, numrec.LeakyReLU(0.2), numrec.Flatten(),
            dense(component.out_features, 3), numrec.Sigmoid(),
        ], input_shape=component.input_shape)
    if isinstance(component, numrec.Layer):
        return numrec.Sequential([
            dense(8, component.in_features), numrec.LeakyReLU(0.2), component,
            numrec.LeakyReLU(0.2), dense(component.out_features, 3), numrec.Sigmoid(),
        ])
    return numrec.Sequential([dense(8, 16), component, dense(16, 3), second])


def model_of(entry, config, dtype, seed):
    """``model_around`` an instance of ``entry`` (layers' parameters scaled for a stable,
    smooth training)."""
    component = build(entry, config, dtype)
    if isinstance(component, numrec.Layer):
        rng = np.random.default_rng(60)
        for param in component.parameters():
            param[...] = rng.uniform(-1, 1, param.shape) / np.sqrt(max(param.shape[-1], 1))
    second = build(entry, config, dtype) if entry.kind == "activation" else None
    return model_around(component, dtype, np.random.default_rng(seed), second)


@pytest.mark.parametrize("entry, config", cases("layer", "activation"))
def test_compiled_loop_equals_python_loop(entry, config):
    x, y = random_data(200, model_of(entry, config, np.float64, seed=62).n_inputs, 3, seed=61)
    runs = {}
    for fused in (None, False):
        model = model_of(entry, config, np.float64, seed=62)
        # lr 0.1: with Identity in both places the model is linear, and 0.2 diverges.
        history = model.fit(x, y, epochs=2, batch_size=16, optimizer=numrec.SGD(0.1),
                            seed=63, fused=fused)
        runs[fused] = model, history
    assert runs[None][1].loop == "compiled"
    assert runs[False][1].loop == "python"
    assert_same_training(*runs[None], *runs[False], rtol=1e-12)
    assert runs[None][1].loss[-1] < runs[None][1].loss[0]


@pytest.mark.parametrize("entry, config", cases("layer", "activation"))
def test_save_and_load_round_trip(entry, config, tmp_path):
    for dtype in dtypes_of(entry):
        model = model_of(entry, config, dtype, seed=65)
        x = np.random.default_rng(64).standard_normal((10, model.n_inputs))
        path = tmp_path / f"model-{dtype.name}.npz"
        model.save(path)
        loaded = numrec.load(path)
        assert loaded.dtype == dtype
        assert [type(c) for c in loaded.components] == [type(c) for c in model.components]
        assert [c.get_config() for c in loaded.components] == \
            [c.get_config() for c in model.components]
        for a, b in zip(loaded.parameters(), model.parameters()):
            assert np.array_equal(a, b)
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# --- every component -----------------------------------------------------------------------

@pytest.mark.parametrize("entry, config", cases(*KINDS))
def test_config_round_trip_and_repr(entry, config):
    for dtype in dtypes_of(entry) if "dtype" in entry.config else [None]:
        component = build(entry, config, dtype)
        saved = component.get_config()
        rebuilt = entry.cls(**saved)
        assert rebuilt.get_config() == saved
        assert repr(rebuilt) == repr(component)
        assert repr(component).startswith(f"{entry.name}(")
        if entry.config:  # what a model file stores: the registered keys, valid values
            assert set(saved) == set(entry.config)
            for key, check in entry.config.items():
                assert check(saved[key]), f"{key}={saved[key]!r} fails its registered check"


@pytest.mark.parametrize("entry, config", cases(*KINDS))
def test_kernel_contract(entry, config):
    cls = entry.cls
    assert isinstance(entry.kind, str) and entry.kind in KINDS
    assert issubclass(cls, BASES[entry.kind]) and cls is not BASES[entry.kind]
    assert "kernel_dtypes" in cls.__dict__, f"{entry.name} must declare kernel_dtypes itself"
    assert cls.kernel_dtypes and set(cls.kernel_dtypes) <= set(FLOAT_NAMES)
    if entry.kind == "layer":
        assert isinstance(cls.capabilities, frozenset)
        assert cls.capabilities <= CAPABILITIES
    if entry.kind == "activation":
        assert isinstance(cls.rowwise, bool)
    for dtype in cls.kernel_dtypes:
        component = build(entry, config, dtype)
        assert kernel_problem(component, dtype) is None
        assert kernel_problem(component, np.dtype(dtype)) is None
    for dtype in set(FLOAT_NAMES) - set(cls.kernel_dtypes):
        assert kernel_problem(build(entry, config, dtype), dtype) is not None


# --- the contract refuses what does not declare it ------------------------------------------

class UndeclaredLayer(numrec.Layer):
    in_features = out_features = 3

    def forward(self, x):
        return x

    def backward(self, grad_output):
        return grad_output


class UndeclaredActivation(numrec.Activation):
    def forward(self, z):
        return z

    def derivative(self, z, a):
        return np.ones_like(z)


class PythonReLU(numrec.ReLU):
    """A Python subclass of a compiled activation: it inherits the declaration."""


@pytest.mark.parametrize("component", [UndeclaredLayer(), UndeclaredActivation(),
                                       PythonReLU()], ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("dtype", FLOAT_NAMES)
def test_python_components_are_refused_with_a_reason(component, dtype):
    problem = kernel_problem(component, dtype)
    assert isinstance(problem, str) and type(component).__name__ in problem
    layer = numrec.Dense(3, 3, dtype=dtype)
    components = [component] if isinstance(component, numrec.Layer) else [layer, component]
    index = len(components) - 1
    plan = plan_problem(components, dtype)
    assert plan is not None and f"components[{index}]" in plan
    assert type(component).__name__ in plan


@pytest.mark.parametrize("base", [numrec.Layer, numrec.Activation, numrec.Loss,
                                  numrec.Optimizer], ids=lambda c: c.__name__)
def test_abstract_bases_declare_no_kernels(base):
    assert base.kernel_dtypes == ()
    with pytest.raises(TypeError, match="abstract"):
        base()


# --- the registry, the public names and the API reference -----------------------------------

def test_registry_names_are_the_exported_compiled_builtins():
    assert list(BUILTINS) and set(entry.kind for entry in BUILTINS.values()) == set(KINDS)
    for name, entry in BUILTINS.items():
        assert entry.name == name == entry.cls.__name__
        assert name in numrec.__all__, f"{name} is registered but not in numrec.__all__"
        assert getattr(numrec, name) is entry.cls
    # Conversely: every exported concrete component class is registered.
    bases = tuple(BASES.values())
    exported = {name for name in numrec.__all__
                if isinstance(getattr(numrec, name), type)
                and issubclass(getattr(numrec, name), bases)
                and getattr(numrec, name) not in bases}
    assert exported == set(BUILTINS)


def test_every_registered_name_is_in_the_api_reference():
    text = (DOCS / "api.rst").read_text(encoding="utf-8")
    missing = [name for name in BUILTINS
               if not re.search(rf"^\.\. autoclass:: {name}[ \t]*$", text, re.MULTILINE)]
    assert not missing, f"docs/api.rst lacks '.. autoclass::' entries for {missing}"

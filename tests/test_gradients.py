"""Analytic gradients against central finite differences (float64, eps = 1e-6)."""
import numpy as np
import pytest

import numrec

EPS = 1e-6
TOLERANCE = 1e-6


def numeric_gradient(scalar, array, eps=EPS):
    """Central differences of ``scalar()`` with respect to ``array``, perturbed in place."""
    grad = np.zeros(array.shape, dtype=np.float64)
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array)
    for index in range(flat.size):
        original = flat[index]
        flat[index] = original + eps
        plus = scalar()
        flat[index] = original - eps
        minus = scalar()
        flat[index] = original
        grad.reshape(-1)[index] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic, numeric):
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric))
    assert scale > 0, "a gradient check on an all-zero gradient proves nothing"
    return np.linalg.norm(analytic - numeric) / scale


def assert_gradient(analytic, numeric):
    assert analytic.shape == numeric.shape
    error = relative_error(analytic, numeric)
    assert error < TOLERANCE, f"relative error {error:.3g}"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --- Dense ---------------------------------------------------------------------------------

@pytest.fixture
def dense_case(rng):
    layer = numrec.Dense(5, 4, seed=7, dtype=np.float64)
    layer.bias = rng.standard_normal(4)
    x = rng.standard_normal((6, 5))
    weights_of_output = rng.standard_normal((6, 4))  # L = sum(R * z): dL/dz = R

    def loss():
        return float(np.sum(weights_of_output * layer.forward(x)))

    layer.forward(x)
    grad_x = layer.backward(weights_of_output)
    return layer, x, loss, grad_x


def test_dense_forward_is_affine(dense_case):
    layer, x, _, _ = dense_case
    np.testing.assert_allclose(layer.forward(x), x @ layer.weights.T + layer.bias,
                               rtol=1e-12, atol=1e-12)


def test_dense_gradient_weights(dense_case):
    layer, _, loss, _ = dense_case
    assert_gradient(layer.grad_weights.copy(), numeric_gradient(loss, layer.weights))


def test_dense_gradient_bias(dense_case):
    layer, _, loss, _ = dense_case
    assert_gradient(layer.grad_bias.copy(), numeric_gradient(loss, layer.bias))


def test_dense_gradient_input(dense_case):
    _, x, loss, grad_x = dense_case
    assert_gradient(grad_x, numeric_gradient(loss, x))


def test_dense_backward_with_non_square_batch(rng):
    # Batch size, inputs and outputs all different, so a transposed product cannot pass.
    layer = numrec.Dense(3, 7, seed=0, dtype=np.float64)
    x = rng.standard_normal((2, 3))
    g = rng.standard_normal((2, 7))
    layer.forward(x)
    grad_x = layer.backward(g)
    np.testing.assert_allclose(layer.grad_weights, g.T @ x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.grad_bias, g.sum(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad_x, g @ layer.weights, rtol=1e-12, atol=1e-14)


# --- Activations ---------------------------------------------------------------------------

def away_from_zero(rng, shape, margin=0.05):
    z = rng.uniform(-3, 3, size=shape)
    z[np.abs(z) < margin] += 2 * margin  # no point near the kink of the leaky ReLU
    assert np.min(np.abs(z)) >= margin
    return z


@pytest.mark.parametrize("alpha", [0.2, 0.01, 0.0, 1.5])
def test_leaky_relu_gradient(rng, alpha):
    activation = numrec.LeakyReLU(alpha)
    z = away_from_zero(rng, (5, 6))
    grad_a = rng.standard_normal(z.shape)
    a = activation.forward(z)
    np.testing.assert_array_equal(a, np.where(z > 0, z, alpha * z))
    analytic = activation.backward(z, a, grad_a)

    def loss():
        return float(np.sum(grad_a * activation.forward(z)))

    assert_gradient(analytic, numeric_gradient(loss, z))
    np.testing.assert_array_equal(activation.derivative(z, a), np.where(z > 0, 1.0, alpha))


def test_sigmoid_gradient(rng):
    activation = numrec.Sigmoid()
    z = rng.uniform(-6, 6, size=(5, 6))
    grad_a = rng.standard_normal(z.shape)
    a = activation.forward(z)
    np.testing.assert_allclose(a, 1 / (1 + np.exp(-z)), rtol=1e-14)
    analytic = activation.backward(z, a, grad_a)

    def loss():
        return float(np.sum(grad_a * activation.forward(z)))

    assert_gradient(analytic, numeric_gradient(loss, z))
    np.testing.assert_allclose(activation.derivative(z, a), a * (1 - a), rtol=1e-14)


def test_sigmoid_saturates_without_overflow():
    z = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]])
    with np.errstate(all="raise"):
        a = numrec.Sigmoid().forward(z)
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, [[0.0, 1.9287498479639178e-22, 0.5, 1.0, 1.0]],
                               rtol=1e-14, atol=0)


# --- MSE -----------------------------------------------------------------------------------

def test_mse_value_matches_numpy(rng):
    output = rng.uniform(size=(4, 3))
    target = rng.uniform(size=(4, 3))
    expected = np.sum((output - target) ** 2) / 4  # summed over outputs, mean over batch
    assert numrec.MSE().value(output, target) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(numrec.MSE().gradient(output, target),
                               2 * (output - target) / 4, rtol=1e-14)


def test_mse_gradient(rng):
    loss = numrec.MSE()
    output = rng.uniform(size=(4, 3))
    target = rng.uniform(size=(4, 3))
    analytic = loss.gradient(output, target)
    assert_gradient(analytic, numeric_gradient(lambda: loss.value(output, target), output))


# --- A whole Sequential --------------------------------------------------------------------

@pytest.fixture
def small_network(rng):
    model = numrec.Sequential([
        numrec.Dense(5, 4, seed=11, dtype=np.float64), numrec.LeakyReLU(0.2),
        numrec.Dense(4, 3, seed=12, dtype=np.float64), numrec.Sigmoid(),
    ])
    model.components[0].bias = rng.standard_normal(4) * 0.5
    model.components[2].bias = rng.standard_normal(3) * 0.5
    x = rng.standard_normal((7, 5))
    target = rng.uniform(size=(7, 3))
    # The check is only valid away from the kink of the leaky ReLU.
    hidden = model.components[0].forward(x)
    assert np.min(np.abs(hidden)) > 1e-3
    return model, x, target


def test_sequential_gradient_every_parameter(small_network):
    model, x, target = small_network
    mse = numrec.MSE()
    model.backward(mse.gradient(model.forward(x), target))
    analytic = [grad.copy() for grad in model.gradients()]
    params = model.parameters()
    assert len(params) == len(analytic) == 4

    def loss():
        return mse.value(model.predict(x), target)

    for param, grad in zip(params, analytic):
        assert_gradient(grad, numeric_gradient(loss, param))


def test_sequential_gradient_input(small_network):
    model, x, target = small_network
    mse = numrec.MSE()
    grad_x = model.backward(mse.gradient(model.forward(x), target))
    assert grad_x.shape == x.shape
    assert_gradient(grad_x, numeric_gradient(lambda: mse.value(model.predict(x), target), x))


# --- SGD -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_step_formula(rng, dtype):
    lr = 0.3
    params = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)]
    grads = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)]
    expected = [p - dtype(lr) * g for p, g in zip(params, grads)]
    originals = list(params)
    numrec.SGD(lr=lr).step(params, grads)
    for param, original, want in zip(params, originals, expected):
        assert param is original  # updated in place
        assert param.dtype == dtype
        np.testing.assert_allclose(param, want, rtol=4 * np.finfo(dtype).eps, atol=0)


def test_sgd_updates_model_parameters_in_place(small_network):
    model, x, target = small_network
    mse = numrec.MSE()
    model.backward(mse.gradient(model.forward(x), target))
    before = [param.copy() for param in model.parameters()]
    grads = [grad.copy() for grad in model.gradients()]
    numrec.SGD(lr=0.1).step(model.parameters(), model.gradients())
    for param, old, grad in zip(model.parameters(), before, grads):
        np.testing.assert_allclose(param, old - 0.1 * grad, rtol=1e-15, atol=1e-17)
    # The model computes with the updated values.
    first = model.components[0]
    np.testing.assert_allclose(first.forward(x), x @ before[0].T - 0.1 * x @ grads[0].T
                               + before[1] - 0.1 * grads[1], rtol=1e-12, atol=1e-12)

"""float32 and float64 compute the same numbers, to float32 precision."""
import numpy as np
import pytest

import numrec

# float32 has a 24-bit significand (eps 1.2e-7): elementwise functions agree to a few eps,
# products summed over hundreds of terms to a few hundred.
ELEMENTWISE = 1e-6
PRODUCTS = 1e-4


def relative_error(single, double):
    assert single.dtype == np.float32
    assert double.dtype == np.float64
    assert single.shape == double.shape
    scale = np.linalg.norm(double)
    assert scale > 0
    return np.linalg.norm(single.astype(np.float64) - double) / scale


@pytest.fixture
def rng():
    return np.random.default_rng(99)


def test_dtype_attributes():
    for dtype in (np.float32, np.float64):
        layer = numrec.Dense(3, 2, dtype=dtype)
        assert layer.dtype == dtype
        for array in (layer.weights, layer.bias, layer.grad_weights, layer.grad_bias):
            assert array.dtype == dtype
        model = numrec.mnist_mlp(dtype=dtype, seed=0)
        assert model.dtype == dtype
        assert model.forward(np.zeros((1, 784), dtype=np.uint8)).dtype == dtype


def test_default_dtype_is_float32():
    assert numrec.Dense(3, 2).dtype == np.float32
    assert numrec.mnist_mlp(seed=0).dtype == np.float32


def test_same_seed_gives_cast_weights():
    single = numrec.mnist_mlp(seed=5, dtype=np.float32)
    double = numrec.mnist_mlp(seed=5, dtype=np.float64)
    for p32, p64 in zip(single.parameters(), double.parameters()):
        np.testing.assert_array_equal(p32, p64.astype(np.float32))


def test_dense(rng):
    double = numrec.Dense(300, 40, seed=1, dtype=np.float64)
    double.bias = rng.standard_normal(40)
    single = numrec.Dense(300, 40, dtype=np.float32)
    single.weights = double.weights.astype(np.float32)
    single.bias = double.bias.astype(np.float32)
    x = rng.standard_normal((16, 300))
    g = rng.standard_normal((16, 40))
    z64, z32 = double.forward(x), single.forward(x.astype(np.float32))
    assert z32.dtype == np.float32
    assert relative_error(z32, z64) < PRODUCTS
    gx64, gx32 = double.backward(g), single.backward(g.astype(np.float32))
    assert relative_error(gx32, gx64) < PRODUCTS
    assert relative_error(single.grad_weights, double.grad_weights) < PRODUCTS
    assert relative_error(single.grad_bias, double.grad_bias) < PRODUCTS


@pytest.mark.parametrize("activation", [numrec.LeakyReLU(0.2), numrec.Sigmoid()],
                         ids=["leaky_relu", "sigmoid"])
def test_activation(rng, activation):
    z = rng.uniform(-8, 8, size=(10, 12))
    grad_a = rng.standard_normal(z.shape)
    a64 = activation.forward(z)
    a32 = activation.forward(z.astype(np.float32))
    assert relative_error(a32, a64) < ELEMENTWISE
    g64 = activation.backward(z, a64, grad_a)
    g32 = activation.backward(z.astype(np.float32), a32, grad_a.astype(np.float32))
    assert relative_error(g32, g64) < ELEMENTWISE
    d32 = activation.derivative(z.astype(np.float32), a32)
    assert relative_error(d32, activation.derivative(z, a64)) < ELEMENTWISE


def test_mse(rng):
    output = rng.uniform(size=(32, 10))
    target = np.eye(10)[rng.integers(0, 10, 32)]
    mse = numrec.MSE()
    v64 = mse.value(output, target)
    v32 = mse.value(output.astype(np.float32), target.astype(np.float32))
    assert isinstance(v32, float)
    assert v32 == pytest.approx(v64, rel=ELEMENTWISE)
    g32 = mse.gradient(output.astype(np.float32), target.astype(np.float32))
    assert relative_error(g32, mse.gradient(output, target)) < ELEMENTWISE


def test_sgd(rng):
    param = rng.standard_normal(50)
    grad = rng.standard_normal(50)
    p32, g32 = param.astype(np.float32), grad.astype(np.float32)
    numrec.SGD(0.25).step([param], [grad])
    numrec.SGD(0.25).step([p32], [g32])
    assert relative_error(p32, param) < ELEMENTWISE


def test_worked_example_network(seed_network, seed_example):
    outputs, grads = {}, {}
    for dtype in (np.float32, np.float64):
        model = seed_network(dtype)
        output = model.forward(seed_example["x"].astype(dtype))
        model.backward(numrec.MSE().gradient(output, seed_example["y"].astype(dtype)))
        outputs[dtype] = output
        grads[dtype] = [grad.copy() for grad in model.gradients()]
    assert relative_error(outputs[np.float32], outputs[np.float64]) < ELEMENTWISE
    for g32, g64 in zip(grads[np.float32], grads[np.float64]):
        assert relative_error(g32, g64) < 1e-5


def test_reference_network_forward_backward(rng):
    single = numrec.mnist_mlp(seed=3, dtype=np.float32)
    double = numrec.mnist_mlp(seed=3, dtype=np.float64)
    x = rng.integers(0, 256, size=(16, 784), dtype=np.uint8)
    target = np.eye(10)[rng.integers(0, 10, 16)]
    out32, out64 = single.forward(x), double.forward(x)
    assert relative_error(out32, out64) < PRODUCTS
    gx32 = single.backward(numrec.MSE().gradient(out32, target.astype(np.float32)))
    gx64 = double.backward(numrec.MSE().gradient(out64, target))
    assert relative_error(gx32, gx64) < PRODUCTS
    for g32, g64 in zip(single.gradients(), double.gradients()):
        assert relative_error(g32, g64) < PRODUCTS


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_training_a_few_batches(rng, fused):
    x = rng.integers(0, 256, size=(256, 784), dtype=np.uint8)
    y = rng.integers(0, 10, size=256)
    histories, params = {}, {}
    for dtype in (np.float32, np.float64):
        model = numrec.mnist_mlp(seed=4, dtype=dtype)
        histories[dtype] = model.fit(x, y, epochs=1, batch_size=32, loss=numrec.MSE(),
                                     optimizer=numrec.SGD(0.5), seed=8, fused=fused)
        assert histories[dtype].fused is fused
        params[dtype] = model.parameters()
    for p32, p64 in zip(params[np.float32], params[np.float64]):
        assert relative_error(p32, p64) < PRODUCTS
    assert histories[np.float32].loss[0] == pytest.approx(histories[np.float64].loss[0],
                                                          rel=PRODUCTS)

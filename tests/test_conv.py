"""Conv2D and MaxPool2D: gradients against finite differences, outputs and gradients
against PyTorch's ``nn.Conv2d`` and ``max_pool2d`` in float64, float32 against float64,
argument checks, and training through the compiled loop against the Python loop, with
one and two threads.
"""
import copy
import inspect
import pickle

import numpy as np
import pytest

import numrec
from numrec._core._training import plan_stages, thread_plan

# (in_channels, out_channels, kernel_size, stride, padding, height, width)
CONV_CASES = [
    (1, 2, 3, 1, 0, 6, 6),
    (2, 3, (2, 3), 2, 1, 7, 8),
    (3, 2, (3, 1), (1, 2), (0, 1), 5, 7),
    (2, 4, 3, 2, 0, 9, 9),
    (3, 5, 1, 1, 0, 4, 3),
    (2, 3, 4, 3, 2, 6, 5),
    (2, 3, 3, (2, 1), (2, 1), 7, 6),  # rows of windows past the top and bottom edges
]
# Larger layers, whose weight gradient takes each of its two forms of product
# (g_s @ col_s.T, or its transpose col_s @ g_s.T when dL/dW has more than 1200 entries
# or the output fewer than 32 positions), whole or in blocks of the column matrix.
WIDE_CASES = [
    (2, 8, 3, 1, 1, 10, 10),     # 144 entries, 100 positions: g_s @ col_s.T
    (8, 32, 3, 1, 1, 10, 10),    # 2304 entries: the transposed product
    (16, 4, 3, 1, 0, 52, 52),    # 2500 positions in two blocks: g_s @ col_s.T
    (16, 16, 3, 1, 0, 52, 52),   # 2304 entries, two blocks: the transposed product
]
# (size, stride, channels, height, width)
POOL_CASES = [
    (2, None, 3, 8, 8),
    (3, 2, 2, 7, 9),
    ((2, 3), (1, 2), 4, 6, 7),
    (2, 1, 1, 5, 5),
    (3, None, 2, 10, 7),
]
EPS = 1e-6


def conv_of(case, dtype=np.float64, seed=0):
    c_in, c_out, kernel, stride, padding, h, w = case
    layer = numrec.Conv2D(c_in, c_out, kernel, stride, padding, dtype=dtype, seed=seed)
    layer.build((c_in, h, w))
    return layer


def numeric_gradient(scalar, array, indices):
    flat = array.reshape(-1)
    result = np.empty(len(indices))
    for out, index in enumerate(indices):
        original = flat[index]
        flat[index] = original + EPS
        plus = scalar()
        flat[index] = original - EPS
        minus = scalar()
        flat[index] = original
        result[out] = (plus - minus) / (2 * EPS)
    return result


def relative_error(analytic, numeric):
    analytic, numeric = np.ravel(analytic), np.ravel(numeric)
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric))
    assert scale > 0
    return np.linalg.norm(analytic - numeric) / scale


def sample(size, rng, at_most=80):
    return np.arange(size) if size <= at_most else rng.choice(size, at_most, replace=False)


# --- finite differences ------------------------------------------------------------------

@pytest.mark.parametrize("case", CONV_CASES + WIDE_CASES[:2])
def test_conv_gradients_match_finite_differences(case):
    rng = np.random.default_rng(1)
    layer = conv_of(case)
    x = rng.standard_normal((3, layer.in_features))
    upstream = rng.standard_normal((3, layer.out_features))
    layer.forward(x)
    grad_x = layer.backward(upstream)
    analytic = [grad_x, layer.grad_weights.copy(), layer.grad_bias.copy()]

    def loss():
        return float(np.sum(upstream * layer.forward(x)))

    for array, grad in zip([x, layer.weights, layer.bias], analytic):
        indices = sample(array.size, rng)
        numeric = numeric_gradient(loss, array, indices)
        assert relative_error(grad.reshape(-1)[indices], numeric) < 1e-7


@pytest.mark.parametrize("case", POOL_CASES)
def test_pool_gradient_matches_finite_differences(case):
    size, stride, c, h, w = case
    rng = np.random.default_rng(2)
    layer = numrec.MaxPool2D(size, stride)
    layer.build((c, h, w))
    # Distinct values, far apart compared with the step: the maxima do not move.
    x = rng.permutation(2 * c * h * w)[:c * h * w].reshape(1, -1).astype(np.float64) * 0.01
    x = np.repeat(x, 2, axis=0) + np.array([[0.0], [0.5]])
    upstream = rng.standard_normal((2, layer.out_features))
    layer.forward(x)
    grad_x = layer.backward(upstream)
    numeric = numeric_gradient(lambda: float(np.sum(upstream * layer.forward(x))), x,
                               np.arange(x.size))
    assert relative_error(grad_x, numeric) < 1e-7


# --- PyTorch -----------------------------------------------------------------------------

def torch_or_skip():
    return pytest.importorskip("torch", reason="the parity tests compare with PyTorch")


def max_relative(got, expected):
    expected = np.asarray(expected)
    return np.max(np.abs(got - expected)) / np.max(np.abs(expected))


@pytest.mark.parametrize("case", CONV_CASES + WIDE_CASES)
def test_conv_matches_pytorch_float64(case):
    torch = torch_or_skip()
    c_in, c_out, kernel, stride, padding, h, w = case
    rng = np.random.default_rng(3)
    layer = conv_of(case, seed=4)
    twin = torch.nn.Conv2d(c_in, c_out, kernel, stride, padding, dtype=torch.float64)
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(layer.weights))
        twin.bias.copy_(torch.from_numpy(layer.bias))
    x = rng.standard_normal((4, c_in, h, w))
    x_t = torch.from_numpy(x.copy()).requires_grad_()
    z_t = twin(x_t)
    upstream = rng.standard_normal(tuple(z_t.shape))
    z_t.backward(torch.from_numpy(upstream))

    z = layer.forward(x)  # images in, images out
    assert z.shape == tuple(z_t.shape) == (4,) + layer.output_shape
    grad_x = layer.backward(upstream)
    assert grad_x.shape == x.shape
    assert max_relative(z, z_t.detach().numpy()) < 1e-9
    assert max_relative(grad_x, x_t.grad.numpy()) < 1e-9
    assert max_relative(layer.grad_weights, twin.weight.grad.numpy()) < 1e-9
    assert max_relative(layer.grad_bias, twin.bias.grad.numpy()) < 1e-9
    # rows in, rows out: the same numbers
    rows = layer.forward(x.reshape(4, -1))
    np.testing.assert_array_equal(rows, z.reshape(4, -1))
    np.testing.assert_array_equal(layer.backward(upstream.reshape(4, -1)), grad_x.reshape(4, -1))


@pytest.mark.parametrize("case", POOL_CASES)
def test_pool_matches_pytorch_float64_with_ties(case):
    torch = torch_or_skip()
    size, stride, c, h, w = case
    rng = np.random.default_rng(5)
    # Few distinct values: many windows hold their maximum more than once.
    x = rng.integers(-2, 3, (3, c, h, w)).astype(np.float64)
    x_t = torch.from_numpy(x.copy()).requires_grad_()
    module = torch.nn.MaxPool2d(size, stride)
    z_t = module(x_t)
    np.testing.assert_array_equal(
        z_t.detach().numpy(),
        torch.nn.functional.max_pool2d(torch.from_numpy(x), size, stride).numpy())
    upstream = rng.standard_normal(tuple(z_t.shape))
    z_t.backward(torch.from_numpy(upstream))
    layer = numrec.MaxPool2D(size, stride)
    z = layer.forward(x)
    grad_x = layer.backward(upstream)
    np.testing.assert_array_equal(z, z_t.detach().numpy())
    assert max_relative(grad_x, x_t.grad.numpy()) < 1e-9
    # the same positions: PyTorch's indices
    _, indices = torch.nn.functional.max_pool2d(torch.from_numpy(x), size, stride,
                                                return_indices=True)
    scattered = np.zeros((3, c, h * w))
    np.put_along_axis(scattered, indices.numpy().reshape(3, c, -1),
                      upstream.reshape(3, c, -1), axis=2)
    if stride is not None and stride != size:  # overlapping windows add up
        return
    np.testing.assert_array_equal(grad_x.reshape(3, c, -1), scattered)


def test_pool_propagates_nan_as_pytorch():
    torch = torch_or_skip()
    x = np.array([[[[1.0, np.nan, 3.0, 2.0], [0.0, np.nan, -1.0, 5.0]]]])
    layer = numrec.MaxPool2D(2)
    layer.build((1, 2, 4))
    expected = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2).numpy()
    out = np.empty((1, 2))
    layer._forward(x.reshape(1, -1), out)  # the kernel (forward itself refuses NaN)
    np.testing.assert_array_equal(out, expected.reshape(1, -1))


# --- float32 --------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CONV_CASES[:4])
def test_conv_float32_agrees_with_float64(case):
    rng = np.random.default_rng(6)
    layer64 = conv_of(case)
    layer32 = conv_of(case, np.float32)
    layer32.weights = layer64.weights.astype(np.float32)
    layer32.bias = layer64.bias.astype(np.float32)
    layer64.weights = layer32.weights.astype(np.float64)
    layer64.bias = layer32.bias.astype(np.float64)
    x32 = rng.standard_normal((5, layer32.in_features)).astype(np.float32)
    g32 = rng.standard_normal((5, layer32.out_features)).astype(np.float32)
    z32, z64 = layer32.forward(x32), layer64.forward(x32.astype(np.float64))
    assert z32.dtype == np.float32
    assert max_relative(z32, z64) < 1e-5
    gx32, gx64 = layer32.backward(g32), layer64.backward(g32.astype(np.float64))
    assert max_relative(gx32, gx64) < 1e-5
    assert max_relative(layer32.grad_weights, layer64.grad_weights) < 1e-5
    assert max_relative(layer32.grad_bias, layer64.grad_bias) < 1e-5


def test_pool_float32_is_float64_rounded():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2 * 6 * 6))
    layer = numrec.MaxPool2D(2)
    layer.build((2, 6, 6))
    z64 = layer.forward(x)
    z32 = layer.forward(x.astype(np.float32))
    assert z32.dtype == np.float32
    np.testing.assert_array_equal(z32, z64.astype(np.float32))


# --- arguments, shapes, copies ------------------------------------------------------------

def test_shapes_and_features():
    layer = numrec.Conv2D(3, 8, (3, 5), stride=(2, 1), padding=(1, 2))
    assert not layer.built
    assert layer.build((3, 10, 9)) == (8, 5, 9)
    assert layer.build((3, 10, 9)) == (8, 5, 9)  # again: nothing changes
    assert (layer.input_shape, layer.output_shape) == ((3, 10, 9), (8, 5, 9))
    assert (layer.in_features, layer.out_features) == (270, 360)
    assert layer.weights.shape == layer.grad_weights.shape == (8, 3, 3, 5)
    assert layer.unit_sizes() == [45, 1] and layer.n_units == 8
    pool = numrec.MaxPool2D(2)
    assert pool.build((8, 5, 9)) == (8, 2, 4)
    assert (pool.in_features, pool.out_features, pool.n_units) == (360, 64, 8)
    assert pool.parameters() == [] and pool.gradients() == []


@pytest.mark.parametrize("kwargs, error, words", [
    ({"in_channels": 0}, ValueError, "in_channels"),
    ({"out_channels": 2.5}, TypeError, "out_channels"),
    ({"kernel_size": 0}, ValueError, "kernel_size"),
    ({"kernel_size": (3, 3, 3)}, ValueError, "kernel_size"),
    ({"kernel_size": (3, "a")}, TypeError, "kernel_size"),
    ({"stride": 0}, ValueError, "stride"),
    ({"padding": -1}, ValueError, "padding"),
    ({"padding": True}, TypeError, "padding"),
    ({"dtype": np.int32}, TypeError, "dtype"),
    ({"init": "glorot"}, ValueError, "init"),
])
def test_conv_rejects_bad_arguments(kwargs, error, words):
    arguments = {"in_channels": 1, "out_channels": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=words):
        numrec.Conv2D(**arguments)


def test_pool_rejects_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        numrec.MaxPool2D(0)
    with pytest.raises(TypeError, match="stride"):
        numrec.MaxPool2D(2, 1.5)


def test_build_errors_name_the_problem():
    layer = numrec.Conv2D(2, 4, 5, padding=1)
    with pytest.raises(ValueError, match="5x5 window is larger than the input 2x6"):
        layer.build((2, 2, 6))
    with pytest.raises(ValueError, match="2 channels, got input shape"):
        layer.build((3, 8, 8))
    with pytest.raises(ValueError, match="channels, height, width"):
        layer.build((50,))
    with pytest.raises(AttributeError, match="not built"):
        layer.in_features
    with pytest.raises(AttributeError, match="not built"):
        layer.forward(np.zeros((2, 128), np.float32))
    layer.build((2, 8, 8))
    with pytest.raises(ValueError, match="built for input shape"):
        layer.build((2, 9, 9))
    with pytest.raises(ValueError, match=r"shape \(n, 128\)"):
        layer.forward(np.zeros((2, 100), np.float32))
    with pytest.raises(TypeError, match="float32"):
        layer.forward(np.zeros((2, 128), np.float64))
    with pytest.raises(RuntimeError, match="before forward"):
        numrec.Conv2D(1, 1, 1).backward(np.zeros((1, 1), np.float32))
    layer.forward(np.zeros((2, 128), np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        layer.backward(np.zeros((3, layer.out_features), np.float32))
    with pytest.raises(ValueError, match="window is larger"):
        numrec.MaxPool2D(3).build((1, 2, 5))


def test_config_round_trip_copy_and_pickle():
    layer = numrec.Conv2D(2, 3, (2, 3), stride=2, padding=(0, 1), dtype=np.float64, seed=8)
    config = layer.get_config()
    assert config == {"in_channels": 2, "out_channels": 3, "kernel_size": [2, 3],
                      "stride": 2, "padding": [0, 1], "dtype": "float64"}
    assert numrec.Conv2D(**config).get_config() == config
    assert repr(layer).startswith("Conv2D(in_channels=2")
    layer.build((2, 5, 6))
    for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert twin.get_config() == config and twin.input_shape == (2, 5, 6)
        np.testing.assert_array_equal(twin.weights, layer.weights)
        np.testing.assert_array_equal(twin.bias, layer.bias)
    pool = numrec.MaxPool2D((2, 3), 1)
    assert pool.get_config() == {"size": [2, 3], "stride": 1}
    pool.build((1, 4, 4))
    assert copy.deepcopy(pool).output_shape == (1, 3, 2)


def test_initialisers_follow_the_fan_in():
    fan_in = 16 * 3 * 3
    torch_like = numrec.Conv2D(16, 64, 3, dtype=np.float64, seed=9)
    bound = 1 / np.sqrt(fan_in)
    for array in (torch_like.weights, torch_like.bias):
        assert np.abs(array).max() <= bound and np.abs(array).max() > 0.9 * bound
    he = numrec.Conv2D(16, 64, 3, dtype=np.float64, seed=9, init="he")
    assert abs(he.weights.std() - np.sqrt(2 / fan_in)) < 0.05 * np.sqrt(2 / fan_in)
    assert not he.bias.any()
    again = numrec.Conv2D(16, 64, 3, dtype=np.float64, seed=9, init="he")
    np.testing.assert_array_equal(again.weights, he.weights)


# --- training ------------------------------------------------------------------------------

def sequential(components, input_shape):
    """A Sequential of ``components`` for images of ``input_shape`` (a flattening step
    before the first Dense where numrec has one)."""
    if "input_shape" in inspect.signature(numrec.Sequential).parameters:
        return numrec.Sequential(components, input_shape=input_shape)
    return numrec.Sequential(components)


def small_cnn(dtype, wide=False):
    """conv ReLU conv ReLU pool [flatten] dense on 1x12x12 images; ``wide``: layers
    large enough for the threads to share (the second convolution and the pooling)."""
    c1, c2 = (8, 32) if wide else (3, 4)
    conv1 = numrec.Conv2D(1, c1, 3, padding=1, dtype=dtype, seed=10)
    conv2 = numrec.Conv2D(c1, c2, 3, stride=1, padding=1, dtype=dtype, seed=11)
    pool = numrec.MaxPool2D(2)
    shape = conv1.build((1, 16, 16) if wide else (1, 12, 12))
    pool.build(conv2.build(shape))
    flatten = [numrec.Flatten()] if hasattr(numrec, "Flatten") else []
    dense = numrec.Dense(pool.out_features, 5, dtype=dtype, seed=12)
    return sequential([conv1, numrec.ReLU(), conv2, numrec.ReLU(), pool, *flatten, dense],
                      conv1.input_shape)


def images(n, side, seed=13):
    rng = np.random.default_rng(seed)
    return rng.random((n, side * side)), rng.integers(0, 5, n)


def train(model, x, y, dtype, fused, threads=None, optimizer=None):
    history = model.fit(x.astype(dtype), y, epochs=2, batch_size=16,
                        loss=numrec.SoftmaxCrossEntropy(),
                        optimizer=optimizer or numrec.Adam(lr=0.01), seed=14,
                        fused=fused, threads=threads)
    return history, [p.copy() for p in model.parameters()]


@pytest.mark.parametrize("optimizer", [lambda: numrec.Adam(lr=0.01),
                                       lambda: numrec.SGD(0.05, momentum=0.9)],
                         ids=["adam", "sgd_momentum"])
def test_compiled_loop_equals_python_loop(optimizer):
    x, y = images(120, 12)
    runs = {}
    for fused in (True, False):
        runs[fused] = train(small_cnn(np.float64), x, y, np.float64, fused, 1, optimizer())
    assert runs[True][0].loop == "compiled" and runs[False][0].loop == "python"
    for a, b in zip(runs[True][1], runs[False][1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    np.testing.assert_allclose(runs[True][0].loss, runs[False][0].loss, rtol=1e-12)
    assert runs[True][0].loss[-1] < runs[True][0].loss[0]


def test_threads_share_the_large_layers():
    model = small_cnn(np.float32, wide=True)
    stages = plan_stages(model.components, np.float32)
    conv2, pool = stages[1][0], stages[2][0]
    assert conv2.unit_shares(np.float32)[0] and pool.unit_shares(np.float32)[0]
    x, _ = images(64, 16)
    assert thread_plan(stages, np.float32, 16, x, 2)[0] == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seeded_runs_repeat_bit_for_bit_with_one_and_two_threads(dtype):
    x, y = images(96, 16)
    results = {}
    for threads in (1, 2, 1, 2):
        history, params = train(small_cnn(dtype, wide=True), x, y, dtype, True, threads)
        assert history.loop == "compiled"
        if threads in results:
            previous_history, previous = results[threads]
            assert history.loss == previous_history.loss
            for a, b in zip(params, previous):
                np.testing.assert_array_equal(a, b)
        results[threads] = history, params
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    for a, b in zip(results[1][1], results[2][1]):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * np.abs(b).max())
    python_history, python_params = train(small_cnn(dtype, wide=True), x, y, dtype, False)
    for a, b in zip(results[2][1], python_params):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * np.abs(b).max())


def test_predict_and_evaluate_run_the_same_kernels():
    x, y = images(40, 12)
    model = small_cnn(np.float64)
    train(model, x, y, np.float64, True, 1)
    expected = x
    for component in model.components:
        expected = component.forward(expected)
    expected = np.exp(expected - expected.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)  # predict: the loss's probabilities
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_share_the_input_gradient_by_rows(dtype):
    """The compiled loop's passes of a shared Conv2D on two threads: each thread's rows
    of dL/dx are the same products as on one thread, so the same bits."""
    from numrec._core._training import FusedTrainer
    results = []
    for threads in (1, 2):
        layer = numrec.Conv2D(8, 32, 3, padding=1, dtype=dtype, seed=16)
        layer.build((8, 16, 16))
        assert "rowwise_input" in type(layer).capabilities and layer.unit_shares(dtype)[0]
        trainer = FusedTrainer([(layer, None)], None, None, 24, dtype, threads,
                               input_gradient=True)
        x = np.random.default_rng(17).standard_normal((23, layer.in_features)).astype(dtype)
        g = np.random.default_rng(18).standard_normal((23, layer.out_features)).astype(dtype)
        z = trainer.forward_input(x).copy()
        gx = trainer.backward_batch(g, 23).copy()
        results.append((z, gx, layer.grad_weights.copy(), layer.grad_bias.copy()))
        layer.forward(x)
        np.testing.assert_array_equal(gx, layer.backward(g))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for one, two in zip(*results):
        np.testing.assert_allclose(two, one, rtol=tolerance, atol=tolerance * np.abs(one).max())


def pool_by_scan(x, size):
    """Window maxima of (m, c, h, w) images with a square window and stride ``size``
    and the flat position of each in its image, by the scan-order rule: a later value
    replaces the maximum so far when it is larger or NaN."""
    m, c, h, w = x.shape
    oh, ow = h // size, w // size
    z = np.empty((m, c, oh, ow), x.dtype)
    where = np.empty((m, c, oh, ow), np.int64)
    for s, k, oy, ox in np.ndindex(m, c, oh, ow):
        best = (oy * size, ox * size)
        for i in range(size):
            for j in range(size):
                value, top = x[s, k, oy * size + i, ox * size + j], x[(s, k) + best]
                if value > top or np.isnan(value):
                    best = (oy * size + i, ox * size + j)
        z[s, k, oy, ox] = x[(s, k) + best]
        where[s, k, oy, ox] = (k * h + best[0]) * w + best[1]
    return z, where


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_2x2_follows_the_scan_order_rule_with_ties_and_nans(dtype):
    """The 2x2 stride-2 kernel (its own code) keeps the first maximum on ties and the
    last NaN of a window, as the general kernel and PyTorch do; odd sizes drop the last
    row and column."""
    rng = np.random.default_rng(21)
    x = rng.integers(-2, 3, (3, 2, 7, 9)).astype(dtype)
    x[rng.random(x.shape) < 0.1] = np.nan
    layer = numrec.MaxPool2D(2)
    layer.build(x.shape[1:])
    z = np.empty((3, layer.out_features), dtype)
    layer._forward(x.reshape(3, -1), z)
    expected, where = pool_by_scan(x, 2)
    np.testing.assert_array_equal(z, expected.reshape(3, -1))
    upstream = np.arange(1, z.size + 1, dtype=dtype).reshape(z.shape)  # distinct values
    gx = np.empty((3, layer.in_features), dtype)
    layer._backward(upstream, gx)
    scattered = np.zeros((3, layer.in_features), dtype)
    np.put_along_axis(scattered, where.reshape(3, -1), upstream, axis=1)
    np.testing.assert_array_equal(gx, scattered)
    general = numrec.MaxPool2D(2, stride=(2, 2))  # the same rule through the public pass
    np.testing.assert_array_equal(general.forward(np.nan_to_num(x)),
                                  pool_by_scan(np.nan_to_num(x), 2)[0])


@pytest.mark.parametrize("threads", [1, 2])
def test_kept_columns_give_the_gradient_of_the_rows_as_they_are(threads):
    """The compiled loop's forward pass keeps each sample's column matrix for the weight
    gradient while it fits (32 MB a layer: here some blocks of rows do, some not); new
    values in the same rows replace them, and the Python-level passes keep none.  The
    gradients agree with the Python-level passes' throughout."""
    from numrec._core._training import FusedTrainer
    layer = numrec.Conv2D(8, 16, 3, padding=1, dtype=np.float32, seed=22)
    layer.build((8, 64, 64))  # 1.2 MB of columns per sample: 40 rows take 47 MB
    trainer = FusedTrainer([(layer, None)], None, None, 40, np.float32, threads,
                           input_gradient=True)
    rng = np.random.default_rng(23)
    x = rng.standard_normal((40, layer.in_features)).astype(np.float32)
    for step in range(3):
        if step == 2:
            x[:] = rng.standard_normal(x.shape)  # the same rows, new values
        rows = x[:24] if step == 1 else x  # 24 rows (28 MB) fit on one thread
        g = rng.standard_normal((len(rows), layer.out_features)).astype(np.float32)
        trainer.forward_input(rows)
        gx = trainer.backward_batch(g, len(rows)).copy()
        got = layer.grad_weights.copy(), layer.grad_bias.copy()
        z = layer.forward(rows)
        np.testing.assert_array_equal(gx, layer.backward(g))
        for a, b in zip(got, (layer.grad_weights, layer.grad_bias)):
            if threads == 1:  # the same products
                np.testing.assert_array_equal(a, b)
            else:  # each thread's share of the channels is a product of its own
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
        assert np.isfinite(z).all()

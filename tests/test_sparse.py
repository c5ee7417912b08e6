"""The first layer's kernels for inputs that are mostly zeros, against float64 NumPy.

The fused loop switches them on when at most 35 % of the data's entries are nonzero (as
on MNIST): they skip each zero entry, and keep the weights transposed in panels of 16
units.  (Their results for 1, 2 and 3 threads are compared bit for bit in
test_simd.py.)  Shapes cover partial panels (units modulo 16), partial vectors (modulo 8),
passes of 64 units, and inputs modulo 8.
"""
import numpy as np
import pytest

import numrec
from numrec._core._layers import _simd_kernels
from numrec._core._losses import MSE
from numrec._core._training import (FusedTrainer, _dense_inputs_on_panels,
                                     _sparse_input_kernels, mostly_zeros, plan_stages)

pytestmark = pytest.mark.skipif(not _simd_kernels(), reason="the processor lacks AVX2 and FMA")

UNITS = [1, 8, 15, 16, 17, 37, 64, 65, 100]
INPUTS = [1, 7, 8, 9, 75, 784]


def _sparse_rows(rng, m, n_in, density):
    """Rows of normal entries, round(density * n_in) of them at random places, the
    others +0.0."""
    x = rng.standard_normal((m, n_in)).astype(np.float32)
    keep = np.argsort(rng.random((m, n_in)), axis=1) < round(density * n_in)
    return np.where(keep, x, np.float32(0))


def _layer(n_in, n_out, rng):
    layer = numrec.Dense(n_in, n_out, seed=rng)
    layer.bias = rng.standard_normal(n_out).astype(np.float32)
    return layer


def _tolerance(a, b):
    """float32 rounding of dot products of |a| . |b| (k terms): a few ulps per term."""
    return 4e-7 * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-7


@pytest.mark.parametrize("m", [1, 3, 33])
@pytest.mark.parametrize("n_out", UNITS)
@pytest.mark.parametrize("n_in", INPUTS)
@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_forward_matches_float64(m, n_out, n_in, density):
    rng = np.random.default_rng(m * 10000 + n_out * 100 + n_in)
    layer = _layer(n_in, n_out, rng)
    x = _sparse_rows(rng, m, n_in, density)
    weights = layer.weights.copy()
    expected = x.astype(np.float64) @ weights.T.astype(np.float64) + layer.bias
    assert layer._sparse_inputs(True)
    try:
        got = layer.forward(x)
    finally:
        layer._sparse_inputs(False)
    assert np.all(np.abs(got - expected) <= _tolerance(x, weights.T) + 1e-6 * np.abs(layer.bias))
    assert np.array_equal(layer.weights, weights)  # through the panels and back


def test_input_gradient_on_panels_matches_float64():
    rng = np.random.default_rng(7)
    layer = _layer(75, 37, rng)
    x = _sparse_rows(rng, 5, 75, 0.2)
    grad_output = rng.standard_normal((5, 37)).astype(np.float32)
    expected = grad_output.astype(np.float64) @ layer.weights.astype(np.float64)
    got = _backward_on_panels(layer, x, grad_output)
    assert np.all(np.abs(got - expected) <= _tolerance(grad_output, layer.weights))


def _backward_on_panels(layer, x, grad_output):
    """dL/dx from ``layer.backward`` with the kernels for zero inputs on."""
    layer._sparse_inputs(True)
    try:
        layer.forward(x)
        return layer.backward(grad_output)
    finally:
        layer._sparse_inputs(False)


@pytest.mark.parametrize("n_out", [1, 15, 16, 37, 256])
@pytest.mark.parametrize("n_in", [1, 7, 8, 9, 75, 512])
def test_columns_come_back_from_the_panels_as_they_were(n_out, n_in):
    """Any range of columns (the threads' shares of an input gradient), others untouched."""
    from numrec._core._layers import _panels, _unpanel_columns
    rng = np.random.default_rng(n_out * 1000 + n_in)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    wt = _panels(w)
    for lo, hi in ((0, n_in), (0, n_in // 2), (n_in // 3, n_in), (min(3, n_in), n_in)):
        out = np.full_like(w, np.nan)
        _unpanel_columns(wt, out, lo, hi)
        assert np.array_equal(out[:, lo:hi], w[:, lo:hi])
        assert np.isnan(out[:, :lo]).all() and np.isnan(out[:, hi:]).all()
    with pytest.raises(ValueError, match="lo <= hi"):
        _unpanel_columns(wt, w.copy(), 1, 0)


@pytest.mark.parametrize("m", [1, 5, 128, 129])
def test_input_gradient_on_panels_gives_the_dense_layouts_bits(m):
    """g W of a layer on the kernels for zero inputs: the dense kernel's (or BLAS's, past
    128 rows) product of the same weights, bit for bit."""
    rng = np.random.default_rng(m)
    layer = _layer(300, 120, rng)  # 36 000 weights: BLAS's product past 128 rows
    x = _sparse_rows(rng, m, 300, 0.5)
    grad_output = rng.standard_normal((m, 120)).astype(np.float32)
    layer.forward(x)
    expected = layer.backward(grad_output)
    assert np.array_equal(_backward_on_panels(layer, x, grad_output), expected)


def _sgd_step(layer, x, targets, lr, threads):
    """One fused SGD step on the whole of x under MSE; returns the new parameters."""
    history = numrec.Sequential([layer]).fit(x, targets, batch_size=len(x),
                                             optimizer=numrec.SGD(lr), fused=True,
                                             threads=threads, seed=0)
    assert history.fused
    return layer.weights.copy(), layer.bias.copy()


@pytest.mark.parametrize("m", [1, 5, 32, 33, 64, 129])
@pytest.mark.parametrize("n_out", [16, 37, 100])
@pytest.mark.parametrize("n_in", [9, 75, 784])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_update_matches_float64(m, n_out, n_in, threads):
    lr = 0.25
    rng = np.random.default_rng(m * 10000 + n_out * 100 + n_in)
    layer = _layer(n_in, n_out, rng)
    x = _sparse_rows(rng, m, n_in, 0.2)
    targets = rng.standard_normal((m, n_out)).astype(np.float32)
    assert mostly_zeros(x)
    w0, b0, x64 = (layer.weights.astype(np.float64), layer.bias.astype(np.float64),
                   x.astype(np.float64))
    g = 2 * (x64 @ w0.T + b0 - targets) / m
    weights, bias = _sgd_step(layer, x, targets, lr, threads)
    # g is rounded in float32 from z, whose error scales with |x| |w| + |b|; a row or a
    # column of x missed or counted twice would be off by about lr |g|.T |x|.
    g_error = 1e-5 * np.abs(g) + 2e-6 / m * (np.abs(x64) @ np.abs(w0).T + np.abs(b0)
                                            + np.abs(targets))
    slack = lr * g_error.T @ np.abs(x64) + 1e-6 * np.abs(w0) + 1e-7
    assert np.all(np.abs(weights - (w0 - lr * g.T @ x64)) <= slack)
    np.testing.assert_allclose(bias, b0 - lr * g.sum(axis=0), rtol=1e-5, atol=1e-5)
    assert not np.array_equal(weights, w0)


def test_negative_zeros_are_computed_and_change_no_bit():
    """Only +0.0 is skipped; a -0.0 entry adds -0.0 * w, which leaves every sum as it was."""
    rng = np.random.default_rng(8)
    x = _sparse_rows(rng, 40, 784, 0.15)
    targets = rng.standard_normal((40, 48)).astype(np.float32)
    skipped = _sgd_step(_layer(784, 48, np.random.default_rng(1)), x, targets, 0.5, 2)
    computed = _sgd_step(_layer(784, 48, np.random.default_rng(1)),
                         np.where(x == 0, np.float32(-0.0), x), targets, 0.5, 2)
    for a, b in zip(skipped, computed):
        assert np.array_equal(a, b)


def test_nan_and_infinite_inputs_are_not_skipped():
    """Through the kernel entry point (the public methods refuse such inputs)."""
    layer = numrec.Dense(64, 20, seed=0)
    x = np.zeros((3, 64), dtype=np.float32)
    x[0, 5], x[1, 9], x[2, 63] = np.nan, np.inf, 1.0
    z = np.empty((3, 20), dtype=np.float32)
    layer._sparse_inputs(True)
    try:
        layer._forward(x, z)
    finally:
        layer._sparse_inputs(False)
    assert np.all(np.isnan(z[0]))
    assert np.all(np.isinf(z[1]) | np.isnan(z[1]))  # inf * w, NaN where w is 0
    np.testing.assert_allclose(z[2], layer.weights[:, 63] + layer.bias, rtol=1e-6)


def test_agrees_with_the_full_product_and_the_python_loop():
    """Two epochs on MNIST-like data: zero-skipping kernels, full-product kernels, and the
    per-batch Python loop (BLAS) end within float32 rounding of each other."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(640, 784), dtype=np.uint8)
    x[rng.random(x.shape) < 0.8] = 0
    y = rng.integers(0, 10, size=640)
    trained = []
    for sparse, fused in ((True, True), (False, True), (False, False)):
        previous = _sparse_input_kernels(sparse)
        try:
            model = numrec.mnist_mlp(seed=2)
            history = model.fit(x, y, epochs=2, batch_size=32, optimizer=numrec.SGD(0.5),
                                seed=1, fused=fused)
        finally:
            _sparse_input_kernels(previous)
        assert history.fused == fused
        trained.append(model.parameters())
    for other in trained[1:]:
        for a, b in zip(trained[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    assert not np.array_equal(trained[0][0], trained[1][0])  # the kernels did differ


@pytest.mark.parametrize("threads", [1, 2])
def test_evaluation_on_panels_counts_the_same(threads):
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, size=(2500, 784), dtype=np.uint8)
    x[rng.random(x.shape) < 0.8] = 0
    y = rng.integers(0, 10, size=2500)
    model = numrec.mnist_mlp(seed=3)
    model.fit(x[:500], y[:500], epochs=1, batch_size=32, optimizer=numrec.SGD(0.5), seed=0)
    expected = np.count_nonzero(model.predict_classes(x) == y)
    trainer = FusedTrainer(plan_stages(model.components), MSE(), numrec.SGD(0.5), 32,
                           np.float32, threads)
    counts = []
    for sparse in (True, False):
        previous = _sparse_input_kernels(sparse)
        try:
            counts.append(trainer.count_correct(x, y))
        finally:
            _sparse_input_kernels(previous)
    # An argmax may flip where two outputs tie to float32 rounding; none does here.
    assert counts == [expected, expected]
    assert expected > 250


def test_density_threshold():
    x = np.zeros((2000, 100), dtype=np.uint8)
    x[:, :35] = 1
    assert mostly_zeros(x)
    x[:, 35] = 1
    assert not mostly_zeros(x)
    x[:1024, 35] = 0                      # only the first 1024 rows are looked at
    assert mostly_zeros(x)
    assert not mostly_zeros(x[:0])


def test_switch_reports_and_restores_the_setting():
    original = _sparse_input_kernels()
    try:
        assert _sparse_input_kernels(False) == original
        assert _sparse_input_kernels() is False
        assert _sparse_input_kernels(True) is False
        assert _sparse_input_kernels() is True
    finally:
        _sparse_input_kernels(original)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_up_to_8192_inputs_switch(dtype):
    assert not numrec.Dense(8193, 4, seed=0, dtype=dtype)._sparse_inputs(True)
    layer = numrec.Dense(10, 4, seed=0, dtype=dtype)
    weights = layer.weights.copy()
    assert layer._sparse_inputs(True) and layer._sparse_inputs(True)
    assert not layer._sparse_inputs(False)
    assert np.array_equal(layer.weights, weights)


def _chunked_training(hold, threads=2):
    """Trains a copy of one model on 3 chunks of batches; returns its weights after the
    chunks (read within the hold, if any) and after the hold ends."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, size=(300, 784), dtype=np.uint8)
    x[rng.random(x.shape) < 0.8] = 0
    y = rng.integers(0, 10, size=300).astype(np.int64)
    model = numrec.mnist_mlp(seed=5)
    trainer = FusedTrainer(plan_stages(model.components), MSE(), numrec.SGD(0.5), 32,
                           np.float32, threads)
    order = rng.permutation(300).astype(np.int64)
    first = model.components[0]
    if not hold:
        for start in (0, 96, 192):
            trainer.train(x, y, order, start, min(start + 96, 300))
        return first.weights.copy(), first.weights.copy()
    with trainer.holding(x):
        for start in (0, 96, 192):
            trainer.train(x, y, order, start, min(start + 96, 300))
        during = first.weights.copy()
    return during, first.weights.copy()


@pytest.mark.parametrize("threads", [1, 2])
def test_holding_changes_no_bit_and_writes_the_weights_back(threads):
    _, plain = _chunked_training(hold=False, threads=threads)
    during, after = _chunked_training(hold=True, threads=threads)
    np.testing.assert_array_equal(after, plain)
    assert not np.array_equal(during, after)  # the panels alone were trained meanwhile


def test_holding_is_released_on_errors_and_guards_misuse():
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, size=(64, 784), dtype=np.uint8)
    x[rng.random(x.shape) < 0.8] = 0
    y = rng.integers(0, 10, size=64).astype(np.int64)
    model = numrec.mnist_mlp(seed=5)
    first = model.components[0]
    initial = first.weights.copy()
    trainer = FusedTrainer(plan_stages(model.components), MSE(), numrec.SGD(0.5), 32,
                           np.float32, 2)
    with pytest.raises(ValueError, match="order"):
        with trainer.holding(x):
            trainer.train(x, y, np.arange(64), 0, 32)   # trains, then a bad order
            trainer.train(x, y, np.full(64, 99), 32, 64)
    trained = first.weights.copy()
    assert not np.array_equal(trained, initial)       # written back on the way out
    with trainer.holding(x):
        with pytest.raises(RuntimeError, match="already holds"):
            trainer.holding(x).__enter__()
        with pytest.raises(RuntimeError, match="holding"):
            trainer.count_correct(x, y)
        with pytest.raises(RuntimeError, match="held data"):
            trainer.train(x.copy(), y, np.arange(64), 0, 32)
    assert trainer.count_correct(x, y) >= 0           # usable again after the hold
    with pytest.raises(ValueError, match="shape"):
        trainer.holding(x[:, :10]).__enter__()
    np.testing.assert_array_equal(first.weights, trained)


@pytest.mark.parametrize("n_in", [9, 75, 784])
@pytest.mark.parametrize("batch_size", [1, 5, 32])
@pytest.mark.parametrize("threads", [1, 2])
def test_pixels_read_as_they_are_give_the_bits_of_converted_inputs(n_in, batch_size, threads):
    """uint8 pixels go to the first layer as they are (a batch copied, not converted; the
    test set read in place); the results equal, bit for bit, those of float32 inputs
    holding pixel / 255."""
    rng = np.random.default_rng(n_in + batch_size)
    pixels = rng.integers(1, 256, size=(203, n_in), dtype=np.uint8)
    pixels[rng.random(pixels.shape) < 0.8] = 0
    converted = pixels.astype(np.float32) / np.float32(255)
    labels = rng.integers(0, 10, size=203).astype(np.int64)
    order = rng.permutation(203).astype(np.int64)
    results = []
    for x in (pixels, converted):
        model = numrec.Sequential([numrec.Dense(n_in, 48, seed=1), numrec.LeakyReLU(0.2),
                                   numrec.Dense(48, 10, seed=2), numrec.Sigmoid()])
        trainer = FusedTrainer(plan_stages(model.components), MSE(), numrec.SGD(0.5),
                               batch_size, np.float32, threads)
        with trainer.holding(x):
            assert trainer._takes_pixels(x, training=True) == (x.dtype == np.uint8)
            for _ in range(2):
                trainer.train(x, labels, order, 0, 203)
        results.append((model.parameters(), trainer.count_correct(x, labels)))
    (trained_pixels, correct_pixels), (trained_floats, correct_floats) = results
    for a, b in zip(trained_pixels, trained_floats):
        np.testing.assert_array_equal(a, b)
    assert correct_pixels == correct_floats


def test_mostly_zeros_takes_a_threshold():
    x = np.zeros((10, 100), dtype=np.float32)
    x[:, :50] = 1  # half nonzero
    assert not mostly_zeros(x)
    assert mostly_zeros(x, 0.6) and not mostly_zeros(x, 0.4)


@pytest.mark.skipif(not _simd_kernels(), reason="the kernels for zero inputs need AVX2")
@pytest.mark.parametrize("dtype, density, batch, dense_on_panels, switches", [
    (np.float32, 0.5, 32, True, True), (np.float32, 0.5, 512, True, True),
    (np.float32, 0.9, 32, True, True), (np.float32, 0.9, 512, True, False),
    (np.float32, 0.5, 512, False, False), (np.float32, 0.9, 32, False, False),
    (np.float64, 0.5, 32, True, True), (np.float64, 0.5, 512, True, False)])
def test_dense_data_trains_on_them_as_far_as_they_are_faster(dtype, density, batch,
                                                            dense_on_panels, switches):
    """A float32 first layer runs its kernels for zero inputs on inputs of any density
    when training on batches of up to 128 rows (on dense inputs they are register-blocked
    products), and at up to 60 % nonzero on longer ones; a float64 one, or a float32 one
    with dense inputs kept off them, up to 60 % nonzero on batches of up to 128 rows
    only.  The weights then differ from the full product's by rounding only, or not at
    all."""
    rng = np.random.default_rng(3)
    x = np.where(rng.random((1024, 784)) < density, rng.integers(1, 256, (1024, 784)), 0)
    x = x.astype(np.uint8)
    y = rng.integers(0, 10, 1024)
    runs = []
    previous_dense = _dense_inputs_on_panels(dense_on_panels)
    try:
        for sparse in (True, False):
            previous = _sparse_input_kernels(sparse)
            try:
                model = numrec.Sequential([
                    numrec.Dense(784, 64, seed=0, dtype=dtype), numrec.LeakyReLU(0.2),
                    numrec.Dense(64, 10, seed=1, dtype=dtype), numrec.Sigmoid()])
                model.fit(x, y, loss=numrec.MSE(), optimizer=numrec.SGD(0.1),
                          batch_size=batch, epochs=1, seed=0, verbose=0, threads=1)
                runs.append(model.components[0].weights.copy())
            finally:
                _sparse_input_kernels(previous)
    finally:
        _dense_inputs_on_panels(previous_dense)
    assert not np.array_equal(*runs) if switches else np.array_equal(*runs)
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(runs[0], runs[1], rtol=rtol, atol=atol)


@pytest.mark.skipif(not _simd_kernels(), reason="the kernels for zero inputs need AVX2")
@pytest.mark.parametrize("dtype, switches", [(np.float32, True), (np.float64, False)])
def test_half_zero_data_predicts_on_them_in_float32(dtype, switches):
    """predict runs the float32 kernels for zero inputs up to 60 % nonzero inputs (float64:
    35 %); the outputs then differ from the full product's by rounding only."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((700, 784)) * (rng.random((700, 784)) < 0.5)).astype(dtype)
    model = numrec.Sequential([numrec.Dense(784, 64, seed=0, dtype=dtype), numrec.LeakyReLU(0.2),
                               numrec.Dense(64, 10, seed=1, dtype=dtype), numrec.Sigmoid()])
    outputs = []
    for sparse in (True, False):
        previous = _sparse_input_kernels(sparse)
        try:
            outputs.append(model.predict(x))
        finally:
            _sparse_input_kernels(previous)
    assert not np.array_equal(*outputs) if switches else np.array_equal(*outputs)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)


def _deep_model(seed, relu):
    hidden = numrec.ReLU if relu else (lambda: numrec.LeakyReLU(0.2))
    return numrec.Sequential([
        numrec.Dense(784, 256, seed=seed), hidden(),
        numrec.Dense(256, 512, seed=seed + 1), hidden(),
        numrec.Dense(512, 10, seed=seed + 2)], loss=numrec.SoftmaxCrossEntropy())


def _mnist_like(rng, n):
    x = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
    x[rng.random(x.shape) < 0.8] = 0
    return x, rng.integers(0, 10, size=n)


def _fit_hidden_panels(on, model, x, y, **options):
    from numrec._core._training import _hidden_layer_panels
    previous = _hidden_layer_panels(on)
    try:
        history = model.fit(x, y, **options)
    finally:
        _hidden_layer_panels(previous)
    assert history.fused
    return history


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("threads", [1, 2])
def test_hidden_layers_train_on_panels_as_on_the_full_products(optimizer, threads):
    """784-256-512-10 (ReLU) on MNIST-like pixels, two epochs at batch 128: the hidden
    256->512 layer on the kernels for zero inputs (with the optimizer's state in their
    layout for momentum and Adam) ends within float32 rounding of the full products; the
    public weights and the optimizer's state come back to their own layout after fit."""
    rng = np.random.default_rng(8)
    x, y = _mnist_like(rng, 1280)
    make = {"sgd": lambda: numrec.SGD(0.05), "momentum": lambda: numrec.SGD(0.02, momentum=0.9),
            "adam": lambda: numrec.Adam(1e-3)}[optimizer]
    trained, states = [], []
    for on in (True, False):
        model, opt = _deep_model(3, relu=True), make()
        _fit_hidden_panels(on, model, x, y, epochs=2, batch_size=128, optimizer=opt, seed=1,
                           threads=threads)
        trained.append(model.parameters())
        states.append([a.copy() for slot in getattr(opt, "_state", []) for a in slot])
        # the weights the test pass reads are the public ones
        assert model.evaluate(x[:500], y[:500])["accuracy"] == pytest.approx(
            np.mean(model.predict_classes(x[:500]) == y[:500]))
    for a, b in zip(trained[0], trained[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert not np.array_equal(trained[0][2], trained[1][2])  # the kernels did differ
    for a, b in zip(states[0], states[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("relu, batch_size, threads", [
    (False, 128, 2),   # LeakyReLU's outputs are not zeros
    (True, 256, 2),    # past 128 rows the full products are faster
    (True, 32, 2),     # thread 0 alone computes the input gradient at batch 32
])
def test_hidden_layers_stay_on_the_full_products_where_those_are_faster(relu, batch_size,
                                                                        threads):
    rng = np.random.default_rng(9)
    x, y = _mnist_like(rng, 512)
    results = []
    for on in (True, False):
        model = _deep_model(5, relu=relu)
        _fit_hidden_panels(on, model, x, y, epochs=1, batch_size=batch_size,
                           optimizer=numrec.SGD(0.05), seed=2, threads=threads)
        results.append(model.parameters())
    for a, b in zip(*results, strict=True):
        assert np.array_equal(a, b)


def test_validation_after_hidden_layers_on_panels_is_what_evaluate_gives():
    """The test pass runs the full products, as evaluate() does: the same bits."""
    rng = np.random.default_rng(10)
    x, y = _mnist_like(rng, 640)
    model = _deep_model(6, relu=True)
    history = _fit_hidden_panels(True, model, x, y, epochs=1, batch_size=128,
                                 optimizer=numrec.Adam(1e-3), seed=3, threads=2,
                                 validation_data=(x[:300], y[:300]))
    result = model.evaluate(x[:300], y[:300])
    assert result["loss"] == history.val_loss[0]
    assert result["accuracy"] == history.val_accuracy[0]

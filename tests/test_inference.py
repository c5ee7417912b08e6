"""The compiled inference engine behind predict, predict_classes, evaluate and model(x).

Outputs are checked against an independent NumPy forward pass in float64 of the same
weights (dense and convolutional models, float32 and float64, uint8 pixels and floats,
one sample and odd batch sizes); evaluate against NumPy's loss and accuracy and, bit
for bit, against fit's own test pass; the cached engine against changes of weights,
loads and training.
"""
import copy
import pickle
import threading

import numpy as np
import pytest

import numrec
import numrec.model as model_module
from python_components import PySigmoid

DTYPES = (np.float32, np.float64)
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


# --- an independent forward pass ----------------------------------------------------------

def conv2d(x, weights, bias, stride, padding):
    """x (n, c, h, w) float64, weights (o, c, kh, kw): cross-correlation as PyTorch's."""
    (sh, sw), (ph, pw) = stride, padding
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o, c, kh, kw = weights.shape
    n, _, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.empty((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = np.tensordot(patch, weights, axes=([1, 2, 3], [1, 2, 3]))
    return out + bias[None, :, None, None]


def max_pool(x, size, stride):
    (kh, kw), (sh, sw) = size, stride
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].max(axis=(2, 3))
    return out


def reference_forward(model, x):
    """The model's outputs for rows or images ``x`` in float64, in evaluation mode."""
    out = np.asarray(x, dtype=np.float64)
    if x.dtype == np.uint8:
        out = out / 255
    out = out.reshape(len(out), *model.input_shape)
    for component in model.components:
        kind = type(component).__name__
        w = [np.asarray(p, dtype=np.float64) for p in getattr(component, "parameters",
                                                               lambda: [])()]
        if kind == "Dense":
            out = out.reshape(len(out), -1) @ w[0].T + w[1]
        elif kind == "Conv2D":
            out = conv2d(out, w[0], w[1], component.stride, component.padding)
        elif kind == "MaxPool2D":
            out = max_pool(out, component.size, component.stride)
        elif kind == "Flatten":
            out = out.reshape(len(out), -1)
        elif kind == "Dropout":
            pass  # identity in evaluation mode
        elif kind == "LeakyReLU":
            out = np.where(out > 0, out, component.alpha * out)
        elif kind == "ReLU":
            out = np.maximum(out, 0)
        elif kind in ("Sigmoid", "PySigmoid"):
            out = 1 / (1 + np.exp(-out))
        elif kind == "Tanh":
            out = np.tanh(out)
        elif kind == "Softmax":
            e = np.exp(out - out.max(axis=1, keepdims=True))
            out = e / e.sum(axis=1, keepdims=True)
        else:
            raise AssertionError(f"no reference for {kind}")
    return out.reshape(len(out), -1)


# --- models and data ---------------------------------------------------------------------

def dense_model(dtype, seed=0, dropout=0.0):
    rng = np.random.default_rng(seed)
    components = [numrec.Dense(784, 256, seed=rng, dtype=dtype), numrec.LeakyReLU(0.2)]
    if dropout:
        components.append(numrec.Dropout(dropout, seed=seed))
    components += [numrec.Dense(256, 10, seed=rng, dtype=dtype), numrec.Sigmoid()]
    for layer in components:  # biases away from zero, so that they count
        if isinstance(layer, numrec.Dense):
            layer.bias = rng.standard_normal(layer.bias.shape).astype(dtype) * 0.1
    return numrec.Sequential(components, loss=numrec.MSE())


def cnn_model(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return numrec.Sequential([
        numrec.Conv2D(1, 4, 3, dtype=dtype, seed=rng), numrec.ReLU(),
        numrec.Conv2D(4, 6, 3, stride=2, padding=1, dtype=dtype, seed=rng), numrec.Tanh(),
        numrec.MaxPool2D(2), numrec.Dropout(0.5, seed=1), numrec.Flatten(),
        numrec.Dense(6 * 6 * 6, 10, dtype=dtype, seed=rng), numrec.Softmax(),
    ], input_shape=(1, 28, 28), loss=numrec.CrossEntropy())


def pixels(n, seed=0, density=0.2, shape=(784,)):
    """MNIST-like uint8 images, mostly zeros: rows (n, 784) or (n, *shape)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 256, size=(n, 28, 28)).astype(np.uint8)
    x = np.where(rng.random((n, 28, 28)) < density, x, 0).astype(np.uint8)
    return x.reshape(n, *shape)


def dense_inputs(n, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 784)).astype(dtype)


def engine_of(model):
    return model.__dict__.get("_engines")


# --- outputs against NumPy ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 7, 16, 17, 1023, 1025, 2100])
def test_dense_predict_matches_numpy(dtype, n):
    model = dense_model(dtype)
    rows = pixels(n, seed=n).reshape(n, 784)
    for x in (rows, np.asfortranarray(rows), dense_inputs(n, dtype, seed=n),
              dense_inputs(n, dtype, seed=n)[:, ::-1]):
        got = model.predict(x)
        assert got.dtype == dtype and got.shape == (n, 10)
        np.testing.assert_allclose(got, reference_forward(model, x), **TOLERANCE[dtype])
    assert engine_of(model) is not None and engine_of(model)[1] is not None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 5, 33])
def test_cnn_predict_matches_numpy(dtype, n):
    model = cnn_model(dtype)
    images = pixels(n, seed=n, shape=(28, 28))
    for x in (images, images.reshape(n, 1, 28, 28).astype(dtype) / 255,
              images.reshape(n, 784)):
        got = model.predict(x)
        np.testing.assert_allclose(got, reference_forward(model, x), **TOLERANCE[dtype])
        np.testing.assert_array_equal(model.predict_classes(x), got.argmax(axis=1))
    assert engine_of(model)[1] is not None  # the compiled engine ran it


@pytest.mark.parametrize("dtype", DTYPES)
def test_float_inputs_of_another_dtype_are_cast(dtype):
    model = dense_model(dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    x = dense_inputs(9, other)
    np.testing.assert_allclose(model.predict(x), reference_forward(model, x),
                               **TOLERANCE[dtype])


def test_dropout_is_the_identity_and_the_modes_are_restored():
    model = dense_model(np.float32, dropout=0.5)
    x = pixels(40)
    assert model.training
    expected = reference_forward(model, x)  # without dropout
    for _ in range(2):
        np.testing.assert_allclose(model.predict(x), expected, **TOLERANCE[np.float32])
        np.testing.assert_allclose(model.predict(x[:1]), expected[:1], **TOLERANCE[np.float32])
    assert model.training and all(c.training for c in model.components
                                  if isinstance(c, numrec.Layer))
    assert model.components[2].draws == 0  # no mask drawn
    model.eval()
    np.testing.assert_allclose(model(x), expected, **TOLERANCE[np.float32])
    assert not model.training


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_size_and_chunks_do_not_change_a_row(dtype):
    """Rows come out the same whatever the batch_size argument and wherever they sit,
    except between the one-thread path for up to 16 rows and longer inputs, where the
    first layer may run on other kernels (within rounding)."""
    model = dense_model(dtype)
    x = dense_inputs(3000, dtype)
    full = model.predict(x)
    for batch_size in (1, 7, 1000, 5000):
        np.testing.assert_array_equal(model.predict(x, batch_size=batch_size), full)
    np.testing.assert_array_equal(model.predict(x[1000:2500]), full[1000:2500])
    np.testing.assert_allclose(model.predict(x[5:6]), full[5:6], **TOLERANCE[dtype])


@pytest.mark.parametrize("data", ["pixels", "dense"])
def test_thread_count_does_not_change_bits(monkeypatch, data):
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(model_module, "_default_threads", lambda: threads)
        model = dense_model(np.float32)
        x = pixels(2100) if data == "pixels" else dense_inputs(2100, np.float32)
        results.append(model.predict(x))
    np.testing.assert_array_equal(results[0], results[1])


def test_the_small_path_is_one_thread_and_agrees_with_the_old_path():
    """Up to 16 rows: the same bits as the layers' own forward (the same kernels)."""
    model = dense_model(np.float32)
    x = dense_inputs(16, np.float32)
    with model._mode(False):
        old = model._predict_batch(x)
    np.testing.assert_array_equal(model.predict(x), old)


def test_predict_classes_proba_and_call():
    model = dense_model(np.float32)
    x = pixels(50)
    expected = reference_forward(model, x)
    np.testing.assert_array_equal(model.predict_classes(x), expected.argmax(axis=1))
    np.testing.assert_allclose(model(x), expected, **TOLERANCE[np.float32])
    proba = model.predict_proba(x)
    np.testing.assert_allclose(proba, expected / expected.sum(axis=1, keepdims=True),
                               rtol=1e-5)


def test_softmax_cross_entropy_reports_probabilities():
    rng = np.random.default_rng(3)
    model = numrec.Sequential([numrec.Dense(784, 32, seed=rng), numrec.ReLU(),
                               numrec.Dense(32, 10, seed=rng)],
                              loss=numrec.SoftmaxCrossEntropy())
    x = pixels(30)
    logits = reference_forward(model, x)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict(x), e / e.sum(axis=1, keepdims=True), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(model.predict(x, raw=True), logits, **TOLERANCE[np.float32])


# --- evaluate -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_evaluate_matches_numpy(dtype):
    model = dense_model(dtype)
    x = pixels(1500)
    labels = np.random.default_rng(1).integers(0, 10, 1500)
    output = reference_forward(model, x)
    one_hot = np.eye(10)[labels]
    result = model.evaluate(x, labels)
    assert result["loss"] == pytest.approx(np.sum((output - one_hot) ** 2) / len(x), rel=1e-5)
    assert result["accuracy"] == np.mean(output.argmax(axis=1) == labels)
    targets = np.random.default_rng(2).random((1500, 10)).astype(dtype)
    result = model.evaluate(x, targets, loss=numrec.MSE())
    assert result["loss"] == pytest.approx(np.sum((output - targets) ** 2) / len(x), rel=1e-5)
    assert result["accuracy"] == np.mean(output.argmax(axis=1) == targets.argmax(axis=1))


def test_evaluate_of_a_cnn_matches_numpy():
    model = cnn_model(np.float64)
    x = pixels(60, shape=(1, 28, 28))
    labels = np.random.default_rng(1).integers(0, 10, 60)
    output = reference_forward(model, x)
    result = model.evaluate(x, labels)
    expected = -np.mean(np.log(1e-7 + output[np.arange(60), labels]))  # CrossEntropy's eps
    assert result["loss"] == pytest.approx(expected, rel=1e-10)
    assert result["accuracy"] == np.mean(output.argmax(axis=1) == labels)


def test_evaluate_with_a_python_loss_uses_the_engine_outputs():
    from python_components import PyMSE
    model = dense_model(np.float32)
    x = pixels(40)
    labels = np.arange(40) % 10
    output = reference_forward(model, x)
    result = model.evaluate(x, labels, loss=PyMSE())
    assert result["loss"] == pytest.approx(np.sum((output - np.eye(10)[labels]) ** 2) / 40,
                                           rel=1e-5)


@pytest.mark.filterwarnings("ignore:the network is not learning")  # random labels
@pytest.mark.parametrize("data", ["pixels", "dense"])
def test_evaluate_is_fits_test_pass_bit_for_bit(data):
    """After fit, evaluate on the validation data gives the last validation loss and
    accuracy exactly: the same engine, kernels and order of additions."""
    rng = np.random.default_rng(5)
    n = 1200
    x = pixels(n, seed=5) if data == "pixels" else dense_inputs(n, np.float32, seed=5)
    y = rng.integers(0, 10, n)
    model = dense_model(np.float32)
    batch = 32 if data == "pixels" else 256
    history = model.fit(x[:1000], y[:1000], epochs=1, batch_size=batch, seed=0,
                        validation_data=(x[1000:], y[1000:]), optimizer=numrec.SGD(lr=0.1))
    assert history.loop == "compiled"
    result = model.evaluate(x[1000:], y[1000:])
    assert result["loss"] == history.val_loss[-1]
    assert result["accuracy"] == history.val_accuracy[-1]


# --- models the engine does not run ---------------------------------------------------------

def test_a_model_with_a_python_component_keeps_the_python_path():
    rng = np.random.default_rng(0)
    model = numrec.Sequential([numrec.Dense(784, 20, seed=rng), numrec.ReLU(),
                               numrec.Dense(20, 10, seed=rng), PySigmoid()])
    x = pixels(30)
    np.testing.assert_allclose(model.predict(x), reference_forward(model, x),
                               **TOLERANCE[np.float32])
    assert engine_of(model)[1] is None  # planned, refused
    result = model.evaluate(x, np.arange(30) % 10)
    assert 0 <= result["accuracy"] <= 1


# --- the cached engine ----------------------------------------------------------------------

def test_the_engine_is_reused_and_follows_new_weights():
    model = dense_model(np.float32)
    x = pixels(100)
    model.predict(x)
    model.predict(x[:1])
    engines = dict(engine_of(model)[3])
    first = model.components[0]
    first.weights = np.random.default_rng(9).standard_normal(first.weights.shape).astype(
        np.float32) * 0.05
    model.components[2].bias = np.full(10, 0.5, dtype=np.float32)
    for rows in (x, x[:1]):
        np.testing.assert_allclose(model.predict(rows), reference_forward(model, rows),
                                   **TOLERANCE[np.float32])
    first.weights[3, :] = 1.0  # in place
    np.testing.assert_allclose(model.predict(x), reference_forward(model, x),
                               **TOLERANCE[np.float32])
    assert dict(engine_of(model)[3]) == engines  # the same engines


def test_a_new_component_list_gets_a_new_engine():
    model = dense_model(np.float32)
    x = pixels(20)
    model.predict(x)
    model.components[3] = numrec.Tanh()
    np.testing.assert_allclose(model.predict(x), reference_forward(model, x),
                               **TOLERANCE[np.float32])
    model.components[3] = PySigmoid()
    np.testing.assert_allclose(model.predict(x), reference_forward(model, x),
                               **TOLERANCE[np.float32])


def test_fit_save_load_and_copies(tmp_path):
    model = dense_model(np.float32)
    x = pixels(300)
    y = np.arange(300) % 10
    before = model.predict(x)
    model.fit(x, y, epochs=1, seed=0)
    after = model.predict(x)
    assert not np.array_equal(before, after)
    np.testing.assert_allclose(after, reference_forward(model, x), **TOLERANCE[np.float32])
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = numrec.load(path)
    np.testing.assert_array_equal(loaded.predict(x), after)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(twin.predict(x), after)
        twin.components[0].weights[...] = 0
        np.testing.assert_array_equal(model.predict(x), after)  # not shared


def test_predict_inside_a_callback_during_fit():
    """A callback that predicts between epochs sees the weights of that epoch."""
    model = dense_model(np.float32)
    x, y = pixels(400), np.arange(400) % 10
    seen = []

    def on_epoch(epoch, history):
        seen.append((model.predict(x), reference_forward(model, x)))

    model.fit(x, y, epochs=2, seed=0, on_epoch=on_epoch)
    for got, expected in seen:
        np.testing.assert_allclose(got, expected, **TOLERANCE[np.float32])
    assert not np.array_equal(seen[0][0], seen[1][0])


# --- bad input keeps its errors -------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", [0, -1])  # long inputs: in the first or the last thread's part
@pytest.mark.parametrize("n", [1, 40, 2000])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused(n, bad, row, dtype):
    model = dense_model(dtype)
    x = dense_inputs(n, dtype)
    x[row, 700] = bad
    for call in (model.predict, model.predict_classes, model,
                 lambda rows: model.evaluate(rows, np.zeros(n, dtype=np.int64))):
        with pytest.raises(ValueError, match="x contains NaN or infinity"):
            call(x)


def test_a_float64_value_beyond_float32_is_refused_as_before():
    """Finite in float64, infinite once cast to the model's float32: the layer-by-layer
    path's error, as before the engine."""
    model = dense_model(np.float32)
    x = dense_inputs(3, np.float64)
    x[0, 0] = 1e39
    with pytest.raises(ValueError, match="x contains NaN or infinity"):
        model.predict(x)


def test_the_engine_refuses_bad_buffers():
    model = dense_model(np.float32)
    model.predict(pixels(2))
    engine = next(iter(engine_of(model)[3].values()))
    x = np.zeros((3, 784), dtype=np.float32)
    with pytest.raises(ValueError, match="out"):
        engine.predict(x, np.empty((2, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="out"):
        engine.predict(x, np.empty((3, 10), dtype=np.float64))
    with pytest.raises(TypeError):
        engine.predict(x.astype(np.float64), np.empty((3, 10), dtype=np.float32))
    assert engine.predict(x, np.empty((3, 10), dtype=np.float32))


def test_calls_from_several_threads_at_once():
    """The engine's buffers serve one call at a time: every thread gets its own rows'
    outputs."""
    model = dense_model(np.float32, dropout=0.3)
    inputs = [pixels(n, seed=n) for n in (1, 3, 40, 1100)]
    expected = [model.predict(x) for x in inputs]
    wrong = []

    def work():
        for _ in range(8):
            for x, outputs in zip(inputs, expected):
                if not np.array_equal(model.predict(x), outputs):
                    wrong.append(len(x))

    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert wrong == [] and model.training and model.components[2].training

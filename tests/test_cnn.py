"""Convolutional networks' plumbing: shapes, Flatten, Dropout, image inputs, files.

The layers' own kernels (Conv2D, MaxPool2D) are checked in tests/test_conv.py; here,
what a model made of them needs: shapes checked when the model is made, inputs as images
or rows, Flatten and Dropout (statistics, scaling, modes, gradients, seeds, threads),
save and load, the compiled loop against the Python loop.
"""
import copy
import math

import numpy as np
import pytest

import numrec

DTYPES = (np.float32, np.float64)


def random_data(n, shape, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape))
    w = rng.standard_normal((math.prod(shape), classes))
    y = (x.reshape(n, -1) @ w).argmax(axis=1)
    return x, y


def image_model(dtype=np.float64, p=0.3, seed=0):
    """(2, 3, 4) images → Flatten → Dense 24→16 → ReLU → Dropout → Dense 16→3."""
    rng = np.random.default_rng(seed)
    return numrec.Sequential([
        numrec.Flatten(),
        numrec.Dense(24, 16, seed=rng, dtype=dtype), numrec.ReLU(),
        numrec.Dropout(p, seed=seed),
        numrec.Dense(16, 3, seed=rng, dtype=dtype),
    ], loss=numrec.SoftmaxCrossEntropy(), input_shape=(2, 3, 4))


# --- shapes --------------------------------------------------------------------------------

def test_shapes_propagate_and_layers_know_them():
    model = image_model()
    assert model.input_shape == (2, 3, 4) and model.n_inputs == 24
    flatten, dense, _, dropout, last = model.components
    assert (flatten.input_shape, flatten.output_shape) == ((2, 3, 4), (24,))
    assert (flatten.in_features, flatten.out_features) == (24, 24)
    assert (dense.input_shape, dense.output_shape) == ((24,), (16,))
    assert (dropout.input_shape, dropout.output_shape) == ((16,), (16,))
    assert model.output_shape == (3,)


def test_a_dense_model_takes_its_input_shape_from_the_first_layer():
    model = numrec.mnist_mlp(seed=0)
    assert model.input_shape == (784,)


def test_a_mismatch_names_both_layers_and_both_shapes():
    with pytest.raises(ValueError) as info:
        numrec.Sequential([numrec.Flatten(), numrec.Dense(20, 3)], input_shape=(2, 3, 4))
    message = str(info.value)
    assert "components[1] (Dense(in_features=20" in message
    assert "components[0] (Flatten())" in message
    assert "expects 20 inputs" in message and "(24,)" in message


def test_dense_after_images_asks_for_flatten():
    with pytest.raises(ValueError, match=r"components\[0\].*flat rows of 24 values.*"
                                         r"Flatten\(\).*\(2, 3, 4\)"):
        numrec.Sequential([numrec.Dense(24, 3)], input_shape=(2, 3, 4))


def test_a_first_layer_that_takes_its_size_from_its_input_needs_input_shape():
    with pytest.raises(ValueError, match=r"input_shape=\(1, 28, 28\)"):
        numrec.Sequential([numrec.Flatten(), numrec.Dense(784, 10)])


@pytest.mark.parametrize("shape", [(), (0, 3), (2, -1), "abc", (2.5,)])
def test_bad_input_shapes_are_refused(shape):
    with pytest.raises((TypeError, ValueError), match="input_shape"):
        numrec.Sequential([numrec.Flatten(), numrec.Dense(6, 3)], input_shape=shape)


def test_inputs_as_images_rows_or_grey_images_give_the_same_outputs():
    rng = np.random.default_rng(1)
    model = numrec.Sequential([numrec.Flatten(), numrec.Dense(12, 5, seed=0)],
                              input_shape=(1, 3, 4))
    x = rng.random((6, 1, 3, 4)).astype(np.float32)
    expected = model.predict(x)
    np.testing.assert_array_equal(model.predict(x.reshape(6, 12)), expected)
    np.testing.assert_array_equal(model.predict(x.reshape(6, 3, 4)), expected)
    np.testing.assert_allclose(expected, x.reshape(6, 12) @ model.components[1].weights.T
                               + model.components[1].bias, rtol=1e-5, atol=1e-6)
    pixels = (255 * x).astype(np.uint8)
    np.testing.assert_array_equal(model.predict(pixels.reshape(6, 3, 4)), model.predict(pixels))


def test_inputs_of_another_shape_are_refused_with_the_accepted_shapes():
    model = image_model()
    with pytest.raises(ValueError, match=r"\(n, 2, 3, 4\) or rows \(n, 24\).*\(5, 3, 2, 4\)"):
        model.predict(np.zeros((5, 3, 2, 4)))
    with pytest.raises(ValueError, match=r"\(n, 2, 3, 4\)"):
        model.predict(np.zeros((5, 25)))


def test_summary_shows_output_shapes_and_parameter_counts(capsys):
    model = image_model()
    model.summary()
    lines = capsys.readouterr().out.splitlines()
    assert "(None, 24)" in lines[2] and lines[2].endswith(" 0")
    assert "(None, 16)" in lines[3] and lines[3].endswith(f"{24 * 16 + 16:,}")
    assert "Dropout(p=0.3, seed=0)" in lines[5] and "(None, 16)" in lines[5]
    assert "(None, 3)" in lines[6] and lines[6].endswith(f"{16 * 3 + 3:,}")
    assert model.components[3].draws == 0  # the summary ran in evaluation mode


# --- Flatten -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_flatten_keeps_the_values_in_order(dtype):
    layer = numrec.Flatten()
    assert layer.build((2, 3, 4)) == (24,)
    x = np.arange(48, dtype=dtype).reshape(2, 2, 3, 4)
    out = layer.forward(x)
    np.testing.assert_array_equal(out, x.reshape(2, 24))
    grad = np.arange(48, dtype=dtype).reshape(2, 24) * 2
    np.testing.assert_array_equal(layer.backward(grad), grad.reshape(2, 2, 3, 4))


# --- Dropout -------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_refuses_probabilities_outside_zero_to_one(p):
    with pytest.raises(ValueError, match="p"):
        numrec.Dropout(p)


@pytest.mark.parametrize("seed", [-1, 2 ** 64, 1.5, "x"])
def test_dropout_refuses_bad_seeds(seed):
    with pytest.raises(TypeError, match="seed"):
        numrec.Dropout(0.5, seed=seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.25, 0.5, 0.9])
def test_dropout_keeps_a_share_one_minus_p_and_scales_by_its_inverse(dtype, p):
    layer = numrec.Dropout(p, seed=3)
    x = np.random.default_rng(2).uniform(1, 2, (200, 500)).astype(dtype)
    z = layer.forward(x)
    kept = z != 0
    n = x.size
    # Binomial(n, 1 - p): within 5 standard deviations.
    assert abs(kept.sum() - n * (1 - p)) < 5 * math.sqrt(n * p * (1 - p))
    np.testing.assert_array_equal(z[kept], (x * dtype(1 / (1 - p)))[kept])
    # Each column and each row dropped independently of its place: no stripes.
    assert abs(kept.mean(axis=0).std() - math.sqrt(p * (1 - p) / 200)) < 0.02
    assert abs(np.corrcoef(kept[:, :-1].ravel(), kept[:, 1:].ravel())[0, 1]) < 0.02
    # The next mask is another one.
    assert (layer.forward(x) != 0).sum() != 0 and ((layer.forward(x) != 0) != kept).any()


def test_dropout_is_the_identity_in_evaluation_mode_and_with_p_zero():
    x = np.random.default_rng(4).standard_normal((30, 40))
    layer = numrec.Dropout(0.5, seed=1)
    layer.training = False
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)
    assert layer.draws == 0
    np.testing.assert_array_equal(numrec.Dropout(0.0, seed=1).forward(x), x)


def test_dropout_backward_multiplies_by_the_forward_mask():
    layer = numrec.Dropout(0.4, seed=5)
    x = np.random.default_rng(5).uniform(1, 2, (7, 9))
    z = layer.forward(x)
    g = np.random.default_rng(6).standard_normal((7, 9))
    np.testing.assert_array_equal(layer.backward(g), np.where(z != 0, g / 0.6, 0))


def test_predict_and_evaluate_do_not_drop():
    x, y = random_data(50, (2, 3, 4), 3, seed=7)
    model = image_model(p=0.5)
    reference = numrec.Sequential([c for i, c in enumerate(model.components) if i != 3],
                                  input_shape=(2, 3, 4))
    np.testing.assert_array_equal(model.predict(x, raw=True), reference.predict(x))
    assert model.components[3].draws == 0 and model.training


def test_dropout_gradients_match_finite_differences():
    """dL/dW of the Dense below a Dropout, the mask held by replaying its draw."""
    rng = np.random.default_rng(8)
    model = image_model(p=0.5)
    dropout, dense = model.components[3], model.components[1]
    x, y = random_data(6, (2, 3, 4), 3, seed=9)
    targets = np.eye(3)[y]
    loss = numrec.SoftmaxCrossEntropy()

    def forward():
        dropout.draws = 0  # the same mask every time
        return model.forward(x)

    def value():
        return float(loss.value(forward(), targets))

    model.backward(loss.gradient(forward(), targets))
    analytic = dense.grad_weights.copy()
    assert np.count_nonzero(analytic) and dropout.draws == 1
    eps = 1e-6
    for i, j in zip(rng.integers(0, 16, 25), rng.integers(0, 24, 25)):
        saved = dense.weights[i, j]
        dense.weights[i, j] = saved + eps
        up = value()
        dense.weights[i, j] = saved - eps
        down = value()
        dense.weights[i, j] = saved
        assert analytic[i, j] == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-9)


def train(model, x, y, **options):
    options = {"epochs": 2, "batch_size": 16, "optimizer": numrec.Adam(0.01), "seed": 11,
               **options}
    return model.fit(x, y, **options)


def test_same_seed_same_bits_and_another_seed_other_bits():
    x, y = random_data(300, (2, 3, 4), 3, seed=10)
    runs = []
    for dropout_seed in (0, 0, 1):
        model = image_model(dtype=np.float32)
        model.components[3] = numrec.Dropout(0.3, seed=dropout_seed)
        model = numrec.Sequential(model.components, input_shape=(2, 3, 4))
        history = train(model, x, y, loss=numrec.SoftmaxCrossEntropy())
        assert history.loop == "compiled"
        runs.append((history.loss, [p.copy() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    assert runs[0][0] != runs[2][0]


def test_dropout_masks_do_not_depend_on_the_thread_count():
    """A model whose large layer the threads share (float32, batch 32: exact shares)."""
    x, y = random_data(512, (64,), 10, seed=12)
    results = []
    for threads in (1, 2, 1):
        rng = np.random.default_rng(13)
        model = numrec.Sequential([
            numrec.Dense(64, 600, seed=rng), numrec.ReLU(), numrec.Dropout(0.5, seed=14),
            numrec.Dense(600, 10, seed=rng)])
        history = model.fit(x, y, epochs=2, batch_size=32, loss=numrec.SoftmaxCrossEntropy(),
                            optimizer=numrec.SGD(0.05), seed=15, threads=threads)
        results.append((history.loss, [p.copy() for p in model.parameters()]))
    for other in results[1:]:
        assert other[0] == results[0][0]
        assert all(np.array_equal(a, b) for a, b in zip(other[1], results[0][1]))


@pytest.mark.parametrize("optimizer", [lambda: numrec.SGD(0.1), lambda: numrec.Adam(0.01)],
                         ids=["SGD", "Adam"])
def test_compiled_loop_equals_python_loop(optimizer):
    x, y = random_data(200, (2, 3, 4), 3, seed=16)
    runs = {}
    for fused in (None, False):
        model = image_model()
        history = train(model, x, y, optimizer=optimizer(), fused=fused)
        runs[fused] = model, history
    assert runs[None][1].loop == "compiled" and runs[False][1].loop == "python"
    np.testing.assert_allclose(runs[None][1].loss, runs[False][1].loss, rtol=1e-12)
    for a, b in zip(runs[None][0].parameters(), runs[False][0].parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    assert runs[None][0].components[3].draws == runs[False][0].components[3].draws > 0


def test_dropout_in_the_segmented_loop_equals_the_python_loop():
    """A Python-written layer between compiled runs: the dropout draws stay in step."""
    class Twice(numrec.Layer):
        def forward(self, x):
            return 2 * x

        def backward(self, grad_output):
            return 2 * grad_output

    x, y = random_data(100, (2, 3, 4), 3, seed=17)
    runs = {}
    for fused in (None, False):
        model = image_model()
        model = numrec.Sequential(model.components[:1] + [Twice()] + model.components[1:],
                                  input_shape=(2, 3, 4), loss=model.loss)
        runs[fused] = model, train(model, x, y, optimizer=numrec.SGD(0.05), fused=fused)
    assert runs[None][1].loop == "segmented"
    np.testing.assert_allclose(runs[None][1].loss, runs[False][1].loss, rtol=1e-12)
    assert runs[None][0].components[4].draws == runs[False][0].components[4].draws > 0


# --- copies and files ----------------------------------------------------------------------

def test_copies_keep_the_shapes_and_train():
    x, y = random_data(64, (2, 3, 4), 3, seed=18)
    model = image_model()
    twin = copy.deepcopy(model)
    assert twin.input_shape == (2, 3, 4)
    assert twin.components[0].output_shape == (24,)
    assert twin.components[3].get_config() == model.components[3].get_config()
    assert train(twin, x, y).loop == "compiled"


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_and_load_keep_the_input_shape_and_the_layers(tmp_path, dtype):
    x, y = random_data(64, (2, 3, 4), 3, seed=19)
    model = image_model(dtype=dtype)
    train(model, x, y)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = numrec.load(path)
    assert loaded.input_shape == (2, 3, 4) and loaded.dtype == dtype
    assert [repr(c) for c in loaded.components] == [repr(c) for c in model.components]
    assert isinstance(loaded.loss, numrec.SoftmaxCrossEntropy)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_model_file_with_a_bad_input_shape_is_refused(tmp_path):
    import json

    model = image_model()
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as archive:
        arrays = dict(archive)
    architecture = json.loads(arrays["architecture"].tobytes())
    assert architecture["input_shape"] == [2, 3, 4]
    for bad, pattern in (([2, 0, 4], "input_shape"), ([5, 5], "expects 24 inputs")):
        architecture["input_shape"] = bad
        arrays["architecture"] = np.frombuffer(json.dumps(architecture).encode(), np.uint8)
        np.savez(path, **arrays)
        with pytest.raises(numrec.ModelFileError, match=pattern):
            numrec.load(path)


# --- a small convolutional network, trained, saved and used from the command line ----------

def small_cnn(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return numrec.Sequential([
        numrec.Conv2D(1, 8, 5, seed=rng, dtype=dtype, init="he"), numrec.ReLU(),
        numrec.MaxPool2D(2), numrec.Dropout(0.25, seed=seed), numrec.Flatten(),
        numrec.Dense(8 * 12 * 12, 10, seed=rng, dtype=dtype),
    ], loss=numrec.SoftmaxCrossEntropy(), input_shape=(1, 28, 28))


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory, mnist):
    """A small CNN trained on 3000 MNIST images for 2 epochs, saved; and the test images."""
    (x_train, y_train), (x_test, y_test) = mnist
    x_train = x_train.reshape(-1, 28, 28)[:3000]
    model = small_cnn()
    history = model.fit(x_train, y_train[:3000], epochs=2, batch_size=32,
                        optimizer=numrec.Adam(0.002), seed=0,
                        validation_data=(x_test[:1000], y_test[:1000]))
    path = tmp_path_factory.mktemp("cnn") / "cnn.npz"
    model.save(path)
    return model, history, path


def test_a_short_training_learns(trained_cnn):
    model, history, _ = trained_cnn
    assert history.loop == "compiled"
    assert history.val_accuracy[-1] > 0.85  # chance: 0.1
    assert history.loss[1] < history.loss[0]


def test_summary_of_a_cnn(trained_cnn, capsys):
    trained_cnn[0].summary()
    lines = capsys.readouterr().out.splitlines()
    assert "(None, 8, 24, 24)" in lines[2] and lines[2].endswith(f"{8 * 25 + 8:,}")
    assert "(None, 8, 12, 12)" in lines[4]
    assert "(None, 1152)" in lines[6]
    assert lines[-1].startswith(f"{8 * 25 + 8 + 1152 * 10 + 10:,} parameters")


def test_a_saved_cnn_predicts_the_same(trained_cnn, mnist):
    model, _, path = trained_cnn
    loaded = numrec.load(path)
    assert loaded.input_shape == (1, 28, 28)
    assert [repr(c) for c in loaded.components] == [repr(c) for c in model.components]
    x = mnist[1][0][:300]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(loaded.predict(x.reshape(-1, 1, 28, 28)), model.predict(x))


def test_cnn_compiled_loop_equals_python_loop(mnist):
    (x, y), _ = mnist
    x, y = x[:200].reshape(-1, 1, 28, 28), y[:200]
    runs = {}
    for fused in (None, False):
        model = small_cnn(dtype=np.float64)
        runs[fused] = model, model.fit(x, y, epochs=1, batch_size=20, seed=1, fused=fused,
                                       optimizer=numrec.Adam(0.001))
    assert runs[None][1].loop == "compiled"
    np.testing.assert_allclose(runs[None][1].loss, runs[False][1].loss, rtol=1e-10)
    for a, b in zip(runs[None][0].parameters(), runs[False][0].parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)


def test_numrec_evaluate_and_predict_a_saved_cnn(trained_cnn, small_data, tmp_path):
    import json
    import subprocess
    import sys

    from PIL import Image

    from numrec.datasets import load_mnist

    model, _, path = trained_cnn

    def numrec_command(*args):
        result = subprocess.run([sys.executable, "-m", "numrec", *map(str, args)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[-1])

    report = numrec_command("evaluate", path, "--data", small_data, "--json")
    _, (x_test, y_test) = load_mnist(small_data, dtype=np.uint8)
    assert report["test_accuracy"] == pytest.approx(model.evaluate(x_test, y_test)["accuracy"])
    images = []
    for index in range(3):
        image = tmp_path / f"digit{index}.png"
        Image.fromarray(x_test[index].reshape(28, 28)).save(image)
        images.append(image)
    answers = numrec_command("predict", path, *images, "--json")
    from numrec.images import load_digit

    expected = model.predict_classes(np.stack([load_digit(p) for p in images]))
    assert [a["digit"] for a in answers] == expected.tolist()


def test_numrec_train_preset_cnn(small_data, tmp_path):
    import json
    import subprocess
    import sys

    output = tmp_path / "cnn.npz"
    result = subprocess.run(
        [sys.executable, "-m", "numrec", "train", "--preset", "cnn", "--data", str(small_data),
         "--epochs", "2", "--json", "--output", str(output)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("training conv 16 5x5, max-pool 2, conv 32 5x5")
    assert [line.split()[:2] for line in lines if line.startswith("epoch")] == [
        ["epoch", "1/2"], ["epoch", "2/2"]]
    summary = json.loads(lines[-1])
    assert summary["preset"] == "cnn" and summary["fused"] is True
    assert summary["test_accuracy"] > 0.8
    model = numrec.load(output)
    assert model.input_shape == (1, 28, 28)
    assert [type(c).__name__ for c in model.components][:3] == ["Conv2D", "ReLU", "MaxPool2D"]

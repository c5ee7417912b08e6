"""Sequential: predict, evaluate, uint8 pixels, the history and the callbacks of fit."""
import numpy as np
import pytest

import numrec


@pytest.fixture
def model():
    return numrec.Sequential([
        numrec.Dense(6, 8, seed=0, dtype=np.float64), numrec.LeakyReLU(0.2),
        numrec.Dense(8, 4, seed=1, dtype=np.float64), numrec.Sigmoid(),
    ])


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((150, 6))
    y = np.argmax(x @ rng.standard_normal((6, 4)), axis=1)
    return x, y


def numpy_forward(model, x):
    dense1, leaky, dense2, _ = model.components
    z1 = x @ dense1.weights.T + dense1.bias
    a1 = np.where(z1 > 0, z1, leaky.alpha * z1)
    return 1 / (1 + np.exp(-(a1 @ dense2.weights.T + dense2.bias)))


def test_forward_matches_numpy(model, data):
    x, _ = data
    np.testing.assert_allclose(model.forward(x), numpy_forward(model, x), rtol=1e-12)


def test_predict_in_batches_equals_forward(model, data):
    x, _ = data
    full = model.forward(x)
    for batch_size in (1, 7, 150, 1000):
        np.testing.assert_allclose(model.predict(x, batch_size=batch_size), full, rtol=1e-14)


def test_predict_classes_is_argmax(model, data):
    x, _ = data
    classes = model.predict_classes(x)
    np.testing.assert_array_equal(classes, np.argmax(numpy_forward(model, x), axis=1))
    assert classes.dtype.kind == "i"


def test_uint8_inputs_are_scaled(model):
    pixels = np.arange(0, 256, 16, dtype=np.uint8)[:12].reshape(2, 6)
    np.testing.assert_allclose(model.forward(pixels), numpy_forward(model, pixels / 255),
                               rtol=1e-12)
    np.testing.assert_allclose(model.predict(pixels), model.forward(pixels / 255), rtol=1e-14)


def test_float_inputs_are_cast_to_the_model_dtype():
    model = numrec.mnist_mlp(hidden=(8,), seed=0, dtype=np.float32)
    x = np.random.default_rng(0).uniform(size=(3, 784))
    out = model.forward(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, model.forward(x.astype(np.float32)))


def test_evaluate_with_target_rows(model, data):
    x, y = data
    target = np.eye(4)[y]
    output = numpy_forward(model, x)
    result = model.evaluate(x, target)
    assert set(result) == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(np.sum((output - target) ** 2) / len(x), rel=1e-12)
    assert result["accuracy"] == pytest.approx(np.mean(output.argmax(axis=1) == y))


def test_evaluate_with_labels(model, data):
    x, y = data
    target = np.eye(4)[y]
    output = numpy_forward(model, x)
    result = model.evaluate(x, y)
    assert result["loss"] == pytest.approx(np.sum((output - target) ** 2) / len(x), rel=1e-12)
    assert result["accuracy"] == pytest.approx(np.mean(output.argmax(axis=1) == y))


def test_parameters_and_gradients_are_the_layer_arrays(model):
    dense1, _, dense2, _ = model.components
    params, grads = model.parameters(), model.gradients()
    assert [p is q for p, q in zip(params, [dense1.weights, dense1.bias,
                                           dense2.weights, dense2.bias])] == [True] * 4
    assert [p is q for p, q in zip(grads, [dense1.grad_weights, dense1.grad_bias,
                                          dense2.grad_weights, dense2.grad_bias])] == [True] * 4


def test_mnist_mlp_architecture():
    model = numrec.mnist_mlp(seed=0)
    kinds = [type(c) for c in model.components]
    assert kinds == [numrec.Dense, numrec.LeakyReLU, numrec.Dense, numrec.Sigmoid]
    assert (model.components[0].in_features, model.components[0].out_features) == (784, 256)
    assert (model.components[2].in_features, model.components[2].out_features) == (256, 10)
    assert model.components[1].alpha == 0.2
    assert model.n_inputs == 784


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_history_and_callbacks(model, data, fused):
    x, y = data
    epochs_seen, progress = [], []
    history = model.fit(
        x, y, epochs=3, batch_size=16, validation_data=(x, y), seed=0, fused=fused,
        on_epoch=lambda epoch, h: epochs_seen.append((epoch, len(h.loss))),
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert history.epochs == 3
    assert len(history.loss) == len(history.val_accuracy) == len(history.seconds) == 3
    assert epochs_seen == [(1, 1), (2, 2), (3, 3)]
    assert progress and all(total == 150 for _, total in progress)
    assert progress.count((150, 150)) == 3
    assert history.reached_target is False
    assert all(s >= 0 for s in history.seconds)
    # validation accuracy is the accuracy of the model after each epoch
    assert history.val_accuracy[-1] == pytest.approx(
        np.mean(model.predict_classes(x) == y))
    assert history.loss[-1] < history.loss[0]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_target_accuracy_stops_early(model, data, fused):
    x, y = data
    history = model.fit(x, y, epochs=50, batch_size=8, validation_data=(x, y),
                        target_accuracy=0.5, seed=0, fused=fused)
    assert history.reached_target is True
    assert history.val_accuracy[-1] > 0.5
    assert all(acc <= 0.5 for acc in history.val_accuracy[:-1])
    assert history.epochs < 50


def test_loss_history_is_the_mean_loss_before_each_step(data):
    # One batch per epoch: the recorded loss is the loss of the model before the step.
    x, y = data
    model = numrec.Sequential([numrec.Dense(6, 4, seed=0, dtype=np.float64), numrec.Sigmoid()])
    before = model.evaluate(x, np.eye(4)[y])["loss"]
    history = model.fit(x, y, epochs=2, batch_size=len(x), seed=0)
    assert history.loss[0] == pytest.approx(before, rel=1e-12)
    assert history.loss[1] < history.loss[0]


class LogitsMSE(numrec.Loss):
    """Quadratic cost whose outputs are read as logits: predict reports their softmax."""

    def value(self, output, target):
        return float(((output - target) ** 2).sum(axis=1).mean())

    def gradient(self, output, target):
        return 2 * (output - target) / len(output)

    def probabilities(self, output):
        e = np.exp(output - output.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_fit_keeps_its_loss_and_predict_reports_its_probabilities():
    rng = np.random.default_rng(3)
    x, y = rng.random((30, 4)), rng.integers(0, 3, 30)
    model = numrec.Sequential([numrec.Dense(4, 3, seed=0, dtype=np.float64)])
    assert model.loss is None
    raw_before = model.predict(x)
    loss = LogitsMSE()
    model.fit(x, y, loss=loss, optimizer=numrec.SGD(0.1), seed=0)
    assert model.loss is loss
    raw = model.predict(x, raw=True)
    assert not np.array_equal(raw, raw_before)
    expected = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)
    np.testing.assert_array_equal(model.predict_classes(x), raw.argmax(axis=1))
    # evaluate's loss sees the raw outputs, and defaults to the model's loss
    targets = np.eye(3)[y]
    assert model.evaluate(x, y)["loss"] == pytest.approx(((raw - targets) ** 2).sum(1).mean())
    # a later fit without a loss goes on with the same one
    model.fit(x, y, optimizer=numrec.SGD(0.1), seed=0)
    assert model.loss is loss


def test_a_loss_given_to_the_constructor_is_checked():
    with pytest.raises(TypeError, match="loss"):
        numrec.Sequential([numrec.Dense(2, 2)], loss="mse")
    model = numrec.Sequential([numrec.Dense(2, 2)], loss=numrec.MSE())
    assert type(model.loss) is numrec.MSE


def test_fit_without_shuffling_visits_the_samples_in_order():
    rng = np.random.default_rng(4)
    x, y = rng.random((50, 6)), rng.integers(0, 3, 50)

    def fresh():
        return numrec.Sequential([numrec.Dense(6, 8, seed=1, dtype=np.float64), numrec.ReLU(),
                                  numrec.Dense(8, 3, seed=2, dtype=np.float64),
                                  numrec.Sigmoid()])

    trained = fresh()
    trained.fit(x, y, epochs=2, batch_size=16, optimizer=numrec.SGD(0.3), shuffle=False)
    by_hand, sgd, targets = fresh(), numrec.SGD(0.3), np.eye(3)[y]
    for _ in range(2):
        for start in range(0, 50, 16):
            output = by_hand.forward(x[start:start + 16])
            by_hand.backward(numrec.MSE().gradient(output, targets[start:start + 16]))
            sgd.step(by_hand.parameters(), by_hand.gradients())
    for ours, theirs in zip(trained.parameters(), by_hand.parameters()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        trained.fit(x, y, shuffle="no")


@pytest.mark.parametrize("target", [96, 1.0, 0.0, -0.5])
def test_target_accuracy_must_be_a_fraction(target):
    x, y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
    model = numrec.Sequential([numrec.Dense(3, 2, dtype=np.float64)])
    with pytest.raises(ValueError, match="target_accuracy is a fraction .*0.96"):
        model.fit(x, y, validation_data=(x, y), target_accuracy=target)


def test_a_network_that_does_not_learn_is_flagged_with_a_warning():
    rng = np.random.default_rng(5)
    x = rng.random((300, 10))
    y = (x[:, 0] > 0.5).astype(int) + 2 * (x[:, 1] > 0.5)
    model = numrec.Sequential([numrec.Dense(10, 16, seed=0, dtype=np.float64), numrec.ReLU(),
                               numrec.Dense(16, 4, seed=1, dtype=np.float64), numrec.Sigmoid()])
    with pytest.warns(numrec.TrainingWarning, match=r"not learning: validation accuracy .* "
                                                    r"most frequent class .*lower learning"):
        # lr 1e-6: the weights barely move, so accuracy stays at its untrained level
        stuck = model.fit(x, y, epochs=2, optimizer=numrec.SGD(1e-6), validation_data=(x, y),
                          seed=0)
    majority = np.bincount(y).max() / len(y)
    assert stuck.stalled and stuck.val_accuracy[-1] <= majority + numrec.model.CHANCE_MARGIN
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", numrec.TrainingWarning)
        learned = model.fit(x, y, epochs=30, optimizer=numrec.SGD(1.0), validation_data=(x, y),
                            seed=0)
    assert not learned.stalled and learned.val_accuracy[-1] > majority + 0.2


def test_summary_lists_shapes_and_parameter_counts(capsys):
    model = numrec.mnist_mlp(hidden=(32, 16), seed=0)
    model.summary()
    text = capsys.readouterr().out
    counts = [784 * 32 + 32, 0, 32 * 16 + 16, 0, 16 * 10 + 10, 0]
    lines = text.splitlines()[2:8]
    for line, component, count in zip(lines, model.components, counts):
        assert repr(component) in line and line.endswith(f"{count:,}")
    assert "(None, 32)" in lines[0] and "(None, 10)" in lines[5]
    assert text.splitlines()[-1] == f"{sum(counts):,} parameters (float32, {4 * sum(counts):,} bytes)"


def test_predict_proba_gives_rows_summing_to_one_and_the_model_is_callable():
    rng = np.random.default_rng(6)
    x = rng.random((7, 784)).astype(np.float32)
    model = numrec.mnist_mlp(seed=0)
    outputs = model.predict(x)
    np.testing.assert_allclose(model.predict_proba(x), outputs / outputs.sum(1, keepdims=True),
                               rtol=1e-6)
    np.testing.assert_array_equal(model(x), outputs)
    assert not model.outputs_probabilities
    model.loss = LogitsMSE()
    assert model.outputs_probabilities
    np.testing.assert_array_equal(model.predict_proba(x), model.predict(x))


@pytest.mark.parametrize("make", [lambda: numrec.Dense(3_000_000_000, 2),
                                  lambda: numrec.mnist_mlp(hidden=(2**31,))])
def test_sizes_beyond_a_c_int_are_refused_by_name(make):
    with pytest.raises(ValueError, match="must be at most 2147483647"):
        make()


def test_fit_learns_the_output_width_without_a_probe_only_for_compiled_models():
    """A compiled model's width comes from its built shapes (no batch is run before
    training); a Python component is still run on one batch of the user's size first,
    so that its error names that batch."""
    x = np.random.default_rng(0).random((40, 6), dtype=np.float32)
    compiled = numrec.Sequential([numrec.Dense(6, 5, seed=0), numrec.ReLU(),
                                  numrec.Dense(5, 3, seed=1), numrec.Softmax()])
    assert compiled._fit_output_width(x[:16]) == 3 == compiled.predict(x[:2]).shape[1]

    class Halves(numrec.Activation):  # returns half the rows: a mistake fit must report
        def forward(self, z):
            return z[: len(z) // 2]

        def derivative(self, z, a):
            return np.ones_like(z)

    broken = numrec.Sequential([numrec.Dense(6, 3, seed=0), Halves()])
    with pytest.raises(ValueError, match=r"shape \(8, 3\) for a batch of 16"):
        broken.fit(x, np.zeros(40, dtype=np.int64), loss=numrec.SoftmaxCrossEntropy(),
                   batch_size=16, verbose=0)

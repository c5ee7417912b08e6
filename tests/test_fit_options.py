"""fit's History fields (training accuracy, validation loss), validation_split, verbose,
and sample / class weights, in the compiled, segmented and Python loops."""
import numpy as np
import pytest
import torch

import numrec
from python_components import PyMSE, PySigmoid

LOOPS = ("compiled", "segmented", "python")
# Some of these tiny runs do not learn, which fit rightly warns about.
pytestmark = pytest.mark.filterwarnings("ignore:the network is not learning")


def small_model(loop, dtype=np.float64, seed=0, loss_outputs=3):
    """5 → 4 → 3; ``segmented`` puts a Python-written sigmoid in the middle."""
    rng = np.random.default_rng(seed)
    middle = PySigmoid() if loop == "segmented" else numrec.Sigmoid()
    return numrec.Sequential([numrec.Dense(5, 4, seed=rng, dtype=dtype), middle,
                              numrec.Dense(4, loss_outputs, seed=rng, dtype=dtype)])


def fit(model, loop, x, y, **kwargs):
    history = model.fit(x, y, fused=False if loop == "python" else None, **kwargs)
    assert history.loop == loop
    return history


def data(n=40, seed=1, dtype=np.float64):
    """Inputs and labels that a linear rule gives, with 20 % of the labels random."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    labels = (x @ np.linspace(-1, 1, 15).reshape(5, 3)).argmax(axis=1)
    noisy = rng.random(n) < 0.2
    labels[noisy] = rng.integers(0, 3, size=noisy.sum())
    return x.astype(dtype), labels


# --- training accuracy and validation loss ------------------------------------------------

@pytest.mark.parametrize("loop", LOOPS)
def test_training_accuracy_of_a_full_batch_is_the_accuracy_before_its_update(loop):
    x, y = data()
    model = small_model(loop)
    measured = [model.evaluate(x, y)["accuracy"]]
    history = fit(model, loop, x, y, epochs=6, batch_size=len(x), shuffle=False,
                  optimizer=numrec.SGD(lr=0.3),
                  on_epoch=lambda epoch, h: measured.append(model.evaluate(x, y)["accuracy"]))
    assert history.accuracy == measured[:-1]
    assert len(set(measured)) > 2  # the updates changed the answers


@pytest.mark.parametrize("loop", LOOPS)
def test_training_accuracy_counts_each_batch_before_its_update(loop):
    """Replays the epoch batch by batch with one-batch fits on a copy of the model."""
    x, y = data(n=50)
    model = small_model(loop)
    replay = small_model(loop)
    correct = 0
    for start in range(0, 50, 16):
        rows = slice(start, start + 16)
        correct += round(replay.evaluate(x[rows], y[rows])["accuracy"] * len(y[rows]))
        fit(replay, loop, x[rows], y[rows], batch_size=16, shuffle=False,
            optimizer=numrec.SGD(lr=0.5))
    history = fit(model, loop, x, y, batch_size=16, shuffle=False,
                  optimizer=numrec.SGD(lr=0.5))
    assert history.accuracy == [correct / 50]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("loss", [numrec.MSE, numrec.SoftmaxCrossEntropy])
def test_validation_loss_is_evaluate_after_the_epoch(loop, loss):
    x, y = data(n=2100)  # more than one 1024-row evaluation chunk
    x_val, y_val = data(n=1500, seed=2)
    targets = np.eye(3)[y_val] * 0.8 + 0.1  # target rows, not one-hot
    model = small_model(loop)
    history = fit(model, loop, x, y, epochs=2, batch_size=64, seed=0, loss=loss(),
                  validation_data=(x_val, targets))
    reference = model.evaluate(x_val, targets)
    assert len(history.val_loss) == 2
    assert history.val_loss[-1] == pytest.approx(reference["loss"], rel=1e-12)
    assert history.val_accuracy[-1] == reference["accuracy"]


def test_history_fields_agree_between_the_loops():
    x, y = data(n=300)
    histories = [fit(small_model(loop), loop, x, y, epochs=2, batch_size=32, seed=3,
                     validation_split=0.2) for loop in LOOPS]
    for history in histories[1:]:
        assert history.accuracy == histories[0].accuracy
        assert history.val_accuracy == histories[0].val_accuracy
        np.testing.assert_allclose(history.loss, histories[0].loss, rtol=1e-12)
        np.testing.assert_allclose(history.val_loss, histories[0].val_loss, rtol=1e-12)


# --- validation_split --------------------------------------------------------------------

def test_validation_split_holds_out_the_last_samples_before_shuffling():
    x, y = data(n=95)
    split = int(95 * (1 - 0.25))  # 71, as Keras
    held = small_model("compiled")
    history = held.fit(x, y, epochs=2, seed=4, validation_split=0.25)
    given = small_model("compiled")
    reference = given.fit(x[:split], y[:split], epochs=2, seed=4,
                          validation_data=(x[split:], y[split:]))
    assert history.loss == reference.loss
    assert history.val_loss == reference.val_loss
    assert history.val_accuracy == reference.val_accuracy
    for a, b in zip(held.parameters(), given.parameters()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value, error, match", [
    (0, ValueError, "between 0 and 1"), (1.0, ValueError, "between 0 and 1"),
    (-0.1, ValueError, "between 0 and 1"), (float("nan"), ValueError, "finite"),
    ("0.1", TypeError, "number"), (True, TypeError, "fraction"),
    (1e-17, ValueError, "no validation samples"), (0.999, ValueError, "no training"),
])
def test_bad_validation_split(value, error, match):
    x, y = data(n=40)
    with pytest.raises(error, match=match):
        small_model("compiled").fit(x, y, validation_split=value)


def test_validation_split_with_validation_data_is_refused():
    x, y = data()
    with pytest.raises(ValueError, match="not both"):
        small_model("compiled").fit(x, y, validation_split=0.1, validation_data=(x, y))


# --- verbose -----------------------------------------------------------------------------

def test_verbose_prints_a_line_per_epoch_on_stderr(capsys):
    x, y = data()
    small_model("compiled").fit(x, y, epochs=2, validation_split=0.5, verbose=True)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 2
    assert lines[1].startswith("epoch 2/2  loss ")
    for word in ("accuracy", "val_loss", "val_accuracy", " s"):
        assert word in lines[0]


def test_silent_by_default(capsys):
    x, y = data()
    small_model("compiled").fit(x, y, epochs=2, validation_split=0.5)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("value", [2, -1, "yes", 0.5, None])
def test_bad_verbose(value):
    x, y = data()
    with pytest.raises(ValueError, match="verbose"):
        small_model("compiled").fit(x, y, verbose=value)


# --- sample_weight and class_weight ------------------------------------------------------

@pytest.mark.parametrize("loop", LOOPS)
def test_integer_weights_train_as_duplicated_rows(loop):
    """Full-batch SGD: weights w on n rows give the gradient sum(w_i g_i) / n; the rows
    repeated w_i times give sum(w_i g_i) / sum(w), so the learning rates differ by
    sum(w) / n.  The duplicated run uses no weights at all."""
    x, y = data(n=12)
    weights = np.array([1, 3, 0, 2, 1, 1, 4, 0, 1, 2, 1, 2])
    n, total = len(x), weights.sum()
    weighted, duplicated = small_model(loop), small_model(loop)
    h_w = fit(weighted, loop, x, y, epochs=3, batch_size=n, shuffle=False,
              optimizer=numrec.SGD(lr=0.3), sample_weight=weights)
    h_d = fit(duplicated, loop, np.repeat(x, weights, axis=0), np.repeat(y, weights),
              epochs=3, batch_size=int(total), shuffle=False,
              optimizer=numrec.SGD(lr=0.3 * total / n))
    for a, b in zip(weighted.parameters(), duplicated.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.array(h_w.loss) * n / total, h_d.loss, rtol=1e-12)
    assert h_w.loss[0] != h_d.loss[0]


def torch_weighted_run(model, x, y, weights, loss_name, batch_size, lr, epochs):
    """The same run in PyTorch: per-sample losses (reduction='none'), their weighted sum
    divided by the batch size, plain SGD."""
    rng = np.random.default_rng(0)
    layers = [c for c in model.components if isinstance(c, numrec.Dense)]
    net = torch.nn.Sequential(torch.nn.Linear(5, 4, dtype=torch.float64), torch.nn.Sigmoid(),
                              torch.nn.Linear(4, 3, dtype=torch.float64))
    with torch.no_grad():
        for linear, layer in zip((net[0], net[2]), layers):
            linear.weight.copy_(torch.from_numpy(layer.weights))
            linear.bias.copy_(torch.from_numpy(layer.bias))
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            output = net(torch.from_numpy(x[rows]))
            labels = torch.from_numpy(y[rows])
            if loss_name == "mse":
                target = torch.nn.functional.one_hot(labels, 3).double()
                per_sample = torch.nn.functional.mse_loss(output, target,
                                                          reduction="none").sum(1)
            else:
                per_sample = torch.nn.functional.cross_entropy(output, labels,
                                                               reduction="none")
            loss = (torch.from_numpy(weights[rows]) * per_sample).sum() / len(rows)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return [p.detach().numpy() for p in (net[0].weight, net[0].bias, net[2].weight,
                                         net[2].bias)]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("loss_name", ["mse", "softmax-ce"])
def test_weighted_training_matches_pytorch(loop, loss_name):
    x, y = data(n=50)
    weights = np.random.default_rng(5).uniform(0, 3, size=50)
    model = small_model(loop)
    expected = torch_weighted_run(model, x, y, weights, loss_name, 8, 0.2, 2)
    loss = numrec.MSE() if loss_name == "mse" else numrec.SoftmaxCrossEntropy()
    fit(model, loop, x, y, epochs=2, batch_size=8, seed=0, loss=loss,
        optimizer=numrec.SGD(lr=0.2), sample_weight=weights)
    for got, want in zip(model.parameters(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_weighted_loss_of_a_python_loss_matches_the_compiled_one():
    x, y = data(n=30)
    weights = np.random.default_rng(6).uniform(0, 2, size=30)
    histories = []
    for loss in (numrec.MSE(), PyMSE()):
        model = small_model("compiled")
        histories.append(model.fit(x, y, epochs=2, batch_size=7, seed=1, loss=loss,
                                   sample_weight=weights))
    assert histories[1].loop == "segmented"
    np.testing.assert_allclose(histories[0].loss, histories[1].loss, rtol=1e-12)


def test_the_weighted_loss_is_the_weighted_mean_of_the_sample_losses():
    x, y = data(n=20)
    weights = np.random.default_rng(7).uniform(0, 2, size=20)
    model = small_model("compiled")
    reference = small_model("compiled")
    history = model.fit(x, y, batch_size=20, shuffle=False, sample_weight=weights)
    output = reference.predict(x)
    per_sample = ((output - np.eye(3)[y]) ** 2).sum(axis=1)
    assert history.loss[0] == pytest.approx(np.dot(weights, per_sample) / 20, rel=1e-12)


@pytest.mark.parametrize("loop", LOOPS)
def test_class_weight_is_sample_weight_by_label(loop):
    x, y = data(n=30)
    by_class, by_sample = small_model(loop), small_model(loop)
    fit(by_class, loop, x, y, epochs=2, batch_size=8, seed=2, optimizer=numrec.SGD(lr=0.1),
        class_weight={0: 2.5, 2: 0.5}, sample_weight=np.full(30, 2.0))
    fit(by_sample, loop, x, y, epochs=2, batch_size=8, seed=2, optimizer=numrec.SGD(lr=0.1),
        sample_weight=np.choose(y, [2.5, 1.0, 0.5]) * 2.0)
    for a, b in zip(by_class.parameters(), by_sample.parameters()):
        np.testing.assert_array_equal(a, b)


def test_weights_in_float32_agree_between_the_loops():
    x, y = data(n=64, dtype=np.float32)
    weights = np.random.default_rng(8).uniform(0, 2, size=64)
    models = [small_model(loop, dtype=np.float32) for loop in LOOPS]
    for model, loop in zip(models, LOOPS):
        fit(model, loop, x, y, epochs=2, batch_size=16, seed=3, sample_weight=weights,
            threads=1)
    for model in models[1:]:
        for a, b in zip(model.parameters(), models[0].parameters()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sample_weight": np.ones(39)}, ValueError, "40 numbers"),
    ({"sample_weight": np.ones((40, 1))}, ValueError, "40 numbers"),
    ({"sample_weight": np.array(["a"] * 40)}, ValueError, "40 numbers"),
    ({"sample_weight": np.r_[np.ones(39), -1.0]}, ValueError, ">= 0"),
    ({"sample_weight": np.r_[np.ones(39), np.nan]}, ValueError, "finite"),
    ({"class_weight": [1, 2, 3]}, TypeError, "dict"),
    ({"class_weight": {3: 1.0}}, ValueError, r"0\.\.2"),
    ({"class_weight": {"0": 1.0}}, ValueError, r"0\.\.2"),
    ({"class_weight": {0: -1.0}}, ValueError, ">= 0"),
    ({"class_weight": {0: float("inf")}}, ValueError, "finite"),
])
def test_bad_weights(kwargs, error, match):
    x, y = data(n=40)
    with pytest.raises(error, match=match):
        small_model("compiled").fit(x, y, **kwargs)


def test_validation_split_splits_the_weights_too():
    x, y = data(n=50)
    weights = np.random.default_rng(9).uniform(0, 2, size=50)
    split, given = small_model("compiled"), small_model("compiled")
    h1 = split.fit(x, y, seed=0, validation_split=0.2, sample_weight=weights)
    h2 = given.fit(x[:40], y[:40], seed=0, validation_data=(x[40:], y[40:]),
                   sample_weight=weights[:40])
    assert h1.loss == h2.loss and h1.val_loss == h2.val_loss


@pytest.mark.parametrize("monitor, pick", [("val_loss", np.argmin), ("accuracy", np.argmax)])
def test_early_stopping_watches_the_new_history_fields(monitor, pick):
    from numrec.callbacks import EarlyStopping

    x, y = data(n=200, seed=11)
    stopper = EarlyStopping(monitor, patience=2)
    history = small_model("compiled").fit(x, y, epochs=40, batch_size=4, seed=0,
                                          optimizer=numrec.SGD(lr=1.5),
                                          validation_split=0.7, callbacks=[stopper])
    values = getattr(history, monitor)
    assert stopper.best_epoch == pick(values) + 1
    assert history.stopped_early and history.epochs == stopper.best_epoch + 2


@pytest.mark.parametrize("loss, last", [
    (numrec.MSE(), None), (numrec.SoftmaxCrossEntropy(), None),
    (numrec.CrossEntropy(), numrec.Softmax()), (numrec.BinaryCrossEntropy(), numrec.Sigmoid()),
])
def test_every_builtin_loss_weighs_as_duplicated_rows(loss, last):
    """The compiled loop's row-by-row weighted loss, for each built-in loss, against the
    unweighted loss on repeated rows (full batch, learning rates scaled as above)."""
    x, y = data(n=10, seed=12)
    weights = np.array([2, 1, 3, 1, 1, 2, 1, 1, 4, 1])
    n, total = len(x), int(weights.sum())
    models = []
    for _ in range(2):
        model = small_model("compiled")
        if last is not None:
            model = numrec.Sequential([*model.components, last])
        models.append(model)
    h_w = models[0].fit(x, y, epochs=2, batch_size=n, shuffle=False, loss=loss,
                        optimizer=numrec.SGD(lr=0.3), sample_weight=weights)
    h_d = models[1].fit(np.repeat(x, weights, axis=0), np.repeat(y, weights), epochs=2,
                        batch_size=total, shuffle=False, loss=loss,
                        optimizer=numrec.SGD(lr=0.3 * total / n))
    assert h_w.loop == h_d.loop == "compiled"
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.array(h_w.loss) * n / total, h_d.loss, rtol=1e-12)

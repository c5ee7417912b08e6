"""Callbacks between epochs: early stopping, checkpoints, learning-rate schedules."""
import math

import numpy as np
import pytest

import numrec
from numrec.callbacks import (
    Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint, cosine, step_decay,
)


@pytest.fixture(scope="module")
def digits():
    (x, y), (x_test, y_test) = numrec.datasets.load_mnist(dtype=np.uint8)
    return x[:3000], y[:3000], x_test[:500], y_test[:500]


def small_model(dtype=np.float32):
    return numrec.Sequential([numrec.Dense(784, 64, seed=0, dtype=dtype), numrec.ReLU(),
                              numrec.Dense(64, 10, seed=1, dtype=dtype), numrec.Sigmoid()])


@pytest.mark.filterwarnings("ignore::numrec.TrainingWarning")  # it learns nothing, by design
def test_early_stopping_waits_patience_epochs_without_improvement(digits):
    x, y, x_test, y_test = digits
    stopper = EarlyStopping(patience=2)
    # A rate so small that the test accuracy never changes: epoch 1 stays the best.
    history = small_model().fit(x, y, epochs=20, optimizer=numrec.SGD(1e-9), seed=0,
                                validation_data=(x_test, y_test), callbacks=[stopper])
    assert history.stopped_early and history.epochs == 1 + 2  # Keras's count
    assert stopper.best_epoch == 1


def test_restore_best_weights_puts_back_the_best_epochs_parameters():
    model = small_model()
    stopper = EarlyStopping(patience=5, restore_best_weights=True)
    stopper.model = model
    history = numrec.History()
    stopper.on_train_begin(history)
    snapshots = []
    for epoch, accuracy in enumerate([0.5, 0.7, 0.6, 0.65], start=1):
        for param in model.parameters():
            param += 1.0                       # "training" changes every parameter
        snapshots.append([param.copy() for param in model.parameters()])
        history.val_accuracy.append(accuracy)
        assert stopper.on_epoch_end(epoch, history) is False
    stopper.on_train_end(history)
    assert stopper.best_epoch == 2
    for param, best in zip(model.parameters(), snapshots[1]):
        np.testing.assert_array_equal(param, best)


def test_checkpoints_keep_the_best_model_or_every_epoch(tmp_path, digits):
    x, y, x_test, y_test = digits
    best = ModelCheckpoint(tmp_path / "best.npz")
    every = ModelCheckpoint(tmp_path / "epoch-{epoch}.npz", save_best_only=False)
    model = small_model()
    history = model.fit(x, y, epochs=3, optimizer=numrec.SGD(0.5), seed=0,
                        validation_data=(x_test, y_test), callbacks=[best, every])
    assert every.saved == [str(tmp_path / f"epoch-{n}.npz") for n in (1, 2, 3)]
    best_epoch = int(np.argmax(history.val_accuracy)) + 1
    assert best.saved[-1] == str(tmp_path / "best.npz")
    reloaded = numrec.load(tmp_path / "best.npz")
    at_best = numrec.load(tmp_path / f"epoch-{best_epoch}.npz")
    for a, b in zip(reloaded.parameters(), at_best.parameters()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer", [lambda: numrec.SGD(0.5), lambda: numrec.Adam(1e-3)],
                         ids=["plain-sgd", "adam"])
def test_a_schedule_changes_the_rate_from_the_next_epoch_on(digits, optimizer):
    """Two epochs at 0.5 then 0.1 (Adam: 1e-3 then 2e-4) in one fit equal two fits of one
    epoch with the rate changed between them, bit for bit: the compiled loop reads the
    new rate (plain SGD's folded one too)."""
    x, y, _, _ = digits
    scheduled_optimizer = optimizer()
    first = scheduled_optimizer.lr
    scheduled = small_model()
    history = scheduled.fit(
        x, y, epochs=2, optimizer=scheduled_optimizer, seed=np.random.default_rng(7),
        callbacks=[LearningRateScheduler(lambda epoch, lr: first if epoch == 1 else first / 5)])
    assert history.lr == [first, first / 5] and history.loop == "compiled"
    by_hand, rng, manual_optimizer = small_model(), np.random.default_rng(7), optimizer()
    by_hand.fit(x, y, epochs=1, optimizer=manual_optimizer, seed=rng)
    manual_optimizer.lr = first / 5
    by_hand.fit(x, y, epochs=1, optimizer=manual_optimizer, seed=rng)
    for a, b in zip(scheduled.parameters(), by_hand.parameters()):
        np.testing.assert_array_equal(a, b)


def test_step_decay_and_cosine_follow_their_formulas():
    step = step_decay(0.8, factor=0.5, every=2)
    assert [step(epoch, None) for epoch in range(1, 6)] == [0.8, 0.8, 0.4, 0.4, 0.2]
    schedule = cosine(1.0, epochs=4, minimum=0.1)
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    assert [schedule(epoch, None) for epoch in range(1, 6)] == pytest.approx(expected)


def test_cosine_matches_pytorchs_annealing():
    torch = pytest.importorskip("torch", reason="compares with torch's CosineAnnealingLR")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.3)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6, eta_min=0.01)
    schedule = cosine(0.3, epochs=6, minimum=0.01)
    for epoch in range(1, 7):
        assert schedule(epoch, None) == pytest.approx(optimizer.param_groups[0]["lr"])
        optimizer.step()
        annealing.step()


def test_a_callback_of_ones_own_sees_every_hook_in_order(digits):
    x, y, _, _ = digits
    calls = []

    class Recorder(Callback):
        def on_train_begin(self, history):
            calls.append(("begin", self.model is model, type(self.optimizer).__name__))

        def on_epoch_begin(self, epoch):
            calls.append(("epoch begin", epoch))

        def on_epoch_end(self, epoch, history):
            calls.append(("epoch end", epoch, len(history.loss)))

        def on_train_end(self, history):
            calls.append(("end", history.epochs))

    model = small_model()
    model.fit(x, y, epochs=2, optimizer=numrec.SGD(0.1), seed=0, callbacks=[Recorder()])
    assert calls == [("begin", True, "SGD"), ("epoch begin", 1), ("epoch end", 1, 1),
                     ("epoch begin", 2), ("epoch end", 2, 2), ("end", 2)]


@pytest.mark.parametrize("make, error, words", [
    (lambda: EarlyStopping(monitor="val_acc"), ValueError, "monitor must be one of"),
    (lambda: EarlyStopping(patience=-1), ValueError, "patience must be a whole number"),
    (lambda: LearningRateScheduler(0.1), TypeError, "schedule must be callable"),
    (lambda: cosine(0.1, epochs=0), ValueError, "epochs must be a whole number"),
])
def test_bad_settings_are_refused_by_name(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_fit_checks_its_callbacks(digits):
    x, y, _, _ = digits
    with pytest.raises(TypeError, match=r"callbacks\[0\] must be a numrec.callbacks.Callback"):
        small_model().fit(x, y, callbacks=[print])
    with pytest.raises(ValueError, match="val_accuracy is not measured: fit needs "
                                         "validation_data"):
        small_model().fit(x, y, callbacks=[EarlyStopping()])

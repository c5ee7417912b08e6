"""Callbacks: code that :meth:`Sequential.fit <numrec.Sequential.fit>` runs between epochs.

Pass them as ``fit(..., callbacks=[...])``.  Epoch boundaries are Python even in the
compiled loop, so callbacks cost nothing per batch.  Before training, ``fit`` sets each
callback's ``model`` and ``optimizer`` and calls, in order:

- ``on_train_begin(history)``;
- for each epoch (counted from 1): ``on_epoch_begin(epoch)``, the epoch, then
  ``on_epoch_end(epoch, history)``, whose true return value stops training
  (``history.stopped_early`` is then True);
- ``on_train_end(history)``, also after an exception.

For example, the best weights by validation accuracy, a cosine schedule and a checkpoint::

    from numrec.callbacks import EarlyStopping, LearningRateScheduler, ModelCheckpoint, cosine
    model.fit(x, y, epochs=30, validation_data=(x_test, y_test), optimizer=numrec.Adam(),
              callbacks=[EarlyStopping(patience=3, restore_best_weights=True),
                         LearningRateScheduler(cosine(1e-3, epochs=30)),
                         ModelCheckpoint("best.npz")])
"""
import math

__all__ = ["Callback", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint",
           "cosine", "step_decay"]


class Callback:
    """Base class: override the hooks you need (each does nothing here).

    Attributes
    ----------
    model : Sequential
        The model being trained (set by ``fit``).
    optimizer : Optimizer
        Its optimizer (set by ``fit``).
    """

    model = None
    optimizer = None

    def on_train_begin(self, history):
        """Before the first epoch."""

    def on_epoch_begin(self, epoch):
        """Before epoch ``epoch`` (from 1)."""

    def on_epoch_end(self, epoch, history):
        """After epoch ``epoch`` and its validation; return True to stop training."""

    def on_train_end(self, history):
        """After the last epoch (or an exception)."""


class _Monitor:
    """The quantity a callback watches: a list of :class:`~numrec.History`, and whether
    larger is better (``val_accuracy``, ``accuracy``) or smaller (``val_loss``,
    ``loss``)."""

    NAMES = ("val_accuracy", "val_loss", "loss", "accuracy")

    def __init__(self, name, min_delta):
        if name not in self.NAMES:
            raise ValueError(f"monitor must be one of {self.NAMES}, got {name!r}")
        if not (isinstance(min_delta, (int, float)) and math.isfinite(min_delta)
                and min_delta >= 0):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        self.name, self.min_delta = name, float(min_delta)
        self.larger_is_better = name.endswith("accuracy")
        self.best = None

    def latest(self, history):
        values = getattr(history, self.name)
        if not values:
            raise ValueError(f"{self.name} is not measured: fit needs validation_data or "
                             f"validation_split to monitor it")
        return values[-1]

    def improved(self, value):
        """Whether ``value`` beats the best so far by more than min_delta (and record it)."""
        if self.best is None:
            better = True
        elif self.larger_is_better:
            better = value > self.best + self.min_delta
        else:
            better = value < self.best - self.min_delta
        if better:
            self.best = value
        return better


def _check_count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


class EarlyStopping(Callback):
    """Stop when the monitored quantity has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : {"val_accuracy", "val_loss", "loss", "accuracy"}, default "val_accuracy"
        Larger is better for the accuracies (:class:`~numrec.History`), smaller for
        the losses.
    patience : int, default 2
        Stop after this many epochs in a row without improvement (Keras' count: with
        2, training stops two epochs after the best one).
    min_delta : float, default 0
        The smallest change that counts as an improvement.
    restore_best_weights : bool, default False
        At the end of training, put back the parameters of the best epoch.

    Attributes
    ----------
    best_epoch : int or None
        The epoch with the best value.
    """

    def __init__(self, monitor="val_accuracy", *, patience=2, min_delta=0.0,
                 restore_best_weights=False):
        self._monitor = _Monitor(monitor, min_delta)
        self.patience = _check_count(patience, "patience", 0)
        self.restore_best_weights = bool(restore_best_weights)
        self.best_epoch = None
        self._best_parameters = None

    def on_train_begin(self, history):
        self._monitor.best, self.best_epoch, self._best_parameters = None, None, None

    def on_epoch_end(self, epoch, history):
        if self._monitor.improved(self._monitor.latest(history)):
            self.best_epoch = epoch
            if self.restore_best_weights:
                self._best_parameters = [param.copy() for param in self.model.parameters()]
            return False
        return epoch - self.best_epoch >= self.patience

    def on_train_end(self, history):
        if self.restore_best_weights and self._best_parameters is not None:
            for param, best in zip(self.model.parameters(), self._best_parameters):
                param[...] = best  # in place: the compiled layers keep their arrays


class ModelCheckpoint(Callback):
    """Save the model after an epoch: the best one so far, or every one.

    Each save is atomic (see :meth:`Sequential.save <numrec.Sequential.save>`): a crash
    never leaves a half-written file.

    Parameters
    ----------
    path : str or os.PathLike
        Where to save; ``{epoch}`` in it is replaced by the epoch's number.
    monitor : {"val_accuracy", "val_loss", "loss", "accuracy"}, default "val_accuracy"
    save_best_only : bool, default True
        Save only when the monitored quantity improves; else after every epoch.

    Attributes
    ----------
    saved : list of str
        The paths written, in order.
    """

    def __init__(self, path, *, monitor="val_accuracy", save_best_only=True):
        self.path = str(path)
        self._monitor = _Monitor(monitor, 0.0)
        self.save_best_only = bool(save_best_only)
        self.saved = []

    def on_train_begin(self, history):
        self._monitor.best = None

    def on_epoch_end(self, epoch, history):
        if self.save_best_only and not self._monitor.improved(self._monitor.latest(history)):
            return False
        path = self.path.replace("{epoch}", str(epoch))
        self.model.save(path)
        self.saved.append(path)
        return False


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate before each epoch.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> new lr``, with the epoch counted from 1 and the current
        rate; :func:`step_decay` and :func:`cosine` make common ones.  The rates are
        recorded in ``History.lr``.
    """

    def __init__(self, schedule):
        if not callable(schedule):
            raise TypeError(f"schedule must be callable, got {type(schedule).__name__}")
        self.schedule = schedule

    def on_epoch_begin(self, epoch):
        if not hasattr(self.optimizer, "lr"):
            raise TypeError(f"{type(self.optimizer).__name__} has no learning rate lr to set")
        self.optimizer.lr = self.schedule(epoch, self.optimizer.lr)


def step_decay(initial, *, factor=0.5, every=10):
    """``initial * factor ** ((epoch - 1) // every)``: the rate drops every ``every``
    epochs (PyTorch's ``StepLR``)."""
    _check_count(every, "every", 1)
    return lambda epoch, lr: initial * factor ** ((epoch - 1) // every)


def cosine(initial, *, epochs, minimum=0.0):
    """Cosine annealing from ``initial`` at epoch 1 to ``minimum`` at epoch ``epochs + 1``
    (PyTorch's ``CosineAnnealingLR`` with ``T_max=epochs``, stepped per epoch)."""
    _check_count(epochs, "epochs", 1)
    return lambda epoch, lr: minimum + (initial - minimum) * (
        1 + math.cos(math.pi * min(epoch - 1, epochs) / epochs)) / 2

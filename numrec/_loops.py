"""The epoch loops behind :meth:`numrec.Sequential.fit`.

Three ways to run an epoch's batches, chosen by what the model is made of:

``FusedEpoch``
    Every component, the loss and the optimizer are compiled: whole chunks of batches
    run in :class:`~numrec._core._training.FusedTrainer`, without a Python call per batch.
``SegmentedEpoch``
    Some components (or the loss, or the optimizer) are written in Python: each run of
    compiled components still runs compiled, one batch at a time, and only the
    Python-written parts are called per batch, on NumPy views of the compiled parts'
    buffers.
``PythonEpoch``
    Every component through its Python methods (``fused=False``): the reference the
    other two agree with.

Each has ``train(x, targets, order, on_progress, weights)``, which returns the epoch's
summed (weighted) loss and how many of its training rows the model classified right as
it trained on them, and ``validate(x, targets)``, which returns the summed loss and the
correct rows on other data.  With sample weights, the loss of a batch of m rows is
:math:`\\sum_i w_i l_i / m` and its gradient likewise (:func:`weighted_loss`).
"""
import contextlib

import numpy as np

from numrec._core._layers import Layer
from numrec._core._training import (
    FusedTrainer, kernel_problem, plan_problem, plan_stages, thread_plan,
)

#: Progress callbacks are called after about this many samples (and at each epoch's end).
PROGRESS_SAMPLES = 4096
#: Rows per forward pass when the segmented loop evaluates (the trainers' buffers' rows).
EVAL_ROWS = 1024


class FusedEpoch:
    """An epoch in the compiled loop, run in chunks so that progress and Ctrl-C get through."""

    def __init__(self, trainer):
        self.trainer = trainer

    def train(self, x, targets, order, on_progress, weights=None):
        batch = self.trainer.batch_size
        chunk = max(1, PROGRESS_SAMPLES // batch) * batch
        total = 0.0
        correct_before = self.trainer.correct
        self.trainer.refresh_step()  # a schedule may have changed the learning rate
        with self.trainer.holding(x):  # one choice of kernels for the epoch's chunks
            for start in range(0, len(order), chunk):
                stop = min(start + chunk, len(order))
                total += self.trainer.train(x, targets, order, start, stop, weights)
                if on_progress is not None:
                    on_progress(stop, len(order))
        return total, self.trainer.correct - correct_before

    def validate(self, x, targets):
        return self.trainer.evaluate(x, targets)


class PythonEpoch:
    """An epoch as a Python loop over batches: works with any component."""

    def __init__(self, model, loss, optimizer, batch_size):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.batch_size = batch_size

    def train(self, x, targets, order, on_progress, weights=None):
        model = self.model
        parameters, gradients = model.parameters(), model.gradients()
        total, correct = 0.0, 0
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            output = model.forward(x[rows])
            target = batch_targets(targets, rows, output.shape[1], model.dtype)
            if weights is None:
                batch_loss = float(self.loss.value(output, target)) * len(rows)
                grad = None
            else:
                batch_loss, grad = weighted_loss(self.loss, output, target, weights[rows])
            if not np.isfinite(batch_loss):
                return batch_loss, correct  # diverged: fit reports it
            total += batch_loss
            correct += count_matches(output, target)
            model.backward(self.loss.gradient(output, target) if grad is None else grad)
            self.optimizer.step(parameters, gradients)
            _report(on_progress, start + len(rows), len(order), self.batch_size)
        return total, correct

    def validate(self, x, targets):
        output = self.model._outputs(x, EVAL_ROWS)
        return chunked_loss(self.loss, output, targets, self.model.dtype)


class _PythonPart:
    """A Python-written component inside a segmented model (or a compiled one that
    cannot join a run of compiled stages), called through the component protocol."""

    def __init__(self, index, component, first_slot):
        self.index, self.component, self.first_slot = index, component, first_slot
        self.parameters = component.parameters() if isinstance(component, Layer) else []
        self.gradients = component.gradients() if isinstance(component, Layer) else []

    def forward(self, inputs, dtype, width):
        output = self.component.forward_pass(inputs)
        return checked_output(output, self.index, self.component, len(inputs), width, dtype)

    def backward(self, grad, optimizer):
        grad = self.component.backward_pass(grad)
        if optimizer is not None:  # a compiled optimizer: this part's share of the step
            for slot, (param, gradient) in enumerate(zip(self.parameters, self.gradients),
                                                     start=self.first_slot):
                optimizer._update(slot, param, gradient)
        return grad


class SegmentedEpoch:
    """An epoch of a model that mixes compiled and Python-written parts.

    The components are cut into parts: each maximal run of compiled components that the
    compiled loop can run (:func:`~numrec._core._training.plan_problem`) becomes a
    :class:`FusedTrainer` that runs its batch compiled and multi-threaded; every other
    component is called per batch.  A compiled loss and optimizer stay compiled too
    (the loss inside the last trainer when the model ends with a compiled part).
    """

    def __init__(self, model, loss, optimizer, batch_size, x, threads):
        self.model, self.loss, self.batch_size = model, loss, batch_size
        self.compiled_optimizer = optimizer if kernel_problem(optimizer, model.dtype) is None \
            else None
        self.python_optimizer = None if self.compiled_optimizer is not None else optimizer
        compiled_loss = kernel_problem(loss, model.dtype) is None
        self.parts = []
        self.blas_threads = threads
        slot = 0
        runs = _compiled_runs(model.components, model.dtype)
        for number, (kind, first, members) in enumerate(runs):
            last = number == len(runs) - 1
            if kind == "python":
                self.parts.append(_PythonPart(first, members[0], slot))
            else:
                self.parts.append(self._trainer(members, first, slot, x, threads,
                                                loss if last and compiled_loss else None))
            slot += sum(len(c.parameters()) for c in members if isinstance(c, Layer))
        self.loss_in_trainer = isinstance(self.parts[-1], FusedTrainer) and compiled_loss
        self._forwards, self._backwards = self._steps()
        self._data = None
        self._weights, self._correct = None, 0

    def _trainer(self, members, first, slot, x, threads, loss):
        stages = plan_stages(members, self.model.dtype)
        data = x if first == 0 else np.zeros((0, members[0].in_features), self.model.dtype)
        split, blas, exact = thread_plan(stages, self.model.dtype, self.batch_size, data,
                                         threads)
        self.blas_threads = min(self.blas_threads, blas)
        return FusedTrainer(stages, loss, self.compiled_optimizer, self.batch_size,
                            self.model.dtype, split, exact, first_slot=slot,
                            input_gradient=first > 0)

    def train(self, x, targets, order, on_progress, weights=None):
        total = 0.0
        self._data = (x, order)
        self._weights, self._correct = weights, 0
        counted_before = self.parts[-1].correct if self.loss_in_trainer else 0
        for part in self.parts:  # a schedule may have changed the learning rate
            if isinstance(part, FusedTrainer):
                part.refresh_step()
        with contextlib.ExitStack() as epochs:
            first, last = self.parts[0], self.parts[-1]
            if isinstance(first, FusedTrainer):
                epochs.enter_context(first.epoch(x, targets, order, weights))
            if self.loss_in_trainer and last is not first:
                epochs.enter_context(last.epoch(None, targets, order, weights))
            for start in range(0, len(order), self.batch_size):
                m = min(self.batch_size, len(order) - start)
                total += self._batch(x, targets, order, start, m)
                _report(on_progress, start + m, len(order), self.batch_size)
        if self.loss_in_trainer:
            self._correct += self.parts[-1].correct - counted_before
        return total, self._correct

    def _batch(self, x, targets, order, start, m):
        """One batch: forward through every part, the loss, backward, the updates."""
        if self.compiled_optimizer is not None:
            self.compiled_optimizer._advance()
        output = None
        for forward in self._forwards:
            output = forward(start, m, output)
        if self.loss_in_trainer:
            batch_loss = self.parts[-1].loss_batch(start, m)
            grad = None
        else:
            rows = order[start:start + m]
            target = batch_targets(targets, rows, output.shape[1], self.model.dtype)
            if self._weights is None:
                batch_loss = float(self.loss.value(output, target)) * m
                grad = self.loss.gradient(output, target)
            else:
                batch_loss, grad = weighted_loss(self.loss, output, target,
                                                 self._weights[rows])
            self._correct += count_matches(output, target)
        for backward in self._backwards:
            grad = backward(grad, m)
        if self.python_optimizer is not None:
            self.python_optimizer.step(self.model.parameters(), self.model.gradients())
        return batch_loss

    def _steps(self):
        """The parts' forward steps ``f(start, m, inputs)`` in order and backward steps
        ``b(grad, m)`` in reverse order (a first Python part without parameters has none:
        nothing below it needs dL/dx)."""
        forwards, backwards = [], []
        dtype, optimizer = self.model.dtype, self.compiled_optimizer
        for number, part in enumerate(self.parts):
            width = _width_after(self.parts, number)
            if isinstance(part, FusedTrainer) and number == 0:
                forwards.append(lambda start, m, inputs, part=part: part.forward_batch(start, m))
            elif isinstance(part, FusedTrainer):
                forwards.append(lambda start, m, inputs, part=part: part.forward_input(inputs))
            elif number == 0:
                forwards.append(lambda start, m, inputs, part=part, width=width:
                                part.forward(self._rows(start, m), dtype, width))
            else:
                forwards.append(lambda start, m, inputs, part=part, width=width:
                                part.forward(inputs, dtype, width))
            if isinstance(part, FusedTrainer):
                backwards.append(part.backward_batch)
            elif number > 0 or part.parameters:
                backwards.append(lambda grad, m, part=part: part.backward(grad, optimizer))
        return forwards, backwards[::-1]

    def _rows(self, start, m):
        """The epoch's rows ``order[start:start + m]`` as the model's input (a Python first
        part reads them itself)."""
        x, order = self._data
        return self.model._as_input(x[order[start:start + m]])

    def validate(self, x, targets):
        total, correct = 0.0, 0
        for start in range(0, len(x), EVAL_ROWS):  # each output is overwritten by the next
            chunk_loss, chunk_correct = chunked_loss(
                self.loss, self.forward(x[start:start + EVAL_ROWS]),
                targets[start:start + EVAL_ROWS], self.model.dtype)
            total, correct = total + chunk_loss, correct + chunk_correct
        return total, correct

    def forward(self, rows):
        """The model's output for up to EVAL_ROWS rows, each part as in training."""
        output = None
        for number, part in enumerate(self.parts):
            if isinstance(part, FusedTrainer):
                inputs = rows if number == 0 else output
                output = part.forward_rows(np.ascontiguousarray(inputs))
            else:
                inputs = output if number > 0 else self.model._as_input(rows)
                output = checked_output(part.component.forward(inputs), part.index,
                                         part.component, len(inputs),
                                         _width_after(self.parts, number), self.model.dtype)
        return output


def _compiled_runs(components, dtype):
    """Cut ``components`` into ``("compiled" | "python", first index, members)`` runs.

    A compiled run is the longest stretch, starting at a layer, that the compiled loop
    can run as one (:func:`plan_problem` finds nothing wrong with it)."""
    runs = []
    for index, component in enumerate(components):
        if runs and runs[-1][0] == "compiled" and \
                plan_problem(runs[-1][2] + [component], dtype) is None:
            runs[-1][2].append(component)
        elif isinstance(component, Layer) and plan_problem([component], dtype) is None:
            runs.append(("compiled", index, [component]))
        else:
            runs.append(("python", index, [component]))
    return runs


def _width_after(parts, number):
    """The width the part after ``number`` expects, if it says (a trainer), else None."""
    if number + 1 < len(parts) and isinstance(parts[number + 1], FusedTrainer):
        return parts[number + 1].n_inputs
    return None


def checked_output(output, index, component, rows, width, dtype):
    """A Python-written component's output, checked before compiled code reads it."""
    name = f"components[{index}] ({type(component).__name__})"
    if not isinstance(output, np.ndarray):
        raise TypeError(f"{name} returned {type(output).__name__}, not a numpy array")
    if output.dtype != dtype:
        raise TypeError(f"{name} returned dtype {output.dtype}; the model's dtype is {dtype}")
    if output.ndim != 2 or len(output) != rows or (width is not None and output.shape[1] != width):
        expected = f"({rows}, {width if width is not None else 'n'})"
        raise ValueError(f"{name} returned shape {output.shape} for a batch of {rows}; "
                         f"expected {expected}")
    return np.ascontiguousarray(output)


def _report(on_progress, done, total, batch_size):
    if on_progress is not None and (done % PROGRESS_SAMPLES < batch_size or done == total):
        on_progress(done, total)


def weighted_loss(loss, output, target, weights):
    """The summed weighted loss :math:`\\sum_i w_i l_i` of a batch of m rows and its
    gradient: row i's gradient alone (``loss.gradient`` of that row) times
    :math:`w_i / m`, in the output's dtype, as the compiled loop computes it."""
    m = len(output)
    total, grad = 0.0, np.empty_like(output)
    for i in range(m):
        row, row_target = output[i:i + 1], target[i:i + 1]
        total += float(weights[i]) * float(loss.value(row, row_target))
        scale = np.asarray(weights[i] / m, dtype=output.dtype)
        grad[i] = np.asarray(loss.gradient(row, row_target), dtype=output.dtype)[0] * scale
    return total, grad


def count_matches(output, target):
    """Rows whose largest output is where their target row has its largest entry."""
    return int(np.count_nonzero(output.argmax(axis=1) == target.argmax(axis=1)))


def chunked_loss(loss, output, targets, dtype):
    """``(summed loss, correct rows)`` of ``output`` against ``targets`` (labels or
    rows), the loss taken on EVAL_ROWS rows at a time as the compiled loop does."""
    total, correct = 0.0, 0
    for start in range(0, len(output), EVAL_ROWS):
        rows = slice(start, start + EVAL_ROWS)
        chunk = output[rows]
        target = batch_targets(targets, rows, chunk.shape[1], dtype)
        total += float(loss.value(chunk, target)) * len(chunk)
        correct += count_matches(chunk, target)
    return total, correct


def batch_targets(targets, rows, n_outputs, dtype):
    """Targets of the rows ``rows``: one-hot rows for labels, else the target rows."""
    if targets.ndim == 2:
        return targets[rows]
    return one_hot(targets[rows], n_outputs, dtype)


def one_hot(labels, n_outputs, dtype):
    """Rows of zeros with a one at each label: shape (len(labels), n_outputs)."""
    encoded = np.zeros((len(labels), n_outputs), dtype=dtype)
    encoded[np.arange(len(labels)), labels] = 1
    return encoded

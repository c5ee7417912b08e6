"""The compiled kernels' Python entry points check what the kernels trust.

The public methods validate their arguments before these helpers run; the helpers check
again, cheaply, so that no Python call can make a kernel read or write out of bounds.
"""
import numpy as np
import pytest

import numrec
from numrec._core._training import FusedTrainer, plan_stages


@pytest.fixture
def trainer():
    model = numrec.mnist_mlp(seed=0)
    return FusedTrainer(plan_stages(model.components), numrec.MSE(), numrec.SGD(0.5), 32,
                        np.float32, 2)


X = np.zeros((10, 784), np.uint8)
LABELS = np.zeros(10, np.int64)


@pytest.mark.parametrize("args, error, message", [
    ((X, LABELS, np.arange(10) + 5, 0, 10), ValueError, "order must hold row numbers"),
    ((X, LABELS + 20, np.arange(10), 0, 10), ValueError, "labels in 0..9"),
    ((X[:, :5].copy(), LABELS, np.arange(10), 0, 10), ValueError, r"shape \(n, 784\)"),
    ((X, LABELS, np.arange(10), 0, 50), ValueError, "within order"),
    ((X.astype(np.float64), LABELS, np.arange(10), 0, 10), TypeError, "uint8 pixels or float32"),
    ((X, np.zeros((10, 3), np.float32), np.arange(10), 0, 10), ValueError, r"shape \(10, 10\)"),
])
def test_fused_trainer_checks_its_arguments(trainer, args, error, message):
    with pytest.raises(error, match=message):
        trainer.train(*args)


def test_fused_trainer_count_correct_checks_labels(trainer):
    with pytest.raises(ValueError, match="one per row"):
        trainer.count_correct(X, LABELS[:3])


@pytest.mark.parametrize("call, error, message", [
    (lambda: numrec.Dense(3, 2)._forward(np.zeros((2, 3), np.float32),
                                         np.zeros((1, 2), np.float32)),
     ValueError, "shapes do not match"),
    (lambda: numrec.Dense(3, 2)._forward(np.zeros((2, 3)), np.zeros((2, 2))),
     TypeError, "dtype float32"),
    (lambda: numrec.Dense(3, 2)._backward(np.zeros((2, 3), np.float32),
                                          np.zeros((2, 2), np.float32),
                                          np.zeros((1, 3), np.float32)),
     ValueError, "shapes do not match"),
    (lambda: numrec.LeakyReLU()._run_forward(np.zeros(5, np.float32), np.zeros(2, np.float32)),
     ValueError, "5 values"),
    (lambda: numrec.Sigmoid()._run_backward(np.zeros(5), np.zeros(5), np.zeros(4)),
     ValueError, "same number of values"),
    (lambda: numrec.MSE()._run(np.zeros((2, 3)), np.zeros((1, 3)), np.zeros((2, 3))),
     ValueError, "same shape"),
    (lambda: numrec.SGD()._run(np.zeros(5), np.zeros(2), 0), ValueError, "same size"),
])
def test_private_kernel_helpers_check_sizes(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _segment_trainer(**kwargs):
    model = numrec.mnist_mlp(seed=0)
    return FusedTrainer(plan_stages(model.components[2:]), None, numrec.SGD(0.5), 32,
                        np.float32, 1, input_gradient=True, **kwargs)


@pytest.mark.parametrize("call, error, message", [
    (lambda t: t.backward_batch(None, 5), ValueError, "rows of the last forward pass"),
    (lambda t: t.forward_batch(0, 5), RuntimeError, "inside epoch"),
    (lambda t: t.loss_batch(0, 5), RuntimeError, "no compiled loss"),
    (lambda t: t.forward_input(np.zeros((5, 255), np.float32)), ValueError, r"\(m, 256\)"),
    (lambda t: t.forward_input(np.zeros((5, 256))), ValueError, "float32"),
    (lambda t: t.forward_input(np.zeros((33, 256), np.float32)), ValueError, "1..32"),
    (lambda t: t.forward_rows(np.zeros((1025, 256), np.float32)), ValueError, "1 to 1024"),
])
def test_one_batch_entry_points_check_their_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(_segment_trainer())


def test_backward_batch_checks_the_gradient_shape():
    trainer = _segment_trainer()
    trainer.forward_input(np.zeros((5, 256), np.float32))
    with pytest.raises(ValueError, match=r"shape \(5, 10\)"):
        trainer.backward_batch(np.zeros((4, 10), np.float32), 5)


def test_a_stateful_optimizer_must_be_prepared_before_the_loop_trusts_it():
    model = numrec.mnist_mlp(seed=0)
    optimizer = numrec.SGD(0.1, momentum=0.9)
    with pytest.raises(ValueError, match="call prepare"):
        FusedTrainer(plan_stages(model.components), numrec.MSE(), optimizer, 32, np.float32)
    optimizer.prepare(model.parameters())
    FusedTrainer(plan_stages(model.components), numrec.MSE(), optimizer, 32, np.float32)


def test_epoch_checks_order_and_targets_once():
    model = numrec.mnist_mlp(seed=0)
    trainer = FusedTrainer(plan_stages(model.components), numrec.MSE(), numrec.SGD(0.5), 32,
                           np.float32)
    with pytest.raises(ValueError, match="row numbers in 0..9"):
        with trainer.epoch(X, LABELS, np.arange(10, dtype=np.int64) + 1):
            pass
    with pytest.raises(ValueError, match="labels in 0..9"):
        with trainer.epoch(X, LABELS + 10, np.arange(10, dtype=np.int64)):
            pass

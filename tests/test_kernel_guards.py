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

"""Training agrees with PyTorch: the same network, weights and batches give the same
parameters after two epochs on 3000 MNIST digits (float64, relative error below 1e-9).

The reference network 784 -> 256 -> 10 with a LeakyReLU(0.2) (or ReLU) hidden layer and a
sigmoid output, numrec's quadratic cost (summed over the outputs, averaged over the batch:
``((a - y) ** 2).sum(1).mean()`` in PyTorch; ``torch.nn.MSELoss`` would also divide by
the 10 outputs) and ``torch.optim.SGD``, plain, with momentum, and with Nesterov momentum
and weight decay.  numrec's ``fit`` shuffles each epoch with ``rng.permutation(n)`` of the
Generator it is given; PyTorch's batches are drawn from a second Generator with the same
seed.
"""
import numpy as np
import pytest

import numrec

torch = pytest.importorskip("torch", reason="the parity tests train the same network in PyTorch")

from torch_twin import (  # noqa: E402
    assert_trains_like_pytorch, digits as mnist_digits, quadratic_cost,
)

# Plain SGD at the reference network's rate; with momentum 0.9 the same effective rate
# (lr / (1 - momentum) = 0.5): lr 0.5 with momentum saturates the sigmoids within an epoch,
# and a network that no longer learns would agree with anything.
CASES = {
    "leaky_relu": ("leaky_relu", {"lr": 0.5}),
    "relu": ("relu", {"lr": 0.5}),
    "momentum": ("leaky_relu", {"lr": 0.05, "momentum": 0.9}),
    "nesterov_decay": ("leaky_relu", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                      "weight_decay": 1e-3}),
}


class PyLeakyReLU(numrec.Activation):
    """The leaky ReLU in NumPy: its model trains in the segmented loop."""

    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, z):
        return np.where(z > 0, z, z * self.alpha)

    def derivative(self, z, a):
        return np.where(z > 0, 1.0, self.alpha)


@pytest.fixture(scope="module")
def digits():
    return mnist_digits()


def numrec_model(hidden):
    activation = {"leaky_relu": numrec.LeakyReLU(0.2), "relu": numrec.ReLU(),
                  "python_leaky_relu": PyLeakyReLU(0.2)}[hidden]
    return numrec.Sequential([
        numrec.Dense(784, 256, seed=1, dtype=np.float64), activation,
        numrec.Dense(256, 10, seed=2, dtype=np.float64), numrec.Sigmoid(),
    ])


def assert_same_training(case, batch_size, digits, *, hidden=None, pixels=False,
                         expected_loop="compiled"):
    torch_hidden, settings = CASES[case]
    hidden = hidden or torch_hidden
    substitutes = {1: torch.nn.LeakyReLU(0.2)} if hidden == "python_leaky_relu" else None
    assert_trains_like_pytorch(
        numrec_model(hidden), digits, loss=numrec.MSE(), torch_loss=quadratic_cost,
        optimizer=numrec.SGD(**settings),
        torch_optimizer=lambda params: torch.optim.SGD(params, **settings),
        batch_size=batch_size, seed=100 + batch_size, expected_loop=expected_loop,
        pixels=pixels, substitutes=substitutes)


@pytest.mark.parametrize("batch_size", [32, 128])
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_loop_matches_pytorch(case, batch_size, digits):
    # The ReLU network reads uint8 pixels, the others float64 inputs already scaled.
    assert_same_training(case, batch_size, digits, pixels=case == "relu")


def test_segmented_loop_matches_pytorch(digits):
    """A Python-written hidden activation: the Dense layers, the sigmoid, the loss and
    the optimizer (momentum, updated part by part) stay compiled."""
    assert_same_training("nesterov_decay", 32, digits, hidden="python_leaky_relu",
                         expected_loop="segmented")

"""Training with Tanh, Softmax and Identity agrees with PyTorch: the same network, weights
and batches give the same parameters after two epochs on 3000 MNIST digits (float64,
relative error below 1e-9), in the compiled loop.

784 -> 256 -> 10 networks trained with numrec's quadratic cost (summed over the outputs,
averaged over the batch: ``((a - y) ** 2).sum(1).mean()`` in PyTorch) and plain
``torch.optim.SGD``:

- a Tanh hidden layer and a sigmoid output (``torch.nn.Tanh``, ``torch.nn.Sigmoid``);
- a ReLU hidden layer and a softmax output (``torch.nn.Softmax(dim=1)``);
- a ReLU hidden layer and a linear output (``torch.nn.Identity``).

numrec's ``fit`` shuffles each epoch with ``rng.permutation(n)`` of the Generator it is
given; PyTorch's batches are drawn from a second Generator with the same seed (as in
``tests/test_torch_parity.py``).
"""
import numpy as np
import pytest

import numrec

torch = pytest.importorskip("torch", reason="the parity tests train the same network in PyTorch")

from torch_twin import (  # noqa: E402
    assert_trains_like_pytorch, digits as mnist_digits, quadratic_cost,
)

#: case -> (hidden activation, output activation, learning rate).  Each network learns
#: at both batch sizes (a softmax output under the quadratic cost learns slowly at 0.1;
#: a linear output, whose first batches of 512 give losses above 4, is kept at 0.05).
CASES = {
    "tanh_sigmoid": (numrec.Tanh, numrec.Sigmoid, 0.1),
    "relu_softmax": (numrec.ReLU, numrec.Softmax, 0.5),
    "relu_identity": (numrec.ReLU, numrec.Identity, 0.05),
}


@pytest.fixture(scope="module")
def digits():
    return mnist_digits()


@pytest.mark.parametrize("batch_size", [32, 512])
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_loop_matches_pytorch(case, batch_size, digits):
    hidden, output, lr = CASES[case]
    model = numrec.Sequential([
        numrec.Dense(784, 256, seed=1, dtype=np.float64), hidden(),
        numrec.Dense(256, 10, seed=2, dtype=np.float64), output(),
    ])
    assert_trains_like_pytorch(
        model, digits, loss=numrec.MSE(), torch_loss=quadratic_cost,
        optimizer=numrec.SGD(lr), torch_optimizer=lambda params: torch.optim.SGD(params, lr=lr),
        batch_size=batch_size, seed=200 + batch_size)

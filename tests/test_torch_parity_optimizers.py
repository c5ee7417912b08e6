"""Adam, AdamW and SGD's classical momentum agree with PyTorch: the reference network,
the same initial weights and batches give the same parameters after two epochs on 3000
MNIST digits (float64, relative error below 1e-9), as tests/test_torch_parity.py checks
for SGD.

The network is 784 -> 256 -> 10 with a LeakyReLU(0.2) hidden layer, a sigmoid output and
numrec's quadratic cost (``((a - y) ** 2).sum(1).mean()`` in PyTorch).  PyTorch's
optimizers run their single-tensor code (``foreach=False``), whose order of operations
numrec's kernels follow.  The classical momentum ``v <- mu v + lr g; theta <- theta - v``
has no PyTorch class: for a constant rate it gives the parameters of ``torch.optim.SGD``
with the same ``lr`` and ``momentum``, whose velocity is the classic one divided by lr.
"""
import numpy as np
import pytest

import numrec

torch = pytest.importorskip("torch", reason="the parity tests train the same network in PyTorch")

from torch_twin import (  # noqa: E402
    EPOCHS, assert_trains_like_pytorch, digits as mnist_digits, quadratic_cost,
)

# name -> (numrec optimizer, PyTorch optimizer from its parameters)
CASES = {
    "adam": (lambda: numrec.Adam(lr=1e-3),
             lambda params: torch.optim.Adam(params, lr=1e-3, foreach=False)),
    "adam_weight_decay": (
        lambda: numrec.Adam(lr=1e-3, betas=(0.8, 0.99), weight_decay=0.05),
        lambda params: torch.optim.Adam(params, lr=1e-3, betas=(0.8, 0.99),
                                        weight_decay=0.05, foreach=False)),
    "adamw": (lambda: numrec.AdamW(lr=1e-3, weight_decay=0.1),
              lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1,
                                               foreach=False)),
    # The reference network's effective rate lr / (1 - mu) = 0.5 (with the seed's
    # mu = 0.99 the network barely learns in two epochs of 3000 digits).
    "classic_momentum": (
        lambda: numrec.SGD(lr=0.05, momentum=0.9, classic=True),
        lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, foreach=False)),
}


@pytest.fixture(scope="module")
def digits():
    return mnist_digits()


@pytest.mark.parametrize("batch_size", [32, 512])
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_loop_matches_pytorch(case, batch_size, digits):
    make_numrec, make_torch = CASES[case]
    model = numrec.Sequential([
        numrec.Dense(784, 256, seed=1, dtype=np.float64), numrec.LeakyReLU(0.2),
        numrec.Dense(256, 10, seed=2, dtype=np.float64), numrec.Sigmoid(),
    ])
    optimizer = make_numrec()
    assert_trains_like_pytorch(
        model, digits, loss=numrec.MSE(), torch_loss=quadratic_cost, optimizer=optimizer,
        torch_optimizer=make_torch, batch_size=batch_size, seed=200 + batch_size)
    assert optimizer.steps == EPOCHS * -(-len(digits[0]) // batch_size)


STEP_CASES = {
    "adam": (lambda: numrec.Adam(lr=0.01),
             lambda params: torch.optim.Adam(params, lr=0.01, foreach=False)),
    "adam_weight_decay": (
        lambda: numrec.Adam(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
        lambda params: torch.optim.Adam(params, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1,
                                        foreach=False)),
    "adam_small_beta1": (   # torch.lerp's other form, for weights 1 - beta1 >= 0.5
        lambda: numrec.Adam(lr=0.01, betas=(0.3, 0.5), eps=1e-3),
        lambda params: torch.optim.Adam(params, lr=0.01, betas=(0.3, 0.5), eps=1e-3,
                                        foreach=False)),
    "adamw": (lambda: numrec.AdamW(lr=0.01, weight_decay=0.5),
              lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=0.5,
                                               foreach=False)),
}


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("case", list(STEP_CASES))
def test_each_step_matches_pytorch(case, dtype, tolerance):
    """Twenty steps on one parameter with gradients of scales 1e-6 to 10: numrec's step
    and PyTorch's agree to rounding after every step (relative to the largest entry)."""
    make_numrec, make_torch = STEP_CASES[case]
    rng = np.random.default_rng(300)
    param = rng.standard_normal((40, 25)).astype(dtype)
    twin = torch.nn.Parameter(torch.from_numpy(param.copy()))
    optimizer, reference = make_numrec(), make_torch([twin])
    start = param.copy()
    for step in range(1, 21):
        grad = (rng.standard_normal(param.shape) * 10.0 ** rng.integers(-6, 2)).astype(dtype)
        optimizer.step([param], [grad])
        twin.grad = torch.from_numpy(grad.copy())
        reference.step()
        want = twin.detach().numpy()
        error = np.max(np.abs(param - want)) / np.max(np.abs(want))
        assert error < tolerance, f"step {step}: relative error {error:.3g}"
        state = reference.state[twin]
        for name, got in zip(["exp_avg", "exp_avg_sq"], optimizer.state()[0]):
            expected = state[name].numpy()
            error = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
            assert error < tolerance, f"step {step}, {name}: relative error {error:.3g}"
    assert optimizer.steps == 20
    assert np.max(np.abs(param - start)) > 0.05   # it moved

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

from test_torch_parity import EPOCHS, N_SAMPLES, TOLERANCE, digits  # noqa: E402,F401

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


def torch_training(initial, make_optimizer, x, y, batch_size, seed):
    """Train the PyTorch twin from the parameters ``initial``; return its parameters."""
    first, second = (torch.nn.Linear(784, 256, dtype=torch.float64),
                     torch.nn.Linear(256, 10, dtype=torch.float64))
    with torch.no_grad():
        for param, value in zip([first.weight, first.bias, second.weight, second.bias],
                                initial):
            param.copy_(torch.from_numpy(value))
    network = torch.nn.Sequential(first, torch.nn.LeakyReLU(0.2), second, torch.nn.Sigmoid())
    optimizer = make_optimizer(network.parameters())
    inputs = torch.from_numpy(x / 255.0)
    targets = torch.nn.functional.one_hot(torch.from_numpy(y.astype(np.int64)), 10).double()
    rng = np.random.default_rng(seed)
    for _ in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            optimizer.zero_grad()
            output = network(inputs[rows])
            loss = ((output - targets[rows]) ** 2).sum(1).mean()
            loss.backward()
            optimizer.step()
    return [param.detach().numpy() for param in network.parameters()]


@pytest.mark.parametrize("batch_size", [32, 512])
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_loop_matches_pytorch(case, batch_size, digits):
    make_numrec, make_torch = CASES[case]
    x, y = digits
    assert len(x) == N_SAMPLES
    seed = 200 + batch_size
    model = numrec.Sequential([
        numrec.Dense(784, 256, seed=1, dtype=np.float64), numrec.LeakyReLU(0.2),
        numrec.Dense(256, 10, seed=2, dtype=np.float64), numrec.Sigmoid(),
    ])
    initial = [param.copy() for param in model.parameters()]
    optimizer = make_numrec()
    history = model.fit(x / 255.0, y, epochs=EPOCHS, batch_size=batch_size,
                        optimizer=optimizer, seed=np.random.default_rng(seed))
    assert history.loop == "compiled"
    assert optimizer.steps == EPOCHS * -(-len(x) // batch_size)
    # A saturated network (loss stuck near 1) would agree with anything: it must learn.
    assert history.loss[-1] < 0.9 * history.loss[0]
    expected = torch_training(initial, make_torch, x, y, batch_size, seed)
    names = ["weights 1", "bias 1", "weights 2", "bias 2"]
    for name, got, want, start in zip(names, model.parameters(), expected, initial):
        assert got.shape == want.shape
        assert not np.array_equal(got, start), f"{name} did not move"
        error = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert error < TOLERANCE, f"{name}: relative error {error:.3g} against PyTorch"


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

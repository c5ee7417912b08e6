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

N_SAMPLES = 3000
EPOCHS = 2
TOLERANCE = 1e-9

#: case -> (hidden activation, output activation, learning rate).  Each network learns
#: at both batch sizes (a softmax output under the quadratic cost learns slowly at 0.1;
#: a linear output, whose first batches of 512 give losses above 4, is kept at 0.05).
CASES = {
    "tanh_sigmoid": ("tanh", "sigmoid", 0.1),
    "relu_softmax": ("relu", "softmax", 0.5),
    "relu_identity": ("relu", "identity", 0.05),
}

NUMREC = {"tanh": numrec.Tanh, "relu": numrec.ReLU, "sigmoid": numrec.Sigmoid,
          "softmax": numrec.Softmax, "identity": numrec.Identity}
TORCH = {"tanh": lambda: torch.nn.Tanh(), "relu": lambda: torch.nn.ReLU(),
         "sigmoid": lambda: torch.nn.Sigmoid(), "softmax": lambda: torch.nn.Softmax(dim=1),
         "identity": lambda: torch.nn.Identity()}


@pytest.fixture(scope="module")
def digits():
    """The first 3000 MNIST training images, scaled to [0, 1] in float64, and labels."""
    (x_train, y_train), _ = numrec.datasets.load_mnist(dtype=np.uint8)
    return x_train[:N_SAMPLES] / 255.0, y_train[:N_SAMPLES]


def torch_training(initial, hidden, output, lr, x, y, batch_size, seed):
    """Train the PyTorch twin from the parameters ``initial``; return its parameters."""
    first, second = (torch.nn.Linear(784, 256, dtype=torch.float64),
                     torch.nn.Linear(256, 10, dtype=torch.float64))
    with torch.no_grad():
        for param, value in zip([first.weight, first.bias, second.weight, second.bias],
                                initial):
            param.copy_(torch.from_numpy(value))
    network = torch.nn.Sequential(first, TORCH[hidden](), second, TORCH[output]())
    sgd = torch.optim.SGD(network.parameters(), lr=lr)
    inputs = torch.from_numpy(x)
    targets = torch.nn.functional.one_hot(torch.from_numpy(y.astype(np.int64)), 10).double()
    rng = np.random.default_rng(seed)
    for _ in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            sgd.zero_grad()
            loss = ((network(inputs[rows]) - targets[rows]) ** 2).sum(1).mean()
            loss.backward()
            sgd.step()
    return [param.detach().numpy() for param in network.parameters()]


@pytest.mark.parametrize("batch_size", [32, 512])
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_loop_matches_pytorch(case, batch_size, digits):
    hidden, output, lr = CASES[case]
    x, y = digits
    seed = 200 + batch_size
    model = numrec.Sequential([
        numrec.Dense(784, 256, seed=1, dtype=np.float64), NUMREC[hidden](),
        numrec.Dense(256, 10, seed=2, dtype=np.float64), NUMREC[output](),
    ])
    initial = [param.copy() for param in model.parameters()]
    history = model.fit(x, y, epochs=EPOCHS, batch_size=batch_size,
                        optimizer=numrec.SGD(lr), seed=np.random.default_rng(seed))
    assert history.loop == "compiled"
    # A network that does not learn would agree with anything.
    assert history.loss[-1] < 0.9 * history.loss[0]
    expected = torch_training(initial, hidden, output, lr, x, y, batch_size, seed)
    names = ["weights 1", "bias 1", "weights 2", "bias 2"]
    for name, got, want, start in zip(names, model.parameters(), expected, initial):
        assert got.shape == want.shape
        assert not np.array_equal(got, start), f"{name} did not move"
        error = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert error < TOLERANCE, f"{name}: relative error {error:.3g} against PyTorch"

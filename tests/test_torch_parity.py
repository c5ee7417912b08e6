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

N_SAMPLES = 3000
EPOCHS = 2
TOLERANCE = 1e-9

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
    """The first 3000 MNIST training images (uint8 rows of 784 pixels) and labels."""
    (x_train, y_train), _ = numrec.datasets.load_mnist(dtype=np.uint8)
    return x_train[:N_SAMPLES], y_train[:N_SAMPLES]


def numrec_model(hidden):
    activation = {"leaky_relu": numrec.LeakyReLU(0.2), "relu": numrec.ReLU(),
                  "python_leaky_relu": PyLeakyReLU(0.2)}[hidden]
    return numrec.Sequential([
        numrec.Dense(784, 256, seed=1, dtype=np.float64), activation,
        numrec.Dense(256, 10, seed=2, dtype=np.float64), numrec.Sigmoid(),
    ])


def torch_training(initial, hidden, optimizer, x, y, batch_size, seed):
    """Train the PyTorch twin from the parameters ``initial``; return its parameters."""
    first, second = (torch.nn.Linear(784, 256, dtype=torch.float64),
                     torch.nn.Linear(256, 10, dtype=torch.float64))
    with torch.no_grad():
        for param, value in zip([first.weight, first.bias, second.weight, second.bias],
                                initial):
            param.copy_(torch.from_numpy(value))
    activation = torch.nn.ReLU() if hidden == "relu" else torch.nn.LeakyReLU(0.2)
    network = torch.nn.Sequential(first, activation, second, torch.nn.Sigmoid())
    sgd = torch.optim.SGD(network.parameters(), **optimizer)
    inputs = torch.from_numpy(x / 255.0)
    targets = torch.nn.functional.one_hot(torch.from_numpy(y.astype(np.int64)), 10).double()
    rng = np.random.default_rng(seed)
    for _ in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            sgd.zero_grad()
            output = network(inputs[rows])
            loss = ((output - targets[rows]) ** 2).sum(1).mean()
            loss.backward()
            sgd.step()
    return [param.detach().numpy() for param in network.parameters()]


def assert_same_training(case, batch_size, digits, *, hidden=None, pixels=False,
                         expected_loop="compiled"):
    torch_hidden, optimizer = CASES[case]
    x, y = digits
    seed = 100 + batch_size
    model = numrec_model(hidden or torch_hidden)
    initial = [param.copy() for param in model.parameters()]
    inputs = x if pixels else x / 255.0   # uint8 pixels are scaled by 1/255 inside fit
    history = model.fit(inputs, y, epochs=EPOCHS, batch_size=batch_size,
                        optimizer=numrec.SGD(**optimizer), seed=np.random.default_rng(seed))
    assert history.loop == expected_loop
    # A saturated network (loss stuck near 1) would agree with anything: it must learn.
    assert history.loss[-1] < 0.9 * history.loss[0]
    expected = torch_training(initial, torch_hidden, optimizer, x, y, batch_size, seed)
    names = ["weights 1", "bias 1", "weights 2", "bias 2"]
    for name, got, want, start in zip(names, model.parameters(), expected, initial):
        assert got.shape == want.shape
        assert not np.array_equal(got, start), f"{name} did not move"
        error = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert error < TOLERANCE, f"{name}: relative error {error:.3g} against PyTorch"


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

"""A model's PyTorch twin, for the float64 parity tests (``tests/test_torch_parity*.py``).

:func:`assert_trains_like_pytorch` trains a numrec model and a PyTorch copy of it, built
by :func:`twin` from the same initial weights, for two epochs on the first 3000 MNIST
digits with the same batches, and requires every parameter to agree within a relative
error of 1e-9.  numrec's ``fit`` shuffles each epoch with ``rng.permutation(n)`` of the
Generator it is given; the twin's batches come from a second Generator with the same seed.
"""
import numpy as np
import torch

import numrec

N_SAMPLES = 3000
EPOCHS = 2
TOLERANCE = 1e-9


def digits():
    """The first 3000 MNIST training images (uint8 rows of 784 pixels) and labels."""
    (x_train, y_train), _ = numrec.datasets.load_mnist(dtype=np.uint8)
    return x_train[:N_SAMPLES], y_train[:N_SAMPLES]


def quadratic_cost(output, targets, labels):
    """numrec's MSE: summed over the outputs, averaged over the batch (``MSELoss``
    would also divide by the number of outputs)."""
    return ((output - targets) ** 2).sum(1).mean()


_TWINS = {
    numrec.ReLU: lambda c: torch.nn.ReLU(),
    numrec.LeakyReLU: lambda c: torch.nn.LeakyReLU(c.alpha),
    numrec.Sigmoid: lambda c: torch.nn.Sigmoid(),
    numrec.Tanh: lambda c: torch.nn.Tanh(),
    numrec.Identity: lambda c: torch.nn.Identity(),
    numrec.Softmax: lambda c: torch.nn.Softmax(dim=1),
}


def twin(model, substitutes=None):
    """``torch.nn.Sequential`` copying ``model``: float64 ``Linear`` layers holding its
    parameters, and the same activations.  ``substitutes`` maps a component's index to
    the module standing for it (a Python-written activation)."""
    modules = []
    for index, component in enumerate(model.components):
        if substitutes and index in substitutes:
            modules.append(substitutes[index])
        elif isinstance(component, numrec.Dense):
            linear = torch.nn.Linear(component.in_features, component.out_features,
                                     dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(component.weights.astype(np.float64)))
                linear.bias.copy_(torch.from_numpy(component.bias.astype(np.float64)))
            modules.append(linear)
        else:
            modules.append(_TWINS[type(component)](component))
    return torch.nn.Sequential(*modules)


def train_twin(network, loss, optimizer, x, y, batch_size, seed, epochs=EPOCHS):
    """Train ``network`` with ``loss(output, one_hot_targets, labels)`` and ``optimizer``
    on the pixels ``x`` / 255 in numrec's batch order; return its parameters."""
    inputs = torch.from_numpy(x / 255.0)
    labels = torch.from_numpy(y.astype(np.int64))
    targets = torch.nn.functional.one_hot(labels, 10).double()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            optimizer.zero_grad()
            loss(network(inputs[rows]), targets[rows], labels[rows]).backward()
            optimizer.step()
    return [param.detach().numpy() for param in network.parameters()]


def assert_trains_like_pytorch(model, digits, *, loss, torch_loss, optimizer,
                               torch_optimizer, batch_size, seed, expected_loop="compiled",
                               pixels=False, substitutes=None):
    """Train ``model`` (float64) and its twin two epochs alike; compare every parameter.

    ``torch_optimizer`` makes the twin's optimizer from its parameters; with ``pixels``
    numrec trains on the uint8 images (scaled inside ``fit``) rather than on floats.
    """
    x, y = digits
    network = twin(model, substitutes)
    initial = [param.copy() for param in model.parameters()]
    history = model.fit(x if pixels else x / 255.0, y, epochs=EPOCHS, batch_size=batch_size,
                        loss=loss, optimizer=optimizer, seed=np.random.default_rng(seed))
    assert history.loop == expected_loop
    # A network that no longer learns (saturated) would agree with anything.
    assert history.loss[-1] < 0.9 * history.loss[0]
    expected = train_twin(network, torch_loss, torch_optimizer(network.parameters()), x, y,
                          batch_size, seed)
    for index, (got, want, start) in enumerate(zip(model.parameters(), expected, initial)):
        assert got.shape == want.shape
        assert not np.array_equal(got, start), f"parameter {index} did not move"
        error = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert error < TOLERANCE, f"parameter {index}: relative error {error:.3g}"
    return history

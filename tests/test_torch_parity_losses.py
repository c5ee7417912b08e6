"""The cross-entropy losses train as in PyTorch: the same network, weights and batches
give the same parameters after two epochs on 3000 MNIST digits (float64, relative error
below 1e-9), as in tests/test_torch_parity.py.

- ``SoftmaxCrossEntropy`` on the scores of a 784 -> 256 -> 10 ReLU network ending in its
  Dense layer, against ``torch.nn.CrossEntropyLoss()`` with class-index targets;
- ``BinaryCrossEntropy`` after the reference network's sigmoid, against
  ``torch.nn.BCELoss(reduction="sum")`` divided by the batch size;
- ``CrossEntropy`` after a sigmoid (compiled loop) and after a softmax written in NumPy
  (a Python activation: the segmented loop), against ``-(y * log(eps + a)).sum() / m``.
"""
import numpy as np
import pytest

import numrec

torch = pytest.importorskip("torch", reason="the parity tests train the same network in PyTorch")

from torch_twin import assert_trains_like_pytorch, digits as mnist_digits  # noqa: E402

EPS = 1e-7  # CrossEntropy's default


class PySoftmax(numrec.Activation):
    """The softmax of each row, in NumPy: its model trains in the segmented loop."""

    def forward(self, z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def backward(self, z, a, grad_a):
        return a * (grad_a - np.sum(grad_a * a, axis=1, keepdims=True))


def _bce(output, targets):
    return torch.nn.BCELoss(reduction="sum")(output, targets) / len(output)


def _cross_entropy(output, targets):
    return -(targets * torch.log(EPS + output)).sum() / len(output)


# name: (hidden activation, output activation, numrec loss, PyTorch loss of (output,
# one-hot targets, labels), learning rate)
CASES = {
    "softmax_cross_entropy": ("relu", None, numrec.SoftmaxCrossEntropy,
                              lambda output, targets, labels:
                              torch.nn.CrossEntropyLoss()(output, labels), 0.1),
    "binary_cross_entropy": ("leaky_relu", "sigmoid", numrec.BinaryCrossEntropy,
                             lambda output, targets, labels: _bce(output, targets), 0.1),
    "cross_entropy_sigmoid": ("leaky_relu", "sigmoid", numrec.CrossEntropy,
                              lambda output, targets, labels: _cross_entropy(output, targets),
                              0.1),
    "cross_entropy_softmax": ("leaky_relu", "python_softmax", numrec.CrossEntropy,
                              lambda output, targets, labels: _cross_entropy(output, targets),
                              0.1),
}


@pytest.fixture(scope="module")
def digits():
    return mnist_digits()


def numrec_model(hidden, output):
    components = [numrec.Dense(784, 256, seed=1, dtype=np.float64),
                  {"relu": numrec.ReLU(), "leaky_relu": numrec.LeakyReLU(0.2)}[hidden],
                  numrec.Dense(256, 10, seed=2, dtype=np.float64)]
    if output is not None:
        components.append({"sigmoid": numrec.Sigmoid(), "python_softmax": PySoftmax()}[output])
    return numrec.Sequential(components)


def assert_same_training(case, batch_size, digits, expected_loop):
    hidden, output, loss_class, torch_loss, lr = CASES[case]
    substitutes = {3: torch.nn.Softmax(dim=1)} if output == "python_softmax" else None
    assert_trains_like_pytorch(
        numrec_model(hidden, output), digits, loss=loss_class(), torch_loss=torch_loss,
        optimizer=numrec.SGD(lr), torch_optimizer=lambda params: torch.optim.SGD(params, lr=lr),
        batch_size=batch_size, seed=200 + batch_size, expected_loop=expected_loop,
        substitutes=substitutes)


@pytest.mark.parametrize("batch_size", [32, 512])
@pytest.mark.parametrize("case", ["softmax_cross_entropy", "binary_cross_entropy",
                                  "cross_entropy_sigmoid"])
def test_compiled_loop_matches_pytorch(case, batch_size, digits):
    assert_same_training(case, batch_size, digits, "compiled")


@pytest.mark.parametrize("batch_size", [32, 512])
def test_segmented_loop_matches_pytorch(batch_size, digits):
    """A softmax written in NumPy before the compiled CrossEntropy: the Dense layers,
    the loss and the optimizer stay compiled."""
    assert_same_training("cross_entropy_softmax", batch_size, digits, "segmented")


def test_softmax_cross_entropy_probabilities_match_pytorch(digits):
    x, _ = digits
    model = numrec_model("relu", None)
    scores = model.predict(x[:100] / 255.0)
    got = numrec.SoftmaxCrossEntropy().probabilities(scores)
    want = torch.softmax(torch.from_numpy(scores), dim=1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)


def _torch_value_and_gradient(loss, output, *args):
    a = torch.tensor(output, requires_grad=True)
    value = loss(a, *args)
    value.backward()
    return value.item(), a.grad.numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_on_saturated_outputs_matches_pytorch(dtype):
    """PyTorch clamps each logarithm at -100 and floors a (1 - a) at 1e-12 in the
    gradient; numrec does the same, so saturated sigmoids train alike."""
    row = [0.0, 1e-30, 1e-8, 0.3, 1 - 1e-8, 1.0]
    output = np.array([row] * 3, dtype=dtype)
    target = np.array([[0.0] * 6, [1.0] * 6, [0.25] * 6], dtype=dtype)
    value, gradient = _torch_value_and_gradient(_bce, output, torch.tensor(target))
    loss = numrec.BinaryCrossEntropy()
    rtol = 1e-13 if dtype == "float64" else 1e-6
    assert loss.value(output, target) == pytest.approx(value, rel=rtol)
    np.testing.assert_allclose(loss.gradient(output, target), gradient, rtol=rtol, atol=0)


def test_softmax_cross_entropy_matches_pytorch_with_soft_targets():
    rng = np.random.default_rng(300)
    logits = rng.normal(0, 10, (8, 5))
    labels = rng.integers(0, 5, 8)
    soft = rng.dirichlet(np.ones(5), 8)
    loss = numrec.SoftmaxCrossEntropy()
    for target, torch_target in ((np.eye(5)[labels], torch.from_numpy(labels)),
                                 (soft, torch.from_numpy(soft))):
        value, gradient = _torch_value_and_gradient(torch.nn.CrossEntropyLoss(), logits,
                                                    torch_target)
        assert loss.value(logits, target) == pytest.approx(value, rel=1e-13)
        np.testing.assert_allclose(loss.gradient(logits, target), gradient, rtol=1e-12,
                                   atol=1e-17)


def test_cross_entropy_matches_pytorch_nll_loss():
    rng = np.random.default_rng(301)
    probabilities = rng.dirichlet(np.ones(6), 7)
    probabilities[0, :] = np.eye(6)[2]  # a saturated row: zeros under eps
    labels = rng.integers(0, 6, 7)
    value, gradient = _torch_value_and_gradient(
        lambda a, y: torch.nn.NLLLoss()(torch.log(EPS + a), y), probabilities,
        torch.from_numpy(labels))
    loss = numrec.CrossEntropy()
    target = np.eye(6)[labels]
    assert loss.value(probabilities, target) == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(loss.gradient(probabilities, target), gradient, rtol=1e-13,
                               atol=0)

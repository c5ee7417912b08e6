"""A new activation written in plain Python, trained on MNIST inside ``Sequential``.

Swish (also called SiLU), ``f(z) = z * sigmoid(z)``, is not built into numrec.  Writing it
takes a subclass of :class:`numrec.Activation` with two methods, ``forward`` and
``derivative``.  The script checks the derivative against finite differences, then trains
the reference network twice from the same initial weights, once with the built-in
LeakyReLU (compiled loop) and once with Swish (segmented loop: the layers stay compiled,
Swish runs per batch in NumPy), and compares them.

    python examples/custom_activation.py
    python examples/custom_activation.py --epochs 1 --train-samples 5000
"""
import argparse
import sys
import time

import numpy as np

import numrec
from numrec.datasets import load_mnist


class Swish(numrec.Activation):
    r"""Swish: :math:`f(z) = z \sigma(z)`, :math:`f'(z) = \sigma(z) + f(z) (1 - \sigma(z))`."""

    def forward(self, z: np.ndarray) -> np.ndarray:
        return z / (1 + np.exp(-z))

    def derivative(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        sigmoid = 1 / (1 + np.exp(-z))
        return sigmoid + a * (1 - sigmoid)


def check_derivative(activation: numrec.Activation, eps: float = 1e-6) -> float:
    """Return the largest gap between ``derivative`` and a central finite difference."""
    z = np.linspace(-5, 5, 101).reshape(1, -1)
    numeric = (activation.forward(z + eps) - activation.forward(z - eps)) / (2 * eps)
    return float(np.max(np.abs(activation.derivative(z, activation.forward(z)) - numeric)))


def network(activation: numrec.Activation, seed: int) -> numrec.Sequential:
    rng = np.random.default_rng(seed)
    return numrec.Sequential([
        numrec.Dense(784, 256, seed=rng), activation,
        numrec.Dense(256, 10, seed=rng), numrec.Sigmoid(),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on the first N training images only (quick runs)")
    args = parser.parse_args(argv)

    gap = check_derivative(Swish())
    print(f"Swish derivative vs finite differences: largest gap {gap:.1e}")
    if gap > 1e-6:
        print("the derivative is wrong", file=sys.stderr)
        return 1

    (x_train, y_train), (x_test, y_test) = load_mnist()
    if args.train_samples is not None:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]

    results = {}
    for name, activation in [("LeakyReLU (built-in)", numrec.LeakyReLU(0.2)),
                             ("Swish (Python)", Swish())]:
        model = network(activation, args.seed)
        start = time.perf_counter()
        history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                            optimizer=numrec.SGD(lr=args.lr),
                            validation_data=(x_test, y_test), seed=args.seed)
        seconds = time.perf_counter() - start
        loop = f"{history.loop} loop"
        accuracies = " ".join(f"{100 * a:.2f}" for a in history.val_accuracy)
        print(f"{name:21} {loop:14}  test accuracy per epoch (%): {accuracies}  "
              f"({seconds:.1f} s)", flush=True)
        results[name] = history.val_accuracy[-1]

    best = max(results, key=results.__getitem__)
    print(f"best after {args.epochs} epochs: {best} with {100 * results[best]:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())

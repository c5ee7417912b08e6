"""The worked example of *number_recognition*, computed by numrec.

A 3 -> 2 -> 3 network (leaky ReLU with alpha 0.2, then a sigmoid, quadratic cost) with
the weights, biases, input and target of the reference README.  The script runs one
forward and one backward pass in float64 and prints every quantity beside the value the
README gives (rounded there to three decimals, or to six where it quotes its Wolfram
output).  It exits with status 1 if any value differs.

    python examples/worked_example.py
"""
import argparse
import sys

import numpy as np

import numrec

# The reference README's values.
W1 = [[-0.75, 0.5, -0.25], [0.25, -0.5, 0.75]]
B1 = [0.0, 1.0]
W2 = [[-0.75, 0.75], [0.5, -0.5], [-0.25, 0.25]]
B2 = [0.75, 0.5, 0.25]
X = [[0.25, 0.5, 0.75]]
Y = [[0.0, 1.0, 0.0]]

# (name, formula, the README's value, decimals the README gives)
EXPECTED = [
    ("a1", "LeakyReLU(W1 a0 + b1)", [-0.025, 1.375], 3),
    ("a2", "sigmoid(W2 a1 + b2)", [0.858, 0.450, 0.646], 3),
    ("delta2", "2 (a2 - y) * sigmoid'(z2)", [0.208924, -0.272186, 0.295432], 6),
    ("dC/db2", "delta2", [0.208924, -0.272186, 0.295432], 6),
    ("dC/dW2", "delta2 a1^T", [[-0.0052231, 0.287271], [0.00680465, -0.374256],
                                [-0.0073858, 0.406219]], 6),
    ("delta1", "(W2^T delta2) * LeakyReLU'(z1)", [-0.0733288, 0.366644], 6),
    ("dC/db1", "delta1", [-0.0733288, 0.366644], 6),
    ("dC/dW1", "delta1 a0^T", [[-0.0183322, -0.0366644, -0.0549966],
                               [0.091661, 0.183322, 0.274983]], 6),
]


def compute() -> dict[str, np.ndarray]:
    """Run the example through numrec and return every quantity by name."""
    hidden = numrec.Dense(3, 2, dtype=np.float64)
    output = numrec.Dense(2, 3, dtype=np.float64)
    hidden.weights, hidden.bias = np.array(W1), np.array(B1)
    output.weights, output.bias = np.array(W2), np.array(B2)
    leaky, sigmoid = numrec.LeakyReLU(alpha=0.2), numrec.Sigmoid()
    model = numrec.Sequential([hidden, leaky, output, sigmoid])

    x, y = np.array(X), np.array(Y)
    a2 = model.forward(x)                       # forward pass, remembered for backward
    grad_a2 = numrec.MSE().gradient(a2, y)      # 2 (a2 - y) for a batch of one
    model.backward(grad_a2)                     # fills grad_weights and grad_bias

    # The intermediate quantities, one component at a time.
    z1 = hidden.forward(x)
    a1 = leaky.forward(z1)
    z2 = output.forward(a1)
    delta2 = sigmoid.backward(z2, a2, grad_a2)           # dC/dz2
    delta1 = leaky.backward(z1, a1, delta2 @ output.weights)  # dC/dz1
    return {
        "a1": a1[0], "a2": a2[0], "delta2": delta2[0], "dC/db2": output.grad_bias,
        "dC/dW2": output.grad_weights, "delta1": delta1[0], "dC/db1": hidden.grad_bias,
        "dC/dW1": hidden.grad_weights,
    }


def _format(values: np.ndarray, decimals: int) -> str:
    flat = np.atleast_2d(values)
    rows = ["[" + " ".join(f"{v:{decimals + 4}.{decimals}f}" for v in row) + "]"
            for row in flat]
    return " ".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    values = compute()
    failures = 0
    print(f"{'quantity':8}  {'formula':33}  numrec / README")
    for name, formula, expected, decimals in EXPECTED:
        ours = np.asarray(values[name])
        theirs = np.asarray(expected)
        # The README rounds, and its Wolfram inputs were themselves rounded: agree to
        # within one unit of its last decimal.
        ok = ours.shape == theirs.shape and bool(
            np.all(np.abs(ours - theirs) <= 10.0 ** -decimals))
        failures += not ok
        print(f"{name:8}  {formula:33}  numrec {_format(ours, decimals)}")
        print(f"{'':8}  {'':33}  README {_format(theirs, decimals)}  "
              f"{'matches' if ok else 'DIFFERS'}")
    print("all quantities match the README" if not failures
          else f"{failures} quantities differ from the README")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

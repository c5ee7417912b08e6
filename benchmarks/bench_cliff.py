"""What one Python-written component costs: the reference network with a NumPy LeakyReLU.

Times one epoch plus the test pass (the unit of bench_epoch.py) of the reference network
(784 -> 256 -> 10, leaky ReLU 0.2, sigmoid, quadratic cost, plain SGD, float32) in these
variants, side by side in one run, from the same weights and on the same batch order:

``compiled``
    every component compiled (numrec's compiled loop);
``python-act``
    the hidden LeakyReLU replaced by one written in NumPy: numrec keeps the two dense
    layers, the sigmoid, the loss and SGD compiled and calls the NumPy activation per
    batch (the segmented loop);
``python-act, fused=False``
    the same model through the per-batch Python loop, every component called per batch
    (how any model with a Python-written component trained before the segmented loop);
``torch``
    PyTorch eager, the same network (when torch is installed).

Within each round every variant runs once, the first one rotating from round to round;
the table gives the medians and, per variant, the median over rounds of its time over
the compiled model's time in the same round.

    python benchmarks/bench_cliff.py                     # batch 32 and 512, 7 rounds
    python benchmarks/bench_cliff.py --batch-sizes 32 --rounds 3
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import load_data, settle  # noqa: E402  (helper modules beside this script)
from frameworks import ALPHA, RUNNERS, batch_order, initial_weights  # noqa: E402

import numrec  # noqa: E402

ORDER_SEED = 3000   # round r uses the shuffle of seed ORDER_SEED + r


class NumpyLeakyReLU(numrec.Activation):
    """Leaky ReLU in NumPy: ``max(z, alpha z)`` (alpha < 1) and its slope, 1 or alpha.

    Written with whole-array operations that stay in the input's dtype (``np.where``
    on these small batches takes about four times as long).
    """

    def __init__(self, alpha=ALPHA):
        self.alpha = alpha

    def forward(self, z):
        return np.maximum(z, self.alpha * z)

    def derivative(self, z, a):
        return (z > 0).astype(z.dtype) * (1 - self.alpha) + self.alpha


class NumrecVariant:
    """numrec's reference network with or without the NumPy activation."""

    def __init__(self, data, label, python_activation, fused=None):
        self.data, self.label = data, label
        self.python_activation, self.fused = python_activation, fused

    def epoch(self, init, lr, order_seed, batch_size):
        dense1, dense2 = numrec.Dense(784, 256), numrec.Dense(256, 10)
        dense1.weights, dense1.bias, dense2.weights, dense2.bias = init
        activation = NumpyLeakyReLU() if self.python_activation else numrec.LeakyReLU(ALPHA)
        model = numrec.Sequential([dense1, activation, dense2, numrec.Sigmoid()])
        start = time.perf_counter()
        history = model.fit(self.data.x_train_u8, self.data.y_train, epochs=1,
                            batch_size=batch_size, loss=numrec.MSE(), optimizer=numrec.SGD(lr),
                            validation_data=(self.data.x_test_u8, self.data.y_test),
                            seed=order_seed, fused=self.fused)
        return time.perf_counter() - start, history.val_accuracy[0], history.loop


class TorchVariant:
    label = "PyTorch eager"

    def __init__(self, data):
        self.runner = RUNNERS["torch"]()
        self.runner.prepare(data)

    def epoch(self, init, lr, order_seed, batch_size):
        self.runner.start(init, lr)
        order = batch_order(order_seed, 60000)
        seconds, accuracy = self.runner.epoch(order, order_seed, batch_size)
        return seconds, accuracy, "torch"


def run(batch_size, variants, rounds, lr, settle_seconds):
    """Time every variant ``rounds`` times, alternating; return {label: [seconds]}."""
    init = initial_weights(0)
    times = {variant.label: [] for variant in variants}
    accuracies = {variant.label: [] for variant in variants}
    loops = {}
    for variant in variants:  # warm-up, not timed
        variant.epoch(init, lr, ORDER_SEED - 1, batch_size)
    for r in range(rounds):
        turn = variants[r % len(variants):] + variants[:r % len(variants)]
        for variant in turn:
            settle(settle_seconds)
            seconds, accuracy, loop = variant.epoch(init, lr, ORDER_SEED + r, batch_size)
            times[variant.label].append(seconds)
            accuracies[variant.label].append(accuracy)
            loops[variant.label] = loop
            print(f"  batch {batch_size} round {r + 1}: {variant.label} {seconds:.3f} s",
                  file=sys.stderr)
    return times, accuracies, loops


def report(batch_size, times, accuracies, loops):
    base = times["compiled"]
    print(f"\n### batch {batch_size}\n")
    print("| variant | loop | median s | min s | time / compiled (paired median) "
          "| test accuracy |")
    print("|---|---|---|---|---|---|")
    for label, samples in times.items():
        ratios = [s / b for s, b in zip(samples, base)]
        print(f"| {label} | {loops[label]} | {statistics.median(samples):.3f} "
              f"| {min(samples):.3f} | {statistics.median(ratios):.2f} "
              f"| {100 * statistics.median(accuracies[label]):.2f} % |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--settle", type=float, default=0.3)
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    args = parser.parse_args(argv)
    data = load_data()
    variants = [NumrecVariant(data, "compiled", False),
                NumrecVariant(data, "python-act", True),
                NumrecVariant(data, "python-act, fused=False", True, fused=False)]
    note = RUNNERS["torch"].missing()
    if not args.no_torch and note is None:
        data.add_floats()
        variants.append(TorchVariant(data))
    elif not args.no_torch:
        print(f"PyTorch left out: {note}", file=sys.stderr)
    print(f"numrec {numrec.__version__}; one epoch of 60000 + test pass of 10000, "
          f"float32, lr {args.lr}, {args.rounds} rounds")
    for batch_size in args.batch_sizes:
        report(batch_size, *run(batch_size, variants, args.rounds, args.lr, args.settle))
    return 0


if __name__ == "__main__":
    sys.exit(main())

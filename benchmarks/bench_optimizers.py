"""The compiled optimizers' steps, level by level, and what they cost an epoch.

Two tables:

* **steps**: each step (``SGD``, ``SGD`` with momentum, the classic momentum, ``Adam``)
  on one parameter of 268 000 float32 entries (a thread's share of the 784-512-256-10
  network) through ``Optimizer.step``, at every kernel level of the steps
  (``numrec._core._optimizers._step_kernel_level``); nanoseconds an entry, medians of
  thread CPU times.  The levels give the same bits (``_steps.h``): only their speed
  differs.
* **epochs**: whole ``fit`` epochs (training pass and test pass on MNIST, uint8
  pixels) of the reference network with ``SGD(0.05, momentum=0.9)`` at batch 32 and of
  the ``deep-adam`` network (784-512-256-10, ReLU, softmax cross-entropy, Adam, batch
  128), alternating within each round: the steps at the portable level against the
  highest one.  Each variant keeps a model of its own, and the final weights of both
  variants must be the same bits.

    python benchmarks/bench_optimizers.py               # both tables
    python benchmarks/bench_optimizers.py --steps-only  # the first
    python benchmarks/bench_optimizers.py --quick       # a smoke test

Progress goes to stderr, the report (Markdown) to stdout.  Nothing here asserts on time.
"""
import argparse
import statistics
import sys
import time

import numpy as np

import numrec
from numrec._core import _optimizers

STEP_ENTRIES = 268_000
STEPS = {
    "SGD": lambda: numrec.SGD(0.01),
    "SGD, momentum 0.9": lambda: numrec.SGD(0.01, momentum=0.9),
    "SGD, classic momentum 0.99": lambda: numrec.SGD(0.01, momentum=0.99, classic=True),
    "Adam": lambda: numrec.Adam(1e-3),
}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def time_step(make, level, entries, repeats, inner):
    """Median thread CPU nanoseconds an entry of ``inner`` steps on ``entries`` values."""
    rng = np.random.default_rng(0)
    param = rng.standard_normal(entries).astype(np.float32)
    grad = (rng.standard_normal(entries) * 1e-3).astype(np.float32)
    optimizer = make()
    previous = _optimizers._step_kernel_level(level)
    try:
        optimizer.step([param], [grad])           # state allocated, caches warm
        times = []
        for _ in range(repeats):
            start = time.thread_time()
            for _ in range(inner):
                optimizer.step([param], [grad])
            times.append((time.thread_time() - start) / inner / entries * 1e9)
    finally:
        _optimizers._step_kernel_level(previous)
    return statistics.median(times)


def steps_table(levels, entries, repeats, inner):
    lines = ["| step | " + " | ".join(f"{name}, ns an entry" for name in levels)
             + " | portable / highest |",
             "|---|" + "---|" * (len(levels) + 1)]
    for label, make in STEPS.items():
        log(f"steps: {label}")
        figures = [time_step(make, level, entries, repeats, inner) for level in levels]
        lines.append(f"| {label} | " + " | ".join(f"{f:.2f}" for f in figures)
                     + f" | {figures[0] / figures[-1]:.2f}x |")
    return "\n".join(lines)


def reference_momentum():
    return numrec.mnist_mlp(seed=0), numrec.SGD(0.05, momentum=0.9), numrec.MSE(), 32


def deep_adam():
    from numrec.presets import PRESETS
    setup = PRESETS["seed-pytorch"].replace(hidden=(512, 256), optimizer_name="adam",
                                            lr=1e-3, batch_size=128, shuffle=True)
    return setup.model(seed=0), setup.optimizer(), setup.loss(), 128


NETWORKS = {"reference, SGD momentum 0.9, batch 32": reference_momentum,
            "deep-adam (784-512-256-10, Adam), batch 128": deep_adam}


def time_epochs(network, levels, data, rounds):
    """Median seconds of the epochs at each of the two step ``levels``, the median
    paired ratio (first over second), and whether both ended with the same weights."""
    (x, y), validation = data
    models = [network() for _ in levels]
    seconds = [[] for _ in levels]
    for r in range(rounds + 1):             # round 0 is a warm-up
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for i in order:
            model, optimizer, loss, batch = models[i]
            previous = _optimizers._step_kernel_level(levels[i])
            try:
                start = time.perf_counter()
                model.fit(x, y, epochs=1, batch_size=batch, loss=loss, optimizer=optimizer,
                          seed=r, validation_data=validation)
                if r:
                    seconds[i].append(time.perf_counter() - start)
            finally:
                _optimizers._step_kernel_level(previous)
    same = all(np.array_equal(a, b) for a, b in
               zip(models[0][0].parameters(), models[1][0].parameters()))
    ratio = statistics.median(a / b for a, b in zip(*seconds))
    return [statistics.median(s) for s in seconds], ratio, same


def epochs_table(data, rounds, highest):
    lines = [f"| network | portable steps, s | {highest} steps, s | portable / {highest} "
             "| same bits |", "|---|---|---|---|---|"]
    for label, network in NETWORKS.items():
        log(f"epochs: {label}")
        (first, second), ratio, same = time_epochs(network, ("portable", highest), data,
                                                   rounds)
        lines.append(f"| {label} | {first:.3f} | {second:.3f} | {ratio:.3f} | "
                     f"{'yes' if same else 'NO'} |")
    return "\n".join(lines)


def mnist(samples):
    from numrec.datasets import load_mnist
    (x, y), (x_test, y_test) = load_mnist(dtype=np.uint8)
    if samples:
        x, y, x_test, y_test = x[:samples], y[:samples], x_test[:samples], y_test[:samples]
    return (x, y), (x_test, y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="epoch rounds (default 5)")
    parser.add_argument("--steps-only", action="store_true", help="the steps' table alone")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: small parameter, 2000 images, one round")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    levels = _optimizers._step_kernel_levels()
    entries, repeats, inner = (20_000, 3, 5) if args.quick else (STEP_ENTRIES, 7, 50)
    print(f"# numrec's optimizer steps ({numrec.__version__})\n")
    print(f"Levels here: {', '.join(levels)}.  Steps on {entries} float32 entries, "
          f"{inner} steps a timing, medians of {repeats} (thread CPU time).\n")
    print(steps_table(levels, entries, repeats, inner))
    if args.steps_only:
        return 0
    rounds = 1 if args.quick else args.rounds
    data = mnist(2000 if args.quick else 0)
    print(f"\nEpochs (training pass + test pass), medians of {rounds} rounds after a warm-up, "
          "variants alternating:\n")
    print(epochs_table(data, rounds, levels[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

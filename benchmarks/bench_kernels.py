"""Matrix-product kernels on the shapes of training: numrec's own against BLAS, one thread.

For each batch size, times ``Dense.forward`` (``z = x W^T + b``) and ``Dense.backward``
(``g W`` and ``g^T x``) of the reference network's first layer (784 inputs) on one
thread's share of its units, once with numrec's own kernels and once with BLAS
(``_simd_kernels(False)``), alternating.  The backward pass computes the weight gradient
through BLAS either way (in training the own kernels fold it into the update), so its
column compares the input-gradient kernels, diluted by that common half.

BLAS runs with one thread (threadpoolctl), as it does inside the fused loop's shares;
figures are GFLOP/s from the median of several timings, with the large-matrix ``sgemm``
rate of one thread for scale.  numrec uses its own kernels for float32 batches of up to
128 rows on processors with AVX2 and FMA; elsewhere both columns are BLAS.

    python benchmarks/bench_kernels.py

With ``--levels``, it compares instead the kernel levels (``_kernel_level``) kernel by
kernel: forward, input gradient and folded update at batches of 32 and 128 on layers of
784x256, 784x512 and 1024x1024 (normal inputs), the kernels for mostly-zero inputs
on rows of MNIST, the sigmoid on 128 x 1024 entries, and an epoch of the reference network on MNIST (two threads).  Runs
of each level alternate; the figures are medians of those runs in CPU time (less
disturbed than the clock's on a loaded machine), and the ratio is the AVX2 time over
the AVX-512 time (above 1: AVX-512 is faster).

    python benchmarks/bench_kernels.py --levels

With ``--dense-inputs``, it times the first layer's forward pass and folded update on
one thread's share (128 units x 784 inputs) at batches of 32, 128 and 512, on MNIST
rows (19 % nonzero), on rows half zeros and on dense rows, three ways, alternating: the
kernels for zero inputs (which take blocks of four rows or columns on dense inputs),
numrec's own full-product kernels (up to 128 rows) and BLAS on one thread.  GFLOP/s
count the full product (also where zeros are skipped), from thread CPU times.

    python benchmarks/bench_kernels.py --dense-inputs

With ``--hidden``, it times a 512->256 hidden layer's kernels on ReLU outputs (about half
zeros), batches of 32 and 128: forward pass and folded update on one of two threads'
share of the units, and the gradient of the inputs (all units), on the kernels for zero
inputs, which train such layers at these batch sizes, against numrec's own full-product
kernels; then epochs of a 784-512-256-10 ReLU network with Adam at batch 128 on MNIST,
the hidden layer on either (``_training._hidden_layer_panels``), runs alternating.  Set
``NUMREC_KERNELS=avx2`` for the AVX2 level.

    python benchmarks/bench_kernels.py --hidden
"""
import argparse
import os
import statistics
import time

import numpy as np
from scipy.linalg.blas import sgemm
from threadpoolctl import threadpool_limits

import numrec
from numrec._core._layers import _kernel_level, _repeat_kernel, _simd_kernels


def gflops(flop, seconds):
    return flop / seconds / 1e9


def median_seconds(call, repeats, inner):
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            call()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def measure(rows, units, inputs, repeats):
    """GFLOP/s of forward and backward, own kernels and BLAS, for one shape."""
    rng = np.random.default_rng(0)
    layer = numrec.Dense(inputs, units, seed=rng)
    x = rng.random((rows, inputs), dtype=np.float32)
    g = rng.random((rows, units), dtype=np.float32)
    inner = max(1, 20000 // rows)
    flop = 2.0 * rows * units * inputs
    times = {}
    original = _simd_kernels()
    try:
        for _ in range(repeats):
            for own in (True, False):
                _simd_kernels(own)
                for name, call, products in (("forward", lambda: layer.forward(x), 1),
                                             ("backward", lambda: layer.backward(g), 2)):
                    layer.forward(x)
                    seconds = median_seconds(call, 1, inner)
                    times.setdefault((name, own), []).append(products * flop / seconds / 1e9)
    finally:
        _simd_kernels(original)
    return {key: statistics.median(values) for key, values in times.items()}


LEVEL_SHAPES = [(256, 784), (512, 784), (1024, 1024)]


def mnist_pixels():
    """MNIST's training images as uint8 rows (about 19 % of the entries nonzero) and
    their labels; random rows with as many zeros if the files are absent."""
    try:
        from numrec.datasets import load_mnist
        (x, y), _ = load_mnist(dtype=np.uint8)
        return np.ascontiguousarray(x.reshape(len(x), -1)), np.asarray(y, np.int64)
    except Exception:  # no copy of MNIST here
        rng = np.random.default_rng(0)
        x = rng.integers(1, 256, size=(60000, 784), dtype=np.uint8)
        x[rng.random(x.shape) < 0.81] = 0
        return x, rng.integers(0, 10, size=60000)


def time_epochs(x, y, levels, runs, threads=2):
    """Median seconds of one epoch of the reference network (batch 32, SGD, `threads`
    threads) at each level, runs alternating, in the process's CPU time (both threads'
    time, waits at the barriers included); and whether the levels' weights agreed."""
    times = {level: [] for level in levels}
    weights = {}
    for _ in range(runs):
        for level in levels:
            _kernel_level(level)
            model = numrec.mnist_mlp(seed=0)
            start = time.process_time()
            model.fit(x, y, epochs=1, batch_size=32, optimizer=numrec.SGD(0.5), seed=0,
                      threads=threads)
            times[level].append(time.process_time() - start)
            weights[level] = model.parameters()[0]
    same = all(np.array_equal(weights[levels[0]], w) for w in weights.values())
    return {level: statistics.median(values) for level, values in times.items()}, same


def time_levels(layer, kernel, x, g, levels, runs, target_seconds=0.05):
    """Median seconds per call of `kernel` at each level, runs of the levels alternating,
    in the thread's CPU time (time.thread_time), which a loaded machine disturbs far
    less than the time on the clock."""
    out = np.empty((len(x), layer.in_features if kernel == "input_grad" else layer.out_features),
                   dtype=np.float32)
    _repeat_kernel(kernel, layer, x, g, out, 3)
    start = time.thread_time()
    _repeat_kernel(kernel, layer, x, g, out, 10)
    inner = max(1, int(target_seconds / max((time.thread_time() - start) / 10, 1e-9)))
    times = {level: [] for level in levels}
    for _ in range(runs):
        for level in levels:
            _kernel_level(level)
            start = time.thread_time()
            _repeat_kernel(kernel, layer, x, g, out, inner)
            times[level].append((time.thread_time() - start) / inner)
    return {level: statistics.median(values) for level, values in times.items()}


def time_sigmoid(levels, runs, shape=(128, 1024), inner=100):
    """Median seconds (thread CPU time) of Sigmoid.forward on float32 `shape` at each
    level, runs alternating."""
    z = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 4
    sigmoid = numrec.Sigmoid()
    times = {level: [] for level in levels}
    for _ in range(runs):
        for level in levels:
            _kernel_level(level)
            start = time.thread_time()
            for _ in range(inner):
                sigmoid.forward(z)
            times[level].append((time.thread_time() - start) / inner)
    return {level: statistics.median(values) for level, values in times.items()}


def compare_levels(runs):
    """Print the table of --levels."""
    levels = ("avx2", "avx512")
    original = _kernel_level()
    try:
        _kernel_level("avx512")
    except ValueError as error:
        raise SystemExit(f"bench_kernels.py: {error}")
    print(f"numrec {numrec.__version__}; kernel levels avx2 against avx512, one thread; "
          f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)\n")
    print("CPU time per call (the epoch: of both threads), medians\n")
    print("| kernel | units x inputs | batch | avx2, us | avx512, us | avx2 / avx512 |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    pixels, labels = mnist_pixels()
    mnist = pixels[:128].astype(np.float32) / np.float32(255)
    try:
        for sparse in (False, True):
            for units, inputs in LEVEL_SHAPES if not sparse else LEVEL_SHAPES[:2]:
                layer = numrec.Dense(inputs, units, seed=1)
                if sparse and not layer._sparse_inputs(True):
                    continue
                for rows in (32, 128):
                    x = mnist[:rows] if sparse else rng.standard_normal((rows, inputs)).astype(np.float32)
                    g = rng.standard_normal((rows, units)).astype(np.float32) * 1e-3
                    for kernel in ("forward", "update") if sparse else ("forward", "input_grad", "update"):
                        t = time_levels(layer, kernel, x, g, levels, runs)
                        name = f"{'sparse ' if sparse else ''}{kernel}"
                        print(f"| {name} | {units}x{inputs}{' MNIST' if sparse else ''} | {rows} | "
                              f"{t['avx2'] * 1e6:.1f} | {t['avx512'] * 1e6:.1f} | "
                              f"{t['avx2'] / t['avx512']:.2f} |", flush=True)
                layer._sparse_inputs(False)
        t = time_sigmoid(levels, runs)
        print(f"| sigmoid | 1024 | 128 | {t['avx2'] * 1e6:.1f} | {t['avx512'] * 1e6:.1f} | "
              f"{t['avx2'] / t['avx512']:.2f} |", flush=True)
        t, same = time_epochs(pixels, labels, levels, max(3, runs // 2))
        print(f"| epoch, reference network, 2 threads | 784-256-10 MNIST | 32 | "
              f"{t['avx2'] * 1e6:.0f} | {t['avx512'] * 1e6:.0f} | {t['avx2'] / t['avx512']:.2f} |")
        print(f"\nthe epochs' weights at both levels: {'the same bits' if same else 'DIFFERENT'}")
    finally:
        _kernel_level(original)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


def time_ways(layer, kernel, x, g, ways, runs, target_seconds=0.05, out_width=None):
    """Median thread CPU seconds per call of `kernel` for each way of running the layer
    (a name -> function that sets it up), runs of the ways alternating; `out_width`: the
    columns of the kernel's output (default the layer's units)."""
    out = np.empty((len(x), out_width or layer.out_features), dtype=np.float32)
    times = {name: [] for name in ways}
    inner = {}
    for name, set_up in ways.items():
        set_up()
        _repeat_kernel(kernel, layer, x, g, out, 2)
        start = time.thread_time()
        _repeat_kernel(kernel, layer, x, g, out, 5)
        inner[name] = max(1, int(target_seconds / max((time.thread_time() - start) / 5, 1e-9)))
    for _ in range(runs):
        for name, set_up in ways.items():
            set_up()
            start = time.thread_time()
            _repeat_kernel(kernel, layer, x, g, out, inner[name])
            times[name].append((time.thread_time() - start) / inner[name])
    return {name: statistics.median(values) for name, values in times.items()}


def compare_dense_inputs(runs, units=128, inputs=784):
    """Print the table of --dense-inputs."""
    rng = np.random.default_rng(0)
    pixels, _ = mnist_pixels()
    rows = 512
    data = {"MNIST": pixels[:rows].astype(np.float32) / np.float32(255),
            "half zeros": (rng.standard_normal((rows, inputs))
                           * (rng.random((rows, inputs)) < 0.5)).astype(np.float32),
            "dense": rng.standard_normal((rows, inputs)).astype(np.float32)}
    layer = numrec.Dense(inputs, units, seed=1)
    original = _simd_kernels()
    if not original:
        raise SystemExit("bench_kernels.py: the kernels for zero inputs need AVX2 and FMA")

    def zero_inputs():
        _simd_kernels(True)
        layer._sparse_inputs(True)

    def full_product():
        layer._sparse_inputs(False)
        _simd_kernels(True)

    def blas():
        layer._sparse_inputs(False)
        _simd_kernels(False)

    print(f"numrec {numrec.__version__}, kernel level {_kernel_level()}; one thread, "
          f"{units} units x {inputs} inputs; load average {os.getloadavg()[0]:.2f}\n")
    print("GFLOP/s (2 x rows x units x inputs per call), medians of thread CPU times\n")
    print("| inputs | nonzero | batch | kernel | zero-input kernels | own full product | "
          "BLAS | zero-input over the faster other |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        with threadpool_limits(limits=1):
            for name, x_all in data.items():
                for m in (32, 128, 512):
                    x = np.ascontiguousarray(x_all[:m])
                    g = rng.standard_normal((m, units)).astype(np.float32) * 1e-3
                    ways = {"zero": zero_inputs, "blas": blas}
                    if m <= 128:
                        ways["own"] = full_product
                    flop = 2.0 * m * units * inputs
                    for kernel in ("forward", "update"):
                        t = time_ways(layer, kernel, x, g, ways, runs)
                        rate = {way: flop / seconds / 1e9 for way, seconds in t.items()}
                        other = min(seconds for way, seconds in t.items() if way != "zero")
                        own = f"{rate['own']:.1f}" if "own" in rate else "(BLAS)"
                        print(f"| {name} | {np.count_nonzero(x) / x.size:.0%} | {m} | {kernel} | "
                              f"{rate['zero']:.1f} | {own} | {rate['blas']:.1f} | "
                              f"{other / t['zero']:.2f} |", flush=True)
    finally:
        layer._sparse_inputs(False)
        _simd_kernels(original)


def compare_hidden(runs, inputs=512, units=256, threads=2, epochs=True):
    """Print the tables of --hidden (the epochs' unless ``epochs`` is False)."""
    rng = np.random.default_rng(0)
    original = _simd_kernels()
    if not original:
        raise SystemExit("bench_kernels.py: the kernels for zero inputs need AVX2 and FMA")
    share = numrec.Dense(inputs, units // threads, seed=1)  # one thread's units
    whole = numrec.Dense(inputs, units, seed=1)    # the input gradient reads every unit
    layers = (share, whole)

    def panels():
        for layer in layers:
            layer._sparse_inputs(True)

    def full_product():
        for layer in layers:
            layer._sparse_inputs(False)

    ways = {"panels": panels, "full": full_product}
    print(f"numrec {numrec.__version__}, kernel level {_kernel_level()}; one thread; "
          f"a {inputs}->{units} hidden layer after ReLU; load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print("GFLOP/s (2 x rows x units x inputs per call), medians of thread CPU times; "
          f"forward and update on one of {threads} threads' {units // threads} units, the "
          f"input gradient on all {units}\n")
    print("| batch | nonzero inputs | kernel | kernels for zero inputs | full product | "
          "ratio |")
    print("|---|---|---|---|---|---|")
    try:
        for m in (32, 128):
            x = np.maximum(rng.standard_normal((m, inputs)), 0).astype(np.float32)
            for kernel, layer in (("forward", share), ("update", share),
                                  ("input_grad", whole)):
                g = rng.standard_normal((m, layer.out_features)).astype(np.float32) * 1e-3
                t = time_ways(layer, kernel, x, g, ways, runs, out_width=(
                    inputs if kernel == "input_grad" else None))
                flop = 2.0 * m * layer.out_features * inputs
                print(f"| {m} | {np.count_nonzero(x) / x.size:.0%} | {kernel} | "
                      f"{flop / t['panels'] / 1e9:.1f} | {flop / t['full'] / 1e9:.1f} | "
                      f"{t['full'] / t['panels']:.2f} |", flush=True)
    finally:
        full_product()
    if epochs:
        compare_hidden_epochs(runs)


def compare_hidden_epochs(runs, threads=2):
    """Epochs of the deep-adam network (784-512-256-10, ReLU, softmax cross-entropy, Adam,
    batch 128, MNIST) with its hidden layer on the kernels for zero inputs and on the
    full products, runs alternating: wall seconds of fit's epoch (test pass included)."""
    from numrec._core._training import _hidden_layer_panels
    x, y = mnist_pixels()
    x_test, y_test = x[-10000:], y[-10000:]
    times = {True: [], False: []}
    accuracy = {}
    original = _hidden_layer_panels()
    try:
        for run in range(runs):
            for on in ((True, False) if run % 2 == 0 else (False, True)):
                _hidden_layer_panels(on)
                model = numrec.Sequential([
                    numrec.Dense(784, 512, seed=1), numrec.ReLU(),
                    numrec.Dense(512, 256, seed=2), numrec.ReLU(),
                    numrec.Dense(256, 10, seed=3)], loss=numrec.SoftmaxCrossEntropy())
                history = model.fit(x, y, epochs=1, batch_size=128,
                                    optimizer=numrec.Adam(1e-3), seed=run, threads=threads,
                                    validation_data=(x_test, y_test))
                times[on].append(history.seconds[0])
                accuracy.setdefault(on, []).append(history.val_accuracy[0])
    finally:
        _hidden_layer_panels(original)
    pairs = [off / on for on, off in zip(times[True], times[False])]
    print(f"\nEpochs of 784-512-256-10 ReLU + Adam, batch 128, {threads} threads, "
          f"{runs} runs alternating (wall seconds, test pass included):\n")
    print("| hidden layer | median s | fastest s | mean test accuracy |")
    print("|---|---|---|---|")
    for on, label in ((True, "kernels for zero inputs"), (False, "full products")):
        print(f"| {label} | {statistics.median(times[on]):.3f} | {min(times[on]):.3f} | "
              f"{statistics.mean(accuracy[on]):.4f} |")
    print(f"\nfull products / kernels for zero inputs, paired: median "
          f"{statistics.median(pairs):.3f} (" + ", ".join(f"{r:.3f}" for r in pairs) + ")")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--units", type=int, default=128,
                        help="units per thread: half of the 256 hidden units (default)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dense-inputs", action="store_true",
                        help="the kernels for zero inputs against the full products on "
                             "inputs of three densities")
    parser.add_argument("--levels", action="store_true",
                        help="compare the kernel levels avx2 and avx512 kernel by kernel")
    parser.add_argument("--hidden", action="store_true",
                        help="a hidden layer's kernels for zero inputs against the full "
                             "products, on ReLU outputs")
    args = parser.parse_args()
    if args.dense_inputs:
        compare_dense_inputs(args.repeats)
        return
    if args.hidden:
        compare_hidden(args.repeats)
        return
    if args.levels:
        with threadpool_limits(1, user_api="blas"):
            compare_levels(args.repeats)
        return
    own = _simd_kernels()
    print(f"numrec {numrec.__version__}; own AVX2 kernels: {'on' if own else 'off (BLAS only)'}")
    with threadpool_limits(1, user_api="blas"):
        big = np.random.default_rng(1).random((1024, 1024), dtype=np.float32)
        peak = gflops(2.0 * 1024 ** 3, median_seconds(lambda: sgemm(1.0, big, big), 5, 3))
        print(f"one-thread sgemm, 1024^3: {peak:.1f} GFLOP/s\n")
        print("| batch | forward, own | forward, BLAS | backward, own | backward, BLAS |")
        print("|---|---|---|---|---|")
        for rows in args.batch_sizes:
            r = measure(rows, args.units, 784, args.repeats)
            print(f"| {rows} | {r['forward', True]:.1f} | {r['forward', False]:.1f} | "
                  f"{r['backward', True]:.1f} | {r['backward', False]:.1f} |")


if __name__ == "__main__":
    main()

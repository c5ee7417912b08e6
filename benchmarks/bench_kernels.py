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
"""
import argparse
import statistics
import time

import numpy as np
from scipy.linalg.blas import sgemm
from threadpoolctl import threadpool_limits

import numrec
from numrec._core._layers import _simd_kernels


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--units", type=int, default=128,
                        help="units per thread: half of the 256 hidden units (default)")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
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

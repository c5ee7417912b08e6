"""Convolution layers, forward and backward: numrec's Conv2D against PyTorch's Conv2d.

For each convolution of the two MNIST networks -- the ``cnn`` preset's conv(1->16, 5x5)
on 28x28 images and conv(16->32, 5x5) on 12x12, the Keras example's conv(1->32, 3x3)
on 28x28 and conv(32->64, 3x3) on 26x26 -- and each batch size, times one forward pass and one
backward pass (input gradient and parameter gradients) in float32, numrec and PyTorch
alternating round by round, and prints the medians and GFLOP/s (a forward pass is
``2 * batch * out_channels * in_channels * kh * kw * H' * W'`` flops, a backward pass twice
that; the first layer's input gradient is computed as well, as in a layer that is not
first).

numrec's kernels run as the compiled loop calls them: on ``--threads`` threads that
share the samples for the forward pass and the input gradient and the output channels
for the parameter gradients (from the column matrices that the forward pass kept, while
they fit in 32 MB a layer), BLAS on one thread within each share; PyTorch runs with
``torch.set_num_threads(--threads)``.  Timings mean something only on a quiet machine:
the script prints the load average before and after.

    python benchmarks/bench_conv.py [--batches 64 256] [--rounds 15] [--threads 2]
"""
import argparse
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import numrec
from numrec._core._training import FusedTrainer

LAYERS = [("conv(1->16, 5x5) on 28x28", 1, 16, 5, 28),
          ("conv(16->32, 5x5) on 12x12", 16, 32, 5, 12),
          ("conv(1->32, 3x3) on 28x28", 1, 32, 3, 28),
          ("conv(32->64, 3x3) on 26x26", 32, 64, 3, 26)]


def flops(batch, c_in, c_out, kernel, side):
    out = side - kernel + 1
    return 2 * batch * c_out * c_in * kernel * kernel * out * out


def trainer_for(layer, batch, threads):
    """The compiled loop's runner of the layer alone, with dL/d input."""
    return FusedTrainer([(layer, None)], None, None, batch, np.float32, threads,
                        input_gradient=True)


def numrec_round(trainer, x, g):
    """Seconds of one forward and one backward pass through the compiled loop."""
    start = time.perf_counter()
    trainer.forward_input(x)
    middle = time.perf_counter()
    trainer.backward_batch(g, len(x))
    end = time.perf_counter()
    return middle - start, end - middle


def torch_round(torch, module, x, g):
    x = x.detach().requires_grad_()
    start = time.perf_counter()
    z = module(x)
    middle = time.perf_counter()
    z.backward(g)
    end = time.perf_counter()
    module.zero_grad(set_to_none=True)
    return middle - start, end - middle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    else:
        torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}")
    header = f"{'layer':28} {'batch':>5} {'who':>7} {'fwd ms':>8} {'bwd ms':>8} " \
             f"{'fwd GF/s':>9} {'bwd GF/s':>9}"
    print(header)
    rng = np.random.default_rng(0)
    for name, c_in, c_out, kernel, side in LAYERS:
        for batch in args.batches:
            layer = numrec.Conv2D(c_in, c_out, kernel, seed=1)
            layer.build((c_in, side, side))
            x = rng.standard_normal((batch, layer.in_features), dtype=np.float32)
            g = rng.standard_normal((batch, layer.out_features), dtype=np.float32)
            trainer = trainer_for(layer, batch, args.threads)
            times = {"numrec": [], "torch": []}
            if torch is not None:
                module = torch.nn.Conv2d(c_in, c_out, kernel)
                x_t = torch.from_numpy(x.reshape(batch, c_in, side, side))
                g_t = torch.from_numpy(g.reshape((batch,) + layer.output_shape))
            with threadpool_limits(limits=1, user_api="blas"):
                for round_ in range(args.rounds + 1):
                    numrec_times = numrec_round(trainer, x, g)
                    torch_times = (torch_round(torch, module, x_t, g_t)
                                   if torch is not None else None)
                    if round_ == 0:
                        continue  # warm-up
                    times["numrec"].append(numrec_times)
                    if torch_times is not None:
                        times["torch"].append(torch_times)
            work = flops(batch, c_in, c_out, kernel, side)
            for who, rounds in times.items():
                if not rounds:
                    continue
                forward = statistics.median(t[0] for t in rounds)
                backward = statistics.median(t[1] for t in rounds)
                print(f"{name:28} {batch:5d} {who:>7} {forward * 1e3:8.2f} "
                      f"{backward * 1e3:8.2f} {work / forward / 1e9:9.1f} "
                      f"{2 * work / backward / 1e9:9.1f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

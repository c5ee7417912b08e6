"""Inference side by side: numrec's ``predict`` against NumPy, PyTorch eager and JAX.

Two figures per network, with the same weights in every framework, in float32:

* **batch**: the outputs for the 10 000 MNIST test images in one call (the median of
  ``--calls-batch`` calls per round);
* **one sample**: the latency of one call on one image (the median of ``--calls``
  calls per round, cycling through 256 test images), as ``numrec predict`` and the
  draw-a-digit page call it.

Networks: ``reference`` (784-256-10, leaky ReLU, sigmoid outputs) and ``cnn`` (the
``cnn`` preset: conv 16 5x5, ReLU, max-pool 2, conv 32 5x5, ReLU, max-pool 2, dense
512-10, softmax of the logits as ``predict`` reports them).  Every framework gets the
float32 images in [0, 1] (numrec ``(n, 784)`` or ``(n, 1, 28, 28)`` rows, PyTorch and
JAX tensors made from the same NumPy array inside the timed call, the outputs returned
as NumPy arrays); numrec is timed a second time on the uint8 pixels as loaded
(``numrec-u8``).  PyTorch runs under ``torch.inference_mode()`` with
``torch.set_num_threads`` equal to numrec's threads (the cores this process may use);
JAX's functions are ``jax.jit``-compiled before timing.

Rounds alternate the frameworks, so that a change in the machine's load touches them
alike; the table gives each one's median over the rounds and the paired ratio to numrec
(its time over numrec's within a round, median over rounds: above 1, numrec is faster).

    python benchmarks/bench_predict.py                  # both networks, 5 rounds
    python benchmarks/bench_predict.py --networks reference --rounds 3 --calls 500

A script that prints figures: nothing here asserts on time.
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

import numpy as np

FRAMEWORKS = ("numrec", "numrec-u8", "numpy", "torch", "jax")
NETWORKS = ("reference", "cnn")
SAMPLES = 256  # the single-sample calls cycle through this many images


def threads():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_test_images():
    """The 10 000 MNIST test images, uint8 ``(n, 28, 28)``, and float32 in [0, 1]."""
    from numrec.datasets import load_mnist

    _, (x_test, _) = load_mnist(dtype=np.uint8)
    return x_test, x_test.astype(np.float32) / 255


def numrec_model(network):
    import numrec
    from numrec.presets import PRESETS

    return PRESETS[network].model(seed=0)


def layers_of(model):
    """The model as ``[(kind, params...)]`` for the peers: ("dense", W, b), ("conv", W,
    b), ("pool", size), ("flatten",), ("leaky", alpha), ("relu",), ("sigmoid",)."""
    spec = []
    for c in model.components:
        kind = type(c).__name__
        if kind == "Dense":
            spec.append(("dense", c.weights.copy(), c.bias.copy()))
        elif kind == "Conv2D":
            spec.append(("conv", c.weights.copy(), c.bias.copy()))
        elif kind == "MaxPool2D":
            spec.append(("pool", c.size[0]))
        elif kind == "Flatten":
            spec.append(("flatten",))
        elif kind == "LeakyReLU":
            spec.append(("leaky", c.alpha))
        elif kind == "ReLU":
            spec.append(("relu",))
        elif kind == "Sigmoid":
            spec.append(("sigmoid",))
        else:
            raise ValueError(f"no peer layer for {kind}")
    if type(model.loss).__name__ == "SoftmaxCrossEntropy":
        spec.append(("softmax",))
    return spec


# --- the frameworks ----------------------------------------------------------------------

class Numrec:
    def __init__(self, model, spec, image_shape, pixels):
        self.model, self.shape, self.pixels = model, image_shape, pixels

    def inputs(self, x_u8, x_f32):
        x = x_u8 if self.pixels else x_f32
        return x.reshape(len(x), *self.shape)

    def __call__(self, x):
        return self.model.predict(x)


class Numpy:
    def __init__(self, model, spec, image_shape, pixels=False):
        self.spec, self.shape = spec, image_shape

    def inputs(self, x_u8, x_f32):
        return x_f32.reshape(len(x_f32), *self.shape)

    def __call__(self, x):
        if len(x) > 1000:
            return np.concatenate([self(x[i:i + 1000]) for i in range(0, len(x), 1000)])
        for layer in self.spec:
            kind = layer[0]
            if kind == "dense":
                x = x.reshape(len(x), -1) @ layer[1].T + layer[2]
            elif kind == "conv":
                w, b = layer[1], layer[2]
                k = w.shape[2]
                patches = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
                x = np.einsum("nchwij,ocij->nohw", patches, w, optimize=True)
                x += b[None, :, None, None]
            elif kind == "pool":
                s = layer[1]
                n, c, h, w = x.shape
                x = x[:, :, :h // s * s, :w // s * s].reshape(n, c, h // s, s, w // s, s)
                x = x.max(axis=(3, 5))
            elif kind == "flatten":
                x = x.reshape(len(x), -1)
            elif kind == "leaky":
                x = np.where(x > 0, x, np.float32(layer[1]) * x)
            elif kind == "relu":
                x = np.maximum(x, 0)
            elif kind == "sigmoid":
                x = 1 / (1 + np.exp(-x))
            elif kind == "softmax":
                e = np.exp(x - x.max(axis=1, keepdims=True))
                x = e / e.sum(axis=1, keepdims=True)
        return x


class Torch:
    def __init__(self, model, spec, image_shape, pixels=False):
        import torch

        torch.set_num_threads(threads())
        self.torch, self.shape = torch, image_shape
        layers = []
        for layer in spec:
            kind = layer[0]
            if kind in ("dense", "conv"):
                w, b = layer[1], layer[2]
                module = (torch.nn.Linear(w.shape[1], w.shape[0]) if kind == "dense"
                          else torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2]))
                with torch.no_grad():
                    module.weight.copy_(torch.from_numpy(w))
                    module.bias.copy_(torch.from_numpy(b))
                layers.append(module)
            elif kind == "pool":
                layers.append(torch.nn.MaxPool2d(layer[1]))
            elif kind == "flatten":
                layers.append(torch.nn.Flatten())
            elif kind == "leaky":
                layers.append(torch.nn.LeakyReLU(layer[1]))
            elif kind == "relu":
                layers.append(torch.nn.ReLU())
            elif kind == "sigmoid":
                layers.append(torch.nn.Sigmoid())
            elif kind == "softmax":
                layers.append(torch.nn.Softmax(dim=1))
        self.net = torch.nn.Sequential(*layers).eval()

    def inputs(self, x_u8, x_f32):
        return x_f32.reshape(len(x_f32), *self.shape)

    def __call__(self, x):
        with self.torch.inference_mode():
            return self.net(self.torch.from_numpy(x)).numpy()


class Jax:
    def __init__(self, model, spec, image_shape, pixels=False):
        import jax
        import jax.numpy as jnp

        self.jnp, self.shape = jnp, image_shape
        params = [(jnp.asarray(layer[1]), jnp.asarray(layer[2])) if layer[0] in ("dense", "conv")
                  else None for layer in spec]

        def forward(params, x):
            for layer, p in zip(spec, params):
                kind = layer[0]
                if kind == "dense":
                    x = x.reshape(x.shape[0], -1) @ p[0].T + p[1]
                elif kind == "conv":
                    x = jax.lax.conv_general_dilated(x, p[0], (1, 1), "VALID",
                                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
                    x = x + p[1][None, :, None, None]
                elif kind == "pool":
                    s = layer[1]
                    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, s, s),
                                              (1, 1, s, s), "VALID")
                elif kind == "flatten":
                    x = x.reshape(x.shape[0], -1)
                elif kind == "leaky":
                    x = jnp.where(x > 0, x, layer[1] * x)
                elif kind == "relu":
                    x = jax.nn.relu(x)
                elif kind == "sigmoid":
                    x = jax.nn.sigmoid(x)
                elif kind == "softmax":
                    x = jax.nn.softmax(x, axis=1)
            return x

        self.params = params
        self.forward = jax.jit(forward)

    def inputs(self, x_u8, x_f32):
        return x_f32.reshape(len(x_f32), *self.shape)

    def __call__(self, x):
        return np.asarray(self.forward(self.params, x))


RUNNERS = {"numrec": (Numrec, False), "numrec-u8": (Numrec, True), "numpy": (Numpy, False),
           "torch": (Torch, False), "jax": (Jax, False)}
MODULES = {"torch": "torch", "jax": "jax"}


# --- measuring ---------------------------------------------------------------------------

def batch_seconds(run, x, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sample_seconds(run, samples, calls):
    times = []
    for i in range(calls):
        x = samples[i % len(samples)]
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(network, frameworks, args, x_u8, x_f32):
    model = numrec_model(network)
    spec = layers_of(model)
    shape = model.input_shape
    runners, batches, singles = {}, {}, {}
    for name in frameworks:
        kind, pixels = RUNNERS[name]
        runner = kind(model, spec, shape, pixels)
        x = runner.inputs(x_u8, x_f32)
        runners[name] = runner
        batches[name] = x
        singles[name] = [x[i:i + 1].copy() for i in range(SAMPLES)]
        runner(x)  # warm-up: JAX compiles, the engines are made
        runner(singles[name][0])
    check_outputs(runners, batches)
    rounds = {name: ([], []) for name in frameworks}
    for _ in range(args.rounds):
        for name in frameworks:
            rounds[name][0].append(batch_seconds(runners[name], batches[name], args.calls_batch))
            rounds[name][1].append(sample_seconds(runners[name], singles[name], args.calls))
    return rounds


def check_outputs(runners, batches):
    """Every framework's outputs agree with numrec's on the first 1000 images."""
    reference = runners["numrec"](batches["numrec"][:1000]) if "numrec" in runners else None
    if reference is None:
        return
    for name, runner in runners.items():
        out = runner(batches[name][:1000])
        gap = float(np.max(np.abs(out - reference)))
        if gap > 1e-4:
            print(f"warning: {name}'s outputs differ from numrec's by {gap:.2e}",
                  file=sys.stderr)


def table(network, rounds):
    lines = [f"\n{network}: predict of 10 000 test images and of one image "
             f"(medians of {len(next(iter(rounds.values()))[0])} rounds)",
             "| framework | 10 000 images ms | ratio to numrec | one image us | ratio to numrec |",
             "|---|---|---|---|---|"]
    base = rounds.get("numrec")
    for name, (batch, single) in rounds.items():
        if base is None:
            ratios = ("", "")
        else:
            ratios = tuple(f"{statistics.median(t / b for t, b in zip(times, base_times)):.2f}"
                           for times, base_times in ((batch, base[0]), (single, base[1])))
        lines.append(f"| {name} | {1e3 * statistics.median(batch):.2f} | {ratios[0]} | "
                     f"{1e6 * statistics.median(single):.1f} | {ratios[1]} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000,
                        help="single-image calls per framework and round (default 2000)")
    parser.add_argument("--calls-batch", type=int, default=5,
                        help="10 000-image calls per framework and round (default 5)")
    args = parser.parse_args(argv)
    frameworks = []
    for name in args.frameworks:
        module = MODULES.get(name)
        if module and importlib.util.find_spec(module) is None:
            print(f"skipping {name}: {module} is not installed", file=sys.stderr)
        else:
            frameworks.append(name)
    x_u8, x_f32 = load_test_images()
    print(f"threads: {threads()} (numrec's engine, PyTorch's set_num_threads); "
          f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for network in args.networks:
        print(table(network, measure(network, frameworks, args, x_u8, x_f32)), flush=True)
    print(f"load at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()

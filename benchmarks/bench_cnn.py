"""A convolutional network trained one epoch at a time in numrec, PyTorch eager and JAX.

Every framework trains the same network from the same initial weights on the same batch
order, with softmax cross-entropy and Adam (learning rate 0.001), in float32:

* ``small`` (default): conv(1→16, 5x5) ReLU, max-pool 2, conv(16→32, 5x5) ReLU,
  max-pool 2, flatten, dense 512→10;
* ``keras``: conv(1→32, 3x3) ReLU, conv(32→64, 3x3) ReLU, max-pool 2, flatten, dense
  9216→128 ReLU, dense 10 (the Keras MNIST example without its dropout, which no two
  frameworks draw alike).

One epoch is a pass over the training images (``--samples`` of them) and one over the
test images (with ``--train-only``, the training pass alone); rounds alternate between the frameworks so that a change in the machine's
load touches them alike.  The table gives each framework's median seconds per epoch and
the median of the per-round ratios to numrec (paired), then, with ``--to-target``, the
epochs and seconds each took to exceed 99 % test accuracy from each of ``--target-seeds``
initial weights and batch orders (the frameworks part with float32 rounding, so one
seed's epoch count is partly chance: read the medians), and each framework's peak
memory (resident set, measured in a child process of its own).  PyTorch runs with
``torch.set_num_threads(--threads)``, numrec with ``threads=--threads``.

    python benchmarks/bench_cnn.py                      # batch 64 and 256, 3 rounds
    python benchmarks/bench_cnn.py --samples 6000 --rounds 2 --skip-memory
    python benchmarks/bench_cnn.py --to-target --batch-sizes 64 --frameworks numrec torch
    python benchmarks/bench_cnn.py --samples 6000 --train-only --skip-memory
"""
import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

NETWORKS = {
    # (convolutions (out_channels, kernel, pool after), dense hidden widths)
    "small": ([(16, 5, True), (32, 5, True)], []),
    "keras": ([(32, 3, False), (64, 3, True)], [128]),
}
FRAMEWORKS = ("numrec", "torch", "jax")


def load_data(n_train=60000):
    """The first ``n_train`` training images and the test images, float32 in [0, 1]."""
    from numrec.datasets import load_mnist

    (x, y), (x_test, y_test) = load_mnist(dtype=np.uint8)
    scale = np.float32(1 / 255)
    x, y = x[:n_train], y[:n_train]
    return ((x.reshape(-1, 1, 28, 28) * scale, y.astype(np.int64)),
            (x_test.reshape(-1, 1, 28, 28) * scale, y_test.astype(np.int64)))


def initial_weights(network, seed=0):
    """He-normal weights in PyTorch's layouts: conv ``(out, in, k, k)``, dense ``(out, in)``."""
    rng = np.random.default_rng(seed)
    convs, hidden = NETWORKS[network]
    weights, channels, size = [], 1, 28
    for n_out, k, pool in convs:
        fan_in = channels * k * k
        weights.append(("conv", (rng.standard_normal((n_out, channels, k, k))
                                 * np.sqrt(2 / fan_in)).astype(np.float32),
                        np.zeros(n_out, np.float32), pool))
        channels, size = n_out, size - k + 1
        size = size // 2 if pool else size
    width = channels * size * size
    for n_out in [*hidden, 10]:
        weights.append(("dense", (rng.standard_normal((n_out, width))
                                  * np.sqrt(2 / width)).astype(np.float32),
                        np.zeros(n_out, np.float32), False))
        width = n_out
    return weights


def flops_per_sample(network):
    """Multiply-adds ×2 of one forward pass; training is about 3 times that."""
    total, channels, size = 0, 1, 28
    convs, hidden = NETWORKS[network]
    for n_out, k, pool in convs:
        size = size - k + 1
        total += 2 * n_out * channels * k * k * size * size
        channels, size = n_out, size // 2 if pool else size
    width = channels * size * size
    for n_out in [*hidden, 10]:
        total += 2 * width * n_out
        width = n_out
    return total


# --- the frameworks --------------------------------------------------------------------------

class NumrecRunner:
    def __init__(self, network, threads, seed=0):
        import numrec

        self.numrec, self.threads = numrec, threads
        components = []
        for kind, w, b, pool in initial_weights(network, seed):
            if kind == "conv":
                layer = numrec.Conv2D(w.shape[1], w.shape[0], w.shape[2])
                layer.weights, layer.bias = w, b
                components += [layer, numrec.ReLU()] + ([numrec.MaxPool2D(2)] if pool else [])
            else:
                if not any(isinstance(c, numrec.Flatten) for c in components):
                    components.append(numrec.Flatten())
                layer = numrec.Dense(w.shape[1], w.shape[0])
                layer.weights, layer.bias = w, b
                components += [layer, numrec.ReLU()]
        components.pop()  # logits
        self.model = numrec.Sequential(components, loss=numrec.SoftmaxCrossEntropy(),
                                       input_shape=(1, 28, 28))
        self.optimizer = numrec.Adam(0.001)
        self._ordered = None

    def _in_order(self, x, y, order):
        """``x[order], y[order]``, gathered into buffers that every epoch reuses (as
        PyTorch's runner gathers each batch into memory its allocator reuses): a fresh
        188 MB array per epoch would time the kernel's page faults, not numrec."""
        if self._ordered is None or self._ordered[0].shape != x.shape:
            self._ordered = np.empty_like(x), np.empty_like(y)
        bx, by = self._ordered[0][:len(order)], self._ordered[1][:len(order)]
        np.take(x, order, axis=0, out=bx, mode="clip")  # ("clip" skips a bounds pass)
        np.take(y, order, axis=0, out=by, mode="clip")
        return bx, by

    def epoch(self, x, y, x_test, y_test, order, batch_size):
        x, y = self._in_order(x, y, order)
        self.model.fit(x, y, epochs=1, batch_size=batch_size,
                       optimizer=self.optimizer, shuffle=False, threads=self.threads)
        if x_test is None:
            return float("nan")
        return float(np.mean(self.model.predict_classes(x_test, batch_size=1000) == y_test))


class TorchRunner:
    def __init__(self, network, threads, seed=0):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        layers, flat = [], False
        for kind, w, b, pool in initial_weights(network, seed):
            if kind == "conv":
                conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2])
                layers += [conv, torch.nn.ReLU()] + ([torch.nn.MaxPool2d(2)] if pool else [])
            else:
                if not flat:
                    layers.append(torch.nn.Flatten())
                    flat = True
                conv = torch.nn.Linear(w.shape[1], w.shape[0])
                layers += [conv, torch.nn.ReLU()]
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(b))
        self.model = torch.nn.Sequential(*layers[:-1])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.001)
        self.loss = torch.nn.CrossEntropyLoss()

    def epoch(self, x, y, x_test, y_test, order, batch_size):
        torch = self.torch
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        self.model.train()
        for start in range(0, len(order), batch_size):
            rows = torch.from_numpy(order[start:start + batch_size])
            self.optimizer.zero_grad()
            self.loss(self.model(x[rows]), y[rows]).backward()
            self.optimizer.step()
        if x_test is None:
            return float("nan")
        self.model.eval()
        with torch.no_grad():
            predicted = torch.cat([self.model(torch.from_numpy(x_test[i:i + 1000])).argmax(1)
                                   for i in range(0, len(x_test), 1000)])
        return float((predicted.numpy() == y_test).mean())


class JaxRunner:
    def __init__(self, network, threads, seed=0):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        spec = initial_weights(network, seed)
        self.params = [(jnp.asarray(w), jnp.asarray(b)) for _, w, b, _ in spec]
        kinds = [(kind, pool) for kind, _, _, pool in spec]

        def loss(params, x, y):
            logits = forward_logits(params, x)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

        def forward_logits(params, x):
            last = len(kinds) - 1
            for index, ((kind, pool), (w, b)) in enumerate(zip(kinds, params)):
                if kind == "conv":
                    x = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
                    x = jax.nn.relu(x + b[None, :, None, None])
                    if pool:
                        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2),
                                                  (1, 1, 2, 2), "VALID")
                else:
                    x = x.reshape(x.shape[0], -1) @ w.T + b
                    if index < last:
                        x = jax.nn.relu(x)
            return x

        def step(params, m, v, t, x, y):
            grads = jax.grad(loss)(params, x, y)
            b1, b2, lr, eps = 0.9, 0.999, 0.001, 1e-8
            m = jax.tree_util.tree_map(lambda a, g: b1 * a + (1 - b1) * g, m, grads)
            v = jax.tree_util.tree_map(lambda a, g: b2 * a + (1 - b2) * g * g, v, grads)
            correction = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            params = jax.tree_util.tree_map(
                lambda p, a, s: p - lr * correction * a / (jnp.sqrt(s) + eps), params, m, v)
            return params, m, v

        self.step = jax.jit(step)
        self.predict = jax.jit(lambda params, x: forward_logits(params, x).argmax(1))
        zeros = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.m, self.v, self.t = zeros, zeros, 0

    def epoch(self, x, y, x_test, y_test, order, batch_size):
        jnp = self.jnp
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            self.t += 1
            self.params, self.m, self.v = self.step(self.params, self.m, self.v,
                                                    jnp.float32(self.t), x[rows], y[rows])
        if x_test is None:
            self.jax.block_until_ready(self.params)
            return float("nan")
        predicted = np.concatenate([np.asarray(self.predict(self.params, x_test[i:i + 1000]))
                                    for i in range(0, len(x_test), 1000)])
        return float((predicted == y_test).mean())


RUNNERS = {"numrec": NumrecRunner, "torch": TorchRunner, "jax": JaxRunner}
MODULES = {"numrec": "numrec", "torch": "torch", "jax": "jax"}


# --- measuring -------------------------------------------------------------------------------

def timed_epochs(args, data, batch_size, log):
    """Per framework, the seconds of each round's epoch (rounds alternate frameworks)."""
    (x, y), (x_test, y_test) = data
    x, y = x[:args.samples], y[:args.samples]
    test = (None, None) if args.train_only else (x_test, y_test)
    runners = {name: RUNNERS[name](args.network, args.threads) for name in args.frameworks}
    for name, runner in runners.items():  # a warm-up epoch on a few batches (JAX compiles)
        runner.epoch(x, y, x_test[:1000], y_test[:1000], np.arange(4 * batch_size), batch_size)
    seconds = {name: [] for name in runners}
    accuracy = {}
    for round_number in range(args.rounds):
        order = np.random.default_rng(round_number).permutation(len(x))
        names = list(runners) if round_number % 2 == 0 else list(runners)[::-1]
        for name in names:
            start = time.perf_counter()
            accuracy[name] = runners[name].epoch(x, y, *test, order, batch_size)
            seconds[name].append(time.perf_counter() - start)
            tested = "" if args.train_only else f", test accuracy {100 * accuracy[name]:.2f} %"
            log(f"batch {batch_size} round {round_number + 1} {name}: "
                f"{seconds[name][-1]:.2f} s{tested}")
    return seconds, accuracy


def to_target(args, data, batch_size, name, log, seed=0, target=0.99, max_epochs=15):
    """Epochs and seconds until test accuracy exceeds ``target``, or None, from the
    initial weights of ``seed`` and its batch orders."""
    (x, y), (x_test, y_test) = data
    runner, total = RUNNERS[name](args.network, args.threads, seed), 0.0
    for epoch in range(1, max_epochs + 1):
        order = np.random.default_rng((seed, 100 + epoch)).permutation(len(x))
        start = time.perf_counter()
        accuracy = runner.epoch(x, y, x_test, y_test, order, batch_size)
        total += time.perf_counter() - start
        log(f"to 99 %: {name} batch {batch_size} seed {seed} epoch {epoch}: "
            f"{100 * accuracy:.2f} %, {total:.1f} s")
        if accuracy > target:
            return epoch, total
    return None


def targets_over_seeds(args, data, batch_size, log):
    """Per framework, :func:`to_target` for each of ``args.target_seeds`` seeds; the
    frameworks alternate within each seed, as the epoch rounds do."""
    reached = {name: [] for name in args.frameworks}
    for seed in range(args.target_seeds):
        names = args.frameworks if seed % 2 == 0 else args.frameworks[::-1]
        for name in names:
            reached[name].append(to_target(args, data, batch_size, name, log, seed))
    return reached


def print_targets(reached):
    """Each framework's epochs and seconds per seed, their medians, and the median over
    seeds of the seconds' ratio to numrec's (a seed missing the target counts as
    infinitely slow)."""
    seconds = {name: [r[1] if r else float("inf") for r in runs]
               for name, runs in reached.items()}
    for name, runs in reached.items():
        text = ", ".join(f"{r[0]} epochs {r[1]:.1f} s" if r else "not within 15 epochs"
                         for r in runs)
        epochs = statistics.median(r[0] if r else float("inf") for r in runs)
        ratio = (statistics.median(a / b for a, b in zip(seconds[name], seconds["numrec"]))
                 if "numrec" in seconds else float("nan"))
        print(f"  to 99 %: {name:<7} median {statistics.median(seconds[name]):6.1f} s, "
              f"{epochs:g} epochs, x{ratio:5.2f}   ({text})")


def peak_memory(args, name, batch_size):
    """Peak resident megabytes of a child process that trains one epoch of ``name``."""
    command = [sys.executable, __file__, "--child", name, "--network", args.network,
               "--samples", str(min(args.samples, 4096)), "--batch-sizes", str(batch_size),
               "--threads", str(args.threads)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(result.stdout.split()[-1])


def child(args):
    data = load_data(args.samples)
    (x, y), (x_test, y_test) = data
    runner = RUNNERS[args.child](args.network, args.threads)
    runner.epoch(x[:args.samples], y[:args.samples], x_test, y_test,
                 np.arange(args.samples), args.batch_sizes[0])
    print(_peak_megabytes())


def _peak_megabytes():
    """This process's peak resident memory: VmHWM (ru_maxrss would count the parent's
    memory at the fork, which Linux keeps across exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=list(NETWORKS), default="small")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--samples", type=int, default=60000,
                        help="training images per epoch (default all 60000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-only", action="store_true",
                        help="time the training pass alone, without the test pass")
    parser.add_argument("--to-target", action="store_true",
                        help="also train each framework until test accuracy exceeds 99 %%")
    parser.add_argument("--target-seeds", type=int, default=3,
                        help="initial weights and batch orders to train to 99 %% from "
                             "(with --to-target; default 3)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    missing = [name for name in args.frameworks
               if importlib.util.find_spec(MODULES[name]) is None]
    args.frameworks = [name for name in args.frameworks if name not in missing]

    def log(text):
        print(text, file=sys.stderr, flush=True)

    print(f"network {args.network}: {flops_per_sample(args.network) / 1e6:.1f} MFLOP per "
          f"sample forward; {args.samples} training images per epoch; threads "
          f"{args.threads}; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if missing:
        print(f"not installed: {', '.join(missing)}")
    data = load_data(args.samples)
    results = {}
    for batch_size in args.batch_sizes:
        seconds, accuracy = timed_epochs(args, data, batch_size, log)
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        ratios = {name: statistics.median(a / b for a, b in zip(values, seconds["numrec"]))
                  for name, values in seconds.items()} if "numrec" in seconds else {}
        # Training about 3 forward passes per image, then a forward pass per test image.
        tested = 0 if args.train_only else len(data[1][0])
        flops = flops_per_sample(args.network) * (3 * args.samples + tested)
        passes = "training pass" if args.train_only else "training + test pass"
        print(f"\nbatch {batch_size}: median seconds per epoch over {args.rounds} rounds "
              f"({passes}), paired ratio to numrec, GFLOP/s")
        for name in seconds:
            tested = ("" if args.train_only
                      else f"   last accuracy {100 * accuracy[name]:.2f} %")
            print(f"  {name:<7} {medians[name]:8.2f} s   x{ratios.get(name, float('nan')):5.2f}"
                  f"   {flops / medians[name] / 1e9:6.1f}{tested}")
        results[batch_size] = {"seconds": seconds, "median": medians, "ratio": ratios}
        if args.to_target:
            reached = targets_over_seeds(args, data, batch_size, log)
            print_targets(reached)
            results[batch_size]["to_target"] = reached
        if not args.skip_memory:
            for name in args.frameworks:
                megabytes = peak_memory(args, name, batch_size)
                print(f"  peak memory: {name:<7} {megabytes:7.0f} MB (one epoch of at most "
                      f"4096 images and the test pass, in a process of its own)")
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""numrec against PyTorch eager and JAX on several networks: the presets and a deeper one.

Each configuration is a :class:`numrec.presets.Setup`; every runner trains that network
from the SAME initial weights (drawn by numrec, copied into the peers), on the same batch
order, with the same loss formula and optimizer, in float32, on MNIST (pixels / 255):

* ``reference``: 784-256-10, leaky ReLU 0.2, sigmoid, quadratic cost, SGD lr 0.75, batch 32;
* ``seed-rust``: 784-256-10, leaky ReLU 0.2, softmax + categorical cross-entropy, SGD lr
  0.8, batch 512;
* ``seed-pytorch``: 784-256-10, ReLU, cross-entropy on the logits, SGD lr 0.1, batch 512,
  no shuffling;
* ``deep-adam``: 784-512-256-10, ReLU, cross-entropy on the logits, Adam lr 1e-3, batch 128.

Two measurements per configuration:

* seconds per epoch (a training pass over the 60000 images + a test pass over the 10000):
  one untimed warm-up epoch per runner, then rounds in which the runners take turns;
  medians per runner, and the paired ratio fastest peer / numrec (per round, median);
* time to > 96 % test accuracy (checked after every epoch): seconds and epochs, medians
  over repeats, and the ratio fastest peer / numrec.

    python benchmarks/bench_presets.py                             # everything
    python benchmarks/bench_presets.py --configs reference --quick # a smoke test

A configuration whose numrec components are missing (an older numrec) is skipped with a
note.  Progress goes to stderr, the report (Markdown) to stdout.  Nothing here asserts
on time.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import (  # noqa: E402  (the helper modules sit beside this script)
    ENV_VARS, SETTLE_SECONDS, blas_info, fmt, load_data, machine_header, settle, table,
)
from frameworks import JaxRunner, Runner, TorchRunner  # noqa: E402

CONFIGS = ("reference", "seed-rust", "seed-pytorch", "deep-adam")
PEERS = ("torch", "jax")
TARGET_ACCURACY = 0.96
INIT_SEED = 0
ORDER_SEED = 1000          # round r of the per-epoch runs uses ORDER_SEED + r
TARGET_ORDER_SEED = 2000   # the time-to-96 % runs: fit(seed=TARGET_ORDER_SEED)'s orders
AGREEMENT_POINTS = 1.0     # first-epoch accuracies must agree with numrec's this closely
#: numrec.CrossEntropy's epsilon inside the logarithm, when the loss does not say.
CROSS_ENTROPY_EPS = 1e-7
#: PyTorch's defaults (Adam, AdamW), which numrec's optimizers follow.
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 1e-2}


def setups(names):
    """The Setup of each configuration name."""
    from numrec.presets import PRESETS
    found = {}
    for name in names:
        if name == "deep-adam":
            found[name] = PRESETS["seed-pytorch"].replace(
                hidden=(512, 256), optimizer_name="adam", lr=1e-3, batch_size=128,
                shuffle=True)
        else:
            found[name] = PRESETS[name]
    return found


def numrec_problem(setup):
    """Why numrec cannot build this setup (a missing component), or None."""
    try:
        setup.model(seed=INIT_SEED)
        setup.loss()
        setup.optimizer()
    except AttributeError as error:     # presets look the classes up on numrec
        return f"numrec lacks a component: {error}"
    return None


def initial_weights(setup):
    """``[(W, b), ...]`` of the numrec model ``setup.model(seed=INIT_SEED)``, float32."""
    import numrec
    model = setup.model(seed=INIT_SEED)
    return [(np.array(c.weights), np.array(c.bias)) for c in model.components
            if isinstance(c, numrec.Dense)]


def epoch_orders(setup, seed, epochs, n):
    """The sample orders ``fit(seed=seed, shuffle=setup.shuffle)`` visits, epoch by epoch."""
    if not setup.shuffle:
        return [np.arange(n) for _ in range(epochs)]
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(epochs)]


def optimizer_settings(setup):
    """(betas, weight decay) with PyTorch's defaults filled in."""
    betas = tuple(setup.betas) if setup.betas is not None else ADAM_BETAS
    decay = (setup.weight_decay if setup.weight_decay is not None
             else DEFAULT_WEIGHT_DECAY[setup.optimizer_name])
    return betas, float(decay)


def cross_entropy_eps(setup):
    """The epsilon of numrec's CrossEntropy (its ``eps`` if it says), for the peers."""
    try:
        return float(getattr(setup.loss(), "eps", CROSS_ENTROPY_EPS))
    except (AttributeError, TypeError, ValueError):    # no numrec loss: the documented value
        return CROSS_ENTROPY_EPS


PEER_LOSSES = ("mse", "cross-entropy", "softmax-cross-entropy")


def peer_problem(setup):
    """Why the peers below cannot run this setup, or None."""
    if setup.loss_name not in PEER_LOSSES:
        return f"the peers do not write the loss {setup.loss_name}"
    return None


# --- runners ---------------------------------------------------------------------------------
#
# A runner's life: prepare(data) once; start(setup, init) before each run (fresh
# weights from ``init``, fresh optimizer state); epoch(order) -> (seconds, accuracy) for
# one training pass in ``order`` plus the test pass; until_target() runs epochs until the
# test accuracy exceeds TARGET_ACCURACY.


class PresetRunner(Runner):
    def until_target(self, setup, init, max_epochs, n):
        """(seconds, epochs, reached, accuracies), from ``init``, in fit(seed=...)'s orders."""
        self.start(setup, init)
        total, accuracies = 0.0, []
        for order in epoch_orders(setup, TARGET_ORDER_SEED, max_epochs, n):
            seconds, accuracy = self.epoch(order)
            total += seconds
            accuracies.append(accuracy)
            if accuracy > TARGET_ACCURACY:
                return total, len(accuracies), True, accuracies
            if not np.isfinite(accuracy) or (len(accuracies) >= 3 and accuracy < 0.2):
                break   # diverged
        return total, len(accuracies), False, accuracies


class NumrecPresetRunner(PresetRunner):
    """numrec: ``setup.model()``, ``Sequential.fit`` with validation data, uint8 images.

    One epoch is ``fit(epochs=1, seed=s)``, whose shuffle is
    ``numpy.random.default_rng(s).permutation``; the time to 96 % is ONE
    ``fit(epochs=max_epochs, target_accuracy=0.96, seed=TARGET_ORDER_SEED)`` call.
    Seconds are wall-clock around ``fit``.
    """

    name, label = "numrec", "numrec"
    module = "numrec"

    def prepare(self, data):
        import numrec
        self.numrec = numrec
        self.x, self.y = data.x_train_u8, data.y_train
        self.x_test, self.y_test = data.x_test_u8, data.y_test
        self.loop = None

    def start(self, setup, init):
        self.setup = setup
        self.model = setup.model(seed=INIT_SEED)
        layers = [c for c in self.model.components if isinstance(c, self.numrec.Dense)]
        for layer, (w, b) in zip(layers, init):
            layer.weights, layer.bias = w, b
        self.loss, self.optimizer = setup.loss(), setup.optimizer()

    def _fit(self, epochs, seed, target=None):
        start = time.perf_counter()
        history = self.model.fit(
            self.x, self.y, epochs=epochs, batch_size=self.setup.batch_size, loss=self.loss,
            optimizer=self.optimizer, validation_data=(self.x_test, self.y_test), seed=seed,
            shuffle=self.setup.shuffle, target_accuracy=target)
        seconds = time.perf_counter() - start
        self.loop = history.loop
        return seconds, history

    def epoch(self, order, seed=None):
        seconds, history = self._fit(1, seed)
        return seconds, history.val_accuracy[0]

    def until_target(self, setup, init, max_epochs, n):
        self.start(setup, init)
        seconds, history = self._fit(max_epochs, TARGET_ORDER_SEED, TARGET_ACCURACY)
        return seconds, history.epochs, history.reached_target, list(history.val_accuracy)

    def versions(self):
        return {"numrec": f"{self.numrec.__version__} ({Path(self.numrec.__file__).parent})"}


class TorchPresetRunner(PresetRunner, TorchRunner):
    """PyTorch eager: ``nn.Sequential`` of ``nn.Linear`` and activation modules,
    ``torch.optim.SGD`` / ``Adam`` / ``AdamW``, two intra-op threads."""

    name, label = "torch", "PyTorch eager"

    def prepare(self, data):
        import torch
        torch.set_num_threads(2)
        self.torch = torch
        self.x = torch.from_numpy(data.x_train_f32)
        self.y = torch.from_numpy(data.y_train_onehot)
        self.labels = torch.from_numpy(data.y_train)
        self.x_test = torch.from_numpy(data.x_test_f32)
        self.y_test = torch.from_numpy(data.y_test)
        self.built = {}

    def _build(self, setup):
        nn = self.torch.nn
        hidden = {"leaky-relu": lambda: nn.LeakyReLU(setup.alpha), "relu": nn.ReLU,
                  "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[setup.activation]
        modules = []
        pairs = list(zip(setup.sizes[:-1], setup.sizes[1:]))
        for index, (n_in, n_out) in enumerate(pairs):
            modules.append(nn.Linear(n_in, n_out))
            if index < len(pairs) - 1:
                modules.append(hidden())
        output = {"sigmoid": nn.Sigmoid, "softmax": lambda: nn.Softmax(dim=1),
                  "identity": None}[setup.output_activation]
        if output is not None:
            modules.append(output())
        return nn.Sequential(*modules)

    def start(self, setup, init):
        torch = self.torch
        if setup not in self.built:
            self.built[setup] = self._build(setup)
        self.model = model = self.built[setup]
        with torch.no_grad():
            layers = [m for m in model if isinstance(m, torch.nn.Linear)]
            for layer, (w, b) in zip(layers, init):
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
        betas, decay = optimizer_settings(setup)
        params = model.parameters()
        if setup.optimizer_name == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=setup.lr, momentum=setup.momentum,
                                             nesterov=setup.nesterov, weight_decay=decay)
        else:
            kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[setup.optimizer_name]
            self.optimizer = kind(params, lr=setup.lr, betas=betas, eps=ADAM_EPS,
                                  weight_decay=decay)
        self.batch_size = setup.batch_size
        eps = cross_entropy_eps(setup)
        f = torch.nn.functional
        self.loss = {
            # sum over the outputs, mean over the batch (numrec's convention)
            "mse": lambda out, y, labels: ((out - y) ** 2).sum(1).mean(),
            "cross-entropy": lambda out, y, labels: -(y * torch.log(eps + out)).sum(1).mean(),
            "softmax-cross-entropy": lambda out, y, labels: f.cross_entropy(out, labels),
        }[setup.loss_name]

    def epoch(self, order, seed=None):
        torch = self.torch
        order = torch.from_numpy(order)
        model, optimizer, loss_fn, batch_size = (self.model, self.optimizer, self.loss,
                                                 self.batch_size)
        start = time.perf_counter()
        for begin in range(0, len(order), batch_size):
            rows = order[begin:begin + batch_size]
            loss = loss_fn(model(self.x[rows]), self.y[rows], self.labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = float((model(self.x_test).argmax(1) == self.y_test).float().mean())
        return time.perf_counter() - start, accuracy


class JaxPresetRunner(PresetRunner, JaxRunner):
    """JAX: one jitted function per epoch, a ``lax.scan`` over the full batches and one
    step on the last partial batch; gradients by ``jax.grad``; SGD (PyTorch's momentum
    and weight decay) and Adam / AdamW written out with PyTorch's formulas."""

    name, label = "jax", "JAX (scan)"

    def prepare(self, data):
        import jax
        import jax.numpy as jnp
        self.jax, self.jnp = jax, jnp
        self.x = jax.device_put(data.x_train_f32)
        self.y = jax.device_put(data.y_train_onehot)
        self.x_test = jax.device_put(data.x_test_f32)
        self.y_test = jax.device_put(data.y_test.astype(np.int32))
        self.compiled = {}

    def _compile(self, setup):
        jax, jnp = self.jax, self.jnp
        from jax import lax

        alpha = setup.alpha
        hidden = {"leaky-relu": lambda z: jax.nn.leaky_relu(z, alpha), "relu": jax.nn.relu,
                  "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[setup.activation]
        output = {"sigmoid": jax.nn.sigmoid, "softmax": lambda z: jax.nn.softmax(z, axis=1),
                  "identity": lambda z: z}[setup.output_activation]
        eps = np.float32(cross_entropy_eps(setup))

        def forward(params, x):
            layers = [params[i:i + 2] for i in range(0, len(params), 2)]
            for w, b in layers[:-1]:
                x = hidden(x @ w.T + b)
            w, b = layers[-1]
            return output(x @ w.T + b)

        loss_of = {
            "mse": lambda out, y: ((out - y) ** 2).sum(1).mean(),
            "cross-entropy": lambda out, y: -(y * jnp.log(eps + out)).sum(1).mean(),
            "softmax-cross-entropy":
                lambda out, y: -(y * jax.nn.log_softmax(out, axis=1)).sum(1).mean(),
        }[setup.loss_name]
        grad = jax.grad(lambda params, x, y: loss_of(forward(params, x), y))

        (beta1, beta2), decay = optimizer_settings(setup)
        lr, mu, nesterov = setup.lr, setup.momentum, setup.nesterov
        kind = setup.optimizer_name

        def step(params, state, x, y):
            grads = grad(params, x, y)
            if kind == "sgd":   # torch.optim.SGD (dampening 0; the first buffer is g)
                if decay:
                    grads = tuple(g + decay * p for g, p in zip(grads, params))
                if not mu:
                    return tuple(p - lr * g for p, g in zip(params, grads)), state
                bufs = tuple(mu * b + g for b, g in zip(state, grads))
                moves = (tuple(g + mu * b for g, b in zip(grads, bufs)) if nesterov
                         else bufs)
                return tuple(p - lr * d for p, d in zip(params, moves)), bufs
            # torch.optim.Adam / AdamW (amsgrad off, maximize off)
            t, ms, vs = state
            t = t + 1
            if kind == "adamw":
                params = tuple(p * (1 - lr * decay) for p in params)
            elif decay:
                grads = tuple(g + decay * p for g, p in zip(grads, params))
            ms = tuple(beta1 * m + (1 - beta1) * g for m, g in zip(ms, grads))
            vs = tuple(beta2 * v + (1 - beta2) * g * g for v, g in zip(vs, grads))
            correction1 = 1 - beta1 ** t
            correction2 = 1 - beta2 ** t
            step_size = lr / correction1
            params = tuple(p - step_size * m / (jnp.sqrt(v) / jnp.sqrt(correction2) + ADAM_EPS)
                           for p, m, v in zip(params, ms, vs))
            return params, (t, ms, vs)

        def train_epoch(params, state, x_all, y_all, batches, tail):
            def body(carry, rows):
                return step(*carry, x_all[rows], y_all[rows]), None
            (params, state), _ = lax.scan(body, (params, state), batches)
            if tail.shape[0]:      # static: the partial batch has its own shape
                params, state = step(params, state, x_all[tail], y_all[tail])
            return params, state

        def count_correct(params, x, labels):
            return (forward(params, x).argmax(axis=1) == labels).sum()

        return jax.jit(train_epoch), jax.jit(count_correct)

    def start(self, setup, init):
        jax, jnp = self.jax, self.jnp
        if setup not in self.compiled:
            self.compiled[setup] = self._compile(setup)
        self.train_epoch, self.count_correct = self.compiled[setup]
        self.params = tuple(jax.device_put(a.copy()) for w, b in init for a in (w, b))
        zeros = tuple(jnp.zeros_like(p) for p in self.params)
        if setup.optimizer_name == "sgd":
            self.state = zeros if setup.momentum else ()
        else:
            self.state = (jnp.float32(0), zeros, tuple(jnp.zeros_like(p) for p in self.params))
        self.batch_size = setup.batch_size

    def epoch(self, order, seed=None):
        order = order.astype(np.int32)
        n_full = len(order) // self.batch_size
        batches = order[:n_full * self.batch_size].reshape(n_full, self.batch_size)
        tail = order[n_full * self.batch_size:]
        start = time.perf_counter()
        params, state = self.train_epoch(self.params, self.state, self.x, self.y, batches,
                                         tail)
        correct = int(self.count_correct(params, self.x_test, self.y_test))
        seconds = time.perf_counter() - start
        self.params, self.state = params, state
        return seconds, correct / self.y_test.shape[0]


RUNNERS = {cls.name: cls for cls in (NumrecPresetRunner, TorchPresetRunner, JaxPresetRunner)}


def make_runners(names, data, notes):
    runners = {}
    for name in names:
        cls = RUNNERS[name]
        missing = cls.missing()
        if missing:
            notes.append(f"{cls.label} skipped: {missing}.")
            continue
        runner = cls()
        try:
            runner.prepare(data)
        except Exception as error:  # noqa: BLE001 - the benchmark runs anywhere
            notes.append(f"{cls.label} skipped: {type(error).__name__}: {error}")
            continue
        runners[name] = runner
    return runners


# --- measurements -----------------------------------------------------------------------------

def rotated(names, turn):
    turn %= len(names)
    return names[turn:] + names[:turn]


def run_epochs(runners, setup, init, n, rounds, settle_seconds, log, tag):
    """Warm-up, then ``rounds`` rounds of one epoch per runner, taking turns."""
    result = {"warm-up seconds": {}, "seconds": {}, "accuracy": {}}
    warm_order = epoch_orders(setup, ORDER_SEED - 1, 1, n)[0]
    for name, runner in runners.items():
        runner.start(setup, init)
        result["warm-up seconds"][name], _ = runner.epoch(warm_order, ORDER_SEED - 1)
    log(f"{tag}: warm-up " + ", ".join(f"{name} {s:.2f}s"
                                       for name, s in result["warm-up seconds"].items()))
    names = list(runners)
    for r in range(rounds):
        seed = ORDER_SEED + r
        order = epoch_orders(setup, seed, 1, n)[0]
        for name in rotated(names, r):
            runner = runners[name]
            runner.start(setup, init)
            settle(settle_seconds)
            seconds, accuracy = runner.epoch(order, seed)
            result["seconds"].setdefault(name, []).append(seconds)
            result["accuracy"].setdefault(name, []).append(accuracy)
        log(f"{tag}: round {r + 1}/{rounds}: " + ", ".join(
            f"{name} {result['seconds'][name][-1]:.3f}s" for name in names))
    result["median"] = {name: statistics.median(v) for name, v in result["seconds"].items()}
    if "numrec" in result["seconds"] and len(names) > 1:
        ratios = [min(result["seconds"][name][r] for name in names if name != "numrec")
                  / result["seconds"]["numrec"][r] for r in range(rounds)]
        result["paired ratio"] = statistics.median(ratios)
        result["paired ratios"] = ratios
    return result


def run_to_target(runners, setup, init, n, repeats, max_epochs, settle_seconds, log, tag):
    """Seconds and epochs to > 96 % test accuracy, ``repeats`` runs per runner in turns."""
    runs = {name: [] for name in runners}
    names = list(runners)
    for r in range(repeats):
        for name in rotated(names, r):
            settle(settle_seconds)
            try:
                seconds, epochs, reached, accuracies = runners[name].until_target(
                    setup, init, max_epochs, n)
            except (ArithmeticError, ValueError) as error:   # numrec's DivergedError
                log(f"{tag}: {name}: {error}")
                seconds, epochs, reached, accuracies = None, None, False, []
            runs[name].append({"seconds": seconds, "epochs": epochs, "reached": reached,
                               "accuracy": accuracies})
        log(f"{tag}: to {TARGET_ACCURACY:.0%}, run {r + 1}/{repeats}: " + ", ".join(
            f"{name} " + (f"{runs[name][-1]['seconds']:.2f}s/{runs[name][-1]['epochs']} ep"
                          if runs[name][-1]["reached"] else "not reached")
            for name in names))
    summary = {}
    for name, found in runs.items():
        reached = [run for run in found if run["reached"]]
        if reached:
            summary[name] = {
                "seconds": statistics.median(run["seconds"] for run in reached),
                "epochs": statistics.median(run["epochs"] for run in reached),
                "runs": len(reached), "of": len(found)}
    result = {"runs": runs, "summary": summary}
    peers = [name for name in summary if name != "numrec"]
    if "numrec" in summary and peers:
        fastest = min(peers, key=lambda name: summary[name]["seconds"])
        result["fastest peer"] = fastest
        result["ratio"] = summary[fastest]["seconds"] / summary["numrec"]["seconds"]
    return result


def agreement_warnings(accuracy, labels, config):
    """Warnings for runners whose first-epoch test accuracy is off numrec's by > 1 point."""
    if "numrec" not in accuracy:
        return []
    base = accuracy["numrec"][0]
    return [f"WARNING: {config}: {labels[name]}'s test accuracy after the first epoch, "
            f"{100 * values[0]:.2f} %, differs from numrec's {100 * base:.2f} % by more than "
            f"{AGREEMENT_POINTS:g} point: the configurations differ"
            for name, values in accuracy.items()
            if name != "numrec" and abs(values[0] - base) * 100 > AGREEMENT_POINTS]


# --- report -----------------------------------------------------------------------------------

def ratio_text(value):
    return "–" if value is None else f"{value:.2f}×"


def report_config(out, config, setup, result, labels, rounds):
    out(f"\n## {config}: {setup.describe()}\n")
    epochs, target = result.get("epochs"), result.get("target")
    names = list(epochs["median"]) if epochs else list(target["runs"])
    rows = []
    for name in names:
        row = [labels[name]]
        if epochs:
            seconds = epochs["seconds"][name]
            spread = ((max(seconds) - min(seconds)) / statistics.median(seconds)
                      if len(seconds) > 1 else None)
            row += [fmt(epochs["median"][name]),
                    "–" if spread is None else f"{100 * spread:.0f} %",
                    fmt(epochs["warm-up seconds"][name], 2),
                    fmt(100 * epochs["accuracy"][name][0], 2)]
        if target:
            found = target["summary"].get(name)
            row += ([fmt(found["seconds"], 2), f"{found['epochs']:g}",
                     f"{found['runs']}/{found['of']}"] if found else ["not reached", "–", "0"])
        rows.append(row)
    headers = ["runner"]
    if epochs:
        headers += [f"s / epoch (median of {rounds})", "spread", "warm-up s",
                    "test % after epoch 1"]
    if target:
        headers += [f"s to > {TARGET_ACCURACY:.0%} (median)", "epochs", "reached"]
    out(table(headers, rows))
    out("")
    if epochs and "paired ratio" in epochs:
        out(f"- per epoch, fastest peer / numrec (paired within each round, median): "
            f"**{ratio_text(epochs['paired ratio'])}** (rounds: "
            + ", ".join(f"{r:.2f}" for r in epochs["paired ratios"]) + ")")
    if target and "ratio" in target:
        out(f"- to {TARGET_ACCURACY:.0%}, fastest peer ({labels[target['fastest peer']]}) / "
            f"numrec (medians): **{ratio_text(target['ratio'])}**")
    if result.get("loop"):
        out(f"- numrec ran its {result['loop']} loop")
    for warning in result.get("warnings", []):
        out(f"- {warning}")


def report_summary(out, results, labels):
    peers = [name for name in labels if name != "numrec"]
    out("\n## Summary\n")
    headers = ["configuration", *(f"{labels[n]} s/epoch" for n in labels),
               "fastest peer / numrec (epoch)",
               *(f"{labels[n]} s to 96 % (epochs)" for n in labels),
               "fastest peer / numrec (to 96 %)"]
    rows = []
    for config, result in results.items():
        epochs, target = result.get("epochs") or {}, result.get("target") or {}
        row = [config]
        row += [fmt(epochs.get("median", {}).get(n)) for n in labels]
        row.append(ratio_text(epochs.get("paired ratio")))
        for n in labels:
            found = target.get("summary", {}).get(n)
            row.append(f"{found['seconds']:.2f} ({found['epochs']:g})" if found else
                       ("not reached" if n in target.get("runs", {}) else "–"))
        row.append(ratio_text(target.get("ratio")))
        rows.append(row)
    out(table(headers, rows))
    out("\nRatios above 1 mean numrec is faster" + (" than every peer." if peers else "."))


# --- main -------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS),
                        help="configurations to run (default: all)")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS),
                        help="peers to compare with numrec (default: all)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="measured rounds of one epoch per runner (median reported)")
    parser.add_argument("--target-repeats", type=int, default=3,
                        help="runs to > 96 %% per runner (median reported)")
    parser.add_argument("--max-epochs", type=int, default=30,
                        help="give up on 96 %% after this many epochs")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="idle seconds before each timed run (the previous runner's "
                             "threads go to sleep)")
    parser.add_argument("--skip-target", action="store_true",
                        help="leave out the time to 96 %%")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 round and 1 run to 96 %% (says nothing about "
                             "speed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.target_repeats = 1, 1
    for option in ("repeats", "target_repeats", "max_epochs"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.settle < 0:
        parser.error("--settle must not be negative")
    return args


def main(argv=None):
    args = parse_args(argv)

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    notes = []
    log("loading MNIST")
    data = load_data()
    data.add_floats()
    n = len(data.y_train)
    runners = make_runners(["numrec", *args.peers], data, notes)
    if "numrec" not in runners:
        raise SystemExit("numrec is not importable: nothing to compare with")
    labels = {name: RUNNERS[name].label for name in runners}
    header, env, _ = machine_header(runners, data)

    results = {}
    for config, setup in setups(args.configs).items():
        problem = numrec_problem(setup)
        if problem:
            note = f"{config} skipped: {problem}"
            log(note)
            notes.append(note)
            continue
        active = dict(runners)
        problem = peer_problem(setup)
        if problem:
            notes.append(f"{config}: peers left out: {problem}")
            active = {"numrec": runners["numrec"]}
        init = initial_weights(setup)
        result = results[config] = {"setup": setup}
        result["epochs"] = run_epochs(active, setup, init, n, args.repeats, args.settle,
                                      log, config)
        result["warnings"] = agreement_warnings(result["epochs"]["accuracy"], labels, config)
        for warning in result["warnings"]:
            log(warning)
        result["loop"] = runners["numrec"].loop
        if not args.skip_target:
            result["target"] = run_to_target(active, setup, init, n, args.target_repeats,
                                             args.max_epochs, args.settle, log, config)

    out = print
    out("# numrec against PyTorch eager and JAX, network by network\n")
    for key, value in header.items():
        out(f"- {key}: {value}")
    set_vars = {k: v for k, v in env.items() if v is not None}
    out("- environment: " + (", ".join(f"{k}={v}" for k, v in set_vars.items()) if set_vars
                             else "none of " + ", ".join(ENV_VARS) + " is set"))
    blas = blas_info()
    if blas:
        out("- BLAS / OpenMP (threadpoolctl): " + "; ".join(
            f"{b['library']} {b['version']} {b['kernels']} ×{b['threads']}" for b in blas))
    for config, result in results.items():
        report_config(out, config, result["setup"], result, labels, args.repeats)
    if results:
        report_summary(out, results, labels)
    notes.append(
        f"Every runner starts from numrec's initial weights (setup.model(seed={INIT_SEED})), "
        f"copied into the peers. Round r's batch order is "
        f"numpy.random.default_rng({ORDER_SEED} + r).permutation (numrec: fit(seed=...)); the "
        f"time to {TARGET_ACCURACY:.0%} follows fit(seed={TARGET_ORDER_SEED})'s orders, epoch "
        f"after epoch; configurations without shuffling keep the samples' order. numrec "
        f"trains on the uint8 images (scaled by 1/255 batch by batch), the peers on a float32 "
        f"copy (pixels / 255). Seconds per epoch include the test pass over 10000 images.")
    out("\n## Notes\n")
    for note in notes:
        out(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

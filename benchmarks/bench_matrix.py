"""The benchmark matrix: numrec against NumPy, PyTorch eager and JAX, row by row.

Rows (the default is the twelve rows of the table below; ``--full`` runs the whole
product of data, networks, batch sizes and dtypes):

* data: ``mnist`` (pixels / 255, about 19 % nonzero), ``fashion`` (Fashion-MNIST, about
  half nonzero; from ``--fashion-dir`` or /usr/share/datasets/fashion-mnist, else a
  stand-in made from MNIST, said so in the report), ``standardised`` (MNIST standardised
  pixel by pixel: all but a handful of inputs nonzero);
* networks: ``reference`` (784-256-10), ``784-512-256-10``, ``784-1024-1024-10`` (or any
  ``784-...-10``), leaky ReLU 0.2 after each hidden layer, sigmoid output, quadratic cost,
  plain SGD;
* batch sizes 32, 128, 512; float32 and float64;
* inference: ``predict`` on the 10 000 test images in one batch, and the latency of one
  sample (median over many calls).

A training row's unit is one epoch: the shuffle, the training pass over the 60 000 images
and one pass over the 10 000 test images, after one untimed warm-up epoch; every
framework starts from the same weights and visits the same batches.  In each round every
framework runs once, in turn; the report gives medians, the paired ratio (fastest peer /
numrec within a round, median over the rounds), numrec's GFLOP/s (full products counted)
and its share of the measured peak, and, from a fresh process per framework and row, the
peak resident memory.

    python benchmarks/bench_matrix.py                   # the twelve rows (meant for ~20 min)
    python benchmarks/bench_matrix.py --full            # every combination: 90 rows
    python benchmarks/bench_matrix.py --quick           # smoke test: one tiny cell per kind
    python benchmarks/bench_matrix.py --networks 784-1024-1024-10 --json wide.json

Progress goes to stderr, the report (Markdown) to stdout.  Nothing here asserts on time.
"""
import argparse
import importlib
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import (  # noqa: E402  (the helper modules sit beside this script)
    MNIST_FILES, SETTLE_SECONDS, _best_rate, _last_line, blas_info, fmt, load_data,
    machine_header, peak_rss, read_idx_gz, settle, table,
)
from frameworks import (  # noqa: E402
    REFERENCE_SIZES, RUNNERS, batch_order, float_arrays, initial_weights,
)

NETWORKS = {"reference": REFERENCE_SIZES, "784-512-256-10": (784, 512, 256, 10),
            "784-1024-1024-10": (784, 1024, 1024, 10)}
DATA = ("mnist", "fashion", "standardised")
BATCHES = (32, 128, 512)
DTYPES = ("float32", "float64")
KINDS = ("train", "predict", "latency")
PEERS = ("numpy", "torch", "jax")
PEER_CHOICES = ("numpy", "torch", "torch-compile", "jax")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")   # apt-get install dataset-fashion-mnist
STAND_IN_DENSITY = 0.45     # the Fashion-MNIST stand-in is dilated until this share is nonzero
PREDICT_BATCH = 10000
INIT_SEED = 0
ORDER_SEED = 1000           # round r uses the shuffle of seed ORDER_SEED + r
LR = 0.1                    # small enough for every network and every input scale
MEMORY_GOAL = 0.5           # numrec's peak RSS at most this share of the lowest peer's
QUICK_SAMPLES = (2000, 500)
PREDICT_CALLS, LATENCY_CALLS = 10, 300     # timed calls per round of an inference row
LABELS = {"numpy": "NumPy", "torch": "PyTorch eager", "torch-compile": "torch.compile",
          "jax": "JAX", "numrec": "numrec"}


@dataclass(frozen=True)
class Row:
    """One row of the matrix: a training epoch, a 10 000-image predict, or one sample."""

    kind: str       # "train", "predict" or "latency"
    network: str
    data: str
    batch: int      # the training batch; PREDICT_BATCH or 1 for inference
    dtype: str

    @property
    def sizes(self):
        return network_sizes(self.network)

    def label(self):
        what = {"train": self.network, "predict": f"{self.network} predict",
                "latency": f"{self.network} one sample"}[self.kind]
        return f"{what}, {self.data}, batch {self.batch}, {self.dtype}"


def network_sizes(name):
    """Layer sizes of a network name: a key of NETWORKS or ``784-h1-...-10``."""
    if name in NETWORKS:
        return NETWORKS[name]
    try:
        sizes = tuple(int(part) for part in name.split("-"))
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or sizes[0] != 784 or sizes[-1] != 10 or min(sizes) < 1:
        raise ValueError(f"network {name!r} is neither one of {', '.join(NETWORKS)} nor "
                         "784-...-10 with positive layer sizes")
    return sizes


def issue_rows():
    """The twelve rows of the default matrix."""
    train = [("reference", "mnist", 32, "float32"), ("reference", "mnist", 512, "float32"),
             ("reference", "fashion", 32, "float32"), ("reference", "fashion", 512, "float32"),
             ("reference", "standardised", 32, "float32"),
             ("reference", "standardised", 512, "float32"),
             ("784-512-256-10", "mnist", 32, "float32"),
             ("784-512-256-10", "mnist", 512, "float32"),
             ("784-1024-1024-10", "mnist", 128, "float32"),
             ("reference", "mnist", 128, "float64")]
    return ([Row("train", *cell) for cell in train]
            + [Row("predict", "reference", "mnist", PREDICT_BATCH, "float32"),
               Row("latency", "reference", "mnist", 1, "float32")])


def full_rows(data, networks, batches, dtypes):
    """Every training cell of the product, then predict and latency per network."""
    rows = [Row("train", n, d, b, t)
            for d, n, t, b in itertools.product(data, networks, dtypes, batches)]
    for d, n, t in itertools.product(data, networks, dtypes):
        rows += [Row("predict", n, d, PREDICT_BATCH, t), Row("latency", n, d, 1, t)]
    return rows


def select_rows(args):
    """The rows to run: the default twelve (or the full product) after the filters."""
    if args.full:
        rows = full_rows(args.data or DATA, args.networks or list(NETWORKS),
                         args.batches or BATCHES, args.dtypes or DTYPES)
    else:
        rows = [row for row in issue_rows()
                if (not args.data or row.data in args.data)
                and (not args.networks or row.network in args.networks)
                and (not args.batches or row.kind != "train" or row.batch in args.batches)
                and (not args.dtypes or row.dtype in args.dtypes)]
    rows = [row for row in rows if row.kind in args.kinds]
    if args.quick:   # the first row of each kind
        rows = [next(r for r in rows if r.kind == kind) for kind in KINDS
                if any(r.kind == kind for r in rows)]
    return rows


def execution_order(rows):
    """The rows grouped by data and dtype, so that each data set is made once, and
    float64 last (JAX's float64 switch stays on for the rest of the process)."""
    order = {key: i for i, key in enumerate(dict.fromkeys((r.data, r.dtype) for r in rows))}
    return sorted(rows, key=lambda r: (r.dtype == "float64", order[r.data, r.dtype]))


# --- data ---------------------------------------------------------------------------------

@dataclass
class Data:
    """Images as uint8 (``None`` when the inputs are not pixels), labels, and floats.

    The float arrays the runners read (see ``frameworks.float_arrays``) are added by
    :func:`add_floats` for one dtype.
    """

    x_train_u8: np.ndarray
    y_train: np.ndarray
    x_test_u8: np.ndarray
    y_test: np.ndarray
    source: str
    x_train_float: np.ndarray = None     # the inputs when they are not pixels (float64)
    x_test_float: np.ndarray = None

    def density(self):
        """The share of nonzero training inputs."""
        x = self.x_train_u8 if self.x_train_u8 is not None else self.x_train_float
        return np.count_nonzero(x) / x.size


#: The suffix of the float arrays of each dtype on a Data (x_train_f32, ...).
FLOAT_SUFFIX = {"float32": "f32", "float64": "f64"}


def float_inputs(pixels, floats, dtype):
    """One split's float inputs in ``dtype``: ``pixels`` / 255, or ``floats`` cast when
    the inputs are not pixels."""
    if pixels is not None:
        return np.multiply(pixels, dtype.type(1 / 255), dtype=dtype)
    return floats.astype(dtype)


def add_floats(data, dtype):
    """Give ``data`` the arrays the peers train on, in ``dtype``: pixels / 255 (or the
    standardised inputs) and one-hot targets."""
    dtype = np.dtype(dtype)
    suffix = FLOAT_SUFFIX[dtype.name]
    if getattr(data, f"x_train_{suffix}", None) is not None:
        return data
    x = float_inputs(data.x_train_u8, data.x_train_float, dtype)
    x_test = float_inputs(data.x_test_u8, data.x_test_float, dtype)
    onehot = np.eye(10, dtype=dtype)[data.y_train]
    setattr(data, f"x_train_{suffix}", x)
    setattr(data, f"x_test_{suffix}", x_test)
    setattr(data, "y_train_onehot" if suffix == "f32" else "y_train_onehot_f64", onehot)
    return data


def add_test_floats(data, dtype):
    """Give ``data`` what an inference row reads: the float test images in ``dtype``
    (pixels / 255, or the standardised inputs), and no training set (empty arrays)."""
    dtype = np.dtype(dtype)
    suffix = FLOAT_SUFFIX[dtype.name]
    x_test = float_inputs(data.x_test_u8, data.x_test_float, dtype)
    n_inputs = x_test.shape[1]
    setattr(data, f"x_test_{suffix}", x_test)
    setattr(data, f"x_train_{suffix}", np.empty((0, n_inputs), dtype))
    setattr(data, "y_train_onehot" if suffix == "f32" else "y_train_onehot_f64",
            np.empty((0, 10), dtype))
    if data.x_train_u8 is not None:
        data.x_train_u8 = np.empty((0, n_inputs), np.uint8)
    data.x_train_float = None
    return data


def subset(data, n_train, n_test):
    """The first ``n_train`` training and ``n_test`` test samples of ``data``."""
    def cut(a, n):
        return None if a is None else a[:n]
    return Data(cut(data.x_train_u8, n_train), data.y_train[:n_train],
                cut(data.x_test_u8, n_test), data.y_test[:n_test], data.source,
                cut(data.x_train_float, n_train), cut(data.x_test_float, n_test))


def read_idx_dir(directory):
    """The four MNIST-format IDX files of ``directory``: uint8 rows and int64 labels."""
    arrays = {key: read_idx_gz(Path(directory) / name) for key, name in MNIST_FILES.items()}
    return Data(arrays["x_train"].reshape(len(arrays["x_train"]), -1),
                arrays["y_train"].astype(np.int64),
                arrays["x_test"].reshape(len(arrays["x_test"]), -1),
                arrays["y_test"].astype(np.int64), f"IDX files in {directory}")


def dilate(images):
    """Grey-level dilation of 28 x 28 images by a 3 x 3 cross (each pixel becomes the
    largest of itself and its four neighbours)."""
    x = images.reshape(-1, 28, 28)
    out = x.copy()
    np.maximum(out[:, 1:], x[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], x[:, 1:], out=out[:, :-1])
    np.maximum(out[:, :, 1:], x[:, :, :-1], out=out[:, :, 1:])
    np.maximum(out[:, :, :-1], x[:, :, 1:], out=out[:, :, :-1])
    return out.reshape(images.shape)


def fashion_stand_in(mnist):
    """MNIST dilated until at least STAND_IN_DENSITY of the training pixels are nonzero."""
    x, x_test, times = mnist.x_train_u8, mnist.x_test_u8, 0
    while np.count_nonzero(x) / x.size < STAND_IN_DENSITY:
        x, x_test, times = dilate(x), dilate(x_test), times + 1
    return Data(x, mnist.y_train, x_test, mnist.y_test,
                f"STAND-IN for Fashion-MNIST (not found): MNIST dilated {times} times by a "
                f"3x3 cross, {100 * np.count_nonzero(x) / x.size:.1f} % nonzero")


def standardise(mnist):
    """MNIST standardised pixel by pixel with the training set's mean and deviation.

    Pixels blank in every training image (deviation 0) are standardised with the mean and
    deviation of all pixels instead, so that these inputs are nonzero too, as with real
    dense data: an input is zero only where a pixel happens to equal its mean.  Computed
    in float64; the inputs are no longer pixels (no uint8 copy).
    """
    x = mnist.x_train_u8.astype(np.float64) / 255
    x_test = mnist.x_test_u8.astype(np.float64) / 255
    mean, std = x.mean(axis=0), x.std(axis=0)
    blank = std == 0
    mean[blank], std[blank] = x.mean(), x.std()
    x -= mean
    x /= std
    x_test -= mean
    x_test /= std
    return Data(None, mnist.y_train, None, mnist.y_test,
                f"MNIST standardised per pixel ({mnist.source})", x, x_test)


def load(name, fashion_dir, use_numrec=True):
    """The data set ``name`` (one of DATA) as a Data."""
    if name == "fashion":
        if fashion_dir is not None and Path(fashion_dir).is_dir():
            return read_idx_dir(fashion_dir)
        return fashion_stand_in(load_mnist(use_numrec))
    mnist = load_mnist(use_numrec)
    return standardise(mnist) if name == "standardised" else mnist


def load_mnist(use_numrec):
    """MNIST through bench_epoch.load_data (numrec's loader or the IDX files)."""
    mnist = load_data(use_numrec)
    return Data(mnist.x_train_u8, mnist.y_train, mnist.x_test_u8, mnist.y_test, mnist.source)


# --- peak ---------------------------------------------------------------------------------

def measure_peaks(dtypes, size, quick):
    """GFLOP/s of NumPy's ``@`` on two ``size`` x ``size`` matrices, per dtype (all threads)."""
    rng = np.random.default_rng(0)
    rounds, min_seconds = (2, 0.05) if quick else (5, 0.3)
    peaks = {}
    for dtype in dtypes:
        a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
        out = np.empty((size, size), dtype)
        peaks[dtype] = _best_rate(lambda: np.matmul(a, b, out=out), 2 * size ** 3,
                                  min_seconds, rounds)
    return peaks


def fma_peak():
    """Two cores times benchmarks/c/fma_peak.c's one-core figure (AVX2, 8 floats per FMA),
    or None when gcc or the processor cannot run it."""
    source = Path(__file__).resolve().parent / "c" / "fma_peak.c"
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "fma_peak"
        try:
            subprocess.run(["gcc", "-O3", "-o", str(exe), str(source)], check=True,
                           capture_output=True, timeout=60)
            out = subprocess.run([str(exe)], check=True, capture_output=True, text=True,
                                 timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    rates = [float(line.split()[0]) for line in out.splitlines() if "GFLOP/s" in line]
    return 2 * max(rates) if rates else None


# --- flops --------------------------------------------------------------------------------

def macs(sizes):
    """Multiply-adds of one sample's forward pass."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def row_flops(row, n_train, n_test):
    """Floating-point operations of the row's unit, full products counted: per training
    sample 3 x 2 x MACs (forward, weight gradients, input gradients), per test or
    predicted sample 2 x MACs."""
    if row.kind == "train":
        return 6 * macs(row.sizes) * n_train + 2 * macs(row.sizes) * n_test
    return 2 * macs(row.sizes) * (n_test if row.kind == "predict" else 1)


# --- runs ---------------------------------------------------------------------------------

def make_runners(names, row, data, notes):
    runners = {}
    for name in names:
        cls = RUNNERS[name]
        missing = cls.missing()
        if missing:
            notes.add(f"{cls.label} skipped: {missing}.")
            continue
        runner = cls(row.sizes, row.dtype)
        try:
            runner.prepare(data)
        except Exception as error:  # noqa: BLE001 - the benchmark runs anywhere
            notes.add(f"{cls.label} skipped in {row.label()}: {type(error).__name__}: {error}")
            continue
        runners[name] = runner
    return runners


def rotated(names, turn):
    turn %= len(names)
    return names[turn:] + names[:turn]


def timed_rounds(runners, rounds, settle_seconds, measure, log, tag):
    """``measure(name, runner, round)`` -> seconds, in turns; samples per runner."""
    samples = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in rotated(names, r):
            settle(settle_seconds)
            samples[name].append(measure(name, runners[name], r))
        log(f"{tag}: round {r + 1}/{rounds}: " + ", ".join(
            f"{name} {samples[name][-1]:.4g}s" for name in names))
    return samples


def train_row(runners, row, n_train, rounds, settle_seconds, log, notes):
    """Seconds per epoch + test pass, and the test accuracy after each measured epoch."""
    init = initial_weights(INIT_SEED, row.sizes, row.dtype)
    warm = batch_order(ORDER_SEED - 1, n_train)
    for name, runner in list(runners.items()):
        try:
            runner.start(init, LR)
            runner.epoch(warm, ORDER_SEED - 1, row.batch)
        except Exception as error:  # noqa: BLE001 - drop the runner, keep the row
            notes.add(f"{runner.label} failed in {row.label()} and was left out: "
                      f"{type(error).__name__}: {str(error).splitlines()[0]}")
            del runners[name]
    accuracy = {name: [] for name in runners}

    def measure(name, runner, r):
        runner.start(init, LR)
        seconds, acc = runner.epoch(batch_order(ORDER_SEED + r, n_train), ORDER_SEED + r,
                                    row.batch)
        accuracy[name].append(acc)
        return seconds

    samples = timed_rounds(runners, rounds, settle_seconds, measure, log, row.label())
    if "numrec" in runners and runners["numrec"].fused is False:
        notes.add(f"numrec ran its per-batch Python loop in {row.label()}.")
    return samples, accuracy


def inference_row(runners, row, data, rounds, calls, settle_seconds, log):
    """Seconds of one call: predict on the whole test set, or on one sample (the median of
    ``calls`` calls on successive test images, per round)."""
    init = initial_weights(INIT_SEED, row.sizes, row.dtype)
    _, _, x_test = float_arrays(data, row.dtype)
    prepared = {}
    for name, runner in runners.items():
        runner.start(init, LR)
        predict, as_input = runner.predictor()
        if row.kind == "predict":
            inputs = [as_input(x_test)]
        else:
            inputs = [as_input(x_test[i:i + 1]) for i in range(min(calls, len(x_test)))]
        for x in inputs[:3]:         # warm-up (JAX compiles here)
            predict(x)
        prepared[name] = predict, inputs

    def measure(name, runner, r):
        predict, inputs = prepared[name]
        times = []
        for i in range(calls):
            x = inputs[i % len(inputs)]
            start = time.perf_counter()
            predict(x)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return timed_rounds(runners, rounds, settle_seconds, measure, log, row.label()), None


def summarise(row, samples, flops, peak):
    """Medians, the paired ratio to the fastest peer, per-peer paired ratios, GFLOP/s."""
    medians = {name: statistics.median(v) for name, v in samples.items()}
    result = {"samples": samples, "median": medians, "flops": flops}
    peers = [name for name in samples if name != "numrec"]
    if "numrec" in samples:
        rate = flops / medians["numrec"] / 1e9
        result["numrec GFLOP/s"] = rate
        result["numrec % peak"] = 100 * rate / peak if peak else None
    if "numrec" in samples and peers:
        rounds = range(len(samples["numrec"]))
        result["paired ratio"] = statistics.median(
            min(samples[p][r] for p in peers) / samples["numrec"][r] for r in rounds)
        result["paired ratio per peer"] = {
            p: statistics.median(samples[p][r] / samples["numrec"][r] for r in rounds)
            for p in peers}
        result["fastest peer"] = min(peers, key=lambda p: medians[p])
    return result


# --- goals --------------------------------------------------------------------------------

def goal(row):
    """The issue's goal for ``row``: ("ratio" | "peak" | "torch ratio", value) or None."""
    if row.kind == "predict":
        return ("ratio", 1.5)
    if row.kind == "latency":
        return ("torch ratio", 3.0)
    if row.dtype == "float64":
        return ("ratio", 1.5)
    if row.network == "784-1024-1024-10" and row.batch == 128:
        return ("peak", 85.0)
    if row.network == "reference" and row.data == "mnist":
        return {32: ("ratio", 3.0), 512: ("ratio", 2.0)}.get(row.batch)
    if row.network in ("reference", "784-512-256-10"):     # dense inputs, or the deeper net
        return {32: ("ratio", 1.5), 512: ("ratio", 1.25)}.get(row.batch)
    return None


def goal_text(target):
    if target is None:
        return "–"
    kind, value = target
    return {"ratio": f"≥ {value:g}×", "peak": f"≥ {value:g} % of peak",
            "torch ratio": f"≥ {value:g}× PyTorch"}[kind]


def achieved(target, result):
    """The figure the goal is judged on, or None."""
    kind, _ = target
    if kind == "ratio":
        return result.get("paired ratio")
    if kind == "peak":
        return result.get("numrec % peak")
    return result.get("paired ratio per peer", {}).get("torch")


def met_text(target, value):
    if target is None:
        return "–"
    if value is None:
        return "not measured"
    if value >= target[1]:
        return "yes"
    return f"no: {value:.2f} of {target[1]:g}, {100 * (1 - value / target[1]):.0f} % short"


# --- peak memory --------------------------------------------------------------------------

def memory_child(args):
    """In a fresh process: make the row's data, run its unit once, exit."""
    row = Row(*json.loads(args.memory_child))
    runner_name = args.memory_runner
    data = load(row.data, args.fashion_dir, use_numrec=runner_name == "numrec")
    if args.quick:
        data = subset(data, *QUICK_SAMPLES)
    if row.kind != "train":       # inference: every framework has the float test images
        add_test_floats(data, row.dtype)
    elif runner_name != "numrec" or data.x_train_u8 is None:
        add_floats(data, row.dtype)
    # (numrec trains on the pixels: it makes no float copy of them)
    if runner_name != "numrec":       # the peers work on the floats alone
        data.x_train_u8 = data.x_test_u8 = data.x_train_float = data.x_test_float = None
    runner = RUNNERS[runner_name](row.sizes, row.dtype)
    runner.prepare(data)
    runner.start(initial_weights(INIT_SEED, row.sizes, row.dtype), LR)
    if row.kind == "train":
        runner.epoch(batch_order(ORDER_SEED, len(data.y_train)), ORDER_SEED, row.batch)
        return
    predict, as_input = runner.predictor()
    _, _, x_test = float_arrays(data, row.dtype)
    if row.kind == "predict":
        predict(as_input(x_test))
    else:
        for i in range(100):
            predict(as_input(x_test[i:i + 1]))


def measure_memory(row, names, args, notes, log):
    """Peak RSS (MB) of the row's unit per framework, each in its own fresh process."""
    found = {}
    for name in names:
        command = [sys.executable, str(Path(__file__).resolve()), "--memory-child",
                   json.dumps(list(asdict(row).values())), "--memory-runner", name]
        if args.fashion_dir is not None:
            command += ["--fashion-dir", str(args.fashion_dir)]
        if args.quick:
            command.append("--quick")
        with tempfile.TemporaryDirectory() as tmp:
            status, peak, err = peak_rss(command, tmp)
        if status != 0:
            notes.add(f"peak RSS of {name} in {row.label()} not measured: "
                      f"{_last_line(err, f'exit status {status}')}")
            continue
        found[name] = peak
    log(f"{row.label()}: peak RSS " + ", ".join(f"{n} {v:.0f} MB" for n, v in found.items()))
    return found


# --- report -------------------------------------------------------------------------------

def seconds_text(row, seconds):
    if seconds is None:
        return "–"
    if row.kind == "train":
        return f"{seconds:.3f} s"
    if row.kind == "predict":
        return f"{1e3 * seconds:.1f} ms"
    return f"{1e6 * seconds:.0f} µs"


def row_cells(row):
    network = {"train": row.network, "predict": f"{row.network}: predict",
               "latency": f"{row.network}: one sample"}[row.kind]
    return [network, row.data, f"{row.batch:,}".replace(",", " "), row.dtype]


def main_table(rows, results, labels):
    lines = []
    for row in rows:
        result = results.get(row)
        if result is None:
            continue
        median = result["median"]
        fastest = result.get("fastest peer")
        target = goal(row)
        value = achieved(target, result) if target else None
        lines.append([
            *row_cells(row), seconds_text(row, median.get("numrec")),
            f"{seconds_text(row, median[fastest])} ({labels[fastest]})" if fastest else "–",
            f"{result['paired ratio']:.2f}" if "paired ratio" in result else "–",
            fmt(result.get("numrec GFLOP/s"), 1), fmt(result.get("numrec % peak"), 0),
            goal_text(target), met_text(target, value)])
    return table(["network", "data", "batch", "dtype", "numrec", "fastest peer",
                  "paired ratio", "numrec GFLOP/s", "% peak", "goal", "met?"], lines)


def detail_table(rows, results, labels, names):
    lines = []
    for row in rows:
        result = results.get(row)
        if result is None:
            continue
        cells = []
        for name in names:
            seconds = result["samples"].get(name)
            if not seconds:
                cells.append("–")
                continue
            spread = (max(seconds) - min(seconds)) / statistics.median(seconds)
            acc = (result.get("accuracy") or {}).get(name)
            cells.append(f"{seconds_text(row, statistics.median(seconds))} ±{100 * spread:.0f} %"
                         + (f", {100 * acc[0]:.2f} %" if acc else ""))
        lines.append([*row_cells(row), *cells])
    return table(["network", "data", "batch", "dtype", *(labels[n] for n in names)], lines)


def memory_table(rows, results, labels):
    lines = []
    for row in rows:
        memory = (results.get(row) or {}).get("peak RSS MB")
        if not memory:
            continue
        peers = [n for n in memory if n != "numrec"]
        lowest = min(peers, key=memory.get) if peers else None
        share = memory["numrec"] / memory[lowest] if lowest and "numrec" in memory else None
        met = ("–" if share is None else "yes" if share <= MEMORY_GOAL else
               f"no: {share:.2f}, {100 * (share / MEMORY_GOAL - 1):.0f} % over")
        lines.append([*row_cells(row), fmt(memory.get("numrec"), 0),
                      f"{memory[lowest]:.0f} ({labels[lowest]})" if lowest else "–",
                      fmt(share, 2), f"≤ {MEMORY_GOAL:g}", met])
    if not lines:
        return None
    return table(["network", "data", "batch", "dtype", "numrec MB", "lowest peer MB",
                  "numrec / lowest peer", "goal", "met?"], lines)


def report(out, header, env, blas, rows, results, labels, peaks, fma, data_notes, notes,
           args):
    out("# numrec benchmark matrix\n")
    for key, value in header.items():
        out(f"- {key}: {value}")
    set_vars = {k: v for k, v in env.items() if v is not None}
    if set_vars:
        out("- environment: " + ", ".join(f"{k}={v}" for k, v in set_vars.items()))
    if blas:
        out("- BLAS / OpenMP (threadpoolctl): " + "; ".join(
            f"{b['library']} {b['version']} {b['kernels']} ×{b['threads']}" for b in blas))
    for note in data_notes:
        out(f"- data: {note}")
    out("- peak (the `% peak` column): NumPy `@` on two "
        f"{args.peak_size}×{args.peak_size} matrices, all threads: " + ", ".join(
            f"{dtype} {rate:.1f} GFLOP/s" for dtype, rate in peaks.items()))
    if fma:
        out(f"- benchmarks/c/fma_peak.c (AVX2, 8 floats per FMA) × 2 cores: {fma:.1f} "
            "GFLOP/s float32 (on AVX-512 processors the wider FMAs reach more)")
    calls = (f"{args.calls} calls" if args.calls else
             f"{PREDICT_CALLS} calls (predict), {LATENCY_CALLS} (one sample)")
    out(f"- rounds: {args.rounds}; training rows: medians of one epoch (shuffle + training "
        "pass + test pass) after an untimed warm-up; inference rows: per round the median "
        f"of {calls}, after warm-up calls; learning rate {LR}")
    out("\n## The matrix\n")
    out(main_table(rows, results, labels))
    out("\nThe paired ratio is the fastest peer's time over numrec's within each round, "
        "median over the rounds: above 1, numrec is faster. GFLOP/s count full products "
        "(per training sample 3 × 2 × multiply-adds, per test or predicted sample "
        "2 × multiply-adds), also where numrec skips zero inputs.")
    names = [n for n in labels if any(n in r["samples"] for r in results.values())]
    out("\n## Every framework (median, spread (max − min) / median, test accuracy after "
        "the first measured epoch)\n")
    out(detail_table(rows, results, labels, names))
    memory = memory_table(rows, results, labels)
    if memory:
        out("\n## Peak resident memory, each framework and row in a fresh process\n")
        out(memory)
        out("\nEach process makes the row's data, runs the row's unit once and exits; the "
            "figure is its `ru_maxrss`. In a training row a peer keeps only the float copy "
            "it trains on, numrec the uint8 pixels (it makes no float copy of them); in an "
            "inference row every framework makes the float test images alone. A peer's "
            "peak includes the uint8 images it converts its floats from (MNIST's: 55 MB) "
            "while both exist; with --quick every process loads the whole data set before "
            "taking its subset.")
    if notes:
        out("\n## Notes\n")
        for note in sorted(notes):
            out(f"- {note}")


# --- main ---------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=DATA,
                        help="data sets (default: those of the default rows)")
    parser.add_argument("--networks", nargs="+", metavar="NETWORK",
                        help=f"networks: {', '.join(NETWORKS)} or 784-...-10")
    parser.add_argument("--batches", nargs="+", type=int, metavar="N",
                        help="training batch sizes (default: 32 128 512)")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                        help="row kinds: training epochs, predict on 10 000, one sample")
    parser.add_argument("--peers", nargs="+", choices=PEER_CHOICES, default=list(PEERS))
    parser.add_argument("--full", action="store_true",
                        help="the whole product of --data, --networks, --batches, --dtypes "
                             "instead of the twelve default rows")
    parser.add_argument("--rounds", type=int, default=5,
                        help="measured rounds per row, frameworks in turn (default 5)")
    parser.add_argument("--calls", type=int, default=None,
                        help=f"timed calls per round of an inference row (default "
                             f"{PREDICT_CALLS} for predict, {LATENCY_CALLS} for one sample)")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="idle seconds before each timed run")
    parser.add_argument("--skip-memory", action="store_true",
                        help="leave out the peak-RSS processes")
    parser.add_argument("--peak-size", type=int, default=2048,
                        help="side of the square product that measures the peak")
    parser.add_argument("--fashion-dir", type=Path, default=None,
                        help=f"Fashion-MNIST's four IDX files (default {FASHION_DIR} if it "
                             "exists, else a stand-in made from MNIST)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: one tiny cell per row kind (2000 training and 500 "
                             "test images, 1 round)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--memory-runner", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    named = {sizes: name for name, sizes in NETWORKS.items()}
    for index, name in enumerate(args.networks or []):
        try:
            sizes = network_sizes(name)
        except ValueError as error:
            parser.error(str(error))
        args.networks[index] = named.get(sizes, name)    # 784-256-10 is "reference"
    if any(b < 1 for b in args.batches or []):
        parser.error("--batches must be positive")
    if args.rounds < 1 or (args.calls is not None and args.calls < 1):
        parser.error("--rounds and --calls must be at least 1")
    if args.settle < 0:
        parser.error("--settle must not be negative")
    if args.fashion_dir is not None:
        if not args.fashion_dir.is_dir():
            parser.error(f"--fashion-dir {args.fashion_dir} is not a directory")
        missing = [n for n in MNIST_FILES.values() if not (args.fashion_dir / n).is_file()]
        if missing:
            parser.error(f"--fashion-dir {args.fashion_dir} lacks {', '.join(missing)}")
    if args.fashion_dir is None and FASHION_DIR.is_dir():
        args.fashion_dir = FASHION_DIR
    if args.quick:
        args.rounds, args.settle = 1, 0.0
    if not args.memory_child and not select_rows(args):
        parser.error("no row matches the filters (add --full for the whole product)")
    return args


class Notes(list):
    def add(self, note):
        if note not in self:
            self.append(note)


def run_rows(rows, args, peers, log, notes):
    """Every row's figures; each data set made once, floats of one dtype at a time."""
    results, data_notes, made = {}, {}, {}
    n_train = n_test = None
    for row in execution_order(rows):
        if row.data not in made:
            made.clear()   # one data set in memory at a time
            log(f"making the {row.data} data")
            data = load(row.data, args.fashion_dir)
            if args.quick:
                data = subset(data, *QUICK_SAMPLES)
            made[row.data] = data
            data_notes[row.data] = (f"{row.data}: {data.source}; {len(data.y_train)} "
                                    f"training and {len(data.y_test)} test samples, "
                                    f"{100 * data.density():.1f} % of training inputs nonzero")
        data = made[row.data]
        add_floats(data, row.dtype)
        n_train, n_test = len(data.y_train), len(data.y_test)
        runners = make_runners([*peers, "numrec"], row, data, notes)
        if row.kind == "train":
            samples, accuracy = train_row(runners, row, n_train, args.rounds, args.settle,
                                          log, notes)
        else:
            calls = args.calls or (PREDICT_CALLS if row.kind == "predict" else LATENCY_CALLS)
            if args.quick:
                calls = min(calls, 3 if row.kind == "predict" else 20)
            samples, accuracy = inference_row(runners, row, data, args.rounds, calls,
                                              args.settle, log)
        del runners
        peak = args.peaks.get(row.dtype)
        results[row] = summarise(row, samples, row_flops(row, n_train, n_test), peak)
        results[row]["accuracy"] = accuracy
        if not args.skip_memory:
            results[row]["peak RSS MB"] = measure_memory(
                row, [*peers, "numrec"], args, notes, log)
    return results, list(data_notes.values())


def main(argv=None):
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return 0

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    notes = Notes()
    rows = select_rows(args)
    peers = [p for p in args.peers if RUNNERS[p].missing() is None]
    for p in args.peers:
        if p not in peers:
            notes.add(f"{RUNNERS[p].label} skipped: {RUNNERS[p].missing()}.")
    if RUNNERS["numrec"].missing():
        raise SystemExit("bench_matrix.py: numrec is not importable: nothing to compare")
    log(f"{len(rows)} rows; measuring the peak")
    args.peaks = measure_peaks(sorted({row.dtype for row in rows}), args.peak_size,
                               args.quick)
    fma = fma_peak()
    results, data_notes = run_rows(rows, args, peers, log, notes)

    labels = {name: LABELS[name] for name in [*peers, "numrec"]}
    header, env, _ = machine_header({}, SimpleNamespace(source="see below"))
    header.pop("data", None)
    header.update(versions([*peers, "numrec"]))
    lines = []

    def out(line=""):
        lines.append(line)
        print(line)

    report(out, header, env, blas_info(), rows, results, labels, args.peaks, fma,
           data_notes, notes, args)
    if args.json:
        figures = {
            "machine": header, "environment": env, "peaks GFLOP/s": args.peaks,
            "fma_peak.c x 2 GFLOP/s": fma, "data": data_notes, "notes": list(notes),
            "settings": {"rounds": args.rounds, "calls": args.calls, "peers": peers,
                         "quick": args.quick, "lr": LR, "init_seed": INIT_SEED,
                         "order_seed": ORDER_SEED},
            "rows": [{"row": asdict(row), "goal": goal(row), **results[row]}
                     for row in rows if row in results],
            "report": "\n".join(lines),
        }
        args.json.write_text(json.dumps(figures, indent=2, default=float) + "\n")
        log(f"wrote {args.json}")
    return 0


def versions(names):
    """The versions each framework reports (imports it)."""
    info = {}
    for name in names:
        runner = RUNNERS[name]()
        module = {"torch-compile": "torch"}.get(name, name)
        if module != "numpy":
            setattr(runner, module, importlib.import_module(module))
        try:
            info.update(runner.versions())
        except Exception:  # noqa: BLE001 - versions are informative only
            pass
    return info


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark scripts start, and their runners train like for like (no timing here)."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _benchmark_module(name):
    """Import ``benchmarks/<name>.py`` (the folder is on sys.path only meanwhile)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_bench_presets_help():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_presets.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in ("--configs", "--repeats", "--target-repeats", "--quick", "--skip-target"):
        assert option in result.stdout
    for config in ("reference", "seed-rust", "seed-pytorch", "deep-adam"):
        assert config in result.stdout


@pytest.fixture(scope="module")
def bench():
    return _benchmark_module("bench_presets")


@pytest.fixture(scope="module")
def small_data(bench):
    """2000 training and 500 test images, in the benchmark's Data."""
    from bench_epoch import Data
    from numrec.datasets import load_mnist
    (x, y), (x_test, y_test) = load_mnist(dtype=np.uint8)
    data = Data(x[:2000].reshape(2000, -1), y[:2000].astype(np.int64),
                x_test[:500].reshape(500, -1), y_test[:500].astype(np.int64), "test")
    data.add_floats()
    return data


def he_weights(setup, seed=0):
    rng = np.random.default_rng(seed)
    return [((rng.standard_normal((n_out, n_in)) * np.sqrt(2 / n_in)).astype(np.float32),
             (0.1 * rng.standard_normal(n_out)).astype(np.float32))
            for n_in, n_out in zip(setup.sizes[:-1], setup.sizes[1:])]


def torch_params(runner):
    return [p.detach().numpy() for p in runner.model.parameters()]


def jax_params(runner):
    return [np.asarray(p) for p in runner.params]


@pytest.mark.parametrize("config", ["reference", "seed-rust", "seed-pytorch", "deep-adam"])
def test_jax_trains_as_pytorch(bench, small_data, config):
    """The JAX runner's hand-written losses, SGD and Adam give PyTorch's weights.

    SGD: two epochs, every element within 1e-3 of how far the weights moved.  Adam turns
    float32 rounding in near-zero gradients into whole steps of ``lr``, so a few elements
    drift apart: one epoch, and the difference's norm within 1 % of the update's.
    """
    pytest.importorskip("torch", reason="the benchmark's PyTorch runner needs torch")
    pytest.importorskip("jax", reason="the benchmark's JAX runner needs jax")
    setup = bench.setups([config])[config].replace(batch_size=100)
    adam = setup.optimizer_name == "adam"
    init = he_weights(setup)
    orders = bench.epoch_orders(setup, 5, 1 if adam else 2, len(small_data.y_train))
    trained = {}
    for name in ("torch", "jax"):
        runner = bench.RUNNERS[name]()
        runner.prepare(small_data)
        runner.start(setup, init)
        for order in orders:
            runner.epoch(order)
        trained[name] = (torch_params if name == "torch" else jax_params)(runner)
    for before, (t, j) in zip([a for pair in init for a in pair], zip(*trained.values())):
        moved = np.abs(t - before).max()
        assert moved > 1e-4          # training changed this parameter
        if adam:
            assert np.linalg.norm(t - j) < 1e-2 * np.linalg.norm(t - before)
        else:
            assert np.abs(t - j).max() < 1e-3 * moved + 1e-6


def test_numrec_trains_as_pytorch(bench, small_data):
    """numrec's runner visits the samples in the order the peers are given, and trains
    the same network: after two epochs its weights are PyTorch's (reference setup)."""
    pytest.importorskip("torch", reason="the benchmark's PyTorch runner needs torch")
    setup = bench.setups(["reference"])["reference"].replace(batch_size=100)
    init = he_weights(setup)
    n = len(small_data.y_train)
    numrec_runner, torch_runner = bench.RUNNERS["numrec"](), bench.RUNNERS["torch"]()
    for runner in (numrec_runner, torch_runner):
        runner.prepare(small_data)
        runner.start(setup, init)
    for seed in (7, 8):
        numrec_runner.epoch(None, seed)
        torch_runner.epoch(bench.epoch_orders(setup, seed, 1, n)[0])
    ours = [np.asarray(p) for p in numrec_runner.model.parameters()]
    for before, mine, theirs in zip([a for pair in init for a in pair], ours,
                                    torch_params(torch_runner)):
        moved = np.abs(theirs - before).max()
        assert moved > 1e-4
        assert np.abs(mine - theirs).max() < 1e-3 * moved + 1e-6


def test_time_to_target_orders_are_fits(bench):
    """The peers' epochs to 96 % follow fit(seed=...)'s successive permutations."""
    setup = bench.setups(["reference"])["reference"]
    orders = bench.epoch_orders(setup, 3, 2, 50)
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(orders[0], rng.permutation(50))
    np.testing.assert_array_equal(orders[1], rng.permutation(50))
    fixed = bench.epoch_orders(setup.replace(shuffle=False), 3, 2, 50)
    np.testing.assert_array_equal(fixed[1], np.arange(50))


def test_bench_kernels_dense_inputs_compares_the_three_ways(capsys):
    """--dense-inputs prints a row per data, batch and kernel, and leaves the kernel
    switches as it found them."""
    kernels = _benchmark_module("bench_kernels")
    from numrec._core._layers import _simd_kernels
    if not _simd_kernels():
        pytest.skip("the kernels for zero inputs need AVX2 and FMA")
    kernels.compare_dense_inputs(1)
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "%" in line]
    assert len(rows) == 3 * 3 * 2
    assert sum("(BLAS)" in row for row in rows) == 3 * 2  # batch 512: no own kernels
    assert _simd_kernels()


def test_bench_kernels_hidden_compares_the_two_layouts(capsys):
    """--hidden prints a row per batch and kernel, and leaves the layer's kernels as it
    found them."""
    kernels = _benchmark_module("bench_kernels")
    from numrec._core._layers import _simd_kernels
    if not _simd_kernels():
        pytest.skip("the kernels for zero inputs need AVX2 and FMA")
    kernels.compare_hidden(1, epochs=False)
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "%" in line]
    assert len(rows) == 2 * 3
    assert all(float(row.split("|")[-2]) > 0 for row in rows)


def test_bench_optimizers_quick_compares_the_levels(capsys):
    """--quick prints a row per step and per network, both levels end with the same
    weights, and the level is left as it was found."""
    optimizers = _benchmark_module("bench_optimizers")
    from numrec._core import _optimizers
    level = _optimizers._step_kernel_level()
    assert optimizers.main(["--quick"]) == 0
    out = capsys.readouterr().out
    steps = [line for line in out.splitlines() if line.startswith("| SGD") or
             line.startswith("| Adam")]
    assert len(steps) == len(optimizers.STEPS)
    epochs = [line for line in out.splitlines() if line.startswith("| reference,") or
              line.startswith("| deep-adam")]
    assert len(epochs) == 2 and all(line.endswith("| yes |") for line in epochs), out
    assert _optimizers._step_kernel_level() == level


def test_bench_cnn_help():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_cnn.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in ("--network", "--batch-sizes", "--samples", "--rounds", "--to-target",
                   "--target-seeds"):
        assert option in result.stdout


@pytest.fixture(scope="module")
def cnn_bench():
    return _benchmark_module("bench_cnn")


def test_bench_cnn_seeds_give_other_weights(cnn_bench):
    first, again, other = (cnn_bench.initial_weights("small", seed) for seed in (0, 0, 1))
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[1], c[1])


def test_bench_cnn_target_summary(cnn_bench, capsys):
    """Medians over seeds, and the median of the per-seed ratios of seconds to numrec's;
    a seed that misses the target counts as infinitely slow."""
    cnn_bench.print_targets({"numrec": [(5, 10.0), (7, 14.0), (6, 12.0)],
                             "torch": [(5, 20.0), None, (6, 18.0)]})
    lines = capsys.readouterr().out.splitlines()
    assert "median   12.0 s, 6 epochs, x 1.00" in lines[0]
    # torch/numrec per seed: 2.0, inf, 1.5 -> median 2.0; seconds 20, inf, 18 -> 20
    assert "median   20.0 s, 6 epochs, x 2.00" in lines[1]
    assert "not within 15 epochs" in lines[1]


def test_bench_cnn_numrec_runner_trains_on_the_given_order(cnn_bench):
    """The runner's reused gather buffers give the training of ``fit(x[order])``,
    epoch after epoch, for orders of any length."""
    rng = np.random.default_rng(1)
    x = rng.random((96, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 96)
    orders = [rng.permutation(96), np.arange(32), rng.permutation(96)]
    runner = cnn_bench.NumrecRunner("small", 1)
    twin = cnn_bench.NumrecRunner("small", 1)
    for order in orders:
        runner.epoch(x, y, None, None, order, 32)
        twin.model.fit(x[order], y[order], epochs=1, batch_size=32, shuffle=False,
                       optimizer=twin.optimizer, threads=1)
    for a, b in zip(runner.model.parameters(), twin.model.parameters()):
        np.testing.assert_array_equal(a, b)


def test_bench_cnn_runners_train_alike(cnn_bench):
    """numrec and PyTorch from the same weights on the same batches: the same logits."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.random((128, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    ours, theirs = cnn_bench.NumrecRunner("small", 1), cnn_bench.TorchRunner("small", 1)
    for runner in (ours, theirs):
        runner.epoch(x, y, x[:16], y[:16], np.arange(128), 64)
    import torch

    with torch.no_grad():
        expected = theirs.model(torch.from_numpy(x[:16])).numpy()
    np.testing.assert_allclose(ours.model.predict(x[:16], raw=True), expected, rtol=1e-3,
                               atol=1e-4)


# --- bench_matrix.py ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def matrix():
    return _benchmark_module("bench_matrix")


def test_bench_matrix_quick(tmp_path):
    """--quick runs one tiny cell per row kind and writes figures that follow from the
    samples it measured: the paired ratio, GFLOP/s and share of the peak."""
    out = tmp_path / "matrix.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_matrix.py"), "--quick", "--peers", "numpy",
         "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "| network | data | batch | dtype | numrec | fastest peer | paired ratio" \
        in result.stdout
    figures = json.loads(out.read_text())
    assert [r["row"]["kind"] for r in figures["rows"]] == ["train", "predict", "latency"]
    train = figures["rows"][0]
    numpy_s, numrec_s = train["samples"]["numpy"], train["samples"]["numrec"]
    assert train["paired ratio"] == pytest.approx(numpy_s[0] / numrec_s[0])
    macs = 784 * 256 + 256 * 10
    assert train["flops"] == 6 * macs * 2000 + 2 * macs * 500
    assert train["numrec GFLOP/s"] == pytest.approx(train["flops"] / numrec_s[0] / 1e9)
    peak = figures["peaks GFLOP/s"]["float32"]
    assert train["numrec % peak"] == pytest.approx(100 * train["numrec GFLOP/s"] / peak)
    # Same weights and batches: the same test accuracy after the epoch.
    assert train["accuracy"]["numpy"][0] == pytest.approx(train["accuracy"]["numrec"][0],
                                                          abs=0.01)
    for row in figures["rows"]:
        assert set(row["peak RSS MB"]) == {"numpy", "numrec"}
        assert all(mb > 10 for mb in row["peak RSS MB"].values())


@pytest.mark.parametrize("argv, message", [
    (["--networks", "100-10"], "784-...-10"),
    (["--batches", "0"], "--batches must be positive"),
    (["--fashion-dir", "/nowhere/at/all"], "is not a directory"),
    (["--fashion-dir", str(BENCHMARKS)], "lacks train-images-idx3-ubyte.gz"),
    (["--networks", "784-64-10"], "no row matches"),
])
def test_bench_matrix_bad_options(argv, message):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_matrix.py"), *argv],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_matrix_rows(matrix):
    """The default rows are the issue's twelve, each with its goal; --full is the product."""
    args = matrix.parse_args([])
    rows = matrix.select_rows(args)
    assert len(rows) == 12
    goals = {(r.kind, r.network, r.data, r.batch, r.dtype): matrix.goal(r) for r in rows}
    assert goals["train", "reference", "mnist", 32, "float32"] == ("ratio", 3.0)
    assert goals["train", "reference", "mnist", 512, "float32"] == ("ratio", 2.0)
    assert goals["train", "reference", "standardised", 32, "float32"] == ("ratio", 1.5)
    assert goals["train", "784-512-256-10", "mnist", 512, "float32"] == ("ratio", 1.25)
    assert goals["train", "784-1024-1024-10", "mnist", 128, "float32"] == ("peak", 85.0)
    assert goals["train", "reference", "mnist", 128, "float64"] == ("ratio", 1.5)
    assert goals["latency", "reference", "mnist", 1, "float32"] == ("torch ratio", 3.0)
    full = matrix.select_rows(matrix.parse_args(["--full"]))
    assert sum(r.kind == "train" for r in full) == 3 * 3 * 3 * 2
    assert sum(r.kind != "train" for r in full) == 2 * 3 * 3 * 2
    wide = matrix.select_rows(matrix.parse_args(["--networks", "784-1024-1024-10"]))
    assert [(r.network, r.batch) for r in wide] == [("784-1024-1024-10", 128)]


def test_bench_matrix_data(matrix):
    """Standardised inputs: mean 0 and deviation 1 per pixel, all but a few nonzero; the
    Fashion-MNIST stand-in is dilated MNIST with about half the pixels nonzero."""
    rng = np.random.default_rng(0)
    x = (rng.random((300, 784)) < 0.2) * rng.integers(1, 256, (300, 784))
    x[:, :30] = 0                                   # pixels blank in every image
    pixels = matrix.Data(x.astype(np.uint8), np.arange(300) % 10, x[:50].astype(np.uint8),
                         np.arange(50) % 10, "test")
    standard = matrix.standardise(pixels)
    assert standard.x_train_u8 is None
    assert standard.density() > 0.999     # zero only where a pixel equals its mean
    np.testing.assert_allclose(standard.x_train_float[:, 30:].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(standard.x_train_float[:, 30:].std(axis=0), 1, rtol=1e-12)
    stand_in = matrix.fashion_stand_in(pixels)
    assert stand_in.density() >= matrix.STAND_IN_DENSITY
    assert "STAND-IN" in stand_in.source
    image = np.zeros((1, 784), np.uint8)
    image[0, 28 * 5 + 5] = 7
    grown = matrix.dilate(image).reshape(28, 28)
    assert sorted(zip(*np.nonzero(grown))) == [(4, 5), (5, 4), (5, 5), (5, 6), (6, 5)]


@pytest.fixture
def jax_x64_restored():
    """JAX's float64 switch (which the float64 JAX runner turns on) as it was before."""
    try:
        import jax
    except ImportError:
        yield
        return
    before = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", before)


def test_matrix_runners_train_alike(matrix, jax_x64_restored):
    """Every runner trains a deeper network in float64 from the same weights on the same
    batches as PyTorch: the same weights after one epoch, and the same outputs."""
    pytest.importorskip("torch")
    from numrec.datasets import load_mnist
    (x, y), (x_test, y_test) = load_mnist(dtype=np.uint8)
    data = matrix.Data(x[:600].reshape(600, -1), y[:600].astype(np.int64),
                       x_test[:100].reshape(100, -1), y_test[:100].astype(np.int64), "test")
    matrix.add_floats(data, "float64")
    sizes = (784, 32, 16, 10)
    init = matrix.initial_weights(0, sizes, np.float64)
    order = matrix.batch_order(5, 600)
    names = [n for n in ("torch", "numpy", "jax", "numrec")
             if matrix.RUNNERS[n].missing() is None]
    trained = {}
    for name in names:
        runner = matrix.RUNNERS[name](sizes, np.float64)
        runner.prepare(data)
        runner.start(init, 0.5)
        runner.epoch(order, 5, 50)
        if name == "torch":
            trained[name] = [p.detach().numpy() for p in runner.model.parameters()]
        elif name == "numpy":
            trained[name] = [a for pair in runner.layers for a in pair]
        elif name == "jax":
            trained[name] = [np.asarray(p) for p in runner.params]
        else:
            trained[name] = [np.asarray(p) for p in runner.model.parameters()]
        predict, as_input = runner.predictor()
        trained[name + " outputs"] = np.asarray(predict(as_input(data.x_test_f64)))
    for name in names[1:]:
        for before, theirs, mine in zip(init, trained["torch"], trained[name]):
            assert mine.dtype == np.float64
            moved = np.abs(theirs - before).max()
            assert moved > 1e-4
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-9 * moved + 1e-12)
        np.testing.assert_allclose(trained[name + " outputs"], trained["torch outputs"],
                                   rtol=1e-10, atol=1e-12)

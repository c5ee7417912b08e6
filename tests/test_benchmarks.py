"""The benchmark scripts start, and their runners train like for like (no timing here)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


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
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_presets
    finally:
        sys.path.remove(str(BENCHMARKS))
    return bench_presets


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


def test_bench_cnn_help():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_cnn.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in ("--network", "--batch-sizes", "--samples", "--rounds", "--to-target"):
        assert option in result.stdout


def test_bench_cnn_runners_train_alike():
    """numrec and PyTorch from the same weights on the same batches: the same logits."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_cnn
    finally:
        sys.path.remove(str(BENCHMARKS))
    rng = np.random.default_rng(0)
    x = rng.random((128, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    ours, theirs = bench_cnn.NumrecRunner("small", 1), bench_cnn.TorchRunner("small", 1)
    for runner in (ours, theirs):
        runner.epoch(x, y, x[:16], y[:16], np.arange(128), 64)
    import torch

    with torch.no_grad():
        expected = theirs.model(torch.from_numpy(x[:16])).numpy()
    np.testing.assert_allclose(ours.model.predict(x[:16], raw=True), expected, rtol=1e-3,
                               atol=1e-4)

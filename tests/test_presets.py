"""``numrec.presets`` and ``numrec train``'s options for networks other than the reference."""
import json
import subprocess
import sys

import numpy as np
import pytest

import numrec
from numrec.presets import PRESETS, Setup


def run_numrec(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "numrec", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def test_the_reference_preset_is_the_reference_network_bit_for_bit():
    ours, reference = PRESETS["reference"].model(seed=0), numrec.mnist_mlp(seed=0)
    assert repr(ours) == repr(reference)
    for a, b in zip(ours.parameters(), reference.parameters()):
        assert np.array_equal(a, b)
    assert type(ours.loss) is numrec.MSE
    assert PRESETS["reference"].optimizer().get_config() == {"lr": 0.75}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_its_network_and_training(name):
    setup = PRESETS[name]
    model = setup.model(seed=1, dtype=np.float64)
    widths = [c.out_features for c in model.components if isinstance(c, numrec.Dense)]
    assert widths == [*setup.hidden, 10]
    assert model.predict(np.zeros((2, 784))).shape == (2, 10)
    assert setup.loss().__class__ is model.loss.__class__


def test_the_seed_presets_say_what_the_issue_of_each_benchmark_was():
    rust, torch_like = PRESETS["seed-rust"], PRESETS["seed-pytorch"]
    assert (rust.output_activation, rust.loss_name, rust.lr, rust.batch_size, rust.init) == (
        "softmax", "cross-entropy", 0.8, 512, "he")
    assert (torch_like.activation, torch_like.output_activation, torch_like.loss_name,
            torch_like.lr, torch_like.batch_size, torch_like.shuffle) == (
        "relu", "identity", "softmax-cross-entropy", 0.1, 512, False)


@pytest.mark.parametrize("changes, words", [
    ({"loss_name": "softmax-cross-entropy"}, "needs the output activation identity"),
    ({"loss_name": "cross-entropy"}, "needs the output activation softmax, not sigmoid"),
    ({"output_activation": "identity", "loss_name": "binary-cross-entropy"},
     "needs the output activation sigmoid"),
    ({"optimizer_name": "adam", "momentum": 0.9}, "momentum, nesterov and classic are SGD's"),
    ({"betas": (0.9, 0.99)}, "betas are Adam's"),
    ({"nesterov": True}, "nesterov and classic need a momentum"),
    ({"classic": True, "momentum": 0.9, "nesterov": True}, "no Nesterov form"),
    ({"activation": "swish"}, "unknown activation 'swish'"),
    ({"init": "orthogonal"}, "unknown init 'orthogonal'"),
])
def test_setups_that_do_not_fit_together_are_refused(changes, words):
    with pytest.raises(ValueError, match=words):
        Setup().replace(**changes)


@pytest.mark.parametrize("args, words", [
    (["--preset", "keras"], "--preset"),
    (["--loss", "softmax-cross-entropy"], "the loss softmax-cross-entropy needs the output "
                                          "activation identity, not sigmoid"),
    (["--optimizer", "adam", "--momentum", "0.9"], "momentum, nesterov and classic are SGD's"),
    (["--activation", "relu", "--alpha", "0.1"], "--alpha is the leaky ReLU's slope"),
    (["--momentum", "1"], "--momentum"),
    (["--betas", "0.9"], "--betas"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--init", "zeros"], "--init"),
])
def test_train_options_that_do_not_fit_are_usage_errors(args, words, tmp_path):
    result = run_numrec("train", *args, "--output", tmp_path / "m.npz")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("numrec") and "Traceback" not in result.stderr
    assert words in lines[0]
    assert not (tmp_path / "m.npz").exists()


def test_train_with_options_builds_what_they_say(tmp_path, small_data):
    out = tmp_path / "m.npz"
    result = run_numrec("train", "--data", small_data, "--epochs", "1", "--json", "--quiet",
                        "--hidden", "40", "20", "--activation", "tanh",
                        "--output-activation", "identity", "--loss", "softmax-cross-entropy",
                        "--optimizer", "adam", "--lr", "0.002", "--betas", "0.8", "0.99",
                        "--init", "glorot", "--no-shuffle", "--batch-size", "100",
                        "--output", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["optimizer"] == {"name": "adam", **numrec.Adam(
        lr=0.002, betas=(0.8, 0.99)).get_config()}
    assert (summary["hidden"], summary["activation"], summary["loss_function"],
            summary["shuffle"], summary["init"]) == ([40, 20], "tanh",
                                                     "softmax-cross-entropy", False, "glorot")
    model = numrec.load(out)
    assert [type(c).__name__ for c in model.components] == [
        "Dense", "Tanh", "Dense", "Tanh", "Dense"]
    assert type(model.loss) is numrec.SoftmaxCrossEntropy
    probabilities = model.predict(np.zeros((3, 784), np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed-rust", "seed-pytorch"])
def test_the_seed_presets_reach_96_percent(name, tmp_path):
    result = run_numrec("train", "--preset", name, "--json", "--quiet", "--output",
                        tmp_path / "m.npz")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["reached_target"] and summary["test_accuracy"] > 0.96
    print(f"{name}: {summary['epochs']} epochs, {summary['train_seconds']:.2f} s")
    evaluated = run_numrec("evaluate", tmp_path / "m.npz", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["test_accuracy"] == pytest.approx(
        summary["test_accuracy"], abs=2e-4)


def test_classic_momentum_is_the_reference_codes_form():
    setup = Setup(momentum=0.99, classic=True, lr=0.01)
    assert setup.optimizer().get_config() == numrec.SGD(0.01, 0.99, classic=True).get_config()
    assert "classic momentum 0.99" in setup.describe()

"""The ``numrec`` command: train, evaluate, help, and every kind of user mistake."""
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import numrec
from numrec import cli
from numrec.datasets import MNIST_FILES, load_mnist, write_idx

TRAIN_SUMMARY_KEYS = {"epochs", "test_accuracy", "train_seconds", "model", "reached_target",
                      "loss", "val_accuracy", "epoch_seconds", "batch_size", "lr", "seed",
                      "hidden"}


def run_numrec(*args, cwd=None, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "numrec", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def assert_one_line_error(result, status=1):
    """The command failed with ``status`` and exactly one line on stderr; return it."""
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("numrec"), lines[0]
    return lines[0]


def last_json(stdout):
    return json.loads(stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("untrained") / "untrained.npz"
    numrec.mnist_mlp(seed=0).save(path)
    return path


@pytest.fixture
def no_matplotlib(tmp_path):
    """An environment in which ``import matplotlib`` fails."""
    fake = tmp_path / "fake-site" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("No module named \'matplotlib\'")\n')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(fake.parent), *filter(None, [env.get("PYTHONPATH")])])
    return env


# --- version and help ----------------------------------------------------------------------

def test_version():
    result = run_numrec("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"numrec {numrec.__version__}"


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"]])
def test_help(command):
    result = run_numrec(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: numrec" in result.stdout
    assert "examples:" in result.stdout


def test_main_returns_the_exit_status(capsys):
    assert cli.main(["--version"]) == 0
    assert cli.main(["train", "--lr", "-1"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["evaluate", "no-such-model.npz"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("numrec") for line in err)


# --- usage errors (status 2) ---------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "fast"], "--lr"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--batch-size", "1.5"], "--batch-size"),
    (["train", "--hidden", "abc"], "--hidden"),
    (["train", "--hidden", "256", "0"], "--hidden"),
    (["train", "--hidden"], "--hidden"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--target-accuracy", "150"], "--target-accuracy"),
    (["train", "--target-accuracy", "0"], "--target-accuracy"),
    (["train", "--no-such-option"], "--no-such-option"),
    (["evaluate"], "MODEL"),
    (["predict", "model.npz"], "IMAGE"),
    (["fly"], "fly"),
    ([], "command"),
])
def test_usage_errors(args, words):
    line = assert_one_line_error(run_numrec(*args), status=2)
    assert words in line


@pytest.mark.parametrize("text, percent", [("96", 96.0), ("0.96", 96.0), ("97.5", 97.5),
                                           ("1", 1.0), ("0.5", 50.0)])
def test_target_accuracy_is_a_percentage_or_a_fraction(text, percent):
    assert cli._accuracy_percent(text) == pytest.approx(percent)


# --- training ------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_defaults_reach_96_percent_and_evaluate_agrees(tmp_path):
    """The flagship run: ``numrec train`` with its defaults, then ``numrec evaluate``."""
    (tmp_path / "tmp").mkdir()
    result = run_numrec("train", "--json", "--output", "tmp/model.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert TRAIN_SUMMARY_KEYS <= summary.keys()
    assert summary["test_accuracy"] > 0.96
    assert summary["reached_target"] is True
    assert summary["model"] == "tmp/model.npz"
    assert summary["epochs"] == len(summary["loss"]) == len(summary["val_accuracy"])
    assert summary["train_seconds"] == pytest.approx(sum(summary["epoch_seconds"]))
    assert (summary["batch_size"], summary["lr"], summary["seed"], summary["hidden"]) == (
        cli.DEFAULT_BATCH_SIZE, cli.DEFAULT_LR, cli.DEFAULT_SEED, list(cli.DEFAULT_HIDDEN))
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == summary["epochs"]
    print(f"numrec train: {summary['epochs']} epochs, {summary['train_seconds']:.2f} s, "
          f"{100 * summary['test_accuracy']:.2f} %")

    model_path = tmp_path / "tmp" / "model.npz"
    evaluated = run_numrec("evaluate", model_path, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = last_json(evaluated.stdout)
    assert report["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=2e-4)
    text = run_numrec("evaluate", model_path)
    assert f"{100 * report['test_accuracy']:.2f} %" in text.stdout


def test_train_json_summary(tmp_path, small_data):
    out = tmp_path / "small.npz"
    result = run_numrec("train", "--data", small_data, "--epochs", "2", "--json",
                        "--output", out, "--hidden", "32", "16", "--batch-size", "64",
                        "--lr", "0.3", "--seed", "5")
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert TRAIN_SUMMARY_KEYS <= summary.keys()
    assert summary["epochs"] == 2 and len(summary["loss"]) == 2
    assert summary["reached_target"] is False and summary["target_accuracy"] is None
    assert (summary["batch_size"], summary["lr"], summary["seed"], summary["hidden"]) == (
        64, 0.3, 5, [32, 16])
    assert summary["model"] == str(out)
    assert "\r" not in result.stdout  # no live bar when stdout is not a terminal
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert "loss" in epoch_lines[0] and "%" in epoch_lines[0] and " s" in epoch_lines[0]
    model = numrec.load(out)
    assert [p.shape for p in model.parameters()] == [(32, 784), (32,), (16, 32), (16,),
                                                    (10, 16), (10,)]
    _, (x_test, y_test) = load_mnist(small_data)
    accuracy = np.mean(model.predict_classes(x_test) == y_test)
    assert accuracy == pytest.approx(summary["test_accuracy"], abs=2e-3)


def test_train_is_reproducible(tmp_path, small_data):
    args = ("train", "--data", small_data, "--epochs", "1", "--json", "--quiet")
    first = last_json(run_numrec(*args, "--output", tmp_path / "a.npz").stdout)
    second = last_json(run_numrec(*args, "--output", tmp_path / "b.npz").stdout)
    assert first["loss"] == second["loss"]
    assert first["test_accuracy"] == second["test_accuracy"]


def test_train_quiet(tmp_path, small_data):
    result = run_numrec("train", "--data", small_data, "--epochs", "1", "--quiet",
                        "--output", tmp_path / "q.npz")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "q.npz" in lines[0] and "%" in lines[0]
    result = run_numrec("train", "--data", small_data, "--epochs", "1", "--quiet", "--json",
                        "--output", tmp_path / "q.npz")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert json.loads(result.stdout)["epochs"] == 1


def test_train_default_output_in_current_directory(tmp_path, small_data):
    result = run_numrec("train", "--data", small_data, "--epochs", "1", "--quiet",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / cli.DEFAULT_OUTPUT).is_file()


def test_train_stops_at_the_target(tmp_path, small_data):
    result = run_numrec("train", "--data", small_data, "--target-accuracy", "0.5",
                        "--json", "--output", tmp_path / "t.npz")
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert summary["reached_target"] is True
    assert summary["epochs"] == 1 and summary["test_accuracy"] > 0.5
    assert summary["target_accuracy"] == pytest.approx(0.5)


def test_train_missing_the_target_saves_and_fails(tmp_path, small_data):
    out = tmp_path / "m.npz"
    result = run_numrec("train", "--data", small_data, "--epochs", "2",
                        "--target-accuracy", "99.99", "--output", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "did not exceed 99.99 %" in result.stdout.splitlines()[-1]
    assert out.is_file()
    numrec.load(out)


def test_train_divergence(tmp_path, small_data):
    out = tmp_path / "d.npz"
    result = run_numrec("train", "--data", small_data, "--epochs", "3", "--lr", "1e100",
                        "--output", out)
    line = assert_one_line_error(result)
    assert "diverged" in line and "lower learning rate" in line
    assert not out.exists()


@pytest.mark.parametrize("signum, status, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")],
                         ids=["ctrl-c", "sigterm"])
def test_train_stopped_by_a_signal_saves_the_model(tmp_path, signum, status, word):
    """Ctrl-C, or SIGTERM (a scheduler's stop), saves the model trained so far."""
    out = tmp_path / "interrupted.npz"
    process = subprocess.Popen(
        [sys.executable, "-m", "numrec", "train", "--epochs", "50", "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 300
        seen = []
        while time.monotonic() < deadline:
            if selector.select(timeout=1):
                line = process.stdout.readline()
                if not line:
                    break
                seen.append(line)
                if line.startswith("epoch "):
                    break
        assert seen and seen[-1].startswith("epoch "), seen
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert f"numrec: {word} in epoch" in stderr and str(out) in stderr
    model = numrec.load(out)
    x_test = load_mnist(dtype=np.uint8)[1][0][:100]
    assert model.predict_classes(x_test).shape == (100,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interrupted.npz"]  # no temporary


def test_a_second_sigterm_during_the_save_stops_at_once_leaving_nothing(tmp_path, monkeypatch):
    """The save after a first signal: a second SIGTERM ends it, the temporary file goes."""
    import os

    def slow_savez(file, **arrays):
        file.write(b"PK\x03\x04 part of an archive")
        os.kill(os.getpid(), signal.SIGTERM)   # the second signal arrives mid-save
        raise AssertionError("SIGTERM did not stop the save")

    monkeypatch.setattr(np, "savez", slow_savez)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(cli.Terminated):
            cli._save_uninterrupted(numrec.mnist_mlp(seed=0), tmp_path / "m.npz")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is previous


# --- evaluate ------------------------------------------------------------------------------

def test_evaluate_prints_accuracy_and_confusion_matrix(small_data, untrained_model):
    result = run_numrec("evaluate", untrained_model, "--data", small_data, "--json")
    assert result.returncode == 0, result.stderr
    report = last_json(result.stdout)
    confusion = np.array(report["confusion_matrix"])
    labels = load_mnist(small_data)[1][1]
    assert confusion.shape == (10, 10)
    np.testing.assert_array_equal(confusion.sum(axis=1), np.bincount(labels, minlength=10))
    assert report["test_accuracy"] == pytest.approx(np.trace(confusion) / len(labels))

    text = run_numrec("evaluate", untrained_model, "--data", small_data)
    assert text.returncode == 0, text.stderr
    assert f"{100 * report['test_accuracy']:.2f} %" in text.stdout
    assert "rows: true digit, columns: predicted digit" in text.stdout
    rows = [line.split() for line in text.stdout.splitlines()
            if line.split() and line.split()[0].isdigit()]
    assert len(rows) == 10
    assert [int(v) for v in rows[3][1:11]] == confusion[3].tolist()


def test_format_confusion():
    confusion = np.diag(np.arange(1, 11)) * 100
    text = cli.format_confusion(confusion)
    assert len(text.splitlines()) == 12
    assert "100.00 %" in text


@pytest.mark.parametrize("kind", ["garbage", "empty", "missing", "directory", "truncated"])
def test_evaluate_broken_model_file(tmp_path, kind, untrained_model, small_data):
    path = tmp_path / "model.npz"
    if kind == "garbage":
        path.write_bytes(os.urandom(2000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "truncated":
        path.write_bytes(Path(untrained_model).read_bytes()[:1000])
    line = assert_one_line_error(run_numrec("evaluate", path, "--data", small_data))
    assert "model.npz" in line


# --- bad data, bad output paths ------------------------------------------------------------

def _bad_data_dir(tmp_path, small_data, kind):
    directory = tmp_path / "data"
    if kind == "missing":
        return directory
    if kind == "file":
        directory.write_text("not a directory\n")
        return directory
    directory.mkdir()
    if kind == "empty":
        return directory
    for name in MNIST_FILES:
        (directory / name).write_bytes((small_data / name).read_bytes())
    if kind == "truncated":
        target = directory / "t10k-images-idx3-ubyte"
        target.write_bytes(target.read_bytes()[:-100])
    elif kind == "garbage":
        (directory / "train-labels-idx1-ubyte").write_bytes(b"\x12\x34" * 40)
    elif kind == "labels":
        labels = np.full(3000, 12, dtype=np.uint8)
        write_idx(directory / "train-labels-idx1-ubyte", labels)
    return directory


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("kind", ["missing", "file", "empty", "truncated", "garbage", "labels"])
def test_malformed_data(tmp_path, small_data, untrained_model, command, kind):
    directory = _bad_data_dir(tmp_path, small_data, kind)
    if command == "train":
        args = ["train", "--epochs", "1", "--output", tmp_path / "m.npz"]
    else:
        args = ["evaluate", untrained_model]
    line = assert_one_line_error(run_numrec(*args, "--data", directory))
    assert "data" in line
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("kind", ["no-directory", "directory"])
def test_bad_output_path_fails_before_training(tmp_path, small_data, kind):
    output = tmp_path / "nowhere" / "m.npz" if kind == "no-directory" else tmp_path
    result = run_numrec("train", "--data", small_data, "--epochs", "1", "--output", output)
    line = assert_one_line_error(result)
    assert str(output) in line
    assert "epoch" not in result.stdout


# --- pictures ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_plot_without_matplotlib(tmp_path, small_data, untrained_model, no_matplotlib,
                                 command):
    args = (["train", "--epochs", "1", "--output", tmp_path / "m.npz"] if command == "train"
            else ["evaluate", untrained_model])
    result = run_numrec(*args, "--data", small_data, "--plot", tmp_path / "pictures",
                        env=no_matplotlib)
    line = assert_one_line_error(result)
    assert "pip install matplotlib" in line
    assert "epoch" not in result.stdout
    assert not (tmp_path / "m.npz").exists()


def test_plot_pictures(tmp_path, small_data):
    pytest.importorskip("matplotlib")
    out, pictures = tmp_path / "m.npz", tmp_path / "pictures"
    result = run_numrec("train", "--data", small_data, "--epochs", "2", "--output", out,
                        "--plot", pictures, "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (pictures / "history.png").is_file()
    assert all(Path(p).is_file() for p in summary["plots"])
    again = run_numrec("evaluate", out, "--data", small_data, "--plot", tmp_path / "eval")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()


# --- the progress display ------------------------------------------------------------------

class _Terminal:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return True


def test_live_bar_only_on_a_terminal():
    history = numrec.History(loss=[0.1], val_accuracy=[0.9], seconds=[1.5])
    terminal = _Terminal()
    progress = cli._Progress(50, quiet=False, stream=terminal)
    progress.bar(4096, 60000)
    assert terminal.text.startswith("\repoch  1/50 [") and "4096/60000" in terminal.text
    progress.epoch_done(1, history)
    assert "\r\033[K" in terminal.text
    assert terminal.text.endswith("test accuracy  90.00 %    1.50 s\n")

    quiet = _Terminal()
    progress = cli._Progress(50, quiet=True, stream=quiet)
    progress.bar(4096, 60000)
    progress.epoch_done(1, history)
    assert quiet.text == ""


def test_a_network_that_does_not_learn_is_not_reported_as_a_success(tmp_path, small_data):
    """Three sigmoid-saturating hidden layers at the reference rate stay at chance level."""
    out = tmp_path / "stuck.npz"
    result = run_numrec("train", "--data", small_data, "--epochs", "1", "--json", "--quiet",
                        "--hidden", "512", "256", "128", "--output", out)
    assert result.returncode == 1, (result.stdout, result.stderr)
    summary = last_json(result.stdout)
    assert summary["stalled"] is True and summary["test_accuracy"] < 0.15
    warning = result.stderr.strip().splitlines()[-1]
    assert warning.startswith("numrec: warning: the network is not learning")
    assert "lower learning rate than --lr 0.75, especially with several hidden layers" in warning
    assert out.is_file()  # saved all the same


def test_a_plot_directory_that_cannot_be_made_fails_before_training(tmp_path, small_data):
    pytest.importorskip("matplotlib")
    (tmp_path / "file").write_text("not a directory")
    result = run_numrec("train", "--data", small_data, "--epochs", "1", "--output",
                        tmp_path / "m.npz", "--plot", tmp_path / "file" / "pictures")
    line = assert_one_line_error(result)
    assert "--plot: cannot make the directory" in line
    assert "epoch" not in result.stdout and not (tmp_path / "m.npz").exists()


def test_the_example_checks_its_output_before_training(tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "train_mnist.py"
    result = subprocess.run([sys.executable, example, "--output", tmp_path / "no" / "m.npz"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such directory" in result.stderr
    assert "MNIST" not in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("option, value", [("--threads", "3000000000"), ("--threads", "5000"),
                                           ("--batch-size", "3000000000"),
                                           ("--hidden", "3000000000")])
def test_huge_counts_are_usage_errors(option, value):
    line = assert_one_line_error(run_numrec("train", option, value), status=2)
    assert option in line and "at most" in line

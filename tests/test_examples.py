"""Every script in examples/ runs (with small options) and prints what it should."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numrec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def run(name, *args, cwd, timeout=600):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return result


def test_every_example_is_tested():
    tested = {"train_mnist.py", "worked_example.py", "custom_activation.py",
              "fashion_mnist.py", "plot_training.py", "mnist_cnn.py"}
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_worked_example(tmp_path):
    result = run("worked_example.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("matches") == 8 and "DIFFERS" not in out
    assert "all quantities match the README" in out
    for value in ("-0.025", "0.858", "0.208924", "-0.272186", "0.406219", "-0.073329",
                  "0.274983"):
        assert value in out


def test_train_mnist_small(tmp_path):
    model_path = tmp_path / "small.npz"
    result = run("train_mnist.py", "--epochs", 1, "--train-samples", 5000,
                 "--output", model_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "MNIST: 5000 training and 10000 test images" in out
    assert "epoch  1" in out and "after 1 epochs" in out
    assert f"saved the model to {model_path}" in out
    assert "predictions identical to the trained model: True" in out
    assert "first ten test digits: 7 2 1 0 4 1 4 9 5 9" in out
    model = numrec.load(model_path)
    assert [p.shape for p in model.parameters()] == [(256, 784), (256,), (10, 256), (10,)]


def test_mnist_cnn_small(tmp_path):
    model_path = tmp_path / "cnn.npz"
    result = run("mnist_cnn.py", "--epochs", 1, "--train-samples", 2000,
                 "--test-samples", 500, "--output", model_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "MNIST: 2000 training and 500 test images" in out
    assert "(None, 16, 24, 24)" in out and "(None, 32, 4, 4)" in out
    assert "epoch  1" in out and "compiled loop" in out
    assert "predictions identical to the trained model: True" in out
    model = numrec.load(model_path)
    assert model.input_shape == (1, 28, 28)
    assert [type(c).__name__ for c in model.components] == [
        "Conv2D", "ReLU", "MaxPool2D", "Conv2D", "ReLU", "MaxPool2D", "Flatten", "Dense"]


@pytest.mark.slow
def test_mnist_cnn_reaches_99_percent(tmp_path):
    result = run("mnist_cnn.py", cwd=tmp_path, timeout=3600)
    assert result.returncode == 0, result.stderr
    assert "reached 99.0 %" in result.stdout


@pytest.mark.slow
def test_train_mnist_reaches_96_percent(tmp_path):
    result = run("train_mnist.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "reached 96.0 %" in result.stdout
    assert (tmp_path / "mnist_model.npz").is_file()


def test_custom_activation(tmp_path):
    result = run("custom_activation.py", "--epochs", 1, "--train-samples", 3000, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Swish derivative vs finite differences" in out
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "compiled loop" in lines["LeakyReLU (built-in)"]
    assert "segmented loop" in lines["Swish (Python)"]
    accuracies = [float(line.split("(%): ")[1].split()[0])
                  for line in out.splitlines() if "(%): " in line]
    assert len(accuracies) == 2 and min(accuracies) > 70
    assert "best after 1 epochs" in out


def test_fashion_mnist_missing_directory(tmp_path):
    result = run("fashion_mnist.py", tmp_path / "nowhere", "--epochs", 1, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "apt-get install dataset-fashion-mnist" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.skipif(not FASHION.is_dir(),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist(tmp_path):
    result = run("fashion_mnist.py", FASHION, "--epochs", 1, "--train-samples", 10000,
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "10000 training and 10000 test images" in out
    assert "Ankle boot" in out and "Trouser" in out
    accuracy = float(out.strip().splitlines()[-1].split()[2])
    assert accuracy > 60


def test_plot_training(tmp_path):
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    out_dir = tmp_path / "pictures"
    result = run("plot_training.py", "--epochs", 1, "--train-samples", 2000,
                 "--output-dir", out_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = ["history.png", "confusion_matrix.png", "misclassified.png",
             "first_layer_weights.png"]
    for name in names:
        assert f"wrote {out_dir / name}" in result.stdout
        with Image.open(out_dir / name) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_examples_type_check():
    """The examples type-check against numrec's API (the stubs of the compiled classes).

    Errors inside numrec's own modules are not this test's business (``silent``).
    """
    api = pytest.importorskip("mypy.api")
    stdout, stderr, status = api.run([str(EXAMPLES),
                                      "--no-incremental"])
    assert status == 0, stdout + stderr


def test_worked_example_importable():
    """The example's own check, run in-process."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import worked_example
    finally:
        sys.path.remove(str(EXAMPLES))
    values = worked_example.compute()
    np.testing.assert_allclose(values["delta2"], [0.208924, -0.272186, 0.295432], atol=1e-6)


def test_stubs_match_compiled_modules(tmp_path):
    """The .pyi stubs of numrec._core agree with the compiled modules (mypy's stubtest)."""
    pytest.importorskip("mypy.stubtest")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nfollow_imports = silent\nignore_missing_imports = True\n")
    modules = [f"numrec._core.{name}" for name in
               ("_layers", "_conv", "_shaping", "_activations", "_losses", "_optimizers",
                "_training")]
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", str(config),
         "--allowlist", str(Path(__file__).parent / "stubtest-allowlist.txt"),
         # Cython releases differ in the helper names they add (3.3 adds fewer).
         "--ignore-unused-allowlist", *modules],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in modules:
        stub = Path(numrec.__file__).parent / "_core" / f"{name.rsplit('.', 1)[1]}.pyi"
        assert stub.is_file()

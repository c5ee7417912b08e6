"""ONNX export: onnxruntime running the exported file gives numrec's outputs."""
import subprocess
import sys

import numpy as np
import pytest

import numrec
from numrec.onnx_export import CONVERTERS, ExportError
from numrec.registry import BUILTINS

from python_components import PyDense, PySigmoid

try:
    import onnx  # noqa: F401
    import onnxruntime
except ImportError as exc:  # the optional extra: pip install ".[onnx]"
    onnx = onnxruntime = None
    MISSING = str(exc)
else:
    MISSING = ""

needs_onnx = pytest.mark.skipif(onnxruntime is None,
                                reason=f"onnx and onnxruntime are not installed ({MISSING})")

#: float32 models agree with onnxruntime to this (the issue's bound) ...
TOL32 = 1e-5
#: ... float64 ones to float64 rounding.
TOL64 = 1e-12


def run_onnx(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(["output"], {"input": x})
    return output


def scaled(pixels, dtype):
    """Pixels as Sequential.predict scales uint8 inputs."""
    return np.multiply(pixels, 1 / 255, dtype=dtype)


@pytest.fixture(scope="module")
def trained(mnist):
    """The reference network after one epoch on 12 000 training images, float32 and 64."""
    (x_train, y_train), _ = mnist
    models = {}
    for dtype in (np.float32, np.float64):
        model = numrec.mnist_mlp(seed=0, dtype=dtype)
        model.fit(x_train[:12000], y_train[:12000], epochs=1, batch_size=32,
                  optimizer=numrec.SGD(lr=0.75), seed=0)
        models[np.dtype(dtype).name] = model
    return models


def test_every_builtin_layer_and_activation_has_a_converter():
    kinds = {"layer", "activation"}
    builtins = {entry.cls for entry in BUILTINS.values() if entry.kind in kinds}
    missing = sorted(cls.__name__ for cls in builtins - set(CONVERTERS))
    assert not missing, f"add converters to numrec/onnx_export.py for {missing}"


@needs_onnx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reference_network_on_the_mnist_test_set(trained, mnist, tmp_path, dtype):
    model = trained[dtype]
    _, (x_test, _) = mnist
    path = tmp_path / "mnist.onnx"
    model.to_onnx(path)
    x = scaled(x_test, dtype)
    output = run_onnx(path, x)
    expected = model.predict(x_test)
    assert output.dtype == np.dtype(dtype) and output.shape == (10000, 10)
    error = np.abs(output.astype(np.float64) - expected).max()
    assert error < (TOL32 if dtype == "float32" else TOL64), error
    assert (output.argmax(1) != expected.argmax(1)).sum() <= 1


@needs_onnx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_model_outputs_probabilities(mnist, tmp_path, dtype):
    (x_train, y_train), (x_test, _) = mnist
    model = numrec.Sequential([numrec.Dense(784, 64, seed=0, dtype=dtype), numrec.ReLU(),
                               numrec.Dense(64, 10, seed=1, dtype=dtype), numrec.Identity()])
    model.fit(x_train[:6000], y_train[:6000], loss=numrec.SoftmaxCrossEntropy(),
              optimizer=numrec.SGD(lr=0.1), seed=0)
    x = scaled(x_test, dtype)
    tol = TOL32 if dtype == np.float32 else TOL64
    model.to_onnx(tmp_path / "p.onnx")
    probabilities = run_onnx(tmp_path / "p.onnx", x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=tol)
    assert np.abs(probabilities - model.predict(x)).max() < tol
    model.to_onnx(tmp_path / "raw.onnx", raw=True)
    logits = run_onnx(tmp_path / "raw.onnx", x)
    assert np.abs(logits - model.predict(x, raw=True)).max() < tol * 10
    assert onnx.load(str(tmp_path / "p.onnx")).metadata_props[0].value == "probabilities"


@needs_onnx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["LeakyReLU", "ReLU", "Sigmoid", "Tanh", "Identity",
                                  "Softmax"])
def test_each_activation(name, dtype, tmp_path):
    entry = BUILTINS[name]
    hidden = entry.cls(**entry.examples[-1])
    model = numrec.Sequential([numrec.Dense(12, 9, seed=0, dtype=dtype), hidden,
                               numrec.Dense(9, 4, seed=1, dtype=dtype), entry.cls()])
    # Around zero and far from it: both branches of the piecewise functions, saturation.
    x = np.random.default_rng(0).standard_normal((64, 12)).astype(dtype) * 4
    x[0] = 0
    model.to_onnx(tmp_path / "m.onnx")
    error = np.abs(run_onnx(tmp_path / "m.onnx", x) - model.predict(x)).max()
    assert error < (TOL32 if dtype == np.float32 else TOL64), error


def small_cnn(dtype, padding=1, stride=1):
    """Every image layer: a padded, strided convolution, pooling, dropout and flatten."""
    return numrec.Sequential([
        numrec.Conv2D(1, 4, 3, stride=stride, padding=padding, seed=0, dtype=dtype),
        numrec.ReLU(),
        numrec.MaxPool2D(2), numrec.Dropout(0.3, seed=0),
        numrec.Conv2D(4, 6, (3, 2), seed=1, dtype=dtype), numrec.Tanh(),
        numrec.Flatten(), numrec.Dense(6 * 5 * 6, 10, seed=2, dtype=dtype),
    ], input_shape=(1, 14, 14), loss=numrec.SoftmaxCrossEntropy())


@needs_onnx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding, stride", [(1, 1), ((2, 1), (1, 2))])
def test_convolutional_network(dtype, padding, stride, tmp_path):
    model = small_cnn(dtype, padding, stride) if stride == 1 else numrec.Sequential([
        numrec.Conv2D(1, 3, 3, stride=stride, padding=padding, seed=0, dtype=dtype),
        numrec.MaxPool2D((2, 1)), numrec.Flatten(),
        numrec.Dense(3 * 8 * 7, 5, seed=1, dtype=dtype),
    ], input_shape=(1, 14, 14))
    x = np.random.default_rng(0).random((50, 196)).astype(dtype)
    model.to_onnx(tmp_path / "cnn.onnx")
    if dtype == np.float32:
        output = run_onnx(tmp_path / "cnn.onnx", x)
    else:  # onnxruntime's CPU provider has no float64 Conv: ONNX's reference evaluator
        from onnx.reference import ReferenceEvaluator

        (output,) = ReferenceEvaluator(str(tmp_path / "cnn.onnx")).run(None, {"input": x})
    expected = model.predict(x)       # evaluation mode: dropout is the identity
    assert output.shape == expected.shape
    error = np.abs(output - expected).max()
    assert error < (TOL32 if dtype == np.float32 else TOL64), error


@needs_onnx
def test_leaky_relu_slope_is_kept_in_float64(tmp_path):
    # A float32 attribute would turn 0.1 into 0.100000001490116: 1.5e-9 per unit input.
    model = numrec.Sequential([numrec.Dense(1, 1, dtype=np.float64), numrec.LeakyReLU(0.1)])
    model.components[0].weights[...] = 1
    model.components[0].bias[...] = 0
    model.to_onnx(tmp_path / "m.onnx")
    x = np.array([[-1e6], [-1.0], [0.0], [3.0]])
    np.testing.assert_array_equal(run_onnx(tmp_path / "m.onnx", x), model.predict(x))


@pytest.mark.parametrize("components, index, name", [
    (lambda: [numrec.Dense(4, 3), PySigmoid()], 1, "PySigmoid()"),
    (lambda: [PyDense(np.zeros((3, 4), np.float32), np.zeros(3, np.float32)),
              numrec.Sigmoid()], 0, "PyDense"),
])
def test_python_component_is_named(components, index, name, tmp_path):
    model = numrec.Sequential(components())
    path = tmp_path / "m.onnx"
    path.write_bytes(b"before")
    with pytest.raises(ExportError) as info:
        model.to_onnx(path)
    message = str(info.value)
    assert f"components[{index}]" in message and name in message
    assert "Python-written" in message and "Dense" in message
    assert path.read_bytes() == b"before"        # nothing written over the old file


def test_subclass_of_a_builtin_is_refused(tmp_path):
    class MySigmoid(numrec.Sigmoid):
        pass

    model = numrec.Sequential([numrec.Dense(4, 3), MySigmoid()])
    with pytest.raises(ExportError, match=r"components\[1\] .*MySigmoid"):
        model.to_onnx(tmp_path / "m.onnx")


def run_numrec(*args, env=None):
    return subprocess.run([sys.executable, "-m", "numrec", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


@needs_onnx
def test_cli_export(trained, mnist, tmp_path):
    model_path, onnx_path = tmp_path / "m.npz", tmp_path / "m.onnx"
    trained["float32"].save(model_path)
    result = run_numrec("export", model_path, onnx_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {onnx_path}"
    _, (x_test, _) = mnist
    error = np.abs(run_onnx(onnx_path, scaled(x_test[:500], np.float32))
                   - trained["float32"].predict(x_test[:500])).max()
    assert error < TOL32


def test_cli_export_without_onnx(tmp_path):
    import os

    fake = tmp_path / "fake-site" / "onnx"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("No module named \'onnx\'")\n')
    env = dict(os.environ, PYTHONPATH=str(fake.parent))
    numrec.mnist_mlp(seed=0).save(tmp_path / "m.npz")
    result = run_numrec("export", tmp_path / "m.npz", tmp_path / "m.onnx", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("numrec: error: cannot export") and ".[onnx]" in line
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_missing_model(tmp_path):
    result = run_numrec("export", tmp_path / "none.npz", tmp_path / "m.onnx")
    assert result.returncode == 1
    assert result.stderr.strip() == f"numrec: error: model file not found: {tmp_path}/none.npz"

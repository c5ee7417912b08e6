"""numrec.plotting: every picture is written as a valid PNG of a sensible size."""
import doctest
import sys

import numpy as np
import pytest

import numrec

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from numrec import plotting  # noqa: E402


def _png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        image.load()
        return image.size


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(0)
    x = (rng.random((60, 784)) * 255).astype(np.uint8)
    y = rng.integers(0, 10, 60)
    return x, y


@pytest.fixture(scope="module")
def model():
    return numrec.mnist_mlp(seed=0)


def test_confusion_matrix_counts():
    confusion = plotting.confusion_matrix(np.array([0, 1, 1, 2, 2, 2]),
                                          np.array([0, 1, 2, 2, 2, 0]), n_classes=3)
    np.testing.assert_array_equal(confusion, [[1, 0, 0], [0, 1, 1], [1, 0, 2]])
    assert confusion.sum() == 6


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="same length"):
        plotting.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="labels in 0..9"):
        plotting.confusion_matrix([0, 10], [0, 1])
    with pytest.raises(TypeError, match="integer labels"):
        plotting.confusion_matrix(np.array([0.5]), np.array([0]))


def test_module_doctests():
    result = doctest.testmod(plotting, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_plot_history(tmp_path):
    history = numrec.History(loss=[0.2, 0.1, 0.05], val_accuracy=[0.9, 0.95, 0.97],
                             seconds=[1.0, 1.0, 1.0])
    path = plotting.plot_history(history, tmp_path / "h.png")
    width, height = _png_size(path)
    assert 600 <= width <= 2000 and 250 <= height <= 1200
    # a mapping works too, and so does a history without validation data
    _png_size(plotting.plot_history({"loss": [1.0, 0.5]}, tmp_path / "h2.png"))
    with pytest.raises(ValueError, match="no epochs"):
        plotting.plot_history({"loss": []}, tmp_path / "h3.png")


def test_plot_confusion_matrix(tmp_path):
    confusion = np.diag(np.arange(10) + 90) + 1
    width, height = _png_size(plotting.plot_confusion_matrix(confusion, tmp_path / "c.png"))
    assert 400 <= width <= 1500 and 400 <= height <= 1500
    with pytest.raises(ValueError, match="square"):
        plotting.plot_confusion_matrix(np.zeros((2, 3)), tmp_path / "bad.png")


def test_plot_misclassified(tmp_path, digits):
    x, y = digits
    predicted = (y + (np.arange(len(y)) % 2)) % 10      # every other one is wrong
    width, height = _png_size(plotting.plot_misclassified(x, y, predicted, tmp_path / "m.png"))
    assert 400 <= width <= 1500 and 400 <= height <= 1500
    small = plotting.plot_misclassified(x.reshape(-1, 28, 28) / 255, y, predicted,
                                        tmp_path / "m4.png", max_images=4)
    _png_size(small)
    # nothing wrong: still a picture, saying so
    _png_size(plotting.plot_misclassified(x, y, y, tmp_path / "none.png"))
    with pytest.raises(ValueError, match="same length"):
        plotting.plot_misclassified(x, y[:-1], y, tmp_path / "bad.png")


def test_plot_first_layer_weights(tmp_path, model):
    width, height = _png_size(plotting.plot_first_layer_weights(model, tmp_path / "w.png"))
    assert 500 <= width <= 1500 and 500 <= height <= 1500
    with pytest.raises(ValueError, match="not a square"):
        plotting.plot_first_layer_weights(numrec.Dense(5, 3), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="no layer"):
        plotting.plot_first_layer_weights(numrec.Sequential([numrec.Sigmoid()]),
                                          tmp_path / "bad.png")


@pytest.mark.parametrize("with_history", [True, False])
def test_write_all(tmp_path, model, digits, with_history):
    x, y = digits
    history = numrec.History(loss=[0.1], val_accuracy=[0.5], seconds=[1.0])
    directory = tmp_path / "deep" / "pictures"
    paths = plotting.write_all(directory, model, x, y, history if with_history else None)
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    expected = {"confusion_matrix.png", "misclassified.png", "first_layer_weights.png"}
    if with_history:
        expected.add("history.png")
    assert names == sorted(expected)
    for path in paths:
        width, height = _png_size(path)
        assert width >= 300 and height >= 150


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        plotting.plot_confusion_matrix(np.eye(2), tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()

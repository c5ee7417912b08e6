"""A model remembers the data it was trained on (``Sequential.dataset``): fit records it,
model files, copies and pickles keep it, and ``numrec evaluate`` uses it by default."""
import copy
import json
import pickle

import numpy as np
import pytest

import numrec
from numrec import cli
from numrec.datasets import MNIST_FILES, load_mnist, write_idx
from numrec.datasets.mnist import DATA_ENV

DIGITS = [str(d) for d in range(10)]


def run(capsys, *args):
    """``numrec ARGS`` in this process: (exit status, stdout, stderr lines)."""
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def one_line_error(capsys, *args):
    status, _, err = run(capsys, *args)
    assert status == 1 and len(err) == 1 and err[0].startswith("numrec"), err
    return err[0]


@pytest.fixture
def digits():
    (x, y), _ = load_mnist(dtype=np.uint8)
    return x[:300], y[:300]


def test_fit_records_the_dataset(digits):
    model = numrec.mnist_mlp(seed=0)
    assert model.dataset is None
    model.fit(*digits, dataset={"name": "MNIST", "class_names": DIGITS})
    assert model.dataset == {"name": "MNIST", "input_shape": [784], "n_classes": 10,
                             "class_names": DIGITS, "source": None}
    model.fit(*digits, dataset={"name": "digits", "input_shape": (28, 28)})
    assert model.dataset["input_shape"] == [28, 28]
    assert numrec.mnist_mlp(seed=0).dataset is None  # an attribute of each model


@pytest.mark.parametrize("dataset, match", [
    ("MNIST", "must be a dict"),
    ({}, "needs a name"),
    ({"name": ""}, "needs a name"),
    ({"name": "x", "class_names": ["a", "b"]}, "10 strings"),
    ({"name": "x", "input_shape": [27, 28]}, "does not hold the 784 values"),
    ({"name": "x", "input_shape": [-784]}, "positive integers"),
    ({"name": "x", "source": 3}, "source must be a string"),
    ({"name": "x", "colour": "red"}, "unknown keys"),
])
def test_bad_dataset_descriptions(digits, dataset, match):
    model = numrec.mnist_mlp(seed=0)
    with pytest.raises((TypeError, ValueError), match=match):
        model.fit(*digits, dataset=dataset)
    assert model.dataset is None


def test_model_files_copies_and_pickles_keep_the_dataset(tmp_path, digits):
    model = numrec.mnist_mlp(seed=0)
    model.fit(*digits, dataset={"name": "Fashion-MNIST", "source": "/data/fashion",
                                "class_names": [f"c{i}" for i in range(10)]})
    model.save(tmp_path / "m.npz")
    for other in (numrec.load(tmp_path / "m.npz"), copy.deepcopy(model),
                  pickle.loads(pickle.dumps(model))):
        assert other.dataset == model.dataset


def test_files_without_a_dataset_still_load(tmp_path):
    numrec.mnist_mlp(seed=0).save(tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz") as archive:
        assert "dataset" not in json.loads(archive["architecture"].tobytes())
    assert numrec.load(tmp_path / "old.npz").dataset is None


def rewrite_architecture(path, change):
    with np.load(path) as archive:
        arrays = dict(archive)
    architecture = json.loads(arrays["architecture"].tobytes())
    change(architecture)
    arrays["architecture"] = np.frombuffer(json.dumps(architecture).encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("entry", [[1, 2], {"name": "x"},
                                   {"name": "x", "input_shape": [784], "n_classes": "10"}])
def test_a_bad_dataset_entry_is_a_model_file_error(tmp_path, entry):
    path = tmp_path / "m.npz"
    numrec.mnist_mlp(seed=0).save(path)
    rewrite_architecture(path, lambda architecture: architecture.update(dataset=entry))
    with pytest.raises(numrec.ModelFileError, match="invalid 'dataset' entry"):
        numrec.load(path)


def test_an_unsavable_dataset_is_refused_by_save(tmp_path):
    model = numrec.mnist_mlp(seed=0)
    model.dataset = {"name": "x"}
    with pytest.raises(ValueError, match="cannot save the model's dataset"):
        model.save(tmp_path / "m.npz")


# --- numrec train and evaluate -------------------------------------------------------------

@pytest.fixture
def fashion_like(tmp_path):
    """An MNIST-format directory whose test set differs from MNIST's: 2000 training
    images and the 200 test images after MNIST's first 500, labels shifted by one."""
    (x_train, y_train), (x_test, y_test) = load_mnist(dtype=np.uint8, flatten=False)
    directory = tmp_path / "fashion-like"
    directory.mkdir()
    arrays = (x_train[:2000], ((y_train[:2000] + 1) % 10).astype(np.uint8),
              x_test[500:700], ((y_test[500:700] + 1) % 10).astype(np.uint8))
    for name, array in zip(MNIST_FILES, arrays):
        write_idx(directory / name, array)
    return directory


def test_train_records_the_data_and_evaluate_uses_it(tmp_path, capsys, fashion_like,
                                                      monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    model_path = tmp_path / "m.npz"
    status, _, err = run(capsys, "train", "--data", fashion_like, "--epochs", "2",
                       "--quiet", "--output", model_path)
    assert status == 0, err
    model = numrec.load(model_path)
    assert model.dataset == {"name": "fashion-like", "input_shape": [784], "n_classes": 10,
                             "class_names": None, "source": str(fashion_like)}
    status, out, _ = run(capsys, "evaluate", model_path, "--json")
    report = json.loads(out)
    assert status == 0 and report["n_samples"] == 200
    assert report["data"] == {"name": "fashion-like", "source": str(fashion_like),
                              "trained_on": True}
    _, (x_test, y_test) = load_mnist(fashion_like)
    expected = np.mean(model.predict_classes(x_test) == y_test)
    assert report["test_accuracy"] == pytest.approx(expected)
    status, out, _ = run(capsys, "evaluate", model_path)
    assert out.splitlines()[0] == (f"test set: fashion-like ({fashion_like}), the data the "
                                   f"model was trained on")


def test_other_data_is_evaluated_with_a_note(tmp_path, capsys, fashion_like):
    model = numrec.mnist_mlp(seed=0)
    model.dataset = {"name": "MNIST", "input_shape": [784], "n_classes": 10,
                     "class_names": DIGITS, "source": None}
    model.save(tmp_path / "m.npz")
    status, out, err = run(capsys, "evaluate", tmp_path / "m.npz", "--data", fashion_like,
                           "--json")
    assert status == 0 and json.loads(out)["n_samples"] == 200
    assert err == ["numrec: note: the model was trained on MNIST (the bundled copy)"]


def test_a_model_of_the_bundled_data_ignores_numrec_data(tmp_path, capsys, fashion_like,
                                                          monkeypatch):
    model = numrec.mnist_mlp(seed=0)
    model.dataset = {"name": "MNIST", "input_shape": [784], "n_classes": 10,
                     "class_names": DIGITS, "source": None}
    model.save(tmp_path / "m.npz")
    numrec.mnist_mlp(seed=0).save(tmp_path / "old.npz")
    monkeypatch.setenv(DATA_ENV, str(fashion_like))
    status, out, _ = run(capsys, "evaluate", tmp_path / "m.npz", "--json")
    assert status == 0 and json.loads(out)["n_samples"] == 10000
    status, out, _ = run(capsys, "evaluate", tmp_path / "old.npz", "--json")  # as before
    assert status == 0 and json.loads(out)["data"]["trained_on"] is False
    assert json.loads(out)["n_samples"] == 200


def test_data_of_another_shape_is_refused(tmp_path, capsys):
    (x_train, y_train), (x_test, y_test) = load_mnist(dtype=np.uint8, flatten=False)
    small = tmp_path / "small-images"
    small.mkdir()
    for name, array in zip(MNIST_FILES, (x_train[:50, :20, :20], y_train[:50].astype(np.uint8),
                                         x_test[:50, :20, :20], y_test[:50].astype(np.uint8))):
        write_idx(small / name, np.ascontiguousarray(array))
    model = numrec.mnist_mlp(seed=0)
    model.save(tmp_path / "plain.npz")
    line = one_line_error(capsys, "evaluate", tmp_path / "plain.npz", "--data", small)
    assert "(n, 28, 28)" in line and "(50, 20, 20)" in line
    # A recorded shape that the data does not have (the model was not made by fit).
    model.dataset = {"name": "tiles", "input_shape": [20, 20], "n_classes": 10}
    model.save(tmp_path / "recorded.npz")
    line = one_line_error(capsys, "evaluate", tmp_path / "recorded.npz", "--data",
                          _mnist_dir(tmp_path))
    assert line == ("numrec: error: the model was trained on tiles (20 x 20 values per "
                    "sample), but the test data of mnist-copy has 784")


def _mnist_dir(tmp_path):
    (x_train, y_train), (x_test, y_test) = load_mnist(dtype=np.uint8, flatten=False)
    directory = tmp_path / "mnist-copy"
    directory.mkdir()
    for name, array in zip(MNIST_FILES, (x_train[:50], y_train[:50].astype(np.uint8),
                                         x_test[:50], y_test[:50].astype(np.uint8))):
        write_idx(directory / name, array)
    return directory


def test_missing_training_data_is_a_one_line_error(tmp_path, capsys):
    model = numrec.mnist_mlp(seed=0)
    model.dataset = {"name": "gone", "input_shape": [784], "n_classes": 10,
                     "source": str(tmp_path / "gone")}
    model.save(tmp_path / "m.npz")
    line = one_line_error(capsys, "evaluate", tmp_path / "m.npz")
    assert "trained on gone" in line and "give --data DIR" in line

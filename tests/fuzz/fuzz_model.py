"""Fuzz target: the model loader, :func:`numrec.load` (``.npz`` archives; a file that
starts with ``[layers]`` goes to the seed's text format, which ``fuzz_seed.py`` covers).

Every input must give a working :class:`~numrec.Sequential` or a
:class:`~numrec.ModelFileError`.
"""
import io
import os
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import instrumented_imports, main, workfile  # noqa: E402

with instrumented_imports():
    import numpy as np
    import numrec
    from numrec import ModelFileError


def _saved(model):
    path = workfile(b"", "seed.npz")
    model.save(path)
    with open(path, "rb") as file:
        return file.read()


def _deflated(data):
    """The same archive with its entries deflated (as numpy.savez_compressed writes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info.filename, old.read(info.filename))
    return out.getvalue()


def seeds():
    """Small valid model files: float32 and float64, with and without hidden layers, a
    loss entry, stored and deflated."""
    models = [
        numrec.Sequential([numrec.Dense(3, 2, seed=0), numrec.Sigmoid()]),
        numrec.Sequential([numrec.Dense(4, 3, seed=1, dtype=np.float64),
                           numrec.LeakyReLU(0.2), numrec.Dense(3, 2, seed=2,
                                                               dtype=np.float64),
                           numrec.Softmax()]),
        numrec.Sequential([numrec.Dense(2, 2, seed=3), numrec.ReLU(), numrec.Dense(2, 3)],
                          loss=numrec.SoftmaxCrossEntropy()),
    ]
    stored = [_saved(model) for model in models]
    return stored + [_deflated(stored[0])]


def check(data):
    path = workfile(data, "model.npz")
    try:
        model = numrec.load(path)
    except ModelFileError as error:
        assert str(error).startswith(path) and "\n" not in str(error), str(error)
        assert len(str(error)) < 1000, str(error)
        return
    assert isinstance(model, numrec.Sequential)
    if model.n_inputs is not None:
        out = model.predict(np.zeros((2, model.n_inputs), dtype=model.dtype))
        assert out.shape[0] == 2


if __name__ == "__main__":
    main(check, seeds, "model loader")

"""Fuzz target: the seed's text model format, :func:`numrec.seed_format.read_seed_model`.

Every input must give a :class:`~numrec.Sequential` or a :class:`~numrec.ModelFileError`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import instrumented_imports, main, workfile  # noqa: E402

with instrumented_imports():
    import numpy as np
    import numrec
    from numrec import ModelFileError
    from numrec.seed_format import read_seed_model


def seeds():
    """Seed text files of a few small networks, as the seed writes them."""
    networks = [
        [numrec.Dense(3, 2, seed=0), numrec.LeakyReLU(0.2), numrec.Dense(2, 3, seed=1)],
        [numrec.Dense(4, 2, seed=2)],
        [numrec.Dense(2, 3, seed=3), numrec.LeakyReLU(0.01), numrec.Dense(3, 3, seed=4),
         numrec.LeakyReLU(0.01), numrec.Dense(3, 2, seed=5)],
    ]
    out = []
    for components in networks:
        path = workfile(b"", "seed.txt")
        numrec.Sequential(components).save(path)
        with open(path, "rb") as file:
            out.append(file.read())
    return out + [b"[layers]\n[2, 1]\n\n[weights]\n[0.5, -1e-3]\n\n[biases]\n[1]\n\n"
                  b"[alpha]\n0.2\n"]


def check(data):
    path = workfile(data, "model.txt")
    try:
        model = read_seed_model(path)
    except ModelFileError as error:
        assert str(error).startswith(path) and "\n" not in str(error), str(error)
        assert len(str(error)) < 1000, str(error)
        return
    assert isinstance(model, numrec.Sequential)
    out = model.predict(np.zeros((1, model.n_inputs), dtype=model.dtype))
    assert np.isfinite(out).all()


if __name__ == "__main__":
    main(check, seeds, "seed text format")

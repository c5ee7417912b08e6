"""The seed's text model files (``numrec.seed_format``): reading, writing, load/save, CLI."""
import json
import os
import subprocess
import sys
from decimal import Decimal, localcontext

import numpy as np
import pytest
from PIL import Image

import numrec
from numrec import ModelFileError
from numrec.datasets import load_mnist
from numrec.images import load_digit
from numrec.seed_format import is_seed_model, read_seed_model, write_seed_model

from python_components import PyDense


# A 3 -> 2 -> 2 network with numbers whose forward pass is exact in float32:
#   W1 = [[0.5, -1, 2], [1.5, 0.25, -0.75]]   b1 = [0.5, -2]
#   W2 = [[1, -0.5], [2, 0.75]]                b2 = [0.25, -1]     alpha = 0.5
# written column by column (nalgebra's order).
TINY = """\
[layers]
[3, 2, 2]

[weights]
[0.5, 1.5, -1, 0.25, 2, -0.75]
[1, 2, -0.5, 0.75]

[biases]
[0.5, -2]
[0.25, -1]

[alpha]
0.5
"""
TINY_W1 = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
TINY_W2 = [[1.0, -0.5], [2.0, 0.75]]
TINY_X = [1.0, 2.0, 3.0]
# By hand: z1 = W1 x + b1 = [0.5 - 2 + 6 + 0.5, 1.5 + 0.5 - 2.25 - 2] = [5, -2.25];
# a1 = [5, 0.5 * -2.25] = [5, -1.125];
# z2 = W2 a1 + b2 = [5 + 0.5625 + 0.25, 10 - 0.84375 - 1] = [5.8125, 8.15625].
TINY_Z2 = [5.8125, 8.15625]

# The seed's worked example (its README): 3 -> 2 -> 3, alpha 0.2, sigmoid outputs.
WORKED = """\
[layers]
[3, 2, 3]

[weights]
[-0.75, 0.25, 0.5, -0.5, -0.25, 0.75]
[-0.75, 0.5, -0.25, 0.75, -0.5, 0.25]

[biases]
[0, 1]
[0.75, 0.5, 0.25]

[alpha]
0.2
"""


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def write(tmp_path, text, name="model.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode("ascii") if isinstance(text, str) else text)
    return path


def bits(array):
    array = np.asarray(array)
    return array.view({4: np.uint32, 8: np.uint64}[array.dtype.itemsize])


def random_floats(rng, shape, dtype):
    """Finite floats drawn from every bit pattern: all exponents, subnormals, signed zeros."""
    uint = {np.float32: np.uint32, np.float64: np.uint64}[dtype]
    values = rng.integers(0, np.iinfo(uint).max, size=shape, dtype=uint, endpoint=True)
    values = values.view(dtype)
    return np.where(np.isfinite(values), values, dtype(-0.0))


def seed_mlp(sizes, alpha, output="sigmoid", dtype=np.float32, seed=0):
    components = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        components.append(numrec.Dense(n_in, n_out, seed=seed + index, dtype=dtype))
        if index < len(sizes) - 2:
            components.append(numrec.LeakyReLU(alpha))
    if output == "sigmoid":
        components.append(numrec.Sigmoid())
    elif output == "softmax":
        components.append(numrec.Softmax())
    return numrec.Sequential(components)


def numpy_forward(x, layers, alpha, output):
    """The seed's forward pass in NumPy: (weights, bias) pairs, leaky ReLU between."""
    a = np.asarray(x, dtype=np.float64)
    for index, (w, b) in enumerate(layers):
        z = a @ np.asarray(w, dtype=np.float64).T + np.asarray(b, dtype=np.float64)
        a = np.where(z < 0, alpha * z, z) if index < len(layers) - 1 else z
    return {"sigmoid": sigmoid, "softmax": softmax, "none": lambda z: z}[output](a)


def dense_params(model):
    return [(layer.weights.copy(), layer.bias.copy())
            for layer in model.components if isinstance(layer, numrec.Dense)]


# --- reading hand-written files --------------------------------------------------------------

def test_tiny_network_column_major_by_hand(tmp_path):
    path = write(tmp_path, TINY)
    model = read_seed_model(path, output="none")
    kinds = [type(c).__name__ for c in model.components]
    assert kinds == ["Dense", "LeakyReLU", "Dense"]
    assert model.components[1].alpha == 0.5
    np.testing.assert_array_equal(model.components[0].weights, TINY_W1)
    np.testing.assert_array_equal(model.components[2].weights, TINY_W2)
    np.testing.assert_array_equal(model.components[0].bias, [0.5, -2])
    np.testing.assert_array_equal(model.components[2].bias, [0.25, -1])
    assert model.dtype == np.float32
    # Every step of the hand computation is exact in float32.
    np.testing.assert_array_equal(model.predict(np.array([TINY_X])), [TINY_Z2])


def test_tiny_network_sigmoid_output(tmp_path):
    model = read_seed_model(write(tmp_path, TINY), output="sigmoid")
    assert isinstance(model.components[-1], numrec.Sigmoid)
    np.testing.assert_allclose(model.predict(np.array([TINY_X]))[0],
                               sigmoid(np.array(TINY_Z2)), rtol=1e-6)


def test_tiny_network_softmax_output(tmp_path):
    model = read_seed_model(write(tmp_path, TINY))          # softmax is the default
    assert isinstance(model.components[-1], numrec.Softmax)
    np.testing.assert_allclose(model.predict(np.array([TINY_X]))[0],
                               softmax(np.array(TINY_Z2)), rtol=1e-6)


def test_seed_worked_example(tmp_path):
    """The README's 3 -> 2 -> 3 example, in float64: a1 = [-0.025, 1.375], then the outputs."""
    model = read_seed_model(write(tmp_path, WORKED), output="sigmoid", dtype=np.float64)
    assert model.dtype == np.float64
    x = np.array([[0.25, 0.5, 0.75]])
    hidden = numrec.Sequential(model.components[:2]).predict(x)[0]
    np.testing.assert_allclose(hidden, [-0.025, 1.375], rtol=1e-12)
    out = model.predict(x)[0]
    # z2 = [1.8, -0.2, 0.6]: the README's Wolfram input.
    np.testing.assert_allclose(out, sigmoid(np.array([1.8, -0.2, 0.6])), rtol=1e-12)
    np.testing.assert_allclose(out, [0.858, 0.450, 0.646], atol=5e-4)


def test_line_ends_and_blanks_are_tolerated(tmp_path):
    text = TINY.replace("\n", "  \r\n").replace("[weights]", "\n[weights]").rstrip("\r\n ")
    model = read_seed_model(write(tmp_path, text), output="none")
    np.testing.assert_array_equal(model.predict(np.array([TINY_X])), [TINY_Z2])
    spaced = TINY.replace(", ", " ,\t").replace("[3", "[ 3")
    model = read_seed_model(write(tmp_path, spaced, "spaced.txt"), output="none")
    np.testing.assert_array_equal(model.predict(np.array([TINY_X])), [TINY_Z2])


def test_exponents_and_signs(tmp_path):
    text = TINY.replace("[0.5, 1.5, -1, 0.25, 2, -0.75]", "[5e-1, +1.5E0, -1., .25, 2, -75e-2]")
    model = read_seed_model(write(tmp_path, text), output="none")
    np.testing.assert_array_equal(model.components[0].weights, TINY_W1)


def test_decimals_are_rounded_correctly_to_float32(tmp_path):
    """A decimal just off a float32 midpoint: float64 lands on the midpoint, but the
    right float32 is the nearest one to the decimal itself (as the seed's parser gives)."""
    one, step = Decimal(1), Decimal(2) ** -24          # half the float32 spacing at 1
    with localcontext() as context:
        context.prec = 100
        above = one + step + Decimal(2) ** -80           # nearer 1 + 2**-23
        below = one + step - Decimal(2) ** -80           # nearer 1
        tie_even_down = one + step                       # exactly halfway: to even (1)
        tie_even_up = one + 3 * step                     # halfway: to even (1 + 2**-22)
    values = [above, below, tie_even_down, tie_even_up]
    up = np.nextafter(np.float32(1), np.float32(2))
    expected = np.array([up, 1, 1, np.nextafter(up, np.float32(2))], dtype=np.float32)
    # The naive route (float64 first) gets the first one wrong: the test can fail.
    assert np.float32(float(above)) == np.float32(1)
    text = f"[layers]\n[2, 2]\n\n[weights]\n[{', '.join(map(str, values))}]\n\n" \
           f"[biases]\n[0, 0]\n\n[alpha]\n0.01\n"
    model = read_seed_model(write(tmp_path, text), output="none")
    assert bits(model.components[0].weights.T.ravel()).tolist() == bits(expected).tolist()


def test_is_seed_model(tmp_path):
    assert is_seed_model(write(tmp_path, TINY))
    assert is_seed_model(write(tmp_path, "[layers]", "bare.txt"))
    assert is_seed_model(write(tmp_path, "[layers]\r\n[2]\n", "crlf.txt"))
    assert not is_seed_model(write(tmp_path, "[layers] x\n", "other.txt"))
    assert not is_seed_model(write(tmp_path, "", "empty.txt"))
    npz = tmp_path / "model.npz"
    numrec.Sequential([numrec.Dense(3, 2)]).save(npz)
    assert not is_seed_model(npz)
    with pytest.raises(FileNotFoundError):
        is_seed_model(tmp_path / "absent.txt")


# --- writing ---------------------------------------------------------------------------------

def worked_model(dtype=np.float32):
    first, second = numrec.Dense(3, 2, dtype=dtype), numrec.Dense(2, 3, dtype=dtype)
    first.weights[...] = [[-0.75, 0.5, -0.25], [0.25, -0.5, 0.75]]
    first.bias[...] = [0, 1]
    second.weights[...] = [[-0.75, 0.75], [0.5, -0.5], [-0.25, 0.25]]
    second.bias[...] = [0.75, 0.5, 0.25]
    return numrec.Sequential([first, numrec.LeakyReLU(0.2), second, numrec.Sigmoid()])


def test_written_text_is_the_seeds_layout(tmp_path):
    """What the seed's own writer prints for these weights, character for character."""
    path = tmp_path / "worked.txt"
    write_seed_model(worked_model(), path)
    assert path.read_text() == WORKED


@pytest.mark.parametrize("output", ["sigmoid", "none",
                                    "softmax"])
def test_round_trip_float32_is_bit_identical(tmp_path, output):
    rng = np.random.default_rng(7)
    model = seed_mlp([20, 16, 9, 5], alpha=0.125, output=output)
    specials = np.array([np.finfo(np.float32).max, -np.finfo(np.float32).max,
                         np.finfo(np.float32).smallest_subnormal, np.finfo(np.float32).tiny,
                         -0.0, 0.0, 0.1, 1 / 3, 1e-7, 123456789.0], dtype=np.float32)
    for layer in model.components:
        if isinstance(layer, numrec.Dense):
            layer.weights[...] = random_floats(rng, layer.weights.shape, np.float32)
            layer.bias[...] = random_floats(rng, layer.bias.shape, np.float32)
    model.components[0].weights.ravel()[:specials.size] = specials
    path = tmp_path / "model.txt"
    write_seed_model(model, path)
    back = read_seed_model(path, output=output)
    assert [type(c) for c in back.components] == [type(c) for c in model.components]
    assert back.components[1].alpha == 0.125
    for original, read in zip(model.parameters(), back.parameters()):
        assert read.dtype == np.float32 and read.shape == original.shape
        assert np.array_equal(bits(read), bits(original))
    again = tmp_path / "again.txt"
    write_seed_model(back, again)
    assert again.read_bytes() == path.read_bytes()


def test_round_trip_float64_is_bit_identical(tmp_path):
    rng = np.random.default_rng(8)
    model = seed_mlp([6, 5, 4], alpha=0.3, dtype=np.float64)
    for param in model.parameters():
        param[...] = random_floats(rng, param.shape, np.float64)
    path = tmp_path / "model.txt"
    write_seed_model(model, path)
    back = read_seed_model(path, output="sigmoid", dtype=np.float64)
    for original, read in zip(model.parameters(), back.parameters()):
        assert read.dtype == np.float64
        assert np.array_equal(bits(read), bits(original))


def test_written_reference_network_predicts_the_same(tmp_path):
    model = numrec.mnist_mlp(seed=3)
    path = tmp_path / "mnist.txt"
    model.save(path)
    assert is_seed_model(path)
    back = numrec.load(path, output="sigmoid")
    x = np.random.default_rng(0).random((20, 784), dtype=np.float32)
    assert np.array_equal(back.predict(x), model.predict(x))
    reference = numpy_forward(x, dense_params(model), 0.2, "sigmoid")
    np.testing.assert_allclose(back.predict(x), reference, rtol=1e-5, atol=1e-6)


def test_model_without_hidden_layers(tmp_path):
    layer = numrec.Dense(4, 3, seed=1)
    path = tmp_path / "linear.txt"
    write_seed_model(numrec.Sequential([layer]), path)
    assert path.read_text().endswith("[alpha]\n0.01\n")      # the seed's default slope
    back = read_seed_model(path, output="none")
    assert [type(c).__name__ for c in back.components] == ["Dense"]
    assert np.array_equal(back.components[0].weights, layer.weights)


def test_softmax_model_round_trip_through_load(tmp_path):
    model = seed_mlp([5, 4, 3], alpha=0.2, output="softmax")
    path = tmp_path / "softmax.txt"
    model.save(path)
    back = numrec.load(path)
    assert isinstance(back.components[-1], numrec.Softmax)
    x = np.random.default_rng(0).random((4, 5))
    assert np.array_equal(back.predict(x), model.predict(x))


def _assert_unwritable(model, path, *words):
    before = sorted(os.listdir(path.parent))
    with pytest.raises(ValueError) as info:
        model.save(path)
    for word in words:
        assert word in str(info.value)
    assert sorted(os.listdir(path.parent)) == before
    return info.value


def test_models_the_format_cannot_hold(tmp_path):
    path = tmp_path / "model.txt"
    dense = [numrec.Dense(4, 3), numrec.Dense(3, 2), numrec.Dense(2, 2)]
    _assert_unwritable(numrec.Sequential([dense[0], numrec.ReLU(), dense[1]]), path,
                       "components[1]", "LeakyReLU(0.0)")
    _assert_unwritable(numrec.Sequential([dense[0], numrec.LeakyReLU(0.2), dense[1],
                                          numrec.LeakyReLU(0.1), dense[2]]), path,
                       "components[1]", "components[3]", "0.2", "0.1")
    _assert_unwritable(numrec.Sequential([dense[0], numrec.Sigmoid(), dense[1]]), path,
                       "components[1]", "between Dense layers")
    _assert_unwritable(numrec.Sequential([dense[0], numrec.LeakyReLU(0.2)]), path,
                       "components[1]", "after the last Dense layer")
    _assert_unwritable(numrec.Sequential([dense[0], numrec.Sigmoid(), numrec.Sigmoid()]),
                       path, "components[2]", "nothing may follow the output activation components[1]")
    python_dense = PyDense(np.zeros((2, 4), np.float32), np.zeros(2, np.float32))
    _assert_unwritable(numrec.Sequential([python_dense]), path, "components[0]", "Dense")
    with pytest.raises(TypeError, match="Sequential"):
        write_seed_model([dense[0]], path)


def test_non_finite_parameters_are_not_written(tmp_path):
    model = seed_mlp([3, 2, 2], alpha=0.2)
    model.components[2].bias[1] = np.nan
    _assert_unwritable(model, tmp_path / "model.txt", "Dense layer 2", "NaN")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.txt"
    path.write_text(TINY)

    def refuse(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        seed_mlp([3, 2, 2], alpha=0.2).save(path)
    monkeypatch.undo()
    assert path.read_text() == TINY
    assert os.listdir(tmp_path) == ["model.txt"]


# --- numrec.load and Sequential.save ---------------------------------------------------------

def test_load_recognises_the_format_whatever_the_name(tmp_path):
    path = write(tmp_path, TINY, "weights.dat")
    model = numrec.load(path, output="none")
    np.testing.assert_array_equal(model.predict(np.array([TINY_X])), [TINY_Z2])
    assert model.dtype == np.float32
    assert numrec.load(path, output="sigmoid", dtype=np.float64).dtype == np.float64


def test_load_default_output_is_softmax(tmp_path):
    path = write(tmp_path, TINY)
    assert isinstance(numrec.load(path).components[-1], numrec.Softmax)


def test_load_options_only_for_seed_files(tmp_path):
    npz = tmp_path / "model.npz"
    numrec.Sequential([numrec.Dense(3, 2)]).save(npz)
    for options in ({"output": "sigmoid"}, {"dtype": np.float64}):
        with pytest.raises(ValueError, match="only to the seed's text model files"):
            numrec.load(npz, **options)
    assert numrec.load(npz).dtype == np.float32


@pytest.mark.parametrize("options, word", [({"output": "tanh"}, "output"),
                                           ({"output": None}, "output"),
                                           ({"output": "sigmoid", "dtype": np.int32}, "dtype"),
                                           ({"output": "sigmoid", "dtype": "float16"},
                                            "dtype")])
def test_bad_read_options(tmp_path, options, word):
    with pytest.raises(ValueError, match=word) as info:
        read_seed_model(write(tmp_path, TINY), **options)
    assert not isinstance(info.value, ModelFileError)


def test_save_picks_the_format_by_suffix(tmp_path):
    model = seed_mlp([3, 2, 2], alpha=0.2)
    model.save(tmp_path / "upper.TXT")
    model.save(tmp_path / "model.npz")
    assert is_seed_model(tmp_path / "upper.TXT")
    assert (tmp_path / "model.npz").read_bytes()[:2] == b"PK"
    for name in ("upper.TXT", "model.npz"):
        back = numrec.load(tmp_path / name, **({"output": "sigmoid"} if name.endswith("TXT")
                                                 else {}))
        for original, read in zip(model.parameters(), back.parameters()):
            assert np.array_equal(bits(read), bits(original))


def test_garbage_text_is_neither_format(tmp_path):
    path = write(tmp_path, "hello\n", "model.txt")
    with pytest.raises(ModelFileError, match="neither a .npz archive nor a seed text model"):
        numrec.load(path)


# --- malformed files: every error names the file and the line -----------------------------

def edit(number, new):
    """TINY with line ``number`` (1-based) replaced by ``new`` (None deletes it; a list
    replaces it with several lines)."""
    lines = TINY.split("\n")
    if new is None:
        del lines[number - 1]
    else:
        lines[number - 1:number] = new if isinstance(new, list) else [new]
    return "\n".join(lines)


MALFORMED = {
    # name: (text, line, words in the message)
    "first line": (edit(1, "[layer]"), 1, "first line must be [layers]"),
    "sizes without brackets": (edit(2, "3, 2, 2"), 2, "square brackets"),
    "size zero": (edit(2, "[3, 0, 2]"), 2, "at least 1, but size 2 is 0"),
    "size not a number": (edit(2, "[3, two, 2]"), 2, "size 2 is not a whole number"),
    "negative size": (edit(2, "[3, -2, 2]"), 2, "size 2 is not a whole number"),
    "one size": (edit(2, "[3]"), 2, "at least 2 layer sizes"),
    "no sizes": (edit(2, "[]"), 2, "at least 2 layer sizes"),
    "sizes larger than the file": (edit(2, "[3, 100000, 100000, 2]"), 2,
                                   "more than a file of"),
    "size beyond i32": (edit(2, "[3, 99999999999, 2]"), 2, "size 2 is too large"),
    "missing weights header": (edit(4, "[weight]"), 4,
                               "expected the section header [weights]"),
    "too few weights": (edit(5, "[0.5, 1.5, -1, 0.25, 2]"), 5,
                        "layer 1 (2 x 3: out x in) must have 6 values, found 5"),
    "too many weights": (edit(6, "[1, 2, -0.5, 0.75, 1]"), 6,
                         "layer 2 (2 x 2: out x in) must have 4 values, found 5"),
    "not a number": (edit(5, "[0.5, 1.5, abc, 0.25, 2, -0.75]"), 5,
                     "value 3 of the weights of layer 1 (2 x 3: out x in) is not a number"),
    "python expression": (edit(5, "[0.5, 1.5, 2**3, 0.25, 2, -0.75]"), 5,
                          "value 3 of the weights of layer 1"),
    "underscore digits": (edit(5, "[0.5, 1_5, -1, 0.25, 2, -0.75]"), 5,
                          "value 2 of the weights of layer 1"),
    "empty value": (edit(5, "[0.5, 1.5, , 0.25, 2, -0.75]"), 5, "value 3 of the weights "
                    "of layer 1 (2 x 3: out x in) is empty"),
    "nan": (edit(6, "[1, NaN, -0.5, 0.75]"), 6, "value 2 of the weights of layer 2 "
            "(2 x 2: out x in) is not finite: NaN"),
    "infinity": (edit(9, "[-inf, -2]"), 9, "value 1 of the biases of layer 1 "
                 "(2 values) is not finite"),
    "overflow": (edit(10, "[0.25, 1e999]"), 10, "value 2 of the biases of layer 2 "
                 "(2 values) is outside the float32 range"),
    "beyond float32": (edit(10, "[0.25, 4e38]"), 10, "outside the float32 range"),
    "weights without brackets": (edit(5, "0.5, 1.5, -1, 0.25, 2, -0.75"), 5,
                                 "square brackets"),
    "missing weights line": (edit(6, None), 6,
                             "expected the weights of layer 2 (2 x 2: out x in), "
                             "found a blank line"),
    "extra weights line": (edit(6, ["[1, 2, -0.5, 0.75]", "[1, 2, -0.5, 0.75]"]), 7,
                           "expected the section header [biases] after the 2 lines of "
                           "weights the 3 layer sizes call for, found another line of values"),
    "missing biases section": (edit(8, "[alpha]"), 8,
                               "expected the section header [biases]"),
    "too few biases": (edit(9, "[0.5]"), 9,
                       "the biases of layer 1 (2 values) must have 2 values, found 1"),
    "extra biases line": (edit(10, ["[0.25, -1]", "[0, 0]"]), 11,
                          "[alpha] after the 2 lines of biases"),
    "alpha negative": (edit(13, "-0.5"), 13, "must be at least 0, got -0.5"),
    "alpha not a number": (edit(13, "0.5.1"), 13, "alpha must be one number"),
    "alpha list": (edit(13, "[0.5]"), 13, "alpha must be one number"),
    "alpha nan": (edit(13, "NaN"), 13, "alpha is not finite"),
    "two alphas": (edit(13, ["0.5", "0.5"]), 14,
                   "unexpected text after the alpha value"),
    "no alpha value": (edit(13, None), 13,
                       "the file ends before the alpha value"),
    "no alpha section": (TINY.split("[alpha]")[0], 12,
                         "the file ends before the [alpha] section"),
    "ends after the sizes": ("[layers]\n[1, 1]\n", 3,
                             "the file ends before the [weights] section"),
    "ends in the weights": (TINY.split("[1, 2")[0], 6,
                            "the file ends before the weights of layer 2"),
    "ends before the sizes": ("[layers]\n", 2, "the file ends before the layer sizes"),
    "not ascii": (edit(6, "[1, 2, -0.5, 0.75] \u00e9"), 6, "not plain text"),
    "absurdly long value": (edit(9, "[0.5, " + "1" * 2000 + "]"), 9,
                            "longer than the 802 characters"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files(tmp_path, name):
    text, line, words = MALFORMED[name]
    path = write(tmp_path, text.encode("utf-8"))
    with pytest.raises(ModelFileError) as info:
        read_seed_model(path, output="sigmoid")
    message = str(info.value)
    assert message.startswith(f"{path}: line {line}: "), message
    assert words in message
    assert "\n" not in message
    if is_seed_model(path):  # numrec.load gives the same error
        with pytest.raises(ModelFileError) as again:
            numrec.load(path, output="sigmoid")
        assert str(again.value) == message


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(ModelFileError, match="empty") as info:
        read_seed_model(path, output="sigmoid")
    assert str(path) in str(info.value)


def test_float64_reads_what_float32_cannot(tmp_path):
    path = write(tmp_path, edit(10, "[0.25, 4e38]"))
    model = read_seed_model(path, output="none", dtype=np.float64)
    assert model.components[2].bias[1] == 4e38


# --- the command line ------------------------------------------------------------------------

def run_numrec(*args):
    return subprocess.run([sys.executable, "-m", "numrec", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def assert_one_line_error(result, status=1):
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory):
    """A 784-32-10 network trained briefly, written in the seed's format, and the model."""
    (x_train, y_train), _ = load_mnist(dtype=np.uint8)
    model = numrec.mnist_mlp(hidden=(32,), seed=0)
    model.fit(x_train[:3000], y_train[:3000], epochs=1, batch_size=32,
              loss=numrec.MSE(), optimizer=numrec.SGD(0.5), seed=0)
    path = tmp_path_factory.mktemp("seed") / "seed-model.txt"
    model.save(path)
    return path, model


def in_memory(model, output):
    """``model`` (sigmoid outputs) with ``output`` after its last layer instead."""
    if output == "sigmoid":
        return model
    return numrec.Sequential(model.components[:-1] + [numrec.Softmax()])


def output_options(output):
    return [] if output == "softmax" else ["--output-activation", output]


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_cli_evaluate_seed_model(seed_file, small_data, output):
    path, model = seed_file
    result = run_numrec("evaluate", path, "--data", small_data, "--json",
                        *output_options(output))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    _, (x_test, y_test) = load_mnist(small_data)
    predicted = in_memory(model, output).predict_classes(x_test)
    expected = np.bincount(y_test * 10 + predicted, minlength=100).reshape(10, 10)
    assert report["confusion_matrix"] == expected.tolist()
    assert report["test_accuracy"] == pytest.approx(np.mean(predicted == y_test))
    assert report["test_accuracy"] > 0.5


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_cli_predict_seed_model(tmp_path, seed_file, output):
    path, model = seed_file
    _, (x_test, _) = load_mnist(dtype=np.uint8, flatten=False)
    pictures = []
    for index in range(3):
        picture = tmp_path / f"digit{index}.png"
        Image.fromarray(x_test[index]).save(picture)
        pictures.append(picture)
    result = run_numrec("predict", path, *pictures, "--json", *output_options(output))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    x = np.stack([load_digit(p).reshape(784) for p in pictures]).astype(np.float32)
    outputs = in_memory(model, output).predict(x).astype(np.float64)
    expected = outputs / outputs.sum(axis=1, keepdims=True)
    if output == "softmax":
        z = numpy_forward(x, dense_params(model), 0.2, "none")
        np.testing.assert_allclose(expected, softmax(z), atol=1e-5)   # the NumPy softmax
    for entry, p in zip(report, expected):
        assert entry["digit"] == int(p.argmax())
        np.testing.assert_allclose(entry["probabilities"], p, atol=1e-6)


def test_cli_output_activation_is_for_seed_models_only(tmp_path, small_data):
    npz = tmp_path / "model.npz"
    numrec.mnist_mlp(seed=0).save(npz)
    line = assert_one_line_error(run_numrec("evaluate", npz, "--data", small_data,
                                            "--output-activation", "sigmoid"))
    assert "--output-activation applies only to models in the seed's text format" in line
    assert "model.npz" in line


def test_cli_bad_output_activation_is_a_usage_error(seed_file):
    line = assert_one_line_error(run_numrec("evaluate", seed_file[0], "--output-activation",
                                            "tanh"), status=2)
    assert "--output-activation" in line and "tanh" in line


def test_cli_malformed_seed_model(tmp_path, small_data):
    path = write(tmp_path, edit(5, "[0.5, 1.5, abc, 0.25, 2, -0.75]"))
    for command in (["evaluate", path, "--data", small_data],
                    ["predict", path, tmp_path / "absent.png"]):
        line = assert_one_line_error(run_numrec(*command, "--output-activation", "sigmoid"))
        assert line.startswith(f"numrec: error: cannot load the model {path}: line 5: "
                               f"value 3 of the weights of layer 1"), line


def test_cli_train_writes_a_seed_model(tmp_path, small_data):
    path = tmp_path / "trained.txt"
    result = run_numrec("train", "--data", small_data, "--epochs", "1", "--hidden", "16",
                        "--threads", "1", "--output", path, "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert is_seed_model(path)
    evaluated = run_numrec("evaluate", path, "--data", small_data, "--json",
                           "--output-activation", "sigmoid")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["test_accuracy"] == summary["test_accuracy"]


def test_train_refuses_a_txt_output_the_format_cannot_hold_before_training(tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "numrec", "train", "--activation", "tanh",
                             "--output", tmp_path / "m.txt"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--output" in result.stderr and "seed's text format" in result.stderr
    assert "epoch" not in result.stdout and not (tmp_path / "m.txt").exists()

"""``numrec predict`` and the picture preprocessing behind it (``numrec.images``)."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import numrec
from numrec.datasets import load_mnist
from numrec.images import ImageError, load_digit, to_mnist

#: Size (width, height) the test-set digits are blown up to before being written.
BIG = (100, 120)


def run_numrec(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "numrec", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(result, status=1):
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("numrec")
    return lines[0]


@pytest.fixture(scope="module")
def test_set():
    _, (x_test, y_test) = load_mnist(dtype=np.uint8)
    return x_test, y_test


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A reference network trained for two epochs (about 97 %), and its saved file."""
    (x_train, y_train), (x_test, y_test) = load_mnist(dtype=np.uint8)
    model = numrec.mnist_mlp(seed=0)
    model.fit(x_train, y_train, epochs=2, batch_size=32, loss=numrec.MSE(),
              optimizer=numrec.SGD(0.5), seed=0)
    path = tmp_path_factory.mktemp("model") / "digits.npz"
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def chosen(trained, test_set):
    """One test digit per class that the model classifies correctly and confidently."""
    model, _ = trained
    x_test, y_test = test_set
    outputs = model.predict(x_test)
    probabilities = outputs / outputs.sum(axis=1, keepdims=True)
    picks = []
    for digit in range(10):
        ok = np.flatnonzero((y_test == digit) & (outputs.argmax(axis=1) == digit)
                            & (probabilities[:, digit] > 0.9))
        picks.append(int(ok[0]))
    return [(x_test[i].reshape(28, 28), int(y_test[i])) for i in picks]


def big(pixels, size=BIG):
    """A 28 x 28 uint8 digit blown up (bilinear) to ``size``, light on dark."""
    return Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)


def write_variants(directory, pixels, label):
    """Write one digit in several formats; return [(path, description)]."""
    light = big(pixels)
    dark = Image.fromarray(255 - np.asarray(light))
    ink = np.asarray(dark, dtype=np.float64)[..., None] / 255
    paper, pen = np.array([250, 240, 200.0]), np.array([20, 40, 160.0])
    colour = Image.fromarray((pen + (paper - pen) * ink).round().astype(np.uint8), "RGB")
    files = {
        f"{label}-light.png": light,
        f"{label}-dark.png": dark,
        f"{label}-light.bmp": light,
        f"{label}-dark.bmp": dark,
        f"{label}-colour.png": colour,
        f"{label}-dark.pgm": dark,
        f"{label}-small.pgm": Image.fromarray(pixels),
    }
    paths = []
    for name, image in files.items():
        path = directory / name
        image.save(path)
        paths.append(path)
    return paths


# --- the preprocessing ---------------------------------------------------------------------

def test_mnist_digit_comes_back_nearly_unchanged(tmp_path, test_set):
    x_test, _ = test_set
    for index in range(20):
        pixels = x_test[index].reshape(28, 28)
        path = tmp_path / f"{index}.png"
        Image.fromarray(pixels).save(path)
        digit = load_digit(path)
        assert digit.shape == (28, 28) and digit.dtype == np.float32
        original = pixels / 255
        correlation = np.corrcoef(original.ravel(), digit.ravel())[0, 1]
        assert correlation > 0.9, (index, correlation)


@pytest.mark.parametrize("invert", [False, True])
def test_big_picture_is_brought_to_mnist_form(tmp_path, test_set, invert):
    x_test, _ = test_set
    pixels = x_test[0].reshape(28, 28)
    image = big(pixels, (300, 300))
    if invert:
        image = Image.fromarray(255 - np.asarray(image))
    path = tmp_path / "digit.png"
    image.save(path)
    digit = load_digit(path)
    assert 0.0 <= digit.min() and digit.max() == pytest.approx(1.0)
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # black border: light on dark
    ink = np.argwhere(digit > 0)
    height, width = ink.max(axis=0) - ink.min(axis=0) + 1
    assert max(height, width) <= 21
    assert max(height, width) >= 18
    ys, xs = np.indices(digit.shape)
    mass = digit.sum()
    assert (digit * ys).sum() / mass == pytest.approx(14, abs=0.6)
    assert (digit * xs).sum() / mass == pytest.approx(14, abs=0.6)


def test_polarity_does_not_matter(test_set):
    x_test, _ = test_set
    grey = np.asarray(big(x_test[3].reshape(28, 28)), dtype=np.float64) / 255
    np.testing.assert_allclose(to_mnist(grey), to_mnist(1 - grey), atol=1e-5)


def test_wide_digit_keeps_its_aspect_ratio():
    grey = np.zeros((50, 200))
    grey[20:30, 20:180] = 1.0  # a bar 16 times wider than high
    digit = to_mnist(grey)
    ink = np.argwhere(digit > 0.5)
    height, width = ink.max(axis=0) - ink.min(axis=0) + 1
    assert width == 20
    assert height <= 2


def test_transparent_canvas(tmp_path, test_set):
    x_test, _ = test_set
    pixels = x_test[5].reshape(28, 28)
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., 3] = pixels  # black strokes on a transparent canvas
    path = tmp_path / "canvas.png"
    Image.fromarray(rgba, "RGBA").save(path)
    plain = tmp_path / "plain.png"
    Image.fromarray(pixels).save(plain)
    np.testing.assert_allclose(load_digit(path), load_digit(plain), atol=0.02)


def test_sixteen_bit_grey(tmp_path, test_set):
    x_test, _ = test_set
    pixels = x_test[7].reshape(28, 28)
    path = tmp_path / "deep.png"
    Image.fromarray(pixels.astype(np.uint16) * 257).save(path)
    plain = tmp_path / "plain.png"
    Image.fromarray(pixels).save(plain)
    np.testing.assert_allclose(load_digit(path), load_digit(plain), atol=0.02)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_picture_is_refused(tmp_path, value):
    path = tmp_path / "blank.png"
    Image.new("L", (64, 64), value).save(path)
    with pytest.raises(ImageError, match="blank"):
        load_digit(path)


def test_unreadable_and_missing_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    with pytest.raises(ImageError, match="notes.png"):
        load_digit(text)
    truncated = tmp_path / "cut.png"
    Image.new("L", (64, 64), 0).save(tmp_path / "whole.png")
    truncated.write_bytes((tmp_path / "whole.png").read_bytes()[:40])
    with pytest.raises(ImageError, match="cut.png"):
        load_digit(truncated)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        load_digit(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="directory"):
        load_digit(tmp_path)


# --- the command ---------------------------------------------------------------------------

def test_predict_own_pictures(tmp_path, trained, chosen):
    _, model_path = trained
    expected = {}
    for pixels, label in chosen:
        for path in write_variants(tmp_path, pixels, label):
            expected[str(path)] = label
    result = run_numrec("predict", model_path, *expected, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    answers = json.loads(result.stdout.splitlines()[-1])
    assert [a["image"] for a in answers] == list(expected)
    wrong = [(a["image"], a["digit"]) for a in answers if a["digit"] != expected[a["image"]]]
    assert not wrong
    for answer in answers:
        assert len(answer["probabilities"]) == 10
        assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
        assert answer["digit"] == int(np.argmax(answer["probabilities"]))


def test_predict_text_output(tmp_path, trained, chosen):
    _, model_path = trained
    pixels, label = chosen[3]
    path = tmp_path / "three.png"
    Image.fromarray(255 - np.asarray(big(pixels))).save(path)
    result = run_numrec("predict", model_path, path)
    assert result.returncode == 0, result.stderr
    assert "divided by their sum" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith(str(path)))
    assert line.split()[1] == str(label)


def test_predict_blank_picture(tmp_path, trained):
    _, model_path = trained
    path = tmp_path / "white.png"
    Image.new("RGB", (80, 80), (255, 255, 255)).save(path)
    line = assert_one_line_error(run_numrec("predict", model_path, path))
    assert "white.png" in line and "blank" in line


@pytest.mark.parametrize("kind", ["text", "missing", "directory"])
def test_predict_unreadable_picture(tmp_path, trained, kind):
    _, model_path = trained
    path = tmp_path / "digit.png"
    if kind == "text":
        path.write_text("hello\n")
    elif kind == "directory":
        path.mkdir()
    line = assert_one_line_error(run_numrec("predict", model_path, path))
    assert "digit.png" in line


def test_predict_reports_bad_pictures_and_classifies_the_rest(tmp_path, trained, chosen):
    _, model_path = trained
    pixels, label = chosen[7]
    good = tmp_path / "seven.png"
    big(pixels).save(good)
    bad = tmp_path / "bad.bmp"
    bad.write_bytes(b"BM not really")
    result = run_numrec("predict", model_path, good, bad, "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    answers = json.loads(result.stdout)
    assert answers[0]["digit"] == label
    assert "error" in answers[1] and "bad.bmp" in answers[1]["error"]


@pytest.mark.parametrize("kind", ["garbage", "empty", "missing", "directory"])
def test_predict_broken_model_file(tmp_path, kind, test_set):
    image = tmp_path / "digit.png"
    Image.fromarray(test_set[0][0].reshape(28, 28)).save(image)
    model_path = tmp_path / "model.npz"
    if kind == "garbage":
        model_path.write_bytes(b"\x00\x01 this is not a model" * 50)
    elif kind == "empty":
        model_path.write_bytes(b"")
    elif kind == "directory":
        model_path.mkdir()
    line = assert_one_line_error(run_numrec("predict", model_path, image))
    assert "model.npz" in line


def test_predict_model_of_the_wrong_shape(tmp_path, test_set):
    model = numrec.Sequential([numrec.Dense(5, 10, seed=0), numrec.Sigmoid()])
    model_path = tmp_path / "small.npz"
    model.save(model_path)
    image = tmp_path / "digit.png"
    Image.fromarray(test_set[0][0].reshape(28, 28)).save(image)
    line = assert_one_line_error(run_numrec("predict", model_path, image))
    assert "784" in line


def test_predict_needs_an_image(trained):
    _, model_path = trained
    assert_one_line_error(run_numrec("predict", model_path), status=2)


def _paper(size=(320, 240)):
    """A light, unevenly lit, slightly noisy sheet of paper (RGB)."""
    width, height = size
    light = np.linspace(200, 240, width)[None, :].repeat(height, axis=0)
    light += np.random.default_rng(0).normal(0, 4, (height, width))
    return Image.fromarray(np.clip(light, 0, 255).astype(np.uint8)).convert("RGB")


def _drawn_digits(directory):
    """Digits drawn with a pen, off-centre, on paper: {path: digit}."""
    from PIL import ImageDraw

    drawings = {}
    seven = _paper()
    ImageDraw.Draw(seven).line([(60, 60), (140, 60), (90, 190)], fill=(30, 30, 90), width=12)
    drawings["seven.png"] = (seven, 7)
    one = _paper()
    ImageDraw.Draw(one).line([(200, 40), (205, 200)], fill=(10, 10, 10), width=14)
    drawings["one.png"] = (one, 1)
    zero = _paper()
    ImageDraw.Draw(zero).ellipse([100, 40, 200, 200], outline=(0, 0, 0), width=14)
    drawings["zero.jpg"] = (zero, 0)
    paths = {}
    for name, (image, digit) in drawings.items():
        image.save(directory / name)
        paths[str(directory / name)] = digit
    return paths


def test_drawn_digit_on_uneven_paper(tmp_path):
    path = next(iter(_drawn_digits(tmp_path)))
    digit = load_digit(path)
    assert digit[0].max() == 0 and digit[-1].max() == 0
    assert np.mean(digit > 0.2) < 0.25  # the paper became black, the strokes light
    ys, xs = np.indices(digit.shape)
    assert (digit * ys).sum() / digit.sum() == pytest.approx(14, abs=0.6)
    assert (digit * xs).sum() / digit.sum() == pytest.approx(14, abs=0.6)


def test_predict_drawn_digits(tmp_path, trained):
    _, model_path = trained
    expected = _drawn_digits(tmp_path)
    result = run_numrec("predict", model_path, *expected, "--json")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert {a["image"]: a["digit"] for a in answers} == expected

"""The documentation: its code examples run, and Sphinx builds it without a warning."""
import doctest
import html as html_module
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numrec

DOCS = Path(__file__).resolve().parents[1] / "docs"
# quickstart.rst trains the reference network on the whole of MNIST to 96 %.
SLOW_PAGES = {"quickstart.rst"}
#: Pages whose examples need optional packages (the test extra installs them).
NEEDS = {"onnx.rst": ("onnx", "onnxruntime")}
PAGES = sorted(path.name for path in DOCS.glob("*.rst"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_pages_exist():
    assert {"index.rst", "quickstart.rst", "worked_example.rst", "custom_components.rst",
            "cli.rst", "file_format.rst", "security.rst", "benchmarks.rst",
            "api.rst"} <= set(PAGES)


@pytest.mark.parametrize("page", [
    pytest.param(page, marks=pytest.mark.slow) if page in SLOW_PAGES else page
    for page in PAGES
])
def test_code_examples(page):
    for module in NEEDS.get(page, ()):
        pytest.importorskip(module, reason=f"{page}'s examples need {module}")
    with np.printoptions():          # restore numpy's print options afterwards
        result = doctest.testfile(str(DOCS / page), module_relative=False,
                                  optionflags=FLAGS, verbose=False)
    assert result.failed == 0


def test_worked_example_page_has_the_seed_numbers():
    text = (DOCS / "worked_example.rst").read_text(encoding="utf-8")
    for value in ("-0.025  1.375", "0.858 0.45  0.646", "0.208924 -0.272186  0.295432",
                  "-0.073329  0.366644", "0.091661  0.183322  0.274983"):
        assert value in text


def test_dense_signature_fix_is_right():
    """conf.py overrides Dense's signature: check it against the real constructor."""
    spec = importlib.util.spec_from_file_location("numrec_docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    assert conf.SIGNATURE_FIXES["numrec.Dense"].startswith("(in_features, out_features, *,")
    numrec.Dense(3, 2, seed=1, dtype=np.float64)
    with pytest.raises(TypeError):
        numrec.Dense(3, 2, 1)       # seed is keyword-only


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
         str(DOCS), str(out), "-d", str(out / ".doctrees")],
        capture_output=True, text=True, timeout=600,
        # From the repository root, as a user builds them: there the source folder numrec/
        # (no compiled modules unless installed editable) comes first on sys.path, and
        # docs/conf.py must import the installed numrec instead.
        cwd=DOCS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr
    return out


def _text(path):
    return html_module.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def test_sphinx_build_without_warnings(html):
    for page in PAGES:
        assert (html / page.replace(".rst", ".html")).is_file()


def test_api_page_shows_compiled_signatures_and_formulas(html):
    text = _text(html / "api.html")
    assert "numrec.Dense(in_features, out_features, *, seed=None, dtype=np.float32)" in text
    assert r"z = x W^\top + b" in text                       # Dense's formula
    assert "numrec.LeakyReLU(alpha=0.2)" in text
    assert "numrec.SGD(lr=0.5)" in text
    assert r"\sigma(z) = \frac{1}{1 + e^{-z}}" in text       # Sigmoid's formula
    assert "MSELoss" in text                                   # MSE versus PyTorch
    for name in ("Sequential", "History", "mnist_mlp", "load", "DivergedError", "Layer",
                 "Activation", "Loss", "Optimizer", "MSE", "Sigmoid"):
        assert f'id="numrec.{name}"' in (html / "api.html").read_text(encoding="utf-8")
    for name in ("load_mnist", "write_all", "plot_first_layer_weights"):
        assert name in text


def test_cli_page_shows_every_command(html):
    text = _text(html / "cli.html")
    for usage in ("usage: numrec train", "usage: numrec evaluate", "usage: numrec predict",
                  "usage: numrec export", "usage: numrec info"):
        assert usage in text


def test_the_api_reference_lists_every_public_name_and_sequentials_methods():
    import re
    import numrec
    text = (DOCS / "api.rst").read_text(encoding="utf-8")
    missing = [name for name in numrec.__all__
               if not re.search(rf"^\.\. auto\w+:: (numrec\.)?{name}\b", text, re.MULTILINE)]
    assert not missing, f"docs/api.rst lacks entries for {missing}"
    members = re.search(r"^\.\. autoclass:: Sequential\n   :members: (.*)$", text,
                        re.MULTILINE).group(1).split(", ")
    public = [name for name in vars(numrec.Sequential) if not name.startswith("_")]
    assert sorted(set(public) - set(members)) == []
